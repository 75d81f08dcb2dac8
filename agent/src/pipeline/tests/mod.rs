//! The pipeline between a raw client socket and a scripted upstream on
//! loopback (no kernel redirect: the integration tests do that with real MCP
//! SDK peers). What the upstream saw, what the client got and what the audit
//! holds are all checked.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::endpoint::EndpointRuntime;
use super::records::Who;
use super::stage::{Chain, Decision, MessageCtx, Refusal, Stage, Verdict};
use crate::audit::AuditLog;
use crate::config::{ClientTls, Protocol, UpstreamUrl};
use crate::credential::{CLIENT_CREDENTIAL_HEADERS, Credential, InjectedHeader, test_header};
use crate::http::{Message, RequestDecoder, ResponseDecoder, ResponseHead, read_message};
use crate::identity::Identity;
use crate::mcp;
use crate::relay::Upstream;

mod masking;

#[tokio::test]
async fn a_panic_on_a_connection_becomes_its_outcome() {
    async fn served() -> super::Outcome {
        super::Outcome {
            outcome: "ok".into(),
            bytes_up: 1,
            bytes_down: 2,
        }
    }
    async fn bug() -> super::Outcome {
        panic!("a bug while serving")
    }
    assert_eq!(super::unless_it_panics(served()).await.outcome, "ok");
    let failed = super::unless_it_panics(bug()).await;
    assert_eq!(failed.outcome, super::INTERNAL_ERROR);
}

const GATEWAY_TOKEN: &str = "Bearer gateway-secret-7f3a";

#[derive(Debug)]
struct TestCredential;
impl Credential for TestCredential {
    fn headers(&self) -> anyhow::Result<Vec<InjectedHeader>> {
        Ok(vec![test_header("authorization", GATEWAY_TOKEN)])
    }
}

/// Refuses tools/call of "drop_table", as a policy stage would.
struct DenyDrop;
impl Stage for DenyDrop {
    fn name(&self) -> &str {
        "deny-drop"
    }
    fn decide<'a>(&'a self, _ctx: &'a MessageCtx<'a>, msg: &'a mcp::Message) -> Decision<'a> {
        let deny =
            matches!(&msg.target, Some(mcp::Target::Tool { name, .. }) if name == "drop_table");
        Box::pin(async move {
            if deny {
                Verdict::Answer(Refusal {
                    code: -32001,
                    message: "denied by policy no-drops".into(),
                    data: Some(json!({"policy": "no-drops"})),
                    by: vec!["no-drops".into()],
                })
            } else {
                Verdict::Forward
            }
        })
    }
}

