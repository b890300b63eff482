"""Which layers of the sandbox hold on this machine, and what they guarantee.

`isolation()` asks a supervisor to try every layer once (cached for the process) and returns an
`Isolation`: the plan every sandboxed run then applies, failing (never silently weakening) if a
layer cannot be applied. `Isolation.guarantees()` is the per-guarantee table that
docs/sandbox.md explains per platform; `summary()` is the line the commands print.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass, field

from .launch import DEVICES, PROJECT_ROOT, SYSTEM_READ, Events, SandboxError, python_paths, spawn, stop

LAYERS = ("pid_ns", "net_ns", "ipc_ns", "mount_ns", "user_ns", "subreaper", "landlock", "seccomp", "nobody")


@dataclass(frozen=True)
class Guarantee:
    what: str
    holds: bool
    how: str  # the mechanism when it holds; what is missing when it does not


@dataclass(frozen=True)
class Isolation:
    """The layers a sandboxed program gets here (from the probe), and what follows from them."""

    platform: str
    euid: int
    user: str  # "same" (the caller's user), "nobody", "nocaps" (uid 0 without any capability)
    uid: int
    gid: int
    pid_ns: bool
    net_ns: bool
    ipc_ns: bool
    user_ns: bool
    mount_ns: bool
    expose: bool  # paths bound into view in a mount namespace so that `nobody` can read them
    subreaper: bool
    landlock: int  # Landlock ABI version, 0 for none
    seccomp: bool
    why: dict = field(default_factory=dict, compare=False)  # why a layer is missing

    @classmethod
    def from_plan(cls, plan: dict) -> "Isolation":
        return cls(platform=plan["platform"], euid=int(plan["euid"]), user=plan["user"], uid=int(plan["uid"]),
                   gid=int(plan["gid"]), pid_ns=bool(plan["pid_ns"]), net_ns=bool(plan["net_ns"]),
                   ipc_ns=bool(plan["ipc_ns"]), user_ns=bool(plan["user_ns"]), mount_ns=bool(plan["mount_ns"]),
                   expose=bool(plan.get("expose")), subreaper=bool(plan["subreaper"]), landlock=int(plan["landlock"]),
                   seccomp=bool(plan["seccomp"]), why=dict(plan.get("why") or {}))

    def plan(self) -> dict:
        return {"platform": self.platform, "euid": self.euid, "user": self.user, "uid": self.uid, "gid": self.gid,
                "pid_ns": self.pid_ns, "net_ns": self.net_ns, "ipc_ns": self.ipc_ns, "user_ns": self.user_ns,
                "mount_ns": self.mount_ns, "expose": self.expose, "subreaper": self.subreaper,
                "landlock": self.landlock, "seccomp": self.seccomp}

    # ---- what follows
    @property
    def process_limit(self) -> str | None:
        """How the process count is bounded (None: it is not)."""
        if not self.platform.startswith("linux"):
            return None  # RLIMIT_NPROC counts all the user's processes, which we cannot count there
        if self.user == "nocaps":  # the kernel never applies RLIMIT_NPROC to uid 0
            return "none may be started (seccomp refuses fork and clone)" if self.seccomp else None
        if self.user_ns:
            return "RLIMIT_NPROC, counted in its own user namespace"
        if self.user == "nobody":
            return "RLIMIT_NPROC (user nobody, added to nobody's processes already running)"
        return "RLIMIT_NPROC (added to the processes the user already runs)"

    def guarantees(self) -> list[Guarantee]:
        linux = self.platform.startswith("linux")
        ll_fs, ll_tcp, ll_sig = self.landlock >= 1, self.landlock >= 4, self.landlock >= 6
        g = [Guarantee("stopped at its wall-clock limit, caller unaffected", True,
                       "the supervisor's deadline, then SIGKILL; the caller waits with its own deadline")]
        g.append(Guarantee("CPU-time limit", True, "RLIMIT_CPU"))
        g.append(Guarantee("memory limit", linux,
                           "RLIMIT_AS (address space)" if linux else "RLIMIT_AS is not enforced on this platform"))
        g.append(Guarantee("file-size limit", True, "RLIMIT_FSIZE"))
        pl = self.process_limit
        g.append(Guarantee("process-count limit", pl is not None,
                           pl or "none: uid 0 ignores RLIMIT_NPROC and seccomp is unavailable"))
        if self.pid_ns:
            kill = Guarantee("everything it started is killed at the end", True,
                             "PID namespace: its init is killed, the kernel kills the rest")
        elif self.subreaper:
            kill = Guarantee("everything it started is killed at the end", True,
                             "its own process group, then every orphan (re-parented to the supervisor, a child "
                             "subreaper)")
        else:
            kill = Guarantee("everything it started is killed at the end", False,
                             "its process group only: a process that calls setsid() and is orphaned survives")
        g.append(kill)
        how = [m for m, ok in (("PID namespace (it cannot see them)", self.pid_ns),
                               ("Landlock signal scoping", ll_sig),
                               ("another user", self.user == "nobody")) if ok]
        g.append(Guarantee("cannot signal the caller or the supervisor", bool(how),
                           ", ".join(how) or "same user, no PID namespace, no Landlock ABI >= 6: it can kill any "
                                             "process of the user"))
        if self.net_ns or self.seccomp:
            how = [m for m, ok in (("network namespace (no interface up)", self.net_ns),
                                   ("seccomp: socket() refused for all but AF_UNIX", self.seccomp),
                                   ("Landlock: no TCP bind/connect", ll_tcp)) if ok]
            g.append(Guarantee("no network", True, ", ".join(how)))
        elif ll_tcp:
            g.append(Guarantee("no network", False, "Landlock blocks TCP only: UDP and raw sockets are open"))
        else:
            g.append(Guarantee("no network", False, "no network namespace, seccomp or Landlock ABI >= 4"))
        if ll_fs:
            g.append(Guarantee("no writes outside its folder", True, f"Landlock ABI {self.landlock}"))
            g.append(Guarantee("no reads outside the interpreter, system libraries and its folder", True,
                               f"Landlock ABI {self.landlock} (/etc/shadow, home folders, /proc, /tmp unreadable)"))
        elif self.user == "nobody":
            g.append(Guarantee("no writes outside its folder", False,
                               "user nobody: it can still write world-writable places (/tmp, /dev/shm)"))
            g.append(Guarantee("no reads outside the interpreter, system libraries and its folder", False,
                               "user nobody: it can still read world-readable files"))
        else:
            who = "root's (uid 0 owns them)" if self.user == "nocaps" else "the user's"
            g.append(Guarantee("no writes outside its folder", False, f"no Landlock: it can write {who} files"))
            g.append(Guarantee("no reads outside the interpreter, system libraries and its folder", False,
                               f"no Landlock: it can read {who} files"))
        user = {"nobody": f"user nobody (uid {self.uid})" + (", interpreter bound into view" if self.expose else ""),
                "nocaps": "uid 0 without any capability (nobody cannot read the interpreter"
                          + (f": {self.why['user']}" if self.why.get("user") else "") + ")",
                "same": "the caller's user" + (" in a user namespace (no capability outside it)" if self.user_ns
                                               else "")}[self.user]
        g.append(Guarantee("unprivileged", self.user != "same" or self.euid != 0, user))
        return g

    def layers(self) -> list[str]:
        out = []
        ns = [n for n, ok in (("user", self.user_ns), ("PID", self.pid_ns), ("network", self.net_ns),
                              ("IPC", self.ipc_ns), ("mount", self.expose)) if ok]
        if ns:
            out.append("+".join(ns) + " namespaces")
        if self.subreaper and not self.pid_ns:
            out.append("child subreaper")
        if self.landlock:
            parts = ["files"] + (["TCP"] if self.landlock >= 4 else []) + (["signals"] if self.landlock >= 6 else [])
            out.append(f"Landlock ABI {self.landlock} ({', '.join(parts)})")
        if self.seccomp:
            out.append("seccomp")
        out.append("rlimits")
        out.append({"nobody": "user nobody", "nocaps": "uid 0 without capabilities",
                    "same": "same user"}[self.user])
        return out

    def summary(self) -> str:
        """One line: the layers, then every guarantee that does NOT hold here."""
        missing = [g for g in self.guarantees() if not g.holds]
        line = "sandbox: " + ", ".join(self.layers())
        if missing:
            line += "; NOT guaranteed here: " + "; ".join(f"{g.what} ({g.how})" for g in missing)
        return line

    def table(self) -> str:
        rows = [(("yes" if g.holds else "NO"), g.what, g.how) for g in self.guarantees()]
        w = max(len(r[1]) for r in rows)
        return "\n".join(f"{h:<3}  {what:<{w}}  {how}" for h, what, how in rows)


_CACHE: dict[tuple, Isolation] = {}
_LOCK = threading.Lock()


def isolation(*, without: tuple[str, ...] = ()) -> Isolation:
    """The layers that hold on this machine (probed once per process and `without` set).

    Parameters
    ----------
    without:
        Layers to leave out, from `LAYERS` (to see, or test, how the sandbox degrades where a
        layer is missing).
    """
    key = tuple(sorted(set(without)))
    bad = [w for w in key if w not in LAYERS]
    if bad:
        raise SandboxError("sandbox", f"unknown layer {bad[0]!r} (layers: {', '.join(LAYERS)})")
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = _probe(key)
        return _CACHE[key]


def _probe(without: tuple[str, ...]) -> Isolation:
    read = python_paths() + [str(PROJECT_ROOT / "replay")] + list(SYSTEM_READ) + list(DEVICES)
    cfg = {"mode": "probe", "without": list(without), "read": read}
    proc = spawn(cfg)
    try:
        ev = Events(proc).next(time.monotonic() + 30.0)
    finally:
        stop(proc)
    if not ev or "platform" not in ev:
        raise SandboxError("sandbox", f"probing the isolation layers failed ({json.dumps(ev)[:300]})")
    return Isolation.from_plan(ev)


if __name__ == "__main__":  # python -m replay.sandbox.layers: the table for this machine
    iso = isolation(without=tuple(sys.argv[1:]))
    print(iso.summary())
    print(iso.table())
