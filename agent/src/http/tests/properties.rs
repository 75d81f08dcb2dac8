//! Property tests: valid message streams, serialised with the wire variations the grammar allows
//! and fed in arbitrary splits, decode to the events of their model; any input at all decodes
//! the same however it is split, and never panics.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

use super::{Decoded, decode_pieces};
use crate::http::{
    DecoderConfig, Event, Headers, Method, RequestDecoder, RequestHead, ResponseDecoder,
    ResponseHead, SseItem, SseParser, Version,
};

/// A field and the optional whitespace written around its value.
#[derive(Debug, Clone)]
struct FieldModel {
    name: String,
    value: String,
    before: String,
    after: String,
}

#[derive(Debug, Clone)]
struct ChunkModel {
    data: Vec<u8>,
    /// Leading zeros and letter case of the size, and an extension, all meaningless to the body.
    zeros: usize,
    upper: bool,
    extension: Option<String>,
}

#[derive(Debug, Clone)]
enum BodyModel {
    Empty,
    Length(Vec<u8>),
    Chunked {
        chunks: Vec<ChunkModel>,
        last_extension: Option<String>,
        trailers: Vec<FieldModel>,
    },
}

#[derive(Debug, Clone)]
struct RequestModel {
    method: String,
    target: String,
    fields: Vec<FieldModel>,
    body: BodyModel,
}

#[derive(Debug, Clone)]
enum ResponseBodyModel {
    Framed(BodyModel),
    /// 204 or 304: no body whatever the fields say.
    NoContent(u16),
    /// The answer to a HEAD: a Content-Length but no body.
    ToHead(u64),
}

#[derive(Debug, Clone)]
struct ResponseModel {
    interim: bool,
    status: u16,
    reason: String,
    fields: Vec<FieldModel>,
    body: ResponseBodyModel,
}

fn field() -> impl Strategy<Value = FieldModel> {
    (
        "X-[A-Za-z0-9!#$%&'*+.^_`|~-]{1,10}",
        "([!-~\u{80}-\u{ff}]([ \t!-~]{0,20}[!-~])?)?",
        "[ \t]{0,2}",
        "[ \t]{0,2}",
    )
        .prop_map(|(name, value, before, after)| FieldModel {
            name,
            value,
            before,
            after,
        })
}

fn extension() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop_oneof![
        "[a-z]{1,5}".prop_map(|name| format!(";{name}")),
        ("[a-z]{1,5}", "[a-z0-9]{1,5}").prop_map(|(name, value)| format!(" ; {name}={value}")),
        ("[a-z]{1,5}", "[ a-z;,=]{0,8}").prop_map(|(name, value)| format!(";{name}=\"{value}\"")),
    ])
}

fn chunk() -> impl Strategy<Value = ChunkModel> {
    (
        vec(any::<u8>(), 1..40),
        0..3usize,
        any::<bool>(),
        extension(),
    )
        .prop_map(|(data, zeros, upper, extension)| ChunkModel {
            data,
            zeros,
            upper,
            extension,
        })
}

fn body() -> impl Strategy<Value = BodyModel> {
    prop_oneof![
        Just(BodyModel::Empty),
        vec(any::<u8>(), 0..100).prop_map(BodyModel::Length),
        (vec(chunk(), 0..5), extension(), vec(field(), 0..3)).prop_map(
            |(chunks, last_extension, trailers)| BodyModel::Chunked {
                chunks,
                last_extension,
                trailers
            }
        ),
    ]
}

fn request() -> impl Strategy<Value = RequestModel> {
    let method = prop_oneof![
        Just("GET".to_string()),
        Just("POST".to_string()),
        Just("DELETE".to_string()),
        "[A-Z]{1,8}"
    ];
    (method, "/[!-~]{0,30}", vec(field(), 0..6), body()).prop_map(
        |(method, target, fields, body)| RequestModel {
            method,
            target,
            fields,
            body,
        },
    )
}

