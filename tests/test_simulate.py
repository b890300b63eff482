"""The simulator: spec parsing, the store it writes, and the three behaviours of DESIGN.md,
measured with the replay engine on stores the generator makes (never by reading the
generator's internals), each shown present when the spec asks for it and gone when the spec
turns it off."""

from __future__ import annotations

import copy
import json

import numpy as np
import polars as pl
import pytest

import replay
from collect.simulate import SpecError, simulate, spec_from_dict
from collect.simulate.presets import PRESETS, merge, preset_dict, resolve
from replay import schema as S
from replay.engine import estimate_units

SMALL, LARGE = "S-1B", "L-8B"


def models(sensitive: bool = True, small_answer_ability: float | None = None):
    small = {"name": SMALL, "params": 1e9, "ability": 0.6, "long_input_sensitivity": 1.0 if sensitive else 0.0}
    if small_answer_ability is not None:
        small["ability"] = {"default": 0.6, "answer": small_answer_ability}
    return [small, {"name": LARGE, "params": 8e9, "ability": 1.2, "long_input_sensitivity": 0.1 if sensitive else 0.0}]


def two_stage(answer: dict | None = None, **top) -> dict:
    """Long-input retrieval, then a short-input answer stage."""
    spec = {
        "name": "sim-test", "questions": 40, "samples": 32, "models": models(),
        "stages": [
            {"name": "retrieve", "prompt_tokens": 3000, "completion_tokens": 60},
            {"name": "answer", "prompt_tokens": 200, "completion_tokens": 60, "chain_penalty": 2.5,
             **(answer or {})},
        ],
    }
    spec.update(top)
    return spec


def make(tmp_path, raw: dict, seed: int = 0, name: str = "store"):
    return replay.open(simulate(spec_from_dict(raw), tmp_path / name, seed=seed))


# ---------------------------------------------------------------------------------------------
# Spec parsing: one-line errors that name the field


@pytest.mark.parametrize("change, needle", [
    (lambda s: s.update(name="plain"), "name: a synthetic store's name must start with 'sim-'"),
    (lambda s: s.update(sampels=8), "unknown field 'sampels'"),
    (lambda s: s["stages"][1].update(chain_penalty=-1), "stages[1].chain_penalty: must be >= 0"),
    (lambda s: s["stages"][0].update(chain_penalty=1.0), "stages[0].chain_penalty: the first stage has no upstream"),
    (lambda s: s["stages"][1].update(aggregation="vote"), "stages[1].aggregation: must be one of"),
    (lambda s: s["stages"][1].update(fuse={"decay": 0.1}), "only an llm_fuse stage has fuse settings"),
    (lambda s: s["models"][0].update(params="big"), "models[0].params: must be a number"),
    (lambda s: s["stages"][1].update(dependency="independent"),
     "stages[1].chain_penalty: an independent stage does not depend on the upstream answer"),
    (lambda s: s["stages"][1].update(dependency="sometimes"), "stages[1].dependency: must be one of"),
    (lambda s: s.update(score_rule="most"), "score_rule: must be one of last, all, product, mean"),
    (lambda s: s["models"][0].update(ability={"nope": 1.0}), "models[0].ability: names unknown stage 'nope'"),
    (lambda s: s.update(samples=0), "samples: must be >= 1"),
    (lambda s: s["stages"][1].update(models=["GPT-9"]), "names unknown model 'GPT-9'"),
])
def test_spec_errors_name_the_field(change, needle):
    raw = two_stage()
    change(raw)
    with pytest.raises(SpecError) as e:
        spec_from_dict(raw, "my.yaml")
    msg = str(e.value)
    assert msg.startswith("my.yaml: ") and needle in msg and "\n" not in msg


def test_every_preset_parses_and_round_trips():
    for name in PRESETS:
        spec, used = resolve(name, None)
        assert used == name and spec.name.startswith("sim-")
        assert spec_from_dict(spec.to_json()) == spec  # the provenance spec rebuilds the same spec
    shapes = {name: [st.name for st in resolve(name, None)[0].stages] for name in PRESETS}
    assert shapes["taskbench"] == ["decompose", "tools", "params"]
    assert shapes["chatdev"] == ["design", "code", "test"]
    assert shapes["2wiki"] == shapes["hotpotqa"] == ["retrieve", "answer"]


