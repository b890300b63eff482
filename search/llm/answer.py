"""The agent's answer: one strict JSON object, parsed and validated on receipt.

    {"guidelines": ["prefer Qwen3-8B for retrieve: it wins clearly", ...],
     "trials": [{"retrieve": {"model": "Qwen3-8B", "samples": 1},
                 "answer":   {"model": "Qwen3-0.6B", "samples": 12}}, ...]}

Which top-level fields an answer has depends on the call (`FIELDS`); every field listed for a
call is required and no other field is allowed. What a trial looks like is the space's
(`space.point_from_answer`: in the configuration space, every stage exactly once, each with
exactly "model" (a string) and "samples" (a JSON integer); in a controller space, every
parameter exactly once). Two lenient steps only, because real endpoints add them around
otherwise strict output: a leading <think>...</think> block (reasoning models served without a
reasoning parser) and one surrounding ``` code fence.

Semantic checks (is the model a candidate of the stage, is the value in range: the space's
`answer_problems`; is the trial within budget, was it tried already: search/llm/agent.py)
come after parsing.

`answer_schema` writes the same format as a JSON schema, sent with the request where the
endpoint takes one (structured outputs, search/llm/client.py): a trial is the space's
`answer_schema()` (configurations: each stage one of its candidate models with one of that
model's allowed counts), lists and strings are bounded so that a small model cannot ramble
inside a valid answer. Parsing and validation stay the same whatever the endpoint did.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

MAX_LIST = 20  # guidelines / knowledge items kept; more is noise in the next prompt
# structured outputs: the bounds the schema puts on an answer's lists. Text lengths are not in
# the schema: llama.cpp compiles `maxLength: N` into N nested optional grammar rules, and at 2,000
# it refuses the grammar ("exceeds sane defaults") and its server fell over (seen with SmolLM2,
# docs/agent-reinforce.md). --llm-max-tokens bounds an answer; the parser cuts long texts.
SCHEMA_LIST_ITEMS = 10
SCHEMA_ITEM_CHARS = 300   # a guideline or knowledge item, cut here by the parser
SCHEMA_TEXT_CHARS = 2000  # a free-text field (analysis, feedback), cut here by the parser
SCHEMA_EXTRA_TRIALS = 2  # room above the k trials asked for (duplicates are dropped, not refused)

_THINK = re.compile(r"^\s*<think>.*?</think>", re.S)
_FENCE = re.compile(r"^\s*```[a-zA-Z]*\s*\n(.*)\n\s*```\s*$", re.S)


class AnswerProblem(Exception):
    """What was wrong with an answer: `kind` is the counter it goes to, the message goes back
    to the agent verbatim."""

    def __init__(self, kind: str, message: str):
        self.kind = kind
        self.message = message
        super().__init__(message)


@dataclass(frozen=True)
class Answer:
    fields: dict  # validated top-level fields other than trials (lists of strings, strings)
    trials: tuple[Any, ...]  # the space's points


def strip_wrapping(text: str) -> str:
    text = _THINK.sub("", text or "", count=1).strip()
    m = _FENCE.match(text)
    return m.group(1).strip() if m else text


def parse_answer(text: str, fields: dict[str, str], space) -> Answer:
    """`fields`: name -> "trials" | "strings" | "string"; each trial is parsed by the space
    (`space.point_from_answer`). Raises AnswerProblem."""
    body = strip_wrapping(text)
    if not body:
        raise AnswerProblem("malformed_json", "the answer was empty; expected one JSON object")
    try:
        obj = json.loads(body)
    except json.JSONDecodeError as e:
        raise AnswerProblem("malformed_json", f"the answer is not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    if not isinstance(obj, dict):
        raise AnswerProblem("schema_errors", f"the answer must be a JSON object, got a JSON {type(obj).__name__}")
    extra = sorted(set(obj) - set(fields))
    if extra:
        raise AnswerProblem("schema_errors", f"unexpected field(s) {', '.join(map(repr, extra))}; allowed: {', '.join(map(repr, fields))}")
    missing = [f for f in fields if f not in obj]
    if missing:
        raise AnswerProblem("schema_errors", f"missing field(s) {', '.join(map(repr, missing))}")
    out, trials = {}, ()
    for name, kind in fields.items():
        value = obj[name]
        if kind == "trials":
            if not isinstance(value, list) or not value:
                raise AnswerProblem("schema_errors", f"{name!r} must be a non-empty list of trials")
            trials = tuple(space.point_from_answer(t, f"trial {k}") for k, t in enumerate(value, 1))
        elif kind == "strings":
            if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
                raise AnswerProblem("schema_errors", f"{name!r} must be a list of strings")
            out[name] = [" ".join(x.split())[:SCHEMA_ITEM_CHARS] for x in value if x.strip()][:MAX_LIST]
        elif kind == "string":
            if not isinstance(value, str):
                raise AnswerProblem("schema_errors", f"{name!r} must be a string")
            out[name] = value.strip()[:SCHEMA_TEXT_CHARS]
        else:  # pragma: no cover - programming error
            raise ValueError(kind)
    return Answer(fields=out, trials=trials)


def answer_schema(fields: dict[str, str], space, k: int = 0) -> dict:
    """The JSON schema of an answer with `fields` (as `parse_answer` takes them); a trial is the
    space's `answer_schema()` (None: any object, the space's parser decides)."""
    props: dict[str, dict] = {}
    for name, kind in fields.items():
        if kind == "trials":
            point = space.answer_schema() or {"type": "object"}
            props[name] = {"type": "array", "items": point, "minItems": 1,
                           "maxItems": max(k, 1) + SCHEMA_EXTRA_TRIALS}
        elif kind == "strings":
            props[name] = {"type": "array", "items": {"type": "string"}, "maxItems": SCHEMA_LIST_ITEMS}
        elif kind == "string":
            props[name] = {"type": "string"}
        else:  # pragma: no cover - programming error
            raise ValueError(kind)
    return {"type": "object", "properties": props, "required": list(fields), "additionalProperties": False}