fn response(last: bool) -> impl Strategy<Value = ResponseModel> {
    let framed = body().prop_map(ResponseBodyModel::Framed);
    let kinds = prop_oneof![
        4 => framed,
        1 => prop_oneof![Just(204u16), Just(304u16)].prop_map(ResponseBodyModel::NoContent),
        1 => (0..100_000u64).prop_map(ResponseBodyModel::ToHead),
    ];
    (
        any::<bool>(),
        200..600u16,
        "[ -~]{0,12}",
        vec(field(), 0..5),
        kinds,
    )
        .prop_map(move |(interim, status, reason, fields, body)| {
            // an empty body on the last response of a stream may run until close
            let body = match body {
                ResponseBodyModel::NoContent(code) => ResponseBodyModel::NoContent(code),
                other if last => other,
                ResponseBodyModel::Framed(BodyModel::Empty) => {
                    ResponseBodyModel::Framed(BodyModel::Length(Vec::new()))
                }
                other => other,
            };
            let status = match body {
                ResponseBodyModel::NoContent(code) => code,
                // these statuses never have a body, so they cannot carry a framed one
                _ if status == 204 || status == 304 => 200,
                _ => status,
            };
            ResponseModel {
                interim,
                status,
                reason,
                fields,
                body,
            }
        })
}

fn write_field(out: &mut Vec<u8>, field: &FieldModel) {
    out.extend_from_slice(
        format!(
            "{}:{}{}{}\r\n",
            field.name, field.before, field.value, field.after
        )
        .as_bytes(),
    );
}

fn append_field(headers: &mut Headers, name: &str, value: &str) {
    headers
        .append(
            Bytes::copy_from_slice(name.as_bytes()),
            Bytes::copy_from_slice(value.as_bytes()),
        )
        .unwrap();
}

/// Writes the framing field and returns it, for the expected head.
fn framing_field(body: &BodyModel) -> Option<(&'static str, String)> {
    match body {
        BodyModel::Empty => None,
        BodyModel::Length(data) => Some(("Content-Length", data.len().to_string())),
        BodyModel::Chunked { .. } => Some(("Transfer-Encoding", "chunked".to_string())),
    }
}

