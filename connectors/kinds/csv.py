"""``csv`` kind: a folder of ``<table>.csv`` files (or one file), read with
pyarrow's streaming CSV reader.

NULL vs empty string (Caché keeps them apart): an unquoted empty field is
NULL, a quoted ``""`` is the empty string. Delimiter, quote character and
encoding are configurable. A malformed row raises TerminalError with the file
name and line number; a wrong encoding, with the byte offset.

Framework-free: no Django import.
"""

from __future__ import annotations

import csv as pycsv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from pydantic import Field

from connectors.kinds import register
from connectors.kinds.base import to_pandas
from connectors.kinds.files import FileConfig, FileSource, OrderFlags

__all__ = ["CsvConfig", "CsvSource"]

_INT_RX = r"^-?(0|[1-9][0-9]{0,8})$"
# A float has a point or an exponent: a bare digit string that is not an
# integer (a leading zero, 10+ digits) is an identifier -- NHS numbers, ZIP
# and postcode-like codes -- and stays text, never 4857773456.0 or 2155.0.
_FLOAT_RX = r"^-?(([0-9]+\.[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?|[0-9]+[eE][-+]?[0-9]+)$"


class CsvConfig(FileConfig):
    """Config of a CSV extract."""

    delimiter: str = Field(",", min_length=1, max_length=1)
    quotechar: str = Field('"', min_length=1, max_length=1)
    block_size: int = Field(1 << 20, ge=1 << 12, le=1 << 28)


