//! mcp-warden end to end: real cgroups, a network namespace per test as the
//! "remote" host, real clients (curl, Python sockets) and the agent binary.
//!
//! Every test makes its own cgroup, namespace, subnet and agent instance, so
//! they run in parallel. Waits are bounded; an expired wait is a failure, not
//! a performance check.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mcp_warden_tests::*;
use serde_json::{Value, json};

const MB: usize = 1024 * 1024;
const PEER_TIMEOUT: Duration = Duration::from_secs(180);

/// One test's world: a cgroup for the clients, a namespace with the HTTP
/// server on 8080 and 8081, and a scratch directory.
struct World {
    srv: HttpServer,
    ns: NetNs,
    cg: TestCgroup,
    tmp: tempfile::TempDir,
}

fn world() -> World {
    require_root();
    let cg = TestCgroup::new();
    let ns = NetNs::new();
    let srv = ns.http_server(&[8080, 8081]);
    World {
        srv,
        ns,
        cg,
        tmp: tempfile::tempdir().unwrap(),
    }
}

impl World {
    fn v4(&self, port: u16) -> String {
        format!("{}:{port}", self.ns.peer_v4())
    }
    fn v6(&self, port: u16) -> String {
        format!("[{}]:{port}", self.ns.peer_v6())
    }
    fn url(&self, port: u16, path: &str) -> String {
        format!("http://{}{path}", self.v4(port))
    }
    fn file(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
    /// An agent on this world's cgroup with endpoint "web" = `matches`.
    fn agent(&self, matches: &[String]) -> AgentBuilder {
        Agent::builder(&self.cg).endpoint("web", matches)
    }
    /// curl GET /hello in the cgroup.
    fn hello_in_cgroup(&self, port: u16) -> CurlRun {
        curl(Some(&self.cg), &[self.url(port, "/hello")])
    }
    /// sock_client.py in the cgroup, dialling `host:port` over IPv`family`
    /// with `extra` arguments; it must succeed.
    fn sock_client(&self, family: u8, host: &str, port: u16, extra: &[&str]) -> PeerOutput {
        let mut cmd = python_command(Some(&self.cg), "sock_client.py");
        cmd.args([
            "--family",
            &family.to_string(),
            "--host",
            host,
            "--port",
            &port.to_string(),
        ]);
        cmd.args(extra);
        let out = PeerOutput::run(cmd, PEER_TIMEOUT);
        assert!(out.status.success(), "{out:#?}");
        out
    }
}

// ---------------------------------------------------------------- records

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn of_kind<'a>(recs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    recs.iter().filter(|r| r["kind"] == kind).collect()
}

/// Records whose identity names `pid`.
fn of_pid(recs: &[Value], pid: u32) -> Vec<&Value> {
    recs.iter()
        .filter(|r| r["identity"]["pid"] == pid)
        .collect()
}

/// Every record of `session`.
fn of_session<'a>(recs: &'a [Value], session: &str) -> Vec<&'a Value> {
    recs.iter().filter(|r| r["session"] == session).collect()
}

/// Waits until `pid` has a connect and, in the same session, a close record;
/// returns (connect, close).
fn wait_connect_close(agent: &Agent, pid: u32) -> (Value, Value) {
    let recs = agent.wait_records(&format!("connect and close records of pid {pid}"), |recs| {
        of_pid(recs, pid)
            .iter()
            .filter(|r| r["kind"] == "connect")
            .any(|c| {
                of_session(recs, s(&c["session"]))
                    .iter()
                    .any(|r| r["kind"] == "close")
            })
    });
    let connects: Vec<&Value> = of_pid(&recs, pid)
        .into_iter()
        .filter(|r| r["kind"] == "connect")
        .collect();
    assert_eq!(
        connects.len(),
        1,
        "pid {pid} made one connection, records: {connects:#?}"
    );
    let connect = connects[0].clone();
    let session = s(&connect["session"]).to_string();
    assert!(
        !session.is_empty(),
        "connect record without a session: {connect}"
    );
    let in_session = of_session(&recs, &session);
    let closes: Vec<&&Value> = in_session.iter().filter(|r| r["kind"] == "close").collect();
    assert_eq!(closes.len(), 1, "one close per session: {in_session:#?}");
    let close = (*closes[0]).clone();
    assert!(
        close["seq"].as_u64() > connect["seq"].as_u64(),
        "close after connect: {connect}\n{close}"
    );
    (connect, close)
}

/// Records are in strictly increasing `seq` order (the store spends numbers on
/// its own checkpoints and seals, which `export` leaves out), each chained
/// (`prev`, `hash`) and time-stamped in UTC.
fn assert_well_formed(recs: &[Value]) {
    let mut last = 0;
    for r in recs {
        let seq = r["seq"].as_u64().unwrap_or_else(|| panic!("seq: {r}"));
        assert!(seq > last, "seq increases: {seq} after {last}: {r}");
        last = seq;
        assert_eq!(s(&r["hash"]).len(), 64, "hash: {r}");
        assert!(r.get("prev").is_some(), "prev: {r}");
        assert!(s(&r["ts"]).ends_with('Z'), "ts in UTC: {r}");
        assert!(
            ["connect", "close", "reject"].contains(&s(&r["kind"])),
            "kind: {r}"
        );
    }
}

struct Who<'a> {
    pid: u32,
    comm: &'a str,
    exe: &'a Path,
    cmdline_starts: &'a str,
    cg: &'a TestCgroup,
}

