"""The search loop, for every space: ask -> score on the training questions -> archive -> tell.

    setup = make_setup(replay.open("traces/aime24"))
    run = run_search(setup, "bo", seed=0, trials=50, out="out/bo")
    summary = report_search(setup, run, out="out/bo")     # test score, optimum, summary.json, PNG

or, from typed settings (what the `search` command and the sweep do):

    summary = run_and_report(setup, SearchSettings(store="traces/aime24", searcher="bo", out="out/bo"))

The space (search/spaces/) scores, encodes and describes the points; the searcher proposes
them (search/protocol.py); this module only drives, times and archives.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from replay.errors import ConfigError, InputError
from replay.store import Store

from . import report
from .archive import ARCHIVE_NAME, ArchiveWriter, _clean, read_archive, trial_from_record, trial_record
from .protocol import Proposal, Searcher, Trial
from .searchers import get_searcher, searchers_for
from replay.redact import redact_url

from .settings import ENDPOINT_OPTIONS, GRID_LIMIT, SearchSettings
from .setup import SearchSetup, Split, make_setup, split_questions
from .spaces.base import Space, check_needs
from .selection import DEFAULT_RULE, select
from .trial import Objective, best_trial

__all__ = ["GRID_LIMIT", "SearchRun", "SearchSetup", "Split", "build_searcher", "known_optimum", "make_setup",
           "report_search", "run_and_report", "run_search", "run_seeds", "score_on_test", "score_proposals",
           "setup_for", "split_questions"]


# --------------------------------------------------------------------------------------------
# Searchers and scoring


def build_searcher(name: str, space: Space, *, seed: int = 0, options: dict[str, Any] | None = None,
                   trials: int | None = None, objective: Objective | None = None) -> Searcher:
    """A searcher on `space`, its options checked against what its class declares.

    Parameters:
        name: a registered searcher (search/searchers/__init__.py).
        space: the space it searches; a searcher that needs a capability the space lacks is
            refused in one line.
        seed: the searcher's seed.
        options: its keyword options (`options_accepted` on its class; any other is refused).
        trials: the trial budget, for searchers that pace themselves.
        objective: what trials are scored on, for searchers that scan the whole space
            (`uses_scan`).
    """
    cls = get_searcher(name)
    check_needs(name, cls.needs, space, searchers_for(space))
    options = dict(options or {})
    for k in options:
        if k not in cls.options_accepted:
            raise ConfigError(f"--{k.replace('_', '-')}", f"does not apply to searcher {cls.name!r}")
    if cls.uses_scan:
        options["objective"] = objective
    return cls(space, seed=seed, trials=trials, **options)


def score_proposals(setup: SearchSetup, proposals: list[Proposal], first_number: int) -> tuple[list[Trial], float]:
    """Score proposals on the training questions in one replay call."""
    sp = setup.space
    t0 = time.perf_counter()
    evals = sp.evaluate([p.point for p in proposals], setup.objective)
    dt = time.perf_counter() - t0
    return [Trial.of(first_number + k, p.point, ev, wall_s=dt / len(proposals), source=p.source, extra=p.extra,
                     label=sp.label(p.point))
            for k, (p, ev) in enumerate(zip(proposals, evals))], dt


def score_on_test(setup: SearchSetup, point: Any) -> dict[str, Any]:
    """The final point on the held-out questions (more replicates: one point is cheap). Scored
    whatever its cost there; the cost is reported next to the budget. Two uncertainties, named
    apart: `stderr`, the replicate error (the questions fixed), and `ci_lo`..`ci_hi`, the 95%
    interval over questions (replay.stats: what says whether the score carries over to new
    questions); `per_question` keeps each test question's score for paired comparisons."""
    from replay.stats import question_interval

    sp = setup.space
    ev = sp.evaluate([point], setup.test_objective, enforce_budget=False)[0]
    out = {"score": ev.score, "stderr": ev.stderr, sp.cost_unit: ev.cost, "tokens": ev.tokens}
    out.update({k: v for k, v in ev.metrics.items() if isinstance(v, (int, float))})
    if ev.per_question is not None:
        ci = question_interval(ev.per_question)
        out.update({"ci_lo": ci.lo, "ci_hi": ci.hi, "ci_level": ci.level,
                    "per_question": [round(float(x), 6) for x in ev.per_question]})
    measured = ev.metrics.get("measured_units")
    out.update({"within_budget": bool(ev.cost <= sp.budget * (1 + 1e-9)), "questions": len(setup.split.test),
                "replicates": setup.test_replicates})
    if measured is not None:  # the rule is the expected cost; say what these draws cost too
        out["measured_within_budget"] = bool(measured <= sp.budget * (1 + 1e-9))
    return out


