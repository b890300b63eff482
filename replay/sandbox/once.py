"""Run an untrusted program once, sandboxed: its exit status within a time limit.

    from replay.sandbox import Limits, run_script
    r = run_script("print('hello')", limits=Limits(wall_s=5))
    r.ok, r.reason(), r.stderr

The program runs in a fresh folder of its own (removed afterwards unless the caller gave
`workdir`), with its standard input at end-of-file, its standard output discarded (or kept
with `keep_stdout`), its standard error kept (bounded). Layers and guarantees: layers.py
and docs/sandbox.md.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from .layers import Isolation, isolation
from .launch import (DEVICES, SYSTEM_READ, Events, Limits, SandboxError, hand_over, make_private_dir,
                     program_env, python_paths, remove_tree, spawn, stop, tail_text, write_file)


@dataclass(frozen=True)
class RunResult:
    """How a sandboxed program ended.

    code: exit status (None if killed or stopped); signal: the signal that killed it;
    timed_out: stopped at the wall-clock limit; cpu_s, wall_s: time used; stderr: its
    standard error (first and last 512 KiB if longer); stdout: its standard output, if kept.
    """

    code: int | None
    signal: int | None
    timed_out: bool
    cpu_s: float
    wall_s: float
    stderr: str
    stdout: str | None
    limits: Limits
    isolation: Isolation

    @property
    def ok(self) -> bool:
        return self.code == 0 and not self.timed_out

    def reason(self) -> str:
        """One phrase: how it ended, naming the limit it hit, if any."""
        lim = self.limits
        if self.timed_out:
            return f"stopped at the wall-clock limit ({lim.wall_s:g} s)"
        cpu_limit = lim.as_json("run")["cpu_s"]
        if self.signal == signal.SIGXCPU or (self.signal == signal.SIGKILL and cpu_limit
                                             and self.cpu_s >= cpu_limit - 0.05):
            return f"killed at the CPU-time limit ({cpu_limit} s)"
        if self.signal is not None:
            try:
                name = signal.Signals(self.signal).name
            except ValueError:
                name = f"signal {self.signal}"
            return f"killed by {name}"
        if self.code == 0:
            return "exited normally"
        last = self.stderr.strip().splitlines()[-1:] or [""]
        if "MemoryError" in last[0]:
            return f"ran out of memory (limit {lim.memory_mb} MiB)"
        if "File too large" in last[0]:
            return f"wrote a file over the size limit ({lim.fsize_mb} MiB)"
        return f"exited with status {self.code}" + (f" ({last[0][:200]})" if last[0] else "")


def run(argv: Sequence[str], *, workdir: str | os.PathLike | None = None,
        files: Mapping[str, str | bytes] | None = None, limits: Limits = Limits(), read: Sequence[str] = (),
        keep_stdout: bool = False, no_processes: bool = False, without: Sequence[str] = ()) -> RunResult:
    """Run `argv` (argv[0] an absolute path) once, sandboxed.

    Parameters
    ----------
    argv:
        The command; argv[0] must be an absolute path to an executable the sandbox can read
        (the Python interpreter, a system program).
    workdir:
        The folder it runs in and may write; it stays afterwards (the caller removes it).
        Default: a fresh private folder, removed afterwards.
    files:
        Files to write into the folder first (relative name -> text or bytes).
    limits:
        Time, memory, file-size and process limits (`Limits`).
    read:
        More paths it may read (beyond the interpreter, system libraries and its folder).
    keep_stdout:
        Keep its standard output in `RunResult.stdout` (default: discarded).
    no_processes:
        Refuse it any new process (where seccomp is available).
    without:
        Layers to leave out (see `isolation`), for tests and comparisons.
    """
    limits = limits.check()
    if not argv or not os.path.isabs(argv[0]):
        raise SandboxError("sandbox", f"argv[0] must be an absolute path, got {argv[:1]!r}")
    iso = isolation(without=tuple(without))
    private = make_private_dir("sandbox-")
    own = workdir is None
    box = (private / "box") if own else Path(workdir).resolve()
    try:
        box.mkdir(mode=0o700, exist_ok=True)
        for name, content in (files or {}).items():
            write_file(box, name, content)
        if iso.user == "nobody":
            hand_over(box, iso.uid, iso.gid)
            os.chmod(private, 0o711)
        log_path = private / "stdio.log"
        log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        out_fd = None
        if keep_stdout:
            out_fd = os.open(private / "stdout.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        cfg = {"mode": "run", "plan": iso.plan(), "argv": list(map(str, argv)), "env": program_env(str(box)),
               "workdir": str(box), "stderr_fd": log_fd, "stdout_fd": out_fd,
               "limits": limits.as_json("run"), "no_processes": bool(no_processes) or iso.user == "nocaps",
               "read": python_paths() + list(SYSTEM_READ) + [str(p) for p in read], "devices": list(DEVICES)}
        t0 = time.monotonic()
        proc = spawn(cfg, pass_fds=tuple(fd for fd in (log_fd, out_fd) if fd is not None),
                     log=private / "supervisor.log")
        os.close(log_fd)
        if out_fd is not None:
            os.close(out_fd)
        events = Events(proc)
        try:
            deadline = t0 + limits.wall_s + 30.0  # the supervisor's own deadline comes first
            ev = events.next(deadline)
            while ev is not None and ev.get("event") == "started":
                ev = events.next(deadline)
        finally:
            stop(proc)
        if ev is None or ev.get("event") != "exit":
            why = ev.get("error") if ev else tail_text(private / "supervisor.log", 2000).strip()[-500:]
            raise SandboxError("sandbox", f"the program could not be run as promised: {why or 'no report'}")
        return RunResult(code=ev.get("code"), signal=ev.get("signal"), timed_out=bool(ev.get("timed_out")),
                         cpu_s=float(ev.get("cpu_s") or 0.0), wall_s=time.monotonic() - t0,
                         stderr=tail_text(log_path),
                         stdout=tail_text(private / "stdout.log") if keep_stdout else None,
                         limits=limits, isolation=iso)
    finally:
        remove_tree(private)


def run_script(program: str | os.PathLike, *, args: Sequence[str] = (), workdir: str | os.PathLike | None = None,
               files: Mapping[str, str | bytes] | None = None, limits: Limits = Limits(),
               keep_stdout: bool = False, without: Sequence[str] = ()) -> RunResult:
    """Run a Python program once, sandboxed, as `python -I main.py ARGS` in its folder.

    Parameters
    ----------
    program:
        The program's source text, or a path to a .py file (copied into the folder as main.py).
    args, workdir, files, limits, keep_stdout, without:
        As for `run`.
    """
    if isinstance(program, os.PathLike) or (isinstance(program, str) and program.endswith(".py")
                                             and "\n" not in program and Path(program).is_file()):
        source = Path(program).read_bytes()
    else:
        source = str(program)
    all_files = {**(files or {}), "main.py": source}
    return run([sys.executable, "-I", "-B", "main.py", *args], workdir=workdir, files=all_files, limits=limits,
               keep_stdout=keep_stdout, without=without)
