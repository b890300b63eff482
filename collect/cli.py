"""The `collect` command: build stores (import other formats, simulate synthetic ones)."""

from __future__ import annotations

import click

from replay.clitools import SEED, check_count, check_output_dir, main_wrapper
from replay.errors import InputError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli():
    """Build stores of sampled outputs that `replay` and `search` read.

    \b
    collect run --task 2wiki --data dev.json --models M1,M2 --samples 64 --out traces/2wiki
                                                     draw pools from real models (vLLM or an
                                                     OpenAI-compatible server)
    collect status traces/2wiki                      what a (partial) collection has done
    collect import autotts DIR --out traces/aime24   convert the AutoTTS release format
    collect simulate 2wiki --out traces/sim-2wiki    a synthetic multi-stage store
    collect live-check STORE -c CONFIG --base-url U  run configs live, compare with their replay
    collect live --spec out/spec.json --data Q --out DIR  run an exported allocation on new questions
    """


@cli.group("import", short_help="Convert another release's format into a store.")
def import_():
    """Convert another release's format into a store."""


@import_.command("autotts", short_help="Import an AutoTTS replay environment (a folder of JSON).")
@click.argument("src", type=click.Path(file_okay=False))
@click.option("--out", required=True, type=click.Path(), help="Store folder to write (replaced atomically).")
@click.option("--name", default=None, help="Store name (default: the folder name).")
@click.option("--benchmark", default="aime24", show_default=True, help="Prefix of the question ids.")
@click.option("--train-fraction", default=0.5, show_default=True, help="Share of questions in the train split.")
@click.option("--split-seed", default=0, show_default=True, type=SEED)
def import_autotts_cmd(src, out, name, benchmark, train_fraction, split_seed):
    """Import an AutoTTS replay environment: a folder of <model>.json (or <model>.json.gz) files."""
    import math

    from replay.store import check_store_name

    from .importers.autotts import import_autotts

    if not (math.isfinite(train_fraction) and 0.0 <= train_fraction <= 1.0):
        raise InputError("--train-fraction", f"must be a number in [0, 1], got {train_fraction}")
    if name is not None:
        check_store_name(name, "--name")
    check_output_dir(out, "--out")

    path = import_autotts(src, out, name=name, benchmark=benchmark, train_fraction=train_fraction,
                          split_seed=split_seed)
    click.echo(f"wrote {path}")


def parse_concurrency(text: str, endpoints: int) -> tuple[int, ...]:
    """--concurrency: one bound for every endpoint ('8'), or one per --base-url ('8,16')."""
    from replay.clitools import check_count

    parts = [p.strip() for p in str(text).split(",")]
    vals = []
    for p in parts:
        try:
            vals.append(int(p))
        except ValueError:
            raise InputError("--concurrency", f"expected an integer or one per --base-url (N1,N2,...), got {text!r}") from None
    for v in vals:
        check_count("--concurrency", v)
    if len(vals) == 1:
        return tuple(vals) * endpoints
    if len(vals) != endpoints:
        raise InputError("--concurrency", f"{len(vals)} bounds for {endpoints} --base-url endpoints")
    return tuple(vals)


@cli.command("run", short_help="Sample pools from real LLMs into a store.")
@click.option("--task", required=True,
              help="Task: 2wiki, hotpotqa, cwq, webqsp, taskbench, chatdev, aime, mmlu, humaneval, math (official "
                   "file formats; math also reads the generic JSONL), the generic JSONL task qa, or numseq "
                   "(generated: python -m collect.tasks.numseq). See docs/collect.md.")
@click.option("--data", required=True, type=click.Path(),
              help="The task's dataset file (a folder for taskbench), in its official format.")
@click.option("--models", required=True,
              help="Comma-separated models: hub ids, paths or server model names; NAME=ID names one.")
@click.option("--params", default=None, help="Parameter counts, NAME=COUNT,... (default: read off names like Qwen3-8B).")
@click.option("--samples", default=16, show_default=True, help="Samples per pool (the largest S replay can use).")
@click.option("--backend", type=click.Choice(["vllm", "openai"]), default=None,
              help="vllm (offline engine) or openai (any OpenAI-compatible server). Default: openai with "
                   "--base-url, else vllm (refused if vLLM is not installed).")
@click.option("--base-url", multiple=True,
              help="OpenAI-compatible server, e.g. http://localhost:8000/v1 (vllm serve); repeat it with --ray to "
                   "spread the pools over several servers.")
