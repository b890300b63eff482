"""A store's dense form: the NumPy arrays the kernels read, built and checked once at load.

`build_arrays` turns a store's validated tables into `StoreArrays` in steps, each a function
below: the questions and their splits, the samples keyed to (question, stage, model) indices
and checked, the candidate pools, one answer dictionary, the pools (CSR), golds, list items,
stored fusions and probes. Every problem found on the way is one `StoreError` line naming
the file. Nothing here loops in Python over samples: joins and vectorised NumPy.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from . import schema as S
from .errors import StoreError

# Token counts above this are corrupt, not text (a trillion tokens in one output); it also keeps
# every sum over a store's samples far from int64 overflow.
MAX_TOKENS = 2 ** 40


def _check_tokens(df: pl.DataFrame, path: Path) -> None:
    for col in ("prompt_tokens", "completion_tokens"):
        lo, hi = df[col].min(), df[col].max()
        if lo is not None and lo < 0:
            raise StoreError(path, f"negative token count in column {col!r} ({lo})")
        if hi is not None and hi > MAX_TOKENS:
            raise StoreError(path, f"column {col!r} holds {hi:,} tokens in one row, more than {MAX_TOKENS:,}: corrupt")


def _check_scores(df: pl.DataFrame, path: Path) -> None:
    bad = df.filter(~pl.col("score").is_finite())
    if len(bad):
        v = bad["score"][0]
        raise StoreError(path, f"{'NaN' if v != v else v} score (question {bad['question_id'][0]!r}): scores must be "
                         "finite numbers")


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
    answers: np.ndarray  # object array of str: the answer dictionary (sorted)
    question_hash: np.ndarray  # uint64 [Q]
    stage_agg: np.ndarray  # int64 [S] aggregation codes (schema.AGG_CODES)
    model_params: np.ndarray  # float64 [M]
    stage_model_ok: np.ndarray  # bool [S, M]: model is a candidate for the stage
    stage_indep: np.ndarray  # bool [S]: the stage's pool does not depend on the upstream answer
    score_rule: int  # how stage scores make the end-to-end score (schema.SCORE_RULE_CODES)
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
    # for latency (graph replay): a fusion call's own prompt tokens, and the longest completion
    # among the samples it fused (they were generated in parallel)
    fus_prompt: np.ndarray | None = None  # int64 [F]
    fus_subset_max_completion: np.ndarray | None = None  # int64 [F]

    @property
    def n_pools(self) -> int:
        return len(self.pool_ctx)

    def pools_of(self, q: int, s: int, m: int) -> range:
        k = (q * self.n_stages + s) * self.n_models + m
        return range(int(self.qsm_pool_off[k]), int(self.qsm_pool_off[k + 1]))


def _intern(dictionary: pa.Array, values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    ids = pc.index_in(values, value_set=dictionary)
    return ids.to_numpy(zero_copy_only=False).astype(np.int32)


# --------------------------------------------------------------------------------------------
# The steps


def _check_questions(store: Path, manifest: S.Manifest, questions: pl.DataFrame) -> pl.Series:
    """Question ids, checked: unique, at least one, and the manifest's split agrees with the column."""
    qp = store / S.QUESTIONS
    qids = questions["question_id"]
    if qids.n_unique() != len(qids):
        dup = qids.filter(qids.is_duplicated())[0]
        raise StoreError(qp, f"duplicate question_id {dup!r}")
    if len(qids) == 0:
        raise StoreError(qp, "no questions")
    q_index = {q: i for i, q in enumerate(qids.to_list())}
    col_split = dict(zip(qids.to_list(), questions["split"].to_list()))
    for split_name, ids in manifest.split.items():
        for q in ids:
            if q not in q_index:
                raise StoreError(store / S.MANIFEST, f"split {split_name!r} names unknown question {q!r}")
            if col_split[q] != split_name:
                raise StoreError(qp, f"question {q!r} has split {col_split[q]!r} but the manifest puts it in {split_name!r}")
    return qids


