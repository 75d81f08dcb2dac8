//! `cargo xtask bench --only mcp`: one MCP `tools/call` with TLS on both
//! sides, on loopback, by three paths measured in the same run (alternating
//! rounds, median of [`ROUNDS`]):
//!
//! - **direct**: client → upstream;
//! - **mcp-warden**: client inside the attached cgroup → agent (TLS
//!   terminated with a minted leaf, HTTP and JSON-RPC decoded, every message
//!   recorded, bearer credential injected) → upstream over kept-alive TLS;
//! - **nginx**: client → a stock nginx on loopback doing the same transport
//!   job (TLS terminated, upstream TLS verified, bearer set, upstream
//!   keep-alive): what a plain reverse proxy costs, for scale.
//!
//! The upstream is [`Upstream`], a small HTTP/1.1-over-TLS JSON-RPC server in
//! this process that requires the bearer token; the client is the
//! `bench-worker mcp` child ([`client`]), which checks every response. Each
//! worker run reports p50/p99 of sequential calls on one kept-alive connection
//! and the request rate of [`CONNS`] concurrent kept-alive connections.
//!
//! A second table shows what masking costs per call: the `patients` tool
//! answers with synthetic patient rows (one document of the masking corpus:
//! `structuredContent` and the SDK's pretty text copy of it), direct,
//! through the agent with the default safe-harbor profile, and through a
//! second endpoint with `mask = "off"`.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use mcp_warden_tests::{Agent, TestCgroup, TestPki, free_port, output_text, write_secret};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::ROUNDS;
use super::load::percentiles;

/// The token the upstream requires; the agent and nginx inject it.
const SERVER_TOKEN: &str = "bench-upstream-token-5f2a9c";
/// What a client behind a proxy holds; the proxy replaces it.
const LEFTOVER: &str = "leftover";
/// Sequential calls timed on one kept-alive connection (and calls per
/// connection in the concurrent phase).
const CALLS: u32 = 2000;
/// Untimed calls first on every connection.
const WARMUP: u32 = 200;
/// Concurrent kept-alive connections for the request rate.
const CONNS: u32 = 4;
/// Largest request head / body the upstream accepts.
const MAX_HEAD: usize = 16 * 1024;
const MAX_BODY: usize = 1024 * 1024;

/// `bench-worker mcp` flags.
#[derive(clap::Args, Debug, Default)]
pub struct McpWorkerArgs {
    /// PEM CA bundle the mcp worker trusts (the only trust anchors)
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Name the server certificate is verified for: a DNS name (sent as SNI)
    /// or an IP; default the IP of ADDR
    #[arg(long)]
    pub server_name: Option<String>,
    /// Bearer token the client sends
    #[arg(long, default_value = LEFTOVER)]
    pub token: String,
    /// Concurrent kept-alive connections for the request rate
    #[arg(long, default_value_t = CONNS)]
    pub conns: u32,
    /// Tool to call: `lookup` (answers "ok") or `patients` (patient rows)
    #[arg(long, default_value = "lookup")]
    pub tool: String,
    /// `patients` only: expect the rows masked (no identifier of the payload
    /// in the response) rather than exactly as the upstream sent them
    #[arg(long)]
    pub masked: bool,
}

/// The `patients` tool's result: the first structured-rows document of the
/// masking corpus (seeded, so upstream and client build the same one).
fn patients_result() -> &'static Value {
    static RESULT: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    RESULT.get_or_init(|| {
        let doc = mcp_warden::mask::corpus::generate(mcp_warden::mask::corpus::BENCH_SEED, 1)
            .into_iter()
            .find(|d| d.kind == mcp_warden::mask::corpus::DocKind::StructuredJson)
            .expect("the corpus has structured rows");
        let mut msg: Value = serde_json::from_slice(&doc.bytes).expect("corpus JSON");
        msg["result"].take()
    })
}

/// The identifiers in [`patients_result`]'s rows (the values of its
/// identifier columns), none of which a masked response may hold.
fn patient_identifiers() -> Vec<String> {
    patients_result()["structuredContent"]["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|row| {
            ["patient_name", "ssn", "phone", "email", "member_id", "mrn"]
                .into_iter()
                .filter_map(|k| row[k].as_str().map(str::to_owned))
        })
        .collect()
}

