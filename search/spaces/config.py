"""The configuration space, read off a store: per stage, a candidate model and a sample count.

A point is a `replay.engine.Config`; its cost is in normalised budget units per question (one
unit: one single-sample pass of the smallest model on the cheapest stage). The expected cost
of every (stage, model) is a linear model read off the store's pools (`costs`), the same figure
as `replay.engine.estimate_units`; the replay's measured cost decides feasibility. How the
searchers walk this space (the grid's prefix pruning, the random candidates, the Optuna
parametrisations, AgentTTS's insight-1 plan) is in config_walks.py.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Hashable, Iterator, Sequence

import numpy as np

from replay.engine import Config, StageChoice, _largest_pool, _pool_means, budget_unit, default_budget, evaluate_batch
from replay.errors import ConfigError
from replay.store import Store

from ..llm.answer import AnswerProblem
from ..llm.prompts import CONFIG_GUIDELINES, CONFIG_ROLE, INSIGHT1, INSIGHT2, INSIGHT3
from ..trial import Evaluation, Objective, Trial
from .base import ESTIMATE_SLACK, SCHEMA_ENUM_LIMIT, AgentBrief, GridWalk, Insight, Parametrisation, Space
from .config_walks import CountsParametrisation, PrefixGrid, SharesParametrisation, insight1_plan, random_configs

if TYPE_CHECKING:
    from ..settings import ConfigSpaceSettings


@dataclass(frozen=True)
class ConfigSpace(Space):
    """What a searcher may propose. Counts for stage i, model m are 1..largest pool (for
    llm_fuse stages, the subset sizes that were stored), capped by `max_samples`."""

    kind: ClassVar[str] = "config"
    cost_unit: ClassVar[str] = "units"
    supports: ClassVar[frozenset[str]] = frozenset({"grid", "scan", "parametrisation", "stages"})
    answer_problem_kinds: ClassVar[tuple[str, ...]] = ("unknown_model", "invalid_samples")

    store: Store = field(repr=False, compare=False)
    stages: tuple[str, ...]
    models: tuple[tuple[str, ...], ...]  # candidates per stage
    counts: tuple[dict[str, tuple[int, ...]], ...]  # per stage: model -> allowed sample counts
    params: dict[str, float]  # model -> parameter count
    budget: float  # normalised units per question
    # Per stage: model -> (fixed units, units per sample), the expected cost model read off the
    # store's pools (prompt prefilled once plus stored-fusion tokens; one completion per sample).
    costs: tuple[dict[str, tuple[float, float]], ...]

    @classmethod
    def from_store(cls, store: Store, *, models: Sequence[str] | None = None, max_samples: int | None = None,
                   budget: float | None = None, questions=None) -> "ConfigSpace":
        """The space of `store`, narrowed to `models` and to counts up to `max_samples`.

        Parameters:
            models: candidate models to keep (default: every candidate of every stage).
            max_samples: the largest sample count to consider.
            budget: normalised units per question (default: every stage once with its
                largest model, on `questions`).
            questions: what the cost model averages over (default: all of the store's).
        """
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
            budget = default_budget(store, questions=questions)
        return cls(store=store, stages=store.manifest.stage_names, models=tuple(stage_models),
                   counts=tuple(stage_counts), params={m.name: m.params for m in store.models},
                   budget=float(budget), costs=_cost_model(store, stage_models, questions))

    @classmethod
    def from_settings(cls, store: Store, settings: "ConfigSpaceSettings", objective: Objective) -> "ConfigSpace":
        """The space a search of `objective` uses. The default budget is measured on the
        objective's questions with its own draws, so that the paper's reference configuration
        (every stage once with its largest model) is feasible by construction."""
        budget = settings.budget
        if budget is None:
            budget = default_budget(store, questions=objective.questions, replicates=objective.replicates,
                                    seed=objective.seed)
        space = cls.from_store(store, models=settings.models, max_samples=settings.max_samples, budget=budget,
                               questions=objective.questions)
        cheapest = sum(min(c[m][0] + c[m][1] * min(space.counts[i][m]) for m in c) for i, c in enumerate(space.costs))
        if cheapest > budget * (1 + ESTIMATE_SLACK):
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
        return {
            "stages": list(self.stages),
            "models": [list(m) for m in self.models],
            "counts": [{m: _compact(c[m]) for m in c} for c in self.counts],
            "budget": self.budget,
            "size": self.size(),
        }

    def all_configs(self) -> Iterator[Config]:
        for combo in itertools.product(*self.choices()):
            yield Config(tuple(combo))

    def choices(self) -> list[list[StageChoice]]:
        """Every (model, count) of each stage, in the space's order."""
        return [[StageChoice(m, n) for m in self.models[i] for n in self.counts[i][m]] for i in range(len(self.stages))]

    # ---- cost

    def estimate_cost(self, point: Config) -> float:
        """Expected cost in budget units per question (the same figure as
        replay.engine.estimate_units on the questions the space was built with)."""
        total = 0.0
        for i, ch in enumerate(point.stages):
            fixed, per = self.costs[i][ch.model]
            total += fixed + ch.samples * per
        return total

    def max_affordable(self, config: Config, stage: int, model: str, budget: float | None = None) -> int:
        """The largest allowed count for `model` on `stage`, other stages as in `config`, whose
        estimated cost stays within the budget (plus ESTIMATE_SLACK); 0 when none does."""
        budget = (self.budget if budget is None else budget) * (1 + ESTIMATE_SLACK)
        rest = sum(self.costs[i][ch.model][0] + ch.samples * self.costs[i][ch.model][1]
                   for i, ch in enumerate(config.stages) if i != stage)
        fixed, per = self.costs[stage][model]
        ok = [n for n in self.counts[stage][model] if rest + fixed + n * per <= budget]
        return max(ok) if ok else 0

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
        results = evaluate_batch(self.store, list(points), questions=objective.questions,
                                 replicates=objective.replicates, seed=objective.seed,
                                 budget=self.budget if enforce_budget else None)
        unit = budget_unit(self.store)
        return [Evaluation(feasible=r.feasible, score=r.score if r.feasible else None,
                           stderr=r.stderr if r.feasible else None, cost=r.units, tokens=r.tokens,
                           metrics={"stage_units": [st.flops / unit for st in r.stages],
                                    "stage_scores": [st.score for st in r.stages]})
                for r in results]

    # ---- optional capabilities

    def grid(self, *, cap: int | None, max_points: int, prune: bool = True) -> GridWalk:
        return PrefixGrid(self, max_points=max_points, prune=prune)

    def parametrisation(self, *, within_budget: bool = False) -> Parametrisation:
        return SharesParametrisation(self) if within_budget else CountsParametrisation(self)

    def scan_best(self, objective: Objective) -> tuple[Config, int] | None:
        scan = self._scan(objective)
        best = scan.best(self.budget)
        return None if best is None else (best[0], int(scan.score.size))

    def optimum(self, objective: Objective, limit: int) -> dict[str, Any] | None:
        """Every configuration scored by `replay.engine.scan_space` (memo tables, then a
        compiled scan of the product: the same numbers as evaluate_batch, without a Python
        object per configuration); the best feasible one wins, ties to the cheapest. None when
        the space has more than `limit` configurations."""
        if self.size() > limit:
            return None
        scan = self._scan(objective)
        best = scan.best(self.budget)
        feasible = int((scan.units <= self.budget * (1 + 1e-9)).sum())
        return {"config": None if best is None else str(best[0]), "score": None if best is None else best[1],
                "units": None if best is None else best[2], "evaluated": int(scan.score.size), "feasible": feasible,
                "space_size": self.size()}

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

    def cost_cells(self, trial: Trial) -> list[str]:
        return [f"{trial.cost:.3g}"]

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
                          insights=(Insight("insight1", INSIGHT1, first_round_only=True), Insight("insight2", INSIGHT2),
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


def _cost_model(store: Store, stage_models, questions) -> tuple[dict[str, tuple[float, float]], ...]:
    """Linear cost model per (stage, model), the one replay.engine.estimate_units uses."""
    qidx = store.question_indices(questions)
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
