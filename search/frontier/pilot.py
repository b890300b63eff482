"""The AgentTTS paper's pilot figures, on any chain store (`replay pilot insight1|2|3`).

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

Every score comes from one exhaustive scan per figure (`replay.engine.scan_space` over the
product of the stages' choices, the same numbers as `replay eval`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import polars as pl

from replay.atomic import atomic_path
from replay.engine import Config, StageChoice, default_budget, evaluate_batch, scan_space, within_budget
from replay.errors import ConfigError

INSIGHTS = ("insight1", "insight2", "insight3")
TIE = 1e-9  # scores this close are equal (sums over draws in another order)


def _space(store, models, max_samples):
    from ..spaces.config import ConfigSpace

    return ConfigSpace.from_store(store, models=models, max_samples=max_samples)


def _fixed(space) -> list[StageChoice]:
    """Every stage at its largest model with its smallest count (AgentTTS's insight-1 probe)."""
    out = []
    for j in range(len(space.stages)):
        m = space.largest_model(j)
        out.append(StageChoice(m, min(space.counts[j][m])))
    return out


def _vary(store, space, stage: int, *, questions, replicates: int, seed: int):
    """One scan: stage `stage` at every (model, count), the others fixed. Returns (choices of
    the stage in scan order, scan) with scan arrays of shape [1, K] or [K, 1]."""
    fixed = _fixed(space)
    choices = [[c] for c in fixed]
    choices[stage] = space.choices()[stage]
    scan = scan_space(store, choices, questions=questions, replicates=replicates, seed=seed)
    return scan


def _flat(scan):
    """(configs, score, ci_lo, ci_hi, expected) of every configuration of a scan, flattened."""
    P, K = scan.score.shape
    cfgs = [scan.config(i, k) for i in range(P) for k in range(K)]
    return cfgs, scan.score.ravel(), scan.ci_lo.ravel(), scan.ci_hi.ravel(), scan.expected.ravel()


def insight1(store, *, budget: float | None = None, models: Sequence[str] | None = None,
             max_samples: int | None = None, questions=None, replicates: int = 64, seed: int = 0) -> pl.DataFrame:
    """Per stage and model: the best score over the counts whose configuration (other stages at
    their largest model, one sample) is within `budget` (default: the paper's, every stage once
    with its largest model); `samples` is that count, `max_samples_within` the largest count that
    fits (the probe AgentTTS runs). Rows where nothing fits have `samples` null."""
    space = _space(store, models, max_samples)
    budget = default_budget(store) if budget is None else float(budget)
    rows = []
    for s, st in enumerate(space.stages):
        cfgs, score, lo, hi, cost = _flat(_vary(store, space, s, questions=questions, replicates=replicates, seed=seed))
        for m in space.models[s]:
            idx = [j for j, c in enumerate(cfgs) if c.stages[s].model == m and within_budget(cost[j], budget)]
            row: dict[str, Any] = {"stage": st, "model": m, "params": space.params[m], "budget": budget}
            if idx:
                j = max(idx, key=lambda x: (score[x], -cost[x]))
                row.update(samples=cfgs[j].stages[s].samples, score=float(score[j]), ci_lo=float(lo[j]),
                           ci_hi=float(hi[j]), expected_units=float(cost[j]), config=str(cfgs[j]),
                           max_samples_within=max(cfgs[x].stages[s].samples for x in idx))
            else:
                row.update(samples=None, score=math.nan, ci_lo=math.nan, ci_hi=math.nan, expected_units=math.nan,
                           config=None, max_samples_within=None)
            rows.append(row)
    df = pl.DataFrame(rows, infer_schema_length=None)
    best = df.group_by("stage").agg(pl.col("score").max().alias("_best"))
    return df.join(best, on="stage").with_columns(best_at_budget=pl.col("score") >= pl.col("_best") - 1e-12).drop("_best")


def insight2(store, *, models: Sequence[str] | None = None, max_samples: int | None = None, questions=None,
             replicates: int = 64, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(curves, optima). curves: per stage, model and count, the score (other stages at their
    largest model, one sample). optima: per stage and model, the best count (ties to the
    smaller), whether it is interior (neither the smallest nor the largest count), and the drop
    from it to the largest count with its paired 95% interval over questions (beyond_noise:
    the interval excludes 0)."""
    space = _space(store, models, max_samples)
    curves, optima = [], []
    for s, st in enumerate(space.stages):
        cfgs, score, lo, hi, cost = _flat(_vary(store, space, s, questions=questions, replicates=replicates, seed=seed))
        for m in space.models[s]:
            idx = sorted((j for j, c in enumerate(cfgs) if c.stages[s].model == m), key=lambda j: cfgs[j].stages[s].samples)
            for j in idx:
                curves.append({"stage": st, "model": m, "samples": cfgs[j].stages[s].samples, "score": float(score[j]),
                               "ci_lo": float(lo[j]), "ci_hi": float(hi[j]), "expected_units": float(cost[j]),
                               "config": str(cfgs[j])})
            top = max(score[j] for j in idx)
            best = next(j for j in idx if score[j] >= top - TIE)  # the smallest count at the top
            last = idx[-1]
            n_best, n_last = cfgs[best].stages[s].samples, cfgs[last].stages[s].samples
            # interior: more samples than the smallest count, and strictly better than the largest
            interior = n_best != cfgs[idx[0]].stages[s].samples and score[best] > score[last] + TIE
            row = {"stage": st, "model": m, "best_samples": n_best, "best_score": float(score[best]),
                   "largest_samples": n_last, "largest_score": float(score[last]), "interior": bool(interior),
                   "drop": float(score[best] - score[last]), "drop_ci_lo": math.nan, "drop_ci_hi": math.nan,
                   "beyond_noise": False}
            if interior:
                a, b = evaluate_batch(store, [cfgs[best], cfgs[last]], questions=questions, replicates=replicates,
                                      seed=seed)
                d = a.difference(b)
                row.update(drop=float(d.mean), drop_ci_lo=float(d.lo), drop_ci_hi=float(d.hi),
                           beyond_noise=bool(d.excludes(0.0)))
            optima.append(row)
    return pl.DataFrame(curves), pl.DataFrame(optima, infer_schema_length=None)


def insight3(store, *, models: Sequence[str] | None = None, max_samples: int | None = None, questions=None,
             replicates: int = 64, seed: int = 0, upstream_samples: int = 1) -> pl.DataFrame:
    """Per consecutive pair of stages (upstream u, downstream d), upstream model and downstream
    model: the downstream count with the best score (ties to the smaller), its score and
    interval, and the score at one downstream sample (what the extra samples buy). The
    upstream stage draws `upstream_samples` (capped by each model's allowed counts)."""
    space = _space(store, models, max_samples)
    S = len(space.stages)
    if S < 2:
        raise ConfigError(store.name, "insight 3 needs at least two stages (the downstream stage's best count "
                                      "against the upstream model); this store has one")
    rows = []
    for d in range(1, S):
        u = d - 1
        choices = [[c] for c in _fixed(space)]
        ups = []
        for m in space.models[u]:
            allowed = space.counts[u][m]
            ups.append(StageChoice(m, max([n for n in allowed if n <= upstream_samples] or [min(allowed)])))
        choices[u] = ups
        choices[d] = space.choices()[d]
        cfgs, score, lo, hi, cost = _flat(scan_space(store, choices, questions=questions, replicates=replicates,
                                                     seed=seed))
        for up in ups:
            for m in space.models[d]:
                idx = [j for j, c in enumerate(cfgs) if c.stages[u] == up and c.stages[d].model == m]
                idx.sort(key=lambda j: cfgs[j].stages[d].samples)
                top = max(score[j] for j in idx)
                best = next(j for j in idx if score[j] >= top - TIE)  # the smallest count at the top
                rows.append({"upstream_stage": space.stages[u], "upstream_model": up.model,
                             "upstream_params": space.params[up.model], "upstream_samples": up.samples,
                             "stage": space.stages[d], "model": m, "best_samples": cfgs[best].stages[d].samples,
                             "score": float(score[best]), "ci_lo": float(lo[best]), "ci_hi": float(hi[best]),
                             "score_at_1": float(score[idx[0]]), "largest_samples": cfgs[idx[-1]].stages[d].samples,
                             "config": str(cfgs[best])})
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