@click.option("--api-key", default=None, envvar="OPENAI_API_KEY", show_envvar=True,
              help="API key for --backend openai (never written to the store).")
@click.option("--temperature", default=0.9, show_default=True, type=float)
@click.option("--max-tokens", default=1024, show_default=True, type=int, help="Completion length cap per sample.")
@click.option("--seed", default=0, show_default=True, type=SEED, help="Base of every pool's sampling seed and of the split.")
@click.option("--expand", "--expand-top", "expand_top", default=4, show_default=True, type=int,
              help="Upstream answers per question that get their own downstream pool (most frequent first).")
@click.option("--expand-min-share", default=0.0, show_default=True, type=float,
              help="Expand an upstream answer only if it is at least this share of the aggregated outcomes.")
@click.option("--fusions", default=4, show_default=True, type=int,
              help="llm_fuse stages: fused subsets per size (2, 4, ... pool size) and pool.")
@click.option("--limit", default=None, type=int, help="Use only the first N questions of the data file.")
@click.option("--train", default=None, type=int,
              help="Train-split size when the data names no splits (default: half, seeded shuffle).")
@click.option("--batch-size", default=64, show_default=True, type=int,
              help="Pools per backend call and per checkpoint shard.")
@click.option("--concurrency", default="8", show_default=True,
              help="Parallel requests (openai backend); with several --base-url, one bound for each (N or N1,N2,...).")
@click.option("--retries", default=6, show_default=True, type=int,
              help="Retries with backoff per request on rate limits, server errors, dropped connections and "
                   "responses that are not the API's (openai).")
@click.option("--timeout", default=600.0, show_default=True, type=float,
              help="Seconds one request may take before it counts as failed and is retried (openai).")
@click.option("--prompt-style", default="chat", show_default=True,
              help="openai: chat (chat completions, instruct models) or completion (plain completions with the "
                   "task's few-shot prompt, base models); per model: NAME=STYLE,... (others chat).")
@click.option("--tensor-parallel", default=1, show_default=True, type=int, help="GPUs per model (vllm backend).")
@click.option("--gpu-memory-utilization", default=0.9, show_default=True, type=float, help="vllm backend.")
@click.option("--max-model-len", default=None, type=int, help="Context length cap (vllm backend).")
@click.option("--name", default=None, help="Store name (default: the folder name).")
@click.option("--out", required=True, type=click.Path(), help="Store folder to write (replaced atomically at the end).")
@click.option("--force", is_flag=True, help="Replace an existing store at OUT.")
@click.option("--fresh", is_flag=True, help="Discard a partial run of OUT instead of resuming it.")
@click.option("--keep-raw", is_flag=True, help="Keep every completion's text in OUT.raw/ (Parquet shards).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--graph", is_flag=True,
              help="Collect a collaboration-graph store (roles solve, refine, aggregate; tasks math, aime, mmlu, "
                   "humaneval): --expand keys per question and role. See docs/collect.md.")
@click.option("--role-samples", type=int, default=None, help="--graph: samples per refine/aggregate pool (default: --samples).")
@click.option("--refine-inputs", default=2, show_default=True, type=int,
              help="--graph: the most answers a refine pool is collected for.")
@click.option("--aggregate-inputs", default=3, show_default=True, type=int,
              help="--graph: the most answers an aggregate pool is collected for.")
@click.option("--throughput", default=None,
              help="--graph: MODEL=PREFILL/DECODE tokens per second, comma-separated, for latency (default: measured "
                   "from the requests; the vllm backend cannot).")
@click.option("--ray", "ray_address", default=None, metavar="ADDRESS|auto|local",
              help="Draw the pools on Ray actors (data parallel): a cluster's address, 'auto', or 'local' (a Ray "
                   "instance on this machine). See docs/collect.md, 'On several GPUs and machines'.")
@click.option("--actors", type=int, default=None,
              help="--ray: actors (engines); default one per --base-url (openai) or per --tensor-parallel GPUs (vllm).")
