"""`collect run --ray`: the planned pools drawn by Ray actors, data parallel.

The questions are cut into blocks (`--block`, default `--batch-size` questions). A *work unit*
is the missing pools of one (stage, model, block), plus the block's missing stored fusions on an
`llm_fuse` stage; an actor runs it with one engine (`worker.py`): a vLLM engine on its own
share of GPUs (num_gpus = tensor parallel size: tensor parallel inside an actor, data parallel
across actors; none when the driver's vLLM is a CPU build) or an OpenAI-compatible client bound
to one of the endpoints. The driver (this
module) plans and schedules:

* A block's later stage starts as soon as every model's pools (and fusions) of that block at
  the stage before are in: the driver expands the block's upstream answers then (a question's
  expansion reads only its own upstream pools: `expansion.expand_questions`) and queues the
  block's next units. Blocks do not wait for each other.
* Units go to actors in order (block, stage, model), up to `queue` per actor so that no actor
  waits for the driver between units; a vLLM actor keeps its model while units of it remain
  (loading another costs minutes).
* Every actor publishes its own shards in `<out>.partial/` (`shard-<unit>-NNNNNN.parquet`, one
  per batch, atomically, under a name no file has), the driver the expanded contexts and its
  progress (`progress.json`, read by `collect status`).
* Crashes: an actor that dies (its process, its node, `ray.kill`) is replaced (up to
  `max_restarts` times); the driver reads the shards the dead actor published for its units
  and queues only the pools they lack. A driver that dies takes its actors with it (Ray ends a
  dead driver's actors; on the driver's host they also watch its pid); rerunning the same
  command reads every shard on disk, as a serial resume does, and draws only what is missing.
  No finished pool is drawn twice; a pool that an actor was drawing when it died is drawn again
  in full (its samples are the same: the seed is the pool's).
* Seeds: every pool is drawn with `pool_seed(seed, stage, model, question, context)` (a hash
  of the pool alone), every fused subset with its own hash, and every expansion with a
  generator seeded by (seed, stage, question): nothing depends on which actor drew what, in
  which order, or how the run was cut by crashes. So the store is the same, byte for byte in
  its tables, as a serial run's and whatever the number of actors (tested: 1 vs 3 actors, an
  actor killed mid-run, a driver stopped and resumed, a driver killed with SIGKILL and rerun).
* The store is written once, atomically, at the end, from the pools the driver received (one
  copy of each: a pool found twice, from an actor that went on writing after it was given up
  for dead, is kept once and counted).

Graph collections (`--graph`) are not distributed: refused with one line.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import secrets
import socket
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable

import numpy as np
import polars as pl

from replay import schema as S
from replay.errors import BackendError, InputError, ToolError

from ..tasks import Record, Task
from .checkpoint import FUSION_SCHEMA, SHARD_SCHEMA, Checkpoint, atomic_write_text, read_shards
from .collection import RunResult, retire_checkpoint, start_run
from .expansion import expand_questions
from .output import write_collected_store
from .settings import RunSettings
from .worker import PROGRESS_FILE, CollectWorker, Engine, Unit, UnitResult, unit_tag

RAY_NAMESPACE = "tts-collect"
POOL_KEY = ["stage", "model", "question_id", "context"]


@dataclass(frozen=True)
class RayOptions:
    """Where and how a `--ray` collection runs.

    Args:
        address: a Ray cluster's address, 'auto' (the cluster this node belongs to), or 'local'
            (start a Ray instance in this process, shut down at the end).
        actors: how many actors (engines); default: one per endpoint (openai), or as many as
            the cluster's GPUs hold at the tensor parallel size (vllm).
        block: questions per work unit (default: the run's batch size).
        cpus_per_actor: CPUs Ray reserves per actor (parsing and scoring run there).
        max_restarts: dead actors replaced in the whole run before it stops (exit 3).
        queue: units queued per actor (2: the next unit is there when one ends).
    """

    address: str = "local"
    actors: int | None = None
    block: int | None = None
    cpus_per_actor: float = 1.0
    max_restarts: int = 3
    queue: int = 2

    def check(self) -> None:
        if self.actors is not None and self.actors < 1:
            raise InputError("--actors", f"must be at least 1, got {self.actors}")
        if self.block is not None and self.block < 1:
            raise InputError("--block", f"must be at least 1, got {self.block}")
        if not self.cpus_per_actor >= 0:
            raise InputError("--actor-cpus", f"must be a number >= 0, got {self.cpus_per_actor}")
        if self.max_restarts < 0:
            raise InputError("max_restarts", f"must be >= 0, got {self.max_restarts}")
        if self.queue < 1:
            raise InputError("queue", f"must be at least 1, got {self.queue}")


def run_collection_ray(settings: RunSettings, engine: Engine, *, options: RayOptions = RayOptions(),
                       progress: bool = True, log: Callable[[str], None] | None = None) -> RunResult:
    """Collect pools for every stage and model on Ray actors, write the store, return a summary.

    Args:
        settings: what to collect (as `run_collection`'s; `graph` is refused).
        engine: how each actor makes its backend (`worker.Engine`).
        options: the cluster, the number of actors, the block size (`RayOptions`).
        progress: a progress bar on stderr (pools, samples/s, tokens/s, actors).
        log: where one-line notices go (resuming, actor replaced, stopped); default stderr.

    Returns:
        A `RunResult`, as `run_collection`'s; the store's tables equal a serial run's.

    Raises:
        InputError: bad settings or data, an existing store without `settings.force`, a partial
            run with other settings, a cluster without the resources the actors need.
        ConfigError: Ray is not installed.
        BackendError: a backend failed, or actors kept dying (finished pools stay on disk).
    """
    t0 = time.time()
    settings.check()
    options.check()
    log = log or (lambda msg: print(msg, file=sys.stderr))
    if settings.graph:
        raise InputError("--ray", "graph collections (--graph) are not distributed; drop --ray")
    if engine.kind not in ("openai", "vllm"):
        raise InputError("--backend", f"unknown backend {engine.kind!r}")
    if engine.kind == "openai" and len(engine.concurrency) != len(engine.base_urls):
        raise InputError("--concurrency", f"{len(engine.concurrency)} bounds for {len(engine.base_urls)} endpoints")
    run = start_run(settings)
    task, records, splits, out, ckpt = run.task, run.records, run.splits, run.out, run.ckpt
    try:
        driver = _Driver(settings, engine, options, task, records, ckpt, progress, log)
        if ckpt.resumed_pools:
            log(f"resuming: {ckpt.resumed_pools} finished pools restored from {ckpt.dir}")
        try:
            driver.start()
            driver.loop()
        except BaseException:
            driver.stop("stopped")
            kept = ckpt.pools_on_disk()
            if kept:
                log(f"stopped: {kept} finished pools are kept in {ckpt.dir}; rerun the same command to resume")
            raise
        driver.stop("done")
        rows, fusions = driver.assembled()
        coverage = driver.coverage()
        run_info = {"address": options.address, "actors": driver.n_actors, "block": driver.block_size,
                    "units": driver.units_done, "actor_restarts": driver.restarts,
                    "duplicate_pools_dropped": driver.duplicates}
        if driver.engine.kind == "vllm":
            run_info["device"] = driver.engine.device  # 'cpu': actors asked Ray for no GPU
        st = dataclasses.replace(settings, backend_options={**settings.backend_options, "ray": run_info})
        path = write_collected_store(st, task, records, splits, rows, fusions, coverage, driver.drawn,
                                     ckpt.resumed_pools, time.time() - t0)
        retire_checkpoint(settings, ckpt, out)
        from .output import summarize

        return RunResult(path=path, summary=summarize(task, settings, rows, fusions, coverage),
                         drawn_samples=driver.drawn, resumed_pools=ckpt.resumed_pools, seconds=time.time() - t0)
    finally:
        ckpt.close()


@dataclass
class _Actor:
    slot: int
    handle: object = None
    incarnation: int = 0
    alive: bool = False
    model: str | None = None  # the model of the last unit given (a vLLM engine keeps it loaded)
    inflight: list = dataclasses.field(default_factory=list)
    node: str = ""
    pid: int = 0
    engine: str = ""
    units: int = 0
    pools: int = 0
    samples: int = 0
    completion_tokens: int = 0
    busy_s: float = 0.0
    cpu_s: float = 0.0
    restarts: int = 0


def _pool_keys(df: pl.DataFrame) -> set:
    return set(df.select(POOL_KEY).unique().iter_rows())


class _Driver:
    def __init__(self, settings: RunSettings, engine: Engine, options: RayOptions, task: Task,
                 records: list[Record], ckpt: Checkpoint, progress: bool, log: Callable[[str], None]):
        self.settings, self.engine, self.options, self.task = settings, engine, options, task
        self.records, self.ckpt, self.progress, self.log = records, ckpt, progress, log
        self.stages = list(task.stages)
        self.models = list(settings.models)
        self.block_size = options.block or settings.batch_size
        self.blocks = [records[i:i + self.block_size] for i in range(0, len(records), self.block_size)]
        self.block_of = {r.id: b for b, recs in enumerate(self.blocks) for r in recs}
        self.stage_index = {st.name: i for i, st in enumerate(self.stages)}
        self.rows: dict[tuple[int, int], list[pl.DataFrame]] = defaultdict(list)
        self.fusions: dict[tuple[int, int], list[pl.DataFrame]] = defaultdict(list)
        self.done: set = set()
        self.fused: set = set()
        self.duplicates = 0
        self._bar = None
        self.drawn_tokens = 0
        self.drawn = 0
        self.units_done = 0
        self.restarts = 0
        self.lines: dict[tuple[str, str], dict] = {(st.name, m.name): {"pools": 0, "samples": 0, "completion_tokens": 0}
                                                   for st in self.stages for m in self.models}
        self._ingest(ckpt.frame, ckpt.fusion_frame, resumed=True)
        self.contexts: list[dict[str, dict[str, float]]] = [dict() for _ in self.stages]
        self.contexts[0] = {r.id: {S.ROOT_CONTEXT: 1.0} for r in records}
        self.covered: list[dict[str, float]] = [dict() for _ in self.stages]
        self.cursor = [0] * len(self.blocks)
        self.waiting: list[set[str]] = [set() for _ in self.blocks]
        self.queue: list[Unit] = []
        self.inflight: dict = {}  # ref -> (actor slot, its incarnation, unit)
        self.actors: list[_Actor] = []
        self.token = secrets.token_hex(6)
        self.t_start = time.time()
        self.t_run = None  # when the actors were up: rates are over the drawing, not Ray's start-up
        self._last_report = 0.0
        self._ray_started = False
        self._ended = False
        self.ray = None
        self.n_actors = 0

    # ---------------------------------------------------------------- pools in
    def _ingest(self, rows: pl.DataFrame, fusions: pl.DataFrame, *, resumed: bool = False,
                actor: _Actor | None = None) -> int:
        """Take finished pools (and fusions) once each; returns the new pools."""
        new_pools = 0
        if rows.height:
            rows, keys = self._keep_once(rows, self.done, "sample_index")
            new_pools = len(keys)
            self._file_by_block(rows, self.rows)
            for (stage, model), part in rows.partition_by(["stage", "model"], as_dict=True).items():
                ln = self.lines.get((stage, model))
                if ln is not None:
                    ln["pools"] += part.select("question_id", "context").unique().height
                    ln["samples"] += part.height
                    ln["completion_tokens"] += int(part["completion_tokens"].sum())
            if not resumed:
                self.drawn += rows.height
                self.drawn_tokens += int(rows["completion_tokens"].sum())
                if actor is not None:
                    actor.pools += new_pools
                    actor.samples += rows.height
                    actor.completion_tokens += int(rows["completion_tokens"].sum())
        if fusions.height:
            fusions, _ = self._keep_once(fusions, self.fused, "subset")
            self._file_by_block(fusions, self.fusions)
        if self._bar is not None and new_pools:
            self._bar.update(new_pools)
        return new_pools

    def _keep_once(self, frame: pl.DataFrame, taken: set, item: str) -> tuple[pl.DataFrame, set]:
        """One copy of each row (pool key + `item`), and only the pools not in `taken`: an
        orphan actor could have published a pool twice, or after its units were given to
        another. Adds the new pool keys to `taken` and counts the dropped pools."""
        frame = frame.unique(POOL_KEY + [item], keep="first", maintain_order=True)
        keys = _pool_keys(frame)
        dup = keys & taken
        if dup:
            self.duplicates += len(dup)
            drop = pl.DataFrame(list(dup), schema={k: pl.String for k in POOL_KEY}, orient="row")
            frame = frame.join(drop, on=POOL_KEY, how="anti")
            keys -= dup
        taken |= keys
        return frame, keys

    def _file_by_block(self, frame: pl.DataFrame, into: dict[tuple[int, int], list[pl.DataFrame]]) -> None:
        """Append the frame's rows to `into[(stage index, block)]`."""
        frame = frame.with_columns(pl.col("question_id").replace_strict(self.block_of, default=-1,
                                                                        return_dtype=pl.Int64).alias("_block"))
        for (stage, b), part in frame.partition_by(["stage", "_block"], as_dict=True).items():
            # a question or stage not of this run cannot come with a matching fingerprint
            if b >= 0 and stage in self.stage_index:
                into[(self.stage_index[stage], b)].append(part.drop("_block"))

    # ---------------------------------------------------------------- the plan
    def _frame(self, store: dict, key, schema) -> pl.DataFrame:
        parts = store.get(key) or []
        if len(parts) > 1:
            store[key] = parts = [pl.concat(parts)]
        return parts[0] if parts else pl.DataFrame(schema=schema)

    def _advance(self, b: int) -> None:
        """Queue block b's next units: expand its upstream answers first (later stages)."""
        recs = self.blocks[b]
        while self.cursor[b] < len(self.stages):
            si = self.cursor[b]
            st = self.stages[si]
            if recs[0].id not in self.contexts[si]:
                up_rows = self._frame(self.rows, (si - 1, b), SHARD_SCHEMA)
                up_fus = self._frame(self.fusions, (si - 1, b), FUSION_SCHEMA)
                new, cov = expand_questions(self.task, si, recs, self.contexts[si - 1], up_rows, up_fus, self.settings)
                self.contexts[si].update(new)
                self.covered[si].update(cov)
                self.ckpt.save_contexts(st.name, self.contexts[si])  # the plan so far, for collect status
            units = []
            for mi, m in enumerate(self.models):
                pools = [(r.id, c) for r in recs for c in sorted(self.contexts[si][r.id])]
                pending = tuple(p for p in pools if (st.name, m.name, *p) not in self.done)
                fuse = (tuple(p for p in pools if (st.name, m.name, *p) not in self.fused)
                        if st.aggregation == "llm_fuse" else ())
                if pending or fuse:
                    units.append(Unit(unit_tag(si, mi, b), si, st.name, m, b, pending, fuse))
            if units:
                self.queue.extend(units)
                self.waiting[b] = {u.tag for u in units}
                return
            self.cursor[b] += 1

    def _unit_finished(self, unit: Unit) -> None:
        self.units_done += 1
        b = unit.block
        self.waiting[b].discard(unit.tag)
        if not self.waiting[b]:
            self.cursor[b] += 1
            self._advance(b)

    def _remaining(self, unit: Unit) -> Unit | None:
        pending = tuple(p for p in unit.pools if (unit.stage, unit.model.name, *p) not in self.done)
        fuse = tuple(p for p in unit.fuse if (unit.stage, unit.model.name, *p) not in self.fused)
        return dataclasses.replace(unit, pools=pending, fuse=fuse) if (pending or fuse) else None

    def planned(self) -> dict[tuple[str, str], tuple[int, bool]]:
        """(stage, model) -> (pools planned so far, whether every question's plan is known)."""
        out = {}
        for si, st in enumerate(self.stages):
            ctx = self.contexts[si]
            n = sum(len(v) for v in ctx.values())
            for m in self.models:
                out[(st.name, m.name)] = (n, len(ctx) == len(self.records))
        return out

    def coverage(self) -> dict[str, float]:
        cov = {}
        for si, st in enumerate(self.stages):
            cov[st.name] = 1.0 if si == 0 else (float(np.mean([self.covered[si][r.id] for r in self.records]))
                                                if self.records else 1.0)
        return cov

    # ---------------------------------------------------------------- actors
    def start(self) -> None:
        from search.sweep.executors import import_ray, init_ray

        ray = self.ray = import_ray()
        opts, eng = self.options, self.engine
        want = opts.actors
        if opts.address == "local":
            n_guess = want or (len(eng.base_urls) if eng.kind == "openai" else 1)
            cpus = max(os.cpu_count() or 1, int(np.ceil(n_guess * opts.cpus_per_actor)))
            self._ray_started = init_ray("local", num_cpus=cpus)
        else:
            self._ray_started = init_ray(opts.address)
        res = ray.cluster_resources()
        if eng.kind == "vllm" and eng.device != "cpu":
            from ..backends.vllm_backend import vllm_device

            if vllm_device() == "cpu":  # vLLM's CPU build: asking Ray for GPUs would find none
                eng = self.engine = dataclasses.replace(eng, device="cpu")
                self.log("vLLM here is a CPU build: each actor asks Ray for no GPU; its engine takes "
                         "--gpu-memory-utilization of its node's memory")
        gpus_each = eng.gpus_per_actor
        if want is None and eng.kind == "vllm" and eng.device == "cpu":
            want = 1  # engines share the node's memory: more only when asked (--actors)
        if want is None:
            if eng.kind == "vllm":
                want = int(res.get("GPU", 0) // max(gpus_each, 1e-9))
                if want < 1:
                    raise InputError("--ray", f"the Ray cluster has {res.get('GPU', 0):g} GPUs, an actor needs "
                                              f"{gpus_each:g} (--tensor-parallel)")
            else:
                want = len(eng.base_urls)
        if eng.kind == "openai" and want < len(eng.base_urls):
            raise InputError("--actors", f"{want} actors for {len(eng.base_urls)} endpoints: every endpoint needs one")
        if eng.kind == "openai":
            for e, bound in enumerate(eng.concurrency):
                mates = sum(1 for k in range(want) if eng.endpoint_of(k) == e)
                if bound < mates:
                    raise InputError("--concurrency", f"endpoint {e + 1} is shared by {mates} actors but allows "
                                                      f"{bound} requests at once: give it at least {mates}")
        if want * opts.cpus_per_actor > res.get("CPU", 0) + 1e-9:
            raise InputError("--actors", f"{want} actors x {opts.cpus_per_actor:g} CPUs exceed the cluster's "
                                         f"{res.get('CPU', 0):g} CPUs (lower --actor-cpus or --actors)")
        if want * gpus_each > res.get("GPU", 0) + 1e-9:
            raise InputError("--actors", f"{want} actors x {gpus_each:g} GPUs exceed the cluster's "
                                         f"{res.get('GPU', 0):g} GPUs")
        self.n_actors = want
        self._remote = ray.remote(CollectWorker)
        self._report(force=True, state="starting")  # the token the actors look for
        self.actors = [_Actor(slot=k) for k in range(want)]
        for a in self.actors:
            self._spawn(a)
        self._greet(self.actors)
        self.t_run = time.time()
        for b in range(len(self.blocks)):
            self._advance(b)
        if self.progress:
            from tqdm import tqdm

            total = sum(n for n, _ in self.planned().values())
            self._bar = tqdm(total=total, initial=len(self.done), desc=f"collect on {want} Ray actors", unit="pool",
                             file=sys.stderr, dynamic_ncols=True, disable=None)

    def _spawn(self, a: _Actor) -> None:
        a.handle = self._remote.options(
            num_cpus=self.options.cpus_per_actor, num_gpus=self.engine.gpus_per_actor,
            name=f"collect-{self.token}-{a.slot}-{a.incarnation}", namespace=RAY_NAMESPACE, max_restarts=0,
        ).remote(self.settings, self.engine, a.slot, self.n_actors, str(self.ckpt.dir), self.token,
                 (os.getpid(), socket.gethostname()))
        a.alive, a.model, a.inflight = True, None, []

    def _greet(self, actors: list[_Actor]) -> None:
        ray = self.ray
        refs = [a.handle.hello.remote() for a in actors]
        try:
            infos = ray.get(refs, timeout=600)
        except ray.exceptions.GetTimeoutError:
            raise InputError("--ray", "the actors did not start within 600 s (is the cluster short of the "
                                      "resources they ask for?)") from None
        except ray.exceptions.RayTaskError as e:
            self._raise_cause(e, "actor start")
        except ray.exceptions.RayActorError as e:  # its constructor failed, or its node went away
            raise BackendError("--ray", "an actor could not start: "
                               + " ".join(str(getattr(e, "error_msg", e)).split())[:300]) from None
        for a, info in zip(actors, infos):
            a.node, a.pid, a.engine = info["node"], info["pid"], info["engine"]

    def _raise_cause(self, e, where: str):
        cause = getattr(e, "cause", None)
        if isinstance(cause, ToolError):
            raise cause from None
        msg = " ".join(f"{type(cause or e).__name__}: {cause or e}".split())[:300]
        raise BackendError(where, msg) from None

    def _pick(self, a: _Actor) -> Unit | None:
        if not self.queue:
            return None
        self.queue.sort(key=lambda u: (u.block, u.stage_index, self.models.index(u.model)))
        k = 0
        if self.engine.kind == "vllm" and a.model is not None:  # keep the loaded engine while it has work
            k = next((i for i, u in enumerate(self.queue) if u.model.name == a.model), 0)
        return self.queue.pop(k)

    def _submit(self) -> None:
        for depth in range(1, self.options.queue + 1):
            for a in self.actors:
                if not a.alive or len(a.inflight) >= depth:
                    continue
                unit = self._pick(a)
                if unit is None:
                    return
                key = (unit.stage_index, unit.block)
                fuse_rows = None
                if unit.fuse:
                    drawn = set(unit.fuse) - set(unit.pools)
                    if drawn:
                        fr = self._frame(self.rows, key, SHARD_SCHEMA)
                        fuse_rows = fr.filter(pl.col("model") == unit.model.name)
                ref = a.handle.run.remote(unit, list(self.blocks[unit.block]), fuse_rows)
                a.inflight.append(ref)
                a.model = unit.model.name
                self.inflight[ref] = (a.slot, a.incarnation, unit)

    def loop(self) -> None:
        ray = self.ray
        while self.queue or self.inflight:
            self._submit()
            if not self.inflight:
                raise BackendError("--ray", "no live actors are left to draw the remaining pools")
            refs = list(self.inflight)
            ready, _ = ray.wait(refs, num_returns=1, timeout=1.0)
            if ready:  # and every other unit that has finished meanwhile
                ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            for ref in ready:
                self._settle(ref)
            self._report()
        self._report(force=True, state="assembling")

    def _settle(self, ref) -> None:
        ray = self.ray
        slot, incarnation, unit = self.inflight.pop(ref)
        a = self.actors[slot]
        if ref in a.inflight:  # not when the actor that had it was replaced
            a.inflight.remove(ref)
        try:
            res: UnitResult = ray.get(ref)
        except ray.exceptions.RayActorError:
            self._lost(a, incarnation, unit)
            return
        except ray.exceptions.ObjectLostError:  # its node went away after the unit ended: the shards tell
            self._recover(unit)
            return
        except ray.exceptions.RayTaskError as e:
            self._raise_cause(e, f"Ray actor {slot} ({unit.stage} / {unit.model.name})")
        self._ingest(res.rows, res.fusions, actor=a)
        a.units += 1
        a.busy_s += res.seconds
        a.cpu_s += res.cpu_s
        self._unit_finished(unit)

    def _lost(self, a: _Actor, incarnation: int, unit: Unit) -> None:
        """A unit whose actor died: keep what it published, queue the rest, replace the actor."""
        if a.alive and a.incarnation == incarnation:
            a.alive = False
            try:  # unreachable rather than dead: it must not go on writing what another actor redraws
                self.ray.kill(a.handle, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
            if self.restarts >= self.options.max_restarts:
                self.log(f"Ray actor {a.slot} died (node {a.node or '?'}); no restarts left")
            else:
                self.restarts += 1
                a.restarts += 1
                a.incarnation += 1
                self.log(f"Ray actor {a.slot} died (node {a.node or '?'}); starting a new one")
                self._spawn(a)
                try:
                    self._greet([a])
                except BackendError:
                    a.alive = False
        self._recover(unit)

    def _recover(self, unit: Unit) -> None:
        """Take what a unit published before its result was lost; queue the rest."""
        folder = self.ckpt.dir
        rows = read_shards(folder, f"shard-{unit.tag}", SHARD_SCHEMA)
        fus = read_shards(folder, f"fusion-{unit.tag}", FUSION_SCHEMA)
        self._ingest(rows, fus, actor=None)
        rest = self._remaining(unit)
        if rest is None:
            self._unit_finished(unit)
        else:
            self.queue.append(rest)

    def stop(self, state: str) -> None:
        """End the actors (and a Ray instance this run started); write the last progress report."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._ended = True
        ray = self.ray
        if ray is not None:
            for a in self.actors:
                if a.handle is not None:
                    try:
                        ray.kill(a.handle, no_restart=True)
                    except Exception:  # noqa: BLE001 - already gone
                        pass
                a.alive = False
            if self._ray_started:
                ray.shutdown()
        try:
            self._report(force=True, state=state)
        except OSError:
            pass

    # ---------------------------------------------------------------- progress
    def _report(self, force: bool = False, state: str = "running") -> None:
        now = time.time()
        if not force and now - self._last_report < 1.0:
            return
        self._last_report = now
        el = max(now - (self.t_run or self.t_start), 1e-9)
        planned = self.planned()
        lines = [{"stage": s, "model": m, "pools_done": self.lines[(s, m)]["pools"],
                  "pools_planned": planned[(s, m)][0],
                  "planned_complete": planned[(s, m)][1], "samples": self.lines[(s, m)]["samples"],
                  "completion_tokens": self.lines[(s, m)]["completion_tokens"]} for s, m in self.lines]
        actors = [{"slot": a.slot, "node": a.node, "pid": a.pid, "engine": a.engine,
                   "state": "ended" if self._ended else ("alive" if a.alive else "dead"), "model": a.model,
                   "units": a.units, "pools": a.pools,
                   "samples": a.samples, "completion_tokens": a.completion_tokens, "busy_s": round(a.busy_s, 3),
                   "cpu_s": round(a.cpu_s, 3),
                   "tokens_per_s": round(a.completion_tokens / a.busy_s, 1) if a.busy_s > 0 else None,
                   "restarts": a.restarts, "queued": len(a.inflight)} for a in self.actors]
        report = {"token": self.token, "state": state, "driver": {"pid": os.getpid(), "host": socket.gethostname()},
                  "address": self.options.address, "block": self.block_size,
                  "started": _dt.datetime.fromtimestamp(self.t_start, _dt.timezone.utc).isoformat(timespec="seconds"),
                  "updated_unix": now, "elapsed_s": round(now - self.t_start, 3),
                  "drawing_s": round(el, 3), "samples_drawn": self.drawn,
                  "samples_per_s": round(self.drawn / el, 2), "tokens_per_s": round(self.drawn_tokens / el, 1),
                  "units_done": self.units_done, "units_queued": len(self.queue), "units_running": len(self.inflight),
                  "actor_restarts": self.restarts, "lines": lines, "actors": actors}
        atomic_write_text(self.ckpt.dir / PROGRESS_FILE, json.dumps(report, indent=1) + "\n")
        if self._bar is not None:
            self._bar.total = sum(n for n, _ in planned.values())
            alive = sum(a.alive for a in self.actors)
            self._bar.set_postfix_str(f"{self.drawn / el:.1f} samples/s, {self.drawn_tokens / el:.0f} tok/s, "
                                      f"{alive} actors", refresh=True)

    # ---------------------------------------------------------------- the store
    def assembled(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Every pool once, in a canonical order (so that the store does not depend on which
        actor finished first): samples by pool and index; fusions by pool, each pool's in the
        order it was drawn."""
        rows = [df for parts in self.rows.values() for df in parts]
        fus = [df for parts in self.fusions.values() for df in parts]
        rows = pl.concat(rows) if rows else pl.DataFrame(schema=SHARD_SCHEMA)
        fus = pl.concat(fus) if fus else pl.DataFrame(schema=FUSION_SCHEMA)
        rows = rows.sort(POOL_KEY + ["sample_index"])
        fus = fus.sort(POOL_KEY, maintain_order=True)
        return rows, fus
