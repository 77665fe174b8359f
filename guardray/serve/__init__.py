"""The ``serve`` stage: a trained guard on unlabelled traffic, in batch and online.

Modules:
    config: ``ClassifyConfig`` (job ``classify``) and ``ServeConfig`` (job ``serve``), sharing
        ``GuardModelConfig`` (the checkpoint, policies, threshold, input settings).
    guard: `resolve_guard` (the checkpoint's card -> input format, policies, threshold, name,
        version; driver side) and `GuardScorer` (loads the model once, scores (text, policy)
        pairs, flags truncated inputs). Inputs are built as `guardray.evaluate` builds them.
    schema: the HTTP JSON API (request/response models, limits, 4xx errors); pure.
    batch: `run_classify`, batch classification of JSONL/CSV/Parquet on Ray Data.
    deployment: the Ray Serve deployment (FastAPI ingress, ``@serve.batch``) and
        `build_application`.
    app: `build_app`, the app builder for ``serve run guardray.serve.app:build_app`` and Serve
        config files.
    run: `start_serving`, deploy and expose the guard over HTTP (``guardray serve``).

The client for the HTTP API is `guardray.client` (standard library only). The
OpenAI-compatible chat server for local *generator* LLMs, which tests and benchmarks use as an
``openai_http`` endpoint, is `guardray.llm.openai_server`. Importing this package imports
nothing heavy (no Ray, torch or FastAPI).
"""

from guardray._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "ClassifyConfig": "config",
    "ServeConfig": "config",
    "GuardModelConfig": "config",
    "GuardInfo": "guard",
    "GuardScorer": "guard",
    "resolve_guard": "guard",
    "weights_version": "guard",
    "ClassifyRequest": "schema",
    "ClassifyResponse": "schema",
    "Limits": "schema",
    "RequestError": "schema",
    "plan_request": "schema",
    "run_classify": "batch",
    "expand_pairs": "batch",
    "build_application": "deployment",
    "build_app": "app",
    "config_from_args": "app",
    "start_serving": "run",
    "stop_serving": "run",
})
