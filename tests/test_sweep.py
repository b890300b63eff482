"""`search sweep`: a grid of ordinary searches, serial / worker processes / Ray, resumable.

The same small sweep (aime24 and the SYNTHETIC sim-2wiki, narrowed to at most 4 samples per
stage so that the grid is quick; random, grid, bo, rules; 3 seeds) runs in this process, in two
worker processes and on a local Ray instance, and must give the same cells. LLM searchers run
against the scripted local server, which counts the requests in flight.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
import sys
import threading
import time

import polars as pl
import pytest
import yaml

from conftest import TRACES
from llm_server import ScriptedLLMServer
from search import runner
from search.archive import ArchiveWriter
from clikit import run_main
from search.cli import main as search_main
from search.sweep import TIMING_COLUMNS, parse_spec, run_sweep

SPEC = {
    "name": "small",
    "stores": [str(TRACES / "aime24"), str(TRACES / "sim-2wiki")],
    "searchers": ["random", "grid", "bo", "rules"],
    "seeds": "0-2",
    "train": [10],
    "trials": [5],
    "max_samples": 4,
    "replicates": 8,
    "test_replicates": 32,
}
N_CELLS = 2 * 4 * 3


def _cli(argv, capsys):
    return run_main(search_main, argv, capsys)


def _same(a: pl.DataFrame, b: pl.DataFrame, drop=()) -> None:
    a, b = a.drop([*TIMING_COLUMNS, *drop], strict=False), b.drop([*TIMING_COLUMNS, *drop], strict=False)
    assert a.columns == b.columns
    for c in a.columns:
        assert a[c].to_list() == b[c].to_list(), c


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The small sweep through the command line, in this process (--workers 1)."""
    d = tmp_path_factory.mktemp("sweep")
    spec = d / "small.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    calls = []
    real = runner.known_optimum
    mp = pytest.MonkeyPatch()
    mp.setattr(runner, "known_optimum", lambda setup, **kw: calls.append(setup.store.name) or real(setup, **kw))
    try:
        code = 0
        try:
            search_main(["sweep", str(spec), "--workers", "1", "--out", str(d / "out")])
        except SystemExit as e:
            code = e.code
    finally:
        mp.undo()
    return {"dir": d, "spec": spec, "out": d / "out", "code": code, "optimum_calls": calls,
            "results": pl.read_parquet(d / "out" / "results.parquet")}


def test_cli_sweep_writes_results_curves_and_report(reference):
    assert reference["code"] == 0
    out, res = reference["out"], reference["results"]
    assert res.height == N_CELLS and set(res["status"]) == {"done"}
    # the grid optimum once per objective (store x train x budget), not once per cell
    assert sorted(reference["optimum_calls"]) == ["aime24", "sim-2wiki"]
    assert (res.filter(pl.col("searcher") == "grid")["trials_budget"].is_null()).all()  # the grid runs until done
    assert (res.filter(pl.col("searcher") != "grid")["trials"] == 5).all()
    grid = res.filter(pl.col("searcher") == "grid")
    assert (grid["train_score"] == grid["optimum_score"]).all() and grid["reached_optimum"].all()
    assert res["test_score"].is_not_null().all() and res["optimum_score"].is_not_null().all()
    curves = pl.read_parquet(out / "curves.parquet")
    assert curves.height == int(res["trials"].sum())
    last = curves.group_by(["store", "label", "seed"]).agg(pl.col("best_so_far").last())
    joined = last.join(res.select(["store", "label", "seed", "train_score"]), on=["store", "label", "seed"])
    assert (joined["best_so_far"] == joined["train_score"]).all()
    report = (out / "report.md").read_text()
    for section in ("## Grid optima", "## 1. Main results", "## 2. Ablation", "## 3. Robustness", "## Best-so-far curves"):
        assert section in report
    for store in ("aime24", "sim-2wiki"):
        for fig in ("robustness", "best-so-far"):
            p = out / "figures" / f"{store}-{fig}.png"
            assert p.is_file() and p.read_bytes()[:4] == b"\x89PNG"
    assert "SYNTHETIC" in report
    # every cell is an ordinary search folder
    cell = out / res["cell"][0]
    assert (cell / "archive.jsonl").is_file() and (cell / "summary.json").is_file()


