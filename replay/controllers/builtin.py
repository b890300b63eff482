"""The built-in controllers, written in plain Python against the controller interface.

These classes are three things at once: the specification of each built-in (its parameters,
their ranges, its beta knob), the pure-Python reference that the tests compare the compiled
kernels (kernels.py) against, and examples for users who write their own controller.

    majority   open N samples, run each to its end, vote (the baseline)
    adaptive   adaptive consistency: one sample at a time to its end; stop once the Beta
               posterior confidence that the leading answer is the majority exceeds `threshold`
    esc        early-stopping self-consistency: samples in windows of W; stop at the first
               window whose W answers all agree
    probe      width-depth: keep `width` samples running, K tokens at a time, probing each after
               every step; a sample votes once finished (or once `settle` consecutive probes agree;
               off by default); prune samples whose probes keep disagreeing with the leading
               vote; stop when the votes pass the adaptive-consistency confidence test
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Iterator

from ..aggregation import majority
from .base import Action, Advance, Answer, Continue, Episode, Open, Param, Probe, Prune, ScriptedController, lerp


def majority_confidence(v1: int, v2: int) -> float:
    """P(p > 1/2) for p ~ Beta(v1 + 1, v2 + 1): the posterior probability that the leading
    answer (v1 votes) beats the runner-up (v2 votes), as in adaptive consistency (Aggarwal et
    al. 2023). For integer parameters 1 - I_{1/2}(v1 + 1, v2 + 1) = P(Binomial(v1 + v2 + 1,
    1/2) <= v1). Summed by the pmf recursion in floating point; the kernels compile this very
    function, so both sides compare the same bits against the threshold (the tests check it
    against exact integer arithmetic). Valid for v1 + v2 < 1000 (no underflow of 2^-n)."""
    if v1 == v2:
        return 0.5  # exact by symmetry; a threshold of 0.5 must not flip on rounding
    n = v1 + v2 + 1
    term = 0.5**n
    total = term
    for j in range(v1):
        term = term * (n - j) / (j + 1)
        total += term
    return total


# Most frequent answer; a tie goes to the one that occurs first: replay's majority vote.
vote = majority


class MajorityVote(ScriptedController):
    name = "majority"
    params = (Param("n", 1, 1024, integer=True, default=64, help="samples to open and vote over", span=(1, 64)),)

    @classmethod
    def beta_params(cls, beta):
        # log scale: each doubling of N costs a doubling of tokens
        return {"n": int(math.floor(2.0 ** (6.0 * beta) + 0.5))}  # 1 .. 64

    def script(self, ep):
        for _ in range(min(self.n, ep.pool_size)):
            yield Open()
            yield Continue(ep.n_opened - 1, None)
        yield Answer()


class AdaptiveConsistency(ScriptedController):
    name = "adaptive"
    params = (
        Param("threshold", 0.5, 1.0, default=0.95, help="stop when P(leader is the majority) exceeds this",
              span=(0.5, 0.9995)),
        Param("max_samples", 1, 512, integer=True, default=64, help="cap on samples", span=(1, 128)),
    )

    @classmethod
    def beta_params(cls, beta):
        # confidence 1 - 0.5 * 10^(-3 beta): 0.5 (stop at 2 agreeing samples) .. 0.9995
        return {"threshold": 1.0 - 0.5 * 10.0 ** (-3.0 * beta), "max_samples": lerp(8, 64, beta, integer=True)}

    def script(self, ep):
        counts: dict[int, int] = {}
        for _ in range(min(self.max_samples, ep.pool_size)):
            yield Open()
            i = ep.n_opened - 1
            yield Continue(i, None)
            a = ep.final[i]
            counts[a] = counts.get(a, 0) + 1
            if ep.n_opened >= 2:
                top = sorted(counts.values(), reverse=True)
                v1, v2 = top[0], (top[1] if len(top) > 1 else 0)
                if majority_confidence(v1, v2) > self.threshold:
                    break
        yield Answer()  # the leader: majority with ties to the first drawn


class EarlyStoppingConsistency(ScriptedController):
    name = "esc"
    params = (
        Param("window", 1, 1024, integer=True, default=8, help="window size W", span=(1, 16)),
        Param("max_samples", 1, 1024, integer=True, default=64, help="cap on samples", span=(1, 128)),
    )

    @classmethod
    def beta_params(cls, beta):
        return {"window": lerp(2, 10, beta, integer=True), "max_samples": lerp(16, 64, beta, integer=True)}

    def script(self, ep):
        w = self.window
        for _ in range(min(self.max_samples, ep.pool_size)):
            yield Open()
            yield Continue(ep.n_opened - 1, None)
            k = ep.n_opened
            if k % w == 0:
                window = ep.final[k - w:k]
                if all(a == window[0] for a in window):
                    yield Answer(window[0])
                    return
        yield Answer()


class ProbeController(ScriptedController):
    name = "probe"
    params = (
        Param("width", 1, 1024, integer=True, default=4, help="samples kept running at once", span=(1, 16)),
        Param("settle", 0, 1000, integer=True, default=0,
              help="a running sample's answer counts once this many consecutive probes agree (0: never)",
              span=(0, 20)),
        Param("patience", 1, 1000, integer=True, default=24,
              help="prune a running sample after this many consecutive probes against the leading answer",
              span=(1, 64)),
        Param("threshold", 0.5, 1.0, default=0.95, help="stop when P(leader is the majority) exceeds this",
              span=(0.5, 0.9995)),
        Param("max_samples", 1, 512, integer=True, default=64, help="cap on samples opened, refills included",
              span=(1, 128)),
    )

    @classmethod
    def beta_params(cls, beta):
        # settle stays 0 (off) along the knob: on aime24 a chain's probe readings often hold a
        # wrong answer for thousands of tokens (Qwen3-8B: 41% of chains whose readings agreed 10
        # times in a row end elsewhere), so settling early cost accuracy at every width we tried.
        # The ranges below were chosen after a scan on aime24 (all 30 questions): see
        # docs/controllers.md.
        return {"width": lerp(2, 8, beta, integer=True), "settle": 0, "patience": lerp(6, 48, beta, integer=True),
                "threshold": 1.0 - 0.5 * 10.0 ** (-3.0 * beta), "max_samples": lerp(8, 64, beta, integer=True)}

    def script(self, ep):
        """Rounds: every running sample one interval deeper, then probed. A sample votes once
        finished (its final answer) or, if `settle` > 0, once its last `settle` readings agree
        (it is then left unfinished). Stop as adaptive consistency does, on the votes; prune
        running samples whose readings keep disagreeing with the leading vote (the tokens they
        would still have spent are saved); refill the width from the pool up to max_samples."""
        cap = min(self.max_samples, ep.pool_size)
        run: dict[int, int] = {}  # length of the current run of equal readings
        against: dict[int, int] = {}  # consecutive readings against the leading vote
        settled: dict[int, int] = {}  # slot -> settled answer
        for _ in range(min(self.width, cap)):
            yield Open()
        while True:
            running = [i for i in ep.running() if i not in settled]
            if not running:
                break
            prev = [ep.reading[i] for i in running]
            yield Advance(running)  # each: Continue(i, 1), then Probe(i) unless it finished
            for i, p in zip(running, prev):
                if ep.finished[i]:
                    continue
                a = ep.reading[i]
                run[i] = 0 if a is None else (run.get(i, 0) + 1 if a == p else 1)
                if self.settle and run[i] >= self.settle:
                    settled[i] = a
            votes = [ep.final[i] if ep.finished[i] else settled[i] for i in ep.active()
                     if ep.finished[i] or i in settled]
            leader, v1, v2 = None, 0, 0
            if votes:
                leader = vote(votes)
                top = sorted(Counter(votes).values(), reverse=True)
                v1, v2 = top[0], (top[1] if len(top) > 1 else 0)
                if len(votes) >= 2 and majority_confidence(v1, v2) > self.threshold:
                    yield Answer(leader)
                    return
            for i in ep.running():
                if i in settled or ep.reading[i] is None:
                    continue
                against[i] = against.get(i, 0) + 1 if (v1 >= 2 and ep.reading[i] != leader) else 0
                if against[i] >= self.patience:
                    yield Prune(i)
            n_run = sum(1 for i in ep.running() if i not in settled)
            for _ in range(min(self.width - n_run, cap - ep.n_opened)):
                yield Open()
        votes = [ep.final[i] if ep.finished[i] else settled[i] for i in ep.active() if ep.finished[i] or i in settled]
        yield Answer(vote(votes) if votes else None)


BUILTINS = {c.name: c for c in (MajorityVote, AdaptiveConsistency, EarlyStoppingConsistency, ProbeController)}
# kernel codes, and each built-in's parameters in the order the kernel reads them
CODES = {"majority": 0, "adaptive": 1, "esc": 2, "probe": 3}
