"""`collect live --spec`: run an exported allocation (a pipeline spec) live on new questions.

The spec (replay/spec/, docs/spec-format.md) names the task, per stage the model, the sample
count, the aggregation and the prompt style, and the collection's sampling settings. Here the
pipeline runs for real on a question file the store never saw, with fresh samples, exactly as
replay models it:

- chain: stage by stage (`collect.live.run_chain`, shared with `collect live-check`): n samples
  of the stage's model, the task's parser, the stage's aggregation (majority vote ties to the
  first drawn, as replay), the aggregated answer fed into the next stage's prompt; the last
  stage's answer scored by the task.
- graph: nodes in topological order. A `solve` node reads the question alone (the task's first
  stage prompt); a `refine` or `aggregate` node reads its parents' aggregated answers (their
  multiset, sorted as replay's input keys sort them) shown as representative outputs: for each
  answer the first solve sample that gave it (solve nodes in order, then sample index), else
  the answer itself, as `collect run --graph` builds those prompts. The output node's answer
  (or the majority vote of several output nodes, ties to the first listed) is scored.

Tokens are counted as replay counts them: each stage's (node's) prompt once, plus every
sample's completion tokens. Accuracy is reported with its 95% interval over questions
(`replay.stats.question_interval`, the interval replay reports), tokens per question with a
bootstrap interval over questions.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from replay.errors import InputError

from .backends import Backend
from .live import ChainStep, bootstrap_ci, generate_checked, run_chain, take_samples
from .run.settings import pool_seed

LIVE_AGGREGATIONS = ("majority_vote", "set_vote", "best_score")  # llm_fuse stages are fusion calls, not run here


@dataclass(frozen=True)
class SpecRunReport:
    """A spec run live: accuracy and tokens per question over the questions run."""

    spec: str  # the spec file
    kind: str
    task: str
    config: str
    questions: int
    repeats: int
    score: float  # mean over questions of the pipeline's score (repeats averaged per question)
    score_ci: tuple[float, float]  # 95% interval over questions
    tokens_per_question: float
    tokens_ci: tuple[float, float]  # 95% bootstrap interval over questions
    calls: int  # samples drawn
    seconds: float
    replay: dict | None  # the spec's replay estimate on the store, for comparison
    per_question: tuple[dict, ...]  # question_id, repeat, score, tokens, answers (per stage or node)
    settings: dict


def check_spec_runnable(spec, where: str, *, backend: str):
    """The collect task of `spec`, once every reason the spec cannot run live is refused (one
    line naming the spec): no task, an unknown task, stages that are not the task's, an
    aggregation that is not run live, completion prompts the task or backend cannot serve."""
    from .tasks import TASKS, get_task

    if spec.task is None:
        raise InputError(where, "task: null (the store it came from names no collect task); set task and each "
                                "model_id, see the spec's notes")
    if spec.task not in TASKS:
        raise InputError(where, f"task: unknown task {spec.task!r} (known: {', '.join(sorted(TASKS))})")
    task = get_task(spec.task)
    if spec.kind == "chain":
        want = [s.name for s in task.stages]
        got = [s.name for s in spec.stages]
        if got != want:
            raise InputError(where, f"stages: {', '.join(got)} are not the stages of task {spec.task!r} "
                                    f"({', '.join(want)}, in that order)")
    else:
        if not task.graph_roles:
            raise InputError(where, f"kind: graph, but task {spec.task!r} has no graph roles (graph tasks: "
                                    f"{', '.join(sorted(n for n, t in TASKS.items() if t.graph_roles))})")
        for i, n in enumerate(spec.nodes):
            if n.role not in task.graph_roles:
                raise InputError(where, f"nodes[{i}].role: {n.role!r} is not a role of task {spec.task!r} "
                                        f"({', '.join(task.graph_roles)})")
            if (n.role == "solve") != (not n.inputs):
                raise InputError(where, f"nodes[{i}]: a solve node reads no inputs and a {n.role} node reads "
                                        "at least one")
    seen: dict[str, tuple[str, str]] = {}
    for i, s in enumerate(spec.steps):
        part = f"{'stages' if spec.kind == 'chain' else 'nodes'}[{i}]"
        # one backend per model: a model used twice must be asked for by one id, with one prompt style
        first = seen.setdefault(s.model, (s.model_id, s.prompt_style))
        if first != (s.model_id, s.prompt_style):
            raise InputError(where, f"{part}: model {s.model!r} is used with model_id/prompt_style "
                                    f"{s.model_id}/{s.prompt_style} here and {first[0]}/{first[1]} before; "
                                    "give one per model")
        if s.aggregation not in LIVE_AGGREGATIONS:
            raise InputError(where, f"{part}.aggregation: {s.aggregation!r} is not run live "
                                    f"({', '.join(LIVE_AGGREGATIONS)})")
        if s.prompt_style == "completion":
            if spec.kind == "graph":
                raise InputError(where, f"{part}.prompt_style: graph prompts are chat messages only")
            if not task.has_completion_prompt():
                raise InputError(where, f"{part}.prompt_style: task {spec.task!r} has no completion prompt")
            if backend != "openai":
                raise InputError(where, f"{part}.prompt_style: completion prompts need --backend openai "
                                        "(a server's /v1/completions)")
    return task


def run_spec(spec, data: str | Path, make_backend: Callable[[str, str], Backend], *, where: str = "spec",
             backend: str = "openai", limit: int | None = None, repeats: int = 1, seed: int = 1,
             progress: Callable[[str], None] | None = None) -> SpecRunReport:
    """Run `spec` live on the questions of `data` and measure accuracy and tokens.

    Parameters
    ----------
    spec:
        A `replay.spec.PipelineSpec` (`replay.spec.read_spec`).
    data:
        The question file, in the task's format.
    make_backend:
        `(model_id, prompt_style) -> Backend`, for each model of the spec.
    where:
        How errors name the spec (its file).
    backend:
        The backend kind ("openai" or "vllm"): completion prompts need "openai".
    limit:
        Run only the first N questions of the file.
    repeats:
        Runs per question (different seeds); a question's score is their mean.
    seed:
        Base of every pool's sampling seed.
    """
    say = progress or (lambda s: None)
    task = check_spec_runnable(spec, where, backend=backend)
    if repeats < 1:
        raise InputError("--repeats", f"must be at least 1, got {repeats}")
    records = task.load(data)
    if limit is not None:
        if limit < 1:
            raise InputError("--limit", f"must be at least 1, got {limit}")
        records = records[:limit]
    by_id = {r.id: r for r in records}
    runs = [(r.id, k) for r in records for k in range(repeats)]
    backends: dict[str, Backend] = {}
    ids = {s.model: s.model_id for s in spec.steps}
    styles = {s.model: s.prompt_style for s in spec.steps}

    def get_backend(model: str) -> Backend:
        if model not in backends:
            backends[model] = make_backend(ids[model], styles[model])
        return backends[model]

    def seed_for(si, step_name, model, run, ctx):
        return pool_seed(seed, step_name, model, run[0], f"{ctx}\x00live/{run[1]}")

    t0 = time.time()
    try:
        if spec.kind == "chain":
            steps = [ChainStep(s.name, s.model, s.samples, s.aggregation, s.prompt_style) for s in spec.stages]
            done = run_chain(task, steps, runs, by_id, get_backend, temperature=spec.sampling.temperature,
                             max_tokens=spec.sampling.max_tokens, progress=say,
                             seed_for=lambda si, st, run, ctx: seed_for(si, st.stage, st.model, run, ctx))
            answers, tokens, calls = done.answers, done.tokens, done.calls
            last = spec.stages[-1].name
            final = {run: answers[run][-1] for run in runs}
        else:
            answers, tokens, calls, final = _run_graph(task, spec, runs, by_id, get_backend, seed_for, say)
            last = next(n.role for n in spec.nodes if n.name == spec.output[0])  # graph roles score alike
    finally:
        for b in backends.values():
            b.close()
    live = {run: float(task.score(last, final[run], by_id[run[0]])) for run in runs}
    qids = [r.id for r in records]
    per_q_score = np.array([np.mean([live[(q, k)] for k in range(repeats)]) for q in qids])
    per_q_tokens = np.array([np.mean([tokens[(q, k)] for k in range(repeats)]) for q in qids], dtype=np.float64)
    from replay.stats import question_interval

    ci = question_interval(per_q_score)
    rp = asdict(spec.replay) if spec.replay is not None else None
    per_q = tuple({"question_id": q, "repeat": k, "score": live[(q, k)], "tokens": tokens[(q, k)],
                   "answers": answers[(q, k)], "answer": final[(q, k)]} for q in qids for k in range(repeats))
    settings = {"data": str(data), "limit": limit, "repeats": repeats, "seed": seed, "backend": backend,
                "temperature": spec.sampling.temperature, "max_tokens": spec.sampling.max_tokens}
    return SpecRunReport(spec=where, kind=spec.kind, task=spec.task, config=spec.config_text, questions=len(qids),
                         repeats=repeats, score=float(per_q_score.mean()), score_ci=(float(ci.lo), float(ci.hi)),
                         tokens_per_question=float(per_q_tokens.mean()), tokens_ci=bootstrap_ci(per_q_tokens, seed=1),
                         calls=calls, seconds=time.time() - t0, replay=rp, per_question=per_q, settings=settings)


def _run_graph(task, spec, runs, records, get_backend, seed_for, say):
    """Nodes in topological order (see the module docstring); returns answers (per node, in node
    order), tokens, samples drawn and the graph's answer, per run."""
    from replay.graph.keys import input_key
    from replay.aggregation import majority

    first_stage = task.stages[0].name
    node_answer: dict[tuple, dict[str, str]] = {run: {} for run in runs}
    reps: dict[tuple, dict[str, str]] = {run: {} for run in runs}  # answer -> first solve sample's text
    tokens = {run: 0 for run in runs}
    calls = 0
    for ni, node in enumerate(spec.nodes):
        keys, prompts, seeds = {}, [], []
        for run in runs:
            rec = records[run[0]]
            if node.role == "solve":
                keys[run] = ""
                prompts.append(task.prompt(first_stage, rec, ""))
            else:
                keys[run] = input_key(node_answer[run][p] for p in node.inputs)
                shown = [reps[run].get(a, a) for a in json.loads(keys[run])]
                prompts.append(task.role_prompt(node.role, rec, shown))
            seeds.append(seed_for(ni, f"{node.role}/{node.name}", node.model, run, keys[run]))
        say(f"node {node.name} ({node.role}), {node.model} x {node.samples}, {len(runs)} runs")
        out = generate_checked(get_backend(node.model), node.model, prompts, node.samples, spec.sampling.temperature,
                               spec.sampling.max_tokens, seeds)
        for run, samples in zip(runs, out):
            parsed, node_answer[run][node.name], n_tokens = take_samples(task, node.role, node.aggregation, samples,
                                                                         records[run[0]])
            if node.role == "solve":
                for a, s in zip(parsed, samples):
                    reps[run].setdefault(a, s.text)
            tokens[run] += n_tokens
            calls += len(samples)
    answers = {run: [node_answer[run][n.name] for n in spec.nodes] for run in runs}
    final = {run: majority([node_answer[run][o] for o in spec.output]) for run in runs}
    return answers, tokens, calls, final


