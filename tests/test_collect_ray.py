"""`collect run --ray`: pools drawn by Ray actors give the store a serial run gives.

One local Ray instance for the module (3 logical CPUs); the actors call the scripted
OpenAI-compatible server of tests/chatserver.py (started here, in the driver's process), whose
answers depend on the request's seed and prompt only. So the data of every store below must
equal, byte for byte, the serial run's: with 1 and 3 actors, with an actor killed mid-run
(`ray.kill`), with a driver stopped by a failing backend and resumed, with a driver killed with
SIGKILL (a `collect run --ray local` subprocess with its own Ray instance) and rerun, and with
the pools spread over two endpoints.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from chatserver import ChatServer, run_cli
from collect.backends.openai_compat import OpenAIBackend
from collect.run import RunSettings, collection_status, parse_models, pool_seed, run_collection
from collect.run.distributed import RAY_NAMESPACE, RayOptions, run_collection_ray
from collect.run.worker import Engine
from replay.errors import BackendError, InputError
from test_collect_run import qa_script, write_qa

TABLES = ("samples.parquet", "questions.parquet", "stage_golds.parquet")
QUESTIONS = 6


@pytest.fixture(scope="module")
def ray_local():
    import ray  # the `ray` extra, part of `dev`: never skipped

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=3, include_dashboard=False, logging_level=logging.WARNING)
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The data, the scripted server, and the serial run's store (the reference)."""
    tmp = tmp_path_factory.mktemp("ray")
    data = tmp / "qa.jsonl"
    write_qa(data, QUESTIONS)
    srv = ChatServer(qa_script)
    w = {"tmp": tmp, "data": data, "srv": srv}
    run_collection(settings(w, "serial"), lambda m: OpenAIBackend(m.model_id, base_url=srv.base_url),
                   progress=False, log=lambda s: None)
    w["pools"] = len(srv.requests)  # one request per pool
    yield w
    srv.close()


def settings(w, out, **kw):
    return RunSettings(task="qa", data=str(w["data"]), models=tuple(parse_models("small-1B,big-8B")),
                       out=str(w["tmp"] / out), samples=4, batch_size=2, expand_top=2, max_tokens=64, train=3, **kw)


def engine(w, **kw):
    return Engine("openai", base_urls=(w["srv"].base_url,), concurrency=(4,), **kw)


def same_tables(w, out):
    for t in TABLES:
        assert (w["tmp"] / out / t).read_bytes() == (w["tmp"] / "serial" / t).read_bytes(), t


def pool_of(body):
    return body["model"], body["seed"]


def test_one_and_three_actors_give_the_serial_store(world, ray_local):
    w, srv = world, world["srv"]
    for n in (1, 3):
        del srv.requests[:]
        logs = []
        res = run_collection_ray(settings(w, f"ray{n}"), engine(w), options=RayOptions(actors=n, block=2),
                                 progress=False, log=logs.append)
        same_tables(w, f"ray{n}")
        assert res.drawn_samples == w["pools"] * 4 and not logs
        # every pool drawn once
        assert len(srv.requests) == w["pools"] == len({pool_of(b) for b in srv.requests})
        prov = json.loads((w["tmp"] / f"ray{n}" / "manifest.json").read_text())["provenance"]
        assert prov["backend"]["ray"]["actors"] == n and prov["backend"]["ray"]["actor_restarts"] == 0
        assert prov["expansion"]["coverage"] == json.loads(
            (w["tmp"] / "serial" / "manifest.json").read_text())["provenance"]["expansion"]["coverage"]
        assert not (w["tmp"] / f"ray{n}.partial").exists()
        if n == 1:
            # blocks do not wait for each other: block 0's answer stage is drawn before the last
            # block's retrieve stage (one actor takes units in order block, stage, model)
            kinds = ["answer" if "Answer the question" in b["messages"][-1]["content"] else "retrieve"
                     for b in srv.requests]
            assert kinds.index("answer") < len(kinds) - 1 - kinds[::-1].index("retrieve")


