"""The sweep's plan: objectives (store x training size x budget) and cells (x searcher entries x
trial budgets x seeds), each cell one `SearchSettings`.

Planning opens every store here (once), resolves each objective (the default budget of its
training questions), checks every searcher's options on its space, and enumerates the cells.
Bad values fail here, before any search, as one line naming the spec field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from replay.clitools import check_replicates
from replay.errors import ConfigError, InputError
from replay.locks import is_lock_file

from .. import runner
from ..searchers import get_searcher
from ..settings import ConfigSpaceSettings, GraphSpaceSettings, SearchSettings
from .spec import SearcherEntry, SweepSpec
from .tasks import setup_of

FORMAT = "tts-sweep"
VERSION = 1
SWEEP_NAME = "sweep.json"
CELLS_DIR = "cells"
# what a cell's make_setup error names -> the spec field it came from
_FLAG_FIELD = {"--train": "train", "--budget": "budgets", "--max-samples": "max_samples", "--models": "models",
               "--replicates": "replicates", "--max-fallback": "max_fallback"}


@dataclass(frozen=True)
class Group:
    """One objective: a store, a training-set size and a budget; its grid optimum is shared."""

    key: str
    store: str
    path: str
    synthetic: bool
    train: int | None  # as asked (None: the store's split or the default)
    budget_spec: float | None  # as asked (None: the default budget)
    settings: SearchSettings  # the objective and space, the budget resolved (no searcher yet)
    budget: float
    space_size: int
    train_questions: int
    test_questions: int
    split: str = ""  # how the questions were split (search/setup.py)
    split_overrides: bool = False  # this training size overrode the store's split (another test set)


@dataclass(frozen=True)
class Cell:
    group: Group
    entry: SearcherEntry
    seed: int
    trials: int | None  # None: until the searcher stops
    dir: str  # relative to the sweep's output folder
    settings: SearchSettings  # the cell's search, out relative to the sweep's folder
    uses_llm: bool

    @property
    def key(self) -> tuple:
        return (self.group.store, self.entry.label, self.group.train, self.group.budget_spec, self.trials, self.seed)


@dataclass
class Plan:
    spec: SweepSpec
    out: Path
    groups: list[Group]
    cells: list[Cell]


def _fmt_axis(x, default: str) -> str:
    if x is None:
        return default
    return format(x, ".12g") if isinstance(x, float) else str(x)


def cell_dir(store: str, label: str, train, budget, trials, seed: int) -> str:
    safe = label.replace(":", "-").replace(",", "+").replace(" ", "_")
    return (f"{CELLS_DIR}/{store}/{safe}/train-{_fmt_axis(train, 'default')}_budget-{_fmt_axis(budget, 'default')}"
            f"_trials-{_fmt_axis(trials, 'all')}/seed-{seed}")


_PARENT_STORES: dict[str, Any] = {}


def plan_sweep(spec: SweepSpec, announce: Callable[[Any], None] | None = None) -> Plan:
    """The groups and cells of `spec` (see the module docstring)."""
    from replay.store import open_store

    groups: list[Group] = []
    cells: list[Cell] = []
    names: dict[str, str] = {}
    out = Path(spec.out) if spec.out else Path("out/sweeps") / spec.name
    for i, se in enumerate(spec.stores):
        if se.path not in _PARENT_STORES:
            _PARENT_STORES[se.path] = open_store(se.path)
        store = _PARENT_STORES[se.path]
        if announce is not None:
            announce(store)
        if store.name in names:
            raise ConfigError(spec.where("stores"), f"two stores are named {store.name!r} ({names[store.name]} and {se.path})")
        names[store.name] = se.path
        checked: set[str] = set()
        for train in (se.train if se.train is not None else spec.train):
            for budget in (se.budgets if se.budgets is not None else spec.budgets):
                base = SearchSettings(
                    store=se.path, searcher="", train=train, replicates=spec.replicates, replay_seed=spec.replay_seed,
                    test_replicates=spec.test_replicates, optimum=spec.optimum, optimum_limit=spec.optimum_limit,
                    plot=spec.cell_plots, select=spec.select,
                    space=space_settings(spec, budget))
                for field_name, reps in (("replicates", spec.replicates), ("test_replicates", spec.test_replicates)):
                    try:  # before the setup, which already replays (the default budget)
                        check_replicates(spec.where(field_name), reps, questions=len(store.question_ids))
                    except ConfigError as e:
                        raise ConfigError(e.where, f"store {store.name}: {e.problem}") from None
                try:
                    setup = setup_of(store, base)
                except InputError as e:
                    fieldname = _FLAG_FIELD.get(e.where, e.where)
                    override = (fieldname == "train" and se.train is not None) or (fieldname == "budgets" and se.budgets is not None)
                    where = spec.where(f"stores[{i}].{fieldname}" if override else fieldname)
                    raise ConfigError(where, f"store {store.name}: {e.problem}") from None
                base = replace(base, space=base.space.with_budget(setup.space.budget))
                g = Group(key=f"{store.name}|train-{_fmt_axis(train, 'default')}|budget-{_fmt_axis(budget, 'default')}",
                          store=store.name, path=se.path, synthetic=bool(store.synthetic), train=train,
                          budget_spec=budget, settings=base, budget=float(setup.space.budget),
                          space_size=int(setup.space.size()), train_questions=len(setup.split.train),
                          test_questions=len(setup.split.test), split=setup.split.source,
                          split_overrides=setup.split.overrides)
                groups.append(g)
                for j, entry in enumerate(spec.searchers):
                    cls = get_searcher(entry.name)
                    options = {**spec.searcher_options.get(entry.name, {}), **entry.options}
                    if cls.uses_llm:
                        if spec.llm_base_url:
                            options.setdefault("llm_base_url", spec.llm_base_url)
                        if spec.llm_model:
                            options.setdefault("llm_model", spec.llm_model)
                        for k, v in spec.llm_options.items():  # llm_max_tokens, llm_timeout_s, llm_structured
                            options.setdefault(k, v)
                    if entry.trials is not None:
                        trial_axis = entry.trials
                    elif cls.exhaustive:
                        trial_axis = (None,)  # the grid runs until done, as `search run` does
                    else:
                        trial_axis = spec.trials
                    if entry.label not in checked:  # bad options fail before any search
                        checked.add(entry.label)
                        try:
                            runner.build_searcher(entry.name, setup.space, options=options, trials=trial_axis[0],
                                                  objective=setup.objective)
                        except InputError as e:
                            raise ConfigError(spec.where(f"searchers[{j}]"), f"{entry.label}: {e}") from None
                    for trials in trial_axis:
                        for seed in (entry.seeds if entry.seeds is not None else spec.seeds):
                            d = cell_dir(store.name, entry.label, train, budget, trials, seed)
                            cells.append(Cell(group=g, entry=entry, seed=seed, trials=trials, dir=d,
                                              uses_llm=cls.uses_llm,
                                              settings=replace(base, searcher=entry.name, seed=seed, trials=trials,
                                                               options=options, out=str(out / d))))
    return Plan(spec=spec, out=out, groups=groups, cells=cells)


def space_settings(spec: SweepSpec, budget: float | None):
    """The space of every cell of one budget: configurations, or graphs (spec.space)."""
    if spec.space == "graph":
        return GraphSpaceSettings(max_nodes=spec.max_nodes, models=spec.models, max_samples=spec.max_samples,
                                  budget=budget, latency_limit=spec.latency_limit, objective=spec.objective)
    return ConfigSpaceSettings(models=spec.models, max_samples=spec.max_samples, budget=budget,
                               max_fallback=spec.max_fallback)


def fingerprint(plan: Plan) -> dict[str, Any]:
    """What must not change between runs into the same output folder."""
    s = plan.spec
    return {"replicates": s.replicates, "test_replicates": s.test_replicates, "replay_seed": s.replay_seed,
            "models": list(s.models) if s.models else None, "max_samples": s.max_samples,
            "max_fallback": s.max_fallback, "select": s.select, "optimum": s.optimum,
            "optimum_limit": s.optimum_limit, "stores": {g.store: g.path for g in plan.groups},
            # a graph sweep's space (absent, hence None, for configuration sweeps and older records)
            "space": s.space if s.space != "config" else None,
            "graph": {"max_nodes": s.max_nodes, "latency_limit": s.latency_limit, "objective": s.objective}
            if s.space == "graph" else None}


def check_out(plan: Plan) -> None:
    """The output folder is new, or holds a sweep of the same objectives."""
    path = plan.out / SWEEP_NAME
    if not path.is_file():
        if plan.out.is_file():
            raise InputError(str(plan.out), "is a file, not a folder: choose another out")
        if plan.out.exists() and any(not is_lock_file(p) for p in plan.out.iterdir()):
            raise InputError(str(plan.out), "exists and holds no sweep (no sweep.json): choose another out")
        return
    try:
        old = json.loads(path.read_text())
    except (ValueError, OSError) as e:
        raise InputError(str(path), f"not valid JSON ({' '.join(str(e).split())})") from None
    except RecursionError:
        raise InputError(str(path), "not a sweep record (JSON nested too deeply)") from None
    if not isinstance(old, dict) or old.get("format") != FORMAT:
        raise InputError(str(path), f"not a sweep record (format {old.get('format')!r})")
    a, b = old.get("fingerprint") or {}, fingerprint(plan)
    for k in b:
        if k == "stores":
            for name, p in b[k].items():
                if name in (a.get(k) or {}) and a[k][name] != p:
                    raise InputError(str(plan.out), f"holds a sweep whose store {name!r} is {a[k][name]}, "
                                     f"this spec's is {p}: use another out")
        elif a.get(k) != b[k]:
            raise InputError(str(plan.out), f"holds a sweep run with {k} = {a.get(k)!r}, this spec has "
                             f"{b[k]!r}: use another out (or the same {k})")
