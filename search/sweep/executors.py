"""Where a sweep's tasks run: this process, spawned worker processes, or Ray. Each executor
yields (index, result) as tasks finish.

Worker processes get one Numba thread each; LLM requests share a Manager semaphore of
`llm_concurrency` slots, held around each HTTP request (search/llm/client.py). On Ray, one task
per cell (num_cpus=1); an LLM cell asks for the custom resource `llm_slot`.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterator, Sequence

from replay.errors import ConfigError, InputError

from .. import runner


def _pool_init(slots, parent_pid: int | None = None) -> None:
    runner._init_worker(parent_pid)  # one Numba thread per process; dies with the sweep (replay.orphans)
    if slots is not None:
        from ..llm.client import set_request_slots

        set_request_slots(slots)


def _ray_call(fn: Callable[[Any], Any], job: Any, driver: tuple[int, str] | None = None) -> Any:
    if driver is not None:  # a driver killed with SIGKILL must not leave this task writing its cell
        from replay.orphans import watch_pid

        watch_pid(*driver)
    try:
        import numba

        numba.set_num_threads(1)  # one task per CPU: one Numba thread each
    except Exception:  # noqa: BLE001 - a worker with fewer threads already is fine
        pass
    return fn(job)



class SerialExecutor:
    kind = "serial"
    slots = 1

    def run(self, fn, jobs: Sequence[dict], llm: Sequence[bool]) -> Iterator[tuple[int, Any]]:
        for i, j in enumerate(jobs):
            yield i, fn(j)

    def close(self) -> None:
        pass


class ProcessExecutor:
    """Spawned worker processes (one Numba thread each); LLM requests share a Manager
    semaphore of `llm_concurrency` slots, held around each HTTP request."""

    kind = "processes"

    def __init__(self, workers: int, llm_concurrency: int | None):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        import os
        from multiprocessing.managers import SyncManager

        from replay.orphans import die_with_parent

        ctx = mp.get_context("spawn")
        self._manager = None
        sem = None
        if llm_concurrency is not None:
            self._manager = SyncManager(ctx=ctx)
            self._manager.start(die_with_parent, (os.getpid(),))  # the manager too ends with the sweep
            sem = self._manager.BoundedSemaphore(llm_concurrency)
        self.slots = workers
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_pool_init,
                                         initargs=(sem, os.getpid()))

    def run(self, fn, jobs, llm):
        from concurrent.futures import as_completed

        futs = {self._pool.submit(fn, j): i for i, j in enumerate(jobs)}
        try:
            for f in as_completed(futs):
                try:
                    yield futs[f], f.result()
                except Exception as e:  # noqa: BLE001 - a worker died: that task failed
                    yield futs[f], {"status": "failed", "error": " ".join(f"{type(e).__name__}: {e}".split()), "ran": True}
        except BaseException:
            for f in futs:
                f.cancel()
            raise

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._manager is not None:
            self._manager.shutdown()


def import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray", "Ray is not installed: pip install 'tts-replay[ray]' (or pip install 'ray>=2.40')") from None
    return ray


def init_ray(address: str, *, num_cpus: int | None = None, resources: dict | None = None) -> bool:
    """Connect to the Ray cluster at `address` ('auto' or host:port), or start a local instance
    ('local', with `num_cpus` and custom `resources`), unless Ray is already initialized in this
    process. Returns whether this call did it (then the caller shuts Ray down when done).

    Raises:
        ConfigError: Ray is not installed.
        InputError: no cluster answers at `address`.
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    import logging

    kw: dict[str, Any] = dict(include_dashboard=False, logging_level=logging.WARNING)
    if address == "local":
        if num_cpus is not None:
            kw["num_cpus"] = num_cpus
        if resources:
            kw["resources"] = resources
        ray.init(**kw)
    else:
        try:
            ray.init(address=address, **kw)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise InputError("--ray", f"cannot connect to a Ray cluster at {address!r}: {' '.join(str(e).split())}") from None
    return True


class RayExecutor:
    """One Ray task per cell (num_cpus=1), scheduled by Ray; progress from ray.wait. A cell
    that uses an LLM asks for the custom resource `llm_slot`: `--ray local` starts an
    instance with `llm_concurrency` of them; a cluster must declare some (`ray start
    --resources '{"llm_slot": N}'`), and each LLM cell asks for total/N of them."""

    kind = "ray"

    def __init__(self, address: str, workers: int | None, llm_concurrency: int | None, any_llm: bool):
        ray = import_ray()
        self.ray = ray
        self._started = init_ray(address, num_cpus=workers,
                                 resources={"llm_slot": float(llm_concurrency)} if llm_concurrency is not None else None)
        self.llm_demand = None
        if any_llm and llm_concurrency is not None:
            total = float(ray.cluster_resources().get("llm_slot", 0))
            per_node = max([float(n.get("Resources", {}).get("llm_slot", 0)) for n in ray.nodes() if n.get("Alive")] or [0])
            if total <= 0:
                raise InputError("--llm-concurrency", "the Ray cluster declares no 'llm_slot' resource: start its nodes "
                                 "with ray start --resources '{\"llm_slot\": N}' (or use --ray local)")
            demand = math.floor(total / llm_concurrency * 1e4) / 1e4
            if demand > per_node:
                raise InputError("--llm-concurrency", f"{llm_concurrency} is below what the cluster's llm_slot "
                                 f"resources allow per node ({total:g} in all, at most {per_node:g} on a node)")
            self.llm_demand = demand
        self.slots = int(ray.cluster_resources().get("CPU", 1))
        self._remote = ray.remote(num_cpus=1)(_ray_call)

    def run(self, fn, jobs, llm):
        import os
        import socket

        ray = self.ray
        refs = {}
        driver = (os.getpid(), socket.gethostname())
        for i, (j, uses) in enumerate(zip(jobs, llm)):
            opts = {"resources": {"llm_slot": self.llm_demand}} if uses and self.llm_demand else {}
            refs[self._remote.options(**opts).remote(fn, j, driver)] = i
        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for r in done:
                    try:
                        yield refs[r], ray.get(r)
                    except Exception as e:  # noqa: BLE001 - the worker died: that task failed
                        yield refs[r], {"status": "failed", "error": " ".join(f"{type(e).__name__}: {e}".split()[:40]),
                                        "ran": True}
        except BaseException:
            for r in pending:
                ray.cancel(r, force=True)
            raise

    def close(self) -> None:
        if self._started:
            self.ray.shutdown()


def make_executor(backend: str, *, workers: int | None, tasks: int, ray: str | None,
                  llm_concurrency: int | None, any_llm: bool):
    """The executor `backend` names: 'serial', 'processes' or 'ray'."""
    import os

    if backend == "serial":
        return SerialExecutor()
    if backend == "processes":
        return ProcessExecutor(max(1, min(workers or os.cpu_count() or 1, tasks)), llm_concurrency if any_llm else None)
    if backend == "ray":
        return RayExecutor(ray or "local", workers, llm_concurrency, any_llm)
    raise ConfigError("backend", f"unknown executor {backend!r}")


def describe(ex) -> str:
    from replay.clitools import plural

    if ex.kind == "serial":
        return "in this process"
    if ex.kind == "processes":
        return plural(ex.slots, "worker process", "worker processes")
    return f"Ray, {plural(ex.slots, 'CPU')}"


def progress_bar(it: Iterator, total: int, desc: str, unit: str, progress: bool) -> Iterator:
    if not progress or total == 0:
        yield from it
        return
    import sys

    from tqdm import tqdm

    with tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, disable=None) as bar:
        for x in it:
            bar.update(1)
            yield x
