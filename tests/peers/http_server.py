#!/usr/bin/env python3
"""HTTP/1.1 test server for the mcp-warden integration tests (stdlib only).

  http_server.py --bind ADDR --port P [--port Q ...]

ADDR may be an IPv4 or IPv6 address; "::" listens dual-stack (IPv4 clients
are reported without their ::ffff: prefix). Port 0 picks a free port. Once
every port listens, prints "ready P [Q ...]" (the actual ports) on stdout.

  GET  /hello              small text
  GET  /download?size=N[&seed=S]  N deterministic bytes, header X-Sha256
  POST /upload             reads the body (Content-Length or chunked), answers
                           JSON {"len": N, "sha256": "..."}
  GET  /peer               JSON {"host", "port", "server_port"}: the client as seen here
  GET  /stats              JSON {"count": N, "by_port": {"P": n}}: requests served,
                           /stats itself excluded
Keep-alive: HTTP/1.1 persistent connections; every response has a Content-Length.
"""

import argparse
import hashlib
import json
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from detbytes import payload

_stats_lock = threading.Lock()
_by_port: dict[int, int] = {}
VERBOSE = False


def _count(port: int) -> None:
    with _stats_lock:
        _by_port[port] = _by_port.get(port, 0) + 1


def _unmap(host: str) -> str:
    if host.startswith("::ffff:") and "." in host:
        return host[len("::ffff:"):]
    return host


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mcp-warden-test-peer/1"

    def log_message(self, fmt, *args):  # noqa: N802 (stdlib name)
        if VERBOSE:
            sys.stderr.write("%s - %s\n" % (self.address_string(), fmt % args))

    def _port(self) -> int:
        return self.server.server_address[1]

    def _send(self, code: int, body: bytes, ctype: str = "text/plain", headers: dict | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            view = memoryview(body)
            for off in range(0, len(body), 256 * 1024):
                self.wfile.write(view[off:off + 256 * 1024])

    def _json(self, code: int, obj) -> None:
        self._send(code, (json.dumps(obj) + "\n").encode(), "application/json")

    def _read_body(self):
        """Returns (length, sha256 hex) of the request body, streaming."""
        h = hashlib.sha256()
        n = 0
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            while True:
                line = self.rfile.readline(1024)
                if not line:
                    raise ConnectionError("eof in chunk size")
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    # trailers until an empty line
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                left = size
                while left:
                    chunk = self.rfile.read(min(left, 256 * 1024))
                    if not chunk:
                        raise ConnectionError("eof in chunk")
                    h.update(chunk)
                    n += len(chunk)
                    left -= len(chunk)
                self.rfile.readline(16)  # CRLF after the chunk
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left:
                chunk = self.rfile.read(min(left, 256 * 1024))
                if not chunk:
                    raise ConnectionError("eof in body")
                h.update(chunk)
                n += len(chunk)
                left -= len(chunk)
        return n, h.hexdigest()

    def do_GET(self):  # noqa: N802
        url = urlsplit(self.path)
        q = parse_qs(url.query)
        if url.path != "/stats":
            _count(self._port())
        if url.path == "/hello":
            self._send(200, f"hello from port {self._port()}\n".encode())
        elif url.path == "/download":
            try:
                size = int(q.get("size", ["0"])[0])
                seed = int(q.get("seed", ["0"])[0])
                data = payload(size, seed)
            except ValueError as e:
                self._send(400, f"{e}\n".encode())
                return
            self._send(200, data, "application/octet-stream",
                       {"X-Sha256": hashlib.sha256(data).hexdigest()})
        elif url.path == "/peer":
            host, port = self.client_address[0], self.client_address[1]
            self._json(200, {"host": _unmap(host), "port": port, "server_port": self._port()})
        elif url.path == "/stats":
            with _stats_lock:
                by_port = {str(k): v for k, v in _by_port.items()}
            self._json(200, {"count": sum(by_port.values()), "by_port": by_port})
        else:
            self._send(404, b"not found\n")

    def do_POST(self):  # noqa: N802
        url = urlsplit(self.path)
        _count(self._port())
        if url.path == "/upload":
            n, digest = self._read_body()
            self._json(200, {"len": n, "sha256": digest})
        else:
            self._read_body()
            self._send(404, b"not found\n")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, addr, handler, family):
        self.address_family = family
        super().__init__(addr, handler)

    def server_bind(self):
        if self.address_family == socket.AF_INET6:
            # "::" serves IPv4 too; a specific IPv6 address only itself
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY,
                                   0 if self.server_address[0] == "::" else 1)
        super().server_bind()

    def handle_error(self, request, client_address):
        if VERBOSE:
            super().handle_error(request, client_address)


def main() -> int:
    global VERBOSE
    ap = argparse.ArgumentParser()
    ap.add_argument("--bind", required=True)
    ap.add_argument("--port", type=int, action="append", required=True)
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    VERBOSE = args.verbose
    family = socket.AF_INET6 if ":" in args.bind else socket.AF_INET
    servers = [Server((args.bind, p), Handler, family) for p in args.port]
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    print("ready " + " ".join(str(s.server_address[1]) for s in servers), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
