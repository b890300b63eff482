"""A backend for any OpenAI-compatible server (hosted APIs, `vllm serve`, llama.cpp's server).

Two prompt styles: `chat` (chat completions with the task's messages: instruct models) and
`completion` (plain /v1/completions with the task's few-shot text and stop strings: base
models, which answer a chat request with nothing useful).

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
sample, counted in the store's provenance). A server that returns one choice however many are
asked for (llama.cpp's) is not asked for logprobs again after its first answer: each request's
usage is then that sample's own count.

A response that is not the API's (an HTTP 200 carrying an HTML page, a body cut short, no
`choices`, no `usage`) is an endpoint failure, not an answer: it is retried with backoff like
the client's own transient failures, then reported as one `BackendError` line (exit 3). Every
request is bounded by `timeout` seconds (and retried `max_retries` times by the client), so a
dead or stalled endpoint costs at most about timeout x (max_retries + 1) per request. Error
lines never show the credentials a base URL may carry (`replay/redact.py`).
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

from . import PROMPT_STYLES, BackendError, CompletionPrompt, Prompt, Sample, per_prompt_seeds
from replay.redact import redact_url, scrub


def apportion(total: int, weights: Sequence[int]) -> list[int]:
    """Split an integer total over parts in proportion to weights (largest remainder)."""
    w = [max(int(x), 1) for x in weights]
    s = sum(w)
    raw = [total * x / s for x in w]
    out = [int(r) for r in raw]
    for i in sorted(range(len(w)), key=lambda i: out[i] - raw[i])[: total - sum(out)]:
        out[i] += 1
    return out


class _Malformed(Exception):
    """A response that is not the API's: retried, then a BackendError."""


def _snippet(text: str, limit: int = 60) -> str:
    one = " ".join(str(text).split())
    return repr(one[:limit] + ("..." if len(one) > limit else ""))


