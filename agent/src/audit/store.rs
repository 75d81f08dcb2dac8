//! The writer: one thread owns the live segment and the head of the chain;
//! callers hand it records over a channel. Records are written in batches
//! with one fdatasync each (group commit); a durable record is acknowledged
//! only after the sync of its batch.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::task::{Context as TaskContext, Poll};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use time::OffsetDateTime;
use tokio::sync::oneshot;
use tracing::{error, info, warn};

use super::chain::{Link, encode_line, format_ts, hex};
use super::checkpoint::{KEY_FILE, SigningKey};
use super::record::{Checkpoint, Record, Recovery, Retention, StoreRecord};
use super::recover;
use super::segment::{self, Appender, FileOps, OsFileOps, Segment};

/// Held (flock) by the writer while the store is open: a second writer is
/// refused, and `verify` knows an unsealed tail is still being written.
pub const LOCK_FILE: &str = "writer.lock";

/// What a line adds to its record's JSON: seq, prev, ts, hash (and the
/// checkpoints that follow), for sizing batches against segments.
const LINE_OVERHEAD: u64 = 200;

/// How the store behaves; `Default` is what the agent uses.
#[derive(Clone)]
pub struct StoreConfig {
    /// Ed25519 PKCS#8 key; default `<audit dir>/signing.key`, created 0600.
    pub key_path: Option<PathBuf>,
    /// Longest wait for more records before a batch of non-durable ones is
    /// written and synced.
    pub batch_delay: Duration,
    /// Most records in one batch.
    pub max_batch: usize,
    /// A signed checkpoint after this many records…
    pub checkpoint_every: u64,
    /// …or after this long with records not yet covered by one.
    pub checkpoint_interval: Duration,
    /// The live segment is closed (with a checkpoint) past this size…
    pub segment_max_bytes: u64,
    /// …or this age (from its first record).
    pub segment_max_age: Duration,
    pub retention: RetentionPolicy,
    /// While the disk fails, non-durable records wait in memory for the next
    /// try, up to this many; older ones are then dropped (and counted in the
    /// recovery record written when the disk is back).
    pub max_pending: usize,
    /// How often a failed write is tried again when no new record comes.
    pub retry_interval: Duration,
    /// The live segment's file operations; tests inject failures here.
    pub file_ops: Arc<dyn FileOps>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            key_path: None,
            batch_delay: Duration::from_millis(5),
            max_batch: 4096,
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(10),
            segment_max_bytes: 64 << 20,
            segment_max_age: Duration::from_secs(24 * 3600),
            retention: RetentionPolicy::default(),
            max_pending: 100_000,
            retry_interval: Duration::from_secs(1),
            file_ops: Arc::new(OsFileOps),
        }
    }
}

/// Which closed segments are removed at rotation; the default keeps all.
/// A removal is itself recorded (kind "retention"), so that `verify` can
/// tell it from a deletion.
#[derive(Debug, Clone, Default)]
pub struct RetentionPolicy {
    /// Remove closed segments last written longer ago than this.
    pub max_age: Option<Duration>,
    /// Remove the oldest closed segments while all segments together are larger.
    pub max_bytes: Option<u64>,
}

/// A durable record is on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub seq: u64,
    /// The record's hash (64 hex).
    pub hash: String,
}

/// Why a durable record was not written. Cloneable: one failed batch
/// answers every durable record in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The write or its sync failed; nothing of the batch stayed on disk.
    #[error("the audit store cannot write: {message}")]
    Write {
        kind: io::ErrorKind,
        message: String,
    },
    #[error("the audit store has stopped")]
    Stopped,
}

impl StoreError {
    fn from_io(e: &io::Error) -> Self {
        Self::Write {
            kind: e.kind(),
            message: e.to_string(),
        }
    }

    /// ENOSPC or EDQUOT: worth saying so in the JSON-RPC error.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, Self::Write { kind, .. }
            if matches!(kind, io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded))
    }
}

/// The answer to [`AuditLog::record_durable`]: await it in async code, or
/// `wait()` for it on a plain thread.
pub struct PendingAck(oneshot::Receiver<Result<Ack, StoreError>>);

impl PendingAck {
    /// Blocks until the record is on disk or has failed. Not from within an
    /// async runtime (await instead).
    pub fn wait(self) -> Result<Ack, StoreError> {
        self.0.blocking_recv().unwrap_or(Err(StoreError::Stopped))
    }
}

