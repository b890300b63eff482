"""`search sweep`: a grid of ordinary searches, run in parallel, resumable, reported as one.

    search sweep benchmarks/sweeps/paper.yaml                 # worker processes (all cores)
    search sweep spec.yaml --workers 4 --out out/sweeps/x
    search sweep spec.yaml --ray auto                         # on a Ray cluster
    search sweep --stores traces/aime24 --searchers random,bo,rules --seeds 0-9 --train 5,10,20

The grid is stores x searchers (with ablations, `agenttts:insight1`) x seeds x training-set
sizes x budgets x trial budgets. Every cell is an ordinary search (search/runner.py:
`run_and_report`) with its own archive under OUT/cells/; a cell is finished when its
summary.json exists, a cell with an archive but no summary is continued with the archive's
resume machinery, so an interrupted sweep resumes without repeating or losing a cell. The
grid optimum of each objective (store, training size, budget) is computed once, by a task of
its own, and handed to every cell of that objective.

Execution: in this process (`--workers 1`), in spawned worker processes (default: one per
core; one Numba thread each), or on Ray (`--ray ADDRESS|auto|local`: one Ray task per cell,
`ray.wait` for progress). Workers open each store once and keep it (`_STORES`); stores are
read from their path, never shipped with a task. LLM searchers share `--llm-concurrency`
request slots: a Manager semaphore held around each HTTP request (search/llm/client.py) for
worker processes; with Ray, each LLM cell asks for the custom resource `llm_slot`.

Outputs (OUT): sweep.json (the spec as run), optima.json, cells/..., results.parquet (one row
per cell), curves.parquet (best-so-far per trial, long format), report.md and figures/*.png
(search/sweep_report.py). The spec format is documented in docs/search.md.
"""

from __future__ import annotations

import json
import math
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from replay.atomic import atomic_path
from replay.errors import ConfigError, InputError, ToolError

from . import runner
from .archive import ARCHIVE_NAME, read_archive
from .report import SUMMARY_NAME, write_json_atomic

FORMAT = "tts-sweep"
VERSION = 1
SWEEP_NAME = "sweep.json"
OPTIMA_NAME = "optima.json"
RESULTS_NAME = "results.parquet"
CURVES_NAME = "curves.parquet"
ERROR_NAME = "error.txt"
CURVE_NAME = "curve.json"  # a finished cell's trial scores: results without parsing its archive
CELLS_DIR = "cells"
# the columns of results.parquet that measure time (they differ between runs of the same cell)
TIMING_COLUMNS = ("replay_s", "searcher_s", "wall_s", "llm_s", "optimum_s")

SPEC_FIELDS = {
    "name": "a name for the sweep (default: the spec file's name)",
    "out": "output folder (default out/sweeps/NAME)",
    "stores": "store folders: a path, or {path, train, budgets} to override those axes for one store",
    "searchers": "searchers: 'name' or 'name:ablation', or {searcher, ablate, label, options, seeds, trials}",
    "seeds": "searcher seeds: a list or a range string ('0-9')",
    "train": "training-set sizes (null: the store's split, else 50)",
    "budgets": "budgets in normalised units per question (null: every stage once with its largest model)",
    "trials": "trial budgets (null: until the searcher stops)",
    "replicates": "replay draws per training question",
    "test_replicates": "replay draws per test question for the final score",
    "replay_seed": "seed of the replay's draws",
    "models": "models to consider (default: every candidate)",
    "max_samples": "largest sample count per stage",
    "optimum": "compute the grid optimum of each objective (true/false)",
    "optimum_limit": "largest space whose exhaustive optimum is computed",
    "searcher_options": "options per searcher name, e.g. {bo: {sampler: tpe}}",
    "llm": "{base_url, model, concurrency} for the LLM searchers",
    "workers": "worker processes (default: all cores)",
    "cell_plots": "write each cell's best_so_far.png too (default false)",
}
STORE_FIELDS = ("path", "train", "budgets")
SEARCHER_FIELDS = ("searcher", "ablate", "label", "options", "seeds", "trials")
LLM_FIELDS = ("base_url", "model", "concurrency")
# what a cell's make_setup error names -> the spec field it came from
_FLAG_FIELD = {"--train": "train", "--budget": "budgets", "--max-samples": "max_samples", "--models": "models",
               "--replicates": "replicates"}


class SweepFailed(ToolError):
    """Some cells failed: the others are done and reported; rerunning resumes the failed ones."""

    exit_code = 1


# --------------------------------------------------------------------------------------------
# The spec


@dataclass(frozen=True)
class SearcherEntry:
    label: str  # 'agenttts:insight1': the name in every table and folder
    name: str  # registry name
    ablate: str | None
    options: dict[str, Any]
    seeds: tuple[int, ...] | None  # None: the sweep's seeds
    trials: tuple[int | None, ...] | None  # None: the sweep's trial budgets (exhaustive: until done)


@dataclass(frozen=True)
class StoreEntry:
    path: str  # absolute
    train: tuple[int | None, ...] | None
    budgets: tuple[float | None, ...] | None


