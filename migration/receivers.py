"""The migration app reacting to its own run signals."""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import receiver

from migration.models import Crosswalk, Run
from migration.selectors_misses import run_miss_counts
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
    counts, defaulted = run_miss_counts(run)
    for ref, values in counts.items():
        crosswalk = Crosswalk.objects.filter(
            project_id=run.project_id, slug=ref
        ).first()
        if crosswalk is None:
            # The contract embedded a crosswalk this project does not manage
            # (e.g. the packaged default before stewards seeded their own):
            # no queue to put them in. The run page says so, with the counts.
            log.warning(
                "run %s: %d untranslated code(s) for crosswalk %s, which this "
                "project does not manage: not queued",
                run.pk,
                len(values),
                ref,
            )
            continue
        missqueue_record(
            run=run, crosswalk=crosswalk, counts=values, defaulted=defaulted.get(ref)
        )
