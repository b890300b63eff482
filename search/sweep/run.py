"""Running a sweep: plan, run the unfinished cells (the grid optima first), then write the
results and the report. Rerunning the same command resumes: finished cells (a summary.json)
are skipped, a cell with an archive but no summary is continued, optima already in
optima.json are not recomputed."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from replay.atomic import atomic_path
from replay.clitools import plural
from replay.errors import InputError, ToolError
from replay.locks import folder_lock

from ..report import SUMMARY_NAME, write_json_atomic
from .executors import describe, make_executor, progress_bar
from .plan import FORMAT, SWEEP_NAME, VERSION, Plan, check_out, fingerprint, plan_sweep
from .results import collect_results
from .spec import SweepSpec, spec_json
from .tasks import cell_task, optimum_task

OPTIMA_NAME = "optima.json"
RESULTS_NAME = "results.parquet"
CURVES_NAME = "curves.parquet"


class SweepFailed(ToolError):
    """Some cells failed: the others are done and reported; rerunning resumes the failed ones."""

    exit_code = 1


@dataclass
class SweepResult:
    plan: Plan
    results: Any  # polars DataFrame, one row per cell
    curves: Any  # polars DataFrame, long format
    ran: int  # cells run (or continued) by this call
    skipped: int  # cells already finished
    failed: int
    wall_s: float
    executor: str
    report: Path | None


def run_sweep(spec: SweepSpec, *, workers: int | None = None, ray: str | None = None, progress: bool = False,
              backend: str | None = None, report: bool = True, run: bool = True,
              announce: Callable[[Any], None] | None = None, log: Callable[[str], None] | None = None) -> SweepResult:
    """Run the sweep `spec` describes.

    Parameters:
        spec: the checked spec (`parse_spec`).
        workers: worker processes (default: the spec's, else all cores; 1: in this process).
        ray: a Ray cluster address, 'auto', or 'local'; cells then run as Ray tasks.
        progress: progress bars on a terminal.
        backend: 'serial', 'processes' or 'ray' (default: ray with `ray`, else serial for one
            worker, else processes).
        report: write report.md and its figures.
        run: False only rebuilds results and report from the cells on disk.
        announce: called with each store as it is opened (the command prints SYNTHETIC notes).
        log: called with one line before the cells run.
    """
    t0 = time.perf_counter()
    plan = plan_sweep(spec, announce=announce)
    check_out(plan)
    # one sweep writes a folder at a time: a second run of the same command is refused in one line
    with folder_lock(plan.out, "sweep"):
        check_out(plan)  # again, now that nobody else can be writing it
        return _run_locked(spec, plan, t0, workers=workers, ray=ray, progress=progress, backend=backend, report=report,
                           run=run, log=log)


def _run_locked(spec: SweepSpec, plan: Plan, t0: float, *, workers, ray, progress, backend, report, run,
                log) -> SweepResult:
    out = plan.out
    write_json_atomic(out / SWEEP_NAME, {"format": FORMAT, "version": VERSION, "fingerprint": fingerprint(plan),
                                         "spec": spec_json(spec), "cells": len(plan.cells),
                                         "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    todo = [c for c in plan.cells if not (out / c.dir / SUMMARY_NAME).is_file()]
    optima = _read_optima(out)
    need = [g for g in plan.groups if spec.optimum and g.key not in optima]
    workers = workers or spec.workers
    any_llm = any(c.uses_llm for c in todo)
    ran = 0
    kind = "none"
    if run and (todo or need):
        if backend is None:
            backend = "ray" if ray else ("serial" if min(workers or os.cpu_count() or 1, len(todo) + len(need)) <= 1 else "processes")
        ex = make_executor(backend, workers=workers, tasks=max(len(todo), len(need)), ray=ray,
                           llm_concurrency=spec.llm_concurrency, any_llm=any_llm)
        kind = ex.kind
        if log is not None:
            log(f"sweep {spec.name!r}: {plural(len(plan.cells), 'cell')}, {len(plan.cells) - len(todo)} finished, {len(todo)} to run "
                f"({describe(ex)}); output {out}")
        try:
            if need:
                jobs = [(g.settings, spec.optimum_limit) for g in need]
                for i, opt in progress_bar(ex.run(optimum_task, jobs, [False] * len(jobs)), len(jobs), "grid optima",
                                           "objective", progress):
                    if isinstance(opt, dict) and opt.get("status") == "failed":
                        raise InputError(need[i].key, f"grid optimum failed: {opt['error']}")
                    optima[need[i].key] = {"optimum": opt}
                _write_optima(out, plan, optima)
            jobs = [(c.settings, (optima.get(c.group.key) or {}).get("optimum")) for c in todo]
            for i, res in progress_bar(ex.run(cell_task, jobs, [c.uses_llm for c in todo]), len(jobs), "sweep", "cell",
                                       progress):
                ran += bool(res.get("ran"))
        finally:
            ex.close()
    results, curves = collect_results(plan, optima)
    with atomic_path(out / RESULTS_NAME) as tmp:
        results.write_parquet(tmp)
    with atomic_path(out / CURVES_NAME) as tmp:
        curves.write_parquet(tmp)
    wall = time.perf_counter() - t0
    path = None
    if report:
        from .report import write_report

        path = write_report(plan, results, curves, optima, out)
    n_failed = int((results["status"] == "failed").sum()) if len(results) else 0
    return SweepResult(plan=plan, results=results, curves=curves, ran=ran, skipped=len(plan.cells) - len(todo),
                       failed=n_failed, wall_s=wall, executor=kind, report=path)


def _read_optima(out: Path) -> dict[str, Any]:
    p = out / OPTIMA_NAME
    if not p.is_file():
        return {}
    try:
        return dict(json.loads(p.read_text()).get("optima") or {})
    except (ValueError, AttributeError, TypeError, RecursionError, OSError):
        return {}  # recomputed


def _write_optima(out: Path, plan: Plan, optima: dict[str, Any]) -> None:
    by_key = {g.key: g for g in plan.groups}
    for k, v in optima.items():
        g = by_key.get(k)
        if g is not None:
            v.update({"store": g.store, "train": g.train, "budget_spec": g.budget_spec, "budget": g.budget,
                      "space_size": g.space_size, "train_questions": g.train_questions})
    write_json_atomic(out / OPTIMA_NAME, {"optima": optima})
