"""Simulated graph stores (`collect simulate math|mmlu|humaneval`): the format, honesty, and the
behaviours the presets promise, shown by replay of the shipped stores."""

from __future__ import annotations

import json

import numpy as np
import pytest

import replay
from collect.simulate.graph import graph_spec_from_dict, simulate_graph
from collect.simulate.presets import GRAPH_PRESETS, merge, preset_dict, resolve
from collect.simulate.spec import SpecError
from replay.graph.engine import evaluate_graphs

from clikit import run_main
from conftest import TRACES

BIG = {"math": "Qwen2.5-7B", "mmlu": "Llama-3.1-8B", "humaneval": "Qwen2.5-7B"}
FAMILIES = {"Llama-3.1-8B": "llama", "Qwen2.5-7B": "qwen"}


def width_graph(m: str, w: int) -> str:
    return "; ".join([f"s{i}=solve({m},1)" for i in range(w)] + [f"a=aggregate({m},1|{','.join(f's{i}' for i in range(w))})"])


def depth_graph(m: str, d: int) -> str:
    parts, prev = [f"s=solve({m},1)"], "s"
    for i in range(d):
        parts.append(f"r{i}=refine({m},1|{prev})")
        prev = f"r{i}"
    return "; ".join(parts)


def test_presets_parse_and_round_trip():
    for name in GRAPH_PRESETS:
        spec, used = resolve(name, None)
        assert used == name and spec.name == f"sim-{name}" and spec.kind == "graph"
        assert graph_spec_from_dict(spec.to_json()) == spec
        families = {m.family for m in spec.models}
        assert len(families) == 2 and all(sum(m.family == f for m in spec.models) >= 3 for f in families)


@pytest.mark.parametrize("change,needle", [
    ({"name": "math"}, "name: a synthetic store's name must start with 'sim-'"),
    ({"answers": {"style": "emoji"}}, "answers.style: must be one of"),
    ({"refine": {"stickiness": 2}}, "refine.stickiness: must be <= 1"),
    ({"models": [{"name": "x"}]}, "models[0].params: missing"),
    ({"bogus": 1}, "unknown field 'bogus'"),
])
def test_graph_spec_errors_name_the_field(change, needle):
    with pytest.raises(SpecError) as e:
        graph_spec_from_dict(merge(preset_dict("math"), change), "my.yaml")
    assert str(e.value).startswith("my.yaml: ") and needle in str(e.value)


def test_small_store_is_reproducible_and_marked_synthetic(tmp_path):
    raw = merge(preset_dict("humaneval"), {"questions": 8, "samples": 6, "role_samples": 3, "top_answers": 3,
                                          "aggregate_max_inputs": 2})
    a = replay.open(simulate_graph(graph_spec_from_dict(raw), tmp_path / "a", seed=4))
    b = replay.open(simulate_graph(graph_spec_from_dict(raw), tmp_path / "b", seed=4))
    assert a.samples.equals(b.samples) and a.questions.equals(b.questions)
    m = a.manifest
    assert m.kind == "graph" and m.synthetic and m.stage_names == ("solve", "refine", "aggregate")
    assert m.provenance["seed"] == 4 and graph_spec_from_dict(m.provenance["spec"]) == graph_spec_from_dict(raw)
    assert all(x.prefill_tokens_per_s and x.decode_tokens_per_s for x in m.models)
    # signatures: the gold passes every test
    gold = a.questions["gold"].to_list()
    assert all(g == "P" * 6 for g in gold)


def test_cli_writes_a_graph_store_and_says_synthetic(tmp_path, capsys):
    from collect.cli import main

    spec = tmp_path / "small.yaml"
    spec.write_text("questions: 6\nsamples: 4\nrole_samples: 2\ntop_answers: 2\n")
    code, out, err = run_main(main, ["simulate", str(spec), "--preset", "mmlu", "--out", str(tmp_path / "sim-m")], capsys)
    assert code == 0 and "graph store" in out and "SYNTHETIC" in err
    st = replay.open(tmp_path / "sim-m")
    assert st.manifest.kind == "graph" and set(st.questions["gold"].to_list()) <= set("ABCD")


