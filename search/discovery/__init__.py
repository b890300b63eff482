"""The discovery environment: controller programs written by an LLM, checked, run in the
sandbox over a beta sweep, scored, traced, and reported on held-out data (docs/discovery.md).

    checks.py     static checks before a program runs (not a security boundary: the sandbox is)
    score.py      a curve over beta, and the score rules (accuracy@B, auc@LO-HI, tokens@majority:N)
    evaluate.py   one program: checks, sandbox, sweep, score, traces; the built-ins on the same draws
    feedback.py   execution traces rendered compactly, and the diagnostics
    prompts.py    the agent's prompt and how its answer (a code block) is read
    seeds.py      two built-ins written as programs (the prompt's example)
    heldout.py    the best program as a file, the rounds' time split, the held-out report

The space is search/spaces/program.py, the searcher search/searchers/discover.py.
"""
