"""A fault corpus: bad stores, bad arguments, unwritable outputs, kill -9 at many points,
concurrent writers and hostile programs, run against the real commands, each outcome classified.

    python benchmarks/fault_corpus.py                 # every case (a few minutes on 2 cores)
    python benchmarks/fault_corpus.py -k store -j 2   # the cases whose name holds 'store'
    python benchmarks/fault_corpus.py --json faults.json

Each case runs `collect`, `replay` or `search` as a subprocess (or, for the sandbox and a few
crash points, the library) and is classified:

    error       one line `error: ...` on stderr (notes allowed before it), the expected exit code,
                no traceback: what bad input must give
    ok          the command succeeded (where success is right) and its post-check passed
    usage       click's own usage error (exit 2, several lines): not one line, but not a crash
    traceback   a Python traceback, or a crash (killed by a signal, an abort)
    silent      exit 0 where an error was expected: a wrong result nobody is told about
    data        data lost or changed: an archive, shard or store that a post-check finds
                unreadable, overwritten, duplicated or different from an uninterrupted run
    wrong       an error, but not the expected one (exit code, several lines, wrong subject)
    leak        a process or temporary file left behind that should not be

The expected class of every case is `error` or `ok`; the summary prints the count per class
and lists every case that is neither. It writes only under a temporary folder (--keep to keep it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
PY = sys.executable
MODULES = {"replay": "replay.cli", "search": "search.cli", "collect": "collect.cli"}
AIME = ROOT / "traces" / "aime24"
CHATDEV = ROOT / "traces" / "sim-chatdev"
TWOWIKI = ROOT / "traces" / "sim-2wiki"
TIMEOUT = 240


@dataclass
class Outcome:
    name: str
    group: str
    cls: str
    detail: str = ""
    seconds: float = 0.0


@dataclass
class Case:
    name: str
    group: str
    fn: Callable[["Work"], tuple[str, str]]


CASES: list[Case] = []


def case(name: str, group: str):
    def deco(fn):
        CASES.append(Case(name, group, fn))
        return fn
    return deco


# --------------------------------------------------------------------------------------------
# Running commands and classifying what they did


@dataclass
class Proc:
    code: int
    out: str
    err: str


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    e["NUMBA_NUM_THREADS"] = "1"
    e.pop("OPENAI_BASE_URL", None)
    e.pop("OPENAI_API_KEY", None)
    return e


def argv(tool: str, *args) -> list[str]:
    return [PY, "-m", MODULES[tool], *map(str, args)]


def run(tool: str, *args, cwd=None, timeout=TIMEOUT, user: str | None = None) -> Proc:
    cmd = argv(tool, *args)
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env(),
                           errors="replace")
    except subprocess.TimeoutExpired as e:
        return Proc(-999, e.stdout or "", (e.stderr or "") + "\n[timed out]")
    return Proc(p.returncode, p.stdout, p.stderr)


def start(tool: str, *args, cwd=None) -> subprocess.Popen:
    return subprocess.Popen(argv(tool, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
                            env=env(), errors="replace", start_new_session=True)


def _is_progress(line: str) -> bool:
    return "|" in line and ("it/s" in line or "s/it" in line or "%" in line) or line.startswith("\r")


def classify(p: Proc, code: int = 2, mention: str | None = None) -> tuple[str, str]:
    """What a finished command's exit code and stderr say (see the module docstring)."""
    err = p.err
    last = " / ".join(err.strip().splitlines()[-2:])[:300]
    if "Traceback (most recent call last)" in err or "PanicException" in err or "panicked at" in err:
        return "traceback", last
    if p.code == -999:
        return "wrong", "timed out"
    if p.code < 0 or p.code > 3 and p.code != 130:
        return "traceback", f"exit {p.code}: {last}"
    if code == 0:
        return ("ok", "") if p.code == 0 else ("wrong", f"exit {p.code}: {last}")
    if p.code == 0:
        return "silent", (p.out.strip().splitlines() or [""])[-1][:200]
    lines = [ln for ln in err.splitlines() if ln.strip() and not _is_progress(ln)]
    errors = [ln for ln in lines if ln.startswith("error:")]
    if any(ln.startswith("Usage:") for ln in lines) and any(ln.startswith("Error:") for ln in lines):
        return "usage", [ln for ln in lines if ln.startswith("Error:")][0][:200]
    if len(errors) != 1 or not lines or not lines[-1].startswith("error:"):
        return "wrong", f"exit {p.code}, not one error line: {last}"
    if p.code != code:
        return "wrong", f"exit {p.code} (expected {code}): {errors[0][:200]}"
    if mention is not None and not re.search(mention, errors[0], re.I):
        return "wrong", f"does not mention /{mention}/: {errors[0][:200]}"
    return "error", errors[0][:200]


# --------------------------------------------------------------------------------------------
# Fixtures


class Work:
    """A case's own folder, with helpers that copy stores and build bad ones."""

    def __init__(self, root: Path, name: str):
        self.dir = root / re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        self.dir.mkdir(parents=True)

    def p(self, *parts) -> Path:
        return self.dir.joinpath(*parts)

    def store(self, src: Path = AIME, name: str = "s") -> Path:
        dst = self.p(name)
        shutil.copytree(src, dst)
        return dst


def reseal(store: Path) -> None:
    """After a deliberate edit (a bad store that another tool might write), make the manifest's
    checksums (if the store has any) agree again: the corpus tests validation, not the hash."""
    m = json.loads((store / "manifest.json").read_text())
    if "checksums" not in m:
        return
    from replay.store import seal

    seal(store, validate=False)


def edit_table(store: Path, name: str, fn) -> None:
    import pyarrow.parquet as pq

    t = pq.read_table(store / name)
    pq.write_table(fn(t), store / name)
    reseal(store)


def edit_manifest(store: Path, fn, raw: str | None = None) -> None:
    if raw is not None:
        (store / "manifest.json").write_text(raw)
        return
    m = json.loads((store / "manifest.json").read_text())
    m.pop("checksums", None)
    fn(m)
    (store / "manifest.json").write_text(json.dumps(m, indent=1, allow_nan=True))


def set_col(t, col: str, values, typ=None):
    import pyarrow as pa

    i = t.column_names.index(col)
    arr = pa.array(values, type=typ) if typ is not None else pa.array(values)
    return t.set_column(i, pa.field(col, arr.type), arr)


def with_first(t, col: str, value, typ=None):
    """Column `col` with its first value replaced (and cast to `typ`)."""
    import pyarrow as pa

    vals = t.column(col).to_pylist()
    vals[0] = value
    return set_col(t, col, vals, typ if typ is not None else t.schema.field(col).type if value is not None else None)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree(path: Path) -> dict[str, str]:
    return {str(f.relative_to(path)): digest(f) for f in sorted(path.rglob("*")) if f.is_file()}


def hidden_temps(folder: Path) -> list[str]:
    return sorted(f.name for f in folder.iterdir() if f.name.startswith(".") and ".tmp" in f.name) if folder.is_dir() else []


# --------------------------------------------------------------------------------------------
# Bad stores: each opened by `replay info`, `replay eval`, `search` and `collect status`


def _store_readers(store: Path):
    cfg = "Qwen3-8B:2" if (store / "samples.parquet").is_file() and "aime" in store.name else None
    return [
        ("info", lambda w: run("replay", "info", store)),
        ("eval", lambda w: run("replay", "eval", store, "-c", cfg or "Qwen3-8B:2", "-r", 4)),
        ("search", lambda w: run("search", "--replay", store, "--searcher", "random", "--trials", 3, "--out",
                                 w.p("out"), "--no-optimum", "--test-replicates", 4)),
        ("status", lambda w: run("collect", "status", store)),
    ]


def bad_store(name: str, make: Callable[[Path], None], mention: str | None = None, readers=("info", "eval", "search", "status")):
    for reader in readers:
        def fn(w: Work, reader=reader):
            s = w.store(AIME, "aime")
            make(s)
            cmd = dict(_store_readers(s))[reader]
            p = cmd(w)
            return classify(p, 2, mention)
        CASES.append(Case(f"store/{name}/{reader}", "store", fn))


