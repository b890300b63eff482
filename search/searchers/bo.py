"""Bayesian optimisation with Optuna (TPE by default, `sampler='gp'` for its GP sampler).

Driven through Optuna's ask/tell API over the space's parametrisation (`space.parametrisation`:
named categories and numbers; search/spaces/config_walks.py and search/spaces/controller.py).
For the GP sampler the space gives, where it has one, a parametrisation whose points stay
within budget by construction: Optuna's GPSampler fits complete trials only, so it cannot
learn the budget constraint from rejected proposals.

Budget: a proposal whose estimated cost (the space's cost model, where it has one) is over
budget is not scored; Optuna is told it violated the budget constraint (`set_constraint`,
state PRUNED: no score is invented) and asked again, up to `max_rejects` times, after which
an untried random candidate is enqueued (`space.random_points`). A proposal already scored is
told its known result (the replay is deterministic) and does not cost a trial. A scored trial
that the replay measures over budget is told the same way as an estimated violation. TPE ranks
constraint-violating trials behind every feasible one; the GP sampler only fits complete trials.
"""

from __future__ import annotations

from typing import Any, ClassVar, Hashable

import numpy as np

from replay.errors import ConfigError

from ..protocol import Proposal, ReplayByAsking, Searcher, Trial
from ..spaces.base import Dim, Space

SAMPLERS = ("tpe", "gp")


class BOSearcher(ReplayByAsking, Searcher):
    """Parameters (options):
        sampler: "tpe" (default) or "gp" (Optuna's GPSampler; needs PyTorch).
        n_startup_trials: random trials before the sampler models the scores (10).
        max_rejects: asks per proposal before a random candidate is enqueued (50 TPE, 3 GP).
    """

    name: ClassVar[str] = "bo"
    options_accepted: ClassVar[frozenset[str]] = frozenset({"sampler", "n_startup_trials", "max_rejects"})
    needs: ClassVar[frozenset[str]] = frozenset({"parametrisation"})

    def __init__(self, space: Space, *, seed: int = 0, trials: int | None = None, sampler: str = "tpe",
                 n_startup_trials: int = 10, max_rejects: int | None = None):
        super().__init__(space, seed=seed, trials=trials)
        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)
        if sampler not in SAMPLERS:
            raise ConfigError("--sampler", f"unknown sampler {sampler!r} (known: {', '.join(SAMPLERS)})")
        if sampler == "gp":
            try:
                import torch  # noqa: F401  (GPSampler's dependency)
            except ImportError:
                raise ConfigError("--sampler", "gp needs PyTorch and SciPy, which Optuna's GPSampler uses: "
                                  "pip install torch scipy") from None
            import warnings

            with warnings.catch_warnings():  # deterministic_objective is marked experimental
                warnings.simplefilter("ignore")
                # the replay is deterministic: the same point always scores the same
                smp = optuna.samplers.GPSampler(seed=seed, n_startup_trials=n_startup_trials,
                                                deterministic_objective=True, warn_independent_sampling=False)
        else:
            smp = optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials, multivariate=True)
        self.optuna = optuna
        self.sampler = sampler
        # a GP ask costs a model fit and an acquisition search: fewer retries before a random fill
        self.max_rejects = int(max_rejects if max_rejects is not None else (50 if sampler == "tpe" else 3))
        self.study = optuna.create_study(direction="maximize", sampler=smp)
        self.par = space.parametrisation(within_budget=sampler == "gp")
        self._dists = {d.name: _distribution(optuna, d) for d in self.par.dims}
        self._scored: dict[Hashable, Trial] = {}
        self._open: dict[Hashable, Any] = {}  # point key -> Optuna trial waiting for its score
        self._rejected = 0
        self._repeats = 0
        self._fills = 0
        self._limit = space.budget * (1 + space.estimate_slack) * (1 + 1e-9)
        self._fill_seen: set = set()
        self._fill_stream = None

    def _over(self, point) -> float | None:
        """How far over budget the estimate is (None: not over, or no estimate)."""
        est = self.space.estimate_cost(point)
        return None if est is None or est <= self._limit else est - self.space.budget

    def _tell_infeasible(self, ot, excess: float) -> None:
        ot.set_constraint("budget", max(excess, 1e-12))
        self.study.tell(ot, state=self.optuna.trial.TrialState.PRUNED)

    def _tell_score(self, ot, trial: Trial) -> None:
        # every told trial carries the constraint (the GP sampler insists on the same count)
        ot.set_constraint("budget", min(trial.cost - self.space.budget, 0.0))
        self.study.tell(ot, trial.score)

    def _random_candidate(self):
        """An untried random point (the random searcher's candidates, from a stream of its own
        seed); None when the space has none left."""
        if self._fill_stream is None:
            self._fill_stream = self.space.random_points(np.random.default_rng(self.seed + 7919), self._fill_seen)
        key = self.space.key
        for p in self._fill_stream:
            if key(p) not in self._scored and key(p) not in self._open:
                return p
        return None

    def ask(self) -> list[Proposal]:
        pending = self.pending()
        if pending:
            return pending
        key = self.space.key
        for _ in range(self.max_rejects):
            ot = self.study.ask(self._dists)
            point = self.par.point(ot.params)
            k = key(point)
            excess = self._over(point)
            if excess is not None:
                self._rejected += 1
                self._tell_infeasible(ot, excess)
            elif k in self._scored or k in self._open:
                self._repeats += 1
                known = self._scored.get(k)
                if known is not None and known.feasible:
                    self._tell_score(ot, known)
                elif known is not None:
                    self._tell_infeasible(ot, known.cost - self.space.budget)
                else:
                    self.study.tell(ot, state=self.optuna.trial.TrialState.FAIL)
            else:
                self._open[k] = ot
                return [Proposal(point, source=f"bo-{self.sampler}")]
        # the sampler keeps proposing over-budget or known points: enqueue a random candidate
        point = self._random_candidate()
        if point is None:
            return []
        self._fills += 1
        self.study.enqueue_trial(self.par.values(point))
        ot = self.study.ask(self._dists)
        mapped = self.par.point(ot.params)  # what Optuna will associate with the score
        mk = key(mapped)
        if mk not in self._scored and mk not in self._open and self._over(mapped) is None:
            point = mapped
        self._open[key(point)] = ot
        return [Proposal(point, source="bo-random-fill")]

    def tell(self, trial: Trial) -> None:
        super().tell(trial)
        k = self.space.key(trial.point)
        self._scored[k] = trial
        ot = self._open.pop(k, None)
        if ot is None:
            return
        if trial.feasible:
            self._tell_score(ot, trial)
        else:
            self._tell_infeasible(ot, trial.cost - self.space.budget)

    def state(self) -> dict[str, Any]:
        b = self.best()
        return {"best": self.space.label(b.point) if b else None, "rejected_over_budget": self._rejected,
                "repeats_told": self._repeats, "random_fills": self._fills}


def _distribution(optuna, d: Dim):
    D = optuna.distributions
    if d.kind == "categorical":
        return D.CategoricalDistribution(list(d.choices))
    if d.kind == "int":
        return D.IntDistribution(int(d.low), int(d.high), log=d.log)
    return D.FloatDistribution(float(d.low), float(d.high), log=d.log)
