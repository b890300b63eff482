"""Width-depth controllers replayed over step-level traces (probes every K tokens).

    import replay
    from replay.controllers import evaluate_controller
    store = replay.open("traces/aime24")
    r = evaluate_controller(store, "adaptive", model="Qwen3-8B", params={"threshold": 0.95, "max_samples": 64})
    print(r.score, r.tokens)

The interface and the Python engine are in base.py, the built-ins (specification and
reference) in builtin.py, their Numba kernels in kernels.py, evaluation in engine.py, the
accuracy-against-tokens frontier in frontier.py, the search space in space.py; controllers of yours ('module:Class', 'file.py:Class') load and run in a
sandbox (sandboxed.py, replay/sandbox). Semantics: docs/controllers.md. Nothing here imports
numba until a compiled evaluation runs.
"""

from __future__ import annotations

__all__ = [
    "Action", "Advance", "Answer", "Continue", "Controller", "ControllerError", "Episode", "Open", "Param", "Probe", "Prune",
    "ScriptedController", "lerp", "BUILTINS", "AdaptiveConsistency", "EarlyStoppingConsistency", "MajorityVote",
    "ProbeController", "ControllerResult", "Setting", "evaluate_controller", "evaluate_settings", "load_controller",
    "StepArrays", "step_arrays",
]

# Imported lazily, like `replay` itself: `replay --help` (which registers `replay frontier`)
# must not load polars, pyarrow or Numba.
_LAZY = {
    **{n: "base" for n in ("Action", "Advance", "Answer", "Continue", "Controller", "ControllerError", "Episode", "Open", "Param",
                           "Probe", "Prune", "ScriptedController", "lerp")},
    **{n: "builtin" for n in ("BUILTINS", "AdaptiveConsistency", "EarlyStoppingConsistency", "MajorityVote",
                              "ProbeController")},
    **{n: "engine" for n in ("ControllerResult", "Setting", "evaluate_controller", "evaluate_settings",
                             "load_controller")},
    **{n: "steps" for n in ("StepArrays", "step_arrays")},
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(name)


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
