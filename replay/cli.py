"""The `replay` command: inspect a store, evaluate configurations, sweep, plot.

Numba, polars and matplotlib are imported inside the commands, so `replay --help` is instant.
"""

from __future__ import annotations

import sys

import click

from .atomic import atomic_path
from .clitools import main_wrapper, open_announced
from .controllers.cli import frontier
from .sandbox.cli import sandbox

CTX = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CTX)
def cli():
    """Evaluate any allocation (a model and a sample count per stage) on stored outputs,
    with no LLM calls.

    \b
    replay info traces/aime24
    replay eval traces/aime24 --config Qwen3-8B:8 --config Qwen3-0.6B:64
    replay sweep traces/aime24 --out sweep.parquet
    replay curve traces/aime24 --out curve.png

    A config is MODEL:SAMPLES per stage, comma-separated in stage order
    ('Llama-70B:1,Llama-3B:16'), or with stage names ('retrieve=Llama-70B:1,answer=Llama-3B:16').
    On a graph store (kind graph) a config is a collaboration graph:
    's1=solve(M,4); s2=solve(N,4); r=refine(M,1|s1,s2)', its JSON form, or a file holding either.
    Bad input exits with status 2 and one line on stderr.
    """


def _questions_option(f):
    return click.option(
        "--questions", default="all", show_default=True,
        help="Which questions: 'all', a split name ('train', 'test'), or comma-separated ids ('id1,id2' or 'id1,').",
    )(f)


def _parse_questions(text: str):
    """'all' -> every question; a name without commas -> that split; else comma-separated ids."""
    if text in ("all", None):
        return None
    if "," in text:
        return [t.strip() for t in text.split(",") if t.strip()]
    return text


@cli.command()
@click.argument("store", type=click.Path())
def info(store):
    """Stages, models, questions, pool sizes, token statistics, and whether it is synthetic."""
    from .engine import budget_unit

    st = open_announced(store)
    if st.manifest.kind == "graph":
        from .graph import cli as graph_cli

        return graph_cli.info(st)
    a = st.arrays
    m = st.manifest
    kind = "SYNTHETIC (simulated)" if m.synthetic else "real (collected from models)"
    click.echo(f"store      {m.name}  [{kind}]  format v{m.format_version}  at {st.path}")
    src = m.provenance.get("source") or m.provenance.get("spec", {}).get("preset") if isinstance(m.provenance, dict) else None
    if src:
        click.echo(f"source     {src}")
    splits = st.questions.group_by("split").len().sort("split")
    click.echo(f"questions  {a.n_questions}  (" + ", ".join(f"{r['split']} {r['len']}" for r in splits.iter_rows(named=True)) + ")")
    if m.probe_interval:
        click.echo(f"probes     every {m.probe_interval} tokens")
    click.echo(f"budget     1 unit = {budget_unit(st):.4g} FLOPs (one single-sample pass of the smallest model on the cheapest stage)")
    click.echo("models     " + ", ".join(f"{x.name} ({x.params / 1e9:g}B)" for x in m.models))
    click.echo("")
    d = st.derived
    sizes, mean_comp = d.pool_sizes, d.pool_mean_completion
    header = f"{'stage':<14}{'aggregation':<15}{'model':<18}{'pools':>7}{'ctx/q':>7}{'pool size':>15}{'prompt':>9}{'completion':>12}"
    click.echo(header)
    click.echo("-" * len(header))
    for si, stage in enumerate(m.stages):
        for mi, model in enumerate(m.model_names):
            if not a.stage_model_ok[si, mi]:
                continue
            sel = (d.pool_stage == si) & (d.pool_model == mi)
            sz = sizes[sel]
            click.echo(
                f"{stage.name:<14}{stage.aggregation:<15}{model:<18}{int(sel.sum()):>7}{sel.sum() / a.n_questions:>7.1f}"
                f"{f'{sz.min()}..{sz.max()}':>15}{a.pool_prompt[sel].mean():>9.0f}{mean_comp[sel].mean():>12.0f}"
            )
    n_fus = len(a.fus_size)
    if n_fus:
        click.echo(f"\nstored fusions: {n_fus} (subset sizes {', '.join(map(str, sorted(set(a.fus_size.tolist()))))})")


@cli.command("eval")
@click.argument("store", type=click.Path())
@click.option("--config", "-c", "configs", multiple=True, required=True, help="MODEL:SAMPLES per stage (repeatable).")
@click.option("--replicates", "-r", default=1000, show_default=True, help="Random draws per question.")
@click.option("--seed", default=0, show_default=True)
@_questions_option
@click.option("--budget", type=float, default=None, help="Budget in normalised units; over it is infeasible.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per config instead of a table.")
@click.option("--latency-limit", type=float, default=None,
              help="Graph stores: seconds per question; a graph slower on average is infeasible.")
@click.option("--throughput", default=None,
              help="Graph stores: MODEL=PREFILL/DECODE tokens per second, comma-separated, over the manifest's.")
