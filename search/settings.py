"""Typed settings of a search, built once (by the command line, a sweep's plan, or a script)
and passed whole to the runner: no dicts of keyword arguments travelling through `**`.

    settings = SearchSettings(store="traces/aime24", searcher="bo", space=ConfigSpaceSettings(budget=100.0),
                              trials=30, options={"sampler": "tpe"})
    settings.check()                       # every value, one line naming the option, before any work
    summary = run_settings(settings)       # search/runner.py: open, set up, search, report

`SearchSettings` holds what one search (or one search per seed) needs; its `space` is one of
the space settings below, each naming its space kind (search/spaces/).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Union

from replay.errors import ConfigError

GRID_LIMIT = 20_000_000  # configurations the exhaustive optimum scores by default (a compiled scan)
DEFAULT_TRIALS = 50
# How to reach an LLM does not change a search: these options may differ when it resumes.
ENDPOINT_OPTIONS = frozenset({"llm_base_url", "llm_api_key", "llm_timeout_s", "llm_retries", "llm_backoff_s",
                              "llm_backoff_max_s"})


@dataclass(frozen=True)
class ConfigSpaceSettings:
    """The configuration space: a model and a sample count per stage.

    Parameters:
        models: candidate models to keep (default: every candidate of every stage).
        max_samples: the largest sample count to consider per stage.
        budget: normalised units per question (default: every stage once with its largest
            model, at its expected cost over the store's pools).
        max_fallback: the largest share of draws (0..1) that may fall back to another pool
            because the upstream answer was not collected; a configuration above it is
            infeasible (default: no limit).
    """

    kind: ClassVar[str] = "config"
    models: tuple[str, ...] | None = None
    max_samples: int | None = None
    budget: float | None = None
    max_fallback: float | None = None

    def check(self) -> None:
        if self.models is not None and not self.models:
            raise ConfigError("--models", "empty model list")
        if self.max_samples is not None and self.max_samples < 1:
            raise ConfigError("--max-samples", f"must be at least 1, got {self.max_samples}")
        if self.budget is not None and not (math.isfinite(self.budget) and self.budget > 0):
            raise ConfigError("--budget", f"must be a positive number of normalised units, got {self.budget}")
        if self.max_fallback is not None and not (0.0 <= self.max_fallback <= 1.0):
            raise ConfigError("--max-fallback", f"must be a share of draws between 0 and 1, got {self.max_fallback}")

    def with_budget(self, budget: float) -> "ConfigSpaceSettings":
        """The same space with its budget resolved (the default is measured once, then fixed)."""
        return replace(self, budget=float(budget))


@dataclass(frozen=True)
class ControllerSpaceSettings:
    """One width-depth controller's parameters (or, with `beta`, its single knob).

    Parameters:
        controller: a built-in name (probe, adaptive, esc, majority) or `module:Class` /
            `path.py:Class`.
        model: the model whose traces the controller runs on.
        budget_tokens: the budget, in mean tokens per question.
        beta: search the knob beta in [0, 1] instead of the parameters.
        probe_cost: tokens charged per probe of an unfinished sample.
    """

    kind: ClassVar[str] = "controller"
    controller: str | None = None
    model: str | None = None
    budget_tokens: float | None = None
    beta: bool = False
    probe_cost: float = 0.0

    def check(self) -> None:
        for name, v in (("--controller", self.controller), ("--model", self.model),
                        ("--budget-tokens", self.budget_tokens)):
            if v is None:
                raise ConfigError(name, "is required with --space controller")
        if not (math.isfinite(self.budget_tokens) and self.budget_tokens > 0):
            raise ConfigError("--budget-tokens", f"must be a positive number of tokens per question, got {self.budget_tokens:g}")
        if not (math.isfinite(self.probe_cost) and self.probe_cost >= 0):
            raise ConfigError("--probe-cost", f"must be a number of tokens >= 0, got {self.probe_cost}")

    def with_budget(self, budget: float) -> "ControllerSpaceSettings":
        return replace(self, budget_tokens=float(budget))


@dataclass(frozen=True)
class ProgramSpaceSettings:
    """Controller programs an LLM writes (search/spaces/program.py, docs/discovery.md).

    Parameters:
        model: the model whose traces the programs run on.
        score: the score rule (`accuracy@150k`, `auc@20k-400k`, `tokens@majority:64`).
        betas: points of each program's beta sweep, evenly spaced in [0, 1].
        probe_cost: tokens charged per probe of an unfinished sample.
        wall_s: wall-clock limit of each sandbox call (loading, the sweep, the traces).
        memory_mb: the sandbox's address-space limit.
        max_chars: the largest program accepted.
        worst: training questions whose traces go back to the agent.
        test_stores: more stores to report the best program on (held out).
        heldout_replicates: replicates per question of the held-out report.
        workers: sandboxes that share each program's sweep (default: min(4, CPU count)).
    """

    kind: ClassVar[str] = "program"
    model: str | None = None
    score: str = "tokens@majority:64"
    betas: int = 21
    probe_cost: float = 0.0
    wall_s: float = 120.0
    memory_mb: int = 2048
    max_chars: int = 20_000
    worst: int = 3
    test_stores: tuple[str, ...] = ()
    heldout_replicates: int = 32
    workers: int | None = None

    def check(self) -> None:
        from .discovery.score import ScoreRule

        if self.model is None:
            raise ConfigError("--model", "is required with --space program")
        ScoreRule.parse(self.score)
        if self.betas < 2:
            raise ConfigError("--betas", f"a sweep needs at least 2 betas, got {self.betas}")
        if self.workers is not None and self.workers < 1:
            raise ConfigError("--program-workers", f"must be at least 1, got {self.workers}")
        for name, v, lo in (("--probe-cost", self.probe_cost, 0.0), ("--program-wall-s", self.wall_s, 1e-9),
                            ("--program-memory-mb", self.memory_mb, 64), ("--heldout-replicates", self.heldout_replicates, 1)):
            if not (math.isfinite(v) and v >= lo):
                raise ConfigError(name, f"must be at least {lo:g}, got {v}")

    def with_budget(self, budget: float) -> "ProgramSpaceSettings":
        return self  # the budget follows from the score rule


_NUM = r"[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?|\.[0-9]+(?:[eE][-+]?[0-9]+)?"
_OBJECTIVE = re.compile(rf"^\s*accuracy\s*(?:-\s*({_NUM})\s*\*\s*latency\s*)?$")


@dataclass(frozen=True)
class GraphObjective:
    """What a graph is scored by: accuracy, or accuracy - lam x latency (seconds per question),
    per question (so question intervals and paired comparisons hold for it as for accuracy)."""

    lam: float = 0.0
    text: str = "accuracy"

    @classmethod
    def parse(cls, text: str | None) -> "GraphObjective":
        """'accuracy' or 'accuracy - LAMBDA * latency' (LAMBDA a number >= 0).

        Raises:
            ConfigError: anything else, in one line naming --objective.
        """
        if text is None:
            return cls()
        m = _OBJECTIVE.match(str(text))
        if not m:
            raise ConfigError("--objective", f"{str(text)[:80]!r} is not 'accuracy' or 'accuracy - LAMBDA * latency' "
                              "(LAMBDA a number >= 0, latency in seconds per question)")
        lam = float(m.group(1)) if m.group(1) else 0.0
        if not math.isfinite(lam):
            raise ConfigError("--objective", f"lambda must be a finite number, got {m.group(1)!r}")
        return cls(lam=lam, text="accuracy" if lam == 0 and not m.group(1) else f"accuracy - {lam:g} * latency")

    @property
    def uses_latency(self) -> bool:
        return self.lam > 0


@dataclass(frozen=True)
class GraphSpaceSettings:
    """Collaboration graphs of a graph store (search/spaces/graph.py, docs/graphs.md).

    Parameters:
        max_nodes: the most nodes a graph has.
        models: candidate models to keep (default: every candidate of every role).
        max_samples: the largest sample count of a node.
        budget: budget units per question, judged by the expected cost (default: four
            single-sample solves by the largest model).
        latency_limit: seconds per question (mean replayed latency); None: no limit.
        objective: 'accuracy' or 'accuracy - LAMBDA * latency'.
    """

    kind: ClassVar[str] = "graph"
    max_nodes: int = 4
    models: tuple[str, ...] | None = None
    max_samples: int | None = None
    budget: float | None = None
    latency_limit: float | None = None
    objective: str = "accuracy"

    def check(self) -> None:
        if self.models is not None and not self.models:
            raise ConfigError("--models", "empty model list")
        if self.max_samples is not None and self.max_samples < 1:
            raise ConfigError("--max-samples", f"must be at least 1, got {self.max_samples}")
        if not 1 <= self.max_nodes <= 32:
            raise ConfigError("--max-nodes", f"must be from 1 to 32, got {self.max_nodes}")
        if self.budget is not None and not (math.isfinite(self.budget) and self.budget > 0):
            raise ConfigError("--budget", f"must be a positive number of normalised units, got {self.budget}")
        if self.latency_limit is not None and not (math.isfinite(self.latency_limit) and self.latency_limit > 0):
            raise ConfigError("--latency-limit", f"must be a positive number of seconds, got {self.latency_limit}")
        GraphObjective.parse(self.objective)

    def with_budget(self, budget: float) -> "GraphSpaceSettings":
        return replace(self, budget=float(budget))


SpaceSettings = Union[ConfigSpaceSettings, ControllerSpaceSettings, ProgramSpaceSettings, GraphSpaceSettings]


@dataclass(frozen=True)
class SearchSettings:
    """One search (or one per seed) on a store.

    Parameters:
        store: the store folder.
        searcher: a registered searcher name (search/searchers/__init__.py).
        space: which space and how it is narrowed (default: every configuration).
        seed: the searcher's seed.
        seeds: repeat the search once per seed, in parallel processes (replaces `seed`).
        trials: the trial budget; None: until the searcher stops (an exhaustive searcher's default).
        options: the searcher's options (`sampler`, `ablate`, `llm_base_url`, ...); an API key
            is never written to disk.
        train: training questions (default: the store's split, else 50): the first `train` of a
            seeded shuffle of the questions outside the fixed test set (search/setup.py).
        split_seed: the seed of that shuffle (training sets of several sizes are nested for one
            seed; the test set never moves).
        select: the rule that picks the final point among the trials (search/selection.py;
            default `selection.DEFAULT_RULE`).
        replicates: replay draws per training question.
        replay_seed: the seed of the replay's draws (common to every searcher and seed).
        test_replicates: replay draws per test question for the final score.
        out: the output folder (archive, summary, plot); None: nothing written.
        resume: continue the search archived in `out`.
        optimum: compute the exhaustive optimum for the summary.
        optimum_limit: the largest space whose optimum is computed.
        workers: processes for `seeds` (default: the CPU count).
        plot: write the best-so-far PNG.
    """

    store: str
    searcher: str
    space: SpaceSettings = field(default_factory=ConfigSpaceSettings)
    seed: int = 0
    seeds: tuple[int, ...] | None = None
    trials: int | None = DEFAULT_TRIALS
    options: dict[str, Any] = field(default_factory=dict, hash=False)
    train: int | None = None
    split_seed: int = 0
    select: str | None = None
    replicates: int = 16
    replay_seed: int = 0
    test_replicates: int = 256
    out: str | None = None
    resume: bool = False
    optimum: bool = True
    optimum_limit: int = GRID_LIMIT
    workers: int | None = None
    plot: bool = True

    def check(self) -> None:
        """Every value that can be checked without opening the store."""
        from .searchers import get_searcher

        get_searcher(self.searcher)  # an unknown name fails first
        self.space.check()
        if self.trials is not None and not 1 <= self.trials <= 2 ** 31 - 1:
            raise ConfigError("--trials", f"must be from 1 to 2^31-1, got {self.trials}")
        if self.replicates < 1:
            raise ConfigError("--replicates", f"must be at least 1, got {self.replicates}")
        if self.test_replicates < 1:
            raise ConfigError("--test-replicates", f"must be at least 1, got {self.test_replicates}")
        if self.train is not None and self.train < 1:
            raise ConfigError("--train", f"must be at least 1, got {self.train}")
        if self.select is not None:
            from .selection import check_rule

            check_rule(self.select)
        if self.workers is not None and self.workers < 1:
            raise ConfigError("--workers", f"must be at least 1, got {self.workers}")
        from replay.clitools import check_seed

        check_seed("--seed", self.seed)
        check_seed("--replay-seed", self.replay_seed)
        if self.seeds is not None and not self.seeds:
            raise ConfigError("--seeds", "no seeds given")
        if self.optimum_limit < 1:
            raise ConfigError("--optimum-limit", f"must be at least 1, got {self.optimum_limit}")

    def shown_options(self) -> dict[str, Any]:
        """The options as archived and reported: never a secret."""
        return {k: v for k, v in self.options.items() if "api_key" not in k}


MAX_SEEDS = 1000  # seeds one command starts without --yes


def parse_seeds(text: str, *, limit: int | None = MAX_SEEDS, where: str = "--seeds") -> list[int]:
    """'0-9', '0,3,7' or a mix ('0-4,9'); each seed from 0 to 2^63-1, none repeated.

    Parameters:
        text: the seed list.
        limit: the most seeds allowed (each starts a search); None: no limit (`--yes`).
        where: the option or spec field named in errors.
    """
    from replay.clitools import MAX_SEED

    ranges: list[tuple[int, int]] = []
    try:
        for part in str(text).split(","):
            part = part.strip()
            if "-" in part[1:]:
                a, b = part.split("-", 1) if not part.startswith("-") else (part, "")
                lo, hi = int(a), int(b)
                if hi < lo:
                    raise ValueError
                ranges.append((lo, hi))
            elif part:
                ranges.append((int(part), int(part)))
    except ValueError:
        raise ConfigError(where, f"{str(text)[:60]!r} is not a seed list (e.g. '0-9' or '0,3,7')") from None
    if not ranges:
        raise ConfigError(where, "no seeds given")
    for lo, hi in ranges:
        if lo < 0 or hi > MAX_SEED:
            raise ConfigError(where, f"{str(text)[:60]!r}: seeds are integers from 0 to 2^63-1")
    count = sum(hi - lo + 1 for lo, hi in ranges)
    if limit is not None and count > limit:
        raise ConfigError(where, f"{str(text)[:60]!r} is {count:,} seeds, and each starts a search: at most {limit:,} "
                          "without --yes")
    seeds = [s for lo, hi in ranges for s in range(lo, hi + 1)]
    if len(set(seeds)) != len(seeds):
        raise ConfigError(where, f"{str(text)[:60]!r} repeats a seed")
    return seeds