impl Future for PendingAck {
    type Output = Result<Ack, StoreError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(StoreError::Stopped)))
    }
}

/// One record on its way to the writer, already serialized by the caller's
/// thread so that the writer only hashes and writes.
struct Entry {
    /// When the caller handed it over: the event's time, whatever the disk does.
    ts: String,
    body: Vec<u8>,
    ack: Option<oneshot::Sender<Result<Ack, StoreError>>>,
}

/// Handle to the writer thread. Cloning shares the thread.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Entry>,
}

/// Joined on shutdown so that every queued record reaches the disk and the
/// store is sealed.
pub struct AuditWriter {
    handle: thread::JoinHandle<()>,
}

impl AuditLog {
    /// Opens (creating) the store in `dir` with the default configuration.
    pub fn open(dir: &Path) -> Result<(AuditLog, AuditWriter)> {
        Self::open_with(dir, StoreConfig::default())
    }

    /// Opens the store: takes the writer lock, loads or creates the signing
    /// key, cuts a torn tail left by a crash (recording that it did), and
    /// starts the writer thread.
    pub fn open_with(dir: &Path, config: StoreConfig) -> Result<(AuditLog, AuditWriter)> {
        fs::create_dir_all(dir).with_context(|| format!("creating audit dir {}", dir.display()))?;
        let lock = take_lock(dir)?;
        let key_path = config
            .key_path
            .clone()
            .unwrap_or_else(|| dir.join(KEY_FILE));
        let key = SigningKey::load_or_create(&key_path)?;
        let tail = recover::open_tail(dir)?;
        if let Some(r) = &tail.recovery {
            warn!(dir = %dir.display(), cause = %r.cause, detail = %r.detail, "audit store recovered");
        }
        let live = Appender::open(tail.live, tail.live_len, config.file_ops.clone())
            .with_context(|| format!("opening the live segment in {}", dir.display()))?;
        let mut writer = Writer {
            dir: dir.to_path_buf(),
            key,
            live,
            live_started: tail.live_started,
            chain: tail.chain,
            owed: tail.recovery,
            pending: VecDeque::new(),
            failure: None,
            last_checkpoint: Instant::now(),
            buf: Vec::new(),
            config,
            _lock: lock,
        };
        // The recovery record goes out before anything else is accepted.
        writer.commit(Vec::new());
        let (tx, rx) = mpsc::channel();
        let handle = thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run(rx))
            .context("starting the audit writer")?;
        Ok((AuditLog { tx }, AuditWriter { handle }))
    }

    /// Queues a record; it is on disk within the batch delay (or, while the
    /// disk fails, as soon as it works again).
    pub fn record(&self, record: Record) {
        if let Some(entry) = entry(&record, None)
            && self.tx.send(entry).is_err()
        {
            error!("audit writer has stopped; record lost");
        }
    }

    /// Queues a record and returns what resolves once it is on disk (synced),
    /// or with the error that kept it off.
    pub fn record_durable(&self, record: Record) -> PendingAck {
        let (ack, rx) = oneshot::channel();
        if let Some(entry) = entry(&record, Some(ack)) {
            // On a send error the entry (and its sender) is dropped: Stopped.
            let _ = self.tx.send(entry);
        }
        PendingAck(rx)
    }
}

fn entry(record: &Record, ack: Option<oneshot::Sender<Result<Ack, StoreError>>>) -> Option<Entry> {
    let ts = format_ts(OffsetDateTime::now_utc());
    match serde_json::to_vec(record) {
        Ok(body) => Some(Entry { ts, body, ack }),
        Err(e) => {
            error!(error = %e, "audit record does not serialize; record lost");
            if let Some(ack) = ack {
                let _ = ack.send(Err(StoreError::Write {
                    kind: io::ErrorKind::InvalidData,
                    message: e.to_string(),
                }));
            }
            None
        }
    }
}

impl AuditWriter {
    /// Waits until every record sent before all `AuditLog` handles were
    /// dropped is on disk and the store is sealed.
    pub fn finish(self) {
        let _ = self.handle.join();
    }
}

