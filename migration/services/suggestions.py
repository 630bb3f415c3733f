"""Mapping suggestions: rank source tables and columns for each target field.

The ranking functions are pure (they read a snapshot's ``tables`` and
``profiles`` JSON and a target model); ``mapping_suggestions_apply`` is the one
service, and it only ever creates DRAFT field mappings carrying a
``suggestion_confidence``: a suggestion is a starting point for a person, never
an approval.

How a column is scored against a target field:

- **names**: the column name is tokenised (CamelCase, underscores, digits,
  TrakCare conventions: the table's shared prefix such as ``PAPMI_`` is
  dropped, a ``_DR`` suffix marks a reference, an embedded ``PAPMI``/``PAADM``
  names the referenced entity), abbreviations are expanded (``Adm`` ->
  admission, ``No`` -> number, ``DOB`` -> birth date ...), and the token set
  is compared with the field's synonyms (exact = 1, else a Dice overlap);
- **profiles**: whether the values fit the field (Modulus 11 NHS numbers,
  postcodes, ``$HOROLOG`` integers or date strings for dates, low-cardinality
  values for coded fields, unique values for identifiers).

Confidence = 0.7 x name + 0.3 x fit, except that strong value evidence alone
(a column of valid NHS numbers) can carry a field whose name says nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from governance import audit
from governance.access import user_has_project_perm
from migration.engine.targets import TargetField, TargetModel, TargetTable, load_target
from migration.models import (
    Crosswalk,
    FieldMapping,
    MappingSet,
    ReviewStatus,
    TableMapping,
)

__all__ = [
    "FieldSuggestion",
    "TableSuggestion",
    "column_tokens",
    "date_format_of",
    "field_suggestions_rank",
    "mapping_suggestions_apply",
    "phrase_tokens",
    "shared_prefix",
    "suggestions_for_snapshot",
    "table_suggestions_rank",
    "table_tokens",
    "target_model_for",
]

#: A suggestion below this confidence is shown but never turned into a draft.
MIN_CONFIDENCE = 0.35
#: A source table below this confidence is not proposed for a target table.
MIN_TABLE_CONFIDENCE = 0.4

# --- tokenising ----------------------------------------------------------------

_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")

#: Abbreviations and spellings -> canonical tokens (after lower-casing).
_ABBREV: dict[str, tuple[str, ...]] = {
    "no": ("number",),
    "num": ("number",),
    "nbr": ("number",),
    "nr": ("number",),
    "nhsno": ("nhs", "number"),
    "dob": ("birth", "date"),
    "birthdate": ("birth", "date"),
    "deathdate": ("death", "date"),
    "dod": ("death", "date"),
    "deceased": ("death",),
    "died": ("death",),
    "sex": ("gender",),
    "adm": ("admission",),
    "admit": ("admission",),
    "admitted": ("admission",),
    "disch": ("discharge",),
    "discharged": ("discharge",),
    "meth": ("method",),
    "mthd": ("method",),
    "dest": ("destination",),
    "src": ("source",),
    "desc": ("name",),
    "descr": ("name",),
    "description": ("name",),
    "spec": ("specialty",),
    "speciality": ("specialty",),
    "ethnicity": ("ethnic",),
    "zip": ("postcode",),
    "zipcode": ("postcode",),
    "dt": ("date",),
    "datetime": ("date", "time"),
    "tm": ("time",),
    "prov": ("provider",),
    "pat": ("patient",),
    "mas": ("master",),
    "pt": ("patient",),
    "cons": ("consultant",),
    "stat": ("status",),
    "attend": ("attendance",),
    "attended": ("attendance",),
    "addr": ("address",),
    "firstname": ("first",),
    "lastname": ("last",),
    "forenames": ("forename",),
    # TrakCare entity prefixes met inside a column name: the referenced entity.
    "papmi": ("patient",),
    "paadm": ("admission",),
    "appt": ("appointment",),
    "cln": ("clinic",),
    "ctpcp": ("care", "professional"),
}
_STOP = frozenset({"of", "the", "a", "line", "dr"})
#: TrakCare module prefixes of table names (PA_, CT_, RB_ ...): not meaningful.
_TABLE_MODULES = frozenset({"pa", "ct", "rb", "oe", "mr", "pac", "tbl"})


def _split(name: str) -> list[str]:
    parts: list[str] = []
    for chunk in re.split(r"[^A-Za-z0-9]+", name):
        parts.extend(m.group(0).lower() for m in _CAMEL.finditer(chunk))
    # "Row" "Id" is one idea: a surrogate row id, not a business identifier.
    out: list[str] = []
    for p in parts:
        if out and ((out[-1], p) in {("row", "id"), ("post", "code")}):
            out[-1] = out[-1] + p
            continue
        out.append(p)
    return out


def _normalise(tokens: Sequence[str]) -> tuple[str, ...]:
    out: list[str] = []
    for t in tokens:
        if t in _STOP:
            continue
        if t in _ABBREV:
            out.extend(_ABBREV[t])
        elif len(t) > 6 and t.endswith("date"):
            out.extend((*_normalise([t[:-4]]), "date"))
        else:
            out.append(t)
    return tuple(out)


def phrase_tokens(phrase: str) -> frozenset[str]:
    """Return the canonical token set of a synonym or field name."""
    return frozenset(_normalise(_split(phrase)))


def shared_prefix(columns: Sequence[str]) -> str | None:
    """Return a TrakCare-style prefix (``PAPMI``) most columns share, if any."""
    firsts = [c.split("_", 1)[0] for c in columns if "_" in c]
    if len(columns) < 2 or not firsts:
        return None
    best = max(set(firsts), key=firsts.count)
    return best if firsts.count(best) >= 0.75 * len(columns) else None


def column_tokens(name: str, prefix: str | None = None) -> tuple[frozenset[str], bool]:
    """Return (canonical tokens, is_reference) of a column name.

    ``prefix`` is the table's shared column prefix, dropped because it names
    the table, not the column. A ``_DR`` suffix marks a reference.
    """
    raw = name
    if prefix and raw.startswith(prefix + "_"):
        raw = raw[len(prefix) + 1 :]
    is_ref = bool(re.search(r"(^|_)DR$", raw, re.IGNORECASE))
    return frozenset(_normalise(_split(raw))), is_ref


def table_tokens(name: str) -> frozenset[str]:
    """Return the canonical tokens of a table name (module prefix, plural dropped)."""
    parts = _split(name)
    if len(parts) > 1 and parts[0] in _TABLE_MODULES:
        parts = parts[1:]
    singular = [
        p[:-1] if len(p) > 4 and p.endswith("s") and not p.endswith("ss") else p
        for p in parts
    ]
    return frozenset(_normalise(singular))


def _similarity(a: frozenset[str], b: frozenset[str]) -> float:
    if not a or not b:
        return 0.0
    if a == b:
        return 1.0
    # Partial overlaps never tie with an exact match.
    return 0.85 * 2 * len(a & b) / (len(a) + len(b))


# --- vocabulary ------------------------------------------------------------------

_FIELD_SYNONYMS: dict[str, tuple[str, ...]] = {
    "pas_number": (
        "pas number",
        "hospital number",
        "mrn",
        "medical record number",
        "patient number",
        "number",
        "id",
        "patient id",
        "unit number",
        "local patient id",
    ),
    "nhs_number": ("nhs number", "new nhs number", "nhs"),
    "nhs_number_status": ("nhs number status", "nhs status", "trace status"),
    "title": ("title", "prefix", "salutation"),
    "family_name": ("surname", "family name", "last name", "last"),
    "given_name": ("forename", "given name", "first name", "first"),
    "date_of_birth": ("birth date", "date of birth", "dob"),
    "date_of_death": ("death date", "date of death", "death"),
    "gender": ("gender", "stated gender", "sex"),
    "ethnic_category": ("ethnic category", "ethnic", "ethnic group", "ethnic origin"),
    "address_line_1": ("address 1", "address", "street", "address line 1"),
    "address_line_2": ("address 2", "locality", "address line 2"),
    "city": ("city", "town", "post town"),
    "postcode": ("postcode", "post code", "zip"),
    "gp_practice_code": ("gp practice", "practice", "practice code", "gp"),
    "admission_date": ("admission date", "start date", "start", "admission"),
    "admission_method": ("admission method", "method of admission"),
    "admission_source": ("admission source", "source of admission", "source"),
    "discharge_date": ("discharge date", "end date", "stop", "end", "discharge"),
    "discharge_method": ("discharge method", "method of discharge"),
    "discharge_destination": ("discharge destination", "destination"),
    "treatment_function": ("treatment function", "specialty", "tfc"),
    "consultant_code": (
        "consultant",
        "consultant code",
        "care professional",
        "provider",
        "clinician",
        "practitioner",
    ),
    "patient_pas_number": ("patient", "patient number", "patient id", "pas number"),
    "ward_code": ("ward", "ward code", "code"),
    "ward_name": ("ward name", "name"),
    "clinic_code": ("clinic", "clinic code", "code"),
    "clinic_name": ("clinic name", "name"),
    "local_specialty_code": ("specialty", "local specialty", "specialty code"),
    # A reference table's own key is often just its row's "Id" (Synthea's).
    "care_professional_code": (
        "care professional code",
        "code",
        "consultant code",
        "id",
    ),
    "name": ("name", "full name"),
    "gmc_number": ("gmc number", "gmc", "gmc code"),
    "start_date": ("start date", "start", "from date"),
    "end_date": ("end date", "end", "stop", "to date"),
    "appointment_id": ("appointment id", "rowid", "id", "appointment number"),
    "ward_stay_id": ("ward stay id", "rowid", "id"),
    "appointment_at": (
        "appointment date time",
        "date time",
        "appointment date",
        "appointment time",
        "start",
        "date",
    ),
    "attendance": ("attendance", "status", "attendance status"),
    "outcome": ("outcome", "attendance outcome", "outcome of attendance"),
    "priority": ("priority", "priority type", "urgency"),
}
#: Table-specific synonyms where one field name means different things.
_TABLE_FIELD_SYNONYMS: dict[tuple[str, str], tuple[str, ...]] = {
    ("inpatient_spell", "spell_number"): (
        "spell number",
        "admission number",
        "episode number",
        "spell id",
        "id",
    ),
    ("ward_stay", "spell_number"): (
        "spell",
        "admission",
        "spell number",
        "admission number",
        "encounter",
    ),
}
_TABLE_SYNONYMS: dict[str, tuple[str, ...]] = {
    "patient": ("patient", "patient master", "pmi", "person", "patient index"),
    "inpatient_spell": (
        "inpatient spell",
        "spell",
        "admission",
        "encounter",
        "episode",
        "inpatient",
    ),
    "ward_stay": ("ward stay", "ward movement", "bed stay", "ward transfer"),
    "outpatient_appointment": (
        "outpatient appointment",
        "appointment",
        "outpatient",
        "encounter",
        "clinic appointment",
    ),
    "ward": ("ward", "location"),
    "clinic": ("clinic", "clinic resource"),
    "care_professional": (
        "care professional",
        "care provider",
        "provider",
        "consultant",
        "clinician",
        "practitioner",
    ),
}

_LOOKUP_REASON = {
    "patient": "patient_not_migrated",
    "inpatient_spell": "spell_not_migrated",
}


def _field_synonyms(table: TargetTable, f: TargetField) -> list[frozenset[str]]:
    phrases = [f.name.replace("_", " ")]
    phrases += _TABLE_FIELD_SYNONYMS.get((table.name, f.name), ())
    phrases += _FIELD_SYNONYMS.get(f.name, ())
    out = [phrase_tokens(p) for p in phrases]
    # Inside the ward table "ward_code" is just "code": drop the table's words.
    own = phrase_tokens(table.name.replace("_", " "))
    short = phrase_tokens(f.name.replace("_", " ")) - own
    if short:
        out.append(short)
    return [s for s in out if s]


# --- profiles ----------------------------------------------------------------------

_DATE_FORMATS: tuple[tuple[re.Pattern[str], str, bool], ...] = (
    (re.compile(r"^\d{4}-\d{2}-\d{2}$"), "%Y-%m-%d", False),
    (re.compile(r"^\d{2}/\d{2}/\d{4}$"), "%d/%m/%Y", False),
    (re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$"), "%Y-%m-%d %H:%M:%S", True),
    (re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$"), "%Y-%m-%dT%H:%M:%SZ", True),
    (re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$"), "%Y-%m-%dT%H:%M:%S", True),
)
_HOROLOG = (14_245, 94_584)  # 1880-01-01 .. 2100-12-31 as $HOROLOG day numbers


def date_format_of(profile: Mapping[str, Any] | None) -> tuple[str, bool] | None:
    """Return (strptime format, has time) when min and max share a date layout."""
    if not profile:
        return None
    lo, hi = profile.get("min"), profile.get("max")
    if not isinstance(lo, str) or not isinstance(hi, str):
        return None
    for rx, fmt, has_time in _DATE_FORMATS:
        if rx.match(lo.strip()) and rx.match(hi.strip()):
            return fmt, has_time
    return None


def _is_horolog(col: Mapping[str, Any], profile: Mapping[str, Any] | None) -> bool:
    if profile and profile.get("semantic") == "horolog_date":
        return True
    if not profile or _family(col) != "integer":
        return False
    lo, hi = profile.get("min"), profile.get("max")
    return (
        isinstance(lo, int | float)
        and isinstance(hi, int | float)
        and _HOROLOG[0] <= lo <= hi <= _HOROLOG[1]
    )


def _family(col: Mapping[str, Any]) -> str:
    t = str(col.get("type") or "").lower()
    if re.search(r"timestamp|datetime", t):
        return "datetime"
    if t == "date":
        return "date"
    if "int" in t:
        return "integer"
    if re.search(r"real|floa|doub|numeric|decimal", t):
        return "number"
    return "text"


def _is_code_like(profile: Mapping[str, Any] | None) -> bool:
    if not profile:
        return False
    distinct = int(profile.get("distinct") or 0)
    max_len = profile.get("max_length")
    return 0 < distinct <= 60 and (max_len is None or int(max_len) <= 12)


def _is_unique(profile: Mapping[str, Any] | None) -> bool:
    if not profile:
        return False
    present = int(profile.get("count") or 0) - int(profile.get("nulls") or 0)
    return present > 0 and int(profile.get("distinct") or 0) >= present


def _is_date_like(col: Mapping[str, Any], profile: Mapping[str, Any] | None) -> bool:
    return (
        _family(col) in {"date", "datetime"}
        or _is_horolog(col, profile)
        or date_format_of(profile) is not None
        or bool(profile and profile.get("semantic") == "date")
    )


def _fit(
    f: TargetField, col: Mapping[str, Any], prof: Mapping[str, Any] | None, ref: bool
) -> float:
    """Return how well the column's values fit the field (0..1)."""
    sem = f.semantic
    date_like = _is_date_like(col, prof)
    psem = (prof or {}).get("semantic")
    if sem in {"date", "datetime"}:
        return 1.0 if date_like else 0.3
    if date_like:
        return 0.2  # a date column is the wrong answer for anything else
    if sem == "nhs_number":
        return 1.0 if psem == "nhs_number" else 0.4
    if sem == "postcode":
        return 1.0 if psem == "postcode" else (0.6 if _family(col) == "text" else 0.3)
    if sem.startswith("code:"):
        return 1.0 if _is_code_like(prof) else 0.4
    if sem == "identifier":
        return 1.0 if _is_unique(prof) else 0.5
    if sem.startswith("fk:"):
        return 1.0 if ref else 0.8
    return 1.0 if _family(col) == "text" else 0.5


