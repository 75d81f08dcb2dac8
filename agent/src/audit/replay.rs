//! `sessions replay`: a session's conversation in order, one line per
//! record, for a human at a terminal; optionally paced as it happened.

use std::io::Write;
use std::path::Path;
use std::thread;
use std::time::Duration;

use anyhow::Result;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::sessions::show_session;

/// Longest pause between two records when pacing: idle minutes are skipped.
const MAX_PAUSE: Duration = Duration::from_secs(5);
/// Payloads are cut to this many characters on screen.
const PAYLOAD_CHARS: usize = 160;

/// Writes session `id` to `out`; with `speed` (1.0 = real time, 2.0 = twice
/// as fast) waits between records as long as they were apart.
pub fn replay(dir: &Path, id: &str, out: &mut dyn Write, speed: Option<f64>) -> Result<u64> {
    let mut lines = Vec::new();
    show_session(dir, id, &mut lines)?;
    let mut start: Option<OffsetDateTime> = None;
    let mut previous: Option<OffsetDateTime> = None;
    let mut count = 0;
    for line in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let record: Value = serde_json::from_slice(line)?;
        let ts = record["ts"]
            .as_str()
            .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok());
        if let (Some(speed), Some(prev), Some(now)) = (speed.filter(|s| *s > 0.0), previous, ts) {
            let gap = (now - prev).unsigned_abs().div_f64(speed);
            out.flush()?;
            thread::sleep(gap.min(MAX_PAUSE));
        }
        let since = match (start.or(ts), ts) {
            (Some(s), Some(t)) => (t - s).as_seconds_f64(),
            _ => 0.0,
        };
        start = start.or(ts);
        previous = ts.or(previous);
        writeln!(out, "{}", render(&record, since))?;
        count += 1;
    }
    out.flush()?;
    Ok(count)
}

/// One record as a line: time, offset from the session start, kind, and
/// what matters for that kind.
fn render(r: &Value, since: f64) -> String {
    let s = |k: &str| r[k].as_str().map(str::to_string);
    let n = |k: &str| r[k].as_u64();
    let time = r["ts"].as_str().and_then(|t| t.get(11..23)).unwrap_or("?");
    let kind = r["kind"].as_str().unwrap_or("?");
    let mut parts: Vec<String> = Vec::new();
    match kind {
        "connect" => {
            let id = &r["identity"];
            let who = id["user"]
                .as_str()
                .map(str::to_string)
                .or_else(|| id["uid"].as_u64().map(|u| format!("uid {u}")));
            parts.push(who.unwrap_or_else(|| "unknown caller".into()));
            if let Some(exe) = id["exe"].as_str() {
                parts.push(format!("({exe})"));
            }
            if let Some(job) = id["ci"]["job_name"].as_str() {
                parts.push(format!("CI job {job}"));
            }
            parts.push(format!(
                "-> {}",
                s("endpoint").unwrap_or_else(|| "?".into())
            ));
            // the address the caller dialled: what an auditor checks against the endpoint
            parts.extend(s("orig_dst").map(|d| format!("({d})")));
        }
        "request" => {
            if s("direction").as_deref() == Some("server_to_client") {
                parts.push("(from server)".into());
            }
            parts.extend(s("method"));
            parts.extend(s("tool").or_else(|| s("uri")).or_else(|| s("prompt")));
        }
        "http" => {
            parts.extend(s("http"));
            parts.extend(n("status").map(|st| format!("-> {st}")));
        }
        "decision" | "approval" => {
            parts.extend(s("decision"));
            if let Some(p) = r["policies"].as_array() {
                let ids: Vec<&str> = p.iter().filter_map(Value::as_str).collect();
                parts.push(format!("policies {}", ids.join(",")));
            }
            parts.extend(s("approver").map(|a| format!("by {a}")));
        }
        "response" | "close" | "reject" => {
            parts.extend(s("method"));
            parts.extend(s("tool").or_else(|| s("uri")).or_else(|| s("prompt")));
            parts.extend(s("outcome"));
            parts.extend(s("error").map(|e| format!("error: {e}")));
            parts.extend(s("reason"));
            if let (Some(up), Some(down)) = (n("bytes_up"), n("bytes_down")) {
                parts.push(format!("up {up} B, down {down} B"));
            }
            parts.extend(n("latency_us").map(|us| format!("{:.1} ms", us as f64 / 1000.0)));
            parts.extend(n("duration_ms").map(|ms| format!("{ms} ms")));
        }
        _ => {}
    }
    if let Some(by_kind) = r["masked"].as_object() {
        let counts: Vec<String> = by_kind
            .iter()
            .filter_map(|(k, n)| Some(format!("{k}={}", n.as_u64()?)))
            .collect();
        if !counts.is_empty() {
            parts.push(format!("masked {}", counts.join(" ")));
        }
    } else if let Some(m) = n("masked").filter(|m| *m > 0) {
        parts.push(format!("masked {m}"));
    }
    parts.extend(s("payload_omitted").map(|why| format!("payload not kept: {why}")));
    if let Some(payload) = r.get("payload") {
        let text = payload.to_string();
        let cut: String = text.chars().take(PAYLOAD_CHARS).collect();
        let more = if cut.len() < text.len() { "…" } else { "" };
        parts.push(format!("{cut}{more}"));
    }
    format!("{time} +{since:>8.3}s  {kind:<9} {}", parts.join("  "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::sample::{small_config, write_store};

    #[test]
    fn a_session_reads_as_a_conversation() {
        let dir = tempfile::tempdir().unwrap();
        write_store(dir.path(), 15, small_config());
        let mut out = Vec::new();
        assert_eq!(replay(dir.path(), "s0", &mut out, None).unwrap(), 5);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].contains("connect")
                && lines[0].contains("alice")
                && lines[0].contains("-> ehr"),
            "{text}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains("request") && l.contains("tools/call")),
            "{text}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains("masked name=2") && l.contains("[NAME]")),
            "{text}"
        );

        let start = std::time::Instant::now();
        replay(dir.path(), "s0", &mut Vec::new(), Some(1000.0)).unwrap();
        assert!(start.elapsed() < Duration::from_secs(2));
    }
}
