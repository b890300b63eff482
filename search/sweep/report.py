"""The report of a sweep: report.md and figures/*.png, the paper's three experiments.

1. Main results: per store and searcher, the test score of the configuration picked (mean and
   spread over seeds, its 95% interval over questions), whether it differs from the best
   searcher's beyond noise (paired over seeds and questions: search/report.py
   `paired_difference`), and the search cost (trials, replay time, LLM time and tokens).
2. Ablation: trials to reach the best configuration and the grid optimum, for AgentTTS and its
   ablations, and for `rules` (the insights without an LLM) and its ablations.
3. Robustness, as AgentTTS measures it: one fixed test set, nested training sets of several
   sizes drawn from the other questions; test score and search efficiency (trials to the best)
   per size and searcher (a PNG per store).
4. Interpretability: the LLM searchers' guidelines (knowledge, analysis) as they evolved, round
   by round (one seed per searcher and store).
Plus best-so-far training score against trial, mean over seeds with a min-max band (a PNG per
store), and the grid optimum of every objective.

Cells that run the grid until done (trial budget "all") belong to every trial-budget slice.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from replay.atomic import atomic_path
from replay.clitools import plural

REPORT_NAME = "report.md"
FIGURES_DIR = "figures"
ABLATION_FAMILIES = ("agenttts", "rules")


def _f(x, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def _n(x) -> str:
    """A count or a mean count: 14,873 rather than 1.49e+04."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if abs(x - round(x)) < 1e-9 or abs(x) >= 100:
        return f"{round(x):,}"
    return f"{x:.3g}"


def _ms(xs: Iterable, digits: int = 4) -> str:
    a = np.array([x for x in xs if x is not None and math.isfinite(x)], dtype=float)
    if len(a) == 0:
        return "-"
    if len(a) == 1:
        return f"{a[0]:.{digits}g}"
    sd = float(a.std(ddof=1))
    return f"{a.mean():.{digits}g} ± {0.0 if sd < 1e-12 else sd:.2g}"


def _pct(x) -> str:
    return "-" if x is None else f"{x:.1%}"


def _mean(xs: Iterable) -> float | None:
    a = [x for x in xs if x is not None and math.isfinite(x)]
    return float(np.mean(a)) if a else None


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"] + \
        ["| " + " | ".join(r) + " |" for r in rows]


def _axis_label(x, default: str) -> str:
    if x is None:
        return default
    return format(x, ".12g") if isinstance(x, float) else str(x)


class _Slices:
    """Per store: its training sizes, budgets and trial-budget slices, and the main training size."""

    def __init__(self, plan, rows: list[dict[str, Any]]):
        self.stores = list(dict.fromkeys(g.store for g in plan.groups))
        self.labels = [e.label for e in plan.spec.searchers]
        self.groups = {(g.store, g.train, g.budget_spec): g for g in plan.groups}
        self.rows = rows

    def trains(self, store):
        return list(dict.fromkeys(t for (s, t, _b) in self.groups if s == store))

    def budgets(self, store):
        return list(dict.fromkeys(b for (s, _t, b) in self.groups if s == store))

    def main_train(self, store):
        ts = self.trains(store)
        return None if None in ts else max(ts)

    def trial_slices(self, store):
        vals = list(dict.fromkeys(r["trials_budget"] for r in self.rows if r["store"] == store))
        finite = [v for v in vals if v is not None]
        return finite or [None]

    def combos(self, store):
        return [(b, t) for b in self.budgets(store) for t in self.trial_slices(store)]

    def select(self, store, label=None, train="any", budget="any", trials="any"):
        out = []
        for r in self.rows:
            if r["store"] != store or (label is not None and r["label"] != label):
                continue
            if train != "any" and r["train"] != train:
                continue
            if budget != "any" and r["budget_spec"] != budget:
                continue
            if trials != "any" and not (r["trials_budget"] == trials or r["trials_budget"] is None):
                continue
            out.append(r)
        return out

    def suffix(self, store, budget, trials) -> str:
        if len(self.combos(store)) == 1:
            return ""
        return f"-budget-{_axis_label(budget, 'default')}-trials-{_axis_label(trials, 'all')}"


