"""The simulation spec: frozen dataclasses, parsed from YAML or JSON with one-line errors.

Every field, its default and its meaning is documented in docs/simulate.md; keep the two in
step. Parsing is strict: an unknown key is an error (a typo must not silently fall back to a
default), and every error names the file and the field path, e.g.
`spec.yaml: stages[1].fuse.decay: must be >= 0, got -1`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from replay import schema as S
from replay.errors import InputError


MAX_SIM_TOKENS = 1_000_000  # tokens per simulated output: beyond any real prompt or completion
MAX_SIM_SAMPLES = 50_000_000  # samples one simulated store holds at most (a few GB)


class SpecError(InputError):
    """A simulation spec is malformed: the message names the file and the field."""


# --------------------------------------------------------------------------------------------
# Dataclasses (defaults here are the documented defaults)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    params: float  # parameter count: FLOPs = 2 x params x tokens
    ability: float = 0.0  # logit of a correct sample on an average question, every stage...
    stage_ability: Mapping[str, float] = field(default_factory=dict)  # ...unless overridden per stage
    long_input_sensitivity: float = 0.0  # logit lost per 1000 prompt tokens beyond `long_input_from`
    verbosity: float = 1.0  # multiplies the stage's completion lengths
    description: str = ""

    def ability_on(self, stage: str) -> float:
        return float(self.stage_ability.get(stage, self.ability))


@dataclass(frozen=True)
class ItemsSpec:
    """List answers of a set_vote stage (e.g. the tools a plan calls)."""

    catalog: int = 24  # distinct item names the stage draws from
    gold_min: int = 1  # size of the gold list, uniform in [gold_min, gold_max]
    gold_max: int = 4
    distractors: int = 4  # plausible wrong items per question, recurring across samples
    spurious: float = 1.2  # expected wrong items per sample when a sample is fully wrong
    item_sd: float = 0.6  # per-item spread of difficulty (logit) around the sample's logit


@dataclass(frozen=True)
class FuseSpec:
    """Stored LLM fusions of an llm_fuse stage."""

    max_size: int = 16  # fusions are stored for every subset size 1..max_size
    per_size: int = 4  # stored fusions per pool and size (replay draws one uniformly)
    decay: float = 0.15  # chance the fuser loses track grows as 1 - exp(-decay' (S-1)) ...
    size_exponent: float = 0.5  # ... with decay' = decay x (params / 1e9) ** -size_exponent
    verify_bonus: float = 1.0  # logit bonus of recognising a right candidate over generating it
    prompt_tokens: int = 150  # instruction tokens of a fusion call (the candidates come on top)
    completion_tokens: int = 0  # fused output length; 0 = the stage's completion length


@dataclass(frozen=True)
class StageSpec:
    name: str
    aggregation: str = "majority_vote"
    scorer: str = ""  # documentation; default from the aggregation (exact_match / item_f1)
    description: str = ""
    models: tuple[str, ...] = ()  # candidate models; empty = every model
    difficulty: float = 0.0  # logit offset added to every question's difficulty on this stage
    prompt_tokens: int = 400  # mean prompt length (one prefill per pool)
    completion_tokens: int = 100  # mean completion length of one sample
    token_cv: float = 0.35  # spread (lognormal sigma) of completion lengths
    chain_penalty: float = 0.0  # logit lost when the upstream answer is wrong (x (1 - its quality))
    chain_lock: float = 1.0  # weight a wrong upstream answer adds to one downstream wrong answer
    dependency: str = "conditional"  # "independent": one pool per question, whatever the upstream answer
    distractors: int | None = None  # None = the spec-level `answers` default
    concentration: float | None = None
    rare: int | None = None
    rare_share: float | None = None
    partial_credit: float | None = None
    items: ItemsSpec | None = None  # set_vote only
    fuse: FuseSpec | None = None  # llm_fuse only


@dataclass(frozen=True)
class AnswersSpec:
    """How wrong answers are spread (spec-wide defaults; stages may override)."""

    distractors: int = 4  # plausible wrong answers per question and stage, shared by all models
    concentration: float = 0.6  # Dirichlet concentration of their weights: small = one dominant trap
    rare: int = 8  # a long tail of rarely given wrong answers
    rare_share: float = 0.15  # share of the wrong mass that goes to the rare tail
    partial_credit: float = 0.0  # score of a wrong answer is uniform in [0, partial_credit]


@dataclass(frozen=True)
class DifficultySpec:
    mean: float = 0.0  # logit difficulty of the average question
    sd: float = 1.2  # spread of question difficulty (shared by all stages)
    stage_sd: float = 0.5  # extra per-stage spread
    model_sd: float = 0.4  # per (question, stage, model) spread: models disagree on what is hard
    context_sd: float = 0.3  # per (question, stage, upstream answer) spread


@dataclass(frozen=True)
class SimSpec:
    name: str
    models: tuple[ModelSpec, ...]
    stages: tuple[StageSpec, ...]
    description: str = ""
    questions: int = 100
    train_fraction: float = 0.5
    samples: int = 64  # pool size: samples per (question, stage, model, upstream answer)
    keys_per_question: int = 4  # upstream answers expanded into downstream pools, per question
    score_rule: str = "last"  # how stage scores make the end-to-end score (replay.schema.SCORE_RULES)
    long_input_from: int = 500  # prompt tokens a model reads without loss
    difficulty: DifficultySpec = field(default_factory=DifficultySpec)
    answers: AnswersSpec = field(default_factory=AnswersSpec)

    def to_json(self) -> dict[str, Any]:
        """The full spec, defaults filled in: this is what goes into the store's provenance."""

        def clean(x):
            if isinstance(x, ModelSpec):  # ability in its spec form: a number, or per stage
                d = {f.name: clean(getattr(x, f.name)) for f in dataclasses.fields(x) if f.name != "stage_ability"}
                if x.stage_ability:
                    d["ability"] = {"default": x.ability, **x.stage_ability}
                return d
            if dataclasses.is_dataclass(x):
                return {f.name: clean(getattr(x, f.name)) for f in dataclasses.fields(x)}
            if isinstance(x, (tuple, list)):
                return [clean(v) for v in x]
            if isinstance(x, Mapping):
                return {k: clean(v) for k, v in x.items()}
            return x

        return clean(self)

    def stage_answers(self, st: StageSpec) -> AnswersSpec:
        """The answer-spread parameters of a stage: its overrides over the spec-level ones."""
        over = {f.name: getattr(st, f.name) for f in dataclasses.fields(AnswersSpec) if getattr(st, f.name) is not None}
        return dataclasses.replace(self.answers, **over)

    def candidates(self, st: StageSpec) -> tuple[str, ...]:
        return st.models or tuple(m.name for m in self.models)


