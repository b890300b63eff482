"""Agent-REINFORCE on the graph space: the probabilistic graph, the LLM loop against a scripted
local OpenAI-compatible server, the plain REINFORCE ablation with no endpoint, resume.

Everything runs on traces/sim-math, a SYNTHETIC graph store (collect simulate), with few
training questions and replicates, so that a whole search takes seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import replay
from llm_server import ScriptedLLMServer
from replay.errors import ConfigError
from search.graphs.insights import INSIGHT1, INSIGHT2, INSIGHT3
from search.graphs.probabilistic import GraphDistribution, Vocabulary
from search.runner import make_setup, run_search
from search.searchers.agent_reinforce import AgentReinforceSearcher, expected_score
from search.settings import GraphSpaceSettings

STORE = Path(__file__).resolve().parents[1] / "traces" / "sim-math"


@pytest.fixture(scope="module")
def store():
    return replay.open(str(STORE))


@pytest.fixture(scope="module")
def setup(store):
    return make_setup(store, GraphSpaceSettings(max_nodes=3), train=12, replicates=4, test_replicates=8)


@pytest.fixture(autouse=True)
def no_endpoint_from_the_environment(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def _models(store):
    return list(store.manifest.model_names)


def responder(store, *, update=None, init_model="Qwen2.5-7B"):
    """A scripted agent: the init call puts weight on one model, feedback is one line, the
    update raises slot n2's use and its aggregate role (or answers `update`)."""
    models = _models(store)

    def answer(body):
        text = "\n".join(m["content"] for m in body["messages"])
        if "Set the initial probabilistic graph" in text:
            return json.dumps({"analysis": "one family wins", "distribution": {
                "n1": {"model": {m: (0.5 if m == init_model else 0.1) for m in models}}}})
        if "Give feedback on this batch" in text:
            return json.dumps({"feedback": ["n1 with the larger model helped; refine hurt"]})
        return update or json.dumps({"distribution": {"n2": {"use": 0.9, "role": {"solve": 0.1, "refine": 0.1,
                                                                                  "aggregate": 0.8}}}})
    return answer


def _prompts(srv, marker):
    return ["\n".join(m["content"] for m in r["messages"]) for r in srv.requests
            if marker in "\n".join(m["content"] for m in r["messages"])]


# ---------------------------------------------------------------------------------------------
# The probabilistic graph


def test_sampled_graphs_are_valid_and_updates_are_bounded_and_normalised(setup):
    sp = setup.space
    v = Vocabulary.from_space(sp)
    d = GraphDistribution.uniform(v)
    rng = np.random.default_rng(3)
    graphs = [d.sample(rng, accept=sp.maybe_feasible)[0] for _ in range(150)]
    assert all(g is not None and sp.contains(g) and sp.maybe_feasible(g) for g in graphs)
    assert len({sp.key(g) for g in graphs}) > 50 and max(len(g.nodes) for g in graphs) == 3
    # a wild proposal: unnormalised rows, steps far beyond the bound, a zero probability
    prop = d.copy_with(model=np.tile(np.r_[5.0, np.zeros(len(v.models) - 1)], (v.max_nodes, 1)),
                       use=np.ones(v.max_nodes), edge=np.zeros((v.max_nodes, v.max_nodes)))
    new, rep = d.bounded(prop, max_step=0.2, floor=0.02)
    for key in ("role", "model", "count"):
        np.testing.assert_allclose(getattr(new, key).sum(axis=1), 1.0, atol=1e-9)
        assert getattr(new, key).min() >= 0.02 - 1e-12
    for key in ("model", "use", "edge"):
        assert np.max(np.abs(getattr(new, key) - getattr(d, key))) <= 0.2 + 1e-9
    assert rep.clipped > 0 and rep.renormalised == v.max_nodes and rep.largest_step > 0.8
    assert new.model[0, 0] == pytest.approx(1 / len(v.models) + 0.2)  # moved the whole step toward 1, no further


