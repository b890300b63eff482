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
SPLIT_SEED = 0  # the training draw does not move with the searcher's seed (only with split_seed)


@dataclass(frozen=True)
class Split:
    train: np.ndarray
    test: np.ndarray
    source: str
    pool: int = 0  # questions the training sets are drawn from (everything outside the fixed test set)
    overrides: bool = False  # --train asked for more than the pool: the store's split was not kept


def split_questions(store: Store, train: int | None = None, *, seed: int = SPLIT_SEED) -> Split:
    """AgentTTS's protocol: one fixed test set, training sets drawn from the rest.

    The test set: the store's test questions (its manifest split, else its questions' `split`
    column); a store whose split names only training questions tests on the others; a store
    without a split tests on the questions after the first 50 of a fixed shuffle (seed 0), or
    after the first half where that leaves more for test.
    The pool: every other question. Without `train`, the store's training split (no split: the
    pool). With `train` N: the first N of a shuffle of the pool by `seed`, so training sets of
    several sizes are nested and the test set is the same for every size. N larger than the
    pool overrides the split (a seeded shuffle of every question: N train, the rest test), and
    the split's `source` says so.
    """
    n = len(store.question_ids)
    own_train, own_test, where = _own_split(store)
    if own_train is not None:
        test = own_test if own_test is not None else np.setdiff1d(np.arange(n), own_train)
        pool = np.setdiff1d(np.arange(n), test)
        what = f"the store's split ({where}): {len(own_train)} train, {len(test)} test"
        if train is None:
            return Split(own_train, test, what, len(pool))
    else:
        if n < 2:
            raise ConfigError("--train", f"the store has {n} question and no split: at least 2 are needed (training and test)")
        perm = np.random.default_rng(SPLIT_SEED).permutation(n)
        # the first 50 of the shuffle (at most half the questions: a store of 30 tests on 15, not on 1)
        cut = min(DEFAULT_TRAIN, n // 2)
        test, pool = np.sort(perm[cut:]).astype(np.int64), np.sort(perm[:cut]).astype(np.int64)
        what = f"seeded shuffle (seed {SPLIT_SEED}): {len(pool)} train, {len(test)} test"
        if train is None:
            return Split(pool, test, what, len(pool))
    if train < 1:
        raise ConfigError("--train", f"must be at least 1, got {train}")
    if train <= len(pool):
        tr = np.sort(np.random.default_rng(seed).permutation(pool)[:train]).astype(np.int64)
        return Split(tr, test, f"{train} of the {len(pool)} questions outside the fixed test set (nested draws, "
                     f"seed {seed}); test: {len(test)} questions, the same for every --train [{what}]", len(pool))
    if train >= n:
        raise ConfigError("--train", f"{train} training questions leave none of the store's {n} for test")
    perm = np.random.default_rng(seed).permutation(n)
    return Split(np.sort(perm[:train]).astype(np.int64), np.sort(perm[train:]).astype(np.int64),
                 f"--train {train} overrides {what} (only {len(pool)} questions outside its test set): seeded "
                 f"shuffle (seed {seed}), {train} train, {n - train} test", len(pool), overrides=True)


def _own_split(store: Store) -> tuple[np.ndarray | None, np.ndarray | None, str]:
    """The store's training and test questions (indices), where it declares them."""
    if "train" in store.manifest.split:
        te = store.question_indices("test") if "test" in store.manifest.split else None
        return store.question_indices("train"), te, "manifest"
    col = store.questions["split"].to_numpy()
    if (col == "train").any():
        te = np.flatnonzero(col == "test").astype(np.int64) if (col == "test").any() else None
        return np.flatnonzero(col == "train").astype(np.int64), te, "questions.split"
    return None, None, ""


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
               replay_seed: int = 0, test_replicates: int = 256, split_seed: int = SPLIT_SEED) -> SearchSetup:
    """The split, the objective and the space of a search on `store`.

    Parameters:
        store: an open store (`replay.open`).
        space: `ConfigSpaceSettings` (the default: every configuration, the default budget) or
            `ControllerSpaceSettings`.
        train: training questions (default: the store's split, else 50), drawn from the
            questions outside the fixed test set (`split_questions`).
        replicates: replay draws per training question.
        replay_seed: the seed of the replay's draws (common random numbers).
        test_replicates: replay draws per test question for the final score.
        split_seed: the seed of the training draw (`split_questions`).
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
    split = split_questions(store, train, seed=split_seed)
    objective = Objective(split.train, replicates, replay_seed)
    built = space_class(space.kind).from_settings(store, space, objective)
    return SearchSetup(store=store, space=built, split=split, replicates=replicates, replay_seed=replay_seed,
                       test_replicates=test_replicates, space_settings=space)
