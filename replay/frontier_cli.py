"""`replay frontier` and `replay pilot`: the compute-optimal frontier of a store, the frontier
of width-depth controllers, and the AgentTTS pilot figures.

One command, two frontiers: with a controller option (--controllers, --controller, --model,
--betas, --probe-cost, --stage, --table, --questions) it is the controllers' accuracy against
tokens (replay/controllers/cli.py, as before); without, it is the frontier of configurations
(search/frontier: the best configuration at each budget by the exact scan). The computation
lives in search/ (it reuses the search space, the train/test split and the grid's scan);
nothing heavy is imported until a command runs, so `replay --help` stays fast.
"""

from __future__ import annotations

import math
from pathlib import Path

import click

from .clitools import SEED, check_count, check_output_file

OUT_ROOT = Path("out")


def _default_dir(kind: str, store: str) -> Path:
    return OUT_ROOT / kind / (Path(str(store)).name or "store")


@click.command("frontier", short_help="The best configuration at each budget, or controllers' curves.")
@click.argument("store", type=click.Path(file_okay=False))
@click.option("--out", "out", type=click.Path(), default=None,
              help="Configurations: a folder for frontier.parquet, frontier.png and frontier.txt "
                   "(default out/frontier/STORE). Controllers: the plot, a .png file "
                   "(default out/frontier/STORE/controllers.png).")
@click.option("--all", "show_all", is_flag=True, help="Print every row (default: a short table; files hold every row).")
@click.option("--budgets", default=None,
              help="Configurations: budgets per question, a comma list or LO:HI:COUNT (log-spaced), in --unit. "
                   "Default: --points log-spaced from the cheapest configuration to the costliest.")
@click.option("--points", default=12, show_default=True, type=int, help="Configurations: how many default budgets.")
@click.option("--unit", type=click.Choice(["units", "flops"]), default="units", show_default=True,
              help="Configurations: the unit of --budgets and of the plot's x axis (1 unit = one single-sample pass "
                   "of the smallest model on the cheapest stage).")
@click.option("--models", default=None, help="Configurations: comma-separated candidate models (default: all).")
@click.option("--max-samples", type=int, default=None,
              help="Configurations: the largest sample count of a stage (graph stores: of a node, default 8).")
@click.option("--train", type=int, default=None,
              help="Configurations: N training questions drawn outside the test set, as `search --train` "
                   "(default: the store's split; no split and at most 50 questions: half of them).")
@click.option("--split-seed", default=0, show_default=True, type=SEED, help="Configurations: the seed of --train's draw.")
@click.option("--select", "select_rule", default=None,
              help="Configurations: the rule that picks the train pick at each budget, as `search run --select`: mean, "
                   "mean-costliest, lcb, tied-cheapest, tied-costliest (default: search's, the lowest measured test "
                   "regret; search/selection.py).")
@click.option("--max-nodes", type=int, default=None, help="Graph stores: the most nodes of a graph (default 2).")
@click.option("--max-graphs", type=int, default=None,
              help="Graph stores: refuse a space of more graphs than this (default 20,000): each is replayed.")
@click.option("--replicates", "-r", default=None, type=int,
              help="Random draws per question (default: 16 for configurations, 100 for controllers).")
@click.option("--seed", default=0, show_default=True, type=SEED, help="Seed of every draw (0 to 2^63-1).")
@click.option("--controllers", "controllers", default=None,
              help="Controllers: comma list of built-ins (majority, adaptive, esc, probe; default: all four) "
                   "and/or module:Class.")
@click.option("--controller", "extra", multiple=True, metavar="MODULE:CLASS",
              help="Controllers: a controller class of yours (module:Class or path/file.py:Class), replayed in a "
                   "sandbox; repeatable. Added to --controllers.")
@click.option("--model", "ctrl_models", multiple=True,
              help="Controllers: model(s) to replay (repeatable or comma list). Default: all.")
@click.option("--betas", default=None, help="Controllers: beta sweep, START:STOP:COUNT or a comma list in [0, 1] "
                                            "(default 0:1:11).")
@click.option("--questions", default=None, help="Controllers: all, a split name (train/test), or ids (default all).")
@click.option("--probe-cost", default=None, type=float,
              help="Controllers: tokens charged per probe of an unfinished sample (default 0).")
