"""Searchers over a controller's parameters (or its knob beta): random, grid, bo, agenttts.

The same ask/tell protocol as search/protocol.py, on parameter dicts of a
`ControllerSpace` instead of `Config`s. Searchers that make no sense on this space (`rules`
encodes insights about models and sample counts per stage; `agenthpo` and `mlcopilot` are
written for that space too) are refused with a one-line error.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from replay.controllers.base import Param
from replay.controllers.space import ControllerSpace
from replay.errors import ConfigError, InputError

from .loop import CTrial, Proposal

BATCH = 16  # proposals per replay call for the searchers that do not learn between trials


def key(params: dict[str, Any]) -> tuple:
    return tuple(sorted(params.items()))


class ControllerSearcher:
    """Base: `ask` gives proposals, `tell` receives the trial. Deterministic given the seed and
    what was told, so `replay_history` (--resume) asks again and checks each archived trial."""

    name: ClassVar[str] = ""
    options_accepted: ClassVar[tuple[str, ...]] = ()

    def __init__(self, space: ControllerSpace, seed: int = 0, trials: int | None = None, **options: Any):
        self.space = space
        self.seed = seed
        self.trials = trials
        self.rng = np.random.default_rng(seed)
        self.history: list[CTrial] = []
        self._pending: list[Proposal] = []

    def ask(self) -> list[Proposal]:
        raise NotImplementedError

    def tell(self, trial: CTrial) -> None:
        self.history.append(trial)

    def state(self) -> dict[str, Any]:
        return {}

    def left(self) -> int:
        return BATCH if self.trials is None else max(1, self.trials - len(self.history))

    def replay_history(self, trials: list[CTrial]) -> None:
        pending: list[Proposal] = []
        for t in trials:
            if not pending:
                pending = list(self.ask())
                if not pending:
                    raise InputError("--resume", f"the searcher ends before archived trial {t.number}")
            p = pending.pop(0)
            if key(p.params) != key(t.params):
                raise InputError("--resume", f"archived trial {t.number} is {t.params}, but the searcher proposes "
                                 f"{p.params} there: the archive was written with other options or another version")
            self.tell(t)
        self._pending = pending

    def pending(self) -> list[Proposal]:
        out, self._pending = self._pending, []
        return out


class RandomSearcher(ControllerSearcher):
    """Uniform points of the space (`space.sample`), in batches."""

    name = "random"

    def ask(self) -> list[Proposal]:
        return self.pending() or [Proposal(self.space.sample(self.rng), "random") for _ in range(min(BATCH, self.left()))]


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


class GridSearcher(ControllerSearcher):
    """A product grid over the dims with at most `trials` points (default 50): levels are added
    one dimension at a time while the product fits; a dimension left at one level sits at its
    default. On the beta space, `trials` evenly spaced betas."""

    name = "grid"
    exhaustive = True

    def __init__(self, space: ControllerSpace, seed: int = 0, trials: int | None = None, **options):
        super().__init__(space, seed, trials, **options)
        cap = trials or 50
        dims = space.dims
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

    def ask(self) -> list[Proposal]:
        pending = self.pending()
        if pending:
            return pending
        out = [Proposal(p, "grid") for p in self.points[self._next:self._next + BATCH]]
        self._next += len(out)
        return out

    def state(self) -> dict[str, Any]:
        return {"grid_size": len(self.points), "levels": self.levels}


class BOSearcher(ControllerSearcher):
    """Optuna TPE over the dims (integers on a log scale when they span a factor 8 or more from 1).
    An over-budget trial is told as a violated constraint (`set_constraint`, state PRUNED), never
    a made-up score; TPE ranks such trials behind every feasible one. A point already scored is
    told its known result without costing a trial; after `max_repeats` of those in a row a
    random point is proposed instead."""

    name = "bo"
    options_accepted = ("n_startup_trials", "max_repeats")

    def __init__(self, space: ControllerSpace, seed: int = 0, trials: int | None = None,
                 n_startup_trials: int = 10, max_repeats: int = 50, **options):
        super().__init__(space, seed, trials, **options)
        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)
        self.optuna = optuna
        self.study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=n_startup_trials, multivariate=True))
        D = optuna.distributions
        self.dists = {p.name: (D.IntDistribution(int(p.search_range[0]), int(p.search_range[1]),
                                                 log=p.search_range[0] >= 1 and p.search_range[1] / p.search_range[0] >= 8)
                               if p.integer else D.FloatDistribution(*map(float, p.search_range)))
                      for p in space.dims}
        self.max_repeats = max_repeats
        self._scored: dict[tuple, CTrial] = {}
        self._open: dict[tuple, Any] = {}
        self._repeats = 0
        self._fills = 0

    def _tell(self, ot, t: CTrial) -> None:
        budget = self.space.budget_tokens
        if t.feasible:
            ot.set_constraint("budget", min(t.tokens - budget, 0.0) if budget else 0.0)
            self.study.tell(ot, t.score)
        else:
            ot.set_constraint("budget", max(t.tokens - budget, 1e-12))
            self.study.tell(ot, state=self.optuna.trial.TrialState.PRUNED)

    def ask(self) -> list[Proposal]:
        pending = self.pending()
        if pending:
            return pending
        for _ in range(self.max_repeats):
            ot = self.study.ask(self.dists)
            params = {p.name: (int(ot.params[p.name]) if p.integer else float(ot.params[p.name]))
                      for p in self.space.dims}
            k = key(params)
            if k in self._scored:
                self._repeats += 1
                self._tell(ot, self._scored[k])
                continue
            if k in self._open:
                self._repeats += 1
                self.study.tell(ot, state=self.optuna.trial.TrialState.FAIL)
                continue
            self._open[k] = ot
            return [Proposal(params, "bo-tpe")]
        self._fills += 1
        params = self.space.sample(self.rng)
        self.study.enqueue_trial(params)
        ot = self.study.ask(self.dists)
        params = {p.name: (int(ot.params[p.name]) if p.integer else float(ot.params[p.name])) for p in self.space.dims}
        self._open[key(params)] = ot
        return [Proposal(params, "bo-random-fill")]

    def tell(self, trial: CTrial) -> None:
        super().tell(trial)
        k = key(trial.params)
        self._scored[k] = trial
        ot = self._open.pop(k, None)
        if ot is not None:
            self._tell(ot, trial)

    def state(self) -> dict[str, Any]:
        return {"repeats_told": self._repeats, "random_fills": self._fills}


def _agent():
    from .agent import ControllerAgentTTS

    return ControllerAgentTTS


SEARCHERS = {"random": lambda: RandomSearcher, "grid": lambda: GridSearcher, "bo": lambda: BOSearcher,
             "agenttts": _agent}
NOT_HERE = {
    "rules": "its rules are about models and sample counts per stage",
    "agenthpo": "its prompts are written for models and sample counts per stage; use agenttts",
    "mlcopilot": "its prompts are written for models and sample counts per stage; use agenttts",
}


def get_searcher(name: str):
    if name in NOT_HERE:
        raise ConfigError("--searcher", f"{name!r} does not apply to --space controller ({NOT_HERE[name]}); "
                          f"use {', '.join(SEARCHERS)}")
    if name not in SEARCHERS:
        raise ConfigError("--searcher", f"unknown searcher {name!r} for --space controller (known: {', '.join(SEARCHERS)})")
    return SEARCHERS[name]()


def build_searcher(name: str, space: ControllerSpace, seed: int, options: dict[str, Any],
                   trials: int | None) -> ControllerSearcher:
    cls = get_searcher(name)
    for k in options:
        if k not in cls.options_accepted:
            raise ConfigError(f"--{k.replace('_', '-')}", f"does not apply to searcher {name!r} on --space controller")
    return cls(space, seed=seed, trials=trials, **options)
