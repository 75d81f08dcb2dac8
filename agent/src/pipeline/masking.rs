//! PHI masking in the data path. What the server sends back is masked by the
//! endpoint's profile before the client (or any later stage) sees it; every
//! payload the audit keeps, the client's arguments included, is masked the
//! same way. What cannot be masked is refused, never passed through: a body
//! over the profile's limit, a compressed body, a body of a type that is not
//! text.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use serde_json::Value;
use serde_json::value::RawValue;
use zeroize::Zeroizing;

use crate::config::{Config, MaskChoice};
use crate::keyfile;
use crate::mask::{Counts, Masker, Outcome, Profile, SAFE_HARBOR};

/// The key of the `hash` action's pseudonyms, in the state dir: the same
/// value gets the same pseudonym across restarts until it is replaced.
pub const PSEUDONYM_KEY: &str = "mask-pseudonym.key";

/// Largest masked payload a record keeps whole; larger ones keep their
/// digest, size and counts, and say why the payload is absent.
pub const MAX_RECORDED_PAYLOAD: usize = 1 << 20;

/// The maskers of every profile an endpoint names, built once per config.
pub fn build_maskers(config: &Config) -> Result<HashMap<String, Arc<Masker>>> {
    let mut wanted: Vec<&str> = config
        .endpoints
        .iter()
        .filter_map(|ep| match &ep.mask {
            MaskChoice::Profile(name) => Some(name.as_str()),
            MaskChoice::Off => None,
        })
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    if wanted.is_empty() {
        return Ok(HashMap::new());
    }
    let key = pseudonym_key(&config.agent.state_dir)?;
    wanted
        .into_iter()
        .map(|name| {
            let profile = if name == SAFE_HARBOR {
                Profile::safe_harbor()
            } else {
                let table = config
                    .masks
                    .get(name)
                    .with_context(|| format!("mask profile {name:?} is not defined"))?;
                Profile::from_config(name, table)?
            };
            Ok((
                name.to_string(),
                Arc::new(Masker::new(profile, key.to_vec())),
            ))
        })
        .collect()
}

fn pseudonym_key(state_dir: &Path) -> Result<Zeroizing<Vec<u8>>> {
    keyfile::load_or_create(&state_dir.join(PSEUDONYM_KEY), || {
        let mut key = Zeroizing::new(vec![0u8; 32]);
        aws_lc_rs::rand::fill(&mut key)
            .map_err(|_| anyhow::anyhow!("generating the pseudonym key"))?;
        Ok(key)
    })
}

/// One message as masked: its text (JSON, or text when it was not JSON) and
/// what was found in it.
#[derive(Debug, Clone)]
pub struct MaskedMessage {
    pub bytes: Vec<u8>,
    pub counts: Counts,
    pub outcome: Outcome,
}

impl MaskedMessage {
    /// The payload a record keeps: the masked JSON (a masked string when
    /// the message was not JSON), or why it is not kept. JSON is kept as
    /// its text, line breaks between tokens removed, checked but not parsed
    /// into a tree: that was most of the cost of recording a large result.
    pub fn payload(&self) -> Result<Box<RawValue>, String> {
        if let Outcome::TooLarge { len, limit } = self.outcome {
            return Err(format!(
                "{len} bytes, over the masking profile's limit of {limit}"
            ));
        }
        if self.bytes.len() > MAX_RECORDED_PAYLOAD {
            return Err(format!(
                "{} bytes, over the {MAX_RECORDED_PAYLOAD} bytes a record keeps",
                self.bytes.len()
            ));
        }
        let parse_error = |e: serde_json::Error| format!("masked JSON did not parse back: {e}");
        match self.outcome {
            Outcome::Json => {
                let text = String::from_utf8(one_line(&self.bytes)).map_err(|e| e.to_string())?;
                RawValue::from_string(text).map_err(parse_error)
            }
            _ => serde_json::value::to_raw_value(&Value::String(
                String::from_utf8_lossy(&self.bytes).into_owned(),
            ))
            .map_err(parse_error),
        }
    }

    /// The counts as a record keeps them, by kind.
    pub fn counts_by_kind(&self) -> BTreeMap<String, u64> {
        by_kind(&self.counts)
    }
}