@click.option("--block", type=int, default=None, help="--ray: questions per work unit (default: --batch-size).")
@click.option("--actor-cpus", type=float, default=1.0, show_default=True, help="--ray: CPUs reserved per actor.")
def run_cmd(task, data, models, params, samples, backend, base_url, api_key, temperature, max_tokens, seed,
            expand_top, expand_min_share, fusions, limit, train, batch_size, concurrency, retries, timeout,
            prompt_style, tensor_parallel, gpu_memory_utilization, max_model_len, name, out, force, fresh, keep_raw,
            quiet, graph, role_samples, refine_inputs, aggregate_inputs, throughput, ray_address, actors, block,
            actor_cpus):
    """Sample pools from real LLMs for every stage, model and question, into a store.

    \b
    For each stage in order and each model: one pool of --samples completions per question
    and upstream context (the first stage has one; a later stage one per expanded upstream
    answer, see --expand-top). Answers are parsed and scored by the task; token counts are
    the backend's. An interrupted run resumes from OUT.partial/ when rerun with the same
    settings; the store is written once, atomically, at the end.

    \b
    collect run --task 2wiki --data data/2wikimultihop/dev.json \\
        --models Qwen/Qwen3-1.7B,Qwen/Qwen3-8B --samples 64 --out traces/2wiki
    collect run --task math --data aime.jsonl --models Qwen3-8B --backend openai \\
        --base-url http://localhost:8000/v1 --samples 32 --out traces/aime
    """
    import shlex

    from .backends import vllm_available
    from replay.redact import redact_url
    from .prompting import check_prompt_styles, parse_prompt_styles
    from .run import RunSettings, parse_models, run_collection
    from .tasks import get_task

    # every option that would otherwise be coerced, or fail hours later, is checked first
    base_urls = tuple(base_url) or (None,)
    bounds = parse_concurrency(concurrency, len(base_urls))
    if ray_address is None:
        ctx = click.get_current_context()
        for param, flag in (("actors", "--actors"), ("block", "--block"), ("actor_cpus", "--actor-cpus")):
            if ctx.get_parameter_source(param) not in (None, click.core.ParameterSource.DEFAULT):
                raise InputError(flag, "applies to --ray collections only")
        if len(base_urls) > 1:
            raise InputError("--base-url", "several endpoints need --ray (the actors spread the pools over them)")
    base_url = base_urls[0]
    concurrency = bounds[0]
    check_count("--retries", retries, lo=0)
    check_count("--tensor-parallel", tensor_parallel)
    if max_model_len is not None:
        check_count("--max-model-len", max_model_len)
    if not 0.0 < gpu_memory_utilization <= 1.0:
        raise InputError("--gpu-memory-utilization", f"must be in (0, 1], got {gpu_memory_utilization}")
    check_output_dir(out, "--out")
    if not graph:  # graph-only options would be silently unused
        ctx = click.get_current_context()
        for param, flag in (("role_samples", "--role-samples"), ("refine_inputs", "--refine-inputs"),
                            ("aggregate_inputs", "--aggregate-inputs"), ("throughput", "--throughput")):
            if ctx.get_parameter_source(param) not in (None, click.core.ParameterSource.DEFAULT):
                raise InputError(flag, "applies to --graph collections only")

    the_task = get_task(task)  # an unknown task fails before anything else
    if the_task.runs_untrusted_code:
        from replay.sandbox import isolation

        click.echo(f"{task}: programs the models write run in the {isolation().summary()}", err=True)
    specs = parse_models(models, params=params)
    speeds = None
    if throughput:
        from replay.graph.cli import parse_throughput

        speeds = parse_throughput(throughput)
        unknown = [k for k in speeds if k not in {m.name for m in specs}]
        if unknown:
            raise InputError("--throughput", f"{unknown[0]!r} is not one of the models ({', '.join(m.name for m in specs)})")
    if backend is None:
        # a server named with --base-url means the openai backend; otherwise the engine, which
        # must be installed: never fall back silently to a default server that is not running
        if base_url is not None:
            backend = "openai"
        elif vllm_available():
            backend = "vllm"
        else:
            raise InputError("--backend", "vLLM is not installed (pip install 'tts-replay[gpu]'); to use an "
                             "OpenAI-compatible server pass --backend openai --base-url URL")
    styles = parse_prompt_styles(prompt_style, [m.name for m in specs])
    check_prompt_styles(the_task, styles, backend, graph=graph)
    if not timeout > 0:
        raise InputError("--timeout", f"must be a positive number of seconds, got {timeout}")
    if backend == "vllm":
        opts = {"tensor_parallel_size": tensor_parallel, "gpu_memory_utilization": gpu_memory_utilization,
                "max_model_len": max_model_len}

        def make(m):
            from .backends.vllm_backend import VLLMBackend

            return VLLMBackend(m.model_id, seed=seed, **opts)
    else:
        # recorded in the manifest: the URL without any credentials it carries
        opts = {"base_url": redact_url(base_url), "concurrency": concurrency, "retries": retries, "timeout": timeout}
        if len(base_urls) > 1:
            opts.update(base_url=[redact_url(u) for u in base_urls], concurrency=list(bounds))
        if any(v != "chat" for v in styles.values()):
            opts["prompt_styles"] = styles

        def make(m):
            from .backends.openai_compat import OpenAIBackend

            return OpenAIBackend(m.model_id, base_url=base_url, api_key=api_key, max_concurrency=concurrency,
                                 max_retries=retries, timeout=timeout, prompt_style=styles[m.name])
    # the command as run, rebuilt from the parsed options (so the API key never lands in a file)
    ctx = click.get_current_context()
    shown = []
    for p in ctx.command.params:
        v = ctx.params.get(p.name)
        if p.name == "api_key" or v is None or v is False or v == ():
            continue
        flag = p.opts[0]
        if p.name == "base_url":
            shown.extend(f"{flag} {shlex.quote(str(redact_url(u)))}" for u in v)
            continue
        shown.append(flag if v is True else f"{flag} {shlex.quote(str(v))}")
    settings = RunSettings(
        task=task, data=data, models=tuple(specs), out=out, samples=samples, temperature=temperature,
        max_tokens=max_tokens, seed=seed, expand_top=expand_top, expand_min_share=expand_min_share,
        fusions=fusions, limit=limit, train=train, batch_size=batch_size, name=name, backend=backend, backend_options=opts,
        command="collect run " + " ".join(shown), keep_raw=keep_raw, fresh=fresh, force=force,
        prompt_styles=tuple(sorted(styles.items())), graph=graph,
        role_samples=role_samples, refine_inputs=refine_inputs, aggregate_inputs=aggregate_inputs, throughput=speeds)
    if ray_address is not None:
        from .run.distributed import RayOptions, run_collection_ray
        from .run.worker import Engine

        engine = (Engine("vllm", vllm=tuple(sorted({**opts, "seed": seed}.items())))
                  if backend == "vllm" else
                  Engine("openai", base_urls=base_urls, concurrency=bounds, api_key=api_key, retries=retries,
                         timeout=timeout, prompt_styles=tuple(sorted(styles.items()))))
        res = run_collection_ray(settings, engine, options=RayOptions(address=ray_address, actors=actors, block=block,
                                                                      cpus_per_actor=actor_cpus),
                                 progress=not quiet, log=lambda s: click.echo(s, err=True))
    else:
        res = run_collection(settings, make, progress=not quiet, log=lambda s: click.echo(s, err=True))
    click.echo(f"{'stage':<12} {'model':<20} {'pools':>6} {'samples':>8} {'score':>6} {'prompt':>7} "
               f"{'compl.':>7} {'cut':>5} {'cover':>6} {'fusions':>8} {'fused':>6}  other")
    for r in res.summary:
        fused = f"{r.fused_score:>6.3f}" if r.fused_score is not None else f"{'-':>6}"
        other = ", ".join(f"{k} {v:.3f}" for k, v in r.metrics.items())
        click.echo(f"{r.stage:<12} {r.model:<20} {r.pools:>6} {r.samples:>8} {r.mean_score:>6.3f} "
                   f"{r.mean_prompt_tokens:>7.0f} {r.mean_completion_tokens:>7.0f} {r.truncated:>5.0%} "
                   f"{r.coverage:>6.1%} {r.fusions:>8} {fused}  {other}")
    click.echo(f"wrote {res.path} ({res.drawn_samples} samples drawn in {res.seconds:.1f} s"
               + (f", {res.resumed_pools} pools resumed" if res.resumed_pools else "") + ")")


