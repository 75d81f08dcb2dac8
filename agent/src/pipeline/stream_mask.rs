//! Masking a JSON body too large to hold whole (`oversize = "stream"`), or
//! the data of such an SSE event (given in parts as it arrives); and, at
//! the end, the same for a text body (`TextStreamMasker`). The
//! body is lexed as it arrives; string values are masked in pieces of at most
//! `PIECE` bytes, or the profile's `max_bytes` when smaller (cut after a line
//! break, or a space when a line is longer),
//! under the key rule of their key or an enclosing one; a number or literal
//! under a ruled key, or one a detector flags, becomes `null`; everything
//! else passes as it came. The output is the same JSON document, masked.
//!
//! What it gives up against the whole-message walker: an identifier split
//! across two pieces of one long string may be missed (pieces end at line
//! breaks, so this takes a line over 1 MiB), and every value is content (a
//! streamed body is a tool result, not a descriptor list) but the top-level
//! `jsonrpc` of a message and, after it, its `id` and `method` (in JSON that
//! is not JSON-RPC these are content too). Input that is not JSON ends the
//! stream with an error: it is never passed on unmasked.

use bytes::Bytes;
use memchr::{memchr2, memmem};

use crate::mask::{Counts, Entity, Masker, Outcome};

/// Largest piece of one string masked at a time.
pub const PIECE: usize = 1 << 20;

/// Top-level JSON-RPC fields passed as they are.
const PROTOCOL_KEYS: [&str; 3] = ["jsonrpc", "id", "method"];

#[derive(Debug)]
enum Frame {
    Object {
        /// The key of the value being read, once read.
        key: Option<String>,
        expect_key: bool,
        /// The key whose rule covers this object's values (its own key's
        /// when ruled, else an enclosing one).
        ruled_by: Option<String>,
    },
    Array {
        ruled_by: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    Between,
    /// Inside a string; `escape` after a backslash.
    Str {
        escape: bool,
        is_key: bool,
    },
    /// Inside a number or literal.
    Scalar,
}

/// The lexer's state across chunks, and what it found.
pub struct StreamMasker<'m> {
    masker: &'m Masker,
    stack: Vec<Frame>,
    lex: Lex,
    /// The current string's encoded content not yet masked, or the scalar.
    raw: Vec<u8>,
    /// The current string value is a protocol field: passed as it is.
    protocol: bool,
    done: bool,
    /// The largest piece masked at once: `PIECE`, or the profile's
    /// `max_bytes` when smaller.
    piece: usize,
    pub counts: Counts,
    /// The top-level `id` as JSON text, when it went out as it came.
    id: Option<String>,
    /// The top-level `method`, when it went out as it came.
    method: Option<String>,
    /// The top level has a `jsonrpc` key: its `id` and `method` are
    /// protocol, passed as they are.
    rpc: bool,
}

/// A masker fed a body chunk by chunk: it returns what can be sent so far,
/// and at the end the rest; an error means the body cannot be masked.
pub trait PieceMasker {
    fn feed(&mut self, chunk: &[u8]) -> Result<Bytes, String>;
    fn finish(&mut self) -> Result<Bytes, String>;
}

impl PieceMasker for StreamMasker<'_> {
    fn feed(&mut self, chunk: &[u8]) -> Result<Bytes, String> {
        StreamMasker::feed(self, chunk)
    }

    fn finish(&mut self) -> Result<Bytes, String> {
        StreamMasker::finish(self)
    }
}

impl PieceMasker for TextStreamMasker<'_> {
    fn feed(&mut self, chunk: &[u8]) -> Result<Bytes, String> {
        TextStreamMasker::feed(self, chunk)
    }

    fn finish(&mut self) -> Result<Bytes, String> {
        TextStreamMasker::finish(self)
    }
}

