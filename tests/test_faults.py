"""Nothing lost, nothing escapes: the regression cases of the fault corpus
(benchmarks/fault_corpus.py runs the whole corpus against the real commands).

Store validation that used to give silent wrong results; arguments and outputs that used to
give tracebacks; store names used as paths; and a fault-injection test for each lock (search
folder, sweep folder, sweep cell, collection checkpoint) and each crash point (a killed sweep's
workers, a killed store write, a killed checkpoint write, a deleted shard). Small stores in
tmp_path; the few subprocesses are the ones a kill needs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import replay
from clikit import run_main
from replay.clitools import check_output_dir, check_output_file, check_seed
from replay.errors import ConfigError, InputError, StoreError
from replay.locks import LockedError, folder_lock, read_holder
from replay.store import check_store_name, seal
from storekit import RandomStoreSpec, make_random_store

ROOT = Path(__file__).resolve().parents[1]
LINUX = sys.platform.startswith("linux")


def _one_line(err: str) -> str:
    """The one error line (the last on stderr; notes and progress lines may come before it)."""
    lines = [x for x in err.splitlines() if x.strip() and "%|" not in x]
    errors = [x for x in lines if x.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0] and "Traceback" not in err, err
    return errors[0]


def _cli(tool: str, argv, capsys):
    from collect.cli import main as collect_main
    from replay.cli import main as replay_main
    from search.cli import main as search_main

    main = {"replay": replay_main, "search": search_main, "collect": collect_main}[tool]
    return run_main(main, [str(a) for a in argv], capsys)


def _refused(tool, argv, capsys, needle, code=2) -> str:
    rc, out, err = _cli(tool, argv, capsys)
    assert rc == code, (argv, rc, err)
    line = _one_line(err)
    assert needle in line, (argv, line)
    return line


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """Two small sealed stores: one stage, and three stages with stored fusions and stage golds."""
    d = tmp_path_factory.mktemp("faults")
    one = make_random_store(d / "one", RandomStoreSpec(seed=5, n_questions=6, n_models=2, max_pool=6))
    fuse = make_random_store(d / "fuse", RandomStoreSpec(seed=6, n_questions=4, n_models=2, max_pool=5,
                                                         aggregations=("majority_vote", "llm_fuse", "set_vote")))
    return {"one": one, "fuse": fuse}


@pytest.fixture
def one(base, tmp_path):
    return Path(shutil.copytree(base["one"], tmp_path / "one"))


@pytest.fixture
def fuse(base, tmp_path):
    return Path(shutil.copytree(base["fuse"], tmp_path / "fuse"))


def _edit(store: Path, name: str, fn) -> None:
    """A table rewritten by another tool, then re-sealed: validation is what is tested."""
    t = pq.read_table(store / name)
    pq.write_table(fn(t), store / name)
    seal(store, validate=False)


def _with_first(t: pa.Table, col: str, value, typ=None) -> pa.Table:
    vals = t.column(col).to_pylist()
    vals[0] = value
    arr = pa.array(vals, type=typ or t.schema.field(col).type)
    return t.set_column(t.column_names.index(col), pa.field(col, arr.type), arr)


def _err(store) -> str:
    with pytest.raises(StoreError) as e:
        replay.open(store)
    assert "\n" not in str(e.value)
    return str(e.value)


def _manifest(store: Path, fn) -> None:
    m = json.loads((store / "manifest.json").read_text())
    fn(m)
    (store / "manifest.json").write_text(json.dumps(m, allow_nan=True))


# --------------------------------------------------------------------------------------------
# Silent wrong results in store validation


@pytest.mark.parametrize("col, value, typ", [
    ("completion_tokens", 2 ** 64 - 5, pa.uint64()),  # read as -6 tokens: "feasible at -2,167 units"
    ("prompt_tokens", 2 ** 63 + 1, pa.uint64()),
    ("completion_tokens", 2 ** 62, pa.int64()),  # fits int64, but sums over a pool overflow
    ("sample_index", 2 ** 32 - 3, pa.uint32()),
])
def test_token_and_index_columns_out_of_range_are_refused(one, col, value, typ):
    _edit(one, "samples.parquet", lambda t: _with_first(t, col, value, typ))
    msg = _err(one)
    assert "samples.parquet" in msg and col in msg


@pytest.mark.parametrize("table, value", [("samples.parquet", float("inf")), ("samples.parquet", float("-inf")),
                                          ("fusions.parquet", float("inf")), ("fusions.parquet", float("nan"))])
def test_non_finite_scores_are_refused(fuse, table, value):
    _edit(fuse, table, lambda t: _with_first(t, "score", value))
    msg = _err(fuse)
    assert table in msg and "score" in msg


def test_fusion_tokens_are_checked_like_sample_tokens(fuse):
    _edit(fuse, "fusions.parquet", lambda t: _with_first(t, "completion_tokens", -7))
    assert "negative token count" in _err(fuse)


@pytest.mark.parametrize("params", ["Infinity", "-Infinity", "NaN", "1e400", "1e300"])
def test_params_must_be_a_finite_parameter_count(one, params):
    m = json.loads((one / "manifest.json").read_text())
    m["models"][0]["params"] = "__P__"
    (one / "manifest.json").write_text(json.dumps(m).replace('"__P__"', params))
    msg = _err(one)
    assert "manifest.json" in msg and "params" in msg


def test_duplicate_fusion_rows_and_stage_golds_are_refused(fuse, tmp_path):
    twice = Path(shutil.copytree(fuse, tmp_path / "twice"))
    _edit(twice, "fusions.parquet", lambda t: pa.concat_tables([t, t]))  # every row twice: scores would change
    assert "duplicate fusion row" in _err(twice)
    one_more = Path(shutil.copytree(fuse, tmp_path / "one_more"))
    _edit(one_more, "fusions.parquet", lambda t: pa.concat_tables([t, t.slice(0, 1)]))
    assert "duplicate fusion row" in _err(one_more)

    def conflicting(t):
        extra = t.slice(0, 1)
        extra = extra.set_column(extra.column_names.index("gold"), "gold", pa.array(["other"]))
        return pa.concat_tables([t, extra.cast(t.schema)])
    _edit(fuse, "stage_golds.parquet", conflicting)
    msg = _err(fuse)
    assert "stage_golds.parquet" in msg and "conflicting golds" in msg


def test_the_collector_never_stores_two_identical_fusion_calls():
    from collect.run import fusion_subsets

    for pool in (2, 3, 4, 9):
        subs = fusion_subsets(0, "code", "m", "q", "", pool, per_size=4)
        by_size = {}
        for s in subs:
            by_size.setdefault(len(s), []).append(tuple(s))
        for k, ss in by_size.items():
            assert len(set(ss)) == len(ss)  # distinct as drawn: never the same prompt twice
            assert len(ss) == min(4, __import__("math").perm(pool, k))


def test_a_question_repeated_in_questions_is_refused(one, capsys):
    st = replay.open(one)
    with pytest.raises(ConfigError, match="listed twice"):
        st.question_indices(["q1", "q2", "q1"])
    cfg = f"{st.manifest.model_names[0]}:1"
    _refused("replay", ["eval", one, "-c", cfg, "-r", 2, "--questions", "q1,q1"], capsys, "--questions")


@pytest.mark.parametrize("budget", ["nan", "0", "-5", "inf"])
def test_eval_and_sweep_refuse_a_budget_that_makes_everything_infeasible(one, capsys, tmp_path, budget):
    cfg = f"{replay.open(one).manifest.model_names[0]}:1"
    _refused("replay", ["eval", one, "-c", cfg, "-r", 2, "--budget", budget], capsys, "--budget")
    _refused("replay", ["sweep", one, "--out", tmp_path / "s.parquet", "-r", 2, "--budget", budget], capsys, "--budget")
    assert not (tmp_path / "s.parquet").exists()


def test_eval_json_is_valid_json_for_an_infeasible_config(one, capsys):
    cfg = f"{replay.open(one).manifest.model_names[0]}:1"
    rc, out, err = _cli("replay", ["eval", one, "-c", cfg, "-r", 1, "--budget", "1e-9", "--json"], capsys)
    assert rc == 0, err
    row = json.loads(out, parse_constant=lambda c: pytest.fail(f"invalid JSON constant {c}"))
    assert row["feasible"] is False and row["score"] is None and row["stderr"] is None


def test_manifest_fields_that_python_confuses(one, tmp_path):
    cases = [(lambda m: m.update(format_version=True), "format_version"),
             (lambda m: m.update(probe_interval=True), "probe_interval"),
             (lambda m: m["split"]["train"].append(m["split"]["train"][0]), "twice")]
    for i, (fn, needle) in enumerate(cases):
        s = Path(shutil.copytree(one, tmp_path / f"m{i}"))
        _manifest(s, fn)
        assert needle in _err(s)


def test_a_manifest_nested_100k_deep_is_one_line(one, capsys):
    (one / "manifest.json").write_text('{"name": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert "nested too deeply" in _err(one)
    _refused("replay", ["info", one], capsys, "manifest.json")


def test_invalid_utf8_in_a_string_column_is_one_line_not_a_panic(one, capsys):
    def bad(t):
        arr = t.column("answer").combine_chunks().cast(pa.string())
        data = bytearray(arr.buffers()[2].to_pybytes())
        data[0:2] = b"\xff\xfe"
        broken = pa.Array.from_buffers(pa.string(), len(arr), [arr.buffers()[0], arr.buffers()[1],
                                                               pa.py_buffer(bytes(data))])
        return t.set_column(t.column_names.index("answer"), "answer", broken)
    _edit(one, "samples.parquet", bad)
    assert "UTF8" in _err(one) or "utf" in _err(one).lower()
    _refused("replay", ["info", one], capsys, "samples.parquet")


# --------------------------------------------------------------------------------------------
# Integrity: checksums


def _flip(path: Path, pos: int) -> None:
    b = bytearray(path.read_bytes())
    b[pos] ^= 0x10
    path.write_bytes(bytes(b))


def test_a_flipped_byte_anywhere_is_an_error_never_a_changed_result(one, tmp_path):
    ref = replay.open(one)
    assert ref.sealed
    size = (one / "samples.parquet").stat().st_size
    footer = size - 8 - int.from_bytes((one / "samples.parquet").read_bytes()[-8:-4], "little")
    for pos in sorted({4, size // 3, size // 2, footer - 3, footer + 5, footer + 40, size - 12}):
        s = Path(shutil.copytree(one, tmp_path / f"flip{pos}"))
        _flip(s / "samples.parquet", pos)
        assert "does not match its checksum" in _err(s)
    # a changed value in the manifest (still valid JSON, still a valid store) is caught too
    s = Path(shutil.copytree(one, tmp_path / "params"))
    _manifest(s, lambda m: m["models"][0].update(params=m["models"][0]["params"] * 2))
    assert "manifest.json" in _err(s) and "checksum" in _err(s)


def test_page_checksums_catch_data_corruption_without_the_manifest_hash(one):
    """The tables carry a CRC per data page too: a table copied out of its store stays checked."""
    raw = json.loads((one / "manifest.json").read_text())
    raw.pop("checksums")
    (one / "manifest.json").write_text(json.dumps(raw))
    assert replay.open(one).sealed is False  # an unsealed store opens, unverified by hash
    t = pq.read_table(one / "samples.parquet")
    meta = pq.ParquetFile(one / "samples.parquet").metadata
    col = t.column_names.index("completion_tokens")
    cc = meta.row_group(0).column(col)
    start = cc.dictionary_page_offset if cc.has_dictionary_page else cc.data_page_offset
    _flip(one / "samples.parquet", start + cc.total_compressed_size - 2)  # inside its last data page
    assert "cannot read Parquet" in _err(one)


def test_old_stores_without_checksums_keep_opening_and_seal_adds_them(one, capsys):
    raw = json.loads((one / "manifest.json").read_text())
    raw.pop("checksums")
    (one / "manifest.json").write_text(json.dumps(raw))
    st = replay.open(one)
    assert not st.sealed
    rc, out, _ = _cli("replay", ["info", one], capsys)
    assert rc == 0 and "checksums  none" in out
    rc, out, err = _cli("replay", ["seal", one], capsys)
    assert rc == 0, err
    assert replay.open(one).sealed
    # a deliberate edit of a sealed store is refused until sealed again, and sealing validates
    df = pl.read_parquet(one / "questions.parquet").with_columns(pl.lit("renamed").alias("metadata"))
    df.write_parquet(one / "questions.parquet")
    assert "replay seal" in _err(one)
    seal(one)
    assert replay.open(one).sealed
    pl.read_parquet(one / "samples.parquet").with_columns(pl.lit(-1).alias("prompt_tokens")).write_parquet(
        one / "samples.parquet")
    with pytest.raises(StoreError, match="negative token count"):
        seal(one)


def test_shipped_traces_open_unverified(capsys):
    st = replay.open(ROOT / "traces" / "sim-2wiki")
    assert st.name == "sim-2wiki"  # written before checksums: they open as before


# --------------------------------------------------------------------------------------------
# Names used as paths


@pytest.mark.parametrize("name", ["../../escape", "/tmp/x/TARGET", "a/b", "..", ".", "", " ", "x\ny", "x\x00y",
                                  ".hidden", "a\\b", "x" * 201, "-rf"])
def test_a_store_name_is_one_safe_path_component(one, name):
    with pytest.raises(ConfigError):
        check_store_name(name)
    _manifest(one, lambda m: m.update(name=name))
    assert "manifest.json" in _err(one)


def test_search_and_sweep_never_write_outside_the_output(one, capsys, tmp_path, monkeypatch):
    _manifest(one, lambda m: m.update(name="../../escape"))
    monkeypatch.chdir(tmp_path)
    _refused("search", ["--replay", one, "--searcher", "random", "--trials", 2, "--no-optimum"], capsys, "name")
    _refused("search", ["sweep", "--stores", one, "--searchers", "random", "--trials", 2, "--out", tmp_path / "sw"],
             capsys, "name")
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"name: ../../escaped\nstores: [{one}]\nsearchers: [random]\n")
    _refused("search", ["sweep", spec], capsys, "name")
    assert not list(tmp_path.parent.glob("escape*")) and not list(tmp_path.rglob("escape*"))
    check_store_name("sim-2wiki") and check_store_name("Qwen3 8B, run 2")


# --------------------------------------------------------------------------------------------
# Tracebacks that are one-line errors now


def test_seeds_out_of_range_are_one_line(one, capsys, tmp_path):
    cfg = f"{replay.open(one).manifest.model_names[0]}:1"
    for seed in ("-1", str(10 ** 23), str(2 ** 63)):
        _refused("replay", ["eval", one, "-c", cfg, "-r", 2, "--seed", seed], capsys, "--seed")
        _refused("search", ["--replay", one, "--searcher", "random", "--seed", seed, "--out", tmp_path / "o"], capsys,
                 "--seed")
        _refused("collect", ["simulate", "2wiki", "--out", tmp_path / "sim", "--seed", seed], capsys, "--seed")
    assert check_seed("--seed", 2 ** 63 - 1) == 2 ** 63 - 1


def test_replicates_are_bounded_by_the_memory_they_need(one, capsys, tmp_path):
    cfg = f"{replay.open(one).manifest.model_names[0]}:1"
    line = _refused("replay", ["eval", one, "-c", cfg, "-r", 10 ** 9], capsys, "--replicates")
    assert "memory" in line and "at most" in line
    _refused("replay", ["sweep", one, "--out", tmp_path / "s.parquet", "-r", 10 ** 9], capsys, "memory")
    _refused("search", ["--replay", one, "--searcher", "random", "--replicates", 10 ** 9, "--out", tmp_path / "o"],
             capsys, "memory")
    _refused("replay", ["eval", one, "-c", cfg, "-r", 10 ** 12], capsys, "--replicates")
    _refused("replay", ["eval", one, "-c", cfg, "-r", 0], capsys, "--replicates")


def test_a_million_seeds_need_yes_and_workers_are_never_coerced(one, capsys, tmp_path):
    from search.settings import parse_seeds

    base = ["--replay", one, "--searcher", "random", "--trials", 2, "--out", tmp_path / "o"]
    _refused("search", [*base, "--seeds", "0-999999"], capsys, "--yes")
    _refused("search", [*base, "--seeds", f"0-{10 ** 23}"], capsys, "--seeds")
    _refused("search", ["sweep", "--stores", one, "--searchers", "random", "--seeds", "0-999999", "--out",
                        tmp_path / "sw"], capsys, "--yes")
    assert len(parse_seeds("0-1500", limit=None)) == 1501
    for w in ("0", "-4"):
        _refused("search", [*base, "--seeds", "0-1", "--workers", w], capsys, "--workers")
        _refused("search", ["sweep", "--stores", one, "--searchers", "random", "--workers", w, "--out", tmp_path / "sw"],
                 capsys, "--workers")
        _refused("collect", ["run", "--task", "qa", "--data", tmp_path / "d.jsonl", "--models", "m-1B", "--backend",
                             "openai", "--out", tmp_path / "c", "--concurrency", w], capsys, "--concurrency")


def test_unwritable_outputs_are_one_line_before_any_work(one, capsys, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("keep")
    folder = tmp_path / "folder.png"
    folder.mkdir()
    cfg_args = ["-r", 2]
    _refused("replay", ["sweep", one, "--out", afile / "sub.parquet", *cfg_args], capsys, "--out")
    _refused("replay", ["sweep", one, "--out", "/proc/x/s.parquet", *cfg_args], capsys, "/proc")
    _refused("replay", ["sweep", one, "--out", folder, *cfg_args], capsys, "is a folder")
    _refused("replay", ["curve", one, "--out", folder, *cfg_args], capsys, "is a folder")
    _refused("search", ["--replay", one, "--searcher", "random", "--out", afile / "sub"], capsys, "--out")
    _refused("search", ["--replay", one, "--searcher", "random", "--out", afile], capsys, "is a file")
    _refused("search", ["sweep", "--stores", one, "--searchers", "random", "--out", "/proc/x"], capsys, "/proc")
    _refused("collect", ["simulate", "2wiki", "--out", "/proc/x"], capsys, "/proc")
    _refused("collect", ["simulate", "2wiki", "--out", afile], capsys, "is a file")
    assert afile.read_text() == "keep"
    with pytest.raises(InputError):
        check_output_file(afile / "x", "--out")
    assert check_output_dir(tmp_path / "new" / "deeper", "--out") and not (tmp_path / "new").exists()


def test_a_read_only_folder_is_one_line(tmp_path):
    """As an unprivileged user (root ignores permission bits): `collect simulate` and `replay
    sweep` into a read-only folder."""
    if os.geteuid() == 0:
        probe = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
                                "import replay.cli"], capture_output=True, cwd=ROOT)
        if probe.returncode != 0:
            pytest.skip("running as root and cannot run this interpreter as nobody")
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    else:
        prefix = []
    import tempfile

    top = Path(tempfile.mkdtemp(prefix="ro-"))
    try:
        os.chmod(top, 0o755)
        ro = top / "ro"
        ro.mkdir(mode=0o555)
        os.chmod(ro, 0o555)
        for argv in (["collect.cli", "simulate", "2wiki", "--out", str(ro / "sim")],
                     ["replay.cli", "sweep", str(ROOT / "traces" / "aime24"), "--out", str(ro / "s.parquet"), "-r", "2",
                      "--max-samples", "2"]):
            p = subprocess.run([*prefix, sys.executable, "-m", *argv], capture_output=True, text=True, cwd=top,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
            assert p.returncode == 2, p.stderr
            assert "Traceback" not in p.stderr and _one_line(p.stderr)
        assert list(ro.iterdir()) == []
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_bad_files_besides_stores_are_one_line(tmp_path, capsys):
    from search.archive import read_archive

    arch = tmp_path / "a" / "archive.jsonl"
    arch.parent.mkdir()
    arch.write_bytes(b'{"type": "header", "format": "tts-search-archive", "version": 2}\n'
                     + b"[" * 100_000 + b"]" * 100_000 + b"\n")
    with pytest.raises(InputError, match="nested too deeply"):
        read_archive(arch)
    arch.write_bytes(b'{"type": "header", "format": "tts-search-archive", "version": 2}\n'
                     b'{"type": "trial", "number": 0, "point": [], "feasible": true, "score": "high"}\n')
    _refused("search", ["compare", arch.parent], capsys, "'score' must be a number")
    spec = tmp_path / "spec.yaml"
    spec.write_bytes(b"stores: " + b"[" * 100_000 + b"]" * 100_000)
    _refused("search", ["sweep", spec], capsys, "spec.yaml")
    spec.write_bytes(b"name: \xff\n")
    _refused("search", ["sweep", spec], capsys, "UTF-8")
    grid = tmp_path / "grid.txt"
    grid.write_bytes(b"m0:\xff\n")
    _refused("replay", ["sweep", ROOT / "traces" / "aime24", "--grid", grid, "--out", tmp_path / "s.parquet"], capsys,
             "grid.txt")
    sim = tmp_path / "sim.yaml"
    sim.write_bytes(b"name: " + b"[" * 100_000 + b"]" * 100_000)
    _refused("collect", ["simulate", sim, "--out", tmp_path / "sim"], capsys, "sim.yaml")


# --------------------------------------------------------------------------------------------
# Commands and options added with graph stores, replay compare, live-check and program discovery:
# the same checks as the rest


def _valid_json_lines(out: str) -> list:
    def refuse(c):
        raise ValueError(f"{c} is not JSON")
    return [json.loads(line, parse_constant=refuse) for line in out.splitlines()]


@pytest.fixture(scope="module")
def graph_store(tmp_path_factory):
    from graphkit import RandomGraphStoreSpec, make_random_graph_store

    return make_random_graph_store(tmp_path_factory.mktemp("graph") / "g", RandomGraphStoreSpec(seed=3, n_questions=4))


def test_graph_eval_and_sweep_check_their_options(graph_store, capsys, tmp_path):
    g = "s=solve(m0,1)"
    for v in ("nan", "0", "-1", "inf"):
        _refused("replay", ["eval", graph_store, "-c", g, "-r", 2, "--latency-limit", v], capsys, "--latency-limit")
    for v in ("m0=inf/1", "m0=0/5", "nope=1/1"):  # an unknown model was silently unused
        _refused("replay", ["eval", graph_store, "-c", g, "-r", 2, "--throughput", v], capsys, "--throughput")
    _refused("replay", ["eval", graph_store, "-c", g, "-r", 10 ** 9], capsys, "memory")
    for argv in (["-r", 1], ["-r", 2, "--budget", "1e-6"]):  # NaN stderr / infeasible score: null, never NaN
        rc, out, err = _cli("replay", ["eval", graph_store, "-c", g, "--json", *argv], capsys)
        assert rc == 0, err
        (row,) = _valid_json_lines(out)
        assert row["stderr"] is None if argv[1] == 1 else row["score"] is None
    grid = tmp_path / "g.txt"
    grid.write_bytes(b"s=solve(m0,\xff)\n")
    _refused("replay", ["sweep", graph_store, "--grid", grid, "--out", tmp_path / "s.parquet"], capsys, "g.txt")
    grid.write_text(g + "\n")
    for opt, v in (("--models", "m1"), ("--max-samples", 2)):  # they narrow an enumerated space: silently unused
        _refused("replay", ["sweep", graph_store, "--grid", grid, "--out", tmp_path / "s.parquet", opt, v], capsys, opt)
    _refused("replay", ["sweep", graph_store, "--grid", grid, "--out", tmp_path / "s.parquet", "-r", 10 ** 9], capsys,
             "memory")
    rc, out, err = _cli("replay", ["compare", graph_store, g, "s=solve(m0,2)", "-r", 2], capsys)
    assert rc == 0 and "(reference)" in out, err  # graph stores compare graphs (paired, issue 15)
    assert not (tmp_path / "s.parquet").exists()


def test_graph_stores_are_validated_like_chain_stores(graph_store, tmp_path):
    g = Path(shutil.copytree(graph_store, tmp_path / "g"))
    seal(g)
    _edit(g, "samples.parquet", lambda t: _with_first(t, "score", float("inf")))
    assert "score" in _err(g)
    g = Path(shutil.copytree(graph_store, tmp_path / "g2"))
    seal(g)
    b = bytearray((g / "samples.parquet").read_bytes())
    b[len(b) // 2] ^= 0x10
    (g / "samples.parquet").write_bytes(bytes(b))
    _err(g)


def test_compare_checks_its_options_like_eval(one, capsys):
    m = replay.open(one).manifest.model_names[0]
    base = ["compare", one, f"{m}:1", f"{m}:2"]
    _refused("replay", [*base, "--budget", "nan"], capsys, "--budget")
    _refused("replay", [*base, "--seed", "-1"], capsys, "--seed")
    _refused("replay", [*base, "-r", 10 ** 9], capsys, "memory")
    q = replay.open(one).question_ids[0]
    _refused("replay", [*base, "-r", 2, "--questions", f"{q},{q}"], capsys, "twice")
    rc, out, err = _cli("replay", [*base, "-r", 1, "--json"], capsys)
    assert rc == 0 and len(_valid_json_lines(out)) == 2, err


def test_live_check_checks_every_option_before_the_first_request(capsys, tmp_path):
    """The endpoint is closed: an option that reached it would exit 3, not 2."""
    tiny = ROOT / "traces" / "tiny-real-numseq"
    afile = tmp_path / "afile"
    afile.write_text("x")
    base = ["live-check", tiny, "-c", "SmolLM2-135M-Instruct:1,SmolLM2-135M-Instruct:1", "--base-url",
            "http://127.0.0.1:9/v1", "--data", tiny / "questions.jsonl", "--retries", 0, "--timeout", 1]
    for opt, v in (("--seed", -1), ("--replicates", 0), ("--concurrency", 0), ("--retries", -1), ("--repeats", 0)):
        _refused("collect", [*base, opt, v], capsys, opt)
    _refused("collect", [*base, "--replicates", 10 ** 12], capsys, "--replicates")
    _refused("collect", [*base, "--out", afile / "sub"], capsys, "--out")


def test_program_space_and_selection_options_are_bounded(capsys, tmp_path):
    aime = ROOT / "traces" / "aime24"
    prog = ["--replay", aime, "--space", "program", "--model", "Qwen3-8B", "--searcher", "random", "--trials", 1,
            "--out", tmp_path / "o"]
    _refused("search", [*prog, "--betas", 10 ** 9], capsys, "--betas")
    _refused("search", [*prog, "--heldout-replicates", 10 ** 12], capsys, "memory")
    base = ["--replay", aime, "--searcher", "random", "--trials", 2, "--out", tmp_path / "o"]
    for v in ("-1", str(10 ** 23)):
        _refused("search", [*base, "--split-seed", v], capsys, "--split-seed")
    _refused("search", [*base, "--seeds", f"0-{2 ** 62}", "--yes"], capsys, "even with --yes")
    assert not (tmp_path / "o").exists()


def test_collect_run_graph_options_need_graph(capsys, tmp_path):
    data = tmp_path / "qa.jsonl"
    data.write_text(json.dumps({"id": 0, "question": "q", "gold": "a"}) + "\n")
    base = ["run", "--task", "qa", "--data", data, "--models", "m-1B", "--backend", "openai", "--base-url",
            "http://127.0.0.1:9/v1", "--out", tmp_path / "c", "--quiet"]
    for opt, v in (("--role-samples", 4), ("--aggregate-inputs", 2), ("--throughput", "m-1B=1/1")):
        _refused("collect", [*base, opt, v], capsys, opt)
    _refused("collect", [*base, "--graph", "--throughput", "m-1B=inf/1"], capsys, "--throughput")
    _refused("collect", [*base, "--name", "../x"], capsys, "--name")  # checked before the first request


# --------------------------------------------------------------------------------------------
# Locks: one writer per folder (fault injection: another process holds it)

_HOLD = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    from replay.locks import folder_lock
    with folder_lock(sys.argv[1], sys.argv[2]):
        print("held", flush=True)
        time.sleep(600)
""")


