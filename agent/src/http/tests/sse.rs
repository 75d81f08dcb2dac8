//! Server-sent events: parsing per the WHATWG algorithm, incrementally, and re-encoding.

use bytes::BytesMut;

use crate::http::{SseError, SseEvent, SseItem, SseParser};

fn parse(pieces: &[&[u8]]) -> Vec<SseItem> {
    let mut parser = SseParser::new();
    pieces
        .iter()
        .flat_map(|piece| parser.feed(piece).unwrap())
        .collect()
}

fn event(event: Option<&str>, data: Option<&str>, id: Option<&str>, retry: Option<u64>) -> SseItem {
    SseItem::Event(SseEvent {
        event: event.map(String::from),
        data: data.map(String::from),
        id: id.map(String::from),
        retry,
    })
}

fn data(text: &str) -> SseItem {
    event(None, Some(text), None, None)
}

#[test]
fn fields_of_an_event() {
    let items = parse(&[b"event: message\nid: 42\nretry: 3000\ndata: {\"jsonrpc\":\"2.0\"}\n\n"]);
    assert_eq!(
        items,
        [event(
            Some("message"),
            Some("{\"jsonrpc\":\"2.0\"}"),
            Some("42"),
            Some(3000)
        )]
    );
}

#[test]
fn data_lines_are_joined_with_newlines() {
    let items = parse(&[b"data: first\ndata:second\ndata\ndata:  indented\n\n"]);
    assert_eq!(items, [data("first\nsecond\n\n indented")]);
    assert_eq!(parse(&[b"data:\n\n"]), [data("")]);
}

#[test]
fn line_endings_lf_crlf_cr_and_mixed() {
    let expected = [data("a\nb"), data("c")];
    for stream in [
        &b"data: a\ndata: b\n\ndata: c\n\n"[..],
        b"data: a\r\ndata: b\r\n\r\ndata: c\r\n\r\n",
        b"data: a\rdata: b\r\rdata: c\r\r",
        b"data: a\r\ndata: b\r\rdata: c\n\r\n",
    ] {
        assert_eq!(
            parse(&[stream]),
            expected,
            "{:?}",
            String::from_utf8_lossy(stream)
        );
    }
}

#[test]
fn crlf_split_between_chunks_is_one_line_end() {
    assert_eq!(
        parse(&[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]),
        [data("a\nb")]
    );
    // a CR at the end of a chunk still ends the line at once
    let mut parser = SseParser::new();
    assert_eq!(parser.feed(b"data: a\r\r").unwrap(), [data("a")]);
    assert_eq!(parser.feed(b"\ndata: b\n\n").unwrap(), [data("b")]);
}

#[test]
fn bom_at_start_only() {
    assert_eq!(parse(&[b"\xEF\xBB\xBFdata: x\n\n"]), [data("x")]);
    assert_eq!(
        parse(&[b"\xEF", b"\xBB", b"\xBF", b"data: x\n\n"]),
        [data("x")]
    );
    assert_eq!(parse(&[b"\xEF\xBB", b"\xBFdata: x\n\n"]), [data("x")]);
    // a second BOM is part of the field name, which is then unknown
    assert_eq!(
        parse(&[b"\xEF\xBB\xBF\xEF\xBB\xBFdata: x\n\ndata: y\n\n"]),
        [data("y")]
    );
    assert_eq!(parse(&[b"data: x\n\n\xEF\xBB\xBFdata: y\n\n"]), [data("x")]);
    // the start of a BOM that turns out not to be one is kept as text
    assert_eq!(
        parse(&[b"\xEF\xBB", b"Xdata: y\n\ndata: z\n\n"]),
        [data("z")]
    );
    assert_eq!(parse(&[b"d", b"ata: short\n\n"]), [data("short")]);
}

#[test]
fn comments_are_separate_items() {
    let items = parse(&[b": ping\ndata: a\n:\ndata: b\n\n: bye\n\n"]);
    assert_eq!(
        items,
        [
            SseItem::Comment(" ping".into()),
            SseItem::Comment(String::new()),
            data("a\nb"),
            SseItem::Comment(" bye".into())
        ]
    );
}

