//! `mcp-warden run`: brings the agent up in an order that never leaves a
//! matching connection without a place to land, serves until SIGTERM, reloads
//! endpoints on SIGHUP and re-resolves names on a timer.
//!
//! Start-up order: validate config → bind listeners → open the audit log →
//! load the CA, credentials and upstream TLS settings →
//! load programs and fill maps → attach → announce readiness. Anything failing
//! before "attach" leaves the host untouched.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use mcp_warden_common as abi;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::audit::{AuditLog, RetentionPolicy, StoreConfig};
use crate::config::{Config, FailMode};
use crate::ebpf::{self, Kernel, PinDir};
use crate::identity::{Identifier, cgroup2_mount};
use crate::intercept::{Interceptor, bind_listeners};
use crate::pipeline::{self, Runtimes, stage::Chain};
use crate::relay::Upstream;
use crate::resolve::{Resolver, endpoint_names};
use crate::tls::LocalCa;

/// Name of the file in state_dir that holds the pid once the agent is ready.
pub const READY_FILE: &str = "ready";

pub fn run(config: Config) -> Result<()> {
    config.check_host()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(config))
}

async fn serve(mut config: Config) -> Result<()> {
    // Upstream credentials live in this process's memory: no core dumps, and no
    // ptrace or /proc/<pid>/mem access by anyone but root.
    // SAFETY: prctl(PR_SET_DUMPABLE) takes plain integers and touches no memory.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        warn!(
            "could not mark the process non-dumpable: {}",
            std::io::Error::last_os_error()
        );
    }
    let state_dir = config.agent.state_dir.clone();
    fs::create_dir_all(&state_dir)
        .with_context(|| format!("creating state_dir {}", state_dir.display()))?;
    fs::set_permissions(&state_dir, fs::Permissions::from_mode(0o700))?;
    let ready_path = state_dir.join(READY_FILE);
    let _ = fs::remove_file(&ready_path);

    let listeners = bind_listeners(&config.agent)?;
    let (audit, audit_writer) = AuditLog::open_with(&config.audit_dir(), store_config(&config))?;
    // Credentials and TLS settings load before anything is attached: a bad one
    // leaves the host untouched.
    let ca =
        Arc::new(LocalCa::load_or_create(&config.ca_dir()).context("loading the interception CA")?);
    let runtimes = pipeline::build(&config, &Chain::default())?;
    let (runtimes_tx, runtimes_rx) = watch::channel(Arc::new(runtimes));

    let mut resolver = Resolver::default();
    let table = resolver.table(&config).await;
    let mut kernel = Kernel::load(&config)?;
    kernel.write_config(kernel_config(&config)?)?;
    let synced = kernel.sync_endpoints(&table)?;
    let flows = kernel.take_flow_table()?;
    let leftover_pins = PinDir::new(&config);
    let had_pins = leftover_pins.has_links();
    kernel.attach(&config.agent.cgroup)?;
    if config.agent.fail_mode == FailMode::Open && had_pins {
        // a fail-closed run of this instance left pins behind; ours are now in place
        ebpf::detach(&leftover_pins)?;
        info!("removed the pins of an earlier fail-closed run");
    }
    info!(
        endpoints = config.endpoints.len(),
        exact = table.exact.len(),
        cidr = table.cidr.len(),
        added = synced.added,
        removed = synced.removed,
        "endpoint maps filled"
    );

    let (names_tx, names_rx) = watch::channel(Arc::new(endpoint_names(&config)));
    let endpoints = Endpoints {
        names: names_tx,
        runtimes: runtimes_tx,
    };
    let upstream = Upstream {
        mark: config.agent.mark,
        connect_timeout: config.agent.connect_timeout,
    };
    let identifier = Identifier::new(cgroup2_mount().context("finding the cgroup2 mount")?);
    let interceptor = Arc::new(Interceptor::new(
        flows,
        identifier,
        names_rx,
        runtimes_rx,
        audit,
        upstream,
        ca,
    ));
    let stop = CancellationToken::new();
    let mut accept_tasks = Vec::new();
    for listener in listeners {
        info!(addr = ?listener.local_addr()?, "listening");
        accept_tasks.push(tokio::spawn(
            interceptor.clone().serve(listener, stop.clone()),
        ));
    }

    // write-then-rename: a reader never sees a partial file
    let staged = state_dir.join(format!("{READY_FILE}.tmp"));
    fs::write(&staged, format!("{}\n", std::process::id()))?;
    fs::rename(&staged, &ready_path)?;
    sd_notify("READY=1");
    info!(instance = config.agent.instance, cgroup = %config.agent.cgroup.display(), "mcp-warden ready");

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut refresh = tokio::time::interval(config.agent.resolve_interval);
    refresh.tick().await; // the first tick is immediate; the table is fresh
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                if let Some((new, runtimes)) = reload(&config) {
                    config = new;
                    refresh = tokio::time::interval(config.agent.resolve_interval);
                    refresh.tick().await;
                    endpoints.runtimes.send_replace(Arc::new(runtimes));
                    apply_endpoints(&config, &mut resolver, &mut kernel, &endpoints.names).await;
                }
            }
            _ = refresh.tick() => apply_endpoints(&config, &mut resolver, &mut kernel, &endpoints.names).await,
        }
    }

    info!("draining");
    sd_notify("STOPPING=1");
    stop.cancel();
    for t in accept_tasks {
        let _ = t.await;
    }
    interceptor.tracker.close();
    if tokio::time::timeout(config.agent.drain_timeout, interceptor.tracker.wait())
        .await
        .is_err()
    {
        warn!(
            open = interceptor.tracker.len(),
            "drain timeout: ending the remaining connections"
        );
        interceptor.abort.cancel();
        interceptor.tracker.wait().await;
    }
    drop(interceptor); // last AuditLog handle: the writer finishes its queue
    audit_writer.finish();
    let _ = fs::remove_file(&ready_path);
    match config.agent.fail_mode {
        FailMode::Closed => {
            info!("stopped; redirects stay pinned, matching connections are refused until restart")
        }
        FailMode::Open => info!("stopped; programs detached, traffic goes direct"),
    }
    drop(kernel);
    Ok(())
}

