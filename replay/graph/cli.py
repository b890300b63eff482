"""What `replay info`, `replay eval`, `replay compare` and `replay sweep` do on a graph store (replay/cli.py
hands over when the store's manifest says `kind: graph`)."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import click

from ..errors import ConfigError


def parse_throughput(text: str | None, models=None) -> dict | None:
    """'MODEL=PREFILL/DECODE,...' (tokens per second) -> {model: (prefill, decode)}.

    Each throughput is a positive, finite number (infinite speed would make every latency 0);
    with `models`, each name must be one of them (a misspelt name would be silently unused)."""
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
        if not (p > 0 and d > 0 and math.isfinite(p) and math.isfinite(d)):
            raise ConfigError("--throughput", f"{part!r}: throughputs must be positive, finite numbers")
        if models is not None and name.strip() not in models:
            raise ConfigError("--throughput", f"{name.strip()!r} is not one of the store's models ({', '.join(models)})")
        out[name.strip()] = (p, d)
    return out


def check_latency_limit(value) -> float | None:
    """--latency-limit: None, or a positive, finite number of seconds (nan, 0 and negatives would
    make every graph silently infeasible)."""
    if value is None:
        return None
    if not (math.isfinite(value) and value > 0):
        raise ConfigError("--latency-limit", f"must be a positive, finite number of seconds per question, got {value}")
    return float(value)


def check_replicates_for(st, graphs, replicates: int, questions) -> None:
    """Replicates bounded by the memory a graph replay needs: per replicate, the per-graph sums
    (one row per parallel chunk) and the memo of shared nodes (a row per pool and count)."""
    import numba
    import numpy as np

    from ..clitools import check_replicates

    d, a = st.derived, st.arrays
    Q = len(st.question_indices(questions))
    per_q = 1.0
    if len(d.pool_stage):  # most pools one question holds for one (role, model)
        counts = np.bincount(d.pool_stage * a.n_models + d.pool_model, minlength=a.n_stages * a.n_models)
        per_q = max(1.0, float(counts.max()) / max(1, a.n_questions))
    samples = sum(n.samples for g in graphs for n in g.nodes)
    check_replicates("--replicates", replicates, questions=Q, per_pass=max(1, math.ceil(per_q * samples)),
                     configs=len(graphs) * (4 * numba.get_num_threads() + 1))


def read_grid(grid) -> list[tuple[int, str]]:
    """(line number, line) of a grid file: one graph per line, '#' comments and blank lines skipped."""
    try:
        with open(grid, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise ConfigError(grid, f"cannot read grid file ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(grid, f"not a UTF-8 text file ({e.reason} at byte {e.start})") from None
    return [(i, line) for i, line in enumerate(lines, 1) if line.strip() and not line.lstrip().startswith("#")]


def graph_text(arg: str) -> str:
    """A graph given on the command line: its text or JSON form, or a file holding either."""
    p = Path(arg)
    if _is_file(arg):
        try:
            return p.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(arg, f"cannot read the graph file ({e})") from None
    return arg


def _is_file(arg: str) -> bool:
    return len(arg) < 4096 and "=" not in arg and "{" not in arg and Path(arg).is_file()


def parse_graph_arg(arg: str, store):
    """A graph from the command line (`graph_text`), checked against the store; an error in a
    graph file names the file."""
    from .config import Graph

    try:
        return Graph.parse(graph_text(arg), store=store)
    except ConfigError as e:
        if not _is_file(arg):
            raise
        raise ConfigError(arg, f"{e.where}: {e.problem}") from None


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
                       f"{f'{kl.min()}..{kl.max()}':>8}{f'{sz.min()}..{sz.max()}':>11}{d.per_question_mean(a.pool_prompt, sel):>8.0f}"
                       f"{d.per_question_mean(d.pool_mean_completion, sel):>11.0f}")
    click.echo("\nprompt and completion: mean tokens per pool and sample, averaged over each question's pools, then "
               "over questions")
    click.echo("A node's pool is keyed by the multiset of its parents' answers; keys that were not "
               "collected fall back (replay reports the rate per node).")


def evaluate(st, configs, *, replicates, seed, questions, budget, latency_limit, throughput, as_json,
             device="cpu") -> None:
    """`replay eval` on a graph store: a table (or JSON lines) with score, tokens and latency."""
    import json

    from .engine import evaluate_graphs

    latency_limit = check_latency_limit(latency_limit)
    speeds = parse_throughput(throughput, st.manifest.model_names)
    graphs = [parse_graph_arg(c, st) for c in configs]
    check_replicates_for(st, graphs, replicates, questions)
    results = evaluate_graphs(st, graphs, questions=questions, replicates=replicates, seed=seed, budget=budget,
                              latency_limit=latency_limit, throughput=speeds, device=device)
    if as_json:
        from ..clitools import json_safe as _json_safe

        for r in results:
            row = r.as_row()
            row.update(ci_level=0.95, ci_method=r.interval().method if r.feasible else None,
                       n_questions=r.n_questions, replicates=r.replicates, seed=r.seed)
            row["graph_json"] = r.graph.to_json()
            row["nodes"] = [n.__dict__ for n in r.nodes]
            # JSON has no NaN: a figure that does not exist (infeasible, unknown throughput) is null
            click.echo(json.dumps(_json_safe(row), allow_nan=False))
        return
    from ..clitools import pct as _pct, uncertainty_legend as _uncertainty_legend

    w = max(len("graph"), *(len(str(r.graph)) for r in results))
    head = (f"{'graph':<{w}}  {'score':>7}  {'±rep':>6}  {'95% CI (questions)':>18}  {'tokens/q':>10}  {'units':>8}  "
            f"{'latency s':>9}  {'fallback':>8}")
    click.echo(head)
    click.echo("-" * len(head))
    for r in results:
        if r.feasible:
            score, err, ci = f"{100 * r.score:7.2f}", f"{100 * r.stderr:6.2f}", f"[{_pct(r.ci_lo)}, {_pct(r.ci_hi)}]"
        else:
            score, err, ci = "infeas.", "", "over a limit"
        click.echo(f"{str(r.graph):<{w}}  {score}  {err:>6}  {ci:>18}  {r.tokens:>10,.0f}  {r.units:>8.2f}  "
                   f"{r.latency:>9.2f}  {r.fallback_rate:>8.1%}")
    n = results[0]
    limits = [f"budget {budget:g} units" for _ in [0] if budget is not None]
    limits += [f"latency limit {latency_limit:g} s" for _ in [0] if latency_limit is not None]
    click.echo(f"\n{n.n_questions} questions x {n.replicates} replicates, seed {n.seed}; scores in percent; "
               "latency = the longest path, samples of a node in parallel" + "".join(f"; {x}" for x in limits))
    click.echo(_uncertainty_legend(results))
    for r in results:
        click.echo(f"{r.graph}:")
        for node in r.nodes:
            click.echo(f"  {node.name:<10} {node.role:<9} {node.model:<16} x{node.samples:<3} score {100 * node.score:5.1f}"
                       f"  {node.tokens:>8,.0f} tok  {node.latency:>6.2f} s  fallback {node.fallback_rate:.1%}")



def compare(st, configs, *, replicates, seed, questions, budget, as_json) -> None:
    """`replay compare` on a graph store: each graph against the first, paired question by
    question (common random numbers), with the 95% interval of the difference."""
    import json

    from ..clitools import compare_cells, diff_json, json_safe as _json_safe, uncertainty_legend as _uncertainty_legend
    from .engine import evaluate_graphs

    graphs = [parse_graph_arg(c, st) for c in configs]
    results = evaluate_graphs(st, graphs, questions=questions, replicates=replicates, seed=seed, budget=budget)
    base = results[0]
    diffs = [None] + [r.difference(base) if (r.feasible and base.feasible) else None for r in results[1:]]
    if as_json:
        for r, d in zip(results, diffs):
            row = r.as_row()
            row.update(ci_level=0.95, ci_method=r.interval().method if r.feasible else None,
                       n_questions=r.n_questions, replicates=r.replicates, seed=r.seed)
            row["diff"] = diff_json(d, str(base.graph))
            click.echo(json.dumps(_json_safe(row), allow_nan=False))
        return
    w = max(len("graph"), *(len(str(r.graph)) for r in results))
    head = (f"{'graph':<{w}}  {'score':>7}  {'±rep':>6}  {'95% CI (questions)':>18}  {'units':>8}  {'latency s':>9}  "
            f"{'diff vs first':>13}  {'95% CI of diff':>16}  beyond noise")
    click.echo(head)
    click.echo("-" * len(head))
    for r, d in zip(results, diffs):
        score, err, ci, dd, dci, beyond = compare_cells(r, base, d)
        click.echo(f"{str(r.graph):<{w}}  {score}  {err:>6}  {ci:>18}  {r.units:>8.2f}  {r.latency:>9.2f}  {dd:>13}  "
                   f"{dci:>16}  {beyond}")
    click.echo(f"\n{base.n_questions} questions x {base.replicates} replicates, seed {base.seed}, shared by every "
               "graph (common random numbers); scores and differences in percent points")
    click.echo(_uncertainty_legend(results))
    click.echo("diff vs first: the mean over questions of (this - first), paired question by question, with its "
               "95% interval; beyond noise: the interval excludes 0")

def sweep(st, *, out, grid, budget, replicates, seed, questions, throughput, models=None, max_samples=None,
          device="cpu") -> None:
    """`replay sweep --grid FILE` on a graph store: every graph of the file, one Parquet row each."""
    import polars as pl
    from tqdm import tqdm

    from ..atomic import atomic_path
    from .config import Graph
    from .engine import evaluate_graphs

    if not grid:
        raise ConfigError("sweep", f"store {st.name!r} is a graph store: its graphs cannot be enumerated here; "
                                   "give --grid FILE (one graph per line, text or JSON form)")
    for flag, v in (("--models", models), ("--max-samples", max_samples)):
        if v is not None:  # they narrow an enumerated space; a graph grid is given whole
            raise ConfigError(flag, f"does not apply to a graph store ({st.name!r}): its graphs come from --grid")
    speeds = parse_throughput(throughput, st.manifest.model_names)
    graphs = []
    for i, line in read_grid(grid):
        try:
            graphs.append(Graph.parse(line, store=st))
        except ConfigError as e:
            raise ConfigError(f"{grid}: line {i}", f"{e.where}: {e.problem}") from None
    if not graphs:
        raise ConfigError(grid, "no graphs in the grid file")
    check_replicates_for(st, graphs, replicates, questions)
    t0 = time.perf_counter()
    with tqdm(total=len(graphs), unit="graph", desc="sweep", disable=None, file=sys.stderr) as bar:
        results = evaluate_graphs(st, graphs, questions=questions, replicates=replicates, seed=seed, budget=budget,
                                  throughput=speeds, progress=bar.update, device=device)
    dt = time.perf_counter() - t0
    df = pl.DataFrame([r.as_row() for r in results])
    with atomic_path(out) as tmp:
        df.write_parquet(tmp)
    click.echo(f"{len(df):,} graphs x {results[0].n_questions} questions x {replicates} replicates in {dt:.2f} s -> {out}")
    feas = df.filter(pl.col("feasible"))
    if len(feas):
        best = feas.sort(["score", "units"], descending=[True, False]).row(0, named=True)
        click.echo(f"best feasible: {best['graph']}  score {100 * best['score']:.2f} ±rep {100 * best['stderr']:.2f}, "
                   f"95% CI over questions [{100 * best['ci_lo']:.2f}, {100 * best['ci_hi']:.2f}]  "
                   f"{best['units']:.2f} units  {best['latency']:.2f} s")
    else:
        click.echo("no graph within the budget")
