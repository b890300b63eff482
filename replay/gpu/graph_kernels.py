"""Graph replay for CUDA (Numba CUDA): replay/graph/kernels.py's `graph_replay` on the GPU, with
the same semantics and the same random numbers, so a batch of graphs gives exactly the CPU
kernel's result arrays (tests/gpu_sim_checks.py checks it under Numba's CUDA simulator against
the CPU kernel and replay/graph/reference.py).

Three kernels, launched by replay/gpu/graph_host.py for a chunk of questions at a time:

1. `graph_nodes`, once per node place (the batch's distinct nodes are ordered by place, and a
   node's parents have smaller places, so a launch only reads what earlier launches wrote): one
   thread per (distinct node, question, replicate) draws the node directly, from the stream of
   (seed, question, replicate, place), and writes its answer class, score, finish time, tokens,
   own latency and fallback flag into [node, question, replicate] arrays (replicates innermost:
   neighbouring threads read their parents' rows and write their own as neighbouring words).
   No memo: the CPU kernel's memo (`memo_fill`) reads the result at count n off a longer pass
   along the same shuffle, which is the result of drawing n directly (common random numbers;
   tests/test_graph_replay.py compares memo='never' and memo='always' with the reference), and
   the CPU's per-question key table is a cache in front of `find_keyed_pool`, called here
   directly.
2. `graph_outputs`: one thread per (graph, question) sums its nodes' tokens and FLOPs in node
   order per replicate, takes its output (a vote over several output nodes, ties to the first
   listed), writes the per-(graph, question, replicate) figures, and sums them over replicates
   in replicate order: score_q, tokens_q, flops_q and latency_q, as the CPU kernel's.
3. `graph_chunk_sums` (per (CPU chunk, graph, replicate): the scores summed over the chunk's
   questions in question order) and `node_chunk_sums` (per (CPU chunk, distinct node): per
   question the sum over replicates, added in question order): score_r and node_sums of the CPU
   kernel for the same chunking of questions (`n_chunks`), continued across the host's memory
   chunks, so they too are bit-identical.

Shared with the CPU kernels, not rewritten: the streams and vote helpers are the Python
functions behind the @njit helpers of replay/kernels.py and replay/graph/kernels.py (items_hash,
set_class, find_keyed_pool, pick_fusion, vote_drawn, best_drawn, set_drawn, draw_packed and its
shuffle steps), compiled again as CUDA device functions (replay/gpu/kernels.py `_device`), the
set vote's insertion sort (set_vote_kept) included. Written here: the kernels. No product feeds
an add (latency and FLOPs go through `mul`, dmul_rn on a GPU): see replay/gpu/kernels.py on
fused multiply-adds.
"""

from __future__ import annotations

import numpy as np

from . import kernels as GK  # numba.cuda, the shared device helpers, `mul`
from ..graph import kernels as GRK

cuda = GK.cuda
K = GK.K
mul = GK.mul
U64 = np.uint64
AGG_MAJORITY, AGG_SET, AGG_BEST, AGG_FUSE = K.AGG_MAJORITY, K.AGG_SET, K.AGG_BEST, K.AGG_FUSE

_B = GK._device(["shuffle_step", "unshuffle", "draw_packed"], K, dict(GK._D))
_B = GK._device(["items_hash", "set_class", "find_keyed_pool", "pick_fusion", "vote_drawn", "best_drawn",
                 "set_drawn"], GRK, _B)
stream_start = GK.stream_start
next_position = GK.next_position
item_f1 = GK.item_f1
draw_packed = _B["draw_packed"]
items_hash, set_class, find_keyed_pool, pick_fusion = (_B["items_hash"], _B["set_class"], _B["find_keyed_pool"],
                                                       _B["pick_fusion"])
vote_drawn, best_drawn, set_drawn = _B["vote_drawn"], _B["best_drawn"], _B["set_drawn"]


@cuda.jit(cache=True)
def identity_columns(perm):
    """perm[i, t] = i: each thread's index permutation starts as the identity."""
    n = perm.shape[0] * perm.shape[1]
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        i = e // perm.shape[1]
        perm[i, e - i * perm.shape[1]] = i