def test_answer_problems_are_reported_in_one_line_each(setup):
    d = GraphDistribution.uniform(Vocabulary.from_space(setup.space))
    _, problems, _ = d.proposal_from_json({"n7": {}, "n2": {"use": 1.5, "role": {"solve": 1}, "inputs": {"n3": 0.1}}})
    text = " | ".join(problems)
    assert "unknown slot 'n7'" in text and "n2.use must be a probability" in text
    assert "missing 'refine', 'aggregate'" in text and "'n3' is not an earlier slot" in text


# ---------------------------------------------------------------------------------------------
# The plain REINFORCE ablation: no LLM, no endpoint


def test_feedback_ablation_runs_without_an_endpoint_and_learns(setup, tmp_path):
    run = run_search(setup, "agent-reinforce", seed=0, trials=64, options={"ablate": "feedback"}, out=tmp_path / "r")
    assert len(run.trials) == 64 and all(t.source == "sample" for t in run.trials)
    assert run.states[-1]["counters"]["llm_calls"] == 0
    kinds = [s["last_update"].get("kind") for s in run.states if s.get("last_update")]
    assert kinds.count("reinforce") >= 6
    sp = setup.space
    first = GraphDistribution.uniform(Vocabulary.from_space(sp))
    last = GraphDistribution.from_archive(first.vocab, run.states[-1]["distribution"])
    before = expected_score(sp, first, setup.objective, n=48, seed=1)
    after = expected_score(sp, last, setup.objective, n=48, seed=1)
    # the first batch is drawn from the uniform distribution: learning must beat it clearly
    assert after > before + 0.08, (before, after)


def test_resume_equals_an_uninterrupted_run(setup, tmp_path):
    opts = {"ablate": "feedback"}
    whole = run_search(setup, "agent-reinforce", seed=4, trials=30, options=opts, out=tmp_path / "a")
    run_search(setup, "agent-reinforce", seed=4, trials=13, options=opts, out=tmp_path / "b")  # stops mid-batch
    resumed = run_search(setup, "agent-reinforce", seed=4, trials=30, options=opts, out=tmp_path / "b", resume=True)
    assert resumed.resumed_from == 13
    key = setup.space.key
    assert [key(t.point) for t in resumed.trials] == [key(t.point) for t in whole.trials]
    assert [t.score for t in resumed.trials] == [t.score for t in whole.trials]
    assert resumed.states[-1]["distribution"] == whole.states[-1]["distribution"]


# ---------------------------------------------------------------------------------------------
# The LLM loop (a scripted local OpenAI-compatible server)


def test_llm_resume_inside_a_batch_equals_the_uninterrupted_search(store, setup, tmp_path):
    with ScriptedLLMServer(responder(store)) as srv:
        opts = {"llm_base_url": srv.base_url, "llm_model": "scripted"}
        whole = run_search(setup, "agent-reinforce", seed=1, trials=30, options=opts, out=tmp_path / "a")
        calls = len(srv.requests)
        run_search(setup, "agent-reinforce", seed=1, trials=19, options=opts, out=tmp_path / "b")
        resumed = run_search(setup, "agent-reinforce", seed=1, trials=30, options=opts, out=tmp_path / "b", resume=True)
        assert len(srv.requests) == 2 * calls  # no call repeated, none skipped
    key = setup.space.key
    assert [key(t.point) for t in resumed.trials] == [key(t.point) for t in whole.trials]
    assert resumed.states[-1]["distribution"] == whole.states[-1]["distribution"]
    assert resumed.states[-1]["counters"] == whole.states[-1]["counters"]


