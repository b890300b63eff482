"""The sandbox supervisor: a small trusted process between the caller and the untrusted program.

Started by the caller (launch.py) as `python -I -S -B supervisor.py` in a session of its own,
standard library only. It reads one JSON line from stdin (the mode, the plan of layers, the
program's argv, limits and paths), then:

    probe    tries every layer on this machine and prints which work (layers.py's plan)
    run      confines and runs the program once, stops it at the wall-clock limit, kills all
             that it started, prints one JSON line: how it ended
    worker   the same for a long-lived program that talks to the caller over two pipes; it
             ends when the program exits or the caller closes the supervisor's stdin

The process tree, with a PID namespace:

    caller ── supervisor (outside the namespaces; a child subreaper)
                 └── init (PID 1 of the new PID namespace: reaps, reports, and when it exits
                       │    the kernel kills everything left in the namespace)
                       └── program (setsid: its own session; rlimits, uid, seccomp, Landlock;
                                    then exec)

Without one, the supervisor forks the program directly and, being a child subreaper, inherits
every orphan the program leaves (a double-forked `setsid` daemon included) and kills them all.
The caller closes the supervisor's stdin to stop it; the supervisor also stops when the caller
dies (stdin reaches end-of-file). It reports on stdout, one JSON object a line.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import confine  # noqa: E402 - this file runs as a script, with its folder put on the path here


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------------------------
# The probe: which layers work here


def _in_child(fn) -> bool:
    """Run fn() in a forked child; True if it returned True without raising."""
    pid = os.fork()
    if pid == 0:
        try:
            ok = bool(fn())
        except BaseException:  # noqa: BLE001 - any failure means "no"
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def _pid_ns_works() -> bool:
    pid = os.fork()
    if pid == 0:
        os._exit(0 if os.getpid() == 1 else 1)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def _namespace_flags(root: bool, pid: bool, net: bool, ipc: bool, mnt: bool) -> int:
    f = 0 if root else confine.CLONE_NEWUSER
    f |= (confine.CLONE_NEWPID if pid else 0) | (confine.CLONE_NEWNET if net else 0)
    f |= (confine.CLONE_NEWIPC if ipc else 0) | (confine.CLONE_NEWNS if mnt and root else 0)
    return f


def _enter_namespaces(root: bool, flags: int) -> None:
    confine.unshare(flags)
    if not root and flags & confine.CLONE_NEWUSER:
        confine.write_id_maps(os.geteuid(), os.getegid())


def probe(cfg: dict) -> dict:
    without = set(cfg.get("without", ()))
    plan: dict = {"platform": sys.platform, "euid": os.geteuid(), "user_ns": False, "pid_ns": False,
                  "net_ns": False, "ipc_ns": False, "mount_ns": False, "subreaper": False, "landlock": 0,
                  "seccomp": False, "user": "same", "uid": os.geteuid(), "gid": os.getegid(), "why": {}}
    if not confine.LINUX:
        plan["why"]["namespaces"] = "not Linux"
        return plan
    root = os.geteuid() == 0
    try:
        confine.prctl(confine.PR_SET_CHILD_SUBREAPER, 1)
        plan["subreaper"] = "subreaper" not in without
    except OSError as e:
        plan["why"]["subreaper"] = str(e)

    def ns_try(pid, net, ipc, mnt):
        flags = _namespace_flags(root, pid, net, ipc, mnt)
        if not flags:
            return False

        def body():
            _enter_namespaces(root, flags)
            return _pid_ns_works() if pid else True
        return _in_child(body)

    want = {k: k not in without for k in ("pid_ns", "net_ns", "ipc_ns", "mount_ns")}
    if not root and "user_ns" in without:
        want = dict.fromkeys(want, False)
    if ns_try(want["pid_ns"], want["net_ns"], want["ipc_ns"], want["mount_ns"]):
        got = want
    else:  # one at a time: a container may allow some and not others
        got = {k: want[k] and ns_try(k == "pid_ns", k == "net_ns", k == "ipc_ns", k == "mount_ns") for k in want}
        if not any(got.values()):
            plan["why"]["namespaces"] = ("unshare refused (user namespaces disabled?)" if not root
                                         else "unshare refused (a container without CAP_SYS_ADMIN?)")
    plan.update(got)
    if not root:
        plan["mount_ns"] = False  # only root binds paths into view; an unprivileged user needs none
    plan["user_ns"] = (not root) and any(got.values())
    if "landlock" not in without:
        plan["landlock"] = confine.landlock_abi()
        if not plan["landlock"]:
            plan["why"]["landlock"] = "the kernel has no Landlock (Linux >= 5.13 with landlock in lsm=)"
    if "seccomp" not in without and confine.seccomp_supported():
        import socket

        def sec():
            confine.install_seccomp(no_processes=True)
            try:
                socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            except PermissionError:
                pass
            else:
                return False
            try:
                os.fork()
            except BlockingIOError:
                return True
            os._exit(1)
        plan["seccomp"] = _in_child(sec)
    if root and "nobody" not in without:
        import pwd

        try:
            pw = pwd.getpwnam("nobody")
            uid, gid = pw.pw_uid, pw.pw_gid
        except KeyError:
            uid = gid = None
            plan["why"]["user"] = "no user 'nobody' on this machine"
        if uid is not None:
            paths = list(cfg.get("read", ()))
            blocked = [p for p in paths if confine.blocked_ancestor(p, uid, gid)]
            if not blocked:
                plan.update(user="nobody", uid=uid, gid=gid)
            elif plan["mount_ns"]:
                def exposed():
                    confine.unshare(confine.CLONE_NEWNS)
                    confine.expose(paths, uid, gid)
                    confine.become(uid, gid)
                    return all(os.access(p, os.R_OK) for p in paths if os.path.exists(p))
                if _in_child(exposed):
                    plan.update(user="nobody", uid=uid, gid=gid, expose=True)
                else:
                    plan["why"]["user"] = f"'nobody' cannot read {blocked[0]}, and binding it into view failed"
            else:
                plan["why"]["user"] = f"'nobody' cannot read {blocked[0]} (and no mount namespace to bind it)"
    if root and plan["user"] == "same":
        plan["user"] = "nocaps"  # never run untrusted code as uid 0 with capabilities
    return plan


# --------------------------------------------------------------------------------------------
# Running the program


def _program(cfg: dict, plan: dict, errw: int) -> None:
    """In the forked child: confine this process, then exec the program. Never returns."""
    try:
        for s in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT):  # a program starts with the defaults
            signal.signal(s, signal.SIG_DFL)
        os.setsid()  # its own session and process group: killing "its group" kills only itself
        high = (lambda fd: fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100))  # out of the way of 0..4
        errw = high(errw)
        null = high(os.open(os.devnull, os.O_RDWR))
        out, err = (None if cfg.get(k) is None else high(cfg[k]) for k in ("stdout_fd", "stderr_fd"))
        fds = [high(fd) for fd in cfg.get("proto_fds") or []]
        os.dup2(null, 0)  # dup2 makes each copy inheritable
        os.dup2(out if out is not None else null, 1)
        os.dup2(err if err is not None else null, 2)
        for k, fd in enumerate(fds):
            os.dup2(fd, 3 + k)  # the pipes to the caller, at 3 (requests) and 4 (replies)
        wd = os.open(cfg["workdir"], os.O_RDONLY | os.O_DIRECTORY)
        os.fchdir(wd)
        os.close(wd)
        lim = cfg["limits"]
        nproc = lim.get("nproc") if confine.LINUX else None  # elsewhere we cannot count the user's processes
        if nproc is not None and not plan.get("user_ns"):
            nproc += confine.count_processes(plan["uid"])  # RLIMIT_NPROC counts all the uid's processes
        ruleset = None
        if plan.get("landlock"):  # opened while we can still reach every path
            ruleset = confine.landlock_ruleset(plan["landlock"], cfg.get("read", []), [cfg["workdir"]],
                                               cfg.get("listable", []), cfg.get("devices", []))
        confine.set_limits(lim.get("cpu_s"), lim.get("memory_mb"), lim.get("fsize_mb"), nproc, lim.get("nofile", 256))
        if plan.get("user") == "nobody":
            confine.become(plan["uid"], plan["gid"])
        elif plan.get("user") == "nocaps":
            confine.drop_capabilities()
        if plan.get("seccomp"):
            confine.install_seccomp(no_processes=bool(cfg.get("no_processes")))
        if ruleset is not None:
            confine.landlock_enforce(ruleset)
        elif confine.LINUX:
            confine.prctl(confine.PR_SET_NO_NEW_PRIVS, 1)
        os.closerange(3 + len(fds), errw)  # errw stays open until exec closes it
        os.closerange(errw + 1, 65536)
        os.execve(cfg["argv"][0], cfg["argv"], cfg["env"])
    except BaseException as e:  # noqa: BLE001 - report any failure to set up, then die
        try:
            os.write(errw, f"{type(e).__name__}: {e}".encode("utf-8", "replace")[:2000])
        finally:
            os._exit(126)


def _init(cfg: dict, plan: dict, errw: int, statw: int) -> None:
    """PID 1 of the new PID namespace: start the program, reap orphans, report the program's
    end, exit (which kills everything else in the namespace). Never returns."""
    try:
        confine.prctl(confine.PR_SET_PDEATHSIG, signal.SIGKILL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # no handler: init ignores signals from inside
        pid = os.fork()
        if pid == 0:
            os.close(statw)
            _program(cfg, plan, errw)
        os.close(errw)
        while True:
            p, status, ru = os.wait4(-1, 0)
            if p == pid:
                break
        os.write(statw, json.dumps({"status": status, "cpu_s": ru.ru_utime + ru.ru_stime}).encode())
    finally:
        os._exit(0)


def _children(me: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat", "rb") as fh:
                    s = fh.read()
                if int(s[s.rindex(b")") + 2:].split()[1]) == me:
                    out.append(int(d))
            except (OSError, ValueError):
                pass
    return out


def _kill_all(first: int, pid_ns: bool, subreaper: bool) -> None:
    """Kill the program and everything it started. With a PID namespace, killing its init is
    enough (the kernel kills the rest); otherwise the program's group, then, as a subreaper,
    every child we have (orphans re-parented to us) until none is left."""
    if pid_ns:
        try:
            os.kill(first, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return
    try:
        os.killpg(first, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if not subreaper:
        return
    me, t0 = os.getpid(), time.monotonic()
    while time.monotonic() - t0 < 10.0:
        kids = _children(me)
        if not kids:
            break
        for k in kids:
            try:
                os.kill(k, signal.SIGKILL)
            except ProcessLookupError:
                pass
        while True:
            try:
                p, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if p == 0:
                break
        time.sleep(0.001)


def _reap(pid: int):
    try:
        _, status, ru = os.wait4(pid, 0)
        return status, ru.ru_utime + ru.ru_stime
    except ChildProcessError:
        return None, 0.0


def run(cfg: dict) -> None:
    plan = cfg["plan"]
    t0 = time.monotonic()
    root = os.geteuid() == 0
    try:
        if plan.get("subreaper"):
            confine.prctl(confine.PR_SET_CHILD_SUBREAPER, 1)
        flags = _namespace_flags(root, plan.get("pid_ns"), plan.get("net_ns"), plan.get("ipc_ns"),
                                 plan.get("expose") and plan.get("mount_ns"))
        if plan.get("user_ns") or (root and flags):
            _enter_namespaces(root, flags)
        if plan.get("expose"):
            if not flags & confine.CLONE_NEWNS:  # never mount anything in the caller's namespace
                raise OSError(0, "a plan that binds paths without a mount namespace")
            confine.expose(cfg.get("read", []), plan["uid"], plan["gid"], writable=[cfg["workdir"]])
    except OSError as e:
        emit({"event": "error", "error": f"setting up the namespaces failed ({e})"})
        return
    errr, errw = os.pipe2(os.O_CLOEXEC) if hasattr(os, "pipe2") else os.pipe()
    statr, statw = os.pipe()
    pid_ns = bool(plan.get("pid_ns"))
    child = os.fork()
    if child == 0:
        os.close(errr)
        os.close(statr)
        if pid_ns:
            _init(cfg, plan, errw, statw)
        os.close(statw)
        _program(cfg, plan, errw)
    os.close(errw)
    os.close(statw)
    for fd in cfg.get("proto_fds") or []:
        os.close(fd)  # the program holds them now: its end is the pipes' end
    err = b""
    while True:
        chunk = os.read(errr, 4096)
        if not chunk:
            break
        err += chunk
    os.close(errr)
    if err:
        _kill_all(child, pid_ns, bool(plan.get("subreaper")))
        _reap(child)
        emit({"event": "error", "error": "confining the program failed: " + err.decode("utf-8", "replace")})
        return
    emit({"event": "started"})
    wall = cfg["limits"].get("wall_s")
    deadline = None if wall is None else t0 + float(wall)
    pidfd = None
    if hasattr(os, "pidfd_open"):
        try:
            pidfd = os.pidfd_open(child)
        except OSError:
            pidfd = None
    watch = [sys.stdin.fileno()] + ([pidfd] if pidfd is not None else [])
    stopped = timed_out = False
    while True:
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        if pidfd is None:
            timeout = 0.01 if timeout is None else min(timeout, 0.01)
        ready, _, _ = select.select(watch, [], [], timeout)
        if sys.stdin.fileno() in ready:
            if not os.read(sys.stdin.fileno(), 4096):
                stopped = True  # the caller closed our stdin (or died): stop now
                break
        if pidfd is not None and pidfd in ready:
            break
        if pidfd is None:
            p, status = os.waitpid(child, os.WNOHANG)
            if p:
                break
        if deadline is not None and time.monotonic() >= deadline:
            timed_out = True
            break
    if pid_ns:  # killing its init kills everything in the namespace
        _kill_all(child, True, False)
        status, cpu = _reap(child)
    else:  # its group first, then the program's own status, then every orphan left to us
        try:
            os.killpg(child, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        status, cpu = _reap(child)
    if pid_ns:
        raw = b""
        while True:
            chunk = os.read(statr, 4096)
            if not chunk:
                break
            raw += chunk
        info = json.loads(raw) if raw else {}
        status, cpu = info.get("status"), float(info.get("cpu_s", 0.0))
    _kill_all(child, False, bool(plan.get("subreaper")))  # stragglers re-parented to us, if any
    out = {"event": "exit", "timed_out": timed_out, "stopped": stopped, "code": None, "signal": None,
           "cpu_s": cpu, "wall_s": time.monotonic() - t0}
    if status is not None and not (timed_out or stopped):
        if os.WIFEXITED(status):
            out["code"] = os.WEXITSTATUS(status)
        elif os.WIFSIGNALED(status):
            out["signal"] = os.WTERMSIG(status)
    emit(out)


def main() -> None:
    cfg = json.loads(sys.stdin.readline())
    if cfg["mode"] == "probe":
        emit(probe(cfg))
    else:
        run(cfg)


if __name__ == "__main__":
    main()
