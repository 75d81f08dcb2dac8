//! Body framing: how the end of a body is found (RFC 9112 §6), the checks that refuse framing
//! that two parsers could read differently (request smuggling), and the body decoder.

use bytes::BytesMut;

use super::chunked::ChunkedDecoder;
use super::decoder::DecoderConfig;
use super::error::FramingError;
use super::grammar;
use super::head::{Headers, Method, Version};

/// How a message body is delimited on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body: a request without Content-Length/Transfer-Encoding, or a response to HEAD,
    /// a 1xx, 204, 304, or a 2xx to CONNECT.
    Empty,
    /// Exactly this many bytes (Content-Length).
    Length(u64),
    /// Transfer-Encoding with `chunked` as the final coding.
    Chunked,
    /// A response body that ends when the server closes the connection.
    UntilClose,
}

/// What the framing fields declare, once the ambiguous combinations are ruled out.
enum Declared {
    Nothing,
    Length(u64),
    /// Transfer-Encoding present; whether its final coding is exactly `chunked`.
    Codings {
        chunked_last: bool,
    },
}

fn declared(version: Version, headers: &Headers) -> Result<Declared, FramingError> {
    let has_transfer_encoding = headers.contains("transfer-encoding");
    if has_transfer_encoding && headers.contains("content-length") {
        // RFC 9112 §6.1: either may be honoured by another hop; the message is refused whole
        return Err(FramingError::TeAndCl);
    }
    if has_transfer_encoding {
        if version == Version::Http10 {
            return Err(FramingError::TeInHttp10);
        }
        return transfer_codings(headers).map(|chunked_last| Declared::Codings { chunked_last });
    }
    if headers.contains("content-length") {
        let length =
            grammar::content_length(headers.get_all("content-length").map(|value| &value[..]))?;
        return Ok(Declared::Length(length));
    }
    Ok(Declared::Nothing)
}

/// Reads Transfer-Encoding and returns whether its final coding is exactly `chunked`.
fn transfer_codings(headers: &Headers) -> Result<bool, FramingError> {
    // several fields form one list, in order (RFC 9110 §5.3); empty elements are ignored
    let mut codings = Vec::new();
    for value in headers.get_all("transfer-encoding") {
        for element in grammar::list_elements(value).filter(|element| !element.is_empty()) {
            codings.push(grammar::transfer_coding(element)?);
        }
    }
    let is_chunked = |name: &[u8]| name.eq_ignore_ascii_case(b"chunked");
    let Some(&(last, _)) = codings.last() else {
        return Err(FramingError::BadTransferEncoding);
    };
    // chunked takes no parameters; one that has them is not "exactly chunked" either way
    if codings
        .iter()
        .any(|&(name, parameters)| is_chunked(name) && parameters)
    {
        return Err(FramingError::BadTransferEncoding);
    }
    if codings
        .iter()
        .filter(|&&(name, _)| is_chunked(name))
        .count()
        > 1
    {
        return Err(FramingError::TeChunkedTwice);
    }
    Ok(is_chunked(last))
}

/// Request body framing (RFC 9112 §6.3, rules 3-6 for requests).
pub(crate) fn request_framing(
    version: Version,
    headers: &Headers,
) -> Result<BodyFraming, FramingError> {
    match declared(version, headers)? {
        Declared::Nothing => Ok(BodyFraming::Empty),
        Declared::Length(length) => Ok(BodyFraming::Length(length)),
        Declared::Codings { chunked_last: true } => Ok(BodyFraming::Chunked),
        // the server could not find the end of this body
        Declared::Codings {
            chunked_last: false,
        } => Err(FramingError::TeNotChunked),
    }
}

/// Response body framing (RFC 9112 §6.3, in order). The framing fields are checked even when
/// the status says there is no body, so a malformed response is refused consistently.
pub(crate) fn response_framing(
    request_method: &Method,
    status: u16,
    version: Version,
    headers: &Headers,
) -> Result<BodyFraming, FramingError> {
    let declared = declared(version, headers)?;
    let no_body = *request_method == Method::HEAD
        || (100..200).contains(&status)
        || status == 204
        || status == 304
        || (*request_method == Method::CONNECT && (200..300).contains(&status));
    if no_body {
        return Ok(BodyFraming::Empty);
    }
    Ok(match declared {
        Declared::Nothing => BodyFraming::UntilClose,
        Declared::Length(length) => BodyFraming::Length(length),
        Declared::Codings { chunked_last: true } => BodyFraming::Chunked,
        Declared::Codings {
            chunked_last: false,
        } => BodyFraming::UntilClose,
    })
}

/// A piece of decoded body.
pub(crate) enum BodyEvent {
    Data(bytes::Bytes),
    /// The body is complete; trailers are empty unless the body was chunked and sent some.
    End(Headers),
}

/// Decodes one body as bytes arrive, yielding data as soon as it is there.
#[derive(Debug)]
pub(crate) enum BodyDecoder {
    Length { remaining: u64 },
    Chunked(ChunkedDecoder),
    UntilClose,
}

impl BodyDecoder {
    pub(crate) fn new(framing: BodyFraming) -> BodyDecoder {
        match framing {
            BodyFraming::Empty => BodyDecoder::Length { remaining: 0 },
            BodyFraming::Length(length) => BodyDecoder::Length { remaining: length },
            BodyFraming::Chunked => BodyDecoder::Chunked(ChunkedDecoder::default()),
            BodyFraming::UntilClose => BodyDecoder::UntilClose,
        }
    }

    pub(crate) fn decode(
        &mut self,
        buf: &mut BytesMut,
        config: &DecoderConfig,
    ) -> Result<Option<BodyEvent>, FramingError> {
        match self {
            BodyDecoder::Length { remaining: 0 } => Ok(Some(BodyEvent::End(Headers::new()))),
            BodyDecoder::Length { .. } | BodyDecoder::UntilClose if buf.is_empty() => Ok(None),
            BodyDecoder::Length { remaining } => {
                let taken = usize::try_from(*remaining)
                    .map_or(buf.len(), |remaining| remaining.min(buf.len()));
                *remaining -= taken as u64;
                Ok(Some(BodyEvent::Data(buf.split_to(taken).freeze())))
            }
            BodyDecoder::Chunked(chunked) => chunked.decode(buf, config),
            BodyDecoder::UntilClose => Ok(Some(BodyEvent::Data(buf.split().freeze()))),
        }
    }

    /// As `decode`, once the peer has closed: a close-delimited body ends here, any other
    /// unfinished body was truncated.
    pub(crate) fn decode_eof(
        &mut self,
        buf: &mut BytesMut,
        config: &DecoderConfig,
    ) -> Result<Option<BodyEvent>, FramingError> {
        match self.decode(buf, config)? {
            Some(event) => Ok(Some(event)),
            None if matches!(self, BodyDecoder::UntilClose) => {
                Ok(Some(BodyEvent::End(Headers::new())))
            }
            None => Err(FramingError::TruncatedBody),
        }
    }
}
