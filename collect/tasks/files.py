"""Reading a benchmark's own release files: a JSON list, JSONL, or Parquet (or a folder of them).

The benchmark tasks (`2wiki`, `hotpotqa`, `cwq`, `webqsp`, `aime`) read the files as their
authors publish them rather than the generic `{id, question, gold}` JSONL of `base.Task.load`.
`load_records(path, build)` does the part they share: it reads every record of the file (or of
every `.json`/`.jsonl`/`.parquet` file of a folder, in name order), hands each to the task's
`build(row)` with a location for error messages, and refuses duplicate ids and empty files.

Formats, by extension (`.json`, `.jsonl`/`.ndjson`, `.parquet`; anything else is sniffed):
- `.json`: one JSON document whose top level is a list of objects (the official releases).
  A `.json` file that is really JSONL (one object a line, as converters often write) is read as
  JSONL.
- `.jsonl`: one JSON object a line; blank lines are skipped.
- `.parquet`: one row a record (the Hugging Face releases), read with pyarrow.

Every problem raises `InputError(where, problem)`; `where` names the file and the record:
`file:17` (JSONL line 17), `file: record 3` (JSON list index 3, from 0) or `file: row 3`
(Parquet row 3, from 0), followed by the record's id once known: `file: record 3 (_id 5a8b)`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable

from replay.errors import InputError

from .base import Record

SUFFIXES = (".json", ".jsonl", ".ndjson", ".parquet")


@dataclass(frozen=True)
class Row:
    raw: dict
    where: str  # the file and the record's place in it
    line: int  # 1-based: the JSONL line, or the list index / Parquet row + 1
    index: int = 0  # 0-based position among all the records read (across a folder's files)

    def at(self, label: str, value: Any) -> str:
        """`where` with the record's id: `file: record 3 (_id 5a8b)`."""
        return f"{self.where} ({label} {value})"


def _jtype(v: Any) -> str:
    """A Python value's JSON type name."""
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number",
            type(None): "null"}.get(type(v), type(v).__name__)


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _kind(path: Path) -> str:
    suf = path.suffix.lower()
    if suf == ".parquet":
        return "parquet"
    if suf in (".jsonl", ".ndjson"):
        return "jsonl"
    if suf == ".json":
        return "json"
    with open(path, "rb") as f:
        head = f.read(4096)
    if head.startswith(b"PAR1"):
        return "parquet"
    return "json" if head.lstrip().startswith(b"[") else "jsonl"


def _jsonl(path: Path, text: str) -> list[Row]:
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(where, f"not JSON ({e.msg} at column {e.colno})") from None
        except RecursionError:
            raise InputError(where, "not a record (JSON nested too deeply)") from None
        if not isinstance(raw, dict):
            raise InputError(where, f"a record must be a JSON object, not {_jtype(raw)}")
        rows.append(Row(raw, where, n, len(rows)))
    return rows


def _json(path: Path, text: str) -> list[Row]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":  # several documents: JSONL under a .json name
            return _jsonl(path, text)
        raise InputError(path, f"not JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except RecursionError:
        raise InputError(path, "not a data file (JSON nested too deeply)") from None
    if not isinstance(doc, list):
        raise InputError(path, f"the top level is a JSON {_jtype(doc)}, expected a list of records "
                               "(or JSONL, one record a line)")
    rows = []
    for i, raw in enumerate(doc):
        where = f"{path}: record {i}"
        if not isinstance(raw, dict):
            raise InputError(where, f"a record must be a JSON object, not {_jtype(raw)}")
        rows.append(Row(raw, where, i + 1, i))
    return rows


def _parquet(path: Path) -> list[Row]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises ArrowInvalid, OSError, ... on a bad file
        raise InputError(path, f"not a readable Parquet file ({_one_line(e)})") from None
    return [Row(raw, f"{path}: row {i}", i + 1, i) for i, raw in enumerate(table.to_pylist())]


def read_rows(path: str | Path) -> list[Row]:
    """Every record of `path` (a file, or a folder of .json/.jsonl/.parquet files)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
        if not files:
            raise InputError(path, f"no {', '.join(SUFFIXES)} files in this folder")
        rows = [row for f in files for row in read_rows(f)]
        return [replace(row, index=i) for i, row in enumerate(rows)]
    if not path.is_file():
        raise InputError(path, "no such data file")
    kind = _kind(path)
    if kind == "parquet":
        return _parquet(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(path, f"cannot read the data file ({_one_line(e)})") from None
    if not text.strip():
        raise InputError(path, "the file is empty")
    return _json(path, text) if kind == "json" else _jsonl(path, text)


def load_records(path: str | Path, build: Callable[[Row], Record], what: str = "records",
                 id_label: str = "id") -> list[Record]:
    """Build one Record per row; refuse duplicate ids and a file without records."""
    rows = read_rows(path)
    records: list[Record] = []
    seen: dict[str, str] = {}
    for row in rows:
        rec = build(row)
        if rec.id in seen:
            raise InputError(row.at(id_label, rec.id), f"duplicate id {rec.id!r} (first at {seen[rec.id]})")
        seen[rec.id] = row.where
        records.append(rec)
    if not records:
        raise InputError(path, f"no records (expected {what})")
    return records


# ---- field access with one-line errors


def require(raw: dict, key: str, where: str, hint: str = "") -> Any:
    if key not in raw or raw[key] is None:
        raise InputError(where, f"record has no {key!r}" + (f" ({hint})" if hint else ""))
    return raw[key]


def text_field(raw: dict, key: str, where: str) -> str:
    v = require(raw, key, where)
    if not isinstance(v, str) or not v.strip():
        raise InputError(where, f"{key!r} must be a non-empty string, got {_show(v)}")
    return v


def first_key(raw: dict, keys: Iterable[str]) -> str | None:
    """The first of `keys` that the record has with a value."""
    return next((k for k in keys if raw.get(k) is not None), None)


def id_field(raw: dict, key: str, where: str) -> str:
    v = require(raw, key, where)
    if isinstance(v, bool) or not isinstance(v, (str, int)) or str(v).strip() == "":
        raise InputError(where, f"{key!r} must be a non-empty string or an integer, got {_show(v)}")
    return str(v)


def string_list(raw: dict, key: str, where: str, allow_empty: bool = False) -> list[str]:
    v = require(raw, key, where)
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise InputError(where, f"{key!r} must be a list of strings, got {_show(v)}")
    if not v and not allow_empty:
        raise InputError(where, f"{key!r} is empty")
    return v


def _show(v: Any) -> str:
    s = json.dumps(v, ensure_ascii=False, default=str)
    return s if len(s) <= 60 else s[:57] + "..."