@dataclass
class SweepSpec:
    source: str  # the spec file, or "command line"
    name: str
    stores: list[StoreEntry]
    searchers: list[SearcherEntry]
    seeds: tuple[int, ...] = (0,)
    train: tuple[int | None, ...] = (None,)
    budgets: tuple[float | None, ...] = (None,)
    trials: tuple[int | None, ...] = (50,)
    replicates: int = 16
    test_replicates: int = 256
    replay_seed: int = 0
    models: tuple[str, ...] | None = None
    max_samples: int | None = None
    optimum: bool = True
    optimum_limit: int = runner.GRID_LIMIT
    searcher_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    llm_base_url: str | None = None
    llm_model: str | None = None
    llm_concurrency: int | None = None
    workers: int | None = None
    cell_plots: bool = False
    out: str | None = None
    from_cli: frozenset[str] = frozenset()  # fields given on the command line

    def where(self, name: str) -> str:
        """How an error names a field: the spec file and the field, or the command-line option."""
        top = name.split("[")[0].split(".")[0]
        if top in self.from_cli or self.source == "command line":
            return f"--{top.replace('_', '-')}"
        return f"{self.source}: {name}"


def read_spec_file(path: str | os.PathLike) -> dict[str, Any]:
    """A YAML or JSON mapping (YAML is a superset of JSON: both go through yaml.safe_load)."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise InputError(str(path), "no such sweep spec file")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f":{mark.line + 1}" if mark is not None else ""
        raise InputError(f"{path}{at}", f"not valid YAML/JSON ({getattr(e, 'problem', None) or e})") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InputError(str(path), f"a sweep spec is a mapping of fields, got {type(raw).__name__}")
    return raw


def parse_spec(raw: dict[str, Any], source: str = "command line", overrides: dict[str, Any] | None = None,
               base: str | os.PathLike | None = None) -> SweepSpec:
    """Validate a spec mapping (plus command-line `overrides`, which win) into a SweepSpec.
    Every error is one line naming the spec file and the field (or the option). Relative
    store paths are taken from the current folder (or `base`)."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    raw = {**raw, **overrides}
    for k in raw:
        if k not in SPEC_FIELDS:
            where = f"--{k.replace('_', '-')}" if k in overrides else f"{source}: {k}"
            raise ConfigError(where, f"unknown field (known: {', '.join(SPEC_FIELDS)})")
    name = raw.get("name") or (Path(source).stem if source != "command line" else "sweep")
    spec = SweepSpec(source=source, name=str(name), stores=[], searchers=[], from_cli=frozenset(overrides))
    w = spec.where

    spec.replicates = _int(raw.get("replicates", 16), w("replicates"), lo=1)
    spec.test_replicates = _int(raw.get("test_replicates", 256), w("test_replicates"), lo=1)
    spec.replay_seed = _int(raw.get("replay_seed", 0), w("replay_seed"), lo=0)
    if raw.get("max_samples") is not None:
        spec.max_samples = _int(raw["max_samples"], w("max_samples"), lo=1)
    if raw.get("models") is not None:
        spec.models = tuple(_strings(raw["models"], w("models")))
    spec.optimum = _bool(raw.get("optimum", True), w("optimum"))
    spec.optimum_limit = _int(raw.get("optimum_limit", runner.GRID_LIMIT), w("optimum_limit"), lo=1)
    spec.cell_plots = _bool(raw.get("cell_plots", False), w("cell_plots"))
    if raw.get("workers") is not None:
        spec.workers = _int(raw["workers"], w("workers"), lo=1)
    if raw.get("out") is not None:
        if not isinstance(raw["out"], str) or not raw["out"].strip():
            raise ConfigError(w("out"), f"expected a folder path, got {raw['out']!r}")
        spec.out = raw["out"]

    spec.seeds = tuple(_seeds(raw.get("seeds", [0]), w("seeds")))
    spec.train = tuple(_axis(raw.get("train", [None]), w("train"), _train_value))
    spec.budgets = tuple(_axis(raw.get("budgets", [None]), w("budgets"), _budget_value))
    spec.trials = tuple(_axis(raw.get("trials", [50]), w("trials"), _trials_value))

    llm = raw.get("llm") or {}
    if not isinstance(llm, dict):
        raise ConfigError(w("llm"), f"expected a mapping with {', '.join(LLM_FIELDS)}, got {llm!r}")
    for k in llm:
        if k not in LLM_FIELDS:
            raise ConfigError(w(f"llm.{k}"), f"unknown field (known: {', '.join(LLM_FIELDS)})")
    for k in ("base_url", "model"):
        if llm.get(k) is not None and (not isinstance(llm[k], str) or not llm[k].strip()):
            raise ConfigError(w(f"llm.{k}"), f"expected a string, got {llm[k]!r}")
    spec.llm_base_url, spec.llm_model = llm.get("base_url"), llm.get("model")
    if llm.get("concurrency") is not None:
        spec.llm_concurrency = _int(llm["concurrency"], w("llm.concurrency"), lo=1)

    so = raw.get("searcher_options") or {}
    if not isinstance(so, dict) or any(not isinstance(v, dict) for v in so.values()):
        raise ConfigError(w("searcher_options"), "expected a mapping of searcher name -> mapping of options")
    from .searchers import SEARCHERS

    for k in so:
        if k not in SEARCHERS:
            raise ConfigError(w(f"searcher_options.{k}"), f"unknown searcher (known: {', '.join(SEARCHERS)})")
    spec.searcher_options = {str(k): dict(v) for k, v in so.items()}

    stores = raw.get("stores")
    if stores is None:
        raise ConfigError(w("stores"), "required: the store folders to sweep (e.g. [traces/aime24])")
    stores = stores.split(",") if isinstance(stores, str) else stores
    if not isinstance(stores, list) or not stores:
        raise ConfigError(w("stores"), "expected a non-empty list of store folders")
    here = Path(base) if base is not None else Path.cwd()
    for i, s in enumerate(stores):
        at = f"stores[{i}]"
        if isinstance(s, str):
            s = {"path": s}
        if not isinstance(s, dict):
            raise ConfigError(w(at), f"expected a store folder or a mapping with {', '.join(STORE_FIELDS)}, got {s!r}")
        for k in s:
            if k not in STORE_FIELDS:
                raise ConfigError(w(f"{at}.{k}"), f"unknown field (known: {', '.join(STORE_FIELDS)})")
        if not isinstance(s.get("path"), str) or not s["path"].strip():
            raise ConfigError(w(f"{at}.path"), "required: the store folder")
        p = Path(s["path"].strip()).expanduser()
        p = p if p.is_absolute() else here / p
        if not (p / "manifest.json").is_file():
            raise ConfigError(w(at), f"{s['path']}: not a store folder (no manifest.json)")
        spec.stores.append(StoreEntry(
            path=str(p.resolve()),
            train=None if s.get("train") is None else tuple(_axis(s["train"], w(f"{at}.train"), _train_value)),
            budgets=None if s.get("budgets") is None else tuple(_axis(s["budgets"], w(f"{at}.budgets"), _budget_value)),
        ))
    if len({e.path for e in spec.stores}) != len(spec.stores):
        raise ConfigError(w("stores"), "lists a store twice")

    searchers = raw.get("searchers")
    if searchers is None:
        raise ConfigError(w("searchers"), "required: the searchers to run (e.g. [random, bo, rules])")
    searchers = searchers.split(",") if isinstance(searchers, str) else searchers
    if not isinstance(searchers, list) or not searchers:
        raise ConfigError(w("searchers"), "expected a non-empty list of searchers")
    for i, s in enumerate(searchers):
        spec.searchers.append(_searcher_entry(s, w(f"searchers[{i}]"), w))
    labels = [e.label for e in spec.searchers]
    dup = next((x for x in labels if labels.count(x) > 1), None)
    if dup is not None:
        raise ConfigError(w("searchers"), f"{dup!r} is listed twice (give one of them another label)")
    return spec


