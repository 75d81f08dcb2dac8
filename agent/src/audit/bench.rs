//! `cargo xtask bench` numbers: append rate in both modes, the latency a
//! durable (write-ahead) record adds, and verify speed against plain reading.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::Read;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use super::sample::record;
use super::segment;
use super::sessions::{list_sessions, rebuild_index};
use super::store::AuditLog;
use super::verify::verify_with;

const BATCHED_RECORDS: usize = 200_000;
const SEQUENTIAL_DURABLE: usize = 500;
const DURABLE_THREADS: usize = 8;
const DURABLE_PER_THREAD: usize = 250;

/// Runs the store benchmarks in `dir` (left with the stores written) and
/// returns the report, one measure per line.
pub fn bench_report(dir: &Path) -> String {
    let mut out = String::new();
    let batched = dir.join("batched");
    let _ = fs::remove_dir_all(&batched);
    let (log, writer) = AuditLog::open(&batched).expect("opening the bench store");
    let start = Instant::now();
    for i in 0..BATCHED_RECORDS {
        log.record(record(i));
    }
    drop(log);
    writer.finish();
    let secs = start.elapsed().as_secs_f64();
    let _ = writeln!(
        out,
        "append batched: {BATCHED_RECORDS} records in {secs:.2} s = {:.0} records/s",
        BATCHED_RECORDS as f64 / secs
    );

    let durable = dir.join("durable");
    let _ = fs::remove_dir_all(&durable);
    let (log, writer) = AuditLog::open(&durable).expect("opening the bench store");
    let mut latencies: Vec<Duration> = (0..SEQUENTIAL_DURABLE)
        .map(|i| {
            let t = Instant::now();
            log.record_durable(record(i))
                .wait()
                .expect("durable record");
            t.elapsed()
        })
        .collect();
    latencies.sort();
    let total: Duration = latencies.iter().sum();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e6;
    let _ = writeln!(
        out,
        "append durable, one caller: {:.0} records/s; added latency p50 {:.0} us, p99 {:.0} us",
        SEQUENTIAL_DURABLE as f64 / total.as_secs_f64(),
        pct(0.5),
        pct(0.99)
    );
    let start = Instant::now();
    thread::scope(|s| {
        for t in 0..DURABLE_THREADS {
            let log = log.clone();
            s.spawn(move || {
                for i in 0..DURABLE_PER_THREAD {
                    log.record_durable(record(t * DURABLE_PER_THREAD + i))
                        .wait()
                        .expect("durable record");
                }
            });
        }
    });
    let n = DURABLE_THREADS * DURABLE_PER_THREAD;
    let _ = writeln!(
        out,
        "append durable, {DURABLE_THREADS} callers (group commit): {:.0} records/s",
        n as f64 / start.elapsed().as_secs_f64()
    );
    drop(log);
    writer.finish();

    // Plain reading first, so that both measure the page cache.
    let start = Instant::now();
    let mut bytes = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    for seg in segment::list(&batched).expect("listing segments") {
        let mut f = File::open(&seg.path).expect("opening a segment");
        loop {
            let n = f.read(&mut buf).expect("reading a segment");
            if n == 0 {
                break;
            }
            bytes += n as u64;
        }
    }
    let read_mbs = bytes as f64 / 1e6 / start.elapsed().as_secs_f64();
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    let mut report = None;
    for threads in [1, cores] {
        let r = verify_with(&batched, None, threads).expect("verifying the bench store");
        assert!(r.ok(), "bench store does not verify: {r}");
        let verify_mbs = r.bytes as f64 / 1e6 / r.elapsed.as_secs_f64();
        let _ = writeln!(
            out,
            "verify, {threads} hashing thread{}: {} records, {:.1} MB in {:.3} s = {verify_mbs:.0} MB/s; \
             plain read {read_mbs:.0} MB/s ({:.0}%)",
            if threads == 1 { "" } else { "s" },
            r.records,
            r.bytes as f64 / 1e6,
            r.elapsed.as_secs_f64(),
            verify_mbs / read_mbs * 100.0
        );
        report = Some(r);
        if cores == 1 {
            break;
        }
    }
    let report = report.expect("verified at least once");

    let start = Instant::now();
    let sessions = rebuild_index(&batched).expect("building the sessions index");
    let built = start.elapsed();
    let start = Instant::now();
    list_sessions(&batched).expect("listing sessions");
    let _ = writeln!(
        out,
        "sessions index over {} records: build {:.2} s, list {} sessions {:.1} ms",
        report.records,
        built.as_secs_f64(),
        sessions,
        start.elapsed().as_secs_f64() * 1e3
    );
    out
}
