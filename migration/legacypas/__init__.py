"""Generator of a synthetic legacy (Caché/IRIS, TrakCare-style) PAS source.

Framework-free: stdlib, Faker, numpy, psycopg and PyMySQL only (no Django).
The tables, formats and defect catalogue are specified in docs/legacy-pas.md.
"""

from __future__ import annotations

from .codes import CODE_SYSTEMS, LOCAL_CODES, CodeSystem, LocalCode
from .core import DEFAULT_EXTRACT_DATE, FORMATS, generate
from .defects import DEFECT_SPECS, DefectSpec
from .errors import GeneratorError
from .manifest import DefectEntry, Manifest, read_manifest
from .schema import TABLES, Column, Table

__all__ = [
    "CODE_SYSTEMS",
    "DEFAULT_EXTRACT_DATE",
    "DEFECT_SPECS",
    "FORMATS",
    "LOCAL_CODES",
    "TABLES",
    "CodeSystem",
    "Column",
    "DefectEntry",
    "DefectSpec",
    "GeneratorError",
    "LocalCode",
    "Manifest",
    "Table",
    "generate",
    "read_manifest",
]
