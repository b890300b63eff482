"""A program's accuracy-against-tokens curve, and the one number the user chose to rank by.

A program is swept over its knob beta (21 values from 0 to 1 by default); each beta gives one
point: the mean accuracy and mean tokens per question over the objective's questions and
replicates (the controller replay's common random numbers: every program and every built-in
opens the same samples in the same order on the same (question, replicate)). The curve's
*envelope* at a token budget t is the best accuracy among its points that spend at most t.

Score rules (`--score`):

    accuracy@B        the envelope at B tokens per question (the most accurate point within the
                      budget). No point within B: no score (infeasible). Cost: that point's tokens.
    auc@LO-HI         the mean of the envelope over budgets spread log-uniformly between LO and
                      HI tokens (the area under the curve on a log-tokens axis, divided by its
                      width; 0 where the envelope is empty). No point at or below HI: no score.
                      Cost: the tokens of the most accurate point within HI.
    tokens@majority:N the share of tokens saved against majority vote over N samples at equal
                      accuracy: 1 - T / T_maj, where T is the fewest tokens of a point at least
                      as accurate as majority@N (same questions, replicates and seed) and T_maj
                      majority@N's tokens. 0: as costly as majority; negative: costlier. No
                      point that accurate: no score. Cost: T.

B, LO, HI take k and M suffixes (150k = 150,000). Accuracies are compared as measured (same
draws), not within error bars; the per-question interval of the chosen point is reported
beside it (replay.stats).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Sequence

from replay.errors import ConfigError

EPS = 1e-12


@dataclass(frozen=True)
class CurvePoint:
    beta: float
    accuracy: float
    stderr: float  # over replicates (the replay's own noise)
    tokens: float  # mean per question
    opened: float
    probes: float
    params: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"beta": self.beta, "accuracy": self.accuracy, "stderr": self.stderr, "tokens": self.tokens,
                "opened": self.opened, "probes": self.probes, "params": dict(self.params)}

    @classmethod
    def from_json(cls, d: dict) -> "CurvePoint":
        return cls(float(d["beta"]), float(d["accuracy"]), float(d.get("stderr") or 0.0), float(d["tokens"]),
                   float(d.get("opened") or 0.0), float(d.get("probes") or 0.0), dict(d.get("params") or {}))


@dataclass(frozen=True)
class Reduced:
    """A curve reduced by a rule: the score (None: no score), the operating point (its index in
    the curve), the cost (tokens) and, when there is no score, why."""

    score: float | None
    operating: int | None
    cost: float
    why: str = ""

    @property
    def feasible(self) -> bool:
        return self.score is not None


def envelope_at(curve: Sequence[CurvePoint], budget: float) -> tuple[float | None, int | None]:
    """(best accuracy among points spending at most `budget` tokens, its index); ties go to the
    cheaper point. (None, None) when every point spends more."""
    best, idx = None, None
    for k, p in enumerate(curve):
        if p.tokens <= budget * (1 + EPS) and (best is None or p.accuracy > best + EPS or
                                               (abs(p.accuracy - best) <= EPS and p.tokens < curve[idx].tokens)):
            best, idx = p.accuracy, k
    return best, idx


def log_auc(curve: Sequence[CurvePoint], lo: float, hi: float) -> float:
    """Mean of the envelope over log-uniform budgets in [lo, hi] (exact: the envelope is a step
    function of the budget)."""
    pts = sorted(curve, key=lambda p: p.tokens)
    width = math.log(hi) - math.log(lo)
    area, best = 0.0, 0.0
    for k, p in enumerate(pts):
        best = max(best, p.accuracy)
        start = max(p.tokens, lo)
        end = min(pts[k + 1].tokens, hi) if k + 1 < len(pts) else hi
        if end > start and start > 0:
            area += best * (math.log(end) - math.log(start))
    return area / width


_NUM = r"([0-9]*\.?[0-9]+)\s*([kKmM]?)"


def _number(text: str, mult: str) -> float:
    return float(text) * {"": 1, "k": 1e3, "m": 1e6}[mult.lower()]


@dataclass(frozen=True)
class ScoreRule:
    kind: str  # "accuracy", "auc", "tokens"
    spec: str
    budget: float | None = None
    lo: float | None = None
    hi: float | None = None
    n: int | None = None

    @classmethod
    def parse(cls, text: str) -> "ScoreRule":
        """'accuracy@150k', 'auc@20k-400k' or 'tokens@majority:64' (see the module docstring)."""
        t = str(text).strip()
        m = re.fullmatch(rf"(?:accuracy|acc)@{_NUM}", t, re.I)
        if m:
            b = _number(*m.groups())
            if b <= 0:
                raise ConfigError("--score", f"{text!r}: the budget must be positive")
            return cls("accuracy", t, budget=b)
        m = re.fullmatch(rf"auc@{_NUM}\s*[-:]\s*{_NUM}", t, re.I)
        if m:
            lo, hi = _number(m.group(1), m.group(2)), _number(m.group(3), m.group(4))
            if not 0 < lo < hi:
                raise ConfigError("--score", f"{text!r}: need 0 < LO < HI tokens")
            return cls("auc", t, lo=lo, hi=hi)
        m = re.fullmatch(r"tokens@(?:majority|maj):?\s*([0-9]+)", t, re.I)
        if m:
            n = int(m.group(1))
            if n < 1:
                raise ConfigError("--score", f"{text!r}: N must be at least 1")
            return cls("tokens", t, n=n)
        raise ConfigError("--score", f"{text!r} is not a score rule: use accuracy@TOKENS (e.g. accuracy@150k), "
                          "auc@LO-HI (e.g. auc@20k-400k) or tokens@majority:N (e.g. tokens@majority:64)")

    def describe(self) -> str:
        if self.kind == "accuracy":
            return (f"accuracy at a budget of {self.budget:,.0f} mean tokens per question: the highest accuracy among "
                    "the points of your beta sweep that spend at most that (no point within it: no score)")
        if self.kind == "auc":
            return (f"the area under your accuracy-against-tokens curve between {self.lo:,.0f} and {self.hi:,.0f} "
                    "tokens per question, on a log-tokens axis, divided by its width: the mean, over budgets spread "
                    "log-uniformly in that range, of the best accuracy your sweep reaches within the budget (0 where "
                    "none of your points is that cheap)")
        return (f"the share of tokens saved against majority vote over {self.n} samples at equal accuracy: "
                f"1 - T / T_majority, where T is the fewest tokens among your sweep's points that are at least as "
                f"accurate as majority@{self.n} on the same questions and replicates (none: no score); higher is "
                "better, 0 means as costly as majority vote")

    def budget_tokens(self) -> float:
        """The token budget a point must keep to count: B for accuracy@B; none (inf) for the
        other rules, whose points are never over a budget (auc ignores points above HI, the
        tokens rule asks for accuracy, not a budget)."""
        return float(self.budget) if self.kind == "accuracy" else math.inf

    def reduce(self, curve: Sequence[CurvePoint], reference: tuple[float, float] | None = None) -> Reduced:
        """`reference`: (accuracy, tokens) of majority@N on the same objective (rule tokens@...)."""
        if not curve:
            return Reduced(None, None, 0.0, "no point on the curve")
        cheapest = min(range(len(curve)), key=lambda k: curve[k].tokens)
        if self.kind in ("accuracy", "auc"):
            limit = self.budget if self.kind == "accuracy" else self.hi
            acc, idx = envelope_at(curve, limit)
            if idx is None:
                return Reduced(None, None, curve[cheapest].tokens,
                               f"even its cheapest point (beta {curve[cheapest].beta:g}) spends "
                               f"{curve[cheapest].tokens:,.0f} tokens per question, over {limit:,.0f}")
            score = acc if self.kind == "accuracy" else log_auc(curve, self.lo, self.hi)
            return Reduced(score, idx, curve[idx].tokens)
        if reference is None:
            raise ValueError("the tokens rule needs majority@N's (accuracy, tokens)")
        ref_acc, ref_tok = reference
        ok = [k for k, p in enumerate(curve) if p.accuracy >= ref_acc - EPS]
        if not ok:
            top = max(range(len(curve)), key=lambda k: curve[k].accuracy)
            return Reduced(None, None, curve[top].tokens,
                           f"its best accuracy {curve[top].accuracy:.4f} (beta {curve[top].beta:g}) stays below "
                           f"majority@{self.n}'s {ref_acc:.4f}")
        idx = min(ok, key=lambda k: (curve[k].tokens, -curve[k].accuracy))
        return Reduced(1.0 - curve[idx].tokens / ref_tok, idx, curve[idx].tokens)
