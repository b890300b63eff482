"""The `replay` command: inspect a store, evaluate configurations, sweep, plot.

Numba, polars and matplotlib are imported inside the commands, so `replay --help` is instant.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .atomic import atomic_path
from .clitools import (SEED, check_budget, check_count, check_output_file, check_replicates, compare_cells, diff_json,
                       json_safe, main_wrapper, open_announced, pct, uncertainty_legend)
from .frontier_cli import frontier, pilot
from .sandbox.cli import sandbox
from .spec.cli import export

CTX = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CTX)
def cli():
    """Evaluate any allocation (a model and a sample count per stage) on stored outputs,
    with no LLM calls.

    \b
    replay info traces/aime24
    replay eval traces/aime24 --config Qwen3-8B:8 --config Qwen3-0.6B:64
    replay compare traces/aime24 Qwen3-8B:8 Qwen3-8B:64 Qwen3-4B:16
    replay sweep traces/aime24 --out sweep.parquet
    replay curve traces/aime24 --out curve.png
    replay export traces/aime24 -c Qwen3-8B:8 --out out/spec.json     (a pipeline spec: docs/spec-format.md)

    A config is MODEL:SAMPLES per stage, comma-separated in stage order
    ('Llama-70B:1,Llama-3B:16'), or with stage names ('retrieve=Llama-70B:1,answer=Llama-3B:16').
    On a graph store (kind graph) a config is a collaboration graph:
    's1=solve(M,4); s2=solve(N,4); r=refine(M,1|s1,s2)', its JSON form, or a file holding either.
    Bad input exits with status 2 and one line on stderr.
    """


def _device_option(f):
    """--device for the commands whose replay can run on a GPU (replay/gpu)."""
    return click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default="cpu", show_default=True,
                        help="Where replay runs (chains and graphs): cpu, cuda (a GPU: the gpu-replay extra; the same numbers) "
                             "or auto (the GPU when present and the work is large).")(f)


def _check_device(device):
    """--device cuda without a usable GPU: one line naming --device, before any work."""
    if device == "cuda":
        from .gpu import resolve_device

        resolve_device(device, where="--device")


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
        ids = [t.strip() for t in text.split(",") if t.strip()]
        _no_repeats(ids)
        return ids
    return text


def _no_repeats(ids) -> None:
    """A question listed twice would be counted twice: refused, naming the option."""
    from .errors import ConfigError

    seen = set()
    for q in ids:
        if q in seen:
            raise ConfigError("--questions", f"question {q!r} is listed twice (it would be counted twice)")
        seen.add(q)


@cli.command(short_help="Stages, models, questions, pool sizes and tokens of a store.")
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
    spec = m.provenance.get("spec")  # free-form: a simulated store's spec is a mapping, others may be anything
    src = m.provenance.get("source") or (spec.get("preset") if isinstance(spec, dict) else None)
    if src:
        click.echo(f"source     {src}")
    splits = st.questions.group_by("split").len().sort("split")
    click.echo(f"questions  {a.n_questions}  (" + ", ".join(f"{r['split']} {r['len']}" for r in splits.iter_rows(named=True)) + ")")
    if m.probe_interval:
        click.echo(f"probes     every {m.probe_interval} tokens")
    click.echo("checksums  " + ("verified (every table and the manifest)" if st.sealed else
                                "none: written before checksums, corruption cannot be detected (replay seal adds them)"))
    click.echo(f"budget     1 unit = {budget_unit(st):.4g} FLOPs (one single-sample pass of the smallest model on the cheapest stage, averaged over questions)")
    if len(m.stages) > 1:
        click.echo(f"score      end to end: {_RULE_TEXT[m.score_rule]} (score_rule {m.score_rule!r})")
    click.echo("models     " + ", ".join(f"{x.name} ({x.params / 1e9:g}B)" for x in m.models))
    click.echo("")
    d = st.derived
    sizes, mean_comp = d.pool_sizes, d.pool_mean_completion
    header = (f"{'stage':<14}{'aggregation':<15}{'upstream':<13}{'model':<18}{'pools':>7}{'ctx/q':>7}{'pool size':>15}"
              f"{'prompt':>9}{'completion':>12}")
    click.echo(header)
    click.echo("-" * len(header))
    for si, stage in enumerate(m.stages):
        upstream = "-" if si == 0 else stage.dependency
        for mi, model in enumerate(m.model_names):
            if not a.stage_model_ok[si, mi]:
                continue
            sel = (d.pool_stage == si) & (d.pool_model == mi)
            sz = sizes[sel]
            # tokens averaged over each question's pools, then over questions (as the budget unit)
            click.echo(
                f"{stage.name:<14}{stage.aggregation:<15}{upstream:<13}{model:<18}{int(sel.sum()):>7}"
                f"{sel.sum() / a.n_questions:>7.1f}{f'{sz.min()}..{sz.max()}':>15}"
                f"{d.per_question_mean(a.pool_prompt, sel):>9.0f}{d.per_question_mean(mean_comp, sel):>12.0f}"
            )
    click.echo("\nprompt and completion: mean tokens per pool and sample, averaged over each question's pools, then over questions")
    n_fus = len(a.fus_size)
    if n_fus:
        click.echo(f"\nstored fusions: {n_fus} (subset sizes {', '.join(map(str, sorted(set(a.fus_size.tolist()))))})")


_RULE_TEXT = {
    "last": "the last stage's score",
    "all": "1 if every stage is right (scores 1), else 0",
    "product": "the product of the stage scores",
    "mean": "the mean of the stage scores",
}


def _result_json(r) -> dict:
    """One configuration's result as JSON: as_row, the interval's level and method, and stages."""
    row = r.as_row()
    row.update(ci_level=0.95, ci_method=r.interval().method if r.feasible else None, score_rule=r.score_rule,
               n_questions=r.n_questions, replicates=r.replicates, seed=r.seed)
    row["stages"] = [s.__dict__ for s in r.stages]
    return row


def _stage_lines(st, results) -> list[str]:
    """Per-stage figures: each stage's own score (not cumulative), tokens, fallback."""
    lines = [f"per stage: each stage's own aggregated output scored against its own gold (not cumulative); "
             f"end to end: {_RULE_TEXT[st.manifest.score_rule]}"]
    for r in results:
        lines.append(f"{r.config}: " + "; ".join(
            f"{s.stage} {100 * s.score:.1f} ({s.tokens:,.0f} tok, "
            + ("independent" if st.stages[i].independent and s.fallback_rate == 0 else f"fallback {s.fallback_rate:.1%}")
            + ")" for i, s in enumerate(r.stages)))
    return lines


