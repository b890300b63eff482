"""Input keys of a graph store: the canonical form of what a node read.

A `solve` node reads the question alone: its pools have the key "" (as a chain's first stage).
A `refine` or `aggregate` node reads its parents' aggregated answers: its pools are keyed by
the multiset of those answers, written canonically as a JSON array of the answer strings,
sorted, without spaces (`json.dumps(sorted(answers), ensure_ascii=False, separators=(",", ":"))`):

    input_key(["7", "12", "7"])  ->  '["12","7","7"]'

The order of the parents does not matter (a multiset); repeated answers count. Collection
(collect/run/graph.py, collect/simulate/graph.py) writes keys with `input_key`, and a graph
store whose refine or aggregate pool has a key that does not parse back to the same string is
refused when opened (one line naming samples.parquet, exit 2).
"""

from __future__ import annotations

import json
from typing import Iterable

from .. import schema as S
from ..errors import StoreError


def input_key(answers: Iterable[str]) -> str:
    """The canonical key of a multiset of answers (a JSON array of them, sorted)."""
    return json.dumps(sorted(str(a) for a in answers), ensure_ascii=False, separators=(",", ":"))


def parse_input_key(key: str) -> list[str]:
    """The answers of a canonical key, sorted.

    Raises:
        ValueError: the key is not a non-empty JSON array of strings in canonical form.
    """
    try:
        items = json.loads(key)
    except (json.JSONDecodeError, TypeError):
        raise ValueError("not a JSON array") from None
    if not isinstance(items, list) or not items or not all(isinstance(x, str) for x in items):
        raise ValueError("not a non-empty JSON array of answer strings")
    if input_key(items) != key:
        raise ValueError(f"not in canonical form (expected {input_key(items)!r})")
    return items


def check_graph_roles(where: str, roles: list[str]) -> None:
    """The stages of a graph store are roles: known ones, `solve` among them and first."""
    unknown = [r for r in roles if r not in S.GRAPH_ROLES]
    if unknown:
        raise StoreError(where, f"graph store names unknown role {unknown[0]!r} (roles: {', '.join(S.GRAPH_ROLES)})")
    if not roles or roles[0] != "solve":
        raise StoreError(where, "a graph store's first role must be 'solve' (the question alone)")
