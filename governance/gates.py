"""Gate services: evaluate a run's stored results against a profile, and waivers.

The gate logic itself lives in the engine (``migration.engine.gates``), which is
pure: here we only gather what it needs from the database (the run's stored
report, active approved waivers, live sign-offs), persist its ``GateResult`` as
``GateEvaluation`` + ``CheckResult`` rows, and audit. Nothing re-runs a
migration: a gate can be re-evaluated any number of times from what is stored.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import transaction
from django.utils import timezone

from governance import audit
from governance.access import user_has_project_perm
from governance.models import (
    CheckResult,
    CheckStatus,
    GateEvaluation,
    MigrationProject,
    SignOff,
    SignOffDecision,
    Waiver,
)
from migration.engine import gates as engine_gates
from migration.models import GateOutcome, Run, RunState

FINISHED = (RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED)


def engine_run_id(run: Run) -> str:
    """Return the run id the engine wrote into the run's report (``run-<pk>``)."""
    # Same rule as migration.adapters.engine_run_id; kept here so the gate
    # layer does not pull in every connector kind just to spell an id.
    return f"run-{run.pk}"


def gate_profiles() -> dict[str, engine_gates.GateProfile]:
    """Return the engine's gate profiles (versioned data) by name."""
    return engine_gates.load_profiles()


def run_results(run: Run) -> dict[str, Any]:
    """Return the run's stored results in the engine's report shape.

    ``run.report`` is the engine's own ``RunReport.to_dict()``; when a run has
    only its per-table ledger rows (e.g. a run that failed before the report was
    written), the same shape is rebuilt from ``RunTable`` so the gate still
    sees every table it has numbers for.
    """
    report = dict(run.report or {})
    if report.get("tables"):
        report.setdefault("run_id", engine_run_id(run))
        return report
    tables = []
    for t in run.tables.order_by("order"):
        m = t.metrics or {}
        tables.append(
            {
                "table": t.target_table,
                "source_table": t.source_table,
                "source_rows": t.rows_total or 0,
                "rows_read": t.rows_read,
                "rows_loaded": t.rows_loaded,
                "rows_rejected": t.rows_rejected,
                "rows_excluded": t.rows_excluded,
                "rows_flagged": t.rows_flagged,
                "ledger_balanced": bool(t.ledger_balanced),
                "ledger_difference": int(m.get("ledger_difference", 0) or 0),
                "rejects_by_reason": m.get("rejects_by_reason", {}),
                "flags_by_reason": m.get("flags_by_reason", {}),
                "excluded_by_rule": m.get("excluded_by_rule", {}),
                "columns": m.get("columns", []),
                "dqmi": m.get("dqmi", {}),
            }
        )
    return {
        **report,
        "run_id": report.get("run_id", engine_run_id(run)),
        "status": report.get("status", run.state),
        "failure_reasons": report.get("failure_reasons", []),
        "tables": tables,
        "fk_chains": report.get("fk_chains", []),
    }


def _active_waivers(project_id: int, profile: str, now: dt.datetime) -> list[Waiver]:
    return list(
        Waiver.objects.filter(
            project_id=project_id,
            profile=profile,
            approved_at__isnull=False,
            approver__isnull=False,
            revoked_at__isnull=True,
            expires_at__gt=now,
        )
        .select_related("approver")
        .order_by("created_at", "pk")
    )


def _engine_waiver(w: Waiver) -> engine_gates.Waiver:
    return engine_gates.Waiver(
        check_id=w.check_id,
        reason=w.reason,
        approver=w.approver.get_username() if w.approver else "",
        expires=w.expires_at.astimezone(dt.UTC).isoformat(),
        scope=w.target_table or "*",
    )


def _engine_signoffs(run: Run, profile: str) -> list[engine_gates.SignOff]:
    # Only approvals count towards a gate: a "reject" decision leaves the role
    # missing, so the gate fails and says whose sign-off it lacks.
    live = SignOff.objects.filter(
        run=run,
        profile=profile,
        voided_at__isnull=True,
        decision=SignOffDecision.APPROVE,
    ).select_related("user")
    return [
        engine_gates.SignOff(
            role=s.role,
            signer=s.user.get_username(),
            run_id=engine_run_id(s.run),
            contract_sha256=s.contract_sha256,
            signed_at=s.signed_at.isoformat(),
        )
        for s in live
    ]


