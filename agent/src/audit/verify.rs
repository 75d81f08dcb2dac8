//! `audit verify`: one streaming pass over every segment, hashing each record
//! once, following the chain across segments, checking every checkpoint's
//! signature, and at the end that the store is sealed and that only
//! recorded retention removed its oldest records. Parsing and SHA-256 are
//! what costs: lines are read in batches, parsed and hashed on several
//! threads, then walked in order by one.

use std::collections::BTreeSet;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::ops::ControlFlow;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::chain::{Break, Hash, Line, Link, Malformed, follow_parsed, hex, parse_line};
use super::checkpoint::PublicKey;
use super::record::{Checkpoint, Recovery, STORE_KINDS, StoreRecord};
use super::segment::{self, scan_lines};
use super::store::LOCK_FILE;

/// Where a record is: what `verify` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub segment: String,
    /// 1-based line number in the segment.
    pub line: u64,
    pub offset: u64,
    /// None when the line is too damaged to read one.
    pub seq: Option<u64>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} line {} (byte {}",
            self.segment, self.line, self.offset
        )?;
        match self.seq {
            Some(seq) => write!(f, ", seq {seq})"),
            None => write!(f, ")"),
        }
    }
}

/// The first thing found wrong; verification stops there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The line does not continue the chain.
    Broken {
        at: Location,
        why: Break,
        hint: Option<String>,
    },
    /// A checkpoint or seal that does not vouch for what precedes it.
    BadCheckpoint { at: Location, why: String },
    /// A checkpoint names a segment that is gone, without a retention record.
    MissingSegment { name: String, named_at: Location },
    /// The oldest records are gone and no retention record accounts for them.
    MissingHead { first: Location, missing_to: u64 },
    /// The last line of a segment has no newline, and no writer is running.
    TornTail {
        segment: String,
        line: u64,
        offset: u64,
        bytes: u64,
    },
    /// The last record is not a seal and no writer is running: the tail was
    /// truncated, or the agent crashed and has not been started since.
    Unsealed {
        last: Option<Location>,
        last_signed: Option<u64>,
    },
}

impl Problem {
    /// The record the problem is at, when it is at one.
    pub fn at(&self) -> Option<&Location> {
        match self {
            Problem::Broken { at, .. } | Problem::BadCheckpoint { at, .. } => Some(at),
            Problem::MissingSegment { named_at, .. } => Some(named_at),
            Problem::MissingHead { first, .. } => Some(first),
            Problem::Unsealed { last, .. } => last.as_ref(),
            Problem::TornTail { .. } => None,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Broken { at, why, hint } => {
                write!(f, "{at}: ")?;
                match why {
                    Break::Malformed(m) => write!(f, "not a record line: {m}")?,
                    Break::HashMismatch => write!(
                        f,
                        "hash does not match the record's content (record changed)"
                    )?,
                    Break::Gap { expected, found } => write!(
                        f,
                        "seq {found} follows seq {}: records {expected}..={} are missing (deleted or reordered)",
                        expected - 1,
                        found - 1
                    )?,
                    Break::Backwards { expected, found } => write!(
                        f,
                        "seq {found} where {expected} was expected: records reordered or duplicated"
                    )?,
                    Break::PrevMismatch => write!(
                        f,
                        "prev is not the hash of the record before it (chain broken: a record or segment was replaced)"
                    )?,
                }
                if let Some(hint) = hint {
                    write!(f, "; {hint}")?;
                }
                Ok(())
            }
            Problem::BadCheckpoint { at, why } => write!(f, "{at}: checkpoint: {why}"),
            Problem::MissingSegment { name, named_at } => {
                write!(
                    f,
                    "segment {name} is missing (named by the checkpoint at {named_at})"
                )
            }
            Problem::MissingHead { first, missing_to } => write!(
                f,
                "records 1..={missing_to} are missing before {first}, and no retention record accounts for them (oldest segment deleted?)"
            ),
            Problem::TornTail {
                segment,
                line,
                offset,
                bytes,
            } => write!(
                f,
                "{segment} line {line} (byte {offset}): incomplete record ({bytes} bytes without a newline): truncated"
            ),
            Problem::Unsealed { last, last_signed } => {
                write!(f, "the store is not sealed")?;
                if let Some(last) = last {
                    write!(f, ": its last record is at {last}")?;
                }
                match last_signed {
                    Some(seq) => write!(f, ", the last signed checkpoint covers up to seq {seq}")?,
                    None => write!(f, ", and no record is signed")?,
                }
                write!(
                    f,
                    "; records were truncated, or the agent crashed and has not restarted"
                )
            }
        }
    }
}

