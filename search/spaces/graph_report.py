"""What a graph search adds to its summary: the fixed-architecture references and the
accuracy-latency Pareto front.

References. For the same budget (and latency limit, and objective) as the search, replayed on
the same training questions, replicates and seed:

- pure-parallel: one solve node, any candidate model, any sample count (width only);
- pure-sequential: one solve node, then a chain of L refine nodes of one model and one count
  (L = 1 .. max_nodes - 1; depth only).

Every member of each family within the budget (by the budget rule) is replayed; the best by
the objective (ties to the cheaper) is the reference, then scored on the test questions like
the search's pick, with a paired interval of the pick's advantage over it (the same test
questions: replay.stats.paired_interval). A user sees what searching the architecture buys.

Pareto front. Over every trial of the search within the token budget (trials over the latency
limit included: the front shows the trade-off), the trials no other beats on both training
accuracy (higher) and mean latency (lower); a table in the summary and `pareto.png`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..trial import Objective, Trial

# `GraphSpace` (search/spaces/graph.py) in the annotations below is not imported: graph.py imports this module

PARETO_PLOT = "pareto.png"
BATCH = 2048
_CACHE: dict[str, dict[str, Any]] = {}  # references per (store, space, objective): seeds of one process share them


def parallel_family(space: "GraphSpace") -> list:
    """One solve node: every candidate model and count within the budget (by the rule)."""
    out = []
    for m in space.models["solve"]:
        for n in space.counts[("solve", m)]:
            g = space.make([("solve", m, n, ())])
            if space.maybe_feasible(g):
                out.append(g)
    return out


def sequential_family(space: "GraphSpace") -> list:
    """A solve node then L refine nodes of one model and count, L = 1..max_nodes-1, within
    the budget (by the rule). Empty when the store has no refine role or max_nodes is 1."""
    if "refine" not in space.roles or space.max_nodes < 2 or space.in_degree["refine"][0] > 1:
        return []
    out = []
    for ms in space.models["solve"]:
        for ns in space.counts[("solve", ms)]:
            base = space.node_cost("solve", ms, 0, ns)
            if base > space.budget * (1 + 1e-9):
                continue
            for mr in space.models["refine"]:
                for nr in space.counts[("refine", mr)]:
                    step = space.node_cost("refine", mr, 1, nr)
                    for L in range(1, space.max_nodes):
                        if base + L * step > space.budget * (1 + 1e-9):
                            break
                        g = space.make([("solve", ms, ns, ())] + [("refine", mr, nr, (i,)) for i in range(L)])
                        if space.maybe_feasible(g):
                            out.append(g)
    return out


def best_of(space: "GraphSpace", graphs: Sequence, objective: Objective):
    """(graph, Evaluation) of the best feasible graph by the objective (ties to the cheaper,
    then the first), or None."""
    best = None
    for i in range(0, len(graphs), BATCH):
        part = list(graphs[i:i + BATCH])
        for g, ev in zip(part, space.evaluate(part, objective)):
            if ev.feasible and (best is None or (ev.score, -ev.cost) > (best[1].score, -best[1].cost)):
                best = (g, ev)
    return best


def _key(space: "GraphSpace", objective: Objective, test: Objective | None) -> str:
    def ob(o):
        return None if o is None else [list(map(int, o.questions)), o.replicates, o.seed]

    return json.dumps([str(space.store.path), space.store.name, space.to_json(), ob(objective), ob(test)],
                      sort_keys=True, default=str)


def references(space: "GraphSpace", objective: Objective, *, test: Objective | None = None) -> dict[str, Any]:
    """{"parallel": ..., "sequential": ...}: per family its size within the budget and its
    best graph with training score, accuracy, latency and cost, and (with `test`) its test
    score, question interval and per-question test scores; None for a family with no feasible
    member."""
    from replay.stats import question_interval

    k = _key(space, objective, test)
    if k in _CACHE:
        return _CACHE[k]
    out: dict[str, Any] = {}
    for name, fam in (("parallel", parallel_family(space)), ("sequential", sequential_family(space))):
        found = best_of(space, fam, objective)
        if found is None:
            out[name] = {"family_size": len(fam), "graph": None}
            continue
        g, ev = found
        row = {"family_size": len(fam), "graph": str(g), "train_score": ev.score, "train_stderr": ev.stderr,
               "accuracy": ev.metrics["accuracy"], "latency": ev.metrics["latency"], "units": ev.cost}
        if test is not None:
            te = space.evaluate([g], test, enforce_budget=False)[0]
            ci = question_interval(te.per_question)
            row.update({"test_score": te.score, "test_stderr": te.stderr, "test_ci_lo": ci.lo, "test_ci_hi": ci.hi,
                        "test_accuracy": te.metrics["accuracy"], "test_latency": te.metrics["latency"],
                        "test_per_question": [round(float(x), 6) for x in te.per_question]})
        out[name] = row
    _CACHE[k] = out
    return out


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points (accuracy, latency) that no other point dominates (at least as
    accurate and at most as slow, better in one), sorted by latency; of equal points, the first.
    Points with a NaN are left out."""
    idx = [i for i, (a, l) in enumerate(points) if math.isfinite(a) and math.isfinite(l)]
    idx.sort(key=lambda i: (points[i][1], -points[i][0], i))
    out, best = [], -math.inf
    for i in idx:
        if points[i][0] > best:
            out.append(i)
            best = points[i][0]
    return out