/// The connect record names the caller and the destination.
fn assert_connect(rec: &Value, who: &Who, orig_dst: &str, endpoint: &str) {
    assert_eq!(rec["kind"], "connect", "{rec:#}");
    assert_eq!(rec["endpoint"], endpoint, "endpoint: {rec:#}");
    assert_eq!(rec["orig_dst"], orig_dst, "orig_dst: {rec:#}");
    assert_eq!(
        rec["upstream"], orig_dst,
        "upstream (the agent dials the original destination): {rec:#}"
    );
    let id = &rec["identity"];
    assert_eq!(id["pid"], who.pid, "identity.pid: {rec:#}");
    assert!(id["tid"].as_u64().is_some(), "identity.tid: {rec:#}");
    assert_eq!(id["uid"], 0, "identity.uid: {rec:#}");
    assert_eq!(id["gid"], 0, "identity.gid: {rec:#}");
    assert_eq!(id["user"], "root", "identity.user: {rec:#}");
    assert_eq!(id["group"], "root", "identity.group: {rec:#}");
    assert_eq!(id["comm"], who.comm, "identity.comm: {rec:#}");
    assert_eq!(
        id["exe"],
        who.exe.to_str().unwrap(),
        "identity.exe: {rec:#}"
    );
    assert!(
        s(&id["cmdline"]).starts_with(who.cmdline_starts),
        "identity.cmdline should start with {:?}: {rec:#}",
        who.cmdline_starts
    );
    assert_eq!(id["cgroup"], who.cg.rel(), "identity.cgroup: {rec:#}");
    assert_eq!(id["cgroup_id"], who.cg.id(), "identity.cgroup_id: {rec:#}");
    assert!(
        id.get("unit").is_some() && id.get("ci").is_some(),
        "unit and ci are present (null): {rec:#}"
    );
}

fn assert_close(rec: &Value, min_up: u64, min_down: u64) {
    assert_eq!(rec["kind"], "close", "{rec:#}");
    assert_eq!(rec["outcome"], "ok", "outcome: {rec:#}");
    let up = rec["bytes_up"]
        .as_u64()
        .unwrap_or_else(|| panic!("bytes_up: {rec:#}"));
    let down = rec["bytes_down"]
        .as_u64()
        .unwrap_or_else(|| panic!("bytes_down: {rec:#}"));
    assert!(up >= min_up, "bytes_up {up} < {min_up}: {rec:#}");
    assert!(down >= min_down, "bytes_down {down} < {min_down}: {rec:#}");
    assert!(
        rec["duration_ms"].as_u64().is_some(),
        "duration_ms: {rec:#}"
    );
}

fn curl_who<'a>(pid: u32, cg: &'a TestCgroup) -> Who<'a> {
    Who {
        pid,
        comm: "curl",
        exe: Path::new("/usr/bin/curl"),
        cmdline_starts: "curl ",
        cg,
    }
}

/// comm and exe of the peers' Python: comm is the name it was exec'd by
/// (truncated to 15 bytes), exe the resolved binary.
fn python_names() -> (String, PathBuf) {
    let py = python();
    let mut comm = py.file_name().unwrap().to_string_lossy().into_owned();
    comm.truncate(15);
    (comm, py.canonicalize().unwrap())
}

fn json_body(r: &CurlRun) -> Value {
    serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("curl printed non-JSON ({e}): {:?}", r.stdout))
}

// ---------------------------------------------------------------- tests

/// (1) curl and the socket client in the cgroup reach the server in the
/// namespace through the agent; 8 MB each way arrive intact; the records
/// name the caller and count the bytes.
#[test]
fn megabytes_relay_intact_and_records_name_the_caller() {
    let w = world();
    let agent = w.agent(&[w.v4(8080)]).start();
    let size = 8 * MB;

    // download
    let (dl, hdr) = (w.file("download"), w.file("headers"));
    let down = curl(
        Some(&w.cg),
        &[
            w.url(8080, &format!("/download?size={size}")),
            "-o".into(),
            dl.display().to_string(),
            "-D".into(),
            hdr.display().to_string(),
        ],
    );
    down.assert_ok();
    let headers = std::fs::read_to_string(&hdr).unwrap().to_lowercase();
    let want = headers
        .lines()
        .find_map(|l| l.strip_prefix("x-sha256: "))
        .expect("X-Sha256 header")
        .trim()
        .to_string();
    assert_eq!(
        std::fs::metadata(&dl).unwrap().len(),
        size as u64,
        "download size"
    );
    assert_eq!(sha256_file(&dl), want, "download digest");

    // upload
    let up = w.file("upload");
    let sha = write_payload(&up, size, 7);
    let upload = curl(
        Some(&w.cg),
        &[
            "--data-binary".to_string(),
            format!("@{}", up.display()),
            w.url(8080, "/upload"),
        ],
    );
    upload.assert_ok();
    assert_eq!(
        json_body(&upload),
        json!({"len": size, "sha256": sha}),
        "the server got the upload intact"
    );

    // the socket client, upload on one connection
    let out = w.sock_client(
        4,
        &w.ns.peer_v4().to_string(),
        8080,
        &["--send-bytes", &size.to_string()],
    );
    let py_pid = out.expect_event("connected")["pid"].as_u64().unwrap() as u32;

    let dst = w.v4(8080);
    let (c, cl) = wait_connect_close(&agent, down.pid);
    assert_connect(&c, &curl_who(down.pid, &w.cg), &dst, "web");
    assert!(
        s(&c["client"]).starts_with("127.0.0.1:"),
        "client is the redirected socket: {c:#}"
    );
    assert_close(&cl, 0, size as u64);

    let (c, cl) = wait_connect_close(&agent, upload.pid);
    assert_connect(&c, &curl_who(upload.pid, &w.cg), &dst, "web");
    assert_close(&cl, size as u64, 0);

    let (comm, exe) = python_names();
    let (c, cl) = wait_connect_close(&agent, py_pid);
    let py = python();
    let who = Who {
        pid: py_pid,
        comm: &comm,
        exe: &exe,
        cmdline_starts: py.to_str().unwrap(),
        cg: &w.cg,
    };
    assert_connect(&c, &who, &dst, "web");
    assert_close(&cl, size as u64, 0);

    let recs = agent.export();
    assert_well_formed(&recs);
    assert_eq!(
        of_kind(&recs, "connect").len(),
        3,
        "three connections, three connect records"
    );
    assert_eq!(of_kind(&recs, "reject").len(), 0, "no rejects: {recs:#?}");
    assert_eq!(
        w.srv.count(8080),
        3,
        "every request reached the server once"
    );
}

