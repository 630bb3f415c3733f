"""Column checksums: the engine's sums equal PostgreSQL's ``hashtext``, value for value.

The engine's checksum of what it sent is compared with the target's checksum
of what landed (PostgreSQL's ``hashtext``, SQLite's aggregate), so the
hash's layout paths (one width, a few widths, a scatter, slices of long
values) and the distinct-value weighting must all give exactly the sum of
each value hashed alone (``hash32``) -- and that must be the server's own
function.
"""

from __future__ import annotations

import random
import sqlite3
import string
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import pytest
from engine_kit import PG_DSN

from migration.engine.checksums import (
    PG_HASH32,
    Hash32Sum,
    _hash32_each,
    hash32,
    series_checksum,
    texts_checksum,
)


def _expected(values: list[str | None]) -> tuple[int, int]:
    texts = [v for v in values if v is not None]
    return len(texts), sum(hash32(t) or 0 for t in texts)


def _text(rng: random.Random, longest: int) -> str:
    alphabet = string.ascii_letters + string.digits + " -é£—"
    return "".join(rng.choices(alphabet, k=rng.randint(0, longest)))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_mostly_distinct_values(seed: int) -> None:
    rng = random.Random(seed)
    # Up to 70 characters, some multi-byte (up to ~200 bytes): values of
    # every number of 12-byte blocks, blanks and NULLs.
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
    are laid out by reshape / per-width gathers, not a scatter: the same
    sums, whole or sliced, with empty strings among them."""
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


def _server_hashes(texts: list[str]) -> list[int]:
    with psycopg.connect(PG_DSN) as conn:
        rows = conn.execute(
            "SELECT " + PG_HASH32.format("v") + " FROM unnest(%s::text[]) "
            "WITH ORDINALITY AS t(v, o) ORDER BY o",
            (texts,),
        ).fetchall()
    return [int(r[0]) for r in rows]


def test_the_reference_is_postgresqls_hashtext() -> None:
    """Every length from 0 to 100 bytes (each tail of a 12-byte block, one
    to eight blocks), multi-byte text, and the characters a CSV or COPY
    could trip on: the scalar and the vectorised hash both equal the
    server's, value for value."""
    rng = random.Random(11)
    alphabet = string.ascii_letters + string.digits + " -é£—\t\n\"',|"
    texts = ["".join(rng.choices(alphabet, k=n)) for n in range(101) for _ in range(3)]
    texts += ["", "0", "2024-02-29", "4857773456", "ZZ99 3VZ", "é" * 60]
    server = _server_hashes(texts)
    assert [hash32(t) for t in texts] == server
    assert _hash32_each(pa.array(texts)).tolist() == server
    # A slice (an offset into the Arrow buffers) and large_string buffers.
    big = pa.array(texts, pa.large_string()).slice(5, 200)
    assert _hash32_each(big).tolist() == server[5:205]


def test_a_published_columns_checksum_equals_the_targets() -> None:
    """The SQL checksum of a PostgreSQL column and of a SQLite column equal
    the engine's sum of what was sent (NULLs not counted)."""
    rng = random.Random(5)
    values = [None if rng.random() < 0.1 else _text(rng, 40) for _ in range(3000)]
    sent = series_checksum(pd.Series(values, dtype="string[pyarrow]"))
    expr = "COALESCE(SUM(" + PG_HASH32.format("CAST(v AS TEXT)") + "), 0)"
    with psycopg.connect(PG_DSN) as conn:
        row = conn.execute(
            f"SELECT COUNT(v), {expr} FROM unnest(%s::text[]) AS t(v)", (values,)
        ).fetchone()
    assert row is not None
    assert (int(row[0]), int(row[1])) == sent
    lite = sqlite3.connect(":memory:")
    lite.create_aggregate("pas_hash32_sum", 1, Hash32Sum)
    lite.execute("CREATE TABLE t (v TEXT)")
    lite.executemany("INSERT INTO t VALUES (?)", [(v,) for v in values])
    got = lite.execute(
        "SELECT COUNT(v), COALESCE(pas_hash32_sum(CAST(v AS TEXT)), 0) FROM t"
    ).fetchone()
    assert tuple(got) == sent


def test_the_sqlite_aggregate_hashes_in_bounded_batches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """More values than one batch: the running sum over several batches is
    the one-pass sum, and nothing waits past a batch."""
    monkeypatch.setattr(Hash32Sum, "BATCH", 100)
    texts = [f"value-{i}" for i in range(1050)]
    agg = Hash32Sum()
    for t in texts:
        agg.step(t)
        assert len(agg.pending) < 100
    agg.step(None)
    assert agg.finalize() == _expected(texts)[1] == texts_checksum(texts)[1]


def test_repeating_columns_are_counted_mostly_distinct_ones_hashed() -> None:
    """Both paths of ``series_checksum`` give the reference sum: a column
    whose first values repeat (counted, each text hashed once) and one whose
    first values are distinct but later ones repeat (hashed row by row)."""
    codes = ["A", "B", "C", "D"] * 1000
    assert series_checksum(pd.Series(codes, dtype="string[pyarrow]")) == _expected(
        codes
    )
    late = [f"k{i}" for i in range(3000)] + ["same"] * 3000
    assert series_checksum(pd.Series(late, dtype="string[pyarrow]")) == _expected(late)
    ints = pd.Series(np.arange(5000) % 7, dtype="Int64")
    assert series_checksum(ints) == _expected([str(i % 7) for i in range(5000)])


def test_long_values_are_hashed_in_slices_of_bounded_width(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A few long free-text values among many short ones: the same sums as
    the reference, and no layout is as wide as the longest value times every
    row (the short values are never padded out to the long ones' width)."""
    from migration.engine import checksums

    rng = random.Random(21)
    values = [_text(rng, 20) for _ in range(20_000)]
    for i in rng.sample(range(20_000), 30):
        values[i] = _text(rng, 4000) + "x" * rng.randint(300, 5000)
    sizes: list[int] = []
    lay_out = checksums._lay_out

    def recording(data: Any, offsets: Any, width: int) -> Any:
        sizes.append((len(offsets) - 1) * width)
        return lay_out(data, offsets, width)

    monkeypatch.setattr(checksums, "_lay_out", recording)
    s = pd.Series(values, dtype="string[pyarrow]")
    assert series_checksum(s) == _expected(values)
    longest = max(len(v.encode()) for v in values)
    assert max(sizes) < 20_000 * longest / 4
    assert max(sizes) <= checksums._SLICE * (longest + 12)
