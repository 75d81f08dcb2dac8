//! Body framing, message boundaries, keep-alive, pipelining, interim and upgrade responses.

use bytes::{Bytes, BytesMut};

use super::{decode_pieces, one_request, requests, responses};
use crate::http::{
    BodyFraming, Event, Expectation, Finished, FramingError, Headers, MessageDecoder, Method,
    RequestDecoder, ResponseDecoder,
};

fn chunk(data: &[u8]) -> Event<()> {
    Event::BodyChunk(Bytes::copy_from_slice(data))
}

/// Events with heads replaced by `()`, to compare shapes.
fn shape<H: Clone>(events: &[Event<H>]) -> Vec<Event<()>> {
    events
        .iter()
        .map(|event| match event {
            Event::Head(_) => Event::Head(()),
            Event::BodyChunk(data) => Event::BodyChunk(data.clone()),
            Event::End(trailers) => Event::End(trailers.clone()),
        })
        .collect()
}

fn end() -> Event<()> {
    Event::End(Headers::new())
}

#[test]
fn content_length_body() {
    let decoded = requests(b"POST /mcp HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(decoded.error, None);
    assert_eq!(
        shape(&decoded.events),
        [Event::Head(()), chunk(b"hello"), end()]
    );
    assert_eq!(
        decoded.heads()[0].body_framing(),
        Ok(BodyFraming::Length(5))
    );
}

#[test]
fn zero_content_length_and_no_framing_fields_mean_no_body() {
    for input in [
        &b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
    ] {
        let decoded = requests(input);
        assert_eq!(shape(&decoded.events), [Event::Head(()), end()]);
    }
    assert_eq!(
        one_request(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            .0
            .body_framing(),
        Ok(BodyFraming::Empty)
    );
}

#[test]
fn body_streams_as_it_arrives() {
    let mut decoder = RequestDecoder::default();
    let mut buf =
        BytesMut::from(&b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc"[..]);
    assert!(matches!(decoder.decode(&mut buf), Ok(Some(Event::Head(_)))));
    assert_eq!(
        decoder.decode(&mut buf),
        Ok(Some(Event::BodyChunk(Bytes::from_static(b"abc"))))
    );
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    buf.extend_from_slice(b"defghij");
    assert_eq!(
        decoder.decode(&mut buf),
        Ok(Some(Event::BodyChunk(Bytes::from_static(b"defghij"))))
    );
    assert_eq!(
        decoder.decode(&mut buf),
        Ok(Some(Event::End(Headers::new())))
    );
    assert!(decoder.is_idle());
}

#[test]
fn large_body_is_never_buffered_whole() {
    const BODY: usize = 5 * 1024 * 1024;
    const PIECE: usize = 64 * 1024;
    let mut decoder = RequestDecoder::default();
    let mut buf = BytesMut::from(
        format!("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: {BODY}\r\n\r\n").as_bytes(),
    );
    assert!(matches!(decoder.decode(&mut buf), Ok(Some(Event::Head(_)))));
    let piece = vec![7u8; PIECE];
    let mut received = 0;
    for _ in 0..BODY / PIECE {
        buf.extend_from_slice(&piece);
        let Ok(Some(Event::BodyChunk(data))) = decoder.decode(&mut buf) else {
            panic!("no chunk")
        };
        assert_eq!(data.len(), PIECE);
        received += data.len();
        assert!(buf.is_empty());
    }
    assert_eq!(received, BODY);
    assert_eq!(
        decoder.decode(&mut buf),
        Ok(Some(Event::End(Headers::new())))
    );
}

const CHUNKED_WITH_TRAILERS: &[u8] = b"POST /mcp HTTP/1.1\r\n\
Host: h\r\n\
Transfer-Encoding: chunked\r\n\
Trailer: X-Checksum\r\n\
\r\n\
5;ext=1\r\nhello\r\n\
6;name=\"quoted ; value\";flag\r\n world\r\n\
A\r\n0123456789\r\n\
0;last=yes\r\n\
X-Checksum: abc\r\n\
x-other:  d \r\n\
\r\n";

#[test]
fn chunked_with_extensions_and_trailers() {
    let decoded = requests(CHUNKED_WITH_TRAILERS);
    assert_eq!(decoded.error, None);
    let merged = decoded.merged();
    assert_eq!(merged.len(), 3);
    assert_eq!(
        merged[1],
        Event::BodyChunk(Bytes::from_static(b"hello world0123456789"))
    );
    let Event::End(trailers) = &merged[2] else {
        panic!()
    };
    let trailers: Vec<(&[u8], &[u8])> = trailers
        .iter()
        .map(|f| (&f.name()[..], &f.value()[..]))
        .collect();
    assert_eq!(
        trailers,
        [(&b"X-Checksum"[..], &b"abc"[..]), (b"x-other", b"d")]
    );
    assert_eq!(decoded.heads()[0].body_framing(), Ok(BodyFraming::Chunked));
}

#[test]
fn chunked_codings_accepted_for_requests() {
    for te in [
        "chunked",
        "Chunked",
        "CHUNKED",
        "gzip, chunked",
        "gzip;q=1 , chunked",
        "gzip\r\nTransfer-Encoding: chunked",
        "chunked,",
    ] {
        let input = format!(
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: {te}\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        );
        let decoded = requests(input.as_bytes());
        assert_eq!(decoded.error, None, "{te}");
        assert_eq!(
            decoded.merged()[1],
            Event::BodyChunk(Bytes::from_static(b"abc")),
            "{te}"
        );
    }
}

#[test]
fn chunked_response_with_bare_lf_is_accepted() {
    let decoded =
        responses(b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n3\nabc\n0\nX-T: 1\n\n");
    assert_eq!(decoded.error, None);
    let merged = decoded.merged();
    assert_eq!(merged[1], Event::BodyChunk(Bytes::from_static(b"abc")));
    assert!(matches!(&merged[2], Event::End(trailers) if trailers.get("x-t").is_some()));
}

#[test]
fn close_delimited_response() {
    let mut decoder = ResponseDecoder::default();
    let mut buf = BytesMut::from(
        &b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: 1\n\n"[..],
    );
    let Ok(Some(Event::Head(head))) = decoder.decode(&mut buf) else {
        panic!()
    };
    assert_eq!(head.body_framing(), Ok(BodyFraming::UntilClose));
    assert!(!head.keep_alive());
    assert_eq!(
        decoder.decode(&mut buf),
        Ok(Some(Event::BodyChunk(Bytes::from_static(b"data: 1\n\n"))))
    );
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    buf.extend_from_slice(b"data: 2\n\n");
    assert_eq!(
        decoder.decode(&mut buf),
        Ok(Some(Event::BodyChunk(Bytes::from_static(b"data: 2\n\n"))))
    );
    assert_eq!(
        decoder.decode_eof(&mut buf),
        Ok(Some(Event::End(Headers::new())))
    );
    assert_eq!(decoder.finished(), Some(Finished::Close));
    assert_eq!(decoder.decode_eof(&mut buf), Ok(None));
}

#[test]
fn response_whose_final_coding_is_not_chunked_runs_until_close() {
    let decoded = responses(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzzz");
    assert_eq!(decoded.error, None);
    assert_eq!(
        decoded.heads()[0].body_framing(),
        Ok(BodyFraming::UntilClose)
    );
    assert_eq!(
        shape(&decoded.events),
        [Event::Head(()), chunk(b"zzz"), end()]
    );
}

#[test]
fn http10_response_without_length_runs_until_close() {
    let decoded = responses(b"HTTP/1.0 200 OK\r\n\r\nbody");
    assert_eq!(
        shape(&decoded.events),
        [Event::Head(()), chunk(b"body"), end()]
    );
}

#[test]
fn no_body_responses() {
    let mut decoder = ResponseDecoder::default();
    decoder.expect_response_to(Method::HEAD);
    decoder.expect_response_to(Method::GET);
    decoder.expect_response_to(Method::GET);
    decoder.expect_response_to(Method::GET);
    let input = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n\
HTTP/1.1 204 No Content\r\n\r\n\
HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\nETag: \"x\"\r\n\r\n\
HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let decoded = decode_pieces(&mut decoder, [&input[..]]);
    assert_eq!(decoded.error, None);
    assert_eq!(
        shape(&decoded.events),
        [
            Event::Head(()),
            end(),
            Event::Head(()),
            end(),
            Event::Head(()),
            end(),
            Event::Head(()),
            chunk(b"ok"),
            end()
        ]
    );
    let heads = decoded.heads();
    assert_eq!(*heads[0].request_method(), Method::HEAD);
    assert_eq!(heads[0].body_framing(), Ok(BodyFraming::Empty));
    assert_eq!(
        heads.iter().map(|h| h.status()).collect::<Vec<_>>(),
        [200, 204, 304, 200]
    );
    assert_eq!(decoder.awaiting(), 0);
}

#[test]
fn expect_continue_flow() {
    // the request head is available before the body, so the proxy can decide
    let mut requests = RequestDecoder::default();
    let mut buf = BytesMut::from(
        &b"POST /mcp HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"[..],
    );
    let Ok(Some(Event::Head(head))) = requests.decode(&mut buf) else {
        panic!()
    };
    assert_eq!(head.expectation(), Expectation::Continue);
    assert_eq!(requests.decode(&mut buf), Ok(None));
    buf.extend_from_slice(b"{}{}");
    assert_eq!(
        requests.decode(&mut buf),
        Ok(Some(Event::BodyChunk(Bytes::from_static(b"{}{}"))))
    );
    assert_eq!(
        requests.decode(&mut buf),
        Ok(Some(Event::End(Headers::new())))
    );

    // upstream: the interim 100 does not consume the request; the final response does
    let mut responses = ResponseDecoder::default();
    responses.expect_response_to(Method::POST);
    let input = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
    let decoded = decode_pieces(&mut responses, [&input[..]]);
    assert_eq!(decoded.error, None);
    assert_eq!(
        shape(&decoded.events),
        [
            Event::Head(()),
            end(),
            Event::Head(()),
            end(),
            Event::Head(()),
            chunk(b"{}"),
            end()
        ]
    );
    let heads = decoded.heads();
    assert!(heads[0].is_interim() && heads[1].is_interim() && !heads[2].is_interim());
    assert!(
        heads
            .iter()
            .all(|head| *head.request_method() == Method::POST)
    );
    assert_eq!(responses.awaiting(), 0);
}

#[test]
fn switching_protocols_stops_decoding() {
    let mut decoder = ResponseDecoder::default();
    let mut buf = BytesMut::from(
        &b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello"[..],
    );
    let Ok(Some(Event::Head(head))) = decoder.decode(&mut buf) else {
        panic!()
    };
    assert!(!head.is_interim());
    assert_eq!(
        decoder.decode(&mut buf),
        Ok(Some(Event::End(Headers::new())))
    );
    assert_eq!(decoder.finished(), Some(Finished::Upgrade));
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    assert_eq!(
        &buf[..],
        b"\x81\x05hello",
        "tunnel bytes are left for the caller"
    );
}

#[test]
fn connect_becomes_a_tunnel() {
    let mut requests = RequestDecoder::default();
    let mut buf = BytesMut::from(
        &b"CONNECT mcp.example:443 HTTP/1.1\r\nHost: mcp.example:443\r\n\r\n\x16\x03\x01"[..],
    );
    assert!(matches!(
        requests.decode(&mut buf),
        Ok(Some(Event::Head(_)))
    ));
    assert_eq!(
        requests.decode(&mut buf),
        Ok(Some(Event::End(Headers::new())))
    );
    assert_eq!(requests.finished(), Some(Finished::Upgrade));
    assert_eq!(&buf[..], b"\x16\x03\x01");

    let mut responses = ResponseDecoder::default();
    responses.expect_response_to(Method::CONNECT);
    let mut buf = BytesMut::from(&b"HTTP/1.1 200 Connection Established\r\n\r\n\x16\x03\x03"[..]);
    assert!(matches!(
        responses.decode(&mut buf),
        Ok(Some(Event::Head(_)))
    ));
    assert_eq!(
        responses.decode(&mut buf),
        Ok(Some(Event::End(Headers::new())))
    );
    assert_eq!(responses.finished(), Some(Finished::Upgrade));
}

#[test]
fn connection_close_ends_the_stream() {
    let input = b"GET /a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n";
    let mut decoder = RequestDecoder::default();
    let decoded = decode_pieces(&mut decoder, [&input[..]]);
    assert_eq!(decoded.error, None);
    assert_eq!(decoded.heads().len(), 1);
    assert_eq!(decoder.finished(), Some(Finished::Close));

    let mut decoder = RequestDecoder::default();
    let decoded = decode_pieces(
        &mut decoder,
        [&b"GET /a HTTP/1.0\r\n\r\nGET /b HTTP/1.0\r\n\r\n"[..]],
    );
    assert_eq!(decoded.heads().len(), 1, "HTTP/1.0 closes by default");
    let decoded =
        requests(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n");
    assert_eq!(decoded.heads().len(), 2);

    let mut decoder = ResponseDecoder::default();
    let input = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nxHTTP/1.1 200 OK\r\n\r\n";
    let decoded = decode_pieces(&mut decoder, [&input[..]]);
    assert_eq!(decoded.heads().len(), 1);
    assert_eq!(decoder.finished(), Some(Finished::Close));
}

const PIPELINE: &[u8] = b"GET /one HTTP/1.1\r\nHost: h\r\n\r\n\
POST /two HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc\r\n\
POST /three HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n0\r\n\r\n\
DELETE /four HTTP/1.1\r\nHost: h\r\nMcp-Session-Id: s\r\n\r\n";

#[test]
fn pipelined_requests_in_order() {
    let decoded = requests(PIPELINE);
    assert_eq!(decoded.error, None);
    let targets: Vec<&[u8]> = decoded
        .heads()
        .iter()
        .map(|head| &head.target()[..])
        .collect();
    assert_eq!(targets, [&b"/one"[..], b"/two", b"/three", b"/four"]);
    assert_eq!(
        shape(&decoded.merged()),
        [
            Event::Head(()),
            end(),
            Event::Head(()),
            chunk(b"abc"),
            end(),
            Event::Head(()),
            chunk(b"de"),
            end(),
            Event::Head(()),
            end()
        ]
    );
}

#[test]
fn pipelined_responses_follow_the_request_queue() {
    let mut decoder = ResponseDecoder::default();
    for method in [Method::GET, Method::HEAD, Method::POST] {
        decoder.expect_response_to(method);
    }
    let input = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none\
HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n\
HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nthree\r\n0\r\n\r\n";
    let decoded = decode_pieces(&mut decoder, [&input[..]]);
    assert_eq!(decoded.error, None);
    assert_eq!(
        shape(&decoded.merged()),
        [
            Event::Head(()),
            chunk(b"one"),
            end(),
            Event::Head(()),
            end(),
            Event::Head(()),
            chunk(b"three"),
            end()
        ]
    );
}

#[test]
fn truncated_streams() {
    assert_eq!(
        requests(b"GET / HTTP/1.1\r\nHost:").error,
        Some(FramingError::TruncatedHead)
    );
    assert_eq!(
        requests(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nabc").error,
        Some(FramingError::TruncatedBody)
    );
    assert_eq!(
        requests(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab").error,
        Some(FramingError::TruncatedBody)
    );
    assert_eq!(
        requests(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: y\r\n")
            .error,
        Some(FramingError::TruncatedBody)
    );
    assert_eq!(
        responses(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab").error,
        Some(FramingError::TruncatedBody)
    );
    let clean = requests(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n\r\n");
    assert_eq!(
        clean.error, None,
        "trailing empty line between messages is not a message"
    );
}

#[test]
fn leading_empty_lines_before_a_request_are_skipped() {
    let decoded = requests(b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(decoded.error, None);
    assert_eq!(decoded.heads().len(), 1);
    let decoded = super::requests_bytewise(b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(decoded.error, None);
    assert_eq!(decoded.heads().len(), 1);
    assert_eq!(
        responses(b"\r\nHTTP/1.1 200 OK\r\n\r\n").error,
        Some(FramingError::BadStatusLine)
    );
}

#[test]
fn errors_are_sticky() {
    let mut decoder = RequestDecoder::default();
    let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: h\r\nBad@Name: x\r\n\r\n"[..]);
    assert_eq!(decoder.decode(&mut buf), Err(FramingError::BadHeaderName));
    buf.extend_from_slice(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(decoder.decode(&mut buf), Err(FramingError::BadHeaderName));
    assert_eq!(
        decoder.decode_eof(&mut buf),
        Err(FramingError::BadHeaderName)
    );
}

#[test]
fn idle_between_messages_only() {
    let mut decoder = RequestDecoder::default();
    assert!(decoder.is_idle());
    let mut buf = BytesMut::from(&b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx"[..]);
    decoder.decode(&mut buf).unwrap();
    assert!(!decoder.is_idle());
    decoder.decode(&mut buf).unwrap();
    decoder.decode(&mut buf).unwrap();
    assert!(decoder.is_idle());
    buf.extend_from_slice(b"GE");
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    assert!(!decoder.is_idle());
}
