//! The connection record: one JSON object per line in
//! `<state_dir>/audit/records.jsonl`, written by one thread in order.
//!
//! This is the small writer of the interception core; the tamper-evident store
//! (hash chain, signed checkpoints, write-ahead for data-bearing requests)
//! replaces it behind the same `AuditLog::record` call.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;

use anyhow::{Context, Result};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::error;

use crate::identity::Identity;

pub const RECORDS_FILE: &str = "records.jsonl";

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A redirected connection was accepted and its caller identified.
    Connect,
    /// It ended: byte counts, duration, outcome.
    Close,
    /// It was refused without relaying (no flow record, unknown endpoint).
    Reject,
}

/// What a caller hands to the log; `seq` and `ts` are added by the writer.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub kind: Kind,
    pub session: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
    pub client: SocketAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orig_dst: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_up: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_down: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Record {
    pub fn new(kind: Kind, session: &str, client: SocketAddr) -> Self {
        Self {
            kind,
            session: session.to_string(),
            endpoint: None,
            identity: None,
            client,
            orig_dst: None,
            upstream: None,
            bytes_up: None,
            bytes_down: None,
            duration_ms: None,
            outcome: None,
            reason: None,
        }
    }
}

#[derive(Serialize)]
struct Line<'a> {
    seq: u64,
    ts: String,
    #[serde(flatten)]
    record: &'a Record,
}

/// Handle to the writer thread. Cloning shares the thread.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Record>,
}

/// Joined on shutdown so that every queued record reaches the disk.
pub struct AuditWriter {
    handle: thread::JoinHandle<()>,
}

impl AuditLog {
    /// Opens (creating) `<dir>/records.jsonl` and starts the writer thread.
    /// Sequence numbers continue from the last record in the file.
    pub fn open(dir: &Path) -> Result<(AuditLog, AuditWriter)> {
        fs::create_dir_all(dir).with_context(|| format!("creating audit dir {}", dir.display()))?;
        let path = dir.join(RECORDS_FILE);
        let next_seq = last_seq(&path)? + 1;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let (tx, rx) = mpsc::channel();
        let handle = thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || write_loop(file, path, next_seq, rx))
            .context("starting the audit writer")?;
        Ok((AuditLog { tx }, AuditWriter { handle }))
    }

    pub fn record(&self, record: Record) {
        if self.tx.send(record).is_err() {
            error!("audit writer has stopped; record lost");
        }
    }
}

impl AuditWriter {
    /// Waits until every record sent before all `AuditLog` handles were dropped is on disk.
    pub fn finish(self) {
        let _ = self.handle.join();
    }
}

/// Appends in batches: everything queued is written, then flushed and fsync'd once.
fn write_loop(file: File, path: PathBuf, mut seq: u64, rx: mpsc::Receiver<Record>) {
    let mut out = BufWriter::new(file);
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        for record in &batch {
            let line = Line {
                seq,
                ts: now_rfc3339(),
                record,
            };
            let res = serde_json::to_writer(&mut out, &line)
                .map_err(io::Error::from)
                .and_then(|_| out.write_all(b"\n"));
            if let Err(e) = res {
                error!(path = %path.display(), error = %e, "cannot write audit record");
            }
            seq += 1;
        }
        if let Err(e) = out.flush().and_then(|_| out.get_ref().sync_data()) {
            error!(path = %path.display(), error = %e, "cannot sync audit records");
        }
    }
}

fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_else(|_| "unknown".into())
}

/// The `seq` of the file's last complete record, 0 if there is none.
fn last_seq(path: &Path) -> Result<u64> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut last = 0;
    for line in BufReader::new(file).lines() {
        let line = line?;
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
            && let Some(seq) = v.get("seq").and_then(|s| s.as_u64())
        {
            last = seq;
        }
    }
    Ok(last)
}

/// Copies every record to `out`, one JSON object per line.
pub fn export(dir: &Path, out: &mut dyn Write) -> Result<()> {
    let path = dir.join(RECORDS_FILE);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    for line in BufReader::new(file).lines() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(dir: &Path) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        export(dir, &mut out).unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn records_are_numbered_in_order_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let client: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        for round in 0..2 {
            let (log, writer) = AuditLog::open(dir.path()).unwrap();
            let mut r = Record::new(Kind::Connect, &format!("s{round}"), client);
            r.endpoint = Some("ehr".into());
            log.record(r);
            log.record(Record::new(Kind::Close, &format!("s{round}"), client));
            drop(log);
            writer.finish();
        }
        let recs = read(dir.path());
        let seqs: Vec<u64> = recs.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, vec![1, 2, 3, 4]);
        assert_eq!(recs[0]["kind"], "connect");
        assert_eq!(recs[0]["endpoint"], "ehr");
        assert_eq!(recs[1]["kind"], "close");
        assert!(
            recs[1].get("endpoint").is_none(),
            "absent fields are omitted"
        );
        assert!(recs[0]["ts"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn export_of_a_fresh_state_dir_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(&dir.path().join("nothing-here")).is_empty());
    }
}