def write_report(plan, results, curves, optima: dict[str, Any], out: Path) -> Path:
    out = Path(out)
    figs = out / FIGURES_DIR
    all_rows = results.to_dicts()
    done = [r for r in all_rows if r["status"] == "done"]
    sl = _Slices(plan, done)
    spec = plan.spec
    n_failed = sum(r["status"] == "failed" for r in all_rows)
    n_pending = sum(r["status"] == "pending" for r in all_rows)
    synthetic = sorted({g.store for g in plan.groups if g.synthetic})

    L: list[str] = [f"# Sweep `{spec.name}`", ""]
    L.append(f"Spec: `{spec.source}`. {plural(len(all_rows), 'cell')}: {len(done)} done, {n_failed} failed, {n_pending} pending. "
             f"Stores: {', '.join(sl.stores)}. Searchers: {', '.join(sl.labels)}. Seeds: {_seed_text(spec.seeds)}. "
             f"Training sizes: {', '.join(_axis_label(t, 'default') for t in spec.train)}; budgets: "
             f"{', '.join(_axis_label(b, 'default') for b in spec.budgets)}; trial budgets: "
             f"{', '.join(_axis_label(t, 'all') for t in spec.trials)}; {spec.replicates} replicates per training "
             f"question, {spec.test_replicates} per test question.")
    if synthetic:
        L += ["", f"**SYNTHETIC stores** (simulated, not collected from real models): {', '.join(synthetic)}. "
              "Their scores measure the simulator."]
    rules = sorted({r["select"] for r in done if r.get("select")})
    L += ["", "Scores: mean ± standard deviation over seeds. *test*: the configuration a search picked (selection "
          f"rule: {', '.join(rules) or '-'}; docs/search.md), scored on the held-out questions; *95% CI*: the mean over "
          "seeds of its 95% interval over the test questions (replay.stats); *±rep*: the mean over seeds of its "
          "replicate error (standard error over the test replicates, the questions fixed); *fallback*: the share of "
          "its test draws whose upstream answer was not collected; *train*: its training score (what the "
          "searcher saw). *vs best*: the difference from the store's best searcher on test, with its 95% interval "
          "over questions, and whether it is beyond noise (every interval, over questions and over seeds, excludes "
          "0). Times are per search. Cells with trial budget *all* run until the searcher stops (the grid).", ""]

    # ---- grid optima
    L += ["## Grid optima", "", "The exhaustive optimum of each objective (store, training questions, budget), "
          "computed once and shared by its cells.", ""]
    rows = []
    for g in plan.groups:
        o = (optima.get(g.key) or {}).get("optimum") if spec.optimum else None
        rows.append([g.store, str(g.train_questions), _f(g.budget), f"{g.space_size:,}",
                     f"`{o['config']}`" if o and o.get("config") else ("-" if o else "not computed"),
                     _f(o.get("score")) if o else "-", _f(o.get("wall_s"), 3) if o else "-"])
    L += _table(["store", "train questions", "budget (units)", "space", "optimum", "train score", "scan s"], rows) + [""]

    # ---- 1. main results
    L += ["## 1. Main results", ""]
    rows = []
    for store in sl.stores:
        mt = sl.main_train(store)
        for budget, trials in sl.combos(store):
            found = {label: rs for label in sl.labels
                     if (rs := sl.select(store, label, mt, budget, trials)) and not rs[0]["ablation"]}
            vs = _versus_best(plan.out, found)
            for label, rs in found.items():
                cfgs = Counter(r["config"] for r in rs if r["config"])
                top = cfgs.most_common(1)
                ci = [(r["test_ci_lo"], r["test_ci_hi"]) for r in rs if r.get("test_ci_lo") is not None]
                rows.append([store, str(rs[0]["train_questions"]), _f(rs[0]["budget"]), _axis_label(rs[0]["trials_budget"], "all"),
                             label, str(len(rs)), _ms(r["test_score"] for r in rs),
                             f"[{np.mean([a for a, _ in ci]):.3f}, {np.mean([b for _, b in ci]):.3f}]" if ci else "-",
                             _f(_mean(r.get("test_stderr") for r in rs), 2),
                             _pct(_mean(r.get("test_fallback_rate") for r in rs)),
                             vs.get(label, "-"), _ms(r["train_score"] for r in rs),
                             _trials_text(rs), _f(_mean(r["replay_s"] for r in rs), 3),
                             _f(_mean(r["llm_s"] for r in rs), 3), _n(_mean(r["llm_tokens"] for r in rs)),
                             _llm_part(rs), f"`{top[0][0]}` ({top[0][1]}/{len(rs)})" if top else "-"])
    L += ["Per store at its largest training size (or the store's split): the configuration each search picked.", ""]
    L += _table(["store", "train q", "budget", "trial budget", "searcher", "seeds", "test score", "95% CI", "±rep",
                 "fallback", "vs best",
                 "train score", "trials", "replay s", "LLM s", "LLM tokens", "LLM trials", "most picked config"], rows) + [""]

    # ---- 2. ablation
    L += ["## 2. Ablation: trials to the best score and to the grid optimum", ""]
    rows = []
    for store in sl.stores:
        mt = sl.main_train(store)
        for budget, trials in sl.combos(store):
            for label in sl.labels:
                rs = sl.select(store, label, mt, budget, trials)
                if not rs or rs[0]["searcher"] not in ABLATION_FAMILIES:
                    continue
                reached = [r["trials_to_optimum"] for r in rs if r["reached_optimum"]]
                known = all(r["optimum_score"] is not None for r in rs)
                rows.append([store, _f(rs[0]["budget"]), _axis_label(rs[0]["trials_budget"], "all"), label, str(len(rs)),
                             _ms((r["trials_to_best"] for r in rs), 3),
                             f"{len(reached)}/{len(rs)}" if known else "unknown optimum",
                             _n(_mean(reached)) if reached else "-",
                             _n(float(np.median(reached))) if reached else "-",
                             _ms((r["gap_to_optimum"] for r in rs), 3), _ms(r["test_score"] for r in rs)])
    if rows:
        L += ["AgentTTS and its ablations (`agenttts:insightN`: that insight removed) and `rules`, the insights as a "
              "procedure without an LLM, with its ablations. *trials to best score*: trials until the search first "
              "reached its best training score (the configuration it picks may come later); *reached*: seeds whose search scored the grid optimum's "
              "training score; *gap*: optimum minus the best training score found.", ""]
        L += _table(["store", "budget", "trial budget", "searcher", "seeds", "trials to best score", "reached optimum",
                     "trials to optimum: mean", "median", "gap to optimum", "test score"], rows) + [""]
    else:
        L += ["No `agenttts` or `rules` cells in this sweep.", ""]

    # ---- 3. robustness
    L += ["## 3. Robustness: test score and search efficiency against training-set size", "",
          "AgentTTS's protocol: one fixed test set (the store's test split), and training sets of each size drawn "
          "from the other questions, nested (the smaller inside the larger, one draw); *default* is the store's own "
          "training split. A cell reads *test score (trials to the best score)*, mean over seeds. A size larger than the "
          "questions outside the test set overrides the store's split, so its test set differs: marked *(other test "
          "set)*.", ""]
    figs.mkdir(parents=True, exist_ok=True)
    for store in sl.stores:
        trains = sl.trains(store)
        for budget, trials in sl.combos(store):
            header = ["searcher"]
            tq = {}
            for t in trains:
                rs = sl.select(store, None, t, budget, trials)
                tq[t] = rs[0]["train_questions"] if rs else None
                g = sl.groups.get((store, t, budget))
                other = " (other test set)" if g is not None and g.split_overrides else ""
                header.append(f"{_f(tq[t])} train q{other}")
            test_q = sorted({g.test_questions for (st, _t, b), g in sl.groups.items() if st == store and b == budget})
            rows, series = [], []
            for label in sl.labels:
                cells = []
                xs, ms, sds = [], [], []
                for t in trains:
                    rs = sl.select(store, label, t, budget, trials)
                    to_best = _mean(r["trials_to_best"] for r in rs)
                    cells.append(_ms(r["test_score"] for r in rs) + (f" ({_n(to_best)})" if to_best is not None else ""))
                    v = [r["test_score"] for r in rs if r["test_score"] is not None]
                    if v and tq[t] is not None:
                        xs.append(tq[t])
                        ms.append(float(np.mean(v)))
                        sds.append(float(np.std(v, ddof=1)) if len(v) > 1 else 0.0)
                if any(c != "-" for c in cells):
                    rows.append([label] + cells)
                    series.append((label, xs, ms, sds))
            if not rows:
                continue
            name = f"{store}-robustness{sl.suffix(store, budget, trials)}.png"
            _plot_robustness(series, figs / name, f"{store}: test score vs training-set size "
                             f"(budget {_axis_label(budget, 'default')}, trials {_axis_label(trials, 'all')})")
            L += [f"**{store}**, budget {_axis_label(budget, 'default')}, trial budget {_axis_label(trials, 'all')}, "
                  f"{' or '.join(map(str, test_q))} test questions (`{FIGURES_DIR}/{name}`)", ""]
            L += _table(header, rows) + ["", f"![{store} robustness]({FIGURES_DIR}/{name})", ""]

    # ---- 4. guidelines
    hist = _guideline_rows(plan.out, sl)
    if hist:
        L += ["## 4. Interpretability: the LLM searchers' guidelines, round by round", "",
              "What each LLM searcher wrote about the search (AgentTTS: guidelines; MLCopilot: knowledge; AgentHPO: "
              "analysis) each time it changed, for the lowest seed of each searcher and store at its largest training "
              "size (every cell's `summary.json` holds its own).", ""]
        L += hist

    # ---- 5. collaboration graphs
    cur_rows = curves.to_dicts() if len(curves) else []
    if any(r.get("space") == "graph" for r in done):
        L += graph_section(sl, cur_rows, figs, out=plan.out)

    # ---- best-so-far curves
    L += ["## Best-so-far curves", "", "Best training score after each trial: mean over seeds, band from the worst "
          "to the best seed; the dashed line is the grid optimum. Searches that stop early keep their last value.", ""]
    cur = curves.to_dicts() if len(curves) else []
    by_cell: dict[tuple, list[float | None]] = {}
    for c in cur:
        by_cell.setdefault((c["store"], c["label"], c["seed"], c["train"], c["budget_spec"], c["trials_budget"]), []).append(c["best_so_far"])
    for store in sl.stores:
        mt = sl.main_train(store)
        for budget, trials in sl.combos(store):
            series = []
            for label in sl.labels:
                rs = sl.select(store, label, mt, budget, trials)
                if not rs or (rs[0]["trials_budget"] is None and trials is not None):
                    continue  # the grid run until done: its optimum is the dashed line
                ys = [by_cell.get((store, label, r["seed"], mt, budget, r["trials_budget"])) for r in rs]
                ys = [y for y in ys if y]
                if ys:
                    series.append((label, ys))
            if not series:
                continue
            g = sl.groups.get((store, mt, budget))
            o = (optima.get(g.key) or {}).get("optimum") if g is not None and spec.optimum else None
            name = f"{store}-best-so-far{sl.suffix(store, budget, trials)}.png"
            _plot_curves(series, figs / name, f"{store}: best-so-far training score ({g.train_questions if g else '?'} train q, "
                         f"budget {_axis_label(budget, 'default')})", o.get("score") if o else None)
            L += [f"![{store} best so far]({FIGURES_DIR}/{name})", ""]

    failed = [r for r in all_rows if r["status"] == "failed"]
    if failed:
        L += ["## Failed cells", "", "Rerun the same command to resume them.", ""]
        L += _table(["cell", "error"], [[f"`{r['cell']}`", (r["error"] or "")[:200].replace("|", "\\|")] for r in failed[:50]])
        if len(failed) > 50:
            L.append(f"... and {len(failed) - 50} more (results.parquet, status = 'failed')")
        L.append("")
    L += ["## Files", "", "`results.parquet` (one row per cell), `curves.parquet` (best so far per trial), "
          "`optima.json`, `cells/STORE/SEARCHER/train-N_budget-B_trials-T/seed-S/` (archive.jsonl, summary.json).", ""]
    path = out / REPORT_NAME
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(L))
    _remove_stale_figures(figs, "\n".join(L))
    return path