#[test]
fn field_rules() {
    // last event/id wins, invalid retry and id with NUL are ignored, unknown fields ignored
    let items = parse(&[
        b"event: a\nevent: b\nid: 1\nid: 2\0\nretry: 10x\nretry: 20\nretry\nfoo: bar\ndata: d\n\n",
    ]);
    assert_eq!(items, [event(Some("b"), Some("d"), Some("1"), Some(20))]);
    assert_eq!(
        parse(&[b"retry: 99999999999999999999999\ndata: d\n\n"]),
        [data("d")]
    );
    // names are case-sensitive, and a space before the colon makes another name
    assert_eq!(parse(&[b"Data: x\ndata : y\n\n"]), []);
    // the value is everything after the first colon
    assert_eq!(parse(&[b"data: a: b\n\n"]), [data("a: b")]);
}

#[test]
fn blocks_without_data_are_kept_for_relay() {
    let items = parse(&[b"id: 7\n\nretry: 500\n\nfoo: bar\n\n\n\n"]);
    assert_eq!(
        items,
        [
            event(None, None, Some("7"), None),
            event(None, None, None, Some(500))
        ]
    );
    let SseItem::Event(only_id) = &items[0] else {
        panic!()
    };
    assert_eq!(only_id.event_type(), "message");
}

#[test]
fn events_are_yielded_when_their_blank_line_arrives() {
    let mut parser = SseParser::new();
    assert_eq!(parser.feed(b"data: {\"id\":1}\n").unwrap(), []);
    assert_eq!(parser.feed(b"\n").unwrap(), [data("{\"id\":1}")]);
    assert_eq!(parser.feed(b"data: partial").unwrap(), []);
    assert_eq!(
        parser.feed(b" line\n\ndata: next\n").unwrap(),
        [data("partial line")]
    );
}

#[test]
fn last_event_id() {
    let mut parser = SseParser::new();
    parser.feed(b"id: a\ndata: 1\n\ndata: 2\n\n").unwrap();
    assert_eq!(parser.last_event_id(), "a");
    parser.feed(b"id\ndata: 3\n\n").unwrap();
    assert_eq!(parser.last_event_id(), "");
}

#[test]
fn invalid_utf8_is_replaced() {
    assert_eq!(parse(&[b"data: a\xFFb\n\n"]), [data("a\u{FFFD}b")]);
}

fn thousand_events() -> (Vec<u8>, Vec<SseItem>) {
    let mut stream = Vec::new();
    let mut expected = Vec::new();
    for index in 0..1000 {
        let payload = format!(
            "{{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{{\"progress\":{index}}}}}"
        );
        stream.extend_from_slice(
            format!("id: {index}\r\nevent: message\r\ndata: {payload}\r\n\r\n").as_bytes(),
        );
        expected.push(event(
            Some("message"),
            Some(&payload),
            Some(&index.to_string()),
            None,
        ));
        if index % 100 == 0 {
            stream.extend_from_slice(b": keep-alive\r\n");
            expected.push(SseItem::Comment(" keep-alive".into()));
        }
    }
    (stream, expected)
}

#[test]
fn a_thousand_events_in_order_however_split() {
    let (stream, expected) = thousand_events();
    assert_eq!(parse(&[&stream]), expected);
    for size in [1, 2, 3, 7, 64, 1000, 4096] {
        let pieces: Vec<&[u8]> = stream.chunks(size).collect();
        assert_eq!(parse(&pieces), expected, "pieces of {size}");
    }
}

const RICH_STREAM: &[u8] = b"\xEF\xBB\xBF: welcome\r\nretry: 1000\r\n\r\n\
event: endpoint\rdata: /messages?session_id=abc\r\r\
id: 1\ndata: line one\ndata: line two\n\n\
data\r\ndata:\r\n\r\n\
id: 2\r\nevent: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\r\n\r\n";

