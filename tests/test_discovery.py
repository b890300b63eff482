"""The discovery loop (search --space program --searcher discover) against the local scripted
LLM server: canned programs that are good, fail to parse, import os, loop forever, allocate
10 GB, fork, write outside their folder, open a socket, kill their parent (and the caller),
return invalid actions, loop on actions or exceed the budget. Each is handled (static checks,
or stopped by the sandbox and reported) and the search goes on. Plus: the static checks, the
answer reader, the score rules, traces and diagnostics, resume, the best program as a file that
`replay frontier --controller` draws, and the command line.

The store is SYNTHETIC (built here): its numbers test the machinery, not any model.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

import replay
from replay import schema as S
from replay.controllers import evaluate_controller
from search.discovery.checks import check_program
from search.discovery.prompts import extract_program
from search.discovery.score import CurvePoint, ScoreRule, log_auc
from search.discovery.seeds import SEEDS
from search.runner import make_setup, report_search, run_search
from search.settings import ProgramSpaceSettings
from search.spaces.program import seed_program

from clikit import run_main
from llm_server import ScriptedLLMServer

K = 100


def build_store(path: Path, seed: int = 0, n_q: int = 8, pool: int = 16, name: str = "sim-discovery") -> replay.Store:
    """SYNTHETIC. n_q questions (the first 5 train, the rest test), two models, `pool` chains per
    question, probes every K = 100 tokens whose readings drift towards the chain's final answer."""
    rng = np.random.default_rng(seed)
    rows = {k: [] for k in ("question_id", "stage", "model", "context", "sample_index", "answer", "score",
                            "prompt_tokens", "completion_tokens", "probes")}
    golds = []
    for qi in range(n_q):
        gold = f"{qi}"
        golds.append(gold)
        for mi, m in enumerate(("small", "large")):
            p_right = 0.35 + 0.3 * mi + 0.2 * rng.random()
            for j in range(pool):
                ans = gold if rng.random() < p_right else f"{qi}{int(rng.integers(1, 4))}"
                L = int(rng.integers(200, 1500))
                n_int = -(-L // K)
                probes = []
                for d in range(n_int):
                    if rng.random() < 0.15:
                        probes.append("ERR")
                    elif rng.random() < (d + 1) / n_int:
                        probes.append(ans)
                    else:
                        probes.append(f"{qi}{int(rng.integers(1, 4))}")
                rows["question_id"].append(f"q{qi}")
                rows["stage"].append("solve")
                rows["model"].append(m)
                rows["context"].append(S.ROOT_CONTEXT)
                rows["sample_index"].append(j)
                rows["answer"].append(ans)
                rows["score"].append(1.0 if ans == gold else 0.0)
                rows["prompt_tokens"].append(20)
                rows["completion_tokens"].append(L)
                rows["probes"].append(probes)
    manifest = S.Manifest(name=name, synthetic=True, stages=(S.Stage(name="solve"),),
                          models=(S.Model("small", 1e9), S.Model("large", 8e9)), probe_interval=K)
    questions = {"question_id": [f"q{i}" for i in range(n_q)],
                 "split": ["train" if i < 5 else "test" for i in range(n_q)], "gold": golds}
    return replay.open(replay.write_store(path, manifest, questions, rows))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return build_store(tmp_path_factory.mktemp("disc") / "store")


# --------------------------------------------------------------------------------------------
# canned programs

GOOD = '''\
from replay.controllers import ScriptedController, Param, Open, Continue, Answer, lerp


class Good(ScriptedController):
    """Open n chains, run each to its end, answer the majority."""
    name = "good"
    params = (Param("n", 1, 16, integer=True, default=3),)

    @classmethod
    def beta_params(cls, beta):
        return {"n": lerp(1, 9, beta, integer=True)}

    def script(self, ep):
        for _ in range(min(self.n, ep.pool_size)):
            yield Open()
            yield Continue(ep.n_opened - 1, None)
        yield Answer()
'''


def hostile(cls: str, body: str, *, imports: str = "import numpy as np") -> str:
    """A program that passes the static checks and misbehaves when it runs (`body` first)."""
    lines = "\n".join("        " + x for x in body.strip().splitlines())
    return f'''{imports}
from replay.controllers import ScriptedController, Param, Open, Continue, Probe, Answer, lerp


def libc():
    return np.ctypeslib.ctypes.CDLL(None, use_errno=True)


class {cls}(ScriptedController):
    name = "{cls.lower()}"
    params = (Param("n", 1, 16, integer=True, default=2),)

    @classmethod
    def beta_params(cls, beta):
        return {{"n": lerp(1, 4, beta, integer=True)}}

    def script(self, ep):
{lines}
        for _ in range(self.n):
            yield Open()
            yield Continue(ep.n_opened - 1, None)
        yield Answer()
'''


def canned(outside: Path) -> list[tuple[str, str, str]]:
    """(what, the agent's answer, expected status of its trial)."""
    caller = os.getpid()
    fence = lambda src: f"Plan: try it.\n```python\n{src}```\n"  # noqa: E731
    return [
        ("good", fence(GOOD), "ok"),
        ("fails to parse", fence(GOOD.replace("def script(self, ep):", "def script(self ep):")), "checks_failed"),
        ("imports os", fence("import os\n" + GOOD.replace("yield Answer()", "os.fork()\n        yield Answer()")),
         "checks_failed"),
        ("no code at all", "I would write a controller that stops early.", "checks_failed"),
        ("loops forever", fence(hostile("Spin", "while True:\n    pass")), "timeout"),
        ("allocates 10 GB", fence(hostile("Hog", "blob = bytearray(10 * 1024 ** 3)")), "memory"),
        ("forks", fence(hostile("Forker", "pid = libc().fork()\nif pid == 0:\n    libc()._exit(0)\n"
                                          "if pid < 0:\n    raise RuntimeError('fork refused')")), "error"),
        ("writes outside its folder", fence(hostile("Writer", f"np.savetxt({str(outside)!r}, np.zeros(3))")), "error"),
        ("opens a socket", fence(hostile("Netter", "fd = libc().socket(2, 1, 0)\nif fd < 0:\n"
                                                   "    raise RuntimeError('socket refused')")), "error"),
        ("kills its parent and the caller", fence(hostile("Killer", f"r1 = libc().kill({caller}, 9)\n"
                                                                    "r2 = libc().kill(libc().getppid(), 9)\n"
                                                                    "raise RuntimeError(f'kill returned {r1} {r2}')")),
         "error"),
        ("invalid action", fence(GOOD.replace("yield Continue(ep.n_opened - 1, None)", "yield Continue(99)")), "error"),
        ("loops on actions", fence(GOOD.replace("yield Answer()", "while True:\n            yield Probe(0)")
                                   .replace("Continue, Answer", "Continue, Probe, Answer")), "error"),
        ("exceeds the budget", fence(GOOD.replace("min(self.n, ep.pool_size)", "ep.pool_size")
                                     .replace("class Good", "class Spender").replace('"good"', '"spender"')),
         "no_score"),
        ("good again, better", fence(GOOD.replace("lerp(1, 9, beta", "lerp(1, 15, beta")
                                     .replace("class Good", "class Wider").replace('"good"', '"wider"')), "ok"),
    ]


def options(srv, **kw):
    return {"llm_base_url": srv.base_url, "llm_model": "test-model", "llm_retries": 0, "llm_backoff_s": 0.0,
            "max_feedback": 0, **kw}


def budget_for(store) -> float:
    """A token budget that one chain per question fits and every chain of the pool does not."""
    one = evaluate_controller(store, "majority", "small", params={"n": 1}, questions=[f"q{i}" for i in range(5)],
                              replicates=4).tokens
    return 3.0 * one


def settings(store, **kw):
    base = dict(model="small", score=f"accuracy@{budget_for(store):.0f}", betas=5, wall_s=6.0, memory_mb=1024,
                heldout_replicates=4, workers=1)
    base.update(kw)
    return ProgramSpaceSettings(**base)


# --------------------------------------------------------------------------------------------
# the search goes on through every kind of failure


def test_canned_programs_each_handled_and_the_search_goes_on(store, tmp_path):
    outside = tmp_path / "escaped.txt"
    cases = canned(outside)
    answers = iter([a for _, a, _ in cases])
    setup = make_setup(store, settings(store), replicates=4, test_replicates=4)
    with ScriptedLLMServer(lambda body: next(answers)) as srv:
        run = run_search(setup, "discover", trials=len(cases), options=options(srv), out=tmp_path / "out")
        summary = report_search(setup, run, out=tmp_path / "out")
        prompts = [r["messages"][-1]["content"] for r in srv.requests]
    assert len(run.trials) == len(cases) and run.stop == "trial budget spent"
    got = {what: t for (what, _, _), t in zip(cases, run.trials)}
    for (what, _, want), t in zip(cases, run.trials):
        if want is not None:
            assert t.metrics["status"] == want, (what, t.metrics["status"], t.metrics["error"])
    assert got["fails to parse"].metrics["checks"]["problems"][0].startswith("line 13: SyntaxError")
    assert "import of 'os' is not allowed" in got["imports os"].metrics["error"]
    assert got["no code at all"].source == "llm-empty"
    assert got["imports os"].source == "llm-rejected" and got["imports os"].metrics["timing"].get("sweep_s") is None
    assert "wall-clock limit" in got["loops forever"].metrics["error"]
    assert "memory" in got["allocates 10 GB"].metrics["error"]
    assert "fork refused" in got["forks"].metrics["error"]
    assert "PermissionError" in got["writes outside its folder"].metrics["error"] and not outside.exists()
    assert "socket refused" in got["opens a socket"].metrics["error"]
    assert "kill returned -1 -1" in got["kills its parent and the caller"].metrics["error"]  # and we are alive
    assert "Continue(99)" in got["invalid action"].metrics["error"]
    assert "actions without answering" in got["loops on actions"].metrics["error"]
    assert "over" in got["exceeds the budget"].metrics["why"]
    # the best is a program that ran, and the agent heard about every failure in the next prompt
    assert summary["best"]["config"].startswith(("Wider#", "Good#"))
    assert "import of 'os' is not allowed" in prompts[3]
    assert "wall-clock limit" in prompts[5]
    counters = summary["llm_counters"]
    assert counters["static_checks"] == 2 and counters["no_program"] == 1 and counters["llm_calls"] == len(cases)
    # every program's source, checks, curve and feedback are in the archive
    recs = [json.loads(x) for x in (tmp_path / "out" / "archive.jsonl").read_text().splitlines()[1:]]
    assert [r["point"]["source"] for r in recs][0] == GOOD
    assert all("feedback" in r["metrics"] and "checks" in r["metrics"] for r in recs)
    assert len(recs[0]["metrics"]["curve"]) == 5


def test_best_program_is_a_file_that_replay_frontier_draws(store, tmp_path, capsys):
    answers = iter([f"```python\n{GOOD}```", f"```python\n{SEEDS['probe']}```"])
    other = build_store(tmp_path / "other", seed=5, n_q=4, pool=8, name="sim-other")
    setup = make_setup(store, settings(store, test_stores=(str(other.path),)), replicates=4, test_replicates=4)
    out = tmp_path / "out"
    with ScriptedLLMServer(lambda body: next(answers)) as srv:
        run = run_search(setup, "discover", trials=2, options=options(srv), out=out)
        summary = report_search(setup, run, out=out)
    info = summary["program"]
    best_file = Path(info["best_program_file"])
    assert best_file.is_file() and (out / "heldout.png").is_file()
    cls = info["best_class"]
    rows = info["heldout"]["rows"]
    assert [(r["store"], r["model"], r["questions"]) for r in rows] == [
        ("sim-discovery", "small", 3), ("sim-discovery", "large", 3), ("sim-other", "small", 4), ("sim-other", "large", 4)]
    assert all("program_score" in r and "builtins_at_equal_tokens" in r for r in rows)
    from replay.cli import main

    code, stdout, _ = run_main(main, ["frontier", str(store.path), "--controller", f"{best_file}:{cls}",
                                      "--controllers", "majority,probe", "--replicates", "2", "--betas", "0:1:3",
                                      "--out", str(tmp_path / "f.png")], capsys)
    assert code == 0 and (tmp_path / "f.png").is_file() and f"class {cls}(" in best_file.read_text()
    assert cls.lower() in stdout  # its rows in the frontier table


# --------------------------------------------------------------------------------------------
# the round: feedback within it, trace requests, the prompt, resume


def test_rejected_program_goes_back_within_the_round_and_traces_on_request(store, tmp_path):
    answers = iter([
        f"```python\n{GOOD}```",                                  # round 1: runs
        "TRACE: q1, 2",                                           # round 2: only asks for traces
        "```python\nimport socket\n" + GOOD + "```",              # ... then a program that fails checks
        f"```python\n{SEEDS['adaptive']}```\nTRACE: q0",          # ... then a good one, with a trace request
    ])
    setup = make_setup(store, settings(store), replicates=4, test_replicates=4)
    with ScriptedLLMServer(lambda body: next(answers)) as srv:
        run = run_search(setup, "discover", trials=2, options=options(srv, max_feedback=2))
        msgs = [r["messages"] for r in srv.requests]
    assert len(run.trials) == 2 and run.trials[1].source == "llm"
    assert len(msgs[2]) == 4 and "Traces you asked for" in msgs[2][-1]["content"] and "question q1" in msgs[2][-1]["content"]
    assert "question q2" in msgs[2][-1]["content"]  # by position in the training list
    assert "import of 'socket' is not allowed" in msgs[3][-1]["content"]
    fb = run.trials[1].metrics["feedback"]
    assert "Traces you asked for" in fb and "question q0" in fb
    c = run.states[-1]["counters"]
    assert c["trace_requests"] == 1 and c["static_checks"] == 1 and c["retries"] == 2


def test_prompt_holds_protocol_builtins_best_program_feedback(store, tmp_path):
    answers = iter([f"```python\n{GOOD}```", f"```python\n{SEEDS['probe']}```"])
    setup = make_setup(store, settings(store), replicates=4, test_replicates=4)
    with ScriptedLLMServer(lambda body: next(answers)) as srv:
        run_search(setup, "discover", trials=2, options=options(srv))
        first, second = (r["messages"][-1]["content"] for r in srv.requests)
    for needle in ("## The controller protocol", "K = 100 tokens", "Advance(samples, steps=1)", "beta_params",
                   "Cost: the tokens generated", "Imports allowed", "## Task", "- probe: ", "- majority: ",
                   "Example program", "## Your answer", "TRACE:"):
        assert needle in first, needle
    assert "Example program" not in second
    for needle in ("## Best programs so far", "class Good", "## Feedback on your last program", "Curve (accuracy",
                   "Diagnostics over", "Traces of the", "## All programs so far", "trial 0 Good#"):
        assert needle in second, needle


def test_resume_continues_without_repeating_a_round(store, tmp_path):
    out = tmp_path / "out"
    progs = [GOOD, SEEDS["adaptive"], SEEDS["probe"]]
    setup = make_setup(store, settings(store), replicates=4, test_replicates=4)
    with ScriptedLLMServer(lambda body, it=iter(progs[:2]): f"```python\n{next(it)}```") as srv:
        run_search(setup, "discover", trials=2, options=options(srv), out=out)
    with ScriptedLLMServer(lambda body, it=iter(progs[2:]): f"```python\n{next(it)}```") as srv:
        run = run_search(setup, "discover", trials=3, options=options(srv), out=out, resume=True)
        (resumed_prompt,) = (r["messages"][-1]["content"] for r in srv.requests)
    assert run.resumed_from == 2 and len(run.trials) == 3
    assert [t.point.source for t in run.trials] == progs
    assert "trial 1 Adaptive#" in resumed_prompt and run.trials[2].extra["round"] == 2


# --------------------------------------------------------------------------------------------
# pieces


def test_seed_programs_in_the_sandbox_equal_the_compiled_builtins(store):
    setup = make_setup(store, settings(store, betas=5, workers=2), replicates=3, test_replicates=3)
    sp = setup.space
    base = sp.baseline(setup.objective)
    for name in ("adaptive", "probe"):
        ev = sp.evaluate([seed_program(name)], setup.objective)[0]
        assert ev.metrics["status"] in ("ok", "no_score"), ev.metrics["error"]
        got = [(c["accuracy"], c["tokens"]) for c in ev.metrics["curve"]]
        want = [(c.accuracy, c.tokens) for c in base.curves[name]]
        assert got == want, name


@pytest.mark.parametrize("src, needle", [
    ("", "empty"),
    ("x = (", "SyntaxError"),
    ("import os\n" + GOOD, "import of 'os'"),
    ("import subprocess as s\n" + GOOD, "import of 'subprocess'"),
    ("from ctypes import CDLL\n" + GOOD, "import of 'ctypes'"),
    (GOOD.replace("yield Answer()", "yield Answer(eval('1'))"), "'eval'"),
    (GOOD.replace("yield Answer()", "yield Answer(getattr(ep, 'x'))"), "'getattr'"),
    (GOOD.replace("yield Answer()", "yield Answer(ep.__class__)"), "'__class__'"),
    (GOOD.replace("yield Answer()", "yield Answer(open('/etc/passwd'))"), "'open'"),
    (GOOD + "\nprint('hi')\n", "top-level Expr"),
    (GOOD + "\nclass Other(ScriptedController):\n    def script(self, ep):\n        yield Answer()\n", "2 controller classes"),
    (GOOD.replace("ScriptedController)", "object)"), "no controller class"),
    (GOOD.replace("def script", "def other"), "defines no script"),
    (GOOD.replace("    @classmethod\n    def beta_params", "    def beta_params"), "must be a @classmethod"),
    (GOOD.replace("def beta_params", "def knob"), "defines no beta_params"),
    ("x = 1\n" * 5000, "over the limit"),
])
def test_static_checks_name_the_problem(src, needle):
    rep = check_program(src)
    assert not rep.ok and any(needle in p for p in rep.problems), rep.problems


def test_static_checks_pass_the_seeds_and_good_programs():
    for src in (GOOD, *SEEDS.values()):
        rep = check_program(src)
        assert rep.ok, rep.problems
    assert check_program(GOOD).class_name == "Good" and check_program(GOOD).controller_name == "good"


def test_answer_reader():
    code, req = extract_program(f"<think>hmm</think>Plan.\n```python\n{GOOD}```\nTRACE: q1, q3\n")
    assert code == GOOD and req == ["q1", "q3"]
    code, req = extract_program(f"```\n{GOOD}\n```\n```text\nnot code\n```")
    assert code.strip() == GOOD.strip() and req == []
    assert extract_program(GOOD) == (GOOD, [])  # no fences, but a program
    assert extract_program("TRACE 2") == (None, ["2"])
    assert extract_program("just words") == (None, [])
    code, _ = extract_program(f"```python\nhelper = 1\n```\n```python\n{GOOD}")  # last block unterminated
    assert "class Good" in code


def test_score_rules():
    curve = [CurvePoint(0.0, 0.5, 0, 100.0, 1, 0), CurvePoint(0.5, 0.7, 0, 400.0, 2, 0),
             CurvePoint(1.0, 0.65, 0, 1600.0, 4, 0)]
    r = ScoreRule.parse("accuracy@500")
    red = r.reduce(curve)
    assert (red.score, red.operating, red.cost) == (0.7, 1, 400.0)
    assert ScoreRule.parse("accuracy@50").reduce(curve).score is None
    a = ScoreRule.parse("auc@200-1600")
    # envelope: 0.5 on [200, 400), 0.7 on [400, 1600]; mean over log-uniform budgets
    want = (0.5 * math.log(2) + 0.7 * math.log(4)) / math.log(8)
    assert a.reduce(curve).score == pytest.approx(want) and log_auc(curve, 200, 1600) == pytest.approx(want)
    assert ScoreRule.parse("auc@10-50").reduce(curve).score is None
    t = ScoreRule.parse("tokens@majority:64")
    red = t.reduce(curve, reference=(0.6, 2000.0))
    assert red.score == pytest.approx(1 - 400 / 2000) and red.cost == 400.0
    assert t.reduce(curve, reference=(0.9, 2000.0)).score is None
    assert ScoreRule.parse("accuracy@150k").budget == 150_000 and ScoreRule.parse("auc@20k-1.5M").hi == 1.5e6
    from replay.errors import ConfigError

    for bad in ("accuracy", "auc@400-200", "tokens@majority:0", "best"):
        with pytest.raises(ConfigError):
            ScoreRule.parse(bad)


def test_trace_render_and_diagnostics_by_hand(tmp_path):
    from replay.controllers import step_arrays
    from replay.controllers.builtin import ProbeController
    from replay.controllers.trace import trace_episodes
    from search.discovery.feedback import diagnose, pool_facts, render_trace, split_traces

    st = build_store(tmp_path / "s", seed=3, n_q=3, pool=6)
    steps = step_arrays(st, "small")
    ctrl = ProbeController(width=2, settle=0, patience=2, threshold=0.6, max_samples=4)
    eps = [(q, r) for q in range(3) for r in range(3)]
    traces = split_traces(eps, trace_episodes(ctrl, steps, eps, seed=0))
    from replay.controllers.base import run_episodes

    s, tok, op, pr = run_episodes(ctrl, steps, [0, 1, 2], replicates=3, seed=0)
    for t in traces:  # the trace's summary is the plain engine's episode
        assert (t.score, t.total_tokens, t.opened, t.probes) == (s[t.question, t.replicate], tok[t.question, t.replicate],
                                                                  op[t.question, t.replicate], pr[t.question, t.replicate])
        assert t.tokens[-1] == t.total_tokens and t.events[-1, 0] == 4
    pools = pool_facts(steps, [0, 1, 2])
    text = render_trace(traces[0], pools[0], lambda a: None if a < 0 else str(steps.answers[a]), "q0")
    assert text.startswith("question q0, replicate 0: answered") and "open #0 open #1" in text and "stop: answer" in text
    d = diagnose(traces, pools)
    assert d["episodes"] == 9 and d["accuracy"] == pytest.approx(float(s.mean()))
    assert d["stopped_on_wrong_majority"] == sum(1 for t in traces if t.score < 1 and pools[t.question].majority_right)


# --------------------------------------------------------------------------------------------
# the command line


def test_cli_program_space_runs_and_bad_options_are_one_line(store, tmp_path, capsys):
    from search.cli import main as cli

    with ScriptedLLMServer(lambda body: f"```python\n{GOOD}```") as srv:
        code, stdout, stderr = run_main(cli, [
            "--replay", str(store.path), "--space", "program", "--model", "small", "--searcher", "discover",
            "--score", "tokens@majority:8", "--betas", "3", "--trials", "1", "--replicates", "2",
            "--test-replicates", "2", "--heldout-replicates", "2", "--llm-base-url", srv.base_url,
            "--llm-model", "m", "--out", str(tmp_path / "o")], capsys)
    assert code == 0, stderr
    assert "controller programs run in the sandbox:" in stderr
    for needle in ("best program", "held out sim-discovery/large (test)", "round time", "programs  ", "1 scored"):
        assert needle in stdout, needle
    for argv, needle in [
        (["--space", "program", "--searcher", "discover"], "--model"),
        (["--space", "program", "--model", "small", "--searcher", "discover", "--score", "best"], "--score"),
        (["--space", "program", "--model", "small", "--searcher", "discover", "--budget", "3"], "--budget"),
        (["--space", "program", "--model", "small", "--searcher", "bo"], "does not apply to --space program"),
        (["--score", "auc@1-2", "--searcher", "random"], "--score"),
        (["--space", "program", "--model", "small", "--searcher", "random", "--test-store", str(tmp_path / "nope")],
         "nope"),
    ]:
        code, _, err = run_main(cli, ["--replay", str(store.path), *argv], capsys)
        errors = [x for x in err.strip().splitlines() if not x.startswith("note: ")]
        assert code == 2 and needle in err and len(errors) == 1 and errors[0].startswith("error: "), (argv, err)


def test_other_llm_searchers_run_on_the_program_space_with_json_answers(store):
    answer = json.dumps({"analysis": "a majority vote", "trials": [{"class": "Good", "source": GOOD}]})
    setup = make_setup(store, settings(store, betas=3), replicates=2, test_replicates=2)
    with ScriptedLLMServer(lambda body: answer) as srv:
        run = run_search(setup, "agenthpo", trials=1, options={**options(srv), "trials_per_round": 1})
    (t,) = run.trials
    assert t.source == "llm" and t.metrics["status"] in ("ok", "no_score") and t.point.source == GOOD
    run = run_search(setup, "random", trials=1)  # the seed programs
    assert run.trials[0].point.note.startswith("seed: ") and run.trials[0].metrics["status"] in ("ok", "no_score")


def test_traced_leader_is_the_default_rule_after_every_action(tmp_path, monkeypatch):
    """The trace keeps the votes' leader without recomputing it on every action: check it is
    what the default rule says after each one (random policies, valid actions)."""
    from replay.controllers import step_arrays
    from replay.controllers.builtin import ProbeController
    from replay.controllers.trace import TracingEpisode, trace_episode

    seen = []
    plain_log = TracingEpisode._log

    def checked(self, *a):
        plain_log(self, *a)
        seen.append((self._lead, self.default_answer()))

    monkeypatch.setattr(TracingEpisode, "_log", checked)
    st = build_store(tmp_path / "s", seed=4, n_q=3, pool=10)
    steps = step_arrays(st, "large")
    for params in ({"width": 3, "settle": 0, "patience": 2, "threshold": 0.9, "max_samples": 10},
                   {"width": 1, "settle": 2, "patience": 1, "threshold": 0.6, "max_samples": 6}):
        for q in range(3):
            for r in range(4):
                trace_episode(ProbeController(**params), steps, q, r, 0)
    assert len(seen) > 200 and all(a == b for a, b in seen)