/// `xtask bench-mcp`: sets up upstream, agent and nginx, runs the rounds,
/// prints the table.
pub fn run() -> Result<()> {
    crate::require_root("the MCP benchmark")?;
    ensure!(
        std::env::var_os("MCP_WARDEN_BIN").is_some(),
        "MCP_WARDEN_BIN must name the (release) agent binary; run this through `cargo xtask bench --only mcp`"
    );
    let pki = TestPki::new(Ipv4Addr::LOCALHOST.into());
    let upstream = Upstream::start(&pki, SERVER_TOKEN)?;
    // the same server again, behind an endpoint that does not mask
    let unmasked = Upstream::start(&pki, SERVER_TOKEN)?;
    let secrets = tempfile::Builder::new()
        .prefix("mcp-warden-bench-")
        .tempdir()?;
    let token_file = secrets.path().join("server-token");
    write_secret(&token_file, SERVER_TOKEN);

    let attached = TestCgroup::new();
    let bare = TestCgroup::new();
    let upstream_ca = format!("upstream_ca = {:?}", pki.ca.display().to_string());
    let agent = Agent::builder(&attached)
        .mcp_endpoint(
            "bench-mcp",
            &[upstream.addr.to_string()],
            &[upstream_ca.as_str(), "credential = \"upstream\""],
        )
        .mcp_endpoint(
            "bench-mcp-unmasked",
            &[unmasked.addr.to_string()],
            &[
                upstream_ca.as_str(),
                "credential = \"upstream\"",
                "mask = \"off\"",
            ],
        )
        .toml(&format!(
            "[credential.upstream]\nkind = \"bearer\"\nfile = {:?}\n",
            token_file.display().to_string()
        ))
        .agent_line(r#"drain_timeout = "1s""#)
        .start();
    let agent_ca = agent.export_ca();

    let nginx = Nginx::start(&pki, upstream.addr, SERVER_TOKEN)?;
    eprintln!(
        "mcp: upstream {}, agent {} attached to {}, nginx {}; {ROUNDS} alternating rounds",
        upstream.addr,
        agent.instance(),
        attached.rel(),
        nginx
            .as_ref()
            .map_or("skipped".to_string(), |n| n.addr.to_string()),
    );

    let test_ca = pki.ca.as_os_str();
    let mut rounds = Vec::new();
    let mut phi_rounds = Vec::new();
    let mut via_agent = 0;
    for round in 1..=ROUNDS {
        eprintln!("mcp round {round}/{ROUNDS}");
        let direct = measure(
            &upstream,
            "direct",
            &bare,
            upstream.addr,
            test_ca,
            SERVER_TOKEN,
            &[],
        )?;
        let warden = measure(
            &upstream,
            "mcp-warden",
            &attached,
            upstream.addr,
            agent_ca.as_os_str(),
            LEFTOVER,
            &[],
        )?;
        via_agent += warden["requests"].as_u64().unwrap_or(0);
        let via_nginx = match &nginx {
            Some(n) => Some(measure(
                &upstream,
                "nginx",
                &bare,
                n.addr,
                test_ca,
                LEFTOVER,
                &[],
            )?),
            None => None,
        };
        rounds.push(Round {
            direct,
            warden,
            nginx: via_nginx,
        });

        let patients = |masked: bool| -> Vec<&OsStr> {
            let mut flags: Vec<&OsStr> = vec!["--tool".as_ref(), "patients".as_ref()];
            if masked {
                flags.push("--masked".as_ref());
            }
            flags
        };
        let direct = measure(
            &upstream,
            "patients direct",
            &bare,
            upstream.addr,
            test_ca,
            SERVER_TOKEN,
            &patients(false),
        )?;
        let masked = measure(
            &upstream,
            "patients masked",
            &attached,
            upstream.addr,
            agent_ca.as_os_str(),
            LEFTOVER,
            &patients(true),
        )?;
        let off = measure(
            &unmasked,
            "patients mask=off",
            &attached,
            unmasked.addr,
            agent_ca.as_os_str(),
            LEFTOVER,
            &patients(false),
        )?;
        for v in [&masked, &off] {
            via_agent += v["requests"].as_u64().unwrap_or(0);
        }
        phi_rounds.push(PhiRound {
            direct,
            masked,
            off,
        });
    }

    // every call through the agent left its request and response records
    let records = agent.wait_records("a record of every tools/call", |r| {
        let calls = |kind: &str| {
            r.iter()
                .filter(|r| r["kind"] == kind && r["method"] == "tools/call")
                .count() as u64
        };
        calls("request") >= via_agent && calls("response") >= via_agent
    });
    drop(agent);
    drop(nginx);

    print_table(&rounds);
    print_phi_table(&phi_rounds);
    println!(
        "\n({} audit records written by the agent for {via_agent} tools/call requests; \
         upstream served {} calls, 401s: {}; the agent forwards a tools/call only once \
         its request record is fdatasync'd, so the disk under $TMPDIR is in its column)",
        records.len(),
        upstream.stats.ok.load(Ordering::Relaxed) + unmasked.stats.ok.load(Ordering::Relaxed),
        upstream.stats.unauthorized.load(Ordering::Relaxed)
            + unmasked.stats.unauthorized.load(Ordering::Relaxed),
    );
    Ok(())
}

/// One worker run by `path` with worker `flags` (`--tool`, `--masked`),
/// checked against the upstream's counters: every call it made arrived
/// once, with the right token.
fn measure(
    upstream: &Upstream,
    path: &str,
    cg: &TestCgroup,
    addr: SocketAddr,
    ca: &OsStr,
    token: &str,
    flags: &[&OsStr],
) -> Result<Value> {
    let (ok0, unauth0, bad0) = upstream.stats.snapshot();
    let conns = CONNS.to_string();
    let mut args: Vec<&OsStr> = vec![
        "--ca".as_ref(),
        ca,
        "--token".as_ref(),
        token.as_ref(),
        "--conns".as_ref(),
        conns.as_ref(),
    ];
    args.extend_from_slice(flags);
    let v = super::worker_with(cg, "mcp", addr, CALLS, &args)
        .with_context(|| format!("the {path} path"))?;
    let (ok1, unauth1, bad1) = upstream.stats.snapshot();
    if unauth1 > unauth0 {
        bail!(
            "the {path} path: the upstream answered {} requests with 401 (bearer token not injected?)",
            unauth1 - unauth0
        );
    }
    ensure!(
        bad1 == bad0,
        "the {path} path: the upstream rejected {} malformed requests",
        bad1 - bad0
    );
    let sent = v["requests"].as_u64().unwrap_or(0);
    ensure!(
        ok1 - ok0 == sent,
        "the {path} path: the client made {sent} calls, the upstream served {}",
        ok1 - ok0
    );
    Ok(v)
}

/// One round's worker results, by path.
struct Round {
    direct: Value,
    warden: Value,
    nginx: Option<Value>,
}

/// What each worker run reports, with its label.
const FIGURES: [(&str, &str); 3] = [
    ("p50_us", "tools/call p50 µs"),
    ("p99_us", "tools/call p99 µs"),
    ("rps", "tools/call req/s (4 conns)"),
];

/// The median over `rounds` of what `pick` reads (rounds without it skipped).
fn median_of<R>(rounds: &[R], pick: impl Fn(&R) -> Option<f64>) -> f64 {
    super::median(&rounds.iter().filter_map(pick).collect::<Vec<f64>>())
}

fn print_table(rounds: &[Round]) {
    let med = |pick: &dyn Fn(&Round) -> Option<f64>| median_of(rounds, pick);
    println!(
        "\nMCP tools/call, TLS on both sides, kept-alive, loopback \
         (median of {ROUNDS} alternating rounds; {CALLS} sequential calls, {CONNS} conns × {CALLS} calls)\n"
    );
    println!(
        "{:<34} {:>10} {:>11} {:>10} {:>14} {:>13}",
        "measure", "direct", "mcp-warden", "nginx", "warden/direct", "nginx/direct"
    );
    let mut added = Vec::new();
    for (key, label) in FIGURES {
        let d = med(&|r| r.direct[key].as_f64());
        let w = med(&|r| r.warden[key].as_f64());
        let n = med(&|r| r.nginx.as_ref().and_then(|v| v[key].as_f64()));
        println!(
            "{label:<34} {d:>10.1} {w:>11.1} {:>10} {:>14.3} {:>13}",
            opt(n, 1),
            w / d,
            opt(n / d, 3)
        );
        if key != "rps" {
            added.push((key, w - d, n - d));
        }
    }
    for (key, w, n) in added {
        let label = format!("added {} µs (via − direct)", &key[..3]);
        println!("{label:<34} {:>10} {w:>11.1} {:>10}", "", opt(n, 1));
    }
}

/// One round of the `patients` calls, by path.
struct PhiRound {
    direct: Value,
    masked: Value,
    off: Value,
}

fn print_phi_table(rounds: &[PhiRound]) {
    let med = |pick: &dyn Fn(&PhiRound) -> Option<f64>| median_of(rounds, pick);
    let result = patients_result();
    let rows = result["structuredContent"]["rows"]
        .as_array()
        .map_or(0, Vec::len);
    let bytes = json!({"jsonrpc": "2.0", "id": 1, "result": result})
        .to_string()
        .len();
    println!(
        "\nMCP tools/call returning {rows} synthetic patient rows ({:.1} KB: structuredContent and \
         its pretty text copy), same setup; masked = the default safe-harbor profile\n",
        bytes as f64 / 1024.0
    );
    println!(
        "{:<34} {:>10} {:>11} {:>11} {:>14} {:>14}",
        "measure", "direct", "mask off", "masked", "masked−off", "masked/off"
    );
    for (key, label) in FIGURES {
        let d = med(&|r| r.direct[key].as_f64());
        let off = med(&|r| r.off[key].as_f64());
        let masked = med(&|r| r.masked[key].as_f64());
        println!(
            "{label:<34} {d:>10.1} {off:>11.1} {masked:>11.1} {:>14.1} {:>14.3}",
            masked - off,
            masked / off
        );
    }
}

/// A number, or "-" for a path that was skipped.
fn opt(v: f64, decimals: usize) -> String {
    if v.is_nan() {
        "-".into()
    } else {
        format!("{v:.decimals$}")
    }
}

// ---------------------------------------------------------------- upstream

/// What the upstream answered.
#[derive(Default)]
struct Stats {
    ok: AtomicU64,
    unauthorized: AtomicU64,
    /// Any other 4xx/5xx.
    bad: AtomicU64,
}

impl Stats {
    fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.ok.load(Ordering::SeqCst),
            self.unauthorized.load(Ordering::SeqCst),
            self.bad.load(Ordering::SeqCst),
        )
    }
}

