//! `cargo xtask bench`: every figure is a ratio against a baseline measured in
//! the same run, alternating rounds so that machine noise hits both sides.
//!
//! - connect() rate to a destination that matches no endpoint, from a cgroup
//!   with the programs attached vs from one without: the cost of the hook.
//! - relay throughput and request latency (p50, p99) through the agent vs
//!   direct, on loopback.
//! - an MCP `tools/call` with TLS on both sides: direct vs through the agent
//!   vs through nginx doing the same job ([`mcp`]).
//! - the masking engine beside Microsoft Presidio on the same labelled corpus:
//!   recall, precision and MB/s ([`presidio`]; skipped without its venv),
//!   and its MB/s beside a SIMD JSON parser reading the same bytes ([`parse`]).

mod load;
pub mod mcp;
mod parse;
pub mod presidio;

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, Result, bail};
use mcp_warden_tests::{Agent, TestCgroup};
use serde_json::Value;

pub use load::{bulk_send, connect_loop, latency};
pub use mcp::McpWorkerArgs;

const ROUNDS: usize = 3;
const CONNECTS: u32 = 10000;
const BULK_MB: u32 = 256;
const ROUND_TRIPS: u32 = 2000;

/// The parts of `cargo xtask bench`, run in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// connect() hook cost, relay throughput and latency vs direct
    Relay,
    /// MCP tools/call over TLS: direct vs mcp-warden vs nginx
    Mcp,
    /// audit store and masking engine
    Engines,
}

pub fn run(bin: &Path, only: Option<Part>) -> Result<()> {
    crate::require_root("the benchmarks")?;
    let wanted = |p: Part| only.is_none_or(|o| o == p);
    if wanted(Part::Relay) {
        relay(bin)?;
    }
    // The MCP part and the engines are measured in an optimised build of this
    // same tool: the MCP part's client and upstream do TLS themselves, and a
    // debug build of them would blur every column.
    if wanted(Part::Mcp) {
        crate::status(release_xtask(&["bench-mcp"]).env("MCP_WARDEN_BIN", bin))?;
    }
    if wanted(Part::Engines) {
        crate::status(&mut release_xtask(&["bench-engines"]))?;
    }
    Ok(())
}

/// `cargo run --release -p xtask -- <args>`.
fn release_xtask(args: &[&str]) -> std::process::Command {
    let mut c =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(crate::workspace_root())
        .args(["run", "--quiet", "--release", "-p", "xtask", "--"])
        .args(args);
    c
}

