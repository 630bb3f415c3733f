"""Migration models: what was seen (snapshots), decided (mappings, crosswalks),
frozen (contracts) and done (runs, tables, rejects).

Models carry no workflow rules: the services change state, check permissions
and write the audit event; ``adapters.py`` is the only bridge to the engine.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models

from migration.engine.contract import ExcludeRule


class ReviewStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    PROPOSED = "proposed", "Proposed"
    APPROVED = "approved", "Approved"
    FLAGGED = "flagged", "Flagged"
    REJECTED = "rejected", "Rejected"


class Reviewable(models.Model):
    """Four-eyes review fields shared by field mappings and crosswalk rows."""

    status = models.CharField(
        max_length=16, choices=ReviewStatus.choices, default=ReviewStatus.DRAFT
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    last_changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    rationale = models.TextField(blank=True)
    review_comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    changed_at = models.DateTimeField(auto_now=True)
    reviewed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True


# --- what was seen -----------------------------------------------------------


class SchemaSnapshot(models.Model):
    """A connector's schema (tables, columns, types, keys, profiles) at a moment."""

    project = models.ForeignKey(
        "governance.MigrationProject",
        on_delete=models.CASCADE,
        related_name="snapshots",
    )
    connector = models.ForeignKey(
        "connectors.Connector", on_delete=models.PROTECT, related_name="snapshots"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    # [{"name", "columns": [{"name", "type", "nullable", "primary_key"}],
    #   "primary_key", "foreign_keys", "row_count"}]
    tables = models.JSONField(default=list)
    # {table: {column: profile dict}} — values shown are small-number suppressed.
    profiles = models.JSONField(default=dict)
    fingerprint = models.CharField(max_length=64)

    class Meta:
        ordering = ["-created_at"]
        get_latest_by = "created_at"

    def __str__(self) -> str:
        return f"snapshot #{self.pk} of {self.connector_id}"


# --- code systems and crosswalks ----------------------------------------------


class CodeSystem(models.Model):
    """One release of a national code system (e.g. Admission Method England 1.0.0)."""

    slug = models.CharField(max_length=80)  # engine id, e.g. "admission_method"
    name = models.CharField(max_length=200)
    version = models.CharField(max_length=40)
    release = models.CharField(max_length=120, blank=True)
    valid_from = models.DateField(null=True, blank=True)
    valid_to = models.DateField(null=True, blank=True)
    verified = models.BooleanField(default=True)
    loaded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug", "version"]
        constraints = [
            models.UniqueConstraint(
                fields=["slug", "version"], name="uniq_codesystem_version"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} {self.version}"


class Concept(models.Model):
    code_system = models.ForeignKey(
        CodeSystem, on_delete=models.CASCADE, related_name="concepts"
    )
    code = models.CharField(max_length=40)
    display = models.CharField(max_length=300)
    valid_from = models.DateField(null=True, blank=True)
    valid_to = models.DateField(null=True, blank=True)
    retired = models.BooleanField(default=False)

    class Meta:
        ordering = ["code_system", "code"]
        constraints = [
            models.UniqueConstraint(
                fields=["code_system", "code"], name="uniq_concept_code"
            )
        ]

    def __str__(self) -> str:
        return f"{self.code} {self.display}"


class Crosswalk(models.Model):
    """A project's translation of one local code table into one national code system."""

    project = models.ForeignKey(
        "governance.MigrationProject",
        on_delete=models.CASCADE,
        related_name="crosswalks",
    )
    slug = models.CharField(max_length=80)  # engine id, e.g. "sex"
    name = models.CharField(max_length=200)
    local_table = models.CharField(max_length=80, blank=True)  # e.g. CT_LocalCode SEX
    code_system = models.ForeignKey(
        CodeSystem, on_delete=models.PROTECT, related_name="+"
    )
    version = models.PositiveIntegerField(default=1)
    default_code = models.CharField(max_length=40, blank=True)  # lenient-mode default
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "slug"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "slug"], name="uniq_crosswalk_slug"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class Equivalence(models.TextChoices):
    EQUAL = "equal", "Equal"
    EQUIVALENT = "equivalent", "Equivalent"
    WIDER = "wider", "Wider"
    NARROWER = "narrower", "Narrower"
    INEXACT = "inexact", "Inexact"
    UNMATCHED = "unmatched", "Unmatched"


class CrosswalkRow(Reviewable):
    crosswalk = models.ForeignKey(
        Crosswalk, on_delete=models.CASCADE, related_name="rows"
    )
    local_code = models.CharField(max_length=80)
    local_display = models.CharField(max_length=300, blank=True)
    target_code = models.CharField(max_length=40, blank=True)  # blank when unmatched
    equivalence = models.CharField(max_length=16, choices=Equivalence.choices)
    retired_target = models.BooleanField(default=False)  # flagged by a new release

    class Meta:
        ordering = ["crosswalk", "local_code"]
        constraints = [
            models.UniqueConstraint(
                fields=["crosswalk", "local_code"], name="uniq_crosswalk_row"
            )
        ]

    def __str__(self) -> str:
        return f"{self.local_code} → {self.target_code or '∅'}"


class MissQueueEntry(models.Model):
    """A local value a run could not translate, waiting for a steward."""

    class State(models.TextChoices):
        OPEN = "open", "Open"
        RESOLVED = "resolved", "Resolved"
        IGNORED = "ignored", "Ignored"

    crosswalk = models.ForeignKey(
        Crosswalk, on_delete=models.CASCADE, related_name="misses"
    )
    local_value = models.CharField(max_length=200)
    #: rows of the run that held this value and found no crosswalk row
    frequency = models.PositiveBigIntegerField(default=0)
    #: of those, rows a lenient lookup filled with the crosswalk's default
    #: (loaded, not rejected: the national code they got is a guess)
    defaulted = models.PositiveBigIntegerField(default=0)
    run = models.ForeignKey(
        "migration.Run", on_delete=models.CASCADE, related_name="misses"
    )
    state = models.CharField(max_length=16, choices=State.choices, default=State.OPEN)
    first_seen_at = models.DateTimeField(auto_now_add=True)
    #: why a steward left the value untranslated (state ignored)
    note = models.CharField(max_length=500, blank=True, default="")
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-frequency"]
        constraints = [
            models.UniqueConstraint(
                fields=["crosswalk", "local_value", "run"], name="uniq_miss_per_run"
            )
        ]

    def __str__(self) -> str:
        return f"{self.local_value!r} x{self.frequency}"


# --- mappings -----------------------------------------------------------------


class MappingSet(models.Model):
    """A project's mapping of one source snapshot onto one target model version."""

    project = models.ForeignKey(
        "governance.MigrationProject",
        on_delete=models.CASCADE,
        related_name="mapping_sets",
    )
    name = models.CharField(max_length=200)
    source_snapshot = models.ForeignKey(
        SchemaSnapshot, on_delete=models.PROTECT, related_name="mapping_sets"
    )
    target_model_version = models.CharField(max_length=40)
    options = models.JSONField(
        default=dict, blank=True
    )  # rule packs, chunk size, as_of
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "name"]

    def __str__(self) -> str:
        return self.name