/// A minimal MCP-ish upstream: HTTP/1.1 keep-alive over TLS (the test PKI's
/// server certificate), `Authorization: Bearer <token>` required, every
/// JSON-RPC request POSTed answered with a fixed tools/call result. Runs on
/// a thread of its own with a current-thread runtime until the process exits.
struct Upstream {
    addr: SocketAddr,
    stats: Arc<Stats>,
}

impl Upstream {
    fn start(pki: &TestPki, token: &str) -> Result<Upstream> {
        let certs = CertificateDer::pem_file_iter(&pki.cert)
            .and_then(|i| i.collect::<Result<Vec<_>, _>>())
            .map_err(|e| anyhow!("reading {}: {e}", pki.cert.display()))?;
        let key = PrivateKeyDer::from_pem_file(&pki.key)
            .map_err(|e| anyhow!("reading {}: {e}", pki.key.display()))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, free_port()))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stats = Arc::new(Stats::default());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let auth: Arc<[u8]> = format!("Bearer {token}").into_bytes().into();
        let st = stats.clone();
        thread::Builder::new()
            .name("mcp-upstream".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => return eprintln!("mcp upstream: {e}"),
                    };
                    loop {
                        let Ok((tcp, _)) = listener.accept().await else {
                            continue;
                        };
                        let (acceptor, auth, st) = (acceptor.clone(), auth.clone(), st.clone());
                        tokio::spawn(async move {
                            let _ = tcp.set_nodelay(true);
                            if let Ok(tls) = acceptor.accept(tcp).await {
                                let _ = serve_conn(tls, &auth, &st).await;
                            }
                        });
                    }
                })
            })?;
        Ok(Upstream { addr, stats })
    }
}

