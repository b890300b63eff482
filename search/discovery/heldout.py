"""After a discovery search: the best program as a file, the rounds' time split, and the held-out
report (generalisation as the AutoTTS paper claims it).

    write_best_program(out, best, space)   # out/best_program.py, usable with --controller FILE:Class
    heldout_report(space, setup, best, out=out)

The held-out report runs the best program, unchanged, and the built-ins on:

- the search store's test questions, for every model of the store (the training model, and the
  model scales the program never saw);
- every question of every `--test-store` (another benchmark, e.g. one imported from the AutoTTS
  release with `collect import autotts`), for every model of that store that has probes;

with `heldout_replicates` replicates per question and the search's replay seed. Per target it
gives the rule's score for the program and each built-in; the program at the beta its training
score came from (beta*, chosen on the training questions only): its accuracy and tokens T; and
the comparison at equal tokens: the best accuracy of the program's curve and of each built-in's
within T tokens (every curve gets the same post-hoc choice of its best point within T), with the
paired difference's 95% interval over questions between the program and the best built-in
(replay.stats).
It writes `heldout.png`: one panel per target, the program's curve beside the built-ins'.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from replay.atomic import atomic_path
from replay.errors import ToolError
from replay.stats import paired_interval

from .evaluate import BUILTIN_NAMES, Program, builtin_curves, majority_reference, run_program
from .score import envelope_at

BEST_NAME = "best_program.py"
STATUS_WORDS = {"ok": "scored", "no_score": "ran without a score", "checks_failed": "failed the static checks",
                "load_failed": "failed to load", "timeout": "hit the wall-clock limit", "memory": "ran out of memory",
                "killed": "were killed", "error": "raised or acted impossibly"}
PLOT_NAME = "heldout.png"


def write_best_program(out: Path, best, space) -> Path:
    """The best program's source with a header saying what it scored and how to use it."""
    p: Program = best.point
    cls = best.metrics.get("class") or p.class_name
    head = (f"# Discovered by `search --space program` (trial {best.number + 1}): {space.ctx.rule.spec} = "
            f"{best.score:.4f} on the training questions of {space.ctx.store.name}/{space.ctx.model}.\n"
            f"# Use it: replay frontier {space.ctx.store.path} --controller {out / BEST_NAME}:{cls} --out frontier.png\n"
            "# (it runs in the sandbox like any controller of yours; docs/discovery.md)\n")
    path = out / BEST_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(head + p.source)
    return path


def round_times(trials: Sequence) -> dict[str, Any]:
    """Where a round's time goes: the LLM call(s), the static checks, starting the sandbox, the
    sweep, the traces (means over rounds, in seconds; rounds = trials proposed by an agent)."""
    keys = ("checks_s", "sandbox_start_s", "sweep_s", "trace_s", "evaluate_s")
    rows = []
    for t in trials:
        tm = (t.metrics or {}).get("timing") or {}
        llm = float((t.extra or {}).get("call_wall_s") or 0.0) if isinstance(t.extra, dict) else 0.0
        rows.append({"llm_s": llm, **{k: float(tm.get(k) or 0.0) for k in keys}})
    if not rows:
        return {"rounds": 0}
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    total = {k: float(np.sum([r[k] for r in rows])) for k in rows[0]}
    return {"rounds": len(rows), "mean": mean, "total": total}


def _targets(space, setup):
    """(label, store, model, question indices) to report on."""
    import replay

    out = []
    store = space.ctx.store
    for m in store.candidate_models(0):
        out.append((f"{store.name}/{m} (test)", store, m, setup.split.test))
    for path in space.settings.test_stores:
        st = replay.open(path)
        for m in st.candidate_models(0):
            out.append((f"{st.name}/{m} (all)", st, m, st.question_indices(None)))
    return out


