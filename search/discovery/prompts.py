"""The discovery agent's prompts (docs/discovery.md quotes them), and how its answer is read.

Each round is one conversation: a system message, then one user message made of sections:

    ## Task                      the goal (the score rule in words), the data, the built-ins' scores
    ## The controller protocol   actions, probe interval, what a controller sees and may call, the
                                 cost model, the beta knob a program must expose, allowed imports,
                                 limits; with an example program (a seed) until a program has run
    ## Best programs so far      the best ones: score, curve, and the best one's source
    ## Feedback on your last program   its checks or error, curve, score against the best and the
                                 built-ins, the knob's monotonicity, diagnostics, traces
    ## All programs so far       one line each
    ## Your answer               a plan in a few sentences, then the whole program in one
                                 ```python block; `TRACE: ids` asks for traces

Within a round, a rejected answer (no program found, failed static checks, every program tried
already) goes back with the reasons, at most `max_feedback` times (the one consult loop of
search/llm/agent.py); an answer that is only `TRACE: ...` gets the last program's traces of
those questions back the same way and counts as one of those turns.
"""

from __future__ import annotations

import re
from typing import Sequence

from .checks import ALLOWED_IMPORTS
from .score import CurvePoint  # noqa: F401 - re-exported for the searcher

SYSTEM = (
    "You are a researcher who discovers test-time scaling controllers: programs that decide, while a "
    "reasoning model generates, how many reasoning chains to run (width), how far to run each (depth), when to "
    "read their intermediate answers, which chains to drop and when to stop and answer. Every program you write "
    "is replayed on pre-collected chains (no model runs) and scored. You answer with a short plan and then one "
    "complete Python program in a ```python code block."
)

PROTOCOL = """\
## The controller protocol
One episode is one question and one replicate: a pool of up to {pool} pre-generated reasoning chains
("samples") of {model} for that question. Your controller opens them in a random order (fixed per question
and replicate, the same for every program), generates each in intervals of K = {K} tokens, and reads
intermediate answers ("probes"). It is a class deriving from ScriptedController whose generator
`script(self, ep)` yields actions and reads `ep` between them:
  Open()                     open the next sample (depth 0). An error once the pool is exhausted: check ep.n_left.
  Continue(i, steps=1)       generate `steps` more intervals of sample i (steps=None: to its end).
  Probe(i)                   read sample i's current answer into ep.reading[i].
  Advance(samples, steps=1)  for each listed sample: Continue, then Probe unless it finished. One action:
                             the fast way to step many samples at once (~1 us per sample). Keep the work
                             your script does per round small (count votes as samples finish, not anew).
  Prune(i)                   drop sample i: it no longer votes and cannot continue (its tokens stay spent).
  Answer(a=None)             stop and answer a (an answer id from ep.final or ep.reading), or None for the
                             default rule: the majority of finished, unpruned samples' final answers (else of
                             their readings; ties to the sample opened first).
The state `ep` (sample index i = order opened, 0-based): ep.n_opened, ep.n_left, ep.pool_size, ep.K,
ep.depth[i] (intervals generated), ep.finished[i], ep.pruned[i], ep.final[i] (its final answer id once
finished, else None), ep.reading[i] (latest answer read, None if none yet), ep.running() (opened, not pruned,
not finished), ep.active() (opened, not pruned), ep.tokens (spent so far), ep.tokens_of(i). Answers are
integer ids (compare them with ==). Errors (continuing a finished or pruned sample, probing one never opened,
more than ~{max_actions:,} actions) end the evaluation with an error.
Readings taken early are often wrong: a chain's answer changes as it reasons, and a chain's final answer is
what it votes with. Cost: the tokens generated (per sample min(depth x K, its length)){probe_cost}.
An episode scores 1 when the answer is right.
The knob: give the class `params` (a tuple of Param(name, low, high, integer=False, default=...)) and the
classmethod `beta_params(cls, beta)` returning a value for every parameter: beta in [0, 1] trades accuracy
for tokens, more beta = more compute (monotone), from frugal at 0 to about majority vote over 64 chains at 1.
Each program is evaluated at beta = {betas} on every training question and replicate.
Imports allowed: {imports}; from replay.controllers: ScriptedController, Controller, Param, Open, Continue,
Probe, Advance, Prune, Answer, lerp (lerp(lo, hi, beta, integer=False): lo + (hi - lo) * beta); from
replay.controllers.builtin: majority_confidence(v1, v2) (posterior probability that an answer with v1 votes
beats one with v2). No files, no network, no other module, no eval/exec/open/getattr, no double-underscore
attributes; one controller class; at most {max_chars:,} characters. It runs in a sandbox; each evaluation
(the whole sweep) must finish within {wall_s:g} s.
"""

