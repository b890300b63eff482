"""The controller interface over step-level traces, and the Python engine that replays it.

A controller spends the samples of one pool (question, stage, model) a few tokens at a time.
It sees an `Episode` (the state) and answers each call of `decide` with one action:

    Open()                open the next sample of the pool (depth 0, nothing generated yet)
    Continue(i, steps=1)  extend sample i by `steps` intervals of K tokens (steps=None: to its end)
    Probe(i)              read sample i's current answer (costs `probe_cost` tokens unless finished)
    Prune(i)              drop sample i: its tokens stay spent, its answer no longer votes
    Answer(answer=None)   stop; answer=None applies the default rule (see `Episode.default_answer`)

The order in which Open() reveals samples is the replay engine's draw order: the partial
Fisher-Yates shuffle of replay/kernels.py driven by stream_start(seed, question, replicate,
stage). So the first N samples a controller opens are exactly the N samples that the engine
draws for configuration 'M:N', and every controller sees the same luck on the same
(question, replicate) (common random numbers). docs/controllers.md has the full semantics.

This engine is plain Python: slow (tens of microseconds per action) and meant for controllers
that users or an LLM agent write; the built-in controllers also run compiled, in kernels.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator

import numpy as np

from ..aggregation import majority
from ..errors import InputError
from ..reference import Stream, draw, stream_start
from .steps import StepArrays


class ControllerError(InputError):
    """A controller asked for an impossible action, or never answered."""


# --------------------------------------------------------------------------------------------
# Actions


@dataclass(frozen=True)
class Open:
    pass


@dataclass(frozen=True)
class Continue:
    sample: int
    steps: int | None = 1  # None: run the sample to its end


@dataclass(frozen=True)
class Probe:
    sample: int


@dataclass(frozen=True)
class Prune:
    sample: int


@dataclass(frozen=True)
class Answer:
    answer: int | str | None = None  # an answer id, an answer's text, or None for the default rule


Action = Open | Continue | Probe | Prune | Answer


# --------------------------------------------------------------------------------------------
# Parameters and the beta knob


@dataclass(frozen=True)
class Param:
    """One tunable parameter of a controller: its range, whether it is an integer, its default."""

    name: str
    low: float
    high: float
    integer: bool = False
    default: float | None = None
    help: str = ""
    span: tuple[float, float] | None = None  # the range a searcher explores (default: low .. high)

    @property
    def search_range(self) -> tuple[float, float]:
        return self.span if self.span is not None else (self.low, self.high)

    def check(self, value: Any, where: str) -> float | int:
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise InputError(where, f"parameter {self.name!r} must be a number, got {value!r}") from None
        if self.integer:
            if v != round(v):
                raise InputError(where, f"parameter {self.name!r} must be an integer, got {value!r}")
            v = int(round(v))
        if not self.low <= v <= self.high:
            raise InputError(where, f"parameter {self.name!r} = {value} is outside [{self.low:g}, {self.high:g}]")
        return v


def lerp(lo: float, hi: float, beta: float, integer: bool = False):
    """Monotone map of beta in [0, 1] onto [lo, hi] (rounded for integers)."""
    v = lo + (hi - lo) * beta
    return int(math.floor(v + 0.5)) if integer else v


def check_beta(beta: Any, where: str = "--betas") -> float:
    try:
        b = float(beta)
    except (TypeError, ValueError):
        raise InputError(where, f"beta must be a number in [0, 1], got {beta!r}") from None
    if not 0.0 <= b <= 1.0:
        raise InputError(where, f"beta must lie in [0, 1], got {beta!r}")
    return b


class Controller:
    """Base class of every controller. Subclasses set `name`, `params`, implement `decide`.

    `decide(ep)` is called until it returns Answer. It may keep state on `self`; `reset(ep)` is
    called before each episode (one question and replicate). Controllers that expose the
    single knob beta in [0, 1] override `beta_params(beta)`, which must map beta monotonically
    onto every parameter (more beta = more compute), so that a beta sweep traces an
    accuracy-against-tokens curve.
    """

    name: ClassVar[str] = ""
    params: ClassVar[tuple[Param, ...]] = ()

    def __init__(self, **values: Any):
        where = f"controller {self.name or type(self).__name__!r}"
        known = {p.name: p for p in self.params}
        unknown = [k for k in values if k not in known]
        if unknown:
            raise InputError(where, f"unknown parameter {unknown[0]!r} (parameters: {', '.join(known) or 'none'})")
        self.values: dict[str, float | int] = {}
        for p in self.params:
            if p.name in values:
                self.values[p.name] = p.check(values[p.name], where)
            elif p.default is not None:
                self.values[p.name] = p.check(p.default, where)
            else:
                raise InputError(where, f"parameter {p.name!r} has no default: give a value")
        for k, v in self.values.items():
            setattr(self, k, v)

    @classmethod
    def beta_params(cls, beta: float) -> dict[str, float | int] | None:
        """Parameters at knob value beta; None when the controller has no knob."""
        return None

    @classmethod
    def has_beta(cls) -> bool:
        return cls.beta_params(0.5) is not None

    @classmethod
    def from_beta(cls, beta: float) -> "Controller":
        p = cls.beta_params(check_beta(beta))
        if p is None:
            raise InputError(f"controller {cls.name!r}", "has no beta knob (it does not define beta_params)")
        return cls(**p)

    def reset(self, ep: "Episode") -> None:
        pass

    def decide(self, ep: "Episode") -> Action:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v}" for k, v in self.values.items())
        return f"{self.name}({inner})"


class ScriptedController(Controller):
    """A controller written as a generator: `script(ep)` yields actions in order and reads the
    episode between yields. Usually the clearest way to write one; `decide` drives it."""

    def reset(self, ep: "Episode") -> None:
        self._gen: Iterator[Action] = self.script(ep)

    def script(self, ep: "Episode") -> Iterator[Action]:  # pragma: no cover - abstract
        raise NotImplementedError

    def decide(self, ep: "Episode") -> Action:
        try:
            return next(self._gen)
        except StopIteration:
            return Answer()


# --------------------------------------------------------------------------------------------
# The episode (state) and the Python engine


class Episode:
    """The state a controller sees: one question, one replicate, one pool.

    Per opened sample i (0-based, in opening order): depth[i] (intervals of K tokens
    generated), finished[i], pruned[i], final[i] (its final answer id once finished, else
    None) and reading[i] (the latest answer revealed: its final answer once finished, else
    its last probe, None if never probed or the probe found no answer). Answer ids index
    `answers` (the store's dictionary); `text(a)` gives the string.
    """

    def __init__(self, steps: StepArrays, q: int, r: int, seed: int, probe_cost: float = 0.0):
        self._A = steps
        self.question = q
        self.replicate = r
        pool = int(steps.pool_of_q[q])
        self._base = int(steps.pool_off[pool])
        self.pool_size = int(steps.pool_off[pool + 1] - self._base)
        self._prompt = int(steps.pool_prompt[pool])
        self._gold = int(steps.gold[q])
        self.K = steps.K
        self.probe_cost = float(probe_cost)
        # the engine's draw order (replay/reference.py's oracle); its prefixes are the draws of
        # smaller counts, so opening j samples opens exactly the engine's first j draws
        self._order = draw(Stream(stream_start(seed, int(steps.question_hash[q]), r, steps.stage)),
                           self.pool_size, self.pool_size)
        self.samples: list[int] = []  # global sample index per opened sample
        self.depth: list[int] = []
        self.finished: list[bool] = []
        self.pruned: list[bool] = []
        self.final: list[int | None] = []
        self.reading: list[int | None] = []
        self.n_probes = 0
        self.answered: int | None = None
        self.done = False

    # ---- views
    @property
    def n_opened(self) -> int:
        return len(self.samples)

    @property
    def n_left(self) -> int:
        """Samples of the pool not opened yet."""
        return self.pool_size - len(self.samples)

    def active(self) -> list[int]:
        return [i for i in range(self.n_opened) if not self.pruned[i]]

    def running(self) -> list[int]:
        return [i for i in range(self.n_opened) if not self.pruned[i] and not self.finished[i]]

    def tokens_of(self, i: int) -> int:
        return min(self.depth[i] * self.K, int(self._A.s_completion[self.samples[i]]))

    @property
    def tokens(self) -> float:
        """Tokens spent so far: the prompt once (prefix caching) if anything was generated,
        each sample's generated tokens, and probe_cost per probe."""
        gen = sum(self.tokens_of(i) for i in range(self.n_opened))
        prompt = self._prompt if self.n_opened else 0
        return prompt + gen + self.probe_cost * self.n_probes

    def text(self, a: int | None) -> str | None:
        return None if a is None else str(self._A.answers[a])

    # ---- actions
    def _need(self, i: Any, action: str) -> int:
        if not isinstance(i, (int, np.integer)) or not 0 <= i < self.n_opened:
            raise ControllerError("controller", f"{action}({i!r}): no such opened sample (opened: {self.n_opened})")
        if self.pruned[i]:
            raise ControllerError("controller", f"{action}({i}): sample {i} was pruned")
        return int(i)

    def apply(self, act: Action) -> None:
        A = self._A
        if isinstance(act, Open):
            j = self.n_opened
            if j >= self.pool_size:
                raise ControllerError("controller", f"Open(): the pool holds {self.pool_size} samples, all opened")
            self.samples.append(self._base + self._order[j])
            self.depth.append(0)
            self.finished.append(False)
            self.pruned.append(False)
            self.final.append(None)
            self.reading.append(None)
        elif isinstance(act, Continue):
            i = self._need(act.sample, "Continue")
            if self.finished[i]:
                raise ControllerError("controller", f"Continue({i}): sample {i} is already finished")
            if act.steps is not None and (not isinstance(act.steps, (int, np.integer)) or act.steps < 1):
                raise ControllerError("controller", f"Continue({i}, steps={act.steps!r}): steps must be a positive integer or None")
            s = self.samples[i]
            n_int = -(-int(A.s_completion[s]) // self.K)  # intervals to reach the real length
            d = n_int if act.steps is None else min(self.depth[i] + int(act.steps), n_int)
            self.depth[i] = d
            if d >= n_int:
                self.finished[i] = True
                self.final[i] = int(A.s_answer[s])
                self.reading[i] = self.final[i]
        elif isinstance(act, Probe):
            i = self._need(act.sample, "Probe")
            if not self.finished[i]:
                self.n_probes += 1
                self.reading[i] = A.probe_at(self.samples[i], self.depth[i])
        elif isinstance(act, Prune):
            i = self._need(act.sample, "Prune")
            self.pruned[i] = True
        elif isinstance(act, Answer):
            a = act.answer
            if a is None:
                a = self.default_answer()
            elif isinstance(a, str):
                a = A.answer_id(a)
            elif isinstance(a, (int, np.integer)) and -1 <= a < len(A.answers):
                a = int(a)
            else:
                raise ControllerError("controller", f"Answer({a!r}): not an answer id, an answer text or None")
            self.answered = a
            self.done = True
        else:
            raise ControllerError("controller", f"decide returned {act!r}, not an action (Open, Continue, Probe, Prune, Answer)")

    def default_answer(self) -> int:
        """Majority over the final answers of finished, unpruned samples (ties to the one opened
        first); if none finished, majority over the latest readings of unpruned samples; -1 if
        there is no answer at all (scored 0)."""
        live = self.active()
        votes = [self.final[i] for i in live if self.finished[i]]
        if not votes:
            votes = [self.reading[i] for i in live if self.reading[i] is not None]
        if not votes:
            return -1
        return majority(votes)

    def score(self) -> float:
        """Stored score of the returned answer: that of the first opened, finished, unpruned
        sample with this final answer; else of the first pool sample with it; else gold match."""
        A = self._A
        a = self.answered
        if a is None or a < 0:
            return 0.0
        for i in self.active():
            if self.finished[i] and self.final[i] == a:
                return float(A.s_score[self.samples[i]])
        for s in range(self._base, self._base + self.pool_size):
            if int(A.s_answer[s]) == a:
                return float(A.s_score[s])
        if self._gold < 0:
            return math.nan
        return 1.0 if a == self._gold else 0.0


def max_actions(steps: StepArrays) -> int:
    """A generous bound on the actions of one episode; a controller that exceeds it loops."""
    return 8 * steps.max_pool * (steps.max_intervals + 2) + 1000


def run_episode(ctrl: Controller, steps: StepArrays, q: int, r: int, seed: int, *, probe_cost: float = 0.0) -> Episode:
    ep = Episode(steps, q, r, seed, probe_cost)
    name = f"controller {ctrl.name or type(ctrl).__name__!r}"
    ctrl.reset(ep)
    limit = max_actions(steps)
    for _ in range(limit):
        act = ctrl.decide(ep)
        try:
            ep.apply(act)
        except ControllerError as e:  # say which controller and where
            raise ControllerError(name, f"question {q}, replicate {r}: {e.problem}") from None
        if ep.done:
            return ep
    raise ControllerError(name, f"took {limit} actions without answering on question {q}, replicate {r} (does it loop?)")


def run_episodes(ctrl: Controller, steps: StepArrays, qidx, *, replicates: int, seed: int, probe_cost: float = 0.0,
                 progress=None):
    """Every (question, replicate) episode of one controller instance: arrays [Q, R] of score,
    tokens, samples opened and probes. The Python engine's loop, in-process or in a sandbox."""
    Q, R = len(qidx), replicates
    score, tokens = np.empty((Q, R)), np.empty((Q, R))
    opened, probes = np.empty((Q, R), dtype=np.int64), np.empty((Q, R), dtype=np.int64)
    for qi, q in enumerate(qidx):
        for r in range(R):
            ep = run_episode(ctrl, steps, int(q), r, seed, probe_cost=probe_cost)
            score[qi, r], tokens[qi, r] = ep.score(), ep.tokens
            opened[qi, r], probes[qi, r] = ep.n_opened, ep.n_probes
        if progress is not None:
            progress(1)
    return score, tokens, opened, probes
