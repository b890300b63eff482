"""Import the AutoTTS replay-environment format into a store.

The AutoTTS release (repository zhengkid/AutoTTS, `efficient_reasoning_controller/
test_environment/<model>/<benchmark>.json`, shipped gzipped as `.json.gz` too) keeps, per
model, a JSON list of questions, each
with 128 sampled reasoning chains `[probes, total_tokens, final_answer]`, the gold answer and
the probe interval. We keep every chain: one stage (`solve`, majority vote, exact match),
one model per file, probes as step-level traces.
"""

from __future__ import annotations

import datetime as _dt
import gzip
import json
import zlib
import random
import re
from pathlib import Path

import polars as pl

from replay import schema as S
from replay.arrays import MAX_TOKENS
from replay.errors import InputError
from replay.store import write_store

# Nominal parameter counts, read off the model names (FLOPs = 2 x params x tokens).
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([BbMm])\b")


def params_from_name(name: str) -> float:
    m = _SIZE.search(name.replace("-", " "))
    if not m:
        raise InputError(name, "cannot read a parameter count from the model name (expected e.g. 'Qwen3-8B')")
    return float(m.group(1)) * (1e9 if m.group(2).lower() == "b" else 1e6)


SUFFIXES = (".json", ".json.gz")


def _model_name(path: Path) -> str:
    """The model a release file is for: its name without `.json` or `.json.gz`."""
    return path.name[: -len(".json.gz")] if path.name.endswith(".json.gz") else path.name[: -len(".json")]


def _load(path: Path) -> list:
    try:
        raw = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
        data = json.loads(raw.decode())
    except (OSError, EOFError, zlib.error, json.JSONDecodeError, UnicodeDecodeError) as e:
        what = "gzipped JSON" if path.name.endswith(".gz") else "JSON"
        raise InputError(path, f"cannot read {what} ({' '.join(str(e).split())})") from None
    except RecursionError:
        raise InputError(path, "cannot read JSON (nested too deeply)") from None
    if not isinstance(data, list) or not data:
        raise InputError(path, "expected a non-empty JSON list of questions")
    for i, q in enumerate(data):
        for key in ("question", "gold_answer", "probe_freq", "each_branch"):
            if not isinstance(q, dict) or key not in q:
                raise InputError(path, f"question {i} has no {key!r}")
        pf = q["probe_freq"]
        if isinstance(pf, bool) or not isinstance(pf, int) or pf <= 0:
            raise InputError(path, f"question {i}: probe_freq must be a positive integer, got {str(pf)[:40]}")
        if not isinstance(q["each_branch"], list):
            raise InputError(path, f"question {i}: each_branch must be a list")
        for j, br in enumerate(q["each_branch"]):
            if not (isinstance(br, list) and len(br) == 3 and isinstance(br[0], list) and isinstance(br[1], int)
                    and not isinstance(br[1], bool)):
                raise InputError(path, f"question {i} branch {j} is not [probes, total_tokens, final_answer]")
            if not 0 <= br[1] <= MAX_TOKENS:
                raise InputError(path, f"question {i} branch {j}: total_tokens {str(br[1])[:40]} is not a token count "
                                 f"(0 to {MAX_TOKENS:,})")
    return data


