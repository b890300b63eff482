"""The run: every stage in order, every model, the pools still missing; then the store.

For each stage in order, and each model, the runner draws one pool of S samples per
(question, upstream context): stage 1 has one context per question; a later stage has one per
upstream answer that was *expanded* (`expansion.py`). Each sample is parsed into its canonical
answer and scored against the gold by the task, and stored with the token counts the backend
reported. Finished batches go to the checkpoint (`checkpoint.py`); the store is written once,
atomically, at the end (`output.py`), and the partial folder is removed (or kept as
`<out>.raw/`, with every completion's text, on request).
"""

from __future__ import annotations

import os
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from replay import schema as S
from replay.errors import InputError
from replay.locks import LOCK_NAME

from ..backends import Backend
from ..tasks import Record, Task, get_task
from .checkpoint import RAW_SUFFIX, Checkpoint
from .draw import backend_for, draw_pools, fuse_pools
from .expansion import expand_stage
from .graph import GraphTask, collect_graph
from .output import StageSummary, summarize, write_collected_store
from .settings import ModelSpec, RunSettings, data_sha256


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



def run_collection(settings: RunSettings, make_backend: Callable[[ModelSpec], Backend], *,
                   progress: bool = True, log: Callable[[str], None] | None = None) -> RunResult:
    """Collect pools for every stage and model, write the store, return a summary.

    Args:
        settings: what to collect (task, data, models, samples, expansion, ...).
        make_backend: a model's backend, made when the run reaches the model (an offline
            engine is closed before the next one is loaded).
        progress: show progress bars on stderr.
        log: where one-line notices go (resuming, stopped); default stderr.

    Returns:
        A `RunResult`: the store's path and a summary per (stage, model).

    Raises:
        InputError: bad settings or data, an existing store without `settings.force`, or a
            partial run with other settings.
        BackendError: a backend failed (the finished batches stay in the checkpoint).
    """
    t0 = time.time()
    settings.check()
    log = log or (lambda msg: print(msg, file=sys.stderr))
    run = start_run(settings)
    try:
        return _run(settings, run.task, run.records, run.splits, run.out, run.ckpt, make_backend, progress, log, t0)
    finally:
        run.ckpt.close()


@dataclass(frozen=True)
class RunStart:
    """What a run (serial, or `--ray`: `distributed.py`) starts from; the caller closes `ckpt`."""

    task: Task
    records: list[Record]
    splits: list[str]
    out: Path
    ckpt: Checkpoint


def start_run(settings: RunSettings) -> RunStart:
    """Load the task's records (cut to `--limit`), assign the splits, refuse an existing store
    without `--force`, and open the checkpoint (new, or the partial run to resume)."""
    task: Task = get_task(settings.task)
    if settings.graph:
        task = GraphTask(task)  # the roles solve, refine, aggregate as its stages (graph.py)
    data = Path(settings.data)
    records = task.load(data)
    if settings.limit is not None:
        records = records[: settings.limit]
    splits = assign_splits(records, settings.train, settings.seed, data)
    out = Path(settings.out)
    if out.exists() and not settings.force:
        # checked before drawing anything: a collection costs GPU hours
        raise InputError(out, "already exists (use --force to replace it)")
    return RunStart(task=task, records=records, splits=splits, out=out,
                    ckpt=_checkpoint(settings, task, records, data, out))


