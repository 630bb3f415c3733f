"""What a run's crosswalks could not translate: counted, never the values.

Two kinds of miss: a local value a strict lookup rejected (a reject record
with reason ``crosswalk_miss``) and one a lenient lookup filled with the
crosswalk's default (counted in the run report, loaded with a guessed
national code). The miss queue takes both, per crosswalk the project manages;
the run page shows their totals, and says when a crosswalk is not managed
in the project, so its misses reach no queue.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from django.db.models import Count

from migration.models import Crosswalk, MissQueueEntry, RejectRecord, Run


def run_miss_counts(
    run: Run,
) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    """Return (rows per crosswalk id and local value, of them defaulted)."""
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    defaulted: dict[str, dict[str, int]] = defaultdict(dict)
    rows = (
        RejectRecord.objects.filter(run=run, reason_code="crosswalk_miss")
        .exclude(crosswalk_ref="")
        .values("crosswalk_ref", "raw_value")
        .annotate(n=Count("id"))
    )
    for row in rows:
        counts[row["crosswalk_ref"]][row["raw_value"]] = row["n"]
    for table in (run.report or {}).get("tables", []):
        for ref, codes in (table.get("defaulted_codes") or {}).items():
            for value, n in codes.items():
                defaulted[ref][value] = defaulted[ref].get(value, 0) + int(n)
                counts[ref][value] = counts[ref].get(value, 0) + int(n)
    return dict(counts), dict(defaulted)


@dataclass(frozen=True)
class CrosswalkMisses:
    """One crosswalk's misses in one run."""

    ref: str
    distinct: int
    rows: int
    defaulted: int
    crosswalk: Crosswalk | None
    open_entries: int

    @property
    def rejected(self) -> int:
        return self.rows - self.defaulted


def run_crosswalk_misses(run: Run) -> list[CrosswalkMisses]:
    """Return each crosswalk's misses in ``run``, the most rows first."""
    counts, defaulted = run_miss_counts(run)
    if not counts:
        return []
    managed = {
        x.slug: x
        for x in Crosswalk.objects.filter(project_id=run.project_id, slug__in=counts)
    }
    open_by_xw = dict(
        MissQueueEntry.objects.filter(run=run, state=MissQueueEntry.State.OPEN)
        .values_list("crosswalk_id")
        .annotate(n=Count("pk"))
        .values_list("crosswalk_id", "n")
    )
    out = [
        CrosswalkMisses(
            ref=ref,
            distinct=len(values),
            rows=sum(values.values()),
            defaulted=sum(defaulted.get(ref, {}).values()),
            crosswalk=managed.get(ref),
            open_entries=open_by_xw.get(managed[ref].pk, 0) if ref in managed else 0,
        )
        for ref, values in counts.items()
    ]
    return sorted(out, key=lambda m: (-m.rows, m.ref))