# ---------------------------------------------------------------------------------------------
# The store: normal format, synthetic, reproducible


def test_store_format_chaining_and_provenance(tmp_path):
    raw = {
        "name": "sim-shape", "questions": 24, "samples": 16, "keys_per_question": 3, "models": models(),
        "stages": [
            {"name": "plan", "prompt_tokens": 600},
            {"name": "tools", "aggregation": "set_vote", "chain_penalty": 1.0,
             "items": {"catalog": 12, "gold_min": 1, "gold_max": 3, "distractors": 3}},
            {"name": "answer", "aggregation": "llm_fuse", "chain_penalty": 1.0, "fuse": {"max_size": 6, "per_size": 2}},
        ],
    }
    st = make(tmp_path, raw, seed=7)
    man = json.loads((st.path / S.MANIFEST).read_text())
    assert man["synthetic"] is True and man["name"] == "sim-shape"
    assert man["provenance"]["seed"] == 7 and man["provenance"]["spec"]["stages"][1]["name"] == "tools"
    sm = st.samples
    # stage 1 has the root context only; later stages are keyed by upstream answers, several per question
    assert sm.filter(pl.col("stage") == "plan")["context"].unique().to_list() == [S.ROOT_CONTEXT]
    for up, down in (("plan", "tools"), ("tools", "answer")):
        ups = set(sm.filter(pl.col("stage") == up)["answer"].to_list())
        ctx = sm.filter(pl.col("stage") == down).select("question_id", "context").unique()
        assert set(ctx["context"].to_list()) <= ups
        per_q = ctx.group_by("question_id").len()["len"]
        assert per_q.max() <= 3 and per_q.mean() > 1.5
    # list answers sorted and joined by ITEM_SEP; intermediate golds in stage_golds
    tools = sm.filter(pl.col("stage") == "tools")["answer"].unique().to_list()
    assert all(a.split(S.ITEM_SEP) == sorted(a.split(S.ITEM_SEP)) for a in tools)
    assert set(st.stage_golds["stage"].unique().to_list()) == {"plan", "tools"}
    # fusions: subsets of every size up to max_size, within the pool
    sizes = st.fusions["subset"].list.len()
    assert sorted(sizes.unique().to_list()) == list(range(1, 7))
    assert st.fusions["subset"].list.max().max() < 16
    # it replays like any store, and the same spec and seed give the same store
    r = st.evaluate("S-1B:2,L-8B:3,L-8B:4", replicates=8)
    assert r.feasible and 0 <= r.score <= 1 and r.fallback_rate < 0.5
    again = replay.open(simulate(spec_from_dict(man["provenance"]["spec"]), tmp_path / "again", seed=7))
    assert again.samples.equals(st.samples) and again.fusions.equals(st.fusions)
    other = replay.open(simulate(spec_from_dict(raw), tmp_path / "other", seed=8))
    assert not other.samples.equals(st.samples)


