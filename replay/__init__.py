"""Replay: evaluate any allocation of models and sample counts on stored outputs, no LLM calls.

    import replay
    store = replay.open("traces/aime24")
    print(store.evaluate("Qwen3-8B:8", replicates=2000))

The store format lives in replay/schema.py (documented in docs/store-format.md), reading and
writing in replay/store.py, the dense arrays in replay/arrays.py and what the engine derives
from them in replay/derived.py (`store.derived`), the aggregation rules in replay/aggregation.py,
the Numba kernels in replay/kernels.py with their pure-Python oracle in replay/reference.py,
configurations in replay/config.py, the evaluation API in replay/engine.py, and the
uncertainty of a score over questions (intervals, paired differences) in replay/stats.py.
"""

from __future__ import annotations

from .errors import ConfigError, InputError, StoreError

__all__ = ["open", "Store", "Config", "StageChoice", "EvalResult", "StageResult", "StoreError", "ConfigError",
           "InputError", "write_store", "evaluate", "evaluate_batch"]

# Imported lazily so that `import replay` (and `replay --help`) stay fast: polars, pyarrow
# and Numba load only when a store is opened or evaluated.
_LAZY = {
    "Store": "store", "open_store": "store", "write_store": "store",
    "Config": "engine", "StageChoice": "engine", "EvalResult": "engine", "StageResult": "engine",
    "evaluate": "engine", "evaluate_batch": "engine",
}


def open(path):  # noqa: A001 - the obvious entry point, like vllm.LLM
    """Open and validate a store folder (raises StoreError: one line naming the file)."""
    from .store import open_store

    return open_store(path)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(name)
