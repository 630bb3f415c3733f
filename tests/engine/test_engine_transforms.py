"""Transforms registry and crosswalks: pure, vectorised, failures become rejects."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from migration.engine import transforms as T
from migration.engine.crosswalk import Crosswalk, CrosswalkEntry
from migration.engine.errors import ContractError

CTX = T.TransformContext()


def run(name: str, values: list[object], **args: object) -> T.StepResult:
    return T.REGISTRY[name].fn(pd.Series(values), ctx=CTX, **args)


def test_text_transforms() -> None:
    assert run("trim", ["  a ", None]).values.tolist() == ["a", pd.NA]
    assert run("upper", ["ab", None]).values.tolist() == ["AB", pd.NA]
    assert run("lower", ["AB"]).values.tolist() == ["ab"]
    assert run("title", ["o'brien"]).values.tolist() == ["O'Brien"]
    assert run("null_if_empty", ["", "  ", "x", None]).values.tolist() == [
        pd.NA,
        pd.NA,
        "x",
        pd.NA,
    ]
    assert run("default", [None, "a"], value="Z").values.tolist() == ["Z", "a"]
    assert run("constant", [None, "a"], value="K").values.tolist() == ["K", "K"]
    assert run("split", ["a-b", "c", None], sep="-", index=1).values.tolist() == [
        "b",
        pd.NA,
        pd.NA,
    ]


def test_concat_skips_nulls() -> None:
    res = T.concat(
        [pd.Series(["a", None, None, ""]), pd.Series(["b", "c", None, "d"])],
        ctx=CTX,
        sep=" ",
    )
    assert res.values.tolist() == ["a b", "c", pd.NA, "d"]


def test_integer_like_floats_read_as_integers() -> None:
    # A NULL in an INTEGER column makes pandas use float64.
    assert T.as_text(pd.Series([12.0, None])).tolist() == ["12", pd.NA]


def test_date_parse_failures_are_rejects_not_exceptions() -> None:
    res = run(
        "date_parse",
        ["2019-02-28", "31/02/2019", "2019-02-30", "UNKNOWN", "", None],
        format="%Y-%m-%d",
    )
    assert res.values.iloc[0] == pd.Timestamp("2019-02-28")
    assert res.failed is not None
    assert res.failed.tolist() == [False, True, True, True, False, False]
    assert res.reason == "date_unparseable"


def test_uk_dates_and_timestamps() -> None:
    res = run("date_parse", ["05/11/2020", "32/01/2020"], format="%d/%m/%Y")
    assert res.values.iloc[0] == pd.Timestamp("2020-11-05")
    assert res.failed is not None and res.failed.tolist() == [False, True]
    res = run(
        "datetime_parse",
        ["2026-11-01 09:15:00", "2026-11-01 25:00"],
        format="%Y-%m-%d %H:%M:%S",
    )
    assert res.values.iloc[0] == pd.Timestamp("2026-11-01 09:15:00")
    assert res.failed is not None and res.failed.tolist() == [False, True]


def test_horolog_to_date() -> None:
    res = run("horolog_to_date", [1, 67000, None, -3, "x", "47117"])
    vals = res.values.tolist()
    assert vals[0] == pd.Timestamp("1841-01-01")
    assert vals[1] == pd.Timestamp(dt.date(1840, 12, 31) + dt.timedelta(days=67000))
    assert pd.isna(vals[2])
    assert vals[5] == pd.Timestamp(dt.date(1840, 12, 31) + dt.timedelta(days=47117))
    assert res.failed is not None
    assert res.failed.tolist() == [False, False, False, True, True, False]


def test_to_integer() -> None:
    res = run("to_integer", ["1", 2, "2.5", None, "x"])
    assert res.values.tolist()[:2] == [1, 2]
    assert res.failed is not None
    assert res.failed.tolist() == [False, False, True, False, True]


def test_to_integer_keeps_integers_exact_and_rejects_what_bigint_cannot_hold() -> None:
    # An INTEGER column read as such: no float round trip (2**53 + 1 survives).
    ints = pd.Series([2**53 + 1, None, -7], dtype="Int64")
    res = T.REGISTRY["to_integer"].fn(ints, ctx=CTX)
    assert res.values.tolist() == [2**53 + 1, pd.NA, -7]
    assert res.failed is not None and not res.failed.any()
    # Beyond BIGINT, as text or as an unsigned column: a reject, not a crash.
    res = run("to_integer", [str(2**64), "9223372036854775807000", "12", " 1e3 "])
    assert res.failed is not None
    assert res.failed.tolist() == [True, True, False, False]
    assert res.values.tolist()[2:] == [12, 1000]
    big = pd.Series([2**64 - 1, 5], dtype="uint64")
    res = T.REGISTRY["to_integer"].fn(big, ctx=CTX)
    assert res.failed is not None and res.failed.tolist() == [True, False]
    assert res.values.tolist() == [pd.NA, 5]


def test_stable_number_gives_a_text_key_the_same_bigint_every_time() -> None:
    uuids = [
        "57f2562b-445c-f11c-ba40-edc55af3c84f",
        "3edac2e3-d223-6fae-d515-daf96ef6bc76",
    ]
    res = run("stable_number", [uuids[0], None, "", uuids[1], uuids[0]])
    assert res.failed is None
    got = res.values.tolist()
    assert got[1] is pd.NA and got[2] is pd.NA  # blank stays missing
    assert got[0] == got[4] != got[3]
    assert all(0 <= v < 2**63 for v in (got[0], got[3]))  # fits BIGINT
    # Fixed by the text alone (BLAKE2b), not by the process or the run:
    # the value a run on another machine, or next year, gives.
    assert got[0] == 3202394622384088157
    # Distinct keys stay distinct over a realistic extract.
    many = run("stable_number", [f"key-{i}" for i in range(50_000)]).values
    assert many.nunique() == 50_000


def test_nhs_number_and_postcode_normalise() -> None:
    assert run(
        "nhs_number_normalise", ["943 476 5919", "943-476-5919", " "]
    ).values.tolist() == [
        "9434765919",
        "9434765919",
        pd.NA,
    ]
    assert run(
        "postcode_normalise", ["ls1 4ap", "LS14AP ", "zz993vz", "", None]
    ).values.tolist() == ["LS1 4AP", "LS1 4AP", "ZZ99 3VZ", pd.NA, pd.NA]


def test_registry_refuses_unknown_names_and_arguments() -> None:
    with pytest.raises(ContractError, match="unknown transform"):
        T.check_args("eval", {})
    with pytest.raises(ContractError, match="missing args"):
        T.check_args("date_parse", {})
    with pytest.raises(ContractError, match="unknown args"):
        T.check_args("trim", {"code": "x"})


def _sex() -> Crosswalk:
    return Crosswalk(
        id="SEX",
        version="3",
        target_system="person_stated_gender",
        target_version="2024.1",
        default="X",
        entries=(
            CrosswalkEntry("M", "1", "equal"),
            CrosswalkEntry("F", "2", "equal"),
            CrosswalkEntry("Q", None, "unmatched"),
        ),
    )


def test_crosswalk_strict_miss_is_a_reject_with_id_and_version() -> None:
    ctx = T.TransformContext(crosswalks={"SEX": _sex()})
    vals, results = T.apply_chain(
        [pd.Series([" m", "F", "Z", None, "q"])],
        [("trim", {}), ("upper", {}), ("crosswalk", {"id": "SEX", "mode": "strict"})],
        ctx,
    )
    assert vals.tolist()[:2] == ["1", "2"]
    last = results[-1]
    assert last.failed is not None
    assert last.failed.tolist() == [False, False, True, False, False]
    assert last.reason == "crosswalk_miss"
    assert last.crosswalk == ("SEX", "3")
    # unmatched entries map to the default in strict mode too
    assert vals.tolist()[4] == "X"


def test_crosswalk_lenient_fills_the_default_and_counts_it() -> None:
    ctx = T.TransformContext(crosswalks={"SEX": _sex()})
    vals, results = T.apply_chain(
        [pd.Series(["M", "Z", "Y", None])],
        [("crosswalk", {"id": "SEX", "mode": "lenient"})],
        ctx,
    )
    assert vals.tolist() == ["1", "X", "X", pd.NA]
    assert results[-1].failed is not None and not results[-1].failed.any()
    assert results[-1].defaults_filled == 2
    # which local codes were defaulted, for the miss queue
    assert results[-1].defaulted_codes == {"Z": 1, "Y": 1}


def test_crosswalk_validation() -> None:
    with pytest.raises(ContractError, match="bad equivalence"):
        Crosswalk("A", "1", "s", "1", (CrosswalkEntry("M", "1", "same"),))
    with pytest.raises(ContractError, match="twice"):
        Crosswalk(
            "A", "1", "s", "1", (CrosswalkEntry("M", "1"), CrosswalkEntry("M", "2"))
        )
    with pytest.raises(ContractError, match="no national code"):
        Crosswalk("A", "1", "s", "1", (CrosswalkEntry("M", None, "equal"),))


def test_normalisers_strip_every_character_pythons_whitespace_class_matches() -> None:
    """The literal whitespace class (run by pyarrow) means what ``\\s`` means."""
    import re

    everything = "".join(chr(c) for c in range(0x3001) if re.match(r"\s", chr(c)))
    assert set(everything) == set(T.WHITESPACE)
    ctx = T.TransformContext()
    nhs = pd.Series([f"943{everything}476-5919"], dtype="string[pyarrow]")
    assert T.REGISTRY["nhs_number_normalise"].fn(nhs, ctx=ctx).values.tolist() == [
        "9434765919"
    ]
    pc = pd.Series([f"ls1{everything}4ap"], dtype="string[pyarrow]")
    assert T.REGISTRY["postcode_normalise"].fn(pc, ctx=ctx).values.tolist() == [
        "LS1 4AP"
    ]