/// (2) getpeername() in the client shows the original destination, and the
/// record's client is the client's own socket.
#[test]
fn getpeername_shows_the_original_destination() {
    let w = world();
    let agent = w.agent(&[w.v4(8080)]).start();
    let out = w.sock_client(4, &w.ns.peer_v4().to_string(), 8080, &["--repeat", "3"]);
    let conn = out.expect_event("connected");
    assert_eq!(
        conn["peername"],
        json!([w.ns.peer_v4().to_string(), 8080]),
        "getpeername: {conn}"
    );
    assert_eq!(
        out.lines
            .iter()
            .filter(|l| l["event"] == "result" && l["ok"] == true)
            .count(),
        3,
        "keep-alive: {out:#?}"
    );

    let pid = conn["pid"].as_u64().unwrap() as u32;
    let (c, _) = wait_connect_close(&agent, pid);
    let local = format!("{}:{}", s(&conn["sockname"][0]), conn["sockname"][1]);
    assert_eq!(
        c["client"], local,
        "the record's client is the client's socket (getsockname): {c:#}"
    );
    assert_eq!(w.srv.count(8080), 3);
}

/// (3) An IPv6 endpoint, and an AF_INET6 socket dialling the IPv4-mapped form
/// of an IPv4 endpoint.
#[test]
fn ipv6_and_ipv4_mapped_destinations_are_intercepted() {
    let w = world();
    let agent = w.agent(&[w.v6(8080), w.v4(8080)]).start();
    let v6 = w.ns.peer_v6().to_string();

    // curl over IPv6
    let r = curl(
        Some(&w.cg),
        &["-g".to_string(), format!("http://{}/hello", w.v6(8080))],
    );
    r.assert_ok();
    assert_eq!(r.stdout, "hello from port 8080\n");
    let (c, cl) = wait_connect_close(&agent, r.pid);
    assert_connect(&c, &curl_who(r.pid, &w.cg), &w.v6(8080), "web");
    assert!(
        s(&c["client"]).starts_with("[::1]:"),
        "lands on the IPv6 listener: {c:#}"
    );
    assert_close(&cl, 1, 1);

    // a raw IPv6 socket
    let out = w.sock_client(6, &v6, 8080, &["--send-bytes", "200000"]);
    assert_eq!(out.expect_event("connected")["peername"], json!([v6, 8080]));
    let pid = out.expect_event("connected")["pid"].as_u64().unwrap() as u32;
    let (c, cl) = wait_connect_close(&agent, pid);
    assert_eq!(c["orig_dst"], w.v6(8080), "{c:#}");
    assert_close(&cl, 200000, 0);

    // a dual-stack socket dialling ::ffff:10.201.N.2
    let mapped = format!("::ffff:{}", w.ns.peer_v4());
    let out = w.sock_client(6, &mapped, 8080, &["--send-bytes", "200000"]);
    assert_eq!(
        out.expect_event("connected")["peername"],
        json!([mapped, 8080]),
        "getpeername keeps the mapped form"
    );
    let pid = out.expect_event("connected")["pid"].as_u64().unwrap() as u32;
    let (c, cl) = wait_connect_close(&agent, pid);
    assert_eq!(c["endpoint"], "web");
    // a mapped destination is recorded as the IPv4 address it stands for
    assert_eq!(
        c["orig_dst"],
        w.v4(8080),
        "orig_dst of a ::ffff: dial: {c:#}"
    );
    assert_eq!(c["upstream"], w.v4(8080), "{c:#}");
    assert!(
        s(&c["client"]).starts_with("127.0.0.1:"),
        "lands on the IPv4 listener: {c:#}"
    );
    assert_close(&cl, 200000, 0);
    assert_eq!(w.srv.count(8080), 3);
}

/// (4) A destination no endpoint matches, and a process outside the cgroup,
/// go direct: the server is reached, nothing is recorded.
#[test]
fn unmatched_destinations_and_outside_processes_go_direct() {
    let w = world();
    let agent = w.agent(&[w.v4(8080)]).start();

    // in the cgroup, to an unconfigured port of the same host
    w.hello_in_cgroup(8081).assert_ok();
    let out = w.sock_client(4, &w.ns.peer_v4().to_string(), 8081, &[]);
    assert_eq!(
        out.expect_event("connected")["peername"],
        json!([w.ns.peer_v4().to_string(), 8081])
    );
    assert!(
        s(&out.expect_event("connected")["sockname"][0]) == w.ns.host_v4().to_string(),
        "direct: the socket's own address is on the veth, not loopback: {out:#?}"
    );
    // outside the cgroup, to the configured endpoint
    let outside = curl(None, &[w.url(8080, "/hello")]);
    outside.assert_ok();
    assert_eq!(w.srv.count(8081), 2, "both reached the server");
    assert_eq!(w.srv.count(8080), 1, "reached the server");

    // a control connection that is intercepted: once its records are there,
    // any record of the direct ones would be too
    let control = w.hello_in_cgroup(8080);
    control.assert_ok();
    let (c, _) = wait_connect_close(&agent, control.pid);
    let recs = agent.export();
    assert!(
        recs.iter().all(|r| r["session"] == c["session"]),
        "only the control connection is recorded: {recs:#?}"
    );
    assert_eq!(
        recs.len(),
        2,
        "connect + close of the control connection only: {recs:#?}"
    );
    assert_eq!(w.srv.count(8080), 2);
}

