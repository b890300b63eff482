"""Reports: the summary of a search, its best-so-far plot, and comparisons of several searches.

    summary.json       everything the summary table shows, for other tools
    best_so_far.png    best feasible training score against trial number (and the grid optimum)
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from replay.atomic import atomic_path
from replay.errors import InputError

from .archive import archive_path, read_archive, trial_from_record
from .trial import Trial, best_trial

SUMMARY_NAME = "summary.json"
PLOT_NAME = "best_so_far.png"
EPS = 1e-12


# --------------------------------------------------------------------------------------------
# Figures from trials


def best_so_far(trials: Sequence[Trial]) -> np.ndarray:
    """Best feasible training score after each trial (NaN until the first feasible one)."""
    out = np.full(len(trials), np.nan)
    best = -np.inf
    for k, t in enumerate(trials):
        if t.feasible and t.score is not None and t.score > best:
            best = t.score
        out[k] = best if np.isfinite(best) else np.nan
    return out


def trials_to_reach(trials: Sequence[Trial], score: float | None) -> int | None:
    """1-based count of trials until one scores at least `score` (None: never)."""
    if score is None:
        return None
    for k, t in enumerate(trials):
        if t.feasible and t.score is not None and t.score >= score - EPS:
            return k + 1
    return None


def llm_totals(trials: Sequence[Trial], states: Sequence[dict]) -> tuple[float, int]:
    """LLM seconds and tokens: the searcher's cumulative state() counters when it keeps them,
    else the sum of the trials' extra fields (see search/protocol.py)."""
    s = [st for st in states if isinstance(st, dict) and "llm_wall_s" in st]
    if s:
        return float(max(x.get("llm_wall_s") or 0 for x in s)), int(max(x.get("llm_tokens") or 0 for x in s))
    wall = sum(float(t.extra.get("llm_wall_s") or 0) for t in trials if isinstance(t.extra, dict))
    tok = sum(int(t.extra.get("llm_tokens") or 0) for t in trials if isinstance(t.extra, dict))
    return wall, tok


# --------------------------------------------------------------------------------------------
# One search


def summarize(header: dict[str, Any], trials: Sequence[Trial], states: Sequence[dict], *, test: dict | None,
              optimum: dict | None, replay_s: float, searcher_s: float | None = None, wall_s: float | None = None,
              stop: str = "") -> dict[str, Any]:
    """Everything the summary table shows, for other tools (summary.json). The best point's cost
    is under the space's cost unit ("units" for configurations, "tokens" for controllers)."""
    b = best_trial(trials)
    unit = header.get("cost_unit", "units")
    llm_s, llm_tok = llm_totals(trials, states)
    opt_score = optimum.get("score") if optimum else None
    reach = trials_to_reach(trials, opt_score)
    best = None
    if b is not None:
        best = {"config": b.label, "point": b.point, "train_score": b.score, "train_stderr": b.stderr, unit: b.cost,
                "tokens": b.tokens}
        best.update({k: v for k, v in b.metrics.items() if isinstance(v, (int, float))})
        best.update({"trial": b.number + 1, "source": b.source})
    return {
        "space_kind": header.get("space_kind", "config"),
        "store": header.get("store"),
        "store_name": header.get("store_name"),
        "synthetic": header.get("synthetic"),
        "searcher": header.get("searcher"),
        "seed": header.get("seed"),
        "options": header.get("options"),
        "budget": header.get("budget"),
        "cost_unit": unit,
        "space_size": (header.get("space") or {}).get("size"),
        "space": header.get("space"),
        "train_questions": len(header.get("train") or ()),
        "test_questions": len(header.get("test") or ()),
        "replicates": header.get("replicates"),
        "replay_seed": header.get("replay_seed"),
        "trials": len(trials),
        "feasible_trials": sum(1 for t in trials if t.feasible),
        "infeasible_trials": sum(1 for t in trials if not t.feasible),
        "stop": stop,
        "best": best,
        "test": test,
        "trials_to_best": None if b is None else trials_to_reach(trials, b.score),
        "optimum": optimum,
        "trials_to_optimum": reach,
        "reached_optimum": None if opt_score is None else reach is not None,
        "replay_s": replay_s,
        "searcher_s": searcher_s,
        "wall_s": wall_s,
        "llm_s": llm_s,
        "llm_tokens": llm_tok,
        "llm_counters": next((st["counters"] for st in reversed(states) if isinstance(st, dict) and "counters" in st),
                             None),
    }


def _fmt(x, digits=4) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        if not math.isfinite(x):
            return "-"
        return f"{x:.{digits}g}"
    return str(x)


