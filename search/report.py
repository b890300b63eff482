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


# What an LLM contributed: of the trials, those the agent proposed ("llm"; "llm-rejected",
# "llm-repeat", "llm-empty": the discovery agent's failed rounds), those a searcher filled in
# around unusable answers ("fill"), and the consult loop's counters (search/llm/agent.py)
PROBLEM_COUNTERS = ("malformed_json", "oversized_answers", "schema_errors")
NOT_PROBLEMS = {"llm_calls", "usable_answers", "retries", "endpoint_failures", "context_overflows", "fills",
                "duplicates"}


def llm_contribution(trials: Sequence[Trial], states: Sequence[dict]) -> dict[str, Any] | None:
    """How much of a search came from the LLM (None for a searcher that asks none): trials by
    source and the share proposed by the LLM, answers asked and usable, malformed or otherwise
    refused answers, feedback retries, fills, endpoint failures, context overflows, and the
    structured-output mode in use."""
    st = next((x for x in reversed(states) if isinstance(x, dict) and "counters" in x
               and "llm_calls" in (x.get("counters") or {})), None)
    if st is None:
        return None
    c = {k: int(v) for k, v in st["counters"].items()}
    sources: dict[str, int] = {}
    for t in trials:
        sources[t.source or "-"] = sources.get(t.source or "-", 0) + 1
    by_llm = sources.get("llm", 0)
    calls = c.get("llm_calls", 0)
    return {
        "trials": len(trials),
        "llm_trials": by_llm,
        "llm_share": by_llm / len(trials) if trials else None,
        "sources": sources,
        "calls": calls,
        "usable_answers": c.get("usable_answers", 0),
        "usable_share": c.get("usable_answers", 0) / calls if calls else None,
        "malformed_answers": sum(c.get(k, 0) for k in PROBLEM_COUNTERS),
        "refused_answers": sum(v for k, v in c.items() if k not in NOT_PROBLEMS and k not in PROBLEM_COUNTERS),
        "retries": c.get("retries", 0),
        "fills": c.get("fills", 0),
        "endpoint_failures": c.get("endpoint_failures", 0),
        "context_overflows": c.get("context_overflows", 0),
        "structured": st.get("llm_structured"),
    }


def contribution_text(c: dict[str, Any] | None) -> str:
    """One line: the LLM's share of the trials and what went wrong on the way."""
    if not c:
        return "-"
    share = "-" if c["llm_share"] is None else f"{c['llm_share']:.0%}"
    usable = "-" if c["usable_share"] is None else f"{c['usable_share']:.0%}"
    others = ", ".join(f"{k} {v}" for k, v in sorted(c["sources"].items()) if k != "llm")
    return (f"{c['llm_trials']} of {c['trials']} trials proposed by the LLM ({share}; others: {others or 'none'}); "
            f"{c['usable_answers']} of {c['calls']} answers usable ({usable}); {c['malformed_answers']} malformed, "
            f"{c['refused_answers']} refused by the space or budget, {c['retries']} feedback retries, "
            f"{c['fills']} fills, {c['endpoint_failures']} endpoint failures, {c['context_overflows']} context "
            f"overflows; structured output: {c.get('structured') or '-'}")


# --------------------------------------------------------------------------------------------
# One search


def scan_work(states: Sequence[dict]) -> dict[str, Any] | None:
    """What a grid that scanned the whole space did (its state: configurations scanned, how
    many were feasible, the scans' wall time, each selection rule's pick), or None."""
    for st in reversed(states):
        if isinstance(st, dict) and st.get("scanned"):
            return {"scanned": int(st["scanned"]), "feasible": st.get("scan_feasible"),
                    "wall_s": float(st.get("scan_s") or 0.0), "picks": st.get("scan_picks"),
                    "top": st.get("scan_top")}
    return None


MATERIAL = ("guidelines", "knowledge", "analysis")  # what an LLM searcher writes about the search


