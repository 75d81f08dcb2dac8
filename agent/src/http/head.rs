//! Message heads: the start line and header fields, held as zero-copy slices of the received
//! bytes, with the case-insensitive lookup and in-place editing the proxy needs (credential
//! stripping and injection), and re-serialisation.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};
use nom::Parser;
use nom::combinator::all_consuming;

use super::body::{self, BodyFraming};
use super::decoder::DecoderConfig;
use super::error::FramingError;
use super::grammar::{self, finish};
use super::redact::Redacted;

/// A request method: a token, compared case-sensitively (RFC 9110 §9.1).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Method(Bytes);

impl Method {
    pub const GET: Method = Method(Bytes::from_static(b"GET"));
    pub const HEAD: Method = Method(Bytes::from_static(b"HEAD"));
    pub const POST: Method = Method(Bytes::from_static(b"POST"));
    pub const PUT: Method = Method(Bytes::from_static(b"PUT"));
    pub const DELETE: Method = Method(Bytes::from_static(b"DELETE"));
    pub const OPTIONS: Method = Method(Bytes::from_static(b"OPTIONS"));
    pub const PATCH: Method = Method(Bytes::from_static(b"PATCH"));
    pub const CONNECT: Method = Method(Bytes::from_static(b"CONNECT"));
    pub const TRACE: Method = Method(Bytes::from_static(b"TRACE"));

    /// A method from its token; anything but a non-empty token is `BadRequestLine`.
    pub fn from_token(token: impl Into<Bytes>) -> Result<Method, FramingError> {
        let token = token.into();
        if grammar::is_token(&token) {
            Ok(Method(token))
        } else {
            Err(FramingError::BadRequestLine)
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("a method token is ASCII")
    }
}

impl fmt::Debug for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The HTTP/1.x versions this layer speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            Version::Http10 => b"HTTP/1.0",
            Version::Http11 => b"HTTP/1.1",
        }
    }
}

/// One header (or trailer) field as received: name casing kept, value without surrounding OWS.
#[derive(Clone, PartialEq, Eq)]
pub struct HeaderField {
    name: Bytes,
    value: Bytes,
}

impl HeaderField {
    pub fn name(&self) -> &Bytes {
        &self.name
    }

    pub fn value(&self) -> &Bytes {
        &self.value
    }

    /// The name as text (a field name is a token, so ASCII).
    pub fn name_str(&self) -> &str {
        std::str::from_utf8(&self.name).expect("a field name is a token")
    }

    fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name.as_bytes())
    }
}

impl fmt::Debug for HeaderField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = String::from_utf8_lossy(&self.name);
        write!(f, "{name}: {:?}", Redacted(self.value.len()))
    }
}

/// Header or trailer fields in received order. Lookups are case-insensitive.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers {
    fields: Vec<HeaderField>,
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.fields).finish()
    }
}

impl Headers {
    pub fn new() -> Headers {
        Headers::default()
    }

    /// Fields parsed by `grammar::field_block`, as slices of `block`.
    fn from_block(block: &Bytes, fields: Vec<grammar::Field<'_>>) -> Headers {
        let fields = fields
            .into_iter()
            .map(|(name, value)| HeaderField {
                name: block.slice_ref(name),
                value: block.slice_ref(value),
            })
            .collect();
        Headers { fields }
    }

