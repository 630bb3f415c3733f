"""The run loop: load every table in dependency order, check, publish, reconcile."""

from __future__ import annotations

import datetime as dt
import math
import queue
import string
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from migration.engine.checksums import OLD_SCHEME, SCHEME, add, series_checksum
from migration.engine.contract import Contract, validate_contract
from migration.engine.errors import (
    ContractError,
    EngineError,
    TerminalError,
    TransientError,
)
from migration.engine.pipeline import (
    ChunkResult,
    TablePlan,
    build_plan,
    not_migrated_reason,
    process_chunk,
    staged_steps,
)
from migration.engine.ports import (
    REJECT_COLUMNS,
    WHOLE_TABLE,
    Checkpoint,
    KeyRange,
    RangeSink,
    Sink,
    Source,
    StagedStep,
)
from migration.engine.report import ColumnMetrics, FkChain, RunReport, TableReport
from migration.engine.rules import RuleContext
from migration.engine.transforms import TransformContext


@dataclass(frozen=True)
class ProgressEvent:
    """One progress tick: sent after every committed chunk and phase."""

    run_id: str
    table: str
    stage: str
    rows_read: int
    rows_loaded: int
    rows_rejected: int
    rows_excluded: int
    source_rows: int | None = None
    #: the key range the counts belong to (``"all"``: the whole table)
    range_id: str = WHOLE_TABLE


@dataclass
class RangeReport:
    """What loading one key range of one table did (counts of that range only)."""

    table: str
    range_id: str
    status: str = "done"  # done | cancelled
    rows_read: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    rows_excluded: int = 0
    resumed: bool = False
    seconds: float = 0.0


ProgressFn = Callable[[ProgressEvent], None]
CancelFn = Callable[[], bool]


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def resolve_as_of(contract: Contract, source: Source, as_of: dt.date | None) -> dt.date:
    """Return the run's as-of date: argument, contract date, or source cell."""
    if as_of is not None:
        return as_of
    a = contract.rules.as_of
    if a.date:
        return dt.date.fromisoformat(a.date)
    if a.source_table and a.source_column:
        for chunk in _guarded(
            source.read_chunks(
                a.source_table, [a.source_column], a.source_column, chunk_size=1
            ),
            a.source_table,
        ):
            if len(chunk):
                value = str(chunk[a.source_column].iloc[0]).strip()
                try:
                    return dt.datetime.strptime(value, a.format).date()
                except ValueError:
                    raise ContractError(
                        f"as-of cell {a.source_table}.{a.source_column} is not "
                        f"a date in {a.format}"
                    ) from None
        raise ContractError(f"as-of table {a.source_table} is empty")
    raise ContractError("no as_of date: pass one or configure rules.as_of")


def _guarded(chunks: Iterator[pd.DataFrame], table: str) -> Iterator[pd.DataFrame]:
    """Yield source chunks; unexpected source failures become TransientError."""
    while True:
        try:
            chunk = next(chunks)
        except StopIteration:
            return
        except EngineError:
            raise
        except Exception as exc:
            # Type name only: driver messages can carry connection strings.
            raise TransientError(
                f"source read of {table} failed: {type(exc).__name__}"
            ) from exc
        yield chunk


def run_contract(
    contract: Contract,
    source: Source,
    sink: Sink,
    run_id: str,
    *,
    as_of: dt.date | None = None,
    on_progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
    reject_csv: str | Path | None = None,
    check_source: bool = True,
) -> RunReport:
    """Run (or resume) ``contract`` from ``source`` into ``sink``; return the report.

    Per table in dependency order: read chunks after the last checkpoint,
    transform, crosswalk, validate, then stage rows + rejects + checkpoint in
    one sink transaction. Then the cross-table phase, an atomic publish and
    reconciliation. Re-running a finished run changes no target row.
    Raises ContractError before any row moves, TransientError when the
    source or sink fails in a retryable way (rerun to resume).
    """
    started = time.monotonic()
    as_of_date = _validate(contract, source, as_of, check_source)
    order = contract.table_order()
    plans = {t: build_plan(contract, t, as_of_date) for t in order}
    report = _new_report(contract, run_id, as_of_date)
    xctx, rctx = _contexts(contract, as_of_date)
    stages = [plans[t].stage for t in order]
    if not sink.is_published(run_id):
        sink.prepare(run_id, stages)
        t0 = time.monotonic()
        finished = _load_tables(
            contract,
            [(plans[t], KeyRange(WHOLE_TABLE)) for t in order],
            source,
            sink,
            run_id,
            xctx,
            rctx,
            on_progress,
            should_cancel,
            report,
        )
        report.timings["load"] = time.monotonic() - t0
        if not finished:
            report.status = "cancelled"
            report.finished_at = _now()
            return report
    return _finish(
        contract,
        plans,
        order,
        source,
        sink,
        run_id,
        report,
        on_progress=on_progress,
        reject_csv=reject_csv,
        started=started,
    )


def _tables_touched(table: str, steps: list[StagedStep]) -> set[str]:
    """Return the tables a table's cross-table steps read or change (itself too)."""
    touched = {table}
    for step in steps:
        if step.ref_table:
            touched.add(step.ref_table)
        for _, name, _, _ in string.Formatter().parse(step.sql or ""):
            if name:
                touched.add(name)
    return touched


