"""Controllers that are not ours (`--controller file.py:Class`, `module:Class`, LLM-written
programs) load and run in a sandbox (replay/sandbox), never in this process.

    cls = load_sandboxed("my_ctrl.py:Greedy")   # a stand-in class; the real one lives in the sandbox
    evaluate_controller(store, cls, model="Qwen3-8B", beta=0.5)   # evaluated in the sandbox
    cls = load_program(source_text, "Greedy")   # the same for a program held in memory (LLM-written)

The sandbox is a `replay.sandbox.Worker`: one process per controller, started once. It imports
the controller there, answers for its metadata (name, parameters, beta knob), validates its
parameters, and evaluates it: the step arrays of a (store, model, stage) cross once (compacted
to that view's pools), then each evaluation sends the parameters, questions, replicates and seed
and gets back four [Q, R] arrays. Every action of every episode happens inside, through the same
Python engine (`base.run_episodes`) as in-process evaluation, so the results are identical.

Errors come back as one line naming the controller: an exception in its code (with the file and
line), an invalid action (the engine's `ControllerError`), a call past the wall-clock limit, the
memory limit, a crash. Each raises `ControllerError` (exit code 2 on the command line); after a
timeout or a crash the sandbox is gone and the next load starts a fresh one.

Two halves in this file: `ControllerHandler` runs inside the sandbox (numpy and
replay.controllers.base only, no polars); `ControllerSandbox`, `SandboxedController` and
`load_sandboxed` run in the caller.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import re
import sys
import threading
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import InputError
from .base import Controller, ControllerError, Param, run_episodes

HANDLER = "replay.controllers.sandboxed:ControllerHandler"


def default_limits():
    """Per evaluation (one setting on all its questions and replicates) 600 s of wall clock;
    2 GiB of address space; 16 MiB files; no processes."""
    from ..sandbox import Limits

    return Limits(wall_s=600.0, memory_mb=2048, fsize_mb=16, nproc=16)


# --------------------------------------------------------------------------------------------
# Inside the sandbox


def _param_json(p: Param) -> dict:
    return {"name": p.name, "low": p.low, "high": p.high, "integer": p.integer, "default": p.default,
            "help": p.help, "span": list(p.span) if p.span is not None else None}


class ControllerHandler:
    """Answers the caller's requests inside the sandbox (replay/sandbox/serve.py drives it)."""

    def __init__(self):
        self.cls: type[Controller] | None = None
        self.steps: dict[int, Any] = {}

    def handle(self, req: dict, progress) -> tuple[dict, list]:
        op = req.get("op")
        if op == "load":
            return self._load(req), []
        if self.cls is None:
            raise InputError("sandbox", f"request {op!r} before the controller was loaded")
        if op == "beta_params":
            p = self.cls.beta_params(req["beta"])
            return {"params": None if p is None else dict(p)}, []
        if op == "make":
            return {"values": dict(self.cls(**req["params"]).values)}, []
        if op == "steps":
            self.steps[req["key"]] = req["steps"]
            return {"ok": True}, []
        if op == "evaluate":
            ctrl = self.cls(**req["params"])
            out = run_episodes(ctrl, self.steps[req["key"]], req["qidx"], replicates=req["replicates"],
                               seed=req["seed"], probe_cost=req["probe_cost"], progress=progress)
            return {"ok": True}, list(out)
        if op == "sweep":  # a whole beta sweep in one call (one wall-clock limit for all of it)
            params, outs, done = [], [], {}
            for b in req["betas"]:
                p = self.cls.beta_params(b)
                if not isinstance(p, dict):
                    raise InputError("controller", f"beta_params({b:g}) returned {str(p)[:100]}, not a dict")
                ctrl = self.cls(**p)
                params.append(dict(ctrl.values))
                key = tuple(sorted(ctrl.values.items()))
                if key not in done:  # betas that map to the same parameters are replayed once
                    done[key] = run_episodes(ctrl, self.steps[req["key"]], req["qidx"], replicates=req["replicates"],
                                             seed=req["seed"], probe_cost=req["probe_cost"], progress=progress)
                outs.append(done[key])
            return {"params": params}, [np.stack([o[k] for o in outs]) for k in range(4)]
        if op == "trace":
            from .trace import trace_episodes

            ctrl = self.cls(**req["params"])
            return {"ok": True}, list(trace_episodes(ctrl, self.steps[req["key"]], req["episodes"], seed=req["seed"],
                                                     probe_cost=req["probe_cost"], max_events=req["max_events"]))
        raise InputError("sandbox", f"unknown request {op!r}")

    def _load(self, req: dict) -> dict:
        spec, mod_name, cls_name = req["spec"], req["module"], req["cls"]
        try:
            if req.get("file"):
                path = os.path.join(os.getcwd(), req["file"])
                mspec = importlib.util.spec_from_file_location(f"_controller_{Path(path).stem}", path)
                module = importlib.util.module_from_spec(mspec)
                sys.modules[mspec.name] = module
                mspec.loader.exec_module(module)
            else:
                if req.get("path"):
                    sys.path.insert(0, req["path"])
                module = importlib.import_module(mod_name)
        except BaseException as e:  # noqa: BLE001 - an import error in user code is bad input
            raise InputError("--controller", f"{spec!r}: cannot import {mod_name!r} ({type(e).__name__}: {e})") from None
        cls = getattr(module, cls_name, None)
        if cls is None:
            raise InputError("--controller", f"{spec!r}: module {mod_name!r} has no {cls_name!r}")
        if not (isinstance(cls, type) and issubclass(cls, Controller)):
            raise InputError("--controller", f"{spec!r}: {cls_name} is not a subclass of replay.controllers.Controller")
        if not getattr(cls, "name", ""):
            cls.name = spec
        self.cls = cls
        return {"name": str(cls.name), "class": cls.__name__, "doc": (cls.__doc__ or "")[:4000],
                "params": [_param_json(p) for p in cls.params], "has_beta": bool(cls.has_beta())}