def test_report_shows_both_uncertainties_the_fallback_and_the_guidelines(reference, tmp_path, capsys):
    """The main table names the replicate error and the fallback beside the question interval;
    an LLM searcher's guidelines, round by round, reach the report (here written into a finished
    cell's summary, as an LLM searcher's would be, and the report rebuilt by a rerun)."""
    out = tmp_path / "out"
    shutil.copytree(reference["out"], out)
    res = reference["results"]
    row = res.filter((pl.col("searcher") == "rules") & (pl.col("store") == "sim-2wiki")).sort("seed").row(0, named=True)
    summ = out / row["cell"] / "summary.json"
    s = json.loads(summ.read_text())
    s["guidelines"] = [{"round": 1, "after_trial": 3, "guidelines": ["retrieve: prefer the 70B"]},
                       {"round": 2, "after_trial": 5, "guidelines": ["answer: 8 samples suffice"]}]
    summ.write_text(json.dumps(s))
    code, text, err = _cli(["sweep", str(reference["spec"]), "--workers", "1", "--out", str(out)], capsys)
    assert code == 0, err
    report = (out / "report.md").read_text()
    assert "| test score | 95% CI | ±rep | fallback | vs best |" in report
    assert "## 4. Interpretability" in report and f"**sim-2wiki, rules** (seed {row['seed']}" in report
    assert "- round 2, after trial 5: answer: 8 samples suffice" in report


def test_rerun_skips_finished_cells(reference, capsys, monkeypatch):
    created = []
    monkeypatch.setattr(ArchiveWriter, "create", classmethod(lambda cls, *a, **k: created.append(a) or None))
    code, out, _ = _cli(["sweep", str(reference["spec"]), "--workers", "1", "--out", str(reference["out"])], capsys)
    assert code == 0 and created == [] and f"0 run now, {N_CELLS} already finished" in out


def test_worker_processes_and_ray_give_the_same_cells(reference, tmp_path, ray_local):
    spec = parse_spec(dict(SPEC, out=str(tmp_path / "procs")), "test")
    par = run_sweep(spec, workers=2)
    assert par.executor == "processes" and par.ran == N_CELLS
    _same(par.results, reference["results"])
    spec = parse_spec(dict(SPEC, out=str(tmp_path / "ray")), "test")
    ray_run = run_sweep(spec, ray="auto")
    assert ray_run.executor == "ray" and ray_run.ran == N_CELLS
    _same(ray_run.results, reference["results"])
    _same(pl.read_parquet(tmp_path / "ray" / "curves.parquet"), pl.read_parquet(reference["out"] / "curves.parquet"))


class Crash(BaseException):
    """The sweep's process dies (not an error a cell could catch)."""


def test_interrupted_sweep_resumes_without_repeating_or_losing_a_cell(reference, tmp_path, monkeypatch):
    out = tmp_path / "out"
    spec = parse_spec(dict(SPEC, out=str(out)), "test")
    created: list[str] = []
    target = "cells/sim-2wiki/bo/train-10_budget-default_trials-5/seed-1"
    state = {"crash": True}

    class Counting(ArchiveWriter):
        appends = 0

        @classmethod
        def create(cls, path, header):
            created.append(str(path.parent.relative_to(out)))
            return super().create(path, header)

        def append(self, records):
            if state["crash"] and str(self.path.parent).endswith(target):
                Counting.appends += 1
                if Counting.appends == 3:  # two trials archived, then the process dies mid-cell
                    raise Crash()
            super().append(records)

    monkeypatch.setattr(runner, "ArchiveWriter", Counting)
    with pytest.raises(Crash):
        run_sweep(spec, workers=1, report=False)
    done_first = set(created)
    assert target in done_first and not (out / target / "summary.json").exists()
    # also lose outputs: one finished cell's summary, another finished cell's whole folder
    cells = sorted(done_first - {target})
    (out / cells[0] / "summary.json").unlink()
    shutil.rmtree(out / cells[1])
    state["crash"] = False
    again = run_sweep(spec, workers=1, report=False)
    assert again.skipped == len(done_first) - 3 and again.ran == N_CELLS - len(done_first) + 3
    # every cell's archive was created once, except the one whose folder was deleted
    counts = Counter(created)
    assert len(counts) == N_CELLS and counts.pop(cells[1]) == 2 and set(counts.values()) == {1}
    res = again.results
    assert set(res["status"]) == {"done"}
    resumed = dict(zip(res["cell"], res["resumed_from"]))
    assert resumed[target] == 2 and resumed[cells[0]] == 5 and resumed[cells[1]] == 0
    _same(res, reference["results"], drop=("resumed_from",))


# ---------------------------------------------------------------------------------------------
# LLM searchers share a bounded number of requests


