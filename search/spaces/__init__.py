"""Search spaces: one protocol (base.py), one file per space.

    config      a model and a sample count per stage (spaces/config.py), cost in normalised units
    controller  a width-depth controller's parameters or its knob beta (spaces/controller.py), cost in tokens
    program     controller programs an LLM writes, run sandboxed (spaces/program.py), cost in tokens

A new space is one file implementing `Space` plus one line in SPACES (its settings dataclass
goes to search/settings.py, its command-line options to search/cli.py).
"""

from __future__ import annotations

import importlib

from replay.errors import ConfigError

from .base import CAPABILITIES, ESTIMATE_SLACK, AgentBrief, Dim, Insight, Space, check_needs

SPACES = {
    "config": "search.spaces.config:ConfigSpace",
    "controller": "search.spaces.controller:ControllerSpace",
    "program": "search.spaces.program:ProgramSpace",
    "graph": "search.spaces.graph:GraphSpace",
}


def space_class(kind: str) -> type[Space]:
    if kind not in SPACES:
        raise ConfigError("--space", f"unknown space {kind!r} (known: {', '.join(SPACES)})")
    module, cls = SPACES[kind].split(":")
    return getattr(importlib.import_module(module), cls)


__all__ = ["CAPABILITIES", "ESTIMATE_SLACK", "AgentBrief", "Dim", "Insight", "SPACES", "Space", "check_needs",
           "space_class"]
