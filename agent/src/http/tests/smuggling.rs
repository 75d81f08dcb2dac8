//! Request smuggling defences: every vector is refused with its reason, before any head of the
//! offending message is handed out.

use std::collections::HashSet;

use super::{decode_pieces, request_rejection, requests, responses};
use crate::http::{DecoderConfig, FramingError, ResponseDecoder};

const HEAD: &str = "POST /mcp HTTP/1.1\r\nHost: h\r\n";

/// A request with `fields` (CRLF-terminated lines) and `rest` after the head.
fn request(fields: &str, rest: &str) -> Vec<u8> {
    format!("{HEAD}{fields}\r\n{rest}").into_bytes()
}

fn assert_rejected(cases: &[(&str, &str)], reason: &str) {
    for (fields, rest) in cases {
        let input = request(fields, rest);
        assert_eq!(
            request_rejection(&input),
            reason,
            "{:?}",
            String::from_utf8_lossy(&input)
        );
    }
}

/// Rejections that happen in the body, after the head was accepted.
fn assert_body_rejected(chunked_body: &str, reason: FramingError) {
    let input = request("Transfer-Encoding: chunked\r\n", chunked_body);
    let decoded = requests(&input);
    assert_eq!(decoded.error, Some(reason), "{chunked_body:?}");
    assert_eq!(decoded.heads().len(), 1);
}

#[test]
fn te_and_cl() {
    assert_rejected(
        &[
            (
                "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                "0\r\n\r\n",
            ),
            (
                "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
                "0\r\n\r\n",
            ),
            ("Content-Length: 0\r\nTransfer-Encoding: chunked\r\n", ""),
            (
                "transfer-encoding: identity\r\ncontent-length: 3\r\n",
                "abc",
            ),
        ],
        "te-and-cl",
    );
    let http10 = b"POST / HTTP/1.0\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(request_rejection(http10), "te-and-cl");
}

#[test]
fn differing_content_lengths() {
    assert_rejected(
        &[
            ("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"),
            ("Content-Length: 5, 6\r\n", "hello!"),
            ("Content-Length: 5\r\nContent-Length: 5, 7\r\n", "hello!"),
        ],
        "cl-mismatch",
    );
}

#[test]
fn identical_content_lengths_are_folded() {
    for fields in [
        "Content-Length: 5\r\nContent-Length: 5\r\n",
        "Content-Length: 5, 5\r\n",
        "Content-Length: 5,5\r\nContent-Length: 5\r\n",
    ] {
        let decoded = requests(&request(fields, "hello"));
        assert_eq!(decoded.error, None, "{fields:?}");
        assert_eq!(decoded.merged().len(), 3);
    }
}

#[test]
fn content_length_syntax() {
    assert_rejected(
        &[
            ("Content-Length: abc\r\n", ""),
            ("Content-Length: +5\r\n", "hello"),
            ("Content-Length: -5\r\n", ""),
            ("Content-Length: 5 5\r\n", ""),
            ("Content-Length: 0x10\r\n", ""),
            ("Content-Length: 1.5\r\n", ""),
            ("Content-Length:\r\n", ""),
            ("Content-Length: 5,\r\n", "hello"),
            ("Content-Length: \"5\"\r\n", "hello"),
        ],
        "bad-content-length",
    );
    assert_rejected(
        &[("Content-Length: 99999999999999999999\r\n", "")],
        "cl-overflow",
    );
    assert_rejected(
        &[("Content-Length: 18446744073709551616\r\n", "")],
        "cl-overflow",
    );
}