def known_optimum(setup: SearchSetup, *, limit: int = GRID_LIMIT, progress: bool = False) -> dict[str, Any] | None:
    """The exhaustive optimum of this setup's objective (the grid's answer), or None when the
    space is larger than `limit` or has no finite grid (`space.optimum`).

    Parameters:
        setup: the search setup whose training objective is optimised.
        limit: the largest space (in points) that is scanned.
        progress: accepted for symmetry with the other long calls (the scan is one call).
    """
    t0 = time.perf_counter()
    opt = setup.space.optimum(setup.objective, limit)
    if opt is not None:
        opt["wall_s"] = time.perf_counter() - t0
    return opt


# --------------------------------------------------------------------------------------------
# The loop


@dataclass
class SearchRun:
    searcher: str
    seed: int
    header: dict[str, Any]
    trials: list[Trial]
    states: list[dict[str, Any]]  # searcher state() after each trial, then once at the end
    replay_s: float  # replay time of every trial, archived ones included
    searcher_s: float  # time in ask/tell (this session)
    wall_s: float  # this session
    resumed_from: int = 0  # trials read back from the archive
    stop: str = ""  # why the loop ended
    archive: Path | None = None
    extras: dict[str, Any] = field(default_factory=dict)


def run_search(setup: SearchSetup, searcher: str, *, seed: int = 0, trials: int | None = 50,
               options: dict[str, Any] | None = None, out: str | Path | None = None, resume: bool = False,
               progress: bool = False) -> SearchRun:
    """Run one search.

    Parameters:
        setup: the store, split, objective and space (`make_setup`).
        searcher: a registered searcher name.
        seed: the searcher's seed.
        trials: the trial budget; None: until the searcher stops (the grid).
        options: the searcher's options (None values are dropped).
        out: a folder; every trial is archived in out/archive.jsonl as it finishes.
        resume: continue the archive in `out` (its header must match this search).
        progress: a progress bar on a terminal.
    """
    options = {k: v for k, v in (options or {}).items() if v is not None}
    if trials is not None and trials < 1:
        raise ConfigError("--trials", f"must be at least 1, got {trials}")
    sp = setup.space
    s = build_searcher(searcher, sp, seed=seed, options=options, trials=trials, objective=setup.objective)
    # the header never holds a secret: no key, and a base URL's credentials masked (replay/redact.py)
    shown = {k: (redact_url(v) if k.endswith("base_url") and isinstance(v, str) else v)
             for k, v in options.items() if "api_key" not in k}
    header = {**setup.objective_header(), "searcher": searcher, "seed": seed, "options": shown, "trials": trials,
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    t_start = time.perf_counter()
    path = None if out is None else Path(out) / ARCHIVE_NAME
    with _holding(out):
        return _run_loop(setup, s, searcher, seed, trials, header, path, resume, progress, t_start)


def _run_loop(setup: SearchSetup, s: Searcher, searcher: str, seed: int, trials: int | None, header: dict[str, Any],
              path: Path | None, resume: bool, progress: bool, t_start: float) -> SearchRun:
    """The loop of `run_search`, its folder held."""
    sp = setup.space
    writer, header, done, states = _open_archive(path, header, s, resume)
    resumed = len(done)
    replay_s = sum(t.wall_s for t in done if math.isfinite(t.wall_s))
    searcher_s = 0.0
    stop = "trial budget spent"
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=trials, initial=len(done), desc=f"{searcher} seed {seed}", unit="trial", leave=False, disable=None)
    try:
        while trials is None or len(done) < trials:
            t0 = time.perf_counter()
            props = s.ask()
            searcher_s += time.perf_counter() - t0
            if not props:
                stop = "searcher finished"
                break
            if trials is not None:
                props = props[: trials - len(done)]
            for p in props:
                if not sp.contains(p.point):
                    raise ConfigError(f"searcher {searcher!r}", f"proposed {sp.label(p.point)}, which is outside "
                                      "the search space")
            new, dt = score_proposals(setup, props, len(done))
            replay_s += dt
            records = []
            t0 = time.perf_counter()
            for t in new:
                s.tell(t)
                st = s.state()
                states.append(st)
                records.append(trial_record(t, sp.encode(t.point), st))
            searcher_s += time.perf_counter() - t0
            done.extend(new)
            if writer is not None:
                writer.append(records)
            if bar is not None:
                bar.update(len(new))
    finally:
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()
    states.append(s.state())  # once more: the last ask may have spent LLM calls without a trial
    return SearchRun(searcher=searcher, seed=seed, header=header, trials=done, states=states, replay_s=replay_s,
                     searcher_s=searcher_s, wall_s=time.perf_counter() - t_start, resumed_from=resumed, stop=stop,
                     archive=path)


