//! The measuring side of the benchmarks: loopback servers in the xtask process,
//! and client loops that run as a child process inside a cgroup (with or
//! without the agent's programs attached), printing one JSON result line.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

pub const MSG: usize = 64;

/// Echoes fixed-size messages until EOF: request/response latency.
pub fn echo_server() -> Result<SocketAddr> {
    serve(|mut s| {
        let _ = s.set_nodelay(true);
        let mut buf = [0u8; MSG];
        while s.read_exact(&mut buf).is_ok() {
            if s.write_all(&buf).is_err() {
                break;
            }
        }
    })
}

/// Reads everything, then answers with the byte count: bulk throughput.
pub fn bulk_server() -> Result<SocketAddr> {
    serve(|mut s| {
        let mut buf = vec![0u8; 256 * 1024];
        let mut total: u64 = 0;
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => total += n as u64,
                Err(_) => return,
            }
        }
        let _ = s.write_all(&total.to_le_bytes());
    })
}

fn serve(handler: fn(TcpStream)) -> Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    thread::spawn(move || {
        for s in l.incoming().flatten() {
            thread::spawn(move || handler(s));
        }
    });
    Ok(addr)
}

/// Connects per batch: below the listener's backlog, so no SYN is ever dropped
/// (a dropped SYN costs a 1 s retransmit and would swamp the measure).
const CONNECT_BATCH: u32 = 2000;

/// connect()+close `n` times, in batches, to a listener of this process (the
/// accepting side never passes the connect hooks); prints the median batch
/// rate in connects per second.
pub fn connect_loop(addr: SocketAddr, n: u32) -> Result<String> {
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    sock.bind(&addr.into())?;
    sock.listen(4096)?;
    let l: TcpListener = sock.into();
    let addr = l.local_addr()?;
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = accepted.clone();
    thread::spawn(move || {
        for s in l.incoming() {
            drop(s);
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let mut rates = Vec::new();
    let mut done = 0;
    while done < n {
        let batch = CONNECT_BATCH.min(n - done);
        let start = Instant::now();
        for _ in 0..batch {
            let s = TcpStream::connect(addr).context("connect")?;
            reset_on_close(&s);
        }
        rates.push(f64::from(batch) / start.elapsed().as_secs_f64());
        done += batch;
        // let the accept queue drain before the next batch
        while accepted.load(std::sync::atomic::Ordering::Relaxed) < done {
            thread::sleep(Duration::from_millis(1));
        }
    }
    rates.sort_by(f64::total_cmp);
    Ok(format!(
        r#"{{"connects_per_sec":{:.1}}}"#,
        rates[rates.len() / 2]
    ))
}

/// Sends `mb` MiB and waits for the server's count; prints MB/s.
pub fn bulk_send(addr: SocketAddr, mb: u32) -> Result<String> {
    let mut s = TcpStream::connect(addr)?;
    let chunk = vec![0x5au8; 1024 * 1024];
    let start = Instant::now();
    for _ in 0..mb {
        s.write_all(&chunk)?;
    }
    s.shutdown(Shutdown::Write)?;
    let mut count = [0u8; 8];
    s.read_exact(&mut count)?;
    let secs = start.elapsed().as_secs_f64();
    anyhow::ensure!(
        u64::from_le_bytes(count) == u64::from(mb) << 20,
        "server received a different byte count"
    );
    Ok(format!(r#"{{"mb_per_sec":{:.1}}}"#, f64::from(mb) / secs))
}

/// `n` request/response round trips on one connection, and `n / 4` fresh
/// connections each doing one; prints p50/p99 of both in microseconds.
pub fn latency(addr: SocketAddr, n: u32) -> Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    let mut rtt = Vec::with_capacity(n as usize);
    let mut buf = [7u8; MSG];
    for _ in 0..n {
        let t = Instant::now();
        s.write_all(&buf)?;
        s.read_exact(&mut buf)?;
        rtt.push(t.elapsed());
    }
    drop(s);
    let mut fresh = Vec::with_capacity(n as usize / 4);
    for _ in 0..n / 4 {
        let t = Instant::now();
        let mut s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        s.write_all(&buf)?;
        s.read_exact(&mut buf)?;
        fresh.push(t.elapsed());
        reset_on_close(&s);
    }
    let (p50, p99) = percentiles(&mut rtt);
    let (c50, c99) = percentiles(&mut fresh);
    Ok(format!(
        r#"{{"rtt_p50_us":{p50:.1},"rtt_p99_us":{p99:.1},"conn_p50_us":{c50:.1},"conn_p99_us":{c99:.1}}}"#
    ))
}

/// SO_LINGER 0: close sends RST, so thousands of short connections leave no
/// TIME_WAIT sockets to exhaust the ephemeral ports.
fn reset_on_close(s: &TcpStream) {
    let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
}

pub(super) fn percentiles(v: &mut [Duration]) -> (f64, f64) {
    v.sort();
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1e6;
    (at(0.50), at(0.99))
}
