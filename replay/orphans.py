"""Worker processes that die with their parent.

A sweep or a `--seeds` search runs its cells in worker processes. If the parent is killed with
SIGKILL (the OOM killer does that), nothing in it runs to stop them: left alone they would go
on appending to archives that a rerun of the same command is writing too. So every worker
calls `die_with_parent(parent_pid)` first:

* Linux: `prctl(PR_SET_PDEATHSIG, SIGKILL)`: the kernel kills the worker the moment its parent
  goes (the pool starts its workers from the parent's main thread, so "parent" is the
  process, not a thread that may end earlier).
* everywhere (and as a second line on Linux): a daemon thread that checks every 0.2 s whether
  the process has been re-parented, and exits the worker at once if so.

If the parent is already gone when the worker starts, the worker exits before doing anything.
Ray workers are not our children: a cell run on Ray watches the driver's pid when it runs on
the driver's host (`watch_pid`); on other hosts Ray itself ends a dead driver's tasks.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time

from .atomic import pid_alive

POLL_S = 0.2
_started = False


def _prctl_pdeathsig() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        return libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _exit_now() -> None:
    os._exit(70)  # EX_SOFTWARE: no clean-up, no flushing of half-written state


def die_with_parent(parent_pid: int) -> None:
    """Make this process end as soon as `parent_pid` (its parent) ends.

    Parameters:
        parent_pid: the pid of the process that started this one (`os.getpid()` there).
    """
    global _started
    if _started:
        return
    _started = True
    _prctl_pdeathsig()
    if os.getppid() != parent_pid:  # the parent died before we could ask
        _exit_now()

    def watch():
        while True:
            time.sleep(POLL_S)
            if os.getppid() != parent_pid:
                _exit_now()

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


def watch_pid(pid: int, host: str) -> None:
    """In a process that is not `pid`'s child (a Ray worker): exit once `pid` on `host` ends.
    On another host there is nothing to watch (Ray ends a dead driver's tasks itself)."""
    global _started
    if _started or host != socket.gethostname() or pid == os.getpid():
        return
    _started = True
    if not pid_alive(pid):
        _exit_now()

    def watch():
        while True:
            time.sleep(POLL_S)
            if not pid_alive(pid):
                _exit_now()

    threading.Thread(target=watch, name="die-with-driver", daemon=True).start()
