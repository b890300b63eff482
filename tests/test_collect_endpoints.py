"""Collection against llama.cpp-like servers: the `numseq` task, `--prompt-style completion`,
responses that are not the API's, `--timeout`, credentials in the base URL, and `collect
live-check`, all against a scripted local server (`tests/fakeopenai.py`: one choice per request
whatever `n` says, as llama.cpp's server)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import replay
from collect.backends.openai_compat import OpenAIBackend
from replay.redact import redact_url, scrub
from collect.live import bootstrap_ci, live_check, question_file
from collect.tasks import get_task
from collect.tasks.numseq import canonical_int, generate_questions
from replay.errors import InputError

from chatserver import run_cli
from fakeopenai import FakeOpenAI, numseq_script

MODELS = "small-135M,base-270M"


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    monkeypatch.setattr(OpenAIBackend, "retry_delay_s", 0.01)


@pytest.fixture
def data(tmp_path):
    p = tmp_path / "numseq.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in generate_questions(6, seed=3)))
    return p


def _run(capsys, data, url, out, *extra):
    return run_cli(["run", "--task", "numseq", "--data", str(data), "--models", MODELS, "--backend", "openai",
                    "--base-url", url, "--samples", "4", "--max-tokens", "8", "--expand", "2", "--concurrency", "1",
                    "--prompt-style", "base-270M=completion", "--out", str(out), "--quiet", *extra], capsys)


# --------------------------------------------------------------------------------------------
# the task


def test_numseq_questions_prompts_parsing_scoring(tmp_path):
    recs = generate_questions(40, seed=0)
    assert recs == generate_questions(40, seed=0) and recs != generate_questions(40, seed=1)
    assert len({r["question"] for r in recs}) == 40
    task = get_task("numseq")
    p = tmp_path / "q.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in recs))
    loaded = task.load(p)
    r = loaded[0]
    m = r.metadata
    assert task.stage_gold("first", r) == str(m["start"] + 4 * m["step"])
    assert task.gold(r) == str(m["first"] + 4 * m["step2"])
    assert task.score("first", str(m["first"]), r) == 1.0 and task.score("first", "", r) == 0.0
    assert task.score("second", task.gold(r), r) == 1.0 and task.score("second", str(m["first"]), r) == 0.0
    # stage 2 continues from the upstream answer, whatever it is
    cp = task.completion_prompt("second", r, "100")
    assert cp.text.endswith(f"Numbers: 100, {100 + m['step2']}, {100 + 2 * m['step2']}, {100 + 3 * m['step2']}\nNext:")
    assert cp.stop == ("\n",) and cp.text.count("Next:") == 5
    chat = task.prompt("first", r, "")
    assert len(chat) == 9 and chat[-1]["content"].endswith(r.question)
    assert task.completion_prompt("second", r, "no number").text.endswith("Numbers: 0, " + str(m["step2"]) + ", "
                                                                          + str(2 * m["step2"]) + ", "
                                                                          + str(3 * m["step2"]) + "\nNext:")
    assert [canonical_int(t) for t in ["Next: 17", " 5, 6,", "The next number is 42.", "none", "-3"]] == \
        ["17", "5", "42", "", "-3"]
    bad = dict(recs[0], gold="1")
    p.write_text(json.dumps(bad) + "\n")
    with pytest.raises(InputError, match="gold is not first"):
        task.load(p)


# --------------------------------------------------------------------------------------------
# prompt styles


def test_completion_style_end_to_end_and_reproducible(tmp_path, data, capsys):
    with FakeOpenAI(numseq_script()) as srv:
        code, out, err = _run(capsys, data, srv.base_url, tmp_path / "a")
        assert code == 0, err
        chat = [b for p, b, _ in srv.requests if p.endswith("/chat/completions")]
        comp = [b for p, b, _ in srv.requests if p.rstrip("/").endswith("/v1/completions")]
        assert chat and comp and len(chat) + len(comp) == len(srv.requests)
        assert {b["model"] for b in chat} == {"small-135M"} and {b["model"] for b in comp} == {"base-270M"}
        assert all(b["stop"] == ["\n"] and b["prompt"].endswith("Next:") for b in comp)
        # one choice per request: the backend re-asks with the next seed
        assert all(b["n"] in (1, 2, 3, 4) for _, b, _ in srv.requests)
        code2, _, err2 = _run(capsys, data, srv.base_url, tmp_path / "b")
        assert code2 == 0, err2
    a, b = replay.open(tmp_path / "a"), replay.open(tmp_path / "b")
    cols = ["question_id", "stage", "model", "context", "sample_index", "answer", "score", "completion_tokens"]
    assert a.samples.select(cols).sort(cols[:5]).equals(b.samples.select(cols).sort(cols[:5]))
    assert a.manifest.provenance["backend"]["prompt_styles"] == {"small-135M": "chat", "base-270M": "completion"}
    s1 = a.samples.filter(pl.col("stage") == "first")
    assert 0.0 < float(s1["score"].mean()) < 1.0  # the script is right two times in three
    r = a.evaluate("small-135M:4,base-270M:4", replicates=50)
    assert 0.0 <= r.score <= 1.0 and r.tokens > 0


def test_prompt_style_errors(tmp_path, data, capsys):
    code, _, err = run_cli(["run", "--task", "math", "--data", str(data), "--models", "m-1B", "--backend", "openai",
                            "--base-url", "http://127.0.0.1:9/v1", "--prompt-style", "completion",
                            "--out", str(tmp_path / "x"), "--quiet"], capsys)
    assert code == 2 and "no few-shot completion prompt" in err and len(err.strip().splitlines()) == 1
    code, _, err = _run(capsys, data, "http://127.0.0.1:9/v1", tmp_path / "y", "--prompt-style", "other=completion")
    assert code == 2 and "'other' is not one of the models" in err
    code, _, err = _run(capsys, data, "http://127.0.0.1:9/v1", tmp_path / "y", "--prompt-style", "base-270M=poem")
    assert code == 2 and "unknown style 'poem'" in err
    code, _, err = _run(capsys, data, "http://127.0.0.1:9/v1", tmp_path / "y", "--timeout", "0")
    assert code == 2 and "--timeout" in err


# --------------------------------------------------------------------------------------------
# responses that are not the API's; timeouts


@pytest.mark.parametrize("fault, words", [("html", "not the API's JSON"), ("empty", "no choices"),
                                          ("truncated", "not valid JSON"), ("nousage", "no token usage")])
def test_malformed_responses_are_retried_then_one_line_exit_3(tmp_path, data, capsys, fault, words):
    with FakeOpenAI(numseq_script(), fault=fault) as srv:
        code, _, err = _run(capsys, data, srv.base_url, tmp_path / "s", "--retries", "2")
        assert code == 3, err
        lines = err.strip().splitlines()
        assert len(lines) <= 2 and "Traceback" not in err and words in lines[-1] and "gave up after 3 tries" in lines[-1]
        # the first request asked three times (the HTTP client may redo one whose connection the
        # server dropped), then stop: nothing after the failure
        assert 3 <= len(srv.requests) <= 4
    # a fault that passes: retried, then the run completes
    with FakeOpenAI(numseq_script(), fault=fault, fault_count=2) as srv:
        code, _, err = _run(capsys, data, srv.base_url, tmp_path / f"ok-{fault}", "--retries", "2")
        assert code == 0, err
    assert replay.open(tmp_path / f"ok-{fault}").samples.height > 0


def test_timeout_bounds_a_stalled_endpoint(tmp_path, data, capsys):
    with FakeOpenAI(numseq_script(), delay=20.0) as srv:
        t0 = time.time()
        code, _, err = _run(capsys, data, srv.base_url, tmp_path / "s", "--timeout", "0.3", "--retries", "1")
        took = time.time() - t0
    assert code == 3 and "Timeout" in err and "Traceback" not in err
    # two tries of 0.3 s and a backoff (seconds under load), not the server's 20 s per request
    assert took < 15.0 and len(srv.requests) == 2


# --------------------------------------------------------------------------------------------
# credentials in the base URL


def test_redact_url():
    assert redact_url("http://user:key@host:8000/v1") == "http://***@host:8000/v1"
    assert redact_url("https://host/v1?api_key=abc&x=1") == "https://host/v1?api_key=***&x=1"
    assert redact_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"
    assert redact_url(None) is None
    assert scrub("failed at http://u:p4ss@h/v1 with p4ss", "http://u:p4ss@h/v1") == "failed at http://***@h/v1 with ***"


def test_credentials_in_the_base_url_are_never_written(tmp_path, data, capsys):
    secret = "s3cr3tKEY"
    with FakeOpenAI(numseq_script()) as srv:
        url = f"http://alice:{secret}@127.0.0.1:{srv.port}/v1"
        code, out, err = _run(capsys, data, url, tmp_path / "s", "--keep-raw")
        assert code == 0, err
        auth = {h.get("Authorization", "") for _, _, h in srv.requests}
        assert auth  # the client still authenticates with them (basic auth from the URL)
    assert secret not in out + err
    for f in [*(tmp_path / "s").rglob("*"), *(tmp_path / "s.raw").rglob("*")]:
        if f.is_file():
            assert secret.encode() not in f.read_bytes(), f
    prov = replay.open(tmp_path / "s").manifest.provenance
    assert prov["backend"]["base_url"] == f"http://***@127.0.0.1:{srv.port}/v1" and "***@" in prov["command"]
    # a failing endpoint: the error line, the checkpoint and `collect status` keep it out too
    with FakeOpenAI(numseq_script(), fault="empty") as srv:
        url = f"http://alice:{secret}@127.0.0.1:{srv.port}/v1"
        code, out, err = _run(capsys, data, url, tmp_path / "f", "--retries", "0")
    assert code == 3 and secret not in err and "***@127.0.0.1" in err
    for f in (tmp_path / "f.partial").rglob("*"):
        assert secret.encode() not in f.read_bytes(), f
    code, out, err = run_cli(["status", str(tmp_path / "f")], capsys)
    assert secret not in out + err


# --------------------------------------------------------------------------------------------
# live-check


def test_bootstrap_ci():
    assert bootstrap_ci(np.array([0.5, 0.5])) == (0.5, 0.5)
    lo, hi = bootstrap_ci(np.array([0.0, 1.0] * 20))
    assert lo < 0.5 < hi and hi - lo < 0.4


def test_live_check_plumbing(tmp_path, data, capsys):
    with FakeOpenAI(numseq_script()) as srv:
        code, _, err = _run(capsys, data, srv.base_url, tmp_path / "s")
        assert code == 0, err
        collected = {b["seed"] for _, b, _ in srv.requests}
        n_collect = len(srv.requests)
        configs = ["small-135M:1,base-270M:1", "base-270M:3,small-135M:2"]
        # the store carries its question file: a copy elsewhere (a clone) finds it without --data
        src = replay.open(tmp_path / "s").manifest.provenance["source"]
        assert src["data_copy"] == f"source/{data.name}"
        assert (tmp_path / "s" / src["data_copy"]).read_bytes() == data.read_bytes()
        shutil.copytree(tmp_path / "s", tmp_path / "clone" / "s")
        assert question_file(replay.open(tmp_path / "clone" / "s"), src) == tmp_path / "clone" / "s" / src["data_copy"]
        code, out, err = run_cli(["live-check", str(tmp_path / "clone" / "s"), "--base-url", srv.base_url, "-c", configs[0],
                                  "-c", configs[1], "--replicates", "200", "--out", str(tmp_path / "live")], capsys)
        assert code == 0, err
        live_reqs = srv.requests[n_collect:]
        assert len(live_reqs) == 6 * (1 + 1) + 6 * (3 + 2)  # fresh calls, one per sample
        assert not ({b["seed"] for _, b, _ in live_reqs} & collected)  # fresh seeds
        # the same live seed again: the same live results (the server honours seeds)
        st = replay.open(tmp_path / "s")

        def make(model_id, style):
            return OpenAIBackend(model_id, base_url=srv.base_url, max_concurrency=1, prompt_style=style)

        r1 = live_check(st, configs, make, replicates=200)
        r2 = live_check(st, configs, make, replicates=200)
        r3 = live_check(st, configs, make, replicates=200, seed=7, repeats=2)
    assert "| config |" in out and configs[0] in out
    summary = json.loads((tmp_path / "live" / "summary.json").read_text())
    assert [r["config"] for r in summary["rows"]] == configs
    per_q = [json.loads(x) for x in (tmp_path / "live" / "per_question.jsonl").read_text().splitlines()]
    assert len(per_q) == 12 and {p["config"] for p in per_q} == set(configs)
    for row in r1.rows:
        assert row.questions == 6 and row.repeats == 1
        assert row.live_score_ci[0] <= row.live_score <= row.live_score_ci[1]
        assert row.score_diff_ci[0] <= row.score_diff <= row.score_diff_ci[1]
        assert row.score_diff == pytest.approx(row.live_score - row.replay_score)
        assert row.live_tokens > 0 and row.replay_tokens > 0
    assert [p["live_score"] for p in r1.per_question] == [p["live_score"] for p in r2.per_question]
    assert len(r3.per_question) == 24 and r3.rows[0].repeats == 2
    assert r1.rows[0].calls == 12 and r1.rows[1].calls == 30


def test_the_shipped_real_store_is_self_contained(tmp_path):
    """traces/tiny-real-numseq names its question file relative to itself: a clone elsewhere
    finds it, and its SHA-256 is the recorded one."""
    from collect.run.settings import data_sha256
    from collect.tasks import get_task

    shipped = Path(__file__).resolve().parents[1] / "traces" / "tiny-real-numseq"
    shutil.copytree(shipped, tmp_path / "clone")
    st = replay.open(tmp_path / "clone")
    src = st.manifest.provenance["source"]
    assert not Path(src["data"]).is_absolute()
    p = question_file(st, src)
    assert p == tmp_path / "clone" / "questions.jsonl"
    assert data_sha256(get_task(src["task"]), p) == src["data_sha256"]


def test_live_check_agrees_with_replay_on_a_deterministic_model(tmp_path, data, capsys):
    """A model that is always right: replay predicts 1.0, live gives 1.0, and the tokens match."""
    with FakeOpenAI(numseq_script(correct_every=0)) as srv:
        code, _, err = _run(capsys, data, srv.base_url, tmp_path / "s")
        assert code == 0, err
        st = replay.open(tmp_path / "s")

        def make(model_id, style):
            return OpenAIBackend(model_id, base_url=srv.base_url, max_concurrency=1, prompt_style=style)

        rep = live_check(st, ["small-135M:2,base-270M:2"], make, replicates=50)
    row = rep.rows[0]
    assert row.live_score == row.replay_score == 1.0 and row.agrees
    assert row.live_tokens == pytest.approx(row.replay_tokens) and row.live_uncollected == 0.0


def test_live_check_refuses_a_store_it_cannot_rerun(tmp_path, data, capsys):
    with FakeOpenAI(numseq_script()) as srv:
        assert _run(capsys, data, srv.base_url, tmp_path / "s")[0] == 0
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps(r) + "\n" for r in generate_questions(6, seed=4)))
    code, _, err = run_cli(["live-check", str(tmp_path / "s"), "--base-url", "http://127.0.0.1:9/v1",
                            "-c", "small-135M:1,small-135M:1", "--data", str(other)], capsys)
    assert code == 2 and "SHA-256 differs" in err
    code, _, err = run_cli(["live-check", str(Path(__file__).parents[1] / "traces" / "sim-2wiki"),
                            "--base-url", "http://127.0.0.1:9/v1", "-c", "x:1,y:1"], capsys)
    assert code == 2 and "collected by `collect run`" in err
