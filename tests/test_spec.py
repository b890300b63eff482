"""Allocations you can take away: `replay export` / `search export` write a pipeline spec,
`collect live --spec` runs it on new questions against the scripted local server
(`tests/fakeopenai.py`). The store is collected from that server first (numseq, 6 questions)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest

import replay
from collect.backends.openai_compat import OpenAIBackend
from collect.tasks.numseq import generate_questions
from replay.errors import InputError
from replay.spec import PipelineSpec, read_spec, spec_from_config, write_spec

from chatserver import run_cli
from clikit import run_main
from fakeopenai import FakeOpenAI, numseq_script

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "small-135M:3,base-270M:2"


def replay_cli(argv, capsys):
    from replay.cli import main

    return run_main(main, argv, capsys)


def search_cli(argv, capsys):
    from search.cli import main

    return run_main(main, argv, capsys)


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    monkeypatch.setattr(OpenAIBackend, "retry_delay_s", 0.01)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A numseq store collected from the scripted server (base-270M with completion prompts)."""
    from collect.cli import main

    tmp = tmp_path_factory.mktemp("spec")
    data = tmp / "numseq.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in generate_questions(6, seed=3)))
    with FakeOpenAI(numseq_script()) as srv:
        try:
            main(["run", "--task", "numseq", "--data", str(data), "--models", "small-135M,base-270M",
                  "--backend", "openai", "--base-url", srv.base_url, "--samples", "4", "--max-tokens", "8",
                  "--temperature", "0.7", "--expand", "2", "--concurrency", "1",
                  "--prompt-style", "base-270M=completion", "--out", str(tmp / "s"), "--quiet"])
        except SystemExit as e:
            assert not e.code
    return tmp / "s"


@pytest.fixture
def new_questions(tmp_path):
    p = tmp_path / "new.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in generate_questions(5, seed=11)))
    return p


def test_export_records_what_the_store_knows_and_round_trips(store, tmp_path, capsys):
    code, out, err = replay_cli(["export", str(store), "-c", CONFIG, "--out", str(tmp_path / "spec.json"),
                                 "-r", "50"], capsys)
    assert code == 0, err
    spec = read_spec(tmp_path / "spec.json")
    assert spec.kind == "chain" and spec.task == "numseq" and spec.version == 1
    assert [(s.name, s.model, s.samples, s.aggregation, s.prompt_style) for s in spec.stages] == [
        ("first", "small-135M", 3, "majority_vote", "chat"), ("second", "base-270M", 2, "majority_vote", "completion")]
    assert (spec.sampling.temperature, spec.sampling.max_tokens) == (0.7, 8)  # the collection's, not defaults
    assert not spec.prompts.text_recorded and "numseq" in spec.prompts.source
    assert spec.origin.config == CONFIG and spec.config_text == CONFIG and spec.origin.chosen_from == "config"
    st = replay.open(store)
    e = st.evaluate(CONFIG, questions="test", replicates=50, seed=0)
    assert spec.replay.score == pytest.approx(e.score) and spec.replay.n_questions == len(st.manifest.split["test"])
    assert spec.replay.ci_lo <= spec.replay.score <= spec.replay.ci_hi
    assert spec.notes == ()  # a collected store records task, ids, styles and sampling: nothing to warn of
    # the JSON form reads back to the same spec; a YAML copy too
    assert PipelineSpec.from_dict(spec.to_dict()) == spec
    import yaml

    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec.to_dict()))
    assert read_spec(tmp_path / "spec.yaml") == spec
    assert "first: small-135M x 3, majority_vote, chat prompts" in out


def test_export_of_stores_that_do_not_record_everything_says_so(tmp_path, capsys):
    code, out, err = replay_cli(["export", str(ROOT / "traces" / "aime24"), "-c", "Qwen3-8B:4", "--out",
                                 str(tmp_path / "a.json"), "-r", "20"], capsys)
    assert code == 0, err
    spec = read_spec(tmp_path / "a.json")
    assert spec.task is None and any("names no collect task" in n for n in spec.notes)
    assert any("collect run's defaults" in n for n in spec.notes) and spec.sampling.temperature == 0.9
    assert "note:" in out
    # a graph store exports nodes with role, model, count and parents
    g = "s1=solve(Qwen2.5-7B,2); s2=solve(Llama-3.1-8B,2); r=refine(Qwen2.5-3B,1|s1,s2)"
    code, _, err = replay_cli(["export", str(ROOT / "traces" / "sim-math"), "-c", g, "--out", str(tmp_path / "g.json"),
                               "-r", "10"], capsys)
    assert code == 0, err
    gs = read_spec(tmp_path / "g.json")
    assert gs.kind == "graph" and gs.stages == () and gs.output == ("r",) and gs.origin.synthetic
    assert [(n.name, n.role, n.model, n.samples, n.inputs) for n in gs.nodes] == [
        ("s1", "solve", "Qwen2.5-7B", 2, ()), ("s2", "solve", "Llama-3.1-8B", 2, ()),
        ("r", "refine", "Qwen2.5-3B", 1, ("s1", "s2"))]
    assert replay.graph.Graph.parse(gs.config_text) == replay.graph.Graph.parse(g)