/// One parsed request head.
struct Head {
    method: Vec<u8>,
    content_length: Option<usize>,
    transfer_encoding: bool,
    authorization: Option<Vec<u8>>,
    close: bool,
}

/// Parses a request head (through its CRLFCRLF); `None` if malformed.
fn parse_head(raw: &[u8]) -> Option<Head> {
    let mut rest = raw.strip_suffix(b"\r\n\r\n")?;
    let mut lines = std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = find(rest, b"\r\n").unwrap_or(rest.len());
        let line = &rest[..end];
        rest = rest.get(end + 2..).unwrap_or_default();
        Some(line)
    });
    let request = lines.next()?;
    let mut parts = request.split(|&b| b == b' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || method.is_empty() || target.is_empty() {
        return None;
    }
    let http11 = match version {
        b"HTTP/1.1" => true,
        b"HTTP/1.0" => false,
        _ => return None,
    };
    let mut head = Head {
        method: method.to_vec(),
        content_length: None,
        transfer_encoding: false,
        authorization: None,
        close: !http11,
    };
    for line in lines {
        // CRLF line ends only: a bare CR or LF is malformed
        if line.iter().any(|&b| b == b'\r' || b == b'\n') {
            return None;
        }
        let colon = line.iter().position(|&b| b == b':')?;
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        // no empty names, no whitespace before the colon, no obs-fold
        if name.is_empty() || name.iter().any(|b| b.is_ascii_whitespace()) {
            return None;
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            let n: usize = std::str::from_utf8(value).ok()?.parse().ok()?;
            if head.content_length.is_some_and(|m| m != n) || !value.iter().all(u8::is_ascii_digit)
            {
                return None;
            }
            head.content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            head.transfer_encoding = true;
        } else if name.eq_ignore_ascii_case(b"authorization") {
            if head.authorization.is_some() {
                return None;
            }
            head.authorization = Some(value.to_vec());
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    head.close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && !http11 {
                    head.close = false;
                }
            }
        }
    }
    Some(head)
}

