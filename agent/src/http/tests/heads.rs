//! Heads: start lines, fields, lookup and editing, re-serialisation, limits.

use bytes::{Bytes, BytesMut};

use super::{decode_pieces, one_request, request_rejection, requests, responses};
use crate::http::{
    DecoderConfig, Event, Expectation, FramingError, Headers, MessageDecoder, Method,
    RequestDecoder, RequestHead, ResponseDecoder, ResponseHead, Version,
};

const MCP_POST: &[u8] = b"POST /mcp HTTP/1.1\r\n\
Host: mcp.example\r\n\
Content-Type: application/json\r\n\
Accept: application/json, text/event-stream\r\n\
authorization: Bearer leftover\r\n\
Mcp-Session-Id: abc\r\n\
Content-Length: 2\r\n\
\r\n{}";

#[test]
fn request_line_and_fields_are_parsed() {
    let (head, body, trailers) = one_request(MCP_POST);
    assert_eq!(*head.method(), Method::POST);
    assert_eq!(head.method().as_str(), "POST");
    assert_eq!(&head.target()[..], b"/mcp");
    assert_eq!(head.version(), Version::Http11);
    assert_eq!(head.headers().len(), 6);
    assert_eq!(&body[..], b"{}");
    assert!(trailers.is_empty());
}

#[test]
fn head_slices_share_the_input_buffer() {
    let input = Bytes::from_static(MCP_POST);
    let mut buf = BytesMut::from(&input[..]);
    let start = buf.as_ptr() as usize;
    let end = start + buf.len();
    let Ok(Some(Event::Head(head))) = RequestDecoder::default().decode(&mut buf) else {
        panic!("no head")
    };
    let within = |bytes: &Bytes| (start..end).contains(&(bytes.as_ptr() as usize));
    assert!(within(head.target()));
    assert!(
        head.headers()
            .iter()
            .all(|field| within(field.name()) && within(field.value()))
    );
}

#[test]
fn lookup_is_case_insensitive_and_keeps_order_and_casing() {
    let (head, _, _) = one_request(MCP_POST);
    let headers = head.headers();
    assert_eq!(
        headers.get("AUTHORIZATION").map(|v| &v[..]),
        Some(&b"Bearer leftover"[..])
    );
    assert_eq!(
        headers.get("mcp-session-id").map(|v| &v[..]),
        Some(&b"abc"[..])
    );
    assert!(headers.contains("content-TYPE"));
    assert!(!headers.contains("cookie"));
    let names: Vec<&[u8]> = headers.iter().map(|field| &field.name()[..]).collect();
    assert_eq!(
        names,
        [
            &b"Host"[..],
            b"Content-Type",
            b"Accept",
            b"authorization",
            b"Mcp-Session-Id",
            b"Content-Length"
        ]
    );
    assert!(headers.has_token("accept", "TEXT/EVENT-STREAM"));
}