class Holder:
    """Another process holding a folder's lock, as a second `search --resume` would."""

    def __init__(self, folder: Path, what: str):
        self.p = subprocess.Popen([sys.executable, "-c", _HOLD.format(root=str(ROOT)), str(folder), what],
                                  stdout=subprocess.PIPE, text=True)
        assert self.p.stdout.readline().strip() == "held"

    def kill(self):
        self.p.kill()
        self.p.wait()


@pytest.mark.skipif(not LINUX and sys.platform != "darwin", reason="flock locks: POSIX")
def test_folder_lock_names_the_holder_and_a_dead_holder_never_blocks(tmp_path):
    d = tmp_path / "out"
    h = Holder(d, "search")
    try:
        with pytest.raises(LockedError) as e:
            with folder_lock(d, "search"):
                pass
        msg = str(e.value)
        assert f"pid {h.p.pid}" in msg and "in use by another search" in msg and "since" in msg and "\n" not in msg
        assert read_holder(d)["pid"] == h.p.pid
    finally:
        h.kill()  # SIGKILL: the kernel drops its lock; the file it leaves locks nothing
    assert (d / ".lock").exists()
    with folder_lock(d, "search"):
        assert read_holder(d)["pid"] == os.getpid()
        with folder_lock(d, "search"):  # re-entrant in one thread
            pass
        refused = []

        def other_thread():
            try:
                with folder_lock(d, "search"):
                    pass
            except LockedError as e:
                refused.append(str(e))
        t = threading.Thread(target=other_thread)
        t.start()
        t.join()
        assert refused and "another thread" in refused[0]
    assert not (d / ".lock").exists()  # let go: removed


