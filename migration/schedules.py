"""The django-q2 schedules PAS Portal relies on, kept in step after every migrate.

django-q2 runs its scheduler about every 30 s and schedules at minute grain, so
these are the safety net; ``manage.py run_monitor`` checks runs every few
seconds, which is what keeps R4 (a dead worker's run leaves ``running`` within
lease + heartbeat + 10 s).
"""

from __future__ import annotations

from typing import Any

SCHEDULES: tuple[dict[str, Any], ...] = (
    {
        "name": "pasportal: fail runs whose worker died",
        "func": "migration.tasks.runs_detect_stale",
        "schedule_type": "I",  # MINUTES
        "minutes": 1,
    },
    {
        "name": "pasportal: connector health checks",
        "func": "connectors.tasks.connectors_check_all",
        "schedule_type": "I",
        "minutes": 15,
    },
)


def schedules_ensure(**_: Any) -> None:
    """Create or update the product's q2 schedules (idempotent; post_migrate hook)."""
    from django_q.models import Schedule

    for spec in SCHEDULES:
        Schedule.objects.update_or_create(
            name=spec["name"],
            defaults={
                "func": spec["func"],
                "schedule_type": spec["schedule_type"],
                "minutes": spec["minutes"],
                "repeats": -1,
            },
        )
