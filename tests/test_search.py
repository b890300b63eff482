"""The search framework and the non-LLM searchers, on small stores written in tmp_path."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import replay
from replay import schema as S
from replay.engine import Config, estimate_units, evaluate_batch, expected_units
from search.selection import DEFAULT_RULE
from replay.errors import ConfigError, InputError
from search import report
from search import runner as R
from search.archive import read_archive
from clikit import run_main
from search.cli import main as search_main
from search.settings import ConfigSpaceSettings, parse_seeds
from storekit import RandomStoreSpec, make_random_store

from conftest import TRACES

NON_LLM = ("random", "bo", "rules")


def one_stage_store(path, n_q=12, pool=10, seed=0):
    """Three models; larger ones more accurate and wordier; majority vote over a small alphabet,
    so that quality moves with the sample count."""
    rng = np.random.default_rng(seed)
    models = [S.Model("small", 1e9), S.Model("mid", 3e9), S.Model("large", 8e9)]
    acc = {"small": 0.35, "mid": 0.5, "large": 0.65}
    rows = {k: [] for k in ("question_id", "stage", "model", "context", "sample_index", "answer", "score",
                            "prompt_tokens", "completion_tokens")}
    qids = [f"q{i:02d}" for i in range(n_q)]
    for q in qids:
        for m in models:
            for j in range(pool):
                right = rng.random() < acc[m.name]
                a = "gold" if right else f"w{int(rng.integers(0, 3))}"
                for k, v in (("question_id", q), ("stage", "solve"), ("model", m.name), ("context", ""),
                             ("sample_index", j), ("answer", a), ("score", float(right)), ("prompt_tokens", 20),
                             ("completion_tokens", int(rng.integers(50, 150)))):
                    rows[k].append(v)
    questions = {"question_id": qids, "split": ["train" if i % 2 == 0 else "test" for i in range(n_q)],
                 "gold": ["gold"] * n_q}
    manifest = S.Manifest(name="tiny-1stage", stages=(S.Stage("solve"),), models=tuple(models), synthetic=True,
                          provenance={"generator": "tests/test_search.py"},
                          split={"train": tuple(qids[0::2]), "test": tuple(qids[1::2])})
    return replay.write_store(path, manifest, questions, rows)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    base = tmp_path_factory.mktemp("stores")
    one = replay.open(one_stage_store(base / "one"))
    two = replay.open(make_random_store(base / "two", RandomStoreSpec(seed=3, n_questions=8, n_models=3, max_pool=6,
                                                                      aggregations=("majority_vote", "majority_vote"))))
    return {"one": one, "two": two}


def brute_force(setup):
    """Every configuration of the space, scored like the runner scores a trial."""
    cfgs = list(setup.space.all_configs())
    rs = evaluate_batch(setup.store, cfgs, questions=setup.split.train, replicates=setup.replicates,
                        seed=setup.replay_seed, budget=setup.space.budget)
    return rs


# ---------------------------------------------------------------------------------------------
# space, split, setup


def test_space_cost_is_the_engines_budget_rule(stores):
    """The space's estimate is exactly the engine's expected cost (the budget rule), whatever the
    training questions: a search knows before the replay whether a configuration is feasible."""
    for st in stores.values():
        setup = R.make_setup(st)
        small = R.make_setup(st, train=2)
        rng = np.random.default_rng(0)
        cfgs = list(setup.space.all_configs())
        for k in rng.choice(len(cfgs), size=10, replace=False):
            c = cfgs[k]
            assert math.isclose(setup.space.estimate_cost(c), expected_units(st, c), rel_tol=1e-12)
            assert small.space.estimate_cost(c) == setup.space.estimate_cost(c)
        ev = setup.space.evaluate(cfgs[:20], setup.objective)
        for c, e in zip(cfgs[:20], ev):
            assert e.feasible == (expected_units(st, c) <= setup.space.budget * (1 + 1e-9))
            assert e.cost == pytest.approx(expected_units(st, c), rel=1e-12)


def test_max_affordable_is_the_per_count_budget_rule(stores):
    """The table lookup in `max_affordable` gives exactly the largest count whose summed expected
    cost passes `within_budget`, count by count (the scalar rule it replaced), at any budget."""
    from replay.engine import within_budget

    for st in stores.values():
        sp = R.make_setup(st).space
        rng = np.random.default_rng(1)
        cfgs = list(sp.all_configs())
        for k in rng.choice(len(cfgs), size=min(8, len(cfgs)), replace=False):
            c = cfgs[k]
            for i in range(len(sp.stages)):
                for m in sp.models[i]:
                    for budget in (None, sp.budget, sp.budget * 0.5, sp.budget * 0.97, 1e-9):
                        b = sp.budget if budget is None else budget
                        rest = sum(sp.stage_cost(j, ch.model, ch.samples) for j, ch in enumerate(c.stages) if j != i)
                        ok = [n for n in sp.counts[i][m] if within_budget(rest + sp.stage_cost(i, m, n), b)]
                        assert sp.max_affordable(c, i, m, budget=budget) == (max(ok) if ok else 0)


def test_split_uses_store_split_else_seeded(stores):
    st = stores["one"]
    sp = R.split_questions(st)
    assert [st.question_ids[i] for i in sp.train] == list(st.manifest.split["train"])
    assert "store" in sp.source
    # AgentTTS's protocol: --train N draws N of the store's training questions; the test set
    # never moves, and the training sets of several sizes are nested
    sp2 = R.split_questions(st, train=4)
    assert len(sp2.train) == 4 and np.array_equal(sp2.test, sp.test) and not sp2.overrides
    assert set(sp2.train) <= set(sp.train)
    assert np.array_equal(sp2.train, R.split_questions(st, train=4).train)  # seeded: stable
    sizes = [R.split_questions(st, train=n, seed=3) for n in (2, 4, 6)]
    assert set(sizes[0].train) <= set(sizes[1].train) <= set(sizes[2].train)
    assert all(np.array_equal(x.test, sp.test) for x in sizes)
    assert set(R.split_questions(st, train=4, seed=1).train) != set(sp2.train)  # another draw
    # more than the store's training questions: the split is overridden, and it says so
    sp3 = R.split_questions(st, train=8)
    assert sp3.overrides and "overrides" in sp3.source and len(sp3.train) == 8 and len(sp3.test) == 4
    with pytest.raises(ConfigError, match="--train"):
        R.split_questions(st, train=len(st.question_ids))


def test_default_budget_makes_reference_config_feasible(stores):
    st = stores["one"]
    setup = R.make_setup(st, replicates=8, replay_seed=3)
    ref = Config.of(("large", 1))
    r = evaluate_batch(st, [ref], questions=setup.split.train, replicates=8, seed=3, budget=setup.space.budget)[0]
    assert r.feasible
    with pytest.raises(ConfigError, match="--budget"):
        R.make_setup(st, ConfigSpaceSettings(budget=-1.0))
    with pytest.raises(ConfigError, match="cheapest"):
        R.make_setup(st, ConfigSpaceSettings(budget=1e-6))


# ---------------------------------------------------------------------------------------------
# grid


@pytest.mark.parametrize("which", ["one", "two"])
def test_grid_finds_brute_force_optimum(stores, which):
    setup = R.make_setup(stores[which], replicates=8)
    rs = brute_force(setup)
    feas = [r for r in rs if r.feasible]
    assert feas and len(feas) < len(rs)  # the budget binds: some configurations are infeasible
    top = max(r.score for r in feas)
    run = R.run_search(setup, "grid", trials=None)
    best = report.best_trial(run.trials)
    assert best.feasible and best.score == pytest.approx(top, abs=1e-12)
    opt = R.known_optimum(setup)
    assert opt["score"] == pytest.approx(top, abs=1e-12)
    # pruning only ever skips configurations that are infeasible
    scored = {t.point for t in run.trials}
    assert len(scored) == len(run.trials)  # no configuration scored twice
    skipped = [r for r in rs if r.config not in scored]
    assert all(not r.feasible for r in skipped)
    if which == "two":
        assert skipped, "the two-stage budget should let the grid prune some prefixes"


def test_grid_scans_a_space_too_large_to_archive(stores, tmp_path):
    """Above max_configs the grid scores the whole space by compiled scans and proposes the pick
    of every selection rule: each rule then picks among those trials exactly what it picks
    among every configuration scored trial by trial, and the summary reports the scan's work."""
    from search.selection import RULES, select

    setup = R.make_setup(stores["two"], replicates=4)
    full = R.run_search(setup, "grid", trials=None)
    run = R.run_search(setup, "grid", trials=None, options={"max_configs": 5})
    assert 1 <= len(run.trials) <= len(RULES) and {t.source for t in run.trials} == {"grid-scan"}
    assert run.states[-1]["scanned"] == setup.space.size()
    feasible = sum(1 for c in setup.space.all_configs() if setup.space.maybe_feasible(c))
    assert run.states[-1]["scan_feasible"] == feasible == len(full.trials)
    for rule in RULES:
        a, b = select(full.trials, rule).trial, select(run.trials, rule).trial
        assert a.point == b.point and a.score == pytest.approx(b.score, abs=1e-12), rule
    top = max(r.score for r in brute_force(setup) if r.feasible)
    assert report.best_trial(run.trials).score == pytest.approx(top, abs=1e-12)
    assert R.known_optimum(setup, limit=5) is None
    s = R.report_search(setup, run, out=tmp_path / "scan", plot=False)
    assert s["scan"]["scanned"] == setup.space.size() and s["scan"]["feasible"] == feasible
    assert s["optimum"]["evaluated"] == setup.space.size() and s["optimum"]["feasible"] == feasible
    assert s["replay_s"] >= s["scan"]["wall_s"] > 0
    text = report.summary_table(s, setup.space)
    # the replay time counts the scan (issue 20): the line leads with the total, then the scan's share
    work = next(ln for ln in text.splitlines() if ln.startswith("replay time")).split("  ", 1)[1].strip()
    assert work.startswith(f"{s['replay_s']:.3g} s (search") and s["replay_s"] >= s["scan"]["wall_s"]
    assert f"of which the scan: {setup.space.size():,} configurations ({feasible:,} within budget)" in work
    # trials to the best score, not to the picked configuration: said so when they differ
    assert report._to_best_text({"trials_to_best": 1}, {"trial": 11}) == \
        "1 (trials until the best training mean was first reached; the picked configuration is trial 11)"
    assert "trials to best score" in text
    # the scan keeps the best configurations instead of a trial each (issue 20: a sweep's disk)
    tops = s["scan"]["top"]
    assert len(tops) == min(10, feasible) and tops[0]["score"] == pytest.approx(top, abs=1e-12)
    assert [t["score"] for t in tops] == sorted((t["score"] for t in tops), reverse=True)
    ranked = sorted((t for t in full.trials if t.feasible), key=lambda t: (-t.score, t.cost))
    assert [t["config"] for t in tops] == [t.label for t in ranked[:len(tops)]]
    # a grid run until done scans any space above scan_above; one with a trial limit walks it
    assert [t.point for t in R.run_search(setup, "grid", trials=None, options={"scan_above": 5}).trials] == \
        [t.point for t in run.trials]
    assert {t.source for t in R.run_search(setup, "grid", trials=3, options={"scan_above": 5}).trials} != {"grid-scan"}