fn take_lock(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => {
            bail!(
                "the audit store {} is open in another process",
                dir.display()
            )
        }
        Err(fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

fn now_ts() -> String {
    format_ts(OffsetDateTime::now_utc())
}

/// The head of the chain and what the next checkpoint will cover. The
/// writer builds each batch on a copy and keeps it only if the batch
/// reached the disk.
#[derive(Debug, Clone)]
pub(super) struct ChainState {
    pub head: Option<Link>,
    /// The last record is a seal.
    pub sealed: bool,
    /// First seq the next checkpoint covers.
    pub checkpoint_from: u64,
    /// Records since the last checkpoint.
    pub uncovered: u64,
}

impl ChainState {
    fn append(&mut self, buf: &mut Vec<u8>, ts: &str, body: &[u8]) -> Link {
        let (seq, prev) = Link::next(self.head.as_ref());
        let hash = encode_line(buf, seq, &prev, ts, body, None);
        let link = Link { seq, hash };
        self.head = Some(link);
        self.sealed = false;
        self.uncovered += 1;
        link
    }

    fn append_store(&mut self, buf: &mut Vec<u8>, record: &StoreRecord) -> Link {
        self.append(buf, &now_ts(), &record.to_body())
    }

    /// Appends a signed checkpoint (or seal) covering the records since the
    /// last one. Needs a head: there is nothing to vouch for in an empty store.
    fn append_checkpoint(
        &mut self,
        buf: &mut Vec<u8>,
        key: &SigningKey,
        segment: &str,
        seal: bool,
    ) {
        let Some(head) = self.head else { return };
        let checkpoint = Checkpoint {
            from_seq: self.checkpoint_from,
            to_seq: head.seq,
            last_hash: hex(&head.hash),
            segments: vec![segment.to_string()],
            key: key.public_key().to_string(),
        };
        let body = if seal {
            StoreRecord::Seal(checkpoint)
        } else {
            StoreRecord::Checkpoint(checkpoint)
        }
        .to_body();
        let (seq, prev) = Link::next(Some(&head));
        let hash = encode_line(buf, seq, &prev, &now_ts(), &body, Some(&|h| key.sign(h)));
        self.head = Some(Link { seq, hash });
        self.sealed = seal;
        self.checkpoint_from = seq + 1;
        self.uncovered = 0;
    }
}

/// The disk has been failing since `since`.
struct Failure {
    since: String,
    error: String,
    last_seq: Option<u64>,
    /// Non-durable records given up on (pending queue full).
    dropped: u64,
    /// Durable records answered with an error.
    refused: u64,
}

struct Writer {
    dir: PathBuf,
    config: StoreConfig,
    key: SigningKey,
    live: Appender,
    live_started: OffsetDateTime,
    chain: ChainState,
    /// Found at open, written with the first batch that reaches the disk.
    owed: Option<Recovery>,
    /// Non-durable records of failed batches, tried again with the next one.
    pending: VecDeque<Entry>,
    failure: Option<Failure>,
    last_checkpoint: Instant,
    buf: Vec<u8>,
    _lock: File,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Entry>) {
        loop {
            let first = match rx.recv_timeout(self.next_wakeup()) {
                Ok(entry) => Some(entry),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let batch = first.map(|f| self.gather(f, &rx)).unwrap_or_default();
            self.rotate_if_due(
                batch
                    .iter()
                    .map(|e| e.body.len() as u64 + LINE_OVERHEAD)
                    .sum(),
            );
            self.commit(batch);
        }
        self.commit(Vec::new());
        self.seal();
    }

    /// The batch that starts with `first`: a durable record is written at
    /// once with whatever is queued behind it (concurrent durable records
    /// share a sync); otherwise records are gathered for up to `batch_delay`.
    fn gather(&self, first: Entry, rx: &mpsc::Receiver<Entry>) -> Vec<Entry> {
        let deadline = Instant::now() + self.config.batch_delay;
        let mut durable = first.ack.is_some();
        let mut batch = vec![first];
        while batch.len() < self.config.max_batch {
            let left = deadline.saturating_duration_since(Instant::now());
            let next = if durable || left.is_zero() {
                rx.try_recv().ok()
            } else {
                rx.recv_timeout(left).ok()
            };
            let Some(entry) = next else { break };
            durable |= entry.ack.is_some();
            batch.push(entry);
        }
        batch
    }

    /// How long the thread may sleep before a retry, checkpoint or rotation is due.
    fn next_wakeup(&self) -> Duration {
        let mut wait = Duration::from_secs(3600);
        if self.failure.is_some() || !self.pending.is_empty() || self.owed.is_some() {
            wait = wait.min(self.config.retry_interval);
        }
        if self.chain.uncovered > 0 {
            let due = self
                .config
                .checkpoint_interval
                .saturating_sub(self.last_checkpoint.elapsed());
            wait = wait.min(due);
        }
        if !self.live.is_empty() {
            let age = (OffsetDateTime::now_utc() - self.live_started).unsigned_abs();
            wait = wait.min(self.config.segment_max_age.saturating_sub(age));
        }
        wait
    }

    /// Writes what is owed, the pending records, `batch` and any checkpoint
    /// that falls due, with one write and one sync; then answers the durable
    /// records. On failure nothing stays on disk and the chain is unchanged.
    fn commit(&mut self, batch: Vec<Entry>) {
        let mut next = self.chain.clone();
        self.buf.clear();
        let segment = self.live.segment.name.clone();
        if let Some(recovery) = self.owed.clone() {
            next.append_store(&mut self.buf, &StoreRecord::Recovery(recovery));
        }
        if let Some(f) = &self.failure {
            next.append_store(
                &mut self.buf,
                &StoreRecord::Recovery(Recovery {
                    cause: "write_failure".into(),
                    detail: f.error.clone(),
                    last_seq: f.last_seq,
                    dropped: Some(f.dropped),
                    refused: Some(f.refused),
                    failed_since: Some(f.since.clone()),
                    ..Recovery::default()
                }),
            );
        }
        let entries: Vec<Entry> = self.pending.drain(..).chain(batch).collect();
        let mut links = Vec::with_capacity(entries.len());
        for entry in &entries {
            links.push(next.append(&mut self.buf, &entry.ts, &entry.body));
            if next.uncovered >= self.config.checkpoint_every {
                next.append_checkpoint(&mut self.buf, &self.key, &segment, false);
            }
        }
        if next.uncovered > 0 && self.last_checkpoint.elapsed() >= self.config.checkpoint_interval {
            next.append_checkpoint(&mut self.buf, &self.key, &segment, false);
        }
        if self.buf.is_empty() {
            return;
        }
        match self.append_buf() {
            Ok(()) => {
                if next.checkpoint_from != self.chain.checkpoint_from {
                    self.last_checkpoint = Instant::now();
                }
                self.chain = next;
                self.owed = None;
                if let Some(f) = self.failure.take() {
                    info!(since = %f.since, dropped = f.dropped, "audit store writes again");
                }
                for (entry, link) in entries.into_iter().zip(links) {
                    if let Some(ack) = entry.ack {
                        let _ = ack.send(Ok(Ack {
                            seq: link.seq,
                            hash: hex(&link.hash),
                        }));
                    }
                }
            }
            Err(e) => self.failed(&e, entries),
        }
    }

    fn failed(&mut self, e: &io::Error, entries: Vec<Entry>) {
        let answer = StoreError::from_io(e);
        match &mut self.failure {
            Some(f) => f.error = e.to_string(),
            None => {
                error!(segment = %self.live.segment.path.display(), error = %e,
                    "audit store cannot write; durable records are refused until it can");
                self.failure = Some(Failure {
                    since: now_ts(),
                    error: e.to_string(),
                    last_seq: self.chain.head.map(|h| h.seq),
                    dropped: 0,
                    refused: 0,
                });
            }
        }
        for entry in entries {
            match entry.ack {
                Some(ack) => {
                    let _ = ack.send(Err(answer.clone()));
                    if let Some(f) = &mut self.failure {
                        f.refused += 1;
                    }
                }
                None => self.pending.push_back(entry),
            }
        }
        let excess = self.pending.len().saturating_sub(self.config.max_pending);
        if excess > 0 {
            self.pending.drain(..excess);
            if let Some(f) = &mut self.failure {
                f.dropped += excess as u64;
            }
        }
    }

    /// Appends `buf` to the live segment; its age counts from its first write.
    fn append_buf(&mut self) -> io::Result<()> {
        let was_empty = self.live.is_empty();
        self.live.append_synced(&self.buf)?;
        if was_empty {
            self.live_started = OffsetDateTime::now_utc();
        }
        Ok(())
    }

    /// Writes one signed checkpoint (or seal) on its own; false if it failed.
    fn write_checkpoint(&mut self, seal: bool) -> bool {
        let mut next = self.chain.clone();
        self.buf.clear();
        next.append_checkpoint(&mut self.buf, &self.key, &self.live.segment.name, seal);
        match self.append_buf() {
            Ok(()) => {
                self.chain = next;
                self.last_checkpoint = Instant::now();
                true
            }
            Err(e) => {
                error!(segment = %self.live.segment.path.display(), error = %e, "cannot write an audit checkpoint");
                false
            }
        }
    }

    fn seal(&mut self) {
        if self.chain.head.is_some() && !self.chain.sealed {
            self.write_checkpoint(true);
        }
    }

    /// Closes the live segment with a checkpoint and starts the next one
    /// when it is too old, or too large to take `incoming` more bytes (a batch
    /// is never split); then applies retention.
    fn rotate_if_due(&mut self, incoming: u64) {
        let age = (OffsetDateTime::now_utc() - self.live_started).unsigned_abs();
        let len = self.live.len();
        if len == 0
            || (len + incoming <= self.config.segment_max_bytes
                && age < self.config.segment_max_age)
        {
            return;
        }
        // Every closed segment ends signed, so each can be checked alone.
        if self.chain.uncovered > 0 && !self.write_checkpoint(false) {
            return;
        }
        let segment = Segment::new(&self.dir, self.live.segment.number + 1);
        match Appender::open(segment, 0, self.config.file_ops.clone()) {
            Ok(live) => {
                self.live = live;
                self.live_started = OffsetDateTime::now_utc();
            }
            Err(e) => {
                warn!(dir = %self.dir.display(), error = %e, "cannot start a new audit segment");
                return;
            }
        }
        if let Err(e) = self.apply_retention() {
            warn!(dir = %self.dir.display(), error = %e, "audit retention failed");
        }
    }

    /// Removes the closed segments the policy no longer keeps, after
    /// recording (durably) which ones and which records they held.
    fn apply_retention(&mut self) -> Result<()> {
        let policy = &self.config.retention;
        if policy.max_age.is_none() && policy.max_bytes.is_none() {
            return Ok(());
        }
        let segments = segment::list(&self.dir)?;
        let mut total: u64 = 0;
        let mut sizes = Vec::new();
        for s in &segments {
            let meta = fs::metadata(&s.path)?;
            total += meta.len();
            sizes.push((meta.len(), meta.modified()?));
        }
        let mut remove = 0;
        for (s, (len, modified)) in segments.iter().zip(&sizes) {
            if s.number >= self.live.segment.number {
                break;
            }
            let too_old = policy
                .max_age
                .is_some_and(|max| modified.elapsed().unwrap_or_default() > max);
            let too_big = policy.max_bytes.is_some_and(|max| total > max);
            if !(too_old || too_big) {
                break;
            }
            total -= len;
            remove += 1;
        }
        if remove == 0 {
            return Ok(());
        }
        let removed = &segments[..remove];
        let removed_from_seq = first_record(&removed[0].path)?.map_or(1, |l| l.0);
        // The oldest record kept names the last one removed in its `prev`.
        let (removed_to_seq, removed_last_hash) = match first_record(&segments[remove].path)? {
            Some((seq, prev)) => (seq - 1, prev),
            None => {
                let head = self.chain.head.context("retention on an empty store")?;
                (head.seq, hex(&head.hash))
            }
        };
        let record = StoreRecord::Retention(Retention {
            removed: removed.iter().map(|s| s.name.clone()).collect(),
            removed_from_seq,
            removed_to_seq,
            removed_last_hash,
        });
        let mut next = self.chain.clone();
        self.buf.clear();
        next.append_store(&mut self.buf, &record);
        self.append_buf()?;
        self.chain = next;
        for s in removed {
            fs::remove_file(&s.path).with_context(|| format!("removing {}", s.path.display()))?;
            info!(segment = %s.name, "audit segment removed by retention");
        }
        segment::sync_dir(&self.dir)?;
        Ok(())
    }
}

/// `seq` and `prev` (hex) of the first line of a segment.
fn first_record(path: &Path) -> Result<Option<(u64, String)>> {
    let mut file = File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut first = None;
    segment::scan_lines(&mut file, 0, 1, |line| {
        first = super::chain::parse_line(line.bytes)
            .ok()
            .map(|l| (l.seq, hex(&l.prev)));
        std::ops::ControlFlow::Break(())
    })?;
    Ok(first)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::audit::sample::{read_all, record, small_config, write_store};
    use crate::audit::verify::verify;

    #[test]
    fn records_are_numbered_chained_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        write_store(dir.path(), 3, StoreConfig::default());
        write_store(dir.path(), 3, StoreConfig::default());
        let all = read_all(dir.path());
        let kinds: Vec<&str> = all.iter().map(|r| r["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "connect", "request", "decision", "seal", "connect", "request", "decision", "seal"
            ]
        );
        for (i, r) in all.iter().enumerate() {
            assert_eq!(r["seq"], i as u64 + 1);
            let prev = if i == 0 {
                "0".repeat(64)
            } else {
                all[i - 1]["hash"].as_str().unwrap().to_string()
            };
            assert_eq!(r["prev"], prev.as_str());
        }
        let ts = all[0]["ts"].as_str().unwrap();
        assert_eq!(ts.len(), 30, "nanoseconds: {ts}");
        assert!(ts.ends_with('Z'));
        assert!(
            all[1].get("decision").is_none(),
            "absent fields are omitted"
        );
        assert_eq!(all[3]["from_seq"], 1);
        assert_eq!(all[7]["from_seq"], 5);
        assert!(verify(dir.path(), None).unwrap().ok());
    }

    #[test]
    fn a_durable_record_is_readable_by_a_fresh_reader_once_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            batch_delay: Duration::from_secs(3600),
            ..StoreConfig::default()
        };
        let (log, writer) = AuditLog::open_with(dir.path(), config).unwrap();
        log.record(record(0));
        let ack = log.record_durable(record(1)).wait().unwrap();
        // Written with the batched record queued before it, not an hour later.
        let on_disk = read_all(dir.path());
        assert_eq!(on_disk.len(), 2);
        assert_eq!(on_disk[1]["seq"], ack.seq);
        assert_eq!(on_disk[1]["hash"], ack.hash.as_str());
        drop(log);
        writer.finish();
    }

    #[test]
    fn a_durable_record_can_be_awaited() {
        let dir = tempfile::tempdir().unwrap();
        let (log, writer) = AuditLog::open(dir.path()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let acks = rt.block_on(async {
            let pending: Vec<PendingAck> = (0..10).map(|i| log.record_durable(record(i))).collect();
            let mut acks = Vec::new();
            for p in pending {
                acks.push(p.await.unwrap().seq);
            }
            acks
        });
        assert_eq!(acks, (1..=10).collect::<Vec<_>>());
        drop(log);
        writer.finish();
    }

    #[test]
    fn a_live_store_verifies_with_its_unsigned_tail_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (log, writer) = AuditLog::open(dir.path()).unwrap();
        log.record_durable(record(0)).wait().unwrap();
        log.record_durable(record(1)).wait().unwrap();
        let report = verify(dir.path(), None).unwrap();
        assert!(report.ok() && report.live, "{report}");
        assert_eq!(report.unsigned_tail, Some((1, 2)));
        drop(log);
        writer.finish();
        let report = verify(dir.path(), None).unwrap();
        assert!(
            report.ok() && !report.live && report.unsigned_tail.is_none(),
            "{report}"
        );
    }

    #[test]
    fn a_second_writer_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_log, _writer) = AuditLog::open(dir.path()).unwrap();
        let err = AuditLog::open(dir.path()).err().unwrap();
        assert!(err.to_string().contains("open in another process"), "{err}");
        assert!(crate::audit::verify::is_live(dir.path()));
    }

    /// A disk that fills up on demand: writes get half-way, then ENOSPC.
    struct FullDisk(AtomicBool);
    impl FileOps for FullDisk {
        fn write_at(&self, file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
            use std::os::unix::fs::FileExt;
            if self.0.load(Ordering::SeqCst) {
                file.write_all_at(&buf[..buf.len() / 2], offset)?;
                return Err(io::Error::from_raw_os_error(libc_enospc()));
            }
            file.write_all_at(buf, offset)
        }
    }
    fn libc_enospc() -> i32 {
        28
    }

    #[test]
    fn a_full_disk_refuses_durable_records_keeps_the_rest_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Arc::new(FullDisk(AtomicBool::new(false)));
        let config = StoreConfig {
            file_ops: disk.clone(),
            retry_interval: Duration::from_millis(10),
            ..small_config()
        };
        let (log, writer) = AuditLog::open_with(dir.path(), config).unwrap();
        log.record_durable(record(0)).wait().unwrap();
        disk.0.store(true, Ordering::SeqCst);
        log.record(record(1));
        let err = log.record_durable(record(2)).wait().unwrap_err();
        assert!(err.is_disk_full(), "{err}");
        assert!(err.to_string().contains("cannot write"), "{err}");
        // No partial line was left behind.
        let text = fs::read_to_string(segment::list(dir.path()).unwrap()[0].path.clone()).unwrap();
        assert!(text.ends_with('\n'));
        assert_eq!(text.lines().count(), 1);

        disk.0.store(false, Ordering::SeqCst);
        let ack = log.record_durable(record(3)).wait().unwrap();
        drop(log);
        writer.finish();
        let all = read_all(dir.path());
        let kinds: Vec<&str> = all.iter().map(|r| r["kind"].as_str().unwrap()).collect();
        // The batched record waited for the disk; the refused durable one is gone.
        assert_eq!(kinds[..4], ["connect", "recovery", "request", "response"]);
        assert_eq!(all[1]["cause"], "write_failure");
        assert_eq!(all[1]["last_seq"], 1);
        assert_eq!(all[1]["refused"], 1);
        assert_eq!(all[3]["seq"], ack.seq);
        let report = verify(dir.path(), None).unwrap();
        assert!(report.ok(), "{report}");
    }

    #[test]
    fn segments_rotate_by_size_and_each_ends_signed() {
        let dir = tempfile::tempdir().unwrap();
        write_store(dir.path(), 60, small_config());
        let segments = segment::list(dir.path()).unwrap();
        assert!(segments.len() >= 4);
        for s in &segments {
            let text = fs::read_to_string(&s.path).unwrap();
            let last = text.lines().last().unwrap();
            assert!(
                last.contains("\"kind\":\"checkpoint\"") || last.contains("\"kind\":\"seal\""),
                "{}",
                s.name
            );
            // A segment closes before a batch would take it past the limit.
            assert!(
                text.len() <= 4096 + 1024,
                "{} is {} bytes",
                s.name,
                text.len()
            );
        }
        assert!(verify(dir.path(), None).unwrap().ok());
    }

    #[test]
    fn segments_rotate_by_age_and_checkpoints_come_by_time() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            segment_max_age: Duration::from_millis(100),
            checkpoint_interval: Duration::from_millis(30),
            checkpoint_every: 1000,
            ..StoreConfig::default()
        };
        let (log, writer) = AuditLog::open_with(dir.path(), config).unwrap();
        log.record_durable(record(0)).wait().unwrap();
        thread::sleep(Duration::from_millis(300));
        // Signed while idle, and the old segment closed, without a new record.
        assert!(
            read_all(dir.path())
                .iter()
                .any(|r| r["kind"] == "checkpoint")
        );
        log.record_durable(record(1)).wait().unwrap();
        assert!(
            segment::list(dir.path()).unwrap().len() >= 2,
            "rotated by age"
        );
        let report = verify(dir.path(), None).unwrap();
        assert!(report.ok() && report.live, "{report}");
        drop(log);
        writer.finish();
        assert!(verify(dir.path(), None).unwrap().ok());
    }

    #[test]
    fn retention_removes_old_segments_and_records_it() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            retention: RetentionPolicy {
                max_age: None,
                max_bytes: Some(10_000),
            },
            ..small_config()
        };
        write_store(dir.path(), 100, config);
        let segments = segment::list(dir.path()).unwrap();
        assert!(segments[0].number > 1, "old segments removed");
        let retained: Vec<_> = read_all(dir.path())
            .into_iter()
            .filter(|r| r["kind"] == "retention")
            .collect();
        assert!(!retained.is_empty());
        let report = verify(dir.path(), None).unwrap();
        assert!(report.ok(), "{report}");
        assert!(report.retained_from.unwrap() > 1);

        // Removing one more by hand is not retention.
        fs::remove_file(&segments[0].path).unwrap();
        let report = verify(dir.path(), None).unwrap();
        assert!(!report.ok(), "{report}");
    }
}