def gate_evaluate(*, actor: Any, run: Run, profile: str) -> GateEvaluation:
    """Evaluate ``profile`` on the run's stored results, persist and audit it.

    Raises Refused (audited) without ``evaluate_gate``, for an unknown profile
    or a run that has not finished.
    """
    profiles = gate_profiles()
    refusal: tuple[str, str] | None = None
    with transaction.atomic():
        # Lock the run: two evaluations at once must not interleave their
        # gate_outcome writes with the evaluation rows they belong to.
        run = Run.objects.select_for_update().select_related("contract").get(pk=run.pk)
        if not user_has_project_perm(actor, run.project_id, "evaluate_gate"):
            refusal = ("permission", "you may not evaluate gates on this project")
        elif profile not in profiles:
            refusal = ("unknown_profile", f"unknown gate profile {profile!r}")
        elif run.state not in FINISHED:
            refusal = (
                "run_not_finished",
                f"run {run.pk} is {run.state}; gates evaluate finished runs only",
            )
        else:
            now = timezone.now()
            waivers = _active_waivers(run.project_id, profile, now)
            result = engine_gates.evaluate_gate(
                run_results(run),
                profiles[profile],
                [_engine_waiver(w) for w in waivers],
                signoffs=_engine_signoffs(run, profile),
                now=now,
                run_id=engine_run_id(run),
                contract_sha256=run.contract.sha256,
            )
            return _persist(actor=actor, run=run, result=result, waivers=waivers)
    code, reason = refusal
    raise audit.refuse(
        actor=actor,
        action="governance.gate.refused",
        reason=reason,
        code=code,
        target=run,
        data={"run": run.pk, "profile": profile},
    )


def _persist(
    *,
    actor: Any,
    run: Run,
    result: engine_gates.GateResult,
    waivers: list[Waiver],
) -> GateEvaluation:
    evaluation = GateEvaluation.objects.create(
        run=run,
        profile=result.profile,
        profile_version=result.profile_version,
        status=CheckStatus.PASS if result.passed else CheckStatus.FAIL,
        reasons=list(result.reasons),
        evaluated_by=actor if getattr(actor, "is_authenticated", False) else None,
        result=result.to_dict(),
    )
    rows = []
    for r in result.results:
        waiver = None
        if r.waived_by is not None:
            waiver = next(
                (
                    w
                    for w in waivers
                    if w.check_id == r.check_id
                    and (w.target_table or "*") in ("*", r.scope)
                ),
                None,
            )
        cdef = engine_gates.CHECKS.get(r.check_id)
        rows.append(
            CheckResult(
                evaluation=evaluation,
                check_id=r.check_id,
                name=(cdef.description if cdef else r.check_id)[:200],
                category=r.category,
                severity=r.severity,
                target_table=r.scope[:80],
                numerator=r.numerator,
                denominator=r.denominator,
                threshold=r.threshold or {},
                status=r.status,
                waiver=waiver,
                message=r.message,
            )
        )
    CheckResult.objects.bulk_create(rows)
    run.gate_outcome = GateOutcome.PASSED if result.passed else GateOutcome.GATE_FAILED
    run.save(update_fields=["gate_outcome"])
    audit.record(
        actor=actor,
        action="governance.gate.evaluated",
        target=run,
        data={
            "evaluation": evaluation.pk,
            "profile": result.profile,
            "profile_version": result.profile_version,
            "status": evaluation.status,
            "contract_sha256": result.contract_sha256,
            "failing": [
                f"{r.check_id}[{r.scope}]" for r in result.results if r.blocking
            ],
            "waivers_applied": [w.pk for w in waivers if _applied(w, result)],
            "missing_signoffs": list(result.missing_signoffs),
        },
    )
    return evaluation


def _applied(w: Waiver, result: engine_gates.GateResult) -> bool:
    return any(
        a["check_id"] == w.check_id and a.get("scope", "*") == (w.target_table or "*")
        for a in result.waivers_applied
    )


# --- waivers ------------------------------------------------------------------


def _waiver_problem(
    *, check_id: str, profile: str, expires_at: dt.datetime, now: dt.datetime
) -> tuple[str, str] | None:
    profiles = gate_profiles()
    if profile not in profiles:
        return ("unknown_profile", f"unknown gate profile {profile!r}")
    cdef = engine_gates.CHECKS.get(check_id)
    if cdef is None:
        return ("unknown_check", f"unknown gate check {check_id!r}")
    if cdef.severity == "fatal" and not profiles[profile].allow_fatal_waivers:
        return (
            "fatal_check",
            f"{check_id} is a fatal check and cannot be waived at {profile}",
        )
    if timezone.is_naive(expires_at):
        return ("bad_expiry", "the expiry must be a timezone-aware date and time")
    if expires_at <= now:
        return ("expired", "the expiry must be in the future")
    return None


