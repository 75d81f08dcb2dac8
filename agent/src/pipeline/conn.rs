//! The two ends of an intercepted exchange as byte streams: the client's side
//! (TLS terminated with a leaf minted for the name it asked for, or plain
//! HTTP), and upstream connections (TLS or plain, marked so they are never
//! redirected), kept alive and reused per endpoint.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::http::{MessageDecoder, ResponseDecoder};
use crate::relay::Upstream;
use crate::tls::{LocalCa, server_name};

/// Any byte stream the pipeline reads and writes: TCP or TLS over TCP.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}
pub type BoxIo = Box<dyn Io>;

/// A client that has not finished its handshake in this long is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Terminates the client's TLS: reads its ClientHello, mints (or reuses) a
/// leaf for the SNI it sent, or for the address it dialled when it sent none.
/// Returns the stream and the name the client used.
pub async fn accept_tls(
    tcp: TcpStream,
    ca: &LocalCa,
    orig_dst: SocketAddr,
) -> anyhow::Result<(BoxIo, String)> {
    let handshake = async {
        let acceptor = rustls::server::Acceptor::default();
        let start = tokio_rustls::LazyConfigAcceptor::new(acceptor, tcp).await?;
        let name = start
            .client_hello()
            .server_name()
            .map(str::to_string)
            .unwrap_or_else(|| orig_dst.ip().to_string());
        let config = ca.server_config(&name)?;
        let tls = start.into_stream(config).await?;
        anyhow::Ok((Box::new(tls) as BoxIo, name))
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .map_err(|_| anyhow::anyhow!("client TLS handshake timed out"))?
}

/// Where upstream requests of one kind go: an address, and the TLS name to
/// verify it by (`None`: plain HTTP).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    pub addr: SocketAddr,
    pub tls_name: Option<String>,
}

/// An open upstream connection with its read buffer and response decoder.
pub struct UpstreamConn {
    pub io: BoxIo,
    pub buf: BytesMut,
    pub decoder: ResponseDecoder,
    pub target: Target,
    /// Taken from the pool: the server may have closed it while it sat idle.
    pub reused: bool,
}

/// Opens a connection to `target`, with TLS when it names one.
pub async fn connect(
    transport: &Upstream,
    tls: Option<&Arc<rustls::ClientConfig>>,
    target: &Target,
) -> anyhow::Result<UpstreamConn> {
    let tcp = transport.connect(target.addr).await?;
    let io: BoxIo = match (&target.tls_name, tls) {
        (None, _) => Box::new(tcp),
        (Some(name), Some(config)) => {
            let connector = tokio_rustls::TlsConnector::from(config.clone());
            let handshake = connector.connect(server_name(name)?, tcp);
            let tls = tokio::time::timeout(transport.connect_timeout, handshake)
                .await
                .map_err(|_| anyhow::anyhow!("TLS handshake with {} timed out", target.addr))?
                .map_err(|e| anyhow::anyhow!("TLS handshake with {name} ({}): {e}", target.addr))?;
            Box::new(tls)
        }
        (Some(_), None) => anyhow::bail!("no TLS client configuration for {}", target.addr),
    };
    Ok(UpstreamConn {
        io,
        buf: BytesMut::with_capacity(16 * 1024),
        decoder: ResponseDecoder::default(),
        target: target.clone(),
        reused: false,
    })
}

/// Idle upstream connections of one endpoint, by target.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<HashMap<Target, Vec<(Instant, UpstreamConn)>>>,
}

/// Longest an idle connection is kept; servers close theirs too (uvicorn after
/// 5 s), and a reused connection found closed is retried on a fresh one.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle connections kept per target.
const MAX_IDLE: usize = 16;

impl Pool {
    /// An idle connection to `target` that still looks open, if any.
    pub fn checkout(&self, target: &Target) -> Option<UpstreamConn> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(target)?;
        while let Some((since, mut conn)) = list.pop() {
            if since.elapsed() < IDLE_TIMEOUT && still_open(&mut conn) {
                conn.reused = true;
                return Some(conn);
            }
        }
        None
    }

    /// Returns a connection whose last response ended cleanly.
    pub fn checkin(&self, conn: UpstreamConn) {
        if conn.decoder.finished().is_some() || !conn.buf.is_empty() {
            return; // closing, or the server sent bytes nobody asked for
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.entry(conn.target.clone()).or_default();
        list.retain(|(since, _)| since.elapsed() < IDLE_TIMEOUT);
        if list.len() < MAX_IDLE {
            list.push((Instant::now(), conn));
        }
    }
}

/// An idle connection is usable when reading from it would block: no EOF, no
/// TLS close_notify, no unsolicited bytes.
fn still_open(conn: &mut UpstreamConn) -> bool {
    if !conn.decoder.is_idle() {
        return false;
    }
    let mut scratch = [0u8; 1];
    let mut buf = ReadBuf::new(&mut scratch);
    let mut cx = Context::from_waker(Waker::noop());
    matches!(
        Pin::new(&mut conn.io).poll_read(&mut cx, &mut buf),
        Poll::Pending
    )
}

/// Counts the bytes moved through a stream (for the close record).
pub struct Counted<T> {
    inner: T,
    pub read: u64,
    pub written: u64,
}

impl<T> Counted<T> {
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            read: 0,
            written: 0,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.read += (buf.filled().len() - before) as u64;
        poll
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = poll {
            self.written += n as u64;
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
