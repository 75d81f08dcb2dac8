//! Collecting a whole message when the caller needs it in one piece (a JSON-RPC body), with a
//! size limit so a large body cannot exhaust memory.

use std::fmt;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::body::BodyFraming;
use super::decoder::{Event, MessageDecoder};
use super::error::{CodecError, FramingError};
use super::head::{Headers, MessageHead};
use super::redact::Redacted;

/// Accumulates body chunks up to a limit. A body that arrived as one chunk is returned without
/// copying.
pub struct BodyCollector {
    limit: usize,
    body: Collected,
}

#[derive(Default)]
enum Collected {
    #[default]
    Nothing,
    One(Bytes),
    Several(BytesMut),
}

impl BodyCollector {
    pub fn new(limit: usize) -> BodyCollector {
        BodyCollector {
            limit,
            body: Collected::Nothing,
        }
    }

    /// Adds a chunk; `BodyTooLarge` once the total would pass the limit.
    pub fn push(&mut self, chunk: Bytes) -> Result<(), FramingError> {
        if self.len() + chunk.len() > self.limit {
            return Err(FramingError::BodyTooLarge);
        }
        self.body = match std::mem::take(&mut self.body) {
            Collected::Nothing => Collected::One(chunk),
            Collected::One(first) => {
                let mut several = BytesMut::with_capacity(first.len() + chunk.len());
                several.extend_from_slice(&first);
                several.extend_from_slice(&chunk);
                Collected::Several(several)
            }
            Collected::Several(mut several) => {
                several.extend_from_slice(&chunk);
                Collected::Several(several)
            }
        };
        Ok(())
    }

    pub fn len(&self) -> usize {
        match &self.body {
            Collected::Nothing => 0,
            Collected::One(bytes) => bytes.len(),
            Collected::Several(bytes) => bytes.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn into_bytes(self) -> Bytes {
        match self.body {
            Collected::Nothing => Bytes::new(),
            Collected::One(bytes) => bytes,
            Collected::Several(bytes) => bytes.freeze(),
        }
    }
}

impl fmt::Debug for BodyCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyCollector")
            .field("limit", &self.limit)
            .field("body", &Redacted(self.len()))
            .finish()
    }
}

/// A whole message.
#[derive(Clone, PartialEq, Eq)]
pub struct Message<H> {
    pub head: H,
    pub body: Bytes,
    pub trailers: Headers,
}

impl<H: fmt::Debug> fmt::Debug for Message<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("head", &self.head)
            .field("body", &Redacted(self.body.len()))
            .field("trailers", &self.trailers)
            .finish()
    }
}

/// Reads the next whole message from `reader` through `decoder`, keeping unused bytes (a
/// pipelined next message) in `buf`. `Ok(None)` when the peer closed between messages or the
/// decoder has finished. A body over `body_limit` is `BodyTooLarge` — refused from the
/// Content-Length alone when it says so. Do not use it for a request that expects
/// `100 Continue` before the proxy has answered: the client would wait for that answer.
pub async fn read_message<R, D, H>(
    reader: &mut R,
    decoder: &mut D,
    buf: &mut BytesMut,
    body_limit: usize,
) -> Result<Option<Message<H>>, CodecError>
where
    R: AsyncRead + Unpin,
    D: MessageDecoder<Head = H>,
    H: MessageHead,
{
    const READ_SIZE: usize = 16 * 1024;
    let mut head = None;
    let mut body = BodyCollector::new(body_limit);
    let mut at_eof = false;
    loop {
        let event = if at_eof {
            decoder.decode_eof(buf)?
        } else {
            decoder.decode(buf)?
        };
        match event {
            Some(Event::Head(message_head)) => {
                if let Ok(BodyFraming::Length(length)) = message_head.body_framing()
                    && length > body_limit as u64
                {
                    return Err(FramingError::BodyTooLarge.into());
                }
                head = Some(message_head);
            }
            Some(Event::BodyChunk(chunk)) => body.push(chunk)?,
            Some(Event::End(trailers)) => {
                let head = head.ok_or(FramingError::EventOutOfOrder)?;
                return Ok(Some(Message {
                    head,
                    body: body.into_bytes(),
                    trailers,
                }));
            }
            // decode_eof reports a truncated message itself, so here the stream ended cleanly
            None if at_eof || decoder.finished().is_some() => return Ok(None),
            None => {
                buf.reserve(READ_SIZE);
                at_eof = reader.read_buf(buf).await? == 0;
            }
        }
    }
}