class InFlight:
    """A responder that records the most requests in flight at once. Until two have overlapped,
    each request waits (up to `hold` s) for another one to arrive, so that requests that can
    overlap do."""

    def __init__(self, hold: float):
        self.hold = hold
        self.now = self.max = self.total = 0
        self.cond = threading.Condition()

    def __call__(self, request):
        with self.cond:
            self.now += 1
            self.total += 1
            self.max = max(self.max, self.now)
            self.cond.notify_all()
            self.cond.wait_for(lambda: self.max > 1, timeout=self.hold)
        with self.cond:
            self.now -= 1
        return "{}"  # not a valid answer: counted, the round filled with untried neighbours


def llm_spec(server, out, concurrency):
    fast = {"max_feedback": 0, "trials_per_round": 2, "llm_backoff_s": 0.001, "llm_timeout_s": 20}
    return parse_spec({
        "stores": [str(TRACES / "aime24")], "searchers": ["agenttts", "agenthpo", "mlcopilot"], "seeds": [0, 1],
        "train": [10], "trials": [6], "max_samples": 4, "replicates": 4, "test_replicates": 8, "optimum": False,
        "searcher_options": {"agenttts": fast, "agenthpo": fast, "mlcopilot": fast},
        "llm": {"base_url": server.base_url, "model": "scripted-agent", "concurrency": concurrency},
        "out": str(out),
    }, "test")


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def test_llm_searchers_in_worker_processes_share_the_request_bound(tmp_path, no_env):
    with ScriptedLLMServer() as server:
        server.responder = control = InFlight(hold=1.0)
        run_sweep(llm_spec(server, tmp_path / "two", 2), workers=2, report=False)
        assert control.max == 2  # two workers do overlap their requests...
        server.responder = bounded = InFlight(hold=0.05)
        res = run_sweep(llm_spec(server, tmp_path / "one", 1), workers=2, report=False)
    assert bounded.max == 1 and bounded.total >= 6  # ...but not with one slot
    assert set(res.results["status"]) == {"done"} and res.ran == 6
    assert (res.results["llm_tokens"] > 0).all() and (res.results["trials"] == 6).all()


def test_llm_searchers_on_ray_take_an_llm_slot(tmp_path, no_env, ray_local):
    with ScriptedLLMServer() as server:
        server.responder = bounded = InFlight(hold=0.05)
        res = run_sweep(llm_spec(server, tmp_path / "ray", 1), ray="auto", report=False)
    assert res.executor == "ray" and set(res.results["status"]) == {"done"}
    assert bounded.max == 1 and bounded.total >= 6


def test_a_failed_cell_is_reported_and_retried(tmp_path, capsys, no_env):
    from llm_server import Fail

    with ScriptedLLMServer() as server:
        spec = tmp_path / "llm.yaml"
        spec.write_text(yaml.safe_dump({
            "stores": [str(TRACES / "aime24")], "searchers": ["random", "agenthpo"], "train": [10], "trials": [6],
            "max_samples": 4, "replicates": 4, "test_replicates": 8,
            "searcher_options": {"agenthpo": {"max_feedback": 0, "trials_per_round": 2, "llm_backoff_s": 0.001}},
            "llm": {"base_url": server.base_url, "model": "scripted-agent"}}))
        argv = ["sweep", str(spec), "--workers", "1", "--out", str(tmp_path / "o")]
        server.responder = lambda req: Fail(401, "invalid api key")
        code, _, err = _cli(argv, capsys)
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert code == 1 and len(errors) == 1 and "1 of 2 cells failed" in errors[0]
        res = pl.read_parquet(tmp_path / "o" / "results.parquet")
        failed = res.filter(pl.col("status") == "failed")
        assert failed["label"].to_list() == ["agenthpo"] and "invalid api key" in failed["error"][0]
        assert "## Failed cells" in (tmp_path / "o" / "report.md").read_text()
        assert (tmp_path / "o" / failed["cell"][0] / "error.txt").is_file()
        server.responder = InFlight(hold=0.0)
        code, out, err = _cli(argv, capsys)
    assert code == 0 and "1 run now, 1 already finished, 0 failed" in out
    res = pl.read_parquet(tmp_path / "o" / "results.parquet")
    assert set(res["status"]) == {"done"} and (res["trials"] == 6).all()


@pytest.fixture(scope="module")
def ray_local():
    import ray  # the `ray` extra, part of `dev`: never skipped
    started = not ray.is_initialized()
    if started:
        # two LLM slots: a sweep with --llm-concurrency 1 asks for both per LLM cell
        ray.init(num_cpus=2, include_dashboard=False, resources={"llm_slot": 2}, logging_level="WARNING")
    yield ray
    if started:
        ray.shutdown()