def _searcher_entry(s: Any, where: str, w: Callable[[str], str]) -> SearcherEntry:
    from .searchers import get_searcher

    if isinstance(s, str):
        name, _, ablate = s.strip().partition(":")
        s = {"searcher": name, "ablate": ablate or None}
    if not isinstance(s, dict):
        raise ConfigError(where, f"expected 'name', 'name:ablation' or a mapping with {', '.join(SEARCHER_FIELDS)}, got {s!r}")
    for k in s:
        if k not in SEARCHER_FIELDS:
            raise ConfigError(f"{where}.{k}", f"unknown field (known: {', '.join(SEARCHER_FIELDS)})")
    name = s.get("searcher")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}.searcher", "required: the searcher's name")
    name = name.strip()
    try:
        get_searcher(name)
    except ConfigError as e:
        raise ConfigError(where, e.problem) from None
    ablate = s.get("ablate")
    if ablate is not None and (not isinstance(ablate, str) or not ablate.strip()):
        raise ConfigError(f"{where}.ablate", f"expected an ablation name, got {ablate!r}")
    ablate = ablate.strip() if ablate else None
    options = s.get("options") or {}
    if not isinstance(options, dict):
        raise ConfigError(f"{where}.options", f"expected a mapping of searcher options, got {options!r}")
    if ablate is not None:
        if "ablate" in options:
            raise ConfigError(f"{where}.options", "gives ablate twice")
        options = {**options, "ablate": ablate}
    label = s.get("label") or (f"{name}:{ablate}" if ablate else name)
    if not isinstance(label, str) or not label.strip() or "/" in label:
        raise ConfigError(f"{where}.label", f"expected a short name without '/', got {label!r}")
    seeds = None if s.get("seeds") is None else tuple(_seeds(s["seeds"], f"{where}.seeds"))
    trials = None if "trials" not in s else tuple(_axis(s["trials"], f"{where}.trials", _trials_value))
    return SearcherEntry(label=label.strip(), name=name, ablate=ablate, options=dict(options), seeds=seeds, trials=trials)