def test_agent_reinforce_end_to_end_with_a_scripted_llm(store, setup, tmp_path):
    from search.runner import report_search

    with ScriptedLLMServer(responder(store)) as srv:
        opts = {"llm_base_url": srv.base_url, "llm_model": "scripted"}
        run = run_search(setup, "agent-reinforce", seed=0, trials=22, options=opts, out=tmp_path / "s")
        summary = report_search(setup, run, out=tmp_path / "s", optimum=None, plot=False)
    n_init = sum(1 for t in run.trials if t.source == "init")
    assert n_init == len(_models(store))  # insight 1: one probe per model, scored like every trial
    assert [t.source for t in run.trials[n_init:]] == ["sample"] * (22 - n_init)
    # init, then feedback + update after the first batch; the second batch ends the trial budget
    assert len(_prompts(srv, "Set the initial probabilistic graph")) == 1
    assert len(_prompts(srv, "Give feedback on this batch")) == 1
    assert len(_prompts(srv, "Update the probabilistic graph")) == 1
    st = run.states[-1]
    n1 = st["distribution"]["n1"]["model"]
    assert n1["Qwen2.5-7B"] == pytest.approx(0.5) and n1["Llama-3.2-1B"] == pytest.approx(0.1)
    assert st["distribution"]["n2"]["use"] == pytest.approx(0.75)  # asked 0.9 from 0.5: cut to one step
    assert st["counters"]["llm_calls"] == 3 and st["counters"]["clipped_updates"] == 1
    assert st["feedback"] == ["n1 with the larger model helped; refine hurt"]
    rec = json.loads((tmp_path / "s" / "archive.jsonl").read_text().splitlines()[n_init + 8 + 1])
    assert "update_call" in rec["extra"] and "feedback_call" in rec["extra"]  # the calls, with the batch they made
    assert summary["test"]["score"] is not None and (tmp_path / "s" / "summary.json").is_file()


def test_malformed_update_is_fed_back_with_bounded_retries_and_counted(store, setup):
    models = _models(store)
    with ScriptedLLMServer(responder(store)) as srv:
        s = AgentReinforceSearcher(setup.space, seed=0, trials=40, ablate="insight1", llm_base_url=srv.base_url,
                                   llm_model="scripted", max_feedback=2)
        _tell_all(s, setup, s.ask())
        srv.push(json.dumps({"feedback": ["ok"]}), "this is not json",
                 json.dumps({"distribution": {"n2": {"model": {models[0]: 1.0}}}}),  # a row that names too few
                 json.dumps({"distribution": {"n2": {"use": 0.6}}}))
        _tell_all(s, setup, s.ask())
        c = dict(s.counters)
        assert (c["malformed_json"], c["schema_errors"], c["retries"], c["refused_updates"]) == (1, 1, 2, 0)
        back = [m["content"] for m in srv.requests[-1]["messages"] if m["role"] == "user"][1:]
        assert "not valid JSON" in back[0] and "give every choice" in back[1]
        assert s.dist.use[1] == pytest.approx(0.6)
        # an agent that never answers well: the update is refused (counted), the distribution unchanged
        before = s.dist.to_json(digits=17)
        srv.push(json.dumps({"feedback": ["ok"]}), "no", "no", "no")
        _tell_all(s, setup, s.ask())
        assert s.counters["refused_updates"] == 1 and s.counters["retries"] == 4
        assert s.dist.to_json(digits=17) == before


def test_each_insight_ablation_changes_the_prompts_as_stated(store, setup):
    def prompts_of(ablate):
        with ScriptedLLMServer(responder(store)) as srv:
            s = AgentReinforceSearcher(setup.space, seed=0, trials=40, ablate=ablate, llm_base_url=srv.base_url,
                                       llm_model="scripted")
            for _ in range(3):
                _tell_all(s, setup, s.ask())
            return [("\n".join(m["content"] for m in r["messages"])) for r in srv.requests]

    full = prompts_of(None)
    assert INSIGHT1.text in full[0]  # the init call
    updates = [p for p in full if "Update the probabilistic graph" in p]
    assert updates and all(INSIGHT2.text in p and INSIGHT3.text in p for p in updates)
    no1 = prompts_of("insight1")
    assert not any(INSIGHT1.text in p for p in no1) and "Set the initial probabilistic graph" not in no1[0]
    for name, gone, kept in (("insight2", INSIGHT2, INSIGHT3), ("insight3", INSIGHT3, INSIGHT2)):
        ups = [p for p in prompts_of(name) if "Update the probabilistic graph" in p]
        assert ups and all(gone.text not in p and kept.text in p for p in ups)


