"""The tasks `collect run` knows. A new task: a module with a `Task` subclass, one line below."""

from __future__ import annotations

from replay.errors import InputError

from .base import Record, StageSpec, Task
from .math import MathTask
from .qa import QATask

TASKS: dict[str, type[Task]] = {t.name: t for t in (MathTask, QATask)}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise InputError("--task", f"unknown task {name!r} (known: {', '.join(sorted(TASKS))})")
    return TASKS[name]()


__all__ = ["TASKS", "Task", "Record", "StageSpec", "get_task"]
