"""LLM searchers (agenttts, agenthpo, mlcopilot) against a scripted local OpenAI-compatible server.

The searchers only get a base URL: they do not know the server is a test double. Scores come
from the replay of a small synthetic two-stage store built in tmp_path.
"""

from __future__ import annotations

import json
import re
import time

import pytest

import replay
from replay.engine import Config
from replay.errors import ConfigError, InputError
from search.llm import LLMError, LLMRejected, LLMUnavailable
from search.searchers import get_searcher
from search.searchers.agenttts import AgentTTSSearcher

from llm_server import Fail, Hang
from llmkit import LARGE, SMALL, answer, drive, expected_insight1_plan, trial, user_text
from llmkit import no_env, server, space, store, store_path  # noqa: F401 (the fixtures)

# The store (SYNTHETIC, 12 questions: retrieve, where the large model is much better, then
# answer, where the small one is enough), the server and the runner `drive`: tests/llmkit.py.


def options(server, store, **kw):
    base = dict(llm_base_url=server.base_url, llm_model="scripted-agent", llm_backoff_s=0.001,
                llm_timeout_s=5.0, trials_per_round=2)
    base.update(kw)
    return base


def cfg(m1, n1, m2, n2) -> Config:
    return Config.of((m1, n1), (m2, n2))


def plain_options(server, **kw):
    """What the runner passes."""
    base = dict(llm_base_url=server.base_url, llm_model="scripted-agent", llm_backoff_s=0.001, llm_timeout_s=5.0,
                trials_per_round=2)
    base.update(kw)
    return base


def messages(request) -> list[dict]:
    return request["messages"]


# ---------------------------------------------------------------------------------------------
# Configuration


@pytest.mark.parametrize("name", ["agenttts", "agenthpo", "mlcopilot"])
def test_no_endpoint_is_a_one_line_config_error_at_construction(space, name):
    cls = get_searcher(name)
    with pytest.raises(ConfigError) as e:
        cls(space, seed=0, llm_model="m")
    msg = str(e.value)
    assert "\n" not in msg and "--llm-base-url" in msg and "OPENAI_BASE_URL" in msg and "--llm-model" in msg
    assert e.value.exit_code == 2
    with pytest.raises(ConfigError, match="--llm-model"):
        cls(space, seed=0, llm_base_url="http://127.0.0.1:9/v1")