async fn serve_conn<S>(mut io: S, auth: &[u8], stats: &Stats) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut out: Vec<u8> = Vec::with_capacity(512);
    loop {
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > MAX_HEAD {
                stats.bad.fetch_add(1, Ordering::Relaxed);
                return respond(
                    &mut io,
                    &mut out,
                    "431 Request Header Fields Too Large",
                    "",
                    true,
                )
                .await;
            }
            buf.reserve(8192);
            if io.read_buf(&mut buf).await? == 0 {
                return Ok(()); // the client closed (between requests, or mid-head)
            }
        };
        let Some(head) = parse_head(&buf[..head_end]) else {
            stats.bad.fetch_add(1, Ordering::Relaxed);
            return respond(&mut io, &mut out, "400 Bad Request", "", true).await;
        };
        if head.transfer_encoding {
            // this server reads Content-Length bodies only
            stats.bad.fetch_add(1, Ordering::Relaxed);
            return respond(&mut io, &mut out, "501 Not Implemented", "", true).await;
        }
        let length = head.content_length.unwrap_or(0);
        if length > MAX_BODY {
            stats.bad.fetch_add(1, Ordering::Relaxed);
            return respond(&mut io, &mut out, "413 Content Too Large", "", true).await;
        }
        while buf.len() < head_end + length {
            buf.reserve(head_end + length - buf.len());
            if io.read_buf(&mut buf).await? == 0 {
                return Ok(()); // closed mid-body
            }
        }
        let body = &buf[head_end..head_end + length];
        let close = head.close;
        let (status, reply): (&str, String) = if head.method != b"POST" {
            stats.bad.fetch_add(1, Ordering::Relaxed);
            ("405 Method Not Allowed", String::new())
        } else if head.content_length.is_none() {
            stats.bad.fetch_add(1, Ordering::Relaxed);
            ("411 Length Required", String::new())
        } else if head.authorization.as_deref() != Some(auth) {
            stats.unauthorized.fetch_add(1, Ordering::Relaxed);
            ("401 Unauthorized", String::new())
        } else {
            match serde_json::from_slice::<Value>(body) {
                Ok(msg)
                    if msg["jsonrpc"] == "2.0"
                        && msg["method"].is_string()
                        && (msg["id"].is_number() || msg["id"].is_string()) =>
                {
                    stats.ok.fetch_add(1, Ordering::Relaxed);
                    let result = if msg["params"]["name"] == "patients" {
                        json!({"jsonrpc": "2.0", "id": msg["id"], "result": patients_result()})
                            .to_string()
                    } else {
                        format!(
                            r#"{{"jsonrpc":"2.0","id":{},"result":{{"content":[{{"type":"text","text":"ok"}}],"isError":false}}}}"#,
                            msg["id"]
                        )
                    };
                    ("200 OK", result)
                }
                // a notification: accepted, no body
                Ok(msg) if msg["jsonrpc"] == "2.0" && msg.get("id").is_none() => {
                    ("202 Accepted", String::new())
                }
                _ => {
                    stats.bad.fetch_add(1, Ordering::Relaxed);
                    ("400 Bad Request", String::new())
                }
            }
        };
        buf.drain(..head_end + length);
        respond(&mut io, &mut out, status, &reply, close).await?;
        if close {
            return Ok(());
        }
    }
}