#[test]
fn final_coding_must_be_exactly_chunked() {
    assert_rejected(
        &[
            ("Transfer-Encoding: gzip\r\n", ""),
            ("Transfer-Encoding: identity\r\n", ""),
            ("Transfer-Encoding: chunked, gzip\r\n", ""),
            (
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n",
                "",
            ),
            ("Transfer-Encoding: xchunked\r\n", ""),
            ("Transfer-Encoding: chunkedx\r\n", ""),
            ("Transfer-Encoding: chunk\r\n", ""),
        ],
        "te-not-chunked",
    );
    assert_rejected(
        &[
            ("Transfer-Encoding: chunked, chunked\r\n", "0\r\n\r\n"),
            (
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                "0\r\n\r\n",
            ),
        ],
        "te-chunked-twice",
    );
    assert_rejected(
        &[
            ("Transfer-Encoding: chunked;x=1\r\n", "0\r\n\r\n"),
            ("Transfer-Encoding: \"chunked\"\r\n", "0\r\n\r\n"),
            ("Transfer-Encoding: chu nked\r\n", "0\r\n\r\n"),
            ("Transfer-Encoding:\r\n", ""),
            ("Transfer-Encoding: ,\r\n", ""),
        ],
        "bad-transfer-encoding",
    );
    assert_rejected(
        &[("Transfer-Encoding: \x0bchunked\r\n", "0\r\n\r\n")],
        "bad-header-value",
    );
    assert_eq!(
        request_rejection(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        "te-http10"
    );
}

#[test]
fn chunk_sizes() {
    for body in [
        "zz\r\n",
        "-1\r\n",
        "0x5\r\nhello\r\n0\r\n\r\n",
        "5 \r\nhello\r\n0\r\n\r\n",
        " 5\r\nhello\r\n0\r\n\r\n",
        "\r\n",
        "1ffffffffffffffff\r\n",
        "10000000000000000\r\n",
        "5\r\nhello\r\nq\r\n",
    ] {
        assert_body_rejected(body, FramingError::BadChunkSize);
    }
    for body in [
        "5;\r\nhello\r\n0\r\n\r\n",
        "5;=x\r\n",
        "5;a=\"open\r\n",
        "5;a=b c\r\n",
        "5;a=\r\n",
    ] {
        assert_body_rejected(body, FramingError::BadChunkExtension);
    }
    for body in [
        "5\r\nhelloX\r\n0\r\n\r\n",
        "5\r\nhello0\r\n\r\n",
        "3\r\nabc\rX0\r\n\r\n",
    ] {
        assert_body_rejected(body, FramingError::MissingChunkCrlf);
    }
    assert_body_rejected(
        &format!("5;{}\r\n", "a".repeat(5000)),
        FramingError::ChunkLineTooLong,
    );
}

#[test]
fn trailer_sections_are_limited_like_heads() {
    let config = DecoderConfig {
        max_headers: 2,
        max_head_bytes: 64,
        ..DecoderConfig::requests()
    };
    let decode = |trailers: &str| {
        let input = request(
            "Transfer-Encoding: chunked\r\n",
            &format!("0\r\n{trailers}\r\n"),
        );
        decode_pieces(&mut crate::http::RequestDecoder::new(config), [&input[..]]).error
    };
    assert_eq!(decode("A: 1\r\nB: 2\r\n"), None);
    assert_eq!(
        decode("A: 1\r\nB: 2\r\nC: 3\r\n"),
        Some(FramingError::TooManyHeaders)
    );
    assert_eq!(
        decode(&format!("A: {}\r\n", "x".repeat(64))),
        Some(FramingError::HeadTooLarge)
    );
    assert_eq!(decode("A : 1\r\n"), Some(FramingError::WsBeforeColon));
    assert_eq!(decode(" A: 1\r\n"), Some(FramingError::ObsFold));
}

#[test]
fn line_folding() {
    assert_rejected(
        &[
            ("X-A: a\r\n b\r\n", ""),
            ("X-A: a\r\n\tb\r\n", ""),
            ("Transfer-Encoding:\r\n chunked\r\n", "0\r\n\r\n"),
            (" Content-Length: 5\r\n", "hello"),
        ],
        "obs-fold",
    );
    assert_eq!(
        request_rejection(b"GET / HTTP/1.1\r\n Host: h\r\n\r\n"),
        "obs-fold"
    );
    assert_eq!(
        responses(b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n").error,
        Some(FramingError::ObsFold)
    );
}

#[test]
fn bare_lf_in_requests() {
    for input in [
        &b"GET / HTTP/1.1\nHost: h\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: h\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\n\n",
        b"GET / HTTP/1.1\nHost: h\n\n",
    ] {
        assert_eq!(
            request_rejection(input),
            "bare-lf",
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
    assert_body_rejected("5\nhello\r\n0\r\n\r\n", FramingError::BareLf);
    assert_body_rejected("5\r\nhello\n0\r\n\r\n", FramingError::BareLf);
    assert_body_rejected("0\r\nX-T: 1\n\r\n", FramingError::BareLf);
}

#[test]
fn bare_lf_in_responses_is_configurable() {
    let input = b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok";
    assert_eq!(responses(input).error, None);
    let strict = DecoderConfig {
        allow_bare_lf: false,
        ..DecoderConfig::responses()
    };
    let decoded = decode_pieces(&mut ResponseDecoder::new(strict), [&input[..]]);
    assert_eq!(decoded.error, Some(FramingError::BareLf));
}

#[test]
fn bare_cr_anywhere() {
    assert_rejected(
        &[
            ("X-A: a\rb\r\n", ""),
            ("X-A: a\r\r\n", ""),
            ("X-A\r: a\r\n", ""),
        ],
        "bare-cr",
    );
    assert_eq!(
        request_rejection(b"GET / HTTP/1.1\r\rHost: h\r\n\r\n"),
        "bare-cr"
    );
    assert_body_rejected("5\r6\r\nhello\r\n", FramingError::BareCr);
    assert_eq!(
        responses(b"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n").error,
        Some(FramingError::BareCr)
    );
}

#[test]
fn whitespace_before_colon() {
    assert_rejected(
        &[
            ("Transfer-Encoding : chunked\r\n", "0\r\n\r\n"),
            ("Content-Length\t: 5\r\n", "hello"),
            ("X-A  : v\r\n", ""),
        ],
        "ws-before-colon",
    );
}

#[test]
fn invalid_field_names() {
    assert_rejected(
        &[
            ("X@Y: v\r\n", ""),
            ("X(Y): v\r\n", ""),
            ("Tr\u{e4}nsfer-Encoding: chunked\r\n", ""),
            (": v\r\n", ""),
            ("X\"Y: v\r\n", ""),
            ("X/Y: v\r\n", ""),
        ],
        "bad-header-name",
    );
    assert_rejected(&[("NoColon\r\n", "")], "missing-colon");
}

#[test]
fn control_bytes_in_values() {
    assert_rejected(
        &[
            ("X-A: a\0b\r\n", ""),
            ("X-A: \x01\r\n", ""),
            ("X-A: a\x7f\r\n", ""),
            ("X-A: \x1b[31m\r\n", ""),
        ],
        "bad-header-value",
    );
    let obs_text = requests(b"GET / HTTP/1.1\r\nHost: h\r\nX: \xff\xfe ok\r\n\r\n");
    assert_eq!(obs_text.error, None, "obs-text is allowed in values");
}

#[test]
fn classic_desync_payloads() {
    // CL.TE: a front end honouring Content-Length forwards the smuggled prefix as body
    let cl_te = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 13\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nSMUGGLED";
    assert_eq!(request_rejection(cl_te), "te-and-cl");
    // TE.TE with an obfuscated second coding
    let te_te = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-encoding: cow\r\n\r\n5c\r\nGPOST";
    assert_eq!(request_rejection(te_te), "te-not-chunked");
    // a smuggled request behind a valid one: the first still goes through, alone
    let mut pipeline = b"GET /ok HTTP/1.1\r\nHost: h\r\n\r\n".to_vec();
    pipeline.extend_from_slice(cl_te);
    let decoded = requests(&pipeline);
    assert_eq!(decoded.heads().len(), 1);
    assert_eq!(decoded.error, Some(FramingError::TeAndCl));
}

#[test]
fn responses_get_the_same_framing_checks() {
    let cases: [(&[u8], FramingError); 4] = [
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            FramingError::TeAndCl,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            FramingError::ClMismatch,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            FramingError::TeChunkedTwice,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n",
            FramingError::BadChunkSize,
        ),
    ];
    for (input, reason) in cases {
        assert_eq!(
            responses(input).error,
            Some(reason),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn reasons_are_stable_and_unique() {
    use FramingError::*;
    let all = [
        HeadTooLarge,
        TooManyHeaders,
        ChunkLineTooLong,
        BodyTooLarge,
        BadRequestLine,
        BadStatusLine,
        UnsupportedVersion,
        BareLf,
        BareCr,
        ObsFold,
        WsBeforeColon,
        BadHeaderName,
        MissingColon,
        BadHeaderValue,
        MissingHost,
        DuplicateHost,
        TeAndCl,
        ClMismatch,
        BadContentLength,
        ContentLengthOverflow,
        TeNotChunked,
        TeChunkedTwice,
        BadTransferEncoding,
        TeInHttp10,
        BadChunkSize,
        BadChunkExtension,
        MissingChunkCrlf,
        TruncatedHead,
        TruncatedBody,
        BodyLengthMismatch,
        TrailersNeedChunked,
        EventOutOfOrder,
    ];
    let reasons: HashSet<&str> = all.iter().map(|error| error.reason()).collect();
    assert_eq!(reasons.len(), all.len());
    assert!(reasons.iter().all(|reason| {
        reason
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    }));
    assert_eq!(
        TeAndCl.to_string(),
        "te-and-cl: both Content-Length and Transfer-Encoding"
    );
    for (error, reason) in [
        (TeAndCl, "te-and-cl"),
        (ClMismatch, "cl-mismatch"),
        (BadChunkSize, "bad-chunk-size"),
        (ObsFold, "obs-fold"),
        (BareLf, "bare-lf"),
    ] {
        assert_eq!(error.reason(), reason);
    }
}
