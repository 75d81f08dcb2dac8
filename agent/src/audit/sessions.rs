//! `sessions list` / `sessions show`: one summary per session, kept in an
//! index file beside the segments so that listing stays interactive over
//! millions of records. The segments stay the source of truth: the index
//! remembers the last record it has read (position, seq and hash) and reads
//! on from there; if that record is no longer there as remembered, it is
//! rebuilt from the segments.
//!
//! A session is an MCP session (`mcp_session`, on one endpoint) with every
//! connection that carried it: a client that reconnects, or sends each POST
//! on a new connection, is one session. A connection's records before the
//! server named the session (connect, initialize) join it when it does;
//! connections that never carry one (tcp endpoints, stateless MCP) are a
//! session each. A session's id is the record `session` (connection id) of
//! its first connection.

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
const INDEX_VERSION: u32 = 2;

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
    /// The MCP session id (Mcp-Session-Id, or the legacy transport's
    /// message URL), when the server assigned one.
    #[serde(default)]
    pub mcp_session: Option<String>,
    /// The connections (record `session`) that carried it, in order.
    #[serde(default)]
    pub connections: Vec<String>,
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

    /// Takes in `other`'s records: the records of a connection from before
    /// it carried this session.
    fn merge(&mut self, other: SessionSummary) {
        if other.records > 0 {
            if self.records == 0 || other.start < self.start {
                self.start = other.start;
            }
            if other.end > self.end {
                self.end = other.end;
            }
        }
        self.duration_ms = millis_between(&self.start, &self.end);
        if self.user.is_none() {
            (self.user, self.exe, self.unit, self.ci_job) =
                (other.user, other.exe, other.unit, other.ci_job);
        }
        self.endpoint = self.endpoint.take().or(other.endpoint);
        self.records += other.records;
        self.calls += other.calls;
        self.denials += other.denials;
        self.masked += other.masked;
        for list in [
            (&mut self.segments, other.segments),
            (&mut self.connections, other.connections),
        ] {
            let (mine, theirs) = list;
            for item in theirs {
                if !mine.contains(&item) {
                    mine.push(item);
                }
            }
        }
        self.segments.sort();
    }

    /// Whether the record belongs to this session: it names its MCP session,
    /// or names none and came on one of its connections.
    fn holds(&self, view: &RecordView) -> bool {
        match &view.mcp_session {
            Some(m) => self.mcp_session.as_ref() == Some(m) && view.endpoint == self.endpoint,
            None => view
                .session
                .as_ref()
                .is_some_and(|c| self.connections.contains(c)),
        }
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

/// The index's second line: which session each open connection's records
/// go to now (a connection leaves it with its `close` record).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Open {
    connections: HashMap<String, String>,
}

struct Index {
    position: Option<Position>,
    sessions: Vec<SessionSummary>,
    by_id: HashMap<String, usize>,
    /// (endpoint, MCP session id) → session id.
    by_mcp: HashMap<(String, String), String>,
    open: Open,
}

impl Index {
    fn empty() -> Self {
        Self {
            position: None,
            sessions: Vec::new(),
            by_id: HashMap::new(),
            by_mcp: HashMap::new(),
            open: Open::default(),
        }
    }

