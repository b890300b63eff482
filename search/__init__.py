"""Search: AgentTTS and baseline searchers run against the replay."""
