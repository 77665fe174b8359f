"""`guardray.client.GuardClient`'s HTTP transport: kept-alive connections per thread, servers
that close them, error answers. The peer is a small standard-library HTTP/1.1 server (the
served guard itself is tested in test_serve_http.py)."""

from __future__ import annotations

import http.server
import json
import socket
import threading

import pytest

from guardray.client import GuardClient, GuardConnectionError, GuardHTTPError


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive unless told otherwise

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        srv = self.server
        srv.requests += 1
        mode = srv.mode
        if self.path == "/boom":
            self._send(500, b"<html>internal error</html>", "text/html")
        elif self.path == "/refuse":
            self._send(413, json.dumps({"error": {"code": "too_many_prompts",
                                                  "message": "at most 64"}}).encode())
        else:
            self._send(200, json.dumps({"n": srv.requests, "path": self.path}).encode(),
                       close=mode == "close")
        if mode == "drop":  # close without saying so: the client finds out on its next send
            self.close_connection = True

    def _send(self, status, body, ctype="application/json", close=False):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, mode: str):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mode, self.requests, self.connections = mode, 0, 0

    def get_request(self):
        self.connections += 1
        return super().get_request()


@pytest.fixture
def server(request):
    srv = _Server(getattr(request, "param", "keep"))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _url(srv) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}"


def test_one_connection_per_thread_is_kept_alive(server):
    client = GuardClient(_url(server))
    assert [client.request("GET", f"/r{i}")["n"] for i in range(5)] == [1, 2, 3, 4, 5]
    assert server.connections == 1
    other = []
    t = threading.Thread(target=lambda: other.append(client.request("GET", "/x")["n"]))
    t.start()
    t.join()
    assert other == [6] and server.connections == 2  # another thread, its own connection
    client.close()
    client.request("GET", "/again")
    assert server.connections == 3


@pytest.mark.parametrize("server", ["close", "drop"], indirect=True)
def test_a_connection_the_server_closes_is_reopened(server):
    """``close``: the server says ``Connection: close``; ``drop``: it closes silently, and the
    next request on the stale connection fails once and is sent again on a new one."""
    with GuardClient(_url(server), timeout=10) as client:
        assert [client.request("GET", "/a")["n"] for _ in range(3)] == [1, 2, 3]
    assert server.requests == 3 and server.connections == 3


def test_error_answers_raise_with_the_servers_code_and_the_connection_survives(server):
    client = GuardClient(_url(server))
    with pytest.raises(GuardHTTPError) as err:
        client.request("GET", "/refuse")
    assert (err.value.status, err.value.code, err.value.message) == (413, "too_many_prompts",
                                                                     "at most 64")
    with pytest.raises(GuardHTTPError) as err:
        client.request("GET", "/boom")
    assert (err.value.status, err.value.code) == (500, "http_error")
    assert "internal error" in err.value.message
    assert client.request("GET", "/ok")["n"] == 3 and server.connections == 1


def test_a_route_prefix_in_the_url_is_kept(server):
    assert GuardClient(_url(server) + "/guard/").request("GET", "/healthz")["path"] == \
        "/guard/healthz"


def test_unreachable_servers_and_bad_urls_are_clear_errors():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    with pytest.raises(GuardConnectionError, match=rf"GET http://127.0.0.1:{port}/healthz"):
        GuardClient(f"http://127.0.0.1:{port}", timeout=5).health()
    with pytest.raises(ValueError, match="guard URL must be http"):
        GuardClient("127.0.0.1:8000")