def waiver_request(
    *,
    actor: Any,
    project: MigrationProject,
    check_id: str,
    profile: str,
    reason: str,
    expires_at: dt.datetime,
    target_table: str = "",
) -> Waiver:
    """Create a pending waiver of one check (optionally one table) and audit it.

    Raises Refused (audited) without ``evaluate_gate`` or ``approve_waiver``, for
    an unknown check or profile, a fatal check where the profile forbids
    waivers, a blank reason or an expiry not in the future.
    """
    now = timezone.now()
    if not (
        user_has_project_perm(actor, project, "evaluate_gate")
        or user_has_project_perm(actor, project, "approve_waiver")
    ):
        problem: tuple[str, str] | None = (
            "permission",
            "you may not request waivers on this project",
        )
    elif not (reason or "").strip():
        problem = ("no_reason", "a waiver needs a reason")
    else:
        problem = _waiver_problem(
            check_id=check_id, profile=profile, expires_at=expires_at, now=now
        )
    if problem is None:
        with transaction.atomic():
            waiver = Waiver.objects.create(
                project=project,
                check_id=check_id,
                target_table=target_table,
                profile=profile,
                reason=reason.strip(),
                requested_by=actor,
                expires_at=expires_at,
            )
            audit.record(
                actor=actor,
                action="governance.waiver.requested",
                target=waiver,
                data={
                    "check_id": check_id,
                    "profile": profile,
                    "target_table": target_table,
                    "expires_at": expires_at.isoformat(),
                },
            )
            return waiver
    code, message = problem
    raise audit.refuse(
        actor=actor,
        action="governance.waiver.request_refused",
        reason=message,
        code=code,
        target=project,
        data={"check_id": check_id, "profile": profile, "target_table": target_table},
    )


def waiver_approve(*, actor: Any, waiver: Waiver) -> Waiver:
    """Approve a pending waiver and audit it.

    Raises Refused (audited) without ``approve_waiver``, when the approver is the
    requester (four eyes), the waiver is not pending, its check is fatal where
    the profile forbids waivers, or it has expired.
    """
    problem: tuple[str, str] | None = None
    with transaction.atomic():
        waiver = Waiver.objects.select_for_update().get(pk=waiver.pk)
        now = timezone.now()
        if not user_has_project_perm(actor, waiver.project_id, "approve_waiver"):
            problem = ("permission", "you may not approve waivers on this project")
        elif waiver.requested_by_id is not None and waiver.requested_by_id == getattr(
            actor, "pk", None
        ):
            problem = ("four_eyes", "you cannot approve a waiver you requested")
        elif waiver.approved_at is not None or waiver.revoked_at is not None:
            problem = ("not_pending", "this waiver is not pending approval")
        else:
            problem = _waiver_problem(
                check_id=waiver.check_id,
                profile=waiver.profile,
                expires_at=waiver.expires_at,
                now=now,
            )
        if problem is None:
            waiver.approver = actor
            waiver.approved_at = now
            waiver.save(update_fields=["approver", "approved_at"])
            audit.record(
                actor=actor,
                action="governance.waiver.approved",
                target=waiver,
                data={
                    "check_id": waiver.check_id,
                    "profile": waiver.profile,
                    "target_table": waiver.target_table,
                    "expires_at": waiver.expires_at.isoformat(),
                },
            )
            return waiver
    code, message = problem
    raise audit.refuse(
        actor=actor,
        action="governance.waiver.approve_refused",
        reason=message,
        code=code,
        target=waiver,
        data={"check_id": waiver.check_id, "profile": waiver.profile},
    )


def waiver_revoke(*, actor: Any, waiver: Waiver, reason: str) -> Waiver:
    """Withdraw a waiver (pending or approved) before it expires, and audit it.

    From then on no gate evaluation applies it; evaluations already stored
    keep what they recorded (they are history). Raises Refused (audited)
    without ``approve_waiver``, without a reason, or when the waiver is
    already revoked or has expired.
    """
    problem: tuple[str, str] | None = None
    with transaction.atomic():
        waiver = Waiver.objects.select_for_update().get(pk=waiver.pk)
        now = timezone.now()
        if not user_has_project_perm(actor, waiver.project_id, "approve_waiver"):
            problem = ("permission", "you may not revoke waivers on this project")
        elif not (reason or "").strip():
            problem = ("no_reason", "say why the waiver is revoked")
        elif waiver.revoked_at is not None:
            problem = ("not_active", "this waiver is already revoked")
        elif waiver.expires_at <= now:
            problem = ("expired", "this waiver has expired already")
        if problem is None:
            was_approved = waiver.approved_at is not None
            waiver.revoked_at = now
            waiver.revoked_by = actor
            waiver.revoke_reason = reason.strip()
            waiver.save(update_fields=["revoked_at", "revoked_by", "revoke_reason"])
            audit.record(
                actor=actor,
                action="governance.waiver.revoked",
                target=waiver,
                data={
                    "check_id": waiver.check_id,
                    "profile": waiver.profile,
                    "target_table": waiver.target_table,
                    "was_approved": was_approved,
                },
            )
            return waiver
    code, message = problem
    raise audit.refuse(
        actor=actor,
        action="governance.waiver.revoke_refused",
        reason=message,
        code=code,
        target=waiver,
        data={"check_id": waiver.check_id, "profile": waiver.profile},
    )