/// Writes one response (JSON body, Content-Length) and flushes it.
async fn respond<S>(
    io: &mut S,
    out: &mut Vec<u8>,
    status: &str,
    body: &str,
    close: bool,
) -> std::io::Result<()>
where
    S: tokio::io::AsyncWrite + Unpin,
{
    out.clear();
    write!(out, "HTTP/1.1 {status}\r\n")?;
    if status.starts_with("401") {
        out.extend_from_slice(b"WWW-Authenticate: Bearer\r\n");
    }
    if !body.is_empty() {
        out.extend_from_slice(b"Content-Type: application/json\r\n");
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    write!(out, "Content-Length: {}\r\n\r\n{body}", body.len())?;
    io.write_all(out).await?;
    io.flush().await?;
    if close {
        io.shutdown().await?;
    }
    Ok(())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

// ---------------------------------------------------------------- nginx

/// A stock nginx on loopback doing the proxy's transport job: TLS terminated
/// with the test PKI's certificate, upstream TLS verified against the test
/// CA, the bearer token set, HTTP/1.1 keep-alive upstream, no buffering.
/// Stopped (SIGTERM, then SIGKILL) on drop.
struct Nginx {
    child: std::process::Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// `None` (after saying how to install it) when there is no nginx.
    fn start(pki: &TestPki, upstream: SocketAddr, token: &str) -> Result<Option<Nginx>> {
        let Some(bin) = find_nginx() else {
            eprintln!(
                "mcp: nginx is not installed, skipping the nginx column \
                 (install it with `apt-get install -y nginx-light`)"
            );
            return Ok(None);
        };
        let dir = tempfile::Builder::new()
            .prefix("mcp-warden-bench-nginx-")
            .tempdir()?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
        let conf = nginx_conf(dir.path(), addr, upstream, pki, token);
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        let log = std::fs::File::create(dir.path().join("stderr.log"))?;
        let mut cmd = Command::new(&bin);
        cmd.arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut nginx = Nginx { child, addr, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = nginx.child.try_wait()? {
                bail!(
                    "nginx exited ({st}) at start:\n{}",
                    std::fs::read_to_string(nginx.dir.path().join("stderr.log"))
                        .unwrap_or_default()
                );
            }
            if TcpStream::connect(addr).is_ok() {
                break;
            }
            if Instant::now() >= deadline {
                bail!("nginx did not listen on {addr} within 10 s");
            }
            thread::sleep(Duration::from_millis(20));
        }
        let version = Command::new(&bin).arg("-v").output()?;
        eprintln!(
            "mcp: {} on {addr}, config {}",
            output_text(&version.stderr).trim(),
            conf_path.display()
        );
        Ok(Some(nginx))
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers, then exits
        // SAFETY: a signal to our own unreaped child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() {
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

fn find_nginx() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join("nginx"))
        .find(|p| p.is_file())
}

/// The whole nginx config. Its own prefix for every path it writes (the
/// Debian build's compiled-in ones are under /var/lib/nginx); as many worker
/// processes as the agent has runtime threads (one per core).
fn nginx_conf(
    dir: &Path,
    listen: SocketAddr,
    upstream: SocketAddr,
    pki: &TestPki,
    token: &str,
) -> String {
    let d = dir.display();
    format!(
        r#"worker_processes auto;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
user root;

events {{
    worker_connections 1024;
}}

http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;

    # nginx's default is 1000: it would close the client connection (and
    # reopen the upstream one) every 1000 requests; the other paths keep
    # their connections for the whole run
    keepalive_requests 1000000;

    upstream mcp_upstream {{
        server {upstream};
        keepalive 16;
        keepalive_requests 1000000;
    }}

    server {{
        listen {listen} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};

        location / {{
            proxy_pass https://mcp_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "Bearer {token}";
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate {ca};
            proxy_ssl_name mcp.test;
            proxy_ssl_server_name on;
            proxy_buffering off;
        }}
    }}
}}
"#,
        cert = pki.cert.display(),
        key = pki.key.display(),
        ca = pki.ca.display(),
    )
}

// ---------------------------------------------------------------- client

/// One kept-alive HTTPS connection making tools/call requests.
struct Conn {
    tls: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    buf: Vec<u8>,
    req: Vec<u8>,
    host: String,
    auth: String,
    expect: Arc<Expect>,
}

/// What every response of a worker is checked against.
struct Expect {
    tool: String,
    /// `lookup`'s "ok", or the patient rows as sent.
    exact: Option<Value>,
    /// Identifiers a masked `patients` response must not hold, looked for
    /// in one pass (the check must not cost the client more than the
    /// exact comparison of the unmasked paths does).
    hidden: Option<aho_corasick::AhoCorasick>,
}

impl Expect {
    fn new(args: &McpWorkerArgs) -> Result<Expect> {
        let ok = json!({"content":[{"type":"text","text":"ok"}],"isError":false});
        Ok(match (args.tool.as_str(), args.masked) {
            ("lookup", false) => Expect {
                tool: args.tool.clone(),
                exact: Some(ok),
                hidden: None,
            },
            ("patients", false) => Expect {
                tool: args.tool.clone(),
                exact: Some(patients_result().clone()),
                hidden: None,
            },
            ("patients", true) => Expect {
                tool: args.tool.clone(),
                exact: None,
                hidden: Some(aho_corasick::AhoCorasick::new(patient_identifiers())?),
            },
            (tool, masked) => bail!("no check for --tool {tool} (masked: {masked})"),
        })
    }