# --------------------------------------------------------------------------------------------
# Parsing


class _Reader:
    """Reads one mapping of the spec, checking types and ranges, naming the field on error."""

    def __init__(self, where: str, path: str, raw: Any):
        self.where, self.path = where, path
        if not isinstance(raw, Mapping):
            self.fail(f"must be a mapping, got {type(raw).__name__}")
        self.raw = dict(raw)
        self.used: set[str] = set()

    def fail(self, problem: str, key: str | None = None):
        name = f"{self.path}.{key}" if key and self.path else (key or self.path or "spec")
        raise SpecError(self.where, f"{name}: {problem}")

    def has(self, key: str) -> bool:
        return key in self.raw

    def get(self, key: str, kind: type, default: Any = dataclasses.MISSING, lo: float | None = None,
            hi: float | None = None, lo_open: bool = False, choices: tuple | None = None) -> Any:
        self.used.add(key)
        if key not in self.raw or self.raw[key] is None:
            if default is dataclasses.MISSING:
                self.fail("missing (required)", key)
            return default
        v = self.raw[key]
        if kind is float:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                self.fail(f"must be a number, got {v!r}", key)
            v = float(v)
        elif kind is int:
            if isinstance(v, bool) or not (isinstance(v, int) or (isinstance(v, float) and v.is_integer())):
                self.fail(f"must be an integer, got {v!r}", key)
            v = int(v)
        elif kind is str:
            if not isinstance(v, str):
                self.fail(f"must be a string, got {v!r}", key)
        if lo is not None and (v < lo or (lo_open and v == lo)):
            self.fail(f"must be {'>' if lo_open else '>='} {lo:g}, got {v!r}", key)
        if hi is not None and v > hi:
            self.fail(f"must be <= {hi:g}, got {v!r}", key)
        if choices is not None and v not in choices:
            self.fail(f"must be one of {', '.join(map(str, choices))}, got {v!r}", key)
        return v

    def sub(self, key: str) -> "_Reader | None":
        self.used.add(key)
        if key not in self.raw or self.raw[key] is None:
            return None
        return _Reader(self.where, f"{self.path}.{key}" if self.path else key, self.raw[key])

    def done(self) -> None:
        extra = sorted(set(self.raw) - self.used)
        if extra:
            self.fail(f"unknown field {extra[0]!r} (see docs/simulate.md)")


