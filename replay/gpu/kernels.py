"""The replay kernels for CUDA (Numba CUDA): the memo tables, lookups and the exhaustive scan of
replay/kernels.py, one GPU thread per (pool, replicate), per configuration, or per scanned
configuration. Same semantics and the same random numbers as the CPU kernels, so a
configuration scores exactly the same on either device (tests/test_gpu_replay.py checks it under
Numba's CUDA simulator against the CPU engine and replay/reference.py).

Shared with the CPU kernels, not rewritten: the random streams (mix64, stream_start, next_u64,
next_position, bounded) and the pool look-ups (find_pool, match_items_ctx, item_f1) are the
very Python functions of replay/kernels.py (`py_func` of their @njit dispatchers), compiled a
second time as CUDA device functions with their globals pointed at each other's device builds
(`_device`). Only what cannot compile for CUDA is written again here: scratch space is global
memory handed in by the host (no np.empty in device code), one column per thread so that threads
reading the same step touch neighbouring words, and a pool is always shuffled as a copy of its
packed words (the CPU's index-permutation path for short passes visits the same positions in
the same order, so the draws are identical).

Floating point. NVVM contracts a multiply feeding an add into one fused multiply-add (-fma=1 is
its default), which rounds once instead of twice: a last-bit difference from the CPU. So no
product here feeds an add: FLOPs come from a table (memo_flop = (2 x params) x tokens, a lone
product written by the build kernel, read by the others), and the squares and score-rule
products go through `mul`, libdevice's dmul_rn, which CUDA never contracts. Divisions are IEEE
(prec_div, the default without fastmath).

Importing this module imports numba.cuda: with NUMBA_ENABLE_CUDASIM=1 set before, the kernels
run on the simulator (slow, CPU-only: for tests on tiny stores).
"""

from __future__ import annotations

import types

import numpy as np

from . import numpy_shim

numpy_shim()  # before numba.cuda's first import (NumPy 2.5 has no np.row_stack)

from numba import config as _nb_config  # noqa: E402
from numba import cuda  # noqa: E402

from .. import kernels as K  # noqa: E402
from ..kernel_cache import install as _cache_install  # noqa: E402

_cache_install("cuda")  # before the decorators: the cache is keyed on every kernel module

SIMULATOR = bool(_nb_config.ENABLE_CUDASIM)

AGG_MAJORITY, AGG_SET, AGG_BEST, AGG_FUSE = K.AGG_MAJORITY, K.AGG_SET, K.AGG_BEST, K.AGG_FUSE
RULE_LAST, RULE_ALL, RULE_PRODUCT, RULE_MEAN = K.RULE_LAST, K.RULE_ALL, K.RULE_PRODUCT, K.RULE_MEAN
U64 = np.uint64
SALT_N = K.SALT_N


def _device(names, module=K, built=None):
    """CUDA device builds of the named @njit helpers of `module` (replay/kernels.py), from their
    own Python source: each build's globals are the module's, with the helpers it calls replaced
    by their device builds (so stream_start calls the device mix64, not the CPU dispatcher).
    `built`: device builds already made (of another module's helpers, or stand-ins), used by
    name and extended with the new ones."""
    built = {} if built is None else built
    for name in names:
        py = getattr(module, name).py_func
        env = dict(py.__globals__)
        env.update(built)
        clone = types.FunctionType(py.__code__, env, py.__name__, py.__defaults__, py.__closure__)
        built[name] = cuda.jit(device=True)(clone)
    return built


_D = _device(["mix64", "stream_start", "next_u64", "bounded", "next_position", "find_pool", "match_items_ctx",
              "item_f1", "set_vote_kept"])
stream_start = _D["stream_start"]
next_u64 = _D["next_u64"]
bounded = _D["bounded"]
next_position = _D["next_position"]
find_pool = _D["find_pool"]
match_items_ctx = _D["match_items_ctx"]
item_f1 = _D["item_f1"]
set_vote_kept = _D["set_vote_kept"]  # the set vote with an insertion sort (ndarray.sort is not on the GPU)

if SIMULATOR:
    @cuda.jit(device=True)
    def mul(x, y):
        """x * y, rounded on its own (see the module docstring: no fused multiply-add)."""
        return x * y
