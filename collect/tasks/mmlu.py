"""`mmlu`: MMLU multiple choice (Hendrycks et al.), one stage `solve` (or, with `collect run
--graph`, the graph roles solve, refine, aggregate). The answer is a letter A-D; exact match.

Data, in the official layouts:
- the original release's CSV files (`data/test/<subject>_test.csv`): no header, six columns:
  question, choice A, B, C, D, answer letter. A file, or a folder of them (searched recursively;
  the subject is the file name without `_test`/`_dev`/`_val`); ids are `<subject>-<row>` (rows
  from 0).
- the Hugging Face copy (`cais/mmlu`) as Parquet (or JSONL/JSON): `question`, `choices` (four
  strings), `answer` (an index 0-3 or a letter), `subject` optional; ids `<subject>-<row>`.

Canonical answer: the letter read off the completion: the last "answer is (X)" / "Answer: X"
phrase, else a last standalone letter A-D, else "" (scored 0). Gold: the answer letter.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from replay.errors import InputError

from .base import Messages, Record, StageSpec, Task
from .files import read_rows
from .math import candidates_block

LETTERS = ("A", "B", "C", "D")
_ANSWER = re.compile(r"answer\s*(?:is|:)?\s*[:\-]?\s*\(?\**\s*([ABCD])\b", re.IGNORECASE)
_LONE = re.compile(r"(?<![A-Za-z])\(?([ABCD])\)?(?![A-Za-z])")
_SPLIT_SUFFIX = re.compile(r"_(test|dev|val)$")


def parse_letter(text: str) -> str:
    found = _ANSWER.findall(text)
    if found:
        return found[-1].upper()
    lone = _LONE.findall(text)
    return lone[-1] if lone else ""


def _csv_records(path: Path, subject: str) -> list[Record]:
    try:
        rows = list(csv.reader(path.read_text(encoding="utf-8").splitlines()))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(path, f"cannot read the CSV ({e})") from None
    out = []
    for i, row in enumerate(rows):
        if not row or not any(c.strip() for c in row):
            continue
        where = f"{path}: row {i}"
        if len(row) != 6:
            raise InputError(where, f"{len(row)} columns; the MMLU CSV has 6 (question, A, B, C, D, answer), no header")
        q, *choices, ans = (c.strip() for c in row)
        out.append(_record(f"{subject}-{i}", q, choices, ans, subject, where, i + 1))
    return out


def _record(rid: str, question, choices, answer, subject: str, where: str, line: int) -> Record:
    if not isinstance(question, str) or not question.strip():
        raise InputError(where, "the question is empty")
    if not isinstance(choices, (list, tuple)) or len(choices) != 4 or not all(isinstance(c, str) for c in choices):
        raise InputError(where, "needs exactly four choices (strings)")
    if isinstance(answer, int) and not isinstance(answer, bool) and 0 <= answer < 4:
        answer = LETTERS[answer]
    if not isinstance(answer, str) or answer.strip().upper() not in LETTERS:
        raise InputError(where, f"the answer must be a letter A-D (or an index 0-3), got {answer!r}")
    return Record(id=rid, question=question, gold=(answer.strip().upper(),), metadata={"subject": subject},
                  line=line, extra={"choices": list(choices)})


def load_mmlu(path: str | Path) -> list[Record]:
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in (".csv", ".parquet",
                                                                                           ".jsonl", ".json"))
        if not files:
            raise InputError(path, "no .csv (or .parquet) files in this folder")
    elif path.is_file():
        files = [path]
    else:
        raise InputError(path, "no such data file")
    records: list[Record] = []
    seen: dict[str, str] = {}
    for f in files:
        if f.suffix.lower() == ".csv":
            recs = _csv_records(f, _SPLIT_SUFFIX.sub("", f.stem))
        else:
            recs = []
            for row in read_rows(f):
                raw = row.raw
                subject = str(raw.get("subject") or _SPLIT_SUFFIX.sub("", f.stem))
                for k in ("question", "choices", "answer"):
                    if k not in raw:
                        raise InputError(row.where, f"record has no {k!r} (the MMLU layout: question, choices, answer)")
                recs.append(_record(f"{subject}-{row.index}", raw["question"], raw["choices"], raw["answer"], subject,
                                    row.where, row.line))
        for r in recs:
            if r.id in seen:
                raise InputError(path, f"duplicate question id {r.id!r}")
            seen[r.id] = r.id
            records.append(r)
    if not records:
        raise InputError(path, "no questions")
    return records


class MMLUTask(Task):
    name = "mmlu"
    description = "MMLU (official CSV or HF Parquet): four choices, letter answers, exact match; graph roles too"
    stages = (StageSpec("solve", "majority_vote", "exact_match", "answer with a letter A-D"),)
    graph_roles = ("solve", "refine", "aggregate")

    def load(self, path: str | Path) -> list[Record]:
        return load_mmlu(path)

    @staticmethod
    def _shown(record: Record) -> str:
        choices = "\n".join(f"{letter}. {c}" for letter, c in zip(LETTERS, record.extra["choices"]))
        return f"{record.question}\n\n{choices}"

    def prompt(self, stage: str, record: Record, upstream: str) -> Messages:
        return [{"role": "user", "content": (
            f"{self._shown(record)}\n\nThink step by step, then end with 'Answer: X' where X is the letter "
            "of the correct choice.")}]

    def role_prompt(self, role: str, record: Record, candidates: list[str]) -> Messages:
        shown = candidates_block(candidates, "answer")
        if role == "refine":
            return [{"role": "user", "content": (
                f"{self._shown(record)}\n\n{shown}\n\nCheck the reasoning above, correct any mistakes, and end with "
                "'Answer: X' where X is the letter of the correct choice.")}]
        return [{"role": "user", "content": (
            f"{self._shown(record)}\n\nHere are {len(candidates)} candidate answers.\n\n{shown}\n\nDecide which "
            "choice is correct and end with 'Answer: X' where X is its letter.")}]

    def parse(self, stage: str, text: str, record: Record) -> str:
        return parse_letter(text)

    def score(self, stage: str, answer: str, record: Record) -> float:
        return float(answer == record.gold[0])

    def gold(self, record: Record) -> str:
        return record.gold[0]
