//! MCP message decoding: JSON-RPC classification, the method catalogue's
//! targets (tool, resource, prompt), protocol eras, the 2026-07-28 header/body
//! agreement rule, and matching responses to requests within a session.
//!
//! Controls decide on the decoded body, never on headers: a header that
//! disagrees with the body is rejected (HeaderMismatch) rather than trusted.

use std::collections::HashMap;
use std::time::Instant;

use serde::Serialize;
use serde_json::{Value, json};

/// JSON-RPC error codes the agent answers with.
pub mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    /// MCP 2026-07-28: Mcp-Method / Mcp-Name missing, malformed, or not the body's.
    pub const HEADER_MISMATCH: i64 = -32020;
}

/// The first revision without the initialize handshake and sessions.
pub const STATELESS_SINCE: &str = "2026-07-28";

/// Methods whose request reads data: their record must be durable before
/// they are forwarded.
pub const DATA_BEARING: [&str; 3] = ["tools/call", "resources/read", "prompts/get"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Request,
    Notification,
    Response,
    Error,
}

/// What a request acts on, by method.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Target {
    /// tools/call
    Tool {
        name: String,
        arguments: Option<Value>,
    },
    /// resources/read, resources/subscribe, resources/unsubscribe
    Resource { uri: String },
    /// prompts/get
    Prompt { name: String },
}

impl Target {
    /// The value the 2026-07-28 `Mcp-Name` header mirrors.
    pub fn mirrored_name(&self) -> &str {
        match self {
            Target::Tool { name, .. } | Target::Prompt { name } => name,
            Target::Resource { uri } => uri,
        }
    }
}

/// One decoded JSON-RPC message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    pub kind: Kind,
    /// The id as its JSON text (`7`, `"abc"`): one key for numbers and strings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i64>,
}

impl Message {
    pub fn is_data_bearing(&self) -> bool {
        self.kind == Kind::Request
            && self
                .method
                .as_deref()
                .is_some_and(|m| DATA_BEARING.contains(&m))
    }
}

/// A body: one message, or a 2025-03-26 batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Single(Message),
    Batch(Vec<Message>),
}

impl Body {
    pub fn messages(&self) -> &[Message] {
        match self {
            Body::Single(m) => std::slice::from_ref(m),
            Body::Batch(v) => v,
        }
    }
}

/// Why a body is not MCP; carries the JSON-RPC code to answer with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct DecodeError {
    pub code: i64,
    pub message: String,
}

fn invalid(message: impl Into<String>) -> DecodeError {
    DecodeError {
        code: code::INVALID_REQUEST,
        message: message.into(),
    }
}

/// Decodes a JSON-RPC body (either direction).
pub fn decode(body: &[u8]) -> Result<Body, DecodeError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| DecodeError {
        code: code::PARSE_ERROR,
        message: format!("not JSON: {e}"),
    })?;
    match value {
        Value::Array(items) if items.is_empty() => Err(invalid("empty batch")),
        Value::Array(items) => items
            .iter()
            .map(classify)
            .collect::<Result<_, _>>()
            .map(Body::Batch),
        other => classify(&other).map(Body::Single),
    }
}

