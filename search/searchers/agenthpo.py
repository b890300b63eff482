"""AgentHPO baseline: an LLM proposes configurations from the history of trials and their scores.

A plain hyperparameter-optimisation prompt (Liu et al., AgentHPO): the task, the full history,
"propose K better configurations"; no test-time-scaling insights, no initialisation design, no
guidelines carried between rounds. The replay plays the Executor that runs each trial. The
answer is {"analysis": "...", "trials": [...]} in strict JSON, with the feedback, retry and fill
policy shared by every LLM searcher (search/llm/agent.py).
"""

from __future__ import annotations

from typing import Any

from ..llm import prompts
from ..llm.agent import LLMSearcher
from ..protocol import Proposal

FIELDS = {"analysis": "string", "trials": "trials"}


class AgentHPOSearcher(LLMSearcher):
    name = "agenthpo"

    def __init__(self, space, seed: int = 0, **options: Any):
        super().__init__(space, seed, **options)
        self.analysis = ""

    def ask(self) -> list[Proposal]:
        k = self.want()
        user = "\n\n".join([
            prompts.space_section(self.space, self.cost if self.estimate else None, self.trials_left()),
            prompts.archive_section(self.history, self.space.stages, title="## History of trials", show_source=False),
            "## Instructions\n" + prompts.AGENTHPO_TASK.format(k=k),
            prompts.format_section(self.space, FIELDS, k),
        ])
        result = self.consult(prompts.AGENTHPO_SYSTEM, user, FIELDS, k)
        if result.answer is not None:
            self.analysis = result.answer.fields["analysis"]
        trials = list(result.trials)
        out = self.proposals(trials, "llm", result.record)
        if len(trials) < k:
            out += self.proposals(self.fill(k - len(trials), exclude=set(trials)), "fill", result.record)
        return out

    def state(self) -> dict[str, Any]:
        return {**super().state(), "analysis": self.analysis}

    def _restore(self, extra: dict[str, Any]) -> None:
        self.analysis = str(extra.get("analysis", ""))