/// Which key the signatures were checked with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// Given by the auditor (`--pubkey`): signatures prove who wrote the store.
    External(PublicKey),
    /// Taken from the store's own checkpoints: signatures prove consistency
    /// only, since whoever rewrote the store could have used their own key.
    Embedded(Option<PublicKey>),
}

/// The outcome of [`verify`].
#[derive(Debug, Clone)]
pub struct Report {
    pub segments: usize,
    pub records: u64,
    pub bytes: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub checkpoints: u64,
    pub key: KeySource,
    /// A writer holds the store: an unsigned or incomplete tail is expected.
    pub live: bool,
    /// Records after the last signature (only when live; otherwise a Problem).
    pub unsigned_tail: Option<(u64, u64)>,
    /// Oldest seq kept after recorded retention, when records were removed.
    pub retained_from: Option<u64>,
    /// Recovery records found: not tampering, but an auditor should see them.
    pub recoveries: Vec<(Location, Recovery)>,
    pub problem: Option<Problem>,
    pub elapsed: Duration,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problem.is_none()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.problem {
            Some(p) => writeln!(f, "FAILED: {p}")?,
            None => writeln!(f, "OK")?,
        }
        let range = match (self.first_seq, self.last_seq) {
            (Some(a), Some(b)) => format!("seq {a}..={b}"),
            _ => "no records".into(),
        };
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        writeln!(
            f,
            "{} records ({range}) in {} segments, {} bytes, {} checkpoints; {:.1} MB/s",
            self.records,
            self.segments,
            self.bytes,
            self.checkpoints,
            self.bytes as f64 / 1e6 / secs
        )?;
        match &self.key {
            KeySource::External(k) => writeln!(f, "signatures checked with the given key {k}")?,
            KeySource::Embedded(Some(k)) => writeln!(
                f,
                "signatures checked with the store's own key {k}: give --pubkey to prove who signed"
            )?,
            KeySource::Embedded(None) => writeln!(f, "no signature in the store")?,
        }
        if let Some(seq) = self.retained_from {
            writeln!(
                f,
                "records before seq {seq} were removed by recorded retention"
            )?;
        }
        if let Some((a, b)) = self.unsigned_tail {
            writeln!(f, "the store is open: records {a}..={b} are not signed yet")?;
        }
        for (at, r) in &self.recoveries {
            writeln!(f, "recovery at {at}: {} ({})", r.cause, r.detail)?;
        }
        Ok(())
    }
}

/// Whether a writer holds the store's lock right now.
pub fn is_live(dir: &Path) -> bool {
    let Ok(file) = OpenOptions::new().read(true).open(dir.join(LOCK_FILE)) else {
        return false;
    };
    matches!(
        file.try_lock_shared(),
        Err(std::fs::TryLockError::WouldBlock)
    )
}

/// Checks the whole store in `dir` on every core. `Err` only for I/O errors;
/// what is wrong with the content is in `Report::problem`.
pub fn verify(dir: &Path, pubkey: Option<&PublicKey>) -> Result<Report> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    verify_with(dir, pubkey, cores)
}

/// How the hashing is spread over threads.
#[derive(Debug, Clone, Copy)]
struct Tuning {
    threads: usize,
    /// Lines read ahead and hashed together: big enough that a thread per
    /// part costs nothing next to hashing it.
    batch_bytes: usize,
    /// Below this many lines a batch is hashed on the calling thread.
    min_parallel_lines: usize,
}

impl Tuning {
    fn threads(threads: usize) -> Self {
        Self {
            threads: threads.max(1),
            batch_bytes: 8 << 20,
            min_parallel_lines: 256,
        }
    }
}

/// A line taken apart, and whether its hash matched.
type Checked<'a> = (Result<Line<'a>, Malformed>, bool);

/// Complete lines of one segment, copied out of the read buffer.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    /// start and end in `bytes`, line number, file offset
    lines: Vec<(usize, usize, u64, u64)>,
}

impl Batch {
    fn push(&mut self, line: &segment::LineAt<'_>) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(line.bytes);
        self.lines
            .push((start, self.bytes.len(), line.number, line.offset));
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.lines.clear();
    }

