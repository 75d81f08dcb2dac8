//! Incremental message decoders: they consume a `BytesMut` as bytes arrive and yield
//! `Head`, then `BodyChunk`s as body bytes come in, then `End`, for each message in order, so
//! bodies stream through without being buffered whole and pipelined messages are taken one
//! after the other from the same buffer.

use std::collections::VecDeque;
use std::fmt;

use bytes::{Buf, Bytes, BytesMut};

use super::body::{BodyDecoder, BodyEvent, BodyFraming};
use super::error::{CodecError, FramingError};
use super::head::{BlockScanner, Headers, Method, RequestHead, ResponseHead};
use super::redact::Redacted;

/// Limits and leniency of a decoder. The byte limits must be at least 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecoderConfig {
    /// Largest head (start line, fields, empty line) and largest trailer section, in bytes.
    pub max_head_bytes: usize,
    /// Most header fields in a head, and most fields in a trailer section.
    pub max_headers: usize,
    /// Longest chunk-size line (size and extensions), in bytes.
    pub max_chunk_line_bytes: usize,
    /// Accept LF without CR as a line end in heads, chunk lines and trailers.
    pub allow_bare_lf: bool,
}

impl DecoderConfig {
    pub const DEFAULT_MAX_HEAD_BYTES: usize = 64 * 1024;
    pub const DEFAULT_MAX_HEADERS: usize = 100;
    pub const DEFAULT_MAX_CHUNK_LINE_BYTES: usize = 4 * 1024;

    /// Strict: bare LF is refused, because a client's bare LF is a known smuggling vector.
    pub fn requests() -> DecoderConfig {
        DecoderConfig {
            max_head_bytes: Self::DEFAULT_MAX_HEAD_BYTES,
            max_headers: Self::DEFAULT_MAX_HEADERS,
            max_chunk_line_bytes: Self::DEFAULT_MAX_CHUNK_LINE_BYTES,
            allow_bare_lf: false,
        }
    }

    /// Bare LF accepted (RFC 9112 §2.2 allows it): the proxy re-serialises response heads with
    /// CRLF, so the leniency does not travel on to the client.
    pub fn responses() -> DecoderConfig {
        DecoderConfig {
            allow_bare_lf: true,
            ..DecoderConfig::requests()
        }
    }
}

/// One step of a decoded message stream.
#[derive(Clone, PartialEq, Eq)]
pub enum Event<H> {
    /// The head of the next message.
    Head(H),
    /// The next piece of its body (already de-chunked), a zero-copy slice of the input.
    BodyChunk(Bytes),
    /// The message is complete; the trailers of a chunked body, otherwise empty.
    End(Headers),
}

impl<H: fmt::Debug> fmt::Debug for Event<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Head(head) => f.debug_tuple("Head").field(head).finish(),
            Event::BodyChunk(data) => f
                .debug_tuple("BodyChunk")
                .field(&Redacted(data.len()))
                .finish(),
            Event::End(trailers) => f.debug_tuple("End").field(trailers).finish(),
        }
    }
}

pub type RequestEvent = Event<RequestHead>;
pub type ResponseEvent = Event<ResponseHead>;

/// Why a decoder takes no more messages from this connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finished {
    /// The last message asked for (or implied) the connection's close; bytes after it are not
    /// decoded.
    Close,
    /// The connection switched protocol (101, or a CONNECT tunnel); what follows is not HTTP/1.1
    /// and stays in the buffer for the caller to relay raw.
    Upgrade,
}

/// What follows the message being decoded.
#[derive(Clone, Copy, Debug)]
enum AfterMessage {
    NextMessage,
    Finish(Finished),
}

/// A head just parsed and what it implies for the bytes after it.
struct MessageStart<H> {
    head: H,
    framing: BodyFraming,
    after: AfterMessage,
}

#[derive(Debug)]
enum State {
    Head,
    Body {
        body: BodyDecoder,
        after: AfterMessage,
    },
    Finished(Finished),
    /// A framing error is final: the stream is out of sync and nothing after it can be trusted.
    Failed(FramingError),
}

/// The part of decoding that requests and responses share: finding heads, streaming bodies,
/// moving from message to message.
#[derive(Debug)]
struct Framer {
    config: DecoderConfig,
    state: State,
    head_scanner: BlockScanner,
    /// Requests may be preceded by empty lines (RFC 9112 §2.2), e.g. a stray CRLF after a body.
    skips_leading_crlf: bool,
}

