"""The search-space protocol: what every searcher, the runner, the archive and the prompts need.

A space says what a point is and answers every question about points that a search asks:

| concern | methods |
| --- | --- |
| identity | `key` (hashable, for "tried already"), `label` (one line), `contains`, `size` |
| archive | `encode` / `decode` (JSON and back), `to_json` (the header; `--resume` compares it) |
| budget | `budget`, `cost_unit`, `estimate_cost` (None: known only once replayed), `maybe_feasible` |
| sampling | `sample`, `random_points` (untried, uniform over what may be feasible) |
| moves | `neighbours` (nearest first), `mutate` |
| scoring | `evaluate(points, objective)`: one replay call for a batch |
| text | `describe` (the task for a prompt), `point_columns`/`point_cells`, `cost_columns`/`cost_cells` (the archive table), `cost_text`, `title` |
| LLM answers | `answer_shape`, `answer_rule`, `answer_example`, `point_from_answer` (structure), `answer_problems` (meaning), `answer_problem_kinds`, `agent_brief` |
| optional | `grid` ("grid"), `parametrisation` ("parametrisation"), `scan_best`, `scan_picks` and `optimum` ("scan"), `initial_points`, and whatever a searcher lists in `needs` |

Optional capabilities are declared in `supports` (a searcher declares what it `needs`; the
runner refuses a searcher whose needs a space lacks, in one line, before any trial).

Implementations: `ConfigSpace` (search/spaces/config.py: a model and a sample count per
stage, cost in normalised units), `ControllerSpace` (search/spaces/controller.py: a
width-depth controller's parameters or its knob beta, cost in tokens), `ProgramSpace`
(search/spaces/program.py) and `GraphSpace` (search/spaces/graph.py: collaboration graphs). A new space (a
collaboration graph, an LLM-written program) is one more file here and one line in
search/spaces/__init__.py; random, grid (if it can enumerate), bo (if it has a
parametrisation) and agenttts then run on it unchanged.
"""

from __future__ import annotations

import abc
import json
from dataclasses import dataclass
from typing import Any, ClassVar, Hashable, Iterator, Protocol, Sequence

import numpy as np

from replay.errors import ConfigError

from ..trial import Evaluation, Objective, Trial

# The cost model gives expected costs; the replay measures the cost of the outputs it actually
# drew, which scatters around that (a few per cent on small question sets). Searchers keep
# points up to this much over budget (by estimate) as candidates and let the replay decide.
ESTIMATE_SLACK = 0.05
MAX_MISSES = 10_000  # random samples in a row that were tried already before a space counts as used up

# What optional capabilities mean, for the one-line refusal of a searcher that needs one.
CAPABILITIES = {
    "grid": "a finite grid of its points",
    "scan": "a compiled scan of the whole space",
    "parametrisation": "a parametrisation by numbers and categories",
    "stages": "a model and a sample count per stage",
    "programs": "points written as programs (source code)",
    "graphs": "points that are collaboration graphs",
}


@dataclass(frozen=True)
class Dim:
    """One coordinate of a parametrisation: categorical (`choices`), int or float (`low`..`high`)."""

    name: str
    kind: str  # "categorical", "int", "float"
    choices: tuple = ()
    low: float = 0.0
    high: float = 0.0
    log: bool = False


class Parametrisation(Protocol):
    """Points as named numbers and categories (what Optuna's samplers search)."""

    dims: tuple[Dim, ...]

    def point(self, values: dict[str, Any]) -> Any:
        """The point these values stand for (nearest allowed where they fall between)."""

    def values(self, point: Any) -> dict[str, Any]:
        """Values that map to `point` (to enqueue a known point)."""