def _cross_table_phase(
    contract: Contract,
    plans: dict[str, TablePlan],
    order: list[str],
    sink: Sink,
    run_id: str,
    on_progress: ProgressFn | None,
) -> None:
    """Run every table's cross-table phase: each in one sink transaction.

    In dependency order, with the same outcome as one after another: a
    table's phase starts only when the phase of every table before it in
    the order that either of them reads or changes has finished. Phases that
    share no table run side by side on a second connection when the sink can
    open one (``clone``), so the server's work -- what this phase waits on --
    uses two of its cores instead of one. Progress is reported from the
    caller's thread. On an error the phases under way finish (each is
    atomic, and a resume skips those already done) and the first error is
    raised.
    """
    steps = {t: staged_steps(contract, plans[t]) for t in order}
    touched = {t: _tables_touched(t, steps[t]) for t in order}
    before = {
        t: {u for u in order[:i] if u in touched[t] or t in touched[u]}
        for i, t in enumerate(order)
    }

    def phase(on: Any, t: str) -> Checkpoint | None:
        on.apply_staged_steps(run_id, t, steps[t])
        return table_checkpoint(on, run_id, t)

    clone = getattr(sink, "clone", None)
    if clone is None or len(order) < 2:
        for t in order:
            _progress(on_progress, run_id, t, "cross_table", phase(sink, t))
        return
    second = clone()
    free: list[Any] = [second, sink]
    waiting = list(order)
    running: dict[Future[Checkpoint | None], tuple[str, Any]] = {}
    done: set[str] = set()
    error: BaseException | None = None
    try:
        with ThreadPoolExecutor(2, thread_name_prefix="pas-xt") as pool:
            while running or (waiting and error is None):
                for t in list(waiting) if error is None else []:
                    if free and before[t] <= done:
                        on = free.pop()
                        waiting.remove(t)
                        running[pool.submit(phase, on, t)] = (t, on)
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in finished:
                    t, on = running.pop(fut)
                    free.append(on)
                    try:
                        cp = fut.result()
                    except BaseException as exc:  # the others finish first
                        error = error or exc
                        continue
                    done.add(t)
                    _progress(on_progress, run_id, t, "cross_table", cp)
    finally:
        close = getattr(second, "close", None)
        if close is not None:
            close()
    if error is not None:
        raise error


def _validate(
    contract: Contract, source: Source, as_of: dt.date | None, check_source: bool
) -> dt.date:
    """Validate the contract (against the source's tables); return the as-of date."""
    if check_source:
        try:
            tables = source.discover()
        except EngineError:
            raise
        except Exception as exc:
            raise TransientError(
                f"source discover failed: {type(exc).__name__}"
            ) from exc
        validate_contract(contract, source_tables=tables)
    else:
        validate_contract(contract)
    return resolve_as_of(contract, source, as_of)


def _new_report(contract: Contract, run_id: str, as_of_date: dt.date) -> RunReport:
    return RunReport(
        run_id=run_id,
        contract_name=contract.name,
        contract_version=contract.version,
        contract_sha256=contract.sha256,
        target_model=contract.target.ref,
        as_of=as_of_date.isoformat(),
        started_at=_now(),
    )


def _contexts(
    contract: Contract, as_of_date: dt.date
) -> tuple[TransformContext, RuleContext]:
    xctx = TransformContext(crosswalks=contract.crosswalk_map())
    rctx = RuleContext(
        as_of=as_of_date,
        params=dict(contract.rules.params),
        valid_codes={},
    )
    return xctx, rctx


def _finish(
    contract: Contract,
    plans: dict[str, TablePlan],
    order: list[str],
    source: Source,
    sink: Sink,
    run_id: str,
    report: RunReport,
    *,
    on_progress: ProgressFn | None,
    reject_csv: str | Path | None,
    started: float,
) -> RunReport:
    """Cross-table phase, publish (once) and reconciliation of a loaded run."""
    stages = [plans[t].stage for t in order]
    if not sink.is_published(run_id):
        t0 = time.monotonic()
        _cross_table_phase(contract, plans, order, sink, run_id, on_progress)
        report.timings["cross_table"] = time.monotonic() - t0
        t0 = time.monotonic()
        sink.publish(run_id, stages)
        report.timings["publish"] = time.monotonic() - t0
    else:
        report.resumed = True
    t0 = time.monotonic()
    moved_cs = _reconcile(contract, plans, order, source, sink, run_id, report)
    report.timings["reconcile"] = time.monotonic() - t0
    t0 = time.monotonic()
    _verify_checksums(plans, order, moved_cs, report)
    report.timings["checksums"] = time.monotonic() - t0
    if reject_csv is not None:
        sink.export_rejects(run_id, str(reject_csv))
        report.reject_csv = str(reject_csv)
    report.status = "failed" if report.failure_reasons else "succeeded"
    report.finished_at = _now()
    report.timings["total"] = time.monotonic() - started
    return report


# -- scale-out: key ranges loaded as separate units ------------------------------


def _key(value: Any) -> Any:
    """Return a source key as a JSON-safe Python value (numpy scalars unwrapped)."""
    return value.item() if hasattr(value, "item") else value


def plan_ranges(
    source: Source,
    table: str,
    key: str,
    *,
    target_rows_per_range: int,
) -> list[KeyRange]:
    """Split source ``table`` into key ranges of about ``target_rows_per_range`` rows.

    One key-only keyset scan (``read_chunks`` of just ``key``, never OFFSET);
    the last key of every ``target_rows_per_range`` rows is a boundary. The
    ranges are (after_key, upto_key] pairs in key order, the first open below
    and the last open above, so together they cover the table exactly once. A
    table that fits in one range gives ``[KeyRange("all")]``.
    """
    if target_rows_per_range < 1:
        raise ContractError("target_rows_per_range must be at least 1")
    bounds: list[Any] = []
    seen = 0
    last: Any = None
    chunks = source.read_chunks(table, [key], key, chunk_size=target_rows_per_range)
    for chunk in _guarded(iter(chunks), table):
        if chunk.empty:
            continue
        keys = chunk[key]
        pos = 0
        while seen + (len(keys) - pos) >= target_rows_per_range:
            pos += target_rows_per_range - seen
            bounds.append(_key(keys.iloc[pos - 1]))
            seen = 0
        seen += len(keys) - pos
        last = _key(keys.iloc[-1])
    if bounds and seen == 0 and bounds[-1] == last:
        bounds.pop()  # the table ends exactly on a boundary: no empty last range
    if not bounds:
        return [KeyRange(WHOLE_TABLE)]
    edges: list[Any] = [None, *bounds, None]
    return [
        KeyRange(f"r{i:05d}", edges[i], edges[i + 1]) for i in range(len(edges) - 1)
    ]


