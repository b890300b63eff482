"""The checkpoint of a collection: `<out>.partial/`, so that an interrupted run resumes.

Each finished batch of pools is written as one shard (a Parquet file, written to a temporary
name and renamed) beside a `run.json` with the settings that decide which samples are drawn
(`RunSettings.fingerprint`). A rerun of the same command reads the shards, skips every
finished pool, and draws only the rest; per-pool seeds (`settings.pool_seed`) make the redrawn
pools the ones the first run would have drawn.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl

from replay.atomic import atomic_path
from replay.errors import InputError

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
        if fresh and self.dir.exists():
            shutil.rmtree(self.dir)
        if self.dir.exists() and run.is_file():
            try:
                old = json.loads(run.read_text())
            except json.JSONDecodeError:
                raise InputError(run, "unreadable checkpoint settings; delete the folder or pass --fresh") from None
            old = old.get("fingerprint", old)
            if old != fingerprint:
                diff = [k for k in fingerprint if old.get(k) != fingerprint[k]]
                raise InputError(self.dir, f"holds a partial run with other settings ({', '.join(diff)}); "
                                 "rerun with the same settings to resume, or pass --fresh to discard it")
        else:
            self.dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(run, json.dumps({"fingerprint": fingerprint, "info": info or {}}, indent=2) + "\n")
        self.frame = read_shards(self.dir, "shard", SHARD_SCHEMA)
        self.fusion_frame = read_shards(self.dir, "fusion", FUSION_SCHEMA)
        self.next_shard = len(list(self.dir.glob("shard-*.parquet")))
        self.next_fusion = len(list(self.dir.glob("fusion-*.parquet")))
        self.resumed_pools = self.frame.select("question_id", "stage", "model", "context").unique().height
        self.done = set(_pool_keys(self.frame))
        self.fused = set(_pool_keys(self.fusion_frame))
        self._new: list[pl.DataFrame] = []
        self._new_fusions: list[pl.DataFrame] = []

    def add(self, df: pl.DataFrame) -> None:
        self._write(f"shard-{self.next_shard:06d}.parquet", df)
        self.next_shard += 1
        self._new.append(df)
        self.done.update(_pool_keys(df))

    def add_fusions(self, df: pl.DataFrame) -> None:
        self._write(f"fusion-{self.next_fusion:06d}.parquet", df)
        self.next_fusion += 1
        self._new_fusions.append(df)
        self.fused.update(_pool_keys(df))

    def _write(self, name: str, df: pl.DataFrame) -> None:
        with atomic_path(self.dir / name) as tmp:
            df.write_parquet(tmp)

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


def _pool_keys(df: pl.DataFrame):
    """(stage, model, question, context) of every pool a frame of samples or fusions covers."""
    return df.select("stage", "model", "question_id", "context").unique().iter_rows()


def partial_dir(out: Path) -> Path:
    return out.with_name(out.name + PARTIAL_SUFFIX)


def read_shards(folder: Path, prefix: str, schema: dict) -> pl.DataFrame:
    shards = sorted(folder.glob(f"{prefix}-*.parquet"))
    if not shards:
        return pl.DataFrame(schema=schema)
    frames = []
    for sh in shards:
        try:
            frames.append(pl.read_parquet(sh))
        except Exception as e:  # noqa: BLE001 - a shard is renamed into place only when whole
            raise InputError(sh, f"unreadable checkpoint shard ({type(e).__name__}); delete it to redraw its pools") from None
    df = pl.concat(frames, how="diagonal_relaxed")
    missing = [pl.lit(None, dtype=t).alias(c) for c, t in schema.items() if c not in df.columns]
    return df.with_columns(missing).select([pl.col(c).cast(t) for c, t in schema.items()])


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