/// (5) The agent running inside the attached cgroup: its own upstream
/// connection (marked) is not redirected back into it.
#[test]
fn agent_inside_the_cgroup_does_not_intercept_itself() {
    let w = world();
    let agent = w.agent(&[w.v4(8080)]).inside(&w.cg).start();
    let pid = agent.pid().unwrap();
    assert!(
        w.cg.procs().contains(&pid),
        "the agent runs in the test cgroup"
    );

    let r = w.hello_in_cgroup(8080);
    r.assert_ok();
    assert_eq!(r.stdout, "hello from port 8080\n");
    let (c, cl) = wait_connect_close(&agent, r.pid);
    assert_connect(&c, &curl_who(r.pid, &w.cg), &w.v4(8080), "web");
    assert_close(&cl, 1, 1);
    let recs = agent.export();
    assert_eq!(
        of_kind(&recs, "connect").len(),
        1,
        "exactly one connect record: {recs:#?}"
    );
    assert_eq!(of_kind(&recs, "reject").len(), 0, "no rejects: {recs:#?}");
    assert!(
        of_pid(&recs, pid).is_empty(),
        "nothing attributed to the agent itself: {recs:#?}"
    );
    assert_eq!(w.srv.count(8080), 1, "one request reached the server");
}

/// (6) 200 connections open at once, each relaying its own upload.
#[test]
fn two_hundred_concurrent_connections_relay_correctly() {
    let w = world();
    let agent = w.agent(&[w.v4(8080)]).start();
    let n = 200;
    let bytes = 64 * 1024;
    let mut cmd = python_command(Some(&w.cg), "many_clients.py");
    cmd.args([
        "--host",
        &w.ns.peer_v4().to_string(),
        "--port",
        "8080",
        "--count",
        &n.to_string(),
        "--send-bytes",
        &bytes.to_string(),
    ]);
    let out = PeerOutput::run(cmd, PEER_TIMEOUT);
    let summary = &out
        .lines
        .first()
        .unwrap_or_else(|| panic!("no summary: {out:#?}"));
    assert!(out.status.success(), "{summary}\n{}", out.stderr);
    assert_eq!(summary["connected"], n, "{summary}");
    assert_eq!(summary["ok"], n, "{summary}");
    assert_eq!(
        summary["peer_ok"], n,
        "getpeername on every socket: {summary}"
    );
    let pid = summary["pid"].as_u64().unwrap() as u32;

    let recs = agent.wait_records(&format!("{n} close records of pid {pid}"), |recs| {
        let sessions: Vec<&str> = of_pid(recs, pid).iter().map(|r| s(&r["session"])).collect();
        recs.iter()
            .filter(|r| r["kind"] == "close" && sessions.contains(&s(&r["session"])))
            .count()
            >= n
    });
    assert_well_formed(&recs);
    let connects: Vec<&Value> = of_pid(&recs, pid)
        .into_iter()
        .filter(|r| r["kind"] == "connect")
        .collect();
    assert_eq!(connects.len(), n, "one connect per connection");
    let mut sessions: Vec<&str> = connects.iter().map(|r| s(&r["session"])).collect();
    sessions.sort();
    sessions.dedup();
    assert_eq!(sessions.len(), n, "distinct sessions");
    for sess in sessions {
        let close = recs
            .iter()
            .find(|r| r["kind"] == "close" && r["session"] == sess)
            .unwrap();
        assert_close(close, bytes as u64, 1);
    }
    assert_eq!(of_kind(&recs, "reject").len(), 0);
    assert_eq!(w.srv.count(8080), n as u64);
}

/// Asserts that a matching connection from the cgroup fails and reaches nobody.
fn assert_refused(w: &World, when: &str) {
    let before = w.srv.count(8080);
    let r = w.hello_in_cgroup(8080);
    assert_ne!(
        r.code(),
        Some(0),
        "{when}: a matching connection must fail, but curl succeeded: {r:?}"
    );
    if r.code() != Some(7) {
        eprintln!(
            "NOTE: {when}: curl exit {:?} (7 = connection refused expected): {}",
            r.code(),
            r.stderr.trim()
        );
    }
    assert_eq!(
        w.srv.count(8080),
        before,
        "{when}: nothing may reach the server"
    );
}

/// Asserts that a matching connection from the cgroup reaches the server directly.
fn assert_direct(w: &World, agent: &Agent, when: &str) {
    let before = w.srv.count(8080);
    let recs_before = agent.export().len();
    w.hello_in_cgroup(8080).assert_ok();
    assert_eq!(
        w.srv.count(8080),
        before + 1,
        "{when}: the server is reached"
    );
    assert_eq!(agent.export().len(), recs_before, "{when}: no record");
}

/// One of the kernel's counters, as `status --json` reports it.
fn kernel_counter(agent: &Agent, name: &str) -> u64 {
    let cfg = agent.config_path().to_string_lossy().into_owned();
    let status = agent.run_subcommand(&["status", "--config", &cfg, "--json"]);
    let v: Value = serde_json::from_slice(&status.stdout).expect("status --json");
    v["counters"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name}: {v}"))
}

