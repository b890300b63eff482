"""Exhaustive grid: every configuration of the space, scored in a few batched replay calls.

Its best trial is the true optimum of the space on the training questions, the target that
"trials to reach the optimum" is measured against.

Exact pruning, stage by stage: a stage's draws and cost depend only on the stages before it
(the replay's random streams are per stage, and a stage's pool is keyed by the upstream
answer), and later stages cost at least zero. So once a prefix (choices for stages 0..k) is
measured over budget, every configuration extending it is infeasible and is skipped. Level k
scores each surviving prefix extended by every choice of stage k, the later stages at their
cheapest choice; those are configurations of the space, so each counts as a trial, and a
configuration is never scored twice. A one-stage space is a single batch.

A space larger than `max_configs` is not proposed configuration by configuration (millions of
archived trials help nobody): the runner hands the grid a `scan` of the same objective
(replay.engine.scan_space, every configuration in one compiled call), and the grid proposes its
best feasible configuration as its one trial; its state records how many were scanned.
"""

from __future__ import annotations

from typing import ClassVar

from replay.engine import Config, StageChoice
from replay.errors import ConfigError

from ..protocol import Proposal, ReplayByAsking, Searcher, Trial
from ..space import SearchSpace


class GridSearcher(ReplayByAsking, Searcher):
    name: ClassVar[str] = "grid"
    exhaustive: ClassVar[bool] = True  # runs until done: the runner's default trial limit does not apply
    options_accepted: ClassVar[tuple[str, ...]] = ("max_configs", "prune")
    uses_scan: ClassVar[bool] = True  # the runner passes `scan`: choices per stage -> SpaceScan

    def __init__(self, space: SearchSpace, seed: int = 0, max_configs: int = 200_000, prune: bool = True,
                 scan=None, **options):
        super().__init__(space, seed=seed, **options)
        self.max_configs = int(max_configs)
        self.prune = bool(prune)
        self._scan = scan
        self._scanned = 0
        n = len(space.stages)
        self._choices = [[StageChoice(m, c) for m in space.models[i] for c in space.counts[i][m]] for i in range(n)]
        # the cheapest choice per stage (by the cost model), to fill the stages after the prefix
        self._filler = [min(ch, key=lambda c, i=i: space.costs[i][c.model][0] + c.samples * space.costs[i][c.model][1])
                        for i, ch in enumerate(self._choices)]
        self._level = 0
        self._prefixes: list[tuple[StageChoice, ...]] = [()]
        self._results: dict[Config, Trial] = {}
        self._asked = 0
        self._pruned = 0

    def _budget_ok(self, t: Trial, upto: int) -> bool:
        if not t.stage_units:  # no per-stage costs (an old archive): no pruning
            return True
        return sum(t.stage_units[: upto + 1]) <= self.space.budget * (1 + 1e-9)

    def ask(self) -> list[Proposal]:
        pending = self.pending()
        if pending:
            return pending
        n = len(self.space.stages)
        if self._level == 0 and self._scan is not None and self.space.size() > self.max_configs:
            self._level = n  # one compiled scan of the whole space; its best is the one trial
            scan = self._scan(self._choices)
            self._scanned = int(scan.score.size)
            best = scan.best(self.space.budget)
            if best is None:
                return []
            self._waiting = 1
            return [Proposal(best[0], source="grid-scan", extra={"scanned": self._scanned})]
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
                if self._asked + total > self.max_configs:
                    raise ConfigError("grid", f"{self._asked + total} configurations to score after pruning "
                                      f"(max_configs {self.max_configs}): narrow the space with --models or --max-samples")
                configs = [Config(p) for p in ext]
                for i in stages_left:
                    configs = [Config(c.stages + (x,)) for c in configs for x in self._choices[i]]
                self._level = n
            else:
                ext = [p + (c,) for p in self._prefixes for c in self._choices[k]]
                if self._asked + len(ext) > self.max_configs:
                    raise ConfigError("grid", f"more than {self.max_configs} configurations to score "
                                      f"(max_configs): narrow the space with --models or --max-samples")
                configs = [Config(p + tuple(self._filler[k + 1:])) for p in ext]
                self._ext = ext
                self._level = k + 1
            fresh = [c for c in dict.fromkeys(configs) if c not in self._results]
            self._asked += len(fresh)
            self._waiting = len(fresh)
            if not last:
                self._level_configs = configs
            if fresh:
                return [Proposal(c, source=f"grid-level{self._level - 1}" if not last else "grid") for c in fresh]
            self._advance()
        return []

    def _advance(self) -> None:
        """After a prefix level is scored: keep the prefixes whose measured cost fits."""
        if self._level >= len(self.space.stages) or not hasattr(self, "_ext"):
            return
        k = self._level - 1
        keep = []
        for p, c in zip(self._ext, self._level_configs):
            if self._budget_ok(self._results[c], k):
                keep.append(p)
            else:
                self._pruned += 1
        self._prefixes = keep
        del self._ext

    def tell(self, trial: Trial) -> None:
        super().tell(trial)
        self._results[trial.config] = trial
        self._waiting = getattr(self, "_waiting", 0) - 1
        if self._waiting == 0:
            self._advance()

    def state(self) -> dict:
        return {"level": self._level, "pruned_prefixes": self._pruned, "scanned": self._scanned}