def pareto_trials(space: "GraphSpace", trials: Sequence[Trial]) -> list[dict[str, Any]]:
    """The front over the trials within the token budget, as rows sorted by latency."""
    cand = [t for t in trials if t.cost <= space.budget * (1 + 1e-9) and t.metrics.get("accuracy") is not None
            and t.metrics.get("latency") is not None]
    pts = [(float(t.metrics["accuracy"]), float(t.metrics["latency"])) for t in cand]
    return [{"trial": cand[i].number + 1, "graph": cand[i].label, "accuracy": pts[i][0], "latency": pts[i][1],
             "units": cand[i].cost, "feasible": cand[i].feasible} for i in pareto_front(pts)]


def plot_pareto(path: Path, trials: Sequence[Trial], front: list[dict[str, Any]], refs: dict[str, Any], *,
                title: str, latency_limit: float | None = None) -> None:
    """Every trial within the budget (grey), the front (a step line), the references (marks)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from replay.atomic import atomic_path

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    pts = [(t.metrics.get("latency"), t.metrics.get("accuracy")) for t in trials
           if t.metrics.get("accuracy") is not None and t.metrics.get("latency") is not None]
    if pts:
        xs, ys = zip(*pts)
        ax.scatter(xs, ys, s=10, color="0.7", label="trials")
    if front:
        ax.step([r["latency"] for r in front], [r["accuracy"] for r in front], where="post", color="C0",
                linewidth=1.6, marker="o", markersize=4, label="Pareto front")
    for name, mark in (("parallel", "s"), ("sequential", "^")):
        r = refs.get(name) or {}
        if r.get("graph"):
            ax.scatter([r["latency"]], [r["accuracy"]], marker=mark, s=60, color="C3" if mark == "s" else "C2",
                       label=f"best pure-{name}", zorder=3)
    if latency_limit is not None:
        ax.axvline(latency_limit, color="black", linestyle="--", linewidth=1, label="latency limit")
    ax.set_xlabel("mean latency, seconds per question (training questions)")
    ax.set_ylabel("training accuracy")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def graph_report(space: "GraphSpace", setup, trials: Sequence[Trial], best: Trial | None, *,
                 out: Path | None) -> dict[str, Any]:
    """The summary's "graph" entry: references (with the pick's paired advantage on test),
    the Pareto front; writes pareto.png to `out`."""
    from replay.stats import paired_interval

    refs = references(space, setup.objective, test=setup.test_objective)
    pick_q = None
    if best is not None:
        ev = space.evaluate([best.point], setup.test_objective, enforce_budget=False)[0]
        pick_q = ev.per_question
    shown = {}
    for name, r in refs.items():
        r = dict(r)
        pq = r.pop("test_per_question", None)
        if pick_q is not None and pq is not None:
            d = paired_interval(pick_q, np.asarray(pq))
            r["pick_minus_reference"] = {"mean": float(np.mean(pick_q) - np.mean(pq)), "ci_lo": d.lo, "ci_hi": d.hi}
        shown[name] = r
    front = pareto_trials(space, trials)
    if out is not None:
        store = setup.store
        plot_pareto(Path(out) / PARETO_PLOT, trials, front, shown,
                    title=f"{store.name}{' (SYNTHETIC)' if store.synthetic else ''}: accuracy against latency",
                    latency_limit=space.latency_limit)
    return {"graph": {"references": shown, "pareto": front, "objective": space.objective.text,
                      "latency_limit": space.latency_limit}}


def report_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    g = summary.get("graph") or {}
    rows = []
    for name, r in (g.get("references") or {}).items():
        if not r.get("graph"):
            rows.append((f"pure-{name}", f"none within the budget ({r.get('family_size', 0)} in the family)"))
            continue
        text = (f"{r['graph']}: train {r['train_score']:.4f}, accuracy {r['accuracy']:.4f}, {r['latency']:.3g} s, "
                f"{r['units']:.4g} units")
        if r.get("test_score") is not None:
            text += f"; test {r['test_score']:.4f} [{r['test_ci_lo']:.3f}, {r['test_ci_hi']:.3f}]"
        d = r.get("pick_minus_reference")
        if d:
            text += f"; pick - it on test {round(d['mean'], 4) + 0.0:+.4f} (paired 95% [{d['ci_lo']:+.3f}, {d['ci_hi']:+.3f}])"
        rows.append((f"pure-{name}", text + f" (best of {r['family_size']})"))
    front = g.get("pareto") or []
    if front:
        rows.append(("pareto front", f"{len(front)} trials (training accuracy against mean latency; {PARETO_PLOT}):"))
        for r in front:
            rows.append(("", f"  {r['accuracy']:.4f} at {r['latency']:.3g} s, {r['units']:.3g} units  "
                             f"trial {r['trial']}: {r['graph']}"))
    return rows