fn write_body(out: &mut Vec<u8>, body: &BodyModel) {
    match body {
        BodyModel::Empty => {}
        BodyModel::Length(data) => out.extend_from_slice(data),
        BodyModel::Chunked {
            chunks,
            last_extension,
            trailers,
        } => {
            for chunk in chunks {
                let size = if chunk.upper {
                    format!("{:X}", chunk.data.len())
                } else {
                    format!("{:x}", chunk.data.len())
                };
                out.extend_from_slice(
                    format!(
                        "{}{size}{}\r\n",
                        "0".repeat(chunk.zeros),
                        chunk.extension.as_deref().unwrap_or("")
                    )
                    .as_bytes(),
                );
                out.extend_from_slice(&chunk.data);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(
                format!("0{}\r\n", last_extension.as_deref().unwrap_or("")).as_bytes(),
            );
            for trailer in trailers {
                write_field(out, trailer);
            }
            out.extend_from_slice(b"\r\n");
        }
    }
}

fn body_events<H>(body: &BodyModel, events: &mut Vec<Event<H>>) {
    let (data, trailers): (Vec<u8>, &[FieldModel]) = match body {
        BodyModel::Empty => (Vec::new(), &[]),
        BodyModel::Length(data) => (data.clone(), &[]),
        BodyModel::Chunked {
            chunks, trailers, ..
        } => (
            chunks.iter().flat_map(|c| c.data.clone()).collect(),
            trailers,
        ),
    };
    if !data.is_empty() {
        events.push(Event::BodyChunk(Bytes::from(data)));
    }
    let mut trailer_headers = Headers::new();
    for trailer in trailers {
        append_field(&mut trailer_headers, &trailer.name, &trailer.value);
    }
    events.push(Event::End(trailer_headers));
}

fn serialise_requests(models: &[RequestModel]) -> (Vec<u8>, Vec<Event<RequestHead>>) {
    let mut wire = Vec::new();
    let mut events = Vec::new();
    for model in models {
        let method = Method::from_token(model.method.clone()).unwrap();
        let mut head = RequestHead::new(method, model.target.clone(), Version::Http11).unwrap();
        wire.extend_from_slice(
            format!("{} {} HTTP/1.1\r\nHost: h\r\n", model.method, model.target).as_bytes(),
        );
        append_field(head.headers_mut(), "Host", "h");
        for field in &model.fields {
            write_field(&mut wire, field);
            append_field(head.headers_mut(), &field.name, &field.value);
        }
        if let Some((name, value)) = framing_field(&model.body) {
            wire.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
            append_field(head.headers_mut(), name, &value);
        }
        wire.extend_from_slice(b"\r\n");
        write_body(&mut wire, &model.body);
        events.push(Event::Head(head));
        body_events(&model.body, &mut events);
    }
    (wire, events)
}

/// The wire bytes, the expected events, and the request methods to announce.
fn serialise_responses(
    models: &[ResponseModel],
) -> (Vec<u8>, Vec<Event<ResponseHead>>, Vec<Method>) {
    let mut wire = Vec::new();
    let mut events = Vec::new();
    let mut methods = Vec::new();
    for model in models {
        let method = if matches!(model.body, ResponseBodyModel::ToHead(_)) {
            Method::HEAD
        } else {
            Method::POST
        };
        methods.push(method.clone());
        if model.interim {
            wire.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            let mut interim = ResponseHead::new(Version::Http11, 100, "Continue").unwrap();
            interim.set_request_method(method.clone());
            events.push(Event::Head(interim));
            events.push(Event::End(Headers::new()));
        }
        let mut head =
            ResponseHead::new(Version::Http11, model.status, model.reason.clone()).unwrap();
        head.set_request_method(method);
        wire.extend_from_slice(
            format!("HTTP/1.1 {} {}\r\n", model.status, model.reason).as_bytes(),
        );
        for field in &model.fields {
            write_field(&mut wire, field);
            append_field(head.headers_mut(), &field.name, &field.value);
        }
        let body = match &model.body {
            ResponseBodyModel::Framed(body) => body.clone(),
            ResponseBodyModel::NoContent(_) => BodyModel::Empty,
            ResponseBodyModel::ToHead(length) => {
                wire.extend_from_slice(format!("Content-Length: {length}\r\n").as_bytes());
                append_field(head.headers_mut(), "Content-Length", &length.to_string());
                BodyModel::Empty
            }
        };
        if let Some((name, value)) = framing_field(&body) {
            wire.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
            append_field(head.headers_mut(), name, &value);
        }
        wire.extend_from_slice(b"\r\n");
        write_body(&mut wire, &body);
        events.push(Event::Head(head));
        body_events(&body, &mut events);
    }
    (wire, events, methods)
}

/// `input` cut at the positions `cuts` pick.
fn pieces<'a>(input: &'a [u8], cuts: &[Index]) -> Vec<&'a [u8]> {
    let mut positions: Vec<usize> = cuts.iter().map(|cut| cut.index(input.len() + 1)).collect();
    positions.sort_unstable();
    positions.dedup();
    let mut pieces = Vec::new();
    let mut start = 0;
    for position in positions {
        pieces.push(&input[start..position]);
        start = position;
    }
    pieces.push(&input[start..]);
    pieces
}

fn response_decoder(config: DecoderConfig, methods: &[Method]) -> ResponseDecoder {
    let mut decoder = ResponseDecoder::new(config);
    for method in methods {
        decoder.expect_response_to(method.clone());
    }
    decoder
}

fn sse_items(
    parser: &mut SseParser,
    pieces: &[&[u8]],
) -> Result<Vec<SseItem>, crate::http::SseError> {
    let mut items = Vec::new();
    for piece in pieces {
        items.extend(parser.feed(piece)?);
    }
    Ok(items)
}

/// An SSE event's fields (any of them may be missing).
fn sse_event() -> impl Strategy<Value = crate::http::SseEvent> {
    (
        prop::option::of("[a-z/]{0,8}"),
        prop::option::of("[ -~\n]{0,40}"),
        prop::option::of("[!-~]{0,8}"),
        prop::option::of(any::<u64>()),
    )
        .prop_map(|(event, data, id, retry)| crate::http::SseEvent {
            event,
            data,
            id,
            retry,
        })
}

