"""AgentTTS: an LLM agent that searches test-time scaling configurations with three insights.

1. Initialisation (insight 1, no LLM): for each stage, every other stage is fixed to its
   largest model with one sample, and each candidate model is tried on the stage with as many
   samples as the stage's share of the budget allows (the largest count whose estimated cost
   fits; the smallest count if it is over only by the estimate's slack). The first agent round turns these trials into per-stage model-preference guidelines.
2. Rounds: the prompt carries the archive (every trial, score, cost), the current guidelines and
   the instructions of insight 2 (find per stage the direction of the best sample count; more
   can hurt) and insight 3 (trade budget across stages; find the stages that matter). The agent
   answers {"guidelines": [...], "trials": [...]} in strict JSON (search/llm/answer.py).

`ablate`: "insight1" (random initialisation of the same size, no model-preference
instruction), "insight2", "insight3" (drop that instruction); comma-separated to combine.
Prompts live in search/llm/prompts.py; docs/agenttts.md describes the whole loop.
"""

from __future__ import annotations

from typing import Any

from replay.engine import Config, StageChoice
from replay.errors import ConfigError

from ..llm import prompts
from ..llm.agent import LLM_OPTIONS, LLMSearcher
from ..protocol import Proposal
from ..space import SearchSpace

ABLATIONS = ("insight1", "insight2", "insight3")
FIELDS = {"guidelines": "strings", "trials": "trials"}


class AgentTTSSearcher(LLMSearcher):
    name = "agenttts"
    options_accepted = LLM_OPTIONS | {"ablate"}

    def __init__(self, space: SearchSpace, seed: int = 0, **options: Any):
        super().__init__(space, seed, **options)
        self.ablate = parse_ablate(options.get("ablate"))
        self.guidelines: list[str] = []
        self.rounds = 0  # agent rounds done
        plan = self.insight1_plan()
        self.init_source = "init"
        if "insight1" in self.ablate:
            plan, self.init_source = self.random_plan(len(plan)), "init-random"
        self.init_plan = plan

    # ---- initialisation

    def insight1_plan(self) -> list[Config]:
        sp = self.space
        plan: list[Config] = []
        for i in range(len(sp.stages)):
            others = [StageChoice(sp.largest_model(j), min(sp.counts[j][sp.largest_model(j)])) for j in range(len(sp.stages))]
            for m in sp.models[i]:
                n = self._share_samples(others, i, m)
                if n is None:
                    continue  # even the smallest count of m is over budget on this stage
                others_i = list(others)
                others_i[i] = StageChoice(m, n)
                cfg = Config(tuple(others_i))
                if cfg not in plan:
                    plan.append(cfg)
        return plan

    def _share_samples(self, others: list[StageChoice], i: int, model: str) -> int | None:
        """The largest allowed count of `model` on stage i that keeps the config within budget."""
        counts = sorted(self.space.counts[i][model])
        if self.estimate is None:
            # No cost estimate: the stage's share is one pass of its largest model (what the
            # default budget buys), spent on samples of `model` in proportion to parameters.
            big = self.space.params[self.space.largest_model(i)]
            fit = int(big // max(self.space.params[model], 1.0))
            return max([n for n in counts if n <= fit], default=counts[0])

        def cost(n: int) -> float:
            c = list(others)
            c[i] = StageChoice(model, n)
            return self.cost(Config(tuple(c)))

        limit = self.space.budget * (1 + 1e-9)
        if cost(counts[0]) > limit:
            # The estimate scatters around the measured cost (the default budget is the measured
            # cost of the largest models once): within the slack, the replay decides.
            return counts[0] if self.affordable(Config(tuple(others[:i] + [StageChoice(model, counts[0])] + others[i + 1:]))) else None
        lo, hi = 0, len(counts) - 1  # cost grows with the count: binary search the last fit
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if cost(counts[mid]) <= limit:
                lo = mid
            else:
                hi = mid - 1
        return counts[lo]

    def random_plan(self, n: int) -> list[Config]:
        plan: list[Config] = []
        for _ in range(200 * max(n, 1)):
            if len(plan) >= n:
                break
            c = self.random_config()
            if c not in plan and self.affordable(c):
                plan.append(c)
        return plan

    # ---- the protocol

    def ask(self) -> list[Proposal]:
        if self.rounds == 0:
            pending = [c for c in self.init_plan if not self.tried(c)]
            if pending:
                return self.proposals(pending, self.init_source)
        k = self.want()
        result = self.consult(prompts.AGENTTTS_SYSTEM, self.prompt(k), FIELDS, k)
        if result.answer is not None and result.answer.fields.get("guidelines"):
            self.guidelines = list(result.answer.fields["guidelines"])
        self.rounds += 1
        trials = list(result.trials)
        out = self.proposals(trials, "llm", result.record)
        if len(trials) < k:
            out += self.proposals(self.fill(k - len(trials), exclude=set(trials)), "fill", result.record)
        return out

    def prompt(self, k: int) -> str:
        steps = []
        if self.rounds == 0 and "insight1" not in self.ablate:
            steps.append(prompts.INSIGHT1)
        if "insight2" not in self.ablate:
            steps.append(prompts.INSIGHT2)
        if "insight3" not in self.ablate:
            steps.append(prompts.INSIGHT3)
        steps.append(prompts.AGENTTTS_TASK.format(k=k))
        return "\n\n".join([
            prompts.space_section(self.space, self.cost if self.estimate else None, self.trials_left()),
            prompts.archive_section(self.history, self.space.stages),
            prompts.list_section("## Current guidelines", self.guidelines, "(none yet: write them from the archive)"),
            "## Instructions\n" + "\n".join(f"{n}. {s}" for n, s in enumerate(steps, 1)),
            prompts.format_section(self.space, FIELDS, k),
        ])

    def state(self) -> dict[str, Any]:
        return {**super().state(), "guidelines": list(self.guidelines), "round": self.rounds,
                "ablate": sorted(self.ablate)}

    def _restore(self, extra: dict[str, Any]) -> None:
        self.guidelines = [str(g) for g in extra.get("guidelines", [])]
        self.rounds = int(extra.get("round", 0))


def parse_ablate(value) -> frozenset[str]:
    if value is None or value == "" or value == ():
        return frozenset()
    items = value.split(",") if isinstance(value, str) else list(value)
    out = set()
    for item in items:
        item = str(item).strip().lower()
        if item and item not in ABLATIONS:
            raise ConfigError("--ablate", f"unknown ablation {item!r} (known: {', '.join(ABLATIONS)})")
        if item:
            out.add(item)
    return frozenset(out)