@click.option("--stage", default=None, help="Controllers: the stage whose pools they replay (default: the first).")
@click.option("--table", "table", type=click.Path(dir_okay=False), default=None,
              help="Controllers: every point as a table, .parquet or .csv (default: beside the plot, .parquet).")
def frontier(store, out, show_all, budgets, points, unit, models, max_samples, train, split_seed, select_rule,
             max_nodes, max_graphs, replicates, seed, controllers, extra, ctrl_models, betas, questions, probe_cost, stage, table):
    """The compute-optimal frontier: the best configuration at each budget, with its score,
    95% interval over questions and cost; or, with --controllers, controllers' accuracy
    against tokens.

    \b
    Configurations (chain and graph stores):
      replay frontier traces/aime24
      replay frontier traces/sim-2wiki --budgets 20:400:10 --out out/f2wiki
      replay frontier traces/sim-math --max-nodes 2 --max-samples 4
    Every configuration is scored on the training and the test questions by the exact scan of
    `search --searcher grid`; at each budget (feasible = expected cost per question within it,
    the budget rule) it gives the train pick (--select's rule on the training questions, as
    `search run`) scored on test, and the test optimum. Graph stores: every graph of a bounded
    space (--max-nodes, --max-samples) is replayed; a larger space is refused naming its size.
    Writes frontier.parquet (columns budget, budget_flops, curve, split, select, config, score,
    ci_lo, ci_hi, train_score, expected_units, ...), frontier.png (score against budget, and the
    allocation per stage) and frontier.txt (the full table). docs/frontier.md.

    \b
    Controllers (stores with probes; docs/controllers.md):
      replay frontier traces/aime24 --controllers majority,adaptive,esc,probe
      replay frontier traces/aime24 --model Qwen3-8B --controller my_ctrl.py:Greedy -r 20
    """
    ctrl = {"--controllers": controllers is not None, "--controller": bool(extra), "--model": bool(ctrl_models),
            "--betas": betas is not None, "--questions": questions is not None, "--probe-cost": probe_cost is not None,
            "--stage": stage is not None, "--table": table is not None}
    cfg = {"--budgets": budgets is not None, "--points": points != 12, "--unit": unit != "units",
           "--models": models is not None, "--max-samples": max_samples is not None, "--train": train is not None,
           "--split-seed": split_seed != 0, "--select": select_rule is not None, "--max-nodes": max_nodes is not None,
           "--max-graphs": max_graphs is not None}
    if any(ctrl.values()):
        mixed = [k for k, v in cfg.items() if v]
        if mixed:
            from .errors import InputError

            used = next(k for k, v in ctrl.items() if v)
            raise InputError(mixed[0], f"is an option of the configuration frontier; {used} asks for the controllers' "
                                       "frontier (replay frontier --help)")
        from .controllers.cli import controller_frontier

        if out is None:
            out = str(_default_dir("frontier", store) / "controllers.png")
        return controller_frontier(
            store, controllers=controllers if controllers is not None else "majority,adaptive,esc,probe", extra=extra,
            out=out, models=ctrl_models, betas=betas if betas is not None else "0:1:11",
            replicates=100 if replicates is None else replicates, seed=seed,
            questions=questions if questions is not None else "all",
            probe_cost=0.0 if probe_cost is None else probe_cost, stage=stage, table=table, show_all=show_all)
    return _config_frontier(store, out=out, show_all=show_all, budgets=budgets, points=points, unit=unit, models=models,
                            max_samples=max_samples, train=train, split_seed=split_seed, select_rule=select_rule,
                            max_nodes=max_nodes, max_graphs=max_graphs,
                            replicates=16 if replicates is None else replicates, seed=seed)


def _out_files(out, kind: str, store, names) -> list[Path]:
    """The files of a command writing into a folder, checked writable before any work."""
    from .errors import InputError

    d = Path(out) if out is not None else _default_dir(kind, store)
    if d.exists() and not d.is_dir():
        raise InputError("--out", f"{d} is a file; give a folder")
    return [check_output_file(d / n, "--out") for n in names]


