"""Bayesian optimisation with Optuna (TPE by default, `sampler='gp'` for its GP sampler).

Driven through Optuna's ask/tell API. A count over the chosen model's largest pool is
clamped to the nearest allowed count.

Parametrisation. TPE: per stage the model (categorical) and the sample count (integer, log
scale). GP: per stage the model, plus the share of the budget to spend (0..1] and, with several
stages, a weight per stage; the counts are the largest that fit each stage's part of the spend
(fixed costs paid first). Optuna's GPSampler fits complete trials only, so it cannot learn the
budget constraint from rejected proposals; this parametrisation keeps (nearly) every proposal
within budget by construction, and still reaches configurations that spend less than all of it.

Budget: a proposal whose estimated cost (the space's cost model) is over budget is not
scored; Optuna is told it violated the budget constraint (`set_constraint`, state PRUNED: no
score is invented) and asked again, up to `max_rejects` times, after which a random
candidate is enqueued. A proposal already scored is told its known score (the replay is
deterministic) and does not cost a trial. A scored trial that the replay measures over
budget is told the same way as an estimated violation. TPE ranks constraint-violating
trials behind every feasible one; the GP sampler only fits complete trials.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from replay.engine import Config, StageChoice
from replay.errors import ConfigError

from ..protocol import Proposal, ReplayByAsking, Searcher, Trial
from ..space import ESTIMATE_SLACK, SearchSpace

SAMPLERS = ("tpe", "gp")


class BOSearcher(ReplayByAsking, Searcher):
    name: ClassVar[str] = "bo"
    options_accepted: ClassVar[tuple[str, ...]] = ("sampler", "n_startup_trials", "max_rejects")

    def __init__(self, space: SearchSpace, seed: int = 0, sampler: str = "tpe", n_startup_trials: int = 10,
                 max_rejects: int | None = None, **options):
        super().__init__(space, seed=seed, **options)
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
                # the replay is deterministic: the same configuration always scores the same
                smp = optuna.samplers.GPSampler(seed=seed, n_startup_trials=n_startup_trials,
                                                deterministic_objective=True, warn_independent_sampling=False)
        else:
            smp = optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials, multivariate=True)
        self.sampler = sampler
        # a GP ask costs a model fit and an acquisition search: fewer retries before a random fill
        self.max_rejects = int(max_rejects if max_rejects is not None else (50 if sampler == "tpe" else 3))
        self.study = optuna.create_study(direction="maximize", sampler=smp)
        self._dists = {}
        D = optuna.distributions
        for i, st in enumerate(space.stages):
            all_counts = sorted({n for m in space.models[i] for n in space.counts[i][m]})
            self._dists[f"{st}.model"] = D.CategoricalDistribution(list(space.models[i]))
            if sampler == "tpe":
                self._dists[f"{st}.samples"] = D.IntDistribution(all_counts[0], all_counts[-1], log=all_counts[0] >= 1)
            elif len(space.stages) > 1:
                self._dists[f"{st}.weight"] = D.FloatDistribution(0.01, 1.0)
        if sampler == "gp":
            self._dists["spend"] = D.FloatDistribution(0.01, 1.0)
        self._scored: dict[Config, Trial] = {}
        self._open: dict[Config, object] = {}  # config -> Optuna trial waiting for its score
        self._rejected = 0
        self._repeats = 0
        self._fills = 0
        self._limit = space.budget * (1 + ESTIMATE_SLACK)
        self._fill_source = None

    def _config(self, params: dict) -> Config:
        sp = self.space
        if self.sampler == "gp":
            return self._config_from_shares(params)
        stages = []
        for i, st in enumerate(sp.stages):
            m = params[f"{st}.model"]
            stages.append(StageChoice(m, _nearest(sp.counts[i][m], int(params[f"{st}.samples"]))))
        return Config(tuple(stages))

    def _config_from_shares(self, params: dict) -> Config:
        sp = self.space
        models = [params[f"{st}.model"] for st in sp.stages]
        w = np.array([params.get(f"{st}.weight", 1.0) for st in sp.stages])
        rest = params["spend"] * sp.budget - sum(sp.costs[i][m][0] for i, m in enumerate(models))
        stages = []
        for i, m in enumerate(models):
            per = sp.costs[i][m][1]
            n = int(max(rest, 0.0) * w[i] / w.sum() / per) if per > 0 else max(sp.counts[i][m])
            stages.append(StageChoice(m, _nearest(sp.counts[i][m], max(n, 1))))
        return Config(tuple(stages))

    def _params(self, cfg: Config) -> dict:
        """Optuna parameters that map to `cfg` (to enqueue a random candidate)."""
        sp = self.space
        p = {f"{st}.model": ch.model for st, ch in zip(sp.stages, cfg.stages)}
        if self.sampler == "tpe":
            p.update({f"{st}.samples": ch.samples for st, ch in zip(sp.stages, cfg.stages)})
            return p
        var = [sp.costs[i][ch.model][1] * (ch.samples + 0.5) for i, ch in enumerate(cfg.stages)]
        fixed = sum(sp.costs[i][ch.model][0] for i, ch in enumerate(cfg.stages))
        p["spend"] = float(np.clip((fixed + sum(var)) / sp.budget, 0.01, 1.0))
        if len(sp.stages) > 1:
            p.update({f"{st}.weight": float(np.clip(v / max(var), 0.01, 1.0)) for st, v in zip(sp.stages, var)})
        return p

    def _tell_infeasible(self, trial, excess: float) -> None:
        import optuna

        trial.set_constraint("budget", max(excess, 1e-12))
        self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)

    def _tell_score(self, ot, trial: Trial) -> None:
        # every told trial carries the constraint (the GP sampler insists on the same count)
        ot.set_constraint("budget", min(trial.units - self.space.budget, 0.0))
        self.study.tell(ot, trial.score)

    def _random_candidate(self) -> Config | None:
        """A uniformly drawn untried configuration the cost model says may be feasible (the
        random searcher's candidate set); None when every one has been scored."""
        if self._fill_source is None:
            from .random_search import RandomSearcher

            self._fill_source = RandomSearcher(self.space, seed=self.seed + 7919)
        src = self._fill_source
        while True:
            props = src.ask()
            if not props:
                return None
            cfg = props[0].config
            src._seen.add(cfg)
            if cfg not in self._scored and cfg not in self._open:
                return cfg

    def ask(self) -> list[Proposal]:
        pending = self.pending()
        if pending:
            return pending
        for _ in range(self.max_rejects):
            trial = self.study.ask(self._dists)
            cfg = self._config(trial.params)
            est = self.space.estimate_units(cfg)
            if est > self._limit:
                self._rejected += 1
                self._tell_infeasible(trial, est - self.space.budget)
            elif cfg in self._scored or cfg in self._open:
                self._repeats += 1
                known = self._scored.get(cfg)
                if known is not None and known.feasible:
                    self._tell_score(trial, known)
                elif known is not None:
                    self._tell_infeasible(trial, known.units - self.space.budget)
                else:
                    import optuna

                    self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                self._open[cfg] = trial
                return [Proposal(cfg, source=f"bo-{self.sampler}")]
        # the sampler keeps proposing over-budget or known configurations: enqueue a random candidate
        cfg = self._random_candidate()
        if cfg is None:
            return []
        self._fills += 1
        self.study.enqueue_trial(self._params(cfg))
        trial = self.study.ask(self._dists)
        mapped = self._config(trial.params)  # what Optuna will associate with the score
        if mapped not in self._scored and mapped not in self._open and self.space.estimate_units(mapped) <= self._limit:
            cfg = mapped
        self._open[cfg] = trial
        return [Proposal(cfg, source="bo-random-fill")]

    def tell(self, trial: Trial) -> None:
        super().tell(trial)
        self._scored[trial.config] = trial
        ot = self._open.pop(trial.config, None)
        if ot is None:
            return
        if trial.feasible:
            self._tell_score(ot, trial)
        else:
            self._tell_infeasible(ot, trial.units - self.space.budget)

    def state(self) -> dict:
        b = self.best()
        return {"best": str(b.config) if b else None, "rejected_over_budget": self._rejected,
                "repeats_told": self._repeats, "random_fills": self._fills}


def _nearest(allowed: tuple[int, ...], n: int) -> int:
    """The allowed count nearest to n on a log scale (ties to the smaller)."""
    return min(allowed, key=lambda a: (abs(math.log(a) - math.log(max(n, 1))), a))
