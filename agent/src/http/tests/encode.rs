//! Re-emission: body encoders, the event encoder, decode → encode round trips.

use bytes::{Bytes, BytesMut};
use tokio_util::codec::Encoder;

use super::{one_request, requests, responses};
use crate::http::{
    BodyEncoder, BodyFraming, CodecError, Event, FramingError, Headers, MessageEncoder, Method,
    RequestHead, ResponseHead, Version,
};

fn encode_all<H: crate::http::MessageHead>(events: Vec<Event<H>>) -> Result<BytesMut, CodecError> {
    let mut encoder = MessageEncoder::new();
    let mut out = BytesMut::new();
    for event in events {
        encoder.encode(event, &mut out)?;
    }
    assert!(encoder.is_idle());
    Ok(out)
}

#[test]
fn length_bodies_must_add_up() {
    let mut out = BytesMut::new();
    let mut body = BodyEncoder::new(BodyFraming::Length(5));
    body.encode_chunk(b"hel", &mut out).unwrap();
    assert_eq!(
        body.encode_end(&Headers::new(), &mut out),
        Err(FramingError::BodyLengthMismatch)
    );
    body.encode_chunk(b"lo", &mut out).unwrap();
    assert_eq!(
        body.encode_chunk(b"!", &mut out),
        Err(FramingError::BodyLengthMismatch)
    );
    body.encode_end(&Headers::new(), &mut out).unwrap();
    assert_eq!(&out[..], b"hello");

    let mut empty = BodyEncoder::new(BodyFraming::Empty);
    empty.encode_chunk(b"", &mut out).unwrap();
    assert_eq!(
        empty.encode_chunk(b"x", &mut out),
        Err(FramingError::BodyLengthMismatch)
    );
}

#[test]
fn chunked_bodies_with_trailers() {
    let mut out = BytesMut::new();
    let mut body = BodyEncoder::new(BodyFraming::Chunked);
    body.encode_chunk(b"hello", &mut out).unwrap();
    body.encode_chunk(b"", &mut out).unwrap();
    body.encode_chunk(&[b'x'; 26], &mut out).unwrap();
    let mut trailers = Headers::new();
    trailers.append("X-Checksum", "abc").unwrap();
    body.encode_end(&trailers, &mut out).unwrap();
    assert_eq!(
        &out[..],
        b"5\r\nhello\r\n1A\r\nxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n0\r\nX-Checksum: abc\r\n\r\n"
    );
}

#[test]
fn trailers_need_chunked() {
    let mut trailers = Headers::new();
    trailers.append("X", "y").unwrap();
    for framing in [
        BodyFraming::Empty,
        BodyFraming::Length(0),
        BodyFraming::UntilClose,
    ] {
        let mut body = BodyEncoder::new(framing);
        assert_eq!(
            body.encode_end(&trailers, &mut BytesMut::new()),
            Err(FramingError::TrailersNeedChunked)
        );
    }
}

#[test]
fn until_close_passes_bytes_through() {
    let mut out = BytesMut::new();
    let mut body = BodyEncoder::new(BodyFraming::UntilClose);
    body.encode_chunk(b"data: 1\n\n", &mut out).unwrap();
    body.encode_end(&Headers::new(), &mut out).unwrap();
    assert_eq!(&out[..], b"data: 1\n\n");
}

#[test]
fn canonical_streams_round_trip_byte_for_byte() {
    let request_stream: &[u8] = b"POST /mcp HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n\
GET /sse HTTP/1.1\r\nHost: h\r\nAccept: text/event-stream\r\n\r\n\
POST /mcp HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n{}";
    let decoded = requests(request_stream);
    assert_eq!(decoded.error, None);
    assert_eq!(&encode_all(decoded.events).unwrap()[..], request_stream);

    let response_stream: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}\
HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n9\r\ndata: x\n\n\r\n0\r\n\r\n\
HTTP/1.1 204 No Content\r\n\r\n";
    let decoded = responses(response_stream);
    assert_eq!(decoded.error, None);
    assert_eq!(&encode_all(decoded.events).unwrap()[..], response_stream);
}

#[test]
fn response_to_head_keeps_its_length_and_no_body() {
    let mut head = ResponseHead::new(Version::Http11, 200, "OK").unwrap();
    head.headers_mut().set_content_length(1234);
    head.set_request_method(Method::HEAD);
    let out = encode_all(vec![Event::Head(head), Event::End(Headers::new())]).unwrap();
    assert_eq!(&out[..], b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n");
}

#[test]
fn reframing_a_modified_body() {
    // a chunked request whose body the proxy rewrote: sent on with a Content-Length
    let (mut head, body, _) = one_request(
        b"POST /mcp HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    );
    assert_eq!(&body[..], b"{}");
    let masked = Bytes::from_static(b"{\"masked\":true}");
    head.headers_mut().set_content_length(masked.len() as u64);
    assert_eq!(head.body_framing(), Ok(BodyFraming::Length(15)));
    let out = encode_all(vec![
        Event::Head(head.clone()),
        Event::BodyChunk(masked.clone()),
        Event::End(Headers::new()),
    ])
    .unwrap();
    let (reparsed, reparsed_body, _) = one_request(&out);
    assert_eq!(reparsed, head);
    assert_eq!(reparsed_body, masked);
    assert!(!reparsed.headers().contains("transfer-encoding"));

    // and back to chunked
    let mut head = reparsed;
    head.headers_mut().set_chunked();
    assert_eq!(head.body_framing(), Ok(BodyFraming::Chunked));
    assert!(!head.headers().contains("content-length"));
}

#[test]
fn encoder_checks_event_order_and_framing() {
    let head = RequestHead::new(Method::POST, "/", Version::Http11).unwrap();
    let mut encoder = MessageEncoder::new();
    let mut out = BytesMut::new();
    let orphan: Event<RequestHead> = Event::BodyChunk(Bytes::from_static(b"x"));
    assert_eq!(
        encoder.encode(orphan, &mut out).unwrap_err().framing(),
        Some(FramingError::EventOutOfOrder)
    );
    encoder.encode(Event::Head(head.clone()), &mut out).unwrap();
    assert_eq!(
        encoder
            .encode(Event::Head(head.clone()), &mut out)
            .unwrap_err()
            .framing(),
        Some(FramingError::EventOutOfOrder)
    );

    let mut http10 = RequestHead::new(Method::POST, "/", Version::Http10).unwrap();
    http10.headers_mut().set_chunked();
    let mut encoder = MessageEncoder::new();
    assert_eq!(
        encoder
            .encode(Event::Head(http10), &mut out)
            .unwrap_err()
            .framing(),
        Some(FramingError::TeInHttp10)
    );
}
