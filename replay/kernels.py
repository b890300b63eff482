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

Aggregations (codes from replay.schema.AGG_CODES; the rules are defined once, for every Python
path, in replay/aggregation.py, and written out here inside the draw loops for speed):
  0 majority_vote  most frequent answer; a tie goes to the answer drawn first
  1 set_vote       list answers: keep items found in more than half of the S samples; if no
                   item has a majority, keep the items with the highest count. Scored by item
                   F1 against the stage's gold list
  2 best_score     the drawn output with the highest stored score (an oracle upper bound);
                   a tie goes to the one drawn first
  3 llm_fuse       one stored fusion of exactly S outputs, chosen uniformly from the pool's
                   stored fusions of that size; if none has that size, the largest smaller
                   size; if none is smaller, majority vote over S drawn outputs (a fallback)

Chaining. Stage k+1's pool is the one whose context key is stage k's aggregated answer (after
a set-vote stage: the first context of stage k+1, over all models, whose item set equals the
kept items). If that key was not collected (fallback): the largest pool of that (question,
stage, model), ties to the smallest context id. Per-stage fallback flags are reported. An
independent stage (A.stage_indep) has one pool per (question, model), used whatever the
upstream answer: never a fallback.

End-to-end score (A.score_rule[0], codes of replay.schema.SCORE_RULES): `last` the last stage's
score; `all` 1 if every stage scored 1, else 0; `product` the product of the stage scores;
`mean` their mean (summed in stage order, then divided). Per-stage scores are each stage's own.

How a draw runs fast. A pool's samples are also stored packed, one word each: (pool-local
answer id << bits) | position in the pool. When a pass draws at least half a pool, the kernel
copies the pool's packed words into scratch (one vectorised copy) and shuffles the copy, so a
drawn sample's answer is read off the word itself, with no lookup through an index and nothing
to undo afterwards; for short passes it shuffles an index permutation instead and undoes its
swaps. Both visit the same positions in the same order. Vote keys carry a generation stamp
(a key below the current generation counts as zero), so no pass clears them.

Inputs. Every kernel takes the store's arrays as one `KernelInputs` named tuple `A`
(replay/derived.py, built once per store), read by field name (`A.pool_off`); Numba compiles
the attribute reads to the same code as positional ones.

Two exact methods share `stage_snapshots` (one pass along a pool's shuffle, the aggregate at
every count): `replay_groups` replays configurations directly, sharing the pass among those
that differ only in the last stage's count; `memo_build` + `memo_lookup` compute every needed
pool's snapshots once per (question, replicate) and then score any number of configurations
by lookups, since with common random numbers a pool's result at count n does not depend on
the rest of the configuration.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .kernel_cache import install as _cache_install

_cache_install()  # before the decorators: the cache is keyed on every kernel module

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

RULE_LAST = 0
RULE_ALL = 1
RULE_PRODUCT = 2
RULE_MEAN = 3


@njit(inline="always", cache=True)
def rule_start(rule):
    """The end-to-end accumulator before any stage (score rules: module docstring)."""
    return 0.0 if rule == RULE_MEAN else 1.0


@njit(inline="always", cache=True)
def rule_step(rule, acc, score):
    """Fold an upstream stage's score into the accumulator."""
    if rule == RULE_ALL:
        return acc if score >= 1.0 else 0.0
    if rule == RULE_PRODUCT:
        return acc * score
    if rule == RULE_MEAN:
        return acc + score
    return acc


@njit(inline="always", cache=True)
def rule_end(rule, acc, score, n_stages):
    """The end-to-end score from the accumulator and the last stage's score."""
    if rule == RULE_LAST:
        return score
    if rule == RULE_ALL:
        return acc if score >= 1.0 else 0.0
    if rule == RULE_PRODUCT:
        return acc * score
    return (acc + score) / n_stages


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
def next_position(state, x, j, size):
    """The position swapped into place j at step j of a partial Fisher-Yates shuffle of `size`
    items (uniform in [j, size)): the high half of a fresh output at even steps, the low half of
    the same output at odd ones. Returns (state, x, position)."""
    if j & 1 == 0:
        state, x = next_u64(state)
        u = x >> U64(32)
    else:
        u = x & LOW32
    return state, x, j + np.int64((u * U64(size - j)) >> U64(32))


