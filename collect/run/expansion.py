"""Expansion: which upstream answers get a pool of their own at the next stage.

Replay keys a later stage's pool by the aggregated answer of the stage before it, so the
contexts worth collecting are the aggregated answers replay will actually meet. For each
question we estimate how often each upstream answer comes out of the upstream stage's
aggregation: for every upstream model, every upstream pool (weighted by how often its own
context occurs) and every sample count in a grid (1, 2, 4, ... up to the pool size), we
aggregate `expand_draws` random subsets, exactly as replay would: by replay's own rules
(`replay/aggregation.py`), applied here to answer strings. The `expand_top` most frequent
answers with at least `expand_min_share` of the mass get a pool; the rest fall back at replay
time (replay counts and reports how often). The mass covered by the expanded keys is reported
per stage. After an `llm_fuse` stage, the mass is that of the stored fusions replay would pick.
"""

from __future__ import annotations

import math

from collections import defaultdict
from typing import Callable, Sequence

import numpy as np
import polars as pl

from replay import aggregation as rules
from replay.errors import InputError

from ..tasks import Record, Task
from ..tasks.scoring import join_items, split_items
from .settings import RunSettings, pool_seed

# (pool size, n) -> the positions of n outputs drawn without replacement, in draw order
Draw = Callable[[int, int], Sequence[int]]


def aggregate(aggregation: str, answers: Sequence[str], scores: Sequence[float]) -> str:
    """Aggregate drawn outputs (in draw order) the way replay does, on answer strings.

    Args:
        aggregation: the stage's rule: majority_vote, set_vote or best_score.
        answers: the drawn outputs' canonical answers (list answers joined by ITEM_SEP).
        scores: their stored scores.

    Returns:
        The aggregated answer: the majority (ties to the first drawn), the kept items joined
        (a set vote), or the best-scored answer (ties to the first drawn).

    Raises:
        InputError: an aggregation collection cannot expand after (llm_fuse has its own path).
    """
    if aggregation == "majority_vote":
        return rules.majority(answers)
    if aggregation == "set_vote":
        return join_items(rules.set_vote(split_items(a) for a in answers))
    if aggregation == "best_score":
        return answers[rules.best_index(scores)]
    raise InputError("--task", f"collection of stages aggregated by {aggregation!r} is not supported")


def size_grid(pool_size: int) -> list[int]:
    sizes, n = [], 1
    while n < pool_size:
        sizes.append(n)
        n *= 2
    sizes.append(pool_size)
    return sizes


def upstream_distribution(pools: Sequence[tuple[float, list[str], list[float]]], aggregation: str, *,
                          draws: int, rng: np.random.Generator | None = None,
                          draw: Draw | None = None) -> dict[str, float]:
    """Share of each aggregated answer over pools, sample counts and random draws.

    Args:
        pools: per upstream pool, (weight, answers, scores).
        aggregation: the upstream stage's rule.
        draws: random subsets aggregated per (pool, sample count) (one for the whole pool of
            a rule that does not depend on the order).
        rng: the generator of the subsets (a random permutation each).
        draw: instead of rng, the subsets' positions: draw(pool size, n) (tests pass replay's).
    """
    if draw is None:
        draw = lambda size, n: rng.permutation(size)[:n]  # noqa: E731
    mass: dict[str, float] = defaultdict(float)
    for weight, answers, scores in pools:
        size = len(answers)
        grid = size_grid(size)
        for n in grid:
            # the full pool aggregates to one answer whatever the order, except for ties
            k = draws if n < size or aggregation == "majority_vote" else 1
            for _ in range(k):
                idx = draw(size, n)
                a = aggregate(aggregation, [answers[i] for i in idx], [scores[i] for i in idx])
                mass[a] += weight / (len(grid) * k)
    total = sum(mass.values())
    return {a: m / total for a, m in mass.items()} if total > 0 else {}


def fused_distribution(pools: Sequence[tuple[float, dict[int, list[str]]]]) -> dict[str, float]:
    """Share of each fused answer when replay picks a stored fusion at each count of the grid.

    `pools`: (weight, {subset size: [fused answers]}) per upstream pool. At each count n of
    the collection grid (1, 2, 4, ..., pool size) replay picks uniformly among the stored
    fusions of size `replay.aggregation.fusion_size(sizes, n)` (n itself: the grid is what was
    stored), so every stored size counts once."""
    mass: dict[str, float] = defaultdict(float)
    for weight, by_size in pools:
        sizes = [k for k, v in by_size.items() if v]
        if not sizes:
            continue
        grid = size_grid(max(sizes))
        used = [rules.fusion_size(sizes, n) for n in grid]
        for z in used:
            for a in by_size[z]:
                mass[a] += weight / (len(used) * len(by_size[z]))
    total = sum(mass.values())
    return {a: m / total for a, m in mass.items()} if total > 0 else {}


