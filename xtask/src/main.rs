//! Developer and CI tasks: `cargo xtask test|demo|bench`.

mod bench;
mod demo;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "mcp-warden developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Unit tests, the ABI layout test, then the root integration tests
    Test {
        /// Only the unprivileged tests
        #[arg(long)]
        unit_only: bool,
        /// Extra arguments for the integration test binary (e.g. a test name filter)
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Intercept a local MCP-style server and show the record (root)
    Demo,
    /// Benchmarks, reported as ratios against a baseline measured in the same run (root)
    ///
    /// Three parts, in this order: `relay` (connect() hook cost, relay
    /// throughput and latency), `mcp` (a TLS-on-both-sides MCP tools/call
    /// direct vs through mcp-warden vs through nginx; needs
    /// `apt-get install nginx-light` for the nginx column) and `engines` (audit
    /// store and masking engine).
    Bench {
        /// Run only this part (e.g. `cargo xtask bench --only mcp`)
        #[arg(long, value_enum)]
        only: Option<bench::Part>,
    },
    /// (internal) one measuring loop of the benchmarks, run inside a cgroup
    #[command(hide = true)]
    BenchWorker {
        kind: String,
        addr: std::net::SocketAddr,
        n: u32,
        #[command(flatten)]
        mcp: bench::McpWorkerArgs,
    },
    /// (internal) the MCP benchmark, run from an optimised build
    #[command(hide = true)]
    BenchMcp,
    /// (internal) the engine benchmarks (audit store), run from an optimised build
    #[command(hide = true)]
    BenchEngines,
    /// (internal) only the Presidio baseline of the engine benchmarks
    #[command(hide = true)]
    BenchPresidio,
    /// The masking engine alone: its accuracy and throughput report, or with
    /// `--rounds` a fixed workload to profile (`valgrind --tool=callgrind`)
    ///
    /// `cargo run --release -p xtask -- bench-mask [--kind json|csv|notes] [--rounds N]`
    BenchMask {
        /// Only documents of this kind (with `--rounds`)
        #[arg(long)]
        kind: Option<String>,
        /// Mask the corpus this many times and print nothing but a checksum
        #[arg(long)]
        rounds: Option<usize>,
    },
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::Test { unit_only, args } => test(unit_only, &args),
        Task::Demo => demo::run(&build_agent(false)?),
        Task::Bench { only } => bench::run(&build_agent(true)?, only),
        Task::BenchWorker { kind, addr, n, mcp } => bench::worker_main(&kind, addr, n, &mcp),
        Task::BenchMcp => bench::mcp::run(),
        Task::BenchEngines => bench::engines(),
        Task::BenchPresidio => bench::presidio::report(),
        Task::BenchMask { kind, rounds } => bench::mask(kind.as_deref(), rounds),
    }
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(workspace_root());
    c
}

fn status(cmd: &mut Command) -> Result<()> {
    eprintln!("+ {cmd:?}");
    let st = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !st.success() {
        bail!("{cmd:?} failed: {st}");
    }
    Ok(())
}

/// Builds the agent binary and returns its path.
fn build_agent(release: bool) -> Result<PathBuf> {
    let mut c = cargo();
    c.args(["build", "-p", "mcp-warden"]);
    if release {
        c.arg("--release");
    }
    status(&mut c)?;
    Ok(workspace_root()
        .join("target")
        .join(if release { "release" } else { "debug" })
        .join("mcp-warden"))
}

pub fn require_root(what: &str) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("{what} needs root (eBPF, cgroups, network namespaces); run it with sudo");
    }
    Ok(())
}

fn test(unit_only: bool, args: &[String]) -> Result<()> {
    let mut tally = Tally::default();
    tally.run(cargo().args(["test", "--workspace", "--exclude", "mcp-warden-tests"]))?;
    if !unit_only {
        require_root("the integration tests")?;
        setup_peers()?;
        let bin = build_agent(false)?;
        let mut c = cargo();
        c.args(["test", "-p", "mcp-warden-tests", "--"])
            .args(args)
            .env("MCP_WARDEN_BIN", &bin);
        tally.run(&mut c)?;
    }
    // one closing line over every test binary, for people and CI alike
    println!("\ntotal: {} passed, {} failed", tally.passed, tally.failed);
    Ok(())
}

/// The MCP SDK virtualenvs the peers run in (tests/peers/setup.sh: pinned,
/// idempotent, instant when they are already there).
pub fn setup_peers() -> Result<()> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/peers/setup.sh");
    let st = Command::new("bash")
        .arg(&script)
        .status()
        .with_context(|| format!("running {}", script.display()))?;
    if !st.success() {
        bail!("{} failed: {st}", script.display());
    }
    Ok(())
}

/// Sums cargo test's "test result:" lines while passing its output through.
#[derive(Default)]
struct Tally {
    passed: u64,
    failed: u64,
}

impl Tally {
    fn run(&mut self, cmd: &mut Command) -> Result<()> {
        use std::io::{BufRead, BufReader};
        eprintln!("+ {cmd:?}");
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .spawn()
            .with_context(|| format!("running {cmd:?}"))?;
        for line in BufReader::new(child.stdout.take().expect("piped stdout")).lines() {
            let line = line?;
            println!("{line}");
            if let Some(rest) = line.strip_prefix("test result: ") {
                self.passed += count_of(rest, " passed");
                self.failed += count_of(rest, " failed");
            }
        }
        let st = child.wait()?;
        if !st.success() {
            println!(
                "\ntotal: {} passed, {} failed",
                self.passed,
                self.failed.max(1)
            );
            bail!("{cmd:?} failed: {st}");
        }
        Ok(())
    }
}

/// The number before `label` in "ok. 58 passed; 0 failed; ...".
fn count_of(summary: &str, label: &str) -> u64 {
    summary
        .split(';')
        .find_map(|part| {
            part.trim()
                .trim_start_matches("ok. ")
                .trim_start_matches("FAILED. ")
                .strip_suffix(label.trim())
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}
