"""Reading, validating and writing stores, and their dense in-memory form.

`open_store(path)` reads a store folder, validates it (every problem is one `StoreError`
line that names the file), and converts it once into dense NumPy arrays: answers interned
into integer ids, samples sorted into pools (question, stage, model, upstream context) with
CSR offsets. The kernels only ever see these arrays.

`write_store(path, manifest, ...)` writes atomically: everything goes to a temporary folder
beside the target, is read back and validated, and only then renamed into place, so an
existing store is never left half-written.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import schema as S
from .atomic import atomic_path
from .errors import StoreError


# --------------------------------------------------------------------------------------------
# Manifest


def _manifest_from_json(path: Path, raw: Any) -> S.Manifest:
    where = str(path)
    if not isinstance(raw, dict):
        raise StoreError(where, "the manifest must be a JSON object")
    if raw.get("format", S.FORMAT_NAME) != S.FORMAT_NAME:
        raise StoreError(where, f"format is {raw.get('format')!r}, expected {S.FORMAT_NAME!r}")
    version = raw.get("format_version")
    if version != S.FORMAT_VERSION:
        raise StoreError(where, f"format_version is {version!r}; this tool reads version {S.FORMAT_VERSION}")
    for key, typ in (("name", str), ("synthetic", bool), ("stages", list), ("models", list)):
        if key not in raw:
            raise StoreError(where, f"missing field {key!r}")
        if not isinstance(raw[key], typ):
            raise StoreError(where, f"field {key!r} must be a {typ.__name__}, got {type(raw[key]).__name__}")
    if not raw["stages"]:
        raise StoreError(where, "no stages")
    if not raw["models"]:
        raise StoreError(where, "no models")
    models = []
    for i, m in enumerate(raw["models"]):
        if not isinstance(m, dict) or not isinstance(m.get("name"), str):
            raise StoreError(where, f"models[{i}] needs a string 'name'")
        params = m.get("params")
        if not isinstance(params, (int, float)) or isinstance(params, bool) or not params > 0:
            raise StoreError(where, f"model {m['name']!r} needs a positive number 'params' (parameter count)")
        models.append(S.Model(name=m["name"], params=float(params), description=str(m.get("description", ""))))
    model_names = [m.name for m in models]
    if len(set(model_names)) != len(model_names):
        raise StoreError(where, "duplicate model names")
    stages = []
    for i, st in enumerate(raw["stages"]):
        if not isinstance(st, dict) or not isinstance(st.get("name"), str) or not st["name"]:
            raise StoreError(where, f"stages[{i}] needs a non-empty string 'name'")
        agg = st.get("aggregation", "majority_vote")
        if agg not in S.AGGREGATIONS:
            raise StoreError(where, f"stage {st['name']!r}: unknown aggregation {agg!r} (known: {', '.join(S.AGGREGATIONS)})")
        cand = tuple(st.get("models") or ())
        unknown = [m for m in cand if m not in model_names]
        if unknown:
            raise StoreError(where, f"stage {st['name']!r} names unknown model {unknown[0]!r}")
        stages.append(
            S.Stage(
                name=st["name"],
                aggregation=agg,
                scorer=str(st.get("scorer", "exact_match")),
                models=cand,
                description=str(st.get("description", "")),
            )
        )
    stage_names = [s.name for s in stages]
    if len(set(stage_names)) != len(stage_names):
        raise StoreError(where, "duplicate stage names")
    probe = raw.get("probe_interval")
    if probe is not None and (not isinstance(probe, int) or probe <= 0):
        raise StoreError(where, "probe_interval must be a positive integer or null")
    split = raw.get("split") or {}
    if not isinstance(split, dict) or any(not isinstance(v, list) for v in split.values()):
        raise StoreError(where, "split must map a split name to a list of question ids")
    return S.Manifest(
        name=raw["name"],
        stages=tuple(stages),
        models=tuple(models),
        synthetic=raw["synthetic"],
        provenance=dict(raw.get("provenance") or {}),
        probe_interval=probe,
        split={k: tuple(str(x) for x in v) for k, v in split.items()},
    )


def read_manifest(store: str | os.PathLike) -> S.Manifest:
    path = Path(store) / S.MANIFEST
    if not Path(store).is_dir():
        raise StoreError(store, "not a store folder (no such directory)")
    if not path.is_file():
        raise StoreError(path, "missing file: a store needs a manifest.json")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise StoreError(path, f"not valid JSON ({e})") from None
    return _manifest_from_json(path, raw)


# --------------------------------------------------------------------------------------------
# Tables


def _read_table(store: Path, name: str, required: bool = True) -> pl.DataFrame | None:
    path = store / name
    if not path.is_file():
        if required:
            raise StoreError(path, "missing file")
        return None
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise StoreError(path, f"cannot read Parquet (truncated or corrupt?): {e}") from None
    columns = S.TABLE_SCHEMAS[name]
    for col, (typ, req) in columns.items():
        if col not in table.column_names:
            if req:
                raise StoreError(path, f"missing column {col!r}")
            continue
        got = table.schema.field(col).type
        ok = got == typ or (pa.types.is_integer(typ) and pa.types.is_integer(got))
        ok = ok or (pa.types.is_string(typ) and pa.types.is_large_string(got))
        ok = ok or (pa.types.is_floating(typ) and (pa.types.is_floating(got) or pa.types.is_integer(got)))
        if pa.types.is_list(typ) and (pa.types.is_list(got) or pa.types.is_large_list(got)):
            inner = got.value_type
            ok = inner == typ.value_type or (pa.types.is_integer(typ.value_type) and pa.types.is_integer(inner))
            ok = ok or (pa.types.is_string(typ.value_type) and pa.types.is_large_string(inner))
        if not ok:
            raise StoreError(path, f"column {col!r} has type {got}, expected {typ}")
        if req and table.column(col).null_count:
            raise StoreError(path, f"column {col!r} has {table.column(col).null_count} null values")
    return pl.from_arrow(table.select([c for c in columns if c in table.column_names]))


def _write_parquet_atomic(df: pl.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.write_parquet(tmp, compression="zstd", compression_level=9, statistics=True)


def _coerce(df: pl.DataFrame | dict, name: str) -> pl.DataFrame:
    """Cast a user-provided table to the store's column types (raises on a missing column)."""
    if not isinstance(df, pl.DataFrame):
        df = pl.DataFrame(df)
    casts = {}
    for col, (typ, req) in S.TABLE_SCHEMAS[name].items():
        if col not in df.columns:
            if req:
                raise StoreError(name, f"missing column {col!r}")
            continue
        casts[col] = pl.from_arrow(pa.array([], type=typ)).dtype
    return df.select([pl.col(c).cast(t) for c, t in casts.items()])


