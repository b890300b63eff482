"""What a task is: a dataset loader, and per stage a prompt, a parser and a scorer.

A task is one small class. The runner only ever calls the methods below, so a new task is a
file with a subclass of `Task` and one line in `collect/tasks/__init__.py`:

    load(path)                 the dataset, one `Record` per question (generic JSONL loader here;
                               a task adds its own checks in `check_record`)
    prompt(stage, record, up)  the chat messages for `stage`, given the upstream stage's
                               aggregated canonical answer `up` ("" for the first stage)
    parse(stage, text, record) a completion -> its canonical answer (what votes are taken over
                               and what keys the next stage's pools)
    score(stage, answer, rec)  a canonical answer -> a score in [0, 1]
    gold(record) / stage_gold(stage, record)   canonical golds written to the store
    completion_prompt(stage, record, up)  optional: a few-shot plain-text prompt (a
                               `CompletionPrompt`: text and stop strings) for base models,
                               used with `collect run --prompt-style completion`
    fuse_prompt(stage, record, up, candidates)  only for stages aggregated by `llm_fuse`: the
                               messages asking the model to fuse `candidates` (canonical
                               answers of a subset of the pool, in draw order) into one; the
                               reply goes through `parse` and `score` like a sample
    metrics(stage, answer, record)  optional extra per-sample figures (name -> float), averaged
                               per stage and model in the run summary and the manifest's
                               provenance (for example ChatDev's executability)
    role_prompt(role, record, candidates)  only for tasks that collect graph stores
                               (`graph_roles`, `collect run --graph`): the messages of a `refine`
                               or `aggregate` node shown `candidates` (one representative output
                               text per answer it reads); `solve` uses `prompt(...)`

Dataset format (JSONL, one object a line): `id` (string or int), `question` (string), `gold`
(a string, or a list of accepted aliases), optional `context` (task specific), `metadata`
(object) and `split` (train/test/dev).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

from replay.errors import InputError

Messages = list[dict[str, str]]

SPLITS = ("train", "test", "dev")
_KNOWN = {"id", "question", "gold", "context", "metadata", "split"}


@dataclass(frozen=True)
class StageSpec:
    name: str
    aggregation: str  # one of replay.schema.AGGREGATIONS
    scorer: str  # documentation of how `score` is computed: exact_match, item_f1, ...
    description: str = ""


@dataclass(frozen=True)
class Record:
    id: str
    question: str
    gold: tuple[str, ...]  # accepted answers, the first one canonical
    context: Any = None
    metadata: dict = field(default_factory=dict)
    split: str | None = None
    extra: dict = field(default_factory=dict)  # other top-level fields, for tasks that read them
    line: int = 0  # 1-based line in the source file, for error messages


def read_jsonl_records(path: Path, make: Callable[[Any, str, int], Record], *,
                       check: Callable[[Record, str], None] | None = None) -> list[Record]:
    """The records of a JSONL file, one object a line (blank lines skipped), in file order.

    Args:
        path: the file.
        make: `(object, "FILE:LINE", line) -> Record`, raising InputError on a bad object.
        check: called with each record and its place once its id is known to be new.

    Raises:
        InputError: the file cannot be read, a line is not JSON, or an id comes twice (naming
            the file and line, and the first line of that id).
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(path, f"cannot read the data file ({e})") from None
    records: list[Record] = []
    seen: dict[str, int] = {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(where, f"not a JSON object ({e.msg})") from None
        except RecursionError:
            raise InputError(where, "not a JSON object (nested too deeply)") from None
        rec = make(raw, where, n)
        if rec.id in seen:
            raise InputError(where, f"duplicate id {rec.id!r} (first on line {seen[rec.id]})")
        seen[rec.id] = n
        if check is not None:
            check(rec, where)
        records.append(rec)
    return records


class Task:
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    stages: ClassVar[tuple[StageSpec, ...]] = ()
    runs_untrusted_code: ClassVar[bool] = False  # runs what a model wrote (in replay/sandbox)
    graph_roles: ClassVar[tuple[str, ...]] = ()  # roles of a graph store this task can collect

    # ---- loading
    def load(self, path: str | Path) -> list[Record]:
        path = Path(path)
        if not path.is_file():
            raise InputError(path, "no such data file")
        records = read_jsonl_records(path, self._record, check=self.check_record)
        if not records:
            raise InputError(path, "no records (expected JSONL: one object per line with id, question, gold)")
        return records

    @staticmethod
    def _record(raw: Any, where: str, line: int) -> Record:
        if not isinstance(raw, dict):
            raise InputError(where, "a record must be a JSON object")
        for key in ("id", "question", "gold"):
            if key not in raw:
                raise InputError(where, f"record has no {key!r}")
        rid = raw["id"]
        if not isinstance(rid, (str, int)) or isinstance(rid, bool) or str(rid) == "":
            raise InputError(where, "'id' must be a non-empty string or an integer")
        if not isinstance(raw["question"], str) or not raw["question"].strip():
            raise InputError(where, "'question' must be a non-empty string")
        gold = raw["gold"]
        if isinstance(gold, (int, float)) and not isinstance(gold, bool):
            gold = [str(gold)]
        elif isinstance(gold, str):
            gold = [gold]
        if not isinstance(gold, list) or not gold or not all(isinstance(g, (str, int, float)) for g in gold):
            raise InputError(where, "'gold' must be a string, a number, or a non-empty list of them (aliases)")
        meta = raw.get("metadata") or {}
        if not isinstance(meta, dict):
            raise InputError(where, "'metadata' must be a JSON object")
        split = raw.get("split")
        if split is not None and split not in SPLITS:
            raise InputError(where, f"unknown split {split!r} (train, test or dev)")
        return Record(id=str(rid), question=raw["question"], gold=tuple(str(g) for g in gold),
                      context=raw.get("context"), metadata=meta, split=split, line=line,
                      extra={k: v for k, v in raw.items() if k not in _KNOWN})

    def check_record(self, record: Record, where: str) -> None:
        """Task-specific checks of one record; raise InputError(where, ...) on a problem."""

    # ---- per stage
    def stage(self, name: str) -> StageSpec:
        for st in self.stages:
            if st.name == name:
                return st
        raise KeyError(name)

    def prompt(self, stage: str, record: Record, upstream: str) -> Messages:
        raise NotImplementedError

    def parse(self, stage: str, text: str, record: Record) -> str:
        raise NotImplementedError

    def score(self, stage: str, answer: str, record: Record) -> float:
        raise NotImplementedError

    def completion_prompt(self, stage: str, record: Record, upstream: str):
        """A few-shot plain-text prompt (`collect.backends.CompletionPrompt`) for base models."""
        raise InputError("--prompt-style", f"task {self.name!r} defines no few-shot completion prompt "
                                           "(use --prompt-style chat)")

    @classmethod
    def has_completion_prompt(cls) -> bool:
        return cls.completion_prompt is not Task.completion_prompt

    def fuse_prompt(self, stage: str, record: Record, upstream: str, candidates: list[str]) -> Messages:
        """Messages asking for one output that fuses `candidates` (stages aggregated by llm_fuse)."""
        raise NotImplementedError(f"task {self.name!r} has no fusion prompt for stage {stage!r}")

    def role_prompt(self, role: str, record: Record, candidates: list[str]) -> Messages:
        """Messages of a refine or aggregate node that reads `candidates` (graph stores)."""
        raise NotImplementedError(f"task {self.name!r} collects no graph stores")

    def metrics(self, stage: str, answer: str, record: Record) -> dict[str, float]:
        """Extra per-sample figures reported beside the score (not used by replay)."""
        return {}

    # The runner parses and scores a pool at a time through these three; a task whose parser or
    # scorer batches well (HumanEval runs programs, ChatDev embeds answers) overrides them.
    def parse_many(self, stage: str, texts: list[str], record: Record) -> list[str]:
        return [self.parse(stage, t, record) for t in texts]

    # The runner scores a pool at a time through these two; a task whose scorer batches well
    # (ChatDev embeds answers, runs programs in parallel) overrides them.
    def score_many(self, stage: str, answers: list[str], record: Record) -> list[float]:
        return [self.score(stage, a, record) for a in answers]

    def metrics_many(self, stage: str, answers: list[str], record: Record) -> list[dict[str, float]]:
        return [self.metrics(stage, a, record) for a in answers]

    def data_files(self, path: Path) -> list[Path]:
        """The files a dataset path stands for (hashed into the run's fingerprint and provenance)."""
        path = Path(path)
        if path.is_dir():
            return sorted(p for p in path.rglob("*") if p.is_file())
        return [path]

    def gold(self, record: Record) -> str:
        """The canonical gold of the last stage (the question's gold in the store)."""
        raise NotImplementedError

    def stage_gold(self, stage: str, record: Record) -> str | None:
        """Canonical gold of an intermediate stage, if the dataset gives one."""
        return None

