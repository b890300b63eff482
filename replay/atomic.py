"""Atomic file writes: write to a temporary file beside the target, then rename it into place.

    with atomic_path("out/sweep.parquet") as tmp:
        df.write_parquet(tmp)

A failed or interrupted write leaves the target as it was (or absent) and no temporary file
behind. The result gets ordinary permissions (mkstemp's files are private).

A process killed outright (kill -9, the OOM killer) cannot remove its temporary file. So every
temporary name says who made it, `.NAME.PID@HOST.XXXXXXXX.tmp`, and the next write of the same
target removes those whose process is gone (same host, pid no longer running); a live writer's
are never touched, and one from another host is left alone (its pid means nothing here).
`write_store` names its temporary folders the same way.

A target that cannot be written (its folder is a file, /proc, a read-only folder) is one
`InputError` line naming it, not a traceback.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import InputError, ToolError


def temp_prefix(target: Path) -> str:
    """The prefix of a temporary file or folder for `target` made by this process."""
    return f".{target.name}.{os.getpid()}@{socket.gethostname()}."


def pid_alive(pid: int) -> bool:
    """Whether a process `pid` exists on this host (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def remove_stale_temps(target: Path) -> list[Path]:
    """Remove the temporary files and folders of `target` left by dead processes of this host;
    return what was removed."""
    folder = target.parent
    pat = re.compile(rf"^\.{re.escape(target.name)}\.(\d+)@(.+)\.[A-Za-z0-9_]+\.tmp$")
    host = socket.gethostname()
    removed = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for p in entries:
        m = pat.match(p.name)
        if not m or m.group(2) != host or int(m.group(1)) == os.getpid() or pid_alive(int(m.group(1))):
            continue
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            removed.append(p)
        except OSError:
            pass
    return removed


def make_parent(path: Path) -> None:
    """Create `path`'s folder (and its parents), or say in one line why it cannot be."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(str(path), f"cannot create its folder {path.parent} ({e.strerror})") from None
    if not path.parent.is_dir():
        raise InputError(str(path), f"{path.parent} is not a folder")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    path = Path(path)
    if path.is_dir():
        raise InputError(str(path), "is a folder; the output is a file")
    make_parent(path)
    remove_stale_temps(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise InputError(str(path), f"cannot write in {path.parent} ({e.strerror})") from None
    os.close(fd)
    try:
        try:
            yield Path(tmp)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS):
                raise ToolError(str(path), f"cannot write it ({e.strerror})") from None
            raise
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        try:
            os.replace(tmp, path)
        except OSError as e:
            raise InputError(str(path), f"cannot write it ({e.strerror})") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
