"""Static checks on a controller program before it runs: cheap, explicit, and not a security
boundary (the sandbox is: docs/sandbox.md).

    report = check_program(source)     # CheckReport: ok, problems (one line each), class_name, ...

What is checked, in order (every problem found is reported, each naming its line):

1. size: at most `max_chars` characters (default 20,000);
2. it parses (Python 3 syntax);
3. top level: only imports, function and class definitions, assignments and a docstring (no
   code runs at import but definitions);
4. imports: only the allowed modules (ALLOWED_IMPORTS: the standard library's math, random,
   collections, itertools, functools, heapq, bisect, statistics, typing, dataclasses, numpy,
   and replay.controllers for the protocol);
5. names: none of FORBIDDEN_NAMES (eval, exec, open, __import__, getattr, ...), and no
   attribute with a double-underscore name but __init__, __name__ and __doc__;
6. exactly one controller class: one class deriving from Controller or ScriptedController
   (by name, or as replay.controllers.X), which defines `script` (ScriptedController) or
   `decide` (Controller) and the classmethod `beta_params`.

Why these: they catch the usual mistakes of a program written by a language model (a missing
method, prose around the code, a second class, an import that the sandbox would refuse anyway)
before paying for a sandbox, and they give the agent a precise line to fix. They do not make a
program safe: Python has many ways around any list of names (numpy alone reaches ctypes). What
makes running it safe is the sandbox; tests/test_discovery.py runs programs that pass these
checks and still try to fork, write outside their folder, open sockets and kill their parent.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

MAX_CHARS = 20_000
ALLOWED_IMPORTS = frozenset({
    "math", "random", "collections", "itertools", "functools", "heapq", "bisect", "statistics", "typing",
    "dataclasses", "numpy", "__future__", "replay.controllers", "replay.controllers.base",
    "replay.controllers.builtin",
})
FORBIDDEN_NAMES = frozenset({
    "eval", "exec", "compile", "open", "__import__", "input", "breakpoint", "globals", "locals", "vars", "getattr",
    "setattr", "delattr", "exit", "quit", "help", "memoryview", "__builtins__", "__loader__", "__spec__",
})
ALLOWED_DUNDERS = frozenset({"__init__", "__name__", "__doc__"})
CONTROLLER_BASES = {"Controller": "decide", "ScriptedController": "script"}


@dataclass(frozen=True)
class CheckReport:
    ok: bool
    problems: tuple[str, ...]  # one line each, naming the line of the program
    class_name: str | None  # the controller class, when exactly one was found
    imports: tuple[str, ...] = ()
    chars: int = 0
    lines: int = 0
    controller_name: str | None = None  # the class's `name` attribute, when a plain string
    classes: tuple[str, ...] = field(default=())

    def to_json(self) -> dict:
        return {"ok": self.ok, "problems": list(self.problems), "class": self.class_name,
                "imports": list(self.imports), "chars": self.chars, "lines": self.lines}


def _module_name(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        if node.level:
            return ["." * node.level + (node.module or "")]
        return [node.module or ""]
    return []


def _allowed(module: str) -> bool:
    """An allowed module or a submodule of an allowed top-level one (numpy.random, collections.abc)."""
    return module in ALLOWED_IMPORTS or module.split(".")[0] in ALLOWED_IMPORTS


def _base_name(b: ast.expr) -> str | None:
    if isinstance(b, ast.Name):
        return b.id
    if isinstance(b, ast.Attribute):
        return b.attr
    return None


def check_program(source: str, *, max_chars: int = MAX_CHARS) -> CheckReport:
    """The static checks above, on one program's text."""
    problems: list[str] = []
    chars, lines = len(source), source.count("\n") + 1
    if not source.strip():
        return CheckReport(False, ("the program is empty (no Python code found in the answer)",), None, chars=chars,
                           lines=lines)
    if chars > max_chars:
        problems.append(f"the program has {chars:,} characters, over the limit of {max_chars:,}: make it shorter")
        return CheckReport(False, tuple(problems), None, chars=chars, lines=lines)
    try:
        tree = ast.parse(source, filename="program.py")
    except SyntaxError as e:
        return CheckReport(False, (f"line {e.lineno}: SyntaxError: {e.msg}",), None, chars=chars, lines=lines)
    except (ValueError, RecursionError) as e:
        return CheckReport(False, (f"does not parse: {type(e).__name__}: {e}",), None, chars=chars, lines=lines)

    imports: list[str] = []
    for node in tree.body:
        ok_top = isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef,
                                   ast.Assign, ast.AnnAssign)) or \
            (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str))
        if not ok_top:
            problems.append(f"line {node.lineno}: a top-level {type(node).__name__} statement: only imports, "
                            "definitions, assignments and a docstring may stand at the top level")
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for m in _module_name(node):
                imports.append(m)
                if not _allowed(m):
                    problems.append(f"line {node.lineno}: import of {m!r} is not allowed (allowed: "
                                    f"{', '.join(sorted(ALLOWED_IMPORTS - {'__future__'}))})")
        elif isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
            problems.append(f"line {node.lineno}: the name {node.id!r} is not allowed in a controller program")
        elif isinstance(node, ast.Attribute) and node.attr.startswith("__") and node.attr.endswith("__") \
                and node.attr not in ALLOWED_DUNDERS:
            problems.append(f"line {node.lineno}: the attribute {node.attr!r} is not allowed in a controller program")
        elif isinstance(node, ast.Global):
            problems.append(f"line {node.lineno}: 'global' is not allowed: keep state on self")

    classes = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    ctrl = [c for c in classes if any(_base_name(b) in CONTROLLER_BASES for b in c.bases)]
    class_name = controller_name = None
    if not ctrl:
        problems.append("no controller class: define one class deriving from ScriptedController (with a script(self, "
                        "ep) generator) or Controller (with decide(self, ep))"
                        + (f"; found {', '.join(c.name for c in classes)}" if classes else ""))
    elif len(ctrl) > 1:
        problems.append(f"{len(ctrl)} controller classes ({', '.join(c.name for c in ctrl)}): define exactly one")
    else:
        c = ctrl[0]
        class_name = c.name
        kind = next(_base_name(b) for b in c.bases if _base_name(b) in CONTROLLER_BASES)
        need = CONTROLLER_BASES[kind]
        methods = {n.name: n for n in c.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        if need not in methods:
            problems.append(f"line {c.lineno}: class {c.name} derives from {kind} but defines no {need}(self, ep)")
        if "beta_params" not in methods:
            problems.append(f"line {c.lineno}: class {c.name} defines no beta_params(cls, beta) (the knob beta in "
                            "[0, 1] -> its parameters)")
        else:
            bp = methods["beta_params"]
            if not any(isinstance(d, ast.Name) and d.id in ("classmethod", "staticmethod") for d in bp.decorator_list):
                problems.append(f"line {bp.lineno}: beta_params must be a @classmethod")
        for n in c.body:
            if isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "name" for t in n.targets) \
                    and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str):
                controller_name = n.value.value
    return CheckReport(ok=not problems, problems=tuple(dict.fromkeys(problems)), class_name=class_name,
                       imports=tuple(dict.fromkeys(imports)), chars=chars, lines=lines,
                       controller_name=controller_name, classes=tuple(c.name for c in classes))
