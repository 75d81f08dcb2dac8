//! `sessions list` / `sessions show`: one summary per session, kept in an
//! index file beside the segments so that listing stays interactive over
//! millions of records. The segments stay the source of truth: the index
//! remembers the last record it has read (position, seq and hash) and reads
//! on from there; if that record is no longer there as remembered, it is
//! rebuilt from the segments.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::ops::ControlFlow;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::warn;

use super::chain::{hex, parse_line};
use super::export::{ExportFilter, write_segments};
use super::record::{CiJobView, RecordView};
use super::segment::{self, scan_lines};

pub const INDEX_FILE: &str = "sessions.idx";
const INDEX_VERSION: u32 = 1;

/// One row of `sessions list`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionSummary {
    pub id: String,
    /// `ts` of its first and last record.
    pub start: String,
    pub end: String,
    pub duration_ms: u64,
    pub user: Option<String>,
    pub exe: Option<String>,
    pub unit: Option<String>,
    /// "provider run/job name", when the caller ran in CI.
    pub ci_job: Option<String>,
    pub endpoint: Option<String>,
    pub records: u64,
    /// Requests and notifications from the client.
    pub calls: u64,
    /// Decisions that denied a request.
    pub denials: u64,
    /// Entities masked, over all its records.
    pub masked: u64,
    /// Segments holding its records, oldest first.
    pub segments: Vec<String>,
}

impl SessionSummary {
    fn add(&mut self, view: &RecordView, segment: &str) {
        if self.records == 0 {
            self.start = view.ts.clone();
        }
        self.records += 1;
        self.end = view.ts.clone();
        self.duration_ms = millis_between(&self.start, &self.end);
        if self.segments.last().map(String::as_str) != Some(segment) {
            self.segments.push(segment.to_string());
        }
        if let Some(id) = &view.identity
            && self.user.is_none()
        {
            self.user = view.user();
            self.exe = id.exe.clone();
            self.unit = id.unit.clone();
            self.ci_job = id.ci.as_ref().map(CiJobView::describe);
        }
        if self.endpoint.is_none() {
            self.endpoint = view.endpoint.clone();
        }
        match view.kind.as_str() {
            // the client's calls; requests the server sends (sampling…) are not calls
            "request" if view.direction.as_deref() != Some("server_to_client") => self.calls += 1,
            "decision" if view.decision.as_deref() == Some("deny") => self.denials += 1,
            _ => {}
        }
        self.masked += view.masked.total();
    }
}

fn millis_between(a: &str, b: &str) -> u64 {
    match (
        OffsetDateTime::parse(a, &Rfc3339),
        OffsetDateTime::parse(b, &Rfc3339),
    ) {
        (Ok(a), Ok(b)) => (b - a).whole_milliseconds().max(0) as u64,
        _ => 0,
    }
}

/// The last record the index has read.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Position {
    version: u32,
    segment: String,
    /// Offset and line number of that record's line.
    offset: u64,
    line: u64,
    seq: u64,
    hash: String,
}

struct Index {
    position: Option<Position>,
    sessions: Vec<SessionSummary>,
    by_id: HashMap<String, usize>,
}

impl Index {
    fn empty() -> Self {
        Self {
            position: None,
            sessions: Vec::new(),
            by_id: HashMap::new(),
        }
    }

    fn load(path: &Path) -> Option<Self> {
        let mut lines = BufReader::new(File::open(path).ok()?).lines();
        let position: Position = serde_json::from_str(&lines.next()?.ok()?).ok()?;
        if position.version != INDEX_VERSION {
            return None;
        }
        let mut index = Self::empty();
        for line in lines {
            let s: SessionSummary = serde_json::from_str(&line.ok()?).ok()?;
            index.by_id.insert(s.id.clone(), index.sessions.len());
            index.sessions.push(s);
        }
        index.position = Some(position);
        Some(index)
    }