def _int(v: Any, where: str, lo: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise ConfigError(where, f"expected an integer, got {v!r}")
    try:
        x = int(v)
    except ValueError:
        raise ConfigError(where, f"expected an integer, got {v!r}") from None
    if lo is not None and x < lo:
        raise ConfigError(where, f"must be at least {lo}, got {x}")
    return x


def _bool(v: Any, where: str) -> bool:
    if isinstance(v, bool):
        return v
    raise ConfigError(where, f"expected true or false, got {v!r}")


def _strings(v: Any, where: str) -> list[str]:
    items = v.split(",") if isinstance(v, str) else v
    if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
        raise ConfigError(where, f"expected a list of names, got {v!r}")
    out = [x.strip() for x in items if x.strip()]
    if not out:
        raise ConfigError(where, "empty list")
    return out


def _seeds(v: Any, where: str) -> list[int]:
    if isinstance(v, bool):
        raise ConfigError(where, f"expected seeds (a list or '0-9'), got {v!r}")
    if isinstance(v, int):
        return [v]
    if isinstance(v, str):
        from .cli import parse_seeds

        try:
            return parse_seeds(v)
        except ConfigError as e:
            raise ConfigError(where, e.problem) from None
    if isinstance(v, list) and v and all(isinstance(x, int) and not isinstance(x, bool) for x in v):
        if len(set(v)) != len(v):
            raise ConfigError(where, f"repeats a seed: {v}")
        return list(v)
    raise ConfigError(where, f"expected a list of integer seeds or a range like '0-9', got {v!r}")


_NULLS = ("null", "none", "default", "all", "")


def _axis(v: Any, where: str, one: Callable[[Any, str], Any]) -> list[Any]:
    """A list of values, one value, or a comma-separated string; no repeats, not empty."""
    if isinstance(v, str):
        items: list[Any] = [x.strip() for x in v.split(",")]
    elif isinstance(v, list):
        items = v
    else:
        items = [v]
    if not items:
        raise ConfigError(where, "empty list")
    out = [one(x, where) for x in items]
    if len(set(out)) != len(out):
        raise ConfigError(where, f"repeats a value: {v!r}")
    return out


def _train_value(x: Any, where: str) -> int | None:
    if x is None or (isinstance(x, str) and x.lower() in _NULLS):
        return None
    return _int(x, where, lo=1)


def _trials_value(x: Any, where: str) -> int | None:
    if x is None or (isinstance(x, str) and x.lower() in _NULLS):
        return None
    return _int(x, where, lo=1)


def _budget_value(x: Any, where: str) -> float | None:
    if x is None or (isinstance(x, str) and x.lower() in _NULLS):
        return None
    if isinstance(x, bool):
        raise ConfigError(where, f"expected a number of units or null, got {x!r}")
    try:
        b = float(x)
    except (TypeError, ValueError):
        raise ConfigError(where, f"expected a number of units or null, got {x!r}") from None
    if not (math.isfinite(b) and b > 0):
        raise ConfigError(where, f"must be a positive number of units, got {x!r}")
    return b


# --------------------------------------------------------------------------------------------
# The plan: objectives (store x train x budget) and cells


@dataclass(frozen=True)
class Group:
    """One objective: a store, a training-set size and a budget; its grid optimum is shared."""

    key: str
    store: str
    path: str
    synthetic: bool
    train: int | None  # as asked (None: the store's split or the default)
    budget_spec: float | None  # as asked (None: the default budget)
    setup: dict[str, Any]  # make_setup keyword arguments, with the resolved budget
    budget: float
    space_size: int
    train_questions: int
    test_questions: int


@dataclass(frozen=True)
class Cell:
    group: Group
    entry: SearcherEntry
    seed: int
    trials: int | None  # None: until the searcher stops
    dir: str  # relative to the sweep's output folder
    options: dict[str, Any]
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
    """Open every store here (once), resolve each objective (the default budget of its
    training questions), check every searcher's options, and enumerate the cells. Bad values
    fail here, before any search, as one line naming the spec field."""
    from replay.store import open_store

    from .searchers import get_searcher

    groups: list[Group] = []
    cells: list[Cell] = []
    names: dict[str, str] = {}
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
                kwargs = dict(models=list(spec.models) if spec.models else None, max_samples=spec.max_samples,
                              budget=budget, train=train, replicates=spec.replicates, replay_seed=spec.replay_seed,
                              test_replicates=spec.test_replicates)
                try:
                    setup = _setup_from(store, se.path, kwargs)
                except InputError as e:
                    fieldname = _FLAG_FIELD.get(e.where, e.where)
                    override = (fieldname == "train" and se.train is not None) or (fieldname == "budgets" and se.budgets is not None)
                    where = spec.where(f"stores[{i}].{fieldname}" if override else fieldname)
                    raise ConfigError(where, f"store {store.name}: {e.problem}") from None
                kwargs["budget"] = setup.space.budget
                g = Group(key=f"{store.name}|train-{_fmt_axis(train, 'default')}|budget-{_fmt_axis(budget, 'default')}",
                          store=store.name, path=se.path, synthetic=bool(store.synthetic), train=train,
                          budget_spec=budget, setup=kwargs, budget=float(setup.space.budget),
                          space_size=int(setup.space.size()), train_questions=len(setup.split.train),
                          test_questions=len(setup.split.test))
                groups.append(g)
                for j, entry in enumerate(spec.searchers):
                    cls = get_searcher(entry.name)
                    uses_llm = bool(getattr(cls, "uses_llm", False))
                    options = {**spec.searcher_options.get(entry.name, {}), **entry.options}
                    if uses_llm:
                        if spec.llm_base_url:
                            options.setdefault("llm_base_url", spec.llm_base_url)
                        if spec.llm_model:
                            options.setdefault("llm_model", spec.llm_model)
                    if entry.trials is not None:
                        trial_axis = entry.trials
                    elif getattr(cls, "exhaustive", False):
                        trial_axis = (None,)  # the grid runs until done, as `search run` does
                    else:
                        trial_axis = spec.trials
                    if entry.label not in checked:  # bad options fail before any search
                        checked.add(entry.label)
                        try:
                            runner.build_searcher(entry.name, setup.space, 0, options, trial_axis[0])
                        except InputError as e:
                            raise ConfigError(spec.where(f"searchers[{j}]"), f"{entry.label}: {e}") from None
                    for trials in trial_axis:
                        for seed in (entry.seeds if entry.seeds is not None else spec.seeds):
                            cells.append(Cell(group=g, entry=entry, seed=seed, trials=trials, options=options,
                                              uses_llm=uses_llm,
                                              dir=cell_dir(store.name, entry.label, train, budget, trials, seed)))
    out = Path(spec.out) if spec.out else Path("out/sweeps") / spec.name
    return Plan(spec=spec, out=out, groups=groups, cells=cells)


def _fingerprint(plan: Plan) -> dict[str, Any]:
    """What must not change between runs into the same output folder."""
    s = plan.spec
    return {"replicates": s.replicates, "test_replicates": s.test_replicates, "replay_seed": s.replay_seed,
            "models": list(s.models) if s.models else None, "max_samples": s.max_samples, "optimum": s.optimum,
            "optimum_limit": s.optimum_limit, "stores": {g.store: g.path for g in plan.groups}}


def _check_out(plan: Plan) -> None:
    path = plan.out / SWEEP_NAME
    if not path.is_file():
        if plan.out.exists() and any(plan.out.iterdir()):
            raise InputError(str(plan.out), "exists and holds no sweep (no sweep.json): choose another out")
        return
    try:
        old = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise InputError(str(path), f"not valid JSON ({e})") from None
    if old.get("format") != FORMAT:
        raise InputError(str(path), f"not a sweep record (format {old.get('format')!r})")
    a, b = old.get("fingerprint") or {}, _fingerprint(plan)
    for k in b:
        if k == "stores":
            for name, p in b[k].items():
                if name in (a.get(k) or {}) and a[k][name] != p:
                    raise InputError(str(plan.out), f"holds a sweep whose store {name!r} is {a[k][name]}, "
                                     f"this spec's is {p}: use another out")
        elif a.get(k) != b[k]:
            raise InputError(str(plan.out), f"holds a sweep run with {k} = {a.get(k)!r}, this spec has "
                             f"{b[k]!r}: use another out (or the same {k})")


def _spec_json(spec: SweepSpec) -> dict[str, Any]:
    return {
        "name": spec.name, "source": spec.source,
        "stores": [{"path": s.path, "train": s.train, "budgets": s.budgets} for s in spec.stores],
        "searchers": [{"label": e.label, "searcher": e.name, "ablate": e.ablate,
                       "options": {k: v for k, v in e.options.items() if "api_key" not in k},
                       "seeds": e.seeds, "trials": e.trials} for e in spec.searchers],
        "seeds": spec.seeds, "train": spec.train, "budgets": spec.budgets, "trials": spec.trials,
        "replicates": spec.replicates, "test_replicates": spec.test_replicates, "replay_seed": spec.replay_seed,
        "models": spec.models, "max_samples": spec.max_samples, "optimum": spec.optimum,
        "optimum_limit": spec.optimum_limit,
        "searcher_options": {k: {a: b for a, b in v.items() if "api_key" not in a} for k, v in spec.searcher_options.items()},
        "llm": {"base_url": spec.llm_base_url, "model": spec.llm_model, "concurrency": spec.llm_concurrency},
    }


# --------------------------------------------------------------------------------------------
# What a worker runs (module-level: pickled by reference; stores cached per process)

_STORES: dict[str, Any] = {}
_SETUPS: dict[tuple[str, str], Any] = {}


def _setup_from(store, path: str, kwargs: dict[str, Any]):
    key = (path, json.dumps(kwargs, sort_keys=True, default=str))
    if key not in _SETUPS:
        _SETUPS[key] = runner.make_setup(store, **kwargs)
    return _SETUPS[key]


def worker_setup(path: str, kwargs: dict[str, Any]):
    """The search setup of a job, the store opened once per process (and kept)."""
    if path not in _STORES:
        from replay.store import open_store

        _STORES[path] = _PARENT_STORES.get(path) or open_store(path)
    return _setup_from(_STORES[path], path, kwargs)


def optimum_task(job: dict[str, Any]) -> dict[str, Any] | None:
    setup = worker_setup(job["store"], job["setup"])
    return runner.known_optimum(setup, limit=job["limit"])


def cell_task(job: dict[str, Any]) -> dict[str, Any]:
    """One cell: a fresh search, or the continuation of its archive; never raises an Exception
    (a failed cell is reported with its error line, its traceback in error.txt)."""
    out = Path(job["out"])
    if (out / SUMMARY_NAME).is_file():
        return {"status": "done", "ran": False}
    (out / ERROR_NAME).unlink(missing_ok=True)
    resume = (out / ARCHIVE_NAME).is_file()
    try:
        setup = worker_setup(job["store"], job["setup"])
        summary = runner.run_and_report(setup, job["searcher"], job["seed"], job["trials"], job["options"], out,
                                        resume=resume, optimum=job["optimum"], plot=job["plot"],
                                        on_run=lambda run: _write_curve(out, run.trials))
    except Exception as e:  # noqa: BLE001 - one failed cell must not stop the others
        line = " ".join(f"{type(e).__name__}: {e}".split())
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / ERROR_NAME) as tmp:
            tmp.write_text(line + "\n\n" + traceback.format_exc())
        return {"status": "failed", "error": line, "ran": True}
    return {"status": "done", "ran": True, "resumed_from": summary.get("resumed_from", 0)}


