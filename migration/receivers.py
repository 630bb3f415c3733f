"""The migration app reacting to its own run signals."""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

from django.db.models import Count
from django.dispatch import receiver

from migration.models import Crosswalk, RejectRecord, Run
from migration.services.crosswalks import missqueue_record
from migration.signals import run_finished

log = logging.getLogger("pasportal.runs")


@receiver(run_finished, dispatch_uid="migration.receivers.feed_miss_queue")
def feed_miss_queue(sender: Any, run: Run, **kwargs: Any) -> None:
    """Put a run's untranslatable local codes, with frequencies, in the miss queue.

    Both kinds of miss: values a strict lookup rejected (from the reject
    records) and values a lenient lookup filled with the crosswalk default
    (from the run report), so a defaulted code never goes unseen.
    """
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
    for ref, values in counts.items():
        crosswalk = Crosswalk.objects.filter(
            project_id=run.project_id, slug=ref
        ).first()
        if crosswalk is None:
            # The contract embedded a crosswalk this project does not manage
            # (e.g. the packaged default before stewards seeded their own).
            log.info("run %s: misses for unmanaged crosswalk %s", run.pk, ref)
            continue
        missqueue_record(
            run=run, crosswalk=crosswalk, counts=values, defaulted=defaulted[ref]
        )
