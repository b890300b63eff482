"""Every prompt the LLM searchers send, in one place (docs/agenttts.md quotes them).

A prompt is a system message (who the agent is, answer in JSON only) and a user message built
from sections: the task (the space's description: stages, candidates, counts, budget, costs;
or a controller's parameters), the archive of trials, the searcher's own material
(guidelines, experience, knowledge), the instructions, and the answer format with an example
that uses the real names. The sections are written against the space protocol
(search/spaces/base.py), so every space gets the same prompts; the texts specific to a space
(AgentTTS's insights for configurations, the role of a controller tuner) are constants here.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Callable, Sequence

from ..trial import Trial

# ---------------------------------------------------------------------------------------------
# System messages

# AgentTTS's system message: {role} is the space's (`space.agent_brief().role`).
AGENTTTS_SYSTEM = "You are AgentTTS, an agent that {role} You answer with one JSON object and nothing else."

CONFIG_ROLE = (
    "searches for the compute-optimal test-time scaling "
    "configuration of a multi-stage LLM pipeline. For every stage you choose one candidate "
    "model and a number of repeated samples; the stage's sampled outputs are aggregated into "
    "one. The total inference cost must stay within the budget. The goal is the highest "
    "end-to-end score on the training questions within as few trials as possible."
)

CONTROLLER_ROLE = (
    "tunes a test-time scaling controller. The controller decides, "
    "while a reasoning model generates, how many samples to run (width), how far to run each (depth), "
    "when to read intermediate answers, which samples to drop and when to stop and answer. Its "
    "parameters trade accuracy against tokens. The goal: the highest accuracy on the training "
    "questions with mean tokens per question within the budget, in as few trials as possible."
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
# AgentTTS instructions: every round (the insights hold for the whole search, as in the paper)

INSIGHT1 = (
    "Model preference (insight 1): the initial trials (source init) fixed every other stage to "
    "its largest model with one sample and tried each candidate model on one stage with as many "
    "samples as the budget allows. Keep one model-preference guideline per stage, from them and "
    "from every later trial: if the largest model clearly wins, prefer it; if not, prefer the "
    "smaller model, whose cheaper samples leave room for repeated sampling."
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
    "budget, and return the updated guidelines: short, concrete statements {hint}, replacing "
    "the current ones."
)
# what a guideline is about, per space ({hint} above)
CONFIG_GUIDELINES = "per stage (preferred model, sample range, and why)"
CONTROLLER_GUIDELINES = ("about the parameters (which matter, how each moves accuracy and mean tokens, and where "
                         "the best lies within the budget)")

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

# the same on spaces without stages (collaboration graphs): {hint} is the space's guideline hint
MLCOPILOT_KNOWLEDGE_TASK_PARTS = (
    "Distil knowledge from the experience above: up to {n} general, reusable rules, {hint}, under this "
    "budget, and why. Each rule must be supported by the trials; revise or drop earlier knowledge that the "
    "trials contradict."
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

# A rejected answer goes back as the assistant's turn, cut to this many characters: each
# feedback turn re-sends it, and a rambling answer would otherwise fill the model's context.
ECHO_CHARS = 1500
ECHO_CUT = "\n[... {n:,} more characters of this answer are not repeated here]"
# A conversation over the model's context (search/llm/agent.py) keeps the best trial and the
# most recent ones of each archive table, and says how many it left out.
ROWS_LEFT_OUT = "... ({n} earlier trial(s) not shown: the full archive was over the model's context)"


# ---------------------------------------------------------------------------------------------
# Sections


def task_section(space, trials_left: int | None) -> str:
    lines = ["## Task", space.describe()]
    if trials_left is not None:
        lines.append(f"Trials left in this search: {trials_left}.")
    return "\n".join(lines)


def archive_section(trials: Sequence[Trial], space, title: str = "## Archive of trials",
                    empty: str = "(no trials yet)", show_source: bool = True) -> str:
    lines = [title]
    if not trials:
        return "\n".join(lines + [empty])
    ok = [t for t in trials if t.feasible and t.score is not None]
    best = max(ok, key=lambda t: (t.score, -t.cost)) if ok else None
    head = ["#", *space.point_columns(), "score (+- stderr)", *space.cost_columns()] + (["source"] if show_source else [])
    lines.append(" | ".join(head))
    for t in trials:
        cells = [str(t.number), *space.point_cells(t.point)]
        if t.feasible and t.score is not None:
            cells.append(f"{t.score:.3f} +- {t.stderr:.3f}" if t.stderr is not None and math.isfinite(t.stderr) else f"{t.score:.3f}")
        else:
            cells.append(f"INFEASIBLE ({t.why_infeasible}): no score")
        cells += space.cost_cells(t)
        if show_source:
            cells.append(t.source or "-")
        lines.append(" | ".join(cells) + ("   <- best so far" if t is best else ""))
    return "\n".join(lines)


def over_budget_section(trials: Sequence[Trial], space) -> str | None:
    """The agent's own proposals of its last round that the replay found infeasible (over the
    budget, or over the fallback limit), with the reason."""
    if not trials:
        return None
    lines = ["## Feedback on your last proposals"]
    for t in trials:
        why = t.why_infeasible
        if why == "over budget":  # a space that gives no reason: the measured cost says it
            why = f"cost {space.cost_text(t.cost)}, over the budget of {space.cost_text(space.budget)}"
        lines.append(f"- trial {t.number} ({space.label(t.point)}): {why}: it has no score")
    return "\n".join(lines)


def list_section(title: str, items: list[str], empty: str) -> str:
    return "\n".join([title] + ([f"- {x}" for x in items] if items else [empty]))


def format_section(space, fields: dict[str, str], k: int = 1, *,
                   own_field: Callable[[str, str], tuple[str, Any] | None] | None = None,
                   rule: str | None = None) -> str:
    """The JSON schema, spelled out, with an example that uses the real names.

    Args:
        space: the searched space (the shape and an example of a trial, and the answer rule).
        fields: field name -> kind: 'trials' (k of the space's points), 'strings', 'string', or a
            kind of the caller's own (`own_field`).
        k: trials asked for.
        own_field: (name, kind) -> (schema text, example value) for the caller's own kinds, None
            for the kinds above.
        rule: the line under the schema (default: the space's `answer_rule()`).
    """
    shape: list[str] = []
    example: dict[str, Any] = {}
    for name, kind in fields.items():
        own = own_field(name, kind) if own_field is not None else None
        if own is not None:
            text, example[name] = own
            shape.append(f'"{name}": {text}')
        elif kind == "trials":
            shape.append(f'"{name}": [{space.answer_shape()}, ... ({k} trial(s))]')
            example[name] = [space.answer_example()]
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
        space.answer_rule() if rule is None else rule,
        f"Example of the shape (not a recommendation): {json.dumps(example)}",
    ])


def echo(answer: str, limit: int = ECHO_CHARS) -> str:
    """A rejected answer as it is sent back: at most `limit` characters, saying what was cut."""
    if len(answer) <= limit:
        return answer
    return answer[:limit] + ECHO_CUT.format(n=len(answer) - limit)


_TABLE_HEAD = "# | "
_BEST = "   <- best so far"


def shorten_archive(text: str, keep: int) -> tuple[str, int]:
    """`text` (a user message) with every archive table (`archive_section`) cut to its best row
    and its last `keep` rows; returns the text and the number of rows left out (0: nothing to cut)."""
    lines = text.split("\n")
    out: list[str] = []
    dropped_total = 0
    i = 0
    while i < len(lines):
        out.append(lines[i])
        if lines[i].startswith(_TABLE_HEAD) and i > 0 and lines[i - 1].startswith("## "):
            j = i + 1
            rows = []
            while j < len(lines) and lines[j].strip() and not lines[j].startswith("## "):
                rows.append(lines[j])
                j += 1
            table = [r for r in rows if not r.startswith("... (")]
            if len(table) > keep + 1:
                tail = table[-keep:] if keep > 0 else []
                best = [r for r in table[: len(table) - len(tail)] if r.endswith(_BEST)]
                left = len(table) - len(tail) - len(best)
                earlier = sum(int(m.group(1)) for r in rows if (m := re.match(r"\.\.\. \((\d+) earlier", r)))
                out += best + [ROWS_LEFT_OUT.format(n=left + earlier)] + tail
                dropped_total += left
            else:
                out += rows
            i = j
            continue
        i += 1
    return "\n".join(out), dropped_total


def render(messages: list[dict[str, str]]) -> str:
    """A conversation as one string, for the archive."""
    return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in messages)


# ---------------------------------------------------------------------------------------------
# Agent-REINFORCE (search/searchers/agent_reinforce.py): sample -> feedback -> update of a
# probabilistic collaboration graph (search/graphs/probabilistic.py)

REINFORCE_SYSTEM = (
    "You are Agent-REINFORCE, an agent that searches for the compute-optimal collaboration graph of LLM calls "
    "for a task. Graphs are sampled from a probabilistic graph (probabilities per node slot and per edge); "
    "you read how the sampled graphs scored and update the probabilities, as a REINFORCE step would, so that "
    "better graphs within the budget become more likely. You answer with one JSON object and nothing else."
)

REINFORCE_GRAPH = (
    "How a graph is sampled: node slots {slots} are drawn in order. Slot i is used with probability `use` "
    "(n1 always, as a node that reads nothing); a used slot draws a role, a model and a sample count from its rows; a role that reads other "
    "nodes reads each earlier used slot j with probability `inputs`[j] (at least one, at most the role's "
    "input limit); the first node reads nothing. The graph's answer is the last used slot; slots that do not "
    "reach it are dropped. Over-budget graphs are drawn again."
)

REINFORCE_INIT_TASK = (
    "Set the initial probabilistic graph from the probe trials above. Return the whole distribution in the "
    "format below, and a short analysis."
)

REINFORCE_FEEDBACK_TASK = (
    "Give feedback on this batch, as a gradient in words: which parts of the sampled graphs (slots, roles, "
    "models, sample counts, edges; width and depth) raised the score for their cost and which lowered it, "
    "citing trial numbers. Short, concrete statements."
)

REINFORCE_UPDATE_TASK = (
    "Update the probabilistic graph from the feedback: raise the probabilities of what helped, lower those of "
    "what hurt. Each probability moves at most {max_step} from its current value (larger moves are cut to "
    "that); no probability goes below {floor}; each role, model and samples row is normalised to sum to 1. "
    "You may leave out a slot or a field to keep it unchanged."
)