def _open_archive(path: Path | None, header: dict[str, Any], s: Searcher, resume: bool):
    """(writer, header, archived trials, their states): a new archive, or the one at `path`
    read back into the searcher (`resume`). No archive without a path."""
    if path is None:
        return None, header, [], []
    if resume and path.is_file():
        old, records, good = read_archive(path)
        check_resume(path, old, header)
        done = [trial_from_record(r, s.space.decode) for r in records]
        s.replay_history(done)
        # an archive of the format before (version 1) is rewritten in this one, then continued
        writer = ArchiveWriter.rewrite(path, old, records) if old.get("upgraded_from") else \
            ArchiveWriter.reopen(path, good)
        return writer, old, done, [r.get("state") or {} for r in records]
    if path.exists():
        raise InputError(str(path.parent), "already holds a search archive: pass --resume to continue it, or another --out")
    return ArchiveWriter.create(path, header), header, [], []


RESUME_KEYS = ("space_kind", "store_name", "searcher", "seed", "options", "replicates", "replay_seed", "train", "test",
               "budget", "space")


def _resume_view(header: dict[str, Any], k: str) -> Any:
    v = header.get(k)
    if k == "options" and isinstance(v, dict):
        v = {o: x for o, x in v.items() if o not in ENDPOINT_OPTIONS}
    return json.loads(json.dumps(_clean(v), default=str))  # as the archive writes it (no NaN or inf)


def check_resume(path: Path, old: dict[str, Any], new: dict[str, Any]) -> None:
    """The archived search is this one: same objective, space, searcher, seed and options (an
    LLM endpoint may move); otherwise one line says what differs."""
    rule = (new.get("space") or {}).get("budget_rule")
    if rule is not None and (old.get("space") or {}).get("budget_rule") != rule:
        raise InputError("--resume", f"{path} was written by an older version that judged feasibility by the measured "
                         f"cost of the training draws; this one judges it by the {rule} (docs/search.md), so its "
                         "searchers would not propose the same trials: start a new search (another --out); "
                         "`search compare` still reads it")
    for k in RESUME_KEYS:
        a, b = _resume_view(old, k), _resume_view(new, k)
        if a != b:
            raise InputError("--resume", f"{path} was written with {k} = {_shown(k, a)}, this run has {_shown(k, b)}")


def _shown(key: str, value: Any) -> str:
    return f"{len(value)} questions" if key in ("train", "test") else repr(value)


# --------------------------------------------------------------------------------------------
# A search with its report, and repeats over seeds


def report_search(setup: SearchSetup, run: SearchRun, *, out: str | Path | None = None,
                  optimum: dict | None | str = "compute", optimum_limit: int = GRID_LIMIT, plot: bool = True,
                  progress: bool = False, select_rule: str | None = None) -> dict[str, Any]:
    """Pick the final point (a selection rule), score it on test, find the optimum, summarise,
    and write the files.

    Parameters:
        setup: the setup the run searched.
        run: what `run_search` returned.
        out: the folder for summary.json and best_so_far.png (None: nothing written).
        optimum: "compute" (the exhaustive optimum: the grid's own best when the grid walked the
            whole space, else `known_optimum`), a dict computed before (a sweep's, per
            objective), or None (unknown).
        optimum_limit: the largest space whose optimum is computed.
        plot: also write best_so_far.png.
        progress: progress bars on a terminal.
        select_rule: the rule that picks the final point among the trials (search/selection.py;
            None: `selection.DEFAULT_RULE`).

    Returns the summary (what summary.json holds).
    """
    sp = setup.space
    scan = report.scan_work(run.states)
    if optimum == "compute":
        best = best_trial(run.trials)
        if get_searcher(run.searcher).exhaustive and sp.size() is not None and run.stop == "searcher finished":
            # the grid walked (or scanned) the whole space: its best is the optimum
            optimum = None if best is None else {
                "config": best.label, "score": best.score, sp.cost_unit: best.cost,
                "evaluated": scan["scanned"] if scan else len(run.trials),
                "feasible": scan["feasible"] if scan else sum(1 for t in run.trials if t.feasible),
                "space_size": sp.size(), "wall_s": run.replay_s + (scan["wall_s"] if scan else 0.0)}
        else:
            optimum = known_optimum(setup, limit=optimum_limit, progress=progress)
    selection = select(run.trials, select_rule or DEFAULT_RULE)
    best = selection.trial
    test = score_on_test(setup, best.point) if best is not None else None
    summary = report.summarize(run.header, run.trials, run.states, test=test, optimum=optimum, replay_s=run.replay_s,
                               searcher_s=run.searcher_s, wall_s=run.wall_s, stop=run.stop, selection=selection)
    summary["resumed_from"] = run.resumed_from
    summary.update(sp.report(setup, run.trials, best, out=None if out is None else Path(out)))
    if out is not None:
        report.write_report(Path(out), summary, run.trials, title=sp.title(), plot=plot)
    return summary