impl Framer {
    fn new(config: DecoderConfig, skips_leading_crlf: bool) -> Framer {
        Framer {
            config,
            state: State::Head,
            head_scanner: BlockScanner::default(),
            skips_leading_crlf,
        }
    }

    fn decode<H>(
        &mut self,
        buf: &mut BytesMut,
        at_eof: bool,
        start: impl FnOnce(Bytes, &DecoderConfig) -> Result<MessageStart<H>, FramingError>,
    ) -> Result<Option<Event<H>>, FramingError> {
        let result = self.step(buf, at_eof, start);
        if let Err(error) = result {
            self.state = State::Failed(error);
        }
        result
    }

    fn step<H>(
        &mut self,
        buf: &mut BytesMut,
        at_eof: bool,
        start: impl FnOnce(Bytes, &DecoderConfig) -> Result<MessageStart<H>, FramingError>,
    ) -> Result<Option<Event<H>>, FramingError> {
        match &mut self.state {
            State::Failed(error) => Err(*error),
            State::Finished(_) => Ok(None),
            State::Head => {
                if self.skips_leading_crlf && !self.head_scanner.started() {
                    while buf.starts_with(b"\r\n") {
                        buf.advance(2);
                    }
                    if buf[..] == *b"\r" && !at_eof {
                        return Ok(None);
                    }
                }
                let max = self.config.max_head_bytes;
                match self.head_scanner.find_end(&buf[..buf.len().min(max)]) {
                    Some(end) => {
                        let started = start(buf.split_to(end).freeze(), &self.config)?;
                        self.state = State::Body {
                            body: BodyDecoder::new(started.framing),
                            after: started.after,
                        };
                        Ok(Some(Event::Head(started.head)))
                    }
                    None if buf.len() >= max => Err(FramingError::HeadTooLarge),
                    None if at_eof && !buf.is_empty() => Err(FramingError::TruncatedHead),
                    None => Ok(None),
                }
            }
            State::Body { body, after } => {
                let after = *after;
                let event = if at_eof {
                    body.decode_eof(buf, &self.config)?
                } else {
                    body.decode(buf, &self.config)?
                };
                match event {
                    None => Ok(None),
                    Some(BodyEvent::Data(data)) => Ok(Some(Event::BodyChunk(data))),
                    Some(BodyEvent::End(trailers)) => {
                        self.state = match after {
                            AfterMessage::NextMessage => State::Head,
                            AfterMessage::Finish(finished) => State::Finished(finished),
                        };
                        Ok(Some(Event::End(trailers)))
                    }
                }
            }
        }
    }

    fn is_idle(&self) -> bool {
        matches!(self.state, State::Head) && !self.head_scanner.started()
    }

    fn finished(&self) -> Option<Finished> {
        match self.state {
            State::Finished(finished) => Some(finished),
            _ => None,
        }
    }
}

/// The decoding interface shared by `RequestDecoder` and `ResponseDecoder`.
pub trait MessageDecoder {
    type Head;

    /// The next event from `buf`, consuming what it used; `None` until more bytes arrive (or
    /// once `finished`). After an error the decoder returns the same error forever: the stream
    /// is out of sync.
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Event<Self::Head>>, FramingError>;

    /// As `decode`, once the peer has closed its side: this ends a close-delimited response
    /// body; any other unfinished message is `TruncatedHead` / `TruncatedBody`.
    fn decode_eof(&mut self, buf: &mut BytesMut)
    -> Result<Option<Event<Self::Head>>, FramingError>;

    /// Between messages: the last message ended (or none started) and no byte of the next head
    /// has been consumed yet.
    fn is_idle(&self) -> bool;

    /// Set once the connection carries no further message for this decoder.
    fn finished(&self) -> Option<Finished>;
}

/// Decodes the requests a client sends on one connection.
#[derive(Debug)]
pub struct RequestDecoder {
    framer: Framer,
}

impl Default for RequestDecoder {
    fn default() -> Self {
        RequestDecoder::new(DecoderConfig::requests())
    }
}

impl RequestDecoder {
    pub fn new(config: DecoderConfig) -> RequestDecoder {
        RequestDecoder {
            framer: Framer::new(config, true),
        }
    }
}

