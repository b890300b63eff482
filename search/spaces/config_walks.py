"""How searchers walk the configuration space: the structure-aware parts of random, grid, bo
and AgentTTS's initialisation, kept with the space they exploit.

- `random_configs`: uniform over the feasible configurations (expected cost within the
  budget), without repeats: spaces up to ENUMERATE_LIMIT
  are enumerated once and shuffled, larger ones rejection-sampled from the uniform product
  distribution (which is uniform on the accepted set).
- `FeasibleGrid`: every configuration whose expected cost is within the budget. Feasibility is
  the engine's budget rule (the expected cost over the store's pools), known without a replay,
  so the grid never scores a configuration over the budget: it enumerates the product's costs
  once (vectorised) and scores the feasible configurations in batches, in the space's order.
- `CountsParametrisation` (TPE): per stage the model (categorical) and the sample count
  (integer, log scale; a count over the chosen model's largest pool goes to the nearest allowed).
  `SharesParametrisation` (GP): per stage the model, plus the share of the budget to spend
  (0..1] and, with several stages, a weight per stage; the counts are the largest that fit each
  stage's part of the spend (fixed costs paid first). Optuna's GPSampler fits complete trials
  only, so it cannot learn the budget constraint from rejected proposals: this keeps (nearly)
  every proposal within budget by construction, and still reaches configurations that spend
  less than all of it.
- `insight1_plan`: AgentTTS's initialisation (insight 1): for each stage, every other stage at
  its largest model with one sample, and each candidate model on the stage with as many
  samples as the budget allows.
"""

from __future__ import annotations

import math
from typing import Any, Hashable, Iterator

import numpy as np

from replay.engine import Config, StageChoice
from replay.errors import ConfigError

from ..trial import Trial
from .base import Dim

# Everything here takes the configuration space (search/spaces/config.py, which imports this
# module): `space` below is a ConfigSpace.

ENUMERATE_LIMIT = 2_000_000  # spaces up to this size are enumerated; larger ones rejection-sampled


# --------------------------------------------------------------------------------------------
# Random candidates


class _StageChoices:
    """One stage's (model, count) choices as flat arrays, with their estimated cost."""

    def __init__(self, space: Any, stage: int):
        pairs = [(m, n) for m in space.models[stage] for n in space.counts[stage][m]]
        self.models = [m for m, _ in pairs]
        self.counts = np.array([n for _, n in pairs], dtype=np.int64)
        self.cost = np.array([space.stage_cost(stage, m, n) for m, n in pairs])

    def __len__(self) -> int:
        return len(self.models)

    def choice(self, k: int) -> StageChoice:
        return StageChoice(self.models[k], int(self.counts[k]))


def random_configs(space: Any, rng: np.random.Generator, seen: set) -> Iterator[Config]:
    """Untried configurations (not in `seen`; each yielded one is added), uniform over those
    whose expected cost is within the budget (plus the space's estimate slack); ends when none
    is left."""
    stages = [_StageChoices(space, i) for i in range(len(space.stages))]
    limit = space.budget * (1 + space.estimate_slack) * (1 + 1e-9)

    def config(ks) -> Config:
        return Config(tuple(st.choice(int(k)) for st, k in zip(stages, ks)))

    if space.size() <= ENUMERATE_LIMIT:
        sizes, cost = _product_costs(space)
        for flat in rng.permutation(np.flatnonzero(cost.reshape(-1) <= limit)):
            cfg = config(np.unravel_index(flat, sizes))
            if cfg not in seen:
                seen.add(cfg)
                yield cfg
        return
    while True:
        # each candidate comes from fresh blocks of draws (the first untried accepted row)
        found = None
        for _ in range(64):
            draws = np.stack([rng.integers(0, len(s), size=4096) for s in stages], axis=1)
            cost = sum(s.cost[draws[:, i]] for i, s in enumerate(stages))
            for row in draws[cost <= limit]:
                cfg = config(row)
                if cfg not in seen:
                    found = cfg
                    break
            if found is not None:
                break
        if found is None:
            return
        seen.add(found)
        yield found