def test_search_lock_refuses_a_second_writer(one, capsys, tmp_path):
    out = tmp_path / "r"
    rc, _, err = _cli("search", ["--replay", one, "--searcher", "random", "--trials", 2, "--out", out, "--no-optimum"],
                      capsys)
    assert rc == 0, err
    before = (out / "archive.jsonl").read_bytes()
    h = Holder(out, "search")
    try:
        line = _refused("search", ["--replay", one, "--searcher", "random", "--trials", 6, "--out", out, "--resume",
                                   "--no-optimum"], capsys, "in use by another search")
        assert f"pid {h.p.pid}" in line
    finally:
        h.kill()
    assert (out / "archive.jsonl").read_bytes() == before
    rc, _, err = _cli("search", ["--replay", one, "--searcher", "random", "--trials", 6, "--out", out, "--resume",
                                 "--no-optimum"], capsys)
    assert rc == 0, err
    rc, _, err = _cli("search", ["compare", out], capsys)
    assert rc == 0, err


def test_sweep_lock_and_cell_lock(one, capsys, tmp_path):
    out = tmp_path / "sw"
    args = ["sweep", "--stores", one, "--searchers", "random", "--seeds", "0-1", "--trials", 3, "--no-optimum",
            "--test-replicates", 2, "--workers", 1, "--out", out]
    h = Holder(out, "sweep")
    try:
        _refused("search", args, capsys, "in use by another sweep")
    finally:
        h.kill()
    rc, _, err = _cli("search", [*args, "--report-only"], capsys)  # the sweep's folder, no cell run yet
    assert rc == 0, err
    # a cell still held (a worker of a killed earlier run): that cell fails, the others finish
    from search.sweep import parse_spec, plan_sweep

    spec = parse_spec({}, overrides=dict(stores=str(one), searchers="random", seeds="0-1", trials="3", optimum=False,
                                         test_replicates=2, out=str(out)))
    cell = out / plan_sweep(spec).cells[0].dir
    h = Holder(cell, "search")
    try:
        rc, text, err = _cli("search", args, capsys)
        assert rc == 1 and "1 failed" in text + err
        assert "in use by another search" in (cell / "error.txt").read_text()
    finally:
        h.kill()
    rc, text, err = _cli("search", args, capsys)
    assert rc == 0 and "0 failed" in text, err


