//! Self-tests of the harness (no agent needed): cgroups, namespaces, peers,
//! the Agent plumbing against a stand-in binary, and cleanup on panic.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mcp_warden_tests::*;
use serde_json::{Value, json};

/// True if the pid no longer exists, or only as a zombie.
fn dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
    }
}

fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

fn link_exists(ifname: &str) -> bool {
    Path::new("/sys/class/net").join(ifname).exists()
}

fn sleeper(cg: &TestCgroup) -> Child {
    let mut cmd = cg.command("sleep");
    cmd.arg("1000");
    Child::spawn("sleep in cgroup", cmd)
}

#[test]
fn require_root_passes_as_root() {
    require_root();
}

#[test]
fn indexes_and_ports_are_distinct() {
    require_root();
    let idx: Vec<u32> = (0..5).map(|_| unique()).collect();
    assert_eq!(idx.iter().collect::<HashSet<_>>().len(), 5, "{idx:?}");
    assert!(idx.iter().all(|n| (1..=254).contains(n)));
    let ports: Vec<u16> = (0..20).map(|_| free_port()).collect();
    assert_eq!(ports.iter().collect::<HashSet<_>>().len(), 20, "{ports:?}");
    assert!(
        ports.iter().all(|p| *p < 32768),
        "below the ephemeral range: {ports:?}"
    );
}

#[test]
#[should_panic(expected = "timed out after")]
fn an_expired_wait_is_a_failure() {
    wait_for(
        Duration::from_millis(200),
        "something that never happens",
        || false,
    );
}

#[test]
fn cgroup_holds_processes_and_drop_kills_them() {
    require_root();
    let cg = TestCgroup::new();
    assert!(cg.path().starts_with(cgroup2_root()));
    assert!(cg.rel().starts_with("/mcp-warden-test-"));
    assert!(cg.id() > 1);
    let mut direct = sleeper(&cg);
    // a grandchild that is not our child: Drop must find it through cgroup.procs
    let mut cmd = cg.command("sh");
    cmd.args(["-c", "sleep 1000 & echo $!; wait"]);
    let mut sh = Child::spawn("sh with a background sleep", cmd);
    let grandchild: u32 = sh
        .wait_for_line(WAIT, "the background pid", |l| !l.is_empty())
        .trim()
        .parse()
        .unwrap();

    let pids = [direct.pid(), sh.pid(), grandchild];
    wait_for(WAIT, "all three processes in cgroup.procs", || {
        let procs = cg.procs();
        pids.iter().all(|p| procs.contains(p))
    });
    for pid in pids {
        let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        assert!(
            own.lines().any(|l| l == format!("0::{}", cg.rel())),
            "pid {pid}: {own}"
        );
    }
    // not in the test process's own cgroup
    assert!(!cg.procs().contains(&std::process::id()));

    let path = cg.path().to_path_buf();
    drop(cg);
    assert!(!path.exists(), "{} still exists", path.display());
    assert!(direct.try_status().is_some(), "the direct child was killed");
    assert!(sh.try_status().is_some());
    wait_for(WAIT, "the grandchild to be gone", || dead(grandchild));
}

#[test]
fn cgroup_command_runs_curl_and_reports_its_pid() {
    require_root();
    let cg = TestCgroup::new();
    let srv = HttpServer::start_local("127.0.0.1".parse().unwrap(), &[0]);
    let r = curl(
        Some(&cg),
        &[format!("http://{}/hello", srv.addr(srv.port()))],
    );
    r.assert_ok();
    assert!(r.pid > 1);
    assert_eq!(r.stdout, format!("hello from port {}\n", srv.port()));
    // the wrapper shell exec'd curl: it is gone with it
    assert!(dead(r.pid));
    assert_eq!(srv.count(srv.port()), 1);
}

