"""`collect status`: what a collection into a folder has done and what remains."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from replay.errors import InputError
from replay.store import open_store

from .checkpoint import FUSION_SCHEMA, RUN_FILE, SHARD_SCHEMA, partial_dir, read_shards


@dataclass(frozen=True)
class StatusLine:
    stage: str
    model: str
    pools_done: int
    pools_planned: int | None  # None: not known until the upstream stage is finished
    fused_done: int  # pools whose fusions are stored (llm_fuse stages)
    samples: int
    completion_tokens: int
    planned_complete: bool = True  # False: a --ray run has expanded only some questions so far (a lower bound)


@dataclass(frozen=True)
class CollectionStatus:
    out: Path
    state: str  # "complete", "partial" or "complete+partial" (a finished store and a newer partial run)
    lines: tuple[StatusLine, ...]
    command: str
    remaining_pools: int | None
    ray: dict | None = None  # a --ray run's last progress report (progress.json): rates, state, per actor


def collection_status(out: str | os.PathLike) -> CollectionStatus:
    """What a collection into `out` has done and what remains (from its checkpoint or store)."""
    out = Path(out)
    part = partial_dir(out)
    run = part / RUN_FILE
    if run.is_file():
        try:
            meta = json.loads(run.read_text())
        except (ValueError, RecursionError):
            raise InputError(run, "unreadable checkpoint settings") from None
        info = (meta.get("info") if isinstance(meta, dict) else None) or {}
        if not isinstance(info, dict):
            raise InputError(run, "unreadable checkpoint settings")
        if not info.get("stages"):
            raise InputError(run, "a checkpoint from an older version: it has no plan to report against")
        rows = read_shards(part, "shard", SHARD_SCHEMA)
        fus = read_shards(part, "fusion", FUSION_SCHEMA)
        lines, remaining = [], 0
        for si, (stage, agg) in enumerate(info["stages"]):
            planned = info["questions"] if si == 0 else None
            complete = True
            ctx_file = part / f"contexts-{stage}.json"
            if si > 0 and ctx_file.is_file():
                try:
                    ctxs = json.loads(ctx_file.read_text())
                    planned = sum(len(v) for v in ctxs.values())
                except (ValueError, RecursionError, AttributeError, TypeError):
                    raise InputError(ctx_file, "unreadable list of expanded contexts; delete it (it is rewritten "
                                     "when the run resumes)") from None
                # a --ray run expands a block of questions at a time: the plan so far
                complete = len(ctxs) >= int(info["questions"])
            for model in info["models"]:
                d = rows.filter((pl.col("stage") == stage) & (pl.col("model") == model))
                done = d.select("question_id", "context").unique().height
                fused = (fus.filter((pl.col("stage") == stage) & (pl.col("model") == model))
                         .select("question_id", "context").unique().height)
                lines.append(StatusLine(stage, model, done, planned, fused, d.height,
                                        int(d["completion_tokens"].sum() or 0), complete))
                if planned is None or remaining is None or not complete:
                    remaining = None
                else:
                    remaining += planned - done + ((planned - fused) if agg == "llm_fuse" else 0)
        state = "complete+partial" if out.exists() else "partial"
        return CollectionStatus(out, state, tuple(lines), info.get("command", ""), remaining, ray=_ray_report(part))
    if out.exists():
        store = open_store(out)
        s = store.samples
        lines = []
        for st in store.manifest.stages:
            for m in store.manifest.model_names:
                d = s.filter((pl.col("stage") == st.name) & (pl.col("model") == m))
                if d.height == 0:
                    continue
                n = d.select("question_id", "context").unique().height
                f = store.fusions
                fused = (f.filter((pl.col("stage") == st.name) & (pl.col("model") == m))
                         .select("question_id", "context").unique().height if f is not None else 0)
                lines.append(StatusLine(st.name, m, n, n, fused, d.height, int(d["completion_tokens"].sum())))
        return CollectionStatus(out, "complete", tuple(lines), str(store.manifest.provenance.get("command", "")), 0)
    raise InputError(out, f"neither a store nor a partial collection ({part.name}) is there")


def _ray_report(part: Path) -> dict | None:
    """The last progress report of a --ray run's driver (None for a serial run)."""
    from .worker import PROGRESS_FILE

    f = part / PROGRESS_FILE
    if not f.is_file():
        return None
    try:
        rep = json.loads(f.read_text())
    except (ValueError, RecursionError, OSError):
        raise InputError(f, "unreadable progress report; delete it (the driver rewrites it)") from None
    if not isinstance(rep, dict) or not isinstance(rep.get("actors"), list):
        raise InputError(f, "unreadable progress report; delete it (the driver rewrites it)")
    if rep.get("state") == "running" and _driver_gone(rep.get("driver")):
        # a driver killed outright (SIGKILL, a lost node) never writes its last report
        rep = {**rep, "state": "stopped (driver gone; rerun the command to resume)"}
    return rep


def _driver_gone(driver) -> bool:
    """Whether the driver that wrote a report is known to be dead: on this host only (another
    host's processes cannot be seen from here)."""
    import socket

    if not isinstance(driver, dict) or driver.get("host") != socket.gethostname():
        return False
    try:
        pid = int(driver.get("pid"))
    except (TypeError, ValueError):
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:  # a zombie (killed, not yet reaped) is gone too
            return fh.read().rsplit(")", 1)[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
