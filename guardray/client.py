"""A small client for a served guard (``guardray serve``): standard library only.

    from guardray.client import GuardClient

    guard = GuardClient("http://127.0.0.1:8000")
    verdict = guard.classify("Ignore all previous instructions", policies=["injection"])
    if verdict.flagged:
        ...refuse...

`GuardClient` is synchronous (``urllib``); `AsyncGuardClient` has the same methods as
coroutines (each call runs the synchronous one in a worker thread, so no extra package is
needed). A 4xx/5xx answer raises `GuardHTTPError` carrying the server's error ``code`` and
message; a server that cannot be reached raises `GuardConnectionError`.

This module imports no other part of guardray: applications can vendor it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any


class GuardClientError(Exception):
    """Base of the client's errors."""


class GuardConnectionError(GuardClientError):
    """The server could not be reached (or did not answer in time)."""


class GuardHTTPError(GuardClientError):
    """The server answered with an error status.

    Attributes:
        status: the HTTP status (413, 422, ...).
        code: the server's error code (``prompt_too_long``, ``unknown_policy``, ...).
        message: the server's one-line message.
    """

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


@dataclasses.dataclass(frozen=True)
class Result:
    """The verdict on one (prompt, policy) pair."""

    prompt_index: int
    policy_id: str | None
    label: str
    unsafe: bool
    probability: float
    threshold: float
    truncated: bool
    batch_size: int


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The answer to one request.

    Attributes:
        flagged: any pair is unsafe.
        results: one per (prompt, policy), ordered by prompt then policy.
        model: ``{"name", "version", "input_format"}``.
        threshold: the decision threshold.
    """

    flagged: bool
    results: tuple[Result, ...]
    model: dict[str, Any]
    threshold: float

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Verdict":
        fields = {f.name for f in dataclasses.fields(Result)}
        results = tuple(Result(**{k: v for k, v in r.items() if k in fields})
                        for r in data["results"])
        return cls(bool(data["flagged"]), results, dict(data["model"]),
                   float(data["threshold"]))

    def for_prompt(self, index: int) -> tuple[Result, ...]:
        """The results of prompt ``index``."""
        return tuple(r for r in self.results if r.prompt_index == index)


class GuardClient:
    """Synchronous client of a served guard.

    Args:
        url: base URL of the application, e.g. ``http://127.0.0.1:8000``.
        timeout: seconds per request.
    """

    def __init__(self, url: str = "http://127.0.0.1:8000", timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def classify(self, prompts: str | Sequence[str],
                 policies: Sequence[str] | None = None) -> Verdict:
        """Classify one prompt (a string) or several under ``policies`` (default: all served).

        Raises:
            GuardHTTPError: the server refused the request (limits, unknown policy...).
            GuardConnectionError: no answer.
        """
        body: dict[str, Any] = ({"prompt": prompts} if isinstance(prompts, str)
                                else {"prompts": list(prompts)})
        if policies is not None:
            body["policies"] = list(policies)
        return Verdict.from_json(self.request("POST", "/v1/classify", body))

    def is_unsafe(self, prompt: str, policies: Sequence[str] | None = None) -> bool:
        """True when ``prompt`` is unsafe under any of ``policies``."""
        return self.classify(prompt, policies).flagged

    def health(self) -> dict[str, Any]:
        """``GET /healthz``: status, model, served policies."""
        return self.request("GET", "/healthz")

    def policies(self) -> dict[str, Any]:
        """``GET /v1/policies``: served policies, threshold, limits."""
        return self.request("GET", "/v1/policies")

    def stats(self) -> dict[str, Any]:
        """``GET /v1/stats``: batching counters of the replica that answers."""
        return self.request("GET", "/v1/stats")

    def request(self, method: str, path: str, body: Any = None,
                raw: bytes | None = None) -> Any:
        """One JSON request; the decoded JSON answer.

        Args:
            method, path: e.g. ``"POST", "/v1/classify"``.
            body: JSON-able body.
            raw: bytes sent as the body instead (tests send malformed JSON this way).
        """
        data = raw if raw is not None else (
            None if body is None else json.dumps(body).encode("utf-8"))
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json",
                                              "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            raise _http_error(exc) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise GuardConnectionError(f"{method} {self.url}{path}: {reason}") from None


def _http_error(exc: urllib.error.HTTPError) -> GuardHTTPError:
    text = exc.read().decode("utf-8", "replace")
    try:
        err = json.loads(text).get("error") or {}
    except (ValueError, AttributeError):
        err = {}
    return GuardHTTPError(exc.code, str(err.get("code") or "http_error"),
                          str(err.get("message") or text.strip()[:300] or exc.reason))


class AsyncGuardClient:
    """`GuardClient` with coroutine methods (each runs the synchronous call in a thread)."""

    def __init__(self, url: str = "http://127.0.0.1:8000", timeout: float = 30.0):
        self.sync = GuardClient(url, timeout)

    async def classify(self, prompts: str | Sequence[str],
                       policies: Sequence[str] | None = None) -> Verdict:
        return await asyncio.to_thread(self.sync.classify, prompts, policies)

    async def is_unsafe(self, prompt: str, policies: Sequence[str] | None = None) -> bool:
        return await asyncio.to_thread(self.sync.is_unsafe, prompt, policies)

    async def health(self) -> dict[str, Any]:
        return await asyncio.to_thread(self.sync.health)

    async def policies(self) -> dict[str, Any]:
        return await asyncio.to_thread(self.sync.policies)

    async def stats(self) -> dict[str, Any]:
        return await asyncio.to_thread(self.sync.stats)
