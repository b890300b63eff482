"""One chat call to any OpenAI-compatible endpoint, bounded, with our own exponential backoff.

The official `openai` client does the HTTP; its own retries are switched off (max_retries=0)
so that the policy is ours, counted, and testable in milliseconds:

- a connection error, a timeout, HTTP 408/409/429 or any 5xx is retried after
  backoff_s * 2**k seconds (capped at backoff_max_s), up to `retries` more times;
- so is a response that is not the API's (an HTTP 200 carrying an HTML page, a JSON body cut
  short, no `choices` or an empty list of them): that is the endpoint failing (a proxy, a
  crashed worker), not a model answer to fill around;
- a prompt over the model's context (HTTP 400 "maximum context length", llama.cpp's and
  vLLM's wording too) is `LLMContextOverflow`: the consult loop shortens the conversation;
- any other HTTP error (400 bad request, 401/403 key, 404 unknown model or wrong URL) is the
  user's configuration, so it is raised at once as `LLMRejected`; a 400 that names a request
  parameter the model does not support (reasoning models reject `temperature`, some
  `max_tokens`) says which option to change;
- if every attempt fails, `LLMUnavailable` is raised. All are one-line `LLMError`s (exit code
  3): the `search` command prints them and exits with status 3; the runner's archive already
  holds every finished trial, and `--resume` continues.

Every call is bounded: `max_tokens` (a finite default; 0: not sent, for models that refuse it),
`timeout_s` per attempt, and an answer longer than `max_answer_chars` is cut (`Reply.cut` says
how long it was): an endpoint that ignores the token cap cannot grow the archive or the next
prompt without bound. `temperature` is sent only when set (reasoning models reject one).

Structured outputs (`structured`): the answer's JSON schema goes with the request as a
`response_format`, so that the server's schema-constrained decoding (vLLM, llama.cpp, OpenAI)
makes even a small model write answers that parse:

    json-schema         {"type": "json_schema", "json_schema": {"name", "schema", "strict"}}  OpenAI, vLLM, llama-server
    json-object-schema  {"type": "json_object", "schema": ...}         llama-cpp-python's server, llama-server
    json-object         {"type": "json_object"}                        JSON mode, no schema
    off                 no response_format
    auto (default)      json-schema; an endpoint that refuses it (an error that names the response
                        format or the schema) gets json-object-schema, then off. The mode that
                        worked is kept for the rest of the search and reported (`structured`).

Credentials a base URL may carry (`http://user:key@host/v1`) never appear in what this module
says: messages show `replay.redact.redact_url(base_url)` and scrub the secrets from echoed errors.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from replay.errors import ConfigError, LLMError
from replay.redact import redact_url, scrub

RETRYABLE_STATUS = {408, 409, 429}
STRUCTURED_MODES = ("auto", "json-schema", "json-object-schema", "json-object", "off")
AUTO_ORDER = ("json-schema", "json-object-schema", "off")  # what `auto` tries, in order
DEFAULT_MAX_TOKENS = 2048  # completion tokens per answer: a JSON answer needs a few hundred
DEFAULT_TIMEOUT_S = 120.0
CHARS_PER_TOKEN_LIMIT = 10  # default answer size limit: this many characters per allowed token

# an error that names the structured-output request: the endpoint does not take that format
_FORMAT_WORDS = re.compile(r"response_format|json_schema|json schema|grammar|guided|structured", re.I)
# a prompt over the context: OpenAI / vLLM / llama-cpp-python ("maximum context length",
# code context_length_exceeded), llama.cpp's llama-server ("exceeds the available context size")
_OVERFLOW_WORDS = re.compile(r"context[ _]length|maximum context|context (size|window)|exceed_context|"
                             r"maximum model length|prompt is too long|too many tokens", re.I)

# A bound on concurrent requests shared by several searches (`search sweep --llm-concurrency`):
# an object with acquire() and release(), e.g. a multiprocessing Manager's BoundedSemaphore.
# Held for the HTTP request only (not during backoff sleeps); the wait for it is not LLM time.
_request_slots = None


def set_request_slots(slots) -> None:
    """Share `slots` (acquire/release) among every LLMClient of this process; None: no bound."""
    global _request_slots
    _request_slots = slots


class LLMUnavailable(LLMError):
    """The endpoint stayed down (timeouts, connection errors, 5xx, responses that are not the
    API's) through every retry."""


class LLMRejected(LLMError):
    """The endpoint refused the request (bad key, unknown model, bad URL): retrying won't help."""


class LLMContextOverflow(LLMRejected):
    """The conversation is longer than the model's context: shorten it (search/llm/agent.py)."""


# options named on the command line differently from their Python names
FLAGS = {"llm_timeout_s": "--llm-timeout"}


def flag(key: str) -> str:
    return FLAGS.get(key, f"--{key.replace('_', '-')}")


@dataclass(frozen=True)
class LLMSettings:
    base_url: str | None  # None: the openai client's default (api.openai.com)
    model: str
    api_key: str
    timeout_s: float = DEFAULT_TIMEOUT_S  # per attempt
    retries: int = 4  # extra attempts after the first
    backoff_s: float = 1.0
    backoff_max_s: float = 30.0
    temperature: float | None = None  # None: not sent (the endpoint's default; reasoning models reject one)
    max_tokens: int | None = DEFAULT_MAX_TOKENS  # None: not sent (--llm-max-tokens 0)
    structured: str = "auto"  # STRUCTURED_MODES
    max_answer_chars: int = DEFAULT_MAX_TOKENS * CHARS_PER_TOKEN_LIMIT

    @property
    def endpoint(self) -> str:
        """The endpoint as every message and file shows it: credentials masked."""
        return redact_url(self.base_url or "https://api.openai.com/v1")

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
                if kind is int and isinstance(value, float) and not value.is_integer():
                    raise ValueError
                value = kind(value)
            except (TypeError, ValueError):
                raise ConfigError(flag(key), f"{value!r} is not a{'n integer' if kind is int else ' number'}") from None
            if value < lo:
                raise ConfigError(flag(key), f"must be at least {lo}, got {value}")
            return value

        structured = options.get("llm_structured")
        if structured is None:  # the older switch: JSON mode without a schema
            structured = "json-object" if options.get("llm_json_mode") else "auto"
        structured = str(structured).strip().lower().replace("_", "-")
        if structured not in STRUCTURED_MODES:
            raise ConfigError("--llm-structured", f"{options.get('llm_structured')!r} is not one of {', '.join(STRUCTURED_MODES)}")
        max_tokens = number("llm_max_tokens", DEFAULT_MAX_TOKENS, 0, int)  # 0: not sent
        return cls(
            base_url=str(base_url).rstrip("/") if base_url else None,
            model=str(model),
            # vLLM without --api-key accepts anything, but the client insists on a non-empty key
            api_key=str(api_key) if api_key else "EMPTY",
            timeout_s=number("llm_timeout_s", DEFAULT_TIMEOUT_S, 0.001),
            retries=number("llm_retries", 4, 0, int),
            backoff_s=number("llm_backoff_s", 1.0, 0.0),
            backoff_max_s=number("llm_backoff_max_s", 30.0, 0.0),
            temperature=None if options.get("llm_temperature") is None else number("llm_temperature", 0.0, 0.0),
            max_tokens=max_tokens or None,
            structured=structured,
            max_answer_chars=number("llm_max_answer_chars", (max_tokens or DEFAULT_MAX_TOKENS) * CHARS_PER_TOKEN_LIMIT, 1, int),
        )


@dataclass(frozen=True)
class Reply:
    text: str  # at most settings.max_answer_chars characters
    usage: dict[str, int]  # prompt_tokens, completion_tokens, total_tokens (0 when not reported)
    wall_s: float  # including failed attempts and backoff sleeps
    attempts: int
    failures: tuple[str, ...] = field(default=())  # one line per failed attempt
    cut: int = 0  # the answer's length in characters when it was over the limit (then cut), else 0
    finish_reason: str | None = None  # "length": the answer hit max_tokens
    structured: str = "off"  # the response format the answer was decoded under


class LLMClient:
    """Chat completions with the policy above. `sleep` is injectable for tests."""

    def __init__(self, settings: LLMSettings, sleep: Callable[[float], None] = time.sleep):
        import openai  # imported here: the non-LLM searchers never pay for it

        self.settings = settings
        self._openai = openai
        self._sleep = sleep
        self._client = openai.OpenAI(
            base_url=settings.base_url, api_key=settings.api_key, timeout=settings.timeout_s, max_retries=0
        )
        # the response format in use: auto starts with the first of AUTO_ORDER
        self.structured = AUTO_ORDER[0] if settings.structured == "auto" else settings.structured
        self.structured_notes: list[str] = []  # why auto moved on, one line each

    def _say(self, text: str) -> str:
        return scrub(text, self.settings.base_url)

    def _response_format(self, schema: dict | None) -> dict | None:
        mode = self.structured
        if schema is None or mode == "off":
            return None  # an answer that is not JSON (a program) gets no response format
        if mode == "json-object":
            return {"type": "json_object"}
        if mode == "json-schema":
            return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}
        return {"type": "json_object", "schema": schema}  # json-object-schema

    def chat(self, messages: list[dict[str, str]], on_failure: Callable[[str], None] | None = None, *,
             schema: dict | None = None) -> Reply:
        """One answer to `messages`; `schema`: the answer's JSON schema (sent as the response
        format of `structured`). Raises LLMContextOverflow, LLMRejected, LLMUnavailable."""
        s = self.settings
        failures: list[str] = []
        t0 = time.perf_counter()
        waited = 0.0
        attempt = 0
        while True:
            kwargs: dict[str, Any] = {"model": s.model, "messages": messages}
            if s.temperature is not None:
                kwargs["temperature"] = s.temperature
            if s.max_tokens is not None:
                kwargs["max_tokens"] = s.max_tokens
            fmt = self._response_format(schema)
            if fmt is not None:
                kwargs["response_format"] = fmt
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
                line = self._say(f"HTTP {e.status_code}: {_short(e)}")
                if fmt is not None and _FORMAT_WORDS.search(str(e)) and e.status_code in (400, 422, 500, 501):
                    if self._next_format(line):
                        continue  # at once, with the next response format: not an attempt
                    raise LLMRejected(s.endpoint, f"model {s.model!r}: the endpoint refused structured output "
                                      f"--llm-structured {self.structured} ({line}); pass --llm-structured auto "
                                      "(tries the formats in turn) or off") from None
                if e.status_code in (400, 413) and _OVERFLOW_WORDS.search(str(e)):
                    raise LLMContextOverflow(s.endpoint, f"model {s.model!r}: the conversation is over the model's "
                                             f"context ({line})") from None
                if e.status_code not in RETRYABLE_STATUS and e.status_code < 500:
                    fix = unsupported_fix(e, kwargs) if e.status_code == 400 else ""
                    raise LLMRejected(s.endpoint, f"model {s.model!r}: request refused ({line}){fix}") from None
            except self._openai.APIConnectionError as e:  # includes APITimeoutError
                line = self._say(f"{type(e).__name__}: {_short(e)}")
            except (json.JSONDecodeError, UnicodeDecodeError, self._openai.APIResponseValidationError) as e:
                line = self._say(f"not an API response (a body that is not valid JSON: {type(e).__name__}: {_short(e, 80)})")
            else:
                problem = _not_api_response(resp)
                if problem is None:
                    text, cut = _content(resp), 0
                    if len(text) > s.max_answer_chars:
                        text, cut = text[: s.max_answer_chars], len(text)
                    return Reply(
                        text=text,
                        usage=_usage(resp),
                        wall_s=time.perf_counter() - t0 - waited,
                        attempts=attempt + 1,
                        failures=tuple(failures),
                        cut=cut,
                        finish_reason=_finish_reason(resp),
                        structured=self.structured if fmt is not None else "off",
                    )
                line = self._say(f"not an API response ({problem})")
            failures.append(line)
            if on_failure is not None:
                on_failure(line)
            if attempt >= s.retries:
                break
            self._sleep(min(s.backoff_max_s, s.backoff_s * 2.0**attempt))
            attempt += 1
        raise LLMUnavailable(
            s.endpoint,
            f"model {s.model!r}: no answer after {s.retries + 1} attempts in {time.perf_counter() - t0:.1f}s "
            f"(last error: {failures[-1]}); the archive keeps every finished trial, rerun with --resume",
        )

    def _next_format(self, line: str) -> bool:
        """auto: move to the next response format after a refusal; False when not auto or none left."""
        if self.settings.structured != "auto":
            return False
        k = AUTO_ORDER.index(self.structured) if self.structured in AUTO_ORDER else len(AUTO_ORDER)
        if k + 1 >= len(AUTO_ORDER):
            return False
        nxt = AUTO_ORDER[k + 1]
        self.structured_notes.append(f"{self.structured} refused ({line[:160]}); using {nxt}")
        self.structured = nxt
        return True


