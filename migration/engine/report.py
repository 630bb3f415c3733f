"""RunReport: what a run did, table by table, as a plain value to persist."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ColumnMetrics:
    """Reconciliation and DQMI metrics of one target column."""

    name: str
    source_columns: str
    source_nulls: int = 0
    target_nulls: int = 0
    null_rate: float = 0.0
    rejects: int = 0
    reject_rate: float = 0.0
    defaults_used: int = 0
    lenient_fills: int = 0
    checksum_source: list[int] | None = None
    checksum_target: list[int] | None = None
    checksum_match: bool | None = None
    #: NHS DQMI item metrics, percentages 0..100
    dqmi: dict[str, float] = field(default_factory=dict)


@dataclass
class TableReport:
    """Ledger, rejects and metrics of one target table."""

    table: str
    source_table: str
    source_rows: int = 0
    rows_read: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    rows_excluded: int = 0
    rows_flagged: int = 0
    ledger_balanced: bool = False
    ledger_difference: int = 0
    rejects_by_reason: dict[str, int] = field(default_factory=dict)
    flags_by_reason: dict[str, int] = field(default_factory=dict)
    excluded_by_rule: dict[str, int] = field(default_factory=dict)
    columns: list[ColumnMetrics] = field(default_factory=list)
    dqmi: dict[str, float] = field(default_factory=dict)
    #: Seconds this invocation spent loading the table, from its first chunk
    #: to its last commit (0 when an earlier invocation or key-range workers
    #: loaded it). Tables overlap: the next one starts before this one ends.
    seconds: float = 0.0
    #: crosswalk id -> local codes a lenient lookup filled with its default
    #: (code -> rows); the miss queue takes them from here
    defaulted_codes: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def reject_rate(self) -> float:
        """Return rejected / read (0 when nothing was read)."""
        return self.rows_rejected / self.rows_read if self.rows_read else 0.0


@dataclass
class FkChain:
    """Completeness of one reference between published tables."""

    table: str
    column: str
    ref_table: str
    ref_column: str
    rows: int
    orphans: int

    @property
    def completeness(self) -> float:
        """Return the share of rows whose parent exists (1.0 when no rows)."""
        return 1.0 - self.orphans / self.rows if self.rows else 1.0


@dataclass
class RunReport:
    """The result of ``run_contract``; ``status`` is succeeded/failed/cancelled."""

    run_id: str
    contract_name: str
    contract_version: str
    contract_sha256: str
    target_model: str
    as_of: str
    status: str = "running"
    failure_reasons: list[str] = field(default_factory=list)
    tables: list[TableReport] = field(default_factory=list)
    fk_chains: list[FkChain] = field(default_factory=list)
    flagged: list[dict[str, Any]] = field(default_factory=list)
    reject_csv: str | None = None
    started_at: str = ""
    finished_at: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    resumed: bool = False
    #: How the column checksums were taken (``migration.engine.checksums``):
    #: which hash of each value's text is summed, so a stored report says
    #: what its checksum figures mean ("" before the checksum pass ran).
    checksum_scheme: str = ""

    def table(self, name: str) -> TableReport:
        """Return the report of table ``name``; raises KeyError when absent."""
        for t in self.tables:
            if t.table == name:
                return t
        raise KeyError(name)

    @property
    def ledger_balanced(self) -> bool:
        """Return True when every table's ledger balances."""
        return bool(self.tables) and all(t.ledger_balanced for t in self.tables)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (the caller persists it)."""
        data = dataclasses.asdict(self)
        for t, td in zip(self.tables, data["tables"], strict=True):
            td["reject_rate"] = t.reject_rate
        for c, cd in zip(self.fk_chains, data["fk_chains"], strict=True):
            cd["completeness"] = c.completeness
        return data
