"""Share of usable LLM-searcher answers with and without structured outputs, on a real endpoint.

    python benchmarks/llm_structured.py --replay traces/tiny-real-numseq \
        --base-url http://127.0.0.1:8431/v1 --model SmolLM2-135M-Instruct --calls 10 --modes off,auto

AgentTTS's first LLM round on the store (after its LLM-free initialisation, replayed here) is
asked `--calls` times, the same prompt each time (a server that caches the prompt then only
decodes), once per structured-output mode (search/llm/client.py: off, auto, json-schema, ...),
through the consult loop with no feedback turn (`max_feedback` 0): every answer counts once.
Usable: it parsed and named a valid, affordable, untried configuration. Also printed: malformed
answers (not JSON, not the schema, over the size limit), answers the space refused, seconds and
completion tokens per call, and the mode the endpoint ended up with. The numbers are this
model's, on this prompt, with these sampling settings, on few calls: read them with their counts.
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
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--json", default=None, help="also write the rows here")
    a = ap.parse_args(argv)

    import replay
    from search.llm import prompts
    from search.runner import build_searcher, make_setup, run_search
    from search.searchers.agenttts import FIELDS

    store = replay.open(a.replay)
    setup = make_setup(store)
    rows = []
    for mode in a.modes.split(","):
        opts = {"llm_base_url": a.base_url, "llm_model": a.model, "llm_structured": mode, "max_feedback": 0,
                "llm_max_tokens": a.max_tokens, "llm_temperature": a.temperature, "llm_timeout_s": a.timeout,
                "trials_per_round": 1}
        s = build_searcher("agenttts", setup.space, options=opts, objective=setup.objective)
        init = run_search(setup, "agenttts", trials=len(s.init_plan), options=opts)  # no LLM call
        s.replay_history(init.trials)
        system, user = prompts.AGENTTTS_SYSTEM.format(role=s.brief.role), s.prompt(1)
        t0 = time.perf_counter()
        usable = 0
        for i in range(a.calls):
            res = s.consult(system, user, FIELDS, 1)
            usable += bool(res.trials)
            print(f"  {mode} call {i + 1}: {'usable' if res.trials else 'not usable'}: "
                  f"{' '.join(res.record['raw_answer'].split())[:160]!r}", flush=True)
        wall = time.perf_counter() - t0
        c = s.counters
        calls = c["llm_calls"]
        malformed = c["malformed_json"] + c["schema_errors"] + c["oversized_answers"]
        r = {"mode": mode, "used": s.client.structured, "calls": calls, "usable": usable,
             "usable_answers_counter": c["usable_answers"], "malformed": malformed,
             "refused": calls - usable - malformed, "endpoint_failures": c["endpoint_failures"],
             "s_per_call": s.totals["wall_s"] / calls if calls else None,
             "completion_tokens_per_call": s.totals["completion_tokens"] / calls if calls else None,
             "prompt_tokens": s.totals["prompt_tokens"] / calls if calls else None, "wall_s": wall}
        rows.append(r)
        print(f"{mode:19s} (used {r['used']}): usable {usable}/{calls} ({usable / max(calls, 1):.0%}); "
              f"malformed {malformed}, refused by the space {r['refused']}, endpoint failures "
              f"{r['endpoint_failures']}; {r['s_per_call'] or 0:.1f} s and {r['completion_tokens_per_call'] or 0:.0f} "
              f"completion tokens per call (prompt {r['prompt_tokens'] or 0:.0f} tokens); {wall:.0f} s", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
