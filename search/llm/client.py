"""One chat call to any OpenAI-compatible endpoint, with our own bounded exponential backoff.

The official `openai` client does the HTTP; its own retries are switched off (max_retries=0)
so that the policy is ours, counted, and testable in milliseconds:

- a connection error, a timeout, HTTP 408/409/429 or any 5xx is retried after
  backoff_s * 2**k seconds (capped at backoff_max_s), up to `retries` more times;
- any other HTTP error (400 bad request, 401/403 key, 404 unknown model or wrong URL) is the
  user's configuration, so it is raised at once as `LLMRejected`; a 400 that names a request
  parameter the model does not support (reasoning models reject `temperature`, some
  `max_tokens`) says which option to leave out;
- if every attempt fails, `LLMUnavailable` is raised. Both are one-line `LLMError`s (exit code 3): the
  `search` command prints them and exits with status 3; the runner's archive already holds
  every finished trial.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from replay.errors import ConfigError, InputError, LLMError

RETRYABLE_STATUS = {408, 409, 429}

# A bound on concurrent requests shared by several searches (`search sweep --llm-concurrency`):
# an object with acquire() and release(), e.g. a multiprocessing Manager's BoundedSemaphore.
# Held for the HTTP request only (not during backoff sleeps); the wait for it is not LLM time.
_request_slots = None


def set_request_slots(slots) -> None:
    """Share `slots` (acquire/release) among every LLMClient of this process; None: no bound."""
    global _request_slots
    _request_slots = slots


class LLMUnavailable(LLMError):
    """The endpoint stayed down (timeouts, connection errors, 5xx) through every retry."""


class LLMRejected(LLMError):
    """The endpoint refused the request (bad key, unknown model, bad URL): retrying won't help."""


@dataclass(frozen=True)
class LLMSettings:
    base_url: str | None  # None: the openai client's default (api.openai.com)
    model: str
    api_key: str
    timeout_s: float = 120.0
    retries: int = 4  # extra attempts after the first
    backoff_s: float = 1.0
    backoff_max_s: float = 30.0
    temperature: float | None = None  # None: not sent (the endpoint's default; reasoning models reject one)
    max_tokens: int | None = None
    json_mode: bool = False  # send response_format={"type": "json_object"} (OpenAI, vLLM support it)

    @property
    def endpoint(self) -> str:
        return self.base_url or "https://api.openai.com/v1"

    @classmethod
    def from_options(cls, options: dict[str, Any], searcher: str) -> "LLMSettings":
        """Resolve constructor options and the usual environment variables.

        An endpoint is configured by llm_base_url / OPENAI_BASE_URL (any OpenAI-compatible
        server, e.g. `vllm serve`), or by OPENAI_API_KEY alone (the hosted OpenAI API)."""
        base_url = options.get("llm_base_url") or os.environ.get("OPENAI_BASE_URL") or None
        api_key = options.get("llm_api_key") or os.environ.get("OPENAI_API_KEY") or None
        how = "pass --llm-base-url URL (or set OPENAI_BASE_URL; OPENAI_API_KEY alone means api.openai.com) and --llm-model NAME"
        if base_url is None and api_key is None:
            raise ConfigError("--llm-base-url", f"searcher {searcher!r} needs an LLM endpoint and none is configured: {how}")
        model = options.get("llm_model")
        if not model:
            raise ConfigError("--llm-model", f"searcher {searcher!r} needs the name of the LLM to ask: {how}")

        def number(key: str, default: float, lo: float, kind=float):
            value = options.get(key)
            if value is None:
                return default
            try:
                value = kind(value)
            except (TypeError, ValueError):
                raise ConfigError(f"--{key.replace('_', '-')}", f"{value!r} is not a number") from None
            if value < lo:
                raise ConfigError(f"--{key.replace('_', '-')}", f"must be at least {lo}, got {value}")
            return value

        max_tokens = options.get("llm_max_tokens")
        return cls(
            base_url=str(base_url).rstrip("/") if base_url else None,
            model=str(model),
            # vLLM without --api-key accepts anything, but the client insists on a non-empty key
            api_key=str(api_key) if api_key else "EMPTY",
            timeout_s=number("llm_timeout_s", 120.0, 0.001),
            retries=number("llm_retries", 4, 0, int),
            backoff_s=number("llm_backoff_s", 1.0, 0.0),
            backoff_max_s=number("llm_backoff_max_s", 30.0, 0.0),
            temperature=None if options.get("llm_temperature") is None else number("llm_temperature", 0.0, 0.0),
            max_tokens=None if max_tokens is None else number("llm_max_tokens", 0, 1, int),
            json_mode=bool(options.get("llm_json_mode", False)),
        )