    fn check(&self, id: u64, body: &[u8], got: &Value) -> Result<()> {
        ensure!(
            got["id"] == id,
            "response to call {id} has id {}",
            got["id"]
        );
        match &self.exact {
            Some(want) => ensure!(
                got["result"] == *want,
                "unexpected response to call {id}: {got}"
            ),
            None => {
                let rows = &got["result"]["structuredContent"]["rows"];
                ensure!(
                    rows.as_array().map(Vec::len)
                        == patients_result()["structuredContent"]["rows"]
                            .as_array()
                            .map(Vec::len),
                    "call {id}: rows missing from the masked result: {got}"
                );
                if let Some(leak) = self.hidden.as_ref().and_then(|ac| ac.find(body)) {
                    bail!(
                        "call {id}: the masked response holds {:?}",
                        String::from_utf8_lossy(&body[leak.range()])
                    );
                }
            }
        }
        Ok(())
    }
}

impl Conn {
    fn open(
        addr: SocketAddr,
        config: &Arc<rustls::ClientConfig>,
        name: &ServerName<'static>,
        token: &str,
        expect: Arc<Expect>,
    ) -> Result<Conn> {
        let tcp = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
        tcp.set_nodelay(true)?;
        let conn = rustls::ClientConnection::new(config.clone(), name.clone())?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn
                .complete_io(&mut tls.sock)
                .context("TLS handshake")?;
        }
        Ok(Conn {
            tls,
            buf: Vec::with_capacity(16 * 1024),
            req: Vec::with_capacity(512),
            host: addr.to_string(),
            auth: format!("Bearer {token}"),
            expect,
        })
    }

    /// One tools/call; returns the time from write to the whole response.
    fn call(&mut self, id: u64) -> Result<Duration> {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{}","arguments":{{"q":"x"}}}}}}"#,
            self.expect.tool
        );
        self.req.clear();
        write!(
            self.req,
            "POST /mcp HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nAuthorization: {}\r\n\
             Content-Length: {}\r\n\r\n{body}",
            self.host,
            self.auth,
            body.len()
        )?;
        let start = Instant::now();
        self.tls.write_all(&self.req)?;
        self.tls.flush()?;
        let (status, json, head_end, length) = self.read_response()?;
        let took = start.elapsed();

        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let body = &self.buf[head_end..head_end + length];
        ensure!(
            status == 200,
            "HTTP {status} for call {id}: {}",
            String::from_utf8_lossy(body)
        );
        ensure!(json, "not application/json:\n{head}");
        let got: Value = serde_json::from_slice(body)
            .with_context(|| format!("response body: {}", String::from_utf8_lossy(body)))?;
        self.expect.check(id, body, &got)?;
        self.buf.drain(..head_end + length);
        Ok(took)
    }

    /// Reads one response into `buf`: (status, is JSON, head length, body length).
    fn read_response(&mut self) -> Result<(u16, bool, usize, usize)> {
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            self.fill()?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).context("response head")?;
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.strip_prefix("HTTP/1.1 "))
            .and_then(|l| l.get(..3))
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| anyhow!("bad status line in\n{head}"))?;
        let mut length = None;
        let mut json = false;
        for line in lines.filter(|l| !l.is_empty()) {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| anyhow!("bad header line {line:?}"))?;
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.parse::<usize>().context("Content-Length")?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                bail!("expected a Content-Length response, got Transfer-Encoding: {value}");
            } else if name.eq_ignore_ascii_case("content-type") {
                json = value.starts_with("application/json");
            } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close")
            {
                bail!("the server ended the kept-alive connection (Connection: close)");
            }
        }
        let length = length.ok_or_else(|| anyhow!("no Content-Length in\n{head}"))?;
        while self.buf.len() < head_end + length {
            self.fill()?;
        }
        Ok((status, json, head_end, length))
    }

    fn fill(&mut self) -> Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.tls.read(&mut chunk)?;
        ensure!(n > 0, "the server closed the connection");
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