#[test]
fn repeated_fields_are_all_kept() {
    let (head, _, _) =
        one_request(b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-a: 2\r\nX-B: 3\r\nX-A: 4\r\n\r\n");
    let values: Vec<&[u8]> = head.headers().get_all("x-a").map(|v| &v[..]).collect();
    assert_eq!(values, [&b"1"[..], b"2", b"4"]);
}

#[test]
fn set_replaces_in_place_and_drops_duplicates() {
    let (mut head, _, _) =
        one_request(b"GET / HTTP/1.1\r\nHost: h\r\nCookie: a\r\nAccept: */*\r\ncookie: b\r\n\r\n");
    head.headers_mut().set("Cookie", "gateway").unwrap();
    let fields: Vec<(&[u8], &[u8])> = head
        .headers()
        .iter()
        .map(|f| (&f.name()[..], &f.value()[..]))
        .collect();
    assert_eq!(
        fields,
        [
            (&b"Host"[..], &b"h"[..]),
            (b"Cookie", b"gateway"),
            (b"Accept", b"*/*")
        ]
    );
    head.headers_mut().set("X-New", "v").unwrap();
    assert_eq!(
        head.headers().iter().last().map(|f| &f.name()[..]),
        Some(&b"X-New"[..])
    );
}

#[test]
fn credential_strip_and_inject_round_trip() {
    let (mut head, _, _) = one_request(MCP_POST);
    let headers = head.headers_mut();
    assert_eq!(headers.remove("Authorization"), 1);
    assert_eq!(headers.remove("x-api-key"), 0);
    headers.set("Authorization", "Bearer gateway").unwrap();
    let mut out = BytesMut::new();
    head.encode(&mut out);
    let expected = b"POST /mcp HTTP/1.1\r\n\
Host: mcp.example\r\n\
Content-Type: application/json\r\n\
Accept: application/json, text/event-stream\r\n\
Mcp-Session-Id: abc\r\n\
Content-Length: 2\r\n\
Authorization: Bearer gateway\r\n\r\n";
    assert_eq!(&out[..], &expected[..]);
    out.extend_from_slice(b"{}");
    let (reparsed, _, _) = one_request(&out);
    assert_eq!(reparsed, head);
}

#[test]
fn remove_matching_strips_a_list_of_credential_headers() {
    let (mut head, _, _) = one_request(
        b"GET / HTTP/1.1\r\nHost: h\r\nCookie: c\r\nX-API-Key: k\r\nAccept: */*\r\nx-custom-token: t\r\n\r\n",
    );
    let credential_headers = ["cookie", "x-api-key", "authorization", "x-custom-token"];
    let removed = head.headers_mut().remove_matching(|field| {
        credential_headers
            .iter()
            .any(|name| field.name_str().eq_ignore_ascii_case(name))
    });
    assert_eq!(removed, 3);
    let names: Vec<&str> = head
        .headers()
        .iter()
        .map(|field| field.name_str())
        .collect();
    assert_eq!(names, ["Host", "Accept"]);
}

#[test]
fn editing_refuses_injection() {
    let mut headers = Headers::new();
    assert_eq!(
        headers.set("X", "a\r\nInjected: yes"),
        Err(FramingError::BadHeaderValue)
    );
    assert_eq!(headers.set("X", "a\0"), Err(FramingError::BadHeaderValue));
    assert_eq!(
        headers.append("X", "a\nb"),
        Err(FramingError::BadHeaderValue)
    );
    assert_eq!(
        headers.set("Bad Name", "v"),
        Err(FramingError::BadHeaderName)
    );
    assert_eq!(headers.append("", "v"), Err(FramingError::BadHeaderName));
    assert_eq!(headers.append("X:", "v"), Err(FramingError::BadHeaderName));
    assert!(headers.is_empty());
}

#[test]
fn encoding_normalises_whitespace_and_keeps_casing() {
    let (head, _, _) = one_request(b"GET /p?q=1 HTTP/1.0\r\nhOsT:   h  \r\nX-Empty:\r\n\r\n");
    let mut out = BytesMut::new();
    head.encode(&mut out);
    assert_eq!(
        &out[..],
        b"GET /p?q=1 HTTP/1.0\r\nhOsT: h\r\nX-Empty: \r\n\r\n"
    );
}

#[test]
fn debug_output_never_shows_values_or_payloads() {
    let decoded = requests(MCP_POST);
    let printed = format!("{:?}", decoded.events);
    assert!(
        !printed.contains("leftover") && !printed.contains("{}"),
        "{printed}"
    );
    assert!(printed.contains("authorization: <15 bytes>"), "{printed}");
    assert!(printed.contains("BodyChunk(<2 bytes>)"), "{printed}");

    let items = crate::http::SseParser::new()
        .feed(b": secret\ndata: {\"ssn\":\"123\"}\n\n")
        .unwrap();
    let printed = format!("{items:?}");
    assert!(
        !printed.contains("secret") && !printed.contains("ssn"),
        "{printed}"
    );
}

#[test]
fn status_line_variants() {
    let cases: [(&[u8], u16, &[u8], Version); 4] = [
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            200,
            b"OK",
            Version::Http11,
        ),
        (
            b"HTTP/1.1 404 Not Found Here\r\nContent-Length: 0\r\n\r\n",
            404,
            b"Not Found Here",
            Version::Http11,
        ),
        (b"HTTP/1.1 204 \r\n\r\n", 204, b"", Version::Http11),
        (b"HTTP/1.0 204\r\n\r\n", 204, b"", Version::Http10),
    ];
    for (input, status, reason, version) in cases {
        let decoded = responses(input);
        assert_eq!(decoded.error, None, "{:?}", String::from_utf8_lossy(input));
        let head = decoded.heads()[0].clone();
        assert_eq!(
            (head.status(), &head.reason()[..], head.version()),
            (status, reason, version)
        );
    }
}

