"""Store format: round trip, validation (one-line errors naming the file), atomic writes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import polars as pl
import pytest

import replay
from replay.errors import StoreError

from storekit import RandomStoreSpec, make_random_store


@pytest.fixture()
def good(tmp_path):
    return make_random_store(tmp_path / "good", RandomStoreSpec(seed=1, n_questions=3, aggregations=("majority_vote", "majority_vote")))


def _rewrite(path, name, fn):
    """A table edited after the store was written, then re-sealed (as another tool might write a
    bad store): what is tested is validation, not the checksums."""
    df = pl.read_parquet(path / name)
    fn(df).write_parquet(path / name)
    replay.store.seal(path, validate=False)


def _err(path) -> str:
    with pytest.raises(StoreError) as e:
        replay.open(path)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_round_trip(good):
    s = replay.open(good)
    assert s.synthetic and len(s.question_ids) == 3 and s.manifest.stage_names == ("stage0", "stage1")
    raw = pl.read_parquet(good / "samples.parquet")
    assert s.arrays.s_answer.shape[0] == len(raw)
    # dense arrays agree with the table: every pool's samples have one (q, s, m, ctx)
    a = s.arrays
    assert a.pool_off[-1] == len(raw) and (a.pool_n_local >= 1).all()


@pytest.mark.parametrize(
    "name, corrupt, expect",
    [
        ("samples.parquet", lambda d: d.drop("score"), "missing column 'score'"),
        ("samples.parquet", lambda d: d.with_columns(pl.col("score").cast(pl.String)), "column 'score' has type"),
        ("samples.parquet", lambda d: d.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("nope")).otherwise(pl.col("question_id")).alias("question_id")), "dangling key"),
        ("samples.parquet", lambda d: d.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("gpt-9")).otherwise(pl.col("model")).alias("model")), "unknown model 'gpt-9'"),
        ("samples.parquet", lambda d: d.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("rerank")).otherwise(pl.col("stage")).alias("stage")), "unknown stage 'rerank'"),
        ("samples.parquet", lambda d: d.filter(~((pl.col("question_id") == "q1") & (pl.col("stage") == "stage1") & (pl.col("model") == "m0"))), "empty pool"),
        ("questions.parquet", lambda d: d.drop("gold"), "missing column 'gold'"),
        ("samples.parquet", lambda d: d.with_columns(pl.col("completion_tokens") * -1 - 1), "negative token count"),
    ],
)
def test_validation_errors(good, name, corrupt, expect):
    _rewrite(good, name, corrupt)
    msg = _err(good)
    assert expect in msg and name in msg


def test_missing_file_truncated_and_bad_manifest(good, tmp_path):
    bad = tmp_path / "bad1"
    shutil.copytree(good, bad)
    (bad / "samples.parquet").unlink()
    assert "samples.parquet: missing file" in _err(bad)

    bad = tmp_path / "bad2"
    shutil.copytree(good, bad)
    data = (bad / "samples.parquet").read_bytes()
    (bad / "samples.parquet").write_bytes(data[: len(data) // 2])
    assert "samples.parquet: content does not match its checksum" in _err(bad)
    replay.store.seal(bad, validate=False)  # a store without a true checksum: the reader finds it
    assert "cannot read Parquet" in _err(bad)

    bad = tmp_path / "bad3"
    shutil.copytree(good, bad)
    (bad / "manifest.json").write_text("{not json")
    assert "manifest.json: not valid JSON" in _err(bad)

    bad = tmp_path / "bad4"
    shutil.copytree(good, bad)
    m = json.loads((bad / "manifest.json").read_text())
    m["stages"][0]["aggregation"] = "vibes"  # the manifest's own fields are checked before its checksum
    (bad / "manifest.json").write_text(json.dumps(m))
    assert "unknown aggregation 'vibes'" in _err(bad)

    assert "not a store folder" in _err(tmp_path / "nowhere")


def test_cli_exit_code_2_and_one_line(good):
    (good / "questions.parquet").unlink()
    p = subprocess.run([sys.executable, "-m", "replay.cli", "info", str(good)], capture_output=True, text=True)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "questions.parquet: missing file" in lines[0]


def test_atomic_write_keeps_existing_store(good):
    """A failed write (here: invalid samples) leaves the existing store as it was."""
    before = {f.name: f.read_bytes() for f in good.iterdir()}
    s = replay.open(good)
    samples = s.samples.with_columns(model=pl.lit("unknown-model"))
    with pytest.raises(StoreError):
        replay.write_store(good, s.manifest, s.questions, samples)
    assert {f.name: f.read_bytes() for f in good.iterdir()} == before
    assert not [p for p in good.parent.iterdir() if p.name.startswith(".good")]  # no temp left behind
    replay.open(good)
