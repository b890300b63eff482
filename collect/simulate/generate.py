"""The generator: a SimSpec and a seed in, a store (through replay.write_store) out.

The model, stage by stage (docs/simulate.md has the full story and every parameter):

* Every question has a difficulty (logit), shared by its stages, plus per-stage spread.
* A pool is (question, stage, model, upstream answer). Its samples are correct with
  probability p = sigmoid(l), where
      l = ability(model, stage) - difficulty(question, stage)
          - long_input_sensitivity(model) x max(0, prompt_tokens(stage) - long_input_from) / 1000
          - chain_penalty(stage) x (1 - quality(upstream answer))
          + noise(question, stage, model) + noise(question, stage, upstream answer)
  The wrong mass 1 - p goes to a few plausible wrong answers that every model of that
  question and stage shares (Dirichlet weights: a small concentration makes one dominant trap
  that majority vote can lock onto), and to a tail of rare ones. A wrong upstream answer adds
  weight to one particular downstream wrong answer (`chain_lock`): a wrong retrieval leads to
  a specific wrong answer, as it does in real pipelines.
* set_vote stages answer lists: each gold item is included with a probability around p, each
  plausible wrong item with a probability that grows with 1 - p; scored by item F1.
* llm_fuse stages store fusions of random subsets of each pool, for every size up to
  `fuse.max_size`: the fuser, while it keeps track, returns the right answer if a candidate
  has it and it recognises it (probability sigmoid(l + verify_bonus)), else the subset's
  majority; it loses track with probability 1 - exp(-decay x (params/1e9)^-size_exponent x
  (S - 1)), and then returns an arbitrary candidate. Quality therefore rises with S (more
  chances to include the right answer) and then falls, faster for small models.
* Chaining: the pools of stage k+1 are keyed by the answers of stage k that occur most: per
  question, every model's plurality answer (what large sample counts aggregate to) first,
  then the most frequent sample answers, up to `keys_per_question`, as a collector that
  expands frequent upstream answers would. Replay falls back to the largest pool for any
  other upstream answer and reports how often. An independent stage (`dependency:
  independent`) is drawn like a first stage: one pool per (question, model), context "",
  whatever the upstream answer.

Everything is vectorised over pools and samples (NumPy); no Python loop runs per sample.
Each component draws from its own named random stream, so switching one behaviour off in the
spec leaves the other draws as they were (paired comparisons).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from replay import schema as S
from replay.store import write_store

from .spec import SimSpec, StageSpec



def _rng(seed: int, *names: str) -> np.random.Generator:
    """An independent stream per (seed, component name)."""
    return np.random.default_rng([seed & 0xFFFFFFFF, seed >> 32] + [zlib.crc32(n.encode()) for n in names])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class _Keys:
    """Upstream answers that got downstream pools: per key its question, string and quality."""

    q: np.ndarray  # int64 [K]
    text: np.ndarray  # object [K]
    quality: np.ndarray  # float64 [K], 1 = the upstream gold


@dataclass
class _Pools:
    q: np.ndarray  # int64 [P] question
    m: np.ndarray  # int64 [P] model index (into spec.models)
    key: np.ndarray  # int64 [P] index into _Keys, -1 for the first stage
    logit: np.ndarray  # float64 [P]


@dataclass
class _StageOut:
    samples: pl.DataFrame
    fusions: pl.DataFrame | None
    gold: np.ndarray  # object [Q] gold answer string of the stage
    keys: _Keys  # the answers this stage hands to the next one


def _lognormal(rng: np.random.Generator, mean: np.ndarray, cv: float, shape) -> np.ndarray:
    """Positive lengths with the given mean and log-spread."""
    z = rng.standard_normal(shape)
    return mean * np.exp(cv * z - 0.5 * cv * cv)


def _draw_categorical(rng: np.random.Generator, probs: np.ndarray, n: int) -> np.ndarray:
    """n draws per row of `probs` [P, A] (rows sum to 1): int [P, n], no per-row loop."""
    P, A = probs.shape
    cdf = np.cumsum(probs, axis=1)
    cdf[:, -1] = 1.0 + 1e-12
    # Offset row r by 2r so that one flat searchsorted serves every row.
    off = 2.0 * np.arange(P)[:, None]
    u = rng.random((P, n))
    idx = np.searchsorted((cdf + off).ravel(), (u + off).ravel(), side="right").reshape(P, n)
    return np.minimum(idx - (np.arange(P) * A)[:, None], A - 1)


def _first_argmax(counts: np.ndarray, jitter: np.ndarray) -> np.ndarray:
    return np.argmax(counts + jitter, axis=-1)


class _Generator:
    def __init__(self, spec: SimSpec, seed: int):
        self.spec, self.seed = spec, seed
        self.Q = spec.questions
        self.N = spec.samples
        self.model_names = [m.name for m in spec.models]
        self.params = np.array([m.params for m in spec.models])
        self.sens = np.array([m.long_input_sensitivity for m in spec.models])
        self.verb = np.array([m.verbosity for m in spec.models])
        short = spec.name[len("sim-"):] or "q"
        self.qids = np.array([f"{short}-{i:04d}" for i in range(self.Q)], dtype=object)
        d = spec.difficulty
        r = _rng(seed, "difficulty")
        base = d.mean + d.sd * r.standard_normal(self.Q)
        self.difficulty = base[:, None] + d.stage_sd * r.standard_normal((self.Q, len(spec.stages)))
        self.difficulty += np.array([st.difficulty for st in spec.stages])[None, :]

    # ---- pools
    def pools(self, si: int, st: StageSpec, keys: _Keys | None) -> _Pools:
        spec = self.spec
        cand = np.array([self.model_names.index(m) for m in spec.candidates(st)], dtype=np.int64)
        if keys is None:
            q = np.repeat(np.arange(self.Q), len(cand))
            m = np.tile(cand, self.Q)
            key = np.full(len(q), -1, dtype=np.int64)
            chain = np.zeros(len(q))
            ctx_noise = np.zeros(len(q))
        else:
            nk = len(keys.q)
            key = np.repeat(np.arange(nk), len(cand))
            q = keys.q[key]
            m = np.tile(cand, nk)
            chain = st.chain_penalty * (1.0 - keys.quality[key])
            ctx_noise = spec.difficulty.context_sd * _rng(self.seed, "context", st.name).standard_normal(nk)[key]
        ability = np.array([mod.ability_on(st.name) for mod in spec.models])
        long_excess = max(0.0, st.prompt_tokens - spec.long_input_from) / 1000.0
        qsm_noise = spec.difficulty.model_sd * _rng(self.seed, "model-noise", st.name).standard_normal((self.Q, len(spec.models)))
        logit = ability[m] - self.difficulty[q, si] - self.sens[m] * long_excess - chain + qsm_noise[q, m] + ctx_noise
        return _Pools(q=q, m=m, key=key, logit=logit)

    def tokens(self, st: StageSpec, pools: _Pools, n: int):
        r = _rng(self.seed, "tokens", st.name)
        prompt_q = np.maximum(1, np.rint(_lognormal(r, float(st.prompt_tokens), 0.25, self.Q))).astype(np.int64)
        comp_mean = st.completion_tokens * self.verb[pools.m]
        comp = np.maximum(1, np.rint(_lognormal(r, comp_mean[:, None], st.token_cv, (len(pools.q), n)))).astype(np.int64)
        return prompt_q[pools.q], comp

    # ---- categorical stages (majority_vote, best_score, llm_fuse)
    def categorical_stage(self, si: int, st: StageSpec, keys: _Keys | None) -> _StageOut:
        spec, Q, N = self.spec, self.Q, self.N
        ans = spec.stage_answers(st)
        K, R = ans.distractors, ans.rare
        A = 1 + K + R
        r = _rng(self.seed, "answers", st.name)
        # Answer strings: labels shuffled per question so that the gold's label says nothing.
        labels = np.argsort(r.random((Q, A)), axis=1)
        width = len(str(A - 1))
        text = np.array([f"{st.name}-{q}-{lab:0{width}d}" for q, row in zip(self.qids, labels) for lab in row],
                        dtype=object).reshape(Q, A)
        quality = np.empty((Q, A))
        quality[:, 0] = 1.0
        quality[:, 1:] = ans.partial_credit * r.random((Q, K + R))
        quality[:, 1 + K:] *= 0.5
        trap = r.dirichlet(np.full(K, ans.concentration), size=Q)  # [Q, K] shared by every model
        rare_share = ans.rare_share if R else 0.0

        pools = self.pools(si, st, keys)
        P = len(pools.q)
        w = trap[pools.q]
        if keys is not None and st.chain_lock > 0:
            # a wrong upstream answer pulls the downstream wrong mass towards one answer of its own
            lock = _rng(self.seed, "lock", st.name).integers(0, K, size=len(keys.q))[pools.key]
            bump = st.chain_lock * (1.0 - keys.quality[pools.key])
            w[np.arange(P), lock] += bump
            w /= w.sum(axis=1, keepdims=True)
        p = _sigmoid(pools.logit)
        probs = np.empty((P, A))
        probs[:, 0] = p
        probs[:, 1:1 + K] = (1.0 - p)[:, None] * (1.0 - rare_share) * w
        if R:
            probs[:, 1 + K:] = ((1.0 - p) * rare_share / R)[:, None]
        local = _draw_categorical(_rng(self.seed, "draws", st.name), probs, N)  # [P, N]
        prompt, comp = self.tokens(st, pools, N)

        flat_q = np.repeat(pools.q, N)
        flat_a = local.ravel()
        answer_text = text[flat_q, flat_a]
        score = quality[flat_q, flat_a]
        samples = self._samples_frame(st, pools, keys, answer_text, score, prompt, comp)

        fusions = None
        if st.aggregation == "llm_fuse":
            fusions = self._fusions(st, pools, keys, local, p, comp, text, quality)

        nxt = self._next_keys_categorical(pools, local, A, text, quality)
        return _StageOut(samples=samples, fusions=fusions, gold=text[:, 0].copy(), keys=nxt)

    def _fusions(self, st: StageSpec, pools: _Pools, keys: _Keys | None, local: np.ndarray, p: np.ndarray,
                 comp: np.ndarray, text: np.ndarray, quality: np.ndarray) -> pl.DataFrame:
        f = st.fuse
        P, N = local.shape
        J, Fm = f.per_size, f.max_size
        A = text.shape[1]
        r = _rng(self.seed, "fusions", st.name)
        rows = np.repeat(np.arange(P), J)  # one nested family of subsets per (pool, j)
        # The first Fm positions of a random permutation of the pool: subsets of size S are prefixes.
        order = np.argsort(r.random((len(rows), N)), axis=1)[:, :Fm]
        sub_ans = local[rows[:, None], order]  # [PJ, Fm]
        sub_comp = np.cumsum(comp[rows[:, None], order], axis=1)
        onehot = np.zeros((len(rows), Fm, A), dtype=np.int16)
        onehot[np.arange(len(rows))[:, None], np.arange(Fm)[None, :], sub_ans] = 1
        counts = np.cumsum(onehot, axis=1)  # [PJ, Fm, A] answer counts of each prefix
        jitter = 0.1 * r.random((len(rows), A))  # ties in the subset's majority: arbitrary but fixed
        decay = f.decay * (self.params[pools.m[rows]] / 1e9) ** (-f.size_exponent)
        recog_p = _sigmoid(pools.logit[rows] + f.verify_bonus)
        comp_mean = (f.completion_tokens or st.completion_tokens) * self.verb[pools.m[rows]]
        # One draw per family for "keeps track", "recognises" and "which arbitrary candidate", shared
        # by its sizes: a fuser that loses track of 6 candidates also loses track of 7, so the
        # stored quality curve over sizes is coherent rather than independent noise per size.
        u_focus = r.random(len(rows))
        recognised = r.random(len(rows)) < recog_p
        u_pick = r.random(len(rows))
        parts = []
        for size in range(1, Fm + 1):  # a loop over fusion sizes (<= 64), vectorised over fusions
            c = counts[:, size - 1, :]
            has_gold = c[:, 0] > 0
            majority = _first_argmax(c, jitter)
            focused = u_focus < np.exp(-decay * (size - 1))
            arbitrary = sub_ans[np.arange(len(rows)), np.minimum((u_pick * size).astype(np.int64), size - 1)]
            fused = np.where(focused & has_gold & recognised, 0, np.where(focused, majority, arbitrary))
            out_tok = np.maximum(1, np.rint(_lognormal(r, comp_mean, st.token_cv, len(rows)))).astype(np.int64)
            parts.append(pl.DataFrame({
                "_row": rows,
                "subset": pl.Series(order[:, :size].astype(np.int32)).cast(pl.List(pl.Int32)),
                "_ans": fused,
                "prompt_tokens": f.prompt_tokens + sub_comp[:, size - 1],
                "completion_tokens": out_tok,
            }))
        fus = pl.concat(parts)
        prow = fus["_row"].to_numpy()
        q = pools.q[prow]
        a = fus["_ans"].to_numpy()
        ctx = np.full(len(prow), S.ROOT_CONTEXT, dtype=object) if keys is None else keys.text[pools.key[prow]]
        # Two families can share a prefix (always likely at size 1) and, with few distinct token
        # counts, give the very same row; a store holds each stored fusion call once (an identical
        # row is refused as a duplicate), so such a repeat is kept once.
        return fus.select(
            pl.Series("question_id", self.qids[q], dtype=pl.String),
            pl.lit(st.name).alias("stage"),
            pl.Series("model", np.array(self.model_names, dtype=object)[pools.m[prow]], dtype=pl.String),
            pl.Series("context", ctx, dtype=pl.String),
            "subset",
            pl.Series("answer", text[q, a], dtype=pl.String),
            pl.Series("score", quality[q, a], dtype=pl.Float64),
            "prompt_tokens",
            "completion_tokens",
        ).unique(maintain_order=True)

    def _samples_frame(self, st, pools: _Pools, keys, answer_text, score, prompt, comp) -> pl.DataFrame:
        N = self.N
        P = len(pools.q)
        ctx = (np.full(P, S.ROOT_CONTEXT, dtype=object) if keys is None else keys.text[pools.key])
        pool_df = pl.DataFrame({
            "question_id": pl.Series(self.qids[pools.q], dtype=pl.String),
            "model": pl.Series(np.array(self.model_names, dtype=object)[pools.m], dtype=pl.String),
            "context": pl.Series(ctx, dtype=pl.String),
            "prompt_tokens": prompt,
        })
        # Repeat each pool row N times with polars (strings stay columnar).
        idx = pl.Series(np.repeat(np.arange(P), N))
        return pool_df[idx].with_columns(
            stage=pl.lit(st.name),
            sample_index=pl.Series(np.tile(np.arange(N, dtype=np.int32), P)),
            answer=pl.Series(answer_text, dtype=pl.String),
            score=pl.Series(score, dtype=pl.Float64),
            completion_tokens=pl.Series(comp.ravel()),
        )

    def _next_keys_categorical(self, pools: _Pools, local: np.ndarray, A: int, text, quality) -> _Keys:
        """Per question: each model's plurality answer first, then the most frequent answers."""
        P, N = local.shape
        cnt = np.zeros((P, A))
        np.add.at(cnt, (np.repeat(np.arange(P), N), local.ravel()), 1.0)
        return self._top_keys(pools, cnt, lambda q, a: text[q, a], lambda q, a: quality[q, a])

    def _top_keys(self, pools: _Pools, cnt: np.ndarray, text_of, quality_of) -> _Keys:
        """cnt [P, A]: answer counts per pool, over a per-question answer space of size A."""
        Q, M = self.Q, len(self.model_names)
        A = cnt.shape[1]
        share = np.zeros((Q, M, A))
        np.add.at(share, (pools.q, pools.m), cnt)
        share /= np.maximum(share.sum(axis=2, keepdims=True), 1.0)
        weight = share.sum(axis=1)  # [Q, A]: frequency, every model weighted equally
        present = share.sum(axis=2) > 0  # [Q, M]
        plural = np.argmax(share, axis=2)  # [Q, M]
        bonus = np.zeros((Q, A))
        qq, mm = np.nonzero(present)
        bonus[qq, plural[qq, mm]] = 1.0 + M  # pluralities outrank mere frequency
        rank = -(weight + bonus)
        order = np.argsort(rank, axis=1, kind="stable")[:, : self.spec.keys_per_question]
        keep = np.take_along_axis(weight, order, axis=1) > 0
        q = np.repeat(np.arange(Q), order.shape[1]).reshape(order.shape)[keep]
        a = order[keep]
        return _Keys(q=q.astype(np.int64), text=np.array([text_of(x, y) for x, y in zip(q, a)], dtype=object),
                     quality=np.array([quality_of(x, y) for x, y in zip(q, a)], dtype=np.float64))

    # ---- set_vote stages (list answers)
    def set_stage(self, si: int, st: StageSpec, keys: _Keys | None) -> _StageOut:
        spec, Q, N = self.spec, self.Q, self.N
        it = st.items
        ans = spec.stage_answers(st)
        r = _rng(self.seed, "items", st.name)
        I = it.gold_max + it.distractors  # columns per question (padded)
        n_gold = r.integers(it.gold_min, it.gold_max + 1, size=Q)
        # Catalog ids of each question's gold and plausible wrong items, sorted so that a bit
        # mask in column order reads as the sorted item list.
        cat = np.argsort(r.random((Q, it.catalog)), axis=1)[:, :I]
        col = np.arange(I)[None, :]
        is_gold = col < n_gold[:, None]
        valid = is_gold | ((col >= it.gold_max) & (col < it.gold_max + it.distractors))
        cat = np.where(valid, cat, it.catalog + 1)  # padding sorts last
        order = np.argsort(cat, axis=1, kind="stable")
        cat = np.take_along_axis(cat, order, axis=1)
        is_gold = np.take_along_axis(is_gold, order, axis=1)
        valid = np.take_along_axis(valid, order, axis=1)
        width = len(str(it.catalog - 1))
        item_name = np.array([f"{st.name}.{c:0{width}d}" for c in range(it.catalog)], dtype=object)
        item_off = it.item_sd * r.standard_normal((Q, I))
        trap = np.zeros((Q, I))
        if it.distractors:
            wts = r.dirichlet(np.full(it.distractors, ans.concentration), size=Q)
            dcol = np.cumsum(valid & ~is_gold, axis=1) - 1
            trap = np.where(valid & ~is_gold, np.take_along_axis(wts, np.clip(dcol, 0, it.distractors - 1), axis=1), 0.0)
        bits = (np.uint64(1) << np.arange(I, dtype=np.uint64))[None, :]
        gold_mask = (is_gold * bits).sum(axis=1).astype(np.uint64)

        def mask_text(q: int, mask: int) -> str:
            return S.ITEM_SEP.join(item_name[cat[q, j]] for j in range(I) if (mask >> j) & 1)

        def f1(q: np.ndarray, mask: np.ndarray) -> np.ndarray:
            g = gold_mask[q]
            hit = np.bitwise_count(mask & g).astype(np.float64)
            tot = np.bitwise_count(mask).astype(np.float64) + np.bitwise_count(g).astype(np.float64)
            return np.where(tot > 0, 2.0 * hit / np.maximum(tot, 1), 1.0)

        pools = self.pools(si, st, keys)
        P = len(pools.q)
        p = _sigmoid(pools.logit)
        tw = trap[pools.q]
        if keys is not None and st.chain_lock > 0 and it.distractors:
            # a wrong upstream answer makes one plausible wrong item more likely
            dcols = np.nonzero(valid & ~is_gold)
            lock = _rng(self.seed, "lock", st.name).integers(0, it.distractors, size=len(keys.q))[pools.key]
            start = np.searchsorted(dcols[0], pools.q)
            lc = dcols[1][start + lock]
            tw[np.arange(P), lc] += st.chain_lock * (1.0 - keys.quality[pools.key])
        incl = np.where(is_gold[pools.q], _sigmoid(pools.logit[:, None] + item_off[pools.q]),
                        np.minimum(0.95, (1.0 - p)[:, None] * it.spurious * tw))
        incl = np.where(valid[pools.q], incl, 0.0)
        u = _rng(self.seed, "draws", st.name).random((P, N, I))
        hit = u < incl[:, None, :]
        empty = ~hit.any(axis=2)
        top = np.argmax(incl, axis=1)  # an empty list is not an answer: keep the likeliest item
        hit[np.nonzero(empty)[0], np.nonzero(empty)[1], top[np.nonzero(empty)[0]]] = True
        mask = (hit * bits[None]).sum(axis=2).astype(np.uint64)  # [P, N]
        flat_q = np.repeat(pools.q, N)
        flat_mask = mask.ravel()
        # Strings only for distinct (question, mask) pairs.
        pairs = pl.DataFrame({"q": flat_q, "mask": flat_mask})
        uniq = pairs.unique(maintain_order=True)
        uniq = uniq.with_columns(text=pl.Series([mask_text(a, b) for a, b in uniq.iter_rows()], dtype=pl.String))
        answer_text = pairs.join(uniq, on=["q", "mask"], how="left", maintain_order="left")["text"]
        score = f1(flat_q, flat_mask)
        prompt, comp = self.tokens(st, pools, N)
        samples = self._samples_frame(st, pools, keys, answer_text, score, prompt, comp)

        # Next keys: per pool the set-vote of the whole pool first, then frequent lists.
        cnt_items = hit.sum(axis=1)  # [P, I]
        keep = 2 * cnt_items > N
        none = ~keep.any(axis=1)
        keep[none] = cnt_items[none] == cnt_items[none].max(axis=1, keepdims=True)
        full_mask = (keep * bits).sum(axis=1).astype(np.uint64)
        keys_out = self._top_set_keys(pools, mask, full_mask, f1, mask_text)
        gold_text = np.array([mask_text(q, int(gold_mask[q])) for q in range(Q)], dtype=object)
        return _StageOut(samples=samples, fusions=None, gold=gold_text, keys=keys_out)

    def _top_set_keys(self, pools: _Pools, mask: np.ndarray, full_mask: np.ndarray, f1, mask_text) -> _Keys:
        P, N = mask.shape
        M = len(self.model_names)
        df = pl.DataFrame({"q": np.repeat(pools.q, N), "m": np.repeat(pools.m, N), "mask": mask.ravel()})
        n_m = df.group_by("q", "m").len().rename({"len": "n"})
        freq = (df.group_by("q", "m", "mask").len().join(n_m, on=["q", "m"])
                .with_columns(w=pl.col("len") / pl.col("n")).group_by("q", "mask").agg(pl.col("w").sum()))
        # each model's whole-pool set vote (what large counts aggregate to), most common per (q, m)
        full = (pl.DataFrame({"q": pools.q, "m": pools.m, "mask": full_mask}).group_by("q", "m", "mask").len()
                .sort(["q", "m", "len", "mask"], descending=[False, False, True, False])
                .unique(["q", "m"], keep="first", maintain_order=True).select("q", "mask")
                .unique().with_columns(b=pl.lit(1.0 + M)))
        ranked = (freq.join(full, on=["q", "mask"], how="full", coalesce=True)
                  .with_columns(pl.col("w").fill_null(0.0), pl.col("b").fill_null(0.0))
                  .with_columns(r=(pl.col("w") + pl.col("b")).round(9))  # sums in any order rank alike
                  .sort(["q", "r", "mask"], descending=[False, True, False])
                  .group_by("q", maintain_order=True).head(self.spec.keys_per_question))
        q = ranked["q"].to_numpy().astype(np.int64)
        m = ranked["mask"].to_numpy().astype(np.uint64)
        return _Keys(q=q, text=np.array([mask_text(int(a), int(b)) for a, b in zip(q, m)], dtype=object),
                     quality=f1(q, m))

    # ---- the whole store
    def run(self):
        spec = self.spec
        keys = None
        samples, fusions, golds = [], [], []
        for si, st in enumerate(spec.stages):
            if st.dependency == "independent":
                keys = None  # one pool per (question, model), context "": the upstream answer plays no part
            out = self.set_stage(si, st, keys) if st.aggregation == "set_vote" else self.categorical_stage(si, st, keys)
            samples.append(out.samples)
            if out.fusions is not None:
                fusions.append(out.fusions)
            golds.append(out.gold)
            keys = out.keys
        return samples, fusions, golds


