"""The `search` command: run a searcher against the replay, compare searches.

    search --replay traces/aime24 --searcher bo --trials 50          (shortcut for `search run`)
    search run --replay traces/aime24 --searcher rules --seeds 0-9
    search compare out/search/aime24/*-s0 --out out/compare.png
    search export out/search/aime24/bo-s0/summary.json --out out/spec.json
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import click

from replay.clitools import SEED, check_budget, check_output_dir, check_output_file, check_replicates, main_wrapper
from replay.errors import ConfigError

from .settings import (DEFAULT_TRIALS, GRID_LIMIT, MAX_SEEDS, ConfigSpaceSettings, ControllerSpaceSettings,
                       GraphSpaceSettings, ProgramSpaceSettings,
                       SearchSettings, SpaceSettings, parse_seeds)


class _Search(click.Group):
    """`search --replay ...` is `search run --replay ...`: the DESIGN's sketch keeps working."""

    # the run command's main options, listed by `search --help` too (the first thing a newcomer
    # types shows how to start a search, not only the subcommands)
    RUN_OPTIONS = ("store_path", "searcher", "trials", "seeds", "budget", "n_train", "replicates", "out", "resume")

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)

    def format_options(self, ctx, formatter):
        run = self.commands.get("run")
        if run is not None:
            records = [p.get_help_record(ctx) for name in self.RUN_OPTIONS for p in run.params if p.name == name]
            with formatter.section("Main options of `search run` (the default command; `search run --help` "
                                   "lists every one)"):
                formatter.write_dl([r for r in records if r])
        super().format_options(ctx, formatter)


@click.group(cls=_Search, context_settings={"help_option_names": ["-h", "--help"]})
def cli():
    """Search for the best model and sample count per stage under a compute budget, on the replay.

    \b
    search --replay traces/aime24 --searcher bo --trials 50     one search (same as `search run`)
    search --replay traces/aime24 --searcher rules --seeds 0-9  repeat over seeds, mean and spread
    search compare out/search/aime24/bo-s0 out/search/aime24/rules-seeds0-9 --out out/cmp.png
    search sweep benchmarks/sweeps/paper.yaml                   a grid of searches, one report
    search export out/search/aime24/bo-s0/summary.json --out out/spec.json   the pick as a runnable spec
    search --replay traces/aime24 --space controller --controller probe --model Qwen3-8B \\
        --budget-tokens 150000 --searcher bo --trials 30     a controller's parameters
    search --replay traces/aime24 --space program --model Qwen3-1.7B --searcher discover \\
        --llm-base-url URL --llm-model NAME --trials 20     an LLM writes controller programs

    Searchers: random, grid, bo, rules (no LLM); agenttts, agenthpo, mlcopilot, discover (an
    OpenAI-compatible endpoint: --llm-base-url / --llm-model or OPENAI_BASE_URL / OPENAI_API_KEY);
    agent-reinforce (--space graph; an endpoint too, except with --ablate feedback).
    """


def _budget(text: str | None) -> float | None:
    return check_budget("--budget", text)


@cli.command("run", short_help="Run one search (or one per seed) and print its summary.")
@click.option("--replay", "store_path", required=True, metavar="STORE", help="Store folder to search on (e.g. traces/aime24).")
@click.option("--searcher", required=True,
              help="random, grid, bo, rules, agenttts, agenthpo, mlcopilot, discover (--space program) or "
                   "agent-reinforce (--space graph).")
@click.option("--trials", type=int, default=None, help="Trials (scored points). Default 50; the grid runs until done.")
@click.option("--seed", type=SEED, default=None, help="Searcher seed (default 0; 0 to 2^63-1).")
@click.option("--seeds", default=None, help="Repeat over seeds in parallel processes, e.g. 0-9; reports mean and spread "
                                            "(at most 1000 without --yes).")
