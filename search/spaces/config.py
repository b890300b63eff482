"""The configuration space, read off a store: per stage, a candidate model and a sample count.

A point is a `replay.engine.Config`; its cost is in normalised budget units per question (one
unit: one single-sample pass of the smallest model on the cheapest stage), judged by its
expected cost over the store's pools (`replay.engine.expected_units`: the engine's budget rule,
the same on every question set), so `estimate_cost` is exact and every searcher knows before a
replay whether a configuration is feasible; the measured cost of the drawn outputs is kept in
each trial's metrics. `--max-fallback F` also makes a configuration infeasible when more than F
of its draws fell back to another pool (an upstream answer that was not collected), measured on
the training questions. How the searchers walk this space (the grid, the random candidates, the
Optuna parametrisations, AgentTTS's insight-1 plan) is in config_walks.py.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, Hashable, Iterator, Sequence

import numpy as np

from replay.engine import (Config, StageChoice, _largest_pool, _pool_means, budget_unit, default_budget, evaluate_batch,
                           within_budget)
from replay.expected import expected_units_table
from replay.errors import ConfigError
from replay.store import Store

from ..llm.answer import AnswerProblem
from ..llm.prompts import CONFIG_GUIDELINES, CONFIG_ROLE, INSIGHT1, INSIGHT2, INSIGHT3
from ..trial import Evaluation, Objective, Trial
from .base import SCHEMA_ENUM_LIMIT, AgentBrief, GridWalk, Insight, Parametrisation, Space
from .config_walks import CountsParametrisation, FeasibleGrid, SharesParametrisation, insight1_plan, random_configs

if TYPE_CHECKING:
    from ..settings import ConfigSpaceSettings


# How feasibility is judged, in the archive header: archives written before (no such key) judged
# it by the measured cost of the training draws, and cannot be resumed by this version.
BUDGET_RULE = "expected cost over the store's pools"
SCAN_TOP = 10  # configurations a scanning grid keeps besides the selection rules' picks


@dataclass(frozen=True)
class ConfigSpace(Space):
    """What a searcher may propose. Counts for stage i, model m are 1..largest pool (for
    llm_fuse stages, the subset sizes that were stored), capped by `max_samples`."""

    kind: ClassVar[str] = "config"
    cost_unit: ClassVar[str] = "units"
    supports: ClassVar[frozenset[str]] = frozenset({"grid", "scan", "parametrisation", "stages"})
    answer_problem_kinds: ClassVar[tuple[str, ...]] = ("unknown_model", "invalid_samples")
    estimate_slack: ClassVar[float] = 0.0  # the estimate is the engine's budget rule itself

    store: Store = field(repr=False, compare=False)
    stages: tuple[str, ...]
    models: tuple[tuple[str, ...], ...]  # candidates per stage
    counts: tuple[dict[str, tuple[int, ...]], ...]  # per stage: model -> allowed sample counts
    params: dict[str, float]  # model -> parameter count
    budget: float  # normalised units per question
    # Per stage: model -> (fixed units, units per sample), a linear summary of the expected cost
    # read off the store's pools (prompt prefilled once plus stored-fusion tokens; one completion
    # per sample), for the searchers' heuristics; `estimate_cost` uses the exact figures.
    costs: tuple[dict[str, tuple[float, float]], ...]
    # [S, M, N+1]: the expected cost in units of (stage, model index, count): the budget rule
    unit_table: np.ndarray = field(repr=False, compare=False, default=None)
    max_fallback: float | None = None  # more fallback than this (a share of draws) is infeasible

    @classmethod
    def from_store(cls, store: Store, *, models: Sequence[str] | None = None, max_samples: int | None = None,
                   budget: float | None = None, max_fallback: float | None = None) -> "ConfigSpace":
        """The space of `store`, narrowed to `models` and to counts up to `max_samples`.

        Parameters:
            models: candidate models to keep (default: every candidate of every stage).
            max_samples: the largest sample count to consider.
            budget: normalised units per question (default: every stage once with its
                largest model, at its expected cost).
            max_fallback: the largest share of draws that may fall back to another pool
                (default: no limit).

        Raises:
            ConfigError: a graph store (its configurations are graphs, not a model and a count
                per stage).
        """
        if store.manifest.kind == "graph":
            raise ConfigError(store.name, "is a graph store (kind graph): its configurations are collaboration "
                                          "graphs, not a model and count per stage; this space cannot search it "
                                          "(evaluate graphs with replay eval, compare or sweep --grid)")
        largest = _largest_pool(store)
        names = store.manifest.model_names
        if models:
            unknown = [m for m in models if m not in names]
            if unknown:
                raise ConfigError("--models", f"unknown model {unknown[0]!r} (models: {', '.join(names)})")
        stage_models, stage_counts = [], []
        for si, st in enumerate(store.stages):
            cands = tuple(m for m in store.candidate_models(si) if not models or m in models)
            if not cands:
                raise ConfigError("--models", f"no candidate model left for stage {st.name!r}")
            counts = {}
            for m in cands:
                top = int(largest[si, store.model_index(m)])
                if max_samples is not None:
                    top = min(top, max_samples)
                if st.aggregation == "llm_fuse":
                    counts[m] = tuple(n for n in store.fusion_sizes(si) if n <= top) or (1,)
                else:
                    counts[m] = tuple(range(1, top + 1))
            stage_models.append(cands)
            stage_counts.append(counts)
        if budget is None:
            budget = default_budget(store)
        return cls(store=store, stages=store.manifest.stage_names, models=tuple(stage_models),
                   counts=tuple(stage_counts), params={m.name: m.params for m in store.models},
                   budget=float(budget), costs=_cost_model(store, stage_models),
                   unit_table=expected_units_table(store, budget_unit(store)),
                   max_fallback=None if max_fallback is None else float(max_fallback))

    @classmethod
    def from_settings(cls, store: Store, settings: "ConfigSpaceSettings", objective: Objective) -> "ConfigSpace":
        """The space a search of `objective` uses. The default budget is the expected cost of
        the paper's reference configuration (every stage once with its largest model), so that
        it is feasible by the budget rule, whatever the questions."""
        budget = settings.budget
        if budget is None:
            budget = default_budget(store)
        space = cls.from_store(store, models=settings.models, max_samples=settings.max_samples, budget=budget,
                               max_fallback=settings.max_fallback)
        cheapest = sum(min(space.stage_cost(i, m, min(space.counts[i][m])) for m in space.models[i])
                       for i in range(len(space.stages)))
        if not within_budget(cheapest, budget):
            raise ConfigError("--budget", f"{budget:.4g} units is below the cheapest configuration of the space "
                              f"(about {cheapest:.4g} units)")
        return space

    # ---- identity and the archive

    def contains(self, point: Any) -> bool:
        return isinstance(point, Config) and len(point.stages) == len(self.stages) and all(
            ch.model in self.models[i] and ch.samples in self.counts[i][ch.model] for i, ch in enumerate(point.stages))

    def key(self, point: Config) -> Hashable:
        return point

    def encode(self, point: Config) -> list[list]:
        return [[c.model, c.samples] for c in point.stages]

    def decode(self, value: Any) -> Config:
        return Config(tuple(StageChoice(str(m), int(n)) for m, n in value))

    def label(self, point: Config) -> str:
        return str(point)

    def size(self) -> int:
        n = 1
        for c in self.counts:
            n *= sum(len(v) for v in c.values())
        return n

    def to_json(self) -> dict[str, Any]:
        out = {
            "stages": list(self.stages),
            "models": [list(m) for m in self.models],
            "counts": [{m: _compact(c[m]) for m in c} for c in self.counts],
            "budget": self.budget,
            "budget_rule": BUDGET_RULE,
            "size": self.size(),
        }
        if self.max_fallback is not None:
            out["max_fallback"] = self.max_fallback
        return out

    def all_configs(self) -> Iterator[Config]:
        for combo in itertools.product(*self.choices()):
            yield Config(tuple(combo))

    def choices(self) -> list[list[StageChoice]]:
        """Every (model, count) of each stage, in the space's order."""
        return [[StageChoice(m, n) for m in self.models[i] for n in self.counts[i][m]] for i in range(len(self.stages))]

    # ---- cost

    @cached_property
    def _model_pos(self) -> dict[str, int]:
        """Model name -> its index in the store (`store.model_index` rebuilds the name tuple on
        every call; the rules searcher's budget fills look costs up tens of thousands of times)."""
        return {m: i for i, m in enumerate(self.store.manifest.model_names)}

    @cached_property
    def _count_costs(self) -> dict[tuple[int, str], tuple[np.ndarray, np.ndarray]]:
        """(stage, model) -> (its allowed counts, the expected units of each): filled on use."""
        return {}

    def _model_index(self, model: str) -> int:
        mi = self._model_pos.get(model)
        return self.store.model_index(model) if mi is None else mi  # an unknown name: the store's error

    def stage_cost(self, stage: int, model: str, samples: int) -> float:
        """Expected units per question of one stage's choice (replay.expected)."""
        t = self.unit_table
        return float(t[stage, self._model_index(model), min(int(samples), t.shape[2] - 1)])

    def estimate_cost(self, point: Config) -> float:
        """The expected cost in budget units per question, over the store's pools: exactly
        `replay.engine.expected_units`, the figure the engine judges feasibility by."""
        return sum(self.stage_cost(i, ch.model, ch.samples) for i, ch in enumerate(point.stages))

    def max_affordable(self, config: Config, stage: int, model: str, budget: float | None = None) -> int:
        """The largest allowed count for `model` on `stage`, other stages as in `config`, whose
        expected cost stays within the budget; 0 when none does."""
        budget = self.budget if budget is None else budget
        rest = sum(self.stage_cost(i, ch.model, ch.samples) for i, ch in enumerate(config.stages) if i != stage)
        counts, costs = self._stage_count_costs(stage, model)
        if budget is None:
            return int(counts.max())
        # the same float sums and the same rule as `within_budget(rest + stage_cost(...))` per count
        ok = counts[within_budget(rest + costs, budget)]
        return int(ok.max()) if ok.size else 0

    def _stage_count_costs(self, stage: int, model: str) -> tuple[np.ndarray, np.ndarray]:
        key = (stage, model)
        hit = self._count_costs.get(key)
        if hit is None:
            t = self.unit_table
            counts = np.asarray(self.counts[stage][model], dtype=np.int64)
            hit = (counts, t[stage, self._model_index(model), np.minimum(counts, t.shape[2] - 1)].astype(np.float64))
            self._count_costs[key] = hit
        return hit

    def with_choice(self, config: Config, stage: int, model: str, samples: int) -> Config:
        stages = list(config.stages)
        stages[stage] = StageChoice(model, int(samples))
        return Config(tuple(stages))

    def largest_model(self, stage: int) -> str:
        return max(self.models[stage], key=lambda m: self.params[m])

    def smallest_model(self, stage: int) -> str:
        return min(self.models[stage], key=lambda m: self.params[m])

    # ---- sampling and moves

    def sample(self, rng: np.random.Generator) -> Config:
        choices = []
        for i in range(len(self.stages)):
            m = self.models[i][int(rng.integers(len(self.models[i])))]
            counts = self.counts[i][m]
            choices.append(StageChoice(m, int(counts[int(rng.integers(len(counts)))])))
        return Config(tuple(choices))

    def random_points(self, rng: np.random.Generator, seen: set) -> Iterator[Config]:
        return random_configs(self, rng, seen)

    def neighbours(self, point: Config) -> Iterator[Config]:
        """Configs that differ in one stage: the count one step either way, then a doubling or
        halving, then another model at the same count (or its nearest allowed)."""
        for i, ch in enumerate(point.stages):
            counts = sorted(self.counts[i][ch.model])
            j = counts.index(ch.samples) if ch.samples in counts else 0
            near = [counts[x] for x in (j - 1, j + 1) if 0 <= x < len(counts)]
            far = [min(counts, key=lambda n: abs(n - ch.samples * f)) for f in (2, 0.5)]
            for n in near + far:
                yield self.with_choice(point, i, ch.model, n)
            for m in self.models[i]:
                if m != ch.model:
                    cm = self.counts[i][m]
                    yield self.with_choice(point, i, m, min(cm, key=lambda n: abs(n - ch.samples)))

    def initial_points(self) -> list[Config]:
        return insight1_plan(self)

    # ---- scoring

    def evaluate(self, points: Sequence[Config], objective: Objective, *, enforce_budget: bool = True) -> list[Evaluation]:
        """One replay call. The cost is the expected cost (the engine's budget rule); the
        measured cost of the draws is `metrics["measured_units"]`. With `enforce_budget`, a
        point over the budget, or over `max_fallback`, is infeasible (no score); its reason
        is `metrics["infeasible"]`."""
        results = evaluate_batch(self.store, list(points), questions=objective.questions,
                                 replicates=objective.replicates, seed=objective.seed,
                                 budget=self.budget if enforce_budget else None)
        unit = budget_unit(self.store)
        out = []
        for r in results:
            metrics = {"measured_units": r.units, "fallback_rate": r.fallback_rate,
                       "stage_units": [st.flops / unit for st in r.stages],
                       "stage_scores": [st.score for st in r.stages]}
            feasible = r.feasible
            if not feasible:
                metrics["infeasible"] = (f"over budget: expected cost {r.expected_units:.4g} units > "
                                         f"{self.budget:.4g}")
            elif enforce_budget and self.max_fallback is not None and r.fallback_rate > self.max_fallback + 1e-12:
                feasible = False
                metrics["infeasible"] = (f"fallback {r.fallback_rate:.1%} of draws > --max-fallback "
                                         f"{self.max_fallback:.1%}")
            out.append(Evaluation(feasible=feasible, score=r.score if feasible else None,
                                  stderr=r.stderr if feasible else None, cost=r.expected_units, tokens=r.tokens,
                                  metrics=metrics, per_question=r.per_question if feasible else None))
        return out

    # ---- optional capabilities

    def grid(self, *, cap: int | None, max_points: int, prune: bool = True) -> GridWalk:
        return FeasibleGrid(self, max_points=max_points, prune=prune)

    def parametrisation(self, *, within_budget: bool = False) -> Parametrisation:
        return SharesParametrisation(self) if within_budget else CountsParametrisation(self)

    def scan_best(self, objective: Objective) -> tuple[Config, int] | None:
        scan = self._scan(objective)
        best = self._best(scan, objective)
        return None if best is None else (best[0], int(scan.score.size))

    def scan_picks(self, objective: Objective) -> tuple[list[Config], dict[str, Any]]:
        """The pick of every selection rule (search/selection.py) over the whole space: one
        compiled scan for the means, then one more that sums, per configuration, what the
        rules' intervals need over the training questions (replay.scan_stats: per-question
        means and their differences from the best-mean configuration, without keeping them).
        Returns the distinct picks (the `mean` rule's first) and what the scan did: {"scanned",
        "feasible", "wall_s", "picks": {rule: label}, "top": the SCAN_TOP best by training mean}. With `max_fallback` the rules rank by
        the budget only (the scan does not measure fallback): their picks are scored as trials,
        which marks any over the fallback limit infeasible, and the best configuration by
        mean within the limit is added."""
        import time

        from replay.scan_stats import question_sums

        from ..selection import RULES, pick_indices

        t0 = time.perf_counter()
        scan = self._scan(objective)
        feas = np.flatnonzero((scan.expected <= self.budget * (1 + 1e-9)).ravel())
        info: dict[str, Any] = {"scanned": int(scan.score.size), "feasible": int(len(feas))}
        if not len(feas):
            info["wall_s"] = time.perf_counter() - t0
            return [], info
        mean = scan.score.ravel()[feas]
        cost = scan.expected.ravel()[feas]
        order = feas.astype(float)
        b = pick_indices(mean, cost, order, rules=("mean",))["mean"]
        K = scan.score.shape[1]
        ref = evaluate_batch(self.store, [scan.config(*divmod(int(feas[b]), K))], questions=objective.questions,
                             replicates=objective.replicates, seed=objective.seed)[0].per_question
        sums = question_sums(self.store, scan, questions=objective.questions, replicates=objective.replicates,
                             seed=objective.seed, reference=ref)
        n = sums.n

        def flat(a):
            return a.ravel()[feas]

        picks = pick_indices(mean, cost, order, sd=flat(sums.sd), mean_d=flat(sums.mean_diff), sd_d=flat(sums.sd_diff),
                             n=n, rules=RULES)
        # what the scan found besides the picks, kept instead of a trial per configuration: the
        # best feasible configurations by training mean, ties to the cheaper (feasible by the
        # budget; with max_fallback, as for the picks, the scan does not know the fallback rate)
        top = np.lexsort((cost, -mean))[:SCAN_TOP]
        info["top"] = [{"config": str(scan.config(*divmod(int(feas[j]), K))), "score": float(mean[j]),
                        "units": float(cost[j])} for j in top]
        points = []
        for rule in RULES:
            i, k = divmod(int(feas[picks[rule]]), scan.score.shape[1])
            c = scan.config(i, k)
            info.setdefault("picks", {})[rule] = str(c)
            if c not in points:
                points.append(c)
        if self.max_fallback is not None:
            best = self._best(scan, objective)
            if best is not None and best[0] not in points:
                points.append(best[0])
        info["wall_s"] = time.perf_counter() - t0
        return points, info

    def optimum(self, objective: Objective, limit: int) -> dict[str, Any] | None:
        """Every configuration scored by `replay.engine.scan_space` (memo tables, then a
        compiled scan of the product: the same numbers as evaluate_batch, without a Python
        object per configuration); the best feasible one wins, ties to the cheapest. None when
        the space has more than `limit` configurations."""
        if self.size() > limit:
            return None
        scan = self._scan(objective)
        best = self._best(scan, objective)
        feasible = int((scan.expected <= self.budget * (1 + 1e-9)).sum())
        out = {"config": None if best is None else str(best[0]), "score": None if best is None else best[1],
               "units": None if best is None else best[2], "evaluated": int(scan.score.size), "feasible": feasible,
               "space_size": self.size()}
        if self.max_fallback is not None:
            out["max_fallback"] = self.max_fallback
        return out

    def _best(self, scan, objective: Objective) -> tuple[Config, float, float] | None:
        """(config, score, expected units) of the best feasible configuration of a scan: the
        highest mean, ties to the cheapest; with `max_fallback`, the first in that order whose
        replay stays within the fallback limit (the scan does not measure fallback)."""
        if self.max_fallback is None:
            best = scan.best(self.budget)
            if best is None:
                return None
            cfg = best[0]
            return cfg, best[1], self.estimate_cost(cfg)
        ok = (scan.expected <= self.budget * (1 + 1e-9)).ravel()
        flat = np.flatnonzero(ok)
        flat = flat[np.lexsort((scan.expected.ravel()[flat], -np.round(scan.score.ravel()[flat], 10)))]
        K = scan.score.shape[1]
        for start in range(0, len(flat), 512):
            cfgs = [scan.config(*divmod(int(j), K)) for j in flat[start:start + 512]]
            for c, ev in zip(cfgs, self.evaluate(cfgs, objective)):
                if ev.feasible:
                    return c, float(ev.score), float(ev.cost)
        return None

    def _scan(self, objective: Objective):
        from replay.engine import scan_space

        return scan_space(self.store, self.choices(), questions=objective.questions, replicates=objective.replicates,
                          seed=objective.seed)

    # ---- text

    def title(self) -> str:
        return f"{self.budget:.4g} units/question; space {self.size()} configs"

    def cost_text(self, cost: float) -> str:
        return f"{cost:.4g} units"

    def summary_rows(self) -> list[tuple[str, str]]:
        return [("budget", self.title())]

    def headline(self) -> str:
        return f"{self.size()} configurations; budget {self.budget:.4g} units/question"

    def describe(self) -> str:
        lines = [f"Stages, in pipeline order: {', '.join(self.stages)}.",
                 f"Budget: {self.budget:.4g} cost units per question. One unit is one single-sample pass of the "
                 "smallest model on the cheapest stage; a stage costs about (parameters x tokens), its prompt "
                 "once plus one completion per sample."]
        for i, st in enumerate(self.stages):
            lines.append(f"Stage {st!r}, candidate models:")
            for m in self.models[i]:
                desc = f"  - {m} ({_params(self.params.get(m, math.nan))} parameters), samples {_counts(self.counts[i][m])}"
                per = self._per_sample(i, m)
                if per is not None:
                    desc += f", about {per:.3g} units per extra sample"
                lines.append(desc)
        base = Config(tuple(StageChoice(self.largest_model(i), 1) for i in range(len(self.stages))))
        lines.append(f"For reference, every stage once with its largest model costs about {self.estimate_cost(base):.4g} units.")
        return "\n".join(lines)

    def _per_sample(self, stage: int, model: str) -> float | None:
        counts = sorted(self.counts[stage][model])
        if len(counts) < 2:
            return None
        base = [StageChoice(self.smallest_model(i), min(self.counts[i][self.smallest_model(i)]))
                for i in range(len(self.stages))]
        lo, hi = list(base), list(base)
        lo[stage], hi[stage] = StageChoice(model, counts[0]), StageChoice(model, counts[1])
        return (self.estimate_cost(Config(tuple(hi))) - self.estimate_cost(Config(tuple(lo)))) / (counts[1] - counts[0])

    def point_columns(self) -> list[str]:
        return list(self.stages)

    def point_cells(self, point: Config) -> list[str]:
        return [f"{ch.model} x{ch.samples}" for ch in point.stages]

    def cost_columns(self) -> list[str]:
        cols = ["cost"]
        if self._has_stage_scores():
            cols.append("stage scores (" + ", ".join(self.stages) + ")")
        if len(self.stages) > 1:
            cols.append("fallback")
        return cols

    def cost_cells(self, trial: Trial) -> list[str]:
        cells = [f"{trial.cost:.3g}"]
        if self._has_stage_scores():
            sc = trial.metrics.get("stage_scores") or ()
            cells.append(", ".join("-" if x is None or not math.isfinite(x) else f"{x:.3f}" for x in sc)
                         if trial.feasible and sc else "-")
        if len(self.stages) > 1:
            fb = trial.fallback_rate
            cells.append("-" if fb is None else f"{fb:.1%}")
        return cells

    def _has_stage_scores(self) -> bool:
        """The store scores some stage before the last (a gold answer per stage): the prompt
        then shows each stage's score, which says where a configuration loses."""
        if len(self.stages) < 2:
            return False
        return bool((self.store.arrays.gold[:, :-1] >= 0).any())

    # ---- LLM answers: {"<stage>": {"model": <string>, "samples": <integer>}, ...}

    def answer_shape(self) -> str:
        return "{" + ", ".join(f'"{s}": {{"model": <candidate model of {s}>, "samples": <integer>}}'
                               for s in self.stages) + "}"

    def answer_rule(self) -> str:
        return "Every trial names every stage; \"samples\" is a JSON integer among the stage's allowed counts."

    def answer_example(self) -> dict:
        return config_json(Config(tuple(StageChoice(self.largest_model(i), 1) for i in range(len(self.stages)))),
                           self.stages)

    def point_from_answer(self, value: Any, where: str) -> Config:
        stages = self.stages
        want = ", ".join(map(repr, stages))
        if not isinstance(value, dict):
            raise AnswerProblem("schema_errors", f"{where} must be an object keyed by stage ({want})")
        if set(value) != set(stages):
            extra = sorted(set(value) - set(stages))
            miss = [s for s in stages if s not in value]
            what = f"unknown stage(s) {', '.join(map(repr, extra))}" if extra else f"missing stage(s) {', '.join(map(repr, miss))}"
            raise AnswerProblem("schema_errors", f"{where}: {what}; a trial names exactly the stages {want}")
        choices = []
        for st in stages:
            c = value[st]
            if not isinstance(c, dict) or set(c) != {"model", "samples"}:
                raise AnswerProblem("schema_errors", f"{where}, stage {st!r}: expected {{\"model\": <string>, \"samples\": <integer>}}")
            if not isinstance(c["model"], str):
                raise AnswerProblem("schema_errors", f"{where}, stage {st!r}: \"model\" must be a string")
            n = c["samples"]
            if isinstance(n, bool) or not isinstance(n, int):
                raise AnswerProblem("schema_errors", f"{where}, stage {st!r}: \"samples\" must be a JSON integer, got {json.dumps(n)}")
            choices.append(StageChoice(c["model"], n))
        return Config(tuple(choices))

    def answer_problems(self, point: Config, where: str) -> list[AnswerProblem]:
        problems = []
        for i, (st, ch) in enumerate(zip(self.stages, point.stages)):
            if ch.model not in self.models[i]:
                problems.append(AnswerProblem("unknown_model", f"{where}: model {ch.model!r} is not a candidate of stage "
                                              f"{st!r} (candidates: {', '.join(self.models[i])})"))
            elif ch.samples not in self.counts[i][ch.model]:
                problems.append(AnswerProblem("invalid_samples", f"{where}: stage {st!r}: {ch.samples} samples is not "
                                              f"allowed for {ch.model} (allowed: {_counts(self.counts[i][ch.model])})"))
        return problems

    def answer_schema(self) -> dict:
        """Every stage: one of its candidate models with one of that model's allowed counts."""
        def choice(i: int, m: str) -> dict:
            counts = sorted(self.counts[i][m])
            n = {"type": "integer", "enum": counts} if len(counts) <= SCHEMA_ENUM_LIMIT else \
                {"type": "integer", "minimum": counts[0], "maximum": counts[-1]}
            return {"type": "object", "properties": {"model": {"type": "string", "enum": [m]}, "samples": n},
                    "required": ["model", "samples"], "additionalProperties": False}

        props = {st: {"anyOf": [choice(i, m) for m in self.models[i]]} for i, st in enumerate(self.stages)}
        return {"type": "object", "properties": props, "required": list(self.stages), "additionalProperties": False}

    def agent_brief(self) -> AgentBrief:
        return AgentBrief(role=CONFIG_ROLE, guideline_hint=CONFIG_GUIDELINES,
                          insights=(Insight("insight1", INSIGHT1), Insight("insight2", INSIGHT2),
                                    Insight("insight3", INSIGHT3)))


