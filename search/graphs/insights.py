"""The three insights of Agent-REINFORCE (Wang et al., "Generalizing Test-time Compute-optimal
Scaling as an Optimizable Graph", arXiv 2511.00086), as instructions for an LLM agent.

The paper derives them from pilot experiments on collaboration graphs under a fixed budget
(its empirical-insights section, Sec. 4 of v1) and uses them in Agent-REINFORCE (Sec. 5):
insight 1 guides the initialisation of the probabilistic graph (which model families and sizes
the task prefers), insights 2 and 3 guide its updates (how width and depth move the score, and
how they depend on each other). The wording below is ours, stating each insight as an
instruction; docs/search.md ("Agent-REINFORCE") says what was and was not checked against
the paper's text.

`--ablate insightN` leaves the insight out (insight 1: no model probes and no agent
initialisation, the search starts from the uniform distribution; insights 2 and 3: the
instruction is left out of every update prompt).
"""

from __future__ import annotations

from ..spaces.base import Insight

PAPER = "arXiv 2511.00086"

INSIGHT1 = Insight("insight1", (
    f"Model family and size (insight 1, {PAPER} Sec. 4): a task prefers particular model families, and within "
    "a family the best size depends on the task: a larger model is not always better under a fixed budget, "
    "because a smaller model's cheaper calls leave room for more samples and more nodes. Read the probe "
    "trials (each model alone, as many samples as the budget allows) and put the initial probability on the "
    "families and sizes the task prefers; keep some probability on the others."))

INSIGHT2 = Insight("insight2", (
    f"Width and depth trends (insight 2, {PAPER} Sec. 4): widening a graph (more parallel nodes or samples "
    "whose answers are aggregated) and deepening it (more sequential refinement steps) each help only up to "
    "a point; beyond it the score saturates or falls (aggregating many answers gets harder, repeated "
    "refinement drifts). From the batch, find on which side of the best width and the best depth the "
    "graphs lie, and move the probabilities of node use, roles, edges and sample counts toward it."))

INSIGHT3 = Insight("insight3", (
    f"Width and depth depend on each other (insight 3, {PAPER} Sec. 4): under a fixed budget, the best depth "
    "depends on the width and the best width on the depth; a wider graph affords fewer refinement steps, "
    "and a deeper one fewer parallel samples. Change width and depth together, trading one for the other "
    "where the batch shows the trade pays, rather than increasing both."))

INSIGHTS = (INSIGHT1, INSIGHT2, INSIGHT3)
