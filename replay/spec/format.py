"""The pipeline spec: a chosen allocation written down so that it can be run on new questions.

A spec is what `replay export` / `search export` write and `collect live --spec` runs: per
stage (or, for a collaboration graph, per node) the model, the sample count and the
aggregation; the task whose prompts, parser and scorer the collection used; the sampling
settings of the collection; and where the allocation came from, with the replay's estimate of
its score and cost on the store. Every field is documented in docs/spec-format.md.

Why JSON (and not YAML) is what we write: the spec is typed data passed between tools, as the
store manifest and `summary.json` are; JSON keeps model names and numbers exactly as written
(YAML reads a model called `no` as false, `1e3` as a number), needs no dependency to read, and
round-trips byte for byte. A hand-written spec may still be YAML (`.yaml`/`.yml`), read with the
same checks.

    spec = read_spec("spec.json")              # checked: one InputError line per problem
    write_spec(spec, "spec.json")              # atomic
    PipelineSpec.from_dict(d, where="spec.json")
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import InputError

SPEC_FORMAT = "tts-replay-pipeline-spec"
SPEC_VERSION = 1
KINDS = ("chain", "graph")
PROMPT_STYLES = ("chat", "completion")


@dataclass(frozen=True)
class SpecStage:
    """One stage of a chain: `samples` outputs of `model`, aggregated by `aggregation`; the
    aggregated answer goes into the next stage's prompt."""

    name: str  # the task's stage name
    model: str  # the model's name in the store
    model_id: str  # what the backend is asked for (hub id, path or server model name)
    samples: int
    aggregation: str  # replay.schema.AGGREGATIONS
    prompt_style: str = "chat"  # chat (chat messages) or completion (the task's few-shot text)


@dataclass(frozen=True)
class SpecNode:
    """One node of a collaboration graph: a role, a model, a sample count and its parents."""

    name: str
    role: str  # solve, refine or aggregate
    model: str
    model_id: str
    samples: int
    aggregation: str
    inputs: tuple[str, ...] = ()  # parent nodes, whose aggregated answers the node reads
    prompt_style: str = "chat"


@dataclass(frozen=True)
class Sampling:
    """The collection's sampling settings (the live run uses them, so that it draws what replay drew)."""

    temperature: float
    max_tokens: int


@dataclass(frozen=True)
class Prompts:
    """What is known of the prompts: the store records the task and each model's prompt style,
    never the prompt text, which the task's code builds."""

    text_recorded: bool  # false for every store so far: the text comes from the task's code
    source: str  # in words: where the prompts come from
    collected_with: str | None = None  # tts-replay version that collected the store (its task code)


@dataclass(frozen=True)
class Origin:
    """Where the allocation came from."""

    store: str  # store name
    store_path: str
    synthetic: bool
    chosen_from: str  # "config", "search summary" or "frontier"
    config: str  # the configuration text (replay's form)
    detail: dict = field(default_factory=dict)  # e.g. the summary file and searcher, the frontier budget


@dataclass(frozen=True)
class ReplayEstimate:
    """The replay's estimate of the allocation on the store's questions."""

    questions: str  # which: "test (N questions)" or "all (N questions)"
    n_questions: int
    score: float
    ci_lo: float  # 95% interval over questions
    ci_hi: float
    tokens_per_question: float
    units_per_question: float


@dataclass(frozen=True)
class PipelineSpec:
    """A runnable allocation: see the module docstring and docs/spec-format.md."""

    kind: str  # chain or graph
    task: str | None  # the collect task; None: the store names none (synthetic or imported)
    stages: tuple[SpecStage, ...]  # chain: the stages in order; graph: ()
    nodes: tuple[SpecNode, ...]  # graph: nodes in topological order; chain: ()
    output: tuple[str, ...]  # graph: the output node, or several put to a vote; chain: ()
    sampling: Sampling
    prompts: Prompts
    origin: Origin
    replay: ReplayEstimate | None = None
    notes: tuple[str, ...] = ()  # what the user must know before running it (in words)
    format: str = SPEC_FORMAT
    version: int = SPEC_VERSION

    @property
    def steps(self) -> tuple[SpecStage | SpecNode, ...]:
        return self.stages if self.kind == "chain" else self.nodes

    @property
    def config_text(self) -> str:
        """The allocation in replay's text form ('M:S,M:S' or the graph's statements)."""
        if self.kind == "chain":
            return ",".join(f"{s.model}:{s.samples}" for s in self.stages)
        from ..graph.config import Node  # the graph's own text form of a node

        body = "; ".join(str(Node(n.name, n.role, n.model, n.samples, n.inputs)) for n in self.nodes)
        out = self.output[0] if len(self.output) == 1 else f"vote({','.join(self.output)})"
        return f"{body}; output={out}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        order = ["format", "version", "kind", "task", "stages", "nodes", "output", "sampling", "prompts", "origin",
                 "replay", "notes"]
        d = {k: d[k] for k in order}
        d["stages"] = [dict(s) for s in d["stages"]]
        d["nodes"] = [{**n, "inputs": list(n["inputs"])} for n in d["nodes"]]
        d["output"], d["notes"] = list(d["output"]), list(d["notes"])
        return d

    @classmethod
    def from_dict(cls, d: Any, *, where: str = "spec") -> "PipelineSpec":
        """A spec from its JSON form, every field checked.

        Raises:
            InputError: one line, `WHERE: FIELD: problem`.
        """
        return _parse(d, where)