class _Keys:
    """Question, stage and model names to indices, by joins (no Python loop over rows)."""

    def __init__(self, manifest: S.Manifest, qids: pl.Series):
        self.manifest = manifest
        self.qmap = pl.DataFrame({"question_id": qids, "_q": pl.Series(np.arange(len(qids), dtype=np.int64))})
        self.smap = pl.DataFrame({"stage": list(manifest.stage_names),
                                  "_s": np.arange(len(manifest.stages), dtype=np.int64)})
        self.mmap = pl.DataFrame({"model": list(manifest.model_names),
                                  "_m": np.arange(len(manifest.models), dtype=np.int64)})

    def keyed(self, df: pl.DataFrame, path: Path, what: str) -> pl.DataFrame:
        """df with _q (and _s, _m where it has stage and model columns); a dangling name is a StoreError."""
        names = self.manifest
        df = df.join(self.qmap, on="question_id", how="left")
        if df["_q"].null_count():
            bad = df.filter(pl.col("_q").is_null())["question_id"][0]
            raise StoreError(path, f"dangling key: {what} names unknown question_id {bad!r}")
        if "stage" in df.columns:
            df = df.join(self.smap, on="stage", how="left")
            if df["_s"].null_count():
                bad = df.filter(pl.col("_s").is_null())["stage"][0]
                raise StoreError(path, f"{what} names unknown stage {bad!r} (manifest stages: {', '.join(names.stage_names)})")
        if "model" in df.columns:
            df = df.join(self.mmap, on="model", how="left")
            if df["_m"].null_count():
                bad = df.filter(pl.col("_m").is_null())["model"][0]
                raise StoreError(path, f"{what} names unknown model {bad!r} (manifest models: {', '.join(names.model_names)})")
        return df


def _checked_samples(store: Path, manifest: S.Manifest, samples: pl.DataFrame, keys: _Keys) -> pl.DataFrame:
    """Samples keyed to indices, checked, sorted into pool order (question, stage, model, context, index)."""
    sp = store / S.SAMPLES
    if len(samples) == 0:
        raise StoreError(sp, "no samples")
    samples = keys.keyed(samples, sp, "a sample")
    if samples["sample_index"].min() < 0:
        raise StoreError(sp, "negative sample_index")
    _check_tokens(samples, sp)
    _check_scores(samples, sp)
    rooted = [i for i, st in enumerate(manifest.stages) if i == 0 or st.independent]
    stage1 = samples.filter(pl.col("_s").is_in(rooted) & (pl.col("context") != S.ROOT_CONTEXT))
    if len(stage1):
        si = stage1["_s"][0]
        why = "the first stage" if si == 0 else "independent (its pools do not depend on the upstream answer)"
        raise StoreError(sp, f"stage {manifest.stage_names[si]!r} is {why}: its context must be empty, got {stage1['context'][0]!r}")
    dup = samples.select("_q", "_s", "_m", "context", "sample_index").is_duplicated()
    if dup.any():
        row = samples.filter(dup).row(0, named=True)
        raise StoreError(sp, f"duplicate sample: question {row['question_id']!r} stage {row['stage']!r} model {row['model']!r} context {row['context']!r} sample_index {row['sample_index']}")
    return samples.sort(["_q", "_s", "_m", "context", "sample_index"])


def _candidates(store: Path, manifest: S.Manifest, qids: pl.Series, samples: pl.DataFrame) -> np.ndarray:
    """[S, M] candidate (stage, model) pairs; every candidate has samples for every question, no
    other pair has any."""
    sp = store / S.SAMPLES
    n_q, n_s, n_m = len(qids), len(manifest.stages), len(manifest.models)
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
    return stage_model_ok


def _has_probes(samples: pl.DataFrame) -> bool:
    return "probes" in samples.columns and samples["probes"].null_count() < len(samples)


def _answer_dictionary(questions: pl.DataFrame, samples: pl.DataFrame, fusions: pl.DataFrame | None,
                       stage_golds: pl.DataFrame | None) -> pl.Series:
    """One sorted dictionary over everything that can be an answer or a context key."""
    pieces = [samples["answer"], samples["context"], questions["gold"]]
    if fusions is not None:
        pieces.append(fusions["answer"])
    if stage_golds is not None:
        pieces.append(stage_golds["gold"])
    if _has_probes(samples):
        pieces.append(samples["probes"].explode().drop_nulls())
    return pl.concat([p.cast(pl.String).rename("a") for p in pieces]).unique().sort()


@dataclass
class _Pools:
    """Pools: consecutive runs of (question, stage, model, context) in the sorted samples."""

    s_answer: np.ndarray
    pool_off: np.ndarray
    pool_key: np.ndarray  # (q * S + s) * M + m of each pool
    pool_ctx: np.ndarray
    qsm_pool_off: np.ndarray
    pool_id: np.ndarray  # of each sample
    s_prompt: np.ndarray
    pool_prompt: np.ndarray
    s_local: np.ndarray
    pool_n_local: np.ndarray


