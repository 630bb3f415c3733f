"""Gates: pure evaluation of a run's measurements against a profile.

``measure(report)`` turns a RunReport (or its stored dict) into measurements
(numerator/denominator per check and scope). ``evaluate_gate`` applies a
profile's thresholds, waivers and sign-offs to them; it needs no database and
can be re-run at any time from stored measurements or a stored GateResult.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migration.engine.errors import ContractError
from migration.engine.report import RunReport

PASS = "PASS"  # noqa: S105 - a status, not a password
PASS_WITH_VIOLATIONS = "PASS_WITH_VIOLATIONS"  # noqa: S105
FAIL = "FAIL"
NOT_APPLICABLE = "NOT_APPLICABLE"
ERROR = "ERROR"

CATEGORIES = ("conformance", "completeness", "plausibility")
SEVERITIES = ("fatal", "convention", "characterisation")


@dataclass(frozen=True)
class CheckDef:
    """A gate check: Kahn category, severity and what it measures."""

    id: str
    category: str
    severity: str
    description: str


CHECKS: dict[str, CheckDef] = {
    c.id: c
    for c in (
        CheckDef("run_succeeded", "conformance", "fatal", "the run finished"),
        CheckDef(
            "ledger_balance",
            "conformance",
            "fatal",
            "source = loaded + rejected + excluded, per table",
        ),
        CheckDef(
            "checksum_match",
            "conformance",
            "fatal",
            "column checksums equal between what the engine sent and the target",
        ),
        CheckDef(
            "fk_completeness",
            "completeness",
            "fatal",
            "published rows whose parent row is missing",
        ),
        CheckDef("reject_rate", "conformance", "convention", "rows rejected / read"),
        CheckDef(
            "nhs_number_coverage",
            "completeness",
            "convention",
            "patients without an NHS number (DQMI coverage)",
        ),
        CheckDef(
            "crosswalk_default_use",
            "plausibility",
            "characterisation",
            "coded values that are a 'not known' default (DQMI default use)",
        ),
        CheckDef(
            "possible_duplicates",
            "plausibility",
            "characterisation",
            "patients flagged as possible duplicate registrations",
        ),
    )
}


@dataclass(frozen=True)
class Measurement:
    """One measured quantity: check, scope (table or column), num/den."""

    check_id: str
    scope: str
    numerator: int | None
    denominator: int | None
    detail: str = ""


@dataclass(frozen=True)
class Waiver:
    """Permission to pass a failing check (scope ``*`` = every scope)."""

    check_id: str
    reason: str
    approver: str
    expires: str
    scope: str = "*"


@dataclass(frozen=True)
class SignOff:
    """A role's sign-off, bound to one run and one contract hash."""

    role: str
    signer: str
    run_id: str
    contract_sha256: str
    signed_at: str = ""


@dataclass(frozen=True)
class GateProfile:
    """Thresholds per check, required sign-off roles, waiver policy."""

    name: str
    version: str
    thresholds: Mapping[str, Mapping[str, float]]
    required_signoffs: tuple[str, ...] = ()
    allow_fatal_waivers: bool = True


@dataclass
class CheckResult:
    """One evaluated check in one scope."""

    check_id: str
    scope: str
    category: str
    severity: str
    status: str
    numerator: int | None
    denominator: int | None
    threshold: dict[str, float] | None
    waived_by: dict[str, str] | None = None
    message: str = ""

    @property
    def blocking(self) -> bool:
        """Return True when this result fails the gate."""
        return (
            self.status in (FAIL, ERROR)
            and self.severity != "characterisation"
            and self.waived_by is None
        )


@dataclass
class GateResult:
    """The outcome of one gate evaluation (persist ``to_dict()``)."""

    profile: str
    profile_version: str
    status: str
    run_id: str
    contract_sha256: str
    evaluated_at: str
    results: list[CheckResult] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    waivers_applied: list[dict[str, str]] = field(default_factory=list)
    waivers_refused: list[dict[str, str]] = field(default_factory=list)
    signoffs_valid: list[dict[str, str]] = field(default_factory=list)
    signoffs_void: list[dict[str, str]] = field(default_factory=list)
    missing_signoffs: list[str] = field(default_factory=list)
    measurements: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Return True when the gate passed."""
        return self.status == PASS

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (re-evaluable by evaluate_gate)."""
        data = dataclasses.asdict(self)
        data["passed"] = self.passed
        return data


