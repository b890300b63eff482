"""Step-level trace arrays of one (stage, model) of a store: what controllers replay.

Built once from `StoreArrays` (replay/store.py), no copy of the big arrays: per question the
pool of (question, stage, model) at the root context, and per sample its final answer, score,
real length and probe readings (CSR `probe_off`/`probe_answer`, global answer ids).

Probe j (0-based) of a sample is the answer read off its chain after (j + 1) * K tokens
(K = manifest `probe_interval`). A reading of 'ERR' (or an empty string) means the chain
held no answer at that point: the probe reveals nothing. A stored trace may stop before the
chain's real end (in traces/aime24 the last probe falls up to 9 intervals short of it, and
always equals the final answer): at depth d beyond the stored probes the latest stored
reading stands.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError

if TYPE_CHECKING:  # annotations only: the controllers' sandbox imports this file without polars
    from ..store import Store

NO_ANSWER = ("ERR", "")  # probe readings that mean "no answer yet"


@dataclass(frozen=True, eq=False)
class StepArrays:
    store_name: str
    model: str
    stage: int
    K: int
    answers: np.ndarray  # object [A]: the store's answer dictionary
    question_hash: np.ndarray  # uint64 [Q]
    pool_of_q: np.ndarray  # int64 [Q]: pool index of (q, stage, model, root context)
    gold: np.ndarray  # int32 [Q]: gold answer id of the stage, -1 where none
    pool_off: np.ndarray
    pool_prompt: np.ndarray
    s_answer: np.ndarray
    s_local: np.ndarray
    s_score: np.ndarray
    s_completion: np.ndarray
    probe_off: np.ndarray
    probe_answer: np.ndarray
    no_answer: np.ndarray  # int32 [2]: answer ids that mean "no reading" (-2 where absent)
    max_pool: int
    max_intervals: int

    @property
    def n_questions(self) -> int:
        return len(self.pool_of_q)

    def probe_at(self, sample: int, depth: int) -> int | None:
        """The reading of `sample` at `depth` intervals (None: no answer)."""
        if depth <= 0:
            return None
        o0, o1 = int(self.probe_off[sample]), int(self.probe_off[sample + 1])
        if o1 == o0:
            return None
        a = int(self.probe_answer[o0 + min(depth, o1 - o0) - 1])
        return None if a in (int(self.no_answer[0]), int(self.no_answer[1])) else a

    def view(self, q: int) -> "QuestionView":
        """Question q's pool as plain Python values, built once per question (the Python
        engine's episodes read these, not NumPy scalars: see QuestionView)."""
        v = self._views.get(q)
        if v is None:
            v = self._views[q] = QuestionView.build(self, q)
        return v

    @cached_property
    def _views(self) -> dict:
        # a cache beside the frozen fields (cached_property writes the instance dict directly);
        # `compact()` and `replace()` start with an empty one
        return {}

    def answer_id(self, text: str) -> int:
        i = int(np.searchsorted(self.answers, text))  # the dictionary is sorted
        return i if i < len(self.answers) and self.answers[i] == text else -1

    def compact(self) -> "StepArrays":
        """The same episodes on arrays holding only this view's pools (the whole store's
        arrays serve every model and stage): what crosses into a sandbox. Answer ids, the
        answer dictionary and the action bound stay as they are, so every controller sees the
        same states and gets the same results; only the internal sample numbering changes."""
        pools = np.unique(self.pool_of_q)
        lo, hi = self.pool_off[pools], self.pool_off[pools + 1]
        samples = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi)]) if len(pools) else np.zeros(0, np.int64)
        pool_off = np.concatenate([[0], np.cumsum(hi - lo)]).astype(self.pool_off.dtype)
        plo, phi = self.probe_off[samples], self.probe_off[samples + 1]
        probe_idx = np.concatenate([np.arange(a, b) for a, b in zip(plo, phi)]) if len(samples) else np.zeros(0, np.int64)
        probe_off = np.concatenate([[0], np.cumsum(phi - plo)]).astype(self.probe_off.dtype)
        return replace(
            self, pool_of_q=np.searchsorted(pools, self.pool_of_q).astype(self.pool_of_q.dtype), pool_off=pool_off,
            pool_prompt=self.pool_prompt[pools], s_answer=self.s_answer[samples], s_local=self.s_local[samples],
            s_score=self.s_score[samples], s_completion=self.s_completion[samples], probe_off=probe_off,
            probe_answer=self.probe_answer[probe_idx.astype(np.int64)])


