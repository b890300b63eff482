"""A width-depth controller's parameters (or its single knob beta) as a search space.

A point is a dict of parameter values ({"width": 4, "threshold": 0.95, ...}, or {"beta": 0.3});
its cost is the mean tokens per question it generates, measured by the controller replay
(`replay.controllers.space.ControllerSpace`, whose common random numbers open samples in the
same order for every point). Tokens are known only once replayed: there is no cost estimate,
so an over-budget point costs its trial (archived as infeasible, never a result).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar, Hashable, Iterator, Sequence

import numpy as np

from replay.controllers.base import Param
from replay.controllers.space import ControllerSpace as ReplayControllerSpace
from replay.store import Store

from ..llm.answer import AnswerProblem
from ..llm.prompts import CONTROLLER_GUIDELINES, CONTROLLER_ROLE
from ..trial import Evaluation, Objective, Trial
from .base import SCHEMA_ENUM_LIMIT, AgentBrief, Dim, GridWalk, Parametrisation, Space

if TYPE_CHECKING:
    from ..settings import ControllerSpaceSettings

GRID_BATCH = 16  # grid points per replay call
DEFAULT_GRID = 50  # grid points when the trial budget does not bound it


@dataclass(frozen=True)
class ControllerSpace(Space):
    kind: ClassVar[str] = "controller"
    cost_unit: ClassVar[str] = "tokens"
    supports: ClassVar[frozenset[str]] = frozenset({"grid", "parametrisation"})
    answer_problem_kinds: ClassVar[tuple[str, ...]] = ("out_of_range",)

    replay_space: ReplayControllerSpace = field(repr=False)
    budget: float  # mean tokens per question

    @classmethod
    def from_settings(cls, store: Store, settings: "ControllerSpaceSettings", objective: Objective) -> "ControllerSpace":
        inner = ReplayControllerSpace.from_store(store, settings.controller, settings.model,
                                                 budget_tokens=settings.budget_tokens,
                                                 beta=settings.beta, probe_cost=settings.probe_cost)
        return cls(replay_space=inner, budget=float(settings.budget_tokens))

    @property
    def dims(self) -> tuple[Param, ...]:
        return self.replay_space.dims

    @property
    def controller(self):
        return self.replay_space.controller

    # ---- identity and the archive

    def contains(self, point: Any) -> bool:
        return isinstance(point, dict) and self.replay_space.contains(point)

    def key(self, point: dict) -> Hashable:
        return tuple(sorted(point.items()))

    def encode(self, point: dict) -> dict:
        return dict(point)

    def decode(self, value: Any) -> dict:
        return dict(value)

    def label(self, point: dict) -> str:
        return ", ".join(f"{k}={_fmt(v)}" for k, v in point.items())

    def to_json(self) -> dict[str, Any]:
        return self.replay_space.to_json()

    # ---- sampling and moves

    def sample(self, rng: np.random.Generator) -> dict:
        return self.replay_space.sample(rng)

    def neighbours(self, point: dict) -> Iterator[dict]:
        """One parameter moved one step: an integer by 1, a real number by a tenth of its range."""
        for p in self.dims:
            lo, hi = p.search_range
            step = 1 if p.integer else (hi - lo) / 10
            for d in (step, -step):
                v = point[p.name] + d
                if lo <= v <= hi:
                    q = {**point, p.name: int(v) if p.integer else float(v)}
                    if self.contains(q):
                        yield q

    # ---- scoring

    def evaluate(self, points: Sequence[dict], objective: Objective, *, enforce_budget: bool = True) -> list[Evaluation]:
        # without the budget the replay space hides no score
        inner = self.replay_space if enforce_budget else replace(self.replay_space, budget_tokens=None)
        res = inner.evaluate_many(list(points), questions=objective.questions, replicates=objective.replicates,
                                  seed=objective.seed)
        return [Evaluation(feasible=r.feasible, score=r.score, stderr=r.stderr, cost=r.tokens, tokens=r.tokens,
                           metrics={"opened": r.opened, "probes": r.probes}, per_question=r.per_question)
                for r in res]

    # ---- optional capabilities

    def grid(self, *, cap: int | None, max_points: int, prune: bool = True) -> GridWalk:
        return ParamGrid(self.dims, cap or DEFAULT_GRID)

    def parametrisation(self, *, within_budget: bool = False) -> Parametrisation:
        return ParamsParametrisation(self.dims)

    # ---- text

    def title(self) -> str:
        sp = self.replay_space
        what = "beta" if sp.beta else ", ".join(p.name for p in self.dims)
        return f"controller {sp.controller.name} on {sp.model}: searching {what}"

    def cost_text(self, cost: float) -> str:
        return f"{cost:,.0f} mean tokens per question"

    def headline(self) -> str:
        sp = self.replay_space
        return f"controller {sp.controller.name!r} on {sp.model}; budget {self.budget:,.0f} tokens/question"

    def sandbox_notice(self) -> str | None:
        if getattr(self.controller, "sandbox", None) is None:  # a built-in: compiled, trusted code
            return None
        from replay.sandbox import isolation

        return f"controller {self.controller.name!r} runs in the {isolation().summary()}"

    def slug(self) -> str:
        return f"{self.controller.name}-{'beta' if self.replay_space.beta else 'params'}"

    def describe(self) -> str:
        return self.replay_space.describe()

    def point_columns(self) -> list[str]:
        return [p.name for p in self.dims]

    def point_cells(self, point: dict) -> list[str]:
        return [_fmt(point[p.name]) for p in self.dims]

    def cost_columns(self) -> list[str]:
        return ["mean tokens", "samples opened"]

    def cost_cells(self, trial: Trial) -> list[str]:
        return [f"{trial.cost:,.0f}", f"{float(trial.metrics.get('opened') or 0.0):.2f}"]

    # ---- LLM answers: {"<parameter>": <number>, ...}

    def answer_shape(self) -> str:
        return "{" + ", ".join(f'"{p.name}": <{"integer" if p.integer else "number"} in '
                               f'[{p.search_range[0]:g}, {p.search_range[1]:g}]>' for p in self.dims) + "}"

    def answer_rule(self) -> str:
        return "Every trial names every parameter exactly once; integer parameters are JSON integers."

    def answer_example(self) -> dict:
        out = {}
        for p in self.dims:
            lo, hi = p.search_range
            d = min(max(p.default if p.default is not None else (lo + hi) / 2, lo), hi)
            out[p.name] = int(round(d)) if p.integer else float(d)
        return out

    def point_from_answer(self, value: Any, where: str) -> dict:
        names = [p.name for p in self.dims]
        if not isinstance(value, dict):
            raise AnswerProblem("schema_errors", f"{where}: expected an object of parameters, got {json.dumps(value)}")
        if set(value) != set(names):
            raise AnswerProblem("schema_errors", f"{where}: must name exactly the parameters {names}, got {sorted(value)}")
        params = {}
        for p in self.dims:
            v = value[p.name]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise AnswerProblem("schema_errors", f"{where}: {p.name} must be a number, got {json.dumps(v)}")
            if p.integer and not isinstance(v, int):
                raise AnswerProblem("schema_errors", f"{where}: {p.name} must be a JSON integer, got {json.dumps(v)}")
            params[p.name] = int(v) if p.integer else float(v)
        return params

    def answer_problems(self, point: dict, where: str) -> list[AnswerProblem]:
        for p in self.dims:
            lo, hi = p.search_range
            if not lo <= point[p.name] <= hi:
                return [AnswerProblem("out_of_range", f"{where}: {p.name} = {point[p.name]} is outside [{lo:g}, {hi:g}]")]
        if not self.contains(point):
            return [AnswerProblem("out_of_range", f"{where}: {json.dumps(point)} is not a valid setting of controller "
                                  f"{self.controller.name!r}")]
        return []

    def answer_schema(self) -> dict:
        """Every parameter, within its search range (integers listed when there are few)."""
        props = {}
        for p in self.dims:
            lo, hi = p.search_range
            if p.integer and int(hi) - int(lo) < SCHEMA_ENUM_LIMIT:
                props[p.name] = {"type": "integer", "enum": list(range(int(math.ceil(lo)), int(math.floor(hi)) + 1))}
            else:
                props[p.name] = {"type": "integer" if p.integer else "number", "minimum": lo, "maximum": hi}
        return {"type": "object", "properties": props, "required": [p.name for p in self.dims],
                "additionalProperties": False}

    def agent_brief(self) -> AgentBrief:
        return AgentBrief(role=CONTROLLER_ROLE, guideline_hint=CONTROLLER_GUIDELINES)


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def levels(p: Param, n: int) -> list:
    """n values spread over the parameter's search range: integers from 1 up geometrically
    (sample counts and patience act multiplicatively), others linearly."""
    lo, hi = p.search_range
    if n == 1:
        d = p.default if p.default is not None else (lo + hi) / 2
        return [int(round(min(max(d, lo), hi))) if p.integer else float(min(max(d, lo), hi))]
    if not p.integer:
        return [float(x) for x in np.linspace(lo, hi, n)]
    xs = np.geomspace(lo, hi, n) if lo >= 1 and hi / lo >= 8 else np.linspace(lo, hi, n)
    return sorted({int(round(x)) for x in xs})


class ParamGrid:
    """A product grid over the parameters with at most `cap` points: levels are added one
    parameter at a time while the product fits; a parameter left at one level sits at its
    default. On the beta space, `cap` evenly spaced betas. Scored in batches of GRID_BATCH."""

    def __init__(self, dims: tuple[Param, ...], cap: int):
        n = [1] * len(dims)
        width = [math.inf if not p.integer else int(p.search_range[1] - p.search_range[0]) + 1 for p in dims]
        grew = True
        while grew:
            grew = False
            for i in range(len(dims)):
                if n[i] < width[i] and math.prod(n) // n[i] * (n[i] + 1) <= cap:
                    n[i] += 1
                    grew = True
        axes = [levels(p, k) for p, k in zip(dims, n)]
        grid = np.array(np.meshgrid(*[np.arange(len(a)) for a in axes], indexing="ij")).reshape(len(dims), -1).T
        self.points = [{p.name: axes[d][j] for d, (p, j) in enumerate(zip(dims, row))} for row in grid]
        self.levels = {p.name: a for p, a in zip(dims, axes)}
        self._next = 0

    def next_batch(self, results: dict[Hashable, Trial]) -> list[dict]:
        out = self.points[self._next:self._next + GRID_BATCH]
        self._next += len(out)
        return out

    def advance(self, results: dict[Hashable, Trial]) -> None:
        pass  # nothing to prune: a product grid has no budget structure

    def level_source(self) -> str:
        return "grid"

    def state(self) -> dict[str, Any]:
        return {"grid_size": len(self.points), "levels": self.levels}


class ParamsParametrisation:
    """One coordinate per parameter; integers spanning a factor 8 or more from 1 on a log scale."""

    def __init__(self, dims: tuple[Param, ...]):
        self.params = dims
        self.dims = tuple(
            Dim(p.name, "int", low=int(p.search_range[0]), high=int(p.search_range[1]),
                log=p.search_range[0] >= 1 and p.search_range[1] / p.search_range[0] >= 8)
            if p.integer else Dim(p.name, "float", low=float(p.search_range[0]), high=float(p.search_range[1]))
            for p in dims)

    def point(self, values: dict[str, Any]) -> dict:
        return {p.name: (int(values[p.name]) if p.integer else float(values[p.name])) for p in self.params}

    def values(self, point: dict) -> dict[str, Any]:
        return dict(point)
