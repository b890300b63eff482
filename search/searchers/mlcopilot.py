"""MLCopilot baseline: propose from retrieved experience plus knowledge distilled by the LLM.

After Zhang et al. (MLCopilot): experience is a pool of solved configurations with their
scores; knowledge is a short list of rules an LLM distils from experience. Here the pool is
this search's own trials. Each round:

1. retrieve: the `k_best` best trials, then the `k_similar` trials nearest to the best one
   (per stage: another model counts 1, a count differs by |log2 ratio| / log2 of the largest
   count), so the agent sees both what works and how the score moves around it;
2. distil: whenever new trials arrived, one LLM call turns the whole history and the previous
   knowledge into at most `knowledge_items` rules ({"knowledge": [...]});
3. propose: one LLM call from the retrieved experience and the knowledge ({"trials": [...]}).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, ClassVar

from replay.errors import ConfigError

from ..llm import prompts
from ..llm.agent import LLM_OPTIONS, LLMSearcher, _positive
from ..protocol import Proposal, Trial
from ..spaces.config import ConfigSpace

KNOWLEDGE = {"knowledge": "strings"}
PROPOSE = {"trials": "trials"}


class MLCopilotSearcher(LLMSearcher):
    name: ClassVar[str] = "mlcopilot"
    options_accepted: ClassVar[frozenset[str]] = LLM_OPTIONS | {"k_best", "k_similar", "knowledge_items"}
    # Written for models and counts per stage; on other spaces (collaboration graphs) the
    # knowledge is about what the space's brief names, and `distance` counts the parts two
    # points do not share (search/searchers/mlcopilot.py `part_distance`).
    space: ConfigSpace

    def __init__(self, space: ConfigSpace, *, seed: int = 0, trials: int | None = None, **options: Any):
        if not {"stages", "graphs"} & space.supports:
            raise ConfigError("--searcher", f"'mlcopilot' does not apply to --space {space.kind}: it needs a model and a "
                              "sample count per stage, or collaboration graphs")
        self.k_best = _positive(options, "k_best", 3)
        self.k_similar = _positive(options, "k_similar", 3, lo=0)
        self.knowledge_items = _positive(options, "knowledge_items", 5)
        llm = {k: v for k, v in options.items() if k not in ("k_best", "k_similar", "knowledge_items")}
        super().__init__(space, seed=seed, trials=trials, **llm)
        self.knowledge: list[str] = []
        self.distilled_at = 0  # number of trials the current knowledge was distilled from

    def ask(self) -> list[Proposal]:
        k = self.want()
        task = prompts.task_section(self.space, self.trials_left())
        record: dict[str, Any] = {}
        if len(self.history) > self.distilled_at:
            user = "\n\n".join([
                task,
                prompts.archive_section(self.history, self.space, title="## Experience (every trial so far)", show_source=False),
                prompts.list_section("## Current knowledge", self.knowledge, "(none yet)"),
                "## Instructions\n" + self.knowledge_task(),
                prompts.format_section(self.space, KNOWLEDGE, k),
            ])
            res = self.consult(prompts.MLCOPILOT_SYSTEM, user, KNOWLEDGE)
            if res.answer is not None and res.answer.fields["knowledge"]:
                self.knowledge = res.answer.fields["knowledge"][: self.knowledge_items]
            self.distilled_at = len(self.history)
            record["knowledge_call"] = res.record
        user = "\n\n".join([
            task,
            prompts.archive_section(self.retrieve(), self.space, title="## Retrieved experience (best trials and their neighbours)",
                                    empty="(no experience yet: start from the task description)", show_source=False),
            prompts.list_section("## Knowledge", self.knowledge, "(none yet)"),
            "## Instructions\n" + prompts.MLCOPILOT_PROPOSE_TASK.format(k=k),
            prompts.format_section(self.space, PROPOSE, k),
        ])
        res = self.consult(prompts.MLCOPILOT_SYSTEM, user, PROPOSE, k)
        record.update(res.record)
        return self.round_of_proposals(replace(res, record=record), k)

    def retrieve(self) -> list[Trial]:
        ok = [t for t in self.history if t.feasible and t.score is not None]
        if not ok:
            return []
        ranked = sorted(ok, key=lambda t: (-t.score, t.cost))
        chosen = ranked[: self.k_best]
        rest = sorted(ranked[self.k_best:], key=lambda t: self.distance(t, chosen[0]))
        return sorted(chosen + rest[: self.k_similar], key=lambda t: t.number)

    def knowledge_task(self) -> str:
        if "stages" in self.space.supports:
            return prompts.MLCOPILOT_KNOWLEDGE_TASK.format(n=self.knowledge_items)
        return prompts.MLCOPILOT_KNOWLEDGE_TASK_PARTS.format(n=self.knowledge_items,
                                                             hint=self.space.agent_brief().guideline_hint)

    def distance(self, a: Trial, b: Trial) -> float:
        if "stages" not in self.space.supports:
            return part_distance(self.space, a.point, b.point)
        d = 0.0
        for i, (x, y) in enumerate(zip(a.point.stages, b.point.stages)):
            if x.model != y.model:
                d += 1.0
            else:
                top = max(self.space.counts[i][x.model])
                d += abs(math.log2(x.samples) - math.log2(y.samples)) / max(math.log2(top), 1.0)
        return d

    def state(self) -> dict[str, Any]:
        return {**super().state(), "knowledge": list(self.knowledge), "distilled_at": self.distilled_at}

    def _restore(self, extra: dict[str, Any]) -> None:
        self.knowledge = [str(x) for x in extra.get("knowledge", [])]
        self.distilled_at = int(extra.get("distilled_at", 0))


def part_distance(space, a, b) -> float:
    """1 - shared parts / all parts, the parts of a point being the ';'-separated pieces of its
    archive cells (for a collaboration graph: its nodes, each with role, model, count and
    inputs, in the space's canonical naming)."""
    pa = {x.strip() for c in space.point_cells(a) for x in str(c).split(";") if x.strip()}
    pb = {x.strip() for c in space.point_cells(b) for x in str(c).split(";") if x.strip()}
    union = pa | pb
    return 1.0 - len(pa & pb) / len(union) if union else 0.0