# ---------------------------------------------------------------------------------------------
# the searchers


@pytest.mark.parametrize("name", NON_LLM)
@pytest.mark.parametrize("which", ["one", "two"])
def test_searcher_runs_in_space_and_never_counts_infeasible(stores, name, which):
    setup = R.make_setup(stores[which], replicates=8)
    run = R.run_search(setup, name, seed=1, trials=20)
    assert 1 <= len(run.trials) <= 20
    assert [t.number for t in run.trials] == list(range(len(run.trials)))
    for t in run.trials:
        assert setup.space.contains(t.point)
        assert t.feasible == (t.cost <= setup.space.budget * (1 + 1e-9))
        assert (t.score is None) == (not t.feasible)
        assert sum(t.metrics["stage_units"]) == pytest.approx(t.metrics["measured_units"], rel=1e-9)
        assert t.cost == pytest.approx(setup.space.estimate_cost(t.point), rel=1e-12)  # the budget rule's figure
        assert t.feasible  # feasibility is known before the replay: no searcher wastes a trial on it
    b = report.best_trial(run.trials)
    assert b is not None and b.feasible
    if name in ("random", "rules"):
        configs = [t.point for t in run.trials]
        assert len(set(configs)) == len(configs)  # no repeats


@pytest.mark.parametrize("name", NON_LLM)
def test_searcher_is_deterministic_per_seed(stores, name):
    setup = R.make_setup(stores["two"], replicates=4)
    a = [t.point for t in R.run_search(setup, name, seed=5, trials=12).trials]
    b = [t.point for t in R.run_search(setup, name, seed=5, trials=12).trials]
    assert a == b
    if name != "rules":  # rules has no randomness unless insight 1 is ablated
        c = [t.point for t in R.run_search(setup, name, seed=6, trials=12).trials]
        assert a != c