def guideline_history(states: Sequence[dict]) -> list[dict[str, Any]] | None:
    """The LLM searchers' guidelines (AgentTTS), knowledge (MLCopilot) or analysis (AgentHPO),
    each time they changed: [{"round", "after_trial", "guidelines"|...}], or None for a searcher
    that writes none. `states` holds the searcher's state after each trial, then once at the end."""
    out: list[dict[str, Any]] = []
    last = None
    for i, st in enumerate(states):
        if not isinstance(st, dict):
            continue
        material = {k: st[k] for k in MATERIAL if k in st and st[k]}
        if not material or material == last:
            continue
        last = material
        rnd = st.get("round", (st.get("counters") or {}).get("llm_calls"))
        out.append({"round": rnd, "after_trial": min(i + 1, len(states) - 1), **material})
    return out if any(any(k in st for k in MATERIAL) for st in states if isinstance(st, dict)) else None


def summarize(header: dict[str, Any], trials: Sequence[Trial], states: Sequence[dict], *, test: dict | None,
              optimum: dict | None, replay_s: float, searcher_s: float | None = None, wall_s: float | None = None,
              stop: str = "", selection=None) -> dict[str, Any]:
    """Everything the summary table shows, for other tools (summary.json). The picked point's
    cost is under the space's cost unit ("units" for configurations, "tokens" for controllers).
    `selection` (search/selection.py) is the final pick; None: the highest training mean."""
    from replay.stats import question_interval

    from .selection import select

    if selection is None:
        selection = select(trials, "mean")
    b = selection.trial
    top = best_trial(trials)  # the search's best training mean: what its efficiency is measured by
    unit = header.get("cost_unit", "units")
    llm_s, llm_tok = llm_totals(trials, states)
    opt_score = optimum.get("score") if optimum else None
    reach = trials_to_reach(trials, opt_score)
    scan = scan_work(states)
    best = None
    if b is not None:
        best = {"config": b.label, "point": b.point, "train_score": b.score, "train_stderr": b.stderr, unit: b.cost,
                "tokens": b.tokens}
        best.update({k: v for k, v in b.metrics.items() if isinstance(v, (int, float))})
        best.update({"trial": b.number + 1, "source": b.source})
        if b.per_question is not None:
            ci = question_interval(b.per_question)
            best.update({"train_ci_lo": ci.lo, "train_ci_hi": ci.hi})
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
        "max_fallback": (header.get("space") or {}).get("max_fallback"),
        "trials": len(trials),
        "feasible_trials": sum(1 for t in trials if t.feasible),
        "infeasible_trials": sum(1 for t in trials if not t.feasible),
        "infeasible_fallback": sum(1 for t in trials if not t.feasible and "fallback" in t.why_infeasible),
        "stop": stop,
        "selection": selection.as_dict(),
        "best": best,
        "test": test,
        "trials_to_best": None if top is None else trials_to_reach(trials, top.score),
        "optimum": optimum,
        "trials_to_optimum": reach,
        "reached_optimum": None if opt_score is None else reach is not None,
        "scan": scan,
        "guidelines": guideline_history(states),
        "replay_s": replay_s + (scan["wall_s"] if scan else 0.0),
        "searcher_s": searcher_s,
        "wall_s": wall_s,
        "llm_s": llm_s,
        "llm_tokens": llm_tok,
        "llm_counters": next((st["counters"] for st in reversed(states) if isinstance(st, dict) and "counters" in st),
                             None),
        "llm_contribution": llm_contribution(trials, states),
    }


def _fmt(x, digits=4) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        if not math.isfinite(x):
            return "-"
        return f"{x:.{digits}g}"
    return str(x)


def _interval(d: dict, lo: str, hi: str) -> str:
    if d.get(lo) is None or d.get(hi) is None:
        return ""
    return f"; 95% question interval [{d[lo]:.3f}, {d[hi]:.3f}]"


def _to_best_text(s: dict[str, Any], b: dict[str, Any]) -> str:
    """Trials until the search first reached its best training mean; the picked configuration
    (a selection rule's choice, ties to the costlier...) may be a later trial: say which."""
    n = s.get("trials_to_best")
    if n is None:
        return "-"
    text = f"{n} (trials until the best training mean was first reached"
    if b.get("trial") is not None and b["trial"] != n:
        text += f"; the picked configuration is trial {b['trial']}"
    return text + ")"


