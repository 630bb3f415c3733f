"""Deterministic, batched generation of legacy PAS rows and injected defects.

Each batch of ``BATCH_PATIENTS`` patients (with all their spells, ward stays and
appointments) is generated from its own seeded ``random.Random``, so a batch
depends only on (seed, arguments, batch number) and the running row-id counters.
Values that must be unique across the whole table (PAS number, NHS number,
surname + date of birth) come from seeded affine permutations of the patient
row id, so uniqueness needs no global state; pair defects (``nhs_duplicate``,
``possible_duplicate``) pick both rows inside one batch.

Clean-data invariants the defect rules rely on (each is recounted by
tests/legacypas):
- spells of a patient are laid out in disjoint slots with >= 16 days between a
  discharge and the next admission; only the last spell may be open;
- ward stays partition their spell with no shared day (next start = end + 1);
- all activity lies between date of birth and the deceased date (or the day
  before the extract date); a spell discharged "died" ends on the deceased date;
- only ``BOOKED`` appointments lie after the extract date, never on it;
- every overlap defect's partner row is kept clean.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from math import gcd

from .codes import ATTENDED_STATUSES, LOCAL_CODES
from .defects import (
    BAD_DATES,
    BAD_GP_PRACTICES,
    BAD_POSTCODES,
    NON_ATTENDED_PAST,
    SPEC_INDEX,
    UNKNOWN_CLINICS,
    UNKNOWN_CODES,
)
from .pools import GP_DEFAULT_CODES, PSEUDO_POSTCODES, Pools

EPOCH_ORD = date(1840, 12, 31).toordinal()  # $HOROLOG day 0
DOB_FIRST = date(1920, 1, 1).toordinal()
IMPLAUSIBLE_FIRST = date(1841, 1, 1).toordinal()  # $H 1: keeps $H positive
IMPLAUSIBLE_LAST = date(1879, 12, 31).toordinal()
BATCH_PATIENTS = 10_000
MAX_PATIENTS = 10_000_000  # PAS numbers are RXX + 7 digits
GENERATOR_NAME = "pasportal.legacypas/1"
ACTIVITY_YEARS = 10  # spells and appointments lie in the last ten years

_P, _A, _W, _R = "PA_PatMas", "PA_Adm", "PA_WardStay", "RB_Appointment"

Row = tuple[object, ...]


# --- date and number helpers -------------------------------------------------


def horolog(ordinal: int) -> int:
    """Return the Caché $HOROLOG day number of a proleptic ordinal."""
    return ordinal - EPOCH_ORD


def iso(ordinal: int) -> str:
    """Return ``YYYY-MM-DD`` for a proleptic ordinal."""
    d = date.fromordinal(ordinal)
    return f"{d.year:04d}-{d.month:02d}-{d.day:02d}"


def uk(ordinal: int) -> str:
    """Return ``DD/MM/YYYY`` for a proleptic ordinal."""
    d = date.fromordinal(ordinal)
    return f"{d.day:02d}/{d.month:02d}/{d.year:04d}"


def nhs_check_digit(base9: str) -> int | None:
    """Return the Modulus 11 check digit of 9 digits, None when it would be 10."""
    total = sum(int(c) * w for c, w in zip(base9, range(10, 1, -1), strict=True))
    check = 11 - total % 11
    if check == 11:
        return 0
    return None if check == 10 else check


class AffinePermutation:
    """A seeded bijection of ``range(size)``: k -> (a*k + c) mod size."""

    def __init__(self, size: int, rnd: random.Random) -> None:
        self.size = size
        a = rnd.randrange(size // 3, 2 * size // 3) | 1
        while gcd(a, size) != 1:
            a += 2
        self.a = a
        self.c = rnd.randrange(size)

    def __call__(self, k: int) -> int:
        return (self.a * k + self.c) % self.size


def _table(pairs: Sequence[tuple[str, int]]) -> tuple[str, ...]:
    # Weighted choice as a flat table: rnd.choice on it is ~5x faster than
    # rnd.choices(cum_weights=...) and the weights are small integers anyway.
    return tuple(v for v, w in pairs for _ in range(w))


# --- reference data ------------------------------------------------------------

_SPEC_WEIGHTS = {
    "GSURG": 12, "URO": 5, "TRORT": 10, "ENT": 4, "OPHTH": 6, "ORAL": 2,
    "NSURG": 1, "PLAST": 2, "PSURG": 1, "AE": 3, "ANAES": 1, "PAIN": 1,
    "ICU": 1, "GMED": 14, "GASTR": 5, "ENDO": 3, "HAEM": 2, "CARD": 7,
    "PCARD": 1, "STRK": 2, "DERM": 4, "RESP": 5, "INFD": 1,
}  # fmt: skip
_WARD_NAMES = (
    "Ash", "Beech", "Cedar", "Elm", "Hazel", "Holly", "Juniper", "Larch",
    "Maple", "Oak", "Pine", "Rowan", "Willow", "Yew", "Alder", "Birch",
    "Cherry", "Linden", "Poplar", "Sycamore", "Aspen", "Laurel", "Myrtle",
    "Olive", "Redwood", "Spruce", "Walnut", "Hawthorn", "Blackthorn", "Lime",
)  # fmt: skip


@dataclass(frozen=True)
class Reference:
    """Reference tables (CT_*) and lookups the row generator samples from."""

    wards: tuple[Row, ...]
    clinics: tuple[Row, ...]
    care_providers: tuple[Row, ...]
    local_codes: tuple[Row, ...]
    wards_by_spec: dict[str, tuple[str, ...]]
    consultants_by_spec: dict[str, tuple[str, ...]]
    clinic_table: tuple[tuple[str, str], ...]  # weighted (code, specialty)
    ward_codes: tuple[str, ...]


def build_reference(seed: int, pools: Pools) -> Reference:
    """Return the CT_* reference rows for ``seed``."""
    rnd = random.Random(f"legacypas:{seed}:reference")
    spec_desc = {c.code: c.desc for c in LOCAL_CODES if c.table == "SPEC"}
    wards: list[Row] = []
    wards_by_spec: dict[str, list[str]] = {}
    names = iter(_WARD_NAMES * 3)
    for spec in _SPEC_WEIGHTS:
        for j in range(1 + (_SPEC_WEIGHTS[spec] >= 5)):
            code = f"W{spec}{j + 1}"
            wards.append((code, f"{next(names)} Ward ({spec_desc[spec]})", spec))
            wards_by_spec.setdefault(spec, []).append(code)
    clinics: list[Row] = []
    clinic_table: list[tuple[str, str]] = []
    for spec in [*_SPEC_WEIGHTS, "PHLEB"]:
        weight = _SPEC_WEIGHTS.get(spec, 2)
        for j in range(1 + (weight >= 5) + (weight >= 10)):
            code = f"C{spec}{j + 1:02d}"
            clinics.append((code, f"{spec_desc[spec]} Clinic {j + 1}", spec))
            clinic_table.extend([(code, spec)] * weight)
    providers: list[Row] = []
    by_spec: dict[str, list[str]] = {}
    gmcs = rnd.sample(range(1_000_000, 9_999_999), 3 * len(_SPEC_WEIGHTS))
    n = 0
    for spec in _SPEC_WEIGHTS:
        for _ in range(3):
            code = f"CP{n + 1:04d}"
            initial = rnd.choice("ABCDEFGHJKLMNPRSTW")
            name = f"Dr {initial} {rnd.choice(pools.surnames)}"
            providers.append((code, name, f"C{gmcs[n]:07d}"))
            by_spec.setdefault(spec, []).append(code)
            n += 1
    local = tuple((c.table, c.code, c.desc) for c in LOCAL_CODES)
    return Reference(
        wards=tuple(wards),
        clinics=tuple(clinics),
        care_providers=tuple(providers),
        local_codes=local,
        wards_by_spec={k: tuple(v) for k, v in wards_by_spec.items()},
        consultants_by_spec={k: tuple(v) for k, v in by_spec.items()},
        clinic_table=tuple(clinic_table),
        ward_codes=tuple(str(w[0]) for w in wards),
    )


# --- weighted code tables for clean rows ----------------------------------------

_SEX = _table([("M", 490), ("F", 495), ("U", 10), ("I", 5)])
_ETHNIC = _table(
    [("WBRI", 700), ("WIRI", 20), ("WOTH", 50), ("MWBC", 10), ("MWBA", 5),
     ("MWAS", 8), ("MOTH", 7), ("AIND", 30), ("APKN", 25), ("ABAN", 10),
     ("AOTH", 10), ("BCRB", 15), ("BAFR", 20), ("BOTH", 5), ("OCHI", 8),
     ("OOTH", 10), ("NSTAT", 40), ("NK", 20), ("WGRT", 4), ("OARB", 3)]
)  # fmt: skip
_ADMMETH = _table(
    [("WL", 30), ("BK", 12), ("PL", 6), ("AE", 30), ("GP", 8), ("BB", 1),
     ("OPC", 3), ("CRT", 1), ("AEO", 1), ("ETRF", 1), ("EOTH", 2), ("MANT", 1),
     ("MPOST", 1), ("TRF", 1), ("VWARD", 1)]
)  # fmt: skip
_ADMSRC = _table(
    [("HOME", 900), ("TEMP", 10), ("PENAL", 3), ("NHSGEN", 30), ("NHSMH", 3),
     ("NHSCH", 5), ("LARES", 10), ("CAREH", 25), ("PRIVH", 4), ("HOSPC", 2),
     ("NK", 8)]
)  # fmt: skip
_DISMETH = _table(
    [("CLIN", 950), ("SELF", 25), ("REL", 8), ("MHRT", 3), ("NK", 10), ("ABSC", 4)]
)
_DISDEST = _table(
    [("HOME", 880), ("TEMP", 10), ("NHSGEN", 30), ("NHSMH", 4), ("NHSCH", 6),
     ("LARES", 15), ("CAREH", 35), ("PRIVH", 4), ("HOSPC", 6), ("NK", 10)]
)  # fmt: skip
_SPEC = _table(list(_SPEC_WEIGHTS.items()))
_NHSSTAT = _table([("V", 88), ("N", 8), ("R", 4)])
_PAST_STATUS = _table(
    [("ATT", 72), ("LATE", 5), ("LATENS", 2), ("DNA", 9), ("PCAN", 7), ("HCAN", 5)]
)
_OUTCOME = _table([("FUAPP", 50), ("DISC", 35), ("FULATER", 13), ("ADMIT", 2)])
_NATIONAL_OUTCOMES = ("FUAPP", "DISC", "FULATER")
_PRIORITY = _table([("RTN", 75), ("URG", 18), ("2WW", 6), ("SOON", 1)])
_SPELL_COUNT = (0,) * 55 + (1,) * 30 + (2,) * 10 + (3,) * 4 + (4,)
_STAY_COUNT = (1,) * 50 + (2,) * 35 + (3,) * 15
_APPT_COUNT = (0,) * 15 + (1,) * 25 + (2,) * 25 + (3,) * 18 + (4,) * 10 + (5,) * 5
_APPT_COUNT += (6,) * 2
_LOS = (0,) * 30 + (1,) * 15 + (2,) * 13 + (3,) * 12 + (5,) * 10 + (8,) * 8
_LOS += (12,) * 6 + (20,) * 4 + (35,) * 2
_TITLES = {
    "M": ("Mr",) * 9 + ("Dr",),
    "F": ("Mrs",) * 5 + ("Ms",) * 3 + ("Miss",) + ("Dr",),
    "U": ("Mx",),
    "I": ("Mx",),
}


# --- row objects -------------------------------------------------------------------


class _Pat:
    __slots__ = (
        "addr1",
        "addr2",
        "city",
        "deceased",
        "deceased_text",
        "defect",
        "dies",
        "dob",
        "ethnic",
        "fixed_life",
        "forename",
        "gp",
        "nhs",
        "nhs_status",
        "no",
        "pid",
        "postcode",
        "reject",
        "sex",
        "surname",
        "title",
    )  # fmt: skip


class _Spell:
    __slots__ = (
        "adm",
        "cons",
        "ddest",
        "defect",
        "died",
        "disch",
        "dmeth",
        "fk",
        "last",
        "meth",
        "open",
        "pat",
        "prev",
        "protected",
        "sid",
        "spec",
        "src",
    )  # fmt: skip


class _Stay:
    __slots__ = ("defect", "end", "prev", "protected", "spell", "start", "ward", "wid")


class _Appt:
    __slots__ = (
        "aid",
        "clinic",
        "day",
        "defect",
        "fk",
        "minute",
        "outcome",
        "pat",
        "priority",
        "spec",
        "status",
    )  # fmt: skip


@dataclass
class BatchResult:
    """Rows of one batch per table, the defects injected, and next row ids."""

    rows: dict[str, list[Row]]
    defects: list[tuple[int, int]]  # (index into DEFECT_SPECS, source key)
    next_spell: int
    next_stay: int
    next_appt: int


@dataclass
class Context:
    """Everything a batch needs; built once per run."""

    seed: int
    patients: int
    defect_rate: float
    extract: int  # extract date as a proleptic ordinal
    pools: Pools
    ref: Reference
    dob_days: int = field(init=False)
    perm_name_dob: AffinePermutation = field(init=False)
    perm_pas_no: AffinePermutation = field(init=False)
    perm_nhs: AffinePermutation = field(init=False)

    def __post_init__(self) -> None:
        rnd = random.Random(f"legacypas:{self.seed}:permutations")
        # Clean dates of birth run from 1920-01-01 to the day before the extract.
        self.dob_days = self.extract - DOB_FIRST
        space = len(self.pools.surnames) * self.dob_days
        if self.dob_days < 3650 or space < self.patients:
            raise ValueError("extract date too early for this many patients")
        self.perm_name_dob = AffinePermutation(space, rnd)
        self.perm_pas_no = AffinePermutation(10_000_000, rnd)
        # NHS numbers from the England/Wales ranges 400-499 m and 600-799 m:
        # 30 M eight-digit prefixes, one per patient.
        self.perm_nhs = AffinePermutation(30_000_000, rnd)


def nhs_number_for(ctx: Context, k: int) -> str:
    """Return the unique valid, non-repdigit NHS number of patient index ``k``."""
    # A unique eight-digit prefix per patient (k < MAX_PATIENTS < 30 M), then
    # a ninth digit: the ten stems of a prefix differ only in the weight-2
    # digit, so at most one has check digit 10 and at most one is a repdigit.
    j = ctx.perm_nhs(k)
    prefix = 40_000_000 + j if j < 10_000_000 else 60_000_000 + (j - 10_000_000)
    r = (7 * k + ctx.seed) % 10
    for step in range(10):
        stem = f"{prefix:08d}{(r + step) % 10}"
        check = nhs_check_digit(stem)
        if check is not None:
            number = f"{stem}{check}"
            if number != number[0] * 10:
                return number
    raise AssertionError("unreachable: a prefix has at most one bad stem")


# --- batch generation ------------------------------------------------------------


class _BatchBuilder:
    def __init__(
        self,
        ctx: Context,
        batch: int,
        first_pid: int,
        count: int,
        next_spell: int,
        next_stay: int,
        next_appt: int,
    ) -> None:
        self.ctx = ctx
        self.rnd = random.Random(f"legacypas:{ctx.seed}:batch:{batch}")
        self.first_pid = first_pid
        self.count = count
        self.next_spell = next_spell
        self.next_stay = next_stay
        self.next_appt = next_appt
        self.defects: list[tuple[int, int]] = []

    # messiness helpers (never a defect on their own)
    def ne(self) -> str | None:
        return None if self.rnd.random() < 0.5 else ""

    def name(self, value: str) -> str:
        r = self.rnd.random()
        if r < 0.10:
            value = value.upper()
        elif r < 0.12:
            value = value.lower()
        if self.rnd.random() < 0.03:
            value += " "
        return value

    def code(self, value: str) -> str:
        r = self.rnd.random()
        if r < 0.02:
            return value.lower()
        if r < 0.05:
            return value + " "
        return value

    def postcode(self, value: str) -> str:
        r = self.rnd.random()
        if r < 0.10:
            return value.replace(" ", "")
        if r < 0.13:
            return value.lower()
        if r < 0.16:
            return value + " "
        return value

    def defect(self, table: str, type_: str, column: str, key: int) -> None:
        self.defects.append((SPEC_INDEX[(table, type_, column)], key))

    def n_defects(self, rows: int) -> int:
        rate = self.ctx.defect_rate
        if rate <= 0:
            return 0
        return sum(1 for _ in range(rows) if self.rnd.random() < rate)

    # patients --------------------------------------------------------------
    def patients(self) -> list[_Pat]:
        ctx, rnd, pools = self.ctx, self.rnd, self.ctx.pools
        out: list[_Pat] = []
        for i in range(self.count):
            pid = self.first_pid + i
            k = pid - 1
            p = _Pat()
            p.pid = pid
            p.no = f"RXX{ctx.perm_pas_no(k):07d}"
            v = ctx.perm_name_dob(k)
            p.surname = self.name(pools.surnames[v // ctx.dob_days])
            p.dob = DOB_FIRST + v % ctx.dob_days
            p.sex = rnd.choice(_SEX)
            pool = pools.forenames_male if p.sex == "M" else pools.forenames_female
            if p.sex in ("U", "I") and rnd.random() < 0.5:
                pool = pools.forenames_male
            p.forename = self.name(rnd.choice(pool))
            p.title = self.ne() if rnd.random() < 0.08 else rnd.choice(_TITLES[p.sex])
            if rnd.random() < 0.03:
                p.nhs, p.nhs_status = self.ne(), "X"
            else:
                p.nhs = nhs_number_for(ctx, k)
                if rnd.random() < 0.25:
                    p.nhs = f"{p.nhs[:3]} {p.nhs[3:6]} {p.nhs[6:]}"
                p.nhs_status = rnd.choice(_NHSSTAT)
            p.ethnic = self.ne() if rnd.random() < 0.04 else rnd.choice(_ETHNIC)
            p.addr1 = f"{rnd.randint(1, 240)} {rnd.choice(pools.streets)}"
            p.addr2 = rnd.choice(pools.towns) if rnd.random() < 0.3 else self.ne()
            p.city = rnd.choice(pools.towns)
            if rnd.random() < 0.01:
                p.postcode = rnd.choice(PSEUDO_POSTCODES)
            else:
                p.postcode = self.postcode(rnd.choice(pools.postcodes))
            r = rnd.random()
            if r < 0.03:
                p.gp = self.ne()
            elif r < 0.05:
                p.gp = rnd.choice(GP_DEFAULT_CODES)
            else:
                p.gp = rnd.choice(pools.gp_practices)
            p.dies = rnd.random() < 0.02
            p.deceased = None
            p.deceased_text = None
            p.defect = None
            p.reject = False
            p.fixed_life = False
            out.append(p)
        return out

    def patient_defects(self, pats: list[_Pat]) -> None:
        ctx, rnd = self.ctx, self.rnd
        wanted = self.n_defects(len(pats))
        order = list(range(len(pats)))
        rnd.shuffle(order)
        free = iter(order)
        kinds = [
            ("nhs_check_digit", "PAPMI_NHSNo"),
            ("nhs_repdigit", "PAPMI_NHSNo"),
            ("nhs_duplicate", "PAPMI_NHSNo"),
            ("dob_future", "PAPMI_DOB"),
            ("dob_implausible", "PAPMI_DOB"),
            ("death_before_birth", "PAPMI_DeceasedDate"),
            ("bad_date", "PAPMI_DeceasedDate"),
            ("bad_postcode", "PAPMI_Postcode"),
            ("bad_gp_practice", "PAPMI_GPPractice"),
            ("unknown_local_code", "PAPMI_Sex_DR"),
            ("unknown_local_code", "PAPMI_Ethnic_DR"),
            ("possible_duplicate", "PAPMI_No"),
        ]
        done = 0
        for idx in free:
            if done >= wanted:
                break
            p = pats[idx]
            type_, column = rnd.choice(kinds)
            if type_ in ("nhs_duplicate", "possible_duplicate"):
                partner_idx = next(free, None)
                if partner_idx is None:
                    type_, column = "bad_postcode", "PAPMI_Postcode"
                else:
                    q = pats[partner_idx]
                    self._pair_defect(type_, p, q)
                    done += 2
                    continue
            done += 1
            p.defect = type_
            p.reject = True
            self.defect(_P, type_, column, p.pid)
            if type_ == "nhs_check_digit":
                digits = nhs_number_for(ctx, p.pid - 1)
                wrong = (int(digits[9]) + rnd.randint(1, 9)) % 10
                p.nhs, p.nhs_status = f"{digits[:9]}{wrong}", "N"
            elif type_ == "nhs_repdigit":
                p.nhs, p.nhs_status = str(rnd.randint(0, 9)) * 10, "N"
            elif type_ == "dob_future":
                p.dob = ctx.extract + 1 + (p.dob - DOB_FIRST)
                p.fixed_life = True
            elif type_ == "dob_implausible":
                span = IMPLAUSIBLE_LAST - IMPLAUSIBLE_FIRST + 1
                p.dob = IMPLAUSIBLE_FIRST + (p.dob - DOB_FIRST) % span
                p.fixed_life = True
            elif type_ == "death_before_birth":
                p.deceased_text = iso(p.dob - rnd.randint(1, 3650))
                p.fixed_life = True
            elif type_ == "bad_date":
                p.deceased_text = rnd.choice(BAD_DATES)
                p.fixed_life = True
            elif type_ == "bad_postcode":
                p.postcode = rnd.choice(BAD_POSTCODES)
            elif type_ == "bad_gp_practice":
                p.gp = rnd.choice(BAD_GP_PRACTICES)
            elif column == "PAPMI_Sex_DR":
                p.sex = rnd.choice(UNKNOWN_CODES["SEX"])
            else:
                p.ethnic = rnd.choice(UNKNOWN_CODES["ETHNIC"])

    def _pair_defect(self, type_: str, p: _Pat, q: _Pat) -> None:
        if type_ == "nhs_duplicate":
            for x in (p, q):
                if x.nhs_status == "X":
                    x.nhs, x.nhs_status = nhs_number_for(self.ctx, x.pid - 1), "V"
            q.nhs = p.nhs
            for x in (p, q):
                x.defect, x.reject = type_, True
                self.defect(_P, type_, "PAPMI_NHSNo", x.pid)
        else:
            # Same person registered twice: both rows stay clean and migrate
            # (action flag), so they keep their children.
            q.surname, q.forename, q.dob = p.surname, p.forename, p.dob
            q.postcode, q.sex, q.title = p.postcode, p.sex, p.title
            for x in (p, q):
                x.defect = type_
                self.defect(_P, type_, "PAPMI_No", x.pid)

    def deaths(self, pats: list[_Pat]) -> None:
        last = self.ctx.extract - 1
        for p in pats:
            if p.dies and not p.fixed_life:
                span = min(last - p.dob, 3650)
                p.deceased = last - self.rnd.randint(0, span)

    # spells ----------------------------------------------------------------
    def spells(self, pats: list[_Pat]) -> list[_Spell]:
        ctx, rnd = self.ctx, self.rnd
        out: list[_Spell] = []
        for p in pats:
            if p.reject:
                continue
            n = rnd.choice(_SPELL_COUNT)
            if not n:
                continue
            start = max(p.dob, ctx.extract - 365 * ACTIVITY_YEARS)
            end = p.deceased if p.deceased is not None else ctx.extract - 1
            width = end - start + 1
            n = min(n, width // 30)
            if n <= 0:
                continue
            slot = width // n
            prev: _Spell | None = None
            for i in range(n):
                a = start + i * slot
                b = end if i == n - 1 else a + slot - 1
                length = b - a + 1
                s = _Spell()
                s.sid = self.next_spell
                self.next_spell += 1
                s.pat, s.fk, s.prev, s.last = p, p.pid, prev, i == n - 1
                s.defect, s.protected = None, False
                s.died = s.last and p.deceased is not None and rnd.random() < 0.4
                s.open = s.last and p.deceased is None and rnd.random() < 0.04
                if s.died:
                    los = min(rnd.choice(_LOS), length - 9)
                    s.disch = b  # died on the deceased date
                    s.adm = b - los
                elif s.open:
                    s.adm = max(a + 8, b - rnd.randint(0, 20))
                    s.disch = None
                else:
                    los = min(rnd.choice(_LOS), length - 17)
                    s.adm = a + 8 + rnd.randint(0, length - 17 - los)
                    s.disch = s.adm + los
                s.spec = rnd.choice(_SPEC)
                s.cons = rnd.choice(ctx.ref.consultants_by_spec[s.spec])
                s.meth = rnd.choice(_ADMMETH)
                s.src = rnd.choice(_ADMSRC)
                if s.died:
                    s.dmeth, s.ddest = "DIED", "DIED"
                elif s.open:
                    s.dmeth, s.ddest = None, None
                else:
                    s.dmeth, s.ddest = rnd.choice(_DISMETH), rnd.choice(_DISDEST)
                out.append(s)
                prev = s
        return out

    def spell_defects(self, spells: list[_Spell]) -> None:
        rnd = self.rnd
        wanted = self.n_defects(len(spells))
        order = list(range(len(spells)))
        rnd.shuffle(order)
        done = 0
        for idx in order:
            if done >= wanted:
                break
            s = spells[idx]
            if s.protected:
                continue
            closed = s.disch is not None and not s.died
            p = s.prev
            kinds = ["orphan_patient", "unknown_local_code"]
            if closed:
                kinds.append("discharge_before_admission")
                if s.pat.deceased is None:
                    kinds.append("death_not_recorded")
                if p is not None and p.defect is None and p.disch - p.adm >= 2:
                    kinds.append("spell_overlap")
            # Overlap needs a suitable earlier spell, which few rows have:
            # prefer it when possible so every type shows up at small N.
            if kinds[-1] == "spell_overlap" and rnd.random() < 0.5:
                type_ = "spell_overlap"
            else:
                type_ = rnd.choice(kinds)
            column = {
                "orphan_patient": "PAADM_PAPMI_DR",
                "unknown_local_code": "PAADM_AdmMethod",
                "discharge_before_admission": "PAADM_DischDate",
                "death_not_recorded": "PAADM_DischMethod",
                "spell_overlap": "PAADM_AdmDate",
            }[type_]
            s.defect = type_
            done += 1
            self.defect(_A, type_, column, s.sid)
            if type_ == "orphan_patient":
                s.fk = self.ctx.patients + s.sid  # no such patient
            elif type_ == "unknown_local_code":
                s.meth = rnd.choice(UNKNOWN_CODES["ADMMETH"])
            elif type_ == "discharge_before_admission":
                s.disch = s.adm - rnd.randint(1, 3)
            elif type_ == "death_not_recorded":
                s.dmeth, s.ddest = "DIED", "DIED"
            else:
                assert p is not None and p.disch is not None
                los = s.disch - s.adm
                s.adm = p.adm + 1
                s.disch = min(p.disch, s.adm + los)
                p.protected = True  # the earlier spell must stay clean

    # ward stays ----------------------------------------------------------------
    def stays(self, spells: list[_Spell]) -> list[_Stay]:
        rnd, ref, extract = self.rnd, self.ctx.ref, self.ctx.extract
        out: list[_Stay] = []
        for s in spells:
            if s.defect is not None:
                continue  # a rejected spell has no ward stays
            last_day = s.disch if s.disch is not None else extract
            # k stays need k-1 cut days in [adm, last_day - 1]
            k = min(rnd.choice(_STAY_COUNT), last_day - s.adm + 1)
            cuts = sorted(rnd.sample(range(s.adm, last_day), k - 1))
            wards = ref.wards_by_spec[s.spec]
            start = s.adm
            prev: _Stay | None = None
            for i in range(k):
                w = _Stay()
                w.wid = self.next_stay
                self.next_stay += 1
                w.spell, w.prev, w.defect, w.protected = s, prev, None, False
                w.start = start
                w.end = cuts[i] if i < k - 1 else s.disch  # None: still on ward
                w.ward = rnd.choice(wards if rnd.random() < 0.8 else ref.ward_codes)
                if w.end is not None:
                    start = w.end + 1
                out.append(w)
                prev = w
        return out

    def stay_defects(self, stays: list[_Stay]) -> None:
        rnd = self.rnd
        wanted = self.n_defects(len(stays))
        order = list(range(len(stays)))
        rnd.shuffle(order)
        done = 0
        for idx in order:
            if done >= wanted:
                break
            w = stays[idx]
            if w.protected:
                continue
            p = w.prev
            if p is None:
                # Most stays are first stays; skip some so overlaps (which need
                # a second stay) get a fair share.
                if rnd.random() < 0.6:
                    continue
                type_ = "ward_stay_outside_spell"
                w.start = w.spell.adm - rnd.randint(1, 3)
            elif p.defect is None and p.end is not None and p.end - p.start >= 2:
                type_ = "ward_stay_overlap"
                w.start = p.start + 1
                p.protected = True
            else:
                continue
            w.defect = type_
            done += 1
            self.defect(_W, type_, "WS_StartDate", w.wid)

    # appointments --------------------------------------------------------------
    def appointments(self, pats: list[_Pat]) -> list[_Appt]:
        ctx, rnd = self.ctx, self.rnd
        out: list[_Appt] = []
        for p in pats:
            if p.reject:
                continue
            n = rnd.choice(_APPT_COUNT)
            if not n:
                continue
            start = max(p.dob, ctx.extract - 365 * ACTIVITY_YEARS)
            end = p.deceased if p.deceased is not None else ctx.extract - 1
            days = []
            for _ in range(n):
                if end < start:
                    continue  # died just before the activity window opens
                if p.deceased is None and rnd.random() < 0.12:
                    days.append(ctx.extract + rnd.randint(1, 180))
                else:
                    days.append(start + rnd.randrange(end - start + 1))
            for day in sorted(days):
                a = _Appt()
                a.aid = self.next_appt
                self.next_appt += 1
                a.pat, a.fk, a.day, a.defect = p, p.pid, day, None
                a.minute = 8 * 60 + 15 * rnd.randrange(36)
                a.clinic, a.spec = rnd.choice(ctx.ref.clinic_table)
                a.priority = rnd.choice(_PRIORITY)
                if day > ctx.extract:
                    a.status, a.outcome = "BOOKED", None
                else:
                    a.status = rnd.choice(_PAST_STATUS)
                    attended = a.status in ATTENDED_STATUSES
                    a.outcome = rnd.choice(_OUTCOME) if attended else None
                out.append(a)
        return out

    def appointment_defects(self, appts: list[_Appt]) -> None:
        rnd, extract = self.rnd, self.ctx.extract
        wanted = self.n_defects(len(appts))
        order = list(range(len(appts)))
        rnd.shuffle(order)
        for idx in order[:wanted]:
            a = appts[idx]
            kinds = ["orphan_patient", "unknown_clinic"]
            if a.day < extract:
                kinds.append("outcome_without_attendance")
            if a.pat.deceased is None:
                kinds.append("future_attended")
            type_ = rnd.choice(kinds)
            column = {
                "orphan_patient": "APPT_PAPMI_DR",
                "unknown_clinic": "APPT_Clinic_DR",
                "outcome_without_attendance": "APPT_Outcome",
                "future_attended": "APPT_DateTime",
            }[type_]
            a.defect = type_
            self.defect(_R, type_, column, a.aid)
            if type_ == "orphan_patient":
                a.fk = self.ctx.patients + a.aid  # no such patient
            elif type_ == "unknown_clinic":
                a.clinic = rnd.choice(UNKNOWN_CLINICS)
            elif type_ == "outcome_without_attendance":
                a.status = rnd.choice(NON_ATTENDED_PAST)
                a.outcome = rnd.choice(_NATIONAL_OUTCOMES)
            else:
                a.day = extract + rnd.randint(1, 120)
                a.status = "ATT"
                a.outcome = rnd.choice(_NATIONAL_OUTCOMES)

    # rendering -------------------------------------------------------------------
    def render(
        self,
        pats: list[_Pat],
        spells: list[_Spell],
        stays: list[_Stay],
        appts: list[_Appt],
    ) -> dict[str, list[Row]]:
        code, ne = self.code, self.ne
        pat_rows: list[Row] = []
        for p in pats:
            if p.deceased_text is not None:
                deceased: str | None = p.deceased_text
            elif p.deceased is not None:
                deceased = iso(p.deceased)
            else:
                deceased = ne()
            ethnic = p.ethnic if not p.ethnic else code(p.ethnic)
            pat_rows.append(
                (p.pid, p.no, p.nhs, code(p.nhs_status), p.title, p.surname,
                 p.forename, horolog(p.dob), code(p.sex), ethnic, p.addr1, p.addr2,
                 p.city, p.postcode, p.gp, deceased)
            )  # fmt: skip
        spell_rows: list[Row] = []
        for s in spells:
            disch = horolog(s.disch) if s.disch is not None else None
            spell_rows.append(
                (s.sid, f"IP{s.sid + 10_000_000:08d}", s.fk, uk(s.adm), code(s.meth),
                 code(s.src), disch, code(s.dmeth) if s.dmeth else ne(),
                 code(s.ddest) if s.ddest else ne(), code(s.spec), s.cons)
            )  # fmt: skip
        stay_rows: list[Row] = [
            (w.wid, w.spell.sid, w.ward, iso(w.start),
             iso(w.end) if w.end is not None else ne())
            for w in stays
        ]  # fmt: skip
        appt_rows: list[Row] = []
        for a in appts:
            when = f"{iso(a.day)} {a.minute // 60:02d}:{a.minute % 60:02d}:00"
            appt_rows.append(
                (a.aid, a.fk, a.clinic, when, code(a.status),
                 code(a.outcome) if a.outcome else ne(), code(a.priority),
                 code(a.spec))
            )  # fmt: skip
        return {_P: pat_rows, _A: spell_rows, _W: stay_rows, _R: appt_rows}


def generate_batch(
    ctx: Context,
    batch: int,
    first_pid: int,
    count: int,
    next_spell: int,
    next_stay: int,
    next_appt: int,
) -> BatchResult:
    """Return the rows and defects of patients first_pid..first_pid+count-1."""
    b = _BatchBuilder(ctx, batch, first_pid, count, next_spell, next_stay, next_appt)
    pats = b.patients()
    b.patient_defects(pats)
    b.deaths(pats)
    spells = b.spells(pats)
    b.spell_defects(spells)
    stays = b.stays(spells)
    b.stay_defects(stays)
    appts = b.appointments(pats)
    b.appointment_defects(appts)
    rows = b.render(pats, spells, stays, appts)
    return BatchResult(rows, b.defects, b.next_spell, b.next_stay, b.next_appt)


def reference_rows(ctx: Context) -> dict[str, list[Row]]:
    """Return the rows of the reference tables and PAS_Extract."""
    return {
        "CT_LocalCode": list(ctx.ref.local_codes),
        "CT_Ward": list(ctx.ref.wards),
        "CT_Clinic": list(ctx.ref.clinics),
        "CT_CareProv": list(ctx.ref.care_providers),
        "PAS_Extract": [(iso(ctx.extract), ctx.seed, GENERATOR_NAME)],
    }
