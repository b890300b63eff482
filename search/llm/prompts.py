"""Every prompt the LLM searchers send, in one place (docs/agenttts.md quotes them).

A prompt is a system message (who the agent is, answer in JSON only) and a user message built
from sections: the task (stages, candidates, counts, budget, costs), the archive of trials, the
searcher's own material (guidelines, experience, knowledge), the instructions, and the answer
format with an example that uses the real stage and model names.
"""

from __future__ import annotations

import json
import math
from typing import Callable

from replay.engine import Config, StageChoice

from ..protocol import Trial
from ..space import SearchSpace
from .answer import config_json

# ---------------------------------------------------------------------------------------------
# System messages

AGENTTTS_SYSTEM = (
    "You are AgentTTS, an agent that searches for the compute-optimal test-time scaling "
    "configuration of a multi-stage LLM pipeline. For every stage you choose one candidate "
    "model and a number of repeated samples; the stage's sampled outputs are aggregated into "
    "one. The total inference cost must stay within the budget. The goal is the highest "
    "end-to-end score on the training questions within as few trials as possible. "
    "You answer with one JSON object and nothing else."
)

AGENTHPO_SYSTEM = (
    "You are an expert in hyperparameter optimisation. You tune the hyperparameters of a "
    "system to maximise its score, proposing new configurations from the history of trials "
    "and their scores. You answer with one JSON object and nothing else."
)

MLCOPILOT_SYSTEM = (
    "You are MLCopilot, an assistant that solves machine-learning configuration tasks by "
    "reasoning over retrieved past experience and over knowledge distilled from it. "
    "You answer with one JSON object and nothing else."
)

# ---------------------------------------------------------------------------------------------
# AgentTTS instructions (insight 1 after the initial trials; insights 2 and 3 every round)

INSIGHT1 = (
    "Model preference (insight 1): the initial trials fixed every other stage to its largest "
    "model with one sample and tried each candidate model on one stage with as many samples as "
    "the budget allows. From them, write one model-preference guideline per stage: if the "
    "largest model clearly wins, prefer it; if not, prefer the smaller model, whose cheaper "
    "samples leave room for repeated sampling."
)

INSIGHT2 = (
    "Sample counts (insight 2): for each stage, find the direction in which the best sample "
    "count lies. A best count exists and more samples can hurt, because aggregating many "
    "candidates gets harder (small models suffer most). Move each stage's count toward the "
    "better side of what the archive shows and narrow its range."
)

INSIGHT3 = (
    "Budget across stages (insight 3): stages depend on each other. A stronger upstream stage "
    "can need fewer downstream samples; a weaker one needs more samples or a larger model "
    "downstream. Find the stages that matter most for the end-to-end score and move budget "
    "toward them, away from stages where it does not help."
)

AGENTTTS_TASK = (
    "Propose {k} new trial(s) that are not in the archive and whose cost stays within the "
    "budget, and return the updated guidelines: short, concrete statements per stage (preferred "
    "model, sample range, and why), replacing the current ones."
)

AGENTHPO_TASK = (
    "Analyse the history of trials above and propose {k} new configuration(s) that are likely "
    "to score higher than the best so far. Do not repeat a configuration from the history, and "
    "keep every configuration within the budget. Put your reasoning, briefly, in \"analysis\"."
)

MLCOPILOT_KNOWLEDGE_TASK = (
    "Distil knowledge from the experience above: up to {n} general, reusable rules about which "
    "model and how many samples work for each stage under this budget, and why. Each rule must "
    "be supported by the trials; revise or drop earlier knowledge that the trials contradict."
)

MLCOPILOT_PROPOSE_TASK = (
    "Using the retrieved experience and the knowledge, propose {k} new configuration(s) likely "
    "to score higher than the best so far. Do not repeat a configuration from the experience, "
    "and keep every configuration within the budget."
)

FEEDBACK = (
    "Your answer was rejected:\n{problems}\n"
    "Answer again with one complete JSON object in the required format, and nothing else."
)


# ---------------------------------------------------------------------------------------------
# Sections