def _remove_stale_figures(figs: Path, report: str) -> None:
    """Delete the figures this report does not show (an earlier run of the folder with other
    stores or axes drew them): the folder's figures are this report's, never a mix."""
    import re

    shown = set(re.findall(rf"\({re.escape(FIGURES_DIR)}/([^)]+\.png)\)", report))
    if figs.is_dir():
        for p in figs.glob("*.png"):
            if p.name not in shown:
                p.unlink(missing_ok=True)


WITHIN = 0.005  # "within 0.5 points" of the best graph found by any method (scores in [0, 1])


def trials_to_within(curves: list[dict[str, Any]], rows: list[dict[str, Any]], *, within: float = WITHIN):
    """(best, {(label, seed): trials or None}): the best training score any of these cells
    found, and per cell the 1-based trial after which its best so far is within `within` of
    it (None: never)."""
    keys = {(r["store"], r["label"], r["seed"], r["train"], r["budget_spec"], r["trials_budget"]) for r in rows}
    by: dict[tuple, list[float | None]] = {}
    for c in curves:
        k = (c["store"], c["label"], c["seed"], c["train"], c["budget_spec"], c["trials_budget"])
        if k in keys:
            by.setdefault(k, []).append(c["best_so_far"])
    finals = [max((x for x in v if x is not None), default=None) for v in by.values()]
    finals = [x for x in finals if x is not None]
    if not finals:
        return None, {}
    best = max(finals)
    out = {}
    for (_store, label, seed, *_), v in by.items():
        out[(label, seed)] = next((i + 1 for i, x in enumerate(v) if x is not None and x >= best - within - 1e-12), None)
    return best, out


