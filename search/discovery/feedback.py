"""Execution-trace feedback: what a program did on the questions it did worst on, step by step and
compact, and summary diagnostics over many episodes (replay/controllers/trace.py records them).

    pools = pool_facts(steps, qidx)                                  # the pool's majority per question
    text = render_trace(trace, pools[q], answer_text, question_id)   # one episode, a few lines
    diag = diagnose(traces, pools)                                   # counts over many episodes
    diagnostics_text(diag)

A trace line groups the primitives between two decisions: opens (`open #0 #1`), one pass over
running samples (`#0:17 #1:- #2 done:204`: sample 0 read 17, sample 1 had no answer yet,
sample 2 finished with final answer 204), prunes, and the stop; each line ends with the tokens
spent so far and the leader of the votes (the default rule's answer) after it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from replay.aggregation import majority
from replay.controllers.trace import ANSWER, CONTINUE, OPEN, PROBE, PRUNE

HEAD_LINES, TAIL_LINES = 8, 8  # a long trace keeps its first and last lines


@dataclass(frozen=True)
class PoolFacts:
    """One question's pool: its majority final answer, whether that is right, how common."""

    size: int
    majority: int
    majority_right: bool
    majority_share: float
    shares: dict  # answer id -> share of the pool's final answers
    right: frozenset  # answer ids whose stored score is 1


def pool_facts(steps, qidx) -> dict[int, PoolFacts]:
    out = {}
    for q in qidx:
        v = steps.view(int(q))
        maj = majority(v.final)
        counts: dict[int, int] = {}
        for a in v.final:
            counts[a] = counts.get(a, 0) + 1
        right = frozenset(a for a, s in zip(v.final, v.score) if s >= 1.0)
        out[int(q)] = PoolFacts(v.size, maj, maj in right, counts[maj] / v.size,
                                {a: c / v.size for a, c in counts.items()}, right)
    return out


@dataclass(frozen=True)
class EpisodeTrace:
    question: int
    replicate: int
    events: np.ndarray  # int64 [E, 4]: kind, sample, value, lead
    tokens: np.ndarray  # float64 [E]
    score: float
    total_tokens: float
    opened: int
    probes: int
    cut: bool

    @property
    def answered(self) -> int:
        ans = self.events[self.events[:, 0] == ANSWER]
        return int(ans[-1, 2]) if len(ans) else -1


def split_traces(episodes, arrays) -> list[EpisodeTrace]:
    ev, tok, off, summ = arrays
    out = []
    for k, (q, r) in enumerate(episodes):
        a, b = int(off[k]), int(off[k + 1])
        s = summ[k]
        out.append(EpisodeTrace(int(q), int(r), ev[a:b], tok[a:b], float(s[0]), float(s[1]), int(s[2]), int(s[3]),
                                bool(s[4])))
    return out


def _short(text: str | None, n: int = 16) -> str:
    if text is None:
        return "-"
    t = " ".join(str(text).split())
    return t if len(t) <= n else t[: n - 1] + "~"


def render_trace(tr: EpisodeTrace, pool: PoolFacts, answer_text, question_id: str) -> str:
    """One episode in a few lines (see the module docstring)."""
    ans = tr.answered
    right = tr.score >= 1.0
    n_prune = int((tr.events[:, 0] == PRUNE).sum())
    head = (f"question {question_id}, replicate {tr.replicate}: answered {_short(answer_text(ans))} "
            f"({'right' if right else 'wrong'}) after {tr.total_tokens:,.0f} tokens; {tr.opened} opened, "
            f"{n_prune} pruned, {tr.probes} probes")
    held = pool.shares.get(ans, 0.0) if ans >= 0 else 0.0
    lines = [head, f"  pool of {pool.size} chains: majority {_short(answer_text(pool.majority))} "
                   f"({'right' if pool.majority_right else 'wrong'}, {100 * pool.majority_share:.0f}% of chains); "
                   f"the answer given is held by {100 * held:.0f}%"]
    body: list[str] = []
    cur: list[str] = []
    cur_kind = None
    seen: set[int] = set()
    last_tok, last_lead = 0.0, -1

    def flush():
        nonlocal cur, cur_kind, seen
        if cur:
            lead = _short(answer_text(last_lead)) if last_lead >= 0 else "-"
            body.append(f"  [{last_tok:,.0f} tok] {' '.join(cur)}   lead {lead}")
        cur, cur_kind, seen = [], None, set()

    E = len(tr.events)
    k = 0
    while k < E:
        kind, i, val, lead = (int(x) for x in tr.events[k])
        tok = float(tr.tokens[k])
        if kind == OPEN:
            if cur_kind not in (None, "open"):
                flush()
            cur_kind = "open"
            cur.append(f"open #{i}")
        elif kind in (CONTINUE, PROBE):
            if cur_kind not in (None, "step") or i in seen:
                flush()
            cur_kind = "step"
            seen.add(i)
            if kind == CONTINUE and val <= -3:
                cur.append(f"#{i} done:{_short(answer_text(-val - 3))}")
            elif kind == CONTINUE:
                nxt = tr.events[k + 1] if k + 1 < E else None
                if nxt is not None and int(nxt[0]) == PROBE and int(nxt[1]) == i:
                    r = int(nxt[2])
                    cur.append(f"#{i}:{_short(answer_text(r)) if r >= 0 else '-'}")
                    lead, tok = int(nxt[3]), float(tr.tokens[k + 1])
                    k += 1
                else:
                    cur.append(f"#{i}+")
            else:
                cur.append(f"#{i}?{_short(answer_text(val)) if val >= 0 else '-'}")
        elif kind == PRUNE:
            if cur_kind not in (None, "prune"):
                flush()
            cur_kind = "prune"
            cur.append(f"prune #{i}")
        elif kind == ANSWER:
            flush()
            last_tok, last_lead = tok, lead
            cur = [f"stop: answer {_short(answer_text(val)) if val >= 0 else 'none'}"]
            cur_kind = "answer"
        last_tok, last_lead = tok, lead
        k += 1
    flush()
    if tr.cut:
        body.append("  (trace cut: too many actions)")
    if len(body) > HEAD_LINES + TAIL_LINES + 1:
        body = body[:HEAD_LINES] + [f"  ... {len(body) - HEAD_LINES - TAIL_LINES} lines ..."] + body[-TAIL_LINES:]
    return "\n".join(lines + body)