def _publish_permissions(folder: Path) -> None:
    """mkdtemp/mkstemp make private files; a published store is readable like any other file."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)
    for f in folder.iterdir():
        os.chmod(f, 0o666 & ~umask)


def write_store(
    path: str | os.PathLike,
    manifest: S.Manifest,
    questions: pl.DataFrame | dict,
    samples: pl.DataFrame | dict,
    fusions: pl.DataFrame | dict | None = None,
    stage_golds: pl.DataFrame | dict | None = None,
    extra_files: dict[str, str] | None = None,
    overwrite: bool = True,
) -> Path:
    """Write a store atomically and return its path. The result is validated before it lands."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise StoreError(path, "already exists (use --force to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        (tmp / S.MANIFEST).write_text(json.dumps(manifest.to_json(), indent=2, sort_keys=False) + "\n")
        _write_parquet_atomic(_coerce(questions, S.QUESTIONS), tmp / S.QUESTIONS)
        _write_parquet_atomic(
            _coerce(samples, S.SAMPLES).sort(["question_id", "stage", "model", "context", "sample_index"]),
            tmp / S.SAMPLES,
        )
        if fusions is not None:
            _write_parquet_atomic(_coerce(fusions, S.FUSIONS), tmp / S.FUSIONS)
        if stage_golds is not None:
            _write_parquet_atomic(_coerce(stage_golds, S.STAGE_GOLDS), tmp / S.STAGE_GOLDS)
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
        open_store(tmp)  # validate what we wrote before it replaces anything
        _publish_permissions(tmp)
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


# --------------------------------------------------------------------------------------------
# Dense form


def question_hash(question_id: str) -> int:
    """A stable 63-bit hash of a question id: the per-question part of the random stream."""
    return int.from_bytes(hashlib.blake2b(question_id.encode(), digest_size=8).digest(), "little") >> 1


@dataclass
class StoreArrays:
    """The store as dense arrays, built once at load. All ids are int32/int64 indices.

    Answers (samples, contexts, fusions, golds, probes) share one dictionary `answers`, so
    that stage k's aggregated answer id *is* the context id of stage k+1's pool.
    """

    n_questions: int
    n_stages: int
    n_models: int
    answers: np.ndarray  # object array of str: the answer dictionary
    question_hash: np.ndarray  # uint64 [Q]
    stage_agg: np.ndarray  # int64 [S] aggregation codes (schema.AGG_CODES)
    model_params: np.ndarray  # float64 [M]
    stage_model_ok: np.ndarray  # bool [S, M]: model is a candidate for the stage
    # pools, sorted by (question, stage, model, context)
    qsm_pool_off: np.ndarray  # int64 [Q*S*M + 1]: CSR of pools per (q, s, m)
    pool_ctx: np.ndarray  # int32 [P] context answer id
    pool_off: np.ndarray  # int64 [P + 1]: CSR of samples per pool
    pool_prompt: np.ndarray  # int64 [P]: prompt tokens, prefilled once per pool (max over the pool)
    pool_n_local: np.ndarray  # int32 [P]: distinct answers in the pool
    # samples, in pool order
    s_answer: np.ndarray  # int32 [N] global answer id
    s_local: np.ndarray  # int32 [N] pool-local dense answer id (0 .. pool_n_local-1)
    s_score: np.ndarray  # float64 [N]
    s_prompt: np.ndarray  # int64 [N]
    s_completion: np.ndarray  # int64 [N]
    s_index: np.ndarray  # int32 [N] the stored sample_index
    # golds per (question, stage): answer id, -1 where none
    gold: np.ndarray  # int32 [Q, S]
    # list answers (set vote): sorted item ids per answer id (CSR); items interned separately
    ans_item_off: np.ndarray  # int64 [A + 1]
    ans_items: np.ndarray  # int32
    # stored fusions, grouped per pool (CSR), each with its subset (pool-local positions)
    pool_fus_off: np.ndarray  # int64 [P + 1]
    fus_size: np.ndarray  # int32 [F]
    fus_answer: np.ndarray  # int32 [F]
    fus_score: np.ndarray  # float64 [F]
    fus_tokens: np.ndarray  # int64 [F] fusion prompt + completion tokens
    fus_subset_completion: np.ndarray  # int64 [F] completion tokens of the fused samples
    # probes (step-level traces): CSR per sample of answer ids, -1 where absent
    probe_off: np.ndarray | None  # int64 [N + 1]
    probe_answer: np.ndarray | None  # int32

    @property
    def n_pools(self) -> int:
        return len(self.pool_ctx)

    def pools_of(self, q: int, s: int, m: int) -> range:
        k = (q * self.n_stages + s) * self.n_models + m
        return range(int(self.qsm_pool_off[k]), int(self.qsm_pool_off[k + 1]))


def _intern(dictionary: pa.Array, values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    ids = pc.index_in(values, value_set=dictionary)
    return ids.to_numpy(zero_copy_only=False).astype(np.int32)


def _build_arrays(
    store: Path,
    manifest: S.Manifest,
    questions: pl.DataFrame,
    samples: pl.DataFrame,
    fusions: pl.DataFrame | None,
    stage_golds: pl.DataFrame | None,
) -> StoreArrays:
    sp = store / S.SAMPLES
    qp = store / S.QUESTIONS
    qids = questions["question_id"]
    if qids.n_unique() != len(qids):
        dup = qids.filter(qids.is_duplicated())[0]
        raise StoreError(qp, f"duplicate question_id {dup!r}")
    if len(qids) == 0:
        raise StoreError(qp, "no questions")
    n_q, n_s, n_m = len(qids), len(manifest.stages), len(manifest.models)
    q_index = {q: i for i, q in enumerate(qids.to_list())}
    col_split = dict(zip(qids.to_list(), questions["split"].to_list()))
    for split_name, ids in manifest.split.items():
        for q in ids:
            if q not in q_index:
                raise StoreError(store / S.MANIFEST, f"split {split_name!r} names unknown question {q!r}")
            if col_split[q] != split_name:
                raise StoreError(qp, f"question {q!r} has split {col_split[q]!r} but the manifest puts it in {split_name!r}")

    # Map names to indices with joins (no Python loop over rows).
    qmap = pl.DataFrame({"question_id": qids, "_q": pl.Series(np.arange(n_q, dtype=np.int64))})
    smap = pl.DataFrame({"stage": list(manifest.stage_names), "_s": np.arange(n_s, dtype=np.int64)})
    mmap = pl.DataFrame({"model": list(manifest.model_names), "_m": np.arange(n_m, dtype=np.int64)})

    def keyed(df: pl.DataFrame, path: Path, what: str) -> pl.DataFrame:
        df = df.join(qmap, on="question_id", how="left")
        if df["_q"].null_count():
            bad = df.filter(pl.col("_q").is_null())["question_id"][0]
            raise StoreError(path, f"dangling key: {what} names unknown question_id {bad!r}")
        if "stage" in df.columns:
            df = df.join(smap, on="stage", how="left")
            if df["_s"].null_count():
                bad = df.filter(pl.col("_s").is_null())["stage"][0]
                raise StoreError(path, f"{what} names unknown stage {bad!r} (manifest stages: {', '.join(manifest.stage_names)})")
        if "model" in df.columns:
            df = df.join(mmap, on="model", how="left")
            if df["_m"].null_count():
                bad = df.filter(pl.col("_m").is_null())["model"][0]
                raise StoreError(path, f"{what} names unknown model {bad!r} (manifest models: {', '.join(manifest.model_names)})")
        return df

    if len(samples) == 0:
        raise StoreError(sp, "no samples")
    samples = keyed(samples, sp, "a sample")
    if samples["sample_index"].min() < 0:
        raise StoreError(sp, "negative sample_index")
    if (samples["prompt_tokens"].min() < 0) or (samples["completion_tokens"].min() < 0):
        raise StoreError(sp, "negative token count")
    if samples["score"].is_nan().any():
        raise StoreError(sp, "NaN score")
    stage1 = samples.filter((pl.col("_s") == 0) & (pl.col("context") != S.ROOT_CONTEXT))
    if len(stage1):
        raise StoreError(sp, f"stage {manifest.stage_names[0]!r} is the first stage: its context must be empty, got {stage1['context'][0]!r}")
    dup = samples.select("_q", "_s", "_m", "context", "sample_index").is_duplicated()
    if dup.any():
        row = samples.filter(dup).row(0, named=True)
        raise StoreError(sp, f"duplicate sample: question {row['question_id']!r} stage {row['stage']!r} model {row['model']!r} context {row['context']!r} sample_index {row['sample_index']}")
    samples = samples.sort(["_q", "_s", "_m", "context", "sample_index"])

    # Every candidate (question, stage, model) must have a non-empty pool.
    stage_model_ok = np.zeros((n_s, n_m), dtype=np.bool_)
    for si, st in enumerate(manifest.stages):
        for mi, m in enumerate(manifest.model_names):
            stage_model_ok[si, mi] = (not st.models) or (m in st.models)
    have = samples.group_by("_q", "_s", "_m").len()
    counts = np.zeros((n_q, n_s, n_m), dtype=np.int64)
    counts[have["_q"].to_numpy(), have["_s"].to_numpy(), have["_m"].to_numpy()] = have["len"].to_numpy()
    missing = np.argwhere((counts == 0) & stage_model_ok[None, :, :])
    if len(missing):
        q, s, m = missing[0]
        raise StoreError(sp, f"empty pool: question {qids[int(q)]!r} stage {manifest.stage_names[s]!r} model {manifest.model_names[m]!r} has no samples")
    off_cand = np.argwhere((counts > 0) & ~stage_model_ok[None, :, :])
    if len(off_cand):
        q, s, m = off_cand[0]
        raise StoreError(sp, f"model {manifest.model_names[m]!r} is not a candidate of stage {manifest.stage_names[s]!r} in the manifest, but has samples")

    # Answer dictionary over everything that can be an answer or a context key.
    pieces = [samples["answer"], samples["context"], questions["gold"]]
    if fusions is not None:
        pieces.append(fusions["answer"])
    if stage_golds is not None:
        pieces.append(stage_golds["gold"])
    has_probes = "probes" in samples.columns and samples["probes"].null_count() < len(samples)
    if has_probes:
        pieces.append(samples["probes"].explode().drop_nulls())
    dictionary = pl.concat([p.cast(pl.String).rename("a") for p in pieces]).unique().sort()
    dict_arrow = dictionary.to_arrow()
    answers = np.array(dictionary.to_list(), dtype=object)

    s_answer = _intern(dict_arrow, samples["answer"].to_arrow())
    s_ctx = _intern(dict_arrow, samples["context"].to_arrow())
    # Pools: consecutive runs of (q, s, m, ctx).
    q_arr = samples["_q"].to_numpy()
    s_arr = samples["_s"].to_numpy()
    m_arr = samples["_m"].to_numpy()
    key = ((q_arr * n_s + s_arr) * n_m + m_arr).astype(np.int64)
    change = np.ones(len(samples), dtype=np.bool_)
    change[1:] = (key[1:] != key[:-1]) | (s_ctx[1:] != s_ctx[:-1])
    starts = np.flatnonzero(change)
    pool_off = np.append(starts, len(samples)).astype(np.int64)
    pool_key = key[starts]
    pool_ctx = s_ctx[starts].astype(np.int32)
    qsm_pool_off = np.searchsorted(pool_key, np.arange(n_q * n_s * n_m + 1), side="left").astype(np.int64)
    n_pools = len(starts)
    pool_id = np.repeat(np.arange(n_pools), np.diff(pool_off))
    s_prompt = samples["prompt_tokens"].to_numpy().astype(np.int64)
    pool_prompt = np.maximum.reduceat(s_prompt, starts).astype(np.int64)
    # pool-local dense answer ids
    local = (
        pl.DataFrame({"p": pool_id, "a": s_answer})
        .select(pl.col("a").rank("dense").over("p").cast(pl.Int32) - 1)
        .to_series()
        .to_numpy()
        .astype(np.int32)
    )
    pool_n_local = (np.maximum.reduceat(local, starts) + 1).astype(np.int32)

    # Golds per (question, stage): the question's gold for the last stage, stage_golds elsewhere.
    gold = np.full((n_q, n_s), -1, dtype=np.int32)
    gold[:, n_s - 1] = _intern(dict_arrow, questions["gold"].to_arrow())
    if stage_golds is not None:
        gp = store / S.STAGE_GOLDS
        sg = keyed(stage_golds, gp, "a stage gold")
        gold[sg["_q"].to_numpy(), sg["_s"].to_numpy()] = _intern(dict_arrow, sg["gold"].to_arrow())

    # Items of list answers, only where a stage votes over sets.
    set_stage = any(st.aggregation == "set_vote" for st in manifest.stages)
    if set_stage:
        items = dictionary.str.split(S.ITEM_SEP).list.eval(pl.element().str.strip_chars()).list.eval(
            pl.element().filter(pl.element() != "")
        ).list.unique().list.sort()
        item_dict = items.explode().drop_nulls().unique().sort()
        lens = items.list.len().to_numpy().astype(np.int64)
        ans_item_off = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        flat = items.explode().drop_nulls()
        ans_items = _intern(item_dict.to_arrow(), flat.to_arrow())
    else:
        ans_item_off = np.zeros(len(answers) + 1, dtype=np.int64)
        ans_items = np.zeros(0, dtype=np.int32)

    # Fusions.
    pool_fus_off = np.zeros(n_pools + 1, dtype=np.int64)
    fus_size = np.zeros(0, np.int32)
    fus_answer = np.zeros(0, np.int32)
    fus_score = np.zeros(0, np.float64)
    fus_tokens = np.zeros(0, np.int64)
    fus_subset_completion = np.zeros(0, np.int64)
    fuse_stages = [i for i, st in enumerate(manifest.stages) if st.aggregation == "llm_fuse"]
    fp = store / S.FUSIONS
    if fuse_stages and fusions is None:
        raise StoreError(fp, f"missing file: stage {manifest.stage_names[fuse_stages[0]]!r} aggregates by llm_fuse")
    if fusions is not None and len(fusions):
        f = keyed(fusions, fp, "a fusion")
        bad_stage = f.filter(~pl.col("_s").is_in(fuse_stages))
        if len(bad_stage):
            raise StoreError(fp, f"fusion for stage {bad_stage['stage'][0]!r}, whose aggregation is not llm_fuse")
        f = f.with_columns(_ctx=pl.Series(_intern(dict_arrow, f["context"].to_arrow())))
        f = f.with_columns(_key=((pl.col("_q") * n_s + pl.col("_s")) * n_m + pl.col("_m")))
        # find each fusion's pool
        pools_df = pl.DataFrame({"_key": pool_key, "_ctx": pool_ctx, "_pool": np.arange(n_pools)})
        f = f.join(pools_df, on=["_key", "_ctx"], how="left")
        if f["_pool"].null_count():
            row = f.filter(pl.col("_pool").is_null()).row(0, named=True)
            raise StoreError(fp, f"dangling key: fusion for question {row['question_id']!r} stage {row['stage']!r} model {row['model']!r} context {row['context']!r} has no pool of samples")
        f = f.sort("_pool", "_s")
        sizes = f["subset"].list.len()
        if (sizes == 0).any():
            raise StoreError(fp, "a fusion with an empty subset")
        if (f["subset"].list.n_unique() != sizes).any():
            raise StoreError(fp, "a fusion subset repeats a sample index")
        # map subset sample indices to completion tokens via (pool, sample_index)
        ex = f.select(pl.int_range(pl.len()).alias("_f"), "_pool", "subset").explode("subset")
        sample_df = pl.DataFrame({"_pool": pool_id, "subset": samples["sample_index"], "_ct": samples["completion_tokens"]})
        ex = ex.join(sample_df, on=["_pool", "subset"], how="left")
        if ex["_ct"].null_count():
            raise StoreError(fp, f"dangling key: a fusion subset names sample_index {ex.filter(pl.col('_ct').is_null())['subset'][0]} absent from its pool")
        sub_ct = ex.group_by("_f").agg(pl.col("_ct").sum()).sort("_f")["_ct"].to_numpy()
        fus_size = sizes.to_numpy().astype(np.int32)
        fus_answer = _intern(dict_arrow, f["answer"].to_arrow())
        fus_score = f["score"].to_numpy().astype(np.float64)
        fus_tokens = (f["prompt_tokens"] + f["completion_tokens"]).to_numpy().astype(np.int64)
        fus_subset_completion = sub_ct.astype(np.int64)
        pool_fus_off = np.searchsorted(f["_pool"].to_numpy(), np.arange(n_pools + 1), side="left").astype(np.int64)
    for si in fuse_stages:
        for mi in np.flatnonzero(stage_model_ok[si]):
            # every fuse pool needs at least one stored fusion
            for q in range(n_q):
                k = (q * n_s + si) * n_m + mi
                for p in range(qsm_pool_off[k], qsm_pool_off[k + 1]):
                    if pool_fus_off[p + 1] == pool_fus_off[p]:
                        raise StoreError(fp, f"empty pool: no stored fusion for question {qids[q]!r} stage {manifest.stage_names[si]!r} model {manifest.model_names[mi]!r} context {answers[pool_ctx[p]]!r}")

    probe_off = probe_answer = None
    if has_probes:
        probes = samples["probes"].fill_null([])
        plen = probes.list.len().to_numpy().astype(np.int64)
        probe_off = np.concatenate([[0], np.cumsum(plen)]).astype(np.int64)
        probe_answer = _intern(dict_arrow, probes.explode().drop_nulls().to_arrow())

    return StoreArrays(
        n_questions=n_q,
        n_stages=n_s,
        n_models=n_m,
        answers=answers,
        question_hash=np.array([question_hash(q) for q in qids.to_list()], dtype=np.uint64),
        stage_agg=np.array([S.AGG_CODES[s.aggregation] for s in manifest.stages], dtype=np.int64),
        model_params=np.array([m.params for m in manifest.models], dtype=np.float64),
        stage_model_ok=stage_model_ok,
        qsm_pool_off=qsm_pool_off,
        pool_ctx=pool_ctx,
        pool_off=pool_off,
        pool_prompt=pool_prompt,
        pool_n_local=pool_n_local,
        s_answer=s_answer,
        s_local=local,
        s_score=samples["score"].to_numpy().astype(np.float64),
        s_prompt=s_prompt,
        s_completion=samples["completion_tokens"].to_numpy().astype(np.int64),
        s_index=samples["sample_index"].to_numpy().astype(np.int32),
        gold=gold,
        ans_item_off=ans_item_off,
        ans_items=ans_items,
        pool_fus_off=pool_fus_off,
        fus_size=fus_size,
        fus_answer=fus_answer,
        fus_score=fus_score,
        fus_tokens=fus_tokens,
        fus_subset_completion=fus_subset_completion,
        probe_off=probe_off,
        probe_answer=probe_answer,
    )


class Store:
    """A store opened for replay: its manifest, its tables, and its dense arrays.

    Use `replay.open(path)`. Evaluation lives in `replay.engine`; the methods here are thin
    conveniences that forward to it.
    """

    def __init__(self, path: Path, manifest: S.Manifest, questions: pl.DataFrame, samples: pl.DataFrame,
                 fusions: pl.DataFrame | None, stage_golds: pl.DataFrame | None):
        self.path = path
        self.manifest = manifest
        self.questions = questions
        self.samples = samples
        self.fusions = fusions
        self.stage_golds = stage_golds
        self.arrays = _build_arrays(path, manifest, questions, samples, fusions, stage_golds)
        self.question_ids: tuple[str, ...] = tuple(questions["question_id"].to_list())
        self._qindex = {q: i for i, q in enumerate(self.question_ids)}

    # ---- naming
    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def synthetic(self) -> bool:
        return self.manifest.synthetic

    @property
    def stages(self) -> tuple[S.Stage, ...]:
        return self.manifest.stages

    @property
    def models(self) -> tuple[S.Model, ...]:
        return self.manifest.models

    def stage_index(self, name: str) -> int:
        return self.manifest.stage_names.index(name)

    def model_index(self, name: str) -> int:
        return self.manifest.model_names.index(name)

    def candidate_models(self, stage: int | str) -> tuple[str, ...]:
        si = stage if isinstance(stage, int) else self.stage_index(stage)
        return tuple(m for mi, m in enumerate(self.manifest.model_names) if self.arrays.stage_model_ok[si, mi])

    def question_indices(self, questions: Any = None) -> np.ndarray:
        """Question selector -> int64 indices: None (all), a split name, ids, or indices."""
        if questions is None:
            return np.arange(len(self.question_ids), dtype=np.int64)
        if isinstance(questions, str):
            if questions in self.manifest.split:
                return np.array([self._qindex[q] for q in self.manifest.split[questions]], dtype=np.int64)
            if questions == "all":
                return np.arange(len(self.question_ids), dtype=np.int64)
            raise StoreError(self.path, f"no split named {questions!r} (splits: {', '.join(self.manifest.split) or 'none'})")
        out = []
        for q in questions:
            if isinstance(q, (int, np.integer)):
                if not 0 <= q < len(self.question_ids):
                    raise StoreError(self.path, f"question index {q} out of range")
                out.append(int(q))
            else:
                if q not in self._qindex:
                    raise StoreError(self.path, f"unknown question id {q!r}")
                out.append(self._qindex[q])
        return np.array(out, dtype=np.int64)

    @cached_property
    def max_pool_size(self) -> np.ndarray:
        """[S, M]: the smallest pool size over questions and contexts (the largest safe count)."""
        a = self.arrays
        sizes = np.diff(a.pool_off)
        out = np.zeros((a.n_stages, a.n_models), dtype=np.int64)
        for s in range(a.n_stages):
            for m in range(a.n_models):
                if not a.stage_model_ok[s, m]:
                    continue
                ks = [(q * a.n_stages + s) * a.n_models + m for q in range(a.n_questions)]
                lo = np.concatenate([np.arange(a.qsm_pool_off[k], a.qsm_pool_off[k + 1]) for k in ks])
                out[s, m] = sizes[lo].min()
        return out

    def fusion_sizes(self, stage: int) -> tuple[int, ...]:
        a = self.arrays
        if a.stage_agg[stage] != S.AGG_CODES["llm_fuse"]:
            return ()
        return tuple(sorted(set(int(x) for x in a.fus_size)))

    # ---- evaluation, forwarded to the engine (imported lazily: it compiles kernels)
    def evaluate(self, config, questions=None, replicates: int = 100, seed: int = 0, budget: float | None = None):
        from .engine import evaluate

        return evaluate(self, config, questions=questions, replicates=replicates, seed=seed, budget=budget)

    def evaluate_batch(self, configs, questions=None, replicates: int = 100, seed: int = 0, budget: float | None = None):
        from .engine import evaluate_batch

        return evaluate_batch(self, configs, questions=questions, replicates=replicates, seed=seed, budget=budget)

    def __repr__(self) -> str:
        kind = "synthetic" if self.synthetic else "real"
        return (f"Store({self.name!r}, {kind}, stages={list(self.manifest.stage_names)}, "
                f"models={list(self.manifest.model_names)}, questions={len(self.question_ids)})")


def open_store(path: str | os.PathLike) -> Store:
    """Open and validate a store folder. Raises StoreError (one line, names the file)."""
    path = Path(path)
    manifest = read_manifest(path)
    questions = _read_table(path, S.QUESTIONS)
    samples = _read_table(path, S.SAMPLES)
    fusions = _read_table(path, S.FUSIONS, required=False)
    stage_golds = _read_table(path, S.STAGE_GOLDS, required=False)
    bad_split = questions.filter(~pl.col("split").is_in(["train", "test", "dev", "all"]))
    if len(bad_split):
        raise StoreError(path / S.QUESTIONS, f"question {bad_split['question_id'][0]!r} has unknown split {bad_split['split'][0]!r} (train, test, dev or all)")
    return Store(path, manifest, questions, samples, fusions, stage_golds)
