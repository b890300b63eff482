"""The tasks `collect run` knows. A new task: a module with a `Task` subclass, one line below."""

from __future__ import annotations

from replay.errors import InputError

from .base import Record, StageSpec, Task
from .math import MathTask
from .qa import QATask
from .aime import AIMETask
from .kgqa import CWQTask, WebQSPTask
from .multihop import HotpotQATask, TwoWikiTask
from .taskbench import TaskBenchTask
from .chatdev import ChatDevTask
from .numseq import NumSeqTask
from .humaneval import HumanEvalTask
from .mmlu import MMLUTask

TASKS: dict[str, type[Task]] = {t.name: t for t in (MathTask, QATask, TwoWikiTask, HotpotQATask, CWQTask, WebQSPTask,
                                                    AIMETask, TaskBenchTask, ChatDevTask, NumSeqTask, MMLUTask,
                                                    HumanEvalTask)}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise InputError("--task", f"unknown task {name!r} (known: {', '.join(sorted(TASKS))})")
    return TASKS[name]()


__all__ = ["TASKS", "Task", "Record", "StageSpec", "get_task"]
