"""`replay export`: a configuration, or a frontier point, written as a pipeline spec.

Registered by replay/cli.py with `cli.add_command(export)`; `search export` (search/cli.py)
writes a search summary's pick through the same `describe`. Nothing heavy is imported at module
import: `replay --help` stays fast.
"""

from __future__ import annotations

import click

from ..clitools import SEED, check_budget, check_count, check_output_file
from ..errors import InputError


def describe(spec, path) -> list[str]:
    """The lines a command prints after writing `spec` to `path`."""
    n = len(spec.steps)
    what = ("stage" if spec.kind == "chain" else "node") + ("" if n == 1 else "s")
    lines = [f"wrote {path}: a {spec.kind} of {n} {what} on task {spec.task or '(none: set one)'}, "
             f"chosen from {spec.origin.chosen_from}: {spec.origin.config}"]
    for s in spec.steps:
        head = s.name if spec.kind == "chain" else f"{s.name} ({s.role}" + (f" of {', '.join(s.inputs)})" if s.inputs else ")")
        model = s.model if s.model_id == s.model else f"{s.model} ({s.model_id})"
        lines.append(f"  {head}: {model} x {s.samples}, {s.aggregation}, {s.prompt_style} prompts")
    r = spec.replay
    if r is not None:
        lines.append(f"  replay on {r.questions}: score {r.score:.3f} [95% CI over questions {r.ci_lo:.3f}, "
                     f"{r.ci_hi:.3f}], {r.tokens_per_question:,.0f} tokens and {r.units_per_question:.3g} units "
                     "per question")
    lines += [f"  note: {n}" for n in spec.notes]
    return lines


@click.command("export", short_help="Write an allocation as a pipeline spec (collect live).")
@click.argument("store", type=click.Path())
@click.option("--config", "-c", "config", default=None,
              help="The allocation: MODEL:SAMPLES per stage (a graph's statements on a graph store).")
@click.option("--from-frontier", "frontier", default=None, type=click.Path(),
              help="A frontier Parquet (columns budget, config, split): export its point at --budget.")
@click.option("--budget", default=None,
              help="With --from-frontier: the budget, in the frontier's budget column's unit; the point at the "
                   "largest grid budget not above it.")
@click.option("--split", default=None,
              help="With --from-frontier: which split's picks (default: train when the frontier has several).")
@click.option("--out", required=True, type=click.Path(), help="The spec file to write (JSON, atomically).")
@click.option("--replicates", "-r", default=1000, show_default=True, help="Replay draws per question for the estimate.")
@click.option("--seed", default=0, show_default=True, type=SEED, help="Seed of the replay's draws.")
def export(store, config, frontier, budget, split, out, replicates, seed):
    """Write an allocation as a pipeline spec that `collect live --spec` runs on new questions.

    \b
    replay export traces/tiny-real-numseq -c SmolLM2-135M-Instruct:4,gemma-3-270m:2 --out out/spec.json
    replay export STORE --from-frontier out/frontier/STORE/frontier.parquet --budget 2 --out out/spec.json

    The spec (docs/spec-format.md) holds per stage the model and its backend id, the sample
    count, the aggregation and the prompt style; the task; the collection's sampling settings;
    and the replay's estimate on the store's test questions (all, without a split).
    """
    from ..store import open_store
    from .export import spec_from_config, spec_from_frontier
    from .format import write_spec

    if (config is None) == (frontier is None):
        raise InputError("--config/--from-frontier", "give exactly one: a configuration, or a frontier and --budget")
    if frontier is None and (budget is not None or split is not None):
        raise InputError("--budget/--split", "apply to --from-frontier only")
    if frontier is not None and budget is None:
        raise InputError("--budget", "--from-frontier needs the budget of the point to export")
    b = check_budget("--budget", budget)
    check_count("--replicates", replicates)
    check_output_file(out, "--out")
    st = open_store(store)
    if frontier is not None:
        spec = spec_from_frontier(st, frontier, b, split=split, replicates=replicates, seed=seed)
    else:
        spec = spec_from_config(st, config, replicates=replicates, seed=seed)
    for line in describe(spec, write_spec(spec, out)):
        click.echo(line)
