"""Shared by the LLM searcher tests (test_llm_searchers, test_llm_endpoint): a small SYNTHETIC
two-stage store, its space, a scripted OpenAI-compatible server, the searchers' answers in the
form the prompts ask for, and a tiny ask/tell runner.

The fixtures are imported by the test modules that use them (`from llmkit import server, ...`).
"""

from __future__ import annotations

import json
import time

import numpy as np
import polars as pl
import pytest

import replay
from replay import schema as S
from replay.engine import Config, StageChoice
from search.protocol import Proposal, Trial
from search.spaces.config import ConfigSpace

from llm_server import ScriptedLLMServer

STAGES = ("retrieve", "answer")
SMALL, LARGE = "tiny-1B", "big-8B"


def build_store(path):
    """SYNTHETIC. 12 questions, 2 stages, 2 models, 8 samples per pool. Stage 2's pools are keyed
    by stage 1's answer ('hit' / 'miss'): after a hit the answer stage is easy."""
    rng = np.random.default_rng(7)
    qids = [f"q{i:02d}" for i in range(12)]
    p_hit = {SMALL: 0.35, LARGE: 0.8}
    p_right = {("hit", SMALL): 0.7, ("hit", LARGE): 0.75, ("miss", SMALL): 0.1, ("miss", LARGE): 0.15}
    rows = []
    for q in qids:
        for m in (SMALL, LARGE):
            for k in range(8):
                hit = rng.random() < p_hit[m]
                rows.append(dict(question_id=q, stage="retrieve", model=m, context="", sample_index=k,
                                 answer="hit" if hit else "miss", score=float(hit), prompt_tokens=200,
                                 completion_tokens=int(rng.integers(40, 60))))
            for ctx in ("hit", "miss"):
                for k in range(8):
                    right = rng.random() < p_right[(ctx, m)]
                    ans = f"gold-{q}" if right else f"wrong-{q}-{int(rng.integers(3))}"
                    rows.append(dict(question_id=q, stage="answer", model=m, context=ctx, sample_index=k,
                                     answer=ans, score=float(right), prompt_tokens=100,
                                     completion_tokens=int(rng.integers(20, 30))))
    manifest = S.Manifest(
        name="sim-llm-test",
        stages=(S.Stage("retrieve"), S.Stage("answer")),
        models=(S.Model(SMALL, 1e9), S.Model(LARGE, 8e9)),
        synthetic=True,
        provenance={"source": "tests/test_llm_searchers.py, synthetic"},
        split={"train": tuple(qids[:8]), "test": tuple(qids[8:])},
    )
    questions = pl.DataFrame({"question_id": qids, "split": ["train"] * 8 + ["test"] * 4,
                              "gold": [f"gold-{q}" for q in qids]})
    golds = pl.DataFrame({"question_id": qids, "stage": ["retrieve"] * len(qids), "gold": ["hit"] * len(qids)})
    return replay.write_store(path, manifest, questions, pl.DataFrame(rows), stage_golds=golds)


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    return build_store(tmp_path_factory.mktemp("llm") / "sim-llm-test")


@pytest.fixture(scope="module")
def store(store_path):
    return replay.open(store_path)


@pytest.fixture(scope="module")
def space(store):
    return ConfigSpace.from_store(store)


@pytest.fixture
def server():
    with ScriptedLLMServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    """The endpoint comes from the test, never from the environment."""
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def answer(trials, guidelines=("g",), **extra) -> str:
    obj = {"guidelines": list(guidelines), "trials": [trial(*t) for t in trials]}
    obj.update(extra)
    return json.dumps(obj)


def trial(m1, n1, m2, n2) -> dict:
    return {"retrieve": {"model": m1, "samples": n1}, "answer": {"model": m2, "samples": n2}}


def drive(searcher, store, n_trials, replicates=8, trials=None):
    """A tiny runner: ask -> replay on train questions -> Trial -> tell. Returns all trials."""
    trials = list(trials or [])
    n_trials += len(trials)
    while len(trials) < n_trials:
        batch = searcher.ask()
        if not batch:
            break
        for p in batch[: n_trials - len(trials)]:
            p = p if isinstance(p, Proposal) else Proposal(p)
            t0 = time.perf_counter()
            r = store.evaluate(p.point, questions="train", replicates=replicates, seed=0, budget=searcher.space.budget)
            t = Trial(number=len(trials), point=p.point, feasible=r.feasible,
                      score=r.score if r.feasible else None, stderr=r.stderr if r.feasible else None,
                      cost=r.units, tokens=r.tokens, wall_s=time.perf_counter() - t0, source=p.source, extra=p.extra)
            trials.append(t)
            searcher.tell(t)
    return trials


def user_text(request) -> str:
    return "\n".join(m["content"] for m in request["messages"] if m["role"] == "user")


def expected_insight1_plan(space):
    est = space.estimate_cost
    plan = []
    n_st = len(space.stages)
    for i in range(n_st):
        for m in space.models[i]:
            others = [StageChoice(space.largest_model(j), 1) for j in range(n_st)]
            at = lambda n: est(Config(tuple(others[:i] + [StageChoice(m, n)] + others[i + 1:])))  # noqa: E731
            fits = [n for n in space.counts[i][m] if at(n) <= space.budget * (1 + 1e-9)]
            if fits:
                c = Config(tuple(others[:i] + [StageChoice(m, max(fits))] + others[i + 1:]))
                if c not in plan:
                    plan.append(c)
    return plan