# request parameters the user sets, and how: a 400 naming one says what to leave out
PARAMETER_OPTIONS = {
    "temperature": "leave out --llm-temperature (llm_temperature) and the request goes without it",
    "max_tokens": "pass --llm-max-tokens 0 (llm_max_tokens=0) and the request goes without it",
    "response_format": "pass --llm-structured off (llm_structured) and the request goes without it",
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
            return f"; fix: the model does not accept {param!r}: {option}"
    return ""


def _short(e: Exception, limit: int = 200) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _snippet(text: str, limit: int = 60) -> str:
    one = " ".join(str(text).split())
    return repr(one[:limit] + ("..." if len(one) > limit else ""))


def _not_api_response(resp) -> str | None:
    """Why `resp` is not a chat completion (None: it is one)."""
    if isinstance(resp, (str, bytes)):
        text = resp.decode(errors="replace") if isinstance(resp, bytes) else resp
        kind = "an HTML page" if "<html" in text[:2000].lower() or "<!doctype" in text[:200].lower() else "a text body"
        return f"{kind}: {_snippet(text)}"
    choices = getattr(resp, "choices", None)
    if not isinstance(choices, list):
        return f"no 'choices' in a {type(resp).__name__}"
    if not choices:
        return "an empty 'choices' list"
    if getattr(choices[0], "message", None) is None:
        return "a choice without a message"
    return None


def _content(resp) -> str:
    content = resp.choices[0].message.content
    return content if isinstance(content, str) else ""


def _finish_reason(resp) -> str | None:
    r = getattr(resp.choices[0], "finish_reason", None)
    return r if isinstance(r, str) else None


def _usage(resp) -> dict[str, int]:
    u = getattr(resp, "usage", None)
    out = {}
    for k in ("prompt_tokens", "completion_tokens", "total_tokens"):
        v = getattr(u, k, None) if u is not None else None
        out[k] = int(v) if isinstance(v, (int, float)) else 0
    return out