impl<'m> StreamMasker<'m> {
    pub fn new(masker: &'m Masker) -> Self {
        Self {
            masker,
            stack: Vec::new(),
            lex: Lex::Between,
            raw: Vec::new(),
            protocol: false,
            done: false,
            piece: PIECE.min(masker.profile().max_bytes),
            counts: Counts::default(),
            id: None,
            method: None,
            rpc: false,
        }
    }

    /// The message's `id` (JSON text), once read: what its record is
    /// matched by. Only of a JSON-RPC message, and only as it was sent on.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref().filter(|_| self.rpc)
    }

    /// The message's `method`, once read: a request or notification.
    pub fn method(&self) -> Option<&str> {
        self.method.as_deref().filter(|_| self.rpc)
    }

    /// Masks the next chunk of the body; returns what can be sent now.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Bytes, String> {
        let mut out = Vec::with_capacity(chunk.len() + 64);
        let mut i = 0;
        while i < chunk.len() {
            match self.lex {
                Lex::Str { escape, is_key } => {
                    i = self.string_bytes(chunk, i, escape, is_key, &mut out)?;
                }
                Lex::Scalar => {
                    let b = chunk[i];
                    if is_delimiter(b) {
                        self.end_scalar(&mut out)?;
                    } else {
                        self.raw.push(b);
                        i += 1;
                        if self.raw.len() > 64 {
                            return Err("a JSON number or literal over 64 bytes".into());
                        }
                    }
                }
                Lex::Between => {
                    self.between(chunk[i], &mut out)?;
                    i += 1;
                }
            }
        }
        Ok(Bytes::from(out))
    }

    /// The body ended: it must have been one whole JSON value.
    pub fn finish(&mut self) -> Result<Bytes, String> {
        let mut out = Vec::new();
        if self.lex == Lex::Scalar {
            self.end_scalar(&mut out)?;
        }
        if self.lex != Lex::Between || !self.stack.is_empty() || !self.done {
            return Err("the JSON body ended early".into());
        }
        Ok(Bytes::from(out))
    }

    fn between(&mut self, b: u8, out: &mut Vec<u8>) -> Result<(), String> {
        match b {
            b' ' | b'\t' | b'\n' | b'\r' | b':' => {}
            b',' => {
                if let Some(Frame::Object {
                    expect_key, key, ..
                }) = self.stack.last_mut()
                {
                    *expect_key = true;
                    *key = None;
                }
            }
            b'{' | b'[' => {
                self.start_value()?;
                let ruled_by = self.value_rule_key();
                self.stack.push(if b == b'{' {
                    Frame::Object {
                        key: None,
                        expect_key: true,
                        ruled_by,
                    }
                } else {
                    Frame::Array { ruled_by }
                });
            }
            b'}' | b']' => {
                let ok = matches!(
                    (b, self.stack.pop()),
                    (b'}', Some(Frame::Object { .. })) | (b']', Some(Frame::Array { .. }))
                );
                if !ok {
                    return Err(format!("unexpected {:?} in the JSON body", b as char));
                }
                self.done = self.stack.is_empty();
            }
            b'"' => {
                let is_key = matches!(
                    self.stack.last(),
                    Some(Frame::Object {
                        expect_key: true,
                        ..
                    })
                );
                if !is_key {
                    self.start_value()?;
                    self.protocol = self.at_protocol_key();
                }
                self.lex = Lex::Str {
                    escape: false,
                    is_key,
                };
                self.raw.clear();
            }
            b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => {
                self.start_value()?;
                self.lex = Lex::Scalar;
                self.raw.clear();
                self.raw.push(b);
                return Ok(());
            }
            _ => return Err(format!("unexpected byte {b:#04x} in the JSON body")),
        }
        out.push(b);
        Ok(())
    }

    /// A value starts: there must be room for one.
    fn start_value(&mut self) -> Result<(), String> {
        if self.stack.is_empty() && self.done {
            return Err("more than one JSON value in the body".into());
        }
        Ok(())
    }

    /// Reads string bytes from `chunk[i..]`; returns where it stopped.
    fn string_bytes(
        &mut self,
        chunk: &[u8],
        mut i: usize,
        mut escape: bool,
        is_key: bool,
        out: &mut Vec<u8>,
    ) -> Result<usize, String> {
        while i < chunk.len() {
            if escape {
                self.raw.push(chunk[i]);
                escape = false;
                i += 1;
                continue;
            }
            let rest = &chunk[i..];
            let Some(at) = memchr2(b'"', b'\\', rest) else {
                self.raw.extend_from_slice(rest);
                i = chunk.len();
                break;
            };
            self.raw.extend_from_slice(&rest[..at]);
            i += at + 1;
            if rest[at] == b'\\' {
                self.raw.push(b'\\');
                escape = true;
                continue;
            }
            // the closing quote
            self.lex = Lex::Between;
            if is_key {
                let key = decode(&self.raw)?;
                out.extend_from_slice(&self.raw);
                out.push(b'"');
                // a JSON-RPC message says so at its top level
                self.rpc |= self.stack.len() == 1 && key == "jsonrpc";
                if let Some(Frame::Object {
                    key: k, expect_key, ..
                }) = self.stack.last_mut()
                {
                    *k = Some(key);
                    *expect_key = false;
                }
            } else {
                self.flush_pieces(out)?;
                self.flush_string(self.raw.len(), out)?;
                out.push(b'"');
                self.done = self.stack.is_empty();
            }
            self.raw.clear();
            return Ok(i);
        }
        self.lex = Lex::Str { escape, is_key };
        if is_key && self.raw.len() > self.piece {
            return Err(format!("a JSON key over {} bytes", self.piece));
        }
        if !is_key {
            self.flush_pieces(out)?;
        }
        Ok(i)
    }

    /// Masks and writes whole pieces of the current string while it holds
    /// more than one piece.
    fn flush_pieces(&mut self, out: &mut Vec<u8>) -> Result<(), String> {
        while self.raw.len() > self.piece {
            let cut = piece_end(&self.raw[..self.piece])
                .ok_or_else(|| format!("a string with no space in {} bytes", self.piece))?;
            self.flush_string(cut, out)?;
        }
        Ok(())
    }

    /// Masks and writes the first `cut` encoded bytes of the current string.
    fn flush_string(&mut self, cut: usize, out: &mut Vec<u8>) -> Result<(), String> {
        let piece = decode(&self.raw[..cut])?;
        let unchanged = if self.protocol {
            out.extend_from_slice(&self.raw[..cut]);
            true
        } else {
            let key = self.value_rule_key();
            let masked = self.masker.mask_text_under(&piece, key.as_deref());
            if matches!(masked.outcome, Outcome::TooLarge { .. }) {
                return Err("a string piece over the profile's max_bytes".into());
            }
            self.counts.merge(&masked.counts);
            let unchanged = masked.text == piece;
            let encoded = serde_json::to_string(masked.text.as_ref()).expect("a string");
            out.extend_from_slice(&encoded.as_bytes()[1..encoded.len() - 1]);
            unchanged
        };
        // a whole top-level id or method that went out as it came
        if unchanged && cut == self.raw.len() && self.stack.len() == 1 {
            match self.current_key() {
                Some("id") => self.id = Some(format!("\"{}\"", String::from_utf8_lossy(&self.raw))),
                Some("method") => self.method = Some(piece),
                _ => {}
            }
        }
        self.raw.drain(..cut);
        Ok(())
    }

    fn end_scalar(&mut self, out: &mut Vec<u8>) -> Result<(), String> {
        self.lex = Lex::Between;
        let text = std::str::from_utf8(&self.raw).map_err(|_| "a bad JSON literal".to_string())?;
        if serde_json::from_str::<serde_json::Value>(text).is_err() {
            return Err(format!("a bad JSON literal {text:?}"));
        }
        let keep = if self.at_protocol_key() {
            true
        } else if let Some(entity) = self.ruled_entity() {
            self.counts.add(&entity, 1);
            false
        } else if matches!(text, "true" | "false" | "null") {
            true
        } else {
            let masked = self.masker.mask_text(text);
            self.counts.merge(&masked.counts);
            masked.counts.is_empty()
        };
        if keep && self.stack.len() == 1 && self.current_key() == Some("id") {
            self.id = Some(text.to_string());
        }
        out.extend_from_slice(if keep { &self.raw } else { b"null" });
        self.raw.clear();
        self.done = self.stack.is_empty();
        Ok(())
    }

    fn current_key(&self) -> Option<&str> {
        match self.stack.last() {
            Some(Frame::Object { key, .. }) => key.as_deref(),
            _ => None,
        }
    }

    /// At a top-level protocol field of a JSON-RPC message: `jsonrpc`, and
    /// once that has been read, `id` and `method`. In other JSON these are
    /// content like any key (as for the whole-message walker).
    fn at_protocol_key(&self) -> bool {
        self.stack.len() == 1
            && self
                .current_key()
                .is_some_and(|k| k == "jsonrpc" || (self.rpc && PROTOCOL_KEYS.contains(&k)))
    }

    /// The key whose rule covers the value being read: its own key when
    /// that is ruled, else the enclosing container's.
    fn value_rule_key(&self) -> Option<String> {
        let (own, inherited) = match self.stack.last() {
            Some(Frame::Object { key, ruled_by, .. }) => (key.as_deref(), ruled_by),
            Some(Frame::Array { ruled_by }) => (None, ruled_by),
            None => (None, &None),
        };
        match own {
            Some(k) if self.masker.profile().keys.lookup(k).is_some() => Some(k.to_string()),
            _ => inherited.clone(),
        }
    }

    fn ruled_entity(&self) -> Option<Entity> {
        let key = self.value_rule_key()?;
        let entity = self.masker.profile().keys.lookup(&key)?;
        self.masker
            .profile()
            .is_enabled(entity)
            .then(|| entity.clone())
    }
}

