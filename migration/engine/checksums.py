"""Order-independent column checksums, computable in pandas and in SQL alike.

checksum(column) = (non-null count, sum of the first 32 bits of md5(text))
where ``text`` is the canonical text of the value (ISO dates, decimal ints).
A sum is order-independent and subtractable, so the engine can compare what
it sent (minus rows moved out in the cross-table phase) with the target.
"""

from __future__ import annotations

import hashlib

import pandas as pd  # type: ignore[import-untyped, unused-ignore]


def md5_32(text: str | None) -> int | None:
    """Return the first 32 bits of md5(text) as an int (None for None)."""
    if text is None:
        return None
    return int(
        hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()[:8], 16
    )


def series_checksum(values: pd.Series) -> tuple[int, int]:
    """Return (non-null count, checksum sum) of a Series of canonical text."""
    counts = values.dropna().astype(str).value_counts()
    total = 0
    n = 0
    for text, cnt in counts.items():
        total += md5_32(str(text)) * int(cnt)  # type: ignore[operator]
        n += int(cnt)
    return n, total


def add(a: tuple[int, int] | list[int], b: tuple[int, int] | list[int]) -> list[int]:
    """Return the element-wise sum of two checksums."""
    return [int(a[0]) + int(b[0]), int(a[1]) + int(b[1])]
