//! The chunked transfer coding (RFC 9112 §7.1), both ways: an incremental decoder that hands out
//! chunk data as it arrives, and the encoder functions.

use bytes::{Buf, BufMut, BytesMut};

use super::body::BodyEvent;
use super::decoder::DecoderConfig;
use super::error::FramingError;
use super::grammar;
use super::head::{BlockScanner, Headers};

#[derive(Debug, Default)]
enum ChunkState {
    /// Awaiting `chunk-size [ext] CRLF`.
    #[default]
    SizeLine,
    /// Inside chunk data.
    Data { remaining: u64 },
    /// Awaiting the CRLF after chunk data.
    DataEnd,
    /// After the last chunk, awaiting the trailer section and its empty line.
    Trailers,
}

#[derive(Debug, Default)]
pub(crate) struct ChunkedDecoder {
    state: ChunkState,
    trailer_scanner: BlockScanner,
}

impl ChunkedDecoder {
    pub(crate) fn decode(
        &mut self,
        buf: &mut BytesMut,
        config: &DecoderConfig,
    ) -> Result<Option<BodyEvent>, FramingError> {
        loop {
            match self.state {
                ChunkState::SizeLine => {
                    let window = &buf[..buf.len().min(config.max_chunk_line_bytes)];
                    let Some(line_feed) = memchr::memchr(b'\n', window) else {
                        return if buf.len() >= config.max_chunk_line_bytes {
                            Err(FramingError::ChunkLineTooLong)
                        } else {
                            Ok(None)
                        };
                    };
                    let size = grammar::chunk_size_line(&buf[..=line_feed], config.allow_bare_lf)?;
                    buf.advance(line_feed + 1);
                    self.state = if size == 0 {
                        ChunkState::Trailers
                    } else {
                        ChunkState::Data { remaining: size }
                    };
                }
                ChunkState::Data { remaining } => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let taken = usize::try_from(remaining)
                        .map_or(buf.len(), |remaining| remaining.min(buf.len()));
                    let left = remaining - taken as u64;
                    self.state = if left == 0 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data { remaining: left }
                    };
                    return Ok(Some(BodyEvent::Data(buf.split_to(taken).freeze())));
                }
                ChunkState::DataEnd => {
                    // an empty buffer or a lone CR may still become CRLF
                    if buf.is_empty() || buf[..] == *b"\r" {
                        return Ok(None);
                    }
                    let consumed = grammar::chunk_data_end(buf, config.allow_bare_lf)?;
                    buf.advance(consumed);
                    self.state = ChunkState::SizeLine;
                }
                ChunkState::Trailers => {
                    let window = &buf[..buf.len().min(config.max_head_bytes)];
                    let Some(end) = self.trailer_scanner.find_end(window) else {
                        return if buf.len() >= config.max_head_bytes {
                            Err(FramingError::HeadTooLarge)
                        } else {
                            Ok(None)
                        };
                    };
                    let trailers = Headers::parse_trailers(buf.split_to(end).freeze(), config)?;
                    return Ok(Some(BodyEvent::End(trailers)));
                }
            }
        }
    }
}

/// Writes one chunk. Empty data writes nothing: a zero-size chunk would end the body.
pub(crate) fn encode_chunk(data: &[u8], dst: &mut BytesMut) {
    if data.is_empty() {
        return;
    }
    let size = format!("{:X}\r\n", data.len());
    dst.reserve(size.len() + data.len() + 2);
    dst.put_slice(size.as_bytes());
    dst.put_slice(data);
    dst.put_slice(b"\r\n");
}

/// Writes the last chunk and the trailer section.
pub(crate) fn encode_last_chunk(trailers: &Headers, dst: &mut BytesMut) {
    dst.put_slice(b"0\r\n");
    trailers.encode(dst);
}