def test_random_is_uniform_over_the_affordable_set_and_exhausts_it(stores):
    setup = R.make_setup(stores["one"], replicates=2)
    cands = [c for c in setup.space.all_configs() if setup.space.maybe_feasible(c)]
    run = R.run_search(setup, "random", seed=0, trials=10_000)
    assert run.stop == "searcher finished"
    assert sorted(map(str, (t.point for t in run.trials))) == sorted(map(str, cands))


def test_rules_follows_the_insights(stores):
    setup = R.make_setup(stores["two"], replicates=8)
    run = R.run_search(setup, "rules", trials=40)
    phases = [t.source for t in run.trials]
    n_init = sum(1 for p in phases if p == "rules-insight1")
    assert phases[0] == "rules-insight1" and n_init >= 2
    # initialisation: per stage, the other stages at the largest model with one sample
    sp = setup.space
    for t in run.trials[: n_init - 1]:
        others = [i for i, ch in enumerate(t.point.stages) if not (ch.model == sp.largest_model(i) and ch.samples == 1)]
        assert len(others) <= 1
    assert any(p == "rules-insight2" for p in phases)
    assert "preferred" in run.states[-1] and run.states[-1]["incumbent"]
    # the incumbent is never worse than anything seen
    best = report.best_trial(run.trials)
    assert run.states[-1]["incumbent"] == str(best.point) or \
        report.best_trial([t for t in run.trials if str(t.point) == run.states[-1]["incumbent"]]).score == best.score


