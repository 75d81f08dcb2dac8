//! `cargo xtask demo`: the README's one-command tour. A "remote" MCP server
//! (the official Python SDK, over TLS, requiring a bearer token) lives in its
//! own network namespace at 10.201.N.2; a legacy client in a cgroup watched by
//! the agent calls it unchanged, with a leftover key, and gets patient rows
//! back masked. Everything it creates is removed at the end.

use std::path::Path;
use std::time::Duration;

use anyhow::{Result, ensure};
use mcp_warden_tests::{
    Agent, ClientRun, McpServer, NetNs, TestCgroup, TestPki, output_text, write_secret,
};
use serde_json::Value;

const SERVER_TOKEN: &str = "demo-gateway-token-4f1c";
const LEFTOVER: &str = "stale-key-from-a-2023-script";

pub fn run(bin: &Path) -> Result<()> {
    crate::require_root("the demo")?;
    crate::setup_peers()?;
    // SAFETY: single-threaded at this point; the harness reads it to find the binary.
    unsafe { std::env::set_var("MCP_WARDEN_BIN", bin) };

    step("A remote MCP server (TLS, bearer token) in its own namespace, and a client cgroup");
    let ns = NetNs::new();
    let pki = TestPki::new(ns.peer_v4().into());
    let server = McpServer::start(&ns, &pki, 8443, SERVER_TOKEN, &[]);
    let target = format!("{}:8443", ns.peer_v4());
    let clients = TestCgroup::new();
    println!(
        "server   https://{target}/mcp  (namespace {}, MCP Python SDK 2.x)",
        ns.name()
    );
    println!("clients  cgroup {}", clients.rel());

    step("Start mcp-warden: one MCP endpoint, holding the server's token");
    let secrets = tempfile::tempdir()?;
    let token_file = secrets.path().join("ehr-token");
    write_secret(&token_file, SERVER_TOKEN);
    let mut agent = Agent::builder(&clients)
        .mcp_endpoint(
            "ehr-demo",
            std::slice::from_ref(&target),
            &[
                &format!("upstream_ca = {:?}", pki.ca.display().to_string()),
                "credential = \"ehr\"",
            ],
        )
        .toml(&format!(
            "[credential.ehr]\nkind = \"bearer\"\nfile = {:?}",
            token_file.display().to_string()
        ))
        .start();
    println!("{}", agent.config_text().trim());
    let ca = agent.export_ca();
    println!(
        "host CA exported to {} (clients get it through SSL_CERT_FILE)",
        ca.display()
    );

    // the legacy script: SDK 2.x in the cgroup, with its stale key, trusting the host CA
    let script = |calls: &str| {
        ClientRun {
            sdk: "mcp2",
            url: format!("https://{target}/mcp"),
            token: LEFTOVER,
            ca_file: &ca,
            era: "handshake",
            transport: "streamable-http",
            calls,
        }
        .run(Some(&clients))
    };

    step("A legacy script in the cgroup, with a stale key, calls tools: intercepted");
    let result = script(
        r#"[{"tool":"echo","arguments":{"text":"hello from the legacy script"}},{"tool":"add","arguments":{"a":2,"b":40}}]"#,
    );
    println!(
        "protocol {}   tools {}",
        result["protocol_version"], result["tools"]
    );
    for r in result["results"].as_array().into_iter().flatten() {
        println!("{} -> {}", r["tool"], r["content"][0]["text"]);
    }

    step("What the server received: the gateway's token, never the script's");
    let mut auth: Vec<String> = server
        .seen()
        .iter()
        .map(|s| {
            format!(
                "{} {}: Authorization {}",
                s["method"], s["path"], s["authorization"]
            )
        })
        .collect();
    auth.dedup();
    for line in &auth {
        println!("{line}");
    }
    ensure!(
        !auth.iter().any(|l| l.contains(LEFTOVER)),
        "the stale key reached the server"
    );

    step("The server answers with patient rows: the script gets them masked (HIPAA Safe Harbor)");
    let rows =
        script(r#"[{"tool":"patients","arguments":{}},{"tool":"patients_csv","arguments":{}}]"#);
    let structured = &rows["results"][0]["structuredContent"]["patients"][0];
    println!("patients -> structuredContent row 1: {structured}");
    println!(
        "patients_csv -> text:\n{}",
        rows["results"][1]["content"][0]["text"]
            .as_str()
            .unwrap_or("")
    );
    ensure!(
        structured["diagnosis"] == "E11.9" && structured["ssn"] != "536-22-8741",
        "the rows were not masked as expected: {structured}"
    );

    step("A call whose headers lie about its body (2026-07-28 Mcp-Name) is refused");
    let body = r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"delete_records","arguments":{}}}"#;
    let mut curl = clients.command("curl");
    curl.args(["-sS", "--cacert"])
        .arg(&ca)
        .args([
            "-H",
            "Content-Type: application/json",
            "-H",
            "Accept: application/json, text/event-stream",
        ])
        .args([
            "-H",
            "MCP-Protocol-Version: 2026-07-28",
            "-H",
            "Mcp-Method: tools/call",
            "-H",
            "Mcp-Name: echo",
        ])
        .args(["--data-binary", body, &format!("https://{target}/mcp")]);
    let out = mcp_warden_tests::run(curl, Duration::from_secs(30));
    println!(
        "$ curl … -H 'Mcp-Name: echo' --data '{body}'\n{}",
        output_text(&out.stdout)
    );
    ensure!(
        output_text(&out.stdout).contains("-32020"),
        "the mismatched call was not refused"
    );

    step("The audit trail: every MCP message, with who sent it");
    let records = agent.wait_records("the tools/call responses", |recs| {
        recs.iter()
            .filter(|r| r["kind"] == "response" && r["method"] == "tools/call")
            .count()
            >= 4
            && recs.iter().any(|r| r["kind"] == "reject")
    });
    for rec in &records {
        println!("{}", summary(rec));
    }
    let call = records
        .iter()
        .find(|r| r["kind"] == "response" && r["tool"] == "patients_csv")
        .expect("the patients_csv response record");
    println!(
        "\nthe patients_csv response record in full (payload as the script got it):\n{}",
        serde_json::to_string_pretty(call)?
    );
    let verify = agent.run_subcommand(&[
        "audit",
        "verify",
        "--config",
        &agent.config_path().display().to_string(),
    ]);
    println!(
        "$ mcp-warden audit verify\n{}",
        output_text(&verify.stdout).trim()
    );
    ensure!(
        verify.status.success(),
        "audit verify failed: {}",
        output_text(&verify.stderr)
    );

    step("Fail-closed: with the agent stopped, matching connections are refused");
    agent.kill9();
    let mut probe = clients.command("curl");
    probe.args([
        "-sS",
        "--max-time",
        "5",
        "-o",
        "/dev/null",
        &format!("https://{target}/health"),
        "-k",
    ]);
    let down = mcp_warden_tests::run(probe, Duration::from_secs(30));
    println!(
        "curl exit code {} ({})",
        down.status.code().unwrap_or(-1),
        output_text(&down.stderr).trim()
    );
    ensure!(
        !down.status.success(),
        "a connection went through while the agent was down"
    );

    step("Done: stopping the agent, detaching, removing the cgroup and namespace");
    agent.start();
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
    let what = match r["kind"].as_str().unwrap_or("?") {
        "connect" => format!(
            "pid={} exe={} uid={} cgroup={} -> {}",
            id["pid"],
            id["exe"].as_str().unwrap_or("?"),
            id["uid"],
            id["cgroup"].as_str().unwrap_or("?"),
            r["orig_dst"].as_str().unwrap_or("?")
        ),
        "request" | "response" => format!(
            "{:<16} {:<8} {:<22} {}{}{}",
            r["direction"].as_str().unwrap_or(""),
            r["message"].as_str().unwrap_or(""),
            r["method"].as_str().unwrap_or(""),
            r["tool"].as_str().unwrap_or(""),
            r["latency_us"]
                .as_u64()
                .map(|us| format!("  {us} µs"))
                .unwrap_or_default(),
            r.get("masked")
                .map(|m| format!("  masked {m}"))
                .unwrap_or_default()
        ),
        "reject" => r["reason"].as_str().unwrap_or("").to_string(),
        "http" => format!("{} -> {}", r["http"].as_str().unwrap_or(""), r["status"]),
        "close" => format!(
            "up={}B down={}B {}ms {}",
            r["bytes_up"],
            r["bytes_down"],
            r["duration_ms"],
            r["outcome"].as_str().unwrap_or("")
        ),
        _ => String::new(),
    };
    format!(
        "#{:<3} {:<8} {:<9} {}",
        r["seq"],
        r["kind"].as_str().unwrap_or("?"),
        r["endpoint"].as_str().unwrap_or("-"),
        what
    )
}