# --------------------------------------------------------------------------------------------
# The caller's side


def _number(v, what: str, where: str) -> float | int:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ControllerError(where, f"{what} must be a number, got {str(v)[:80]!r}")
    return v


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,99}$")


class ControllerSandbox:
    """One sandboxed process holding one controller class (see the module docstring)."""

    def __init__(self, spec: str, *, limits=None, without: tuple[str, ...] = (), source: bytes | None = None):
        from ..sandbox import Worker

        self.spec = spec
        self.limits = limits if limits is not None else default_limits()
        self.where = f"controller {spec!r}"
        files, req, read, listable = _resolve(spec, source)
        try:
            self.worker = Worker(HANDLER, name=self.where, files=files, limits=self.limits, read=read,
                                 listable=listable, without=without)
        except Exception as e:  # the sandbox itself failed to start: say so, naming the controller
            problem = getattr(e, "problem", str(e))
            raise ControllerError(self.where, f"could not start its sandbox: {problem}") from None
        header, _ = self._call(req, what="loading it")
        self.info = self._check_info(header)
        self.where = f"controller {self.info['name']!r}"
        self._shipped: dict[int, tuple[Any, int]] = {}
        self._beta: dict[float, dict | None] = {}
        self._lock = threading.Lock()

    @property
    def alive(self) -> bool:
        return self.worker.alive

    def close(self) -> None:
        self.worker.close()

    def _call(self, req: dict, *, what: str, progress=None, max_reply: int = 1 << 20) -> tuple[dict, list]:
        from ..sandbox import SandboxError

        try:
            header, arrays = self.worker.call(req, progress=progress, max_reply=max_reply, what=what)
        except SandboxError as e:
            raise ControllerError(self.where, f"{e.problem} ({what})" if what not in e.problem else e.problem) from None
        if "error" in header:
            problem = str(header["error"])
            if problem.startswith("MemoryError"):
                problem = f"ran out of memory (limit {self.limits.memory_mb} MiB)"
            at = f" ({header['at']})" if header.get("at") else ""
            inner = str(header["where"])[:200] if isinstance(header.get("where"), str) else None
            where = self.where  # the error always names the controller, whatever its code claims
            if inner == "--controller":  # a load error: it names the spec already
                where = inner
            elif inner not in (None, "controller", "sandbox", self.where):
                problem = f"{inner}: {problem}"
            raise ControllerError(where, f"{problem}{at}" + ("" if what == "loading it" else f", {what}"))
        return header, arrays

    def _check_info(self, h: dict) -> dict:
        where = self.where
        cls_name = h.get("class") if isinstance(h.get("class"), str) and _IDENT.match(h["class"]) else "Controller"
        name = h.get("name")
        if not isinstance(name, str) or not _NAME.match(name):  # it becomes part of file names: keep it one safe word
            name = cls_name
        params = []
        for p in h.get("params") or []:
            if not isinstance(p, dict) or not isinstance(p.get("name"), str) or not _IDENT.match(p["name"]):
                raise ControllerError(where, f"a parameter described as {str(p)[:100]}")
            span = p.get("span")
            params.append(Param(p["name"], _number(p.get("low"), "low", where), _number(p.get("high"), "high", where),
                                bool(p.get("integer")),
                                None if p.get("default") is None else _number(p["default"], "default", where),
                                str(p.get("help") or "")[:500],
                                None if span is None else tuple(_number(x, "span", where) for x in list(span)[:2])))
        return {"name": name, "class": cls_name, "doc": str(h.get("doc") or "")[:4000], "params": tuple(params),
                "has_beta": bool(h.get("has_beta"))}

    # ---- what Setting.make and the engine ask
    def beta_params(self, beta: float) -> dict | None:
        b = float(beta)
        if b not in self._beta:
            header, _ = self._call({"op": "beta_params", "beta": b}, what=f"beta_params({b:g})")
            p = header.get("params")
            if p is not None and not (isinstance(p, dict) and all(isinstance(k, str) for k in p)):
                raise ControllerError(self.where, f"beta_params({b:g}) returned {str(p)[:100]}, not a dict")
            self._beta[b] = p
        p = self._beta[b]
        return None if p is None else dict(p)

    def make(self, params: dict) -> dict:
        header, _ = self._call({"op": "make", "params": dict(params)}, what="checking its parameters")
        values = header.get("values")
        if not isinstance(values, dict):
            raise ControllerError(self.where, "returned no parameter values")
        return {str(k): _number(v, f"parameter {k!r}", self.where) for k, v in values.items()}

    def evaluate(self, steps, params: dict, qidx, *, replicates: int, seed: int, probe_cost: float = 0.0,
                 progress=None, label: str = ""):
        """Arrays [Q, R] of score, tokens, opened, probes, computed in the sandbox."""
        qidx = np.asarray(qidx, dtype=np.int64)
        Q, R = len(qidx), int(replicates)
        key = self._key(steps)
        what = f"evaluating {label or self.info['name']} on {Q} questions x {R} replicates"
        _, arrays = self._call({"op": "evaluate", "key": key, "params": dict(params), "qidx": qidx,
                                "replicates": R, "seed": int(seed), "probe_cost": float(probe_cost)},
                               what=what, progress=progress, max_reply=4 * Q * R * 8 + 4096)
        want = [np.dtype("<f8"), np.dtype("<f8"), np.dtype("<i8"), np.dtype("<i8")]
        if len(arrays) != 4 or any(a.shape != (Q, R) or a.dtype != d for a, d in zip(arrays, want)):
            raise ControllerError(self.where, f"its sandbox returned malformed results, {what}")
        score, tokens, opened, probes = arrays
        return score, tokens, opened, probes


    def _key(self, steps) -> int:
        """The key of `steps` in the sandbox, shipping them (compacted) the first time."""
        with self._lock:
            got = self._shipped.get(id(steps))
            if got is None or got[0] is not steps:
                key = len(self._shipped)
                self._call({"op": "steps", "key": key, "steps": steps.compact()}, what="receiving the traces")
                self._shipped[id(steps)] = (steps, key)
            return self._shipped[id(steps)][1]

    def sweep(self, steps, betas, qidx, *, replicates: int, seed: int, probe_cost: float = 0.0, progress=None):
        """A whole beta sweep in one call (so the wall-clock limit bounds all of it): the
        parameters beta_params gave at each beta, and arrays [C, Q, R] of score, tokens,
        opened, probes (C = len(betas))."""
        qidx = np.asarray(qidx, dtype=np.int64)
        C, Q, R = len(betas), len(qidx), int(replicates)
        key = self._key(steps)
        what = f"evaluating {self.info['name']} over {C} betas on {Q} questions x {R} replicates"
        header, arrays = self._call({"op": "sweep", "key": key, "betas": [float(b) for b in betas], "qidx": qidx,
                                     "replicates": R, "seed": int(seed), "probe_cost": float(probe_cost)},
                                    what=what, progress=progress, max_reply=4 * C * Q * R * 8 + 4096)
        want = [np.dtype("<f8"), np.dtype("<f8"), np.dtype("<i8"), np.dtype("<i8")]
        params = header.get("params")
        if len(arrays) != 4 or any(a.shape != (C, Q, R) or a.dtype != d for a, d in zip(arrays, want)) \
                or not isinstance(params, list) or len(params) != C or not all(isinstance(p, dict) for p in params):
            raise ControllerError(self.where, f"its sandbox returned malformed results, {what}")
        params = [{str(k): _number(v, f"parameter {k!r}", self.where) for k, v in p.items()} for p in params]
        return params, arrays

    def trace(self, steps, params: dict, episodes, *, seed: int, probe_cost: float = 0.0, max_events: int = 20_000):
        """Recorded episodes (replay/controllers/trace.py): events [E, 4], tokens [E], offsets
        [n + 1], summary [n, 5], checked for shape and range before anyone reads them."""
        eps = [(int(q), int(r)) for q, r in episodes]
        key = self._key(steps)
        what = f"tracing {self.info['name']} on {len(eps)} episodes"
        _, arrays = self._call({"op": "trace", "key": key, "params": dict(params), "episodes": eps, "seed": int(seed),
                                "probe_cost": float(probe_cost), "max_events": int(max_events)},
                               what=what, max_reply=(max_events + 1) * len(eps) * 40 + 8192)
        ok = len(arrays) == 4
        if ok:
            ev, tok, off, summ = arrays
            ok = (ev.dtype == np.dtype("<i8") and ev.ndim == 2 and ev.shape[1] == 4 and tok.shape == (len(ev),)
                  and off.shape == (len(eps) + 1,) and summ.shape == (len(eps), 5) and off[0] == 0
                  and off[-1] == len(ev) and bool(np.all(np.diff(off) >= 0))
                  and bool(np.all((ev[:, 0] >= 0) & (ev[:, 0] <= 4))))
        if not ok:
            raise ControllerError(self.where, f"its sandbox returned malformed results, {what}")
        return arrays