def eval_cmd(store, configs, replicates, seed, questions, budget, as_json, latency_limit, throughput):
    """Score one or more configurations: mean score, stderr over replicates, cost (and, for a
    graph, latency)."""
    import json

    from .engine import Config, evaluate_batch

    st = open_announced(store)
    if st.manifest.kind == "graph":
        from .graph import cli as graph_cli

        return graph_cli.evaluate(st, configs, replicates=replicates, seed=seed, questions=_parse_questions(questions),
                                  budget=budget, latency_limit=latency_limit, throughput=throughput, as_json=as_json)
    if latency_limit is not None or throughput is not None:
        from .errors import ConfigError

        raise ConfigError("--latency-limit/--throughput", f"store {st.name!r} is a chain store; latency is for graph stores")
    cfgs = [Config.parse(c, store=st) for c in configs]
    results = evaluate_batch(st, cfgs, questions=_parse_questions(questions), replicates=replicates, seed=seed,
                             budget=budget)
    if as_json:
        for r in results:
            row = r.as_row()
            row["stages"] = [s.__dict__ for s in r.stages]
            click.echo(json.dumps(row))
        return
    w = max(len("config"), *(len(str(r.config)) for r in results))
    head = f"{'config':<{w}}  {'score':>7}  {'stderr':>7}  {'tokens/q':>11}  {'TFLOPs/q':>9}  {'units':>8}  {'fallback':>8}"
    click.echo(head)
    click.echo("-" * len(head))
    for r in results:
        score = f"{100 * r.score:7.2f}" if r.feasible else "  infea"
        err = f"{100 * r.stderr:7.2f}" if r.feasible else "sible  "
        click.echo(f"{str(r.config):<{w}}  {score}  {err}  {r.tokens:>11,.0f}  {r.flops / 1e12:>9.2f}  {r.units:>8.2f}  {r.fallback_rate:>8.1%}")
    n = results[0]
    click.echo(f"\n{n.n_questions} questions x {n.replicates} replicates, seed {n.seed}; scores in percent"
               + (f"; budget {budget:g} units" if budget is not None else ""))
    if len(st.stages) > 1:
        for r in results:
            click.echo(f"{r.config}: " + "; ".join(
                f"{s.stage} {100 * s.score:.1f} ({s.tokens:,.0f} tok, fallback {s.fallback_rate:.1%})" for s in r.stages))


def _space_configs(st, models, max_samples, grid):
    """Every configuration of the store's space (narrowed), or the configs of a grid file."""
    import itertools

    from .engine import Config, StageChoice, largest_pool
    from .errors import ConfigError

    if grid:
        try:
            lines = open(grid).read().splitlines()
        except OSError as e:
            raise ConfigError(grid, f"cannot read grid file ({e.strerror})") from None
        return [Config.parse(line, store=st) for line in lines if line.strip() and not line.startswith("#")]
    names = st.manifest.model_names
    chosen = [x.strip() for x in models.split(",")] if models else None
    if chosen:
        bad = [x for x in chosen if x not in names]
        if bad:
            raise ConfigError("--models", f"unknown model {bad[0]!r} (models: {', '.join(names)})")
    largest = largest_pool(st)
    per_stage = []
    for si in range(len(st.stages)):
        opts = []
        for mname in st.candidate_models(si):
            if chosen and mname not in chosen:
                continue
            top = int(largest[si, st.model_index(mname)])
            if max_samples:
                top = min(top, max_samples)
            counts = st.fusion_sizes(si) or range(1, top + 1)
            opts += [StageChoice(mname, n) for n in counts if n <= top]
        if not opts:
            raise ConfigError("--models", f"no candidate model left for stage {st.stages[si].name!r}")
        per_stage.append(opts)
    total = 1
    for o in per_stage:
        total *= len(o)
    if total > 5_000_000:
        raise ConfigError("sweep", f"{total:,} configurations: narrow with --models / --max-samples or give --grid")
    return [Config(tuple(c)) for c in itertools.product(*per_stage)]


@cli.command()
@click.argument("store", type=click.Path())
@click.option("--out", required=True, type=click.Path(), help="Parquet file to write (atomically).")
@click.option("--budget", type=float, default=None, help="Budget in units; configs over it are marked infeasible.")
@click.option("--models", default=None, help="Comma-separated models to include (default: all).")
@click.option("--max-samples", type=int, default=None, help="Largest sample count per stage.")
@click.option("--grid", type=click.Path(), default=None,
              help="File of configs, one per line, instead of the full space (graph stores: graphs, required).")