def plan_run_ranges(
    contract: Contract,
    source: Source,
    *,
    max_ranges: int,
    min_rows_per_range: int,
) -> dict[str, list[KeyRange]]:
    """Return the key ranges of every target table of ``contract``, in load order.

    A table of ``n`` source rows is split into at most ``max_ranges`` ranges of
    at least ``min_rows_per_range`` rows; smaller tables are one range "all".
    """
    out: dict[str, list[KeyRange]] = {}
    for t in contract.table_order():
        tm = contract.table(t)
        try:
            n = source.count(tm.source)
        except EngineError:
            raise
        except Exception as exc:
            raise TransientError(
                f"source count of {tm.source} failed: {type(exc).__name__}"
            ) from exc
        per = max(min_rows_per_range, math.ceil(n / max(max_ranges, 1)), 1)
        if max_ranges <= 1 or n <= per:
            out[t] = [KeyRange(WHOLE_TABLE)]
        else:
            out[t] = plan_ranges(source, tm.source, tm.key, target_rows_per_range=per)
    return out


def prepare_run(
    contract: Contract,
    source: Source,
    sink: Sink,
    run_id: str,
    *,
    as_of: dt.date | None = None,
    check_source: bool = True,
) -> dt.date:
    """Validate the contract and create the run's staging tables; return the as-of date.

    Call once before loading ranges in parallel (DDL is not raced by workers).
    """
    as_of_date = _validate(contract, source, as_of, check_source)
    if not sink.is_published(run_id):
        order = contract.table_order()
        sink.prepare(run_id, [build_plan(contract, t, as_of_date).stage for t in order])
    return as_of_date


def load_range(
    contract: Contract,
    source: Source,
    sink: Sink,
    run_id: str,
    table: str,
    *,
    range_id: str = WHOLE_TABLE,
    after_key: Any | None = None,
    upto_key: Any | None = None,
    as_of: dt.date | None = None,
    on_progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
) -> RangeReport:
    """Stage one key range (after_key, upto_key] of target ``table``; resumable.

    Checkpoints are per (table, range): a re-run continues after the range's
    last committed chunk, a finished range changes nothing. Ranges of any
    tables may load concurrently into one run (after ``prepare_run``); the
    cross-table checks run in ``finalize``. Raises ContractError for an unknown
    table, TransientError for retryable source/sink failures.
    """
    started = time.monotonic()
    if table not in contract.table_order():
        raise ContractError(f"no table {table!r} in the contract")
    as_of_date = resolve_as_of(contract, source, as_of)
    plan = build_plan(contract, table, as_of_date)
    xctx, rctx = _contexts(contract, as_of_date)
    report = _new_report(contract, run_id, as_of_date)
    rr = RangeReport(table=table, range_id=range_id)
    if sink.is_published(run_id):
        cp = _range_checkpoint(sink, run_id, table, range_id)
        rr.resumed = True
    else:
        finished = _load_tables(
            contract,
            [(plan, KeyRange(range_id, after_key, upto_key))],
            source,
            sink,
            run_id,
            xctx,
            rctx,
            on_progress,
            should_cancel,
            report,
        )
        rr.status = "done" if finished else "cancelled"
        rr.resumed = report.resumed
        cp = _range_checkpoint(sink, run_id, table, range_id)
    if cp is not None:
        rr.rows_read = cp.rows_read
        rr.rows_loaded = cp.rows_loaded
        rr.rows_rejected = cp.rows_rejected
        rr.rows_excluded = cp.rows_excluded
    rr.seconds = time.monotonic() - started
    return rr


def finalize(
    contract: Contract,
    source: Source,
    sink: Sink,
    run_id: str,
    *,
    as_of: dt.date | None = None,
    ranges: dict[str, list[str]] | None = None,
    on_progress: ProgressFn | None = None,
    reject_csv: str | Path | None = None,
    check_source: bool = False,
) -> RunReport:
    """Cross-table phase, publish and reconciliation of a run loaded by ranges.

    ``ranges`` (table -> range ids) is the plan the loads followed: every
    range must have finished, else nothing is published and the report fails.
    Each table's ledger is the sum over its ranges. Idempotent: finalizing a
    published run only reconciles again.
    """
    started = time.monotonic()
    as_of_date = _validate(contract, source, as_of, check_source)
    order = contract.table_order()
    plans = {t: build_plan(contract, t, as_of_date) for t in order}
    report = _new_report(contract, run_id, as_of_date)
    if not sink.is_published(run_id):
        for t in order:
            cps = _checkpoints_of(sink, run_id, t)
            have = {c.range_id: c for c in cps}
            want = (ranges or {}).get(t) or sorted(have) or [WHOLE_TABLE]
            missing = [r for r in want if not (r in have and have[r].extra.get("done"))]
            if missing:
                report.failure_reasons.append(
                    f"{t}: load did not finish (ranges {', '.join(missing)})"
                )
                continue
            staged = sink.count(t, run_id=run_id)
            counted = sum(c.rows_loaded for c in cps)
            if staged != counted:
                report.failure_reasons.append(
                    f"{t}: {staged} staged rows but the checkpoints count {counted}"
                )
        if report.failure_reasons:
            report.status = "failed"
            report.finished_at = _now()
            return report
    return _finish(
        contract,
        plans,
        order,
        source,
        sink,
        run_id,
        report,
        on_progress=on_progress,
        reject_csv=reject_csv,
        started=started,
    )


def _range_checkpoint(
    sink: Sink, run_id: str, table: str, range_id: str
) -> Checkpoint | None:
    if range_id == WHOLE_TABLE:
        return sink.checkpoint(run_id, table)
    if not isinstance(sink, RangeSink):
        raise ContractError("this target cannot load key ranges separately")
    return sink.range_checkpoint(run_id, table, range_id)


def _checkpoints_of(sink: Sink, run_id: str, table: str) -> list[Checkpoint]:
    if isinstance(sink, RangeSink):
        return sink.range_checkpoints(run_id, table)
    cp = sink.checkpoint(run_id, table)
    return [cp] if cp is not None else []