#[test]
fn netns_server_is_reachable_over_the_veth() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let ns = NetNs::new();
    let n = ns.n();
    assert_eq!(ns.peer_v4().to_string(), format!("10.201.{n}.2"));
    assert_eq!(ns.peer_v6().to_string(), format!("fd01:{n}::2"));
    let srv = ns.http_server(&[8080, 8081]);
    assert_eq!(srv.ports(), &[8080, 8081]);
    let base = format!("http://{}:8080", ns.peer_v4());

    let hello = curl(None, &[format!("{base}/hello")]);
    hello.assert_ok();
    assert_eq!(hello.stdout, "hello from port 8080\n");

    // a download with a known digest
    let dl = tmp.path().join("dl");
    let hdr = tmp.path().join("hdr");
    curl(
        None,
        &[
            format!("{base}/download?size=1048576").as_str(),
            "-o",
            dl.to_str().unwrap(),
            "-D",
            hdr.to_str().unwrap(),
        ],
    )
    .assert_ok();
    let headers = std::fs::read_to_string(&hdr).unwrap().to_lowercase();
    let want = headers
        .lines()
        .find_map(|l| l.strip_prefix("x-sha256: "))
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(sha256_file(&dl), want);
    assert_eq!(std::fs::metadata(&dl).unwrap().len(), 1048576);

    // an upload
    let up = tmp.path().join("up");
    let sha = write_payload(&up, 3 * 1024 * 1024 + 7, 42);
    let r = curl(
        None,
        &[
            "--data-binary",
            &format!("@{}", up.display()),
            &format!("{base}/upload"),
        ],
    );
    r.assert_ok();
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v, json!({"len": 3 * 1024 * 1024 + 7, "sha256": sha}));

    // IPv6, and the client address the server sees
    let r6 = curl(
        None,
        &["-g", &format!("http://[{}]:8081/peer", ns.peer_v6())],
    );
    r6.assert_ok();
    let peer: Value = serde_json::from_str(&r6.stdout).unwrap();
    assert_eq!(peer["host"], ns.host_v6().to_string());
    assert_eq!(peer["server_port"], 8081);
    let r4: Value =
        serde_json::from_str(&curl(None, &[format!("{base}/peer")]).assert_ok().stdout).unwrap();
    assert_eq!(r4["host"], ns.host_v4().to_string());

    // the socket client: plain IPv4, and a dual-stack socket dialling ::ffff:a.b.c.d
    let mut cmd = python_command(None, "sock_client.py");
    cmd.args([
        "--family",
        "4",
        "--host",
        &ns.peer_v4().to_string(),
        "--port",
        "8080",
        "--send-bytes",
        "100000",
        "--repeat",
        "3",
    ]);
    let out = PeerOutput::run(cmd, Duration::from_secs(60));
    assert!(out.status.success(), "{out:#?}");
    assert_eq!(
        out.expect_event("connected")["peername"],
        json!([ns.peer_v4().to_string(), 8080])
    );
    assert_eq!(
        out.lines
            .iter()
            .filter(|l| l["event"] == "result" && l["ok"] == true)
            .count(),
        3
    );

    let mapped = format!("::ffff:{}", ns.peer_v4());
    let mut cmd = python_command(None, "sock_client.py");
    cmd.args(["--family", "6", "--host", &mapped, "--port", "8080"]);
    let out = PeerOutput::run(cmd, Duration::from_secs(60));
    assert!(out.status.success(), "{out:#?}");
    assert_eq!(
        out.expect_event("connected")["peername"],
        json!([mapped, 8080])
    );

    let mut cmd = python_command(None, "many_clients.py");
    cmd.args([
        "--host",
        &ns.peer_v4().to_string(),
        "--port",
        "8081",
        "--count",
        "20",
        "--send-bytes",
        "4096",
    ]);
    let out = PeerOutput::run(cmd, Duration::from_secs(120));
    assert!(out.status.success(), "{out:#?}");
    assert_eq!(out.lines[0]["ok"], 20);

    let stats = srv.stats();
    // hello, download, upload, peer, 3 uploads, 1 mapped hello
    assert_eq!(stats["by_port"]["8080"], 8, "{stats}");
    assert_eq!(stats["by_port"]["8081"], 1 + 20, "{stats}");

    let name = ns.name().to_string();
    let host_if = ns.host_if().to_string();
    let pid = srv.pid();
    drop(ns);
    assert!(!netns_exists(&name), "netns {name} still exists");
    assert!(!link_exists(&host_if), "veth {host_if} still exists");
    wait_for(WAIT, "the server to be gone", || dead(pid));
}

/// What the panicking test leaves for the checker: every name it held.
fn hold_everything_and_panic(report: Option<PathBuf>) -> ! {
    let cg = TestCgroup::new();
    let ns = NetNs::new();
    let srv = ns.http_server(&[8080]);
    let sleeper = sleeper(&cg);
    let scratch = tempfile::tempdir().unwrap();
    let bpffs = scratch.path().join("bpffs");
    let agent = Agent::builder(&cg)
        .program(&python(), &[peer_script("fake_agent.py").to_str().unwrap()])
        .bpffs(&bpffs)
        .tempdir_in(scratch.path())
        .endpoint("web", &["10.201.1.2:8080"])
        .start();
    assert!(agent.pin_dir().exists());
    let facts = json!({
        "cgroup": cg.path(),
        "netns": ns.name(),
        "veth": ns.host_if(),
        "pids": [sleeper.pid(), srv.pid(), agent.pid().unwrap()],
        "pin_dir": agent.pin_dir(),
        "agent_dir": agent.dir(),
    });
    if let Some(p) = report {
        std::fs::write(p, facts.to_string()).unwrap();
    }
    let _ = scratch.keep(); // its contents are checked after the panic
    panic!("deliberate panic while holding guards");
}

