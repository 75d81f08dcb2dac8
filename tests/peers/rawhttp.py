"""A minimal HTTP/1.1 exchange over an already connected socket (stdlib only)."""

import hashlib
import json
import socket


class Reader:
    def __init__(self, sock: socket.socket):
        self.f = sock.makefile("rb")

    def response(self):
        """Reads one response: (status, headers dict lower-cased, body bytes)."""
        line = self.f.readline(65536)
        if not line:
            raise ConnectionError("connection closed before a response")
        parts = line.decode("latin-1").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise ValueError(f"bad status line {line!r}")
        status = int(parts[1])
        headers = {}
        while True:
            h = self.f.readline(65536)
            if h in (b"\r\n", b"\n"):
                break
            if not h:
                raise ConnectionError("eof in headers")
            k, _, v = h.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        length = int(headers.get("content-length", "0"))
        body = self.f.read(length) if length else b""
        if len(body) != length:
            raise ConnectionError(f"short body: {len(body)} of {length}")
        return status, headers, body


def upload(sock: socket.socket, reader: Reader, host: str, data: bytes) -> dict:
    """POST /upload of data; returns a result dict with ok = server saw the same bytes."""
    sent_sha = hashlib.sha256(data).hexdigest()
    head = (f"POST /upload HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode()
    sock.sendall(head)
    view = memoryview(data)
    for off in range(0, len(data), 256 * 1024):
        sock.sendall(view[off:off + 256 * 1024])
    status, _, body = reader.response()
    resp = json.loads(body) if status == 200 else {"raw": body.decode("latin-1")[:200]}
    ok = status == 200 and resp.get("len") == len(data) and resp.get("sha256") == sent_sha
    return {"request": "POST /upload", "status": status, "response": resp,
            "sent_len": len(data), "sent_sha256": sent_sha, "ok": ok}


def get(sock: socket.socket, reader: Reader, host: str, path: str) -> dict:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    status, headers, body = reader.response()
    out = {"request": f"GET {path}", "status": status, "len": len(body),
           "sha256": hashlib.sha256(body).hexdigest()}
    if "x-sha256" in headers:
        out["x_sha256"] = headers["x-sha256"]
    if headers.get("content-type", "").startswith("application/json"):
        out["json"] = json.loads(body)
    elif len(body) <= 4096:
        out["text"] = body.decode("utf-8", "replace")
    out["ok"] = status == 200 and out.get("x_sha256", out["sha256"]) == out["sha256"]
    return out