def _evidence(f: TargetField, prof: Mapping[str, Any] | None) -> float:
    """Return a confidence the values alone justify, whatever the column name."""
    psem = (prof or {}).get("semantic")
    score = float((prof or {}).get("semantic_score") or 0.0)
    if f.semantic == "nhs_number" and psem == "nhs_number":
        return 0.75 * score
    if f.semantic == "postcode" and psem == "postcode":
        return 0.6 * score
    return 0.0


# --- results ---------------------------------------------------------------------


@dataclass(frozen=True)
class FieldSuggestion:
    """One ranked candidate source column for a target field."""

    target_table: str
    target_field: str
    source_table: str
    source_column: str
    confidence: float
    transforms: tuple[dict[str, Any], ...] = ()
    #: Code system the field's values must be translated into (coded fields).
    crosswalk_system: str | None = None
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class TableSuggestion:
    """A candidate source table for a target table, with its ranked fields."""

    target_table: str
    source_table: str
    source_key: str
    confidence: float
    #: target field -> candidates, best first (empty when nothing fits).
    fields: dict[str, list[FieldSuggestion]] = field(default_factory=dict)

    def best(self, target_field: str) -> FieldSuggestion | None:
        """Return the top candidate for ``target_field`` or None."""
        ranked = self.fields.get(target_field) or []
        return ranked[0] if ranked else None

    def assign(
        self, min_confidence: float, taken: Iterable[str] = ()
    ) -> dict[str, FieldSuggestion]:
        """Return one candidate per target field, each source column used once.

        The most confident pairs are settled first; a field whose best column
        went to a surer field takes its next candidate, if any is at least
        ``min_confidence``. ``taken`` columns (already mapped) go to no one.
        A column is rarely two fields at once: two address lines from one
        ``ADDRESS`` column would be a guess a steward must undo.
        """
        used = set(taken)
        pairs = sorted(
            (
                s
                for ranked in self.fields.values()
                for s in ranked
                if s.confidence >= min_confidence
            ),
            key=lambda s: -s.confidence,
        )
        out: dict[str, FieldSuggestion] = {}
        for s in pairs:  # sorted() is stable: ties keep the declared order
            if s.target_field in out or s.source_column in used:
                continue
            out[s.target_field] = s
            used.add(s.source_column)
        return out


