//! Server-sent events (`text/event-stream`), parsed incrementally over body chunks as they
//! stream (WHATWG HTML, "Parsing an event stream"), and re-encoded.
//!
//! Each event is yielded as soon as its terminating empty line arrives. Unlike a browser, the
//! parser also yields field blocks that carry no data (only `id:` or `retry:`), and yields
//! comments as their own item instead of dropping them, so a proxy re-emitting the stream keeps
//! reconnection state and keep-alive comments intact. Unknown fields are ignored, as the spec says.

use std::borrow::Cow;
use std::fmt;

use bytes::{BufMut, BytesMut};

use super::redact::Redacted;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One event: the fields of a block of lines ended by an empty line. Multiple `data:` lines are
/// joined with "\n"; for the other fields the last occurrence wins.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; `None` means the default type, "message".
    pub event: Option<String>,
    /// The `data:` lines joined with "\n"; `None` when the block had no `data:` line, in which
    /// case a browser would not fire it.
    pub data: Option<String>,
    /// The `id:` field (`Some("")` resets the last event ID).
    pub id: Option<String>,
    /// The `retry:` field, in milliseconds.
    pub retry: Option<u64>,
}

impl fmt::Debug for SseEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseEvent")
            .field("event", &self.event)
            .field("data", &self.data.as_ref().map(|data| Redacted(data.len())))
            .field("id", &self.id)
            .field("retry", &self.retry)
            .finish()
    }
}

impl SseEvent {
    /// The event type as a browser would dispatch it.
    pub fn event_type(&self) -> &str {
        self.event.as_deref().unwrap_or("message")
    }

    /// Writes the event, one field per line, ending with the empty line. Data with line breaks
    /// becomes several `data:` lines. An event type or id that holds a line break (or an id that
    /// holds NUL) cannot be written without changing the stream: `BadField`.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), SseError> {
        self.encode_fields(dst)?;
        if let Some(data) = &self.data {
            let data: Cow<'_, str> = if data.contains('\r') {
                data.replace("\r\n", "\n").into()
            } else {
                data.into()
            };
            for line in data.split(['\r', '\n']) {
                put_field(dst, "data", line);
            }
        }
        dst.put_u8(b'\n');
        Ok(())
    }

    /// The `event:`, `id:` and `retry:` lines.
    fn encode_fields(&self, dst: &mut BytesMut) -> Result<(), SseError> {
        let breaks_line = |text: &str| text.contains(['\r', '\n']);
        if self.event.as_deref().is_some_and(breaks_line)
            || self
                .id
                .as_deref()
                .is_some_and(|id| breaks_line(id) || id.contains('\0'))
        {
            return Err(SseError::BadField);
        }
        if let Some(event) = &self.event {
            put_field(dst, "event", event);
        }
        if let Some(id) = &self.id {
            put_field(dst, "id", id);
        }
        if let Some(retry) = self.retry {
            put_field(dst, "retry", &retry.to_string());
        }
        Ok(())
    }
}

// "name: value\n": the parser strips exactly one space after the colon, so a value that starts
// with a space survives.
fn put_field(dst: &mut BytesMut, name: &str, value: &str) {
    dst.reserve(name.len() + value.len() + 3);
    dst.put_slice(name.as_bytes());
    dst.put_slice(b": ");
    dst.put_slice(value.as_bytes());
    dst.put_u8(b'\n');
}

/// What the parser yields.
#[derive(Clone, PartialEq, Eq)]
pub enum SseItem {
    Event(SseEvent),
    /// A comment line, without its leading ':' (servers send these as keep-alives).
    Comment(String),
    /// Part of an event whose data grew past the parser's spill size
    /// (`SseParser::spill_over`): yielded as it arrives instead of held.
    Spill(Spill),
}

