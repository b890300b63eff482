"""Agent-REINFORCE (arXiv 2511.00086): search a probabilistic collaboration graph by
sample -> feedback -> update, the REINFORCE pipeline with an LLM's feedback as the gradient.

The probabilistic graph is search/graphs/probabilistic.py (per-slot use, role, model and
sample-count probabilities, per-edge probabilities; valid graphs by construction, bounded
updates). The loop:

0. Initialisation (insight 1, model family and size): one probe trial per model (a single
   solve node with as many samples as the budget allows; source "init"), then the agent reads
   them and sets the initial distribution ({"analysis", "distribution"}).
1. Sample a batch of graphs from the distribution (untried, within budget by the space's
   expected cost; batch b draws from a generator seeded by (seed, b), so a batch is the same
   whenever it is drawn again). Each is a trial, scored on the training questions by the runner.
2. Feedback: the agent reads the batch (every graph with its width, depth, score, cost) and
   says which parts helped and which hurt ({"feedback": [...]}).
3. Update: the agent proposes the new probabilities ({"distribution": {...}}), steered by
   insights 2 and 3 (width/depth trends; their interdependence). The proposal is checked
   strictly (a malformed or invalid answer goes back with the reasons, at most `max_feedback`
   times, counted; an answer that never becomes valid leaves the distribution unchanged,
   counted as a refused update), then bounded: each probability moves at most `max_step`,
   none falls below `floor`, rows are normalised (cuts and renormalisations are counted).

`--ablate`: "insight1" (no probes and no initialisation call: the uniform distribution),
"insight2", "insight3" (that instruction left out of the update prompt), "feedback" (no LLM at
all: a plain REINFORCE step from the scores, the score-function gradient with the batch mean
as baseline and the advantages divided by their standard deviation; infeasible trials get the
batch's lowest feasible score). "feedback" takes no endpoint and no other ablation.

Resume: every trial of batch b carries the distribution b was drawn from, its draw's
decisions and the counters; `replay_history` restores the newest and draws an unfinished batch
again (same seed, same distribution, same exclusions: the same graphs, checked).
"""

from __future__ import annotations

import copy
import json
from typing import Any, ClassVar

import numpy as np

from replay.errors import ConfigError, InputError

from ..graphs.insights import INSIGHT1, INSIGHT2, INSIGHT3
from ..graphs.probabilistic import Decisions, GraphDistribution, UpdateReport, Vocabulary, slot_name
from ..llm import prompts
from ..llm.agent import LLM_OPTIONS, LLMSearcher, _positive, parse_ablate
from ..llm.answer import Answer, AnswerProblem, strip_wrapping
from ..llm.client import LLMClient, LLMSettings
from ..protocol import Proposal, Searcher, Trial
from ..spaces.base import Space

ABLATIONS = ("insight1", "insight2", "insight3", "feedback")
DEFAULTS = {"batch": 8, "max_step": 0.25, "floor": 0.02, "learning_rate": 2.0}
INIT_FIELDS = {"analysis": "string", "distribution": "distribution"}
FEEDBACK_FIELDS = {"feedback": "strings"}
UPDATE_FIELDS = {"distribution": "distribution"}
EXTRA_COUNTERS = ("refused_updates", "clipped_updates", "renormalised_rows", "rejected_draws", "repaired_draws",
                  "fallback_draws")