def _scheme_of(state: Mapping[str, Any]) -> str:
    """Return the checksum scheme of stored sums (unnamed: the earlier md5 one)."""
    return str(state.get("checksum_scheme") or OLD_SCHEME)


def table_checkpoint(sink: Sink, run_id: str, table: str) -> Checkpoint | None:
    """Return the checkpoint of a whole table: the sum over its key ranges.

    Counters and checksums add up; ``done`` only when every range is done.
    """
    cps = _checkpoints_of(sink, run_id, table)
    if not cps:
        return None
    if len(cps) == 1 and cps[0].range_id == WHOLE_TABLE:
        return cps[0]
    extra: dict[str, Any] = {"done": all(bool(c.extra.get("done")) for c in cps)}
    for name in ("source_nulls", "defaults_used", "lenient_fills", "field_rejects"):
        total: Counter[str] = Counter()
        for c in cps:
            total.update(_counter(c.extra.get(name)))
        extra[name] = dict(total)
    sums: dict[str, list[int]] = {}
    for c in cps:
        for col, cs in dict(c.extra.get("checksums") or {}).items():
            sums[col] = add(sums.get(col, [0, 0]), cs)
    extra["checksums"] = sums
    schemes = {_scheme_of(c.extra) for c in cps if c.extra.get("checksums")}
    extra["checksum_scheme"] = schemes.pop() if len(schemes) == 1 else "mixed"
    codes: dict[str, Counter[str]] = {}
    for c in cps:
        _add_codes(codes, c.extra.get("defaulted_codes"))
    extra["defaulted_codes"] = _codes_state(codes)
    return Checkpoint(
        run_id,
        table,
        None,
        sum(c.rows_read for c in cps),
        sum(c.rows_loaded for c in cps),
        sum(c.rows_rejected for c in cps),
        sum(c.rows_excluded for c in cps),
        extra,
        range_id=WHOLE_TABLE,
    )


def _progress(
    fn: ProgressFn | None,
    run_id: str,
    table: str,
    stage: str,
    cp: Checkpoint | None,
    source_rows: int | None = None,
) -> None:
    if fn is None:
        return
    fn(
        ProgressEvent(
            run_id=run_id,
            table=table,
            stage=stage,
            rows_read=cp.rows_read if cp else 0,
            rows_loaded=cp.rows_loaded if cp else 0,
            rows_rejected=cp.rows_rejected if cp else 0,
            rows_excluded=cp.rows_excluded if cp else 0,
            source_rows=source_rows,
            range_id=cp.range_id if cp else WHOLE_TABLE,
        )
    )


def _counter(data: Any) -> Counter[str]:
    return Counter({str(k): int(v) for k, v in dict(data or {}).items()})


#: Distinct defaulted local codes kept per crosswalk in a checkpoint: a real
#: code list is dozens; a column of garbage must not bloat every checkpoint.
#: The rest are still counted (``lenient_fills``), just not listed.
MAX_DEFAULTED_CODES = 500


def _add_codes(into: dict[str, Counter[str]], data: Any) -> None:
    for xw, codes in dict(data or {}).items():
        into.setdefault(str(xw), Counter()).update(_counter(codes))


def _codes_state(codes: dict[str, Counter[str]]) -> dict[str, dict[str, int]]:
    return {
        xw: dict(c.most_common(MAX_DEFAULTED_CODES)) for xw, c in sorted(codes.items())
    }


class _ReadAhead:
    """Read the source's next chunk on a thread while the caller transforms this one.

    Only for a source with ``read_ahead = True`` (its connection may be used
    from one other thread, and its driver reads without holding the GIL);
    otherwise chunks are read in the caller's thread as before. At most one
    chunk waits, so memory grows by one chunk. The reader thread owns the
    source's generator from start to close, and leaving the block stops it
    and waits for it: nobody else touches the source connection meanwhile.
    A read's error is raised in the caller at the chunk it belongs to.
    """

    _END = object()

    def __init__(self, chunks: Iterator[Any], enabled: bool) -> None:
        self.chunks = iter(chunks)
        self.done = False
        self.thread: threading.Thread | None = None
        if enabled:
            self.q: queue.Queue[tuple[Any, BaseException | None]] = queue.Queue(1)
            self.stop = threading.Event()
            self.thread = threading.Thread(
                target=self._read, name="pas-read", daemon=True
            )
            self.thread.start()

    def _read(self) -> None:
        try:
            for chunk in self.chunks:
                if not self._put((chunk, None)):
                    return
            self._put((self._END, None))
        except BaseException as exc:  # raised again in the caller's thread
            self._put((self._END, exc))
        finally:
            close = getattr(self.chunks, "close", None)
            if close is not None:
                with suppress(Exception):  # closing never hides the real outcome
                    close()

    def _put(self, item: tuple[Any, BaseException | None]) -> bool:
        while not self.stop.is_set():
            try:
                self.q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __enter__(self) -> _ReadAhead:
        return self

    def __iter__(self) -> _ReadAhead:
        return self

    def __next__(self) -> Any:
        if self.thread is None:
            return next(self.chunks)
        if self.done:
            raise StopIteration
        chunk, exc = self.q.get()
        if exc is not None:
            self.done = True
            raise exc
        if chunk is self._END:
            self.done = True
            raise StopIteration
        return chunk

    def __exit__(self, *exc: object) -> None:
        if self.thread is not None:
            self.stop.set()
            self.thread.join()
        else:
            close = getattr(self.chunks, "close", None)
            if close is not None:
                close()