impl MessageDecoder for RequestDecoder {
    type Head = RequestHead;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<RequestEvent>, FramingError> {
        self.framer.decode(buf, false, start_request)
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<RequestEvent>, FramingError> {
        self.framer.decode(buf, true, start_request)
    }

    fn is_idle(&self) -> bool {
        self.framer.is_idle()
    }

    fn finished(&self) -> Option<Finished> {
        self.framer.finished()
    }
}

fn start_request(
    block: Bytes,
    config: &DecoderConfig,
) -> Result<MessageStart<RequestHead>, FramingError> {
    let head = RequestHead::parse(block, config)?;
    let framing = head.body_framing()?;
    let after = if *head.method() == Method::CONNECT {
        AfterMessage::Finish(Finished::Upgrade)
    } else if head.keep_alive() {
        AfterMessage::NextMessage
    } else {
        AfterMessage::Finish(Finished::Close)
    };
    Ok(MessageStart {
        head,
        framing,
        after,
    })
}

/// Decodes the responses a server sends on one connection. Whether a response has a body
/// depends on the request it answers (HEAD, CONNECT), so the proxy announces each request it
/// forwards with `expect_response_to`, in order; without one, a GET is assumed.
#[derive(Debug)]
pub struct ResponseDecoder {
    framer: Framer,
    awaiting: VecDeque<Method>,
}

impl Default for ResponseDecoder {
    fn default() -> Self {
        ResponseDecoder::new(DecoderConfig::responses())
    }
}

impl ResponseDecoder {
    pub fn new(config: DecoderConfig) -> ResponseDecoder {
        ResponseDecoder {
            framer: Framer::new(config, false),
            awaiting: VecDeque::new(),
        }
    }

    /// Records that a request with `method` was sent; its final response is the next one
    /// not yet matched.
    pub fn expect_response_to(&mut self, method: Method) {
        self.awaiting.push_back(method);
    }

    /// Requests sent whose final response has not started yet.
    pub fn awaiting(&self) -> usize {
        self.awaiting.len()
    }

    fn decode_inner(
        &mut self,
        buf: &mut BytesMut,
        at_eof: bool,
    ) -> Result<Option<ResponseEvent>, FramingError> {
        let awaiting = &mut self.awaiting;
        self.framer.decode(buf, at_eof, |block, config| {
            let request_method = awaiting.front().cloned().unwrap_or(Method::GET);
            let head = ResponseHead::parse(block, request_method, config)?;
            let framing = head.body_framing()?;
            let after = if head.is_interim() {
                // the final response to the same request is still to come
                AfterMessage::NextMessage
            } else {
                awaiting.pop_front();
                let tunnel = *head.request_method() == Method::CONNECT
                    && (200..300).contains(&head.status());
                if head.status() == 101 || tunnel {
                    AfterMessage::Finish(Finished::Upgrade)
                } else if head.keep_alive() {
                    AfterMessage::NextMessage
                } else {
                    AfterMessage::Finish(Finished::Close)
                }
            };
            Ok(MessageStart {
                head,
                framing,
                after,
            })
        })
    }
}

impl MessageDecoder for ResponseDecoder {
    type Head = ResponseHead;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<ResponseEvent>, FramingError> {
        self.decode_inner(buf, false)
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<ResponseEvent>, FramingError> {
        self.decode_inner(buf, true)
    }

    fn is_idle(&self) -> bool {
        self.framer.is_idle()
    }

    fn finished(&self) -> Option<Finished> {
        self.framer.finished()
    }
}

/// tokio-util `Decoder` for use with `FramedRead`. On an upgrade, take the remaining bytes with
/// `FramedRead::into_parts` / `read_buffer_mut`.
macro_rules! impl_codec_decoder {
    ($decoder:ty, $head:ty) => {
        impl tokio_util::codec::Decoder for $decoder {
            type Item = Event<$head>;
            type Error = CodecError;

            fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Item>, CodecError> {
                Ok(<$decoder as MessageDecoder>::decode(self, buf)?)
            }

            fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Item>, CodecError> {
                Ok(<$decoder as MessageDecoder>::decode_eof(self, buf)?)
            }
        }
    };
}

impl_codec_decoder!(RequestDecoder, RequestHead);
impl_codec_decoder!(ResponseDecoder, ResponseHead);