# --------------------------------------------------------------------------------------------
# The exhaustive grid: every feasible configuration


GRID_BATCH = 4096  # configurations per replay call


class FeasibleGrid:
    """The grid walk of the configuration space (see the module docstring): every configuration
    whose expected cost is within the budget (the budget rule, known without replay), in the
    space's order, in batches of GRID_BATCH; configurations over the budget are never scored.
    `prune=False` scores every configuration, the infeasible ones as infeasible trials."""

    def __init__(self, space: Any, *, max_points: int, prune: bool = True):
        self.space = space
        self.prune = bool(prune)
        self.max_points = int(max_points)
        self._flat: np.ndarray | None = None  # enumerated on first use (a grid that scans never walks)
        self._next = 0
        self._skipped = 0

    def _prepare(self) -> None:
        sizes, cost = _product_costs(self.space)
        flat = np.flatnonzero(cost.reshape(-1) <= self.space.budget * (1 + 1e-9)) if self.prune else np.arange(cost.size)
        if len(flat) > self.max_points:
            raise ConfigError("grid", f"{len(flat)} configurations to score (max_configs {self.max_points}): narrow "
                              "the space with --models or --max-samples")
        self._flat, self._sizes = flat, sizes
        self._stages = [_StageChoices(self.space, i) for i in range(len(self.space.stages))]
        self._skipped = int(cost.size - len(flat))

    def next_batch(self, results: dict[Hashable, Trial]) -> list[Config]:
        if self._flat is None:
            self._prepare()
        while self._next < len(self._flat):
            chunk = self._flat[self._next:self._next + GRID_BATCH]
            self._next += len(chunk)
            configs = [Config(tuple(st.choice(int(k)) for st, k in zip(self._stages, np.unravel_index(int(f), self._sizes))))
                       for f in chunk]
            fresh = [c for c in configs if c not in results]
            if fresh:
                return fresh
        return []

    def advance(self, results: dict[Hashable, Trial]) -> None:
        pass  # feasibility is known before the replay: nothing to learn from a batch

    def level_source(self) -> str:
        return "grid"

    def state(self) -> dict[str, Any]:
        if self._flat is None:
            return {}
        return {"feasible_configs": int(len(self._flat)) if self.prune else None, "skipped_over_budget": self._skipped,
                "scored": int(min(self._next, len(self._flat)))}


def _product_costs(space: Any) -> tuple[list[int], np.ndarray]:
    """The expected cost of every configuration of the product, [n_0, ..., n_S-1]."""
    stages = [_StageChoices(space, i) for i in range(len(space.stages))]
    sizes = [len(s) for s in stages]
    cost = np.zeros(sizes)
    for i, st in enumerate(stages):
        shape = [1] * len(sizes)
        shape[i] = sizes[i]
        cost = cost + st.cost.reshape(shape)
    return sizes, cost


# --------------------------------------------------------------------------------------------
# Optuna parametrisations


def nearest(allowed: tuple[int, ...], n: int) -> int:
    """The allowed count nearest to n on a log scale (ties to the smaller)."""
    return min(allowed, key=lambda a: (abs(math.log(a) - math.log(max(n, 1))), a))


class CountsParametrisation:
    """Per stage: the model (categorical) and the sample count (integer, log scale)."""

    def __init__(self, space: Any):
        self.space = space
        dims = []
        for i, st in enumerate(space.stages):
            all_counts = sorted({n for m in space.models[i] for n in space.counts[i][m]})
            dims.append(Dim(f"{st}.model", "categorical", choices=tuple(space.models[i])))
            dims.append(Dim(f"{st}.samples", "int", low=all_counts[0], high=all_counts[-1], log=all_counts[0] >= 1))
        self.dims = tuple(dims)

    def point(self, values: dict[str, Any]) -> Config:
        sp = self.space
        stages = []
        for i, st in enumerate(sp.stages):
            m = values[f"{st}.model"]
            stages.append(StageChoice(m, nearest(sp.counts[i][m], int(values[f"{st}.samples"]))))
        return Config(tuple(stages))

    def values(self, point: Config) -> dict[str, Any]:
        sp = self.space
        v: dict[str, Any] = {f"{st}.model": ch.model for st, ch in zip(sp.stages, point.stages)}
        v.update({f"{st}.samples": ch.samples for st, ch in zip(sp.stages, point.stages)})
        return v