@click.option("--yes", is_flag=True, help="Allow more than 1000 seeds (each is a search).")
@click.option("--workers", type=int, default=None, help="Processes for --seeds (default: CPU count).")
@click.option("--budget", default=None, help="Budget in normalised units per question (default: every stage once with its largest model).")
@click.option("--models", default=None, help="Comma-separated models to consider (default: every candidate).")
@click.option("--max-samples", type=int, default=None, help="Largest sample count to consider per stage.")
@click.option("--train", "n_train", type=int, default=None,
              help="Training questions (default: the store's split, else 50), drawn from the questions outside the "
                   "fixed test set; more than those overrides the store's split (and says so).")
@click.option("--split-seed", type=SEED, default=0, show_default=True,
              help="Seed of the --train draw (sizes are nested for one seed; the test set never moves).")
@click.option("--select", "select_rule", default=None,
              help="Rule that picks the final configuration among the trials: mean, mean-costliest, lcb, tied-cheapest, "
                   "tied-costliest (default: the one with the lowest measured test regret; docs/search.md).")
@click.option("--max-fallback", type=float, default=None,
              help="Largest share of draws (0-1) that may fall back to another pool (upstream answer not "
                   "collected); configurations above it are infeasible.")
@click.option("--replicates", type=int, default=16, show_default=True, help="Replay draws per training question.")
@click.option("--test-replicates", type=int, default=256, show_default=True, help="Replay draws per test question for the final score.")
@click.option("--replay-seed", type=SEED, default=0, show_default=True, help="Seed of the replay's draws (common to every searcher).")
@click.option("--out", default=None, type=click.Path(file_okay=False), help="Output folder (default out/search/STORE/SEARCHER-sSEED).")
@click.option("--resume", is_flag=True, help="Continue the interrupted search archived in --out.")
@click.option("--no-optimum", is_flag=True, help="Do not compute the grid optimum for the summary.")
@click.option("--optimum-limit", type=int, default=GRID_LIMIT, show_default=True,
              help="Largest space whose exhaustive optimum is computed for the summary (one compiled scan).")
@click.option("--sampler", default=None, help="bo: tpe (default) or gp (Optuna's GPSampler; needs torch).")
@click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default=None,
              help="Where the replay runs (evaluations, the grid's scan, the optimum; --space graph: the graph "
                   "batches): cpu, cuda (a GPU; the gpu-replay extra; the same numbers) or auto. Default "
                   "$TTS_REPLAY_DEVICE, else cpu.")
@click.option("--ablate", default=None, help="agenttts, rules: insight1, insight2 or insight3; agent-reinforce: those "
              "or feedback (a plain REINFORCE update, no LLM).")
@click.option("--llm-base-url", default=None, help="LLM searchers: OpenAI-compatible endpoint (or OPENAI_BASE_URL).")
@click.option("--llm-model", default=None, help="LLM searchers: model name at the endpoint.")
@click.option("--llm-temperature", type=float, default=None,
              help="LLM searchers: sampling temperature (default: not sent, the endpoint's own; reasoning models "
                   "that reject one work without it).")
@click.option("--llm-max-tokens", type=click.IntRange(min=0), default=None,
              help="LLM searchers: completion tokens per answer, at most (default 2048; 0: none sent, for models "
                   "that refuse the parameter; answers are still cut at 10 characters per token).")
