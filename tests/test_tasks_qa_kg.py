"""The benchmark tasks read from their official release formats: `2wiki`, `hotpotqa` (multi-hop QA
over given paragraphs), `cwq`, `webqsp` (KGQA over the RoG subgraphs) and `aime`.

Loaders on the project-made fixtures in tests/fixtures/ (same format as the releases, not real
data), parsers, scorers (hand-computed values), prompts, malformed inputs (each one an
InputError naming the file, the record and the problem), and `collect run` end to end against
the scripted OpenAI-compatible server.
"""

from __future__ import annotations

import importlib.util
import json
import random
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import replay
from collect.tasks import TASKS, get_task
from collect.tasks import kgqa
from collect.tasks.aime import AIMETask
from collect.tasks.files import Row
from collect.tasks.kgqa import CWQTask, WebQSPTask, build_subgraph
from collect.tasks.multihop import HotpotQATask, TwoWikiTask
from collect.tasks.qa import passages
from replay.errors import InputError
from replay.schema import ITEM_SEP

from chatserver import ChatServer, run_cli

FIX = Path(__file__).parent / "fixtures"
TWOWIKI = FIX / "2wiki" / "dev.json"
HOTPOT = FIX / "hotpotqa" / "dev_distractor.json"
CWQ_PQ = FIX / "cwq" / "test.parquet"
CWQ_JSONL = FIX / "cwq" / "test.jsonl"
WEBQSP = FIX / "webqsp" / "test.jsonl"
AIME = FIX / "aime" / "aime.jsonl"

S = ITEM_SEP


