"""A long-lived sandboxed Python process, called many times: the caller's side.

    w = Worker("replay.controllers.sandboxed:ControllerHandler", files={"controller.py": src},
               limits=Limits(wall_s=60, memory_mb=2048), name="controller 'mine'")
    header, arrays = w.call({"op": "..."})      # each call answered within limits.wall_s
    w.close()

The process starts once (interpreter, imports, the untrusted code loaded once), then answers
requests over two pipes (frames.py): only compact inputs go in and results come out, so the
per-step work stays inside. Each call has a wall-clock limit; a call that passes it, or a
process that dies (killed at a limit, crashed, exited), raises `SandboxTimeout` or
`SandboxCrash` with one line saying why, and the whole sandbox is torn down: a worker that
failed stays failed (`alive` is False). It uses the same supervisor and layers as `run`.
"""

from __future__ import annotations

import atexit
import os
import select
import signal
import sys
import threading
import time
import weakref
from typing import Callable, Mapping, Sequence

from . import frames
from .launch import (DEVICES, PROJECT_ROOT, SYSTEM_READ, Events, Limits, SandboxError, hand_over,
                     make_private_dir, program_env, python_paths, remove_tree, spawn, stop, tail_text, write_file)
from .layers import Isolation, isolation
from .serve import BOOT


class SandboxTimeout(SandboxError):
    """A call to a sandboxed worker passed its wall-clock limit (the worker was killed)."""


class SandboxCrash(SandboxError):
    """A sandboxed worker died (killed at a limit, crashed, exited) or broke the protocol."""


_LIVE: "weakref.WeakSet[Worker]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for w in list(_LIVE):
        w.close()


