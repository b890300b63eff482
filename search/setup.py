"""The setup of a search: the store, the train/test split, the objective, the space.

    setup = make_setup(replay.open("traces/aime24"), ConfigSpaceSettings(budget=100.0))

The objective a searcher sees is fixed by the setup: the training questions, `replicates`
draws per question and the replay seed (common random numbers), so every searcher and every
searcher seed optimise the very same function, and the grid's optimum of it is a fixed target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from replay.errors import ConfigError
from replay.store import Store

from .settings import ConfigSpaceSettings, SpaceSettings
from .spaces import space_class
from .spaces.base import Space
from .trial import Objective

DEFAULT_TRAIN = 50
SPLIT_SEED = 0  # the seeded split does not move with the searcher's seed


@dataclass(frozen=True)
class Split:
    train: np.ndarray
    test: np.ndarray
    source: str


def split_questions(store: Store, train: int | None = None) -> Split:
    """The store's own train/test split when it has one and `train` is not given; otherwise a
    seeded shuffle (seed 0) whose first `train` (default 50) questions train, the rest test."""
    n = len(store.question_ids)
    if train is None:
        if "train" in store.manifest.split:
            tr = store.question_indices("train")
            te = store.question_indices("test") if "test" in store.manifest.split else np.setdiff1d(np.arange(n), tr)
            return Split(tr, te, "the store's split (manifest)")
        col = store.questions["split"].to_numpy()
        if (col == "train").any():
            tr = np.flatnonzero(col == "train")
            te = np.flatnonzero(col == "test") if (col == "test").any() else np.flatnonzero(col != "train")
            return Split(tr.astype(np.int64), te.astype(np.int64), "the store's split (questions.split)")
        train = DEFAULT_TRAIN
        if train >= n:
            raise ConfigError("--train", f"the store has {n} questions and no split; the default of {DEFAULT_TRAIN} "
                              f"training questions leaves none for test: pass --train N with N < {n}")
    if train < 1:
        raise ConfigError("--train", f"must be at least 1, got {train}")
    if train >= n:
        raise ConfigError("--train", f"{train} training questions leave none of the store's {n} for test")
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    return Split(np.sort(perm[:train]).astype(np.int64), np.sort(perm[train:]).astype(np.int64),
                 f"seeded shuffle (seed {SPLIT_SEED}): {train} train, {n - train} test")


@dataclass(frozen=True)
class SearchSetup:
    store: Store
    space: Space
    split: Split
    replicates: int
    replay_seed: int
    test_replicates: int
    space_settings: SpaceSettings  # as given; `space` holds what was resolved (the default budget)

    @property
    def objective(self) -> Objective:
        """What every trial is scored on: the training questions."""
        return Objective(self.split.train, self.replicates, self.replay_seed)

    @property
    def test_objective(self) -> Objective:
        """What the final point is scored on: the held-out questions, more replicates."""
        return Objective(self.split.test, self.test_replicates, self.replay_seed)

    def objective_header(self) -> dict[str, Any]:
        """Everything that fixes the objective; --resume insists these match."""
        ids = self.store.question_ids
        return {
            "space_kind": self.space.kind,
            "store": str(self.store.path),
            "store_name": self.store.name,
            "synthetic": self.store.synthetic,
            "space": self.space.to_json(),
            "budget": self.space.budget,
            "cost_unit": self.space.cost_unit,
            "train": [ids[i] for i in self.split.train],
            "test": [ids[i] for i in self.split.test],
            "split": self.split.source,
            "replicates": self.replicates,
            "replay_seed": self.replay_seed,
        }


def make_setup(store: Store, space: SpaceSettings | None = None, *, train: int | None = None, replicates: int = 16,
               replay_seed: int = 0, test_replicates: int = 256) -> SearchSetup:
    """The split, the objective and the space of a search on `store`.

    Parameters:
        store: an open store (`replay.open`).
        space: `ConfigSpaceSettings` (the default: every configuration, the default budget) or
            `ControllerSpaceSettings`.
        train: training questions (default: the store's split, else 50).
        replicates: replay draws per training question.
        replay_seed: the seed of the replay's draws (common random numbers).
        test_replicates: replay draws per test question for the final score.
    """
    space = ConfigSpaceSettings() if space is None else space
    space.check()
    if replicates < 1:
        raise ConfigError("--replicates", f"must be at least 1, got {replicates}")
    if test_replicates < 1:
        raise ConfigError("--test-replicates", f"must be at least 1, got {test_replicates}")
    from replay.clitools import check_replicates

    # bounded by the memory a replay of every question needs, before the first replay (the budget)
    check_replicates("--replicates", replicates, questions=len(store.question_ids))
    check_replicates("--test-replicates", test_replicates, questions=len(store.question_ids))
    split = split_questions(store, train)
    objective = Objective(split.train, replicates, replay_seed)
    built = space_class(space.kind).from_settings(store, space, objective)
    return SearchSetup(store=store, space=built, split=split, replicates=replicates, replay_seed=replay_seed,
                       test_replicates=test_replicates, space_settings=space)
