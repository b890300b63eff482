"""Independent stages and end-to-end score rules (`all`, `product`, `mean`), on hand-made stores
whose chances are known exactly; and the budget unit, averaged over questions, under two layouts
of the same data."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

import replay
from replay import schema as S
from replay.aggregation import majority_index
from replay.errors import StoreError

N_POOL = 5
SCORE = {"r": 1.0, "x": 0.5, "y": 0.0}  # the right answer, a half-right one, a wrong one


def _pools(seed: int, n_q: int, n_s: int) -> list[list[list[str]]]:
    """pools[q][s]: the answers of one pool of N_POOL outputs per (question, stage)."""
    rng = np.random.default_rng(seed)
    return [[[str(a) for a in rng.choice(["r", "x", "y"], size=N_POOL, p=[0.55, 0.25, 0.2])] for _ in range(n_s)]
            for _ in range(n_q)]


def _write(path, pools, *, layout: str, rule: str, prompts=None):
    """A store of one model whose stage-s pool of question q holds pools[q][s].

    layout 'independent': stages after the first are declared independent, one pool each;
    layout 'copies': every stage conditional, its pool copied under every answer the stage
    before can aggregate to (the only way to say it before independent stages existed)."""
    n_q, n_s = len(pools), len(pools[0])
    stages = tuple(S.Stage(f"s{i}", dependency="independent" if (layout == "independent" and i > 0) else "conditional")
                   for i in range(n_s))
    manifest = S.Manifest(name=f"test-rules-{layout}", synthetic=True, stages=stages, models=(S.Model("m", 1e9),),
                          split={"train": tuple(f"q{q}" for q in range(n_q)), "test": ()}, score_rule=rule)
    cols = {k: [] for k in ("question_id", "stage", "model", "context", "sample_index", "answer", "score",
                            "prompt_tokens", "completion_tokens")}
    for q in range(n_q):
        for s in range(n_s):
            contexts = [""] if (s == 0 or layout == "independent") else sorted(set(pools[q][s - 1]))
            prompt = prompts[q][s] if prompts else 10
            for ctx in contexts:
                for j, a in enumerate(pools[q][s]):
                    for k, v in (("question_id", f"q{q}"), ("stage", f"s{s}"), ("model", "m"), ("context", ctx),
                                 ("sample_index", j), ("answer", a), ("score", SCORE[a]), ("prompt_tokens", prompt),
                                 ("completion_tokens", 3 + j)):
                        cols[k].append(v)
    questions = {"question_id": [f"q{q}" for q in range(n_q)], "split": ["train"] * n_q,
                 "gold": ["r"] * n_q, "metadata": ["{}"] * n_q}
    return replay.open(replay.write_store(path, manifest, questions, cols))


def _stage_chance(answers: list[str], n: int) -> tuple[float, float]:
    """Exactly, over every ordered draw of n of the pool's outputs (what the replay draws
    uniformly): the chance the majority vote is right, and its expected score."""
    right = score = 0.0
    draws = list(itertools.permutations(range(len(answers)), n))
    for d in draws:
        drawn = [answers[i] for i in d]
        s = SCORE[drawn[majority_index(drawn)]]
        right += s >= 1.0
        score += s
    return right / len(draws), score / len(draws)


def _expected(pools, counts, rule: str) -> np.ndarray:
    """Per question, the expected end-to-end score: with independent stages the stages' draws
    are independent, so E[all] = product of the chances, E[product] = product of the expected
    scores, E[mean] = mean of the expected scores."""
    out = []
    for q in pools:
        ch = [_stage_chance(q[s], n) for s, n in enumerate(counts)]
        if rule == "all":
            out.append(math.prod(c[0] for c in ch))
        elif rule == "product":
            out.append(math.prod(c[1] for c in ch))
        else:
            out.append(sum(c[1] for c in ch) / len(ch))
    return np.array(out)


@pytest.mark.parametrize("rule", ["all", "product", "mean"])
def test_independent_stages_score_the_product_of_their_chances(tmp_path, rule):
    """Three independent stages: the replayed score equals, within its Monte-Carlo error,
    the exact expectation (for `all`: the product of the stages' chances of being right)."""
    pools = _pools(1, 4, 3)
    st = _write(tmp_path / "s", pools, layout="independent", rule=rule)
    counts = (1, 3, 4)  # 4 of 5: ties, broken by the first drawn
    R = 20_000
    r = st.evaluate(",".join(f"m:{n}" for n in counts), replicates=R, seed=3)
    want = _expected(pools, counts, rule)
    assert r.score_rule == rule and r.fallback_rate == 0.0
    # per question: a mean of R independent draws of a score in [0, 1]
    se = np.sqrt(np.maximum(want * (1 - want), 1e-4) / R)
    assert np.all(np.abs(r.per_question - want) < 4.5 * se), (r.per_question, want)
    assert abs(r.score - want.mean()) < 4.5 * math.sqrt((se ** 2).sum()) / len(want)
    # the per-stage scores are each stage's own (not cumulative): stage 0 alone at 1 sample
    # scores its pool's mean score
    own0 = np.mean([np.mean([SCORE[a] for a in q[0]]) for q in pools])
    assert abs(r.stages[0].score - own0) < 4.5 * math.sqrt(0.25 / R / len(pools))


def test_all_stages_drawn_in_full_is_exactly_the_product(tmp_path):
    """Drawing every output of pools with a strict majority leaves no luck: the `all` score is
    exactly 1 on questions where every stage's majority is right and 0 elsewhere."""
    pools = [[["r", "r", "r", "x", "y"], ["r", "r", "y", "r", "x"]],  # both right
             [["r", "r", "r", "x", "y"], ["x", "x", "x", "r", "r"]],  # stage 1 wrong
             [["y", "y", "r", "y", "x"], ["r", "r", "r", "r", "y"]]]  # stage 0 wrong
    st = _write(tmp_path / "s", pools, layout="independent", rule="all")
    r = st.evaluate("m:5,m:5", replicates=7)
    assert list(r.per_question) == [1.0, 0.0, 0.0] and r.score == pytest.approx(1 / 3)
    assert [s.score for s in r.stages] == pytest.approx([2 / 3, 2.5 / 3])  # each stage's own (x scores 0.5)
    m = _write(tmp_path / "m", pools, layout="independent", rule="mean").evaluate("m:5,m:5", replicates=7)
    assert list(m.per_question) == [1.0, 0.75, 0.5]  # (1 + 1) / 2, (1 + 0.5) / 2, (0 + 1) / 2


def test_two_layouts_of_the_same_data_give_the_same_numbers_and_budget_unit(tmp_path):
    """An independent stage against the old encoding (its pool copied under every upstream
    answer): the same draws, so the same per-question scores and tokens; and the budget unit,
    averaged over questions, is the same although the copies hold 1 to 3 pools per question."""
    pools = [[["r", "r", "r", "r", "r"], ["r", "x", "r", "y", "r"]],  # one upstream answer: 1 copy
             [["r", "x", "y", "r", "x"], ["r", "r", "x", "x", "y"]],  # three upstream answers: 3 copies
             [["x", "x", "r", "y", "y"], ["y", "r", "r", "r", "x"]]]
    # the cheapest stage is the second (short prompts), whose copies differ in number per question
    prompts = [[400, 4], [400, 90], [400, 200]]
    ind = _write(tmp_path / "ind", pools, layout="independent", rule="all", prompts=prompts)
    cop = _write(tmp_path / "cop", pools, layout="copies", rule="all", prompts=prompts)
    assert len(cop.arrays.pool_ctx) > len(ind.arrays.pool_ctx)
    for cfg in ("m:1,m:1", "m:3,m:2", "m:5,m:4"):
        a, b = ind.evaluate(cfg, replicates=200, seed=1), cop.evaluate(cfg, replicates=200, seed=1)
        assert np.array_equal(a.per_question, b.per_question) and a.tokens == b.tokens
        assert a.fallback_rate == b.fallback_rate == 0.0
    assert ind.derived.budget_unit == pytest.approx(cop.derived.budget_unit, rel=1e-12)
    # the old unit (a mean over the stage's pools) moves with the number of copies
    d = cop.derived
    sel = (d.pool_stage == 1) & (d.pool_model == 0)
    old = 2e9 * float((cop.arrays.pool_prompt + d.pool_mean_completion)[sel].mean())
    assert abs(old / cop.derived.budget_unit - 1) > 0.1


def test_manifest_fields_are_validated_and_old_manifests_read(tmp_path):
    pools = _pools(2, 2, 2)
    st = _write(tmp_path / "s", pools, layout="independent", rule="product")
    raw = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert raw["score_rule"] == "product" and raw["stages"][1]["dependency"] == "independent"
    assert "dependency" not in raw["stages"][0]  # defaults are not written
    # an old manifest (neither field) reads with the defaults
    old = _write(tmp_path / "o", pools, layout="copies", rule="last")
    raw_old = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert "score_rule" not in raw_old and all("dependency" not in s for s in raw_old["stages"])
    assert old.manifest.score_rule == "last" and not any(s.independent for s in old.stages)
    for field, bad, needle in (("score_rule", "most", "unknown score_rule 'most'"),):
        raw2 = dict(raw, **{field: bad})
        (tmp_path / "s" / "manifest.json").write_text(json.dumps(raw2))
        with pytest.raises(StoreError, match=needle):
            replay.open(tmp_path / "s")
    raw3 = json.loads(json.dumps(raw))
    raw3["score_rule"] = "product"
    raw3["stages"][1]["dependency"] = "sometimes"
    (tmp_path / "s" / "manifest.json").write_text(json.dumps(raw3))
    with pytest.raises(StoreError, match="unknown dependency 'sometimes'"):
        replay.open(tmp_path / "s")
    assert st.manifest.stages[1].independent


def test_independent_stage_with_a_context_is_refused(tmp_path):
    pools = _pools(3, 2, 2)
    _write(tmp_path / "c", pools, layout="copies", rule="last")
    raw = json.loads((tmp_path / "c" / "manifest.json").read_text())
    raw["stages"][1]["dependency"] = "independent"
    (tmp_path / "c" / "manifest.json").write_text(json.dumps(raw))
    from replay.store import seal

    seal(tmp_path / "c", validate=False)  # sealed stores: the edit as a writer would seal it; validation is tested
    with pytest.raises(StoreError, match="'s1' is independent .*context must be empty"):
        replay.open(tmp_path / "c")


def test_rule_over_a_set_vote_stage_needs_its_golds(tmp_path):
    from storekit import RandomStoreSpec, make_random_store

    path = make_random_store(tmp_path / "r", RandomStoreSpec(seed=4, aggregations=("set_vote", "majority_vote"),
                                                              score_rule="all"))
    assert replay.open(path).evaluate("m0:1,m0:1", replicates=3).score_rule == "all"
    import polars as pl

    golds = pl.read_parquet(path / "stage_golds.parquet")
    golds.filter(pl.col("question_id") != "q1").write_parquet(path / "stage_golds.parquet")
    from replay.store import seal

    seal(path, validate=False)
    with pytest.raises(StoreError, match="set-vote stage 'stage0' has no gold for question 'q1'"):
        replay.open(path)


@pytest.mark.parametrize("rule", ["all", "product", "mean"])
def test_scan_question_sums_follow_the_score_rule(tmp_path, rule):
    """The grid searcher's selection-rule sums (replay.scan_stats.question_sums) are sums of the
    end-to-end per-question means: exactly evaluate_batch's `per_question` (memo method, the same
    summation order), and the pure-Python reference's, for every configuration of the scan, on
    chained and independent stages. Summing only the last stage's score (the old scan) fails."""
    from storekit import RandomStoreSpec, make_random_store

    from replay.engine import StageChoice, evaluate_batch, largest_pool, scan_space
    from replay.reference import evaluate_reference
    from replay.scan_stats import question_sums

    spec = RandomStoreSpec(seed=11, n_questions=4, aggregations=("majority_vote", "majority_vote", "best_score"),
                           independent=(False, False, True), float_scores=rule != "all", score_rule=rule,
                           n_answers=2, max_pool=4)
    st = replay.open(make_random_store(tmp_path / "s", spec))
    lp = largest_pool(st)
    choices = [[StageChoice(m, n) for m in st.candidate_models(s) for n in (1, int(lp[s, st.model_index(m)]))]
               for s in range(len(st.stages))]
    R, seed = 3, 5
    scan = scan_space(st, choices, replicates=R, seed=seed)
    P, K = scan.score.shape
    cfgs = [scan.config(i, k) for i in range(P) for k in range(K)]
    res = evaluate_batch(st, cfgs, replicates=R, seed=seed, method="memo")
    per_q = np.stack([r.per_question for r in res]).reshape(P, K, -1)  # [P, K, Q]
    ref = per_q[0, 0][::-1].copy()  # any reference: a configuration's means, reversed
    sums = question_sums(st, scan, questions=None, replicates=R, seed=seed, reference=ref)
    s1, s2, d1, d2 = (np.zeros((P, K)) for _ in range(4))
    for qi in range(per_q.shape[2]):  # in question order, as the kernel sums
        x = per_q[:, :, qi]
        s1 += x
        s2 += x * x
        d1 += x - ref[qi]
        d2 += (x - ref[qi]) ** 2
    for name, want in (("s1", s1), ("s2", s2), ("d1", d1), ("d2", d2)):
        assert np.array_equal(getattr(sums, name), want), (rule, name)
    # the reference oracle, configuration by configuration
    a = st.arrays
    for c, cfg in enumerate(cfgs):
        score = evaluate_reference(a, [st.model_index(x.model) for x in cfg.stages], [x.samples for x in cfg.stages],
                                   range(a.n_questions), R, seed)[0]
        np.testing.assert_allclose(per_q.reshape(P * K, -1)[c], score.mean(axis=1), rtol=0, atol=1e-12)
    # the rule matters here: the last stage's own score gives other sums
    last_own = np.stack([[r.stages[-1].score for r in res]]).reshape(P, K)
    assert not np.allclose(sums.s1 / a.n_questions, last_own), rule
