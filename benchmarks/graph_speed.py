"""Graph replay speed: a 6-node graph on a 500-question simulated graph store, 16 replicates.

    NUMBA_NUM_THREADS=2 python benchmarks/graph_speed.py            # the issue's setting: 2 threads
    python benchmarks/graph_speed.py --questions 200 --repeats 3     # quicker

What it measures, each `--repeats` times (the median is printed, and the best):
  single   one graph per call (`evaluate_graph` in a loop): what a searcher asking one graph at a
           time gets, Python included; a call this size runs on every thread
           (small calls on one: replay/graph/engine.py SERIAL_WORK)
  batch    256 distinct random 6-node graphs in one `evaluate_graphs` call (a searcher's batch:
           a node that several graphs have runs once per question, key lookups are shared
           through a per-question table, and draws through a memo filled on first use)
  same     the 6-node graph 256 times in one call (everything shared: an upper bound)
  chain    the reference measured in the same run: a 6-stage chain configuration of the same
           counts on a 6-stage simulated chain store of the same size, by the chain engine
           (`replay.evaluate`), and the same configuration as a graph by the graph engine
  growth   microseconds per evaluation against the number of nodes: width (n solve nodes and
           a vote) and depth (a solve node and a chain of n - 1 refiners)

Rates are evaluations per second of wall time, and per CPU second x threads (`cpu`): on a
machine shared with other jobs the wall clock counts their time too, so the CPU figure is the
estimate of what the threads would do alone. The stores are simulated (SYNTHETIC) and made in
a temporary folder on first use (`--cache DIR` keeps them).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GRAPH = ("s1=solve(Qwen2.5-7B,4); s2=solve(Llama-3.1-8B,4); s3=solve(Qwen2.5-3B,2); r1=refine(Qwen2.5-7B,1|s1); "
         "r2=refine(Llama-3.1-8B,1|s2,s3); a=aggregate(Qwen2.5-7B,1|r1,r2)")
COUNTS = (4, 4, 2, 1, 1, 1)  # the same node counts as a 6-stage chain


def stores(cache: Path, questions: int):
    import replay
    from collect.simulate import simulate, spec_from_dict
    from collect.simulate.graph import graph_spec_from_dict, simulate_graph
    from collect.simulate.presets import merge, preset_dict

    g = cache / f"sim-math-{questions}"
    if not (g / "manifest.json").exists():
        simulate_graph(graph_spec_from_dict(merge(preset_dict("math"), {"name": "sim-math-bench", "questions": questions})),
                       g, seed=0)
    c = cache / f"sim-chain6-{questions}"
    if not (c / "manifest.json").exists():
        raw = merge(preset_dict("scale"), {"name": "sim-chain6", "questions": questions, "samples": 32,
                                           "stages": [{"name": f"s{i}", "prompt_tokens": 400, "completion_tokens": 300,
                                                       **({"chain_penalty": 1.0} if i else {})} for i in range(6)]})
        simulate(spec_from_dict(raw), c, seed=0)
    return replay.open(g), replay.open(c)


def random_graphs(store, n: int, rng) -> list:
    """n random 6-node graphs: three solvers (1-8 samples), two refiners and an aggregator
    (1-2 samples) each reading one or two earlier nodes, random models, every sink an output (a
    vote when several). benchmarks/gpu_speed.py replays the same batch."""
    from replay.graph import Graph, Node

    models = list(store.manifest.model_names)
    out = []
    for _ in range(n):
        nodes = []
        for i in range(6):
            m = str(rng.choice(models))
            if i < 3:
                nodes.append(Node(f"n{i}", "solve", m, int(rng.integers(1, 9))))
            else:
                role = "refine" if i < 5 else "aggregate"
                k = int(rng.integers(1, 3))
                ins = tuple(sorted(rng.choice([x.name for x in nodes], size=k, replace=False).tolist()))
                nodes.append(Node(f"n{i}", role, m, int(rng.integers(1, 3)), ins))
        read = {p for x in nodes for p in x.inputs}
        out.append(Graph.of(nodes, output=[x.name for x in nodes if x.name not in read]))
    return out


def timed(fn, repeats: int, evals: int, threads: int):
    """(median wall rate, best wall rate, median cpu rate) in evaluations per second."""
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(evals / (time.perf_counter() - t))
        cpu.append(evals / max((time.process_time() - c) / threads, 1e-9))
    return statistics.median(wall), max(wall), statistics.median(cpu)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--questions", type=int, default=500)
    ap.add_argument("--replicates", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cache", type=Path, default=None, help="keep the simulated stores here")
    args = ap.parse_args(argv)
    import numba

    from replay.engine import Config, evaluate_batch
    from replay.graph import Graph
    from replay.graph.engine import evaluate_graph, evaluate_graphs

    threads = numba.get_num_threads()
    cache = args.cache or Path(tempfile.mkdtemp(prefix="graph-bench-"))
    cache.mkdir(parents=True, exist_ok=True)
    gst, cst = stores(cache, args.questions)
    R, Q = args.replicates, args.questions
    g6 = Graph.parse(GRAPH, store=gst)
    rng = np.random.default_rng(0)
    batch = random_graphs(gst, 256, rng)
    chain = Config.of(*[(m, n) for m, n in zip(["Llama-3.1-8B", "Qwen2.5-7B", "Llama-3.2-3B", "Llama-3.1-8B",
                                                   "Qwen2.5-7B", "Llama-3.3-70B"], COUNTS)])
    chain_graph = Graph.from_chain(chain, cst)
    # warm up: compile (or load the cache of) every kernel
    evaluate_graph(gst, g6, replicates=R)
    evaluate_graphs(gst, batch[:8], replicates=R)
    evaluate_batch(cst, [chain], replicates=R)
    evaluate_graph(cst, chain_graph, replicates=R)
    n_single = 30
    rows = {
        "single (one graph per call)": timed(lambda: [evaluate_graph(gst, g6, replicates=R) for _ in range(n_single)],
                                             args.repeats, n_single, threads),
        "batch of 256 random 6-node graphs": timed(lambda: evaluate_graphs(gst, batch, replicates=R), args.repeats,
                                                   len(batch), threads),
        "same graph x256 in one call": timed(lambda: evaluate_graphs(gst, [g6] * 256, replicates=R), args.repeats, 256,
                                             threads),
        "chain engine, 6-stage config, one per call": timed(
            lambda: [evaluate_batch(cst, [chain], replicates=R) for _ in range(n_single)], args.repeats, n_single,
            threads),
        "graph engine, same 6-stage chain as a graph": timed(
            lambda: [evaluate_graph(cst, chain_graph, replicates=R) for _ in range(n_single)], args.repeats, n_single,
            threads),
        "chain engine, 256 random 6-stage configs": None,
    }
    cfgs = []
    for _ in range(256):
        cfgs.append(Config.of(*[(str(rng.choice(cst.candidate_models(s))), int(rng.integers(1, 9))) for s in range(6)]))
    rows["chain engine, 256 random 6-stage configs"] = timed(lambda: evaluate_batch(cst, cfgs, replicates=R),
                                                             args.repeats, 256, threads)
    import os

    print(f"graph replay: {Q} questions x {R} replicates, {threads} thread(s); store {gst.name} (SYNTHETIC); "
          f"median of {args.repeats} runs; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs "
          "(above the CPU count, other jobs share the cores: read the 'per cpu' column)")
    print(f"{'':46s} {'evals/s':>9} {'best':>9} {'per cpu':>9} {'us/eval':>9}")
    for name, (w, best, c) in rows.items():
        print(f"{name:46s} {w:>9,.0f} {best:>9,.0f} {c:>9,.0f} {1e6 / w:>9,.0f}")
    single = rows["single (one graph per call)"][0]
    chain1 = rows["chain engine, 6-stage config, one per call"][0]
    same_as_graph = rows["graph engine, same 6-stage chain as a graph"][0]
    cpu = {k: v[2] for k, v in rows.items()}
    print(f"\nratio graph/chain on the same 6-stage configuration, one per call: {same_as_graph / chain1:.2f}x wall, "
          f"{cpu['graph engine, same 6-stage chain as a graph'] / cpu['chain engine, 6-stage config, one per call']:.2f}x "
          "per CPU second (> 1: the graph engine is faster)")
    print(f"ratio of a batch of 256 random 6-node graphs to 256 random 6-stage chains (same store size): "
          f"{cpu['batch of 256 random 6-node graphs'] / cpu['chain engine, 256 random 6-stage configs']:.2f}x per CPU second")
    print(f"6-node graph, one per call: {single:,.0f}/s; in a batch of 256 distinct graphs: "
          f"{rows['batch of 256 random 6-node graphs'][0]:,.0f}/s "
          f"({rows['batch of 256 random 6-node graphs'][0] / 1000:.2f}x the 1,000/s target); "
          f"per CPU second x {threads}: {rows['batch of 256 random 6-node graphs'][2]:,.0f}/s "
          f"({rows['batch of 256 random 6-node graphs'][2] / 1000:.2f}x the target)")
    print("\ngrowth (one graph per call, CPU microseconds per evaluation, all threads; per node in brackets):")
    print(f"{'nodes':>6} {'width (solves + vote)':>24} {'depth (refine chain)':>24}")
    for n in (2, 4, 6, 8, 12, 16):
        width = "; ".join(f"s{i}=solve(Qwen2.5-7B,2)" for i in range(n)) + "; output=vote(" + ",".join(
            f"s{i}" for i in range(n)) + ")"
        depth = "; ".join(["r0=solve(Qwen2.5-7B,2)"] + [f"r{i}=refine(Qwen2.5-7B,2|r{i - 1})" for i in range(1, n)])
        out = []
        for text in (width, depth):
            g = Graph.parse(text, store=gst)
            evaluate_graph(gst, g, replicates=R)
            _, _, c = timed(lambda: [evaluate_graph(gst, g, replicates=R) for _ in range(10)], args.repeats, 10, 1)
            out.append(f"{1e6 / c:>12,.0f} ({1e6 / c / n:>6,.0f})")
        print(f"{n:>6} {out[0]:>24} {out[1]:>24}")


if __name__ == "__main__":
    main()
