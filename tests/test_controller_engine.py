"""The fast Python controller engine (replay/controllers/base.py) against the engine as first
written (replay/controllers/reference.py): the same state after every action, the same errors,
the same results, for random action policies (valid and invalid actions, every action type,
Advance included) and for the built-ins on traces/aime24."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import replay
from replay.controllers import Setting, step_arrays
from replay.controllers.base import (Advance, Answer, Continue, Controller, ControllerError, Episode, Open, Probe,
                                     Prune, run_episode, run_episodes)
from replay.controllers.builtin import BUILTINS
from replay.controllers.reference import ReferenceEpisode, run_reference_episode, run_reference_episodes
from test_controllers import make_step_store

AIME = Path(__file__).resolve().parents[1] / "traces" / "aime24"


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    return [make_step_store(tmp_path_factory.mktemp(f"e{seed}") / "store", seed) for seed in range(3)]


def state(ep) -> tuple:
    return (ep.samples, ep.depth, ep.finished, ep.pruned, ep.final, ep.reading, ep.n_probes, ep.tokens, ep.n_opened,
            ep.n_left, ep.active(), ep.running(), [ep.tokens_of(i) for i in range(ep.n_opened)],
            ep.default_answer(), ep.answered, ep.done)


def random_action(rng: np.random.Generator, ep):
    """Mostly valid actions, some impossible ones, every type and argument form."""
    n = ep.n_opened
    k = rng.random()
    i = int(rng.integers(-1, n + 2)) if n else int(rng.integers(-1, 2))
    if rng.random() < 0.1:
        i = np.int64(i)  # NumPy integers are sample indices too
    steps = [1, 1, 1, 2, 5, None, 0, 1.5, np.int32(3)][int(rng.integers(9))]
    if k < 0.15:
        return Open()
    if k < 0.40:
        return Continue(i, steps)
    if k < 0.55:
        return Probe(i)
    if k < 0.60:
        return Prune(i)
    if k < 0.88:
        running = ep.running()
        pick = [int(x) for x in rng.permutation(running)[: int(rng.integers(0, len(running) + 1))]] if running else []
        if rng.random() < 0.15:
            pick.append(i)
        form = rng.random()
        return Advance(pick[0] if form < 0.2 and pick else pick, steps if rng.random() < 0.3 else 1)
    if k < 0.90:
        return "not an action"
    return Answer([None, None, int(rng.integers(-2, 4)), "a1", "nope", 1.5][int(rng.integers(6))])


@pytest.mark.parametrize("probe_cost", [0.0, 7.5])
def test_same_state_after_every_action_random_policies(stores, probe_cost):
    rng = np.random.default_rng(1)
    episodes = errors = 0
    for store in stores:
        for model in ("m0", "m1"):
            steps = step_arrays(store, model)
            for q in range(store.arrays.n_questions):
                for r in range(6):
                    fast, ref = Episode(steps, q, r, 3, probe_cost), ReferenceEpisode(steps, q, r, 3, probe_cost)
                    assert state(fast) == state(ref)
                    for _ in range(60):
                        act = random_action(rng, fast)
                        outcome = []
                        for ep in (fast, ref):
                            try:
                                ep.apply(act)
                                outcome.append(None)
                            except ControllerError as e:
                                outcome.append(e.problem)
                        assert outcome[0] == outcome[1], act
                        errors += outcome[0] is not None
                        assert state(fast) == state(ref), act
                        if fast.done:
                            assert fast.score() == ref.score() or (np.isnan(fast.score()) and np.isnan(ref.score()))
                            break
                    episodes += 1
    assert episodes > 100 and errors > 100  # the policy did exercise the error paths


class Greedy(Controller):
    """A decide()-style controller that reads the state a lot (running, active, tokens, text)."""

    name = "greedy-test"

    def reset(self, ep):
        self.rounds = 0

    def decide(self, ep):
        self.rounds += 1
        if ep.tokens > 3000 or self.rounds > 200:
            return Answer()
        run = ep.running()
        if len(run) < 2 and ep.n_left:
            return Open()
        if not run:
            return Answer()
        if self.rounds % 7 == 0 and len(run) > 1:
            readings = [ep.reading[i] for i in run]
            if readings[0] is not None and readings.count(readings[0]) == 1:
                return Prune(run[0])
        return Advance(run)


def test_run_episode_equals_reference_for_user_controllers(stores):
    for store in stores:
        steps = step_arrays(store, "m0")
        for q in range(store.arrays.n_questions):
            for r in range(4):
                a = run_episode(Greedy(), steps, q, r, 0, probe_cost=3.0)
                b = run_reference_episode(Greedy(), steps, q, r, 0, probe_cost=3.0)
                assert state(a) == state(b)


def test_errors_name_the_controller_question_and_replicate(stores):
    class Bad(Controller):
        name = "bad"

        def decide(self, ep):
            return Continue(5)

    steps = step_arrays(stores[0], "m0")
    for run in (run_episode, run_reference_episode):
        with pytest.raises(ControllerError) as e:
            run(Bad(), steps, 1, 2, 0)
        assert "'bad'" in str(e.value) and "question 1, replicate 2" in str(e.value)


def test_builtins_equal_the_reference_on_aime24():
    store = replay.open(AIME)
    steps = step_arrays(store, "Qwen3-1.7B")
    qidx = store.question_indices(None)[:8]
    for cls in BUILTINS.values():
        for beta in (0.0, 0.6, 1.0):
            ctrl = Setting.make(cls, beta=beta).instance()
            fast = run_episodes(ctrl, steps, qidx, replicates=3, seed=5, probe_cost=2.0)
            ref = run_reference_episodes(ctrl, steps, qidx, replicates=3, seed=5, probe_cost=2.0)
            for x, y in zip(fast, ref):
                assert np.array_equal(x, y), (cls.name, beta)