# ---------------------------------------------------------------------------------------------
# Bad input: one line naming the spec file and the field, exit 2


@pytest.mark.parametrize("patch, field, words", [
    ({"seedz": 1}, "seedz", "unknown field"),
    ({"searchers": ["random", "nope"]}, "searchers[1]", "unknown searcher 'nope'"),
    ({"searchers": ["rules:insight9"]}, "searchers[0]", "unknown ablation"),
    ({"searchers": [{"searcher": "bo", "options": {"sampler": "tpe", "bogus": 1}}]}, "searchers[0]", "bogus"),
    ({"seeds": "3-1"}, "seeds", "not a seed list"),
    ({"train": [10, 40]}, "train", "leave none"),
    ({"budgets": [-3]}, "budgets", "positive"),
    ({"trials": ["many"]}, "trials", "integer"),
    ({"stores": [str(TRACES / "nowhere")]}, "stores[0]", "not a store folder"),
    ({"stores": [{"path": str(TRACES / "aime24"), "train": [30]}]}, "stores[0].train", "leave none"),
    ({"replicates": 0}, "replicates", "at least 1"),
    ({"llm": {"concurrency": "x"}}, "llm.concurrency", "integer"),
    ({"searchers": ["bo", "bo"]}, "searchers", "listed twice"),
])
def test_bad_spec_is_one_line_naming_file_and_field(tmp_path, capsys, patch, field, words):
    spec = tmp_path / "bad.yaml"
    spec.write_text(yaml.safe_dump({**SPEC, "stores": [str(TRACES / "aime24")], **patch}))
    code, out, err = _cli(["sweep", str(spec), "--workers", "1", "--out", str(tmp_path / "o")], capsys)
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith(f"error: {spec}: {field}: ") and words in err, err
    assert not (tmp_path / "o").exists()