else:  # pragma: no cover - needs a GPU
    from numba.cuda import libdevice

    @cuda.jit(device=True)
    def mul(x, y):
        """x * y, rounded on its own: dmul_rn is never contracted into a fused multiply-add."""
        return libdevice.dmul_rn(x, y)


@cuda.jit(device=True)
def rule_step(rule, acc, score):
    """replay.kernels.rule_step with its product through `mul`."""
    if rule == RULE_ALL:
        return acc if score >= 1.0 else 0.0
    if rule == RULE_PRODUCT:
        return mul(acc, score)
    if rule == RULE_MEAN:
        return acc + score
    return acc


@cuda.jit(device=True)
def rule_end(rule, acc, score, n_stages):
    """replay.kernels.rule_end with its product through `mul`."""
    if rule == RULE_LAST:
        return score
    if rule == RULE_ALL:
        return acc if score >= 1.0 else 0.0
    if rule == RULE_PRODUCT:
        return mul(acc, score)
    return (acc + score) / n_stages


@cuda.jit(device=True)
def locate(qsm_pool_off, pool_ctx, pool_off, stage_indep, n_stages, n_models, q, s, m, ctx):
    """replay.kernels.locate, with the arrays passed one by one."""
    if s == 0 or stage_indep[s]:
        return qsm_pool_off[(q * n_stages + s) * n_models + m], False
    return find_pool(qsm_pool_off, pool_ctx, pool_off, n_stages, n_models, q, s, m, ctx)


@cuda.jit(device=True)
def snapshots(question_hash, stage_agg, qsm_pool_off, pool_ctx, pool_off, pool_prompt, s_answer, s_score,
              s_completion, s_packed, gold, ans_item_off, ans_items, pool_fus_off, fus_size, fus_answer, fus_score,
              fus_tokens, fus_subset_completion, stage_indep, bits, n_stages, n_models, width,
              q, s, p, r, seed, n_max, scratch, key, rep, g, icount, seen, kept,
              o, flop_scale, memo_ans, memo_score, memo_tok, memo_flag, memo_flop):
    """replay.kernels.stage_snapshots for every count (snap_from = 0), written to the memo at
    o + n - 1 for n = 1..n_max. `g` is this pass's generation of vote keys (keys below it count
    as zero). scratch/key/rep/icount/seen/kept: this thread's columns."""
    mask = (np.int64(1) << bits) - 1
    base = pool_off[p]
    size = pool_off[p + 1] - base
    agg = stage_agg[s]
    prompt = pool_prompt[p]
    qh = question_hash[q]
    # the pool's packed words, shuffled in place: step j only moves positions >= j, so the word
    # at j is final as soon as step j is done (the CPU's two loops, as one)
    for j in range(size):
        scratch[j] = s_packed[base + j]
    state = stream_start(seed, qh, r, s)
    x = U64(0)
    comp = 0.0
    best = g - 1
    lead = np.int64(0)
    best_i = np.int64(0)
    best_score = -np.inf
    n_seen = 0
    for j in range(n_max):
        state, x, k = next_position(state, x, j, size)
        t = scratch[k]
        scratch[k] = scratch[j]
        scratch[j] = t
        v = np.int64(t)
        i = base + (v & mask)
        comp += s_completion[i]
        if agg == AGG_MAJORITY or agg == AGG_FUSE:
            a = v >> bits
            kk = key[a]
            if kk < g:
                kk = g + width - j
                rep[a] = i
            else:
                kk += width
            key[a] = kk
            if kk > best:
                best = kk
                lead = a
            memo_ans[o + j] = s_answer[rep[lead]]
            memo_score[o + j] = s_score[rep[lead]]
        elif agg == AGG_BEST:
            if s_score[i] > best_score:
                best_score = s_score[i]
                best_i = i
            memo_ans[o + j] = s_answer[best_i]
            memo_score[o + j] = best_score
        else:  # set vote
            a = s_answer[i]
            for e in range(ans_item_off[a], ans_item_off[a + 1]):
                it = ans_items[e]
                if icount[it] == 0:
                    seen[n_seen] = it
                    n_seen += 1
                icount[it] += 1
            n_kept = set_vote_kept(j + 1, seen, n_seen, icount, kept)
            memo_score[o + j] = item_f1(kept, n_kept, ans_item_off, ans_items, gold[q, s])
            if s + 1 < n_stages and not stage_indep[s + 1]:
                memo_ans[o + j] = match_items_ctx(qsm_pool_off, pool_ctx, ans_item_off, ans_items, n_stages,
                                                  n_models, q, s + 1, kept, n_kept)
            else:
                memo_ans[o + j] = -1
        tk = prompt + comp
        memo_tok[o + j] = tk
        memo_flop[o + j] = mul(flop_scale, tk)
        memo_flag[o + j] = 0
    for j in range(n_seen):
        icount[seen[j]] = 0
    if agg == AGG_FUSE:
        f0 = pool_fus_off[p]
        f1 = pool_fus_off[p + 1]
        for n in range(1, n_max + 1):
            use = 0
            for f in range(f0, f1):
                if fus_size[f] <= n and fus_size[f] > use:
                    use = fus_size[f]
            if use == 0:
                memo_flag[o + n - 1] = 1
                continue
            n_match = 0
            for f in range(f0, f1):
                if fus_size[f] == use:
                    n_match += 1
            fstate, fx = next_u64(stream_start(seed, qh, r, s) ^ (U64(n) * SALT_N))
            pick = bounded(fx, n_match)
            chosen = f0
            for f in range(f0, f1):
                if fus_size[f] == use:
                    if pick == 0:
                        chosen = f
                        break
                    pick -= 1
            memo_flag[o + n - 1] = 1 if use != n else 0
            memo_ans[o + n - 1] = fus_answer[chosen]
            memo_score[o + n - 1] = fus_score[chosen]
            tk = prompt + fus_subset_completion[chosen] + fus_tokens[chosen]
            memo_tok[o + n - 1] = tk
            memo_flop[o + n - 1] = mul(flop_scale, tk)