class OpenAIBackend:
    exclusive = False  # a remote server: several may stay open at once
    retry_delay_s = 0.5  # first wait before re-asking after a malformed response (doubles, at most 8 s)

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None,
                 max_concurrency: int = 8, max_retries: int = 6, timeout: float = 600.0,
                 max_n_per_request: int = 128, prompt_style: str = "chat"):
        import openai

        if prompt_style not in PROMPT_STYLES:
            raise ValueError(f"prompt_style must be one of {PROMPT_STYLES}, got {prompt_style!r}")
        self.model = model
        self.base_url = base_url
        self.shown_url = redact_url(base_url)  # what messages show: no credentials
        self.prompt_style = prompt_style
        self.max_concurrency = max(1, int(max_concurrency))
        self.max_retries = max(0, int(max_retries))
        self.max_n = max(1, int(max_n_per_request))
        self._openai = openai
        # A local server (vllm serve) needs no key, but the client insists on one.
        self._client_kw = dict(base_url=base_url, api_key=api_key or "EMPTY", max_retries=max_retries,
                               timeout=timeout)
        self._logprobs = True

    def close(self) -> None:
        """Nothing held between calls: each `generate` opens and closes its own client."""

    def generate(self, prompts: Sequence[Prompt], n: int, temperature: float, max_tokens: int,
                 seed: int | Sequence[int] | None = None) -> list[list[Sample]]:
        seeds = per_prompt_seeds(seed, len(prompts))
        for p in prompts:  # a mismatch is a programming error: say which, before any request
            if (self.prompt_style == "completion") != isinstance(p, CompletionPrompt):
                raise TypeError(f"a {self.prompt_style}-style backend got a {type(p).__name__} prompt")
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

            async def one(prompt, seed):
                async with gate:
                    return await self._one(client, prompt, n, temperature, max_tokens, seed)

            return list(await asyncio.gather(*(one(m, s) for m, s in zip(prompts, seeds))))

    async def _request(self, client, prompt: Prompt, n: int, temperature: float, max_tokens: int,
                       seed: int | None):
        kw = dict(model=self.model, n=n, temperature=temperature, max_tokens=max_tokens)
        if seed is not None:
            kw["seed"] = int(seed)
        if self.prompt_style == "completion":
            kw["prompt"] = prompt.text
            if prompt.stop:
                kw["stop"] = list(prompt.stop)
            create = client.completions.create
        else:
            kw["messages"] = prompt
            create = client.chat.completions.create
        if self._logprobs and n > 1:  # one choice: the usage is its exact count, no logprobs needed
            try:
                # chat: logprobs=True; completions: logprobs=N (0: the sampled tokens only)
                return await create(logprobs=True if self.prompt_style == "chat" else 0, **kw)
            except self._openai.BadRequestError as e:
                if "logprob" not in str(e).lower():
                    raise
                self._logprobs = False  # this server will not give per-token counts: stop asking
        return await create(**kw)

    def _read(self, resp) -> tuple[list[tuple[str, str | None, int | None]], int, int]:
        """(text, finish reason, own token count or None) per choice, prompt and completion tokens."""
        if isinstance(resp, (str, bytes)):
            raise _Malformed(f"a response that is not the API's JSON (body starts {_snippet(resp)})")
        try:
            choices = resp.choices
            out = []
            for c in sorted(choices or [], key=lambda c: c.index):
                if self.prompt_style == "completion":
                    text = c.text
                    lp = getattr(c, "logprobs", None)
                    toks = getattr(lp, "tokens", None) if lp is not None else None
                else:
                    text = c.message.content
                    lp = getattr(c, "logprobs", None)
                    toks = getattr(lp, "content", None) if lp is not None else None
                if text is not None and not isinstance(text, str):
                    raise TypeError("text")
                out.append((text or "", c.finish_reason, len(toks) if isinstance(toks, list) else None))
            usage = resp.usage
            pt = None if usage is None else int(usage.prompt_tokens)
            ct = None if usage is None else int(usage.completion_tokens)
        except (AttributeError, TypeError, ValueError, KeyError):
            raise _Malformed("a response that is not the API's (no readable choices)") from None
        if not out:
            raise _Malformed("a response with no choices")
        if pt is None or ct is None:
            raise _Malformed("a response with no token usage")
        return out, pt, ct

    async def _call(self, client, prompt: Prompt, n: int, temperature: float, max_tokens: int, seed: int | None,
                    where: str):
        """One request; a response that is not the API's is asked again, with backoff. Returns
        (choices, prompt tokens, completion tokens, the wall time of the attempt that answered:
        what graph latency is measured from, without the backoff of attempts before it)."""
        attempt = 0
        while True:
            t0 = time.perf_counter()
            try:
                return (*self._read(await self._request(client, prompt, n, temperature, max_tokens, seed)),
                        time.perf_counter() - t0)
            except self._openai.APIError as e:  # the client has already retried what it retries
                raise BackendError(where, scrub(f"request failed: {type(e).__name__}: {e}", self.base_url)
                                   .replace("\n", " ")) from None
            except _Malformed as e:
                problem = str(e)
            except ValueError as e:  # json.JSONDecodeError: a body cut short or not JSON at all
                problem = f"a response body that is not valid JSON ({type(e).__name__})"
            if attempt >= self.max_retries:
                raise BackendError(where, scrub(f"{problem}; gave up after {attempt + 1} tries", self.base_url))
            await asyncio.sleep(min(self.retry_delay_s * 2 ** attempt, 8.0))
            attempt += 1

    async def _one(self, client, prompt: Prompt, n: int, temperature: float, max_tokens: int,
                   seed: int | None) -> list[Sample]:
        where = f"model {self.model!r} at {self.shown_url or 'the OpenAI API'}"
        out: list[Sample] = []
        rounds = 0
        # A server may cap n or return fewer choices than asked (llama.cpp's always returns one):
        # ask again for the rest, with a different seed (the same seed would repeat the samples).
        while len(out) < n:
            want = min(n - len(out), self.max_n)
            s = None if seed is None else int(seed) + rounds
            choices, prompt_tokens, completion_tokens, took = await self._call(client, prompt, want, temperature,
                                                                               max_tokens, s, where)
            if want > 1 and len(choices) == 1 and self._logprobs:
                # a server that answers one choice per request (llama.cpp's) reports each sample's
                # usage exactly; and asking it for logprobs makes it compute the logits of every
                # prompt token (about 5x the work per request, measured): stop asking
                self._logprobs = False
            counts = [k for _, _, k in choices]
            how = "exact"
            if any(x is None for x in counts):
                if len(choices) == 1:
                    counts = [completion_tokens]
                else:
                    counts = apportion(completion_tokens, [len(t) for t, _, _ in choices])
                    how = "apportioned"
            for (text, finish, _), k in zip(choices, counts):
                out.append(Sample(text=text, prompt_tokens=prompt_tokens, completion_tokens=int(k),
                                  finish_reason=finish, token_count=how, seconds=took))
            rounds += 1
            if rounds > 4 * n:
                raise BackendError(where, f"asked for {n} choices, the server keeps returning fewer")
        return out[:n]
