"""AgentHPO baseline: an LLM proposes points from the history of trials and their scores.

A plain hyperparameter-optimisation prompt (Liu et al., AgentHPO): the task, the full history,
"propose K better configurations"; no test-time-scaling insights, no initialisation design, no
guidelines carried between rounds. The replay plays the Executor that runs each trial. The
answer is {"analysis": "...", "trials": [...]} in strict JSON, with the feedback, retry and fill
policy shared by every LLM searcher (search/llm/agent.py). Written against the space protocol:
it runs on every space.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..llm import prompts
from ..llm.agent import LLMSearcher
from ..protocol import Proposal
from ..spaces.base import Space

FIELDS = {"analysis": "string", "trials": "trials"}


class AgentHPOSearcher(LLMSearcher):
    name: ClassVar[str] = "agenthpo"

    def __init__(self, space: Space, *, seed: int = 0, trials: int | None = None, **options: Any):
        super().__init__(space, seed=seed, trials=trials, **options)
        self.analysis = ""

    def ask(self) -> list[Proposal]:
        k = self.want()
        user = "\n\n".join([
            prompts.task_section(self.space, self.trials_left()),
            prompts.archive_section(self.history, self.space, title="## History of trials", show_source=False),
            "## Instructions\n" + prompts.AGENTHPO_TASK.format(k=k),
            prompts.format_section(self.space, FIELDS, k),
        ])
        result = self.consult(prompts.AGENTHPO_SYSTEM, user, FIELDS, k)
        if result.answer is not None:
            self.analysis = result.answer.fields["analysis"]
        return self.round_of_proposals(result, k)

    def state(self) -> dict[str, Any]:
        return {**super().state(), "analysis": self.analysis}

    def _restore(self, extra: dict[str, Any]) -> None:
        self.analysis = str(extra.get("analysis", ""))
