"""The best configurations of a whole product space per budget, streamed: `scan_top`.

`replay.engine.scan_space` returns every configuration's figures (host memory grows with the
space); `scan_top` scores the space a chunk of prefixes at a time, with the same kernels and the
same numbers (on the CPU, `kernels.scan_product`; on a GPU, replay/gpu), and keeps only the best
`top` per budget, so a space of 10^8 configurations needs memory for one chunk. `replay scan` is
its command.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .config import Config
from .engine import (_needed_of_choices, _pool_layout, _scan_expected, _scan_setup, _scan_stats, kernel_inputs,
                     memo_tables)
from .errors import ConfigError
from .gpu import resolve_device
from .gpu.host import SCAN_CELLS, prefixes

def scan_chunks(store, ch_model, ch_count, n_ch, qidx, *, replicates: int, seed: int, device: str, chunk_cells=None):
    """Yield (p0, p1, tot, sq, q_sq, q_ends, flops) per chunk of prefixes: the sums of
    replay.kernels.scan_product for configurations (p0..p1-1, every last choice), on `device`
    ('cpu' or 'cuda'). The same numbers on both."""
    from . import kernels

    a = store.arrays
    S = a.n_stages
    KL = int(n_ch[S - 1])
    P = int(np.prod(n_ch[: S - 1])) if S > 1 else 1
    qidx = np.asarray(qidx, dtype=np.int64)
    nmax = _needed_of_choices(store, ch_model, ch_count, n_ch)
    if device == "cuda":
        from .gpu.host import scan_sums

        yield from scan_sums(store, ch_model, ch_count, n_ch, qidx, _pool_layout(store, nmax), replicates=replicates,
                             seed=seed, chunk_cells=chunk_cells or SCAN_CELLS)
        return
    memo = memo_tables(store, nmax, qidx, replicates=replicates, seed=seed)
    A = kernel_inputs(store)
    step = max(1, (chunk_cells or SCAN_CELLS) // KL)
    for p0 in range(0, P, step):
        p1 = min(P, p0 + step)
        outs = [np.zeros((p1 - p0, KL)) for _ in range(5)]
        kernels.scan_product(A, S, a.n_models, qidx, replicates, ch_model, ch_count, n_ch, prefixes(n_ch, p0, p1),
                             memo.pool_row, memo.row_nmax, memo.row_base, memo.ans, memo.score, memo.tok, *outs)
        yield (p0, p1, *outs)


@dataclass(frozen=True)
class TopConfig:
    """One of the best configurations of a scan under a budget."""

    config: object  # replay.config.Config
    score: float  # mean over questions and replicates
    stderr: float  # the replicate error
    ci_lo: float  # the 95% interval over questions
    ci_hi: float
    units: float  # measured mean cost per question, in budget units
    expected: float  # expected cost per question (the budget rule)


@dataclass(frozen=True)
class ScanTop:
    """The best `top` configurations of a product space under each budget (highest score, ties
    to the cheapest measured cost, then to scan order: `SpaceScan.best`'s order)."""

    budgets: tuple  # float or None (no budget), in the order asked
    best: tuple  # per budget: tuple of TopConfig, best first
    feasible: tuple  # per budget: configurations within it
    evaluated: int  # configurations scanned
    device: str  # 'cpu' or 'cuda'
    questions: int
    replicates: int
    seed: int


def scan_top(store, choices: Sequence[Sequence], *, budgets: Sequence = (None,), top: int = 10, questions=None,
             replicates: int = 16, seed: int = 0, device: str | None = None, chunk_cells: int | None = None) -> ScanTop:
    """Score every configuration of a product space, as `replay.engine.scan_space` does, and
    keep only the best `top` per budget, a chunk of configurations at a time: host memory grows
    with the chunk, not with the space.

    Args:
        store: the store.
        choices: per stage, its `StageChoice`s (as scan_space takes them).
        budgets: budgets in normalised units per question (the budget rule: expected cost); None
            for no budget.
        top: configurations kept per budget.
        questions: which questions (as in `evaluate`).
        replicates: random draws per question.
        seed: the seed of every draw.
        device: 'cpu', 'cuda' or 'auto' (replay.gpu.resolve_device).
        chunk_cells: configurations per chunk (default SCAN_CELLS).

    Returns:
        A `ScanTop`.

    Raises:
        ConfigError: invalid choices, top < 1, or device 'cuda' without a usable GPU.
    """

    if top < 1:
        raise ConfigError("top", "must be at least 1")
    choices, ch_model, ch_count, n_ch = _scan_setup(store, choices)
    qidx = store.question_indices(questions).astype(np.int64)
    S = store.arrays.n_stages
    size = int(np.prod(n_ch))
    dev = resolve_device(device, work=_scan_work(store, n_ch, len(qidx), replicates))
    budgets = tuple(None if b is None else float(b) for b in budgets)
    KL = int(n_ch[S - 1])
    kept = [None] * len(budgets)  # per budget: arrays (flat, score, units, stderr, lo, hi, expected)
    feasible = [0] * len(budgets)
    Q, R = len(qidx), replicates
    for p0, p1, tot, sq, q_sq, q_ends, flops in scan_chunks(store, ch_model, ch_count, n_ch, qidx, replicates=R,
                                                           seed=seed, device=dev, chunk_cells=chunk_cells):
        mean, stderr, lo, hi, units = _scan_stats(store, tot, sq, q_sq, q_ends, flops, Q, R)
        expected = _scan_expected(store, ch_model, ch_count, n_ch, prefixes(n_ch, p0, p1))
        flat = (np.arange(p0, p1, dtype=np.int64)[:, None] * KL + np.arange(KL)[None, :]).ravel()
        cols = (flat, mean.ravel(), units.ravel(), stderr.ravel(), lo.ravel(), hi.ravel(), expected.ravel())
        for b, budget in enumerate(budgets):
            ok = np.ones(len(flat), bool) if budget is None else cols[6] <= budget * (1 + 1e-9)
            feasible[b] += int(ok.sum())
            sel = np.flatnonzero(ok)
            cand = [c[sel] for c in cols]
            if kept[b] is not None:  # earlier chunks first: ties keep scan order
                cand = [np.concatenate([old, new]) for old, new in zip(kept[b], cand)]
            order = np.lexsort((cand[2], -cand[1]))[:top]
            kept[b] = [c[order] for c in cand]
    best = []
    for b in range(len(budgets)):
        rows = []
        if kept[b] is not None:
            for flat, score, units, se, lo, hi, ex in zip(*kept[b]):
                i, k = divmod(int(flat), KL)
                rows.append(TopConfig(_scan_config(choices, n_ch, i, k), float(score), float(se), float(lo), float(hi),
                                      float(units), float(ex)))
        best.append(tuple(rows))
    return ScanTop(budgets=budgets, best=tuple(best), feasible=tuple(feasible), evaluated=size, device=dev,
                   questions=Q, replicates=R, seed=seed)


def _scan_config(choices, n_ch, i: int, k: int):
    head = prefixes(n_ch, i, i + 1)[0]
    return Config(tuple(choices[s][j] for s, j in enumerate(head)) + (choices[-1][k],))


def _scan_work(store, n_ch, Q: int, R: int) -> float:
    """Draws of a scan (lookups, counted as draws), for device 'auto'."""
    return float(np.prod(n_ch)) * Q * R * len(n_ch)
