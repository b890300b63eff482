"""Accuracy against tokens for controllers across their beta (or parameter) sweeps.

`frontier_table` evaluates every controller at every beta on every model and marks, per model,
the Pareto front over all of them (no other point is at least as accurate for at most as many
tokens, and strictly better in one). `plot_frontier` draws it, `match_table` says how many
tokens each controller needs to reach the accuracy of a reference point (majority vote at its
largest N by default) and how much that saves.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import polars as pl

from ..atomic import atomic_path
from ..errors import InputError
from ..store import Store
from .engine import Setting, evaluate_settings, load_controller


MAX_BETAS = 10_000  # settings per controller in one sweep


def parse_betas(text: str) -> list[float]:
    """'0:1:11' (start:stop:count, inclusive) or a comma list '0,0.25,1'."""
    where = "--betas"
    text = str(text).strip()
    try:
        if ":" in text:
            parts = text.split(":")
            if len(parts) != 3:
                raise ValueError
            lo, hi, n = float(parts[0]), float(parts[1]), int(parts[2])
            if n < 1:
                raise InputError(where, f"{text!r}: the count must be at least 1")
            if n > MAX_BETAS:
                raise InputError(where, f"{text!r}: at most {MAX_BETAS:,} values")
            vals = [lo] if n == 1 else list(np.linspace(lo, hi, n))
        else:
            vals = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(where, f"{text!r} is not START:STOP:COUNT (e.g. 0:1:11) or a comma list of numbers") from None
    if not vals:
        raise InputError(where, "no beta values")
    bad = [v for v in vals if not 0.0 <= v <= 1.0]
    if bad:
        raise InputError(where, f"beta {bad[0]:g} is outside [0, 1]")
    return [round(float(v), 12) for v in vals]


def sweep(controller, betas: Sequence[float]) -> list[Setting]:
    """The settings of one controller's sweep: one per beta; its defaults if it has no knob."""
    cls = load_controller(controller)
    if not cls.has_beta():
        return [Setting.make(cls)]
    seen, out = set(), []
    for b in betas:
        st = Setting.make(cls, beta=b)
        if st.params not in seen:  # integer parameters can map neighbouring betas to one setting
            seen.add(st.params)
            out.append(st)
    return out