def setup_for(store: Store, settings: SearchSettings) -> SearchSetup:
    """The setup `settings` describe, on the opened store."""
    return make_setup(store, settings.space, train=settings.train, replicates=settings.replicates,
                      replay_seed=settings.replay_seed, test_replicates=settings.test_replicates,
                      split_seed=settings.split_seed)


def run_and_report(setup: SearchSetup, settings: SearchSettings, *, optimum: dict | None | str = "compute",
                   progress: bool = False) -> dict[str, Any]:
    """One search as `settings` say, then its report (`report_search`).

    Parameters:
        setup: the setup `settings` describe (`setup_for(store, settings)`).
        settings: the searcher, seed, trials, options, out, resume, optimum and plot settings.
        optimum: as for `report_search`; "compute" gives none when `settings.optimum` is off.
        progress: progress bars on a terminal.
    """
    if optimum == "compute" and not settings.optimum:
        optimum = None
    with _holding(settings.out):  # archive and summary: one writer from the first trial to the report
        run = run_search(setup, settings.searcher, seed=settings.seed, trials=settings.trials, options=settings.options,
                         out=settings.out, resume=settings.resume, progress=progress)
        return report_search(setup, run, out=settings.out, optimum=optimum, optimum_limit=settings.optimum_limit,
                             plot=settings.plot, progress=progress, select_rule=settings.select)


def _holding(out: str | Path | None):
    """The search folder's lock (replay.locks), or nothing when the search writes no folder."""
    from contextlib import nullcontext

    from replay.locks import folder_lock

    return nullcontext() if out is None else folder_lock(out, "search")


def _init_worker(parent_pid: int | None = None) -> None:
    import os

    # one process per seed: one Numba thread each, set before the kernels (and Numba) load
    os.environ["NUMBA_NUM_THREADS"] = "1"
    if parent_pid is not None:  # a parent killed with SIGKILL must not leave seeds writing
        from replay.orphans import die_with_parent

        die_with_parent(parent_pid)


def _seed_worker(job: tuple[SearchSettings, dict | None]) -> dict[str, Any]:
    from replay.store import open_store

    settings, optimum = job
    return run_and_report(setup_for(open_store(settings.store), settings), settings, optimum=optimum)


def run_seeds(setup: SearchSetup, settings: SearchSettings, *, optimum: dict | None = None,
              progress: bool = False) -> list[dict[str, Any]]:
    """The same search for each of `settings.seeds`, into OUT/seed-S, in parallel processes
    (spawned: each opens the store and loads the compiled kernels from Numba's cache; one Numba
    thread each; `settings.workers`). Every seed gets this setup's resolved budget.

    Parameters:
        setup: the setup of `settings` (its default budget resolved once, here).
        settings: the search; `seeds` (else `seed`), `out` (required), `workers`.
        optimum: the exhaustive optimum computed once for all seeds (None: unknown).
        progress: a progress bar over seeds on a terminal.
    """
    import multiprocessing as mp
    import os
    from concurrent.futures import ProcessPoolExecutor, as_completed

    seeds = list(settings.seeds or (settings.seed,))
    space = settings.space.with_budget(setup.space.budget)  # the parent's budget, whatever the default was
    jobs = [(replace(settings, space=space, seed=s, seeds=None, out=str(Path(settings.out) / f"seed-{s}")), optimum)
            for s in seeds]
    workers = max(1, min(settings.workers or os.cpu_count() or 1, len(jobs)))
    results: dict[int, dict] = {}
    if workers == 1:
        for j in jobs:
            results[j[0].seed] = _seed_worker(j)
    else:
        # spawn, not fork: a forked child would inherit the parent's launched Numba thread pool
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                 initializer=_init_worker, initargs=(os.getpid(),)) as ex:
            futs = {ex.submit(_seed_worker, j): j[0].seed for j in jobs}
            it = as_completed(futs)
            if progress:
                from tqdm import tqdm

                it = tqdm(it, total=len(futs), desc=f"{settings.searcher} over {len(jobs)} seeds", unit="seed",
                          leave=False, disable=None)
            for f in it:
                results[futs[f]] = f.result()
    return [results[s] for s in seeds]
