"""The compute-optimal frontier of a store and the AgentTTS pilot figures (`replay frontier`,
`replay pilot`; docs/frontier.md)."""

from .core import (COLUMNS, TEST_OPTIMUM, TRAIN_PICK, Frontier, best_per_budget, chain_frontier, default_budgets,
                   frontier_split, graph_frontier, parse_budgets, train_picks)

__all__ = ["COLUMNS", "TEST_OPTIMUM", "TRAIN_PICK", "Frontier", "best_per_budget", "chain_frontier", "default_budgets",
           "frontier_split", "graph_frontier", "parse_budgets", "train_picks"]