    /// Rebuilds the lookups from `sessions` (after load or removals).
    fn relink(&mut self) {
        self.by_id = self
            .sessions
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.clone(), i))
            .collect();
        self.by_mcp = self
            .sessions
            .iter()
            .filter_map(|s| {
                let m = s.mcp_session.clone()?;
                Some(((s.endpoint.clone().unwrap_or_default(), m), s.id.clone()))
            })
            .collect();
        let by_id = &self.by_id;
        self.open.connections.retain(|_, id| by_id.contains_key(id));
    }

    fn push(&mut self, summary: SessionSummary) -> usize {
        self.by_id.insert(summary.id.clone(), self.sessions.len());
        self.sessions.push(summary);
        self.sessions.len() - 1
    }

    /// A new session started on `conn`: named after it (or after it and a
    /// number when it carries a second MCP session).
    fn start_session(&mut self, conn: &str) -> usize {
        let mut id = conn.to_string();
        let mut n = 1;
        while self.by_id.contains_key(&id) {
            n += 1;
            id = format!("{conn}.{n}");
        }
        self.open.connections.insert(conn.to_string(), id.clone());
        self.push(SessionSummary {
            id,
            connections: vec![conn.to_string()],
            ..Default::default()
        })
    }

    /// The session that `conn`'s records go to now: the one it is open
    /// in, else the one named after it (a record after its close), else a
    /// new one.
    fn session_of_connection(&mut self, conn: &str) -> usize {
        let known = self
            .open
            .connections
            .get(conn)
            .and_then(|id| self.by_id.get(id))
            .or_else(|| self.by_id.get(conn));
        match known {
            Some(&i) => i,
            None => self.start_session(conn),
        }
    }

    /// The session of a record that names MCP session `mcp` on `endpoint`
    /// and came on `conn`.
    fn session_of_mcp(&mut self, conn: &str, endpoint: &str, mcp: &str) -> usize {
        let current = self.session_of_connection(conn);
        let key = (endpoint.to_string(), mcp.to_string());
        let Some(id) = self.by_mcp.get(&key).cloned() else {
            if self.sessions[current].mcp_session.is_none() {
                // the server has just named the session of this connection
                self.sessions[current].mcp_session = Some(mcp.to_string());
                self.by_mcp.insert(key, self.sessions[current].id.clone());
                return current;
            }
            // a second MCP session on the same connection
            let i = self.start_session(conn);
            self.sessions[i].mcp_session = Some(mcp.to_string());
            self.by_mcp.insert(key, self.sessions[i].id.clone());
            return i;
        };
        let target = self.by_id[&id];
        if target != current {
            if self.sessions[current].mcp_session.is_none() {
                // this connection's records so far join the session
                let joined = self.sessions.swap_remove(current);
                self.by_id.remove(&joined.id);
                if let Some(moved) = self.sessions.get(current) {
                    self.by_id.insert(moved.id.clone(), current);
                }
                let target = self.by_id[&id];
                self.sessions[target].merge(joined);
            } else {
                let target = &mut self.sessions[target];
                if !target.connections.iter().any(|c| c == conn) {
                    target.connections.push(conn.to_string());
                }
            }
            self.open.connections.insert(conn.to_string(), id.clone());
        }
        self.by_id[&id]
    }

    /// Adds one record to its session.
    fn add(&mut self, view: &RecordView, segment: &str) {
        let Some(conn) = &view.session else {
            return;
        };
        let i = match &view.mcp_session {
            Some(m) => self.session_of_mcp(conn, view.endpoint.as_deref().unwrap_or_default(), m),
            None => self.session_of_connection(conn),
        };
        self.sessions[i].add(view, segment);
        if view.kind == "close" {
            self.open.connections.remove(conn);
        }
    }

    /// The session `id` names: a session id, an MCP session id (if only
    /// one endpoint has it) or one of its connections.
    fn find(&self, id: &str) -> Option<&SessionSummary> {
        if let Some(&i) = self.by_id.get(id) {
            return Some(&self.sessions[i]);
        }
        let mut by_mcp = self
            .sessions
            .iter()
            .filter(|s| s.mcp_session.as_deref() == Some(id));
        if let (Some(s), None) = (by_mcp.next(), by_mcp.next()) {
            return Some(s);
        }
        self.sessions
            .iter()
            .find(|s| s.connections.iter().any(|c| c == id))
    }

    fn load(path: &Path) -> Option<Self> {
        let mut lines = BufReader::new(File::open(path).ok()?).lines();
        let position: Position = serde_json::from_str(&lines.next()?.ok()?).ok()?;
        if position.version != INDEX_VERSION {
            return None;
        }
        let mut index = Self::empty();
        index.open = serde_json::from_str(&lines.next()?.ok()?).ok()?;
        for line in lines {
            let s: SessionSummary = serde_json::from_str(&line.ok()?).ok()?;
            index.sessions.push(s);
        }
        index.relink();
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
        serde_json::to_writer(&mut out, &self.open)?;
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
                if let Some(view) = RecordView::parse(line.bytes) {
                    self.add(&view, &seg.name);
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
            self.relink();
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

/// Writes the records of session `id` (a session id, an MCP session id or
/// one of its connections) as JSON lines; reads only the segments the index
/// says hold them.
pub fn show_session(dir: &Path, id: &str, out: &mut dyn Write) -> Result<u64> {
    let index = refreshed(dir)?;
    let Some(session) = index.find(id) else {
        bail!("no session {id:?} in {}", dir.display())
    };
    let segments = segment::list(dir)?
        .into_iter()
        .filter(|s| session.segments.contains(&s.name))
        .collect();
    let keep = |line: &[u8]| RecordView::parse(line).is_some_and(|v| session.holds(&v));
    write_segments(segments, &ExportFilter::default(), &keep, out)
}

/// `sessions list --format table`.
pub fn render_table(sessions: &[SessionSummary]) -> String {
    let mut out = String::from(
        "SESSION\tSTART\tDURATION\tUSER\tEXE\tUNIT\tCI JOB\tENDPOINT\tMCP SESSION\tCONNS\tCALLS\tDENIALS\tMASKED\n",
    );
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    for s in sessions {
        let _ = writeln!(
            out,
            "{}\t{}\t{:.3}s\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            s.id,
            s.start,
            s.duration_ms as f64 / 1000.0,
            dash(&s.user),
            dash(&s.exe),
            dash(&s.unit),
            dash(&s.ci_job),
            dash(&s.endpoint),
            dash(&s.mcp_session),
            s.connections.len(),
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
    use crate::audit::sample::{client, identity, small_config, write_store};
    use crate::audit::{AuditLog, Kind, Record};

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

    /// `n` records on connection `conn`: connect, then requests (the first
    /// `before` without an MCP session id, the rest with `mcp`), then close.
    fn connection(log: &AuditLog, conn: &str, mcp: Option<&str>, before: usize, n: usize) {
        let mut connect = Record::new(Kind::Connect, conn, client());
        connect.endpoint = Some("ehr".into());
        connect.identity = Some(identity("carol"));
        log.record(connect);
        for i in 0..n {
            let mut r = Record::new(Kind::Request, conn, client());
            r.endpoint = Some("ehr".into());
            r.method = Some("tools/call".into());
            r.direction = Some("client_to_server");
            if i >= before {
                r.mcp_session = mcp.map(str::to_string);
            }
            log.record(r);
        }
        let mut close = Record::new(Kind::Close, conn, client());
        close.endpoint = Some("ehr".into());
        log.record(close);
    }

    #[test]
    fn an_mcp_session_is_one_session_across_its_connections() {
        let dir = tempfile::tempdir().unwrap();
        let (log, writer) = AuditLog::open_with(dir.path(), small_config()).unwrap();
        connection(&log, "c1", Some("m-1"), 1, 2); // initialize, then the server names m-1
        connection(&log, "c2", Some("m-1"), 0, 3); // the same client, a new connection
        connection(&log, "c3", None, 0, 2); // stateless: no MCP session
        connection(&log, "c4", Some("m-1"), 0, 1);
        drop(log);
        writer.finish();

        let check = |list: &[SessionSummary]| {
            let ids: Vec<&str> = list.iter().map(|s| s.id.as_str()).collect();
            assert_eq!(ids, ["c1", "c3"]);
            let m = &list[0];
            assert_eq!(m.mcp_session.as_deref(), Some("m-1"));
            assert_eq!(m.connections, ["c1", "c2", "c4"]);
            assert_eq!((m.records, m.calls), (3 * 2 + 6, 6));
            assert_eq!(m.user.as_deref(), Some("carol"));
            assert_eq!((list[1].records, list[1].calls), (4, 2));
        };
        check(&list_sessions(dir.path()).unwrap());
        // read back from the index, and rebuilt from the segments: the same
        check(&list_sessions(dir.path()).unwrap());
        rebuild_index(dir.path()).unwrap();
        check(&list_sessions(dir.path()).unwrap());

        for id in ["c1", "m-1", "c2"] {
            let mut out = Vec::new();
            assert_eq!(show_session(dir.path(), id, &mut out).unwrap(), 12, "{id}");
            let text = String::from_utf8(out).unwrap();
            assert!(!text.contains("\"session\":\"c3\""), "{text}");
        }
        let mut out = Vec::new();
        assert_eq!(show_session(dir.path(), "c3", &mut out).unwrap(), 4);
    }

    #[test]
    fn the_index_follows_a_session_across_incremental_reads() {
        let dir = tempfile::tempdir().unwrap();
        let (log, writer) = AuditLog::open_with(dir.path(), small_config()).unwrap();
        connection(&log, "c1", Some("m-1"), 1, 2);
        drop(log);
        writer.finish();
        assert_eq!(list_sessions(dir.path()).unwrap().len(), 1);
        // c2 opens before the index is read, carries m-1 after it
        let (log, writer) = AuditLog::open_with(dir.path(), small_config()).unwrap();
        let mut connect = Record::new(Kind::Connect, "c2", client());
        connect.endpoint = Some("ehr".into());
        log.record_durable(connect).wait().unwrap();
        assert_eq!(
            list_sessions(dir.path()).unwrap().len(),
            2,
            "c2 on its own so far"
        );
        connection(&log, "c2", Some("m-1"), 0, 2);
        drop(log);
        writer.finish();
        let list = list_sessions(dir.path()).unwrap();
        assert_eq!(list.len(), 1, "{list:?}");
        assert_eq!(list[0].connections, ["c1", "c2"]);
        rebuild_index(dir.path()).unwrap();
        assert_eq!(list_sessions(dir.path()).unwrap(), list);
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