def test_an_actor_killed_mid_run_is_replaced_and_the_store_is_the_same(world, ray_local):
    w, srv = world, world["srv"]
    del srv.requests[:]
    killed = threading.Event()
    script = srv.script

    def killing_script(body, i):
        # the 5th request: kill actor 0 while its batch is in flight
        if len(srv.requests) >= 5 and not killed.is_set():
            killed.set()
            for a in ray_local.util.list_named_actors(all_namespaces=True):
                if a["namespace"] == RAY_NAMESPACE and a["name"].endswith("-0-0"):
                    ray_local.kill(ray_local.get_actor(a["name"], namespace=RAY_NAMESPACE))
        return script(body, i)

    srv.script = killing_script
    logs = []
    try:
        run_collection_ray(settings(w, "killed"), engine(w), options=RayOptions(actors=3, block=2),
                           progress=False, log=logs.append)
    finally:
        srv.script = script
    assert killed.is_set() and any("Ray actor 0 died" in s and "starting a new one" in s for s in logs)
    same_tables(w, "killed")
    prov = json.loads((w["tmp"] / "killed" / "manifest.json").read_text())["provenance"]
    assert prov["backend"]["ray"]["actor_restarts"] == 1 and prov["backend"]["ray"]["duplicate_pools_dropped"] == 0
    # only the batch in flight on the dead actor is drawn again (a batch: 2 pools)
    again = [k for k, c in Counter(pool_of(b) for b in srv.requests).items() if c > 1]
    assert len(again) <= 2 and len(srv.requests) <= w["pools"] + 2


def test_a_stopped_run_resumes_without_redrawing_and_status_reads_it(world, ray_local, capsys):
    w, srv = world, world["srv"]
    del srv.requests[:]
    srv.fail_after = 9  # the 10th request on is refused: the run stops with exit 3
    try:
        with pytest.raises(BackendError, match="scripted refusal"):
            run_collection_ray(settings(w, "resumed"), engine(w, retries=0), options=RayOptions(actors=3, block=2),
                               progress=False, log=lambda s: None)
    finally:
        srv.fail_after = None
    part = w["tmp"] / "resumed.partial"
    shards = pl.concat([pl.read_parquet(p) for p in part.glob("shard-u*.parquet")])
    kept = {(m, pool_seed(0, st, m, q, c)) for st, m, q, c in
            shards.select("stage", "model", "question_id", "context").unique().iter_rows()}
    assert 0 < len(kept) < w["pools"]
    # collect status reads a distributed partial run: the shards on disk and the driver's last report
    st = collection_status(w["tmp"] / "resumed")
    assert st.state == "partial" and sum(ln.pools_done for ln in st.lines) == len(kept)
    assert st.ray["state"] == "stopped" and len(st.ray["actors"]) == 3
    assert sum(a["pools"] for a in st.ray["actors"]) <= len(kept)
    assert {ln["stage"] for ln in st.ray["lines"]} == {"retrieve", "answer"}
    code, out, err = run_cli(["status", str(w["tmp"] / "resumed")], capsys)
    assert code == 0, err
    assert "Ray run: stopped" in out and "actors replaced" in out
    assert [ln.split()[:2] for ln in out.splitlines() if ln.split()[1:2] == ["ended"]] == [
        ["0", "ended"], ["1", "ended"], ["2", "ended"]]

    del srv.requests[:]
    logs = []
    res = run_collection_ray(settings(w, "resumed"), engine(w), options=RayOptions(actors=3, block=2),
                             progress=False, log=logs.append)
    assert res.resumed_pools == len(kept) and logs[0].startswith(f"resuming: {len(kept)} finished pools")
    # no finished pool drawn again; everything else drawn once
    drawn = [pool_of(b) for b in srv.requests]
    assert not kept & set(drawn) and len(drawn) == len(set(drawn)) == w["pools"] - len(kept)
    same_tables(w, "resumed")