pub fn by_kind(counts: &Counts) -> BTreeMap<String, u64> {
    counts.iter().map(|(e, n)| (e.to_string(), n)).collect()
}

/// Masks one message's text (a copy: the caller decides what is sent).
pub fn mask_message(masker: &Masker, raw: &[u8]) -> MaskedMessage {
    let masked = masker.mask_json_bytes(raw);
    MaskedMessage {
        bytes: masked.bytes.into_owned(),
        counts: masked.counts,
        outcome: masked.outcome,
    }
}

/// JSON text without the line breaks between its tokens (a record is one
/// line); strings cannot hold a raw line break, so only those go.
fn one_line(json: &[u8]) -> Vec<u8> {
    if memchr::memchr2(b'\n', b'\r', json).is_none() {
        return json.to_vec();
    }
    let mut out = Vec::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for &c in json {
        match c {
            b'\n' | b'\r' if !in_string => continue,
            b'"' if !escaped => in_string = !in_string,
            _ => {}
        }
        escaped = in_string && c == b'\\' && !escaped;
        out.push(c);
    }
    out
}

/// A body too large for its endpoint's profile: refused, not forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLarge {
    pub len: usize,
    pub limit: usize,
    pub profile: String,
}

impl TooLarge {
    pub fn client_message(&self) -> String {
        format!(
            "mcp-warden: the server's response ({} bytes) is larger than the {} bytes that masking profile {:?} inspects (max_bytes); it was not forwarded",
            self.len, self.limit, self.profile
        )
    }
}

/// A server body as masked: the bytes to send on and each message's part.
#[derive(Debug)]
pub struct MaskedBody {
    pub bytes: Bytes,
    pub messages: Vec<MaskedMessage>,
}

/// Masks a server body of one message or a batch. `texts` are the
/// messages' texts as sub-slices of `body` (`records::message_texts`);
/// each is masked on its own, so that each record counts its own entities,
/// and the body is put back together around them.
pub fn mask_body(masker: &Masker, body: &Bytes, texts: &[&[u8]]) -> Result<MaskedBody, TooLarge> {
    let limit = masker.profile().max_bytes;
    if body.len() > limit {
        return Err(TooLarge {
            len: body.len(),
            limit,
            profile: masker.profile().name.clone(),
        });
    }
    let Some(spans) = spans_in(body, texts) else {
        // one message (or texts that are not disjoint parts of the body)
        let whole = mask_message(masker, body);
        let bytes = Bytes::from(whole.bytes.clone());
        let mut messages = vec![whole];
        messages.resize_with(texts.len().max(1), || MaskedMessage {
            bytes: Vec::new(),
            counts: Counts::default(),
            outcome: Outcome::Json,
        });
        return Ok(MaskedBody { bytes, messages });
    };
    let mut out = Vec::with_capacity(body.len());
    let mut at = 0;
    let mut messages = Vec::with_capacity(spans.len());
    for (start, end) in spans {
        out.extend_from_slice(&body[at..start]);
        let m = mask_message(masker, &body[start..end]);
        out.extend_from_slice(&m.bytes);
        messages.push(m);
        at = end;
    }
    out.extend_from_slice(&body[at..]);
    Ok(MaskedBody {
        bytes: Bytes::from(out),
        messages,
    })
}

/// Where each text sits in `body`, when they are more than one, in order
/// and disjoint.
fn spans_in(body: &[u8], texts: &[&[u8]]) -> Option<Vec<(usize, usize)>> {
    if texts.len() < 2 {
        return None;
    }
    let base = body.as_ptr() as usize;
    let mut spans = Vec::with_capacity(texts.len());
    let mut last_end = 0;
    for t in texts {
        let start = (t.as_ptr() as usize).checked_sub(base)?;
        let end = start + t.len();
        if start < last_end || end > body.len() {
            return None;
        }
        spans.push((start, end));
        last_end = end;
    }
    Some(spans)
}

