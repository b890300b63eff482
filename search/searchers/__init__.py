"""Searcher registry: name -> class, imported lazily (an LLM searcher pulls in `openai`).

A new searcher is one file in this folder plus one line here. What a searcher can do and needs
is declared on its class (search/protocol.py: `exhaustive`, `uses_scan`, `options_accepted`,
`needs`).
"""

from __future__ import annotations

import importlib

from replay.errors import ConfigError

SEARCHERS = {
    "random": "search.searchers.random_search:RandomSearcher",
    "grid": "search.searchers.grid:GridSearcher",
    "bo": "search.searchers.bo:BOSearcher",
    "rules": "search.searchers.rules:RulesSearcher",
    "agenttts": "search.searchers.agenttts:AgentTTSSearcher",
    "agenthpo": "search.searchers.agenthpo:AgentHPOSearcher",
    "mlcopilot": "search.searchers.mlcopilot:MLCopilotSearcher",
    "discover": "search.searchers.discover:DiscoverSearcher",
    "agent-reinforce": "search.searchers.agent_reinforce:AgentReinforceSearcher",
}


def get_searcher(name: str):
    if name not in SEARCHERS:
        raise ConfigError("--searcher", f"unknown searcher {name!r} (known: {', '.join(SEARCHERS)})")
    module, cls = SEARCHERS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def searchers_for(space) -> list[str]:
    """The searchers whose needs the space meets."""
    return [name for name in SEARCHERS if get_searcher(name).needs <= space.supports]
