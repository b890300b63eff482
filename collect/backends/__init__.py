"""Backends: something that draws n sampled completions per prompt from one model.

    backend.generate(prompts, n, temperature, max_tokens, seed) -> list[list[Sample]]

`prompts` is a list of chat conversations ([{"role": ..., "content": ...}, ...]), or, for a
backend in completion mode (`--prompt-style completion`: base models, plain /v1/completions),
a list of `CompletionPrompt`s (the task's few-shot text and its stop strings); the result
has, per prompt in order, exactly `n` samples, each with its text and the real token counts
the model saw: `prompt_tokens` (the prompt, prefilled once per pool) and `completion_tokens`
(this sample's own decode). `seed` is an int (the same for every prompt), one int per prompt,
or None; the runner passes one seed per pool so that a resumed run draws the same samples.

Two implementations: `VLLMBackend` (the offline `vllm.LLM` engine; the `gpu` extra) and
`OpenAIBackend` (any OpenAI-compatible chat-completions server: hosted APIs or `vllm serve`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence, Union, runtime_checkable

from replay.errors import BackendError

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class CompletionPrompt:
    """A plain-text prompt for a base model (few-shot, defined by the task) and where to stop."""

    text: str
    stop: tuple[str, ...] = ()


Prompt = Union[Messages, CompletionPrompt]
PROMPT_STYLES = ("chat", "completion")


@dataclass(frozen=True)
class Sample:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None = None  # "stop", "length" (cut at max_tokens), ...
    token_count: str = "exact"  # "exact", or "apportioned" when the server gave only a total
    seconds: float | None = None  # wall time of the request that returned it (None: not timed)


@runtime_checkable
class Backend(Protocol):
    model: str

    def generate(self, prompts: Sequence[Prompt], n: int, temperature: float, max_tokens: int,
                 seed: int | Sequence[int] | None = None) -> list[list[Sample]]: ...

    def close(self) -> None: ...


def per_prompt_seeds(seed: int | Sequence[int] | None, n_prompts: int) -> list[int | None]:
    if seed is None or isinstance(seed, int):
        return [seed] * n_prompts
    seeds = list(seed)
    if len(seeds) != n_prompts:
        raise ValueError(f"{len(seeds)} seeds for {n_prompts} prompts")
    return seeds


def vllm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


__all__ = ["Sample", "Backend", "BackendError", "Messages", "CompletionPrompt", "Prompt", "PROMPT_STYLES", "per_prompt_seeds", "vllm_available"]