@cli.command("eval", short_help="Score configurations, with their uncertainty and cost.")
@click.argument("store", type=click.Path())
@click.option("--config", "-c", "configs", multiple=True, required=True,
              help="MODEL:SAMPLES per stage, or a graph on a graph store (repeatable).")
@click.option("--replicates", "-r", default=1000, show_default=True, help="Random draws per question.")
@click.option("--seed", default=0, show_default=True, type=SEED, help="Seed of every draw (0 to 2^63-1).")
@_questions_option
@click.option("--budget", default=None, help="Budget in normalised units; over it is infeasible.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per config instead of a table.")
@click.option("--latency-limit", type=float, default=None,
              help="Graph stores: seconds per question; a graph slower on average is infeasible.")
@click.option("--throughput", default=None,
              help="Graph stores: MODEL=PREFILL/DECODE tokens per second, comma-separated, over the manifest's.")
@_device_option
def eval_cmd(store, configs, replicates, seed, questions, budget, as_json, latency_limit, throughput, device):
    """Score one or more configurations: mean score, with its replicate error and its 95%
    interval over questions, and cost (and, for a
    graph, latency).

    The replicate error (±rep) says how well the replay pinned the score down on these
    questions; the interval over questions says what it may be on new ones (much wider on a few
    questions). JSON fields: score, stderr (the replicate error), ci_lo and ci_hi (the 95%
    interval over questions), ci_level, ci_method, tokens, flops, units, fallback_rate, per-stage
    figures."""
    import json

    from .engine import Config, evaluate_batch

    budget = check_budget("--budget", budget)
    check_count("--replicates", replicates)
    _check_device(device)
    st = open_announced(store)
    if st.manifest.kind == "graph":
        from .graph import cli as graph_cli

        return graph_cli.evaluate(st, configs, replicates=replicates, seed=seed, questions=_parse_questions(questions),
                                  budget=budget, latency_limit=latency_limit, throughput=throughput, as_json=as_json,
                                  device=device)
    if latency_limit is not None or throughput is not None:
        from .errors import ConfigError

        raise ConfigError("--latency-limit/--throughput", f"store {st.name!r} is a chain store; latency is for graph stores")
    cfgs = [Config.parse(c, store=st) for c in configs]
    qsel = _parse_questions(questions)
    check_replicates("--replicates", replicates, questions=len(st.question_indices(qsel)),
                     per_pass=_largest_pass(cfgs), configs=len(cfgs))
    results = evaluate_batch(st, cfgs, questions=qsel, replicates=replicates, seed=seed, budget=budget,
                             device=device)
    if as_json:
        for r in results:
            # JSON has no NaN: a score that does not exist (infeasible, one replicate) is null
            click.echo(json.dumps(json_safe(_result_json(r)), allow_nan=False))
        return
    w = max(len("config"), *(len(str(r.config)) for r in results))
    head = (f"{'config':<{w}}  {'score':>7}  {'±rep':>6}  {'95% CI (questions)':>18}  {'tokens/q':>11}  {'TFLOPs/q':>9}  "
            f"{'units':>8}  {'fallback':>8}")
    click.echo(head)
    click.echo("-" * len(head))
    for r in results:
        if r.feasible:
            score, err, ci = f"{100 * r.score:7.2f}", f"{100 * r.stderr:6.2f}", f"[{pct(r.ci_lo)}, {pct(r.ci_hi)}]"
        else:
            score, err, ci = "infeas.", "", "over the budget"
        click.echo(f"{str(r.config):<{w}}  {score}  {err:>6}  {ci:>18}  {r.tokens:>11,.0f}  {r.flops / 1e12:>9.2f}  "
                   f"{r.units:>8.2f}  {r.fallback_rate:>8.1%}")
    n = results[0]
    click.echo(f"\n{n.n_questions} questions x {n.replicates} replicates, seed {n.seed}; scores in percent"
               + (f"; budget {budget:g} units" if budget is not None else ""))
    click.echo(uncertainty_legend(results))
    if len(st.stages) > 1:
        for line in _stage_lines(st, results):
            click.echo(line)