def test_bad_spec_file_and_options(tmp_path, capsys, monkeypatch):
    spec = tmp_path / "bad.yaml"
    spec.write_text("stores: [traces/aime24\nsearchers: random\n")
    code, _, err = _cli(["sweep", str(spec)], capsys)
    assert code == 2 and err.startswith(f"error: {spec}") and "YAML" in err and err.count("\n") == 1
    spec.write_text(json.dumps([1, 2]))
    code, _, err = _cli(["sweep", str(spec)], capsys)
    assert code == 2 and "mapping" in err
    code, _, err = _cli(["sweep", "--stores", str(TRACES / "aime24"), "--searchers", "random", "--seeds", "x"], capsys)
    assert code == 2 and err.startswith("error: --seeds: ")
    code, _, err = _cli(["sweep", "--searchers", "random"], capsys)
    assert code == 2 and "stores" in err and "required" in err
    monkeypatch.setitem(sys.modules, "ray", None)  # Ray not installed
    code, _, err = _cli(["sweep", "--stores", str(TRACES / "aime24"), "--searchers", "random", "--trials", "2",
                         "--ray", "local", "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and err.count("\n") == 1 and "error: --ray: Ray is not installed" in err


def test_output_folder_of_another_sweep_is_refused(reference, capsys):
    code, _, err = _cli(["sweep", str(reference["spec"]), "--replicates", "4", "--out", str(reference["out"])], capsys)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "replicates = 8, this spec has 4" in errors[0]


def test_command_line_axes_without_a_spec(tmp_path, capsys):
    t0 = time.perf_counter()
    code, out, err = _cli(["sweep", "--stores", str(TRACES / "aime24"), "--searchers", "random,rules:insight1",
                           "--seeds", "0-1", "--train", "5,10", "--trials", "3", "--max-samples", "2",
                           "--replicates", "4", "--workers", "1", "--out", str(tmp_path / "cli")], capsys)
    assert code == 0, err
    res = pl.read_parquet(tmp_path / "cli" / "results.parquet")
    assert res.height == 2 * 2 * 2 and sorted(set(res["train"])) == [5, 10]
    assert set(res["label"]) == {"random", "rules:insight1"} and set(res["ablation"].drop_nulls()) == {"insight1"}
    assert "| aime24 |" in out and time.perf_counter() - t0 < 30


def test_option_only_sweeps_get_their_own_folders_and_a_report_shows_only_its_figures(tmp_path, capsys, monkeypatch):
    """Issue 20: option-only sweeps used to share out/sweeps/sweep and mix their cells and figures."""
    monkeypatch.chdir(tmp_path)
    common = ["--searchers", "random", "--trials", "2", "--max-samples", "2", "--replicates", "4",
              "--test-replicates", "4", "--workers", "1"]

    def sweep(store, *extra):
        code, out, err = _cli(["sweep", "--stores", str(TRACES / store), *common, *extra], capsys)
        assert code == 0, err
        return out

    sweep("aime24")
    sweep("sim-2wiki")
    folders = sorted(p.name for p in (tmp_path / "out" / "sweeps").iterdir())
    assert len(folders) == 2 and folders[0].startswith("aime24_random_") and folders[1].startswith("sim-2wiki_random_")
    for f in folders:  # each folder holds its own store's cells and figures only
        store = f.split("_")[0]
        assert [p.name for p in (tmp_path / "out" / "sweeps" / f / "cells").iterdir()] == [store]
        assert {p.name.split("-best")[0].split("-robust")[0] for p in (tmp_path / "out" / "sweeps" / f / "figures").iterdir()} == {store}
    assert "1 cell: 0 run now, 1 already finished" in sweep("aime24")  # the same options resume
    assert len(list((tmp_path / "out" / "sweeps").iterdir())) == 2
    # one folder named by --out for two sweeps: the second's report shows only its own figures
    sweep("aime24", "--out", "mine")
    sweep("sim-2wiki", "--out", "mine")
    figs = sorted(p.name for p in (tmp_path / "mine" / "figures").iterdir())
    assert figs and all(f.startswith("sim-2wiki-") for f in figs)


def test_plots_show_a_flat_search_above_the_optimum_and_every_tied_searcher(tmp_path, monkeypatch):
    """Issue 20: a search at the optimum from trial 1 hid under the dashed optimum line, and tied
    searchers in a robustness plot drew one line over the others."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from search import report as search_report
    from search.sweep import report as sweep_report

    fig, ax = plt.subplots()
    search_report.draw_curves(ax, [("grid seed 0", np.full(5, 0.9))], 0.9)
    opt = next(ln for ln in ax.lines if ln.get_label().startswith("grid optimum"))
    line = next(ln for ln in ax.lines if ln.get_label() == "grid seed 0")
    assert line.get_zorder() > opt.get_zorder() and line.get_linestyle() == "-" and opt.get_linestyle() != "-"
    assert line.get_color() != opt.get_color() and line.get_marker() not in (None, "None", "")
    plt.close(fig)

    figs = []
    monkeypatch.setattr(sweep_report, "_save", lambda plt_, fig_, path: figs.append(fig_))
    tied = [(name, [5, 10, 20], [0.8, 0.8, 0.8], [0.0, 0.0, 0.0]) for name in ("random", "bo", "rules")]
    sweep_report._plot_robustness(tied, tmp_path / "r.png", "tied")
    lines = [c.lines[0] for c in figs[0].axes[0].containers if c.get_label() in ("random", "bo", "rules")]
    assert len(lines) == 3
    xs = [tuple(ln.get_xdata()) for ln in lines]
    assert len(set(xs)) == 3 and len({ln.get_marker() for ln in lines}) == 3  # each line shows
    plt.close(figs[0])


def test_a_scanning_grid_cell_is_stored_compactly_and_resumes(tmp_path, capsys):
    """Issue 20: the paper sweep's grid cells archived one trial per configuration (15k lines
    each, most of its 691 MB); a grid run until done now scans and keeps the picks and the top."""
    spec = tmp_path / "g.yaml"
    spec.write_text(yaml.safe_dump({"name": "g", "stores": [str(TRACES / "sim-2wiki")],
                                    "searchers": [{"searcher": "grid", "options": {"scan_above": 10}}],
                                    "max_samples": 4, "replicates": 4, "test_replicates": 4}))
    code, out, err = _cli(["sweep", str(spec), "--workers", "1", "--out", str(tmp_path / "o")], capsys)
    assert code == 0, err
    r = pl.read_parquet(tmp_path / "o" / "results.parquet").row(0, named=True)
    assert r["scanned"] == r["space_size"] == 144 and r["trials"] <= 5 and r["optimum_config"] == r["best_mean_config"]
    cell = tmp_path / "o" / r["cell"]
    assert len((cell / "archive.jsonl").read_text().splitlines()) <= 6  # the header and the picks
    top = json.loads((cell / "summary.json").read_text())["scan"]["top"]
    assert len(top) == 10 and top[0]["score"] == pytest.approx(r["optimum_score"])
    assert "(scan of 144)" in (tmp_path / "o" / "report.md").read_text()
    code, out, err = _cli(["sweep", str(spec), "--workers", "1", "--out", str(tmp_path / "o")], capsys)
    assert code == 0 and "1 cell: 0 run now, 1 already finished" in out
