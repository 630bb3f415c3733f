"""The transform step editor: what a steward can pick, and reading it back.

A field mapping's transforms are a list of ``{"name", "args"}`` steps (the
engine's registry, plus a last ``lookup`` step). Stewards edit them as rows
of a form -- a transform chosen from a list, one labelled box per argument,
a position, a "remove" tick -- never as JSON. Reading the form back keeps
each argument's stored value (and type) where the text shown for it is
unchanged, so saving an untouched form changes nothing (and sends nothing
back for review). Checking the steps is the mapping service's job.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from migration.engine.transforms import REGISTRY
from migration.services.mappings import MAX_TRANSFORM_STEPS

NEW = "new"
PREFIX = re.compile(r"^step-(\d{1,2}|new)$")
_INT = re.compile(r"^-?\d{1,9}$")


@dataclass(frozen=True)
class Arg:
    name: str
    label: str
    hint: str
    required: bool


@dataclass(frozen=True)
class StepKind:
    name: str
    summary: str
    args: tuple[Arg, ...]


# What each argument means, in a steward's words (by transform, then by name).
_HELP: dict[tuple[str, str], tuple[str, str]] = {
    ("concat", "sep"): ("Separator", "Put between the parts; a space if left empty."),
    ("split", "sep"): ("Split on", "The text that separates the parts."),
    ("split", "index"): ("Part to keep", "Counting from 0 for the first part."),
    ("default", "value"): ("Value", "Used where the source is empty."),
    ("constant", "value"): ("Value", "Every row gets this value."),
    ("lookup", "table"): ("Target table", "The migrated table to look in."),
    ("lookup", "match"): (
        "Matched against",
        "A field of that table, or _source_key for its source key.",
    ),
    ("lookup", "take"): ("Take", "The field of that table to store."),
}
_HELP_BY_NAME: dict[str, tuple[str, str]] = {
    "format": (
        "Format",
        "Python strptime codes, e.g. %Y-%m-%d or %d/%m/%Y %H:%M.",
    ),
    "reason": (
        "Reject reason code",
        "Given to a row this step cannot read; the transform's own if left empty.",
    ),
}
_LOOKUP_SUMMARY = (
    "Replace the value by a field of another migrated table; no match rejects "
    "the row. Always the last step."
)
_CROSSWALK_SUMMARY = (
    "Translate local codes with the crosswalk chosen below (strict or lenient "
    "as ticked there)."
)


def _summary(doc: str | None) -> str:
    line = (doc or "").strip().splitlines()[0] if doc else ""
    if line.startswith("Return "):  # the docstring's "Return x" reads "Gives x"
        line = "Gives " + line.removeprefix("Return ")
    return line.replace("``", "").replace(" -> ", " → ")


def _arg(kind: str, name: str, required: bool) -> Arg:
    label, hint = _HELP.get((kind, name)) or _HELP_BY_NAME.get(name) or (name, "")
    return Arg(name, label, hint, required)


@cache
def step_kinds() -> dict[str, StepKind]:
    """Return every step a steward can choose, by name, in name order.

    Built once per process from the engine's registry (fixed at import);
    callers read it, never change it.
    """
    kinds: dict[str, StepKind] = {}
    for name in sorted(REGISTRY):
        tdef = REGISTRY[name]
        if name == "crosswalk":  # bound to the mapping's crosswalk, not typed in
            kinds[name] = StepKind(name, _CROSSWALK_SUMMARY, ())
            continue
        args = tuple(_arg(name, a, True) for a in tdef.required) + tuple(
            _arg(name, a, False) for a in tdef.optional
        )
        kinds[name] = StepKind(name, _summary(tdef.fn.__doc__), args)
    kinds["lookup"] = StepKind(
        "lookup",
        _LOOKUP_SUMMARY,
        (
            _arg("lookup", "table", True),
            _arg("lookup", "match", True),
            _arg("lookup", "take", True),
            _arg("lookup", "reason", False),
        ),
    )
    return dict(sorted(kinds.items()))


def as_text(value: Any) -> str:
    """Return how an argument's stored value is shown in its box."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def describe_step(step: Mapping[str, Any]) -> str:
    """Return one step as a line a steward reads: ``date_parse (format %Y%m%d)``."""
    name = str(step.get("name"))
    args = step.get("args") or {}
    if name == "crosswalk" or not isinstance(args, Mapping) or not args:
        return name
    return f"{name} (" + ", ".join(f"{k} {as_text(v)!s}" for k, v in args.items()) + ")"