def load_profiles(path: str | Path | None = None) -> dict[str, GateProfile]:
    """Return the gate profiles of a JSON file (default: the packaged one)."""
    from migration.engine.defaults import DEFAULT_PROFILES_PATH

    data = json.loads(Path(path or DEFAULT_PROFILES_PATH).read_text("utf-8"))
    out = {}
    for name, p in data["profiles"].items():
        for cid in p["thresholds"]:
            if cid not in CHECKS:
                raise ContractError(f"profile {name}: unknown check {cid!r}")
        out[name] = GateProfile(
            name=name,
            version=f"{data['version']}.{p['version']}",
            thresholds={k: dict(v) for k, v in p["thresholds"].items()},
            required_signoffs=tuple(p.get("required_signoffs", ())),
            allow_fatal_waivers=bool(p.get("allow_fatal_waivers", True)),
        )
    return out


def measure(report: RunReport | Mapping[str, Any]) -> list[Measurement]:
    """Return the gate measurements of a report (object or its stored dict)."""
    r = report.to_dict() if isinstance(report, RunReport) else dict(report)
    out = [
        Measurement(
            "run_succeeded",
            "run",
            0 if r.get("status") == "succeeded" else 1,
            1,
            "; ".join(r.get("failure_reasons", []))[:500],
        )
    ]
    for t in r.get("tables", []):
        name = t["table"]
        out.append(
            Measurement(
                "ledger_balance",
                name,
                0 if t["ledger_balanced"] else max(1, abs(t["ledger_difference"])),
                t["source_rows"],
            )
        )
        out.append(Measurement("reject_rate", name, t["rows_rejected"], t["rows_read"]))
        checked = [c for c in t["columns"] if c.get("checksum_match") is not None]
        if checked:
            out.append(
                Measurement(
                    "checksum_match",
                    name,
                    sum(1 for c in checked if not c["checksum_match"]),
                    len(checked),
                )
            )
        defaults = 0
        coded = 0
        for c in t["columns"]:
            if "default_use" in c.get("dqmi", {}):
                present = t["rows_loaded"] - c["target_nulls"]
                coded += present
                defaults += c["defaults_used"]
        if coded:
            out.append(Measurement("crosswalk_default_use", name, defaults, coded))
        if name == "patient":
            nhs = [c for c in t["columns"] if c["name"] == "nhs_number"]
            if nhs:
                out.append(
                    Measurement(
                        "nhs_number_coverage",
                        name,
                        nhs[0]["target_nulls"],
                        t["rows_loaded"],
                    )
                )
            out.append(
                Measurement(
                    "possible_duplicates",
                    name,
                    t["flags_by_reason"].get("possible_duplicate", 0),
                    t["rows_loaded"],
                )
            )
    for c in r.get("fk_chains", []):
        out.append(
            Measurement(
                "fk_completeness",
                f"{c['table']}.{c['column']}->{c['ref_table']}",
                c["orphans"],
                c["rows"],
            )
        )
    return out


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,}"


def describe_threshold(threshold: Mapping[str, float] | None) -> str:
    """Say what a threshold allows, as a person reads it ("at most 1 %")."""
    if not threshold:
        return "not applicable"
    if "max_count" in threshold:
        limit = threshold["max_count"]
        return "none allowed" if limit == 0 else f"at most {_number(limit)}"
    if "max_pct" in threshold:
        limit = threshold["max_pct"]
        return "none allowed" if limit == 0 else f"at most {_number(limit)} %"
    return "unknown threshold " + ", ".join(f"{k} {v}" for k, v in threshold.items())


def describe_measure(numerator: int | None, denominator: int | None) -> str:
    """Say a measurement as "16 of 1,289 (1.24 %)"."""
    if numerator is None or denominator is None:
        return "not measured"
    if denominator == 0:
        return f"{numerator:,} of 0"
    return f"{numerator:,} of {denominator:,} ({100.0 * numerator / denominator:.2f} %)"


def _status(m: Measurement, threshold: Mapping[str, float] | None) -> str:
    if threshold is None:
        return NOT_APPLICABLE
    if m.numerator is None or m.denominator is None or m.numerator < 0:
        return ERROR
    if m.numerator == 0:
        return PASS
    if "max_count" in threshold:
        ok = m.numerator <= threshold["max_count"]
    elif "max_pct" in threshold:
        if m.denominator == 0:
            return ERROR
        ok = 100.0 * m.numerator / m.denominator <= threshold["max_pct"]
    else:
        return ERROR
    return PASS_WITH_VIOLATIONS if ok else FAIL


def _as_measurements(
    source: RunReport | Mapping[str, Any] | Sequence[Mapping[str, Any] | Measurement],
) -> tuple[list[Measurement], str, str]:
    if isinstance(source, RunReport):
        return measure(source), source.run_id, source.contract_sha256
    if isinstance(source, Mapping):
        if "measurements" in source:
            ms = [
                m if isinstance(m, Measurement) else Measurement(**m)
                for m in source["measurements"]
            ]
            return ms, source.get("run_id", ""), source.get("contract_sha256", "")
        return (
            measure(source),
            source.get("run_id", ""),
            source.get("contract_sha256", ""),
        )
    ms = [m if isinstance(m, Measurement) else Measurement(**m) for m in source]
    return ms, "", ""


