"""Seeded pools of names, streets, towns, postcodes and GP practices.

Faker is slow per call, so each pool is built once per run (a few thousand
calls) and rows then sample from the pools with a fast seeded generator.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from faker import Faker
from faker.providers.person.en_GB import Provider as _GBPerson

# NHS-REFERENCE §12 strict regex, applied after upper-casing and removing spaces.
POSTCODE_RE = re.compile(r"^([A-Z][A-HJ-Y]?[0-9][A-Z0-9]?[0-9][A-Z]{2}|GIR0AA)$")
GP_PRACTICE_RE = re.compile(r"^[A-Z][0-9]{5}$")
GP_DEFAULT_CODES = ("V81999", "V81998", "V81997")
# NHS pseudo-postcodes (NHS-REFERENCE §12): valid in NHS data, used on ~1% of rows.
PSEUDO_POSTCODES = ("ZZ99 3VZ", "ZZ99 3WZ", "ZZ99 3CZ", "ZZ99 3GZ")


def _unique(values: list[str]) -> list[str]:
    # Keep first occurrence, compare case-insensitively: the engine normalises
    # names and postcodes before matching, so pools must be unique that way.
    seen: set[str] = set()
    out: list[str] = []
    for v in values:
        key = v.casefold().replace(" ", "")
        if key not in seen:
            seen.add(key)
            out.append(v)
    return out


@dataclass(frozen=True)
class Pools:
    """Value pools sampled by the generator; identical for identical seeds."""

    surnames: tuple[str, ...]
    forenames_male: tuple[str, ...]
    forenames_female: tuple[str, ...]
    streets: tuple[str, ...]
    towns: tuple[str, ...]
    postcodes: tuple[str, ...]
    gp_practices: tuple[str, ...]


def build_pools(seed: int) -> Pools:
    """Return the pools for ``seed`` (Faker ``en_GB``, seeded)."""
    fake = Faker("en_GB")
    fake.seed_instance(seed)
    surnames = _unique(list(_GBPerson.last_names))
    males = _unique(list(_GBPerson.first_names_male))
    females = _unique(list(_GBPerson.first_names_female))
    streets = _unique([fake.street_name() for _ in range(2500)])
    towns = _unique([fake.city() for _ in range(600)])
    postcodes = _unique(
        [
            p
            for p in (fake.postcode().upper() for _ in range(4000))
            if POSTCODE_RE.match(p.replace(" ", "")) and not p.startswith("ZZ")
        ]
    )
    rnd = random.Random(f"legacypas:{seed}:gp")
    # Letters in use for real practice prefixes; V is left out so the V8199x
    # default codes never appear as ordinary practices.
    letters = "ABCDEFGHJKLMNPY"
    gps = sorted(
        {f"{rnd.choice(letters)}{rnd.randint(81001, 89999):05d}" for _ in range(400)}
    )
    return Pools(
        surnames=tuple(surnames),
        forenames_male=tuple(males),
        forenames_female=tuple(females),
        streets=tuple(streets),
        towns=tuple(towns),
        postcodes=tuple(postcodes),
        gp_practices=tuple(gps),
    )
