"""`math`: one stage, `solve`. Final answers are read from the last \\boxed{...} (else a final
"answer is ..." phrase, else the last number) and compared as canonical strings (exact match).

Canonical form: LaTeX spacing and \\left/\\right removed, \\dfrac and \\tfrac as \\frac, simple
fractions as a/b, numbers without thousands separators, trailing zeros or leading zeros
(so "033", "33.0" and "33" agree, as AIME answers need).
"""

from __future__ import annotations

import re

from .base import Messages, Record, StageSpec, Task

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


class MathTask(Task):
    name = "math"
    description = "one-stage math word problems (MATH, AIME, GSM8K style); \\boxed{} answers, exact match"
    stages = (StageSpec("solve", "majority_vote", "exact_match",
                        "solve the problem; the final answer read from \\boxed{}, compared canonically"),)

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