class TableMapping(models.Model):
    mapping_set = models.ForeignKey(
        MappingSet, on_delete=models.CASCADE, related_name="table_mappings"
    )
    target_table = models.CharField(max_length=80)
    source_table = models.CharField(max_length=120)
    source_key = models.CharField(max_length=120)
    joins = models.JSONField(default=list, blank=True)
    # Read by nothing since exclusion rules became ExclusionRule rows
    # (migration 0005 moved them out); kept so no stored key is lost.
    filter = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["mapping_set", "target_table"]
        constraints = [
            models.UniqueConstraint(
                fields=["mapping_set", "target_table"], name="uniq_table_mapping"
            )
        ]

    def __str__(self) -> str:
        return f"{self.source_table} → {self.target_table}"


class ExclusionRule(Reviewable):
    """Rows of a table mapping's source left out of its target, reviewed like
    a field mapping (four-eyes): which rows migrate is a steward's decision
    too. The engine's exclusion rule -- on a source ``column`` as read or a
    target ``field`` after its transforms, exactly one of the two."""

    table_mapping = models.ForeignKey(
        TableMapping, on_delete=models.CASCADE, related_name="exclusion_rules"
    )
    rule_id = models.CharField(max_length=80)
    column = models.CharField(max_length=120, blank=True)
    field = models.CharField(max_length=80, blank=True)
    op = models.CharField(max_length=16)
    values = models.JSONField(default=list, blank=True)
    reason = models.CharField(max_length=80, default="excluded_by_rule")

    class Meta:
        ordering = ["table_mapping", "rule_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["table_mapping", "rule_id"], name="uniq_exclusion_rule"
            )
        ]

    def __str__(self) -> str:
        return f"{self.table_mapping.target_table}: {self.rule_id}"

    def engine_rule(self) -> ExcludeRule:
        """Return the rule as the engine's contract holds it."""
        return ExcludeRule(
            id=self.rule_id,
            field=self.field or None,
            column=self.column or None,
            op=self.op,
            values=tuple(self.values),
            reason=self.reason,
        )

    def engine_dict(self) -> dict[str, Any]:
        """Return the rule in the engine contract's JSON form."""
        return self.engine_rule().as_dict()


