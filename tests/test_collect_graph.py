"""Graph collection (`collect run --graph`) for MATH, MMLU and HumanEval: the loaders on the
official formats (project-made fixtures), HumanEval's pass/fail signatures in the sandbox, and
end-to-end runs against the local scripted OpenAI-compatible server, with resume."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import polars as pl
import pytest

import replay
from collect.backends.openai_compat import OpenAIBackend
from collect.run import RunSettings, parse_models, run_collection
from collect.run.graph import graph_keys, multiset_probability
from collect.tasks import get_task
from collect.tasks.humaneval import HumanEvalTask, split_tests
from collect.tasks.mmlu import parse_letter
from replay.errors import InputError
from replay.graph import parse_input_key
from replay.graph.engine import evaluate_graph

from chatserver import ChatServer, run_cli

FIXTURES = Path(__file__).parent / "fixtures"
SKILL = {"small-1B": 0.4, "big-8B": 0.85}


def _rng(body, i):
    return random.Random(f"{body.get('seed')}/{body['model']}/{i}/{body['messages'][-1]['content']}")


# ---------------------------------------------------------------------------------------------
# Loaders on the official formats


def test_math_loader_reads_the_math_release_folder(tmp_path):
    t = get_task("math")
    recs = t.load(FIXTURES / "math")
    assert [r.id for r in recs] == ["test/algebra/1", "test/algebra/2", "test/number_theory/7", "test/number_theory/9"]
    assert [t.gold(r) for r in recs] == ["11", "8", "2", "3/4"]
    assert recs[0].metadata == {"level": "Level 1", "type": "Algebra"}
    # the same problems as JSONL (the Hugging Face copies), ids from unique_id
    rows = [{**json.loads(p.read_text()), "unique_id": f"u{i}"} for i, p in enumerate(sorted((FIXTURES / "math").rglob("*.json")))]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert [r.id for r in t.load(tmp_path / "m.jsonl")] == ["u0", "u1", "u2", "u3"]
    bad = dict(rows[0], solution="no box here")
    (tmp_path / "bad.json").write_text(json.dumps([bad]))
    with pytest.raises(InputError, match=r"bad.json: record 0: the solution has no \\boxed"):
        t.load(tmp_path / "bad.json")


def test_mmlu_loader_and_letters(tmp_path):
    t = get_task("mmlu")
    recs = t.load(FIXTURES / "mmlu")
    assert [r.id for r in recs][:2] == ["abstract_algebra-0", "abstract_algebra-1"] and len(recs) == 5
    assert [t.gold(r) for r in recs] == ["C", "B", "B", "C", "B"]
    assert "C. 2" in t.prompt("solve", recs[0], "")[0]["content"]
    assert parse_letter("I think (B) is wrong.\nAnswer: D") == "D"
    assert parse_letter("the answer is **C**") == "C" and parse_letter("B") == "B" and parse_letter("no idea") == ""
    # the Hugging Face layout: choices as a list, the answer as an index
    pl.DataFrame({"question": ["q?"], "subject": ["x"], "choices": [["a", "b", "c", "d"]], "answer": [3]}).write_parquet(
        tmp_path / "hf.parquet")
    (r,) = t.load(tmp_path / "hf.parquet")
    assert r.id == "x-0" and t.gold(r) == "D"
    (tmp_path / "bad.csv").write_text("q,a,b,c\n")
    with pytest.raises(InputError, match="bad.csv: row 0: 4 columns"):
        t.load(tmp_path / "bad.csv")


def test_humaneval_tests_are_split_and_programs_signed_in_the_sandbox():
    t = HumanEvalTask()
    recs = t.load(FIXTURES / "humaneval" / "HumanEval.jsonl")
    assert [t.gold(r) for r in recs] == ["PPP", "PPPP", "PPP"]  # a loop of asserts is one test; setup is not
    add, even, big = recs
    assert t.parse("solve", "```python\ndef add(a, b):\n    return a + b\n```", add) == "PPP"
    assert t.parse("solve", "```python\ndef add(a, b):\n    return abs(a) + b\n```", add) == "PFP"
    assert t.parse("solve", "```python\n    return a * 1 + b\n```", add) == "PPP"  # a body: the prompt goes first
    assert t.parse("solve", "I cannot do this.", add) == "FFF"
    assert t.parse("solve", "```python\ndef is_even(n):\n    return n % 2 == 0 if n >= 0 else True\n```", even) == "PPPF"
    assert t.parse("solve", "```python\ndef is_even(n):\n    while True:\n        pass\n```", even) == "FFFF"
    assert t.parse("solve", "```python\nimport socket\nsocket.socket()\ndef largest(xs):\n    return max(xs)\n```", big) == "FFF"
    assert t.score("solve", "PPP", add) == 1.0 and t.score("solve", "PPF", add) == 0.0
    with pytest.raises(InputError, match="no check"):
        split_tests("def test():\n    pass\n", "x")


def test_graph_keys_rank_multisets_by_probability():
    dist = {"a": 0.7, "b": 0.2, "c": 0.1}
    assert multiset_probability({"a": 1, "b": 1}, dist) == pytest.approx(2 * 0.7 * 0.2)
    keys = graph_keys(dist, 4, 2)
    assert list(keys) == ['["a"]', '["a","a"]', '["a","b"]', '["b"]']
    assert all(parse_input_key(k) for k in keys)


# ---------------------------------------------------------------------------------------------
# Scripted models


def _boxes(text):
    return re.findall(r"\\boxed\{([^{}]*)\}", text)


MATH_GOLD = {"3 + 4": "11", "2x - 6": "8", "divided by $7$": "2", "frac{1}{2} +": "\\frac{3}{4}"}


def math_script(body, i):
    r = _rng(body, i)
    text = body["messages"][-1]["content"]
    gold = next(v for k, v in MATH_GOLD.items() if k in text)
    skill = SKILL[body["model"]]
    words = " think" * r.randint(0, 6)
    if "candidate" not in text.lower():  # solve
        ans = gold if r.random() < skill else "99"
    else:
        seen = _boxes(text.split("### Candidate", 1)[1]) if "### Candidate" in text else []
        if "Compare them" in text:  # aggregate: picks the gold when it is there and the model is able
            ans = gold if gold in seen and r.random() < skill else (seen[0] if seen else "99")
        else:  # refine: repairs with the model's skill, keeps a right answer
            ans = gold if (gold in seen or r.random() < skill) else "98"
    return f"Let me work.{words} So \\boxed{{{ans}}}."


def mmlu_script(body, i):
    r = _rng(body, i)
    text = body["messages"][-1]["content"]
    gold = {"field extension": "C", "group under addition": "B", "symmetric group": "B", "sodium": "C",
            "boils": "B"}
    g = next(v for k, v in gold.items() if k in text)
    ans = g if r.random() < SKILL[body["model"]] else "A"
    return f"Reasoning{' x' * r.randint(0, 4)}.\nAnswer: {ans}"


HE_CODE = {"add": ("def add(a, b):\n    return a + b", "def add(a, b):\n    return a - b"),
           "is_even": ("def is_even(n):\n    return n % 2 == 0", "def is_even(n):\n    return n > 0"),
           "largest": ("def largest(xs):\n    return max(xs)", "def largest(xs):\n    return xs[0]")}


def he_script(body, i):
    r = _rng(body, i)
    text = body["messages"][-1]["content"]
    fn = next(k for k in HE_CODE if f"def {k}(" in text)
    good, bad = HE_CODE[fn]
    p = SKILL[body["model"]] + (0.1 if "candidate" in text.lower() else 0.0)
    return f"Here it is.\n```python\n{good if r.random() < p else bad}\n```\n"


SCRIPTS = {"math": (math_script, FIXTURES / "math"), "mmlu": (mmlu_script, FIXTURES / "mmlu"),
           "humaneval": (he_script, FIXTURES / "humaneval" / "HumanEval.jsonl")}


def _settings(task, out, **kw):
    return RunSettings(task=task, data=str(SCRIPTS[task][1]), models=tuple(parse_models("small-1B,big-8B")),
                       out=str(out), samples=4, batch_size=2, backend="openai", graph=True, role_samples=2,
                       expand_top=4, aggregate_inputs=3, **kw)


@pytest.mark.parametrize("task", ["math", "mmlu", "humaneval"])
def test_graph_collection_end_to_end(tmp_path, task):
    script, _ = SCRIPTS[task]
    with ChatServer(script) as srv:
        res = run_collection(_settings(task, tmp_path / "g"), lambda m: OpenAIBackend(m.model_id, base_url=srv.base_url,
                                                                                     max_concurrency=2),
                             progress=False, log=lambda s: None)
        prompts = [b["messages"][-1]["content"] for b in srv.requests]
    st = replay.open(res.path)
    m = st.manifest
    assert m.kind == "graph" and m.stage_names == ("solve", "refine", "aggregate") and not m.synthetic
    assert all(x.prefill_tokens_per_s > 0 and x.decode_tokens_per_s > 0 for x in m.models)
    assert m.provenance["throughput"]["big-8B"]["source"] == "measured"
    s = st.samples
    n_q = st.arrays.n_questions
    assert s.filter(pl.col("stage") == "solve").height == n_q * 2 * 4
    keys = s.filter(pl.col("stage") != "solve").select("stage", "question_id", "context").unique()
    assert keys.group_by("stage", "question_id").len()["len"].max() <= 4
    assert all(len(parse_input_key(k)) <= 3 for k in keys["context"])
    assert s.filter(pl.col("stage") != "solve").group_by("stage", "model", "question_id", "context").len()["len"].max() == 2
    # refine prompts show representative outputs of the answers of their key
    assert any("### Candidate" in p for p in prompts)
    golds = dict(zip(st.questions["question_id"], st.questions["gold"]))
    for q, a, sc in s.select("question_id", "answer", "score").iter_rows():
        assert sc == float(a == golds[q])
    # replay: a graph of both families, with its latency
    r = evaluate_graph(st, "s1=solve(big-8B,2); s2=solve(small-1B,2); a=aggregate(big-8B,1|s1,s2)", replicates=16)
    assert r.feasible and 0 <= r.score <= 1 and r.latency > 0 and r.tokens > 0
    assert evaluate_graph(st, "s=solve(big-8B,4)", replicates=32).score > evaluate_graph(st, "s=solve(small-1B,1)",
                                                                                         replicates=32).score


class Interrupt(Exception):
    pass


def test_graph_collection_resumes_to_the_uninterrupted_store(tmp_path):
    with ChatServer(math_script) as srv:
        def make(m):
            return OpenAIBackend(m.model_id, base_url=srv.base_url, max_concurrency=2)

        run_collection(_settings("math", tmp_path / "full", throughput={"small-1B": (1e4, 100.0), "big-8B": (5e3, 50.0)}),
                       make, progress=False, log=lambda s: None)
        calls = {"n": 0}

        class Flaky:
            exclusive = False

            def __init__(self, inner):
                self.inner, self.model = inner, inner.model

            def generate(self, *a, **kw):
                calls["n"] += 1
                if calls["n"] == 6:  # in the refine pools, after every solve pool
                    raise Interrupt()
                return self.inner.generate(*a, **kw)

            def close(self):
                self.inner.close()

        kw = {"throughput": {"small-1B": (1e4, 100.0), "big-8B": (5e3, 50.0)}}
        with pytest.raises(Interrupt):
            run_collection(_settings("math", tmp_path / "resumed", **kw), lambda m: Flaky(make(m)), progress=False,
                           log=lambda s: None)
        assert not (tmp_path / "resumed").exists() and (tmp_path / "resumed.partial").is_dir()
        logs = []
        res = run_collection(_settings("math", tmp_path / "resumed", **kw), make, progress=False, log=logs.append)
        assert res.resumed_pools > 0 and "resuming" in logs[0]
    a, b = replay.open(tmp_path / "full"), replay.open(tmp_path / "resumed")
    assert a.samples.equals(b.samples) and a.questions.equals(b.questions)
    assert a.manifest.models == b.manifest.models and a.manifest.models[0].decode_tokens_per_s == 100.0


def test_graph_collection_bad_input_is_one_line_exit_2(tmp_path, capsys):
    base = ["run", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--models", "a-1B",
            "--out", str(tmp_path / "s"), "--quiet"]
    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"id": 1, "question": "q", "gold": "a", "context": [["A", "x"]],
                              "supporting_facts": [["A", 0]]}) + "\n")
    for args, needle in [(["--task", "qa", "--data", str(qa), "--graph"], "collects no graph stores"),
                         (["--task", "math", "--data", str(FIXTURES / "math"), "--graph", "--throughput", "a-1B=fast"],
                          "not MODEL=PREFILL/DECODE"),
                         (["--task", "math", "--data", str(FIXTURES / "math"), "--graph", "--throughput", "b-2B=1/2"],
                          "not one of the models"),
                         (["--task", "math", "--data", str(FIXTURES / "math"), "--graph", "--aggregate-inputs", "0"],
                          "--aggregate-inputs")]:
        code, out, err = run_cli(base + args, capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and needle in lines[0], (args, err)


def test_collect_run_graph_cli_writes_a_graph_store(tmp_path, capsys):
    with ChatServer(mmlu_script) as srv:
        code, out, err = run_cli(["run", "--task", "mmlu", "--data", str(FIXTURES / "mmlu"), "--graph",
                                  "--models", "small-1B,big-8B", "--samples", "3", "--role-samples", "2",
                                  "--backend", "openai", "--base-url", srv.base_url, "--out", str(tmp_path / "mm"),
                                  "--quiet", "--expand", "3"], capsys)
    assert code == 0, err
    assert "aggregate" in out and "refine" in out
    st = replay.open(tmp_path / "mm")
    assert st.manifest.kind == "graph"
    code, out, err = run_cli(["status", str(tmp_path / "mm")], capsys)
    assert code == 0 and "complete" in out
