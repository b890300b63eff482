"""Seed programs: two of the built-in controllers written as self-contained programs, the way an
agent must write one. They are the prompt's example, the points `sample` draws (the `random`
searcher, fills), and a check that the whole path (static checks, sandbox, sweep) accepts what
the protocol documents (tests/test_discovery.py runs both and compares them with the compiled
built-ins: the same curves)."""

from __future__ import annotations

ADAPTIVE = '''\
from replay.controllers import ScriptedController, Param, Open, Continue, Answer, lerp
from replay.controllers.builtin import majority_confidence


class Adaptive(ScriptedController):
    """Adaptive consistency: one chain at a time to its end; stop once the leading answer is the
    majority with posterior probability above `threshold`."""
    name = "adaptive-program"
    params = (Param("threshold", 0.5, 1.0, default=0.95), Param("max_samples", 1, 128, integer=True, default=64))

    @classmethod
    def beta_params(cls, beta):
        return {"threshold": 1.0 - 0.5 * 10.0 ** (-3.0 * beta), "max_samples": lerp(8, 64, beta, integer=True)}

    def script(self, ep):
        counts = {}
        for _ in range(min(self.max_samples, ep.pool_size)):
            yield Open()
            i = ep.n_opened - 1
            yield Continue(i, None)          # run it to its end: its final answer votes
            a = ep.final[i]
            counts[a] = counts.get(a, 0) + 1
            if ep.n_opened >= 2:
                top = sorted(counts.values(), reverse=True)
                if majority_confidence(top[0], top[1] if len(top) > 1 else 0) > self.threshold:
                    break
        yield Answer()                        # the default rule: majority of the finished samples
'''

PROBE = '''\
from collections import Counter

from replay.controllers import ScriptedController, Param, Open, Advance, Prune, Answer, lerp
from replay.controllers.builtin import majority_confidence


def vote(answers):
    """Most frequent answer; ties to the first."""
    counts = Counter(answers)
    top = max(counts.values())
    return next(a for a in answers if counts[a] == top)


class Probe(ScriptedController):
    """Width-depth: keep `width` chains running, each advanced one interval per round and probed;
    a chain votes once finished; prune a running chain whose readings disagree with the leading
    vote for `patience` rounds; stop when the votes pass the confidence test."""
    name = "probe-program"
    params = (Param("width", 1, 64, integer=True, default=4), Param("patience", 1, 1000, integer=True, default=24),
              Param("threshold", 0.5, 1.0, default=0.95), Param("max_samples", 1, 128, integer=True, default=64))

    @classmethod
    def beta_params(cls, beta):
        return {"width": lerp(2, 8, beta, integer=True), "patience": lerp(6, 48, beta, integer=True),
                "threshold": 1.0 - 0.5 * 10.0 ** (-3.0 * beta), "max_samples": lerp(8, 64, beta, integer=True)}

    def script(self, ep):
        cap = min(self.max_samples, ep.pool_size)
        against = {}
        for _ in range(min(self.width, cap)):
            yield Open()
        while ep.running():
            yield Advance(ep.running())       # each running chain: one interval more, then probed
            votes = [ep.final[i] for i in ep.active() if ep.finished[i]]
            leader, v1 = None, 0
            if votes:
                leader = vote(votes)
                top = sorted(Counter(votes).values(), reverse=True)
                v1, v2 = top[0], (top[1] if len(top) > 1 else 0)
                if len(votes) >= 2 and majority_confidence(v1, v2) > self.threshold:
                    yield Answer(leader)
                    return
            for i in ep.running():
                if ep.reading[i] is None:
                    continue
                against[i] = against.get(i, 0) + 1 if (v1 >= 2 and ep.reading[i] != leader) else 0
                if against[i] >= self.patience:
                    yield Prune(i)
            for _ in range(min(self.width - len(ep.running()), cap - ep.n_opened)):
                yield Open()
        votes = [ep.final[i] for i in ep.active() if ep.finished[i]]
        yield Answer(vote(votes) if votes else None)
'''

SEEDS = {"adaptive": ADAPTIVE, "probe": PROBE}