def _dataclass_from(reader: _Reader | None, cls, ranges: dict[str, dict]) -> Any:
    """Read a flat dataclass of numbers: each field optional, default from the class."""
    if reader is None:
        return cls()
    kw = {}
    for f in dataclasses.fields(cls):
        kind = int if f.type in ("int", int) else float
        kw[f.name] = reader.get(f.name, kind, f.default, **ranges.get(f.name, {}))
    reader.done()
    return cls(**kw)


_DIFF_RANGES = {"sd": {"lo": 0}, "stage_sd": {"lo": 0}, "model_sd": {"lo": 0}, "context_sd": {"lo": 0}}
_ANS_RANGES = {"distractors": {"lo": 1, "hi": 50}, "concentration": {"lo": 0, "lo_open": True},
               "rare": {"lo": 0, "hi": 200}, "rare_share": {"lo": 0, "hi": 1}, "partial_credit": {"lo": 0, "hi": 1}}
_ITEM_RANGES = {"catalog": {"lo": 2, "hi": 10_000}, "gold_min": {"lo": 1}, "gold_max": {"lo": 1},
                "distractors": {"lo": 0}, "spurious": {"lo": 0}, "item_sd": {"lo": 0}}
_FUSE_RANGES = {"max_size": {"lo": 1}, "per_size": {"lo": 1, "hi": 64}, "decay": {"lo": 0},
                "size_exponent": {"lo": 0}, "verify_bonus": {}, "prompt_tokens": {"lo": 0},
                "completion_tokens": {"lo": 0}}


def _model(r: _Reader, stage_names: set[str]) -> ModelSpec:
    name = r.get("name", str)
    if not name.strip() or ":" in name or "," in name or "=" in name:
        r.fail(f"must be non-empty and free of ':', ',' and '=' (config syntax), got {name!r}", "name")
    stage_ability: dict[str, float] = {}
    ability = 0.0
    r.used.add("ability")
    raw_ab = r.raw.get("ability")
    if isinstance(raw_ab, Mapping):
        for k, v in raw_ab.items():
            if k == "default":
                continue
            if k not in stage_names:
                r.fail(f"names unknown stage {k!r}", "ability")
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                r.fail(f"{k}: must be a number, got {v!r}", "ability")
            stage_ability[str(k)] = float(v)
        default = raw_ab.get("default", 0.0)
        if isinstance(default, bool) or not isinstance(default, (int, float)):
            r.fail(f"default: must be a number, got {default!r}", "ability")
        ability = float(default)
    elif raw_ab is not None:
        ability = r.get("ability", float)
    m = ModelSpec(
        name=name,
        params=r.get("params", float, lo=0, lo_open=True),
        ability=ability,
        stage_ability=stage_ability,
        long_input_sensitivity=r.get("long_input_sensitivity", float, 0.0, lo=0),
        verbosity=r.get("verbosity", float, 1.0, lo=0, lo_open=True),
        description=r.get("description", str, ""),
    )
    r.done()
    return m


