"""The graph replay kernel (Numba). replay/graph/reference.py is its pure-Python oracle: the
same semantics and random numbers, so the tests compare the two exactly.

`graph_replay` evaluates a batch of graphs on a set of questions and replicates in one call,
parallel over chunks of questions (`graph_replay`), or on one thread for small calls
(`graph_replay_serial`: starting a parallel region costs milliseconds of CPU on a busy machine,
more than one graph's replay). A chunk is `replay_chunk`, which makes the work arrays, and
`chunk_loop`, the passes, compiled without Numba's reference counting: the store's arrays are
taken out of their named tuples once per chunk, and the helpers below take arrays and are
inlined. Both for one reason: Numba counts a reference, an atomic increment and decrement, for
every array a function reads out of a tuple or hands to a helper; in the node loop that cost
146 ns for a pool lookup reading four arrays from the tuples (against ~10 ns for a whole
one-sample draw), and with every tuple read hoisted, still a quarter of the kernel's time
(perf, 2026-11-30) until `chunk_loop` went without it.

Per question, the batch's *distinct* nodes run first (engine.py `GraphBatch.distinct`: the same
place in the graph, role, model, count and distinct parents give the same numbers in every graph
that has them, by common random numbers), each over every replicate: the node's input key (its
parents' aggregated answers, as sorted class ids) selects its pool (a per-question table of
(role, model, key) -> pool shared by every node and replicate, in front of `find_keyed_pool`:
the pool with that key, else the largest of that question, role and model, a counted fallback);
the node's samples are drawn from the stream of (seed, question, replicate, node index) and
aggregated by the role's rule, or read from a memo of (place, role, model, pool, replicate)
filled on first use. Then every graph sums its nodes' tokens in its own order and takes its
output. The draws, the vote and the streams are those of the chain kernels (replay/kernels.py,
whose helpers are imported here), so a chain configuration as a graph gives the chain engine's
numbers.

Graphs come as flat arrays (replay/graph/engine.py): per graph a CSR of its nodes' distinct ids
and of its output nodes' distinct ids; per distinct node its place, role, model, count and a CSR
of its parents (distinct ids). Results are sums: per (question, graph) over replicates, per
(chunk, graph, replicate) over the chunk's questions, per (chunk, distinct node) over both;
`detail` arrays [graph, question, replicate] are filled when they are not empty (tests, small
runs).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..kernels import (AGG_BEST, AGG_FUSE, AGG_MAJORITY, GOLDEN, MIX1, SALT_N, SALT_R, SALT_S, U64, bounded,
                       draw_packed, item_f1, mix64, next_u64, set_vote_kept, stream_start)
from ..kernel_cache import install as _cache_install

_cache_install()  # before the decorators: the cache is keyed on every kernel module


@njit(inline="always", cache=True)
def items_hash(kept, n_kept):
    """replay.graph.inputs.items_hash, in uint64."""
    h = U64(n_kept) * GOLDEN
    for j in range(n_kept):
        h = mix64(h ^ (U64(kept[j] + 1) * MIX1))
    return h


@njit(inline="always", cache=True)
def set_class(ans_item_off, ans_items, set_hash, set_cls, kept, n_kept):
    """The class of a kept item set (the first answer class, in hash order, with those items), or -1."""
    h = items_hash(kept, n_kept)
    lo = 0
    hi = set_hash.shape[0]
    while lo < hi:
        mid = (lo + hi) // 2
        if set_hash[mid] < h:
            lo = mid + 1
        else:
            hi = mid
    found = np.int64(-1)
    for i in range(lo, set_hash.shape[0]):
        if set_hash[i] != h:
            break
        c = set_cls[i]
        i0 = ans_item_off[c]
        if ans_item_off[c + 1] - i0 != n_kept:
            continue
        same = True
        for j in range(n_kept):
            if ans_items[i0 + j] != kept[j]:
                same = False
                break
        if same:
            found = c
            break
    return found


@njit(cache=True)
def pool_hashes(pool_key_off, pool_key):
    """The hash of every pool's input key (items_hash of its sorted class ids)."""
    out = np.empty(pool_key_off.shape[0] - 1, np.uint64)
    for p in range(out.shape[0]):
        k0 = pool_key_off[p]
        out[p] = items_hash(pool_key[k0:pool_key_off[p + 1]], pool_key_off[p + 1] - k0)
    return out


