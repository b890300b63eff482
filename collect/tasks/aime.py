"""`aime`: the AIME problems as published (one stage, `solve`): the `math` task with the loader of
the usual AIME releases.

Format read: JSONL, a JSON list, or Parquet (a file or a folder of them, `files.py`), one problem
a record, in the field spellings the common releases use (the first present wins):

| field | spellings | |
| --- | --- | --- |
| problem | `problem`, `Problem` | the statement (LaTeX), the whole prompt |
| answer | `answer`, `Answer` | the integer answer 0-999, as a number or a string |
| id | `id`, `ID`, `url` | unique; when a record has none, its 0-based position in the file |

Other short scalar fields (`year`, `url`, ...) are kept in the store's question metadata; long
ones and `solution` are not (they stay in `Record.extra`).

Stage `solve` (majority vote, scorer `exact_match`): the canonical answer is the content of the
last `\\boxed{...}` (else a final "answer is ..." phrase, else the last number; "" when the
completion has none), put in the canonical form of `math.py` (so `033`, `33.0` and `33` agree);
score 1 when it equals the canonical gold.
"""

from __future__ import annotations

from pathlib import Path

from replay.errors import InputError

from .base import Record
from .files import Row, first_key, id_field, load_records
from .math import MathTask, canonical_math

PROBLEM_KEYS = ("problem", "Problem")
ANSWER_KEYS = ("answer", "Answer")
ID_KEYS = ("id", "ID", "url")
SOLUTION_KEYS = {"solution", "Solution"}  # kept in Record.extra, not in the store's metadata
_LONG = 200  # scalar fields longer than this stay out of the metadata


class AIMETask(MathTask):
    name = "aime"
    description = "AIME (problem, answer; JSONL/JSON/Parquet): one stage, \\boxed{} answers, exact match"

    def load(self, path: str | Path) -> list[Record]:
        return load_records(path, self._build, "aime: records with problem and answer (and an id)")

    def _build(self, row: Row) -> Record:
        raw = row.raw
        key = first_key(raw, ID_KEYS)
        rid = id_field(raw, key, row.where) if key else str(row.index)
        where = row.at(key or "index", rid)
        pkey = first_key(raw, PROBLEM_KEYS)
        if pkey is None:
            raise InputError(where, "record has no 'problem' (or 'Problem')")
        problem = raw[pkey]
        if not isinstance(problem, str) or not problem.strip():
            raise InputError(where, f"{pkey!r} must be a non-empty string")
        akey = first_key(raw, ANSWER_KEYS)
        if akey is None:
            raise InputError(where, "record has no 'answer' (or 'Answer')")
        answer = raw[akey]
        if isinstance(answer, bool) or not isinstance(answer, (str, int, float)) or str(answer).strip() == "":
            raise InputError(where, f"{akey!r} must be a number or a non-empty string, got {answer!r}")
        if canonical_math(str(answer)) == "":
            raise InputError(where, f"{akey!r} is empty once put in canonical form ({answer!r})")
        used = {key, pkey, akey}
        meta = {k: v for k, v in raw.items() if k not in used | SOLUTION_KEYS and isinstance(v, (str, int, float, bool))
                and len(str(v)) <= _LONG}
        if key == "url":
            meta["url"] = rid
        return Record(id=rid, question=problem, gold=(str(answer),), metadata=meta, line=row.line,
                      extra={k: v for k, v in raw.items() if k not in used})
