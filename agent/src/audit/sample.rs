//! Sample records and stores, for the tests and the benchmark.

use super::{Kind, Record};
use crate::identity::Identity;
use std::net::SocketAddr;

pub fn client() -> SocketAddr {
    "127.0.0.1:40000".parse().unwrap()
}

pub fn identity(user: &str) -> Identity {
    Identity {
        uid: 1000,
        user: Some(user.into()),
        gid: 1000,
        group: None,
        pid: 4242,
        tid: 4242,
        exe: Some("/usr/bin/claude".into()),
        comm: "claude".into(),
        cmdline: None,
        cgroup: None,
        cgroup_id: 7,
        unit: Some("user@1000.service".into()),
        ci: None,
    }
}

/// The i-th record of a small, varied conversation: three sessions by two
/// users on two endpoints, with tool calls and decisions.
pub fn record(i: usize) -> Record {
    let session = format!("s{}", i % 3);
    let kind = [
        Kind::Connect,
        Kind::Request,
        Kind::Decision,
        Kind::Response,
        Kind::Close,
    ][i % 5];
    let mut r = Record::new(kind, &session, client());
    r.endpoint = Some(if i % 3 == 2 { "billing" } else { "ehr" }.into());
    r.identity = Some(identity(if i % 3 == 1 { "bob" } else { "alice" }));
    if matches!(kind, Kind::Request | Kind::Decision | Kind::Response) {
        r.method = Some("tools/call".into());
        r.tool = Some(
            if i.is_multiple_of(2) {
                "get_patient"
            } else {
                "list_claims"
            }
            .into(),
        );
    }
    if kind == Kind::Decision {
        r.decision = Some(if i % 4 == 2 { "deny" } else { "allow" }.into());
    }
    if kind == Kind::Response {
        r.masked = Some([("name".to_string(), 2)].into());
        r.payload =
            serde_json::value::to_raw_value(&serde_json::json!({"name": "[NAME]", "n": i})).ok();
    }
    r
}

#[cfg(test)]
pub use stores::*;

#[cfg(test)]
mod stores {
    use std::path::Path;

    use super::record;
    use crate::audit::{AuditLog, StoreConfig};

    /// Small segments and frequent checkpoints, so that a few dozen records
    /// span several segments and checkpoints.
    pub fn small_config() -> StoreConfig {
        StoreConfig {
            segment_max_bytes: 4096,
            checkpoint_every: 4,
            batch_delay: std::time::Duration::from_millis(1),
            ..StoreConfig::default()
        }
    }

    /// Opens the store, writes `n` records (every third one durable) and closes it.
    pub fn write_store(dir: &Path, n: usize, config: StoreConfig) {
        let (log, writer) = AuditLog::open_with(dir, config).unwrap();
        for i in 0..n {
            if i % 3 == 0 {
                log.record_durable(record(i)).wait().unwrap();
            } else {
                log.record(record(i));
            }
        }
        drop(log);
        writer.finish();
    }

    /// Every line of every segment, as JSON.
    pub fn read_all(dir: &Path) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for seg in crate::audit::segment::list(dir).unwrap() {
            let text = std::fs::read_to_string(&seg.path).unwrap();
            out.extend(
                text.lines()
                    .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()),
            );
        }
        out
    }
}
