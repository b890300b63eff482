"""Simulated graph stores: pools per (role, model, question, input key) for collaboration graphs.

A graph spec (`kind: graph`; docs/simulate.md, "Graph stores") describes questions, models of
two or more families and sizes, and how each role behaves; `simulate_graph(spec, out, seed)`
writes a store of `kind: "graph"` with the roles `solve`, `refine`, `aggregate`, named
`sim-...`, marked synthetic, with the spec and seed in its provenance. The model:

* Every question has a difficulty d (logit); answers are the gold, `wrong` plausible wrong
  answers whose weights (Dirichlet, `concentration`) every model shares (the largest is the
  question's trap), one "overthought" answer (what refiners talk a right answer into), and
  `rare` rarely given ones.
* solve: right with p = sigmoid(ability(m) - d + N(0, model_sd) per (question, model)); the
  wrong mass goes to the plausible wrong answers by weight, a share `rare_share` to the rare
  ones and `overthought_share` to the overthought one.
* refine reading the multiset X: it anchors on one element x of X (by multiplicity) and
  - keeps a right x with 1 - b, or breaks it into the overthought answer,
    b = sigmoid(breaks(m) + break_difficulty x d);
  - repairs a wrong x with r x (1 - trap_stickiness x share(x)), r = sigmoid(repair(m) - d),
    where share(x) is x's weight relative to the trap's, else keeps x (`keep`) or drifts to a
    plausible wrong answer; the overthought answer is repaired with only r x (1 - stickiness).
  A chain of refiners therefore repairs the solver's errors first, while the answers it breaks
  pile up in the sticky overthought answer: depth helps, then hurts, sooner for models that
  break more.
* aggregate reading X: if the gold is in X it picks it with sigmoid(choose(m) - d + share_bonus x
  (gold's share of X) - confusion x (|X| - 1)); otherwise (and when it does not recognise the
  gold) it follows X's answers with probability proportional to count^follow, or solves the
  question itself (sigmoid(ability(m) - d - fresh_penalty)). More parents make the gold likelier
  to be present and harder to pick out: width helps, then saturates.
* Pools: every solve pool has `samples` outputs; refine and aggregate pools (`role_samples`
  each) exist for every multiset, up to `max_inputs` of the role, over each question's
  `top_answers` most frequent solve answers: the input keys a collector expanding the most
  frequent keys would collect. Any other key falls back at replay (and is reported).
* Tokens: lognormal lengths around each role's means (`prompt` + `per_input` x |X| for the
  prompt, `completion` x the model's verbosity); latency comes from each model's prefill and
  decode throughput, written to the manifest (synthetic figures, like everything here).

Vectorised over pools (NumPy); each component draws from its own named stream.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import polars as pl

from replay import schema as S
from replay.graph.keys import input_key
from replay.store import write_store

from .generate import _draw_categorical, _lognormal, _rng, _sigmoid
from .spec import SpecError, _dataclass_from, _Reader

ANSWER_STYLES = ("number", "letter", "signature")


@dataclass(frozen=True)
class GraphModelSpec:
    name: str
    params: float
    family: str = ""
    ability: float = 0.0  # solve logit on an average question
    repair: float = -1.0  # refine: logit of repairing a wrong input (minus difficulty)
    breaks: float = -2.0  # refine: logit of breaking a right input (plus break_difficulty x difficulty)
    choose: float = 0.0  # aggregate: logit of picking the gold out of the inputs
    follow: float = 1.0  # aggregate: how sharply it follows the inputs' majority (count ** follow)
    verbosity: float = 1.0
    prefill_tokens_per_s: float = 5000.0
    decode_tokens_per_s: float = 60.0
    description: str = ""


@dataclass(frozen=True)
class RoleTokens:
    prompt: int = 300  # the role's own prompt (the question, instructions)
    per_input: int = 0  # prompt tokens per answer read (refine, aggregate)
    completion: int = 200  # mean completion length


@dataclass(frozen=True)
class GraphAnswers:
    style: str = "number"  # number, letter (multiple choice), signature (pass/fail per test)
    wrong: int = 5  # plausible wrong answers per question (letters: choices - 1)
    concentration: float = 0.5
    rare: int = 6
    rare_share: float = 0.1
    overthought_share: float = 0.02  # share of a solver's wrong mass on the overthought answer
    tests: int = 6  # signature style: tests per problem


@dataclass(frozen=True)
class RefineSpec:
    stickiness: float = 0.85  # how hard the overthought answer is to repair (0: like any, 1: never)
    trap_stickiness: float = 0.3  # how much harder the trap is to repair than a scattered wrong answer
    break_difficulty: float = 0.3  # harder questions make refiners break right answers more
    keep: float = 0.85  # an unrepaired wrong input is kept (else it drifts to another wrong answer)


@dataclass(frozen=True)
class AggregateSpec:
    share_bonus: float = 1.5  # logit bonus for the gold's share of the inputs
    confusion: float = 0.35  # logit lost per input beyond the first
    fresh_penalty: float = 1.5  # solving it itself when the gold is not among the inputs
    noise: float = 0.03  # chance of an unrelated wrong answer


@dataclass(frozen=True)
class GraphDifficulty:
    mean: float = 0.0
    sd: float = 1.2
    model_sd: float = 0.4


@dataclass(frozen=True)
class GraphSimSpec:
    name: str
    models: tuple[GraphModelSpec, ...]
    description: str = ""
    kind: str = "graph"
    questions: int = 150
    train_fraction: float = 1 / 3
    samples: int = 32  # solve pool size
    role_samples: int = 8  # refine and aggregate pool size
    top_answers: int = 3  # answers per question whose multisets get refine/aggregate pools
    refine_max_inputs: int = 2
    aggregate_max_inputs: int = 4
    token_cv: float = 0.35
    scorer: str = "exact_match"
    answers: GraphAnswers = field(default_factory=GraphAnswers)
    difficulty: GraphDifficulty = field(default_factory=GraphDifficulty)
    refine: RefineSpec = field(default_factory=RefineSpec)
    aggregate: AggregateSpec = field(default_factory=AggregateSpec)
    solve_tokens: RoleTokens = field(default_factory=lambda: RoleTokens(300, 0, 300))
    refine_tokens: RoleTokens = field(default_factory=lambda: RoleTokens(350, 300, 300))
    aggregate_tokens: RoleTokens = field(default_factory=lambda: RoleTokens(350, 300, 150))

    def to_json(self) -> dict[str, Any]:
        def clean(x):
            if dataclasses.is_dataclass(x):
                return {f.name: clean(getattr(x, f.name)) for f in dataclasses.fields(x)}
            if isinstance(x, (tuple, list)):
                return [clean(v) for v in x]
            return x

        return clean(self)


_MODEL_FIELDS = {"name": str, "params": float, "family": str, "ability": float, "repair": float, "breaks": float,
                 "choose": float, "follow": float, "verbosity": float, "prefill_tokens_per_s": float,
                 "decode_tokens_per_s": float, "description": str}


def graph_spec_from_dict(raw: Any, where: str = "spec") -> GraphSimSpec:
    """A GraphSimSpec from a parsed YAML/JSON mapping; raises SpecError naming the field."""
    r = _Reader(where, "", raw)
    name = r.get("name", str)
    if not name.startswith("sim-"):
        r.fail(f"a synthetic store's name must start with 'sim-', got {name!r}", "name")
    r.get("kind", str, "graph", choices=("graph",))
    raw_models = r.raw.get("models")
    r.used.add("models")
    if not isinstance(raw_models, list) or not raw_models:
        r.fail("missing or empty: a list of models", "models")
    models = []
    for i, m in enumerate(raw_models):
        mr = _Reader(where, f"models[{i}]", m)
        kw = {}
        for k, typ in _MODEL_FIELDS.items():
            default = dataclasses.MISSING if k in ("name", "params") else getattr(GraphModelSpec, k, None)
            if k in ("name", "params"):
                kw[k] = mr.get(k, typ, lo=0, lo_open=True) if typ is float else mr.get(k, typ)
            else:
                lo = {"follow": 0, "verbosity": 0, "prefill_tokens_per_s": 0, "decode_tokens_per_s": 0}.get(k)
                kw[k] = mr.get(k, typ, default, lo=lo, lo_open=lo is not None)
        if not kw["name"].strip() or any(c in kw["name"] for c in ",|;()=:"):
            mr.fail(f"must be non-empty and free of , | ; ( ) = : (graph syntax), got {kw['name']!r}", "name")
        mr.done()
        models.append(GraphModelSpec(**kw))
    if len({m.name for m in models}) != len(models):
        r.fail("duplicate model names", "models")
    ans = _dataclass_from_mixed(r.sub("answers"), GraphAnswers, {"wrong": {"lo": 1, "hi": 50}, "rare": {"lo": 0, "hi": 100},
                                                                 "concentration": {"lo": 0, "lo_open": True},
                                                                 "rare_share": {"lo": 0, "hi": 1}, "tests": {"lo": 2, "hi": 20},
                                                                 "overthought_share": {"lo": 0, "hi": 1}})
    if ans.style not in ANSWER_STYLES:
        raise SpecError(where, f"answers.style: must be one of {', '.join(ANSWER_STYLES)}, got {ans.style!r}")
    if ans.style == "letter" and (ans.rare or ans.wrong > 24):
        raise SpecError(where, "answers: the letter style has `wrong` choices besides the gold and the "
                               "overthought one, and no rare ones")
    if ans.style == "signature" and 2 + ans.wrong + ans.rare > 2 ** ans.tests:
        raise SpecError(where, "answers: more answers than pass/fail signatures of `tests` tests")
    spec = GraphSimSpec(
        name=name, models=tuple(models), description=r.get("description", str, ""),
        questions=r.get("questions", int, 150, lo=2, hi=1_000_000),
        train_fraction=r.get("train_fraction", float, 1 / 3, lo=0, hi=1),
        samples=r.get("samples", int, 32, lo=1, hi=4096),
        role_samples=r.get("role_samples", int, 8, lo=1, hi=4096),
        top_answers=r.get("top_answers", int, 3, lo=1, hi=8),
        refine_max_inputs=r.get("refine_max_inputs", int, 2, lo=1, hi=6),
        aggregate_max_inputs=r.get("aggregate_max_inputs", int, 4, lo=1, hi=8),
        token_cv=r.get("token_cv", float, 0.35, lo=0, hi=3),
        scorer=r.get("scorer", str, "exact_match"),
        answers=ans,
        difficulty=_dataclass_from(r.sub("difficulty"), GraphDifficulty, {"sd": {"lo": 0}, "model_sd": {"lo": 0}}),
        refine=_dataclass_from(r.sub("refine"), RefineSpec, {"stickiness": {"lo": 0, "hi": 1}, "keep": {"lo": 0, "hi": 1},
                                                            "trap_stickiness": {"lo": 0, "hi": 1}}),
        aggregate=_dataclass_from(r.sub("aggregate"), AggregateSpec, {"noise": {"lo": 0, "hi": 0.5}}),
        solve_tokens=_tokens(r.sub("solve_tokens"), RoleTokens(300, 0, 300)),
        refine_tokens=_tokens(r.sub("refine_tokens"), RoleTokens(350, 300, 300)),
        aggregate_tokens=_tokens(r.sub("aggregate_tokens"), RoleTokens(350, 300, 150)),
    )
    r.done()
    return spec


def _tokens(reader: _Reader | None, default: RoleTokens) -> RoleTokens:
    if reader is None:
        return default
    t = RoleTokens(prompt=reader.get("prompt", int, default.prompt, lo=1),
                   per_input=reader.get("per_input", int, default.per_input, lo=0),
                   completion=reader.get("completion", int, default.completion, lo=1))
    reader.done()
    return t


def _dataclass_from_mixed(reader: _Reader | None, cls, ranges: dict[str, dict]):
    """Like spec._dataclass_from, for a dataclass with string fields too."""
    if reader is None:
        return cls()
    kw = {}
    for f in dataclasses.fields(cls):
        kind = {"int": int, "float": float, "str": str}.get(f.type if isinstance(f.type, str) else f.type.__name__)
        kw[f.name] = reader.get(f.name, kind, f.default, **ranges.get(f.name, {}))
    reader.done()
    return cls(**kw)


def is_graph_spec(raw: Any) -> bool:
    return isinstance(raw, Mapping) and raw.get("kind") == "graph"


# --------------------------------------------------------------------------------------------
# The generator


def _multisets(T: int, k: int) -> np.ndarray:
    """Every multiset of size k over T symbols, as count vectors [n, T]."""
    rows = []
    for combo in itertools.combinations_with_replacement(range(T), k):
        c = np.zeros(T, dtype=np.int64)
        for x in combo:
            c[x] += 1
        rows.append(c)
    return np.array(rows, dtype=np.int64).reshape(-1, T)


class _GraphGenerator:
    def __init__(self, spec: GraphSimSpec, seed: int):
        self.spec, self.seed = spec, seed
        Q = spec.questions
        a = spec.answers
        self.K = a.wrong
        self.R = a.rare if a.style != "letter" else 0
        self.O = 1 + self.K  # the overthought answer's column
        self.A = 2 + self.K + self.R
        self.M = len(spec.models)
        short = spec.name[len("sim-"):] or "q"
        self.qids = np.array([f"{short}-{i:04d}" for i in range(Q)], dtype=object)
        d = spec.difficulty
        self.diff = d.mean + d.sd * _rng(seed, "difficulty").standard_normal(Q)
        self.qm_noise = d.model_sd * _rng(seed, "model-noise").standard_normal((Q, self.M))
        r = _rng(seed, "answers")
        self.trap = r.dirichlet(np.full(self.K, a.concentration), size=Q)  # [Q, K]
        self.text = self._answer_texts(r)
        self.m_params = np.array([m.params for m in spec.models])
        self.verb = np.array([m.verbosity for m in spec.models])

    def _answer_texts(self, r: np.random.Generator) -> np.ndarray:
        """[Q, A] answer strings; column 0 is the gold."""
        a, Q, A = self.spec.answers, self.spec.questions, self.A
        if a.style == "letter":
            letters = np.array([chr(ord("A") + i) for i in range(A)], dtype=object)
            return letters[np.argsort(r.random((Q, A)), axis=1)]
        if a.style == "signature":
            t = a.tests
            out = np.empty((Q, A), dtype=object)
            for q in range(Q):
                codes = r.choice(2 ** t - 1, size=A - 1, replace=False)  # distinct failing signatures
                out[q, 0] = "P" * t
                out[q, 1:] = ["".join("P" if (c >> j) & 1 else "F" for j in range(t)) for c in codes]
            return out
        vals = np.argsort(r.random((Q, 4 * A)), axis=1)[:, :A] + r.integers(0, 50, size=(Q, 1))
        return vals.astype(str).astype(object)

    def key_answers(self, freq: np.ndarray) -> np.ndarray:
        """[Q, T]: the answers whose multisets get refine/aggregate pools: the overthought answer
        (what refiners produce) and the top_answers - 1 most frequent solve answers."""
        T = min(self.spec.top_answers, self.A)
        f = freq.copy()
        f[:, self.O] = np.inf  # always expanded: refiners write it, solvers rarely
        return np.argsort(-f - 1e-9 * np.arange(self.A)[None, :], axis=1, kind="stable")[:, :T]

    # ---- the answer distributions
    def solve_probs(self) -> np.ndarray:
        """[Q, M, A]: a solve sample's answer distribution."""
        spec, A, K = self.spec, self.A, self.K
        ab = np.array([m.ability for m in spec.models])
        p = _sigmoid(ab[None, :] - self.diff[:, None] + self.qm_noise)  # [Q, M]
        share = spec.answers.rare_share if self.R else 0.0
        over = spec.answers.overthought_share
        out = np.zeros((spec.questions, self.M, A))
        out[:, :, 0] = p
        out[:, :, 1:1 + K] = ((1 - p) * (1 - share - over))[:, :, None] * self.trap[:, None, :]
        out[:, :, self.O] = (1 - p) * over
        if self.R:
            out[:, :, 2 + K:] = ((1 - p) * share / self.R)[:, :, None]
        return out

    def refine_transition(self) -> np.ndarray:
        """[Q, M, A, A]: the answer a refiner writes, given one input answer."""
        spec, A, K, Q, M = self.spec, self.A, self.K, self.spec.questions, self.M
        rf = spec.refine
        rep = _sigmoid(np.array([m.repair for m in spec.models])[None, :] - self.diff[:, None] + self.qm_noise)
        brk = _sigmoid(np.array([m.breaks for m in spec.models])[None, :] + rf.break_difficulty * self.diff[:, None]
                       - 0.5 * self.qm_noise)
        T = np.zeros((Q, M, A, A))
        # a right input: kept, or broken into the overthought answer
        T[:, :, 0, 0] = 1 - brk
        T[:, :, 0, self.O] = brk
        # a wrong input: repaired (the trap and the overthought answer least), kept, or drifting
        stick = np.zeros((Q, A))
        stick[:, 1:1 + K] = rf.trap_stickiness * self.trap / self.trap.max(axis=1, keepdims=True)
        stick[:, self.O] = rf.stickiness
        fix = rep[:, :, None] * (1 - stick[:, None, 1:])  # [Q, M, A-1]
        drift = np.zeros((Q, A))
        drift[:, 1:1 + K] = self.trap
        for w in range(1, A):
            T[:, :, w, 0] = fix[:, :, w - 1]
            rest = 1 - fix[:, :, w - 1]
            T[:, :, w, :] += (rest * (1 - rf.keep))[:, :, None] * drift[:, None, :]
            T[:, :, w, w] += rest * rf.keep
        return T

    def aggregate_probs(self, q: np.ndarray, m: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """[P, A]: an aggregator's answer given the inputs' answer counts [P, A]."""
        spec, A = self.spec, self.A
        ag = spec.aggregate
        k = counts.sum(axis=1)
        d = self.diff[q] - self.qm_noise[q, m]
        choose = np.array([x.choose for x in spec.models])[m]
        ability = np.array([x.ability for x in spec.models])[m]
        follow = np.array([x.follow for x in spec.models])[m]
        gold_share = counts[:, 0] / k
        has_gold = counts[:, 0] > 0
        recog = np.where(has_gold, _sigmoid(choose - d + ag.share_bonus * gold_share - ag.confusion * (k - 1)), 0.0)
        fresh = np.where(has_gold, 0.0, _sigmoid(ability - d - ag.fresh_penalty))
        w = np.where(counts > 0, counts.astype(float) ** follow[:, None], 0.0)
        w /= w.sum(axis=1, keepdims=True)
        out = (1 - recog - fresh)[:, None] * w
        out[:, 0] += recog + fresh
        noise = np.zeros((len(q), A))
        noise[:, 1:1 + self.K] = self.trap[q]
        return (1 - ag.noise) * out + ag.noise * noise

    # ---- pools and samples
    def run(self):
        spec, Q, M, A = self.spec, self.spec.questions, self.M, self.A
        frames = []
        sp = self.solve_probs()
        q = np.repeat(np.arange(Q), M)
        m = np.tile(np.arange(M), Q)
        draws = _draw_categorical(_rng(self.seed, "draws", "solve"), sp[q, m], spec.samples)
        frames.append(self._frame("solve", q, m, np.full(len(q), "", dtype=object), draws,
                                  np.zeros(len(q), dtype=np.int64), spec.solve_tokens))
        # the keys a collector expands: multisets over each question's most frequent solve answers
        freq = np.zeros((Q, A))
        np.add.at(freq, (np.repeat(q, spec.samples), draws.ravel()), 1.0)
        top = self.key_answers(freq)  # [Q, T]
        T = top.shape[1]
        trans = self.refine_transition()
        for role, kmax, toks in (("refine", spec.refine_max_inputs, spec.refine_tokens),
                                 ("aggregate", spec.aggregate_max_inputs, spec.aggregate_tokens)):
            comps = np.concatenate([_multisets(T, k) for k in range(1, kmax + 1)])  # [J, T]
            J = len(comps)
            pq = np.repeat(np.arange(Q), M * J)
            pm = np.tile(np.repeat(np.arange(M), J), Q)
            pj = np.tile(np.arange(J), Q * M)
            counts = np.zeros((len(pq), A), dtype=np.int64)
            np.add.at(counts, (np.repeat(np.arange(len(pq)), T), top[pq].ravel()), comps[pj].ravel())
            k = counts.sum(axis=1)
            if role == "refine":
                probs = np.einsum("pa,pab->pb", counts / k[:, None], trans[pq, pm])
            else:
                probs = self.aggregate_probs(pq, pm, counts)
            probs = np.clip(probs, 0, None)
            probs /= probs.sum(axis=1, keepdims=True)
            draws = _draw_categorical(_rng(self.seed, "draws", role), probs, spec.role_samples)
            keys = np.array([input_key(self.text[qq, np.repeat(top[qq], comps[j])]) for qq, j in zip(pq, pj)],
                            dtype=object)
            frames.append(self._frame(role, pq, pm, keys, draws, k, toks))
        return frames

    def _frame(self, role: str, q: np.ndarray, m: np.ndarray, ctx: np.ndarray, draws: np.ndarray,
               n_inputs: np.ndarray, toks: RoleTokens) -> pl.DataFrame:
        spec = self.spec
        P, N = draws.shape
        r = _rng(self.seed, "tokens", role)
        prompt = np.maximum(1, np.rint(_lognormal(r, float(toks.prompt), 0.2, spec.questions))).astype(np.int64)[q]
        prompt = prompt + np.rint(toks.per_input * n_inputs * np.exp(0.2 * r.standard_normal(P))).astype(np.int64)
        comp = np.maximum(1, np.rint(_lognormal(r, toks.completion * self.verb[m][:, None], spec.token_cv, (P, N))))
        flat_q = np.repeat(q, N)
        ans = draws.ravel()
        pool = pl.DataFrame({
            "question_id": pl.Series(self.qids[q], dtype=pl.String),
            "model": pl.Series(np.array([x.name for x in spec.models], dtype=object)[m], dtype=pl.String),
            "context": pl.Series(ctx, dtype=pl.String),
            "prompt_tokens": prompt,
        })
        return pool[pl.Series(np.repeat(np.arange(P), N))].with_columns(
            stage=pl.lit(role),
            sample_index=pl.Series(np.tile(np.arange(N, dtype=np.int32), P)),
            answer=pl.Series(self.text[flat_q, ans], dtype=pl.String),
            score=pl.Series((ans == 0).astype(np.float64)),
            completion_tokens=pl.Series(comp.ravel().astype(np.int64)),
        )


def simulate_graph(spec: GraphSimSpec, out: str | Path, *, seed: int = 0, preset: str | None = None,
                   overwrite: bool = True, command: str | None = None) -> Path:
    """Generate the SYNTHETIC graph store that `spec` and `seed` describe and write it to `out`
    (atomically); return its path. Arguments as `collect.simulate.simulate`."""
    g = _GraphGenerator(spec, seed)
    frames = g.run()
    Q = spec.questions
    n_train = int(round(spec.train_fraction * Q))
    perm = _rng(seed, "split").permutation(Q)
    is_train = np.zeros(Q, dtype=bool)
    is_train[perm[:n_train]] = True
    questions = pl.DataFrame({
        "question_id": pl.Series(g.qids, dtype=pl.String),
        "split": np.where(is_train, "train", "test"),
        "gold": pl.Series(g.text[:, 0], dtype=pl.String),
        "metadata": [f'{{"difficulty": {d:.4f}}}' for d in g.diff],
    })
    import numba
    import pyarrow

    roles = (("solve", "answer the question alone"),
             ("refine", "read the parents' answers and write an improved one"),
             ("aggregate", "read several parents' answers and choose one"))
    manifest = S.Manifest(
        name=spec.name,
        synthetic=True,
        kind="graph",
        stages=tuple(S.Stage(name=r, aggregation="majority_vote", scorer=spec.scorer, description=f"simulated: {d}")
                     for r, d in roles),
        models=tuple(S.Model(name=m.name, params=m.params,
                             description=m.description or f"simulated {m.family or 'model'} (synthetic throughput)",
                             prefill_tokens_per_s=m.prefill_tokens_per_s, decode_tokens_per_s=m.decode_tokens_per_s)
                     for m in spec.models),
        split={"train": tuple(g.qids[is_train]), "test": tuple(g.qids[~is_train])},
        provenance={
            "synthetic": "simulated by `collect simulate`, not collected from real models",
            "generator": "collect.simulate.graph (tts-replay 0.1.0)",
            "preset": preset, "seed": seed, "spec": spec.to_json(), "command": command,
            "throughput": "synthetic figures from the spec, not measured",
            "tools": {"numpy": np.__version__, "polars": pl.__version__, "pyarrow": pyarrow.__version__,
                      "numba": numba.__version__},
        },
    )
    return write_store(out, manifest, questions, pl.concat(frames), overwrite=overwrite)