@pytest.mark.parametrize("ablate", ["insight1", "insight2", "insight3"])
def test_rules_ablations_change_the_procedure(stores, ablate):
    setup = R.make_setup(stores["two"], replicates=4)
    run = R.run_search(setup, "rules", trials=25, options={"ablate": ablate})
    phases = {t.source for t in run.trials}
    if ablate == "insight1":
        assert "rules-insight1" not in phases and "rules-random-init" in phases
    if ablate == "insight2":
        assert "rules-insight2" not in phases
    if ablate == "insight3":
        assert "rules-insight3" not in phases


def test_bo_tells_optuna_constraint_violations_not_scores(stores):
    import optuna

    setup = R.make_setup(stores["two"], replicates=4)
    s = R.build_searcher("bo", setup.space)
    run_trials = []
    for k in range(15):
        props = s.ask()
        trials, _ = R.score_proposals(setup, props, k)
        for t in trials:
            s.tell(t)
            run_trials.append(t)
    for ft in s.study.trials:
        if ft.state == optuna.trial.TrialState.COMPLETE:
            assert all(v <= 0 for v in ft.constraints.values())
        elif ft.state == optuna.trial.TrialState.PRUNED:
            assert ft.value is None and sum(v for v in ft.constraints.values() if v > 0) > 0
    told = {t.score for t in run_trials if t.feasible}
    complete = {ft.value for ft in s.study.trials if ft.state == optuna.trial.TrialState.COMPLETE}
    assert complete <= told  # every score Optuna holds is a real replay score


def test_bo_gp_sampler(stores):
    pytest.importorskip("torch")
    setup = R.make_setup(stores["one"], replicates=4)
    run = R.run_search(setup, "bo", trials=8, options={"sampler": "gp", "n_startup_trials": 3})
    assert len(run.trials) == 8 and report.best_trial(run.trials).feasible


