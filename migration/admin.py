"""django-q2's admin pages, held to the product's rules.

django-q2 registers its own admin for schedules, task results and (with the
ORM broker) the queue. As shipped, a staff user with the model permissions
could schedule any importable callable with any arguments (``func`` and
``hook`` are dotted paths), resubmit any finished task -- a run's task
included, around the run services -- and delete task history, none of it in
the audit chain. Here:

- schedules are the product's own (``migration.schedules.SCHEDULES``,
  written by every ``migrate``): none added or deleted in the admin; their
  timing (interval, cron, next run, repeats, cluster) can change, audited
  with the names of the fields changed; what they call, with what, cannot;
- task results are read-only, with no "resubmit" action: a run is resumed
  or cancelled on its page or through the API, where the run services check
  its state and audit the request; deleting task history is audited;
- the ORM queue is read-only: what a worker holds is the workers' business.
"""

from __future__ import annotations

from typing import Any

import django_q.admin as q_admin  # registers django-q2's admin first
from django import forms
from django.contrib import admin
from django.http import HttpRequest
from django_q.models import Failure, OrmQ, Schedule, Success

from governance.admin import AuditedAdmin

SCHEDULE_TIMING = ("schedule_type", "minutes", "cron", "next_run", "repeats", "cluster")


def _without_resubmit(actions: dict[str, Any]) -> dict[str, Any]:
    actions.pop("resubmit_task", None)
    return actions


class ScheduleTimingForm(forms.ModelForm):
    class Meta:
        model = Schedule
        fields = list(SCHEDULE_TIMING)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        kind = data.get("schedule_type")
        if kind == Schedule.MINUTES and not (data.get("minutes") or 0) > 0:
            self.add_error(
                "minutes", "A schedule every N minutes needs N of 1 or more."
            )
        if kind == Schedule.CRON and not data.get("cron"):
            self.add_error("cron", "A cron schedule needs a cron expression.")
        return data


class AuditedScheduleAdmin(AuditedAdmin, q_admin.ScheduleAdmin):
    """The product's schedules: timing editable and audited; nothing else."""

    form = ScheduleTimingForm
    fields = ("name", "func", *SCHEDULE_TIMING, "get_last_run")
    readonly_fields = ("name", "func", "get_last_run")
    actions: list[Any] = []

    def audit_label(self, obj: Schedule) -> str:
        return f"schedule {obj.name!r} ({obj.func})"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class _AuditedTaskResults(AuditedAdmin):
    """Task results: read-only, deletion audited, no resubmit."""

    def audit_label(self, obj: Any) -> str:
        # The task's name and function; its arguments are ids, but a result
        # may hold a message, so neither is copied into the chain.
        return f"task {obj.name!r} ({obj.func})"

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        return _without_resubmit(super().get_actions(request))

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class AuditedSuccessAdmin(_AuditedTaskResults, q_admin.TaskAdmin):
    pass


class AuditedFailureAdmin(_AuditedTaskResults, q_admin.FailAdmin):
    pass


class ReadOnlyQueueAdmin(q_admin.QueueAdmin):
    """What the ORM broker holds: to look at, not to edit or drop."""

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


for model, model_admin in (
    (Schedule, AuditedScheduleAdmin),
    (Success, AuditedSuccessAdmin),
    (Failure, AuditedFailureAdmin),
    (OrmQ, ReadOnlyQueueAdmin),
):
    registered = admin.site.is_registered(model)
    if registered:
        admin.site.unregister(model)
    if registered or model is not OrmQ:
        admin.site.register(model, model_admin)
