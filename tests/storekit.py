"""Small random stores in the real format, for tests (written with replay.write_store)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from replay import schema as S
from replay.store import write_store

ITEMS = ["a", "b", "c", "d"]


@dataclass(frozen=True)
class RandomStoreSpec:
    seed: int
    n_questions: int = 4
    aggregations: tuple[str, ...] = ("majority_vote",)
    n_models: int = 2
    max_pool: int = 6
    n_answers: int = 3  # alphabet size: small means many ties
    context_keep: float = 0.7  # share of upstream answers that get a downstream pool
    float_scores: bool = False
    independent: tuple[bool, ...] = ()  # per stage: its pools do not depend on the upstream answer
    score_rule: str = "last"


def _answer(rng, agg: str, k: int) -> str:
    if agg == "set_vote":
        n = int(rng.integers(0, 3))
        return S.ITEM_SEP.join(sorted(set(rng.choice(ITEMS, size=n).tolist())))
    return f"ans{int(rng.integers(0, k))}"


def make_random_store(path: Path, spec: RandomStoreSpec) -> Path:
    rng = np.random.default_rng(spec.seed)
    aggs = spec.aggregations
    n_s = len(aggs)
    models = [S.Model(name=f"m{i}", params=float(rng.choice([1e9, 3e9, 8e9]) * (i + 1))) for i in range(spec.n_models)]
    indep = tuple(spec.independent) + (False,) * (n_s - len(spec.independent))
    stages = tuple(S.Stage(name=f"stage{i}", aggregation=a, scorer="test",
                           dependency="independent" if indep[i] else "conditional") for i, a in enumerate(aggs))
    qids = [f"q{i}" for i in range(spec.n_questions)]
    golds = {}
    for q in qids:
        for s, agg in enumerate(aggs):
            golds[q, s] = _answer(rng, agg, spec.n_answers)
    samples = {k: [] for k in ("question_id", "stage", "model", "context", "sample_index", "answer", "score",
                               "prompt_tokens", "completion_tokens")}
    fusions = {k: [] for k in ("question_id", "stage", "model", "context", "subset", "answer", "score",
                               "prompt_tokens", "completion_tokens")}

    def score_of(q, s, ans):
        if spec.float_scores or aggs[s] == "best_score":
            return float(np.round(rng.random(), 3))
        return 1.0 if ans == golds[q, s] else 0.0

    for q in qids:
        contexts = [S.ROOT_CONTEXT]
        for s, agg in enumerate(aggs):
            if indep[s]:
                contexts = [S.ROOT_CONTEXT]  # one pool per (question, model), whatever came before
            produced = set()
            for mi, m in enumerate(models):
                for ci, ctx in enumerate(contexts):
                    # every (q, s, m) keeps its first context; others are dropped at random
                    if ci > 0 and rng.random() > spec.context_keep:
                        continue
                    n = int(rng.integers(1, spec.max_pool + 1))
                    prompt = int(rng.integers(0, 50))
                    answers = []
                    for j in range(n):
                        a = _answer(rng, agg, spec.n_answers)
                        answers.append(a)
                        produced.add(a)
                        samples["question_id"].append(q)
                        samples["stage"].append(stages[s].name)
                        samples["model"].append(m.name)
                        samples["context"].append(ctx)
                        samples["sample_index"].append(j)
                        samples["answer"].append(a)
                        samples["score"].append(score_of(q, s, a))
                        samples["prompt_tokens"].append(prompt)
                        samples["completion_tokens"].append(int(rng.integers(1, 100)))
                    if agg == "llm_fuse":
                        seen = set()  # a store holds each fusion call once (identical rows are refused)
                        for _ in range(int(rng.integers(1, 4))):
                            size = int(rng.integers(1, n + 1))
                            subset = sorted(rng.choice(n, size=size, replace=False).tolist())
                            a = _answer(rng, "majority_vote", spec.n_answers)
                            pt, ct = int(rng.integers(10, 60)), int(rng.integers(1, 30))
                            if (tuple(subset), a, pt, ct) in seen:
                                continue
                            seen.add((tuple(subset), a, pt, ct))
                            produced.add(a)
                            fusions["question_id"].append(q)
                            fusions["stage"].append(stages[s].name)
                            fusions["model"].append(m.name)
                            fusions["context"].append(ctx)
                            fusions["subset"].append(subset)
                            fusions["answer"].append(a)
                            fusions["score"].append(score_of(q, s, a))
                            fusions["prompt_tokens"].append(pt)
                            fusions["completion_tokens"].append(ct)
            contexts = sorted(produced)
            if not contexts:
                contexts = [""]
    questions = {
        "question_id": qids,
        "split": ["train" if i % 2 == 0 else "test" for i in range(len(qids))],
        "gold": [golds[q, n_s - 1] for q in qids],
        "metadata": [json.dumps({"i": i}) for i in range(len(qids))],
    }
    stage_golds = None
    if n_s > 1:
        stage_golds = {
            "question_id": [q for q in qids for s in range(n_s - 1)],
            "stage": [stages[s].name for q in qids for s in range(n_s - 1)],
            "gold": [golds[q, s] for q in qids for s in range(n_s - 1)],
        }
    manifest = S.Manifest(
        name=f"test-random-{spec.seed}",
        stages=stages,
        models=tuple(models),
        synthetic=True,
        provenance={"generator": "tests/storekit.py", "spec": repr(spec)},
        split={"train": tuple(qids[0::2]), "test": tuple(qids[1::2])},
        score_rule=spec.score_rule,
    )
    has_fuse = "llm_fuse" in aggs
    return write_store(path, manifest, questions, samples, fusions=fusions if has_fuse else None,
                       stage_golds=stage_golds)
