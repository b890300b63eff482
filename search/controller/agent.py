"""AgentTTS on a controller's parameters: an LLM reads the space and the archive, keeps
guidelines (which parameters matter, where the best lies) and proposes parameter dicts.

The endpoint, its retries and backoff are search/llm/client.py's. Each answer must be one
strict JSON object, {"guidelines": [str, ...], "trials": [{<every dim>: <number>}, ...]}: no
other field, every dimension named exactly once, integers as JSON integers, values inside the
ranges the prompt gives (then `space.contains`). A malformed or invalid answer goes back to the
agent with the reasons, up to `max_feedback` times (counted: malformed_json, schema_errors,
out_of_range, duplicate_answers, retries). The tokens a point costs are known only once it is
replayed, so an over-budget proposal costs its trial: it is archived as infeasible, counted
(over_budget) and reported to the agent in the next prompt with its measured tokens. Trials the
agent still owes after the last retry are filled with untried random points (counted: fills).
"""

from __future__ import annotations

import copy
import json
import math
from typing import Any

from replay.controllers.space import ControllerSpace
from replay.errors import ConfigError

from ..llm.answer import MAX_LIST, AnswerProblem, strip_wrapping
from ..llm.client import LLMClient, LLMSettings
from .loop import CTrial, Proposal
from .searchers import ControllerSearcher, key

COUNTERS = ("llm_calls", "malformed_json", "schema_errors", "out_of_range", "duplicates", "duplicate_answers",
            "retries", "endpoint_failures", "fills")

SYSTEM = (
    "You are AgentTTS, an agent that tunes a test-time scaling controller. The controller decides, "
    "while a reasoning model generates, how many samples to run (width), how far to run each (depth), "
    "when to read intermediate answers, which samples to drop and when to stop and answer. Its "
    "parameters trade accuracy against tokens. The goal: the highest accuracy on the training "
    "questions with mean tokens per question within the budget, in as few trials as possible. "
    "You answer with one JSON object and nothing else."
)
FEEDBACK = ("Your answer was rejected:\n{problems}\n"
            "Answer again with one complete JSON object in the required format, and nothing else.")