def test_unknown_options_are_refused(stores):
    setup = R.make_setup(stores["one"])
    with pytest.raises(ConfigError, match="--sampler"):
        R.run_search(setup, "random", trials=3, options={"sampler": "gp"})
    with pytest.raises(ConfigError, match="--sampler"):
        R.run_search(setup, "bo", trials=3, options={"sampler": "cma"})
    with pytest.raises(ConfigError, match="--searcher"):
        R.run_search(setup, "nope", trials=3)


# ---------------------------------------------------------------------------------------------
# archive and resume


class Boom(Exception):
    pass


@pytest.mark.parametrize("name", ["random", "bo", "rules", "grid"])
def test_resume_after_interruption_loses_and_repeats_nothing(stores, tmp_path, monkeypatch, name):
    setup = R.make_setup(stores["two"], replicates=4)
    trials = None if name == "grid" else 18
    monkeypatch.setattr("search.spaces.config_walks.GRID_BATCH", 40)  # the grid in several batches
    full = R.run_search(setup, name, seed=2, trials=trials, out=tmp_path / "full")
    real = R.score_proposals
    calls = {"n": 0}

    def flaky(setup_, props, first):
        calls["n"] += 1
        if calls["n"] == (2 if name in ("grid", "random") else 7):  # grid: batches of 40; random: of 16
            raise Boom
        return real(setup_, props, first)

    monkeypatch.setattr(R, "score_proposals", flaky)
    with pytest.raises(Boom):
        R.run_search(setup, name, seed=2, trials=trials, out=tmp_path / "cut")
    monkeypatch.setattr(R, "score_proposals", real)
    _, recs, _ = read_archive(tmp_path / "cut")
    assert 0 < len(recs) < len(full.trials)
    resumed = R.run_search(setup, name, seed=2, trials=trials, out=tmp_path / "cut", resume=True)
    assert resumed.resumed_from == len(recs)
    _, recs2, _ = read_archive(tmp_path / "cut")
    assert [r["label"] for r in recs2] == [str(t.point) for t in full.trials]
    assert [r["number"] for r in recs2] == list(range(len(full.trials)))
    assert [r["score"] for r in recs2] == [t.score for t in full.trials]


