"""What graph replay reads beyond a store's `KernelInputs`, built once per store.

`graph_inputs(store)` (kept in `store.derived.memo`) holds, per pool, its input key as sorted
answer-class ids (CSR), the class of every answer, the lookup from a set vote's kept items to
its class, the gold each role is scored against, and the fusion tokens latency needs.

Answer classes. Keys compare answers by identity, except in a store with set-vote roles, where
a list answer is compared by its item set (its class: the smallest answer id with the same
items), as the chain engine compares a set vote's kept items with the next stage's contexts.
Without set-vote roles the class of an answer is the answer itself.

Keys. A chain store's stage-k pool (k > 0) reads one answer: its key is [class(context)]; its
first stage's key is empty. A graph store's solve pools have the empty key and its refine and
aggregate pools the parsed multiset of their context (replay/graph/keys.py); an answer of a key
that no sample or fusion ever gives gets the class -1, which no node's answer has.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .. import schema as S
from ..errors import StoreError
from ..reference import GOLDEN, MASK, MIX1, mix64
from .keys import parse_input_key


class GraphInputs(NamedTuple):
    """Arrays for the graph kernels (fields by name; see the module docstring)."""

    pool_key_off: np.ndarray  # int64 [P + 1]: CSR of each pool's key
    pool_key: np.ndarray  # int64: class ids, sorted within a pool
    ans_class: np.ndarray  # int64 [A]
    set_hash: np.ndarray  # uint64 [C]: item-set hash of every class with items, sorted
    set_class: np.ndarray  # int64 [C]: the class of each hash, in the same order
    role_gold: np.ndarray  # int64 [Q, S]: the gold answer id each role is scored against (-1: none)
    fus_prompt: np.ndarray  # int64 [F]: a fusion call's own prompt tokens
    fus_completion: np.ndarray  # int64 [F]: its completion tokens
    fus_subset_max: np.ndarray  # int64 [F]: the longest completion among the fused samples
    # the pool of a (question, role, model) and key: its pools sorted by key hash (binary search,
    # kernels.find_keyed_pool), and its fallback
    by_hash: np.ndarray  # int64 [P]: within each (q, role, model)'s range, the pools by key hash
    hash_sorted: np.ndarray  # uint64 [P]: their key hashes (items_hash), ascending within a range
    qsm_largest: np.ndarray  # int64 [Q*S*M]: the largest pool of each, ties to the first (-1: none)


def items_hash(items) -> int:
    """The hash of a sorted item-id sequence (the kernels compute the same in uint64)."""
    h = (len(items) * GOLDEN) & MASK
    for it in items:
        h = mix64(h ^ (((int(it) + 1) * MIX1) & MASK))
    return h


def _classes(a) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(a.answers)
    if not len(a.ans_items) and not np.any(a.stage_agg == S.AGG_CODES["set_vote"]):
        return np.arange(n, dtype=np.int64), np.zeros(0, np.uint64), np.zeros(0, np.int64)
    first: dict[tuple, int] = {}
    cls = np.empty(n, dtype=np.int64)
    for i in range(n):
        key = tuple(a.ans_items[a.ans_item_off[i]:a.ans_item_off[i + 1]].tolist())
        cls[i] = first.setdefault(key, i)
    reps = sorted(first.items(), key=lambda kv: kv[1])
    hashes = np.array([items_hash(k) for k, _ in reps], dtype=np.uint64)
    ids = np.array([v for _, v in reps], dtype=np.int64)
    order = np.argsort(hashes, kind="stable")
    return cls, hashes[order], ids[order]


def build_graph_inputs(store) -> GraphInputs:
    """The graph arrays of a store (raises StoreError, naming samples.parquet, on a key of a
    graph store that does not parse)."""
    a = store.arrays
    m = store.manifest
    d = store.derived
    cls, set_hash, set_class = _classes(a)
    n_pools = a.n_pools
    stage = d.pool_stage
    later = stage > 0
    if m.kind == "graph":
        # parse each distinct context once, then gather per pool (CSR, vectorised)
        uctx, inv = np.unique(a.pool_ctx[later], return_inverse=True)
        answers = a.answers
        parsed: list[np.ndarray] = []
        where = store.path / S.SAMPLES
        for ctx in uctx:
            text = answers[ctx]
            try:
                items = parse_input_key(text)
            except ValueError as e:
                p = int(np.flatnonzero((a.pool_ctx == ctx) & later)[0])
                q = int(d.pool_qsm[p] // (a.n_stages * a.n_models))
                raise StoreError(where, f"input key {text!r} of role {m.stage_names[stage[p]]!r}, question "
                                        f"{store.question_ids[q]!r} does not parse: {e}") from None
            obj = np.array(items, dtype=object)
            pos = np.minimum(np.searchsorted(answers, obj), len(answers) - 1)
            ids = np.where(answers[pos] == obj, pos, -1)
            parsed.append(np.sort(np.where(ids >= 0, cls[np.maximum(ids, 0)], -1)).astype(np.int64))
        u_len = np.array([len(x) for x in parsed], dtype=np.int64)
        u_off = np.concatenate([[0], np.cumsum(u_len)]).astype(np.int64)
        u_items = np.concatenate(parsed).astype(np.int64) if parsed else np.zeros(0, np.int64)
        lens = np.zeros(n_pools, dtype=np.int64)
        lens[later] = u_len[inv]
        off = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        src = np.zeros(n_pools, dtype=np.int64)
        src[later] = u_off[inv]
        flat = u_items[np.repeat(src, lens) + (np.arange(off[-1]) - np.repeat(off[:-1], lens))]
    else:  # a chain: stage k > 0 reads one answer, its context
        lens = later.astype(np.int64)
        off = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        flat = cls[a.pool_ctx[later]].astype(np.int64)
    from .kernels import pool_hashes, sort_by_hash

    by_hash = np.zeros(n_pools, dtype=np.int64)
    hash_sorted = np.zeros(n_pools, dtype=np.uint64)
    qsm_largest = np.full(len(a.qsm_pool_off) - 1, -1, dtype=np.int64)
    sort_by_hash(a.qsm_pool_off, pool_hashes(off, flat), a.pool_off, by_hash, hash_sorted, qsm_largest)
    gold = a.gold.astype(np.int64)
    if m.kind == "graph":  # every role answers the question: scored against its gold
        gold = np.where(gold >= 0, gold, gold[:, -1:])
    fp = a.fus_prompt if a.fus_prompt is not None else np.zeros(len(a.fus_tokens), np.int64)
    fmax = a.fus_subset_max_completion if a.fus_subset_max_completion is not None else np.zeros(len(a.fus_tokens), np.int64)
    return GraphInputs(pool_key_off=off, pool_key=flat, ans_class=cls, set_hash=set_hash, set_class=set_class,
                       role_gold=np.ascontiguousarray(gold), fus_prompt=fp.astype(np.int64),
                       fus_completion=(a.fus_tokens - fp).astype(np.int64), fus_subset_max=fmax.astype(np.int64),
                       by_hash=by_hash, hash_sorted=hash_sorted, qsm_largest=qsm_largest)


def check_graph_store(store) -> None:
    """Every refine/aggregate pool's key of a graph store parses (StoreError naming
    samples.parquet otherwise); a solve pool's key is empty (checked with the arrays: solve is
    the first role). Builds and keeps the graph arrays."""
    graph_inputs(store)


def graph_inputs(store) -> GraphInputs:
    """`build_graph_inputs(store)`, once per store (`store.derived.memo`)."""
    return store.derived.memo("replay.graph.inputs", lambda: build_graph_inputs(store))


def seconds_per_token(store, throughput: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per model, seconds per prefilled and per decoded token (NaN where the throughput is
    unknown), from the manifest, or from `throughput` {model: (prefill tokens/s, decode
    tokens/s)} where given."""
    models = store.manifest.models
    pre = np.full(len(models), math.nan)
    dec = np.full(len(models), math.nan)
    for i, mod in enumerate(models):
        p, dd = mod.prefill_tokens_per_s, mod.decode_tokens_per_s
        if throughput and mod.name in throughput:
            p, dd = throughput[mod.name]
        if p:
            pre[i] = 1.0 / float(p)
        if dd:
            dec[i] = 1.0 / float(dd)
    return pre, dec