def _config_frontier(store, *, out, show_all, budgets, points, unit, models, max_samples, train, split_seed,
                     select_rule, max_nodes, max_graphs, replicates, seed):
    from tqdm import tqdm

    from .atomic import atomic_path
    from .clitools import check_replicates, open_announced
    from .errors import ConfigError

    check_count("--points", points, hi=1000)
    check_count("--replicates", replicates)
    for name, v in (("--max-samples", max_samples), ("--max-nodes", max_nodes), ("--max-graphs", max_graphs),
                    ("--train", train)):
        if v is not None:
            check_count(name, v)
    from search.frontier import chain_frontier, graph_frontier, parse_budgets
    from search.frontier.core import GRAPH_MAX_GRAPHS, GRAPH_MAX_NODES, GRAPH_MAX_SAMPLES
    from search.frontier.plots import plot_frontier
    from search.selection import DEFAULT_RULE, check_rule

    rule = check_rule(DEFAULT_RULE if select_rule is None else select_rule)  # before the store is opened
    if budgets is not None:
        parse_budgets(budgets)  # bad text fails before the store is opened
    files = _out_files(out, "frontier", store, ("frontier.parquet", "frontier.png", "frontier.txt"))
    st = open_announced(store)
    model_list = [m.strip() for m in models.split(",") if m.strip()] if models else None
    blist = parse_budgets(budgets, unit=unit, unit_flops=st.derived.budget_unit) if budgets is not None else None
    graph = st.manifest.kind == "graph"
    if not graph and (max_nodes is not None or max_graphs is not None):
        raise ConfigError("--max-nodes" if max_nodes is not None else "--max-graphs",
                          f"store {st.name!r} is a chain store; graph options are for graph stores")
    largest = int(st.derived.largest_pool.max())
    check_replicates("--replicates", replicates, questions=len(st.question_ids), per_pass=largest, configs=largest)
    if graph:
        max_graphs = GRAPH_MAX_GRAPHS if max_graphs is None else max_graphs
        with tqdm(desc="frontier", unit="graph", disable=None) as bar:
            fr = graph_frontier(st, budgets=blist, points=points, models=model_list,
                                max_samples=GRAPH_MAX_SAMPLES if max_samples is None else max_samples,
                                max_nodes=GRAPH_MAX_NODES if max_nodes is None else max_nodes, max_graphs=max_graphs,
                                replicates=replicates, seed=seed, train=train, split_seed=split_seed, select=rule,
                                progress=bar.update)
    else:
        fr = chain_frontier(st, budgets=blist, points=points, models=model_list, max_samples=max_samples,
                            replicates=replicates, seed=seed, train=train, split_seed=split_seed, select=rule)
    full = frontier_text(fr, unit=unit, limit=None)
    click.echo(frontier_text(fr, unit=unit, limit=None if show_all else SHORT_ROWS))
    parquet, png, txt = files
    with atomic_path(parquet) as tmp:
        fr.table.write_parquet(tmp)
    plot_frontier(fr, png, unit=unit)
    with atomic_path(txt) as tmp:
        Path(tmp).write_text(full + "\n", encoding="utf-8")
    click.echo(f"wrote {parquet}, {png}, {txt}")


SHORT_ROWS = 12