def _write_curve(out: Path, trials) -> None:
    write_json_atomic(out / CURVE_NAME, {"score": [t.score for t in trials], "feasible": [bool(t.feasible) for t in trials]})


def _read_curve(d: Path) -> tuple[list, list]:
    """(scores, feasible) of a finished cell: its curve.json, else (a cell finished before the
    curve was written) its archive, and then the curve.json is written for the next time."""
    p = d / CURVE_NAME
    if p.is_file():
        try:
            c = json.loads(p.read_text())
            return c["score"], c["feasible"]
        except (json.JSONDecodeError, KeyError, TypeError):
            pass
    _, records, _ = read_archive(d)
    score = [None if r.get("score") is None else float(r["score"]) for r in records]
    feasible = [bool(r.get("feasible")) for r in records]
    write_json_atomic(p, {"score": score, "feasible": feasible})
    return score, feasible


def _pool_init(slots) -> None:
    runner._init_worker()  # one Numba thread per process
    if slots is not None:
        from .llm.client import set_request_slots

        set_request_slots(slots)


def _ray_call(fn: Callable[[dict], Any], job: dict[str, Any]) -> Any:
    try:
        import numba

        numba.set_num_threads(1)  # one task per CPU: one Numba thread each
    except Exception:  # noqa: BLE001 - a worker with fewer threads already is fine
        pass
    return fn(job)