def test_export_bad_input_is_one_line_exit_2(store, tmp_path, capsys):
    out = str(tmp_path / "x.json")
    for argv, words in (
        (["export", str(store), "-c", "small-135M:99,base-270M:1", "--out", out], "largest pool"),
        (["export", str(store), "--out", out], "give exactly one"),
        (["export", str(store), "-c", CONFIG, "--budget", "3", "--out", out], "apply to --from-frontier only"),
        (["export", str(store), "--from-frontier", str(tmp_path / "none.parquet"), "--out", out], "needs the budget"),
    ):
        code, _, err = replay_cli(argv, capsys)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, (argv, err)
    assert not Path(out).exists()


def test_export_from_a_frontier_point(store, tmp_path, capsys):
    f = tmp_path / "frontier.parquet"
    pl.DataFrame({"budget": [1.0, 2.0, 4.0, 1.0, 2.0, 4.0],
                  "config": ["small-135M:1,small-135M:1", "small-135M:2,base-270M:1", CONFIG,
                             "base-270M:1,small-135M:1", "base-270M:2,small-135M:1", "base-270M:4,small-135M:2"],
                  "split": ["train"] * 3 + ["test"] * 3}).write_parquet(f)
    # 3.5 is between grid budgets: the point at the largest budget not above it (2), train's pick by default
    code, _, err = replay_cli(["export", str(store), "--from-frontier", str(f), "--budget", "3.5",
                               "--out", str(tmp_path / "s.json"), "-r", "20"], capsys)
    assert code == 0, err
    spec = read_spec(tmp_path / "s.json")
    assert spec.origin.config == "small-135M:2,base-270M:1" and spec.origin.chosen_from == "frontier"
    assert spec.origin.detail["budget"] == 2.0 and spec.origin.detail["split"] == "train"
    code, _, err = replay_cli(["export", str(store), "--from-frontier", str(f), "--budget", "4", "--split", "test",
                               "--out", str(tmp_path / "t.json"), "-r", "20"], capsys)
    assert code == 0, err
    assert read_spec(tmp_path / "t.json").origin.config == "base-270M:4,small-135M:2"
    pl.DataFrame({"budget": [1.0], "conf": ["x"], "split": ["train"]}).write_parquet(tmp_path / "bad.parquet")
    for path, budget, words in ((f, "0.5", "under the smallest budget"), (tmp_path / "bad.parquet", "1", "no column 'config'"),
                                (f, "nan", "positive, finite")):
        code, _, err = replay_cli(["export", str(store), "--from-frontier", str(path), "--budget", budget,
                                   "--out", str(tmp_path / "e.json")], capsys)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "e.json").exists()


def test_search_export_writes_the_pick(store, tmp_path, capsys):
    code, _, err = search_cli(["run", "--replay", str(store), "--searcher", "random", "--trials", "3", "--no-optimum",
                               "--replicates", "4", "--test-replicates", "8", "--out", str(tmp_path / "bo")], capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / "bo" / "summary.json").read_text())
    code, out, err = search_cli(["export", str(tmp_path / "bo" / "summary.json"), "--out", str(tmp_path / "p.json"),
                                 "-r", "20"], capsys)
    assert code == 0, err
    spec = read_spec(tmp_path / "p.json")
    assert spec.origin.config == summary["best"]["config"] and spec.origin.chosen_from == "search summary"
    assert spec.origin.detail["searcher"] == "random"
    # a controller search picks a policy, not an allocation: refused in one line
    (tmp_path / "c.json").write_text(json.dumps({**summary, "space_kind": "controller"}))
    code, _, err = search_cli(["export", str(tmp_path / "c.json"), "--out", str(tmp_path / "q.json")], capsys)
    assert code == 2 and "not a fixed allocation" in err and not (tmp_path / "q.json").exists()
    (tmp_path / "seeds.json").write_text(json.dumps({"stats": {}, "summaries": [summary]}))
    code, _, err = search_cli(["export", str(tmp_path / "seeds.json"), "--out", str(tmp_path / "q.json")], capsys)
    assert code == 2 and "seed-S/summary.json" in err and not (tmp_path / "q.json").exists()


