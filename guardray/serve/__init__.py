"""The ``serve`` stage (planned): guard classifiers behind a Ray Serve HTTP endpoint.

Nothing is here yet. The OpenAI-compatible chat server for local *generator* LLMs, which tests
and benchmarks use as an ``openai_http`` endpoint, is `guardray.llm.openai_server`.
"""