/// Classifies one JSON-RPC object and extracts what controls need.
pub fn classify(v: &Value) -> Result<Message, DecodeError> {
    let obj = v
        .as_object()
        .ok_or_else(|| invalid("a JSON-RPC message must be an object"))?;
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(invalid("jsonrpc must be \"2.0\""));
    }
    let id = match obj.get("id") {
        None => None,
        Some(id @ (Value::String(_) | Value::Number(_))) => Some(id.to_string()),
        Some(Value::Null) if obj.contains_key("error") => None, // error about an unparseable request
        Some(_) => return Err(invalid("id must be a string or a number")),
    };
    if let Some(method) = obj.get("method") {
        let method = method
            .as_str()
            .ok_or_else(|| invalid("method must be a string"))?
            .to_string();
        let target = target_of(&method, obj.get("params"))?;
        let kind = if id.is_some() {
            Kind::Request
        } else {
            Kind::Notification
        };
        return Ok(Message {
            kind,
            id,
            method: Some(method),
            target,
            error_code: None,
        });
    }
    if let Some(err) = obj.get("error") {
        let code = err
            .get("code")
            .and_then(Value::as_i64)
            .ok_or_else(|| invalid("error.code must be an integer"))?;
        return Ok(Message {
            kind: Kind::Error,
            id,
            method: None,
            target: None,
            error_code: Some(code),
        });
    }
    if obj.contains_key("result") {
        if id.is_none() {
            return Err(invalid("a response needs an id"));
        }
        return Ok(Message {
            kind: Kind::Response,
            id,
            method: None,
            target: None,
            error_code: None,
        });
    }
    Err(invalid("neither a request, a notification nor a response"))
}

fn target_of(method: &str, params: Option<&Value>) -> Result<Option<Target>, DecodeError> {
    let field = |key: &str| -> Result<String, DecodeError> {
        params
            .and_then(|p| p.get(key))
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| invalid(format!("{method} needs params.{key} (a string)")))
    };
    Ok(match method {
        "tools/call" => Some(Target::Tool {
            name: field("name")?,
            arguments: params.and_then(|p| p.get("arguments")).cloned(),
        }),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            Some(Target::Resource { uri: field("uri")? })
        }
        "prompts/get" => Some(Target::Prompt {
            name: field("name")?,
        }),
        _ => None,
    })
}

/// The protocol era a request belongs to, from its `MCP-Protocol-Version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Era {
    /// 2025-03-26 … 2025-11-25 (and the initialize request itself, which has no header yet).
    Handshake,
    /// 2026-07-28 and later.
    Stateless,
}

pub fn era(protocol_version: Option<&str>) -> Era {
    // revisions are dates: lexical order is chronological
    match protocol_version {
        Some(v) if v >= STATELESS_SINCE => Era::Stateless,
        _ => Era::Handshake,
    }
}

/// 2026-07-28: `Mcp-Method` must equal the body's method and `Mcp-Name` its
/// tool/prompt name or resource uri. Returns the mismatch to answer with.
pub fn check_mirrored_headers(
    msg: &Message,
    mcp_method: Option<&str>,
    mcp_name: Option<&str>,
) -> Result<(), DecodeError> {
    let mismatch = |m: String| DecodeError {
        code: code::HEADER_MISMATCH,
        message: m,
    };
    let Some(method) = msg.method.as_deref() else {
        return Ok(());
    }; // responses carry no mirrored headers
    match mcp_method {
        None => return Err(mismatch("Mcp-Method header missing".into())),
        Some(h) if h != method => {
            return Err(mismatch(format!(
                "Mcp-Method header {h:?} does not match the body's method {method:?}"
            )));
        }
        Some(_) => {}
    }
    match (&msg.target, mcp_name) {
        (Some(_), None) => Err(mismatch(format!("Mcp-Name header missing for {method}"))),
        (Some(t), Some(h)) if h != t.mirrored_name() => Err(mismatch(format!(
            "Mcp-Name header {h:?} does not match the body's {:?}",
            t.mirrored_name()
        ))),
        _ => Ok(()),
    }
}

/// A JSON-RPC error response body.
pub fn error_body(id: Option<&str>, code: i64, message: &str, data: Option<Value>) -> Vec<u8> {
    let id: Value = id
        .and_then(|i| serde_json::from_str(i).ok())
        .unwrap_or(Value::Null);
    let mut error = json!({ "code": code, "message": message });
    if let Some(data) = data {
        error["data"] = data;
    }
    serde_json::to_vec(&json!({ "jsonrpc": "2.0", "id": id, "error": error }))
        .expect("JSON values serialise")
}

