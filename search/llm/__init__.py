"""The LLM plumbing shared by the LLM searchers (agenttts, agenthpo, mlcopilot).

- client.py: settings (--llm-base-url / OPENAI_BASE_URL, --llm-model, OPENAI_API_KEY, and the
  bounds --llm-max-tokens, --llm-timeout, --llm-structured), one chat call through the official
  `openai` client with our own bounded exponential backoff;
- answer.py: the strict JSON answer, its JSON schema (for structured outputs), parsed and
  validated on receipt;
- prompts.py: every prompt text;
- agent.py: the base searcher: answer feedback and retries, counters, fills, archive extras.
"""

from .client import LLMClient, LLMContextOverflow, LLMError, LLMRejected, LLMSettings, LLMUnavailable

__all__ = ["LLMClient", "LLMContextOverflow", "LLMError", "LLMRejected", "LLMSettings", "LLMUnavailable"]
