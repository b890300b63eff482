"""What a search produces, whatever the space: a point's evaluation and the trial that records it.

    Evaluation   what the replay measured for one point (a space's `evaluate` returns these)
    Trial        one scored proposal: number, point, evaluation, who proposed it and why
    Objective    what a trial is scored on: questions, draws per question, the replay seed

Every trial keeps its per-question scores on the training questions (`per_question`: each
question's mean over the replicates), so that the final pick can be made by a rule that weighs
the noise over questions (search/selection.py), not only by the highest mean.

A point is whatever the space says it is (a `Config` of models and sample counts, a dict of
controller parameters, a graph, a program): searchers and the runner only pass it back to the
space. The cost is in the space's budget unit (`space.cost_unit`: normalised units for
configurations, judged by their expected cost over the store's pools, the measured cost in
`metrics`; mean tokens per question for controllers, measured); `metrics` holds what a space
measures beyond score and cost (per-stage units and scores, fallback rate; samples opened and
probes), and
`extra` what the searcher wants archived (its reason, an LLM's prompt and answer). New fields
go into those two mappings, so the archive record and every reader stay the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True, eq=False)
class Objective:
    """The function every searcher and seed of one setup optimise: these questions (indices
    into the store), `replicates` replay draws per question, and the replay seed (common random
    numbers: every point is scored on the same luck)."""

    questions: np.ndarray
    replicates: int
    seed: int


@dataclass(frozen=True)
class Evaluation:
    """One point, replayed on an objective."""

    feasible: bool  # within the budget and every other limit (always True when scored without them)
    score: float | None  # mean score; None when infeasible: never a result
    stderr: float | None
    cost: float  # per question, in the space's cost unit: the figure feasibility is judged by
    tokens: float  # mean tokens per question actually drawn
    metrics: dict[str, Any] = field(default_factory=dict)  # the space's other measurements
    per_question: np.ndarray | None = field(default=None, compare=False)  # mean score per question; None: infeasible


@dataclass(frozen=True)
class Trial:
    """A scored proposal. Infeasible trials (over budget) have no score and never count."""

    number: int  # 0-based, in the order trials finished
    point: Any  # the space's point (decoded); in a report read from disk, its JSON encoding
    feasible: bool
    score: float | None  # mean training score; None when infeasible
    stderr: float | None
    cost: float  # cost per question in the space's cost unit, the figure feasibility is judged by
    tokens: float
    wall_s: float  # replay time of this trial
    source: str = ""  # who proposed it (e.g. "init", "llm", "fill", "bo-tpe")
    extra: dict[str, Any] = field(default_factory=dict)  # searcher-specific (reason, LLM prompt, answer, ...)
    metrics: dict[str, Any] = field(default_factory=dict)  # space-specific measurements
    label: str = ""  # the point in one line (space.label), for reports that have no space at hand
    per_question: tuple[float, ...] | None = field(default=None, compare=False)  # training score per question

    @property
    def fallback_rate(self) -> float | None:
        """Share of draws whose upstream answer was not collected (the replay fell back to
        another pool), where the space measures it; None otherwise."""
        v = self.metrics.get("fallback_rate")
        return None if v is None else float(v)

    @property
    def why_infeasible(self) -> str:
        """Why the trial has no score ("" when it has one)."""
        if self.feasible:
            return ""
        return str(self.metrics.get("infeasible") or "over budget")

    @classmethod
    def of(cls, number: int, point: Any, ev: Evaluation, *, wall_s: float, source: str = "",
           extra: dict[str, Any] | None = None, label: str = "") -> "Trial":
        # six decimals: exact for scores that are fractions of the replicates, short in the archive,
        # and the same numbers whether a trial was just scored or read back by --resume
        pq = None if ev.per_question is None or not ev.feasible else tuple(round(float(x), 6) for x in ev.per_question)
        return cls(number=number, point=point, feasible=ev.feasible, score=ev.score, stderr=ev.stderr, cost=ev.cost,
                   tokens=ev.tokens, wall_s=wall_s, source=source, extra=dict(extra or {}), metrics=dict(ev.metrics),
                   label=label, per_question=pq)


def best_trial(trials) -> Trial | None:
    """Highest score; ties to the cheaper, then the earlier trial. Never an infeasible one."""
    ok = [t for t in trials if t.feasible and t.score is not None]
    return max(ok, key=lambda t: (t.score, -t.cost, -t.number)) if ok else None