@njit(inline="always", cache=True)
def shuffle_step(perm, swaps, state, x, j, size):
    """Step j of a partial Fisher-Yates shuffle of perm[:size]: returns the drawn position."""
    state, x, k = next_position(state, x, j, size)
    t = perm[k]
    perm[k] = perm[j]
    perm[j] = t
    swaps[j] = k
    return state, x, t


@njit(inline="always", cache=True)
def unshuffle(perm, swaps, n):
    """After n shuffle steps: put perm back to the identity (every position touched is some
    j < n or some swaps[j])."""
    for j in range(n):
        perm[j] = j
        perm[swaps[j]] = swaps[j]


@njit(inline="always", cache=True)
def draw_packed(s_packed, base, size, n, state, perm, swaps, scratch):
    """The first n draws of the pool at base (size samples) as packed words in scratch[:n]:
    the same positions, in the same order, as n shuffle_step calls on an identity perm."""
    x = U64(0)
    if 2 * n >= size:
        # most of the pool is drawn: shuffle a copy of its packed words, nothing to undo (a
        # plain loop: a slice assignment goes through Numba's general array copy)
        for j in range(size):
            scratch[j] = s_packed[base + j]
        for j in range(n):
            state, x, k = next_position(state, x, j, size)
            t = scratch[k]
            scratch[k] = scratch[j]
            scratch[j] = t
    else:
        # a few draws from a large pool: shuffle the index permutation, undo its swaps
        for j in range(n):
            state, x, t = shuffle_step(perm, swaps, state, x, j, size)
            scratch[j] = s_packed[base + t]
        unshuffle(perm, swaps, n)


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
def match_items_ctx(qsm_pool_off, pool_ctx, ans_item_off, ans_items, n_stages, n_models, q, s, kept, n_kept):
    """For a set-vote upstream: the context id, among stage s's pools of question q (any model,
    in model then context order), whose item set equals `kept`; -1 if none (a fallback)."""
    k0 = (q * n_stages + s) * n_models
    for p in range(qsm_pool_off[k0], qsm_pool_off[k0 + n_models]):
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
            return np.int64(a)
    return np.int64(-1)


@njit(inline="always", cache=True)
def set_vote_kept(n, seen, n_seen, icount, kept):
    """Items kept after n draws into kept[:n_kept], sorted: count*2 > n, else the items with the
    highest count. Returns n_kept. Sorted by an insertion sort (a vote keeps few items) rather
    than ndarray.sort, so that it compiles where ndarray.sort does not: in the kernels without
    reference counting (groups_chunk, memo_rows, replay/graph/kernels.py chunk_loop) and for
    CUDA (replay/gpu)."""
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
    for i in range(1, n_kept):
        v = kept[i]
        j = i - 1
        while j >= 0 and kept[j] > v:
            kept[j + 1] = kept[j]
            j -= 1
        kept[j + 1] = v
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