def config_json(config: Config, stages: tuple[str, ...]) -> dict:
    """A configuration as an agent writes it (the inverse of `point_from_answer`)."""
    return {st: {"model": ch.model, "samples": ch.samples} for st, ch in zip(stages, config.stages)}


def _compact(counts: tuple[int, ...]) -> str | list[int]:
    """'1..64' for a contiguous range, else the list."""
    if counts and list(counts) == list(range(counts[0], counts[-1] + 1)):
        return f"{counts[0]}..{counts[-1]}"
    return list(counts)


def _counts(counts: tuple[int, ...]) -> str:
    c = sorted(counts)
    if c == list(range(c[0], c[-1] + 1)) and len(c) > 2:
        return f"{c[0]}..{c[-1]}"
    return ", ".join(map(str, c))


def _params(p: float) -> str:
    if not math.isfinite(p) or p <= 0:
        return "unknown"
    return f"{p / 1e9:.3g}B" if p >= 1e8 else f"{p / 1e6:.3g}M"


def _cost_model(store: Store, stage_models) -> tuple[dict[str, tuple[float, float]], ...]:
    """Linear cost model per (stage, model) over all questions (replay.engine.estimate_units'
    figures): fixed units and units per sample, for the searchers' heuristics."""
    qidx = store.question_indices(None)
    prompt, comp, fuse = _pool_means(store)
    unit = budget_unit(store)
    out = []
    for s, cands in enumerate(stage_models):
        row = {}
        for m in cands:
            mi = store.model_index(m)
            flops_per_token = 2.0 * float(store.arrays.model_params[mi]) / unit
            row[m] = (float(np.mean(prompt[qidx, s, mi] + fuse[qidx, s, mi])) * flops_per_token,
                      float(np.mean(comp[qidx, s, mi])) * flops_per_token)
        out.append(row)
    return tuple(out)
