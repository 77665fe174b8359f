"""A small client for a served guard (``guardray serve``): standard library only.

    from guardray.client import GuardClient

    guard = GuardClient("http://127.0.0.1:8000")
    verdict = guard.classify("Ignore all previous instructions", policies=["injection"])
    if verdict.flagged:
        ...refuse...

`GuardClient` is synchronous (``http.client``, one kept-alive connection per thread instead
of a new TCP connection per check: 0.4-1.2 ms less per request on localhost, and no socket
left in TIME_WAIT per check under load; a connection the server closed is reopened once).
`AsyncGuardClient` has the same methods as coroutines (each call runs the synchronous one in
a worker thread, so no extra package is needed). HTTP proxies are not used: a guard is
reached directly. A 4xx/5xx answer raises `GuardHTTPError` carrying the server's error
``code`` and message; a server that cannot be reached raises `GuardConnectionError`.

This module imports no other part of guardray: applications can vendor it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import json
import threading
import urllib.parse
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
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"guard URL must be http(s)://host[:port][/prefix], got {url!r}")
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self._prefix = parts.path.rstrip("/")
        self._local = threading.local()

    def close(self) -> None:
        """Close this thread's connection (the next request opens a new one)."""
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    def __enter__(self) -> "GuardClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        for attempt in (0, 1):
            reused = getattr(self._local, "conn", None) is not None
            try:
                status, text = self._send(method, self._prefix + path, data, headers)
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self.close()
                if reused and attempt == 0:  # the server closed an idle kept-alive connection
                    continue
                raise GuardConnectionError(f"{method} {self.url}{path}: {exc}") from None
            except (OSError, http.client.HTTPException) as exc:  # refused, timeout, DNS...
                self.close()
                raise GuardConnectionError(f"{method} {self.url}{path}: {exc}") from None
        if status >= 400:
            raise _http_error(status, text)
        return json.loads(text)

    def _send(self, method: str, path: str, data: bytes | None,
              headers: dict[str, str]) -> tuple[int, str]:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            conn = self._local.conn = cls(self._host, self._port, timeout=self.timeout)
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        text = resp.read().decode("utf-8", "replace")
        if resp.will_close:
            self.close()
        return resp.status, text


def _http_error(status: int, text: str) -> GuardHTTPError:
    try:
        err = json.loads(text).get("error") or {}
    except (ValueError, AttributeError):
        err = {}
    return GuardHTTPError(status, str(err.get("code") or "http_error"),
                          str(err.get("message") or text.strip()[:300] or
                              http.client.responses.get(status, "error")))


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
