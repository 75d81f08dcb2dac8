//! The audit records the pipeline writes: one per MCP message either way, one
//! per non-MCP HTTP exchange, one per refusal. Payloads are kept masked by the
//! endpoint's profile (so never unmasked PHI), with the SHA-256 of the masked
//! bytes; an endpoint with `mask = "off"` keeps only the digest and size.

use std::net::SocketAddr;

use aws_lc_rs::digest;
use serde_json::value::RawValue;

use crate::audit::{Kind, Record};
use crate::identity::Identity;
use crate::mcp::{self, Message, Pending, Sender, Target};

use super::masking::MaskedMessage;

/// What a record keeps of a message's bytes.
#[derive(Debug, Clone, Copy)]
pub enum Kept<'a> {
    /// Nothing (a decision about the message, recorded after it).
    Nothing,
    /// `mask = "off"`: the digest and size of the bytes as forwarded.
    Digest(&'a [u8]),
    /// Masked by the endpoint's profile: the payload, what was masked, the
    /// digest of the masked bytes, and the size of what was forwarded.
    Masked {
        masked: &'a MaskedMessage,
        forwarded_len: usize,
    },
}

impl Kept<'_> {
    pub fn fill(&self, r: &mut Record) {
        match *self {
            Kept::Nothing => {}
            Kept::Digest(raw) => payload(r, raw),
            Kept::Masked {
                masked,
                forwarded_len,
            } => {
                r.size = Some(forwarded_len as u64);
                r.payload_sha256 = Some(sha256_hex(&masked.bytes));
                match masked.payload() {
                    Ok(v) => r.payload = Some(v),
                    Err(why) => r.payload_omitted = Some(why),
                }
                if !masked.counts.is_empty() {
                    r.masked = Some(masked.counts_by_kind());
                }
            }
        }
    }
}

/// What every record of one client connection shares.
#[derive(Debug, Clone)]
pub struct Who {
    pub session: String,
    pub endpoint: String,
    pub identity: Identity,
    pub client: SocketAddr,
    pub orig_dst: SocketAddr,
}

impl Who {
    pub fn record(&self, kind: Kind) -> Record {
        let mut r = Record::new(kind, &self.session, self.client);
        r.endpoint = Some(self.endpoint.clone());
        r.identity = Some(self.identity.clone());
        r.orig_dst = Some(self.orig_dst);
        r
    }

    /// The record of one JSON-RPC message; `pending` is the request a
    /// response answers (its method and target name the response too).
    pub fn message(
        &self,
        from: Sender,
        msg: &Message,
        kept: Kept<'_>,
        session: &SessionView,
        pending: Option<&Pending>,
    ) -> Record {
        let kind = match msg.kind {
            mcp::Kind::Request | mcp::Kind::Notification => Kind::Request,
            mcp::Kind::Response | mcp::Kind::Error => Kind::Response,
        };
        let mut r = self.record(kind);
        r.direction = Some(direction(from));
        r.message = Some(match msg.kind {
            mcp::Kind::Request => "request",
            mcp::Kind::Notification => "notification",
            mcp::Kind::Response => "response",
            mcp::Kind::Error => "error",
        });
        r.rpc_id = msg
            .id
            .as_deref()
            .and_then(|id| serde_json::from_str(id).ok());
        r.method = msg
            .method
            .clone()
            .or_else(|| pending.map(|p| p.method.clone()));
        match msg
            .target
            .as_ref()
            .or(pending.and_then(|p| p.target.as_ref()))
        {
            Some(Target::Tool { name, .. }) => r.tool = Some(name.clone()),
            Some(Target::Resource { uri }) => r.uri = Some(uri.clone()),
            Some(Target::Prompt { name }) => r.prompt = Some(name.clone()),
            None => {}
        }
        r.error = msg.error_code.map(|c| format!("json-rpc error {c}"));
        r.latency_us = pending.map(|p| p.sent.elapsed().as_micros() as u64);
        session.fill(&mut r);
        kept.fill(&mut r);
        r
    }
}

/// The MCP session fields of a record.
#[derive(Debug, Clone, Default)]
pub struct SessionView {
    pub id: Option<String>,
    pub protocol_version: Option<String>,
    pub status: Option<u16>,
}

impl SessionView {
    fn fill(&self, r: &mut Record) {
        r.mcp_session = self.id.clone();
        r.protocol_version = self.protocol_version.clone();
        r.status = self.status;
    }
}

pub fn direction(from: Sender) -> &'static str {
    match from {
        Sender::Client => "client_to_server",
        Sender::Server => "server_to_client",
    }
}

/// Size and SHA-256 of what was forwarded: enough to prove a copy held
/// elsewhere is the one that passed, without keeping the bytes.
pub fn payload(r: &mut Record, raw: &[u8]) {
    r.size = Some(raw.len() as u64);
    r.payload_sha256 = Some(sha256_hex(raw));
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&digest::digest(&digest::SHA256, data))
}

/// A digest as lower-case hex.
pub fn hex(d: &digest::Digest) -> String {
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The JSON text of each message of a body: the body itself, or each element
/// of a batch as it was written.
pub fn message_texts<'a>(body: &'a [u8], parsed: &mcp::Body) -> Vec<&'a [u8]> {
    match parsed {
        mcp::Body::Single(_) => vec![body],
        mcp::Body::Batch(msgs) => match serde_json::from_slice::<Vec<&RawValue>>(body) {
            Ok(items) if items.len() == msgs.len() => {
                items.into_iter().map(|v| v.get().as_bytes()).collect()
            }
            _ => vec![body; msgs.len()],
        },
    }
}

/// The `protocolVersion` an initialize result negotiated.
pub fn negotiated_version(raw: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Reply {
        result: Option<InitResult>,
    }
    #[derive(serde::Deserialize)]
    struct InitResult {
        #[serde(rename = "protocolVersion")]
        protocol_version: Option<String>,
    }
    serde_json::from_slice::<Reply>(raw)
        .ok()?
        .result?
        .protocol_version
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_elements_keep_their_own_text() {
        let body = br#"[ {"jsonrpc":"2.0","id":1,"method":"tools/list"} , {"jsonrpc":"2.0","method":"notifications/initialized"}]"#;
        let parsed = mcp::decode(body).unwrap();
        let texts = message_texts(body, &parsed);
        assert_eq!(
            texts,
            [
                &br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#[..],
                &br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#[..]
            ]
        );
    }

    #[test]
    fn hashes_are_sha256_hex() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn initialize_results_name_their_version() {
        let raw = br#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18","capabilities":{}}}"#;
        assert_eq!(negotiated_version(raw).as_deref(), Some("2025-06-18"));
        assert_eq!(
            negotiated_version(br#"{"jsonrpc":"2.0","id":0,"result":{}}"#),
            None
        );
    }
}