class Worker:
    """A sandboxed process that serves requests (see module docstring).

    Parameters
    ----------
    handler:
        'module:Class' under the `replay` package, instantiated once inside the sandbox; its
        `handle(request, progress)` answers each call.
    name:
        How errors name the worker ("controller 'x'").
    files:
        Files for its folder (relative name -> text or bytes), e.g. the untrusted program.
    limits:
        `limits.wall_s` bounds each call (and the start); memory, file size, CPU (over the
        worker's life, if set) as for `run`. A worker may start no process at all.
    read, listable:
        More paths it may read, or only list.
    without:
        Layers to leave out (see `isolation`).
    start_s:
        Wall-clock limit for the start (interpreter and imports), default limits.wall_s + 30.
    """

    def __init__(self, handler: str, *, name: str = "sandboxed worker", files: Mapping[str, str | bytes] | None = None,
                 limits: Limits = Limits(wall_s=60.0, memory_mb=2048), read: Sequence[str] = (),
                 listable: Sequence[str] = (), without: Sequence[str] = (), start_s: float | None = None):
        self.name = name
        self.limits = limits.check()
        self.isolation: Isolation = isolation(without=tuple(without))
        self.failure: str | None = None
        self._lock = threading.Lock()
        self._proc = None
        self._to = self._from = None
        self._private = make_private_dir("sandbox-worker-")
        try:
            self._start(handler, files, read, listable, start_s)
        except BaseException:
            self.close()
            raise
        _LIVE.add(self)

    # ---- start and stop
    def _start(self, handler, files, read, listable, start_s) -> None:
        iso = self.isolation
        box = self._private / "box"
        box.mkdir(mode=0o700)
        self.workdir = box
        for name, content in (files or {}).items():
            write_file(box, name, content)
        if iso.user == "nobody":
            hand_over(box, iso.uid, iso.gid)
            os.chmod(self._private, 0o711)
        self._log = self._private / "stdio.log"
        log_fd = os.open(self._log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        for fd in (req_w, rep_r):
            os.set_inheritable(fd, False)
        argv = [sys.executable, "-I", "-B", "-c", BOOT, str(PROJECT_ROOT), handler]
        cfg = {"mode": "worker", "plan": iso.plan(), "argv": argv, "env": program_env(str(box)),
               "workdir": str(box), "stderr_fd": log_fd, "stdout_fd": log_fd, "proto_fds": [req_r, rep_w],
               "limits": self.limits.as_json("worker"), "no_processes": True,
               "read": python_paths() + [str(PROJECT_ROOT / "replay")] + list(SYSTEM_READ) + [str(p) for p in read],
               "listable": [str(PROJECT_ROOT)] + [str(p) for p in listable], "devices": list(DEVICES)}
        try:
            self._proc = spawn(cfg, pass_fds=(req_r, rep_w, log_fd), log=self._private / "supervisor.log")
        finally:
            for fd in (req_r, rep_w, log_fd):
                os.close(fd)
        self._to, self._from = req_w, rep_r
        os.set_blocking(self._to, False)
        self._events = Events(self._proc)
        deadline = time.monotonic() + (self.limits.wall_s + 30.0 if start_s is None else start_s)
        ev = self._events.next(deadline)
        if not ev or ev.get("event") != "started":
            why = (ev or {}).get("error") or self._supervisor_log() or "no report"
            raise SandboxError(self.name, f"the sandbox did not start: {why}")
        header, _ = self._reply(deadline, None, 0, "starting")
        if not header.get("ready"):
            raise SandboxError(self.name, f"the sandboxed process did not start: {header.get('error')}")

    def _supervisor_log(self) -> str:
        return tail_text(self._private / "supervisor.log", 4000).strip()[-500:]

    @property
    def alive(self) -> bool:
        return self._proc is not None and self.failure is None

    def close(self) -> None:
        """Stop the worker (everything in its sandbox is killed) and remove its folder."""
        for fd in (self._to, self._from):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._to = self._from = None
        proc, self._proc = self._proc, None
        if proc is not None:
            stop(proc)
        if self._private is not None and self._private.exists():
            remove_tree(self._private)
        _LIVE.discard(self)

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def __enter__(self) -> "Worker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- calls
    def call(self, request: dict, *, timeout_s: float | None = None, max_reply: int = 1 << 30,
             progress: Callable[[int], None] | None = None, what: str = "a call") -> tuple[dict, list]:
        """Send one request; its reply (header, arrays) within timeout_s (default
        limits.wall_s). An error reply comes back as a header with "error"; a timeout or a
        dead worker raises (and the worker is gone). `what` names the call in errors; progress
        receives the counts the handler reports on the way; a reply larger than max_reply
        bytes of arrays is refused."""
        with self._lock:
            if self.failure is not None:
                raise SandboxCrash(self.name, f"is no longer running ({self.failure})")
            if self._proc is None:
                raise SandboxCrash(self.name, "was closed")
            t = self.limits.wall_s if timeout_s is None else timeout_s
            deadline = time.monotonic() + t
            self._send(frames.encode_request(request), deadline, t)
            return self._reply(deadline, progress, max_reply, what, t)

    def _fail(self, exc_type, why: str):
        self.failure = why
        proc, self._proc = self._proc, None
        for fd in (self._to, self._from):
            try:
                os.close(fd)
            except (OSError, TypeError):
                pass
        self._to = self._from = None
        if proc is not None:
            stop(proc)
        if self._private is not None and self._private.exists():
            remove_tree(self._private)
        return exc_type(self.name, why)

    def _send(self, data: bytes, deadline: float, t: float) -> None:
        view = memoryview(data)
        while view:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._fail(SandboxTimeout, f"did not read its request within {t:g} s (wall-clock limit)")
            _, ready, _ = select.select([], [self._to], [], left)
            if ready:
                try:
                    n = os.write(self._to, view[: 1 << 16])
                except BlockingIOError:
                    continue
                except BrokenPipeError:
                    raise self._died() from None
                view = view[n:]

    def _read(self, n: int, deadline: float, what: str, t: float | None) -> bytes:
        chunks, got = [], 0
        while got < n:
            left = deadline - time.monotonic()
            if left <= 0:
                limit = f"{t:g} s" if t is not None else "its start limit"
                raise self._fail(SandboxTimeout, f"exceeded the wall-clock limit of {limit} ({what})")
            ready, _, _ = select.select([self._from], [], [], left)
            if not ready:
                continue
            b = os.read(self._from, min(n - got, 1 << 20))
            if not b:
                raise self._died()
            chunks.append(b)
            got += len(b)
        return b"".join(chunks)

    def _reply(self, deadline, progress, max_reply, what, t=None) -> tuple[dict, list]:
        while True:
            try:
                n_js, n_raw = frames.reply_sizes(self._read(8, deadline, what, t), max(max_reply, 0))
                header, arrays = frames.decode_reply(self._read(n_js, deadline, what, t),
                                                     self._read(n_raw, deadline, what, t) if n_raw else b"")
            except frames.FrameError as e:
                raise self._fail(SandboxCrash, f"broke the reply protocol: {e}") from None
            if "progress" in header and len(header) == 2:  # {"progress": n, "arrays": []}
                if progress is not None and isinstance(header["progress"], int):
                    progress(header["progress"])
                continue
            return header, arrays

    def _died(self) -> SandboxCrash:
        """The worker closed its end: wait for the supervisor's report and say why."""
        deadline = time.monotonic() + 3.0  # a process that only closed its end is still running: then stop it
        ev = self._events.next(deadline) if self._proc is not None else None
        while ev is not None and ev.get("event") != "exit":
            ev = self._events.next(deadline)
        why = "the sandboxed process ended"
        if ev is not None:
            sig, code, cpu = ev.get("signal"), ev.get("code"), float(ev.get("cpu_s") or 0)
            cpu_limit = self.limits.as_json("worker")["cpu_s"]
            if sig is not None:
                if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu_limit and cpu >= cpu_limit - 0.05):
                    why = f"was killed at the CPU-time limit ({cpu_limit} s)"
                else:
                    try:
                        why = f"was killed by {signal.Signals(sig).name}"
                    except ValueError:
                        why = f"was killed by signal {sig}"
            elif code is not None:
                why = f"exited with status {code}"
        last = [ln for ln in tail_text(self._log, 8000).strip().splitlines() if ln.strip()][-1:]
        if last:
            why += f" (last output: {last[0].strip()[:200]})"
        return self._fail(SandboxCrash, why)
