"""The AgentTTS paper's pilot figures, on any store (`replay pilot insight1|2|3`).

The paper (and DESIGN.md) draws three insights from pilot runs; these commands draw the same
figures from a store, with the intervals over questions the paper does not give:

- insight 1: per stage, each candidate model's best score at one equal budget (the other stages
  at their largest model with one sample: the insight-1 probe of AgentTTS), so one sees whether
  the large model wins or a small model sampled more does;
- insight 2: per stage and model, the score against the sample count (other stages as above),
  marking interior optima: a best count strictly inside the range, with the drop from it to the
  largest count and whether that drop is beyond noise (the paired 95% interval over questions,
  common random numbers);
- insight 3: per pair of consecutive stages, the downstream stage's best sample count against
  the upstream model (the upstream stage at each model with `upstream_samples` samples, the
  downstream stage at each model and every count, other stages as above).

On a chain store every score comes from one exhaustive scan per stage (`replay.engine.scan_space`
over the product of the stages' choices, the same numbers as `replay eval`). A graph store has
roles, not stages: its lanes are two-node chains (`GraphProbe`): one solve node alone, and each
other role (refine, aggregate) reading one solve node, replayed by the graph engine; insight 3
pairs the solve node's model (upstream) with each other role (downstream).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import polars as pl

from replay.atomic import atomic_path
from replay.engine import StageChoice, default_budget, evaluate_batch, scan_space, within_budget
from replay.errors import ConfigError

INSIGHTS = ("insight1", "insight2", "insight3")
TIE = 1e-9  # scores this close are equal (sums over draws in another order)


@dataclass(frozen=True)
class Scored:
    """Points scored in one replay: per point, the (model, samples) of the lane varied (and of
    the upstream lane, for insight 3), its score, 95% interval over questions and expected cost."""

    points: list
    lane: list  # (model, samples) of the lane varied
    up: list  # (model, samples) of the upstream lane, or None
    score: np.ndarray
    ci_lo: np.ndarray
    ci_hi: np.ndarray
    cost: np.ndarray


class ChainProbe:
    """A chain store's probes: one lane per stage; the other stages at their largest model with
    their smallest count (AgentTTS's insight-1 probe); scored by one exhaustive scan."""

    kind = "chain"

    def __init__(self, store, models, max_samples):
        from ..spaces.config import ConfigSpace

        self.store = store
        self.space = sp = ConfigSpace.from_store(store, models=models, max_samples=max_samples)
        self.lanes = list(sp.stages)
        self.models = [list(m) for m in sp.models]
        self.params = sp.params
        self.default_budget = default_budget(store)

    def _fixed(self) -> list[list[StageChoice]]:
        sp = self.space
        return [[StageChoice(sp.largest_model(j), min(sp.counts[j][sp.largest_model(j)]))]
                for j in range(len(sp.stages))]

    def pairs(self) -> list[tuple[int, int]]:
        return [(d - 1, d) for d in range(1, len(self.lanes))]

    def vary(self, lane: int, *, upstream: int | None = None, upstream_samples: int = 1, **kw) -> Scored:
        """Lane `lane` at every (model, count); with `upstream`, that lane at each model with
        `upstream_samples` (capped by the allowed counts); the others fixed."""
        sp = self.space
        choices = self._fixed()
        choices[lane] = sp.choices()[lane]
        if upstream is not None:
            choices[upstream] = [StageChoice(m, _cap(sp.counts[upstream][m], upstream_samples))
                                 for m in sp.models[upstream]]
        scan = scan_space(self.store, choices, **kw)
        P, K = scan.score.shape
        cfgs = [scan.config(i, k) for i in range(P) for k in range(K)]
        lane_of = [(c.stages[lane].model, c.stages[lane].samples) for c in cfgs]
        up_of = [(c.stages[upstream].model, c.stages[upstream].samples) if upstream is not None else None for c in cfgs]
        return Scored(cfgs, lane_of, up_of, scan.score.ravel(), scan.ci_lo.ravel(), scan.ci_hi.ravel(),
                      scan.expected.ravel())

    def difference(self, a, b, **kw):
        ra, rb = evaluate_batch(self.store, [a, b], **kw)
        return ra.difference(rb)


class GraphProbe:
    """A graph store's probes, as two-node chains: lane `solve` is one solve node (every model
    and count); a lane for each other role (refine, aggregate) is that role's node reading one
    solve node by the largest solve model with one sample; insight 3 pairs solve (upstream)
    with each other role (downstream). Scored by the graph engine."""

    kind = "graph"

    def __init__(self, store, models, max_samples):
        from ..spaces.graph import GraphSpace, default_graph_budget

        self.store = store
        self.space = sp = GraphSpace.from_store(store, max_nodes=2, models=models, max_samples=max_samples)
        if "solve" not in sp.roles:
            raise ConfigError(store.name, "a graph store without a solve role has no pilot figures")
        self.lanes = ["solve"] + [r for r in sp.roles if r != "solve"]
        self.models = [list(sp.models[r]) for r in self.lanes]
        self.params = sp.params
        self.default_budget = default_graph_budget(sp)
        self.big = max(sp.models["solve"], key=lambda m: sp.params.get(m, 0.0))

    def pairs(self) -> list[tuple[int, int]]:
        return [(0, d) for d in range(1, len(self.lanes))]

    def vary(self, lane: int, *, upstream: int | None = None, upstream_samples: int = 1, **kw) -> Scored:
        from replay.graph.engine import evaluate_graphs

        sp = self.space
        role = self.lanes[lane]
        if upstream is None:
            ups = [(self.big, min(sp.counts[("solve", self.big)]))]
        else:
            ups = [(m, _cap(sp.counts[("solve", m)], upstream_samples)) for m in sp.models["solve"]]
        gs, lane_of, up_of = [], [], []
        for um, uk in ups:
            for m in sp.models[role]:
                for n in sp.counts[(role, m)]:
                    spec = [(role, m, n, ())] if role == "solve" else [("solve", um, uk, ()), (role, m, n, (0,))]
                    gs.append(sp.make(spec))
                    lane_of.append((m, n))
                    up_of.append((um, uk) if upstream is not None else None)
            if role == "solve":
                break  # a solve lane reads nothing: one pass over its models
        rs = evaluate_graphs(self.store, gs, **kw)
        return Scored(gs, lane_of, up_of, np.array([r.score for r in rs]), np.array([r.ci_lo for r in rs]),
                      np.array([r.ci_hi for r in rs]), np.array([sp.estimate_cost(g) for g in gs]))

    def difference(self, a, b, **kw):
        from replay.graph.engine import evaluate_graphs
        from replay.stats import paired_interval

        ra, rb = evaluate_graphs(self.store, [a, b], **kw)
        return paired_interval(ra.per_question, rb.per_question)


def _cap(allowed, n: int) -> int:
    return max([k for k in allowed if k <= n] or [min(allowed)])


def probe(store, *, models=None, max_samples=None):
    """The probes of a store: `GraphProbe` for a graph store, else `ChainProbe`."""
    return (GraphProbe if store.manifest.kind == "graph" else ChainProbe)(store, models, max_samples)


def _top(idx, score):
    """Of the indices `idx` (sorted by sample count), the smallest count at the top score."""
    top = max(score[j] for j in idx)
    return next(j for j in idx if score[j] >= top - TIE)


def insight1(store, *, budget: float | None = None, models: Sequence[str] | None = None,
             max_samples: int | None = None, questions=None, replicates: int = 64, seed: int = 0) -> pl.DataFrame:
    """Per stage (graph stores: per role, in a two-node chain after one solve node) and model:
    the best score over the counts whose probe (other stages at their largest model, one sample)
    is within `budget` (default: the paper's, every stage once with its largest model; graph
    stores: `default_graph_budget`); `samples` is that count, `max_samples_within` the largest
    count that fits (the probe AgentTTS runs). Rows where nothing fits have `samples` null."""
    pr = probe(store, models=models, max_samples=max_samples)
    budget = pr.default_budget if budget is None else float(budget)
    rows = []
    for s, st in enumerate(pr.lanes):
        sc = pr.vary(s, questions=questions, replicates=replicates, seed=seed)
        for m in pr.models[s]:
            idx = [j for j, (lm, _) in enumerate(sc.lane) if lm == m and within_budget(sc.cost[j], budget)]
            row: dict[str, Any] = {"stage": st, "model": m, "params": pr.params[m], "budget": budget}
            if idx:
                j = max(idx, key=lambda x: (sc.score[x], -sc.cost[x]))
                row.update(samples=sc.lane[j][1], score=float(sc.score[j]), ci_lo=float(sc.ci_lo[j]),
                           ci_hi=float(sc.ci_hi[j]), expected_units=float(sc.cost[j]), config=str(sc.points[j]),
                           max_samples_within=max(sc.lane[x][1] for x in idx))
            else:
                row.update(samples=None, score=math.nan, ci_lo=math.nan, ci_hi=math.nan, expected_units=math.nan,
                           config=None, max_samples_within=None)
            rows.append(row)
    df = pl.DataFrame(rows, infer_schema_length=None)
    best = df.group_by("stage").agg(pl.col("score").max().alias("_best"))
    return df.join(best, on="stage").with_columns(best_at_budget=pl.col("score") >= pl.col("_best") - 1e-12).drop("_best")


def insight2(store, *, models: Sequence[str] | None = None, max_samples: int | None = None, questions=None,
             replicates: int = 64, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(curves, optima). curves: per stage (role), model and count, the score (the probes of
    `insight1`). optima: per stage and model, the best count (the smallest at the top score),
    whether it is interior (above the smallest count and strictly better than the largest),
    and the drop from it to the largest count, with its paired 95% interval over questions
    wherever the best beats the largest (beyond_noise: the interval excludes 0)."""
    pr = probe(store, models=models, max_samples=max_samples)
    kw = dict(questions=questions, replicates=replicates, seed=seed)
    curves, optima = [], []
    for s, st in enumerate(pr.lanes):
        sc = pr.vary(s, **kw)
        for m in pr.models[s]:
            idx = sorted((j for j, (lm, _) in enumerate(sc.lane) if lm == m), key=lambda j: sc.lane[j][1])
            for j in idx:
                curves.append({"stage": st, "model": m, "samples": sc.lane[j][1], "score": float(sc.score[j]),
                               "ci_lo": float(sc.ci_lo[j]), "ci_hi": float(sc.ci_hi[j]),
                               "expected_units": float(sc.cost[j]), "config": str(sc.points[j])})
            best, last = _top(idx, sc.score), idx[-1]
            n_best, n_last = sc.lane[best][1], sc.lane[last][1]
            # interior: more samples than the smallest count, and strictly better than the largest
            interior = n_best != sc.lane[idx[0]][1] and sc.score[best] > sc.score[last] + TIE
            row = {"stage": st, "model": m, "best_samples": n_best, "best_score": float(sc.score[best]),
                   "largest_samples": n_last, "largest_score": float(sc.score[last]), "interior": bool(interior),
                   "drop": float(sc.score[best] - sc.score[last]), "drop_ci_lo": math.nan, "drop_ci_hi": math.nan,
                   "beyond_noise": False}
            if sc.score[best] > sc.score[last] + TIE:  # more samples hurt (interior or not): is it noise?
                d = pr.difference(sc.points[best], sc.points[last], **kw)
                row.update(drop=float(d.mean), drop_ci_lo=float(d.lo), drop_ci_hi=float(d.hi),
                           beyond_noise=bool(d.excludes(0.0)))
            optima.append(row)
    return pl.DataFrame(curves), pl.DataFrame(optima, infer_schema_length=None)


def insight3(store, *, models: Sequence[str] | None = None, max_samples: int | None = None, questions=None,
             replicates: int = 64, seed: int = 0, upstream_samples: int = 1) -> pl.DataFrame:
    """Per pair of stages (upstream, downstream: consecutive stages of a chain; on a graph
    store, solve then each other role), upstream model and downstream model: the downstream
    count with the best score (the smallest at the top), its score and interval, and the score
    at the smallest count (what the extra samples buy). The upstream stage draws
    `upstream_samples` (capped by each model's allowed counts)."""
    pr = probe(store, models=models, max_samples=max_samples)
    if not pr.pairs():
        raise ConfigError(store.name, "insight 3 needs at least two stages (the downstream stage's best count "
                                      "against the upstream model); this store has one")
    rows = []
    for u, d in pr.pairs():
        sc = pr.vary(d, upstream=u, upstream_samples=upstream_samples, questions=questions, replicates=replicates,
                     seed=seed)
        for up in dict.fromkeys(sc.up):
            for m in pr.models[d]:
                idx = sorted((j for j in range(len(sc.points)) if sc.up[j] == up and sc.lane[j][0] == m),
                             key=lambda j: sc.lane[j][1])
                best = _top(idx, sc.score)
                rows.append({"upstream_stage": pr.lanes[u], "upstream_model": up[0],
                             "upstream_params": pr.params[up[0]], "upstream_samples": up[1],
                             "stage": pr.lanes[d], "model": m, "best_samples": sc.lane[best][1],
                             "score": float(sc.score[best]), "ci_lo": float(sc.ci_lo[best]),
                             "ci_hi": float(sc.ci_hi[best]), "score_at_1": float(sc.score[idx[0]]),
                             "largest_samples": sc.lane[idx[-1]][1], "config": str(sc.points[best])})
    return pl.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# Figures


def _save(fig, out: str | os.PathLike) -> Path:
    import matplotlib.pyplot as plt

    out = Path(out)
    try:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(fig)
    return out


def _figure(n: int, width: float = 5.2, height: float = 4.0):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, n, figsize=(max(6.0, width * n), height), squeeze=False)
    return plt, fig, list(axes[0])


def plot_insight1(df: pl.DataFrame, out, *, title: str) -> Path:
    stages = df["stage"].unique(maintain_order=True).to_list()
    plt, fig, axes = _figure(len(stages))
    for ax, st in zip(axes, stages):
        part = df.filter(pl.col("stage") == st).sort("params")
        x = np.arange(len(part))
        y = 100 * part["score"].fill_null(math.nan).to_numpy()
        lo = 100 * part["ci_lo"].fill_null(math.nan).to_numpy()
        hi = 100 * part["ci_hi"].fill_null(math.nan).to_numpy()
        colors = ["tab:green" if b else "tab:gray" for b in part["best_at_budget"].to_list()]
        ax.bar(x, np.nan_to_num(y), color=colors, alpha=0.8)
        ax.errorbar(x, y, yerr=[y - lo, hi - y], fmt="none", ecolor="black", capsize=3, lw=1)
        for xi, yi, n in zip(x, y, part["samples"].to_list()):
            ax.text(xi, (0 if math.isnan(yi) else yi) + 1, "none fits" if n is None else f"x{n}", ha="center",
                    fontsize=8)
        ax.set_xticks(x, part["model"].to_list(), rotation=20, fontsize=8)
        ax.set_title(f"stage {st}", fontsize=9)
        ax.set_ylabel("best score (%) within the budget; bar: 95% CI")
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, out)


def plot_insight2(curves: pl.DataFrame, optima: pl.DataFrame, out, *, title: str) -> Path:
    stages = curves["stage"].unique(maintain_order=True).to_list()
    plt, fig, axes = _figure(len(stages))
    for ax, st in zip(axes, stages):
        part = curves.filter(pl.col("stage") == st)
        for i, m in enumerate(part["model"].unique(maintain_order=True).to_list()):
            c = part.filter(pl.col("model") == m).sort("samples")
            color = plt.cm.tab10(i % 10)
            x = c["samples"].to_numpy()
            ax.plot(x, 100 * c["score"].to_numpy(), color=color, lw=1.4, label=m)
            ax.fill_between(x, 100 * c["ci_lo"].to_numpy(), 100 * c["ci_hi"].to_numpy(), color=color, alpha=0.10, lw=0)
            o = optima.filter((pl.col("stage") == st) & (pl.col("model") == m)).row(0, named=True)
            if o["interior"]:
                ax.scatter([o["best_samples"]], [100 * o["best_score"]], marker="*", s=140, color=color,
                           edgecolors="black", lw=0.6, zorder=5)
        ax.set_xscale("log", base=2)
        ax.set_xlabel(f"samples at stage {st}")
        ax.set_ylabel("score (%); band: 95% CI over questions")
        ax.set_title(f"stage {st} (star: interior optimum)", fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, out)


def plot_insight3(df: pl.DataFrame, out, *, title: str) -> Path:
    pairs = df.select("upstream_stage", "stage").unique(maintain_order=True).rows()
    plt, fig, axes = _figure(len(pairs))
    for ax, (up, st) in zip(axes, pairs):
        part = df.filter((pl.col("upstream_stage") == up) & (pl.col("stage") == st))
        ups = part.sort("upstream_params")["upstream_model"].unique(maintain_order=True).to_list()
        for i, m in enumerate(part["model"].unique(maintain_order=True).to_list()):
            c = part.filter(pl.col("model") == m)
            order = {u: k for k, u in enumerate(ups)}
            c = c.with_columns(pl.col("upstream_model").replace_strict(order).alias("_x")).sort("_x")
            ax.plot(c["_x"].to_numpy(), c["best_samples"].to_numpy(), marker="o", lw=1.4, color=plt.cm.tab10(i % 10),
                    label=f"{st}: {m}")
        ax.set_xticks(range(len(ups)), ups, rotation=20, fontsize=8)
        ax.set_yscale("log", base=2)
        ax.set_xlabel(f"upstream model (stage {up})")
        ax.set_ylabel(f"best sample count at stage {st}")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, out)