@njit(cache=True)
def sort_by_hash(qsm_pool_off, hashes, pool_off, by_hash, hash_sorted, qsm_largest):
    """Within each (q, role, model)'s range of pools, the pools ordered by key hash (stable, so
    of two pools with one key, never met in a valid store, the first is found), and each
    range's largest pool, ties to the first."""
    for k in range(qsm_pool_off.shape[0] - 1):
        lo = qsm_pool_off[k]
        hi = qsm_pool_off[k + 1]
        if hi == lo:
            continue
        order = np.argsort(hashes[lo:hi], kind="mergesort")
        best = lo
        for j in range(hi - lo):
            by_hash[lo + j] = lo + order[j]
            hash_sorted[lo + j] = hashes[lo + order[j]]
            p = lo + j
            if pool_off[p + 1] - pool_off[p] > pool_off[best + 1] - pool_off[best]:
                best = p
        qsm_largest[k] = best
    return 0


@njit(inline="always", cache=True)
def find_keyed_pool(by_hash, hash_sorted, pool_key_off, pool_key, qsm_largest, lo, hi, k, key, n_key, h):
    """The pool of (question, role, model) k (pools lo..hi) whose input key is key[:n_key]
    (sorted class ids; h = its items_hash): a binary search of the range's key hashes, then a
    check of the key; on a miss the largest pool of k, ties to the first (the reference scans
    for both). Returns (pool, fell_back)."""
    # the first position whose hash is >= h (lo..hi): a branchless lower bound, since the
    # comparisons are unpredictable (one mispredicted branch per step cost more than the loads)
    a = lo
    n = hi - lo
    while n > 1:
        half = n >> 1
        a = a + half if hash_sorted[a + half - 1] < h else a
        n -= half
    if n == 1 and hash_sorted[a] < h:
        a += 1
    found = np.int64(-1)
    while a < hi and hash_sorted[a] == h:
        p = by_hash[a]
        k0 = pool_key_off[p]
        if pool_key_off[p + 1] - k0 == n_key:
            same = True
            for j in range(n_key):
                if pool_key[k0 + j] != key[j]:
                    same = False
                    break
            if same:
                found = p
                break
        a += 1
    if found >= 0:
        return found, False
    return qsm_largest[k], True


@njit(inline="always", cache=True)
def pick_fusion(pool_fus_off, fus_size, p, n, seed, qh, r, k):
    """The stored fusion an llm_fuse node uses for n outputs: one of exactly n, else of the
    largest smaller size, uniformly by the stream of (seed, q, r, k) salted with n; (-1, 0)
    when none is small enough. Returns (fusion, its size)."""
    f0 = pool_fus_off[p]
    f1 = pool_fus_off[p + 1]
    use = 0
    for f in range(f0, f1):
        if fus_size[f] <= n and fus_size[f] > use:
            use = fus_size[f]
    chosen = np.int64(-1)
    if use > 0:
        n_match = 0
        for f in range(f0, f1):
            if fus_size[f] == use:
                n_match += 1
        fstate, fx = next_u64(stream_start(seed, qh, r, k) ^ (U64(n) * SALT_N))
        pick = bounded(fx, n_match)
        chosen = f0
        for f in range(f0, f1):
            if fus_size[f] == use:
                if pick == 0:
                    chosen = f
                    break
                pick -= 1
    return chosen, use


@njit(inline="always", cache=True)
def vote_drawn(scratch, n, base, bits, mask, s_completion, keyv, rep, gen, width):
    """Majority vote over the n drawn packed words (the chain kernels' vote: key = gen + count x
    width - step of the first draw; ties to the answer drawn first). Returns (the winning
    answer's first drawn sample, completion tokens, the longest completion)."""
    g = gen[0] + width * width
    gen[0] = g
    best = g - 1
    lead = np.int64(0)
    comp = 0.0
    cmax = 0
    for j in range(n):
        v = np.int64(scratch[j])
        i = base + (v & mask)
        c = s_completion[i]
        comp += c
        if c > cmax:
            cmax = c
        a = v >> bits
        kk = keyv[a]
        if kk < g:
            kk = g + width - j
            rep[a] = i
        else:
            kk += width
        keyv[a] = kk
        if kk > best:
            best = kk
            lead = a
    return rep[lead], comp, cmax