class FieldMapping(Reviewable):
    table_mapping = models.ForeignKey(
        TableMapping, on_delete=models.CASCADE, related_name="field_mappings"
    )
    target_field = models.CharField(max_length=80)
    source_columns = models.JSONField(default=list, blank=True)
    transforms = models.JSONField(default=list, blank=True)  # [{"name", "args"}]
    crosswalk = models.ForeignKey(
        Crosswalk, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    crosswalk_strict = models.BooleanField(default=True)
    suggestion_confidence = models.FloatField(null=True, blank=True)
    waived = models.BooleanField(default=False)  # resolution policy: left unmapped

    class Meta:
        ordering = ["table_mapping", "target_field"]
        constraints = [
            models.UniqueConstraint(
                fields=["table_mapping", "target_field"], name="uniq_field_mapping"
            )
        ]

    def __str__(self) -> str:
        return f"{self.source_columns} → {self.target_field}"


class Contract(models.Model):
    """A frozen, hashed mapping set: exactly what the engine executes."""

    project = models.ForeignKey(
        "governance.MigrationProject",
        on_delete=models.CASCADE,
        related_name="contracts",
    )
    mapping_set = models.ForeignKey(
        MappingSet,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="contracts",
    )
    version = models.PositiveIntegerField()
    body = models.JSONField()
    sha256 = models.CharField(max_length=64, db_index=True)
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    published_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "version"], name="uniq_contract_version"
            )
        ]

    def __str__(self) -> str:
        return f"contract v{self.version} ({self.sha256[:12]})"


# --- runs ---------------------------------------------------------------------


class RunState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class GateOutcome(models.TextChoices):
    NONE = "", "Not evaluated"
    PASSED = "passed", "Gate passed"
    GATE_FAILED = "gate_failed", "Gate failed"


class Run(models.Model):
    """One execution of a contract from a source connector into a target connector."""

    project = models.ForeignKey(
        "governance.MigrationProject", on_delete=models.CASCADE, related_name="runs"
    )
    contract = models.ForeignKey(
        Contract, on_delete=models.PROTECT, related_name="runs"
    )
    source = models.ForeignKey(
        "connectors.Connector", on_delete=models.PROTECT, related_name="source_runs"
    )
    target = models.ForeignKey(
        "connectors.Connector", on_delete=models.PROTECT, related_name="target_runs"
    )
    profile = models.CharField(max_length=32, default="development")
    as_of = models.DateField(null=True, blank=True)
    state = models.CharField(
        max_length=16, choices=RunState.choices, default=RunState.QUEUED
    )
    stage = models.CharField(max_length=40, blank=True)
    gate_outcome = models.CharField(
        max_length=16, choices=GateOutcome.choices, default=GateOutcome.NONE, blank=True
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Lease: the worker that claimed the run renews it with every heartbeat.
    lease_owner = models.CharField(max_length=120, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    cancel_requested = models.BooleanField(default=False)
    superseded_by = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    report = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)  # redacted, no patient data
    reject_file = models.CharField(max_length=500, blank=True)
    # Scale-out: 0 = one worker loads every table; N > 0 = large tables are
    # split into up to N key ranges, each a separate task (RunRange).
    parallel_ranges = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["state", "lease_expires_at"])]

    def __str__(self) -> str:
        return f"run #{self.pk} ({self.state})"


