"""The LLM client and consult loop against a misbehaving endpoint (a scripted local server):
responses that are not the API's, oversized answers, context overflow, structured outputs,
credentials in the base URL, a server that comes back at another address, and what the LLM
contributed as the summaries show it. Store: the small SYNTHETIC store of tests/llmkit.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from search.llm import LLMRejected, LLMUnavailable
from search.llm import client as client_mod
from search.llm.client import LLMClient, LLMSettings
from search.searchers.agenttts import AgentTTSSearcher

from clikit import run_main
from llm_server import Fail, Raw, ScriptedLLMServer
from llmkit import LARGE, SMALL, answer, drive, expected_insight1_plan, user_text
from llmkit import no_env, server, space, store, store_path  # noqa: F401 (the fixtures)

OVERFLOW = ("This model's maximum context length is 2048 tokens. However, you requested 2731 tokens "
            "(2475 in the messages, 256 in the completion). Please reduce the length of the messages.")

NOT_API = {
    "html": Raw(b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
                content_type="text/html"),
    "empty": Raw(b""),
    "truncated": Raw(b'{"id": "c1", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "ass'),
    "no_choices": Raw(json.dumps({"id": "c1", "object": "chat.completion", "model": "m"}).encode()),
    "empty_choices": Raw(json.dumps({"id": "c1", "object": "chat.completion", "model": "m", "choices": []}).encode()),
}


def settings(server, **kw) -> LLMSettings:
    return LLMSettings.from_options({"llm_base_url": server.base_url, "llm_model": "m", "llm_timeout_s": 5.0,
                                     "llm_retries": 1, **kw}, "test")


def searcher(space, server, store, **kw) -> AgentTTSSearcher:
    s = AgentTTSSearcher(space, seed=0, llm_base_url=server.base_url, llm_model="m", llm_backoff_s=0.001,
                         llm_timeout_s=5.0, trials_per_round=2, **kw)
    drive(s, store, len(s.init_plan))  # the LLM-free initialisation
    return s


GOOD = answer([(LARGE, 1, SMALL, 4), (LARGE, 1, SMALL, 5)], ["ok"])


# ---------------------------------------------------------------------------------------------
# Responses that are not the API's: retried, then one line (exit 3); never a model answer


@pytest.mark.parametrize("kind", list(NOT_API))
def test_a_response_that_is_not_the_apis_is_retried_then_one_line(server, kind):
    sleeps = []
    c = LLMClient(settings(server), sleep=sleeps.append)
    server.push(NOT_API[kind], "{}")
    reply = c.chat([{"role": "user", "content": "hi"}])
    assert reply.text == "{}" and reply.attempts == 2 and len(sleeps) == 1
    assert reply.failures[0].startswith("not an API response"), reply.failures
    server.push(NOT_API[kind], NOT_API[kind])
    with pytest.raises(LLMUnavailable) as e:
        c.chat([{"role": "user", "content": "hi"}])
    msg = str(e.value)
    assert "\n" not in msg and e.value.exit_code == 3 and "not an API response" in msg and "2 attempts" in msg
    if kind == "html":
        assert "HTML" in msg


def test_an_answer_over_the_size_limit_is_cut_counted_and_sent_back(space, server, store):
    c = LLMClient(settings(server, llm_max_answer_chars=100))
    server.push("x" * 5000)
    r = c.chat([{"role": "user", "content": "hi"}])
    assert len(r.text) == 100 and r.cut == 5000
    # in the consult loop: counted, fed back (not echoed whole), and the next answer is used
    s = searcher(space, server, store, llm_max_answer_chars=400)
    server.push("{" + "y" * 3000, GOOD)
    props = s.ask()
    assert [p.source for p in props] == ["llm", "llm"]
    c = s.state()["counters"]
    assert c["oversized_answers"] == 1 and c["retries"] == 1 and c["usable_answers"] == 1 and c["llm_calls"] == 2
    echoed = server.requests[-1]["messages"][-2]["content"]
    assert len(echoed) < 600 and "over the limit of 400" in server.requests[-1]["messages"][-1]["content"]
    # the default bounds: a finite max_tokens on every request, the answer limit from it
    st = settings(server)
    assert st.max_tokens == 2048 and st.max_answer_chars == 20480
    assert all(r["max_tokens"] == 2048 for r in server.requests)


# ---------------------------------------------------------------------------------------------
# Context overflow: the conversation is shortened and asked again, bounded


def test_context_overflow_cuts_the_archive_then_the_feedback_and_goes_on(space, server, store):
    s = searcher(space, server, store)
    sizes = []

    def archive_too_long(req):  # the first prompt, with the whole archive, is over the context
        sizes.append(len(user_text(req)))
        return Fail(400, OVERFLOW) if sizes[-1] >= sizes[0] else GOOD

    server.responder = archive_too_long
    props = s.ask()
    assert [p.source for p in props] == ["llm", "llm"]
    assert s.state()["counters"]["context_overflows"] >= 1 and sizes[-1] < sizes[0]
    assert "earlier trial(s) not shown" in user_text(server.requests[-1])
    assert any("archive cut" in e for e in props[0].extra["context_overflows"])

    # a long bad answer echoed back overflows: the feedback is cut to the last exchange, short
    server.responder = None
    n0 = len(server.requests)
    server.push("Let me think. " + "blah " * 600)  # malformed, 3,000 characters

    def echo_too_long(req):
        longest = max(len(m["content"]) for m in req["messages"] if m["role"] == "assistant")
        return Fail(400, OVERFLOW) if longest > 1000 else answer([(LARGE, 2, SMALL, 4), (LARGE, 2, SMALL, 5)])

    server.responder = echo_too_long
    props = s.ask()
    assert [p.source for p in props] == ["llm", "llm"]
    assert len(server.requests) - n0 == 3  # the bad answer, the overflow, the shortened retry
    assert any("feedback" in e for e in props[0].extra["context_overflows"])
    c = s.state()["counters"]
    assert c["context_overflows"] >= 2 and c["malformed_json"] == 1


def test_context_overflow_that_cannot_be_cut_is_one_line_and_bounded(space, server, store):
    s = searcher(space, server, store)
    server.responder = lambda req: Fail(400, OVERFLOW)
    with pytest.raises(LLMRejected) as e:
        s.ask()
    msg = str(e.value)
    assert "\n" not in msg and e.value.exit_code == 3 and "longer context" in msg
    assert len(server.requests) <= 1 + 7  # the first ask, then one per step of the archive cut


# ---------------------------------------------------------------------------------------------
# Structured outputs: the answer's schema as response_format; auto falls back


def test_structured_output_sends_the_schema_and_auto_falls_back(space, server, store):
    s = searcher(space, server, store)

    def no_json_schema(req):
        if (req.get("response_format") or {}).get("type") == "json_schema":
            return Fail(400, "response_format type 'json_schema' is not supported by this server")
        return GOOD

    server.responder = no_json_schema
    props = s.ask()
    assert [p.source for p in props] == ["llm", "llm"]
    first, second = server.requests[-2:]
    schema = first["response_format"]["json_schema"]["schema"]
    assert set(schema["required"]) == {"guidelines", "trials"}
    trial = schema["properties"]["trials"]["items"]
    assert set(trial["properties"]) == {"retrieve", "answer"}
    assert second["response_format"] == {"type": "json_object", "schema": schema}
    st = s.state()
    assert st["llm_structured"] == "json-object-schema" and "json-schema refused" in st["llm_structured_notes"][0]
    assert st["counters"]["endpoint_failures"] == 0  # a refused format is not an endpoint failure

    # off: no response_format; an explicit mode the endpoint refuses: one line naming the switch
    off = searcher(space, server, store, llm_structured="off")
    server.push(GOOD)
    off.ask()
    assert "response_format" not in server.requests[-1]
    strict = searcher(space, server, store, llm_structured="json-schema")
    with pytest.raises(LLMRejected, match="--llm-structured"):
        strict.ask()


# ---------------------------------------------------------------------------------------------
# The command line: bounds, exit 3 with the archive kept, resume at another address,
# credentials never written, the LLM's contribution in every summary


def no_backoff(monkeypatch):
    monkeypatch.setattr(client_mod.LLMClient.__init__, "__defaults__", (lambda s: None,))


def files_text(folder: Path) -> str:
    return "\n".join(p.read_bytes().decode(errors="replace") for p in Path(folder).rglob("*") if p.is_file())


def test_search_cli_endpoint_failure_resume_elsewhere_and_no_credentials(store_path, space, tmp_path, capsys,
                                                                         monkeypatch):
    from search.cli import main

    no_backoff(monkeypatch)
    n_init = len(expected_insight1_plan(space))
    out = tmp_path / "tts"
    secret = "sekrit-KEY-4711"

    def argv(srv, *extra):
        url = srv.base_url.replace("http://", f"http://agent-user:{secret}@")
        return ["run", "--replay", str(store_path), "--searcher", "agenttts", "--trials", str(n_init + 2), "--no-optimum",
                "--llm-base-url", url, "--llm-model", "m", "--llm-max-tokens", "300", "--llm-timeout", "5",
                "--out", str(out), *extra]

    with ScriptedLLMServer(lambda req: NOT_API["html"]) as down:
        code, o1, e1 = run_main(main, argv(down), capsys)
        assert down.requests and all(r["max_tokens"] == 300 for r in down.requests), (code, o1, e1)
    assert code == 3, e1
    last = e1.strip().splitlines()[-1]
    assert last.startswith("error:") and "not an API response" in last and "--resume" in last
    assert (out / "archive.jsonl").is_file() and not (out / "summary.json").exists()

    with ScriptedLLMServer() as back:  # the server came back on another port
        back.push(GOOD)
        code, o2, e2 = run_main(main, argv(back, "--resume"), capsys)
    assert code == 0, e2
    summary = json.loads((out / "summary.json").read_text())
    lc = summary["llm_contribution"]
    assert (lc["llm_trials"], lc["trials"], lc["calls"], lc["usable_answers"]) == (2, n_init + 2, 1, 1)
    assert lc["sources"] == {"init": n_init, "llm": 2} and lc["structured"] == "json-schema"
    assert "LLM contribution" in o2 and f"2 of {n_init + 2} trials proposed by the LLM" in o2

    code, o3, e3 = run_main(main, ["compare", str(out)], capsys)
    assert code == 0, e3
    assert "LLM share" in o3 and f"2/{n_init + 2} (usable 1/1)" in o3

    for text in (o1, e1, o2, e2, o3, e3, files_text(out)):
        assert secret not in text and "agent-user" not in text
    assert "***@127.0.0.1" in files_text(out)  # the endpoint is shown, masked


def test_bad_llm_bounds_are_one_line_exit_2(store_path, tmp_path, capsys):
    from search.cli import main

    for flag, value in (("--llm-max-tokens", "-1"), ("--llm-timeout", "0"), ("--llm-structured", "xml"),
                        ("--llm-max-tokens", "many")):
        for cmd in (["run", "--replay", str(store_path), "--searcher", "agenttts"],
                    ["sweep", "--stores", str(store_path), "--searchers", "agenttts"]):
            code, out, err = run_main(main, [*cmd, flag, value, "--out", str(tmp_path / "x")], capsys)
            assert code == 2 and len(err.strip().splitlines()) == 1 and flag in err, (flag, err)


def test_sweep_passes_the_bounds_shows_the_llm_share_and_writes_no_credentials(store_path, space, server, tmp_path,
                                                                              capsys, monkeypatch):
    from search.cli import main

    no_backoff(monkeypatch)
    n_init = len(expected_insight1_plan(space))
    secret = "sekrit-KEY-4711"
    url = server.base_url.replace("http://", f"http://agent-user:{secret}@")
    server.responder = lambda req: GOOD
    out = tmp_path / "sweep"
    code, o, e = run_main(main, ["sweep", "--stores", str(store_path), "--searchers", "agenttts,random", "--seeds", "0",
                                 "--trials", str(n_init + 2), "--no-optimum", "--workers", "1", "--llm-base-url", url,
                                 "--llm-model", "m", "--llm-max-tokens", "300", "--llm-structured", "json-object-schema",
                                 "--out", str(out)], capsys)
    assert code == 0, e
    assert server.requests and all(r["max_tokens"] == 300 and r["response_format"]["type"] == "json_object"
                                   and "schema" in r["response_format"] for r in server.requests)
    report = (out / "report.md").read_text()
    assert "LLM trials" in report and f"2/{n_init + 2} (usable 1/1, malformed 0, fills 0" in report
    for text in (o, e, files_text(out)):
        assert secret not in text and "agent-user" not in text


def test_the_answer_schema_admits_every_valid_answer_and_refuses_invalid_ones(space):
    """The schema sent for structured outputs is the parser's format: the prompt's example and
    every point of the space pass it; an unknown model, a disallowed count or a missing stage do
    not (config space), nor a parameter out of range (controller space on traces/aime24)."""
    jsonschema = pytest.importorskip("jsonschema")
    import numpy as np

    import replay
    from search.llm.answer import answer_schema
    from search.runner import make_setup
    from search.settings import ControllerSpaceSettings

    fields = {"guidelines": "strings", "trials": "trials"}
    schema = answer_schema(fields, space, 2)
    ok = jsonschema.Draft202012Validator(schema)
    rng = np.random.default_rng(0)
    for _ in range(50):
        p = space.sample(rng)
        t = {st: {"model": ch.model, "samples": ch.samples} for st, ch in zip(space.stages, p.stages)}
        ok.validate({"guidelines": ["g"], "trials": [t]})
    ok.validate({"guidelines": [], "trials": [space.answer_example()]})
    good = space.answer_example()
    st0 = space.stages[0]
    for bad in ({**good, st0: {"model": "gpt-9", "samples": 1}}, {**good, st0: {**good[st0], "samples": 10_000}},
                {k: v for k, v in good.items() if k != st0}):
        assert not ok.is_valid({"guidelines": [], "trials": [bad]})

    root = Path(__file__).resolve().parents[1] / "traces" / "aime24"
    if not (root / "manifest.json").exists():
        return
    cs = make_setup(replay.open(str(root)), ControllerSpaceSettings(controller="probe", model="Qwen3-8B",
                                                                    budget_tokens=60_000.0), replicates=2).space
    cv = jsonschema.Draft202012Validator(answer_schema(fields, cs, 1))
    ex = cs.answer_example()
    cv.validate({"guidelines": [], "trials": [ex]})
    name = cs.dims[0].name
    assert not cv.is_valid({"guidelines": [], "trials": [{**ex, name: cs.dims[0].search_range[1] + 1000}]})


def test_answer_schema_has_no_text_lengths_and_the_parser_cuts_long_texts():
    """llama.cpp compiles `maxLength: N` into N nested grammar rules and refused the schema at
    2,000 (its server fell over): text lengths stay out of the schema, the parser bounds them."""
    from search.llm.answer import SCHEMA_ITEM_CHARS, SCHEMA_TEXT_CHARS, answer_schema, parse_answer

    schema = answer_schema({"analysis": "string", "guidelines": "strings"}, None)
    assert "maxLength" not in json.dumps(schema)
    ans = parse_answer(json.dumps({"analysis": "a" * 5000, "guidelines": ["g" * 900, "short"]}),
                       {"analysis": "string", "guidelines": "strings"}, None)
    assert len(ans.fields["analysis"]) == SCHEMA_TEXT_CHARS
    assert [len(g) for g in ans.fields["guidelines"]] == [SCHEMA_ITEM_CHARS, 5]
