"""What the flat-extract kinds (csv, json) share: one table per file, a first
pass that validates the encoding (byte offset of the first bad byte) and the
structure (line number of the first malformed record) and infers column types,
and the Source port over a stream of DataFrames.

A file is never silently skipped or partially read: a malformed record or a
wrong encoding raises TerminalError naming the connector, the file and the
line or byte offset.

The engine reads in key order (its checkpoints are keys). An extract sorted
by the key is streamed as it is. One that is not -- third-party extracts
rarely are -- is *landed* first: copied once, in bounded memory, into a
private SQLite file with the key as its clustered primary key, and read back
in key pages from there. The landed copy is named after the extract's path
and reading options, the file, the key and the file's version (mtime, size,
columns, types), so a resumed run or a parallel range reads the same copy, a
changed extract is landed again (the stale copy removed), and two connectors
reading one extract with different options keep a copy each. A copy holds
patient rows: its folder is private (0700, files 0600), and a copy unused for
``landing_retention_hours`` (default 24) is deleted at the connector's next
landing or landed read. A missing or repeated key value fails the landing
with a clear error (no value named: keys can be patient identifiers).

Framework-free: no Django import.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import logging
import os
import re
import sqlite3
import stat
import tempfile
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import pandas as pd
import pyarrow as pa
from pydantic import Field

from connectors.governor import Governor
from connectors.kinds.base import (
    CheckResult,
    KindConfig,
    QueryEvent,
    frame_from_rows,
    to_pandas,
)
from connectors.kinds.profiling import Profiler, TableProfile
from migration.engine.errors import EngineError, TerminalError
from migration.engine.ports import ColumnInfo, TableInfo

__all__ = ["FileConfig", "FileSource", "LandedCopy", "check_encoding"]

log = logging.getLogger("pasportal.connectors")

TypeName = Literal["integer", "float", "text", "boolean"]
_INT = re.compile(r"^-?(0|[1-9]\d{0,8})$")  # 10+ digits stay text: NHS numbers
# A point or an exponent: other digit strings that are not integers
# (leading zero, 10+ digits) are identifiers and stay text.
_FLOAT = re.compile(r"^-?((\d+\.\d*|\.\d+)([eE][-+]?\d+)?|\d+[eE][-+]?\d+)$")
_ARROW = {"integer": pa.int64(), "float": pa.float64(), "text": pa.string(),
          "boolean": pa.bool_()}  # fmt: skip
#: Names landing writes: copies, and a landing's scratch files.
_LANDED = re.compile(
    r"^([0-9a-f]{20}-[0-9a-f]{20}-[0-9a-f]{20}\.sqlite3"
    r"|\.[0-9a-f]{20}-[0-9a-f]{20}-\d+-[0-9a-f]{8}\.(unsorted|partial))$"
)
_DECLARED = {
    "integer": "INTEGER",
    "float": "REAL",
    "text": "TEXT",
    "boolean": "BOOLEAN",
}


class FileConfig(KindConfig):
    """Config shared by the flat-file kinds."""

    path: str = Field(
        min_length=1, description="folder of <table>.<ext> files, or one file"
    )
    encoding: str = "utf-8"
    infer_types: bool = True
    #: Explicit types per table and column, overriding inference.
    column_types: dict[str, dict[str, TypeName]] = Field(default_factory=dict)
    landing_dir: str | None = Field(
        None,
        description="where extracts not sorted by the order key are landed "
        "(sorted) for reading; default: a private folder in the system "
        "temporary directory",
    )
    landing_retention_hours: float = Field(
        24.0,
        gt=0,
        le=24 * 90,
        description="landed copies (patient rows) in the landing folder unused "
        "for this long are deleted the next time this connector lands or reads "
        "one (the folder is shared by the connectors that use it: give them "
        "the same retention)",
    )

    def model_post_init(self, __context: Any) -> None:
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise ValueError(f"unknown encoding {self.encoding!r}") from None


def check_encoding(path: Path, encoding: str, *, block: int = 1 << 20) -> None:
    """Decode the whole file; raise TerminalError with the first bad byte's offset."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    base = 0  # bytes fully handed to the decoder before this block
    newlines = 0
    with open(path, "rb") as fh:
        while True:
            data = fh.read(block)
            final = not data
            pending = decoder.getstate()[0]
            try:
                decoder.decode(data, final=final)
            except UnicodeDecodeError as exc:
                # exc.start is relative to pending + data.
                offset = base - len(pending) + exc.start
                with open(path, "rb") as again:
                    head = again.read(offset + 1)
                bad = head[offset : offset + 1]
                line = head.count(b"\n", 0, offset) + 1
                raise TerminalError(
                    f"{path.name} is not valid {encoding}: byte 0x{bad.hex()} at "
                    f"offset {offset} (line {line})"
                ) from None
            if final:
                return
            newlines += data.count(b"\n")
            base += len(data)


