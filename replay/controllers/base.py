"""The controller interface over step-level traces, and the Python engine that replays it.

A controller spends the samples of one pool (question, stage, model) a few tokens at a time.
It sees an `Episode` (the state) and answers each call of `decide` with one action:

    Open()                open the next sample of the pool (depth 0, nothing generated yet)
    Continue(i, steps=1)  extend sample i by `steps` intervals of K tokens (steps=None: to its end)
    Probe(i)              read sample i's current answer (costs `probe_cost` tokens unless finished)
    Prune(i)              drop sample i: its tokens stay spent, its answer no longer votes
    Answer(answer=None)   stop; answer=None applies the default rule (see `Episode.default_answer`)
    Advance(samples, steps=1)  for each listed sample in order: Continue(i, steps), then Probe(i)
                          if it is still unfinished. Exactly that sequence of actions (same state,
                          same cost), in one call: the usual round of a width-depth controller

The order in which Open() reveals samples is the replay engine's draw order: the partial
Fisher-Yates shuffle of replay/kernels.py driven by stream_start(seed, question, replicate,
stage). So the first N samples a controller opens are exactly the N samples that the engine
draws for configuration 'M:N', and every controller sees the same luck on the same
(question, replicate) (common random numbers). docs/controllers.md has the full semantics.

This engine is plain Python (about a microsecond per action, plus the controller's own code)
and meant for controllers that users or an LLM agent write; the built-in controllers also run
compiled, in kernels.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator

import numpy as np

from ..aggregation import majority
from ..errors import InputError
from ..reference import GOLDEN, MASK, MIX1, MIX2, stream_start
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


@dataclass(frozen=True)
class Advance:
    samples: Any  # one sample index, or a sequence of them (applied in order)
    steps: int | None = 1  # as Continue's


Action = Open | Continue | Probe | Prune | Answer | Advance


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
    `answers` (the store's dictionary); `text(a)` gives the string. `samples[i]` is the
    store's index of opened sample i.

    Speed (the engine runs millions of actions per discovery round): the pool is read from
    the question's `QuestionView` (plain Python lists, built once per question), the opening
    order is drawn lazily (one step of the partial Fisher-Yates shuffle per Open: the same
    order as drawing it whole, since a prefix of the shuffle is the shuffle of the prefix),
    and the tokens spent and the running and active samples are kept up to date as actions
    apply. replay/controllers/reference.py keeps the first, plain version; the tests check
    both give the same state after every action.
    """

    def __init__(self, steps: StepArrays, q: int, r: int, seed: int, probe_cost: float = 0.0):
        v = steps.view(q)
        self._A = steps
        self._v = v
        self.question = q
        self.replicate = r
        self.pool_size = v.size
        self.K = steps.K
        self.probe_cost = float(probe_cost)
        # the opening order: replay/reference.py's `draw`, one step per Open (see _next_slot)
        self._state = stream_start(seed, v.qhash, r, steps.stage)
        self._x = 0
        self._perm: list[int] | None = None
        self._local: list[int] = []  # pool-local index per opened sample
        self.samples: list[int] = []  # global sample index per opened sample
        self.depth: list[int] = []
        self.finished: list[bool] = []
        self.pruned: list[bool] = []
        self.final: list[int | None] = []
        self.reading: list[int | None] = []
        self.n_probes = 0
        self.answered: int | None = None
        self.done = False
        self._gen = 0  # tokens generated so far, over all opened samples
        self._running: list[int] = []  # opened, not pruned, not finished (ascending)
        self._active: list[int] = []  # opened, not pruned (ascending)

    # ---- views
    @property
    def n_opened(self) -> int:
        return len(self.samples)

    @property
    def n_left(self) -> int:
        """Samples of the pool not opened yet."""
        return self.pool_size - len(self.samples)

    def active(self) -> list[int]:
        return list(self._active)

    def running(self) -> list[int]:
        return list(self._running)

    def tokens_of(self, i: int) -> int:
        return min(self.depth[i] * self.K, self._v.length[self._local[i]])

    @property
    def tokens(self) -> float:
        """Tokens spent so far: the prompt once (prefix caching) if anything was generated,
        each sample's generated tokens, and probe_cost per probe."""
        prompt = self._v.prompt if self.samples else 0
        return prompt + self._gen + self.probe_cost * self.n_probes

    def text(self, a: int | None) -> str | None:
        return None if a is None else str(self._A.answers[a])

    # ---- actions
    def _next_slot(self) -> int:
        """Pool-local index of the next sample in the engine's draw order: step j of
        reference.draw (each 64-bit output of the stream feeds two steps: its high half at
        even steps, its low half at odd ones)."""
        j = len(self._local)
        size = self._v.size
        if self._perm is None:
            self._perm = list(range(size))
        if j % 2 == 0:
            st = (self._state + GOLDEN) & MASK
            self._state = st
            z = ((st ^ (st >> 30)) * MIX1) & MASK
            z = ((z ^ (z >> 27)) * MIX2) & MASK
            self._x = x = z ^ (z >> 31)
            u = x >> 32
        else:
            u = self._x & 0xFFFFFFFF
        k = j + ((u * (size - j)) >> 32)
        perm = self._perm
        perm[j], perm[k] = perm[k], perm[j]
        return perm[j]

    def _need(self, i: Any, action: str) -> int:
        if not isinstance(i, (int, np.integer)) or not 0 <= i < len(self.samples):
            raise ControllerError("controller", f"{action}({i!r}): no such opened sample (opened: {self.n_opened})")
        if self.pruned[i]:
            raise ControllerError("controller", f"{action}({i}): sample {i} was pruned")
        return int(i)

    def apply(self, act: Action) -> None:
        t = type(act)
        if t is Continue:
            self._continue(act.sample, act.steps)
        elif t is Probe:
            self._probe(act.sample)
        elif t is Advance:
            self._advance(act.samples, act.steps)
        elif t is Open:
            self._open()
        elif t is Prune:
            self._prune(act.sample)
        elif t is Answer:
            self._answer(act.answer)
        elif isinstance(act, Continue):  # subclasses of the actions: the same
            self._continue(act.sample, act.steps)
        elif isinstance(act, Probe):
            self._probe(act.sample)
        elif isinstance(act, Advance):
            self._advance(act.samples, act.steps)
        elif isinstance(act, Open):
            self._open()
        elif isinstance(act, Prune):
            self._prune(act.sample)
        elif isinstance(act, Answer):
            self._answer(act.answer)
        else:
            raise ControllerError("controller", f"decide returned {act!r}, not an action "
                                                "(Open, Continue, Probe, Prune, Answer, Advance)")

    # The primitives (a tracing episode overrides them to record each one: replay/controllers/trace.py)

    def _open(self) -> None:
        j = len(self.samples)
        if j >= self._v.size:
            raise ControllerError("controller", f"Open(): the pool holds {self.pool_size} samples, all opened")
        loc = self._next_slot()
        self._local.append(loc)
        self.samples.append(self._v.base + loc)
        self.depth.append(0)
        self.finished.append(False)
        self.pruned.append(False)
        self.final.append(None)
        self.reading.append(None)
        self._running.append(j)
        self._active.append(j)

    def _continue(self, i, steps) -> int:
        if type(i) is not int or not 0 <= i < len(self.samples) or self.pruned[i]:
            i = self._need(i, "Continue")
        if self.finished[i]:
            raise ControllerError("controller", f"Continue({i}): sample {i} is already finished")
        if steps is not None and (type(steps) is not int or steps < 1):
            if not isinstance(steps, (int, np.integer)) or steps < 1:
                raise ControllerError("controller", f"Continue({i}, steps={steps!r}): steps must be a positive integer or None")
            steps = int(steps)
        v, loc, K = self._v, self._local[i], self.K
        n_int, length = v.n_int[loc], v.length[loc]
        d0 = self.depth[i]
        d = n_int if steps is None else min(d0 + steps, n_int)
        self.depth[i] = d
        t0, t1 = d0 * K, d * K
        self._gen += (t1 if t1 < length else length) - (t0 if t0 < length else length)
        if d >= n_int:
            self.finished[i] = True
            self.final[i] = self.reading[i] = v.final[loc]
            self._running.remove(i)
        return i

    def _probe(self, i) -> None:
        if type(i) is not int or not 0 <= i < len(self.samples) or self.pruned[i]:
            i = self._need(i, "Probe")
        if not self.finished[i]:
            self.n_probes += 1
            d = self.depth[i]
            if d <= 0:
                self.reading[i] = None
            else:
                rd = self._v.readings[self._local[i]]
                n = len(rd)
                # at depth d the stored probe min(d, n) - 1; none stored: no reading
                self.reading[i] = (rd[d - 1] if d < n else rd[n - 1]) if n else None

    def _advance(self, samples, steps) -> None:
        if isinstance(samples, (int, np.integer)):
            samples = (samples,)
        else:
            try:
                samples = tuple(samples)
            except TypeError:
                raise ControllerError("controller", f"Advance({samples!r}): not a sample index or a sequence of them") from None
        # _continue then _probe per sample, written out: this is the hot loop of width-depth
        # controllers (a sample that needs checking or conversion takes the primitives' path).
        # A sample not finished before has depth d0 < n_int, so it had generated exactly d0 * K
        # tokens; after d < n_int intervals exactly d * K, and its whole length once finished.
        v, K = self._v, self.K
        depth, finished, pruned, reading, local = self.depth, self.finished, self.pruned, self.reading, self._local
        n_int_of, length_of, at = v.n_int, v.length, v.reading_at
        plain = steps is None or (type(steps) is int and steps >= 1)
        gen = probes = 0
        try:
            for i in samples:
                if not plain or type(i) is not int or not 0 <= i < len(depth) or pruned[i] or finished[i]:
                    self._gen += gen
                    self.n_probes += probes
                    gen = probes = 0
                    i = self._continue(i, steps)
                    if not finished[i]:
                        self._probe(i)
                    continue
                loc = local[i]
                n_int = n_int_of[loc]
                d0 = depth[i]
                d = n_int if steps is None else d0 + steps
                if d >= n_int:
                    depth[i] = n_int
                    gen += length_of[loc] - d0 * K
                    finished[i] = True
                    self.final[i] = reading[i] = v.final[loc]
                    self._running.remove(i)
                else:
                    depth[i] = d
                    gen += (d - d0) * K
                    probes += 1
                    reading[i] = at[loc][d - 1]
        finally:
            self._gen += gen
            self.n_probes += probes

    def _prune(self, i) -> None:
        i = self._need(i, "Prune")
        self.pruned[i] = True
        self._active.remove(i)
        if not self.finished[i]:
            self._running.remove(i)

    def _answer(self, a) -> None:
        if a is None:
            a = self.default_answer()
        elif isinstance(a, str):
            a = self._A.answer_id(a)
        elif isinstance(a, (int, np.integer)) and -1 <= a < len(self._A.answers):
            a = int(a)
        else:
            raise ControllerError("controller", f"Answer({a!r}): not an answer id, an answer text or None")
        self.answered = a
        self.done = True

    def default_answer(self) -> int:
        """Majority over the final answers of finished, unpruned samples (ties to the one opened
        first); if none finished, majority over the latest readings of unpruned samples; -1 if
        there is no answer at all (scored 0)."""
        live = self._active
        fin, final = self.finished, self.final
        votes = [final[i] for i in live if fin[i]]
        if not votes:
            rd = self.reading
            votes = [rd[i] for i in live if rd[i] is not None]
        if not votes:
            return -1
        return majority(votes)

    def score(self) -> float:
        """Stored score of the returned answer: that of the first opened, finished, unpruned
        sample with this final answer; else of the first pool sample with it; else gold match."""
        v = self._v
        a = self.answered
        if a is None or a < 0:
            return 0.0
        for i in self._active:
            if self.finished[i] and self.final[i] == a:
                return v.score[self._local[i]]
        for j, f in enumerate(v.final):
            if f == a:
                return v.score[j]
        if v.gold < 0:
            return math.nan
        return 1.0 if a == v.gold else 0.0


