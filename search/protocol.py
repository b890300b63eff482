"""The searcher protocol: a tiny ask/tell interface, one small class per strategy.

    class MySearcher(Searcher):
        name = "mine"
        def ask(self) -> list[Proposal]: ...   # one or more points to try next
        def tell(self, trial: Trial) -> None: ...  # the environment's verdict on one of them

A searcher is written against the space protocol (search/spaces/base.py), never against one
space: it samples, mutates, walks and describes points through `self.space`, so it runs on
every space that has the capabilities it `needs` (the runner refuses the others in one line).

The runner (search/runner.py) asks, scores the proposals on the training questions in one
replay call (`space.evaluate`), archives each trial, and tells the searcher, until the trial
budget is spent or the searcher returns no proposal. Infeasible trials (over budget) are told
too, with `feasible=False` and no score: a searcher must never count them as results.

What a searcher declares on its class (read by the runner, the CLI and the sweep):
- `name`, `uses_llm`;
- `exhaustive`: runs until done (the CLI's default trial budget does not apply);
- `uses_scan`: takes `objective=` to score a whole space in one compiled call;
- `options_accepted`: the keyword options it takes (any other is a one-line error);
- `needs`: the space capabilities it needs (`Space.supports`).

What the runner guarantees and expects:
- `ask` may return several proposals; the runner scores them in one replay call and tells them
  in order (each one is a trial and counts against `--trials`; a list longer than the trials
  left is cut). A repeated point is scored again (same numbers: the replay is deterministic)
  and counts as a trial; avoid repeats with `tried`.
- A proposal outside the space (`space.contains` is False) is a bug in the searcher: the runner
  stops with a ConfigError. Searchers that take proposals from an LLM validate them first.
- `space.estimate_cost(point)` / `space.maybe_feasible(point)` give the expected cost without
  replay when the space has a cost model; the replay's measured cost decides feasibility.
- LLM accounting, read by the report: cumulative `state()["llm_wall_s"]` (seconds waiting for
  the LLM) and `state()["llm_tokens"]` (prompt + completion tokens) if the searcher keeps them;
  otherwise the sum of `extra["llm_wall_s"]` / `extra["llm_tokens"]` over trials (put the cost of
  one LLM call on one proposal only).
- `--resume`: a fresh searcher (same space, seed, options) gets `replay_history(trials)` with the
  archived trials, then the loop goes on. `ReplayByAsking` below does this for searchers whose
  proposals depend only on their seed and the trials they were told.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar, Hashable

import numpy as np

from replay.errors import InputError

from .spaces.base import Space
from .trial import Trial, best_trial

__all__ = ["Proposal", "ReplayByAsking", "Searcher", "Trial"]


@dataclass(frozen=True)
class Proposal:
    """A point to try, with who proposed it and why (copied into the archived trial)."""

    point: Any
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Searcher(abc.ABC):
    """Base class. Subclasses set `name` and implement `ask` (and usually `tell`)."""

    name: ClassVar[str] = ""
    uses_llm: ClassVar[bool] = False
    exhaustive: ClassVar[bool] = False
    uses_scan: ClassVar[bool] = False
    options_accepted: ClassVar[frozenset[str]] = frozenset()
    needs: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, space: Space, *, seed: int = 0, trials: int | None = None):
        self.space = space
        self.seed = seed
        self.trials = trials  # the trial budget (None: until the searcher stops)
        self.rng = np.random.default_rng(seed)
        self.history: list[Trial] = []
        self._tried: set[Hashable] = set()

    @abc.abstractmethod
    def ask(self) -> list[Proposal]:
        """Points to evaluate next (may be several). An empty list ends the search."""

    def tell(self, trial: Trial) -> None:
        """Record a finished trial. Subclasses that override should call super().tell."""
        self.history.append(trial)
        self._tried.add(self.space.key(trial.point))

    def replay_history(self, trials: list[Trial]) -> None:
        """Bring a fresh searcher to the state after `trials` (used by --resume).

        The default tells each trial in turn; searchers whose `ask` consumes random numbers or
        LLM turns override this to stay consistent."""
        for t in trials:
            self.tell(t)

    def state(self) -> dict[str, Any]:
        """Searcher-specific state worth archiving with each trial (e.g. current guidelines)."""
        return {}

    # helpers for subclasses
    def best(self) -> Trial | None:
        return best_trial(self.history)

    def tried(self, point: Any) -> bool:
        return self.space.key(point) in self._tried

    def trials_left(self) -> int | None:
        return None if self.trials is None else max(0, self.trials - len(self.history))


class ReplayByAsking:
    """Mixin for searchers that are deterministic given their seed and what they were told.

    `replay_history` asks again and checks that each proposal is the archived trial's point,
    then tells the archived trial (no evaluation). Proposals of the last batch that the archive
    does not hold yet are kept and returned first by `ask` (call `self.pending()` at the top of
    `ask`)."""

    _pending: list[Proposal] | tuple = ()  # set by replay_history
    space: Space

    def replay_history(self, trials: list[Trial]) -> None:
        pending: list[Proposal] = []
        for t in trials:
            if not pending:
                pending = list(self.ask())
                if not pending:
                    raise InputError("--resume", f"the searcher ends before archived trial {t.number}: "
                                     "the archive was written with other options or another version")
            p = pending.pop(0)
            if self.space.key(p.point) != self.space.key(t.point):
                raise InputError("--resume", f"archived trial {t.number} is {self.space.label(t.point)}, but the "
                                 f"searcher proposes {self.space.label(p.point)} there: the archive was written with "
                                 "other options or another version")
            self.tell(t)
        self._pending = pending

    def pending(self) -> list[Proposal]:
        out = list(self._pending)
        self._pending = []
        return out