#[test]
fn malformed_start_lines() {
    for input in [
        &b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n"[..],
        b"GET / HTTP/1.1 \r\nHost: h\r\n\r\n",
        b"GET /\r\nHost: h\r\n\r\n",
        b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /a b HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /\xC3\xA9 HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET / http/1.1\r\nHost: h\r\n\r\n",
        b"GET / HTTP/1.10\r\nHost: h\r\n\r\n",
    ] {
        assert_eq!(
            request_rejection(input),
            "bad-request-line",
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
    assert_eq!(
        request_rejection(b"GET / HTTP/2.0\r\nHost: h\r\n\r\n"),
        "unsupported-version"
    );
    assert_eq!(
        request_rejection(b"GET / HTTP/1.2\r\nHost: h\r\n\r\n"),
        "unsupported-version"
    );
    for input in [
        &b"HTTP/1.1 20 OK\r\n\r\n"[..],
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 099 X\r\n\r\n",
        b"HTTP/1.1  200 OK\r\n\r\n",
        b"ICY 200 OK\r\n\r\n",
    ] {
        assert_eq!(
            responses(input).error,
            Some(FramingError::BadStatusLine),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn host_is_required_once_for_http11() {
    assert_eq!(request_rejection(b"GET / HTTP/1.1\r\n\r\n"), "missing-host");
    assert_eq!(
        request_rejection(b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n"),
        "duplicate-host"
    );
    let (head, _, _) = one_request(b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(head.version(), Version::Http10);
}

fn head_with_fields(count: usize, value_len: usize) -> Vec<u8> {
    let mut head = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
    for index in 1..count {
        head.extend_from_slice(format!("X-{index}: {}\r\n", "v".repeat(value_len)).as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    head
}

#[test]
fn header_count_limit_default_and_configured() {
    assert_eq!(requests(&head_with_fields(100, 1)).error, None);
    assert_eq!(
        request_rejection(&head_with_fields(101, 1)),
        "too-many-headers"
    );
    let config = DecoderConfig {
        max_headers: 3,
        ..DecoderConfig::requests()
    };
    let decoded = decode_pieces(
        &mut RequestDecoder::new(config),
        [&head_with_fields(3, 1)[..]],
    );
    assert_eq!(decoded.error, None);
    let decoded = decode_pieces(
        &mut RequestDecoder::new(config),
        [&head_with_fields(4, 1)[..]],
    );
    assert_eq!(decoded.error, Some(FramingError::TooManyHeaders));
}

#[test]
fn head_size_limit_is_exact_default_and_configured() {
    let mut at_limit = head_with_fields(2, 1);
    let padding = DecoderConfig::DEFAULT_MAX_HEAD_BYTES - at_limit.len();
    at_limit = head_with_fields(2, 1 + padding);
    assert_eq!(at_limit.len(), 64 * 1024);
    assert_eq!(requests(&at_limit).error, None);
    let over = head_with_fields(2, 2 + padding);
    assert_eq!(request_rejection(&over), "head-too-large");

    let config = DecoderConfig {
        max_head_bytes: 64,
        ..DecoderConfig::requests()
    };
    let small = head_with_fields(2, 64 - head_with_fields(2, 0).len());
    assert_eq!(small.len(), 64);
    assert_eq!(
        decode_pieces(&mut RequestDecoder::new(config), [&small[..]]).error,
        None
    );
    let bigger = head_with_fields(2, 65 - head_with_fields(2, 0).len());
    assert_eq!(
        decode_pieces(&mut RequestDecoder::new(config), [&bigger[..]]).error,
        Some(FramingError::HeadTooLarge)
    );
}

#[test]
fn endless_head_is_refused_before_its_end_arrives() {
    let mut decoder = RequestDecoder::default();
    let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: h\r\nX-Long: "[..]);
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    buf.extend_from_slice(&vec![b'a'; DecoderConfig::DEFAULT_MAX_HEAD_BYTES]);
    assert_eq!(decoder.decode(&mut buf), Err(FramingError::HeadTooLarge));
}

#[test]
fn expectation() {
    let expectation = |input: &[u8]| one_request(input).0.expectation();
    assert_eq!(
        expectation(b"PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx"),
        Expectation::Absent
    );
    assert_eq!(
        expectation(
            b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\nx"
        ),
        Expectation::Continue
    );
    assert_eq!(
        expectation(b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx"),
        Expectation::Absent
    );
    assert_eq!(
        expectation(b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: teapot\r\n\r\n"),
        Expectation::Unsupported
    );
}

#[test]
fn keep_alive_rules() {
    let keep_alive = |input: &[u8]| one_request(input).0.keep_alive();
    assert!(keep_alive(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"));
    assert!(!keep_alive(
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    ));
    assert!(!keep_alive(
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, CLOSE\r\n\r\n"
    ));
    assert!(!keep_alive(b"GET / HTTP/1.0\r\n\r\n"));
    assert!(keep_alive(
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    ));
    assert!(!keep_alive(
        b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"
    ));

    let response_keep_alive = |input: &[u8]| responses(input).heads()[0].keep_alive();
    assert!(response_keep_alive(
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    ));
    assert!(
        !response_keep_alive(b"HTTP/1.1 200 OK\r\n\r\n"),
        "close-delimited body"
    );
    assert!(!response_keep_alive(
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    ));
    assert!(!response_keep_alive(
        b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"
    ));
    assert!(response_keep_alive(
        b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n"
    ));
}

#[test]
fn event_stream_detection() {
    let is_stream = |content_type: &str| {
        let input =
            format!("HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: 0\r\n\r\n");
        responses(input.as_bytes()).heads()[0].is_event_stream()
    };
    assert!(is_stream("text/event-stream"));
    assert!(is_stream("Text/Event-Stream; charset=utf-8"));
    assert!(!is_stream("application/json"));
    assert!(!is_stream("text/event-streamx"));
}

#[test]
fn constructed_heads_encode() {
    let mut request =
        RequestHead::new(Method::from_token("MKCOL").unwrap(), "/x", Version::Http11).unwrap();
    request.headers_mut().append("Host", "h").unwrap();
    let mut out = BytesMut::new();
    request.encode(&mut out);
    assert_eq!(&out[..], b"MKCOL /x HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(
        RequestHead::new(Method::GET, "/a b", Version::Http11),
        Err(FramingError::BadRequestLine)
    );
    assert_eq!(
        Method::from_token("GE T"),
        Err(FramingError::BadRequestLine)
    );

    let continue_head = ResponseHead::new(Version::Http11, 100, "Continue").unwrap();
    let mut out = BytesMut::new();
    continue_head.encode(&mut out);
    assert_eq!(&out[..], b"HTTP/1.1 100 Continue\r\n\r\n");
    assert!(continue_head.is_interim());
    assert_eq!(
        ResponseHead::new(Version::Http11, 42, "x"),
        Err(FramingError::BadStatusLine)
    );
    assert_eq!(
        ResponseHead::new(Version::Http11, 200, "a\r\nb"),
        Err(FramingError::BadStatusLine)
    );
}

#[test]
fn response_head_round_trip() {
    let input = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n";
    let mut decoder = ResponseDecoder::default();
    let mut buf = BytesMut::from(&input[..]);
    let Ok(Some(Event::Head(head))) = decoder.decode(&mut buf) else {
        panic!()
    };
    let mut out = BytesMut::new();
    head.encode(&mut out);
    assert_eq!(&out[..], &input[..]);
}