def max_actions(steps: StepArrays) -> int:
    """A generous bound on the actions of one episode; a controller that exceeds it loops."""
    return 8 * steps.max_pool * (steps.max_intervals + 2) + 1000


def run_episode(ctrl: Controller, steps: StepArrays, q: int, r: int, seed: int, *, probe_cost: float = 0.0) -> Episode:
    ep = Episode(steps, q, r, seed, probe_cost)
    ctrl.reset(ep)
    limit = max_actions(steps)
    apply = ep.apply
    if type(ctrl).decide is ScriptedController.decide:
        # a script: iterate its generator directly rather than through decide() and next(): the
        # same actions in the same order, and an exhausted script answers by the default rule
        n = 0
        for act in ctrl._gen:
            if n == limit:
                break
            n += 1
            try:  # free unless raised (Python >= 3.11)
                apply(act)
            except ControllerError as e:
                raise _where(e, ctrl, q, r) from None
            if ep.done:
                return ep
        else:
            if n < limit:
                ep.apply(Answer())
                return ep
        raise _looped(ctrl, q, r, limit)
    return play(ctrl, ep, q, r, limit)


def play(ctrl: Controller, ep, q: int, r: int, limit: int):
    """The decide/apply loop of one episode, whatever its class (this engine's `Episode`, the
    reference's, a recording one): `ctrl` is already reset on `ep`. Returns `ep` once answered;
    an impossible action, or no answer within `limit` actions, is a ControllerError naming the
    controller, question and replicate."""
    decide, apply = ctrl.decide, ep.apply
    for _ in range(limit):
        act = decide(ep)
        try:
            apply(act)
        except ControllerError as e:
            raise _where(e, ctrl, q, r) from None
        if ep.done:
            return ep
    raise _looped(ctrl, q, r, limit)


def _where(e: ControllerError, ctrl: Controller, q: int, r: int) -> ControllerError:
    """An impossible action, said with the controller, question and replicate."""
    return ControllerError(f"controller {ctrl.name or type(ctrl).__name__!r}", f"question {q}, replicate {r}: {e.problem}")


def _looped(ctrl: Controller, q: int, r: int, limit: int) -> ControllerError:
    return ControllerError(f"controller {ctrl.name or type(ctrl).__name__!r}",
                           f"took {limit} actions without answering on question {q}, replicate {r} (does it loop?)")


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