@cli.command("compare", short_help="Paired differences of configurations against the first.")
@click.argument("store", type=click.Path())
@click.argument("configs", nargs=-1, required=True)
@click.option("--replicates", "-r", default=1000, show_default=True, help="Random draws per question.")
@click.option("--seed", default=0, show_default=True, type=SEED, help="Seed of every draw (0 to 2^63-1).")
@_questions_option
@click.option("--budget", default=None, help="Budget in normalised units; over it is infeasible.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per config instead of a table.")
def compare_cmd(store, configs, replicates, seed, questions, budget, as_json):
    """Paired differences: each configuration against the first, on the same questions, seed
    and replicates (common random numbers), with the 95% interval of the difference over
    questions.

    The shared draws cancel most of the noise a difference would otherwise carry, so the
    interval of a difference is much tighter than either score's: it says whether two
    configurations differ beyond noise. JSON: one object per configuration, its result as
    `replay eval --json` prints it, and `diff` against the first (null for the first itself):
    vs, mean, ci_lo, ci_hi, ci_level, ci_method, beyond_noise (the interval excludes 0)."""
    import json

    from .engine import Config, evaluate_batch
    from .errors import ConfigError

    if len(configs) < 2:
        raise ConfigError("compare", "give at least two configurations: the first is the reference")
    budget = check_budget("--budget", budget)
    check_count("--replicates", replicates)
    st = open_announced(store)
    if st.manifest.kind == "graph":
        from .graph import cli as graph_cli

        return graph_cli.compare(st, configs, replicates=replicates, seed=seed, questions=_parse_questions(questions),
                                 budget=budget, as_json=as_json)
    cfgs = [Config.parse(c, store=st) for c in configs]
    qsel = _parse_questions(questions)
    check_replicates("--replicates", replicates, questions=len(st.question_indices(qsel)),
                     per_pass=_largest_pass(cfgs), configs=len(cfgs))
    results = evaluate_batch(st, cfgs, questions=qsel, replicates=replicates, seed=seed, budget=budget)
    base = results[0]
    diffs = [None] + [r.difference(base) if (r.feasible and base.feasible) else None for r in results[1:]]
    if as_json:
        for r, d in zip(results, diffs):
            row = _result_json(r)
            row["diff"] = diff_json(d, str(base.config))
            click.echo(json.dumps(json_safe(row), allow_nan=False))
        return
    w = max(len("config"), *(len(str(r.config)) for r in results))
    head = (f"{'config':<{w}}  {'score':>7}  {'±rep':>6}  {'95% CI (questions)':>18}  {'units':>8}  "
            f"{'diff vs first':>13}  {'95% CI of diff':>16}  beyond noise")
    click.echo(head)
    click.echo("-" * len(head))
    for r, d in zip(results, diffs):
        score, err, ci, dd, dci, beyond = compare_cells(r, base, d)
        click.echo(f"{str(r.config):<{w}}  {score}  {err:>6}  {ci:>18}  {r.units:>8.2f}  {dd:>13}  {dci:>16}  {beyond}")
    click.echo(f"\n{base.n_questions} questions x {base.replicates} replicates, seed {base.seed}, shared by every "
               "configuration (common random numbers); scores and differences in percent points")
    click.echo(uncertainty_legend(results))
    click.echo("diff vs first: the mean over questions of (this - first), paired question by question, with its "
               "95% interval; beyond noise: the interval excludes 0")


