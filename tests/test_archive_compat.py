"""Archives written before the one-framework change (format version 1) still resume.

The fixtures in tests/fixtures/archives were written by the code of commit e7ff199 (see the
README there), one per space kind and searcher family, on the real traces/aime24 store. Each is
copied and resumed with more trials: the archived trials are kept, the searcher carries on
exactly as an uninterrupted search of today's code (the non-LLM searchers), or with its
restored guidelines and counters (the LLM ones), and the file is rewritten in version 2.

Configuration searches archived before the budget rule changed (feasibility by the expected
cost over the store's pools, not by the measured cost of the training draws) cannot be
resumed: their searchers would not propose the same trials. Resuming one is refused in one
line that says why, the file untouched; `search compare` still reads them.
"""

from __future__ import annotations

import json
import shutil

import pytest

import replay
from replay.errors import InputError
from search.archive import VERSION, read_archive
from search.report import compare
from search.runner import make_setup, run_search
from search.settings import ConfigSpaceSettings, ControllerSpaceSettings

from conftest import ROOT, TRACES
from llm_server import ScriptedLLMServer

FIXTURES = ROOT / "tests" / "fixtures" / "archives"
STORE = TRACES / "aime24"

pytestmark = pytest.mark.skipif(not (STORE / "manifest.json").exists(), reason="traces/aime24 not present")


@pytest.fixture(scope="module")
def store():
    return replay.open(str(STORE))


@pytest.fixture(scope="module")
def setups(store):
    ctrl = ControllerSpaceSettings(controller="probe", model="Qwen3-8B", budget_tokens=60000.0)
    return {"config-random": make_setup(store, ConfigSpaceSettings(budget=100.0), replicates=4, test_replicates=8),
            "config-agenttts": make_setup(store, replicates=4, test_replicates=8),
            "controller-bo": make_setup(store, ctrl, replicates=4, test_replicates=8),
            "controller-agenttts": make_setup(store, ctrl, replicates=4, test_replicates=8)}


def copy(name, tmp_path):
    shutil.copytree(FIXTURES / name, tmp_path / name)
    raw = (tmp_path / name / "archive.jsonl").read_text().splitlines()
    assert json.loads(raw[0])["version"] == 1  # what the fixture is
    return tmp_path / name, [json.loads(x) for x in raw[1:]]


def rewritten(path):
    lines = [json.loads(x) for x in (path / "archive.jsonl").read_text().splitlines()]
    assert lines[0]["version"] == VERSION and lines[0]["upgraded_from"] == 1
    assert all("point" in r and "cost" in r and "metrics" in r for r in lines[1:])
    return lines


@pytest.mark.parametrize("name, searcher, n_old, n_new", [("controller-bo", "bo", 5, 8)])
def test_old_archive_resumes_like_an_uninterrupted_search(setups, tmp_path, name, searcher, n_old, n_new):
    setup = setups[name]
    out, old = copy(name, tmp_path)
    resumed = run_search(setup, searcher, seed=0, trials=n_new, out=out, resume=True)
    assert resumed.resumed_from == n_old and len(resumed.trials) == n_new
    fresh = run_search(setup, searcher, seed=0, trials=n_new)
    assert [setup.space.key(t.point) for t in resumed.trials] == [setup.space.key(t.point) for t in fresh.trials]
    assert [t.score for t in resumed.trials] == [t.score for t in fresh.trials]
    assert [t.cost for t in resumed.trials] == pytest.approx([t.cost for t in fresh.trials], rel=1e-12)
    # the archived trials are kept as they were, in the new format
    lines = rewritten(out)
    assert len(lines) == n_new + 1
    for r_old, r_new in zip(old, lines[1:]):
        assert r_new["score"] == r_old["score"] and r_new["feasible"] == r_old["feasible"]
        assert r_new["cost"] == (r_old["units"] if "units" in r_old else r_old["tokens"])
        assert r_new["point"] == (r_old["config"] if "config" in r_old else r_old["params"])


@pytest.mark.parametrize("name, searcher", [("config-random", "random"), ("config-agenttts", "agenttts")])
def test_old_config_archive_under_the_old_budget_rule_is_refused_in_one_line(setups, tmp_path, name, searcher):
    out, old = copy(name, tmp_path)
    before = (out / "archive.jsonl").read_bytes()
    budget = json.loads(before.splitlines()[0])["budget"]
    setup = make_setup(setups[name].store, ConfigSpaceSettings(budget=budget), replicates=4, test_replicates=8)
    with pytest.raises(InputError, match="judged feasibility by the measured cost") as e:
        run_search(setup, searcher, seed=0, trials=9, out=out, resume=True,
                   options={"llm_base_url": "http://127.0.0.1:9/v1", "llm_model": "x"} if searcher == "agenttts" else None)
    assert "\n" not in str(e.value) and "start a new search" in str(e.value)
    assert (out / "archive.jsonl").read_bytes() == before  # a refused resume leaves the file alone


def test_old_controller_agenttts_archive_resumes_with_its_guidelines(setups, tmp_path):
    out, old = copy("controller-agenttts", tmp_path)
    assert not old[2]["feasible"]  # the archived round proposed one point over budget
    with ScriptedLLMServer() as srv:
        srv.push(json.dumps({"guidelines": ["resumed"], "trials": [
            {"width": 1, "settle": 0, "patience": 6, "threshold": 0.8, "max_samples": 3}]}))
        run = run_search(setups["controller-agenttts"], "agenttts", trials=4, out=out, resume=True,
                         options={"llm_base_url": srv.base_url, "llm_model": "scripted-agent", "llm_backoff_s": 0.001})
        prompt = "\n".join(m["content"] for m in srv.requests[0]["messages"])
    assert run.resumed_from == 3 and len(run.trials) == 4
    assert "- width 1-2 keeps within budget" in prompt and "INFEASIBLE" in prompt
    assert "## Feedback on your last proposals" in prompt and "over the budget of 60,000" in prompt
    assert run.trials[3].point == {"width": 1, "settle": 0, "patience": 6, "threshold": 0.8, "max_samples": 3}


def test_old_archive_of_another_search_is_refused_in_one_line(setups, tmp_path):
    out, _ = copy("controller-bo", tmp_path)
    before = (out / "archive.jsonl").read_bytes()
    with pytest.raises(InputError, match="replicates = 4, this run has 8") as e:
        ctrl = ControllerSpaceSettings(controller="probe", model="Qwen3-8B", budget_tokens=60000.0)
        other = make_setup(setups["controller-bo"].store, ctrl, replicates=8)
        run_search(other, "bo", seed=0, trials=9, out=out, resume=True)
    assert "\n" not in str(e.value)
    assert (out / "archive.jsonl").read_bytes() == before  # a refused resume leaves the file alone
    bad = tmp_path / "future"
    bad.mkdir()
    head, *rest = before.decode().splitlines()
    (bad / "archive.jsonl").write_text(json.dumps({**json.loads(head), "version": 99}) + "\n" + "\n".join(rest) + "\n")
    with pytest.raises(InputError, match="archive version 99; this tool reads versions 1, 2"):
        read_archive(bad)


def test_compare_reads_old_archives():
    text, rows, _ = compare([FIXTURES / "config-random", FIXTURES / "config-agenttts"])
    assert [r["trials"] for r in rows] == [6, 6] and all(r["best config"] for r in rows)
    text, rows, _ = compare([FIXTURES / "controller-bo", FIXTURES / "controller-agenttts"])
    assert "tokens" in text.splitlines()[0] and rows[0]["best config"].startswith("width=")
