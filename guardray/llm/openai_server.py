"""A small OpenAI-compatible chat-completions server for a local Hugging Face model.

Endpoints (JSON in, JSON out, no streaming):

- ``POST /v1/chat/completions``: the OpenAI request body (``model``, ``messages``,
  ``max_tokens`` or ``max_completion_tokens``, ``temperature``, ``top_p``, ``seed``,
  ``stop``; ``n`` must be 1, ``stream`` false; other OpenAI fields are ignored). The answer is
  a ``chat.completion`` object with ``choices[0].message.content``, ``finish_reason``
  (``stop``/``length``) and ``usage``.
- ``GET /v1/models``: the one served model. ``GET /health``: ``{"status": "ok"}``.

Errors use the OpenAI shape ``{"error": {"message", "type", "param", "code"}}`` with status
400 (invalid JSON or fields, prompt too long), 401 (wrong or missing API key when one is
required), 404 (unknown path or model), 405 (wrong method), 411 (no Content-Length), 413
(body over ``max_body_bytes``), 415 (not JSON) and 500 (generation failed).

Concurrent requests are micro-batched: a worker thread takes up to ``max_batch_size``
waiting requests and generates them in one batched call; per-row seeded sampling
(`guardray.llm.hf`) keeps every answer independent of what it was batched with.

Start it in a background thread (tests, notebooks)::

    with OpenAICompatServer(HFChatGenerator("embedded:smollm2-135m-instruct"),
                            model_name="embedded:smollm2-135m-instruct") as server:
        print(server.chat_url)   # http://127.0.0.1:<free port>/v1/chat/completions

or as a process: ``python -m guardray.llm.openai_server --model embedded:smollm2-135m-instruct
--port 8000``. It binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import os
import queue
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

CHAT_PATH = "/v1/chat/completions"
DEFAULT_MAX_BODY_BYTES = 1 << 20
ROLE_ALIASES = {"system": "system", "developer": "system", "user": "user",
                "assistant": "assistant"}


class RequestError(Exception):
    """A request the server refuses; becomes an OpenAI-style error answer."""

    def __init__(self, status: int, message: str, *, param: str | None = None,
                 code: str | None = None, type: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = (
            status, message, param, code, type)

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param,
                          "code": self.code}}


@dataclass
class ChatRequest:
    """A validated chat-completions request."""

    messages: list[dict[str, str]]
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = field(default_factory=tuple)


def _number(body: dict, name: str, default: float, low: float, high: float,
            low_open: bool = False) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(400, f"{name} must be a number, got {value!r}", param=name)
    if value > high or value < low or (low_open and value == low):
        bound = f"({low}, {high}]" if low_open else f"[{low}, {high}]"
        raise RequestError(400, f"{name}={value} is out of range {bound}", param=name)
    return float(value)


def _content(value: Any, i: int) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # [{"type": "text", "text": ...}, ...]
        parts = []
        for part in value:
            if not (isinstance(part, dict) and part.get("type") == "text"
                    and isinstance(part.get("text"), str)):
                raise RequestError(400, f"messages[{i}].content: only text parts are supported",
                                   param=f"messages[{i}].content")
            parts.append(part["text"])
        return "".join(parts)
    raise RequestError(400, f"messages[{i}].content must be a string or a list of text parts",
                       param=f"messages[{i}].content")


def parse_chat_request(body: Any, *, model_name: str, max_tokens_limit: int = 4096,
                       default_max_tokens: int = 256) -> ChatRequest:
    """Validate a decoded JSON request body.

    Raises:
        RequestError: 400 for bad fields (naming the field and what is valid), 404 for a
            model other than ``model_name``.
    """
    if not isinstance(body, dict):
        raise RequestError(400, f"the request body must be a JSON object, got "
                                f"{type(body).__name__}")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError(400, "model is required (a string)", param="model")
    if model != model_name:
        raise RequestError(404, f"model {model!r} does not exist; this server serves "
                                f"{model_name!r}", param="model", code="model_not_found",
                           type="not_found_error")
    if body.get("stream"):
        raise RequestError(400, "stream=true is not supported: send stream=false",
                           param="stream")
    if body.get("n", 1) != 1:
        raise RequestError(400, f"n={body.get('n')!r} is not supported: only n=1",
                           param="n")
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise RequestError(400, "messages must be a non-empty list of {role, content} objects",
                           param="messages")
    messages = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise RequestError(400, f"messages[{i}] must be an object with role and content",
                               param=f"messages[{i}]")
        role = ROLE_ALIASES.get(m["role"]) if isinstance(m["role"], str) else None
        if role is None:
            raise RequestError(400, f"messages[{i}].role={m['role']!r} is not one of "
                                    f"{sorted(ROLE_ALIASES)}", param=f"messages[{i}].role")
        messages.append({"role": role, "content": _content(m["content"], i)})
    name = ("max_completion_tokens" if body.get("max_completion_tokens") is not None
            else "max_tokens")
    max_tokens = body.get(name)
    if max_tokens is None:
        max_tokens = min(default_max_tokens, max_tokens_limit)
    elif isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not (
            1 <= max_tokens <= max_tokens_limit):
        raise RequestError(400, f"{name}={max_tokens!r} must be an integer in "
                                f"[1, {max_tokens_limit}]", param=name)
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise RequestError(400, f"seed must be an integer or null, got {seed!r}", param="seed")
    stop = body.get("stop")
    stop = [stop] if isinstance(stop, str) else (stop or [])
    if not isinstance(stop, list) or len(stop) > 4 or not all(
            isinstance(s, str) and s for s in stop):
        raise RequestError(400, "stop must be a non-empty string or a list of up to 4",
                           param="stop")
    return ChatRequest(
        messages=messages, max_tokens=max_tokens,
        temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
        top_p=_number(body, "top_p", 1.0, 0.0, 1.0, low_open=True),
        seed=None if seed is None else seed % (2**63), stop=tuple(stop),
    )


class _Batcher:
    """One worker thread that generates waiting requests in batches."""

    def __init__(self, generator: Any, max_batch_size: int, wait_s: float):
        self.generator, self.max_batch_size, self.wait_s = generator, max_batch_size, wait_s
        self.queue: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._loop, name="openai-compat-batcher",
                                       daemon=True)
        self.thread.start()

    def submit(self, request: ChatRequest) -> Future:
        future: Future = Future()
        self.queue.put((request, future))
        return future

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join(timeout=30)

    def _take_batch(self) -> list | None:
        first = self.queue.get()
        if first is None:
            return None
        batch, deadline = [first], time.monotonic() + self.wait_s
        while len(batch) < self.max_batch_size:
            try:
                item = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is None:
                self.queue.put(None)  # stop after this batch
                break
            batch.append(item)
        return batch

    def _loop(self) -> None:
        from guardray.llm.hf import RowSampling

        while (batch := self._take_batch()) is not None:
            ready = []
            for request, future in batch:
                try:
                    self._check_length(request)
                    ready.append((request, future))
                except RequestError as exc:
                    future.set_exception(exc)
            if not ready:
                continue
            settings = [RowSampling(max_tokens=r.max_tokens, temperature=r.temperature,
                                    top_p=r.top_p, seed=r.seed, stop=r.stop) for r, _ in ready]
            try:
                results = self.generator.generate([r.messages for r, _ in ready], settings)
            except Exception as exc:  # noqa: BLE001 - every waiting client gets a 500
                log.exception("generation failed for a batch of %d", len(ready))
                for _, future in ready:
                    future.set_exception(RequestError(500, f"generation failed: {exc}",
                                                      type="server_error"))
                continue
            for (_, future), result in zip(ready, results):
                future.set_result(result)

    def _check_length(self, request: ChatRequest) -> None:
        limit = getattr(self.generator, "context_length", None)
        if not limit:
            return
        n = self.generator.count_tokens(request.messages)
        if n + request.max_tokens > limit:
            raise RequestError(400, f"the prompt has {n} tokens and max_tokens is "
                                    f"{request.max_tokens}: more than the model's context of "
                                    f"{limit}", param="messages", code="context_length_exceeded")


class OpenAICompatServer:
    """The server (see the module docstring), run in a background thread.

    Args:
        generator: an object with ``generate(conversations, settings)``, ``count_tokens``
            and ``context_length`` (`guardray.llm.hf.HFChatGenerator`).
        model_name: the name clients must send as ``model``.
        host: interface to bind (default loopback only).
        port: TCP port; 0 picks a free one (see `port` after `start`).
        api_key: if set, requests need ``Authorization: Bearer <api_key>``.
        max_body_bytes: larger request bodies get 413.
        max_batch_size: most requests generated together.
        batch_wait_s: how long the worker waits to fill a batch.
        max_tokens_limit: largest ``max_tokens`` accepted.
    """

    def __init__(self, generator: Any, model_name: str, *, host: str = "127.0.0.1",
                 port: int = 0, api_key: str | None = None,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, max_batch_size: int = 8,
                 batch_wait_s: float = 0.01, max_tokens_limit: int = 4096):
        self.generator, self.model_name, self.api_key = generator, model_name, api_key
        self.max_body_bytes, self.max_tokens_limit = max_body_bytes, max_tokens_limit
        self._batcher = _Batcher(generator, max_batch_size, batch_wait_s)
        self._httpd = ThreadingHTTPServer((host, port), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None
        self.created = int(time.time())

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        """``http://host:port/v1``."""
        host = self._httpd.server_address[0]
        return f"http://{host}:{self.port}/v1"

    @property
    def chat_url(self) -> str:
        """The chat-completions endpoint URL."""
        return f"{self.base_url}/chat/completions"

    def start(self) -> "OpenAICompatServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="openai-compat",
                                        daemon=True)
        self._thread.start()
        log.info("serving %s at %s", self.model_name, self.chat_url)
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._batcher.close()

    def __enter__(self) -> "OpenAICompatServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # request handling (called from handler threads)

    def check_auth(self, header: str | None) -> None:
        if self.api_key is None:
            return
        given = (header or "").removeprefix("Bearer ").strip()
        if not header or not hmac.compare_digest(given.encode(), self.api_key.encode()):
            raise RequestError(401, "invalid or missing API key: send Authorization: Bearer "
                                    "<key>", code="invalid_api_key", type="authentication_error")

    def complete(self, body: Any) -> dict[str, Any]:
        request = parse_chat_request(body, model_name=self.model_name,
                                     max_tokens_limit=self.max_tokens_limit)
        result = self._batcher.submit(request).result()
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model_name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": result.text},
                         "logprobs": None, "finish_reason": result.finish_reason}],
            "usage": {"prompt_tokens": result.prompt_tokens,
                      "completion_tokens": result.completion_tokens,
                      "total_tokens": result.prompt_tokens + result.completion_tokens},
        }

    def models(self) -> dict[str, Any]:
        return {"object": "list", "data": [{"id": self.model_name, "object": "model",
                                            "created": self.created, "owned_by": "guardray"}]}


