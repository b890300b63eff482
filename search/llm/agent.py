"""What every LLM searcher shares: settings, the client, the one consult loop, counters, fills.

`consult` is the only place an LLM is asked anything. It sends a prompt and gets a validated
answer. A malformed answer (bad JSON, schema mismatch), a point the space refuses (an unknown
model, a disallowed sample count, a value out of range: `space.answer_problems`), a point over
budget by the space's estimate, or an answer whose every point was already tried goes back to
the agent with the reasons, up to `max_feedback` times (default 3). Every such event is
counted. If the agent still has not given enough usable points, the rest are filled with
untried neighbours of the best trial, then random points (source "fill", counted), so that a
weak model slows the search down but never stops it; how much the LLM contributed is counted
(`usable_answers` of `llm_calls`; each trial's source, "llm" or "fill") and shown in every
summary (search/report.py). Endpoint failures are the client's business (search/llm/client.py):
they are counted here, and an endpoint that stays down (or keeps answering with something that
is not the API's: an HTML page, no choices, a broken body) raises `LLMUnavailable`, never a
made-up proposal. A conversation over the model's context is shortened, not given up
(`_Overflow`).

Everything here is written against the space protocol: the prompts' sections come from the
space (search/llm/prompts.py), so every LLM searcher runs on every space that lets an agent
write its points.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar

from replay.errors import ConfigError

from ..protocol import Proposal, Searcher, Trial
from ..spaces.base import Space
from . import prompts
from .answer import Answer, AnswerProblem, answer_schema, parse_answer
from .client import LLMClient, LLMContextOverflow, LLMRejected, LLMSettings

# Options every LLM searcher takes (the runner rejects others); subclasses add their own.
LLM_OPTIONS = frozenset({
    "llm_base_url", "llm_model", "llm_api_key", "llm_timeout_s", "llm_retries", "llm_backoff_s", "llm_backoff_max_s",
    "llm_temperature", "llm_max_tokens", "llm_json_mode", "llm_structured", "llm_max_answer_chars", "trials_per_round",
    "max_feedback",
})


def counter_names(space: Space) -> tuple[str, ...]:
    """The counters of one search: every answer problem, the space's kinds among them."""
    return ("llm_calls", "usable_answers", "malformed_json", "oversized_answers", "schema_errors",
            *space.answer_problem_kinds, "over_budget", "duplicates", "duplicate_answers", "retries",
            "endpoint_failures", "context_overflows", "fills")


@dataclass(frozen=True)
class Consultation:
    answer: Answer | None  # the last answer that parsed (None if none did)
    trials: tuple[Any, ...]  # usable points: valid, within budget by estimate, untried
    record: dict[str, Any]  # prompt, raw answers, feedback, usage: archived with the trials


