"""The compute-optimal frontier of a store: the best configuration at each budget, exactly.

    fr = chain_frontier(replay.open("traces/aime24"))            # log-spaced budgets
    fr = chain_frontier(store, budgets=[10, 20, 40], replicates=32)
    fr.table                                                     # polars, one row per budget and curve

How. Every configuration of the space is scored once on the training questions and once on the
test questions by the exhaustive scan that `search --searcher grid` and the grid's optimum use
(`replay.engine.scan_space`: memo tables, then a compiled scan of the product; the same numbers
as `evaluate_batch`, common random numbers). Its expected cost per question (the budget rule,
replay/expected.py) is the same on both question sets, so one cost per configuration decides
feasibility at every budget. Then, per budget B, among the configurations whose expected cost
is within B (up to rounding, `replay.engine.within_budget`):

- the **train pick**: the configuration a search's selection rule picks among them on the
  training questions (`select`, search/selection.py, the rule `search run --select` takes;
  default `DEFAULT_RULE`, `mean-costliest`: the highest training mean, ties to the costlier),
  scored on the test questions: what choosing on the training questions gets you;
- the **test optimum**: the highest test mean: the frontier itself on these questions (an
  optimistic curve: the maximum of many noisy means; the gap to the train pick is the price of
  choosing on few questions).

The test optimum is non-decreasing in B by construction (a larger budget only adds
configurations); the train pick's test score need not be. The rules that weigh the noise (`lcb`,
`tied-*`) need each configuration's spread over the training questions: for chains the compiled
per-question sums of `replay.scan_stats` (one more scan, and one per distinct best-mean
reference for the `tied-*` rules), for graphs the per-question scores the replay returns. Each row carries the 95% interval
over questions (`replay.stats`, as every score of the project) and the replicate error.

Graph stores (`graph_frontier`): a collaboration-graph space has no product structure for the
scan and is usually far too large (billions of graphs at 4 nodes), so the frontier enumerates a
bounded space exactly (every graph of `GraphSpace.all_specs` for small `max_nodes` and
`max_samples`, in index form: two orders of the same parallel nodes are both replayed), replays each once on train and once on test
(`replay.graph.engine.evaluate_graphs`), and refuses, naming the size, a space larger than
`max_graphs`. The curve is then exact for that bounded space, not for larger graphs; its `info`
and the printed header say which space it is.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import polars as pl

from replay.engine import budget_unit, scan_space
from replay.errors import ConfigError, InputError

from ..selection import DEFAULT_RULE, RULE_TEXT, check_rule, pick_indices
from ..setup import Split, split_questions

DEFAULT_POINTS = 12
MAX_POINTS = 1000
DEFAULT_REPLICATES = 16  # as a search's training replicates (search/settings.py)
GRAPH_MAX_NODES = 2
GRAPH_MAX_SAMPLES = 8
GRAPH_MAX_GRAPHS = 20_000
GRAPH_BATCH = 1024

TRAIN_PICK = "train pick"
TEST_OPTIMUM = "test optimum"


@dataclass(frozen=True)
class Frontier:
    """A frontier: `table` (one row per budget and curve, module docstring; columns in
    `COLUMNS` plus per-stage or graph columns), `points` (the configuration of each row, or
    None where nothing is within the budget) and `info` (what was scanned, how, and how long)."""

    table: pl.DataFrame
    points: tuple = field(repr=False)
    info: dict[str, Any] = field(default_factory=dict)

    def curve(self, name: str) -> pl.DataFrame:
        return self.table.filter(pl.col("curve") == name).sort("budget")


COLUMNS = ("budget", "budget_flops", "curve", "split", "select", "scored_on", "config", "score", "stderr", "ci_lo",
           "ci_hi", "train_score", "train_ci_lo", "train_ci_hi", "expected_units", "measured_units", "n_feasible",
           "regret")


# --------------------------------------------------------------------------------------------
# Budgets


def parse_budgets(text: str, *, unit: str = "units", unit_flops: float = 1.0) -> list[float]:
    """'10,20,40' or 'LO:HI:N' (N log-spaced values from LO to HI), in `unit` ('units' or
    'flops'), returned in budget units, ascending and distinct. One line naming `--budgets` on
    anything else (not a number, <= 0, infinite, an empty list, more than MAX_POINTS)."""
    where = "--budgets"
    raw = str(text).strip()
    try:
        if ":" in raw:
            parts = raw.split(":")
            if len(parts) != 3:
                raise ValueError
            lo, hi, n = float(parts[0]), float(parts[1]), int(parts[2])
            _check_values(where, raw, [lo, hi])
            if not 1 <= n <= MAX_POINTS:
                raise InputError(where, f"{raw!r}: the count must be from 1 to {MAX_POINTS}")
            if hi < lo:
                raise InputError(where, f"{raw!r}: HI is below LO")
            vals = [lo] if n == 1 else list(np.geomspace(lo, hi, n))
        else:
            vals = [float(x) for x in raw.split(",") if x.strip()]
    except ValueError:
        raise InputError(where, f"{raw[:60]!r} is not a comma list of numbers or LO:HI:COUNT (log-spaced), "
                                "e.g. 10,20,40 or 5:500:12") from None
    if not vals:
        raise InputError(where, "no budget given")
    if len(vals) > MAX_POINTS:
        raise InputError(where, f"{len(vals)} budgets: at most {MAX_POINTS}")
    _check_values(where, raw, vals)
    scale = 1.0 / unit_flops if unit == "flops" else 1.0
    return sorted({float(v) * scale for v in vals})


def _check_values(where: str, raw: str, vals: Sequence[float]) -> None:
    bad = [v for v in vals if not (math.isfinite(v) and v > 0)]
    if bad:
        raise InputError(where, f"{raw[:60]!r}: budget {bad[0]:g} is not a positive, finite number")


def default_budgets(cost: np.ndarray, points: int = DEFAULT_POINTS) -> list[float]:
    """`points` log-spaced budgets from the cheapest configuration's expected cost to the
    costliest's: the whole range over which the frontier can move."""
    if not 1 <= points <= MAX_POINTS:
        raise InputError("--points", f"must be from 1 to {MAX_POINTS}, got {points}")
    lo, hi = float(np.min(cost)), float(np.max(cost))
    if points == 1 or hi <= lo * (1 + 1e-12):
        return [hi]
    return [float(x) for x in np.geomspace(lo, hi, points)]


