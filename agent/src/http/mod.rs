//! HTTP/1.1 framing for the MCP data path: heads, bodies (Content-Length, chunked with
//! trailers, close-delimited), keep-alive and pipelining, the smuggling defences, and SSE.
//!
//! Parsing is incremental and zero-copy: decoders consume a `BytesMut` as bytes arrive and hand
//! out heads whose fields, and body chunks, are `Bytes` slices of the received buffer. Every
//! rejection is a `FramingError` with a stable `reason()` for the record.
//!
//! Module map: `grammar` (nom rules), `head` (start line + fields), `body` (framing rules and
//! smuggling checks), `chunked` (chunked coding), `decoder` (the event stream), `encoder`
//! (re-emission), `collect` (whole-message helpers), `sse` (event streams), `error`.

mod body;
mod chunked;
mod collect;
mod decoder;
mod encoder;
mod error;
mod grammar;
mod head;
mod redact;
mod sse;

#[cfg(test)]
mod tests;

pub use body::BodyFraming;
pub use collect::{BodyCollector, Message, read_message};
pub use decoder::{
    DecoderConfig, Event, Finished, MessageDecoder, RequestDecoder, RequestEvent, ResponseDecoder,
    ResponseEvent,
};
pub use encoder::{BodyEncoder, MessageEncoder};
pub use error::{CodecError, FramingError};
pub use head::{
    Expectation, HeaderField, Headers, MessageHead, Method, RequestHead, ResponseHead, Version,
};
pub use sse::{Spill, SseError, SseEvent, SseItem, SseParser};
