"""Discover: an LLM agent writes width-depth controller programs; the replay judges each one,
sandboxed, and execution traces tell the agent why it scored as it did (AutoTTS's discovery
loop, on this framework's one runner, archive and consult loop). Space: `program`
(search/spaces/program.py); prompts and answer reading: search/discovery/prompts.py;
docs/discovery.md.

Every round is one trial: the agent's program if it passed the static checks (source "llm");
else the last program it wrote, archived with its failed checks and not run ("llm-rejected"),
or run again if it was one tried already ("llm-repeat"); else an empty program ("llm-empty":
the answer held no code). So the archive keeps every round,
and an agent that keeps failing slows the search down but never ends it early.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..discovery import prompts as dp
from ..discovery.checks import check_program
from ..discovery.evaluate import Program, trace_on_request
from ..llm.agent import LLM_OPTIONS, LLMSearcher
from ..llm.answer import Answer, AnswerProblem
from ..protocol import Proposal
from ..spaces.base import Space

FIELDS = {"plan": "string", "trials": "trials"}
BEST_SHOWN = 3  # best programs listed in the prompt (the best one with its source)
HISTORY_SHOWN = 30  # programs listed one per line


class DiscoverSearcher(LLMSearcher):
    name: ClassVar[str] = "discover"
    needs: ClassVar[frozenset[str]] = frozenset({"programs"})
    options_accepted: ClassVar[frozenset[str]] = LLM_OPTIONS - {"trials_per_round"}

    def __init__(self, space: Space, *, seed: int = 0, trials: int | None = None, **options: Any):
        super().__init__(space, seed=seed, trials=trials, **options)
        self.per_round = 1  # one program per round
        self.rounds = 0

    # ---- the protocol

    def ask(self) -> list[Proposal]:
        result = self.consult(dp.SYSTEM, self.prompt(), FIELDS, 1)
        record = {**result.record, "round": self.rounds,
                  "plan": result.answer.fields.get("plan", "") if result.answer is not None else ""}
        self.rounds += 1
        if result.trials:
            return self.proposals([result.trials[0]], "llm", record)
        if result.answer is not None and result.answer.trials:
            p = result.answer.trials[0]  # failed the checks, or a program tried already
            return self.proposals([p], "llm-repeat" if self.tried(p) else "llm-rejected", record)
        return self.proposals([Program("", note="no program in the answer")], "llm-empty", record)

    def state(self) -> dict[str, Any]:
        return {**super().state(), "rounds": self.rounds}  # rounds done (the record's "round": this one's index)

    def _restore(self, extra: dict[str, Any]) -> None:
        self.rounds = int(extra.get("rounds", 0))

    # ---- reading answers (code, not JSON) and answering trace requests

    def parse(self, text: str, fields: dict[str, str]) -> Answer:
        code, requests = dp.extract_program(text)
        if code is None:
            if requests:
                raise AnswerProblem("trace_requests", self._traces(requests))
            raise AnswerProblem("no_program", "no ```python code block defining a controller class was found in "
                                              "your answer")
        rep = check_program(code, max_chars=self.space.ctx.max_chars)
        plan = text[:text.find("```")].strip() if "```" in text else ""
        return Answer(fields={"plan": plan[:2000]}, trials=(Program(code, rep.class_name or "", tuple(requests)),))

    def answer_schema(self, fields: dict[str, str], k: int) -> None:
        return None  # the agent answers with a code block: no JSON response format

    def feedback_text(self, problems: list[AnswerProblem]) -> str:
        if problems and all(p.kind == "trace_requests" for p in problems):
            return dp.FEEDBACK_TRACES.format(traces="\n\n".join(p.message for p in problems))
        return dp.FEEDBACK_REJECTED.format(problems="\n".join(f"- {p.message}" for p in problems))

    def _traces(self, requests: list[str]) -> str:
        ran = [t for t in self.history if t.metrics.get("curve") and t.metrics.get("operating_beta") is not None]
        if not ran:
            return "No program has run yet, so there is nothing to trace: write one."
        last = ran[-1]
        beta = last.metrics["operating_beta"]
        params = next(c["params"] for c in last.metrics["curve"] if c["beta"] == beta)
        sp = self.space
        q, R, seed = sp.train_key
        return trace_on_request(last.point, sp.ctx, params, requests, list(q), seed, sp.question_ids,
                                replicates=min(R, 4))

    # ---- the prompt

    def prompt(self) -> str:
        sp = self.space
        sections = [sp.task_text(), sp.protocol_text()]
        ran = [t for t in self.history if t.feasible]
        if not any(t.metrics.get("curve") for t in self.history):
            from ..discovery.seeds import ADAPTIVE

            sections.append(dp.EXAMPLE.format(source=ADAPTIVE))
        if ran:
            best = sorted(ran, key=lambda t: (-t.score, t.cost, t.number))[:BEST_SHOWN]
            lines = ["## Best programs so far"]
            for k, t in enumerate(best):
                curve = [dp.CurvePoint.from_json(c) for c in t.metrics.get("curve") or []]
                lines.append(f"- trial {t.number} {t.label}: score {t.score:.4f} at {t.cost:,.0f} tokens; curve "
                             + dp.curve_text(curve, 4))
            lines.append(f"The best one (trial {best[0].number}):\n```python\n{best[0].point.source.rstrip()}\n```")
            sections.append("\n".join(lines))
        if self.history:
            t = self.history[-1]
            head = (f"## Feedback on your last program (trial {t.number}, {t.label}, "
                    f"{t.metrics.get('status', '?')})")
            sections.append(head + "\n" + str(t.metrics.get("feedback") or "(none)"))
            lines = ["## All programs so far"]
            for t in self.history[-HISTORY_SHOWN:]:
                if t.feasible:
                    what = f"score {t.score:.4f} at {t.cost:,.0f} tokens"
                else:
                    what = f"{t.metrics.get('status')}: {str(t.metrics.get('error') or t.metrics.get('why') or '')[:160]}"
                lines.append(f"- trial {t.number} {t.label}: {what}")
            sections.append("\n".join(lines))
        sections.append(dp.ANSWER_FORMAT)
        return "\n\n".join(sections)