class _TableLoad:
    """One table (or key range of it) in a load: its counters, checksums, checkpoints.

    Starts from the unit's last checkpoint (``cp``), so a resumed load carries
    on counting where the committed work stopped. Counters are updated on the
    caller's thread as chunks are transformed; the column checksums are folded
    in on the writer's side (``fold``), one chunk at a time and in order.
    """

    def __init__(
        self,
        plan: TablePlan,
        rng: KeyRange,
        cp: Checkpoint | None,
        source_rows: int | None,
        rctx: RuleContext,
    ) -> None:
        self.plan, self.rng, self.source_rows = plan, rng, source_rows
        self.table = plan.target.name
        self.rctx = RuleContext(
            as_of=rctx.as_of, params=rctx.params, valid_codes=plan.valid_codes
        )
        extra: dict[str, Any] = dict(cp.extra) if cp else {}
        self.source_nulls = _counter(extra.get("source_nulls"))
        self.defaults_used = _counter(extra.get("defaults_used"))
        self.lenient_fills = _counter(extra.get("lenient_fills"))
        self.field_rejects = _counter(extra.get("field_rejects"))
        self.checksums: dict[str, list[int]] = {
            k: list(v) for k, v in dict(extra.get("checksums") or {}).items()
        }
        self.defaulted_codes: dict[str, Counter[str]] = {}
        _add_codes(self.defaulted_codes, extra.get("defaulted_codes"))
        self.read = cp.rows_read if cp else 0
        self.loaded = cp.rows_loaded if cp else 0
        self.rejected = cp.rows_rejected if cp else 0
        self.excluded = cp.rows_excluded if cp else 0
        self.last_key = cp.last_key if cp else None
        self.sum_columns = [
            c for c in plan.stage.checksum_columns if c not in plan.lookups
        ]
        #: When this invocation started on the unit, and how long it took from
        #: its first chunk's transform to its last commit.
        self.started: float | None = None
        self.seconds = 0.0

    def add(self, res: ChunkResult, run_id: str) -> Checkpoint:
        """Count one transformed chunk in; return the checkpoint committed with it."""
        self.read += res.read
        self.loaded += res.loaded
        self.rejected += res.rejected
        self.excluded += res.excluded
        self.last_key = res.last_key
        self.source_nulls.update(res.source_nulls)
        self.defaults_used.update(res.defaults_used)
        self.lenient_fills.update(res.lenient_fills)
        self.field_rejects.update(res.field_rejects)
        _add_codes(self.defaulted_codes, res.defaulted_codes)
        return self.checkpoint(run_id)

    def checkpoint(self, run_id: str, done: bool = False) -> Checkpoint:
        """Return the checkpoint of what is counted so far (checksums: by ``fold``).

        The counters are copied: the writer serialises this state while the
        next chunk is already being counted in.
        """
        state = {
            "source_nulls": dict(self.source_nulls),
            "defaults_used": dict(self.defaults_used),
            "lenient_fills": dict(self.lenient_fills),
            "field_rejects": dict(self.field_rejects),
            "defaulted_codes": _codes_state(self.defaulted_codes),
            "done": done,
        }
        return Checkpoint(
            run_id,
            self.table,
            self.last_key,
            self.read,
            self.loaded,
            self.rejected,
            self.excluded,
            state,
            range_id=self.rng.range_id,
        )

    def fold(self, rows: pd.DataFrame) -> dict[str, Any]:
        """Add a chunk's column checksums; return the running sums (a copy).

        On the fold thread, one chunk at a time and in order; numpy's MD5
        rounds release the GIL, so this overlaps the next chunk's transform.
        An empty frame adds nothing: the table's last (done) checkpoint gets
        the final sums that way.
        """
        for col in self.sum_columns:
            self.checksums[col] = add(
                self.checksums.get(col, [0, 0]), series_checksum(rows[col])
            )
        return {
            "checksums": {k: list(v) for k, v in self.checksums.items()},
            "checksum_scheme": SCHEME,
        }


class _ChunkWriter:
    """Commit chunks in order, behind the transform when the sink allows it.

    A sink with ``write_behind = True`` (its connection may be used from one
    other thread) commits chunk N on a writer thread while the caller reads
    and transforms the next chunk, so the target's COPY work overlaps ours.
    Each chunk's column checksums are folded in (``_TableLoad.fold``) on a
    thread of their own, one chunk ahead of the writer: chunk N's COPY
    overlaps chunk N+1's checksums. At most two chunks are in flight, of any
    tables: the next table's chunks start while the last ones of the table
    before are still being committed. Each commit is still ONE transaction
    (rows, rejects, checkpoint), committed in submission order; once a commit
    fails no later chunk is committed, so a kill or an error loses at most
    uncommitted work and resume semantics are unchanged. Progress is
    reported from the caller's thread, after the commit it reports. Leaving
    the block waits for the writes in flight; a write's error is raised there.
    """

    def __init__(self, sink: Sink, run_id: str, on_progress: ProgressFn | None) -> None:
        self.sink, self.run_id, self.on_progress = sink, run_id, on_progress
        behind = getattr(sink, "write_behind", False)
        self.pool = (
            ThreadPoolExecutor(1, thread_name_prefix="pas-write") if behind else None
        )
        self.fold_pool = (
            ThreadPoolExecutor(1, thread_name_prefix="pas-fold") if behind else None
        )
        self.depth = 2
        self.pending: deque[tuple[Future[Checkpoint], _TableLoad, str]] = deque()
        self.failed = False

    def __enter__(self) -> _ChunkWriter:
        return self

    def write(
        self,
        unit: _TableLoad,
        rows: pd.DataFrame,
        rejects: pd.DataFrame,
        cp: Checkpoint,
        stage: str = "load",
    ) -> None:
        """Commit one chunk (now, or on the writer thread after the previous one)."""
        if self.pool is None or self.fold_pool is None:
            self._report(
                self._commit(unit, rejects, self._fold(unit, rows, cp)),
                unit,
                stage,
            )
            return
        while len(self.pending) >= self.depth:
            self._pop()
        folded = self.fold_pool.submit(self._fold, unit, rows, cp)
        self.pending.append(
            (self.pool.submit(self._commit, unit, rejects, folded), unit, stage)
        )

    def _fold(
        self, unit: _TableLoad, rows: pd.DataFrame, cp: Checkpoint
    ) -> tuple[Checkpoint, Any]:
        """Fold the chunk's checksums in; encode its rows if the sink can ahead."""
        folded = replace(cp, extra={**cp.extra, **unit.fold(rows)})
        encode = getattr(self.sink, "encode_rows", None)
        return folded, (encode(rows) if encode is not None and len(rows) else rows)

    def _commit(
        self,
        unit: _TableLoad,
        rejects: pd.DataFrame,
        folded: Future[tuple[Checkpoint, Any]] | tuple[Checkpoint, Any],
    ) -> Checkpoint:
        if self.failed:
            # An earlier chunk did not commit: committing this one would
            # checkpoint past rows that are not there.
            raise TransientError(
                f"chunk of {unit.table} not committed: an earlier chunk failed"
            )
        try:
            cp, staged = folded.result() if isinstance(folded, Future) else folded
            self.sink.write_chunk(self.run_id, unit.table, staged, rejects, cp)
        except BaseException:
            self.failed = True
            raise
        return cp

    def _pop(self) -> None:
        fut, unit, stage = self.pending.popleft()
        self._report(fut.result(), unit, stage)

    def flush(self) -> None:
        """Wait for the writes in flight (raising the first error), reporting each."""
        while self.pending:
            self._pop()

    def _report(self, cp: Checkpoint, unit: _TableLoad, stage: str) -> None:
        if stage == "loaded" and unit.started is not None:
            unit.seconds = time.monotonic() - unit.started
        _progress(
            self.on_progress, self.run_id, unit.table, stage, cp, unit.source_rows
        )

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                self.flush()
            elif self.pending:
                # Already failing: let the writes in flight finish (the sink's
                # connection must be idle before anyone uses it again); their
                # own outcome does not replace the error under way.
                self.failed = True
                wait([f for f, _, _ in self.pending])
                self.pending.clear()
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True)
            if self.fold_pool is not None:
                self.fold_pool.shutdown(wait=True)


