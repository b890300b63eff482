"""`rules`: AgentTTS's three insights as a deterministic procedure, with no LLM at all.

Our own baseline: how much does the LLM add over the insights themselves?

1. Initialisation (insight 1: stages prefer different models). For each stage, the other
   stages at their largest model with one sample; each candidate model of the stage with as
   many samples as the stage's share of the budget allows. The stage's preferred models are
   ranked by score; a larger model must beat a smaller one by more than the noise (the
   standard error) to rank above it, so that when the large model does not clearly win, the
   small model, whose cheap samples leave room for repeated sampling, is preferred.
2. Sample counts (insight 2: a best count exists and more can hurt). Per stage, starting at
   the incumbent, try doubling and halving the count; move in the direction that improves,
   doubling the step, and stop when the score falls; then try the midpoints around the best.
3. Budget trade-offs (insight 3: stages interact). For each ordered pair of stages, take
   budget from one (halve its count, or move it to its next preferred, cheaper model) and give
   it to the other (the largest count that fits); keep a move that improves, and run the count
   search again on the stage that gained.
Then, while trials remain, the untried neighbours of the incumbent, nearest first.

`ablate`: 'insight1' starts from a seeded random feasible configuration instead of the
model comparison; 'insight2' skips the count search; 'insight3' skips the trade-offs.
Deterministic given seed and history, so --resume replays it by asking again.
"""

from __future__ import annotations

from typing import ClassVar, Generator

import numpy as np

from replay.engine import Config, StageChoice
from replay.errors import ConfigError

from ..protocol import Proposal, ReplayByAsking, Searcher, Trial
from ..spaces.config import ConfigSpace

ABLATIONS = ("insight1", "insight2", "insight3")