class LLMSearcher(Searcher):
    """Base of the LLM searchers. Parameters (options, docs/agenttts.md):
        llm_base_url, llm_model, llm_api_key, llm_timeout_s, llm_retries, llm_backoff_s,
        llm_backoff_max_s, llm_temperature, llm_max_tokens, llm_structured (llm_json_mode, the
            older switch: json-object), llm_max_answer_chars: the endpoint and the client's
            policy and bounds (search/llm/client.py: LLMSettings).
        trials_per_round: points asked for per round (3).
        max_feedback: rejected answers sent back per round, at most (3).
    """

    uses_llm: ClassVar[bool] = True
    options_accepted: ClassVar[frozenset[str]] = LLM_OPTIONS

    def __init__(self, space: Space, *, seed: int = 0, trials: int | None = None, **options: Any):
        """`options`: LLM_OPTIONS (the runner has checked the names against options_accepted)."""
        super().__init__(space, seed=seed, trials=trials)
        self.settings = LLMSettings.from_options(options, self.name)  # raises before any trial
        self.per_round = _positive(options, "trials_per_round", 3)
        self.max_feedback = _positive(options, "max_feedback", 3, lo=0)
        self.client = LLMClient(self.settings)
        self.counters = {k: 0 for k in counter_names(space)}
        self.totals = {"prompt_tokens": 0, "completion_tokens": 0, "wall_s": 0.0}

    # ---- the protocol

    def state(self) -> dict[str, Any]:
        return {
            # cumulative LLM accounting, read by the report
            "llm_wall_s": self.totals["wall_s"],
            "llm_tokens": self.totals["prompt_tokens"] + self.totals["completion_tokens"],
            "counters": dict(self.counters),
            "infeasible_trials": sum(1 for t in self.history if not t.feasible),
            "llm_totals": dict(self.totals),
            "llm_model": self.settings.model,
            "llm_endpoint": self.settings.endpoint,  # credentials masked
            "llm_structured": self.client.structured,  # the response format in use (auto: the one that worked)
            **({"llm_structured_notes": list(self.client.structured_notes)} if self.client.structured_notes else {}),
        }

    def replay_history(self, trials: list[Trial]) -> None:
        """Tell every archived trial, then restore counters, token totals and the searcher's own
        material (guidelines, knowledge) from the newest trial that carries them."""
        for t in trials:
            self.tell(t)
        for t in reversed(trials):
            if isinstance(t.extra, dict) and "counters" in t.extra:
                self.counters.update({k: int(v) for k, v in t.extra["counters"].items() if k in self.counters})
                self.totals.update(t.extra.get("llm_totals", {}))
                self._restore(t.extra)
                break

    def _restore(self, extra: dict[str, Any]) -> None:
        """Subclasses restore their own state (e.g. guidelines) from an archived trial's extra."""

    # ---- helpers for subclasses

    def want(self) -> int:
        """How many trials to ask for this round (fewer near the end of the trial budget)."""
        left = self.trials_left()
        return self.per_round if left is None else max(1, min(self.per_round, left))

    def affordable(self, point: Any) -> bool:
        """Worth a trial: not over budget by more than the space's estimate slack (none where
        the estimate is the budget rule; unknown estimate: yes)."""
        return self.space.maybe_feasible(point)

    def consult(self, system: str, user: str, fields: dict[str, str], k: int = 0) -> Consultation:
        """Ask, validate, feed problems back (bounded), return the usable part of the answer.

        The answer's JSON schema goes with every request (structured outputs, where the endpoint
        takes them: search/llm/client.py). A conversation over the model's context is shortened
        and asked again (`_shorter`): feedback turns first, then the archive tables."""
        schema = self.answer_schema(fields, k)
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        prompt = prompts.render(messages)
        raw, feedback = [], []
        usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        wall = 0.0
        answer, usable = None, ()
        overflow = _Overflow(system, user)
        turn = 0
        while True:
            try:
                reply = self.client.chat(messages, on_failure=self._endpoint_failure, schema=schema)
            except LLMContextOverflow as e:
                self.counters["context_overflows"] += 1
                messages = overflow.shorter(messages, e)
                continue
            self.counters["llm_calls"] += 1
            for key in usage:
                usage[key] += reply.usage.get(key, 0)
            self.totals["prompt_tokens"] += reply.usage.get("prompt_tokens", 0)
            self.totals["completion_tokens"] += reply.usage.get("completion_tokens", 0)
            self.totals["wall_s"] += reply.wall_s
            wall += reply.wall_s
            raw.append(reply.text)
            if reply.cut:
                problems = [AnswerProblem("oversized_answers", f"the answer was {reply.cut:,} characters long, over "
                                          f"the limit of {self.settings.max_answer_chars:,}; answer with one short JSON object")]
            else:
                try:
                    parsed = self.parse(reply.text, fields)
                    problems = []
                    if "trials" in fields.values():
                        good, problems = self._check(parsed.trials)
                        good = good[:k] if k else good
                    else:
                        good = ()
                    answer, usable = parsed, good
                except AnswerProblem as p:
                    if reply.finish_reason == "length" and p.kind == "malformed_json":
                        p = AnswerProblem(p.kind, f"{p.message}; the answer stopped at the limit of "
                                          f"{self.settings.max_tokens} tokens: write a shorter one")
                    problems = [p]
            for p in problems:
                self.counters[p.kind] += 1
            if not problems:
                self.counters["usable_answers"] += 1
                break
            if turn == self.max_feedback:
                break  # bounded: keep what was usable in the last answer that parsed
            turn += 1
            self.counters["retries"] += 1
            text = self.feedback_text(problems)
            feedback.append(text)
            messages = messages + [{"role": "assistant", "content": prompts.echo(reply.text)},
                                   {"role": "user", "content": text}]
        record = {
            "llm_call": self.counters["llm_calls"],
            "prompt": prompt,
            "raw_answer": raw[-1],
            "raw_answers": raw,
            "feedback": feedback,
            "call_usage": usage,
            "call_wall_s": wall,
            "structured": self.client.structured,
        }
        if overflow.events:
            record["context_overflows"] = overflow.events
        return Consultation(answer=answer, trials=tuple(usable), record=record)

    def proposals(self, points, source: str, record: dict[str, Any] | None = None) -> list[Proposal]:
        """Wrap points with everything the archive should keep (deep-copied: frozen in time).
        The cumulative llm_wall_s / llm_tokens stay out of `extra` (they are in state(), under
        llm_totals here) so that summing extras over trials cannot double count."""
        state = {k: v for k, v in self.state().items() if k not in ("llm_wall_s", "llm_tokens")}
        extra = copy.deepcopy({**(record or {}), **state})
        return [Proposal(p, source=source, extra=extra) for p in points]

    def fill(self, n: int, exclude=()) -> list[Any]:
        """Up to n untried points within budget (by estimate): neighbours of the best trial
        first (`space.neighbours`), then random ones (`space.sample`)."""
        key = self.space.key
        taken = set(self._tried) | {key(p) for p in exclude}
        out: list[Any] = []

        def take(p) -> bool:
            if key(p) not in taken and self.space.contains(p) and self.affordable(p):
                taken.add(key(p))
                out.append(p)
            return len(out) >= n

        best = self.best()
        if best is not None and n > 0:
            for p in self.space.neighbours(best.point):
                if take(p):
                    break
        for _ in range(200 * max(n, 1)):
            if len(out) >= n:
                break
            take(self.space.sample(self.rng))
        self.counters["fills"] += len(out)
        return out

    def round_of_proposals(self, result: Consultation, k: int) -> list[Proposal]:
        """The agent's usable points (source "llm"), completed to k with fills."""
        trials = list(result.trials)
        out = self.proposals(trials, "llm", result.record)
        if len(trials) < k:
            out += self.proposals(self.fill(k - len(trials), exclude=trials), "fill", result.record)
        return out

    # ---- what a searcher may change about the consult loop

    def parse(self, text: str, fields: dict[str, str]) -> Answer:
        """The answer in `text` (default: strict JSON, search/llm/answer.py). Raises
        AnswerProblem. A searcher whose agent answers otherwise (code, for programs) overrides it."""
        return parse_answer(text, fields, self.space)

    def answer_schema(self, fields: dict[str, str], k: int) -> dict | None:
        """The answer's JSON schema for structured outputs (None: the answer is not JSON, and no
        response format is sent)."""
        return answer_schema(fields, self.space, k)

    def feedback_text(self, problems: list[AnswerProblem]) -> str:
        """The message that sends problems back to the agent within a round."""
        return prompts.FEEDBACK.format(problems="\n".join(f"- {p.message}" for p in problems))

    # ---- internals

    def _endpoint_failure(self, line: str) -> None:
        self.counters["endpoint_failures"] += 1

    def _check(self, points: tuple[Any, ...]) -> tuple[tuple[Any, ...], list[AnswerProblem]]:
        sp = self.space
        good, problems, seen, dups = [], [], set(), []
        for k, p in enumerate(points, 1):
            bad = sp.answer_problems(p, f"trial {k}")
            if bad:
                problems += bad
                continue
            if not self.affordable(p):
                c = sp.estimate_cost(p)
                problems.append(AnswerProblem("over_budget", f"trial {k} ({sp.label(p)}): estimated cost {c:.4g} "
                                              f"{sp.cost_unit} exceeds the budget of {sp.budget:.4g} {sp.cost_unit}"))
                continue
            if self.tried(p) or sp.key(p) in seen:
                dups.append(sp.label(p))
                continue
            seen.add(sp.key(p))
            good.append(p)
        self.counters["duplicates"] += len(dups)  # dropped quietly while other trials are usable
        if dups and not good and not problems:
            problems.append(AnswerProblem("duplicate_answers", f"every proposed trial was already tried ({'; '.join(dups)}); propose trials that are not in the archive"))
        return tuple(good), problems