    /// Each line parsed, and whether its hash matches its canonical bytes,
    /// on up to `tuning.threads`.
    fn hash_checks(&self, tuning: Tuning) -> Vec<Checked<'_>> {
        let check = |part: &[(usize, usize, u64, u64)]| -> Vec<Checked<'_>> {
            part.iter()
                .map(|&(a, b, _, _)| {
                    let line = parse_line(&self.bytes[a..b]);
                    let ok = line.as_ref().is_ok_and(Line::hash_matches);
                    (line, ok)
                })
                .collect()
        };
        if tuning.threads <= 1 || self.lines.len() < tuning.min_parallel_lines {
            return check(&self.lines);
        }
        let per = self.lines.len().div_ceil(tuning.threads);
        std::thread::scope(|scope| {
            let parts: Vec<_> = self
                .lines
                .chunks(per)
                .map(|part| scope.spawn(move || check(part)))
                .collect();
            parts
                .into_iter()
                .flat_map(|h| h.join().expect("a hashing thread panicked"))
                .collect()
        })
    }

    /// Hashes the batch, then walks it in order; false at the first problem
    /// (left in `walk.problem`).
    fn walk(&mut self, walk: &mut Walk, tuning: Tuning, hint: &Option<String>) -> bool {
        let checks = self.hash_checks(tuning);
        for (&(a, b, number, offset), checked) in self.lines.iter().zip(checks) {
            let hint = (number == 1).then(|| hint.clone()).flatten();
            if let Err(p) = walk.step(number, offset, &self.bytes[a..b], hint, checked) {
                walk.problem = Some(p);
                return false;
            }
        }
        self.clear();
        true
    }
}

/// [`verify`] with SHA-256 on at most `threads` threads (1: all on this one).
pub fn verify_with(dir: &Path, pubkey: Option<&PublicKey>, threads: usize) -> Result<Report> {
    verify_tuned(dir, pubkey, Tuning::threads(threads))
}

fn verify_tuned(dir: &Path, pubkey: Option<&PublicKey>, tuning: Tuning) -> Result<Report> {
    let started = Instant::now();
    let live = is_live(dir);
    let segments = segment::list(dir).with_context(|| format!("listing {}", dir.display()))?;
    let mut walk = Walk {
        key: match pubkey {
            Some(k) => KeySource::External(k.clone()),
            None => KeySource::Embedded(None),
        },
        present: segments.iter().map(|s| s.name.clone()).collect(),
        ..Walk::default()
    };
    let mut bytes = 0;
    for (i, seg) in segments.iter().enumerate() {
        let mut file =
            File::open(&seg.path).with_context(|| format!("reading {}", seg.path.display()))?;
        bytes += file.metadata()?.len();
        let hint = match i.checked_sub(1).map(|p| &segments[p]) {
            Some(prev) if prev.number + 1 != seg.number => Some(format!(
                "segments {:08}..{:08} are absent",
                prev.number + 1,
                seg.number - 1
            )),
            _ => None,
        };
        walk.segment = seg.name.clone();
        let mut batch = Batch::default();
        let end = scan_lines(&mut file, 0, 1, |line| {
            batch.push(&line);
            if batch.bytes.len() < tuning.batch_bytes || batch.walk(&mut walk, tuning, &hint) {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            }
        })
        .with_context(|| format!("reading {}", seg.path.display()))?;
        if walk.problem.is_none() {
            batch.walk(&mut walk, tuning, &hint);
        }
        if walk.problem.is_some() {
            break;
        }
        if end.lines > 0 {
            walk.last_segment = seg.name.clone();
        }
        let is_last = i + 1 == segments.len();
        if end.partial > 0 && !(live && is_last) {
            walk.problem = Some(Problem::TornTail {
                segment: seg.name.clone(),
                line: end.lines + 1,
                offset: end.offset,
                bytes: end.partial,
            });
            break;
        }
    }
    if walk.problem.is_none() {
        walk.problem = walk.finish(live);
    }
    Ok(Report {
        segments: segments.len(),
        records: walk.records,
        bytes,
        first_seq: walk.first.as_ref().map(|f| f.1),
        last_seq: walk.last.map(|l| l.seq),
        checkpoints: walk.checkpoints,
        unsigned_tail: walk.unsigned_tail(live),
        retained_from: walk.retention.as_ref().map(|r| r.0 + 1),
        key: walk.key,
        live,
        recoveries: walk.recoveries,
        problem: walk.problem,
        elapsed: started.elapsed(),
    })
}

/// The state of the pass between lines.
#[derive(Default)]
struct Walk {
    key: KeySource,
    present: BTreeSet<String>,
    /// The segment being read.
    segment: String,
    last: Option<Link>,
    /// Segment, line and offset of the last record.
    last_segment: String,
    last_line: (u64, u64),
    last_kind_seal: bool,
    /// The first record read: where, its seq, its prev.
    first: Option<(Location, u64, Hash)>,
    /// The latest retention: last seq removed, hash of that record.
    retention: Option<(u64, String)>,
    removed: BTreeSet<String>,
    /// Segments named by checkpoints, checked once all retention is known.
    named: Vec<(String, Location)>,
    last_signed: Option<u64>,
    checkpoints: u64,
    records: u64,
    recoveries: Vec<(Location, Recovery)>,
    problem: Option<Problem>,
}

impl Default for KeySource {
    fn default() -> Self {
        KeySource::Embedded(None)
    }
}