@pytest.mark.parametrize("name", list(GRAPH_PRESETS))
def test_shipped_store_is_labelled_synthetic(name):
    st = replay.open(TRACES / f"sim-{name}")
    assert st.synthetic and st.manifest.kind == "graph" and st.name == f"sim-{name}"
    assert "SYNTHETIC" in (TRACES / f"sim-{name}" / "README.md").read_text()
    assert st.manifest.provenance["preset"] == name


def _scores(store, graphs, replicates=32):
    return np.array([r.score for r in evaluate_graphs(store, graphs, replicates=replicates, seed=0)])


@pytest.mark.parametrize("name", list(GRAPH_PRESETS))
def test_width_helps_then_saturates(name):
    st = replay.open(TRACES / f"sim-{name}")
    s = _scores(st, [width_graph(BIG[name], w) for w in (1, 2, 3, 4)])
    first, last = s[1] - s[0], s[3] - s[2]
    assert first > 0.02, s  # a second parallel solver read by the aggregator helps
    assert last < first / 2, s  # the fourth adds little or hurts: saturation


@pytest.mark.parametrize("name", ["math", "humaneval"])
def test_depth_helps_then_hurts(name):
    st = replay.open(TRACES / f"sim-{name}")
    s = _scores(st, [depth_graph(BIG[name], d) for d in range(7)])
    peak = int(np.argmax(s))
    assert 1 <= peak <= 3, s  # an interior best depth: non-monotonic
    assert s[peak] - s[0] > 0.02 and s[peak] - s[-1] > 0.02, s


def test_mmlu_refinement_of_a_strong_solver_hurts_at_once():
    st = replay.open(TRACES / "sim-mmlu")
    s = _scores(st, [depth_graph("Llama-3.1-8B", d) for d in range(4)])
    assert s[0] > s[1] > s[3], s


def test_the_best_graph_differs_between_presets():
    cands = []
    for m in ("Llama-3.1-8B", "Qwen2.5-7B"):
        cands += [f"s=solve({m},8)", width_graph(m, 4), depth_graph(m, 2)]
    best = {}
    for name in ("math", "mmlu"):
        s = _scores(replay.open(TRACES / f"sim-{name}"), cands, replicates=16)
        best[name] = cands[int(np.argmax(s))]
    assert best["math"] != best["mmlu"]
    fam = {k: "qwen" if "Qwen" in v else "llama" for k, v in best.items()}
    assert fam == {"math": "qwen", "mmlu": "llama"}, best


def test_replay_cli_on_a_graph_store(tmp_path, capsys):
    from replay.cli import main

    store = str(TRACES / "sim-humaneval")
    code, out, err = run_main(main, ["info", store], capsys)
    assert code == 0 and "graph store" in out and "aggregate" in out and "SYNTHETIC" in err
    g = "s1=solve(Qwen2.5-7B,2); s2=solve(Llama-3.1-8B,2); a=aggregate(Qwen2.5-7B,1|s1,s2)"
    code, out, err = run_main(main, ["eval", store, "-c", g, "-r", "8", "--json"], capsys)
    row = json.loads(out.strip().splitlines()[0])
    assert code == 0 and row["feasible"] and row["latency"] > 0 and row["tokens"] > 0 and len(row["nodes"]) == 3
    grid = tmp_path / "grid.txt"
    grid.write_text(f"# graphs\n{g}\ns=solve(Qwen2.5-7B,4)\n{json.dumps({'nodes': [{'name': 's', 'role': 'solve', 'model': 'Llama-3.1-8B', 'samples': 2}]})}\n")
    code, out, err = run_main(main, ["sweep", store, "--grid", str(grid), "--out", str(tmp_path / "s.parquet"), "-r", "4"], capsys)
    import polars as pl

    df = pl.read_parquet(tmp_path / "s.parquet")
    assert code == 0 and df.height == 3 and {"graph", "score", "units", "latency"} <= set(df.columns)
    code, out, err = run_main(main, ["sweep", store, "--out", str(tmp_path / "x.parquet")], capsys)
    assert code == 2 and "give --grid FILE" in err
    code, out, err = run_main(main, ["curve", store, "--out", str(tmp_path / "c.png")], capsys)
    assert code == 2 and "graph store" in err