def test_environment_configures_the_endpoint(space, server, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-123")
    s = get_searcher("agenthpo")(space, seed=0, llm_model="env-model", trials_per_round=1)
    server.push(json.dumps({"analysis": "a", "trials": [trial(LARGE, 1, SMALL, 4)]}))
    (p,) = s.ask()
    assert p.point == cfg(LARGE, 1, SMALL, 4)
    assert server.requests[0]["model"] == "env-model"
    assert s.state()["llm_endpoint"] == server.base_url


# ---------------------------------------------------------------------------------------------
# AgentTTS end to end, through the runner


def test_agenttts_search_end_to_end_scores_come_from_the_replay(store, server, tmp_path):
    from search.llm import prompts
    from search.runner import make_setup, run_search

    setup = make_setup(store)
    plan = expected_insight1_plan(setup.space)
    # a retrieve stage where the big model wins clearly, an answer stage where tiny samples do
    assert cfg(SMALL, 8, LARGE, 1) in plan and cfg(LARGE, 1, SMALL, 8) in plan
    rounds = [
        ([(LARGE, 1, SMALL, 4), (LARGE, 1, SMALL, 6)], ["retrieve: prefer big-8B (0.75 vs 0.08)", "answer: prefer tiny-1B"]),
        ([(LARGE, 1, SMALL, 7), (LARGE, 2, SMALL, 3)], ["answer: tiny-1B between 6 and 8 samples"]),
        ([(LARGE, 1, SMALL, 5), (LARGE, 1, SMALL, 2)], ["final: big-8B x1, tiny-1B x7-8"]),
    ]
    for trials, guidelines in rounds:
        server.push(answer(trials, guidelines))
    n = len(plan) + 6
    run = run_search(setup, "agenttts", seed=0, trials=n, options=plain_options(server), out=tmp_path / "tts")

    assert [t.point for t in run.trials[: len(plan)]] == plan
    assert all(t.source == "init" for t in run.trials[: len(plan)])
    llm = [cfg(*t) for r, _ in rounds for t in r]
    assert [t.point for t in run.trials[len(plan):]] == llm
    assert all(t.source == "llm" for t in run.trials[len(plan):])
    # scores are the replay's, on the training questions with the setup's draws
    for t in run.trials:
        r = store.evaluate(t.point, questions=setup.split.train, replicates=setup.replicates, seed=setup.replay_seed,
                           budget=setup.space.budget)
        assert t.feasible == r.feasible
        if r.feasible:
            assert t.score == pytest.approx(r.score)
    # the agent saw the archive (real scores), the guidelines and the insights
    assert len(server.requests) == 3
    first, second = user_text(server.requests[0]), user_text(server.requests[1])
    for t in run.trials[: len(plan)]:
        shown = f"{t.score:.3f}" if t.feasible else "INFEASIBLE"
        assert re.search(rf"^{t.number} \| .*{re.escape(shown)}", first, re.M)
    # the insights hold for the whole search, as in the paper: every round carries all three
    for r in server.requests:
        text = user_text(r)
        assert prompts.INSIGHT1 in text and prompts.INSIGHT2 in text and prompts.INSIGHT3 in text
    assert "- retrieve: prefer big-8B (0.75 vs 0.08)" in second
    assert f"{run.trials[len(plan)].score:.3f}" in second
    # per-stage scores (the store has a gold retrieval) and the fallback rate, per trial
    assert "| cost | stage scores (retrieve, answer) | fallback | source" in first
    t0 = run.trials[0]
    st = ", ".join(f"{x:.3f}" for x in t0.metrics["stage_scores"])
    assert re.search(rf"^0 \| .* \| {re.escape(st)} \| {re.escape(f'{t0.fallback_rate:.1%}')} \| init", first, re.M)
    assert all(t.fallback_rate is not None for t in run.trials)
    # no temperature is sent unless one is set (reasoning models reject it)
    assert all("temperature" not in r for r in server.requests)
    # guidelines, counters, prompts and raw answers reach state() and the archive
    last = run.states[-1]
    assert last["guidelines"] == rounds[-1][1]
    assert last["counters"]["llm_calls"] == 3
    assert last["counters"]["usable_answers"] == 3
    assert sum(v for k, v in last["counters"].items() if k not in ("llm_calls", "usable_answers")) == 0
    usage = sum(len(str(m["content"]).split()) for r in server.requests for m in r["messages"])
    assert last["llm_tokens"] > usage  # prompts plus completions, as the server reported them
    from search.archive import read_archive

    header, records, _ = read_archive(tmp_path / "tts" / "archive.jsonl")
    assert len(records) == n
    ex = records[-1]["extra"]
    assert ex["guidelines"] == rounds[-1][1] and ex["raw_answer"] == answer(*rounds[-1])
    assert "## Archive of trials" in ex["prompt"] and ex["call_usage"]["completion_tokens"] > 0
    # the guidelines as they evolved, round by round, in the summary
    from search.runner import report_search

    summary = report_search(setup, run, out=tmp_path / "tts", plot=False)
    hist = summary["guidelines"]
    assert [h["guidelines"] for h in hist] == [g for _, g in rounds]
    assert [h["round"] for h in hist] == [1, 2, 3]
    assert hist[0]["after_trial"] == len(plan) + 1 and all("per_question" not in h for h in hist)
    saved = json.loads((tmp_path / "tts" / "summary.json").read_text())
    assert saved["guidelines"] == hist


def test_insight1_initialisation_on_the_real_aime24_store(server):
    """One stage, four Qwen3 models: the largest once (the default budget itself), each smaller
    model with the most samples the same budget buys."""
    from search.runner import make_setup

    from conftest import TRACES

    setup = make_setup(replay.open(TRACES / "aime24"))
    s = AgentTTSSearcher(setup.space, seed=0, **plain_options(server))
    plan = [str(c) for c in s.init_plan]
    assert plan == [str(c) for c in expected_insight1_plan(setup.space)]
    assert [c.split(":")[0] for c in plan] == ["Qwen3-0.6B", "Qwen3-1.7B", "Qwen3-4B", "Qwen3-8B"]
    counts = [int(c.split(":")[1]) for c in plan]
    assert counts[-1] == 1 and counts == sorted(counts, reverse=True) and counts[0] > 4
    assert all(setup.space.estimate_cost(Config.parse(c)) <= setup.space.budget * 1.05 for c in plan)
    assert all(p.source == "init" for p in s.ask()) and not server.requests  # no LLM call yet


def test_agenttts_resume_restores_guidelines_and_repeats_nothing(store, server, tmp_path):
    from search.runner import make_setup, run_search

    setup = make_setup(store)
    n_init = len(expected_insight1_plan(setup.space))
    server.push(answer([(LARGE, 1, SMALL, 4), (LARGE, 1, SMALL, 6)], ["keep retrieve big"]))
    out = tmp_path / "tts"
    first = run_search(setup, "agenttts", trials=n_init + 2, options=plain_options(server), out=out)
    server.push(answer([(LARGE, 1, SMALL, 7), (LARGE, 1, SMALL, 5)], ["later"]))
    again = run_search(setup, "agenttts", trials=n_init + 4, options=plain_options(server), out=out, resume=True)
    assert again.resumed_from == n_init + 2
    assert [t.number for t in again.trials] == list(range(n_init + 4))
    assert len({t.point for t in again.trials}) == n_init + 4
    # the resumed agent got the guidelines it wrote before the interruption, and no init again
    assert "- keep retrieve big" in user_text(server.requests[-1])
    assert [t.source for t in again.trials[n_init + 2:]] == ["llm", "llm"]
    assert again.states[-1]["counters"]["llm_calls"] == 2


# ---------------------------------------------------------------------------------------------
# Bad answers: fed back with the reason, counted, bounded


def agenttts(space, server, store, **kw):
    s = AgentTTSSearcher(space, seed=0, **options(server, store, **kw))
    drive(s, store, len(s.init_plan))  # the LLM-free initialisation
    return s


def test_malformed_json_then_schema_error_then_good_answer(space, server, store):
    s = agenttts(space, server, store)
    good = answer([(LARGE, 1, SMALL, 4), (LARGE, 1, SMALL, 5)], ["ok"])
    server.push("Sure! Here are the trials: {trials: [", json.dumps({"trials": []}), good)
    props = s.ask()
    assert [p.point for p in props] == [cfg(LARGE, 1, SMALL, 4), cfg(LARGE, 1, SMALL, 5)]
    c = s.state()["counters"]
    assert (c["malformed_json"], c["schema_errors"], c["retries"], c["llm_calls"]) == (1, 1, 2, 3)
    # the second request carries the bad answer and the reason; the third the next reason
    m2 = messages(server.requests[1])
    assert m2[-2] == {"role": "assistant", "content": "Sure! Here are the trials: {trials: ["}
    assert "not valid JSON" in m2[-1]["content"]
    assert "missing field(s) 'guidelines'" in messages(server.requests[2])[-1]["content"]
    assert props[0].extra["raw_answers"][-1] == good and len(props[0].extra["feedback"]) == 2
    assert props[0].extra["counters"]["malformed_json"] == 1


def test_unknown_model_bad_count_and_over_budget_go_back_with_reasons(space, server, store):
    s = agenttts(space, server, store)
    server.push(
        answer([("gpt-9", 1, SMALL, 4), (LARGE, 99, SMALL, 4), (LARGE, 8, LARGE, 8)]),
        answer([(LARGE, 1, SMALL, 3)], ["fixed"]),
    )
    props = s.ask()
    assert props[0].point == cfg(LARGE, 1, SMALL, 3) and props[0].source == "llm"
    c = s.state()["counters"]
    assert (c["unknown_model"], c["invalid_samples"], c["over_budget"], c["retries"]) == (1, 1, 1, 1)
    fb = messages(server.requests[1])[-1]["content"]
    assert "trial 1: model 'gpt-9' is not a candidate of stage 'retrieve'" in fb
    assert "trial 2: stage 'retrieve': 99 samples is not allowed for big-8B (allowed: 1..8)" in fb
    assert re.search(r"trial 3 \(big-8B:8,big-8B:8\): estimated cost [\d.]+ units exceeds the budget", fb)
    # one trial asked for two: the second is filled with an untried, affordable neighbour
    assert len(props) == 2 and props[1].source == "fill" and c["fills"] == 1
    assert space.contains(props[1].point) and not s.tried(props[1].point)
    assert space.estimate_cost(props[1].point) <= space.budget * 1.05


def test_feedback_is_bounded_then_the_round_is_filled(space, server, store):
    s = agenttts(space, server, store, max_feedback=2)
    server.responder = lambda req: answer([("gpt-9", 1, SMALL, 4)])
    props = s.ask()
    assert len(server.requests) == 3  # the answer, then two bounded retries
    c = s.state()["counters"]
    assert (c["unknown_model"], c["retries"], c["fills"]) == (3, 2, 2)
    assert [p.source for p in props] == ["fill", "fill"]
    assert len({p.point for p in props}) == 2 and not any(s.tried(p.point) for p in props)


def test_already_tried_trials_are_not_rerun(space, server, store):
    s = agenttts(space, server, store)
    init = s.init_plan[0]
    dup = trial(*[x for ch in init.stages for x in (ch.model, ch.samples)])
    server.push(json.dumps({"guidelines": [], "trials": [dup]}),
                json.dumps({"guidelines": [], "trials": [dup, trial(LARGE, 1, SMALL, 6)]}))
    props = s.ask()
    c = s.state()["counters"]
    assert (c["duplicate_answers"], c["duplicates"], c["retries"]) == (1, 2, 1)  # 2 repeated trials, 1 whole answer
    assert "already tried" in messages(server.requests[1])[-1]["content"]
    assert init not in [p.point for p in props] and props[0].point == cfg(LARGE, 1, SMALL, 6)


# ---------------------------------------------------------------------------------------------
# The endpoint: failures, timeouts, backoff, staying down


def test_endpoint_fails_and_times_out_then_recovers(space, server, store):
    s = agenttts(space, server, store, llm_timeout_s=0.3, llm_backoff_s=0.01)
    server.push(Fail(500), Fail(503), Hang(3.0), answer([(LARGE, 1, SMALL, 4)], ["back"]))
    t0 = time.perf_counter()
    props = s.ask()
    assert time.perf_counter() - t0 < 2.5  # the hang was cut by the client timeout
    assert props[0].point == cfg(LARGE, 1, SMALL, 4)
    assert s.state()["counters"]["endpoint_failures"] == 3
    assert s.state()["counters"]["llm_calls"] == 1 and s.guidelines == ["back"]
    assert len(server.requests) == 4


def test_backoff_is_exponential_and_capped(server):
    from search.llm import LLMClient, LLMSettings

    server.push(Fail(500), Fail(429), Fail(502), Fail(500), "{}")
    sleeps = []
    settings = LLMSettings(base_url=server.base_url, model="m", api_key="k", retries=4, backoff_s=0.5, backoff_max_s=1.5)
    reply = LLMClient(settings, sleep=sleeps.append).chat([{"role": "user", "content": "hi"}])
    assert sleeps == [0.5, 1.0, 1.5, 1.5]
    assert reply.text == "{}" and reply.attempts == 5 and len(reply.failures) == 4
    assert reply.failures[1].startswith("HTTP 429")


def test_endpoint_that_stays_down_stops_the_search_with_a_clear_error(store, server, tmp_path):
    from search.archive import read_archive
    from search.runner import make_setup, run_search

    server.responder = lambda req: Fail(500, "overloaded")
    setup = make_setup(store)
    with pytest.raises(LLMUnavailable) as e:
        run_search(setup, "agenttts", trials=20, options=plain_options(server, llm_retries=2), out=tmp_path / "down")
    msg = str(e.value)
    assert isinstance(e.value, LLMError) and not isinstance(e.value, InputError) and e.value.exit_code == 3
    assert "\n" not in msg
    assert server.base_url in msg and "3 attempts" in msg and "HTTP 500" in msg and "--resume" in msg
    assert len(server.requests) == 3
    # the initialisation needs no LLM: its trials are archived, nothing else
    _, records, _ = read_archive(tmp_path / "down" / "archive.jsonl")
    assert len(records) == len(expected_insight1_plan(setup.space))
    assert {r["source"] for r in records} == {"init"}


def test_refused_request_is_not_retried(space, server, store):
    s = agenttts(space, server, store)
    server.push(Fail(401, "invalid api key"))
    with pytest.raises(LLMRejected, match="HTTP 401"):
        s.ask()
    assert len(server.requests) == 1


def test_temperature_is_optional_and_an_unsupported_one_is_reported_with_the_fix(space, server, store):
    """Reasoning models (OpenAI's o-series) reject a temperature: none is sent unless set, and a
    400 naming it says, in one line, to leave --llm-temperature out."""
    s = agenttts(space, server, store, llm_temperature=0.3)
    server.push(Fail(400, "Unsupported value: 'temperature' does not support 0.3 with this model. "
                     "Only the default (1) value is supported."))
    with pytest.raises(LLMRejected) as e:
        s.ask()
    msg = str(e.value)
    assert "\n" not in msg and "HTTP 400" in msg and "fix:" in msg and "--llm-temperature" in msg
    assert server.requests[-1]["temperature"] == 0.3
    plain = agenttts(space, server, store)
    server.push(answer([(LARGE, 1, SMALL, 2)]))
    plain.ask()
    assert "temperature" not in server.requests[-1]
    with pytest.raises(ConfigError, match="--llm-temperature"):
        agenttts(space, server, store, llm_temperature=-1)


# ---------------------------------------------------------------------------------------------
# Ablations


def test_ablations_change_initialisation_and_prompts(space, server, store):
    from search.llm import prompts

    full = AgentTTSSearcher(space, seed=3, **options(server, store))
    no1 = AgentTTSSearcher(space, seed=3, **options(server, store, ablate="insight1"))
    assert len(no1.init_plan) == len(full.init_plan) and no1.init_plan != full.init_plan
    assert all(space.contains(c) and no1.affordable(c) for c in no1.init_plan)
    assert {p.source for p in no1.ask()} == {"init-random"}
    expect = {
        "": (True, True, True),
        "insight1": (False, True, True),
        "insight2": (True, False, True),
        "insight3": (True, True, False),
        "insight2,insight3": (True, False, False),
    }
    for ablate, present in expect.items():
        s = agenttts(space, server, store, ablate=ablate)
        server.push(answer([(LARGE, 1, SMALL, 2)]))
        s.ask()
        text = user_text(server.requests[-1])
        assert (prompts.INSIGHT1 in text, prompts.INSIGHT2 in text, prompts.INSIGHT3 in text) == present, ablate
        assert s.state()["ablate"] == sorted(a for a in ablate.split(",") if a)
    with pytest.raises(ConfigError, match="unknown ablation 'insight4'"):
        AgentTTSSearcher(space, **options(server, store, ablate="insight4"))


# ---------------------------------------------------------------------------------------------
# The two LLM baselines


def test_agenthpo_proposes_from_the_history(space, server, store):
    from search.llm import prompts

    s = get_searcher("agenthpo")(space, seed=0, **options(server, store, llm_json_mode=True))
    server.push(json.dumps({"analysis": "start cheap", "trials": [trial(SMALL, 2, SMALL, 2), trial(LARGE, 1, SMALL, 2)]}),
                json.dumps({"analysis": "big retrieval helps", "trials": [trial(LARGE, 1, SMALL, 6), trial(LARGE, 1, SMALL, 7)]}))
    trials = drive(s, store, 4)
    assert [t.point for t in trials] == [cfg(SMALL, 2, SMALL, 2), cfg(LARGE, 1, SMALL, 2), cfg(LARGE, 1, SMALL, 6),
                                          cfg(LARGE, 1, SMALL, 7)]
    first, second = user_text(server.requests[0]), user_text(server.requests[1])
    assert "(no trials yet)" in first and "## History of trials" in second
    assert f"{trials[1].score:.3f}" in second  # the history carries the replay's scores
    assert prompts.INSIGHT2 not in second and prompts.INSIGHT3 not in second
    assert server.requests[0]["response_format"] == {"type": "json_object"}
    assert s.state()["analysis"] == "big retrieval helps"


def test_mlcopilot_distils_knowledge_and_proposes_from_retrieved_experience(space, server, store):
    s = get_searcher("mlcopilot")(space, seed=0, **options(server, store, k_best=1, k_similar=1))
    server.push(
        json.dumps({"trials": [trial(SMALL, 2, SMALL, 2), trial(LARGE, 1, SMALL, 4), trial(LARGE, 1, LARGE, 1)][:2]}),
        json.dumps({"knowledge": ["retrieve needs big-8B", "answer works with tiny-1B samples"]}),
        json.dumps({"trials": [trial(LARGE, 1, SMALL, 5), trial(LARGE, 1, SMALL, 3)]}),
    )
    trials = drive(s, store, 2)
    trials = drive(s, store, 2, trials=trials)
    assert [t.point for t in trials] == [cfg(SMALL, 2, SMALL, 2), cfg(LARGE, 1, SMALL, 4), cfg(LARGE, 1, SMALL, 5),
                                          cfg(LARGE, 1, SMALL, 3)]
    assert len(server.requests) == 3  # cold start: no knowledge call; then distil + propose
    assert "(no experience yet" in user_text(server.requests[0])
    distil, propose = user_text(server.requests[1]), user_text(server.requests[2])
    assert '"knowledge": [<string>, ...]' in distil and "## Experience (every trial so far)" in distil
    assert f"{trials[1].score:.3f}" in distil
    assert "- retrieve needs big-8B" in propose and "## Retrieved experience" in propose
    assert s.state()["knowledge"] == ["retrieve needs big-8B", "answer works with tiny-1B samples"]
    assert trials[-1].extra["knowledge_call"]["raw_answer"].startswith('{"knowledge"')
    # retrieval: the best trial, then its nearest neighbour (same models), not the far one
    best = max(trials, key=lambda t: (t.score, -t.cost))
    got = s.retrieve()
    assert len(got) == 2 and best in got
    other = next(t for t in got if t is not best)
    assert other.point.stages[0].model == LARGE


# ---------------------------------------------------------------------------------------------
# The answer parser and the settings


def test_answer_parser_is_strict_except_for_think_blocks_and_one_fence(space):
    from search.llm.answer import AnswerProblem, parse_answer

    fields = {"guidelines": "strings", "trials": "trials"}
    good = answer([(LARGE, 1, SMALL, 4)], ["  prefer\n big  "])
    wrapped = f"<think>\nlet me think {{not json}}\n</think>\n```json\n{good}\n```"
    a = parse_answer(wrapped, fields, space)
    assert a.trials == (cfg(LARGE, 1, SMALL, 4),) and a.fields["guidelines"] == ["prefer big"]
    bad = {
        "here you go: " + good: "malformed_json",
        "": "malformed_json",
        json.dumps([trial(LARGE, 1, SMALL, 4)]): "schema_errors",
        json.dumps({"guidelines": [], "trials": [trial(LARGE, 1, SMALL, 4)], "notes": "x"}): "schema_errors",
        json.dumps({"guidelines": "one string", "trials": [trial(LARGE, 1, SMALL, 4)]}): "schema_errors",
        json.dumps({"guidelines": [], "trials": []}): "schema_errors",
        json.dumps({"guidelines": [], "trials": [{"retrieve": {"model": LARGE, "samples": 1}}]}): "schema_errors",
        json.dumps({"guidelines": [], "trials": [trial(LARGE, 2.0, SMALL, 4)]}): "schema_errors",
        json.dumps({"guidelines": [], "trials": [trial(LARGE, True, SMALL, 4)]}): "schema_errors",
        json.dumps({"guidelines": [], "trials": [trial(LARGE, "2", SMALL, 4)]}): "schema_errors",
        json.dumps({"guidelines": [], "trials": [{**trial(LARGE, 1, SMALL, 4), "rerank": {"model": SMALL, "samples": 1}}]}): "schema_errors",
    }
    for text, kind in bad.items():
        with pytest.raises(AnswerProblem) as e:
            parse_answer(text, fields, space)
        assert e.value.kind == kind, text


def test_settings_reject_bad_numbers(space, server):
    with pytest.raises(ConfigError, match="--llm-retries"):
        AgentTTSSearcher(space, **plain_options(server, llm_retries=-1))
    with pytest.raises(ConfigError, match="--trials-per-round"):
        AgentTTSSearcher(space, **plain_options(server, trials_per_round=0))
    with pytest.raises(ConfigError, match="--llm-timeout:"):
        AgentTTSSearcher(space, **plain_options(server, llm_timeout_s="soon"))
