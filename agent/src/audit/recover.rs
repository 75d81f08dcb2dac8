//! Crash safety at open: finds where the chain ends in the live segment,
//! cuts a torn tail (an incomplete last line, or lines that do not continue
//! the chain) and says what the writer must record about it.
//!
//! Only bytes after the last intact record are cut, and they are kept in
//! `quarantine/` rather than destroyed: after a crash they are at most the
//! unsynced part of the last batch (never an acknowledged record), and if
//! they are anything else an investigator still has them.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::ControlFlow;
use std::path::Path;

use anyhow::{Context, Result};
use aws_lc_rs::digest;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::chain::{Break, Link, follow, hex};
use super::record::Recovery;
use super::segment::{self, Segment, scan_lines};
use super::store::ChainState;

pub const QUARANTINE_DIR: &str = "quarantine";

/// Where the writer resumes.
pub(super) struct Tail {
    pub chain: ChainState,
    pub live: Segment,
    /// Length of the intact part of `live`, where appending resumes.
    pub live_len: u64,
    /// Time of the live segment's first record (now if it has none).
    pub live_started: OffsetDateTime,
    /// To be recorded before anything else: a cut, or an unsealed store.
    pub recovery: Option<Recovery>,
}

/// What reading one segment found.
struct SegmentEnd {
    head: Option<Link>,
    last_kind: Option<String>,
    first_ts: Option<String>,
    first_seq: Option<u64>,
    /// Seq of the last checkpoint or seal, and the records after it.
    last_checkpoint: Option<u64>,
    uncovered: u64,
    /// Offset just past the last intact record.
    intact_len: u64,
    /// Why the rest (if any) is not intact.
    first_bad: Option<String>,
    file_len: u64,
}

pub(super) fn open_tail(dir: &Path) -> Result<Tail> {
    let segments = segment::list(dir)?;
    let Some(live) = segments.last().cloned() else {
        return Ok(Tail {
            chain: ChainState {
                head: None,
                sealed: false,
                checkpoint_from: 1,
                uncovered: 0,
            },
            live: Segment::new(dir, 1),
            live_len: 0,
            live_started: OffsetDateTime::now_utc(),
            recovery: None,
        });
    };
    let end = read_segment(&live.path)?;
    let mut recovery = None;
    if end.intact_len < end.file_len {
        recovery = Some(cut_tail(dir, &live, &end)?);
    }
    // The live segment's age counts from its first record.
    let live_started = end
        .head
        .and(end.first_ts.as_deref())
        .and_then(|ts| OffsetDateTime::parse(ts, &Rfc3339).ok())
        .unwrap_or_else(OffsetDateTime::now_utc);
    // A live segment with no intact record continues the previous one.
    let chain_end = match (&end.head, segments.len()) {
        (None, n) if n >= 2 => read_segment(&segments[n - 2].path)?,
        _ => end,
    };
    let head = chain_end.head;
    let sealed = chain_end.last_kind.as_deref() == Some("seal");
    if recovery.is_none() && head.is_some() && !sealed {
        recovery = Some(Recovery {
            cause: "unclean_shutdown".into(),
            detail: "the store was not sealed: the agent stopped without closing it".into(),
            last_seq: head.map(|h| h.seq),
            ..Recovery::default()
        });
    }
    let checkpoint_from = match chain_end.last_checkpoint {
        Some(seq) => seq + 1,
        None => chain_end.first_seq.unwrap_or(1),
    };
    let live_len = fs::metadata(&live.path)?.len();
    Ok(Tail {
        chain: ChainState {
            head,
            sealed,
            checkpoint_from,
            uncovered: chain_end.uncovered,
        },
        live,
        live_len,
        live_started,
        recovery,
    })
}