class AgentReinforceSearcher(LLMSearcher):
    """Parameters (options; the LLM ones as for every LLM searcher, search/llm/agent.py):
        ablate: comma-separated ABLATIONS (module docstring).
        trials_per_round: graphs per batch (8).
        max_step: the most a probability moves in one update (0.25).
        floor: the least probability anything keeps (0.02).
        learning_rate: the REINFORCE step in logit space (--ablate feedback; 2.0).
        max_nodes: node slots of the probabilistic graph (default and most: the space's node limit).
    """

    name: ClassVar[str] = "agent-reinforce"
    options_accepted: ClassVar[frozenset[str]] = LLM_OPTIONS | {"ablate", "max_step", "floor", "learning_rate",
                                                                 "max_nodes"}
    needs: ClassVar[frozenset[str]] = frozenset({"graphs"})

    def __init__(self, space: Space, *, seed: int = 0, trials: int | None = None, ablate=None,
                 max_step: float | None = None, floor: float | None = None, learning_rate: float | None = None,
                 max_nodes: int | None = None, **options: Any):
        self.ablate = parse_ablations(ablate)
        self.use_llm = "feedback" not in self.ablate
        if self.use_llm:
            super().__init__(space, seed=seed, trials=trials, **options)
        else:  # plain REINFORCE: no endpoint is read, none is needed
            Searcher.__init__(self, space, seed=seed, trials=trials)
            self.settings = None
            self.client = None
            self.per_round = _positive(options, "trials_per_round", DEFAULTS["batch"])
            self.max_feedback = _positive(options, "max_feedback", 3, lo=0)
            self.counters = {"llm_calls": 0}
            self.totals = {"prompt_tokens": 0, "completion_tokens": 0, "wall_s": 0.0}
        if options.get("trials_per_round") is None:
            self.per_round = DEFAULTS["batch"]
        for k in EXTRA_COUNTERS:
            self.counters.setdefault(k, 0)
        self.max_step = _number(max_step, "max_step", DEFAULTS["max_step"], 1e-6, 1.0)
        self.floor = _number(floor, "floor", DEFAULTS["floor"], 0.0, 0.2)
        self.lr = _number(learning_rate, "learning_rate", DEFAULTS["learning_rate"], 1e-9, 1e6)
        self.vocab = vocabulary_for(space, max_nodes=max_nodes)
        self.dist = GraphDistribution.uniform(self.vocab)
        self.batch = 0  # batches drawn so far (batch b is drawn from the generator seeded (seed, b))
        self.updated_through = -1  # the last batch the distribution has learnt from
        self.initialised = not self.use_llm or "insight1" in self.ablate
        self.probes_done = "insight1" in self.ablate or not self.use_llm
        self.feedback: list[str] = []
        self.analysis = ""
        self.last_update: dict[str, Any] = {}
        self.batch_trials: dict[int, list[Trial]] = {}
        self._pending: list[Proposal] = []

    # ---- the protocol

    def ask(self) -> list[Proposal]:
        if self._pending:
            out, self._pending = self._pending, []
            return out
        if not self.probes_done:
            self.probes_done = True
            probes = [p for p in self.probe_points() if not self.tried(p)]
            if probes:
                out = self.proposals(probes, "init", {"batch_index": -1, "batch_size": len(probes)})
                for p in out:
                    p.extra["distribution"] = self.dist.to_json(digits=17)  # exact, for --resume
                return out
        record: dict[str, Any] = {}
        if not self.initialised:
            record["init_call"] = self.initialise()
            self.initialised = True
        last = self.batch - 1
        if last >= 0 and self.updated_through < last:
            record.update(self.update(last))
            self.updated_through = last
        # always a whole batch (the runner cuts what the trial budget leaves): a batch does not
        # depend on the budget, so a search resumed with a larger one goes on as if never stopped
        return self.draw_batch(self.batch, self.per_round, record)

    def tell(self, trial: Trial) -> None:
        super().tell(trial)
        b = trial.extra.get("batch_index") if isinstance(trial.extra, dict) else None
        if isinstance(b, int) and b >= 0:
            self.batch_trials.setdefault(b, []).append(trial)

    def state(self) -> dict[str, Any]:
        base = super().state() if self.use_llm else {
            "llm_wall_s": 0.0, "llm_tokens": 0, "counters": dict(self.counters),
            "infeasible_trials": sum(1 for t in self.history if not t.feasible)}
        return {**base, "batches_drawn": self.batch, "updated_through": self.updated_through, "ablate": sorted(self.ablate),
                "distribution": self.dist.to_json(digits=4), "mode_graph": str(self.dist.mode()),
                "feedback": list(self.feedback), "analysis": self.analysis, "last_update": dict(self.last_update)}

    def replay_history(self, trials: list[Trial]) -> None:
        """Tell every archived trial, restore the newest trial's distribution, counters and
        feedback, and draw an unfinished last batch again (checked against the archive)."""
        for t in trials:
            self.tell(t)
        newest = next((t for t in reversed(trials) if isinstance(t.extra, dict) and "distribution" in t.extra), None)
        if newest is None:
            return
        ex = newest.extra
        self.counters.update({k: int(v) for k, v in ex.get("counters", {}).items() if k in self.counters})
        self.totals.update(ex.get("llm_totals", {}))
        self.dist = GraphDistribution.from_archive(self.vocab, ex["distribution"])
        self.feedback = [str(x) for x in ex.get("feedback", [])]
        self.analysis = str(ex.get("analysis", ""))
        self.last_update = dict(ex.get("last_update", {}))
        b = int(ex.get("batch_index", -1))
        self.probes_done = True
        if b >= 0:
            self.initialised = True
            self.batch = b + 1
            self.updated_through = b - 1
        told = [t for t in trials if isinstance(t.extra, dict) and t.extra.get("batch_index") == b]
        size = int(ex.get("batch_size", len(told)))
        if len(told) < size:
            before = {self.space.key(t.point) for t in trials if t.number < told[0].number}
            if b >= 0:
                counted = dict(self.counters)  # the archived counters hold this batch's draws already
                again = self._draw(b, size, before)
                self.counters = counted
            else:
                again = [(p, None) for p in self.probe_points() if self.space.key(p) not in before]
            for t, (p, _) in zip(told, again):
                if self.space.key(p) != self.space.key(t.point):
                    raise InputError("--resume", f"archived trial {t.number} is {self.space.label(t.point)}, but the "
                                     f"searcher draws {self.space.label(p)} there: the archive was written with "
                                     "other options or another version")
            rest = again[len(told):]
            calls = ("decisions", "init_call", "feedback_call", "update_call")  # the calls stay with the trial that has them
            common = {k: v for k, v in ex.items() if k not in calls}
            self._pending = [Proposal(p, source=newest.source, extra={**copy.deepcopy(common),
                                                                       "decisions": None if d is None else d.to_json()})
                             for p, d in rest]

    # ---- the three steps

    def draw_batch(self, b: int, k: int, record: dict[str, Any]) -> list[Proposal]:
        """Batch b: k untried graphs within budget from the current distribution."""
        drawn = self._draw(b, k, set(self._tried))
        self.batch = b + 1
        state = {k2: v for k2, v in self.state().items() if k2 not in ("llm_wall_s", "llm_tokens")}
        common = copy.deepcopy({**state, "batch_index": b, "batch_size": len(drawn),
                                "distribution": self.dist.to_json(digits=17)})  # exact: --resume draws again from it
        out = []
        for n, (p, d) in enumerate(drawn):
            extra = dict(common)
            if n == 0 and record:
                extra.update(copy.deepcopy(record))  # the LLM calls' prompts and answers: once per batch
            extra["decisions"] = None if d is None else d.to_json()
            out.append(Proposal(p, source="sample" if d is not None else "fill", extra=extra))
        return out

    def _draw(self, b: int, k: int, exclude: set) -> list[tuple[Any, Decisions | None]]:
        rng = np.random.default_rng([int(self.seed), int(b)])
        taken = set(exclude)
        sp = self.space
        out: list[tuple[Any, Decisions | None]] = []

        def accept(g) -> bool:
            p = graph_point(sp, g)
            return p is not None and sp.key(p) not in taken and sp.contains(p) and sp.maybe_feasible(p)

        for _ in range(k):
            g, d, info = self.dist.sample(rng, accept=accept)
            self.counters["rejected_draws"] += info["draws"] - 1
            self.counters["repaired_draws"] += info["repaired"]
            if g is None:  # nothing the distribution gives fits: a random point of the space
                p = next(sp.random_points(rng, taken), None)
                if p is None:
                    break
                self.counters["fallback_draws"] += 1
                out.append((p, None))
                continue
            p = graph_point(sp, g)
            taken.add(sp.key(p))
            out.append((p, d))
        return out

    def probe_points(self) -> list[Any]:
        """Insight 1's probes: each model alone (one solve node), with the largest count the
        budget allows by the space's expected cost."""
        v, sp = self.vocab, self.space
        src = [i for i, r in enumerate(v.roles) if r in v.source_roles][0]
        out = []
        for m, name in enumerate(v.models):
            if not v.allowed[src, m]:
                continue
            for c in sorted((c for c in v.counts if c <= v.largest[src, m]), reverse=True):
                from replay.graph.config import Graph, Node

                g = Graph.of([Node(slot_name(0), v.roles[src], name, int(c))], roles=v.roles)
                p = graph_point(sp, g)
                if p is not None and sp.contains(p) and sp.maybe_feasible(p):
                    out.append(p)
                    break
        return out

    def initialise(self) -> dict[str, Any]:
        """Insight 1: the agent sets the initial distribution from the probes."""
        probes = [t for t in self.history if t.source == "init"]
        user = "\n\n".join([
            prompts.task_section(self.space, self.trials_left()),
            self._models_section(),
            prompts.archive_section(probes, self.space, title="## Probe trials (each model alone)"),
            self._distribution_section(),
            "## Instructions\n1. " + INSIGHT1.text + "\n2. " + prompts.REINFORCE_INIT_TASK,
            self._format_section(INIT_FIELDS),
        ])
        res = self.consult(prompts.REINFORCE_SYSTEM, user, INIT_FIELDS)
        if res.answer is None:
            self.counters["refused_updates"] += 1
            self.last_update = {"kind": "init", "accepted": False}
            return res.record
        self.analysis = res.answer.fields.get("analysis", "")
        self._apply(res.answer.fields["distribution"], "init", max_step=1.0)
        return res.record

    def update(self, b: int) -> dict[str, Any]:
        """Feedback on batch b, then the update (or, with --ablate feedback, a REINFORCE step)."""
        trials = self.batch_trials.get(b, [])
        if not self.use_llm:
            self.reinforce_step(trials)
            return {}
        user = "\n\n".join([
            prompts.task_section(self.space, self.trials_left()),
            self._distribution_section(),
            self._batch_section(b, trials),
            "## Instructions\n" + prompts.REINFORCE_FEEDBACK_TASK,
            self._format_section(FEEDBACK_FIELDS),
        ])
        fb = self.consult(prompts.REINFORCE_SYSTEM, user, FEEDBACK_FIELDS)
        self.feedback = list(fb.answer.fields["feedback"]) if fb.answer is not None else []
        steps = [i.text for i in (INSIGHT2, INSIGHT3) if i.name not in self.ablate]
        steps.append(prompts.REINFORCE_UPDATE_TASK.format(max_step=self.max_step, floor=self.floor))
        user = "\n\n".join([
            prompts.task_section(self.space, self.trials_left()),
            self._models_section(),
            self._distribution_section(),
            self._batch_section(b, trials),
            prompts.list_section("## Feedback on the batch", self.feedback, "(none)"),
            self._best_section(),
            "## Instructions\n" + "\n".join(f"{n}. {s}" for n, s in enumerate(steps, 1)),
            self._format_section(UPDATE_FIELDS),
        ])
        up = self.consult(prompts.REINFORCE_SYSTEM, user, UPDATE_FIELDS)
        if up.answer is None:
            self.counters["refused_updates"] += 1
            self.last_update = {"kind": "llm", "batch": b, "accepted": False}
        else:
            self._apply(up.answer.fields["distribution"], "llm", batch=b)
        return {"feedback_call": fb.record, "update_call": up.record}

    def reinforce_step(self, trials: list[Trial]) -> None:
        """The plain REINFORCE update from the batch's scores (module docstring)."""
        rows = [(t, t.extra.get("decisions")) for t in trials if t.extra.get("decisions") is not None]
        ok = [t.score for t, _ in rows if t.feasible and t.score is not None]
        if len(rows) < 2 or not ok:
            self.last_update = {"kind": "reinforce", "skipped": "fewer than two drawn trials or none feasible"}
            return
        low = min(ok)
        r = np.array([t.score if t.feasible and t.score is not None else low for t, _ in rows], dtype=float)
        sd = float(r.std())
        if sd <= 1e-12:
            self.last_update = {"kind": "reinforce", "skipped": "every trial of the batch scored the same"}
            return
        adv = (r - r.mean()) / sd
        new, rep = self.dist.reinforce([Decisions.from_json(d) for _, d in rows], adv, lr=self.lr,
                                       max_step=self.max_step, floor=self.floor)
        self._record(rep, "reinforce", baseline=float(r.mean()))
        self.dist = new

    # ---- helpers

    def _apply(self, proposal: GraphDistribution, kind: str, *, max_step: float | None = None, **info: Any) -> None:
        new, rep = self.dist.bounded(proposal, max_step=self.max_step if max_step is None else max_step,
                                     floor=self.floor)
        self._record(rep, kind, **info)
        self.dist = new

    def _record(self, rep: UpdateReport, kind: str, **info: Any) -> None:
        self.counters["clipped_updates"] += int(rep.clipped > 0)
        self.counters["renormalised_rows"] += rep.renormalised
        self.last_update = {"kind": kind, "accepted": True, **rep.to_json(), **info}

    def answer_schema(self, fields: dict[str, str], k: int) -> dict | None:
        """Structured outputs: the plain fields' schema, and a "distribution" field as a JSON
        object (its keys and bounds are checked by `parse`, and every problem goes back)."""
        plain = {f: v for f, v in fields.items() if v != "distribution"}
        schema = super().answer_schema(plain, k) if plain else {"type": "object", "properties": {}, "required": [],
                                                                 "additionalProperties": False}
        for f, v in fields.items():
            if v == "distribution":
                schema["properties"][f] = {"type": "object"}
                schema["required"].append(f)
        return schema

    def parse(self, text: str, fields: dict[str, str]) -> Answer:
        """Strict JSON; a "distribution" field is checked against the probabilistic graph
        (search/graphs/probabilistic.py `proposal_from_json`): every problem goes back."""
        plain = {k: v for k, v in fields.items() if v != "distribution"}
        dist_fields = [k for k, v in fields.items() if v == "distribution"]
        if not dist_fields:
            return super().parse(text, fields)
        body = strip_wrapping(text)
        try:
            obj = json.loads(body) if body else None
        except json.JSONDecodeError as e:
            raise AnswerProblem("malformed_json", f"the answer is not valid JSON ({e.msg} at line {e.lineno} "
                                f"column {e.colno})") from None
        if not isinstance(obj, dict):
            raise AnswerProblem("malformed_json" if obj is None else "schema_errors",
                                "expected one JSON object" if obj is None else "the answer must be a JSON object")
        extra = sorted(set(obj) - set(fields))
        missing = [f for f in fields if f not in obj]
        if extra or missing:
            raise AnswerProblem("schema_errors", f"the answer must have exactly the fields {', '.join(map(repr, fields))}"
                                + (f"; unexpected {', '.join(map(repr, extra))}" if extra else "")
                                + (f"; missing {', '.join(map(repr, missing))}" if missing else ""))
        parsed = super().parse(json.dumps({k: obj[k] for k in plain}), plain) if plain else Answer({}, ())
        out = dict(parsed.fields)
        for k in dist_fields:
            prop, problems, _ = self.dist.proposal_from_json(obj[k])
            if problems:
                raise AnswerProblem("schema_errors", f"{k!r}: " + "; ".join(problems[:8])
                                    + (f"; and {len(problems) - 8} more" if len(problems) > 8 else ""))
            out[k] = prop
        return Answer(fields=out, trials=())

    def _models_section(self) -> str:
        return "\n".join(["## Models (family and size)"] + [f"- {x}" for x in self.vocab.describe_models()])

    def _distribution_section(self) -> str:
        slots = ", ".join(slot_name(i) for i in range(self.vocab.max_nodes))
        return "\n".join(["## The probabilistic graph", prompts.REINFORCE_GRAPH.format(slots=slots),
                          "Current probabilities:", json.dumps(self.dist.to_json(digits=3))])

    def _batch_section(self, b: int, trials: list[Trial]) -> str:
        lines = [f"## Batch {b + 1}: the graphs drawn and how they scored"]
        if not trials:
            return "\n".join(lines + ["(no trials)"])
        lines.append(" | ".join(["#", "graph", "nodes", "width", "depth", "score (+- stderr)", *self.space.cost_columns()]))
        for t in trials:
            g = graph_of_point(self.space, t.point)
            shape = (len(g.nodes), g.width(), g.depth()) if g is not None else ("?", "?", "?")
            score = (f"{t.score:.3f} +- {t.stderr:.3f}" if t.stderr is not None and np.isfinite(t.stderr) else
                     f"{t.score:.3f}") if t.feasible and t.score is not None else f"INFEASIBLE ({t.why_infeasible})"
            lines.append(" | ".join([str(t.number), self._slot_label(t), *map(str, shape), score, *self.space.cost_cells(t)]))
        ok = [t.score for t in trials if t.feasible and t.score is not None]
        if ok:
            lines.append(f"Batch mean score {np.mean(ok):.3f}, best {max(ok):.3f} ({len(ok)} of {len(trials)} within the limits).")
        return "\n".join(lines)

    def _slot_label(self, t: Trial) -> str:
        """The graph with its nodes named by the slots they came from (n1.. as in the
        distribution), where the trial carries its draw's decisions."""
        d = t.extra.get("decisions") if isinstance(t.extra, dict) else None
        if d is not None:
            try:
                return str(self.dist.graph_of(Decisions.from_json(d)))
            except (KeyError, ValueError, IndexError, ConfigError):
                pass
        return self.space.label(t.point)

    def _best_section(self) -> str:
        ok = sorted((t for t in self.history if t.feasible and t.score is not None), key=lambda t: (-t.score, t.cost))[:5]
        return prompts.archive_section(sorted(ok, key=lambda t: t.number), self.space,
                                       title="## Best graphs so far", show_source=False)

    def _format_section(self, fields: dict[str, str]) -> str:
        def distribution(name: str, kind: str):
            if kind != "distribution":
                return None
            last = slot_name(self.vocab.max_nodes - 1)  # a slot every distribution has
            return ('{"n1": {"use": <p>, "role": {ROLE: <p>, ...}, "model": {MODEL: <p>, ...}, '
                    '"samples": {"COUNT": <p>, ...}, "inputs": {EARLIER_SLOT: <p>, ...}}, "n2": ...}',
                    {last: self.dist.to_json(digits=3)[last]})

        return prompts.format_section(self.space, fields, own_field=distribution,
                                      rule="Probabilities are numbers from 0 to 1; role, model and samples rows name "
                                           "every choice; inputs name only earlier slots.")