def _open_unit(
    plan: TablePlan,
    source: Source,
    sink: Sink,
    run_id: str,
    rctx: RuleContext,
    report: RunReport,
    rng: KeyRange,
) -> _TableLoad | None:
    """Return the load state of one table or key range (None: already done)."""
    table = plan.target.name
    tm = plan.mapping
    cp = _range_checkpoint(sink, run_id, table, rng.range_id)
    if cp is not None:
        report.resumed = True
    if cp is not None and cp.extra.get("done"):
        return None
    if cp is not None and rng.range_id == WHOLE_TABLE:
        # A staging table that lost rows its checkpoint counts (an UNLOGGED
        # table after a server crash, say) cannot be trusted: redo the table.
        # So is one whose sums so far were taken by an earlier version's
        # checksum scheme: they cannot be carried on with this one's.
        if sink.count(table, run_id=run_id) != cp.rows_loaded or (
            cp.extra.get("checksums") and _scheme_of(cp.extra) != SCHEME
        ):
            sink.reset_table(run_id, table)
            cp = None
    if cp is not None and cp.extra.get("checksums") and _scheme_of(cp.extra) != SCHEME:
        raise TerminalError(
            f"{table}: this key range was started by an earlier version whose "
            "column checksums cannot be carried on; start the run again as a "
            "new run"
        )
    try:
        source_rows: int | None = source.count(tm.source)
    except EngineError:
        raise
    except Exception as exc:
        raise TransientError(
            f"source count of {tm.source} failed: {type(exc).__name__}"
        ) from exc
    return _TableLoad(plan, rng, cp, source_rows, rctx)


def _chunks_of(
    units: list[_TableLoad], source: Source, chunk_size: int
) -> Iterator[tuple[_TableLoad, pd.DataFrame | None]]:
    """Yield (unit, chunk) for every unit in turn, then (unit, None) at its end.

    One stream over all the units, so a reader thread reads the next table's
    first chunk while the last chunks of the table before are transformed.
    """
    for unit in units:
        tm = unit.plan.mapping
        after = unit.last_key if unit.last_key is not None else unit.rng.after_key
        chunks = source.read_chunks(
            tm.source,
            tm.source_columns(),
            tm.key,
            after_key=after,
            chunk_size=chunk_size,
            upto_key=unit.rng.upto_key,
        )
        try:
            for chunk in _guarded(iter(chunks), tm.source):
                yield unit, chunk
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        yield unit, None


def _load_tables(
    contract: Contract,
    todo: list[tuple[TablePlan, KeyRange]],
    source: Source,
    sink: Sink,
    run_id: str,
    xctx: TransformContext,
    rctx: RuleContext,
    on_progress: ProgressFn | None,
    should_cancel: CancelFn | None,
    report: RunReport,
) -> bool:
    """Stage tables (or key ranges) chunk by chunk, in order; False when cancelled.

    Every unit's checkpoint is looked up (and its source counted) first;
    then one read-ahead stream and one writer serve all of them, so there is
    no pipeline drain and refill between tables. A unit's last commit
    (``done``, with its final checksums) follows its last chunk's, in order.
    """
    units = [
        u
        for plan, rng in todo
        if (u := _open_unit(plan, source, sink, run_id, rctx, report, rng)) is not None
    ]
    if not units:
        return True
    stream = _chunks_of(units, source, contract.chunk_size)
    with (
        _ReadAhead(stream, getattr(source, "read_ahead", False)) as ahead,
        _ChunkWriter(sink, run_id, on_progress) as writer,
    ):
        for unit, chunk in ahead:
            if unit.started is None:
                unit.started = time.monotonic()
            if chunk is None:
                plan = unit.plan
                empty_rows = pd.DataFrame({c.name: [] for c in plan.stage.columns})
                empty_rej = pd.DataFrame({c: [] for c in REJECT_COLUMNS})
                writer.write(
                    unit,
                    empty_rows,
                    empty_rej,
                    unit.checkpoint(run_id, done=True),
                    "loaded",
                )
                continue
            if should_cancel is not None and should_cancel():
                return False
            if chunk.empty:
                continue
            res = process_chunk(
                unit.plan, chunk, run_id=run_id, xctx=xctx, rctx=unit.rctx
            )
            writer.write(unit, res.rows, res.rejects, unit.add(res, run_id))
    for unit in units:
        suffix = "" if unit.rng.range_id == WHOLE_TABLE else f":{unit.rng.range_id}"
        report.timings[f"load:{unit.table}{suffix}"] = unit.seconds
    return True