class SandboxedController(Controller):
    """The caller's stand-in for a controller class that lives in a sandbox: its name,
    parameters and beta knob are the real class's; constructing it validates the values
    there; evaluations (engine.evaluate_settings) run there. It cannot `decide` here."""

    sandbox: ClassVar[ControllerSandbox | None] = None
    spec: ClassVar[str] = ""

    def __init__(self, **values: Any):
        self.values = self.sandbox.make(values)

    @classmethod
    def beta_params(cls, beta: float):
        return cls.sandbox.beta_params(beta)

    @classmethod
    def has_beta(cls) -> bool:
        return cls.sandbox.info["has_beta"]

    def decide(self, ep):
        raise ControllerError(f"controller {self.name!r}", "runs only in its sandbox: evaluate it with "
                                                             "evaluate_settings or evaluate_controller")


def _resolve(spec: str, source: bytes | None = None):
    """What the sandbox needs for `spec`, found without running any of its code here: files to
    copy in, the load request, paths it may read and list. With `source`, spec is
    'NAME.py:Class' and the file's text is `source` (a program held in memory)."""
    mod_name, cls_name = spec.rsplit(":", 1)
    if source is not None:
        if not re.match(r"^[\w-]+\.py$", mod_name):
            raise InputError("controller program", f"{mod_name!r} is not a plain file name ending in .py")
        return ({mod_name: source}, {"op": "load", "spec": spec, "file": mod_name, "module": mod_name, "cls": cls_name},
                [], [])
    if mod_name.endswith(".py"):
        path = Path(mod_name)
        if not path.is_file():
            raise InputError("--controller", f"{spec!r}: no such file {mod_name!r}")
        try:
            source = path.read_bytes()
        except OSError as e:
            raise InputError("--controller", f"{spec!r}: cannot read {mod_name!r} ({e.strerror})") from None
        fname = path.name if re.match(r"^[\w.-]+\.py$", path.name) else "controller.py"
        return ({fname: source}, {"op": "load", "spec": spec, "file": fname, "module": mod_name, "cls": cls_name},
                [], [])
    if not re.match(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$", mod_name):
        raise InputError("--controller", f"{spec!r}: {mod_name!r} is not a module name")
    top = mod_name.split(".")[0]
    try:
        found = importlib.util.find_spec(top)  # a top-level name: finders only, no module code runs
    except (ImportError, ValueError) as e:
        found, err = None, e
    else:
        err = None
    if found is None:
        why = f"{type(err).__name__}: {err}" if err else f"ModuleNotFoundError: No module named {top!r}"
        raise InputError("--controller", f"{spec!r}: cannot import {mod_name!r} ({why})")
    read, listable, path = [], [], None
    if found.submodule_search_locations:
        locs = [str(p) for p in found.submodule_search_locations]
        read += locs
        path = str(Path(locs[0]).parent)
    elif found.origin and os.path.isfile(found.origin):
        read.append(found.origin)
        path = str(Path(found.origin).parent)
    if path:
        listable.append(path)
    return {}, {"op": "load", "spec": spec, "file": None, "module": mod_name, "cls": cls_name, "path": path}, read, listable


_LOADED: dict[tuple, type] = {}
_LOADED_LOCK = threading.Lock()


def _file_key(spec: str) -> str:
    mod = spec.rsplit(":", 1)[0]
    if mod.endswith(".py"):
        try:
            return hashlib.sha256(Path(mod).read_bytes()).hexdigest()
        except OSError:
            return ""
    return ""


def load_sandboxed(spec: str, *, limits=None, without: tuple[str, ...] = ()) -> type[Controller]:
    """A stand-in class for the controller `spec` ('module:Class' or 'path/file.py:Class'),
    loaded in a sandbox of its own (one per spec, file content and limits, reused while alive).

    Parameters
    ----------
    spec:
        'module:Class' or 'path/file.py:Class'.
    limits:
        `replay.sandbox.Limits` (default `default_limits()`): wall_s bounds each call, one
        evaluation of one setting included.
    without:
        Sandbox layers to leave out (tests and comparisons only).
    """
    limits = limits if limits is not None else default_limits()
    key = (spec, _file_key(spec), limits, tuple(without))
    with _LOADED_LOCK:
        cls = _LOADED.get(key)
        if cls is not None and cls.sandbox.alive:
            return cls
        cls = _stand_in(ControllerSandbox(spec, limits=limits, without=tuple(without)))
        _LOADED[key] = cls
        return cls



def load_program(source: str, class_name: str, *, filename: str = "program.py", limits=None,
                 without: tuple[str, ...] = ()) -> type[Controller]:
    """A stand-in class for a controller held as source text (an LLM-written program), loaded in
    a sandbox of its own, exactly as `load_sandboxed` loads a file; errors name the class.

    Parameters
    ----------
    source:
        The program's text; it defines `class_name`, a subclass of replay.controllers.Controller.
    class_name:
        The class to load.
    filename:
        The name the program's file has in the sandbox (tracebacks name it).
    limits, without:
        As for `load_sandboxed`.
    """
    limits = limits if limits is not None else default_limits()
    return _stand_in(ControllerSandbox(f"{filename}:{class_name}", limits=limits, without=tuple(without),
                                       source=source.encode("utf-8", "surrogatepass")))


def _stand_in(box: ControllerSandbox) -> type[Controller]:
    info = box.info
    return type(info["class"], (SandboxedController,),
                {"name": info["name"], "params": info["params"], "__doc__": info["doc"] or None, "sandbox": box,
                 "spec": box.spec, "__module__": __name__})