@cli.command("status", short_help="What a collection has done and what remains.")
@click.argument("out", type=click.Path())
def status_cmd(out):
    """What a collection into OUT has done and what remains (reads OUT.partial/ or the store)."""
    from .run import collection_status

    st = collection_status(out)
    click.echo(f"{st.out}: {st.state}")
    click.echo(f"{'stage':<12} {'model':<20} {'pools':>13} {'fused':>6} {'samples':>9} {'compl. tokens':>14}")
    for ln in st.lines:
        planned = "?" if ln.pools_planned is None else str(ln.pools_planned) + ("" if ln.planned_complete else "+")
        click.echo(f"{ln.stage:<12} {ln.model:<20} {f'{ln.pools_done}/{planned}':>13} {ln.fused_done:>6} "
                   f"{ln.samples:>9} {ln.completion_tokens:>14,}")
    if st.state != "complete":
        left = ("unknown until the upstream stages finish" if st.remaining_pools is None
                else f"{st.remaining_pools} pool draws and fusion batches")
        click.echo(f"remaining: {left}; '?' pools are planned once the stage before finishes"
                   + ("; 'N+': planned so far (a --ray run expands a block of questions at a time)"
                      if any(not ln.planned_complete for ln in st.lines) else ""))
        click.echo("resume: rerun the same collect run command" + (f": {st.command}" if st.command else ""))
    if st.ray:
        _echo_ray_report(st.ray)