# --------------------------------------------------------------------------------------------
# The pick per budget


def best_per_budget(cost: np.ndarray, score: np.ndarray, budgets: Sequence[float]) -> np.ndarray:
    """For each budget, the index of the highest score among the entries whose cost is within it
    (`within_budget`), ties to the lower cost, then to the lower index; -1 where none is.

    One pass over the entries in cost order (the running best, kept where a later entry is
    strictly better), so a larger budget's pick is never worse: the frontier is monotone by
    construction, not by a check."""
    cost = np.asarray(cost, dtype=np.float64).ravel()
    score = np.asarray(score, dtype=np.float64).ravel()
    order = np.lexsort((np.arange(len(cost)), cost))
    s = np.where(np.isnan(score[order]), -np.inf, score[order])
    run = np.maximum.accumulate(s)
    prev = np.concatenate(([-np.inf], run[:-1]))
    new = s > prev
    new[0] = True
    record = np.maximum.accumulate(np.where(new, np.arange(len(s)), 0))  # position of the running best
    sorted_cost = cost[order]
    out = np.full(len(budgets), -1, dtype=np.int64)
    for j, b in enumerate(budgets):
        n = int(np.searchsorted(sorted_cost, b * (1 + 1e-9), side="right"))
        if n > 0:
            out[j] = order[record[n - 1]]
    return out