/// A matching connection is intercepted and recorded.
fn assert_intercepted(w: &World, agent: &Agent) {
    let r = w.hello_in_cgroup(8080);
    r.assert_ok();
    let (c, _) = wait_connect_close(agent, r.pid);
    assert_eq!(c["orig_dst"], w.v4(8080));
}

/// (7a) Fail-closed, kill -9: matching connections are refused (never direct)
/// until the agent is back; then intercepted again. `detach` then lets them go direct.
#[test]
fn fail_closed_after_kill9_refuses_until_restart() {
    let w = world();
    let mut agent = w.agent(&[w.v4(8080)]).start();
    assert_intercepted(&w, &agent);
    assert!(
        agent.pin_dir().exists(),
        "fail-closed pins under {}",
        agent.pin_dir().display()
    );

    agent.kill9();
    assert!(agent.pin_dir().exists(), "the pins outlive the agent");
    assert_refused(&w, "after kill -9");

    agent.start();
    assert_intercepted(&w, &agent);
    assert_well_formed(&agent.export());

    agent.kill9();
    assert_refused(&w, "after a second kill -9");
    let out = agent.detach();
    assert!(out.status.success(), "detach: {}", output_text(&out.stderr));
    assert!(
        !agent.pin_dir().exists(),
        "detach removes {}",
        agent.pin_dir().display()
    );
    assert_direct(&w, &agent, "after detach");
}

/// (7b) Fail-closed, SIGTERM: exit 0, ready file removed, matching connections
/// refused; restart intercepts again; after stop + `detach` nothing is
/// attached: traffic goes direct.
#[test]
fn fail_closed_after_sigterm_refuses_until_restart_and_detach_goes_direct() {
    let w = world();
    let mut agent = w.agent(&[w.v4(8080)]).start();
    assert_intercepted(&w, &agent);

    let st = agent.stop();
    assert!(st.success(), "SIGTERM: exit 0, got {st}");
    assert!(
        !agent.ready_path().exists(),
        "a clean exit removes the ready file"
    );
    assert!(agent.pin_dir().exists(), "the pins outlive the agent");
    assert_refused(&w, "after SIGTERM");

    agent.start();
    assert_intercepted(&w, &agent);
    let recs = agent.export();
    assert_well_formed(&recs);
    assert_eq!(of_kind(&recs, "connect").len(), 2, "{recs:#?}");

    assert!(agent.stop().success());
    let out = agent.detach();
    assert!(out.status.success(), "detach: {}", output_text(&out.stderr));
    assert!(
        !agent.pin_dir().exists(),
        "detach removes {}",
        agent.pin_dir().display()
    );
    let cfg = agent.config_path().to_string_lossy().into_owned();
    let st = agent.run_subcommand(&["status", "--config", &cfg, "--json"]);
    let st_json: Value = serde_json::from_slice(&st.stdout).unwrap_or_else(|e| {
        panic!(
            "`status --json` is not JSON ({e}): {}",
            output_text(&st.stdout)
        )
    });
    assert_eq!(
        st_json["links"],
        json!([]),
        "`status` after detach: {st_json}"
    );
    assert_eq!(
        st.status.code(),
        Some(3),
        "`status` exits 3 when the agent is not running: {st_json}"
    );
    assert_direct(&w, &agent, "after detach");
    // still nothing attached a moment later, and the socket client goes direct too
    let out = w.sock_client(4, &w.ns.peer_v4().to_string(), 8080, &[]);
    assert_eq!(
        s(&out.expect_event("connected")["sockname"][0]),
        w.ns.host_v4().to_string(),
        "direct: {out:#?}"
    );
}

/// (8) Fail-open: once the agent is gone (SIGTERM, or kill -9) traffic goes direct.
#[test]
fn fail_open_goes_direct_when_the_agent_stops() {
    let w = world();
    let mut agent = w.agent(&[w.v4(8080)]).fail_mode("open").start();
    assert_intercepted(&w, &agent);
    assert!(
        !agent.pin_dir().join("links").exists(),
        "fail-open pins no links"
    );

    assert!(agent.stop().success());
    assert_direct(&w, &agent, "fail-open after SIGTERM");

    agent.start();
    assert_intercepted(&w, &agent);
    agent.kill9();
    assert_direct(&w, &agent, "fail-open after kill -9");
}

