"""The replay engine: configurations in, scores and costs out, via the Numba kernels.

    store = replay.open("traces/aime24")
    r = store.evaluate("Qwen3-8B:8", replicates=2000, seed=0)
    rs = store.evaluate_batch(["Qwen3-8B:1", "Qwen3-8B:8", "Qwen3-0.6B:64"])

`evaluate_batch` groups configurations that differ only in the last stage's sample count and
scores each group in one pass along the shuffle (common random numbers make the draws for n
samples the first n of the draws for n+1), so a sweep over every count costs one pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np

from .config import Config, StageChoice, as_config, validate_config
from .derived import KernelInputs
from .errors import ConfigError
from .stats import LEVEL, Interval, intervals, paired_interval, question_interval

# `store` arguments below are `replay.store.Store` objects. The engine does not import the
# store module: the store imports the engine (its evaluate() forwards here), and the engine
# only reads a store's arrays, names and `derived` figures.

__all__ = ["Config", "StageChoice", "StageResult", "EvalResult", "SpaceScan", "evaluate", "evaluate_batch",
           "scan_space", "budget_unit", "default_budget", "score_bounds", "estimate_units", "expected_units", "expected_units_of", "largest_pool", "pool_means",
           "as_config", "validate_config", "kernel_inputs", "replay_arrays", "replay_sums", "memo_tables"]


def largest_pool(store) -> np.ndarray:
    """int64 [S, M]: the largest pool of each (stage, model): the most samples a configuration
    may ask of it (`store.derived.largest_pool`)."""
    return store.derived.largest_pool


_largest_pool = largest_pool  # the name search/ and older code import


# --------------------------------------------------------------------------------------------
# Results


def plain_numbers(obj) -> None:
    """Replace NumPy scalars in a frozen dataclass's fields by Python numbers (a result prints
    `units=24.4`, not `units=np.float64(24.4)`, and serialises as any float); arrays stay."""
    values = getattr(obj, "__dict__", None)  # the fields' values (a batch makes thousands of results)
    items = values.items() if values is not None else ((n, getattr(obj, n)) for n in obj.__dataclass_fields__)
    for name, v in [(n, v) for n, v in items if isinstance(v, np.generic)]:
        object.__setattr__(obj, name, v.item())


def made(cls, **values):
    """A frozen result dataclass from values that are already plain Python numbers (the graph
    engine's batch path makes thousands per call), without __init__'s per-field setattr and
    plain_numbers' scan: ~1.8 us a result instead of 3.5-4.3 (measured, 1,536 NodeResults).
    Every field must be given."""
    if len(values) != len(cls.__dataclass_fields__):
        missing = sorted(set(cls.__dataclass_fields__) - set(values))
        raise TypeError(f"{cls.__name__}: fields {missing} not given")
    obj = object.__new__(cls)
    obj.__dict__.update(values)
    return obj


@dataclass(frozen=True)
class StageResult:
    """One stage of an evaluated configuration (means per question over questions and replicates)."""

    stage: str
    model: str
    samples: int
    score: float  # mean score of this stage's own aggregated output (NaN where it has no gold)
    tokens: float  # mean tokens per question charged to this stage
    flops: float
    fallback_rate: float  # share of (question, replicate) whose pool fell back (missing context key)

    def __post_init__(self):
        plain_numbers(self)


@dataclass(frozen=True)
class EvalResult:
    """An evaluated configuration.

    Two uncertainties, apart (replay/stats.py): `stderr`, the replicate error (the standard
    error over replay replicates with these questions fixed), and (`ci_lo`, `ci_hi`), the 95%
    interval over questions (for the score on the population the questions come from; the one
    that says whether a result carries over to new questions). `interval(level)` gives it at
    another level, `difference(other)` the paired difference with another result.

    Attributes:
        config: the configuration.
        score: mean end-to-end score over questions and replicates, by the store's score rule
            (`score_rule`); NaN when infeasible.
        stderr: the replicate error: standard error of that mean over replicates, the
            questions fixed; NaN when infeasible.
        feasible: within the budget (always, without one).
        tokens: mean tokens per question actually drawn (prompts once per stage, completions).
        flops: mean FLOPs per question (2 x params x tokens, per stage).
        units: mean cost in normalised budget units per question (`budget_unit`), measured:
            the tokens these draws on these questions actually charged.
        budget: the budget it was held to, or None.
        stages: per-stage figures.
        n_questions, replicates, seed: what it was evaluated on.
        per_question: mean score per question (None when infeasible).
        ci_lo, ci_hi: the 95% interval over questions (`replay.stats.question_interval` of
            per_question); NaN when infeasible.
        score_rule: how stage scores make the end-to-end score (the store's manifest).
        score_bounds: the range scores live in ((0, 1) where every stored score does), for
            intervals; None: unbounded (Student-t intervals).
        expected_units: the expected cost per question over the store's pools
            (`expected_units`): what `feasible` is judged by.
    """

    config: Config
    score: float  # mean end-to-end score; NaN when infeasible
    stderr: float  # standard error of the mean over replicates
    feasible: bool
    tokens: float  # mean tokens per question actually drawn (prompts once per stage, plus completions)
    flops: float  # mean FLOPs per question: 2 x params x tokens, per stage
    units: float  # normalised budget units per question (see `budget_unit`)
    budget: float | None
    stages: tuple[StageResult, ...]
    n_questions: int
    replicates: int
    seed: int
    per_question: np.ndarray = field(repr=False, compare=False, default=None)  # mean score per question
    ci_lo: float = math.nan  # the 95% interval over questions
    ci_hi: float = math.nan
    score_rule: str = "last"
    score_bounds: tuple[float, float] | None = field(default=(0.0, 1.0), compare=False)

    def interval(self, level: float = LEVEL) -> Interval:
        """The interval over questions at `level` (`replay.stats.question_interval` of the
        per-question means); the 95% one is (ci_lo, ci_hi).

        Args:
            level: nominal coverage, in (0, 1).

        Raises:
            ValueError: an infeasible result (not scored).
        """
        if self.per_question is None:
            raise ValueError(f"{self.config}: infeasible, not scored: no interval")
        return question_interval(self.per_question, level=level, bounds=self.score_bounds)

    def difference(self, other: "EvalResult", *, level: float = LEVEL) -> Interval:
        """The paired difference self - other over questions, with its interval
        (`replay.stats.paired_interval`): common random numbers make it much tighter than
        either score's interval.

        Args:
            other: a result on the same questions, seed and replicates.
            level: nominal coverage, in (0, 1).

        Raises:
            ValueError: either result infeasible, or not evaluated on the same questions, seed
                and replicates.
        """
        if self.per_question is None or other.per_question is None:
            raise ValueError("an infeasible configuration is not scored: no paired difference")
        if (self.n_questions, self.replicates, self.seed) != (other.n_questions, other.replicates, other.seed):
            raise ValueError("a paired difference needs the same questions, replicates and seed "
                             f"({self.n_questions} x {self.replicates}, seed {self.seed} against "
                             f"{other.n_questions} x {other.replicates}, seed {other.seed})")
        if self.score_bounds is None or other.score_bounds is None:
            d = np.asarray(self.per_question) - np.asarray(other.per_question)
            return question_interval(d, level=level, bounds=None)
        return paired_interval(self.per_question, other.per_question, level=level)
    expected_units: float = math.nan  # expected cost per question over the store's pools: the budget rule

    def __post_init__(self):
        plain_numbers(self)

    @property
    def fallback_rate(self) -> float:
        later = [s.fallback_rate for s in self.stages[1:]]
        return float(np.mean(later)) if later else 0.0

    def as_row(self) -> dict:
        row = {
            "config": str(self.config),
            "score": self.score,
            "stderr": self.stderr,
            "ci_lo": self.ci_lo,
            "ci_hi": self.ci_hi,
            "feasible": self.feasible,
            "tokens": self.tokens,
            "flops": self.flops,
            "units": self.units,
            "expected_units": self.expected_units,
            "fallback_rate": self.fallback_rate,
        }
        for i, st in enumerate(self.stages):
            row[f"s{i}_model"] = st.model
            row[f"s{i}_samples"] = st.samples
            row[f"s{i}_score"] = st.score
            row[f"s{i}_tokens"] = st.tokens
        return row


# --------------------------------------------------------------------------------------------
# Budget


def budget_unit(store) -> float:
    """FLOPs of one normalised budget unit: one single-sample pass of the smallest model on the
    cheapest stage (prompt + mean completion, averaged over questions and that stage's pools).
    Computed once per store (`store.derived.budget_unit`)."""
    return store.derived.budget_unit


def default_budget(store) -> float:
    """The paper's default budget, in units: every stage once with its largest model, at its
    expected cost (`expected_units`), so that this reference configuration is feasible by the
    budget rule on any questions."""
    a = store.arrays
    pairs = []
    for s in range(a.n_stages):
        cands = np.flatnonzero(a.stage_model_ok[s])
        m = cands[np.argmax(a.model_params[cands])]
        pairs.append((store.manifest.model_names[m], 1))
    return expected_units(store, Config.of(*pairs))


def expected_units(store, config) -> float:
    """The expected cost of a configuration per question, in budget units, over all of the
    store's questions and pools (replay/expected.py): the budget rule. A configuration is within
    a budget B when expected_units <= B, the same on every question set, whatever was drawn;
    the measured cost (`EvalResult.units`) is reported beside it.

    Args:
        store: the store.
        config: a configuration, as `evaluate` takes it.
    """
    cfg = as_config(store, config)
    return float(expected_units_of(store, *_config_arrays(store, [cfg]))[0])


def expected_units_of(store, models: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """`expected_units` of many configurations given as model indices and counts, [C, S] each."""
    from .expected import expected_units_table

    table = expected_units_table(store, budget_unit(store))
    n = np.minimum(counts, table.shape[2] - 1)
    return table[np.arange(models.shape[1])[None, :], models, n].sum(axis=1)


def within_budget(expected: float, budget: float | None) -> bool:
    """The budget rule: the expected cost is within the budget (up to rounding)."""
    return budget is None or expected <= budget * (1 + 1e-9)


# --------------------------------------------------------------------------------------------
# Evaluation


MAX_CELLS = 8_000_000  # configs x questions x replicates per kernel call (bounds memory)


def evaluate(store, config, *, questions=None, replicates: int = 100, seed: int = 0,
             budget: float | None = None, device: str | None = None) -> EvalResult:
    """Replay one configuration: its mean score with its replicate error and its 95% interval
    over questions, and its cost.

    Args:
        store: the store to replay (`replay.open(path)`).
        config: a `Config`, its text ('Qwen3-8B:8', 'retrieve=M:1,answer=M:16') or a
            sequence of (model, samples) pairs in stage order.
        questions: which questions: None or 'all' (every one), a split name ('train',
            'test'), or a sequence of question ids and/or indices.
        replicates: random draws per question (common random numbers: the draws of
            (question, replicate) depend only on the seed, the question id and the replicate).
        seed: the seed of every draw.
        budget: a budget in normalised units per question; a configuration whose expected
            cost (`expected_units`, over the store's pools) exceeds it is reported infeasible
            and not scored (score NaN). The measured cost is reported either way.
        device: 'cpu', 'cuda' or 'auto' (as in `evaluate_batch`).

    Returns:
        An `EvalResult`.

    Raises:
        ConfigError: a configuration the store cannot replay, or replicates < 1.
        StoreError: an unknown split or question.
    """
    return evaluate_batch(store, [config], questions=questions, replicates=replicates, seed=seed, budget=budget,
                          device=device)[0]


def evaluate_batch(store, configs: Iterable, *, questions=None, replicates: int = 100, seed: int = 0,
                   budget: float | None = None, progress: Callable[[float], None] | None = None,
                   method: str = "auto", device: str | None = None) -> list[EvalResult]:
    """Replay many configurations in few compiled calls, with the numbers `evaluate` gives each.

    Configurations that differ only in the last stage's sample count share one pass along the
    shuffle; large batches over several stages use memo tables (see `replay_sums`).

    Args:
        store: the store to replay.
        configs: configurations, each as `evaluate` takes it.
        questions: which questions (as in `evaluate`).
        replicates: random draws per question.
        seed: the seed of every draw.
        budget: a budget in normalised units per question (as in `evaluate`).
        progress: called with the number of configurations (or fractions of them) done.
        method: 'auto' (the cheaper), 'direct' or 'memo'; all give the same numbers.
        device: 'cpu', 'cuda' or 'auto' (the GPU when present and the batch is large:
            `replay.gpu.resolve_device`); each method gives the same numbers on each device.
            None: $TTS_REPLAY_DEVICE, else 'cpu'.

    Returns:
        One `EvalResult` per configuration, in order.

    Raises:
        ConfigError: a configuration the store cannot replay, replicates < 1, or device
            'cuda' without a usable GPU.
        StoreError: an unknown split or question.
    """
    from .gpu import check_device

    device = check_device(device)
    cfgs = [as_config(store, c) for c in configs]
    if not cfgs:
        return []
    if replicates < 1:
        raise ConfigError("replicates", "must be at least 1")
    qidx = store.question_indices(questions)
    if len(qidx) == 0:
        raise ConfigError("questions", "no questions selected")
    sums = replay_sums(store, cfgs, qidx, replicates=replicates, seed=seed, progress=progress, method=method,
                       device=device)
    per_q = sums.score_q / replicates
    sd = per_q.std(axis=1, ddof=1) if len(qidx) > 1 else np.zeros(len(cfgs))
    ends = ((per_q <= 0.0) | (per_q >= 1.0)).mean(axis=1)
    ci_lo, ci_hi = intervals(per_q.mean(axis=1), sd, len(qidx), bounds=score_bounds(store), at_ends=ends)
    expected = expected_units_of(store, *_config_arrays(store, cfgs))
    return [_result(store, cfg, sums, ci, qidx, replicates, seed, budget, float(expected[ci]),
                    (float(ci_lo[ci]), float(ci_hi[ci])))
            for ci, cfg in enumerate(cfgs)]


def score_bounds(store) -> tuple[float, float] | None:
    """(0, 1) where every stored score lies in it (then every end-to-end score does, under any
    score rule): question intervals use the range (replay/stats.py); None otherwise."""
    return (0.0, 1.0) if store.derived.scores_bounded else None


def _result(store, cfg: Config, sums: "ReplaySums", ci: int, qidx: np.ndarray, replicates: int, seed: int,
            budget: float | None, expected: float, interval: tuple[float, float]) -> EvalResult:
    """Configuration ci's result from the sums of its replay and its question interval; feasible
    by the budget rule (its expected cost, `expected_units`), whatever these draws cost."""
    a = store.arrays
    names = store.manifest.stage_names
    n = len(qidx) * replicates
    units = float(sums.flops[ci]) / n / budget_unit(store)
    feasible = within_budget(expected, budget)
    rep_means = sums.score_r[ci] / len(qidx)
    stderr = float(rep_means.std(ddof=1) / math.sqrt(replicates)) if replicates > 1 else math.nan
    stages = []
    for s, ch in enumerate(cfg.stages):
        mi = store.model_index(ch.model)
        tk = float(sums.st_tokens[ci, s]) / n
        stages.append(
            StageResult(
                stage=names[s],
                model=ch.model,
                samples=ch.samples,
                score=float(sums.st_score[ci, s]) / n if feasible else math.nan,
                tokens=tk,
                flops=2.0 * float(a.model_params[mi]) * tk,
                fallback_rate=float(sums.st_fallback[ci, s]) / n,
            )
        )
    return EvalResult(
        config=cfg,
        score=float(sums.score_q[ci].sum()) / n if feasible else math.nan,
        stderr=stderr if feasible else math.nan,
        feasible=feasible,
        tokens=float(sums.tokens[ci]) / n,
        flops=float(sums.flops[ci]) / n,
        units=units,
        budget=budget,
        stages=tuple(stages),
        n_questions=len(qidx),
        replicates=replicates,
        seed=seed,
        per_question=sums.score_q[ci] / replicates if feasible else None,
        ci_lo=interval[0] if feasible else math.nan,
        ci_hi=interval[1] if feasible else math.nan,
        score_rule=store.manifest.score_rule,
        score_bounds=score_bounds(store),
        expected_units=expected,
    )


def _config_arrays(store, cfgs: list[Config]) -> tuple[np.ndarray, np.ndarray]:
    """Model indices and sample counts, [C, S] each."""
    models = np.array([[store.model_index(c.model) for c in cfg.stages] for cfg in cfgs], dtype=np.int64)
    counts = np.array([[c.samples for c in cfg.stages] for cfg in cfgs], dtype=np.int64)
    return models, counts


def _groups(models: np.ndarray, counts: np.ndarray, share_prefix: bool = True):
    """Group configs by everything but the last stage's count; order by that count.

    With share_prefix=False every config is a group of its own (each count evaluated alone:
    same results, more draws; for benchmarks)."""
    S = models.shape[1]
    key = np.concatenate([models, counts[:, : S - 1]], axis=1)
    order = np.lexsort(tuple([counts[:, S - 1]] + [key[:, j] for j in range(key.shape[1] - 1, -1, -1)]))
    skey = key[order]
    new = np.ones(len(models), dtype=bool)
    if share_prefix:
        new[1:] = np.any(skey[1:] != skey[:-1], axis=1)
    starts = np.flatnonzero(new)
    grp_cfg_off = np.append(starts, len(models)).astype(np.int64)
    return order, models[order][starts], counts[order][starts], grp_cfg_off, counts[order, S - 1].copy()


def kernel_inputs(store) -> KernelInputs:
    """The store's arrays as the kernels take them (`store.derived.kernel_inputs`)."""
    return store.derived.kernel_inputs


def replay_arrays(store, cfgs: list[Config], qidx: np.ndarray, *, replicates: int, seed: int,
                  progress=None, share_prefix: bool = True):
    """Direct replay, full detail, in the order of `cfgs`: score/tokens/flops [C, Q, R] and
    per-stage score/tokens/fallback sums over replicates [C, S, Q].

    Args:
        store: the store.
        cfgs: checked configurations (`as_config`).
        qidx: question indices (`store.question_indices`).
        replicates: random draws per question.
        seed: the seed of every draw.
        progress: called with the number of configurations done.
        share_prefix: False evaluates every configuration alone (same numbers, more draws;
            for benchmarks).
    """
    C, Q, R, S = len(cfgs), len(qidx), replicates, store.arrays.n_stages
    out = (np.empty((C, Q, R)), np.empty((C, Q, R)), np.empty((C, Q, R)),
           np.zeros((C, S, Q)), np.zeros((C, S, Q)), np.zeros((C, S, Q), dtype=np.int64))
    for dest, part in _direct_chunks(store, _groups(*_config_arrays(store, cfgs), share_prefix), qidx, replicates,
                                     seed):
        for full, piece in zip(out, part):
            full[dest] = piece
        if progress is not None:
            progress(len(dest))
    return out


def _direct_chunks(store, groups, qidx, replicates, seed):
    """Run the direct kernel over chunks of groups (see _groups; bounded memory); yield
    (config positions, arrays)."""
    from . import kernels  # compiled on first use: keeps `import replay` and `--help` fast
    import numba

    d = store.derived
    A, max_pool, n_items = d.kernel_inputs, d.max_pool, d.n_items
    a = store.arrays
    Q, R, S = len(qidx), replicates, a.n_stages
    order, grp_models, grp_counts, grp_off, last_counts = groups
    chunks = 4 * numba.get_num_threads()
    G = len(grp_off) - 1
    g = 0
    while g < G:
        g1 = g + 1
        while g1 < G and (grp_off[g1 + 1] - grp_off[g]) * Q * R <= MAX_CELLS:
            g1 += 1
        c0, c1 = int(grp_off[g]), int(grp_off[g1])
        part = (np.empty((c1 - c0, Q, R)), np.empty((c1 - c0, Q, R)), np.empty((c1 - c0, Q, R)),
                np.zeros((c1 - c0, S, Q)), np.zeros((c1 - c0, S, Q)), np.zeros((c1 - c0, S, Q), dtype=np.int64))
        kernels.replay_groups(A, a.n_stages, a.n_models, max_pool, n_items, qidx.astype(np.int64), R,
                              np.uint64(seed), chunks, grp_models[g:g1], grp_counts[g:g1], grp_off[g:g1 + 1] - c0,
                              last_counts[c0:c1], *part)
        yield order[c0:c1], part
        g = g1


@dataclass
class ReplaySums:
    """What results are made of, summed, in the order of the configs: score_q [C, Q] (over
    replicates), score_r [C, R] (over questions), tokens/flops [C] and per-stage
    st_score/st_tokens/st_fallback [C, S] (over questions and replicates)."""

    score_q: np.ndarray
    score_r: np.ndarray
    tokens: np.ndarray
    flops: np.ndarray
    st_score: np.ndarray
    st_tokens: np.ndarray
    st_fallback: np.ndarray
    method: str


MEMO_ENTRIES = 4_000_000  # memo table entries per question chunk (about 100 MB)


def replay_sums(store, cfgs: list[Config], qidx: np.ndarray, *, replicates: int, seed: int,
                progress=None, method: str = "auto", device: str | None = None) -> ReplaySums:
    """Replay many configurations, by the cheaper of two exact methods (same results):

    direct  one pass per group of configs that differ only in the last stage's count
    memo    each needed pool's result at every count, once per (question, replicate), then
            every config by lookups: pays off when many configs share pools (random or grid
            batches over several stages)

    Args:
        store: the store.
        cfgs: checked configurations (`as_config`).
        qidx: question indices (`store.question_indices`).
        replicates: random draws per question.
        seed: the seed of every draw.
        progress: called with the number of configurations (or fractions of them) done.
        method: 'auto', 'direct' or 'memo'.
        device: 'cpu', 'cuda', 'auto' or None (replay.gpu.resolve_device). Each method gives
            on the GPU the very numbers it gives on the CPU (and 'auto' picks the same method).
    """
    from .gpu import check_device, resolve_device

    C, Q, R, S = len(cfgs), len(qidx), replicates, store.arrays.n_stages
    models, counts = _config_arrays(store, cfgs)
    groups = _groups(models, counts)
    dev = check_device(device)
    if dev != "cpu":  # the work in draws: the cheaper method's
        dev = resolve_device(dev, work=min(_memo_cost(store, models, counts, qidx), _direct_cost(groups, Q)) * R)
    if method == "auto":
        method = "memo" if _memo_cost(store, models, counts, qidx) < _direct_cost(groups, Q) else "direct"
    sums = ReplaySums(np.zeros((C, Q)), np.zeros((C, R)), np.zeros(C), np.zeros(C), np.zeros((C, S)),
                      np.zeros((C, S)), np.zeros((C, S), dtype=np.int64), method if dev == "cpu" else f"{method}-cuda")
    if method == "direct":
        if dev == "cuda":
            from .gpu.host import direct_chunks

            chunks = direct_chunks(store, groups, np.asarray(qidx, dtype=np.int64), R, seed, MAX_CELLS)
        else:
            chunks = _direct_chunks(store, groups, qidx, R, seed)
        for dest, (score, tokens, flops, st_score, st_tokens, st_fb) in chunks:
            sums.score_q[dest] = score.sum(axis=2)
            sums.score_r[dest] = score.sum(axis=1)
            sums.tokens[dest] = tokens.sum(axis=(1, 2))
            sums.flops[dest] = flops.sum(axis=(1, 2))
            sums.st_score[dest] = st_score.sum(axis=2)
            sums.st_tokens[dest] = st_tokens.sum(axis=2)
            sums.st_fallback[dest] = st_fb.sum(axis=2)
            if progress is not None:
                progress(len(dest))
        return sums
    if dev == "cuda" and method == "memo":
        from .gpu.host import replay_sums as gpu_replay_sums

        gpu_replay_sums(store, models, counts, np.asarray(qidx, dtype=np.int64), R, seed, sums,
                        _pool_layout(store, _needed(store, models, counts)), progress)
        return sums
    if method != "memo":
        raise ValueError(f"unknown method {method!r}")
    _memo(store, models, counts, qidx, R, seed, sums, progress)
    return sums


def _direct_cost(groups, Q) -> float:
    _, _, grp_counts, grp_off, last_counts = groups
    S = grp_counts.shape[1]
    per_group = grp_counts[:, : S - 1].sum(axis=1) + last_counts[grp_off[1:] - 1]
    return float(per_group.sum()) * Q


def _needed(store, models, counts):
    """(stage, model) -> the largest count any config asks of it."""
    a = store.arrays
    nmax = np.zeros((a.n_stages, a.n_models), dtype=np.int64)
    for s in range(a.n_stages):
        np.maximum.at(nmax[s], models[:, s], counts[:, s])
    return nmax


def _memo_cost(store, models, counts, qidx) -> float:
    a = store.arrays
    nmax = _needed(store, models, counts)
    pools_per = np.diff(a.qsm_pool_off).reshape(a.n_questions, a.n_stages, a.n_models)[qidx].sum(axis=0)
    build = float((pools_per * nmax).sum())
    lookups = 2.0 * len(models) * len(qidx) * a.n_stages  # a lookup costs about two draws
    return build + lookups


@dataclass
class MemoTables:
    """Snapshots of every needed pool (a "row") at every count 1..row_nmax, per replicate:
    entry row_base[row] + r * row_nmax[row] + (n - 1). pool_row maps a pool to its row."""

    pool_row: np.ndarray
    row_nmax: np.ndarray
    row_base: np.ndarray
    ans: np.ndarray
    score: np.ndarray
    tok: np.ndarray
    flag: np.ndarray


def _pool_layout(store, nmax: np.ndarray):
    """Per pool: its question, stage, and how many counts the memo needs (0: not needed)."""
    a, d = store.arrays, store.derived
    key_nmax = np.broadcast_to(nmax, (a.n_questions, a.n_stages, a.n_models)).reshape(-1)
    pool_nmax = np.minimum(key_nmax[d.pool_qsm], d.pool_sizes)
    return d.pool_qsm // (a.n_stages * a.n_models), d.pool_stage, pool_nmax


def memo_tables(store, nmax: np.ndarray, questions: np.ndarray, *, replicates: int, seed: int,
                device: str | None = "cpu") -> MemoTables:
    """Build the memo of every pool of `questions` for the (stage, model) pairs with nmax > 0.

    Args:
        store: the store.
        nmax: int64 [S, M], the largest count needed of each (stage, model); 0: not needed.
        questions: question indices.
        replicates: random draws per question.
        seed: the seed of every draw.
        device: 'cpu' (the default here), 'cuda' (built on the GPU, copied back: the same
            tables), 'auto' or None (`replay.gpu.resolve_device`).
    """
    from . import kernels
    from .gpu import resolve_device

    if resolve_device(device) == "cuda":
        from .gpu.host import build_memo

        return MemoTables(*build_memo(store, _pool_layout(store, nmax), np.asarray(questions, dtype=np.int64),
                                      replicates=replicates, seed=seed).to_host())

    d = store.derived
    A, max_pool, n_items = d.kernel_inputs, d.max_pool, d.n_items
    a = store.arrays
    q_of_pool, s_of_pool, pool_nmax = _pool_layout(store, nmax)
    rows = np.flatnonzero(np.isin(q_of_pool, questions) & (pool_nmax > 0))
    row_nmax = pool_nmax[rows].astype(np.int64)
    row_base = np.concatenate([[0], np.cumsum(row_nmax * replicates)[:-1]]).astype(np.int64)
    n = int((row_nmax * replicates).sum())
    m = MemoTables(np.full(len(pool_nmax), -1, dtype=np.int64), row_nmax, row_base, np.empty(n, np.int64),
                   np.empty(n, np.float64), np.empty(n, np.float64), np.empty(n, np.uint8))
    m.pool_row[rows] = np.arange(len(rows))
    kernels.memo_build(A, a.n_stages, a.n_models, max_pool, n_items, replicates, np.uint64(seed),
                       rows.astype(np.int64), q_of_pool[rows].astype(np.int64), s_of_pool[rows].astype(np.int64),
                       row_nmax, row_base, m.ans, m.score, m.tok, m.flag)
    return m


LOOKUP_BLOCK_ENTRIES = 200_000  # memo entries of the questions a lookup block covers (~5 MB: cached)


def _lookup_blocks(entries: np.ndarray, n_configs: int) -> np.ndarray:
    """Where memo_lookup's blocks of questions start (positions, then the count): questions
    with at most LOOKUP_BLOCK_ENTRIES memo entries together, so that every configuration reads a
    block while it is cached. A few configurations read too little to pay for a parallel
    region per block: one block."""
    n = len(entries)
    if n_configs < 8 or n == 0:
        return np.array([0, n], dtype=np.int64)
    starts = [0]
    total = 0.0
    for i, e in enumerate(entries.tolist()):
        if total and total + e > LOOKUP_BLOCK_ENTRIES:
            starts.append(i)
            total = 0.0
        total += e
    return np.array(starts + [n], dtype=np.int64)


def _memo(store, models, counts, qidx, R, seed, sums, progress):
    from . import kernels

    A = kernel_inputs(store)
    a = store.arrays
    nmax = _needed(store, models, counts)
    q_of_pool, _, pool_nmax = _pool_layout(store, nmax)
    per_q_entries = np.zeros(a.n_questions)
    np.add.at(per_q_entries, q_of_pool, pool_nmax * R)
    start = 0
    while start < len(qidx):
        # a chunk of questions whose memo fits in MEMO_ENTRIES
        stop = start + 1
        total = per_q_entries[qidx[start]]
        while stop < len(qidx) and total + per_q_entries[qidx[stop]] <= MEMO_ENTRIES:
            total += per_q_entries[qidx[stop]]
            stop += 1
        chunk = qidx[start:stop].astype(np.int64)
        m = memo_tables(store, nmax, chunk, replicates=R, seed=seed)
        kernels.memo_lookup(A, a.n_stages, a.n_models, chunk, start, R, models, counts,
                            m.pool_row, m.row_nmax, m.row_base, m.ans, m.score, m.tok, m.flag,
                            _lookup_blocks(per_q_entries[chunk], len(models)),
                            sums.score_q, sums.score_r, sums.tokens, sums.flops, sums.st_score, sums.st_tokens,
                            sums.st_fallback)
        if progress is not None:
            progress(len(models) * (stop - start) / len(qidx))
        start = stop


def estimate_units(store, config, *, questions=None) -> float:
    """Expected cost of a configuration in budget units, from pool means, without replay.

    Exact in expectation for stage 1; for later stages it averages over that (question, stage,
    model)'s pools, since which pool is used depends on upstream luck. Searchers use it to
    avoid proposing configurations that are clearly over budget; feasibility itself is decided
    by the replay's measured cost.

    Args:
        store: the store.
        config: a configuration, as `evaluate` takes it.
        questions: which questions (as in `evaluate`).
    """
    cfg = as_config(store, config)
    qidx = store.question_indices(questions)
    prompt, comp, fuse = pool_means(store)
    total = np.zeros(len(qidx))
    for s, ch in enumerate(cfg.stages):
        m = store.model_index(ch.model)
        tk = prompt[qidx, s, m] + ch.samples * comp[qidx, s, m] + fuse[qidx, s, m]
        total += 2.0 * store.arrays.model_params[m] * tk
    return float(total.mean()) / budget_unit(store)


def pool_means(store) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean prompt, completion-per-sample and fusion-call tokens, each [Q, S, M]
    (`store.derived.pool_means`)."""
    return store.derived.pool_means


_pool_means = pool_means  # the name search/ and older code import


@dataclass(frozen=True)
class SpaceScan:
    """Every configuration of a product space, scored: configuration (i, k) is prefix i (a
    choice index per stage but the last, `prefix_idx[i]`) followed by last-stage choice k."""

    choices: tuple[tuple[StageChoice, ...], ...]  # per stage
    prefix_idx: np.ndarray  # [P, S-1] choice indices
    score: np.ndarray  # [P, K] mean score over questions and replicates
    stderr: np.ndarray  # [P, K] the replicate error (standard error over replicates)
    units: np.ndarray  # [P, K] mean cost in budget units per question, measured
    ci_lo: np.ndarray | None = None  # [P, K] the 95% interval over questions (replay.stats)
    ci_hi: np.ndarray | None = None
    expected: np.ndarray | None = None  # [P, K] expected cost (`expected_units`): the budget rule

    def config(self, i: int, k: int) -> Config:
        head = tuple(self.choices[s][j] for s, j in enumerate(self.prefix_idx[i]))
        return Config(head + (self.choices[-1][k],))

    def best(self, budget: float | None = None) -> tuple[Config, float, float] | None:
        """(config, score, units) of the best feasible configuration: highest score, then cheapest.
        Feasible by the budget rule (the expected cost) when the scan has it."""
        cost = self.units if self.expected is None else self.expected
        ok = np.ones_like(self.score, dtype=bool) if budget is None else cost <= budget * (1 + 1e-9)
        if not ok.any():
            return None
        key = np.where(ok, self.score, -np.inf).ravel()
        j = int(np.lexsort((self.units.ravel(), -key))[0])
        i, k = divmod(j, self.score.shape[1])
        return self.config(i, k), float(self.score[i, k]), float(self.units[i, k])


def scan_space(store, choices: Sequence[Sequence[StageChoice]], *, questions=None, replicates: int = 16,
               seed: int = 0, device: str | None = None) -> SpaceScan:
    """Score every configuration of the product of per-stage choices, exactly as
    evaluate_batch would, in two compiled calls: the memo tables of every pool the choices can
    reach (once per question and replicate), then a scan of the product by table lookups,
    parallel over prefixes, with no Python object per configuration.

    Args:
        store: the store.
        choices: per stage, its `StageChoice`s (the last stage's are regrouped by model).
        questions: which questions (as in `evaluate`).
        replicates: random draws per question.
        seed: the seed of every draw.
        device: 'cpu', 'cuda', 'auto' or None ($TTS_REPLAY_DEVICE, else 'cpu';
            `replay.gpu.resolve_device`): the same numbers on each. For the best
            configurations of a space too large to hold every score: `replay.scan_top.scan_top`.

    Returns:
        A `SpaceScan`: score, replicate error, 95% interval over questions and cost of every
        configuration.

    Raises:
        ConfigError: a stage without choices, an invalid choice, or device 'cuda' without a
            usable GPU.
    """
    from . import kernels
    from .gpu import resolve_device

    choices, ch_model, ch_count, n_ch = _scan_setup(store, choices)
    a = store.arrays
    S = a.n_stages
    qidx = store.question_indices(questions).astype(np.int64)
    Q, R = len(qidx), replicates
    dev = resolve_device(device, work=float(np.prod(n_ch)) * Q * R * S)
    # every prefix (a choice index per stage but the last), in mixed-radix order
    grids = np.meshgrid(*[np.arange(n) for n in n_ch[: S - 1]], indexing="ij")
    prefix_idx = np.stack([g.ravel() for g in grids], axis=1).astype(np.int64) if S > 1 else np.zeros((1, 0), np.int64)
    P, KL = len(prefix_idx), int(n_ch[S - 1])
    # memo tables for every (stage, model) the choices use, up to the largest count asked
    nmax = _needed_of_choices(store, ch_model, ch_count, n_ch)
    if dev == "cuda":
        from .gpu.host import scan_sums

        parts = list(scan_sums(store, ch_model, ch_count, n_ch, qidx, _pool_layout(store, nmax), replicates=R,
                               seed=seed))
        tot, sq, q_sq, q_ends, flops = (np.concatenate([p[2 + j] for p in parts]) for j in range(5))
    else:
        memo = memo_tables(store, nmax, qidx, replicates=replicates, seed=seed)
        tot, sq, q_sq, q_ends, flops = (np.zeros((P, KL)) for _ in range(5))
        kernels.scan_product(kernel_inputs(store), S, a.n_models, qidx, replicates, ch_model, ch_count, n_ch,
                             prefix_idx, memo.pool_row, memo.row_nmax, memo.row_base, memo.ans, memo.score, memo.tok,
                             tot, sq, q_sq, q_ends, flops)
    mean, stderr, ci_lo, ci_hi, units = _scan_stats(store, tot, sq, q_sq, q_ends, flops, Q, R)
    # the expected cost (the budget rule) is a sum over stages: one figure per choice, added up
    expected = _scan_expected(store, ch_model, ch_count, n_ch, prefix_idx)
    return SpaceScan(choices=choices, prefix_idx=prefix_idx, score=mean, stderr=stderr,
                     units=units, ci_lo=ci_lo, ci_hi=ci_hi, expected=expected)


def _needed_of_choices(store, ch_model, ch_count, n_ch) -> np.ndarray:
    """(stage, model) -> the largest count a product scan's choices ask of it, int64 [S, M]."""
    S = ch_model.shape[0]
    nmax = np.zeros((S, store.arrays.n_models), dtype=np.int64)
    for s in range(S):
        np.maximum.at(nmax[s], ch_model[s, : n_ch[s]], ch_count[s, : n_ch[s]])
    return nmax


def _scan_setup(store, choices):
    """The choices of a product scan as arrays: (choices with the last stage's grouped by model,
    ch_model [S, K], ch_count [S, K], n_ch [S])."""
    choices = tuple(tuple(c) for c in choices)
    a = store.arrays
    S = a.n_stages
    if len(choices) != S or any(not c for c in choices):
        raise ConfigError("scan", f"need a non-empty list of choices for each of the {S} stages")
    K = max(len(c) for c in choices)
    ch_model = np.zeros((S, K), dtype=np.int64)
    ch_count = np.ones((S, K), dtype=np.int64)
    for s, cs in enumerate(choices):
        # the last stage's choices are grouped by model so the scan finds each pool once
        order = sorted(range(len(cs)), key=lambda j: store.model_index(cs[j].model)) if s == S - 1 else range(len(cs))
        cs = tuple(cs[j] for j in order)
        choices = choices[:s] + (cs,) + choices[s + 1:]
        for k, ch in enumerate(cs):
            if not a.stage_model_ok[s, store.model_index(ch.model)] or ch.samples < 1:
                raise ConfigError("scan", f"stage {store.manifest.stage_names[s]!r}: invalid choice {ch}")
            ch_model[s, k] = store.model_index(ch.model)
            ch_count[s, k] = ch.samples
    n_ch = np.array([len(c) for c in choices], dtype=np.int64)
    return choices, ch_model, ch_count, n_ch


def _scan_stats(store, tot, sq, q_sq, q_ends, flops, Q: int, R: int):
    """A scan's sums (kernels.scan_product) as (mean, replicate error, 95% interval over
    questions lo and hi, measured units)."""
    mean = tot / (Q * R)
    if R > 1:
        var = (sq / Q**2 - R * mean**2) / (R - 1)  # variance of the per-replicate means
        stderr = np.sqrt(np.maximum(var, 0.0) / R)
    else:
        stderr = np.full_like(mean, np.nan)
    if Q > 1:  # the per-question means x_q = q_sum / R: their sample variance
        q_var = np.maximum((q_sq / R**2 - Q * mean**2) / (Q - 1), 0.0)
    else:
        q_var = np.zeros_like(mean)
    ci_lo, ci_hi = intervals(mean, np.sqrt(q_var), Q, bounds=score_bounds(store), at_ends=q_ends / Q)
    return mean, stderr, ci_lo, ci_hi, flops / (Q * R) / budget_unit(store)


def _scan_expected(store, ch_model, ch_count, n_ch, prefix_idx) -> np.ndarray:
    """[P, K] expected cost of every scanned configuration: per-stage figures, summed."""
    from .expected import expected_units_table

    table = expected_units_table(store, budget_unit(store))
    S = ch_model.shape[0]
    per = table[np.arange(S)[:, None], ch_model, np.minimum(ch_count, table.shape[2] - 1)]  # [S, K]
    head = np.zeros(len(prefix_idx))
    for s in range(S - 1):
        head += per[s, prefix_idx[:, s]]
    return head[:, None] + per[S - 1, None, : int(n_ch[S - 1])]