def format_report(rep: SpecRunReport) -> list[str]:
    """The lines `collect live` prints."""
    lines = [f"{rep.spec}: {rep.kind} {rep.config} on task {rep.task}, {rep.questions} questions"
             + (f" x {rep.repeats} repeats" if rep.repeats > 1 else ""),
             f"  accuracy        {rep.score:.3f}  [95% CI over questions {rep.score_ci[0]:.3f}, {rep.score_ci[1]:.3f}]",
             f"  tokens/question {rep.tokens_per_question:,.1f}  [95% CI {rep.tokens_ci[0]:,.1f}, {rep.tokens_ci[1]:,.1f}]",
             f"  samples drawn   {rep.calls} in {rep.seconds:.1f} s"]
    r = rep.replay
    if r is not None and r.get("score") is not None:
        lines.append(f"  replay's estimate on {r['questions']}: {r['score']:.3f} [{r['ci_lo']:.3f}, {r['ci_hi']:.3f}], "
                     f"{r['tokens_per_question']:,.1f} tokens/question (other questions: a guide, not a check)")
    return lines


def write_report(rep: SpecRunReport, spec, out: str | Path) -> Path:
    """`out/summary.json`, `out/per_question.jsonl` and `out/spec.json` (the spec run), each atomic."""
    from replay.atomic import atomic_path
    from replay.clitools import json_safe
    from replay.spec import write_spec

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {k: v for k, v in asdict(rep).items() if k != "per_question"}
    with atomic_path(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(json_safe(summary), indent=2, allow_nan=False) + "\n")
    with atomic_path(out / "per_question.jsonl") as tmp:
        tmp.write_text("".join(json.dumps(json_safe(x), allow_nan=False) + "\n" for x in rep.per_question))
    write_spec(spec, out / "spec.json")
    return out