@pytest.mark.parametrize("name, keep", [("bo", 4), ("grid", 30)])
def test_resume_drops_a_torn_last_line(stores, tmp_path, name, keep):
    """Cut the archive inside a trial line (for the grid: inside its last batch)."""
    setup = R.make_setup(stores["two"], replicates=4)
    trials = None if name == "grid" else 10
    full = R.run_search(setup, name, seed=0, trials=trials, out=tmp_path / "a")
    path = tmp_path / "a" / "archive.jsonl"
    lines = path.read_bytes().split(b"\n")
    cut = b"\n".join(lines[: keep + 1]) + b"\n" + lines[keep + 1][: len(lines[keep + 1]) // 2]
    path.write_bytes(cut)
    _, recs, _ = read_archive(path)
    assert len(recs) == keep
    R.run_search(setup, name, seed=0, trials=trials, out=tmp_path / "a", resume=True)
    _, recs, _ = read_archive(path)
    assert [r["label"] for r in recs] == [str(t.point) for t in full.trials]


def test_resume_refuses_a_different_search(stores, tmp_path):
    setup = R.make_setup(stores["one"], replicates=4)
    R.run_search(setup, "random", seed=0, trials=3, out=tmp_path / "a")
    with pytest.raises(InputError, match="seed"):
        R.run_search(setup, "random", seed=1, trials=3, out=tmp_path / "a", resume=True)
    with pytest.raises(InputError, match="already holds"):
        R.run_search(setup, "random", seed=0, trials=3, out=tmp_path / "a")
    other = R.make_setup(stores["one"], replicates=8)
    with pytest.raises(InputError, match="replicates"):
        R.run_search(other, "random", seed=0, trials=3, out=tmp_path / "a", resume=True)


def test_archive_records_everything(stores, tmp_path):
    setup = R.make_setup(stores["one"], replicates=4)
    R.run_search(setup, "rules", seed=0, trials=5, out=tmp_path / "a")
    header, recs, _ = read_archive(tmp_path / "a")
    assert header["searcher"] == "rules" and header["budget"] == setup.space.budget
    assert header["space"]["size"] == setup.space.size() and len(header["train"]) == len(setup.split.train)
    for r in recs:
        for k in ("point", "label", "score", "stderr", "cost", "tokens", "wall_s", "source", "extra", "metrics", "state"):
            assert k in r
        assert r["extra"]["why"]


# ---------------------------------------------------------------------------------------------
# report and CLI


def test_report_figures():
    from search.trial import Trial

    def t(k, score, feasible=True):
        return Trial(k, Config.of(("m", k + 1)), feasible, score if feasible else None, 0.0, 1.0, 1.0, 0.0)

    trials = [t(0, 0.2), t(1, 0.9, feasible=False), t(2, 0.5), t(3, 0.5), t(4, 0.7)]
    bsf = report.best_so_far(trials)
    assert np.allclose(bsf, [0.2, 0.2, 0.5, 0.5, 0.7])
    assert report.best_trial(trials).number == 4
    assert report.trials_to_reach(trials, 0.5) == 3
    assert report.trials_to_reach(trials, 0.9) is None  # the infeasible 0.9 never counts
    stats = report.seed_stats([{"seed": 0, "best": {"train_score": 0.5}, "test": {"score": 0.4}, "trials_to_best": 3,
                                "trials_to_optimum": 3, "optimum": {"score": 0.5}},
                               {"seed": 1, "best": {"train_score": 0.4}, "test": {"score": 0.3}, "trials_to_best": 9,
                                "trials_to_optimum": None, "optimum": {"score": 0.5}}])
    assert stats["trials_to_optimum"] == {"reached": 1, "of": 2, "mean": 3.0, "median": 3.0}
    assert stats["train_score"]["mean"] == pytest.approx(0.45)


def _cli(argv, capsys):
    return run_main(search_main, argv, capsys)


def test_cli_bad_input_is_one_line_and_exit_2(stores, capsys, tmp_path):
    st = str(stores["one"].path)
    cases = [
        (["--replay", st, "--searcher", "nope"], "--searcher"),
        (["--replay", st, "--searcher", "bo", "--models", "huge"], "--models"),
        (["--replay", st, "--searcher", "bo", "--budget", "abc"], "--budget"),
        (["--replay", st, "--searcher", "bo", "--budget", "0"], "--budget"),
        (["--replay", str(tmp_path / "nope"), "--searcher", "bo"], "nope"),
        (["--replay", st, "--searcher", "random", "--sampler", "gp"], "--sampler"),
        (["--replay", st, "--searcher", "random", "--seeds", "x"], "--seeds"),
        (["compare", str(tmp_path / "none")], "none"),
    ]
    for argv, needle in cases:
        code, out, err = _cli(argv, capsys)
        lines = [x for x in err.splitlines() if x.strip() and not x.startswith("note:") and "%|" not in x]
        assert code == 2, (argv, err)
        assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], (argv, err)