def frontier_text(fr, *, unit: str = "units", limit: int | None = SHORT_ROWS) -> str:
    """The frontier as a text table: per budget, the train pick (scored on test) and the test
    optimum, with the 95% interval over questions; at most `limit` budgets (evenly spaced,
    the first and the last kept), all with None."""
    from search.frontier import TEST_OPTIMUM, TRAIN_PICK

    info = fr.info
    pick, best = fr.curve(TRAIN_PICK), fr.curve(TEST_OPTIMUM)
    n = len(pick)
    keep = list(range(n))
    if limit is not None and n > limit:
        keep = sorted({round(i * (n - 1) / (limit - 1)) for i in range(limit)})

    def sc(x):
        return "-" if x is None or not math.isfinite(x) else f"{100 * x:.1f}"

    def ci(lo, hi):
        return "-" if lo is None or not math.isfinite(lo) else f"[{100 * lo:.1f}, {100 * hi:.1f}]"

    def cost(units):
        return f"{units:.4g}" if unit == "units" else f"{units * info['budget_unit_flops']:.3g}"

    rows = []
    for i in keep:
        a, b = pick.row(i, named=True), best.row(i, named=True)
        budget = f"{a['budget']:.4g}" if unit == "units" else f"{a['budget_flops']:.3g}"
        rows.append((budget, str(a["n_feasible"]), a["config"] or "(none within budget)", sc(a["train_score"]),
                     sc(a["score"]), ci(a["ci_lo"], a["ci_hi"]), cost(a["expected_units"]) if a["config"] else "-",
                     b["config"] or "-", sc(b["score"]), ci(b["ci_lo"], b["ci_hi"]), sc(a["regret"])))
    head = ("budget" if unit == "units" else "budget FLOPs", "feasible", f"train pick ({info['select']})", "train",
            "test", "95% CI", "cost", "test optimum", "test", "95% CI", "regret")
    w = [max(len(h), *(len(r[k]) for r in rows)) if rows else len(h) for k, h in enumerate(head)]
    lines = [f"{info['store']}{' [SYNTHETIC]' if info.get('synthetic') else ''}: {info['search']}",
             f"space: {info['space']}; {info['scanned']:,} scored on train and on test in {info['scan_wall_s']:.2f} s "
             f"wall ({info['scan_cpu_s']:.2f} s CPU)",
             f"questions: {info['split']}; {info['replicates']} replicates, seed {info['seed']}",
             f"train pick: selection rule {info['select']} ({info['select_text']}; search run --select)", ""]
    lines.append("  ".join(h.ljust(w[k]) if k in (2, 7) else h.rjust(w[k]) for k, h in enumerate(head)))
    lines.append("-" * len(lines[-1]))
    for r in rows:
        lines.append("  ".join(c.ljust(w[k]) if k in (2, 7) else c.rjust(w[k]) for k, c in enumerate(r)))
    lines.append("")
    if len(keep) < n:
        lines.append(f"{len(keep)} of {n} budgets shown (--all prints every one; frontier.parquet holds them all)")
    per = "units per question" if unit == "units" else "FLOPs per question"
    lines.append(f"budget and cost: {per} (cost: the pick's expected cost, the budget rule); scores in "
                 "percent; train: the pick's training mean; test and 95% CI: on the test questions, the interval over "
                 "questions; regret: test optimum - train pick, on test")
    lines.append("the test optimum is the best of many noisy test means (optimistic); the train pick is what choosing "
                 "on the training questions gets")
    return "\n".join(lines)


@click.command("pilot", short_help="The AgentTTS pilot figures (insight1, insight2, insight3).")
@click.argument("which", type=click.Choice(["insight1", "insight2", "insight3"]))
@click.argument("store", type=click.Path(file_okay=False))
@click.option("--out", "out", type=click.Path(), default=None,
              help="Folder for INSIGHT.parquet, INSIGHT.png and INSIGHT.txt (default out/pilot/STORE).")
@click.option("--budget", default=None,
              help="insight1: the equal budget, units per question (default: every stage once with its largest model).")
@click.option("--models", default=None, help="Comma-separated candidate models (default: all).")
@click.option("--max-samples", type=int, default=None, help="The largest sample count of a stage.")
@click.option("--questions", default=None,
              help="all, a split name, or comma-separated ids (default: the training split, else all).")
@click.option("--upstream-samples", default=1, show_default=True, type=int,
              help="insight3: samples of the upstream stage.")
