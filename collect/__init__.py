"""Collect: build stores of sampled outputs (vLLM, OpenAI-compatible servers), import other
formats, and simulate synthetic stores. Everything is written through `replay.write_store`."""
