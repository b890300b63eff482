"""Distributions over collaboration graphs, for searchers that learn where good graphs lie.

    probabilistic.py   `Vocabulary` (what a node may be), `GraphDistribution` (per-slot use,
                       role, model and sample-count probabilities, per-edge probabilities):
                       sampling of valid graphs, the bounded and normalised update, the
                       REINFORCE score-function gradient, the JSON form an LLM reads and writes
    insights.py        the three insights of Agent-REINFORCE (arXiv 2511.00086), as texts

Used by `--searcher agent-reinforce` (search/searchers/agent_reinforce.py).
"""

from __future__ import annotations

from .probabilistic import Decisions, GraphDistribution, UpdateReport, Vocabulary

__all__ = ["Decisions", "GraphDistribution", "UpdateReport", "Vocabulary"]
