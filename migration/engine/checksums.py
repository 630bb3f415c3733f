"""Order-independent column checksums, computable in pandas and in SQL alike.

checksum(column) = (non-null count, sum of the first 32 bits of md5(text))
where ``text`` is the canonical text of the value (ISO dates, decimal ints).
A sum is order-independent and subtractable, so the engine can compare what
it sent (minus rows moved out in the cross-table phase) with the target.

The pandas side computes MD5 vectorised with numpy (one 64-byte block per
value, i.e. values of up to 55 UTF-8 bytes; longer ones go through hashlib):
the same bits as ``md5_32`` and the SQL side, without a Python call per row.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd  # type: ignore[import-untyped, unused-ignore]
import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.compute as pc  # type: ignore[import-untyped, unused-ignore]

_SHIFTS = [7, 12, 17, 22] * 4 + [5, 9, 14, 20] * 4 + [4, 11, 16, 23] * 4
_SHIFTS += [6, 10, 15, 21] * 4
_K = [int(abs(np.sin(i + 1)) * 2**32) & 0xFFFFFFFF for i in range(64)]
_INIT = (0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476)
#: Longest message (bytes) that fits one padded MD5 block.
_ONE_BLOCK = 55


def md5_32(text: str | None) -> int | None:
    """Return the first 32 bits of md5(text) as an int (None for None)."""
    if text is None:
        return None
    return int.from_bytes(
        hashlib.md5(text.encode("utf-8"), usedforsecurity=False).digest()[:4], "big"
    )


def _md5_32_block(data: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Return md5_32 of each message ``data[offsets[i]:offsets[i+1]]`` (<= 55 B)."""
    m = len(offsets) - 1
    lengths = np.diff(offsets)
    block = np.zeros((m, 64), dtype=np.uint8)
    sizes = np.unique(lengths)
    if len(sizes) == 1:
        # One length (dates, timestamps, NHS numbers): the bytes are already
        # an (m, size) matrix.
        size = int(sizes[0])
        if size:
            block[:, :size] = data[offsets[0] : offsets[-1]].reshape(m, size)
    elif len(sizes) <= 4:
        for size in (int(x) for x in sizes if x):
            at = np.flatnonzero(lengths == size)
            block[at, :size] = data[offsets[at, None] + np.arange(size)]
    elif int(lengths.sum()):
        total = int(lengths.sum())
        rows = np.repeat(np.arange(m), lengths)
        cols = np.arange(total) - np.repeat(offsets[:-1] - offsets[0], lengths)
        block[rows, cols] = data[offsets[0] : offsets[-1]]
    block[np.arange(m), lengths] = 0x80
    bits = (lengths.astype(np.uint64) * np.uint64(8)).astype("<u8")
    block[:, 56:64] = bits.view(np.uint8).reshape(m, 8)
    words = np.ascontiguousarray(block).view("<u4").astype(np.uint32)
    msg = [np.ascontiguousarray(words[:, g]) for g in range(16)]
    a = np.full(m, _INIT[0], dtype=np.uint32)
    b = np.full(m, _INIT[1], dtype=np.uint32)
    c = np.full(m, _INIT[2], dtype=np.uint32)
    d = np.full(m, _INIT[3], dtype=np.uint32)
    f = np.empty(m, dtype=np.uint32)
    t = np.empty(m, dtype=np.uint32)
    for i in range(64):
        # In-place numpy ops: no temporaries in the 64 rounds.
        if i < 16:
            np.bitwise_xor(c, d, out=f)
            f &= b
            f ^= d
            g = i
        elif i < 32:
            np.bitwise_xor(b, c, out=f)
            f &= d
            f ^= c
            g = (5 * i + 1) % 16
        elif i < 48:
            np.bitwise_xor(b, c, out=f)
            f ^= d
            g = (3 * i + 5) % 16
        else:
            np.invert(d, out=f)
            f |= b
            f ^= c
            g = (7 * i) % 16
        f += a
        f += np.uint32(_K[i])
        f += msg[g]
        s = _SHIFTS[i]
        np.left_shift(f, np.uint32(s), out=t)
        f >>= np.uint32(32 - s)
        f |= t
        f += b
        # rotate registers: (a, b, c, d) <- (d, f, b, c); reuse a's buffer as f
        a, b, c, d, f = d, f, b, c, a
    a = a + np.uint32(_INIT[0])
    # hexdigest()[:8] read as hex = the first four digest bytes big-endian.
    return a.byteswap().astype(np.uint64)


def _canonical_text(values: pd.Series) -> pa.Array | None:
    """Return the non-null values as one Arrow text array (None: unsupported).

    Text columns keep their Arrow buffers (``large_string``, no copy to
    ``string``); integers are printed in decimal by Arrow.
    """
    if pd.api.types.is_integer_dtype(values.dtype):
        nonnull = values.dropna()
        arr = pc.cast(pa.array(nonnull.to_numpy(dtype=np.int64)), pa.string())
    elif pd.api.types.is_string_dtype(values.dtype) and values.dtype != object:
        arr = pc.drop_null(pa.array(values.astype("string[pyarrow]")))
    else:
        return None
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = arr.cast(pa.string())
    return arr


def series_checksum(values: pd.Series) -> tuple[int, int]:
    """Return (non-null count, checksum sum) of a Series of canonical text."""
    arr = _canonical_text(values)
    if arr is None:
        return _series_checksum_slow(values)
    n = len(arr)
    if n == 0:
        return 0, 0
    # The sum is over rows, but equal texts hash alike: where a column
    # repeats (codes, dates, provenance), hash each distinct text once and
    # weigh it by its count -- the same sum for a fraction of the MD5 work.
    counted = pc.value_counts(arr)
    if len(counted) * 2 <= n:
        hashes = _md5_32_each(counted.field("values"))
        weights = counted.field("counts").to_numpy().astype(np.uint64)
        return n, int((hashes * weights).sum(dtype=np.uint64))
    return n, int(_md5_32_each(arr).sum(dtype=np.uint64))


def _md5_32_each(arr: pa.Array) -> np.ndarray:
    """Return md5_32 of every value of a non-null string array (uint64)."""
    out = np.zeros(len(arr), dtype=np.uint64)
    lengths = pc.binary_length(arr).to_numpy(zero_copy_only=False)
    long_rows = lengths > _ONE_BLOCK
    if long_rows.any():
        out[long_rows] = [md5_32(t) or 0 for t in arr.filter(long_rows).to_pylist()]
    short = ~long_rows
    if short.any():
        part = arr.filter(short) if long_rows.any() else arr
        bufs = part.buffers()
        width = np.int64 if pa.types.is_large_string(part.type) else np.int32
        offsets = np.frombuffer(bufs[1], dtype=width)[
            part.offset : part.offset + len(part) + 1
        ].astype(np.int64)
        data = (
            np.frombuffer(bufs[2], dtype=np.uint8)
            if bufs[2] is not None
            else np.zeros(0, dtype=np.uint8)
        )
        out[short] = _md5_32_block(data, offsets)
    return out


def _series_checksum_slow(values: pd.Series) -> tuple[int, int]:
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