def _fixture_script():
    spec = importlib.util.spec_from_file_location("make_fixtures", FIX / "make_fixtures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ROG_SCHEMA = _fixture_script().ROG_SCHEMA  # the column types of the RoG release


def J(*items):
    return S.join(items)


def by_id(records):
    return {r.id: r for r in records}


def _jsonl_rows(path):
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


# --------------------------------------------------------------------------------------------
# Registration and loaders


def test_tasks_registered():
    for name, cls in [("2wiki", TwoWikiTask), ("hotpotqa", HotpotQATask), ("cwq", CWQTask),
                      ("webqsp", WebQSPTask), ("aime", AIMETask)]:
        assert TASKS[name] is cls and isinstance(get_task(name), cls)
    assert {"qa", "math"} <= set(TASKS)
    for name in ("2wiki", "hotpotqa", "cwq", "webqsp"):
        t = get_task(name)
        assert [(s.name, s.aggregation) for s in t.stages] == [("retrieve", "set_vote"), ("answer", "majority_vote")]
        assert t.stages[0].scorer == "item_f1"
    assert get_task("cwq").stages[1].scorer == "hit@1" and get_task("2wiki").stages[1].scorer == "exact_match"
    assert [(s.name, s.aggregation, s.scorer) for s in get_task("aime").stages] == [("solve", "majority_vote", "exact_match")]


def test_load_2wiki():
    t = TwoWikiTask()
    recs = t.load(TWOWIKI)
    assert len(recs) == 4 and len({r.id for r in recs}) == 4
    r = recs[0]
    assert r.id == "8813f87c0bdd11eba7f7acde48001122" and r.gold == ("Marco Renzi",)
    assert r.question.startswith("Who is the father") and r.line == 1
    assert [p[0] for p in r.context] == ["Sunlit Bay", "Moonlit Harbour", "Carla Renzi", "Aldo Renzi"]
    assert r.metadata["type"] == "compositional" and r.metadata["entity_ids"] == "Q9000001_Q9000002"
    assert r.metadata["evidences"][0] == ["Moonlit Harbour", "director", "Aldo Renzi"]
    assert "entity_ids" not in recs[2].metadata  # only where the release has it
    assert t.stage_gold("retrieve", r) == J("Aldo Renzi", "Moonlit Harbour") and t.stage_gold("answer", r) is None
    assert t.gold(r) == "marco renzi" and t.gold(recs[1]) == "glass orchard" and t.gold(recs[3]) == "no"
    assert t.stage_gold("retrieve", recs[3]) == J("Joan Marsh", "Kenji Arai", "Red Lantern Street", "Tidewater")


def test_load_hotpotqa_and_jsonl_variant(tmp_path):
    t = HotpotQATask()
    recs = t.load(HOTPOT)
    assert len(recs) == 4
    r = recs[0]
    assert r.id == "5a8b57f25542995d1e6f1371" and r.gold == ("Kestrel Records",)
    assert r.metadata == {"type": "bridge", "level": "medium"}
    assert t.stage_gold("retrieve", r) == J("Paper Harbour (album)", "The Ashby Lines")
    # the same objects one a line (as converters write them, even under a .json name) load the same
    rows = json.loads(HOTPOT.read_text())
    for name in ("dev.jsonl", "dev_lines.json"):
        p = tmp_path / name
        p.write_text("".join(json.dumps(x) + "\n" for x in rows))
        again = t.load(p)
        assert [(x.id, x.gold, x.context, x.metadata) for x in again] == [(x.id, x.gold, x.context, x.metadata) for x in recs]
        assert again[2].line == 3


def test_load_cwq_parquet_jsonl_and_folder(tmp_path):
    t = CWQTask()
    recs = t.load(CWQ_PQ)
    assert len(recs) == 4
    r = recs[0]
    assert r.id == "WebQTrn-1001_5f3c2a" and r.gold == ("Lumara",)
    assert r.extra["q_entity"] == ["Kivu Falls"] and r.metadata == {"q_entity": ["Kivu Falls"], "a_entity": ["Lumara"],
                                                                   "triples": 8}
    assert r.context[1] == ("Veldoria", "location.country.capital", "Lumara")
    assert recs[1].gold == ("Ardish", "Merran") and recs[3].extra["q_entity"] == ["Mara Quill", "Tobias Wren"]
    same = t.load(CWQ_JSONL)
    assert [(x.id, x.gold, x.context, x.metadata) for x in same] == [(x.id, x.gold, x.context, x.metadata) for x in recs]
    # a JSON list, and a folder of Parquet shards (as Hugging Face ships them), in name order
    rows = _jsonl_rows(CWQ_JSONL)
    (tmp_path / "test.json").write_text(json.dumps(rows))
    assert [x.id for x in t.load(tmp_path / "test.json")] == [x.id for x in recs]
    shards = tmp_path / "data"
    shards.mkdir()
    pq.write_table(pa.Table.from_pylist(rows[2:], schema=ROG_SCHEMA), shards / "test-00001-of-00002.parquet")
    pq.write_table(pa.Table.from_pylist(rows[:2], schema=ROG_SCHEMA), shards / "test-00000-of-00002.parquet")
    assert [x.id for x in t.load(shards)] == [x.id for x in recs]


def test_load_webqsp():
    t = WebQSPTask()
    recs = by_id(t.load(WEBQSP))
    assert len(recs) == 4
    # no a_entity: the gold aliases are the answers, and the path gold is found from them
    r = recs["WebQTest-2002"]
    assert r.gold == ("Orlish",) and r.extra["a_entity"] == []
    assert t.stage_gold("retrieve", r) == "location.country.official_language"
    assert recs["WebQTest-2001"].gold == ("Luca Ferrant",)


def test_load_aime_and_field_spellings(tmp_path):
    t = AIMETask()
    recs = t.load(AIME)
    assert [r.id for r in recs] == ["60", "61", "62", "63", "64"]
    assert recs[0].gold == ("040",) and t.gold(recs[0]) == "40"
    assert recs[0].metadata == {"url": "https://example.org/aime/fixture/1", "year": 2024}
    assert "solution" in recs[0].extra and recs[2].question.startswith("The sum of the first")
    # the capitalised spellings (ID, Problem, Answer as an integer) in a JSON list
    rows = [{"ID": "2024-I-1", "Problem": "p1", "Solution": "s", "Answer": 204},
            {"ID": "2024-I-2", "Problem": "p2", "Solution": "s", "Answer": 25}]
    (tmp_path / "aime.json").write_text(json.dumps(rows))
    got = t.load(tmp_path / "aime.json")
    assert [(r.id, r.question, r.gold, t.gold(r)) for r in got] == [("2024-I-1", "p1", ("204",), "204"),
                                                                  ("2024-I-2", "p2", ("25",), "25")]
    # ids from url, else the position in the file; Parquet
    rows = [{"problem": "a", "answer": "7", "url": "https://x/1"}, {"problem": "b", "answer": "8"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "aime.parquet")
    got = t.load(tmp_path / "aime.parquet")
    assert [(r.id, r.gold) for r in got] == [("https://x/1", ("7",)), ("1", ("8",))]


# --------------------------------------------------------------------------------------------
# Parsers


@pytest.fixture(scope="module")
def wiki():
    t = TwoWikiTask()
    return t, t.load(TWOWIKI)[0]


@pytest.mark.parametrize("text,want", [
    ("Reasoning.\nTitles: Moonlit Harbour | Aldo Renzi", J("Aldo Renzi", "Moonlit Harbour")),
    ("titles: aldo  renzi|MOONLIT HARBOUR", J("Aldo Renzi", "Moonlit Harbour")),
    ("Titles:\n- \"Moonlit Harbour\"\n- Sunlit Bay\n\nDone.", J("Moonlit Harbour", "Sunlit Bay")),
    ("Titles: [2] | [4]", J("Aldo Renzi", "Moonlit Harbour")),
    ("Titles: Moonlit Harbour | Marco Renzi | Moonlit Harbour", "Moonlit Harbour"),  # unknown ignored, dedup
    ("Title: A | B\nTitles: Carla Renzi", "Carla Renzi"),  # the last label counts
    ("I cannot tell.", ""),
    ("", ""),
])
def test_parse_multihop_retrieve(wiki, text, want):
    t, r = wiki
    assert t.parse("retrieve", text, r) == want


@pytest.mark.parametrize("text,want", [
    ("He was the son of Marco.\nAnswer: The Marco Renzi.", "marco renzi"),
    ("answer: Marco Renzi\nsome trailing words", "marco renzi"),
    ("Answer: x\nAnswer: Aldo", "aldo"),
    ("It is clearly\nMarco Renzi!", "marco renzi"),  # no label: the last line
    ("", ""),
    ("   \n  ", ""),
])
def test_parse_multihop_answer(wiki, text, want):
    t, r = wiki
    assert t.parse("answer", text, r) == want


@pytest.fixture(scope="module")
def cwq():
    t = CWQTask()
    return t, by_id(t.load(CWQ_PQ))


def test_parse_kg_retrieve(cwq):
    t, recs = cwq
    r = recs["WebQTrn-1001_5f3c2a"]
    rels = t.subgraph(r).relations  # the order the prompt numbers them in
    # nearest to the topic entity first (distance 0: triples at Kivu Falls), then by name
    assert rels[:4] == ("common.topic.notable_types", "geography.waterfall.height", "location.location.containedby",
                        "location.location.contains")
    cap, cont = "location.country.capital", "location.location.containedby"
    assert t.parse("retrieve", f"Follow containment then capital.\nRelations: {cont} | {cap}", r) == J(cap, cont)
    assert t.parse("retrieve", f"relations: {cap.upper()}; [3]", r) == J(cap, cont)
    assert t.parse("retrieve", "Relations: people.person.spouse_s | [99]", r) == ""  # not in this graph
    assert t.parse("retrieve", "no idea", r) == ""


@pytest.mark.parametrize("text,want", [
    ("The anthem leads to Tarsenia.\nAnswer: Ardish", "ardish"),
    ("Answer: Ardish | Merran", "ardish"),  # Hit@1: the first entity named
    ("Answer: ; Merran", "merran"),
    ("Answer: The Salt Road.", "salt road"),
    ("Tarsenia speaks\nMerran", "merran"),
    ("", ""),
])
def test_parse_kg_answer(cwq, text, want):
    t, recs = cwq
    assert t.parse("answer", text, recs["WebQTrn-1002_9e81d0"]) == want


@pytest.mark.parametrize("text,want", [
    ("So $2\\cdot 20$ values: \\boxed{040}", "40"),
    ("\\boxed{12} first, then corrected: \\boxed{\\text{17}}", "17"),
    ("The final answer is 267.", "267"),
    ("We get 5 and then 56", "56"),
    ("\\boxed{\\frac{1}{2}}", "1/2"),
    ("I give up.", ""),
    ("", ""),
])
def test_parse_aime(text, want):
    t = AIMETask()
    r = t.load(AIME)[0]
    assert t.parse("solve", text, r) == want


# --------------------------------------------------------------------------------------------
# Scorers (hand-computed)


def test_score_multihop(wiki):
    t, r = wiki  # supporting titles: Aldo Renzi, Moonlit Harbour; answer Marco Renzi
    assert t.score("retrieve", J("Aldo Renzi", "Moonlit Harbour"), r) == 1.0
    assert t.score("retrieve", J("Aldo Renzi", "Sunlit Bay"), r) == pytest.approx(0.5)  # P 1/2, R 1/2
    assert t.score("retrieve", J("Aldo Renzi", "Moonlit Harbour", "Sunlit Bay"), r) == pytest.approx(0.8)  # P 2/3, R 1
    assert t.score("retrieve", "Aldo Renzi", r) == pytest.approx(2 / 3)  # P 1, R 1/2
    assert t.score("retrieve", "", r) == 0.0
    assert t.metrics("retrieve", J("Aldo Renzi", "Sunlit Bay"), r) == {"recall": 0.5}
    assert t.score("answer", "marco renzi", r) == 1.0 and t.score("answer", "renzi", r) == 0.0
    assert t.score("answer", "", r) == 0.0
    assert t.metrics("answer", "renzi", r)["f1"] == pytest.approx(2 / 3)  # P 1, R 1/2
    assert t.metrics("answer", "marco renzi", r) == {"f1": 1.0}


def test_kg_gold_relations_by_hand(cwq):
    t, recs = cwq
    gold = {k: t.stage_gold("retrieve", r) for k, r in recs.items()}
    # Kivu Falls -containedby/contains- Veldoria -capital- Lumara, and Lumara -containedby- Veldoria
    assert gold["WebQTrn-1001_5f3c2a"] == J("location.country.capital", "location.location.containedby",
                                             "location.location.contains")
    # two answers; Song -composer- Ivo -languages- Ardish is a second shortest path (length 2)
    assert gold["WebQTrn-1002_9e81d0"] == J("location.country.languages_spoken", "music.composition.composer",
                                             "music.composition.national_anthem_of", "people.person.languages")
    # three hops through a CVT node; the runner-up's coach path is not on a topic-answer path
    assert gold["WebQTest-1003_0c77ab"] == J("sports.sports_championship_event.champion", "sports.sports_team.coaches",
                                              "sports.sports_team_coach_tenure.coach")
    # two topic entities: both paths count
    assert gold["WebQTest-1004_d41e9f"] == J("film.actor.film", "film.director.film", "film.performance.film")


def test_kg_gold_fallbacks():
    t = WebQSPTask()
    recs = by_id(t.load(WEBQSP))
    # no path from the topic: the relations of the triples that carry the answer entity
    assert t.stage_gold("retrieve", recs["WebQTest-2004"]) == J("sports.sports_team.location", "sports.sports_team.sport")
    # the answer entity is not in the graph: no retrieve gold, retrieve samples score 0
    r = recs["WebQTest-2003"]
    assert t.stage_gold("retrieve", r) is None
    assert t.score("retrieve", "people.person.profession", r) == 0.0 and t.score("retrieve", "", r) == 0.0
    assert t.score("answer", "brookfield college", r) == 1.0
    # a topic entity that is itself the answer: no path of length > 0, the answer-bearing relations
    g = build_subgraph([("A", "r1", "B"), ("B", "r2", "C")], ["A"], ["A"])
    assert g.gold_relations == ("r1",)


def test_score_kg(cwq):
    t, recs = cwq
    r = recs["WebQTrn-1001_5f3c2a"]  # gold relations: capital, containedby, contains
    cap, cont, lang = "location.country.capital", "location.location.containedby", "location.country.official_language"
    assert t.score("retrieve", J(cap, cont), r) == pytest.approx(0.8)  # P 1, R 2/3
    assert t.score("retrieve", J(cap, lang), r) == pytest.approx(0.4)  # P 1/2, R 1/3
    assert t.score("retrieve", "", r) == 0.0
    m = t.metrics("retrieve", J(cap, cont), r)
    assert m["recall"] == pytest.approx(2 / 3) and m["answer_coverage"] == 1.0  # (Veldoria, capital, Lumara)
    assert t.metrics("retrieve", lang, r) == {"recall": 0.0, "answer_coverage": 0.0}
    two = recs["WebQTrn-1002_9e81d0"]  # answers Ardish, Merran
    assert t.score("answer", "merran", two) == 1.0 and t.score("answer", "ardish", two) == 1.0
    assert t.score("answer", "ardish and merran", two) == 0.0
    assert t.metrics("answer", "ardish and merran", two) == {"hit": 1.0, "f1": pytest.approx(0.5)}  # P 1/3, R 1
    assert t.metrics("answer", "ardishes", two) == {"hit": 0.0, "f1": 0.0}
    assert t.score("answer", "", two) == 0.0 and t.metrics("answer", "", two) == {"hit": 0.0, "f1": 0.0}
    assert t.gold(recs["WebQTest-1004_d41e9f"]) == "salt road"
    assert t.score("answer", "salt road", recs["WebQTest-1004_d41e9f"]) == 1.0


def test_score_aime():
    t = AIMETask()
    r = t.load(AIME)[0]  # answer "040"
    assert t.score("solve", "40", r) == 1.0 and t.score("solve", "41", r) == 0.0 and t.score("solve", "", r) == 0.0
    assert t.score("solve", t.parse("solve", "\\boxed{40.0}", r), r) == 1.0


# --------------------------------------------------------------------------------------------
# Prompts


def _passage_titles(prompt: str) -> list[str]:
    body = prompt.split("Passages:\n\n", 1)[1].split("\n\nQuestion:", 1)[0]
    return [block.split("\n")[0] for block in body.split("\n\n")]


@pytest.mark.parametrize("task,path", [(TwoWikiTask, TWOWIKI), (HotpotQATask, HOTPOT)])
def test_multihop_prompts(task, path):
    t = task()
    for r in t.load(path):
        ps = passages(r.context)
        retrieve = t.prompt("retrieve", r, "")[0]["content"]
        assert all(text in retrieve for _, text in ps) and r.question in retrieve and "Titles:" in retrieve
        keep = [ps[0][0], ps[-1][0]]
        answer = t.prompt("answer", r, J(*sorted(keep)))[0]["content"]
        assert _passage_titles(answer) == keep  # exactly the upstream passages, in context order
        for title, text in ps:
            assert (text in answer) == (title in keep)
        assert r.question in answer and "Answer:" in answer
        assert "(no passages were retrieved)" in t.prompt("answer", r, "")[0]["content"]


def _triple_lines(prompt: str) -> list[str]:
    return [x for x in prompt.split("\n") if x.startswith("(") and x.endswith(")") and x.count(", ") >= 2]


def test_kg_prompts(cwq):
    t, recs = cwq
    r = recs["WebQTest-1003_0c77ab"]
    retrieve = t.prompt("retrieve", r, "")[0]["content"]
    g = t.subgraph(r)
    for i, rel in enumerate(g.relations):
        assert f"[{i + 1}] {rel}\n" in retrieve
    assert "Topic entities: 2011 Harbor Cup" in retrieve and r.question in retrieve and "Relations:" in retrieve
    key = J("sports.sports_team.coaches", "sports.sports_team_coach_tenure.coach")
    answer = t.prompt("answer", r, key)[0]["content"]
    # exactly the triples of the key's relations, nearest to the topic entity first (ties in graph order)
    assert _triple_lines(answer) == ["(Portsmouth Gulls, sports.sports_team.coaches, m.0abc12)",
                                     "(Bay City Rays, sports.sports_team.coaches, m.0abc99)",
                                     "(m.0abc12, sports.sports_team_coach_tenure.coach, Dana Whitfield)",
                                     "(m.0abc99, sports.sports_team_coach_tenure.coach, Lee Ortega)"]
    assert r.question in answer and "Answer:" in answer and "left out" not in answer
    assert "(no triples were retrieved)" in t.prompt("answer", r, "")[0]["content"]


def test_kg_prompt_caps(monkeypatch):
    """A large subgraph: the retrieve prompt lists MAX_RELATIONS relations, the answer prompt
    ANSWER_TRIPLES triples, and both say what was left out."""
    graph = [["Hub", f"rel.r{k:03d}", f"E{k}"] for k in range(250)]
    graph += [[f"E{k}", "rel.big", f"F{k}"] for k in range(500)]
    row = {"id": "big", "question": "q?", "answer": ["F7"], "q_entity": ["Hub"], "a_entity": ["F7"], "graph": graph}
    t = CWQTask()
    r = t._build(Row(row, "mem: row 0", 1))
    retrieve = t.prompt("retrieve", r, "")[0]["content"]
    assert "[200] " in retrieve and "[201] " not in retrieve and "51 relations farther" in retrieve
    assert t.parse("retrieve", "Relations: [201]", r) == ""  # a number past the listed ones
    assert t.parse("retrieve", "Relations: rel.big", r) == "rel.big"  # unlisted but in the graph
    answer = t.prompt("answer", r, "rel.big")[0]["content"]
    assert len(_triple_lines(answer)) == kgqa.ANSWER_TRIPLES and "300 more triples" in answer
    assert t.stage_gold("retrieve", r) == J("rel.big", "rel.r007")


# --------------------------------------------------------------------------------------------
# Malformed inputs: every one an InputError naming the file, the record and the problem


def _wiki_rows():
    return json.loads(TWOWIKI.read_text())


def _hot_rows():
    return json.loads(HOTPOT.read_text())


def _mut(rows, i, **change):
    rows = json.loads(json.dumps(rows))
    for k, v in change.items():
        if v is ...:
            del rows[i][k]
        else:
            rows[i][k] = v
    return rows


W1 = "record 1 (_id 4a0b2e6a0bdd11eba7f7acde48001122)"
H2 = "record 2 (_id 5adf2f6c5542993344016c1e)"
C1 = "(id WebQTrn-1002_9e81d0)"


def _ctx_bad(rows):
    rows = json.loads(json.dumps(rows))
    rows[1]["context"][2] = ["Glass House", "Glass House is a 1990 thriller."]
    return rows


def _sf_bad_title(rows):
    rows = json.loads(json.dumps(rows))
    rows[1]["supporting_facts"].append(["Nowhere", 0])
    return rows


def _graph_bad(rows):
    rows = json.loads(json.dumps(rows))
    rows[1]["graph"][3] = ["Tarsenia", "location.country.capital"]
    return rows


MALFORMED = [
    # (task, file name, content (str or JSON-able), where fragment, problem fragment)
    ("2wiki", "dev.json", '[{"_id": "x",', "dev.json", "not JSON"),
    ("2wiki", "dev.json", {"data": []}, "dev.json", "top level is a JSON object, expected a list"),
    ("2wiki", "dev.json", [], "dev.json", "no records"),
    ("2wiki", "dev.json", [1, 2], "record 0", "must be a JSON object, not number"),
    ("2wiki", "dev.json", _mut(_wiki_rows(), 1, answer=...), W1, "no 'answer' (a test-set file without golds"),
    ("2wiki", "dev.json", _mut(_wiki_rows(), 1, supporting_facts=...), W1, "no 'supporting_facts' (a test-set"),
    ("2wiki", "dev.json", _mut(_wiki_rows(), 1, answer=3), W1, "'answer' must be a non-empty string"),
    ("2wiki", "dev.json", _mut(_wiki_rows(), 1, question=""), W1, "'question' must be a non-empty string"),
    ("2wiki", "dev.json", _mut(_wiki_rows(), 1, _id=...), "record 1", "no '_id'"),
    ("2wiki", "dev.json", _mut(_wiki_rows(), 1, _id=[1]), "record 1", "'_id' must be a non-empty string"),
    ("2wiki", "dev.json", _mut(_wiki_rows(), 1, _id="8813f87c0bdd11eba7f7acde48001122"),
     "record 1 (_id 8813f87c0bdd11eba7f7acde48001122)", "duplicate id"),
    ("2wiki", "dev.json", _mut(_wiki_rows(), 1, context="Glass House"), W1, "'context' must be a list"),
    ("2wiki", "dev.json", _mut(_wiki_rows(), 1, context=[]), W1, "'context' is empty"),
    ("2wiki", "dev.json", _ctx_bad(_wiki_rows()), W1, "context[2] is not [title, [sentence, ...]]"),
    ("2wiki", "dev.json", _sf_bad_title(_wiki_rows()), W1, "supporting fact ['Nowhere', 0] names a title that is not in the context"),
    ("2wiki", "dev.json", _mut(_wiki_rows(), 1, supporting_facts=[["Northern Drift", "0"]]), W1,
     "supporting_facts[0] is not [title, sentence_index]"),
    ("2wiki", "dev.json", _mut(_wiki_rows(), 1, supporting_facts=[]), W1, "'supporting_facts' is empty"),
    ("2wiki", "dev.json", _mut(_wiki_rows(), 1, evidences=[["a", "b"]]), W1, "'evidences' must be a list of [subject"),
    ("2wiki", "dev.jsonl", '{"_id": "a"}\n\n{"_id": "b"}\n', "dev.jsonl:1 (_id a)", "no 'question'"),
    ("2wiki", "dev.jsonl", json.dumps(_wiki_rows()[0]) + '\n{"_id": "b",\n', "dev.jsonl:2", "not JSON"),
    ("2wiki", "dev.jsonl", json.dumps(_wiki_rows()[0]) + "\n[1]\n", "dev.jsonl:2", "must be a JSON object, not array"),
    ("hotpotqa", "dev_distractor.json", _mut(_hot_rows(), 2, level=3), H2, "'level' must be a string"),
    ("hotpotqa", "dev_distractor.json", _mut(_hot_rows(), 2, context=...), H2, "no 'context'"),
    ("hotpotqa", "dev_distractor.json", _mut(_hot_rows(), 2, answer=..., supporting_facts=...), H2, "a test-set file"),
    ("cwq", "test.json", _mut(_jsonl_rows(CWQ_JSONL), 1, graph=[]), f"record 1 {C1}", "'graph' is empty"),
    ("cwq", "test.json", _graph_bad(_jsonl_rows(CWQ_JSONL)), f"record 1 {C1}", "graph[3] is not a [head, relation, tail]"),
    ("cwq", "test.json", _mut(_jsonl_rows(CWQ_JSONL), 1, graph="x"), f"record 1 {C1}", "'graph' must be a list"),
    ("cwq", "test.json", _mut(_jsonl_rows(CWQ_JSONL), 1, answer=[]), f"record 1 {C1}", "'answer' is empty"),
    ("cwq", "test.json", _mut(_jsonl_rows(CWQ_JSONL), 1, answer=[1]), f"record 1 {C1}", "'answer' must be a list of strings"),
    ("cwq", "test.json", _mut(_jsonl_rows(CWQ_JSONL), 1, q_entity="Song"), f"record 1 {C1}",
     "'q_entity' must be a list of strings"),
    ("cwq", "test.json", _mut(_jsonl_rows(CWQ_JSONL), 1, q_entity=[]), f"record 1 {C1}", "'q_entity' is empty"),
    ("cwq", "test.json", _mut(_jsonl_rows(CWQ_JSONL), 1, a_entity=...), f"record 1 {C1}", "no 'a_entity'"),
    ("cwq", "test.json", _mut(_jsonl_rows(CWQ_JSONL), 1, id="WebQTrn-1001_5f3c2a"), "record 1 (id WebQTrn-1001_5f3c2a)",
     "duplicate id 'WebQTrn-1001_5f3c2a' (first at"),
    ("webqsp", "test.jsonl", "\n".join(json.dumps(x) for x in _mut(_jsonl_rows(WEBQSP), 2, question=None)),
     "test.jsonl:3 (id WebQTest-2003)", "no 'question'"),
    ("webqsp", "test.parquet", b"PAR1 this is not parquet", "test.parquet", "not a readable Parquet file"),
    ("aime", "aime.jsonl", '{"id": 1, "problem": "p"}\n', "aime.jsonl:1 (id 1)", "no 'answer' (or 'Answer')"),
    ("aime", "aime.jsonl", '{"id": 1, "answer": 3}\n', "aime.jsonl:1 (id 1)", "no 'problem' (or 'Problem')"),
    ("aime", "aime.jsonl", '{"id": 1, "problem": ["p"], "answer": 3}\n', "aime.jsonl:1 (id 1)", "'problem' must be a non-empty string"),
    ("aime", "aime.jsonl", '{"id": 1, "problem": "p", "answer": true}\n', "aime.jsonl:1 (id 1)", "'answer' must be a number"),
    ("aime", "aime.jsonl", '{"id": 1, "problem": "p", "answer": 3}\n{"id": 1, "problem": "q", "answer": 4}\n',
     "aime.jsonl:2 (id 1)", "duplicate id '1'"),
    ("aime", "aime.jsonl", '{"problem": "p", "answer": 3}\n{"problem": "q", "answer": 4}\n{"id": "0", "problem": "r", "answer": 5}\n',
     "aime.jsonl:3 (id 0)", "duplicate id '0'"),
    ("aime", "aime.jsonl", "", "aime.jsonl", "the file is empty"),
]


@pytest.mark.parametrize("task,name,content,where,problem", MALFORMED,
                         ids=[f"{m[0]}-{i}" for i, m in enumerate(MALFORMED)])
def test_malformed_inputs(tmp_path, task, name, content, where, problem):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    else:
        path.write_text(json.dumps(content))
    with pytest.raises(InputError) as e:
        get_task(task).load(path)
    msg = str(e.value)
    assert str(path) in e.value.where and where in e.value.where, msg
    assert problem in e.value.problem, msg
    assert "\n" not in msg


def test_malformed_parquet_row_and_missing_file(tmp_path):
    rows = _jsonl_rows(CWQ_JSONL)
    for r in rows:
        del r["graph"]
    path = tmp_path / "test.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    with pytest.raises(InputError, match=r"test\.parquet: row 0 \(id WebQTrn-1001_5f3c2a\): record has no 'graph'"):
        CWQTask().load(path)
    with pytest.raises(InputError, match="no such data file"):
        AIMETask().load(tmp_path / "missing.jsonl")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no .json, .jsonl, .ndjson, .parquet files in this folder"):
        HotpotQATask().load(tmp_path / "empty")


# --------------------------------------------------------------------------------------------
# End to end: collect run against the scripted server, replay reads the store

SKILL = {"small-1B": 0.3, "big-8B": 0.95}


def _rng(body, i):
    return random.Random(f"{body.get('seed')}/{body['model']}/{i}/{body['messages'][-1]['content']}")


def _question_of(text: str) -> str:
    return re.search(r"Question: (.*)\n", text).group(1)


def multihop_script(task, path):
    recs = {r.question: r for r in task.load(path)}

    def script(body, i):
        r = _rng(body, i)
        text = body["messages"][-1]["content"]
        rec = recs[_question_of(text)]
        skill = SKILL[body["model"]]
        sup = sorted(set(task.supporting_titles(rec)))
        if "Which passages are needed" in text:
            other = next(t for t, _ in passages(rec.context) if t not in sup)
            picks = sup if r.random() < skill else [sup[0], other]
            return "I need the linking passages." + " hmm" * r.randint(0, 4) + f"\nTitles: {' | '.join(picks)}"
        has_all = set(sup) <= set(_passage_titles(text))
        ans = rec.gold[0] if has_all and r.random() < skill else "Nobody Known"
        return "Reading." + " step" * r.randint(0, 4) + f"\nAnswer: {ans}."
    return script


def kg_script(task, path):
    recs = {r.question: r for r in task.load(path)}

    def script(body, i):
        r = _rng(body, i)
        text = body["messages"][-1]["content"]
        rec = recs[_question_of(text)]
        skill = SKILL[body["model"]]
        g = task.subgraph(rec)
        gold = list(g.gold_relations or ())
        if "Which relations must be followed" in text:
            other = [x for x in g.relations if x not in gold][:1]
            picks = gold if (gold and r.random() < skill) else other + gold[:1]
            return "Plan the path." + " hop" * r.randint(0, 4) + f"\nRelations: {' | '.join(picks)}"
        shown = {line.split(", ")[1] for line in _triple_lines(text)}
        ok = set(gold) <= shown
        ans = rec.gold[-1] if ok and r.random() < skill else "Nobody Known"
        return "Following the triples." + " then" * r.randint(0, 4) + f"\nAnswer: {ans}"
    return script


def aime_script(path):
    recs = {r.question: r for r in AIMETask().load(path)}

    def script(body, i):
        r = _rng(body, i)
        text = body["messages"][-1]["content"]
        rec = recs[text.split("\n\nSolve the problem")[0]]
        right = int(rec.gold[0])
        ans = right if r.random() < SKILL[body["model"]] else right + 1 + r.randint(0, 1)
        return "Work." + " think" * r.randint(0, 6) + f" Therefore \\boxed{{{ans}}}."
    return script


E2E = [
    ("2wiki", TWOWIKI, lambda: multihop_script(TwoWikiTask(), TWOWIKI)),
    ("hotpotqa", HOTPOT, lambda: multihop_script(HotpotQATask(), HOTPOT)),
    ("cwq", CWQ_PQ, lambda: kg_script(CWQTask(), CWQ_PQ)),
    ("webqsp", WEBQSP, lambda: kg_script(WebQSPTask(), WEBQSP)),
    ("aime", AIME, lambda: aime_script(AIME)),
]


@pytest.mark.parametrize("task,data,make_script", E2E, ids=[e[0] for e in E2E])
def test_collect_run_end_to_end(tmp_path, capsys, task, data, make_script):
    out = tmp_path / "store"
    with ChatServer(make_script()) as srv:
        code, stdout, err = run_cli(["run", "--task", task, "--data", str(data), "--models", "small-1B,big-8B",
                                     "--samples", "4", "--backend", "openai", "--base-url", srv.base_url,
                                     "--max-tokens", "64", "--out", str(out), "--quiet"], capsys)
    assert code == 0, err
    store = replay.open(out)
    m = store.manifest
    t = get_task(task)
    assert m.synthetic is False and m.stage_names == tuple(s.name for s in t.stages)
    assert [(s.aggregation, s.scorer) for s in m.stages] == [(s.aggregation, s.scorer) for s in t.stages]
    n_q = len(t.load(data))
    assert store.questions.height == n_q
    s = store.samples
    assert ((s["score"] >= 0) & (s["score"] <= 1)).all()
    n = len(t.stages)
    big = store.evaluate(",".join(["big-8B:2"] * n), replicates=16, seed=0)
    small = store.evaluate(",".join(["small-1B:2"] * n), replicates=16, seed=0)
    assert big.feasible and small.feasible
    assert 0.0 <= small.score < big.score <= 1.0  # the scripted big model is the better one
    if n == 2:
        golds = store.stage_golds
        expect = sum(t.stage_gold("retrieve", r) is not None for r in t.load(data))
        assert golds.height == expect
        # the answer stage's pools are keyed by retrieve answers that are sets of real items
        ret = s.filter(s["stage"] == "retrieve")
        assert all(a == "|".join(sorted(set(a.split("|")))) for a in ret["answer"] if a)
