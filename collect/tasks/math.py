"""`math`: one stage, `solve` (or, with `collect run --graph`, the graph roles solve, refine,
aggregate). Final answers are read from the last \\boxed{...} (else a final "answer is ..."
phrase, else the last number) and compared as canonical strings (exact match).

Data: the MATH dataset as released (Hendrycks et al.): a folder of one JSON object per problem
(`MATH/test/algebra/1.json`: `problem`, `level`, `type`, `solution`, searched recursively; the id is
the file's path in the folder without `.json`), or those objects as a JSON list, JSONL or Parquet
(the Hugging Face copies; the id is `unique_id` or `id` where given, else `<type>-<index>`). The
gold is the last \\boxed{} of `solution`. The generic JSONL of the other tasks (`id`, `question`,
`gold`) is read too.

Canonical form: LaTeX spacing and \\left/\\right removed, \\dfrac and \\tfrac as \\frac, simple
fractions as a/b, numbers without thousands separators, trailing zeros or leading zeros
(so "033", "33.0" and "33" agree, as AIME answers need).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from replay.errors import InputError

from .base import Messages, Record, StageSpec, Task
from .files import Row, read_rows

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_ANSWER_IS = re.compile(r"(?:final answer|answer)\s*(?:is|:)\s*\$?([^\n$]+)", re.IGNORECASE)
_FRAC = re.compile(r"\\frac\{(-?\d+)\}\{(-?\d+)\}")
_TEXT = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}")


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} or \\fbox{...}, braces matched (they nest in LaTeX)."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    i = text.find("{", start)
    if i < 0:
        return None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1:j]
    return None  # unbalanced: the completion was cut off inside the box


def canonical_number(s: str) -> str | None:
    t = s.replace(",", "") if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s) else s
    try:
        v = float(t)
    except ValueError:
        return None
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


def canonical_math(s: str) -> str:
    s = str(s).strip()
    s = _TEXT.sub(r"\1", s)
    for tok in ("\\left", "\\right", "\\!", "\\,", "\\;", "\\:", "\\displaystyle", "$"):
        s = s.replace(tok, "")
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = s.replace("^\\circ", "").replace("^{\\circ}", "")
    s = "".join(s.split()).rstrip(".")
    if s.startswith("+"):
        s = s[1:]
    s = _FRAC.sub(r"\1/\2", s)
    num = canonical_number(s)
    return num if num is not None else s


def candidates_block(candidates: list[str], what: str = "solution") -> str:
    """Candidates shown to a refine or aggregate node, numbered."""
    return "\n\n".join(f"### Candidate {what} {i + 1}\n{c.strip() or '(empty)'}" for i, c in enumerate(candidates))


def _math_record(raw: dict, where: str, line: int, default_id: str) -> Record:
    if "problem" in raw:  # the MATH release
        problem, solution = raw.get("problem"), raw.get("solution")
        if not isinstance(problem, str) or not problem.strip():
            raise InputError(where, "'problem' must be a non-empty string")
        if not isinstance(solution, str):
            raise InputError(where, "record has no 'solution' (the MATH format: problem, solution, level, type)")
        boxed = last_boxed(solution)
        if boxed is None:
            raise InputError(where, "the solution has no \\boxed{} answer")
        rid = raw.get("unique_id", raw.get("id", default_id))
        meta = {k: raw[k] for k in ("level", "type", "subject") if k in raw}
        return Record(id=str(rid), question=problem, gold=(boxed,), metadata=meta, split=raw.get("split"), line=line,
                      extra={"solution": solution})
    return Task._record(raw, where, line)


def load_math(path: str | Path) -> list[Record]:
    """MATH problems (module docstring), or the generic JSONL, one Record each."""
    path = Path(path)
    rows: list[tuple[dict, str, int, str]] = []
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in (".json", ".jsonl", ".parquet"))
        if not files:
            raise InputError(path, "no .json, .jsonl or .parquet files in this folder (the MATH release: one JSON "
                                   "object per problem)")
        for f in files:
            rows += _rows_of(f, str(f.relative_to(path).with_suffix("")))
    elif path.is_file():
        rows = _rows_of(path, path.stem)
    else:
        raise InputError(path, "no such data file")
    records, seen = [], {}
    for raw, where, line, default_id in rows:
        rec = _math_record(raw, where, line, default_id)
        if rec.id in seen:
            raise InputError(where, f"duplicate id {rec.id!r} (first at {seen[rec.id]})")
        seen[rec.id] = where
        records.append(rec)
    if not records:
        raise InputError(path, "no problems")
    return records


def _generic_jsonl(path: Path) -> bool:
    """A JSONL file whose first record is not a MATH problem (no 'problem' field)."""
    if not path.is_file() or path.suffix.lower() not in (".jsonl", ".ndjson"):
        return False
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.strip():
                try:
                    first = json.loads(line)
                except json.JSONDecodeError:
                    return True
                return not (isinstance(first, dict) and "problem" in first)
    return True


def _rows_of(f: Path, stem: str) -> list[tuple[dict, str, int, str]]:
    """A file's records: one JSON object (a MATH problem file), or a list / JSONL / Parquet."""
    if f.suffix.lower() == ".json":
        try:
            doc = json.loads(f.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            doc = None  # JSONL under a .json name, or broken: read_rows says which
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(f, f"cannot read the data file ({e})") from None
        if isinstance(doc, dict):
            return [(doc, str(f), 1, stem)]
    out = []
    for row in read_rows(f):
        t = row.raw.get("type") or row.raw.get("subject") or stem
        out.append((row.raw, row.where, row.line, f"{t}-{row.index}"))
    return out


class MathTask(Task):
    name = "math"
    description = "math problems (MATH, AIME, GSM8K style); \\boxed{} answers, exact match; graph roles too"
    stages = (StageSpec("solve", "majority_vote", "exact_match",
                        "solve the problem; the final answer read from \\boxed{}, compared canonically"),)
    graph_roles = ("solve", "refine", "aggregate")

    def load(self, path: str | Path) -> list[Record]:
        if _generic_jsonl(Path(path)):
            return super().load(path)  # the generic {id, question, gold} JSONL, checked as every task's
        return load_math(path)

    def role_prompt(self, role: str, record: Record, candidates: list[str]) -> Messages:
        shown = candidates_block(candidates)
        n = len(candidates)
        if role == "refine":
            ask = ("Check the candidate solution carefully" if n == 1 else f"Check these {n} candidate solutions carefully")
            return [{"role": "user", "content": (
                f"{record.question}\n\n{shown}\n\n{ask}, correct any mistakes, and write an improved solution "
                "step by step. Give the final answer as \\boxed{ANSWER}.")}]
        return [{"role": "user", "content": (
            f"{record.question}\n\nHere are {n} candidate solutions.\n\n{shown}\n\nCompare them, decide which final "
            "answer is correct, and explain briefly. Give the final answer as \\boxed{ANSWER}.")}]

    def prompt(self, stage: str, record: Record, upstream: str) -> Messages:
        return [{"role": "user", "content": (
            f"{record.question}\n\n"
            "Solve the problem step by step, then give the final answer as \\boxed{ANSWER}.")}]

    def parse(self, stage: str, text: str, record: Record) -> str:
        boxed = last_boxed(text)
        if boxed is not None:
            return canonical_math(boxed)
        found = _ANSWER_IS.findall(text)
        if found:
            return canonical_math(found[-1])
        nums = _NUMBER.findall(text)
        return canonical_math(nums[-1]) if nums else ""

    def score(self, stage: str, answer: str, record: Record) -> float:
        return float(answer != "" and any(answer == canonical_math(g) for g in record.gold))

    def gold(self, record: Record) -> str:
        return canonical_math(record.gold[0])
