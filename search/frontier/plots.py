"""The frontier's figure: score against budget (log x) with the 95% band over questions, beside
how the allocation moves with the budget (per stage, or per graph role: the model and its
sample count)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import polars as pl

from replay.atomic import atomic_path

from .core import TEST_OPTIMUM, TRAIN_PICK, Frontier


def _allocation(fr: Frontier, curve: str) -> dict[str, dict[str, list[tuple[float, int]]]]:
    """{stage or role: {model: [(budget, samples), ...]}} along one curve; a graph's samples
    are summed over the role's nodes of that model."""
    out: dict[str, dict[str, list[tuple[float, int]]]] = {}
    for row, pt in zip(fr.table.iter_rows(named=True), fr.points):
        if row["curve"] != curve or pt is None:
            continue
        per: dict[tuple[str, str], int] = {}
        if fr.info["kind"] == "chain":
            for st, ch in zip(fr.info["stages"], pt.stages):
                per[(st, ch.model)] = per.get((st, ch.model), 0) + ch.samples
        else:
            for n in pt.nodes:
                per[(n.role, n.model)] = per.get((n.role, n.model), 0) + n.samples
        for (st, m), k in per.items():
            out.setdefault(st, {}).setdefault(m, []).append((row["budget"], k))
    return out


def plot_frontier(fr: Frontier, out: str | os.PathLike, *, unit: str = "units") -> Path:
    """Left: the test optimum and the train pick (scored on test), each with its 95% interval
    over questions as a band, and the train pick's training score dashed. Right: one panel per
    stage (role), the samples of each model along the train pick's curve (filled) and the test
    optimum's (open). Written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.gridspec import GridSpec

    info = fr.info
    xs = "budget" if unit == "units" else "budget_flops"
    xlabel = ("budget (units per question; 1 unit = one pass of the smallest model)" if unit == "units"
              else "budget (FLOPs per question)")
    lanes = list(info["stages"] if info["kind"] == "chain" else info["roles"])
    n = max(1, len(lanes))
    fig = plt.figure(figsize=(12.5, max(4.6, 1.9 * n + 0.8)))
    gs = GridSpec(n, 2, width_ratios=[1.45, 1.0], figure=fig)
    ax = fig.add_subplot(gs[:, 0])
    styles = {TEST_OPTIMUM: ("black", "-", "o"), TRAIN_PICK: ("tab:blue", "-", "s")}
    for name in (TEST_OPTIMUM, TRAIN_PICK):
        c = fr.curve(name).filter(pl.col("config").is_not_null())
        if len(c) == 0:
            continue
        color, ls, mk = styles[name]
        x = c[xs].to_numpy()
        label = ("test optimum (best on test: optimistic)" if name == TEST_OPTIMUM
                 else f"train pick ({info.get('select', 'mean')}), scored on test")
        ax.plot(x, 100 * c["score"].to_numpy(), color=color, ls=ls, marker=mk, ms=4, lw=1.6, label=label)
        ax.fill_between(x, 100 * c["ci_lo"].to_numpy(), 100 * c["ci_hi"].to_numpy(), color=color, alpha=0.12, lw=0)
        if name == TRAIN_PICK:
            ax.plot(x, 100 * c["train_score"].to_numpy(), color=color, ls="--", lw=1.0, alpha=0.8,
                    label=f"train pick ({info.get('select', 'mean')}), its training score")
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"score (%) on {info['n_test']} test questions; band: 95% interval")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"{info['store']}{' (SYNTHETIC)' if info.get('synthetic') else ''}: compute-optimal frontier",
                 fontsize=10)
    alloc_pick, alloc_opt = _allocation(fr, TRAIN_PICK), _allocation(fr, TEST_OPTIMUM)
    models = sorted({m for a in (alloc_pick, alloc_opt) for per in a.values() for m in per})
    colors = {m: plt.cm.tab10(i % 10) for i, m in enumerate(models)}
    xlim = ax.get_xlim()
    for i, lane in enumerate(lanes):
        a2 = fig.add_subplot(gs[i, 1])
        for m in models:
            for alloc, filled, off in ((alloc_pick, True, 1.0), (alloc_opt, False, 1.06)):
                pts = alloc.get(lane, {}).get(m, [])
                if not pts:
                    continue
                bx = [b * off for b, _ in pts]  # the open markers a little to the right: both stay visible
                if unit != "units":
                    bx = [b * info["budget_unit_flops"] for b in bx]
                by = [k for _, k in pts]
                a2.scatter(bx, by, s=26, marker="o", color=colors[m] if filled else "none",
                           edgecolors=colors[m], lw=1.1, label=m if filled or not alloc_pick.get(lane, {}).get(m) else None,
                           zorder=3)
        a2.set_xscale("log")
        a2.set_yscale("log", base=2)
        a2.set_xlim(xlim)
        a2.set_ylabel(f"{lane}: samples", fontsize=8)
        a2.grid(alpha=0.3, which="both")
        a2.tick_params(labelsize=7)
        if i == 0:
            a2.set_title("allocation: filled = train pick, open = test optimum", fontsize=9)
        if i == n - 1:
            a2.set_xlabel("budget", fontsize=8)
        handles, labels = a2.get_legend_handles_labels()
        if handles:
            a2.legend(fontsize=7, loc="upper left", ncol=2 if len(handles) > 3 else 1)
    sub = (f"{info['search']}; {info['scanned']:,} scored on {info['n_train']} train and {info['n_test']} test "
           f"questions x {info['replicates']} replicates (seed {info['seed']})")
    fig.text(0.5, 0.005, sub, ha="center", fontsize=7, wrap=True)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    out = Path(out)
    try:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(fig)
    return out


def fmt_score(x: float) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{100 * x:.1f}"