def graph_section(sl, curves: list[dict[str, Any]], figs: Path, *, out: Path) -> list[str]:
    """The paper-style tables of a graph sweep (Agent-REINFORCE, arXiv 2511.00086): final test
    accuracy with its question interval, trials to the best and to within 0.5 points of the best
    graph any searcher found, the fixed-architecture references, and accuracy against latency."""
    L = ["## 5. Collaboration graphs: test accuracy, trials to the best, accuracy and latency", "",
         "Per store, budget and trial budget: the graph each search picked, scored on the test questions (mean ± sd "
         "over seeds; *95% CI*: the mean of its interval over test questions). *trials to best score*: trials until the "
         "search's own best; *to within 0.5 pt*: trials until its best so far came within 0.005 of the best training "
         "score any searcher of the sweep found (mean over the seeds that got there; *reached* counts them). The "
         "references are fixed architectures replayed for the same budget (search/spaces/graph_report.py): the best "
         "pure-parallel graph (one solve node) and the best pure-sequential graph (solve, then a refine chain); "
         "*pick - reference*: the mean over seeds of the pick's paired advantage on the test questions.", ""]
    for store in sl.stores:
        mt = sl.main_train(store)
        for budget, trials in sl.combos(store):
            rs_all = [r for r in sl.select(store, None, mt, budget, trials) if r.get("space") == "graph"]
            if not rs_all:
                continue
            best, reach = trials_to_within(curves, rs_all)
            rows, lat_rows = [], []
            for label in sl.labels:
                rs = [r for r in rs_all if r["label"] == label]
                if not rs:
                    continue
                got = [reach.get((label, r["seed"])) for r in rs]
                ok = [x for x in got if x is not None]
                ci = [(r["test_ci_lo"], r["test_ci_hi"]) for r in rs if r.get("test_ci_lo") is not None]
                top = Counter(r["config"] for r in rs if r["config"]).most_common(1)
                rows.append([label, str(len(rs)), _ms(r["test_score"] for r in rs),
                             f"[{np.mean([a for a, _ in ci]):.3f}, {np.mean([b for _, b in ci]):.3f}]" if ci else "-",
                             _ms(r["train_score"] for r in rs), _ms((r["trials_to_best"] for r in rs), 3),
                             _n(_mean(ok)) if ok else "-", f"{len(ok)}/{len(rs)}",
                             " / ".join(_ms((r[f"ref_{f}_pick_minus"] for r in rs), 2) for f in ("parallel", "sequential")),
                             f"`{top[0][0]}` ({top[0][1]}/{len(rs)})" if top else "-"])
                lat_rows.append([label, _ms(r["accuracy"] for r in rs), _ms((r["latency"] for r in rs), 3),
                                 _ms(r["test_accuracy"] for r in rs), _ms((r["test_latency"] for r in rs), 3)])
            r0 = rs_all[0]
            for fam in ("parallel", "sequential"):
                if r0.get(f"ref_{fam}_graph"):
                    rows.append([f"*pure-{fam} (reference)*", "-", _f(r0[f"ref_{fam}_test"]),
                                 f"[{r0[f'ref_{fam}_test_ci_lo']:.3f}, {r0[f'ref_{fam}_test_ci_hi']:.3f}]",
                                 _f(r0[f"ref_{fam}_train"]), "-", "-", "-", "-", f"`{r0[f'ref_{fam}_graph']}`"])
                    lat_rows.append([f"*pure-{fam} (reference)*", "-", "-", _f(r0[f"ref_{fam}_test_accuracy"]),
                                     _f(r0[f"ref_{fam}_test_latency"], 3)])
            refs = ", ".join(f"pure-{f} {_f(r0[f'ref_{f}_train'])}" for f in ("parallel", "sequential")
                             if r0.get(f"ref_{f}_train") is not None)
            L += [f"**{store}**, {r0['train_questions']} train q, budget {_f(r0['budget'])} units, trial budget "
                  f"{_axis_label(trials, 'all')}; best training score of any searcher: {_f(best)}"
                  + (f" (the references' training scores: {refs})" if refs else ""), ""]
            L += _table(["searcher", "seeds", "test", "95% CI", "train", "trials to best score", "to within 0.5 pt",
                         "reached", "pick - reference (parallel / sequential)", "most picked graph"], rows) + [""]
            L += ["Accuracy and latency of the picks (mean over seeds; latency: mean seconds per question, the "
                  "longest path):", ""]
            L += _table(["searcher", "train accuracy", "train latency s", "test accuracy", "test latency s"],
                        lat_rows) + [""]
            L += _sweep_front(out, rs_all)
    return L