/// Who sent a request: the client, or the server (sampling, elicitation, roots
/// requests arriving on a stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sender {
    Client,
    Server,
}

/// A request waiting for its response.
#[derive(Debug, Clone)]
pub struct Pending {
    pub method: String,
    pub target: Option<Target>,
    pub sent: Instant,
}

/// Outstanding requests of one MCP session, for matching responses by id.
/// Ids are scoped per sender: client and server number their requests independently.
#[derive(Debug, Default)]
pub struct Correlator {
    pending: HashMap<(Sender, String), Pending>,
}

/// Bound per session: a peer that never answers cannot grow the table.
const MAX_PENDING: usize = 4096;

impl Correlator {
    /// Notes a request sent by `from`. False when the table is full or the id is in use.
    pub fn request(&mut self, from: Sender, msg: &Message) -> bool {
        let (Some(id), Some(method)) = (&msg.id, &msg.method) else {
            return false;
        };
        if self.pending.len() >= MAX_PENDING || self.pending.contains_key(&(from, id.clone())) {
            return false;
        }
        let p = Pending {
            method: method.clone(),
            target: msg.target.clone(),
            sent: Instant::now(),
        };
        self.pending.insert((from, id.clone()), p);
        true
    }

    /// The request a response (sent by `from`) answers: one `from`'s peer sent.
    pub fn response(&mut self, from: Sender, msg: &Message) -> Option<Pending> {
        let requester = match from {
            Sender::Client => Sender::Server,
            Sender::Server => Sender::Client,
        };
        self.pending.remove(&(requester, msg.id.clone()?))
    }

    /// A message `from` sent, as it passes: a request is noted, a response
    /// returns the request it answers.
    pub fn observe(&mut self, from: Sender, msg: &Message) -> Option<Pending> {
        match msg.kind {
            Kind::Request => {
                self.request(from, msg);
                None
            }
            Kind::Response | Kind::Error => self.response(from, msg),
            Kind::Notification => None,
        }
    }