@cuda.jit(cache=True)
def memo_build(question_hash, stage_agg, qsm_pool_off, pool_ctx, pool_off, pool_prompt, s_answer, s_score,
               s_completion, s_packed, gold, ans_item_off, ans_items, pool_fus_off, fus_size, fus_answer, fus_score,
               fus_tokens, fus_subset_completion, stage_indep, bits, n_stages, n_models, width, n_rep, seed,
               row_pool, row_q, row_stage, row_nmax, row_base, row_scale,
               scratch, key, rep, icount, seen, kept,
               memo_ans, memo_score, memo_tok, memo_flag, memo_flop):
    """Memo tables (replay.kernels.memo_build): one task per (row, replicate), grid-stride over
    tasks; each thread owns column t of the scratch arrays ([max_pool or n_items, threads])."""
    t = cuda.grid(1)
    n_threads = cuda.gridsize(1)
    n_tasks = row_pool.shape[0] * n_rep
    g = np.int64(0)
    for task in range(t, n_tasks, n_threads):
        row = task // n_rep
        r = task - row * n_rep
        nmax = row_nmax[row]
        g += width * width  # a fresh generation of vote keys for every pass
        snapshots(question_hash, stage_agg, qsm_pool_off, pool_ctx, pool_off, pool_prompt, s_answer, s_score,
                  s_completion, s_packed, gold, ans_item_off, ans_items, pool_fus_off, fus_size, fus_answer,
                  fus_score, fus_tokens, fus_subset_completion, stage_indep, bits, n_stages, n_models, width,
                  row_q[row], row_stage[row], row_pool[row], r, seed, nmax,
                  scratch[:, t], key[:, t], rep[:, t], g, icount[:, t], seen[:, t], kept[:, t],
                  row_base[row] + r * nmax, row_scale[row], memo_ans, memo_score, memo_tok, memo_flag, memo_flop)


