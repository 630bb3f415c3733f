"""The seed's lifecycle in one call: generate → register → contract → run →
reconcile → gate. Used by ``manage.py run_lifecycle`` and ``make run``.

It acts as a named service account that holds real roles on its project, so
the command goes through exactly the permission checks and audit trail a
person would.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import os
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError

from connectors.models import Connector
from connectors.services import connector_create, connector_update
from governance.gates import gate_evaluate
from governance.models import GateEvaluation, MigrationProject
from governance.services import membership_grant, project_create, role_groups_ensure
from migration.legacypas import generate
from migration.models import Run, RunTable
from migration.selectors_misses import run_crosswalk_misses
from migration.services.contracts import contract_import_default
from migration.services.runs import run_start
from migration.tasks import run_execute

SERVICE_USER = "lifecycle"
PROJECT_SLUG = "lifecycle"
#: Where a PostgreSQL target's password is read from (a reference is stored).
TARGET_PASSWORD_VARIABLE = "PAS_TARGET_PASSWORD"  # noqa: S105 (a name)


def target_config_from_url(
    url: str, env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Return a postgresql connector config from a URL; the password becomes env:.

    The password in the URL is never stored: the connector refers to
    ``PAS_TARGET_PASSWORD``, which must then hold that same password (else
    every run against the target would fail to sign in, later and elsewhere).
    Raises ValueError naming the problem -- never the password.
    """
    parsed = urlparse(url)
    if parsed.scheme not in ("postgres", "postgresql"):
        raise ValueError("the target URL must start with postgresql://")
    config: dict[str, Any] = {
        "host": parsed.hostname or "127.0.0.1",
        "port": parsed.port or 5432,
        "dbname": (parsed.path or "/postgres").lstrip("/") or "postgres",
        "user": unquote(parsed.username or "postgres"),
        "schema": "pas_target",
    }
    env = os.environ if env is None else env
    if parsed.password:
        held = env.get(TARGET_PASSWORD_VARIABLE)
        if held is None:
            raise ValueError(
                "the target URL holds a password, which is never stored: set "
                f"{TARGET_PASSWORD_VARIABLE} to it (the target connector reads "
                f"env:{TARGET_PASSWORD_VARIABLE}) and leave it out of the URL"
            )
        if not hmac.compare_digest(held, unquote(parsed.password)):
            raise ValueError(
                f"the target URL's password is not the one in "
                f"{TARGET_PASSWORD_VARIABLE}, which the target connector reads: "
                "leave it out of the URL"
            )
    if TARGET_PASSWORD_VARIABLE in env:
        # Never store the secret itself: point at the variable that holds it.
        config["password"] = f"env:{TARGET_PASSWORD_VARIABLE}"
    return config


class LifecycleInputError(ValueError):
    """Settings given to the lifecycle that cannot work (named; never a secret)."""


def _service_account(project: MigrationProject) -> Any:
    user, _ = get_user_model().objects.get_or_create(
        username=SERVICE_USER,
        defaults={"first_name": "Lifecycle", "last_name": "command"},
    )
    if user.has_usable_password():
        user.set_unusable_password()  # a service account never signs in
        user.save()
    for role in ("dm_engineer", "migration_lead"):
        membership_grant(actor="run_lifecycle", project=project, user=user, role=role)
    return user


def _connector(
    *,
    actor: Any,
    project: MigrationProject,
    name: str,
    kind: str,
    role: str,
    config: dict[str, Any],
) -> Connector:
    """Register (or update) a connector through the connector services.

    So the settings given on the command line are checked as the pages and
    the API check them (an unknown kind or a missing field is refused
    before any run, naming the field), and a secret in them -- a password
    in ``--source`` JSON -- is stored encrypted, never in the plain config.
    A connector of another kind under the same name is left to the runs
    that used it: this one is registered as ``name-kind``.
    """
    existing = Connector.objects.filter(project=project, name=name).first()
    if existing is not None and (existing.kind, existing.role) != (kind, role):
        name = f"{name}-{kind}"
        existing = Connector.objects.filter(project=project, name=name).first()
    try:
        if existing is None:
            return connector_create(
                actor=actor,
                project=project,
                name=name,
                kind=kind,
                role=role,
                config=config,
            )
        return connector_update(actor=actor, connector=existing, config=config)
    except ValidationError as exc:
        problems = (
            "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
            if hasattr(exc, "error_dict")
            else "; ".join(exc.messages)
        )
        raise LifecycleInputError(
            f"the {role} connector's settings: {problems}"
        ) from None


