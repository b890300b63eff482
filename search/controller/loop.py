"""The controller-space search loop: ask -> score on train (replay) -> archive -> tell.

The objective is fixed by the setup, as in search/runner.py: the training questions of
`split_questions`, `replicates` replays per question and the replay seed, so every searcher and
seed optimise the same function. A trial whose mean tokens per question exceed the budget is
infeasible: archived and told, never a result.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from replay.controllers.space import ControllerSpace
from replay.errors import ConfigError, InputError
from replay.store import Store

from ..runner import Split, drive, split_questions

SPACE_KIND = "controller"  # the archive header's "space_kind": tells controller archives apart


@dataclass(frozen=True)
class ControllerSetup:
    store: Store
    space: ControllerSpace
    split: Split
    replicates: int
    replay_seed: int
    test_replicates: int

    def objective_header(self) -> dict[str, Any]:
        """Everything that fixes the objective; --resume insists these match."""
        ids = self.store.question_ids
        return {"space_kind": SPACE_KIND, "store": str(self.store.path), "store_name": self.store.name,
                "synthetic": self.store.synthetic, "space": self.space.to_json(),
                "budget_tokens": self.space.budget_tokens,
                "train": [ids[i] for i in self.split.train], "test": [ids[i] for i in self.split.test],
                "split": self.split.source, "replicates": self.replicates, "replay_seed": self.replay_seed}


def make_setup(store: Store, controller, model: str, budget_tokens: float, beta: bool = False,
               probe_cost: float = 0.0, train: int | None = None, replicates: int = 16, replay_seed: int = 0,
               test_replicates: int = 256) -> ControllerSetup:
    if budget_tokens is None:
        raise ConfigError("--budget-tokens", "a controller search needs a tokens budget per question")
    if not (math.isfinite(budget_tokens) and budget_tokens > 0):
        raise ConfigError("--budget-tokens", f"must be a positive number of tokens per question, got {budget_tokens:g}")
    if replicates < 1:
        raise ConfigError("--replicates", f"must be at least 1, got {replicates}")
    if test_replicates < 1:
        raise ConfigError("--test-replicates", f"must be at least 1, got {test_replicates}")
    if not (math.isfinite(probe_cost) and probe_cost >= 0):
        raise ConfigError("--probe-cost", f"must be a number of tokens >= 0, got {probe_cost}")
    space = ControllerSpace.from_store(store, controller, model, budget_tokens=budget_tokens, beta=beta,
                                       probe_cost=probe_cost)
    return ControllerSetup(store, space, split_questions(store, train), replicates, replay_seed, test_replicates)


@dataclass(frozen=True)
class Proposal:
    params: dict[str, Any]
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CTrial:
    number: int  # 0-based, in the order trials finished
    params: dict[str, Any]
    feasible: bool
    score: float | None  # mean training score; None when over the tokens budget
    stderr: float | None
    tokens: float  # mean tokens per question, measured on train
    opened: float  # mean samples opened per question
    probes: float
    wall_s: float
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={_fmt(v)}" for k, v in self.params.items())

    def record(self, state: dict[str, Any]) -> dict[str, Any]:
        return {"type": "trial", "number": self.number, "params": self.params, "feasible": self.feasible,
                "score": self.score, "stderr": self.stderr, "tokens": self.tokens, "opened": self.opened,
                "probes": self.probes, "wall_s": self.wall_s, "source": self.source, "extra": self.extra,
                "state": state}

    @classmethod
    def from_record(cls, r: dict[str, Any]) -> "CTrial":
        opt = (lambda x: None if x is None else float(x))
        return cls(int(r["number"]), dict(r["params"]), bool(r["feasible"]), opt(r.get("score")), opt(r.get("stderr")),
                   float(r["tokens"]), float(r.get("opened") or 0.0), float(r.get("probes") or 0.0),
                   float(r.get("wall_s") or 0.0), r.get("source", ""), r.get("extra") or {})




def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def best_trial(trials) -> CTrial | None:
    """Highest training score; ties to fewer tokens, then the earlier trial. Never infeasible."""
    ok = [t for t in trials if t.feasible and t.score is not None]
    return max(ok, key=lambda t: (t.score, -t.tokens, -t.number)) if ok else None


def score_proposals(setup: ControllerSetup, props: list[Proposal], first: int) -> tuple[list[CTrial], float]:
    """One replay call for the batch, on the training questions."""
    t0 = time.perf_counter()
    res = setup.space.evaluate_many([p.params for p in props], questions=setup.split.train,
                                    replicates=setup.replicates, seed=setup.replay_seed)
    dt = time.perf_counter() - t0
    out = [CTrial(first + k, dict(r.params), r.feasible, r.score, r.stderr, r.tokens, r.opened, r.probes,
                  dt / len(props), p.source, dict(p.extra)) for k, (p, r) in enumerate(zip(props, res))]
    return out, dt


def score_on_test(setup: ControllerSetup, params: dict[str, Any]) -> dict[str, Any]:
    """The chosen parameters on the held-out questions (more replicates: one point is cheap).
    Scored whatever its cost there; whether it keeps the budget on test is reported."""
    from dataclasses import replace

    unbudgeted = replace(setup.space, budget_tokens=None)  # the space hides over-budget scores
    r = unbudgeted.evaluate(params, questions=setup.split.test, replicates=setup.test_replicates,
                            seed=setup.replay_seed)
    return {"score": r.score, "stderr": r.stderr, "tokens": r.tokens, "opened": r.opened,
            "within_budget": bool(r.tokens <= setup.space.budget_tokens * (1 + 1e-9)),
            "questions": len(setup.split.test), "replicates": setup.test_replicates}


@dataclass
class ControllerRun:
    searcher: str
    seed: int
    header: dict[str, Any]
    trials: list[CTrial]
    states: list[dict[str, Any]]
    replay_s: float
    searcher_s: float
    wall_s: float
    resumed_from: int
    stop: str
    archive: Path | None


_RESUME_KEYS = ("space_kind", "store_name", "space", "budget_tokens", "searcher", "seed", "options", "replicates",
                "replay_seed", "train", "test")
# How to reach the LLM does not change the search: a resumed run may use another host or port.
_ENDPOINT = frozenset({"llm_base_url", "llm_api_key", "llm_timeout_s", "llm_retries", "llm_backoff_s",
                       "llm_backoff_max_s"})


def _resume_view(header: dict[str, Any], k: str) -> Any:
    v = header.get(k)
    if k == "options" and isinstance(v, dict):
        v = {o: x for o, x in v.items() if o not in _ENDPOINT}
    return json.loads(json.dumps(v, default=str))


def run_search(setup: ControllerSetup, searcher: str, seed: int = 0, trials: int = 50,
               options: dict[str, Any] | None = None, out: str | Path | None = None, resume: bool = False,
               progress: bool = False) -> ControllerRun:
    """Run one search. With `out`, every trial is appended to out/archive.jsonl as it finishes
    (search/archive.py's writer); `resume` continues that archive."""
    from .searchers import build_searcher

    options = {k: v for k, v in (options or {}).items() if v is not None}
    if trials < 1:
        raise ConfigError("--trials", f"must be at least 1, got {trials}")
    s = build_searcher(searcher, setup.space, seed, options, trials)
    shown = {k: v for k, v in options.items() if k != "llm_api_key"}  # never write a key to disk
    header = {**setup.objective_header(), "searcher": searcher, "seed": seed, "options": shown, "trials": trials,
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    run = drive(s, searcher, seed, trials, header, out, resume, progress,
                check_resume=_check_resume, from_record=CTrial.from_record, to_record=lambda t, st: t.record(st),
                normalize=lambda p: p, outside=lambda p: None if setup.space.contains(p.params) else str(p.params),
                score=lambda props, first: score_proposals(setup, props, first))
    return ControllerRun(searcher, seed, run["header"], run["trials"], run["states"], run["replay_s"],
                         run["searcher_s"], run["wall_s"], run["resumed_from"], run["stop"], run["path"])


def _check_resume(path: Path, old: dict[str, Any], new: dict[str, Any]) -> None:
    for k in _RESUME_KEYS:
        a, b = _resume_view(old, k), _resume_view(new, k)
        if a != b:
            raise InputError("--resume", f"{path} was written with {k} = {a!r}, this run has {b!r}")


def summarize(run: ControllerRun, test: dict[str, Any] | None) -> dict[str, Any]:
    from ..report import llm_totals, trials_to_reach

    h, trials = run.header, run.trials
    b = best_trial(trials)
    llm_s, llm_tok = llm_totals(trials, run.states)
    return {
        "space_kind": SPACE_KIND, "store": h.get("store"), "store_name": h.get("store_name"),
        "synthetic": h.get("synthetic"), "space": h.get("space"), "searcher": run.searcher, "seed": run.seed,
        "options": h.get("options"), "budget_tokens": h.get("budget_tokens"),
        "train_questions": len(h.get("train") or ()), "test_questions": len(h.get("test") or ()),
        "replicates": h.get("replicates"), "replay_seed": h.get("replay_seed"),
        "trials": len(trials), "feasible_trials": sum(t.feasible for t in trials),
        "infeasible_trials": sum(not t.feasible for t in trials), "stop": run.stop,
        "best": None if b is None else {"params": b.params, "train_score": b.score, "train_stderr": b.stderr,
                                        "tokens": b.tokens, "opened": b.opened, "probes": b.probes,
                                        "trial": b.number + 1, "source": b.source},
        "test": test, "trials_to_best": None if b is None else trials_to_reach(trials, b.score),
        "resumed_from": run.resumed_from, "replay_s": run.replay_s, "searcher_s": run.searcher_s,
        "wall_s": run.wall_s, "llm_s": llm_s, "llm_tokens": llm_tok,
        "llm_counters": next((st["counters"] for st in reversed(run.states) if "counters" in st), None),
    }


def summary_table(s: dict[str, Any]) -> str:
    b, t, sp = s.get("best") or {}, s.get("test") or {}, s.get("space") or {}
    f = (lambda x, d=4: "-" if x is None else (f"{x:.{d}g}" if isinstance(x, float) else str(x)))
    what = "beta" if sp.get("beta") else ", ".join(d["name"] for d in sp.get("dims", []))
    rows = [
        ("store", f"{s['store_name']}{' (SYNTHETIC)' if s.get('synthetic') else ''}"),
        ("controller", f"{sp.get('controller')} on {sp.get('model')}: searching {what}"),
        ("searcher", f"{s['searcher']} (seed {s['seed']})"),
        ("budget", f"{s['budget_tokens']:,.0f} mean tokens per question"),
        ("questions", f"{s['train_questions']} train x {s['replicates']} replicates, {s['test_questions']} test"),
        ("trials", f"{s['trials']} ({s['infeasible_trials']} over budget); {s['stop']}"),
        ("best params", ", ".join(f"{k}={f(v)}" for k, v in b["params"].items()) if b else "none feasible"),
        ("train score", f"{f(b.get('train_score'))} +- {f(b.get('train_stderr'), 2)}"),
        ("train tokens", f"{f(b.get('tokens'), 6)} per question ({f(b.get('opened'), 3)} samples opened)"),
        ("test score", f"{f(t.get('score'))} +- {f(t.get('stderr'), 2)}, {f(t.get('tokens'), 6)} tokens"
                       + ("" if not t or t.get("within_budget") else " (over budget on test)")),
        ("trials to best", f(s.get("trials_to_best"))),
        ("replay time", f"{f(s.get('replay_s'), 3)} s (search {f(s.get('wall_s'), 3)} s)"),
        ("LLM", f"{f(s.get('llm_s'), 3)} s, {s.get('llm_tokens', 0)} tokens"
                + (f"; {json.dumps(s['llm_counters'])}" if s.get("llm_counters") else "")),
    ]
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)


def run_and_report(setup: ControllerSetup, searcher: str, seed: int = 0, trials: int = 50,
                   options: dict[str, Any] | None = None, out: str | Path = "out", resume: bool = False,
                   progress: bool = False) -> dict[str, Any]:
    """Run a search, score its best parameters on test, write summary.json and the PNG."""
    from ..report import PLOT_NAME, SUMMARY_NAME, best_so_far, plot_curves, write_json_atomic

    run = run_search(setup, searcher, seed, trials, options, out, resume, progress)
    b = best_trial(run.trials)
    summary = summarize(run, None if b is None else score_on_test(setup, b.params))
    out = Path(out)
    write_json_atomic(out / SUMMARY_NAME, summary)
    sp = setup.space
    title = (f"{summary['store_name']}{' (synthetic)' if summary['synthetic'] else ''}: {sp.controller.name} on "
             f"{sp.model} <= {sp.budget_tokens:,.0f} tokens, {searcher} seed {seed}")
    plot_curves([(f"{searcher} seed {seed}", best_so_far(run.trials))], out / PLOT_NAME, title)
    return summary