@cuda.jit(cache=True)
def replay_groups(question_hash, stage_agg, qsm_pool_off, pool_ctx, pool_off, pool_prompt, s_answer, s_score,
                  s_completion, s_packed, gold, ans_item_off, ans_items, pool_fus_off, fus_size, fus_answer, fus_score,
                  fus_tokens, fus_subset_completion, stage_indep, score_rule, bits, n_stages, n_models, width,
                  questions, n_rep, seed, model_scale, grp_models, grp_counts, grp_cfg_off, cfg_last_count,
                  scratch, key, rep, icount, seen, kept, snap_ans, snap_score, snap_tok, snap_flag, snap_flop,
                  out_score, out_tokens, out_flops, st_score, st_tokens, st_fallback):
    """Direct replay (replay.kernels.replay_groups), one task per (group, question, replicate),
    grid-stride. Per-cell outputs out_*[c, qi, r] as on the CPU; the per-stage figures, which the
    CPU sums over replicates in replicate order, are written per replicate, st_*[r, c, s, qi], for
    the host to sum over the first axis (NumPy adds along an outer axis in order: the same sums)."""
    t = cuda.grid(1)
    rule = score_rule[0]
    last = n_stages - 1
    n_q = questions.shape[0]
    per_g = n_q * n_rep
    g_key = np.int64(0)
    sa = snap_ans[:, t]
    ss = snap_score[:, t]
    stk = snap_tok[:, t]
    sf = snap_flag[:, t]
    sfl = snap_flop[:, t]
    for task in range(t, grp_models.shape[0] * per_g, cuda.gridsize(1)):
        g = task // per_g
        rem = task - g * per_g
        qi = rem // n_rep
        r = rem - qi * n_rep
        q = questions[qi]
        c0 = grp_cfg_off[g]
        c1 = grp_cfg_off[g + 1]
        ctx = np.int64(0)
        tok_acc = 0.0
        flop_acc = 0.0
        pre = 1.0 if rule != RULE_MEAN else 0.0
        for s in range(n_stages):
            m = grp_models[g, s]
            p, fb = locate(qsm_pool_off, pool_ctx, pool_off, stage_indep, n_stages, n_models, q, s, m, ctx)
            size = pool_off[p + 1] - pool_off[p]
            n_max = grp_counts[g, s] if s < last else cfg_last_count[c1 - 1]
            n_max = min(n_max, size)
            g_key += width * width
            snapshots(question_hash, stage_agg, qsm_pool_off, pool_ctx, pool_off, pool_prompt, s_answer, s_score,
                      s_completion, s_packed, gold, ans_item_off, ans_items, pool_fus_off, fus_size, fus_answer,
                      fus_score, fus_tokens, fus_subset_completion, stage_indep, bits, n_stages, n_models, width,
                      q, s, p, r, seed, n_max, scratch[:, t], key[:, t], rep[:, t], g_key, icount[:, t], seen[:, t],
                      kept[:, t], 0, model_scale[m], sa, ss, stk, sf, sfl)
            if s < last:
                j = n_max - 1
                ctx = sa[j]
                tk = stk[j]
                tok_acc += tk
                flop_acc += sfl[j]
                pre = rule_step(rule, pre, ss[j])
                for c in range(c0, c1):
                    st_score[r, c, s, qi] = ss[j]
                    st_tokens[r, c, s, qi] = tk
                    st_fallback[r, c, s, qi] = 1 if (fb or sf[j] != 0) else 0
            else:
                for c in range(c0, c1):
                    j = min(cfg_last_count[c], size) - 1
                    tk = stk[j]
                    out_score[c, qi, r] = rule_end(rule, pre, ss[j], n_stages)
                    out_tokens[c, qi, r] = tok_acc + tk
                    out_flops[c, qi, r] = flop_acc + sfl[j]
                    st_score[r, c, s, qi] = ss[j]
                    st_tokens[r, c, s, qi] = tk
                    st_fallback[r, c, s, qi] = 1 if (fb or sf[j] != 0) else 0