def space_section(space: SearchSpace, estimate: Callable[[Config], float] | None, trials_left: int | None) -> str:
    lines = ["## Task", f"Stages, in pipeline order: {', '.join(space.stages)}."]
    lines.append(
        f"Budget: {space.budget:.4g} cost units per question. One unit is one single-sample pass of the "
        "smallest model on the cheapest stage; a stage costs about (parameters x tokens), its prompt "
        "once plus one completion per sample."
    )
    for i, st in enumerate(space.stages):
        lines.append(f"Stage {st!r}, candidate models:")
        for m in space.models[i]:
            desc = f"  - {m} ({_params(space.params.get(m, math.nan))} parameters), samples {_counts(space.counts[i][m])}"
            if estimate is not None:
                per = _per_sample(space, estimate, i, m)
                if per is not None:
                    desc += f", about {per:.3g} units per extra sample"
            lines.append(desc)
    if estimate is not None:
        base = Config(tuple(StageChoice(space.largest_model(i), 1) for i in range(len(space.stages))))
        lines.append(f"For reference, every stage once with its largest model costs about {estimate(base):.4g} units.")
    if trials_left is not None:
        lines.append(f"Trials left in this search: {trials_left}.")
    return "\n".join(lines)


def archive_section(trials: list[Trial], stages: tuple[str, ...], title: str = "## Archive of trials",
                    empty: str = "(no trials yet)", show_source: bool = True) -> str:
    lines = [title]
    if not trials:
        return "\n".join(lines + [empty])
    ok = [t for t in trials if t.feasible and t.score is not None]
    best = max(ok, key=lambda t: (t.score, -t.units)) if ok else None
    head = ["#"] + list(stages) + ["score (+- stderr)", "cost"] + (["source"] if show_source else [])
    lines.append(" | ".join(head))
    for t in trials:
        cells = [str(t.number)] + [f"{ch.model} x{ch.samples}" for ch in t.config.stages]
        if t.feasible and t.score is not None:
            cells.append(f"{t.score:.3f} +- {t.stderr:.3f}" if t.stderr is not None and math.isfinite(t.stderr) else f"{t.score:.3f}")
        else:
            cells.append("INFEASIBLE: over budget, no score")
        cells.append(f"{t.units:.3g}")
        if show_source:
            cells.append(t.source or "-")
        lines.append(" | ".join(cells) + ("   <- best so far" if t is best else ""))
    return "\n".join(lines)


def list_section(title: str, items: list[str], empty: str) -> str:
    return "\n".join([title] + ([f"- {x}" for x in items] if items else [empty]))


def format_section(space: SearchSpace, fields: dict[str, str], k: int) -> str:
    """The JSON schema, spelled out, with an example that uses the real names."""
    st = space.stages
    trial_shape = "{" + ", ".join(f'"{s}": {{"model": <candidate model of {s}>, "samples": <integer>}}' for s in st) + "}"
    shape, example = [], {}
    ex_trial = config_json(Config(tuple(StageChoice(space.largest_model(i), 1) for i in range(len(st)))), st)
    for name, kind in fields.items():
        if kind == "trials":
            shape.append(f'"{name}": [{trial_shape}, ... ({k} trial(s))]')
            example[name] = [ex_trial]
        elif kind == "strings":
            shape.append(f'"{name}": [<string>, ...]')
            example[name] = ["..."]
        else:
            shape.append(f'"{name}": <string>')
            example[name] = "..."
    return "\n".join([
        "## Answer format",
        "Answer with exactly one JSON object, no prose and no code fences, with exactly these fields:",
        "{" + ", ".join(shape) + "}",
        "Every trial names every stage; \"samples\" is a JSON integer among the stage's allowed counts.",
        f"Example of the shape (not a recommendation): {json.dumps(example)}",
    ])


def render(messages: list[dict[str, str]]) -> str:
    """A conversation as one string, for the archive."""
    return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in messages)


# ---------------------------------------------------------------------------------------------
# helpers


def _params(p: float) -> str:
    if not math.isfinite(p) or p <= 0:
        return "unknown"
    return f"{p / 1e9:.3g}B" if p >= 1e8 else f"{p / 1e6:.3g}M"


def _counts(counts: tuple[int, ...]) -> str:
    c = sorted(counts)
    if c == list(range(c[0], c[-1] + 1)) and len(c) > 2:
        return f"{c[0]}..{c[-1]}"
    return ", ".join(map(str, c))


def _per_sample(space: SearchSpace, estimate, stage: int, model: str) -> float | None:
    counts = sorted(space.counts[stage][model])
    if len(counts) < 2:
        return None
    base = [StageChoice(space.smallest_model(i), min(space.counts[i][space.smallest_model(i)])) for i in range(len(space.stages))]
    lo, hi = list(base), list(base)
    lo[stage], hi[stage] = StageChoice(model, counts[0]), StageChoice(model, counts[1])
    return (estimate(Config(tuple(hi))) - estimate(Config(tuple(lo)))) / (counts[1] - counts[0])
