"""The searcher protocol: a tiny ask/tell interface, one small class per strategy.

    class MySearcher(Searcher):
        name = "mine"
        def ask(self) -> list[Proposal | Config]: ...  # one or more configurations to try next
        def tell(self, trial: Trial) -> None: ... # the environment's verdict on one of them

The runner (search/runner.py) asks, scores each proposal on the training questions with the
replay, archives the trial, and tells the searcher, until the trial budget is spent or the
searcher returns no proposal. Infeasible trials (over budget) are told too, with
`feasible=False` and no score: a searcher must never count them as results.

Searchers are registered by name in search/searchers/__init__.py; a new searcher is one file.

What the runner guarantees and expects:
- `ask` may return several proposals; the runner scores them in one `evaluate_batch` call and
  tells them in order (each one is a trial and counts against `--trials`; a list longer than
  the trials left is cut). A repeated configuration is scored again (same numbers: the replay is
  deterministic) and counts as a trial; avoid repeats with `tried`.
- A proposal outside the space (`space.contains` is False) is a bug in the searcher: the runner
  stops with a ConfigError. Searchers that take proposals from an LLM validate them first.
- `space.estimate_units(config)` / `space.maybe_feasible(config)` give the expected cost
  without replay; the replay's measured cost decides feasibility.
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
from typing import Any, ClassVar

import numpy as np

from replay.engine import Config

from .space import SearchSpace


@dataclass(frozen=True)
class Proposal:
    """A configuration to try, with who proposed it and why (copied into the archived trial)."""

    config: Config
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Trial:
    number: int  # 0-based, in the order trials finished
    config: Config
    feasible: bool
    score: float | None  # mean training score; None when infeasible
    stderr: float | None
    units: float  # measured cost in budget units per question
    tokens: float
    wall_s: float  # replay time of this trial
    source: str = ""  # who proposed it (e.g. "init", "llm", "random-fill")
    extra: dict[str, Any] = field(default_factory=dict)  # searcher-specific (LLM prompt, answer, ...)
    stage_units: tuple[float, ...] = ()  # measured cost per stage (sums to `units`)
    stage_scores: tuple[float, ...] = ()  # per-stage score of the aggregated output (NaN: no gold)


class Searcher(abc.ABC):
    """Base class. Subclasses set `name` and implement `ask` and `tell`."""

    name: ClassVar[str] = ""
    uses_llm: ClassVar[bool] = False

    def __init__(self, space: SearchSpace, seed: int = 0, **options: Any):
        self.space = space
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.options = options
        self.history: list[Trial] = []

    @abc.abstractmethod
    def ask(self) -> list[Proposal | Config]:
        """Configurations to evaluate next (may be several). An empty list ends the search."""

    def tell(self, trial: Trial) -> None:
        """Record a finished trial. Subclasses that override should call super().tell."""
        self.history.append(trial)

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
        ok = [t for t in self.history if t.feasible and t.score is not None]
        return max(ok, key=lambda t: (t.score, -t.units)) if ok else None

    def tried(self, config: Config) -> bool:
        return any(t.config == config for t in self.history)


def as_proposal(p: Proposal | Config) -> Proposal:
    return p if isinstance(p, Proposal) else Proposal(p)


class ReplayByAsking:
    """Mixin for searchers that are deterministic given their seed and what they were told.

    `replay_history` asks again and checks that each proposal is the archived trial's
    configuration, then tells the archived trial (no evaluation). Proposals of the last
    batch that the archive does not hold yet are kept and returned first by `ask` (call
    `self.pending()` at the top of `ask`)."""

    _pending: list[Proposal]

    def replay_history(self, trials: list[Trial]) -> None:
        from replay.errors import InputError

        pending: list[Proposal] = []
        for t in trials:
            if not pending:
                pending = [as_proposal(p) for p in self.ask()]
                if not pending:
                    raise InputError("--resume", f"the searcher ends before archived trial {t.number}: "
                                     "the archive was written with other options or another version")
            p = pending.pop(0)
            if p.config != t.config:
                raise InputError("--resume", f"archived trial {t.number} is {t.config}, but the searcher "
                                 f"proposes {p.config} there: the archive was written with other options "
                                 "or another version")
            self.tell(t)
        self._pending = pending

    def pending(self) -> list[Proposal]:
        out = getattr(self, "_pending", [])
        self._pending = []
        return out
