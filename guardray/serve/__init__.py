"""Serving models over HTTP: an OpenAI-compatible chat-completions server for local models
(`guardray.serve.openai_compat`). Importing this package imports nothing heavy."""
