"""The search loop: ask -> score on the training questions with the replay -> archive -> tell.

    setup = make_setup(replay.open("traces/aime24"))
    run = run_search(setup, "bo", seed=0, trials=50, out="out/bo")

The objective a searcher sees is fixed by the setup: the training questions, `replicates` draws
per question and the replay seed (common random numbers), so every searcher and every searcher
seed optimise the very same function, and the grid's optimum of it is a fixed target.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from replay.engine import StageChoice, budget_unit, default_budget, evaluate, evaluate_batch, scan_space
from replay.errors import ConfigError, InputError
from replay.store import Store

from .archive import ARCHIVE_NAME, ArchiveWriter, read_archive, trial_from_record, trial_record
from .protocol import Proposal, Searcher, Trial, as_proposal
from .space import ESTIMATE_SLACK, SearchSpace
from .searchers import get_searcher

DEFAULT_TRAIN = 50
SPLIT_SEED = 0  # the seeded split does not move with the searcher's seed
GRID_LIMIT = 20_000_000  # configurations the exhaustive optimum scores by default (a compiled scan)


# --------------------------------------------------------------------------------------------
# The setup: questions, space, objective


@dataclass(frozen=True)
class Split:
    train: np.ndarray
    test: np.ndarray
    source: str


def split_questions(store: Store, train: int | None = None) -> Split:
    """The store's own train/test split when it has one and `train` is not given; otherwise a
    seeded shuffle (seed 0) whose first `train` (default 50) questions train, the rest test."""
    n = len(store.question_ids)
    if train is None:
        if "train" in store.manifest.split:
            tr = store.question_indices("train")
            te = store.question_indices("test") if "test" in store.manifest.split else np.setdiff1d(np.arange(n), tr)
            return Split(tr, te, "the store's split (manifest)")
        col = store.questions["split"].to_numpy()
        if (col == "train").any():
            tr = np.flatnonzero(col == "train")
            te = np.flatnonzero(col == "test") if (col == "test").any() else np.flatnonzero(col != "train")
            return Split(tr.astype(np.int64), te.astype(np.int64), "the store's split (questions.split)")
        train = DEFAULT_TRAIN
        if train >= n:
            raise ConfigError("--train", f"the store has {n} questions and no split; the default of {DEFAULT_TRAIN} "
                              f"training questions leaves none for test: pass --train N with N < {n}")
    if train < 1:
        raise ConfigError("--train", f"must be at least 1, got {train}")
    if train >= n:
        raise ConfigError("--train", f"{train} training questions leave none of the store's {n} for test")
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    return Split(np.sort(perm[:train]).astype(np.int64), np.sort(perm[train:]).astype(np.int64),
                 f"seeded shuffle (seed {SPLIT_SEED}): {train} train, {n - train} test")


@dataclass(frozen=True)
class SearchSetup:
    store: Store
    space: SearchSpace
    split: Split
    replicates: int
    replay_seed: int
    test_replicates: int

    def objective_header(self) -> dict[str, Any]:
        """Everything that fixes the objective; --resume insists these match."""
        ids = self.store.question_ids
        return {
            "store": str(self.store.path),
            "store_name": self.store.name,
            "synthetic": self.store.synthetic,
            "space": self.space.to_json(),
            "budget": self.space.budget,
            "train": [ids[i] for i in self.split.train],
            "test": [ids[i] for i in self.split.test],
            "split": self.split.source,
            "replicates": self.replicates,
            "replay_seed": self.replay_seed,
        }


def make_setup(store: Store, models: list[str] | None = None, max_samples: int | None = None,
               budget: float | None = None, train: int | None = None, replicates: int = 16,
               replay_seed: int = 0, test_replicates: int = 256) -> SearchSetup:
    if replicates < 1:
        raise ConfigError("--replicates", f"must be at least 1, got {replicates}")
    if max_samples is not None and max_samples < 1:
        raise ConfigError("--max-samples", f"must be at least 1, got {max_samples}")
    if budget is not None and not (math.isfinite(budget) and budget > 0):
        raise ConfigError("--budget", f"must be a positive number of normalised units, got {budget}")
    split = split_questions(store, train)
    if budget is None:
        # On the training questions with the search's own draws, so that the paper's reference
        # configuration (every stage once with its largest model) is feasible by construction.
        budget = default_budget(store, questions=split.train, replicates=replicates, seed=replay_seed)
    space = SearchSpace.from_store(store, models=models, max_samples=max_samples, budget=budget, questions=split.train)
    cheapest = sum(min(c[m][0] + c[m][1] * min(space.counts[i][m]) for m in c) for i, c in enumerate(space.costs))
    if cheapest > budget * (1 + ESTIMATE_SLACK):
        raise ConfigError("--budget", f"{budget:.4g} units is below the cheapest configuration of the space "
                          f"(about {cheapest:.4g} units)")
    return SearchSetup(store, space, split, replicates, replay_seed, test_replicates)


# --------------------------------------------------------------------------------------------
# Scoring


def score_proposals(setup: SearchSetup, proposals: list[Proposal], first_number: int) -> tuple[list[Trial], float]:
    """Score proposals on the training questions in one batched replay call."""
    configs = [p.config for p in proposals]
    t0 = time.perf_counter()
    results = evaluate_batch(setup.store, configs, questions=setup.split.train, replicates=setup.replicates,
                             seed=setup.replay_seed, budget=setup.space.budget)
    dt = time.perf_counter() - t0
    unit = budget_unit(setup.store)
    out = []
    for k, (p, r) in enumerate(zip(proposals, results)):
        out.append(Trial(
            number=first_number + k,
            config=p.config,
            feasible=r.feasible,
            score=r.score if r.feasible else None,
            stderr=r.stderr if r.feasible else None,
            units=r.units,
            tokens=r.tokens,
            wall_s=dt / len(proposals),
            source=p.source,
            extra=dict(p.extra),
            stage_units=tuple(st.flops / unit for st in r.stages),
            stage_scores=tuple(st.score for st in r.stages),
        ))
    return out, dt


def score_on_test(setup: SearchSetup, config) -> dict[str, Any]:
    """The final configuration on the held-out questions (more replicates: one config is cheap).
    Scored whatever its cost there; the cost is reported next to the budget."""
    r = evaluate(setup.store, config, questions=setup.split.test, replicates=setup.test_replicates,
                 seed=setup.replay_seed)
    return {"score": r.score, "stderr": r.stderr, "units": r.units, "tokens": r.tokens,
            "within_budget": bool(r.units <= setup.space.budget * (1 + 1e-9)),
            "questions": len(setup.split.test), "replicates": setup.test_replicates}


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


def _check_options(cls, options: dict[str, Any]) -> None:
    accepted = getattr(cls, "options_accepted", None)
    if accepted is None:
        return
    for k in options:
        if k not in accepted:
            raise ConfigError(f"--{k.replace('_', '-')}", f"does not apply to searcher {cls.name!r}")


def build_searcher(name: str, space: SearchSpace, seed: int, options: dict[str, Any],
                   trials: int | None = None, setup: SearchSetup | None = None) -> Searcher:
    cls = get_searcher(name)
    _check_options(cls, options)
    accepted = getattr(cls, "options_accepted", ())
    if trials is not None and "trials" in accepted and "trials" not in options:
        options = {**options, "trials": trials}  # searchers that pace themselves (LLM rounds) may know it
    if setup is not None and getattr(cls, "uses_scan", False):
        # exhaustive searchers may score a whole product space in one compiled scan of the
        # same objective (training questions, replicates, replay seed)
        options = {**options, "scan": lambda choices: scan_space(setup.store, choices,
                                                                 questions=setup.split.train,
                                                                 replicates=setup.replicates,
                                                                 seed=setup.replay_seed)}
    return cls(space, seed=seed, **options)


def run_search(setup: SearchSetup, searcher: str, seed: int = 0, trials: int | None = 50,
               options: dict[str, Any] | None = None, out: str | Path | None = None, resume: bool = False,
               progress: bool = False) -> SearchRun:
    """Run one search. `trials=None`: until the searcher stops (the grid). With `out`, every
    trial is archived in out/archive.jsonl as it finishes; `resume` continues that archive."""
    options = {k: v for k, v in (options or {}).items() if v is not None}
    if trials is not None and trials < 1:
        raise ConfigError("--trials", f"must be at least 1, got {trials}")
    s = build_searcher(searcher, setup.space, seed, options, trials, setup=setup)
    # options go into the archive header: never a secret
    shown = {k: v for k, v in options.items() if "api_key" not in k}
    header = {**setup.objective_header(), "searcher": searcher, "seed": seed, "options": shown,
              "trials": trials, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    run = drive(s, searcher, seed, trials, header, out, resume, progress,
                check_resume=_check_resume, from_record=trial_from_record, to_record=trial_record,
                normalize=as_proposal, outside=lambda p: None if setup.space.contains(p.config) else str(p.config),
                score=lambda props, first: score_proposals(setup, props, first))
    return SearchRun(searcher=searcher, seed=seed, archive=run.pop("path"), **run)


def drive(s: Searcher, searcher: str, seed: int, trials: int | None, header: dict[str, Any], out, resume: bool,
          progress: bool, *, check_resume, from_record, to_record, normalize, outside, score) -> dict[str, Any]:
    """The ask -> score -> archive -> tell loop, for any search space (configurations here,
    controller parameters in search/controller/loop.py): the space supplies how a proposal is
    normalised, checked (`outside` returns a description of a proposal outside the space, or
    None), scored on the training questions, and written to and read from the archive.

    Returns the run's header, trials, states (after each trial, then once more at the end: the
    last ask may have spent LLM calls without a new trial), times, resumed count, stop reason
    and archive path."""
    done: list = []
    states: list[dict[str, Any]] = []
    writer = None
    path = None
    t_start = time.perf_counter()
    if out is not None:
        path = Path(out) / ARCHIVE_NAME
        if resume and path.is_file():
            old, records, good = read_archive(path)
            check_resume(path, old, header)
            done = [from_record(r) for r in records]
            states = [r.get("state") or {} for r in records]
            s.replay_history(done)
            writer = ArchiveWriter.reopen(path, good)
            header = old
        elif path.exists() and not resume:
            raise InputError(str(out), "already holds a search archive: pass --resume to continue it, or another --out")
        else:
            writer = ArchiveWriter.create(path, header)
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
            props = [normalize(p) for p in s.ask()]
            searcher_s += time.perf_counter() - t0
            if not props:
                stop = "searcher finished"
                break
            if trials is not None:
                props = props[: trials - len(done)]
            for p in props:
                shown = outside(p)
                if shown is not None:
                    raise ConfigError(f"searcher {searcher!r}", f"proposed {shown}, which is outside the search space")
            new, dt = score(props, len(done))
            replay_s += dt
            records = []
            t0 = time.perf_counter()
            for t in new:
                s.tell(t)
                st = s.state()
                states.append(st)
                records.append(to_record(t, st))
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
    states.append(s.state())
    return {"header": header, "trials": done, "states": states, "replay_s": replay_s, "searcher_s": searcher_s,
            "wall_s": time.perf_counter() - t_start, "resumed_from": resumed, "stop": stop, "path": path}


_RESUME_KEYS = ("store_name", "searcher", "seed", "options", "replicates", "replay_seed", "train", "test", "budget",
                "space")


def _check_resume(path: Path, old: dict[str, Any], new: dict[str, Any]) -> None:
    import json

    for k in _RESUME_KEYS:
        a = json.loads(json.dumps(old.get(k), default=str))
        b = json.loads(json.dumps(new.get(k), default=str))
        if a != b:
            show = (lambda v: f"{len(v)} questions" if k in ("train", "test") else repr(v))
            raise InputError("--resume", f"{path} was written with {k} = {show(a)}, this run has {show(b)}")


def known_optimum(setup: SearchSetup, limit: int = GRID_LIMIT, progress: bool = False) -> dict[str, Any] | None:
    """The exhaustive optimum of this setup's objective (the `grid` searcher's answer), or None
    when the space has more than `limit` configurations.

    Every configuration is scored by `replay.engine.scan_space` (memo tables, then a compiled
    scan of the product: the same numbers as evaluate_batch, without a Python object per
    configuration); the best feasible one wins, ties to the cheapest."""
    t0 = time.perf_counter()
    sp = setup.space
    if sp.size() > limit:
        return None
    choices = [[StageChoice(m, c) for m in sp.models[i] for c in sp.counts[i][m]] for i in range(len(sp.stages))]
    scan = scan_space(setup.store, choices, questions=setup.split.train, replicates=setup.replicates,
                      seed=setup.replay_seed)
    best = scan.best(sp.budget)
    feasible = int((scan.units <= sp.budget * (1 + 1e-9)).sum())
    return {"config": None if best is None else str(best[0]), "score": None if best is None else best[1],
            "units": None if best is None else best[2], "evaluated": int(scan.score.size), "feasible": feasible,
            "space_size": sp.size(), "wall_s": time.perf_counter() - t0}


# --------------------------------------------------------------------------------------------
# A search with its report, and repeats over seeds


def run_and_report(setup: SearchSetup, searcher: str, seed: int, trials: int | None, options: dict[str, Any],
                   out: str | Path, resume: bool = False, optimum: dict | None | str = "compute",
                   progress: bool = False, optimum_limit: int = GRID_LIMIT, plot: bool = True,
                   on_run=None) -> dict[str, Any]:
    """Run a search, score its best configuration on test, write summary.json and (with `plot`)
    the best-so-far PNG. `on_run(run)` is called with the SearchRun once the summary is written."""
    from . import report

    run = run_search(setup, searcher, seed=seed, trials=trials, options=options, out=out, resume=resume,
                     progress=progress)
    if optimum == "compute":
        if searcher == "grid" and run.stop == "searcher finished":
            ok = [t for t in run.trials if t.feasible]
            b = report.best_trial(run.trials)
            optimum = None if b is None else {"config": str(b.config), "score": b.score, "units": b.units,
                                              "evaluated": len(run.trials), "feasible": len(ok),
                                              "space_size": setup.space.size(), "wall_s": run.replay_s}
        else:
            optimum = known_optimum(setup, limit=optimum_limit, progress=progress)
    best = report.best_trial(run.trials)
    test = score_on_test(setup, best.config) if best is not None else None
    summary = report.summarize(run.header, run.trials, run.states, test=test, optimum=optimum, replay_s=run.replay_s,
                               searcher_s=run.searcher_s, wall_s=run.wall_s, stop=run.stop)
    summary["resumed_from"] = run.resumed_from
    report.write_report(Path(out), summary, run.trials, plot=plot)
    if on_run is not None:
        on_run(run)
    return summary


def _init_worker() -> None:
    import os

    # one process per seed: one Numba thread each, set before the kernels (and Numba) load
    os.environ["NUMBA_NUM_THREADS"] = "1"


def _seed_worker(job: dict[str, Any]) -> dict[str, Any]:
    from replay.store import open_store

    setup = make_setup(open_store(job["store"]), **job["setup"])
    return run_and_report(setup, job["searcher"], job["seed"], job["trials"], job["options"], job["out"],
                          resume=job["resume"], optimum=job["optimum"])


def run_seeds(setup: SearchSetup, setup_kwargs: dict[str, Any], searcher: str, seeds: list[int], trials: int | None,
              options: dict[str, Any], out: str | Path, resume: bool = False, optimum: dict | None = None,
              workers: int | None = None, progress: bool = False) -> list[dict[str, Any]]:
    """The same search for each seed, in parallel processes (spawned: each opens the store and
    loads the compiled kernels from Numba's cache; one Numba thread each)."""
    import multiprocessing as mp
    import os
    from concurrent.futures import ProcessPoolExecutor, as_completed

    kwargs = {**setup_kwargs, "budget": setup.space.budget}  # the parent's budget, whatever the default was
    jobs = [{"store": str(setup.store.path), "setup": kwargs, "searcher": searcher, "seed": s, "trials": trials,
             "options": options, "out": str(Path(out) / f"seed-{s}"), "resume": resume, "optimum": optimum}
            for s in seeds]
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    results: dict[int, dict] = {}
    if workers == 1:
        for j in jobs:
            results[j["seed"]] = _seed_worker(j)
    else:
        # spawn, not fork: a forked child would inherit the parent's launched Numba thread pool
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                 initializer=_init_worker) as ex:
            futs = {ex.submit(_seed_worker, j): j["seed"] for j in jobs}
            it = as_completed(futs)
            if progress:
                from tqdm import tqdm

                it = tqdm(it, total=len(futs), desc=f"{searcher} over {len(jobs)} seeds", unit="seed", leave=False, disable=None)
            for f in it:
                results[futs[f]] = f.result()
    return [results[s] for s in seeds]
