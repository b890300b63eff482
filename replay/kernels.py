"""The replay kernels (Numba). `replay/reference.py` is the pure-Python oracle: same semantics,
same random numbers, so tests compare the two exactly.

Random numbers. Every (seed, question, replicate, stage) has its own stream: a SplitMix64
generator whose start is a hash of those four numbers alone. So two configurations evaluated
on the same question and replicate see the same luck (common random numbers), and the same
seed gives the same numbers on any machine. A draw of S outputs without replacement from a
pool of n is a partial Fisher-Yates shuffle driven by that stream: the first S positions of
the shuffle. The draws for S samples are therefore the first S of the draws for S+1, which
lets one pass along the shuffle score every sample count at once (the sweep).

A bounded random integer is taken as (u * bound) >> 32 from a 32-bit half u of a 64-bit
output (Lemire's multiply-shift without the rejection step): its bias is below bound / 2**32,
under 3e-8 for pools of 128. The shuffle uses both halves of each output: the high half at
even steps, the low half at odd steps.

Aggregations (codes from replay.schema.AGG_CODES):
  0 majority_vote  most frequent answer; a tie goes to the answer drawn first
  1 set_vote       list answers: keep items found in more than half of the S samples; if no
                   item has a majority, keep the items with the highest count. Scored by item
                   F1 against the stage's gold list
  2 best_score     the drawn output with the highest stored score (an oracle upper bound);
                   a tie goes to the one drawn first
  3 llm_fuse       one stored fusion of exactly S outputs, chosen uniformly from the pool's
                   stored fusions of that size; if none has that size, the largest smaller
                   size; if none is smaller, majority vote over S drawn outputs (a fallback)

Chaining. Stage k+1's pool is the one whose context key is stage k's aggregated answer. If
that key was not collected (fallback): the largest pool of that (question, stage, model),
ties to the smallest context id. The per-stage fallback flags are returned and reported.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

U64 = np.uint64
GOLDEN = U64(0x9E3779B97F4A7C15)
MIX1 = U64(0xBF58476D1CE4E5B9)
MIX2 = U64(0x94D049BB133111EB)
SALT_R = U64(0xD1B54A32D192ED03)
SALT_S = U64(0x8CB92BA72F3D8DD7)
SALT_N = U64(0xA0761D6478BD642F)
LOW32 = U64(0xFFFFFFFF)

AGG_MAJORITY = 0
AGG_SET = 1
AGG_BEST = 2
AGG_FUSE = 3


@njit(inline="always", cache=True)
def mix64(z):
    z = (z ^ (z >> U64(30))) * MIX1
    z = (z ^ (z >> U64(27))) * MIX2
    return z ^ (z >> U64(31))


@njit(inline="always", cache=True)
def stream_start(seed, qhash, r, s):
    """Start state of the random stream of (seed, question, replicate, stage)."""
    x = mix64(U64(seed) * GOLDEN ^ qhash)
    x = mix64(x ^ (U64(r) * SALT_R + GOLDEN))
    return mix64(x ^ (U64(s) * SALT_S + MIX1))


@njit(inline="always", cache=True)
def next_u64(state):
    state = state + GOLDEN
    return state, mix64(state)


@njit(inline="always", cache=True)
def bounded(x, bound):
    return np.int64(((x >> U64(32)) * U64(bound)) >> U64(32))


@njit(inline="always", cache=True)
def shuffle_step(perm, swaps, state, x, j, size):
    """Step j of a partial Fisher-Yates shuffle of perm[:size]: returns the drawn position."""
    if j & 1 == 0:
        state, x = next_u64(state)
        u = x >> U64(32)
    else:
        u = x & LOW32
    k = j + np.int64((u * U64(size - j)) >> U64(32))
    t = perm[k]
    perm[k] = perm[j]
    perm[j] = t
    swaps[j] = k
    return state, x, t


@njit(inline="always", cache=True)
def unshuffle(perm, swaps, n, key, s_local, base):
    """Undo n shuffle steps (perm back to the identity) and zero the vote keys they touched."""
    for j in range(n - 1, -1, -1):
        key[s_local[base + perm[j]]] = 0
        k = swaps[j]
        t = perm[j]
        perm[j] = perm[k]
        perm[k] = t


@njit(inline="always", cache=True)
def vote(key, rep, a, i, j, width):
    """Count one vote for pool-local answer a (sample i, drawn at step j); returns its key.

    key = count * width - (step of its first draw), width > pool size: the majority answer is
    the one with the largest key, and among equal counts the one drawn first, so the leader
    is tracked with one comparison per draw."""
    kk = key[a]
    if kk == 0:
        kk = width - j
        rep[a] = i
    else:
        kk += width
    key[a] = kk
    return kk


@njit(cache=True)
def find_pool(qsm_pool_off, pool_ctx, pool_off, n_stages, n_models, q, s, m, ctx):
    """Pool of (q, s, m) with context `ctx`; on a miss the largest pool. Returns (pool, fell_back)."""
    k = (q * n_stages + s) * n_models + m
    lo = qsm_pool_off[k]
    hi = qsm_pool_off[k + 1]
    for p in range(lo, hi):
        if pool_ctx[p] == ctx:
            return p, False
    best = lo
    for p in range(lo + 1, hi):
        if pool_off[p + 1] - pool_off[p] > pool_off[best + 1] - pool_off[best]:
            best = p
    return best, True


@njit(cache=True)
def find_pool_by_items(qsm_pool_off, pool_ctx, pool_off, ans_item_off, ans_items, n_stages, n_models,
                       q, s, m, kept, n_kept):
    """Like find_pool, for a set-vote upstream: match the context whose item set equals `kept`."""
    k = (q * n_stages + s) * n_models + m
    lo = qsm_pool_off[k]
    hi = qsm_pool_off[k + 1]
    for p in range(lo, hi):
        a = pool_ctx[p]
        i0 = ans_item_off[a]
        if ans_item_off[a + 1] - i0 != n_kept:
            continue
        same = True
        for j in range(n_kept):
            if ans_items[i0 + j] != kept[j]:
                same = False
                break
        if same:
            return p, False
    best = lo
    for p in range(lo + 1, hi):
        if pool_off[p + 1] - pool_off[p] > pool_off[best + 1] - pool_off[best]:
            best = p
    return best, True


@njit(cache=True)
def set_vote_snapshot(n, seen, n_seen, icount, kept):
    """Items kept after n draws: count*2 > n, else the items with the highest count. Sorted."""
    n_kept = 0
    top = 0
    for j in range(n_seen):
        c = icount[seen[j]]
        if c > top:
            top = c
        if 2 * c > n:
            kept[n_kept] = seen[j]
            n_kept += 1
    if n_kept == 0:
        for j in range(n_seen):
            if icount[seen[j]] == top:
                kept[n_kept] = seen[j]
                n_kept += 1
    kept[:n_kept].sort()
    return n_kept


@njit(cache=True)
def item_f1(kept, n_kept, ans_item_off, ans_items, gold):
    if gold < 0:
        return np.nan
    g0 = ans_item_off[gold]
    g1 = ans_item_off[gold + 1]
    n_gold = g1 - g0
    if n_gold == 0 and n_kept == 0:
        return 1.0
    if n_gold == 0 or n_kept == 0:
        return 0.0
    hit = 0
    i = 0
    j = g0
    while i < n_kept and j < g1:  # both sorted
        if kept[i] == ans_items[j]:
            hit += 1
            i += 1
            j += 1
        elif kept[i] < ans_items[j]:
            i += 1
        else:
            j += 1
    if hit == 0:
        return 0.0
    prec = hit / n_kept
    rec = hit / n_gold
    return 2.0 * prec * rec / (prec + rec)


@njit(cache=True, parallel=True)
def replay_groups(
    qhash, stage_agg, model_params, qsm_pool_off, pool_ctx, pool_off, pool_prompt,
    s_answer, s_local, s_score, s_completion, gold, ans_item_off, ans_items, n_items,
    pool_fus_off, fus_size, fus_answer, fus_score, fus_tokens, fus_subset_completion,
    n_stages, n_models, max_pool,
    questions, n_rep, seed, n_chunks_hint,
    grp_models, grp_counts, grp_cfg_off, cfg_last_count,
    out_score, out_tokens, out_flops, st_score, st_tokens, st_fallback,
):
    """Evaluate groups of configurations that differ only in the last stage's sample count.

    Group g fixes every stage's model and every count but the last; its configurations are
    cfg_last_count[grp_cfg_off[g]:grp_cfg_off[g+1]] (ascending). One pass along the last
    stage's shuffle scores all of them. Work is split over (group, question) in parallel.

    Outputs (c = configuration, qi = position in `questions`, r = replicate):
      out_score/out_tokens/out_flops[c, qi, r]; st_score/st_tokens/st_fallback[c, s, qi]
      (per-stage sums over replicates).
    """
    n_groups = grp_models.shape[0]
    n_q = questions.shape[0]
    last = n_stages - 1
    n_tasks = n_groups * n_q
    n_chunks = min(n_tasks, n_chunks_hint)
    width = max_pool + 1
    for chunk in prange(n_chunks):
        # scratch space, allocated once per chunk of tasks
        perm = np.arange(max_pool)
        swaps = np.empty(max_pool, np.int64)
        key = np.zeros(max_pool, np.int64)
        rep = np.zeros(max_pool, np.int64)
        icount = np.zeros(max(n_items, 1), np.int64)
        seen = np.empty(max(n_items, 1), np.int64)
        kept = np.empty(max(n_items, 1), np.int64)
        for task in range(chunk * n_tasks // n_chunks, (chunk + 1) * n_tasks // n_chunks):
            g = task // n_q
            qi = task % n_q
            q = questions[qi]
            qh = qhash[q]
            c0 = grp_cfg_off[g]
            c1 = grp_cfg_off[g + 1]
            for r in range(n_rep):
                ctx = np.int64(0)
                ctx_is_set = False
                n_kept = 0
                tok_acc = 0.0
                flop_acc = 0.0
                for s in range(n_stages):
                    m = grp_models[g, s]
                    # ---- the pool: stage 0 has one; later stages follow the upstream answer
                    if s == 0:
                        p = qsm_pool_off[(q * n_stages) * n_models + m]
                        fb = False
                    elif ctx_is_set:
                        p, fb = find_pool_by_items(qsm_pool_off, pool_ctx, pool_off, ans_item_off, ans_items,
                                                   n_stages, n_models, q, s, m, kept, n_kept)
                    else:
                        p, fb = find_pool(qsm_pool_off, pool_ctx, pool_off, n_stages, n_models, q, s, m, ctx)
                    base = pool_off[p]
                    size = pool_off[p + 1] - base
                    agg = stage_agg[s]
                    prompt = pool_prompt[p]
                    params2 = 2.0 * model_params[m]
                    # the counts to score at this stage: one for an inner stage, the group's for the last
                    if s < last:
                        ptr = np.int64(0)
                        ptr_end = np.int64(1)
                        n_max = grp_counts[g, s]
                    else:
                        ptr = c0
                        ptr_end = c1
                        n_max = cfg_last_count[c1 - 1]
                    if n_max > size:
                        n_max = size
                    state = stream_start(seed, qh, r, s)
                    x = U64(0)
                    if agg == AGG_FUSE:
                        while ptr < ptr_end:
                            n_req = grp_counts[g, s] if s < last else cfg_last_count[ptr]
                            if n_req > size:
                                n_req = size
                            fb_here = fb
                            # a stored fusion of n_req outputs (or the largest smaller size)
                            f0 = pool_fus_off[p]
                            f1 = pool_fus_off[p + 1]
                            use = 0
                            n_match = 0
                            for f in range(f0, f1):
                                if fus_size[f] <= n_req and fus_size[f] > use:
                                    use = fus_size[f]
                            for f in range(f0, f1):
                                if fus_size[f] == use:
                                    n_match += 1
                            if use > 0:
                                fstate, fx = next_u64(stream_start(seed, qh, r, s) ^ (U64(n_req) * SALT_N))
                                pick = bounded(fx, n_match)
                                chosen = f0
                                for f in range(f0, f1):
                                    if fus_size[f] == use:
                                        if pick == 0:
                                            chosen = f
                                            break
                                        pick -= 1
                                fb_here = fb or use != n_req
                                a_out = np.int64(fus_answer[chosen])
                                sc = fus_score[chosen]
                                tk = prompt + fus_subset_completion[chosen] + fus_tokens[chosen]
                            else:
                                # no stored fusion that small: majority vote over n_req drawn outputs
                                fb_here = True
                                comp = 0.0
                                best = np.int64(-1)
                                lead = np.int64(0)
                                lstate = state
                                lx = U64(0)
                                for j in range(n_req):
                                    lstate, lx, t = shuffle_step(perm, swaps, lstate, lx, j, size)
                                    i = base + t
                                    comp += s_completion[i]
                                    kk = vote(key, rep, s_local[i], i, j, width)
                                    if kk > best:
                                        best = kk
                                        lead = s_local[i]
                                a_out = np.int64(s_answer[rep[lead]])
                                sc = s_score[rep[lead]]
                                tk = prompt + comp
                                unshuffle(perm, swaps, n_req, key, s_local, base)
                            ctx_is_set = False
                            if s < last:
                                ctx = a_out
                                tok_acc += tk
                                flop_acc += params2 * tk
                                for c in range(c0, c1):
                                    st_score[c, s, qi] += sc
                                    st_tokens[c, s, qi] += tk
                                    st_fallback[c, s, qi] += 1 if fb_here else 0
                            else:
                                out_score[ptr, qi, r] = sc
                                out_tokens[ptr, qi, r] = tok_acc + tk
                                out_flops[ptr, qi, r] = flop_acc + params2 * tk
                                st_score[ptr, s, qi] += sc
                                st_tokens[ptr, s, qi] += tk
                                st_fallback[ptr, s, qi] += 1 if fb_here else 0
                            ptr += 1
                        continue
                    # ---- sample-drawing aggregations: one pass along the shuffle, with a
                    # snapshot at every requested count (several configs may share a count)
                    comp = 0.0
                    best = np.int64(-1)
                    lead = np.int64(0)
                    best_i = np.int64(0)
                    best_score = -np.inf
                    n_seen = 0
                    # the shuffle first, then the votes: two simple loops pipeline better than one
                    for j in range(n_max):
                        state, x, t = shuffle_step(perm, swaps, state, x, j, size)
                    for j in range(n_max):
                        i = base + perm[j]
                        comp += s_completion[i]
                        if agg == AGG_MAJORITY:
                            kk = vote(key, rep, s_local[i], i, j, width)
                            if kk > best:
                                best = kk
                                lead = s_local[i]
                        elif agg == AGG_BEST:
                            if s_score[i] > best_score:
                                best_score = s_score[i]
                                best_i = i
                        else:  # set vote: count the items of this sample's answer
                            a = s_answer[i]
                            for e in range(ans_item_off[a], ans_item_off[a + 1]):
                                it = ans_items[e]
                                if icount[it] == 0:
                                    seen[n_seen] = it
                                    n_seen += 1
                                icount[it] += 1
                        while ptr < ptr_end:
                            n_req = grp_counts[g, s] if s < last else cfg_last_count[ptr]
                            if n_req > size:
                                n_req = size
                            if n_req != j + 1:
                                break
                            if agg == AGG_MAJORITY:
                                a_out = np.int64(s_answer[rep[lead]])
                                sc = s_score[rep[lead]]
                            elif agg == AGG_BEST:
                                a_out = np.int64(s_answer[best_i])
                                sc = best_score
                            else:
                                n_kept = set_vote_snapshot(j + 1, seen, n_seen, icount, kept)
                                a_out = np.int64(-1)
                                sc = item_f1(kept, n_kept, ans_item_off, ans_items, gold[q, s])
                            tk = prompt + comp
                            if s < last:
                                ctx = a_out
                                ctx_is_set = agg == AGG_SET
                                tok_acc += tk
                                flop_acc += params2 * tk
                                for c in range(c0, c1):
                                    st_score[c, s, qi] += sc
                                    st_tokens[c, s, qi] += tk
                                    st_fallback[c, s, qi] += 1 if fb else 0
                            else:
                                out_score[ptr, qi, r] = sc
                                out_tokens[ptr, qi, r] = tok_acc + tk
                                out_flops[ptr, qi, r] = flop_acc + params2 * tk
                                st_score[ptr, s, qi] += sc
                                st_tokens[ptr, s, qi] += tk
                                st_fallback[ptr, s, qi] += 1 if fb else 0
                            ptr += 1
                    unshuffle(perm, swaps, n_max, key, s_local, base)
                    for j in range(n_seen):
                        icount[seen[j]] = 0
    return 0


@njit(cache=True)
def majority_draw_loop(qhash, pool_off, s_local, s_answer, s_score, questions, pools, n_rep, seed, counts_list,
                       out):
    """The plain loop of the speed benchmark: majority vote for every (pool, count, question,
    replicate) alone, single-threaded, no sharing across counts. Same draws as replay_groups.
    out[k, c] = mean score over questions and replicates."""
    max_pool = 0
    for p in range(pool_off.shape[0] - 1):
        if pool_off[p + 1] - pool_off[p] > max_pool:
            max_pool = pool_off[p + 1] - pool_off[p]
    width = max_pool + 1
    perm = np.arange(max_pool)
    swaps = np.empty(max_pool, np.int64)
    key = np.zeros(max_pool, np.int64)
    rep = np.zeros(max_pool, np.int64)
    n_q = questions.shape[0]
    for kk_ in range(pools.shape[0]):
        for ci in range(counts_list.shape[0]):
            n = counts_list[ci]
            acc = 0.0
            for qi in range(n_q):
                p = pools[kk_, qi]
                base = pool_off[p]
                size = pool_off[p + 1] - base
                nn = min(n, size)
                for r in range(n_rep):
                    state = stream_start(seed, qhash[questions[qi]], r, 0)
                    x = U64(0)
                    best = np.int64(-1)
                    lead = np.int64(0)
                    for j in range(nn):
                        state, x, t = shuffle_step(perm, swaps, state, x, j, size)
                    for j in range(nn):
                        i = base + perm[j]
                        kk = vote(key, rep, s_local[i], i, j, width)
                        if kk > best:
                            best = kk
                            lead = s_local[i]
                    acc += s_score[rep[lead]]
                    unshuffle(perm, swaps, nn, key, s_local, base)
            out[kk_, ci] = acc / (n_q * n_rep)
    return out