/// What SIGHUP replaces: endpoint names for the connect path, runtimes for the data path.
struct Endpoints {
    names: watch::Sender<Arc<crate::resolve::EndpointNames>>,
    runtimes: watch::Sender<Arc<Runtimes>>,
}

/// Loads the config again and builds the endpoints' runtimes (credentials,
/// TLS); anything bad is logged and the running configuration kept whole.
fn reload(current: &Config) -> Option<(Config, Runtimes)> {
    let new = match Config::load(&current.path) {
        Ok(new) => new,
        Err(e) => {
            error!("reload refused, keeping the running configuration: {e}");
            return None;
        }
    };
    if new.agent != current.agent {
        warn!("[agent] settings changed; they take effect at restart (only endpoints reload)");
    }
    let mut merged = current.clone();
    merged.endpoints = new.endpoints;
    merged.credentials = new.credentials;
    merged.masks = new.masks;
    merged.agent.resolve_interval = new.agent.resolve_interval;
    match pipeline::build(&merged, &Chain::default()) {
        Ok(runtimes) => {
            info!(endpoints = merged.endpoints.len(), "configuration reloaded");
            Some((merged, runtimes))
        }
        Err(e) => {
            error!("reload refused, keeping the running configuration: {e:#}");
            None
        }
    }
}

async fn apply_endpoints(
    config: &Config,
    resolver: &mut Resolver,
    kernel: &mut Kernel,
    names: &watch::Sender<Arc<crate::resolve::EndpointNames>>,
) {
    let table = resolver.table(config).await;
    // Names first: a connection redirected under a new endpoint must find its name.
    names.send_replace(Arc::new(endpoint_names(config)));
    match kernel.sync_endpoints(&table) {
        Ok(st) if st.added + st.removed > 0 => info!(
            added = st.added,
            removed = st.removed,
            "endpoint maps updated"
        ),
        Ok(_) => {}
        Err(e) => error!("updating endpoint maps: {e:#}"),
    }
}

/// `[audit]` onto the store's settings; the rest keep the store's defaults.
fn store_config(config: &Config) -> StoreConfig {
    let a = &config.audit;
    StoreConfig {
        batch_delay: a.batch_delay,
        checkpoint_every: a.checkpoint_every,
        checkpoint_interval: a.checkpoint_interval,
        segment_max_bytes: a.segment_max_bytes,
        segment_max_age: a.segment_max_age,
        retention: RetentionPolicy {
            max_age: a.retention_max_age,
            max_bytes: a.retention_max_bytes,
        },
        ..StoreConfig::default()
    }
}

/// The single entry of the programs' config map.
fn kernel_config(config: &Config) -> Result<abi::Config> {
    let a = &config.agent;
    let mut flags = 0;
    let (listen_ip6, listen_port6) = match a.listen6 {
        Some(l6) => {
            flags |= abi::CFG_LISTEN6;
            (l6.ip().octets(), l6.port())
        }
        None => ([0; 16], 0),
    };
    if a.all_netns {
        flags |= abi::CFG_ALL_NETNS;
    }
    Ok(abi::Config {
        listen_ip4: a.listen.ip().octets(),
        listen_ip6,
        listen_port4: a.listen.port(),
        listen_port6,
        self_mark: a.mark,
        flags,
        netns_cookie: ebpf::own_netns_cookie()?,
    })
}

/// Tells systemd (Type=notify) about state changes; a no-op elsewhere.
fn sd_notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let path = PathBuf::from(path);
    let send = || -> std::io::Result<()> {
        let sock = std::os::unix::net::UnixDatagram::unbound()?;
        if let Some(abstract_name) = path.to_str().and_then(|p| p.strip_prefix('@')) {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(abstract_name)?;
            sock.send_to_addr(state.as_bytes(), &addr)?;
        } else {
            sock.send_to(state.as_bytes(), &path)?;
        }
        Ok(())
    };
    if let Err(e) = send() {
        warn!(error = %e, "sd_notify failed");
    }
}

/// Pid of a running agent that announced readiness in `state_dir`, if any.
pub fn running_pid(state_dir: &Path) -> Option<u32> {
    let pid: u32 = fs::read_to_string(state_dir.join(READY_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
}
