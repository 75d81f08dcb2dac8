//! The MCP data path end to end, as root on the real kernel: the official MCP
//! Python SDK (2.x server; 2.x and 1.x clients) serving streamable HTTP over
//! TLS from a network namespace with its own test CA and a required bearer
//! token. Clients hold a wrong, leftover token and trust only the host's
//! interception CA (SSL_CERT_FILE); they are not changed in any other way.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mcp_warden_tests::{
    Agent, ClientRun, McpServer, NetNs, TestCgroup, TestPki, output_text, run, write_secret,
};
use serde_json::{Value, json};

const SERVER_TOKEN: &str = "gw-7c1e5a-server-token";
const LEFTOVER: &str = "leftover-client-key-93b2";
const PORT: u16 = 8443;

/// A server in its namespace, an agent holding the server's token, a cgroup
/// for the clients, and the CA files each side trusts.
struct Setup {
    agent: Agent,
    cg: TestCgroup,
    ns: NetNs,
    pki: TestPki,
    server: McpServer,
    agent_ca: PathBuf,
    _secrets: tempfile::TempDir,
}

impl Setup {
    fn new(server_flags: &[&str], endpoint_lines: &[&str]) -> Setup {
        let cg = TestCgroup::new();
        let ns = NetNs::new();
        let pki = TestPki::new(ns.peer_v4().into());
        let server = McpServer::start(&ns, &pki, PORT, SERVER_TOKEN, server_flags);
        let secrets = tempfile::tempdir().unwrap();
        let token_file = secrets.path().join("server-token");
        write_secret(&token_file, SERVER_TOKEN);
        let mut lines = vec![
            format!("upstream_ca = {:?}", pki.ca.display().to_string()),
            "credential = \"srv\"".to_string(),
        ];
        lines.extend(endpoint_lines.iter().map(|l| l.to_string()));
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let agent = Agent::builder(&cg)
            .mcp_endpoint("ehr", &[format!("{}:{PORT}", ns.peer_v4())], &lines)
            .toml(&format!(
                "[credential.srv]\nkind = \"bearer\"\nfile = {:?}\n",
                token_file.display().to_string()
            ))
            .start();
        let agent_ca = agent.export_ca();
        Setup {
            agent,
            cg,
            ns,
            pki,
            server,
            agent_ca,
            _secrets: secrets,
        }
    }

