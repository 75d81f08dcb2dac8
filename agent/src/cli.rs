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
                  terminates its TLS, swaps the client's credential for the gateway's, decodes every \
                  MCP message both ways, masks PHI in what the servers send back, and records each \
                  message, masked, in a tamper-evident audit store.\n\n\
                  Logging: RUST_LOG (default: info)."
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
    /// Run the agent in the foreground: attach, intercept, inspect, mask, record
    ///
    /// Each endpoint's responses (and the payloads the audit keeps) are masked
    /// by its `mask` profile, `safe-harbor` unless it names another.
    /// SIGTERM drains open connections and exits; SIGHUP reloads endpoints,
    /// credentials and masking profiles (a bad config or credential is refused
    /// and the running one kept).
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
    /// Recorded sessions: list, show, replay
    #[command(subcommand)]
    Sessions(SessionsCommand),
}

#[derive(Subcommand, Debug)]
pub enum CaCommand {
    /// Print the CA certificate (PEM) for the host trust store; creates the CA
    /// under <state_dir>/ca on first use, so it can be rolled out before the agent runs
    Export(ConfigArg),
}

/// The time bounds of `audit export` and `audit report`.
#[derive(Args, Debug, Clone)]
pub struct Period {
    /// Records at or after this time (RFC 3339, e.g. 2026-11-24T00:00:00Z)
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Records before this time (RFC 3339)
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
}

impl Period {
    /// A filter passing the traffic records of the period.
    fn filter(&self) -> Result<audit::ExportFilter> {
        Ok(audit::ExportFilter {
            since: self.since.as_deref().map(audit::parse_time).transpose()?,
            until: self.until.as_deref().map(audit::parse_time).transpose()?,
            ..Default::default()
        })
    }
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Print records as JSON lines, for a SIEM or a log shipper
    Export {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        period: Period,
        /// Only records of this user (name, or "uid N")
        #[arg(long)]
        user: Option<String>,
        /// Only records of this endpoint
        #[arg(long)]
        endpoint: Option<String>,
        /// Only records of this tool
        #[arg(long)]
        tool: Option<String>,
        /// Only records of this connection (record `session`; `sessions show`
        /// gathers an MCP session's connections)
        #[arg(long)]
        session: Option<String>,
        /// Also the store's own records (checkpoints, seals, recovery), for re-verification
        #[arg(long)]
        store_records: bool,
        /// Keep streaming new records until interrupted
        #[arg(long)]
        follow: bool,
    },
    /// Check the hash chain, signatures and seals of every segment
    ///
    /// Exits 1 and names the first bad record (segment, line, seq) or the
    /// missing range when anything was edited, deleted, reordered or truncated.
    Verify {
        #[command(flatten)]
        config: ConfigArg,
        /// The agent's public key as kept by the auditor (`audit pubkey` output);
        /// without it, the key file beside the records is trusted
        #[arg(long, value_name = "FILE")]
        pubkey: Option<PathBuf>,
        /// Threads that hash records (default: every core; 1 to spare a busy host)
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
        threads: Option<u16>,
    },
    /// Print the public key that signs checkpoints, for auditors to keep elsewhere
    Pubkey(ConfigArg),
    /// Write an access-review report (self-contained HTML) for the periodic log review
    ///
    /// Who (user, executable, unit, CI job) reached which endpoints, methods and
    /// tools, how often; denials, refusals and approvals one by one; entities
    /// masked; charts; and the result of `audit verify` over the whole store.
    /// For HIPAA 164.308(a)(1)(ii)(D). Exits 1 (after writing the report) when
    /// the store does not verify.
    Report {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        period: Period,
        /// The agent's public key as kept by the auditor, for the integrity check
        #[arg(long, value_name = "FILE")]
        pubkey: Option<PathBuf>,
        /// Where to write the report
        #[arg(long, value_name = "FILE")]
        html: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum SessionsCommand {
    /// One row per session: id, start, duration, identity, endpoint, MCP session, connections, calls, denials, masked
    ///
    /// A session is an MCP session with every connection that carried it (GET
    /// stream and POSTs, reconnects); connections without one are a session each.
    List {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long, value_enum, default_value = "table")]
        format: ListFormat,
    },
    /// A session's records, over all its connections, as JSON lines
    Show {
        #[command(flatten)]
        config: ConfigArg,
        /// Session id (as listed), MCP session id, or one of its connections
        id: String,
    },
    /// A session as a readable conversation, optionally paced as it happened
    Replay {
        #[command(flatten)]
        config: ConfigArg,
        /// Session id (as listed), MCP session id, or one of its connections
        id: String,
        /// Replay at N times the recorded pace (omit: print at once)
        #[arg(long, value_name = "N")]
        speed: Option<f64>,
    },
    /// Rebuild the sessions index from the segments (the segments are the source of truth)
    Reindex(ConfigArg),
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum ListFormat {
    Table,
    Json,
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
        Command::Audit(cmd) => audit_command(cmd),
        Command::Sessions(cmd) => sessions_command(cmd),
    }
}

