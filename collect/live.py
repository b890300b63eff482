"""`collect live-check`: run the pipeline live at a few allocations and compare with the replay.

The method rests on one claim: replaying a configuration from stored pools predicts what running
it would give. This checks it on a real store. For each configuration (a model and a sample
count per stage) and each question, the pipeline runs for real, with fresh samples: stage by
stage, n new samples from the stage's model (new seeds: never the collection's, new calls), the
task's parser, the store's aggregation (majority vote, ties to the first drawn, exactly as
replay), the aggregated answer fed into the next stage's prompt, the last stage's aggregated
answer scored by the task. Tokens are counted as replay counts them: each stage's prompt once,
plus every sample's completion tokens.

The replay's prediction for the same question comes from the store (`replay.evaluate` on that
question alone, `replicates` draws). Per question we take the difference live - replay (score,
and tokens), and report its mean over questions with a 95% bootstrap interval over questions
(paired: the same questions on both sides). With `repeats` > 1 each question is run that many
times (different seeds) and its live score is their mean. If replay is right, the score
interval covers 0 in about 95% of checks; the token difference is small next to the tokens.

Where the live pipeline meets an upstream answer for which the store has no pool, replay had
fallen back to the largest pool; both rates are reported (`replay fallback`, `live uncollected`).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from replay.errors import BackendError, InputError

from .backends import Backend
from .prompting import stage_prompt
from .run.expansion import aggregate
from .run.settings import data_sha256, pool_seed


@dataclass(frozen=True)
class LiveCheckRow:
    """One configuration: live against replay, over the same questions."""

    config: str
    questions: int
    repeats: int
    live_score: float
    live_score_ci: tuple[float, float]
    replay_score: float
    replay_score_ci: tuple[float, float]
    score_diff: float  # mean over questions of (live - replay)
    score_diff_ci: tuple[float, float]  # 95% bootstrap over questions, paired
    live_tokens: float
    replay_tokens: float
    token_diff: float
    token_diff_ci: tuple[float, float]
    replay_fallback: float  # share of replay draws whose later-stage pool fell back
    live_uncollected: float  # share of live later-stage runs whose upstream answer has no pool in the store
    calls: int  # samples drawn live
    seconds: float

    @property
    def agrees(self) -> bool:
        lo, hi = self.score_diff_ci
        return lo <= 0.0 <= hi


@dataclass(frozen=True)
class LiveCheckReport:
    store: str
    rows: tuple[LiveCheckRow, ...]
    per_question: tuple[dict, ...]  # config, question_id, repeat, live score/tokens, replay score/tokens, answers
    settings: dict


def bootstrap_ci(values: np.ndarray, resamples: int = 4000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the mean, resampling the entries (questions) with replacement."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return (float("nan"), float("nan"))
    if v.size == 1 or np.all(v == v[0]):
        return (float(v.mean()), float(v.mean()))
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(resamples, v.size))].mean(axis=1)
    a = (1.0 - level) / 2.0
    return (float(np.quantile(means, a)), float(np.quantile(means, 1.0 - a)))


def _live_seed(seed: int, collect_seed: int, stage: str, model: str, qid: str, ctx: str, repeat: int,
               samples: int, collected: int) -> int:
    """A fresh pool seed: the backend uses seed, seed + 1, ... for re-asked samples, so the live
    range must not meet the range the collection used for the same pool."""
    s = pool_seed(seed, stage, model, qid, f"{ctx}\x00live/{repeat}")
    c = pool_seed(collect_seed, stage, model, qid, ctx)
    while abs(s - c) < max(samples, collected) + 1:
        s = (s + (1 << 20)) & 0x7FFFFFFF
    return s


def question_file(store, source: dict) -> Path:
    """The question file a store was collected from: its copy inside the store (`data_copy`,
    written by `collect run` for files up to 16 MB), else the recorded path (relative: to the
    store's folder), else a file of that name in the store's folder. The caller checks it
    against the recorded SHA-256."""
    root = Path(store.path)
    candidates = []
    if source.get("data_copy"):
        candidates.append(root / source["data_copy"])
    if source.get("data"):
        recorded = Path(source["data"])
        candidates += [recorded if recorded.is_absolute() else root / recorded, root / recorded.name]
    if not candidates:
        return root / "(no question file recorded)"
    return next((c for c in candidates if c.is_file()), candidates[0])


@dataclass(frozen=True)
class ChainStep:
    """One stage of a chain run live: the task's stage, a model, a sample count, the aggregation
    and the prompt style (chat or completion)."""

    stage: str
    model: str
    samples: int
    aggregation: str
    style: str = "chat"


@dataclass(frozen=True)
class ChainRun:
    """What a chain run live gave, per run (question id, repeat)."""

    answers: dict  # run -> the aggregated answer of each stage, in stage order (the last is the pipeline's)
    tokens: dict  # run -> tokens charged as replay charges them (each stage's prompt once, every completion)
    samples: dict  # run -> per stage, the drawn samples' texts
    calls: int  # samples drawn


def run_chain(task, steps: Sequence[ChainStep], runs: Sequence[tuple[str, int]], records: dict,
              backend: Callable[[str], Backend], *, temperature: float, max_tokens: int,
              seed_for: Callable[[int, ChainStep, tuple, str], int],
              progress: Callable[[str], None] | None = None) -> ChainRun:
    """Run a chain live: stage by stage, `samples` fresh outputs of the stage's model per run,
    parsed by the task, aggregated (`aggregate`, exactly as replay), the aggregated answer fed
    into the next stage's prompt. `collect live-check` and `collect live` both run through here.

    Parameters
    ----------
    task:
        The collect task (prompts, parser, scorer).
    steps:
        The stages in order.
    runs:
        (question id, repeat) pairs; every question id is a key of `records`.
    records:
        Question id -> `Record`.
    backend:
        Model name -> its `Backend` (the caller creates and closes them).
    temperature, max_tokens:
        Sampling settings of every request.
    seed_for:
        `(stage index, step, run, upstream context) -> pool seed` of that run's samples.
    """
    say = progress or (lambda s: None)
    upstream = {run: "" for run in runs}
    tokens = {run: 0 for run in runs}
    answers: dict[tuple, list[str]] = {run: [] for run in runs}
    texts: dict[tuple, list[list[str]]] = {run: [] for run in runs}
    calls = 0
    for si, step in enumerate(steps):
        ctxs = {run: ("" if si == 0 else upstream[run]) for run in runs}
        prompts = [stage_prompt(task, step.style, step.stage, records[run[0]], ctxs[run]) for run in runs]
        seeds = [seed_for(si, step, run, ctxs[run]) for run in runs]
        say(f"stage {step.stage}, {step.model} x {step.samples}, {len(runs)} runs")
        out = generate_checked(backend(step.model), step.model, prompts, step.samples, temperature, max_tokens, seeds)
        for run, samples in zip(runs, out):
            _, upstream[run], n_tokens = take_samples(task, step.stage, step.aggregation, samples, records[run[0]])
            answers[run].append(upstream[run])
            texts[run].append([s.text for s in samples])
            tokens[run] += n_tokens
            calls += len(samples)
    return ChainRun(answers=answers, tokens=tokens, samples=texts, calls=calls)


def generate_checked(backend: Backend, model: str, prompts: list, n: int, temperature: float, max_tokens: int,
                     seeds: list[int]) -> list:
    """`backend.generate`, checked: one result per prompt and `n` samples in each, else a
    BackendError naming the model (a live run must not score what it did not ask for)."""
    out = backend.generate(prompts, n, temperature, max_tokens, seeds)
    if len(out) != len(prompts):
        raise BackendError(f"backend for {model!r}", f"returned {len(out)} results for {len(prompts)} prompts")
    if any(len(samples) != n for samples in out):
        raise BackendError(f"backend for {model!r}", "returned the wrong number of samples")
    return out


def take_samples(task, stage: str, aggregation: str, samples: list, record) -> tuple[list, str, int]:
    """One run's samples of one call, as replay takes them: parsed and scored by the task, then
    aggregated; returns the parsed answers, the aggregated answer and the call's tokens (the
    prompt once plus every completion)."""
    parsed = [task.parse(stage, s.text, record) for s in samples]
    scores = task.score_many(stage, parsed, record)
    n_tokens = int(samples[0].prompt_tokens) + sum(int(s.completion_tokens) for s in samples)
    return parsed, aggregate(aggregation, parsed, scores), n_tokens


def live_check(store, configs: Sequence[str], make_backend: Callable[[str, str], Backend], *,
               data: str | Path | None = None, questions=None, repeats: int = 1, seed: int = 1,
               replicates: int = 2000, progress: Callable[[str], None] | None = None) -> LiveCheckReport:
    """Run `configs` live on the store's questions and compare with their replay.

    Parameters
    ----------
    store:
        A `replay.Store` collected by `collect run` (its provenance names the task, data and models).
    configs:
        Configurations as `replay` reads them ('MODEL:S,MODEL:S', one per stage).
    make_backend:
        `(model_id, prompt_style) -> Backend`, for each model the configurations use.
    data:
        The question file, when it is no longer at the path the store recorded (its SHA-256 must
        match the recorded one).
    questions:
        None (all), a split name, or question ids.
    repeats:
        Live runs per question (different seeds); the live score of a question is their mean.
    seed:
        Base of the live seeds (distinct from the collection's, checked per pool).
    replicates:
        Replay draws per question for the prediction.
    """
    from replay.engine import as_config

    from .tasks import get_task

    say = progress or (lambda s: None)
    if repeats < 1:
        raise InputError("--repeats", f"must be at least 1, got {repeats}")
    prov = store.manifest.provenance or {}
    src = prov.get("source") or {}
    if store.manifest.synthetic or "task" not in src:
        raise InputError(store.path, "live-check needs a store collected by `collect run` (its provenance names the "
                                     "task and data); this one was not")
    task = get_task(src["task"])
    path = Path(data) if data is not None else question_file(store, src)
    if not path.exists():
        raise InputError(path, "the store's question file is not there; pass --data with a copy of it")
    if src.get("data_sha256") and data_sha256(task, path) != src["data_sha256"]:
        raise InputError(path, "is not the question file this store was collected from (SHA-256 differs)")
    records = {r.id: r for r in task.load(path)}
    qidx = store.question_indices(questions)
    qids = [store.question_ids[i] for i in qidx]
    missing = [q for q in qids if q not in records]
    if missing:
        raise InputError(path, f"has no question {missing[0]!r} of the store")
    model_ids = {m["name"]: m["model_id"] for m in prov.get("models", [])}
    sampling = prov.get("sampling") or {}
    temperature = float(sampling.get("temperature", 0.9))
    max_tokens = int(sampling.get("max_tokens", 1024))
    collect_seed = int(sampling.get("seed", 0))
    collected = int(sampling.get("samples_per_pool", 0))
    styles = (prov.get("backend") or {}).get("prompt_styles") or {}
    stages = list(task.stages)
    aggs = [st.aggregation for st in store.manifest.stages]
    if any(a == "llm_fuse" for a in aggs):
        raise InputError(store.path, "live-check of llm_fuse stages is not supported (fusions are stored calls)")
    keys = store.samples.select("stage", "model", "question_id", "context").unique()
    have = {tuple(r) for r in keys.iter_rows()}

    backends: dict[str, Backend] = {}

    def backend(model: str) -> Backend:
        if model not in backends:
            backends[model] = make_backend(model_ids.get(model, model), styles.get(model, "chat"))
        return backends[model]

    rows, per_q = [], []
    try:
        for text in configs:
            cfg = as_config(store, text)
            t0 = time.time()
            runs = [(q, r) for q in qids for r in range(repeats)]
            steps = [ChainStep(stages[si].name, ch.model, ch.samples, aggs[si], styles.get(ch.model, "chat"))
                     for si, ch in enumerate(cfg.stages)]

            def seed_for(si, step, run, ctx):
                return _live_seed(seed, collect_seed, step.stage, step.model, run[0], ctx, run[1], step.samples,
                                  collected)

            done = run_chain(task, steps, runs, records, backend, temperature=temperature, max_tokens=max_tokens,
                             seed_for=seed_for, progress=lambda s: say(f"{cfg}: {s}"))
            answers, tokens, calls = done.answers, done.tokens, done.calls
            upstream = {run: answers[run][-1] for run in runs}
            # later-stage runs whose upstream answer has no pool in the store (replay fell back there)
            later = len(runs) * (len(steps) - 1)
            uncollected = sum((steps[si].stage, steps[si].model, q, answers[(q, r)][si - 1]) not in have
                              for si in range(1, len(steps)) for q, r in runs)
            last = stages[len(cfg.stages) - 1].name
            live = {run: float(task.score(last, upstream[run], records[run[0]])) for run in runs}
            # the replay's prediction, per question
            rp_score, rp_tok, rp_fb = [], [], []
            for q in qids:
                e = store.evaluate(cfg, questions=[q], replicates=replicates, seed=0)
                rp_score.append(e.score)
                rp_tok.append(e.tokens)
                rp_fb.append(e.fallback_rate)
            rp_score, rp_tok = np.array(rp_score), np.array(rp_tok)
            lv_score = np.array([np.mean([live[(q, r)] for r in range(repeats)]) for q in qids])
            lv_tok = np.array([np.mean([tokens[(q, r)] for r in range(repeats)]) for q in qids])
            d, dt = lv_score - rp_score, lv_tok - rp_tok
            rows.append(LiveCheckRow(
                config=str(cfg), questions=len(qids), repeats=repeats,
                live_score=float(lv_score.mean()), live_score_ci=bootstrap_ci(lv_score, seed=1),
                replay_score=float(rp_score.mean()), replay_score_ci=bootstrap_ci(rp_score, seed=2),
                score_diff=float(d.mean()), score_diff_ci=bootstrap_ci(d, seed=3),
                live_tokens=float(lv_tok.mean()), replay_tokens=float(rp_tok.mean()),
                token_diff=float(dt.mean()), token_diff_ci=bootstrap_ci(dt, seed=4),
                replay_fallback=float(np.mean(rp_fb)), live_uncollected=uncollected / later if later else 0.0,
                calls=calls, seconds=time.time() - t0))
            for qi, q in enumerate(qids):
                for r in range(repeats):
                    per_q.append({"config": str(cfg), "question_id": q, "repeat": r, "live_score": live[(q, r)],
                                  "live_tokens": tokens[(q, r)], "live_answers": answers[(q, r)],
                                  "replay_score": float(rp_score[qi]), "replay_tokens": float(rp_tok[qi])})
    finally:
        for b in backends.values():
            b.close()
    settings = {"configs": list(configs), "repeats": repeats, "seed": seed, "replicates": replicates,
                "questions": len(qids), "temperature": temperature, "max_tokens": max_tokens,
                "prompt_styles": styles, "data": str(path)}
    return LiveCheckReport(store=store.name, rows=tuple(rows), per_question=tuple(per_q), settings=settings)


def format_table(report: LiveCheckReport) -> str:
    """A Markdown table of the report (the form the README quotes)."""
    head = ("| config | live score [95% CI] | replay score [95% CI] | live - replay [95% CI, paired] | agrees "
            "| live tokens/q | replay tokens/q | tokens live - replay [95% CI] | replay fallback | live uncollected |")
    out = [head, "| " + " | ".join(["---"] * 10) + " |"]
    for r in report.rows:
        out.append(
            f"| `{r.config}` | {r.live_score:.3f} [{r.live_score_ci[0]:.3f}, {r.live_score_ci[1]:.3f}] "
            f"| {r.replay_score:.3f} [{r.replay_score_ci[0]:.3f}, {r.replay_score_ci[1]:.3f}] "
            f"| {r.score_diff:+.3f} [{r.score_diff_ci[0]:+.3f}, {r.score_diff_ci[1]:+.3f}] | {'yes' if r.agrees else 'NO'} "
            f"| {r.live_tokens:,.1f} | {r.replay_tokens:,.1f} "
            f"| {r.token_diff:+.1f} [{r.token_diff_ci[0]:+.1f}, {r.token_diff_ci[1]:+.1f}] "
            f"| {r.replay_fallback:.1%} | {r.live_uncollected:.1%} |")
    return "\n".join(out)


def write_report(report: LiveCheckReport, out: str | Path) -> Path:
    """`out/summary.json` (rows and settings) and `out/per_question.jsonl`, each written atomically."""
    from replay.atomic import atomic_path

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"store": report.store, "settings": report.settings,
               "rows": [{**asdict(r), "agrees": r.agrees} for r in report.rows]}
    with atomic_path(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    with atomic_path(out / "per_question.jsonl") as tmp:
        tmp.write_text("".join(json.dumps(x) + "\n" for x in report.per_question))
    return out