/// `events` encoded with `line_end` ending each line, and the items a parser
/// must read from it.
fn sse_stream(events: Vec<crate::http::SseEvent>, line_end: &str) -> (Vec<u8>, Vec<SseItem>) {
    let mut wire = BytesMut::new();
    let mut expected = Vec::new();
    for event in events {
        event.encode(&mut wire).unwrap();
        if event != crate::http::SseEvent::default() {
            expected.push(SseItem::Event(event));
        }
    }
    let wire = String::from_utf8(wire.to_vec())
        .unwrap()
        .replace('\n', line_end)
        .into_bytes();
    (wire, expected)
}

/// Requests and responses with every kind of framing, for the mutation test.
fn valid_stream() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(request(), 1..3).prop_map(|models| serialise_requests(&models).0),
        vec(response(false), 1..3).prop_map(|models| serialise_responses(&models).0),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(Index, u8),
    Insert(Index, u8),
    Delete(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let interesting = prop_oneof![
        any::<u8>(),
        prop::sample::select(vec![
            b'\r', b'\n', b' ', b'\t', b':', b';', b',', b'0', b'f', b'\0', b'"'
        ]),
    ];
    prop_oneof![
        (any::<Index>(), interesting.clone()).prop_map(|(at, byte)| Mutation::Flip(at, byte)),
        (any::<Index>(), interesting).prop_map(|(at, byte)| Mutation::Insert(at, byte)),
        any::<Index>().prop_map(Mutation::Delete),
    ]
}

fn mutate(mut input: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for mutation in mutations {
        match *mutation {
            Mutation::Flip(at, byte) if !input.is_empty() => {
                let at = at.index(input.len());
                input[at] = byte;
            }
            Mutation::Insert(at, byte) => input.insert(at.index(input.len() + 1), byte),
            Mutation::Delete(at) if !input.is_empty() => {
                input.remove(at.index(input.len()));
            }
            _ => {}
        }
    }
    input
}

/// Decoding `input` whole and in `cuts` gives the same events and error.
fn assert_split_invariant(input: &[u8], cuts: &[Index]) -> Result<(), TestCaseError> {
    let split = pieces(input, cuts);
    let whole: Decoded<RequestHead> = decode_pieces(&mut RequestDecoder::default(), [input]);
    let parts = decode_pieces(&mut RequestDecoder::default(), split.iter().copied());
    prop_assert_eq!(parts.merged(), whole.merged());
    prop_assert_eq!(parts.error, whole.error);
    for config in [DecoderConfig::responses(), DecoderConfig::requests()] {
        let whole: Decoded<ResponseHead> = decode_pieces(
            &mut response_decoder(config, &[Method::GET, Method::HEAD]),
            [input],
        );
        let parts = decode_pieces(
            &mut response_decoder(config, &[Method::GET, Method::HEAD]),
            split.iter().copied(),
        );
        prop_assert_eq!(parts.merged(), whole.merged());
        prop_assert_eq!(parts.error, whole.error);
    }
    let whole = sse_items(&mut SseParser::with_max_event_bytes(256), &[input]);
    let parts = sse_items(&mut SseParser::with_max_event_bytes(256), &split);
    prop_assert_eq!(parts, whole);
    Ok(())
}

