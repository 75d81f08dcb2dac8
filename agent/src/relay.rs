//! The transport under every intercepted connection: the upstream socket
//! (marked so that the agent's own connects are never redirected) and the pumps
//! that move bytes between client and upstream with counts kept even when a
//! side fails. The L7 pipeline replaces the pumps; the sockets stay.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Relay buffer per direction: large enough for bulk transfers, small enough
/// for thousands of concurrent connections.
const BUF_SIZE: usize = 64 * 1024;

/// Opens the agent's own connections to upstream servers.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub mark: u32,
    pub connect_timeout: Duration,
}

impl Upstream {
    /// Connects to `addr` from a socket carrying SO_MARK, which the connect
    /// programs recognise and leave alone.
    pub async fn connect(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        let domain = socket2::Domain::for_address(addr);
        let sock =
            socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
        if self.mark != 0 {
            sock.set_mark(self.mark)?; // needs CAP_NET_ADMIN; 0 only in unprivileged tests
        }
        sock.set_nonblocking(true)?;
        sock.set_tcp_nodelay(true)?;
        let sock = TcpSocket::from_std_stream(std::net::TcpStream::from(sock));
        match tokio::time::timeout(self.connect_timeout, sock.connect(addr)).await {
            Ok(res) => res,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connect to {addr} timed out"),
            )),
        }
    }
}

/// Bytes moved each way; readable while the relay runs.
#[derive(Debug, Default)]
pub struct Counters {
    pub up: AtomicU64,
    pub down: AtomicU64,
}

impl Counters {
    pub fn snapshot(&self) -> (u64, u64) {
        (
            self.up.load(Ordering::Relaxed),
            self.down.load(Ordering::Relaxed),
        )
    }
}

/// Relays until both directions are done. A half-close is passed on (EOF on one
/// side shuts down writing on the other), so request/response protocols that
/// close their sending side still get their answer.
pub async fn relay_bytes(
    client: TcpStream,
    upstream: TcpStream,
    counters: Arc<Counters>,
) -> io::Result<()> {
    let (cr, cw) = client.into_split();
    let (ur, uw) = upstream.into_split();
    let up = pump(cr, uw, &counters.up);
    let down = pump(ur, cw, &counters.down);
    let (a, b) = tokio::join!(up, down);
    a.and(b)
}

async fn pump<R, W>(mut from: R, mut to: W, count: &AtomicU64) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            // peer finished sending; tell the other side, ignoring a peer already gone
            let _ = to.shutdown().await;
            return Ok(());
        }
        to.write_all(&buf[..n]).await?;
        count.fetch_add(n as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn relays_both_ways_with_half_close_and_counts() {
        let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (server_addr, front_addr) = (server.local_addr().unwrap(), front.local_addr().unwrap());
        // echo server that reads to EOF, then answers with the reversed bytes
        tokio::spawn(async move {
            let (mut s, _) = server.accept().await.unwrap();
            let mut data = Vec::new();
            s.read_to_end(&mut data).await.unwrap();
            data.reverse();
            s.write_all(&data).await.unwrap();
        });
        let counters = Arc::new(Counters::default());
        let c2 = counters.clone();
        let relay = tokio::spawn(async move {
            let (client, _) = front.accept().await.unwrap();
            let upstream = Upstream {
                mark: 0,
                connect_timeout: Duration::from_secs(5),
            };
            let up = upstream.connect(server_addr).await.unwrap();
            relay_bytes(client, up, c2).await
        });
        let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut c = TcpStream::connect(front_addr).await.unwrap();
        c.write_all(&payload).await.unwrap();
        c.shutdown().await.unwrap();
        let mut back = Vec::new();
        c.read_to_end(&mut back).await.unwrap();
        relay.await.unwrap().unwrap();
        let mut expected = payload.clone();
        expected.reverse();
        assert!(back == expected, "relayed bytes differ");
        assert_eq!(
            counters.snapshot(),
            (payload.len() as u64, payload.len() as u64)
        );
    }
}