class CsvSource(FileSource):
    """Read-only source over CSV files."""

    kind = "csv"
    extensions = (".csv",)

    def __init__(self, config: CsvConfig, **kw: Any) -> None:
        super().__init__(config, **kw)
        self.config: CsvConfig = config
        self._strict_records = -1

    def _header(self, path: Path) -> list[str]:
        with open(path, encoding=self.config.encoding, newline="") as fh:
            reader = pycsv.reader(
                fh, delimiter=self.config.delimiter, quotechar=self.config.quotechar
            )
            header = next(reader, None)
        if not header:
            raise self._err(f"{path.name} is empty (no header row)")
        if len(set(header)) != len(header):
            raise self._err(f"{path.name}: duplicate column names in the header")
        return header

    def _batches(self, path: Path) -> Iterator[pa.RecordBatch]:
        names = self._header(path)
        try:
            reader = self._open_csv(path, names)
        except pa.ArrowInvalid:
            # The first block is parsed on open; pyarrow's message quotes the
            # row (patient data): replace it with a line number.
            raise self._locate(path, len(names)) from None
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except pa.ArrowInvalid:
                raise self._locate(path, len(names)) from None
            yield batch

    def _open_csv(self, path: Path, names: list[str]) -> Any:
        return pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(
                encoding=self.config.encoding,
                block_size=self.config.block_size,
                use_threads=False,
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=self.config.delimiter,
                quote_char=self.config.quotechar,
                newlines_in_values=True,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names},
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
                null_values=[""],
            ),
        )

    def _locate(self, path: Path, ncols: int) -> Exception:
        """Return the error for the first malformed record (line number), if any."""
        # pyarrow reports no line numbers and tolerates text after a closing
        # quote; the csv module in strict mode does neither.
        records = 0
        with open(path, encoding=self.config.encoding, newline="") as fh:
            reader = pycsv.reader(
                fh,
                delimiter=self.config.delimiter,
                quotechar=self.config.quotechar,
                strict=True,
            )
            try:
                for row in reader:
                    if len(row) != ncols:
                        return self._err(
                            f"{path.name} line {reader.line_num}: malformed row, "
                            f"expected {ncols} fields, got {len(row)}"
                        )
                    records += 1
            except pycsv.Error as exc:
                return self._err(
                    f"{path.name} line {reader.line_num}: malformed row ({exc})"
                )
        self._strict_records = records - 1  # minus the header
        return self._err(f"{path.name}: malformed CSV")

    def _records(
        self, path: Path, batch: int
    ) -> Iterator[tuple[list[str], list[list[Any]]]]:
        for b in self._batches(path):
            cols = [b.column(i).to_pylist() for i in range(b.num_columns)]
            yield list(b.schema.names), [list(r) for r in zip(*cols, strict=True)]

    def _scan_file(
        self, path: Path
    ) -> tuple[list[str], dict[str, set[str]], int, OrderFlags]:
        names = self._header(path)
        # Strict structural pass first (once per file version): a malformed
        # record anywhere fails the whole table with its line number.
        self._strict_records = -1
        err = self._locate(path, len(names))
        if self._strict_records < 0:
            raise err
        seen: dict[str, set[str]] = {n: set() for n in names}
        # Which columns are strictly increasing (as text, as integers): the
        # engine reads by key, and a file already in key order streams as is.
        order = {n: _Order() for n in names}
        rows = 0
        for b in self._batches(path):
            rows += b.num_rows
            for n in names:
                col = b.column(n)
                order[n].add(col)
                kinds = seen[n]
                if col.null_count:
                    kinds.add("null")
                values = pc.drop_null(col)
                if len(values) == 0:
                    continue
                empty = pc.equal(values, "")
                if pc.any(empty).as_py():
                    kinds.add("empty")
                    values = pc.filter(values, pc.invert(empty))
                if len(values) == 0 or "text" in kinds:
                    continue
                ints = pc.match_substring_regex(values, _INT_RX)
                if pc.all(ints).as_py():
                    kinds.add("integer")
                elif pc.all(
                    pc.or_(ints, pc.match_substring_regex(values, _FLOAT_RX))
                ).as_py():
                    kinds.add("float")  # integers and floats: a float column
                else:
                    kinds.add("text")
        if rows != self._strict_records:
            raise self._err(
                f"{path.name}: {rows} records parsed but {self._strict_records} in the "
                "file; refusing to guess"
            )
        return names, seen, rows, {n: (o.text, o.integer) for n, o in order.items()}

    def _frames(self, table: str, batch: int) -> Iterator[pd.DataFrame]:
        scan = self._scan(table)
        path = self._path(table)
        if (path.stat().st_mtime, path.stat().st_size) != scan.stamp:
            raise self._err(f"{path.name} changed while being read")
        casts = {"integer": pa.int64(), "float": pa.float64()}
        pending: list[pa.RecordBatch] = []
        rows = 0
        for b in self._batches(path):
            arrays = []
            for n in scan.columns:
                col = b.column(n)
                typ = casts.get(scan.types[n])
                arrays.append(pc.cast(col, typ) if typ is not None else col)
            pending.append(pa.RecordBatch.from_arrays(arrays, names=list(scan.columns)))
            rows += b.num_rows
            while rows >= batch:
                table_ = pa.Table.from_batches(pending)
                yield to_pandas(table_.slice(0, batch))
                rest = table_.slice(batch)
                pending = rest.to_batches()
                rows = rest.num_rows
        if rows:
            yield to_pandas(pa.Table.from_batches(pending))


class _Order:
    """Whether a column's batches so far are non-null and strictly increasing.

    As text (Arrow compares UTF-8 bytes, i.e. code points, as Python does)
    and as integers (only while every value is a decimal integer).
    """

    def __init__(self) -> None:
        self.text = True
        self.integer = True
        self._last_text: str | None = None
        self._last_int: int | None = None

    def add(self, col: pa.Array) -> None:
        if not (self.text or self.integer) or len(col) == 0:
            return
        if col.null_count:
            self.text = self.integer = False
            return
        if self.text:
            self.text = _rising(col, self._last_text)
            self._last_text = col[-1].as_py()
        if self.integer:
            if not pc.all(pc.match_substring_regex(col, _INT_RX)).as_py():
                self.integer = False
                return
            ints = pc.cast(col, pa.int64())
            self.integer = _rising(ints, self._last_int)
            self._last_int = ints[-1].as_py()


def _rising(values: pa.Array, previous: Any) -> bool:
    """Return whether ``values`` rise strictly, starting above ``previous``."""
    if previous is not None and not values[0].as_py() > previous:
        return False
    if len(values) < 2:
        return True
    n = len(values)
    return bool(pc.all(pc.greater(values.slice(1), values.slice(0, n - 1))).as_py())


register("csv", CsvConfig, CsvSource)