class RulesSearcher(ReplayByAsking, Searcher):
    """Parameters (options):
        ablate: "insight1", "insight2" or "insight3": leave that part out (see above).
    """

    name: ClassVar[str] = "rules"
    options_accepted: ClassVar[frozenset[str]] = frozenset({"ablate"})
    needs: ClassVar[frozenset[str]] = frozenset({"stages"})  # written for models and counts per stage
    space: ConfigSpace

    def __init__(self, space: ConfigSpace, *, seed: int = 0, trials: int | None = None, ablate: str | None = None):
        super().__init__(space, seed=seed, trials=trials)
        if ablate is not None and ablate not in ABLATIONS:
            raise ConfigError("--ablate", f"unknown ablation {ablate!r} (known: {', '.join(ABLATIONS)})")
        self.ablate = ablate
        self._results: dict[Config, Trial] = {}
        self._gen: Generator | None = None
        self._next: Proposal | None = None
        self._done = False
        self._phase = "init"
        self.preferred: list[list[str]] = [list(m) for m in space.models]
        self.incumbent: Trial | None = None

    # ---- the protocol
    def ask(self) -> list[Proposal]:
        pending = self.pending()
        if pending:
            return pending
        if self._gen is None:
            self._gen = self._plan()
            self._advance(None)
        return [] if self._next is None else [self._next]

    def tell(self, trial: Trial) -> None:
        super().tell(trial)
        self._results[trial.point] = trial
        if self._gen is not None and self._next is not None and trial.point == self._next.point:
            self._advance(trial)

    def state(self) -> dict:
        return {"phase": self._phase,
                "preferred": {st: list(p) for st, p in zip(self.space.stages, self.preferred)},
                "incumbent": str(self.incumbent.point) if self.incumbent else None}

    def _advance(self, trial: Trial | None) -> None:
        try:
            cfg, why = self._gen.send(trial) if trial is not None else next(self._gen)
            self._next = Proposal(cfg, source=f"rules-{self._phase}", extra={"why": why})
        except StopIteration:
            self._next = None

    # ---- helpers for the plan
    def _better(self, t: Trial | None) -> bool:
        """Higher score, or the same score for less budget (which frees budget for other stages)."""
        if t is None or not t.feasible:
            return False
        inc = self.incumbent
        return inc is None or t.score > inc.score + 1e-12 or (abs(t.score - inc.score) <= 1e-12 and t.cost < inc.cost)

    def _try(self, cfg: Config, why: str):
        """Score `cfg` (a trial) unless already scored; update the incumbent. Yields at most once."""
        if cfg not in self._results:
            if not self.space.contains(cfg) or not self.space.maybe_feasible(cfg):
                return None
            yield cfg, why
        t = self._results[cfg]
        if self._better(t):
            self.incumbent = t
        return t

    def _fill(self, cfg: Config, stage: int, model: str, slack: float = 0.0) -> Config | None:
        """`cfg` with `model` on `stage` at the largest count whose expected cost fits the budget
        (scaled by 1 + slack)."""
        n = self.space.max_affordable(cfg, stage, model, budget=self.space.budget * (1 + slack))
        return None if n == 0 else self.space.with_choice(cfg, stage, model, n)

    def _try_fill(self, cfg: Config, stage: int, model: str, why: str):
        """Fill `stage` to the budget; if the replay finds it infeasible (over the fallback limit),
        step the count down a little, a few times."""
        t = None
        for shrink in (0.0, -0.03, -0.08):
            new = self._fill(cfg, stage, model, slack=shrink)
            if new is None:
                return t
            t = yield from self._try(new, why)
            if t is None or t.feasible:
                return t
        return t

    # ---- the plan: a generator of (config, reason); receives each trial
    def _plan(self):
        sp = self.space
        S = len(sp.stages)
        if self.ablate == "insight1":
            yield from self._random_init()
        else:
            yield from self._init()
        if self.incumbent is None:  # nothing feasible yet: start from the cheapest config
            cheap = Config(tuple(StageChoice(sp.smallest_model(i), 1) for i in range(S)))
            yield from self._try(cheap, "cheapest configuration")
        if self.incumbent is None:
            return
        if self.ablate != "insight2":
            for i in self._stage_order():
                yield from self._count_search(i)
        if self.ablate != "insight3":
            yield from self._tradeoffs()
        self._phase = "refine"
        yield from self._refine()

    def _init(self):
        sp = self.space
        S = len(sp.stages)
        self._phase = "insight1"
        base = Config(tuple(StageChoice(sp.largest_model(i), 1) for i in range(S)))
        self._spread = np.zeros(S)
        for i in range(S):
            rows = []
            for m in sorted(sp.models[i], key=lambda m: -sp.params[m]):
                t = yield from self._try_fill(base, i, m, f"insight 1: stage {sp.stages[i]}, {m} with the stage's share "
                                                          "of the budget")
                if t is not None and t.feasible:
                    rows.append((m, t))
            if rows:
                self.preferred[i] = self._rank(rows) + [m for m in sp.models[i] if m not in {r[0] for r in rows}]
                self._spread[i] = max(t.score for _, t in rows) - min(t.score for _, t in rows)
        # every stage on its preferred model with the count that fits its share of the budget
        # (the share its largest model takes in the default budget); insights 2 and 3 move it
        ref = [sum(sp.costs[i][sp.largest_model(i)]) for i in range(S)]
        stages = []
        for i in range(S):
            m = self.preferred[i][0]
            fixed, per = sp.costs[i][m]
            share = sp.budget * ref[i] / sum(ref)
            fit = [n for n in sp.counts[i][m] if fixed + n * per <= share]
            stages.append(StageChoice(m, max(fit) if fit else min(sp.counts[i][m])))
        yield from self._try(Config(tuple(stages)), "insight 1: every stage on its preferred model, its share of the budget")

    def _rank(self, rows: list[tuple[str, Trial]]) -> list[str]:
        """Best first; a larger model ranks above a smaller one only if it wins by more than the noise."""
        p = self.space.params
        by_size = sorted(rows, key=lambda r: p[r[0]])  # small first
        out: list[tuple[str, Trial]] = []
        for m, t in sorted(by_size, key=lambda r: -r[1].score):
            out.append((m, t))
        # stable pass: swap a larger model below a smaller one when it does not clearly win
        changed = True
        while changed:
            changed = False
            for k in range(len(out) - 1):
                (ma, ta), (mb, tb) = out[k], out[k + 1]
                noise = max(ta.stderr or 0.0, tb.stderr or 0.0)
                if p[ma] > p[mb] and ta.score - tb.score <= noise:
                    out[k], out[k + 1] = out[k + 1], out[k]
                    changed = True
        return [m for m, _ in out]

    def _random_init(self):
        sp = self.space
        self._phase = "random-init"
        self._spread = np.zeros(len(sp.stages))
        for _ in range(1000):
            cfg = Config(tuple(StageChoice(m := sp.models[i][int(self.rng.integers(len(sp.models[i])))],
                                           int(self.rng.choice(sp.counts[i][m]))) for i in range(len(sp.stages))))
            if sp.maybe_feasible(cfg):
                yield from self._try(cfg, "random initialisation (insight 1 ablated)")
                if self.incumbent is not None:
                    return

    def _stage_order(self) -> list[int]:
        """Stages whose model choice mattered most in the initialisation first."""
        return sorted(range(len(self.space.stages)), key=lambda i: -self._spread[i])

    def _count_search(self, i: int):
        sp = self.space
        self._phase = "insight2"
        inc = self.incumbent.point
        m, n0 = inc.stages[i].model, inc.stages[i].samples
        allowed = sp.counts[i][m]
        top = sp.max_affordable(inc, i, m)

        def at(n):
            n = max(allowed[0], min(int(n), top))
            return min(allowed, key=lambda a: (abs(a - n), a))

        name = sp.stages[i]
        best_n = n0
        for direction in (+1, -1):
            step = 1
            cur = n0
            while True:
                nxt = at(cur * 2 ** step if direction > 0 else cur / 2 ** step) if step else cur
                if nxt == cur:
                    break
                before = self.incumbent
                yield from self._try(sp.with_choice(self.incumbent.point, i, m, nxt),
                                     f"insight 2: stage {name} count {cur} -> {nxt} ({'up' if direction > 0 else 'down'})")
                if self.incumbent is before:  # it fell (or did not rise): the best count is behind us
                    break
                best_n, cur = nxt, nxt
            if best_n != n0:
                break  # moved one way: no need to look the other
        # midpoints around the best count
        for nb in (at((best_n + at(best_n * 2)) / 2), at((best_n + at(best_n / 2)) / 2)):
            if nb != best_n:
                yield from self._try(sp.with_choice(self.incumbent.point, i, m, nb),
                                     f"insight 2: stage {name} count {best_n} -> {nb} (midpoint)")

    def _tradeoffs(self):
        sp = self.space
        S = len(sp.stages)
        for _ in range(10):  # rounds; each round ends at the first improving move
            self._phase = "insight3"
            inc = self.incumbent
            cfg = inc.point
            for j in self._stage_order():  # the stage that gains budget
                moves = []  # (config with budget freed, what was done, model for stage j)
                for i in range(S):
                    if i == j:
                        continue
                    ci = cfg.stages[i]
                    if ci.samples > 1:
                        moves.append((sp.with_choice(cfg, i, ci.model, max(1, ci.samples // 2)),
                                      f"halve stage {sp.stages[i]}'s count", cfg.stages[j].model))
                    cheaper = [m for m in self.preferred[i] if sp.params[m] < sp.params[ci.model]]
                    if cheaper:
                        n = min(sp.counts[i][cheaper[0]], key=lambda a: abs(a - ci.samples))
                        moves.append((sp.with_choice(cfg, i, cheaper[0], n), f"stage {sp.stages[i]} to {cheaper[0]}",
                                      cfg.stages[j].model))
                # the gaining stage may also switch to its next preferred models
                for m in self.preferred[j][:3]:
                    if m != cfg.stages[j].model:
                        moves.append((cfg, f"stage {sp.stages[j]} to {m}", m))
                for freed, why, m in moves:
                    yield from self._try_fill(freed, j, m, f"insight 3: {why}; stage {sp.stages[j]} gets the "
                                                           f"freed budget ({m})")
                    if self.incumbent is not inc:
                        break
                if self.incumbent is not inc:
                    if self.ablate != "insight2":
                        yield from self._count_search(j)
                    break
            if self.incumbent is inc:
                return

    def _refine(self):
        """Untried neighbours of the incumbent: count moves first (per stage, then paired: one
        stage down, another filled up), model switches last; the radius doubles when a ring is
        spent and falls back to 1 whenever the incumbent improves."""
        sp = self.space
        S = len(sp.stages)
        radius = 1
        top = max(max(c) for cs in sp.counts for c in cs.values())
        while radius <= top:
            inc = self.incumbent
            cfg = inc.point
            counts, pairs, switches = [], [], []
            for i in range(S):
                ch = cfg.stages[i]
                for d in (radius, -radius):
                    if ch.samples + d in sp.counts[i][ch.model]:
                        counts.append(sp.with_choice(cfg, i, ch.model, ch.samples + d))
                down = ch.samples - radius
                if down in sp.counts[i][ch.model]:
                    for k in range(S):
                        if k != i:
                            f = self._fill(sp.with_choice(cfg, i, ch.model, down), k, cfg.stages[k].model)
                            if f is not None:
                                pairs.append(f)
                for m in self.preferred[i]:
                    if m != ch.model:
                        for target in (ch.samples, ch.samples + radius, ch.samples - radius):
                            switches.append(sp.with_choice(cfg, i, m, min(sp.counts[i][m], key=lambda a: abs(a - target))))
                        f = self._fill(cfg, i, m)
                        if f is not None:
                            switches.append(f)
            cands = [c for c in dict.fromkeys(counts + pairs + switches)
                     if c not in self._results and sp.maybe_feasible(c)]
            if not cands:
                radius *= 2
                continue
            for c in cands:
                yield from self._try(c, f"refine: neighbour of {inc.point} (radius {radius})")
                if self.incumbent is not inc:
                    radius = 1
                    break
