"""Governance reacting to the run machinery's signals (migration never imports us).

- a finished run has its own gate profile evaluated, as the person who started
  it (when they may evaluate gates), so pages and the API show the outcome;
- a superseded run's sign-offs are voided (the receiver lives in signoffs.py).
"""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import receiver

from governance import signoffs  # noqa: F401  (connects void_on_supersede)
from governance.access import user_has_project_perm
from governance.audit import Refused
from governance.gates import FINISHED, gate_evaluate
from migration.models import Run
from migration.signals import run_finished

log = logging.getLogger("pasportal.governance")


@receiver(run_finished, dispatch_uid="governance.receivers.evaluate_on_finish")
def evaluate_on_finish(sender: Any, run: Run, **kwargs: Any) -> None:
    """Evaluate the run's profile once it finished; never break the worker."""
    run = Run.objects.select_related("created_by").get(pk=run.pk)
    actor = run.created_by
    if run.state not in FINISHED or actor is None:
        return
    if not user_has_project_perm(actor, run.project_id, "evaluate_gate"):
        return
    try:
        gate_evaluate(actor=actor, run=run, profile=run.profile)
    except Refused:
        pass  # already audited with its reason
    except Exception:
        log.exception("gate evaluation of run %s failed", run.pk)