def _pools(samples: pl.DataFrame, dict_arrow: pa.Array, n_q: int, n_s: int, n_m: int) -> _Pools:
    s_answer = _intern(dict_arrow, samples["answer"].to_arrow())
    s_ctx = _intern(dict_arrow, samples["context"].to_arrow())
    key = ((samples["_q"].to_numpy() * n_s + samples["_s"].to_numpy()) * n_m + samples["_m"].to_numpy()).astype(np.int64)
    change = np.ones(len(samples), dtype=np.bool_)
    change[1:] = (key[1:] != key[:-1]) | (s_ctx[1:] != s_ctx[:-1])
    starts = np.flatnonzero(change)
    pool_off = np.append(starts, len(samples)).astype(np.int64)
    pool_key = key[starts]
    pool_id = np.repeat(np.arange(len(starts)), np.diff(pool_off))
    s_prompt = samples["prompt_tokens"].to_numpy().astype(np.int64)
    # pool-local dense answer ids
    local = (
        pl.DataFrame({"p": pool_id, "a": s_answer})
        .select(pl.col("a").rank("dense").over("p").cast(pl.Int32) - 1)
        .to_series()
        .to_numpy()
        .astype(np.int32)
    )
    return _Pools(
        s_answer=s_answer,
        pool_off=pool_off,
        pool_key=pool_key,
        pool_ctx=s_ctx[starts].astype(np.int32),
        qsm_pool_off=np.searchsorted(pool_key, np.arange(n_q * n_s * n_m + 1), side="left").astype(np.int64),
        pool_id=pool_id,
        s_prompt=s_prompt,
        pool_prompt=np.maximum.reduceat(s_prompt, starts).astype(np.int64),
        s_local=local,
        pool_n_local=(np.maximum.reduceat(local, starts) + 1).astype(np.int32),
    )


def _golds(store: Path, questions: pl.DataFrame, stage_golds: pl.DataFrame | None, keys: _Keys,
           dict_arrow: pa.Array, n_s: int) -> np.ndarray:
    """[Q, S] gold answer ids: the question's gold for the last stage, stage_golds elsewhere."""
    gold = np.full((len(questions), n_s), -1, dtype=np.int32)
    gold[:, n_s - 1] = _intern(dict_arrow, questions["gold"].to_arrow())
    if stage_golds is not None:
        sg = keys.keyed(stage_golds, store / S.STAGE_GOLDS, "a stage gold")
        dup = sg.select("_q", "_s").is_duplicated()
        if dup.any():
            rows = sg.filter(dup)
            row = rows.row(0, named=True)
            golds = rows.filter((pl.col("_q") == row["_q"]) & (pl.col("_s") == row["_s"]))["gold"].unique()
            kind = f"conflicting golds ({', '.join(repr(g) for g in golds.to_list()[:3])})" if len(golds) > 1 else \
                "the same gold twice"
            raise StoreError(store / S.STAGE_GOLDS, f"question {row['question_id']!r} stage {row['stage']!r} has {kind}: "
                             "one gold per question and stage")
        gold[sg["_q"].to_numpy(), sg["_s"].to_numpy()] = _intern(dict_arrow, sg["gold"].to_arrow())
    return gold


def _check_stage_scores(store: Path, manifest: S.Manifest, qids: pl.Series, gold: np.ndarray) -> None:
    """A score rule other than `last` combines every stage's score: a set-vote stage is scored
    against its gold, so every question needs one (elsewhere the stored scores are used)."""
    if manifest.score_rule == "last":
        return
    for si, st in enumerate(manifest.stages):
        if st.aggregation == "set_vote" and (gold[:, si] < 0).any():
            q = qids[int(np.flatnonzero(gold[:, si] < 0)[0])]
            raise StoreError(store / S.STAGE_GOLDS, f"score_rule {manifest.score_rule!r} combines every stage's score, "
                                                    f"but set-vote stage {st.name!r} has no gold for question {q!r}")


