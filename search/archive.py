"""The search archive: one JSON Lines file, a header record then one record per trial.

Every trial is appended as it finishes, flushed and fsynced, so an interrupted search loses
nothing it finished and `--resume` can continue it. A torn last line (the process died while
writing it) is dropped on read and cut off before appending again.

    {"type": "header", "format": "tts-search-archive", "version": 1, "store": ..., ...}
    {"type": "trial", "number": 0, "config": [["Qwen3-8B", 1]], "score": 0.67, ..., "state": {...}}
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from replay.engine import Config, StageChoice
from replay.errors import InputError

from .protocol import Trial

FORMAT = "tts-search-archive"
VERSION = 1
ARCHIVE_NAME = "archive.jsonl"


def _clean(x: Any) -> Any:
    """JSON has no NaN/inf: write them as null (a score that does not exist)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if hasattr(x, "item") and callable(x.item):  # numpy scalars
        try:
            return _clean(x.item())
        except (TypeError, ValueError):
            pass
    return x


def _dumps(obj: dict) -> str:
    return json.dumps(_clean(obj), default=str, allow_nan=False, separators=(",", ":"))


def trial_record(t: Trial, state: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "trial",
        "number": t.number,
        "config": [[c.model, c.samples] for c in t.config.stages],
        "config_str": str(t.config),
        "feasible": t.feasible,
        "score": t.score,
        "stderr": t.stderr,
        "units": t.units,
        "tokens": t.tokens,
        "wall_s": t.wall_s,
        "source": t.source,
        "extra": t.extra,
        "stage_units": list(t.stage_units),
        "stage_scores": list(t.stage_scores),
        "state": state,
    }


def trial_from_record(r: dict[str, Any]) -> Trial:
    def f(x):
        return math.nan if x is None else float(x)

    return Trial(
        number=int(r["number"]),
        config=Config(tuple(StageChoice(str(m), int(n)) for m, n in r["config"])),
        feasible=bool(r["feasible"]),
        score=None if r.get("score") is None else float(r["score"]),
        stderr=None if r.get("stderr") is None else float(r["stderr"]),
        units=f(r.get("units")),
        tokens=f(r.get("tokens")),
        wall_s=f(r.get("wall_s")),
        source=r.get("source", ""),
        extra=r.get("extra") or {},
        stage_units=tuple(f(x) for x in r.get("stage_units") or ()),
        stage_scores=tuple(f(x) for x in r.get("stage_scores") or ()),
    )


def archive_path(path: str | os.PathLike) -> Path:
    """An archive file, or a search output folder holding archive.jsonl."""
    p = Path(path)
    return p / ARCHIVE_NAME if p.is_dir() else p


class ArchiveWriter:
    """Appends trial records; each `append` call ends with flush + fsync."""

    def __init__(self, path: Path, fh):
        self.path = path
        self._fh = fh

    @classmethod
    def create(cls, path: str | os.PathLike, header: dict[str, Any]) -> "ArchiveWriter":
        """Start a new archive: the header lands atomically (temp file, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        rec = {"type": "header", "format": FORMAT, "version": VERSION, **header}
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(_dumps(rec) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return cls(path, open(path, "a"))

    @classmethod
    def reopen(cls, path: str | os.PathLike, good_bytes: int) -> "ArchiveWriter":
        """Continue an archive, cutting a torn last line (everything after `good_bytes`)."""
        path = Path(path)
        with open(path, "r+b") as f:
            f.truncate(good_bytes)
            f.flush()
            os.fsync(f.fileno())
        return cls(path, open(path, "a"))

    def append(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        self._fh.write("".join(_dumps(r) + "\n" for r in records))
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_archive(path: str | os.PathLike) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
    """(header, trial records, bytes of complete lines). A torn last line is dropped; any
    other bad line is an InputError naming the file and the line."""
    p = archive_path(path)
    if not p.is_file():
        raise InputError(str(path), "no search archive here (expected a folder with archive.jsonl, or the .jsonl file)")
    data = p.read_bytes()
    lines = data.split(b"\n")
    complete = lines[:-1]  # the part after the last newline is torn (or empty)
    good = sum(len(x) + 1 for x in complete)
    if not complete:
        raise InputError(str(p), "empty archive (no header line)")
    records = []
    for i, line in enumerate(complete, 1):
        try:
            records.append(json.loads(line))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"{p}:{i}", f"not a JSON record ({e})") from None
    header = records[0]
    if not isinstance(header, dict) or header.get("type") != "header" or header.get("format") != FORMAT:
        raise InputError(f"{p}:1", f"not a search archive header (expected type 'header', format {FORMAT!r})")
    if header.get("version") != VERSION:
        raise InputError(f"{p}:1", f"archive version {header.get('version')!r}; this tool reads version {VERSION}")
    trials = []
    for i, r in enumerate(records[1:], 2):
        if not isinstance(r, dict) or r.get("type") != "trial":
            raise InputError(f"{p}:{i}", "expected a trial record")
        if r.get("number") != len(trials):
            raise InputError(f"{p}:{i}", f"trial number {r.get('number')!r}, expected {len(trials)}")
        trials.append(r)
    return header, trials, good