def fusion_subsets(seed: int, stage: str, model: str, qid: str, context: str, pool_size: int,
                   per_size: int) -> list[list[int]]:
    """The subsets (sample indices, in draw order) fused for one pool: `per_size` per size >= 2,
    distinct as drawn (in order), or every ordering where a size has fewer. Two calls on the same
    ordered subset would send the same prompt, and could store two identical rows, which the
    store refuses as a duplicate."""
    rng = np.random.default_rng(pool_seed(seed, stage, model, qid, context + "\x00fuse"))
    out: list[list[int]] = []
    for k in size_grid(pool_size):
        if k < 2:
            continue
        seen: set[tuple[int, ...]] = set()
        want = min(per_size, math.perm(pool_size, k))
        while len(seen) < want:
            sub = tuple(int(i) for i in rng.permutation(pool_size)[:k])
            if sub not in seen:
                seen.add(sub)
                out.append(list(sub))
    return out


def expand(dist: dict[str, float], top: int, min_share: float) -> dict[str, float]:
    """The top-K answers by share (ties by the answer, for determinism) with >= min_share."""
    ranked = sorted(dist.items(), key=lambda kv: (-kv[1], kv[0]))
    kept = [(a, s) for a, s in ranked[:top] if s >= min_share] or ranked[:1]
    return dict(kept)


def expand_stage(task: Task, si: int, records: list[Record], contexts: dict[str, dict[str, float]],
                 rows: pl.DataFrame, fusions: pl.DataFrame,
                 settings: RunSettings) -> tuple[dict[str, dict[str, float]], float]:
    """Contexts (with weights) of stage si per question, from the pools of stage si-1, and the
    mean share of the upstream mass they cover."""
    new, covered = expand_questions(task, si, records, contexts, rows, fusions, settings)
    return new, float(np.mean([covered[r.id] for r in records])) if records else 1.0


def expand_questions(task: Task, si: int, records: list[Record], contexts: dict[str, dict[str, float]],
                     rows: pl.DataFrame, fusions: pl.DataFrame,
                     settings: RunSettings) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """`expand_stage` per question: the contexts of stage si and the share of the upstream mass
    they cover, for each question of `records`. A question's expansion reads only its own
    upstream pools (and a generator seeded by its id), so a block of questions expands alone,
    to what the whole stage would give it (what lets a `--ray` run start a block's next stage
    as soon as the block's upstream pools are in)."""
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
    covered: dict[str, float] = {}
    for r in records:
        rng = np.random.default_rng(pool_seed(settings.seed, task.stages[si].name, "expand", r.id, ""))
        dist = upstream_distribution(pools[r.id], up.aggregation, draws=settings.expand_draws, rng=rng)
        kept = expand(dist, settings.expand_top, settings.expand_min_share)
        covered[r.id] = sum(kept.values())
        total = sum(kept.values())
        new[r.id] = {a: s / total for a, s in kept.items()}
    return new, covered


def _expand_after_fusion(task: Task, si: int, records: list[Record], contexts: dict[str, dict[str, float]],
                         fusions: pl.DataFrame, settings: RunSettings) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    up = task.stages[si - 1]
    f = (fusions.filter(pl.col("stage") == up.name)
         .with_columns(pl.col("subset").list.len().alias("size"))
         .group_by("question_id", "model", "context", "size").agg("answer"))
    pools: dict[tuple, dict[int, list[str]]] = defaultdict(dict)
    for qid, model, ctx, size, answers in f.iter_rows():
        pools[(qid, model, ctx)][size] = sorted(answers)  # sorted: the same mass whatever the row order
    new: dict[str, dict[str, float]] = {}
    covered: dict[str, float] = {}
    for r in records:
        weighted = [(w / len(settings.models), pools.get((r.id, m.name, ctx), {}))
                    for ctx, w in contexts.get(r.id, {}).items() for m in settings.models]
        kept = expand(fused_distribution(weighted), settings.expand_top, settings.expand_min_share)
        covered[r.id] = sum(kept.values())
        total = sum(kept.values())
        new[r.id] = {a: s / total for a, s in kept.items()}
    return new, covered