def step_row(
    prefix: str, name: str, args: Mapping[str, Any] | None, position: int = 0
) -> dict[str, Any]:
    """Return one row of the editor: the step's kind and a box per argument."""
    kind = step_kinds().get(name)
    args = args or {}
    return {
        "prefix": prefix,
        "position": position,
        "name": name,
        "kind": kind,
        "fields": [
            {
                "arg": a,
                "box": f"{prefix}-arg-{a.name}",
                "value": as_text(args.get(a.name)),
            }
            for a in (kind.args if kind else ())
        ],
    }


def editor_rows(steps: Sequence[Any]) -> list[dict[str, Any]]:
    """Return the editor's rows for stored ``steps``."""
    return [
        step_row(
            f"step-{i}",
            str(step.get("name", "")),
            step.get("args") if isinstance(step.get("args"), Mapping) else None,
            i + 1,
        )
        for i, step in enumerate(steps or [])
        if isinstance(step, Mapping)
    ]


def _args(
    data: Mapping[str, Any],
    prefix: str,
    name: str,
    was: Mapping[str, Any] | None,
) -> dict[str, Any]:
    kind = step_kinds().get(name)
    before = (
        dict((was or {}).get("args") or {}) if was and was.get("name") == name else {}
    )
    if kind is None or name == "crosswalk":
        return before  # unknown: the service names it; crosswalk: from the FK
    out: dict[str, Any] = {}
    for arg in kind.args:
        raw = data.get(f"{prefix}-arg-{arg.name}")
        if raw is None:  # no box shown (the transform changed without a reload)
            if arg.name in before:
                out[arg.name] = before[arg.name]
            continue
        raw = str(raw)
        if raw == "":
            continue  # omitted: a required one is named by the service
        old = before.get(arg.name)
        if arg.name in before and as_text(old) == raw:
            out[arg.name] = old  # unchanged: keep its stored type
        elif isinstance(old, int) and not isinstance(old, bool) and _INT.match(raw):
            out[arg.name] = int(raw)  # a number stays a number
        else:
            out[arg.name] = raw
    return out


def _position(raw: Any, default: int) -> tuple[int, bool]:
    try:
        value = int(str(raw).strip())
    except (TypeError, ValueError):
        return default, False
    return value, value != default


def steps_from_form(
    data: Mapping[str, Any], stored: Sequence[Any]
) -> list[dict[str, Any]]:
    """Return the steps the editor's form describes, in the order it asks for.

    ``step-N-*`` fields edit stored step N (``-name``, ``-position``,
    ``-remove``, ``-arg-<name>``); ``step-new-*`` add one. A step moved to a
    position another step holds goes before it.
    """
    try:
        count = min(int(str(data.get("steps", "0"))), MAX_TRANSFORM_STEPS)
    except ValueError:
        count = 0
    stored = list(stored or [])
    ordered: list[tuple[int, int, int, dict[str, Any]]] = []
    for i in range(max(count, 0)):
        prefix = f"step-{i}"
        name = str(data.get(f"{prefix}-name", "")).strip()
        if not name or data.get(f"{prefix}-remove"):
            continue
        was = stored[i] if i < len(stored) and isinstance(stored[i], Mapping) else None
        position, moved = _position(data.get(f"{prefix}-position"), i + 1)
        step = {"name": name, "args": _args(data, prefix, name, was)}
        ordered.append((position, 0 if moved else 1, i, step))
    name = str(data.get(f"step-{NEW}-name", "")).strip()
    if name:
        position, _ = _position(data.get(f"step-{NEW}-position"), count + 1)
        step = {"name": name, "args": _args(data, f"step-{NEW}", name, None)}
        ordered.append((position, 0, count, step))
    return [step for *_, step in sorted(ordered, key=lambda r: r[:3])]