def _largest_pass(cfgs) -> int:
    """The most configurations one compiled pass scores together: those that differ only in the
    last stage's sample count (what the replay's memory grows with)."""
    from collections import Counter

    groups = Counter((tuple((c.model, c.samples) for c in cfg.stages[:-1]), cfg.stages[-1].model) for cfg in cfgs)
    return max(groups.values(), default=1)


def _space_configs(st, models, max_samples, grid):
    """Every configuration of the store's space (narrowed), or the configs of a grid file."""
    import itertools

    from .engine import Config
    from .errors import ConfigError

    if grid:
        try:
            with open(grid, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except OSError as e:
            raise ConfigError(grid, f"cannot read grid file ({e.strerror})") from None
        except UnicodeDecodeError as e:
            raise ConfigError(grid, f"not a UTF-8 text file ({e.reason} at byte {e.start})") from None
        cfgs = [Config.parse(line, store=st) for line in lines if line.strip() and not line.lstrip().startswith("#")]
        if not cfgs:
            raise ConfigError(grid, "no configuration in the grid file (one MODEL:SAMPLES,... per line)")
        return cfgs
    per_stage = _space_choices(st, models, max_samples)
    total = 1
    for o in per_stage:
        total *= len(o)
    if total > 5_000_000:
        raise ConfigError("sweep", f"{total:,} configurations: narrow with --models / --max-samples or give --grid "
                                   "(or `replay scan`: the best per budget of any size of space)")
    return [Config(tuple(c)) for c in itertools.product(*per_stage)]


def _space_choices(st, models, max_samples):
    """Per stage, its choices (model, count) in the store's space, narrowed by --models and
    --max-samples."""
    from .engine import StageChoice, largest_pool
    from .errors import ConfigError

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
    return per_stage


def default_output(st, name: str) -> Path:
    """Where a command writes when --out is not given: under out/ (never the current folder's
    top, a repository checkout's root), one folder per store."""
    return Path("out") / "replay" / st.name / name


@cli.command(short_help="Score every configuration (or a grid) into a Parquet table.")
@click.argument("store", type=click.Path())
@click.option("--out", default=None, type=click.Path(),
              help="Parquet file to write (atomically; default out/replay/STORE/sweep.parquet).")
@click.option("--budget", default=None, help="Budget in units; configs over it are marked infeasible.")
@click.option("--models", default=None, help="Comma-separated models to include (default: all).")
@click.option("--max-samples", type=int, default=None, help="Largest sample count per stage.")
@click.option("--grid", type=click.Path(), default=None,
              help="File of configs, one per line, instead of the full space (graph stores: graphs, required).")
@click.option("--replicates", "-r", default=100, show_default=True, help="Random draws per question.")
@click.option("--seed", default=0, show_default=True, type=SEED, help="Seed of every draw (0 to 2^63-1).")
@_questions_option
@click.option("--throughput", default=None, help="Graph stores: MODEL=PREFILL/DECODE tokens per second.")
@_device_option
def sweep(store, out, budget, models, max_samples, grid, replicates, seed, questions, throughput, device):
    """Evaluate every configuration of the space (or a grid) and write a Parquet table.

    One row per configuration: config, score, stderr (the replicate error), ci_lo and ci_hi
    (the 95% interval over questions), feasible, tokens, flops, units, fallback_rate and
    per-stage columns (s0_model, s0_samples, s0_score: each stage's own score, s0_tokens, ...)."""
    import time

    import polars as pl
    from tqdm import tqdm

    from .engine import evaluate_batch

    budget = check_budget("--budget", budget)
    check_count("--replicates", replicates)
    if max_samples is not None:
        check_count("--max-samples", max_samples)
    if out is not None:
        check_output_file(out, "--out")
    _check_device(device)
    st = open_announced(store)
    if out is None:
        out = check_output_file(default_output(st, "sweep.parquet"), "--out")
    if st.manifest.kind == "graph":
        from .graph import cli as graph_cli

        return graph_cli.sweep(st, out=out, grid=grid, budget=budget, replicates=replicates, seed=seed,
                               questions=_parse_questions(questions), throughput=throughput, models=models,
                               max_samples=max_samples, device=device)
    cfgs = _space_configs(st, models, max_samples, grid)
    qsel = _parse_questions(questions)
    check_replicates("--replicates", replicates, questions=len(st.question_indices(qsel)),
                     per_pass=_largest_pass(cfgs), configs=len(cfgs))
    t0 = time.perf_counter()
    with tqdm(total=len(cfgs), unit="cfg", desc="sweep", disable=None, file=sys.stderr) as bar:
        results = evaluate_batch(st, cfgs, questions=qsel, replicates=replicates, seed=seed,
                                 budget=budget, progress=bar.update, device=device)
    dt = time.perf_counter() - t0
    df = pl.DataFrame([r.as_row() for r in results])
    with atomic_path(out) as tmp:
        df.write_parquet(tmp)
    feas = df.filter(pl.col("feasible"))
    click.echo(f"{len(df):,} configurations x {results[0].n_questions} questions x {replicates} replicates in {dt:.2f} s -> {out}")
    if len(feas):
        top = feas.sort(["score", "units"], descending=[True, False]).head(5)
        best = top.row(0, named=True)
        w = max(len("config"), *(len(c) for c in top["config"]))
        click.echo(f"best feasible (of {len(feas):,}):")
        head = f"  {'config':<{w}}  {'score':>7}  {'±rep':>6}  {'95% CI (questions)':>18}  {'units':>8}  {'tokens/q':>11}"
        click.echo(head)
        for row in top.iter_rows(named=True):
            ci = f"[{pct(row['ci_lo'])}, {pct(row['ci_hi'])}]"
            click.echo(f"  {row['config']:<{w}}  {pct(row['score']):>7}  {pct(row['stderr']):>6}  {ci:>18}  "
                       f"{row['units']:>8.2f}  {row['tokens']:>11,.0f}")
        close = feas.filter(pl.col("ci_hi") >= best["score"])
        click.echo(f"scores in percent; {uncertainty_legend(results)}. {len(close):,} feasible configurations have "
                   "an interval over questions that reaches the best score: on new questions the order of the top "
                   "may differ (`replay compare` tests pairs)")
    else:
        click.echo("no configuration within the budget")


@cli.command(short_help="The best configurations per budget of a whole space.")
@click.argument("store", type=click.Path())
@click.option("--budget", "budgets", multiple=True,
              help="Budget in units per question (repeatable; 'none': no budget). Default: the store's default "
                   "budget (every stage once with its largest model) and none.")
@click.option("--top", default=10, show_default=True, help="Configurations kept per budget.")
@click.option("--models", default=None, help="Comma-separated models to include (default: all).")
@click.option("--max-samples", type=int, default=None, help="Largest sample count per stage.")
@click.option("--replicates", "-r", default=16, show_default=True, help="Random draws per question.")
@click.option("--seed", default=0, show_default=True, type=SEED, help="Seed of every draw (0 to 2^63-1).")
@_questions_option
@click.option("--json", "out_json", default=None, type=click.Path(), help="Write the best per budget as JSON.")
@_device_option
def scan(store, budgets, top, models, max_samples, replicates, seed, questions, out_json, device):
    """Score every configuration of the space (any size: a compiled scan, streamed) and print the
    best --top per budget.

    The same numbers as `replay sweep` and `search --searcher grid`, without a row per
    configuration: chunks of the space are scored (on the GPU with --device cuda) and only the
    best of each budget are kept, so a space of 10^8 configurations needs no memory of that
    size. Feasible: expected cost within the budget (the budget rule); order: score, then the
    cheapest measured cost."""
    import json
    import time

    from .engine import default_budget
    from .scan_top import scan_top

    check_count("--replicates", replicates)
    check_count("--top", top)
    if max_samples is not None:
        check_count("--max-samples", max_samples)
    parsed = [None if str(b).strip().lower() == "none" else check_budget("--budget", b) for b in budgets]
    if out_json:
        check_output_file(out_json, "--json")
    _check_device(device)
    st = open_announced(store)
    if st.manifest.kind == "graph":
        from .errors import ConfigError

        raise ConfigError(store, "replay scan scans chain stores; for a graph store use replay sweep --grid")
    per_stage = _space_choices(st, models, max_samples)
    qsel = _parse_questions(questions)
    if not parsed:
        parsed = [default_budget(st), None]
    t0 = time.perf_counter()
    res = scan_top(st, per_stage, budgets=parsed, top=top, questions=qsel, replicates=replicates, seed=seed,
                   device=device)
    dt = time.perf_counter() - t0
    click.echo(f"{res.evaluated:,} configurations x {res.questions} questions x {res.replicates} replicates "
               f"in {dt:.2f} s on the {res.device}")
    rows = []
    for budget, best, n_ok in zip(res.budgets, res.best, res.feasible):
        click.echo(f"\nbudget {'none' if budget is None else f'{budget:.4g} units'}: {n_ok:,} feasible")
        if best:
            w = max(len("config"), *(len(str(b.config)) for b in best))
            click.echo(f"  {'config':<{w}}  {'score':>7}  {'±rep':>6}  {'95% CI (questions)':>18}  {'expected':>9}")
        for b in best:
            ci = f"[{pct(b.ci_lo)}, {pct(b.ci_hi)}]"
            click.echo(f"  {str(b.config):<{w}}  {pct(b.score):>7}  {pct(b.stderr):>6}  {ci:>18}  {b.expected:>9.2f}")
            rows.append({"budget": budget, "config": str(b.config), "score": b.score, "stderr": b.stderr,
                         "ci_lo": b.ci_lo, "ci_hi": b.ci_hi, "units": b.units, "expected_units": b.expected})
    click.echo("\nscores in percent; ±rep: the replicate error; 95% CI: the interval over questions; expected: "
               "expected cost in units per question (the budget rule)")
    if out_json:
        doc = {"store": st.name, "configurations": res.evaluated, "questions": res.questions,
               "replicates": res.replicates, "seed": res.seed, "device": res.device,
               "feasible": [{"budget": b, "count": n} for b, n in zip(res.budgets, res.feasible)], "best": rows}
        with atomic_path(out_json) as tmp:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(json_safe(doc), f, indent=1, allow_nan=False)
        click.echo(f"wrote {out_json}")


@cli.command(short_help="Score and tokens against sample count, as a PNG.")
@click.argument("store", type=click.Path())
@click.option("--out", default=None, type=click.Path(), help="PNG file to write (default out/replay/STORE/curve.png).")
@click.option("--max-samples", type=int, default=None, help="Largest sample count to plot (default: pool size).")
@click.option("--replicates", "-r", default=200, show_default=True, help="Random draws per question.")
@click.option("--seed", default=0, show_default=True, type=SEED, help="Seed of every draw (0 to 2^63-1).")
@_questions_option
def curve(store, out, max_samples, replicates, seed, questions):
    """Score against sample count per model and stage, with its 95% interval over questions as a
    band, tokens on a second panel.

    For a multi-stage store, stage i's curve varies stage i while every other stage runs its
    largest model with one sample (the insight-1 probe of AgentTTS)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from .engine import Config, StageChoice, evaluate_batch, largest_pool

    check_count("--replicates", replicates)
    if max_samples is not None:
        check_count("--max-samples", max_samples)
    if out is not None:
        check_output_file(out, "--out")
    st = open_announced(store)
    if out is None:
        out = check_output_file(default_output(st, "curve.png"), "--out")
    if st.manifest.kind == "graph":
        from .errors import ConfigError

        raise ConfigError(store, "replay curve plots chain stores; for a graph store use replay eval or replay sweep --grid")
    qsel = _parse_questions(questions)
    check_replicates("--replicates", replicates, questions=len(st.question_indices(qsel)),
                     per_pass=int(largest_pool(st).max()), configs=int(largest_pool(st).max()))
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
            rs = evaluate_batch(st, cfgs, questions=qsel, replicates=replicates, seed=seed)
            y = np.array([100 * r.score for r in rs])
            ax_score.plot(counts, y, label=mname)
            ax_score.fill_between(counts, [100 * r.ci_lo for r in rs], [100 * r.ci_hi for r in rs], alpha=0.15)
            ax_cost.plot(counts, [r.tokens for r in rs], label=mname)
        ax_score.set_title(f"stage {stage.name} ({stage.aggregation})" + (" - SYNTHETIC" if st.synthetic else ""))
        ax_score.set_ylabel("score (%), band: 95% interval over questions")
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


@cli.command(short_help="Record checksums of a store's files in its manifest.")
@click.argument("store", type=click.Path())
def seal(store):
    """Record checksums of a store's files in its manifest, as they are now.

    A store written by this version has them already: every command then refuses a table or a
    manifest that changed after it was written (a flipped byte is an error, not a different
    result). Use this for a store written before checksums existed, or to accept a deliberate
    edit of a store's files. The store is validated first; its tables are not rewritten."""
    from .store import seal as seal_store

    path = seal_store(store)
    click.echo(f"sealed {path}: checksums of the manifest and every table recorded in manifest.json")


# `replay frontier` (configurations, or width-depth controllers) lives in frontier_cli.py.
cli.add_command(frontier)
# `replay pilot insight1|insight2|insight3`: the AgentTTS pilot figures (frontier_cli.py).
cli.add_command(pilot)
# `replay sandbox` (what the sandbox for untrusted programs guarantees here) lives with the sandbox.
cli.add_command(sandbox)
# `replay export` (an allocation as a pipeline spec, run by `collect live`) lives with the spec.
cli.add_command(export)


def main(argv=None):
    main_wrapper(cli, argv)


if __name__ == "__main__":
    main()
