"""Running one controller program: checks, sandbox, beta sweep, score, traces; and the built-ins'
curves on the same questions and replicates, for comparison.

    run = run_program(program, ctx, objective)        # ProgramRun: status, curve, score, feedback, timing
    base = builtin_curves(ctx, objective)             # {"majority": [CurvePoint...], "adaptive": ...}

Every program gets sandboxes of its own (replay.controllers.sandboxed.load_program; `workers` of
them, started together, share its betas): loading it, its share of the beta sweep, and the traces
are each one call, each under the program's wall-clock limit, and the sandboxes are closed
afterwards whatever happened. Nothing a program does reaches
this process but a one-line error: an exception in its code, an impossible action, a loop past
the action guard, the wall-clock or memory limit, a crash or a kill (docs/sandbox.md). A program
that fails any check is not run at all.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from replay.controllers import Setting, evaluate_settings, step_arrays
from replay.controllers.base import ControllerError
from replay.errors import ToolError
from replay.stats import question_interval

from .checks import CheckReport, check_program
from .feedback import diagnose, pool_facts, render_trace, split_traces
from .score import CurvePoint, Reduced, ScoreRule

BUILTIN_NAMES = ("majority", "adaptive", "esc", "probe")
DIAG_REPLICATES = 4  # replicates per training question traced for the diagnostics
MAX_EVENTS = 20_000


@dataclass(frozen=True)
class Program:
    """A controller program: its source text and the class to load. `trace_requests` (question
    ids the agent asked to see traced) and `note` ride along and are not part of its identity."""

    source: str
    class_name: str = ""
    trace_requests: tuple[str, ...] = ()
    note: str = ""

    def __str__(self) -> str:  # how summaries written as JSON show it (the source is in the archive)
        return f"{self.class_name or '?'}#{self.key[:8]}"

    @property
    def key(self) -> str:
        import hashlib

        return hashlib.sha256(self.source.strip().encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Context:
    """What every program of one search runs against."""

    store: Any
    model: str
    rule: ScoreRule
    betas: tuple[float, ...]
    probe_cost: float = 0.0
    wall_s: float = 120.0  # per sandbox call: loading, the sweep, the traces
    workers: int = 1  # sandboxes that share a program's sweep (its betas), run at once
    memory_mb: int = 2048
    max_chars: int = 20_000
    worst: int = 3  # questions whose traces go back to the agent
    stage: Any = None

    @property
    def steps(self):
        return step_arrays(self.store, self.model, stage=self.stage)

    def limits(self):
        from replay.sandbox import Limits

        return Limits(wall_s=float(self.wall_s), memory_mb=int(self.memory_mb), fsize_mb=16, nproc=16)


@dataclass
class ProgramRun:
    status: str  # ok | checks_failed | load_failed | timeout | memory | killed | error | no_score
    error: str = ""
    checks: CheckReport | None = None
    name: str = ""
    curve: tuple[CurvePoint, ...] = ()
    per_question: np.ndarray | None = None  # accuracy [C, Q] per beta and question
    reduced: Reduced | None = None
    interval: dict | None = None  # question interval of the operating point's accuracy
    diagnostics: dict = field(default_factory=dict)
    traces_text: str = ""
    feedback: str = ""
    timing: dict = field(default_factory=dict)
    monotone: dict = field(default_factory=dict)


def classify(problem: str) -> str:
    p = problem.lower()
    if "wall-clock" in p:
        return "timeout"
    if "out of memory" in p or "memoryerror" in p:
        return "memory"
    if "killed by" in p or "crash" in p or "died" in p:
        return "killed"
    return "error"


def curve_from_results(results, betas) -> tuple[CurvePoint, ...]:
    return tuple(CurvePoint(float(b), r.score, r.stderr if math.isfinite(r.stderr) else 0.0, r.tokens, r.opened,
                            r.probes, dict(r.params)) for b, r in zip(betas, results))


def builtin_curves(ctx: Context, qidx, replicates: int, seed: int, *, per_question: dict | None = None
                   ) -> dict[str, tuple[CurvePoint, ...]]:
    """The built-ins' beta sweeps on these questions and replicates (compiled; same draws).
    `per_question`, when given, receives each one's accuracy per point and question [C, Q]."""
    from replay.controllers.frontier import sweep

    out = {}
    for name in BUILTIN_NAMES:
        settings = sweep(name, ctx.betas)
        res = evaluate_settings(ctx.store, ctx.model, settings, questions=qidx, replicates=replicates, seed=seed,
                                probe_cost=ctx.probe_cost, stage=ctx.stage)
        out[name] = curve_from_results(res, [s.beta for s in settings])
        if per_question is not None:
            per_question[name] = np.stack([r.per_question for r in res])
    return out


