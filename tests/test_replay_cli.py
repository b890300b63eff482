"""The `replay` command end to end, on the shipped store and on small random stores."""

from __future__ import annotations

import json
import subprocess
import sys

import polars as pl

from conftest import TRACES
from storekit import RandomStoreSpec, make_random_store


def run(*args):
    return subprocess.run([sys.executable, "-m", "replay.cli", *map(str, args)], capture_output=True, text=True)


def test_help_does_not_import_numba():
    code = "import sys, replay.cli; print('numba' in sys.modules, 'polars' in sys.modules)"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.stdout.split() == ["False", "False"]
    assert run("--help").returncode == 0


def test_info_and_eval_on_aime24():
    p = run("info", TRACES / "aime24")
    assert p.returncode == 0 and "real" in p.stdout and "Qwen3-8B" in p.stdout and "SYNTHETIC" not in p.stderr
    p = run("eval", TRACES / "aime24", "-c", "Qwen3-8B:8", "-c", "Qwen3-0.6B:4", "-r", "50", "--json")
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    assert p.returncode == 0 and [r["config"] for r in rows] == ["Qwen3-8B:8", "Qwen3-0.6B:4"]
    assert 0.7 < rows[0]["score"] < 0.9 and rows[0]["tokens"] > rows[1]["tokens"]


def test_eval_bad_config_is_one_line_exit_2():
    for bad in ("Qwen3-9B:8", "Qwen3-8B", "Qwen3-8B:0", "Qwen3-8B:500", "Qwen3-8B:x"):
        p = run("eval", TRACES / "aime24", "-c", bad)
        assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and bad in p.stderr, (bad, p.stderr)


def test_synthetic_store_is_announced_and_sweep_writes_parquet(tmp_path):
    store = make_random_store(tmp_path / "s", RandomStoreSpec(seed=2, n_questions=4, aggregations=("majority_vote", "best_score")))
    out = tmp_path / "sweep.parquet"
    p = run("sweep", store, "--out", out, "-r", "10", "--budget", "3")
    assert p.returncode == 0, p.stderr
    assert "SYNTHETIC" in p.stderr
    df = pl.read_parquet(out)
    assert len(df) > 4 and {"config", "score", "stderr", "feasible", "units", "s1_model"} <= set(df.columns)
    assert df.filter(~pl.col("feasible"))["score"].is_nan().all()
    assert (df.filter(pl.col("feasible"))["units"] <= 3 * (1 + 1e-9)).all()


def test_curve_writes_png(tmp_path):
    out = tmp_path / "c.png"
    p = run("curve", TRACES / "aime24", "--out", out, "-r", "10", "--max-samples", "8")
    assert p.returncode == 0, p.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
