"""Exhaustive grid: every point of the space's grid, scored in a few batched replay calls.

On the configuration space its best trial is the true optimum on the training questions, the
target that "trials to reach the optimum" is measured against; it scores every configuration
within the budget (feasibility is known before the replay: search/spaces/config_walks.py). On
a controller's parameters it is a product grid of at most `trials` points (default 50).

A space that can be scanned ("scan" in `space.supports`) and is larger than `max_configs`, or
larger than `scan_above` when the grid runs until done (no trial limit), is not proposed point
by point (thousands of archived trials help nobody: a sweep's grid cells were most of its
disk): the grid scores the whole
space by compiled scans of the same objective (replay.engine.scan_space) and proposes, as its
trials, the pick of every selection rule over the whole space (`space.scan_picks`:
search/selection.py), so the final pick is the one the rule would make among every
configuration. Its state records the real work: configurations scanned, how many were
feasible, the scan's wall time and the best configurations by training mean (`scanned`,
`scan_feasible`, `scan_s`, `scan_top`), which the summary reports.
"""

from __future__ import annotations

from typing import Any, ClassVar, Hashable

from ..protocol import Proposal, ReplayByAsking, Searcher, Trial
from ..spaces.base import Space
from ..trial import Objective


class GridSearcher(ReplayByAsking, Searcher):
    """Parameters (options):
        max_configs: the most points scored one by one (200,000); a larger space that can be
            scanned is scanned whole, one that cannot is refused in one line.
        prune: skip what measured costs prove infeasible, where the space can (True).
        scan_above: a grid run until done (no trial limit) scans a space of more points than
            this (1,000) instead of scoring them one by one, where the space can be scanned.
    """

    name: ClassVar[str] = "grid"
    exhaustive: ClassVar[bool] = True  # runs until done: the CLI's default trial limit does not apply
    uses_scan: ClassVar[bool] = True  # takes objective= (a whole-space scan of the same objective)
    options_accepted: ClassVar[frozenset[str]] = frozenset({"max_configs", "prune", "scan_above"})
    needs: ClassVar[frozenset[str]] = frozenset({"grid"})

    def __init__(self, space: Space, *, seed: int = 0, trials: int | None = None, objective: Objective | None = None,
                 max_configs: int = 200_000, prune: bool = True, scan_above: int = 1_000):
        super().__init__(space, seed=seed, trials=trials)
        self.max_configs = int(max_configs)
        self.scan_above = int(scan_above) if trials is None else self.max_configs
        self._objective = objective
        self._walk = space.grid(cap=trials, max_points=self.max_configs, prune=bool(prune))
        self._results: dict[Hashable, Trial] = {}
        self._scanned = 0
        self._scan: dict[str, Any] = {}
        self._started = False
        self._waiting = 0  # proposals of the last batch not told yet

    def ask(self) -> list[Proposal]:
        pending = self.pending()
        if pending:
            return pending
        first, self._started = not self._started, True
        size = self.space.size()
        if first and self._objective is not None and "scan" in self.space.supports and size is not None \
                and size > min(self.max_configs, self.scan_above):
            points, self._scan = self.space.scan_picks(self._objective)  # compiled scans of the whole space
            self._scanned = int(self._scan.get("scanned", 0))
            self._walk = _Done()
            return [Proposal(p, source="grid-scan", extra={"scanned": self._scanned}) for p in points]
        batch = self._walk.next_batch(self._results)
        self._waiting = len(batch)
        source = self._walk.level_source()
        return [Proposal(p, source=source) for p in batch]

    def tell(self, trial: Trial) -> None:
        super().tell(trial)
        self._results[self.space.key(trial.point)] = trial
        self._waiting -= 1
        if self._waiting == 0:
            self._walk.advance(self._results)  # the batch is in: prune what it proved infeasible

    def state(self) -> dict[str, Any]:
        out = {**self._walk.state(), "scanned": self._scanned}
        if self._scan:
            out.update({"scan_feasible": self._scan.get("feasible"), "scan_s": self._scan.get("wall_s"),
                        "scan_picks": self._scan.get("picks"), "scan_top": self._scan.get("top")})
        return out


class _Done:
    def next_batch(self, results) -> list:
        return []

    def advance(self, results) -> None:
        pass

    def level_source(self) -> str:
        return "grid"

    def state(self) -> dict[str, Any]:
        return {}
