"""The sweep's spec: a YAML/JSON mapping (or command-line options) checked into a SweepSpec.

Every field but `stores` and `searchers` is optional; a list axis also takes one value or a
comma-separated string; on the command line the same field is an option and wins over the
file. Every error is one line naming the spec file and the field (or the option). The fields
are documented in docs/search.md.
"""

from __future__ import annotations

import math
import os
import reprlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from replay.errors import ConfigError, InputError
from replay.redact import redact_url

from ..searchers import SEARCHERS, get_searcher
from replay.clitools import MAX_COUNT, MAX_SEED

from ..settings import GRID_LIMIT, MAX_SEEDS, parse_seeds

# a bad value is shown short: a YAML alias bomb or a huge list must not become a huge error line
_short = reprlib.Repr()
_short.maxlevel, _short.maxlist, _short.maxdict, _short.maxstring, _short.maxother = 2, 4, 4, 40, 40
_r = _short.repr

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
    "max_fallback": "largest share of draws (0-1) that may fall back to another pool; above it is infeasible",
    "select": "the rule that picks each search's final configuration (mean, lcb, tied-cheapest, tied-costliest)",
    "optimum": "compute the grid optimum of each objective (true/false)",
    "optimum_limit": "largest space whose exhaustive optimum is computed",
    "searcher_options": "options per searcher name, e.g. {bo: {sampler: tpe}}",
    "llm": "{base_url, model, concurrency, max_tokens, timeout, structured} for the LLM searchers",
    "workers": "worker processes (default: all cores)",
    "cell_plots": "write each cell's best_so_far.png too (default false)",
    "space": "config (default: a model and a count per stage) or graph (collaboration graphs of graph stores)",
    "max_nodes": "space graph: the most nodes a graph has (default 4)",
    "latency_limit": "space graph: seconds per question (mean replayed latency); slower graphs are infeasible",
    "objective": "space graph: 'accuracy' (default) or 'accuracy - LAMBDA * latency'",
}
GRAPH_FIELDS = ("max_nodes", "latency_limit", "objective")
STORE_FIELDS = ("path", "train", "budgets")
SEARCHER_FIELDS = ("searcher", "ablate", "label", "options", "seeds", "trials")
LLM_FIELDS = ("base_url", "model", "concurrency", "max_tokens", "timeout", "structured")



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
    max_fallback: float | None = None
    select: str | None = None  # None: search.selection.DEFAULT_RULE
    optimum: bool = True
    optimum_limit: int = GRID_LIMIT
    searcher_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    llm_base_url: str | None = None
    llm_model: str | None = None
    llm_concurrency: int | None = None
    llm_options: dict[str, Any] = field(default_factory=dict)  # llm_max_tokens, llm_timeout_s, llm_structured
    workers: int | None = None
    cell_plots: bool = False
    space: str = "config"  # "config" or "graph"
    max_nodes: int = 4
    latency_limit: float | None = None
    objective: str = "accuracy"
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
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise InputError(str(path), f"not a UTF-8 text file ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise InputError(str(path), f"cannot read it ({e.strerror})") from None
    except RecursionError:
        raise InputError(str(path), "not a sweep spec (nested too deeply)") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f":{mark.line + 1}" if mark is not None else ""
        raise InputError(f"{path}{at}", f"not valid YAML/JSON ({getattr(e, 'problem', None) or e})") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InputError(str(path), f"a sweep spec is a mapping of fields, got {type(raw).__name__}")
    return raw


MAX_CELLS = 10_000  # searches one sweep starts without --yes


def parse_spec(raw: dict[str, Any], source: str = "command line", *, overrides: dict[str, Any] | None = None,
               base: str | os.PathLike | None = None, allow_many: bool = False) -> SweepSpec:
    """Validate a spec mapping (plus command-line `overrides`, which win) into a SweepSpec.
    Every error is one line naming the spec file and the field (or the option).

    Parameters:
        raw: the spec's fields (`read_spec_file`, or {} for a sweep given by options alone).
        source: the spec file (named in errors), or "command line".
        overrides: fields given as command-line options (None values are dropped).
        base: the folder relative store paths are taken from (default: the current one).
        allow_many: allow more than MAX_SEEDS seeds and MAX_CELLS cells (`--yes`).
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    raw = {**raw, **overrides}
    for k in raw:
        if k not in SPEC_FIELDS:
            where = f"--{k.replace('_', '-')}" if k in overrides else f"{source}: {k}"
            raise ConfigError(where, f"unknown field (known: {', '.join(SPEC_FIELDS)})")
    name = raw.get("name") or (Path(source).stem if source != "command line" else "sweep")
    spec = SweepSpec(source=source, name=str(name), stores=[], searchers=[], from_cli=frozenset(overrides))
    w = spec.where
    if raw.get("out") is None:  # the name is the output folder's name: one safe path component
        from replay.store import check_store_name

        try:
            check_store_name(spec.name, w("name"))
        except ConfigError as e:
            raise ConfigError(e.where, e.problem.replace("a store's name", "a sweep's name")) from None
    seed_limit = None if allow_many else MAX_SEEDS

    spec.replicates = _int(raw.get("replicates", 16), w("replicates"), lo=1)
    spec.test_replicates = _int(raw.get("test_replicates", 256), w("test_replicates"), lo=1)
    spec.replay_seed = _int(raw.get("replay_seed", 0), w("replay_seed"), lo=0, hi=MAX_SEED)
    if raw.get("max_samples") is not None:
        spec.max_samples = _int(raw["max_samples"], w("max_samples"), lo=1)
    if raw.get("models") is not None:
        spec.models = tuple(_strings(raw["models"], w("models")))
    if raw.get("max_fallback") is not None:
        v = raw["max_fallback"]
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            raise ConfigError(w("max_fallback"), f"expected a share between 0 and 1, got {v!r}")
        try:
            spec.max_fallback = float(v)
        except ValueError:
            raise ConfigError(w("max_fallback"), f"expected a share between 0 and 1, got {v!r}") from None
        if not 0.0 <= spec.max_fallback <= 1.0:
            raise ConfigError(w("max_fallback"), f"expected a share between 0 and 1, got {v!r}")
    if raw.get("select") is not None:
        from ..selection import RULES

        if raw["select"] not in RULES:
            raise ConfigError(w("select"), f"unknown selection rule {raw['select']!r} (rules: {', '.join(RULES)})")
        spec.select = str(raw["select"])
    spec.optimum = _bool(raw.get("optimum", True), w("optimum"))
    spec.optimum_limit = _int(raw.get("optimum_limit", GRID_LIMIT), w("optimum_limit"), lo=1, hi=2 ** 62)
    spec.cell_plots = _bool(raw.get("cell_plots", False), w("cell_plots"))
    if raw.get("workers") is not None:
        spec.workers = _int(raw["workers"], w("workers"), lo=1)
    if raw.get("out") is not None:
        if not isinstance(raw["out"], str) or not raw["out"].strip():
            raise ConfigError(w("out"), f"expected a folder path, got {_r(raw['out'])}")
        spec.out = raw["out"]

    space = raw.get("space", "config")
    if space not in ("config", "graph"):
        raise ConfigError(w("space"), f"expected config or graph, got {_r(space)}")
    spec.space = space
    if space == "graph":
        if raw.get("max_fallback") is not None:
            raise ConfigError(w("max_fallback"), "does not apply to space graph")
        spec.max_nodes = _int(raw.get("max_nodes", 4), w("max_nodes"), lo=1, hi=32)
        if raw.get("latency_limit") is not None:
            v = raw["latency_limit"]
            try:
                spec.latency_limit = float(v) if not isinstance(v, bool) else math.nan
            except (TypeError, ValueError):
                spec.latency_limit = math.nan
            if not (math.isfinite(spec.latency_limit) and spec.latency_limit > 0):
                raise ConfigError(w("latency_limit"), f"expected a positive number of seconds, got {_r(v)}")
        if raw.get("objective") is not None:
            from ..settings import GraphObjective

            try:
                GraphObjective.parse(str(raw["objective"]))
            except ConfigError as e:
                raise ConfigError(w("objective"), e.problem) from None
            spec.objective = str(raw["objective"])
    else:
        given = [k for k in GRAPH_FIELDS if raw.get(k) is not None]
        if given:
            raise ConfigError(w(given[0]), "applies to space graph only (add space: graph)")

    spec.seeds = tuple(_seeds(raw.get("seeds", [0]), w("seeds"), seed_limit))
    spec.train = tuple(_axis(raw.get("train", [None]), w("train"), _train_value))
    spec.budgets = tuple(_axis(raw.get("budgets", [None]), w("budgets"), _budget_value))
    spec.trials = tuple(_axis(raw.get("trials", [50]), w("trials"), _trials_value))

    llm = raw.get("llm") or {}
    if not isinstance(llm, dict):
        raise ConfigError(w("llm"), f"expected a mapping with {', '.join(LLM_FIELDS)}, got {_r(llm)}")
    for k in llm:
        if k not in LLM_FIELDS:
            raise ConfigError(w(f"llm.{k}"), f"unknown field (known: {', '.join(LLM_FIELDS)})")
    for k in ("base_url", "model"):
        if llm.get(k) is not None and (not isinstance(llm[k], str) or not llm[k].strip()):
            raise ConfigError(w(f"llm.{k}"), f"expected a string, got {_r(llm[k])}")
    spec.llm_base_url, spec.llm_model = llm.get("base_url"), llm.get("model")
    if llm.get("concurrency") is not None:
        spec.llm_concurrency = _int(llm["concurrency"], w("llm.concurrency"), lo=1)
    spec.llm_options = llm_client_options(llm, w)

    so = raw.get("searcher_options") or {}
    if not isinstance(so, dict) or any(not isinstance(v, dict) for v in so.values()):
        raise ConfigError(w("searcher_options"), "expected a mapping of searcher name -> mapping of options")
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
            raise ConfigError(w(at), f"expected a store folder or a mapping with {', '.join(STORE_FIELDS)}, got {_r(s)}")
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
        spec.searchers.append(_searcher_entry(s, w(f"searchers[{i}]"), w, seed_limit))
    labels = [e.label for e in spec.searchers]
    dup = next((x for x in labels if labels.count(x) > 1), None)
    if dup is not None:
        raise ConfigError(w("searchers"), f"{_r(dup)} is listed twice (give one of them another label)")
    if not raw.get("name") and source == "command line":
        spec.name = options_name(spec)
    cells = count_cells(spec)
    if cells > MAX_CELLS and not allow_many:
        raise ConfigError(w("seeds") if len(spec.seeds) > 1 else w("searchers"),
                          f"the sweep has {cells:,} cells, each a search: at most {MAX_CELLS:,} without --yes")
    return spec


def options_name(spec: SweepSpec) -> str:
    """The name (and default folder) of a sweep given by options alone: its stores and searchers,
    then a short hash of everything that decides its cells and their results. The same options
    give the same folder (a rerun resumes it); other options give another folder, so two sweeps'
    cells, figures and reports never mix (`search sweep --stores a,b --searchers grid,random`
    -> out/sweeps/a+b_grid+random_1a2b3c4d)."""
    import hashlib
    import json

    what = spec_json(spec)
    for k in ("name", "source"):
        what.pop(k)
    # how the LLM is reached and how many requests fly at once do not change the cells
    what["llm"] = {k: v for k, v in what["llm"].items() if k not in ("base_url", "concurrency")}
    digest = hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:8]

    def part(names: list[str], what_: str) -> str:
        safe = ["".join(c if c.isalnum() or c in "-_." else "-" for c in n) for n in names]
        text = "+".join(safe)
        return text if len(safe) <= 4 and len(text) <= 60 else f"{len(safe)}-{what_}"

    name = f"{part([Path(e.path).name for e in spec.stores], 'stores')}_{part([e.label for e in spec.searchers], 'searchers')}"
    return f"{name.lstrip('.-') or 'sweep'}_{digest}"


def count_cells(spec: SweepSpec) -> int:
    """How many searches the spec describes (before any store is opened)."""
    per_store = 0
    for e in spec.searchers:
        trials = e.trials if e.trials is not None else ((None,) if get_searcher(e.name).exhaustive else spec.trials)
        per_store += len(trials) * len(e.seeds if e.seeds is not None else spec.seeds)
    return sum(len(se.train if se.train is not None else spec.train)
               * len(se.budgets if se.budgets is not None else spec.budgets) * per_store for se in spec.stores)


def _searcher_entry(s: Any, where: str, w: Callable[[str], str], seed_limit: int | None = MAX_SEEDS) -> SearcherEntry:
    if isinstance(s, str):
        name, _, ablate = s.strip().partition(":")
        s = {"searcher": name, "ablate": ablate or None}
    if not isinstance(s, dict):
        raise ConfigError(where, f"expected 'name', 'name:ablation' or a mapping with {', '.join(SEARCHER_FIELDS)}, got {_r(s)}")
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
        raise ConfigError(f"{where}.ablate", f"expected an ablation name, got {_r(ablate)}")
    ablate = ablate.strip() if ablate else None
    options = s.get("options") or {}
    if not isinstance(options, dict):
        raise ConfigError(f"{where}.options", f"expected a mapping of searcher options, got {_r(options)}")
    if ablate is not None:
        if "ablate" in options:
            raise ConfigError(f"{where}.options", "gives ablate twice")
        options = {**options, "ablate": ablate}
    label = s.get("label") or (f"{name}:{ablate}" if ablate else name)
    if not isinstance(label, str) or not label.strip() or "/" in label or "\\" in label or label.strip().startswith("."):
        raise ConfigError(f"{where}.label", f"expected a short name without '/' (a folder name), got {_r(label)}")
    seeds = None if s.get("seeds") is None else tuple(_seeds(s["seeds"], f"{where}.seeds", seed_limit))
    trials = None if "trials" not in s else tuple(_axis(s["trials"], f"{where}.trials", _trials_value))
    return SearcherEntry(label=label.strip(), name=name, ablate=ablate, options=dict(options), seeds=seeds, trials=trials)


def llm_client_options(llm: dict[str, Any], w: Callable[[str], str]) -> dict[str, Any]:
    """The `llm` section's bounds on every call, as searcher options (checked here, so that a bad
    value is one line naming its field before any search): max_tokens (an integer >= 0; 0: none
    sent), timeout (seconds > 0), structured (search/llm/client.py: STRUCTURED_MODES)."""
    from ..llm.client import STRUCTURED_MODES

    out: dict[str, Any] = {}
    if llm.get("max_tokens") is not None:
        out["llm_max_tokens"] = _int(llm["max_tokens"], w("llm.max_tokens"), lo=0)
    if llm.get("timeout") is not None:
        v = llm["timeout"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ConfigError(w("llm.timeout"), f"expected a number of seconds > 0, got {_r(v)}")
        out["llm_timeout_s"] = float(v)
    if llm.get("structured") is not None:
        v = llm["structured"]
        if not isinstance(v, str) or v.strip().lower() not in STRUCTURED_MODES:
            raise ConfigError(w("llm.structured"), f"expected one of {', '.join(STRUCTURED_MODES)}, got {_r(v)}")
        out["llm_structured"] = v.strip().lower()
    return out


def _int(v: Any, where: str, lo: int | None = None, hi: int = MAX_COUNT) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise ConfigError(where, f"expected an integer, got {str(v)[:40]!r}")
    try:
        x = int(v)
    except ValueError:
        raise ConfigError(where, f"expected an integer, got {str(v)[:40]!r}") from None
    if lo is not None and x < lo:
        raise ConfigError(where, f"must be at least {lo}, got {x}")
    if x > hi:
        raise ConfigError(where, f"must be at most {hi:,}, got {str(x)[:40]}")
    return x


def _bool(v: Any, where: str) -> bool:
    if isinstance(v, bool):
        return v
    raise ConfigError(where, f"expected true or false, got {_r(v)}")


def _strings(v: Any, where: str) -> list[str]:
    items = v.split(",") if isinstance(v, str) else v
    if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
        raise ConfigError(where, f"expected a list of names, got {_r(v)}")
    out = [x.strip() for x in items if x.strip()]
    if not out:
        raise ConfigError(where, "empty list")
    return out


def _seeds(v: Any, where: str, limit: int | None = MAX_SEEDS) -> list[int]:
    if isinstance(v, bool):
        raise ConfigError(where, f"expected seeds (a list or '0-9'), got {_r(v)}")
    if isinstance(v, int):
        v = [v]
    if isinstance(v, str):
        return parse_seeds(v, limit=limit, where=where)
    if isinstance(v, list) and v and all(isinstance(x, int) and not isinstance(x, bool) for x in v):
        if any(not 0 <= x <= MAX_SEED for x in v):
            raise ConfigError(where, "seeds are integers from 0 to 2^63-1")
        if limit is not None and len(v) > limit:
            raise ConfigError(where, f"{len(v):,} seeds, each a search: at most {limit:,} without --yes")
        if len(set(v)) != len(v):
            raise ConfigError(where, f"repeats a seed: {v[:20]}")
        return list(v)
    raise ConfigError(where, f"expected a list of integer seeds or a range like '0-9', got {_r(v)}")


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
        raise ConfigError(where, f"repeats a value: {_r(v)}")
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
        raise ConfigError(where, f"expected a number of units or null, got {_r(x)}")
    try:
        b = float(x)
    except (TypeError, ValueError):
        raise ConfigError(where, f"expected a number of units or null, got {_r(x)}") from None
    if not (math.isfinite(b) and b > 0):
        raise ConfigError(where, f"must be a positive number of units, got {_r(x)}")
    return b


def _shown_options(options: dict[str, Any]) -> dict[str, Any]:
    """Options as written: no API key, a base URL's credentials masked."""
    return {k: (redact_url(v) if k.endswith("base_url") and isinstance(v, str) else v)
            for k, v in options.items() if "api_key" not in k}


