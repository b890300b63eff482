"""How searchers walk the configuration space: the structure-aware parts of random, grid, bo
and AgentTTS's initialisation, kept with the space they exploit.

- `random_configs`: uniform over the configurations the cost model says may be feasible
  (estimate within the budget plus its slack), without repeats: spaces up to ENUMERATE_LIMIT
  are enumerated once and shuffled, larger ones rejection-sampled from the uniform product
  distribution (which is uniform on the accepted set).
- `PrefixGrid`: every configuration, level by level, with exact pruning. A stage's draws and
  cost depend only on the stages before it (the replay's random streams are per stage, and a
  stage's pool is keyed by the upstream answer), and later stages cost at least zero. So once a
  prefix (stages 0..k) is measured over budget, every configuration extending it is infeasible
  and is skipped. Level k scores each surviving prefix extended by every choice of stage k, the
  later stages at their cheapest choice; those are configurations of the space, so each counts
  as a trial, and a configuration is never scored twice. A one-stage space is a single batch.
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
from .base import ESTIMATE_SLACK, Dim

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
        self.cost = np.array([space.costs[stage][m][0] + n * space.costs[stage][m][1] for m, n in pairs])

    def __len__(self) -> int:
        return len(self.models)

    def choice(self, k: int) -> StageChoice:
        return StageChoice(self.models[k], int(self.counts[k]))


def random_configs(space: Any, rng: np.random.Generator, seen: set) -> Iterator[Config]:
    """Untried configurations (not in `seen`; each yielded one is added), uniform over those
    whose estimated cost is within the budget plus ESTIMATE_SLACK; ends when none is left."""
    stages = [_StageChoices(space, i) for i in range(len(space.stages))]
    limit = space.budget * (1 + ESTIMATE_SLACK)

    def config(ks) -> Config:
        return Config(tuple(st.choice(int(k)) for st, k in zip(stages, ks)))

    if space.size() <= ENUMERATE_LIMIT:
        sizes = [len(s) for s in stages]
        cost = np.zeros(sizes)
        for i, st in enumerate(stages):
            shape = [1] * len(sizes)
            shape[i] = sizes[i]
            cost = cost + st.cost.reshape(shape)
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
# The exhaustive grid, level by level, with prefix pruning


class PrefixGrid:
    """The grid walk of the configuration space (see the module docstring)."""

    def __init__(self, space: Any, *, max_points: int, prune: bool = True):
        self.space = space
        self.max_points = int(max_points)
        self.prune = bool(prune)
        n = len(space.stages)
        self._choices = space.choices()
        # the cheapest choice per stage (by the cost model), to fill the stages after the prefix
        self._filler = [min(ch, key=lambda c, i=i: space.costs[i][c.model][0] + c.samples * space.costs[i][c.model][1])
                        for i, ch in enumerate(self._choices)]
        self._n = n
        self._level = 0
        self._prefixes: list[tuple[StageChoice, ...]] = [()]
        self._ext: list[tuple[StageChoice, ...]] | None = None  # the prefixes of the level being scored
        self._level_configs: list[Config] = []
        self._asked = 0
        self._pruned = 0

    def _budget_ok(self, t: Trial, upto: int) -> bool:
        stage_units = t.metrics.get("stage_units") or ()
        if not stage_units:  # no per-stage costs (an old archive): no pruning
            return True
        return sum(stage_units[: upto + 1]) <= self.space.budget * (1 + 1e-9)

    def advance(self, results: dict[Hashable, Trial]) -> None:
        """After a prefix level is scored: keep the prefixes whose measured cost fits."""
        if self._ext is None:
            return
        k = self._level - 1
        keep = []
        for p, c in zip(self._ext, self._level_configs):
            if self._budget_ok(results[c], k):
                keep.append(p)
            else:
                self._pruned += 1
        self._prefixes = keep
        self._ext = None

    def next_batch(self, results: dict[Hashable, Trial]) -> list[Config]:
        self.advance(results)
        n = self._n
        while self._level < n:
            k = self._level
            last = k == n - 1 or not self.prune
            if last:
                # every configuration extending the surviving prefixes (all of it without pruning)
                ext = [p + (c,) for p in self._prefixes for c in self._choices[k]]
                stages_left = range(k + 1, n)
                total = len(ext)
                for i in stages_left:
                    total *= len(self._choices[i])
                if self._asked + total > self.max_points:
                    raise ConfigError("grid", f"{self._asked + total} configurations to score after pruning "
                                      f"(max_configs {self.max_points}): narrow the space with --models or --max-samples")
                configs = [Config(p) for p in ext]
                for i in stages_left:
                    configs = [Config(c.stages + (x,)) for c in configs for x in self._choices[i]]
                self._level = n
            else:
                ext = [p + (c,) for p in self._prefixes for c in self._choices[k]]
                if self._asked + len(ext) > self.max_points:
                    raise ConfigError("grid", f"more than {self.max_points} configurations to score "
                                      f"(max_configs): narrow the space with --models or --max-samples")
                configs = [Config(p + tuple(self._filler[k + 1:])) for p in ext]
                self._ext = ext
                self._level_configs = configs
                self._level = k + 1
            fresh = [c for c in dict.fromkeys(configs) if c not in results]
            self._asked += len(fresh)
            if fresh:
                return fresh
            self.advance(results)
        return []

    def level_source(self) -> str:
        """Who proposed the last batch: a prefix level, or the full extension."""
        return "grid" if self._ext is None else f"grid-level{self._level - 1}"

    def state(self) -> dict[str, Any]:
        return {"level": self._level, "pruned_prefixes": self._pruned}


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
        # The estimate scatters around the measured cost (the default budget is the measured
        # cost of the largest models once): within the slack, the replay decides.
        return counts[0] if cost(counts[0]) <= space.budget * (1 + ESTIMATE_SLACK) else None
    lo, hi = 0, len(counts) - 1  # cost grows with the count: binary search the last fit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if cost(counts[mid]) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return counts[lo]