class RangeState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class RunRange(models.Model):
    """One key range (after_key, upto_key] of one target table of a scaled-out run.

    Claimed by exactly one worker (conditional UPDATE) under a lease it renews;
    keys are stored as JSON text (no patient data: source row ids only).
    """

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="ranges")
    target_table = models.CharField(max_length=80)
    range_id = models.CharField(max_length=16)
    order = models.PositiveIntegerField(default=0)
    after_key = models.TextField(blank=True)  # JSON; "" = open
    upto_key = models.TextField(blank=True)  # JSON; "" = open
    state = models.CharField(
        max_length=16, choices=RangeState.choices, default=RangeState.QUEUED
    )
    worker = models.CharField(max_length=120, blank=True)  # last worker that ran it
    lease_owner = models.CharField(max_length=120, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    rows_read = models.BigIntegerField(default=0)
    rows_loaded = models.BigIntegerField(default=0)
    rows_rejected = models.BigIntegerField(default=0)
    rows_excluded = models.BigIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)  # redacted

    class Meta:
        ordering = ["run", "order"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "target_table", "range_id"], name="run_range_unique"
            )
        ]
        indexes = [models.Index(fields=["state", "lease_expires_at"])]

    def __str__(self) -> str:
        return f"run #{self.run_id} {self.target_table}/{self.range_id} ({self.state})"


class RunTable(models.Model):
    """Ledger, progress, metrics and timings of one target table in a run."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="tables")
    target_table = models.CharField(max_length=80)
    source_table = models.CharField(max_length=120, blank=True)
    order = models.PositiveSmallIntegerField(default=0)
    stage = models.CharField(max_length=40, blank=True)
    rows_total = models.BigIntegerField(
        null=True, blank=True
    )  # source count when known
    rows_read = models.BigIntegerField(default=0)
    rows_loaded = models.BigIntegerField(default=0)
    rows_rejected = models.BigIntegerField(default=0)
    rows_excluded = models.BigIntegerField(default=0)
    rows_flagged = models.BigIntegerField(default=0)
    ledger_balanced = models.BooleanField(null=True)
    rate_rows_per_s = models.FloatField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    metrics = models.JSONField(default=dict, blank=True)  # per-column recon + DQMI
    timings = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["run", "order"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "target_table"], name="uniq_run_table"
            )
        ]

    def __str__(self) -> str:
        return f"{self.run_id}:{self.target_table}"


class RejectRecord(models.Model):
    """One rejected source row, findable by its source key, with its reason."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="rejects")
    target_table = models.CharField(max_length=80)
    source_table = models.CharField(max_length=120)
    source_key = models.CharField(max_length=120)
    column = models.CharField(max_length=120, blank=True)
    raw_value = models.TextField(blank=True)  # shown masked unless view_pid
    rule_id = models.CharField(max_length=80, blank=True)
    reason_code = models.CharField(max_length=80)
    crosswalk_ref = models.CharField(max_length=80, blank=True)
    crosswalk_version = models.CharField(max_length=40, blank=True)

    class Meta:
        ordering = ["run", "target_table", "source_key"]
        indexes = [
            models.Index(fields=["run", "target_table", "reason_code"]),
            models.Index(fields=["run", "source_key"]),
        ]

    def __str__(self) -> str:
        return f"{self.source_table}:{self.source_key} {self.reason_code}"
