"""Graph collection (`collect run --graph`): pools per (role, model, question, input key).

1. solve: one pool of `samples` outputs per (question, model), as a chain's first stage.
2. Input keys: per question, the distribution of the answers solve nodes hand on (every model's
   pool aggregated by majority vote at 1, 2, 4, ... samples over random subsets, as chain
   expansion estimates it, `expansion.upstream_distribution`), and from it the probability of
   each multiset of k answers read by a node with k independent parents (multinomial), every
   size k = 1..max inputs of the role weighted alike. The `expand_top` most probable keys per
   question and role get pools; any other key falls back at replay (reported per node). The
   mass they cover is reported per role.
3. refine and aggregate: one pool of `role_samples` outputs per (question, model, key). The
   prompt shows, for each answer of the key, a representative output: the first solve sample
   (models in order, then sample index) that gave that answer (for code, its program).
4. Throughput for latency, per model: given (`--throughput`), or measured: the prefill speed
   from one timed request per model that generates a single token on the longest solve prompt,
   and the decode speed as the longest completion of every sampling request over its wall time
   less its prefill. The OpenAI-compatible backend times requests; the offline vLLM engine
   does not, so there the throughput must be given (or latency stays unknown, NaN at replay).

Pools go through the chain runner's `draw_pools` (a checkpoint shard per batch, per-pool seeds),
so an interrupted graph collection resumes exactly as a chain's does.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections import Counter, defaultdict
from typing import Callable

import numpy as np
import polars as pl

from replay.errors import InputError
from replay.graph.keys import input_key

from ..backends import Backend
from ..tasks import Record, Task
from ..tasks.base import StageSpec
from .checkpoint import Checkpoint
from .draw import backend_for, draw_pools
from .expansion import upstream_distribution
from .settings import ModelSpec, RunSettings, pool_seed


class GraphTask:
    """A task seen as its graph roles: `stages` are the roles, `prompt` builds a role's prompt
    from the representative outputs of the answers a key holds; the rest is the task's."""

    def __init__(self, task: Task):
        if not task.graph_roles:
            raise InputError("--graph", f"task {task.name!r} collects no graph stores "
                                        "(graph tasks: math, aime, mmlu, humaneval)")
        self.task = task
        self.name = task.name
        agg = task.stages[0]
        descriptions = {"solve": "the question alone", "refine": "reads its parents' answers, writes a new one",
                        "aggregate": "reads several answers, chooses one"}
        self.stages = tuple(StageSpec(r, agg.aggregation, agg.scorer, descriptions.get(r, "")) for r in task.graph_roles)
        self.runs_untrusted_code = task.runs_untrusted_code
        self.reps: dict[tuple[str, str], str] = {}  # (question, answer) -> a representative output text

    def prompt(self, stage: str, record: Record, upstream: str):
        if stage == "solve":
            return self.task.prompt(self.task.stages[0].name, record, "")
        import json

        answers = json.loads(upstream)
        return self.task.role_prompt(stage, record, [self.reps.get((record.id, a), a) for a in answers])

    def __getattr__(self, name):  # parse, score_many, metrics_many, gold, data_files, load ...
        return getattr(self.task, name)

    def stage_gold(self, stage: str, record: Record):
        return None


def multiset_probability(counts: Counter, dist: dict[str, float]) -> float:
    """P(k independent draws from `dist` form this multiset) (multinomial)."""
    k = sum(counts.values())
    p = math.factorial(k)
    for a, c in counts.items():
        p *= dist.get(a, 0.0) ** c / math.factorial(c)
    return p


def graph_keys(dist: dict[str, float], top: int, max_inputs: int, candidates: int = 8) -> dict[str, float]:
    """The `top` most probable input keys (canonical) of nodes reading 1..max_inputs answers,
    each size weighted 1/max_inputs; ties by the key. Answers: the `candidates` likeliest."""
    answers = [a for a, _ in sorted(dist.items(), key=lambda kv: (-kv[1], kv[0]))[:candidates]]
    scored = []
    for k in range(1, max_inputs + 1):
        for combo in itertools.combinations_with_replacement(answers, k):
            scored.append((multiset_probability(Counter(combo), dist) / max_inputs, input_key(combo)))
    scored.sort(key=lambda x: (-x[0], x[1]))
    return {key: p for p, key in scored[:top] if p > 0} or {scored[0][1]: scored[0][0]}


def solve_distribution(rows: pl.DataFrame, records: list[Record], settings: RunSettings) -> dict[str, dict[str, float]]:
    """Per question: the share of each answer among what solve nodes hand on."""
    solve = rows.filter(pl.col("stage") == "solve").sort("question_id", "model", "sample_index")
    grouped = solve.group_by("question_id", "model", maintain_order=True).agg("answer", "score")
    pools: dict[str, list] = defaultdict(list)
    for qid, _model, answers, scores in grouped.iter_rows():
        pools[qid].append((1.0 / len(settings.models), list(answers), list(scores)))
    out = {}
    for r in records:
        rng = np.random.default_rng(pool_seed(settings.seed, "solve", "graph-keys", r.id, ""))
        out[r.id] = upstream_distribution(pools[r.id], "majority_vote", draws=settings.expand_draws, rng=rng)
    return out


