"""The search space, read off a store: per stage, candidate models and sample counts; a budget."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Iterator

from replay.engine import Config, StageChoice, _largest_pool, as_config, default_budget, estimate_units
from replay.errors import ConfigError
from replay.store import Store


@dataclass(frozen=True)
class SearchSpace:
    """What a searcher may propose. Counts for stage i, model m are 1..max_samples[i][m]
    (for llm_fuse stages, the subset sizes that were stored)."""

    stages: tuple[str, ...]
    models: tuple[tuple[str, ...], ...]  # candidates per stage
    counts: tuple[dict[str, tuple[int, ...]], ...]  # per stage: model -> allowed sample counts
    params: dict[str, float]  # model -> parameter count
    budget: float  # normalised units per question

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
        )

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