EXAMPLE = """\
Example program (the built-in adaptive consistency, written as a program; it reads no probes):
```python
{source}```"""

ANSWER_FORMAT = """\
## Your answer
First, in a few sentences, what your program does differently and why (use the diagnostics and traces).
Then the complete program in one ```python code block: it is evaluated on its own, nothing else is kept.
After the code block you may add a line `TRACE: <question ids>` to see how this program behaves on those
training questions next round; an answer that is only such a line shows the last program's traces now."""

FEEDBACK_REJECTED = (
    "Your answer was not run:\n{problems}\n"
    "Answer again: a short plan, then the complete corrected program in one ```python code block."
)

FEEDBACK_TRACES = (
    "{traces}\n\nNow answer: a short plan, then the complete program in one ```python code block."
)


def protocol(*, pool: int, model: str, K: int, probe_cost: float, betas: Sequence[float], max_chars: int,
             wall_s: float, max_actions: int) -> str:
    imports = ", ".join(sorted(m for m in ALLOWED_IMPORTS if not m.startswith(("replay", "__"))))
    pc = f" + {probe_cost:g} per probe of an unfinished sample" if probe_cost else " (probes are free)"
    b = ", ".join(f"{x:g}" for x in betas) if len(betas) <= 6 else \
        f"{len(betas)} values evenly spaced from {betas[0]:g} to {betas[-1]:g}"
    return PROTOCOL.format(pool=pool, model=model, K=K, probe_cost=pc, betas=b, imports=imports, max_chars=max_chars,
                           wall_s=wall_s, max_actions=max_actions)


def curve_text(curve: Sequence[CurvePoint], every: int = 1) -> str:
    """'beta 0: 0.700 @ 20,100; beta 0.25: ...' (accuracy @ mean tokens per question)."""
    pts = list(curve)[::every] if every > 1 else list(curve)
    if every > 1 and curve and pts[-1] is not curve[-1]:
        pts.append(curve[-1])
    return "; ".join(f"beta {p.beta:g}: {p.accuracy:.3f} @ {p.tokens:,.0f}" for p in pts)


# ---- reading the answer

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)(?:\n[ \t]*```|\Z)", re.S)
_TRACE = re.compile(r"^[ \t>*-]*TRACE[ \t]*:?[ \t]*(.*)$", re.M | re.I)


def extract_program(text: str) -> tuple[str | None, list[str]]:
    """(the program's source or None, trace requests) from an answer: the last fenced code block
    that defines a class (else the last python block); without fences, the whole answer if it
    looks like a program. TRACE lines are read outside code blocks."""
    text = re.sub(r"^\s*<think>.*?</think>", "", text or "", count=1, flags=re.S)
    blocks = [(m.group(1).lower(), m.group(2), m.span()) for m in _FENCE.finditer(text)]
    outside = text
    for _, _, (a, b) in reversed(blocks):
        outside = outside[:a] + outside[b:]
    requests = []
    for m in _TRACE.finditer(outside):
        requests += [x for x in re.split(r"[\s,;]+", m.group(1).strip()) if x]
    code = None
    with_class = [b for lang, b, _ in blocks if lang in ("", "python", "py", "python3") and re.search(r"^\s*class\s", b, re.M)]
    if with_class:
        code = with_class[-1]
    elif blocks:
        py = [b for lang, b, _ in blocks if lang in ("python", "py", "python3")]
        code = py[-1] if py else None
    elif re.search(r"^class\s", text, re.M) and re.search(r"^(from|import)\s", text, re.M):
        code = text
    if code is not None:
        code = code.strip("\n") + "\n"
    return code, requests