class ControllerAgentTTS(ControllerSearcher):
    name = "agenttts"
    uses_llm = True
    options_accepted = ("llm_base_url", "llm_model", "llm_api_key", "llm_timeout_s", "llm_retries", "llm_backoff_s",
                        "llm_backoff_max_s", "llm_temperature", "llm_max_tokens", "llm_json_mode",
                        "trials_per_round", "max_feedback")

    def __init__(self, space: ControllerSpace, seed: int = 0, trials: int | None = None, **options: Any):
        super().__init__(space, seed, trials)
        self.settings = LLMSettings.from_options(options, self.name)  # a missing endpoint fails before any trial
        self.per_round = _int(options, "trials_per_round", 3, 1)
        self.max_feedback = _int(options, "max_feedback", 3, 0)
        self.client = LLMClient(self.settings)
        self.counters = {k: 0 for k in COUNTERS}
        self.totals = {"prompt_tokens": 0, "completion_tokens": 0, "wall_s": 0.0}
        self.guidelines: list[str] = []
        self.rounds = 0

    # ---- the protocol

    def ask(self) -> list[Proposal]:
        k = min(self.per_round, self.left())
        good, record = self.consult(k)
        extra = {**record, "round": self.rounds}
        self.rounds += 1
        fills = self.fill(k - len(good), exclude={key(p) for p in good})
        self.counters["fills"] += len(fills)
        snap = {"round": extra["round"], "guidelines": list(self.guidelines), "counters": dict(self.counters),
                "llm_totals": dict(self.totals)}
        # the conversation goes with the round's first trial only; every trial carries the
        # counters and guidelines, so --resume restores them from the newest one
        props = [Proposal(p, "llm", copy.deepcopy({**snap, **(extra if j == 0 else {})})) for j, p in enumerate(good)]
        props += [Proposal(p, "fill", copy.deepcopy({**snap, **(extra if not props and j == 0 else {})}))
                  for j, p in enumerate(fills)]
        return props

    def replay_history(self, trials: list[CTrial]) -> None:
        for t in trials:
            self.tell(t)
        for t in reversed(trials):
            if "counters" in t.extra:
                self.counters.update({k: int(v) for k, v in t.extra["counters"].items() if k in self.counters})
                self.totals.update(t.extra.get("llm_totals", {}))
                self.guidelines = [str(g) for g in t.extra.get("guidelines", [])]
                self.rounds = int(t.extra.get("round", 0)) + 1
                break

    def over_budget(self) -> list[CTrial]:
        """The agent's own proposals that the replay measured over budget."""
        return [t for t in self.history if t.source == "llm" and not t.feasible]

    def state(self) -> dict[str, Any]:
        return {"llm_wall_s": self.totals["wall_s"],
                "llm_tokens": self.totals["prompt_tokens"] + self.totals["completion_tokens"],
                "counters": {**self.counters, "over_budget": len(self.over_budget())},
                "guidelines": list(self.guidelines), "round": self.rounds, "llm_model": self.settings.model,
                "llm_endpoint": self.settings.endpoint}

    # ---- one consultation

    def consult(self, k: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": self.prompt(k)}]
        raw, feedback, good = [], [], []
        for turn in range(self.max_feedback + 1):
            reply = self.client.chat(messages, on_failure=self._endpoint_failure)
            self.counters["llm_calls"] += 1
            self.totals["prompt_tokens"] += reply.usage.get("prompt_tokens", 0)
            self.totals["completion_tokens"] += reply.usage.get("completion_tokens", 0)
            self.totals["wall_s"] += reply.wall_s
            raw.append(reply.text)
            try:
                guidelines, good, problems = self.parse(reply.text, k)
                self.guidelines = guidelines
            except AnswerProblem as p:
                good, problems = [], [p]
            for p in problems:
                self.counters[p.kind] += 1
            if not problems or turn == self.max_feedback:
                break  # bounded: keep what was usable in the last answer
            self.counters["retries"] += 1
            text = FEEDBACK.format(problems="\n".join(f"- {p.message}" for p in problems))
            feedback.append(text)
            messages = messages + [{"role": "assistant", "content": reply.text}, {"role": "user", "content": text}]
        record = {"prompt": messages[1]["content"], "raw_answers": raw, "feedback": feedback}
        return good, record

    def parse(self, text: str, k: int) -> tuple[list[str], list[dict[str, Any]], list[AnswerProblem]]:
        """Strict validation. Raises AnswerProblem when the answer as a whole is unusable;
        returns (guidelines, usable trials, problems with single trials)."""
        body = strip_wrapping(text)
        try:
            obj = json.loads(body)
        except json.JSONDecodeError as e:
            raise AnswerProblem("malformed_json", f"the answer is not valid JSON ({e.msg} at line {e.lineno} "
                                f"column {e.colno}); expected one JSON object") from None
        if not isinstance(obj, dict):
            raise AnswerProblem("malformed_json", f"expected one JSON object, got a JSON {type(obj).__name__}")
        if set(obj) != {"guidelines", "trials"}:
            raise AnswerProblem("schema_errors", f"the object must have exactly the fields 'guidelines' and 'trials', "
                                f"got {sorted(obj)}")
        g, trials = obj["guidelines"], obj["trials"]
        if not isinstance(g, list) or not all(isinstance(x, str) for x in g):
            raise AnswerProblem("schema_errors", "'guidelines' must be a list of strings")
        if not isinstance(trials, list) or not trials:
            raise AnswerProblem("schema_errors", "'trials' must be a non-empty list of objects")
        names = [p.name for p in self.space.dims]
        tried = {key(t.params) for t in self.history}
        good, problems, dups = [], [], []
        for n, t in enumerate(trials, 1):
            try:
                params = self._trial(t, n, names)
            except AnswerProblem as p:
                problems.append(p)
                continue
            if key(params) in tried or key(params) in {key(x) for x in good}:
                dups.append(json.dumps(params))
                continue
            good.append(params)
        self.counters["duplicates"] += len(dups)  # dropped quietly while other trials are usable
        if dups and not good and not problems:
            problems.append(AnswerProblem("duplicate_answers", f"every proposed trial was already tried ({'; '.join(dups)}); "
                                          "propose points that are not in the archive"))
        return [x.strip() for x in g if x.strip()][:MAX_LIST], good[:k], problems

    def _trial(self, t: Any, n: int, names: list[str]) -> dict[str, Any]:
        if not isinstance(t, dict):
            raise AnswerProblem("schema_errors", f"trial {n}: expected an object of parameters, got {json.dumps(t)}")
        if set(t) != set(names):
            raise AnswerProblem("schema_errors", f"trial {n}: must name exactly the parameters {names}, got {sorted(t)}")
        params = {}
        for p in self.space.dims:
            v = t[p.name]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise AnswerProblem("schema_errors", f"trial {n}: {p.name} must be a number, got {json.dumps(v)}")
            if p.integer and not isinstance(v, int):
                raise AnswerProblem("schema_errors", f"trial {n}: {p.name} must be a JSON integer, got {json.dumps(v)}")
            lo, hi = p.search_range
            if not lo <= v <= hi:
                raise AnswerProblem("out_of_range", f"trial {n}: {p.name} = {v} is outside [{lo:g}, {hi:g}]")
            params[p.name] = int(v) if p.integer else float(v)
        if not self.space.contains(params):
            raise AnswerProblem("out_of_range", f"trial {n}: {json.dumps(params)} is not a valid setting of "
                                f"controller {self.space.controller.name!r}")
        return params

    # ---- the prompt

    def prompt(self, k: int) -> str:
        sp = self.space
        names = [p.name for p in sp.dims]
        lines = ["## Task", sp.describe()]
        if self.trials is not None:
            lines.append(f"Trials left in this search: {max(0, self.trials - len(self.history))}.")
        lines += ["", "## Archive of trials"]
        ok = [t for t in self.history if t.feasible and t.score is not None]
        best = max(ok, key=lambda t: (t.score, -t.tokens)) if ok else None
        if not self.history:
            lines.append("(no trials yet: spread the first ones over the ranges)")
        else:
            lines.append(" | ".join(["#", *names, "accuracy (+- stderr)", "mean tokens", "samples opened", "source"]))
            for t in self.history:
                acc = (f"{t.score:.3f} +- {t.stderr:.3f}" if t.feasible and t.score is not None
                       else "OVER BUDGET: no score")
                cells = [str(t.number), *(_fmt(t.params[n]) for n in names), acc, f"{t.tokens:,.0f}",
                         f"{t.opened:.2f}", t.source or "-"]
                lines.append(" | ".join(cells) + ("   <- best so far" if t is best else ""))
        last = [t for t in self.over_budget() if t.extra.get("round") == self.rounds - 1]
        if last:
            lines += ["", "## Feedback on your last proposals"]
            lines += [f"- trial {t.number} ({json.dumps(t.params)}) used {t.tokens:,.0f} mean tokens per question, "
                      f"over the budget of {sp.budget_tokens:,.0f}: it has no score" for t in last]
        lines += ["", "## Current guidelines"] + ([f"- {g}" for g in self.guidelines] or ["(none yet: write them from the archive)"])
        lines += ["", "## Instructions",
                  "1. Update the guidelines from the archive: which parameters matter, how each moves accuracy and "
                  "mean tokens, and where the best lies within the budget.",
                  f"2. Propose {k} new point(s), not in the archive, likely to beat the best so far with mean "
                  "tokens within the budget.",
                  "", "## Answer format",
                  "Exactly one JSON object, no prose, no code fences, with exactly these fields:",
                  '{"guidelines": [<string>, ...], "trials": [{' + ", ".join(
                      f'"{p.name}": <{"integer" if p.integer else "number"} in [{p.search_range[0]:g}, {p.search_range[1]:g}]>'
                      for p in sp.dims) + "}, ...]}",
                  f"Example of the shape (not a recommendation): {json.dumps({'guidelines': ['...'], 'trials': [self._example()]})}"]
        return "\n".join(lines)

    def _example(self) -> dict[str, Any]:
        out = {}
        for p in self.space.dims:
            lo, hi = p.search_range
            d = min(max(p.default if p.default is not None else (lo + hi) / 2, lo), hi)
            out[p.name] = int(round(d)) if p.integer else float(d)
        return out

    # ---- helpers

    def fill(self, n: int, exclude: set[tuple]) -> list[dict[str, Any]]:
        taken = {key(t.params) for t in self.history} | exclude
        out: list[dict[str, Any]] = []
        for _ in range(200 * max(n, 1)):
            if len(out) >= n:
                break
            p = self.space.sample(self.rng)
            if key(p) not in taken:
                taken.add(key(p))
                out.append(p)
        return out

    def _endpoint_failure(self, line: str) -> None:
        self.counters["endpoint_failures"] += 1


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _int(options: dict, name: str, default: int, lo: int) -> int:
    v = options.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ConfigError(f"--{name.replace('_', '-')}", f"must be an integer >= {lo}, got {v!r}")
    return v