@njit(cache=True)
def stage_snapshots(A, n_stages, n_models, width, q, s, p, r, seed, n_max, snap_from,
                    perm, swaps, scratch, key, rep, gen, icount, seen, kept,
                    snap_ans, snap_score, snap_tok, snap_flag):
    """Stage s of question q, replicate r, on pool p: the aggregated output after each of the
    first n_max draws, in one pass along the shuffle. Fills, for n = 1..n_max at index n-1:
    snap_ans (answer id; after a set-vote stage, the matching downstream context id or -1),
    snap_score, snap_tok (prompt once + drawn completions, or the fusion's tokens) and
    snap_flag (1 where an llm_fuse stage used a smaller fusion or majority vote). Only counts
    n > snap_from are written (the caller's: every count for a sweep, the last for one config).
    Scratch (per thread): perm (the identity), swaps, scratch (packed words), key (vote keys,
    below gen[0] meaning zero), rep, gen (int64[1]), icount (zero), seen, kept."""
    qsm_pool_off, pool_ctx, pool_off = A.qsm_pool_off, A.pool_ctx, A.pool_off
    s_answer, s_score, s_completion, s_packed = A.s_answer, A.s_score, A.s_completion, A.s_packed
    ans_item_off, ans_items, gold = A.ans_item_off, A.ans_items, A.gold
    pool_fus_off, fus_size, fus_answer, fus_score = A.pool_fus_off, A.fus_size, A.fus_answer, A.fus_score
    fus_tokens, fus_subset_completion = A.fus_tokens, A.fus_subset_completion
    bits = A.pack_bits[0]
    mask = (np.int64(1) << bits) - 1
    base = pool_off[p]
    size = pool_off[p + 1] - base
    agg = A.stage_agg[s]
    prompt = A.pool_prompt[p]
    qh = A.question_hash[q]
    # the draws first, then the aggregation: two simple loops pipeline better than one
    draw_packed(s_packed, base, size, n_max, stream_start(seed, qh, r, s), perm, swaps, scratch)
    g = gen[0] + width * width  # a fresh generation of vote keys: every older key counts as zero
    gen[0] = g
    comp = 0.0
    best = g - 1
    lead = np.int64(0)
    best_i = np.int64(0)
    best_score = -np.inf
    n_seen = 0
    # one count only (a single configuration, not a sweep): the vote without a snapshot per draw
    lean = (agg == AGG_MAJORITY or agg == AGG_FUSE) and snap_from == n_max - 1
    if lean:
        for j in range(n_max):
            v = np.int64(scratch[j])
            i = base + (v & mask)
            comp += s_completion[i]
            a = v >> bits
            kk = key[a]  # the vote, as below
            if kk < g:
                kk = g + width - j
                rep[a] = i
            else:
                kk += width
            key[a] = kk
            if kk > best:
                best = kk
                lead = a
        j = n_max - 1
        snap_ans[j] = s_answer[rep[lead]]
        snap_score[j] = s_score[rep[lead]]
        snap_tok[j] = prompt + comp
        snap_flag[j] = 0
    for j in range(0 if not lean else n_max, n_max):
        v = np.int64(scratch[j])
        i = base + (v & mask)
        comp += s_completion[i]
        snap = j >= snap_from
        if agg == AGG_MAJORITY or agg == AGG_FUSE:
            # The vote. key = gen + count * width - (step of the first draw), width > pool
            # size, so the largest key is the most frequent answer and, among equal counts, the
            # one drawn first: one comparison per draw tracks the leader. Written out here: with
            # Numba's inline="always" helper instead, this loop runs 1.7x slower.
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
            if snap:
                snap_ans[j] = s_answer[rep[lead]]
                snap_score[j] = s_score[rep[lead]]
        elif agg == AGG_BEST:
            if s_score[i] > best_score:
                best_score = s_score[i]
                best_i = i
            if snap:
                snap_ans[j] = s_answer[best_i]
                snap_score[j] = best_score
        else:  # set vote: count the items of this sample's answer
            a = s_answer[i]
            for e in range(ans_item_off[a], ans_item_off[a + 1]):
                it = ans_items[e]
                if icount[it] == 0:
                    seen[n_seen] = it
                    n_seen += 1
                icount[it] += 1
            if snap:
                n_kept = set_vote_kept(j + 1, seen, n_seen, icount, kept)
                snap_score[j] = item_f1(kept, n_kept, ans_item_off, ans_items, gold[q, s])
                if s + 1 < n_stages and not A.stage_indep[s + 1]:
                    snap_ans[j] = match_items_ctx(qsm_pool_off, pool_ctx, ans_item_off, ans_items, n_stages,
                                                  n_models, q, s + 1, kept, n_kept)
                else:
                    snap_ans[j] = -1
        if snap:
            snap_tok[j] = prompt + comp
            snap_flag[j] = 0
    for j in range(n_seen):
        icount[seen[j]] = 0
    if agg == AGG_FUSE:
        # a stored fusion of n outputs (or the largest smaller size: a fallback); where none is
        # that small, the majority vote over the n drawn outputs computed above (a fallback)
        f0 = pool_fus_off[p]
        f1 = pool_fus_off[p + 1]
        for n in range(snap_from + 1, n_max + 1):
            use = 0
            for f in range(f0, f1):
                if fus_size[f] <= n and fus_size[f] > use:
                    use = fus_size[f]
            if use == 0:
                snap_flag[n - 1] = 1
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
            snap_flag[n - 1] = 1 if use != n else 0
            snap_ans[n - 1] = fus_answer[chosen]
            snap_score[n - 1] = fus_score[chosen]
            snap_tok[n - 1] = prompt + fus_subset_completion[chosen] + fus_tokens[chosen]


