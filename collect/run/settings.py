"""`collect run`'s settings: the models (names, backend ids, parameter counts) and `RunSettings`,
with the fingerprint that decides whether a partial run may resume, and the per-pool seeds."""

from __future__ import annotations

import math

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from replay.errors import InputError

from ..importers.autotts import params_from_name
from ..tasks import Task


@dataclass(frozen=True)
class ModelSpec:
    name: str  # the name in the store (and in configs 'NAME:S')
    model_id: str  # what the backend loads or the server serves
    params: float
    params_source: str  # "--params" or "name"


def _params_value(text: str, where: str) -> float:
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


def parse_models(models: str, *, params: str | None = None) -> list[ModelSpec]:
    """The models of a collection, from the command line's --models and --params.

    A model given as a hub id or a path ('Qwen/Qwen3-8B') is named after its last part
    ('Qwen3-8B'); 'small=Qwen/Qwen3-0.6B' names it explicitly. Parameter counts come from
    --params, else from the name ('8B', '0.6B', '350M').

    Args:
        models: 'NAME[=ID],...': comma-separated hub ids, paths or server model names.
        params: 'NAME=COUNT,...' parameter counts (a number or '8B', '350M'), optional.

    Raises:
        InputError: an empty or duplicate name, a count that is not one, a model without a
            count, or a count for an unknown model.
    """
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
    """What a collection draws, built once by `collect run` (or by hand) and passed to
    `run_collection`.

    Args:
        task: the task name (collect/tasks: 2wiki, hotpotqa, cwq, webqsp, taskbench, chatdev,
            aime, qa, math).
        data: the task's dataset file (a folder for taskbench), in its official format.
        models: the models (`parse_models`).
        out: the store folder to write.
        samples: samples per pool (the largest count replay can use).
        temperature: sampling temperature.
        max_tokens: completion length cap per sample.
        seed: base of every pool's sampling seed and of the split.
        expand_top: upstream answers per question that get their own downstream pool.
        expand_min_share: expand an upstream answer only if at least this share of the
            aggregated outcomes.
        expand_draws: random subsets aggregated per (pool, count) to estimate those shares.
        fusions: fused subsets per size and pool, for llm_fuse stages.
        limit: use only the first N questions of the data.
        train: the train-split size when the data names no splits (default: half).
        batch_size: pools per backend call and per checkpoint shard.
        name: the store's name (default: the folder name).
        backend: 'vllm' or 'openai', recorded in the provenance.
        backend_options: the backend's options, recorded in the provenance (no secrets).
        command: the command line, recorded in the provenance and shown by `collect status`.
        keep_raw: keep every completion's text in `<out>.raw/`.
        fresh: discard a partial run of `out` instead of resuming it.
        force: replace an existing store at `out`.
        graph: collect a graph store (roles solve, refine, aggregate; collect/run/graph.py)
            instead of a chain of the task's stages.
        role_samples: graph stores: samples per refine and aggregate pool (default: samples).
        refine_inputs, aggregate_inputs: graph stores: the largest multiset of answers a
            refine / aggregate pool is collected for.
        throughput: graph stores: {model: (prefill, decode) tokens/s} given instead of measured.
    """

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

    graph: bool = False
    role_samples: int | None = None
    refine_inputs: int = 2
    aggregate_inputs: int = 3
    throughput: dict | None = None

    def prompt_style(self, model: str) -> str:
        return dict(self.prompt_styles).get(model, "chat")

    def check(self) -> None:
        if self.samples < 1:
            raise InputError("--samples", f"must be at least 1, got {self.samples}")
        if not (self.temperature >= 0 and math.isfinite(self.temperature)):
            raise InputError("--temperature", f"must be a finite number >= 0, got {self.temperature}")
        from replay.clitools import check_seed
        from replay.store import check_store_name

        check_seed("--seed", self.seed)
        if self.name is not None:
            check_store_name(self.name, "--name")  # before any GPU hour: the store is named at the end
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
        if self.expand_draws < 1:
            raise InputError("expand_draws", f"must be at least 1, got {self.expand_draws}")
        if self.role_samples is not None and self.role_samples < 1:
            raise InputError("--role-samples", f"must be at least 1, got {self.role_samples}")
        for flag, v in (("--refine-inputs", self.refine_inputs), ("--aggregate-inputs", self.aggregate_inputs)):
            if not 1 <= v <= 8:
                raise InputError(flag, f"must be between 1 and 8, got {v}")

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
        if self.graph:  # only graph runs carry these, so chain checkpoints keep resuming
            fp.update(graph=True, role_samples=self.role_samples or self.samples, refine_inputs=self.refine_inputs,
                      aggregate_inputs=self.aggregate_inputs)
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

