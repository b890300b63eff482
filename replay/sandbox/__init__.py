"""The sandbox for every untrusted program this project runs.

LLM-written programs (the ChatDev task's executability check), controllers named on the command
line (`--controller file.py:Class`) and LLM-written controllers all run here: in a separate
process under a supervisor they cannot signal, with CPU, memory, file-size and process limits,
no network, no files outside their own folder, as an unprivileged user where possible, stopped
at a wall-clock limit, everything they started killed at the end.

    from replay.sandbox import Limits, isolation, run_script, Worker
    print(isolation().summary())          # the layers that hold on this machine, and what does not
    r = run_script("print(1)", limits=Limits(wall_s=5))   # run once: r.ok, r.reason()
    w = Worker(...)                        # a long-lived sandboxed process, called many times

Files: confine.py (the kernel mechanisms), supervisor.py (the trusted process in between),
layers.py (which layers hold here, and the guarantees that follow), launch.py (starting a
supervisor), once.py (run once), worker.py and serve.py (a long-lived program: caller's and
sandbox's side), frames.py (their wire format). docs/sandbox.md: guarantees per platform.
"""

from __future__ import annotations

__all__ = ["Guarantee", "Isolation", "Limits", "RunResult", "SandboxError", "SandboxCrash", "SandboxTimeout",
           "Worker", "isolation", "run", "run_script", "LAYERS"]

_LAZY = {
    "Guarantee": "layers", "Isolation": "layers", "isolation": "layers", "LAYERS": "layers",
    "Limits": "launch", "SandboxError": "launch",
    "RunResult": "once", "run": "once", "run_script": "once",
    "Worker": "worker", "SandboxCrash": "worker", "SandboxTimeout": "worker",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(name)


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