    pub fn outstanding(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(body: &str) -> Message {
        match decode(body.as_bytes()).unwrap() {
            Body::Single(m) => m,
            b => panic!("not single: {b:?}"),
        }
    }

    #[test]
    fn classifies_requests_notifications_responses_and_errors() {
        let m = one(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"query","arguments":{"sql":"select 1"}}}"#,
        );
        assert_eq!(m.kind, Kind::Request);
        assert_eq!(m.id.as_deref(), Some("1"));
        assert_eq!(
            m.target,
            Some(Target::Tool {
                name: "query".into(),
                arguments: Some(json!({"sql":"select 1"}))
            })
        );
        assert!(m.is_data_bearing());
        let n = one(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        assert_eq!((n.kind, n.id), (Kind::Notification, None));
        let r = one(r#"{"jsonrpc":"2.0","id":"a-1","result":{"content":[]}}"#);
        assert_eq!((r.kind, r.id.as_deref()), (Kind::Response, Some("\"a-1\"")));
        let e = one(r#"{"jsonrpc":"2.0","id":2,"error":{"code":-32601,"message":"nope"}}"#);
        assert_eq!((e.kind, e.error_code), (Kind::Error, Some(-32601)));
        let e = one(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse"}}"#);
        assert_eq!((e.kind, e.id), (Kind::Error, None));
    }

    #[test]
    fn targets_by_method() {
        let r = one(
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"ehr://patients/7"}}"#,
        );
        assert_eq!(
            r.target,
            Some(Target::Resource {
                uri: "ehr://patients/7".into()
            })
        );
        let p =
            one(r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"summary"}}"#);
        assert_eq!(
            p.target,
            Some(Target::Prompt {
                name: "summary".into()
            })
        );
        let l = one(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
        assert_eq!(l.target, None);
        assert!(!l.is_data_bearing());
    }

    #[test]
    fn batches_of_2025_03_26() {
        let b = decode(
            br#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","method":"notifications/progress","params":{}}]"#,
        )
        .unwrap();
        assert_eq!(b.messages().len(), 2);
        assert_eq!(decode(b"[]").unwrap_err().code, code::INVALID_REQUEST);
    }

    #[test]
    fn malformed_bodies_get_json_rpc_codes() {
        for (body, code) in [
            (&b"{not json"[..], code::PARSE_ERROR),
            (b"\xff\xfe", code::PARSE_ERROR),
            (
                br#"{"jsonrpc":"1.0","id":1,"method":"x"}"#,
                code::INVALID_REQUEST,
            ),
            (
                br#"{"jsonrpc":"2.0","id":{"a":1},"method":"x"}"#,
                code::INVALID_REQUEST,
            ),
            (
                br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#,
                code::INVALID_REQUEST,
            ),
            (
                br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":7}}"#,
                code::INVALID_REQUEST,
            ),
            (br#"{"jsonrpc":"2.0","result":{}}"#, code::INVALID_REQUEST),
            (br#"{"jsonrpc":"2.0","id":1}"#, code::INVALID_REQUEST),
            (br#"42"#, code::INVALID_REQUEST),
        ] {
            assert_eq!(
                decode(body).unwrap_err().code,
                code,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn eras_by_protocol_version() {
        assert_eq!(era(None), Era::Handshake);
        assert_eq!(era(Some("2025-03-26")), Era::Handshake);
        assert_eq!(era(Some("2025-11-25")), Era::Handshake);
        assert_eq!(era(Some("2026-07-28")), Era::Stateless);
    }

    #[test]
    fn mirrored_headers_must_match_the_body() {
        let call =
            one(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"query"}}"#);
        assert!(check_mirrored_headers(&call, Some("tools/call"), Some("query")).is_ok());
        for (m, n) in [
            (None, Some("query")),
            (Some("tools/list"), Some("query")),
            (Some("tools/call"), None),
            (Some("tools/call"), Some("harmless_tool")),
        ] {
            let e = check_mirrored_headers(&call, m, n).unwrap_err();
            assert_eq!(e.code, code::HEADER_MISMATCH, "{m:?} {n:?}");
        }
        let read = one(
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"ehr://p/1"}}"#,
        );
        assert!(check_mirrored_headers(&read, Some("resources/read"), Some("ehr://p/1")).is_ok());
        let list = one(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
        assert!(check_mirrored_headers(&list, Some("tools/list"), None).is_ok());
    }

    #[test]
    fn error_bodies_echo_the_id() {
        let b = error_body(
            Some("\"x\""),
            code::HEADER_MISMATCH,
            "mismatch",
            Some(json!({"policy":"p1"})),
        );
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(
            v,
            json!({"jsonrpc":"2.0","id":"x","error":{"code":-32020,"message":"mismatch","data":{"policy":"p1"}}})
        );
        let v: Value = serde_json::from_slice(&error_body(None, -32700, "bad", None)).unwrap();
        assert_eq!(v["id"], Value::Null);
    }

    #[test]
    fn responses_match_requests_per_sender() {
        let mut c = Correlator::default();
        let req = one(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"q"}}"#);
        // the server numbers its own requests (sampling) independently: same id, other sender
        let sreq = one(r#"{"jsonrpc":"2.0","id":1,"method":"sampling/createMessage","params":{}}"#);
        assert!(c.request(Sender::Client, &req));
        assert!(c.request(Sender::Server, &sreq));
        assert!(!c.request(Sender::Client, &req), "an id in use is refused");
        let resp = one(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#);
        assert_eq!(
            c.response(Sender::Server, &resp).unwrap().method,
            "tools/call"
        );
        assert_eq!(
            c.response(Sender::Client, &resp).unwrap().method,
            "sampling/createMessage"
        );
        assert!(c.response(Sender::Server, &resp).is_none(), "answered once");
        assert_eq!(c.outstanding(), 0);
    }
}
