//! Re-emitting messages: a body encoder per framing and a tokio-util `Encoder` of events, so the
//! proxy can forward what it decoded (possibly modified) with consistent framing.

use bytes::{BufMut, BytesMut};

use super::body::BodyFraming;
use super::chunked;
use super::decoder::Event;
use super::error::{CodecError, FramingError};
use super::head::{Headers, MessageHead};

/// Frames body bytes as `framing` says, checking that they add up.
#[derive(Debug)]
pub struct BodyEncoder {
    framing: BodyFraming,
    /// Bytes still owed for `Length` framing.
    remaining: u64,
}

impl BodyEncoder {
    pub fn new(framing: BodyFraming) -> BodyEncoder {
        let remaining = match framing {
            BodyFraming::Length(length) => length,
            _ => 0,
        };
        BodyEncoder { framing, remaining }
    }

    pub fn framing(&self) -> BodyFraming {
        self.framing
    }

    /// Writes a piece of body. More bytes than a Content-Length allows, or any byte of a body
    /// that must be empty, is `BodyLengthMismatch`.
    pub fn encode_chunk(&mut self, data: &[u8], dst: &mut BytesMut) -> Result<(), FramingError> {
        match self.framing {
            BodyFraming::Chunked => chunked::encode_chunk(data, dst),
            BodyFraming::UntilClose => dst.put_slice(data),
            BodyFraming::Empty | BodyFraming::Length(_) => {
                self.remaining = self
                    .remaining
                    .checked_sub(data.len() as u64)
                    .ok_or(FramingError::BodyLengthMismatch)?;
                dst.put_slice(data);
            }
        }
        Ok(())
    }

    /// Ends the body: the last chunk and trailers when chunked. Trailers cannot travel with any
    /// other framing, and a Content-Length body must be complete.
    pub fn encode_end(
        &mut self,
        trailers: &Headers,
        dst: &mut BytesMut,
    ) -> Result<(), FramingError> {
        if self.framing == BodyFraming::Chunked {
            chunked::encode_last_chunk(trailers, dst);
            return Ok(());
        }
        if !trailers.is_empty() {
            return Err(FramingError::TrailersNeedChunked);
        }
        if self.remaining != 0 {
            return Err(FramingError::BodyLengthMismatch);
        }
        Ok(())
    }
}

/// tokio-util `Encoder` of decoded events: a head is written as is and sets the body framing
/// (from the head's own fields, so edit Content-Length / Transfer-Encoding on the head before
/// sending it when the body changes size).
#[derive(Debug, Default)]
pub struct MessageEncoder {
    body: Option<BodyEncoder>,
}

impl MessageEncoder {
    pub fn new() -> MessageEncoder {
        MessageEncoder::default()
    }

    /// Between messages (no head written whose `End` is still due).
    pub fn is_idle(&self) -> bool {
        self.body.is_none()
    }
}

impl<H: MessageHead> tokio_util::codec::Encoder<Event<H>> for MessageEncoder {
    type Error = CodecError;

    fn encode(&mut self, event: Event<H>, dst: &mut BytesMut) -> Result<(), CodecError> {
        match event {
            Event::Head(head) => {
                if self.body.is_some() {
                    return Err(FramingError::EventOutOfOrder.into());
                }
                let framing = head.body_framing()?;
                head.encode(dst);
                self.body = Some(BodyEncoder::new(framing));
            }
            Event::BodyChunk(data) => {
                self.body
                    .as_mut()
                    .ok_or(FramingError::EventOutOfOrder)?
                    .encode_chunk(&data, dst)?;
            }
            Event::End(trailers) => {
                self.body
                    .take()
                    .ok_or(FramingError::EventOutOfOrder)?
                    .encode_end(&trailers, dst)?;
            }
        }
        Ok(())
    }
}
