"""The search archive: one JSON Lines file, a header record then one record per trial.

Every trial is appended as it finishes, flushed and fsynced, so an interrupted search loses
nothing it finished and `--resume` can continue it. A torn last line (the process died while
writing it) is dropped on read and cut off before appending again.

One format for every space (version 2):

    {"type": "header", "format": "tts-search-archive", "version": 2, "space_kind": "config",
     "store": ..., "space": {...}, "budget": 100.0, "cost_unit": "units", "searcher": ..., ...}
    {"type": "trial", "number": 0, "point": [["Qwen3-8B", 1]], "label": "Qwen3-8B:1",
     "feasible": true, "score": 0.67, "stderr": 0.02, "cost": 12.9, "tokens": 15330.0,
     "wall_s": 0.001, "source": "init", "extra": {...}, "metrics": {"stage_units": [...], ...},
     "per_question": [0.8125, 1.0, ...], "state": {...}}

`point` is the space's encoding (`space.encode`: a configuration's [model, count] pairs, a
controller's parameter dict), `label` the same in one line, `cost` the measured cost in the
header's `cost_unit`, `metrics` what the space measures besides (per-stage units and scores;
samples opened and probes), `per_question` the training score of each training question (in
the header's `train` order; absent for an infeasible trial and in archives written before it),
which the selection rules of the final pick use (search/selection.py).

Version 1 archives (before one format: configuration searches wrote `config`, `config_str`,
`units`, `stage_units`, `stage_scores`; controller searches `params`, `tokens`, `opened`,
`probes` and a header with `budget_tokens`) are read through `upgrade`; `--resume` on one
rewrites it as version 2 (atomically, once the header matched) before appending.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from replay.atomic import make_parent, remove_stale_temps, temp_prefix
from replay.errors import InputError

from .trial import Trial

FORMAT = "tts-search-archive"
VERSION = 2
READS = (1, 2)
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


def trial_record(t: Trial, encoded_point: Any, state: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "trial",
        "number": t.number,
        "point": encoded_point,
        "label": t.label,
        "feasible": t.feasible,
        "score": t.score,
        "stderr": t.stderr,
        "cost": t.cost,
        "tokens": t.tokens,
        "wall_s": t.wall_s,
        "source": t.source,
        "extra": t.extra,
        "metrics": t.metrics,
        "per_question": None if t.per_question is None else list(t.per_question),
        "state": state,
    }


def trial_from_record(r: dict[str, Any], decode: Callable[[Any], Any] | None = None) -> Trial:
    """A version-2 record as a Trial; `decode` (the space's) turns the point back into the
    space's object, without it the point stays its JSON encoding (enough for reports)."""
    def f(x):
        return math.nan if x is None else float(x)

    return Trial(
        number=int(r["number"]),
        point=decode(r["point"]) if decode is not None else r["point"],
        feasible=bool(r["feasible"]),
        score=None if r.get("score") is None else float(r["score"]),
        stderr=None if r.get("stderr") is None else float(r["stderr"]),
        cost=f(r.get("cost")),
        tokens=f(r.get("tokens")),
        wall_s=f(r.get("wall_s")),
        source=r.get("source", ""),
        extra=r.get("extra") or {},
        metrics=r.get("metrics") or {},
        label=str(r.get("label", "")),
        per_question=None if r.get("per_question") is None else tuple(float(x) for x in r["per_question"]),
    )


def archive_path(path: str | os.PathLike) -> Path:
    """An archive file, or a search output folder holding archive.jsonl."""
    p = Path(path)
    return p / ARCHIVE_NAME if p.is_dir() else p


def _write_atomic(path: Path, records: list[dict[str, Any]]) -> None:
    make_parent(path)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write("".join(_dumps(r) + "\n" for r in records))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ArchiveWriter:
    """Appends trial records; each `append` call ends with flush + fsync."""

    def __init__(self, path: Path, fh):
        self.path = path
        self._fh = fh

    @classmethod
    def create(cls, path: str | os.PathLike, header: dict[str, Any]) -> "ArchiveWriter":
        """Start a new archive: the header lands atomically (temp file, then rename)."""
        path = Path(path)
        _write_atomic(path, [{"type": "header", "format": FORMAT, "version": VERSION, **header}])
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

    @classmethod
    def rewrite(cls, path: str | os.PathLike, header: dict[str, Any], records: list[dict[str, Any]]) -> "ArchiveWriter":
        """Replace an archive with `header` and `records` (an upgrade), atomically, and continue it."""
        path = Path(path)
        _write_atomic(path, [header, *records])
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
    """(header, trial records, bytes of complete lines), in version 2 whatever the file's
    version. A torn last line is dropped; any other bad line is an InputError naming the file
    and the line."""
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
            raise InputError(f"{p}:{i}", f"not a JSON record ({' '.join(str(e).split())})") from None
        except RecursionError:
            raise InputError(f"{p}:{i}", "not a JSON record (nested too deeply)") from None
    header = records[0]
    if not isinstance(header, dict) or header.get("type") != "header" or header.get("format") != FORMAT:
        raise InputError(f"{p}:1", f"not a search archive header (expected type 'header', format {FORMAT!r})")
    if header.get("version") not in READS:
        raise InputError(f"{p}:1", f"archive version {header.get('version')!r}; this tool reads versions "
                         f"{', '.join(map(str, READS))}")
    trials = []
    for i, r in enumerate(records[1:], 2):
        if not isinstance(r, dict) or r.get("type") != "trial":
            raise InputError(f"{p}:{i}", "expected a trial record")
        if r.get("number") != len(trials):
            raise InputError(f"{p}:{i}", f"trial number {r.get('number')!r}, expected {len(trials)}")
        trials.append(r)
    if header["version"] == 1:
        try:
            header, trials = upgrade(header, trials)
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(str(p), f"a version-1 archive this tool cannot read ({type(e).__name__}: {e})") from None
    for i, r in enumerate(trials, 2):
        problem = _trial_problem(r)
        if problem:
            raise InputError(f"{p}:{i}", f"trial {r.get('number')}: {problem}")
    return header, trials, good


_NUMBERS = ("score", "stderr", "cost", "tokens", "wall_s")


def _trial_problem(r: dict[str, Any]) -> str | None:
    """What makes a trial record unreadable (None: nothing)."""
    for k in ("point", "feasible"):
        if k not in r:
            return f"missing field {k!r}"
    if not isinstance(r["feasible"], bool):
        return f"'feasible' must be true or false, got {r['feasible']!r}"
    for k in _NUMBERS:
        v = r.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            return f"{k!r} must be a number or null, got {str(v)[:40]!r}"
    for k in ("extra", "metrics", "state"):
        if r.get(k) is not None and not isinstance(r[k], dict):
            return f"{k!r} must be an object"
    return None


def upgrade(header: dict[str, Any], records: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A version-1 archive in version 2 (see the module docstring)."""
    controller = header.get("space_kind") == "controller"
    h = {**header, "version": VERSION, "space_kind": "controller" if controller else "config",
         "cost_unit": "tokens" if controller else "units", "upgraded_from": 1}
    if controller:
        h["budget"] = header.get("budget_tokens")
        h.pop("budget_tokens", None)
    out = []
    for r in records:
        base = {k: r.get(k) for k in ("type", "number", "feasible", "score", "stderr", "tokens", "wall_s", "source")}
        if controller:
            params = dict(r["params"])
            rec = {**base, "point": params, "label": ", ".join(f"{k}={_fmt(v)}" for k, v in params.items()),
                   "cost": r.get("tokens"), "metrics": {"opened": r.get("opened"), "probes": r.get("probes")}}
        else:
            rec = {**base, "point": [[str(m), int(n)] for m, n in r["config"]], "label": r.get("config_str", ""),
                   "cost": r.get("units"),
                   "metrics": {"stage_units": list(r.get("stage_units") or ()),
                               "stage_scores": list(r.get("stage_scores") or ())}}
        rec.update({"extra": r.get("extra") or {}, "state": r.get("state") or {}})
        out.append(rec)
    return h, out


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