def _echo_ray_report(rep: dict) -> None:
    """The per-actor table of a --ray run's last progress report."""
    import time as _time

    age = _time.time() - float(rep.get("updated_unix") or 0)
    drv = rep.get("driver") or {}
    click.echo(f"Ray run: {rep.get('state', '?')} (driver pid {drv.get('pid', '?')} on {drv.get('host', '?')}, "
               f"last report {age:.0f} s ago), {rep.get('elapsed_s', 0):.0f} s, {rep.get('samples_per_s', 0):.1f} "
               f"samples/s, {rep.get('tokens_per_s', 0):.0f} tokens/s; units {rep.get('units_done', 0)} done, "
               f"{rep.get('units_running', 0)} running, {rep.get('units_queued', 0)} queued; "
               f"{rep.get('actor_restarts', 0)} actors replaced")
    click.echo(f"{'actor':>5} {'state':<6} {'node':<16} {'engine':<34} {'units':>6} {'pools':>6} {'samples':>8} "
               f"{'tokens/s':>9}")
    for a in rep.get("actors", []):
        tps = a.get("tokens_per_s")
        click.echo(f"{a.get('slot', '?'):>5} {a.get('state', '?'):<6} {str(a.get('node', ''))[:16]:<16} "
                   f"{str(a.get('engine', ''))[:34]:<34} {a.get('units', 0):>6} {a.get('pools', 0):>6} "
                   f"{a.get('samples', 0):>8} {'-' if tps is None else f'{tps:,.0f}':>9}")


@cli.command("live-check", short_help="Run configurations live and compare with their replay.")
@click.argument("store", type=click.Path(exists=True, file_okay=False))
@click.option("--config", "-c", "configs", multiple=True, required=True,
              help="A configuration to run live, MODEL:S per stage (repeat the option for several).")
@click.option("--base-url", required=True, help="The OpenAI-compatible server that serves the store's models.")
@click.option("--api-key", default=None, envvar="OPENAI_API_KEY", show_envvar=True, help="API key (never written).")
@click.option("--data", default=None, type=click.Path(), help="The question file, if not where the store recorded it.")
@click.option("--questions", default=None, help="A split name (train, test) or comma-separated ids; default all.")
@click.option("--repeats", default=1, show_default=True, type=int, help="Live runs per question (fresh seeds each).")
@click.option("--seed", default=1, show_default=True, type=SEED, help="Base of the live seeds (never the collection's).")
@click.option("--replicates", default=2000, show_default=True, type=int, help="Replay draws per question.")
@click.option("--concurrency", default=1, show_default=True, type=int, help="Parallel requests.")
@click.option("--retries", default=6, show_default=True, type=int, help="Retries per request.")
@click.option("--timeout", default=600.0, show_default=True, type=float, help="Seconds per request.")
@click.option("--out", default=None, type=click.Path(), help="Write summary.json and per_question.jsonl here.")
def live_check_cmd(store, configs, base_url, api_key, data, questions, repeats, seed, replicates, concurrency,
                   retries, timeout, out):
    """Run configurations live with fresh samples and compare with the replay's prediction.

    \b
    collect live-check traces/tiny-real-numseq --base-url http://127.0.0.1:8080/v1 \\
        -c SmolLM2-135M-Instruct:1,SmolLM2-135M-Instruct:1 -c gemma-3-270m:8,SmolLM2-135M-Instruct:8

    Prints, per configuration, live and replayed accuracy and tokens per question with 95%
    bootstrap intervals over questions, and the paired difference (docs/collect.md).
    """
    from replay.store import open_store

    from .backends.openai_compat import OpenAIBackend
    from .live import format_table, live_check, write_report

    from replay.clitools import check_replicates

    # every option checked before the first live request: live samples cost endpoint time
    if not timeout > 0:
        raise InputError("--timeout", f"must be a positive number of seconds, got {timeout}")
    check_count("--repeats", repeats)
    check_count("--concurrency", concurrency)
    check_count("--retries", retries, lo=0)
    check_count("--replicates", replicates)
    if out:
        check_output_dir(out, "--out")
    st = open_store(store)
    sel = questions
    if questions and questions not in st.manifest.split:
        sel = [q.strip() for q in questions.split(",") if q.strip()]
    check_replicates("--replicates", replicates, questions=1)  # the replay scores one question at a time

    def make(model_id, style):
        return OpenAIBackend(model_id, base_url=base_url, api_key=api_key, max_concurrency=concurrency,
                             max_retries=retries, timeout=timeout, prompt_style=style)

    rep = live_check(st, list(configs), make, data=data, questions=sel, repeats=repeats, seed=seed,
                     replicates=replicates, progress=lambda s: click.echo(s, err=True))
    click.echo(format_table(rep))
    if out:
        click.echo(f"wrote {write_report(rep, out)}")


