"""`2wiki` (2WikiMultihopQA) and `hotpotqa` (HotpotQA, distractor setting): retrieve, then answer,
read from the benchmarks' own release files.

Official format (both): ONE JSON file holding a list of objects (2Wiki's `dev.json`, HotpotQA's
`hotpot_dev_distractor_v1.json`); JSONL with the same objects, one a line, and a folder of such
files are read too (`files.py`). Fields read:

| field | |
| --- | --- |
| `_id` | string (or integer), unique: the question id |
| `question` | string |
| `answer` | string: the gold answer (SQuAD-normalised for scoring) |
| `context` | list of `[title, [sentence, ...]]`: the passages shown to the model (10 in both releases) |
| `supporting_facts` | list of `[title, sentence_index]`: their titles are the retrieve stage's gold |
| `type` | question type (both), kept in the store's question metadata |
| `level` | HotpotQA only: easy / medium / hard, kept in the metadata |
| `evidences` | 2Wiki only: list of `[subject, relation, object]`, kept in the metadata |
| `entity_ids` | 2Wiki only, when present: kept in the metadata |

Test files without `answer` or `supporting_facts` (HotpotQA's and 2Wiki's test releases hide
them) are refused: every sample is scored when it is collected, so the golds are needed. A
supporting fact must name a title of the record's context; its sentence index is not checked
against the passage (a few HotpotQA training records point past the last sentence, and only the
title is used).

Stages (the `qa` task's prompts and parsers, `qa.py`):
- `retrieve` (set vote, scorer `item_f1`): the model reads every passage and ends with
  `Titles: A | B` (or passage numbers `[3]`). The canonical answer is the set of named titles that
  exist in the context, spelled exactly as there, sorted and joined by ITEM_SEP (`join_items`);
  it keys the answer stage's pools. Score: item F1 of that set against the supporting-fact titles
  (the stage gold), which is what replay computes for a set vote; `metrics` adds `recall`.
- `answer` (majority vote, scorer `exact_match`): the model reads only the passages named by the
  upstream key and ends with `Answer: ...`; the canonical answer is the SQuAD-normalised text
  after the last `Answer:` (else the last non-empty line; "" for an empty completion). Score:
  exact match with the normalised gold; `metrics` adds the SQuAD token `f1`.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from replay.errors import InputError

from .base import Record, StageSpec
from .files import Row, id_field, load_records, require, text_field
from .qa import QATask
from .scoring import clean_item, split_items, token_f1

_TEST_HINT = "a test-set file without golds? collection scores every sample, so use the dev (or train) file"


def _context(value, where: str) -> list[list]:
    if not isinstance(value, list):
        raise InputError(where, "'context' must be a list of [title, [sentence, ...]]")
    if not value:
        raise InputError(where, "'context' is empty")
    for j, p in enumerate(value):
        if not (isinstance(p, (list, tuple)) and len(p) == 2 and isinstance(p[0], str) and clean_item(p[0])
                and isinstance(p[1], list) and all(isinstance(s, str) for s in p[1])):
            raise InputError(where, f"context[{j}] is not [title, [sentence, ...]]")
    return [[p[0], list(p[1])] for p in value]


def _supporting(value, titles: set[str], where: str) -> list[list]:
    if not isinstance(value, list):
        raise InputError(where, "'supporting_facts' must be a list of [title, sentence_index]")
    if not value:
        raise InputError(where, "'supporting_facts' is empty")
    for j, f in enumerate(value):
        if not (isinstance(f, (list, tuple)) and len(f) == 2 and isinstance(f[0], str)
                and isinstance(f[1], int) and not isinstance(f[1], bool) and f[1] >= 0):
            raise InputError(where, f"supporting_facts[{j}] is not [title, sentence_index]")
        if clean_item(f[0]) not in titles:
            raise InputError(where, f"supporting fact [{f[0]!r}, {f[1]}] names a title that is not in the context")
    return [[f[0], f[1]] for f in value]


class MultihopQATask(QATask):
    """The shared loader of the 2Wiki and HotpotQA releases; prompts, parsers, scores of `qa`."""

    name = ""
    metadata_fields: ClassVar[tuple[str, ...]] = ("type",)
    stages = (
        StageSpec("retrieve", "set_vote", "item_f1",
                  "pick the titles of the supporting passages; item F1 against the supporting-fact titles"),
        StageSpec("answer", "majority_vote", "exact_match",
                  "answer from the retrieved passages; SQuAD-normalised exact match (token F1 as a metric)"),
    )

    def load(self, path: str | Path) -> list[Record]:
        return load_records(path, self._build, f"{self.name}: a JSON list of objects with _id, question, "
                                               "answer, context, supporting_facts", id_label="_id")

    def _build(self, row: Row) -> Record:
        raw = row.raw
        where = row.where
        rid = id_field(raw, "_id", where)
        where = row.at("_id", rid)
        question = text_field(raw, "question", where)
        answer = require(raw, "answer", where, _TEST_HINT)
        if not isinstance(answer, str) or not answer.strip():
            raise InputError(where, f"'answer' must be a non-empty string, got {answer!r}")
        context = _context(require(raw, "context", where), where)
        sup = _supporting(require(raw, "supporting_facts", where, _TEST_HINT),
                          {clean_item(t) for t, _ in context}, where)
        meta = {}
        for key in self.metadata_fields:
            if raw.get(key) is not None:
                meta[key] = raw[key]
        self.check_extra(raw, where)
        return Record(id=rid, question=question, gold=(answer,), context=context, metadata=meta,
                      extra={"supporting_facts": sup}, line=row.line)

    def check_extra(self, raw: dict, where: str) -> None:
        """Checks of the benchmark's own fields."""

    def metrics(self, stage: str, answer: str, record: Record) -> dict[str, float]:
        if stage == "retrieve":
            gold = set(self.supporting_titles(record) or [])
            return {"recall": len(set(split_items(answer)) & gold) / len(gold) if gold else 1.0}
        return {"f1": token_f1(answer, record.gold)}


class TwoWikiTask(MultihopQATask):
    name = "2wiki"
    description = "2WikiMultihopQA (official dev.json): retrieve supporting paragraphs, then answer"
    metadata_fields = ("type", "evidences", "entity_ids")

    def check_extra(self, raw: dict, where: str) -> None:
        ev = raw.get("evidences")
        if ev is not None and not (isinstance(ev, list) and all(
                isinstance(e, list) and len(e) == 3 and all(isinstance(x, str) for x in e) for e in ev)):
            raise InputError(where, "'evidences' must be a list of [subject, relation, object] strings")
        if raw.get("type") is not None and not isinstance(raw["type"], str):
            raise InputError(where, "'type' must be a string")


class HotpotQATask(MultihopQATask):
    name = "hotpotqa"
    description = "HotpotQA distractor (official hotpot_dev_distractor_v1.json): retrieve, then answer"
    metadata_fields = ("type", "level")

    def check_extra(self, raw: dict, where: str) -> None:
        for key in ("type", "level"):
            if raw.get(key) is not None and not isinstance(raw[key], str):
                raise InputError(where, f"{key!r} must be a string")


__all__ = ["MultihopQATask", "TwoWikiTask", "HotpotQATask"]