@dataclass(frozen=True)
class LandedCopy:
    """One landed copy: its file name, size and when it was last used."""

    name: str
    bytes: int
    last_used: float  # epoch seconds


#: Per column, from a scan: (strictly increasing as text, as integers), both
#: False once a NULL is seen.
OrderFlags = dict[str, tuple[bool, bool]]


@dataclass(frozen=True)
class _Scan:
    stamp: tuple[float, int]
    columns: tuple[str, ...]
    types: dict[str, str]
    rows: int
    #: Columns non-null and strictly increasing in file order (in their
    #: resolved type); None when the scan did not look.
    ordered: frozenset[str] | None = None


class FileSource(ABC):
    """A read-only source over one file per table (no SQL: no guard needed)."""

    kind: ClassVar[str] = "file"
    extensions: ClassVar[tuple[str, ...]] = ()
    capabilities: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        config: FileConfig,
        *,
        name: str = "connector",
        governor: Governor | None = None,
    ) -> None:
        self.config = config
        self.name = name
        self.governor = governor or Governor(name, config.governor)
        self._scans: dict[str, _Scan] = {}
        #: (table, key, file version) -> sorted by unique key? (kinds whose
        #: scan does not look at order check on first read)
        self._order_checks: dict[tuple[str, str, tuple[float, int]], bool] = {}
        #: Called with a QueryEvent for every read of a file's rows (the
        #: connector's query log, as the SQL kinds report their statements);
        #: the statement describes the read, with no value in it.
        self.on_query: Callable[[QueryEvent], None] | None = None

    # ---------------------------------------------------------- to implement

    @abstractmethod
    def _records(
        self, path: Path, batch: int
    ) -> Iterator[tuple[list[str], list[list[Any]]]]:
        """Yield (column names, rows) batches of raw values; raise on bad records."""

    # -------------------------------------------------------------- helpers

    def _err(self, text: str) -> TerminalError:
        return TerminalError(f"{self.kind} connector {self.name!r}: {text}")

    def _report(
        self,
        statement: str,
        purpose: str,
        started: float,
        rows: int,
        error: BaseException | None,
    ) -> None:
        """Tell ``on_query`` about one read (never breaks the read itself)."""
        if self.on_query is None:
            return
        outcome = "ok" if error is None or isinstance(error, GeneratorExit) else "error"
        message = str(error) if isinstance(error, EngineError) else ""
        with suppress(Exception):
            self.on_query(
                QueryEvent(
                    statement=statement,
                    purpose=purpose,
                    rows=rows,
                    duration_ms=int((time.monotonic() - started) * 1000),
                    outcome=outcome,
                    message=message[:500],
                )
            )

    def _logged(
        self, frames: Iterator[pd.DataFrame], statement: str, purpose: str
    ) -> Iterator[pd.DataFrame]:
        """Yield ``frames``, then report the read (rows, time, outcome)."""
        started, rows = time.monotonic(), 0
        error: BaseException | None = None
        try:
            for frame in frames:
                rows += len(frame)
                yield frame
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._report(statement, purpose, started, rows, error)

    def connect(self) -> FileSource:
        """Check that the path exists (files are opened per read)."""
        if not Path(self.config.path).exists():
            raise self._err(f"path {self.config.path} does not exist")
        return self

    def close(self) -> None:  # noqa: B027 - files are opened per read
        """Nothing to close (files are opened per read)."""

    def __enter__(self) -> FileSource:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.config!r}>"

    def _files(self) -> dict[str, Path]:
        root = Path(self.config.path)
        if root.is_file():
            return {root.stem: root}
        if not root.is_dir():
            raise self._err(f"path {root} does not exist")
        out: dict[str, Path] = {}
        for p in sorted(root.iterdir()):
            if p.is_file() and p.suffix.lower() in self.extensions:
                out.setdefault(p.stem, p)
        return out

    def _path(self, table: str) -> Path:
        path = self._files().get(table)
        if path is None:
            raise self._err(f"table {table!r} not found (no file for it)")
        return path

    def _scan(self, table: str) -> _Scan:
        path = self._path(table)
        st = path.stat()
        stamp = (st.st_mtime, st.st_size)
        cached = self._scans.get(table)
        if cached is not None and cached.stamp == stamp:
            return cached
        started = time.monotonic()
        error: BaseException | None = None
        rows = 0
        try:
            try:
                check_encoding(path, self.config.encoding)
            except TerminalError as exc:
                raise self._err(str(exc)) from None
            columns, seen, rows, order = self._scan_file(path)
        except BaseException as exc:
            error = exc
            raise
        finally:  # the scan reads every record (structure, types, order)
            self._report(
                f"SELECT * FROM {_q(path.name)}", "discover", started, rows, error
            )
        forced = self.config.column_types.get(table, {})
        types = {}
        for c in columns:
            if c in forced:
                types[c] = forced[c]
            elif not self.config.infer_types:
                types[c] = "text"
            else:
                types[c] = _resolve(seen[c])
        ordered = None
        if order is not None:
            ordered = frozenset(
                c
                for c in columns
                if (types[c] == "text" and order[c][0])
                or (types[c] == "integer" and order[c][1])
            )
        scan = _Scan(stamp, tuple(columns), types, rows, ordered)
        self._scans[table] = scan
        return scan

    def _scan_file(
        self, path: Path
    ) -> tuple[list[str], dict[str, set[str]], int, OrderFlags | None]:
        """Return column names, the value kinds seen per column, the row count
        and (where the kind looks) which columns are in strictly increasing order.
        """
        columns: list[str] = []
        seen: dict[str, set[str]] = {}
        rows = 0
        for names, batch in self._records(path, 50_000):
            for n in names:
                if n not in seen:
                    columns.append(n)
                    seen[n] = set()
            for i, n in enumerate(names):
                kinds = seen[n]
                for row in batch:
                    kinds.add(_kind(row[i]))
            rows += len(batch)
        return columns, seen, rows, None

    def _frames(self, table: str, batch: int) -> Iterator[pd.DataFrame]:
        scan = self._scan(table)
        path = self._path(table)
        if (path.stat().st_mtime, path.stat().st_size) != scan.stamp:
            raise self._err(f"{path.name} changed while being read")
        cols = list(scan.columns)
        types = [_ARROW[scan.types[c]] for c in cols]
        for names, rows in self._records(path, batch):
            if names != cols:  # JSON: keys differ per record -> align
                idx = {n: i for i, n in enumerate(names)}
                rows = [[r[idx[c]] if c in idx else None for c in cols] for r in rows]
            rows = [[_coerce(v, scan.types[c]) for v, c in zip(r, cols, strict=True)]
                    for r in rows]  # fmt: skip
            yield frame_from_rows(rows, cols, types)

    def _info(self, table: str) -> TableInfo:
        scan = self._scan(table)
        return TableInfo(
            name=table,
            columns=tuple(
                ColumnInfo(name=c, type=_DECLARED[scan.types[c]], nullable=True)
                for c in scan.columns
            ),
            row_count=scan.rows,
        )

    # --------------------------------------------------------------- public

    def check(self) -> CheckResult:
        """Return whether the files are there and readable (and valid)."""
        t0 = time.monotonic()
        try:
            self.connect()
            files = self._files()
            for table in files:
                self._scan(table)
        except EngineError as exc:
            return CheckResult(
                connector=self.name, kind=self.kind, ok=False,
                reachable=Path(self.config.path).exists(), authenticated=False,
                can_write=None, read_only_session=False,
                latency_ms=round((time.monotonic() - t0) * 1000, 1),
                problems=(str(exc),),
            )  # fmt: skip
        return CheckResult(
            connector=self.name,
            kind=self.kind,
            ok=True,
            reachable=True,
            authenticated=True,
            can_write=False,  # this kind never writes
            read_only_session=True,
            server=f"{len(files)} file(s)",
            latency_ms=round((time.monotonic() - t0) * 1000, 1),
            details={
                "files_writable": any(os.access(p, os.W_OK) for p in files.values())
            },
        )

    def discover(self) -> list[TableInfo]:
        """Return one table per file with inferred column types and row counts."""
        self.connect()
        return [self._info(t) for t in sorted(self._files())]

    def count(self, table: str) -> int:
        """Return the number of records in the table's file."""
        return self._scan(table).rows

    def sample(self, table: str, n: int = 100, page: int = 0) -> pd.DataFrame:
        """Return records page*n .. page*n+n-1 in file order."""
        n = self.governor.row_cap(n)
        skip = int(page) * n
        out: list[pd.DataFrame] = []
        got = 0
        frames = self._logged(
            self._frames(table, max(n, 1000)),
            f"SELECT * FROM {_q(self._path(table).name)} LIMIT ? OFFSET ?",
            "sample",
        )
        for frame in frames:
            if skip >= len(frame):
                skip -= len(frame)
                continue
            frame = frame.iloc[skip:]
            skip = 0
            out.append(frame.head(n - got))
            got += len(out[-1])
            if got >= n:
                break
        if not out:
            scan = self._scan(table)
            cols = list(scan.columns)
            return frame_from_rows([], cols, [_ARROW[scan.types[c]] for c in cols])
        return pd.concat(out, ignore_index=True)

    def profile(self, table: str, max_rows: int | None = None) -> TableProfile:
        """Return per-column statistics (one streamed pass)."""
        scan = self._scan(table)
        prof = Profiler(table, {c: _DECLARED[t] for c, t in scan.types.items()})
        seen = 0
        capped = False
        frames = self._logged(
            self._frames(table, self.governor.page_size(None)),
            f"SELECT * FROM {_q(self._path(table).name)}",
            "profile",
        )
        for frame in frames:
            if max_rows is not None and seen + len(frame) > max_rows:
                frame = frame.head(max_rows - seen)
                capped = True
            prof.add(frame)
            seen += len(frame)
            if capped:
                break
        return prof.result(capped=capped)

    def read_chunks(
        self,
        table: str,
        columns: Sequence[str],
        order_key: str,
        after_key: Any | None = None,
        chunk_size: int = 50_000,
        upto_key: Any | None = None,
    ) -> Iterator[pd.DataFrame]:
        """Yield chunks with key in (after_key, upto_key], in key order.

        A file sorted by the key streams; any other is landed first (see the
        module docstring) and read back in key pages.
        """
        where = [
            f"{_q(order_key)} {op} ?"
            for op, bound in ((">", after_key), ("<=", upto_key))
            if bound is not None
        ]
        statement = (
            f"SELECT {', '.join(_q(c) for c in columns)} "
            f"FROM {_q(self._path(table).name)}"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + f" ORDER BY {_q(order_key)}"
        )
        yield from self._logged(
            self._read_chunks(
                table, columns, order_key, after_key, chunk_size, upto_key
            ),
            statement,
            "read_chunks",
        )

    def _read_chunks(
        self,
        table: str,
        columns: Sequence[str],
        order_key: str,
        after_key: Any | None,
        chunk_size: int,
        upto_key: Any | None,
    ) -> Iterator[pd.DataFrame]:
        scan = self._scan(table)
        missing = [c for c in [*columns, order_key] if c not in scan.columns]
        if missing:
            raise self._err(f"unknown column(s) {', '.join(missing)} in {table!r}")
        if not self._sorted_by(table, order_key):
            yield from self._landed_chunks(
                table, columns, order_key, after_key, chunk_size, upto_key
            )
            return
        size = self.governor.page_size(chunk_size)
        after = after_key.item() if hasattr(after_key, "item") else after_key
        upto = upto_key.item() if hasattr(upto_key, "item") else upto_key
        cols = list(columns)
        last: Any = None
        pending: list[pd.DataFrame] = []
        pending_rows = 0
        line = 0
        for frame in self._frames(table, size):
            keys = frame[order_key]
            if keys.isna().any():
                raise self._err(f"{table}: order key {order_key!r} has empty values")
            if len(keys) and (
                not keys.is_monotonic_increasing
                or not keys.is_unique
                or (last is not None and not keys.iloc[0] > last)
            ):
                # Checked before the first read: the file changed since.
                raise self._err(
                    f"{self._path(table).name} is no longer sorted by unique "
                    f"{order_key!r} (near record {line + 1}): it changed while "
                    "being read"
                )
            line += len(frame)
            if len(keys):
                last = keys.iloc[-1]
            mask = pd.Series(True, index=frame.index)
            if after is not None:
                mask &= keys > after
            if upto is not None:
                mask &= keys <= upto
            part = frame.loc[mask, cols]
            if len(part):
                pending.append(part)
                pending_rows += len(part)
            while pending_rows >= size:
                block = pd.concat(pending, ignore_index=True)
                yield block.iloc[:size].reset_index(drop=True)
                rest = block.iloc[size:]
                pending, pending_rows = ([rest], len(rest)) if len(rest) else ([], 0)
            if upto is not None and last is not None and last > upto:
                break
        if pending_rows:
            yield pd.concat(pending, ignore_index=True)

    # ------------------------------------------------------------- landing

    def _sorted_by(self, table: str, key: str) -> bool:
        """Return whether the table's file is sorted by unique, non-null ``key``."""
        scan = self._scan(table)
        if scan.ordered is not None:
            return key in scan.ordered
        check = (table, key, scan.stamp)
        if check not in self._order_checks:
            ok, last = True, None
            for frame in self._frames(table, 50_000):
                keys = frame[key]
                if len(keys) and (
                    keys.isna().any()
                    or not keys.is_monotonic_increasing
                    or not keys.is_unique
                    or (last is not None and not keys.iloc[0] > last)
                ):
                    ok = False
                    break
                if len(keys):
                    last = keys.iloc[-1]
            self._order_checks[check] = ok
        return self._order_checks[check]

    def landing_root(self) -> Path:
        """Return the folder landed copies go to (created private, 0700)."""
        root = self._landing_folder()
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = root.stat()
        if st.st_uid != os.getuid():  # e.g. planted in a shared /tmp
            raise self._err(f"landing folder {root} belongs to another user")
        if stat.S_IMODE(st.st_mode) & 0o077:
            root.chmod(0o700)
        self._sweep(root)
        return root

    def _sweep(self, root: Path) -> None:
        """Delete landed copies (and crashed landings' leftovers) unused too long."""
        cutoff = time.time() - self.config.landing_retention_hours * 3600
        for p in root.iterdir():
            if not _LANDED.match(p.name):  # only what landing wrote
                continue
            with suppress(FileNotFoundError):
                if p.is_file() and p.stat().st_mtime < cutoff:
                    p.unlink()
                    log.info(
                        "%s connector %r: removed landed copy %s (unused for %g h)",
                        self.kind, self.name, p.name,
                        self.config.landing_retention_hours,
                    )  # fmt: skip

    def _read_options(self) -> dict[str, Any]:
        """Return the config that decides what a file's values are.

        Everything but where copies go, how long they are kept, the file's
        path (already in the copy's name) and the guard's settings: an
        option added later counts until it is listed here, so a copy is
        never served under options it was not landed with.
        """
        return self.config.model_dump(mode="json", exclude=_NOT_READ_OPTIONS)

    def _owner(self) -> str:
        """Return the name prefix of this connector's landed copies.

        The extract's path AND how it is read: the same bytes read with
        another encoding or quote character are other values, so a copy is
        never served under options it was not landed with, and two
        connectors on one extract with different options each keep their
        own copies instead of landing over each other's.
        """
        return _digest(
            [self.kind, str(Path(self.config.path).resolve()), self._read_options()]
        )

    def landing_identity(self) -> tuple[str, str]:
        """Return (landing folder, name prefix): where this config's copies are.

        Two configs with the same identity read and keep the same copies; a
        config change that alters it leaves the old copies unreachable.
        Nothing is created on disk.
        """
        return str(self._landing_folder()), self._owner()

    def _landing_folder(self) -> Path:
        """Return the landing folder's path (not created)."""
        folder = self.config.landing_dir or str(
            Path(tempfile.gettempdir()) / f"pas-landing-{os.getuid()}"
        )
        return Path(folder).resolve()

    def landed_copies(self) -> list[LandedCopy]:
        """Return this connector's landed copies (none when nothing was landed)."""
        out = []
        for p in sorted(self.landing_root().glob(f"{self._owner()}-*.sqlite3")):
            with suppress(FileNotFoundError):
                st = p.stat()
                out.append(LandedCopy(p.name, st.st_size, st.st_mtime))
        return out

    def purge_landed(self) -> list[LandedCopy]:
        """Delete this connector's landed copies; return what was deleted."""
        gone = []
        root = self.landing_root()
        for copy in self.landed_copies():
            with suppress(FileNotFoundError):
                (root / copy.name).unlink()
                gone.append(copy)
        return gone

    def landed_path(self, table: str, key: str) -> Path:
        """Return the landed copy of ``table`` sorted by ``key`` (landing it if needed)."""
        scan = self._scan(table)
        src = self._path(table)
        root = self.landing_root()
        # Which copy: the connector's (its extract and how it is read), then
        # the file and key; its version, the file's as last scanned.
        which = (
            f"{self._owner()}-{_digest([self.kind, str(src.resolve()), table, key])}"
        )
        version = _digest([list(scan.stamp), list(scan.columns), scan.types])
        final = root / f"{which}-{version}.sqlite3"
        with suppress(FileNotFoundError):
            os.utime(final)  # in use: the retention clock starts again
            return final
        for stale in root.glob(f"{which}-*.sqlite3"):  # an earlier file version
            if stale != final:
                stale.unlink(missing_ok=True)
        token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        unsorted = root / f".{which}-{token}.unsorted"
        partial = root / f".{which}-{token}.partial"
        started = time.monotonic()
        rows = 0
        error: BaseException | None = None
        try:
            for p in (unsorted, partial):  # private before any row is written
                os.close(os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            rows = self._ingest(table, unsorted)
            self._sort_into(table, key, scan, unsorted, partial)
            os.replace(partial, final)
        except BaseException as exc:
            error = exc
            raise
        finally:
            unsorted.unlink(missing_ok=True)
            partial.unlink(missing_ok=True)
            self._report(
                f"SELECT * FROM {_q(src.name)} ORDER BY {_q(key)}",
                "land",
                started,
                rows,
                error,
            )
        log.info(
            "%s connector %r: landed %s sorted by %s (%d rows, %.1f s)",
            self.kind, self.name, src.name, key, rows, time.monotonic() - started,
        )  # fmt: skip
        return final

    def _ingest(self, table: str, path: Path) -> int:
        """Copy every record of ``table`` into ``path`` (table ``_rows``), file order.

        Through the ADBC SQLite driver: Arrow in, no Python object per value.
        """
        import adbc_driver_sqlite.dbapi as adbc_sqlite

        rows = 0
        with closing(adbc_sqlite.connect(str(path))) as conn:
            with closing(conn.cursor()) as cur:
                for frame in self._frames(table, 50_000):
                    data = pa.Table.from_pandas(frame, preserve_index=False)
                    cur.adbc_ingest("_rows", data, mode="create_append")
                    rows += len(frame)
            conn.commit()
        return rows

    def _sort_into(
        self, table: str, key: str, scan: _Scan, unsorted: Path, partial: Path
    ) -> None:
        """Write ``unsorted``'s rows into ``partial``, clustered by unique ``key``."""
        name = self._path(table).name
        with closing(sqlite3.connect(unsorted)) as conn:
            if conn.execute(
                f"SELECT 1 FROM _rows WHERE {_q(key)} IS NULL LIMIT 1"
            ).fetchone():
                raise self._err(f"{name}: order key {key!r} has empty values")
            conn.execute("ATTACH DATABASE ? AS landed", (str(partial),))
            conn.execute("PRAGMA landed.journal_mode = OFF")
            conn.execute("PRAGMA landed.synchronous = OFF")
            conn.execute(_landed_ddl(table, key, scan))
            cols = ", ".join(_q(c) for c in scan.columns)
            try:
                conn.execute(
                    f"INSERT INTO landed.{_q(table)} ({cols}) "
                    f"SELECT {cols} FROM _rows ORDER BY {_q(key)}"
                )
            except sqlite3.IntegrityError:
                raise self._err(
                    f"{name}: order key {key!r} repeats a value; the engine needs "
                    "a unique key to read in order"
                ) from None
            conn.commit()
            conn.execute("DETACH DATABASE landed")

    def _landed_chunks(
        self,
        table: str,
        columns: Sequence[str],
        key: str,
        after_key: Any | None,
        chunk_size: int,
        upto_key: Any | None,
    ) -> Iterator[pd.DataFrame]:
        """Read key pages of the landed copy, as the file itself would give them."""
        from connectors.kinds.sqlite import SqliteConfig, SqliteSource

        scan = self._scan(table)
        landed = SqliteSource(
            SqliteConfig(path=str(self.landed_path(table, key))),
            name=f"{self.name} (landed)",
            governor=self.governor,
        )
        schema = pa.schema([(c, _ARROW[scan.types[c]]) for c in columns])
        try:
            for frame in landed.read_chunks(
                table,
                list(columns),
                key,
                after_key=after_key,
                chunk_size=chunk_size,
                upto_key=upto_key,
            ):
                data = pa.Table.from_pandas(frame[list(columns)], preserve_index=False)
                yield to_pandas(data.cast(schema))
        finally:
            landed.close()

    def query(self, sql: str, max_rows: int | None = None) -> pd.DataFrame:
        """File kinds run no SQL; raises TerminalError."""
        raise self._err("this kind has no SQL: use sample/read_chunks")


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


#: Config fields that do not change what a file's values are (see _read_options).
_NOT_READ_OPTIONS = {
    "path",
    "landing_dir",
    "landing_retention_hours",
    "block_size",
    "governor",
    "allowed_tables",
}


def _digest(parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def _landed_ddl(table: str, key: str, scan: _Scan) -> str:
    """The landed table (attached as ``landed``): the file's columns, clustered by key."""
    cols = ", ".join(f"{_q(c)} {_DECLARED[scan.types[c]]}" for c in scan.columns)
    return (
        f"CREATE TABLE landed.{_q(table)} ({cols}, PRIMARY KEY ({_q(key)})) "
        "WITHOUT ROWID"
    )


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        if value == "":
            return "empty"
        if _INT.match(value):
            return "integer"
        if _FLOAT.match(value):
            return "float"
        return "text"
    return "text"


def _resolve(kinds: set[str]) -> str:
    k = kinds - {"null", "empty"}
    if "empty" in kinds and k & {"integer", "float"}:
        return "text"  # '' in a numeric column: keep the distinction, keep text
    if not k:
        return "text"
    if k <= {"integer"}:
        return "integer"
    if k <= {"integer", "float"} and "float" in k:
        return "float"
    if k == {"boolean"}:
        return "boolean"
    return "text"


def _coerce(value: Any, typ: str) -> Any:
    if value is None:
        return None
    if typ == "integer":
        return int(value)
    if typ == "float":
        return float(value)
    if typ == "boolean":
        return bool(value)
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        import json

        return json.dumps(value, ensure_ascii=False)
    return str(value)
