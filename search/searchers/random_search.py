"""Random search: untried random points of the space, in batches.

The space says what "random" means (`space.random_points`): for configurations, uniform over
those the cost model says may be feasible (estimate within the budget plus its slack), without
repeats, ending when none is left; for a controller's parameters, uniform over each
parameter's search range. A batch is scored in one replay call.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..protocol import Proposal, ReplayByAsking, Searcher
from ..spaces.base import Space

BATCH = 16  # proposals per replay call (fewer near the end of the trial budget)


class RandomSearcher(ReplayByAsking, Searcher):
    name: ClassVar[str] = "random"

    def __init__(self, space: Space, *, seed: int = 0, trials: int | None = None):
        super().__init__(space, seed=seed, trials=trials)
        self._seen: set = set()
        self._stream = space.random_points(self.rng, self._seen)

    def ask(self) -> list[Proposal]:
        pending = self.pending()
        if pending:
            return pending
        left = self.trials_left()
        n = BATCH if left is None else max(1, min(BATCH, left))
        out = []
        for p in self._stream:
            out.append(Proposal(p, source="random"))
            if len(out) >= n:
                break
        return out

    def state(self) -> dict[str, Any]:
        b = self.best()
        return {"best": self.space.label(b.point) if b else None}