def bad_chatdev(name: str, make: Callable[[Path], None], mention: str | None = None):
    def fn(w: Work):
        s = w.store(CHATDEV, "chat")
        make(s)
        return classify(run("replay", "info", s), 2, mention)
    CASES.append(Case(f"store/{name}/info", "store", fn))

    def fn2(w: Work):
        s = w.store(CHATDEV, "chat")
        make(s)
        return classify(run("replay", "eval", s, "-c", "Qwen2.5-72B:1,Qwen2.5-72B:2,Qwen2.5-72B:1", "-r", 4), 2, mention)
    CASES.append(Case(f"store/{name}/eval", "store", fn2))


def _register_bad_stores():
    import pyarrow as pa

    big = 2 ** 64 - 5
    bad_store("uint64-completion-huge", lambda s: edit_table(s, "samples.parquet", lambda t: with_first(
        t, "completion_tokens", big, pa.uint64())), "completion_tokens")
    bad_store("uint64-prompt-huge", lambda s: edit_table(s, "samples.parquet", lambda t: with_first(
        t, "prompt_tokens", big, pa.uint64())), "prompt_tokens")
    bad_store("int64-tokens-2^62", lambda s: edit_table(s, "samples.parquet", lambda t: with_first(
        t, "completion_tokens", 2 ** 62, pa.int64())), "completion_tokens")
    bad_store("uint32-sample-index-huge", lambda s: edit_table(s, "samples.parquet", lambda t: with_first(
        t, "sample_index", 2 ** 32 - 3, pa.uint32())), "sample_index")
    bad_store("score-inf", lambda s: edit_table(s, "samples.parquet", lambda t: with_first(t, "score", float("inf"))),
              "score", readers=("info", "eval", "search"))
    bad_store("score-minus-inf", lambda s: edit_table(s, "samples.parquet", lambda t: with_first(t, "score", float("-inf"))),
              "score", readers=("info", "eval"))
    bad_store("score-nan", lambda s: edit_table(s, "samples.parquet", lambda t: with_first(t, "score", float("nan"))),
              "score", readers=("info",))
    for v in ("Infinity", "-Infinity", "NaN", "1e400", "0", "-5", "true", '"8e9"', "null"):
        def mk(s, v=v):
            txt = (s / "manifest.json").read_text()
            txt = re.sub(r'"params": [0-9.e+]+', f'"params": {v}', txt, count=1)
            m = json.loads(txt)
            m.pop("checksums", None)
            (s / "manifest.json").write_text(json.dumps(m, allow_nan=True).replace('"params": "__', '"params": '))
        bad_store(f"params-{v.strip(chr(34))}", mk, "params", readers=("info", "eval"))
    bad_store("manifest-nested-100k", lambda s: edit_manifest(s, None, raw='{"name": ' + "[" * 100_000 + "]" * 100_000 + "}"),
              "manifest", readers=("info", "search", "status"))
    bad_store("manifest-nested-list-100k", lambda s: edit_manifest(s, None, raw="[" * 100_000 + "]" * 100_000),
              "manifest", readers=("info",))
    bad_store("manifest-invalid-utf8", lambda s: (s / "manifest.json").write_bytes(b'{"name": "\xff\xfe"}'),
              "manifest", readers=("info",))
    bad_store("manifest-is-a-folder", lambda s: ((s / "manifest.json").unlink(), (s / "manifest.json").mkdir()),
              "manifest", readers=("info", "status"))
    bad_store("samples-is-a-folder", lambda s: ((s / "samples.parquet").unlink(), (s / "samples.parquet").mkdir()),
              "samples", readers=("info",))
    bad_store("samples-empty-file", lambda s: (s / "samples.parquet").write_bytes(b""), "samples", readers=("info",))
    bad_store("samples-truncated", lambda s: (s / "samples.parquet").write_bytes((s / "samples.parquet").read_bytes()[:5000]),
              "samples", readers=("info", "eval"))
    bad_store("format-version-true", lambda s: edit_manifest(s, lambda m: m.update(format_version=True)), "format_version",
              readers=("info",))
    bad_store("probe-interval-true", lambda s: edit_manifest(s, lambda m: m.update(probe_interval=True)), "probe_interval",
              readers=("info",))
    bad_store("split-repeats-a-question", lambda s: edit_manifest(s, lambda m: m["split"]["train"].append(m["split"]["train"][0])),
              "split", readers=("info", "search"))
    for nm in ("../../escape", "/tmp/x/TARGET", "a/b", "..", ".", "", "x\ny", "x\x00y", "-rf"):
        bad_store(f"name-{nm.encode().hex()}", lambda s, nm=nm: edit_manifest(s, lambda m: m.update(name=nm)), "name",
                  readers=("info",))

    def invalid_utf8(col: str, table: str = "samples.parquet"):
        def mk(s):
            def fn(t):
                arr = t.column(col).combine_chunks()
                if pa.types.is_large_string(arr.type):
                    arr = arr.cast(pa.string())
                offsets, data = arr.buffers()[1], bytearray(arr.buffers()[2].to_pybytes())
                data[0:2] = b"\xff\xfe"
                bad = pa.Array.from_buffers(pa.string(), len(arr), [arr.buffers()[0], offsets, pa.py_buffer(bytes(data))])
                return set_col(t, col, bad, pa.string())
            edit_table(s, table, fn)
        return mk

    for col in ("answer", "question_id", "model", "context"):
        bad_store(f"invalid-utf8-samples-{col}", invalid_utf8(col), col if col != "context" else None,
                  readers=("info", "eval"))
    bad_store("invalid-utf8-questions-gold", invalid_utf8("gold", "questions.parquet"), "gold", readers=("info",))

    # flipped bytes after the store was written (no reseal): an error, never a changed result.
    # The store is first sealed, as a store written by this version is (where the tool can).
    def seal_if_possible(s):
        try:
            from replay.store import seal
        except ImportError:
            return
        seal(s)

    def flip(table: str, where: float):
        def mk(s):
            seal_if_possible(s)
            b = bytearray((s / table).read_bytes())
            b[int(len(b) * where)] ^= 0x10
            (s / table).write_bytes(bytes(b))
        return mk

    for where in (0.1, 0.3, 0.5, 0.7, 0.9, 0.995):
        bad_store(f"flipped-byte-samples-{where}", flip("samples.parquet", where), None, readers=("eval",))
    bad_store("flipped-byte-questions", flip("questions.parquet", 0.5), None, readers=("eval",))

    def flip_manifest_digit(s):
        seal_if_possible(s)
        txt = (s / "manifest.json").read_text()
        i = txt.index('"params": ') + len('"params": ')
        (s / "manifest.json").write_text(txt[:i] + ("1" if txt[i] != "1" else "2") + txt[i + 1:])
    bad_store("flipped-digit-manifest-params", flip_manifest_digit, None, readers=("eval",))

    # fusions and stage golds (sim-chatdev: design -> code (llm_fuse) -> test)
    def dup_fusions(s):
        edit_table(s, "fusions.parquet", lambda t: pa.concat_tables([t, t.slice(0, 1)]))
    bad_chatdev("duplicate-fusion-row", dup_fusions, "fusion")

    def dup_all_fusions(s):
        edit_table(s, "fusions.parquet", lambda t: pa.concat_tables([t, t]))
    bad_chatdev("every-fusion-row-twice", dup_all_fusions, "fusion")

    def conflicting_golds(s):
        def fn(t):
            extra = t.slice(0, 1)
            extra = set_col(extra, "gold", ["something-else"], pa.string())
            return pa.concat_tables([t, extra.cast(t.schema)])
        edit_table(s, "stage_golds.parquet", fn)
    bad_chatdev("conflicting-stage-golds", conflicting_golds, "gold")

    def identical_golds(s):
        edit_table(s, "stage_golds.parquet", lambda t: pa.concat_tables([t, t.slice(0, 1)]))
    bad_chatdev("duplicate-stage-gold", identical_golds, "gold")
    bad_chatdev("fusion-score-inf", lambda s: edit_table(s, "fusions.parquet", lambda t: with_first(t, "score", float("inf"))),
                "score")
    bad_chatdev("fusion-score-nan", lambda s: edit_table(s, "fusions.parquet", lambda t: with_first(t, "score", float("nan"))),
                "score")
    bad_chatdev("fusion-tokens-negative", lambda s: edit_table(s, "fusions.parquet", lambda t: with_first(
        t, "completion_tokens", -7)), "token")
    bad_chatdev("fusion-tokens-uint64-huge", lambda s: edit_table(s, "fusions.parquet", lambda t: with_first(
        t, "prompt_tokens", 2 ** 64 - 9, pa.uint64())), "prompt_tokens")
    bad_chatdev("fusion-subset-negative", lambda s: edit_table(s, "fusions.parquet", lambda t: with_first(
        t, "subset", [-1], pa.list_(pa.int32()))), "subset|sample_index")


