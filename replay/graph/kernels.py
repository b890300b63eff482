"""The graph replay kernel (Numba). replay/graph/reference.py is its pure-Python oracle: the
same semantics and random numbers, so the tests compare the two exactly.

`graph_replay` evaluates a batch of graphs on a set of questions and replicates in one call,
parallel over chunks of questions. For each (question, graph, replicate) it runs the graph's
nodes in topological order: the node's input key (its parents' aggregated answers, as sorted
class ids) selects its pool (`find_keyed_pool`: the pool with that key, else the largest of
that question, role and model, a counted fallback); `run_node` draws the node's samples from
the stream of (seed, question, replicate, node index) and aggregates them by the role's rule,
and returns the answer, score, tokens and the node's own latency. The draws, the vote and the
streams are those of the chain kernels (replay/kernels.py, whose helpers are imported here),
so a chain configuration as a graph gives the chain engine's numbers.

Graphs come as flat arrays (replay/graph/engine.py, `GraphBatch`): per graph a CSR of its
nodes (role, model, count), per node a CSR of its parents (indices within the graph) and per
graph a CSR of its output nodes. Results are sums: per (graph, question) over replicates, per
(chunk, graph, replicate) over the chunk's questions, per (chunk, node) over both; `detail`
arrays [graph, question, replicate] are filled when they are not empty (tests, small runs).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..kernels import (AGG_BEST, AGG_FUSE, AGG_MAJORITY, GOLDEN, MIX1, SALT_N, U64, bounded, draw_packed, item_f1,
                       mix64, next_u64, set_vote_snapshot, stream_start)


@njit(inline="always", cache=True)
def items_hash(kept, n_kept):
    """replay.graph.inputs.items_hash, in uint64."""
    h = U64(n_kept) * GOLDEN
    for j in range(n_kept):
        h = mix64(h ^ (U64(kept[j] + 1) * MIX1))
    return h


@njit(cache=True)
def set_class(A, G, kept, n_kept):
    """The class of a kept item set (the first answer class, in hash order, with those items), or -1."""
    h = items_hash(kept, n_kept)
    hs = G.set_hash
    lo = 0
    hi = hs.shape[0]
    while lo < hi:
        mid = (lo + hi) // 2
        if hs[mid] < h:
            lo = mid + 1
        else:
            hi = mid
    off, items = A.ans_item_off, A.ans_items
    for i in range(lo, hs.shape[0]):
        if hs[i] != h:
            break
        c = G.set_class[i]
        i0 = off[c]
        if off[c + 1] - i0 != n_kept:
            continue
        same = True
        for j in range(n_kept):
            if items[i0 + j] != kept[j]:
                same = False
                break
        if same:
            return c
    return np.int64(-1)


@njit(inline="always", cache=True)
def find_keyed_pool(A, G, n_stages, n_models, q, role, m, key, n_key):
    """The pool of (q, role, m) whose input key is key[:n_key] (sorted class ids); on a miss the
    largest pool, ties to the first. Returns (pool, fell_back)."""
    k = (q * n_stages + role) * n_models + m
    lo = A.qsm_pool_off[k]
    hi = A.qsm_pool_off[k + 1]
    pko, pk = G.pool_key_off, G.pool_key
    for p in range(lo, hi):
        k0 = pko[p]
        if pko[p + 1] - k0 != n_key:
            continue
        same = True
        for j in range(n_key):
            if pk[k0 + j] != key[j]:
                same = False
                break
        if same:
            return p, False
    off = A.pool_off
    best = lo
    for p in range(lo + 1, hi):
        if off[p + 1] - off[p] > off[best + 1] - off[best]:
            best = p
    return best, True


@njit(cache=True)
def run_node(A, G, width, q, role, p, n_req, k, r, seed, t_pre, t_dec,
             perm, swaps, scratch, keyv, rep, gen, icount, seen, kept):
    """Node k (its index in the graph's topological order) on pool p: draw min(n_req, pool size)
    outputs, aggregate by the role's rule. Returns (answer class, score, tokens, latency,
    fell_back of an llm_fuse role: a smaller fusion or majority vote)."""
    base = A.pool_off[p]
    size = A.pool_off[p + 1] - base
    n = min(n_req, size)
    agg = A.stage_agg[role]
    prompt = A.pool_prompt[p]
    qh = A.question_hash[q]
    s_completion, s_answer, s_score = A.s_completion, A.s_answer, A.s_score
    if agg == AGG_FUSE:
        f0 = A.pool_fus_off[p]
        f1 = A.pool_fus_off[p + 1]
        use = 0
        for f in range(f0, f1):
            if A.fus_size[f] <= n and A.fus_size[f] > use:
                use = A.fus_size[f]
        if use > 0:
            n_match = 0
            for f in range(f0, f1):
                if A.fus_size[f] == use:
                    n_match += 1
            fstate, fx = next_u64(stream_start(seed, qh, r, k) ^ (U64(n) * SALT_N))
            pick = bounded(fx, n_match)
            chosen = f0
            for f in range(f0, f1):
                if A.fus_size[f] == use:
                    if pick == 0:
                        chosen = f
                        break
                    pick -= 1
            tk = prompt + A.fus_subset_completion[chosen] + A.fus_tokens[chosen]
            lat = (prompt * t_pre + G.fus_subset_max[chosen] * t_dec + G.fus_prompt[chosen] * t_pre
                   + G.fus_completion[chosen] * t_dec)
            return G.ans_class[A.fus_answer[chosen]], A.fus_score[chosen], float(tk), lat, use != n
    bits = A.pack_bits[0]
    mask = (np.int64(1) << bits) - 1
    draw_packed(A.s_packed, base, size, n, stream_start(seed, qh, r, k), perm, swaps, scratch)
    comp = 0.0
    cmax = 0
    if agg == AGG_MAJORITY or agg == AGG_FUSE:
        # the chain kernels' vote: key = gen + count * width - (step of the first draw)
        g = gen[0] + width * width
        gen[0] = g
        best = g - 1
        lead = np.int64(0)
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
        i = rep[lead]
        return (G.ans_class[s_answer[i]], s_score[i], prompt + comp, prompt * t_pre + cmax * t_dec,
                agg == AGG_FUSE)
    if agg == AGG_BEST:
        best_i = np.int64(0)
        best_score = -np.inf
        for j in range(n):
            i = base + (np.int64(scratch[j]) & mask)
            c = s_completion[i]
            comp += c
            if c > cmax:
                cmax = c
            if s_score[i] > best_score:
                best_score = s_score[i]
                best_i = i
        return G.ans_class[s_answer[best_i]], s_score[best_i], prompt + comp, prompt * t_pre + cmax * t_dec, False
    # set vote: count the items of each drawn answer
    off, items = A.ans_item_off, A.ans_items
    n_seen = 0
    for j in range(n):
        i = base + (np.int64(scratch[j]) & mask)
        c = s_completion[i]
        comp += c
        if c > cmax:
            cmax = c
        a = s_answer[i]
        for e in range(off[a], off[a + 1]):
            it = items[e]
            if icount[it] == 0:
                seen[n_seen] = it
                n_seen += 1
            icount[it] += 1
    n_kept = set_vote_snapshot(n, seen, n_seen, icount, kept)
    for j in range(n_seen):
        icount[seen[j]] = 0
    score = item_f1(kept, n_kept, off, items, G.role_gold[q, role])
    return set_class(A, G, kept, n_kept), score, prompt + comp, prompt * t_pre + cmax * t_dec, False


@njit(cache=True, parallel=True)
def graph_replay(A, G, n_stages, n_models, max_pool, n_items, pre, dec, questions, n_rep, seed, n_chunks,
                 g_node_off, node_role, node_model, node_count, node_par_off, node_par, g_out_off, g_out,
                 score_q, tokens_q, flops_q, latency_q, score_r, node_sums,
                 det_score, det_tokens, det_flops, det_latency):
    """Replay a batch of graphs (module docstring). Accumulates, for graph b, question position
    qi, replicate r, chunk c and node (global index) u:
      score_q/tokens_q/flops_q/latency_q[b, qi] (sums over replicates), score_r[c, b, r] (sums
      over the chunk's questions), node_sums[c, u, :] = score, tokens, latency, fallbacks;
      det_*[b, qi, r] when det_score is not empty."""
    B = g_node_off.shape[0] - 1
    Q = questions.shape[0]
    model_params = A.model_params
    width = max_pool + 1
    max_nodes = 1
    for b in range(B):
        if g_node_off[b + 1] - g_node_off[b] > max_nodes:
            max_nodes = g_node_off[b + 1] - g_node_off[b]
    detail = det_score.shape[0] > 0
    for c in prange(n_chunks):
        perm = np.arange(max_pool)
        swaps = np.empty(max_pool, np.int64)
        scratch = np.empty(max_pool, A.s_packed.dtype)
        keyv = np.zeros(max_pool, np.int64)
        rep = np.zeros(max_pool, np.int64)
        gen = np.zeros(1, np.int64)
        icount = np.zeros(max(n_items, 1), np.int64)
        seen = np.empty(max(n_items, 1), np.int64)
        kept = np.empty(max(n_items, 1), np.int64)
        node_ans = np.empty(max_nodes, np.int64)
        node_score = np.empty(max_nodes, np.float64)
        node_fin = np.empty(max_nodes, np.float64)
        keybuf = np.empty(max_nodes, np.int64)
        for qi in range(c * Q // n_chunks, (c + 1) * Q // n_chunks):
            q = questions[qi]
            for b in range(B):
                n0 = g_node_off[b]
                K = g_node_off[b + 1] - n0
                o0 = g_out_off[b]
                o1 = g_out_off[b + 1]
                for r in range(n_rep):
                    tok = 0.0
                    flop = 0.0
                    for i in range(K):
                        u = n0 + i
                        # the input key: the parents' answers, sorted (insertion sort: few parents)
                        nk = 0
                        start = 0.0
                        for e in range(node_par_off[u], node_par_off[u + 1]):
                            pj = node_par[e]
                            v = node_ans[pj]
                            j = nk
                            while j > 0 and keybuf[j - 1] > v:
                                keybuf[j] = keybuf[j - 1]
                                j -= 1
                            keybuf[j] = v
                            nk += 1
                            if node_fin[pj] > start:
                                start = node_fin[pj]
                        role = node_role[u]
                        m = node_model[u]
                        p, missed = find_keyed_pool(A, G, n_stages, n_models, q, role, m, keybuf, nk)
                        ans, sc, tk, lat, fused_fb = run_node(A, G, width, q, role, p, node_count[u], i, r, seed,
                                                              pre[m], dec[m], perm, swaps, scratch, keyv, rep, gen,
                                                              icount, seen, kept)
                        node_ans[i] = ans
                        node_score[i] = sc
                        node_fin[i] = start + lat
                        tok += tk
                        flop += 2.0 * model_params[m] * tk
                        node_sums[c, u, 0] += sc
                        node_sums[c, u, 1] += tk
                        node_sums[c, u, 2] += lat
                        node_sums[c, u, 3] += 1.0 if (missed or fused_fb) else 0.0
                    # the output: one node, or a vote over several (ties to the first listed)
                    win = g_out[o0]
                    if o1 - o0 > 1:
                        best_count = 0
                        for x in range(o0, o1):
                            cnt = 0
                            for y in range(o0, o1):
                                if node_ans[g_out[y]] == node_ans[g_out[x]]:
                                    cnt += 1
                            if cnt > best_count:
                                best_count = cnt
                                win = g_out[x]
                    sc = node_score[win]
                    lat = node_fin[g_out[o0]]
                    for x in range(o0 + 1, o1):
                        if node_fin[g_out[x]] > lat:
                            lat = node_fin[g_out[x]]
                    score_q[b, qi] += sc
                    tokens_q[b, qi] += tok
                    flops_q[b, qi] += flop
                    latency_q[b, qi] += lat
                    score_r[c, b, r] += sc
                    if detail:
                        det_score[b, qi, r] = sc
                        det_tokens[b, qi, r] = tok
                        det_flops[b, qi, r] = flop
                        det_latency[b, qi, r] = lat
    return 0
