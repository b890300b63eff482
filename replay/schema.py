"""The store format, version 2: the one place that says what a store is.

A store is a folder:

    manifest.json        what the store is (stages, models, split, provenance)
    questions.parquet    one row per question
    samples.parquet      one row per stored sampled output
    fusions.parquet      stored LLM fusions (only for stages whose aggregation is `llm_fuse`)
    stage_golds.parquet  optional per-stage gold answers for intermediate stages

A store is a chain (stages in order, each keyed by the stage before) or, from version 2, a
collaboration graph (`kind: "graph"`: the stages are the roles `solve`, `refine`, `aggregate`, and
a refine or aggregate pool is keyed by the multiset of answers it read; replay/graph/keys.py).
Version-1 stores (chains, no throughputs) are read as they are.

Every field is documented in docs/store-format.md. Keep the two in step.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

FORMAT_NAME = "tts-replay-store"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)  # version 1: chains only, no `kind`, no model throughputs

# What the stages of a store are: a chain of stages, or the roles of a collaboration graph.
STORE_KINDS = ("chain", "graph")
# The roles a graph store may hold; `solve` (the question alone) is required and comes first.
GRAPH_ROLES = ("solve", "refine", "aggregate")

# How a stage turns S drawn outputs into one.
AGGREGATIONS = ("majority_vote", "set_vote", "best_score", "llm_fuse")
AGG_CODES = {name: i for i, name in enumerate(AGGREGATIONS)}

# Whether a stage's pools depend on the upstream stage's answer (docs/store-format.md):
# `conditional` (the default): one pool per upstream answer collected, keyed by `context`;
# `independent`: one pool per question (context ""), reused whatever the upstream answer.
DEPENDENCIES = ("conditional", "independent")

# How the stage scores of one pass through the pipeline make its end-to-end score:
# `last` (the default): the last stage's score; `all`: 1 if every stage's score is 1 (full
# marks), else 0; `product`: their product; `mean`: their mean.
SCORE_RULES = ("last", "all", "product", "mean")
SCORE_RULE_CODES = {name: i for i, name in enumerate(SCORE_RULES)}

# Items of a list answer (set-vote stages) are stored in `answer` sorted, joined by this.
ITEM_SEP = "|"

# Stage 1 pools have this upstream context key.
ROOT_CONTEXT = ""

MANIFEST = "manifest.json"
QUESTIONS = "questions.parquet"
SAMPLES = "samples.parquet"
FUSIONS = "fusions.parquet"
STAGE_GOLDS = "stage_golds.parquet"

# Column name -> (arrow type, required). Integer columns accept any integer width on read.
QUESTIONS_SCHEMA: dict[str, tuple[pa.DataType, bool]] = {
    "question_id": (pa.string(), True),
    "split": (pa.string(), True),
    "gold": (pa.string(), True),
    "metadata": (pa.string(), False),  # JSON object, free form
}
SAMPLES_SCHEMA: dict[str, tuple[pa.DataType, bool]] = {
    "question_id": (pa.string(), True),
    "stage": (pa.string(), True),
    "model": (pa.string(), True),
    "context": (pa.string(), True),
    "sample_index": (pa.int32(), True),
    "answer": (pa.string(), True),
    "score": (pa.float64(), True),
    "prompt_tokens": (pa.int64(), True),
    "completion_tokens": (pa.int64(), True),
    "probes": (pa.list_(pa.string()), False),
}
FUSIONS_SCHEMA: dict[str, tuple[pa.DataType, bool]] = {
    "question_id": (pa.string(), True),
    "stage": (pa.string(), True),
    "model": (pa.string(), True),
    "context": (pa.string(), True),
    "subset": (pa.list_(pa.int32()), True),
    "answer": (pa.string(), True),
    "score": (pa.float64(), True),
    "prompt_tokens": (pa.int64(), True),
    "completion_tokens": (pa.int64(), True),
}
STAGE_GOLDS_SCHEMA: dict[str, tuple[pa.DataType, bool]] = {
    "question_id": (pa.string(), True),
    "stage": (pa.string(), True),
    "gold": (pa.string(), True),
}
TABLE_SCHEMAS = {
    QUESTIONS: QUESTIONS_SCHEMA,
    SAMPLES: SAMPLES_SCHEMA,
    FUSIONS: FUSIONS_SCHEMA,
    STAGE_GOLDS: STAGE_GOLDS_SCHEMA,
}


def arrow_schema(columns: dict[str, tuple[pa.DataType, bool]], present: set[str] | None = None) -> pa.Schema:
    return pa.schema(
        [pa.field(n, t, nullable=not req) for n, (t, req) in columns.items() if present is None or n in present]
    )


@dataclass(frozen=True)
class Stage:
    name: str
    aggregation: str = "majority_vote"
    scorer: str = "exact_match"  # how `score` was computed: documentation, except set_vote (item F1)
    models: tuple[str, ...] = ()  # candidate models for this stage; empty = every model of the store
    description: str = ""
    dependency: str = "conditional"  # DEPENDENCIES: does the pool depend on the upstream answer?

    @property
    def independent(self) -> bool:
        return self.dependency == "independent"


@dataclass(frozen=True)
class Model:
    name: str
    params: float  # parameter count, for FLOPs = 2 x params x tokens
    description: str = ""
    # per-request throughput, for latency (version 2; None: unknown, latency is then NaN)
    prefill_tokens_per_s: float | None = None
    decode_tokens_per_s: float | None = None


@dataclass(frozen=True)
class Manifest:
    name: str
    stages: tuple[Stage, ...]
    models: tuple[Model, ...]
    synthetic: bool
    provenance: dict[str, Any] = field(default_factory=dict)
    probe_interval: int | None = None
    split: dict[str, tuple[str, ...]] = field(default_factory=dict)  # "train"/"test" -> question ids
    score_rule: str = "last"  # SCORE_RULES: how stage scores make the end-to-end score
    format: str = FORMAT_NAME
    format_version: int = FORMAT_VERSION
    kind: str = "chain"  # "chain" or "graph" (STORE_KINDS)

    def to_json(self) -> dict[str, Any]:
        # `dependency` and `score_rule` are written only where they differ from their defaults,
        # so that a store that uses neither has the manifest it always had
        stages = []
        for s in self.stages:
            d = dataclasses.asdict(s)
            if s.dependency == "conditional":
                del d["dependency"]
            stages.append(d)
        out = {
            "format": self.format,
            "format_version": FORMAT_VERSION,  # written in the current version, whatever was read
            "kind": self.kind,
            "name": self.name,
            "synthetic": self.synthetic,
            "provenance": self.provenance,
            "stages": stages,
            "models": [dataclasses.asdict(m) for m in self.models],
            "probe_interval": self.probe_interval,
            "split": {k: list(v) for k, v in self.split.items()},
        }
        if self.score_rule != "last":
            out["score_rule"] = self.score_rule
        return out

    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages)

    @property
    def model_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.models)
