"""Replay: evaluate any allocation of models and sample counts on stored outputs, no LLM calls.

    import replay
    store = replay.open("traces/aime24")
    print(store.evaluate("Qwen3-8B:8", replicates=2000))

The store format lives in replay/schema.py (documented in docs/store-format.md), reading and
writing in replay/store.py, the Numba kernels in replay/kernels.py with their pure-Python
oracle in replay/reference.py, and the evaluation API in replay/engine.py.
"""

from __future__ import annotations

from .errors import ConfigError, InputError, StoreError
from .store import Store, open_store, write_store

__all__ = ["open", "Store", "Config", "StageChoice", "EvalResult", "StoreError", "ConfigError", "InputError",
           "write_store", "evaluate", "evaluate_batch"]


def open(path) -> Store:  # noqa: A001 - the obvious entry point, like vllm.LLM
    """Open and validate a store folder."""
    return open_store(path)


def __getattr__(name):
    # The engine is imported lazily so that `import replay` (and `replay --help`) stay fast.
    if name in ("Config", "StageChoice", "EvalResult", "StageResult", "evaluate", "evaluate_batch"):
        from . import engine

        return getattr(engine, name)
    raise AttributeError(name)
