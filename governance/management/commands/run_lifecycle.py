"""``manage.py run_lifecycle``: generate, register, run, reconcile, gate — and say so.

Exit 0 when the gate passes, 1 when it fails (or the run fails), 2 on bad input.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError, CommandParser

from governance.lifecycle import (
    LifecycleInputError,
    lifecycle_run,
    target_config_from_url,
)
from migration.engine.gates import describe_measure, describe_threshold
from pasportal.commands import ControlPlaneCommand

PASSING = {"PASS", "PASS_WITH_VIOLATIONS"}


class Command(ControlPlaneCommand):
    help = "Run the whole migration lifecycle on a generated legacy PAS and gate it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--rows",
            type=int,
            default=20,
            help="patients to generate (the source's patient rows)",
        )
        parser.add_argument("--seed", type=int, default=42)
        parser.add_argument(
            "--min-patients",
            type=int,
            default=20,
            help="generate at least this many patients",
        )
        parser.add_argument("--defect-rate", type=float, default=0.01)
        parser.add_argument(
            "--release-profile",
            default="pre_production",
            choices=["development", "pre_production", "cutover_ready"],
        )
        parser.add_argument(
            "--source",
            default=None,
            help='source connector settings as JSON, e.g. {"kind": "sqlite", '
            '"path": "..."} (default: the generated PAS over ODBC)',
        )
        parser.add_argument(
            "--target",
            default=None,
            help="target: a postgresql:// URL or connector JSON "
            "(default: PAS_TARGET_URL, else a SQLite file)",
        )
        parser.add_argument(
            "--json", type=Path, default=None, help="write the full report"
        )
        parser.add_argument("--work-dir", type=Path, default=None)
        parser.add_argument(
            "--project", default="lifecycle", help="project slug (created when missing)"
        )

    def _spec(self, raw: str | None, what: str) -> dict[str, Any] | None:
        if raw is None:
            return None
        if raw.startswith(("postgres://", "postgresql://")):
            return {"kind": "postgresql", **self._from_url(raw, f"--{what}")}
        try:
            spec = json.loads(raw)
        except ValueError:
            raise CommandError(
                f"--{what} must be JSON or a postgresql:// URL", returncode=2
            ) from None
        if not isinstance(spec, dict) or "kind" not in spec:
            raise CommandError(f'--{what} JSON needs a "kind"', returncode=2)
        return spec

    def _from_url(self, url: str, what: str) -> dict[str, Any]:
        try:
            return target_config_from_url(url)
        except ValueError as exc:
            raise CommandError(f"{what}: {exc}", returncode=2) from None

    def handle(self, *args: Any, **options: Any) -> None:
        if options["rows"] <= 0 or options["min_patients"] < 0:
            raise CommandError(
                "--rows must be positive and --min-patients not negative",
                returncode=2,
            )
        patients = max(options["rows"], options["min_patients"])
        source = self._spec(options["source"], "source")
        target = self._spec(options["target"], "target")
        if target is None and settings.PAS_TARGET_URL:
            target = {
                "kind": "postgresql",
                **self._from_url(settings.PAS_TARGET_URL, "PAS_TARGET_URL"),
            }
        work = options["work_dir"] or Path(settings.VAR_DIR) / "lifecycle"
        work.mkdir(parents=True, exist_ok=True)
        bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            bar = tqdm(total=None, unit="rows", file=sys.stderr)

        def progress(event: Any) -> None:
            if bar is not None:
                bar.set_description(f"{event.table}:{event.stage}")
                bar.n = event.rows_read
                bar.refresh()

        try:
            result = lifecycle_run(
                patients=patients,
                seed=options["seed"],
                profile=options["release_profile"],
                work_dir=work,
                source=source,
                target=target,
                defect_rate=options["defect_rate"],
                progress=progress,
                project_slug=options["project"],
            )
        except LifecycleInputError as exc:
            raise CommandError(str(exc), returncode=2) from None
        finally:
            if bar is not None:
                bar.close()
        self._print(result, every_check=options["verbosity"] >= 2)
        if options["json"]:
            options["json"].write_text(json.dumps(result, indent=2, default=str))
            self.stdout.write(f"full report: {options['json']}")
        gate = result["gate"]
        if (
            result["state"] != "succeeded"
            or gate is None
            or gate["status"] not in PASSING
        ):
            raise CommandError("the release gate did not pass", returncode=1)

    def _print(self, result: dict[str, Any], *, every_check: bool = False) -> None:
        w = self.stdout.write
        w(
            f"Run #{result['run']}: {result['state']}  contract {result['contract_sha256'][:12]}"
        )
        if result["error"]:
            w(f"  error: {result['error']}")
        w("")
        w(
            f"{'table':<24}{'source':>9}{'loaded':>9}{'rejected':>10}{'excluded':>10}  ledger"
        )
        for row in result["ledger"]:
            w(
                f"{row['table']:<24}{row['source'] or 0:>9}{row['loaded']:>9}"
                f"{row['rejected']:>10}{row['excluded']:>10}  "
                f"{'balanced' if row['balanced'] else 'UNBALANCED'}"
            )
        if result["top_reject_reasons"]:
            w("")
            w("Top reject reasons:")
            for reason, count in result["top_reject_reasons"]:
                w(f"  {count:>6}  {reason}")
        if result.get("untranslated_codes"):
            w("")
            w("Local codes the crosswalks could not translate:")
            for m in result["untranslated_codes"]:
                where = (
                    "in the miss queue"
                    if m["queued"]
                    else "not queued: the project does not manage this crosswalk"
                )
                w(
                    f"  {m['crosswalk']}: {m['distinct']} code(s), {m['rows']} row(s) "
                    f"({m['rejected']} rejected, {m['defaulted']} loaded with the "
                    f"default); {where}"
                )
        gate = result["gate"]
        w("")
        if gate is None:
            w("Gate: not evaluated (the run did not succeed)")
            return
        statuses = Counter(check["status"] for check in gate["checks"])
        tally = ", ".join(f"{n} {status}" for status, n in sorted(statuses.items()))
        w(
            f"Gate {gate['profile']} (v{gate['profile_version']}): {gate['status']}"
            f"  ({len(gate['checks'])} checks: {tally})"
        )
        # The checks that passed clean are counted above; -v 2 lists them too.
        shown = [c for c in gate["checks"] if every_check or c["status"] != "PASS"]
        if len(shown) < len(gate["checks"]):
            w("  checks other than PASS (-v 2 lists every check):")
        for check in shown:
            scope = f" [{check['scope']}]" if check["scope"] else ""
            measured = describe_measure(check["numerator"], check["denominator"])
            allowed = describe_threshold(check["threshold"])
            w(f"  {check['status']:<22} {check['check']}{scope}: {measured}; {allowed}")
        for reason in gate["reasons"]:
            w(f"  reason: {reason}")
