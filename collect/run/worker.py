"""The actor side of `collect run --ray`: one engine per actor, one work unit per call.

A work unit is the pools of one (stage, model, question block) that are still missing, plus,
for an `llm_fuse` stage, the pools of the block whose fusions are missing. The actor draws them
through the same `draw_pools` / `fuse_pools` as a serial run (a batch per backend call, the
same per-pool seeds), so a pool's samples do not depend on which actor drew it. Each batch is
published by the actor itself as a shard in `<out>.partial/` under the unit's own name
(`shard-<unit>-NNNNNN.parquet`, `fusion-<unit>-NNNNNN.parquet`): when an actor dies mid-unit
the driver finds the batches it finished by that name and gives only the rest to another.

`Engine` says how an actor makes its backend: the offline vLLM engine on the GPUs Ray gave the
actor (num_gpus = tensor parallel size), or an OpenAI-compatible client bound to one of the
endpoints with its share of that endpoint's concurrency bound.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from replay.errors import InputError

from ..backends import Backend
from .checkpoint import FUSION_SCHEMA, SHARD_SCHEMA, publish_shard
from .settings import ModelSpec, RunSettings


@dataclass(frozen=True)
class Engine:
    """How each actor makes its backend (what `collect run --ray` was given).

    Args:
        kind: 'openai' or 'vllm'.
        base_urls: openai: the endpoints; actor k calls endpoint k mod len(base_urls).
        concurrency: openai: the concurrency bound of each endpoint (one per base URL), shared
            by the actors that call it (each gets an equal share, at least one request).
        api_key: openai: the key (sent to the actors through Ray, never written to a file).
        retries, timeout: openai: as `OpenAIBackend`'s.
        prompt_styles: {model name: 'chat' | 'completion'}.
        vllm: vllm: keyword arguments of `VLLMBackend` (tensor_parallel_size, gpu_memory_utilization,
            max_model_len, seed).
        device: vllm: the device of the vLLM build ('cuda' unless the driver found a CPU build:
            then an actor asks Ray for no GPU, and its engine takes gpu_memory_utilization of its
            node's memory for the KV cache).
    """

    kind: str
    base_urls: tuple[str | None, ...] = (None,)
    concurrency: tuple[int, ...] = (8,)
    api_key: str | None = field(default=None, repr=False)
    retries: int = 6
    timeout: float = 600.0
    prompt_styles: tuple[tuple[str, str], ...] = ()
    vllm: tuple[tuple[str, object], ...] = ()
    device: str = "cuda"

    @property
    def gpus_per_actor(self) -> float:
        if self.kind != "vllm" or self.device == "cpu":
            return 0.0
        return float(dict(self.vllm).get("tensor_parallel_size", 1))

    def endpoint_of(self, slot: int) -> int:
        return slot % max(1, len(self.base_urls))

    def actor_concurrency(self, slot: int, actors: int) -> int:
        """This actor's share of its endpoint's bound: the endpoint's actors split it (the
        first ones get the remainder), so together they never exceed it."""
        e = self.endpoint_of(slot)
        mates = [k for k in range(actors) if self.endpoint_of(k) == e]
        bound = self.concurrency[e]
        share, extra = divmod(bound, len(mates))
        return max(1, share + (1 if mates.index(slot) < extra else 0))

    def make(self, model: ModelSpec, slot: int, actors: int) -> Backend:
        if self.kind == "vllm":
            from ..backends.vllm_backend import VLLMBackend

            kw = dict(self.vllm)
            if int(kw.get("tensor_parallel_size") or 1) > 1:
                # the engine's workers as processes on the GPUs Ray gave this actor: vLLM's Ray
                # executor, inside a Ray actor, would ask the cluster for GPUs a second time
                kw.setdefault("distributed_executor_backend", "mp")
            return VLLMBackend(model.model_id, **kw)
        from ..backends.openai_compat import OpenAIBackend

        return OpenAIBackend(model.model_id, base_url=self.base_urls[self.endpoint_of(slot)], api_key=self.api_key,
                             max_concurrency=self.actor_concurrency(slot, actors), max_retries=self.retries,
                             timeout=self.timeout, prompt_style=dict(self.prompt_styles).get(model.name, "chat"))

    def describe(self, slot: int, actors: int) -> str:
        if self.kind == "vllm":
            return "vllm, CPU" if self.device == "cpu" else f"vllm, {self.gpus_per_actor:g} GPU"
        from replay.redact import redact_url

        e = self.endpoint_of(slot)
        return f"{redact_url(self.base_urls[e]) or 'OpenAI API'} x{self.actor_concurrency(slot, actors)}"


@dataclass(frozen=True)
class Unit:
    """One work unit: the missing pools of (stage, model, question block)."""

    tag: str  # the unit's name in shard names: u<stage index>m<model index>b<block>
    stage_index: int
    stage: str
    model: ModelSpec
    block: int
    pools: tuple[tuple[str, str], ...]  # (question, context) to draw
    fuse: tuple[tuple[str, str], ...] = ()  # (question, context) whose fusions to store (llm_fuse)


@dataclass(frozen=True)
class UnitResult:
    tag: str
    rows: pl.DataFrame
    fusions: pl.DataFrame
    seconds: float
    cpu_s: float  # the actor process's CPU time over the unit (all its threads): is it CPU-bound?
    actor: int
    node: str


def unit_tag(stage_index: int, model_index: int, block: int) -> str:
    return f"u{stage_index}m{model_index}b{block}"


class _UnitShards:
    """What `draw_pools` and `fuse_pools` write to: the unit's own shards in the partial folder
    (and, for fusions, the unit's pools to read)."""

    def __init__(self, folder: Path, tag: str, rows: pl.DataFrame):
        self.folder, self.tag = folder, tag
        self.rows = [rows]
        self.fusions: list[pl.DataFrame] = []
        self.next_shard = self.next_fusion = 0

    def add(self, df: pl.DataFrame) -> None:
        self.next_shard = publish_shard(self.folder, f"shard-{self.tag}", self.next_shard, df) + 1
        self.rows.append(df)

    def add_fusions(self, df: pl.DataFrame) -> None:
        self.next_fusion = publish_shard(self.folder, f"fusion-{self.tag}", self.next_fusion, df) + 1
        self.fusions.append(df)

    def all_rows(self) -> pl.DataFrame:
        return pl.concat(self.rows)


PROGRESS_FILE = "progress.json"  # in <out>.partial/: the driver's last report (collect status reads it)


class CollectWorker:
    """A Ray actor (wrapped by `ray.remote` in distributed.py): holds one engine at a time."""

    def __init__(self, settings: RunSettings, engine: Engine, slot: int, actors: int, partial: str, token: str,
                 driver: tuple[int, str] | None = None):
        if driver is not None:  # a driver killed with SIGKILL must not leave this actor writing shards
            from replay.orphans import watch_pid

            watch_pid(*driver)
        try:
            import numba

            numba.set_num_threads(1)
        except Exception:  # noqa: BLE001 - fewer threads already is fine
            pass
        from ..tasks import get_task

        self.settings, self.engine, self.slot, self.actors = settings, engine, slot, actors
        self.folder = Path(partial)
        self.token = token
        self.task = get_task(settings.task)
        self.backends: dict[str, Backend] = {}
        self.node = socket.gethostname()

    def hello(self) -> dict:
        """Where this actor runs; refuses a partial folder it cannot see (several nodes need a
        shared file system for OUT)."""
        import json

        try:
            seen = json.loads((self.folder / PROGRESS_FILE).read_text()).get("token")
        except (OSError, ValueError, AttributeError):
            seen = None
        if seen != self.token:
            raise InputError(self.folder, f"is not visible from Ray node {self.node}: OUT must be on a file "
                                          "system every node mounts at the same path")
        return {"node": self.node, "pid": os.getpid(), "engine": self.engine.describe(self.slot, self.actors)}

    def run(self, unit: Unit, records: list, rows: pl.DataFrame | None = None) -> UnitResult:
        from .draw import backend_for, draw_pools, fuse_pools

        t0, c0 = time.perf_counter(), time.process_time()
        by_id = {r.id: r for r in records}
        shards = _UnitShards(self.folder, unit.tag, rows if rows is not None else pl.DataFrame(schema=SHARD_SCHEMA))
        make = lambda m: self.engine.make(m, self.slot, self.actors)  # noqa: E731
        if unit.pools:
            draw_pools(self.task, unit.stage, unit.model, list(unit.pools), by_id, self.settings, shards,
                       backend_for(unit.model, self.backends, make), False)
        if unit.fuse:
            fuse_pools(self.task, unit.stage, unit.model, list(unit.fuse), by_id, self.settings, shards,
                       backend_for(unit.model, self.backends, make), False)
        new_rows = pl.concat(shards.rows[1:]) if len(shards.rows) > 1 else pl.DataFrame(schema=SHARD_SCHEMA)
        fus = pl.concat(shards.fusions) if shards.fusions else pl.DataFrame(schema=FUSION_SCHEMA)
        return UnitResult(unit.tag, new_rows, fus, time.perf_counter() - t0, time.process_time() - c0, self.slot,
                          self.node)

    def close(self) -> None:
        for b in self.backends.values():
            b.close()
        self.backends.clear()