def spec_json(spec: SweepSpec) -> dict[str, Any]:
    return {
        "name": spec.name, "source": spec.source,
        "stores": [{"path": s.path, "train": s.train, "budgets": s.budgets} for s in spec.stores],
        "searchers": [{"label": e.label, "searcher": e.name, "ablate": e.ablate,
                       "options": _shown_options(e.options),
                       "seeds": e.seeds, "trials": e.trials} for e in spec.searchers],
        "seeds": spec.seeds, "train": spec.train, "budgets": spec.budgets, "trials": spec.trials,
        "replicates": spec.replicates, "test_replicates": spec.test_replicates, "replay_seed": spec.replay_seed,
        "models": spec.models, "max_samples": spec.max_samples, "max_fallback": spec.max_fallback,
        "select": spec.select, "optimum": spec.optimum, "space": spec.space,
        "graph": {"max_nodes": spec.max_nodes, "latency_limit": spec.latency_limit, "objective": spec.objective}
        if spec.space == "graph" else None,
        "optimum_limit": spec.optimum_limit,
        "searcher_options": {k: _shown_options(v) for k, v in spec.searcher_options.items()},
        "llm": {"base_url": redact_url(spec.llm_base_url), "model": spec.llm_model, "concurrency": spec.llm_concurrency,
                **spec.llm_options},
    }