def _sweep_front(out: Path, rows: list[dict[str, Any]]) -> list[str]:
    """The accuracy-latency Pareto front over every graph the searches of one objective
    evaluated (the union of their fronts), with who found each point."""
    from ..spaces.graph_report import pareto_front

    pts: dict[str, dict[str, Any]] = {}
    for r in rows:
        for p in (_summary(out, r).get("graph") or {}).get("pareto") or []:
            e = pts.setdefault(p["graph"], {**p, "by": set()})
            e["by"].add(r["label"])
    if not pts:
        return []
    items = list(pts.values())
    front = [items[i] for i in pareto_front([(p["accuracy"], p["latency"]) for p in items])]
    L = ["Pareto front of training accuracy against latency over every graph these searches evaluated within the "
         "budget (each cell's front is in its summary.json and pareto.png):", ""]
    L += _table(["train accuracy", "latency s", "units", "graph", "found by"],
                [[_f(p["accuracy"]), _f(p["latency"], 3), _f(p["units"], 3), f"`{p['graph']}`",
                  ", ".join(sorted(p["by"]))] for p in front]) + [""]
    return L


def _llm_part(rs: list[dict[str, Any]]) -> str:
    """Trials the LLM proposed of all trials, over the seeds, and answers usable of those asked,
    with malformed answers, fills and endpoint failures ("-" for searchers without an LLM)."""
    rs = [r for r in rs if r.get("llm_calls") is not None]
    if not rs:
        return "-"
    tot = lambda k: sum(int(r.get(k) or 0) for r in rs)  # noqa: E731
    return (f"{tot('llm_trials')}/{tot('trials')} (usable {tot('llm_usable')}/{tot('llm_calls')}, "
            f"malformed {tot('llm_malformed')}, fills {tot('llm_fills')}, endpoint failures {tot('llm_endpoint_failures')})")