impl Walk {
    fn location(&self, line: u64, offset: u64, seq: Option<u64>) -> Location {
        Location {
            segment: self.segment.clone(),
            line,
            offset,
            seq,
        }
    }

    fn step(
        &mut self,
        number: u64,
        offset: u64,
        bytes: &[u8],
        hint: Option<String>,
        (parsed, hash_ok): Checked<'_>,
    ) -> Result<(), Problem> {
        let (line, link) = follow_parsed(self.last.as_ref(), parsed, hash_ok).map_err(|why| {
            let seq = crate::audit::chain::parse_line(bytes).ok().map(|l| l.seq);
            Problem::Broken {
                at: self.location(number, offset, seq),
                why,
                hint,
            }
        })?;
        if self.first.is_none() {
            self.first = Some((
                self.location(number, offset, Some(line.seq)),
                line.seq,
                line.prev,
            ));
        }
        if line.sig.is_some() || STORE_KINDS.contains(&line.kind) {
            self.store_line(self.location(number, offset, Some(line.seq)), &line, bytes)?;
        }
        self.last_kind_seal = line.kind == "seal";
        self.last = Some(link);
        self.last_line = (number, offset);
        self.records += 1;
        Ok(())
    }

    /// Checks a line of the store's own: signed, or a record about the store.
    fn store_line(&mut self, at: Location, line: &Line<'_>, bytes: &[u8]) -> Result<(), Problem> {
        let signed_kind = matches!(line.kind, "checkpoint" | "seal");
        if line.sig.is_some() != signed_kind {
            let why = if signed_kind {
                "no signature"
            } else {
                "a signature on a record that is not a checkpoint"
            };
            return Err(Problem::BadCheckpoint {
                at,
                why: why.into(),
            });
        }
        match line.kind {
            "checkpoint" | "seal" => self.checkpoint(&at, line, bytes)?,
            "retention" | "recovery" => self.store_record(&at, bytes)?,
            _ => {}
        }
        Ok(())
    }

    fn checkpoint(&mut self, at: &Location, line: &Line<'_>, bytes: &[u8]) -> Result<(), Problem> {
        let bad = |why: String| Problem::BadCheckpoint {
            at: at.clone(),
            why,
        };
        let cp: Checkpoint = match serde_json::from_slice(bytes) {
            Ok(StoreRecord::Checkpoint(c) | StoreRecord::Seal(c)) => c,
            Ok(_) => return Err(bad("kind and content disagree".into())),
            Err(e) => return Err(bad(format!("unreadable: {e}"))),
        };
        if cp.to_seq + 1 != line.seq {
            return Err(bad(format!(
                "covers up to seq {} but stands after seq {}",
                cp.to_seq,
                line.seq - 1
            )));
        }
        if cp.last_hash != hex(&line.prev) {
            return Err(bad(
                "last_hash is not the hash of the record before it".into()
            ));
        }
        if let Some(prev) = self.last_signed
            && cp.from_seq != prev + 1
        {
            return Err(bad(format!(
                "covers from seq {} but the previous checkpoint is seq {prev}",
                cp.from_seq
            )));
        }
        let claimed = PublicKey::parse(&cp.key).map_err(|e| bad(e.to_string()))?;
        let key = match &mut self.key {
            KeySource::External(k) => k,
            KeySource::Embedded(k) => k.get_or_insert_with(|| claimed.clone()),
        };
        if *key != claimed {
            return Err(bad(format!("signed by {claimed}, not by {key}")));
        }
        let sig = line.sig.expect("checked by the caller");
        if !key.verifies(&line.hash, &sig) {
            return Err(bad("signature does not verify".into()));
        }
        for name in cp.segments {
            self.named.push((name, at.clone()));
        }
        self.last_signed = Some(line.seq);
        self.checkpoints += 1;
        Ok(())
    }

    fn store_record(&mut self, at: &Location, bytes: &[u8]) -> Result<(), Problem> {
        match serde_json::from_slice(bytes) {
            Ok(StoreRecord::Retention(r)) => {
                if self
                    .retention
                    .as_ref()
                    .is_none_or(|(to, _)| r.removed_to_seq > *to)
                {
                    self.retention = Some((r.removed_to_seq, r.removed_last_hash));
                }
                self.removed.extend(r.removed);
            }
            Ok(StoreRecord::Recovery(r)) => self.recoveries.push((at.clone(), r)),
            Ok(_) => {}
            Err(e) => {
                return Err(Problem::BadCheckpoint {
                    at: at.clone(),
                    why: format!("unreadable store record: {e}"),
                });
            }
        }
        Ok(())
    }