class QuestionStats:
    """What the noise-weighing selection rules need about every entry's per-question training
    scores: `sd()` (the standard deviation over the `n` questions) and `diff(ref)` (the mean and
    standard deviation of each entry's per-question differences from entry `ref`). Built from
    a per-question matrix (graphs) or from callables (chains: compiled sums, nothing kept)."""

    def __init__(self, n: int, *, matrix: np.ndarray | None = None,
                 sums: Callable[[int], Any] | None = None):
        self.n = int(n)
        self._x = matrix
        self._sums = sums
        self._cache: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def _get(self, ref: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if ref not in self._cache:
            if self._x is not None:
                x = self._x
                n = x.shape[1]
                d = x - x[ref]
                sd = x.std(axis=1, ddof=1) if n > 1 else np.zeros(len(x))
                sd_d = d.std(axis=1, ddof=1) if n > 1 else np.zeros(len(x))
                self._cache[ref] = (sd, d.mean(axis=1), sd_d)
            else:
                qs = self._sums(ref)
                self._cache[ref] = (qs.sd.ravel(), qs.mean_diff.ravel(), qs.sd_diff.ravel())
        return self._cache[ref]

    def sd(self, ref: int) -> np.ndarray:
        """The spread over questions (independent of `ref`; a cached reference is reused)."""
        return self._get(next(iter(self._cache), ref))[0]

    def diff(self, ref: int) -> tuple[np.ndarray, np.ndarray]:
        _, m, s = self._get(ref)
        return m, s


def train_picks(cost: np.ndarray, mean: np.ndarray, budgets: Sequence[float], *, rule: str = DEFAULT_RULE,
                stats: QuestionStats | None = None) -> np.ndarray:
    """For each budget, the index of the entry selection rule `rule` picks (search/selection.py
    `pick_indices`, the decision `select` makes among a search's trials) among the entries
    whose cost is within the budget, the entry's index standing for the trial's order; -1
    where none is. `stats` (per-question spreads) is needed by every rule but `mean` and
    `mean-costliest`."""
    check_rule(rule)
    cost = np.asarray(cost, dtype=np.float64).ravel()
    mean = np.asarray(mean, dtype=np.float64).ravel()
    out = np.full(len(budgets), -1, dtype=np.int64)
    simple = rule in ("mean", "mean-costliest")
    if not simple and stats is None:
        raise ValueError(f"rule {rule!r} needs the per-question statistics (stats)")
    for j, b in enumerate(budgets):
        feas = np.flatnonzero((cost <= b * (1 + 1e-9)) & np.isfinite(mean))
        if not len(feas):
            continue
        m, c, order = mean[feas], cost[feas], feas.astype(np.float64)
        if simple:
            out[j] = feas[pick_indices(m, c, order, rules=(rule,))[rule]]
            continue
        best = int(feas[pick_indices(m, c, order, rules=("mean",))["mean"]])
        kw: dict[str, Any] = {"sd": stats.sd(best)[feas], "n": stats.n}
        if rule in ("tied-cheapest", "tied-costliest"):
            md, sdd = stats.diff(best)
            kw.update(mean_d=md[feas], sd_d=sdd[feas])
        out[j] = feas[pick_indices(m, c, order, rules=(rule,), **kw)[rule]]
    return out


def frontier_split(store, train: int | None = None, *, seed: int = 0) -> Split:
    """The training and test questions: exactly `search --train`'s (`split_questions`; a store
    with no split and under 100 questions holds out half of them there)."""
    return split_questions(store, train, seed=seed)


# --------------------------------------------------------------------------------------------
# Chains


def chain_frontier(store, *, budgets: Sequence[float] | None = None, points: int = DEFAULT_POINTS,
                   models: Sequence[str] | None = None, max_samples: int | None = None,
                   replicates: int = DEFAULT_REPLICATES, seed: int = 0, train: int | None = None,
                   split_seed: int = 0, select: str = DEFAULT_RULE) -> Frontier:
    """The frontier of a chain store over its whole configuration space (module docstring).

    Args:
        store: a chain store.
        budgets: budgets in units per question (default: `points` log-spaced over the space's
            expected costs).
        points: how many default budgets.
        models, max_samples: narrow the space (as `search --models/--max-samples`).
        replicates: random draws per question (both question sets).
        seed: the seed of every draw (common random numbers).
        train, split_seed: the training questions, as `search --train/--split-seed`
            (default: the store's split; search/setup.py `split_questions`; a store with no
            split and at most 50 questions: half of them, `frontier_split`).
        select: the selection rule of the train pick (search/selection.py RULES).
    """
    from replay.engine import evaluate_batch
    from replay.scan_stats import question_sums

    from ..spaces.config import ConfigSpace

    check_rule(select)
    space = ConfigSpace.from_store(store, models=models, max_samples=max_samples)
    split = frontier_split(store, train, seed=split_seed)
    tr, te = _ids(store, split.train), _ids(store, split.test)
    choices = space.choices()
    t0, c0 = time.perf_counter(), time.process_time()
    scan_tr = scan_space(store, choices, questions=tr, replicates=replicates, seed=seed)
    scan_te = scan_space(store, choices, questions=te, replicates=replicates, seed=seed)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if scan_tr.choices != scan_te.choices:  # both scans order the choices the same way: a guard
        raise RuntimeError("the train and test scans disagree on the configurations' order")
    cost = scan_tr.expected.ravel()
    budgets = _budgets(budgets, cost, points)
    K = scan_tr.score.shape[1]

    def point(j: int):
        return scan_tr.config(*divmod(int(j), K))

    def sums(ref: int):  # the per-question sums against configuration `ref`, on the training questions
        pq = evaluate_batch(store, [point(ref)], questions=tr, replicates=replicates, seed=seed)[0].per_question
        return question_sums(store, scan_tr, questions=tr, replicates=replicates, seed=seed, reference=pq)

    arrays = {
        "train_score": scan_tr.score.ravel(), "train_ci_lo": scan_tr.ci_lo.ravel(), "train_ci_hi": scan_tr.ci_hi.ravel(),
        "score": scan_te.score.ravel(), "stderr": scan_te.stderr.ravel(), "ci_lo": scan_te.ci_lo.ravel(),
        "ci_hi": scan_te.ci_hi.ravel(), "measured_units": scan_te.units.ravel(),
    }
    info = {"kind": "chain", "store": store.name, "synthetic": bool(store.synthetic),
            "search": "exhaustive scan of every configuration (replay.engine.scan_space, as search --searcher grid)",
            "space": space.headline().split(";")[0], "scanned": int(cost.size),
            "stages": list(space.stages), "scan_wall_s": wall, "scan_cpu_s": cpu}
    t1, c1 = time.perf_counter(), time.process_time()
    picks = train_picks(cost, arrays["train_score"], budgets, rule=select, stats=QuestionStats(len(tr), sums=sums))
    info.update(select_wall_s=time.perf_counter() - t1, select_cpu_s=time.process_time() - c1)
    return _assemble(store, split, cost, arrays, budgets, point, info, replicates=replicates, seed=seed,
                     stage_columns=lambda cfg: _stage_cells(space.stages, cfg), select=select, train_pick=picks)


def _stage_cells(stages, cfg) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, st in enumerate(stages):
        ch = cfg.stages[i] if cfg is not None else None
        out[f"s{i}_stage"] = st
        out[f"s{i}_model"] = ch.model if ch else None
        out[f"s{i}_samples"] = ch.samples if ch else None
    return out


# --------------------------------------------------------------------------------------------
# Graphs


def graph_frontier(store, *, budgets: Sequence[float] | None = None, points: int = DEFAULT_POINTS,
                   models: Sequence[str] | None = None, max_samples: int | None = GRAPH_MAX_SAMPLES,
                   max_nodes: int = GRAPH_MAX_NODES, max_graphs: int = GRAPH_MAX_GRAPHS,
                   replicates: int = DEFAULT_REPLICATES, seed: int = 0, train: int | None = None,
                   split_seed: int = 0, select: str = DEFAULT_RULE,
                   progress: Callable[[int], None] | None = None) -> Frontier:
    """The frontier of a graph store over a bounded graph space, exactly (module docstring).

    Args:
        store: a graph store.
        max_nodes, max_samples, models: the bounded space (`search --space graph` options).
        max_graphs: the most graphs (index form, `GraphSpace.size`) replayed; a larger space
            is refused in one line naming its size.
        progress: called with the number of graphs replayed.
        Others: as `chain_frontier`.
    """
    from replay.graph.engine import evaluate_graphs

    from ..spaces.graph import GraphSpace

    check_rule(select)
    # the budget only bounds which graphs are replayed: the largest asked, else none
    top = max(budgets) if budgets else 1e300
    space = GraphSpace.from_store(store, max_nodes=max_nodes, models=models, max_samples=max_samples, budget=top)
    size = space.size()
    if size > max_graphs:
        raise ConfigError("--max-graphs", f"the graph space of {store.name!r} (up to {max_nodes} nodes, "
                          f"{max_samples or 'all'} samples a node) has {size:,} graphs, more than {max_graphs:,}: "
                          "an exact frontier replays every one; narrow it (--max-nodes, --max-samples, --models) "
                          "or raise --max-graphs")
    split = frontier_split(store, train, seed=split_seed)
    tr, te = _ids(store, split.train), _ids(store, split.test)
    t0, c0 = time.perf_counter(), time.process_time()
    graphs: dict[str, Any] = {}
    for spec in space.all_specs():
        try:
            g = space.make(spec)
        except ConfigError:
            continue
        key = space.key(g)
        if key not in graphs and space.estimate_cost(g) <= top * (1 + 1e-9):
            graphs[key] = space.canonical(g)
    gl = list(graphs.values())
    if not gl:
        raise ConfigError("--budgets", f"no graph of the space is within {top:.4g} units")
    cost = np.array([space.estimate_cost(g) for g in gl])
    cols: dict[str, list] = {k: [] for k in ("train_score", "train_ci_lo", "train_ci_hi", "score", "stderr", "ci_lo",
                                             "ci_hi", "measured_units")}
    per_q: list[np.ndarray] = []  # training score per question of each graph: the selection rules' spread
    for i in range(0, len(gl), GRAPH_BATCH):
        part = gl[i:i + GRAPH_BATCH]
        r_tr = evaluate_graphs(store, part, questions=tr, replicates=replicates, seed=seed)
        r_te = evaluate_graphs(store, part, questions=te, replicates=replicates, seed=seed)
        for a, b in zip(r_tr, r_te):
            cols["train_score"].append(a.score)
            per_q.append(np.full(len(tr), np.nan) if a.per_question is None
                         else np.asarray(a.per_question, dtype=np.float64))
            cols["train_ci_lo"].append(a.ci_lo)
            cols["train_ci_hi"].append(a.ci_hi)
            cols["score"].append(b.score)
            cols["stderr"].append(b.stderr)
            cols["ci_lo"].append(b.ci_lo)
            cols["ci_hi"].append(b.ci_hi)
            cols["measured_units"].append(b.units)
        if progress is not None:
            progress(len(part))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in cols.items()}
    budgets = _budgets(budgets, cost, points)
    info = {"kind": "graph", "store": store.name, "synthetic": bool(store.synthetic),
            "search": (f"every graph of up to {max_nodes} nodes and {max_samples or 'any'} samples a node, replayed "
                       "(exact for this bounded space only)"),
            "space": f"graphs of up to {max_nodes} nodes, {max_samples or 'all'} samples a node "
                     f"({size:,} in index form, {len(gl):,} within the largest budget)",
            "scanned": len(gl), "max_nodes": max_nodes, "max_samples": max_samples, "roles": list(space.roles),
            "scan_wall_s": wall, "scan_cpu_s": cpu}
    t1, c1 = time.perf_counter(), time.process_time()
    picks = train_picks(cost, arrays["train_score"], budgets, rule=select,
                        stats=QuestionStats(len(tr), matrix=np.vstack(per_q)))
    info.update(select_wall_s=time.perf_counter() - t1, select_cpu_s=time.process_time() - c1)
    return _assemble(store, split, cost, arrays, budgets, lambda j: gl[int(j)], info, replicates=replicates,
                     seed=seed, stage_columns=_graph_cells, select=select, train_pick=picks)


