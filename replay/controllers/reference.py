"""The controller engine as first written: one clear, slow Python `Episode` that reads the
trace arrays one NumPy value at a time and draws each episode's whole opening order up front.

It is the tests' oracle for the engine in base.py, which must give the same state after every
action and the same score, tokens, samples opened and probes on every (question, replicate)
(tests/test_controller_engine.py): base.py replays the same semantics from per-question views
of plain Python lists and draws the opening order lazily, one shuffle step per Open. Nothing
but the tests uses this module. Semantics: docs/controllers.md.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..aggregation import majority
from ..reference import Stream, draw, stream_start
from .base import Action, Advance, Answer, Continue, Controller, ControllerError, Open, Probe, Prune, max_actions, play
from .steps import StepArrays


class ReferenceEpisode:
    """The state a controller sees (same interface as base.Episode), computed the slow way."""

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
        # the engine's draw order (replay/reference.py's oracle), drawn whole
        self._order = draw(Stream(stream_start(seed, int(steps.question_hash[q]), r, steps.stage)),
                           self.pool_size, self.pool_size)
        self.samples: list[int] = []
        self.depth: list[int] = []
        self.finished: list[bool] = []
        self.pruned: list[bool] = []
        self.final: list[int | None] = []
        self.reading: list[int | None] = []
        self.n_probes = 0
        self.answered: int | None = None
        self.done = False

    @property
    def n_opened(self) -> int:
        return len(self.samples)

    @property
    def n_left(self) -> int:
        return self.pool_size - len(self.samples)

    def active(self) -> list[int]:
        return [i for i in range(self.n_opened) if not self.pruned[i]]

    def running(self) -> list[int]:
        return [i for i in range(self.n_opened) if not self.pruned[i] and not self.finished[i]]

    def tokens_of(self, i: int) -> int:
        return min(self.depth[i] * self.K, int(self._A.s_completion[self.samples[i]]))

    @property
    def tokens(self) -> float:
        gen = sum(self.tokens_of(i) for i in range(self.n_opened))
        prompt = self._prompt if self.n_opened else 0
        return prompt + gen + self.probe_cost * self.n_probes

    def text(self, a: int | None) -> str | None:
        return None if a is None else str(self._A.answers[a])

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
            n_int = -(-int(A.s_completion[s]) // self.K)
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
        elif isinstance(act, Advance):  # by definition, the sequence of primitives
            samples = (act.samples,) if isinstance(act.samples, (int, np.integer)) else tuple(act.samples)
            for i in samples:
                self.apply(Continue(i, act.steps))
                i = int(i)
                if not self.finished[i]:
                    self.apply(Probe(i))
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
            raise ControllerError("controller", f"decide returned {act!r}, not an action "
                                                "(Open, Continue, Probe, Prune, Answer, Advance)")

    def default_answer(self) -> int:
        live = self.active()
        votes = [self.final[i] for i in live if self.finished[i]]
        if not votes:
            votes = [self.reading[i] for i in live if self.reading[i] is not None]
        if not votes:
            return -1
        return majority(votes)

    def score(self) -> float:
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


def run_reference_episode(ctrl: Controller, steps: StepArrays, q: int, r: int, seed: int, *,
                          probe_cost: float = 0.0) -> ReferenceEpisode:
    ep = ReferenceEpisode(steps, q, r, seed, probe_cost)
    ctrl.reset(ep)
    return play(ctrl, ep, q, r, max_actions(steps))


def run_reference_episodes(ctrl: Controller, steps: StepArrays, qidx, *, replicates: int, seed: int,
                           probe_cost: float = 0.0):
    """As base.run_episodes, through the reference episode: arrays [Q, R]."""
    Q, R = len(qidx), replicates
    score, tokens = np.empty((Q, R)), np.empty((Q, R))
    opened, probes = np.empty((Q, R), dtype=np.int64), np.empty((Q, R), dtype=np.int64)
    for qi, q in enumerate(qidx):
        for r in range(R):
            ep = run_reference_episode(ctrl, steps, int(q), r, seed, probe_cost=probe_cost)
            score[qi, r], tokens[qi, r] = ep.score(), ep.tokens
            opened[qi, r], probes[qi, r] = ep.n_opened, ep.n_probes
    return score, tokens, opened, probes