@njit(inline="always", cache=True)
def best_drawn(scratch, n, base, mask, s_completion, s_score):
    """The drawn sample with the highest stored score (ties to the first drawn), completion
    tokens, the longest completion."""
    best_i = np.int64(0)
    best_score = -np.inf
    comp = 0.0
    cmax = 0
    for j in range(n):
        i = base + (np.int64(scratch[j]) & mask)
        c = s_completion[i]
        comp += c
        if c > cmax:
            cmax = c
        if s_score[i] > best_score:
            best_score = s_score[i]
            best_i = i
    return best_i, comp, cmax


@njit(inline="always", cache=True)
def set_drawn(scratch, n, base, mask, s_completion, s_answer, ans_item_off, ans_items, icount, seen, kept):
    """A set vote over the n drawn list answers: kept[:n_kept] (sorted). Returns (n_kept,
    completion tokens, the longest completion)."""
    comp = 0.0
    cmax = 0
    n_seen = 0
    for j in range(n):
        i = base + (np.int64(scratch[j]) & mask)
        c = s_completion[i]
        comp += c
        if c > cmax:
            cmax = c
        a = s_answer[i]
        for e in range(ans_item_off[a], ans_item_off[a + 1]):
            it = ans_items[e]
            if icount[it] == 0:
                seen[n_seen] = it
                n_seen += 1
            icount[it] += 1
    n_kept = set_vote_kept(n, seen, n_seen, icount, kept)
    for j in range(n_seen):
        icount[seen[j]] = 0
    return n_kept, comp, cmax


@njit(inline="always", cache=True)
def memo_fill(s_packed, base, size, nn, nm, state, perm, swaps, scratch, bits, mask, s_answer, s_score, s_completion,
              ans_class, agg, keyv, rep, gen, width, prompt, t_pre, t_dec, o, memo):
    """One pass along a node's draws (nn = min(nm, size) of them, from `state`) recording its
    result at every count 1..nn in memo[o:o + nn] (answer class, score, tokens, latency): the
    draws for n are the first n of the draws for n + 1, and the vote (vote_drawn's,
    best_drawn's) is read at every step. Counts nn + 1..nm (above the pool's size) get the
    entry of nn, since a node draws min(count, size): a read needs no pool size."""
    draw_packed(s_packed, base, size, nn, state, perm, swaps, scratch)
    if agg != AGG_BEST and nn <= 2:
        # a majority of one or two draws is the first draw (two different answers tie, and ties
        # go to the answer drawn first): the general loop below, without its vote tables
        i0 = base + (np.int64(scratch[0]) & mask)
        c0 = s_completion[i0]
        a0 = ans_class[s_answer[i0]]
        sc0 = s_score[i0]
        comp = 0.0 + c0
        memo[o, 0] = a0
        memo[o, 1] = sc0
        memo[o, 2] = prompt + comp
        memo[o, 3] = prompt * t_pre + c0 * t_dec
        if nn == 2:
            c1 = s_completion[base + (np.int64(scratch[1]) & mask)]
            comp += c1
            memo[o + 1, 0] = a0
            memo[o + 1, 1] = sc0
            memo[o + 1, 2] = prompt + comp
            memo[o + 1, 3] = prompt * t_pre + max(c0, c1) * t_dec
        for j in range(nn, nm):
            for z in range(4):
                memo[o + j, z] = memo[o + nn - 1, z]
        return
    g = gen[0] + width * width
    gen[0] = g
    best = g - 1
    lead = np.int64(0)
    comp = 0.0
    cmax = 0
    best_i = np.int64(0)
    best_score = -np.inf
    for j in range(nn):
        v = np.int64(scratch[j])
        ii = base + (v & mask)
        c = s_completion[ii]
        comp += c
        if c > cmax:
            cmax = c
        if agg == AGG_BEST:
            if s_score[ii] > best_score:
                best_score = s_score[ii]
                best_i = ii
            w = best_i
        else:
            a = v >> bits
            kk = keyv[a]
            if kk < g:
                kk = g + width - j
                rep[a] = ii
            else:
                kk += width
            keyv[a] = kk
            if kk > best:
                best = kk
                lead = a
            w = rep[lead]
        memo[o + j, 0] = ans_class[s_answer[w]]  # a class id: exact as a float64
        memo[o + j, 1] = s_score[w]
        memo[o + j, 2] = prompt + comp
        memo[o + j, 3] = prompt * t_pre + cmax * t_dec
    for j in range(nn, nm):
        for z in range(4):
            memo[o + j, z] = memo[o + nn - 1, z]


