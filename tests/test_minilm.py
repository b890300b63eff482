"""The NumPy all-MiniLM-L6-v2 encoder against embeddings made by sentence-transformers on PyTorch.

`tests/fixtures/chatdev/minilm_reference.npz` holds texts and their embeddings as
sentence-transformers (on PyTorch 2.13.0, CPU) computes them from the same weights
(`benchmarks/minilm_check.py --write-reference`); the encoder here must give the same vectors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from collect.tasks import minilm

REF = Path(__file__).parent / "fixtures" / "chatdev" / "minilm_reference.npz"


@pytest.fixture(scope="module")
def model():
    if not minilm.available():
        pytest.skip(f"needs the all-MiniLM-L6-v2 weights: {minilm.INSTALL_HINT}")
    return minilm.MiniLM()


def test_numpy_encoder_matches_sentence_transformers(model):
    ref = np.load(REF)
    texts = [str(t) for t in ref["texts"]]
    want = ref["embeddings"]
    got = model.encode(texts, batch_size=4)  # batches mix lengths: padding must not leak into the result
    assert got.shape == want.shape == (len(texts), minilm.DIM)
    assert np.abs(got - want).max() < 1e-4
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    # the score is a cosine between a requirement and a text: the same to 1e-5
    assert np.abs(got[3:] @ got[:3].T - want[3:] @ want[:3].T).max() < 1e-5
    # one at a time gives what a padded batch gives
    assert np.abs(model.encode([texts[-1]]) - got[-1:]).max() < 1e-5
    assert model.encode([]).shape == (0, minilm.DIM)


def test_long_texts_are_cut_at_256_word_pieces(model):
    words = " ".join(f"word{i}" for i in range(400))
    a, b = model.encode([words, words + " and a different tail that comes after the cut"])
    assert np.abs(a - b).max() < 1e-6  # both cut before the tail