def lifecycle_run(
    *,
    patients: int,
    seed: int,
    profile: str,
    work_dir: Path,
    source: dict[str, Any] | None = None,
    target: dict[str, Any] | None = None,
    defect_rate: float = 0.01,
    progress: Callable[[Any], None] | None = None,
    project_slug: str = PROJECT_SLUG,
) -> dict[str, Any]:
    """Run the whole lifecycle and return a summary (run, ledger, rejects, gate)."""
    role_groups_ensure()
    project = MigrationProject.objects.filter(slug=project_slug).first()
    if project is None:
        project = project_create(
            actor="run_lifecycle",
            name="Lifecycle demo" if project_slug == PROJECT_SLUG else project_slug,
            slug=project_slug,
            description="Created by manage.py run_lifecycle",
        )
    user = _service_account(project)
    legacy_dir = work_dir / f"legacy-{patients}-{seed}"
    manifest = legacy_dir / "manifest.json"
    db_file = str(legacy_dir / "legacy_pas.sqlite3")
    src_spec = dict(
        source or {"kind": "odbc", "driver": "SQLite3", "database": db_file}
    )
    tgt_spec = dict(
        target or {"kind": "sqlite", "path": str(work_dir / "target.sqlite3")}
    )
    # The connectors first: settings that cannot work stop the command
    # before anything is generated.
    src = _connector(
        actor=user,
        project=project,
        name="legacy-pas",
        role="source",
        kind=src_spec.pop("kind"),
        config=src_spec,
    )
    tgt = _connector(
        actor=user,
        project=project,
        name="target",
        role="target",
        kind=tgt_spec.pop("kind"),
        config=tgt_spec,
    )
    if not manifest.exists():
        generate(
            patients=patients,
            seed=seed,
            out=str(legacy_dir),
            fmt="sqlite",
            defect_rate=defect_rate,
        )
    contract = contract_import_default(actor=user, project=project)
    extract_date = json.loads(manifest.read_text()).get("extract_date")
    run = run_start(
        actor=user,
        contract=contract,
        source=src,
        target=tgt,
        profile=profile,
        as_of=dt.date.fromisoformat(extract_date) if extract_date else None,
        enqueue=False,
    )
    run_execute(run.pk, progress_hook=progress)
    run.refresh_from_db()
    # The run's gate was evaluated when it finished (governance.receivers);
    # evaluate here only if that did not happen (e.g. the run failed early).
    evaluation: GateEvaluation | None = run.gates.filter(profile=profile).first()
    if evaluation is None and run.state == "succeeded":
        evaluation = gate_evaluate(actor=user, run=run, profile=profile)
    return summary(run=run, evaluation=evaluation)


def summary(*, run: Run, evaluation: GateEvaluation | None) -> dict[str, Any]:
    """Return a JSON-able summary of a run and its gate evaluation."""
    ledger = [
        {
            "table": t.target_table,
            "source": t.rows_total,
            "read": t.rows_read,
            "loaded": t.rows_loaded,
            "rejected": t.rows_rejected,
            "excluded": t.rows_excluded,
            "balanced": t.ledger_balanced,
        }
        for t in RunTable.objects.filter(run=run).order_by("order")
    ]
    reasons: Counter[str] = Counter()
    for t in run.report.get("tables", []):
        reasons.update(t.get("rejects_by_reason", {}))
    gate: dict[str, Any] | None = None
    if evaluation is not None:
        gate = {
            "profile": evaluation.profile,
            "profile_version": evaluation.profile_version,
            "status": evaluation.status,
            "reasons": evaluation.reasons,
            "checks": [
                {
                    "check": c.check_id,
                    "scope": c.target_table,
                    "category": c.category,
                    "severity": c.severity,
                    "status": c.status,
                    "numerator": c.numerator,
                    "denominator": c.denominator,
                    "threshold": c.threshold,
                }
                for c in evaluation.checks.all()
            ],
        }
    misses = [
        {
            "crosswalk": m.ref,
            "distinct": m.distinct,
            "rows": m.rows,
            "rejected": m.rejected,
            "defaulted": m.defaulted,
            "queued": m.crosswalk is not None,
        }
        for m in run_crosswalk_misses(run)
    ]
    return {
        "run": run.pk,
        "state": run.state,
        "error": run.error,
        "contract_sha256": run.contract.sha256,
        "ledger": ledger,
        "top_reject_reasons": reasons.most_common(10),
        "untranslated_codes": misses,
        "gate": gate,
        "report": run.report,
    }