def summary_table(s: dict[str, Any], space) -> str:
    """The summary as the `search` command prints it; `space` words the budget and costs."""
    b = s.get("best") or {}
    t = s.get("test") or {}
    o = s.get("optimum") or {}
    unit = s.get("cost_unit", "units")

    def cost(d) -> str:
        tokens = "" if unit == "tokens" else f", {_fmt(d.get('tokens'))} tokens per question"
        return ("-" if d.get(unit) is None else space.cost_text(d[unit])) + tokens

    over = "" if not t or t.get("within_budget", True) else \
        f" (costs {space.cost_text(t[unit]) if t.get(unit) is not None else '-'} on test: over budget)"
    rows = [
        ("store", f"{s['store_name']}{' (SYNTHETIC)' if s.get('synthetic') else ''}"),
        ("searcher", f"{s['searcher']} (seed {s['seed']}{', ' + json.dumps(s['options']) if s.get('options') else ''})"),
        *space.summary_rows(),
        ("questions", f"{s['train_questions']} train x {s['replicates']} replicates, {s['test_questions']} test"),
        ("trials", f"{s['trials']} ({s['infeasible_trials']} {getattr(space, 'infeasible_text', 'over budget')})"
                   f"{'; ' + s['stop'] if s.get('stop') else ''}"),
        ("best config", b.get("config", "none feasible")),
        ("train score", f"{_fmt(b.get('train_score'))} +- {_fmt(b.get('train_stderr'), 2)}"),
        ("test score", f"{_fmt(t.get('score'))} +- {_fmt(t.get('stderr'), 2)}" + over),
        ("cost", cost(b) if b else "-"),
        ("trials to best", _fmt(s.get("trials_to_best"))),
        ("grid optimum", f"{o.get('config')} train {_fmt(o.get('score'))}" if o else
         "unknown (space too large)" if space.size() is not None else "unknown (no finite grid)"),
        ("trials to optimum", "-" if not o else ("not reached" if s.get("trials_to_optimum") is None else str(s["trials_to_optimum"]))),
        ("replay time", f"{_fmt(s.get('replay_s'), 3)} s (search {_fmt(s.get('wall_s'), 3)} s)"),
        ("LLM", f"{_fmt(s.get('llm_s'), 3)} s, {s.get('llm_tokens', 0)} tokens"
                + (f"; {json.dumps(s['llm_counters'])}" if s.get("llm_counters") else "")),
        *space.report_rows(s),
    ]
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)


# --------------------------------------------------------------------------------------------
# Files


def write_json_atomic(path: Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(_json_safe(obj), f, indent=2, default=str, allow_nan=False)
            f.write("\n")


def _json_safe(x):
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, np.generic):
        return _json_safe(x.item())
    return x