# --------------------------------------------------------------------------------------------
# Executors: this process, worker processes, Ray. Each yields (index, result) as tasks finish.


class SerialExecutor:
    kind = "serial"
    slots = 1

    def run(self, fn, jobs: Sequence[dict], llm: Sequence[bool]) -> Iterator[tuple[int, Any]]:
        for i, j in enumerate(jobs):
            yield i, fn(j)

    def close(self) -> None:
        pass


class ProcessExecutor:
    """Spawned worker processes (one Numba thread each); LLM requests share a Manager
    semaphore of `llm_concurrency` slots, held around each HTTP request."""

    kind = "processes"

    def __init__(self, workers: int, llm_concurrency: int | None):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        ctx = mp.get_context("spawn")
        self._manager = None
        sem = None
        if llm_concurrency is not None:
            self._manager = ctx.Manager()
            sem = self._manager.BoundedSemaphore(llm_concurrency)
        self.slots = workers
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_pool_init, initargs=(sem,))

    def run(self, fn, jobs, llm):
        from concurrent.futures import as_completed

        futs = {self._pool.submit(fn, j): i for i, j in enumerate(jobs)}
        try:
            for f in as_completed(futs):
                try:
                    yield futs[f], f.result()
                except Exception as e:  # noqa: BLE001 - a worker died: that task failed
                    yield futs[f], {"status": "failed", "error": " ".join(f"{type(e).__name__}: {e}".split()), "ran": True}
        except BaseException:
            for f in futs:
                f.cancel()
            raise

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._manager is not None:
            self._manager.shutdown()


def import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray", "Ray is not installed: pip install 'tts-replay[ray]' (or pip install 'ray>=2.40')") from None
    return ray


class RayExecutor:
    """One Ray task per cell (num_cpus=1), scheduled by Ray; progress from ray.wait. A cell
    that uses an LLM asks for the custom resource `llm_slot`: `--ray local` starts an
    instance with `llm_concurrency` of them; a cluster must declare some (`ray start
    --resources '{"llm_slot": N}'`), and each LLM cell asks for total/N of them."""

    kind = "ray"

    def __init__(self, address: str, workers: int | None, llm_concurrency: int | None, any_llm: bool):
        ray = import_ray()
        self.ray = ray
        self._started = False
        if not ray.is_initialized():
            import logging

            kw: dict[str, Any] = dict(include_dashboard=False, logging_level=logging.WARNING)
            if address == "local":
                if workers is not None:
                    kw["num_cpus"] = workers
                if llm_concurrency is not None:
                    kw["resources"] = {"llm_slot": float(llm_concurrency)}
                ray.init(**kw)
            else:
                try:
                    ray.init(address=address, **kw)
                except (ConnectionError, RuntimeError, ValueError) as e:
                    raise InputError("--ray", f"cannot connect to a Ray cluster at {address!r}: {' '.join(str(e).split())}") from None
            self._started = True
        self.llm_demand = None
        if any_llm and llm_concurrency is not None:
            total = float(ray.cluster_resources().get("llm_slot", 0))
            per_node = max([float(n.get("Resources", {}).get("llm_slot", 0)) for n in ray.nodes() if n.get("Alive")] or [0])
            if total <= 0:
                raise InputError("--llm-concurrency", "the Ray cluster declares no 'llm_slot' resource: start its nodes "
                                 "with ray start --resources '{\"llm_slot\": N}' (or use --ray local)")
            demand = math.floor(total / llm_concurrency * 1e4) / 1e4
            if demand > per_node:
                raise InputError("--llm-concurrency", f"{llm_concurrency} is below what the cluster's llm_slot "
                                 f"resources allow per node ({total:g} in all, at most {per_node:g} on a node)")
            self.llm_demand = demand
        self.slots = int(ray.cluster_resources().get("CPU", 1))
        self._remote = ray.remote(num_cpus=1)(_ray_call)

    def run(self, fn, jobs, llm):
        ray = self.ray
        refs = {}
        for i, (j, uses) in enumerate(zip(jobs, llm)):
            opts = {"resources": {"llm_slot": self.llm_demand}} if uses and self.llm_demand else {}
            refs[self._remote.options(**opts).remote(fn, j)] = i
        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for r in done:
                    try:
                        yield refs[r], ray.get(r)
                    except Exception as e:  # noqa: BLE001 - the worker died: that task failed
                        yield refs[r], {"status": "failed", "error": " ".join(f"{type(e).__name__}: {e}".split()[:40]),
                                        "ran": True}
        except BaseException:
            for r in pending:
                ray.cancel(r, force=True)
            raise

    def close(self) -> None:
        if self._started:
            self.ray.shutdown()


