"""Serving models over HTTP: an OpenAI-compatible chat-completions server for local models
(`guardray.llm.openai_server`). Importing this package imports nothing heavy."""
