"""Small server-side SVG charts: no chart library, no JavaScript, accessible.

Every chart is an ``<svg role="img">`` with an ``aria-label`` and a ``<title>``
that carry the numbers, so a screen-reader user gets the same facts as a
sighted one; the page always shows the same numbers in a table as well.
Colours are the NHS.UK palette; labels are escaped with ``format_html``.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

NHS_BLUE = "#005eb8"
NHS_GREEN = "#007f3b"
NHS_RED = "#d5281b"
NHS_YELLOW = "#ffb81c"
NHS_GREY = "#768692"
NHS_DARK = "#212b32"

STATUS_COLOURS = {
    "PASS": NHS_GREEN,
    "PASS_WITH_VIOLATIONS": NHS_YELLOW,
    "FAIL": NHS_RED,
    "ERROR": NHS_RED,
    "NOT_APPLICABLE": NHS_GREY,
}


def _svg(width: int, height: int, label: str, body: str) -> SafeString:
    return format_html(
        '<svg class="pas-chart" role="img" aria-label="{}" viewBox="0 0 {} {}" '
        'width="100%" preserveAspectRatio="xMinYMin meet" '
        'xmlns="http://www.w3.org/2000/svg"><title>{}</title>{}</svg>',
        label,
        width,
        height,
        label,
        mark_safe(body),  # noqa: S308 - built from format_html pieces only
    )


def _n(x: float) -> str:
    """Return a coordinate as text (format_html escapes its arguments to str)."""
    return f"{x:.1f}"


def _fmt(n: float) -> str:
    return f"{n:,.0f}" if float(n).is_integer() else f"{n:,.1f}"


def ranked_bars(
    items: Sequence[tuple[str, float]], *, title: str, colour: str = NHS_BLUE
) -> SafeString:
    """Return a horizontal bar chart of ``items`` ranked largest first."""
    ranked = sorted(items, key=lambda kv: (-kv[1], kv[0]))
    label = (
        title
        + ": "
        + ("; ".join(f"{k} {_fmt(v)}" for k, v in ranked) or "nothing to show")
    )
    top = max((v for _, v in ranked), default=0) or 1
    row_h, label_w, bar_w = 26, 230, 330
    rows = []
    for i, (name, value) in enumerate(ranked):
        y = i * row_h
        w = max(1.0, bar_w * value / top) if value else 0
        rows.append(
            format_html(
                '<text x="{}" y="{}" text-anchor="end" font-size="13" fill="{}">{}'
                '</text><rect x="{}" y="{}" width="{}" height="18" fill="{}"/>'
                '<text x="{}" y="{}" font-size="13" fill="{}">{}</text>',
                label_w - 8,
                y + 14,
                NHS_DARK,
                name,
                label_w,
                y + 2,
                _n(w),
                colour,
                _n(label_w + w + 6),
                y + 14,
                NHS_DARK,
                _fmt(value),
            )
        )
    height = max(row_h, row_h * len(ranked))
    return _svg(label_w + bar_w + 90, height, label, "".join(rows))


def stacked_bar(
    segments: Sequence[tuple[str, float, str]], *, title: str
) -> SafeString:
    """Return one horizontal bar split into (label, value, colour) segments."""
    total = sum(v for _, v, _ in segments)
    label = title + ": " + ", ".join(f"{n} {_fmt(v)}" for n, v, _ in segments)
    width, bar_h = 560, 22
    x = 0.0
    parts = []
    for name, value, colour in segments:
        w = width * value / total if total else 0
        if w:
            parts.append(
                format_html(
                    '<rect x="{}" y="0" width="{}" height="{}" fill="{}">'
                    "<title>{} {}</title></rect>",
                    _n(x),
                    _n(w),
                    bar_h,
                    colour,
                    name,
                    _fmt(value),
                )
            )
        x += w
    if not total:
        parts.append(
            format_html(
                '<rect x="0" y="0" width="{}" height="{}" fill="#f0f4f5" stroke="{}"/>',
                width,
                bar_h,
                NHS_GREY,
            )
        )
    legend = format_html_join(
        "",
        '<rect x="{}" y="30" width="12" height="12" fill="{}"/>'
        '<text x="{}" y="41" font-size="12" fill="' + NHS_DARK + '">{} {}</text>',
        (
            (i * 180, colour, i * 180 + 16, name, _fmt(value))
            for i, (name, value, colour) in enumerate(segments)
        ),
    )
    return _svg(width, 48, label, "".join(parts) + legend)


def ledger_bar(*, table: str, loaded: int, rejected: int, excluded: int) -> SafeString:
    """Return the ledger of one table as a loaded / rejected / excluded bar."""
    return stacked_bar(
        [
            ("loaded", loaded, NHS_GREEN),
            ("rejected", rejected, NHS_RED),
            ("excluded", excluded, NHS_GREY),
        ],
        title=f"Ledger of {table}",
    )


def gate_summary(counts: dict[str, int], *, title: str) -> SafeString:
    """Return the number of checks per status as a coloured stacked bar."""
    order = ["PASS", "PASS_WITH_VIOLATIONS", "FAIL", "ERROR", "NOT_APPLICABLE"]
    return stacked_bar(
        [
            (status.replace("_", " ").lower(), counts.get(status, 0), colour)
            for status in order
            if (colour := STATUS_COLOURS[status]) and counts.get(status, 0)
        ],
        title=title,
    )


def paired_bars(
    items: Sequence[tuple[str, float, float]],
    *,
    title: str,
    first: str = "source",
    second: str = "target",
) -> SafeString:
    """Return two bars per item (e.g. source rows vs rows in the target)."""
    label = (
        title
        + ": "
        + (
            "; ".join(
                f"{name} {first} {_fmt(a)}, {second} {_fmt(b)}" for name, a, b in items
            )
            or "nothing to show"
        )
    )
    top = max((max(a, b) for _, a, b in items), default=0) or 1
    group_h, label_w, bar_w = 40, 200, 330
    rows = []
    for i, (name, a, b) in enumerate(items):
        y = i * group_h
        rows.append(
            format_html(
                '<text x="{}" y="{}" text-anchor="end" font-size="13" fill="{}">{}'
                "</text>"
                '<rect x="{}" y="{}" width="{}" height="14" fill="{}"/>'
                '<text x="{}" y="{}" font-size="11" fill="{}">{} {}</text>'
                '<rect x="{}" y="{}" width="{}" height="14" fill="{}"/>'
                '<text x="{}" y="{}" font-size="11" fill="{}">{} {}</text>',
                label_w - 8,
                y + 20,
                NHS_DARK,
                name,
                label_w,
                y + 2,
                _n(bar_w * a / top),
                NHS_BLUE,
                _n(label_w + bar_w * a / top + 4),
                y + 13,
                NHS_DARK,
                first,
                _fmt(a),
                label_w,
                y + 18,
                _n(bar_w * b / top),
                NHS_GREEN,
                _n(label_w + bar_w * b / top + 4),
                y + 29,
                NHS_DARK,
                second,
                _fmt(b),
            )
        )
    height = max(group_h, group_h * len(items))
    return _svg(label_w + bar_w + 130, height, label, "".join(rows))


__all__ = [
    "gate_summary",
    "ledger_bar",
    "paired_bars",
    "ranked_bars",
    "stacked_bar",
]
