"""The three insights of Agent-REINFORCE (Wang et al., "Generalizing Test-time Compute-optimal
Scaling as an Optimizable Graph", arXiv 2511.00086), as instructions for an LLM agent.

Where each insight comes from, and how sure we are of its wording (docs/agent-reinforce.md,
"The three insights", has the sources in full):

- The paper derives three empirical insights from pilot experiments and uses insight 1 to
  initialise the probabilistic graph (which model families and sizes) and insights 2 and 3 to
  update it (abstract; the paper's Agent-REINFORCE overview figure). The pilot experiments are
  Section 4 of the paper as submitted to ICLR 2026 (its reviews cite "the pilot experiments
  (Section 4)"); the arXiv v1 numbering could not be checked offline.
- The paper's own sentences were not readable here (no stored copy of its body). The closest
  wording by the authors is the prompt text of their released code (github.com/FairyFali/AgentRE,
  `experiments/evaluator/llm_optimizer.py` and the per-task prompt sets); the quotations below
  (in double quotes) are from there, the rest is our instruction around them.

`--ablate insightN` leaves the insight out (insight 1: no model probes and no agent
initialisation, the search starts from the uniform distribution; insights 2 and 3: the
instruction is left out of every update prompt).
"""

from __future__ import annotations

from ..spaces.base import Insight

PAPER = "arXiv 2511.00086"
SECTION = "pilot experiments, Sec. 4 of the ICLR 2026 submission"

INSIGHT1 = Insight("insight1", (
    f"Model family and size (insight 1, {PAPER}, {SECTION}): each task prefers particular model "
    "families and sizes; under a fixed budget a larger model is not always better, since a smaller "
    "model's cheaper calls leave room for more samples and nodes, yet \"too many weak models may decrease "
    "the performance instead of increase\" and stronger models \"tolerate longer context and are less "
    "likely to corrupt correct answers\" (the authors' wording). Read the probe trials (each model alone, "
    "as many samples as the budget allows) and put the initial probability on the families and sizes the "
    "task prefers; keep some probability on the others."))

INSIGHT2 = Insight("insight2", (
    f"Width and depth trends (insight 2, {PAPER}, {SECTION}): \"both depth and width have an optimal "
    "point - beyond that, adding more layers or parallel branches starts to decrease overall performance\" "
    "(the authors' wording): widening a graph (more parallel nodes or samples whose answers are aggregated) "
    "and deepening it (more sequential refinement) each help only up to a task-dependent point, and "
    "\"overly deep DAGs may let later agents overwrite correct answers\". From the batch, find on which side "
    "of the best width and the best depth the graphs lie, and move the probabilities of node use, roles, "
    "edges and sample counts toward it."))

INSIGHT3 = Insight("insight3", (
    f"Width and depth depend on each other (insight 3, {PAPER}, {SECTION}): \"the optimal depth is "
    "conditioned by current width, and vice-versa: wider graphs shift the depth sweet-spot downward, while "
    "deeper graphs reduce the optimal width\" (the authors' wording). Change width and depth together, "
    "trading one for the other where the batch shows the trade pays, rather than increasing both."))

INSIGHTS = (INSIGHT1, INSIGHT2, INSIGHT3)