def simulate(spec: SimSpec, out: str | Path, *, seed: int = 0, preset: str | None = None,
             overwrite: bool = True, command: str | None = None) -> Path:
    """Generate the SYNTHETIC store that `spec` and `seed` describe and write it to `out`
    (atomically); return its path.

    Args:
        spec: the simulation (docs/simulate.md; `spec_from_dict`, `presets.resolve`).
        out: the store folder to write.
        seed: the seed of every random draw (recorded in the manifest).
        preset: the preset the spec came from, recorded in the provenance.
        overwrite: replace an existing store at `out`.
        command: the command line that made it, recorded in the provenance.
    """
    g = _Generator(spec, seed)
    samples, fusions, golds = g.run()
    Q = spec.questions
    n_train = int(round(spec.train_fraction * Q))
    perm = _rng(seed, "split").permutation(Q)
    is_train = np.zeros(Q, dtype=bool)
    is_train[perm[:n_train]] = True
    qids = g.qids
    questions = pl.DataFrame({
        "question_id": pl.Series(qids, dtype=pl.String),
        "split": np.where(is_train, "train", "test"),
        "gold": pl.Series(golds[-1], dtype=pl.String),
        "metadata": [f'{{"difficulty": {d:.4f}}}' for d in g.difficulty.mean(axis=1)],
    })
    stage_golds = None
    if len(spec.stages) > 1:
        stage_golds = pl.concat([
            pl.DataFrame({"question_id": pl.Series(qids, dtype=pl.String), "stage": st.name,
                          "gold": pl.Series(golds[i], dtype=pl.String)})
            for i, st in enumerate(spec.stages[:-1])
        ])
    import numba, polars, pyarrow  # noqa: E401 - versions for the provenance

    manifest = S.Manifest(
        name=spec.name,
        synthetic=True,
        stages=tuple(S.Stage(name=st.name, aggregation=st.aggregation, scorer=st.scorer, models=st.models,
                             description=st.description or f"simulated {st.name} stage", dependency=st.dependency)
                     for st in spec.stages),
        score_rule=spec.score_rule,
        models=tuple(S.Model(name=m.name, params=m.params, description=m.description or "simulated model")
                     for m in spec.models),
        split={"train": tuple(qids[is_train]), "test": tuple(qids[~is_train])},
        provenance={
            "synthetic": "simulated by `collect simulate`, not collected from real models",
            "generator": "collect.simulate (tts-replay 0.1.0)",
            "preset": preset,
            "seed": seed,
            "spec": spec.to_json(),
            "command": command,
            "tools": {"numpy": np.__version__, "polars": polars.__version__, "pyarrow": pyarrow.__version__,
                      "numba": numba.__version__},
        },
    )
    return write_store(out, manifest, questions, pl.concat(samples), fusions=pl.concat(fusions) if fusions else None,
                       stage_golds=stage_golds, overwrite=overwrite)