def test_cli_run_report_compare(stores, capsys, tmp_path):
    st = str(stores["one"].path)
    outs = []
    for name in ("random", "rules"):
        out = tmp_path / name
        code, text, err = _cli(["--replay", st, "--searcher", name, "--trials", "8", "--replicates", "4",
                                "--out", str(out)], capsys)
        assert code == 0, err
        assert "SYNTHETIC" in err  # the store is synthetic and says so
        assert "best config" in text and "grid optimum" in text
        s = json.loads((out / "summary.json").read_text())
        assert s["trials"] == 8 and s["best"]["config"] and s["test"]["score"] is not None
        assert s["optimum"]["score"] >= s["best"]["train_score"] - 1e-12
        assert (out / "best_so_far.png").stat().st_size > 1000
        # the rule that picked it, the two uncertainties named apart
        assert s["selection"]["rule"] == DEFAULT_RULE and f"(rule {DEFAULT_RULE}: " in text
        t = s["test"]
        assert t["ci_lo"] <= t["score"] <= t["ci_hi"] and len(t["per_question"]) == t["questions"]
        assert "(replicate error); 95% question interval [" in text
        outs.append(out)
    code, text, err = _cli(["compare", *map(str, outs), "--out", str(tmp_path / "cmp.png"),
                            "--json", str(tmp_path / "cmp.json")], capsys)
    assert code == 0, err
    assert "random s0" in text and "rules s0" in text
    assert "paired over the same test questions" in text and "rules - random" in text
    cmp = json.loads((tmp_path / "cmp.json").read_text())
    assert len(cmp["searches"]) == 2 and cmp["differences"][0]["searcher"] == "rules"
    assert isinstance(cmp["differences"][0]["beyond_noise"], bool)
    assert (tmp_path / "cmp.png").stat().st_size > 1000
    code, text, err = _cli(["--replay", st, "--searcher", "rules", "--trials", "8", "--replicates", "4",
                            "--select", "lcb", "--out", str(tmp_path / "lcb")], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "lcb" / "summary.json").read_text())["selection"]["rule"] == "lcb"
    code, text, err = _cli(["--replay", st, "--searcher", "rules", "--select", "best", "--out", str(tmp_path / "x")],
                           capsys)
    assert code == 2 and "--select" in err
    # `search run` is the same command as the shortcut; --resume of a finished search adds nothing
    code, text, err = _cli(["run", "--replay", st, "--searcher", "rules", "--trials", "8", "--replicates", "4",
                            "--out", str(outs[1]), "--resume"], capsys)
    assert code == 0, err
    assert json.loads((outs[1] / "summary.json").read_text())["trials"] == 8


def test_cli_seeds_in_parallel_processes(stores, capsys, tmp_path):
    st = str(stores["one"].path)
    code, text, err = _cli(["--replay", st, "--searcher", "random", "--trials", "6", "--replicates", "4",
                            "--seeds", "0-2", "--workers", "2", "--out", str(tmp_path / "s")], capsys)
    assert code == 0, err
    data = json.loads((tmp_path / "s" / "seeds.json").read_text())
    assert [s["seed"] for s in data["summaries"]] == [0, 1, 2]
    assert data["stats"]["trials_to_optimum"]["of"] == 3
    assert "trials to optimum" in text
    for s in range(3):
        assert (tmp_path / "s" / f"seed-{s}" / "archive.jsonl").is_file()


def test_parse_seeds():
    assert parse_seeds("0-3") == [0, 1, 2, 3]
    assert parse_seeds("0,4,7-8") == [0, 4, 7, 8]
    for bad in ("", "a", "3-1", "1,1"):
        with pytest.raises(ConfigError):
            parse_seeds(bad)


# ---------------------------------------------------------------------------------------------
# the shipped real store


@pytest.mark.skipif(not (TRACES / "aime24").is_dir(), reason="traces/aime24 not present")
def test_aime24_grid_optimum_and_50_trials():
    st = replay.open(TRACES / "aime24")
    setup = R.make_setup(st, ConfigSpaceSettings(budget=100.0))
    opt = R.known_optimum(setup)
    rs = brute_force(setup)
    assert opt["score"] == pytest.approx(max(r.score for r in rs if r.feasible), abs=1e-12)
    for name in NON_LLM:
        run = R.run_search(setup, name, seed=0, trials=50)
        b = report.best_trial(run.trials)
        assert b.feasible and b.score <= opt["score"] + 1e-12
        assert len(run.trials) == 50 or run.stop == "searcher finished"


def test_scan_question_sums_equal_one_scan_per_question(stores):
    """The compiled per-question sums (replay.scan_stats) against the oracle: scan_space run on
    one question at a time (common random numbers: the same per-question means)."""
    from replay.engine import scan_space
    from replay.scan_stats import question_sums

    st = stores["two"]
    setup = R.make_setup(st, replicates=5)
    q = setup.objective.questions
    scan = scan_space(st, setup.space.choices(), questions=q, replicates=5, seed=3)
    per_q = np.stack([scan_space(st, scan.choices, questions=[int(x)], replicates=5, seed=3).score for x in q])
    ref = per_q[:, 7, 2]
    sums = question_sums(st, scan, questions=q, replicates=5, seed=3, reference=ref)
    assert np.allclose(sums.s1, per_q.sum(axis=0), atol=1e-12)
    assert np.allclose(sums.s2, (per_q ** 2).sum(axis=0), atol=1e-12)
    assert np.allclose(sums.d1, (per_q - ref[:, None, None]).sum(axis=0), atol=1e-12)
    assert np.allclose(sums.sd, per_q.std(axis=0, ddof=1), atol=1e-9)
    assert np.allclose(sums.sd_diff, (per_q - ref[:, None, None]).std(axis=0, ddof=1), atol=1e-9)
    assert np.allclose(sums.s1 / len(q), scan.score, atol=1e-12)  # the same means as the scan's