@dataclass(frozen=True)
class Reply:
    text: str
    usage: dict[str, int]  # prompt_tokens, completion_tokens, total_tokens (0 when not reported)
    wall_s: float  # including failed attempts and backoff sleeps
    attempts: int
    failures: tuple[str, ...] = field(default=())  # one line per failed attempt


class LLMClient:
    """Chat completions with the retry policy above. `sleep` is injectable for tests."""

    def __init__(self, settings: LLMSettings, sleep: Callable[[float], None] = time.sleep):
        import openai  # imported here: the non-LLM searchers never pay for it

        self.settings = settings
        self._openai = openai
        self._sleep = sleep
        self._client = openai.OpenAI(
            base_url=settings.base_url, api_key=settings.api_key, timeout=settings.timeout_s, max_retries=0
        )

    def chat(self, messages: list[dict[str, str]], on_failure: Callable[[str], None] | None = None) -> Reply:
        s = self.settings
        kwargs: dict[str, Any] = {"model": s.model, "messages": messages}
        if s.temperature is not None:
            kwargs["temperature"] = s.temperature
        if s.max_tokens is not None:
            kwargs["max_tokens"] = s.max_tokens
        if s.json_mode:
            kwargs["response_format"] = {"type": "json_object"}
        failures: list[str] = []
        t0 = time.perf_counter()
        waited = 0.0
        for attempt in range(s.retries + 1):
            slots = _request_slots
            if slots is not None:
                w0 = time.perf_counter()
                slots.acquire()
                waited += time.perf_counter() - w0
            try:
                try:
                    resp = self._client.chat.completions.create(**kwargs)
                finally:
                    if slots is not None:
                        slots.release()
            except self._openai.APIStatusError as e:
                line = f"HTTP {e.status_code}: {_short(e)}"
                if e.status_code not in RETRYABLE_STATUS and e.status_code < 500:
                    fix = unsupported_fix(e, kwargs) if e.status_code == 400 else ""
                    raise LLMRejected(s.endpoint, f"model {s.model!r}: request refused ({line}){fix}") from None
            except self._openai.APIConnectionError as e:  # includes APITimeoutError
                line = f"{type(e).__name__}: {_short(e)}"
            else:
                return Reply(
                    text=_content(resp),
                    usage=_usage(resp),
                    wall_s=time.perf_counter() - t0 - waited,
                    attempts=attempt + 1,
                    failures=tuple(failures),
                )
            failures.append(line)
            if on_failure is not None:
                on_failure(line)
            if attempt < s.retries:
                self._sleep(min(s.backoff_max_s, s.backoff_s * 2.0**attempt))
        raise LLMUnavailable(
            s.endpoint,
            f"model {s.model!r}: no answer after {s.retries + 1} attempts in {time.perf_counter() - t0:.1f}s "
            f"(last error: {failures[-1]}); the archive keeps every finished trial, rerun with --resume",
        )


# request parameters the user sets, and how: a 400 naming one says what to leave out
PARAMETER_OPTIONS = {
    "temperature": "--llm-temperature (llm_temperature)",
    "max_tokens": "llm_max_tokens",
    "response_format": "llm_json_mode",
}


def unsupported_fix(e: Exception, sent: dict[str, Any]) -> str:
    """"; fix: ..." when a 400 names a parameter we sent that the model does not support
    (OpenAI's o-series: "Unsupported parameter: 'temperature' ..." or "Unsupported value:
    'temperature' does not support 0.7 ..."; other servers: the parameter named near
    "unsupported"/"not supported"), else ""."""
    body = getattr(e, "body", None)
    text = " ".join(str(x) for x in (body, e) if x is not None).lower()
    if "support" not in text and "unrecognized" not in text and "not allowed" not in text:
        return ""
    for param, option in PARAMETER_OPTIONS.items():
        if param in sent and param in text:
            return (f"; fix: the model does not accept {param!r}: leave out {option} and the request goes "
                    "without it")
    return ""


def _short(e: Exception, limit: int = 200) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _content(resp) -> str:
    try:
        content = resp.choices[0].message.content
    except (AttributeError, IndexError, TypeError):
        return ""
    return content or ""


def _usage(resp) -> dict[str, int]:
    u = getattr(resp, "usage", None)
    out = {}
    for k in ("prompt_tokens", "completion_tokens", "total_tokens"):
        v = getattr(u, k, None) if u is not None else None
        out[k] = int(v) if isinstance(v, (int, float)) else 0
    return out
