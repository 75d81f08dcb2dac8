//! `audit export`: records as JSON lines, exactly as stored (hash and all,
//! so that a SIEM can re-check them), filtered, optionally following the
//! store as it grows.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::chain::{format_ts, parse_line};
use super::record::{RecordView, STORE_KINDS};
use super::segment::{self, Segment, scan_lines};

/// Which records to write; the default lets every traffic record through.
#[derive(Debug, Clone, Default)]
pub struct ExportFilter {
    /// Also the store's own records (checkpoint, seal, retention, recovery),
    /// for a receiver that re-checks the chain and signatures.
    pub store_records: bool,
    /// Records at or after this time (store `ts` form, see [`parse_time`]).
    pub since: Option<String>,
    /// Records before this time.
    pub until: Option<String>,
    /// `identity.user` (or `uid N`).
    pub user: Option<String>,
    pub endpoint: Option<String>,
    pub tool: Option<String>,
    pub session: Option<String>,
}

/// An RFC 3339 time (any offset, any precision) in the store's `ts` form,
/// which compares as text in time order.
pub fn parse_time(rfc3339: &str) -> Result<String> {
    let t = OffsetDateTime::parse(rfc3339.trim(), &Rfc3339).with_context(|| {
        format!("{rfc3339:?} is not an RFC 3339 time (e.g. 2026-01-31T00:00:00Z)")
    })?;
    Ok(format_ts(t))
}

impl ExportFilter {
    fn needs_content(&self) -> bool {
        self.user.is_some()
            || self.endpoint.is_some()
            || self.tool.is_some()
            || self.session.is_some()
    }

    /// Whether the record line `bytes` passes. Time is read from the line's
    /// fixed prefix; the JSON is parsed only when a content filter is set.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        let Ok(line) = parse_line(bytes) else {
            return false;
        };
        if !self.store_records && STORE_KINDS.contains(&line.kind) {
            return false;
        }
        if self.since.as_deref().is_some_and(|s| line.ts < s)
            || self.until.as_deref().is_some_and(|u| line.ts >= u)
        {
            return false;
        }
        if !self.needs_content() {
            return true;
        }
        let Some(view) = RecordView::parse(bytes) else {
            return false;
        };
        let want = |filter: &Option<String>, value: Option<&str>| {
            filter.as_deref().is_none_or(|f| value == Some(f))
        };
        want(&self.user, view.user().as_deref())
            && want(&self.endpoint, view.endpoint.as_deref())
            && want(&self.tool, view.tool.as_deref())
            && want(&self.session, view.session.as_deref())
    }
}

/// How `--follow` waits for new records.
pub struct Follow<'a> {
    /// Time between looks at the live segment.
    pub poll: Duration,
    /// Set to end the export (e.g. by a signal handler).
    pub stop: &'a AtomicBool,
}

/// Writes the records passing `filter`, oldest first, one per line; with
/// `follow`, then keeps writing new ones until `follow.stop` is set.
/// Returns how many were written.
pub fn write_records(
    dir: &Path,
    filter: &ExportFilter,
    out: &mut dyn Write,
    follow: Option<Follow<'_>>,
) -> Result<u64> {
    let mut written = 0;
    let mut cursor: Option<Cursor> = None;
    loop {
        // Finish the segment being read, then take every newer one.
        let current = cursor.as_ref().map(|c| c.segment.number);
        let newer = segment::list(dir)?
            .into_iter()
            .filter(|s| current.is_none_or(|n| s.number > n));
        if let Some(c) = &mut cursor {
            written += c.drain(filter, &mut write_line(out))?;
        }
        let mut moved = false;
        for seg in newer {
            let mut c = Cursor::open(seg)?;
            written += c.drain(filter, &mut write_line(out))?;
            cursor = Some(c);
            moved = true;
        }
        out.flush()?;
        let Some(follow) = &follow else {
            return Ok(written);
        };
        if follow.stop.load(Ordering::Relaxed) {
            return Ok(written);
        }
        if !moved {
            thread::sleep(follow.poll);
        }
    }
}

/// Hands each record line passing `filter` (without its newline) to
/// `visit`, oldest first, and returns how many; for readers that summarise
/// records instead of copying them (`audit report`).
pub fn visit_records(
    dir: &Path,
    filter: &ExportFilter,
    visit: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> Result<u64> {
    let mut seen = 0;
    for seg in segment::list(dir)? {
        seen += Cursor::open(seg)?.drain(filter, visit)?;
    }
    Ok(seen)
}

/// Writes the records of `segments` passing `filter` and `keep`; for
/// readers that know where to look (the sessions index).
pub(super) fn write_segments(
    segments: Vec<Segment>,
    filter: &ExportFilter,
    keep: &dyn Fn(&[u8]) -> bool,
    out: &mut dyn Write,
) -> Result<u64> {
    let mut written = 0;
    {
        let mut copy = write_line(out);
        for seg in segments {
            Cursor::open(seg)?.drain(filter, &mut |line| {
                if !keep(line) {
                    return Ok(());
                }
                written += 1;
                copy(line)
            })?;
        }
    }
    out.flush()?;
    Ok(written)
}

/// A visitor that copies each line to `out`, newline-terminated.
fn write_line(out: &mut dyn Write) -> impl FnMut(&[u8]) -> io::Result<()> + '_ {
    |bytes| out.write_all(bytes).and_then(|()| out.write_all(b"\n"))
}

