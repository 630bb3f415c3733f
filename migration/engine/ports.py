"""The engine's ports: what a source and a target sink must provide.

Connector kinds (``connectors/kinds``) implement these structurally; the engine
never imports them. Chunks are pandas DataFrames (pyarrow-backed dtypes allowed)
whose columns are the requested source columns, ordered by the key column.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import pandas as pd


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


@runtime_checkable
class Sink(Protocol):
    """A target that stages rows per run and publishes them atomically."""

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
