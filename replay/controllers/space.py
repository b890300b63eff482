"""A controller's parameters as a search space, with a tokens budget: what a searcher needs.

    space = ControllerSpace.from_store(store, "probe", model="Qwen3-8B", budget_tokens=150_000)
    space.dims                      # the parameters (name, range, integer?) a searcher proposes
    t = space.evaluate({"width": 4, "patience": 20, "threshold": 0.95, "max_samples": 64, "settle": 0},
                       questions="train", replicates=16, seed=0)
    t.score, t.tokens, t.feasible   # feasible: mean tokens per question within the budget

With `beta=True` the space is the controller's single knob beta in [0, 1] instead. Every
evaluation uses the controller replay's common random numbers: the same (seed, question,
replicate) opens samples in the same order for every proposal, so proposals compare on the same
luck, as the configuration searches do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..errors import InputError
from ..store import Store
from .base import Controller, Param
from .engine import Setting, evaluate_settings, load_controller

BETA = Param("beta", 0.0, 1.0, default=0.5, help="the controller's single knob: more beta, more compute")


@dataclass(frozen=True)
class ControllerTrial:
    params: dict[str, Any]
    score: float | None  # None when infeasible (over the tokens budget): never count it as a result
    stderr: float | None
    tokens: float  # mean tokens per question, measured
    feasible: bool
    opened: float
    probes: float
    per_question: np.ndarray | None = field(default=None, repr=False, compare=False)  # mean score per question


@dataclass(frozen=True)
class ControllerSpace:
    store: Store = field(repr=False, compare=False)
    controller: type[Controller]
    model: str
    beta: bool  # search the knob beta instead of the parameters
    budget_tokens: float | None  # mean tokens per question; None: unconstrained
    probe_cost: float = 0.0

    @classmethod
    def from_store(cls, store: Store, controller, model: str, *, budget_tokens: float | None = None,
                   beta: bool = False, probe_cost: float = 0.0) -> "ControllerSpace":
        """The space of one controller's parameters (or its knob beta) on one model.

        Args:
            store: a store with probes.
            controller: a controller class, a built-in name or 'module:Class'.
            model: the model whose samples the controller opens.
            budget_tokens: a budget in mean tokens per question (None: unconstrained); a point
                over it is infeasible and not scored.
            beta: search the single knob beta in [0, 1] instead of the parameters.
            probe_cost: tokens charged per probe.

        Raises:
            InputError: an unknown controller or model, no knob or no parameters to search,
                a budget that is not a positive number.
        """
        c = load_controller(controller)
        if model not in store.manifest.model_names:
            raise InputError("--model", f"unknown model {model!r} (models: {', '.join(store.manifest.model_names)})")
        if beta and not c.has_beta():
            raise InputError(f"controller {c.name!r}", "has no beta knob (it does not define beta_params)")
        if not beta and not c.params:
            raise InputError(f"controller {c.name!r}", "has no parameters to search")
        if budget_tokens is not None and not (math.isfinite(budget_tokens) and budget_tokens > 0):
            raise InputError("--budget", f"must be a positive number of tokens per question, got {budget_tokens}")
        return cls(store, c, model, bool(beta), None if budget_tokens is None else float(budget_tokens),
                   float(probe_cost))

    @property
    def dims(self) -> tuple[Param, ...]:
        return (BETA,) if self.beta else self.controller.params

    def contains(self, params: dict[str, Any]) -> bool:
        try:
            self._setting(params)
            return True
        except InputError:
            return False

    def _setting(self, params: dict[str, Any]) -> Setting:
        if self.beta:
            if set(params) != {"beta"}:
                raise InputError(f"controller {self.controller.name!r}", f"a beta space takes {{'beta': b}}, got {sorted(params)}")
            return Setting.make(self.controller, beta=params["beta"])
        return Setting.make(self.controller, params=params)

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        """A uniformly random point (integers uniform over their range)."""
        out = {}
        for p in self.dims:
            lo, hi = p.search_range
            if p.integer:
                out[p.name] = int(rng.integers(int(lo), int(hi) + 1))
            else:
                out[p.name] = float(rng.uniform(lo, hi))
        return out

    def evaluate_many(self, points: Sequence[dict[str, Any]], *, questions=None, replicates: int = 16,
                      seed: int = 0) -> list[ControllerTrial]:
        """Score many points in one replay call (compiled for the built-ins).

        Args:
            points: parameter dicts (or {'beta': b} in a beta space).
            questions, replicates, seed: as in `evaluate_settings`.
        """
        settings = [self._setting(p) for p in points]
        results = evaluate_settings(self.store, self.model, settings, questions=questions, replicates=replicates,
                                    seed=seed, probe_cost=self.probe_cost)
        out = []
        for p, r in zip(points, results):
            ok = self.budget_tokens is None or r.tokens <= self.budget_tokens * (1 + 1e-9)
            out.append(ControllerTrial(dict(p), r.score if ok else None, r.stderr if ok else None, r.tokens, ok,
                                       r.opened, r.probes, r.per_question if ok else None))
        return out

    def evaluate(self, params: dict[str, Any], *, questions=None, replicates: int = 16,
                 seed: int = 0) -> ControllerTrial:
        """Score one point (see `evaluate_many`)."""
        return self.evaluate_many([params], questions=questions, replicates=replicates, seed=seed)[0]

    def describe(self) -> str:
        """A plain-text description, e.g. for an LLM searcher's prompt."""
        c = self.controller
        lines = [f"controller {c.name!r} on model {self.model!r} of store {self.store.name!r}",
                 f"budget: {'none' if self.budget_tokens is None else f'{self.budget_tokens:,.0f} mean tokens per question'}"]
        if (c.__doc__ or "").strip():
            lines.append((c.__doc__ or "").strip().splitlines()[0])
        for p in self.dims:
            kind = "integer" if p.integer else "real"
            lo, hi = p.search_range
            lines.append(f"- {p.name}: {kind} in [{lo:g}, {hi:g}]" + (f": {p.help}" if p.help else ""))
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"controller": self.controller.name, "model": self.model, "beta": self.beta,
                "budget_tokens": self.budget_tokens, "probe_cost": self.probe_cost,
                "dims": [{"name": p.name, "low": p.search_range[0], "high": p.search_range[1], "integer": p.integer}
                         for p in self.dims]}
