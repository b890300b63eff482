"""The aggregation rules, defined once: how S drawn outputs of a stage become one.

Every Python path applies these functions: the replay reference (`replay/reference.py`, the
tests' oracle), the width-depth controllers (`replay/controllers/`), and collection, which
estimates which upstream answers replay will meet (`collect/run/expansion.py`). They are
generic over the answer type: interned ids in replay, strings in collection. The Numba kernels
(`replay/kernels.py`) write the same rules out inside their draw loops, because a call per
draw there costs 1.7x (measured; README, Performance); the tests compare them to the reference,
which calls these.

    majority_vote  the most frequent answer; a tie goes to the answer drawn first
    set_vote       list answers: keep the items found in more than half of the outputs; if
                   no item has a majority, the items with the highest count (sorted)
    best_score     the output with the highest stored score; a tie goes to the one drawn first
    llm_fuse       a stored fusion of exactly S outputs; if none has that size, the largest
                   smaller size; if none is smaller, majority vote over the S outputs (both
                   fallbacks are counted by replay)
"""

from __future__ import annotations

from typing import Hashable, Iterable, Sequence, TypeVar

A = TypeVar("A", bound=Hashable)


def majority_index(answers: Sequence[Hashable]) -> int:
    """Position (in draw order) of the first output carrying the most frequent answer.

    Args:
        answers: the drawn outputs' answers, in draw order (non-empty).

    Returns:
        The index of the majority answer's first occurrence; among answers with equal counts,
        the one drawn first wins.
    """
    counts: dict[Hashable, int] = {}
    for a in answers:
        counts[a] = counts.get(a, 0) + 1
    top = max(counts.values())
    for j, a in enumerate(answers):
        if counts[a] == top:
            return j
    raise ValueError("majority vote over no answers")


def majority(answers: Sequence[A]) -> A:
    """The most frequent answer; a tie goes to the answer drawn first (see `majority_index`)."""
    return answers[majority_index(answers)]


def set_vote(item_lists: Iterable[Iterable[A]]) -> list[A]:
    """The items kept by a set vote over list answers, sorted.

    Args:
        item_lists: per drawn output, its items (an item counts once per output).

    Returns:
        The items found in more than half of the outputs; if none has such a majority, the
        items with the highest count; empty when no output has an item.
    """
    counts: dict[A, int] = {}
    n = 0
    for items in item_lists:
        n += 1
        for it in dict.fromkeys(items):
            counts[it] = counts.get(it, 0) + 1
    kept = [it for it, c in counts.items() if 2 * c > n]
    if not kept and counts:
        top = max(counts.values())
        kept = [it for it, c in counts.items() if c == top]
    return sorted(kept)


def best_index(scores: Sequence[float]) -> int:
    """Position of the output with the highest stored score; ties to the one drawn first."""
    best = 0
    for j in range(1, len(scores)):
        if scores[j] > scores[best]:
            best = j
    return best


def fusion_size(stored_sizes: Iterable[int], n: int) -> int:
    """The size of the stored fusion replay uses for n drawn outputs.

    Args:
        stored_sizes: the subset sizes of the pool's stored fusions.
        n: the number of outputs to fuse.

    Returns:
        n if a fusion of that size is stored, else the largest smaller stored size (a counted
        fallback), else 0: no stored fusion is small enough, and replay falls back to majority
        vote over the n outputs.
    """
    return max((z for z in stored_sizes if z <= n), default=0)
