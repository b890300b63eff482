"""Which prompt a model gets: the task's chat messages or its few-shot completion text.

`collect run --prompt-style` picks, per model, `chat` (instruct models, chat completions) or
`completion` (base models, plain completions with the task's few-shot prompt). The runner and
the live pipeline (`collect live-check`) build every prompt through `stage_prompt`.
"""

from __future__ import annotations

from replay.errors import InputError

from .backends import PROMPT_STYLES
from .tasks.base import Record, Task


def parse_prompt_styles(text: str | None, model_names: list[str]) -> dict[str, str]:
    """'chat', 'completion', or 'NAME=STYLE,...' (unnamed models: chat) -> {model name: style}."""
    t = (text or "chat").strip()
    if t in PROMPT_STYLES:
        return {m: t for m in model_names}
    out = {m: "chat" for m in model_names}
    for part in [p.strip() for p in t.split(",") if p.strip()]:
        if "=" not in part:
            raise InputError("--prompt-style", f"{part!r} is neither a style ({', '.join(PROMPT_STYLES)}) "
                                               "nor MODEL=STYLE")
        name, style = (x.strip() for x in part.split("=", 1))
        if name not in out:
            raise InputError("--prompt-style", f"{name!r} is not one of the models ({', '.join(model_names)})")
        if style not in PROMPT_STYLES:
            raise InputError("--prompt-style", f"unknown style {style!r} for {name!r} ({', '.join(PROMPT_STYLES)})")
        out[name] = style
    return out


def check_prompt_styles(task: Task, styles: dict[str, str], backend: str, *, graph: bool = False) -> None:
    """Refuse, before anything is drawn, a completion style the task or backend cannot serve
    (graph collection's refine and aggregate prompts are chat messages only)."""
    if "completion" not in styles.values():
        return
    if graph:
        raise InputError("--prompt-style", "--graph collects with chat prompts only (the refine and aggregate "
                                           "role prompts are chat messages); use --prompt-style chat")
    if not task.has_completion_prompt():
        raise InputError("--prompt-style", f"task {task.name!r} defines no few-shot completion prompt "
                                           "(use --prompt-style chat)")
    if any(st.aggregation == "llm_fuse" for st in task.stages):
        raise InputError("--prompt-style", f"task {task.name!r} has llm_fuse stages, whose fusion prompts are chat only")
    if backend != "openai":
        raise InputError("--prompt-style", "completion prompts need --backend openai (a server's /v1/completions)")


def stage_prompt(task: Task, style: str, stage: str, record: Record, upstream: str):
    if style == "completion":
        return task.completion_prompt(stage, record, upstream)
    return task.prompt(stage, record, upstream)