@njit(cache=True)
def replay_chunk(A, G, n_stages, n_models, max_pool, n_items, pre, dec, questions, n_rep, seed, n_chunks, c,
                 g_node_off, node_uid, g_out_off, out_x,
                 d_index, d_role, d_model, d_count, d_par_off, d_par, d_slot, slot_nmax, slot_row_off, slot_ent_off,
                 score_q, tokens_q, flops_q, latency_q, score_r, node_sums,
                 det_score, det_tokens, det_flops, det_latency):
    """Chunk c of the questions (see graph_replay). Per question, two passes:

    1. every distinct node x of the batch (`d_*`, parents before children), every replicate:
       its answer, score, finish time and tokens, into [x, r] arrays. A distinct node is a
       node index, role, model, count and the same distinct parents: it gives the same numbers
       in every graph that has it (common random numbers), so it is run once per question for
       the whole batch. A node with a memo slot (d_slot >= 0: a node index, role and model of
       majority or best-score aggregation that several distinct nodes share) reads its result
       from the chunk's memo, drawn (memo_fill) the first time a node reaches that pool and
       replicate of the question, instead of drawing.
    2. every graph: its tokens and FLOPs and its output, from the distinct nodes' rows and
       their sums over replicates.

    Here: the chunk's work arrays; the passes: chunk_loop."""
    model_params = A.model_params
    bits = A.pack_bits[0]
    mask = (np.int64(1) << bits) - 1
    B = g_node_off.shape[0] - 1
    X = d_role.shape[0]
    Q = questions.shape[0]
    width = max_pool + 1
    max_par = 1
    for x in range(X):
        if d_par_off[x + 1] - d_par_off[x] > max_par:
            max_par = d_par_off[x + 1] - d_par_off[x]
    detail = det_score.shape[0] > 0
    perm = np.arange(max_pool)
    swaps = np.empty(max_pool, np.int64)
    scratch = np.empty(max_pool, A.s_packed.dtype)
    keyv = np.zeros(max_pool, np.int64)
    rep = np.zeros(max_pool, np.int64)
    gen = np.zeros(1, np.int64)
    icount = np.zeros(max(n_items, 1), np.int64)
    seen = np.empty(max(n_items, 1), np.int64)
    kept = np.empty(max(n_items, 1), np.int64)
    # per distinct node and replicate: the node's answer (class), score, finish time and tokens
    x_ans = np.empty((X, n_rep), np.int64)
    x_score = np.empty((X, n_rep), np.float64)
    x_fin = np.empty((X, n_rep), np.float64)
    x_tok = np.empty((X, n_rep), np.float64)
    # per distinct node, its sums over replicates (in replicate order) of tokens, score and finish time
    x_tsum = np.empty(X, np.float64)
    x_ssum = np.empty(X, np.float64)
    x_fsum = np.empty(X, np.float64)
    x_params2 = np.empty(X, np.float64)
    for x in range(X):
        x_params2[x] = 2.0 * model_params[d_model[x]]
    tok = np.empty(n_rep, np.float64)
    flop = np.empty(n_rep, np.float64)
    win_sc = np.empty(n_rep, np.float64)
    lat_r = np.empty(n_rep, np.float64)
    cnt = np.empty(n_rep, np.int64)
    best_cnt = np.empty(n_rep, np.int64)
    keybuf = np.empty(max_par, np.int64)
    lastkey = np.empty(max_par, np.int64)
    # the key table (power of two rows: stamp = question position + 1, k, key length, 2 x pool
    # + fell back; and the keys), sized for the lookups of one question, at most 1,024 keys
    tab_bits = 4
    while (1 << tab_bits) < 2 * min(X * n_rep, 1024):
        tab_bits += 1
    n_tab = 1 << tab_bits
    tab = np.zeros((n_tab, 4), np.int64)
    tab_key = np.empty((n_tab, max_par), np.int64)
    # the random stream of (seed, q, r, i) starts from one state per (q, r) (kernels.stream_start)
    rstate = np.empty(n_rep, np.uint64)
    # the chunk's memo, one question at a time: row (slot, pool j of the question's role and
    # model, replicate) is stamped with the question position + 1 when filled (lazily: only the
    # pools the batch's nodes reach are drawn); its entries (counts 1..nmax) sit at a fixed place,
    # so a read is one address computation and no search (the memo is small: MEMO_ENTRIES caps it)
    n_slots = slot_nmax.shape[0]
    stamp = np.zeros(slot_row_off[n_slots], np.int64)
    # an entry's four figures side by side: a hit reads one cache line, not four
    memo = np.empty((slot_ent_off[n_slots], 4), np.float64)
    chunk_loop(A, G, n_stages, n_models, max_pool, n_items, pre, dec, questions, n_rep, seed, n_chunks, c, g_node_off,
               node_uid, g_out_off, out_x, d_index, d_role, d_model, d_count, d_par_off, d_par, d_slot, slot_nmax,
               slot_row_off, slot_ent_off, score_q, tokens_q, flops_q, latency_q, score_r, node_sums, det_score,
               det_tokens, det_flops, det_latency, bits, mask, B, X, Q, width, detail, tab_bits, n_tab, perm, swaps,
               scratch, keyv, rep, gen, icount, seen, kept, x_ans, x_score, x_fin, x_tok, x_tsum, x_ssum, x_fsum,
               x_params2, tok, flop, win_sc, lat_r, cnt, best_cnt, keybuf, lastkey, tab, tab_key, rstate, stamp, memo)
    return 0