fn is_delimiter(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b',' | b']' | b'}' | b':')
}

/// The decoded text of encoded string content (no quotes).
fn decode(raw: &[u8]) -> Result<String, String> {
    let mut quoted = Vec::with_capacity(raw.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(raw);
    quoted.push(b'"');
    serde_json::from_slice(&quoted).map_err(|e| format!("a bad JSON string: {e}"))
}

/// Where to end a piece of encoded string content: after its last `\n`
/// escape, else after its last space; never inside an escape.
fn piece_end(raw: &[u8]) -> Option<usize> {
    let mut end = raw.len();
    while let Some(at) = memmem::rfind(&raw[..end], b"\\n") {
        // a real escape: an even number of backslashes before it
        let backslashes = raw[..at].iter().rev().take_while(|&&b| b == b'\\').count();
        if backslashes % 2 == 0 {
            return Some(at + 2);
        }
        end = at;
    }
    raw.iter().rposition(|&b| b == b' ').map(|at| at + 1)
}

/// Masking a text body too large to hold whole (`oversize = "stream"`): it
/// is masked in pieces of at most `PIECE` bytes (or the profile's
/// `max_bytes`), each cut after its last line break, else its last space,
/// else at a character boundary. An identifier split by a cut (a line over
/// the piece size) can be missed.
pub struct TextStreamMasker<'m> {
    masker: &'m Masker,
    held: Vec<u8>,
    piece: usize,
    pub counts: Counts,
}