def _run(settings: RunSettings, task: Task, records: list[Record], splits: list[str], out: Path, ckpt: Checkpoint,
         make_backend, progress: bool, log: Callable[[str], None], t0: float) -> RunResult:
    """The run with its checkpoint held: draw what is missing, then write the store."""
    if ckpt.resumed_pools:
        log(f"resuming: {ckpt.resumed_pools} finished pools restored from {ckpt.dir}")
    throughput = None
    try:
        if settings.graph:
            drawn, coverage, throughput = collect_graph(settings, task, records, ckpt, make_backend, progress, log)
        else:
            drawn, coverage = _collect(settings, task, records, ckpt, make_backend, progress)
    except BaseException:
        # Ctrl-C, a dead server: every finished batch is on disk; say how to go on, counting
        # what the disk holds (not what this process believes it wrote)
        kept = ckpt.pools_on_disk()
        if kept or ckpt.done:
            gap = len(ckpt.done) - kept
            log(f"stopped: {kept} finished pools are kept in {ckpt.dir}; rerun the same command to resume"
                + (f" ({gap} drawn pools are not on disk and will be drawn again)" if gap > 0 else ""))
        raise
    rows = ckpt.all_rows()
    fusions = ckpt.all_fusions()
    path = write_collected_store(settings, task, records, splits, rows, fusions, coverage, drawn,
                                 ckpt.resumed_pools, time.time() - t0, throughput=throughput)
    retire_checkpoint(settings, ckpt, out)
    summary = summarize(task, settings, rows, fusions, coverage)
    return RunResult(path=path, summary=summary, drawn_samples=drawn, resumed_pools=ckpt.resumed_pools,
                     seconds=time.time() - t0)


def retire_checkpoint(settings: RunSettings, ckpt: Checkpoint, out: Path) -> None:
    """The store is in place: the checkpoint is no longer needed (kept as OUT.raw/ on request)."""
    if settings.keep_raw:
        raw = out.with_name(out.name + RAW_SUFFIX)
        if raw.exists():
            shutil.rmtree(raw)
        os.replace(ckpt.dir, raw)
        (raw / LOCK_NAME).unlink(missing_ok=True)
    else:
        shutil.rmtree(ckpt.dir, ignore_errors=True)


def _checkpoint(settings: RunSettings, task: Task, records: list[Record], data: Path, out: Path) -> Checkpoint:
    """The run's checkpoint: a new one, or the partial run of the same settings to resume."""
    info = {"task": settings.task, "data": str(data.resolve()), "out": str(out.resolve()),
            "questions": len(records), "models": [m.name for m in settings.models],
            "stages": [[st.name, st.aggregation] for st in task.stages], "samples": settings.samples,
            "fusions": settings.fusions, "command": settings.command}
    return Checkpoint(out, settings.fingerprint(data_sha256(task, data)), fresh=settings.fresh, info=info)


def _collect(settings: RunSettings, task: Task, records: list[Record], ckpt: Checkpoint,
             make_backend: Callable[[ModelSpec], Backend], progress: bool) -> tuple[int, dict[str, float]]:
    """Every stage in order: expand the upstream answers, then draw (and fuse) every pool the
    checkpoint lacks. Returns the samples drawn and the expansion coverage per stage."""
    by_id = {r.id: r for r in records}
    contexts: dict[str, dict[str, float]] = {r.id: {S.ROOT_CONTEXT: 1.0} for r in records}
    coverage: dict[str, float] = {}
    backends: dict[str, Backend] = {}
    drawn = 0
    try:
        for si, stage in enumerate(task.stages):
            coverage[stage.name] = 1.0
            if si > 0:
                contexts, coverage[stage.name] = expand_stage(task, si, records, contexts, ckpt.all_rows(),
                                                              ckpt.all_fusions(), settings)
                ckpt.save_contexts(stage.name, contexts)
            for model in settings.models:
                pools = [(r.id, c) for r in records for c in sorted(contexts[r.id])]
                pending = [(q, c) for q, c in pools if (stage.name, model.name, q, c) not in ckpt.done]
                if pending:
                    drawn += draw_pools(task, stage.name, model, pending, by_id, settings, ckpt,
                                        backend_for(model, backends, make_backend), progress)
                todo = [(q, c) for q, c in pools if (stage.name, model.name, q, c) not in ckpt.fused]
                if stage.aggregation == "llm_fuse" and todo:
                    fuse_pools(task, stage.name, model, todo, by_id, settings, ckpt,
                               backend_for(model, backends, make_backend), progress)
    finally:
        for b in backends.values():
            b.close()
    return drawn, coverage
