"""Sign-offs: a named person's decision in one role, bound to a run and its contract.

Which roles a profile needs comes from the engine's gate profiles (versioned
data), never from a list here. A sign-off records the run's contract hash at
the moment of signing; if the run is superseded or its contract changes, the
run machinery calls :func:`signoffs_void_for`, and the gate evaluation ignores
any sign-off whose hash no longer matches in any case.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.dispatch import receiver
from django.http import Http404
from django.utils import timezone

from governance import audit
from governance.access import user_has_project_perm
from governance.gates import engine_run_id, gate_profiles
from governance.models import SignOff, SignOffDecision
from governance.services import roles_of
from migration.models import Run, RunState
from migration.signals import run_superseded


def signoff_record(
    *,
    actor: Any,
    run: Run,
    role: str,
    decision: str,
    comment: str = "",
    profile: str = "cutover_ready",
) -> SignOff:
    """Record ``actor``'s sign-off in ``role`` on ``run`` and audit it.

    Raises Refused (audited, nothing stored): ``permission`` (no ``sign_off``),
    ``unknown_profile``, ``role_not_required``, ``wrong_role`` (role not held),
    ``bad_decision``, ``superseded``, ``run_not_finished``, ``second_role`` (the
    person already signed in another role), ``role_taken`` / ``already_signed``.
    """
    profiles = gate_profiles()
    problem: tuple[str, str] | None = None
    with transaction.atomic():
        # Lock the run so a concurrent supersede/void cannot slip between the
        # checks below and the insert.
        run = Run.objects.select_for_update().select_related("contract").get(pk=run.pk)
        live = SignOff.objects.filter(run=run, profile=profile, voided_at__isnull=True)
        if not user_has_project_perm(actor, run.project_id, "sign_off"):
            problem = ("permission", "you may not sign off on this project")
        elif profile not in profiles:
            problem = ("unknown_profile", f"unknown gate profile {profile!r}")
        elif role not in profiles[profile].required_signoffs:
            problem = (
                "role_not_required",
                f"profile {profile} does not ask for a {role} sign-off",
            )
        elif role not in roles_of(user=actor, project=run.project_id):
            problem = ("wrong_role", f"you do not hold the {role} role on this project")
        elif decision not in SignOffDecision.values:
            problem = (
                "bad_decision",
                f"decision must be one of {SignOffDecision.values}",
            )
        elif run.superseded_by_id is not None:
            problem = (
                "superseded",
                f"run {run.pk} was superseded by run {run.superseded_by_id}",
            )
        elif run.state != RunState.SUCCEEDED:
            problem = (
                "run_not_finished",
                f"run {run.pk} is {run.state}; only a succeeded run can be signed",
            )
        elif mine := live.filter(user=actor).first():
            problem = (
                ("already_signed", f"you already signed this run as {mine.role}")
                if mine.role == role
                else (
                    "second_role",
                    f"you already signed this run as {mine.role}; one person "
                    "cannot sign for two roles",
                )
            )
        elif live.filter(role=role).exists():
            problem = (
                "role_taken",
                f"the {role} sign-off on this run is already given",
            )
        else:
            try:
                # Savepoint: a unique-constraint race must not poison the block.
                with transaction.atomic():
                    signoff = SignOff.objects.create(
                        run=run,
                        contract_sha256=run.contract.sha256,
                        profile=profile,
                        role=role,
                        user=actor,
                        decision=decision,
                        comment=comment,
                    )
            except IntegrityError:
                problem = ("role_taken", "a concurrent sign-off took this place")
            else:
                audit.record(
                    actor=actor,
                    action="governance.signoff.recorded",
                    target=run,
                    data={
                        "signoff": signoff.pk,
                        "run": run.pk,
                        "engine_run_id": engine_run_id(run),
                        "profile": profile,
                        "role": role,
                        "decision": decision,
                        "contract_sha256": signoff.contract_sha256,
                    },
                )
                return signoff
    code, message = problem
    raise audit.refuse(
        actor=actor,
        action="governance.signoff.refused",
        reason=message,
        code=code,
        target=run,
        data={"run": run.pk, "profile": profile, "role": role},
    )


def signoffs_void_for(*, run: Run, reason: str, actor: Any = None) -> int:
    """Void the run's live sign-offs (superseded run, changed contract); return how many.

    Audits one ``governance.signoff.voided`` event per voided sign-off.
    """
    reason = (reason or "voided").strip()[:200]
    with transaction.atomic():
        live = list(
            SignOff.objects.select_for_update()
            .filter(run=run, voided_at__isnull=True)
            .order_by("pk")
        )
        now = timezone.now()
        for s in live:
            s.voided_at = now
            s.void_reason = reason
            s.save(update_fields=["voided_at", "void_reason"])
            audit.record(
                actor=actor or "system",
                action="governance.signoff.voided",
                target=run,
                data={
                    "signoff": s.pk,
                    "run": run.pk,
                    "profile": s.profile,
                    "role": s.role,
                    "user": s.user.get_username(),
                    "contract_sha256": s.contract_sha256,
                    "reason": reason,
                },
            )
    return len(live)


@receiver(run_superseded, dispatch_uid="governance.signoffs.void_on_supersede")
def signoffs_void_on_supersede(sender: Any, run: Run, by: Run, **kwargs: Any) -> None:
    """Void the superseded run's sign-offs (connected once this module is imported)."""
    signoffs_void_for(run=run, reason=f"superseded by run {by.pk}")


def signoffs_status(*, run: Run, profile: str = "cutover_ready") -> dict[str, Any]:
    """Return the required roles, who signed (and how), and which roles are missing.

    A sign-off bound to another contract hash than the run's current one is
    listed as ``stale`` and does not count. Raises Http404 for an unknown profile.
    """
    profiles = gate_profiles()
    if profile not in profiles:
        raise Http404(f"unknown gate profile {profile!r}")
    required = list(profiles[profile].required_signoffs)
    current_sha = run.contract.sha256
    signed: dict[str, dict[str, Any]] = {}
    stale: list[dict[str, Any]] = []
    live = (
        SignOff.objects.filter(run=run, profile=profile, voided_at__isnull=True)
        .select_related("user")
        .order_by("role")
    )
    for s in live:
        entry = {
            "role": s.role,
            "user": s.user.get_username(),
            "name": s.user.get_full_name(),
            "decision": s.decision,
            "comment": s.comment,
            "signed_at": s.signed_at,
            "contract_sha256": s.contract_sha256,
        }
        if s.contract_sha256 != current_sha:
            stale.append(entry)
        else:
            signed[s.role] = entry
    approved = {
        r for r, e in signed.items() if e["decision"] == SignOffDecision.APPROVE
    }
    return {
        "profile": profile,
        "run": run.pk,
        "contract_sha256": current_sha,
        "required": required,
        "signed": [signed[r] for r in required if r in signed],
        "missing": [r for r in required if r not in signed],
        "rejected": [r for r in required if r in signed and r not in approved],
        "stale": stale,
        "complete": all(r in approved for r in required),
    }
