"""`collect run` and `collect status`: real models in, a store out.

One concern per module:

    settings.py    the models (`parse_models`) and `RunSettings`, the resume fingerprint, pool seeds
    expansion.py   which upstream answers get a pool at the next stage (replay's aggregation rules)
    checkpoint.py  `<out>.partial/`: atomic shards, so that an interrupted run resumes
    draw.py        pools and stored fusions drawn through a backend, a shard per batch
    output.py      the store written at the end, its provenance, and the summary
    collection.py  `run_collection`: the stages in order, then the store
    status.py      `collection_status`: what is done and what remains
    distributed.py `run_collection_ray`: the same run on Ray actors (`--ray`), data parallel
    worker.py      the actor: `Engine` (how it makes its backend), work units, its own shards

    from collect.run import RunSettings, parse_models, run_collection
    settings = RunSettings(task="aime", data="aime.jsonl", models=tuple(parse_models("Qwen/Qwen3-8B")),
                           out="traces/aime", samples=32)
    result = run_collection(settings, make_backend)
"""

from __future__ import annotations

from .checkpoint import PARTIAL_SUFFIX, RAW_SUFFIX, Checkpoint, partial_dir
from .collection import RunResult, assign_splits, run_collection
from .expansion import aggregate, expand, fused_distribution, fusion_subsets, size_grid, upstream_distribution
from .output import StageSummary
from .settings import ModelSpec, RunSettings, data_sha256, parse_models, pool_seed
from .status import CollectionStatus, StatusLine, collection_status
from .distributed import RayOptions, run_collection_ray
from .worker import Engine

__all__ = [
    "ModelSpec", "RunSettings", "parse_models", "pool_seed", "data_sha256",
    "aggregate", "expand", "fused_distribution", "fusion_subsets", "size_grid", "upstream_distribution",
    "Checkpoint", "partial_dir", "PARTIAL_SUFFIX", "RAW_SUFFIX",
    "RunResult", "StageSummary", "assign_splits", "run_collection",
    "CollectionStatus", "StatusLine", "collection_status",
    "Engine", "RayOptions", "run_collection_ray",
]