def pareto_mask(tokens: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """True where no other point has tokens <= and accuracy >= with one strict."""
    tokens = np.asarray(tokens, dtype=float)
    acc = np.asarray(acc, dtype=float)
    le = tokens[None, :] <= tokens[:, None]
    ge = acc[None, :] >= acc[:, None]
    strict = (tokens[None, :] < tokens[:, None]) | (acc[None, :] > acc[:, None])
    return ~np.any(le & ge & strict, axis=1)


def frontier_table(store: Store, controllers: Sequence, models: Sequence[str], betas: Sequence[float], *,
                   questions=None, replicates: int = 100, seed: int = 0, probe_cost: float = 0.0,
                   stage=None, progress: Callable[[int], None] | None = None) -> pl.DataFrame:
    """Every controller's beta sweep on every model: one row per (model, setting) with its
    accuracy and tokens, and whether it lies on that model's Pareto front.

    Args:
        store: a store with probes.
        controllers: controller classes, built-in names or 'module:Class'.
        models: the models.
        betas: the knob values of each sweep (`sweep`).
        questions, replicates, seed, probe_cost, stage, progress: as in `evaluate_settings`.
    """
    rows = []
    for model in models:
        settings = [st for c in controllers for st in sweep(c, betas)]
        for r in evaluate_settings(store, model, settings, questions=questions, replicates=replicates, seed=seed,
                                   probe_cost=probe_cost, stage=stage, progress=progress):
            rows.append(r.as_row())
    df = pl.DataFrame(rows, schema_overrides={"beta": pl.Float64})
    fronts = []
    for model in models:
        part = df.filter(pl.col("model") == model)
        fronts.append(pl.Series(pareto_mask(part["tokens"].to_numpy(), part["accuracy"].to_numpy())))
    return df.with_columns(on_front=pl.concat(fronts))


def match_table(df: pl.DataFrame, reference: str = "majority") -> pl.DataFrame:
    """Per model: the reference point (the `reference` controller's most expensive setting),
    and per controller the cheapest setting whose accuracy reaches the reference's, with the
    tokens it saves. Accuracies are compared as measured (same seed and replicates: common
    random numbers), not within error bars; `reached` is False where no setting gets there."""
    out = []
    for model in df["model"].unique(maintain_order=True):
        part = df.filter(pl.col("model") == model)
        ref = part.filter(pl.col("controller") == reference).sort("tokens")
        if len(ref) == 0:
            continue
        ref_row = ref.row(-1, named=True)
        for name in part["controller"].unique(maintain_order=True):
            rows = part.filter(pl.col("controller") == name).sort("tokens")
            ok = rows.filter(pl.col("accuracy") >= ref_row["accuracy"] - 1e-12)
            best = ok.row(0, named=True) if len(ok) else rows.sort("accuracy").row(-1, named=True)
            out.append({
                "model": model, "controller": name, "params": best["params"], "accuracy": best["accuracy"],
                "tokens": best["tokens"], "reached": bool(len(ok)),
                "ref_params": f"{reference}({ref_row['params']})", "ref_accuracy": ref_row["accuracy"],
                "ref_tokens": ref_row["tokens"],
                "saved_tokens": ref_row["tokens"] - best["tokens"] if len(ok) else math.nan,
                "saved_pct": 100.0 * (1.0 - best["tokens"] / ref_row["tokens"]) if len(ok) else math.nan,
            })
    return pl.DataFrame(out)


def _atomic_write(path: Path, write: Callable[[str], None]) -> Path:
    """Write through a temporary file beside `path`, then rename: never a half-written file."""
    with atomic_path(path) as tmp:
        write(str(tmp))
    return path


def write_table(df: pl.DataFrame, path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.suffix not in (".parquet", ".csv"):
        raise InputError("--table", f"{str(path)!r}: use a .parquet or .csv file name")
    return _atomic_write(path, df.write_parquet if path.suffix == ".parquet" else df.write_csv)


def plot_frontier(df: pl.DataFrame, out: str | os.PathLike, title: str = "") -> Path:
    """One panel per model: accuracy against mean tokens per question (log scale), one line
    per controller along its sweep, the Pareto front as a black dashed step line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    if out.suffix.lower() != ".png":
        raise InputError("--out", f"{str(out)!r}: the plot is written as PNG, use a .png file name")
    models = df["model"].unique(maintain_order=True).to_list()
    ncol = min(2, len(models))
    nrow = math.ceil(len(models) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(6.2 * ncol, 4.4 * nrow), squeeze=False)
    names = df["controller"].unique(maintain_order=True).to_list()
    colors = {n: plt.cm.tab10(i % 10) for i, n in enumerate(names)}
    for ax, model in zip(axes.flat, models):
        part = df.filter(pl.col("model") == model)
        for name in names:
            rows = part.filter(pl.col("controller") == name).sort("tokens")
            if len(rows) == 0:
                continue
            ax.plot(rows["tokens"], 100 * rows["accuracy"], marker="o", ms=3.5, lw=1.3, color=colors[name], label=name)
        front = part.filter(pl.col("on_front")).sort("tokens")
        ax.step(front["tokens"], 100 * front["accuracy"], where="post", color="black", ls="--", lw=1.0,
                label="Pareto front")
        ax.scatter(front["tokens"], 100 * front["accuracy"], s=46, facecolors="none", edgecolors="black", lw=1.0,
                   zorder=5)
        ax.set_xscale("log")
        ax.set_title(model)
        ax.set_xlabel("mean tokens per question")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, loc="lower right")
    for ax in list(axes.flat)[len(models):]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    try:
        return _atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=130, format="png"))
    finally:
        plt.close(fig)
