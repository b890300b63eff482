"""Width-depth controllers replayed over step-level traces (probes every K tokens).

    import replay
    from replay.controllers import evaluate_controller
    store = replay.open("traces/aime24")
    r = evaluate_controller(store, "adaptive", model="Qwen3-8B", params={"threshold": 0.95, "max_samples": 64})
    print(r.score, r.tokens)

The interface and the Python engine are in base.py, the built-ins (specification and
reference) in builtin.py, their Numba kernels in kernels.py, evaluation in engine.py, the
accuracy-against-tokens frontier in frontier.py, the search space in space.py. Semantics:
docs/controllers.md. Nothing here imports numba until a compiled evaluation runs.
"""

from __future__ import annotations

from .base import (Action, Answer, Continue, Controller, ControllerError, Episode, Open, Param, Probe, Prune,
                   ScriptedController, lerp)
from .builtin import BUILTINS, AdaptiveConsistency, EarlyStoppingConsistency, MajorityVote, ProbeController
from .engine import ControllerResult, Setting, evaluate_controller, evaluate_settings, load_controller
from .steps import StepArrays, step_arrays

__all__ = [
    "Action", "Answer", "Continue", "Controller", "ControllerError", "Episode", "Open", "Param", "Probe", "Prune",
    "ScriptedController", "lerp", "BUILTINS", "AdaptiveConsistency", "EarlyStoppingConsistency", "MajorityVote",
    "ProbeController", "ControllerResult", "Setting", "evaluate_controller", "evaluate_settings", "load_controller",
    "StepArrays", "step_arrays",
]