fn audit_command(cmd: AuditCommand) -> Result<ExitCode> {
    match cmd {
        AuditCommand::Export {
            config,
            period,
            user,
            endpoint,
            tool,
            session,
            store_records,
            follow,
        } => {
            let cfg = load(&config.config)?;
            let filter = audit::ExportFilter {
                store_records,
                user,
                endpoint,
                tool,
                session,
                ..period.filter()?
            };
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            if follow {
                for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                    signal_flag(sig, &stop)?;
                }
            }
            let follow = follow.then(|| audit::Follow {
                poll: std::time::Duration::from_millis(200),
                stop: &stop,
            });
            let stdout = io::stdout();
            match audit::write_records(&cfg.audit_dir(), &filter, &mut stdout.lock(), follow) {
                Err(e) if is_broken_pipe(&e) => Ok(ExitCode::SUCCESS),
                other => other.map(|_| ExitCode::SUCCESS),
            }
        }
        AuditCommand::Verify {
            config,
            pubkey,
            threads,
        } => {
            let cfg = load(&config.config)?;
            let key = read_pubkey(pubkey.as_deref())?;
            let report = match threads {
                Some(n) => audit::verify::verify_with(&cfg.audit_dir(), key.as_ref(), n.into())?,
                None => audit::verify(&cfg.audit_dir(), key.as_ref())?,
            };
            println!("{report}");
            Ok(if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        AuditCommand::Report {
            config,
            period,
            pubkey,
            html,
        } => {
            let cfg = load(&config.config)?;
            let key = read_pubkey(pubkey.as_deref())?;
            let (review, integrity) =
                audit::write_report(&cfg.audit_dir(), &period.filter()?, key.as_ref(), &html)?;
            println!(
                "{}: {} records, {} connections, {} users, {} requests ({} data accesses), \
                 {} denials, {} refusals, {} approvals, {} entities masked",
                html.display(),
                review.records,
                review.connections.len(),
                review.users().len(),
                review.requests(),
                review.data_accesses(),
                review.denials.total,
                review.refusals.total,
                review.approvals.total,
                review.masked()
            );
            if integrity.ok() {
                Ok(ExitCode::SUCCESS)
            } else {
                eprint!("the store does not verify (the report says so): {integrity}");
                Ok(ExitCode::FAILURE)
            }
        }
        AuditCommand::Pubkey(c) => {
            let cfg = load(&c.config)?;
            print!(
                "{}",
                audit::pubkey_text(&cfg.audit_dir().join(audit::KEY_FILE))?
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn sessions_command(cmd: SessionsCommand) -> Result<ExitCode> {
    let mut out = io::stdout().lock();
    let res = match cmd {
        SessionsCommand::List { config, format } => {
            let sessions = audit::list_sessions(&load(&config.config)?.audit_dir())?;
            match format {
                ListFormat::Table => {
                    write!(out, "{}", audit::render_table(&sessions)).map_err(Into::into)
                }
                ListFormat::Json => {
                    writeln!(out, "{}", serde_json::to_string(&sessions)?).map_err(Into::into)
                }
            }
        }
        SessionsCommand::Show { config, id } => {
            audit::show_session(&load(&config.config)?.audit_dir(), &id, &mut out).map(drop)
        }
        SessionsCommand::Replay { config, id, speed } => {
            audit::replay(&load(&config.config)?.audit_dir(), &id, &mut out, speed).map(drop)
        }
        SessionsCommand::Reindex(c) => {
            let n = audit::rebuild_index(&load(&c.config)?.audit_dir())?;
            writeln!(out, "index rebuilt: {n} sessions").map_err(Into::into)
        }
    };
    match res {
        Err(e) if is_broken_pipe(&e) => Ok(ExitCode::SUCCESS),
        other => other.map(|_| ExitCode::SUCCESS),
    }
}

/// Sets `flag` when `signal` arrives, instead of dying: `--follow` ends cleanly.
fn signal_flag(signal: i32, flag: &std::sync::Arc<std::sync::atomic::AtomicBool>) -> Result<()> {
    signal_hook::flag::register(signal, flag.clone()).context("installing a signal handler")?;
    Ok(())
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

/// `--pubkey FILE`: the auditor's copy of the signing key, when given.
fn read_pubkey(path: Option<&std::path::Path>) -> Result<Option<audit::PublicKey>> {
    path.map(audit::PublicKey::read_file).transpose()
}