    fn url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://{}:{PORT}{path}", self.ns.peer_v4())
    }

    /// The same client run direct (right token, test CA) and through the
    /// agent (leftover token, agent CA): both results, which must agree.
    fn both(&self, sdk: &str, era: &str, transport: &str, path: &str, calls: &str) -> Value {
        let direct = ClientRun {
            sdk,
            url: self.url("https", path),
            token: SERVER_TOKEN,
            ca_file: &self.pki.ca,
            era,
            transport,
            calls,
        }
        .run(None);
        let via = ClientRun {
            sdk,
            url: self.url("https", path),
            token: LEFTOVER,
            ca_file: &self.agent_ca,
            era,
            transport,
            calls,
        }
        .run(Some(&self.cg));
        assert_eq!(
            via, direct,
            "{sdk} {era} {transport}: through the agent == direct"
        );
        via
    }

    /// Every request that came through the agent carried the gateway's
    /// token, never the client's.
    fn assert_server_saw_only_the_gateway_token(&self) {
        let seen = self.server.seen();
        assert!(!seen.is_empty());
        for s in seen.iter().filter(|s| s["path"] != "/health") {
            assert_eq!(
                s["authorization"],
                json!(format!("Bearer {SERVER_TOKEN}")),
                "{s}"
            );
            assert!(s["x_api_key"].is_null() && s["cookie"].is_null(), "{s}");
        }
    }

    /// Nothing the agent wrote (audit, CA, log, state) holds either token.
    fn assert_no_token_written(&self) {
        let mut files = Vec::new();
        walk(self.agent.dir(), &mut files);
        assert!(files.len() > 3, "{files:?}");
        for f in files {
            let Ok(bytes) = std::fs::read(&f) else {
                continue;
            };
            for secret in [SERVER_TOKEN, LEFTOVER] {
                assert!(
                    memfind(&bytes, secret.as_bytes()).is_none(),
                    "{} holds a token",
                    f.display()
                );
            }
        }
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn memfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

const CALLS: &str = r#"[{"tool":"echo","arguments":{"text":"hello from a legacy script"}},{"tool":"add","arguments":{"a":2,"b":40}}]"#;

fn tools_of(result: &Value) -> Vec<String> {
    result["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn sdk_clients_of_both_eras_go_through_with_the_gateway_token() {
    let s = Setup::new(&[], &[]);
    let v2 = s.both("mcp2", "handshake", "streamable-http", "/mcp", CALLS);
    assert!(tools_of(&v2).contains(&"echo".to_string()));
    assert_eq!(
        v2["results"][0]["content"][0]["text"],
        "hello from a legacy script"
    );
    assert_eq!(v2["results"][1]["structuredContent"]["result"], 42);
    let modern = s.both("mcp2", "modern", "streamable-http", "/mcp", CALLS);
    assert_eq!(modern["protocol_version"], "2026-07-28");
    let v1 = s.both("mcp1", "handshake", "streamable-http", "/mcp", CALLS);
    assert_eq!(v1["results"], v2["results"]);
    s.assert_server_saw_only_the_gateway_token();

    // one record per message, naming tool and caller; sessions and versions carried
    let records = s.agent.wait_records("tools/call records", |r| {
        r.iter()
            .filter(|r| r["kind"] == "request" && r["method"] == "tools/call")
            .count()
            >= 6
    });
    let calls: Vec<&Value> = records
        .iter()
        .filter(|r| r["kind"] == "request" && r["method"] == "tools/call")
        .collect();
    for c in &calls {
        assert!(c["tool"] == "echo" || c["tool"] == "add", "{c}");
        assert_eq!(c["identity"]["uid"], 0, "{c}");
        assert!(
            c["identity"]["exe"].as_str().unwrap().contains("python"),
            "{c}"
        );
        assert_eq!(c["endpoint"], "ehr");
        assert_eq!(c["payload_sha256"].as_str().unwrap().len(), 64);
        assert_eq!(
            c["payload"]["params"]["name"], c["tool"],
            "the masked payload is kept"
        );
    }
    assert!(calls.iter().any(|c| c["protocol_version"] == "2026-07-28"));
    assert!(
        calls.iter().any(|c| c["mcp_session"].is_string()),
        "stateful sessions carry their id"
    );
    let responses = records
        .iter()
        .filter(|r| r["kind"] == "response" && r["method"] == "tools/call")
        .count();
    assert!(
        responses >= 6,
        "every call's response is recorded and matched"
    );
    assert!(records.iter().any(|r| r["method"] == "initialize"));
    s.assert_no_token_written();
}

#[test]
fn json_bodies_and_stateless_servers() {
    let s = Setup::new(&["--json-response", "--stateless"], &[]);
    let v2 = s.both("mcp2", "handshake", "streamable-http", "/mcp", CALLS);
    assert_eq!(v2["results"][1]["structuredContent"]["result"], 42);
    s.both("mcp2", "modern", "streamable-http", "/mcp", CALLS);
    s.both("mcp1", "handshake", "streamable-http", "/mcp", CALLS);
    s.assert_server_saw_only_the_gateway_token();
}

#[test]
fn json_bodies_on_a_stateful_server() {
    let s = Setup::new(&["--json-response"], &[]);
    s.both("mcp2", "handshake", "streamable-http", "/mcp", CALLS);
    s.both("mcp1", "handshake", "streamable-http", "/mcp", CALLS);
}

#[test]
fn the_legacy_http_sse_transport_is_correlated() {
    let s = Setup::new(&["--transport", "sse"], &[]);
    let calls = r#"[{"tool":"echo","arguments":{"text":"legacy"}},{"tool":"ask","arguments":{"question":"proceed?"}}]"#;
    let v = s.both("mcp2", "handshake", "sse", "/sse", calls);
    assert_eq!(v["results"][0]["content"][0]["text"], "legacy");
    s.both("mcp1", "handshake", "sse", "/sse", calls);
    let records = s.agent.wait_records("legacy responses", |r| {
        r.iter()
            .filter(|r| r["kind"] == "response" && r["tool"] == "echo")
            .count()
            >= 2
    });
    // the POSTs and the GET stream are one session: responses on the stream
    // are matched to requests POSTed on other connections
    let resp = records
        .iter()
        .find(|r| r["kind"] == "response" && r["tool"] == "echo")
        .unwrap();
    assert!(
        resp["mcp_session"]
            .as_str()
            .unwrap()
            .starts_with("legacy /messages/"),
        "{resp}"
    );
    assert!(resp["latency_us"].is_u64());
    // the server's elicitation request arrives on the stream, the client's answer is matched to it
    assert!(
        records
            .iter()
            .any(|r| r["direction"] == "server_to_client" && r["method"] == "elicitation/create")
    );
    assert!(records.iter().any(|r| r["direction"] == "client_to_server"
        && r["kind"] == "response"
        && r["method"] == "elicitation/create"));
    s.assert_server_saw_only_the_gateway_token();
}

#[test]
fn a_plain_http_client_is_upgraded_to_tls_upstream() {
    let s = Setup::new(&[], &["client_tls = \"plain\""]);
    let via = ClientRun {
        sdk: "mcp2",
        url: s.url("http", "/mcp"),
        token: LEFTOVER,
        ca_file: &s.agent_ca,
        era: "handshake",
        transport: "streamable-http",
        calls: CALLS,
    }
    .run(Some(&s.cg));
    assert_eq!(via["results"][1]["structuredContent"]["result"], 42);
    s.assert_server_saw_only_the_gateway_token();
}

#[test]
fn large_results_and_long_event_streams_arrive_intact_in_order() {
    let s = Setup::new(&[], &[]);
    let calls =
        r#"[{"tool":"big","arguments":{"size":5000000}},{"tool":"ticks","arguments":{"n":1000}}]"#;
    let v = s.both("mcp2", "handshake", "streamable-http", "/mcp", calls);
    assert_eq!(v["results"][0]["content"][0]["length"], 5_000_000);
    assert_eq!(v["results"][1]["content"][0]["text"], "ticked 1000");
    let records = s.agent.wait_records("1000 progress records", |r| {
        r.iter()
            .filter(|r| r["direction"] == "server_to_client" && r["message"] == "notification")
            .count()
            >= 1000
    });
    let big = records
        .iter()
        .find(|r| r["kind"] == "response" && r["tool"] == "big")
        .unwrap();
    assert!(big["size"].as_u64().unwrap() > 5_000_000, "{big}");
}

/// curl with raw JSON-RPC, through a plain-HTTP endpoint to the TLS server.
fn curl_json(s: &Setup, body: &str, headers: &[&str]) -> (u16, Value, String) {
    let mut cmd = s.cg.command("curl");
    cmd.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-X", "POST"])
        .args(["-H", "Content-Type: application/json"])
        .args(["-H", "Accept: application/json, text/event-stream"])
        .args(["-H", &format!("Authorization: Bearer {LEFTOVER}")]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    cmd.args(["--data-binary", body, &s.url("http", "/mcp")]);
    let out = run(cmd, Duration::from_secs(30));
    let text = output_text(&out.stdout);
    let (body, code) = text
        .trim_end()
        .rsplit_once('\n')
        .unwrap_or(("", text.trim()));
    let json = body
        .lines()
        .find_map(|l| {
            l.strip_prefix("data: ")
                .or(Some(l))
                .and_then(|d| serde_json::from_str(d).ok())
        })
        .unwrap_or(Value::Null);
    (code.parse().unwrap_or(0), json, body.to_string())
}

#[test]
fn curl_raw_json_rpc_including_a_2025_03_26_batch() {
    let s = Setup::new(
        &["--json-response", "--stateless"],
        &["client_tls = \"plain\""],
    );
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"curl","version":"8"}}}"#;
    let (code, v, _) = curl_json(&s, init, &[]);
    assert_eq!(code, 200);
    assert_eq!(v["id"], 1);
    let batch = r#"[{"jsonrpc":"2.0","id":2,"method":"tools/list"},{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"text":"in a batch"}}}]"#;
    let (code, _v, body) = curl_json(&s, batch, &["MCP-Protocol-Version: 2025-03-26"]);
    assert!(code == 200 || code == 400, "{code} {body}");
    let records = s.agent.wait_records("batch records", |r| {
        r.iter().any(|r| r["kind"] == "request" && r["rpc_id"] == 3)
    });
    let in_batch: Vec<&Value> = records
        .iter()
        .filter(|r| r["kind"] == "request" && (r["rpc_id"] == 2 || r["rpc_id"] == 3))
        .collect();
    assert_eq!(
        in_batch.len(),
        2,
        "each message of the batch has its record"
    );
    assert_eq!(in_batch[1]["tool"], "echo");
    // non-MCP HTTP passes and is recorded as HTTP
    let mut cmd = s.cg.command("curl");
    cmd.args(["-sS", &s.url("http", "/health")]);
    assert_eq!(
        output_text(&run(cmd, Duration::from_secs(30)).stdout).trim(),
        "ok"
    );
    s.agent.wait_records("the http record", |r| {
        r.iter()
            .any(|r| r["kind"] == "http" && r["http"] == "GET /health" && r["status"] == 200)
    });
}

