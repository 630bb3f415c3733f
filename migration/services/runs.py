"""Run state machine: queued → running → succeeded | failed | cancelled.

Every transition is one atomic function that writes its audit event in the same
transaction. Workers claim a run with a conditional UPDATE (exactly one of two
simultaneous claims wins) and hold a lease they renew with heartbeats; a run
whose lease expired is either re-claimed by a re-delivered task or marked failed
by the stale-run schedule, and can be resumed: the engine continues from its
checkpoints, so nothing is lost or duplicated.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from connectors.models import Connector, ConnectorRole
from governance import audit
from governance.access import user_has_project_perm
from migration.models import Contract, RangeState, Run, RunRange, RunState
from migration.signals import run_finished, run_superseded

TERMINAL = {RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED}
PROFILES = ("development", "pre_production", "cutover_ready")


def _enqueue(run_id: int) -> None:
    from django_q.tasks import async_task

    # Ids only: task arguments are pickled into the broker.
    async_task("migration.tasks.run_execute", run_id, task_name=f"run-{run_id}")


def _enqueue_range(run_id: int, range_pk: int) -> None:
    from django_q.tasks import async_task

    async_task(
        "migration.tasks.run_execute_range",
        run_id,
        range_pk,
        task_name=f"run-{run_id}-range-{range_pk}",
    )


def _enqueue_finalize(run_id: int) -> None:
    from django_q.tasks import async_task

    async_task(
        "migration.tasks.run_finalize", run_id, task_name=f"run-{run_id}-finalize"
    )


def _require(
    actor: Any, project: Any, perm: str, action: str, target: Any = None
) -> None:
    if actor is not None and not isinstance(actor, str):
        if not user_has_project_perm(actor, project, perm):
            raise audit.refuse(
                actor=actor,
                action=action,
                target=target,
                project=project,
                reason=f"you need the {perm} permission on this project",
                code="forbidden",
            )


def run_start(
    *,
    actor: Any,
    contract: Contract,
    source: Connector,
    target: Connector,
    profile: str = "development",
    as_of: dt.date | None = None,
    enqueue: bool = True,
) -> Run:
    """Create a queued run and enqueue its execution on commit; return it.

    ``enqueue=False`` leaves it queued for a caller that executes it inline
    (the lifecycle command); a worker would still claim it exactly once.

    Raises Refused (audited) without the start_run permission, for connectors
    of the wrong role or another project, or an unknown gate profile.
    """
    project = contract.project
    _require(actor, project, "start_run", "migration.run.start_refused", contract)
    problem = ""
    if source.project_id != project.pk or target.project_id != project.pk:
        problem = "the connectors must belong to the contract's project"
    elif source.role != ConnectorRole.SOURCE:
        problem = f"connector {source.name!r} is not a source"
    elif target.role != ConnectorRole.TARGET:
        problem = f"connector {target.name!r} is not a target"
    elif profile not in PROFILES:
        problem = f"unknown gate profile {profile!r}; use one of {', '.join(PROFILES)}"
    if problem:
        raise audit.refuse(
            actor=actor,
            action="migration.run.start_refused",
            reason=problem,
            code="invalid",
            target=contract,
        )
    with transaction.atomic():
        run = Run.objects.create(
            project=project,
            contract=contract,
            source=source,
            target=target,
            profile=profile,
            as_of=as_of,
            created_by=None if isinstance(actor, str) or actor is None else actor,
        )
        audit.record(
            actor=actor,
            action="migration.run.created",
            target=run,
            data={
                "contract": contract.sha256,
                "source": source.pk,
                "target": target.pk,
                "profile": profile,
            },
        )
        if enqueue:
            transaction.on_commit(lambda: _enqueue(run.pk))
    return run


def run_claim(*, run_id: int, worker: str) -> bool:
    """Claim a queued run (or one whose lease expired) for ``worker``; True if won.

    One conditional UPDATE: two workers racing for the same run cannot both win.
    """
    now = timezone.now()
    lease = dt.timedelta(seconds=settings.PAS_RUN_LEASE_SECONDS)
    with transaction.atomic():
        won = Run.objects.filter(
            Q(state=RunState.QUEUED)
            | Q(state=RunState.RUNNING, lease_expires_at__lt=now),
            pk=run_id,
            cancel_requested=False,
        ).update(
            state=RunState.RUNNING,
            lease_owner=worker,
            lease_expires_at=now + lease,
            heartbeat_at=now,
            started_at=Coalesce(F("started_at"), now),
            attempts=F("attempts") + 1,
            error="",
        )
        if won:
            run = Run.objects.get(pk=run_id)
            audit.record(
                actor="worker",
                action="migration.run.started",
                target=run,
                data={"worker": worker, "attempt": run.attempts},
            )
    return bool(won)


def run_heartbeat(*, run_id: int, worker: str) -> bool:
    """Renew the lease of a run this worker holds; False if the lease was lost."""
    now = timezone.now()
    lease = dt.timedelta(seconds=settings.PAS_RUN_LEASE_SECONDS)
    return bool(
        Run.objects.filter(
            pk=run_id, state=RunState.RUNNING, lease_owner=worker
        ).update(heartbeat_at=now, lease_expires_at=now + lease)
    )


def run_finish(*, run_id: int, worker: str, state: str, error: str = "") -> bool:
    """Move a run this worker holds to a terminal state; False if it lost the lease."""
    with transaction.atomic():
        updated = Run.objects.filter(
            pk=run_id, state=RunState.RUNNING, lease_owner=worker
        ).update(
            state=state,
            finished_at=timezone.now(),
            lease_expires_at=None,
            error=error[:2000],
            stage="done" if state == RunState.SUCCEEDED else F("stage"),
        )
        if not updated:
            return False
        run = Run.objects.select_related("contract").get(pk=run_id)
        audit.record(
            actor="worker",
            action=f"migration.run.{state}",
            target=run,
            data={"error": error[:500]} if error else {},
        )
        superseded: list[Run] = []
        if state == RunState.SUCCEEDED:
            # A newer successful run of the same project into the same target
            # supersedes older ones: their sign-offs no longer describe the data.
            superseded = list(
                Run.objects.filter(
                    project_id=run.project_id,
                    target_id=run.target_id,
                    state=RunState.SUCCEEDED,
                    superseded_by__isnull=True,
                ).exclude(pk=run.pk)
            )
            for old in superseded:
                Run.objects.filter(pk=old.pk).update(superseded_by=run)
                audit.record(
                    actor="worker",
                    action="migration.run.superseded",
                    target=old,
                    data={"by": run.pk},
                )
        transaction.on_commit(lambda: run_finished.send(sender=Run, run=run))
        for old in superseded:
            transaction.on_commit(
                lambda old=old: run_superseded.send(sender=Run, run=old, by=run)
            )
    return True


def run_cancel(*, actor: Any, run: Run) -> Run:
    """Cancel a queued run now, or ask a running one to stop at its next chunk.

    Raises Refused (audited) for a run already finished or cancelled.
    """
    _require(actor, run.project, "start_run", "migration.run.cancel_refused", run)
    with transaction.atomic():
        locked = Run.objects.select_for_update().get(pk=run.pk)
        if locked.state in TERMINAL or locked.cancel_requested:
            problem = f"a {locked.state} run cannot be cancelled"
        else:
            problem = ""
            if locked.state == RunState.QUEUED:
                locked.state = RunState.CANCELLED
                locked.finished_at = timezone.now()
            locked.cancel_requested = True
            locked.save(update_fields=["state", "finished_at", "cancel_requested"])
            audit.record(
                actor=actor, action="migration.run.cancel_requested", target=locked
            )
    if problem:
        raise audit.refuse(
            actor=actor,
            action="migration.run.cancel_refused",
            reason=problem,
            code="illegal_transition",
            target=run,
        )
    return locked


def run_resume(*, actor: Any, run: Run) -> Run:
    """Re-queue a failed or cancelled run; the engine continues from checkpoints.

    Raises Refused (audited) for a queued, running or succeeded run.
    """
    _require(actor, run.project, "start_run", "migration.run.resume_refused", run)
    with transaction.atomic():
        locked = Run.objects.select_for_update().get(pk=run.pk)
        if locked.state not in (RunState.FAILED, RunState.CANCELLED):
            problem = f"a {locked.state} run cannot be resumed"
        else:
            problem = ""
            locked.state = RunState.QUEUED
            locked.cancel_requested = False
            locked.finished_at = None
            locked.save(update_fields=["state", "cancel_requested", "finished_at"])
            audit.record(actor=actor, action="migration.run.resumed", target=locked)
            transaction.on_commit(lambda: _enqueue(locked.pk))
    if problem:
        raise audit.refuse(
            actor=actor,
            action="migration.run.resume_refused",
            reason=problem,
            code="illegal_transition",
            target=run,
        )
    return locked


def runs_mark_stale(*, grace_seconds: int = 10) -> list[int]:
    """Fail running runs whose lease expired more than ``grace_seconds`` ago.

    Returns their ids. They can be resumed; the schedule calls this. Ranges
    of scaled-out runs whose worker died are re-queued first (the run stays
    running while another worker holds its lease).
    """
    ranges_mark_stale(grace_seconds=grace_seconds)
    cutoff = timezone.now() - dt.timedelta(seconds=grace_seconds)
    stale: list[int] = []
    for run in Run.objects.filter(state=RunState.RUNNING, lease_expires_at__lt=cutoff):
        with transaction.atomic():
            updated = Run.objects.filter(
                pk=run.pk, state=RunState.RUNNING, lease_expires_at__lt=cutoff
            ).update(
                state=RunState.FAILED,
                finished_at=timezone.now(),
                error="worker lost: lease expired without a heartbeat; resume to continue",
                lease_owner="",
            )
            if updated:
                audit.record(
                    actor="scheduler",
                    action="migration.run.worker_lost",
                    target=run,
                    data={"lease_owner": run.lease_owner},
                )
                stale.append(run.pk)
    return stale


# --- scale-out: key ranges as separate tasks ---------------------------------
#
# While its ranges load, a run's lease belongs to the token ``ranges:<id>``:
# every range worker renews it with its own heartbeat, so the run stays
# ``running`` while any range worker lives and goes stale (R4) when none does.
# The last range to finish hands the run to ``finalize:<id>``; the finalize
# task claims it from that token with a conditional UPDATE.


def ranges_token(run_id: int) -> str:
    """Return the lease owner of a run whose ranges are loading."""
    return f"ranges:{run_id}"


def finalize_token(run_id: int) -> str:
    """Return the lease owner of a run waiting for its finalize task."""
    return f"finalize:{run_id}"


def _lease() -> dt.timedelta:
    return dt.timedelta(seconds=settings.PAS_RUN_LEASE_SECONDS)


def ranges_dispatch(
    *, run_id: int, worker: str, plan: list[tuple[str, str, str, str]] | None
) -> int:
    """Hand a claimed run to its range tasks; return how many were enqueued.

    ``plan`` is ``(table, range_id, after_json, upto_json)`` per range, used only
    when the run has no ranges yet (a resumed run keeps its plan). Ranges that
    failed or whose worker's lease expired go back to queued; ranges still
    held by a live worker are left to it. Returns 0 when every range is done
    (the caller finalizes). The enqueues happen on commit.
    """
    now = timezone.now()
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run_id)
        if run.state != RunState.RUNNING or run.lease_owner != worker:
            return -1
        if plan is not None and not RunRange.objects.filter(run_id=run_id).exists():
            RunRange.objects.bulk_create(
                RunRange(
                    run_id=run_id,
                    target_table=table,
                    range_id=range_id,
                    order=i,
                    after_key=after,
                    upto_key=upto,
                )
                for i, (table, range_id, after, upto) in enumerate(plan)
            )
        RunRange.objects.filter(
            Q(state=RangeState.FAILED)
            | Q(state=RangeState.RUNNING, lease_expires_at__lt=now),
            run_id=run_id,
        ).update(state=RangeState.QUEUED, lease_owner="", error="")
        queued = list(
            RunRange.objects.filter(run_id=run_id, state=RangeState.QUEUED)
            .order_by("order")
            .values_list("pk", flat=True)
        )
        pending = RunRange.objects.filter(run_id=run_id).exclude(state=RangeState.DONE)
        if not pending.exists():
            return 0
        Run.objects.filter(pk=run_id).update(
            lease_owner=ranges_token(run_id),
            lease_expires_at=now + _lease(),
            heartbeat_at=now,
            stage="ranges",
        )
        # A queued range's lease is the time by which its task should have
        # been taken; ``ranges_mark_stale`` re-enqueues it when a stalled run
        # shows the task was lost (a cluster killed with tasks it had fetched).
        RunRange.objects.filter(pk__in=queued).update(lease_expires_at=now + _lease())
        for pk in queued:
            transaction.on_commit(lambda pk=pk: _enqueue_range(run_id, pk))
    return max(len(queued), 1)


def range_claim(*, run_id: int, range_pk: int, worker: str) -> bool:
    """Claim a queued range (or one whose lease expired) of a loading run; True if won.

    One conditional UPDATE: two workers racing for the same range cannot both win.
    """
    now = timezone.now()
    loading = Run.objects.filter(
        pk=run_id,
        state=RunState.RUNNING,
        cancel_requested=False,
        lease_owner=ranges_token(run_id),
    )
    if not loading.exists():
        return False
    won = bool(
        RunRange.objects.filter(
            Q(state=RangeState.QUEUED)
            | Q(state=RangeState.RUNNING, lease_expires_at__lt=now),
            pk=range_pk,
            run_id=run_id,
        ).update(
            state=RangeState.RUNNING,
            lease_owner=worker,
            worker=worker,
            lease_expires_at=now + _lease(),
            heartbeat_at=now,
            started_at=Coalesce(F("started_at"), now),
            attempts=F("attempts") + 1,
            error="",
        )
    )
    if won:
        _renew_loading_run(run_id, now)
    return won


def _renew_loading_run(run_id: int, now: dt.datetime) -> None:
    """Renew the lease of a run whose ranges are loading (any range's sign of life).

    Range heartbeats renew it too, but only after a heartbeat interval: a
    run made of ranges shorter than that would otherwise never be renewed and
    go stale while its workers are busy.
    """
    Run.objects.filter(
        pk=run_id, state=RunState.RUNNING, lease_owner=ranges_token(run_id)
    ).update(heartbeat_at=now, lease_expires_at=now + _lease())


def range_heartbeat(*, run_id: int, range_pk: int, worker: str) -> bool:
    """Renew the range's lease and the run's; False if either was lost."""
    now = timezone.now()
    mine = RunRange.objects.filter(
        pk=range_pk, state=RangeState.RUNNING, lease_owner=worker
    ).update(heartbeat_at=now, lease_expires_at=now + _lease())
    if not mine:
        return False
    return bool(
        Run.objects.filter(
            pk=run_id, state=RunState.RUNNING, lease_owner=ranges_token(run_id)
        ).update(heartbeat_at=now, lease_expires_at=now + _lease())
    )


def range_progress(*, range_pk: int, worker: str, counts: dict[str, int]) -> None:
    """Store a range's counts (read/loaded/rejected/excluded)."""
    RunRange.objects.filter(pk=range_pk, lease_owner=worker).update(**counts)


def range_done(
    *, run_id: int, range_pk: int, worker: str, counts: dict[str, int]
) -> bool:
    """Mark a range done; True if it was the last and the finalize was enqueued.

    The last range is detected without locks: after its own done commits, a
    worker that sees no unfinished range tries to move the run from the ranges
    token to the finalize token (conditional UPDATE) — exactly one wins.
    """
    now = timezone.now()
    updated = RunRange.objects.filter(
        pk=range_pk, state=RangeState.RUNNING, lease_owner=worker
    ).update(state=RangeState.DONE, lease_owner="", finished_at=now, **counts)
    if not updated:
        return False
    if RunRange.objects.filter(run_id=run_id).exclude(state=RangeState.DONE).exists():
        _renew_loading_run(run_id, now)
        return False
    with transaction.atomic():
        won = Run.objects.filter(
            pk=run_id, state=RunState.RUNNING, lease_owner=ranges_token(run_id)
        ).update(
            lease_owner=finalize_token(run_id),
            lease_expires_at=now + _lease(),
            heartbeat_at=now,
            stage="finalize",
        )
        if won:
            transaction.on_commit(lambda: _enqueue_finalize(run_id))
    return bool(won)


def range_release(*, run_id: int, range_pk: int, worker: str, error: str = "") -> None:
    """Give a range back after a stop (cancel, lost lease) or a failure (``error``).

    A failed range fails the run (its other ranges stop at their next
    heartbeat); a stopped one goes back to queued and, if the run is still
    loading, is enqueued again. When a cancel is pending and no range runs any
    more, the run ends cancelled.
    """
    state = RangeState.FAILED if error else RangeState.QUEUED
    token = ranges_token(run_id)
    with transaction.atomic():
        # The run row lock orders this against ranges_dispatch of a resume:
        # either it sees the range queued, or this sees the run loading again.
        run = Run.objects.select_for_update().get(pk=run_id)
        RunRange.objects.filter(pk=range_pk, lease_owner=worker).update(
            state=state, lease_owner="", lease_expires_at=None, error=error[:2000]
        )
        loading = (
            run.state == RunState.RUNNING
            and run.lease_owner == token
            and not run.cancel_requested
        )
        if loading and not error:
            transaction.on_commit(lambda: _enqueue_range(run_id, range_pk))
    if error:
        run_finish(run_id=run_id, worker=token, state=RunState.FAILED, error=error)
        return
    ranges_settle(run_id=run_id)


def ranges_settle(*, run_id: int) -> bool:
    """End a loading run as cancelled once a cancel is pending and no range runs."""
    token = ranges_token(run_id)
    if not Run.objects.filter(
        pk=run_id, state=RunState.RUNNING, lease_owner=token, cancel_requested=True
    ).exists():
        return False
    if RunRange.objects.filter(run_id=run_id, state=RangeState.RUNNING).exists():
        return False
    return run_finish(run_id=run_id, worker=token, state=RunState.CANCELLED)


def run_claim_finalize(*, run_id: int, worker: str) -> bool:
    """Take a run from the finalize token (or an expired lease of it); True if won."""
    now = timezone.now()
    return bool(
        Run.objects.filter(
            Q(lease_owner=finalize_token(run_id))
            | Q(lease_owner__startswith="finalize-worker:", lease_expires_at__lt=now),
            pk=run_id,
            state=RunState.RUNNING,
        ).update(
            lease_owner=worker,
            lease_expires_at=now + _lease(),
            heartbeat_at=now,
        )
    )


def _a_cluster_is_alive() -> bool:
    """Return True when the broker reports at least one running q2 cluster."""
    from django_q.brokers import get_broker
    from django_q.status import Stat

    try:
        return bool(Stat.get_all(broker=get_broker()))
    except Exception:  # unknown: behave as if none (the run then goes stale)
        return False


def _ranges_lost_in_the_queue(cutoff: dt.datetime) -> list[int]:
    """Re-enqueue queued ranges of stalled runs whose tasks were never taken.

    A q2 cluster fetches tasks ahead of running them; killed, it takes them
    along and the ranges stay queued for ever. A run is stalled when it has
    queued ranges past their take-by time and no range running under a live
    lease: then its queued ranges are enqueued again (a duplicate task is
    harmless: the claim is one conditional UPDATE) with a new take-by time.
    """
    now = timezone.now()
    again: list[int] = []
    alive: bool | None = None
    stalled = (
        RunRange.objects.filter(
            state=RangeState.QUEUED,
            lease_expires_at__lt=cutoff,
            run__state=RunState.RUNNING,
        )
        .values_list("run_id", flat=True)
        .distinct()
    )
    for run_id in list(stalled):
        busy = RunRange.objects.filter(
            run_id=run_id, state=RangeState.RUNNING, lease_expires_at__gte=now
        ).exists()
        if busy:
            continue  # the queue is moving: those ranges are only waiting
        with transaction.atomic():
            pks = list(
                RunRange.objects.select_for_update()
                .filter(
                    run_id=run_id, state=RangeState.QUEUED, lease_expires_at__lt=cutoff
                )
                .values_list("pk", flat=True)
            )
            if not pks:
                continue
            RunRange.objects.filter(pk__in=pks).update(lease_expires_at=now + _lease())
            if alive is None:
                alive = _a_cluster_is_alive()
            if alive:
                # Give a live cluster one lease to take them; with none alive
                # the run's lease runs out and the run goes stale (R4).
                _renew_loading_run(run_id, now)
            audit.record(
                actor="scheduler",
                action="migration.run.ranges_requeued",
                target=Run.objects.get(pk=run_id),
                data={
                    "ranges": pks,
                    "why": "queued tasks were not taken",
                    "run_lease_extended": alive,
                },
            )
            for pk in pks:
                transaction.on_commit(lambda pk=pk, r=run_id: _enqueue_range(r, pk))
            again += pks
    return again


def ranges_mark_stale(*, grace_seconds: int = 10) -> list[int]:
    """Re-queue ranges of loading runs whose worker died; return their ids.

    The range task is enqueued again and resumes from its own checkpoint.
    While a cluster is alive to take it, the run's own lease is extended by
    one lease period, so the run is not failed in the same breath for want of
    heartbeats (its other ranges may all be done: no one else renews it). If
    no cluster is alive the lease is left alone and the run goes stale (R4).
    """
    cutoff = timezone.now() - dt.timedelta(seconds=grace_seconds)
    requeued: list[int] = []
    alive: bool | None = None
    requeued += _ranges_lost_in_the_queue(cutoff)
    for rr in RunRange.objects.filter(
        state=RangeState.RUNNING,
        lease_expires_at__lt=cutoff,
        run__state=RunState.RUNNING,
    ).only("pk", "run_id", "lease_owner"):
        with transaction.atomic():
            updated = RunRange.objects.filter(
                pk=rr.pk, state=RangeState.RUNNING, lease_expires_at__lt=cutoff
            ).update(state=RangeState.QUEUED, lease_owner="")
            if updated:
                if alive is None:
                    alive = _a_cluster_is_alive()
                if alive:
                    Run.objects.filter(
                        pk=rr.run_id,
                        state=RunState.RUNNING,
                        lease_owner=ranges_token(rr.run_id),
                    ).update(lease_expires_at=timezone.now() + _lease())
                run = Run.objects.get(pk=rr.run_id)
                audit.record(
                    actor="scheduler",
                    action="migration.run.range_worker_lost",
                    target=run,
                    data={
                        "range": rr.pk,
                        "lease_owner": rr.lease_owner,
                        "run_lease_extended": alive,
                    },
                )
                transaction.on_commit(lambda rr=rr: _enqueue_range(rr.run_id, rr.pk))
                requeued.append(rr.pk)
    return requeued