// 256 cases each by default; PROPTEST_CASES raises it for a longer local run
proptest! {

    #[test]
    fn valid_requests_decode_to_their_model_however_split(models in vec(request(), 1..5), cuts in vec(any::<Index>(), 0..12)) {
        let (wire, expected) = serialise_requests(&models);
        let decoded = decode_pieces(&mut RequestDecoder::default(), pieces(&wire, &cuts));
        prop_assert_eq!(decoded.error, None);
        prop_assert_eq!(decoded.merged(), expected);
    }

    #[test]
    fn valid_requests_decode_one_byte_at_a_time(models in vec(request(), 1..3)) {
        let (wire, expected) = serialise_requests(&models);
        let decoded = decode_pieces(&mut RequestDecoder::default(), wire.chunks(1));
        prop_assert_eq!(decoded.error, None);
        prop_assert_eq!(decoded.merged(), expected);
    }

    #[test]
    fn valid_responses_decode_to_their_model_however_split(
        models in vec(response(false), 0..4),
        last in response(true),
        cuts in vec(any::<Index>(), 0..12),
    ) {
        let mut models = models;
        models.push(last);
        let (wire, expected, methods) = serialise_responses(&models);
        let decoded = decode_pieces(&mut response_decoder(DecoderConfig::responses(), &methods), pieces(&wire, &cuts));
        prop_assert_eq!(decoded.error, None);
        prop_assert_eq!(decoded.merged(), expected);
    }

    #[test]
    fn encoding_decoded_requests_reproduces_them(models in vec(request(), 1..4)) {
        use tokio_util::codec::Encoder;
        let (wire, expected) = serialise_requests(&models);
        let decoded = decode_pieces(&mut RequestDecoder::default(), [&wire[..]]);
        let mut encoder = crate::http::MessageEncoder::new();
        let mut encoded = BytesMut::new();
        for event in decoded.events {
            encoder.encode(event, &mut encoded).unwrap();
        }
        let redecoded = decode_pieces(&mut RequestDecoder::default(), [&encoded[..]]);
        prop_assert_eq!(redecoded.error, None);
        prop_assert_eq!(redecoded.merged(), expected);
    }

    #[test]
    fn sse_events_round_trip_however_split(
        events in vec(sse_event(), 0..20),
        cuts in vec(any::<Index>(), 0..12),
        line_end in prop::sample::select(vec!["\n", "\r\n", "\r"]),
    ) {
        // the encoder writes LF; the parser must read any of the three line ends alike
        let (wire, expected) = sse_stream(events, line_end);
        let items = sse_items(&mut SseParser::new(), &pieces(&wire, &cuts)).unwrap();
        prop_assert_eq!(items, expected);
    }

    #[test]
    fn spilled_sse_events_re_encode_to_the_same_events(
        events in vec(sse_event(), 0..12),
        cuts in vec(any::<Index>(), 0..12),
        spill_over in 0usize..48,
        line_end in prop::sample::select(vec!["\n", "\r\n", "\r"]),
    ) {
        let (wire, expected) = sse_stream(events, line_end);
        let mut spilling = SseParser::new().spill_over(spill_over);
        let items = sse_items(&mut spilling, &pieces(&wire, &cuts)).unwrap();
        // the parts of a spilled event, written as they come, are that event
        let mut again = BytesMut::new();
        for item in &items {
            item.encode(&mut again).unwrap();
        }
        let reread = sse_items(&mut SseParser::new(), &[&again[..]]).unwrap();
        prop_assert_eq!(reread, expected);
        // and data is held only up to the spill size
        for item in &items {
            if let SseItem::Event(e) = item {
                prop_assert!(e.data.as_ref().is_none_or(|d| d.len() <= spill_over), "{:?}", e);
            }
        }
    }

    #[test]
    fn random_bytes_never_panic_and_split_the_same(input in vec(any::<u8>(), 0..600), cuts in vec(any::<Index>(), 0..10)) {
        assert_split_invariant(&input, &cuts)?;
    }

    #[test]
    fn http_like_noise_never_panics_and_splits_the_same(
        words in vec(prop::sample::select(vec![
            "GET ", "POST ", "/ ", "HTTP/1.1", "HTTP/1.0", " 200 OK", "\r\n", "\n", "\r", " ", "\t", ":",
            "Host: h", "Content-Length: ", "Transfer-Encoding: ", "chunked", "gzip", ",", ";", "=", "\"",
            "0", "5", "a", "ff", "Connection: close", "Expect: 100-continue", "data: ", "id: ", "\u{feff}",
        ]), 0..80),
        cuts in vec(any::<Index>(), 0..10),
    ) {
        assert_split_invariant(words.concat().as_bytes(), &cuts)?;
    }

    #[test]
    fn mutated_messages_never_panic_and_split_the_same(
        input in valid_stream(),
        mutations in vec(mutation(), 1..4),
        cuts in vec(any::<Index>(), 0..10),
    ) {
        assert_split_invariant(&mutate(input, &mutations), &cuts)?;
    }
}
