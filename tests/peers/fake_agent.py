#!/usr/bin/env python3
"""A stand-in for the mcp-warden binary, for the harness's own self-tests only.

Implements the process contract the harness drives, without any kernel work:
  run --config P           writes <state_dir>/ready ("<pid>\\n"), a pin dir under
                           <bpffs>/mcp-warden/<instance> and one "connect" record;
                           SIGHUP appends a "reload" record; SIGTERM removes ready, exits 0
  check-config P           parses the TOML; "P:LINE:COL: message" on error, exit 1
  audit export --config P  prints <state_dir>/audit/records.jsonl
  detach --config P        removes the pin dir
"""

import json
import os
import shutil
import signal
import sys
import time
import tomllib


def load(path):
    with open(path, "rb") as f:
        return tomllib.load(f)


def records_path(cfg):
    return os.path.join(cfg["agent"]["state_dir"], "audit", "records.jsonl")


def append(cfg, rec):
    p = records_path(cfg)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    seq = 1
    if os.path.exists(p):
        with open(p) as f:
            seq = sum(1 for _ in f) + 1
    with open(p, "a") as f:
        f.write(json.dumps({"seq": seq, **rec}) + "\n")


def pin_dir(cfg):
    return os.path.join(cfg["agent"]["bpffs"], "mcp-warden", cfg["agent"]["instance"])


def run(path):
    cfg = load(path)
    state = cfg["agent"]["state_dir"]
    os.makedirs(state, exist_ok=True)
    os.makedirs(os.path.join(pin_dir(cfg), "links"), exist_ok=True)
    open(os.path.join(pin_dir(cfg), "links", "connect4"), "w").close()
    append(cfg, {"kind": "connect", "session": "fake-1", "endpoint": "web"})
    ready = os.path.join(state, "ready")

    def term(_sig, _frm):
        os.unlink(ready)
        print("fake agent: SIGTERM, exiting", file=sys.stderr, flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, term)
    signal.signal(signal.SIGHUP, lambda *_: append(cfg, {"kind": "reload", "session": "fake-reload"}))
    tmp = ready + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{os.getpid()}\n")
    os.rename(tmp, ready)
    print(f"fake agent: ready, pid {os.getpid()}", file=sys.stderr, flush=True)
    while True:
        time.sleep(3600)


def main(argv):
    if argv[:2] == ["run", "--config"]:
        run(argv[2])
    elif argv[:1] == ["check-config"]:
        try:
            load(argv[1])
        except tomllib.TOMLDecodeError as e:
            print(f"{argv[1]}: {e}", file=sys.stderr)
            return 1
        return 0
    elif argv[:3] == ["audit", "export", "--config"]:
        p = records_path(load(argv[3]))
        if os.path.exists(p):
            with open(p) as f:
                sys.stdout.write(f.read())
        return 0
    elif argv[:2] == ["detach", "--config"]:
        shutil.rmtree(pin_dir(load(argv[2])), ignore_errors=True)
        return 0
    print(f"fake agent: unknown command {argv}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