def settle_tokens(tr: EpisodeTrace) -> float | None:
    """Tokens spent when the votes' leader settled for good on the answer finally given (None
    when the leader never was that answer)."""
    ans = tr.answered
    ev = tr.events
    body = ev[:-1] if len(ev) and int(ev[-1, 0]) == ANSWER else ev
    if ans < 0 or not len(body) or int(body[-1, 3]) != ans:
        return None
    k = len(body) - 1
    while k > 0 and int(body[k - 1, 3]) == ans:
        k -= 1
    return float(tr.tokens[k])


def diagnose(traces: list[EpisodeTrace], pools: dict[int, PoolFacts]) -> dict:
    """Counts over the traced episodes (the diagnostics the agent reads):

    stopped_on_wrong_majority  answered wrong where the pool's majority is right
    wasted_after_settle_pct    share of all tokens spent after the votes' leader had settled
                               on the answer finally given
    settled_right_pct          of the episodes where it settled, how many answered right
    never_pruned_pct           episodes with two or more samples opened and no prune
    finished_pct               opened samples run to their end
    """
    n = len(traces)
    if not n:
        return {"episodes": 0}
    wrong_vs_pool = sum(1 for t in traces if t.score < 1.0 and pools[t.question].majority_right)
    total = sum(t.total_tokens for t in traces)
    wasted, settled, settled_right = 0.0, 0, 0
    for t in traces:
        s = settle_tokens(t)
        if s is not None:
            settled += 1
            settled_right += t.score >= 1.0
            wasted += max(0.0, t.total_tokens - s)
    multi = [t for t in traces if t.opened >= 2]
    never = sum(1 for t in multi if not (t.events[:, 0] == PRUNE).any())
    opened = sum(t.opened for t in traces)
    finished = sum(int(((t.events[:, 0] == CONTINUE) & (t.events[:, 2] <= -3)).sum()) for t in traces)
    return {
        "episodes": n,
        "accuracy": sum(t.score for t in traces) / n,
        "pool_majority_accuracy": sum(pools[t.question].majority_right for t in traces) / n,
        "stopped_on_wrong_majority": wrong_vs_pool,
        "wasted_after_settle_pct": 100.0 * wasted / total if total else 0.0,
        "settled_right_pct": 100.0 * settled_right / settled if settled else None,
        "never_pruned_pct": 100.0 * never / len(multi) if multi else None,
        "finished_pct": 100.0 * finished / opened if opened else 0.0,
        "mean_opened": opened / n,
        "mean_probes": sum(t.probes for t in traces) / n,
        "mean_tokens": total / n,
    }


def diagnostics_text(d: dict) -> str:
    if not d.get("episodes"):
        return "(no episode traced)"
    n = d["episodes"]
    lines = [f"over {n} traced episodes (every training question, a few replicates each, at the operating beta):",
             f"- accuracy {d['accuracy']:.3f}; the pool's own majority answer is right in {100 * d['pool_majority_accuracy']:.0f}% of them",
             f"- stopped on a wrong answer where the pool's majority is right: {d['stopped_on_wrong_majority']} of {n} episodes",
             f"- tokens spent after the votes' leader had settled on the answer finally given: "
             f"{d['wasted_after_settle_pct']:.0f}% of all tokens"
             + (f" (in those episodes the settled answer was right {d['settled_right_pct']:.0f}% of the time)"
                if d.get("settled_right_pct") is not None else ""),
             "- never pruned: " + ("-" if d.get("never_pruned_pct") is None else
                                   f"{d['never_pruned_pct']:.0f}% of the episodes that opened two or more samples"),
             f"- {d['mean_opened']:.1f} samples opened, {d['finished_pct']:.0f}% of them run to their end, "
             f"{d['mean_probes']:.1f} probes, {d['mean_tokens']:,.0f} tokens per episode on average"]
    return "\n".join(lines)
