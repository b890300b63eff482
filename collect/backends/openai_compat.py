"""A backend for any OpenAI-compatible chat-completions server (hosted APIs, `vllm serve`).

One request per prompt with `n` choices (the server prefills the prompt once, as vLLM's prefix
cache does), sent concurrently through the official client's async API (`openai.AsyncOpenAI`),
at most `max_concurrency` in flight (an asyncio semaphore). Retries with exponential backoff on
rate limits, server errors and dropped connections are the client's (`max_retries`).
`generate` is an ordinary blocking call: it runs its own event loop (in a helper thread when the
caller already runs one, as in a notebook).

Token counts come from the server. The chat API reports `usage` per request: prompt tokens
(the prompt, once) and the completion tokens of all n choices together. To get each sample's
own count, we ask for `logprobs`: one entry per generated token. A server that refuses
logprobs is asked again without them, and then, if it returned several choices, the usage
total is apportioned over the choices by their text length (marked `apportioned` on the
sample, counted in the store's provenance).
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

from . import BackendError, Messages, Sample, per_prompt_seeds


def apportion(total: int, weights: Sequence[int]) -> list[int]:
    """Split an integer total over parts in proportion to weights (largest remainder)."""
    w = [max(int(x), 1) for x in weights]
    s = sum(w)
    raw = [total * x / s for x in w]
    out = [int(r) for r in raw]
    for i in sorted(range(len(w)), key=lambda i: out[i] - raw[i])[: total - sum(out)]:
        out[i] += 1
    return out


class OpenAIBackend:
    exclusive = False  # a remote server: several may stay open at once

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None,
                 max_concurrency: int = 8, max_retries: int = 6, timeout: float = 600.0,
                 max_n_per_request: int = 128):
        import openai

        self.model = model
        self.base_url = base_url
        self.max_concurrency = max(1, int(max_concurrency))
        self.max_n = max(1, int(max_n_per_request))
        self._openai = openai
        # A local server (vllm serve) needs no key, but the client insists on one.
        self._client_kw = dict(base_url=base_url, api_key=api_key or "EMPTY", max_retries=max_retries,
                               timeout=timeout)
        self._logprobs = True

    def close(self) -> None:
        """Nothing held between calls: each `generate` opens and closes its own client."""

    def generate(self, prompts: Sequence[Messages], n: int, temperature: float, max_tokens: int,
                 seed: int | Sequence[int] | None = None) -> list[list[Sample]]:
        seeds = per_prompt_seeds(seed, len(prompts))
        coro = self._generate(list(prompts), n, temperature, max_tokens, seeds)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coro)
        with ThreadPoolExecutor(max_workers=1) as pool:  # called from inside an event loop
            return pool.submit(asyncio.run, coro).result()

    async def _generate(self, prompts, n, temperature, max_tokens, seeds) -> list[list[Sample]]:
        # one client per call: an async client's connections belong to the loop that made them
        async with self._openai.AsyncOpenAI(**self._client_kw) as client:
            gate = asyncio.Semaphore(self.max_concurrency)

            async def one(messages, seed):
                async with gate:
                    return await self._one(client, messages, n, temperature, max_tokens, seed)

            return list(await asyncio.gather(*(one(m, s) for m, s in zip(prompts, seeds))))

    async def _request(self, client, messages: Messages, n: int, temperature: float, max_tokens: int,
                       seed: int | None):
        kw = dict(model=self.model, messages=messages, n=n, temperature=temperature, max_tokens=max_tokens)
        if seed is not None:
            kw["seed"] = int(seed)
        if self._logprobs:
            try:
                return await client.chat.completions.create(logprobs=True, **kw)
            except self._openai.BadRequestError as e:
                if "logprob" not in str(e).lower():
                    raise
                self._logprobs = False  # this server will not give per-token counts: stop asking
        return await client.chat.completions.create(**kw)

    async def _one(self, client, messages: Messages, n: int, temperature: float, max_tokens: int,
                   seed: int | None) -> list[Sample]:
        where = f"model {self.model!r} at {self.base_url or 'the OpenAI API'}"
        out: list[Sample] = []
        rounds = 0
        # A server may cap n or return fewer choices than asked: ask again for the rest, with a
        # different seed (the same seed would repeat the same samples).
        while len(out) < n:
            want = min(n - len(out), self.max_n)
            s = None if seed is None else int(seed) + rounds
            t0 = time.perf_counter()  # the request's wall time: what graph latency is measured from
            try:
                resp = await self._request(client, messages, want, temperature, max_tokens, s)
            except self._openai.APIError as e:
                raise BackendError(where, f"request failed: {type(e).__name__}: {e}") from None
            choices = sorted(resp.choices or [], key=lambda c: c.index)
            if not choices:
                raise BackendError(where, "the server returned no choices")
            usage = resp.usage
            if usage is None:
                raise BackendError(where, "the server reported no token usage")
            counts = []
            for c in choices:
                lp = getattr(c, "logprobs", None)
                content = getattr(lp, "content", None) if lp is not None else None
                counts.append(len(content) if content is not None else None)
            how = "exact"
            if any(x is None for x in counts):
                if len(choices) == 1:
                    counts = [int(usage.completion_tokens)]
                else:
                    counts = apportion(int(usage.completion_tokens), [len(c.message.content or "") for c in choices])
                    how = "apportioned"
            took = time.perf_counter() - t0
            for c, k in zip(choices, counts):
                out.append(Sample(text=c.message.content or "", prompt_tokens=int(usage.prompt_tokens),
                                  completion_tokens=int(k), finish_reason=c.finish_reason, token_count=how,
                                  seconds=took))
            rounds += 1
            if rounds > 4 * n:
                raise BackendError(where, f"asked for {n} choices, the server keeps returning fewer")
        return out[:n]
