//! The accept side: listeners for redirected connections, the flow lookup that
//! says who opened each one, and the per-connection task that records it and
//! hands it to its endpoint's data path: the L7 pipeline for `mcp` endpoints,
//! a byte relay for `tcp` ones. A connection the kernel has no record of is
//! refused and recorded; it is never relayed blind.

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
use crate::config::{AgentConfig, Protocol};
use crate::ebpf::FlowTable;
use crate::identity::{Identifier, Identity};
use crate::mask::{Masker, Profile};
use crate::pipeline::{self, Runtimes, Who};
use crate::relay::{Counters, Upstream, relay_bytes};
use crate::resolve::EndpointNames;
use crate::tls::LocalCa;

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

/// A redirected connection whose caller and endpoint are known.
struct Accepted {
    client: TcpStream,
    peer: SocketAddr,
    flow: Flow,
    session: String,
    endpoint: String,
    orig_dst: SocketAddr,
}

/// Everything a connection task needs, shared by all of them.
pub struct Interceptor {
    pub flows: FlowTable,
    pub identifier: Identifier,
    pub names: watch::Receiver<Arc<EndpointNames>>,
    /// Endpoint runtimes by name, replaced on reload.
    pub runtimes: watch::Receiver<Arc<Runtimes>>,
    pub audit: AuditLog,
    pub upstream: Upstream,
    /// Mints the leaves presented to clients whose TLS the agent terminates.
    pub ca: Arc<LocalCa>,
    /// Connection tasks, awaited when draining.
    pub tracker: TaskTracker,
    /// Cancelled when the drain timeout expires: remaining relays stop.
    pub abort: CancellationToken,
    /// Masks command lines for endpoints without a masking profile of
    /// their own (`tcp`, `mask = "off"`): a script's arguments may name a
    /// patient, and records must never hold unmasked PHI.
    cmdline_masker: Masker,
    session_prefix: String,
    next_session: AtomicU64,
}

impl Interceptor {
    pub fn new(
        flows: FlowTable,
        identifier: Identifier,
        names: watch::Receiver<Arc<EndpointNames>>,
        runtimes: watch::Receiver<Arc<Runtimes>>,
        audit: AuditLog,
        upstream: Upstream,
        ca: Arc<LocalCa>,
    ) -> Self {
        // Session ids: unique across restarts (start time) and within a run (counter).
        let start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            flows,
            identifier,
            names,
            runtimes,
            audit,
            upstream,
            ca,
            tracker: TaskTracker::new(),
            abort: CancellationToken::new(),
            // redact only: the pseudonym key is never used
            cmdline_masker: Masker::new(Profile::safe_harbor(), Vec::new()),
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
            r.identity = Some(self.identify(flow, None).await);
            r.orig_dst = Some(orig_dst);
            r.reason = Some(format!(
                "endpoint id {:#x} is no longer configured",
                flow.endpoint_id
            ));
            self.audit.record(r);
            return;
        };

        let runtime = self.runtimes.borrow().get(&endpoint).cloned();
        let accepted = Accepted {
            client,
            peer,
            flow,
            session,
            endpoint,
            orig_dst,
        };
        match runtime {
            Some(rt) if rt.protocol == Protocol::Mcp => self.serve_mcp(rt, accepted).await,
            Some(_) => self.serve_tcp(accepted).await,
            None => {
                // names and runtimes are replaced together; never relay without controls
                let mut r = Record::new(Kind::Reject, &accepted.session, peer);
                r.endpoint = Some(accepted.endpoint);
                r.orig_dst = Some(orig_dst);
                r.reason = Some("endpoint has no data path loaded".into());
                self.audit.record(r);
            }
        }
    }

    /// An `mcp` endpoint: the L7 pipeline. Its upstream connections are made
    /// per request, so only the caller is identified up front.
    async fn serve_mcp(self: Arc<Self>, rt: Arc<pipeline::EndpointRuntime>, a: Accepted) {
        let started = Instant::now();
        let identity = self.identify(a.flow, rt.masker.clone()).await;
        let connect = self.connected(&a, &identity, None);
        let who = Who {
            session: a.session,
            endpoint: a.endpoint,
            identity,
            client: a.peer,
            orig_dst: a.orig_dst,
        };
        let served = pipeline::serve(
            rt,
            self.audit.clone(),
            self.upstream.clone(),
            &self.ca,
            who,
            a.client,
        );
        let (outcome, up, down) = tokio::select! {
            o = served => (o.outcome, o.bytes_up, o.bytes_down),
            _ = self.abort.cancelled() => ("terminated: agent shutdown".to_string(), 0, 0),
        };
        self.close(connect, started, up, down, outcome);
    }

    /// A `tcp` endpoint: bytes relayed to the address the client dialled.
    async fn serve_tcp(self: Arc<Self>, a: Accepted) {
        // Reading /proc and dialling upstream are independent: overlap them.
        let started = Instant::now();
        let (identity, upstream) = tokio::join!(
            self.identify(a.flow, None),
            self.upstream.connect(a.orig_dst)
        );
        let connect = self.connected(&a, &identity, Some(a.orig_dst));

        let counters = Arc::new(Counters::default());
        let outcome = match upstream {
            Err(e) => format!("upstream connect failed: {e}"),
            Ok(upstream) => {
                tokio::select! {
                    r = relay_bytes(a.client, upstream, counters.clone()) => match r {
                        Ok(()) => "ok".to_string(),
                        Err(e) => format!("relay error: {e}"),
                    },
                    _ = self.abort.cancelled() => "terminated: agent shutdown".to_string(),
                }
            }
        };
        let (up, down) = counters.snapshot();
        self.close(connect, started, up, down, outcome);
    }

    /// Writes (and logs) the connect record; the close record starts from it.
    fn connected(&self, a: &Accepted, identity: &Identity, upstream: Option<SocketAddr>) -> Record {
        let mut connect = Record::new(Kind::Connect, &a.session, a.peer);
        connect.endpoint = Some(a.endpoint.clone());
        connect.identity = Some(identity.clone());
        connect.orig_dst = Some(a.orig_dst);
        connect.upstream = upstream;
        self.audit.record(connect.clone());
        info!(session = a.session, endpoint = a.endpoint, orig_dst = %a.orig_dst, pid = identity.pid, comm = identity.comm, "intercepted");
        connect
    }

    fn close(&self, connect: Record, started: Instant, up: u64, down: u64, outcome: String) {
        let mut close = connect;
        close.kind = Kind::Close;
        close.bytes_up = Some(up);
        close.bytes_down = Some(down);
        close.duration_ms = Some(started.elapsed().as_millis() as u64);
        close.outcome = Some(outcome);
        self.audit.record(close);
    }

    /// Reading /proc can block on a busy or dying process: keep it off the
    /// reactor. The command line is masked by the endpoint's profile, or the
    /// built-in one when it has none.
    async fn identify(self: &Arc<Self>, flow: Flow, masker: Option<Arc<Masker>>) -> Identity {
        let this = self.clone();
        let read = tokio::task::spawn_blocking(move || {
            let mut id = this.identifier.identify(&flow);
            if let Some(cmdline) = &mut id.cmdline {
                let masker = masker.as_deref().unwrap_or(&this.cmdline_masker);
                *cmdline = masker.mask_text(cmdline).text.into_owned();
            }
            id
        });
        match read.await {
            Ok(id) => id,
            // the blocking task panicked: keep what the kernel recorded
            Err(_) => Identity::from_flow(&flow),
        }
    }
}
