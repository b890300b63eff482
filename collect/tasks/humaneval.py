"""`humaneval`: HumanEval code generation (Chen et al. 2021), one stage `solve` (or, with
`collect run --graph`, the graph roles solve, refine, aggregate); pass@1.

Data: the official JSONL (`HumanEval.jsonl`, or the `.jsonl.gz` unpacked; Parquet/JSON of the
same records are read too): `task_id`, `prompt` (the signature and docstring), `test` (a
`check(candidate)` function, with module-level setup such as `METADATA`), `entry_point` (the
function's name); `canonical_solution` is not used.

Answers. A completion's program is its largest ```python block (else the whole completion if it
parses; `chatdev.extract_program`), with the prompt put before it when it does not define the
entry point itself (a completion of the body). The program's canonical answer is its
**pass/fail signature** on the tests: the statements of `check`'s body that assert something
(an `assert`, or a loop or block holding asserts) are the tests, in order; each is run on the
program's entry point and gives `P` (it ran) or `F` (it raised, or ran past its time). The other
statements of `check` and the test's module-level code run as setup, in order. So programs that
behave alike on the tests carry the same answer and vote together, and the gold is `P` for
every test. Score: 1 when every test passes (pass@1 of that sample), else 0. A program that does
not compile or define the entry point fails every test.

The program runs in the project's sandbox (replay/sandbox: a separate process with no network,
no files outside its folder, CPU/memory/file limits; `collect run` prints what holds on this
machine), once per distinct program (cached by its text), with a wall-clock limit of
`timeout_s` plus `per_test_s` per test and each test stopped after `per_test_s` (SIGALRM).
"""

from __future__ import annotations

import ast
import hashlib
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar

from replay.errors import InputError

from .base import Messages, Record, StageSpec, Task
from .chatdev import _PRELUDE, extract_program
from .files import load_records, Row
from .math import candidates_block

# Runs in the sandbox: the program, then each test in order; prints the signature. The network
# guard of chatdev's prelude comes first (the sandbox's kernel layers enforce the same).
_HARNESS = _PRELUDE.split("import runpy")[0] + r'''
import json, signal
spec = json.load(open("tests.json"))
units = spec["units"]
n_tests = sum(1 for u in units if u["test"])
class _Late(Exception):
    pass
def _late(*a):
    raise _Late()
signal.signal(signal.SIGALRM, _late)
ns = {"__name__": "__candidate__"}
try:
    signal.alarm(int(spec["per_test_s"]) + 1)
    exec(compile(open("main.py").read(), "main.py", "exec"), ns)
    signal.alarm(0)
    cand = ns[spec["entry_point"]]
except BaseException:
    print("F" * n_tests)
    sys.exit(0)
env = {"__name__": "__test__", "candidate": cand, spec["entry_point"]: cand}
try:
    exec(compile(spec["setup"], "test.py", "exec"), env)
except BaseException:
    pass
out = []
for u in units:
    try:
        signal.alarm(int(spec["per_test_s"]))
        exec(compile(u["source"], "test.py", "exec"), env)
        signal.alarm(0)
        ok = True
    except BaseException:
        signal.alarm(0)
        ok = False
    if u["test"]:
        out.append("P" if ok else "F")
print("".join(out))
'''


def _has_assert(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Assert) for n in ast.walk(node))


def split_tests(test: str, where: str) -> tuple[str, list[dict]]:
    """The test's module-level setup, and `check`'s body as units (source, whether a test)."""
    try:
        tree = ast.parse(test)
    except SyntaxError as e:
        raise InputError(where, f"'test' does not parse as Python ({e.msg}, line {e.lineno})") from None
    check = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "check"), None)
    if check is None or not check.args.args:
        raise InputError(where, "'test' defines no check(candidate) function")
    arg = check.args.args[0].arg
    setup = [n for n in tree.body if n is not check]
    units = [{"source": (f"{arg} = candidate\n" if arg != "candidate" else "") + ast.unparse(st),
              "test": _has_assert(st)} for st in check.body]
    if not any(u["test"] for u in units):
        raise InputError(where, "check(candidate) asserts nothing: no tests to run")
    return ast.unparse(ast.Module(body=setup, type_ignores=[])), units


