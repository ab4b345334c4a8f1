"""A small fault-injecting HTTP proxy on 127.0.0.1, in front of a real OpenAI-compatible server.

Each request to ``/v1/chat/completions`` takes the next fault of a plan (then passes through
once the plan is used up); other paths pass through. Faults:

* ``pass``: forward the request and stream the server's answer back unchanged;
* ``429:<s>`` / ``503:<s>``: that status with ``Retry-After: <s>``; ``500``: a bare 500;
* ``stall:<s>``: wait ``s`` seconds before answering at all (past the client's timeout);
* ``stall_mid:<s>``: forward the first chunk, then wait ``s`` seconds;
* ``malformed``: a 200 event stream whose data is not JSON;
* ``cut``: forward the server's stream up to its first chunk with text, then close the
  connection (a stream cut mid-answer);
* ``401``: refuse the request as a wrong key would be refused.

A request whose bearer token is not ``key`` gets a 401, as a real API answers a wrong key.
The proxy counts what it saw (``log``), so tests can tell how many requests were paid for.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


class FaultProxy:
    def __init__(self, upstream: str, key: str | None = None, plan: list[str] | None = None):
        url = urlsplit(upstream)
        self.upstream = (url.hostname, url.port)
        self.key = key
        self.plan = list(plan or [])
        self.log: list[dict] = []          # one entry per chat request: {'fault', 'forwarded'}
        self.lock = threading.Lock()
        self.in_flight = 0                  # chat requests being answered now, and the most at once
        self.peak = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                proxy._forward(self, None, "pass")

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if not self.path.endswith("/chat/completions"):
                    return proxy._forward(self, body, "pass")
                if proxy.key is not None and self.headers.get("Authorization") != f"Bearer {proxy.key}":
                    with proxy.lock:
                        proxy.log.append({"fault": "401", "forwarded": False})
                    return proxy._reply(self, 401, {"error": {"message": "Incorrect API key provided.",
                                                              "type": "invalid_request_error",
                                                              "code": "invalid_api_key"}})
                with proxy.lock:
                    fault = proxy.plan.pop(0) if proxy.plan else "pass"
                    proxy.log.append({"fault": fault, "forwarded": fault in ("pass", "cut") or
                                      fault.startswith("stall_mid")})
                    proxy.in_flight += 1
                    proxy.peak = max(proxy.peak, proxy.in_flight)
                try:
                    proxy._fault(self, body, fault)
                finally:
                    with proxy.lock:
                        proxy.in_flight -= 1

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass        # a client that gave up on a stalled or cut answer closes its end

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    # ------------------------------------------------------------------ answers

    @staticmethod
    def _reply(handler, status: int, payload: dict, headers: dict | None = None):
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(data)

    def _fault(self, handler, body: bytes, fault: str):
        name, _, arg = fault.partition(":")
        if name in ("429", "503"):
            return self._reply(handler, int(name), {"error": {"message": f"injected {name}", "type": "rate_limit"}},
                               {"Retry-After": arg or "1"})
        if name == "401":
            return self._reply(handler, 401, {"error": {"message": "Incorrect API key provided.",
                                                        "code": "invalid_api_key"}})
        if name == "500":
            return self._reply(handler, 500, {"error": {"message": "injected 500", "type": "server_error"}})
        if name == "stall":
            time.sleep(float(arg))
            return self._reply(handler, 503, {"error": {"message": "too late"}})
        if name == "malformed":
            data = b'data: {"id": "x", "choices": [{"delta": {"content": "Hel\n\n'
            handler.send_response(200)
            handler.send_header("Content-Type", "text/event-stream")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
            return
        return self._forward(handler, body, fault)

    def _forward(self, handler, body: bytes | None, fault: str):
        conn = http.client.HTTPConnection(*self.upstream, timeout=600)
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in ("host", "connection")}
        conn.request(handler.command, handler.path, body=body, headers=headers)
        upstream = conn.getresponse()
        handler.send_response(upstream.status)
        for key, value in upstream.getheaders():
            if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                handler.send_header(key, value)
        # Streamed back as it comes, the end marked by closing the connection.
        handler.send_header("Connection", "close")
        handler.end_headers()
        name, _, arg = fault.partition(":")
        chunks = 0
        try:
            while True:
                line = upstream.readline()
                if not line:
                    break
                handler.wfile.write(line)
                handler.wfile.flush()
                if line.startswith(b"data:"):
                    chunks += 1
                    if name == "stall_mid" and chunks == 1:
                        time.sleep(float(arg))
                    if name == "cut" and b'"content":"' in line.replace(b" ", b"") and b'"content":""' not in \
                            line.replace(b" ", b""):
                        break
        finally:
            conn.close()
            handler.close_connection = True