def summary_table(s: dict[str, Any], space) -> str:
    """The summary as the `search` command prints it; `space` words the budget and costs."""
    b = s.get("best") or {}
    t = s.get("test") or {}
    o = s.get("optimum") or {}
    sel = s.get("selection") or {}
    scan = s.get("scan") or {}
    unit = s.get("cost_unit", "units")

    def cost(d) -> str:
        tokens = "" if unit == "tokens" else f", {_fmt(d.get('tokens'))} tokens per question"
        measured = ""
        if d.get("measured_units") is not None:  # configurations: the expected cost decides; say what was drawn
            measured = f" (expected; measured {_fmt(d['measured_units'])} on train"
            if t.get("measured_units") is not None:
                measured += f", {_fmt(t['measured_units'])} on test"
            measured += ")"
        return ("-" if d.get(unit) is None else space.cost_text(d[unit])) + measured + tokens

    over = ""
    if t and not t.get("within_budget", True):
        over = f" (costs {space.cost_text(t[unit]) if t.get(unit) is not None else '-'} on test: over budget)"
    picked = b.get("config", "none feasible")
    if b and sel:
        picked += f"  (rule {sel['rule']}: {sel['why']}"
        if sel.get("best_mean_config") and sel["best_mean_config"] != b.get("config"):
            picked += f"; the best training mean was {sel['best_mean_config']}"
        if sel.get("tied_with_best") is not None:
            picked += f"; {sel['tied_with_best']} of {sel['candidates']} feasible trials tied with it"
        picked += ")"
        if sel.get("note"):
            picked += f"  [{sel['note']}]"
    fb = ""
    if b.get("fallback_rate") is not None and len((s.get("space") or {}).get("stages") or ()) > 1:
        fb = f"{b['fallback_rate']:.1%} of draws on train"
        if t.get("fallback_rate") is not None:
            fb += f", {t['fallback_rate']:.1%} on test"
        fb += " (the upstream answer was not collected: replay fell back to another pool)"
        if s.get("max_fallback") is not None:
            fb += f"; --max-fallback {s['max_fallback']:.1%}: {s.get('infeasible_fallback', 0)} trials over it"
    if scan:  # the scan is replay: the total leads, then the scan's share
        feas = scan.get("feasible")
        work = (f"{_fmt(s.get('replay_s'), 3)} s (search {_fmt(s.get('wall_s'), 3)} s), of which the scan: "
                f"{scan['scanned']:,} configurations ({'-' if feas is None else f'{feas:,}'} within budget) in "
                f"{_fmt(scan.get('wall_s'), 3)} s; {s['trials']} picked as trials")
    else:
        work = f"{_fmt(s.get('replay_s'), 3)} s (search {_fmt(s.get('wall_s'), 3)} s)"
    rows = [
        ("store", f"{s['store_name']}{' (SYNTHETIC)' if s.get('synthetic') else ''}"),
        ("searcher", f"{s['searcher']} (seed {s['seed']}{', ' + json.dumps(s['options']) if s.get('options') else ''})"),
        *space.summary_rows(),
        ("questions", f"{s['train_questions']} train x {s['replicates']} replicates, {s['test_questions']} test"),
        ("trials", f"{s['trials']} ({_infeasible_text(s, space)})"
                   f"{'; ' + s['stop'] if s.get('stop') else ''}"),
        ("best config", picked),
        ("train score", f"{_fmt(b.get('train_score'))} +- {_fmt(b.get('train_stderr'), 2)} (replicate error)"
                        + _interval(b, "train_ci_lo", "train_ci_hi")),
        ("test score", f"{_fmt(t.get('score'))} +- {_fmt(t.get('stderr'), 2)} (replicate error)"
                       + _interval(t, "ci_lo", "ci_hi") + (f" over {t['questions']} questions" if t.get("questions") else "")
                       + over),
        ("cost", cost(b) if b else "-"),
        *([("fallback", fb)] if fb else []),
        ("trials to best score", _to_best_text(s, b)),
        ("grid optimum", f"{o.get('config')} train {_fmt(o.get('score'))}" if o else
         "unknown (space too large)" if space.size() is not None else "unknown (no finite grid)"),
        ("trials to optimum", "-" if not o else ("not reached" if s.get("trials_to_optimum") is None else str(s["trials_to_optimum"]))),
        ("replay time", work),
        ("LLM", f"{_fmt(s.get('llm_s'), 3)} s, {s.get('llm_tokens', 0)} tokens"
                + (f"; {json.dumps(s['llm_counters'])}" if s.get("llm_counters") else "")),
        *([("LLM contribution", contribution_text(s["llm_contribution"]))] if s.get("llm_contribution") else []),
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


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def draw_curves(ax, curves: list[tuple[str, np.ndarray]], optimum: float | None, *, band=None) -> None:
    """Best-so-far step lines over a grey dashed optimum line: the optimum is drawn first and
    below (zorder 1), each search above it, solid, with a marker where it improves, so that a
    search that sits at the optimum from its first trial still shows (it used to hide under
    the black dashed line). `band`: per curve (lo, hi) arrays for a shaded range, or None."""
    if optimum is not None:
        ax.axhline(optimum, color="0.55", linestyle=(0, (4, 3)), linewidth=1.2, zorder=1,
                   label=f"grid optimum {optimum:.4g}")
    for i, (label, ys) in enumerate(curves):
        ys = np.asarray(ys, dtype=float)
        xs = np.arange(1, len(ys) + 1)
        prev = np.concatenate([[np.nan], ys[:-1]])
        better = np.flatnonzero(np.isfinite(ys) & ~(ys <= prev))  # first finite value, then each improvement
        line, = ax.step(xs, ys, where="post", label=label, linewidth=1.8, zorder=3 + i,
                        marker=MARKERS[i % len(MARKERS)], markevery=list(better), markersize=4)
        if band is not None and band[i] is not None:
            ax.fill_between(xs, band[i][0], band[i][1], step="post", alpha=0.15, color=line.get_color(), linewidth=0,
                            zorder=2)


def plot_curves(curves: list[tuple[str, np.ndarray]], path: Path, title: str, optimum: float | None = None,
                ylabel: str = "best training score so far") -> None:
    """Step plot of best-so-far curves, written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    draw_curves(ax, curves, optimum)
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
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(str(summ), f"not valid JSON ({' '.join(str(e).split())})") from None
        except RecursionError:
            raise InputError(str(summ), "not valid JSON (nested too deeply)") from None
    return header, [trial_from_record(r) for r in records], summary


def _infeasible_text(s: dict[str, Any], space) -> str:
    """'3 over budget', or with a fallback limit '1 over budget, 2 over the fallback limit'."""
    fb = s.get("infeasible_fallback") or 0
    text = f"{s['infeasible_trials'] - fb} {getattr(space, 'infeasible_text', 'infeasible')}"
    return text + (f", {fb} over the fallback limit" if fb else "")


def compare_rows(paths: Sequence[str | os.PathLike]) -> tuple[list[dict[str, Any]], list[tuple[str, np.ndarray]], float | None]:
    """One row and one best-so-far curve per search; every search of one store and one space kind.
    A row's `best config` is the search's final pick (its summary's, by its selection rule)."""
    rows, curves, optima, kinds = [], [], set(), set()
    for p in paths:
        header, trials, summary = load_search(p)
        kinds.add((header.get("space_kind", "config"), header.get("cost_unit", "units")))
        top = best_trial(trials)
        # a summary written before the archive grew (a resumed search not reported yet) is stale:
        # its pick is not this archive's
        fresh = summary is not None and summary.get("trials") == len(trials)
        picked = ((summary or {}).get("best") or {}) if fresh else {}
        opt = ((summary or {}).get("optimum") or {}).get("score")
        if opt is not None:
            optima.add(round(float(opt), 12))
        test = (summary or {}).get("test") or {}
        group = str(header.get("searcher"))
        if header.get("options"):
            group += " " + ",".join(f"{k}={v}" for k, v in sorted(header["options"].items()))
        label = f"{header.get('searcher')} s{header.get('seed')}"
        if header.get("options"):
            label += " " + ",".join(f"{k}={v}" for k, v in sorted(header["options"].items()))
        unit = header.get("cost_unit", "units")
        rows.append({
            "search": label,
            "group": group,
            "seed": header.get("seed"),
            "store": header.get("store_name"),
            "synthetic": bool(header.get("synthetic")),
            "trials": len(trials),
            "best config": picked.get("config") or (top.label if top else None),
            "rule": (((summary or {}).get("selection") or {}).get("rule") if fresh else None) or "mean",
            "train": picked.get("train_score", top.score if top else None),
            "test": test.get("score"),
            "test 95% CI": (f"[{test['ci_lo']:.3f}, {test['ci_hi']:.3f}]" if test.get("ci_lo") is not None
                            and test.get("ci_hi") is not None else None),
            unit: picked.get(unit, top.cost if top else None),
            "to best score": trials_to_reach(trials, top.score) if top else None,
            "to optimum": trials_to_reach(trials, opt) if opt is not None else None,
            "optimum": opt,
            "LLM share": _llm_share(trials, summary if fresh else None),
            "path": str(p),
            "test_per_question": test.get("per_question"),
            "test_ids": header.get("test"),
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


def _llm_share(trials: Sequence[Trial], summary: dict | None) -> str | None:
    """"k/n (usable u/c)": trials the LLM proposed, answers usable; None for a search without an LLM."""
    c = (summary or {}).get("llm_contribution")
    if c is None:
        if not any(t.source == "llm" or t.source == "fill" for t in trials):
            return None
        return f"{sum(t.source == 'llm' for t in trials)}/{len(trials)}"
    return f"{c['llm_trials']}/{c['trials']} (usable {c['usable_answers']}/{c['calls']})"


def paired_difference(a: dict[int, Sequence[float]], b: dict[int, Sequence[float]]) -> dict[str, Any]:
    """Whether two searchers' test scores differ beyond noise, paired over seeds and questions.

    `a` and `b` map a seed to its search's per-question test scores (the same test questions,
    replayed with the same seed and replicates: common random numbers). Two 95% intervals for
    mean(A) - mean(B): over questions (the per-question scores averaged over each searcher's
    seeds, paired question by question: the noise of which questions were drawn) and over seeds
    (each seed's mean test score, paired by seed when both ran the same seeds, else a Welch
    interval: the noise of the searches themselves; none with one seed each). The difference is
    beyond noise when every interval there is excludes 0."""
    from replay.stats import paired_interval, question_interval, t_quantile

    qa = np.mean([np.asarray(v, dtype=float) for v in a.values()], axis=0)
    qb = np.mean([np.asarray(v, dtype=float) for v in b.values()], axis=0)
    q_int = paired_interval(qa, qb)
    ma = {k: float(np.mean(v)) for k, v in a.items()}
    mb = {k: float(np.mean(v)) for k, v in b.items()}
    s_int = None
    if set(ma) == set(mb) and len(ma) > 1:
        s_int = question_interval([ma[k] - mb[k] for k in sorted(ma)], bounds=(-1.0, 1.0))
        s_lo, s_hi = s_int.lo, s_int.hi
    elif len(ma) > 1 and len(mb) > 1:
        xa, xb = np.array(list(ma.values())), np.array(list(mb.values()))
        d = xa.mean() - xb.mean()
        half = t_quantile(0.975, min(len(xa), len(xb)) - 1) * math.sqrt(xa.var(ddof=1) / len(xa) + xb.var(ddof=1) / len(xb))
        s_lo, s_hi = max(d - half, -1.0), min(d + half, 1.0)
    else:
        s_lo = s_hi = None
    beyond = q_int.excludes(0.0) and (s_lo is None or not (s_lo <= 0.0 <= s_hi))
    return {"diff": float(qa.mean() - qb.mean()), "questions_lo": q_int.lo, "questions_hi": q_int.hi,
            "seeds_lo": s_lo, "seeds_hi": s_hi, "seeds": len(ma) if set(ma) == set(mb) else f"{len(ma)}/{len(mb)}",
            "questions": int(len(qa)), "beyond_noise": bool(beyond)}


def differences(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every searcher (its seeds pooled) against the first one given: `paired_difference`."""
    groups: dict[str, dict[int, Sequence[float]]] = {}
    ids: dict[str, Any] = {}
    for r in rows:
        if r.get("test_per_question") is None:
            continue
        groups.setdefault(r["group"], {})[r["seed"]] = r["test_per_question"]
        ids.setdefault(r["group"], r.get("test_ids"))
    names = list(groups)
    out = []
    for name in names[1:]:
        ref = names[0]
        if ids[name] != ids[ref]:
            out.append({"searcher": name, "vs": ref, "note": "different test questions: not comparable"})
            continue
        out.append({"searcher": name, "vs": ref, **paired_difference(groups[name], groups[ref])})
    return out


def differences_table(diffs: list[dict[str, Any]]) -> str:
    def iv(lo, hi):
        return "-" if lo is None else f"[{lo:+.3f}, {hi:+.3f}]"

    rows = []
    for d in diffs:
        if "note" in d:
            rows.append({"searcher - reference": f"{d['searcher']} - {d['vs']}", "test diff": "-",
                         "95% over questions": "-", "95% over seeds": "-", "beyond noise": d["note"]})
            continue
        rows.append({"searcher - reference": f"{d['searcher']} - {d['vs']}", "test diff": f"{d['diff']:+.4f}",
                     "95% over questions": iv(d["questions_lo"], d["questions_hi"]),
                     "95% over seeds": iv(d["seeds_lo"], d["seeds_hi"]),
                     "beyond noise": "yes" if d["beyond_noise"] else "no"})
    return table(rows, ("searcher - reference", "test diff", "95% over questions", "95% over seeds", "beyond noise"))


def table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    cells = [[_fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(x[i]) for x in cells)) if cells else len(c) for i, c in enumerate(columns)]
    line = lambda xs: "  ".join(f"{x:<{w}}" for x, w in zip(xs, widths))  # noqa: E731
    return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(x) for x in cells])


def compare_columns(unit: str = "units", llm: bool = False) -> tuple[str, ...]:
    return ("search", "trials", "best config", "rule", "train", "test", "test 95% CI", unit, "to best score", "to optimum",
            *(("LLM share",) if llm else ()))


def expand_seed_folders(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Each path as given, except a folder of a multi-seed search (`search --seeds`: no archive of
    its own, one `seed-N/` folder per seed), which stands for its seeds' searches in seed order, so
    that `search compare out/a out/b` pairs two searchers over their seeds."""
    out: list[Path] = []
    for p in map(Path, paths):
        seeds = sorted(p.glob("seed-*/archive.jsonl")) if p.is_dir() and not (p / "archive.jsonl").exists() else []
        seeds = [f.parent for f in seeds if f.parent.name[5:].isdigit()]
        out.extend(sorted(seeds, key=lambda f: int(f.name[5:])) if seeds else [p])
    return out


def compare(paths: Sequence[str | os.PathLike], out_png: str | os.PathLike | None = None
            ) -> tuple[str, list[dict], list[dict]]:
    """The comparison table, then (with two or more searchers) whether each differs from the
    first beyond noise (`differences`). Returns the text, one row per search, and the paired
    comparisons."""
    if not paths:
        raise InputError("search compare", "no archives given")
    rows, curves, optimum = compare_rows(expand_seed_folders(paths))
    if out_png is not None:
        kind = " (SYNTHETIC)" if rows[0]["synthetic"] else ""
        plot_curves(curves, Path(out_png), f"{rows[0]['store']}{kind}: best-so-far training score", optimum)
    unit = "tokens" if "tokens" in rows[0] and "units" not in rows[0] else "units"
    text = table(rows, compare_columns(unit, llm=any(r.get("LLM share") for r in rows)))
    diffs = differences(rows)
    if diffs:
        text += ("\n\nTest score against the first searcher, paired over the same test questions and seeds "
                 "(beyond noise: every 95% interval excludes 0):\n" + differences_table(diffs))
    elif len({r["group"] for r in rows}) > 1:
        text += "\n\n(no per-question test scores in these summaries: rerun the searches to compare them beyond noise)"
    for r in rows:
        r.pop("test_ids", None)
    return text, rows, diffs


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
        "test_ci": _mean_interval(summaries),
        "rules": sorted({((s.get("selection") or {}).get("rule") or "mean") for s in summaries}),
        "trials_to_best": ms(to_best),
        "trials_to_optimum": None if not known else {
            "reached": len(reached), "of": len(summaries),
            "mean": float(np.mean(reached)) if reached else None,
            "median": float(np.median(reached)) if reached else None,
        },
        "replay_s": float(sum(s.get("replay_s") or 0 for s in summaries)),
        "llm_s": float(sum(s.get("llm_s") or 0 for s in summaries)),
        "llm_tokens": int(sum(s.get("llm_tokens") or 0 for s in summaries)),
        "llm_contribution": _pooled_contribution(summaries),
    }


def _pooled_contribution(summaries: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The LLM contributions of several searches, added up (None: no LLM in any)."""
    cs = [s["llm_contribution"] for s in summaries if s.get("llm_contribution")]
    if not cs:
        return None
    out: dict[str, Any] = {k: sum(c[k] for c in cs) for k in ("trials", "llm_trials", "calls", "usable_answers",
                                                              "malformed_answers", "refused_answers", "retries", "fills",
                                                              "endpoint_failures", "context_overflows")}
    out["sources"] = {}
    for c in cs:
        for k, v in c["sources"].items():
            out["sources"][k] = out["sources"].get(k, 0) + v
    out["llm_share"] = out["llm_trials"] / out["trials"] if out["trials"] else None
    out["usable_share"] = out["usable_answers"] / out["calls"] if out["calls"] else None
    out["structured"] = ", ".join(sorted({str(c.get("structured")) for c in cs}))
    return out


def _mean_interval(summaries: Sequence[dict[str, Any]]) -> dict[str, float] | None:
    """The mean over seeds of the test score's 95% question interval, or None without one."""
    ends = [((s.get("test") or {}).get("ci_lo"), (s.get("test") or {}).get("ci_hi")) for s in summaries]
    ends = [(a, b) for a, b in ends if a is not None and b is not None]
    if not ends:
        return None
    return {"lo": float(np.mean([a for a, _ in ends])), "hi": float(np.mean([b for _, b in ends]))}


def seed_table(stats: dict[str, Any]) -> str:
    def pm(d):
        if not d or d.get("mean") is None:
            return "-"
        return f"{d['mean']:.4g} +- {d['std']:.2g}" if d.get("std") is not None else f"{d['mean']:.4g}"

    o = stats.get("trials_to_optimum")
    rows = [
        ("seeds", ",".join(str(s) for s in stats["seeds"])),
        ("train score", pm(stats["train_score"]) + f"  [{_fmt(stats['train_score']['min'])}, {_fmt(stats['train_score']['max'])}]"),
        ("test score", pm(stats["test_score"]) + f"  [{_fmt(stats['test_score']['min'])}, {_fmt(stats['test_score']['max'])}]"
                       " over seeds" + (f"; mean 95% question interval [{stats['test_ci']['lo']:.3f}, "
                                        f"{stats['test_ci']['hi']:.3f}]" if stats.get("test_ci") else "")),
        ("picked by", ", ".join(stats.get("rules") or ["mean"])),
        ("trials to best score", pm(stats["trials_to_best"]) + " (trials until the best training mean was first reached)"),
        ("trials to optimum", "unknown optimum" if o is None else
         f"reached in {o['reached']}/{o['of']} seeds; mean {_fmt(o['mean'])}, median {_fmt(o['median'])}"),
        ("replay time", f"{stats['replay_s']:.3g} s in all"),
        ("LLM", f"{stats['llm_s']:.3g} s, {stats['llm_tokens']} tokens in all"),
        *([("LLM contribution", contribution_text(stats["llm_contribution"]) + " (all seeds)")]
          if stats.get("llm_contribution") else []),
    ]
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)