def _make_handler(server: OpenAICompatServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "guardray-openai-compat"

        def log_message(self, fmt: str, *args: Any) -> None:
            log.debug("%s " + fmt, self.address_string(), *args)

        def _send(self, status: int, body: dict[str, Any], close: bool = False) -> None:
            data = json.dumps(body, ensure_ascii=False).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(data)

        def _error(self, exc: RequestError, close: bool = False) -> None:
            self._send(exc.status, exc.body(), close=close)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = self.path.split("?", 1)[0]
            if path == "/health":
                return self._send(200, {"status": "ok"})
            if path == "/v1/models":
                try:
                    server.check_auth(self.headers.get("Authorization"))
                except RequestError as exc:
                    return self._error(exc)
                return self._send(200, server.models())
            if path == CHAT_PATH:
                return self._error(RequestError(405, f"use POST for {CHAT_PATH}"))
            self._error(RequestError(404, f"no such path {path!r}", type="not_found_error"))

        def do_POST(self) -> None:  # noqa: N802
            path = self.path.split("?", 1)[0]
            if path != CHAT_PATH:
                status = 405 if path in ("/health", "/v1/models") else 404
                return self._error(RequestError(status, f"no POST endpoint {path!r}; use "
                                                        f"{CHAT_PATH}", type="not_found_error"),
                                   close=True)
            try:
                data = self._read_body()
                server.check_auth(self.headers.get("Authorization"))
                answer = server.complete(self._decode(data))
            except RequestError as exc:
                return self._error(exc, close=exc.status in (411, 413))
            self._send(200, answer)

        def _read_body(self) -> bytes:
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit():
                raise RequestError(411, "a Content-Length header is required")
            if int(length) > server.max_body_bytes:
                raise RequestError(413, f"request body of {length} bytes is over the limit of "
                                        f"{server.max_body_bytes} bytes")
            return self.rfile.read(int(length))

        def _decode(self, data: bytes) -> Any:
            ctype = (self.headers.get("Content-Type") or "application/json").split(";")[0]
            if ctype.strip().lower() != "application/json":
                raise RequestError(415, f"Content-Type {ctype!r} is not supported: send "
                                        "application/json")
            try:
                return json.loads(data)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise RequestError(400, f"the request body is not valid JSON: {exc}") from None

    return Handler


def main(argv: list[str] | None = None) -> None:
    """``python -m guardray.llm.openai_server --model M [--host H --port P]``."""
    from guardray.llm.hf import HFChatGenerator
    from guardray.logging_setup import setup_logging

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="embedded:smollm2-135m-instruct")
    p.add_argument("--served-name", help="name clients send as 'model' (default: --model)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--device", default="cpu")
    p.add_argument("--api-key-env", help="environment variable holding the required API key")
    p.add_argument("--max-batch-size", type=int, default=8)
    args = p.parse_args(argv)
    setup_logging()
    api_key = os.environ.get(args.api_key_env) if args.api_key_env else None
    if args.api_key_env and not api_key:
        raise SystemExit(f"--api-key-env {args.api_key_env}: the variable is not set")
    generator = HFChatGenerator(args.model, device=args.device)
    server = OpenAICompatServer(generator, args.served_name or args.model, host=args.host,
                                port=args.port, api_key=api_key,
                                max_batch_size=args.max_batch_size).start()
    print(f"serving {server.model_name} at {server.chat_url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":  # pragma: no cover
    main()
