"""The sandbox for untrusted programs (replay/sandbox): hostile programs, run once (as the ChatDev
executability check runs them) and as controllers (as `--controller file.py:Class` and
LLM-written controllers run), are each stopped and reported; nothing outside their folder
changes; the caller goes on. Each guarantee is tested where the probe says it holds, and the
report is checked to say NO where a layer is left out. Limits are small to keep this fast.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import replay
from replay.controllers import ControllerError, Setting, evaluate_settings, load_controller, step_arrays
from replay.controllers.builtin import BUILTINS
from replay.controllers.engine import run_python
from replay.sandbox import Limits, SandboxError, isolation, run, run_script

ROOT = Path(__file__).resolve().parents[1]
AIME = ROOT / "traces" / "aime24"

if not sys.platform.startswith("linux"):
    pytest.skip("the sandbox's guarantees are tested on Linux (docs/sandbox.md: other platforms)",
                allow_module_level=True)

FAST = Limits(wall_s=1.0, memory_mb=512, fsize_mb=8, nproc=16)
# three ways the sandbox can be built here: every layer; no PID namespace (the supervisor, a child
# subreaper, must find and kill what the program left); no separate user (uid 0 without capabilities)
MODES = [(), ("pid_ns",), ("nobody",)]


def _holds(iso, what: str) -> bool:
    return next(g.holds for g in iso.guarantees() if g.what.startswith(what))


def _need(without, what):
    iso = isolation(without=without)
    if not _holds(iso, what):
        pytest.skip(f"'{what}' does not hold with {iso.summary()}")
    return iso


# --------------------------------------------------------------------------------------------
# Hostile programs, run once


@pytest.fixture
def outside(tmp_path):
    """A folder outside the sandbox that the caller can write: nothing may appear in it."""
    d = tmp_path / "outside"
    d.mkdir()
    return d


@pytest.mark.parametrize("without", MODES, ids=["all", "no-pid-ns", "no-user"])
def test_infinite_loop_is_stopped_at_the_wall_clock_limit(without):
    t0 = time.monotonic()
    r = run_script("while True:\n    pass", limits=FAST, without=without)
    assert r.timed_out and not r.ok and "wall-clock limit (1 s)" in r.reason()
    assert time.monotonic() - t0 < FAST.wall_s + 2.0


@pytest.mark.parametrize("without", MODES, ids=["all", "no-pid-ns", "no-user"])
def test_10_gb_allocation_fails_at_the_memory_limit(without):
    _need(without, "memory limit")
    r = run_script("x = bytearray(10 << 30)\nprint('allocated')", limits=FAST, keep_stdout=True, without=without)
    assert not r.ok and r.reason() == "ran out of memory (limit 512 MiB)" and "allocated" not in r.stdout


@pytest.mark.parametrize("without", MODES, ids=["all", "no-pid-ns", "no-user"])
def test_fork_bomb_is_bounded_and_all_of_it_killed(without, tmp_path):
    _need(without, "process-count limit")
    box = tmp_path / "box"
    bomb = ("import os, time\n"
            "while True:\n"
            "    try:\n"
            "        if os.fork() == 0:\n"
            "            with open('born', 'a') as f:\n"
            "                f.write('x')\n"
            "    except OSError:\n"
            "        time.sleep(0.01)\n")
    r = run_script(bomb, workdir=box, limits=FAST, without=without)
    assert r.timed_out  # it never ends by itself; the supervisor stops it
    born = (box / "born").stat().st_size if (box / "born").exists() else 0
    assert born <= FAST.nproc + 64  # bounded by the process limit (seccomp may refuse every fork)
    time.sleep(0.3)
    assert ((box / "born").stat().st_size if (box / "born").exists() else 0) == born  # none survived


@pytest.mark.parametrize("without", MODES, ids=["all", "no-pid-ns", "no-user"])
def test_writes_outside_its_folder_fail(without, outside):
    _need(without, "no writes outside")
    target, tmp_target = outside / "pwned.txt", Path("/tmp") / f"sandbox-test-{os.getpid()}.txt"
    prog = (f"import os\nfor p in ({str(target)!r}, {str(tmp_target)!r}, os.path.expanduser('~/../pwned')):\n"
            "    try:\n        open(p, 'w').write('x')\n        print('wrote', p)\n    except OSError:\n        pass\n"
            "open('inside.txt', 'w').write('fine')\nassert open('inside.txt').read() == 'fine'\n")
    r = run_script(prog, limits=FAST, keep_stdout=True, without=without)
    assert r.ok, r.reason()  # writing its own folder works
    assert "wrote" not in r.stdout
    assert not target.exists() and not tmp_target.exists() and list(outside.iterdir()) == []


@pytest.mark.parametrize("without", MODES, ids=["all", "no-pid-ns", "no-user"])
def test_reading_secrets_fails_even_for_a_root_caller(without):
    _need(without, "no reads outside")
    prog = ("import os\nfor p in ('/etc/shadow', os.path.expanduser('/root/.bashrc'), '/proc/1/environ', "
            f"{str(Path(__file__))!r}):\n"
            "    try:\n        print(p, len(open(p).read()))\n    except OSError:\n        pass\n")
    r = run_script(prog, limits=FAST, keep_stdout=True, without=without)
    assert r.ok and r.stdout.strip() == "", r.stdout


@pytest.mark.parametrize("without", MODES, ids=["all", "no-pid-ns", "no-user"])
def test_sockets_reach_nothing(without):
    _need(without, "no network")
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(0.2)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(0.2)
    port, uport = srv.getsockname()[1], udp.getsockname()[1]
    prog = ("import _socket as s\nok = []\n"
            f"try:\n    c = s.socket(s.AF_INET, s.SOCK_STREAM)\n    c.settimeout(1)\n    c.connect(('127.0.0.1', {port}))\n"
            "    ok.append('tcp')\nexcept OSError:\n    pass\n"
            f"try:\n    u = s.socket(s.AF_INET, s.SOCK_DGRAM)\n    u.sendto(b'x', ('127.0.0.1', {uport}))\n    ok.append('udp')\n"
            "except OSError:\n    pass\nprint(ok)\n")
    try:
        r = run_script(prog, limits=FAST, keep_stdout=True, without=without)
        assert r.ok and r.stdout.strip() == "[]", r.stdout
        with pytest.raises(socket.timeout):
            srv.accept()
        with pytest.raises(socket.timeout):
            udp.recvfrom(10)
    finally:
        srv.close()
        udp.close()


@pytest.mark.parametrize("without", MODES, ids=["all", "no-pid-ns", "no-user"])
def test_killing_its_parent_or_the_caller_fails(without):
    _need(without, "cannot signal")
    prog = ("import os, signal\nhit = []\n"
            f"for pid in (os.getppid(), {os.getpid()}, 1):\n"
            "    try:\n        os.kill(pid, signal.SIGKILL)\n        hit.append(pid)\n    except OSError:\n        pass\n"
            "print(hit)\n")
    r = run_script(prog, limits=FAST, keep_stdout=True, without=without)
    assert r.ok and r.stdout.strip() == "[]", (r.reason(), r.stdout)
    # and the caller is alive (this line runs); the supervisor reported normally (r exists)


@pytest.mark.parametrize("without", MODES, ids=["all", "no-pid-ns", "no-user"])
def test_killing_its_own_group_kills_only_itself(without):
    r = run_script("import os, signal\nos.killpg(os.getpgrp(), signal.SIGKILL)", limits=FAST, without=without)
    assert r.signal == signal.SIGKILL and r.reason() == "killed by SIGKILL"


@pytest.mark.parametrize("without", MODES, ids=["all", "no-pid-ns", "no-user"])
def test_a_setsid_daemon_is_killed_when_the_check_returns(without, tmp_path):
    _need(without, "everything it started is killed")
    box = tmp_path / "box"
    daemon = ("import os, time\n"
              "if os.fork() == 0:\n"
              "    os.setsid()\n"
              "    if os.fork() == 0:\n"
              "        while True:\n"
              "            with open('log', 'a') as f:\n"
              "                f.write('x')\n"
              "            time.sleep(0.02)\n"
              "    os._exit(0)\n"
              "time.sleep(0.3)\n")
    iso = isolation(without=without)
    if iso.user == "nocaps":
        r = run_script(daemon, workdir=box, limits=FAST, without=without)
        assert not r.ok and "BlockingIOError" in r.stderr  # uid 0: no process may be started at all
        return
    r = run_script(daemon, workdir=box, limits=FAST, without=without)
    assert r.ok, r.reason()
    n = (box / "log").stat().st_size
    assert n > 0  # the daemon ran while the program did
    time.sleep(0.4)
    assert (box / "log").stat().st_size == n  # and nothing writes after the check returned


def test_the_file_size_limit_and_a_folder_given_by_the_caller(tmp_path):
    box = tmp_path / "mine"
    r = run_script("open('big', 'wb').write(b'x' * (20 << 20))", workdir=box, limits=FAST)
    assert not r.ok and r.reason() == "wrote a file over the size limit (8 MiB)"
    assert box.is_dir() and (box / "big").stat().st_size <= 8 << 20  # the caller's folder stays


def test_the_chatdev_check_runs_in_the_sandbox(outside):
    from collect.tasks.chatdev import run_program

    assert run_program("print('ok')")
    assert not run_program("while True:\n    pass", timeout_s=1.0)
    assert run_program("import time\ntime.sleep(30)", timeout_s=0.5, alive_ok=True)
    assert not run_program("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)")
    assert not run_program(f"open({str(outside / 'x')!r}, 'w').write('x')")
    assert not run_program("print(len(open('/etc/shadow').read()))")
    assert list(outside.iterdir()) == []
    # the prelude's Python-level refusal, whatever the kernel layers
    check = ("import socket\ntry:\n    socket.socket(socket.AF_INET, socket.SOCK_STREAM)\nexcept OSError as e:\n"
             "    assert 'disabled' in str(e)\nelse:\n    raise SystemExit(3)\na, b = socket.socketpair()\n")
    assert run_program(check)


# --------------------------------------------------------------------------------------------
# What the report says


def test_the_report_names_every_missing_guarantee():
    full = isolation()
    assert full.summary().startswith("sandbox: ")
    weak = isolation(without=("landlock", "seccomp", "net_ns", "pid_ns", "subreaper", "nobody"))
    missing = {g.what for g in weak.guarantees() if not g.holds}
    assert {"no network", "no writes outside its folder",
            "no reads outside the interpreter, system libraries and its folder",
            "everything it started is killed at the end", "process-count limit"} <= missing
    s = weak.summary()
    assert "NOT guaranteed here" in s and "no network" in s and "process-count limit" in s
    with pytest.raises(SandboxError, match="unknown layer"):
        isolation(without=("nosuch",))
    p = subprocess.run([sys.executable, "-m", "replay.cli", "sandbox", "--without", "landlock"], capture_output=True,
                       text=True, cwd=ROOT)
    assert p.returncode == 0 and "NO   no writes outside its folder" in p.stdout


def test_bad_calls_are_one_line_errors(tmp_path):
    with pytest.raises(SandboxError, match="absolute path"):
        run(["python3", "-c", "pass"])
    with pytest.raises(SandboxError, match="positive"):
        run_script("pass", limits=Limits(wall_s=0))
    with pytest.raises(SandboxError, match="leaves the folder"):
        run_script("pass", files={"../x.py": "x"})


# --------------------------------------------------------------------------------------------
# Controllers in the sandbox


FIRST_READING = '''
from replay.controllers import ScriptedController, Param, Open, Continue, Probe, Prune, Answer, lerp

class FirstReading(ScriptedController):
    """Open `n` samples, run each `depth` intervals, probe, prune the odd ones, answer the majority."""
    name = "first-reading"
    params = (Param("n", 1, 64, integer=True, default=3), Param("depth", 1, 100, integer=True, default=2))

    @classmethod
    def beta_params(cls, beta):
        return {"n": lerp(1, 7, beta, integer=True), "depth": lerp(1, 9, beta, integer=True)}

    def script(self, ep):
        for _ in range(min(self.n, ep.pool_size)):
            yield Open()
            i = ep.n_opened - 1
            yield Continue(i, self.depth)
            yield Probe(i)
            if i % 2 and ep.reading[i] is None:
                yield Prune(i)
        yield Answer()
'''


@pytest.fixture(scope="module")
def aime():
    return replay.open(AIME)


def test_sandboxed_controllers_equal_the_in_process_engine(tmp_path, aime):
    f = tmp_path / "first.py"
    f.write_text(FIRST_READING)
    boxed = load_controller(f"{f}:FirstReading")
    local = load_controller(f"{f}:FirstReading", sandbox=False)
    assert boxed.sandbox is not None and getattr(local, "sandbox", None) is None
    assert boxed.name == "first-reading" and [p.name for p in boxed.params] == ["n", "depth"] and boxed.has_beta()
    qs = aime.question_ids[:6]
    betas = np.linspace(0, 1, 5)
    got = evaluate_settings(aime, "Qwen3-1.7B", [Setting.make(boxed, beta=b) for b in betas], questions=qs,
                            replicates=4, seed=3)
    ref = evaluate_settings(aime, "Qwen3-1.7B", [Setting.make(local, beta=b) for b in betas], questions=qs,
                            replicates=4, seed=3)
    for a, b in zip(got, ref):
        assert a.engine == "python-sandboxed" and b.engine == "python"
        assert (a.score, a.tokens, a.opened, a.probes, a.params) == (b.score, b.tokens, b.opened, b.probes, b.params)
        assert np.array_equal(a.per_question, b.per_question)
    # a program held in memory (as an LLM writes one) loads the same way
    from replay.controllers.sandboxed import load_program

    prog = load_program(FIRST_READING, "FirstReading", filename="llm_1.py")
    again = evaluate_settings(aime, "Qwen3-1.7B", [Setting.make(prog, beta=b) for b in betas], questions=qs,
                              replicates=4, seed=3)
    assert [(a.score, a.tokens) for a in again] == [(b.score, b.tokens) for b in ref]
    prog.sandbox.close()
    assert not prog.sandbox.alive
    # a built-in class loaded by module name goes through the sandbox too, and equals the reference
    probe = load_controller("replay.controllers.builtin:ProbeController")
    assert probe.sandbox is not None and probe.name == "probe"
    steps = step_arrays(aime, "Qwen3-8B")
    q = np.arange(3)
    for beta in (0.2, 0.9):
        mine = probe.sandbox.evaluate(steps, dict(Setting.make(probe, beta=beta).params), q, replicates=2, seed=7)
        theirs = run_python(steps, Setting.make(BUILTINS["probe"], beta=beta), q, replicates=2, seed=7)
        assert all(np.array_equal(x, y) for x, y in zip(mine, theirs))


def _hostile(tmp_path, body: str, name: str = "Hostile", where: str = "decide") -> str:
    src = ("import os, signal, socket, time\n"
           "from replay.controllers import Controller, Answer, Open\n"
           f"class {name}(Controller):\n"
           f"    name = {name.lower()!r}\n")
    if where == "import":
        src = body + "\n" + src + "    def decide(self, ep):\n        return Answer()\n"
    else:
        src += "    def decide(self, ep):\n" + "".join(f"        {ln}\n" for ln in body.splitlines()) + \
               "        return Answer()\n"
    f = tmp_path / f"{name.lower()}.py"
    f.write_text(src)
    return f"{f}:{name}"


HOSTILE_CONTROLLERS = {
    "infinite loop": ("while True:\n    pass", "exceeded the wall-clock limit of 1 s"),
    "10 GB allocation": ("x = bytearray(10 << 30)", "ran out of memory (limit 512 MiB)"),
    "fork bomb": ("while True:\n    os.fork()", "BlockingIOError"),
    "write outside": ("open(OUTSIDE, 'w').write('x')", "PermissionError"),
    "socket": ("socket.create_connection(('127.0.0.1', PORT), timeout=1)", "PermissionError"),
    "read /etc/shadow": ("open('/etc/shadow').read()", "PermissionError"),
    "kill parent": ("os.kill(os.getppid(), signal.SIGKILL)", "PermissionError"),
    "kill caller": ("os.kill(CALLER, signal.SIGKILL)", "No such process"),
    "setsid daemon": ("if os.fork() == 0:\n    os.setsid()\n    while True:\n        open('log', 'a').write('x')",
                      "BlockingIOError"),
    "kill own group": ("os.killpg(os.getpgrp(), signal.SIGKILL)", "was killed by SIGKILL"),
    "invalid action": ("return 'jump'", "not an action"),
    "exception": ("raise ValueError('boom')", "ValueError: boom (hostile.py line"),
}


@pytest.mark.parametrize("case", list(HOSTILE_CONTROLLERS))
def test_hostile_controllers_are_stopped_and_reported(case, tmp_path, outside, aime):
    body, needle = HOSTILE_CONTROLLERS[case]
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(0.2)
    body = (body.replace("OUTSIDE", repr(str(outside / "pwned"))).replace("PORT", str(srv.getsockname()[1]))
            .replace("CALLER", str(os.getpid())))
    spec = _hostile(tmp_path, body)
    limits = Limits(wall_s=1.0, memory_mb=512, fsize_mb=8, nproc=16)
    cls = load_controller(spec, limits=limits)
    t0 = time.monotonic()
    try:
        with pytest.raises(ControllerError) as e:
            evaluate_settings(aime, "Qwen3-8B", [Setting.make(cls)], questions=aime.question_ids[:2], replicates=1)
    finally:
        srv.close()
    msg = str(e.value)
    assert msg.startswith("controller 'hostile'") and "\n" not in msg and needle in msg, msg
    assert time.monotonic() - t0 < limits.wall_s + 5.0
    assert list(outside.iterdir()) == []
    if case in ("infinite loop", "kill own group"):  # the sandbox is gone; the next load starts a fresh one
        assert not cls.sandbox.alive
        assert load_controller(spec, limits=limits).sandbox.alive


def test_search_with_a_controller_of_yours_says_how_it_is_confined(tmp_path, capsys):
    """`search --space controller --controller file.py:Class` runs the class in the sandbox and
    prints, before any trial, the line saying how confined it is (the space's sandbox_notice)."""
    from clikit import run_main
    from search.cli import main as search_main

    f = tmp_path / "first.py"
    f.write_text(FIRST_READING)
    code, out, err = run_main(search_main, [
        "--replay", str(AIME), "--space", "controller", "--controller", f"{f}:FirstReading", "--model", "Qwen3-1.7B",
        "--beta", "--budget-tokens", "200000", "--searcher", "grid", "--trials", "2", "--replicates", "1",
        "--test-replicates", "1", "--out", str(tmp_path / "s")], capsys)
    assert code == 0, err
    line = f"controller 'first-reading' runs in the {isolation().summary()}"
    assert line in err.splitlines()
    assert "best config" in out


def test_hostile_code_at_import_and_in_beta_params(tmp_path):
    spec = _hostile(tmp_path, "while True:\n    pass", name="Slow", where="import")
    with pytest.raises(ControllerError, match=r"^controller '.*slow\.py:Slow': exceeded the wall-clock limit of 1 s"):
        load_controller(spec, limits=Limits(wall_s=1.0, memory_mb=512))
    f = tmp_path / "knob.py"
    f.write_text("from replay.controllers import Controller, Answer\nclass Knob(Controller):\n    name = 'knob'\n"
                 "    @classmethod\n    def beta_params(cls, beta):\n        if beta > 0.6:\n            raise KeyError('no')\n"
                 "        return {}\n    def decide(self, ep):\n        return Answer()\n")
    cls = load_controller(f"{f}:Knob")
    assert cls.has_beta() and cls.beta_params(0.5) == {}
    with pytest.raises(ControllerError, match=r"^controller 'knob': KeyError: 'no' \(knob\.py line 7\), beta_params"):
        Setting.make(cls, beta=0.9)
    with pytest.raises(ControllerError, match="unknown parameter 'x'"):
        Setting.make(cls, params={"x": 1})


def test_frontier_with_a_hostile_controller_is_one_line_exit_2(tmp_path):
    spec = _hostile(tmp_path, "open('/etc/shadow').read()", name="Peek")
    out = tmp_path / "f.png"
    p = subprocess.run([sys.executable, "-m", "replay.cli", "frontier", str(AIME), "--model", "Qwen3-8B",
                        "--controllers", "majority", "--controller", spec, "--questions", "aime24-000,aime24-001", "--replicates",
                        "1", "--out", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 2, p.stderr
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "controller 'peek'" in errors[0] and "PermissionError" in errors[0], p.stderr
    assert "run in the sandbox: " in p.stderr and not out.exists()


def test_a_reused_folder_with_links_the_program_left_is_safe(tmp_path, outside):
    """A program leaves links to files outside in its folder; the caller reuses the folder: the
    next run must neither write through them nor change their targets when cleaning up."""
    box = tmp_path / "box"
    victim = outside / "victim.txt"
    victim.write_text("keep")
    os.chmod(victim, 0o600)
    r = run_script(f"import os\nos.symlink({str(victim)!r}, 'main2.py')\nos.mkdir('locked')\n"
                   f"os.symlink({str(victim)!r}, 'locked/link')\nos.chmod('locked', 0)\n", workdir=box, limits=FAST)
    assert r.ok, r.reason()
    with pytest.raises(SandboxError, match="leaves the folder"):
        run_script("pass", workdir=box, files={"main2.py": "x"}, limits=FAST)
    from replay.sandbox.launch import remove_tree

    remove_tree(box)
    assert not box.exists() and victim.read_text() == "keep" and (victim.stat().st_mode & 0o777) == 0o600
