#!/usr/bin/env python3
"""An upstream MCP server for mcp-warden's integration tests, built on the
official MCP Python SDK 2.x (runs under the `mcp2` venv made by setup.sh).

    mcp2/bin/python tests/peers/mcp_server.py --host H --port P \
        [--cert PEM --key PEM] --token T --seen FILE \
        [--json-response] [--stateless] [--transport streamable-http|sse]

Serves MCP at `/mcp` (Streamable HTTP; mcp 2.x answers both the handshake era
2025-03-26..2025-11-25 and the stateless 2026-07-28 revision there), or the
legacy HTTP+SSE transport (`GET /sse`, then `POST /messages/?session_id=..`)
with `--transport sse`. TLS (uvicorn) when --cert/--key are given.
`--json-response` answers POSTs with application/json instead of an SSE
stream; `--stateless` runs stateless_http (no Mcp-Session-Id).

Every HTTP request is first appended to --seen as one JSON line (flushed):
  {"method", "path", "authorization", "x_api_key", "cookie", "host",
   "mcp_method", "tool", "mcp_protocol_version", "mcp_method_header",
   "mcp_name_header", "mcp_session_id", "rpc_id"}
(header values or null; `mcp_method` is the JSON-RPC method when the body is
a JSON object carrying one, `tool` is params.name of a tools/call;
MCP-Protocol-Version, Mcp-Method, Mcp-Name and Mcp-Session-Id are request
headers; `rpc_id` is the JSON-RPC id of such a body). Then, except for `GET /health`
(200 "ok") and `GET /.well-known/oauth-protected-resource` (small JSON), any
request whose one Authorization header is not exactly `Bearer <token>` gets
401. Host/Origin checks (DNS-rebinding protection) are off: the proxy may
present any Host.

Tools: echo(text) -> text; add(a, b) -> int (has structuredContent);
big(size) -> exactly `size` bytes of numbered ASCII lines (see big_text;
text content only, no structuredContent);
ticks(n) -> n progress notifications (log messages when the call carries no
progressToken), then "ticked {n}"; ask(question) -> elicits a form
{"answer": str} from the client (a server-to-client request in the handshake
era, an InputRequiredResult round trip in 2026-07-28) and returns
"answer: <answer>" (or "declined: <action>"); patients() -> synthetic patient
rows (structuredContent plus the SDK's JSON text copy); patients_csv() -> the
same rows as CSV text and a free-text note (see PATIENTS and NOTE). In the handshake era `ask`
needs a back-channel: it works with SSE responses on a stateful server and
over --transport sse, and fails (JSON-RPC error "no back-channel for
server-initiated requests") with --json-response or --stateless.

Prints exactly one line `READY` on stdout once uvicorn is listening.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from typing import Any

import uvicorn
import mcp_types as t
from pydantic import BaseModel

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.transport_security import TransportSecuritySettings

warnings.filterwarnings("ignore", category=DeprecationWarning)
try:  # deprecation category of the 2.x SDK (logging, progress...)
    from mcp.shared.exceptions import MCPDeprecationWarning

    warnings.filterwarnings("ignore", category=MCPDeprecationWarning)
except ImportError:  # pragma: no cover
    pass

MODERN_VERSIONS = {"2026-07-28"}


def big_text(size: int) -> str:
    """Exactly `size` ASCII bytes: lines "<9-digit line no> <filler>\\n" of
    64 bytes each, the last one cut short. Same text for the same size."""
    if size < 0:
        raise ValueError("size must be >= 0")
    filler = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-"
    # 9 digits + space + 53 filler chars + newline = 64 bytes
    lines = (size + 63) // 64
    text = "".join(f"{i:09d} {filler[: 53]}\n" for i in range(1, lines + 1))
    return text[:size]


class Answer(BaseModel):
    answer: str


# Synthetic patients (made up; the identifiers are valid in form, so the
# detectors' validation accepts them): what masking must keep from clients.
PATIENTS = [
    {"patient_name": "Maria Lopez", "ssn": "536-22-8741", "dob": "1984-03-12",
     "phone": "(617) 432-1187", "email": "maria.lopez@example.org",
     "mrn": "MRN-0042117", "diagnosis": "E11.9"},
    {"patient_name": "James Whitaker", "ssn": "401-73-2219", "dob": "1979-11-30",
     "phone": "(508) 771-2093", "email": "jwhitaker@example.net",
     "mrn": "MRN-0042118", "diagnosis": "I10"},
]
NOTE = ("Hello from the test EHR. Seen today: Maria Lopez (DOB 03/12/1984), "
        "call back at 617-432-1187 or maria.lopez@example.org. Plan: continue metformin.")


class Patient(BaseModel):
    patient_name: str
    ssn: str
    dob: str
    phone: str
    email: str
    mrn: str
    diagnosis: str


class PatientRows(BaseModel):
    patients: list[Patient]


def build_mcp() -> MCPServer:
    mcp = MCPServer(name="mcp-warden-test-server", version="1.0.0", log_level="WARNING")

    @mcp.tool()
    def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    @mcp.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @mcp.tool(structured_output=False)  # content only: `size` bytes once, not twice
    def big(size: int) -> str:
        """Return exactly `size` bytes of deterministic ASCII text."""
        return big_text(size)

    @mcp.tool()
    async def ticks(n: int, ctx: Context) -> str:
        """Send n progress notifications (or log messages), then answer."""
        meta = ctx.request_context.meta  # a dict keyed by field name in 2.3.0
        token = None
        if isinstance(meta, dict):
            token = meta.get("progress_token", meta.get("progressToken"))
        elif meta is not None:
            token = getattr(meta, "progress_token", None)
        for i in range(1, n + 1):
            if token is not None:
                await ctx.report_progress(i, n, f"tick {i}")
            else:
                await ctx.info(f"tick {i}")
        return f"ticked {n}"

    @mcp.tool()
    async def ask(question: str, ctx: Context) -> str | t.InputRequiredResult:
        """Ask the client a question (elicitation) and return its answer."""
        if ctx.protocol_version in MODERN_VERSIONS:
            responses = ctx.input_responses
            if responses and "answer" in responses:
                r = responses["answer"]
                if getattr(r, "action", None) == "accept" and r.content:
                    return f"answer: {r.content.get('answer')}"
                return f"declined: {getattr(r, 'action', None)}"
            return t.InputRequiredResult(
                input_requests={
                    "answer": t.ElicitRequest(
                        params=t.ElicitRequestFormParams(
                            message=question,
                            requested_schema={
                                "type": "object",
                                "properties": {"answer": {"type": "string"}},
                                "required": ["answer"],
                            },
                        )
                    )
                },
                request_state="ask-1",
            )
        result = await ctx.elicit(message=question, schema=Answer)
        if result.action == "accept":
            return f"answer: {result.data.answer}"
        return f"declined: {result.action}"

    @mcp.tool()
    def patients() -> PatientRows:
        """Synthetic patient rows (structuredContent, and the SDK's JSON text copy)."""
        return PatientRows(patients=[Patient(**row) for row in PATIENTS])

    @mcp.tool(structured_output=False)
    def patients_csv() -> str:
        """The same rows as CSV text, then a free-text note."""
        cols = list(PATIENTS[0])
        lines = [",".join(cols)] + [",".join(row[c] for c in cols) for row in PATIENTS]
        return "\n".join(lines) + "\n\n" + NOTE

    return mcp


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> list[str]:
    return [v.decode("latin-1") for k, v in headers if k.lower() == name]


class SeenAndAuth:
    """ASGI middleware: log every HTTP request to the seen file, serve the two
    unauthenticated routes, then require `Authorization: Bearer <token>`."""

    def __init__(self, app: Any, token: str, seen_path: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}"
        self.seen = open(seen_path, "a", encoding="utf-8", buffering=1)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        # Buffer the whole request body, then replay it to the app; once the
        # buffered messages are used up, fall through to the real receive
        # (a streaming GET then waits there for http.disconnect).
        buffered: list[dict] = []
        body = bytearray()
        while True:
            message = await receive()
            buffered.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break

        async def replay() -> dict:
            if buffered:
                return buffered.pop(0)
            return await receive()

        headers = scope.get("headers", [])
        auth = _header(headers, b"authorization")
        mcp_method = tool = rpc_id = None
        if body:
            try:
                doc = json.loads(bytes(body))
            except (ValueError, UnicodeDecodeError):
                doc = None
            if isinstance(doc, dict) and isinstance(doc.get("method"), str):
                mcp_method = doc["method"]
                rpc_id = doc.get("id")
                params = doc.get("params")
                if mcp_method == "tools/call" and isinstance(params, dict):
                    name = params.get("name")
                    tool = name if isinstance(name, str) else None
        line = {
            "method": scope["method"],
            "path": scope["path"],
            "authorization": auth[0] if auth else None,
            "x_api_key": (_header(headers, b"x-api-key") or [None])[0],
            "cookie": (_header(headers, b"cookie") or [None])[0],
            "host": (_header(headers, b"host") or [None])[0],
            "mcp_method": mcp_method,
            "tool": tool,
            # extra keys (after the fixed ones): the MCP transport headers
            "mcp_protocol_version": (_header(headers, b"mcp-protocol-version") or [None])[0],
            "mcp_method_header": (_header(headers, b"mcp-method") or [None])[0],
            "mcp_name_header": (_header(headers, b"mcp-name") or [None])[0],
            "mcp_session_id": (_header(headers, b"mcp-session-id") or [None])[0],
            "rpc_id": rpc_id,
        }
        self.seen.write(json.dumps(line) + "\n")
        self.seen.flush()

        path = scope["path"]
        if scope["method"] in ("GET", "HEAD") and path == "/health":
            await self._respond(send, 200, b"ok", b"text/plain; charset=utf-8")
            return
        if scope["method"] in ("GET", "HEAD") and path == "/.well-known/oauth-protected-resource":
            host = line["host"] or "localhost"
            scheme = scope.get("scheme", "http")
            doc = {
                "resource": f"{scheme}://{host}/mcp",
                "authorization_servers": [],
                "bearer_methods_supported": ["header"],
            }
            await self._respond(send, 200, json.dumps(doc).encode(), b"application/json")
            return
        if len(auth) != 1 or auth[0] != self.expected:
            await self._respond(
                send, 401, b"unauthorized\n", b"text/plain; charset=utf-8", [(b"www-authenticate", b"Bearer")]
            )
            return
        await self.app(scope, replay, send)

    @staticmethod
    async def _respond(send: Any, status: int, body: bytes, ctype: bytes, extra: list | None = None) -> None:
        headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode())] + (extra or [])
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class ReadyServer(uvicorn.Server):
    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            sys.stdout.write("READY\n")
            sys.stdout.flush()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--token", required=True)
    p.add_argument("--seen", required=True)
    p.add_argument("--json-response", action="store_true")
    p.add_argument("--stateless", action="store_true")
    p.add_argument("--transport", choices=["streamable-http", "sse"], default="streamable-http")
    p.add_argument("--log-level", default="warning")
    args = p.parse_args()
    if bool(args.cert) != bool(args.key):
        p.error("--cert and --key go together")

    mcp = build_mcp()
    security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    if args.transport == "sse":
        inner = mcp.sse_app(transport_security=security, host=args.host)
    else:
        inner = mcp.streamable_http_app(
            json_response=args.json_response,
            stateless_http=args.stateless,
            transport_security=security,
            host=args.host,
        )
    app = SeenAndAuth(inner, args.token, args.seen)

    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        ssl_certfile=args.cert,
        ssl_keyfile=args.key,
        log_level=args.log_level,
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    ReadyServer(config).run()


if __name__ == "__main__":
    main()
