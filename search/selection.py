"""How a search picks its final point from its trials: selection rules that weigh the noise.

The trial with the highest training mean is the noisiest maximum: among many points scored on
a few dozen questions, the top one is partly lucky, and on held-out questions it falls back.
Each rule below looks at every feasible trial's per-question training scores (`Trial.per_question`,
one mean per question over the replicates) through the intervals of replay.stats:

| rule | picks |
| --- | --- |
| `mean` | the highest training mean (ties: the cheaper, then the earlier trial) |
| `mean-costliest` | the highest training mean, ties to the costlier trial (a saturated training score ties many points: this one spends the budget) |
| `lcb` | the highest lower end of the 95% question interval (Student-t over questions) |
| `tied-cheapest` | among the trials not worse than the best-mean trial beyond noise (the 95% paired interval of their difference over questions reaches 0), the cheapest |
| `tied-costliest` | among the same tied trials, the one that spends the most of the budget |

Ties within a rule go to the higher mean, then the cheaper, then the earlier trial. "Cheap" is
the trial's cost, the figure feasibility is judged by (configurations: the expected cost).

`DEFAULT_RULE` is the rule with the lowest test regret measured by
`benchmarks/selection_rules.py` on every shipped store (README: "Choosing the final
configuration"). Trials without per-question scores (archives written before they were kept,
or a space that does not measure them) can only be ranked by their mean: the selection then
says so (`Selection.note`) and uses `mean`.

The same decision runs on arrays (`pick_indices`), so that a compiled scan of a whole space
(search/spaces/config.py `scan_picks`) makes exactly the pick the rule would make among its
trials.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from replay.stats import LEVEL, t_quantile

from .trial import Trial

RULES = ("mean", "mean-costliest", "lcb", "tied-cheapest", "tied-costliest")
DEFAULT_RULE = "mean"
RULE_TEXT = {
    "mean": "highest training mean",
    "mean-costliest": "highest training mean, ties to the costlier",
    "lcb": "highest lower end of the 95% question interval",
    "tied-cheapest": "cheapest of the trials tied with the best mean (95% paired interval over questions)",
    "tied-costliest": "costliest of the trials tied with the best mean (95% paired interval over questions)",
}
_DIGITS = 10  # means compared at this precision: the same pick from a scan's sums and a trial's


@dataclass(frozen=True)
class Selection:
    """The final pick of a search.

    Attributes:
        trial: the picked trial (None: no feasible trial).
        rule: the rule that picked it.
        asked: the rule that was asked for (differs from `rule` only when `note` says why).
        note: why the asked rule could not be applied ("" when it was).
        best_mean: the trial with the highest training mean (the `mean` rule's pick).
        tied: how many feasible trials are tied with the best mean (paired interval), or None.
        candidates: how many feasible trials the rule chose among.
    """

    trial: Trial | None
    rule: str
    asked: str
    note: str = ""
    best_mean: Trial | None = None
    tied: int | None = None
    candidates: int = 0

    def as_dict(self) -> dict:
        return {"rule": self.rule, "asked": self.asked, "why": RULE_TEXT[self.rule], "note": self.note or None,
                "trial": None if self.trial is None else self.trial.number + 1,
                "best_mean_trial": None if self.best_mean is None else self.best_mean.number + 1,
                "best_mean_config": None if self.best_mean is None else self.best_mean.label,
                "best_mean_score": None if self.best_mean is None else self.best_mean.score,
                "tied_with_best": self.tied, "candidates": self.candidates}


def check_rule(rule: str) -> str:
    from replay.errors import ConfigError

    if rule not in RULES:
        raise ConfigError("--select", f"unknown selection rule {rule!r} (rules: {', '.join(RULES)})")
    return rule


def select(trials: Sequence[Trial], rule: str = DEFAULT_RULE, *, level: float = LEVEL) -> Selection:
    """The final pick among `trials` by `rule` (module docstring).

    Parameters:
        trials: a search's trials; infeasible ones never count.
        rule: one of RULES.
        level: the intervals' nominal coverage.
    """
    check_rule(rule)
    ok = [t for t in trials if t.feasible and t.score is not None]
    if not ok:
        return Selection(None, rule, rule)
    mean = np.array([t.score for t in ok])
    cost = np.array([t.cost for t in ok], dtype=float)
    order = np.array([t.number for t in ok], dtype=float)
    b = int(pick_indices(mean, cost, order, rules=("mean",))["mean"])
    pq = [t.per_question for t in ok]
    if any(p is None for p in pq) or len({len(p) for p in pq}) != 1:
        note = "" if rule == "mean" else "the trials carry no per-question scores (an older archive): ranked by mean"
        return Selection(ok[b], "mean", rule, note, ok[b], None, len(ok))
    x = np.array(pq, dtype=float)  # [trials, questions]
    n = x.shape[1]
    sd = x.std(axis=1, ddof=1) if n > 1 else np.zeros(len(ok))
    d = x - x[b]
    sd_d = d.std(axis=1, ddof=1) if n > 1 else np.zeros(len(ok))
    picks, tied = pick_indices(mean, cost, order, sd=sd, mean_d=d.mean(axis=1), sd_d=sd_d, n=n, level=level,
                               rules=(rule,), with_tied=True)
    return Selection(ok[int(picks[rule])], rule, rule, "", ok[b], int(tied), len(ok))


def pick_indices(mean: np.ndarray, cost: np.ndarray, order: np.ndarray, *, sd: np.ndarray | None = None,
                 mean_d: np.ndarray | None = None, sd_d: np.ndarray | None = None, n: int = 0,
                 level: float = LEVEL, rules: Sequence[str] = RULES, with_tied: bool = False):
    """Each rule's pick among candidates given as arrays (all feasible): their means, costs,
    a tie-breaking order, the standard deviation over the n questions of their per-question
    scores (`sd`), and the mean and standard deviation of their per-question differences from
    the best-mean candidate (`mean_d`, `sd_d`). Returns {rule: index} (and the number tied with
    the best when `with_tied`)."""
    m = np.round(mean, _DIGITS)
    c = np.round(cost, _DIGITS)
    out: dict[str, int] = {}
    b = _first(order, c, -m)
    tied_mask = None
    for rule in rules:
        if rule == "mean":
            out[rule] = b
        elif rule == "mean-costliest":
            out[rule] = _first(order, -c, -m)
        elif rule == "lcb":
            half = np.inf if n < 2 else t_quantile(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
            lo = np.round(np.clip(mean - half, 0.0, 1.0), _DIGITS)
            out[rule] = _first(order, c, -m, -lo)
        elif rule in ("tied-cheapest", "tied-costliest"):
            if tied_mask is None:
                tied_mask = _tied(mean_d, sd_d, n, level, len(mean))
            idx = np.flatnonzero(tied_mask)
            by = c[idx] if rule == "tied-cheapest" else -c[idx]
            out[rule] = int(idx[_first(order[idx], -m[idx], by)])
        else:
            raise ValueError(f"unknown rule {rule!r}")
    if with_tied:
        if tied_mask is None and mean_d is not None:
            tied_mask = _tied(mean_d, sd_d, n, level, len(mean))
        return out, (None if tied_mask is None else int(tied_mask.sum()))
    return out


def _first(*keys: np.ndarray) -> int:
    """The index np.lexsort(keys)[0] would give (the last key primary), in linear time."""
    idx = np.arange(len(keys[0]))
    for key in reversed(keys):
        k = key[idx]
        idx = idx[k == k.min()]
        if len(idx) == 1:
            break
    return int(idx[0])


def _tied(mean_d, sd_d, n, level, size) -> np.ndarray:
    """Not worse than the best beyond noise: the upper end of the paired interval reaches 0."""
    if mean_d is None:
        return np.ones(size, dtype=bool)
    if n < 2:
        return np.ones(len(mean_d), dtype=bool)
    hi = mean_d + t_quantile(0.5 + level / 2, n - 1) * sd_d / math.sqrt(n)
    return np.round(hi, _DIGITS) >= 0.0