/// What the scripted upstream received: request line, headers, body.
#[derive(Debug, Clone)]
struct Seen {
    line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An upstream that answers JSON-RPC: JSON on /json, SSE with `n` progress
/// events before the result on /sse?n=N, text on anything else.
async fn upstream(seen: Arc<Mutex<Vec<Seen>>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut dec = RequestDecoder::default();
                let mut buf = BytesMut::new();
                while let Ok(Some(m)) = read_message(&mut s, &mut dec, &mut buf, 1 << 26).await {
                    let line = format!(
                        "{} {}",
                        m.head.method(),
                        String::from_utf8_lossy(m.head.target())
                    );
                    let headers = m
                        .head
                        .headers()
                        .iter()
                        .map(|f| {
                            (
                                f.name_str().to_string(),
                                String::from_utf8_lossy(f.value()).into_owned(),
                            )
                        })
                        .collect();
                    seen.lock().unwrap().push(Seen {
                        line: line.clone(),
                        headers,
                        body: m.body.to_vec(),
                    });
                    let reply = respond(&line, &m.body);
                    if s.write_all(&reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn respond(line: &str, body: &[u8]) -> Vec<u8> {
    if let Some(reply) = masking::respond(line, body) {
        return reply;
    }
    let results = |req: &Value| -> Option<Value> {
        let id = req.get("id")?.clone();
        Some(
            json!({"jsonrpc":"2.0","id":id,"result":{"content":[{"type":"text","text":format!("did {}", req["method"].as_str().unwrap_or(""))}]}}),
        )
    };
    if line.starts_with("POST /json") {
        let v: Value = serde_json::from_slice(body).unwrap();
        let out = match &v {
            Value::Array(items) => Value::Array(items.iter().filter_map(results).collect()),
            one => results(one).unwrap_or(Value::Null),
        };
        if out.is_null() {
            return b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n".to_vec();
        }
        let text = serde_json::to_vec(&out).unwrap();
        let mut r = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nmcp-session-id: s-1\r\ncontent-length: {}\r\n\r\n",
            text.len()
        )
        .into_bytes();
        r.extend_from_slice(&text);
        return r;
    }
    if let Some(q) = line.strip_prefix("POST /sse?n=") {
        let n: usize = q.parse().unwrap();
        let v: Value = serde_json::from_slice(body).unwrap();
        let mut events = String::new();
        for i in 0..n {
            events += &format!(
                "event: message\ndata: {}\n\n",
                json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":i}})
            );
        }
        events += &format!("event: message\ndata: {}\n\n", results(&v).unwrap());
        // chunks of uneven sizes, so events straddle them
        let mut r = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        for piece in events.as_bytes().chunks(777) {
            r.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            r.extend_from_slice(piece);
            r.extend_from_slice(b"\r\n");
        }
        r.extend_from_slice(b"0\r\n\r\n");
        return r;
    }
    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok".to_vec()
}

struct Harness {
    seen: Arc<Mutex<Vec<Seen>>>,
    front: SocketAddr,
    audit_dir: tempfile::TempDir,
    audit: Option<(AuditLog, crate::audit::AuditWriter)>,
}

impl Harness {
    async fn new(chain: Chain) -> Harness {
        Harness::build(chain, None).await
    }

    /// With the endpoint masking by `masker`'s profile.
    async fn masking(masker: crate::mask::Masker) -> Harness {
        Harness::build(Chain::default(), Some(Arc::new(masker))).await
    }

    async fn build(chain: Chain, masker: Option<Arc<crate::mask::Masker>>) -> Harness {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let up = upstream(seen.clone()).await;
        let rt = Arc::new(EndpointRuntime {
            name: "ehr".into(),
            protocol: Protocol::Mcp,
            client_tls: ClientTls::Plain,
            upstream: Some(UpstreamUrl {
                tls: false,
                host: "127.0.0.1".into(),
                port: up.port(),
            }),
            tls: None,
            credential: Some(Arc::new(TestCredential)),
            strip: CLIENT_CREDENTIAL_HEADERS
                .iter()
                .map(|s| s.to_string())
                .chain(["x-leftover".to_string()])
                .collect(),
            chain,
            masker,
            pool: Default::default(),
            sessions: Default::default(),
        });
        let audit_dir = tempfile::tempdir().unwrap();
        let (audit, writer) = AuditLog::open(audit_dir.path()).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front = listener.local_addr().unwrap();
        let log = audit.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = listener.accept().await.unwrap();
                let who = Who {
                    session: format!("c-{}", peer.port()),
                    endpoint: "ehr".into(),
                    identity: Identity::test_caller(),
                    client: peer,
                    orig_dst: front,
                };
                let transport = Upstream {
                    mark: 0,
                    connect_timeout: Duration::from_secs(5),
                };
                let rt = rt.clone();
                let log = log.clone();
                tokio::spawn(async move {
                    let mut c = super::exchange::Connection::new(
                        rt,
                        log,
                        transport,
                        who,
                        Box::new(tcp),
                        None,
                    );
                    c.run().await
                });
            }
        });
        Harness {
            seen,
            front,
            audit_dir,
            audit: Some((audit, writer)),
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Every record so far (the store is flushed by a durable write first).
    async fn records(&mut self) -> Vec<Value> {
        let (audit, _) = self.audit.as_ref().unwrap();
        let mut r = crate::audit::Record::new(crate::audit::Kind::Http, "flush", self.front);
        r.reason = Some("test flush".into());
        audit.record_durable(r).await.unwrap();
        let mut out = Vec::new();
        crate::audit::export(self.audit_dir.path(), &mut out).unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .filter(|v: &Value| v["session"] != "flush")
            .collect()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some((audit, writer)) = self.audit.take() {
            drop(audit);
            std::thread::spawn(move || writer.finish());
        }
    }
}

fn post(path: &str, body: &str, extra: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: mcp.ehr.example\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn responses(s: &mut TcpStream, n: usize) -> Vec<Message<ResponseHead>> {
    let mut dec = ResponseDecoder::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(
            read_message(s, &mut dec, &mut buf, 1 << 26)
                .await
                .unwrap()
                .expect("a response"),
        );
    }
    out
}

async fn one(front: SocketAddr, request: &[u8]) -> Message<ResponseHead> {
    let mut s = TcpStream::connect(front).await.unwrap();
    s.write_all(request).await.unwrap();
    responses(&mut s, 1).await.remove(0)
}

const CALL: &str = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"lookup_patient","arguments":{"mrn":"A-1"}}}"#;