    /// Parses a complete trailer section (field lines and the final empty line).
    pub(crate) fn parse_trailers(
        block: Bytes,
        config: &DecoderConfig,
    ) -> Result<Headers, FramingError> {
        let fields = finish(
            grammar::field_block(config.allow_bare_lf, config.max_headers)(&block),
            FramingError::BadHeaderName,
        )?;
        Ok(Headers::from_block(&block, fields))
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &HeaderField> {
        self.fields.iter()
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&Bytes> {
        self.fields
            .iter()
            .find(|field| field.is(name))
            .map(HeaderField::value)
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Bytes> + 'a {
        self.fields
            .iter()
            .filter(move |field| field.is(name))
            .map(HeaderField::value)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Whether `token` is an element of the comma-separated list `name` (e.g. Connection: close),
    /// case-insensitively.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.get_all(name)
            .flat_map(|value| grammar::list_elements(value))
            .any(|element| element.eq_ignore_ascii_case(token.as_bytes()))
    }

    /// Adds a field after the others.
    pub fn append(
        &mut self,
        name: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> Result<(), FramingError> {
        let field = Self::validated(name.into(), value.into())?;
        self.fields.push(field);
        Ok(())
    }

    /// Replaces every field called `name` with one field at the position of the first (or
    /// appends it), so a replaced credential keeps its place in the head.
    pub fn set(
        &mut self,
        name: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> Result<(), FramingError> {
        let field = Self::validated(name.into(), value.into())?;
        let same_name = |existing: &HeaderField| existing.name.eq_ignore_ascii_case(&field.name);
        match self.fields.iter().position(same_name) {
            Some(first) => {
                let mut index = 0;
                self.fields.retain(|existing| {
                    let keep = index <= first || !same_name(existing);
                    index += 1;
                    keep
                });
                self.fields[first] = field;
            }
            None => self.fields.push(field),
        }
        Ok(())
    }

    /// Removes every field called `name`; returns how many there were.
    pub fn remove(&mut self, name: &str) -> usize {
        self.remove_matching(|field| field.is(name))
    }

    /// Removes every field `matches` selects (e.g. every client credential header); returns
    /// how many there were.
    pub fn remove_matching(&mut self, mut matches: impl FnMut(&HeaderField) -> bool) -> usize {
        let before = self.fields.len();
        self.fields.retain(|field| !matches(field));
        before - self.fields.len()
    }

    /// Frames the body with Content-Length `length` (dropping Transfer-Encoding).
    pub fn set_content_length(&mut self, length: u64) {
        self.remove("transfer-encoding");
        self.set("Content-Length", length.to_string())
            .expect("digits are a valid value");
    }

    /// Frames the body as chunked (dropping Content-Length).
    pub fn set_chunked(&mut self) {
        self.remove("content-length");
        self.set("Transfer-Encoding", "chunked")
            .expect("a valid field");
    }

    /// Writes `name: value CRLF` per field, then the empty line that ends the block.
    pub fn encode(&self, dst: &mut BytesMut) {
        for field in &self.fields {
            dst.reserve(field.name.len() + field.value.len() + 4);
            dst.put_slice(&field.name);
            dst.put_slice(b": ");
            dst.put_slice(&field.value);
            dst.put_slice(b"\r\n");
        }
        dst.put_slice(b"\r\n");
    }

    // Rejects what would let a caller inject a field or a line (CR, LF, NUL).
    fn validated(name: Bytes, value: Bytes) -> Result<HeaderField, FramingError> {
        if !grammar::is_token(&name) {
            return Err(FramingError::BadHeaderName);
        }
        if !grammar::is_field_value(&value) {
            return Err(FramingError::BadHeaderValue);
        }
        Ok(HeaderField { name, value })
    }
}

/// Whether the connection stays open after this message (RFC 9112 §9.3).
fn persistent(version: Version, headers: &Headers) -> bool {
    if headers.has_token("connection", "close") {
        return false;
    }
    match version {
        Version::Http11 => true,
        Version::Http10 => headers.has_token("connection", "keep-alive"),
    }
}

/// What a request's Expect field asks of the server (RFC 9110 §10.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expectation {
    /// No expectation (also an HTTP/1.0 request's 100-continue, which must be ignored).
    Absent,
    /// `100-continue`: the client waits for a 100 (or a final status) before sending the body.
    Continue,
    /// Anything else: the server should answer 417.
    Unsupported,
}

/// What the encoder needs from a head, for requests and responses alike.
pub trait MessageHead {
    /// Writes the start line and the fields, ending with the empty line.
    fn encode(&self, dst: &mut BytesMut);
    /// How the body that follows this head is delimited, from the head as it is now.
    fn body_framing(&self) -> Result<BodyFraming, FramingError>;
}

/// A request line and its header fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    method: Method,
    target: Bytes,
    version: Version,
    headers: Headers,
}

impl RequestHead {
    /// A head with no fields; `target` must be visible ASCII.
    pub fn new(
        method: Method,
        target: impl Into<Bytes>,
        version: Version,
    ) -> Result<RequestHead, FramingError> {
        let mut head = RequestHead {
            method,
            target: Bytes::new(),
            version,
            headers: Headers::new(),
        };
        head.set_target(target)?;
        Ok(head)
    }

    /// Parses a complete head block (through the empty line).
    pub(crate) fn parse(block: Bytes, config: &DecoderConfig) -> Result<RequestHead, FramingError> {
        let rule = (
            grammar::request_line(config.allow_bare_lf),
            grammar::field_block(config.allow_bare_lf, config.max_headers),
        );
        let ((method, target, version), fields) = finish(
            all_consuming(rule).parse(&block),
            FramingError::BadRequestLine,
        )?;
        let head = RequestHead {
            method: Method(block.slice_ref(method)),
            target: block.slice_ref(target),
            version,
            headers: Headers::from_block(&block, fields),
        };
        // a request with no Host or two of them can be routed differently by different hops
        match head.headers.get_all("host").count() {
            0 if version == Version::Http11 => Err(FramingError::MissingHost),
            0 | 1 => Ok(head),
            _ => Err(FramingError::DuplicateHost),
        }
    }

    pub fn method(&self) -> &Method {
        &self.method
    }

    pub fn target(&self) -> &Bytes {
        &self.target
    }

    pub fn set_target(&mut self, target: impl Into<Bytes>) -> Result<(), FramingError> {
        let target = target.into();
        if target.is_empty() || !target.iter().all(|&byte| grammar::is_target_byte(byte)) {
            return Err(FramingError::BadRequestLine);
        }
        self.target = target;
        Ok(())
    }

    pub fn version(&self) -> Version {
        self.version
    }

    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    pub fn headers_mut(&mut self) -> &mut Headers {
        &mut self.headers
    }

    /// How the request body is delimited; an error names the smuggling defence that rejected it.
    pub fn body_framing(&self) -> Result<BodyFraming, FramingError> {
        body::request_framing(self.version, &self.headers)
    }

    /// Whether the client wants the connection kept open after this request.
    pub fn keep_alive(&self) -> bool {
        persistent(self.version, &self.headers)
    }

    /// The Expect field, for the proxy to decide whether to send `100 Continue` itself,
    /// forward the expectation upstream, or refuse with 417.
    pub fn expectation(&self) -> Expectation {
        let mut elements = self
            .headers
            .get_all("expect")
            .flat_map(|value| grammar::list_elements(value))
            .peekable();
        if elements.peek().is_none() {
            return Expectation::Absent;
        }
        let only_continue = elements.all(|element| element.eq_ignore_ascii_case(b"100-continue"));
        match (only_continue, self.version) {
            (true, Version::Http11) => Expectation::Continue,
            (true, Version::Http10) => Expectation::Absent,
            (false, _) => Expectation::Unsupported,
        }
    }

    /// Writes the request line and fields (normalised to `name: value` and CRLF).
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.reserve(self.method.0.len() + self.target.len() + 12);
        dst.put_slice(&self.method.0);
        dst.put_u8(b' ');
        dst.put_slice(&self.target);
        dst.put_u8(b' ');
        dst.put_slice(self.version.as_bytes());
        dst.put_slice(b"\r\n");
        self.headers.encode(dst);
    }
}

impl MessageHead for RequestHead {
    fn encode(&self, dst: &mut BytesMut) {
        RequestHead::encode(self, dst)
    }