def _positive(options: dict, key: str, default: int, lo: int = 1) -> int:
    value = options.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ConfigError(f"--{key.replace('_', '-')}", f"must be an integer >= {lo}, got {value!r}")
    return value


class _Overflow:
    """How one consultation shortens a conversation that is over the model's context, one step
    per overflow: (1) keep only the last feedback exchange, its echoed answer cut short; (2) drop
    the feedback; (3) cut the archive tables of the first prompt to the best and the last
    32, 16, ..., 1, 0 trials (`prompts.shorten_archive`). When nothing is left to cut, the
    prompt without any trial is still too long: LLMRejected (serve the model with a longer
    context, or lower --llm-max-tokens, which the server reserves within it)."""

    KEEPS = (32, 16, 8, 4, 2, 1, 0)
    SHORT_ECHO = 300

    def __init__(self, system: str, user: str):
        self.system = system
        self.user = user
        self.keeps = list(self.KEEPS)
        self.events: list[str] = []

    def shorter(self, messages: list[dict[str, str]], error: LLMContextOverflow) -> list[dict[str, str]]:
        base = messages[:2]
        if len(messages) > 2:
            last = messages[-2:]
            if len(messages) > 4 or len(last[0]["content"]) > self.SHORT_ECHO:
                self.events.append(f"{len(messages) - 2} feedback message(s) cut to the last exchange")
                return base + [{"role": "assistant", "content": prompts.echo(last[0]["content"], self.SHORT_ECHO)}, last[1]]
            self.events.append("feedback dropped")
            return base
        while self.keeps:
            keep = self.keeps.pop(0)
            text, left_out = prompts.shorten_archive(self.user, keep)
            if left_out and text != base[1]["content"]:
                self.events.append(f"archive cut to the best and last {keep} trial(s) ({left_out} left out)")
                return [base[0], {"role": "user", "content": text}]
        raise LLMRejected(error.where, f"even the prompt without any trial is over the model's context "
                          f"({error.problem}); serve the model with a longer context or lower --llm-max-tokens") from None


def parse_ablate(value, known: tuple[str, ...], *, searcher: str = "") -> frozenset[str]:
    """`--ablate` (a comma list, or a sequence) as a set of names from `known`; an unknown one is
    a ConfigError (naming `searcher` when given)."""
    if value is None or value == "" or value == ():
        return frozenset()
    items = value.split(",") if isinstance(value, str) else list(value)
    out = set()
    for item in items:
        item = str(item).strip().lower()
        if item and item not in known:
            who = f" for {searcher}" if searcher else ""
            raise ConfigError("--ablate", f"unknown ablation {item!r}{who} (known: {', '.join(known) or 'none in this space'})")
        if item:
            out.add(item)
    return frozenset(out)