#[tokio::test]
async fn the_client_credential_is_replaced_and_every_message_recorded() {
    let mut h = Harness::new(Chain::default()).await;
    let resp = one(
        h.front,
        &post(
            "/json",
            CALL,
            "Authorization: Bearer leftover-client-key\r\nX-API-Key: k\r\nCookie: c=1\r\nX-Leftover: z\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n",
        ),
    )
    .await;
    assert_eq!(resp.head.status(), 200);
    let v: Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(v["id"], 7);
    assert_eq!(v["result"]["content"][0]["text"], "did tools/call");

    let seen = h.seen();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(s.line, "POST /json");
    assert_eq!(s.header("authorization"), Some(GATEWAY_TOKEN));
    for gone in ["x-api-key", "cookie", "x-leftover", "x-hop", "connection"] {
        assert_eq!(s.header(gone), None, "{gone} must not reach the server");
    }
    assert_eq!(
        s.header("host"),
        Some(format!("127.0.0.1:{}", s_port(&h)).as_str())
    );
    assert_eq!(s.body, CALL.as_bytes());

    let records = h.records().await;
    let req = records
        .iter()
        .find(|r| r["kind"] == "request")
        .expect("request record");
    assert_eq!(req["method"], "tools/call");
    assert_eq!(req["tool"], "lookup_patient");
    assert_eq!(req["direction"], "client_to_server");
    assert_eq!(req["rpc_id"], 7);
    assert_eq!(req["size"], CALL.len());
    assert_eq!(
        req["payload_sha256"],
        super::records::sha256_hex(CALL.as_bytes())
    );
    assert_eq!(req["identity"]["user"], "tester");
    let res = records
        .iter()
        .find(|r| r["kind"] == "response")
        .expect("response record");
    assert_eq!(
        res["tool"], "lookup_patient",
        "the response names its request's tool"
    );
    assert_eq!(res["status"], 200);
    assert!(res["latency_us"].is_u64());
    assert_eq!(
        req["mcp_session"],
        Value::Null,
        "no session before the server assigns one"
    );
    assert_eq!(
        res["mcp_session"], "s-1",
        "the response that assigns it carries it"
    );
    let all = serde_json::to_string(&records).unwrap();
    assert!(
        !all.contains("gateway-secret"),
        "the credential is never recorded"
    );
    assert!(!all.contains("leftover-client-key"));
    assert!(
        !all.contains("A-1"),
        "arguments are not recorded before masking"
    );
}