#[test]
fn split_at_every_byte_boundary() {
    let whole = parse(&[RICH_STREAM]);
    assert_eq!(whole.len(), 6);
    assert_eq!(parse(&RICH_STREAM.chunks(1).collect::<Vec<_>>()), whole);
    for split in 0..=RICH_STREAM.len() {
        let (first, second) = RICH_STREAM.split_at(split);
        assert_eq!(parse(&[first, second]), whole, "split at {split}");
        for second_split in (split..=RICH_STREAM.len()).step_by(7) {
            let (middle, last) = second.split_at(second_split - split);
            assert_eq!(
                parse(&[first, middle, last]),
                whole,
                "split at {split} and {second_split}"
            );
        }
    }
}

#[test]
fn encode_round_trips() {
    let whole = parse(&[RICH_STREAM]);
    let mut encoded = BytesMut::new();
    for item in &whole {
        item.encode(&mut encoded).unwrap();
    }
    assert_eq!(parse(&[&encoded]), whole);
}

#[test]
fn encode_format() {
    let mut out = BytesMut::new();
    let item = event(Some("message"), Some("a\nb\r\nc\rd"), Some("9"), Some(5));
    item.encode(&mut out).unwrap();
    assert_eq!(
        &out[..],
        b"event: message\nid: 9\nretry: 5\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
    );
    out.clear();
    data(" leading space").encode(&mut out).unwrap();
    assert_eq!(parse(&[&out]), [data(" leading space")]);
    out.clear();
    SseItem::Comment(" ping".into()).encode(&mut out).unwrap();
    assert_eq!(&out[..], b": ping\n");
}

#[test]
fn encode_refuses_line_breaks_in_single_line_fields() {
    let mut out = BytesMut::new();
    assert_eq!(
        event(Some("a\nb"), Some("x"), None, None).encode(&mut out),
        Err(SseError::BadField)
    );
    assert_eq!(
        event(None, Some("x"), Some("1\r2"), None).encode(&mut out),
        Err(SseError::BadField)
    );
    assert_eq!(
        event(None, Some("x"), Some("1\u{0}2"), None).encode(&mut out),
        Err(SseError::BadField)
    );
    assert_eq!(
        SseItem::Comment("a\nb".into()).encode(&mut out),
        Err(SseError::BadField)
    );
    assert!(out.is_empty());
}

#[test]
fn event_size_limit_is_enforced_and_sticky() {
    let mut parser = SseParser::with_max_event_bytes(16);
    assert_eq!(
        parser.feed(b"data: 0123456789\n\n").unwrap(),
        [data("0123456789")]
    );
    assert_eq!(
        parser.feed(b"data: 0123\ndata: 456789"),
        Err(SseError::EventTooLarge)
    );
    assert_eq!(parser.feed(b"\n\n"), Err(SseError::EventTooLarge));
    assert_eq!(SseError::EventTooLarge.reason(), "sse-event-too-large");
}

#[test]
fn a_five_megabyte_event() {
    let payload = "x".repeat(5 * 1024 * 1024);
    let stream = format!("data: {payload}\n\n");
    let pieces: Vec<&[u8]> = stream.as_bytes().chunks(16 * 1024).collect();
    assert_eq!(parse(&pieces), [data(&payload)]);
}

#[test]
fn a_spilled_event_keeps_its_comments_out_of_its_data_and_its_id() {
    let stream = b"id: 7\ndata: 0123456789\n: ping\ndata: more\nevent: rows\n\n: after\n";
    for cut in 1..stream.len() {
        let mut parser = SseParser::new().spill_over(4);
        let mut items = parser.feed(&stream[..cut]).unwrap();
        items.extend(parser.feed(&stream[cut..]).unwrap());
        assert!(
            matches!(items[0], SseItem::Spill(crate::http::Spill::Start(_))),
            "{items:?}"
        );
        assert_eq!(parser.last_event_id(), "7", "{cut}");
        let mut again = BytesMut::new();
        for item in &items {
            item.encode(&mut again).unwrap();
        }
        let reread = SseParser::new().feed(&again).unwrap();
        assert_eq!(
            reread,
            [
                SseItem::Event(SseEvent {
                    event: Some("rows".into()),
                    data: Some("0123456789\nmore".into()),
                    id: Some("7".into()),
                    retry: None,
                }),
                SseItem::Comment(" ping".into()),
                SseItem::Comment(" after".into()),
            ],
            "{cut}"
        );
    }
}