@click.option("--replicates", "-r", default=100, show_default=True)
@click.option("--seed", default=0, show_default=True)
@_questions_option
@click.option("--throughput", default=None, help="Graph stores: MODEL=PREFILL/DECODE tokens per second.")
def sweep(store, out, budget, models, max_samples, grid, replicates, seed, questions, throughput):
    """Evaluate every configuration of the space (or a grid) and write a Parquet table."""
    import time

    import polars as pl
    from tqdm import tqdm

    from .engine import evaluate_batch

    st = open_announced(store)
    if st.manifest.kind == "graph":
        from .graph import cli as graph_cli

        return graph_cli.sweep(st, out=out, grid=grid, budget=budget, replicates=replicates, seed=seed,
                               questions=_parse_questions(questions), throughput=throughput)
    cfgs = _space_configs(st, models, max_samples, grid)
    t0 = time.perf_counter()
    with tqdm(total=len(cfgs), unit="cfg", desc="sweep", disable=None, file=sys.stderr) as bar:
        results = evaluate_batch(st, cfgs, questions=_parse_questions(questions), replicates=replicates, seed=seed,
                                 budget=budget, progress=bar.update)
    dt = time.perf_counter() - t0
    df = pl.DataFrame([r.as_row() for r in results])
    with atomic_path(out) as tmp:
        df.write_parquet(tmp)
    feas = df.filter(pl.col("feasible"))
    click.echo(f"{len(df):,} configurations x {results[0].n_questions} questions x {replicates} replicates in {dt:.2f} s -> {out}")
    if len(feas):
        best = feas.sort(["score", "units"], descending=[True, False]).row(0, named=True)
        click.echo(f"best feasible: {best['config']}  score {100 * best['score']:.2f} ± {100 * best['stderr']:.2f}  "
                   f"{best['units']:.2f} units  {best['tokens']:,.0f} tokens/question")
    else:
        click.echo("no configuration within the budget")


@cli.command()
@click.argument("store", type=click.Path())
@click.option("--out", required=True, type=click.Path(), help="PNG file to write.")
@click.option("--max-samples", type=int, default=None, help="Largest sample count to plot (default: pool size).")
@click.option("--replicates", "-r", default=200, show_default=True)
@click.option("--seed", default=0, show_default=True)
@_questions_option
def curve(store, out, max_samples, replicates, seed, questions):
    """Score against sample count per model and stage, error bars, tokens on a second panel.

    For a multi-stage store, stage i's curve varies stage i while every other stage runs its
    largest model with one sample (the insight-1 probe of AgentTTS)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from .engine import Config, StageChoice, evaluate_batch, largest_pool

    st = open_announced(store)
    if st.manifest.kind == "graph":
        from .errors import ConfigError

        raise ConfigError(store, "replay curve plots chain stores; for a graph store use replay eval or replay sweep --grid")
    n_s = len(st.stages)
    largest = largest_pool(st)
    fixed = [max(st.candidate_models(s), key=lambda m: st.models[st.model_index(m)].params) for s in range(n_s)]
    fig, axes = plt.subplots(2, n_s, figsize=(max(7.0, 5.5 * n_s), 7), squeeze=False, sharex="col")
    for s, stage in enumerate(st.stages):
        ax_score, ax_cost = axes[0, s], axes[1, s]
        for mname in st.candidate_models(s):
            top = int(largest[s, st.model_index(mname)])
            if max_samples:
                top = min(top, max_samples)
            counts = [n for n in (st.fusion_sizes(s) or range(1, top + 1)) if n <= top]
            cfgs = []
            for n in counts:
                ch = [StageChoice(fixed[k], 1) for k in range(n_s)]
                ch[s] = StageChoice(mname, n)
                cfgs.append(Config(tuple(ch)))
            rs = evaluate_batch(st, cfgs, questions=_parse_questions(questions), replicates=replicates, seed=seed)
            y = np.array([100 * r.score for r in rs])
            e = np.array([100 * r.stderr for r in rs])
            ax_score.plot(counts, y, label=mname)
            ax_score.fill_between(counts, y - 2 * e, y + 2 * e, alpha=0.2)
            ax_cost.plot(counts, [r.tokens for r in rs], label=mname)
        ax_score.set_title(f"stage {stage.name} ({stage.aggregation})" + (" - SYNTHETIC" if st.synthetic else ""))
        ax_score.set_ylabel("score (%), band = ±2 stderr")
        ax_cost.set_ylabel("tokens per question (all stages)")
        ax_cost.set_xlabel(f"samples at stage {stage.name}")
        for ax in (ax_score, ax_cost):
            ax.set_xscale("log", base=2)
            ax.grid(alpha=0.3)
        ax_cost.set_yscale("log")
        ax_score.legend(fontsize=8)
    fig.suptitle(f"{st.name}: score and cost against sample count ({replicates} replicates, seed {seed})", fontsize=10)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    click.echo(f"wrote {out}")


# `replay frontier` (width-depth controllers) lives with the controllers.
cli.add_command(frontier)
# `replay sandbox` (what the sandbox for untrusted programs guarantees here) lives with the sandbox.
cli.add_command(sandbox)


def main(argv=None):
    main_wrapper(cli, argv)


if __name__ == "__main__":
    main()
