"""`taskbench`: TaskBench (Shen et al. 2023, microsoft/JARVIS `taskbench/`): decompose, select, params.

Data: `--data` is a TaskBench domain folder (`data_huggingface/`, `data_multimedia/`,
`data_dailylifeapis/`) holding the two official files, or the path of its `data.json` with
`tool_desc.json` beside it.

- `data.json`: JSON lines, one request a line. Fields read: `id`; `user_request` (the
  instruction; `instruction` is accepted as well); `tool_steps` (list of step strings);
  `tool_nodes` (list of `{"task": TOOL, "arguments": [...]}`: arguments are strings, where
  `"<node-j>"` stands for the output of node j, in the resource domains, and `{"name", "value"}`
  objects in the API domain); `tool_links` (list of `{"source": TOOL, "target": TOOL}`); and
  `type` (single/chain/dag), `n_tools`, `seed`, kept as metadata. The GitHub release's names
  `task_steps`, `task_nodes`, `task_links` (written by its `format_data.py`) are read too.
- `tool_desc.json`: `{"nodes": [{"id", "desc", "parameters": [{"name", "type", "desc"}]}]}`
  for an API domain (TaskBench's "temporal" dependencies), or `{"id", "desc", "input-type",
  "output-type"}` nodes for a resource domain. Every tool a request uses must be listed.

Tool names are matched case-insensitively with `_`, `-` and spaces alike (TaskBench's
evaluate.py replaces `_` by a space in the resource domains; models write `Image_to_Text`) and
written as `tool_desc.json` spells them; two tools whose names match this way are refused.

Stages, each aggregated by majority vote over canonical answers:

- `decompose`: the model breaks the request into steps (`Step 1: ...` lines; TaskBench's
  JSON `{"task_steps": [...]}` is read too). Canonical answer: the steps, numbering removed and
  whitespace collapsed, one a line. Stage gold: `tool_steps` the same way. Score: ROUGE-1 F1
  between the steps and the gold steps, as TaskBench scores task decomposition (R1): clipped
  unigram overlap over lower-cased alphanumeric tokens (rouge_score's tokenizer, no stemming),
  after removing the `Step N:` prefixes of both sides. `metrics`: ROUGE-2 F1 and whether the
  step count matches the gold's.
- `select` (tool selection): given the request and the upstream steps, the model answers
  `{"task_nodes": [{"task": TOOL}], "task_links": [{"source", "target"}]}`. Canonical answer:
  `{"links": [[source, target], ...], "nodes": [...]}` as compact JSON, both sorted and
  de-duplicated. Stage gold: the same of `tool_nodes`/`tool_links` (in a resource domain
  evaluate.py rebuilds the links from the `<node-j>` arguments; the release's `tool_links` are
  that graph, and this stage's answer has no arguments). Score: node F1 (n-F1), as
  taskbench/evaluate.py computes it per request: set F1 over tool names, where a name that is not
  a tool of `tool_desc.json` counts neither as a hit nor as a false positive (its `flatten` with
  `types` maps such names to the negative class on both sides). `metrics`: edge F1 (e-F1), set
  F1 over (source, target) pairs, the empty set matching the empty set.
- `params` (parameter prediction, the last stage; the paper's p-F1): given the selected tools,
  the model answers `{"task_nodes": [{"task": TOOL, "arguments": [...]}]}`. Each argument
  becomes a (tool, parameter name, value) triple exactly as evaluate.py builds them: in an API
  domain from the `{"name", "value"}` objects (a `{"param": value}` object is read as one
  argument per key); in a resource domain, `"<node-j>"` becomes (tool, the output type of node j's
  tool, node j's tool name) and a literal becomes (tool, its content type by file extension:
  image/audio/video/text, the literal), a self-reference is skipped. Canonical answer: the
  sorted, de-duplicated triples as compact JSON. Score: v-F1, set F1 over the triples
  (evaluate.py's "Task-ArgName-Value Binary F1"); `metrics`: t-F1 over (tool, name) pairs.

The F1s follow microsoft/JARVIS `taskbench/evaluate.py`: `flatten` with `types` (node F1),
`flatten` without (edge, t- and v-F1, scikit-learn's binary F1 over the union of both sides' sets),
`get_content_type`, and the `dependency_type == "resource"` branch of `evaluate` that rewrites
arguments into `{"name", "value"}`. evaluate.py takes the dependency type as an option per
domain; here it is read off `tool_desc.json` (API tools: temporal; typed tools: resource).
evaluate.py pools its counts over all requests of a split (micro F1); the store keeps one score
per request and replay averages them (macro over requests). A completion with no readable
answer (no steps; no JSON object with nodes) has the canonical answer "" and scores 0.
Values are compared as strings, case-sensitively, as evaluate.py does; a non-string value is
written as JSON, a list of strings joined by spaces.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from replay.errors import InputError

from .base import Messages, Record, StageSpec, Task, read_jsonl_records
from .scoring import set_f1

NO_ANSWER = ""
DATA_FILE = "data.json"
TOOLS_FILE = "tool_desc.json"

_FIELDS = {  # official name, the GitHub release's name
    "request": ("user_request", "instruction"),
    "steps": ("tool_steps", "task_steps"),
    "nodes": ("tool_nodes", "task_nodes"),
    "links": ("tool_links", "task_links"),
}
_NODE_REF = re.compile(r"<node-(\d+)>")
_STEP = re.compile(r"^\s*(?:[-*\u2022]\s*)?(?:\*\*)?(?:step\s*)?(\d+)\s*(?:\*\*)?\s*[:.)\-]\s*(?:\*\*)?\s*(.*)$",
                   re.IGNORECASE)
_STEP_PREFIX = re.compile(r"^\s*step\s*\d+\s*[:.)\-]\s*", re.IGNORECASE)
_BULLET = re.compile(r"^\s*[-*\u2022]\s+(.*)$")
_TOKEN = re.compile(r"[a-z0-9]+")
_EXT = {
    "image": ("jpg", "png", "jpeg", "gif", "bmp", "tiff", "svg", "ico"),
    "audio": ("mp3", "wav", "wma", "ogg", "aac", "flac", "aiff", "au"),
    "video": ("mp4", "avi", "mov", "flv", "wmv", "mkv", "webm", "m4v", "mpg", "mpeg"),
}


def tool_key(name: str) -> str:
    """Names that differ only in case, in `_`, `-` or spaces between words are the same tool."""
    return " ".join(re.sub(r"[_\-\s]+", " ", str(name)).lower().split())


def content_type(value: str) -> str:
    """evaluate.py's get_content_type: the parameter 'name' of a literal in a resource domain."""
    v = value.strip("'")
    for kind, exts in _EXT.items():
        if any("." + e in v for e in exts):
            return kind
    return "text"