def heldout_report(space, setup, best, *, out: Path | None) -> dict[str, Any]:
    """The held-out table (see the module docstring), and heldout.png in `out`."""
    rule = space.ctx.rule
    R = int(space.settings.heldout_replicates)
    seed = setup.replay_seed
    beta_star = best.metrics.get("operating_beta")
    rows, frames = [], []
    for label, store, model, qidx in _targets(space, setup):
        ctx = replace(space.ctx, store=store, model=model)
        row: dict[str, Any] = {"target": label, "store": store.name, "model": model, "questions": len(qidx),
                               "replicates": R, "synthetic": bool(store.synthetic)}
        try:
            pq: dict = {}
            curves = builtin_curves(ctx, qidx, R, seed, per_question=pq)
            ref = majority_reference(ctx, rule.n, qidx, R, seed) if rule.kind == "tokens" else None
            run = run_program(best.point, ctx, qidx, R, seed, reference=ref, feedback=False)
        except ToolError as e:  # e.g. a test store without probes: say so in its row, go on
            row["error"] = getattr(e, "problem", str(e))
            rows.append(row)
            continue
        if run.status not in ("ok", "no_score"):
            row["error"] = f"{run.status}: {run.error}"
            rows.append(row)
            continue
        red = rule.reduce(run.curve, ref)
        row["program_score"] = red.score
        row["builtin_scores"] = {n: rule.reduce(c, ref).score for n, c in curves.items()}
        k = min(range(len(run.curve)), key=lambda i: abs(run.curve[i].beta - (beta_star if beta_star is not None else 0.5)))
        p = run.curve[k]
        row.update({"beta_star": p.beta, "program_accuracy": p.accuracy, "program_tokens": p.tokens})
        # at equal tokens, symmetrically: the best accuracy of each curve within T = what the
        # program spent at beta* (each curve's best point within T, chosen on these questions)
        pacc, pj = envelope_at(run.curve, p.tokens)
        row["program_within_tokens"] = {"accuracy": pacc, "beta": run.curve[pj].beta, "tokens": run.curve[pj].tokens}
        at: dict[str, Any] = {}
        best_b = None
        for n in BUILTIN_NAMES:
            acc, j = envelope_at(curves[n], p.tokens)
            at[n] = {"accuracy": acc, "tokens": None if j is None else curves[n][j].tokens}
            if j is not None and (best_b is None or acc > best_b[1]):
                best_b = (n, acc, j)
        row["builtins_at_equal_tokens"] = at
        if best_b is not None:
            iv = paired_interval(run.per_question[pj], pq[best_b[0]][best_b[2]])
            row["vs_best_at_equal_tokens"] = {"builtin": best_b[0], "difference": iv.mean, "lo": iv.lo, "hi": iv.hi,
                                              "n": iv.n}
        row["curve"] = [c.to_json() for c in run.curve]
        rows.append(row)
        name = f"{label}"
        frames.append((name, "discovered", run.curve))
        frames += [(name, n, c) for n, c in curves.items()]
    if out is not None and frames:
        _plot(frames, Path(out) / PLOT_NAME, f"held out: {rule.spec}, {R} replicates")
    return {"rows": rows, "replicates": R, "beta_star": beta_star,
            "plot": str(Path(out) / PLOT_NAME) if out is not None and frames else None}


def _plot(frames, path: Path, title: str) -> None:
    import polars as pl

    from replay.controllers.frontier import pareto_mask, plot_frontier

    recs = [{"model": t, "controller": n, "tokens": p.tokens, "accuracy": p.accuracy} for t, n, c in frames for p in c]
    df = pl.DataFrame(recs)
    fronts = []
    for t in df["model"].unique(maintain_order=True):
        part = df.filter(pl.col("model") == t)
        fronts.append(pl.Series(pareto_mask(part["tokens"].to_numpy(), part["accuracy"].to_numpy())))
    plot_frontier(df.with_columns(on_front=pl.concat(fronts)), path, title=title)


def _f(x, fmt="{:.3f}") -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else fmt.format(x)


def report_rows(info: dict) -> list[tuple[str, str]]:
    """The printed summary's rows for a discovery search."""
    rows = []
    if info.get("statuses"):
        rows.append(("programs", ", ".join(f"{n} {STATUS_WORDS.get(k, k)}" for k, n in
                                           sorted(info["statuses"].items(), key=lambda x: -x[1]))))
    rt = info.get("round_times") or {}
    if rt.get("rounds"):
        m = rt["mean"]
        rows.append(("round time (mean)", f"LLM {m['llm_s']:.2f} s, checks {m['checks_s'] * 1e3:.1f} ms, sandbox start "
                                          f"{m['sandbox_start_s']:.2f} s, sweep {m['sweep_s']:.2f} s, traces "
                                          f"{m['trace_s']:.2f} s ({rt['rounds']} rounds)"))
    if info.get("best_program_file"):
        rows.append(("best program", info["best_program_file"]))
    ho = info.get("heldout") or {}
    for r in ho.get("rows") or []:
        if r.get("error"):
            rows.append((f"held out {r['target']}", f"error: {r['error']}"))
            continue
        b = r.get("builtin_scores") or {}
        at = r.get("builtins_at_equal_tokens") or {}
        vs = r.get("vs_best_at_equal_tokens")
        rows.append((f"held out {r['target']}",
                     f"score {_f(r.get('program_score'), '{:.4f}')} vs " +
                     ", ".join(f"{n} {_f(b.get(n), '{:.4f}')}" for n in BUILTIN_NAMES) +
                     f"; at beta* {r['beta_star']:g}: accuracy {r['program_accuracy']:.3f} @ {r['program_tokens']:,.0f} "
                     f"tokens; best within those tokens: program {_f((r.get('program_within_tokens') or {}).get('accuracy'))}, " +
                     ", ".join(f"{n} {_f((at.get(n) or {}).get('accuracy'))}" for n in BUILTIN_NAMES) +
                     ("" if not vs else f" (vs {vs['builtin']}: {vs['difference']:+.3f}, 95% [{vs['lo']:+.3f}, "
                                        f"{vs['hi']:+.3f}] over {vs['n']} q)")))
    return rows
