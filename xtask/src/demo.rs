//! `cargo xtask demo`: the README's one-command tour. A "remote" server lives
//! in its own network namespace at 10.201.N.2; clients in a cgroup watched by
//! the agent dial it unchanged. Everything it creates is removed at the end.

use std::path::Path;
use std::time::Duration;

use anyhow::{Result, ensure};
use mcp_warden_tests::{Agent, NetNs, PeerOutput, TestCgroup, curl, python_command};
use serde_json::Value;

pub fn run(bin: &Path) -> Result<()> {
    crate::require_root("the demo")?;
    // SAFETY: single-threaded at this point; the harness reads it to find the binary.
    unsafe { std::env::set_var("MCP_WARDEN_BIN", bin) };

    step("A remote server in its own network namespace, and a client cgroup");
    let ns = NetNs::new();
    let server = ns.http_server(&[8080]);
    let target = server.addr(8080);
    let clients = TestCgroup::new();
    println!("server   http://{target}/  (namespace {})", ns.name());
    println!("clients  cgroup {}", clients.rel());

    step("Start mcp-warden, attached to the client cgroup, with one endpoint");
    let mut agent = Agent::builder(&clients)
        .endpoint("ehr-demo", &[target.to_string()])
        .start();
    println!("{}", agent.config_text().trim());

    step("A client in the cgroup calls the server, unchanged: intercepted");
    let url = format!("http://{target}/hello");
    let r = curl(
        Some(&clients),
        &["-w", "\nremote=%{remote_ip}:%{remote_port}\n", url.as_str()],
    );
    r.assert_ok();
    print!("$ curl {url}   (pid {})\n{}", r.pid, r.stdout);

    step("What the client sees as its peer (getpeername) is still the server");
    let mut py = python_command(Some(&clients), "sock_client.py");
    py.args([
        "--family",
        "4",
        "--host",
        &target.ip().to_string(),
        "--port",
        "8080",
    ]);
    let out = PeerOutput::run(py, Duration::from_secs(60));
    let connected = out.expect_event("connected");
    println!(
        "peername {}   sockname {}",
        connected["peername"], connected["sockname"]
    );

    step("A process outside the cgroup goes direct: no record");
    let before = agent.export().len();
    curl(None, &[url.as_str()]).assert_ok();
    println!("records before {before}, after {}", agent.export().len());

    step("The records: who (process, user, cgroup), where, how much");
    let records = agent.wait_records("the close records", |recs| {
        recs.iter().filter(|r| r["kind"] == "close").count() >= 2
    });
    for rec in &records {
        println!("{}", summary(rec));
    }
    println!(
        "\nfirst record in full:\n{}",
        serde_json::to_string_pretty(&records[0])?
    );

    step("Fail-closed: with the agent stopped, matching connections are refused");
    agent.kill9();
    let down = curl(Some(&clients), &["--max-time", "5", url.as_str()]);
    println!(
        "curl exit code {} ({})",
        down.code().unwrap_or(-1),
        down.stderr.trim()
    );
    ensure!(
        !down.status.success(),
        "a connection went through while the agent was down"
    );

    step("Restart: interception resumes");
    agent.start();
    curl(Some(&clients), &[url.as_str()]).assert_ok();
    let last = agent.wait_records("a record after restart", |r| r.len() > records.len());
    println!("{}", summary(last.last().expect("a record")));

    step("Done: stopping the agent, detaching, removing the cgroup and namespace");
    agent.stop();
    drop(agent);
    println!("ok");
    Ok(())
}

fn step(title: &str) {
    println!("\n== {title}");
}

fn summary(r: &Value) -> String {
    let id = &r["identity"];
    format!(
        "#{:<3} {:<7} {:<9} pid={} comm={} exe={} uid={} user={} cgroup={} {} -> {}{}",
        r["seq"],
        r["kind"].as_str().unwrap_or("?"),
        r["endpoint"].as_str().unwrap_or("-"),
        id["pid"],
        id["comm"].as_str().unwrap_or("?"),
        id["exe"].as_str().unwrap_or("?"),
        id["uid"],
        id["user"].as_str().unwrap_or("?"),
        id["cgroup"].as_str().unwrap_or("?"),
        r["client"].as_str().unwrap_or("?"),
        r["orig_dst"].as_str().unwrap_or("?"),
        match (r.get("bytes_up"), r.get("bytes_down")) {
            (Some(u), Some(d)) => format!(
                "  up={u}B down={d}B {}ms {}",
                r["duration_ms"],
                r["outcome"].as_str().unwrap_or("")
            ),
            _ => String::new(),
        }
    )
}
