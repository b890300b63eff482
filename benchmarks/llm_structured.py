"""Share of usable LLM-searcher answers with and without structured outputs, on a real endpoint.

    python benchmarks/llm_structured.py --replay traces/tiny-real-numseq \
        --base-url http://127.0.0.1:8431/v1 --model SmolLM2-135M-Instruct --calls 12 --modes off,auto

For each structured-output mode (search/llm/client.py: off, auto, json-schema, ...), one search
per searcher whose every LLM round is one call (`max_feedback` 0, one trial per round for
AgentTTS), so that `usable_answers / llm_calls` is the share of single answers that parsed and
named valid, affordable, untried points. Also printed: malformed answers (not JSON, not the
schema, over the size limit), answers the space refused, the mean seconds per call, and the
mode the endpoint ended up with. The numbers are the endpoint's model's, on this store's
prompt, with these sampling settings: a weak model, a few calls; read them with their counts.
"""

from __future__ import annotations

import argparse
import json
import time


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--replay", required=True, help="store to search on")
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--calls", type=int, default=12, help="LLM calls per search")
    ap.add_argument("--modes", default="off,auto")
    ap.add_argument("--searchers", default="agenttts")
    ap.add_argument("--max-tokens", type=int, default=400)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--json", default=None, help="also write the rows here")
    a = ap.parse_args(argv)

    import replay
    from search.runner import make_setup, run_search

    store = replay.open(a.replay)
    setup = make_setup(store)
    rows = []
    for name in a.searchers.split(","):
        for mode in a.modes.split(","):
            opts = {"llm_base_url": a.base_url, "llm_model": a.model, "llm_structured": mode, "max_feedback": 0,
                    "llm_max_tokens": a.max_tokens, "llm_temperature": a.temperature, "llm_timeout_s": a.timeout,
                    "llm_backoff_s": 1.0}
            if name == "agenttts":
                opts["trials_per_round"] = 1
            from search.runner import build_searcher

            n_init = len(getattr(build_searcher(name, setup.space, options=opts, objective=setup.objective),
                                 "init_plan", ()) or ())
            t0 = time.perf_counter()
            run = run_search(setup, name, seed=0, trials=n_init + a.calls, options=opts)
            wall = time.perf_counter() - t0
            st = run.states[-1]
            c = st["counters"]
            calls = c["llm_calls"]
            malformed = c["malformed_json"] + c["schema_errors"] + c["oversized_answers"]
            refused = sum(v for k, v in c.items() if k not in ("llm_calls", "usable_answers", "malformed_json",
                                                               "schema_errors", "oversized_answers", "retries",
                                                               "endpoint_failures", "context_overflows", "fills",
                                                               "duplicates"))
            rows.append({"searcher": name, "mode": mode, "used": st.get("llm_structured"), "calls": calls,
                         "usable": c["usable_answers"], "malformed": malformed, "refused": refused,
                         "llm_trials": sum(t.source == "llm" for t in run.trials), "fills": c["fills"],
                         "endpoint_failures": c["endpoint_failures"],
                         "s_per_call": st["llm_totals"]["wall_s"] / calls if calls else None, "wall_s": wall,
                         "completion_tokens": st["llm_totals"]["completion_tokens"]})
            r = rows[-1]
            print(f"{name:9s} {mode:19s} (used {r['used']}): usable {r['usable']}/{r['calls']} "
                  f"({r['usable'] / max(r['calls'], 1):.0%}); malformed {r['malformed']}, refused {r['refused']}, "
                  f"fills {r['fills']}, endpoint failures {r['endpoint_failures']}; "
                  f"{r['s_per_call'] or 0:.1f} s per call, {r['completion_tokens']} completion tokens; "
                  f"{wall:.0f} s", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