impl<'m> TextStreamMasker<'m> {
    pub fn new(masker: &'m Masker) -> Self {
        Self {
            masker,
            held: Vec::new(),
            // a third of the limit: invalid UTF-8 read as U+FFFD (three bytes
            // each) still fits
            piece: PIECE.min(masker.profile().max_bytes / 3).max(1),
            counts: Counts::default(),
        }
    }

    /// Masks the next chunk; returns what can be sent now.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Bytes, String> {
        self.held.extend_from_slice(chunk);
        let mut out = Vec::new();
        while self.held.len() > self.piece {
            let cut = text_piece_end(&self.held, self.piece);
            self.mask_piece(cut, &mut out)?;
        }
        Ok(Bytes::from(out))
    }

    /// The body ended: the rest, masked.
    pub fn finish(&mut self) -> Result<Bytes, String> {
        let mut out = Vec::new();
        self.mask_piece(self.held.len(), &mut out)?;
        Ok(Bytes::from(out))
    }

    fn mask_piece(&mut self, cut: usize, out: &mut Vec<u8>) -> Result<(), String> {
        let piece = String::from_utf8_lossy(&self.held[..cut]);
        let masked = self.masker.mask_text(&piece);
        if matches!(masked.outcome, Outcome::TooLarge { .. }) {
            // only under a max_bytes of a few bytes, with invalid UTF-8
            return Err("a text piece over the profile's max_bytes".into());
        }
        self.counts.merge(&masked.counts);
        out.extend_from_slice(masked.text.as_bytes());
        self.held.drain(..cut);
        Ok(())
    }
}

