//! Command-line interface: argument definitions and the small subcommands.
//! `run` itself lives in `daemon`.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::config::{self, Config};
use crate::{audit, daemon, ebpf};

#[derive(Parser, Debug)]
#[command(
    name = "mcp-warden",
    version,
    about = "Transparent enforcement point between a host's processes and the MCP servers they call",
    long_about = "mcp-warden redirects outbound connections to configured MCP endpoints into itself \
                  (eBPF cgroup hooks), identifies the calling process, user, systemd unit and CI job, \
                  relays the connection and records it.\n\nLogging: RUST_LOG (default: info)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct ConfigArg {
    /// Configuration file (TOML)
    #[arg(long, short, value_name = "PATH", default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the agent in the foreground: attach, intercept, relay, record
    ///
    /// SIGTERM drains open connections and exits; SIGHUP reloads the endpoint
    /// list (a bad config is refused and the running one kept).
    Run(ConfigArg),
    /// Validate a configuration file and the host it names (cgroup, bpffs)
    ///
    /// Exits non-zero with `file:line:col: key: message` on the first error.
    CheckConfig {
        /// Configuration file (TOML)
        #[arg(value_name = "PATH", default_value = config::DEFAULT_PATH)]
        path: PathBuf,
    },
    /// Remove every program, link and map this instance pinned
    ///
    /// After this, connections go direct until the agent runs again.
    Detach(ConfigArg),
    /// Show whether the instance is attached and running, with kernel counters
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Read the audit records
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The local CA that client-side TLS is terminated with
    #[command(subcommand)]
    Ca(CaCommand),
}

#[derive(Subcommand, Debug)]
pub enum CaCommand {
    /// Print the CA certificate (PEM) for the host trust store; creates the CA
    /// under <state_dir>/ca on first use, so it can be rolled out before the agent runs
    Export(ConfigArg),
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Print every record as one JSON object per line
    Export(ConfigArg),
}

/// Runs the parsed command; errors are printed by the caller.
pub fn dispatch(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Run(c) => {
            daemon::run(load(&c.config)?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig { path } => {
            let cfg = load(&path)?;
            cfg.check_host()?;
            println!(
                "{}: ok ({} endpoint{}, instance {:?}, fail_mode {:?})",
                path.display(),
                cfg.endpoints.len(),
                if cfg.endpoints.len() == 1 { "" } else { "s" },
                cfg.agent.instance,
                cfg.agent.fail_mode
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Detach(c) => {
            let cfg = load(&c.config)?;
            if let Some(pid) = daemon::running_pid(&cfg.agent.state_dir) {
                eprintln!(
                    "warning: the agent (pid {pid}) is still running; its links are removed anyway"
                );
            }
            let removed = ebpf::detach(&ebpf::PinDir::new(&cfg))?;
            println!(
                "detached instance {:?}: {} pinned objects removed",
                cfg.agent.instance,
                removed.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { config, json } => status(&load(&config.config)?, json),
        Command::Ca(CaCommand::Export(c)) => {
            let cfg = load(&c.config)?;
            let ca = crate::tls::LocalCa::load_or_create(&cfg.ca_dir())?;
            print!("{}", ca.cert_pem());
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(AuditCommand::Export(c)) => {
            let cfg = load(&c.config)?;
            let stdout = io::stdout();
            match audit::export(&cfg.audit_dir(), &mut stdout.lock()) {
                Err(e) if is_broken_pipe(&e) => Ok(ExitCode::SUCCESS),
                other => other.map(|_| ExitCode::SUCCESS),
            }
        }
    }
}

fn load(path: &Path) -> Result<Config> {
    // ConfigError's Display is the whole message (file:line:col: key: ...)
    Config::load(path).map_err(|e| anyhow::anyhow!("{e}"))
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

fn status(cfg: &Config, json: bool) -> Result<ExitCode> {
    let pins = ebpf::PinDir::new(cfg);
    let kernel = ebpf::pin_status(&pins).context("reading pinned state")?;
    let pid = daemon::running_pid(&cfg.agent.state_dir);
    if json {
        let v = serde_json::json!({
            "instance": cfg.agent.instance,
            "running_pid": pid,
            "fail_mode": format!("{:?}", cfg.agent.fail_mode).to_lowercase(),
            "pin_dir": kernel.pin_dir,
            "links": kernel.links,
            "counters": kernel.counters.iter().map(|(k, v)| (k.to_string(), serde_json::Value::from(*v))).collect::<serde_json::Map<_, _>>(),
        });
        println!("{v}");
    } else {
        let mut out = io::stdout().lock();
        writeln!(out, "instance:  {}", cfg.agent.instance)?;
        writeln!(
            out,
            "agent:     {}",
            pid.map_or("not running".to_string(), |p| format!("running (pid {p})"))
        )?;
        writeln!(out, "fail_mode: {:?}", cfg.agent.fail_mode)?;
        writeln!(
            out,
            "links:     {}",
            if kernel.links.is_empty() {
                "none pinned".to_string()
            } else {
                kernel.links.join(", ")
            }
        )?;
        for (k, v) in &kernel.counters {
            writeln!(out, "  {k:<14} {v}")?;
        }
    }
    // 0 when the agent runs; 3 (LSB "not running") otherwise, for scripts.
    Ok(if pid.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}
