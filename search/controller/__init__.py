"""`search --space controller`: search one width-depth controller's parameters (or its knob
beta) against a tokens budget, on the replay.

    from search.controller import make_setup, run_and_report
    setup = make_setup(replay.open("traces/aime24"), "probe", "Qwen3-8B", budget_tokens=150_000)
    summary = run_and_report(setup, "bo", seed=0, trials=30, out="out/ctrl-bo")

The loop (loop.py) mirrors the configuration search of search/runner.py: the same train/test
split, trials scored on the training questions with a fixed replay seed and replicates (common
random numbers), every trial archived as it finishes, the best feasible trial scored on test.
The searchers (searchers.py: random, grid, bo; agent.py: agenttts) propose parameter dicts of
`replay.controllers.space.ControllerSpace` instead of `Config`s.
"""

from .loop import ControllerSetup, CTrial, make_setup, run_and_report, run_search, summary_table
from .searchers import SEARCHERS, get_searcher

__all__ = ["ControllerSetup", "CTrial", "make_setup", "run_and_report", "run_search",
           "summary_table", "SEARCHERS", "get_searcher"]