/// Where to cut `held` (longer than `piece`) so that at most `piece` bytes
/// go: after the last line break among them, else the last space, else at
/// the last character boundary.
fn text_piece_end(held: &[u8], piece: usize) -> usize {
    let window = &held[..piece];
    if let Some(nl) = memchr::memrchr(b'\n', window) {
        return nl + 1;
    }
    if let Some(space) = memchr::memrchr(b' ', window) {
        return space + 1;
    }
    // no break: back off over UTF-8 continuation bytes (at most three)
    (piece.saturating_sub(3)..=piece)
        .rev()
        .find(|&i| i > 0 && held[i] & 0xC0 != 0x80)
        .unwrap_or(piece)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::Profile;
    use serde_json::{Value, json};

    fn masker() -> Masker {
        Masker::new(Profile::safe_harbor(), b"k".to_vec())
    }

    /// Streams `body` through in chunks of `n` bytes.
    fn stream<'m>(
        m: &'m Masker,
        body: &[u8],
        n: usize,
    ) -> Result<(Vec<u8>, StreamMasker<'m>), String> {
        let mut s = StreamMasker::new(m);
        let mut out = Vec::new();
        for chunk in body.chunks(n) {
            out.extend_from_slice(&s.feed(chunk)?);
        }
        out.extend_from_slice(&s.finish()?);
        Ok((out, s))
    }

    #[test]
    fn id_and_method_pass_as_they_are_only_in_a_json_rpc_message() {
        let m = masker();
        let phi = "Maria Lopez 536-22-8741";
        let plain = format!(r#"{{"id":"{phi}","method":"{phi}","rows":[]}}"#);
        let (out, s) = stream(&m, plain.as_bytes(), 5).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(!out.contains("536-22-8741"), "{out}");
        assert_eq!(s.id(), None);
        let rpc = r#"{"jsonrpc":"2.0","id":"req-536-22-8741","method":"notifications/message","params":{}}"#;
        let (out, s) = stream(&m, rpc.as_bytes(), 5).unwrap();
        assert_eq!(out, rpc.as_bytes(), "protocol fields are not content");
        assert_eq!(s.id(), Some("\"req-536-22-8741\""));
        assert_eq!(s.method(), Some("notifications/message"));
        // keys in sorted order (`id` before `jsonrpc`): a plain id is still found
        let sorted = r#"{"id":3,"jsonrpc":"2.0","result":{"text":"ok"}}"#;
        let (out, s) = stream(&m, sorted.as_bytes(), 4).unwrap();
        assert_eq!(out, sorted.as_bytes());
        assert_eq!(s.id(), Some("3"));
    }

    fn rows(n: usize) -> Value {
        let rows: Vec<Value> = (0..n)
            .map(|i| json!({"patient_name": "Maria Lopez", "ssn": "536-22-8741", "mrn": 10_000_000 + i, "dx": "E11.9"}))
            .collect();
        let text: String = (0..n)
            .map(|_| "Maria Lopez called from (617) 432-1187.\n")
            .collect();
        json!({"jsonrpc": "2.0", "id": "req-7", "result": {
            "content": [{"type": "text", "text": text}],
            "structuredContent": {"rows": rows}}})
    }

    #[test]
    fn a_streamed_body_is_the_same_document_masked_at_any_chunking() {
        let m = masker();
        let body = serde_json::to_vec_pretty(&rows(30_000)).unwrap();
        assert!(body.len() > 2 * PIECE, "long enough to cut pieces");
        let mut first: Option<Vec<u8>> = None;
        for n in [1 << 16, 4093, 1 << 20] {
            let (out, s) = stream(&m, &body, n).unwrap();
            let text = String::from_utf8(out.clone()).unwrap();
            for phi in ["Maria", "Lopez", "536-22-8741", "432-1187", "10000042"] {
                assert!(!text.contains(phi), "{phi} at chunks of {n}");
            }
            let v: Value = serde_json::from_slice(&out).expect("still JSON");
            assert_eq!(v["id"], "req-7");
            assert_eq!(v["result"]["structuredContent"]["rows"][5]["dx"], "E11.9");
            assert!(v["result"]["structuredContent"]["rows"][5]["mrn"].is_null());
            assert_eq!(s.id.as_deref(), Some("\"req-7\""));
            assert!(s.counts.get(&Entity::Ssn) >= 30_000);
            if let Some(f) = &first {
                assert_eq!(f, &out, "the same output whatever the chunking");
            }
            first = Some(out);
        }
    }

    #[test]
    fn bad_json_ends_the_stream() {
        let m = masker();
        for bad in [
            &br#"{"jsonrpc":"2.0","id":1,"result":{"text":"SSN 536-22-8741"#[..],
            br#"{"a":1}{"b":2}"#,
            br#"{"a":nope}"#,
            br#"{"a":[1}"#,
            b"\xff",
        ] {
            assert!(
                stream(&m, bad, 7).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn streamed_text_is_masked_alike_at_any_chunking_and_cut_between_characters() {
        let mut profile = Profile::safe_harbor();
        profile.max_bytes = 300;
        let m = Masker::new(profile, b"k".to_vec());
        let line = "Patient Maria Lopez, SSN 536-22-8741, called from (617) 432-1187. Früh.\n";
        let text = line.repeat(40) + &"é".repeat(400);
        for chunk in [1, 7, 64, 1000, text.len()] {
            let mut streaming = TextStreamMasker::new(&m);
            let mut out = Vec::new();
            for c in text.as_bytes().chunks(chunk) {
                out.extend_from_slice(&streaming.feed(c).unwrap());
            }
            out.extend_from_slice(&streaming.finish().unwrap());
            let out = String::from_utf8(out).expect("cut between characters");
            assert!(
                !out.contains("536-22-8741") && !out.contains("Lopez"),
                "{chunk}"
            );
            assert_eq!(out.matches("Früh.").count(), 40, "{chunk}");
            assert!(out.ends_with(&"é".repeat(400)), "{chunk}");
            assert_eq!(
                streaming.counts.get(&crate::mask::Entity::Ssn),
                40,
                "{chunk}"
            );
        }
    }

    #[test]
    fn pieces_end_at_line_breaks_outside_escapes() {
        assert_eq!(piece_end(br"ab\ncd"), Some(4));
        // `\\n` is a backslash and an n, not a line break
        assert_eq!(piece_end(br"a b\\ncd"), Some(2));
        assert_eq!(piece_end(b"abc"), None);
    }
}
