"""The host side of graph replay on the GPU: transfers, launches and chunking for
replay/gpu/graph_kernels.py.

`graph_replay(store, ...)` takes the arguments of replay/graph/kernels.py `graph_replay` (the
store first) and adds into the same host arrays the same numbers, so replay/graph/engine.py
calls one or the other for each slice of its batch. The memo-plan arguments are accepted and
not used: every node draws directly on the GPU (graph_kernels.py says why that gives the memo's
numbers).

Memory. The store's arrays (replay/gpu/host.py `device_inputs`) and the graph arrays go to the
GPU once per store. Per question the kernels keep every distinct node's figures on every
replicate (41 bytes a cell) and every graph's (32 bytes a cell); questions are taken a chunk at a
time so that these stay within `graph_bytes()` (a third of the GPU's free memory), the sums
over a CPU chunk of questions (score_r, node_sums) carried on the GPU from one memory chunk to
the next, in question order.
"""

from __future__ import annotations

import numpy as np

from . import host

GRAPH_BYTES: int | None = None  # set: device bytes for one chunk of questions' node figures (tests)
NODE_CELL_BYTES = 41  # answer int64 + score, finish, tokens, latency float64 + fallback uint8
GRAPH_CELL_BYTES = 32  # score, tokens, FLOPs, latency float64

# field order of graph_nodes' store arguments (replay.derived.KernelInputs, then GraphInputs names)
_A_FIELDS = ("question_hash", "stage_agg", "qsm_pool_off", "pool_off", "pool_prompt", "s_answer", "s_score",
             "s_completion", "s_packed", "ans_item_off", "ans_items", "pool_fus_off", "fus_size", "fus_answer",
             "fus_score", "fus_tokens", "fus_subset_completion")
_G_FIELDS = ("pool_key_off", "pool_key", "ans_class", "set_hash", "set_class", "role_gold", "fus_prompt",
             "fus_completion", "fus_subset_max", "by_hash", "hash_sorted", "qsm_largest")


def _kernels():
    from . import graph_kernels

    return graph_kernels


def graph_bytes() -> int:
    """Device bytes one chunk of questions may use for its figures: a third of the GPU's free
    memory (host.memo_entries' rule), or GRAPH_BYTES when set."""
    if GRAPH_BYTES is not None:
        return GRAPH_BYTES
    return host.memo_entries() * host.MEMO_ENTRY_BYTES


def device_graph_inputs(store, G) -> dict:
    """The graph arrays (replay.graph.inputs.GraphInputs) on the GPU, copied once per store."""
    def build():
        cuda = host._cuda()
        return {f: cuda.to_device(np.ascontiguousarray(getattr(G, f))) for f in G._fields}

    return store.derived.memo("gpu.graph_inputs", build)