@cuda.jit(cache=True)
def graph_nodes(question_hash, stage_agg, qsm_pool_off, pool_off, pool_prompt, s_answer, s_score, s_completion,
                s_packed, ans_item_off, ans_items, pool_fus_off, fus_size, fus_answer, fus_score, fus_tokens,
                fus_subset_completion, pool_key_off, pool_key, ans_class, set_hash, set_cls, role_gold, fus_prompt,
                fus_completion, fus_subset_max, by_hash, hash_sorted, qsm_largest,
                bits, n_stages, n_models, width, pre, dec, questions, n_rep, seed,
                x0, x1, d_index, d_role, d_model, d_count, d_par_off, d_par,
                scratch, perm, swaps, keyv, rep, gen, icount, seen, kept, keybuf,
                x_ans, x_score, x_fin, x_tok, x_lat, x_fell):
    """Distinct nodes x0..x1 (one place) on every question of `questions` (this chunk's) and
    replicate: one task per (node, question, replicate), grid-stride; each thread owns column t
    of the scratch arrays. Writes x_*[x, qi, r]; reads the parents' rows, written by the launches
    of earlier places (replay/graph/kernels.py replay_chunk, pass 1, with every node drawn
    directly)."""
    t = cuda.grid(1)
    mask = (np.int64(1) << bits) - 1
    n_q = questions.shape[0]
    per_x = n_q * n_rep
    sc_t = scratch[:, t]
    perm_t = perm[:, t]
    swaps_t = swaps[:, t]
    keyv_t = keyv[:, t]
    rep_t = rep[:, t]
    gen_t = gen[:, t]
    icount_t = icount[:, t]
    seen_t = seen[:, t]
    kept_t = kept[:, t]
    kb = keybuf[:, t]
    for task in range(t, (x1 - x0) * per_x, cuda.gridsize(1)):
        xr = task // per_x
        rem = task - xr * per_x
        qi = rem // n_rep
        r = rem - qi * n_rep
        x = x0 + xr
        q = questions[qi]
        qh = question_hash[q]
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
        start = 0.0
        p = lo
        missed = False
        if not keyless:
            # the input key: the parents' answers, sorted (insertion sort: few parents)
            nk = 0
            for e in range(e0, e1):
                pj = d_par[e]
                v = x_ans[pj, qi, r]
                j = nk
                while j > 0 and kb[j - 1] > v:
                    kb[j] = kb[j - 1]
                    j -= 1
                kb[j] = v
                nk += 1
                if x_fin[pj, qi, r] > start:
                    start = x_fin[pj, qi, r]
            p, missed = find_keyed_pool(by_hash, hash_sorted, pool_key_off, pool_key, qsm_largest, lo, hi, k, kb, nk,
                                        items_hash(kb, nk))
        base = pool_off[p]
        size = pool_off[p + 1] - base
        n = min(d_count[x], size)
        prompt = pool_prompt[p]
        fell = missed
        f = np.int64(-1)
        if agg == AGG_FUSE:
            f, use = pick_fusion(pool_fus_off, fus_size, p, n, seed, qh, r, i)
            fell = fell or use != n
        if f >= 0:  # a stored fusion: no draw
            ans = ans_class[fus_answer[f]]
            sc = fus_score[f]
            tk = float(prompt + fus_subset_completion[f] + fus_tokens[f])
            lat = (mul(float(prompt), t_pre) + mul(float(fus_subset_max[f]), t_dec)
                   + mul(float(fus_prompt[f]), t_pre) + mul(float(fus_completion[f]), t_dec))
        else:
            draw_packed(s_packed, base, size, n, stream_start(seed, qh, r, i), perm_t, swaps_t, sc_t)
            if agg == AGG_MAJORITY or agg == AGG_FUSE:  # llm_fuse without a fusion: majority
                w, comp, cmax = vote_drawn(sc_t, n, base, bits, mask, s_completion, keyv_t, rep_t, gen_t, width)
                ans = ans_class[s_answer[w]]
                sc = s_score[w]
            elif agg == AGG_BEST:
                w, comp, cmax = best_drawn(sc_t, n, base, mask, s_completion, s_score)
                ans = ans_class[s_answer[w]]
                sc = s_score[w]
            else:
                n_kept, comp, cmax = set_drawn(sc_t, n, base, mask, s_completion, s_answer, ans_item_off, ans_items,
                                               icount_t, seen_t, kept_t)
                ans = set_class(ans_item_off, ans_items, set_hash, set_cls, kept_t, n_kept)
                sc = item_f1(kept_t, n_kept, ans_item_off, ans_items, role_gold[q, role])
            tk = prompt + comp
            lat = mul(float(prompt), t_pre) + mul(float(cmax), t_dec)
        x_ans[x, qi, r] = ans
        x_score[x, qi, r] = sc
        x_fin[x, qi, r] = start + lat
        x_tok[x, qi, r] = tk
        x_lat[x, qi, r] = lat
        x_fell[x, qi, r] = 1 if fell else 0