fn read_segment(path: &Path) -> Result<SegmentEnd> {
    let mut file = File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let file_len = file.metadata()?.len();
    let mut end = SegmentEnd {
        head: None,
        last_kind: None,
        first_ts: None,
        first_seq: None,
        last_checkpoint: None,
        uncovered: 0,
        intact_len: 0,
        first_bad: None,
        file_len,
    };
    let scan = scan_lines(&mut file, 0, 1, |line| {
        match follow(end.head.as_ref(), line.bytes) {
            Ok((parsed, link)) => {
                end.first_ts.get_or_insert_with(|| parsed.ts.to_string());
                end.first_seq.get_or_insert(parsed.seq);
                if matches!(parsed.kind, "checkpoint" | "seal") {
                    end.last_checkpoint = Some(parsed.seq);
                    end.uncovered = 0;
                } else {
                    end.uncovered += 1;
                }
                end.last_kind = Some(parsed.kind.to_string());
                end.head = Some(link);
                end.intact_len = line.offset + line.bytes.len() as u64 + 1;
                ControlFlow::Continue(())
            }
            Err(why) => {
                end.first_bad = Some(format!("line {}: {}", line.number, describe(&why)));
                ControlFlow::Break(())
            }
        }
    })
    .with_context(|| format!("reading {}", path.display()))?;
    if end.first_bad.is_none() && scan.partial > 0 {
        end.first_bad = Some(format!(
            "line {}: incomplete ({} bytes without a newline)",
            scan.lines + 1,
            scan.partial
        ));
    }
    Ok(end)
}

fn describe(why: &Break) -> String {
    match why {
        Break::Malformed(m) => format!("malformed ({m})"),
        Break::HashMismatch => "hash does not match its content".into(),
        Break::Gap { expected, found } => format!("seq {found} where {expected} was expected"),
        Break::Backwards { expected, found } => {
            format!("seq {found} where {expected} was expected")
        }
        Break::PrevMismatch => "prev is not the hash of the record before".into(),
    }
}