def _stage(r: _Reader, model_names: list[str], first: bool, last: bool) -> StageSpec:
    name = r.get("name", str)
    if not name.strip():
        r.fail("must be non-empty", "name")
    agg = r.get("aggregation", str, "majority_vote", choices=S.AGGREGATIONS)
    models = r.raw.get("models") or ()
    r.used.add("models")
    if isinstance(models, str) or not all(isinstance(m, str) for m in models):
        r.fail("must be a list of model names", "models")
    for m in models:
        if m not in model_names:
            r.fail(f"names unknown model {m!r} (models: {', '.join(model_names)})", "models")
    items_r, fuse_r = r.sub("items"), r.sub("fuse")
    if items_r is not None and agg != "set_vote":
        r.fail(f"only a set_vote stage has items (this one is {agg})", "items")
    if fuse_r is not None and agg != "llm_fuse":
        r.fail(f"only an llm_fuse stage has fuse settings (this one is {agg})", "fuse")
    items = _dataclass_from(items_r, ItemsSpec, _ITEM_RANGES) if agg == "set_vote" else None
    if items is not None and items.gold_max < items.gold_min:
        r.fail(f"gold_max ({items.gold_max}) < gold_min ({items.gold_min})", "items")
    if items is not None and items.gold_max + items.distractors > min(items.catalog, 60):
        r.fail("gold_max + distractors must fit in the catalog (and be at most 60)", "items")
    fuse = _dataclass_from(fuse_r, FuseSpec, _FUSE_RANGES) if agg == "llm_fuse" else None
    if fuse is not None and fuse.max_size > 64:
        r.fail("max_size must be <= 64", "fuse")
    default_scorer = "item_f1" if agg == "set_vote" else "exact_match"
    st = StageSpec(
        name=name,
        aggregation=agg,
        scorer=r.get("scorer", str, default_scorer),
        description=r.get("description", str, ""),
        models=tuple(models),
        difficulty=r.get("difficulty", float, 0.0),
        prompt_tokens=r.get("prompt_tokens", int, 400, lo=1, hi=MAX_SIM_TOKENS),
        completion_tokens=r.get("completion_tokens", int, 100, lo=1, hi=MAX_SIM_TOKENS),
        token_cv=r.get("token_cv", float, 0.35, lo=0, hi=3),
        chain_penalty=r.get("chain_penalty", float, 0.0, lo=0),
        chain_lock=r.get("chain_lock", float, 1.0, lo=0),
        dependency=r.get("dependency", str, "conditional", choices=S.DEPENDENCIES),
        distractors=r.get("distractors", int, None, **_ANS_RANGES["distractors"]),
        concentration=r.get("concentration", float, None, **_ANS_RANGES["concentration"]),
        rare=r.get("rare", int, None, **_ANS_RANGES["rare"]),
        rare_share=r.get("rare_share", float, None, **_ANS_RANGES["rare_share"]),
        partial_credit=r.get("partial_credit", float, None, **_ANS_RANGES["partial_credit"]),
        items=items,
        fuse=fuse,
    )
    if first and (st.chain_penalty or st.chain_lock != 1.0):
        r.fail("the first stage has no upstream stage", "chain_penalty" if st.chain_penalty else "chain_lock")
    if st.dependency == "independent" and (st.chain_penalty or st.chain_lock != 1.0):
        r.fail("an independent stage does not depend on the upstream answer",
               "chain_penalty" if st.chain_penalty else "chain_lock")
    r.done()
    return st