@cuda.jit(cache=True)
def graph_outputs(n_rep, g_node_off, node_uid, g_out_off, out_x, x_params2, x_ans, x_score, x_fin, x_tok,
                  det_score, det_tokens, det_flops, det_latency, score_q, tokens_q, flops_q, latency_q):
    """Every graph on every question of the chunk (replay_chunk, pass 2): one task per (graph,
    question), grid-stride. Writes det_*[b, qi, r] and the sums over replicates (in replicate
    order) *_q[b, qi]."""
    B = g_node_off.shape[0] - 1
    n_q = x_ans.shape[1]
    for task in range(cuda.grid(1), B * n_q, cuda.gridsize(1)):
        b = task // n_q
        qi = task - b * n_q
        n0 = g_node_off[b]
        n1 = g_node_off[b + 1]
        o0 = g_out_off[b]
        o1 = g_out_off[b + 1]
        xo = out_x[o0]
        s_sc = 0.0
        s_tk = 0.0
        s_lat = 0.0
        for r in range(n_rep):
            tok = 0.0
            flop = 0.0
            for u in range(n0, n1):
                x = node_uid[u]
                tk = x_tok[x, qi, r]
                tok += tk
                flop += mul(x_params2[x], tk)
            win = x_score[xo, qi, r]
            lat = x_fin[xo, qi, r]
            if o1 - o0 > 1:
                best_cnt = 0
                for y in range(o0, o1):
                    xy = out_x[y]
                    a = x_ans[xy, qi, r]
                    cnt = 0
                    for z in range(o0, o1):
                        cnt += 1 if x_ans[out_x[z], qi, r] == a else 0
                    if cnt > best_cnt:
                        best_cnt = cnt
                        win = x_score[xy, qi, r]
                    if x_fin[xy, qi, r] > lat:
                        lat = x_fin[xy, qi, r]
            det_score[b, qi, r] = win
            det_tokens[b, qi, r] = tok
            det_flops[b, qi, r] = flop
            det_latency[b, qi, r] = lat
            s_sc += win
            s_tk += tok
            s_lat += lat
        # FLOPs as the CPU kernel sums them: per node, 2 x params x its tokens summed over
        # replicates (whole numbers: exact in any order), added in node order
        s_fl = 0.0
        for u in range(n0, n1):
            x = node_uid[u]
            t = 0.0
            for r in range(n_rep):
                t += x_tok[x, qi, r]
            s_fl += mul(x_params2[x], t)
        score_q[b, qi] = s_sc
        tokens_q[b, qi] = s_tk
        flops_q[b, qi] = s_fl
        latency_q[b, qi] = s_lat


@cuda.jit(cache=True)
def graph_chunk_sums(q0, n_total, n_chunks, det_score, score_r):
    """score_r[c, b, r] += det_score[b, qi, r] for the questions of CPU chunk c (positions
    c * n_total // n_chunks up to the next chunk's) that this memory chunk holds (positions q0
    onwards), in question order: one task per (chunk, graph, replicate)."""
    B = det_score.shape[0]
    n_q = det_score.shape[1]
    R = det_score.shape[2]
    for task in range(cuda.grid(1), n_chunks * B * R, cuda.gridsize(1)):
        c = task // (B * R)
        rem = task - c * B * R
        b = rem // R
        r = rem - b * R
        lo = max(c * n_total // n_chunks, q0)
        hi = min((c + 1) * n_total // n_chunks, q0 + n_q)
        acc = score_r[c, b, r]
        for qa in range(lo, hi):
            acc += det_score[b, qa - q0, r]
        score_r[c, b, r] = acc


@cuda.jit(cache=True)
def node_chunk_sums(q0, n_total, n_chunks, x_score, x_tok, x_lat, x_fell, node_sums):
    """node_sums[c, x, :] (score, tokens, latency, fallbacks) += per question the sum over
    replicates (from zero, in replicate order), question by question, for the questions of CPU
    chunk c held here: one task per (chunk, distinct node)."""
    X = x_score.shape[0]
    n_q = x_score.shape[1]
    R = x_score.shape[2]
    for task in range(cuda.grid(1), n_chunks * X, cuda.gridsize(1)):
        c = task // X
        x = task - c * X
        lo = max(c * n_total // n_chunks, q0)
        hi = min((c + 1) * n_total // n_chunks, q0 + n_q)
        a0 = node_sums[c, x, 0]
        a1 = node_sums[c, x, 1]
        a2 = node_sums[c, x, 2]
        a3 = node_sums[c, x, 3]
        for qa in range(lo, hi):
            qi = qa - q0
            s0 = 0.0
            s1 = 0.0
            s2 = 0.0
            s3 = 0.0
            for r in range(R):
                s0 += x_score[x, qi, r]
                s1 += x_tok[x, qi, r]
                s2 += x_lat[x, qi, r]
                s3 += 1.0 if x_fell[x, qi, r] != 0 else 0.0
            a0 += s0
            a1 += s1
            a2 += s2
            a3 += s3
        node_sums[c, x, 0] = a0
        node_sums[c, x, 1] = a1
        node_sums[c, x, 2] = a2
        node_sums[c, x, 3] = a3
