"""`collect import autotts` on a small file in the release's format (made here, not shipped)."""

from __future__ import annotations

import json
import subprocess
import sys

import polars as pl

import replay


def _release(d, models=("Tiny-0.5B", "Tiny-7B"), n_q=3):
    d.mkdir()
    for mi, m in enumerate(models):
        data = []
        for q in range(n_q):
            branches = []
            for b in range(4):
                final = str(q) if (b + mi) % 2 == 0 else "ERR"
                branches.append([["ERR", str(q + b)], 700 + 10 * b, final])
            data.append({"question": f"problem {q}", "gold_answer": str(q), "probe_freq": 500,
                         "each_branch": branches, "final_answers_trace": [br[2] for br in branches]})
        (d / f"{m}.json").write_text(json.dumps(data))
    return d


def _collect(*args):
    return subprocess.run([sys.executable, "-m", "collect.cli", *map(str, args)], capture_output=True, text=True)


def test_import_keeps_every_sample(tmp_path):
    src = _release(tmp_path / "rel")
    p = _collect("import", "autotts", src, "--out", tmp_path / "store")
    assert p.returncode == 0, p.stderr
    st = replay.open(tmp_path / "store")
    assert not st.synthetic and st.manifest.model_names == ("Tiny-0.5B", "Tiny-7B")
    assert [m.params for m in st.models] == [0.5e9, 7e9]
    assert st.manifest.probe_interval == 500 and "AutoTTS" in st.manifest.provenance["source"]
    s = pl.read_parquet(tmp_path / "store" / "samples.parquet")
    assert len(s) == 2 * 3 * 4
    row = s.filter((pl.col("model") == "Tiny-7B") & (pl.col("question_id") == "aime24-001") & (pl.col("sample_index") == 1)).row(0, named=True)
    assert row["answer"] == "1" and row["score"] == 1.0 and row["completion_tokens"] == 710 and row["probes"] == ["ERR", "2"]
    # all four chains drawn: tokens are exact; 2 right vs 2 'ERR' is a tie won by the first drawn
    r = st.evaluate("Tiny-0.5B:4", replicates=50)
    assert r.tokens == 700 + 710 + 720 + 730 and 0.2 < r.score < 0.8
    assert len(set(st.manifest.split["train"]) | set(st.manifest.split["test"])) == 3


def test_bad_release_is_one_line_exit_2(tmp_path):
    src = _release(tmp_path / "rel")
    data = json.loads((src / "Tiny-7B.json").read_text())
    del data[1]["gold_answer"]
    (src / "Tiny-7B.json").write_text(json.dumps(data))
    p = _collect("import", "autotts", src, "--out", tmp_path / "store")
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
    assert "Tiny-7B.json" in p.stderr and "gold_answer" in p.stderr
    assert not (tmp_path / "store").exists()


def test_import_reads_gzipped_release_files(tmp_path):
    """The release ships `<model>.json.gz`: read like `.json`, the same store; a model in both
    forms, or a corrupt gzip, is one line and exit 2."""
    import gzip

    src = _release(tmp_path / "rel")
    assert _collect("import", "autotts", src, "--out", tmp_path / "plain").returncode == 0
    gz = tmp_path / "gz"
    gz.mkdir()
    for f in src.iterdir():  # one model gzipped, the other plain: a folder may mix them
        if f.stem == "Tiny-7B":
            (gz / f"{f.name}.gz").write_bytes(gzip.compress(f.read_bytes()))
        else:
            (gz / f.name).write_bytes(f.read_bytes())
    p = _collect("import", "autotts", gz, "--out", tmp_path / "store")
    assert p.returncode == 0, p.stderr
    a, b = replay.open(tmp_path / "plain"), replay.open(tmp_path / "store")
    assert b.manifest.model_names == a.manifest.model_names == ("Tiny-0.5B", "Tiny-7B")
    cols = ["question_id", "model", "sample_index", "answer", "score", "completion_tokens", "probes"]
    sort = ["model", "question_id", "sample_index"]
    assert pl.read_parquet(tmp_path / "store" / "samples.parquet").select(cols).sort(sort).equals(
        pl.read_parquet(tmp_path / "plain" / "samples.parquet").select(cols).sort(sort))
    (gz / "Tiny-7B.json").write_bytes((src / "Tiny-7B.json").read_bytes())
    p = _collect("import", "autotts", gz, "--out", tmp_path / "both")
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "Tiny-7B" in p.stderr
    (gz / "Tiny-7B.json").unlink()
    (gz / "Tiny-7B.json.gz").write_bytes(b"\x1f\x8b\x08 not really gzip")
    p = _collect("import", "autotts", gz, "--out", tmp_path / "bad")
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "Tiny-7B.json.gz" in p.stderr
    assert "gzipped JSON" in p.stderr and not (tmp_path / "bad").exists()
