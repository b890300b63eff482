"""The space protocol is enough: a new kind of space, whose points are not fixed-length vectors,
gets random, grid, bo and agenttts with no change to them, the runner, the archive or reports.

The toy space below stands for the collaboration graphs to come: a point is a chain of 1 to 3
nodes, each with a size in {1, 2, 4} (a tuple of variable length). Its score is a SYNTHETIC
function of the chain (no store is replayed: the store only lends the runner its questions and
name); its cost is the total size, known exactly before a trial (the estimate) and measured
alike. Everything a searcher needs comes from the protocol.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
import pytest

import replay
from search.archive import read_archive
from search.llm.answer import AnswerProblem
from search.report import compare
from search.runner import make_setup, report_search, run_search
from search.spaces.base import AgentBrief, Dim, Space
from search.trial import Evaluation, Objective, best_trial

from conftest import TRACES
from llm_server import ScriptedLLMServer

SIZES = (1, 2, 4)


def synthetic_score(chain: tuple[int, ...]) -> float:
    """SYNTHETIC: depth helps up to two nodes, a wide first node helps, cost is not free."""
    return round(0.3 * min(len(chain), 2) + 0.1 * math.log2(chain[0]) + 0.05 * sum(math.log2(s) for s in chain[1:]), 12)


@dataclass(frozen=True)
class ChainSpace(Space):
    kind: ClassVar[str] = "toy-chain"
    cost_unit: ClassVar[str] = "units"
    supports: ClassVar[frozenset[str]] = frozenset({"grid", "parametrisation"})
    answer_problem_kinds: ClassVar[tuple[str, ...]] = ("bad_size",)
    budget: float = 6.0

    @classmethod
    def from_settings(cls, store, settings, objective):  # not built from settings in this test
        return cls()

    def points(self):
        return [c for n in (1, 2, 3) for c in itertools.product(SIZES, repeat=n)]

    def contains(self, point):
        return isinstance(point, tuple) and 1 <= len(point) <= 3 and all(s in SIZES for s in point)

    def encode(self, point):
        return list(point)

    def decode(self, value):
        return tuple(int(x) for x in value)

    def label(self, point):
        return "-".join(map(str, point))

    def size(self):
        return len(self.points())

    def to_json(self):
        return {"sizes": list(SIZES), "max_nodes": 3, "budget": self.budget}

    def estimate_cost(self, point):
        return float(sum(point))

    def sample(self, rng):
        n = int(rng.integers(1, 4))
        return tuple(int(SIZES[int(rng.integers(len(SIZES)))]) for _ in range(n))

    def neighbours(self, point):
        if len(point) < 3:
            yield point + (1,)
        if len(point) > 1:
            yield point[:-1]
        for i, s in enumerate(point):
            for t in SIZES:
                if t != s:
                    yield point[:i] + (t,) + point[i + 1:]

    def evaluate(self, points, objective: Objective, *, enforce_budget=True):
        out = []
        for p in points:
            cost = float(sum(p))
            ok = not enforce_budget or cost <= self.budget
            out.append(Evaluation(feasible=ok, score=synthetic_score(p) if ok else None, stderr=0.0 if ok else None,
                                  cost=cost, tokens=100.0 * cost, metrics={"nodes": len(p)}))
        return out

    def grid(self, *, cap, max_points, prune=True):
        return _AllAtOnce(self.points())

    def parametrisation(self, *, within_budget=False):
        return _ChainParams()

    def describe(self):
        return f"A chain of 1 to 3 nodes, each of size 1, 2 or 4; budget {self.budget:g} (the total size)."

    def title(self):
        return "toy chains"

    def point_columns(self):
        return ["chain"]

    def point_cells(self, point):
        return [self.label(point)]

    def answer_shape(self):
        return '{"nodes": [<size>, ...]}'

    def answer_rule(self):
        return "Every trial lists 1 to 3 node sizes."

    def answer_example(self):
        return {"nodes": [1, 2]}

    def point_from_answer(self, value, where):
        if not isinstance(value, dict) or set(value) != {"nodes"} or not isinstance(value["nodes"], list) \
                or not all(isinstance(x, int) and not isinstance(x, bool) for x in value["nodes"]):
            raise AnswerProblem("schema_errors", f"{where}: expected {{\"nodes\": [<integer>, ...]}}")
        return tuple(value["nodes"])

    def answer_problems(self, point, where):
        if self.contains(point):
            return []
        return [AnswerProblem("bad_size", f"{where}: {list(point)} is not 1 to 3 sizes among {list(SIZES)}")]

    def agent_brief(self):
        return AgentBrief(role="designs chains of nodes. The goal: the highest score within the budget.",
                          guideline_hint="about the chain (depth, sizes)")


class _AllAtOnce:
    def __init__(self, points):
        self.points, self.done = points, False

    def next_batch(self, results):
        if self.done:
            return []
        self.done = True
        return list(self.points)

    def advance(self, results):
        pass

    def level_source(self):
        return "grid"

    def state(self):
        return {"grid_size": len(self.points)}


class _ChainParams:
    dims = (Dim("n", "int", low=1, high=3),) + tuple(Dim(f"s{i}", "categorical", choices=SIZES) for i in range(3))

    def point(self, values):
        return tuple(int(values[f"s{i}"]) for i in range(int(values["n"])))

    def values(self, point):
        return {"n": len(point), **{f"s{i}": (point[i] if i < len(point) else 1) for i in range(3)}}


@pytest.fixture(scope="module")
def setup():
    base = make_setup(replay.open(TRACES / "aime24"), replicates=2)
    return replace(base, space=ChainSpace())


def best_feasible():
    return max(synthetic_score(c) for c in ChainSpace().points() if sum(c) <= 6.0)


@pytest.mark.parametrize("searcher", ["random", "grid", "bo"])
def test_the_non_llm_searchers_run_unchanged_on_a_new_space(setup, tmp_path, searcher):
    trials = None if searcher == "grid" else 12
    run = run_search(setup, searcher, seed=0, trials=trials, out=tmp_path / searcher)
    sp = setup.space
    assert all(sp.contains(t.point) for t in run.trials)
    assert all(t.feasible == (t.cost <= sp.budget) and (t.score is None) == (not t.feasible) for t in run.trials)
    if searcher == "grid":
        assert len(run.trials) == sp.size() and run.stop == "searcher finished"
    else:
        assert len(run.trials) == 12
    if searcher == "random":  # by estimate: nothing over budget is even proposed
        assert all(t.feasible for t in run.trials)
    summary = report_search(setup, run, out=tmp_path / searcher)
    if searcher == "grid":  # the grid walked the whole space: its best is the optimum
        assert summary["best"]["train_score"] == pytest.approx(best_feasible())
        assert summary["optimum"]["score"] == summary["best"]["train_score"]
    header, records, _ = read_archive(tmp_path / searcher)
    assert header["space_kind"] == "toy-chain" and records[0]["point"] == list(run.trials[0].point)
    assert records[0]["metrics"]["nodes"] == len(run.trials[0].point)
    # resume decodes the points back into tuples and carries on
    more = run_search(setup, searcher, seed=0, trials=None if trials is None else 14, out=tmp_path / searcher,
                      resume=True)
    assert isinstance(more.trials[0].point, tuple)
    if searcher != "grid":
        assert len(more.trials) == 14 and [t.point for t in more.trials[:12]] == [t.point for t in run.trials]
    text, rows, _ = compare([tmp_path / searcher])
    assert rows[0]["best config"] == best_trial(more.trials).label and rows[0]["trials"] == len(more.trials)


def test_agenttts_runs_unchanged_on_a_new_space(setup, tmp_path):
    with ScriptedLLMServer() as srv:
        srv.push(json.dumps({"guidelines": ["two nodes"], "trials": [{"nodes": [4, 2]}, {"nodes": [9]}]}),
                 json.dumps({"guidelines": ["two nodes, wide first"], "trials": [{"nodes": [4, 2]}, {"nodes": [2, 2]}]}),
                 json.dumps({"guidelines": ["done"], "trials": [{"nodes": [4, 2]}, {"nodes": [4, 1]}, {"nodes": [1, 1, 1]}]}))
        run = run_search(setup, "agenttts", trials=4, out=tmp_path / "a",
                         options={"llm_base_url": srv.base_url, "llm_model": "m", "trials_per_round": 2})
        first = "\n".join(m["content"] for m in srv.requests[0]["messages"])
        retry = srv.requests[1]["messages"][-1]["content"]
    assert "designs chains of nodes" in first and '{"nodes": [<size>, ...]}' in first
    assert "trial 2: [9] is not 1 to 3 sizes" in retry
    assert [t.point for t in run.trials] == [(4, 2), (2, 2), (4, 1), (1, 1, 1)]
    c = run.states[-1]["counters"]
    assert c["bad_size"] == 1 and c["duplicates"] == 1 and c["retries"] == 1 and c["llm_calls"] == 3
    assert run.states[-1]["guidelines"] == ["done"]


def test_a_searcher_that_needs_what_the_space_lacks_is_refused(setup):
    from replay.errors import ConfigError
    from search.runner import build_searcher

    with pytest.raises(ConfigError, match="'rules' does not apply to --space toy-chain: it needs a model and a "
                                         "sample count per stage") as e:
        build_searcher("rules", setup.space)
    assert "searchers for this space: random, grid, bo, agenttts, agenthpo" in str(e.value)
