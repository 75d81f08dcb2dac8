//! The accept side: listeners for redirected connections, the flow lookup that
//! says who opened each one, and the per-connection task that records it and
//! relays it upstream. A connection the kernel has no record of is refused and
//! recorded; it is never relayed blind.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use mcp_warden_common::Flow;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::audit::{AuditLog, Kind, Record};
use crate::config::AgentConfig;
use crate::ebpf::FlowTable;
use crate::identity::{Identifier, Identity};
use crate::relay::{Counters, Upstream, relay_bytes};
use crate::resolve::EndpointNames;

/// Binds the IPv4 listener and, unless disabled, the IPv6 one (v6-only, so the
/// two never share a port space by accident).
pub fn bind_listeners(agent: &AgentConfig) -> Result<Vec<TcpListener>> {
    let mut addrs = vec![SocketAddr::V4(agent.listen)];
    addrs.extend(agent.listen6.map(SocketAddr::V6));
    addrs.into_iter().map(bind_one).collect()
}

fn bind_one(addr: SocketAddr) -> Result<TcpListener> {
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_reuse_address(true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())
        .with_context(|| format!("binding listener {addr}"))?;
    sock.listen(1024)?;
    Ok(TcpListener::from_std(std::net::TcpListener::from(sock))?)
}

/// Everything a connection task needs, shared by all of them.
pub struct Interceptor {
    pub flows: FlowTable,
    pub identifier: Identifier,
    pub names: watch::Receiver<Arc<EndpointNames>>,
    pub audit: AuditLog,
    pub upstream: Upstream,
    /// Connection tasks, awaited when draining.
    pub tracker: TaskTracker,
    /// Cancelled when the drain timeout expires: remaining relays stop.
    pub abort: CancellationToken,
    session_prefix: String,
    next_session: AtomicU64,
}

impl Interceptor {
    pub fn new(
        flows: FlowTable,
        identifier: Identifier,
        names: watch::Receiver<Arc<EndpointNames>>,
        audit: AuditLog,
        upstream: Upstream,
    ) -> Self {
        // Session ids: unique across restarts (start time) and within a run (counter).
        let start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            flows,
            identifier,
            names,
            audit,
            upstream,
            tracker: TaskTracker::new(),
            abort: CancellationToken::new(),
            session_prefix: format!("{:x}", start.as_micros()),
            next_session: AtomicU64::new(1),
        }
    }

    /// Accepts until `stop` is cancelled; each connection runs in its own task.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, stop: CancellationToken) {
        let local = listener.local_addr().ok();
        loop {
            let accepted = tokio::select! {
                _ = stop.cancelled() => break,
                r = listener.accept() => r,
            };
            match accepted {
                Ok((stream, peer)) => {
                    // Look the flow up right away: the record is keyed by this exact tuple.
                    let local = stream.local_addr().ok().or(local);
                    let flow = local.and_then(|l| self.flows.take(peer, l));
                    let this = self.clone();
                    self.tracker
                        .spawn(async move { this.handle(stream, peer, flow).await });
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        debug!(?local, "listener closed");
    }

    fn session_id(&self) -> String {
        format!(
            "{}-{}",
            self.session_prefix,
            self.next_session.fetch_add(1, Ordering::Relaxed)
        )
    }

    async fn handle(self: Arc<Self>, client: TcpStream, peer: SocketAddr, flow: Option<Flow>) {
        let session = self.session_id();
        let Some(flow) = flow else {
            warn!(%peer, session, "no flow record for a connection to the listener; refusing it");
            let mut r = Record::new(Kind::Reject, &session, peer);
            r.reason =
                Some("no flow record: not a redirected connection, or its record was lost".into());
            self.audit.record(r);
            return;
        };
        let orig_dst = SocketAddr::new(flow.orig_ip(), flow.orig_port);
        let endpoint = self.names.borrow().get(&flow.endpoint_id).cloned();
        let Some(endpoint) = endpoint else {
            // Redirected under an endpoint that a reload has since removed: fail closed.
            let mut r = Record::new(Kind::Reject, &session, peer);
            r.identity = Some(self.identify(flow).await);
            r.orig_dst = Some(orig_dst);
            r.reason = Some(format!(
                "endpoint id {:#x} is no longer configured",
                flow.endpoint_id
            ));
            self.audit.record(r);
            return;
        };

        // Reading /proc and dialling upstream are independent: overlap them.
        let started = Instant::now();
        let (identity, upstream) =
            tokio::join!(self.identify(flow), self.upstream.connect(orig_dst));
        let mut connect = Record::new(Kind::Connect, &session, peer);
        connect.endpoint = Some(endpoint.clone());
        connect.identity = Some(identity.clone());
        connect.orig_dst = Some(orig_dst);
        connect.upstream = Some(orig_dst);
        self.audit.record(connect.clone());
        info!(session, endpoint, %orig_dst, pid = identity.pid, comm = identity.comm, "intercepted");

        let counters = Arc::new(Counters::default());
        let outcome = match upstream {
            Err(e) => format!("upstream connect failed: {e}"),
            Ok(upstream) => {
                tokio::select! {
                    r = relay_bytes(client, upstream, counters.clone()) => match r {
                        Ok(()) => "ok".to_string(),
                        Err(e) => format!("relay error: {e}"),
                    },
                    _ = self.abort.cancelled() => "terminated: agent shutdown".to_string(),
                }
            }
        };
        let (up, down) = counters.snapshot();
        let mut close = connect;
        close.kind = Kind::Close;
        close.bytes_up = Some(up);
        close.bytes_down = Some(down);
        close.duration_ms = Some(started.elapsed().as_millis() as u64);
        close.outcome = Some(outcome);
        self.audit.record(close);
    }

    /// Reading /proc can block on a busy or dying process: keep it off the reactor.
    async fn identify(self: &Arc<Self>, flow: Flow) -> Identity {
        let this = self.clone();
        match tokio::task::spawn_blocking(move || this.identifier.identify(&flow)).await {
            Ok(id) => id,
            // the blocking task panicked: keep what the kernel recorded
            Err(_) => Identity::from_flow(&flow),
        }
    }
}
