"""`cwq` (ComplexWebQuestions) and `webqsp` (WebQSP): retrieve relations from the question's
knowledge-graph subgraph, then answer from the triples they select.

Format read: the widely used preprocessed release that gives each question its Freebase
subgraph as triples (the RoG release, Hugging Face `rmanluo/RoG-cwq` and `rmanluo/RoG-webqsp`).
Parquet as published there (a file, or a folder of `*.parquet` shards), or the same rows as a
JSON list or JSONL (`files.py`). Fields read, one row a question:

| field | |
| --- | --- |
| `id` | string (or integer), unique (`WebQTest-12`, `WebQTest-832_c334...`) |
| `question` | string |
| `answer` | list of strings (a single string is taken as a list of one): the gold aliases |
| `q_entity` | list of strings, non-empty: the topic entities the question names |
| `a_entity` | list of strings: the answer entities as they appear in `graph` (may be empty) |
| `graph` | list of `[head, relation, tail]` strings, non-empty: the subgraph |
| `choices` | ignored (empty in the release) |

The gold aliases are `answer` then any `a_entity` not already among them. Entity and relation
names are kept as written except that ITEM_SEP (`|`) inside one becomes `/`.

Stage `retrieve` (set vote, scorer `item_f1` against the path relations):
- Prompt: the topic entities, the subgraph's distinct relations (nearest to a topic entity
  first, at most MAX_RELATIONS, numbered) and a sample of the triples at the topic entities (at
  most RETRIEVE_TRIPLES).
- Canonical answer: the SET OF RELATION NAMES the model picks (`Relations: a | b`, or numbers
  `[3]` of the listed ones; a relation of the graph beyond the listed ones counts when named),
  spelled as in the graph, sorted and joined by ITEM_SEP; "" when none is recognised. Relations rather than triples
  are the pool key because a question's subgraph has tens to hundreds of relations but
  thousands of triples: relation sets recur across samples, so the set vote keeps items with
  real support and the answer stage's pools are shared by many upstream samples (triple sets
  would almost never repeat, leaving one-sample pools and high fallback rates in replay). It is
  also the unit RoG itself plans in (relation paths), and the answer prompt is a pure function of
  the key (the triples carrying those relations).
- Gold (stage gold): the relations of every triple on a SHORTEST PATH between a topic entity
  (`q_entity`) and an answer entity (`a_entity`, else the `answer` strings) in the subgraph
  taken as undirected, over every (topic, answer) pair both in the graph: RoG's "ground paths"
  definition, from the graph itself. Where no such path exists (no topic or no answer entity in
  the graph, or every answer is a topic), the gold falls back to the relations of the triples
  that carry an answer entity; where no answer entity is in the graph at all, the question has
  no retrieve gold (no stage gold is written and every retrieve sample scores 0).
- Score: item F1 between the picked relations and the gold relations, which is what replay
  computes for a set vote. `metrics`: `recall` (share of gold relations picked) and
  `answer_coverage` (1 if a triple with a picked relation carries an answer entity).

Stage `answer` (majority vote, scorer `hit@1`):
- Prompt: the triples whose relation is in the upstream key, nearest to a topic entity first,
  at most ANSWER_TRIPLES of them (CWQ subgraphs run to thousands of triples; the prompt says how
  many were left out), then the question.
- Canonical answer: the first item (split on `|` or `;`) of the text after the last `Answer:`
  (else the last non-empty line), SQuAD-normalised; "" for an empty completion.
- Score: Hit@1, 1 if that single predicted entity equals any gold alias after normalisation
  (for one prediction this is exact match against any alias). `metrics`: `hit` (RoG's lenient
  hit: some normalised alias occurs in the prediction as whole words) and `f1` (SQuAD token F1,
  best alias).
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from replay.errors import InputError

from .base import Messages, Record, StageSpec, Task
from .files import Row, id_field, load_records, require, string_list, text_field
from .qa import answer_line, labelled_segment, pick_items
from .scoring import clean_item, exact_match, item_f1, join_items, normalize_answer, split_items, token_f1

MAX_RELATIONS = 200  # relations listed in the retrieve prompt
RETRIEVE_TRIPLES = 30  # triples at the topic entities shown in the retrieve prompt
ANSWER_TRIPLES = 200  # triples shown in the answer prompt

_RELATIONS = re.compile(r"relations?\s*:", re.IGNORECASE)
_FAR = 1 << 30


@dataclass(frozen=True)
class Subgraph:
    triples: tuple[tuple[str, str, str], ...]
    relations: tuple[str, ...]  # distinct, nearest to a topic entity first, then by name
    distance: dict  # entity -> hops from the nearest topic entity (undirected); absent if unreachable
    gold_relations: tuple[str, ...] | None  # None: no answer entity in the graph

    def triple_distance(self, t: tuple[str, str, str]) -> int:
        return min(self.distance.get(t[0], _FAR), self.distance.get(t[2], _FAR))


def _bfs(adj: dict, sources) -> dict:
    dist = {s: 0 for s in sources if s in adj}
    queue = deque(dist)
    while queue:
        v = queue.popleft()
        for u, _ in adj[v]:
            if u not in dist:
                dist[u] = dist[v] + 1
                queue.append(u)
    return dist


def build_subgraph(triples, topics, answers) -> Subgraph:
    triples = tuple(triples)
    adj: dict[str, list[tuple[str, int]]] = {}
    for i, (h, _, t) in enumerate(triples):
        adj.setdefault(h, []).append((t, i))
        adj.setdefault(t, []).append((h, i))
    topics = [q for q in dict.fromkeys(topics) if q in adj]
    answers = [a for a in dict.fromkeys(answers) if a in adj]
    distance = _bfs(adj, topics)

    # triples on a shortest path topic -> answer: walk each topic's BFS DAG back from the answers
    on_path: set[int] = set()
    for q in topics:
        dq = _bfs(adj, [q])
        stack = [a for a in answers if a in dq and a != q]
        seen = set(stack)
        while stack:
            v = stack.pop()
            for u, i in adj[v]:
                if dq.get(u) == dq[v] - 1:
                    on_path.add(i)
                    if u not in seen:
                        seen.add(u)
                        stack.append(u)
    if on_path:
        gold = tuple(sorted({triples[i][1] for i in on_path}))
    elif answers:
        ans = set(answers)
        gold = tuple(sorted({r for h, r, t in triples if h in ans or t in ans}))
    else:
        gold = None

    near: dict[str, int] = {}
    for h, r, t in triples:
        d = min(distance.get(h, _FAR), distance.get(t, _FAR))
        near[r] = min(near.get(r, _FAR), d)
    relations = tuple(sorted(near, key=lambda r: (near[r], r)))
    return Subgraph(triples, relations, distance, gold)


def _triples(value, where: str) -> list[tuple[str, str, str]]:
    if not isinstance(value, list):
        raise InputError(where, "'graph' must be a list of [head, relation, tail] triples")
    if not value:
        raise InputError(where, "'graph' is empty (no subgraph to retrieve from)")
    out = []
    for j, t in enumerate(value):
        if not (isinstance(t, (list, tuple)) and len(t) == 3 and all(isinstance(x, str) for x in t)
                and t[1].strip()):
            raise InputError(where, f"graph[{j}] is not a [head, relation, tail] triple of strings "
                                    "(relation non-empty)")
        out.append((clean_item(t[0]), clean_item(t[1]), clean_item(t[2])))
    return out


def _fmt(t: tuple[str, str, str]) -> str:
    return f"({t[0]}, {t[1]}, {t[2]})"


class KGQATask(Task):
    """The RoG-release loader and the two KGQA stages; `cwq` and `webqsp` differ only in name."""

    name = ""
    stages = (
        StageSpec("retrieve", "set_vote", "item_f1",
                  "pick the relevant relations of the subgraph; item F1 against the relations on shortest "
                  "topic-to-answer paths (else the answer-bearing relations)"),
        StageSpec("answer", "majority_vote", "hit@1",
                  "answer from the triples of the retrieved relations; Hit@1: the normalised prediction "
                  "equals a gold alias"),
    )

    def __init__(self) -> None:
        self._graphs: dict[int, tuple[Record, Subgraph]] = {}

    # ---- loading
    def load(self, path: str | Path) -> list[Record]:
        return load_records(path, self._build, f"{self.name}: rows with id, question, answer, q_entity, "
                                               "a_entity, graph (the RoG release)")

    def _build(self, row: Row) -> Record:
        raw = row.raw
        rid = id_field(raw, "id", row.where)
        where = row.at("id", rid)
        question = text_field(raw, "question", where)
        answer = require(raw, "answer", where)
        if isinstance(answer, str):
            answer = [answer]
        if not isinstance(answer, list) or not all(isinstance(a, str) for a in answer):
            raise InputError(where, "'answer' must be a list of strings")
        answer = [a for a in answer if a.strip()]
        if not answer:
            raise InputError(where, "'answer' is empty (no gold answer to score against)")
        q_entity = string_list(raw, "q_entity", where)
        a_entity = string_list(raw, "a_entity", where, allow_empty=True)
        graph = _triples(require(raw, "graph", where), where)
        gold = tuple(dict.fromkeys(clean_item(a) for a in answer + a_entity if clean_item(a)))
        q_entity = [clean_item(q) for q in q_entity]
        a_entity = [clean_item(a) for a in a_entity]
        return Record(id=rid, question=question, gold=gold, context=graph, line=row.line,
                      metadata={"q_entity": q_entity, "a_entity": a_entity, "triples": len(graph)},
                      extra={"q_entity": q_entity, "a_entity": a_entity})

    def subgraph(self, record: Record) -> Subgraph:
        hit = self._graphs.get(id(record))
        if hit is None or hit[0] is not record:
            answers = record.extra["a_entity"] or list(record.gold)
            hit = (record, build_subgraph(record.context, record.extra["q_entity"], answers))
            self._graphs[id(record)] = hit
        return hit[1]

    # ---- golds
    def gold(self, record: Record) -> str:
        return normalize_answer(record.gold[0])

    def stage_gold(self, stage: str, record: Record) -> str | None:
        if stage != "retrieve":
            return None
        g = self.subgraph(record).gold_relations
        return None if g is None else join_items(g)

    # ---- prompts
    def prompt(self, stage: str, record: Record, upstream: str) -> Messages:
        g = self.subgraph(record)
        topics = ", ".join(record.extra["q_entity"])
        if stage == "retrieve":
            shown = g.relations[:MAX_RELATIONS]
            rels = "\n".join(f"[{i + 1}] {r}" for i, r in enumerate(shown))
            if len(g.relations) > len(shown):
                rels += (f"\n(the {len(g.relations) - len(shown)} relations farther from the topic entities "
                         "are not listed)")
            tq = set(record.extra["q_entity"])
            near = [t for t in g.triples if t[0] in tq or t[2] in tq][:RETRIEVE_TRIPLES]
            facts = "\n".join(_fmt(t) for t in near) or "(none)"
            return [{"role": "user", "content": (
                f"A knowledge graph of {len(g.triples)} triples is given for the question below.\n"
                f"Topic entities: {topics}\n\nRelations in the graph:\n{rels}\n\n"
                f"Some triples at the topic entities:\n{facts}\n\nQuestion: {record.question}\n\n"
                "Which relations must be followed from the topic entities to reach the answer? Think briefly, "
                "then end with one line of the form\nRelations: RELATION | RELATION\n"
                "using the relation names exactly as listed above.")}]
        shown, total = self.answer_triples(record, upstream)
        body = "\n".join(_fmt(t) for t in shown) if shown else "(no triples were retrieved)"
        if total > len(shown):
            body += f"\n({total - len(shown)} more triples with these relations were left out)"
        return [{"role": "user", "content": (
            f"Knowledge graph triples (head, relation, tail):\n{body}\n\nTopic entities: {topics}\n"
            f"Question: {record.question}\n\n"
            "Answer the question using the triples. Think briefly, then end with one line of the form\n"
            "Answer: ENTITY\nnaming the single best answer entity as written in the triples.")}]

    def answer_triples(self, record: Record, upstream: str) -> tuple[list[tuple[str, str, str]], int]:
        """The triples the answer prompt shows for an upstream key, in prompt order (nearest to a
        topic entity first, ties in graph order; at most ANSWER_TRIPLES), and how many carry a
        relation of the key in all."""
        g = self.subgraph(record)
        keep = set(split_items(upstream))
        chosen = sorted((t for t in g.triples if t[1] in keep), key=g.triple_distance)
        return chosen[:ANSWER_TRIPLES], len(chosen)

    # ---- parsing and scoring
    def parse(self, stage: str, text: str, record: Record) -> str:
        if stage == "retrieve":
            g = self.subgraph(record)
            picked = pick_items(labelled_segment(text, _RELATIONS), list(g.relations),
                                numbered=list(g.relations[:MAX_RELATIONS]))
            return join_items(picked)
        first = next((x for x in re.split(r"[|;]", answer_line(text)) if x.strip()), "")
        return normalize_answer(first)

    def score(self, stage: str, answer: str, record: Record) -> float:
        if stage == "retrieve":
            gold = self.stage_gold(stage, record)
            return 0.0 if gold is None else item_f1(answer, gold)
        return float(answer != "" and exact_match(answer, record.gold))

    def metrics(self, stage: str, answer: str, record: Record) -> dict[str, float]:
        if stage == "retrieve":
            g = self.subgraph(record)
            picked = set(split_items(answer))
            gold = set(g.gold_relations or ())
            ans = {clean_item(a) for a in record.extra["a_entity"] or record.gold}
            covered = any(t[1] in picked and (t[0] in ans or t[2] in ans) for t in g.triples)
            return {"recall": len(picked & gold) / len(gold) if gold else 0.0, "answer_coverage": float(covered)}
        p = f" {normalize_answer(answer)} "
        hit = answer != "" and any(normalize_answer(a) and f" {normalize_answer(a)} " in p for a in record.gold)
        return {"hit": float(hit), "f1": token_f1(answer, record.gold) if answer else 0.0}


class CWQTask(KGQATask):
    name = "cwq"
    description = "ComplexWebQuestions, RoG release (rmanluo/RoG-cwq): retrieve relations, then answer"


class WebQSPTask(KGQATask):
    name = "webqsp"
    description = "WebQSP, RoG release (rmanluo/RoG-webqsp): retrieve relations, then answer"
