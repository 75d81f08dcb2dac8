#!/usr/bin/env python3
"""Opens COUNT connections at once and relays an upload over each.

  many_clients.py --family 4|6 --host H --port P --count N --send-bytes B [--timeout S]

Every thread connects; once all have connected (a barrier, so COUNT sockets
are open at the same time) each POSTs /upload of B bytes with its own seed
(so crossed connections would show as a digest mismatch) and checks the answer
and getpeername(). Prints one JSON summary:
  {"pid", "count", "connected", "ok", "peer_ok", "errors": [first few]}
Exit status 0 iff every connection was ok.
"""

import argparse
import json
import os
import socket
import sys
import threading

from detbytes import payload
from rawhttp import Reader, upload


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--family", choices=["4", "6"], default="4")
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--send-bytes", type=int, default=65536)
    ap.add_argument("--timeout", type=float, default=120.0)
    args = ap.parse_args()

    fam = socket.AF_INET if args.family == "4" else socket.AF_INET6
    barrier = threading.Barrier(args.count, timeout=args.timeout)
    lock = threading.Lock()
    res = {"connected": 0, "ok": 0, "peer_ok": 0, "errors": []}
    host_hdr = f"[{args.host}]" if ":" in args.host else args.host

    def fail(i, what):
        with lock:
            if len(res["errors"]) < 10:
                res["errors"].append(f"#{i}: {what}")

    def one(i: int) -> None:
        sock = socket.socket(fam, socket.SOCK_STREAM)
        sock.settimeout(args.timeout)
        try:
            try:
                sock.connect((args.host, args.port))
                with lock:
                    res["connected"] += 1
            except OSError as e:
                fail(i, f"connect: {e}")
                sock.close()
                sock = None
            try:
                barrier.wait()
            except threading.BrokenBarrierError:
                pass
            if sock is None:
                return
            peer = sock.getpeername()
            if peer[0] == args.host and peer[1] == args.port:
                with lock:
                    res["peer_ok"] += 1
            else:
                fail(i, f"getpeername {peer}")
            out = upload(sock, Reader(sock), host_hdr, payload(args.send_bytes, 1000 + i))
            if out["ok"]:
                with lock:
                    res["ok"] += 1
            else:
                fail(i, f"upload {out}")
        except Exception as e:  # noqa: BLE001 - every failure is reported
            fail(i, f"{type(e).__name__}: {e}")
        finally:
            if sock is not None:
                sock.close()

    # generate the payloads before the clock starts
    for i in range(args.count):
        payload(args.send_bytes, 1000 + i)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(args.count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    summary = {"pid": os.getpid(), "count": args.count, **res}
    print(json.dumps(summary), flush=True)
    return 0 if res["ok"] == args.count else 1


if __name__ == "__main__":
    sys.exit(main())