/// `bench-worker mcp ADDR N`: [`WARMUP`] calls, then `n` timed sequential
/// calls on one kept-alive connection (p50, p99); then `conns` connections
/// doing `n` calls each at once (requests per second over the wall time).
/// Every response is checked. Prints one JSON line.
pub fn client(addr: SocketAddr, n: u32, args: &McpWorkerArgs) -> Result<String> {
    let ca = args
        .ca
        .as_ref()
        .ok_or_else(|| anyhow!("the mcp worker needs --ca"))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| anyhow!("{}: {e}", ca.display()))? {
        roots.add(cert.map_err(|e| anyhow!("{}: {e}", ca.display()))?)?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let config = Arc::new(config);
    let name = ServerName::try_from(
        args.server_name
            .clone()
            .unwrap_or_else(|| addr.ip().to_string()),
    )?;
    let token = args.token.as_str();
    let expect = Arc::new(Expect::new(args)?);

    // sequential
    let mut conn = Conn::open(addr, &config, &name, token, expect.clone())?;
    let mut id = 0u64;
    for _ in 0..WARMUP {
        id += 1;
        conn.call(id)?;
    }
    let mut rtt = Vec::with_capacity(n as usize);
    for _ in 0..n {
        id += 1;
        rtt.push(conn.call(id)?);
    }
    drop(conn);
    let (p50, p99) = percentiles(&mut rtt);

    // concurrent: connect and warm up, then all start together
    let warm = WARMUP / 4;
    let go = Arc::new(Barrier::new(args.conns as usize + 1));
    let workers: Vec<_> = (0..u64::from(args.conns))
        .map(|c| {
            let (config, name, token, go, expect) = (
                config.clone(),
                name.clone(),
                token.to_string(),
                go.clone(),
                expect.clone(),
            );
            thread::spawn(move || -> Result<()> {
                let base = (c + 1) * 1_000_000;
                let ready =
                    Conn::open(addr, &config, &name, &token, expect).and_then(|mut conn| {
                        for i in 0..u64::from(warm) {
                            conn.call(base + i)?;
                        }
                        Ok(conn)
                    });
                go.wait();
                let mut conn = ready?;
                for i in 0..u64::from(n) {
                    conn.call(base + u64::from(warm) + i)?;
                }
                Ok(())
            })
        })
        .collect();
    go.wait();
    let start = Instant::now();
    for w in workers {
        w.join()
            .map_err(|_| anyhow!("a client thread panicked"))??;
    }
    let rps = f64::from(args.conns * n) / start.elapsed().as_secs_f64();
    let requests = u64::from(WARMUP + n) + u64::from(args.conns) * u64::from(warm + n);
    Ok(format!(
        r#"{{"p50_us":{p50:.1},"p99_us":{p99:.1},"rps":{rps:.1},"requests":{requests}}}"#
    ))
}

#[cfg(test)]
mod tests {
    use super::{Expect, McpWorkerArgs, parse_head, patients_result};
    use serde_json::{Value, json};

    /// The masked check passes the payload masked and fails it as sent.
    #[test]
    fn a_masked_patients_response_must_hold_no_identifier() {
        let args = McpWorkerArgs {
            tool: "patients".into(),
            masked: true,
            ..McpWorkerArgs::default()
        };
        let expect = Expect::new(&args).unwrap();
        let sent = json!({"jsonrpc": "2.0", "id": 7, "result": patients_result()}).to_string();
        let parsed: Value = serde_json::from_str(&sent).unwrap();
        let err = expect.check(7, sent.as_bytes(), &parsed).unwrap_err();
        assert!(err.to_string().contains("holds"), "{err}");
        let masker =
            mcp_warden::mask::Masker::new(mcp_warden::mask::Profile::safe_harbor(), b"k".to_vec());
        let masked = masker.mask_json_bytes(sent.as_bytes()).bytes.into_owned();
        let parsed: Value = serde_json::from_slice(&masked).unwrap();
        expect.check(7, &masked, &parsed).unwrap();
    }

    #[test]
    fn heads_are_parsed_strictly() {
        let h = parse_head(
            b"POST /mcp HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer t\r\nContent-Length: 12\r\n\r\n",
        )
        .unwrap();
        assert_eq!(h.method, b"POST");
        assert_eq!(h.content_length, Some(12));
        assert_eq!(h.authorization.as_deref(), Some(&b"Bearer t"[..]));
        assert!(!h.close && !h.transfer_encoding);
        let h = parse_head(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        assert!(h.close && h.content_length.is_none());
        assert!(
            parse_head(b"POST / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n")
                .unwrap()
                .close
        );
        for bad in [
            &b"POST / HTTP/1.1\nHost: a\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost : a\r\n\r\n",
            b"POST / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n",
            b"POST / HTTP/2\r\n\r\n",
            b"POST  / HTTP/1.1\r\n\r\n",
        ] {
            assert!(
                parse_head(bad).is_none(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