/// How far a segment has been read: only complete lines are consumed.
struct Cursor {
    segment: Segment,
    file: File,
    offset: u64,
    next_line: u64,
}

impl Cursor {
    fn open(segment: Segment) -> Result<Self> {
        let file = File::open(&segment.path)
            .with_context(|| format!("reading {}", segment.path.display()))?;
        Ok(Self {
            segment,
            file,
            offset: 0,
            next_line: 1,
        })
    }

    /// Hands every new complete line passing `filter` to `visit`.
    fn drain(
        &mut self,
        filter: &ExportFilter,
        visit: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> Result<u64> {
        self.file.seek(SeekFrom::Start(self.offset))?;
        let mut passed = 0;
        let mut failed = None;
        let end = scan_lines(&mut self.file, self.offset, self.next_line, |line| {
            if filter.matches(line.bytes) {
                if let Err(e) = visit(line.bytes) {
                    failed = Some(e);
                    return ControlFlow::Break(());
                }
                passed += 1;
            }
            ControlFlow::Continue(())
        })
        .with_context(|| format!("reading {}", self.segment.path.display()))?;
        if let Some(e) = failed {
            return Err(e.into());
        }
        self.offset = end.offset;
        self.next_line += end.lines;
        Ok(passed)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::audit::sample::{record, small_config, write_store};
    use crate::audit::{AuditLog, StoreConfig};

    fn export(dir: &Path, filter: &ExportFilter) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        write_records(dir, filter, &mut out, None).unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn filters_select_by_user_endpoint_tool_and_session() {
        let dir = tempfile::tempdir().unwrap();
        write_store(dir.path(), 30, small_config());
        let everything = ExportFilter {
            store_records: true,
            ..Default::default()
        };
        let all = export(dir.path(), &everything);
        assert_eq!(
            all.len() as u64,
            all.last().unwrap()["seq"].as_u64().unwrap(),
            "everything, in order"
        );
        let traffic = export(dir.path(), &ExportFilter::default());
        assert_eq!(
            traffic.len(),
            30,
            "checkpoints and the seal are left out by default"
        );

        let bob = export(
            dir.path(),
            &ExportFilter {
                user: Some("bob".into()),
                ..Default::default()
            },
        );
        assert_eq!(bob.len(), 10);
        assert!(bob.iter().all(|r| r["identity"]["user"] == "bob"));

        let billing_calls = export(
            dir.path(),
            &ExportFilter {
                endpoint: Some("billing".into()),
                tool: Some("get_patient".into()),
                ..Default::default()
            },
        );
        assert!(!billing_calls.is_empty());
        assert!(
            billing_calls
                .iter()
                .all(|r| r["endpoint"] == "billing" && r["tool"] == "get_patient")
        );

        let s1 = export(
            dir.path(),
            &ExportFilter {
                session: Some("s1".into()),
                ..Default::default()
            },
        );
        assert_eq!(s1.len(), 10);
    }

    #[test]
    fn since_and_until_bound_the_time() {
        let dir = tempfile::tempdir().unwrap();
        write_store(dir.path(), 10, small_config());
        let all = export(
            dir.path(),
            &ExportFilter {
                store_records: true,
                ..Default::default()
            },
        );
        let t = |i: usize| all[i]["ts"].as_str().unwrap().to_string();
        let filter = ExportFilter {
            since: Some(t(3)),
            until: Some(t(7)),
            ..Default::default()
        };
        let seqs: Vec<u64> = export(dir.path(), &filter)
            .iter()
            .map(|r| r["seq"].as_u64().unwrap())
            .collect();
        assert!(
            seqs.iter().all(|&s| (4..=7).contains(&s)) && seqs.contains(&4),
            "{seqs:?}"
        );
        // Any RFC 3339 spelling works.
        assert_eq!(
            parse_time("2026-01-01T02:00:00+02:00").unwrap(),
            "2026-01-01T00:00:00.000000000Z"
        );
        assert!(parse_time("yesterday").is_err());
    }

    /// A Write that collects lines into a shared buffer.
    #[derive(Clone, Default)]
    struct Shared(Arc<std::sync::Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn follow_streams_new_records_across_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let (log, writer) = AuditLog::open_with(
            dir.path(),
            StoreConfig {
                segment_max_bytes: 2000,
                ..small_config()
            },
        )
        .unwrap();
        log.record_durable(record(0)).wait().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let out = Shared::default();
        let reader = {
            let (dir, stop, mut out) = (dir.path().to_path_buf(), stop.clone(), out.clone());
            let filter = ExportFilter {
                user: Some("bob".into()),
                ..Default::default()
            };
            thread::spawn(move || {
                let follow = Follow {
                    poll: Duration::from_millis(5),
                    stop: &stop,
                };
                write_records(&dir, &filter, &mut out, Some(follow)).unwrap()
            })
        };
        for i in 1..30 {
            log.record_durable(record(i)).wait().unwrap();
        }
        let lines = || {
            out.0
                .lock()
                .unwrap()
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .count()
        };
        for _ in 0..200 {
            if lines() == 10 {
                break;
            }
            thread::sleep(Duration::from_millis(10));
        }
        stop.store(true, Ordering::Relaxed);
        assert_eq!(reader.join().unwrap(), 10);
        assert!(
            segment::list(dir.path()).unwrap().len() > 2,
            "rotated while following"
        );
        drop(log);
        writer.finish();
    }
}