    fn body_framing(&self) -> Result<BodyFraming, FramingError> {
        RequestHead::body_framing(self)
    }
}

/// A status line and its header fields, with the method of the request it answers (which
/// decides whether it has a body: HEAD, CONNECT).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    version: Version,
    status: u16,
    reason: Bytes,
    headers: Headers,
    request_method: Method,
}

impl ResponseHead {
    /// A head with no fields, answering a GET unless `set_request_method` says otherwise.
    pub fn new(
        version: Version,
        status: u16,
        reason: impl Into<Bytes>,
    ) -> Result<ResponseHead, FramingError> {
        let reason = reason.into();
        if !(100..=999).contains(&status) || !grammar::is_field_value(&reason) {
            return Err(FramingError::BadStatusLine);
        }
        Ok(ResponseHead {
            version,
            status,
            reason,
            headers: Headers::new(),
            request_method: Method::GET,
        })
    }

    /// Parses a complete head block (through the empty line) answering `request_method`.
    pub(crate) fn parse(
        block: Bytes,
        request_method: Method,
        config: &DecoderConfig,
    ) -> Result<ResponseHead, FramingError> {
        let rule = (
            grammar::status_line(config.allow_bare_lf),
            grammar::field_block(config.allow_bare_lf, config.max_headers),
        );
        let ((version, status, reason), fields) = finish(
            all_consuming(rule).parse(&block),
            FramingError::BadStatusLine,
        )?;
        Ok(ResponseHead {
            version,
            status,
            reason: block.slice_ref(reason),
            headers: Headers::from_block(&block, fields),
            request_method,
        })
    }