def _versus_best(out: Path, found: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
    """Per searcher: its test score minus the best searcher's (highest mean test score), paired
    over the test questions and seeds (search.report.paired_difference), as one cell."""
    from ..report import paired_difference

    pq: dict[str, dict[int, list[float]]] = {}
    for label, rs in found.items():
        for r in rs:
            v = _summary(out, r).get("test", {}).get("per_question")
            if v is not None:
                pq.setdefault(label, {})[r["seed"]] = v
    means = {label: _mean(r["test_score"] for r in rs) for label, rs in found.items()}
    ranked = [x for x in sorted(means, key=lambda k: -(means[k] if means[k] is not None else -math.inf)) if x in pq]
    if not ranked:
        return {}
    best = ranked[0]
    out_cells = {best: "best"}
    for label in ranked[1:]:
        if len({len(v) for v in (*pq[label].values(), *pq[best].values())}) != 1:
            out_cells[label] = "-"
            continue
        d = paired_difference(pq[label], pq[best])
        seeds = "" if d["seeds_lo"] is None else f"; seeds [{d['seeds_lo']:+.3f}, {d['seeds_hi']:+.3f}]"
        out_cells[label] = (f"{d['diff']:+.3f} (questions [{d['questions_lo']:+.3f}, {d['questions_hi']:+.3f}]"
                            f"{seeds}): {'beyond noise' if d['beyond_noise'] else 'within noise'}")
    return out_cells


def _summary(out: Path, row: dict[str, Any]) -> dict:
    """A finished cell's summary.json ({} when unreadable: its results row is all the report has)."""
    try:
        return json.loads((Path(out) / row["cell"] / "summary.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _guideline_rows(out: Path, sl) -> list[str]:
    lines: list[str] = []
    for store in sl.stores:
        mt = sl.main_train(store)
        for label in sl.labels:
            rs = sorted(sl.select(store, label, mt), key=lambda r: (r["seed"], str(r["budget_spec"])))
            if not rs:
                continue
            hist = _summary(out, rs[0]).get("guidelines")
            if not hist:
                continue
            lines += [f"**{store}, {label}** (seed {rs[0]['seed']}, `{rs[0]['cell']}`)", ""]
            for h in hist:
                items = h.get("guidelines") or h.get("knowledge") or ([h["analysis"]] if h.get("analysis") else [])
                text = "; ".join(str(x) for x in items)[:600]
                lines.append(f"- round {h.get('round')}, after trial {h.get('after_trial')}: {text}")
            lines.append("")
    return lines


def _seed_text(seeds) -> str:
    seeds = list(seeds)
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]} ({len(seeds)})"
    return ",".join(map(str, seeds))


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path) -> None:
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)