@njit(cache=True, _nrt=False)
def chunk_loop(A, G, n_stages, n_models, max_pool, n_items, pre, dec, questions, n_rep, seed, n_chunks, c, g_node_off,
               node_uid, g_out_off, out_x, d_index, d_role, d_model, d_count, d_par_off, d_par, d_slot, slot_nmax,
               slot_row_off, slot_ent_off, score_q, tokens_q, flops_q, latency_q, score_r, node_sums, det_score,
               det_tokens, det_flops, det_latency, bits, mask, B, X, Q, width, detail, tab_bits, n_tab, perm, swaps,
               scratch, keyv, rep, gen, icount, seen, kept, x_ans, x_score, x_fin, x_tok, x_tsum, x_ssum, x_fsum,
               x_params2, tok, flop, win_sc, lat_r, cnt, best_cnt, keybuf, lastkey, tab, tab_key, rstate, stamp, memo):
    """replay_chunk's two passes over chunk c's questions, on the work arrays replay_chunk
    made. Compiled without Numba's reference counting (`_nrt=False`): with it, every array that
    an inlined helper (memo_fill, the votes, the draws) takes counted a reference in and out,
    an atomic increment and decrement per node and replicate (a quarter of the kernel's time,
    measured with perf). Without it this function cannot make arrays, so it makes none. The
    node loop reads only arrays taken out of A and G here, once (module docstring)."""
    question_hash, stage_agg = A.question_hash, A.stage_agg
    qsm_pool_off, pool_off, pool_prompt = A.qsm_pool_off, A.pool_off, A.pool_prompt
    s_answer, s_score, s_completion, s_packed = A.s_answer, A.s_score, A.s_completion, A.s_packed
    ans_item_off, ans_items = A.ans_item_off, A.ans_items
    pool_fus_off, fus_size, fus_answer, fus_score = A.pool_fus_off, A.fus_size, A.fus_answer, A.fus_score
    fus_tokens, fus_subset_completion = A.fus_tokens, A.fus_subset_completion
    pool_key_off, pool_key, ans_class = G.pool_key_off, G.pool_key, G.ans_class
    set_hash, set_cls, role_gold = G.set_hash, G.set_class, G.role_gold
    fus_prompt, fus_completion, fus_subset_max = G.fus_prompt, G.fus_completion, G.fus_subset_max
    by_hash, hash_sorted, qsm_largest = G.by_hash, G.hash_sorted, G.qsm_largest
    for qi in range(c * Q // n_chunks, (c + 1) * Q // n_chunks):
        q = questions[qi]
        qh = question_hash[q]
        in_tab = 0
        x0 = mix64(U64(seed) * GOLDEN ^ qh)
        for r in range(n_rep):
            rstate[r] = mix64(x0 ^ (U64(r) * SALT_R + GOLDEN))
        # 1. every distinct node, every replicate: what does not depend on the replicate is read once
        for x in range(X):
            i = d_index[x]  # the node's place in its graphs: its random stream
            role = d_role[x]
            m = d_model[x]
            k = (q * n_stages + role) * n_models + m
            lo = qsm_pool_off[k]
            hi = qsm_pool_off[k + 1]
            e0 = d_par_off[x]
            e1 = d_par_off[x + 1]
            keyless = e0 == e1 and pool_key_off[lo + 1] == pool_key_off[lo]
            agg = stage_agg[role]
            t_pre = pre[m]
            t_dec = dec[m]
            sl = d_slot[x]
            s_score_sum = 0.0
            s_tok_sum = 0.0
            s_lat_sum = 0.0
            s_fell = 0.0
            s_fin_sum = 0.0
            # the last input key looked up and its pool: the parents' answers repeat across
            # replicates (mostly the same majority), so most replicates skip the search
            n_last = np.int64(-1)
            p_last = lo
            missed_last = False
            for r in range(n_rep):
                # the input key: the parents' answers, sorted (insertion sort: few parents)
                start = 0.0
                p = lo
                missed = False
                if not keyless:
                    nk = 0
                    for e in range(e0, e1):
                        pj = d_par[e]
                        v = x_ans[pj, r]
                        j = nk
                        while j > 0 and keybuf[j - 1] > v:
                            keybuf[j] = keybuf[j - 1]
                            j -= 1
                        keybuf[j] = v
                        nk += 1
                        if x_fin[pj, r] > start:
                            start = x_fin[pj, r]
                    same = nk == n_last
                    if same:
                        for j in range(nk):
                            if keybuf[j] != lastkey[j]:
                                same = False
                                break
                    if not same:
                        # the question's table of (role, model, key) -> pool, shared by every
                        # node and replicate; a key not in it is searched (and added while the
                        # table is at most half full, so a probe always ends)
                        # (a multiplicative hash: cheap, and the key is checked in full)
                        hh = (U64(k) + GOLDEN) * MIX1
                        for j in range(nk):
                            hh = (hh ^ U64(keybuf[j] + 1)) * GOLDEN
                        t = np.int64(hh >> U64(64 - tab_bits))
                        while True:
                            if tab[t, 0] != qi + 1:
                                p_last, missed_last = find_keyed_pool(by_hash, hash_sorted, pool_key_off, pool_key,
                                                                      qsm_largest, lo, hi, k, keybuf, nk,
                                                                      items_hash(keybuf, nk))
                                if 2 * in_tab < n_tab:
                                    in_tab += 1
                                    tab[t, 0] = qi + 1
                                    tab[t, 1] = k
                                    tab[t, 2] = nk
                                    tab[t, 3] = 2 * p_last + (1 if missed_last else 0)
                                    for j in range(nk):
                                        tab_key[t, j] = keybuf[j]
                                break
                            if tab[t, 1] == k and tab[t, 2] == nk:
                                hit = True
                                for j in range(nk):
                                    if tab_key[t, j] != keybuf[j]:
                                        hit = False
                                        break
                                if hit:
                                    p_last = tab[t, 3] >> 1
                                    missed_last = (tab[t, 3] & 1) == 1
                                    break
                            t = (t + 1) & (n_tab - 1)
                        n_last = nk
                        for j in range(nk):
                            lastkey[j] = keybuf[j]
                    p = p_last
                    missed = missed_last
                # the node: draw min(S, pool size) outputs from the stream of (seed, q, r, i)
                fell = missed
                f = np.int64(-1)
                if sl >= 0:  # memoised: the same draws, made once per question for every node of the slot
                    nm = slot_nmax[sl]
                    rr = (p - lo) * n_rep + r
                    o = slot_ent_off[sl] + rr * nm  # the row's entries: counts 1..nm
                    row = slot_row_off[sl] + rr
                    if stamp[row] != qi + 1:
                        stamp[row] = qi + 1
                        base = pool_off[p]
                        size = pool_off[p + 1] - base
                        memo_fill(s_packed, base, size, min(nm, size), nm, mix64(rstate[r] ^ (U64(i) * SALT_S + MIX1)),
                                  perm, swaps, scratch, bits, mask, s_answer, s_score, s_completion, ans_class, agg,
                                  keyv, rep, gen, width, pool_prompt[p], t_pre, t_dec, o, memo)
                    # counts above the pool's size read its last entry (memo_fill pads): no pool read here
                    e = o + d_count[x] - 1
                    ans = np.int64(memo[e, 0])
                    sc = memo[e, 1]
                    tk = memo[e, 2]
                    lat = memo[e, 3]
                else:
                    base = pool_off[p]
                    size = pool_off[p + 1] - base
                    n = min(d_count[x], size)
                    prompt = pool_prompt[p]
                    if agg == AGG_FUSE:
                        f, use = pick_fusion(pool_fus_off, fus_size, p, n, seed, qh, r, i)
                        fell = fell or use != n
                    if f >= 0:  # a stored fusion: no draw
                        ans = ans_class[fus_answer[f]]
                        sc = fus_score[f]
                        tk = float(prompt + fus_subset_completion[f] + fus_tokens[f])
                        lat = (prompt * t_pre + fus_subset_max[f] * t_dec + fus_prompt[f] * t_pre
                               + fus_completion[f] * t_dec)
                    else:
                        draw_packed(s_packed, base, size, n, mix64(rstate[r] ^ (U64(i) * SALT_S + MIX1)), perm, swaps,
                                    scratch)
                        if agg == AGG_MAJORITY or agg == AGG_FUSE:  # llm_fuse without a fusion: majority
                            w, comp, cmax = vote_drawn(scratch, n, base, bits, mask, s_completion, keyv, rep, gen,
                                                       width)
                            ans = ans_class[s_answer[w]]
                            sc = s_score[w]
                        elif agg == AGG_BEST:
                            w, comp, cmax = best_drawn(scratch, n, base, mask, s_completion, s_score)
                            ans = ans_class[s_answer[w]]
                            sc = s_score[w]
                        else:
                            n_kept, comp, cmax = set_drawn(scratch, n, base, mask, s_completion, s_answer,
                                                           ans_item_off, ans_items, icount, seen, kept)
                            ans = set_class(ans_item_off, ans_items, set_hash, set_cls, kept, n_kept)
                            sc = item_f1(kept, n_kept, ans_item_off, ans_items, role_gold[q, role])
                        tk = prompt + comp
                        lat = prompt * t_pre + cmax * t_dec
                x_ans[x, r] = ans
                x_score[x, r] = sc
                fin = start + lat
                x_fin[x, r] = fin
                x_tok[x, r] = tk
                s_fin_sum += fin
                s_score_sum += sc
                s_tok_sum += tk
                s_lat_sum += lat
                s_fell += 1.0 if fell else 0.0
            x_tsum[x] = s_tok_sum
            x_ssum[x] = s_score_sum
            x_fsum[x] = s_fin_sum
            node_sums[c, x, 0] += s_score_sum
            node_sums[c, x, 1] += s_tok_sum
            node_sums[c, x, 2] += s_lat_sum
            node_sums[c, x, 3] += s_fell
        # 2. every graph: its costs and its output. Tokens are whole numbers (prompt and
        # completion counts), so their sum is exact in any order: the graph's tokens are the sum
        # of its nodes' sums over replicates, and its FLOPs the sum of 2 x params x those (per
        # node, in node order). A single output node's score and finish time, summed over
        # replicates, are that node's sums (the same additions in the same order).
        for b in range(B):
            n0 = g_node_off[b]
            K = g_node_off[b + 1] - n0
            o0 = g_out_off[b]
            o1 = g_out_off[b + 1]
            s_tk = 0.0
            s_fl = 0.0
            for i in range(K):
                x = node_uid[n0 + i]
                t = x_tsum[x]
                s_tk += t
                s_fl += x_params2[x] * t
            xo = out_x[o0]
            if o1 - o0 == 1 and not detail:
                s_sc = x_ssum[xo]
                s_lat = x_fsum[xo]
                for r in range(n_rep):
                    score_r[c, b, r] += x_score[xo, r]
            else:
                # the output: one node, or a vote over several (ties to the first listed),
                # replicates innermost
                for r in range(n_rep):
                    win_sc[r] = x_score[xo, r]
                    lat_r[r] = x_fin[xo, r]
                if o1 - o0 == 2:
                    # two outputs: each has one vote or both the same answer, a tie either way,
                    # so the first listed wins; the latency is the later of the two
                    x2 = out_x[o0 + 1]
                    for r in range(n_rep):
                        if x_fin[x2, r] > lat_r[r]:
                            lat_r[r] = x_fin[x2, r]
                elif o1 - o0 > 2:
                    best_cnt[:] = 0
                    for y in range(o0, o1):
                        xy = out_x[y]
                        cnt[:] = 0
                        for z in range(o0, o1):
                            xz = out_x[z]
                            for r in range(n_rep):
                                cnt[r] += 1 if x_ans[xz, r] == x_ans[xy, r] else 0
                        for r in range(n_rep):
                            if cnt[r] > best_cnt[r]:
                                best_cnt[r] = cnt[r]
                                win_sc[r] = x_score[xy, r]
                            if x_fin[xy, r] > lat_r[r]:
                                lat_r[r] = x_fin[xy, r]
                s_sc = 0.0
                s_lat = 0.0
                for r in range(n_rep):
                    s_sc += win_sc[r]
                    s_lat += lat_r[r]
                    score_r[c, b, r] += win_sc[r]
                if detail:
                    # per replicate: tokens and FLOPs summed over the nodes in their order
                    tok[:] = 0.0
                    flop[:] = 0.0
                    for i in range(K):
                        x = node_uid[n0 + i]
                        params2 = x_params2[x]
                        for r in range(n_rep):
                            tk = x_tok[x, r]
                            tok[r] += tk
                            flop[r] += params2 * tk
                    for r in range(n_rep):
                        det_score[b, qi, r] = win_sc[r]
                        det_tokens[b, qi, r] = tok[r]
                        det_flops[b, qi, r] = flop[r]
                        det_latency[b, qi, r] = lat_r[r]
            score_q[qi, b] += s_sc
            tokens_q[qi, b] += s_tk
            flops_q[qi, b] += s_fl
            latency_q[qi, b] += s_lat


@njit(cache=True, parallel=True)
def graph_replay(A, G, n_stages, n_models, max_pool, n_items, pre, dec, questions, n_rep, seed, n_chunks,
                 g_node_off, node_uid, g_out_off, out_x,
                 d_index, d_role, d_model, d_count, d_par_off, d_par, d_slot, slot_nmax, slot_row_off, slot_ent_off,
                 score_q, tokens_q, flops_q, latency_q, score_r, node_sums,
                 det_score, det_tokens, det_flops, det_latency):
    """Replay a batch of graphs (module docstring), chunks of questions in parallel. Accumulates,
    for graph b, question position qi, replicate r, chunk c and distinct node x:
      score_q/tokens_q/flops_q/latency_q[qi, b] (sums over replicates; zero on entry: a question's
      row is one run of memory, written once per graph), score_r[c, b, r] (sums
      over the chunk's questions), node_sums[c, x, :] = score, tokens, latency, fallbacks;
      det_*[b, qi, r] when det_score is not empty."""
    for c in prange(n_chunks):
        replay_chunk(A, G, n_stages, n_models, max_pool, n_items, pre, dec, questions, n_rep, seed, n_chunks, c,
                     g_node_off, node_uid, g_out_off, out_x,
                     d_index, d_role, d_model, d_count, d_par_off, d_par, d_slot, slot_nmax, slot_row_off,
                     slot_ent_off, score_q, tokens_q, flops_q, latency_q, score_r, node_sums,
                     det_score, det_tokens, det_flops, det_latency)
    return 0


@njit(cache=True)
def graph_replay_serial(A, G, n_stages, n_models, max_pool, n_items, pre, dec, questions, n_rep, seed, n_chunks,
                        g_node_off, node_uid, g_out_off, out_x,
                        d_index, d_role, d_model, d_count, d_par_off, d_par, d_slot, slot_nmax, slot_row_off,
                        slot_ent_off, score_q, tokens_q, flops_q, latency_q, score_r, node_sums,
                        det_score, det_tokens, det_flops, det_latency):
    """graph_replay on one thread: the same numbers, without the cost of starting a parallel
    region (milliseconds of CPU on a busy machine), for small calls (one graph)."""
    for c in range(n_chunks):
        replay_chunk(A, G, n_stages, n_models, max_pool, n_items, pre, dec, questions, n_rep, seed, n_chunks, c,
                     g_node_off, node_uid, g_out_off, out_x,
                     d_index, d_role, d_model, d_count, d_par_off, d_par, d_slot, slot_nmax, slot_row_off,
                     slot_ent_off, score_q, tokens_q, flops_q, latency_q, score_r, node_sums,
                     det_score, det_tokens, det_flops, det_latency)
    return 0