# --------------------------------------------------------------------------------------------
# Bad arguments, every command


def arg_case(name: str, tool: str, args: Callable[[Work], list], code: int = 2, mention: str | None = None,
             group: str = "args", post: Callable[[Work, Proc], tuple[str, str] | None] | None = None):
    def fn(w: Work):
        p = run(tool, *args(w))
        c = classify(p, code, mention)
        if post is not None and c[0] in ("ok", "error", "silent"):
            r = post(w, p)
            if r is not None:
                return r
        return c
    CASES.append(Case(f"{group}/{name}", group, fn))


def _register_args():
    A = AIME
    search = ["--replay", A, "--searcher", "random", "--trials", 3, "--no-optimum", "--test-replicates", 4]
    for v in ("nan", "0", "-5", "inf", "-inf", "abc", "1e400"):
        arg_case(f"replay-eval-budget-{v}", "replay", lambda w, v=v: ["eval", A, "-c", "Qwen3-8B:2", "-r", 4, "--budget", v],
                 mention="budget")
        arg_case(f"replay-sweep-budget-{v}", "replay", lambda w, v=v: ["sweep", A, "--out", w.p("s.parquet"), "-r", 2,
                                                                      "--budget", v, "--max-samples", 2], mention="budget")
        arg_case(f"search-budget-{v}", "search", lambda w, v=v: [*search, "--out", w.p("o"), "--budget", v], mention="budget")
    for v in ("-1", str(10 ** 23), str(2 ** 64), str(2 ** 63)):
        arg_case(f"replay-eval-seed-{v[:6]}", "replay", lambda w, v=v: ["eval", A, "-c", "Qwen3-8B:2", "-r", 4, "--seed", v],
                 mention="seed")
        arg_case(f"replay-sweep-seed-{v[:6]}", "replay", lambda w, v=v: ["sweep", A, "--out", w.p("s.parquet"), "-r", 2,
                                                                        "--max-samples", 2, "--seed", v], mention="seed")
        arg_case(f"replay-curve-seed-{v[:6]}", "replay", lambda w, v=v: ["curve", A, "--out", w.p("c.png"), "-r", 2,
                                                                        "--max-samples", 2, "--seed", v], mention="seed")
        arg_case(f"replay-frontier-seed-{v[:6]}", "replay", lambda w, v=v: ["frontier", A, "--out", w.p("f.png"),
                                                                           "--replicates", 2, "--model", "Qwen3-8B",
                                                                           "--controllers", "majority", "--betas", "0:1:2",
                                                                           "--seed", v], mention="seed")
        arg_case(f"search-seed-{v[:6]}", "search", lambda w, v=v: [*search, "--out", w.p("o"), "--seed", v], mention="seed")
        arg_case(f"search-replay-seed-{v[:6]}", "search", lambda w, v=v: [*search, "--out", w.p("o"), "--replay-seed", v],
                 mention="seed")
        arg_case(f"sweep-replay-seed-{v[:6]}", "search", lambda w, v=v: ["sweep", "--stores", A, "--searchers", "random",
                                                                        "--trials", 2, "--out", w.p("sw"), "--no-optimum",
                                                                        "--test-replicates", 2, "--replay-seed", v],
                 mention="seed")
        arg_case(f"simulate-seed-{v[:6]}", "collect", lambda w, v=v: ["simulate", "2wiki", "--out", w.p("sim"), "--seed", v],
                 mention="seed")
        arg_case(f"import-split-seed-{v[:6]}", "collect", lambda w, v=v: ["import", "autotts", w.p(), "--out", w.p("imp"),
                                                                         "--split-seed", v], mention="seed")
    for v in ("0", "-1", "1000000000", "100000000000000000000"):
        arg_case(f"replay-eval-r-{v[:6]}", "replay", lambda w, v=v: ["eval", A, "-c", "Qwen3-8B:2", "-r", v], mention="replicates|-r")
        arg_case(f"replay-sweep-r-{v[:6]}", "replay", lambda w, v=v: ["sweep", A, "--out", w.p("s.parquet"), "--max-samples", 2,
                                                                     "-r", v], mention="replicates|-r")
        arg_case(f"replay-curve-r-{v[:6]}", "replay", lambda w, v=v: ["curve", A, "--out", w.p("c.png"), "--max-samples", 2,
                                                                     "-r", v], mention="replicates|-r")
        arg_case(f"replay-frontier-r-{v[:6]}", "replay", lambda w, v=v: ["frontier", A, "--out", w.p("f.png"), "--model",
                                                                        "Qwen3-8B", "--controllers", "majority", "--betas",
                                                                        "0:1:2", "--replicates", v], mention="replicates")
        arg_case(f"search-replicates-{v[:6]}", "search", lambda w, v=v: [*search, "--out", w.p("o"), "--replicates", v],
                 mention="replicates")
        arg_case(f"search-test-replicates-{v[:6]}", "search", lambda w, v=v: ["--replay", A, "--searcher", "random", "--trials",
                                                                             2, "--no-optimum", "--out", w.p("o"),
                                                                             "--test-replicates", v], mention="replicates")
    arg_case("replay-eval-questions-repeated", "replay", lambda w: ["eval", A, "-c", "Qwen3-8B:2", "-r", 4, "--questions",
                                                                    "aime24-000,aime24-000"], mention="questions")
    arg_case("replay-eval-questions-repeated-3", "replay", lambda w: ["eval", A, "-c", "Qwen3-8B:2", "-r", 4, "--questions",
                                                                      "aime24-000,aime24-001,aime24-000"], mention="questions")
    arg_case("replay-sweep-questions-repeated", "replay", lambda w: ["sweep", A, "--out", w.p("s.parquet"), "-r", 2,
                                                                     "--max-samples", 2, "--questions", "aime24-003,aime24-003"],
             mention="questions")
    arg_case("replay-frontier-questions-repeated", "replay", lambda w: ["frontier", A, "--out", w.p("f.png"), "--model", "Qwen3-8B",
                                                                        "--controllers", "majority", "--betas", "0:1:2",
                                                                        "--replicates", 2, "--questions", "aime24-003,aime24-003"],
             mention="questions")
    arg_case("replay-eval-questions-unknown", "replay", lambda w: ["eval", A, "-c", "Qwen3-8B:2", "--questions", "nope,"],
             mention="nope")
    arg_case("replay-eval-questions-empty-split", "replay", lambda w: ["eval", A, "-c", "Qwen3-8B:2", "--questions", "dev"],
             mention="dev")

    def json_valid(w: Work, p: Proc):
        try:
            for line in p.out.splitlines():
                json.loads(line, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
        except ValueError as e:
            return "silent", f"invalid JSON on stdout: {e}"
        return None
    arg_case("replay-eval-json-infeasible", "replay", lambda w: ["eval", A, "-c", "Qwen3-8B:64", "-r", 4, "--budget", 1,
                                                                  "--json"], code=0, post=json_valid)
    arg_case("replay-eval-json-one-replicate", "replay", lambda w: ["eval", A, "-c", "Qwen3-8B:4", "-r", 1, "--json"], code=0,
             post=json_valid)

    for v in ("0", "-4"):
        arg_case(f"search-seeds-workers-{v}", "search", lambda w, v=v: [*search, "--out", w.p("o"), "--seeds", "0-1",
                                                                        "--workers", v], mention="workers")
        arg_case(f"search-workers-{v}", "search", lambda w, v=v: [*search, "--out", w.p("o"), "--workers", v], mention="workers")
        arg_case(f"sweep-workers-{v}", "search", lambda w, v=v: ["sweep", "--stores", A, "--searchers", "random", "--trials", 2,
                                                                "--out", w.p("sw"), "--workers", v], mention="workers")
        arg_case(f"collect-run-concurrency-{v}", "collect", lambda w, v=v: _collect_args(w, "--concurrency", v),
                 mention="concurrency")
        arg_case(f"collect-run-batch-size-{v}", "collect", lambda w, v=v: _collect_args(w, "--batch-size", v), mention="batch")
        arg_case(f"collect-run-samples-{v}", "collect", lambda w, v=v: _collect_args(w, "--samples", v), mention="samples")
        arg_case(f"collect-run-retries-{v}", "collect", lambda w, v=v: _collect_args(w, "--retries", "-1" if v == "-4" else "-2"),
                 mention="retries")
        arg_case(f"collect-run-tensor-parallel-{v}", "collect", lambda w, v=v: _collect_args(w, "--tensor-parallel", v,
                                                                                          backend="vllm"),
                 mention="tensor")
        arg_case(f"collect-run-max-tokens-{v}", "collect", lambda w, v=v: _collect_args(w, "--max-tokens", v), mention="max-tokens")
        arg_case(f"sweep-llm-concurrency-{v}", "search", lambda w, v=v: ["sweep", "--stores", A, "--searchers", "random",
                                                                        "--trials", 2, "--out", w.p("sw"),
                                                                        "--llm-concurrency", v], mention="concurrency")
    for v in ("0-999999", "0-100000000000000000000000", "5-2", "-1", "0,0", "0-1000"):
        arg_case(f"search-seeds-{v[:12]}", "search", lambda w, v=v: [*search, "--out", w.p("o"), "--seeds", v], mention="seeds")
        arg_case(f"sweep-seeds-{v[:12]}", "search", lambda w, v=v: ["sweep", "--stores", A, "--searchers", "random", "--trials", 2,
                                                                   "--out", w.p("sw"), "--seeds", v], mention="seeds")
    for opt, v in (("--trials", "0"), ("--trials", "-3"), ("--train", "0"), ("--train", "1000000000"), ("--max-samples", "0"),
                   ("--optimum-limit", "0"), ("--trials", str(10 ** 30))):
        arg_case(f"search{opt}-{v[:8]}", "search", lambda w, opt=opt, v=v: [*search, "--out", w.p("o"), opt, v],
                 mention=opt.strip("-"))
    for opt, v in (("--max-samples", "0"), ("--max-samples", "-2")):
        arg_case(f"replay-sweep{opt}{v}", "replay", lambda w, opt=opt, v=v: ["sweep", A, "--out", w.p("s.parquet"), opt, v],
                 mention="max-samples")
        arg_case(f"replay-curve{opt}{v}", "replay", lambda w, opt=opt, v=v: ["curve", A, "--out", w.p("c.png"), opt, v],
                 mention="max-samples")
    for v in ("nan", "-1", "inf"):
        arg_case(f"frontier-probe-cost-{v}", "replay", lambda w, v=v: ["frontier", A, "--out", w.p("f.png"), "--model", "Qwen3-8B",
                                                                      "--controllers", "majority", "--betas", "0:1:2",
                                                                      "--replicates", 2, "--probe-cost", v], mention="probe")
        arg_case(f"collect-run-temperature-{v}", "collect", lambda w, v=v: _collect_args(w, "--temperature", v),
                 mention="temperature")
        arg_case(f"import-train-fraction-{v}", "collect", lambda w, v=v: ["import", "autotts", w.p(), "--out", w.p("imp"),
                                                                         "--train-fraction", v], mention="fraction")
        arg_case(f"search-ctrl-budget-tokens-{v}", "search", lambda w, v=v: ["--replay", A, "--space", "controller",
                                                                            "--controller", "probe", "--model", "Qwen3-8B",
                                                                            "--searcher", "random", "--trials", 2,
                                                                            "--budget-tokens", v, "--out", w.p("o")],
                 mention="budget")
    arg_case("frontier-betas-bad", "replay", lambda w: ["frontier", A, "--out", w.p("f.png"), "--betas", "1:0:nan"],
             mention="betas")
    arg_case("replay-sweep-grid-missing", "replay", lambda w: ["sweep", A, "--out", w.p("s.parquet"), "--grid", w.p("nope.txt")],
             mention="nope")

    def grid_bytes(data: bytes):
        def a(w: Work):
            w.p("g.txt").write_bytes(data)
            return ["sweep", A, "--out", w.p("s.parquet"), "--grid", w.p("g.txt"), "-r", 2]
        return a
    arg_case("replay-sweep-grid-invalid-utf8", "replay", grid_bytes(b"Qwen3-8B:\xff\n"), mention="g.txt")
    arg_case("replay-sweep-grid-a-folder", "replay", lambda w: ["sweep", A, "--out", w.p("s.parquet"), "--grid", w.dir],
             mention="grid")
    arg_case("replay-sweep-grid-empty", "replay", grid_bytes(b"# nothing\n"), mention="grid")
    arg_case("replay-eval-config-huge-count", "replay", lambda w: ["eval", A, "-c", f"Qwen3-8B:{10 ** 30}"], mention="config")
    arg_case("replay-eval-config-negative", "replay", lambda w: ["eval", A, "-c", "Qwen3-8B:-1"], mention="config")


def _collect_args(w: Work, *extra, backend="openai") -> list:
    data = w.p("qa.jsonl")
    if not data.exists():
        data.write_text(json.dumps({"id": 0, "question": "q", "gold": "a", "context": [["A", "x"]],
                                    "supporting_facts": [["A", 0]]}) + "\n")
    return ["run", "--task", "qa", "--data", data, "--models", "m-1B", "--backend", backend, "--base-url",
            "http://127.0.0.1:9/v1", "--out", w.p("c"), "--quiet", *extra]


# --------------------------------------------------------------------------------------------
# Outputs that cannot be written, and manifest names used as paths


def _register_outputs():
    A = AIME

    def afile(w):
        w.p("afile").write_text("x")
        return w.p("afile", "sub")

    def readonly(w):
        d = w.p("ro")
        d.mkdir()
        os.chmod(d, 0o555)
        os.chmod(w.dir, 0o755)
        return d / "sub"

    def existing_dir(w):
        d = w.p("exists")
        d.mkdir()
        return d

    places = {"afile-sub": afile, "proc": lambda w: Path("/proc/x/sub"), "readonly": readonly}
    ro_user = "65534"  # nobody: a read-only folder is read-only for it (root ignores the bits)
    for pname, place in places.items():
        user = ro_user if pname == "readonly" and os.geteuid() == 0 else None
        cmds = {
            "replay-sweep": lambda w, o: ["sweep", A, "--out", o / "s.parquet" if pname != "afile-sub" else o, "-r", 2,
                                          "--max-samples", 2],
            "replay-curve": lambda w, o: ["curve", A, "--out", o / "c.png", "-r", 2, "--max-samples", 2],
            "replay-frontier": lambda w, o: ["frontier", A, "--out", o / "f.png", "--model", "Qwen3-8B", "--controllers",
                                             "majority", "--betas", "0:1:2", "--replicates", 2],
            "search": lambda w, o: ["--replay", A, "--searcher", "random", "--trials", 2, "--no-optimum", "--out", o,
                                    "--test-replicates", 2],
            "search-seeds": lambda w, o: ["--replay", A, "--searcher", "random", "--trials", 2, "--no-optimum", "--out", o,
                                          "--test-replicates", 2, "--seeds", "0-1", "--workers", 1],
            "sweep": lambda w, o: ["sweep", "--stores", A, "--searchers", "random", "--trials", 2, "--no-optimum", "--out", o,
                                   "--test-replicates", 2, "--workers", 1],
            "simulate": lambda w, o: ["simulate", "2wiki", "--out", o],
            "import": lambda w, o: ["import", "autotts", w.p("src"), "--out", o],
            "compare-png": lambda w, o: ["compare", _finished_search(w), "--out", o / "c.png"],
            "compare-json": lambda w, o: ["compare", _finished_search(w), "--json", o / "c.json"],
        }
        tools = {"replay-sweep": "replay", "replay-curve": "replay", "replay-frontier": "replay", "search": "search",
                 "search-seeds": "search", "sweep": "search", "simulate": "collect", "import": "collect",
                 "compare-png": "search", "compare-json": "search"}
        for cname, mk in cmds.items():
            def fn(w: Work, mk=mk, place=place, tool=tools[cname], user=user, cname=cname):
                if cname == "import":
                    _autotts_src(w.p("src"))
                o = place(w)
                if user is not None:
                    os.chmod(w.dir, 0o777)
                    for f in w.dir.rglob("*"):
                        if f.is_dir() and f.name != "ro":
                            os.chmod(f, 0o777)
                p = run(tool, *mk(w, o), user=user, cwd=w.dir)
                if pname == "readonly" and user is None:
                    return classify(p, 0)  # root writes a read-only folder: success is right
                return classify(p, 2)
            CASES.append(Case(f"output/{cname}/{pname}", "output", fn))
    # a file output that is an existing folder
    for cname, tool, mk in (
        ("replay-sweep", "replay", lambda w, d: ["sweep", A, "--out", d, "-r", 2, "--max-samples", 2]),
        ("replay-curve", "replay", lambda w, d: ["curve", A, "--out", d, "-r", 2, "--max-samples", 2]),
        ("replay-frontier-table", "replay", lambda w, d: ["frontier", A, "--out", w.p("f.png"), "--table", d, "--model", "Qwen3-8B",
                                                           "--controllers", "majority", "--betas", "0:1:2", "--replicates", 2]),
        ("compare-png", "search", lambda w, d: ["compare", _finished_search(w), "--out", d]),
        ("compare-json", "search", lambda w, d: ["compare", _finished_search(w), "--json", d]),
    ):
        def fn(w: Work, tool=tool, mk=mk):
            d = w.p("exists.png")
            d.mkdir()
            return classify(run(tool, *mk(w, d)), 2)
        CASES.append(Case(f"output/{cname}/existing-folder", "output", fn))
    # a folder output that is an existing file
    for cname, tool, mk in (
        ("search", "search", lambda w, f: ["--replay", A, "--searcher", "random", "--trials", 2, "--no-optimum", "--out", f]),
        ("sweep", "search", lambda w, f: ["sweep", "--stores", A, "--searchers", "random", "--trials", 2, "--out", f]),
        ("simulate", "collect", lambda w, f: ["simulate", "2wiki", "--out", f]),
    ):
        def fn(w: Work, tool=tool, mk=mk):
            f = w.p("afile")
            f.write_text("keep me")
            p = run(tool, *mk(w, f))
            c = classify(p, 2)
            if f.read_text() != "keep me":
                return "data", "the file given as --out was replaced"
            return c
        CASES.append(Case(f"output/{cname}/existing-file", "output", fn))

    # manifest names used as paths: nothing may land outside the chosen output
    for nm in ("../../escape", "/tmp/x/TARGET", "..", "a/b/c"):
        for cname in ("search", "search-default-out", "sweep"):
            def fn(w: Work, nm=nm, cname=cname):
                s = w.store(A, "aime")
                edit_manifest(s, lambda m: m.update(name=nm))
                before = set(Path("/tmp").iterdir())
                work = w.p("cwd")
                work.mkdir()
                args = {"search": ["--replay", s, "--searcher", "random", "--trials", 2, "--no-optimum", "--out", w.p("o"),
                                   "--test-replicates", 2],
                        "search-default-out": ["--replay", s, "--searcher", "random", "--trials", 2, "--no-optimum",
                                               "--test-replicates", 2],
                        "sweep": ["sweep", "--stores", s, "--searchers", "random", "--trials", 2, "--no-optimum", "--out",
                                  w.p("sw"), "--test-replicates", 2, "--workers", 1]}[cname]
                p = run("search", *args, cwd=work)
                escaped = [str(x) for x in set(Path("/tmp").iterdir()) - before if "TARGET" in str(x) or x.name == "x"]
                outside = [str(f) for f in w.dir.rglob("*") if f.is_file() and not (
                    str(f).startswith(str(w.p("o"))) or str(f).startswith(str(w.p("sw"))) or str(f).startswith(str(work))
                    or str(f).startswith(str(s)))]
                if escaped or outside:
                    return "data", f"wrote outside the output: {(escaped + outside)[:3]}"
                return classify(p, 2, "name")
            CASES.append(Case(f"path/name-{nm.encode().hex()}/{cname}", "path", fn))

    def spec_name(w: Work):
        spec = w.p("spec.yaml")
        spec.write_text(f"name: ../../escaped-sweep\nstores: [{A}]\nsearchers: [random]\ntrials: [2]\noptimum: false\n"
                        "test_replicates: 2\nworkers: 1\n")
        work = w.p("a", "b", "c")
        work.mkdir(parents=True)
        p = run("search", "sweep", spec, cwd=work)
        if any(w.dir.rglob("escaped-sweep")) and not (work / "out" / "sweeps").exists():
            return "data", "the sweep's name put its output outside out/sweeps"
        if list(w.dir.rglob("escaped-sweep")):
            hits = [str(x) for x in w.dir.rglob("escaped-sweep")]
            if not all(str(work / "out" / "sweeps") in h for h in hits):
                return "data", f"the sweep's name put its output outside out/sweeps: {hits[:2]}"
        return classify(p, 2, "name")
    CASES.append(Case("path/sweep-spec-name-dotdot", "path", spec_name))

    def sim_name(w: Work):
        spec = w.p("spec.yaml")
        spec.write_text("name: ../../escaped-sim\n")
        p = run("collect", "simulate", spec, "--preset", "2wiki", "--out", w.p("sim"))
        return classify(p, 2, "name")
    CASES.append(Case("path/simulate-spec-name-dotdot", "path", sim_name))
    arg_case("import-name-dotdot", "collect", lambda w: (_autotts_src(w.p("src")), ["import", "autotts", w.p("src"), "--out",
                                                                                    w.p("imp"), "--name", "../x"])[1],
             mention="name", group="path")
    arg_case("collect-run-name-dotdot", "collect", lambda w: _collect_args(w, "--name", "../../x"), mention="name", group="path")


_FINISHED: dict[str, Path] = {}
_LOCK = threading.Lock()


def _finished_search(w: Work) -> Path:
    """A small finished search folder (made once, copied)."""
    with _LOCK:
        if "s" not in _FINISHED:
            d = Path(tempfile.mkdtemp(prefix="fault-corpus-search-"))
            p = run("search", "--replay", AIME, "--searcher", "random", "--trials", 4, "--no-optimum", "--out", d / "s",
                    "--test-replicates", 2)
            assert p.code == 0, p.err
            _FINISHED["s"] = d / "s"
    dst = w.p("finished")
    if not dst.exists():
        shutil.copytree(_FINISHED["s"], dst)
    return dst


def _autotts_src(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    data = [{"question": f"q{i}", "gold_answer": "1", "probe_freq": 500,
             "each_branch": [[["1"], 10 + j, "1"] for j in range(3)]} for i in range(4)]
    (d / "Tiny-1B.json").write_text(json.dumps(data))
    return d


# --------------------------------------------------------------------------------------------
# Bad files other than stores: archives, specs, checkpoints


def _register_files():
    A = AIME

    def bad_archive(name: str, mutate: Callable[[Path], None], cmd: str):
        def fn(w: Work):
            d = _finished_search(w)
            mutate(d / "archive.jsonl")
            if cmd == "compare":
                return classify(run("search", "compare", d), 2)
            return classify(run("search", "--replay", A, "--searcher", "random", "--trials", 6, "--no-optimum", "--out", d,
                                "--test-replicates", 2, "--resume"), 2)
        CASES.append(Case(f"file/archive-{name}/{cmd}", "file", fn))

    def append(b: bytes):
        return lambda p: p.write_bytes(p.read_bytes() + b)

    for cmd in ("compare", "resume"):
        bad_archive("nested-100k", append(b"[" * 100_000 + b"]" * 100_000 + b"\n"), cmd)
        bad_archive("invalid-utf8", append(b'{"type": "trial", "number": 4, "label": "\xff"}\n'), cmd)
        bad_archive("duplicate-trial", lambda p: p.write_bytes(p.read_bytes() + p.read_bytes().splitlines(True)[-1]), cmd)
        bad_archive("not-an-object", append(b"[1, 2]\n"), cmd)
        bad_archive("header-nested", lambda p: p.write_bytes(b'{"type": "header", "x": ' + b"[" * 100_000 + b"]" * 100_000
                                                             + b"}\n"), cmd)
        bad_archive("trial-missing-fields", append(b'{"type": "trial", "number": 4}\n'), cmd)
        bad_archive("trial-bad-score", append(b'{"type": "trial", "number": 4, "point": [["Qwen3-8B", 1]], "feasible": true, '
                                              b'"score": "high", "cost": 1}\n'), cmd)
        bad_archive("empty", lambda p: p.write_bytes(b""), cmd)
        bad_archive("a-folder", lambda p: (p.unlink(), p.mkdir()), cmd)

    def spec_case(name: str, text: bytes, mention: str | None = None):
        def fn(w: Work):
            spec = w.p("spec.yaml")
            spec.write_bytes(text)
            return classify(run("search", "sweep", spec, "--out", w.p("sw")), 2, mention)
        CASES.append(Case(f"file/sweep-spec-{name}", "file", fn))

    spec_case("nested-100k", b"stores: " + b"[" * 100_000 + b"]" * 100_000 + b"\n")
    spec_case("nested-json-100k", b"[" * 100_000 + b"]" * 100_000)
    spec_case("invalid-utf8", b"name: \xff\xfe\nstores: [x]\n")
    spec_case("yaml-bomb", b"a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
              b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
              b"e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
              b"g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nstores: *g\nsearchers: *g\n")
    spec_case("a-folder", b"")
    spec_case("seeds-huge", f"stores: [{A}]\nsearchers: [random]\nseeds: 0-99999999999\n".encode(), "seeds")
    spec_case("trials-huge", f"stores: [{A}]\nsearchers: [random]\ntrials: [{10 ** 30}]\n".encode(), "trials")
    spec_case("replicates-float", f"stores: [{A}]\nsearchers: [random]\nreplicates: 1.5\n".encode(), "replicates")
    spec_case("budgets-nan", f"stores: [{A}]\nsearchers: [random]\nbudgets: [.nan]\n".encode(), "budget")

    def sim_spec(name: str, text: bytes, mention: str | None = None, code: int = 2):
        def fn(w: Work):
            spec = w.p("spec.yaml")
            spec.write_bytes(text)
            return classify(run("collect", "simulate", spec, "--out", w.p("sim")), code, mention)
        CASES.append(Case(f"file/simulate-spec-{name}", "file", fn))

    sim_spec("nested-100k", b"name: " + b"[" * 100_000 + b"]" * 100_000 + b"\n")
    sim_spec("invalid-utf8", b"name: sim-\xff\n")
    sim_spec("questions-huge", b"name: sim-x\nquestions: 1000000\nsamples: 4096\nmodels: [{name: a, params: 1e9}]\n"
             b"stages: [{name: s}]\n", None)
    sim_spec("params-inf", b"name: sim-x\nmodels: [{name: a, params: .inf}]\nstages: [{name: s}]\n", "params")

    def importer(name: str, files: dict[str, bytes], mention: str | None = None):
        def fn(w: Work):
            src = w.p("src")
            src.mkdir()
            for k, v in files.items():
                (src / k).write_bytes(v)
            return classify(run("collect", "import", "autotts", src, "--out", w.p("imp")), 2, mention)
        CASES.append(Case(f"file/import-{name}", "file", fn))

    importer("nested-100k", {"M-1B.json": b"[" * 100_000 + b"]" * 100_000})
    importer("invalid-utf8", {"M-1B.json": b'{"q": "\xff"}'})
    importer("not-json", {"M-1B.json": b"{"})
    def one(tokens):
        return json.dumps([{"question": "q", "gold_answer": "1", "probe_freq": 500,
                            "each_branch": [[["1"], tokens, "1"]]}]).encode()
    importer("tokens-negative", {"M-1B.json": one(-3)}, "token")
    importer("tokens-huge", {"M-1B.json": one(2 ** 70)}, "token")
    importer("probe-freq-nan", {"M-1B.json": one(5).replace(b"500", b"NaN")}, "probe")

    def collect_data(name: str, data: bytes, mention: str | None = None, task: str = "qa"):
        def fn(w: Work):
            d = w.p("data.jsonl")
            d.write_bytes(data)
            return classify(run("collect", "run", "--task", task, "--data", d, "--models", "m-1B", "--backend", "openai",
                                "--base-url", "http://127.0.0.1:9/v1", "--out", w.p("c"), "--quiet"), 2, mention)
        CASES.append(Case(f"file/collect-data-{name}", "file", fn))

    collect_data("nested-100k", b'{"id": 0, "question": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n")
    collect_data("invalid-utf8", b'{"id": 0, "question": "\xff", "gold": "a"}\n')
    collect_data("math-nested", b'{"id": 0, "problem": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n", task="math")

    def status_case(name: str, mutate: Callable[[Path], None]):
        def fn(w: Work):
            part = w.p("c.partial")
            part.mkdir()
            (part / "run.json").write_text(json.dumps({"fingerprint": {}, "info": {"stages": [["s", "majority_vote"]],
                                                                                     "models": ["m"], "questions": 1}}))
            mutate(part)
            return classify(run("collect", "status", w.p("c")), 2)
        CASES.append(Case(f"file/collect-status-{name}", "file", fn))

    status_case("run-json-nested", lambda d: (d / "run.json").write_bytes(b"[" * 100_000 + b"]" * 100_000))
    status_case("run-json-invalid-utf8", lambda d: (d / "run.json").write_bytes(b'{"info": "\xff"}'))
    status_case("shard-garbage", lambda d: (d / "shard-000000.parquet").write_bytes(b"PAR1garbage"))
    status_case("contexts-nested", lambda d: (d / "contexts-s.json").write_bytes(b"[" * 100_000 + b"]" * 100_000))

    def shard_utf8(d: Path):
        import pyarrow as pa
        import pyarrow.parquet as pq

        from collect.run.checkpoint import SHARD_SCHEMA

        row = {"question_id": "q", "stage": "s", "model": "m", "context": "", "sample_index": 0, "answer": "a", "score": 1.0,
               "prompt_tokens": 1, "completion_tokens": 1, "text": "t", "finish_reason": "stop", "token_count": "exact",
               "metrics": "{}"}
        t = pa.Table.from_pylist([row])
        arr = t.column("answer").combine_chunks()
        bad = pa.Array.from_buffers(pa.string(), 1, [None, arr.buffers()[1], pa.py_buffer(b"\xff")])
        t = t.set_column(t.column_names.index("answer"), "answer", bad)
        pq.write_table(t, d / "shard-000000.parquet")
        del SHARD_SCHEMA
    status_case("shard-invalid-utf8", shard_utf8)


# --------------------------------------------------------------------------------------------
# Kill -9 at many points, and two writers at once


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == pid:
                out.append(int(d.name))
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_for(cond: Callable[[], bool], timeout: float) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return True
        time.sleep(0.05)
    return False


def _archive_lines(d: Path) -> int:
    f = d / "archive.jsonl"
    try:
        return f.read_bytes().count(b"\n") if f.is_file() else 0
    except OSError:
        return 0


def _register_kills():
    A = TWOWIKI
    base = ["--replay", A, "--searcher", "bo", "--no-optimum", "--test-replicates", 4]

    def reference(trials: int) -> dict:
        with _LOCK:
            key = f"ref-{trials}"
            if key not in _FINISHED:
                d = Path(tempfile.mkdtemp(prefix="fault-corpus-ref-"))
                p = run("search", *base, "--trials", trials, "--out", d / "r")
                assert p.code == 0, p.err
                _FINISHED[key] = d / "r"
        return json.loads((_FINISHED[key] / "summary.json").read_text())

    for at in (1, 5, 15, 30, 45):
        def fn(w: Work, at=at):
            ref = reference(60)
            out = w.p("o")
            p = start("search", *base, "--trials", 60, "--out", out)
            _wait_for(lambda: _archive_lines(out) >= at + 1 or p.poll() is not None, 60)
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            q = run("search", *base, "--trials", 60, "--out", out, "--resume")
            if q.code != 0:
                return classify(q, 0)
            got = json.loads((out / "summary.json").read_text())
            if got["best"]["config"] != ref["best"]["config"] or got["trials"] != ref["trials"]:
                return "data", f"resumed best {got['best']['config']} != uninterrupted {ref['best']['config']}"
            c = run("search", "compare", out)
            return classify(c, 0)
        CASES.append(Case(f"kill/search-at-trial-{at}-then-resume", "kill", fn))

    def two_resumes(w: Work):
        out = w.p("o")
        p = run("search", *base, "--trials", 2, "--out", out)
        if p.code:
            return classify(p, 0)
        procs = [start("search", *base, "--trials", 120, "--out", out, "--resume") for _ in range(2)]
        res = [(x.wait(), x.stderr.read()) for x in procs]
        c = run("search", "compare", out)
        if c.code != 0:
            return "data", f"archive unreadable after two writers: {c.err.strip()[-200:]}"
        codes = sorted(r[0] for r in res)
        if codes == [0, 0]:
            return "silent", "both writers ran (no lock)"
        locked = [e for code, e in res if code == 2 and "lock" in e.lower()]
        if codes == [0, 2] and locked:
            return "error", locked[0].strip().splitlines()[-1][:200]
        return "wrong", f"exit codes {codes}: {[e.strip()[-150:] for _, e in res]}"
    CASES.append(Case("concurrency/two-search-resumes-one-archive", "concurrency", two_resumes))

    def two_sweeps(w: Work):
        args = ["sweep", "--stores", A, "--searchers", "random,bo", "--seeds", "0-3", "--trials", 30, "--no-optimum",
                "--out", w.p("sw"), "--test-replicates", 4, "--workers", 1]
        procs = [start("search", *args) for _ in range(2)]
        res = [(x.wait(), x.stderr.read()) for x in procs]
        codes = sorted(r[0] for r in res)
        bad = _check_sweep(w.p("sw"))
        if bad:
            return "data", bad
        if codes == [0, 0]:
            return "silent", "both sweeps ran (no lock)"
        locked = [e for code, e in res if code == 2 and "lock" in e.lower()]
        if codes == [0, 2] and locked:
            return "error", locked[0].strip().splitlines()[-1][:200]
        return "wrong", f"exit codes {codes}: {[e.strip()[-150:] for _, e in res]}"
    CASES.append(Case("concurrency/two-identical-sweeps", "concurrency", two_sweeps))

    def sweep_parent_killed(w: Work, backend_args: list, name: str):
        out = w.p("sw")
        args = ["sweep", "--stores", A, "--searchers", "bo", "--seeds", "0-5", "--trials", 400, "--no-optimum",
                "--out", out, "--test-replicates", 4, *backend_args]
        p = start("search", *args)
        ok = _wait_for(lambda: any(_archive_lines(d) > 3 for d in out.rglob("seed-*")), 120)
        kids = [k for k in _children(p.pid)]
        grandkids = [g for k in kids for g in _children(k)]
        os.kill(p.pid, signal.SIGKILL)  # the parent only, as the OOM killer does
        p.wait()
        if not ok:
            return "wrong", "no cell started within 120 s"
        time.sleep(3.0)
        left = [k for k in kids + grandkids if _alive(k)]
        sizes = {str(f): f.stat().st_size for f in out.rglob("archive.jsonl")}
        time.sleep(1.5)
        grew = [f for f in out.rglob("archive.jsonl") if f.stat().st_size != sizes.get(str(f), -1)]
        for k in left:
            try:
                os.kill(k, signal.SIGKILL)
            except OSError:
                pass
        if grew:
            return "leak", f"{len(left)} worker(s) still alive and writing {len(grew)} archive(s) 3 s after the parent died"
        if left:
            return "leak", f"{len(left)} worker process(es) alive 3 s after the parent died"
        return "ok", f"workers gone; {name}"

    CASES.append(Case("kill/sweep-parent-sigkill-workers", "kill", lambda w: sweep_parent_killed(w, ["--workers", 2], "processes")))

    def seeds_parent_killed(w: Work):
        out = w.p("o")
        p = start("search", *base, "--trials", 400, "--out", out, "--seeds", "0-3", "--workers", 2)
        ok = _wait_for(lambda: any(_archive_lines(d) > 3 for d in out.glob("seed-*")), 120)
        kids = _children(p.pid)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        if not ok:
            return "wrong", "no seed started within 120 s"
        time.sleep(3.0)
        left = [k for k in kids if _alive(k)]
        for k in left:
            try:
                os.kill(k, signal.SIGKILL)
            except OSError:
                pass
        return ("leak", f"{len(left)} seed worker(s) alive 3 s after the parent died") if left else ("ok", "workers gone")
    CASES.append(Case("kill/search-seeds-parent-sigkill", "kill", seeds_parent_killed))

    def sweep_killed_then_rerun(w: Work):
        out = w.p("sw")
        args = ["sweep", "--stores", A, "--searchers", "random,bo", "--seeds", "0-2", "--trials", 40, "--no-optimum",
                "--out", out, "--test-replicates", 4, "--workers", 2]
        p = start("search", *args)
        _wait_for(lambda: any(_archive_lines(d) > 5 for d in out.rglob("seed-*")), 120)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        q = run("search", *args)  # at once: a killed sweep's workers must not write into this run's cells
        bad = _check_sweep(out)
        if bad:
            return "data", bad
        return classify(q, 0)
    CASES.append(Case("kill/sweep-killed-then-rerun-at-once", "kill", sweep_killed_then_rerun))

    for delay in (0.3, 0.8, 1.5, 2.5):
        def sim_killed(w: Work, delay=delay):
            out = w.p("sim")
            p = start("collect", "simulate", "hotpotqa", "--out", out)
            time.sleep(delay)
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            left = hidden_temps(w.dir)
            q = run("collect", "simulate", "2wiki", "--out", out, "--force")
            if q.code:
                return classify(q, 0)
            after = hidden_temps(w.dir)
            if after:
                return "leak", f"hidden temporary folders left after the next run: {after}"
            return "ok", f"left {len(left)} after the kill, none after the next run"
        CASES.append(Case(f"kill/simulate-at-{delay}s-leaves-temp", "kill", sim_killed))

    for delay in (0.5, 1.5):
        def sweep_report_killed(w: Work, delay=delay):
            out = w.p("s.parquet")
            before = None
            ok = run("replay", "sweep", AIME, "--out", out, "-r", 2, "--max-samples", 4)
            if ok.code:
                return classify(ok, 0)
            before = digest(out)
            p = start("replay", "sweep", AIME, "--out", out, "-r", 50)
            time.sleep(delay)
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            if digest(out) != before:
                import polars as pl
                try:
                    pl.read_parquet(out)
                except Exception as e:  # noqa: BLE001
                    return "data", f"the earlier sweep.parquet is unreadable: {e}"
            return "ok", ""
        CASES.append(Case(f"kill/replay-sweep-at-{delay}s-keeps-old-file", "kill", sweep_report_killed))


def _check_sweep(out: Path) -> str | None:
    """Every cell's archive readable, trial numbers in order, no duplicates."""
    from search.archive import read_archive

    for a in out.rglob("archive.jsonl"):
        try:
            read_archive(a)
        except Exception as e:  # noqa: BLE001
            return f"{a.relative_to(out)}: {e}"
    return None


# --------------------------------------------------------------------------------------------
# Collection: shards after a deleted shard, two runs at once, kills


def _register_collect():
    from chatserver import ChatServer

    def math_script(body, i):
        return f"work words here \\boxed{{{(i % 3)}}}"

    server: dict = {}

    def srv():
        with _LOCK:
            if "s" not in server:
                server["s"] = ChatServer(math_script, delay=0.15)
        return server["s"]

    def data(w: Work, n=12) -> Path:
        d = w.p("m.jsonl")
        d.write_text("".join(json.dumps({"id": i, "problem": f"p{i}", "answer": str(i % 3)}) + "\n" for i in range(n)))
        return d

    def cargs(w: Work, out: Path):
        return ["run", "--task", "math", "--data", data(w), "--models", "small-1B,big-8B", "--samples", 3, "--backend",
                "openai", "--base-url", srv().base_url, "--batch-size", 1, "--out", out, "--quiet", "--concurrency", 1]

    def shard_hashes(part: Path) -> dict[str, str]:
        return {f.name: digest(f) for f in part.glob("*.parquet")} if part.is_dir() else {}

    def deleted_shard(w: Work):
        out = w.p("c")
        part = w.p("c.partial")
        p = start("collect", *cargs(w, out))
        _wait_for(lambda: len(list(part.glob("shard-*.parquet"))) >= 4, 60)
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        shards = sorted(part.glob("shard-*.parquet"))
        if len(shards) < 3:
            return "wrong", "too few shards before the kill"
        shards[1].unlink()  # as the error for a corrupt shard advises
        kept = shard_hashes(part)
        p = start("collect", *cargs(w, out))
        _wait_for(lambda: len(list(part.glob("shard-*.parquet"))) >= len(kept) + 3, 60)
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        now = shard_hashes(part)
        changed = [k for k in kept if now.get(k) != kept[k]]
        if changed:
            return "data", f"shards overwritten after a deleted shard: {changed[:3]}"
        q = run("collect", *cargs(w, out))
        if q.code:
            return classify(q, 0)
        import replay

        s = replay.open(out)
        want = 12 * 2 * 3
        if len(s.samples) != want:
            return "data", f"{len(s.samples)} samples in the store, expected {want}"
        return "ok", f"{len(kept)} shards kept unchanged"
    CASES.append(Case("collect/deleted-shard-then-resume", "collect", deleted_shard))

    def two_runs(w: Work):
        out = w.p("c")
        procs = [start("collect", *cargs(w, out)) for _ in range(2)]
        res = [(x.wait(), x.stderr.read()) for x in procs]
        codes = sorted(r[0] for r in res)
        import replay

        try:
            s = replay.open(out)
        except Exception as e:  # noqa: BLE001
            return "data", f"store unreadable after two runs: {str(e)[:200]}"
        if len(s.samples) != 12 * 2 * 3:
            return "data", f"{len(s.samples)} samples"
        if codes == [0, 0]:
            return "silent", "both runs went ahead (no lock)"
        locked = [e for code, e in res if code == 2 and "lock" in e.lower()]
        if codes == [0, 2] and locked:
            return "error", locked[0].strip().splitlines()[-1][:200]
        return "wrong", f"exit codes {codes}: {[e.strip()[-200:] for _, e in res]}"
    CASES.append(Case("concurrency/two-collect-runs-one-out", "concurrency", two_runs))

    for n in (2, 5, 9):
        def killed_at(w: Work, n=n):
            out = w.p("c")
            part = w.p("c.partial")
            p = start("collect", *cargs(w, out))
            _wait_for(lambda: len(list(part.glob("shard-*.parquet"))) >= n, 60)
            os.kill(p.pid, signal.SIGINT)  # Ctrl-C: the "kept" line must match the disk
            try:
                _, err = p.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                _, err = p.communicate()
            m = re.search(r"(\d+) finished pools are kept", err)
            from collect.run.checkpoint import SHARD_SCHEMA, read_shards

            on_disk = read_shards(part, "shard", SHARD_SCHEMA).select("question_id", "stage", "model", "context").unique().height
            if m and int(m.group(1)) != on_disk:
                return "data", f"log says {m.group(1)} pools kept, the disk holds {on_disk}"
            q = run("collect", *cargs(w, out))
            return classify(q, 0)
        CASES.append(Case(f"collect/interrupted-after-{n}-shards-kept-matches-disk", "collect", killed_at))


# --------------------------------------------------------------------------------------------
# The ChatDev sandbox: what a generated program may try


def _register_sandbox():
    def prog_case(name: str, program: str, check: Callable[[bool, Path], tuple[str, str]]):
        def fn(w: Work):
            from collect.tasks.chatdev import run_program

            outside = w.p("outside")
            outside.mkdir()
            src = program.replace("OUTSIDE", str(outside))
            t0 = time.monotonic()
            ok = run_program(src, timeout_s=2.0)
            return check(ok, outside) if time.monotonic() - t0 < 30 else ("wrong", "took over 30 s")
        CASES.append(Case(f"sandbox/{name}", "sandbox", fn))

    def refused(ok, outside):
        left = list(outside.iterdir())
        if left:
            return "data", f"wrote outside: {left}"
        return ("ok", "refused") if not ok else ("silent", "the program reported success")

    prog_case("kill-parent", "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n", refused)
    prog_case("kill-minus-one", "import os, signal\nos.kill(-1, signal.SIGKILL)\nraise SystemExit(1)\n", refused)
    prog_case("killpg-parent-group", "import os, signal\nos.killpg(os.getpgid(os.getppid()), signal.SIGKILL)\n", refused)
    prog_case("write-outside", "open('OUTSIDE/x', 'w').write('x')\n", refused)
    prog_case("write-tmp", "open('/tmp/chatdev-escape-%d' % __import__('os').getpid(), 'w').write('x')\n", refused)
    prog_case("read-shadow", "print(len(open('/etc/shadow').read()))\n", refused)
    prog_case("read-root-home", "import os\nprint(os.listdir('/root'))\n", refused)
    prog_case("fork-bomb", "import os\nwhile True:\n    os.fork()\n", lambda ok, o: ("ok", "") if not ok else ("silent", "ran"))
    prog_case("socket", "import _socket as s\nc = s.socket(s.AF_INET, s.SOCK_STREAM)\nc.connect(('1.1.1.1', 80))\n", refused)

    def daemon(w: Work):
        from collect.tasks import chatdev
        from replay.sandbox import Limits, run as sandbox_run

        box = w.p("box")
        prog = ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        while True:\n"
                "            with open('log', 'a') as f:\n                f.write('x')\n            time.sleep(0.02)\n"
                "    os._exit(0)\ntime.sleep(0.3)\n")
        sandbox_run([sys.executable, "-I", "-B", "-c", chatdev._PRELUDE], files={"main.py": prog}, workdir=box,
                    limits=Limits(wall_s=2.0, cpu_s=3, memory_mb=1024, fsize_mb=64))
        log = box / "log"
        n = log.stat().st_size if log.exists() else 0
        time.sleep(0.5)
        m = log.stat().st_size if log.exists() else 0
        return ("leak", f"the daemon kept writing ({n} -> {m} bytes)") if m != n else ("ok", f"{n} bytes, then none")
    CASES.append(Case("sandbox/setsid-daemon-after-return", "sandbox", daemon))


# --------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-k", default=None, help="only cases whose name contains this (a regular expression)")
    ap.add_argument("-j", type=int, default=2, help="cases at once (kill and concurrency cases run alone)")
    ap.add_argument("--json", default=None, help="write every outcome to this file")
    ap.add_argument("--keep", action="store_true", help="keep the working folder")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    a = ap.parse_args()
    _register_bad_stores()
    _register_args()
    _register_outputs()
    _register_files()
    _register_kills()
    _register_collect()
    _register_sandbox()
    cases = [c for c in CASES if a.k is None or re.search(a.k, c.name)]
    if a.list:
        print("\n".join(c.name for c in cases))
        print(f"{len(cases)} cases")
        return
    root = Path(tempfile.mkdtemp(prefix="fault-corpus-"))
    os.chmod(root, 0o755)
    outcomes: list[Outcome] = []
    t0 = time.perf_counter()

    def one(c: Case) -> Outcome:
        t = time.perf_counter()
        try:
            cls, detail = c.fn(Work(root, c.name))
        except Exception as e:  # noqa: BLE001 - the corpus itself must go on
            cls, detail = "wrong", f"corpus error: {type(e).__name__}: {e}"
        o = Outcome(c.name, c.group, cls, detail, time.perf_counter() - t)
        mark = "  " if cls in ("ok", "error") else "!!"
        print(f"{mark} {cls:<9} {c.name:<60} {o.seconds:5.1f}s  {detail[:150]}", flush=True)
        return o

    alone = [c for c in cases if c.group in ("kill", "concurrency", "collect")]
    many = [c for c in cases if c not in alone]
    with ThreadPoolExecutor(max_workers=max(1, a.j)) as ex:
        outcomes += list(ex.map(one, many))
    outcomes += [one(c) for c in alone]
    wall = time.perf_counter() - t0
    classes = ("error", "ok", "usage", "traceback", "silent", "data", "wrong", "leak")
    print(f"\n{len(outcomes)} cases in {wall:.0f} s")
    groups = sorted({o.group for o in outcomes})
    print(f"{'group':<12}" + "".join(f"{c:>10}" for c in classes))
    for g in groups:
        row = [sum(1 for o in outcomes if o.group == g and o.cls == c) for c in classes]
        print(f"{g:<12}" + "".join(f"{n:>10}" for n in row))
    row = [sum(1 for o in outcomes if o.cls == c) for c in classes]
    print(f"{'all':<12}" + "".join(f"{n:>10}" for n in row))
    bad = [o for o in outcomes if o.cls not in ("ok", "error")]
    if bad:
        print(f"\n{len(bad)} cases neither a one-line error nor a checked success:")
        for o in bad:
            print(f"  {o.cls:<9} {o.name}: {o.detail[:200]}")
    if a.json:
        Path(a.json).write_text(json.dumps([o.__dict__ for o in outcomes], indent=1))
    if not a.keep:
        shutil.rmtree(root, ignore_errors=True)
        for d in _FINISHED.values():
            shutil.rmtree(d.parent, ignore_errors=True)
    else:
        print(f"kept {root}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
