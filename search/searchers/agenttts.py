"""AgentTTS: an LLM agent that searches with guidelines, initialised and steered by insights.

1. Initialisation (no LLM): the space's `initial_points()`. On the configuration space, insight
   1: for each stage, every other stage fixed to its largest model with one sample, and each
   candidate model tried on the stage with as many samples as the stage's share of the budget
   allows. The agent turns these trials into per-stage model-preference guidelines and keeps
   them up to date.
2. Rounds: the prompt carries the task (the space's description), the archive (every trial,
   score, cost; per-stage scores and the fallback rate where the store has them), the agent's
   own infeasible proposals of the last round, the current guidelines, and the space's insights
   in every round, as in the paper (configurations: insight 1, model preference per stage;
   insight 2, find per stage the direction of the best sample count, more can hurt; insight 3,
   trade budget across stages).
   The agent answers {"guidelines": [...], "trials": [...]} in strict JSON (search/llm/answer.py).

`ablate`: the names of the space's insights to leave out, comma-separated ("insight1": a
random initialisation of the same size and no model-preference instruction in any round; "insight2",
"insight3": drop that instruction). Prompts live in search/llm/prompts.py; docs/agenttts.md
describes the whole loop.
"""

from __future__ import annotations

from typing import Any, ClassVar


from ..llm import prompts
from ..llm.agent import LLM_OPTIONS, LLMSearcher, parse_ablate
from ..protocol import Proposal
from ..spaces.base import Space

FIELDS = {"guidelines": "strings", "trials": "trials"}


class AgentTTSSearcher(LLMSearcher):
    name: ClassVar[str] = "agenttts"
    options_accepted: ClassVar[frozenset[str]] = LLM_OPTIONS | {"ablate"}

    def __init__(self, space: Space, *, seed: int = 0, trials: int | None = None, ablate=None, **options: Any):
        super().__init__(space, seed=seed, trials=trials, **options)
        self.brief = space.agent_brief()
        self.ablate = parse_ablate(ablate, tuple(i.name for i in self.brief.insights))
        self.guidelines: list[str] = []
        self.rounds = 0  # agent rounds done
        plan = space.initial_points()
        self.init_source = "init"
        if "insight1" in self.ablate:
            plan, self.init_source = self.random_plan(len(plan)), "init-random"
        self.init_plan = plan

    def random_plan(self, n: int) -> list[Any]:
        plan: list[Any] = []
        keys: set = set()
        for _ in range(200 * max(n, 1)):
            if len(plan) >= n:
                break
            p = self.space.sample(self.rng)
            if self.space.key(p) not in keys and self.affordable(p):
                keys.add(self.space.key(p))
                plan.append(p)
        return plan

    # ---- the protocol

    def ask(self) -> list[Proposal]:
        if self.rounds == 0:
            pending = [p for p in self.init_plan if not self.tried(p)]
            if pending:
                return self.proposals(pending, self.init_source)
        k = self.want()
        system = prompts.AGENTTTS_SYSTEM.format(role=self.brief.role)
        result = self.consult(system, self.prompt(k), FIELDS, k)
        if result.answer is not None and result.answer.fields.get("guidelines"):
            self.guidelines = list(result.answer.fields["guidelines"])
        self.rounds += 1
        return self.round_of_proposals(result, k)

    def prompt(self, k: int) -> str:
        steps = [i.text for i in self.brief.insights if i.name not in self.ablate]  # every round
        steps.append(prompts.AGENTTTS_TASK.format(k=k, hint=self.brief.guideline_hint))
        last = [t for t in self.history if t.source == "llm" and not t.feasible
                and t.extra.get("round") == self.rounds]
        sections = [
            prompts.task_section(self.space, self.trials_left()),
            prompts.archive_section(self.history, self.space),
            prompts.over_budget_section(last, self.space),
            prompts.list_section("## Current guidelines", self.guidelines, "(none yet: write them from the archive)"),
            "## Instructions\n" + "\n".join(f"{n}. {s}" for n, s in enumerate(steps, 1)),
            prompts.format_section(self.space, FIELDS, k),
        ]
        return "\n\n".join(s for s in sections if s is not None)

    def state(self) -> dict[str, Any]:
        return {**super().state(), "guidelines": list(self.guidelines), "round": self.rounds,
                "ablate": sorted(self.ablate)}

    def _restore(self, extra: dict[str, Any]) -> None:
        self.guidelines = [str(g) for g in extra.get("guidelines", [])]
        self.rounds = int(extra.get("round", 0))