@cuda.jit(cache=True)
def memo_lookup(qsm_pool_off, pool_ctx, pool_off, stage_indep, score_rule, n_stages, n_models, questions, q_offset,
                n_rep, cfg_models, cfg_counts, pool_row, row_nmax, row_base, memo_ans, memo_score, memo_tok,
                memo_flag, memo_flop, score_q, score_r, tok_sum, flop_sum, st_score, st_tokens, st_fallback):
    """replay.kernels.memo_lookup: one thread per configuration (grid-stride), adding into that
    configuration's own sums in the CPU kernel's order (no atomics, the same rounding)."""
    rule = score_rule[0]
    last = n_stages - 1
    n_q = questions.shape[0]
    for c in range(cuda.grid(1), cfg_models.shape[0], cuda.gridsize(1)):
        for qi in range(n_q):
            q = questions[qi]
            acc_q = 0.0
            for r in range(n_rep):
                ctx = np.int64(0)
                tok = 0.0
                flop = 0.0
                sc = 0.0
                pre = 1.0 if rule != RULE_MEAN else 0.0
                for s in range(n_stages):
                    m = cfg_models[c, s]
                    p, fb = locate(qsm_pool_off, pool_ctx, pool_off, stage_indep, n_stages, n_models, q, s, m, ctx)
                    row = pool_row[p]
                    n = min(cfg_counts[c, s], pool_off[p + 1] - pool_off[p])
                    o = row_base[row] + r * row_nmax[row] + n - 1
                    ctx = memo_ans[o]
                    sc = memo_score[o]
                    tk = memo_tok[o]
                    tok += tk
                    flop += memo_flop[o]
                    st_score[c, s] += sc
                    st_tokens[c, s] += tk
                    st_fallback[c, s] += 1 if (fb or memo_flag[o] != 0) else 0
                    if s < last:
                        pre = rule_step(rule, pre, sc)
                sc = rule_end(rule, pre, sc, n_stages)
                acc_q += sc
                score_r[c, r] += sc
                tok_sum[c] += tok
                flop_sum[c] += flop
            score_q[c, q_offset + qi] += acc_q


@cuda.jit(device=True)
def _scan_prefix(qsm_pool_off, pool_ctx, pool_off, stage_indep, rule, n_stages, n_models, q, r, ch_model, ch_count,
                 prefix, i, pool_row, row_nmax, row_base, memo_ans, memo_score, memo_flop):
    """Every stage but the last of prefix i on (question q, replicate r): the last stage's
    context, the FLOPs so far and the score-rule accumulator (as replay.kernels.scan_product)."""
    last = n_stages - 1
    ctx = np.int64(0)
    pre = 0.0
    acc = 1.0 if rule != RULE_MEAN else 0.0
    for s in range(last):
        k = prefix[i, s]
        m = ch_model[s, k]
        p, fb = locate(qsm_pool_off, pool_ctx, pool_off, stage_indep, n_stages, n_models, q, s, m, ctx)
        row = pool_row[p]
        n = min(ch_count[s, k], pool_off[p + 1] - pool_off[p])
        o = row_base[row] + r * row_nmax[row] + n - 1
        ctx = memo_ans[o]
        pre += memo_flop[o]
        if rule != RULE_LAST:
            acc = rule_step(rule, acc, memo_score[o])
    return ctx, pre, acc