/// (9) Bad configs: `check-config` and `run` both fail, naming file, line and
/// key; nothing is attached.
#[test]
fn bad_configs_are_refused_with_file_line_and_key() {
    require_root();
    let cg = TestCgroup::new();
    let tmp = tempfile::tempdir().unwrap();
    let instance = format!("t-{}-badcfg", std::process::id());
    let port = free_port();
    let base = |agent_extra: &str, cgroup: &str, mark: &str, listen: &str, second_match: &str| {
        // line numbers below are those of this template
        format!(
            "[agent]\n\
             instance = \"{instance}\"\n\
             listen = {listen}\n\
             listen6 = \"off\"\n\
             cgroup = \"{cgroup}\"\n\
             state_dir = \"{state}\"\n\
             bpffs = \"/sys/fs/bpf\"\n\
             fail_mode = \"closed\"\n\
             mark = {mark}\n\
             {agent_extra}\n\
             \n\
             [[endpoint]]\n\
             name = \"web\"\n\
             match = [\"10.201.250.2:8080\"]\n\
             \n\
             [[endpoint]]\n\
             name = \"other\"\n\
             match = [\"10.201.250.3:8080\", {second_match}]\n",
            state = tmp.path().join("state").display(),
        )
    };
    let cgp = cg.path().display().to_string();
    let listen = format!("\"127.0.0.1:{port}\"");
    let good_match = "\"10.201.250.4:8080\"";

    // the valid form is accepted: the failures below are about the one change each makes
    let good = tmp.path().join("good.toml");
    std::fs::write(&good, base("", &cgp, "0x4d57", &listen, good_match)).unwrap();
    let mut cmd = warden();
    cmd.arg("check-config").arg(&good);
    let out = run(cmd, Duration::from_secs(30));
    assert!(
        out.status.success(),
        "the valid base config is accepted: {}",
        output_text(&out.stderr)
    );

    let missing_cg = format!(
        "{}/mcp-warden-test-missing-{}",
        cgroup2_root().display(),
        std::process::id()
    );
    // (name, config text, line, key texts that must appear)
    let cases: Vec<(&str, String, usize, Vec<&str>)> = vec![
        (
            "syntax",
            base("", &cgp, "0x4d57", "\"127.0.0.1:1", good_match),
            3,
            vec![],
        ),
        (
            "unknown-key",
            base("colour = \"blue\"", &cgp, "0x4d57", &listen, good_match),
            10,
            vec!["agent", "colour"],
        ),
        (
            "wrong-type",
            base("", &cgp, "\"lots\"", &listen, good_match),
            9,
            vec!["agent.mark"],
        ),
        (
            "bad-port",
            base("", &cgp, "0x4d57", &listen, "\"10.201.250.4:99999\""),
            18,
            vec!["endpoint[1].match[1]"],
        ),
        (
            "bad-address",
            base("", &cgp, "0x4d57", &listen, "\"10.201.250.300:8080\""),
            18,
            vec!["endpoint[1].match[1]"],
        ),
        (
            "bad-listen",
            base("", &cgp, "0x4d57", "\"not-an-address\"", good_match),
            3,
            vec!["agent.listen"],
        ),
        (
            "missing-cgroup",
            base("", &missing_cg, "0x4d57", &listen, good_match),
            5,
            vec!["agent.cgroup"],
        ),
        (
            "duplicate",
            base("", &cgp, "0x4d57", &listen, "\"10.201.250.2:8080\""),
            18,
            vec!["endpoint[1].match[1]"],
        ),
        (
            "bad-mark",
            base("", &cgp, "0", &listen, good_match),
            9,
            vec!["agent.mark"],
        ),
    ];
    let pin_dir = Path::new("/sys/fs/bpf/mcp-warden").join(&instance);
    let mut failures = Vec::new();
    for (name, text, line, keys) in cases {
        let path = tmp.path().join(format!("{name}.toml"));
        std::fs::write(&path, &text).unwrap();
        let want_pos = format!("{}:{line}:", path.display());
        for sub in ["check-config", "run"] {
            let mut cmd = warden();
            if sub == "run" {
                cmd.args(["run", "--config"]).arg(&path);
            } else {
                cmd.arg("check-config").arg(&path);
            }
            let out = run(cmd, Duration::from_secs(30));
            let err = output_text(&out.stderr);
            if out.status.success() {
                failures.push(format!("{name}: `{sub}` exited 0; stderr: {err}"));
                continue;
            }
            if !err.contains(&want_pos) {
                failures.push(format!(
                    "{name}: `{sub}` error does not name {want_pos:?}: {}",
                    err.trim()
                ));
            }
            for k in &keys {
                if !err.contains(k) {
                    failures.push(format!(
                        "{name}: `{sub}` error does not name key {k:?}: {}",
                        err.trim()
                    ));
                }
            }
            if pin_dir.exists() {
                failures.push(format!("{name}: `{sub}` left {}", pin_dir.display()));
                remove_pin_dir(&pin_dir);
            }
            if tmp.path().join("state").join("ready").exists() {
                failures.push(format!("{name}: `{sub}` wrote the ready file"));
            }
        }
    }
    assert!(failures.is_empty(), "bad configs:\n{}", failures.join("\n"));
}

/// (10) A hostname endpoint: `localhost` (from /etc/hosts, not edited) with a
/// server on 127.0.0.1 in the root namespace.
#[test]
fn hostname_endpoint_is_resolved_and_intercepted() {
    require_root();
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    assert!(
        hosts
            .lines()
            .any(|l| l.split_whitespace().next() == Some("127.0.0.1")
                && l.split_whitespace().any(|w| w == "localhost")),
        "this test needs `127.0.0.1 localhost` in /etc/hosts"
    );
    let cg = TestCgroup::new();
    let srv = HttpServer::start_local("127.0.0.1".parse().unwrap(), &[free_port()]);
    let port = srv.port();
    let agent = Agent::builder(&cg)
        .endpoint("local", &[format!("localhost:{port}")])
        .start();
    let r = curl(Some(&cg), &[format!("http://127.0.0.1:{port}/hello")]);
    r.assert_ok();
    assert_eq!(r.stdout, format!("hello from port {port}\n"));
    let (c, cl) = wait_connect_close(&agent, r.pid);
    assert_connect(
        &c,
        &curl_who(r.pid, &cg),
        &format!("127.0.0.1:{port}"),
        "local",
    );
    assert_close(&cl, 1, 1);
    assert_eq!(srv.count(port), 1);
}