def majority_reference(ctx: Context, n: int, qidx, replicates: int, seed: int) -> tuple[float, float]:
    """(accuracy, tokens) of majority vote over n samples on these questions and replicates."""
    r = evaluate_settings(ctx.store, ctx.model, [Setting.make("majority", {"n": n})], questions=qidx,
                          replicates=replicates, seed=seed, probe_cost=ctx.probe_cost, stage=ctx.stage)[0]
    return r.score, r.tokens


def _curve_from_arrays(betas, params, arrays) -> tuple[tuple[CurvePoint, ...], np.ndarray]:
    score, tokens, opened, probes = arrays
    C, Q, R = score.shape
    pts = []
    for c in range(C):
        rep_means = score[c].mean(axis=0)
        se = float(rep_means.std(ddof=1) / math.sqrt(R)) if R > 1 else 0.0
        pts.append(CurvePoint(float(betas[c]), float(score[c].mean()), se, float(tokens[c].mean()),
                              float(opened[c].mean()), float(probes[c].mean()), dict(params[c])))
    return tuple(pts), score.mean(axis=2)


def monotonicity(curve: Sequence[CurvePoint]) -> dict:
    """How well the knob orders cost: the share of beta steps along which tokens do not fall."""
    if len(curve) < 2:
        return {"steps": 0, "non_decreasing": 0, "spearman": None}
    toks = [p.tokens for p in sorted(curve, key=lambda p: p.beta)]
    up = sum(1 for a, b in zip(toks, toks[1:]) if b >= a - 1e-9)
    rk = np.argsort(np.argsort(toks))
    ref = np.arange(len(toks))
    rho = float(np.corrcoef(rk, ref)[0, 1]) if np.std(rk) > 0 else 0.0
    return {"steps": len(toks) - 1, "non_decreasing": up, "spearman": rho}


def run_program(program: Program, ctx: Context, qidx, replicates: int, seed: int, *, reference=None,
                feedback: bool = True, question_ids: Sequence[str] = ()) -> ProgramRun:
    """Check, load, sweep and score one program (and, with `feedback`, trace it).

    Parameters:
        program: the program.
        ctx: the search's context (store, model, rule, betas, limits).
        qidx, replicates, seed: the objective.
        reference: (accuracy, tokens) of majority@N for the rule tokens@majority:N.
        feedback: trace the worst questions and compute the diagnostics.
        question_ids: the store's question ids (for trace requests and messages).
    """
    timing: dict[str, float] = {}
    t0 = time.perf_counter()
    checks = check_program(program.source, max_chars=ctx.max_chars)
    timing["checks_s"] = time.perf_counter() - t0
    run = ProgramRun(status="checks_failed", checks=checks, timing=timing, name=checks.controller_name or "")
    if not checks.ok:
        run.error = "; ".join(checks.problems)
        run.feedback = "Your program was not run: it failed the static checks:\n" + \
            "\n".join(f"- {p}" for p in checks.problems)
        return run
    boxes: list = []
    cls = None
    try:
        t0 = time.perf_counter()
        try:
            boxes = _load(program.source, checks.class_name, ctx, min(ctx.workers, len(ctx.betas)))
            cls = boxes[0]
        finally:
            timing["sandbox_start_s"] = time.perf_counter() - t0
        run.name = cls.name
        steps = ctx.steps
        t0 = time.perf_counter()
        try:
            params, arrays = _sweep(boxes, steps, ctx.betas, qidx, replicates, seed, ctx.probe_cost)
        finally:
            timing["sweep_s"] = time.perf_counter() - t0
        run.curve, run.per_question = _curve_from_arrays(ctx.betas, params, arrays)
        run.monotone = monotonicity(run.curve)
        run.reduced = ctx.rule.reduce(run.curve, reference)
        op = run.reduced.operating
        op = op if op is not None else int(np.argmin([p.tokens for p in run.curve]))
        iv = question_interval(run.per_question[op])
        run.interval = {"mean": iv.mean, "lo": iv.lo, "hi": iv.hi, "n": iv.n, "beta": run.curve[op].beta}
        run.status = "ok" if run.reduced.feasible else "no_score"
        if feedback:
            t0 = time.perf_counter()
            try:
                _trace(run, cls, ctx, steps, qidx, arrays, op, seed, program, question_ids)
            except (ControllerError, ToolError) as e:  # the sweep ran: only the traces are missing
                run.traces_text = f"(traces unavailable: {getattr(e, 'problem', str(e))})"
            timing["trace_s"] = time.perf_counter() - t0
    except ControllerError as e:
        problem = e.problem
        run.status = "load_failed" if cls is None else classify(problem)
        run.error = problem
        run.feedback = ("Your program could not be loaded in the sandbox: " if cls is None else
                        "Your program failed while it ran (in the sandbox): ") + problem
        return run
    finally:
        for b in boxes:
            b.sandbox.close()
    return run


