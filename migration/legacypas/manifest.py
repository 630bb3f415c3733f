"""The generator's manifest: what was written and which rows carry which defect."""

from __future__ import annotations

import json
import os
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from .defects import DEFECT_SPECS
from .schema import TABLES


class DefectEntry(NamedTuple):
    """One manifest defect: the row (table + source key) and what must happen."""

    table: str
    key: int
    column: str
    type: str
    expected_reason: str
    expected_action: str

    def as_dict(self) -> dict[str, Any]:
        """Return the entry as the manifest's JSON object."""
        return self._asdict()


_TABLE_ORDER = {t.name: i for i, t in enumerate(TABLES)}


@dataclass
class Manifest:
    """Result of a generator run; ``defects`` is materialised on demand.

    Defects are kept as two compact integer arrays (spec index, key) so a
    million-patient run with a high defect rate stays small in memory.
    """

    seed: int
    patients: int
    defect_rate: float
    extract_date: str
    format: str
    tables: dict[str, int]
    path: str | None = None
    target: str | None = None  # file, directory, schema or database written
    seconds: float = 0.0
    _kinds: array[int] = field(default_factory=lambda: array("b"), repr=False)
    _keys: array[int] = field(default_factory=lambda: array("q"), repr=False)

    def add_defects(self, defects: list[tuple[int, int]]) -> None:
        """Append (DEFECT_SPECS index, key) pairs."""
        for kind, key in defects:
            self._kinds.append(kind)
            self._keys.append(key)

    def _order(self) -> np.ndarray[Any, np.dtype[np.int64]]:
        # Table order of the schema, then key: stable and easy to diff. numpy
        # keeps the sort compact (a key-tuple sort of 2M entries needs ~300 MB).
        if not self._kinds:
            return np.zeros(0, dtype=np.int64)
        kinds = np.frombuffer(self._kinds, dtype=np.int8)
        keys = np.frombuffer(self._keys, dtype=np.int64)
        table_rank = np.array(
            [_TABLE_ORDER[s.table] for s in DEFECT_SPECS], dtype=np.int64
        )[kinds]
        return np.lexsort((keys, table_rank))

    def iter_defects(self) -> list[DefectEntry]:
        """Return every defect entry, ordered by table then key."""
        out = []
        for i in self._order():
            s = DEFECT_SPECS[self._kinds[i]]
            out.append(
                DefectEntry(
                    s.table, self._keys[i], s.column, s.type, s.reason, s.action
                )
            )
        return out

    @property
    def defects(self) -> list[DefectEntry]:
        """Return every defect entry, ordered by table then key."""
        return self.iter_defects()

    @property
    def defect_count(self) -> int:
        """Return the number of defect entries."""
        return len(self._kinds)

    def defect_counts(self) -> Counter[tuple[str, str]]:
        """Return the number of defects per (table, type)."""
        return Counter(
            (DEFECT_SPECS[k].table, DEFECT_SPECS[k].type) for k in self._kinds
        )

    def header(self) -> dict[str, Any]:
        """Return the manifest's JSON fields other than ``defects``."""
        return {
            "seed": self.seed,
            "patients": self.patients,
            "defect_rate": self.defect_rate,
            "extract_date": self.extract_date,
            "format": self.format,
            "tables": self.tables,
        }

    def write(self, path: str) -> None:
        """Write manifest.json atomically (temporary name, then rename)."""
        tmp = f"{path}.tmp-{os.getpid()}"
        try:
            with open(tmp, "w", encoding="utf-8", newline="\n") as f:
                head = json.dumps(self.header(), indent=2)
                # Stream the defects one per line instead of building one big
                # string: the list can hold hundreds of thousands of entries.
                f.write(head[:-2] + ',\n  "defects": [')
                kinds, keys = self._kinds, self._keys
                for n, i in enumerate(self._order()):
                    s = DEFECT_SPECS[kinds[i]]
                    entry: dict[str, Any] = {
                        "table": s.table,
                        "key": keys[i],
                        "column": s.column,
                        "type": s.type,
                        "expected_reason": s.reason,
                        "expected_action": s.action,
                    }
                    f.write(("\n    " if n == 0 else ",\n    ") + json.dumps(entry))
                f.write("\n  ]\n}\n" if len(kinds) else "]\n}\n")
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        self.path = path


def read_manifest(path: str) -> dict[str, Any]:
    """Return a manifest.json file as a dict (``json.load``)."""
    with open(path, encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data
