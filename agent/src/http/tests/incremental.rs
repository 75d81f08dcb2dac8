//! Incremental decoding: the same stream split anywhere decodes to the same events.

use super::{Decoded, decode_pieces, requests, requests_bytewise};
use crate::http::{Event, Method, RequestDecoder, ResponseDecoder, ResponseHead};

const CHUNKED_WITH_TRAILERS: &[u8] = b"POST /mcp HTTP/1.1\r\n\
Host: h\r\n\
Transfer-Encoding: gzip, chunked\r\n\
\r\n\
5;ext=1\r\nhello\r\n\
1a;name=\"quo;ted\"\r\nabcdefghijklmnopqrstuvwxyz\r\n\
0;last\r\n\
X-Checksum: abc\r\n\
X-Other: d\r\n\
\r\n\
GET /next HTTP/1.1\r\nHost: h\r\n\r\n";

/// Every two-piece split of `input`, and one byte at a time, against the whole.
fn assert_split_invariant<H: Clone + PartialEq + std::fmt::Debug>(
    input: &[u8],
    decode: impl Fn(Vec<&[u8]>) -> Decoded<H>,
) {
    let whole = decode(vec![input]);
    let bytewise = decode(input.chunks(1).collect());
    assert_eq!(bytewise.merged(), whole.merged());
    assert_eq!(bytewise.error, whole.error);
    for split in 0..=input.len() {
        let (first, second) = input.split_at(split);
        let decoded = decode(vec![first, second]);
        assert_eq!(decoded.merged(), whole.merged(), "split at {split}");
        assert_eq!(decoded.error, whole.error, "split at {split}");
    }
}

#[test]
fn chunked_with_trailers_split_anywhere() {
    let whole = requests(CHUNKED_WITH_TRAILERS);
    assert_eq!(whole.error, None);
    assert_eq!(whole.heads().len(), 2);
    assert_split_invariant(CHUNKED_WITH_TRAILERS, |pieces| {
        decode_pieces(&mut RequestDecoder::default(), pieces)
    });
}

#[test]
fn bytewise_body_arrives_byte_by_byte() {
    let decoded = requests_bytewise(CHUNKED_WITH_TRAILERS);
    let chunks: Vec<usize> = decoded
        .events
        .iter()
        .filter_map(|event| {
            if let Event::BodyChunk(data) = event {
                Some(data.len())
            } else {
                None
            }
        })
        .collect();
    assert_eq!(
        chunks.len(),
        5 + 26,
        "each body byte is handed out when it arrives"
    );
    assert!(chunks.iter().all(|&len| len == 1));
}

#[test]
fn pipelined_requests_split_anywhere() {
    let input = b"\r\nGET /a HTTP/1.1\r\nHost: h\r\n\r\n\
POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\nbody\
POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\n\
GET /d HTTP/1.0\r\n\r\n\
GET /ignored-after-close HTTP/1.1\r\nHost: h\r\n\r\n";
    let whole = requests(input);
    assert_eq!(whole.heads().len(), 4);
    assert_split_invariant(input, |pieces| {
        decode_pieces(&mut RequestDecoder::default(), pieces)
    });
}

fn response_decoder() -> ResponseDecoder {
    let mut decoder = ResponseDecoder::default();
    for method in [Method::POST, Method::HEAD, Method::GET, Method::GET] {
        decoder.expect_response_to(method);
    }
    decoder
}

#[test]
fn responses_split_anywhere() {
    let input = b"HTTP/1.1 100 Continue\r\n\r\n\
HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}\
HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n\
HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n4\ndata\n0\nX-T: 1\n\n\
HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: until close\n\n";
    let whole: Decoded<ResponseHead> = decode_pieces(&mut response_decoder(), [&input[..]]);
    assert_eq!(whole.error, None);
    assert_eq!(whole.heads().len(), 5);
    assert_split_invariant(input, |pieces| {
        decode_pieces(&mut response_decoder(), pieces)
    });
}

#[test]
fn rejections_do_not_depend_on_splits() {
    for input in [
        &b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n",
        b"GET / HTTP/1.1\nHost: h\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n",
    ] {
        assert!(requests(input).error.is_some());
        assert_split_invariant(input, |pieces| {
            decode_pieces(&mut RequestDecoder::default(), pieces)
        });
    }
}