    fn save(&self, path: &Path) -> io::Result<()> {
        let Some(position) = &self.position else {
            return Ok(());
        };
        let tmp = path.with_extension("idx.tmp");
        let mut out = io::BufWriter::new(File::create(&tmp)?);
        serde_json::to_writer(&mut out, position)?;
        out.write_all(b"\n")?;
        for s in &self.sessions {
            serde_json::to_writer(&mut out, s)?;
            out.write_all(b"\n")?;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        fs::rename(&tmp, path)
    }

    /// Where to read on from: just past the remembered record, if it is
    /// still there unchanged.
    fn resume_point(&self, dir: &Path) -> Option<(String, u64, u64)> {
        let p = self.position.as_ref()?;
        let mut file = File::open(dir.join(&p.segment)).ok()?;
        file.seek(SeekFrom::Start(p.offset)).ok()?;
        let mut found = None;
        scan_lines(&mut file, p.offset, p.line, |line| {
            found = parse_line(line.bytes)
                .ok()
                .filter(|l| l.seq == p.seq && hex(&l.hash) == p.hash && l.hash_matches())
                .map(|_| line.offset + line.bytes.len() as u64 + 1);
            ControlFlow::Break(())
        })
        .ok()?;
        found.map(|next| (p.segment.clone(), next, p.line + 1))
    }

    /// Reads every record after the resume point into the summaries.
    fn catch_up(&mut self, dir: &Path) -> Result<bool> {
        let segments = segment::list(dir)?;
        let resume = self.resume_point(dir);
        if resume.is_none() && self.position.is_some() {
            warn!(dir = %dir.display(), "sessions index does not match the segments; rebuilding it");
            *self = Self::empty();
        }
        let present: std::collections::HashSet<&str> =
            segments.iter().map(|s| s.name.as_str()).collect();
        self.forget_removed(&present);
        let mut changed = false;
        for seg in &segments {
            let (offset, first_line) = match &resume {
                Some((name, _, _)) if seg.name < *name => continue,
                Some((name, offset, line)) if seg.name == *name => (*offset, *line),
                _ => (0, 1),
            };
            let mut file =
                File::open(&seg.path).with_context(|| format!("reading {}", seg.path.display()))?;
            file.seek(SeekFrom::Start(offset))?;
            scan_lines(&mut file, offset, first_line, |line| {
                let Ok(parsed) = parse_line(line.bytes) else {
                    return ControlFlow::Continue(());
                };
                if let Some(view) = RecordView::parse(line.bytes)
                    && let Some(id) = &view.session
                {
                    let i = *self.by_id.entry(id.clone()).or_insert_with(|| {
                        self.sessions.push(SessionSummary {
                            id: id.clone(),
                            ..Default::default()
                        });
                        self.sessions.len() - 1
                    });
                    self.sessions[i].add(&view, &seg.name);
                }
                self.position = Some(Position {
                    version: INDEX_VERSION,
                    segment: seg.name.clone(),
                    offset: line.offset,
                    line: line.number,
                    seq: parsed.seq,
                    hash: hex(&parsed.hash),
                });
                changed = true;
                ControlFlow::Continue(())
            })?;
        }
        Ok(changed)
    }

    /// Segments removed by retention take their sessions' records along.
    fn forget_removed(&mut self, present: &std::collections::HashSet<&str>) {
        let before = self.sessions.len();
        for s in &mut self.sessions {
            s.segments.retain(|name| present.contains(name.as_str()));
        }
        self.sessions.retain(|s| !s.segments.is_empty());
        if self.sessions.len() != before {
            self.by_id = self
                .sessions
                .iter()
                .enumerate()
                .map(|(i, s)| (s.id.clone(), i))
                .collect();
        }
    }
}

/// Brings the index up to date with the segments (reading only what is new)
/// and returns it. A failure to save it is only logged: a read-only copy of
/// a store can still be listed.
fn refreshed(dir: &Path) -> Result<Index> {
    let path = dir.join(INDEX_FILE);
    let mut index = Index::load(&path).unwrap_or_else(Index::empty);
    if index.catch_up(dir)?
        && let Err(e) = index.save(&path)
    {
        warn!(path = %path.display(), error = %e, "cannot save the sessions index");
    }
    Ok(index)
}

/// Every session, in order of first record.
pub fn list_sessions(dir: &Path) -> Result<Vec<SessionSummary>> {
    let mut sessions = refreshed(dir)?.sessions;
    sessions.sort_by(|a, b| a.start.cmp(&b.start));
    Ok(sessions)
}

/// Drops the index and builds it again from the segments.
pub fn rebuild_index(dir: &Path) -> Result<usize> {
    match fs::remove_file(dir.join(INDEX_FILE)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    Ok(refreshed(dir)?.sessions.len())
}

/// Writes the records of session `id` as JSON lines; reads only the
/// segments the index says hold them.
pub fn show_session(dir: &Path, id: &str, out: &mut dyn Write) -> Result<u64> {
    let index = refreshed(dir)?;
    let Some(&i) = index.by_id.get(id) else {
        bail!("no session {id:?} in {}", dir.display())
    };
    let wanted = &index.sessions[i].segments;
    let segments = segment::list(dir)?
        .into_iter()
        .filter(|s| wanted.contains(&s.name))
        .collect();
    let filter = ExportFilter {
        session: Some(id.to_string()),
        ..Default::default()
    };
    write_segments(segments, &filter, out)
}

/// `sessions list --format table`.
pub fn render_table(sessions: &[SessionSummary]) -> String {
    let mut out = String::from(
        "SESSION\tSTART\tDURATION\tUSER\tEXE\tUNIT\tCI JOB\tENDPOINT\tCALLS\tDENIALS\tMASKED\n",
    );
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    for s in sessions {
        let _ = writeln!(
            out,
            "{}\t{}\t{:.3}s\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            s.id,
            s.start,
            s.duration_ms as f64 / 1000.0,
            dash(&s.user),
            dash(&s.exe),
            dash(&s.unit),
            dash(&s.ci_job),
            dash(&s.endpoint),
            s.calls,
            s.denials,
            s.masked
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::sample::{small_config, write_store};

    #[test]
    fn sessions_are_summarised_and_shown() {
        let dir = tempfile::tempdir().unwrap();
        write_store(dir.path(), 30, small_config());
        let list = list_sessions(dir.path()).unwrap();
        let ids: Vec<&str> = list.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["s0", "s1", "s2"]);
        let s1 = &list[1];
        assert_eq!(
            (s1.records, s1.user.as_deref(), s1.endpoint.as_deref()),
            (10, Some("bob"), Some("ehr"))
        );
        assert_eq!(s1.exe.as_deref(), Some("/usr/bin/claude"));
        let total = |f: fn(&SessionSummary) -> u64| list.iter().map(f).sum::<u64>();
        assert_eq!(total(|s| s.calls), 6);
        assert_eq!(total(|s| s.masked), 12);
        assert!(total(|s| s.denials) > 0);
        assert!(
            render_table(&list)
                .lines()
                .nth(2)
                .unwrap()
                .starts_with("s1\t")
        );

        let mut out = Vec::new();
        assert_eq!(show_session(dir.path(), "s2", &mut out).unwrap(), 10);
        assert!(
            String::from_utf8(out)
                .unwrap()
                .lines()
                .all(|l| l.contains("\"session\":\"s2\""))
        );
        assert!(show_session(dir.path(), "nope", &mut Vec::new()).is_err());
    }

    #[test]
    fn the_index_reads_on_incrementally_and_is_rebuilt_when_it_does_not_match() {
        let dir = tempfile::tempdir().unwrap();
        write_store(dir.path(), 12, small_config());
        let first = list_sessions(dir.path()).unwrap();
        write_store(dir.path(), 12, small_config());
        let second = list_sessions(dir.path()).unwrap();
        assert_eq!(second.iter().map(|s| s.records).sum::<u64>(), 24);
        assert_eq!(first.len(), second.len());

        // An index from another store is detected and rebuilt.
        let other = tempfile::tempdir().unwrap();
        write_store(other.path(), 3, small_config());
        list_sessions(other.path()).unwrap();
        fs::copy(other.path().join(INDEX_FILE), dir.path().join(INDEX_FILE)).unwrap();
        assert_eq!(list_sessions(dir.path()).unwrap(), second);
        assert_eq!(rebuild_index(dir.path()).unwrap(), 3);
        assert_eq!(list_sessions(dir.path()).unwrap(), second);
    }
}