def _reason_fields(contract: Contract, plan: TablePlan) -> dict[str, str]:
    out = {"duplicate_key": plan.target.key[0]}
    for fm in plan.mapping.fields:
        if fm.lookup is not None:
            out[fm.lookup.reason] = fm.target
    for fk in plan.stage.foreign_keys:
        out.setdefault(not_migrated_reason(fk.ref_table), fk.columns[0])
    for chk in plan.staged_checks:
        out[chk.reason] = chk.field
    return out


def _pct(num: float, den: float) -> float:
    return round(100.0 * num / den, 4) if den else 100.0


def _reconcile(
    contract: Contract,
    plans: dict[str, TablePlan],
    order: list[str],
    source: Source,
    sink: Sink,
    run_id: str,
    report: RunReport,
) -> dict[str, dict[str, Any]]:
    """Fill ledger, metrics, FK chains; add failure reasons for any gap.

    Counts, null rates, FK chains and the target's column checksums, taken
    in the same scan of each published table as its rows and nulls (one
    snapshot, one pass). Returns per table the checksums the load sent,
    those of the rows the cross-table phase moved out of staging and the
    target's, for ``_verify_checksums`` to compare.
    """
    refs = {
        t: [
            (fk.columns[0], fk.ref_table, fk.ref_columns[0])
            for fk in plans[t].stage.foreign_keys
        ]
        for t in order
    }
    # The FK chains' anti-joins run on a second connection when the sink can
    # open one, table by table beside the profile scans on this one: the
    # server's work is what reconciliation waits on, and one connection
    # uses one of its cores.
    clone = getattr(sink, "clone", None)
    if clone is None or not any(refs.values()):
        return _reconcile_tables(
            contract, plans, order, source, sink, run_id, report, refs, {}
        )
    side: Sink = clone()
    pool = ThreadPoolExecutor(1, thread_name_prefix="pas-rec")
    try:
        orphans_of = {t: pool.submit(_orphan_counts, side, t, refs[t]) for t in order}
        return _reconcile_tables(
            contract, plans, order, source, sink, run_id, report, refs, orphans_of
        )
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        close = getattr(side, "close", None)
        if close is not None:
            close()


def _orphan_counts(on: Sink, table: str, refs: list[tuple[str, str, str]]) -> list[int]:
    """Return the orphan count of each (column, ref table, ref column) of ``table``."""
    return [on.orphan_count(table, c, rt, rc) for c, rt, rc in refs]


def _reconcile_tables(
    contract: Contract,
    plans: dict[str, TablePlan],
    order: list[str],
    source: Source,
    sink: Sink,
    run_id: str,
    report: RunReport,
    refs: dict[str, list[tuple[str, str, str]]],
    orphans_of: dict[str, Future[list[int]]],
) -> dict[str, dict[str, Any]]:
    """``_reconcile``'s table loop (``orphans_of``: FK counts under way elsewhere)."""
    counts = sink.reject_counts(run_id)
    moved_by_table: dict[str, dict[str, Any]] = {}
    for t in order:
        plan = plans[t]
        tm = plan.mapping
        cp = table_checkpoint(sink, run_id, t)
        if cp is None or not cp.extra.get("done"):
            report.failure_reasons.append(f"{t}: load did not finish")
            continue
        phase = sink.apply_staged_steps(run_id, t, staged_steps(contract, plan))
        moved = _counter(phase.get("moved"))
        moved_by_table[t] = {
            "sent": dict(cp.extra.get("checksums") or {}),
            "moved": dict(phase.get("moved_checksums") or {}),
            "schemes": {
                _scheme_of(cp.extra) if cp.extra.get("checksums") else SCHEME,
                _scheme_of(phase) if phase.get("moved_checksums") else SCHEME,
            },
        }
        tr = TableReport(table=t, source_table=tm.source)
        tr.seconds = report.timings.get(f"load:{t}", 0.0)
        tr.source_rows = source.count(tm.source)
        tr.rows_read = cp.rows_read
        tr.defaulted_codes = {
            str(xw): {str(k): int(v) for k, v in dict(codes).items()}
            for xw, codes in dict(cp.extra.get("defaulted_codes") or {}).items()
        }
        for table, action, reason, n in counts:
            if table != t:
                continue
            if action == "reject":
                tr.rejects_by_reason[reason] = tr.rejects_by_reason.get(reason, 0) + n
            elif action == "exclude":
                tr.excluded_by_rule[reason] = tr.excluded_by_rule.get(reason, 0) + n
            elif action == "flag":
                tr.flags_by_reason[reason] = tr.flags_by_reason.get(reason, 0) + n
        tr.rows_rejected = sum(tr.rejects_by_reason.values())
        tr.rows_excluded = sum(tr.excluded_by_rule.values())
        tr.rows_flagged = sum(tr.flags_by_reason.values())
        # One scan gives the published rows, every column's nulls and the
        # checksum columns' sums: the ledger, the metrics and the checksum
        # comparison read the same snapshot. Sums of a load taken by an
        # earlier scheme are not taken: they could not be compared.
        summed = (
            list(plan.stage.checksum_columns)
            if moved_by_table[t]["schemes"] == {SCHEME}
            else []
        )
        prof = sink.table_profile(t, [f.name for f in plan.target.fields], summed)
        moved_by_table[t]["target"] = prof["checksums"]
        tr.rows_loaded = int(prof["rows"])
        tr.ledger_difference = tr.source_rows - (
            tr.rows_loaded + tr.rows_rejected + tr.rows_excluded
        )
        gaps = []
        if tr.ledger_difference:
            gaps.append(
                f"source {tr.source_rows} != loaded {tr.rows_loaded} + rejected "
                f"{tr.rows_rejected} + excluded {tr.rows_excluded}"
            )
        if tr.rows_read != tr.source_rows:
            gaps.append(f"read {tr.rows_read} != source {tr.source_rows}")
        if cp.rows_loaded - sum(moved.values()) != tr.rows_loaded:
            gaps.append(
                f"staged {cp.rows_loaded} - moved {sum(moved.values())} != "
                f"published {tr.rows_loaded}"
            )
        if cp.rows_rejected + sum(moved.values()) != tr.rows_rejected:
            gaps.append(
                f"rejects counted {cp.rows_rejected + sum(moved.values())} != "
                f"reject store {tr.rows_rejected}"
            )
        if cp.rows_excluded != tr.rows_excluded:
            gaps.append(f"excluded {cp.rows_excluded} != store {tr.rows_excluded}")
        tr.ledger_balanced = not gaps
        for g in gaps:
            report.failure_reasons.append(f"{t}: ledger: {g}")
        _column_metrics(contract, plan, cp, moved, prof, tr)
        report.tables.append(tr)
        pending = orphans_of.get(t)
        found = (
            pending.result()
            if pending is not None
            else _orphan_counts(sink, t, refs[t])
        )
        for (col, ref_table, ref_col), orphans in zip(refs[t], found, strict=True):
            report.fk_chains.append(
                FkChain(t, col, ref_table, ref_col, tr.rows_loaded, orphans)
            )
            if orphans:
                report.failure_reasons.append(
                    f"{t}.{col}: {orphans} rows without {ref_table}"
                )
    report.flagged = sink.flags(run_id)
    return moved_by_table