/// Moves the bytes after the intact part of `live` to quarantine/ and
/// truncates the segment there.
fn cut_tail(dir: &Path, live: &Segment, end: &SegmentEnd) -> Result<Recovery> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&live.path)
        .with_context(|| format!("opening {}", live.path.display()))?;
    let mut cut = Vec::new();
    file.seek(SeekFrom::Start(end.intact_len))?;
    file.read_to_end(&mut cut)?;
    let qdir = dir.join(QUARANTINE_DIR);
    fs::create_dir_all(&qdir)?;
    let stamp = OffsetDateTime::now_utc().unix_timestamp_nanos();
    let qname = format!("{}.{}.{stamp}.cut", live.name, end.intact_len);
    let mut qfile = File::create(qdir.join(&qname))?;
    qfile.write_all(&cut)?;
    qfile.sync_all()?;
    segment::sync_dir(&qdir)?;
    file.set_len(end.intact_len)?;
    file.sync_all()?;
    Ok(Recovery {
        cause: "torn_tail".into(),
        detail: end.first_bad.clone().unwrap_or_default(),
        last_seq: end.head.map(|h| h.seq),
        segment: Some(live.name.clone()),
        cut_offset: Some(end.intact_len),
        cut_bytes: Some(cut.len() as u64),
        cut_sha256: Some(hex(digest::digest(&digest::SHA256, &cut).as_ref())),
        quarantine: Some(format!("{QUARANTINE_DIR}/{qname}")),
        ..Recovery::default()
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::audit::sample::{read_all, record, small_config, write_store};
    use crate::audit::verify::verify;
    use crate::audit::{AuditLog, StoreConfig};

    fn live_segment(dir: &Path) -> Segment {
        segment::list(dir).unwrap().pop().unwrap()
    }

    fn append_raw(path: &Path, bytes: &[u8]) {
        OpenOptions::new()
            .append(true)
            .open(path)
            .unwrap()
            .write_all(bytes)
            .unwrap();
    }

    fn reopen_and_close(dir: &Path) {
        let (log, writer) = AuditLog::open_with(dir, small_config()).unwrap();
        drop(log);
        writer.finish();
    }

    fn recoveries(dir: &Path) -> Vec<serde_json::Value> {
        read_all(dir)
            .into_iter()
            .filter(|r| r["kind"] == "recovery")
            .collect()
    }

    #[test]
    fn a_partial_last_line_is_cut_kept_in_quarantine_and_recorded() {
        let dir = tempfile::tempdir().unwrap();
        write_store(dir.path(), 10, small_config());
        let seg = live_segment(dir.path());
        let torn = br#"{"seq":99,"prev":"00"#;
        append_raw(&seg.path, torn);
        reopen_and_close(dir.path());

        let rec = recoveries(dir.path());
        assert_eq!(rec.len(), 1, "{rec:?}");
        assert_eq!(rec[0]["cause"], "torn_tail");
        assert_eq!(rec[0]["cut_bytes"], torn.len());
        assert_eq!(rec[0]["segment"], seg.name.as_str());
        let q = dir.path().join(rec[0]["quarantine"].as_str().unwrap());
        assert_eq!(fs::read(q).unwrap(), torn);
        let report = verify(dir.path(), None).unwrap();
        assert!(report.ok(), "{report}");
        assert_eq!(report.recoveries.len(), 1);
    }

    #[test]
    fn complete_lines_that_do_not_verify_at_the_end_are_cut() {
        let dir = tempfile::tempdir().unwrap();
        write_store(dir.path(), 10, small_config());
        let seg = live_segment(dir.path());
        // What a power loss can leave: a zero-filled block, then a stray line.
        append_raw(&seg.path, &[0u8; 100]);
        append_raw(&seg.path, b"\n{\"seq\":1}\n");
        reopen_and_close(dir.path());
        let rec = recoveries(dir.path());
        assert_eq!(rec[0]["cause"], "torn_tail");
        assert_eq!(rec[0]["cut_bytes"], 111);
        assert!(verify(dir.path(), None).unwrap().ok());
    }

    #[test]
    fn acknowledged_records_survive_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (log, writer) = AuditLog::open_with(dir.path(), small_config()).unwrap();
        let acks: Vec<u64> = (0..6)
            .map(|i| log.record_durable(record(i)).wait().unwrap().seq)
            .collect();
        drop(log);
        writer.finish();
        append_raw(&live_segment(dir.path()).path, b"{\"seq\":");
        reopen_and_close(dir.path());
        let seqs: Vec<u64> = read_all(dir.path())
            .iter()
            .map(|r| r["seq"].as_u64().unwrap())
            .collect();
        for seq in acks {
            assert!(seqs.contains(&seq));
        }
        assert!(verify(dir.path(), None).unwrap().ok());
    }

    #[test]
    fn a_store_left_unsealed_is_recorded_as_an_unclean_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        write_store(dir.path(), 10, small_config());
        // Drop the seal, as a kill -9 after the last batch would have.
        let seg = live_segment(dir.path());
        let text = fs::read_to_string(&seg.path).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        assert!(lines.pop().unwrap().contains("\"kind\":\"seal\""));
        let last_seq = parse_seq(lines.last().unwrap());
        fs::write(
            &seg.path,
            lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
        )
        .unwrap();
        assert!(
            !verify(dir.path(), None).unwrap().ok(),
            "an unsealed closed store fails"
        );

        reopen_and_close(dir.path());
        let rec = recoveries(dir.path());
        assert_eq!(rec[0]["cause"], "unclean_shutdown");
        assert_eq!(rec[0]["last_seq"], last_seq);
        let report = verify(dir.path(), None).unwrap();
        assert!(report.ok(), "{report}");
    }

    fn parse_seq(line: &str) -> u64 {
        serde_json::from_str::<serde_json::Value>(line).unwrap()["seq"]
            .as_u64()
            .unwrap()
    }

    #[test]
    fn an_empty_live_segment_continues_the_previous_chain() {
        let dir = tempfile::tempdir().unwrap();
        write_store(dir.path(), 20, small_config());
        let next = Segment::new(dir.path(), live_segment(dir.path()).number + 1);
        fs::write(&next.path, b"{\"torn").unwrap();
        write_store(dir.path(), 5, StoreConfig { ..small_config() });
        let report = verify(dir.path(), None).unwrap();
        assert!(report.ok(), "{report}");
    }
}
