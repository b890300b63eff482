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


def test_eval_and_sweep_report_the_replicate_error_and_the_interval_over_questions(tmp_path):
    p = run("eval", TRACES / "aime24", "-c", "Qwen3-8B:8", "-r", "40", "--questions", "train", "--json")
    row = json.loads(p.stdout)
    assert p.returncode == 0, p.stderr
    assert {"score", "stderr", "ci_lo", "ci_hi", "ci_level", "ci_method", "n_questions"} <= set(row)
    assert row["ci_lo"] < row["score"] < row["ci_hi"] and row["ci_level"] == 0.95 and row["n_questions"] == 15
    assert row["ci_hi"] - row["ci_lo"] > 20 * row["stderr"]  # 15 questions: far wider than the replicate error
    text = run("eval", TRACES / "aime24", "-c", "Qwen3-8B:8", "-r", "40", "--questions", "train").stdout
    assert "±rep" in text and "95% CI (questions)" in text and "replicate error" in text
    assert f"[{100 * row['ci_lo']:.2f}, {100 * row['ci_hi']:.2f}]" in text
    store = make_random_store(tmp_path / "s", RandomStoreSpec(seed=5, n_questions=6, aggregations=("majority_vote",)))
    out = tmp_path / "sweep.parquet"
    p = run("sweep", store, "--out", out, "-r", "10")
    assert p.returncode == 0, p.stderr
    df = pl.read_parquet(out)
    assert {"stderr", "ci_lo", "ci_hi"} <= set(df.columns)
    assert (df["ci_lo"] <= df["score"]).all() and (df["score"] <= df["ci_hi"]).all()
    assert "95% CI (questions)" in p.stdout and "±rep" in p.stdout


def test_compare_prints_paired_differences_against_the_first(tmp_path):
    import replay
    from replay.stats import paired_interval

    args = ("compare", TRACES / "aime24", "Qwen3-8B:8", "Qwen3-8B:64", "Qwen3-0.6B:1", "-r", "30", "--seed", "2")
    p = run(*args, "--json")
    assert p.returncode == 0, p.stderr
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    assert [r["config"] for r in rows] == ["Qwen3-8B:8", "Qwen3-8B:64", "Qwen3-0.6B:1"] and rows[0]["diff"] is None
    st = replay.open(TRACES / "aime24")
    rs = st.evaluate_batch(["Qwen3-8B:8", "Qwen3-8B:64", "Qwen3-0.6B:1"], replicates=30, seed=2)
    for r, row in zip(rs[1:], rows[1:]):
        want = paired_interval(r.per_question, rs[0].per_question)
        d = row["diff"]
        assert d["vs"] == "Qwen3-8B:8" and (d["mean"], d["ci_lo"], d["ci_hi"]) == (
            __import__("pytest").approx((want.mean, want.lo, want.hi), abs=1e-12))
        assert d["beyond_noise"] == want.excludes(0.0)
    # common random numbers: the difference of 8 and 64 samples is far tighter than either score
    d = rows[1]["diff"]
    assert d["ci_hi"] - d["ci_lo"] < 0.25 * (rows[1]["ci_hi"] - rows[1]["ci_lo"]) and not d["beyond_noise"]
    assert rows[2]["diff"]["beyond_noise"] and rows[2]["diff"]["ci_hi"] < 0  # 0.6B at one sample: far worse
    text = run(*args).stdout
    assert "(reference)" in text and "beyond noise" in text and "yes" in text
    p = run("compare", TRACES / "aime24", "Qwen3-8B:8")
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "at least two" in p.stderr


def test_sweep_and_curve_write_under_out_by_default(tmp_path):
    """Issue 20: the quick start wrote sweep.parquet and curve.png into the repository root."""
    for cmd, name in (("sweep", "sweep.parquet"), ("curve", "curve.png")):
        p = subprocess.run([sys.executable, "-m", "replay.cli", cmd, str(TRACES / "aime24"), "-r", "2", "--max-samples", "2"],
                           capture_output=True, text=True, cwd=tmp_path)
        assert p.returncode == 0, p.stderr
        assert (tmp_path / "out" / "replay" / "aime24" / name).is_file() and f"out/replay/aime24/{name}" in p.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # nothing beside it