def _trials_text(rs) -> str:
    """Mean trials per search; a scanning grid's are its picks, so its scan is named beside them."""
    text = _n(_mean(r["trials"] for r in rs))
    scanned = [r.get("scanned") for r in rs if r.get("scanned")]
    return f"{text} (scan of {_n(_mean(scanned))})" if scanned else text


def _plot_robustness(series, path: Path, title: str) -> None:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6, 3.8), dpi=100)
    from ..report import MARKERS

    # searchers often tie (the same pick at every size): each line is dodged sideways by a
    # little and has its own marker and dash, so that tied lines all show instead of one
    span = max((max(xs) - min(xs) for _, xs, _, _ in series if xs), default=0.0) or max(
        (max(xs) for _, xs, _, _ in series if xs), default=1.0)
    k = len(series)
    for i, (label, xs, ms, sds) in enumerate(series):
        order = np.argsort(xs)
        x, m, s = np.array(xs, dtype=float)[order], np.array(ms)[order], np.array(sds)[order]
        x = x + (i - (k - 1) / 2) * 0.015 * span
        ax.errorbar(x, m, yerr=s, marker=MARKERS[i % len(MARKERS)], capsize=3, linewidth=1.4, markersize=5,
                    linestyle=("-", "--", "-.", ":")[i % 4], label=label, zorder=2 + i)
    ax.set_xlabel("training questions")
    ax.set_ylabel("test score of the found config")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    _save(plt, fig, path)


def _plot_curves(series, path: Path, title: str, optimum: float | None) -> None:
    from ..report import draw_curves

    plt = _figure()
    fig, ax = plt.subplots(figsize=(6, 3.8), dpi=100)
    curves, bands = [], []
    for label, ys in series:
        n = max(len(y) for y in ys)
        a = np.full((len(ys), n), np.nan)
        for i, y in enumerate(ys):
            v = np.array([np.nan if x is None else x for x in y], dtype=float)
            a[i, : len(v)] = v
            a[i, len(v):] = v[-1]  # a search that stopped keeps its last value
        with np.errstate(all="ignore"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                mean, lo, hi = np.nanmean(a, axis=0), np.nanmin(a, axis=0), np.nanmax(a, axis=0)
        curves.append((f"{label} ({len(ys)} seeds)", mean))
        bands.append((lo, hi))
    draw_curves(ax, curves, optimum, band=bands)
    ax.set_xlabel("trial")
    ax.set_ylabel("best training score so far")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    _save(plt, fig, path)
