"""Configurations: a model and a sample count for each stage, parsed and checked against a store.

    Config.parse("Qwen3-8B:8")                                  # one stage
    Config.parse("retrieve=Llama-70B:1,answer=Llama-3B:16", store=store)
    Config.of(("Llama-70B", 1), ("Llama-3B", 16))

`replay.engine` re-exports these names; `store` arguments are `replay.store.Store` objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .errors import ConfigError


@dataclass(frozen=True)
class StageChoice:
    """One stage's choice: a model (by its store name) and how many samples to draw."""

    model: str
    samples: int

    def __str__(self) -> str:
        return f"{self.model}:{self.samples}"


@dataclass(frozen=True)
class Config:
    """A model and a sample count for each stage, in stage order."""

    stages: tuple[StageChoice, ...]

    def __str__(self) -> str:
        return ",".join(str(s) for s in self.stages)

    @classmethod
    def of(cls, *pairs: tuple[str, int]) -> "Config":
        """A configuration from (model, samples) pairs in stage order (not checked)."""
        return cls(tuple(StageChoice(m, int(n)) for m, n in pairs))

    @classmethod
    def parse(cls, text: str, *, store=None) -> "Config":
        """A configuration from text: 'M:S' per stage, comma-separated in stage order, or
        'stage=M:S' naming each stage.

        Args:
            text: the configuration, e.g. 'Llama-70B:1,Llama-3B:16' or
                'retrieve=Llama-70B:1,answer=Llama-3B:16'.
            store: if given, the configuration is checked against it (stages, models, pool
                sizes); needed to order named stages.

        Raises:
            ConfigError: malformed text, or (with a store) a configuration the store cannot
                replay.
        """
        where = f"config {text!r}"
        parts = [p.strip() for p in str(text).split(",") if p.strip()]
        if not parts:
            raise ConfigError(where, "empty; expected MODEL:SAMPLES per stage, e.g. 'Qwen3-8B:8'")
        named: dict[str, StageChoice] = {}
        plain: list[StageChoice] = []
        for part in parts:
            stage = None
            if "=" in part:
                stage, part = (x.strip() for x in part.split("=", 1))
            if ":" not in part:
                raise ConfigError(where, f"{part!r} is not MODEL:SAMPLES")
            model, n = part.rsplit(":", 1)
            try:
                samples = int(n)
            except ValueError:
                raise ConfigError(where, f"sample count {n!r} is not an integer") from None
            choice = StageChoice(model.strip(), samples)
            if stage is None:
                plain.append(choice)
            else:
                named[stage] = choice
        if named and plain:
            raise ConfigError(where, "mix of named (stage=M:S) and positional (M:S) stages")
        if named:
            if store is None:
                raise ConfigError(where, "named stages need a store to order them")
            names = store.manifest.stage_names
            unknown = [s for s in named if s not in names]
            if unknown:
                raise ConfigError(where, f"unknown stage {unknown[0]!r} (stages: {', '.join(names)})")
            missing = [s for s in names if s not in named]
            if missing:
                raise ConfigError(where, f"no choice for stage {missing[0]!r}")
            plain = [named[s] for s in names]
        cfg = cls(tuple(plain))
        if store is not None:
            validate_config(store, cfg)
        return cfg


def as_config(store, config: Config | str | Sequence) -> Config:
    """A Config, from a Config, its text, or (model, samples) pairs, checked against the store.

    Raises:
        ConfigError: a configuration the store cannot replay.
    """
    if isinstance(config, Config):
        validate_config(store, config)
        return config
    if isinstance(config, str):
        return Config.parse(config, store=store)
    cfg = Config(tuple(c if isinstance(c, StageChoice) else StageChoice(c[0], int(c[1])) for c in config))
    validate_config(store, cfg)
    return cfg


def validate_config(store, cfg: Config) -> None:
    """Check a configuration against a store: one choice per stage, known candidate models,
    counts between 1 and the largest pool of that (stage, model).

    Raises:
        ConfigError: one line naming the configuration and the problem.
    """
    where = f"config {str(cfg)!r}"
    names = store.manifest.stage_names
    if len(cfg.stages) != len(names):
        raise ConfigError(where, f"has {len(cfg.stages)} stage(s), store {store.name!r} has {len(names)} ({', '.join(names)})")
    largest = store.derived.largest_pool
    for si, ch in enumerate(cfg.stages):
        if ch.model not in store.manifest.model_names:
            raise ConfigError(where, f"unknown model {ch.model!r} (models: {', '.join(store.manifest.model_names)})")
        mi = store.model_index(ch.model)
        if not store.arrays.stage_model_ok[si, mi]:
            raise ConfigError(where, f"model {ch.model!r} is not a candidate of stage {names[si]!r}")
        if ch.samples < 1:
            raise ConfigError(where, f"stage {names[si]!r}: sample count must be at least 1")
        if ch.samples > largest[si, mi]:
            raise ConfigError(where, f"stage {names[si]!r}: {ch.samples} samples, but the largest pool of {ch.model!r} holds {largest[si, mi]}")
