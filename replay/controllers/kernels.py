"""Numba kernels of the built-in controllers: same semantics and random numbers as the Python
engine (base.py) running the reference classes (builtin.py), so the tests compare them exactly.

One episode = one (controller setting, question, replicate). Its per-sample state lives in
scratch arrays indexed by the opening slot j: smp (global sample index), dep (depth in
intervals of K tokens), fin (finished), prn (pruned), rd (latest reading, -1 = none). The pool
is opened in the engine's draw order: slot j is position j of the partial Fisher-Yates shuffle
driven by stream_start(seed, qhash, r, stage), one `shuffle_step` of replay/kernels.py per
opened sample, undone after the episode.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..kernels import shuffle_step, stream_start
from .builtin import majority_confidence as _majority_confidence_py
from ..kernel_cache import install as _cache_install

_cache_install()  # before the decorators: the cache is keyed on every kernel module

MAJORITY, ADAPTIVE, ESC, PROBE = 0, 1, 2, 3
N_PRM = 5  # parameters per setting (unused ones are 0)

majority_confidence = njit(cache=True)(_majority_confidence_py)


@njit(cache=True)
def _open(rng, perm, swaps, n_open, size, base, smp, dep, fin, prn, rd, streak):
    j = n_open
    # the engine's own shuffle step: slot j is the engine's j-th draw (rng = [state, last output])
    st, x, t = shuffle_step(perm, swaps, rng[0], rng[1], j, size)
    rng[0] = st
    rng[1] = x
    smp[j] = base + t
    dep[j] = 0
    fin[j] = False
    prn[j] = False
    rd[j] = -1
    streak[j] = 0
    return j + 1


@njit(cache=True)
def _advance(j, steps, K, smp, dep, fin, rd, s_completion, s_answer):
    """Extend slot j by `steps` intervals (steps < 0: to its end), capped at its real length."""
    L = s_completion[smp[j]]
    n_int = (L + K - 1) // K
    d = n_int if steps < 0 else min(dep[j] + steps, n_int)
    dep[j] = d
    if d >= n_int:
        fin[j] = True
        rd[j] = s_answer[smp[j]]


@njit(cache=True)
def _probe(j, smp, dep, rd, probe_off, probe_answer, na0, na1):
    i = smp[j]
    o0 = probe_off[i]
    n = probe_off[i + 1] - o0
    d = dep[j]
    if d <= 0 or n == 0:
        rd[j] = -1
    else:
        a = probe_answer[o0 + min(d, n) - 1]
        rd[j] = -1 if (a == na0 or a == na1) else a


@njit(cache=True)
def _default_answer(n_open, fin, prn, rd, smp, s_answer, s_local, cnt):
    """Majority over finished unpruned finals (ties to the first opened); else over readings."""
    any_fin = False
    for j in range(n_open):
        if fin[j] and not prn[j]:
            any_fin = True
            break
    best = -1
    if any_fin:
        top = 0
        for j in range(n_open):
            if fin[j] and not prn[j]:
                cnt[s_local[smp[j]]] += 1
        for j in range(n_open):
            if fin[j] and not prn[j]:
                c = cnt[s_local[smp[j]]]
                if c > top:
                    top = c
                    best = s_answer[smp[j]]
        for j in range(n_open):
            cnt[s_local[smp[j]]] = 0
        return best
    top = 0
    for j in range(n_open):
        if prn[j] or rd[j] < 0:
            continue
        c = 0
        for k in range(n_open):
            if not prn[k] and rd[k] == rd[j]:
                c += 1
        if c > top:
            top = c
            best = rd[j]
    return best


@njit(cache=True)
def _score(a, n_open, fin, prn, smp, s_answer, s_score, base, size, gold):
    if a < 0:
        return 0.0
    for j in range(n_open):
        if fin[j] and not prn[j] and s_answer[smp[j]] == a:
            return s_score[smp[j]]
    for s in range(base, base + size):
        if s_answer[s] == a:
            return s_score[s]
    if gold < 0:
        return np.nan
    return 1.0 if a == gold else 0.0


# ---- the controllers: each returns (explicit answer id, or -2 for the default rule; n_open; n_probes)


@njit(cache=True)
def _majority(n, size, base, K, rng, perm, swaps, smp, dep, fin, prn, rd, streak, s_completion, s_answer):
    n_open = 0
    for _ in range(min(n, size)):
        n_open = _open(rng, perm, swaps, n_open, size, base, smp, dep, fin, prn, rd, streak)
        _advance(n_open - 1, -1, K, smp, dep, fin, rd, s_completion, s_answer)
    return -2, n_open, 0


@njit(cache=True)
def _adaptive(threshold, max_samples, size, base, K, rng, perm, swaps, smp, dep, fin, prn, rd, streak,
              s_completion, s_answer, s_local, cnt, seen):
    n_open = 0
    n_seen = 0
    for _ in range(min(max_samples, size)):
        n_open = _open(rng, perm, swaps, n_open, size, base, smp, dep, fin, prn, rd, streak)
        _advance(n_open - 1, -1, K, smp, dep, fin, rd, s_completion, s_answer)
        a = s_local[smp[n_open - 1]]
        if cnt[a] == 0:
            seen[n_seen] = a
            n_seen += 1
        cnt[a] += 1
        if n_open >= 2:
            v1 = 0
            v2 = 0
            for k in range(n_seen):
                c = cnt[seen[k]]
                if c > v1:
                    v2 = v1
                    v1 = c
                elif c > v2:
                    v2 = c
            if majority_confidence(v1, v2) > threshold:
                break
    for k in range(n_seen):
        cnt[seen[k]] = 0
    return -2, n_open, 0


@njit(cache=True)
def _esc(window, max_samples, size, base, K, rng, perm, swaps, smp, dep, fin, prn, rd, streak, s_completion, s_answer):
    n_open = 0
    for _ in range(min(max_samples, size)):
        n_open = _open(rng, perm, swaps, n_open, size, base, smp, dep, fin, prn, rd, streak)
        _advance(n_open - 1, -1, K, smp, dep, fin, rd, s_completion, s_answer)
        if n_open % window == 0:
            a0 = s_answer[smp[n_open - window]]
            same = True
            for j in range(n_open - window + 1, n_open):
                if s_answer[smp[j]] != a0:
                    same = False
                    break
            if same:
                return a0, n_open, 0
    return -2, n_open, 0


@njit(cache=True)
def _add_vote(a, j, n_dist, vans, vcnt, vmin):
    """Count a vote for answer a from slot j; distinct answers keep their smallest slot."""
    for k in range(n_dist):
        if vans[k] == a:
            vcnt[k] += 1
            if j < vmin[k]:
                vmin[k] = j
            return n_dist
    vans[n_dist] = a
    vcnt[n_dist] = 1
    vmin[n_dist] = j
    return n_dist + 1


@njit(cache=True)
def _leader(n_dist, vans, vcnt, vmin):
    """(leading answer, top count, runner-up count); a tie goes to the answer of the earliest slot."""
    v1 = 0
    v2 = 0
    for k in range(n_dist):
        c = vcnt[k]
        if c > v1:
            v2 = v1
            v1 = c
        elif c > v2:
            v2 = c
    leader = -1
    lmin = 0
    for k in range(n_dist):
        if vcnt[k] == v1 and (leader < 0 or vmin[k] < lmin):
            leader = vans[k]
            lmin = vmin[k]
    return leader, v1, v2


@njit(cache=True)
def _probe_ctrl(width, settle, patience, threshold, max_samples, size, base, K, rng, perm, swaps, smp, dep, fin, prn,
                rd, against, s_completion, s_answer, probe_off, probe_answer, na0, na1, run, runl, sv, vans, vcnt, vmin):
    cap = min(max_samples, size)
    n_open = 0
    n_probes = 0
    n_dist = 0
    n_votes = 0
    seen_votes = 0
    leader = -1
    v1 = 0
    for _ in range(min(width, cap)):
        n_open = _open(rng, perm, swaps, n_open, size, base, smp, dep, fin, prn, rd, against)
        runl[n_open - 1] = 0
        sv[n_open - 1] = -1
    while True:
        n_run = 0
        for j in range(n_open):
            if not prn[j] and not fin[j] and sv[j] < 0:
                run[n_run] = j
                n_run += 1
        if n_run == 0:
            break
        for t in range(n_run):  # one round: every running sample one interval deeper, then read
            j = run[t]
            prev = rd[j]
            _advance(j, 1, K, smp, dep, fin, rd, s_completion, s_answer)
            if fin[j]:
                n_dist = _add_vote(s_answer[smp[j]], j, n_dist, vans, vcnt, vmin)
                n_votes += 1
                continue
            _probe(j, smp, dep, rd, probe_off, probe_answer, na0, na1)
            n_probes += 1
            a = rd[j]
            if a < 0:
                runl[j] = 0
            elif a == prev:
                runl[j] += 1
            else:
                runl[j] = 1
            if settle > 0 and runl[j] >= settle:
                sv[j] = a
                n_dist = _add_vote(a, j, n_dist, vans, vcnt, vmin)
                n_votes += 1
        if n_votes != seen_votes:  # votes only ever grow: recompute only when they did
            seen_votes = n_votes
            leader, v1, v2 = _leader(n_dist, vans, vcnt, vmin)
            if n_votes >= 2 and majority_confidence(v1, v2) > threshold:
                vcnt[:n_dist] = 0
                return leader, n_open, n_probes
        for j in range(n_open):
            if prn[j] or fin[j] or sv[j] >= 0 or rd[j] < 0:
                continue
            if v1 >= 2 and rd[j] != leader:
                against[j] += 1
            else:
                against[j] = 0
            if against[j] >= patience:
                prn[j] = True
        n_run = 0
        for j in range(n_open):
            if not prn[j] and not fin[j] and sv[j] < 0:
                n_run += 1
        for _ in range(min(width - n_run, cap - n_open)):
            n_open = _open(rng, perm, swaps, n_open, size, base, smp, dep, fin, prn, rd, against)
            runl[n_open - 1] = 0
            sv[n_open - 1] = -1
    if n_votes == 0:
        return -2, n_open, n_probes
    leader, v1, v2 = _leader(n_dist, vans, vcnt, vmin)
    vcnt[:n_dist] = 0
    return leader, n_open, n_probes


@njit(cache=True, parallel=True)
def run_grid(codes, prm, pools_q, qhash, gold_q, n_rep, seed, stage, K, probe_cost, na0, na1,
             pool_off, pool_prompt, s_answer, s_local, s_score, s_completion, probe_off, probe_answer, max_pool,
             n_chunks_hint, out_score, out_tokens, out_opened, out_probes):
    """Every (setting c, question qi, replicate r): out_*[c, qi, r]. Parallel over (c, qi)."""
    P = codes.shape[0]
    Q = pools_q.shape[0]
    n_tasks = P * Q
    n_chunks = min(n_tasks, n_chunks_hint)
    for chunk in prange(n_chunks):
        perm = np.arange(max_pool)
        swaps = np.empty(max_pool, np.int64)
        smp = np.empty(max_pool, np.int64)
        dep = np.zeros(max_pool, np.int64)
        fin = np.zeros(max_pool, np.bool_)
        prn = np.zeros(max_pool, np.bool_)
        rd = np.full(max_pool, -1, np.int64)
        streak = np.zeros(max_pool, np.int64)
        cnt = np.zeros(max_pool, np.int64)
        seen = np.empty(max_pool, np.int64)
        run = np.empty(max_pool, np.int64)
        runl = np.zeros(max_pool, np.int64)
        sv = np.full(max_pool, -1, np.int64)
        vans = np.empty(max_pool, np.int64)
        vcnt = np.zeros(max_pool, np.int64)
        vmin = np.zeros(max_pool, np.int64)
        rng = np.zeros(2, np.uint64)
        for task in range(chunk * n_tasks // n_chunks, (chunk + 1) * n_tasks // n_chunks):
            c = task // Q
            qi = task % Q
            p = pools_q[qi]
            base = pool_off[p]
            size = pool_off[p + 1] - base
            code = codes[c]
            for r in range(n_rep):
                rng[0] = stream_start(seed, qhash[qi], r, stage)
                rng[1] = 0
                if code == MAJORITY:
                    ans, n_open, n_probes = _majority(np.int64(prm[c, 0]), size, base, K, rng, perm, swaps, smp, dep,
                                                      fin, prn, rd, streak, s_completion, s_answer)
                elif code == ADAPTIVE:
                    ans, n_open, n_probes = _adaptive(prm[c, 0], np.int64(prm[c, 1]), size, base, K, rng, perm, swaps,
                                                      smp, dep, fin, prn, rd, streak, s_completion, s_answer, s_local,
                                                      cnt, seen)
                elif code == ESC:
                    ans, n_open, n_probes = _esc(np.int64(prm[c, 0]), np.int64(prm[c, 1]), size, base, K, rng, perm,
                                                 swaps, smp, dep, fin, prn, rd, streak, s_completion, s_answer)
                else:
                    ans, n_open, n_probes = _probe_ctrl(np.int64(prm[c, 0]), np.int64(prm[c, 1]), np.int64(prm[c, 2]),
                                                        prm[c, 3], np.int64(prm[c, 4]), size, base, K, rng, perm,
                                                        swaps, smp, dep, fin, prn, rd, streak, s_completion, s_answer,
                                                        probe_off, probe_answer, na0, na1, run, runl, sv, vans, vcnt,
                                                        vmin)
                if ans == -2:
                    ans = _default_answer(n_open, fin, prn, rd, smp, s_answer, s_local, cnt)
                out_score[c, qi, r] = _score(ans, n_open, fin, prn, smp, s_answer, s_score, base, size, gold_q[qi])
                gen = np.int64(0)
                for j in range(n_open):
                    L = s_completion[smp[j]]
                    g = dep[j] * K
                    gen += g if g < L else L
                if n_open > 0:
                    gen += pool_prompt[p]
                out_tokens[c, qi, r] = gen + probe_cost * n_probes
                out_opened[c, qi, r] = n_open
                out_probes[c, qi, r] = n_probes
                for j in range(n_open - 1, -1, -1):  # shuffle back to the identity
                    k = swaps[j]
                    t = perm[j]
                    perm[j] = perm[k]
                    perm[k] = t
    return 0