/// SIGHUP applies endpoint changes; a bad file on SIGHUP is refused and the
/// running config kept.
#[test]
fn sighup_reloads_endpoints_and_keeps_running_on_a_bad_file() {
    let w = world();
    let mut agent = w.agent(&[w.v4(8080)]).start();
    let direct = w.hello_in_cgroup(8081);
    direct.assert_ok();

    agent.set_endpoints(&[("web", &[w.v4(8080), w.v4(8081)])]);
    agent.reload();
    // the reload is asynchronous: poll until a connection to 8081 is recorded
    let pid = wait_until(
        WAIT,
        "a connection to :8081 to be intercepted after SIGHUP",
        || {
            let r = w.hello_in_cgroup(8081);
            r.assert_ok();
            std::thread::sleep(Duration::from_millis(300));
            of_pid(&agent.export(), r.pid).first().map(|_| r.pid)
        },
    );
    let (c, _) = wait_connect_close(&agent, pid);
    assert_eq!(c["orig_dst"], w.v4(8081));
    assert!(
        of_pid(&agent.export(), direct.pid).is_empty(),
        "before the reload 8081 went direct"
    );

    let valid = agent.config_text();
    std::fs::write(agent.config_path(), "[agent\nthis is not toml\n").unwrap();
    agent.reload();
    // the refusal is logged with the file and line, like any config error
    let want = format!("{}:1:", agent.config_path().display());
    wait_for(
        WAIT,
        format!("the agent to log the refused reload ({want})"),
        || agent.log().contains(&want),
    );
    assert!(
        agent.is_running(),
        "a bad file on SIGHUP does not stop the agent"
    );
    let r = w.hello_in_cgroup(8081);
    r.assert_ok();
    std::fs::write(agent.config_path(), valid).unwrap(); // `audit export` and `detach` read it
    let (c, _) = wait_connect_close(&agent, r.pid);
    assert_eq!(c["orig_dst"], w.v4(8081), "the running endpoints were kept");
}

/// A connection to the listener that no redirect produced (the agent cannot
/// attribute it) is closed without relaying and recorded as a reject.
#[test]
fn a_direct_connection_to_the_listener_is_rejected() {
    let w = world();
    let agent = w.agent(&[w.v4(8080)]).start();
    let r = curl(None, &[format!("http://{}/hello", agent.listen())]);
    assert_ne!(
        r.code(),
        Some(0),
        "the agent must not answer an unattributed connection: {r:?}"
    );
    let recs = agent.wait_records("a reject record", |recs| {
        !of_kind(recs, "reject").is_empty()
    });
    let rej = of_kind(&recs, "reject")[0];
    assert!(
        !s(&rej["reason"]).is_empty(),
        "a reject carries a reason: {rej:#}"
    );
    assert!(s(&rej["client"]).starts_with("127.0.0.1:"), "{rej:#}");
    assert_eq!(of_kind(&recs, "connect").len(), 0, "{recs:#?}");
    assert_eq!(w.srv.total(), 0, "nothing reached the server");
}

/// A `cidr:port` endpoint (the test's own /24, never anything outside its
/// namespace) catches an address inside it, on that port only.
#[test]
fn cidr_endpoint_matches_addresses_inside_it_on_its_port() {
    let w = world();
    let net = format!(
        "{}/24:8080",
        w.ns.peer_v4()
            .to_string()
            .rsplit_once('.')
            .map(|(a, _)| format!("{a}.0"))
            .unwrap()
    );
    let agent = w.agent(&[net]).start();
    assert_intercepted(&w, &agent);
    // same address, other port: not covered by the CIDR endpoint
    let before = agent.export().len();
    w.hello_in_cgroup(8081).assert_ok();
    assert_eq!(
        agent.export().len(),
        before,
        "port 8081 is outside the endpoint"
    );
}

/// With `listen6 = "off"`, a connection to an IPv6 endpoint has nowhere to
/// land: it is refused, never sent direct.
#[test]
fn ipv6_endpoint_without_ipv6_listener_is_refused() {
    let w = world();
    let agent = w.agent(&[w.v6(8080)]).no_listen6().start();
    let before = w.srv.count(8080);
    let url = format!("http://{}/hello", w.v6(8080));
    let r = curl(Some(&w.cg), &[url.as_str()]);
    assert_ne!(r.code(), Some(0), "the connection must fail: {r:?}");
    assert_eq!(w.srv.count(8080), before, "nothing may reach the server");
    assert!(
        agent.export().is_empty(),
        "nothing was relayed, so nothing recorded"
    );
    assert!(
        kernel_counter(&agent, "no_listener6") >= 1,
        "the kernel counted it"
    );
}

/// A process of the attached cgroup that lives in another network namespace
/// (a container, say) is left alone: the agent's loopback listener is not
/// reachable from there. It reaches the server directly, nothing is recorded,
/// and the kernel counts the skip.
#[test]
fn sockets_of_other_network_namespaces_are_left_alone() {
    let w = world();
    // a server on the root-namespace side of the veth, reachable from inside the namespace
    let host_srv = HttpServer::start_local(w.ns.host_v4().into(), &[0]);
    let target = host_srv.addr(host_srv.port());
    let agent = w.agent(&[target.to_string()]).start();

    let mut cmd = w.ns.command("curl");
    cmd.args(["-sS", "--max-time", "20", &format!("http://{target}/hello")]);
    w.cg.enter_on_exec(&mut cmd);
    let out = run(cmd, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "direct from the namespace: {}",
        output_text(&out.stderr)
    );
    assert_eq!(host_srv.count(host_srv.port()), 1, "the server was reached");
    assert!(
        agent.export().is_empty(),
        "nothing intercepted, nothing recorded"
    );

    assert!(
        kernel_counter(&agent, "skipped_netns") >= 1,
        "the kernel counted it"
    );
}