def test_collection_lock_refuses_a_second_run(tmp_path, capsys):
    from chatserver import ChatServer

    data = tmp_path / "m.jsonl"
    data.write_text("".join(json.dumps({"id": i, "question": f"p{i}", "gold": "1"}) + "\n" for i in range(2)))
    out = tmp_path / "c"
    h = Holder(tmp_path / "c.partial", "collection")
    try:
        with ChatServer(lambda body, i: "\\boxed{1}") as srv:
            _refused("collect", ["run", "--task", "math", "--data", data, "--models", "m-1B", "--backend", "openai",
                                 "--base-url", srv.base_url, "--samples", 2, "--out", out, "--quiet"], capsys,
                     "in use by another collection")
    finally:
        h.kill()
    assert not out.exists()


# --------------------------------------------------------------------------------------------
# Crash points


@pytest.mark.skipif(not LINUX, reason="PR_SET_PDEATHSIG and /proc: Linux (elsewhere the parent watch alone)")
def test_workers_die_with_a_parent_killed_by_sigkill(tmp_path):
    """A sweep parent killed outright (the OOM killer) must not leave workers writing."""
    log = tmp_path / "log"
    parent = textwrap.dedent(f"""
        import multiprocessing as mp, os, sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from concurrent.futures import ProcessPoolExecutor
        from search.sweep.executors import _pool_init

        def work(path):
            while True:
                with open(path, "a") as f:
                    f.write(str(os.getpid()) + "\\n")
                time.sleep(0.02)

        if __name__ == "__main__":
            ex = ProcessPoolExecutor(2, mp_context=mp.get_context("spawn"), initializer=_pool_init,
                                     initargs=(None, os.getpid()))
            for _ in range(2):
                ex.submit(work, {str(log)!r})
            time.sleep(600)
    """)
    script = tmp_path / "parent.py"
    script.write_text(parent)
    p = subprocess.Popen([sys.executable, str(script)])
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 60 and (not log.exists() or len(set(log.read_text().split())) < 2):
            time.sleep(0.1)
        workers = {int(x) for x in log.read_text().split()}
        assert len(workers) == 2
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 5 and any(Path(f"/proc/{w}").exists() for w in workers):
        time.sleep(0.05)
    alive = [w for w in workers if Path(f"/proc/{w}/stat").exists()
             and Path(f"/proc/{w}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]
    assert not alive
    n = log.stat().st_size
    time.sleep(0.3)
    assert log.stat().st_size == n  # nobody writes after the parent died


def test_a_store_write_killed_leaves_nothing_behind_the_next_write_does_not_clean(one, tmp_path):
    """`collect simulate` killed mid-write leaves a hidden `.NAME.PID@HOST.*.tmp` folder; the
    next write of the same store removes those of dead processes (never a live writer's)."""
    import socket

    from replay.atomic import temp_prefix

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    target = tmp_path / "sim"
    stale = tmp_path / f".sim.{dead_pid}@{socket.gethostname()}.abcd1234.tmp"
    stale.mkdir()
    (stale / "samples.parquet").write_bytes(b"half")
    live = tmp_path / f"{temp_prefix(target)}live0001.tmp"  # this process: alive
    live.mkdir()
    other_host = tmp_path / f".sim.{dead_pid}@elsewhere.abcd1234.tmp"
    other_host.mkdir()
    st = replay.open(one)
    replay.write_store(target, st.manifest, st.questions, st.samples)
    assert not stale.exists() and live.exists() and other_host.exists()
    # killed between its two renames: the previous store is parked, and the next write restores
    # nothing is lost: a reader says where it is, the next write puts it back first
    parked = tmp_path / f".sim.old-{dead_pid}"
    os.replace(target, parked)
    assert "interrupted write left the previous store" in _err(target)
    from replay.store import _remove_stale

    _remove_stale(target)
    assert replay.open(target).name == st.name and not parked.exists()


def test_collect_simulate_killed_then_rerun_cleans_up(tmp_path):
    out = tmp_path / "sim"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([sys.executable, "-m", "collect.cli", "simulate", "hotpotqa", "--out", str(out)], env=env,
                         stderr=subprocess.DEVNULL)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 60 and not list(tmp_path.glob(".sim.*.tmp")) and p.poll() is None:
        time.sleep(0.01)
    p.kill()
    p.wait()
    q = subprocess.run([sys.executable, "-m", "collect.cli", "simulate", "2wiki", "--out", str(out), "--force"],
                       env=env, capture_output=True, text=True)
    assert q.returncode == 0, q.stderr
    assert [x.name for x in tmp_path.iterdir() if x.name.startswith(".")] == []
    assert replay.open(out).name == "sim-2wiki"


def _shard(q: str) -> pl.DataFrame:
    from collect.run.checkpoint import SHARD_SCHEMA

    row = {"question_id": q, "stage": "s", "model": "m", "context": "", "sample_index": 0, "answer": "a", "score": 1.0,
           "prompt_tokens": 1, "completion_tokens": 1, "text": "t", "finish_reason": "stop", "token_count": "exact",
           "metrics": "{}"}
    return pl.DataFrame([row], schema=SHARD_SCHEMA)


def test_checkpoint_shards_are_never_overwritten(tmp_path):
    from collect.run.checkpoint import Checkpoint

    out = tmp_path / "c"
    ck = Checkpoint(out, {"f": 1})
    for i in range(4):
        ck.add(_shard(f"q{i}"))
    ck.close()
    part = tmp_path / "c.partial"
    (part / "shard-000001.parquet").unlink()  # as the error for a corrupt shard advises
    kept = {p.name: p.read_bytes() for p in part.glob("shard-*.parquet")}
    ck = Checkpoint(out, {"f": 1})
    assert ck.pools_on_disk() == 3 and len(ck.done) == 3
    # another writer took the next name meanwhile (or a shard came back): the next free one is used
    shutil.copy(part / "shard-000000.parquet", part / "shard-000004.parquet")
    taken = (part / "shard-000004.parquet").read_bytes()
    ck.add(_shard("q9"))
    ck.close()
    now = {p.name: p.read_bytes() for p in part.glob("shard-*.parquet")}
    assert all(now[k] == v for k, v in kept.items()) and now["shard-000004.parquet"] == taken
    assert "shard-000005.parquet" in now and "shard-000001.parquet" not in now
    assert not [p for p in part.iterdir() if p.name.endswith(".tmp")]


def test_the_kept_count_is_what_the_disk_holds(tmp_path):
    """`stopped: N finished pools are kept` counts the shards on disk, not the process's memory."""
    from collect.run.checkpoint import Checkpoint

    ck = Checkpoint(tmp_path / "c", {"f": 1})
    ck.add(_shard("a"))
    ck.add(_shard("b"))
    (tmp_path / "c.partial" / "shard-000000.parquet").unlink()
    assert len(ck.done) == 2 and ck.pools_on_disk() == 1
    ck.close()


# --------------------------------------------------------------------------------------------
# The ChatDev sandbox (replay/sandbox, docs/sandbox.md): its cases through the ChatDev check


@pytest.mark.skipif(not LINUX, reason="the sandbox's guarantees are tested on Linux")
def test_chatdev_programs_cannot_reach_the_collector(tmp_path):
    from collect.tasks import chatdev
    from replay.sandbox import Limits, run

    # kill the collector by every name it has: parent, every process, the parent's group
    for prog in ("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n",
                 "import os, signal\nos.kill(-1, signal.SIGKILL)\nraise SystemExit(1)\n",
                 "import os, signal\nos.killpg(os.getpgid(os.getppid()), signal.SIGKILL)\n"):
        assert not chatdev.run_program(prog, timeout_s=2.0)
    # a fork bomb ends at the deadline (process-count limit), and the check returns
    t0 = time.monotonic()
    assert not chatdev.run_program("import os\nwhile True:\n    os.fork()\n", timeout_s=1.0)
    assert time.monotonic() - t0 < 20
    # a setsid daemon started by the check's exact command stops writing when the check returns
    box = tmp_path / "box"
    daemon = ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        while True:\n"
              "            with open('log', 'a') as f:\n                f.write('x')\n            time.sleep(0.02)\n"
              "    os._exit(0)\ntime.sleep(0.3)\n")
    run([sys.executable, "-I", "-B", "-c", chatdev._PRELUDE], files={"main.py": daemon}, workdir=box,
        limits=Limits(wall_s=2.0, cpu_s=3, memory_mb=1024, fsize_mb=64))
    n = (box / "log").stat().st_size if (box / "log").exists() else 0
    time.sleep(0.4)
    assert ((box / "log").stat().st_size if (box / "log").exists() else 0) == n
