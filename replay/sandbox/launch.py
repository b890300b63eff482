"""Starting a supervisor (supervisor.py) from the caller's side: limits, paths, environment,
the event stream, and the clean-up that must happen whatever the program did.

Used by once.py (run once) and worker.py (a long-lived program). Nothing here trusts the
program: what it can write reaches the caller only through a file of its standard error (read
back as text, bounded) and, for a worker, the reply pipe that worker.py parses defensively.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import ToolError

SUPERVISOR = Path(__file__).with_name("supervisor.py")
PROJECT_ROOT = Path(__file__).resolve().parents[2]  # the folder holding the `replay` package

# What any Python program needs to read, besides the interpreter's own folders (none of these
# holds secrets: /etc/shadow, /root, home folders, /proc and /tmp are not among them).
SYSTEM_READ = ("/usr", "/lib", "/lib64", "/lib32", "/libx32", "/bin", "/sbin", "/etc/ld.so.cache",
               "/etc/localtime", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf", "/sys/devices/system/cpu")
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")


class SandboxError(ToolError):
    """The sandbox could not run the program as promised (it never ran, or its supervisor failed)."""


@dataclass(frozen=True)
class Limits:
    """What one sandboxed program may use.

    Parameters
    ----------
    wall_s:
        Wall-clock seconds: for `run`, from start to the end of the program; for a worker, per
        call (each request must be answered within it). Then everything is killed.
    cpu_s:
        CPU seconds over the program's life (RLIMIT_CPU: SIGXCPU, then SIGKILL a second later).
        None: wall_s + 1 for `run`, no limit for a worker (its calls have wall-clock limits).
    memory_mb:
        Address space (RLIMIT_AS), MiB: an allocation beyond it fails (MemoryError in Python).
    fsize_mb:
        Largest file it may write (RLIMIT_FSIZE), MiB.
    nproc:
        Processes (and threads) it may have at once (RLIMIT_NPROC, where it can hold).
    """

    wall_s: float = 5.0
    cpu_s: float | None = None
    memory_mb: int = 1024
    fsize_mb: int = 64
    nproc: int = 32

    def as_json(self, mode: str) -> dict:
        cpu = self.cpu_s
        if cpu is None and mode == "run":
            cpu = self.wall_s + 1
        return {"wall_s": self.wall_s if mode == "run" else None,
                "cpu_s": None if cpu is None else max(1, int(-(-cpu // 1))),
                "memory_mb": int(self.memory_mb), "fsize_mb": int(self.fsize_mb), "nproc": int(self.nproc)}

    def check(self) -> "Limits":
        for k, v in asdict(self).items():
            if v is not None and not (isinstance(v, (int, float)) and v > 0):
                raise SandboxError("sandbox limits", f"{k} must be a positive number, got {v!r}")
        return self


def python_paths() -> list[str]:
    """The interpreter's folders: its installation, the virtual environment, site-packages."""
    out = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
           os.path.dirname(os.path.realpath(sys.executable)), os.path.dirname(sys.executable)}
    for k in ("stdlib", "platstdlib", "purelib", "platlib"):
        p = sysconfig.get_paths().get(k)
        if p:
            out.add(p)
    return sorted(p for p in out if p and os.path.exists(p))


def program_env(workdir: str) -> dict[str, str]:
    """A minimal environment: nothing of the caller's (no keys, no proxies), one thread for the
    numeric libraries, the folder as home and temporary directory, no display."""
    bindir = os.path.dirname(sys.executable)
    return {"PATH": f"{bindir}:/usr/local/bin:/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir,
            "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "USER": "sandbox", "LOGNAME": "sandbox", "MPLBACKEND": "Agg",
            "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1",
            "NO_PROXY": "*", "PYTHONIOENCODING": "utf-8"}


def spawn(cfg: dict, pass_fds: tuple[int, ...] = (), log: Path | None = None) -> subprocess.Popen:
    """Start a supervisor in a session of its own and hand it its configuration."""
    if os.name != "posix":
        raise SandboxError("sandbox", f"untrusted programs run only on POSIX systems, not on {sys.platform}")
    err = open(log, "wb") if log is not None else subprocess.DEVNULL
    try:
        proc = subprocess.Popen([sys.executable, "-I", "-S", "-B", str(SUPERVISOR)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=err, pass_fds=pass_fds, start_new_session=True,
                                close_fds=True, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    finally:
        if log is not None:
            err.close()
    proc.stdin.write((json.dumps(cfg) + "\n").encode())
    proc.stdin.flush()
    return proc


class Events:
    """The supervisor's JSON lines, read with deadlines."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.fd = proc.stdout.fileno()
        self.buf = b""
        self.eof = False

    def next(self, deadline: float | None) -> dict | None:
        """The next event, or None at the deadline or when the supervisor is gone."""
        while b"\n" not in self.buf:
            if self.eof:
                return None
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self.fd], [], [], timeout)
            if not ready:
                return None
            chunk = os.read(self.fd, 65536)
            if not chunk:
                self.eof = True
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        try:
            return json.loads(line)
        except ValueError:
            return {"event": "error", "error": f"unreadable supervisor output {line[:200]!r}"}


def stop(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
    """Ask the supervisor to kill everything and exit (close its stdin); if it does not within
    grace_s, kill its process group (the program has left that group, so this is a last resort:
    with a PID namespace the program still dies with the namespace's init)."""
    try:
        if proc.stdin and not proc.stdin.closed:
            proc.stdin.close()
    except OSError:
        pass
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
    if proc.stdout:
        proc.stdout.close()


def make_private_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


def hand_over(path: Path, uid: int, gid: int) -> None:
    """Give a folder (and what the caller put in it) to the sandbox's user, and let that user
    reach it through the caller's private parent folder (traverse, not list)."""
    if os.geteuid() != 0 or uid == 0:
        return
    for root, dirs, files in os.walk(path):  # never follow a link a previous program may have left
        os.chown(root, uid, gid, follow_symlinks=False)
        for f in files + dirs:
            os.chown(os.path.join(root, f), uid, gid, follow_symlinks=False)


def write_file(box: Path, name: str, content: str | bytes) -> None:
    """Write a file the caller gives into the program's folder, refusing any name or link that
    leads outside it (a folder reused from an earlier run may hold links the program made)."""
    dest = box / name
    if not os.path.realpath(dest).startswith(str(box.resolve()) + os.sep):
        raise SandboxError("sandbox", f"file name {name!r} leaves the folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(content.encode("utf-8") if isinstance(content, str) else content)


def remove_tree(path: Path) -> None:
    """Remove a folder the program wrote in, whatever modes it set on its files."""
    def fix(func, p, exc):  # a folder the program made unreadable: open it up, never through a link
        for q in (os.path.dirname(p), p):
            try:
                if stat.S_ISDIR(os.lstat(q).st_mode):
                    os.chmod(q, 0o700)
            except OSError:
                pass
        try:
            func(p)
        except OSError:
            pass
    shutil.rmtree(path, onerror=fix)


def tail_text(path: Path, limit: int = 1 << 20) -> str:
    """The file's text if at most `limit` bytes, else its first and last limit/2 bytes."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            if size <= limit:
                data = fh.read()
            else:
                head = fh.read(limit // 2)
                fh.seek(size - limit // 2)
                data = head + f"\n[... {size - limit} bytes cut ...]\n".encode() + fh.read()
    except OSError:
        return ""
    return data.decode("utf-8", "replace")