@dataclass(frozen=True, eq=False)
class QuestionView:
    """One question's pool, per sample in pool order (local index j = global sample - base),
    as Python lists: what the Python engine reads on every action. Reading a NumPy array one
    element at a time costs ~100 ns to a few us per value (a NumPy scalar, then int()); a list
    item costs ~20 ns, so building these once per question makes the engine several times
    faster (benchmarks/controller_speed.py) with the very same values."""

    question: int
    base: int  # global index of the pool's first sample
    size: int
    prompt: int  # prompt tokens of the pool, charged once
    gold: int  # gold answer id, -1 where none
    qhash: int
    length: list  # int: completion tokens
    n_int: list  # int: intervals of K tokens to reach the real length
    final: list  # int: the stored final answer id
    score: list  # float: the stored score
    readings: list  # tuple per sample: the stored probe readings, None where 'ERR'/empty
    reading_at: list  # list per sample: reading_at[j][d - 1] is the reading at depth d, 1 <= d < n_int


    @classmethod
    def build(cls, A: "StepArrays", q: int) -> "QuestionView":
        pool = int(A.pool_of_q[q])
        base, end = int(A.pool_off[pool]), int(A.pool_off[pool + 1])
        K = A.K
        length = [int(x) for x in A.s_completion[base:end]]
        no = {int(A.no_answer[0]), int(A.no_answer[1])}
        off = A.probe_off[base:end + 1].tolist()
        raw = A.probe_answer[off[0]:off[-1]].tolist()
        o0 = off[0]
        readings = [tuple(None if a in no else a for a in raw[off[j] - o0:off[j + 1] - o0]) for j in range(end - base)]
        n_int = [-(-n // K) for n in length]
        # the reading at every depth short of the end: stored probe min(d, n) - 1, none if none stored
        reading_at = [list(rd[:ni - 1]) + [rd[-1]] * max(0, ni - 1 - len(rd)) if rd else [None] * max(0, ni - 1)
                      for rd, ni in zip(readings, n_int)]
        return cls(question=q, base=base, size=end - base, prompt=int(A.pool_prompt[pool]), gold=int(A.gold[q]),
                   qhash=int(A.question_hash[q]), length=length, n_int=n_int,
                   final=A.s_answer[base:end].tolist(), score=[float(x) for x in A.s_score[base:end]],
                   readings=readings, reading_at=reading_at)


def step_arrays(store: Store, model: str, *, stage: str | int | None = None) -> StepArrays:
    """The step-level view of one model on one stage, built once per store (`store.derived`).

    Args:
        store: a store with probes.
        model: the model.
        stage: the stage, by name or index (default: the first).

    Raises:
        InputError: an unknown stage or model, a model that is not a candidate of the stage,
            a store without probes.
    """
    names = store.manifest.stage_names
    if stage is None:
        si = 0
    elif isinstance(stage, int):
        si = stage
    elif stage in names:
        si = names.index(stage)
    else:
        raise InputError("--stage", f"unknown stage {stage!r} (stages: {', '.join(names)})")
    if model not in store.manifest.model_names:
        raise InputError("--model", f"unknown model {model!r} (models: {', '.join(store.manifest.model_names)})")
    return store.derived.memo((__name__, model, si), lambda: _build(store, model, si))


def _build(store: Store, model: str, si: int) -> StepArrays:
    a = store.arrays
    names = store.manifest.stage_names
    mi = store.model_index(model)
    if not a.stage_model_ok[si, mi]:
        raise InputError("--model", f"model {model!r} is not a candidate of stage {names[si]!r}")
    K = store.manifest.probe_interval
    if a.probe_off is None or K is None:
        raise InputError(store.path, "has no step-level traces (no probes column or no probe_interval in the manifest): controllers need probes")
    Q = a.n_questions
    k = (np.arange(Q) * a.n_stages + si) * a.n_models + mi
    # the root-context pool is the first of each (q, s, m) for stage 1; later stages have one
    # pool per upstream answer, and a controller replays the largest (the most common upstream)
    lo, hi = a.qsm_pool_off[k], a.qsm_pool_off[k + 1]
    if si == 0:
        pools = lo.astype(np.int64)
    else:
        sizes = np.diff(a.pool_off)
        pools = np.array([l + int(np.argmax(sizes[l:h])) for l, h in zip(lo, hi)], dtype=np.int64)
    ids = [int(np.searchsorted(a.answers, t)) for t in NO_ANSWER]
    no_ans = np.array([i if i < len(a.answers) and a.answers[i] == t else -2 for i, t in zip(ids, NO_ANSWER)],
                      dtype=np.int32)
    sizes = a.pool_off[pools + 1] - a.pool_off[pools]
    comp = a.s_completion
    return StepArrays(
        store_name=store.name, model=model, stage=si, K=int(K), answers=a.answers,
        question_hash=a.question_hash, pool_of_q=pools, gold=a.gold[:, si].astype(np.int32),
        pool_off=a.pool_off, pool_prompt=a.pool_prompt, s_answer=a.s_answer, s_local=a.s_local,
        s_score=a.s_score, s_completion=comp, probe_off=a.probe_off, probe_answer=a.probe_answer,
        no_answer=no_ans, max_pool=int(sizes.max()),
        max_intervals=int(-(-int(comp.max()) // int(K))) if len(comp) else 0,
    )