    pub fn version(&self) -> Version {
        self.version
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    pub fn reason(&self) -> &Bytes {
        &self.reason
    }

    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    pub fn headers_mut(&mut self) -> &mut Headers {
        &mut self.headers
    }

    pub fn request_method(&self) -> &Method {
        &self.request_method
    }

    pub fn set_request_method(&mut self, method: Method) {
        self.request_method = method;
    }

    /// A 1xx response other than 101: the final response to the same request follows it.
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }

    /// How the response body is delimited; an error names the defect.
    pub fn body_framing(&self) -> Result<BodyFraming, FramingError> {
        body::response_framing(
            &self.request_method,
            self.status,
            self.version,
            &self.headers,
        )
    }

    /// Whether the connection can carry another response after this one.
    pub fn keep_alive(&self) -> bool {
        persistent(self.version, &self.headers)
            && !matches!(self.body_framing(), Ok(BodyFraming::UntilClose) | Err(_))
    }

    /// Whether the body is a `text/event-stream` (parameters and case ignored).
    pub fn is_event_stream(&self) -> bool {
        self.headers.get("content-type").is_some_and(|value| {
            let media_type = value.split(|&byte| byte == b';').next().unwrap_or_default();
            media_type
                .trim_ascii()
                .eq_ignore_ascii_case(b"text/event-stream")
        })
    }

    /// Writes the status line and fields (normalised to `name: value` and CRLF).
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.reserve(self.reason.len() + 15);
        dst.put_slice(self.version.as_bytes());
        dst.put_slice(format!(" {:03} ", self.status).as_bytes());
        dst.put_slice(&self.reason);
        dst.put_slice(b"\r\n");
        self.headers.encode(dst);
    }
}

impl MessageHead for ResponseHead {
    fn encode(&self, dst: &mut BytesMut) {
        ResponseHead::encode(self, dst)
    }

    fn body_framing(&self) -> Result<BodyFraming, FramingError> {
        ResponseHead::body_framing(self)
    }
}

/// Finds where a header block (a head, or a trailer section) ends: just after the first empty
/// line. It resumes where the previous call stopped, so a head that arrives a byte at a time is
/// still scanned once.
#[derive(Debug, Default)]
pub(crate) struct BlockScanner {
    line_start: usize,
    scanned: usize,
}

impl BlockScanner {
    /// The length of the block at the start of `buf`, once the block is complete. `buf` must
    /// be the same buffer as in previous calls, possibly longer.
    pub(crate) fn find_end(&mut self, buf: &[u8]) -> Option<usize> {
        while let Some(offset) = memchr::memchr(b'\n', &buf[self.scanned..]) {
            let line_feed = self.scanned + offset;
            self.scanned = line_feed + 1;
            // CRLF or bare LF both end the scan; whether bare LF is acceptable is the grammar's call
            if matches!(&buf[self.line_start..line_feed], b"" | b"\r") {
                *self = BlockScanner::default();
                return Some(line_feed + 1);
            }
            self.line_start = line_feed + 1;
        }
        self.scanned = buf.len();
        None
    }

    /// Whether scanning has begun on the current block.
    pub(crate) fn started(&self) -> bool {
        self.scanned > 0
    }
}