/// The connect() hook, relay throughput and latency figures.
fn relay(bin: &Path) -> Result<()> {
    // SAFETY: single-threaded at this point; the harness reads it to find the binary.
    unsafe { std::env::set_var("MCP_WARDEN_BIN", bin) };

    // the connect worker listens on this (non-endpoint) address itself
    let sink: SocketAddr = "127.0.0.1:0".parse()?;
    let echo = load::echo_server()?;
    let bulk = load::bulk_server()?;
    let attached = TestCgroup::new();
    let bare = TestCgroup::new();
    let agent = Agent::builder(&attached)
        .endpoint("bench", &[echo.to_string(), bulk.to_string()])
        .agent_line(r#"drain_timeout = "1s""#)
        .start();
    eprintln!(
        "agent {} attached to {}; {ROUNDS} alternating rounds",
        agent.instance(),
        attached.rel()
    );

    let mut connect = Pair::default();
    let mut bulk_rate = Pair::default();
    let mut lat: Vec<(Value, Value)> = Vec::new();
    for round in 1..=ROUNDS {
        eprintln!("round {round}/{ROUNDS}");
        connect.push(
            worker(&attached, "connect", sink, CONNECTS)?["connects_per_sec"].as_f64(),
            worker(&bare, "connect", sink, CONNECTS)?["connects_per_sec"].as_f64(),
        );
        bulk_rate.push(
            worker(&attached, "bulk", bulk, BULK_MB)?["mb_per_sec"].as_f64(),
            worker(&bare, "bulk", bulk, BULK_MB)?["mb_per_sec"].as_f64(),
        );
        lat.push((
            worker(&attached, "latency", echo, ROUND_TRIPS)?,
            worker(&bare, "latency", echo, ROUND_TRIPS)?,
        ));
    }
    let records = agent.export().len();
    drop(agent);

    println!(
        "\nmcp-warden benchmarks (median of {ROUNDS} alternating rounds; ratio = with agent / baseline)\n"
    );
    println!(
        "{:<46} {:>14} {:>14} {:>8}",
        "measure", "with agent", "baseline", "ratio"
    );
    connect.print("connect() to a non-endpoint, per s (hook cost)", "");
    bulk_rate.print(
        &format!("relay throughput, MB/s ({BULK_MB} MiB one way)"),
        "",
    );
    for (key, label) in [
        ("rtt_p50_us", "request/response p50, µs (kept-alive)"),
        ("rtt_p99_us", "request/response p99, µs (kept-alive)"),
        ("conn_p50_us", "connect+request+response p50, µs"),
        ("conn_p99_us", "connect+request+response p99, µs"),
    ] {
        let mut p = Pair::default();
        for (a, b) in &lat {
            p.push(a[key].as_f64(), b[key].as_f64());
        }
        p.print(label, "");
    }
    println!("\n({records} connection records written during the run)");
    Ok(())
}

/// `xtask bench-engines`: the audit store's append, write-ahead and verify
/// figures; the masking engine's accuracy and throughput on its labelled corpus.
pub fn engines() -> Result<()> {
    let dir = tempfile::tempdir()?;
    println!(
        "\naudit store (in {})\n{}",
        dir.path().display(),
        mcp_warden::audit::bench::bench_report(dir.path())
    );
    println!(
        "\nmasking engine\n{}",
        mcp_warden::mask::bench_report(Some(&parse::baseline()))
    );
    presidio::report()
}

/// `xtask bench-mask`: the masking engine's report alone, or (`rounds`) a
/// fixed workload over its corpus for a profiler.
pub fn mask(kind: Option<&str>, rounds: Option<usize>) -> Result<()> {
    match rounds {
        None => println!(
            "{}",
            mcp_warden::mask::bench_report(Some(&parse::baseline()))
        ),
        Some(n) => {
            let masked = mcp_warden::mask::corpus::workload(kind, n).map_err(anyhow::Error::msg)?;
            println!("{masked} bytes of masked output");
        }
    }
    Ok(())
}

/// Runs one measuring loop as a child process inside `cg`, returns its JSON.
fn worker(cg: &TestCgroup, kind: &str, addr: SocketAddr, n: u32) -> Result<Value> {
    worker_with(cg, kind, addr, n, &[])
}

/// [`worker`] with further arguments (the `bench-worker` flags).
fn worker_with(
    cg: &TestCgroup,
    kind: &str,
    addr: SocketAddr,
    n: u32,
    extra: &[&std::ffi::OsStr],
) -> Result<Value> {
    let exe = std::env::current_exe()?;
    let out = cg
        .command(&exe)
        .args(["bench-worker", kind, &addr.to_string(), &n.to_string()])
        .args(extra)
        .output()
        .with_context(|| format!("running the {kind} worker"))?;
    if !out.status.success() {
        bail!(
            "{kind} worker failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Samples with and without the agent.
#[derive(Default)]
struct Pair {
    with: Vec<f64>,
    base: Vec<f64>,
}

impl Pair {
    fn push(&mut self, with: Option<f64>, base: Option<f64>) {
        self.with.extend(with);
        self.base.extend(base);
    }

    fn print(&self, label: &str, _unit: &str) {
        let (w, b) = (median(&self.with), median(&self.base));
        println!("{label:<46} {w:>14.1} {b:>14.1} {:>8.3}", w / b);
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Entry point of the child process: `xtask bench-worker KIND ADDR N [FLAGS]`
/// (the flags are for the `mcp` kind only).
pub fn worker_main(kind: &str, addr: SocketAddr, n: u32, args: &McpWorkerArgs) -> Result<()> {
    let line = match kind {
        "connect" => connect_loop(addr, n)?,
        "bulk" => bulk_send(addr, n)?,
        "latency" => latency(addr, n)?,
        "mcp" => mcp::client(addr, n, args)?,
        other => bail!("unknown worker {other}"),
    };
    println!("{line}");
    Ok(())
}
