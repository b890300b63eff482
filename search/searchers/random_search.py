"""Random search: uniform over the configurations the cost model says may be feasible, no repeats."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from replay.engine import Config, StageChoice

from ..protocol import Proposal, ReplayByAsking, Searcher, Trial
from ..space import ESTIMATE_SLACK, SearchSpace

ENUMERATE_LIMIT = 2_000_000  # spaces up to this size are enumerated; larger ones rejection-sampled


class StageChoices:
    """One stage's (model, count) choices as flat arrays, with their estimated cost."""

    def __init__(self, space: SearchSpace, stage: int):
        pairs = [(m, n) for m in space.models[stage] for n in space.counts[stage][m]]
        self.models = [m for m, _ in pairs]
        self.counts = np.array([n for _, n in pairs], dtype=np.int64)
        self.cost = np.array([space.costs[stage][m][0] + n * space.costs[stage][m][1] for m, n in pairs])

    def __len__(self) -> int:
        return len(self.models)

    def choice(self, k: int) -> StageChoice:
        return StageChoice(self.models[k], int(self.counts[k]))


class RandomSearcher(ReplayByAsking, Searcher):
    """Uniform over {config in space : estimated cost <= budget (+ slack)}, without replacement.

    Small spaces are enumerated once and shuffled; large ones are rejection-sampled from the
    uniform product distribution (which is uniform on the accepted set). Ends when every
    candidate has been tried."""

    name: ClassVar[str] = "random"
    options_accepted: ClassVar[tuple[str, ...]] = ()

    def __init__(self, space: SearchSpace, seed: int = 0, **options):
        super().__init__(space, seed=seed, **options)
        self._stages = [StageChoices(space, i) for i in range(len(space.stages))]
        self._limit = space.budget * (1 + ESTIMATE_SLACK)
        self._order: np.ndarray | None = None
        self._pos = 0
        self._seen: set[Config] = set()

    def _config(self, ks) -> Config:
        return Config(tuple(st.choice(int(k)) for st, k in zip(self._stages, ks)))

    def _enumerated(self) -> list[Config]:
        if self._order is None:
            sizes = [len(s) for s in self._stages]
            cost = np.zeros(sizes)
            for i, st in enumerate(self._stages):
                shape = [1] * len(sizes)
                shape[i] = sizes[i]
                cost = cost + st.cost.reshape(shape)
            ok = np.flatnonzero(cost.reshape(-1) <= self._limit)
            self._order = self.rng.permutation(ok)
            self._sizes = sizes
        return self._order

    def ask(self) -> list[Proposal]:
        pending = self.pending()
        if pending:
            return pending
        if self.space.size() <= ENUMERATE_LIMIT:
            order = self._enumerated()
            while self._pos < len(order):
                cfg = self._config(np.unravel_index(order[self._pos], self._sizes))
                self._pos += 1
                if cfg not in self._seen:
                    return [Proposal(cfg, source="random")]
            return []
        for _ in range(64):
            draws = np.stack([self.rng.integers(0, len(s), size=4096) for s in self._stages], axis=1)
            cost = sum(s.cost[draws[:, i]] for i, s in enumerate(self._stages))
            for row in draws[cost <= self._limit]:
                cfg = self._config(row)
                if cfg not in self._seen:
                    return [Proposal(cfg, source="random")]
        return []

    def tell(self, trial: Trial) -> None:
        super().tell(trial)
        self._seen.add(trial.config)

    def state(self) -> dict:
        b = self.best()
        return {"best": str(b.config) if b else None}