/// Whether a body of this `Content-Type` can be masked as text. A body
/// with no type is read as text too: better masked than passed unread.
pub fn is_textual(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else {
        return true;
    };
    let media = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let (top, sub) = media.split_once('/').unwrap_or((media.as_str(), ""));
    top == "text"
        || sub.ends_with("+json")
        || sub.ends_with("+xml")
        || matches!(
            sub,
            "json"
                | "xml"
                | "javascript"
                | "x-ndjson"
                | "jsonl"
                | "x-www-form-urlencoded"
                | "csv"
                | "yaml"
                | "x-yaml"
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp;
    use crate::pipeline::records::message_texts;

    fn masker() -> Masker {
        Masker::new(Profile::safe_harbor(), b"test key".to_vec())
    }

    #[test]
    fn a_batch_is_masked_message_by_message() {
        let body = Bytes::from_static(
            br#"[{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"SSN 123-45-6789"}]}},
 {"jsonrpc":"2.0","id":2,"result":{"structuredContent":{"patient_name":"Maria Lopez","icd10":"E11.9"}}}]"#,
        );
        let parsed = mcp::decode(&body).unwrap();
        let texts = message_texts(&body, &parsed);
        let m = mask_body(&masker(), &body, &texts).unwrap();
        let out = String::from_utf8(m.bytes.to_vec()).unwrap();
        assert!(
            !out.contains("123-45-6789") && !out.contains("Maria"),
            "{out}"
        );
        assert!(out.contains("E11.9"), "{out}");
        assert_eq!(out.len(), body.len(), "redaction keeps the length");
        assert_eq!(m.messages.len(), 2);
        assert_eq!(m.messages[0].counts_by_kind(), [("ssn".into(), 1)].into());
        assert_eq!(
            m.messages[1].counts_by_kind(),
            [("name".into(), 1)].into(),
            "{:?}",
            m.messages[1].counts
        );
        let p: Value = serde_json::from_str(m.messages[1].payload().unwrap().get()).unwrap();
        assert_eq!(p["result"]["structuredContent"]["icd10"], "E11.9");
    }

    #[test]
    fn payloads_are_kept_on_one_line() {
        let compact = br#"{"jsonrpc":"2.0","id":1,"result":{"ssn": "123-45-6789"}}"#;
        let p = mask_message(&masker(), compact).payload().unwrap();
        assert_eq!(
            p.get(),
            r#"{"jsonrpc":"2.0","id":1,"result":{"ssn": "***********"}}"#
        );
        let pretty = b"{\n  \"jsonrpc\": \"2.0\",\r\n  \"id\": 1,\n  \"result\": {\"ssn\": \"123-45-6789\"}\n}";
        let p = mask_message(&masker(), pretty).payload().unwrap();
        assert_eq!(
            p.get(),
            r#"{  "jsonrpc": "2.0",  "id": 1,  "result": {"ssn": "***********"}}"#
        );
        assert_eq!(one_line(b"[\"a\\\"\\\\\",\n1]"), b"[\"a\\\"\\\\\",1]");
    }

    #[test]
    fn too_large_is_refused() {
        let mut profile = Profile::safe_harbor();
        profile.max_bytes = 16;
        let m = Masker::new(profile, b"k".to_vec());
        let body = Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#);
        let e = mask_body(&m, &body, &[&body[..]]).unwrap_err();
        assert_eq!((e.len, e.limit), (body.len(), 16));
        assert!(e.client_message().contains("safe-harbor"));
    }

    #[test]
    fn text_that_is_not_json_is_masked_as_text() {
        let m = mask_message(&masker(), b"call me at (415) 555-0172 please");
        assert!(!String::from_utf8_lossy(&m.bytes).contains("555-0172"));
        let p: Value = serde_json::from_str(m.payload().unwrap().get()).unwrap();
        assert!(matches!(p, Value::String(_)));
    }

    #[test]
    fn textual_types() {
        for t in [
            "text/plain",
            "application/json; charset=utf-8",
            "application/problem+json",
            "TEXT/HTML",
        ] {
            assert!(is_textual(Some(t)), "{t}");
        }
        assert!(is_textual(None));
        for t in ["image/png", "application/octet-stream", "application/pdf"] {
            assert!(!is_textual(Some(t)), "{t}");
        }
    }
}