@cli.command("live", short_help="Run an exported pipeline spec live on new questions.")
@click.option("--spec", "spec_file", required=True, type=click.Path(),
              help="A pipeline spec (replay export / search export; docs/spec-format.md).")
@click.option("--data", required=True, type=click.Path(), help="The questions to run it on, in the task's format.")
@click.option("--out", required=True, type=click.Path(), help="Folder for summary.json, per_question.jsonl, spec.json.")
@click.option("--backend", type=click.Choice(["vllm", "openai"]), default=None,
              help="openai (any OpenAI-compatible server; the default with --base-url) or vllm (offline engine).")
@click.option("--base-url", default=None, help="OpenAI-compatible server, e.g. http://localhost:8000/v1 (vllm serve).")
@click.option("--api-key", default=None, envvar="OPENAI_API_KEY", show_envvar=True, help="API key (never written).")
@click.option("--limit", default=None, type=int, help="Run only the first N questions of --data.")
@click.option("--repeats", default=1, show_default=True, type=int, help="Runs per question (fresh seeds each).")
@click.option("--seed", default=1, show_default=True, type=SEED, help="Base of every pool's sampling seed.")
@click.option("--concurrency", default=8, show_default=True, type=int, help="Parallel requests (openai).")
@click.option("--retries", default=6, show_default=True, type=int, help="Retries per request (openai).")
@click.option("--timeout", default=600.0, show_default=True, type=float, help="Seconds per request (openai).")
@click.option("--tensor-parallel", default=1, show_default=True, type=int, help="GPUs per model (vllm).")
@click.option("--gpu-memory-utilization", default=0.9, show_default=True, type=float, help="vllm.")
@click.option("--max-model-len", default=None, type=int, help="Context length cap (vllm).")
def live_cmd(spec_file, data, out, backend, base_url, api_key, limit, repeats, seed, concurrency, retries, timeout,
             tensor_parallel, gpu_memory_utilization, max_model_len):
    """Run an exported allocation (a pipeline spec) live on new questions: accuracy with its
    95% interval over questions, and tokens per question.

    \b
    replay export traces/tiny-real-numseq -c SmolLM2-135M-Instruct:4,gemma-3-270m:2 --out out/spec.json
    collect live --spec out/spec.json --data new.jsonl --base-url http://127.0.0.1:8080/v1 --out out/live

    Each stage draws the spec's sample count from its model with the collection's temperature
    and max_tokens, the task's prompts and parser, and the spec's aggregation (docs/collect.md).
    """
    from replay.spec import read_spec

    from .backends import vllm_available
    from .spec_run import check_spec_runnable, format_report, run_spec, write_report

    # every option and the spec checked before the first request: live samples cost endpoint time
    if not timeout > 0:
        raise InputError("--timeout", f"must be a positive number of seconds, got {timeout}")
    check_count("--repeats", repeats)
    check_count("--concurrency", concurrency)
    check_count("--retries", retries, lo=0)
    check_count("--tensor-parallel", tensor_parallel)
    if not 0.0 < gpu_memory_utilization <= 1.0:
        raise InputError("--gpu-memory-utilization", f"must be in (0, 1], got {gpu_memory_utilization}")
    if max_model_len is not None:
        check_count("--max-model-len", max_model_len)
    if limit is not None:
        check_count("--limit", limit)
    check_output_dir(out, "--out")
    spec = read_spec(spec_file)
    if backend is None:
        if base_url:
            backend = "openai"
        elif vllm_available():
            backend = "vllm"
        else:
            raise InputError("--backend", "vLLM is not installed and no --base-url was given: pass --base-url URL "
                                          "of an OpenAI-compatible server, or install vLLM (pip install "
                                          "'tts-replay[gpu]')")
    if backend == "vllm" and base_url:
        raise InputError("--base-url", "is for --backend openai; the vllm backend runs the models in this process")
    check_spec_runnable(spec, spec_file, backend=backend)
    if backend == "vllm":
        def make(model_id, style):
            from .backends.vllm_backend import VLLMBackend

            return VLLMBackend(model_id, seed=seed, tensor_parallel_size=tensor_parallel,
                               gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len)
    else:
        def make(model_id, style):
            from .backends.openai_compat import OpenAIBackend

            return OpenAIBackend(model_id, base_url=base_url, api_key=api_key, max_concurrency=concurrency,
                                 max_retries=retries, timeout=timeout, prompt_style=style)

    rep = run_spec(spec, data, make, where=spec_file, backend=backend, limit=limit, repeats=repeats, seed=seed,
                   progress=lambda s: click.echo(s, err=True))
    for line in format_report(rep):
        click.echo(line)
    click.echo(f"wrote {write_report(rep, spec, out)}/summary.json, per_question.jsonl, spec.json")