def _gone(pid):
    """The process has ended (a zombie has too: nothing in it runs)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def _wait_for(cond, what, timeout=120.0):
    end = time.time() + timeout
    while not cond():
        assert time.time() < end, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_driver_killed_with_sigkill_leaves_no_actor_and_the_rerun_draws_only_the_rest(world, ray_local, capsys):
    """`collect run --ray local` in a subprocess (its own Ray instance): the scripted server holds
    every request after the 8th, so the driver is killed (SIGKILL, nothing in it runs) with some
    pools on disk and some in flight. Its actors must end by themselves (they watch the driver's
    pid; its Ray instance's raylet dies with it too) and publish nothing more; the same command rerun (here, on the module's Ray instance),
    and a serial rerun of a copy of the partial folder, draw only the missing pools, once each,
    and give the serial run's store."""
    w, srv = world, world["srv"]
    out, part = w["tmp"] / "sigkill", w["tmp"] / "sigkill.partial"
    argv = ["run", "--task", "qa", "--data", str(w["data"]), "--models", "small-1B,big-8B", "--samples", "4",
            "--batch-size", "2", "--expand-top", "2", "--max-tokens", "64", "--train", "3", "--backend", "openai",
            "--base-url", srv.base_url, "--concurrency", "4", "--ray", "local", "--actors", "2", "--block", "2",
            "--out", str(out), "--quiet"]
    gate = threading.Event()
    script = srv.script

    def held_script(body, i):
        if len(srv.requests) > 8:
            gate.wait(60)
        return script(body, i)

    del srv.requests[:]
    srv.script = held_script
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}  # its own Ray, not the module's
    errlog = (w["tmp"] / "sigkill.stderr").open("wb")  # a file, not a pipe that Ray's chatter could fill
    proc = subprocess.Popen([sys.executable, "-m", "collect.cli", *argv], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=errlog)
    errlog.close()
    try:
        def running():
            assert proc.poll() is None, (w["tmp"] / "sigkill.stderr").read_text()[-2000:]
            try:
                rep = json.loads((part / "progress.json").read_text())
            except (OSError, ValueError):
                return False
            return (rep["state"] == "running" and all(a["pid"] for a in rep["actors"]) and len(srv.requests) > 8
                    and any(part.glob("shard-u*.parquet")))

        _wait_for(running, "the driver to run with pools on disk and requests held")
        actors = [a["pid"] for a in json.loads((part / "progress.json").read_text())["actors"]]
        assert len(actors) == 2
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        # the actors end by themselves (the test ends nothing else before this; the actors run in
        # sessions of their own, so even the process group's kill below would not reach them)
        _wait_for(lambda: all(_gone(p) for p in actors), "the dead driver's actors to end", timeout=30)
        published = sorted(p.name for p in part.iterdir())
        gate.set()  # the held requests are answered now, to nobody
        time.sleep(1.0)
        assert sorted(p.name for p in part.iterdir()) == published  # nothing written after the driver died
    finally:
        gate.set()
        srv.script = script
        try:  # its Ray instance's own processes (GCS, raylet) must not outlive the test either
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(30)
    assert json.loads((part / "progress.json").read_text())["state"] == "running"  # it never said goodbye
    from collect.run.status import collection_status

    assert collection_status(str(out)).ray["state"].startswith("stopped (driver gone")  # status sees through it
    shards = pl.concat([pl.read_parquet(p) for p in part.glob("shard-u*.parquet")])
    kept = {(m, pool_seed(0, st, m, q, c)) for st, m, q, c in
            shards.select("stage", "model", "question_id", "context").unique().iter_rows()}
    assert 0 < len(kept) < w["pools"]

    def drew_only_the_rest():
        drawn = [pool_of(b) for b in srv.requests]
        assert not kept & set(drawn) and len(drawn) == len(set(drawn)) == w["pools"] - len(kept)

    # a serial rerun of a copy of the partial folder (a --ray run's shards are a serial run's too)
    shutil.copytree(part, w["tmp"] / "sigkill-serial.partial", ignore=shutil.ignore_patterns(".lock"))
    del srv.requests[:]
    res = run_collection(settings(w, "sigkill-serial"), lambda m: OpenAIBackend(m.model_id, base_url=srv.base_url),
                         progress=False, log=lambda s: None)
    assert res.resumed_pools == len(kept)
    drew_only_the_rest()
    same_tables(w, "sigkill-serial")
    # the same command rerun, on Ray
    del srv.requests[:]
    code, _, err = run_cli(argv, capsys)
    assert code == 0, err
    assert f"resuming: {len(kept)} finished pools" in err
    drew_only_the_rest()
    same_tables(w, "sigkill")
    assert not part.exists()