class HumanEvalTask(Task):
    name = "humaneval"
    description = "HumanEval (official JSONL): programs keyed by their pass/fail signature, pass@1; graph roles too"
    stages = (StageSpec("solve", "majority_vote", "pass@1",
                        "write the function; answer = pass/fail signature on the tests, score 1 if all pass"),)
    graph_roles = ("solve", "refine", "aggregate")
    runs_untrusted_code: ClassVar[bool] = True
    timeout_s: ClassVar[float] = 5.0
    per_test_s: ClassVar[float] = 3.0
    memory_mb: ClassVar[int] = 1024
    exec_workers: ClassVar[int] = 4

    def __init__(self):
        self._cache: dict[str, str] = {}

    # ---- data
    def load(self, path: str | Path) -> list[Record]:
        return load_records(path, self._build, "HumanEval records (task_id, prompt, test, entry_point)", "task_id")

    def _build(self, row: Row) -> Record:
        raw = row.raw
        for k in ("task_id", "prompt", "test", "entry_point"):
            if not isinstance(raw.get(k), str) or not raw[k].strip():
                raise InputError(row.where, f"record has no {k!r} (a non-empty string; the HumanEval JSONL layout)")
        where = row.at("task_id", raw["task_id"])
        setup, units = split_tests(raw["test"], where)
        if not raw["entry_point"].isidentifier():
            raise InputError(where, f"entry_point {raw['entry_point']!r} is not a Python name")
        n = sum(u["test"] for u in units)
        return Record(id=raw["task_id"], question=raw["prompt"], gold=("P" * n,), metadata={"tests": n},
                      line=row.line, extra={"entry_point": raw["entry_point"], "setup": setup, "units": units})

    def gold(self, record: Record) -> str:
        return record.gold[0]

    # ---- prompts
    _ASK = "Answer with the complete function (with any imports it needs) in a single ```python fenced block."

    def prompt(self, stage: str, record: Record, upstream: str) -> Messages:
        return [{"role": "user", "content": (
            f"Complete this Python function.\n\n```python\n{record.question}```\n\n{self._ASK}")}]

    def role_prompt(self, role: str, record: Record, candidates: list[str]) -> Messages:
        shown = candidates_block([f"```python\n{extract_program(c) or c}\n```" for c in candidates], "program")
        if role == "refine":
            return [{"role": "user", "content": (
                f"Here is a Python function to write:\n\n```python\n{record.question}```\n\n{shown}\n\n"
                f"Review the candidate code, find its bugs and fix them. {self._ASK}")}]
        return [{"role": "user", "content": (
            f"Here is a Python function to write:\n\n```python\n{record.question}```\n\nThere are {len(candidates)} "
            f"candidate programs.\n\n{shown}\n\nDecide which one is correct (fix it if none is). {self._ASK}")}]

    # ---- answers: the pass/fail signature
    def program(self, text: str, record: Record) -> str:
        code = extract_program(text)
        if not code.strip():
            return ""
        if f"def {record.extra['entry_point']}" not in code:
            code = record.question + code  # a completion of the body
        return code

    def signature(self, program: str, record: Record) -> str:
        n = len(record.gold[0])
        if not program.strip():
            return "F" * n
        key = hashlib.sha256(f"{record.id}\0{program}".encode("utf-8", "surrogatepass")).hexdigest()
        if key not in self._cache:
            self._cache[key] = self._run(program, record)
        return self._cache[key]

    def _run(self, program: str, record: Record) -> str:
        from replay.sandbox import Limits, run

        n = len(record.gold[0])
        spec = {"entry_point": record.extra["entry_point"], "setup": record.extra["setup"],
                "units": record.extra["units"], "per_test_s": self.per_test_s}
        wall = self.timeout_s + self.per_test_s * len(record.extra["units"])
        r = run([sys.executable, "-I", "-B", "-c", _HARNESS], files={"main.py": program, "tests.json": json.dumps(spec)},
                limits=Limits(wall_s=wall, cpu_s=int(wall) + 1, memory_mb=self.memory_mb), keep_stdout=True)
        out = (r.stdout or "").strip().splitlines()
        sig = out[-1].strip() if out else ""
        if r.timed_out or len(sig) != n or set(sig) - {"P", "F"}:
            return "F" * n  # killed, out of time, or printed over the harness's line
        return sig

    def parse(self, stage: str, text: str, record: Record) -> str:
        return self.signature(self.program(text, record), record)

    def parse_many(self, stage: str, texts: list[str], record: Record) -> list[str]:
        """Signatures of a pool's completions, `exec_workers` programs at a time."""
        with ThreadPoolExecutor(max_workers=max(1, self.exec_workers)) as pool:
            return list(pool.map(lambda t: self.parse(stage, t, record), texts))

    def score(self, stage: str, answer: str, record: Record) -> float:
        return float(answer == record.gold[0])