def import_autotts(src: str | Path, out: str | Path, *, name: str | None = None, benchmark: str = "aime24",
                   train_fraction: float = 0.5, split_seed: int = 0, models: list[str] | None = None) -> Path:
    """Import an AutoTTS replay environment into a store; return its path.

    Args:
        src: a folder of AutoTTS `<model>.json` or `<model>.json.gz` files (one per model, the
            same questions).
        out: the store folder to write (replaced atomically).
        name: the store's name (default: the folder name).
        benchmark: the prefix of the question ids.
        train_fraction: share of questions in the train split (seeded shuffle).
        split_seed: the seed of that shuffle.
        models: import only these models (file names without .json / .json.gz); default all.

    Raises:
        InputError: a missing folder or file, a file not in the AutoTTS format (or a corrupt
            gzip), one model in both a .json and a .json.gz file, files that disagree on the
            questions or the probe interval.
    """
    src = Path(src)
    if not src.is_dir():
        raise InputError(src, "not a directory of AutoTTS <model>.json files")
    files = sorted(f for f in src.iterdir() if f.is_file() and f.name.endswith(SUFFIXES))
    if models:
        files = [f for f in files if _model_name(f) in models]
    if not files:
        raise InputError(src, "no <model>.json or <model>.json.gz files found")
    seen: dict[str, Path] = {}
    for f in files:
        if _model_name(f) in seen:
            raise InputError(f, f"model {_model_name(f)!r} is also in {seen[_model_name(f)].name}: keep one of the two")
        seen[_model_name(f)] = f
    per_model = {_model_name(f): _load(f) for f in files}
    first = next(iter(per_model.values()))
    n_q = len(first)
    golds = [str(q["gold_answer"]) for q in first]
    texts = [q["question"] for q in first]
    probe = {int(q["probe_freq"]) for data in per_model.values() for q in data}
    if len(probe) != 1:
        raise InputError(src, f"files disagree on probe_freq: {sorted(probe)}")
    for mname, data in per_model.items():
        if len(data) != n_q or [str(q["gold_answer"]) for q in data] != golds or [q["question"] for q in data] != texts:
            raise InputError(seen[mname], "questions differ from the other files (order, text or gold)")
    qids = [f"{benchmark}-{i:03d}" for i in range(n_q)]
    rng = random.Random(split_seed)
    order = list(range(n_q))
    rng.shuffle(order)
    n_train = int(round(train_fraction * n_q))
    train = sorted(order[:n_train])
    split = ["train" if i in set(train) else "test" for i in range(n_q)]

    rows: dict[str, list] = {k: [] for k in ("question_id", "model", "sample_index", "answer", "score",
                                              "completion_tokens", "probes")}
    for mname, data in per_model.items():
        for qi, q in enumerate(data):
            for j, (probes, total, final) in enumerate(q["each_branch"]):
                rows["question_id"].append(qids[qi])
                rows["model"].append(mname)
                rows["sample_index"].append(j)
                rows["answer"].append(str(final))
                rows["score"].append(1.0 if str(final) == golds[qi] else 0.0)
                rows["completion_tokens"].append(int(total))
                rows["probes"].append([str(p) for p in probes])
    samples = pl.DataFrame(rows).with_columns(
        stage=pl.lit("solve"), context=pl.lit(S.ROOT_CONTEXT), prompt_tokens=pl.lit(0, dtype=pl.Int64)
    )
    questions = pl.DataFrame({
        "question_id": qids,
        "split": split,
        "gold": golds,
        "metadata": [json.dumps({"problem": t, "source_index": i}) for i, t in enumerate(texts)],
    })
    model_names = sorted(per_model, key=params_from_name)
    import numba, numpy, polars, pyarrow  # noqa: E401 - versions for the provenance

    manifest = S.Manifest(
        name=name or Path(out).name,
        synthetic=False,
        stages=(S.Stage(name="solve", aggregation="majority_vote", scorer="exact_match",
                        description="solve the problem; the chain's final answer, compared as an exact string"),),
        models=tuple(S.Model(name=m, params=params_from_name(m), description="nominal size from the name")
                     for m in model_names),
        probe_interval=probe.pop(),
        split={"train": tuple(qids[i] for i in train), "test": tuple(q for i, q in enumerate(qids) if i not in set(train))},
        provenance={
            "source": "AutoTTS replay environment (github.com/zhengkid/AutoTTS, commit 3cd98d12c7cb, "
                      f"efficient_reasoning_controller/test_environment/<model>/{benchmark}.json), "
                      "released with the paper 'LLMs Improving LLMs: Agentic Discovery for Test-Time Scaling'",
            "collected_by": "the AutoTTS authors (real outputs of real models)",
            "models": model_names,
            "sampling": {"samples_per_question": len(first[0]["each_branch"]),
                         "temperature": "not stated in the release"},
            "prompt_tokens": "not recorded in the release: stored as 0, so costs count completion tokens only",
            "params": "nominal parameter counts read off the model names",
            "split": f"seeded shuffle (seed {split_seed}), {n_train} train / {n_q - n_train} test",
            "imported_from": [f.name for f in files],
            "date": _dt.date.today().isoformat(),
            "tools": {"tts-replay": "0.1.0", "polars": polars.__version__, "pyarrow": pyarrow.__version__,
                      "numpy": numpy.__version__, "numba": numba.__version__},
            "command": f"collect import autotts {src} --out {out}",
        },
    )
    return write_store(out, manifest, questions, samples)
