"""`qa`: retrieve-then-answer over the passages given with each question (2Wiki, HotpotQA).

Stage `retrieve` (set vote, item F1): the model reads every passage and names the titles of
those needed to answer; the canonical answer is the set of named titles that exist in the
question's context, sorted and joined by ITEM_SEP. Its gold is the supporting titles, which
every record must give (`supporting_facts` as [[title, sentence], ...] or `supporting` as a list
of titles, at top level or in `metadata`): the store keeps a score for every sample, and replay
scores the stage's set vote against them.

Stage `answer` (majority vote, exact match): the model reads only the passages retrieved
upstream and answers in a few words; answers are SQuAD-normalised, and scored by exact match
against any gold alias.

`context` is a list of passages: {"title": ..., "text": str or [sentences]}, or HotpotQA's
[title, [sentences]] pairs, or HotpotQA-on-HF's {"title": [...], "sentences": [[...], ...]}.
"""

from __future__ import annotations

import re

from replay.errors import InputError

from .base import Messages, Record, StageSpec, Task
from .scoring import clean_item, exact_match, item_f1, join_items, normalize_answer, split_items

_TITLES = re.compile(r"titles?\s*:", re.IGNORECASE)
_ANSWER = re.compile(r"answer\s*:", re.IGNORECASE)
_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+")
_INDEX = re.compile(r"^\[?(\d+)\]?$")


def passages(context) -> list[tuple[str, str]]:
    """The record's context as (title, text) pairs, in order; titles cleaned of ITEM_SEP."""
    out: list[tuple[str, str]] = []
    if isinstance(context, dict) and "title" in context and "sentences" in context:
        context = list(zip(context["title"], context["sentences"]))
    if not isinstance(context, list):
        raise ValueError("context must be a list of passages")
    for p in context:
        if isinstance(p, dict):
            title, text = p.get("title"), p.get("text", p.get("sentences"))
        elif isinstance(p, (list, tuple)) and len(p) == 2:
            title, text = p
        else:
            raise ValueError("a passage must be {title, text} or [title, sentences]")
        if not isinstance(title, str) or not clean_item(title):
            raise ValueError("a passage has no title")
        if isinstance(text, list):
            text = " ".join(str(x).strip() for x in text)
        if not isinstance(text, str):
            raise ValueError(f"passage {title!r} has no text")
        out.append((clean_item(title), text.strip()))
    return out


def _key(title: str) -> str:
    return " ".join(title.lower().split())


def labelled_segment(text: str, label: re.Pattern) -> str:
    """What follows the last `label` match up to the next blank line; the whole text if none."""
    found = list(label.finditer(text))
    return text[found[-1].end():].split("\n\n")[0] if found else text


def pick_items(segment: str, names: list[str], numbered: list[str] | None = None) -> list[str]:
    """The `names` a model's list names, in the order named, spelled exactly as in `names`.

    Pieces are split on `|`, `;` and newlines, stripped of bullets and quotes, and matched case-
    and whitespace-insensitively; else `[3]` (or `3`) is the third of `numbered` (default `names`),
    the order the prompt listed them in. Anything else is ignored.
    """
    numbered = names if numbered is None else numbered
    by_key = {_key(n): n for n in names}
    picked = []
    for piece in re.split(r"[|\n;]", segment):
        piece = _BULLET.sub("", piece).strip().strip("\"'`*").strip()
        if not piece:
            continue
        m = _INDEX.match(piece)
        if _key(clean_item(piece)) in by_key:  # a name first: a title may be a number ("1984")
            picked.append(by_key[_key(clean_item(piece))])
        elif m and 1 <= int(m.group(1)) <= len(numbered):
            picked.append(numbered[int(m.group(1)) - 1])
    return picked


def answer_line(text: str) -> str:
    """The rest of the line after the last `Answer:`, else the last non-empty line ("" if none)."""
    found = list(_ANSWER.finditer(text))
    if found:
        return text[found[-1].end():].strip().split("\n")[0]
    lines = [x for x in text.strip().split("\n") if x.strip()]
    return lines[-1] if lines else ""


class QATask(Task):
    name = "qa"
    description = "retrieve-then-answer over given passages (2Wiki, HotpotQA style)"
    stages = (
        StageSpec("retrieve", "set_vote", "item_f1",
                  "pick the titles of the passages needed to answer; item F1 against the supporting titles"),
        StageSpec("answer", "majority_vote", "exact_match",
                  "answer from the retrieved passages; SQuAD-normalised exact match"),
    )

    def check_record(self, record: Record, where: str) -> None:
        if record.context is None:
            raise InputError(where, "the qa task needs a 'context' list of passages")
        try:
            ps = passages(record.context)
        except ValueError as e:
            raise InputError(where, str(e)) from None
        if not ps:
            raise InputError(where, "'context' has no passages")
        sup = self.supporting_titles(record)
        if sup is None:
            raise InputError(where, "the qa task needs the supporting titles ('supporting_facts' or 'supporting')")
        missing = set(sup) - {t for t, _ in ps}
        if missing:
            raise InputError(where, f"supporting title {sorted(missing)[0]!r} is not a passage of the context")

    # ---- golds
    @staticmethod
    def supporting_titles(record: Record) -> list[str] | None:
        for src in (record.extra, record.metadata):
            if "supporting_facts" in src:
                return [clean_item(f[0] if isinstance(f, (list, tuple)) else f) for f in src["supporting_facts"]]
            if "supporting" in src:
                return [clean_item(t) for t in src["supporting"]]
        return None

    def stage_gold(self, stage: str, record: Record) -> str | None:
        if stage != "retrieve":
            return None
        sup = self.supporting_titles(record)
        return None if sup is None else join_items(sup)

    def gold(self, record: Record) -> str:
        return normalize_answer(record.gold[0])

    # ---- prompts
    def prompt(self, stage: str, record: Record, upstream: str) -> Messages:
        ps = passages(record.context)
        if stage == "retrieve":
            body = "\n\n".join(f"[{i + 1}] {t}\n{x}" for i, (t, x) in enumerate(ps))
            return [{"role": "user", "content": (
                f"Passages:\n\n{body}\n\nQuestion: {record.question}\n\n"
                "Which passages are needed to answer the question? Think briefly, then end with one line "
                "of the form\nTitles: TITLE | TITLE\nusing the passage titles exactly as written above.")}]
        keep = set(split_items(upstream))
        chosen = [(t, x) for t, x in ps if t in keep]
        body = "\n\n".join(f"{t}\n{x}" for t, x in chosen) if chosen else "(no passages were retrieved)"
        return [{"role": "user", "content": (
            f"Passages:\n\n{body}\n\nQuestion: {record.question}\n\n"
            "Answer the question using the passages. Think briefly, then end with one line of the form\n"
            "Answer: SHORT ANSWER\nwhere SHORT ANSWER is a few words (an entity, a date, a number, yes or no).")}]

    # ---- parsing and scoring
    def parse(self, stage: str, text: str, record: Record) -> str:
        if stage == "retrieve":
            titles = [t for t, _ in passages(record.context)]
            return join_items(pick_items(labelled_segment(text, _TITLES), titles))
        return normalize_answer(answer_line(text))

    def score(self, stage: str, answer: str, record: Record) -> float:
        if stage == "retrieve":
            return item_f1(answer, self.stage_gold(stage, record))
        return float(answer != "" and exact_match(answer, record.gold))
