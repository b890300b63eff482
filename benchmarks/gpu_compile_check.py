"""Compile every CUDA kernel of replay/gpu/kernels.py to PTX, without a GPU.

The CUDA simulator (tests/gpu_sim_checks.py) checks what the kernels compute, but it runs them
as Python: it cannot say whether they compile for a real GPU. This script can, wherever
numba-cuda and NVIDIA's compiler wheels are installed (`pip install 'tts-replay[gpu-replay]'`;
no driver, no GPU): it replays a tiny store's evaluate_batch (both methods), scan_space and the scan's question sums with the launches
intercepted (and graph replay's evaluate_graphs, on a chain store's stages and on a graph store), compiles each kernel with the argument types of that launch for sm_90 (H100/H200),
and checks that the PTX holds no fused multiply-add (fma.rn.f64), which would round differently
from the CPU kernels (see replay/gpu/kernels.py). Where NVIDIA's ptxas is found (on PATH or in
the nvidia-cuda-nvcc wheel) each kernel's PTX is also assembled for that architecture, printing
its registers and spills.

    python benchmarks/gpu_compile_check.py [--dump DIR]

Exit 0: every kernel compiled, no FMA; 1: a kernel failed or holds an FMA; 3: numba-cuda or
its compiler is not installed here (nothing checked).
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ("memo_build", "memo_lookup", "replay_groups", "scan_product", "scan_question_sums")
GRAPH_KERNELS = ("identity_columns", "graph_nodes", "graph_outputs", "graph_chunk_sums", "node_chunk_sums")
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def _ptxas() -> str | None:
    """NVIDIA's PTX assembler: on PATH, or in the nvidia-cuda-nvcc wheel of the gpu-replay extra."""
    import shutil

    found = shutil.which("ptxas")
    if found:
        return found
    try:
        import nvidia.cuda_nvcc as nvcc

        cand = Path(list(nvcc.__path__)[0]) / "bin" / "ptxas"
        return str(cand) if cand.exists() else None
    except Exception:
        return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dump", type=Path, default=None, help="Write each kernel's PTX into this folder.")
    ap.add_argument("--cc", default="9.0", help="Compute capability to compile for (default 9.0: H100/H200).")
    args = ap.parse_args()
    if importlib.util.find_spec("numba_cuda") is None:
        print("numba-cuda is not installed: nothing checked")
        return 3
    import numpy as np

    if not hasattr(np, "row_stack"):  # numba-cuda imports it; NumPy 2.5 removed it
        np.row_stack = np.vstack
    import numba
    import numba.cuda.dispatcher as dispatcher
    from numba import cuda

    cc = tuple(int(x) for x in args.cc.split("."))
    # device functions ask the current GPU for its compute capability: there is none here
    dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=cc)

    import replay
    import replay.gpu as gpu
    from replay.engine import Config, StageChoice, replay_sums, scan_space
    from replay.gpu import host
    from replay.gpu import graph_host
    from replay.gpu import graph_kernels as GGK
    from replay.gpu import kernels as GK
    from storekit import RandomStoreSpec, make_random_store

    class HostArray(np.ndarray):
        def copy_to_host(self):
            return np.array(self)

    host._cuda = lambda: types.SimpleNamespace(
        to_device=lambda a: np.array(a).view(HostArray),
        device_array=lambda shape, dtype: np.zeros(shape, dtype).view(HostArray),
        synchronize=lambda: None,
        current_context=lambda: types.SimpleNamespace(get_memory_info=lambda: (8 << 30, 8 << 30)))
    compiled: dict = {}
    bad: list[str] = []
    ptxas = _ptxas()

    class Launch:
        def __init__(self, name, module=GK):
            self.name = name
            self.module = module

        def __getitem__(self, dims):
            def launch(*a):
                sig = tuple(numba.typeof(np.asarray(x) if isinstance(x, np.ndarray) else x) for x in a)
                if (self.name, sig) in compiled:
                    return
                try:
                    ptx, _ = cuda.compile_ptx(getattr(self.module, self.name).py_func, sig, cc=cc)
                except Exception as e:  # report every kernel, not only the first failure
                    if "libnvvm" in str(e).lower() or "nvvm" in type(e).__name__.lower():
                        raise SystemExit(3) from e
                    bad.append(f"{self.name}: {type(e).__name__}: {str(e).splitlines()[0]}")
                    compiled[(self.name, sig)] = None
                    return
                compiled[(self.name, sig)] = ptx
                n_fma = ptx.count("fma.rn.f64")
                print(f"{self.name}: {len(ptx):,} characters of PTX for sm_{cc[0]}{cc[1]}, {n_fma} fma.rn.f64, "
                      f"{ptx.count('mul.rn.f64')} mul.rn.f64 (dmul_rn)")
                if n_fma:
                    bad.append(f"{self.name}: {n_fma} fused multiply-adds")
                if ptxas:  # assemble it too: parameter space, registers, spills
                    with tempfile.TemporaryDirectory() as tdir:
                        src = Path(tdir) / "k.ptx"
                        src.write_text(ptx)
                        res = subprocess.run([ptxas, f"-arch=sm_{cc[0]}{cc[1]}", "-v", str(src), "-o",
                                              str(Path(tdir) / "k.cubin")], capture_output=True, text=True)
                    info = " ".join(ln.split(":", 1)[-1].strip() for ln in res.stderr.splitlines()
                                    if "registers" in ln or "spill" in ln)
                    print(f"  ptxas: {info}" if res.returncode == 0 else f"  ptxas FAILED: {res.stderr.strip()[:300]}")
                    if res.returncode != 0:
                        bad.append(f"{self.name}: ptxas failed")
                if args.dump:
                    args.dump.mkdir(parents=True, exist_ok=True)
                    (args.dump / f"{self.name}.ptx").write_text(ptx)
            return launch

    host._kernels = lambda: types.SimpleNamespace(SIMULATOR=False, **{n: Launch(n) for n in KERNELS})
    graph_host._kernels = lambda: types.SimpleNamespace(**{n: Launch(n, GGK) for n in GRAPH_KERNELS})
    gpu._status = (True, "")
    with tempfile.TemporaryDirectory() as d:
        st = replay.open(make_random_store(Path(d) / "s", RandomStoreSpec(
            seed=0, n_questions=2, aggregations=("majority_vote", "set_vote", "llm_fuse", "best_score"))))
        cfgs = [Config(tuple(StageChoice(st.candidate_models(s)[0], 2) for s in range(len(st.stages))))]
        for method in ("memo", "direct"):
            replay_sums(st, cfgs, np.arange(2), replicates=2, seed=1, method=method, device="cuda")
        from replay.engine import _pool_layout, largest_pool
        from replay.gpu.host import question_sums

        S = len(st.stages)
        question_sums(st, np.zeros((S, 1), np.int64), np.ones((S, 1), np.int64), np.ones(S, np.int64),
                      np.zeros((1, S - 1), np.int64), np.arange(2, dtype=np.int64), _pool_layout(st, largest_pool(st)),
                      replicates=2, seed=0, reference=np.zeros(2))
        try:
            scan_space(st, [[StageChoice(m, 1) for m in st.candidate_models(s)] for s in range(len(st.stages))],
                       replicates=2, device="cuda")
        except Exception:
            pass  # the intercepted scan returns no numbers: only its launch matters here
        # graph replay: a chain store's stages as roles (every aggregation), and a graph store
        from graphkit import RandomGraphStoreSpec, make_random_graph_store, random_graph

        from replay.graph import Graph
        from replay.graph.engine import evaluate_graphs

        evaluate_graphs(st, [Graph.from_chain(cfgs[0], st)], replicates=2, device="cuda")
        gst = replay.open(make_random_graph_store(Path(d) / "g", RandomGraphStoreSpec(seed=0, n_questions=2)))
        rng = np.random.default_rng(0)
        evaluate_graphs(gst, [random_graph(gst, rng) for _ in range(3)], replicates=2, device="cuda")
    names = {n for n, _ in compiled}
    missing = (set(KERNELS) | set(GRAPH_KERNELS)) - names
    for line in bad + [f"{n}: never launched" for n in sorted(missing)]:
        print("FAILED", line)
    return 1 if bad or missing else 0


if __name__ == "__main__":
    sys.exit(main())