/// The parts of a spilled event, in order: `Start`, any number of `Data`,
/// `End`. Together they are the event `Start`'s fields with `End`'s, whose
/// data is the `Data` bytes in order.
#[derive(Clone, PartialEq, Eq)]
pub enum Spill {
    /// The fields read before the data grew too large (`data` is `None`).
    Start(SseEvent),
    /// More of the data (its lines joined with "\n", as in `SseEvent::data`).
    Data(Vec<u8>),
    /// The event's empty line came; the fields read after `Start` (`data`
    /// is `None`).
    End(SseEvent),
}

impl fmt::Debug for SseItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SseItem::Event(event) => f.debug_tuple("Event").field(event).finish(),
            SseItem::Comment(text) => f
                .debug_tuple("Comment")
                .field(&Redacted(text.len()))
                .finish(),
            SseItem::Spill(Spill::Start(event)) => {
                f.debug_tuple("SpillStart").field(event).finish()
            }
            SseItem::Spill(Spill::Data(data)) => f
                .debug_tuple("SpillData")
                .field(&Redacted(data.len()))
                .finish(),
            SseItem::Spill(Spill::End(event)) => f.debug_tuple("SpillEnd").field(event).finish(),
        }
    }
}

impl SseItem {
    /// Writes the item. A spilled event is written part by part and needs
    /// no state: `Start` writes its fields and opens a `data:` line, `Data`
    /// continues it (a line break in the data opens the next `data:` line),
    /// and `End` closes the line, writes its fields and the empty line.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), SseError> {
        match self {
            SseItem::Event(event) => event.encode(dst),
            SseItem::Spill(Spill::Start(event)) => {
                event.encode_fields(dst)?;
                dst.put_slice(b"data: ");
                Ok(())
            }
            SseItem::Spill(Spill::Data(data)) => {
                let mut rest = &data[..];
                while let Some(at) = memchr::memchr2(b'\r', b'\n', rest) {
                    dst.put_slice(&rest[..at]);
                    dst.put_slice(b"\ndata: ");
                    let crlf = rest[at] == b'\r' && rest.get(at + 1) == Some(&b'\n');
                    rest = &rest[at + 1 + usize::from(crlf)..];
                }
                dst.put_slice(rest);
                Ok(())
            }
            SseItem::Spill(Spill::End(event)) => {
                dst.put_u8(b'\n');
                event.encode_fields(dst)?;
                dst.put_u8(b'\n');
                Ok(())
            }
            SseItem::Comment(text) if text.contains(['\r', '\n']) => Err(SseError::BadField),
            SseItem::Comment(text) => {
                dst.put_u8(b':');
                dst.put_slice(text.as_bytes());
                dst.put_u8(b'\n');
                Ok(())
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SseError {
    /// One event (its pending line plus the fields gathered so far) exceeds the parser's limit.
    EventTooLarge,
    /// Encoder: a field that would break the line structure.
    BadField,
}

impl SseError {
    /// Stable short reason, suitable for records.
    pub fn reason(self) -> &'static str {
        match self {
            SseError::EventTooLarge => "sse-event-too-large",
            SseError::BadField => "sse-bad-field",
        }
    }
}

impl fmt::Display for SseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for SseError {}

/// Incremental `text/event-stream` parser: feed body chunks in order, split anywhere.
pub struct SseParser {
    max_event_bytes: usize,
    /// The stream's first bytes, held until it is clear whether they are a BOM.
    bom_probe: Vec<u8>,
    bom_settled: bool,
    /// The line being received.
    line: Vec<u8>,
    /// The previous line ended in CR, so an LF at the start of the next chunk belongs to it.
    after_cr: bool,
    pending: SseEvent,
    /// Bytes of the field lines gathered into `pending`.
    pending_bytes: usize,
    last_event_id: String,
    failed: Option<SseError>,
    /// Data past this many bytes is yielded as it arrives (`Spill`).
    spill_over: Option<usize>,
    /// The pending event is spilling: its start and data so far have been
    /// yielded.
    spilling: Option<Spilling>,
    /// The line being received is a spilling `data:` line: its bytes are
    /// yielded, not held.
    spilling_line: bool,
}

/// What a spilling event holds back until its end.
#[derive(Default)]
struct Spilling {
    /// The id read before its data (it went out with its start), for
    /// `last_event_id`.
    id: Option<String>,
    /// Comments read inside it, yielded after its end (its `data:` line is
    /// open until then).
    comments: Vec<String>,
}

impl fmt::Debug for SseParser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseParser")
            .field("max_event_bytes", &self.max_event_bytes)
            .field("pending", &self.pending)
            .field("line", &Redacted(self.line.len()))
            .field("failed", &self.failed)
            .finish()
    }
}

