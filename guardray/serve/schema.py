"""The HTTP JSON API of the served guard: request and response models, limits, errors (pure).

No Ray, FastAPI or torch here: the deployment (`guardray.serve.deployment`) parses a request
body with `ClassifyRequest`, checks it with `plan_request` and builds the answer with
`build_response`; tests call these directly.

Request (``POST /v1/classify``)::

    {"prompts": ["...", ...], "policies": ["finance", ...]}     # or "prompt": "..."

``policies`` is optional: the served policies are used. Every prompt is judged under every
policy. Response::

    {"model": {"name", "version", "input_format"}, "threshold": 0.42, "flagged": true,
     "results": [{"prompt_index": 0, "policy_id": "finance", "label": "unsafe",
                  "unsafe": true, "probability": 0.93, "threshold": 0.42,
                  "truncated": false, "batch_size": 3}, ...]}

``results`` is ordered by prompt, then policy. A result's ``threshold`` is its policy's own
when the checkpoint stores one per policy (a UniGuard searched with per-policy thresholds),
else the model's ``threshold``. ``batch_size`` is the number of (prompt,
policy) pairs in the forward pass that scored this one (dynamic batching groups pairs of
concurrent requests). Errors are ``{"error": {"code", "message", "status"}}`` with a 4xx
status (`RequestError`, `ERROR_STATUS`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field

# error code -> HTTP status
ERROR_STATUS = {
    "malformed_json": 400,
    "invalid_request": 422,
    "empty_request": 422,
    "unknown_policy": 422,
    "prompt_too_long": 413,
    "too_many_prompts": 413,
    "too_many_policies": 413,
}


class RequestError(Exception):
    """A request the guard refuses; becomes a 4xx JSON error.

    Attributes:
        code: a key of `ERROR_STATUS`.
        message: one line naming the bad value and the limit or valid values.
    """

    def __init__(self, code: str, message: str):
        if code not in ERROR_STATUS:
            raise ValueError(f"unknown error code {code!r}; valid: {sorted(ERROR_STATUS)}")
        super().__init__(message)
        self.code, self.message = code, message

    @property
    def status(self) -> int:
        return ERROR_STATUS[self.code]

    def to_dict(self) -> dict:
        return {"error": {"code": self.code, "message": self.message, "status": self.status}}


@dataclasses.dataclass(frozen=True)
class Limits:
    """Request limits (from `guardray.serve.config.LimitsConfig`)."""

    max_prompt_chars: int = 20_000
    max_prompts: int = 64
    max_policies: int = 16


class ClassifyRequest(BaseModel):
    """Body of ``POST /v1/classify``: one prompt or a list, optional policies."""

    model_config = ConfigDict(extra="forbid")

    prompt: str | None = Field(default=None, description="one prompt (or use 'prompts')")
    prompts: list[str] | None = Field(default=None, description="prompts to classify")
    policies: list[str] | None = Field(
        default=None, description="policy ids to judge under (default: the served policies)")


class ModelInfo(BaseModel):
    name: str
    version: str
    input_format: str


class PairResult(BaseModel):
    prompt_index: int
    policy_id: str | None
    label: str = Field(description="'safe' or 'unsafe'")
    unsafe: bool
    probability: float = Field(description="P(unsafe)")
    threshold: float
    truncated: bool = Field(description="the input exceeded the model's token limit")
    batch_size: int = Field(description="pairs in the forward pass that scored this one")


class ClassifyResponse(BaseModel):
    model: ModelInfo
    threshold: float
    flagged: bool = Field(description="any result is unsafe")
    results: list[PairResult]


class ErrorBody(BaseModel):
    code: str
    message: str
    status: int


class ErrorResponse(BaseModel):
    error: ErrorBody


@dataclasses.dataclass(frozen=True)
class Pair:
    """One (prompt, policy) pair to score: ``policy_id`` None for a policy-less text guard."""

    prompt_index: int
    text: str
    policy_id: str | None


def plan_request(req: ClassifyRequest, limits: Limits, served: Sequence[str]) -> list[Pair]:
    """Check a parsed request against the limits and policies; the pairs to score.

    Args:
        req: the parsed body.
        limits: the limits.
        served: the served policy ids (empty: the guard takes no policy; requests may name
            none).

    Returns:
        (n_prompts * n_policies) pairs, by prompt then policy.

    Raises:
        RequestError: both or neither of prompt/prompts, an empty list, too many prompts
            or policies, a prompt too long, an unknown policy.
    """
    if req.prompt is not None and req.prompts is not None:
        raise RequestError("invalid_request", "give 'prompt' or 'prompts', not both")
    prompts = [req.prompt] if req.prompt is not None else req.prompts
    if prompts is None:
        raise RequestError("invalid_request", "no prompts: give 'prompt' (a string) or "
                           "'prompts' (a list of strings)")
    if not prompts:
        raise RequestError("empty_request", "'prompts' is empty: give at least one prompt")
    if len(prompts) > limits.max_prompts:
        raise RequestError("too_many_prompts", f"{len(prompts)} prompts; at most "
                           f"{limits.max_prompts} per request")
    for i, text in enumerate(prompts):
        if len(text) > limits.max_prompt_chars:
            raise RequestError("prompt_too_long", f"prompt {i} has {len(text)} characters; at "
                               f"most {limits.max_prompt_chars}")
    policies = _policies(req.policies, limits, served)
    return [Pair(i, text, pid) for i, text in enumerate(prompts) for pid in policies]


def _policies(asked: list[str] | None, limits: Limits, served: Sequence[str]
              ) -> list[str | None]:
    if asked is None:
        return list(served) or [None]
    if not asked:
        raise RequestError("empty_request", "'policies' is empty: leave it out to use the "
                           f"served policies ({list(served)})")
    if len(asked) > limits.max_policies:
        raise RequestError("too_many_policies", f"{len(asked)} policies; at most "
                           f"{limits.max_policies} per request")
    unknown = [p for p in asked if p not in served]
    if unknown:
        valid = ", ".join(served) if served else "none (this guard takes no policy)"
        raise RequestError("unknown_policy", f"unknown policy {unknown[0]!r}; served "
                           f"policies: {valid}")
    return list(dict.fromkeys(asked))


def build_response(pairs: Sequence[Pair], scores: Sequence[tuple[float, bool, int]], *,
                   threshold: float, model: ModelInfo,
                   policy_thresholds: Mapping[str, float] | None = None) -> ClassifyResponse:
    """The answer for ``pairs`` given each pair's ``(probability, truncated, batch_size)``;
    a pair is judged at its policy's threshold in ``policy_thresholds``, else ``threshold``."""
    if len(pairs) != len(scores):
        raise ValueError(f"{len(scores)} scores for {len(pairs)} pairs")
    per = policy_thresholds or {}
    results = []
    for pair, (prob, truncated, batch_size) in zip(pairs, scores):
        cut = float(per.get(pair.policy_id or "", threshold))
        unsafe = bool(prob >= cut)
        results.append(PairResult(
            prompt_index=pair.prompt_index, policy_id=pair.policy_id,
            label="unsafe" if unsafe else "safe", unsafe=unsafe, probability=float(prob),
            threshold=cut, truncated=bool(truncated), batch_size=int(batch_size)))
    return ClassifyResponse(model=model, threshold=threshold,
                            flagged=any(r.unsafe for r in results), results=results)


def validation_error(errors: Sequence[dict]) -> RequestError:
    """A `RequestError` from FastAPI/pydantic validation errors of a request body.

    Malformed JSON (``json_invalid``) is ``malformed_json`` (400); anything else (wrong
    types, unknown fields) is ``invalid_request`` (422) naming the first bad field.
    """
    for err in errors:
        if err.get("type") == "json_invalid":
            ctx = err.get("ctx") or {}
            return RequestError("malformed_json", "request body is not valid JSON: "
                                f"{ctx.get('error') or err.get('msg', '')}".strip())
    if not errors:
        return RequestError("invalid_request", "invalid request body")
    first = errors[0]
    loc = ".".join(str(x) for x in first.get("loc", ()) if x != "body") or "body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return RequestError("invalid_request", f"{loc}: {first.get('msg', 'invalid')}{more}; "
                        "expected {\"prompts\": [string, ...], \"policies\": [string, ...]}")