def test_max_fallback_makes_configurations_above_it_infeasible(stores, tmp_path):
    """Every trial records its fallback rate; with --max-fallback F, a configuration whose draws
    fell back more often than F is infeasible (its reason says so), never picked, and the
    exhaustive optimum (a scan, then replays in score order) respects the limit too."""
    st = stores["two"]
    free = R.make_setup(st, replicates=4)
    run = R.run_search(free, "grid", trials=None)
    rates = [t.fallback_rate for t in run.trials]
    assert all(r is not None and 0.0 <= r <= 1.0 for r in rates) and max(rates) > 0.05 and min(rates) < 0.05
    limited = R.make_setup(st, ConfigSpaceSettings(max_fallback=0.05), replicates=4)
    lim = R.run_search(limited, "grid", trials=None)
    assert len(lim.trials) == len(run.trials)
    for a, b in zip(run.trials, lim.trials):
        assert a.point == b.point and a.fallback_rate == b.fallback_rate
        assert b.feasible == (a.fallback_rate <= 0.05)
        if not b.feasible:
            assert b.score is None and "fallback" in b.why_infeasible and "--max-fallback" in b.why_infeasible
    best = report.best_trial(lim.trials)
    assert best.fallback_rate <= 0.05
    opt = R.known_optimum(limited)
    assert opt["score"] == pytest.approx(best.score) and opt["max_fallback"] == 0.05
    scanned = R.run_search(limited, "grid", trials=None, options={"max_configs": 5})
    assert report.best_trial(scanned.trials).score == pytest.approx(best.score)
    s = R.report_search(limited, lim, out=tmp_path / "fb", plot=False)
    assert s["max_fallback"] == 0.05 and s["infeasible_fallback"] == sum(1 for t in lim.trials if not t.feasible) > 0
    assert s["best"]["fallback_rate"] <= 0.05 and s["test"]["fallback_rate"] is not None
    text = report.summary_table(s, limited.space)
    assert "--max-fallback 5.0%" in text and f"(0 over budget, {s['infeasible_fallback']} over the fallback limit)" in text
    with pytest.raises(ConfigError, match="--max-fallback"):
        R.make_setup(st, ConfigSpaceSettings(max_fallback=1.5))


def test_search_help_shows_how_to_start_a_search(capsys):
    """Issue 20: `search --help` listed only the subcommands; --replay and --searcher were in `search run --help`."""
    code, out, _ = run_main(search_main, ["--help"], capsys)
    assert code == 0 and "search run --help" in out
    for flag in ("--replay STORE", "--searcher", "--trials", "--seeds", "--budget", "--out"):
        assert f"\n  {flag}" in out, flag


def test_a_small_store_without_a_split_holds_out_half_its_questions(tmp_path):
    """No split and fewer than 100 questions: the fixed test set is the second half of the seeded
    shuffle (it was every question after the first 50, capped to leave one: a test set of 1)."""
    root = make_random_store(tmp_path / "s", RandomStoreSpec(seed=3, n_questions=12))
    man = json.loads((root / "manifest.json").read_text())
    man.pop("split", None)
    man.pop("checksums", None)  # an edited store is no longer sealed
    (root / "manifest.json").write_text(json.dumps(man))
    st = replay.open(str(root))
    assert not st.manifest.split
    sp = R.split_questions(st)
    assert len(sp.train) == 6 and len(sp.test) == 6 and not set(sp.train) & set(sp.test)
    sp4 = R.split_questions(st, train=4)
    assert len(sp4.train) == 4 and np.array_equal(sp4.test, sp.test) and set(sp4.train) <= set(sp.train)