# --------------------------------------------------------------------------------------------
# Running a sweep


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


def run_sweep(spec: SweepSpec, workers: int | None = None, ray: str | None = None, progress: bool = False,
              backend: str | None = None, report: bool = True, run: bool = True,
              announce: Callable[[Any], None] | None = None, log: Callable[[str], None] | None = None) -> SweepResult:
    """Plan, run the unfinished cells (optima first), then write results and the report.
    `backend`: 'serial', 'processes' or 'ray' (default: ray with `ray`, else serial for one
    worker, else processes). `run=False` only rebuilds results and report from the disk."""
    t0 = time.perf_counter()
    plan = plan_sweep(spec, announce=announce)
    _check_out(plan)
    out = plan.out
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / SWEEP_NAME, {"format": FORMAT, "version": VERSION, "fingerprint": _fingerprint(plan),
                                         "spec": _spec_json(spec), "cells": len(plan.cells),
                                         "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    todo = [c for c in plan.cells if not (out / c.dir / SUMMARY_NAME).is_file()]
    optima = _read_optima(out)
    need = [g for g in plan.groups if spec.optimum and g.key not in optima]
    workers = workers or spec.workers
    any_llm = any(c.uses_llm for c in todo)
    ran = failed = 0
    kind = "none"
    if run and (todo or need):
        if backend is None:
            backend = "ray" if ray else ("serial" if min(workers or os.cpu_count() or 1, len(todo) + len(need)) <= 1 else "processes")
        if backend == "serial":
            ex: Any = SerialExecutor()
        elif backend == "processes":
            n = max(1, min(workers or os.cpu_count() or 1, max(len(todo), len(need))))
            ex = ProcessExecutor(n, spec.llm_concurrency if any_llm else None)
        elif backend == "ray":
            ex = RayExecutor(ray or "local", workers, spec.llm_concurrency, any_llm)
        else:
            raise ConfigError("backend", f"unknown executor {backend!r}")
        kind = ex.kind
        if log is not None:
            log(f"sweep {spec.name!r}: {len(plan.cells)} cells, {len(plan.cells) - len(todo)} finished, {len(todo)} to run "
                f"({_describe(ex)}); output {out}")
        try:
            if need:
                jobs = [{"store": g.path, "setup": g.setup, "limit": spec.optimum_limit} for g in need]
                for i, opt in _bar(ex.run(optimum_task, jobs, [False] * len(jobs)), len(jobs), "grid optima", "objective", progress):
                    if isinstance(opt, dict) and opt.get("status") == "failed":
                        raise InputError(need[i].key, f"grid optimum failed: {opt['error']}")
                    optima[need[i].key] = {"optimum": opt}
                _write_optima(out, plan, optima)
            jobs = [_job(plan, c, optima) for c in todo]
            for i, res in _bar(ex.run(cell_task, jobs, [c.uses_llm for c in todo]), len(jobs), "sweep", "cell", progress):
                ran += bool(res.get("ran"))
                failed += res.get("status") == "failed"
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
        from .sweep_report import write_report

        path = write_report(plan, results, curves, optima, out)
    n_failed = int((results["status"] == "failed").sum()) if len(results) else 0
    return SweepResult(plan=plan, results=results, curves=curves, ran=ran, skipped=len(plan.cells) - len(todo),
                       failed=n_failed, wall_s=wall, executor=kind, report=path)


def _describe(ex) -> str:
    if ex.kind == "serial":
        return "in this process"
    if ex.kind == "processes":
        return f"{ex.slots} worker processes"
    return f"Ray, {ex.slots} CPUs"


def _bar(it: Iterator, total: int, desc: str, unit: str, progress: bool) -> Iterator:
    if not progress or total == 0:
        yield from it
        return
    import sys

    from tqdm import tqdm

    with tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, disable=None) as bar:
        for x in it:
            bar.update(1)
            yield x


def _job(plan: Plan, c: Cell, optima: dict[str, Any]) -> dict[str, Any]:
    return {"store": c.group.path, "setup": c.group.setup, "searcher": c.entry.name, "seed": c.seed,
            "trials": c.trials, "options": c.options, "out": str(plan.out / c.dir),
            "optimum": (optima.get(c.group.key) or {}).get("optimum"), "plot": plan.spec.cell_plots}


def _read_optima(out: Path) -> dict[str, Any]:
    p = out / OPTIMA_NAME
    if not p.is_file():
        return {}
    try:
        return dict(json.loads(p.read_text()).get("optima") or {})
    except (json.JSONDecodeError, AttributeError):
        return {}  # recomputed


def _write_optima(out: Path, plan: Plan, optima: dict[str, Any]) -> None:
    by_key = {g.key: g for g in plan.groups}
    for k, v in optima.items():
        g = by_key.get(k)
        if g is not None:
            v.update({"store": g.store, "train": g.train, "budget_spec": g.budget_spec, "budget": g.budget,
                      "space_size": g.space_size, "train_questions": g.train_questions})
    write_json_atomic(out / OPTIMA_NAME, {"optima": optima})