def _list_items(manifest: S.Manifest, dictionary: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """Sorted item ids of every answer (CSR), only where a stage votes over sets."""
    if not any(st.aggregation == "set_vote" for st in manifest.stages):
        return np.zeros(len(dictionary) + 1, dtype=np.int64), np.zeros(0, dtype=np.int32)
    items = dictionary.str.split(S.ITEM_SEP).list.eval(pl.element().str.strip_chars()).list.eval(
        pl.element().filter(pl.element() != "")
    ).list.unique().list.sort()
    item_dict = items.explode().drop_nulls().unique().sort()
    lens = items.list.len().to_numpy().astype(np.int64)
    ans_item_off = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    return ans_item_off, _intern(item_dict.to_arrow(), items.explode().drop_nulls().to_arrow())


@dataclass
class _Fusions:
    pool_fus_off: np.ndarray
    fus_size: np.ndarray
    fus_answer: np.ndarray
    fus_score: np.ndarray
    fus_tokens: np.ndarray
    fus_subset_completion: np.ndarray
    fus_prompt: np.ndarray
    fus_subset_max_completion: np.ndarray


def _fusions(store: Path, manifest: S.Manifest, fusions: pl.DataFrame | None, samples: pl.DataFrame,
             pools: _Pools, keys: _Keys, dict_arrow: pa.Array) -> _Fusions:
    """Stored fusions grouped per pool (CSR), each with its size, answer, score and tokens."""
    n_s, n_m, n_pools = len(manifest.stages), len(manifest.models), len(pools.pool_ctx)
    fp = store / S.FUSIONS
    fuse_stages = [i for i, st in enumerate(manifest.stages) if st.aggregation == "llm_fuse"]
    if fuse_stages and fusions is None:
        raise StoreError(fp, f"missing file: stage {manifest.stage_names[fuse_stages[0]]!r} aggregates by llm_fuse")
    if fusions is None or not len(fusions):
        return _Fusions(np.zeros(n_pools + 1, dtype=np.int64), np.zeros(0, np.int32), np.zeros(0, np.int32),
                        np.zeros(0, np.float64), np.zeros(0, np.int64), np.zeros(0, np.int64),
                        np.zeros(0, np.int64), np.zeros(0, np.int64))
    f = keys.keyed(fusions, fp, "a fusion")
    _check_tokens(f, fp)
    _check_scores(f, fp)
    dup = f.select(list(S.FUSIONS_SCHEMA)).is_duplicated()
    if dup.any():
        row = f.filter(dup).row(0, named=True)
        raise StoreError(fp, f"duplicate fusion row: question {row['question_id']!r} stage {row['stage']!r} model "
                         f"{row['model']!r} subset {list(row['subset'])} appears twice with the same answer, score and "
                         "tokens (each stored fusion call is one row)")
    bad_stage = f.filter(~pl.col("_s").is_in(fuse_stages))
    if len(bad_stage):
        raise StoreError(fp, f"fusion for stage {bad_stage['stage'][0]!r}, whose aggregation is not llm_fuse")
    f = f.with_columns(_ctx=pl.Series(_intern(dict_arrow, f["context"].to_arrow())))
    f = f.with_columns(_key=((pl.col("_q") * n_s + pl.col("_s")) * n_m + pl.col("_m")))
    # each fusion's pool
    pools_df = pl.DataFrame({"_key": pools.pool_key, "_ctx": pools.pool_ctx, "_pool": np.arange(n_pools)})
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
    # the fused samples' completion tokens, through (pool, sample_index)
    ex = f.select(pl.int_range(pl.len()).alias("_f"), "_pool", "subset").explode("subset")
    sample_df = pl.DataFrame({"_pool": pools.pool_id, "subset": samples["sample_index"],
                              "_ct": samples["completion_tokens"]})
    ex = ex.join(sample_df, on=["_pool", "subset"], how="left")
    if ex["_ct"].null_count():
        raise StoreError(fp, f"dangling key: a fusion subset names sample_index {ex.filter(pl.col('_ct').is_null())['subset'][0]} absent from its pool")
    sub = ex.group_by("_f").agg(pl.col("_ct").sum().alias("sum"), pl.col("_ct").max().alias("max")).sort("_f")
    sub_ct = sub["sum"].to_numpy()
    return _Fusions(
        pool_fus_off=np.searchsorted(f["_pool"].to_numpy(), np.arange(n_pools + 1), side="left").astype(np.int64),
        fus_size=sizes.to_numpy().astype(np.int32),
        fus_answer=_intern(dict_arrow, f["answer"].to_arrow()),
        fus_score=f["score"].to_numpy().astype(np.float64),
        fus_tokens=(f["prompt_tokens"] + f["completion_tokens"]).to_numpy().astype(np.int64),
        fus_subset_completion=sub_ct.astype(np.int64),
        fus_prompt=f["prompt_tokens"].to_numpy().astype(np.int64),
        fus_subset_max_completion=sub["max"].to_numpy().astype(np.int64),
    )


def _check_fused_pools(store: Path, manifest: S.Manifest, qids: pl.Series, answers: np.ndarray, pools: _Pools,
                       fus: _Fusions) -> None:
    """Every pool of an llm_fuse stage needs at least one stored fusion."""
    n_s, n_m = len(manifest.stages), len(manifest.models)
    fuse = np.array([st.aggregation == "llm_fuse" for st in manifest.stages])
    q, s, m = pools.pool_key // (n_s * n_m), (pools.pool_key // n_m) % n_s, pools.pool_key % n_m
    bare = np.flatnonzero(fuse[s] & (np.diff(fus.pool_fus_off) == 0))
    if len(bare):
        p = bare[np.lexsort((bare, q[bare], m[bare], s[bare]))[0]]  # the first by stage, model, question
        raise StoreError(store / S.FUSIONS, f"empty pool: no stored fusion for question {qids[int(q[p])]!r} stage {manifest.stage_names[s[p]]!r} model {manifest.model_names[m[p]]!r} context {answers[pools.pool_ctx[p]]!r}")


def _probes(samples: pl.DataFrame, dict_arrow: pa.Array) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Probe readings per sample (CSR of answer ids), where the store has step-level traces."""
    if not _has_probes(samples):
        return None, None
    probes = samples["probes"].fill_null([])
    plen = probes.list.len().to_numpy().astype(np.int64)
    probe_off = np.concatenate([[0], np.cumsum(plen)]).astype(np.int64)
    return probe_off, _intern(dict_arrow, probes.explode().drop_nulls().to_arrow())


# --------------------------------------------------------------------------------------------
# All of it


def build_arrays(store: Path, manifest: S.Manifest, questions: pl.DataFrame, samples: pl.DataFrame,
                 fusions: pl.DataFrame | None, stage_golds: pl.DataFrame | None) -> StoreArrays:
    """A store's tables, checked, as dense arrays (see the module docstring for the steps).

    Args:
        store: the store folder (named in errors).
        manifest: the store's manifest.
        questions, samples, fusions, stage_golds: its tables, as read (fusions and stage_golds
            may be None).

    Raises:
        StoreError: one line naming the file, for the first problem found.
    """
    qids = _check_questions(store, manifest, questions)
    n_q, n_s, n_m = len(qids), len(manifest.stages), len(manifest.models)
    keys = _Keys(manifest, qids)
    samples = _checked_samples(store, manifest, samples, keys)
    stage_model_ok = _candidates(store, manifest, qids, samples)
    dictionary = _answer_dictionary(questions, samples, fusions, stage_golds)
    dict_arrow = dictionary.to_arrow()
    answers = np.array(dictionary.to_list(), dtype=object)
    pools = _pools(samples, dict_arrow, n_q, n_s, n_m)
    gold = _golds(store, questions, stage_golds, keys, dict_arrow, n_s)
    _check_stage_scores(store, manifest, qids, gold)
    ans_item_off, ans_items = _list_items(manifest, dictionary)
    fus = _fusions(store, manifest, fusions, samples, pools, keys, dict_arrow)
    _check_fused_pools(store, manifest, qids, answers, pools, fus)
    probe_off, probe_answer = _probes(samples, dict_arrow)
    return StoreArrays(
        n_questions=n_q,
        n_stages=n_s,
        n_models=n_m,
        answers=answers,
        question_hash=np.array([question_hash(q) for q in qids.to_list()], dtype=np.uint64),
        stage_agg=np.array([S.AGG_CODES[s.aggregation] for s in manifest.stages], dtype=np.int64),
        model_params=np.array([m.params for m in manifest.models], dtype=np.float64),
        stage_model_ok=stage_model_ok,
        stage_indep=np.array([st.independent for st in manifest.stages], dtype=np.bool_),
        score_rule=S.SCORE_RULE_CODES[manifest.score_rule],
        qsm_pool_off=pools.qsm_pool_off,
        pool_ctx=pools.pool_ctx,
        pool_off=pools.pool_off,
        pool_prompt=pools.pool_prompt,
        pool_n_local=pools.pool_n_local,
        s_answer=pools.s_answer,
        s_local=pools.s_local,
        s_score=samples["score"].to_numpy().astype(np.float64),
        s_prompt=pools.s_prompt,
        s_completion=samples["completion_tokens"].to_numpy().astype(np.int64),
        s_index=samples["sample_index"].to_numpy().astype(np.int32),
        gold=gold,
        ans_item_off=ans_item_off,
        ans_items=ans_items,
        pool_fus_off=fus.pool_fus_off,
        fus_size=fus.fus_size,
        fus_answer=fus.fus_answer,
        fus_score=fus.fus_score,
        fus_tokens=fus.fus_tokens,
        fus_subset_completion=fus.fus_subset_completion,
        probe_off=probe_off,
        probe_answer=probe_answer,
        fus_prompt=fus.fus_prompt,
        fus_subset_max_completion=fus.fus_subset_max_completion,
    )
