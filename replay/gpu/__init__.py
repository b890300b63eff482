"""Replay on a CUDA GPU: the same numbers as the CPU kernels, for the heavy paths.

    store.evaluate_batch(configs, replicates=1000, device="cuda")
    replay.engine.scan_space(store, choices, device="auto")
    replay.scan_top.scan_top(store, choices, budgets=[2.0, 4.0], top=10, device="cuda")
    replay.graph.evaluate_graphs(graph_store, graphs, replicates=16, device="cuda")

`device` is 'cpu' (the Numba CPU kernels), 'cuda' (the kernels of replay/gpu/kernels.py and,
for graphs, replay/gpu/graph_kernels.py; without a usable GPU, a ConfigError: one line, exit 2) or 'auto' (the GPU
when one is present and the work is at least AUTO_MIN_DRAWS draws, so that the transfers, the
launch and the first compilation pay for themselves; else the CPU). Numbers are identical on
every device (same random streams, same sums in the same order; tests/test_gpu_replay.py).
None (the API's default) means the environment variable TTS_REPLAY_DEVICE, else 'cpu': that is
how `search --device` reaches every replay of a search, its seed processes included. The default
stays 'cpu' until these kernels have been run on a real GPU (they are tested on Numba's CUDA
simulator only: see docs/gpu.md).

The CUDA packages are the optional extra `gpu-replay` (numba-cuda); nothing here is imported,
and numba.cuda is not loaded, until a device other than 'cpu' is asked for.
"""

from __future__ import annotations

import os

from ..errors import ConfigError

DEVICES = ("cpu", "cuda", "auto")
# below this many draws (memo entries built plus lookups, counted as replay_sums counts them)
# 'auto' stays on the CPU: a multi-core CPU does ~1e9 draws in about a second, about what a
# first CUDA context and kernel compilation cost
AUTO_MIN_DRAWS = 1e9

_status: tuple[bool, str] | None = None


def numpy_shim() -> None:
    """numba-cuda's array support reads np.row_stack, which NumPy 2.5 removed (seen on an H100
    with numba 0.68): alias it to np.vstack (its documented equivalent) where it is missing,
    before numba.cuda is first imported."""
    import numpy as np

    if not hasattr(np, "row_stack"):
        np.row_stack = np.vstack


def gpu_status() -> tuple[bool, str]:
    """(usable, why not): whether numba.cuda finds a GPU (or runs its simulator,
    NUMBA_ENABLE_CUDASIM=1). Checked once per process."""
    global _status
    if _status is None:
        try:
            numpy_shim()
            from numba import cuda

            if cuda.is_available():
                _status = (True, "")
            else:
                _status = (False, "no CUDA GPU found (numba.cuda.is_available() is False)")
        except Exception as e:  # an install without CUDA libraries raises here, not a bug of ours
            _status = (False, f"numba.cuda cannot be used ({type(e).__name__}: {e})".splitlines()[0])
    return _status


ENV = "TTS_REPLAY_DEVICE"


def default_device() -> str:
    """The device of a call that names none: $TTS_REPLAY_DEVICE, else 'cpu'."""
    return os.environ.get(ENV) or "cpu"


def check_device(device: str | None, where: str = "device") -> str:
    """`device` (None: `default_device()`) if it is one of DEVICES, else a ConfigError naming
    `where`."""
    if device is None:
        device, where = default_device(), ENV
    if device not in DEVICES:
        raise ConfigError(where, f"unknown device {device!r} (choose from {', '.join(DEVICES)})")
    return device


def resolve_device(device: str | None, *, work: float = float("inf"), where: str = "device") -> str:
    """'cpu' or 'cuda' for a job of `work` draws.

    Args:
        device: 'cpu', 'cuda', 'auto' or None (`default_device()`).
        work: the job's size in draws (for 'auto').
        where: the option or parameter named in an error ('--device').

    Raises:
        ConfigError: an unknown device, or 'cuda' where no GPU can be used.
    """
    device = check_device(device, where)
    if device == "cpu":
        return "cpu"
    ok, why = gpu_status()
    if device == "cuda":
        if not ok:
            raise ConfigError(where, f"cuda: {why}; use --device cpu or auto (install the gpu-replay extra "
                                     "on a machine with an NVIDIA GPU)")
        return "cuda"
    return "cuda" if ok and work >= AUTO_MIN_DRAWS else "cpu"