    /// The checks that need the whole store: head, named segments, seal.
    fn finish(&self, live: bool) -> Option<Problem> {
        if let Some((first, seq, prev)) = &self.first
            && *seq > 1
        {
            let accounted = self
                .retention
                .as_ref()
                .is_some_and(|(to, hash)| *to + 1 == *seq && *hash == hex(prev));
            if !accounted {
                return Some(Problem::MissingHead {
                    first: first.clone(),
                    missing_to: seq - 1,
                });
            }
        }
        if let Some((name, named_at)) = self
            .named
            .iter()
            .find(|(n, _)| !self.present.contains(n) && !self.removed.contains(n))
        {
            return Some(Problem::MissingSegment {
                name: name.clone(),
                named_at: named_at.clone(),
            });
        }
        if !live && self.last.is_some() && !self.last_kind_seal {
            return Some(Problem::Unsealed {
                last: self.last.map(|l| Location {
                    segment: self.last_segment.clone(),
                    line: self.last_line.0,
                    offset: self.last_line.1,
                    seq: Some(l.seq),
                }),
                last_signed: self.last_signed,
            });
        }
        None
    }

    fn unsigned_tail(&self, live: bool) -> Option<(u64, u64)> {
        let last = self.last?.seq;
        let from = self.last_signed.map_or(self.first.as_ref()?.1, |s| s + 1);
        (live && from <= last).then_some((from, last))
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::PathBuf;
    use std::sync::OnceLock;

    use proptest::prelude::*;

    use super::*;
    use crate::audit::chain::{GENESIS, encode_line, parse_line};
    use crate::audit::checkpoint::{KEY_FILE, SigningKey};
    use crate::audit::sample::{small_config, write_store};
    use crate::audit::segment::Segment;

    /// A pristine store (40 records over several segments), written once and
    /// copied for each tamper.
    fn pristine() -> &'static Path {
        static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
        DIR.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            write_store(dir.path(), 40, small_config());
            dir
        })
        .path()
    }

    fn copy_of_pristine() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for entry in fs::read_dir(pristine()).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
            }
        }
        dir
    }

    fn segs(dir: &Path) -> Vec<PathBuf> {
        segment::list(dir)
            .unwrap()
            .into_iter()
            .map(|s| s.path)
            .collect()
    }

    fn lines(path: &Path) -> Vec<Vec<u8>> {
        fs::read(path)
            .unwrap()
            .split_inclusive(|&b| b == b'\n')
            .map(<[u8]>::to_vec)
            .collect()
    }

    /// Batches of a few lines hashed on three threads: the parallel path
    /// on a store of a few dozen records.
    const TINY_BATCHES: Tuning = Tuning {
        threads: 3,
        batch_bytes: 2000,
        min_parallel_lines: 1,
    };

    /// The problem verify finds, the same on one thread and in parallel.
    fn problem(dir: &Path) -> Problem {
        let report = verify_with(dir, None, 1).unwrap();
        let parallel = verify_tuned(dir, None, TINY_BATCHES).unwrap();
        assert_eq!(report.problem, parallel.problem, "one thread vs parallel");
        match report.problem.clone() {
            Some(p) => p,
            None => panic!("tamper not detected:\n{report}"),
        }
    }

    #[test]
    fn parallel_hashing_agrees_with_one_thread_on_a_large_store() {
        let dir = tempfile::tempdir().unwrap();
        write_store(dir.path(), 3000, crate::audit::StoreConfig::default());
        let one = verify_with(dir.path(), None, 1).unwrap();
        assert!(one.ok(), "{one}");
        for tuning in [Tuning::threads(4), TINY_BATCHES] {
            let par = verify_tuned(dir.path(), None, tuning).unwrap();
            assert!(par.ok(), "{par}");
            assert_eq!(
                (par.records, par.checkpoints),
                (one.records, one.checkpoints)
            );
        }
        // a changed byte deep inside a batch is named the same way
        let seg = &segs(dir.path())[0];
        let mut ls = lines(seg);
        let pos = ls[2500].iter().position(|&b| b == b'"').unwrap() + 20;
        ls[2500][pos] ^= 1;
        fs::write(seg, ls.concat()).unwrap();
        let p = problem(dir.path());
        assert_eq!(p.at().unwrap().line, 2501, "{p}");
        let par = verify_with(dir.path(), None, 4).unwrap().problem;
        assert_eq!(par.as_ref(), Some(&p));
    }

    fn pubkey(dir: &Path) -> PublicKey {
        SigningKey::load_or_create(&dir.join(KEY_FILE))
            .unwrap()
            .public_key()
            .clone()
    }

    /// A forger keeps checkpoints consistent with the re-hashed chain.
    fn with_last_hash(body: &str, prev: &crate::audit::chain::Hash) -> String {
        match body.find("\"last_hash\":\"") {
            Some(i) => {
                let at = i + "\"last_hash\":\"".len();
                format!(
                    "{}{}{}",
                    &body[..at],
                    crate::audit::chain::hex(prev),
                    &body[at + 64..]
                )
            }
            None => body.to_string(),
        }
    }

    /// Re-hashes every line of a segment after `edit`, as a forger without
    /// the key would: the chain is made whole again, signatures are kept.
    fn forge(path: &Path, prev: crate::audit::chain::Hash, edit: impl Fn(usize, &str) -> String) {
        let mut prev = prev;
        let mut out = Vec::new();
        for (i, line) in lines(path).iter().enumerate() {
            let text = std::str::from_utf8(&line[..line.len() - 1]).unwrap();
            let parsed = parse_line(text.as_bytes()).unwrap();
            let body_start = text.find(",\"kind\":").unwrap() + 1;
            let body_end = text.rfind(",\"hash\":\"").unwrap();
            let body = with_last_hash(
                &edit(i, &format!("{{{}}}", &text[body_start..body_end])),
                &prev,
            );
            let sig = parsed.sig;
            prev = encode_line(
                &mut out,
                parsed.seq,
                &prev,
                parsed.ts,
                body.as_bytes(),
                sig.map(|s| move |_: &_| s)
                    .as_ref()
                    .map(|f| f as &dyn Fn(&_) -> _),
            );
        }
        fs::write(path, out).unwrap();
    }

    #[test]
    fn an_untouched_store_verifies_with_and_without_the_key() {
        let dir = copy_of_pristine();
        let report = verify(dir.path(), None).unwrap();
        assert!(report.ok(), "{report}");
        assert!(report.segments >= 3, "{report}");
        assert!(report.checkpoints >= 10);
        assert_eq!(report.first_seq, Some(1));
        assert_eq!(report.records, report.last_seq.unwrap());
        assert!(!report.live);
        let key = pubkey(dir.path());
        let report = verify(dir.path(), Some(&key)).unwrap();
        assert!(report.ok(), "{report}");
        assert_eq!(report.key, KeySource::External(key));
    }

    #[test]
    fn another_key_is_refused() {
        let dir = copy_of_pristine();
        let other = tempfile::tempdir().unwrap();
        let p = verify(dir.path(), Some(&pubkey(other.path())))
            .unwrap()
            .problem
            .unwrap();
        assert!(
            matches!(p, Problem::BadCheckpoint { ref why, .. } if why.contains("signed by")),
            "{p}"
        );
    }

    #[test]
    fn a_changed_byte_is_named_by_segment_line_and_seq() {
        let dir = copy_of_pristine();
        let seg = &segs(dir.path())[1];
        let mut ls = lines(seg);
        let pos = ls[2].iter().position(|&b| b == b'"').unwrap() + 20;
        ls[2][pos] ^= 1;
        fs::write(seg, ls.concat()).unwrap();
        let p = problem(dir.path());
        let at = p.at().unwrap();
        assert_eq!((at.segment.as_str(), at.line), ("00000002.seg", 3), "{p}");
        assert!(
            matches!(p, Problem::Broken { .. } | Problem::BadCheckpoint { .. }),
            "{p}"
        );
        assert!(p.to_string().starts_with("00000002.seg line 3"), "{p}");
    }

    #[test]
    fn a_deleted_record_is_named_as_a_missing_range() {
        let dir = copy_of_pristine();
        let seg = &segs(dir.path())[0];
        let mut ls = lines(seg);
        let seq = parse_line(&ls[3][..ls[3].len() - 1]).unwrap().seq;
        ls.remove(3);
        fs::write(seg, ls.concat()).unwrap();
        let p = problem(dir.path());
        assert_eq!(
            p,
            Problem::Broken {
                at: Location {
                    segment: "00000001.seg".into(),
                    line: 4,
                    offset: p.at().unwrap().offset,
                    seq: Some(seq + 1)
                },
                why: Break::Gap {
                    expected: seq,
                    found: seq + 1
                },
                hint: None,
            }
        );
        assert!(
            p.to_string()
                .contains(&format!("records {seq}..={seq} are missing")),
            "{p}"
        );
    }

    #[test]
    fn a_reordered_pair_is_detected() {
        let dir = copy_of_pristine();
        let seg = &segs(dir.path())[1];
        let mut ls = lines(seg);
        ls.swap(1, 2);
        fs::write(seg, ls.concat()).unwrap();
        let p = problem(dir.path());
        assert!(
            matches!(p, Problem::Broken { why: Break::Gap { .. }, ref at, .. } if at.line == 2),
            "{p}"
        );
    }

    #[test]
    fn truncation_mid_line_and_at_a_line_end_is_detected() {
        let dir = copy_of_pristine();
        let last = segs(dir.path()).pop().unwrap();
        let len = fs::metadata(&last).unwrap().len();
        fs::OpenOptions::new()
            .write(true)
            .open(&last)
            .unwrap()
            .set_len(len - 10)
            .unwrap();
        assert!(matches!(problem(dir.path()), Problem::TornTail { .. }));

        let dir = copy_of_pristine();
        let last = segs(dir.path()).pop().unwrap();
        let mut ls = lines(&last);
        ls.truncate(ls.len() - 2);
        fs::write(&last, ls.concat()).unwrap();
        let p = problem(dir.path());
        assert!(matches!(p, Problem::Unsealed { .. }), "{p}");
        assert!(p.to_string().contains("not sealed"), "{p}");
    }

    #[test]
    fn a_deleted_middle_segment_is_named() {
        let dir = copy_of_pristine();
        fs::remove_file(&segs(dir.path())[1]).unwrap();
        let p = problem(dir.path());
        assert!(
            matches!(p, Problem::Broken { why: Break::Gap { .. }, ref at, .. } if at.segment == "00000003.seg" && at.line == 1),
            "{p}"
        );
        assert!(
            p.to_string()
                .contains("segments 00000002..00000002 are absent"),
            "{p}"
        );
    }

    #[test]
    fn a_deleted_first_or_last_segment_is_detected() {
        let dir = copy_of_pristine();
        fs::remove_file(&segs(dir.path())[0]).unwrap();
        assert!(matches!(problem(dir.path()), Problem::MissingHead { .. }));

        let dir = copy_of_pristine();
        fs::remove_file(segs(dir.path()).pop().unwrap()).unwrap();
        assert!(matches!(problem(dir.path()), Problem::Unsealed { .. }));
    }

    #[test]
    fn a_replaced_segment_is_detected_even_with_a_consistent_chain() {
        // Re-hashed after an edit: the chain inside is whole, the signature is not.
        let dir = copy_of_pristine();
        let all = segs(dir.path());
        let prev_last = lines(&all[0]).pop().unwrap();
        let prev = parse_line(&prev_last[..prev_last.len() - 1]).unwrap().hash;
        forge(&all[1], prev, |i, body| {
            if i == 0 {
                body.replace("\"session\":\"s", "\"session\":\"x")
            } else {
                body.to_string()
            }
        });
        let p = problem(dir.path());
        assert!(
            matches!(p, Problem::BadCheckpoint { ref why, .. } if why.contains("signature")),
            "{p}"
        );

        // Taken from another store written the same way.
        let dir = copy_of_pristine();
        let other = tempfile::tempdir().unwrap();
        write_store(other.path(), 40, small_config());
        fs::copy(&segs(other.path())[1], &segs(dir.path())[1]).unwrap();
        let p = problem(dir.path());
        assert!(
            matches!(p, Problem::Broken { why: Break::PrevMismatch, ref at, .. } if at.segment == "00000002.seg"),
            "{p}"
        );
    }

    #[test]
    fn a_store_rewritten_with_another_key_fails_against_the_kept_key() {
        let dir = copy_of_pristine();
        let kept = pubkey(dir.path());
        let forger = SigningKey::load_or_create(&dir.path().join("forger.key")).unwrap();
        let mut prev = GENESIS;
        for seg in segs(dir.path()) {
            let mut out = Vec::new();
            for line in lines(&seg) {
                let text = std::str::from_utf8(&line[..line.len() - 1]).unwrap();
                let parsed = parse_line(text.as_bytes()).unwrap();
                let body_start = text.find(",\"kind\":").unwrap() + 1;
                let body_end = text.rfind(",\"hash\":\"").unwrap();
                let body = with_last_hash(&format!("{{{}}}", &text[body_start..body_end]), &prev)
                    .replace(&kept.to_string(), &forger.public_key().to_string());
                let sign = |h: &_| forger.sign(h);
                let signer: Option<&dyn Fn(&_) -> _> = parsed.sig.map(|_| &sign as _);
                prev = encode_line(
                    &mut out,
                    parsed.seq,
                    &prev,
                    parsed.ts,
                    body.as_bytes(),
                    signer,
                );
            }
            fs::write(&seg, out).unwrap();
        }
        let report = verify(dir.path(), None).unwrap();
        assert!(
            report.ok(),
            "consistent forgery passes without a kept key:\n{report}"
        );
        let p = verify(dir.path(), Some(&kept)).unwrap().problem.unwrap();
        assert!(matches!(p, Problem::BadCheckpoint { .. }), "{p}");
    }

    #[test]
    fn an_empty_or_absent_store_verifies() {
        let dir = tempfile::tempdir().unwrap();
        assert!(verify(&dir.path().join("none"), None).unwrap().ok());
        fs::write(Segment::new(dir.path(), 1).path, b"").unwrap();
        assert!(verify(dir.path(), None).unwrap().ok());
    }

    #[derive(Debug, Clone)]
    enum Tamper {
        Flip {
            seg: prop::sample::Index,
            pos: prop::sample::Index,
            xor: u8,
        },
        DeleteLine {
            seg: prop::sample::Index,
            line: prop::sample::Index,
        },
        SwapLines {
            seg: prop::sample::Index,
            line: prop::sample::Index,
        },
        Truncate {
            seg: prop::sample::Index,
            keep: prop::sample::Index,
        },
        DeleteSegment {
            seg: prop::sample::Index,
        },
        ReplaceSegment {
            seg: prop::sample::Index,
            line: prop::sample::Index,
        },
    }

    fn tamper() -> impl Strategy<Value = Tamper> {
        use prop::sample::Index;
        prop_oneof![
            4 => (any::<Index>(), any::<Index>(), 1u8..=255).prop_map(|(seg, pos, xor)| Tamper::Flip { seg, pos, xor }),
            1 => (any::<Index>(), any::<Index>()).prop_map(|(seg, line)| Tamper::DeleteLine { seg, line }),
            1 => (any::<Index>(), any::<Index>()).prop_map(|(seg, line)| Tamper::SwapLines { seg, line }),
            1 => (any::<Index>(), any::<Index>()).prop_map(|(seg, keep)| Tamper::Truncate { seg, keep }),
            1 => any::<Index>().prop_map(|seg| Tamper::DeleteSegment { seg }),
            1 => (any::<Index>(), any::<Index>()).prop_map(|(seg, line)| Tamper::ReplaceSegment { seg, line }),
        ]
    }

    /// Applies the tamper; returns the (segment, line) a flip must be named at.
    fn apply(dir: &Path, t: &Tamper) -> Option<(String, u64)> {
        let all = segs(dir);
        let name = |p: &PathBuf| p.file_name().unwrap().to_str().unwrap().to_string();
        match t {
            Tamper::Flip { seg, pos, xor } => {
                let path = seg.get(&all);
                let mut bytes = fs::read(path).unwrap();
                let at = pos.index(bytes.len());
                bytes[at] ^= xor;
                fs::write(path, &bytes).unwrap();
                let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() as u64 + 1;
                Some((name(path), line))
            }
            Tamper::DeleteLine { seg, line } | Tamper::SwapLines { seg, line } => {
                let path = seg.get(&all);
                let mut ls = lines(path);
                let i = line.index(ls.len());
                if matches!(t, Tamper::DeleteLine { .. }) {
                    ls.remove(i);
                } else if i + 1 < ls.len() {
                    ls.swap(i, i + 1);
                } else {
                    ls.swap(i - 1, i);
                }
                fs::write(path, ls.concat()).unwrap();
                None
            }
            Tamper::Truncate { seg, keep } => {
                let path = seg.get(&all);
                let len = fs::metadata(path).unwrap().len() as usize;
                let f = fs::OpenOptions::new().write(true).open(path).unwrap();
                f.set_len(keep.index(len) as u64).unwrap();
                None
            }
            Tamper::DeleteSegment { seg } => {
                fs::remove_file(seg.get(&all)).unwrap();
                None
            }
            Tamper::ReplaceSegment { seg, line } => {
                let i = seg.index(all.len());
                let prev = match i {
                    0 => GENESIS,
                    _ => {
                        let l = lines(&all[i - 1]).pop().unwrap();
                        parse_line(&l[..l.len() - 1]).unwrap().hash
                    }
                };
                let n = lines(&all[i]).len();
                let target = line.index(n);
                forge(&all[i], prev, |j, body| {
                    if j == target {
                        body.replacen("\"kind\":\"", "\"kind\":\"x", 1)
                    } else {
                        body.to_string()
                    }
                });
                None
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn every_tamper_is_detected_and_located(t in tamper()) {
            let dir = copy_of_pristine();
            let expect_at = apply(dir.path(), &t);
            let report = verify(dir.path(), None).unwrap();
            let p = report.problem.clone();
            prop_assert_eq!(&p, &verify_tuned(dir.path(), None, TINY_BATCHES).unwrap().problem);
            prop_assert!(p.is_some(), "{:?} not detected:\n{}", t, report);
            let p = p.unwrap();
            if let Some((segment, line)) = expect_at {
                match &p {
                    Problem::TornTail { segment: s, line: l, .. } => prop_assert_eq!((s, *l), (&segment, line)),
                    other => {
                        let at = other.at().unwrap();
                        prop_assert_eq!((&at.segment, at.line), (&segment, line), "{}", other);
                    }
                }
            }
        }
    }
}
