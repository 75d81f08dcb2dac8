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
        Self::prepared(server_flags, endpoint_lines, |_| {})
    }

    /// [`new`](Self::new), with `prepare` run on the agent's files after
    /// its config is written and before it starts.
    fn prepared(
        server_flags: &[&str],
        endpoint_lines: &[&str],
        prepare: impl FnOnce(&Agent),
    ) -> Setup {
        Self::configured(server_flags, endpoint_lines, "", prepare)
    }

    /// [`prepared`](Self::prepared), with `toml` added to the agent's config.
    fn configured(
        server_flags: &[&str],
        endpoint_lines: &[&str],
        toml: &str,
        prepare: impl FnOnce(&Agent),
    ) -> Setup {
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
        let mut agent = Agent::builder(&cg)
            .mcp_endpoint("ehr", &[format!("{}:{PORT}", ns.peer_v4())], &lines)
            .toml(&format!(
                "[credential.srv]\nkind = \"bearer\"\nfile = {:?}\n",
                token_file.display().to_string()
            ))
            .toml(toml)
            .build();
        prepare(&agent);
        agent.start();
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

    /// Nothing the agent wrote (audit, index, log, state) holds an
    /// identifier of the synthetic patients.
    fn assert_no_phi_written(&self, what: &str) {
        let mut files = Vec::new();
        walk(self.agent.dir(), &mut files);
        for f in &files {
            let Ok(bytes) = std::fs::read(f) else {
                continue;
            };
            for phi in PHI {
                assert!(
                    memfind(&bytes, phi.as_bytes()).is_none(),
                    "{what}: {} holds {phi:?}",
                    f.display()
                );
            }
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

    // `sessions list` shows each MCP session once, with the GET stream's
    // connection and the POSTs' connections together
    let list: Value = serde_json::from_str(&subcommand_ok(
        &s.agent,
        &["sessions", "list", "--format", "json"],
    ))
    .unwrap();
    let legacy: Vec<&Value> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| {
            x["mcp_session"]
                .as_str()
                .is_some_and(|m| m.starts_with("legacy /messages/"))
        })
        .collect();
    assert_eq!(legacy.len(), 2, "one per client run: {list}");
    for session in legacy {
        let conns: Vec<&str> = session["connections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert!(conns.len() >= 2, "stream and POSTs: {session}");
        assert!(session["calls"].as_u64().unwrap() >= 3, "{session}");
        let mcp = session["mcp_session"].as_str().unwrap();
        let shown: Vec<Value> = subcommand_ok(&s.agent, &["sessions", "show", mcp])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(shown.len() as u64, session["records"].as_u64().unwrap());
        for r in &shown {
            assert!(conns.contains(&r["session"].as_str().unwrap()), "{r}");
            assert!(r["mcp_session"].is_null() || r["mcp_session"] == mcp, "{r}");
        }
        for conn in &conns {
            assert!(
                shown
                    .iter()
                    .any(|r| r["session"] == *conn && r["kind"] == "connect")
            );
        }
    }
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
        s.assert_no_phi_written(&format!("{flags:?}"));
    }
}

#[test]
fn patient_results_over_max_bytes_stream_masked_from_the_sdk_server() {
    // SSE responses (the SDK's default: one event per result), then JSON bodies
    for flags in [&[][..], &["--json-response"][..]] {
        let s = Setup::configured(
            flags,
            &["mask = \"streaming\""],
            "[mask.streaming]\nmax_bytes = 600\noversize = \"stream\"\n",
            |_| {},
        );
        let via = ClientRun {
            sdk: "mcp2",
            url: s.url("https", "/mcp"),
            token: LEFTOVER,
            ca_file: &s.agent_ca,
            era: "handshake",
            transport: "streamable-http",
            calls: PATIENT_CALLS,
        }
        .run(Some(&s.cg));
        let text = via.to_string();
        for phi in PHI {
            assert!(
                !text.contains(phi),
                "{flags:?}: {phi:?} reached the client: {text}"
            );
        }
        for kept in ["E11.9", "I10", "Hello from the test EHR.", "1984"] {
            assert!(text.contains(kept), "{flags:?}: {kept:?} was lost: {text}");
        }
        let records = s.agent.wait_records("the streamed patients response", |r| {
            r.iter()
                .any(|r| r["kind"] == "response" && r["tool"] == "patients")
        });
        let rows = records
            .iter()
            .find(|r| r["kind"] == "response" && r["tool"] == "patients")
            .unwrap();
        assert!(
            rows["payload_omitted"]
                .as_str()
                .is_some_and(|p| p.starts_with("streamed")),
            "{flags:?}: {rows}"
        );
        assert!(rows["masked"]["ssn"].as_u64() >= Some(2), "{rows}");
        s.assert_no_phi_written(&format!("{flags:?}"));
    }
}

/// A `tools/call` of `echo` with JSON-RPC id `id`, by curl through the plain
/// endpoint: (HTTP status, the JSON-RPC answer).
fn call_echo(s: &Setup, id: u64) -> (u16, Value) {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": format!("call {id}")}}});
    let (code, v, _) = curl_json(s, &body.to_string(), &["MCP-Protocol-Version: 2025-03-26"]);
    (code, v)
}

fn answered(v: &Value, id: u64) -> bool {
    v["id"] == id && v["result"]["content"][0]["text"] == format!("call {id}")
}

/// JSON-RPC ids of the tools/call requests the server received.
fn server_call_ids(s: &Setup) -> Vec<u64> {
    s.server
        .seen()
        .iter()
        .filter(|l| l["mcp_method"] == "tools/call")
        .filter_map(|l| l["rpc_id"].as_u64())
        .collect()
}

/// JSON-RPC ids of the tools/call request records in the audit.
fn audit_call_ids(records: &[Value]) -> Vec<u64> {
    records
        .iter()
        .filter(|r| {
            r["kind"] == "request"
                && r["method"] == "tools/call"
                && r["direction"] == "client_to_server"
        })
        .filter_map(|r| r["rpc_id"].as_u64())
        .collect()
}

fn subcommand_ok(agent: &Agent, args: &[&str]) -> String {
    let config = agent.config_path().display().to_string();
    let mut all = args.to_vec();
    all.extend(["--config", &config]);
    let out = agent.run_subcommand(&all);
    assert!(
        out.status.success(),
        "mcp-warden {args:?} failed ({}):\n{}\n{}",
        out.status,
        output_text(&out.stdout),
        output_text(&out.stderr)
    );
    output_text(&out.stdout)
}

fn store_records(agent: &Agent) -> Vec<Value> {
    subcommand_ok(agent, &["audit", "export", "--store-records"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Fills the file system at `dir` to the last byte with files under
/// `dir/filler/`, except `slack` bytes in `dir/filler/slack`, which it then
/// removes: what is left free is about `slack`.
fn fill_leaving(dir: &Path, slack: usize) {
    use std::io::Write;
    let filler = dir.join("filler");
    std::fs::create_dir_all(&filler).unwrap();
    std::fs::write(filler.join("slack"), vec![b's'; slack]).unwrap();
    let mut f = std::fs::File::create(filler.join("fill")).unwrap();
    let chunk = vec![b'f'; 4096];
    loop {
        match f.write_all(&chunk).and_then(|()| f.sync_all()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", dir.display()),
        }
    }
    std::fs::remove_file(filler.join("slack")).unwrap();
}

#[test]
fn a_full_audit_disk_refuses_data_calls_keeps_the_agent_up_and_recovers() {
    // the audit dir is a 3 MiB tmpfs (declared first: unmounted after the agent stops)
    let disk = mcp_warden_tests::Tmpfs::new("3m");
    let mut s = Setup::prepared(
        &["--json-response", "--stateless"],
        &["client_tls = \"plain\""],
        |agent| {
            std::fs::create_dir_all(agent.state_dir()).unwrap();
            std::os::unix::fs::symlink(disk.path(), agent.state_dir().join("audit")).unwrap();
        },
    );
    let (code, v) = call_echo(&s, 1);
    assert!(code == 200 && answered(&v, 1), "{code} {v}");

    fill_leaving(disk.path(), 48 * 1024);
    let mut acknowledged = vec![1];
    let refused = (2..2000)
        .find_map(|id| {
            let (code, v) = call_echo(&s, id);
            if code == 200 && answered(&v, id) {
                acknowledged.push(id);
                None
            } else {
                Some((id, code, v))
            }
        })
        .expect("the store never filled up");
    let (refused_id, code, v) = refused;
    eprintln!(
        "full disk: {} calls acknowledged, call {refused_id} refused: {v}",
        acknowledged.len()
    );
    assert!(
        acknowledged.len() > 2,
        "calls went through while there was space"
    );
    assert_eq!(code, 503, "{v}");
    assert_eq!(v["id"], refused_id, "{v}");
    assert_eq!(v["error"]["code"], -32603, "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("the audit store is full") && message.contains("not forwarded"),
        "{message}"
    );
    assert!(
        !server_call_ids(&s).contains(&refused_id),
        "a refused call never reaches the server"
    );

    // the agent stays up: status, and a call that reads no data
    assert!(s.agent.is_running());
    assert!(subcommand_ok(&s.agent, &["status"]).contains("running (pid"));
    let (code, v, _) = curl_json(
        &s,
        r#"{"jsonrpc":"2.0","id":9001,"method":"tools/list"}"#,
        &["MCP-Protocol-Version: 2025-03-26"],
    );
    assert_eq!(code, 200, "{v}");
    assert!(
        v["result"]["tools"]
            .as_array()
            .is_some_and(|t| !t.is_empty()),
        "{v}"
    );
    let (code, v) = call_echo(&s, 9002);
    assert_eq!(code, 503, "still full: {v}");

    // space returns: calls go through again
    std::fs::remove_dir_all(disk.path().join("filler")).unwrap();
    let back =
        mcp_warden_tests::wait_until(mcp_warden_tests::WAIT, "a call to succeed again", || {
            static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(10_000);
            let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let (code, v) = call_echo(&s, id);
            (code == 200 && answered(&v, id)).then_some(id)
        });
    acknowledged.push(back);
    assert!(s.agent.is_running());
    assert!(s.agent.stop().success());

    let report = subcommand_ok(&s.agent, &["audit", "verify"]);
    assert!(report.starts_with("OK"), "{report}");
    let records = store_records(&s.agent);
    let failure = records
        .iter()
        .find(|r| r["kind"] == "recovery" && r["cause"] == "write_failure")
        .expect("a write_failure recovery record");
    assert!(failure["refused"].as_u64().unwrap() >= 2, "{failure}");
    let audited = audit_call_ids(&records);
    for id in &acknowledged {
        assert!(audited.contains(id), "acknowledged call {id} has no record");
    }
    for id in server_call_ids(&s) {
        assert!(
            audited.contains(&id),
            "call {id} reached the server without a record"
        );
    }
    // the review report shows the refusals
    let html = s.agent.dir().join("review.html");
    let html_arg = html.display().to_string();
    subcommand_ok(&s.agent, &["audit", "report", "--html", &html_arg]);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("Integrity verified"));
    assert!(page.contains("audit record not durable"), "refusals listed");
}

#[test]
fn kill_9_under_concurrent_calls_loses_no_record_of_a_forwarded_call() {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};
    const CLIENTS: u64 = 4;
    let mut s = Setup::new(
        &["--json-response", "--stateless"],
        &["client_tls = \"plain\""],
    );
    let pid = s.agent.pid().unwrap() as i32;
    let acknowledged = Mutex::new(Vec::new());
    let failed_after_kill = Mutex::new(0u64);
    let killed = AtomicBool::new(false);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for client in 0..CLIENTS {
            let (s, acknowledged, failed, killed, stop) =
                (&s, &acknowledged, &failed_after_kill, &killed, &stop);
            scope.spawn(move || {
                for i in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let id = (client + 1) * 1_000_000 + i;
                    let (code, v) = call_echo(s, id);
                    if code == 200 && answered(&v, id) {
                        acknowledged.lock().unwrap().push(id);
                    } else if killed.load(Ordering::SeqCst) {
                        *failed.lock().unwrap() += 1;
                    } else {
                        panic!("call {id} failed before the kill: {code} {v}");
                    }
                }
            });
        }
        mcp_warden_tests::wait_for(mcp_warden_tests::WAIT, "40 acknowledged calls", || {
            acknowledged.lock().unwrap().len() >= 40
        });
        killed.store(true, Ordering::SeqCst);
        // SAFETY: SIGKILL to the agent, our own child (reaped by kill9 below).
        unsafe { libc::kill(pid, libc::SIGKILL) };
        mcp_warden_tests::wait_for(
            mcp_warden_tests::WAIT,
            "calls to fail after the kill",
            || *failed_after_kill.lock().unwrap() >= CLIENTS,
        );
        stop.store(true, Ordering::SeqCst);
    });
    s.agent.kill9();
    let acknowledged = acknowledged.into_inner().unwrap();

    s.agent.start();
    let (code, v) = call_echo(&s, 7);
    assert!(
        code == 200 && answered(&v, 7),
        "after the restart: {code} {v}"
    );
    assert!(s.agent.stop().success());

    let report = subcommand_ok(&s.agent, &["audit", "verify"]);
    assert!(report.starts_with("OK"), "{report}");
    let records = store_records(&s.agent);
    assert!(
        records.iter().any(|r| r["kind"] == "recovery"
            && (r["cause"] == "torn_tail" || r["cause"] == "unclean_shutdown")),
        "the restart recorded the crash"
    );
    let audited = audit_call_ids(&records);
    let at_server = server_call_ids(&s);
    assert!(
        audited.len() >= at_server.len(),
        "{} records for {} calls at the server",
        audited.len(),
        at_server.len()
    );
    for id in &at_server {
        assert!(
            audited.contains(id),
            "call {id} reached the server without a record"
        );
    }
    for id in &acknowledged {
        assert!(
            audited.contains(id),
            "acknowledged call {id} lost its record"
        );
    }
    eprintln!(
        "kill -9: {} calls acknowledged, {} at the server, {} request records, {} failed after the kill",
        acknowledged.len(),
        at_server.len(),
        audited.len(),
        failed_after_kill.into_inner().unwrap()
    );
}