def _graph_cells(g) -> dict[str, Any]:
    if g is None:
        return {"nodes": None, "width": None, "depth": None}
    return {"nodes": len(g.nodes), "width": g.width(), "depth": g.depth()}


# --------------------------------------------------------------------------------------------
# Shared


def _ids(store, idx: np.ndarray) -> list[str]:
    return [store.question_ids[int(i)] for i in idx]


def _budgets(budgets, cost, points) -> list[float]:
    if budgets is None:
        return default_budgets(cost, points)
    return sorted({float(b) for b in budgets})


def _assemble(store, split, cost, arrays, budgets, point, info, *, replicates, seed, stage_columns, select,
              train_pick) -> Frontier:
    """Rows of both curves at every budget, from per-configuration arrays and the train
    pick's index per budget (rule `select`)."""
    unit = float(budget_unit(store))
    picks = {TRAIN_PICK: np.asarray(train_pick, dtype=np.int64),
             TEST_OPTIMUM: best_per_budget(cost, arrays["score"], budgets)}
    rows, points = [], []
    for bi, b in enumerate(budgets):
        n_feas = int((cost <= b * (1 + 1e-9)).sum())
        best_test = arrays["score"][picks[TEST_OPTIMUM][bi]] if picks[TEST_OPTIMUM][bi] >= 0 else math.nan
        for name, split_name in ((TRAIN_PICK, "train"), (TEST_OPTIMUM, "test")):
            j = int(picks[name][bi])
            cfg = point(j) if j >= 0 else None
            row = {"budget": float(b), "budget_flops": float(b) * unit, "curve": name, "split": split_name,
                   "select": select if name == TRAIN_PICK else "best test mean",
                   "scored_on": "test", "config": None if cfg is None else str(cfg)}
            for k in ("score", "stderr", "ci_lo", "ci_hi", "train_score", "train_ci_lo", "train_ci_hi",
                      "measured_units"):
                row[k] = float(arrays[k][j]) if j >= 0 else math.nan
            row["expected_units"] = float(cost[j]) if j >= 0 else math.nan
            row["n_feasible"] = n_feas
            row["regret"] = float(best_test - row["score"]) if j >= 0 else math.nan
            row.update(stage_columns(cfg))
            rows.append(row)
            points.append(cfg)
    table = pl.DataFrame(rows, infer_schema_length=None)
    info = {**info, "split": split.source, "n_train": int(len(split.train)), "n_test": int(len(split.test)),
            "replicates": replicates, "seed": seed, "select": select, "select_text": RULE_TEXT[select],
            "budget_unit_flops": unit, "budgets": len(budgets),
            "cheapest_units": float(np.min(cost)), "costliest_units": float(np.max(cost))}
    return Frontier(table=table, points=tuple(points), info=info)