def test_collect_live_runs_the_spec_on_new_questions(store, tmp_path, new_questions, capsys):
    spec = spec_from_config(replay.open(store), CONFIG, replicates=20)
    write_spec(spec, tmp_path / "spec.json")
    with FakeOpenAI(numseq_script(correct_every=0)) as srv:  # a model that is always right
        code, out, err = run_cli(["live", "--spec", str(tmp_path / "spec.json"), "--data", str(new_questions),
                                  "--base-url", srv.base_url, "--concurrency", "1", "--out", str(tmp_path / "run")],
                                 capsys)
        reqs = list(srv.requests)
    assert code == 0, err
    # 5 new questions x (3 + 2) samples, one request each (the server gives one choice per request)
    assert len(reqs) == 5 * (3 + 2)
    assert [p for p, _, _ in reqs].count("/v1/completions") == 5 * 2  # base-270M's stage: completion prompts
    assert all(b["temperature"] == 0.7 and b["max_tokens"] == 8 for _, b, _ in reqs)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["questions"] == 5 and summary["score"] == 1.0 and summary["calls"] == 25
    per_q = [json.loads(x) for x in (tmp_path / "run" / "per_question.jsonl").read_text().splitlines()]
    gold = {r["id"]: r for r in generate_questions(5, seed=11)}
    for p in per_q:  # the first stage's answer went into the second stage's prompt
        assert p["answers"] == [str(gold[p["question_id"]]["metadata"]["first"]), gold[p["question_id"]]["gold"]]
    # tokens as replay counts them: each stage's prompt once plus every completion (the server's word counts)
    # (prompts: the server's word counts; completions: "Next: N" is 2 words, a completion's " N" is 1)
    chat = sum(len("\n".join(m["content"] for m in b["messages"]).split()) for p, b, _ in reqs if "messages" in b)
    plain = sum(len(b["prompt"].split()) for p, b, _ in reqs if "prompt" in b)
    expected = chat / 3 + plain / 2 + 5 * 3 * 2 + 5 * 2 * 1
    assert sum(p["tokens"] for p in per_q) == expected
    assert summary["tokens_per_question"] == pytest.approx(expected / 5)
    assert "accuracy        1.000" in out and read_spec(tmp_path / "run" / "spec.json") == spec


def test_collect_live_interval_and_repeats(store, tmp_path, new_questions, capsys):
    spec = spec_from_config(replay.open(store), CONFIG, replicates=20)
    write_spec(spec, tmp_path / "spec.json")
    with FakeOpenAI(numseq_script(correct_every=2)) as srv:  # wrong on every other seed
        code, _, err = run_cli(["live", "--spec", str(tmp_path / "spec.json"), "--data", str(new_questions),
                                "--base-url", srv.base_url, "--concurrency", "1", "--repeats", "2", "--limit", "4",
                                "--out", str(tmp_path / "run")], capsys)
    assert code == 0, err
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["questions"] == 4 and s["repeats"] == 2 and s["calls"] == 4 * 2 * 5
    assert 0.0 <= s["score_ci"][0] <= s["score"] <= s["score_ci"][1] <= 1.0 and s["score_ci"][0] < s["score_ci"][1]
    assert s["tokens_ci"][0] <= s["tokens_per_question"] <= s["tokens_ci"][1]


