"""The engine's ports: what a source and a target sink must provide.

Connector kinds (``connectors/kinds``) implement these structurally; the engine
never imports them. Chunks are pandas DataFrames (pyarrow-backed dtypes allowed)
whose columns are the requested source columns, ordered by the key column.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import pandas as pd  # type: ignore[import-untyped, unused-ignore]


@dataclass(frozen=True)
class ColumnInfo:
    """One column of a discovered table."""

    name: str
    type: str
    nullable: bool = True
    primary_key: bool = False


@dataclass(frozen=True)
class ForeignKey:
    """A foreign key as the source catalog reports it."""

    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]


@dataclass(frozen=True)
class TableInfo:
    """One discovered table."""

    name: str
    columns: tuple[ColumnInfo, ...]
    primary_key: tuple[str, ...] = ()
    foreign_keys: tuple[ForeignKey, ...] = ()
    row_count: int | None = None


@runtime_checkable
class Source(Protocol):
    """A read-only, keyset-paginated reader of source tables."""

    def discover(self) -> list[TableInfo]:
        """Return the tables, columns, keys and row counts of the source."""
        ...

    def count(self, table: str) -> int:
        """Return the number of rows in ``table``."""
        ...

    def read_chunks(
        self,
        table: str,
        columns: Sequence[str],
        order_key: str,
        after_key: Any | None = None,
        chunk_size: int = 50_000,
        upto_key: Any | None = None,
    ) -> Iterator[pd.DataFrame]:
        """Yield DataFrames of ``columns`` ordered by ``order_key``.

        Rows with key > ``after_key`` (and <= ``upto_key`` when given) only, so a
        resumed run restarts exactly after its last committed chunk and a key
        range can be a separate task.
        """
        ...


@dataclass(frozen=True)
class Checkpoint:
    """What the engine commits with each chunk, atomically with the rows."""

    run_id: str
    table: str
    last_key: Any
    rows_read: int
    rows_loaded: int
    rows_rejected: int
    rows_excluded: int
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: the key range this checkpoint belongs to; ``"all"`` is the whole table
    range_id: str = "all"


#: Range id of a table loaded as one unit (the single-process case).
WHOLE_TABLE = "all"


@dataclass(frozen=True)
class KeyRange:
    """One key range of a source table: keys in (``after_key``, ``upto_key``].

    ``None`` bounds are open: (None, None] is the whole table. The ranges a
    planner returns for one table cover it exactly once.
    """

    range_id: str
    after_key: Any | None = None
    upto_key: Any | None = None


@dataclass(frozen=True)
class StageColumn:
    """One column of a staged target table (target field or provenance)."""

    name: str
    sql_type: str


@dataclass(frozen=True)
class StageTable:
    """What a sink needs to stage one target table for a run.

    ``key`` is the business key (unique once published); ``foreign_keys`` are
    built after the load; ``checksum_columns`` are the columns whose
    order-independent checksums reconciliation compares.
    """

    name: str
    columns: tuple[StageColumn, ...]
    key: tuple[str, ...]
    foreign_keys: tuple[ForeignKey, ...] = ()
    checksum_columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class StagedStep:
    """One step of a table's cross-table phase, run by the sink on staged data.

    kinds: ``reject`` / ``flag`` (``sql`` is a SELECT of ``_source_key,
    _source_table, raw_value`` over staged tables named by ``{table}``
    placeholders; rejected rows move from staging to the reject store),
    ``update`` (``sql`` is an UPDATE over staged tables), ``resolve``
    (``columns`` = (field, lookup column): set the field to ``ref_table``'s
    ``ref_columns[1]`` where its ``ref_columns[0]`` equals the lookup column;
    rows without a parent keep the field; the sink chooses how: an UPDATE
    or a rewrite of the table), ``unique_index`` and ``drop_column``
    (``columns``), ``foreign_key`` (``columns`` -> ``ref_table``/
    ``ref_columns``; sinks without ALTER ADD FK may skip it).
    """

    kind: str
    rule_id: str = ""
    reason: str = ""
    column: str = ""
    sql: str = ""
    columns: tuple[str, ...] = ()
    ref_table: str = ""
    ref_columns: tuple[str, ...] = ()


#: Columns of the reject frame the engine passes to ``Sink.write_chunk``.
REJECT_COLUMNS = (
    "run_id",
    "target_table",
    "source_table",
    "source_key",
    "column_name",
    "raw_value",
    "rule_id",
    "reason",
    "crosswalk_id",
    "crosswalk_version",
    "action",
    "stage",
)


@runtime_checkable
class Sink(Protocol):
    """A target that stages rows per run and publishes them atomically.

    Rows handed to ``write_chunk`` have one column per ``StageTable`` column,
    as nullable strings (DATE ``YYYY-MM-DD``, TIMESTAMP ``YYYY-MM-DD
    HH:MM:SS``) or nullable integers; rejects have ``REJECT_COLUMNS``.
    ``action`` is ``reject``, ``exclude`` or ``flag``.
    """

    def prepare(self, run_id: str, tables: Sequence[Any]) -> None:
        """Create run-scoped staging tables (idempotent; keep existing staged rows)."""
        ...

    def checkpoint(self, run_id: str, table: str) -> Checkpoint | None:
        """Return the last committed checkpoint of ``table`` in this run, if any."""
        ...

    def write_chunk(
        self,
        run_id: str,
        table: str,
        rows: pd.DataFrame,
        rejects: pd.DataFrame,
        checkpoint: Checkpoint,
    ) -> None:
        """Stage valid rows and rejects and store the checkpoint in ONE transaction."""
        ...

    def publish(self, run_id: str, tables: Sequence[Any]) -> None:
        """Build indexes/keys and swap staging into place atomically."""
        ...

    def count(self, table: str, run_id: str | None = None) -> int:
        """Return the row count of a published (or, with run_id, staged) table."""
        ...

    def reset_table(self, run_id: str, table: str) -> None:
        """Drop a table's staged rows, rejects and checkpoint (restart it)."""
        ...

    def apply_staged_steps(
        self, run_id: str, table: str, steps: Sequence[StagedStep]
    ) -> Mapping[str, Any]:
        """Run a table's cross-table phase in ONE transaction, exactly once.

        Returns ``{"moved": {reason: n}, "flagged": {reason: n},
        "moved_checksums": {column: [count, sum]}}``; a second call for the
        same run and table returns the stored result and changes nothing.
        """
        ...

    def is_published(self, run_id: str) -> bool:
        """Return True once ``publish`` has committed for this run."""
        ...

    def reject_counts(self, run_id: str) -> list[tuple[str, str, str, int]]:
        """Return (target_table, action, reason, rows) for the run's reject store."""
        ...

    def flags(self, run_id: str, limit: int = 1000) -> list[dict[str, Any]]:
        """Return up to ``limit`` flagged rows (table, source key, reason)."""
        ...

    def table_profile(
        self, table: str, columns: Sequence[str], checksum_columns: Sequence[str]
    ) -> dict[str, Any]:
        """Return rows, per-column nulls and checksums of a published table.

        A table that does not exist profiles as empty (0 rows).
        """
        ...

    def orphan_count(
        self, table: str, column: str, ref_table: str, ref_column: str
    ) -> int:
        """Return published rows of ``table`` whose ``column`` has no parent."""
        ...

    def export_rejects(self, run_id: str, path: str) -> int:
        """Write the run's reject store to CSV at ``path``; return rows written."""
        ...


@runtime_checkable
class RangeSink(Protocol):
    """A sink that checkpoints key ranges of a table separately (scale-out).

    ``write_chunk`` stores the checkpoint under ``checkpoint.range_id``.
    """

    def range_checkpoint(
        self, run_id: str, table: str, range_id: str
    ) -> Checkpoint | None:
        """Return the last committed checkpoint of one range of ``table``."""
        ...

    def range_checkpoints(self, run_id: str, table: str) -> list[Checkpoint]:
        """Return the checkpoints of every range of ``table`` in this run."""
        ...