class SharesParametrisation:
    """Per stage the model; the share of the budget to spend, and a weight per stage."""

    def __init__(self, space: Any):
        self.space = space
        dims = []
        for i, st in enumerate(space.stages):
            dims.append(Dim(f"{st}.model", "categorical", choices=tuple(space.models[i])))
            if len(space.stages) > 1:
                dims.append(Dim(f"{st}.weight", "float", low=0.01, high=1.0))
        dims.append(Dim("spend", "float", low=0.01, high=1.0))
        self.dims = tuple(dims)

    def point(self, values: dict[str, Any]) -> Config:
        sp = self.space
        models = [values[f"{st}.model"] for st in sp.stages]
        w = np.array([values.get(f"{st}.weight", 1.0) for st in sp.stages])
        rest = values["spend"] * sp.budget - sum(sp.costs[i][m][0] for i, m in enumerate(models))
        stages = []
        for i, m in enumerate(models):
            per = sp.costs[i][m][1]
            n = int(max(rest, 0.0) * w[i] / w.sum() / per) if per > 0 else max(sp.counts[i][m])
            stages.append(StageChoice(m, nearest(sp.counts[i][m], max(n, 1))))
        return Config(tuple(stages))

    def values(self, point: Config) -> dict[str, Any]:
        sp = self.space
        v: dict[str, Any] = {f"{st}.model": ch.model for st, ch in zip(sp.stages, point.stages)}
        var = [sp.costs[i][ch.model][1] * (ch.samples + 0.5) for i, ch in enumerate(point.stages)]
        fixed = sum(sp.costs[i][ch.model][0] for i, ch in enumerate(point.stages))
        v["spend"] = float(np.clip((fixed + sum(var)) / sp.budget, 0.01, 1.0))
        if len(sp.stages) > 1:
            v.update({f"{st}.weight": float(np.clip(x / max(var), 0.01, 1.0)) for st, x in zip(sp.stages, var)})
        return v


# --------------------------------------------------------------------------------------------
# AgentTTS's initialisation (insight 1)


def insight1_plan(space: Any) -> list[Config]:
    """For each stage i and candidate model m: every other stage at its largest model with its
    smallest count, stage i at m with the largest count whose estimated cost fits the budget (the
    smallest count if it is over only by the estimate's slack: the replay decides); (i, m)
    skipped when even that is over. Duplicates dropped."""
    plan: list[Config] = []
    S = len(space.stages)
    for i in range(S):
        others = [StageChoice(space.largest_model(j), min(space.counts[j][space.largest_model(j)])) for j in range(S)]
        for m in space.models[i]:
            n = _share_samples(space, others, i, m)
            if n is None:
                continue
            others_i = list(others)
            others_i[i] = StageChoice(m, n)
            cfg = Config(tuple(others_i))
            if cfg not in plan:
                plan.append(cfg)
    return plan


def _share_samples(space: Any, others: list[StageChoice], i: int, model: str) -> int | None:
    """The largest allowed count of `model` on stage i that keeps the config within budget."""
    counts = sorted(space.counts[i][model])

    def cost(n: int) -> float:
        c = list(others)
        c[i] = StageChoice(model, n)
        return space.estimate_cost(Config(tuple(c)))

    limit = space.budget * (1 + 1e-9)
    if cost(counts[0]) > limit:
        # within the space's estimate slack (none where the estimate is the budget rule), the
        # replay decides
        return counts[0] if space.maybe_feasible(Config(tuple(others[:i] + [StageChoice(model, counts[0])] + others[i + 1:]))) else None
    lo, hi = 0, len(counts) - 1  # cost grows with the count: binary search the last fit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if cost(counts[mid]) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return counts[lo]
