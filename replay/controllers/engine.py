"""Evaluate controllers on a store: built-ins compiled (kernels.py), any other controller class
through the Python engine (base.py). Same semantics, same random numbers, same results.

    from replay.controllers import evaluate_controller
    r = evaluate_controller(store, "adaptive", model="Qwen3-8B", params={"threshold": 0.95})
    r = evaluate_controller(store, "mypkg.ctrl:MyController", model="Qwen3-8B", beta=0.5)
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..errors import InputError, ToolError
from ..store import Store
from .base import Controller, check_beta, run_episodes
from .builtin import BUILTINS, CODES
from .steps import StepArrays, step_arrays


def load_controller(spec: str | type[Controller], *, sandbox: bool = True, limits=None) -> type[Controller]:
    """A controller class from a built-in name (majority, adaptive, esc, probe), a class, or
    'module:Class' / 'path/file.py:Class'.

    Parameters
    ----------
    spec:
        The name, the class itself (returned as is: it already runs in this process), or
        'module:Class' / 'path/file.py:Class'.
    sandbox:
        For 'module:Class' and file specs: load the class in a sandbox (replay/sandbox) and
        return a stand-in whose evaluations run there (the default: such code is untrusted);
        False imports it into this process (trusted code only).
    limits:
        The sandbox's `replay.sandbox.Limits` (default: controllers.sandboxed.DEFAULT_LIMITS).
    """
    if isinstance(spec, type):
        if not issubclass(spec, Controller):
            raise InputError("--controller", f"{spec.__name__} is not a subclass of replay.controllers.Controller")
        return spec
    spec = str(spec).strip()
    if spec in BUILTINS:
        return BUILTINS[spec]
    if ":" not in spec:
        raise InputError("--controller", f"unknown controller {spec!r} (built-ins: {', '.join(BUILTINS)}; or module:Class)")
    if sandbox:
        from .sandboxed import load_sandboxed

        return load_sandboxed(spec, limits=limits)
    mod_name, cls_name = spec.rsplit(":", 1)
    try:
        if mod_name.endswith(".py"):
            path = Path(mod_name)
            if not path.is_file():
                raise InputError("--controller", f"{spec!r}: no such file {mod_name!r}")
            mspec = importlib.util.spec_from_file_location(f"_controller_{path.stem}", path)
            module = importlib.util.module_from_spec(mspec)
            sys.modules[mspec.name] = module
            mspec.loader.exec_module(module)
        else:
            module = importlib.import_module(mod_name)
    except ToolError:
        raise  # ours, with its own exit code (an endpoint failure is not reworded as bad input)
    except Exception as e:  # an import error in user code is bad input, reported on one line
        raise InputError("--controller", f"{spec!r}: cannot import {mod_name!r} ({type(e).__name__}: {e})") from None
    cls = getattr(module, cls_name, None)
    if cls is None:
        raise InputError("--controller", f"{spec!r}: module {mod_name!r} has no {cls_name!r}")
    if not (isinstance(cls, type) and issubclass(cls, Controller)):
        raise InputError("--controller", f"{spec!r}: {cls_name} is not a subclass of replay.controllers.Controller")
    if not getattr(cls, "name", ""):
        cls.name = spec
    return cls


@dataclass(frozen=True)
class Setting:
    """One controller with its parameters (and the beta they came from, if any)."""

    cls: type[Controller]
    params: tuple[tuple[str, float | int], ...]
    beta: float | None = None

    @classmethod
    def make(cls, controller, params: dict | None = None, *, beta: float | None = None) -> "Setting":
        """A checked setting.

        Args:
            controller: a controller class, a built-in name or 'module:Class' (`load_controller`).
            params: its parameters by name (missing ones take their defaults).
            beta: instead of params, the knob value in [0, 1] (`Controller.beta_params`).

        Raises:
            InputError: an unknown controller, a bad parameter, or both params and beta.
        """
        c = load_controller(controller)
        if beta is not None:
            if params:
                raise InputError(f"controller {c.name!r}", "give either parameters or beta, not both")
            p = c.beta_params(check_beta(beta))
            if p is None:
                raise InputError(f"controller {c.name!r}", "has no beta knob (it does not define beta_params)")
        else:
            p = dict(params or {})
        inst = c(**p)  # validates
        return cls(c, tuple(inst.values.items()), None if beta is None else float(beta))

    @property
    def name(self) -> str:
        return self.cls.name

    @property
    def builtin(self) -> bool:
        return self.cls.name in BUILTINS and BUILTINS[self.cls.name] is self.cls

    def instance(self) -> Controller:
        return self.cls(**dict(self.params))

    def label(self) -> str:
        inner = ",".join(f"{k}={_fmt(v)}" for k, v in self.params)
        return f"{self.name}({inner})"


def _fmt(v) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


@dataclass(frozen=True)
class ControllerResult:
    controller: str
    params: dict[str, Any]
    beta: float | None
    model: str
    score: float  # mean score (accuracy) over questions and replicates
    stderr: float  # standard error over replicates
    tokens: float  # mean tokens per question: prompt once + generated tokens + probe costs
    opened: float  # mean samples opened per question
    probes: float  # mean probes per question
    n_questions: int
    replicates: int
    seed: int
    engine: str  # "numba" or "python"
    per_question: np.ndarray = field(repr=False, compare=False, default=None)

    def as_row(self) -> dict:
        return {
            "model": self.model, "controller": self.controller, "beta": self.beta,
            "params": ",".join(f"{k}={_fmt(v)}" for k, v in self.params.items()),
            "accuracy": self.score, "stderr": self.stderr, "tokens": self.tokens, "opened": self.opened,
            "probes": self.probes, "questions": self.n_questions, "replicates": self.replicates, "seed": self.seed,
            "engine": self.engine,
        }


def _result(st: Setting, model: str, score, tokens, opened, probes, seed: int, engine: str) -> ControllerResult:
    Q, R = score.shape
    rep_means = score.mean(axis=0)
    return ControllerResult(
        controller=st.name, params=dict(st.params), beta=st.beta, model=model,
        score=float(score.mean()), stderr=float(rep_means.std(ddof=1) / math.sqrt(R)) if R > 1 else math.nan,
        tokens=float(tokens.mean()), opened=float(opened.mean()), probes=float(probes.mean()),
        n_questions=Q, replicates=R, seed=seed, engine=engine, per_question=score.mean(axis=1),
    )


def run_compiled(steps: StepArrays, settings: Sequence[Setting], qidx: np.ndarray, *, replicates: int, seed: int,
                 probe_cost: float = 0.0):
    """Built-in settings through the Numba kernel: arrays [C, Q, R] of score, tokens, opened, probes."""
    import numba

    from . import kernels

    C, Q, R = len(settings), len(qidx), replicates
    codes = np.array([CODES[s.name] for s in settings], dtype=np.int64)
    prm = np.zeros((C, kernels.N_PRM), dtype=np.float64)
    for c, s in enumerate(settings):
        vals = [v for _, v in s.params]  # in the class's `params` order, which the kernel reads
        prm[c, : len(vals)] = vals
    out = [np.empty((C, Q, R)) for _ in range(2)] + [np.empty((C, Q, R), dtype=np.int64) for _ in range(2)]
    kernels.run_grid(
        codes, prm, steps.pool_of_q[qidx], steps.question_hash[qidx], steps.gold[qidx].astype(np.int64), R,
        np.uint64(seed), steps.stage, steps.K, float(probe_cost), int(steps.no_answer[0]), int(steps.no_answer[1]),
        steps.pool_off, steps.pool_prompt, steps.s_answer, steps.s_local, steps.s_score, steps.s_completion,
        steps.probe_off, steps.probe_answer, steps.max_pool, 4 * numba.get_num_threads(), *out,
    )
    return out


def run_python(steps: StepArrays, setting: Setting, qidx: np.ndarray, *, replicates: int, seed: int,
               probe_cost: float = 0.0, progress=None):
    """One setting through the Python engine: arrays [Q, R] of score, tokens, opened, probes."""
    return run_episodes(setting.instance(), steps, qidx, replicates=replicates, seed=seed, probe_cost=probe_cost,
                        progress=progress)


def evaluate_settings(store: Store, model: str, settings: Iterable[Setting], *, questions=None,
                      replicates: int = 100, seed: int = 0, probe_cost: float = 0.0, engine: str = "auto",
                      stage=None, progress=None) -> list[ControllerResult]:
    """Evaluate many controller settings on one model's step-level traces.

    Args:
        store: a store with probes (`probe_interval` in its manifest).
        model: the model whose samples the controllers open.
        settings: the settings (`Setting.make`).
        questions: which questions (as in `replay.engine.evaluate`).
        replicates: random opening orders per question (common random numbers: every setting
            sees the same orders).
        seed: the seed of the orders.
        probe_cost: tokens charged per probe.
        engine: 'auto' (compiled for built-ins, Python otherwise), 'numba' (built-ins only) or
            'python' (everything through the Python engine); same numbers.
        stage: the stage (name or index; default the first).
        progress: called with the number of (setting, question) pairs done.

    Raises:
        InputError: bad options, an unknown model or stage, a store without probes.
    """
    settings = list(settings)
    if replicates < 1:
        raise InputError("--replicates", "must be at least 1")
    if engine not in ("auto", "numba", "python"):
        raise InputError("--engine", f"unknown engine {engine!r} (auto, numba, python)")
    if probe_cost < 0:
        raise InputError("--probe-cost", "must be >= 0")
    steps = step_arrays(store, model, stage=stage)
    qidx = store.question_indices(questions)
    if len(qidx) == 0:
        raise InputError("questions", "no questions selected")
    out: list[ControllerResult | None] = [None] * len(settings)
    compiled = [i for i, s in enumerate(settings) if s.builtin and engine != "python"]
    if engine == "numba" and len(compiled) < len(settings):
        bad = next(s for s in settings if not s.builtin)
        raise InputError("--engine", f"numba runs only the built-in controllers, not {bad.name!r}")
    if compiled:
        arrs = run_compiled(steps, [settings[i] for i in compiled], qidx, replicates=replicates, seed=seed,
                            probe_cost=probe_cost)
        for k, i in enumerate(compiled):
            out[i] = _result(settings[i], model, *(a[k] for a in arrs), seed, "numba")
        if progress is not None:
            progress(len(compiled) * len(qidx))
    for i, s in enumerate(settings):
        if out[i] is None:
            sandbox = getattr(s.cls, "sandbox", None)
            if sandbox is not None:  # a controller loaded in a sandbox is evaluated there
                arrs = sandbox.evaluate(steps, dict(s.params), qidx, replicates=replicates, seed=seed,
                                        probe_cost=probe_cost, progress=progress,
                                        label=s.label())
                out[i] = _result(s, model, *arrs, seed, "python-sandboxed")
            else:
                arrs = run_python(steps, s, qidx, replicates=replicates, seed=seed, probe_cost=probe_cost,
                                  progress=progress)
                out[i] = _result(s, model, *arrs, seed, "python")
    return out


def evaluate_controller(store: Store, controller, model: str, *, params: dict | None = None,
                        beta: float | None = None, questions=None, replicates: int = 100, seed: int = 0,
                        probe_cost: float = 0.0, engine: str = "auto", stage=None) -> ControllerResult:
    """Evaluate one controller setting on one model: its accuracy and mean tokens per question.

    Args:
        store: a store with probes.
        controller: a controller class, a built-in name or 'module:Class'.
        model: the model whose samples the controller opens.
        params: the controller's parameters by name (defaults for the rest).
        beta: instead of params, the knob value in [0, 1].
        questions, replicates, seed, probe_cost, engine, stage: as in `evaluate_settings`.
    """
    st = Setting.make(controller, params, beta=beta)
    return evaluate_settings(store, model, [st], questions=questions, replicates=replicates, seed=seed,
                             probe_cost=probe_cost, engine=engine, stage=stage)[0]
