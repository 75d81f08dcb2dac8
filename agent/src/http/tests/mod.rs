//! Tests of the framing layer, by concern. Helpers shared by them live here.

mod collect;
mod encode;
mod framing;
mod heads;
mod incremental;
mod properties;
mod smuggling;
mod sse;

use bytes::{Bytes, BytesMut};

use super::{
    Event, FramingError, MessageDecoder, RequestDecoder, RequestHead, ResponseDecoder, ResponseHead,
};

/// What a decoder produced from a stream: its events, then the error that stopped it, if any.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Decoded<H> {
    pub events: Vec<Event<H>>,
    pub error: Option<FramingError>,
}

impl<H: Clone> Decoded<H> {
    /// The events with adjacent body chunks joined, so decodings of the same stream split
    /// differently compare equal.
    pub fn merged(&self) -> Vec<Event<H>> {
        let mut merged: Vec<Event<H>> = Vec::new();
        for event in &self.events {
            match (merged.last_mut(), event) {
                (Some(Event::BodyChunk(previous)), Event::BodyChunk(next)) => {
                    let mut joined = BytesMut::from(&previous[..]);
                    joined.extend_from_slice(next);
                    *previous = joined.freeze();
                }
                (_, Event::BodyChunk(chunk)) if chunk.is_empty() => {}
                _ => merged.push(event.clone()),
            }
        }
        merged
    }

    pub fn heads(&self) -> Vec<&H> {
        self.events
            .iter()
            .filter_map(|event| {
                if let Event::Head(head) = event {
                    Some(head)
                } else {
                    None
                }
            })
            .collect()
    }
}

/// Feeds `pieces` in order, draining events after each, then signals end of stream.
pub(super) fn decode_pieces<'a, D: MessageDecoder>(
    decoder: &mut D,
    pieces: impl IntoIterator<Item = &'a [u8]>,
) -> Decoded<D::Head> {
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(event)) => events.push(event),
                Ok(None) => break,
                Err(error) => {
                    return Decoded {
                        events,
                        error: Some(error),
                    };
                }
            }
        }
    }
    loop {
        match decoder.decode_eof(&mut buf) {
            Ok(Some(event)) => events.push(event),
            Ok(None) => {
                return Decoded {
                    events,
                    error: None,
                };
            }
            Err(error) => {
                return Decoded {
                    events,
                    error: Some(error),
                };
            }
        }
    }
}

pub(super) fn requests(input: &[u8]) -> Decoded<RequestHead> {
    decode_pieces(&mut RequestDecoder::default(), [input])
}

pub(super) fn requests_bytewise(input: &[u8]) -> Decoded<RequestHead> {
    decode_pieces(&mut RequestDecoder::default(), input.chunks(1))
}

pub(super) fn responses(input: &[u8]) -> Decoded<ResponseHead> {
    decode_pieces(&mut ResponseDecoder::default(), [input])
}

/// The single request in `input`, which must decode without error.
pub(super) fn one_request(input: &[u8]) -> (RequestHead, Bytes, super::Headers) {
    let decoded = requests(input);
    assert_eq!(decoded.error, None, "{:?}", String::from_utf8_lossy(input));
    match decoded.merged().as_slice() {
        [Event::Head(head), Event::End(trailers)] => (head.clone(), Bytes::new(), trailers.clone()),
        [
            Event::Head(head),
            Event::BodyChunk(body),
            Event::End(trailers),
        ] => (head.clone(), body.clone(), trailers.clone()),
        other => panic!("not one request: {other:?}"),
    }
}

/// The reason a request stream is rejected for, asserting no head got through.
pub(super) fn request_rejection(input: &[u8]) -> &'static str {
    let decoded = requests(input);
    assert!(
        decoded.heads().is_empty(),
        "a head was accepted from {:?}",
        String::from_utf8_lossy(input)
    );
    decoded
        .error
        .unwrap_or_else(|| panic!("accepted: {:?}", String::from_utf8_lossy(input)))
        .reason()
}