# ---- reading and writing

def write_spec(spec: PipelineSpec, path: str | Path) -> Path:
    """Write `spec` as JSON, atomically (a temp file, then renamed)."""
    from ..atomic import atomic_path
    from ..clitools import json_safe

    path = Path(path)
    text = json.dumps(json_safe(spec.to_dict()), indent=2, allow_nan=False) + "\n"  # NaN (unknown) as null
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def read_spec(path: str | Path) -> PipelineSpec:
    """Read and check a spec file (JSON; YAML for `.yaml`/`.yml`).

    Raises:
        InputError: one line naming the file and what is wrong.
    """
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise InputError(where, "no such spec file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(where, f"cannot read the spec ({e})") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise InputError(where, f"not YAML ({' '.join(str(e).split())})") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(where, f"not JSON ({e.msg}, line {e.lineno})") from None
        except RecursionError:
            raise InputError(where, "not JSON (nested too deeply)") from None
    return _parse(data, where)


# ---- checks

def _obj(d: Any, where: str, name: str, cls) -> dict:
    if not isinstance(d, dict):
        raise InputError(where, f"{name}: expected an object, got {type(d).__name__}")
    known = {f.name for f in fields(cls)}
    extra = sorted(set(d) - known)
    if extra:
        raise InputError(where, f"{name}: unknown field {extra[0]!r} (fields: {', '.join(sorted(known))})")
    return d


def _need(d: dict, key: str, where: str, name: str):
    if key not in d:
        raise InputError(where, f"{name}: missing field {key!r}")
    return d[key]


def _str(d: dict, key: str, where: str, name: str, *, optional: bool = False, choices=None) -> str | None:
    v = d.get(key) if optional else _need(d, key, where, name)
    if v is None and optional:
        return None
    if not isinstance(v, str) or not v.strip():
        raise InputError(where, f"{name}.{key}: expected a non-empty string, got {v!r}")
    if choices and v not in choices:
        raise InputError(where, f"{name}.{key}: {v!r} is not one of {', '.join(choices)}")
    return v


def _int(d: dict, key: str, where: str, name: str, lo: int = 1) -> int:
    v = _need(d, key, where, name)
    if not isinstance(v, int) or isinstance(v, bool) or v < lo:
        raise InputError(where, f"{name}.{key}: expected an integer >= {lo}, got {v!r}")
    return v


def _num(d: dict, key: str, where: str, name: str, *, optional: bool = False) -> float:
    v = d.get(key) if optional else _need(d, key, where, name)
    if v is None and optional:
        return float("nan")
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
        raise InputError(where, f"{name}.{key}: expected a finite number, got {v!r}")
    return float(v)


def _strs(d: dict, key: str, where: str, name: str) -> tuple[str, ...]:
    v = d.get(key, [])
    if not isinstance(v, list) or not all(isinstance(x, str) and x.strip() for x in v):
        raise InputError(where, f"{name}.{key}: expected a list of non-empty strings, got {v!r}")
    return tuple(v)


def _parse(d: Any, where: str) -> PipelineSpec:
    d = _obj(d, where, "spec", PipelineSpec)
    fmt = d.get("format")
    if fmt != SPEC_FORMAT:
        raise InputError(where, f"format: expected {SPEC_FORMAT!r}, got {fmt!r} (not a pipeline spec)")
    version = _need(d, "version", where, "spec")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InputError(where, f"version: expected an integer >= 1, got {version!r}")
    if version > SPEC_VERSION:
        raise InputError(where, f"version {version} is newer than this tts-replay reads ({SPEC_VERSION}); upgrade it")
    kind = _str(d, "kind", where, "spec", choices=KINDS)
    task = _str(d, "task", where, "spec", optional=True)
    for key in ("stages", "nodes", "output", "notes"):
        if not isinstance(d.get(key, []), list):
            raise InputError(where, f"{key}: expected a list, got {type(d[key]).__name__}")
    stages, nodes = [], []
    for i, s in enumerate(d.get("stages", [])):
        name = f"stages[{i}]"
        s = _obj(s, where, name, SpecStage)
        stages.append(SpecStage(name=_str(s, "name", where, name), model=_str(s, "model", where, name),
                                model_id=_str(s, "model_id", where, name), samples=_int(s, "samples", where, name),
                                aggregation=_str(s, "aggregation", where, name),
                                prompt_style=_str({"prompt_style": "chat", **s}, "prompt_style", where, name,
                                                  choices=PROMPT_STYLES)))
    for i, n in enumerate(d.get("nodes", [])):
        name = f"nodes[{i}]"
        n = _obj(n, where, name, SpecNode)
        nodes.append(SpecNode(name=_str(n, "name", where, name), role=_str(n, "role", where, name),
                              model=_str(n, "model", where, name), model_id=_str(n, "model_id", where, name),
                              samples=_int(n, "samples", where, name), aggregation=_str(n, "aggregation", where, name),
                              inputs=_strs(n, "inputs", where, name),
                              prompt_style=_str({"prompt_style": "chat", **n}, "prompt_style", where, name,
                                                choices=PROMPT_STYLES)))
    output = _strs(d, "output", where, "spec")
    if kind == "chain":
        if not stages:
            raise InputError(where, "stages: a chain spec needs at least one stage")
        if nodes or output:
            raise InputError(where, "nodes/output: belong to graph specs; this one is kind chain")
        names = [s.name for s in stages]
    else:
        if not nodes:
            raise InputError(where, "nodes: a graph spec needs at least one node")
        if stages:
            raise InputError(where, "stages: belong to chain specs; this one is kind graph")
        names = [n.name for n in nodes]
        seen: set[str] = set()
        for i, n in enumerate(nodes):  # topological order: a node reads only nodes listed before it
            for p in n.inputs:
                if p not in seen:
                    raise InputError(where, f"nodes[{i}].inputs: {p!r} is not a node listed before {n.name!r}")
            seen.add(n.name)
        if not output:
            raise InputError(where, "output: a graph spec names its output node(s)")
        for o in output:
            if o not in seen:
                raise InputError(where, f"output: {o!r} is not a node")
    if len(set(names)) != len(names):
        dup = next(x for x in names if names.count(x) > 1)
        raise InputError(where, f"{'stages' if kind == 'chain' else 'nodes'}: the name {dup!r} is used twice")
    sm = _obj(_need(d, "sampling", where, "spec"), where, "sampling", Sampling)
    temperature = _num(sm, "temperature", where, "sampling")
    if temperature < 0:
        raise InputError(where, f"sampling.temperature: must be >= 0, got {temperature}")
    sampling = Sampling(temperature=temperature, max_tokens=_int(sm, "max_tokens", where, "sampling"))
    pr = _obj(_need(d, "prompts", where, "spec"), where, "prompts", Prompts)
    rec = _need(pr, "text_recorded", where, "prompts")
    if not isinstance(rec, bool):
        raise InputError(where, f"prompts.text_recorded: expected true or false, got {rec!r}")
    prompts = Prompts(text_recorded=rec, source=_str(pr, "source", where, "prompts"),
                      collected_with=_str(pr, "collected_with", where, "prompts", optional=True))
    og = _obj(_need(d, "origin", where, "spec"), where, "origin", Origin)
    syn = _need(og, "synthetic", where, "origin")
    if not isinstance(syn, bool):
        raise InputError(where, f"origin.synthetic: expected true or false, got {syn!r}")
    detail = og.get("detail", {})
    if not isinstance(detail, dict):
        raise InputError(where, f"origin.detail: expected an object, got {type(detail).__name__}")
    origin = Origin(store=_str(og, "store", where, "origin"), store_path=_str(og, "store_path", where, "origin"),
                    synthetic=syn, chosen_from=_str(og, "chosen_from", where, "origin"),
                    config=_str(og, "config", where, "origin"), detail=detail)
    rp = d.get("replay")
    estimate = None
    if rp is not None:
        rp = _obj(rp, where, "replay", ReplayEstimate)
        estimate = ReplayEstimate(questions=_str(rp, "questions", where, "replay"),
                                  n_questions=_int(rp, "n_questions", where, "replay"),
                                  score=_num(rp, "score", where, "replay", optional=True),
                                  ci_lo=_num(rp, "ci_lo", where, "replay", optional=True),
                                  ci_hi=_num(rp, "ci_hi", where, "replay", optional=True),
                                  tokens_per_question=_num(rp, "tokens_per_question", where, "replay", optional=True),
                                  units_per_question=_num(rp, "units_per_question", where, "replay", optional=True))
    notes = d.get("notes", [])
    if not all(isinstance(x, str) for x in notes):
        raise InputError(where, "notes: expected a list of strings")
    return PipelineSpec(kind=kind, task=task, stages=tuple(stages), nodes=tuple(nodes), output=output,
                        sampling=sampling, prompts=prompts, origin=origin, replay=estimate, notes=tuple(notes))