# --------------------------------------------------------------------------------------------
# The tool catalogue (tool_desc.json)


@dataclass(frozen=True)
class Tool:
    id: str
    desc: str
    parameters: tuple[tuple[str, str, str], ...] = ()  # (name, type, desc): API tools
    input_types: tuple[str, ...] = ()
    output_types: tuple[str, ...] = ()


@dataclass
class Catalogue:
    path: Path
    mode: str  # "resource" (input/output types, <node-j> arguments) or "temporal" (API parameters)
    tools: dict[str, Tool] = field(default_factory=dict)  # by tool_key

    def find(self, name: Any) -> Tool | None:
        return self.tools.get(tool_key(name)) if isinstance(name, str) else None

    def name(self, name: Any) -> str:
        """The catalogue's spelling of a tool name, or the name tidied if it is no tool."""
        t = self.find(name)
        return t.id if t is not None else " ".join(str(name).split())

    def output_type(self, name: str) -> str:
        t = self.find(name)
        if t is None:
            return "other"
        return t.output_types[0] if t.output_types else "none"

    def describe(self, names: list[str] | None = None) -> str:
        tools = list(self.tools.values()) if names is None else [t for n in names if (t := self.find(n))]
        lines = []
        for t in tools:
            if self.mode == "temporal":
                ps = ", ".join(f"{n} ({ty})" + (f": {d}" if d else "") for n, ty, d in t.parameters)
                lines.append(f"- {t.id}: {t.desc} Parameters: {ps or 'none'}.")
            else:
                lines.append(f"- {t.id}: {t.desc} Input: {', '.join(t.input_types) or 'none'}; "
                             f"output: {', '.join(t.output_types) or 'none'}.")
        return "\n".join(lines)