class GridWalk(Protocol):
    """An exhaustive walk of a space in batches: `next_batch(results)` gets every trial told so
    far (key -> Trial) and returns the next points to score, [] when done; `advance(results)`
    is called once a batch is all told. A space may use the results to skip what they prove
    infeasible (the configuration space's prefix pruning)."""

    def next_batch(self, results: dict[Hashable, Trial]) -> list[Any]: ...

    def advance(self, results: dict[Hashable, Trial]) -> None: ...

    def level_source(self) -> str:
        """The source recorded for the last batch's trials ("grid", "grid-level0", ...)."""

    def state(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Insight:
    """An instruction AgentTTS gives in every round's prompt (the insights hold for the whole
    search, as in the paper); `--ablate NAME` leaves it out."""

    name: str
    text: str


@dataclass(frozen=True)
class AgentBrief:
    """What an LLM agent is told about the space beyond its description."""

    role: str  # completes "You are AgentTTS, an agent that ...": what is tuned, and the goal
    guideline_hint: str  # what a guideline is about ("per stage (preferred model, ...)")
    insights: tuple[Insight, ...] = ()


class Space(abc.ABC):
    """Base class of a search space (see the module docstring for the whole protocol)."""

    kind: ClassVar[str] = ""  # the archive header's space_kind
    cost_unit: ClassVar[str] = ""  # the unit of budgets and costs, e.g. "units", "tokens"
    supports: ClassVar[frozenset[str]] = frozenset()  # optional capabilities (CAPABILITIES)
    answer_problem_kinds: ClassVar[tuple[str, ...]] = ()  # counters of answer_problems' kinds
    estimate_slack: ClassVar[float] = ESTIMATE_SLACK  # 0: `estimate_cost` is the budget rule itself
    infeasible_text: ClassVar[str] = "over budget"  # what an infeasible trial is, in the summary
    budget: float

    @classmethod
    @abc.abstractmethod
    def from_settings(cls, store, settings, objective: Objective) -> "Space":
        """The space a search of `objective` on `store` uses, from its settings
        (search/settings.py); a default budget is resolved here, on the objective."""

    # ---- identity and the archive

    @abc.abstractmethod
    def contains(self, point: Any) -> bool:
        """A point a searcher may propose (the runner refuses others)."""

    @abc.abstractmethod
    def encode(self, point: Any) -> Any:
        """The point as JSON (lists, dicts, strings, numbers) for the archive."""

    @abc.abstractmethod
    def decode(self, value: Any) -> Any:
        """The inverse of `encode`."""

    @abc.abstractmethod
    def label(self, point: Any) -> str:
        """The point in one line, for tables and messages."""

    def key(self, point: Any) -> Hashable:
        """Equal for equal points (points may be unhashable: dicts, graphs)."""
        return json.dumps(self.encode(point), sort_keys=True)

    def size(self) -> int | None:
        """How many points (None: unbounded or uncountable)."""
        return None

    @abc.abstractmethod
    def to_json(self) -> dict[str, Any]:
        """The space in the archive header; `--resume` insists it is unchanged."""

    # ---- cost before the replay

    def estimate_cost(self, point: Any) -> float | None:
        """Expected cost per question without replay (None: only the replay can tell). With
        `estimate_slack = 0` it is the figure feasibility is judged by."""
        return None

    def maybe_feasible(self, point: Any, slack: float | None = None) -> bool:
        """Worth a trial: the estimate is within the budget plus its slack (default the space's
        `estimate_slack`; unknown estimate: yes)."""
        est = self.estimate_cost(point)
        slack = self.estimate_slack if slack is None else slack
        return est is None or est <= self.budget * (1 + slack) * (1 + 1e-9)

    # ---- sampling and moves

    @abc.abstractmethod
    def sample(self, rng: np.random.Generator) -> Any:
        """A uniformly random point of the space."""

    def random_points(self, rng: np.random.Generator, seen: set) -> Iterator[Any]:
        """Random points that may be feasible (`maybe_feasible`) and whose key is not in
        `seen`, adding each key to `seen` as it is yielded; ends when MAX_MISSES samples in a
        row were tried or over budget (a small space used up)."""
        misses = 0
        while misses < MAX_MISSES:
            p = self.sample(rng)
            k = self.key(p)
            if k in seen or not self.maybe_feasible(p):
                misses += 1
                continue
            misses = 0
            seen.add(k)
            yield p

    def neighbours(self, point: Any) -> Iterator[Any]:
        """Points one move away, nearest first (none by default)."""
        return iter(())

    def mutate(self, point: Any, rng: np.random.Generator) -> Any:
        """A random neighbour (a random point when there is none)."""
        near = list(self.neighbours(point))
        return near[int(rng.integers(len(near)))] if near else self.sample(rng)

    def initial_points(self) -> list[Any]:
        """Points worth trying before any learning, from the space's structure alone (the
        configuration space: AgentTTS's insight-1 comparison of models per stage)."""
        return []

    # ---- scoring

    @abc.abstractmethod
    def evaluate(self, points: Sequence[Any], objective: Objective, *, enforce_budget: bool = True) -> list[Evaluation]:
        """Score the points on the objective in one replay call. With `enforce_budget`, a point
        whose measured cost exceeds the budget is infeasible (no score); without, every point is
        scored (the final point on the test questions)."""

    # ---- optional capabilities

    def grid(self, *, cap: int | None, max_points: int, prune: bool = True) -> GridWalk:
        """An exhaustive walk ("grid" in `supports`); `cap` bounds a grid over continuous
        coordinates, `max_points` is the most a walk may score before it refuses."""
        raise ConfigError("--searcher", f"the {self.kind} space has no grid")

    def parametrisation(self, *, within_budget: bool = False) -> Parametrisation:
        """Named numbers and categories ("parametrisation" in `supports`). `within_budget`: one
        whose points stay (nearly) within budget by construction, for samplers that cannot
        learn a constraint (a space without one returns its plain parametrisation)."""
        raise ConfigError("--searcher", f"the {self.kind} space has no parametrisation")

    def scan_best(self, objective: Objective) -> tuple[Any, int] | None:
        """("scan") The best feasible point of the whole space by one compiled scan, and how
        many points were scanned; None when none is feasible."""
        raise ConfigError("--searcher", f"the {self.kind} space has no compiled scan")

    def scan_picks(self, objective: Objective) -> tuple[list[Any], dict[str, Any]]:
        """("scan") The points a grid that scans the whole space proposes (the pick of every
        selection rule, search/selection.py) and what the scan did: {"scanned", "feasible",
        "wall_s"}. By default the best feasible point of `scan_best`."""
        import time

        t0 = time.perf_counter()
        found = self.scan_best(objective)
        info = {"scanned": 0 if found is None else found[1], "feasible": None}
        info["wall_s"] = time.perf_counter() - t0
        return ([] if found is None else [found[0]]), info

    def optimum(self, objective: Objective, limit: int) -> dict[str, Any] | None:
        """The exhaustive optimum of the objective for the summary ({'config', 'score', ...}),
        or None when unknown (too large, or no finite grid)."""
        return None

    # ---- text (reports and LLM prompts)

    @abc.abstractmethod
    def describe(self) -> str:
        """The task, in plain text, for the "## Task" section of a prompt."""

    @abc.abstractmethod
    def title(self) -> str:
        """The space in a few words, for plots and summary tables."""

    def cost_text(self, cost: float) -> str:
        return f"{cost:.4g} {self.cost_unit} per question"

    def headline(self) -> str:
        """One line announcing the space when a search starts."""
        return f"{self.title()}; budget {self.cost_text(self.budget)}"

    def sandbox_notice(self) -> str | None:
        """A line saying how confined the untrusted code this space runs is, or None (none runs)."""
        return None

    def slug(self) -> str:
        """A prefix for default output folders (which space of the store), or ""."""
        return ""

    def summary_rows(self) -> list[tuple[str, str]]:
        """The space's rows of the printed summary (what it is, its budget)."""
        return [("space", self.title()), ("budget", self.cost_text(self.budget))]

    @abc.abstractmethod
    def point_columns(self) -> list[str]:
        """Column names of a point in a prompt's archive table."""

    @abc.abstractmethod
    def point_cells(self, point: Any) -> list[str]: ...

    def cost_columns(self) -> list[str]:
        return ["cost"]

    def cost_cells(self, trial: Trial) -> list[str]:
        return [f"{trial.cost:.3g}"]

    def report(self, setup, trials: Sequence[Trial], best: Trial | None, *, out) -> dict[str, Any]:
        """What the space adds to the summary once the search is over (a held-out report, files
        it writes to `out` when that is a folder): nothing by default."""
        return {}

    def report_rows(self, summary: dict[str, Any]) -> list[tuple[str, str]]:
        """Rows it adds to the printed summary, from what `report` added."""
        return []

    # ---- LLM answers

    @abc.abstractmethod
    def answer_shape(self) -> str:
        """One point as the agent must write it, spelled out (for the answer-format section)."""

    @abc.abstractmethod
    def answer_rule(self) -> str:
        """One sentence on what makes a written point valid."""

    @abc.abstractmethod
    def answer_example(self) -> Any:
        """One valid point as JSON, for the example in the prompt."""

    @abc.abstractmethod
    def point_from_answer(self, value: Any, where: str) -> Any:
        """The point an agent wrote (parsed JSON). Raises search.llm.answer.AnswerProblem
        ("schema_errors") when its shape is wrong; `where` names it ("trial 2")."""

    def answer_problems(self, point: Any, where: str) -> list:
        """What is wrong with a well-formed point (AnswerProblem, of `answer_problem_kinds`)."""
        return []

    @abc.abstractmethod
    def agent_brief(self) -> AgentBrief: ...


def check_needs(searcher: str, needs: frozenset[str], space: Space, others: Sequence[str] = ()) -> None:
    """A one-line refusal when a searcher needs a capability the space lacks."""
    missing = sorted(needs - space.supports)
    if missing:
        what = " and ".join(CAPABILITIES.get(m, m) for m in missing)
        tail = f" (searchers for this space: {', '.join(others)})" if others else ""
        raise ConfigError("--searcher", f"{searcher!r} does not apply to --space {space.kind}: it needs {what}{tail}")