def _waiver(w: Waiver | Mapping[str, Any]) -> Waiver:
    return w if isinstance(w, Waiver) else Waiver(**w)


def _signoff(s: SignOff | Mapping[str, Any]) -> SignOff:
    return s if isinstance(s, SignOff) else SignOff(**s)


def evaluate_gate(
    source: RunReport | Mapping[str, Any] | Sequence[Mapping[str, Any] | Measurement],
    profile: str | GateProfile,
    waivers: Sequence[Waiver | Mapping[str, Any]] = (),
    *,
    signoffs: Sequence[SignOff | Mapping[str, Any]] = (),
    now: dt.datetime | None = None,
    profiles: Mapping[str, GateProfile] | None = None,
    run_id: str | None = None,
    contract_sha256: str | None = None,
) -> GateResult:
    """Return the gate result of a report / stored measurements under ``profile``.

    Waivers apply to FAIL/ERROR results of their check (and scope) unless
    expired, incomplete, or on a fatal check in a profile that refuses them.
    Sign-offs count only when bound to this run id and contract hash.
    Raises ContractError for an unknown profile.
    """
    now = now or dt.datetime.now(dt.UTC)
    if isinstance(profile, str):
        profs = profiles if profiles is not None else load_profiles()
        if profile not in profs:
            raise ContractError(f"unknown gate profile {profile!r}")
        prof = profs[profile]
    else:
        prof = profile
    ms, rid, sha = _as_measurements(source)
    rid = run_id or rid
    sha = contract_sha256 or sha
    gate = GateResult(
        profile=prof.name,
        profile_version=prof.version,
        status=PASS,
        run_id=rid,
        contract_sha256=sha,
        evaluated_at=now.isoformat(timespec="seconds"),
        measurements=[dataclasses.asdict(m) for m in ms],
    )
    usable: list[Waiver] = []
    for raw in waivers:
        w = _waiver(raw)
        info = dataclasses.asdict(w)
        cdef = CHECKS.get(w.check_id)
        problem = None
        if cdef is None:
            problem = "unknown check"
        elif not w.reason.strip() or not w.approver.strip():
            problem = "a waiver needs a reason and an approver"
        elif _expired(w.expires, now):
            problem = f"expired {w.expires}"
        elif cdef.severity == "fatal" and not prof.allow_fatal_waivers:
            problem = f"fatal check {w.check_id} cannot be waived at {prof.name}"
        if problem:
            gate.waivers_refused.append({**info, "refused": problem})
        else:
            usable.append(w)
    for m in ms:
        cdef = CHECKS.get(m.check_id) or CheckDef(
            m.check_id, "conformance", "fatal", ""
        )
        threshold = prof.thresholds.get(m.check_id)
        status = _status(m, threshold)
        res = CheckResult(
            check_id=m.check_id,
            scope=m.scope,
            category=cdef.category,
            severity=cdef.severity,
            status=status,
            numerator=m.numerator,
            denominator=m.denominator,
            threshold=dict(threshold) if threshold is not None else None,
            message=m.detail,
        )
        if status in (FAIL, ERROR):
            for w in usable:
                if w.check_id == m.check_id and w.scope in ("*", m.scope):
                    res.waived_by = {
                        "approver": w.approver,
                        "reason": w.reason,
                        "expires": w.expires,
                    }
                    gate.waivers_applied.append(
                        {**dataclasses.asdict(w), "applied_to": m.scope}
                    )
                    break
        if res.blocking:
            gate.reasons.append(
                f"{m.check_id} [{m.scope}] {status}: "
                f"{describe_measure(m.numerator, m.denominator)}; "
                f"{describe_threshold(threshold)}"
            )
        gate.results.append(res)
    present: set[str] = set()
    for raw_s in signoffs:
        s = _signoff(raw_s)
        info = dataclasses.asdict(s)
        if s.run_id != rid or s.contract_sha256 != sha:
            gate.signoffs_void.append(
                {**info, "void": "bound to another run or contract version"}
            )
        else:
            gate.signoffs_valid.append(info)
            present.add(s.role)
    gate.missing_signoffs = [r for r in prof.required_signoffs if r not in present]
    for role in gate.missing_signoffs:
        gate.reasons.append(f"missing sign-off: {role}")
    gate.status = FAIL if gate.reasons else PASS
    return gate


def _expired(expires: str, now: dt.datetime) -> bool:
    try:
        when = dt.date.fromisoformat(expires[:10])
    except ValueError:
        return True
    return when < now.date()