def test_cli_spreads_pools_over_endpoints_each_with_its_bound(world, ray_local, capsys):
    w = world
    with ChatServer(qa_script, delay=0.05) as a, ChatServer(qa_script, delay=0.05) as b:
        code, out, err = run_cli(["run", "--task", "qa", "--data", str(w["data"]), "--models", "small-1B,big-8B",
                                  "--samples", "4", "--batch-size", "2", "--expand-top", "2", "--max-tokens", "64",
                                  "--train", "3", "--backend", "openai", "--base-url", a.base_url, "--base-url",
                                  b.base_url, "--concurrency", "2,1", "--ray", "local", "--actors", "3", "--block", "2",
                                  "--out", str(w["tmp"] / "cli"), "--quiet"], capsys)
        assert code == 0, err
        assert a.requests and b.requests and len(a.requests) + len(b.requests) == w["pools"]
        # endpoint a serves actors 0 and 2 (a request each at most), b actor 1: the bounds hold
        assert a.max_in_flight <= 2 and b.max_in_flight <= 1
    same_tables(w, "cli")
    prov = json.loads((w["tmp"] / "cli" / "manifest.json").read_text())["provenance"]
    assert prov["backend"]["base_url"] == [a.base_url, b.base_url] and prov["backend"]["concurrency"] == [2, 1]
    assert "--ray local" in prov["command"] and prov["command"].count("--base-url") == 2


@pytest.mark.parametrize("extra, where, problem", [
    (["--actors", "2"], "--actors", "applies to --ray collections only"),
    (["--base-url", "http://127.0.0.1:8/v1"], "--base-url", "several endpoints need --ray"),
    (["--concurrency", "1,2"], "--concurrency", "2 bounds for 1"),
    (["--concurrency", "0"], "--concurrency", "at least 1"),
    (["--ray", "local", "--graph"], "--ray", "graph collections"),
])
def test_ray_options_are_checked_before_anything_starts(tmp_path, capsys, extra, where, problem):
    data = tmp_path / "m.jsonl"
    data.write_text(json.dumps({"id": 0, "question": "What is 1 + 2?", "gold": "3"}) + "\n")
    code, _, err = run_cli(["run", "--task", "math", "--data", str(data), "--models", "a-1B", "--backend", "openai",
                            "--base-url", "http://127.0.0.1:9/v1", *extra, "--out", str(tmp_path / "s"), "--quiet"],
                           capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and where in err and problem in err, err


def test_engine_splits_each_endpoints_bound_and_builds_vllm_engines(monkeypatch):
    """Actor k calls endpoint k mod E; an endpoint's actors share its bound. The vLLM engine of an
    actor (checked with a FAKE `vllm` module, in this process: there is no GPU here) gets the
    options of a serial run, and process workers when tensor parallel."""
    import sys
    import types

    eng = Engine("openai", base_urls=("http://a/v1", "http://b/v1"), concurrency=(5, 1))
    assert [eng.endpoint_of(k) for k in range(3)] == [0, 1, 0]
    assert [eng.actor_concurrency(k, 3) for k in range(3)] == [3, 1, 2]  # 3 + 2 = a's 5; b's 1
    assert eng.gpus_per_actor == 0.0 and "http://b/v1 x1" in eng.describe(1, 3)
    seen = []

    class LLM:
        def __init__(self, **kw):
            seen.append(kw)

        def get_tokenizer(self):
            return None

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM))
    model = parse_models("tiny-1B")[0]
    for tp in (1, 2):
        v = Engine("vllm", vllm=(("tensor_parallel_size", tp), ("gpu_memory_utilization", 0.8), ("seed", 3)))
        assert v.gpus_per_actor == tp
        v.make(model, 0, 1)
    assert seen[0]["tensor_parallel_size"] == 1 and "distributed_executor_backend" not in seen[0]
    assert seen[1]["tensor_parallel_size"] == 2 and seen[1]["distributed_executor_backend"] == "mp"
    assert seen[1]["gpu_memory_utilization"] == 0.8 and seen[1]["seed"] == 3 and seen[1]["model"] == "tiny-1B"


def test_vllm_actors_need_the_gpus_they_ask_for(world, ray_local, monkeypatch):
    import collect.backends.vllm_backend as vb

    monkeypatch.setattr(vb, "vllm_device", lambda: "cuda")  # a GPU build of vLLM (none here)
    vllm = Engine("vllm", vllm=(("tensor_parallel_size", 2),))
    with pytest.raises(InputError, match="the Ray cluster has 0 GPUs, an actor needs 2"):
        run_collection_ray(settings(world, "nogpu"), vllm, progress=False, log=lambda s: None)
    with pytest.raises(InputError, match="exceed the cluster's 0 GPUs"):
        run_collection_ray(settings(world, "nogpu"), vllm, options=RayOptions(actors=1), progress=False,
                           log=lambda s: None)