def _transforms_for(
    table: TargetTable,
    f: TargetField,
    col: Mapping[str, Any],
    prof: Mapping[str, Any] | None,
    model: TargetModel,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Return the proposed transform chain and why, for ``col`` -> ``f``."""
    step = lambda name, **args: {"name": name, "args": args}  # noqa: E731
    nullable = bool(prof and (prof.get("nulls") or prof.get("empty")))
    sem = f.semantic
    if sem in {"date", "datetime"}:
        if _is_horolog(col, prof):
            return [step("horolog_to_date")], ["values look like Caché $HOROLOG days"]
        fmt = date_format_of(prof)
        if fmt is not None:
            name = "datetime_parse" if sem == "datetime" else "date_parse"
            chain = [step("null_if_empty")] if nullable else []
            return [*chain, step(name, format=fmt[0])], [f"dates formatted {fmt[0]}"]
        return [], []
    if sem == "nhs_number":
        return [step("nhs_number_normalise")], []
    if sem == "postcode":
        return [step("postcode_normalise")], []
    if sem.startswith("code:"):
        return [step("trim"), step("upper"), step("null_if_empty")], []
    if sem.startswith("fk:"):
        ref = sem[3:]
        toks, is_ref = column_tokens(str(col["name"]))
        # A row id of the parent (``PAADM_PAPMI_DR``) must be resolved through
        # the migrated parent; a business code (``Consultant_DR``) is copied.
        names_parent = bool(toks & table_tokens(ref.replace("_", " ")))
        if _family(col) == "integer" and (is_ref or names_parent):
            parent = model.table(ref)
            return [
                step(
                    "lookup",
                    table=ref,
                    match="_source_key",
                    take=parent.key[0],
                    reason=_LOOKUP_REASON.get(ref, f"{ref}_not_migrated"),
                )
            ], [f"row id of {ref}: resolved through the migrated {ref}"]
        return [step("trim"), step("upper"), step("null_if_empty")], []
    if sem == "identifier":
        if (
            f.sql_type == "BIGINT"
            and _family(col) == "text"
            and ((prof or {}).get("semantic") == "text")
        ):
            # Keys that are not numbers (a third-party extract's UUIDs):
            # to_integer would reject every row.
            return [step("trim"), step("stable_number")], [
                "the source keys are not numbers: each gets a stable number "
                "(the key itself stays in every row's provenance)"
            ]
        if f.sql_type in {"BIGINT", "INTEGER"}:
            if _family(col) != "integer":
                return [step("to_integer")], ["check: the source values are text"]
            return [step("to_integer")], []
        return [step("trim"), step("upper")], []
    if sem in {"gp_practice", "gmc_number"}:
        return [step("trim"), step("upper"), step("null_if_empty")], []
    if f.name == "title":
        return [step("trim"), step("null_if_empty"), step("title")], []
    return [step("trim"), step("null_if_empty")], []


def field_suggestions_rank(
    *,
    table: TargetTable,
    source_table: Mapping[str, Any],
    profiles: Mapping[str, Mapping[str, Any]] | None,
    model: TargetModel,
    limit: int = 5,
) -> dict[str, list[FieldSuggestion]]:
    """Return, per field of ``table``, the source columns ranked best first."""
    columns = list(source_table.get("columns") or [])
    prefix = shared_prefix([str(c["name"]) for c in columns])
    tokens = {str(c["name"]): column_tokens(str(c["name"]), prefix) for c in columns}
    out: dict[str, list[FieldSuggestion]] = {}
    for f in table.fields:
        synonyms = _field_synonyms(table, f)
        ranked: list[FieldSuggestion] = []
        for col in columns:
            name = str(col["name"])
            prof = (profiles or {}).get(name)
            toks, is_ref = tokens[name]
            name_score = max((_similarity(s, toks) for s in synonyms), default=0.0)
            conf = 0.7 * name_score + 0.3 * _fit(f, col, prof, is_ref)
            if name_score == 0.0:
                conf = _evidence(f, prof)
            if conf <= 0.0:
                continue
            chain, why = _transforms_for(table, f, col, prof, model)
            reasons = [f"name match {name_score:.2f}"] if name_score else []
            if _evidence(f, prof):
                reasons.append(f"values look like {prof and prof.get('semantic')}")
            ranked.append(
                FieldSuggestion(
                    target_table=table.name,
                    target_field=f.name,
                    source_table=str(source_table["name"]),
                    source_column=name,
                    confidence=round(min(1.0, conf), 3),
                    transforms=tuple(chain),
                    crosswalk_system=f.code_system,
                    reasons=tuple(reasons + why),
                )
            )
        # Ties go to the column declared first (usually the more basic one).
        ranked.sort(key=lambda s: -s.confidence)
        out[f.name] = ranked[:limit]
    return out


def _source_key(
    source_table: Mapping[str, Any],
    table: TargetTable,
    fields: Mapping[str, list[FieldSuggestion]],
) -> str:
    pk = list(source_table.get("primary_key") or [])
    if len(pk) == 1:
        return str(pk[0])
    best = fields.get(table.key[0]) or []
    if best:
        return best[0].source_column
    cols = source_table.get("columns") or []
    return str(cols[0]["name"]) if cols else ""


def table_suggestions_rank(
    *,
    tables: Sequence[Mapping[str, Any]],
    profiles: Mapping[str, Mapping[str, Mapping[str, Any]]] | None,
    model: TargetModel,
) -> dict[str, list[TableSuggestion]]:
    """Return, per target table, candidate source tables ranked best first."""
    out: dict[str, list[TableSuggestion]] = {}
    for table in model.tables:
        synonyms = [phrase_tokens(p) for p in _TABLE_SYNONYMS.get(table.name, ())]
        synonyms.append(phrase_tokens(table.name.replace("_", " ")))
        ranked: list[TableSuggestion] = []
        for src in tables:
            name_score = max(
                (_similarity(s, table_tokens(str(src["name"]))) for s in synonyms),
                default=0.0,
            )
            fields = field_suggestions_rank(
                table=table,
                source_table=src,
                profiles=(profiles or {}).get(str(src["name"])),
                model=model,
            )
            # Coverage: how many target fields find a convincing column here.
            coverage = sum(
                1
                for f in table.fields
                if (fields[f.name] or [None])[0] is not None
                and fields[f.name][0].confidence >= 0.7
            ) / max(1, len(table.fields))
            conf = round(0.6 * name_score + 0.4 * coverage, 3)
            ranked.append(
                TableSuggestion(
                    target_table=table.name,
                    source_table=str(src["name"]),
                    source_key=_source_key(src, table, fields),
                    confidence=conf,
                    fields=fields,
                )
            )
        ranked.sort(key=lambda s: -s.confidence)
        out[table.name] = ranked
    return out


def suggestions_for_snapshot(
    *,
    tables: Sequence[Mapping[str, Any]],
    profiles: Mapping[str, Mapping[str, Mapping[str, Any]]] | None,
    model: TargetModel,
) -> dict[str, TableSuggestion]:
    """Return the best source table (with ranked fields) per mappable target table."""
    ranked = table_suggestions_rank(tables=tables, profiles=profiles, model=model)
    return {
        name: cands[0]
        for name, cands in ranked.items()
        if cands and cands[0].confidence >= MIN_TABLE_CONFIDENCE
    }


def target_model_for(mapping_set: MappingSet) -> TargetModel:
    """Return the target model a mapping set maps onto; raises ContractError."""
    text = (mapping_set.target_model_version or "").strip() or "1"
    name, version = "nhs_pas_target", text
    if "@" in text:
        name, version = (p.strip() for p in text.split("@", 1))
    elif "_v" in text and text.rsplit("_v", 1)[1].isdigit():
        name, version = text.rsplit("_v", 1)
    return load_target(name, version.removeprefix("v"))


# --- the service -----------------------------------------------------------------


def mapping_suggestions_apply(
    *,
    actor: Any,
    mapping_set: MappingSet,
    min_confidence: float = MIN_CONFIDENCE,
) -> list[FieldMapping]:
    """Create DRAFT table/field mappings from suggestions; return the new fields.

    Existing table and field mappings are never changed. A user needs
    ``edit_mapping`` on the project (else Refused ``forbidden``, audited);
    raises ContractError when the mapping set's target model is unknown.
    """
    project = mapping_set.project
    if not isinstance(actor, str) and not user_has_project_perm(
        actor, project, "edit_mapping"
    ):
        raise audit.refuse(
            actor=actor,
            action="migration.mapping_set.suggest_refused",
            reason="you may not edit mappings on this project",
            code="forbidden",
            target=mapping_set,
            project=project,
        )
    model = target_model_for(mapping_set)
    snapshot = mapping_set.source_snapshot
    best = suggestions_for_snapshot(
        tables=snapshot.tables, profiles=snapshot.profiles, model=model
    )
    crosswalks = {
        xw.code_system.slug: xw
        for xw in Crosswalk.objects.filter(project=project)
        .select_related("code_system")
        .order_by("-pk")
    }
    author = None if isinstance(actor, str) else actor
    created: list[FieldMapping] = []
    with transaction.atomic():
        for table in model.tables:
            tsug = best.get(table.name)
            tm = TableMapping.objects.filter(
                mapping_set=mapping_set, target_table=table.name
            ).first()
            if tm is None:
                if tsug is None:
                    continue
                tm = TableMapping.objects.create(
                    mapping_set=mapping_set,
                    target_table=table.name,
                    source_table=tsug.source_table,
                    source_key=tsug.source_key,
                )
                audit.record(
                    actor=actor,
                    action="migration.table_mapping.suggested",
                    target=mapping_set,
                    project=project,
                    data={
                        "table_mapping": tm.pk,
                        "target_table": table.name,
                        "source_table": tsug.source_table,
                        "confidence": tsug.confidence,
                    },
                )
            if tsug is None or tsug.source_table != tm.source_table:
                continue  # the person chose another table: their call
            existing = list(
                tm.field_mappings.values_list("target_field", "source_columns")
            )
            have = {name for name, _ in existing}
            chosen = tsug.assign(
                min_confidence,
                taken=(str(c) for _, cols in existing for c in cols or []),
            )
            for f in table.fields:
                sug = chosen.get(f.name)
                if f.name in have or sug is None:
                    continue
                xw = crosswalks.get(f.code_system or "")
                transforms = list(sug.transforms)
                notes = [f"suggested (confidence {sug.confidence:.2f})", *sug.reasons]
                if f.code_system:
                    if xw is not None:
                        transforms.append(
                            {
                                "name": "crosswalk",
                                "args": {"id": xw.slug, "mode": "strict"},
                            }
                        )
                    else:
                        notes.append(f"needs a crosswalk to {f.code_system}")
                fm = FieldMapping.objects.create(
                    table_mapping=tm,
                    target_field=f.name,
                    source_columns=[sug.source_column],
                    transforms=transforms,
                    crosswalk=xw,
                    suggestion_confidence=sug.confidence,
                    status=ReviewStatus.DRAFT,
                    author=author,
                    last_changed_by=author,
                    review_comment="; ".join(notes),
                )
                audit.record(
                    actor=actor,
                    action="migration.field_mapping.suggested",
                    target=fm,
                    project=project,
                    data={
                        "target": f"{table.name}.{f.name}",
                        "source": sug.source_column,
                        "confidence": sug.confidence,
                        "to": ReviewStatus.DRAFT,
                    },
                )
                created.append(fm)
    return created