def _load(source: str, class_name: str, ctx: Context, n: int) -> list:
    """The program loaded in n sandboxes (started together); all closed if any fails."""
    from concurrent.futures import ThreadPoolExecutor

    from replay.controllers.sandboxed import load_program

    def one(_):
        return load_program(source, class_name, filename="program.py", limits=ctx.limits())

    if n <= 1:
        return [one(0)]
    with ThreadPoolExecutor(n) as ex:
        futs = [ex.submit(one, k) for k in range(n)]
        got, err = [], None
        for f in futs:
            try:
                got.append(f.result())
            except ControllerError as e:
                err = err or e
    if err is not None:
        for b in got:
            b.sandbox.close()
        raise err
    return got


def _sweep(boxes: list, steps, betas, qidx, replicates: int, seed: int, probe_cost: float):
    """The beta sweep, its betas dealt out over the sandboxes (beta k to sandbox k mod n, so that
    each gets cheap and costly ones), one call each, run at once; reassembled in beta order.
    The first error in beta order is raised, after every call has returned."""
    n = len(boxes)
    if n == 1:
        return boxes[0].sandbox.sweep(steps, betas, qidx, replicates=replicates, seed=seed, probe_cost=probe_cost)
    from concurrent.futures import ThreadPoolExecutor

    parts = [list(range(k, len(betas), n)) for k in range(n)]
    with ThreadPoolExecutor(n) as ex:
        futs = [ex.submit(b.sandbox.sweep, steps, [betas[j] for j in idx], qidx, replicates=replicates, seed=seed,
                          probe_cost=probe_cost) for b, idx in zip(boxes, parts)]
        results, errors = [], []
        for idx, f in zip(parts, futs):
            try:
                results.append((idx, f.result()))
            except ControllerError as e:
                errors.append((idx[0], e))
    if errors:
        raise min(errors, key=lambda x: x[0])[1]
    params: list = [None] * len(betas)
    arrays = [None] * 4
    for idx, (ps, arrs) in results:
        for k, arr in enumerate(arrs):
            if arrays[k] is None:
                arrays[k] = np.empty((len(betas), *arr.shape[1:]), dtype=arr.dtype)
            arrays[k][idx] = arr
        for j, p in zip(idx, ps):
            params[j] = p
    return params, arrays


def _worst_questions(run: ProgramRun, qidx, arrays, op: int, pools, k: int) -> list[tuple[str, int, int]]:
    """Up to k (why, question, replicate) to trace: first the questions where the program fell
    shortest of the pool's own majority answer at the operating point (per question, its first
    replicate answered wrong); then, to fill, the questions where it spent the most tokens while
    doing no worse than the pool's majority (its most expensive replicate there). Questions the
    pool's majority gets wrong and the program too are left out: no controller can be blamed."""
    score, tokens = arrays[0][op], arrays[1][op]  # [Q, R]
    acc = score.mean(axis=1)
    short = [(float(pools[int(qidx[i])].majority_right) - acc[i], i) for i in range(len(qidx))]
    out = []
    for gap, i in sorted(short, key=lambda x: -x[0]):
        if gap <= 0 or len(out) >= k:
            break
        out.append(("short", int(qidx[i]), int(np.flatnonzero(score[i] < 1.0)[0])))
    rest = [i for gap, i in short if gap <= 0 and pools[int(qidx[i])].majority_right]
    for i in sorted(rest, key=lambda i: -tokens[i].mean())[: max(0, k - len(out))]:
        out.append(("costly", int(qidx[i]), int(np.argmax(tokens[i]))))
    return out


def resolve_questions(requests: Sequence[str], qidx, question_ids: Sequence[str]) -> tuple[list[int], list[str]]:
    """Store indices of the training questions the agent asked for (by id, or by position in
    the training list), and the requests that name none."""
    by_id = {question_ids[int(q)]: int(q) for q in qidx} if question_ids else {}
    got, bad = [], []
    for r in requests:
        r = str(r).strip().strip(",;")
        if r in by_id:
            got.append(by_id[r])
        elif r.isdigit() and int(r) < len(qidx):
            got.append(int(qidx[int(r)]))
        elif r:
            bad.append(r)
    return list(dict.fromkeys(got)), bad


