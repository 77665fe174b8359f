"""The Ray Serve deployment of a guard: a FastAPI ingress with dynamic batching.

Routes (under the application's route prefix):

- ``POST /v1/classify``: classify prompts under policies (`guardray.serve.schema`).
- ``GET /healthz``: ``{"status": "ok", "model": {...}, "policies": [...]}`` once the model is
  loaded (Serve's own proxy health is ``/-/healthz``).
- ``GET /v1/policies``: the served policies and the threshold.
- ``GET /v1/stats``: this replica's batching counters (batches, pairs, largest batch, a
  histogram of batch sizes).
- ``GET /openapi.json`` and ``GET /docs``: the OpenAPI schema (FastAPI).

Every (prompt, policy) pair of a request is one item of ``@serve.batch``: pairs of concurrent
requests share forward passes. The batch size and wait come from the deployment's
``user_config`` (``reconfigure``), so ``serve deploy`` with a new config changes them without
restarting replicas. The forward pass runs in a worker thread so the replica keeps accepting
requests (and filling the next batch) meanwhile. A bad request is answered with a 4xx JSON
error; nothing a client sends raises out of a handler, so malformed JSON never takes a replica
down.
"""

# No ``from __future__ import annotations``: FastAPI reads the route signatures' types at
# runtime (a string annotation turned the JSON body into a query parameter).
import asyncio
import collections
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray import serve

from guardray.serve.guard import GuardInfo, GuardScorer
from guardray.serve.schema import (
    ClassifyRequest,
    ClassifyResponse,
    ErrorResponse,
    Limits,
    ModelInfo,
    RequestError,
    build_response,
    plan_request,
    validation_error,
)

log = logging.getLogger(__name__)

api = FastAPI(
    title="guardray guard",
    description="Guardrail classifier (TaskGuard / MultiTaskGuard / UniGuard) served by "
                "guardray on Ray Serve.",
    version="1",
)

_ERRORS = {s: {"model": ErrorResponse} for s in (400, 413, 422)}


@api.exception_handler(RequestValidationError)
async def _invalid_body(request: Request, exc: RequestValidationError) -> JSONResponse:
    err = validation_error(exc.errors())
    return JSONResponse(err.to_dict(), status_code=err.status)


@api.exception_handler(RequestError)
async def _refused(request: Request, exc: RequestError) -> JSONResponse:
    return JSONResponse(exc.to_dict(), status_code=exc.status)


@serve.deployment(name="GuardDeployment")
@serve.ingress(api)
class GuardDeployment:
    """One replica: the guard loaded once, answering the routes of the module docstring.

    Args:
        info: the resolved guard (`guardray.serve.guard.resolve_guard`).
        limits: request limits.
    """

    def __init__(self, info: GuardInfo, limits: Limits):
        self.info = info
        self.limits = limits
        self.scorer = GuardScorer(info)
        self.model = ModelInfo(name=info.name, version=info.version,
                               input_format=info.input_format)
        self.batch_sizes: collections.Counter[int] = collections.Counter()
        self.batching = {"max_batch_size": 1, "batch_wait_timeout_s": 0.0}
        log.info("guard %s (%s) loaded: policies %s, threshold %.4f", info.name, info.version,
                 list(info.policy_ids), info.threshold)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Apply ``{"max_batch_size", "batch_wait_timeout_s"}`` (the batching section)."""
        size = int(user_config.get("max_batch_size", 1))
        wait = float(user_config.get("batch_wait_timeout_s", 0.0))
        self._score_batch.set_max_batch_size(size)
        self._score_batch.set_batch_wait_timeout_s(wait)
        self.batching = {"max_batch_size": size, "batch_wait_timeout_s": wait}

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def _score_batch(self, pairs: list[tuple[str, str | None]]
                           ) -> list[tuple[float, bool, int]]:
        """Score a batch of (text, policy) pairs: (n,) -> (probability, truncated, n)."""
        n = len(pairs)
        self.batch_sizes[n] += 1
        texts = [t for t, _ in pairs]
        policies = [p or "" for _, p in pairs]
        probs, truncated = await asyncio.to_thread(self.scorer.score, texts, policies)
        return [(float(p), bool(t), n) for p, t in zip(probs, truncated)]

    @api.post("/v1/classify", response_model=ClassifyResponse, responses=_ERRORS)
    async def classify(self, body: ClassifyRequest) -> ClassifyResponse:
        """Classify every prompt under every requested (default: served) policy."""
        pairs = plan_request(body, self.limits, self.info.policy_ids)
        scores = await asyncio.gather(*(self._score_batch((p.text, p.policy_id))
                                        for p in pairs))
        return build_response(pairs, scores, threshold=self.info.threshold, model=self.model,
                              policy_thresholds=self.info.policy_thresholds)

    @api.get("/healthz")
    async def healthz(self) -> dict[str, Any]:
        """Ready: the model is loaded."""
        return {"status": "ok", "model": self.model.model_dump(),
                "policies": list(self.info.policy_ids)}

    @api.get("/v1/policies")
    async def policies(self) -> dict[str, Any]:
        """The served policies and the decision threshold."""
        return {"policies": list(self.info.policy_ids), "threshold": self.info.threshold,
                "policy_thresholds": dict(self.info.policy_thresholds),
                "threshold_source": self.info.threshold_source,
                "input_format": self.info.input_format, "limits": vars(self.limits)}

    @api.get("/v1/stats")
    async def stats(self) -> dict[str, Any]:
        """This replica's batching counters."""
        hist = dict(sorted(self.batch_sizes.items()))
        return {"batches": sum(hist.values()), "pairs": sum(k * v for k, v in hist.items()),
                "max_batch_size_seen": max(hist, default=0),
                "batch_size_histogram": {str(k): v for k, v in hist.items()},
                "batching": self.batching}


def build_application(cfg, info: GuardInfo | None = None):
    """The Serve application of a `guardray.serve.config.ServeConfig` (not yet running).

    Args:
        cfg: the serve config.
        info: the resolved guard (default: `guardray.serve.guard.resolve_guard` here, in the
            caller's process: the model is checked before anything is deployed).

    Returns:
        A ``serve.Application`` for ``serve.run`` (or returned by an app builder).
    """
    from guardray.serve.guard import resolve_guard

    d = cfg.deployment
    info = info or resolve_guard(cfg.model, num_cpus=d.num_cpus)
    options: dict[str, Any] = {
        "ray_actor_options": {"num_cpus": d.num_cpus, "num_gpus": d.num_gpus},
        "max_ongoing_requests": d.max_ongoing_requests,
        "user_config": cfg.batching.model_dump(),
    }
    if d.autoscaling is not None:
        options["autoscaling_config"] = d.autoscaling.model_dump()
        options["num_replicas"] = "auto"
    else:
        options["num_replicas"] = d.num_replicas
    limits = Limits(**cfg.limits.model_dump())
    return GuardDeployment.options(**options).bind(info, limits)
