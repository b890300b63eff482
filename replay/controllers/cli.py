"""`replay frontier --controllers ...`: accuracy against tokens of width-depth controllers, with
the Pareto front.

The command itself (replay/frontier_cli.py) dispatches here when a controller option is given.
Nothing heavy is imported at module import (no numba, no matplotlib): `replay --help` stays
fast.
"""

from __future__ import annotations

import math
from pathlib import Path

import click

from ..clitools import SEED, check_count, check_output_file, check_replicates


def _split(values) -> list[str]:
    out = []
    for v in values:
        out.extend(x.strip() for x in str(v).split(",") if x.strip())
    return out


def _fmt_tokens(x: float) -> str:
    return f"{x:,.0f}"


def controller_frontier(store, *, controllers, extra, out, models, betas, replicates, seed, questions, probe_cost, stage,
                        table, show_all=False):
    """Accuracy against mean tokens per question for controllers over step-level traces.

    Each controller is swept over its beta knob (more beta = more compute) on every model;
    built-ins run compiled, controllers of yours (--controller module:Class) run in the Python
    engine, in a sandbox (replay sandbox shows what it guarantees), with the same semantics and
    random numbers. Prints the Pareto front per model (every point with `show_all`), writes the
    plot (`out`, a .png) and every point as a table (`table`, .parquet or .csv; default: the
    plot's name with .parquet). Semantics: docs/controllers.md.
    """
    import polars as pl
    from tqdm import tqdm

    from ..clitools import open_announced
    from ..errors import InputError
    from .engine import load_controller
    from .frontier import frontier_table, match_table, parse_betas, plot_frontier, sweep, write_table

    names = _split([controllers]) + _split(extra)
    if not names:
        raise InputError("--controllers", "no controller given")
    classes = [load_controller(n) for n in names]  # fail fast on a bad name, before opening the store
    theirs = [c.name for c in classes if getattr(c, "sandbox", None) is not None]
    if theirs:  # controllers of the user's run sandboxed: say what that guarantees here
        from ..sandbox import isolation

        click.echo(f"controller{'s' if len(theirs) > 1 else ''} {', '.join(map(repr, theirs))} run in the "
                   f"{isolation().summary()}", err=True)
    beta_list = parse_betas(betas)
    check_count("--replicates", replicates)
    if not (math.isfinite(probe_cost) and probe_cost >= 0):
        raise InputError("--probe-cost", f"must be a finite number of tokens >= 0, got {probe_cost}")
    if not str(out).lower().endswith(".png"):
        raise InputError("--out", f"{out!r}: the plot is written as PNG, use a .png file name")
    if table is None:
        table = str(Path(out).with_suffix(".parquet"))
    if not str(table).endswith((".parquet", ".csv")):
        raise InputError("--table", f"{table!r}: use a .parquet or .csv file name")
    check_output_file(out, "--out")
    check_output_file(table, "--table")
    st = open_announced(store)
    if stage is not None and stage not in st.manifest.stage_names:
        raise InputError("--stage", f"unknown stage {stage!r} (stages: {', '.join(st.manifest.stage_names)})")
    model_list = _split(models) or list(st.candidate_models(stage if stage is not None else 0))
    unknown = [m for m in model_list if m not in st.manifest.model_names]
    if unknown:
        raise InputError("--model", f"unknown model {unknown[0]!r} (models: {', '.join(st.manifest.model_names)})")
    qsel = None if questions == "all" else (questions if questions in st.manifest.split else _split([questions]))
    if isinstance(qsel, list) and len(set(qsel)) != len(qsel):
        dup = next(q for i, q in enumerate(qsel) if q in qsel[:i])
        raise InputError("--questions", f"question {dup!r} is listed twice (it would be counted twice)")
    n_q = len(st.question_indices(qsel))
    check_replicates("--replicates", replicates, questions=n_q, per_pass=len(model_list), configs=len(beta_list))
    n_settings = sum(len(sweep(c, beta_list)) for c in classes)
    with tqdm(total=n_settings * n_q * len(model_list), desc="frontier", unit="setting-question",
              disable=None) as bar:
        df = frontier_table(st, classes, model_list, beta_list, questions=qsel, replicates=replicates, seed=seed,
                            probe_cost=probe_cost, stage=stage, progress=bar.update)
    # the Pareto front by default (a few lines per model); every point with --all, or in the table
    rows = df if show_all else df.filter(pl.col("on_front"))
    longest = max([len("params")] + [len(p) for p in rows["params"].to_list()])
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=max(200, longest + 120), fmt_str_lengths=longest + 2,
                   tbl_hide_dataframe_shape=True):
        if not show_all:
            click.echo(f"the Pareto front per model: {len(rows)} of {len(df)} points (--all prints every one; "
                       f"the table file holds them all)")
        shown = rows.select("model", "controller", "params", (pl.col("accuracy") * 100).round(2).alias("acc%"),
                          (pl.col("stderr") * 100).round(2).alias("se%"), pl.col("tokens").round(0),
                          pl.col("opened").round(2), pl.col("probes").round(1), "on_front")
        click.echo(shown)
        if "majority" in [c.name for c in classes]:
            m = match_table(df, "majority")
            click.echo("\ncheapest setting reaching the accuracy of majority vote at its largest N (same seed):")
            click.echo(m.select("model", "controller", "params", (pl.col("accuracy") * 100).round(2).alias("acc%"),
                                pl.col("tokens").round(0), "reached", (pl.col("ref_accuracy") * 100).round(2).alias("ref_acc%"),
                                pl.col("ref_tokens").round(0), pl.col("saved_pct").round(1)))
    plot_frontier(df, out, title=f"{st.name}: accuracy against tokens ({replicates} replicates, seed {seed})")
    click.echo(f"wrote {out}")
    write_table(df, table)
    click.echo(f"wrote {table}")