impl Default for SseParser {
    fn default() -> Self {
        SseParser::new()
    }
}

impl SseParser {
    /// Large enough for a multi-megabyte tool result in one event.
    pub const DEFAULT_MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

    pub fn new() -> SseParser {
        SseParser::with_max_event_bytes(Self::DEFAULT_MAX_EVENT_BYTES)
    }

    pub fn with_max_event_bytes(max_event_bytes: usize) -> SseParser {
        SseParser {
            max_event_bytes,
            bom_probe: Vec::with_capacity(BOM.len()),
            bom_settled: false,
            line: Vec::new(),
            after_cr: false,
            pending: SseEvent::default(),
            pending_bytes: 0,
            last_event_id: String::new(),
            failed: None,
            spill_over: None,
            spilling: None,
            spilling_line: false,
        }
    }

    /// From now on, an event whose data grows past `bytes` is yielded in
    /// parts as it arrives (`SseItem::Spill`) instead of held whole, so a
    /// consumer that can work on pieces needs no room for all of it; the
    /// event size limit then counts its other fields only.
    pub fn spill_over(mut self, bytes: usize) -> SseParser {
        self.spill_over = Some(bytes);
        self
    }

    /// The id of the last event completed (what a client would reconnect with).
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// Parses the next piece of the stream and returns the items it completed. After an error
    /// the parser returns the same error forever.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<SseItem>, SseError> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        let mut items = Vec::new();
        match self.feed_stream(chunk, &mut items) {
            Ok(()) => Ok(items),
            Err(error) => {
                self.failed = Some(error);
                Err(error)
            }
        }
    }

    fn feed_stream(&mut self, chunk: &[u8], items: &mut Vec<SseItem>) -> Result<(), SseError> {
        if self.bom_settled {
            return self.feed_lines(chunk, items);
        }
        let wanted = (BOM.len() - self.bom_probe.len()).min(chunk.len());
        let (probe, rest) = chunk.split_at(wanted);
        self.bom_probe.extend_from_slice(probe);
        if self.bom_probe.len() < BOM.len() && BOM.starts_with(&self.bom_probe) {
            return Ok(());
        }
        self.bom_settled = true;
        let start = std::mem::take(&mut self.bom_probe);
        self.feed_lines(start.strip_prefix(BOM).unwrap_or(&start), items)?;
        self.feed_lines(rest, items)
    }

    fn feed_lines(&mut self, mut input: &[u8], items: &mut Vec<SseItem>) -> Result<(), SseError> {
        while !input.is_empty() {
            if std::mem::take(&mut self.after_cr) && input[0] == b'\n' {
                input = &input[1..];
                continue;
            }
            let Some(end) = memchr::memchr2(b'\r', b'\n', input) else {
                return self.extend_line(input, items);
            };
            self.extend_line(&input[..end], items)?;
            self.after_cr = input[end] == b'\r';
            input = &input[end + 1..];
            self.end_line(items);
        }
        Ok(())
    }

    fn extend_line(&mut self, bytes: &[u8], items: &mut Vec<SseItem>) -> Result<(), SseError> {
        if self.spilling_line {
            if !bytes.is_empty() {
                items.push(SseItem::Spill(Spill::Data(bytes.to_vec())));
            }
            return Ok(());
        }
        let held = self.pending_bytes + self.line.len() + bytes.len();
        // Past `data:` and the byte after it, which says whether there is
        // a space to drop, the line can go out as it comes.
        if self.spill_over.is_some_and(|limit| held > limit)
            && self.line.len() + bytes.len() > b"data:".len()
        {
            self.line.extend_from_slice(bytes);
            if self.line.starts_with(b"data:") {
                self.spill_line(items);
                return Ok(());
            }
            self.line.truncate(self.line.len() - bytes.len());
        }
        if held > self.max_event_bytes {
            return Err(SseError::EventTooLarge);
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    /// The `data:` line being received takes the pending event over the
    /// spill size: the event's start and data so far are yielded, and the
    /// rest of the line will be as it comes.
    fn spill_line(&mut self, items: &mut Vec<SseItem>) {
        let value = split_field(&self.line).1.to_vec();
        self.line.clear();
        self.open_data_line(items);
        items.push(SseItem::Spill(Spill::Data(value)));
        self.spilling_line = true;
    }

    /// What goes before a further data line of a spilling event: the
    /// first time, the event's start and its data so far; after that, the
    /// line break between its data lines.
    fn open_data_line(&mut self, items: &mut Vec<SseItem>) {
        if self.spilling.is_some() {
            items.push(SseItem::Spill(Spill::Data(b"\n".to_vec())));
            return;
        }
        let data = self.pending.data.take();
        let start = std::mem::take(&mut self.pending);
        self.spilling = Some(Spilling {
            id: start.id.clone(),
            comments: Vec::new(),
        });
        self.pending_bytes = 0;
        items.push(SseItem::Spill(Spill::Start(start)));
        if let Some(data) = data {
            let mut data = data.into_bytes();
            data.push(b'\n');
            items.push(SseItem::Spill(Spill::Data(data)));
        }
    }

    fn end_line(&mut self, items: &mut Vec<SseItem>) {
        if std::mem::take(&mut self.spilling_line) {
            return;
        }
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            self.dispatch(items);
        } else if let Some(comment) = line.strip_prefix(b":") {
            let comment = String::from_utf8_lossy(comment).into_owned();
            match &mut self.spilling {
                Some(spilling) => {
                    self.pending_bytes += line.len();
                    spilling.comments.push(comment);
                }
                None => items.push(SseItem::Comment(comment)),
            }
        } else if self.spilling.is_some() && split_field(&line).0 == b"data" {
            // a spilling event's further data lines go out as they are read
            self.open_data_line(items);
            let value = split_field(&line).1.to_vec();
            items.push(SseItem::Spill(Spill::Data(value)));
        } else {
            self.pending_bytes += line.len();
            self.apply_field(&line);
        }
        // keep the allocation for the next line
        self.line = line;
        self.line.clear();
    }

    fn apply_field(&mut self, line: &[u8]) {
        let (name, value) = split_field(line);
        let value = String::from_utf8_lossy(value);
        match name {
            b"event" => self.pending.event = Some(value.into_owned()),
            b"data" => match &mut self.pending.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(&value);
                }
                None => self.pending.data = Some(value.into_owned()),
            },
            b"id" if !value.contains('\0') => self.pending.id = Some(value.into_owned()),
            b"retry" if !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_digit()) => {
                // a value too large for u64 is ignored like any other invalid retry
                if let Ok(milliseconds) = value.parse() {
                    self.pending.retry = Some(milliseconds);
                }
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, items: &mut Vec<SseItem>) {
        let event = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let spilled = self.spilling.take();
        let spilled_id = spilled.as_ref().and_then(|s| s.id.as_ref());
        if let Some(id) = event.id.as_ref().or(spilled_id) {
            self.last_event_id.clone_from(id);
        }
        if let Some(spilled) = spilled {
            items.push(SseItem::Spill(Spill::End(event)));
            items.extend(spilled.comments.into_iter().map(SseItem::Comment));
        } else if event != SseEvent::default() {
            items.push(SseItem::Event(event));
        }
    }
}

/// A field line's name and value: the value after the first colon and the
/// one space that may follow it; a line without a colon is a name alone.
fn split_field(line: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr(b':', line) {
        Some(colon) => {
            let value = &line[colon + 1..];
            (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
        }
        None => (line, &b""[..]),
    }
}
