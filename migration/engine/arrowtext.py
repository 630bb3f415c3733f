"""Text columns between pandas and Arrow without copies.

The engine's text columns are ``string[pyarrow]`` Series: their values are an
Arrow array already. These helpers hand that array to ``pyarrow.compute``
and wrap a result back into a Series, so a vectorised step runs in C++ end
to end instead of through pandas' per-call machinery (or per value in
Python).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped, unused-ignore]
import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.compute as pc  # type: ignore[import-untyped, unused-ignore]

TEXT = "string[pyarrow]"


def arrow_text(values: pd.Series) -> Any:
    """Return the Arrow (large_string) array behind a ``string[pyarrow]`` Series."""
    if values.dtype != TEXT:
        values = values.astype(TEXT)
    return pa.array(values)


def text_series(arr: Any, index: pd.Index) -> pd.Series:
    """Return an Arrow string array as a ``string[pyarrow]`` Series on ``index``."""
    if not pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.large_string())
    return pd.Series(pd.arrays.ArrowStringArray(arr), index=index)


def mask_series(arr: Any, index: pd.Index) -> pd.Series:
    """Return an Arrow boolean array as a plain bool Series (NULL as False)."""
    filled = pc.fill_null(arr, False)
    return pd.Series(
        np.asarray(filled.to_numpy(zero_copy_only=False), dtype=bool), index=index
    )


def blank(arr: Any) -> Any:
    """Return an Arrow mask: the value is NULL, empty or only whitespace.

    ``utf8_is_space`` is true for a non-empty all-whitespace value (Unicode
    whitespace, as ``utf8_trim_whitespace`` trims), so no trimmed copy of the
    strings is built.
    """
    return pc.or_(pc.equal(pc.binary_length(arr), 0), pc.utf8_is_space(arr)).fill_null(
        True
    )