def _str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(x, str) for x in value)


def load_catalogue(path: Path) -> Catalogue:
    if not path.is_file():
        raise InputError(path, f"no {TOOLS_FILE} (TaskBench's tool list; it must lie beside {DATA_FILE})")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(path, f"cannot read the tool list ({e})") from None
    except json.JSONDecodeError as e:
        raise InputError(path, f"not JSON ({e.msg}, line {e.lineno})") from None
    except RecursionError:
        raise InputError(path, "not JSON a tool list can be (nested too deeply)") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("nodes"), list) or not raw["nodes"]:
        raise InputError(path, "expected an object with a non-empty 'nodes' list of tools")
    tools: dict[str, Tool] = {}
    kinds = set()
    for i, node in enumerate(raw["nodes"], 1):
        where = f"{path}: node {i}"
        if not isinstance(node, dict):
            raise InputError(where, "a tool must be a JSON object")
        tid = node.get("id")
        if not isinstance(tid, str) or not tid.strip():
            raise InputError(where, "tool has no 'id'")
        where = f"{path}: node {i} ({tid})"
        desc = node.get("desc", "")
        if not isinstance(desc, str):
            raise InputError(where, "'desc' must be a string")
        if "parameters" in node:
            ps = node["parameters"]
            if not isinstance(ps, list) or not all(isinstance(p, dict) and isinstance(p.get("name"), str)
                                                   and p["name"].strip() for p in ps):
                raise InputError(where, "'parameters' must be a list of objects with a 'name'")
            tool = Tool(tid, desc.strip(), parameters=tuple(
                (p["name"], str(p.get("type", "")), str(p.get("desc", ""))) for p in ps))
            kinds.add("temporal")
        elif "input-type" in node or "output-type" in node:
            it, ot = node.get("input-type", []), node.get("output-type", [])
            if not _str_list(it) or not _str_list(ot):
                raise InputError(where, "'input-type' and 'output-type' must be lists of strings")
            tool = Tool(tid, desc.strip(), input_types=tuple(it), output_types=tuple(ot))
            kinds.add("resource")
        else:
            raise InputError(where, "tool has neither 'parameters' nor 'input-type'/'output-type'")
        key = tool_key(tid)
        if key in tools:
            raise InputError(where, f"duplicate tool id {tid!r}")
        tools[key] = tool
    if len(kinds) > 1:
        raise InputError(path, "mixes API tools ('parameters') with resource tools ('input-type'/'output-type')")
    return Catalogue(path=path, mode=kinds.pop(), tools=tools)


# --------------------------------------------------------------------------------------------
# Graph pieces, scores


def rouge_n(pred: str, gold: str, n: int = 1) -> float:
    """ROUGE-N F1 (rouge_score's default tokenizer: lower case, [a-z0-9]+ tokens, no stemming)."""
    def grams(text):
        toks = _TOKEN.findall(text.lower())
        return Counter(tuple(toks[i:i + n]) for i in range(len(toks) - n + 1))

    p, g = grams(pred), grams(gold)
    if not p or not g:
        return 1.0 if not p and not g else 0.0
    hit = sum((p & g).values())
    if hit == 0:
        return 0.0
    prec, rec = hit / sum(p.values()), hit / sum(g.values())
    return 2 * prec * rec / (prec + rec)


