"""Drawing pools and stored fusions through a backend, one checkpoint shard per batch.

A stage aggregated by `llm_fuse` has no rule replay could apply to free text or programs, so
the collector asks the same model to fuse subsets of each pool and stores what it returned
(replay draws among these, never calling a model). For every pool, for each size in 2, 4, 8,
... up to the pool size, `fusions` random subsets (in draw order) are fused with the task's
`fuse_prompt`; the reply is parsed and scored like a sample and its own prompt and completion
tokens are stored. A "fusion" of one sample is the sample itself (nothing to fuse, no call, no
tokens): one such row per sample, so replay at one sample is exact.

A backend that answers with the wrong number of samples is a `BackendError` (exit 3), not
bad input.
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict

import polars as pl

from replay.errors import BackendError

from ..backends import Backend, Sample
from ..prompting import stage_prompt
from ..tasks import Task
from .checkpoint import FUSION_SCHEMA, SHARD_SCHEMA, Checkpoint
from .expansion import fusion_subsets
from .settings import ModelSpec, RunSettings, pool_seed


def _bar(progress: bool, total: int, desc: str):
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="pool", file=sys.stderr, dynamic_ncols=True, disable=None)


def backend_for(model: ModelSpec, backends: dict, make_backend) -> Backend:
    if model.name not in backends:
        # an offline engine holds the GPU: free the previous one before loading the next
        for name in list(backends):
            if getattr(backends[name], "exclusive", True):
                backends.pop(name).close()
        backends[model.name] = make_backend(model)
    return backends[model.name]


def draw_pools(task: Task, stage: str, model: ModelSpec, pending, by_id, settings: RunSettings,
                ckpt: Checkpoint, backend: Backend, progress: bool) -> int:
    """Draw the pending pools of one (stage, model), a checkpoint shard per batch."""
    bar = _bar(progress, len(pending), f"{stage} / {model.name}")
    drawn = n_tok = 0
    t_start = time.time()
    for b0 in range(0, len(pending), settings.batch_size):
        batch = pending[b0:b0 + settings.batch_size]
        style = settings.prompt_style(model.name)
        prompts = [stage_prompt(task, style, stage, by_id[q], c) for q, c in batch]
        seeds = [pool_seed(settings.seed, stage, model.name, q, c) for q, c in batch]
        result = backend.generate(prompts, settings.samples, settings.temperature, settings.max_tokens, seeds)
        if len(result) != len(batch) or any(len(r) != settings.samples for r in result):
            raise BackendError(f"backend for {model.name!r}", "returned the wrong number of samples")
        df = _rows(task, stage, model.name, batch, by_id, result)
        ckpt.add(df)
        drawn += df.height
        n_tok += int(df["completion_tokens"].sum())
        if bar is not None:
            dt = max(time.time() - t_start, 1e-9)
            bar.set_postfix_str(f"{drawn / dt:.1f} samples/s, {n_tok / dt:.0f} tok/s", refresh=False)
            bar.update(len(batch))
    if bar is not None:
        bar.close()
    return drawn


def fuse_pools(task: Task, stage: str, model: ModelSpec, todo, by_id, settings: RunSettings,
                ckpt: Checkpoint, backend: Backend, progress: bool) -> None:
    """Stored fusions for the pools of one llm_fuse (stage, model); a shard per batch of pools."""
    rows = ckpt.all_rows().filter((pl.col("stage") == stage) & (pl.col("model") == model.name))
    pools = {(q, c): (a, sc, m) for q, c, a, sc, m in
             rows.sort("sample_index").group_by("question_id", "context", maintain_order=True)
             .agg("answer", "score", "metrics").iter_rows()}
    bar = _bar(progress, len(todo), f"{stage} / {model.name} fusions")
    n_calls = n_tok = 0
    t_start = time.time()
    for b0 in range(0, len(todo), settings.batch_size):
        batch = todo[b0:b0 + settings.batch_size]
        cols: dict[str, list] = {k: [] for k in FUSION_SCHEMA}

        def put(q, c, subset, answer, score, pt, ct, text, metrics):
            for k, v in zip(FUSION_SCHEMA, (q, stage, model.name, c, subset, answer, score, pt, ct, text, metrics)):
                cols[k].append(v)

        calls, prompts, seeds = [], [], []
        for q, c in batch:
            answers, scores, metrics = pools[(q, c)]
            for j, (a, sc, mt) in enumerate(zip(answers, scores, metrics)):
                put(q, c, [j], a, sc, 0, 0, "", mt)  # one sample: nothing to fuse, no call
            for k, subset in enumerate(fusion_subsets(settings.seed, stage, model.name, q, c, len(answers),
                                                      settings.fusions)):
                calls.append((q, c, subset))
                prompts.append(task.fuse_prompt(stage, by_id[q], c, [answers[i] for i in subset]))
                seeds.append(pool_seed(settings.seed, stage, model.name, q, f"{c}\x00fuse{len(subset)}/{k}"))
        if prompts:
            result = backend.generate(prompts, 1, settings.temperature, settings.max_tokens, seeds)
            if len(result) != len(prompts) or any(len(r) != 1 for r in result):
                raise BackendError(f"backend for {model.name!r}", "returned the wrong number of fusions")
            by_q: dict[str, list[int]] = defaultdict(list)
            for n_call, (q, _, _) in enumerate(calls):
                by_q[q].append(n_call)
            answers = [task.parse(stage, smp.text, by_id[q]) for (q, _, _), (smp,) in zip(calls, result)]
            scores: list[float] = [0.0] * len(calls)
            metrics: list[dict] = [{}] * len(calls)
            for q, idx in by_q.items():  # a question's fusions scored together (batched where the task can)
                for k, sc, mt in zip(idx, task.score_many(stage, [answers[k] for k in idx], by_id[q]),
                                     task.metrics_many(stage, [answers[k] for k in idx], by_id[q])):
                    scores[k], metrics[k] = float(sc), mt
            for (q, c, subset), (smp,), ans, sc, mt in zip(calls, result, answers, scores, metrics):
                put(q, c, subset, ans, sc, int(smp.prompt_tokens), int(smp.completion_tokens), smp.text,
                    json.dumps(mt))
                n_tok += int(smp.completion_tokens)
            n_calls += len(prompts)
        ckpt.add_fusions(pl.DataFrame(cols, schema=FUSION_SCHEMA))
        if bar is not None:
            dt = max(time.time() - t_start, 1e-9)
            bar.set_postfix_str(f"{n_calls / dt:.1f} fusions/s, {n_tok / dt:.0f} tok/s", refresh=False)
            bar.update(len(batch))
    if bar is not None:
        bar.close()


def _rows(task: Task, stage: str, model: str, batch, by_id, result: list[list[Sample]]) -> pl.DataFrame:
    cols: dict[str, list] = {k: [] for k in SHARD_SCHEMA}
    for (qid, ctx), samples in zip(batch, result):
        rec = by_id[qid]
        answers = task.parse_many(stage, [smp.text for smp in samples], rec)
        scores = task.score_many(stage, answers, rec)  # a pool at a time: batched where the task can
        metrics = task.metrics_many(stage, answers, rec)
        for j, (smp, ans, sc, mt) in enumerate(zip(samples, answers, scores, metrics)):
            cols["question_id"].append(qid)
            cols["stage"].append(stage)
            cols["model"].append(model)
            cols["context"].append(ctx)
            cols["sample_index"].append(j)
            cols["answer"].append(ans)
            cols["score"].append(float(sc))
            cols["prompt_tokens"].append(int(smp.prompt_tokens))
            cols["completion_tokens"].append(int(smp.completion_tokens))
            cols["text"].append(smp.text)
            cols["finish_reason"].append(smp.finish_reason)
            cols["token_count"].append(smp.token_count)
            cols["metrics"].append(json.dumps(mt))
            cols["request_s"].append(smp.seconds)
    return pl.DataFrame(cols, schema=SHARD_SCHEMA)

