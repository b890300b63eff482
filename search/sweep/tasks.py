"""What a sweep's worker runs: the grid optimum of an objective, and one cell (a search).

Module-level functions (pickled by reference); every process opens each store once from its
path and keeps it (`open_store_cached`), and builds each setup once (`setup_of`): no store is
shipped with a task.
"""

from __future__ import annotations

import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

from replay.atomic import atomic_path
from replay.locks import folder_lock

from .. import runner
from ..archive import ARCHIVE_NAME, read_archive
from ..report import SUMMARY_NAME, write_json_atomic
from ..settings import SearchSettings

ERROR_NAME = "error.txt"
CURVE_NAME = "curve.json"  # a finished cell's trial scores: results without parsing its archive

_STORES: dict[str, Any] = {}
_SETUPS: dict[tuple, Any] = {}


def open_store_cached(path: str):
    """The store at `path`, opened once per process (and kept)."""
    if path not in _STORES:
        from replay.store import open_store

        _STORES[path] = open_store(path)
    return _STORES[path]


def setup_of(store, settings: SearchSettings):
    """The setup of `settings` (its objective and space), built once per process."""
    key = (settings.store, settings.space, settings.train, settings.replicates, settings.replay_seed,
           settings.test_replicates)
    if key not in _SETUPS:
        _SETUPS[key] = runner.setup_for(store, settings)
    return _SETUPS[key]


def worker_setup(settings: SearchSettings):
    return setup_of(open_store_cached(settings.store), settings)


def optimum_task(job: tuple[SearchSettings, int]) -> dict[str, Any] | None:
    settings, limit = job
    return runner.known_optimum(worker_setup(settings), limit=limit)


def cell_task(job: tuple[SearchSettings, dict | None]) -> dict[str, Any]:
    """One cell: a fresh search, or the continuation of its archive; never raises an Exception
    (a failed cell is reported with its error line, its traceback in error.txt)."""
    settings, optimum = job
    out = Path(settings.out)
    if (out / SUMMARY_NAME).is_file():
        return {"status": "done", "ran": False}
    try:
        # the cell's folder is held from the first look at its archive to its summary: a worker of
        # an earlier, killed run of this sweep that still writes it makes this cell fail, not mix
        with folder_lock(out, "search"):
            if (out / SUMMARY_NAME).is_file():
                return {"status": "done", "ran": False}
            (out / ERROR_NAME).unlink(missing_ok=True)
            settings = replace(settings, resume=(out / ARCHIVE_NAME).is_file())
            setup = worker_setup(settings)
            run = runner.run_search(setup, settings.searcher, seed=settings.seed, trials=settings.trials,
                                    options=settings.options, out=out, resume=settings.resume)
            summary = runner.report_search(setup, run, out=out, optimum=optimum, optimum_limit=settings.optimum_limit,
                                           plot=settings.plot)
            write_curve(out, run.trials)
    except Exception as e:  # noqa: BLE001 - one failed cell must not stop the others
        line = " ".join(f"{type(e).__name__}: {e}".split())
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / ERROR_NAME) as tmp:
            tmp.write_text(line + "\n\n" + traceback.format_exc())
        return {"status": "failed", "error": line, "ran": True}
    return {"status": "done", "ran": True, "resumed_from": summary.get("resumed_from", 0)}


def write_curve(out: Path, trials) -> None:
    write_json_atomic(out / CURVE_NAME, {"score": [t.score for t in trials], "feasible": [bool(t.feasible) for t in trials]})


def read_curve(d: Path) -> tuple[list, list]:
    """(scores, feasible) of a finished cell: its curve.json, else (a cell finished before the
    curve was written) its archive, and then the curve.json is written for the next time."""
    import json

    p = d / CURVE_NAME
    if p.is_file():
        try:
            c = json.loads(p.read_text())
            return c["score"], c["feasible"]
        except (ValueError, KeyError, TypeError, RecursionError, OSError):
            pass
    _, records, _ = read_archive(d)
    score = [None if r.get("score") is None else float(r["score"]) for r in records]
    feasible = [bool(r.get("feasible")) for r in records]
    write_json_atomic(p, {"score": score, "feasible": feasible})
    return score, feasible
