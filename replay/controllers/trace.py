"""Execution traces of a controller: what it did, step by step, on chosen episodes.

    events, summary = trace_episodes(ctrl, steps, [(q, r), ...], seed=0)   # inside a sandbox, or here

An episode's trace is one row per primitive action as the engine applied it (an Advance counts
as its Continue and Probe primitives), with the tokens spent after it and the leader of the
votes (the default rule's answer: the majority of finished samples, else of the readings):

    kind    OPEN, CONTINUE, PROBE, PRUNE, ANSWER
    sample  the opened sample's index (-1 for ANSWER)
    value   CONTINUE: the depth reached, or -(final answer id) - 3 when it finished there;
            PROBE: the reading's answer id (-1: no reading); ANSWER: the answer id (-1: none)
    lead    the votes' leader after the action (-1: none)
    tokens  the episode's tokens after the action

They cross a sandbox as two arrays (int64 [E, 4], float64 [E]) with per-episode offsets, never
as objects. `render_trace` (the caller's side) turns one episode into a few compact lines, and
`diagnose` sums many into the discovery loop's diagnostics (search/spaces/program/feedback.py).
"""

from __future__ import annotations

import numpy as np

from .base import Controller, Episode, max_actions, play
from .steps import StepArrays

OPEN, CONTINUE, PROBE, PRUNE, ANSWER = 0, 1, 2, 3, 4
KIND_NAMES = ("open", "continue", "probe", "prune", "answer")
MAX_EVENTS = 20_000  # per episode; a longer one is cut (its summary row says so)


class TracingEpisode(Episode):
    """An Episode that records each primitive (slower: for a few episodes of feedback)."""

    def __init__(self, *args, max_events: int = MAX_EVENTS, **kw):
        super().__init__(*args, **kw)
        self.events: list[tuple[int, int, int, int, float]] = []
        self.max_events = max_events
        self.cut = False
        self._lead = -1

    def _log(self, kind: int, sample: int, value: int, votes_changed: bool) -> None:
        # the leader only moves when the votes do: a sample finished or was pruned, or a reading
        # changed while no finished sample votes (then the readings are the votes)
        if votes_changed:
            self._lead = self.default_answer()
        if len(self.events) >= self.max_events:
            self.cut = True
            return
        self.events.append((kind, sample, value, self._lead, self.tokens))

    def _finals_vote(self) -> bool:
        return any(self.finished[i] for i in self._active)

    def _open(self) -> None:
        super()._open()
        self._log(OPEN, self.n_opened - 1, 0, False)

    def _continue(self, i, steps) -> int:
        i = super()._continue(i, steps)
        self._log(CONTINUE, i, -self.final[i] - 3 if self.finished[i] else self.depth[i], self.finished[i])
        return i

    def _probe(self, i) -> None:
        i_int = int(i) if isinstance(i, (int, np.integer)) else i
        before = self.n_probes
        super()._probe(i)
        if self.n_probes > before:  # a finished sample's probe is free and changes nothing
            r = self.reading[i_int]
            self._log(PROBE, i_int, -1 if r is None else r, not self._finals_vote())

    def _advance(self, samples, steps) -> None:
        # the primitives one by one, so that each is recorded
        samples = (samples,) if isinstance(samples, (int, np.integer)) else tuple(samples)
        for i in samples:
            i = self._continue(i, steps)
            if not self.finished[i]:
                self._probe(i)

    def _prune(self, i) -> None:
        super()._prune(i)
        self._log(PRUNE, int(i), 0, True)

    def _answer(self, a) -> None:
        super()._answer(a)
        self.events.append((ANSWER, -1, -1 if self.answered is None else self.answered, self.default_answer(),
                            self.tokens))


def trace_episode(ctrl: Controller, steps: StepArrays, q: int, r: int, seed: int, *, probe_cost: float = 0.0,
                  max_events: int = MAX_EVENTS) -> TracingEpisode:
    """One episode, recorded (the same loop as base.run_episode, through a TracingEpisode)."""
    ep = TracingEpisode(steps, q, r, seed, probe_cost, max_events=max_events)
    ctrl.reset(ep)
    return play(ctrl, ep, q, r, max_actions(steps))


def trace_episodes(ctrl: Controller, steps: StepArrays, episodes, *, seed: int, probe_cost: float = 0.0,
                   max_events: int = MAX_EVENTS):
    """Traces of several (question, replicate) episodes, as arrays:

    events int64 [E, 4] (kind, sample, value, lead), tokens float64 [E], offsets int64 [n + 1]
    (episode k's rows are offsets[k]:offsets[k + 1]), and per episode float64 [n, 5]: score,
    tokens, opened, probes, cut (1.0 where the trace was cut at max_events)."""
    rows, toks, offs, summ = [], [], [0], []
    for q, r in episodes:
        ep = trace_episode(ctrl, steps, int(q), int(r), seed, probe_cost=probe_cost, max_events=max_events)
        for kind, sample, value, lead, tok in ep.events:
            rows.append((kind, sample, value, lead))
            toks.append(tok)
        offs.append(len(rows))
        summ.append((ep.score(), ep.tokens, ep.n_opened, ep.n_probes, float(ep.cut)))
    events = np.array(rows, dtype=np.int64).reshape(-1, 4)
    return events, np.array(toks, dtype=np.float64), np.array(offs, dtype=np.int64), \
        np.array(summ, dtype=np.float64).reshape(-1, 5)