def test_cli_writes_store_and_says_synthetic(tmp_path, capsys):
    from collect.cli import main

    spec_file = tmp_path / "tweak.yaml"
    spec_file.write_text("questions: 12\nsamples: 8\n")
    main(["simulate", str(spec_file), "--preset", "webqsp", "--out", str(tmp_path / "sim-w"), "--seed", "3"])
    out = capsys.readouterr()
    assert "SYNTHETIC" in out.err and "wrote" in out.out
    st = replay.open(tmp_path / "sim-w")
    assert st.synthetic and st.name == "sim-webqsp" and len(st.question_ids) == 12
    with pytest.raises(SystemExit) as e:  # existing store without --force: one line, exit 2
        main(["simulate", "webqsp", "--out", str(tmp_path / "sim-w")])
    assert e.value.code == 2 and "already exists" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "sim-x", "models": [], "stages": []}))
    with pytest.raises(SystemExit) as e:
        main(["simulate", str(bad), "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err.count("\n") == 0 and "bad.json" in err and "stages" in err


# ---------------------------------------------------------------------------------------------
# Behaviour 1: a long-input stage prefers the large model, a short-input one the small model
# with many samples, at equal cost. Off: models equally good at long inputs.


def _prefers_large(store, stage: int) -> tuple[bool, float]:
    """Large:1 on `stage` against the most samples of the small model that cost no more;
    the other stage fixed to the large model with one sample. End-to-end scores."""
    base = [(LARGE, 1), (LARGE, 1)]
    limit = estimate_units(store, base)
    k = 1
    while k < 32:
        cfg = list(base)
        cfg[stage] = (SMALL, k + 1)
        if estimate_units(store, cfg) > limit:
            break
        k += 1
    small = list(base)
    small[stage] = (SMALL, k)
    big, sm = store.evaluate_batch([base, small], replicates=64, seed=0)
    assert sm.units <= big.units * 1.02  # equal budget, measured
    return big.score > sm.score, big.score - sm.score


def test_behaviour_stage_model_preference(tmp_path):
    on = make(tmp_path, two_stage(), name="on")
    off_raw = two_stage()
    off_raw["models"] = models(sensitive=False)
    off = make(tmp_path, off_raw, name="off")
    (l0, d0), (l1, d1) = _prefers_large(on, 0), _prefers_large(on, 1)
    assert l0 and d0 > 0.1, "retrieval (long input) should prefer the large model"
    assert not l1 and d1 < -0.02, "answer (short input) should prefer the small model with many samples"
    (m0, _), (m1, _) = _prefers_large(off, 0), _prefers_large(off, 1)
    assert m0 == m1 == False  # noqa: E712 - no long-input penalty: both stages prefer the small model


# ---------------------------------------------------------------------------------------------
# Behaviour 2: an llm_fuse stage peaks at an interior sample count. Off: decay 0.


def _curve(store, prefix: str, model: str, counts) -> np.ndarray:
    rs = store.evaluate_batch([f"{prefix}{model}:{n}" for n in counts], replicates=64, seed=0)
    return np.array([r.score for r in rs])


def test_behaviour_interior_best_sample_count(tmp_path):
    fuse = {"aggregation": "llm_fuse", "chain_penalty": 0.0, "fuse": {"max_size": 16, "decay": 0.25}}
    # equal ability on the fused stage, so that the two models differ there only in size
    ms = models()
    for m in ms:
        m["ability"] = {"default": m["ability"], "answer": 0.9}
    on = make(tmp_path, two_stage(fuse, models=ms), name="on")
    off = make(tmp_path, two_stage({**fuse, "fuse": {"max_size": 16, "decay": 0.0}}, models=ms), name="off")
    counts = list(range(1, 17))
    for model in (SMALL, LARGE):
        c = _curve(on, f"{LARGE}:1,", model, counts)
        best = int(np.argmax(c))
        assert 0 < best < len(counts) - 1, f"{model}: best count should be interior, curve {np.round(c, 3)}"
        assert c[best] - c[0] > 0.05 and c[best] - c[-1] > 0.05  # rises, then falls
        c_off = _curve(off, f"{LARGE}:1,", model, counts)
        assert c_off.max() - c_off[-1] < 0.03, f"{model}: no decay, no fall: {np.round(c_off, 3)}"
    # Fused quality falls more steeply for the small model (same ability there, only size differs):
    # read off the stored fusions (mean score per model and subset size), a store-level fact.
    by = (on.fusions.with_columns(n=pl.col("subset").list.len()).group_by("model", "n")
          .agg(pl.col("score").mean()).sort("model", "n"))
    q = {m: by.filter(pl.col("model") == m)["score"].to_numpy() for m in (SMALL, LARGE)}
    assert np.argmax(q[SMALL]) <= np.argmax(q[LARGE])
    assert q[SMALL][-1] - q[SMALL][0] < q[LARGE][-1] - q[LARGE][0] - 0.02  # at 16 the small one kept less gain


# ---------------------------------------------------------------------------------------------
# Behaviour 3: the downstream best count shrinks when the upstream stage gets a better model.
# Off: chain_penalty 0 and chain_lock 0 (downstream independent of the upstream answer).


def _chained(chain: float) -> dict:
    # A tight spread of difficulty, so that "right upstream" and "wrong upstream" questions form
    # two clear groups, and enough upstream keys that replay never falls back.
    return two_stage(
        {"aggregation": "llm_fuse", "chain_penalty": chain, "chain_lock": 0.0,
         "fuse": {"max_size": 16, "decay": 0.1, "per_size": 16, "verify_bonus": 2.0}},
        questions=60, keys_per_question=5, models=models(small_answer_ability=1.4),
        answers={"rare": 0, "concentration": 3.0},
        difficulty={"sd": 0.5, "stage_sd": 0.2, "model_sd": 0.2, "context_sd": 0.1},
    )


def _best_count(scores: np.ndarray, counts: list[int]) -> tuple[int, float]:
    """The argmax, and the centre of the near-best counts (within 0.01 of the best): the top of
    a fused curve is flat, so the centre locates the optimum more stably than the argmax."""
    near = np.flatnonzero(scores >= scores.max() - 0.01)
    return counts[int(np.argmax(scores))], float(np.mean([counts[i] for i in near]))


def test_behaviour_downstream_count_depends_on_upstream(tmp_path):
    counts = list(range(1, 17))
    best = {}
    for label, chain in (("on", 3.0), ("off", 0.0)):
        st = make(tmp_path, _chained(chain), seed=0, name=label)
        for up in (f"{SMALL}:1", f"{LARGE}:5"):
            rs = st.evaluate_batch([f"{up},{SMALL}:{n}" for n in counts], replicates=64, seed=0)
            assert max(r.fallback_rate for r in rs) == 0.0
            best[label, up] = _best_count(np.array([r.score for r in rs]), counts)
    (a_poor, c_poor), (a_good, c_good) = best["on", f"{SMALL}:1"], best["on", f"{LARGE}:5"]
    assert a_poor > a_good and c_poor >= c_good + 2, best  # better upstream model: fewer downstream samples
    assert abs(best["off", f"{SMALL}:1"][1] - best["off", f"{LARGE}:5"][1]) <= 1, best


def test_preset_store_small(tmp_path):
    raw = merge(preset_dict("taskbench"), {"questions": 16, "samples": 8})
    st = make(tmp_path, raw)
    assert st.synthetic and [s.aggregation for s in st.stages] == ["majority_vote", "set_vote", "set_vote"]
    r = st.evaluate(",".join(["Qwen2.5-72B:1"] * 3), replicates=4)
    assert r.feasible and 0 < r.score <= 1


def test_independent_stages_and_score_rule(tmp_path):
    """`dependency: independent` gives one pool per (question, model) with context "" and no
    fallback; `score_rule: all` scores a pass 1 only when every stage is right: below every
    stage's own score, where `last` gives the last stage's (the exact product of the stages'
    chances: tests/test_score_rules.py)."""
    raw = {"name": "sim-indep", "questions": 30, "samples": 8, "score_rule": "all", "models": models(sensitive=False),
           "stages": [{"name": "plan"}, {"name": "check", "dependency": "independent"},
                      {"name": "format", "dependency": "independent", "aggregation": "best_score"}]}
    st = make(tmp_path, raw)
    assert st.manifest.score_rule == "all" and [s.dependency for s in st.stages][1:] == ["independent"] * 2
    samples = pl.read_parquet(st.path / "samples.parquet")
    assert samples.filter(pl.col("stage") != "plan")["context"].unique().to_list() == [""]
    cfg = f"{LARGE}:1,{SMALL}:1,{SMALL}:2"
    r = st.evaluate(cfg, replicates=400, seed=0)
    assert r.score_rule == "all" and r.fallback_rate == 0.0
    assert r.score < min(s.score for s in r.stages)
    last = replay.open(simulate(spec_from_dict(dict(raw, score_rule="last")), tmp_path / "last", seed=0))
    assert last.evaluate(cfg, replicates=400, seed=0).score == pytest.approx(r.stages[-1].score)