def test_collect_live_bad_spec_is_one_line_exit_2(store, tmp_path, new_questions, capsys):
    good = spec_from_config(replay.open(store), CONFIG, replicates=20).to_dict()
    cases = [
        ("not json {", "not JSON"),
        (json.dumps({**good, "format": "something"}), "not a pipeline spec"),
        (json.dumps({**good, "version": 9}), "newer than this tts-replay reads"),
        (json.dumps({**good, "colour": 1}), "unknown field 'colour'"),
        (json.dumps({**good, "stages": [{**good["stages"][0], "samples": 0}, good["stages"][1]]}), "stages[0].samples"),
        (json.dumps({**good, "stages": good["stages"][:1]}), "are not the stages of task 'numseq'"),
        (json.dumps({**good, "task": None}), "task: null"),
        (json.dumps({**good, "task": "nope"}), "unknown task 'nope'"),
        (json.dumps({**good, "stages": [{**good["stages"][0], "aggregation": "llm_fuse"}, good["stages"][1]]}),
         "is not run live"),
        (json.dumps({**good, "sampling": {"temperature": -1, "max_tokens": 8}}), "sampling.temperature"),
        (json.dumps({**good, "stages": [good["stages"][0], {**good["stages"][1], "model": "small-135M"}]}),
         "give one per model"),
    ]
    for i, (text, words) in enumerate(cases):
        (tmp_path / f"s{i}.json").write_text(text)
        # an unreachable server: every case must be refused before any request
        code, _, err = run_cli(["live", "--spec", str(tmp_path / f"s{i}.json"), "--data", str(new_questions),
                                "--base-url", "http://127.0.0.1:9/v1", "--out", str(tmp_path / "out")], capsys)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, (words, err)
    code, _, err = run_cli(["live", "--spec", str(tmp_path / "missing.json"), "--data", str(new_questions),
                            "--base-url", "http://127.0.0.1:9/v1", "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and "no such spec file" in err
    (tmp_path / "good.json").write_text(json.dumps(good))
    (tmp_path / "afile").write_text("x")
    for extra, words in ((["--out", str(tmp_path / "afile"), "--base-url", "http://127.0.0.1:9/v1"], "is a file"),
                         (["--out", str(tmp_path / "out"), "--backend", "vllm"], "completion prompts need --backend openai")):
        code, _, err = run_cli(["live", "--spec", str(tmp_path / "good.json"), "--data", str(new_questions), *extra],
                               capsys)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, (words, err)
    assert not (tmp_path / "out").exists() and (tmp_path / "afile").read_text() == "x"


def test_collect_live_runs_a_graph_spec(tmp_path, capsys):
    """A graph exported from a (synthetic) graph store, given a task and model ids, runs live:
    solve nodes read the question, the refine node reads their answers' representative outputs."""
    g = "s1=solve(Qwen2.5-7B,2); s2=solve(Llama-3.1-8B,1); r=refine(Qwen2.5-3B,1|s1,s2)"
    spec = spec_from_config(replay.open(ROOT / "traces" / "sim-math"), g, replicates=5)
    with pytest.raises(InputError, match="task: null"):
        from collect.spec_run import check_spec_runnable

        check_spec_runnable(spec, "g.json", backend="openai")
    spec = replace(spec, task="math", nodes=tuple(replace(n, model_id=f"id-{n.model}") for n in spec.nodes))
    write_spec(spec, tmp_path / "g.json")
    data = tmp_path / "q.jsonl"
    data.write_text("".join(json.dumps({"id": f"q{i}", "question": f"What is {i} + {i}?", "gold": str(2 * i)}) + "\n"
                            for i in range(1, 4)))

    def script(prompt, seed):  # solve: one too many; refine (it sees candidates): the right sum
        import re

        i = int(re.search(r"What is (\d+)", prompt).group(1))
        return f"\\boxed{{{2 * i}}}" if "candidate" in prompt else f"I think \\boxed{{{2 * i + 1}}}"

    with FakeOpenAI(script) as srv:
        code, out, err = run_cli(["live", "--spec", str(tmp_path / "g.json"), "--data", str(data),
                                  "--base-url", srv.base_url, "--concurrency", "1", "--out", str(tmp_path / "run")],
                                 capsys)
        reqs = list(srv.requests)
    assert code == 0, err
    assert len(reqs) == 3 * (2 + 1 + 1) and {b["model"] for _, b, _ in reqs} == {f"id-{n.model}" for n in spec.nodes}
    refine = [b for _, b, _ in reqs if "candidate" in b["messages"][-1]["content"]]
    assert len(refine) == 3 and all("I think \\boxed" in b["messages"][-1]["content"] for b in refine)
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["kind"] == "graph" and s["score"] == 1.0  # solve alone would score 0
    per_q = [json.loads(x) for x in (tmp_path / "run" / "per_question.jsonl").read_text().splitlines()]
    assert per_q[0]["answers"] == ["3", "3", "2"]