def test_a_one_slot_distribution_writes_its_prompts(setup):
    with ScriptedLLMServer() as srv:
        s = AgentReinforceSearcher(setup.space, max_nodes=1, llm_base_url=srv.base_url, llm_model="scripted")
        text = s._format_section({"distribution": "distribution"})
    assert s.vocab.max_nodes == 1 and '"n1": {"use": 1.0' in text


def test_bad_options_are_one_line_config_errors(setup, store):
    with pytest.raises(ConfigError, match="ablate it alone"):
        AgentReinforceSearcher(setup.space, ablate="feedback,insight2")
    with pytest.raises(ConfigError, match="unknown ablation 'insight4'"):
        AgentReinforceSearcher(setup.space, ablate="insight4")
    with pytest.raises(ConfigError, match="needs an LLM endpoint"):
        AgentReinforceSearcher(setup.space)
    with pytest.raises(ConfigError, match="--max-step"):
        AgentReinforceSearcher(setup.space, ablate="feedback", max_step=2.0)
    cfg = make_setup(replay.open(str(STORE.parent / "aime24")), None, train=5, replicates=2, test_replicates=2)
    with pytest.raises(ConfigError, match="does not apply to --space config"):
        from search.runner import build_searcher

        build_searcher("agent-reinforce", cfg.space, options={"ablate": "feedback"})


def _tell_all(s, setup, props):
    from search.protocol import Trial

    evs = setup.space.evaluate([p.point for p in props], setup.objective)
    n = len(s.history)
    for k, (p, ev) in enumerate(zip(props, evs)):
        s.tell(Trial.of(n + k, p.point, ev, wall_s=0.0, source=p.source, extra=p.extra, label=str(p.point)))


@pytest.mark.parametrize("name", ["agenttts", "agenthpo", "mlcopilot"])
def test_the_llm_baselines_search_graphs(setup, name):
    """AgentTTS's guideline loop, AgentHPO and MLCopilot write graphs (the space's JSON or text
    form) that the replay scores; a graph outside the space goes back to the agent."""
    sp = setup.space
    rng = np.random.default_rng(0)
    calls = []

    def answer(body):
        text = "\n".join(m["content"] for m in body["messages"])
        calls.append(text)
        if len(calls) == 1:  # a graph with a solve node that reads another: refused, sent back
            return json.dumps({"guidelines": [], "analysis": "", "knowledge": [],
                               "trials": ["a=solve(Qwen2.5-7B,1); b=solve(Qwen2.5-7B,1|a)"]})
        pts = [sp.encode(next(sp.random_points(rng, set()))) for _ in range(3)]
        if "Distil knowledge" in text:
            return json.dumps({"knowledge": ["Qwen2.5-7B solves best"]})
        if '"guidelines"' in text:
            return json.dumps({"guidelines": ["prefer Qwen"], "trials": pts})
        if '"analysis"' in text:
            return json.dumps({"analysis": "x", "trials": pts})
        return json.dumps({"trials": pts})

    with ScriptedLLMServer(answer) as srv:
        run = run_search(setup, name, seed=0, trials=10, options={"llm_base_url": srv.base_url, "llm_model": "s"})
    assert len(run.trials) == 10 and any(t.source == "llm" for t in run.trials)
    assert all(sp.contains(t.point) for t in run.trials)
    assert "Design a collaboration graph" in calls[0] and "Your answer was rejected" in calls[1]
    assert run.states[-1]["counters"]["retries"] >= 1
