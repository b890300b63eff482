"""What `replay info`, `replay eval` and `replay sweep` do on a graph store (replay/cli.py
hands over when the store's manifest says `kind: graph`)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from ..errors import ConfigError


def parse_throughput(text: str | None) -> dict | None:
    """'MODEL=PREFILL/DECODE,...' (tokens per second) -> {model: (prefill, decode)}."""
    if not text:
        return None
    out = {}
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        name, _, speeds = part.partition("=")
        pre, _, dec = speeds.partition("/")
        try:
            p, d = float(pre), float(dec)
        except ValueError:
            raise ConfigError("--throughput", f"{part!r} is not MODEL=PREFILL/DECODE (tokens per second)") from None
        if not (p > 0 and d > 0):
            raise ConfigError("--throughput", f"{part!r}: throughputs must be positive")
        out[name.strip()] = (p, d)
    return out


def graph_text(arg: str) -> str:
    """A graph given on the command line: its text or JSON form, or a file holding either."""
    p = Path(arg)
    if len(arg) < 4096 and "=" not in arg and "{" not in arg and p.is_file():
        try:
            return p.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(arg, f"cannot read the graph file ({e})") from None
    return arg


def info(st) -> None:
    """Roles, models (with throughputs), pools and input keys of a graph store."""
    a, d, m = st.arrays, st.derived, st.manifest
    kind = "SYNTHETIC (simulated)" if m.synthetic else "real (collected from models)"
    click.echo(f"store      {m.name}  [{kind}]  graph store, format v{m.format_version}  at {st.path}")
    splits = st.questions.group_by("split").len().sort("split")
    click.echo(f"questions  {a.n_questions}  (" + ", ".join(f"{r['split']} {r['len']}" for r in splits.iter_rows(named=True)) + ")")
    click.echo(f"budget     1 unit = {d.budget_unit:.4g} FLOPs (one single-sample pass of the smallest model on the cheapest role)")
    click.echo("models     " + ", ".join(
        f"{x.name} ({x.params / 1e9:g}B" + (f", {x.prefill_tokens_per_s:g}/{x.decode_tokens_per_s:g} tok/s"
                                              if x.prefill_tokens_per_s and x.decode_tokens_per_s else ", throughput unknown")
        + ")" for x in m.models))
    if any(not (x.prefill_tokens_per_s and x.decode_tokens_per_s) for x in m.models):
        click.echo("latency    NaN for graphs using a model without throughputs (give --throughput to replay eval)")
    click.echo("")
    header = f"{'role':<11}{'aggregation':<15}{'model':<18}{'pools':>7}{'keys/q':>8}{'inputs':>8}{'pool size':>11}{'prompt':>8}{'completion':>11}"
    click.echo(header)
    click.echo("-" * len(header))
    from .inputs import graph_inputs

    G = graph_inputs(st)
    key_len = (G.pool_key_off[1:] - G.pool_key_off[:-1])
    for si, role in enumerate(m.stages):
        for mi, model in enumerate(m.model_names):
            if not a.stage_model_ok[si, mi]:
                continue
            sel = (d.pool_stage == si) & (d.pool_model == mi)
            sz = d.pool_sizes[sel]
            kl = key_len[sel]
            click.echo(f"{role.name:<11}{role.aggregation:<15}{model:<18}{int(sel.sum()):>7}{sel.sum() / a.n_questions:>8.1f}"
                       f"{f'{kl.min()}..{kl.max()}':>8}{f'{sz.min()}..{sz.max()}':>11}{a.pool_prompt[sel].mean():>8.0f}"
                       f"{d.pool_mean_completion[sel].mean():>11.0f}")
    click.echo("\nA node's pool is keyed by the multiset of its parents' answers; keys that were not "
               "collected fall back (replay reports the rate per node).")


def evaluate(st, configs, *, replicates, seed, questions, budget, latency_limit, throughput, as_json) -> None:
    """`replay eval` on a graph store: a table (or JSON lines) with score, tokens and latency."""
    import json

    from .config import Graph
    from .engine import evaluate_graphs

    graphs = [Graph.parse(graph_text(c), store=st) for c in configs]
    results = evaluate_graphs(st, graphs, questions=questions, replicates=replicates, seed=seed, budget=budget,
                              latency_limit=latency_limit, throughput=parse_throughput(throughput))
    if as_json:
        for r in results:
            row = r.as_row()
            row["graph_json"] = r.graph.to_json()
            row["nodes"] = [n.__dict__ for n in r.nodes]
            click.echo(json.dumps(row))
        return
    w = max(len("graph"), *(len(str(r.graph)) for r in results))
    head = (f"{'graph':<{w}}  {'score':>7}  {'stderr':>7}  {'tokens/q':>10}  {'units':>8}  {'latency s':>9}  "
            f"{'fallback':>8}")
    click.echo(head)
    click.echo("-" * len(head))
    for r in results:
        score = f"{100 * r.score:7.2f}" if r.feasible else "  infea"
        err = f"{100 * r.stderr:7.2f}" if r.feasible else "sible  "
        click.echo(f"{str(r.graph):<{w}}  {score}  {err}  {r.tokens:>10,.0f}  {r.units:>8.2f}  {r.latency:>9.2f}  "
                   f"{r.fallback_rate:>8.1%}")
    n = results[0]
    limits = [f"budget {budget:g} units" for _ in [0] if budget is not None]
    limits += [f"latency limit {latency_limit:g} s" for _ in [0] if latency_limit is not None]
    click.echo(f"\n{n.n_questions} questions x {n.replicates} replicates, seed {n.seed}; scores in percent; "
               "latency = the longest path, samples of a node in parallel" + "".join(f"; {x}" for x in limits))
    for r in results:
        click.echo(f"{r.graph}:")
        for node in r.nodes:
            click.echo(f"  {node.name:<10} {node.role:<9} {node.model:<16} x{node.samples:<3} score {100 * node.score:5.1f}"
                       f"  {node.tokens:>8,.0f} tok  {node.latency:>6.2f} s  fallback {node.fallback_rate:.1%}")


def sweep(st, *, out, grid, budget, replicates, seed, questions, throughput) -> None:
    """`replay sweep --grid FILE` on a graph store: every graph of the file, one Parquet row each."""
    import polars as pl
    from tqdm import tqdm

    from ..atomic import atomic_path
    from .config import Graph
    from .engine import evaluate_graphs

    if not grid:
        raise ConfigError("sweep", f"store {st.name!r} is a graph store: its graphs cannot be enumerated here; "
                                   "give --grid FILE (one graph per line, text or JSON form)")
    try:
        lines = Path(grid).read_text().splitlines()
    except OSError as e:
        raise ConfigError(grid, f"cannot read grid file ({e.strerror})") from None
    graphs = [Graph.parse(line, store=st) for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not graphs:
        raise ConfigError(grid, "no graphs in the grid file")
    t0 = time.perf_counter()
    with tqdm(total=len(graphs), unit="graph", desc="sweep", disable=None, file=sys.stderr) as bar:
        results = evaluate_graphs(st, graphs, questions=questions, replicates=replicates, seed=seed, budget=budget,
                                  throughput=parse_throughput(throughput), progress=bar.update)
    dt = time.perf_counter() - t0
    df = pl.DataFrame([r.as_row() for r in results])
    with atomic_path(out) as tmp:
        df.write_parquet(tmp)
    click.echo(f"{len(df):,} graphs x {results[0].n_questions} questions x {replicates} replicates in {dt:.2f} s -> {out}")
    feas = df.filter(pl.col("feasible"))
    if len(feas):
        best = feas.sort(["score", "units"], descending=[True, False]).row(0, named=True)
        click.echo(f"best feasible: {best['graph']}  score {100 * best['score']:.2f} ± {100 * best['stderr']:.2f}  "
                   f"{best['units']:.2f} units  {best['latency']:.2f} s")
    else:
        click.echo("no graph within the budget")