#[test]
fn smuggling_vectors_and_malformed_frames_get_400_and_are_recorded() {
    let mut s = Setup::new(&[], &["client_tls = \"plain\""]);
    let before = s.server.seen().len();
    let vectors = [
        (
            "te-cl",
            "POST /mcp HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
        ),
        (
            "cl-cl",
            "POST /mcp HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabc",
        ),
        (
            "obs-fold",
            "GET /mcp HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n folded\r\n\r\n",
        ),
        (
            "bad-chunk",
            "POST /mcp HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nx\r\n0\r\n\r\n",
        ),
        ("bare-lf", "GET /mcp HTTP/1.1\nHost: h\n\n"),
        (
            "te-not-chunked",
            "POST /mcp HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\nxyz",
        ),
    ];
    for (name, raw) in vectors {
        let script = format!(
            "import socket,sys\ns=socket.create_connection(('{}',{PORT}))\ns.sendall(sys.argv[1].encode())\nprint(s.recv(200).decode('latin-1').split('\\r\\n')[0])",
            s.ns.peer_v4()
        );
        let mut cmd = s.cg.command(mcp_warden_tests::python());
        cmd.args(["-c", &script, raw]);
        let out = run(cmd, Duration::from_secs(20));
        let line = output_text(&out.stdout);
        assert!(
            line.starts_with("HTTP/1.1 400"),
            "{name}: {line} {}",
            output_text(&out.stderr)
        );
    }
    assert!(s.agent.is_running(), "the agent stays up");
    assert_eq!(s.server.seen().len(), before, "nothing reached the server");
    let records = s.agent.wait_records("six rejects", |r| {
        r.iter().filter(|r| r["kind"] == "reject").count() >= 6
    });
    let reasons: Vec<&str> = records
        .iter()
        .filter(|r| r["kind"] == "reject")
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons.iter().all(|r| r.starts_with("http framing: ")),
        "{reasons:?}"
    );
    // and it still serves MCP
    let (code, v, _) = curl_json(
        &s,
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"curl","version":"8"}}}"#,
        &[],
    );
    assert_eq!((code, v["id"].clone()), (200, json!(1)));
}

