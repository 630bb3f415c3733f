"""The manifest lists exactly the defects an independent recount finds."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from migration.legacypas import DEFECT_SPECS, generate, read_manifest


@pytest.fixture(scope="module")
def dirty(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dirty")
    generate(2000, 11, str(out), defect_rate=0.08)
    return out


def test_recount_finds_exactly_the_manifest_rows(dirty: Path, lp) -> None:
    manifest = read_manifest(str(dirty / "manifest.json"))
    rc = lp.recount(lp.load_sqlite(dirty / "legacy_pas.sqlite3"))
    assert rc.anomalies == []
    expected = lp.manifest_set(manifest)
    assert rc.found - expected == set(), "defects not in the manifest"
    assert expected - rc.found == set(), "manifest rows the data does not show"
    assert len(expected) == len(manifest["defects"]), "a row listed twice"


def test_every_defect_type_is_injected_with_spec_fields(dirty: Path) -> None:
    manifest = read_manifest(str(dirty / "manifest.json"))
    spec = {(s.table, s.type, s.column, s.reason, s.action) for s in DEFECT_SPECS}
    seen = Counter(
        (
            d["table"],
            d["type"],
            d["column"],
            d["expected_reason"],
            d["expected_action"],
        )
        for d in manifest["defects"]
    )
    assert set(seen) == spec
    # one defect per row
    rows = Counter((d["table"], d["key"]) for d in manifest["defects"])
    assert max(rows.values()) == 1


def test_defect_rate_is_roughly_r_per_table(dirty: Path) -> None:
    manifest = read_manifest(str(dirty / "manifest.json"))
    per_table = Counter(d["table"] for d in manifest["defects"])
    for table in ("PA_PatMas", "PA_Adm", "PA_WardStay", "RB_Appointment"):
        rate = per_table[table] / manifest["tables"][table]
        assert 0.04 < rate < 0.12, (table, rate)


def test_pair_defects_list_both_rows(dirty: Path, lp) -> None:
    data = lp.load_sqlite(dirty / "legacy_pas.sqlite3")
    manifest = read_manifest(str(dirty / "manifest.json"))
    by_id = {r["PAPMI_RowId"]: r for r in data["PA_PatMas"]}
    dup = [d["key"] for d in manifest["defects"] if d["type"] == "nhs_duplicate"]
    numbers = Counter(by_id[k]["PAPMI_NHSNo"].replace(" ", "") for k in dup)
    assert numbers and all(n == 2 for n in numbers.values())
    flagged = [
        d["key"] for d in manifest["defects"] if d["type"] == "possible_duplicate"
    ]
    assert len(flagged) % 2 == 0 and flagged
    # flagged rows migrate, so they keep children; rejected ones have none
    parents = {r["PAADM_PAPMI_DR"] for r in data["PA_Adm"]}
    parents |= {r["APPT_PAPMI_DR"] for r in data["RB_Appointment"]}
    rejected = {
        d["key"]
        for d in manifest["defects"]
        if d["table"] == "PA_PatMas" and d["expected_action"] == "reject"
    }
    assert rejected and not (rejected & parents)
    assert set(flagged) & parents


@pytest.mark.parametrize("seed", [1, 2])
def test_clean_data_has_no_defects(tmp_path: Path, lp, seed: int) -> None:
    m = generate(1500, seed, str(tmp_path))
    assert m.defect_count == 0
    rc = lp.recount(lp.load_sqlite(tmp_path / "legacy_pas.sqlite3"))
    assert rc.anomalies == []
    assert rc.found == set()


def test_recount_holds_over_several_batches_and_another_extract_date(
    tmp_path: Path, lp, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small batches exercise partners and row-id counters across batch edges.
    monkeypatch.setattr("migration.legacypas.core.BATCH_PATIENTS", 250)
    generate(1200, 5, str(tmp_path), defect_rate=0.15, extract_date="2019-04-06")
    manifest = read_manifest(str(tmp_path / "manifest.json"))
    assert manifest["extract_date"] == "2019-04-06"
    data = lp.load_sqlite(tmp_path / "legacy_pas.sqlite3")
    assert data["PAS_Extract"][0]["ExtractDate"] == "2019-04-06"
    rc = lp.recount(data)
    assert rc.anomalies == []
    assert rc.found == lp.manifest_set(manifest)


def test_clean_rows_are_messy_but_not_defective(tmp_path: Path, lp) -> None:
    generate(2000, 3, str(tmp_path))
    data = lp.load_sqlite(tmp_path / "legacy_pas.sqlite3")
    pats = data["PA_PatMas"]
    nhs = [r["PAPMI_NHSNo"] for r in pats]
    assert any(v is None for v in nhs) and any(v == "" for v in nhs)
    assert any(v and " " in v for v in nhs) and any(v and " " not in v for v in nhs)
    assert any(r["PAPMI_Surname"].endswith(" ") for r in pats)
    assert any(r["PAPMI_Surname"].isupper() for r in pats)
    assert any(r["PAPMI_Sex_DR"] != r["PAPMI_Sex_DR"].strip().upper() for r in pats)
    assert any(" " not in r["PAPMI_Postcode"] for r in pats)
    assert any(r["PAPMI_Postcode"].startswith("ZZ99") for r in pats)
    assert any(r["PAPMI_GPPractice"] in ("V81999", "V81998", "V81997") for r in pats)
    deceased = sum(1 for r in pats if r["PAPMI_DeceasedDate"])
    assert 0.005 < deceased / len(pats) < 0.05
    missing_nhs = sum(1 for v in nhs if not v)
    assert 0.01 < missing_nhs / len(pats) < 0.06
    # all date encodings present
    assert isinstance(pats[0]["PAPMI_DOB"], int)
    assert "/" in data["PA_Adm"][0]["PAADM_AdmDate"]
    assert any(r["PAADM_DischDate"] is None for r in data["PA_Adm"])
    assert any(
        r["APPT_Status"].strip().upper() == "BOOKED" for r in data["RB_Appointment"]
    )
    # a local code with no national equivalent is used by clean rows
    assert any(
        (r["PAPMI_Ethnic_DR"] or "").strip().upper() in ("WGRT", "OARB") for r in pats
    )
    # died in hospital: discharge method DIED with the deceased date on discharge
    died = [
        r
        for r in data["PA_Adm"]
        if (r["PAADM_DischMethod"] or "").strip().upper() == "DIED"
    ]
    assert died
    for lp_nhs in (v.replace(" ", "") for v in nhs if v):
        assert lp.nhs_valid(lp_nhs) and len(set(lp_nhs)) > 1