@click.option("--replicates", "-r", default=64, show_default=True, type=int, help="Random draws per question.")
@click.option("--seed", default=0, show_default=True, type=SEED, help="Seed of every draw (0 to 2^63-1).")
def pilot(which, store, out, budget, models, max_samples, questions, upstream_samples, replicates, seed):
    """The AgentTTS paper's pilot figures on a store, with 95% intervals over questions.

    \b
    insight1  per stage, each model's best score at one equal budget (the other stages at their
              largest model with one sample): does the large model win, or a small one sampled more?
    insight2  per stage and model, score against samples; interior optima marked, with the drop
              to the largest count and whether it is beyond noise (paired interval)
    insight3  the downstream stage's best sample count against the upstream model

    \b
    replay pilot insight2 traces/aime24
    replay pilot insight3 traces/sim-2wiki --max-samples 32 --out out/pilot-2wiki

    On a graph store the stages are two-node chains: one solve node alone, and each other role
    (refine, aggregate) reading one solve node; insight3 pairs the solve model with each other
    role. docs/frontier.md.
    """
    from .atomic import atomic_path
    from .clitools import check_budget, check_replicates, open_announced
    from .errors import ConfigError

    check_count("--replicates", replicates)
    check_count("--upstream-samples", upstream_samples)
    if max_samples is not None:
        check_count("--max-samples", max_samples)
    b = check_budget("--budget", budget)
    if b is not None and which != "insight1":
        raise ConfigError("--budget", f"is an option of insight1 (the equal budget), not of {which}")
    files = _out_files(out, "pilot", store, (f"{which}.parquet", f"{which}.png", f"{which}.txt"))
    st = open_announced(store)
    from search.frontier import pilot as P

    if questions is None:
        qsel = "train" if "train" in st.manifest.split else None
    elif questions == "all":
        qsel = None
    elif "," in questions:
        qsel = [q.strip() for q in questions.split(",") if q.strip()]
    else:
        qsel = questions
    n_q = len(st.question_indices(qsel))
    largest = int(st.derived.largest_pool.max())
    check_replicates("--replicates", replicates, questions=n_q, per_pass=largest, configs=largest)
    model_list = [m.strip() for m in models.split(",") if m.strip()] if models else None
    kw = dict(models=model_list, max_samples=max_samples, questions=qsel, replicates=replicates, seed=seed)
    qtext = "all questions" if qsel is None else (f"the {qsel} split" if isinstance(qsel, str) else f"{n_q} questions")
    title = (f"{st.name}{' (SYNTHETIC)' if st.synthetic else ''}: {which}, {n_q} questions ({qtext}) x "
             f"{replicates} replicates, seed {seed}")
    parquet, png, txt = files
    with _table_config():
        if which == "insight1":
            df = P.insight1(st, budget=b, **kw)
            text = (f"{title}\nper stage, each model's best score within {df['budget'][0]:.4g} units per question "
                    f"(other stages at their largest model, one sample); best_at_budget: the stage's best\n\n"
                    + str(df.select("stage", "model", "samples", "max_samples_within", _pct("score"), _pct("ci_lo"),
                                    _pct("ci_hi"), _round("expected_units", 2), "best_at_budget")))
            P.plot_insight1(df, png, title=title)
            table = df
        elif which == "insight2":
            curves, optima = P.insight2(st, **kw)
            text = (f"{title}\nper stage and model, the best sample count (other stages at their largest model, one "
                    "sample); interior: neither the smallest nor the largest count; drop: best - largest count, "
                    "paired 95% interval over questions\n\n"
                    + str(optima.select("stage", "model", "best_samples", _pct("best_score"), "largest_samples",
                                        _pct("largest_score"), "interior", _pct("drop"), _pct("drop_ci_lo"),
                                        _pct("drop_ci_hi"), "beyond_noise")))
            P.plot_insight2(curves, optima, png, title=title)
            import polars as pl

            table = curves.join(optima.select("stage", "model", "best_samples", "interior", "beyond_noise"),
                                on=["stage", "model"]).with_columns(
                is_best=pl.col("samples") == pl.col("best_samples"))
        else:
            df = P.insight3(st, upstream_samples=upstream_samples, **kw)
            text = (f"{title}\nthe downstream stage's best sample count against the upstream model (upstream at "
                    f"{upstream_samples} sample(s); other stages at their largest model, one sample)\n\n"
                    + str(df.select("upstream_stage", "upstream_model", "stage", "model", "best_samples",
                                    _pct("score"), _pct("ci_lo"), _pct("ci_hi"), _pct("score_at_1"))))
            P.plot_insight3(df, png, title=title)
            table = df
    click.echo(text)
    with atomic_path(parquet) as tmp:
        table.write_parquet(tmp)
    with atomic_path(txt) as tmp:
        Path(tmp).write_text(text + "\n", encoding="utf-8")
    click.echo(f"\nscores in percent; wrote {parquet}, {png}, {txt}")


def _pct(col: str):
    import polars as pl

    return (pl.col(col) * 100).round(1).alias(f"{col}%")


def _round(col: str, digits: int):
    import polars as pl

    return pl.col(col).round(digits)


def _table_config():
    import polars as pl

    return pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=250, fmt_str_lengths=80, tbl_hide_dataframe_shape=True,
                     tbl_hide_column_data_types=True)
