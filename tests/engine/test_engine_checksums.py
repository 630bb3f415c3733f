"""Column checksums: the vectorised MD5 sums equal hashlib's, row for row.

The engine's checksum of what it sent is compared with PostgreSQL's
``md5()`` of what landed, so the numpy MD5, the long-value path and the
distinct-value weighting must all give exactly hashlib's sum.
"""

from __future__ import annotations

import random
import string

import pandas as pd
import pytest

from migration.engine.checksums import md5_32, series_checksum


def _expected(values: list[str | None]) -> tuple[int, int]:
    texts = [v for v in values if v is not None]
    return len(texts), sum(md5_32(t) or 0 for t in texts)


def _text(rng: random.Random, longest: int) -> str:
    alphabet = string.ascii_letters + string.digits + " -é£—"
    return "".join(rng.choices(alphabet, k=rng.randint(0, longest)))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_mostly_distinct_values(seed: int) -> None:
    rng = random.Random(seed)
    # Up to 70 characters, some multi-byte: values on both sides of the
    # one-block (55-byte) limit, blanks and NULLs.
    values = [None if rng.random() < 0.05 else _text(rng, 70) for _ in range(4000)]
    s = pd.Series(values, dtype="string[pyarrow]")
    assert series_checksum(s) == _expected(values)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_repeating_values_weighted_by_count(seed: int) -> None:
    rng = random.Random(seed)
    pool = [_text(rng, 70) for _ in range(25)] + ["", "x" * 56, "é" * 40]
    values = [None if rng.random() < 0.1 else rng.choice(pool) for _ in range(5000)]
    s = pd.Series(values, dtype="string[pyarrow]")
    assert series_checksum(s) == _expected(values)


def test_integers_hash_as_their_decimal_text() -> None:
    s = pd.Series([1, None, 3, 3, 3, -42, 2**62], dtype="Int64")
    assert series_checksum(s) == _expected(["1", "3", "3", "3", "-42", str(2**62)])


def test_an_empty_or_all_null_column() -> None:
    assert series_checksum(pd.Series([], dtype="string[pyarrow]")) == (0, 0)
    assert series_checksum(pd.Series([None, None], dtype="string[pyarrow]")) == (0, 0)


def test_sliced_and_multi_chunk_columns() -> None:
    """A chunk's rows are often a slice (an offset into Arrow buffers) or a
    concatenation (several Arrow chunks): the sums must not notice."""
    rng = random.Random(9)
    values = [None if rng.random() < 0.1 else _text(rng, 70) for _ in range(3000)]
    whole = pd.Series(values, dtype="string[pyarrow]")
    sliced = whole.iloc[1234:2500]
    assert series_checksum(sliced) == _expected(values[1234:2500])
    # Without NULLs or long values nothing is copied: the slice's offset
    # reaches the hashing itself.
    full = [f"v{i}-{rng.random():.9f}" for i in range(3000)]
    dense = pd.Series(full, dtype="string[pyarrow]")
    assert series_checksum(dense.iloc[777:2100]) == _expected(full[777:2100])
    joined = pd.concat([whole.iloc[:1000], whole.iloc[2000:]], ignore_index=True)
    assert series_checksum(joined) == _expected(values[:1000] + values[2000:])


@pytest.mark.parametrize("seed", [1, 2])
def test_one_or_few_value_lengths(seed: int) -> None:
    """Columns of one width (dates, timestamps, NHS numbers) or a few widths
    are laid into MD5 blocks by reshape / per-width gathers, not a scatter:
    the same sums, whole or sliced, with empty strings among them."""
    rng = random.Random(seed)
    stamps = [
        f"20{rng.randint(0, 99):02d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        f" {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00"
        for _ in range(3000)
    ]
    one = pd.Series(stamps, dtype="string[pyarrow]")
    assert series_checksum(one) == _expected(stamps)
    assert series_checksum(one.iloc[1001:2999]) == _expected(stamps[1001:2999])
    mixed = [
        rng.choice(["", f"{rng.randint(0, 10**9):010d}", stamps[rng.randrange(3000)]])
        for _ in range(3000)
    ]
    few = pd.Series(mixed, dtype="string[pyarrow]")
    assert series_checksum(few) == _expected(mixed)
    assert series_checksum(few.iloc[17:2017]) == _expected(mixed[17:2017])
    blanks = pd.Series([""] * 10, dtype="string[pyarrow]")
    assert series_checksum(blanks) == _expected([""] * 10)