def _value(v: Any) -> str:
    if isinstance(v, str):
        return v.strip()
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return " ".join(x.strip() for x in v)
    return json.dumps(v, ensure_ascii=False, sort_keys=True)


def argument_triples(nodes: list[tuple[str, list]], cat: Catalogue) -> list[tuple[str, str, str]]:
    """(tool, parameter name, value) triples of a tool graph, as TaskBench's evaluate.py builds them.

    `nodes`: (tool name, arguments) in graph order (`<node-j>` indexes this list). A reference
    to no node (j out of range) is dropped.
    """
    out = []
    names = [n for n, _ in nodes]
    for idx, (task, args) in enumerate(nodes):
        for arg in args:
            if cat.mode == "temporal":
                if isinstance(arg, dict) and "name" in arg and "value" in arg:
                    out.append((task, _value(arg["name"]), _value(arg["value"])))
                elif isinstance(arg, dict):  # {"param": value, ...}
                    out.extend((task, _value(k), _value(v)) for k, v in arg.items())
                continue
            if isinstance(arg, dict):
                arg = arg.get("value", next(iter(arg.values()), "")) if arg else ""
            value = _value(arg)
            m = _NODE_REF.search(value)
            if m:
                j = int(m.group(1))
                if j == idx or j >= len(names):
                    continue
                out.append((task, cat.output_type(names[j]), names[j]))
            elif value:
                out.append((task, content_type(value), value))
    return out


def canonical_graph(nodes: list[str], links: list[tuple[str, str]]) -> str:
    return json.dumps({"links": sorted({(s, t) for s, t in links}), "nodes": sorted(set(nodes))},
                      ensure_ascii=False, separators=(",", ":"))


def canonical_triples(triples) -> str:
    return json.dumps(sorted({tuple(t) for t in triples}), ensure_ascii=False, separators=(",", ":"))


def read_graph(answer: str) -> tuple[list[str], list[tuple[str, str]]] | None:
    if not answer:
        return None
    g = json.loads(answer)
    return list(g["nodes"]), [tuple(x) for x in g["links"]]


def read_triples(answer: str) -> list[tuple[str, ...]] | None:
    return None if not answer else [tuple(x) for x in json.loads(answer)]


def clean_step(step: str) -> str:
    s = _STEP_PREFIX.sub("", str(step))
    return " ".join(s.replace("**", "").split()).strip()


# --------------------------------------------------------------------------------------------
# Reading completions


def json_objects(text: str) -> list[Any]:
    """Every JSON object or array in `text` that parses, outermost first, in order of appearance."""
    found, dec, i = [], json.JSONDecoder(), 0
    while i < len(text):
        if text[i] in "{[":
            try:
                obj, end = dec.raw_decode(text, i)
            except json.JSONDecodeError:
                i += 1
                continue
            found.append(obj)
            i = end
        else:
            i += 1
    return found


def _graph_object(text: str) -> dict | None:
    """The last JSON object of the completion that names nodes (a fenced ```json block or bare)."""
    for obj in reversed(json_objects(text)):
        if isinstance(obj, dict) and any(k in obj for k in ("task_nodes", "tool_nodes", "nodes")):
            return obj
        if isinstance(obj, dict) and isinstance(obj.get("result"), dict):  # TaskBench's prediction files
            inner = obj["result"]
            if any(k in inner for k in ("task_nodes", "tool_nodes", "nodes")):
                return inner
    return None


def _first(obj: dict, *keys, default=None):
    for k in keys:
        if k in obj:
            return obj[k]
    return default


def _node_name(node: Any) -> str | None:
    if isinstance(node, str):
        return node
    if isinstance(node, dict):
        v = _first(node, "task", "tool", "name", "id")
        return v if isinstance(v, str) else None
    return None