# --------------------------------------------------------------------------------------------
# The graph space, as this searcher reads it


def vocabulary_for(space: Space, *, max_nodes: int | None = None) -> Vocabulary:
    """The probabilistic graph's vocabulary for a graph space (search/spaces/graph.py): its
    roles, candidate models, counts, in-degrees and node limit (`max_nodes` narrows it)."""
    if not all(hasattr(space, a) for a in ("roles", "models", "counts", "in_degree", "max_nodes")):
        raise ConfigError("--searcher", f"agent-reinforce searches collaboration graphs; the {space.kind} space is not one")
    if max_nodes is not None and (isinstance(max_nodes, bool) or int(max_nodes) < 1):
        raise ConfigError("--max-nodes", f"must be at least 1, got {max_nodes}")
    return Vocabulary.from_space(space, max_nodes=max_nodes)


def graph_point(space: Space, graph) -> Any:
    """The space's point for a Graph (the Graph itself where the space's points are graphs)."""
    to_point = getattr(space, "point_of_graph", None)
    return to_point(graph) if to_point is not None else graph


def graph_of_point(space: Space, point) -> Any:
    to_graph = getattr(space, "graph_of_point", None)
    return to_graph(point) if to_graph is not None else point


def parse_ablations(value) -> frozenset[str]:
    out = parse_ablate(value, ABLATIONS, searcher="agent-reinforce")
    if "feedback" in out and len(out) > 1:
        raise ConfigError("--ablate", "feedback removes the LLM, and with it every insight: ablate it alone")
    return frozenset(out)


def _number(value, key: str, default: float, lo: float, hi: float) -> float:
    if value is None:
        return default
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"--{key.replace('_', '-')}", f"{value!r} is not a number") from None
    if not (lo <= x <= hi):
        raise ConfigError(f"--{key.replace('_', '-')}", f"must be from {lo:g} to {hi:g}, got {x:g}")
    return x


def expected_score(space: Space, dist: GraphDistribution, objective, *, n: int = 64, seed: int = 0) -> float:
    """The mean training score of `n` graphs drawn from `dist` (within budget by the expected
    cost; infeasible draws score 0): a Monte Carlo estimate of what the distribution is worth."""
    rng = np.random.default_rng([int(seed), 10_007])
    pts = []
    for _ in range(n):
        g, _, _ = dist.sample(rng, accept=lambda g: space.maybe_feasible(graph_point(space, g)))
        if g is not None:
            pts.append(graph_point(space, g))
    if not pts:
        return float("nan")
    evs = space.evaluate(pts, objective)
    return float(np.mean([e.score if e.feasible and e.score is not None else 0.0 for e in evs]))
