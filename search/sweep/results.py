"""The sweep's results: one row per cell (results.parquet) and best-so-far curves (curves.parquet),
read from the cells' folders on disk (summary.json, curve.json or the archive, error.txt).

The timing columns (TIMING_COLUMNS) are the only ones that differ between runs of the same
cells, whatever executed them.
"""

from __future__ import annotations

import json
import math
from typing import Any

from ..report import SUMMARY_NAME
from .plan import Plan
from .tasks import ERROR_NAME, read_curve

# the columns of results.parquet that measure time (they differ between runs of the same cell)
TIMING_COLUMNS = ("replay_s", "searcher_s", "wall_s", "llm_s", "optimum_s")


RESULT_SCHEMA = {
    "store": "str", "store_path": "str", "synthetic": "bool", "searcher": "str", "ablation": "str", "label": "str",
    "seed": "int", "train": "int", "budget_spec": "float", "trials_budget": "int",
    "train_questions": "int", "test_questions": "int", "budget": "float", "space_size": "int",
    "status": "str", "error": "str", "cell": "str",
    "config": "str", "select": "str", "best_mean_config": "str", "train_score": "float", "train_stderr": "float",
    "units": "float", "measured_units": "float", "tokens": "float", "fallback_rate": "float",
    "test_score": "float", "test_stderr": "float", "test_ci_lo": "float", "test_ci_hi": "float", "test_units": "float",
    "test_measured_units": "float", "test_within_budget": "bool", "test_measured_within_budget": "bool",
    "test_fallback_rate": "float", "scanned": "int",
    "trials": "int", "feasible_trials": "int", "stop": "str", "trials_to_best": "int",
    "optimum_config": "str", "optimum_score": "float", "trials_to_optimum": "int", "reached_optimum": "bool",
    "gap_to_optimum": "float", "replay_s": "float", "searcher_s": "float", "wall_s": "float", "llm_s": "float",
    "llm_tokens": "int", "optimum_s": "float", "resumed_from": "int",
    # graph searches (space graph): the pick's accuracy and latency, and the fixed-architecture references
    "space": "str", "accuracy": "float", "latency": "float", "test_accuracy": "float", "test_latency": "float",
    **{f"ref_{fam}_{k}": t for fam in ("parallel", "sequential")
       for k, t in (("graph", "str"), ("train", "float"), ("test", "float"), ("test_ci_lo", "float"),
                    ("test_ci_hi", "float"), ("test_accuracy", "float"), ("test_latency", "float"),
                    ("pick_minus", "float"), ("pick_minus_lo", "float"), ("pick_minus_hi", "float"))},
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
            sel = s.get("selection") or {}
            row.update({
                "status": "done", "config": b.get("config"), "select": sel.get("rule"),
                "best_mean_config": sel.get("best_mean_config"), "train_score": b.get("train_score"),
                "train_stderr": b.get("train_stderr"), "units": b.get("units"), "measured_units": b.get("measured_units"),
                "tokens": b.get("tokens"), "fallback_rate": b.get("fallback_rate"),
                "test_score": t.get("score"), "test_stderr": t.get("stderr"), "test_ci_lo": t.get("ci_lo"),
                "test_ci_hi": t.get("ci_hi"), "test_units": t.get("units"),
                "test_measured_units": t.get("measured_units"), "test_within_budget": t.get("within_budget"),
                "test_measured_within_budget": t.get("measured_within_budget"),
                "test_fallback_rate": t.get("fallback_rate"), "scanned": (s.get("scan") or {}).get("scanned"),
                "trials": s.get("trials"),
                "feasible_trials": s.get("feasible_trials"), "stop": s.get("stop"),
                "trials_to_best": s.get("trials_to_best"), "optimum_config": o.get("config"),
                "optimum_score": o.get("score"), "trials_to_optimum": s.get("trials_to_optimum"),
                "reached_optimum": s.get("reached_optimum"),
                # the search's quality: the optimum minus the best training score it found (whatever it picked)
                "gap_to_optimum": _gap(o.get("score"), sel.get("best_mean_score", b.get("train_score"))),
                "replay_s": s.get("replay_s"), "searcher_s": s.get("searcher_s"), "wall_s": s.get("wall_s"),
                "llm_s": s.get("llm_s"), "llm_tokens": s.get("llm_tokens"), "resumed_from": s.get("resumed_from"),
                "space": s.get("space_kind"),
            })
            if s.get("graph"):
                row.update(_graph_columns(s))
            score, feasible = read_curve(d)
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


def _graph_columns(s: dict[str, Any]) -> dict[str, Any]:
    b, t = s.get("best") or {}, s.get("test") or {}
    out = {"accuracy": b.get("accuracy"), "latency": b.get("latency"), "test_accuracy": t.get("accuracy"),
           "test_latency": t.get("latency")}
    for fam, r in ((s.get("graph") or {}).get("references") or {}).items():
        d = r.get("pick_minus_reference") or {}
        out.update({f"ref_{fam}_graph": r.get("graph"), f"ref_{fam}_train": r.get("train_score"),
                    f"ref_{fam}_test": r.get("test_score"), f"ref_{fam}_test_ci_lo": r.get("test_ci_lo"),
                    f"ref_{fam}_test_ci_hi": r.get("test_ci_hi"), f"ref_{fam}_test_accuracy": r.get("test_accuracy"),
                    f"ref_{fam}_test_latency": r.get("test_latency"), f"ref_{fam}_pick_minus": d.get("mean"),
                    f"ref_{fam}_pick_minus_lo": d.get("ci_lo"), f"ref_{fam}_pick_minus_hi": d.get("ci_hi")})
    return out


def _gap(optimum, best):
    return None if optimum is None or best is None else optimum - best


def _plain(x):
    if hasattr(x, "item") and callable(x.item):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
