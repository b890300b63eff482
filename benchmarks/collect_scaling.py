"""`collect run --ray` throughput: pools per second against the number of actors, and what Ray costs.

Every actor stands for one GPU: it gets its own scripted OpenAI-compatible endpoint (N actors,
N endpoints). An endpoint behaves like one serving engine: at most `--slots` requests are
decoded at once (more wait in its queue), and a request takes a prefill time plus its longest
completion over a per-sequence decode speed, scaled by `--time-scale` so that a run takes
seconds (by default a pool of 8 samples of ~100 tokens, its longest ~180, at 60 tokens/s per
sequence, is a 0.2-0.4 s request). The endpoints run in a separate process (standard library
HTTP servers, sleeping, no CPU to speak of); the data are SYNTHETIC multi-hop questions (the
`qa` task: retrieve, then answer), two models, the answers drawn from the request's seed.

Measured in the same run:

- serial: `collect run` without Ray, one endpoint (the reference);
- ray N: `collect run --ray local --actors N` (N = 1, 2, 4), N endpoints, on a workload and on
  a quarter of it: the wall time splits into a fixed cost (the intercept: actor start-up, the
  store) and a cost per pool (the slope). `ray.init` is timed separately (not in the runs).
- per actor: pools, samples and tokens per busy second (from the driver's last progress report);
  the driver's own CPU seconds per pool (its overhead: scheduling, ingesting, expanding).

The stores of all runs are checked equal, table by table, to the serial run's. Nothing else
should be running; the load average is printed.

    python benchmarks/collect_scaling.py [--questions 48] [--actors 1,2,4] [--slots 16]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


# ------------------------------------------------------------------------------------------
# the scripted endpoints (run with --serve in a child process)


def _texts(body: dict, n: int) -> list[str]:
    """Sampled completions: 1 + the pool's seed decides them (a model-dependent skill)."""
    content = body["messages"][-1]["content"]
    skill = 0.9 if "big" in body["model"] else 0.5
    out = []
    for i in range(n):
        r = random.Random(f"{body.get('seed')}/{body['model']}/{i}/{content}")
        filler = " ".join(["step"] * int(r.lognormvariate(4.6, 0.4)))  # ~100 words, a long tail
        if "Which passages are needed" in content:
            picks = ["Alpha", "Beta"] if r.random() < skill else ["Alpha", "Gamma"]
            out.append(f"{filler}\nTitles: {' | '.join(picks)}")
        else:
            gold = content.split("(gold: ")[1].split(")")[0]
            ans = gold if ("Beta" in content.split("Question:")[0] and r.random() < skill) else "Nobody"
            out.append(f"{filler}\nAnswer: The {ans}.")
    return out


def serve(n_endpoints: int, slots: int, prefill_tps: float, decode_tps: float, scale: float, logprobs: bool) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    def make(gate: threading.Semaphore):
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                if body.get("logprobs") and not logprobs:  # as llama.cpp: the client then counts by usage
                    return self._send(400, {"error": {"message": "logprobs are not supported",
                                                      "type": "invalid_request_error"}})
                n = int(body.get("n") or 1)
                texts = _texts(body, n)
                prompt = sum(len(m["content"].split()) for m in body["messages"])
                lens = [len(t.split()) for t in texts]
                with gate:  # the engine's batch: at most `slots` requests decode at once
                    time.sleep(scale * (prompt / prefill_tps + max(lens) / decode_tps))
                choices = [{"index": i, "finish_reason": "stop", "message": {"role": "assistant", "content": t},
                            "logprobs": {"content": [{"token": w, "logprob": -0.5, "bytes": None, "top_logprobs": []}
                                                     for w in t.split()]} if body.get("logprobs") else None}
                           for i, t in enumerate(texts)]
                self._send(200, {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                                 "choices": choices, "usage": {"prompt_tokens": prompt, "completion_tokens": sum(lens),
                                                               "total_tokens": prompt + sum(lens)}})

            def _send(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

    servers = []
    for _ in range(n_endpoints):
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), make(threading.Semaphore(slots)))
        httpd.daemon_threads = True
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
    print(json.dumps([f"http://127.0.0.1:{s.server_address[1]}/v1" for s in servers]), flush=True)
    sys.stdin.read()  # until the parent closes our stdin


# ------------------------------------------------------------------------------------------
# the benchmark