def test_vllm_cpu_build_actors_ask_ray_for_no_gpu(world, ray_local, monkeypatch):
    """The driver sees a CPU build of vLLM (simulated in this process): the actor asks Ray for
    no GPU, so it starts on this GPU-less cluster instead of being refused (or waiting), and one
    actor is the default. Its engine then fails to load in the actor (no vLLM there, or no such
    model): one BackendError line, not a hang. The real engine: test_vllm_on_ray_real_engine."""
    import collect.backends.vllm_backend as vb

    monkeypatch.setattr(vb, "vllm_device", lambda: "cpu")
    cpu = Engine("vllm", vllm=(("tensor_parallel_size", 1), ("gpu_memory_utilization", 0.1)), device="cpu")
    assert cpu.gpus_per_actor == 0.0 and cpu.describe(0, 1) == "vllm, CPU"
    logs = []
    with pytest.raises(BackendError, match="vLLM"):
        run_collection_ray(settings(world, "cpubuild"), Engine("vllm", vllm=cpu.vllm), progress=False,
                           log=logs.append)
    assert any("CPU build" in s and "no GPU" in s for s in logs), logs
    prog = json.loads((world["tmp"] / "cpubuild.partial" / "progress.json").read_text())
    assert [a["engine"] for a in prog["actors"]] == ["vllm, CPU"], prog["actors"]


@pytest.mark.vllm
def test_vllm_on_ray_real_engine(tmp_path, capsys):
    """Opt-in (`pytest -m vllm`, needs vLLM; the CPU build works): `collect run --backend vllm
    --ray local --actors 2` on a tiny random Llama and the aime fixture, each actor holding a
    real vLLM engine, writes the serial `collect run --backend vllm` run's tables byte for byte,
    and the completions' texts (kept with --keep-raw) are the serial run's, sample by sample:
    every pool is drawn with its own seed, the blocks are cut as the serial run's batches. Three
    engine starts (one serial, two actors at once), about 6 minutes on two cores."""
    pytest.importorskip("vllm")
    from collect.backends.vllm_backend import vllm_device
    from test_collect_run import FIXTURES, _tiny_llama

    model = tmp_path / "tiny-llama-5M"
    _tiny_llama(model)
    common = ["run", "--task", "aime", "--data", str(FIXTURES / "aime" / "aime.jsonl"), "--limit", "3",
              "--models", str(model), "--samples", "4", "--max-tokens", "12", "--batch-size", "2", "--keep-raw",
              "--backend", "vllm", "--gpu-memory-utilization", "0.1", "--max-model-len", "512", "--quiet"]
    code, _, err = run_cli(common + ["--out", str(tmp_path / "serial")], capsys)
    assert code == 0, err
    code, out, err = run_cli(common + ["--out", str(tmp_path / "ray"), "--ray", "local", "--actors", "2"], capsys)
    assert code == 0, err
    print(out, err)
    cpu = vllm_device() == "cpu"
    assert ("CPU build" in err) == cpu
    tables = [t for t in TABLES if (tmp_path / "serial" / t).exists()]
    assert "samples.parquet" in tables and tables == [t for t in TABLES if (tmp_path / "ray" / t).exists()]
    for t in tables:
        assert (tmp_path / "ray" / t).read_bytes() == (tmp_path / "serial" / t).read_bytes(), t

    def texts(name):  # every completion, from the kept shards (cut by batch serially, by unit on Ray)
        df = pl.concat([pl.read_parquet(p) for p in sorted((tmp_path / f"{name}.raw").glob("shard-*.parquet"))])
        return df.sort("question_id", "sample_index").select("question_id", "sample_index", "text", "finish_reason",
                                                               "completion_tokens")

    serial, ray = texts("serial"), texts("ray")
    assert serial.height == 3 * 4 and serial["completion_tokens"].is_between(1, 12).all()
    assert serial.equals(ray)
    # the seed matters: a pool's four samples are not all one text (else equality would say little)
    assert (serial.group_by("question_id").agg(pl.col("text").n_unique())["text"] > 1).all()
    print(serial)
    ray_info = json.loads((tmp_path / "ray" / "manifest.json").read_text())["provenance"]["backend"]["ray"]
    assert ray_info["actors"] == 2 and ray_info["units"] == 2 and ray_info["actor_restarts"] == 0
    assert ray_info["device"] == ("cpu" if cpu else "cuda") and ray_info["duplicate_pools_dropped"] == 0