def plot_curves(curves: list[tuple[str, np.ndarray]], path: Path, title: str, optimum: float | None = None,
                ylabel: str = "best training score so far") -> None:
    """Step plot of best-so-far curves, written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for label, ys in curves:
        xs = np.arange(1, len(ys) + 1)
        ax.step(xs, ys, where="post", label=label, linewidth=1.6)
    if optimum is not None:
        ax.axhline(optimum, color="black", linestyle="--", linewidth=1, label=f"grid optimum {optimum:.4g}")
    ax.set_xlabel("trial")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if curves or optimum is not None:
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)


def write_report(out: Path, summary: dict[str, Any], trials: Sequence[Trial], *, title: str = "",
                 plot: bool = True) -> None:
    """summary.json and (with `plot`) best_so_far.png in `out`; `title`: the space in words."""
    out = Path(out)
    write_json_atomic(out / SUMMARY_NAME, summary)
    if not plot:
        return
    title = (f"{summary['store_name']}{' (synthetic)' if summary.get('synthetic') else ''}: {summary['searcher']} "
             f"seed {summary['seed']}" + (f"\n{title}" if title else ""))
    opt = (summary.get("optimum") or {}).get("score")
    plot_curves([(f"{summary['searcher']} seed {summary['seed']}", best_so_far(trials))], out / PLOT_NAME, title, opt)


# --------------------------------------------------------------------------------------------
# Several searches


def load_search(path: str | os.PathLike) -> tuple[dict, list[Trial], dict | None]:
    """(header, trials, summary or None) of a search: its folder or its archive file."""
    ap = archive_path(path)
    header, records, _ = read_archive(path)
    summ = ap.parent / SUMMARY_NAME
    summary = None
    if summ.is_file():
        try:
            summary = json.loads(summ.read_text())
        except json.JSONDecodeError as e:
            raise InputError(str(summ), f"not valid JSON ({e})") from None
    return header, [trial_from_record(r) for r in records], summary


def compare_rows(paths: Sequence[str | os.PathLike]) -> tuple[list[dict[str, Any]], list[tuple[str, np.ndarray]], float | None]:
    """One row and one best-so-far curve per search; every search of one store and one space kind."""
    rows, curves, optima, kinds = [], [], set(), set()
    for p in paths:
        header, trials, summary = load_search(p)
        kinds.add((header.get("space_kind", "config"), header.get("cost_unit", "units")))
        b = best_trial(trials)
        opt = ((summary or {}).get("optimum") or {}).get("score")
        if opt is not None:
            optima.add(round(float(opt), 12))
        test = (summary or {}).get("test") or {}
        label = f"{header.get('searcher')} s{header.get('seed')}"
        if header.get("options"):
            label += " " + ",".join(f"{k}={v}" for k, v in sorted(header["options"].items()))
        rows.append({
            "search": label,
            "store": header.get("store_name"),
            "synthetic": bool(header.get("synthetic")),
            "trials": len(trials),
            "best config": b.label if b else None,
            "train": b.score if b else None,
            "test": test.get("score"),
            header.get("cost_unit", "units"): b.cost if b else None,
            "to best": trials_to_reach(trials, b.score) if b else None,
            "to optimum": trials_to_reach(trials, opt) if opt is not None else None,
            "optimum": opt,
            "path": str(p),
        })
        curves.append((label, best_so_far(trials)))
    stores = {r["store"] for r in rows}
    if len(kinds) > 1:
        raise InputError("search compare", f"archives come from different spaces ({', '.join(sorted(k for k, _ in kinds))}): "
                         "compare searches of one space")
    if len(stores) > 1:
        raise InputError("search compare", f"archives come from different stores ({', '.join(sorted(map(str, stores)))}): "
                         "compare searches of one store")
    optimum = optima.pop() if len(optima) == 1 else None
    return rows, curves, optimum


def table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    cells = [[_fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(x[i]) for x in cells)) if cells else len(c) for i, c in enumerate(columns)]
    line = lambda xs: "  ".join(f"{x:<{w}}" for x, w in zip(xs, widths))  # noqa: E731
    return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(x) for x in cells])


def compare_columns(unit: str = "units") -> tuple[str, ...]:
    return ("search", "trials", "best config", "train", "test", unit, "to best", "to optimum")


def compare(paths: Sequence[str | os.PathLike], out_png: str | os.PathLike | None = None) -> tuple[str, list[dict]]:
    if not paths:
        raise InputError("search compare", "no archives given")
    rows, curves, optimum = compare_rows(paths)
    if out_png is not None:
        kind = " (SYNTHETIC)" if rows[0]["synthetic"] else ""
        plot_curves(curves, Path(out_png), f"{rows[0]['store']}{kind}: best-so-far training score", optimum)
    unit = "tokens" if "tokens" in rows[0] and "units" not in rows[0] else "units"
    return table(rows, compare_columns(unit)), rows


# --------------------------------------------------------------------------------------------
# Repeats over seeds


def seed_stats(summaries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean and spread over seeds of the figures a user compares searchers by."""
    def col(f):
        return np.array([f(s) for s in summaries], dtype=float)

    train = col(lambda s: (s.get("best") or {}).get("train_score", np.nan) or np.nan)
    test = col(lambda s: (s.get("test") or {}).get("score", np.nan) or np.nan)
    to_best = col(lambda s: s.get("trials_to_best") or np.nan)
    to_opt = [s.get("trials_to_optimum") for s in summaries]
    known = all(s.get("optimum") for s in summaries)
    reached = [x for x in to_opt if x is not None]

    def ms(a):
        a = a[np.isfinite(a)]
        return {"mean": float(a.mean()) if len(a) else None, "std": float(a.std(ddof=1)) if len(a) > 1 else None,
                "min": float(a.min()) if len(a) else None, "max": float(a.max()) if len(a) else None}

    return {
        "seeds": [s.get("seed") for s in summaries],
        "train_score": ms(train),
        "test_score": ms(test),
        "trials_to_best": ms(to_best),
        "trials_to_optimum": None if not known else {
            "reached": len(reached), "of": len(summaries),
            "mean": float(np.mean(reached)) if reached else None,
            "median": float(np.median(reached)) if reached else None,
        },
        "replay_s": float(sum(s.get("replay_s") or 0 for s in summaries)),
        "llm_s": float(sum(s.get("llm_s") or 0 for s in summaries)),
        "llm_tokens": int(sum(s.get("llm_tokens") or 0 for s in summaries)),
    }


def seed_table(stats: dict[str, Any]) -> str:
    def pm(d):
        if not d or d.get("mean") is None:
            return "-"
        return f"{d['mean']:.4g} +- {d['std']:.2g}" if d.get("std") is not None else f"{d['mean']:.4g}"

    o = stats.get("trials_to_optimum")
    rows = [
        ("seeds", ",".join(str(s) for s in stats["seeds"])),
        ("train score", pm(stats["train_score"]) + f"  [{_fmt(stats['train_score']['min'])}, {_fmt(stats['train_score']['max'])}]"),
        ("test score", pm(stats["test_score"]) + f"  [{_fmt(stats['test_score']['min'])}, {_fmt(stats['test_score']['max'])}]"),
        ("trials to best", pm(stats["trials_to_best"])),
        ("trials to optimum", "unknown optimum" if o is None else
         f"reached in {o['reached']}/{o['of']} seeds; mean {_fmt(o['mean'])}, median {_fmt(o['median'])}"),
        ("replay time", f"{stats['replay_s']:.3g} s in all"),
        ("LLM", f"{stats['llm_s']:.3g} s, {stats['llm_tokens']} tokens in all"),
    ]
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)
