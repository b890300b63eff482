"""The search space, read off a store: per stage, candidate models and sample counts; a budget."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from replay.engine import Config, StageChoice, _largest_pool, _pool_means, budget_unit, default_budget
from replay.errors import ConfigError
from replay.store import Store


# The cost model gives expected costs; the replay measures the cost of the outputs it actually
# drew, which scatters around that (a few per cent on small question sets). Searchers keep
# configurations up to this much over budget as candidates and let the replay decide.
ESTIMATE_SLACK = 0.05


@dataclass(frozen=True)
class SearchSpace:
    """What a searcher may propose. Counts for stage i, model m are 1..max_samples[i][m]
    (for llm_fuse stages, the subset sizes that were stored)."""

    stages: tuple[str, ...]
    models: tuple[tuple[str, ...], ...]  # candidates per stage
    counts: tuple[dict[str, tuple[int, ...]], ...]  # per stage: model -> allowed sample counts
    params: dict[str, float]  # model -> parameter count
    budget: float  # normalised units per question
    # Per stage: model -> (fixed units, units per sample), the expected cost model read off the
    # store's pools (prompt prefilled once plus stored-fusion tokens; one completion per sample).
    # Searchers use it to avoid proposing configurations that are clearly over budget;
    # feasibility itself is decided by the replay's measured cost. None: unknown.
    costs: tuple[dict[str, tuple[float, float]], ...] | None = None

    @classmethod
    def from_store(cls, store: Store, models: list[str] | None = None, max_samples: int | None = None,
                   budget: float | None = None, questions=None) -> "SearchSpace":
        largest = _largest_pool(store)
        names = store.manifest.model_names
        if models:
            unknown = [m for m in models if m not in names]
            if unknown:
                raise ConfigError("--models", f"unknown model {unknown[0]!r} (models: {', '.join(names)})")
        stage_models, stage_counts = [], []
        for si, st in enumerate(store.stages):
            cands = tuple(m for m in store.candidate_models(si) if not models or m in models)
            if not cands:
                raise ConfigError("--models", f"no candidate model left for stage {st.name!r}")
            counts = {}
            for m in cands:
                top = int(largest[si, store.model_index(m)])
                if max_samples is not None:
                    top = min(top, max_samples)
                if st.aggregation == "llm_fuse":
                    counts[m] = tuple(n for n in store.fusion_sizes(si) if n <= top) or (1,)
                else:
                    counts[m] = tuple(range(1, top + 1))
            stage_models.append(cands)
            stage_counts.append(counts)
        if budget is None:
            budget = default_budget(store, questions=questions)
        return cls(
            stages=store.manifest.stage_names,
            models=tuple(stage_models),
            counts=tuple(stage_counts),
            params={m.name: m.params for m in store.models},
            budget=float(budget),
            costs=_cost_model(store, stage_models, questions),
        )

    def estimate_units(self, config: Config) -> float:
        """Expected cost in budget units per question (same figure as replay.engine.estimate_units
        on the questions the space was built with), without any replay."""
        if self.costs is None:
            raise ValueError("this SearchSpace has no cost model (build it with SearchSpace.from_store)")
        total = 0.0
        for i, ch in enumerate(config.stages):
            fixed, per = self.costs[i][ch.model]
            total += fixed + ch.samples * per
        return total

    def maybe_feasible(self, config: Config, slack: float = ESTIMATE_SLACK) -> bool:
        """Worth trying: estimated cost within the budget plus the estimate's slack."""
        return self.estimate_units(config) <= self.budget * (1 + slack)

    def max_affordable(self, config: Config, stage: int, model: str, budget: float | None = None) -> int:
        """The largest allowed count for `model` on `stage`, other stages as in `config`, whose
        estimated cost stays within the budget (plus ESTIMATE_SLACK); 0 when none does."""
        budget = (self.budget if budget is None else budget) * (1 + ESTIMATE_SLACK)
        rest = sum(self.costs[i][ch.model][0] + ch.samples * self.costs[i][ch.model][1]
                   for i, ch in enumerate(config.stages) if i != stage)
        fixed, per = self.costs[stage][model]
        ok = [n for n in self.counts[stage][model] if rest + fixed + n * per <= budget]
        return max(ok) if ok else 0

    def with_choice(self, config: Config, stage: int, model: str, samples: int) -> Config:
        stages = list(config.stages)
        stages[stage] = StageChoice(model, int(samples))
        return Config(tuple(stages))

    def to_json(self) -> dict[str, Any]:
        """What the archive header records (and --resume compares)."""
        return {
            "stages": list(self.stages),
            "models": [list(m) for m in self.models],
            "counts": [{m: _compact(c[m]) for m in c} for c in self.counts],
            "budget": self.budget,
            "size": self.size(),
        }

    def contains(self, config: Config) -> bool:
        return len(config.stages) == len(self.stages) and all(
            ch.model in self.models[i] and ch.samples in self.counts[i][ch.model] for i, ch in enumerate(config.stages)
        )

    def size(self) -> int:
        n = 1
        for c in self.counts:
            n *= sum(len(v) for v in c.values())
        return n

    def all_configs(self) -> Iterator[Config]:
        per_stage = [[StageChoice(m, n) for m in self.models[i] for n in self.counts[i][m]] for i in range(len(self.stages))]
        for combo in itertools.product(*per_stage):
            yield Config(tuple(combo))

    def largest_model(self, stage: int) -> str:
        return max(self.models[stage], key=lambda m: self.params[m])

    def smallest_model(self, stage: int) -> str:
        return min(self.models[stage], key=lambda m: self.params[m])

    def describe(self) -> str:
        lines = [f"budget: {self.budget:.3g} units per question"]
        for i, st in enumerate(self.stages):
            parts = [f"{m} (1..{max(self.counts[i][m])})" for m in self.models[i]]
            lines.append(f"stage {st}: " + ", ".join(parts))
        return "\n".join(lines)


def _compact(counts: tuple[int, ...]) -> str | list[int]:
    """'1..64' for a contiguous range, else the list."""
    if counts and list(counts) == list(range(counts[0], counts[-1] + 1)):
        return f"{counts[0]}..{counts[-1]}"
    return list(counts)


def _cost_model(store: Store, stage_models, questions) -> tuple[dict[str, tuple[float, float]], ...]:
    """Linear cost model per (stage, model), the one replay.engine.estimate_units uses."""
    qidx = store.question_indices(questions)
    prompt, comp, fuse = _pool_means(store)
    unit = budget_unit(store)
    out = []
    for s, cands in enumerate(stage_models):
        row = {}
        for m in cands:
            mi = store.model_index(m)
            flops_per_token = 2.0 * float(store.arrays.model_params[mi]) / unit
            row[m] = (float(np.mean(prompt[qidx, s, mi] + fuse[qidx, s, mi])) * flops_per_token,
                      float(np.mean(comp[qidx, s, mi])) * flops_per_token)
        out.append(row)
    return tuple(out)
