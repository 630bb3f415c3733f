"""``json`` kind: one table per file -- ``<table>.json`` holding an array of
objects, or ``<table>.jsonl`` / ``<table>.ndjson`` holding JSON Lines.

Both are parsed incrementally (a JSON array is split object by object with
``JSONDecoder.raw_decode``), so memory is bounded by the batch, not the file.
Columns are the union of the keys in order of first appearance; a missing key
is NULL, ``""`` stays the empty string. Malformed JSON raises TerminalError
with the file name and line number.

Framework-free: no Django import.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from connectors.kinds import register
from connectors.kinds.files import FileConfig, FileSource

__all__ = ["JsonConfig", "JsonSource"]

_WS = " \t\r\n"
_MAX_RECORD = 64 << 20  # one object larger than this is refused, not buffered


class JsonConfig(FileConfig):
    """Config of a JSON / JSON Lines extract."""


class JsonSource(FileSource):
    """Read-only source over JSON array or JSON Lines files."""

    kind = "json"
    extensions = (".json", ".jsonl", ".ndjson")

    def __init__(self, config: JsonConfig, **kw: Any) -> None:
        super().__init__(config, **kw)
        self.config: JsonConfig = config

    def _objects(self, path: Path) -> Iterator[dict[str, Any]]:
        if path.suffix.lower() in (".jsonl", ".ndjson"):
            yield from self._lines(path)
        else:
            yield from self._array(path)

    def _lines(self, path: Path) -> Iterator[dict[str, Any]]:
        with open(path, encoding=self.config.encoding) as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise self._err(
                        f"{path.name} line {lineno}: malformed JSON ({exc.msg})"
                    ) from None
                if not isinstance(obj, dict):
                    raise self._err(f"{path.name} line {lineno}: expected an object")
                yield obj

    def _array(self, path: Path) -> Iterator[dict[str, Any]]:
        decoder = json.JSONDecoder()
        with open(path, encoding=self.config.encoding) as fh:
            buf = ""
            pos = 0
            line = 1  # line number at buf[0]
            eof = False

            def more() -> bool:
                nonlocal buf, pos, line, eof
                data = fh.read(1 << 20)
                if not data:
                    eof = True
                    return False
                line += buf.count("\n", 0, pos)
                buf = buf[pos:] + data
                pos = 0
                return True

            def skip_ws() -> None:
                nonlocal pos
                while True:
                    while pos < len(buf) and buf[pos] in _WS:
                        pos += 1
                    if pos < len(buf) or not more():
                        return

            def where(at: int) -> int:
                return line + buf.count("\n", 0, at)

            skip_ws()
            if pos >= len(buf) or buf[pos] != "[":
                raise self._err(f"{path.name} line {where(pos)}: expected a JSON array")
            pos += 1
            first = True
            while True:
                skip_ws()
                if pos >= len(buf):
                    raise self._err(f"{path.name}: unexpected end of file (missing ])")
                if buf[pos] == "]":
                    return
                if not first:
                    if buf[pos] != ",":
                        raise self._err(
                            f"{path.name} line {where(pos)}: malformed JSON "
                            "(expected , or ])"
                        )
                    pos += 1
                    skip_ws()
                first = False
                while True:
                    try:
                        obj, end = decoder.raw_decode(buf, pos)
                        break
                    except json.JSONDecodeError as exc:
                        # Maybe the object continues in the next block.
                        if len(buf) - pos > _MAX_RECORD or not more():
                            raise self._err(
                                f"{path.name} line {where(exc.pos)}: malformed JSON "
                                f"({exc.msg})"
                            ) from None
                if not isinstance(obj, dict):
                    raise self._err(
                        f"{path.name} line {where(pos)}: expected an object"
                    )
                pos = end
                yield obj

    def _records(
        self, path: Path, batch: int
    ) -> Iterator[tuple[list[str], list[list[Any]]]]:
        names: list[str] = []
        index: dict[str, int] = {}
        rows: list[dict[str, Any]] = []
        for obj in self._objects(path):
            for k in obj:
                if k not in index:
                    index[k] = len(names)
                    names.append(k)
            rows.append(obj)
            if len(rows) >= batch:
                yield list(names), [[r.get(n) for n in names] for r in rows]
                rows = []
        if rows:
            yield list(names), [[r.get(n) for n in names] for r in rows]


register("json", JsonConfig, JsonSource)
