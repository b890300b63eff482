"""`search --space controller`: the searchers on a controller's parameters (or beta) against a
tokens budget, on the real traces/aime24 store (15 train / 15 test questions, few replicates).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import replay
from replay.errors import ConfigError, InputError
from clikit import run_main
from search.cli import main as search_main
from search.runner import build_searcher, make_setup, run_search, score_proposals
from search.searchers.bo import BOSearcher
from search.settings import ControllerSpaceSettings
from search.trial import Objective, best_trial

from conftest import TRACES
from llm_server import ScriptedLLMServer

STORE = TRACES / "aime24"
R = 4  # replicates per training question: small, the objective is still the replay's
BUDGET = 60_000.0  # tight enough that every searcher meets over-budget points
HUGE = {"width": 16, "settle": 0, "patience": 64, "threshold": 0.9995, "max_samples": 128}  # far over budget

pytestmark = pytest.mark.skipif(not (STORE / "manifest.json").exists(), reason="traces/aime24 not present")


@pytest.fixture(scope="module")
def store():
    return replay.open(str(STORE))


@pytest.fixture(scope="module")
def setups(store):
    return {"params": make_setup(store, ControllerSpaceSettings(controller="probe", model="Qwen3-8B", budget_tokens=BUDGET),
                                 replicates=R),
            "beta": make_setup(store, ControllerSpaceSettings(controller="adaptive", model="Qwen3-8B", budget_tokens=BUDGET,
                                                              beta=True), replicates=R)}


def _check_run(setup, run):
    """Infeasible trials carry no score and are never best; the best equals a direct evaluation."""
    for t in run.trials:
        assert t.feasible == (t.tokens <= BUDGET * (1 + 1e-9))
        assert (t.score is None) == (not t.feasible)
    b = best_trial(run.trials)
    assert b is not None and b.feasible and b.tokens <= BUDGET
    assert b.score == max(t.score for t in run.trials if t.feasible)
    direct = setup.space.evaluate([b.point], Objective(setup.split.train, R, 0))[0]
    assert direct.feasible and direct.score == b.score and direct.tokens == b.tokens
    return b


@pytest.mark.parametrize("kind", ["params", "beta"])
@pytest.mark.parametrize("searcher", ["random", "grid", "bo"])
def test_searchers_find_feasible_best_equal_to_direct_evaluation(setups, searcher, kind):
    setup = setups[kind]
    n = 30 if searcher == "grid" else 14  # (a coarser grid over five dims has no point within this budget)
    run = run_search(setup, searcher, seed=1, trials=n)
    assert 1 <= len(run.trials) <= n
    assert all(setup.space.contains(t.point) for t in run.trials)
    _check_run(setup, run)
    if searcher != "grid":
        assert len(run.trials) == n
    # the tight budget is met: some proposals were over it and none of them won
    assert any(not t.feasible for t in run.trials), [t.tokens for t in run.trials]


def test_bo_tells_over_budget_as_a_constraint_never_a_score(setups):
    import optuna

    setup = setups["params"]
    s = BOSearcher(setup.space, seed=0, trials=12)
    run_trials = []
    while len(run_trials) < 12:
        props = s.ask()
        new, _ = score_proposals(setup, props, len(run_trials))
        for t in new:
            s.tell(t)
        run_trials += new
    told = {tuple(sorted(ft.params.items())): ft for ft in s.study.trials}
    bad = [t for t in run_trials if not t.feasible]
    assert bad
    for t in bad:
        ft = told[tuple(sorted(t.point.items()))]
        assert ft.state == optuna.trial.TrialState.PRUNED and ft.value is None
        assert ft.constraints["budget"] == pytest.approx(t.tokens - BUDGET)


def test_grid_fits_the_cap_and_covers_the_ranges(setups):
    sp = setups["params"].space
    g = sp.grid(cap=30, max_points=200_000)
    assert 16 <= len(g.points) <= 30
    assert len({tuple(sorted(p.items())) for p in g.points}) == len(g.points)
    assert all(sp.contains(p) for p in g.points)
    multi = [p for p in sp.dims if len(g.levels[p.name]) > 1]
    assert multi and all(g.levels[p.name][0] == p.search_range[0] and g.levels[p.name][-1] == p.search_range[1]
                         for p in multi)
    gb = setups["beta"].space.grid(cap=11, max_points=200_000)
    assert [p["beta"] for p in gb.points] == pytest.approx(list(np.linspace(0, 1, 11)))


@pytest.mark.parametrize("searcher", ["random", "bo"])
def test_resume_continues_the_archive_exactly(setups, tmp_path, searcher):
    setup = setups["params"]
    full = run_search(setup, searcher, seed=3, trials=9)
    run_search(setup, searcher, seed=3, trials=5, out=tmp_path)
    with pytest.raises(InputError, match="already holds"):
        run_search(setup, searcher, seed=3, trials=9, out=tmp_path)
    with pytest.raises(InputError, match="seed"):
        run_search(setup, searcher, seed=4, trials=9, out=tmp_path, resume=True)
    resumed = run_search(setup, searcher, seed=3, trials=9, out=tmp_path, resume=True)
    assert resumed.resumed_from == 5
    assert [t.point for t in resumed.trials] == [t.point for t in full.trials]
    assert [t.score for t in resumed.trials] == [t.score for t in full.trials]
    lines = (tmp_path / "archive.jsonl").read_text().splitlines()
    assert len(lines) == 10 and json.loads(lines[0])["space_kind"] == "controller"


def test_searchers_that_make_no_sense_here_are_refused(setups):
    space = setups["params"].space
    for name in ("rules", "mlcopilot", "nope"):
        with pytest.raises(ConfigError, match="--searcher") as e:
            build_searcher(name, space)
        assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="it needs a model and a sample count per stage"):
        build_searcher("rules", space)
    # agenthpo is written against the space protocol: it runs here (and wants an endpoint)
    with pytest.raises(ConfigError, match="--llm-base-url"):
        build_searcher("agenthpo", space)


# ---------------------------------------------------------------------------------------------
# The LLM agent against a scripted OpenAI-compatible server


def _answer(*trials, guidelines=("width matters most",)):
    return json.dumps({"guidelines": list(guidelines), "trials": list(trials)})


# within the 60k budget (measured: 35k to 49k mean tokens per question)
GOOD = [{"width": 2, "settle": 0, "patience": 12, "threshold": 0.8, "max_samples": 8},
        {"width": 2, "settle": 0, "patience": 8, "threshold": 0.7, "max_samples": 4},
        {"width": 1, "settle": 0, "patience": 8, "threshold": 0.9, "max_samples": 4},
        {"width": 1, "settle": 0, "patience": 8, "threshold": 0.7, "max_samples": 6}]


def test_agent_validates_feeds_back_and_counts(setups, tmp_path):
    setup = setups["params"]
    llm = dict(llm_base_url=None, llm_model="test-model", trials_per_round=1, llm_backoff_s=0.0)
    with ScriptedLLMServer() as srv:
        llm["llm_base_url"] = srv.base_url
        srv.push(
            _answer(GOOD[0]),                                             # round 0: good
            "this is not JSON", _answer(GOOD[1]),                         # round 1: malformed, then good
            _answer({**GOOD[2], "width": 99}), _answer(GOOD[2]),          # round 2: out of range, then good
            json.dumps({"trials": [GOOD[3]]}), _answer(HUGE),             # round 3: schema error, then over budget
            _answer(GOOD[3]),                                             # round 4: good, after the feedback
        )
        run = run_search(setup, "agenttts", seed=0, trials=5, options=llm, out=tmp_path)
        requests = list(srv.requests)
    assert [t.point for t in run.trials] == [GOOD[0], GOOD[1], GOOD[2], HUGE, GOOD[3]]
    assert [t.source for t in run.trials] == ["llm"] * 5
    assert not run.trials[3].feasible and run.trials[3].score is None
    c = run.states[-1]["counters"]
    assert c["llm_calls"] == 8 and c["malformed_json"] == 1 and c["out_of_range"] == 1
    assert c["schema_errors"] == 1 and c["retries"] == 3 and c["fills"] == 0
    assert c["over_budget"] == 0 and run.states[-1]["infeasible_trials"] == 1  # no estimate: the replay measured it
    # the reasons went back to the agent, and the over-budget trial was reported with its tokens
    msgs = lambda i: [m["content"] for m in requests[i]["messages"]]  # noqa: E731
    assert "not valid JSON" in msgs(2)[-1]
    assert "width = 99 is outside [1, 16]" in msgs(4)[-1]
    assert "missing field(s) 'guidelines'" in msgs(6)[-1]
    last = msgs(7)[1]
    assert "Feedback on your last proposals" in last and "over the budget of 60,000" in last
    assert "INFEASIBLE" in last and "width matters most" in last
    b = _check_run(setup, run)
    assert b.point != HUGE
    # --resume restores counters and guidelines and asks the agent for the next round only
    with ScriptedLLMServer() as srv:
        llm["llm_base_url"] = srv.base_url
        srv.push(_answer({**GOOD[3], "max_samples": 7}, guidelines=("resumed",)))
        more = run_search(setup, "agenttts", seed=0, trials=6, options=llm, out=tmp_path, resume=True)
        assert len(srv.requests) == 1
    assert more.resumed_from == 5 and len(more.trials) == 6
    assert more.states[-1]["counters"]["llm_calls"] == 9 and more.states[-1]["guidelines"] == ["resumed"]


def test_agent_fills_when_answers_stay_bad(setups):
    setup = setups["beta"]
    with ScriptedLLMServer(responder=lambda body: "{not json") as srv:
        run = run_search(setup, "agenttts", seed=0, trials=2,
                         options=dict(llm_base_url=srv.base_url, llm_model="m", trials_per_round=2, max_feedback=1))
    assert [t.source for t in run.trials] == ["fill", "fill"]
    c = run.states[-1]["counters"]
    assert c["llm_calls"] == 2 and c["malformed_json"] == 2 and c["retries"] == 1 and c["fills"] == 2


# ---------------------------------------------------------------------------------------------
# The command line


def _cli(argv, capsys):
    return run_main(search_main, argv, capsys)


def test_cli_end_to_end(capsys, tmp_path):
    out = tmp_path / "bo"
    base = ["--replay", str(STORE), "--space", "controller", "--controller", "probe", "--model", "Qwen3-8B",
            "--budget-tokens", "60000", "--replicates", str(R), "--test-replicates", "8"]
    code, text, err = _cli([*base, "--searcher", "bo", "--trials", "8", "--out", str(out)], capsys)
    assert code == 0, err
    assert "best config" in text and "test score" in text and "controller probe on Qwen3-8B" in text
    s = json.loads((out / "summary.json").read_text())
    assert s["trials"] == 8 and s["space_kind"] == "controller" and s["best"]["tokens"] <= 60000
    assert s["test"]["score"] is not None and s["test"]["questions"] == 15
    assert (out / "best_so_far.png").stat().st_size > 1000
    assert len((out / "archive.jsonl").read_text().splitlines()) == 9
    code, text, err = _cli(["run", *base, "--searcher", "bo", "--trials", "10", "--out", str(out), "--resume"], capsys)
    assert code == 0, err
    assert json.loads((out / "summary.json").read_text())["trials"] == 10
    with ScriptedLLMServer() as srv:
        srv.push(_answer(GOOD[0], GOOD[1]))
        code, text, err = _cli([*base, "--beta", "--searcher", "grid", "--trials", "5", "--out",
                                str(tmp_path / "g")], capsys)
        assert code == 0, err
        code, text, err = _cli([*base, "--searcher", "agenttts", "--trials", "2", "--out", str(tmp_path / "a"),
                                "--llm-base-url", srv.base_url, "--llm-model", "m"], capsys)
        assert code == 0, err
    assert json.loads((tmp_path / "g" / "summary.json").read_text())["trials"] == 5
    # one compare for every space: the controller searches' best-so-far curves, costs in tokens
    code, text, err = _cli(["compare", str(out), str(tmp_path / "g")], capsys)
    assert code == 0, err
    assert "bo s0" in text and "grid s0" in text and "tokens" in text.splitlines()[0]
    a = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert a["llm_counters"]["llm_calls"] == 1 and a["llm_counters"]["fills"] == 0 and a["llm_tokens"] > 0


def test_cli_bad_input_is_one_line_and_exit_2(capsys, tmp_path):
    st = str(STORE)
    ctrl = ["--replay", st, "--space", "controller", "--controller", "probe", "--model", "Qwen3-8B",
            "--budget-tokens", "60000", "--out", str(tmp_path / "x")]
    cases = [
        ([*ctrl, "--searcher", "rules"], "--searcher"),
        ([*ctrl, "--searcher", "bo", "--budget", "3"], "--budget"),
        ([*ctrl, "--searcher", "bo", "--max-samples", "3"], "--max-samples"),
        ([*ctrl, "--searcher", "agenttts", "--ablate", "insight1", "--llm-base-url", "http://127.0.0.1:9/v1",
          "--llm-model", "m"], "--ablate"),
        ([*ctrl[:-2], "--searcher", "bo", "--budget-tokens", "0"], "--budget-tokens"),
        (["--replay", st, "--space", "controller", "--controller", "probe", "--searcher", "bo",
          "--budget-tokens", "1e5"], "--model"),
        (["--replay", st, "--space", "controller", "--model", "Qwen3-8B", "--searcher", "bo",
          "--budget-tokens", "1e5"], "--controller"),
        (["--replay", st, "--space", "controller", "--controller", "probe", "--model", "Qwen3-8B",
          "--searcher", "bo"], "--budget-tokens"),
        ([*ctrl[:6], "--model", "Qwen3-9B", "--budget-tokens", "1e5", "--searcher", "bo"], "--model"),
        (["--replay", st, "--searcher", "bo", "--controller", "probe"], "--controller"),
        (["--replay", st, "--searcher", "bo", "--budget-tokens", "1e5"], "--budget-tokens"),
        ([*ctrl, "--searcher", "agenttts"], "--llm"),
        ([*ctrl, "--searcher", "random", "--llm-model", "m"], "--llm-model"),
    ]
    for argv, needle in cases:
        code, out, err = _cli(argv, capsys)
        lines = [x for x in err.splitlines() if x.strip() and not x.startswith("note:") and "%|" not in x]
        assert code == 2, (argv, err)
        assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], (argv, err)