def _trace(run, cls, ctx, steps, qidx, arrays, op, seed, program, question_ids) -> None:
    pools = pool_facts(steps, qidx)
    R = arrays[0].shape[2]
    diag_eps = [(int(q), r) for q in qidx for r in range(min(R, DIAG_REPLICATES))]
    worst = _worst_questions(run, qidx, arrays, op, pools, ctx.worst)
    asked, bad = resolve_questions(program.trace_requests, qidx, question_ids)
    qpos = {int(q): i for i, q in enumerate(qidx)}
    asked_eps = []
    for q in asked:
        wrong = np.flatnonzero(arrays[0][op][qpos[q]] < 1.0)
        asked_eps.append((q, int(wrong[0]) if len(wrong) else 0))
    shown = [(q, r) for _, q, r in worst]
    extra = [e for e in shown + asked_eps if e not in diag_eps]
    episodes = diag_eps + list(dict.fromkeys(extra))
    params = run.curve[op].params
    traces = split_traces(episodes, cls.sandbox.trace(steps, params, episodes, seed=seed, probe_cost=ctx.probe_cost,
                                                      max_events=MAX_EVENTS))
    by_ep = {(t.question, t.replicate): t for t in traces}
    run.diagnostics = diagnose([t for t in traces[:len(diag_eps)]], pools)
    answers = steps.answers

    def text(a):
        return None if a is None or a < 0 else str(answers[a])

    def qid(q):
        return question_ids[q] if question_ids else str(q)

    parts = []
    short = [(q, r) for why, q, r in worst if why == "short"]
    costly = [(q, r) for why, q, r in worst if why == "costly"]
    beta = run.curve[op].beta
    if short:
        parts.append(f"Traces of the {len(short)} training question(s) where it fell shortest of the pool's own "
                     f"majority answer (at beta {beta:g}; per question, the first replicate it got wrong):")
        parts += [render_trace(by_ep[e], pools[e[0]], text, qid(e[0])) for e in short]
    if costly:
        parts.append(f"Traces of the {len(costly)} training question(s) where it spent the most tokens (at beta "
                     f"{beta:g}; per question, its most expensive replicate):")
        parts += [render_trace(by_ep[e], pools[e[0]], text, qid(e[0])) for e in costly]
    if asked_eps:
        parts.append("Traces you asked for:")
        parts += [render_trace(by_ep[e], pools[e[0]], text, qid(e[0])) for e in asked_eps]
    if bad:
        parts.append(f"(no training question named {', '.join(map(repr, bad))}: ask by id or by position "
                     f"0..{len(qidx) - 1})")
    run.traces_text = "\n\n".join(parts)


def trace_on_request(program: Program, ctx: Context, params: dict, requests: Sequence[str], qidx, seed: int,
                     question_ids: Sequence[str], replicates: int = DIAG_REPLICATES) -> str:
    """Traces of the training questions an agent asked for, for a program that ran before (at
    the parameters of its operating point): per question, the first of its first few replicates
    that it got wrong (else the first). Loads the program in a fresh sandbox."""
    from replay.controllers.sandboxed import load_program

    asked, bad = resolve_questions(requests, qidx, question_ids)
    parts = []
    if bad:
        parts.append(f"(no training question named {', '.join(map(repr, bad))}: ask by id or by position "
                     f"0..{len(qidx) - 1})")
    if not asked:
        return "\n".join(parts) or "(no question asked for)"
    steps = ctx.steps
    cls = None
    try:
        check = check_program(program.source, max_chars=ctx.max_chars)
        cls = load_program(program.source, check.class_name, filename="program.py", limits=ctx.limits())
        eps = [(q, r) for q in asked for r in range(replicates)]
        traces = split_traces(eps, cls.sandbox.trace(steps, params, eps, seed=seed, probe_cost=ctx.probe_cost,
                                                      max_events=MAX_EVENTS))
    except ControllerError as e:
        return f"(traces unavailable: {e.problem})"
    finally:
        if cls is not None:
            cls.sandbox.close()
    pools = pool_facts(steps, asked)
    answers = steps.answers
    text = lambda a: None if a is None or a < 0 else str(answers[a])  # noqa: E731
    parts.insert(0, f"Traces you asked for (your last program that ran, at its operating point):")
    for q in asked:
        mine = [t for t in traces if t.question == q]
        t = next((x for x in mine if x.score < 1.0), mine[0])
        parts.append(render_trace(t, pools[q], text, question_ids[q] if question_ids else str(q)))
    return "\n\n".join(parts)