def spec_from_dict(raw: Any, where: str = "spec") -> SimSpec:
    """Build a SimSpec from a parsed YAML/JSON mapping; raises SpecError naming the field."""
    r = _Reader(where, "", raw)
    name = r.get("name", str)
    if not name.startswith("sim-"):
        r.fail(f"a synthetic store's name must start with 'sim-', got {name!r}", "name")
    from replay.errors import StoreError
    from replay.store import check_store_name

    try:
        check_store_name(name, "name", error=StoreError)
    except StoreError as e:
        r.fail(e.problem, "name")
    raw_models = r.raw.get("models")
    raw_stages = r.raw.get("stages")
    r.used.update(("models", "stages"))
    if not isinstance(raw_stages, list) or not raw_stages:
        r.fail("missing or empty: a list of stages", "stages")
    if not isinstance(raw_models, list) or not raw_models:
        r.fail("missing or empty: a list of models", "models")
    stage_names = []
    for i, st in enumerate(raw_stages):
        if not isinstance(st, Mapping) or not isinstance(st.get("name"), str):
            r.fail("needs a string 'name'", f"stages[{i}]")
        stage_names.append(st["name"])
    if len(set(stage_names)) != len(stage_names):
        r.fail("duplicate stage names", "stages")
    models = tuple(_model(_Reader(where, f"models[{i}]", m), set(stage_names)) for i, m in enumerate(raw_models))
    model_names = [m.name for m in models]
    if len(set(model_names)) != len(model_names):
        r.fail("duplicate model names", "models")
    n = len(raw_stages)
    stages = tuple(
        _stage(_Reader(where, f"stages[{i}]", st), model_names, i == 0, i == n - 1) for i, st in enumerate(raw_stages)
    )
    spec = SimSpec(
        name=name,
        description=r.get("description", str, ""),
        models=models,
        stages=stages,
        questions=r.get("questions", int, 100, lo=2, hi=1_000_000),
        train_fraction=r.get("train_fraction", float, 0.5, lo=0, hi=1),
        samples=r.get("samples", int, 64, lo=1, hi=4096),
        keys_per_question=r.get("keys_per_question", int, 4, lo=1, hi=64),
        score_rule=r.get("score_rule", str, "last", choices=S.SCORE_RULES),
        long_input_from=r.get("long_input_from", int, 500, lo=0),
        difficulty=_dataclass_from(r.sub("difficulty"), DifficultySpec, _DIFF_RANGES),
        answers=_dataclass_from(r.sub("answers"), AnswersSpec, _ANS_RANGES),
    )
    r.done()
    for st in spec.stages:
        if st.fuse is not None and st.fuse.max_size > spec.samples:
            raise SpecError(where, f"stages.{st.name}.fuse.max_size ({st.fuse.max_size}) exceeds samples ({spec.samples})")
    total = sum(spec.questions * spec.samples * (len(st.models) or len(spec.models)) * (1 if i == 0 else spec.keys_per_question)
                for i, st in enumerate(spec.stages))
    if total > MAX_SIM_SAMPLES:
        raise SpecError(where, f"questions x samples x models x upstream keys is about {total:,} samples, more than "
                        f"{MAX_SIM_SAMPLES:,} (tens of GB): fewer questions or samples")
    return spec


def load_spec(path: str | Path) -> SimSpec:
    """Read a YAML (.yaml/.yml) or JSON spec file."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(path, "no such spec file (or give a preset name: see `collect simulate --help`)")
    return spec_from_dict(read_spec_file(path), str(path))


def read_spec_file(path: str | Path) -> Any:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(path, f"cannot read ({' '.join(str(e).split())})") from None
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise SpecError(path, f"not valid JSON ({e})") from None
        except RecursionError:
            raise SpecError(path, "not a spec: JSON nested too deeply") from None
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SpecError(path, f"not valid YAML ({' '.join(str(e).split())})") from None
    except RecursionError:
        raise SpecError(path, "not a spec: YAML nested too deeply") from None
