"""What every LLM searcher shares: settings, the client, the answer-feedback loop, counters.

`consult` sends a prompt and gets a validated answer. A malformed answer (bad JSON, schema
mismatch), an unknown model, a disallowed sample count, an over-budget trial, or an answer
whose every trial was already tried goes back to the agent with the reasons, up to
`max_feedback` times (default 3). Every such event is counted. If the agent still has not
given enough usable trials, the rest are filled with untried neighbours of the best trial
(source "fill", counted), so that a weak model slows the search down but never stops it.
Endpoint failures are the client's business (search/llm/client.py): they are counted here,
and an endpoint that stays down raises `LLMUnavailable`, never a made-up proposal.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable

from replay.engine import Config, StageChoice
from replay.errors import ConfigError

from .. import space as space_module
from ..protocol import Proposal, Searcher, Trial
from ..space import SearchSpace
from . import prompts
from .answer import Answer, AnswerProblem, parse_answer
from .client import LLMClient, LLMSettings

COUNTERS = ("llm_calls", "malformed_json", "schema_errors", "unknown_model", "invalid_samples", "over_budget",
            "duplicates", "duplicate_answers", "retries", "endpoint_failures", "fills")
# Proposals are refused as over budget only when their estimated cost exceeds the budget by more
# than the estimate's own scatter (the space's ESTIMATE_SLACK, as for every other searcher);
# closer calls go to the replay, whose measured cost decides feasibility.
SLACK = getattr(space_module, "ESTIMATE_SLACK", 0.05)
# Options every LLM searcher takes (the runner rejects others); subclasses add their own.
LLM_OPTIONS = frozenset({
    "llm_base_url", "llm_model", "llm_api_key", "llm_timeout_s", "llm_retries", "llm_backoff_s", "llm_backoff_max_s",
    "llm_temperature", "llm_max_tokens", "llm_json_mode", "trials_per_round", "max_feedback", "estimate_units",
    "store", "questions", "trials",
})


@dataclass(frozen=True)
class Consultation:
    answer: Answer | None  # the last answer that parsed (None if none did)
    trials: tuple[Config, ...]  # usable trials: valid, within budget by estimate, untried
    record: dict[str, Any]  # prompt, raw answers, feedback, usage: archived with the trials


class LLMSearcher(Searcher):
    uses_llm = True
    options_accepted = LLM_OPTIONS

    def __init__(self, space: SearchSpace, seed: int = 0, **options: Any):
        super().__init__(space, seed, **options)
        self.settings = LLMSettings.from_options(options, self.name)  # raises before any trial
        self.per_round = _positive(options, "trials_per_round", 3)
        self.max_feedback = _positive(options, "max_feedback", 3, lo=0)
        self.trial_budget = options.get("trials")
        self.estimate = _estimator(options, space)
        self._est_cache: dict[Config, float] = {}
        self.client = LLMClient(self.settings)
        self.counters = {k: 0 for k in COUNTERS}
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
            "llm_endpoint": self.settings.endpoint,
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
        if isinstance(self.trial_budget, int) and self.trial_budget > 0:
            return max(1, min(self.per_round, self.trial_budget - len(self.history)))
        return self.per_round

    def trials_left(self) -> int | None:
        if isinstance(self.trial_budget, int) and self.trial_budget > 0:
            return max(0, self.trial_budget - len(self.history))
        return None

    def cost(self, config: Config) -> float | None:
        if self.estimate is None:
            return None
        if config not in self._est_cache:
            self._est_cache[config] = float(self.estimate(config))
        return self._est_cache[config]

    def affordable(self, config: Config) -> bool:
        """Worth a trial: not over budget by more than the estimate's slack (unknown: yes)."""
        c = self.cost(config)
        return c is None or c <= self.space.budget * (1 + SLACK)

    def consult(self, system: str, user: str, fields: dict[str, str], k: int = 0) -> Consultation:
        """Ask, validate, feed problems back (bounded), return the usable part of the answer."""
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        prompt = prompts.render(messages)
        raw, feedback = [], []
        usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        wall = 0.0
        answer, usable = None, ()
        for turn in range(self.max_feedback + 1):
            reply = self.client.chat(messages, on_failure=self._endpoint_failure)
            self.counters["llm_calls"] += 1
            for key in usage:
                usage[key] += reply.usage.get(key, 0)
            self.totals["prompt_tokens"] += reply.usage.get("prompt_tokens", 0)
            self.totals["completion_tokens"] += reply.usage.get("completion_tokens", 0)
            self.totals["wall_s"] += reply.wall_s
            wall += reply.wall_s
            raw.append(reply.text)
            try:
                parsed = parse_answer(reply.text, self.space.stages, fields)
                problems = []
                if "trials" in fields.values():
                    good, problems = self._check(parsed.trials)
                    good = good[:k] if k else good
                else:
                    good = ()
                answer, usable = parsed, good
            except AnswerProblem as p:
                problems = [p]
            for p in problems:
                self.counters[p.kind] += 1
            if not problems:
                break
            if turn == self.max_feedback:
                break  # bounded: keep what was usable in the last answer that parsed
            self.counters["retries"] += 1
            text = prompts.FEEDBACK.format(problems="\n".join(f"- {p.message}" for p in problems))
            feedback.append(text)
            messages = messages + [{"role": "assistant", "content": reply.text}, {"role": "user", "content": text}]
        record = {
            "llm_call": self.counters["llm_calls"],
            "prompt": prompt,
            "raw_answer": raw[-1],
            "raw_answers": raw,
            "feedback": feedback,
            "call_usage": usage,
            "call_wall_s": wall,
        }
        return Consultation(answer=answer, trials=tuple(usable), record=record)

    def proposals(self, configs, source: str, record: dict[str, Any] | None = None) -> list[Proposal]:
        """Wrap configs with everything the archive should keep (deep-copied: frozen in time).
        The cumulative llm_wall_s / llm_tokens stay out of `extra` (they are in state(), under
        llm_totals here) so that summing extras over trials cannot double count."""
        state = {k: v for k, v in self.state().items() if k not in ("llm_wall_s", "llm_tokens")}
        extra = copy.deepcopy({**(record or {}), **state})
        return [Proposal(c, source=source, extra=extra) for c in configs]

    def fill(self, n: int, exclude: set[Config] = frozenset()) -> list[Config]:
        """Up to n untried configurations within budget (by estimate): neighbours of the best
        trial first (one stage's count or model changed), then random ones."""
        taken = {t.config for t in self.history} | set(exclude)
        out: list[Config] = []

        def take(c: Config) -> bool:
            if c not in taken and self.space.contains(c) and self.affordable(c):
                taken.add(c)
                out.append(c)
            return len(out) >= n

        best = self.best()
        if best is not None:
            for c in self._neighbours(best.config):
                if take(c):
                    break
        for _ in range(200 * max(n, 1)):
            if len(out) >= n:
                break
            take(self.random_config())
        self.counters["fills"] += len(out)
        return out

    def random_config(self) -> Config:
        choices = []
        for i in range(len(self.space.stages)):
            m = self.space.models[i][int(self.rng.integers(len(self.space.models[i])))]
            counts = self.space.counts[i][m]
            choices.append(StageChoice(m, int(counts[int(self.rng.integers(len(counts)))])))
        return Config(tuple(choices))

    # ---- internals

    def _endpoint_failure(self, line: str) -> None:
        self.counters["endpoint_failures"] += 1

    def _check(self, trials: tuple[Config, ...]) -> tuple[tuple[Config, ...], list[AnswerProblem]]:
        good, problems, seen, dups = [], [], set(), []
        tried = {t.config for t in self.history}
        for k, cfg in enumerate(trials, 1):
            bad = False
            for i, (st, ch) in enumerate(zip(self.space.stages, cfg.stages)):
                if ch.model not in self.space.models[i]:
                    problems.append(AnswerProblem("unknown_model", f"trial {k}: model {ch.model!r} is not a candidate of stage {st!r} (candidates: {', '.join(self.space.models[i])})"))
                    bad = True
                elif ch.samples not in self.space.counts[i][ch.model]:
                    problems.append(AnswerProblem("invalid_samples", f"trial {k}: stage {st!r}: {ch.samples} samples is not allowed for {ch.model} (allowed: {prompts._counts(self.space.counts[i][ch.model])})"))
                    bad = True
            if bad:
                continue
            c = self.cost(cfg)
            if not self.affordable(cfg):
                problems.append(AnswerProblem("over_budget", f"trial {k} ({cfg}): estimated cost {c:.4g} units exceeds the budget of {self.space.budget:.4g} units"))
                continue
            if cfg in tried or cfg in seen:
                dups.append(f"{cfg}")
                continue
            seen.add(cfg)
            good.append(cfg)
        self.counters["duplicates"] += len(dups)  # dropped quietly while other trials are usable
        if dups and not good and not problems:
            problems.append(AnswerProblem("duplicate_answers", f"every proposed trial was already tried ({'; '.join(dups)}); propose trials that are not in the archive"))
        return tuple(good), problems

    def _neighbours(self, config: Config):
        """Configs that differ from `config` in one stage: count one step either way, then a
        doubling/halving, then another model at the same count (or its nearest allowed)."""
        for i, ch in enumerate(config.stages):
            counts = sorted(self.space.counts[i][ch.model])
            j = counts.index(ch.samples) if ch.samples in counts else 0
            near = [counts[x] for x in (j - 1, j + 1) if 0 <= x < len(counts)]
            far = [min(counts, key=lambda n: abs(n - ch.samples * f)) for f in (2, 0.5)]
            for n in near + far:
                yield _replace(config, i, StageChoice(ch.model, n))
            for m in self.space.models[i]:
                if m != ch.model:
                    cm = self.space.counts[i][m]
                    yield _replace(config, i, StageChoice(m, min(cm, key=lambda n: abs(n - ch.samples))))


def _replace(config: Config, i: int, choice: StageChoice) -> Config:
    st = list(config.stages)
    st[i] = choice
    return Config(tuple(st))


def _positive(options: dict, key: str, default: int, lo: int = 1) -> int:
    value = options.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ConfigError(f"--{key.replace('_', '-')}", f"must be an integer >= {lo}, got {value!r}")
    return value


def _estimator(options: dict, space: SearchSpace) -> Callable[[Config], float] | None:
    """The cost estimate used to refuse over-budget proposals before they cost a trial: an
    `estimate_units` callable, a `store` (with optional `questions`) for the replay's own
    `estimate_units`, or the space's cost model. Without any, over-budget trials are caught by
    the replay instead (told with feasible=False and shown as INFEASIBLE in the next prompt)."""
    fn = options.get("estimate_units")
    if fn is not None:
        if not callable(fn):
            raise ConfigError("estimate_units", "must be a callable config -> units")
        return fn
    store = options.get("store")
    if store is not None:
        from replay.engine import estimate_units

        questions = options.get("questions")
        return lambda cfg: estimate_units(store, cfg, questions=questions)
    if getattr(space, "costs", None) is not None and hasattr(space, "estimate_units"):
        return space.estimate_units
    return None
