#!/usr/bin/env python3
"""Raw socket client for the mcp-warden integration tests (stdlib only).

  sock_client.py --family 4|6 --host H --port P [--send-bytes N] [--seed S]
                 [--get-path PATH] [--repeat K] [--timeout SECONDS]

Connects one TCP socket (AF_INET for 4; AF_INET6 with IPV6_V6ONLY off for 6,
so H may be ::ffff:a.b.c.d) and prints, one JSON object per line:
  {"event": "connected", "pid", "peername": [host, port], "sockname": [host, port]}
then, for each of K exchanges on that same connection (keep-alive):
  {"event": "result", ...}   POST /upload of N deterministic bytes if --send-bytes,
                             else GET PATH (default /hello)
and finally {"event": "done", "ok": bool}. Exit status 0 iff every exchange was ok.
"""

import argparse
import json
import os
import socket
import sys

from detbytes import payload
from rawhttp import Reader, get, upload


def emit(obj) -> None:
    print(json.dumps(obj), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--family", choices=["4", "6"], required=True)
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--send-bytes", type=int)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--get-path", default="/hello")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args()

    fam = socket.AF_INET if args.family == "4" else socket.AF_INET6
    sock = socket.socket(fam, socket.SOCK_STREAM)
    if fam == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.settimeout(args.timeout)
    try:
        sock.connect((args.host, args.port))
    except OSError as e:
        emit({"event": "connect_failed", "pid": os.getpid(), "errno": e.errno, "error": str(e)})
        return 2
    peer = sock.getpeername()
    local = sock.getsockname()
    emit({"event": "connected", "pid": os.getpid(), "peername": [peer[0], peer[1]],
          "sockname": [local[0], local[1]]})

    host_hdr = f"[{args.host}]" if ":" in args.host else args.host
    reader = Reader(sock)
    all_ok = True
    for i in range(args.repeat):
        try:
            if args.send_bytes is not None:
                res = upload(sock, reader, host_hdr, payload(args.send_bytes, args.seed))
            else:
                res = get(sock, reader, host_hdr, args.get_path)
        except (OSError, ValueError) as e:
            res = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        res["event"] = "result"
        res["index"] = i
        emit(res)
        all_ok = all_ok and res["ok"]
        if not res["ok"]:
            break
    sock.close()
    emit({"event": "done", "ok": all_ok})
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
