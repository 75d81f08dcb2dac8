//! What a record holds (NIST SP 800-53 AU-3): the caller's [`Record`], and the
//! records the store writes about itself (checkpoints, seals, retention,
//! recovery). The line around a body (seq, prev, ts, hash) is `chain`'s.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::identity::Identity;

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A redirected connection was accepted and its caller identified.
    Connect,
    /// It ended: byte counts, duration, outcome.
    Close,
    /// It was refused without relaying (no flow record, unknown endpoint).
    Reject,
    /// An MCP request from the client (method, tool/uri/prompt, masked arguments).
    Request,
    /// The upstream server's answer to a request (outcome, sizes, latency).
    Response,
    /// The policy decision taken on a request.
    Decision,
    /// A human approval (or refusal) of a request that needed one.
    Approval,
    /// A non-MCP HTTP exchange on an endpoint (OAuth metadata, health checks).
    Http,
}

/// What a caller hands to the store; `seq`, `prev`, `ts` and `hash` are added
/// by it. Absent fields are left out of the record.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// First, so that every line reads `…"ts":…,"kind":…` (see `chain`).
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
    /// JSON-RPC id of the message, as the client sent it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpc_id: Option<serde_json::Value>,
    /// JSON-RPC method, e.g. "tools/call".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Arguments or result, already masked: never unmasked PHI, never a
    /// credential. Kept as JSON text on one line (written as it stands,
    /// without parsing it into a tree and printing it again).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Box<serde_json::value::RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<u64>,
    /// "allow" | "deny" | "mask" | "approve" …, as the policy engine names it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    /// Ids of the policies that decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policies: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approver: Option<String>,
    /// Entities masked in this message, by kind (`{"ssn":1,"name":2}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub masked: Option<BTreeMap<String, u64>>,
    /// Why `payload` is absent although the message was masked (too large
    /// to keep, or larger than the profile's limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_omitted: Option<String>,
    /// Which way an MCP message went: "client_to_server" | "server_to_client".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<&'static str>,
    /// JSON-RPC shape: "request" | "notification" | "response" | "error".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<&'static str>,
    /// The MCP session (Mcp-Session-Id, or the legacy transport's message URL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mcp_session: Option<String>,
    /// MCP-Protocol-Version of the exchange (or the one initialize negotiated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<String>,
    /// HTTP method and path (no query: it may carry identifiers) of the exchange.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// HTTP status the client received.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Size of this message (or HTTP body) in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// SHA-256 (hex) of the message's bytes as they were forwarded: proves
    /// what was sent without keeping it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_sha256: Option<String>,
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
            rpc_id: None,
            method: None,
            tool: None,
            uri: None,
            prompt: None,
            payload: None,
            error: None,
            latency_us: None,
            decision: None,
            policies: None,
            approver: None,
            masked: None,
            payload_omitted: None,
            direction: None,
            message: None,
            mcp_session: None,
            protocol_version: None,
            http: None,
            status: None,
            size: None,
            payload_sha256: None,
        }
    }
}

/// Records the store writes about itself; `kind` tells them apart.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum StoreRecord {
    /// Signed every N records or T seconds, and as the last record of a
    /// segment before rotation.
    Checkpoint(Checkpoint),
    /// The checkpoint written when the store closes: its absence at the end
    /// means a crash or a truncation.
    Seal(Checkpoint),
    /// Old segments were removed under the retention policy.
    Retention(Retention),
    /// Something was cut or lost, and why.
    Recovery(Recovery),
}

/// The store kinds, as they appear in `kind`.
pub const STORE_KINDS: [&str; 4] = ["checkpoint", "seal", "retention", "recovery"];