/// `ca export` creates the local CA once (key private), prints the same
/// certificate every time, and that certificate is a CA that openssl parses.
#[test]
fn ca_export_creates_a_private_ca_once_and_prints_it() {
    let w = world();
    let agent = w.agent(&[w.v4(8080)]).build();
    let cfg = agent.config_path().to_string_lossy().into_owned();
    let first = agent.run_subcommand(&["ca", "export", "--config", &cfg]);
    assert!(first.status.success(), "{}", output_text(&first.stderr));
    let pem = output_text(&first.stdout);
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    let again = agent.run_subcommand(&["ca", "export", "--config", &cfg]);
    assert_eq!(
        output_text(&again.stdout),
        pem,
        "the CA is reused, not regenerated"
    );

    use std::os::unix::fs::PermissionsExt;
    let key = agent.state_dir().join("ca").join("ca.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", key.display());

    let pem_path = w.file("ca.pem");
    std::fs::write(&pem_path, &pem).unwrap();
    let mut cmd = std::process::Command::new("openssl");
    cmd.args(["x509", "-noout", "-text", "-in"]).arg(&pem_path);
    let text = output_text(&run(cmd, Duration::from_secs(30)).stdout);
    assert!(text.contains("CA:TRUE"), "{text}");
    assert!(text.contains("mcp-warden local CA"), "{text}");
}

/// The records of a run, a kill -9 and a restart verify (the torn tail, if
/// any, is recovered and recorded); one changed byte is then found and named.
#[test]
fn audit_verify_passes_after_kill9_and_names_a_changed_byte() {
    let w = world();
    let mut agent = w.agent(&[w.v4(8080)]).start();
    assert_intercepted(&w, &agent);
    agent.kill9();
    agent.start();
    assert_intercepted(&w, &agent);
    agent.stop();

    let cfg = agent.config_path().to_string_lossy().into_owned();
    let pubkey = agent.run_subcommand(&["audit", "pubkey", "--config", &cfg]);
    assert!(
        output_text(&pubkey.stdout).starts_with("ed25519:"),
        "{pubkey:?}"
    );
    let key_file = w.file("warden.pub");
    std::fs::write(&key_file, &pubkey.stdout).unwrap();
    let key = key_file.to_string_lossy().into_owned();
    let ok = agent.run_subcommand(&["audit", "verify", "--config", &cfg, "--pubkey", &key]);
    assert!(
        ok.status.success(),
        "verify: {}{}",
        output_text(&ok.stdout),
        output_text(&ok.stderr)
    );

    // flip one byte inside a record of the first segment
    let audit_dir = agent.state_dir().join("audit");
    let mut segs: Vec<_> = std::fs::read_dir(&audit_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    let seg = &segs[0];
    let mut bytes = std::fs::read(seg).unwrap();
    let at = bytes
        .windows(6)
        .position(|w| w == b"\"curl\"")
        .expect("a record naming curl")
        + 1;
    bytes[at] = b'C';
    std::fs::write(seg, &bytes).unwrap();
    let bad = agent.run_subcommand(&["audit", "verify", "--config", &cfg, "--pubkey", &key]);
    let text = output_text(&bad.stdout) + &output_text(&bad.stderr);
    assert!(!bad.status.success(), "the edit must be detected: {text}");
    let name = seg.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        text.contains(&name),
        "the message names the segment: {text}"
    );
}

/// Three intercepted connections to two endpoints make three sessions:
/// `sessions list` summarises them with the caller, `show` and `replay` read
/// one back, and `audit export` filters by endpoint and session.
#[test]
fn sessions_and_export_filters_on_a_recorded_log() {
    let w = world();
    let agent = Agent::builder(&w.cg)
        .endpoint("web", &[w.v4(8080)])
        .endpoint("other", &[w.v4(8081)])
        .start();
    let pids: Vec<u32> = [8080, 8080, 8081]
        .iter()
        .map(|port| {
            let r = w.hello_in_cgroup(*port);
            r.assert_ok();
            wait_connect_close(&agent, r.pid);
            r.pid
        })
        .collect();
    let cfg = agent.config_path().to_string_lossy().into_owned();
    let cli = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--config", cfg.as_str()]);
        let out = agent.run_subcommand(&all);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            output_text(&out.stderr)
        );
        output_text(&out.stdout)
    };

    let list: Value =
        serde_json::from_str(&cli(&["sessions", "list", "--format", "json"])).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 3, "{list:?}");
    for s in list {
        assert_eq!(s["user"], "root", "{s}");
        assert_eq!(s["exe"], "/usr/bin/curl", "{s}");
    }
    assert_eq!(list.iter().filter(|s| s["endpoint"] == "other").count(), 1);
    let table = cli(&["sessions", "list"]);
    assert!(
        table.contains("/usr/bin/curl") || table.contains("curl"),
        "{table}"
    );

    let id = list.iter().find(|s| s["endpoint"] == "other").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let shown: Vec<Value> = cli(&["sessions", "show", &id])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        shown.iter().all(|r| r["session"] == id.as_str()) && shown.len() >= 2,
        "{shown:?}"
    );
    assert_eq!(shown[0]["identity"]["pid"], pids[2]);
    let replay = cli(&["sessions", "replay", &id]);
    assert!(
        replay.contains("other") && replay.contains(&w.v4(8081)),
        "{replay}"
    );

    let by_endpoint = cli(&["audit", "export", "--endpoint", "web"]);
    let recs: Vec<Value> = by_endpoint
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        recs.len(),
        4,
        "two sessions of web, connect + close each: {recs:?}"
    );
    assert!(recs.iter().all(|r| r["endpoint"] == "web"));
    let by_session = cli(&["audit", "export", "--session", &id]);
    assert_eq!(by_session.lines().count(), shown.len());
    let future = cli(&["audit", "export", "--since", "2999-01-01T00:00:00Z"]);
    assert!(future.is_empty(), "{future}");
}