@njit(inline="always", cache=True)
def locate(A, n_stages, n_models, q, s, m, ctx):
    """Pool of stage s for (q, m) given the upstream answer/context id: (pool, fell_back). The
    first stage and independent stages have one pool per (q, m), whatever the upstream answer."""
    if s == 0 or A.stage_indep[s]:
        return A.qsm_pool_off[(q * n_stages + s) * n_models + m], False
    return find_pool(A.qsm_pool_off, A.pool_ctx, A.pool_off, n_stages, n_models, q, s, m, ctx)


@njit(cache=True, _nrt=False)
def groups_chunk(A, n_stages, n_models, questions, n_rep, seed, grp_models, grp_counts, grp_cfg_off, cfg_last_count,
                 out_score, out_tokens, out_flops, st_score, st_tokens, st_fallback, chunk, n_chunks, width,
                 perm, swaps, scratch, key, rep, gen, icount, seen, kept, snap_ans, snap_score, snap_tok, snap_flag):
    """replay_groups' tasks of one chunk, on the scratch arrays it made. Compiled without
    Numba's reference counting (`_nrt=False`): with it, the arrays passed to stage_snapshots
    and the helpers inlined in it counted references in and out, atomic increments and
    decrements per stage and replicate (replay/graph/kernels.py chunk_loop, the same fix).
    Without it this function cannot make arrays, so it makes none."""
    model_params = A.model_params
    rule = A.score_rule[0]
    pool_off = A.pool_off
    n_q = questions.shape[0]
    last = n_stages - 1
    n_tasks = grp_models.shape[0] * n_q
    for task in range(chunk * n_tasks // n_chunks, (chunk + 1) * n_tasks // n_chunks):
        g = task // n_q
        qi = task % n_q
        q = questions[qi]
        c0 = grp_cfg_off[g]
        c1 = grp_cfg_off[g + 1]
        for r in range(n_rep):
            ctx = np.int64(0)
            tok_acc = 0.0
            flop_acc = 0.0
            pre = rule_start(rule)
            for s in range(n_stages):
                m = grp_models[g, s]
                p, fb = locate(A, n_stages, n_models, q, s, m, ctx)
                size = pool_off[p + 1] - pool_off[p]
                n_max = grp_counts[g, s] if s < last else cfg_last_count[c1 - 1]
                n_max = min(n_max, size)
                # snapshots: every count for a group sharing the pass, else only the last
                snap_from = 0 if (s == last and c1 - c0 > 1) else n_max - 1
                stage_snapshots(A, n_stages, n_models, width, q, s, p, r, seed, n_max, snap_from,
                                perm, swaps, scratch, key, rep, gen, icount, seen, kept,
                                snap_ans, snap_score, snap_tok, snap_flag)
                params2 = 2.0 * model_params[m]
                if s < last:
                    j = n_max - 1
                    ctx = snap_ans[j]
                    tk = snap_tok[j]
                    tok_acc += tk
                    flop_acc += params2 * tk
                    pre = rule_step(rule, pre, snap_score[j])
                    for c in range(c0, c1):
                        st_score[c, s, qi] += snap_score[j]
                        st_tokens[c, s, qi] += tk
                        st_fallback[c, s, qi] += 1 if (fb or snap_flag[j] != 0) else 0
                else:
                    for c in range(c0, c1):
                        j = min(cfg_last_count[c], size) - 1
                        tk = snap_tok[j]
                        out_score[c, qi, r] = rule_end(rule, pre, snap_score[j], n_stages)
                        out_tokens[c, qi, r] = tok_acc + tk
                        out_flops[c, qi, r] = flop_acc + params2 * tk
                        st_score[c, s, qi] += snap_score[j]
                        st_tokens[c, s, qi] += tk
                        st_fallback[c, s, qi] += 1 if (fb or snap_flag[j] != 0) else 0
    return 0


@njit(cache=True, parallel=True)
def replay_groups(A, n_stages, n_models, max_pool, n_items,
                  questions, n_rep, seed, n_chunks_hint,
                  grp_models, grp_counts, grp_cfg_off, cfg_last_count,
                  out_score, out_tokens, out_flops, st_score, st_tokens, st_fallback):
    """Direct replay: groups of configurations that differ only in the last stage's count.

    Group g fixes every stage's model and every count but the last; its configurations are
    cfg_last_count[grp_cfg_off[g]:grp_cfg_off[g+1]] (ascending). One pass along the last
    stage's shuffle scores all of them. Work is split over (group, question) in parallel;
    groups_chunk does a chunk's.

    Outputs (c = configuration, qi = position in `questions`, r = replicate):
      out_score/out_tokens/out_flops[c, qi, r] (the score by the store's rule);
      st_score/st_tokens/st_fallback[c, s, qi] (per-stage sums over replicates).
    """
    n_tasks = grp_models.shape[0] * questions.shape[0]
    n_chunks = min(n_tasks, n_chunks_hint)
    width = max_pool + 1
    for chunk in prange(n_chunks):
        # scratch space, allocated once per chunk of tasks
        perm = np.arange(max_pool)
        swaps = np.empty(max_pool, np.int64)
        scratch = np.empty(max_pool, A.s_packed.dtype)
        key = np.zeros(max_pool, np.int64)
        rep = np.zeros(max_pool, np.int64)
        gen = np.zeros(1, np.int64)
        icount = np.zeros(max(n_items, 1), np.int64)
        seen = np.empty(max(n_items, 1), np.int64)
        kept = np.empty(max(n_items, 1), np.int64)
        snap_ans = np.empty(max_pool, np.int64)
        snap_score = np.empty(max_pool, np.float64)
        snap_tok = np.empty(max_pool, np.float64)
        snap_flag = np.empty(max_pool, np.uint8)
        groups_chunk(A, n_stages, n_models, questions, n_rep, seed, grp_models, grp_counts, grp_cfg_off, cfg_last_count,
                     out_score, out_tokens, out_flops, st_score, st_tokens, st_fallback, chunk, n_chunks, width,
                     perm, swaps, scratch, key, rep, gen, icount, seen, kept, snap_ans, snap_score, snap_tok, snap_flag)
    return 0


@njit(cache=True, _nrt=False)
def memo_rows(A, n_stages, n_models, width, n_rep, seed, row_pool, row_q, row_stage, row_nmax, row_base,
              memo_ans, memo_score, memo_tok, memo_flag, row0, row1,
              perm, swaps, scratch, key, rep, gen, icount, seen, kept):
    """memo_build's rows row0..row1 on the scratch arrays it made, without reference counting
    (the slices handed to stage_snapshots counted references per row and replicate; see
    groups_chunk)."""
    for row in range(row0, row1):
        nmax = row_nmax[row]
        for r in range(n_rep):
            o = row_base[row] + r * nmax
            stage_snapshots(A, n_stages, n_models, width, row_q[row], row_stage[row], row_pool[row], r, seed, nmax, 0,
                            perm, swaps, scratch, key, rep, gen, icount, seen, kept,
                            memo_ans[o:o + nmax], memo_score[o:o + nmax], memo_tok[o:o + nmax], memo_flag[o:o + nmax])
    return 0


@njit(cache=True, parallel=True)
def memo_build(A, n_stages, n_models, max_pool, n_items, n_rep, seed,
               row_pool, row_q, row_stage, row_nmax, row_base,
               memo_ans, memo_score, memo_tok, memo_flag):
    """Memoised replay, step 1: for every needed pool ("row") and replicate, the aggregated
    output at every count 1..row_nmax, stored at row_base[row] + r * row_nmax[row] + (n - 1).
    With common random numbers a pool's result at count n does not depend on the rest of the
    configuration, so configurations that share pools share this work. Rows are independent:
    they run in chunks (scratch arrays made once per chunk, not per row), memo_rows each."""
    width = max_pool + 1
    n_rows = row_pool.shape[0]
    n_chunks = min(n_rows, 64)
    for chunk in prange(n_chunks):
        perm = np.arange(max_pool)
        swaps = np.empty(max_pool, np.int64)
        scratch = np.empty(max_pool, A.s_packed.dtype)
        key = np.zeros(max_pool, np.int64)
        rep = np.zeros(max_pool, np.int64)
        gen = np.zeros(1, np.int64)
        icount = np.zeros(max(n_items, 1), np.int64)
        seen = np.empty(max(n_items, 1), np.int64)
        kept = np.empty(max(n_items, 1), np.int64)
        memo_rows(A, n_stages, n_models, width, n_rep, seed, row_pool, row_q, row_stage, row_nmax, row_base,
                  memo_ans, memo_score, memo_tok, memo_flag, chunk * n_rows // n_chunks,
                  (chunk + 1) * n_rows // n_chunks, perm, swaps, scratch, key, rep, gen, icount, seen, kept)
    return 0


@njit(cache=True, parallel=True)
def memo_lookup(A, n_stages, n_models, questions, q_offset, n_rep, cfg_models, cfg_counts,
                pool_row, row_nmax, row_base, memo_ans, memo_score, memo_tok, memo_flag, q_block_off,
                score_q, score_r, tok_sum, flop_sum, st_score, st_tokens, st_fallback):
    """Memoised replay, step 2: every configuration by table lookups, parallel over
    configurations, a block of questions at a time (q_block_off: positions in `questions` where
    blocks start, then n_q). Accumulates sums: score_q[c, q_offset + qi] (over replicates),
    score_r[c, r] (over questions), tok_sum/flop_sum[c] and st_*[c, s] (over questions and
    replicates).

    Why blocks: a question's memo rows are one run of memory, and a configuration reads a few
    entries of each. Configuration by configuration over all questions, every read missed the
    caches (the chunk's memo is up to ~100 MB; measured with perf: three loads took half of the
    time); block by block, every configuration reads the block's rows while they are cached.
    Each configuration still adds its questions in order, so the sums are the same numbers."""
    model_params = A.model_params
    pool_off = A.pool_off
    rule = A.score_rule[0]
    last = n_stages - 1
    for blk in range(q_block_off.shape[0] - 1):
        for c in prange(cfg_models.shape[0]):
            for qi in range(q_block_off[blk], q_block_off[blk + 1]):
                q = questions[qi]
                acc_q = 0.0
                for r in range(n_rep):
                    ctx = np.int64(0)
                    tok = 0.0
                    flop = 0.0
                    sc = 0.0
                    pre = rule_start(rule)
                    for s in range(n_stages):
                        m = cfg_models[c, s]
                        p, fb = locate(A, n_stages, n_models, q, s, m, ctx)
                        row = pool_row[p]
                        n = min(cfg_counts[c, s], pool_off[p + 1] - pool_off[p])
                        o = row_base[row] + r * row_nmax[row] + n - 1
                        ctx = memo_ans[o]
                        sc = memo_score[o]
                        tk = memo_tok[o]
                        tok += tk
                        flop += 2.0 * model_params[m] * tk
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
    return 0


@njit(cache=True)
def majority_draw_loop(qhash, pool_off, s_packed, pack_bits, s_score, questions, pools, n_rep, seed, counts_list,
                       out):
    """The plain loop of the speed benchmark: majority vote for every (pool, count, question,
    replicate) alone, single-threaded, no sharing across counts or pools. Same draws and vote
    as stage_snapshots (draw_packed, generation-stamped keys); only the final leader is needed,
    so the vote takes two draws at a time, and the leader's first-drawn sample is read back from
    its key at the end. out[k, c] = mean score over questions and replicates."""
    max_pool = 0
    for p in range(pool_off.shape[0] - 1):
        if pool_off[p + 1] - pool_off[p] > max_pool:
            max_pool = pool_off[p + 1] - pool_off[p]
    width = max_pool + 1
    bits = pack_bits[0]
    mask = (np.int64(1) << bits) - 1
    perm = np.arange(max_pool)
    swaps = np.empty(max_pool, np.int64)
    scratch = np.empty(max_pool, s_packed.dtype)
    key = np.zeros(max_pool, np.int64)
    g = np.int64(0)
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
                    draw_packed(s_packed, base, size, nn, stream_start(seed, qhash[questions[qi]], r, 0), perm,
                                swaps, scratch)
                    g += width * width
                    best = g - 1
                    # the vote two draws at a time: when both drew the same answer (the common
                    # case where models agree) one key update instead of two dependent ones
                    j = 0
                    while j + 1 < nn:
                        a0 = np.int64(scratch[j]) >> bits
                        a1 = np.int64(scratch[j + 1]) >> bits
                        if a0 == a1:
                            kk = key[a0]
                            kk = g + 2 * width - j if kk < g else kk + 2 * width
                            key[a0] = kk
                            best = max(best, kk)
                        else:
                            k0 = key[a0]
                            k0 = g + width - j if k0 < g else k0 + width
                            key[a0] = k0
                            k1 = key[a1]
                            k1 = g + width - j - 1 if k1 < g else k1 + width
                            key[a1] = k1
                            best = max(best, max(k0, k1))
                        j += 2
                    if j < nn:
                        a = np.int64(scratch[j]) >> bits
                        kk = key[a]
                        kk = g + width - j if kk < g else kk + width
                        key[a] = kk
                        best = max(best, kk)
                    j0 = (width - (best - g) % width) % width  # the leader's first draw
                    acc += s_score[base + (np.int64(scratch[j0]) & mask)]
            out[kk_, ci] = acc / (n_q * n_rep)
    return out


@njit(cache=True, parallel=True)
def scan_product(A, n_stages, n_models, questions, n_rep, ch_model, ch_count, n_ch, prefix_idx,
                 pool_row, row_nmax, row_base, memo_ans, memo_score, memo_tok,
                 out_score, out_rep_sq, out_q_sq, out_q_ends, out_flops):
    """Exhaustive scan of a product space, from memo tables (see memo_build).

    Stage s offers the choices (ch_model[s, k], ch_count[s, k]) for k < n_ch[s]. Row i of
    prefix_idx fixes a choice for every stage but the last; the scan scores it with every
    last-stage choice, parallel over prefixes. Per configuration (prefix i, last choice k):
    out_score[i, k] = sum of scores over questions and replicates, out_rep_sq[i, k] = sum over
    replicates of the squared per-replicate sum over questions (for the standard error),
    out_q_sq[i, k] = sum over questions of the squared per-question sum over replicates and
    out_q_ends[i, k] = questions whose every replicate scored 0, or every one 1 (for the
    question interval), out_flops[i, k] = sum of FLOPs. Scores follow the store's rule."""
    model_params = A.model_params
    pool_off = A.pool_off
    rule = A.score_rule[0]
    last = n_stages - 1
    n_q = questions.shape[0]
    K = n_ch[last]
    for i in prange(prefix_idx.shape[0]):
        rep_sum = np.zeros((n_rep, K))
        q_sum = np.zeros(K)
        q_sq = np.zeros(K)
        q_ends = np.zeros(K)
        flops = np.zeros(K)
        for qi in range(n_q):
            q = questions[qi]
            q_sum[:] = 0.0
            for r in range(n_rep):
                ctx = np.int64(0)
                pre = 0.0
                acc = rule_start(rule)
                for s in range(last):
                    k = prefix_idx[i, s]
                    m = ch_model[s, k]
                    p, fb = locate(A, n_stages, n_models, q, s, m, ctx)
                    row = pool_row[p]
                    n = min(ch_count[s, k], pool_off[p + 1] - pool_off[p])
                    o = row_base[row] + r * row_nmax[row] + n - 1
                    ctx = memo_ans[o]
                    pre += 2.0 * model_params[m] * memo_tok[o]
                    if rule != RULE_LAST:
                        acc = rule_step(rule, acc, memo_score[o])
                m_prev = np.int64(-1)
                o0 = np.int64(0)
                size = np.int64(0)
                for k in range(K):  # last-stage choices, grouped by model
                    m = ch_model[last, k]
                    if m != m_prev:
                        p, fb = locate(A, n_stages, n_models, q, last, m, ctx)
                        row = pool_row[p]
                        o0 = row_base[row] + r * row_nmax[row] - 1
                        size = pool_off[p + 1] - pool_off[p]
                        m_prev = m
                    o = o0 + min(ch_count[last, k], size)
                    sc = rule_end(rule, acc, memo_score[o], n_stages)
                    rep_sum[r, k] += sc
                    q_sum[k] += sc
                    flops[k] += pre + 2.0 * model_params[m] * memo_tok[o]
            for k in range(K):
                q_sq[k] += q_sum[k] * q_sum[k]
                if q_sum[k] <= 0.0 or q_sum[k] >= n_rep:
                    q_ends[k] += 1.0
        for k in range(K):
            tot = 0.0
            sq = 0.0
            for r in range(n_rep):
                tot += rep_sum[r, k]
                sq += rep_sum[r, k] * rep_sum[r, k]
            out_score[i, k] = tot
            out_rep_sq[i, k] = sq
            out_q_sq[i, k] = q_sq[k]
            out_q_ends[i, k] = q_ends[k]
            out_flops[i, k] = flops[k]
    return 0