def parse_steps(text: str) -> list[str]:
    for obj in reversed(json_objects(text)):
        if isinstance(obj, dict):
            steps = _first(obj, "task_steps", "tool_steps", "steps")
            if isinstance(steps, list) and steps:
                out = []
                for s in steps:
                    if isinstance(s, dict):
                        s = _first(s, "description", "step", "task", default="")
                    if isinstance(s, str) and clean_step(s):
                        out.append(clean_step(s))
                if out:
                    return out
    runs: list[list[str]] = []
    for line in text.splitlines():
        m = _STEP.match(line)
        if m and m.group(2).strip():
            if int(m.group(1)) == 1 or not runs:
                runs.append([])
            runs[-1].append(clean_step(m.group(2)))
    if runs:
        return [s for s in runs[-1] if s]
    bullets = [clean_step(m.group(1)) for line in text.splitlines() if (m := _BULLET.match(line))]
    return [b for b in bullets if b]


# --------------------------------------------------------------------------------------------
# The task


class TaskBenchTask(Task):
    name = "taskbench"
    description = "TaskBench tool automation: decompose, select tools (n-F1), predict parameters (v-F1)"
    stages = (
        StageSpec("decompose", "majority_vote", "rouge1_f1",
                  "break the request into steps; ROUGE-1 F1 against the gold steps"),
        StageSpec("select", "majority_vote", "node_f1",
                  "pick the tool graph (nodes and links); node F1 (TaskBench n-F1), edge F1 as a metric"),
        StageSpec("params", "majority_vote", "param_value_f1",
                  "predict each tool's arguments; (tool, name, value) F1 (TaskBench v-F1), t-F1 as a metric"),
    )

    # ---- loading
    def _paths(self, path: Path) -> tuple[Path, Path]:
        path = Path(path)
        if path.is_dir():
            return path / DATA_FILE, path / TOOLS_FILE
        return path, path.with_name(TOOLS_FILE)

    def data_files(self, path: Path) -> list[Path]:
        return list(self._paths(path))

    def load(self, path: str | Path) -> list[Record]:
        data, tools = self._paths(Path(path))
        if not data.is_file():
            raise InputError(data, f"no such file (a TaskBench domain folder holds {DATA_FILE} and {TOOLS_FILE})")
        cat = load_catalogue(tools)
        records = read_jsonl_records(data, lambda raw, where, n: self._record(raw, where, n, cat))
        if not records:
            raise InputError(data, "no requests (expected JSON lines with id, user_request, tool_nodes, ...)")
        return records

    def _record(self, raw: Any, where: str, line: int, cat: Catalogue) -> Record:  # type: ignore[override]
        if not isinstance(raw, dict):
            raise InputError(where, "a request must be a JSON object")
        got = {}
        for what, keys in _FIELDS.items():
            k = next((k for k in keys if k in raw), None)
            if k is None:
                raise InputError(where, f"request has no {keys[0]!r}")
            got[what] = raw[k]
        rid = raw.get("id")
        if not isinstance(rid, (str, int)) or isinstance(rid, bool) or str(rid) == "":
            raise InputError(where, "'id' must be a non-empty string or an integer")
        where = f"{where} (id {rid})"
        if not isinstance(got["request"], str) or not got["request"].strip():
            raise InputError(where, "'user_request' must be a non-empty string")
        if not _str_list(got["steps"]):
            raise InputError(where, "'tool_steps' must be a list of strings")
        nodes = got["nodes"]
        if not isinstance(nodes, list) or not nodes:
            raise InputError(where, "'tool_nodes' must be a non-empty list")
        graph: list[tuple[str, list]] = []
        for i, node in enumerate(nodes):
            if not isinstance(node, dict) or not isinstance(node.get("task"), str):
                raise InputError(where, f"tool node {i} must be an object with a 'task' name")
            tool = cat.find(node["task"])
            if tool is None:
                raise InputError(where, f"tool node {i} names {node['task']!r}, which is not a tool of {cat.path}")
            args = node.get("arguments", [])
            if isinstance(args, str):
                args = [args]
            if not isinstance(args, list):
                raise InputError(where, f"tool node {i} ({tool.id}): 'arguments' must be a list")
            for a in args:
                if cat.mode == "temporal" and not (isinstance(a, dict) and "name" in a and "value" in a):
                    raise InputError(where, f"tool node {i} ({tool.id}): an API argument must be a "
                                            "{\"name\", \"value\"} object")
                if isinstance(a, str) and (m := _NODE_REF.search(a)) and int(m.group(1)) >= len(nodes):
                    raise InputError(where, f"tool node {i} ({tool.id}): argument {a!r} refers to no node")
            graph.append((tool.id, args))
        names = {n for n, _ in graph}
        links = got["links"]
        if not isinstance(links, list):
            raise InputError(where, "'tool_links' must be a list")
        gold_links = []
        for i, link in enumerate(links):
            if not isinstance(link, dict) or not isinstance(link.get("source"), str) \
                    or not isinstance(link.get("target"), str):
                raise InputError(where, f"tool link {i} must be an object with 'source' and 'target' names")
            s, t = cat.name(link["source"]), cat.name(link["target"])
            for end in (s, t):
                if end not in names:
                    raise InputError(where, f"tool link {i} ({link['source']} -> {link['target']}) "
                                            f"names {end!r}, which is not one of the request's tool nodes")
            gold_links.append((s, t))
        steps = [clean_step(s) for s in got["steps"] if clean_step(s)]
        triples = argument_triples(graph, cat)
        meta = {k: raw[k] for k in ("type", "n_tools", "seed") if k in raw}
        return Record(id=str(rid), question=got["request"].strip(), gold=(canonical_triples(triples),),
                      context=cat, metadata=meta, line=line,
                      extra={"steps": steps, "nodes": [n for n, _ in graph], "links": gold_links,
                             "graph": graph})

    # ---- golds
    def stage_gold(self, stage: str, record: Record) -> str | None:
        if stage == "decompose":
            return "\n".join(record.extra["steps"])
        if stage == "select":
            return canonical_graph(record.extra["nodes"], record.extra["links"])
        if stage == "params":
            return record.gold[0]
        return None

    def gold(self, record: Record) -> str:
        return record.gold[0]

    # ---- prompts
    def prompt(self, stage: str, record: Record, upstream: str) -> Messages:
        cat: Catalogue = record.context
        head = f"Tools:\n{cat.describe()}\n\nUser request: {record.question}\n\n"
        if stage == "decompose":
            return [{"role": "user", "content": head + (
                "Break the request into the steps needed to fulfil it, one tool call per step, in order. "
                "Write each step on its own line, as\nStep 1: ...\nStep 2: ...\nand nothing after the last step.")}]
        steps = upstream.split("\n") if stage == "select" and upstream else []
        if stage == "select":
            plan = "\n".join(f"Step {i + 1}: {s}" for i, s in enumerate(steps)) or "(no steps were given)"
            return [{"role": "user", "content": head + f"Steps:\n{plan}\n\n" + (
                "Choose the tools that carry out these steps and the dependencies between them (a link "
                "means the target needs the source's output or must run after it). Use the tool names "
                "exactly as listed. Answer with one JSON object and nothing else:\n"
                '{"task_nodes": [{"task": "TOOL"}], "task_links": [{"source": "TOOL", "target": "TOOL"}]}')}]
        try:
            picked = read_graph(upstream)
        except (ValueError, KeyError, TypeError):
            picked = None
        if picked and picked[0]:
            chosen = f"Selected tools:\n{cat.describe(picked[0])}\n"
            unknown = [n for n in picked[0] if cat.find(n) is None]
            if unknown:
                chosen += "".join(f"- {n}\n" for n in unknown)
            if picked[1]:
                chosen += "Dependencies: " + "; ".join(f"{s} -> {t}" for s, t in picked[1]) + "\n"
        else:
            chosen = "Selected tools: (none were selected; choose them from the list above)\n"
        if cat.mode == "temporal":
            how = ('"arguments" lists the parameters as [{"name": "PARAMETER", "value": "VALUE"}], with the '
                   "parameter names of the tool's description and values taken from the request.")
            example = '{"task_nodes": [{"task": "TOOL", "arguments": [{"name": "PARAMETER", "value": "VALUE"}]}]}'
        else:
            how = ('"arguments" lists the tool\'s inputs: a literal value from the request (a file name such as '
                   '"example.jpg", or a text), or "<node-j>" for the output of node j of your list (counting from 0).')
            example = ('{"task_nodes": [{"task": "TOOL", "arguments": ["example.jpg"]}, '
                       '{"task": "TOOL", "arguments": ["<node-0>"]}]}')
        return [{"role": "user", "content": (
            f"User request: {record.question}\n\n{chosen}\nGive the call of each selected tool, in execution order. "
            f"{how} Answer with one JSON object and nothing else:\n{example}")}]

    # ---- parsing and scoring
    def parse(self, stage: str, text: str, record: Record) -> str:
        cat: Catalogue = record.context
        if stage == "decompose":
            return "\n".join(parse_steps(text))
        obj = _graph_object(text)
        if obj is None:
            return NO_ANSWER
        raw_nodes = _first(obj, "task_nodes", "tool_nodes", "nodes")
        if not isinstance(raw_nodes, list):
            return NO_ANSWER
        if stage == "select":
            nodes = [cat.name(n) for n in map(_node_name, raw_nodes) if n and n.strip()]
            links = []
            raw_links = _first(obj, "task_links", "tool_links", "links", default=[])
            for link in raw_links if isinstance(raw_links, list) else []:
                if isinstance(link, dict):
                    s, t = link.get("source"), link.get("target")
                elif isinstance(link, (list, tuple)) and len(link) == 2:
                    s, t = link
                else:
                    continue
                if isinstance(s, str) and isinstance(t, str) and s.strip() and t.strip():
                    links.append((cat.name(s), cat.name(t)))
            return canonical_graph(nodes, links)
        graph = []
        for node in raw_nodes:
            name = _node_name(node)
            if not name or not name.strip():
                continue
            args = node.get("arguments", []) if isinstance(node, dict) else []
            if isinstance(args, (str, dict)):
                args = [args]
            graph.append((cat.name(name), args if isinstance(args, list) else []))
        return canonical_triples(argument_triples(graph, cat))

    def score(self, stage: str, answer: str, record: Record) -> float:
        if stage == "decompose":
            return rouge_n(answer, self.stage_gold(stage, record), 1) if answer else 0.0
        if stage == "select":
            g = read_graph(answer)
            if g is None:
                return 0.0
            cat: Catalogue = record.context
            return set_f1([n for n in g[0] if cat.find(n)], record.extra["nodes"])
        t = read_triples(answer)
        return 0.0 if t is None else set_f1(t, read_triples(record.gold[0]))

    def metrics(self, stage: str, answer: str, record: Record) -> dict[str, float]:
        if stage == "decompose":
            gold = self.stage_gold(stage, record)
            n = len(answer.split("\n")) if answer else 0
            return {"rouge2_f1": rouge_n(answer, gold, 2) if answer else 0.0,
                    "steps_match": float(n == len(record.extra["steps"]))}
        if stage == "select":
            g = read_graph(answer)
            return {"edge_f1": 0.0 if g is None else set_f1(g[1], record.extra["links"])}
        t = read_triples(answer)
        gold = read_triples(record.gold[0])
        return {"t_f1": 0.0 if t is None else set_f1({x[:2] for x in t}, {x[:2] for x in gold})}
