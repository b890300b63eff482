"""A backend on vLLM's offline engine (`vllm.LLM`), imported only when used (extra `gpu`).

Prefix caching is on: the S samples of a pool share one prefill, which is also how the store
charges them (the prompt once, each completion on its own). Prompts are rendered with the
model's own chat template and passed as token ids, so that the template's special tokens are
not added twice. One `generate` call per batch of pools, one `SamplingParams(n=S, seed=...)` per
pool; token counts are read off vLLM's outputs (prompt token ids, each completion's token ids).
"""

from __future__ import annotations

import gc
import sys
from typing import Any, Sequence

from . import BackendError, Messages, Sample, per_prompt_seeds


def samples_from_request_outputs(outputs: Sequence[Any]) -> list[list[Sample]]:
    """vLLM RequestOutputs (in prompt order) -> per prompt its samples, by completion index."""
    result = []
    for ro in outputs:
        p = len(ro.prompt_token_ids)
        comps = sorted(ro.outputs, key=lambda o: o.index)
        result.append([Sample(text=o.text, prompt_tokens=p, completion_tokens=len(o.token_ids),
                              finish_reason=o.finish_reason) for o in comps])
    return result


def vllm_device() -> str | None:
    """The device the installed vLLM build runs on in this process ('cuda', 'cpu', 'rocm', ...),
    or None when vLLM is not importable here (a Ray driver need not have it)."""
    try:
        from vllm.platforms import current_platform
    except ImportError:
        return None
    return str(current_platform.device_type or "") or None


class VLLMBackend:
    exclusive = True  # holds the GPU: closed before the next model loads

    def __init__(self, model: str, tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.9,
                 max_model_len: int | None = None, dtype: str = "auto", seed: int = 0, **engine_kwargs):
        try:
            import vllm
        except ImportError as e:
            raise BackendError("--backend vllm", f"vLLM is not importable ({e}); install the gpu extra: "
                               "pip install 'tts-replay[gpu]', or use --backend openai with a server") from None
        self.model = model
        self._vllm = vllm
        kw = dict(model=model, enable_prefix_caching=True, tensor_parallel_size=tensor_parallel_size,
                  gpu_memory_utilization=gpu_memory_utilization, dtype=dtype, seed=seed)
        if max_model_len is not None:
            kw["max_model_len"] = max_model_len
        kw.update(engine_kwargs)
        try:
            self.llm = vllm.LLM(**kw)
        except Exception as e:  # noqa: BLE001 - engine start failures have many types; report one line
            raise BackendError(f"model {model!r}", f"vLLM could not load it: {type(e).__name__}: {e}") from None
        self.tokenizer = self.llm.get_tokenizer()

    def render(self, messages: Messages) -> list[int]:
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def generate(self, prompts: Sequence[Messages], n: int, temperature: float, max_tokens: int,
                 seed: int | Sequence[int] | None = None) -> list[list[Sample]]:
        seeds = per_prompt_seeds(seed, len(prompts))
        params = [self._vllm.SamplingParams(n=n, temperature=temperature, max_tokens=max_tokens, seed=s)
                  for s in seeds]
        try:
            inputs = [{"prompt_token_ids": self.render(m)} for m in prompts]
            outs = self.llm.generate(inputs, params, use_tqdm=False)
        except Exception as e:  # noqa: BLE001 - an engine failure (out of memory, a dead worker, ...)
            raise BackendError(f"model {self.model!r}", f"vLLM generation failed: {type(e).__name__}: {e}") from None
        result = samples_from_request_outputs(outs)
        for r in result:
            if len(r) != n:
                raise BackendError(f"model {self.model!r}", f"vLLM returned {len(r)} samples for n={n}")
        return result

    def close(self) -> None:
        """Free the engine (and its GPU memory) before the next model loads."""
        self.llm = None
        gc.collect()
        torch = sys.modules.get("torch")  # loaded by the engine, if it ever started
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()