/// The synthetic patients' identifiers (tests/peers/mcp_server.py PATIENTS
/// and NOTE), in every form a record or a result might carry them.
const PHI: [&str; 14] = [
    "Maria",
    "Lopez",
    "Whitaker",
    "536-22-8741",
    "401-73-2219",
    "432-1187",
    "771-2093",
    "maria.lopez@",
    "jwhitaker@",
    "MRN-0042117",
    "MRN-0042118",
    "4-03-12",
    "9-11-30",
    "03/12/",
];

const PATIENT_CALLS: &str = r#"[{"tool":"patients","arguments":{}},{"tool":"patients_csv","arguments":{}},{"tool":"echo","arguments":{"text":"lookup for Maria Lopez, SSN 536-22-8741"}}]"#;

#[test]
fn patient_records_reach_neither_the_client_nor_the_audit() {
    // SSE responses (the SDK's default), then JSON responses
    for flags in [&[][..], &["--json-response"][..]] {
        let s = Setup::new(flags, &[]);
        let run = |sdk, token, ca_file, cg| {
            ClientRun {
                sdk,
                url: s.url("https", "/mcp"),
                token,
                ca_file,
                era: "handshake",
                transport: "streamable-http",
                calls: PATIENT_CALLS,
            }
            .run(cg)
        };
        // direct, the identifiers are all there: the test data is not vacuous
        let direct = run("mcp2", SERVER_TOKEN, &s.pki.ca, None).to_string();
        for phi in PHI {
            assert!(direct.contains(phi), "{phi:?} missing from the test data");
        }
        for sdk in ["mcp2", "mcp1"] {
            let via = run(sdk, LEFTOVER, &s.agent_ca, Some(&s.cg));
            let text = via.to_string();
            for phi in PHI {
                assert!(
                    !text.contains(phi),
                    "{flags:?} {sdk}: {phi:?} reached the client: {text}"
                );
            }
            // what identifies nobody comes through as it was; dates keep their year
            for kept in [
                "E11.9",
                "I10",
                "Hello from the test EHR.",
                "continue metformin",
                "1984",
                "lookup for",
            ] {
                assert!(
                    text.contains(kept),
                    "{flags:?} {sdk}: {kept:?} was lost: {text}"
                );
            }
            // the SDK's text copy of the rows is masked exactly as the rows
            let rows = &via["results"][0];
            let copy: Value =
                serde_json::from_str(rows["content"][0]["text"].as_str().unwrap()).unwrap();
            assert_eq!(copy, rows["structuredContent"], "{flags:?} {sdk}");
        }

        let records = s.agent.wait_records("the patients responses", |r| {
            r.iter()
                .filter(|r| r["kind"] == "response" && r["tool"] == "patients")
                .count()
                >= 2
        });
        let rows = records
            .iter()
            .find(|r| r["kind"] == "response" && r["tool"] == "patients")
            .unwrap();
        for kind in ["name", "ssn", "date", "phone", "email", "mrn"] {
            assert!(
                rows["masked"][kind].as_u64().unwrap_or(0) >= 2,
                "{kind} counted: {}",
                rows["masked"]
            );
        }
        assert!(rows["payload"]["result"]["structuredContent"].is_object());
        // the client's arguments are kept masked too (they reached the server as sent)
        let echo = records
            .iter()
            .find(|r| r["kind"] == "request" && r["tool"] == "echo")
            .unwrap();
        let arg = echo["payload"]["params"]["arguments"]["text"]
            .as_str()
            .unwrap();
        assert!(
            arg.starts_with("lookup for ") && !arg.contains("Lopez"),
            "{arg}"
        );
        // nothing the agent wrote holds an identifier: audit segments, index, log, state
        let mut files = Vec::new();
        walk(s.agent.dir(), &mut files);
        for f in &files {
            let Ok(bytes) = std::fs::read(f) else {
                continue;
            };
            for phi in PHI {
                assert!(
                    memfind(&bytes, phi.as_bytes()).is_none(),
                    "{flags:?}: {} holds {phi:?}",
                    f.display()
                );
            }
        }
    }
}