def question_step(X: int, B: int, R: int, Q: int) -> int:
    """Questions per memory chunk: the node and graph figures of a question x R replicates
    within graph_bytes(), at least one."""
    per_q = R * (X * NODE_CELL_BYTES + B * GRAPH_CELL_BYTES) + 4 * B * 8
    return int(max(1, min(Q, graph_bytes() // max(per_q, 1))))


def graph_replay(store, A, G, n_stages, n_models, max_pool, n_items, pre, dec, questions, n_rep, seed, n_chunks,
                 g_node_off, node_uid, g_out_off, out_x,
                 d_index, d_role, d_model, d_count, d_par_off, d_par, d_slot, slot_nmax, slot_row_off, slot_ent_off,
                 score_q, tokens_q, flops_q, latency_q, score_r, node_sums,
                 det_score, det_tokens, det_flops, det_latency):
    """replay/graph/kernels.py `graph_replay` on the GPU: the same arguments (the store first:
    its device copies are kept in store.derived), the same sums added into the same host arrays
    (score_q.. [question, graph], score_r [chunk, graph, replicate], node_sums [chunk, node, 4],
    det_* [graph, question, replicate] when not empty). d_slot and the memo sizes are not used."""
    cuda = host._cuda()
    GK = _kernels()
    D = host.device_inputs(store)
    DG = device_graph_inputs(store, G)
    B = len(g_node_off) - 1
    X = len(d_role)
    Q = len(questions)
    R = int(n_rep)
    detail = det_score.shape[0] > 0
    if B == 0 or Q == 0:
        return 0
    width = max_pool + 1
    bits = int(A.pack_bits[0])
    max_par = max(1, int(np.diff(d_par_off).max(initial=0)))
    items = max(int(n_items), 1)
    d_nodes = [cuda.to_device(np.ascontiguousarray(v, dtype=np.int64))
               for v in (d_index, d_role, d_model, d_count, d_par_off, d_par)]
    d_graph = [cuda.to_device(np.ascontiguousarray(v, dtype=np.int64)) for v in (g_node_off, node_uid, g_out_off, out_x)]
    d_params2 = cuda.to_device(2.0 * np.asarray(A.model_params, dtype=np.float64)[np.asarray(d_model, dtype=np.int64)])
    d_pre, d_dec = cuda.to_device(np.ascontiguousarray(pre, np.float64)), cuda.to_device(np.ascontiguousarray(dec, np.float64))
    # places: the distinct nodes are ordered by place, parents at smaller places
    cuts = np.flatnonzero(np.diff(np.asarray(d_index))) + 1
    places = list(zip(np.concatenate([[0], cuts]).tolist(), np.concatenate([cuts, [X]]).tolist()))
    step = question_step(X, B, R, Q)
    widest = max(x1 - x0 for x0, x1 in places)
    blocks, threads = host._dims(widest * step * R)
    n_thr = blocks * threads
    mp = max(int(max_pool), 1)
    scr = dict(scratch=cuda.device_array((mp, n_thr), A.s_packed.dtype), perm=cuda.device_array((mp, n_thr), np.int64),
               swaps=cuda.device_array((mp, n_thr), np.int64), keyv=cuda.to_device(np.zeros((mp, n_thr), np.int64)),
               rep=cuda.device_array((mp, n_thr), np.int64), gen=cuda.to_device(np.zeros((1, n_thr), np.int64)),
               icount=cuda.to_device(np.zeros((items, n_thr), np.int64)),
               seen=cuda.device_array((items, n_thr), np.int64), kept=cuda.device_array((items, n_thr), np.int64),
               keybuf=cuda.device_array((max_par, n_thr), np.int64))
    b_, t_ = host._dims(mp * n_thr)
    GK.identity_columns[b_, t_](scr["perm"])
    # the sums over each CPU chunk of questions, continued across memory chunks in question order
    d_score_r = cuda.to_device(np.ascontiguousarray(score_r))
    d_node = cuda.to_device(np.ascontiguousarray(node_sums))
    questions = np.ascontiguousarray(questions, dtype=np.int64)
    for q0 in range(0, Q, step):
        q1 = min(Q, q0 + step)
        nq = q1 - q0
        d_q = cuda.to_device(questions[q0:q1])
        xs = [cuda.device_array((X, nq, R), dt) for dt in (np.int64, np.float64, np.float64, np.float64, np.float64,
                                                           np.uint8)]
        for x0, x1 in places:
            blocks, threads = host._dims((x1 - x0) * nq * R)
            GK.graph_nodes[blocks, threads](
                *(D[f] for f in _A_FIELDS), *(DG[f] for f in _G_FIELDS), bits, n_stages, n_models, width, d_pre, d_dec,
                d_q, R, np.uint64(seed), x0, x1, *d_nodes, *scr.values(), *xs)
        det = [cuda.device_array((B, nq, R), np.float64) for _ in range(4)]
        per_q = [cuda.device_array((B, nq), np.float64) for _ in range(4)]
        blocks, threads = host._dims(B * nq)
        GK.graph_outputs[blocks, threads](R, *d_graph, d_params2, xs[0], xs[1], xs[2], xs[3], *det, *per_q)
        blocks, threads = host._dims(n_chunks * B * R)
        GK.graph_chunk_sums[blocks, threads](q0, Q, n_chunks, det[0], d_score_r)
        blocks, threads = host._dims(n_chunks * X)
        GK.node_chunk_sums[blocks, threads](q0, Q, n_chunks, xs[1], xs[3], xs[4], xs[5], d_node)
        for host_arr, dev in zip((score_q, tokens_q, flops_q, latency_q), per_q):
            host_arr[q0:q1] += dev.copy_to_host().T
        if detail:
            for host_arr, dev in zip((det_score, det_tokens, det_flops, det_latency), det):
                host_arr[:, q0:q1] = dev.copy_to_host()
        del xs, det, per_q
    score_r[...] = d_score_r.copy_to_host()
    node_sums[...] = d_node.copy_to_host()
    return 0
