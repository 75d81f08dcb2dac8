#!/usr/bin/env python3
"""An MCP client for mcp-warden's integration tests, built on the official MCP
Python SDK. Runs under either venv made by setup.sh: `mcp2` (mcp 2.3.0, httpx2)
or `mcp1` (mcp 1.30.0, httpx); the SDK API differences are feature-detected.

    mcpN/bin/python tests/peers/mcp_client.py --url URL [--token T] \
        [--transport streamable-http|sse] [--era handshake|modern] \
        [--timeout SECONDS] --calls JSON

--calls is a JSON list such as
    [{"tool": "echo", "arguments": {"text": "hi"}},
     {"tool": "big", "arguments": {"size": 5000000}}]

--token T sends `Authorization: Bearer T` on every request. --era handshake
(default) runs the initialize handshake (mcp2: Client(mode="legacy"));
--era modern (mcp2 only, streamable-http only) speaks the stateless
2026-07-28 revision (Client(mode="2026-07-28"): no initialize, every POST
carries MCP-Protocol-Version: 2026-07-28, Mcp-Method and, for
tools/call, Mcp-Name). The client lists the tools, calls each one in order
(with a progress callback, so tools/call carries a progressToken), and
answers any elicitation with action "accept", content {"answer": "42"}.

TLS trust comes only from the environment: both httpx 0.28 (mcp1) and httpx2
(mcp2) build their default context from SSL_CERT_FILE / SSL_CERT_DIR when
set, so the test sets SSL_CERT_FILE to a bundle holding its CA.

Prints one JSON line on stdout, keys in this order:
    {"protocol_version": ..., "tools": [sorted names],
     "results": [{"tool", "content", "structuredContent", "isError",
                  "progress"}]}
("progress" counts the notifications/progress the call received: n for
ticks(n) when the server streams SSE, 0 with --json-response.)
with the keys inside content/structuredContent sorted; a text content over
64 KiB is given as {"type": "text", "length": <bytes>, "sha256": <hex>}
instead of its text, and any string over 64 KiB inside structuredContent
as {"length": <bytes>, "sha256": <hex>}. A tool result with isError is reported, not fatal; any
other failure exits 1 with "mcp_client: error: ..." on stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import sys
import warnings
from typing import Any

import anyio

warnings.filterwarnings("ignore", category=DeprecationWarning)

MODERN_VERSION = "2026-07-28"
BIG_TEXT = 64 * 1024
ELICIT_ANSWER = "42"

MCP_VERSION = importlib.metadata.version("mcp")
MCP_MAJOR = int(MCP_VERSION.split(".")[0])

if MCP_MAJOR >= 2:
    try:
        from mcp.shared.exceptions import MCPDeprecationWarning

        warnings.filterwarnings("ignore", category=MCPDeprecationWarning)
    except ImportError:  # pragma: no cover
        pass

from mcp import types  # noqa: E402  (mcp 2.x re-exports mcp_types here)


def fail(msg: str) -> None:
    sys.stderr.write(f"mcp_client: error: {msg}\n")
    sys.stderr.flush()
    sys.exit(1)


def sort_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: sort_keys(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [sort_keys(v) for v in value]
    return value


def shrink(value: Any) -> Any:
    """Sort keys; replace any string over 64 KiB by {"length", "sha256"}."""
    if isinstance(value, dict):
        return {k: shrink(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [shrink(v) for v in value]
    if isinstance(value, str):
        raw = value.encode("utf-8")
        if len(raw) > BIG_TEXT:
            return {"length": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
    return value


def dump(model: Any) -> Any:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def content_dict(block: Any) -> dict:
    d = dump(block)
    text = d.get("text")
    if d.get("type") == "text" and isinstance(text, str):
        raw = text.encode("utf-8")
        if len(raw) > BIG_TEXT:
            del d["text"]
            d["length"] = len(raw)
            d["sha256"] = hashlib.sha256(raw).hexdigest()
    return sort_keys(d)


def result_dict(tool: str, result: Any) -> dict:
    structured = getattr(result, "structured_content", None)
    if structured is None:
        structured = getattr(result, "structuredContent", None)
    is_error = getattr(result, "is_error", None)
    if is_error is None:
        is_error = getattr(result, "isError", False)
    return {
        "tool": tool,
        "content": [content_dict(c) for c in result.content],
        "structuredContent": shrink(structured),
        "isError": bool(is_error),
    }


async def on_elicit(context: Any, params: Any) -> Any:
    return types.ElicitResult(action="accept", content={"answer": ELICIT_ANSWER})


async def on_log(params: Any) -> None:
    return None


class Counter:
    def __init__(self) -> None:
        self.n = 0

    async def __call__(self, *args: Any) -> None:
        self.n += 1


def auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


async def call_all(list_tools: Any, call_tool: Any, calls: list[dict]) -> tuple[list[str], list[dict]]:
    listed = await list_tools()
    tools = sorted(t.name for t in listed.tools)
    results = []
    for call in calls:
        progress = Counter()
        result = await call_tool(call["tool"], call.get("arguments") or {}, progress_callback=progress)
        entry = result_dict(call["tool"], result)
        entry["progress"] = progress.n
        results.append(entry)
    return tools, results


def lift_legacy_sse_event_cap() -> None:
    """mcp 2.3.0's legacy `sse_client` reads its stream through
    `sse_within_origin(client, url)`, whose max_event_size defaults to 1 MiB
    and is not exposed, so a big tool result (one SSE event) fails with
    "Server-sent event exceeded the 1048576 byte limit". Lift that cap."""
    import mcp.client.sse as sse_mod

    original = getattr(sse_mod, "sse_within_origin", None)
    if original is None or getattr(original, "_mcp_warden_lifted", False):
        return

    def uncapped(client: Any, url: Any, **kwargs: Any) -> Any:
        kwargs["max_event_size"] = None
        return original(client, url, **kwargs)

    uncapped._mcp_warden_lifted = True  # type: ignore[attr-defined]
    sse_mod.sse_within_origin = uncapped


async def run_mcp2(args: argparse.Namespace, calls: list[dict]) -> dict:
    from contextlib import AsyncExitStack

    from mcp.client.client import Client
    from mcp.client.sse import sse_client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    headers = auth_headers(args.token)
    async with AsyncExitStack() as stack:
        if args.transport == "sse":
            lift_legacy_sse_event_cap()
            transport = sse_client(args.url, headers=headers)
        else:
            http = await stack.enter_async_context(create_mcp_http_client(headers=headers))
            # max_sse_event_size=None: a 5 MB tool result is one SSE event
            # (the 2.x default cap is 1 MiB).
            transport = streamable_http_client(args.url, http_client=http, max_sse_event_size=None)
        mode = MODERN_VERSION if args.era == "modern" else "legacy"
        client = Client(
            transport,
            mode=mode,
            elicitation_callback=on_elicit,
            logging_callback=on_log,
            cache=None,
        )
        async with client:
            tools, results = await call_all(client.list_tools, client.call_tool, calls)
            return {"protocol_version": client.protocol_version, "tools": tools, "results": results}


async def run_mcp1(args: argparse.Namespace, calls: list[dict]) -> dict:
    from contextlib import AsyncExitStack

    from mcp.client.session import ClientSession
    from mcp.client.sse import sse_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    headers = auth_headers(args.token)
    async with AsyncExitStack() as stack:
        if args.transport == "sse":
            streams = await stack.enter_async_context(sse_client(args.url, headers=headers))
        else:
            try:
                from mcp.client.streamable_http import streamable_http_client
            except ImportError:  # older 1.x: only the headers-taking variant
                from mcp.client.streamable_http import streamablehttp_client

                streams = await stack.enter_async_context(streamablehttp_client(args.url, headers=headers))
            else:
                http = await stack.enter_async_context(create_mcp_http_client(headers=headers))
                streams = await stack.enter_async_context(streamable_http_client(args.url, http_client=http))
        read, write = streams[0], streams[1]
        session = await stack.enter_async_context(
            ClientSession(read, write, elicitation_callback=on_elicit, logging_callback=on_log)
        )
        init = await session.initialize()
        tools, results = await call_all(session.list_tools, session.call_tool, calls)
        return {"protocol_version": init.protocolVersion, "tools": tools, "results": results}


def describe(exc: BaseException) -> str:
    """Flatten (nested) exception groups into one readable line."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(describe(e) for e in exc.exceptions)
    text = str(exc) or repr(exc)
    return f"{type(exc).__name__}: {text}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--token")
    p.add_argument("--transport", choices=["streamable-http", "sse"], default="streamable-http")
    p.add_argument("--era", choices=["handshake", "modern"], default="handshake")
    p.add_argument("--calls", required=True, help="JSON list of {tool, arguments}")
    p.add_argument("--timeout", type=float, default=120.0, help="overall deadline in seconds")
    args = p.parse_args()

    try:
        calls = json.loads(args.calls)
    except ValueError as e:
        fail(f"--calls is not JSON: {e}")
    if not isinstance(calls, list) or not all(isinstance(c, dict) and isinstance(c.get("tool"), str) for c in calls):
        fail('--calls must be a JSON list of {"tool": name, "arguments": {...}}')
    if args.era == "modern":
        if MCP_MAJOR < 2:
            fail(f"--era modern needs mcp 2.x (this is mcp {MCP_VERSION})")
        if args.transport != "streamable-http":
            fail("--era modern needs --transport streamable-http")

    async def go() -> dict:
        with anyio.fail_after(args.timeout):
            if MCP_MAJOR >= 2:
                return await run_mcp2(args, calls)
            return await run_mcp1(args, calls)

    try:
        out = anyio.run(go)
    except TimeoutError:
        fail(f"timed out after {args.timeout}s")
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001 - report anything, exit 1
        fail(describe(e))
    sys.stdout.write(json.dumps(out, ensure_ascii=False, separators=(",", ":")) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