@cuda.jit(cache=True)
def scan_product(qsm_pool_off, pool_ctx, pool_off, stage_indep, score_rule, n_stages, n_models, questions, n_rep,
                 ch_model, ch_count, n_last, prefix, pool_row, row_nmax, row_base, memo_ans, memo_score, memo_flop,
                 out_score, out_rep_sq, out_q_sq, out_q_ends, out_flops):
    """replay.kernels.scan_product, one thread per configuration (prefix i, last choice k),
    grid-stride. The CPU kernel sums per replicate over questions (for the replicate error) and
    per question over replicates (for the interval) in one pass with scratch arrays; here two
    passes over the memo, each in the CPU's order, so every sum is rounded as it is there."""
    rule = score_rule[0]
    last = n_stages - 1
    n_q = questions.shape[0]
    n_cfg = prefix.shape[0] * n_last
    for cfg in range(cuda.grid(1), n_cfg, cuda.gridsize(1)):
        i = cfg // n_last
        k = cfg - i * n_last
        m = ch_model[last, k]
        cnt = ch_count[last, k]
        # pass 1, replicates outer: the per-replicate sums over questions
        tot = 0.0
        sq = 0.0
        for r in range(n_rep):
            rep_sum = 0.0
            for qi in range(n_q):
                q = questions[qi]
                ctx, pre, acc = _scan_prefix(qsm_pool_off, pool_ctx, pool_off, stage_indep, rule, n_stages, n_models,
                                             q, r, ch_model, ch_count, prefix, i, pool_row, row_nmax, row_base,
                                             memo_ans, memo_score, memo_flop)
                p, fb = locate(qsm_pool_off, pool_ctx, pool_off, stage_indep, n_stages, n_models, q, last, m, ctx)
                row = pool_row[p]
                o = row_base[row] + r * row_nmax[row] - 1 + min(cnt, pool_off[p + 1] - pool_off[p])
                rep_sum += rule_end(rule, acc, memo_score[o], n_stages)
            tot += rep_sum
            sq += mul(rep_sum, rep_sum)
        # pass 2, questions outer: the per-question sums over replicates, and the FLOPs
        q_sq = 0.0
        q_ends = 0.0
        flops = 0.0
        for qi in range(n_q):
            q = questions[qi]
            q_sum = 0.0
            for r in range(n_rep):
                ctx, pre, acc = _scan_prefix(qsm_pool_off, pool_ctx, pool_off, stage_indep, rule, n_stages, n_models,
                                             q, r, ch_model, ch_count, prefix, i, pool_row, row_nmax, row_base,
                                             memo_ans, memo_score, memo_flop)
                p, fb = locate(qsm_pool_off, pool_ctx, pool_off, stage_indep, n_stages, n_models, q, last, m, ctx)
                row = pool_row[p]
                o = row_base[row] + r * row_nmax[row] - 1 + min(cnt, pool_off[p + 1] - pool_off[p])
                q_sum += rule_end(rule, acc, memo_score[o], n_stages)
                flops += pre + memo_flop[o]
            q_sq += mul(q_sum, q_sum)
            if q_sum <= 0.0 or q_sum >= n_rep:
                q_ends += 1.0
        out_score[i, k] = tot
        out_rep_sq[i, k] = sq
        out_q_sq[i, k] = q_sq
        out_q_ends[i, k] = q_ends
        out_flops[i, k] = flops


@cuda.jit(cache=True)
def scan_question_sums(qsm_pool_off, pool_ctx, pool_off, stage_indep, score_rule, n_stages, n_models, questions,
                       n_rep, ch_model, ch_count, n_last, prefix, pool_row, row_nmax, row_base, memo_ans, memo_score,
                       ref_q, s1, s2, d1, d2):
    """replay.scan_stats.scan_question_sums, one thread per configuration (prefix i, last
    choice k), grid-stride: per question the mean over replicates x of the end-to-end score (the
    store's rule), then the sums of x, x^2, x - ref and (x - ref)^2 over questions, in the CPU
    kernel's order."""
    rule = score_rule[0]
    last = n_stages - 1
    n_q = questions.shape[0]
    for cfg in range(cuda.grid(1), prefix.shape[0] * n_last, cuda.gridsize(1)):
        i = cfg // n_last
        k = cfg - i * n_last
        m = ch_model[last, k]
        cnt = ch_count[last, k]
        t1 = 0.0
        t2 = 0.0
        u1 = 0.0
        u2 = 0.0
        for qi in range(n_q):
            q = questions[qi]
            acc = 0.0
            for r in range(n_rep):
                ctx = np.int64(0)
                pre = 1.0 if rule != RULE_MEAN else 0.0
                for s in range(last):
                    j = prefix[i, s]
                    ms = ch_model[s, j]
                    p, fb = locate(qsm_pool_off, pool_ctx, pool_off, stage_indep, n_stages, n_models, q, s, ms, ctx)
                    row = pool_row[p]
                    n = min(ch_count[s, j], pool_off[p + 1] - pool_off[p])
                    o = row_base[row] + r * row_nmax[row] + n - 1
                    ctx = memo_ans[o]
                    if rule != RULE_LAST:
                        pre = rule_step(rule, pre, memo_score[o])
                p, fb = locate(qsm_pool_off, pool_ctx, pool_off, stage_indep, n_stages, n_models, q, last, m, ctx)
                row = pool_row[p]
                o = row_base[row] + r * row_nmax[row] - 1 + min(cnt, pool_off[p + 1] - pool_off[p])
                acc += rule_end(rule, pre, memo_score[o], n_stages)
            x = acc / n_rep
            d = x - ref_q[qi]
            t1 += x
            t2 += mul(x, x)
            u1 += d
            u2 += mul(d, d)
        s1[i, k] = t1
        s2[i, k] = t2
        d1[i, k] = u1
        d2[i, k] = u2
