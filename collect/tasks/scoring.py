"""Answer normalisation and scorers shared by the tasks.

`normalize_answer` is the SQuAD/HotpotQA normalisation (lower case, no punctuation, no
articles, single spaces), the one the QA benchmarks report exact match and F1 with. List
answers (a retrieval stage's picked titles) travel as one string: items sorted and joined by
`replay.schema.ITEM_SEP`, which is how the store keeps them and how replay's set vote and item
F1 read them back.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Iterable

from replay.schema import ITEM_SEP

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    s = str(text).lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def exact_match(prediction: str, gold: str | Iterable[str]) -> float:
    """1.0 if the normalised prediction equals a normalised gold (any alias), else 0.0."""
    golds = [gold] if isinstance(gold, str) else list(gold)
    p = normalize_answer(prediction)
    return float(any(p == normalize_answer(g) for g in golds))


def token_f1(prediction: str, gold: str | Iterable[str]) -> float:
    """SQuAD token F1 over normalised tokens; the best over gold aliases."""
    golds = [gold] if isinstance(gold, str) else list(gold)
    best = 0.0
    p_toks = normalize_answer(prediction).split()
    for g in golds:
        g_toks = normalize_answer(g).split()
        if not p_toks and not g_toks:
            return 1.0
        common = Counter(p_toks) & Counter(g_toks)
        hit = sum(common.values())
        if hit == 0:
            continue
        prec, rec = hit / len(p_toks), hit / len(g_toks)
        best = max(best, 2 * prec * rec / (prec + rec))
    return best


def clean_item(item: str) -> str:
    """An item may not contain the separator (it would split into two items on read)."""
    return " ".join(str(item).replace(ITEM_SEP, "/").split())


def join_items(items: Iterable[str]) -> str:
    """Canonical list answer: cleaned, de-duplicated, sorted, joined by ITEM_SEP."""
    return ITEM_SEP.join(sorted({clean_item(i) for i in items if clean_item(i)}))


def split_items(answer: str) -> list[str]:
    return [x.strip() for x in str(answer).split(ITEM_SEP) if x.strip()]


def item_f1(prediction: str, gold: str) -> float:
    """F1 between two list answers (sets of items), as replay's set vote scores them.

    Both empty counts as a perfect match, one empty as 0, the same convention as the kernel.
    """
    return set_f1(split_items(prediction), split_items(gold))


def set_f1(pred, gold) -> float:
    """F1 between two collections taken as sets; both empty is a perfect match, one empty 0."""
    p, g = set(pred), set(gold)
    if not p and not g:
        return 1.0
    hit = len(p & g)
    if hit == 0:
        return 0.0
    prec, rec = hit / len(p), hit / len(g)
    return 2 * prec * rec / (prec + rec)