# --------------------------------------------------------------------------------------------
# Results


RESULT_SCHEMA = {
    "store": "str", "store_path": "str", "synthetic": "bool", "searcher": "str", "ablation": "str", "label": "str",
    "seed": "int", "train": "int", "budget_spec": "float", "trials_budget": "int",
    "train_questions": "int", "test_questions": "int", "budget": "float", "space_size": "int",
    "status": "str", "error": "str", "cell": "str",
    "config": "str", "train_score": "float", "train_stderr": "float", "units": "float", "tokens": "float",
    "test_score": "float", "test_stderr": "float", "test_units": "float", "test_within_budget": "bool",
    "trials": "int", "feasible_trials": "int", "stop": "str", "trials_to_best": "int",
    "optimum_config": "str", "optimum_score": "float", "trials_to_optimum": "int", "reached_optimum": "bool",
    "gap_to_optimum": "float", "replay_s": "float", "searcher_s": "float", "wall_s": "float", "llm_s": "float",
    "llm_tokens": "int", "optimum_s": "float", "resumed_from": "int",
}
CURVE_SCHEMA = {
    "store": "str", "label": "str", "searcher": "str", "ablation": "str", "seed": "int", "train": "int",
    "budget_spec": "float", "trials_budget": "int", "trial": "int", "score": "float", "feasible": "bool",
    "best_so_far": "float",
}


def _polars_schema(s: dict[str, str]):
    import polars as pl

    t = {"str": pl.Utf8, "bool": pl.Boolean, "int": pl.Int64, "float": pl.Float64}
    return {k: t[v] for k, v in s.items()}


def collect_results(plan: Plan, optima: dict[str, Any]):
    """One row per cell of the plan (from the cells' summary.json / error.txt on disk) and the
    best-so-far curves of the finished ones (from their archives)."""
    import polars as pl

    rows, curves = [], {k: [] for k in CURVE_SCHEMA}
    for c in plan.cells:
        d = plan.out / c.dir
        g = c.group
        row: dict[str, Any] = {
            "store": g.store, "store_path": g.path, "synthetic": g.synthetic, "searcher": c.entry.name,
            "ablation": c.entry.ablate, "label": c.entry.label, "seed": c.seed, "train": g.train,
            "budget_spec": g.budget_spec, "trials_budget": c.trials, "train_questions": g.train_questions,
            "test_questions": g.test_questions, "budget": g.budget, "space_size": g.space_size, "cell": c.dir,
            "optimum_s": ((optima.get(g.key) or {}).get("optimum") or {}).get("wall_s"),
        }
        summ = d / SUMMARY_NAME
        if summ.is_file():
            s = json.loads(summ.read_text())
            b, t, o = s.get("best") or {}, s.get("test") or {}, s.get("optimum") or {}
            row.update({
                "status": "done", "config": b.get("config"), "train_score": b.get("train_score"),
                "train_stderr": b.get("train_stderr"), "units": b.get("units"), "tokens": b.get("tokens"),
                "test_score": t.get("score"), "test_stderr": t.get("stderr"), "test_units": t.get("units"),
                "test_within_budget": t.get("within_budget"), "trials": s.get("trials"),
                "feasible_trials": s.get("feasible_trials"), "stop": s.get("stop"),
                "trials_to_best": s.get("trials_to_best"), "optimum_config": o.get("config"),
                "optimum_score": o.get("score"), "trials_to_optimum": s.get("trials_to_optimum"),
                "reached_optimum": s.get("reached_optimum"),
                "gap_to_optimum": (o["score"] - b["train_score"]) if o.get("score") is not None and b.get("train_score") is not None else None,
                "replay_s": s.get("replay_s"), "searcher_s": s.get("searcher_s"), "wall_s": s.get("wall_s"),
                "llm_s": s.get("llm_s"), "llm_tokens": s.get("llm_tokens"), "resumed_from": s.get("resumed_from"),
            })
            score, feasible = _read_curve(d)
            n = len(score)
            bsf, best = [], None
            for sc, ok in zip(score, feasible):
                if ok and sc is not None and (best is None or sc > best):
                    best = sc
                bsf.append(best)
            for key, val in (("store", g.store), ("label", c.entry.label), ("searcher", c.entry.name),
                             ("ablation", c.entry.ablate), ("seed", c.seed), ("train", g.train),
                             ("budget_spec", g.budget_spec), ("trials_budget", c.trials)):
                curves[key].extend([val] * n)
            curves["trial"].extend(range(1, n + 1))
            curves["score"].extend(score)
            curves["feasible"].extend(feasible)
            curves["best_so_far"].extend(bsf)
        elif (d / ERROR_NAME).is_file():
            row.update({"status": "failed", "error": (d / ERROR_NAME).read_text().splitlines()[0]})
        else:
            row["status"] = "pending"
        rows.append(row)
    schema = _polars_schema(RESULT_SCHEMA)
    results = pl.from_dicts([{k: _plain(r.get(k)) for k in RESULT_SCHEMA} for r in rows], schema=schema) \
        if rows else pl.DataFrame(schema=schema)
    return results, pl.DataFrame(curves, schema=_polars_schema(CURVE_SCHEMA))


def _plain(x):
    if hasattr(x, "item") and callable(x.item):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
