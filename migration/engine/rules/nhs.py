"""Vectorised NHS identifier checks (NHS number Modulus 11, postcode, ODS)."""

from __future__ import annotations

import numpy as np
import pandas as pd  # type: ignore[import-untyped, unused-ignore]

_WEIGHTS = np.array([10, 9, 8, 7, 6, 5, 4, 3, 2], dtype=np.int64)
POSTCODE_RE = r"^([A-Z][A-HJ-Y]?[0-9][A-Z0-9]?[0-9][A-Z]{2}|GIR0AA)$"
#: NHS pseudo-postcodes (no fixed abode, not known, n.o.s., overseas).
PSEUDO_POSTCODE_RE = r"^ZZ99[0-9][A-Z]{2}$"
GP_PRACTICE_RE = r"^[A-Z][0-9]{5}$"


def nhs_number_valid(values: pd.Series) -> pd.Series:
    """Return True where a (normalised) NHS number passes Modulus 11; NULL -> NA."""
    text = values.astype("string[pyarrow]")
    shape_ok = text.str.fullmatch(r"[0-9]{10}").fillna(False).astype(bool)
    out = pd.Series(pd.NA, index=values.index, dtype="boolean")
    out[text.notna()] = False
    if shape_ok.any():
        digits = (
            np.frombuffer(
                "".join(text[shape_ok].tolist()).encode("ascii"), dtype=np.uint8
            ).reshape(-1, 10)
            - 48
        ).astype(np.int64)
        check = 11 - (digits[:, :9] @ _WEIGHTS) % 11
        check = np.where(check == 11, 0, check)
        ok = (check != 10) & (check == digits[:, 9])
        out[shape_ok] = ok
    return out


def nhs_number_repdigit(values: pd.Series) -> pd.Series:
    """Return True where an NHS number is ten identical digits (passes Mod 11)."""
    text = values.astype("string[pyarrow]")
    # "ten times its first digit", without a backreference (which pandas
    # would run as a Python call per value)
    first = text.str.slice(0, 1)
    same = text == first.str.repeat(10)
    return (same & text.str.fullmatch(r"[0-9]{10}")).astype("boolean")


def postcode_valid(values: pd.Series) -> pd.Series:
    """Return True where a postcode is a UK postcode or an NHS ZZ99 pseudo-postcode."""
    compact = values.astype("string[pyarrow]").str.upper().str.replace(" ", "")
    uk = compact.str.fullmatch(POSTCODE_RE)
    pseudo = compact.str.fullmatch(PSEUDO_POSTCODE_RE)
    return (uk | pseudo).astype("boolean")


def gp_practice_valid(values: pd.Series) -> pd.Series:
    """Return True where a GP practice code is letter + 5 digits (V8199x included)."""
    return values.astype("string[pyarrow]").str.fullmatch(GP_PRACTICE_RE)