/// What a checkpoint or seal vouches for. Its signature (the line's `sig`)
/// signs the line's hash, and so the whole chain up to it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Checkpoint {
    /// First record covered: the one after the previous checkpoint.
    pub from_seq: u64,
    /// Last record covered: the one just before this line.
    pub to_seq: u64,
    /// Hash of record `to_seq` (also this line's `prev`).
    pub last_hash: String,
    /// Segments holding records from_seq..=to_seq, oldest first.
    pub segments: Vec<String>,
    /// The signer's public key, in the form `audit pubkey` prints.
    pub key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Retention {
    /// Segment files removed, oldest first.
    pub removed: Vec<String>,
    pub removed_from_seq: u64,
    pub removed_to_seq: u64,
    /// Hash of record `removed_to_seq`: the `prev` of the oldest record kept.
    pub removed_last_hash: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Recovery {
    /// "torn_tail" (bytes cut at open), "unclean_shutdown" (no seal at the
    /// end, nothing cut) or "write_failure" (records lost while the disk failed).
    pub cause: String,
    pub detail: String,
    /// The last intact record before the cut or the failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cut_offset: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cut_bytes: Option<u64>,
    /// SHA-256 of the cut bytes, which are kept in `quarantine`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cut_sha256: Option<String>,
    /// Path of the file holding the cut bytes, relative to the audit dir.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<String>,
    /// Records handed to the store but never written (write_failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped: Option<u64>,
    /// Durable records refused to their callers meanwhile (write_failure):
    /// requests that were not forwarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_since: Option<String>,
}

impl StoreRecord {
    /// The body's JSON, as `chain::encode_line` takes it.
    pub fn to_body(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("store records always serialize")
    }
}

/// What readers (export filters, the sessions index) take from a record
/// line; everything else in it is skipped.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RecordView {
    pub seq: u64,
    pub ts: String,
    pub kind: String,
    pub session: Option<String>,
    pub endpoint: Option<String>,
    pub identity: Option<IdentityView>,
    pub method: Option<String>,
    pub tool: Option<String>,
    pub uri: Option<String>,
    pub prompt: Option<String>,
    pub decision: Option<String>,
    pub policies: Option<Vec<String>>,
    pub approver: Option<String>,
    pub reason: Option<String>,
    pub error: Option<String>,
    pub masked: Masked,
    pub duration_ms: Option<u64>,
    pub direction: Option<String>,
    /// JSON-RPC shape: "request" | "notification" | "response" | "error".
    pub message: Option<String>,
    pub mcp_session: Option<String>,
}

/// `masked` as a reader takes it: a count of entities, or counts per entity
/// (`{"ssn": 2, "name": 1}`); anything else reads as nothing masked, so that
/// one odd record never hides the rest of a line from a reader.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Masked {
    #[default]
    None,
    Count(u64),
    ByEntity(Vec<(String, u64)>),
}

impl Masked {
    pub fn total(&self) -> u64 {
        match self {
            Masked::None => 0,
            Masked::Count(n) => *n,
            Masked::ByEntity(v) => v.iter().map(|(_, n)| n).sum(),
        }
    }
}

impl<'de> Deserialize<'de> for Masked {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match serde_json::Value::deserialize(d)? {
            serde_json::Value::Number(n) => n.as_u64().map_or(Masked::None, Masked::Count),
            serde_json::Value::Object(m) => Masked::ByEntity(
                m.into_iter()
                    .filter_map(|(k, v)| v.as_u64().map(|n| (k, n)))
                    .collect(),
            ),
            _ => Masked::None,
        })
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct IdentityView {
    pub user: Option<String>,
    pub uid: Option<u32>,
    pub exe: Option<String>,
    pub unit: Option<String>,
    pub ci: Option<CiJobView>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CiJobView {
    pub provider: Option<String>,
    pub run_id: Option<String>,
    pub job_id: Option<String>,
    pub job_name: Option<String>,
    pub repository: Option<String>,
}

impl CiJobView {
    /// "provider repository run job", the parts that are known.
    pub fn describe(&self) -> String {
        let mut s = self.provider.clone().unwrap_or_default();
        for part in [
            &self.repository,
            &self.run_id,
            &self.job_name.as_ref().or(self.job_id.as_ref()).cloned(),
        ]
        .into_iter()
        .flatten()
        {
            if !s.is_empty() {
                s.push(' ');
            }
            s.push_str(part);
        }
        s
    }
}

impl RecordView {
    pub fn parse(line: &[u8]) -> Option<Self> {
        serde_json::from_slice(line).ok()
    }

    /// The account name, or `uid N` when it could not be resolved.
    pub fn user(&self) -> Option<String> {
        let id = self.identity.as_ref()?;
        id.user
            .clone()
            .or_else(|| id.uid.map(|u| format!("uid {u}")))
    }
}