fn assert_all_gone(facts: &Value) {
    let cg = PathBuf::from(facts["cgroup"].as_str().unwrap());
    assert!(!cg.exists(), "cgroup {} left behind", cg.display());
    assert!(
        !netns_exists(facts["netns"].as_str().unwrap()),
        "netns left behind: {facts}"
    );
    assert!(
        !link_exists(facts["veth"].as_str().unwrap()),
        "veth left behind: {facts}"
    );
    for pid in facts["pids"].as_array().unwrap() {
        let pid = pid.as_u64().unwrap() as u32;
        wait_for(WAIT, format!("pid {pid} to be gone"), || dead(pid));
    }
    let pins = PathBuf::from(facts["pin_dir"].as_str().unwrap());
    assert!(
        !pins.exists(),
        "pin dir {} left behind (detach did not run)",
        pins.display()
    );
    // the agent's tempdir is kept on failure, for inspection: remove it here
    let dir = PathBuf::from(facts["agent_dir"].as_str().unwrap());
    assert!(
        dir.join("agent.log").exists(),
        "the agent's tempdir is kept when a test panics"
    );
    let _ = std::fs::remove_dir_all(dir.parent().unwrap()); // the scratch dir
}

#[test]
#[should_panic(expected = "deliberate panic while holding guards")]
fn guards_clean_up_when_a_test_panics() {
    require_root();
    hold_everything_and_panic(std::env::var_os("MWT_PANIC_REPORT").map(PathBuf::from));
}

#[test]
fn a_panicking_test_leaves_nothing_behind() {
    require_root();
    // in this process: unwind through the guards, then look
    let report = tempfile::NamedTempFile::new().unwrap();
    let path = report.path().to_path_buf();
    let res = std::panic::catch_unwind(|| hold_everything_and_panic(Some(path.clone())));
    assert!(res.is_err());
    let facts: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_all_gone(&facts);

    // and as a separate test process whose #[should_panic] test panics
    let report2 = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "guards_clean_up_when_a_test_panics",
        "--exact",
        "--test-threads=1",
        "--nocapture",
    ])
    .env("MWT_PANIC_REPORT", report2.path());
    let out = run(cmd, Duration::from_secs(120));
    let err = output_text(&out.stderr);
    assert!(
        out.status.success(),
        "the should_panic test failed: {}\n{err}",
        output_text(&out.stdout)
    );
    assert!(
        err.contains("fake agent: ready"),
        "the agent's log is printed on panic:\n{err}"
    );
    let facts: Value =
        serde_json::from_str(&std::fs::read_to_string(report2.path()).unwrap()).unwrap();
    assert_all_gone(&facts);
}

#[test]
fn agent_plumbing_against_a_stand_in() {
    require_root();
    let cg = TestCgroup::new();
    let bpffs = tempfile::tempdir().unwrap();
    let mut agent = Agent::builder(&cg)
        .program(&python(), &[peer_script("fake_agent.py").to_str().unwrap()])
        .bpffs(bpffs.path())
        .endpoint("web", &["10.201.1.2:8080", "[fd01:1::2]:8080"])
        .fail_mode("open")
        .inside(&cg)
        .build();
    let text = agent.config_text();
    assert!(text.contains("fail_mode = \"open\""), "{text}");
    assert!(
        text.contains("match = [\"10.201.1.2:8080\", \"[fd01:1::2]:8080\"]"),
        "{text}"
    );
    assert!(
        text.contains(&format!("listen = \"127.0.0.1:{}\"", agent.listen().port())),
        "{text}"
    );
    assert!(agent.check_config().status.success());

    agent.start();
    let pid = agent.pid().unwrap();
    assert!(cg.procs().contains(&pid), "started inside the cgroup");
    assert_eq!(
        std::fs::read_to_string(agent.ready_path()).unwrap(),
        format!("{pid}\n")
    );
    assert!(agent.pin_dir().exists());
    let recs = agent.export();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["kind"], "connect");
    agent.reload();
    let recs = agent.wait_records("a reload record", |r| {
        r.iter().any(|r| r["kind"] == "reload")
    });
    assert_eq!(recs.len(), 2);

    assert!(agent.stop().success());
    assert!(!agent.ready_path().exists());
    assert!(!agent.is_running());

    agent.start();
    assert_ne!(agent.pid().unwrap(), pid);
    agent.kill9();
    assert!(
        agent.ready_path().exists(),
        "SIGKILL leaves the ready file (it is the agent's, not ours)"
    );
    agent.start(); // the ready file holds a dead pid: start waits for the new one
    let pins = agent.pin_dir();
    let log = agent.dir().join("agent.log");
    let dir = agent.dir().to_path_buf();
    drop(agent);
    assert!(!pins.exists(), "Drop runs detach");
    assert!(
        !log.exists() && !dir.exists(),
        "the tempdir is removed when the test passes"
    );
}

#[test]
#[should_panic(expected = "exited (exit status: 2) before it was ready")]
fn an_agent_that_exits_early_fails_with_its_log() {
    require_root();
    let cg = TestCgroup::new();
    let scratch = tempfile::tempdir().unwrap(); // dropped after the agent: takes its kept tempdir along
    let mut agent = Agent::builder(&cg)
        .program(
            &python(),
            &[peer_script("fake_agent.py").to_str().unwrap(), "bogus"],
        )
        .bpffs(scratch.path())
        .tempdir_in(scratch.path())
        .build();
    agent.start();
}
