"""The shipped real traces reproduce the AutoTTS authors' replay figures.

Reference figures: the README of the AutoTTS AIME24 release (the authors' own evaluator, 100
random orders; with many more orders the expected values differ by at most 0.7 points).
"""

from __future__ import annotations

import pytest

import replay
from conftest import TRACES

# model -> {N: accuracy in percent}, and SC@64 tokens per question
PUBLISHED = {
    "Qwen3-0.6B": ({1: 10.83, 8: 16.2, 64: 21.43}, 1_008_629),
    "Qwen3-8B": ({1: 75.57, 8: 81.2, 64: 80.37}, 910_813),
}


@pytest.fixture(scope="module")
def store():
    return replay.open(TRACES / "aime24")


def test_shape(store):
    assert not store.synthetic
    assert store.manifest.model_names == ("Qwen3-0.6B", "Qwen3-1.7B", "Qwen3-4B", "Qwen3-8B")
    assert len(store.question_ids) == 30 and store.manifest.probe_interval == 500
    assert store.arrays.s_answer.shape[0] == 4 * 30 * 128  # every sample kept
    assert store.arrays.probe_off is not None


@pytest.mark.parametrize("model", sorted(PUBLISHED))
def test_majority_vote_matches_published(store, model):
    accs, tokens64 = PUBLISHED[model]
    results = store.evaluate_batch([f"{model}:{n}" for n in accs], replicates=2000, seed=0)
    for (n, want), r in zip(accs.items(), results):
        assert abs(100 * r.score - want) <= 1.0, f"{model} SC@{n}: {100 * r.score:.2f} vs published {want}"
    assert abs(results[-1].tokens / tokens64 - 1) <= 0.02


def test_more_samples_can_hurt(store):
    r8, r64 = store.evaluate_batch(["Qwen3-8B:8", "Qwen3-8B:64"], replicates=2000, seed=0)
    assert r8.score > r64.score + 2 * max(r8.stderr, r64.stderr)