def write_data(path: Path, n: int) -> None:
    """SYNTHETIC multi-hop questions in the `qa` task's format."""
    with open(path, "w") as f:
        for k in range(n):
            f.write(json.dumps({
                "id": f"q{k}", "question": f"Who founded the city number {k}? (gold: Person{k})",
                "gold": [f"Person{k}"],
                "context": [["Alpha", [f"Alpha is a city {k}.", "It is old."]], ["Beta", f"Person{k} founded it."],
                            ["Gamma", ["Gamma is a river."]]],
                "supporting_facts": [["Alpha", 0], ["Beta", 0]]}) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--questions", type=int, default=48, help="the large workload; the small one is a quarter")
    ap.add_argument("--actors", default="1,2,4")
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--slots", type=int, default=16, help="requests an endpoint decodes at once (its batch)")
    ap.add_argument("--prefill", type=float, default=20000.0, help="prefill tokens/s of an endpoint")
    ap.add_argument("--decode", type=float, default=60.0, help="decode tokens/s of one sequence")
    ap.add_argument("--time-scale", type=float, default=0.1, help="the endpoints' times are multiplied by this")
    ap.add_argument("--logprobs", action="store_true",
                    help="the endpoints return per-token logprobs (exact counts; the client parses one object per "
                         "token, CPU that a 2-core machine runs short of); default: refused, counts from usage")
    ap.add_argument("--serve", nargs=6, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        n, slots, pre, dec, scale, lp = args.serve
        return serve(int(n), int(slots), float(pre), float(dec), float(scale), lp == "1")

    import logging
    import warnings

    warnings.simplefilter("ignore")
    import ray

    from collect.backends.openai_compat import OpenAIBackend
    from collect.run import RunSettings, parse_models, run_collection
    from collect.run.distributed import RayOptions, run_collection_ray
    from collect.run.worker import PROGRESS_FILE, Engine

    counts = [int(x) for x in args.actors.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="collect-scaling-"))
    big, small = tmp / "big.jsonl", tmp / "small.jsonl"
    write_data(big, args.questions)
    write_data(small, max(1, args.questions // 4))
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(max(counts)), str(args.slots), str(args.prefill),
                             str(args.decode), str(args.time_scale), "1" if args.logprobs else "0"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    urls = json.loads(proc.stdout.readline())
    models = tuple(parse_models("small-1B,big-8B"))

    def settings(data: Path, out: str) -> RunSettings:
        return RunSettings(task="qa", data=str(data), models=models, out=str(tmp / out), samples=args.samples,
                           batch_size=args.slots, expand_top=2, max_tokens=512, keep_raw=True)

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    def timed(fn):
        c0, t0 = cpu(), time.perf_counter()
        res = fn()
        return time.perf_counter() - t0, cpu() - c0, res

    rows = []
    try:
        def serial(data, out):
            return run_collection(settings(data, out), lambda m: OpenAIBackend(m.model_id, base_url=urls[0],
                                                                                max_concurrency=args.slots),
                                  progress=False, log=lambda s: None)

        serial(small, "warmup")  # imports, first connections
        ws, cs, rs = timed(lambda: serial(small, "serial-small"))
        wl, cl, rl = timed(lambda: serial(big, "serial"))
        rows.append(("serial", 1, ws, wl, cl, rs, rl, None))
        t0 = time.perf_counter()
        ray.init(num_cpus=max(max(counts), os.cpu_count() or 1), include_dashboard=False, logging_level=logging.ERROR)
        ray_start = time.perf_counter() - t0
        for n in counts:
            eng = Engine("openai", base_urls=tuple(urls[:n]), concurrency=(args.slots,) * n)

            def on_ray(data, out, n=n, eng=eng):
                return run_collection_ray(settings(data, out), eng, options=RayOptions(actors=n), progress=False,
                                          log=lambda s: None)

            ws, cs, rs = timed(lambda: on_ray(small, f"ray{n}-small"))
            wl, cl, rl = timed(lambda: on_ray(big, f"ray{n}"))
            report = json.loads((tmp / f"ray{n}.raw" / PROGRESS_FILE).read_text())
            rows.append((f"ray", n, ws, wl, cl, rs, rl, report))
        ray.shutdown()
    finally:
        proc.stdin.close()
        proc.wait()

    tables = ("samples.parquet", "questions.parquet", "stage_golds.parquet")

    def same(out: str) -> str:
        return "yes" if all((tmp / out / t).read_bytes() == (tmp / "serial" / t).read_bytes() for t in tables) else "NO"

    pools_l = rows[0][6].drawn_samples // args.samples
    pools_s = rows[0][5].drawn_samples // args.samples
    serial_rate = pools_l / rows[0][3]
    print(f"workload: SYNTHETIC qa (retrieve, answer), 2 models, {args.samples} samples/pool, expand 2; "
          f"{args.questions} questions = {pools_l} pools, and {max(1, args.questions // 4)} = {pools_s} pools; "
          f"endpoint: {args.slots} requests at once, {args.decode:g} tok/s per sequence x time scale "
          f"{args.time_scale:g}, "
          f"logprobs {'on' if args.logprobs else 'off (counts from usage)'}")
    print(f"machine: {os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end; "
          f"ray.init (local): {ray_start:.1f} s, not counted below")
    print("| run | actors | wall s | pools/s | vs serial | fixed cost s | s per pool | driver CPU ms/pool "
          "| per actor: pools/busy s, tokens/busy s, CPU ms/pool | same store |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, n, ws, wl, cl, rs, rl, rep in rows:
        slope = (wl - ws) / (pools_l - pools_s)
        fixed = wl - slope * pools_l
        per_actor = "-"
        if rep:
            acts = rep["actors"]
            per_actor = ", ".join(f"{a['pools'] / a['busy_s']:.1f} / {a['completion_tokens'] / a['busy_s']:,.0f} / "
                                  f"{1000 * a['cpu_s'] / max(a['pools'], 1):.0f}" for a in acts if a["busy_s"] > 0)
        out = "serial" if name == "serial" else f"ray{n}"
        print(f"| {name} | {n} | {wl:.2f} | {pools_l / wl:.1f} | {pools_l / wl / serial_rate:.2f}x | {fixed:.2f} "
              f"| {slope:.4f} | {1000 * cl / pools_l:.2f} | {per_actor} | {same(out) if out != 'serial' else '-'} |")
    print("fixed cost: the intercept of wall time against pools (actors' start-up, the store); driver CPU: this "
          "process's user+system time over the large run, per pool (serial: all the work; ray: the driver's share); "
          "actor CPU: the actor process's CPU time over its units, per pool")


if __name__ == "__main__":
    main()
