"""One writer per output folder: an exclusive lock on a search's folder, a sweep's folder, a
collection's checkpoint.

    with folder_lock("out/r", "search"):
        ...                     # append to out/r/archive.jsonl

The lock is an advisory `flock` on `FOLDER/.lock`, a small JSON file naming its holder (pid,
host, command, since when). A second writer is refused at once, in one line:

    error: out/r: in use by another search (pid 4242 on gpu-3 since 2026-01-02T10:00:00Z:
    search --replay traces/aime24 ...): wait for it to end, or stop it

Stale locks need no guessing: the kernel drops a flock when the process holding it ends,
however it ends (kill -9, the OOM killer, a power cut of the client), so the file a dead
process leaves behind locks nothing; the next writer takes the lock and rewrites the holder.
No process id is ever tested for liveness, so pid reuse cannot fool it. The lock's file
descriptor is close-on-exec: worker processes (spawned, not forked) never hold it, which is
why workers must also die with their parent (`replay.orphans`).

A holder unlinks the file as it lets go; a writer that opened the old file checks, once it has
the lock, that the path still names the file it locked, and starts over if not, so two writers
never both hold a lock.

Re-entrant within one thread (a search run inside a command that already holds its folder);
another thread of the same process is refused like another process.

File systems without flock (some network mounts) are refused with one line rather than written
unprotected. Windows has no fcntl: there the lock is a no-op and the docs say so.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import InputError

LOCK_NAME = ".lock"

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]


class LockedError(InputError):
    """Another writer holds the folder (exit 2: the user's second command is what is wrong)."""


_held: dict[str, list] = {}  # resolved folder -> [fd, thread ident, depth]
_registry_lock = threading.Lock()


def holder_info(what: str) -> dict:
    """Who takes a lock: written into the lock file for whoever is refused."""
    cmd = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "python"
    if len(cmd) > 300:
        cmd = cmd[:297] + "..."
    return {"what": what, "pid": os.getpid(), "host": socket.gethostname(), "command": cmd,
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def read_holder(folder: str | os.PathLike) -> dict | None:
    """The holder recorded in FOLDER/.lock (None: no file, or not written yet)."""
    try:
        raw = json.loads(Path(folder, LOCK_NAME).read_text() or "null")
    except (OSError, ValueError, RecursionError):
        return None
    return raw if isinstance(raw, dict) else None


def describe_holder(h: dict | None) -> str:
    if not h:
        return "holder not recorded yet"
    return (f"pid {h.get('pid', '?')} on {h.get('host', '?')} since {h.get('since', '?')}: "
            f"{h.get('command', '?')}")


def _acquire(folder: Path, what: str) -> int:
    path = folder / LOCK_NAME
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as e:
            raise InputError(str(folder), f"cannot create its lock file ({e.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                holder = read_holder(folder)
                kind = (holder or {}).get("what") or what
                raise LockedError(str(folder), f"in use by another {kind} ({describe_holder(holder)}): wait for it "
                                  "to end, or stop it") from None
            raise InputError(str(folder), f"cannot lock it ({e.strerror}): this file system does not support "
                             "locks, and two writers could corrupt it; use a local folder") from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # its holder let go and removed it between our open and our lock
            os.close(fd)
            continue
        data = json.dumps(holder_info(what)).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        return fd


def _release(folder: Path, fd: int) -> None:
    try:
        os.unlink(folder / LOCK_NAME)  # while still holding it (see the module docstring)
    except OSError:
        pass
    os.close(fd)


@contextmanager
def folder_lock(folder: str | os.PathLike, what: str) -> Iterator[Path]:
    """Hold FOLDER (created if missing) for as long as the block runs.

    Parameters:
        folder: the output folder to hold.
        what: what writes it ("search", "sweep", "collection"), for the refusal message.

    Raises:
        LockedError: another process (or thread) holds it: one line naming the holder.
        InputError: the folder cannot be created, or its file system has no locks.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(str(folder), f"cannot create the folder ({e.strerror})") from None
    if fcntl is None:
        yield folder
        return
    key = str(folder.resolve())
    me = threading.get_ident()
    with _registry_lock:
        entry = _held.get(key)
        if entry is not None:
            if entry[1] != me:
                raise LockedError(str(folder), f"in use by another {what} in this process (another thread)")
            entry[2] += 1
            fd = None
        else:
            fd = _acquire(folder, what)
            _held[key] = [fd, me, 1]
    try:
        yield folder
    finally:
        with _registry_lock:
            entry = _held[key]
            entry[2] -= 1
            if entry[2] == 0:
                del _held[key]
                _release(folder, entry[0])


def is_lock_file(path: str | os.PathLike) -> bool:
    """True for a lock file (code that lists an output folder skips it)."""
    return Path(path).name == LOCK_NAME