@click.option("--llm-timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help="LLM searchers: seconds per request attempt (default 120); a timed-out attempt is retried.")
@click.option("--llm-structured", type=click.Choice(["auto", "json-schema", "json-object-schema", "json-object", "off"]),
              default=None, help="LLM searchers: structured outputs, the answer's JSON schema sent as response_format "
                                 "(default auto: json-schema, then the endpoint's other forms, then off).")
@click.option("--max-feedback", type=int, default=None,
              help="LLM searchers: times a rejected answer goes back to the LLM within a round (default 3).")
@click.option("--space", "space_kind", type=click.Choice(["config", "controller", "program", "graph"]), default="config",
              show_default=True, help="config: models and samples per stage; controller: one width-depth controller's "
                                      "parameters; program: controller programs an LLM writes (--searcher discover); "
                                      "graph: collaboration graphs of a graph store (docs/graphs.md).")
@click.option("--max-nodes", type=int, default=None, help="--space graph: the most nodes a graph has (default 4).")
@click.option("--latency-limit", type=float, default=None,
              help="--space graph: seconds per question (mean replayed latency); slower graphs are infeasible.")
@click.option("--objective", "graph_objective", default=None,
              help="--space graph: 'accuracy' (default) or 'accuracy - LAMBDA * latency' (latency in seconds).")
@click.option("--controller", default=None, help="--space controller: built-in name (probe, adaptive, esc, majority) or module:Class.")
@click.option("--model", default=None, help="--space controller/program: the model whose traces the controllers run on.")
@click.option("--budget-tokens", type=float, default=None, help="--space controller: budget in mean tokens per question.")
@click.option("--beta", is_flag=True, help="--space controller: search the controller's single knob beta instead.")
@click.option("--probe-cost", type=float, default=None, help="--space controller/program: tokens charged per probe (default 0).")
@click.option("--score", "score_rule", default=None,
              help="--space program: accuracy@TOKENS, auc@LO-HI or tokens@majority:N (default tokens@majority:64).")
@click.option("--betas", "n_betas", type=int, default=None, help="--space program: points of each program's beta sweep (default 21).")
@click.option("--program-wall-s", type=float, default=None,
              help="--space program: wall-clock limit of each sandbox call: loading, the sweep, the traces (default 120).")
@click.option("--program-memory-mb", type=int, default=None, help="--space program: the sandbox's memory limit (default 2048).")
@click.option("--test-store", "test_stores", multiple=True, metavar="STORE",
              help="--space program: another store to report the best program on (held out); repeatable.")
@click.option("--heldout-replicates", type=int, default=None,
              help="--space program: replicates per question of the held-out report (default 32).")
@click.option("--program-workers", type=int, default=None,
              help="--space program: sandboxes sharing each program's beta sweep, run at once (default min(4, CPUs)).")
def run_cmd(store_path, searcher, trials, seed, seeds, yes, workers, budget, models, max_samples, n_train, split_seed,
            select_rule, max_fallback, replicates, test_replicates, replay_seed, out, resume, no_optimum, optimum_limit,
            sampler, ablate, llm_base_url, llm_model, llm_temperature, llm_max_tokens, llm_timeout, llm_structured,
            max_feedback, space_kind, controller, model, budget_tokens, beta, probe_cost, score_rule, n_betas,
            program_wall_s, program_memory_mb, test_stores, heldout_replicates, program_workers, max_nodes,
            latency_limit, graph_objective, device):
    """Run one search (or one per seed) and print its summary; archive, summary.json and a PNG
    of best-so-far score go to --out."""
    from replay.clitools import open_announced

    from . import report
    from .runner import build_searcher, known_optimum, run_and_report, run_seeds, setup_for
    from .searchers import get_searcher
    from .spaces import check_needs, space_class

    graph_opts = {"--max-nodes": max_nodes, "--latency-limit": latency_limit, "--objective": graph_objective}
    program_opts = {"--score": score_rule, "--betas": n_betas, "--program-wall-s": program_wall_s,
                    "--program-memory-mb": program_memory_mb, "--test-store": test_stores or None,
                    "--heldout-replicates": heldout_replicates, "--program-workers": program_workers}
    if space_kind == "controller":
        space: SpaceSettings = ControllerSpaceSettings(controller=controller, model=model, budget_tokens=budget_tokens,
                                                       beta=beta, probe_cost=probe_cost or 0.0)
        stray = {"--budget": budget, "--models": models, "--max-samples": max_samples, "--max-fallback": max_fallback,
                 **program_opts, **graph_opts, "--device": device}
        tail = "does not apply to --space controller"
    elif space_kind == "program":
        given = {k: v for k, v in dict(score=score_rule, betas=n_betas, wall_s=program_wall_s,
                                       memory_mb=program_memory_mb, heldout_replicates=heldout_replicates,
                                       workers=program_workers).items()
                 if v is not None}
        space = ProgramSpaceSettings(model=model, probe_cost=probe_cost or 0.0, test_stores=tuple(test_stores), **given)
        stray = {"--budget": budget, "--models": models, "--max-samples": max_samples, "--controller": controller,
                 "--budget-tokens": budget_tokens, "--beta": beta or None, "--max-fallback": max_fallback, **graph_opts, "--device": device}
        tail = "does not apply to --space program"
    elif space_kind == "graph":
        model_list = tuple(m.strip() for m in models.split(",") if m.strip()) if models is not None else None
        space = GraphSpaceSettings(max_nodes=4 if max_nodes is None else max_nodes, models=model_list,
                                   max_samples=max_samples, budget=_budget(budget), latency_limit=latency_limit,
                                   objective="accuracy" if graph_objective is None else graph_objective)
        stray = {"--controller": controller, "--model": model, "--budget-tokens": budget_tokens,
                 "--beta": beta or None, "--probe-cost": probe_cost, "--max-fallback": max_fallback, **program_opts}
        tail = "does not apply to --space graph"
    else:
        model_list = tuple(m.strip() for m in models.split(",") if m.strip()) if models is not None else None
        space = ConfigSpaceSettings(models=model_list, max_samples=max_samples, budget=_budget(budget),
                                    max_fallback=max_fallback)
        stray = {"--controller": controller, "--model": model, "--budget-tokens": budget_tokens,
                 "--beta": beta or None, "--probe-cost": probe_cost, **program_opts, **graph_opts}
        tail = "applies to --space controller, program or graph only"
    given = [k for k, v in stray.items() if v is not None]
    if given:
        raise ConfigError(given[0], tail)
    cls = get_searcher(searcher)  # an unknown name fails before the store loads
    check_needs(searcher, cls.needs, space_class(space.kind))
    if seed is not None and seeds is not None:
        raise ConfigError("--seeds", "give --seed or --seeds, not both")
    if trials is None and not cls.exhaustive:
        trials = DEFAULT_TRIALS
    options = {k: v for k, v in dict(sampler=sampler, ablate=ablate, llm_base_url=llm_base_url,
                                     llm_model=llm_model, llm_temperature=llm_temperature, llm_max_tokens=llm_max_tokens,
                                     llm_timeout_s=llm_timeout, llm_structured=llm_structured,
                                     max_feedback=max_feedback).items() if v is not None}
    settings = SearchSettings(
        store=store_path, searcher=searcher, space=space, seed=0 if seed is None else seed,
        seeds=tuple(parse_seeds(seeds, limit=None if yes else MAX_SEEDS)) if seeds is not None else None, trials=trials,
        options=options, train=n_train, split_seed=split_seed, select=select_rule,
        replicates=replicates, replay_seed=replay_seed, test_replicates=test_replicates, out=out, resume=resume,
        optimum=not no_optimum, optimum_limit=optimum_limit, workers=workers)
    settings.check()
    if device is not None:
        # every replay of this search, in this process and its seed processes, reads the device
        # from the environment (replay.gpu.default_device): it never changes a number
        from replay.gpu import ENV, resolve_device

        resolve_device(device, where="--device")
        os.environ[ENV] = device
    if out is not None:
        check_output_dir(out, "--out")  # before the store loads and the optimum is computed
    store = open_announced(store_path)
    # before the setup, which already replays (the default budget): bounded by every question
    # a program's sweep replays every beta at once: its arrays grow with the betas too
    per_pass = space.betas if isinstance(space, ProgramSpaceSettings) else 1
    check_replicates("--replicates", replicates, questions=len(store.question_ids), per_pass=per_pass)
    check_replicates("--test-replicates", test_replicates, questions=len(store.question_ids), per_pass=per_pass)
    if isinstance(space, ProgramSpaceSettings):
        check_replicates("--heldout-replicates", space.heldout_replicates, questions=len(store.question_ids),
                         per_pass=per_pass)
    setup = setup_for(store, settings)
    build_searcher(searcher, setup.space, options=options, trials=trials, objective=setup.objective)  # bad options fail before any trial
    click.echo(f"{store.name}: {setup.split.source}; {setup.space.headline()}", err=True)
    sandbox = setup.space.sandbox_notice()
    if sandbox:  # a user's controller class: it runs in replay.sandbox, and the user should know how confined
        click.echo(sandbox, err=True)
    slug = setup.space.slug() + "-" if setup.space.slug() else ""
    if settings.seeds is None:
        settings = replace(settings, out=out or str(Path("out/search") / store.name / f"{slug}{searcher}-s{settings.seed}"))
        check_output_dir(settings.out, "--out")
        _check_out(Path(settings.out), resume)
        summary = run_and_report(setup, settings, progress=True)
        click.echo(report.summary_table(summary, setup.space))
        click.echo(f"wrote {settings.out}/archive.jsonl, {report.SUMMARY_NAME}, {report.PLOT_NAME}")
        return
    settings = replace(settings, out=out or str(Path("out/search") / store.name / f"{slug}{searcher}-seeds{seeds}"))
    base = Path(settings.out)
    check_output_dir(base, "--out")
    from replay.locks import folder_lock

    with folder_lock(base, "search"):  # seeds.json and the plot; each seed's folder has its own lock
        for s in settings.seeds:
            _check_out(base / f"seed-{s}", resume)
        optimum = known_optimum(setup, limit=optimum_limit, progress=True) if settings.optimum else None
        summaries = run_seeds(setup, settings, optimum=optimum, progress=True)
        stats = report.seed_stats(summaries)
        report.write_json_atomic(base / "seeds.json", {"stats": stats, "optimum": optimum, "summaries": summaries})
        text, _, _ = report.compare([base / f"seed-{s}" for s in settings.seeds], base / report.PLOT_NAME)
    click.echo(text)
    click.echo("")
    click.echo(report.seed_table(stats))
    click.echo(f"wrote {base}/seed-*/, seeds.json, {report.PLOT_NAME}")


def _check_out(out: Path, resume: bool) -> None:
    from replay.errors import InputError

    from .archive import ARCHIVE_NAME

    if resume and not (out / ARCHIVE_NAME).is_file():
        raise InputError("--resume", f"no search archive to resume in {out}")
    if not resume and (out / ARCHIVE_NAME).exists():
        raise InputError(str(out), "already holds a search archive: pass --resume to continue it, or another --out")


@cli.command("compare", short_help="Compare searches: one table, one plot, paired differences.")
@click.argument("archives", nargs=-1, required=True, type=click.Path())
@click.option("--out", "out_png", default=None, type=click.Path(dir_okay=False), help="PNG of the best-so-far curves.")
@click.option("--json", "out_json", default=None, type=click.Path(dir_okay=False), help="Write the table as JSON too.")
def compare_cmd(archives, out_png, out_json):
    """One table and one plot over several searches (their folders or archive.jsonl files; a
    `--seeds` search's folder stands for its seeds), and
    whether each searcher's test score differs from the first one's beyond noise (95% intervals
    of the paired difference over the test questions and over seeds)."""
    from . import report

    for path, opt in ((out_png, "--out"), (out_json, "--json")):
        if path is not None:
            check_output_file(path, opt)
    text, rows, diffs = report.compare(archives, out_png)
    if rows and rows[0]["synthetic"]:
        click.echo(f"note: store {rows[0]['store']!r} is SYNTHETIC (simulated, not collected from real models)", err=True)
    click.echo(text)
    if out_json:
        report.write_json_atomic(Path(out_json), {"searches": rows, "differences": diffs})
    if out_png:
        click.echo(f"wrote {out_png}")


@cli.command("sweep", short_help="Run a grid of searches from a spec, into one report.")
@click.argument("spec_file", metavar="[SPEC]", required=False, type=click.Path(dir_okay=False))
@click.option("--stores", default=None, help="Comma-separated store folders (overrides the spec's stores).")
@click.option("--searchers", default=None, help="Comma-separated searchers, ablations as name:ablation (agenttts:insight1).")
@click.option("--seeds", default=None, help="Searcher seeds, e.g. 0-9.")
@click.option("--train", default=None, help="Training-set sizes, e.g. 5,10,20 ('default': the store's split).")
@click.option("--budgets", default=None, help="Budgets in units, e.g. default,100.")
@click.option("--trials", default=None, help="Trial budgets, e.g. 20,50 ('all': until the searcher stops).")
@click.option("--replicates", type=int, default=None, help="Replay draws per training question (default 16).")
@click.option("--test-replicates", type=int, default=None, help="Replay draws per test question (default 256).")
@click.option("--replay-seed", type=int, default=None, help="Seed of the replay's draws (default 0).")
@click.option("--models", default=None, help="Comma-separated models to consider.")
@click.option("--max-samples", type=int, default=None, help="Largest sample count per stage.")
@click.option("--max-fallback", type=float, default=None, help="Largest share of draws that may fall back to another pool.")
@click.option("--select", "select_rule", default=None, help="Rule that picks each search's final configuration.")
@click.option("--no-optimum", is_flag=True, help="Do not compute the grid optima.")
@click.option("--out", default=None, type=click.Path(file_okay=False), help="Output folder (default out/sweeps/NAME; without a spec, NAME is made from the options).")
@click.option("--workers", type=int, default=None, help="Worker processes (default: all cores; 1: in this process).")
@click.option("--ray", "ray_address", default=None, metavar="ADDRESS",
              help="Run on Ray: a cluster address, 'auto', or 'local' to start a local instance (pip install 'tts-replay[ray]').")
@click.option("--llm-concurrency", type=int, default=None, help="Most LLM requests in flight at once, over the whole sweep.")
@click.option("--llm-base-url", default=None, help="LLM searchers: OpenAI-compatible endpoint (or OPENAI_BASE_URL).")
@click.option("--llm-model", default=None, help="LLM searchers: model name at the endpoint.")
@click.option("--llm-max-tokens", type=click.IntRange(min=0), default=None,
              help="LLM searchers: completion tokens per answer, at most (default 2048; 0: none sent, for models "
                   "that refuse the parameter; answers are still cut at 10 characters per token).")
@click.option("--llm-timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help="LLM searchers: seconds per request attempt (default 120); a timed-out attempt is retried.")
@click.option("--llm-structured", type=click.Choice(["auto", "json-schema", "json-object-schema", "json-object", "off"]),
              default=None, help="LLM searchers: structured outputs, the answer's JSON schema sent as response_format "
                                 "(default auto: json-schema, then the endpoint's other forms, then off).")
@click.option("--cell-plots", is_flag=True, help="Also write each cell's best_so_far.png.")
@click.option("--report-only", is_flag=True, help="Run nothing: rebuild results and report from the cells on disk.")
@click.option("--yes", is_flag=True, help="Allow more than 1000 seeds or 10,000 cells (each cell is a search).")
def sweep_cmd(spec_file, stores, searchers, seeds, train, budgets, trials, replicates, test_replicates, replay_seed,
              models, max_samples, max_fallback, select_rule, no_optimum, out, workers, ray_address, llm_concurrency,
              llm_base_url, llm_model, llm_max_tokens, llm_timeout, llm_structured, cell_plots, report_only, yes):
    """Run a grid of searches (stores x searchers x seeds x training sizes x budgets x trial
    budgets) from a YAML/JSON SPEC and/or the options, in parallel; resume an interrupted one
    by running it again. Writes OUT/results.parquet, curves.parquet, report.md, figures/.

    \b
    search sweep benchmarks/sweeps/paper.yaml
    search sweep spec.yaml --workers 8 --ray auto
    search sweep --stores traces/aime24 --searchers random,bo,rules --seeds 0-9 --train 5,10,15"""
    import time

    from replay.clitools import announce, plural

    from .sweep import SweepFailed, parse_spec, read_spec_file, run_sweep

    t0 = time.perf_counter()
    raw, source = ({}, "command line") if spec_file is None else (read_spec_file(spec_file), spec_file)
    llm = dict(raw.get("llm") or {}) if isinstance(raw.get("llm") or {}, dict) else raw.get("llm")
    if isinstance(llm, dict):
        for k, v in (("base_url", llm_base_url), ("model", llm_model), ("concurrency", llm_concurrency),
                     ("max_tokens", llm_max_tokens), ("timeout", llm_timeout), ("structured", llm_structured)):
            if v is not None:
                llm[k] = v
    if workers is not None and workers < 1:
        raise ConfigError("--workers", f"must be at least 1, got {workers}")
    if llm_concurrency is not None and llm_concurrency < 1:
        raise ConfigError("--llm-concurrency", f"must be at least 1, got {llm_concurrency}")
    overrides = dict(stores=stores, searchers=searchers, seeds=seeds, train=train, budgets=budgets, trials=trials,
                     replicates=replicates, test_replicates=test_replicates, replay_seed=replay_seed, models=models,
                     max_samples=max_samples, max_fallback=max_fallback, select=select_rule, out=out, workers=workers,
                     optimum=False if no_optimum else None, cell_plots=True if cell_plots else None,
                     llm=llm if any(v is not None for v in (llm_base_url, llm_model, llm_concurrency, llm_max_tokens,
                                                           llm_timeout, llm_structured)) else None)
    spec = parse_spec(raw, source, overrides=overrides, allow_many=yes)
    check_output_dir(spec.out or Path("out/sweeps") / spec.name, "--out" if out is not None or spec.out is None else
                     f"{source}: out")
    res = run_sweep(spec, workers=workers, ray=ray_address, progress=True, run=not report_only, announce=announce,
                    log=lambda s: click.echo(s, err=True))
    out_dir = res.plan.out
    click.echo(_main_table(res.report))
    click.echo(f"{plural(len(res.plan.cells), 'cell')}: {res.ran} run now, {res.skipped} already finished, {res.failed} failed; "
               f"{time.perf_counter() - t0:.1f} s")
    click.echo(f"wrote {out_dir}/report.md, results.parquet, curves.parquet, figures/")
    if res.failed:
        raise SweepFailed(str(out_dir), f"{res.failed} of {plural(len(res.plan.cells), 'cell')} failed (errors in report.md and "
                          "results.parquet): run the same command again to resume them")


@cli.command("export", short_help="Write a search's pick as a pipeline spec (collect live).")
@click.argument("summary", type=click.Path())
@click.option("--out", required=True, type=click.Path(), help="The spec file to write (JSON, atomically).")
@click.option("--store", default=None, type=click.Path(),
              help="The store, when it is no longer at the path the summary recorded.")
@click.option("--replicates", "-r", default=1000, show_default=True, help="Replay draws per question for the estimate.")
@click.option("--seed", default=0, show_default=True, type=SEED, help="Seed of the replay's draws.")
def export_cmd(summary, out, store, replicates, seed):
    """Write the allocation a search picked (SUMMARY: its summary.json) as a pipeline spec
    that `collect live --spec` runs on new questions (docs/spec-format.md).

    \b
    search export out/search/tiny-real-numseq/bo-s0/summary.json --out out/spec.json
    """
    from replay.clitools import check_count
    from replay.spec.cli import describe
    from replay.spec.export import spec_from_summary
    from replay.spec.format import write_spec

    check_count("--replicates", replicates)
    check_output_file(out, "--out")
    spec = spec_from_summary(summary, store=store, replicates=replicates, seed=seed)
    for line in describe(spec, write_spec(spec, out)):
        click.echo(line)


def _main_table(report_path) -> str:
    """The report's main-results table, for the terminal."""
    if report_path is None:
        return ""
    text = Path(report_path).read_text().split("## 1. Main results", 1)
    if len(text) < 2:
        return ""
    body = text[1].split("\n## ", 1)[0]
    return "\n".join(line for line in body.strip().splitlines() if line.startswith("|"))


def main(argv=None):
    main_wrapper(cli, argv)


if __name__ == "__main__":
    main()