fn s_port(h: &Harness) -> u16 {
    // the upstream's port, as the Host header names it
    let seen = h.seen();
    seen[0]
        .header("host")
        .and_then(|v| v.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn batches_pipelining_and_sessions() {
    let mut h = Harness::new(Chain::default()).await;
    let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","method":"notifications/initialized"},{"jsonrpc":"2.0","id":"b","method":"resources/read","params":{"uri":"ehr://p/1"}}]"#;
    let mut s = TcpStream::connect(h.front).await.unwrap();
    // two requests in one write: answered in order
    let mut both = post("/json", batch, "");
    both.extend(post("/json", CALL, "Mcp-Session-Id: s-1\r\n"));
    s.write_all(&both).await.unwrap();
    let r = responses(&mut s, 2).await;
    let first: Value = serde_json::from_slice(&r[0].body).unwrap();
    assert_eq!(first.as_array().unwrap().len(), 2);
    assert_eq!(first[1]["id"], "b");
    let second: Value = serde_json::from_slice(&r[1].body).unwrap();
    assert_eq!(second["id"], 7);
    let records = h.records().await;
    let requests: Vec<&Value> = records.iter().filter(|r| r["kind"] == "request").collect();
    assert_eq!(requests.len(), 4, "{requests:?}");
    assert_eq!(requests[1]["message"], "notification");
    assert_eq!(requests[2]["uri"], "ehr://p/1");
    assert_eq!(requests[3]["mcp_session"], "s-1");
    let responses: Vec<&Value> = records.iter().filter(|r| r["kind"] == "response").collect();
    assert_eq!(responses.len(), 3);
    assert_eq!(responses[1]["uri"], "ehr://p/1");
}

#[tokio::test]
async fn an_event_stream_arrives_whole_in_order_and_every_event_is_recorded() {
    let mut h = Harness::new(Chain::default()).await;
    let resp = one(h.front, &post("/sse?n=1000", CALL, "")).await;
    assert_eq!(resp.head.status(), 200);
    let text = String::from_utf8(resp.body.to_vec()).unwrap();
    let data: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(data.len(), 1001);
    for (i, d) in data[..1000].iter().enumerate() {
        assert_eq!(d["params"]["progress"], i, "in order");
    }
    assert_eq!(data[1000]["id"], 7);
    let records = h.records().await;
    let from_server = records
        .iter()
        .filter(|r| r["direction"] == "server_to_client")
        .count();
    assert_eq!(from_server, 1001);
}

#[tokio::test]
async fn smuggling_and_malformed_frames_get_400_and_a_record() {
    let mut h = Harness::new(Chain::default()).await;
    let vectors: [(&str, &[u8]); 5] = [
        ("te-and-cl", b"POST /json HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("cl-mismatch", b"POST /json HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde"),
        ("obs-fold", b"POST /json HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n  folded\r\nContent-Length: 0\r\n\r\n"),
        ("bare-lf", b"POST /json HTTP/1.1\nHost: h\nContent-Length: 0\n\n"),
        ("bad-chunk", b"POST /json HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"),
    ];
    for (name, raw) in vectors {
        let mut s = TcpStream::connect(h.front).await.unwrap();
        s.write_all(raw).await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 400 "), "{name}: {text}");
    }
    assert!(h.seen().is_empty(), "nothing reached the server");
    let records = h.records().await;
    let rejects: Vec<&Value> = records.iter().filter(|r| r["kind"] == "reject").collect();
    assert_eq!(rejects.len(), 5);
    assert!(
        rejects
            .iter()
            .all(|r| r["reason"].as_str().unwrap().starts_with("http framing: "))
    );
    // the pipeline still serves
    assert_eq!(
        one(h.front, &post("/json", CALL, "")).await.head.status(),
        200
    );
}

#[tokio::test]
async fn a_stage_answers_with_a_json_rpc_error_and_nothing_is_forwarded() {
    let mut h = Harness::new(Chain::new(vec![Arc::new(DenyDrop)])).await;
    let drop_call = r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"drop_table","arguments":{}}}"#;
    let resp = one(h.front, &post("/json", drop_call, "")).await;
    let v: Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(v["id"], 9);
    assert_eq!(v["error"]["code"], -32001);
    assert_eq!(v["error"]["message"], "denied by policy no-drops");
    assert!(h.seen().is_empty());
    // a batch with one refused message is refused whole, each request told why
    let batch = format!(r#"[{CALL},{drop_call}]"#);
    let resp = one(h.front, &post("/json", &batch, "")).await;
    let v: Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(v[0]["id"], 7);
    assert!(
        v[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("another message of its batch")
    );
    assert_eq!(v[1]["error"]["message"], "denied by policy no-drops");
    assert!(h.seen().is_empty());
    let records = h.records().await;
    let decisions: Vec<&Value> = records.iter().filter(|r| r["kind"] == "decision").collect();
    assert_eq!(decisions.len(), 2);
    assert_eq!(decisions[0]["decision"], "deny");
    assert_eq!(decisions[0]["policies"], json!(["no-drops"]));
    assert_eq!(decisions[0]["tool"], "drop_table");
}

#[tokio::test]
async fn stateless_requests_must_mirror_the_body_in_their_headers() {
    let h = Harness::new(Chain::default()).await;
    let ok = post(
        "/json",
        CALL,
        "MCP-Protocol-Version: 2026-07-28\r\nMcp-Method: tools/call\r\nMcp-Name: lookup_patient\r\n",
    );
    assert_eq!(one(h.front, &ok).await.head.status(), 200);
    let lying = post(
        "/json",
        CALL,
        "MCP-Protocol-Version: 2026-07-28\r\nMcp-Method: tools/call\r\nMcp-Name: harmless\r\n",
    );
    let resp = one(h.front, &lying).await;
    assert_eq!(resp.head.status(), 400);
    let v: Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(v["error"]["code"], mcp::code::HEADER_MISMATCH);
    assert_eq!(
        h.seen().len(),
        1,
        "the mismatched request was not forwarded"
    );
}

#[tokio::test]
async fn invalid_json_rpc_expect_continue_and_plain_http() {
    let mut h = Harness::new(Chain::default()).await;
    let resp = one(h.front, &post("/json", "{not json", "")).await;
    assert_eq!(resp.head.status(), 400);
    let v: Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(v["error"]["code"], mcp::code::PARSE_ERROR);

    // Expect: 100-continue: the agent answers 100 itself, then the real response
    let mut s = TcpStream::connect(h.front).await.unwrap();
    let head = format!(
        "POST /json HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        CALL.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut first = [0u8; 25];
    s.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(CALL.as_bytes()).await.unwrap();
    let r = responses(&mut s, 1).await;
    assert_eq!(r[0].head.status(), 200);
    assert!(h.seen().iter().all(|s| s.header("expect").is_none()));

    let health = one(h.front, b"GET /health?probe=1 HTTP/1.1\r\nHost: h\r\n\r\n").await;
    assert_eq!(&health.body[..], b"ok");
    let records = h.records().await;
    let http = records
        .iter()
        .find(|r| r["kind"] == "http")
        .expect("an http record");
    assert_eq!(http["http"], "GET /health");
    assert_eq!(http["status"], 200);
}