def _verify_checksums(
    plans: dict[str, TablePlan],
    order: list[str],
    moved_by_table: dict[str, dict[str, Any]],
    report: RunReport,
) -> None:
    """Compare each checksum column's target sum with what the load sent.

    What was sent (summed over the load's chunks) minus what the cross-table
    phase moved out must equal the published column; a difference fails the run.
    """
    reports = {tr.table: tr for tr in report.tables}
    report.checksum_scheme = SCHEME
    for t in order:
        plan, tr = plans[t], reports.get(t)
        columns = list(plan.stage.checksum_columns)
        if tr is None or not columns:
            continue
        # Every table reconciled (it has a report) has its sums here.
        entry = moved_by_table[t]
        sent, moved_cs, schemes = entry["sent"], entry["moved"], entry["schemes"]
        if schemes != {SCHEME}:
            # Sums taken by an earlier version (a run resumed across an
            # upgrade after its load finished) cannot be compared with the
            # target's sums of this one: not a match, and said so.
            for cm in tr.columns:
                if cm.name in columns:
                    cm.checksum_match = False
            report.failure_reasons.append(
                f"{t}: the load's column checksums were taken by an earlier "
                f"version ({', '.join(sorted(schemes - {SCHEME}))}) and cannot be "
                "compared with the target's; start the run again as a new run"
            )
            continue
        target = entry["target"]  # summed in the reconciliation's scan
        for cm in tr.columns:
            if cm.name not in columns:
                continue
            src = sent.get(cm.name, [0, 0])
            mv = moved_cs.get(cm.name, [0, 0])
            cm.checksum_source = [int(src[0]) - int(mv[0]), int(src[1]) - int(mv[1])]
            cm.checksum_target = [int(x) for x in target[cm.name]]
            cm.checksum_match = cm.checksum_source == cm.checksum_target
            if not cm.checksum_match:
                report.failure_reasons.append(
                    f"{t}.{cm.name}: checksum source {cm.checksum_source} != "
                    f"target {cm.checksum_target}"
                )


def _column_metrics(
    contract: Contract,
    plan: TablePlan,
    cp: Checkpoint,
    moved: Counter[str],
    prof: Mapping[str, Any],
    tr: TableReport,
) -> None:
    field_rejects = _counter(cp.extra.get("field_rejects"))
    for reason, fname in _reason_fields(contract, plan).items():
        field_rejects[fname] += moved.get(reason, 0)
    source_nulls = _counter(cp.extra.get("source_nulls"))
    defaults_used = _counter(cp.extra.get("defaults_used"))
    lenient = _counter(cp.extra.get("lenient_fills"))
    loaded = tr.rows_loaded
    completeness: list[float] = []
    validity: list[float] = []
    default_use: list[float] = []
    for f in plan.target.fields:
        fm = plan.mapping.field(f.name)
        nulls = int(prof["nulls"].get(f.name, 0))
        cm = ColumnMetrics(
            name=f.name,
            source_columns="+".join(fm.source) if fm else "",
            source_nulls=sum(source_nulls.get(c, 0) for c in (fm.source if fm else ())),
            target_nulls=nulls,
            null_rate=nulls / loaded if loaded else 0.0,
            rejects=field_rejects.get(f.name, 0),
            reject_rate=field_rejects.get(f.name, 0) / tr.rows_read
            if tr.rows_read
            else 0.0,
            defaults_used=defaults_used.get(f.name, 0),
            lenient_fills=lenient.get(f.name, 0),
        )
        present = loaded - nulls
        cm.dqmi = {
            "completeness": _pct(present, loaded),
            "validity": _pct(tr.rows_read - cm.rejects, tr.rows_read),
        }
        if fm is not None:
            completeness.append(cm.dqmi["completeness"])
            validity.append(cm.dqmi["validity"])
        if f.name in plan.crosswalk_defaults:
            cm.dqmi["default_use"] = round(
                100.0 - _pct(present - cm.defaults_used, present), 4
            )
            default_use.append(cm.dqmi["default_use"])
        tr.columns.append(cm)
    tr.dqmi = {
        "coverage": _pct(tr.rows_loaded, tr.source_rows),
        "completeness": round(sum(completeness) / len(completeness), 4)
        if completeness
        else 100.0,
        "validity": _pct(tr.rows_read - tr.rows_rejected, tr.rows_read),
        "default_use": round(sum(default_use) / len(default_use), 4)
        if default_use
        else 0.0,
    }
