//! Typed errors of the framing layer.
//!
//! Every rejection has a stable short reason string (`FramingError::reason`) so the proxy can
//! answer 400/502 and record *why* without parsing prose.

use std::fmt;

/// Why a message (or an encoder call) was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FramingError {
    /// The head (start line + header fields + blank line) exceeds `DecoderConfig::max_head_bytes`.
    HeadTooLarge,
    /// More header (or trailer) fields than `DecoderConfig::max_headers`.
    TooManyHeaders,
    /// A chunk-size line exceeds `DecoderConfig::max_chunk_line_bytes`.
    ChunkLineTooLong,
    /// A collected body exceeds the caller's limit.
    BodyTooLarge,
    /// The request line does not match `method SP request-target SP HTTP-version CRLF`.
    BadRequestLine,
    /// The status line does not match `HTTP-version SP 3DIGIT SP reason CRLF`.
    BadStatusLine,
    /// An HTTP version other than 1.0 or 1.1.
    UnsupportedVersion,
    /// A line ends in LF without CR where that is not allowed.
    BareLf,
    /// A CR that is not followed by LF.
    BareCr,
    /// A line that starts with whitespace (obsolete line folding).
    ObsFold,
    /// Whitespace between a field name and its colon.
    WsBeforeColon,
    /// A field name with a byte that is not a token character.
    BadHeaderName,
    /// A field line without a colon.
    MissingColon,
    /// A field value with NUL or another control byte.
    BadHeaderValue,
    /// An HTTP/1.1 request without Host.
    MissingHost,
    /// A request with more than one Host field.
    DuplicateHost,
    /// Both Content-Length and Transfer-Encoding.
    TeAndCl,
    /// Content-Length values that differ.
    ClMismatch,
    /// A Content-Length value that is not `1*DIGIT`.
    BadContentLength,
    /// A Content-Length value above `u64::MAX`.
    ContentLengthOverflow,
    /// A request whose final transfer coding is not exactly `chunked`.
    TeNotChunked,
    /// `chunked` applied more than once.
    TeChunkedTwice,
    /// A Transfer-Encoding element that is not a transfer coding.
    BadTransferEncoding,
    /// Transfer-Encoding in an HTTP/1.0 message, whose framing is then unreliable.
    TeInHttp10,
    /// A chunk size that is not hex, overflows `u64`, or is followed by junk.
    BadChunkSize,
    /// A malformed chunk extension.
    BadChunkExtension,
    /// Chunk data not followed by CRLF.
    MissingChunkCrlf,
    /// The connection closed inside a head.
    TruncatedHead,
    /// The connection closed before the body was complete.
    TruncatedBody,
    /// Encoder: body bytes do not add up to the declared length (or a body where none is allowed).
    BodyLengthMismatch,
    /// Encoder: trailers given for a body that is not chunked.
    TrailersNeedChunked,
    /// Encoder: a body event before any head, or after the message ended.
    EventOutOfOrder,
}

impl FramingError {
    /// Stable short reason, suitable for records and metrics labels.
    pub fn reason(self) -> &'static str {
        self.describe().0
    }

    fn describe(self) -> (&'static str, &'static str) {
        use FramingError::*;
        match self {
            HeadTooLarge => ("head-too-large", "message head exceeds the size limit"),
            TooManyHeaders => ("too-many-headers", "more header fields than allowed"),
            ChunkLineTooLong => (
                "chunk-line-too-long",
                "chunk-size line exceeds the size limit",
            ),
            BodyTooLarge => ("body-too-large", "body exceeds the size limit"),
            BadRequestLine => ("bad-request-line", "malformed request line"),
            BadStatusLine => ("bad-status-line", "malformed status line"),
            UnsupportedVersion => ("unsupported-version", "HTTP version other than 1.0 or 1.1"),
            BareLf => ("bare-lf", "line ends in LF without CR"),
            BareCr => ("bare-cr", "CR not followed by LF"),
            ObsFold => ("obs-fold", "line folding (line starts with whitespace)"),
            WsBeforeColon => ("ws-before-colon", "whitespace between field name and colon"),
            BadHeaderName => ("bad-header-name", "invalid byte in field name"),
            MissingColon => ("missing-colon", "field line without colon"),
            BadHeaderValue => ("bad-header-value", "NUL or control byte in field value"),
            MissingHost => ("missing-host", "HTTP/1.1 request without Host"),
            DuplicateHost => ("duplicate-host", "more than one Host field"),
            TeAndCl => ("te-and-cl", "both Content-Length and Transfer-Encoding"),
            ClMismatch => ("cl-mismatch", "differing Content-Length values"),
            BadContentLength => (
                "bad-content-length",
                "Content-Length is not a decimal number",
            ),
            ContentLengthOverflow => ("cl-overflow", "Content-Length does not fit in 64 bits"),
            TeNotChunked => ("te-not-chunked", "final transfer coding is not chunked"),
            TeChunkedTwice => ("te-chunked-twice", "chunked applied more than once"),
            BadTransferEncoding => ("bad-transfer-encoding", "malformed Transfer-Encoding"),
            TeInHttp10 => ("te-http10", "Transfer-Encoding in an HTTP/1.0 message"),
            BadChunkSize => ("bad-chunk-size", "malformed chunk size"),
            BadChunkExtension => ("bad-chunk-ext", "malformed chunk extension"),
            MissingChunkCrlf => ("missing-chunk-crlf", "chunk data not followed by CRLF"),
            TruncatedHead => ("truncated-head", "connection closed inside a message head"),
            TruncatedBody => ("truncated-body", "connection closed before the body ended"),
            BodyLengthMismatch => (
                "body-length-mismatch",
                "body does not match its declared length",
            ),
            TrailersNeedChunked => (
                "trailers-need-chunked",
                "trailers on a body that is not chunked",
            ),
            EventOutOfOrder => ("event-out-of-order", "body event without a message head"),
        }
    }
}

impl fmt::Display for FramingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (reason, description) = self.describe();
        write!(f, "{reason}: {description}")
    }
}

impl std::error::Error for FramingError {}

/// Error of the tokio-util codec impls and async helpers: framing or I/O.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error(transparent)]
    Framing(#[from] FramingError),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl CodecError {
    /// The framing reason, if this is a framing error.
    pub fn framing(&self) -> Option<FramingError> {
        match self {
            CodecError::Framing(error) => Some(*error),
            CodecError::Io(_) => None,
        }
    }
}
