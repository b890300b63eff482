"""Controller programs as a search space: a point is a program (Python source text) that an LLM
wrote; evaluating it runs it in a sandbox over a beta sweep and reduces its accuracy-against-
tokens curve to the score rule the user chose (search/discovery/). docs/discovery.md.

    search --replay traces/aime24 --space program --model Qwen3-8B --score tokens@majority:64 \\
        --searcher discover --llm-base-url URL --llm-model NAME --trials 20

A program that fails the static checks, fails to load, raises, loops, or exceeds a limit is a
trial with no score (`metrics.status` says which, `metrics.error` the one line, and
`metrics.feedback` what the agent is told); so is one whose curve gives no score under the rule
(`no_score`: e.g. no point within the budget). The space's cost is the tokens of the operating
point (the point of the curve the score comes from), its budget the rule's reference (B, HI, or
majority@N's tokens on the training questions).

The built-in controllers are swept on the same questions, replicates and seed (compiled), scored
by the same rule, and shown to the agent and in the summary. After the search, the best program
is written as `best_program.py` (usable as `--controller best_program.py:Class`) and reported
on the held-out questions, the store's other models and any `--test-store` (search/discovery/
heldout.py).
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Hashable, Sequence

import numpy as np

from replay.controllers import step_arrays
from replay.controllers.base import max_actions
from replay.errors import InputError

from ..discovery import prompts as dprompts
from ..discovery.checks import check_program
from ..discovery.evaluate import (BUILTIN_NAMES, Context, Program, ProgramRun, builtin_curves, majority_reference,
                                  run_program)
from ..discovery.score import CurvePoint, Reduced, ScoreRule
from ..discovery.seeds import SEEDS
from ..llm.answer import AnswerProblem
from ..trial import Evaluation, Objective, Trial
from .base import AgentBrief, Space

if TYPE_CHECKING:
    from ..settings import ProgramSpaceSettings

ROLE = ("discovers test-time scaling controllers by writing them as Python programs. Each program decides, "
        "while a reasoning model generates, how many chains to run, how far to run each, when to read their "
        "answers, which to drop and when to stop. The goal: the best score under the user's rule on the "
        "training questions, in as few programs as possible.")


@dataclass(frozen=True)
class Baseline:
    """The built-ins on one objective: their curves and scores under the rule, and majority@N."""

    curves: dict[str, tuple[CurvePoint, ...]]
    reduced: dict[str, Reduced]
    reference: tuple[float, float] | None  # (accuracy, tokens) of majority@N for tokens@majority:N

    def best(self) -> tuple[str, Reduced] | None:
        ok = [(n, r) for n, r in self.reduced.items() if r.feasible]
        return max(ok, key=lambda x: (x[1].score, -x[1].cost)) if ok else None

    def text(self) -> str:
        lines = []
        for name in BUILTIN_NAMES:
            r, c = self.reduced[name], self.curves[name]
            if r.feasible:
                p = c[r.operating]
                lines.append(f"- {name}: score {r.score:.4f} (at beta {p.beta:g}: accuracy {p.accuracy:.3f}, "
                             f"{p.tokens:,.0f} tokens)")
            else:
                lines.append(f"- {name}: no score ({r.why})")
        if self.reference is not None:
            lines.append(f"(majority@N reference: accuracy {self.reference[0]:.4f} at {self.reference[1]:,.0f} tokens)")
        return "\n".join(lines)


@dataclass(frozen=True, eq=False)
class ProgramSpace(Space):
    kind: ClassVar[str] = "program"
    cost_unit: ClassVar[str] = "tokens"
    supports: ClassVar[frozenset[str]] = frozenset({"programs"})
    answer_problem_kinds: ClassVar[tuple[str, ...]] = ("static_checks", "no_program", "trace_requests")
    infeasible_text: ClassVar[str] = "without a score: not run, failed, or no point scored under the rule"

    ctx: Context = field(repr=False)
    settings: Any = field(repr=False)
    budget: float
    question_ids: tuple[str, ...] = field(repr=False)
    train_key: tuple = field(repr=False)
    _baselines: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_settings(cls, store, settings: "ProgramSpaceSettings", objective: Objective) -> "ProgramSpace":
        rule = ScoreRule.parse(settings.score)
        if settings.model not in store.manifest.model_names:
            raise InputError("--model", f"unknown model {settings.model!r} (models: {', '.join(store.manifest.model_names)})")
        step_arrays(store, settings.model)  # a store without probes fails here, in one line
        for path in settings.test_stores:  # a bad --test-store fails before the search, not after it
            import replay

            replay.open(path)
        betas = tuple(float(round(b, 12)) for b in np.linspace(0.0, 1.0, settings.betas))
        ctx = Context(store=store, model=settings.model, rule=rule, betas=betas, probe_cost=settings.probe_cost,
                      wall_s=settings.wall_s, memory_mb=settings.memory_mb, max_chars=settings.max_chars,
                      worst=settings.worst, workers=settings.workers or min(4, os.cpu_count() or 1))
        sp = cls(ctx=ctx, settings=settings, budget=0.0, question_ids=tuple(store.question_ids),
                 train_key=_objective_key(objective))
        base = sp.baseline(objective)
        object.__setattr__(sp, "budget", rule.budget_tokens())
        return sp

    # ---- the built-ins, per objective

    def baseline(self, objective: Objective) -> Baseline:
        key = _objective_key(objective)
        if key not in self._baselines:
            ctx = self.ctx
            curves = builtin_curves(ctx, objective.questions, objective.replicates, objective.seed)
            ref = majority_reference(ctx, ctx.rule.n, objective.questions, objective.replicates, objective.seed) \
                if ctx.rule.kind == "tokens" else None
            self._baselines[key] = Baseline(curves, {n: ctx.rule.reduce(c, ref) for n, c in curves.items()}, ref)
        return self._baselines[key]

    # ---- identity and the archive

    def contains(self, point: Any) -> bool:
        return isinstance(point, Program)

    def key(self, point: Program) -> Hashable:
        return point.key

    def encode(self, point: Program) -> dict:
        return {"class": point.class_name, "source": point.source, "sha256": point.key,
                "trace_requests": list(point.trace_requests), "note": point.note}

    def decode(self, value: Any) -> Program:
        if not isinstance(value, dict) or not isinstance(value.get("source"), str):
            raise InputError("archive", f"a program point must hold its source, got {str(value)[:80]}")
        return Program(value["source"], str(value.get("class") or ""), tuple(value.get("trace_requests") or ()),
                       str(value.get("note") or ""))

    def label(self, point: Program) -> str:
        return f"{point.class_name or '?'}#{point.key[:8]}"

    def to_json(self) -> dict[str, Any]:
        s = self.settings
        return {"model": s.model, "score": self.ctx.rule.spec, "betas": list(self.ctx.betas), "probe_cost": s.probe_cost,
                "wall_s": s.wall_s, "memory_mb": s.memory_mb, "max_chars": s.max_chars, "budget": self.budget}

    # ---- sampling: the seed programs

    def sample(self, rng: np.random.Generator) -> Program:
        names = sorted(SEEDS)
        name = names[int(rng.integers(len(names)))]
        return seed_program(name)

    def initial_points(self) -> list[Program]:
        return []

    # ---- scoring

    def evaluate(self, points: Sequence[Program], objective: Objective, *, enforce_budget: bool = True) -> list[Evaluation]:
        """Run each program over the beta sweep on the objective. With `enforce_budget` (the
        training objective) the worst questions are traced for feedback; on the test questions
        only the curve and its score are computed."""
        base = self.baseline(objective)
        out = []
        for p in points:
            t0 = time.perf_counter()
            run = run_program(p, self.ctx, objective.questions, objective.replicates, objective.seed,
                              reference=base.reference, feedback=enforce_budget, question_ids=self.question_ids)
            run.timing["evaluate_s"] = time.perf_counter() - t0
            out.append(self._evaluation(p, run, base))
        return out

    def _evaluation(self, p: Program, run: ProgramRun, base: Baseline) -> Evaluation:
        r = run.reduced
        op = r.operating if r is not None else None
        pt = run.curve[op] if op is not None else None
        metrics = {
            "status": run.status, "error": run.error, "name": run.name, "class": p.class_name,
            "checks": run.checks.to_json() if run.checks else None,
            "curve": [c.to_json() for c in run.curve],
            "operating_beta": pt.beta if pt else None,
            "accuracy": pt.accuracy if pt else None,
            "opened": pt.opened if pt else 0.0, "probes": pt.probes if pt else 0.0,
            "interval": run.interval, "why": r.why if r is not None and not r.feasible else "",
            "builtins": {n: x.score for n, x in base.reduced.items()},
            "monotone": run.monotone, "diagnostics": run.diagnostics, "traces": run.traces_text,
            "timing": dict(run.timing),
        }
        metrics["feedback"] = self.feedback(p, run, base)
        ok = run.status == "ok"
        return Evaluation(feasible=ok, score=r.score if ok else None, stderr=pt.stderr if ok else None,
                          cost=float(r.cost) if r is not None else 0.0, tokens=pt.tokens if pt else 0.0,
                          metrics=metrics)

    def feedback(self, p: Program, run: ProgramRun, base: Baseline) -> str:
        """What the agent is told about this program (the next round's feedback section)."""
        if run.status in ("checks_failed", "load_failed", "timeout", "memory", "killed", "error"):
            return run.feedback
        r = run.reduced
        lines = []
        if r.feasible:
            lines.append(f"Score {r.score:.4f} ({self.ctx.rule.spec}).")
        else:
            lines.append(f"No score under {self.ctx.rule.spec}: {r.why}.")
        best = base.best()
        if best:
            lines.append(f"Best built-in on these questions: {best[0]} with {best[1].score:.4f}.")
        lines.append("Curve (accuracy @ mean tokens per question): " + dprompts.curve_text(run.curve, 2))
        m = run.monotone
        if m.get("steps"):
            lines.append(f"The knob: tokens do not fall along {m['non_decreasing']} of {m['steps']} beta steps "
                         f"(rank correlation {m['spearman']:.2f}); make it monotone: more beta, more tokens.")
        iv = run.interval
        if iv:
            pt = next(c for c in run.curve if c.beta == iv["beta"])
            lines.append(f"Operating point beta {iv['beta']:g}: accuracy {pt.accuracy:.3f} (95% interval over "
                         f"{iv['n']} questions {iv['lo']:.2f}-{iv['hi']:.2f}), {pt.tokens:,.0f} tokens, "
                         f"{pt.opened:.1f} samples opened, {pt.probes:.1f} probes per question.")
        if run.diagnostics:
            from ..discovery.feedback import diagnostics_text

            lines.append("Diagnostics " + diagnostics_text(run.diagnostics))
        if run.traces_text:
            lines.append(run.traces_text)
        return "\n".join(lines)

    # ---- text

    def title(self) -> str:
        return f"controller programs on {self.ctx.model} ({self.ctx.rule.spec})"

    def cost_text(self, cost: float) -> str:
        return f"{cost:,.0f} mean tokens per question" if math.isfinite(cost) else "none"

    def headline(self) -> str:
        base = self._baselines.get(self.train_key)
        best = base.best() if base else None
        tail = f"; best built-in {best[0]} {best[1].score:.4f}" if best else ""
        return f"controller programs on {self.ctx.model}, score {self.ctx.rule.spec}{tail}"

    def sandbox_notice(self) -> str | None:
        from replay.sandbox import isolation

        return f"controller programs run in the {isolation().summary()}"

    def slug(self) -> str:
        return f"program-{self.ctx.model}"

    def summary_rows(self) -> list[tuple[str, str]]:
        base = self._baselines.get(self.train_key)
        rows = [("space", self.title()), ("score rule", self.ctx.rule.describe()),
                ("budget", self.cost_text(self.budget))]
        if base:
            rows.append(("built-ins (train)", ", ".join(
                f"{n} {r.score:.4f}" if r.feasible else f"{n} -" for n, r in base.reduced.items())))
        return rows

    def task_text(self) -> str:
        base = self._baselines.get(self.train_key)
        ctx = self.ctx
        n_q, R = len(self.train_key[0]), self.train_key[1]
        lines = ["## Task",
                 f"Write a controller that scores higher than the built-ins. The score: {ctx.rule.describe()}.",
                 f"Data: {n_q} training questions x {R} replicates (random opening orders) of store "
                 f"{ctx.store.name!r}, model {ctx.model}."]
        if base:
            lines += ["The built-in controllers on the same questions and replicates:", base.text()]
        return "\n".join(lines)

    def protocol_text(self) -> str:
        steps = self.ctx.steps
        return dprompts.protocol(pool=steps.max_pool, model=self.ctx.model, K=steps.K, probe_cost=self.ctx.probe_cost,
                                 betas=self.ctx.betas, max_chars=self.ctx.max_chars, wall_s=self.ctx.wall_s,
                                 max_actions=max_actions(steps))

    def describe(self) -> str:
        return self.task_text() + "\n\n" + self.protocol_text()

    def point_columns(self) -> list[str]:
        return ["program"]

    def point_cells(self, point: Program) -> list[str]:
        return [self.label(point)]

    def cost_columns(self) -> list[str]:
        return ["tokens", "status"]

    def cost_cells(self, trial: Trial) -> list[str]:
        return [f"{trial.cost:,.0f}", str(trial.metrics.get("status") or "-")]

    # ---- LLM answers as JSON (agenttts, agenthpo); the `discover` searcher reads code blocks

    def answer_shape(self) -> str:
        return '{"class": <the controller class name>, "source": <the complete program, as one JSON string>}'

    def answer_rule(self) -> str:
        return "Each trial is one complete program (source text with newlines escaped as \\n) and its class name."

    def answer_example(self) -> dict:
        return {"class": "Adaptive", "source": SEEDS["adaptive"]}

    def point_from_answer(self, value: Any, where: str) -> Program:
        if not isinstance(value, dict) or set(value) != {"class", "source"} or not isinstance(value.get("source"), str) \
                or not isinstance(value.get("class"), str):
            raise AnswerProblem("schema_errors", f"{where}: expected {{\"class\": <string>, \"source\": <string>}}")
        return Program(value["source"], value["class"])

    def answer_problems(self, point: Program, where: str) -> list[AnswerProblem]:
        rep = check_program(point.source, max_chars=self.ctx.max_chars)
        if rep.ok:
            return []
        return [AnswerProblem("static_checks", f"{where}: " + "; ".join(rep.problems))]

    def agent_brief(self) -> AgentBrief:
        return AgentBrief(role=ROLE, guideline_hint="about controller designs (what helped, what failed, and why)")

    # ---- after the search

    def report(self, setup, trials: Sequence[Trial], best: Trial | None, *, out: Path | None) -> dict[str, Any]:
        """The best program as a file, the time split of the rounds, and the held-out report."""
        from ..discovery.heldout import heldout_report, round_times, write_best_program

        info: dict[str, Any] = {"round_times": round_times(trials),
                                "statuses": dict(Counter(str(t.metrics.get("status")) for t in trials))}
        base = self._baselines.get(self.train_key)
        if base:
            info["builtins_train"] = {n: {"score": r.score, "tokens": r.cost, "why": r.why}
                                      for n, r in base.reduced.items()}
        if best is None:
            return {"program": info}
        info["best_class"] = best.metrics.get("class") or best.point.class_name
        if out is not None:
            info["best_program_file"] = str(write_best_program(Path(out), best, self))
        info["heldout"] = heldout_report(self, setup, best, out=out)
        return {"program": info}

    def report_rows(self, summary: dict) -> list[tuple[str, str]]:
        from ..discovery.heldout import report_rows

        return report_rows(summary.get("program") or {})


def seed_program(name: str) -> Program:
    rep = check_program(SEEDS[name])
    return Program(SEEDS[name], rep.class_name or "", note=f"seed: {name}")


def _objective_key(objective: Objective) -> tuple:
    return (tuple(int(q) for q in objective.questions), int(objective.replicates), int(objective.seed))