@cli.command("simulate", short_help="Write a SYNTHETIC store from a spec or a preset.")
@click.argument("spec", required=False)
@click.option("--out", required=True, type=click.Path(), help="Store folder to write (atomically).")
@click.option("--seed", default=0, show_default=True, type=SEED, help="Seed of every random draw.")
@click.option("--preset", default=None,
              help="Start from a preset (2wiki, hotpotqa, cwq, webqsp, taskbench, chatdev, scale; graph stores: "
                   "math, mmlu, humaneval); "
                   "SPEC's fields, if given, are laid over it.")
@click.option("--force", is_flag=True, help="Replace an existing store at --out.")
def simulate_cmd(spec, out, seed, preset, force):
    """Write a SYNTHETIC multi-stage store from SPEC (a YAML/JSON file, or a preset name).

    \b
    collect simulate 2wiki --out traces/sim-2wiki
    collect simulate my-spec.yaml --out /tmp/sim-mine --seed 3
    collect simulate tweaks.yaml --preset taskbench --out /tmp/sim-tb

    Every spec field, its default and the presets: docs/simulate.md. The store is named
    sim-..., marked synthetic in its manifest, and records the spec and seed.
    """
    import time

    from replay.clitools import announce, plural
    from replay.store import read_manifest

    from .simulate import simulate
    from .simulate.presets import resolve

    check_output_dir(out, "--out")
    sim_spec, used = resolve(spec, preset)
    command = "collect simulate " + " ".join(
        x for x in [spec or "", f"--preset {preset}" if preset else "", f"--out {out}", f"--seed {seed}"] if x)
    t0 = time.perf_counter()
    graph = getattr(sim_spec, "kind", "chain") == "graph"
    if graph:
        from .simulate.graph import simulate_graph as simulate
    path = simulate(sim_spec, out, seed=seed, preset=used, overwrite=force, command=command)
    manifest = read_manifest(path)
    announce(manifest)  # the notice every reader of a synthetic store prints, for what we wrote
    what = ("a graph store (roles solve, refine, aggregate)" if graph else
            f"{plural(len(sim_spec.stages), 'stage')} ({', '.join(s.name for s in sim_spec.stages)})")
    click.echo(f"wrote {path}: {plural(sim_spec.questions, 'question')}, {what}, {plural(len(sim_spec.models), 'model')}, "
               f"{plural(sim_spec.samples, 'sample')} per pool, seed {seed} ({time.perf_counter() - t0:.1f} s)")


def main(argv=None):
    main_wrapper(cli, argv)


if __name__ == "__main__":
    main()
