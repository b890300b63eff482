"""The host side of GPU replay: transfers, launches, chunking, and the streamed scan.

Memory. The store's arrays go to the GPU once per store (`device_inputs`, kept in
`store.derived`). Memo tables are built on the GPU a chunk of questions at a time, each chunk at
most `memo_entries()` entries (a share of the GPU's free memory), and configurations are looked
up a chunk at a time, their running sums copied up and back so that every sum is added in the
CPU kernel's order whatever the chunking. The exhaustive scan keeps the memo of every question on
the GPU (needed for its per-replicate sums; rows x replicates x counts entries, small beside the
space) and scans the configurations a chunk of prefixes at a time (replay/scan_top.py keeps only
the best of each chunk).

This module imports nothing of the engine (the engine calls it): what it needs of a store's
layout comes in as arguments (`layout`: replay.engine._pool_layout).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError

THREADS = 128  # threads per block
MAX_THREADS = 1 << 17  # threads of one grid-stride launch (bounds the memo build's scratch)
SIM_THREADS = 4  # under NUMBA_ENABLE_CUDASIM: each thread is a Python thread
SCAN_CELLS = 8_000_000  # scanned configurations per chunk (five float64 outputs each: 320 MB)
LOOKUP_BYTES = 1 << 30  # device memory for one chunk of looked-up configurations' sums
MEMO_ENTRY_BYTES = 33  # ans int64 + score, tok, flop float64 + flag uint8


def _cuda():
    from numba import cuda

    return cuda


def _kernels():
    from . import kernels

    return kernels


def _dims(n_tasks: int) -> tuple[int, int]:
    """(blocks, threads per block) of a grid-stride launch over n_tasks."""
    if _kernels().SIMULATOR:
        return 1, SIM_THREADS
    blocks = max(1, min(math.ceil(n_tasks / THREADS), MAX_THREADS // THREADS))
    return blocks, THREADS


MEMO_ENTRIES: int | None = None  # set: memo entries per chunk, whatever the GPU has (tests)


def memo_entries() -> int:
    """Memo entries one chunk of questions may use: a third of the GPU's free memory (2 GiB
    where the driver cannot say, as the simulator cannot), or MEMO_ENTRIES when set."""
    if MEMO_ENTRIES is not None:
        return MEMO_ENTRIES
    try:
        free = float(_cuda().current_context().get_memory_info()[0])
    except Exception:  # pragma: no cover - a driver that cannot say
        free = math.nan
    if not math.isfinite(free) or free <= 0:
        free = float(2 << 30)
    return max(1, int(free // 3 // MEMO_ENTRY_BYTES))


# field order of the kernels' store arguments (replay.derived.KernelInputs names)
_STORE_FIELDS = ("question_hash", "stage_agg", "qsm_pool_off", "pool_ctx", "pool_off", "pool_prompt", "s_answer",
                 "s_score", "s_completion", "s_packed", "gold", "ans_item_off", "ans_items", "pool_fus_off",
                 "fus_size", "fus_answer", "fus_score", "fus_tokens", "fus_subset_completion", "stage_indep")
_LOOKUP_FIELDS = ("qsm_pool_off", "pool_ctx", "pool_off", "stage_indep", "score_rule")


def device_inputs(store) -> dict:
    """The kernel inputs as device arrays, copied once per store."""
    def build():
        cuda = _cuda()
        A = store.derived.kernel_inputs
        return {f: cuda.to_device(np.ascontiguousarray(getattr(A, f))) for f in A._fields}

    return store.derived.memo("gpu.device_inputs", build)


@dataclass
class DeviceMemo:
    """Memo tables on the GPU (the layout of replay.engine.MemoTables, plus memo_flop: each
    entry's FLOPs, (2 x params) x tokens)."""

    pool_row: object
    row_nmax: object
    row_base: object
    ans: object
    score: object
    tok: object
    flag: object
    flop: object
    n_entries: int

    def to_host(self) -> tuple:
        """(pool_row, row_nmax, row_base, ans, score, tok, flag) as host arrays: the fields of
        replay.engine.MemoTables, in order."""
        n = self.n_entries
        return (self.pool_row.copy_to_host(), self.row_nmax.copy_to_host(), self.row_base.copy_to_host(),
                self.ans.copy_to_host()[:n], self.score.copy_to_host()[:n], self.tok.copy_to_host()[:n],
                self.flag.copy_to_host()[:n])


def memo_rows(layout, questions: np.ndarray, replicates: int):
    """The rows of a memo (as replay.engine.memo_tables lays them out), from the pool layout
    (q_of_pool, stage_of_pool, pool_nmax: replay.engine._pool_layout): (pool_row, rows,
    row_nmax, row_base, n_entries)."""
    q_of_pool, _, pool_nmax = layout
    rows = np.flatnonzero(np.isin(q_of_pool, questions) & (pool_nmax > 0))
    row_nmax = pool_nmax[rows].astype(np.int64)
    row_base = np.concatenate([[0], np.cumsum(row_nmax * replicates)[:-1]]).astype(np.int64)
    pool_row = np.full(len(pool_nmax), -1, dtype=np.int64)
    pool_row[rows] = np.arange(len(rows))
    return pool_row, rows, row_nmax, row_base, int((row_nmax * replicates).sum())


def build_memo(store, layout, questions: np.ndarray, *, replicates: int, seed: int) -> DeviceMemo:
    """Memo tables of `questions` on the GPU (replay.engine.memo_tables' numbers); `layout`:
    replay.engine._pool_layout of the counts needed."""
    cuda = _cuda()
    K = _kernels()
    d = store.derived
    a = store.arrays
    D = device_inputs(store)
    pool_row, rows, row_nmax, row_base, n = memo_rows(layout, questions, replicates)
    row_q = (d.pool_qsm[rows] // (a.n_stages * a.n_models)).astype(np.int64)
    row_stage = d.pool_stage[rows].astype(np.int64)
    row_scale = 2.0 * a.model_params[d.pool_qsm[rows] % a.n_models]  # 2 x params, as the CPU kernels
    blocks, threads = _dims(len(rows) * replicates)
    n_thr = blocks * threads
    width = d.max_pool + 1
    items = max(d.n_items, 1)
    A = d.kernel_inputs
    memo = DeviceMemo(cuda.to_device(pool_row), cuda.to_device(row_nmax), cuda.to_device(row_base),
                      cuda.device_array(max(n, 1), np.int64), cuda.device_array(max(n, 1), np.float64),
                      cuda.device_array(max(n, 1), np.float64), cuda.device_array(max(n, 1), np.uint8),
                      cuda.device_array(max(n, 1), np.float64), n)
    if len(rows) == 0:
        return memo
    scratch = cuda.device_array((d.max_pool, n_thr), A.s_packed.dtype)
    key = cuda.to_device(np.zeros((d.max_pool, n_thr), np.int64))
    rep = cuda.device_array((d.max_pool, n_thr), np.int64)
    icount = cuda.to_device(np.zeros((items, n_thr), np.int64))
    seen = cuda.device_array((items, n_thr), np.int64)
    kept = cuda.device_array((items, n_thr), np.int64)
    K.memo_build[blocks, threads](
        *(D[f] for f in _STORE_FIELDS), int(A.pack_bits[0]), a.n_stages, a.n_models, width, replicates,
        np.uint64(seed), cuda.to_device(rows.astype(np.int64)), cuda.to_device(row_q), cuda.to_device(row_stage),
        memo.row_nmax, memo.row_base, cuda.to_device(row_scale), scratch, key, rep, icount, seen, kept,
        memo.ans, memo.score, memo.tok, memo.flag, memo.flop)
    cuda.synchronize()
    return memo


def replay_sums(store, models: np.ndarray, counts: np.ndarray, qidx: np.ndarray, R: int, seed: int, sums, layout,
                progress=None) -> None:
    """The memo method of replay.engine.replay_sums on the GPU: adds into `sums` (host arrays,
    zero) exactly what replay.engine._memo adds. `layout`: replay.engine._pool_layout of the
    counts the configurations need."""
    cuda = _cuda()
    K = _kernels()
    a = store.arrays
    D = device_inputs(store)
    q_of_pool, _, pool_nmax = layout
    per_q = np.zeros(a.n_questions)
    np.add.at(per_q, q_of_pool, pool_nmax * R)
    budget = memo_entries()
    C, S, Q = len(models), a.n_stages, len(qidx)
    # configurations per lookup chunk: their sums (score_q, score_r, 5 x per stage, 2) and choices
    c_step = max(1, LOOKUP_BYTES // (8 * (Q + R + 5 * S + 2)))
    d_models = d_counts = None
    if C <= c_step:  # one chunk: the choices go up once
        d_models, d_counts = cuda.to_device(models), cuda.to_device(counts)
    start = 0
    while start < Q:
        stop = start + 1
        total = per_q[qidx[start]]
        while stop < Q and total + per_q[qidx[stop]] <= budget:
            total += per_q[qidx[stop]]
            stop += 1
        chunk = qidx[start:stop].astype(np.int64)
        memo = build_memo(store, layout, chunk, replicates=R, seed=seed)
        d_q = cuda.to_device(chunk)
        for c0 in range(0, C, c_step):
            c1 = min(C, c0 + c_step)
            # the running sums go up and come back: every sum continues in the CPU's order
            parts = [cuda.to_device(np.ascontiguousarray(x[c0:c1])) for x in
                     (sums.score_q, sums.score_r, sums.tokens, sums.flops, sums.st_score, sums.st_tokens,
                      sums.st_fallback)]
            dm, dc = (d_models, d_counts) if d_models is not None else (cuda.to_device(models[c0:c1]),
                                                                       cuda.to_device(counts[c0:c1]))
            blocks, threads = _dims(c1 - c0)
            K.memo_lookup[blocks, threads](
                *(D[f] for f in _LOOKUP_FIELDS), a.n_stages, a.n_models, d_q, start, R, dm, dc,
                memo.pool_row, memo.row_nmax, memo.row_base, memo.ans, memo.score, memo.tok, memo.flag, memo.flop,
                *parts)
            for host, dev in zip((sums.score_q, sums.score_r, sums.tokens, sums.flops, sums.st_score,
                                  sums.st_tokens, sums.st_fallback), parts):
                host[c0:c1] = dev.copy_to_host()
        del memo
        if progress is not None:
            progress(C * (stop - start) / Q)
        start = stop


def direct_chunks(store, groups, qidx: np.ndarray, R: int, seed: int, max_cells: int):
    """replay.engine._direct_chunks on the GPU: the same chunks of groups (at most max_cells
    configuration x question x replicate cells each, replay.engine.MAX_CELLS), the same (config
    positions, arrays) yielded; the per-stage sums over replicates are added on the host, in
    replicate order, from the kernel's per-replicate figures."""
    cuda = _cuda()
    K = _kernels()
    d = store.derived
    a = store.arrays
    A = d.kernel_inputs
    D = device_inputs(store)
    Q, S = len(qidx), a.n_stages
    order, grp_models, grp_counts, grp_off, last_counts = groups
    items = max(d.n_items, 1)
    scale = cuda.to_device(2.0 * a.model_params)  # 2 x params, as the CPU kernels
    d_q = cuda.to_device(np.asarray(qidx, dtype=np.int64))
    G = len(grp_off) - 1
    g = 0
    scratch_for = None
    while g < G:
        g1 = g + 1
        while g1 < G and (grp_off[g1 + 1] - grp_off[g]) * Q * R <= max_cells:
            g1 += 1
        c0, c1 = int(grp_off[g]), int(grp_off[g1])
        C = c1 - c0
        blocks, threads = _dims((g1 - g) * Q * R)
        n_thr = blocks * threads
        if scratch_for != n_thr:  # per-thread scratch, one column each
            scratch_for = n_thr
            mp = d.max_pool
            scr = (cuda.device_array((mp, n_thr), A.s_packed.dtype), cuda.to_device(np.zeros((mp, n_thr), np.int64)),
                   cuda.device_array((mp, n_thr), np.int64), cuda.to_device(np.zeros((items, n_thr), np.int64)),
                   cuda.device_array((items, n_thr), np.int64), cuda.device_array((items, n_thr), np.int64),
                   cuda.device_array((mp, n_thr), np.int64), cuda.device_array((mp, n_thr), np.float64),
                   cuda.device_array((mp, n_thr), np.float64), cuda.device_array((mp, n_thr), np.uint8),
                   cuda.device_array((mp, n_thr), np.float64))
        outs = [cuda.device_array((C, Q, R), np.float64) for _ in range(3)]
        st = [cuda.device_array((R, C, S, Q), dt) for dt in (np.float64, np.float64, np.int64)]
        K.replay_groups[blocks, threads](
            *(D[f] for f in _STORE_FIELDS), D["score_rule"], int(A.pack_bits[0]), S, a.n_models, d.max_pool + 1,
            d_q, R, np.uint64(seed), scale, cuda.to_device(np.ascontiguousarray(grp_models[g:g1])),
            cuda.to_device(np.ascontiguousarray(grp_counts[g:g1])), cuda.to_device(grp_off[g:g1 + 1] - c0),
            cuda.to_device(np.ascontiguousarray(last_counts[c0:c1])), *scr, *outs, *st)
        part = tuple(x.copy_to_host() for x in outs) + tuple(
            # [R, C, S, Q] summed over replicates, in order (a reduction along the outer axis)
            np.add.reduce(x.copy_to_host(), axis=0) for x in st)
        yield order[c0:c1], part
        g = g1


def prefixes(n_ch: np.ndarray, p0: int, p1: int) -> np.ndarray:
    """Prefixes p0..p1-1 of a product space (a choice index per stage but the last), in the
    mixed-radix order of replay.engine.scan_space (the first stage varies slowest)."""
    S1 = len(n_ch) - 1
    if S1 == 0:
        return np.zeros((p1 - p0, 0), np.int64)
    return np.stack(np.unravel_index(np.arange(p0, p1, dtype=np.int64), tuple(int(x) for x in n_ch[:S1])),
                    axis=1).astype(np.int64)


def scan_sums(store, ch_model, ch_count, n_ch, qidx, layout, *, replicates: int, seed: int, chunk_cells=None):
    """Yield (p0, p1, tot, sq, q_sq, q_ends, flops) per chunk of prefixes: the sums of
    replay.kernels.scan_product for configurations (p0..p1-1, every last choice), on the GPU,
    from one memo of every question (`layout`: replay.engine._pool_layout of the choices)."""
    cuda = _cuda()
    K = _kernels()
    a = store.arrays
    S = a.n_stages
    KL = int(n_ch[S - 1])
    P = int(np.prod(n_ch[: S - 1])) if S > 1 else 1
    step = max(1, (chunk_cells or SCAN_CELLS) // KL)
    qidx = np.asarray(qidx, dtype=np.int64)
    memo = _scan_memo(store, layout, qidx, replicates, seed)
    D = device_inputs(store)
    d_q, d_m, d_c = cuda.to_device(qidx), cuda.to_device(ch_model), cuda.to_device(ch_count)
    for p0 in range(0, P, step):
        p1 = min(P, p0 + step)
        pre = prefixes(n_ch, p0, p1)
        d_outs = [cuda.device_array((p1 - p0, KL), np.float64) for _ in range(5)]
        blocks, threads = _dims((p1 - p0) * KL)
        K.scan_product[blocks, threads](
            *(D[f] for f in _LOOKUP_FIELDS), S, a.n_models, d_q, replicates, d_m, d_c, KL, cuda.to_device(pre),
            memo.pool_row, memo.row_nmax, memo.row_base, memo.ans, memo.score, memo.flop, *d_outs)
        yield (p0, p1, *(x.copy_to_host() for x in d_outs))


def _scan_memo(store, layout, qidx, replicates: int, seed: int) -> DeviceMemo:
    """The memo of every question of a scan, on the GPU; a ConfigError where it cannot fit."""
    n = memo_rows(layout, qidx, replicates)[4]
    if n > 2 * memo_entries():
        raise ConfigError("scan", f"the memo tables of {len(qidx)} questions x {replicates} replicates "
                                  f"({n:,} entries) do not fit the GPU's free memory: fewer replicates or "
                                  "questions, or --device cpu")
    return build_memo(store, layout, qidx, replicates=replicates, seed=seed)


def question_sums(store, ch_model, ch_count, n_ch, prefix_idx, qidx, layout, *, replicates: int, seed: int,
                  reference):
    """replay.scan_stats.question_sums' four [P, K] sums (s1, s2, d1, d2) on the GPU, over chunks
    of prefixes, from one memo of every question."""
    cuda = _cuda()
    K = _kernels()
    a = store.arrays
    S = a.n_stages
    KL = int(n_ch[S - 1])
    memo = _scan_memo(store, layout, qidx, replicates, seed)
    D = device_inputs(store)
    d_q, d_m, d_c = cuda.to_device(qidx), cuda.to_device(ch_model), cuda.to_device(ch_count)
    d_ref = cuda.to_device(np.ascontiguousarray(reference, dtype=np.float64))
    P = len(prefix_idx)
    out = [np.zeros((P, KL)) for _ in range(4)]
    step = max(1, SCAN_CELLS // KL)
    for p0 in range(0, P, step):
        p1 = min(P, p0 + step)
        d_out = [cuda.device_array((p1 - p0, KL), np.float64) for _ in range(4)]
        blocks, threads = _dims((p1 - p0) * KL)
        K.scan_question_sums[blocks, threads](
            D["qsm_pool_off"], D["pool_ctx"], D["pool_off"], D["stage_indep"], D["score_rule"], S, a.n_models, d_q,
            replicates, d_m, d_c, KL, cuda.to_device(np.ascontiguousarray(prefix_idx[p0:p1])), memo.pool_row,
            memo.row_nmax, memo.row_base, memo.ans, memo.score, d_ref, *d_out)
        for host_arr, dev in zip(out, d_out):
            host_arr[p0:p1] = dev.copy_to_host()
    return out


