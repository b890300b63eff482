"""The checkpoint of a collection: `<out>.partial/`, so that an interrupted run resumes.

Each finished batch of pools is written as one shard (a Parquet file, written to a temporary
name and renamed) beside a `run.json` with the settings that decide which samples are drawn
(`RunSettings.fingerprint`). A rerun of the same command reads the shards, skips every
finished pool, and draws only the rest; per-pool seeds (`settings.pool_seed`) make the redrawn
pools the ones the first run would have drawn.

Nothing is ever overwritten: one run at a time holds the folder (`replay.locks`: a second run
into the same OUT is refused in one line naming the first), and a shard is published under a
name that must not exist yet (a hard link of the finished temporary file, which fails if the
name is taken; the next free number is tried). A shard deleted by hand (as the error for a
corrupt shard advises) leaves a gap in the numbers, never a reused name.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import polars as pl

from replay.atomic import atomic_path, temp_prefix
from replay.errors import InputError
from replay.locks import LOCK_NAME, folder_lock

PARTIAL_SUFFIX = ".partial"
RAW_SUFFIX = ".raw"
RUN_FILE = "run.json"

SHARD_SCHEMA = {
    "question_id": pl.String, "stage": pl.String, "model": pl.String, "context": pl.String,
    "sample_index": pl.Int32, "answer": pl.String, "score": pl.Float64, "prompt_tokens": pl.Int64,
    "completion_tokens": pl.Int64, "text": pl.String, "finish_reason": pl.String, "token_count": pl.String,
    "metrics": pl.String,  # JSON object of the task's extra per-sample figures ("{}" when none)
    "request_s": pl.Float64,  # wall time of the request (graph stores measure throughput from it)
}
FUSION_SCHEMA = {
    "question_id": pl.String, "stage": pl.String, "model": pl.String, "context": pl.String,
    "subset": pl.List(pl.Int32), "answer": pl.String, "score": pl.Float64, "prompt_tokens": pl.Int64,
    "completion_tokens": pl.Int64, "text": pl.String, "metrics": pl.String,
}



class Checkpoint:
    """`<out>.partial/`: run.json, shard-NNNNNN.parquet (samples) and fusion-NNNNNN.parquet
    (stored fusions) files, each written atomically, plus contexts-<stage>.json (the expanded
    upstream answers of a later stage, for `collect status`)."""

    def __init__(self, out: Path, fingerprint: dict, fresh: bool = False, info: dict | None = None):
        self.dir = partial_dir(out)
        run = self.dir / RUN_FILE
        # held until close(): a second run into the same OUT is refused, never mixed in
        self._lock = folder_lock(self.dir, "collection")
        self._lock.__enter__()
        try:
            self._open(run, fingerprint, fresh, info)
        except BaseException:
            self.close()
            raise

    def _open(self, run: Path, fingerprint: dict, fresh: bool, info: dict | None) -> None:
        if fresh:
            for p in self.dir.iterdir():  # everything but the lock we hold
                if p.name != LOCK_NAME:
                    shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        for p in list(self.dir.iterdir()):  # temporary files of a run killed while writing (we hold the
            if p.name.startswith(".") and p.name.endswith(".tmp") and p.is_file():  # lock: nobody else writes)
                p.unlink(missing_ok=True)
        if run.is_file():
            try:
                old = json.loads(run.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
                raise InputError(run, "unreadable checkpoint settings; delete the folder or pass --fresh") from None
            if not isinstance(old, dict):
                raise InputError(run, "unreadable checkpoint settings; delete the folder or pass --fresh")
            old = old.get("fingerprint", old)
            if old != fingerprint and not _holds_pools(self.dir):
                # a run that failed before finishing any pool (a wrong backend, an unreachable
                # server) kept nothing worth protecting: the corrected command replaces it
                old = fingerprint
                atomic_write_text(run, json.dumps({"fingerprint": fingerprint, "info": info or {}}, indent=2) + "\n")
            if old != fingerprint:
                diff = [k for k in fingerprint if old.get(k) != fingerprint[k]]
                raise InputError(self.dir, f"holds a partial run with other settings ({', '.join(diff)}); "
                                 "rerun with the same settings to resume, or pass --fresh to discard it")
        else:
            atomic_write_text(run, json.dumps({"fingerprint": fingerprint, "info": info or {}}, indent=2) + "\n")
        self.frame = read_shards(self.dir, "shard", SHARD_SCHEMA)
        self.fusion_frame = read_shards(self.dir, "fusion", FUSION_SCHEMA)
        # past the highest number on disk, never len(glob): a deleted shard must not free a name
        self.next_shard = _next_number(self.dir, "shard")
        self.next_fusion = _next_number(self.dir, "fusion")
        self.resumed_pools = self.frame.select("question_id", "stage", "model", "context").unique().height
        self.done = set(_pool_keys(self.frame))
        self.fused = set(_pool_keys(self.fusion_frame))
        self._new: list[pl.DataFrame] = []
        self._new_fusions: list[pl.DataFrame] = []

    def add(self, df: pl.DataFrame) -> None:
        self.next_shard = self._publish("shard", self.next_shard, df) + 1
        self._new.append(df)
        self.done.update(_pool_keys(df))

    def add_fusions(self, df: pl.DataFrame) -> None:
        self.next_fusion = self._publish("fusion", self.next_fusion, df) + 1
        self._new_fusions.append(df)
        self.fused.update(_pool_keys(df))

    def _publish(self, prefix: str, number: int, df: pl.DataFrame) -> int:
        return publish_shard(self.dir, prefix, number, df)

    def pools_on_disk(self) -> int:
        """Finished pools in the shards on disk now (what an interrupted run really keeps)."""
        return read_shards(self.dir, "shard", SHARD_SCHEMA).select("question_id", "stage", "model",
                                                                      "context").unique().height

    def close(self) -> None:
        """Let go of the folder (its lock)."""
        lock, self._lock = getattr(self, "_lock", None), None
        if lock is not None:
            lock.__exit__(None, None, None)

    def all_rows(self) -> pl.DataFrame:
        if self._new:
            self.frame = pl.concat([self.frame, *self._new])
            self._new = []
        return self.frame

    def all_fusions(self) -> pl.DataFrame:
        if self._new_fusions:
            self.fusion_frame = pl.concat([self.fusion_frame, *self._new_fusions])
            self._new_fusions = []
        return self.fusion_frame

    def save_contexts(self, stage: str, contexts: dict[str, dict[str, float]]) -> None:
        atomic_write_text(self.dir / f"contexts-{stage}.json", json.dumps(contexts, sort_keys=True) + "\n")



def publish_shard(folder: Path, prefix: str, number: int, df: pl.DataFrame) -> int:
    """Write `df` as PREFIX-NNNNNN.parquet in `folder` under a name no file has: returns the
    number used. Safe against other writers of the same folder (the actors of a `--ray` run
    publish their own shards beside the driver's): a name is claimed by a hard link, which
    fails if the name exists."""
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(folder / f"{prefix}.parquet"), suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        df.write_parquet(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        while True:
            target = folder / f"{prefix}-{number:06d}.parquet"
            try:
                os.link(tmp, target)  # fails if the name exists: nothing is ever overwritten
                return number
            except FileExistsError:
                number += 1
            except OSError as e:
                if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV):
                    raise
                # a file system without hard links: claim the name exclusively, then fill it
                try:
                    os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
                except FileExistsError:
                    number += 1
                    continue
                os.replace(tmp, target)
                return number
    finally:
        Path(tmp).unlink(missing_ok=True)


def _holds_pools(folder: Path) -> bool:
    """Whether a checkpoint folder holds any finished pool or fusion (a non-empty shard)."""
    return any(p.is_file() and p.stat().st_size > 0
               for prefix in ("shard", "fusion") for p in folder.glob(f"{prefix}-*.parquet"))


def _pool_keys(df: pl.DataFrame):
    """(stage, model, question, context) of every pool a frame of samples or fusions covers."""
    return df.select("stage", "model", "question_id", "context").unique().iter_rows()


def partial_dir(out: Path) -> Path:
    return out.with_name(out.name + PARTIAL_SUFFIX)


def _next_number(folder: Path, prefix: str) -> int:
    nums = [int(m.group(1)) for p in folder.glob(f"{prefix}-*.parquet")
            if (m := re.fullmatch(rf"{prefix}-(\d+)\.parquet", p.name))]
    return max(nums, default=-1) + 1


def read_shards(folder: Path, prefix: str, schema: dict) -> pl.DataFrame:
    import pyarrow.parquet as pq

    # an empty file is a name claimed on a file system without hard links whose write never landed
    shards = sorted(p for p in folder.glob(f"{prefix}-*.parquet") if p.is_file() and p.stat().st_size > 0)
    if not shards:
        return pl.DataFrame(schema=schema)
    frames = []
    for sh in shards:
        try:
            t = pq.read_table(sh)
            t.validate(full=True)  # invalid UTF-8 must not reach polars (it panics)
            frames.append(pl.from_arrow(t))
        except BaseException as e:  # noqa: BLE001 - a shard is renamed into place only when whole; polars
            if isinstance(e, (KeyboardInterrupt, SystemExit, GeneratorExit)):  # panics are BaseExceptions
                raise
            raise InputError(sh, f"unreadable checkpoint shard ({type(e).__name__}); delete it to redraw its pools") from None
    try:
        df = pl.concat(frames, how="diagonal_relaxed")
        missing = [pl.lit(None, dtype=t).alias(c) for c, t in schema.items() if c not in df.columns]
        return df.with_columns(missing).select([pl.col(c).cast(t) for c, t in schema.items()])
    except pl.exceptions.PolarsError as e:
        raise InputError(folder, f"checkpoint shards with other columns or types ({' '.join(str(e).split())[:200]}); "
                         "pass --fresh to start over") from None


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