def representatives(rows: pl.DataFrame, models: tuple[ModelSpec, ...]) -> dict[tuple[str, str], str]:
    """(question, answer) -> the text of the first solve sample giving it (models in order)."""
    order = {m.name: i for i, m in enumerate(models)}
    solve = (rows.filter(pl.col("stage") == "solve")
             .with_columns(pl.col("model").replace_strict(order, default=len(order)).alias("_m"))
             .sort("question_id", "_m", "sample_index")
             .unique(["question_id", "answer"], keep="first", maintain_order=True))
    return {(q, a): t for q, a, t in solve.select("question_id", "answer", "text").iter_rows()}


def collect_graph(settings: RunSettings, task: GraphTask, records: list[Record], ckpt: Checkpoint,
                  make_backend: Callable[[ModelSpec], Backend], progress: bool, log: Callable[[str], None]
                  ) -> tuple[int, dict[str, float], dict]:
    """Solve pools, then the expanded refine and aggregate pools (module docstring). Returns the
    samples drawn, the key coverage per role and the throughput per model."""
    by_id = {r.id: r for r in records}
    backends: dict[str, Backend] = {}
    drawn = 0
    coverage = {"solve": 1.0}
    role_settings = dataclasses.replace(settings, samples=settings.role_samples or settings.samples)
    try:
        for model in settings.models:
            pending = [(r.id, "") for r in records if ("solve", model.name, r.id, "") not in ckpt.done]
            if pending:
                drawn += draw_pools(task, "solve", model, pending, by_id, settings, ckpt,
                                    backend_for(model, backends, make_backend), progress)
        rows = ckpt.all_rows()
        dist = solve_distribution(rows, records, settings)
        task.reps = representatives(rows, settings.models)
        max_inputs = {"refine": settings.refine_inputs, "aggregate": settings.aggregate_inputs}
        for role in [r for r in task.task.graph_roles if r != "solve"]:
            keys = {q: graph_keys(dist[q], settings.expand_top, max_inputs.get(role, 2)) for q in dist}
            coverage[role] = float(np.mean([sum(k.values()) for k in keys.values()]))
            ckpt.save_contexts(role, keys)
            for model in settings.models:
                pending = [(r.id, k) for r in records for k in sorted(keys[r.id])
                           if (role, model.name, r.id, k) not in ckpt.done]
                if pending:
                    drawn += draw_pools(task, role, model, pending, by_id, role_settings, ckpt,
                                        backend_for(model, backends, make_backend), progress)
        throughput = _throughput(settings, task, records, ckpt.all_rows(), backends, make_backend, log)
    finally:
        for b in backends.values():
            b.close()
    return drawn, coverage, throughput


def _throughput(settings: RunSettings, task: GraphTask, records: list[Record], rows: pl.DataFrame,
                backends: dict, make_backend, log) -> dict:
    """{model: {"prefill_tokens_per_s", "decode_tokens_per_s", "source", ...}} (module docstring)."""
    out = {}
    given = settings.throughput or {}
    for model in settings.models:
        if model.name in given:
            p, d = given[model.name]
            out[model.name] = {"prefill_tokens_per_s": float(p), "decode_tokens_per_s": float(d), "source": "given"}
            continue
        mine = rows.filter((pl.col("model") == model.name) & pl.col("request_s").is_not_null())
        if mine.height == 0:
            out[model.name] = {"prefill_tokens_per_s": None, "decode_tokens_per_s": None,
                               "source": "unknown: the backend does not time requests; give --throughput"}
            log(f"throughput of {model.name!r} not measured (backend {settings.backend}): latency will be unknown; "
                "give --throughput NAME=PREFILL/DECODE")
            continue
        reqs = (mine.group_by("stage", "question_id", "context", "request_s")
                .agg(pl.col("prompt_tokens").first(), pl.col("completion_tokens").max()))
        # prefill: one request that generates a single token on the longest solve prompt
        solve = rows.filter((pl.col("model") == model.name) & (pl.col("stage") == "solve"))
        qid = solve.sort("prompt_tokens", "question_id", descending=[True, False])["question_id"][0]
        rec = next(r for r in records if r.id == qid)
        backend = backend_for(model, backends, make_backend)
        t0 = time.perf_counter()
        probe = backend.generate([task.prompt("solve", rec, "")], 1, 0.0, 1,
                                 pool_seed(settings.seed, "probe", model.name, qid, ""))
        t_pre = max(time.perf_counter() - t0, 1e-6)
        prefill = float(probe[0][0].prompt_tokens) / t_pre
        spent = (reqs["request_s"] - reqs["prompt_tokens"] / prefill).clip(lower_bound=1e-6)
        decode = float(reqs["completion_tokens"].sum()) / float(spent.sum())
        out[model.name] = {"prefill_tokens_per_s": prefill, "decode_tokens_per_s": decode,
                           "source": "measured", "requests": reqs.height, "prefill_probe_tokens": int(probe[0][0].prompt_tokens),
                           "prefill_probe_s": t_pre}
    return out
