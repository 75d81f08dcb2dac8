//! nom rules for the HTTP/1.1 wire syntax (RFC 9110 / RFC 9112).
//!
//! Every rule runs over a piece of input that is already delimited (a whole header block, a whole
//! chunk-size line, one field value), so the rules use nom's `complete` parsers. A rule that
//! recognises a specific defect fails with `Err::Failure(GrammarError::Framing(reason))`, which
//! stops the whole parse with that reason; a plain mismatch is `Err::Error(Mismatch)` so that
//! alternatives and repetitions can backtrack.

use nom::branch::alt;
use nom::bytes::complete::{tag, take, take_while, take_while_m_n, take_while1};
use nom::character::complete::{digit1, hex_digit1, space0};
use nom::combinator::{all_consuming, map_res, not, opt, recognize, value, verify};
use nom::error::{ErrorKind, FromExternalError, ParseError};
use nom::multi::{many_m_n, many0};
use nom::{IResult, Parser};

use super::error::FramingError;
use super::head::Version;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GrammarError {
    /// The rule did not match; alternatives may still apply.
    Mismatch,
    /// A definite defect with its reason.
    Framing(FramingError),
}

impl<I> ParseError<I> for GrammarError {
    fn from_error_kind(_: I, _: ErrorKind) -> Self {
        GrammarError::Mismatch
    }

    fn append(_: I, _: ErrorKind, other: Self) -> Self {
        other
    }
}

impl<I, E> FromExternalError<I, E> for GrammarError {
    fn from_external_error(_: I, _: ErrorKind, _: E) -> Self {
        GrammarError::Mismatch
    }
}

pub(crate) type Parsed<'a, T> = IResult<&'a [u8], T, GrammarError>;

/// A field line's name and value.
pub(crate) type Field<'a> = (&'a [u8], &'a [u8]);

/// A request line's method, target and version.
pub(crate) type RequestLine<'a> = (&'a [u8], &'a [u8], Version);

fn failure(reason: FramingError) -> nom::Err<GrammarError> {
    nom::Err::Failure(GrammarError::Framing(reason))
}

/// Runs `parser`; a plain mismatch becomes a definite failure with `reason`.
fn or_fail<'a, O>(
    reason: FramingError,
    mut parser: impl Parser<&'a [u8], Output = O, Error = GrammarError>,
) -> impl FnMut(&'a [u8]) -> Parsed<'a, O> {
    move |input| {
        parser.parse(input).map_err(|error| match error {
            nom::Err::Error(GrammarError::Mismatch) => failure(reason),
            other => other,
        })
    }
}

/// Turns the outcome of a top-level rule into the value or the reason it failed;
/// `otherwise` names an unclassified mismatch.
pub(crate) fn finish<T>(result: Parsed<'_, T>, otherwise: FramingError) -> Result<T, FramingError> {
    match result {
        Ok((_, value)) => Ok(value),
        Err(nom::Err::Error(GrammarError::Framing(reason)))
        | Err(nom::Err::Failure(GrammarError::Framing(reason))) => Err(reason),
        Err(_) => Err(otherwise),
    }
}

// ---- byte classes (RFC 9110 §5.6.2, §5.5, RFC 9112 §3.2) ----

/// tchar: the bytes of a token (method, field name, transfer coding).
pub(crate) fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// VCHAR / obs-text / SP / HTAB: what a field value (or reason phrase) may hold.
pub(crate) fn is_field_byte(byte: u8) -> bool {
    matches!(byte, b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff)
}

/// Visible ASCII: what a request-target may hold (no whitespace, no control, no raw UTF-8).
pub(crate) fn is_target_byte(byte: u8) -> bool {
    matches!(byte, 0x21..=0x7e)
}

fn is_qdtext(byte: u8) -> bool {
    matches!(byte, b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff)
}

pub(crate) fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(|&byte| is_tchar(byte))
}

pub(crate) fn is_field_value(bytes: &[u8]) -> bool {
    bytes.iter().all(|&byte| is_field_byte(byte))
}

/// The elements of a comma-separated field value, trimmed of OWS; empty elements are kept so
/// that each caller decides whether they are acceptable.
pub(crate) fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&byte| byte == b',')
        .map(|element| element.trim_ascii())
}

// ---- lines ----

fn token(input: &[u8]) -> Parsed<'_, &[u8]> {
    take_while1(is_tchar).parse(input)
}

fn bare_lf(allow_bare_lf: bool) -> impl Fn(&[u8]) -> Parsed<'_, ()> {
    move |input| {
        let (rest, _) = tag("\n").parse(input)?;
        if allow_bare_lf {
            Ok((rest, ()))
        } else {
            Err(failure(FramingError::BareLf))
        }
    }
}

fn bare_cr(input: &[u8]) -> Parsed<'_, ()> {
    let _ = tag("\r").parse(input)?;
    Err(failure(FramingError::BareCr))
}

/// End of a line: CRLF, or a bare LF where `allow_bare_lf`; a CR not followed by LF is always
/// a defect, because some parsers treat it as a line end and others do not.
pub(crate) fn line_end(allow_bare_lf: bool) -> impl FnMut(&[u8]) -> Parsed<'_, ()> {
    move |input| alt((value((), tag("\r\n")), bare_lf(allow_bare_lf), bare_cr)).parse(input)
}

fn http_version(input: &[u8]) -> Parsed<'_, Version> {
    let (rest, (major, minor)) = (
        tag("HTTP/"),
        take_while_m_n(1, 1, |b: u8| b.is_ascii_digit()),
        tag("."),
        take_while_m_n(1, 1, |b: u8| b.is_ascii_digit()),
    )
        .map(|(_, major, _, minor)| (major, minor))
        .parse(input)?;
    match (major, minor) {
        (b"1", b"1") => Ok((rest, Version::Http11)),
        (b"1", b"0") => Ok((rest, Version::Http10)),
        _ => Err(failure(FramingError::UnsupportedVersion)),
    }
}

/// `method SP request-target SP HTTP-version line-end`, with exactly one SP between parts.
pub(crate) fn request_line(
    allow_bare_lf: bool,
) -> impl FnMut(&[u8]) -> Parsed<'_, RequestLine<'_>> {
    move |input| {
        let (rest, (method, _, target, _, version, _)) = or_fail(
            FramingError::BadRequestLine,
            (
                token,
                tag(" "),
                take_while1(is_target_byte),
                tag(" "),
                http_version,
                line_end(allow_bare_lf),
            ),
        )(input)?;
        Ok((rest, (method, target, version)))
    }
}

/// `HTTP-version SP 3DIGIT [SP reason-phrase] line-end`. The SP before an empty reason is
/// optional because servers commonly omit it.
pub(crate) fn status_line(
    allow_bare_lf: bool,
) -> impl FnMut(&[u8]) -> Parsed<'_, (Version, u16, &[u8])> {
    move |input| {
        let status_code = map_res(
            take_while_m_n(3, 3, |b: u8| b.is_ascii_digit()),
            |digits: &[u8]| {
                // three ASCII digits always parse; 000-099 are not status codes
                let code = digits
                    .iter()
                    .fold(0u16, |code, digit| code * 10 + u16::from(digit - b'0'));
                if code >= 100 { Ok(code) } else { Err(()) }
            },
        );
        let reason = opt((tag(" "), take_while(is_field_byte)))
            .map(|reason| reason.map_or(&b""[..], |(_, text)| text));
        let (rest, (version, _, status, reason, _)) = or_fail(
            FramingError::BadStatusLine,
            (
                http_version,
                tag(" "),
                status_code,
                reason,
                line_end(allow_bare_lf),
            ),
        )(input)?;
        Ok((rest, (version, status, reason)))
    }
}

/// One `field-name ":" OWS field-value OWS line-end`, with the trailing OWS trimmed from the
/// value. The empty line that ends a block is a mismatch, so repetitions stop there; anything
/// else that is not a valid field line is a definite failure naming the defect.
fn field_line(allow_bare_lf: bool) -> impl FnMut(&[u8]) -> Parsed<'_, Field<'_>> {
    move |input| {
        let (input, _) = not(line_end(allow_bare_lf)).parse(input)?;
        let (input, _) = or_fail(
            FramingError::ObsFold,
            not(take_while1(|b| b == b' ' || b == b'\t')),
        )(input)?;
        let (input, name) = or_fail(FramingError::BadHeaderName, token)(input)?;
        let (input, _) = or_fail(
            FramingError::WsBeforeColon,
            not(take_while1(|b| b == b' ' || b == b'\t')),
        )(input)?;
        let (input, _) = or_fail(FramingError::MissingColon, not(line_end(allow_bare_lf)))(input)?;
        let (input, _) = or_fail(FramingError::BadHeaderName, tag(":"))(input)?;
        let (input, _) = space0(input)?;
        let (input, field_value) = take_while(is_field_byte)(input)?;
        // the value stops at a line end or at a byte a value may not hold (NUL, other CTLs)
        let (input, _) = or_fail(FramingError::BadHeaderValue, line_end(allow_bare_lf))(input)?;
        Ok((input, (name, field_value.trim_ascii_end())))
    }
}

/// `*( field-line ) line-end` covering all of `input`, with at most `max_fields` field lines.
pub(crate) fn field_block(
    allow_bare_lf: bool,
    max_fields: usize,
) -> impl FnMut(&[u8]) -> Parsed<'_, Vec<Field<'_>>> {
    move |input| {
        let (input, fields) = many_m_n(0, max_fields, field_line(allow_bare_lf)).parse(input)?;
        // after the repetition stops, only the blank line may remain; a field line here
        // means the repetition stopped at the limit
        let (input, _) = or_fail(
            FramingError::TooManyHeaders,
            all_consuming(line_end(allow_bare_lf)),
        )(input)?;
        Ok((input, fields))
    }
}

// ---- framing header values ----

/// Content-Length (RFC 9110 §8.6) from all its field values: each `1*DIGIT`, also accepted as a
/// list ("5, 5") which some intermediaries produce when they merge duplicate fields. Identical
/// values fold into one; differing ones are refused, since hops could pick different ones.
pub(crate) fn content_length<'a>(
    field_values: impl IntoIterator<Item = &'a [u8]>,
) -> Result<u64, FramingError> {
    let mut length = None;
    for element in field_values.into_iter().flat_map(list_elements) {
        let digits = finish(
            all_consuming(digit1).parse(element),
            FramingError::BadContentLength,
        )?;
        let parsed = digits
            .iter()
            .try_fold(0u64, |n, digit| {
                n.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
            })
            .ok_or(FramingError::ContentLengthOverflow)?;
        match length {
            Some(previous) if previous != parsed => return Err(FramingError::ClMismatch),
            _ => length = Some(parsed),
        }
    }
    length.ok_or(FramingError::BadContentLength)
}

/// quoted-string (RFC 9110 §5.6.4).
fn quoted_string(input: &[u8]) -> Parsed<'_, &[u8]> {
    let quoted_pair = recognize((
        tag("\\"),
        verify(take(1usize), |byte: &[u8]| is_field_byte(byte[0])),
    ));
    recognize((
        tag("\""),
        many0(alt((take_while1(is_qdtext), quoted_pair))),
        tag("\""),
    ))
    .parse(input)
}

/// `BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ]`, the shape shared by chunk
/// extensions and transfer-coding parameters. Once the ";" is seen, anything else is a defect.
fn parameter(reason: FramingError) -> impl FnMut(&[u8]) -> Parsed<'_, ()> {
    move |input| {
        let (input, _) = (space0, tag(";")).parse(input)?;
        let argument = opt((
            space0,
            tag("="),
            or_fail(reason, (space0, alt((token, quoted_string)))),
        ));
        let (input, _) = or_fail(reason, (space0, token, argument))(input)?;
        Ok((input, ()))
    }
}

/// One transfer-coding (RFC 9112 §7): its name and whether it carries parameters.
pub(crate) fn transfer_coding(element: &[u8]) -> Result<(&[u8], bool), FramingError> {
    let coding = (token, many0(parameter(FramingError::BadTransferEncoding)));
    let (name, parameters) = finish(
        all_consuming(coding).parse(element),
        FramingError::BadTransferEncoding,
    )?;
    Ok((name, !parameters.is_empty()))
}

/// `chunk-size *chunk-ext line-end` (RFC 9112 §7.1) covering the whole line.
pub(crate) fn chunk_size_line(line: &[u8], allow_bare_lf: bool) -> Result<u64, FramingError> {
    let size = map_res(hex_digit1, |hex: &[u8]| {
        hex.iter().try_fold(0u64, |n, &digit| {
            let nibble = (digit as char)
                .to_digit(16)
                .expect("hex_digit1 yields hex digits");
            n.checked_mul(16)
                .and_then(|n| n.checked_add(u64::from(nibble)))
                .ok_or(())
        })
    });
    let rule = |line| {
        let (rest, size) = or_fail(FramingError::BadChunkSize, size)(line)?;
        let (rest, extensions) = many0(parameter(FramingError::BadChunkExtension)).parse(rest)?;
        // junk where the line should end ("5x", "5 ", "5;a=b c") is blamed on what precedes it
        let junk = if extensions.is_empty() {
            FramingError::BadChunkSize
        } else {
            FramingError::BadChunkExtension
        };
        let (rest, ()) = or_fail(junk, all_consuming(line_end(allow_bare_lf)))(rest)?;
        Ok((rest, size))
    };
    finish(rule(line), FramingError::BadChunkSize)
}

/// The CRLF after chunk data; returns how many bytes it took.
pub(crate) fn chunk_data_end(input: &[u8], allow_bare_lf: bool) -> Result<usize, FramingError> {
    match line_end(allow_bare_lf)(input) {
        Ok((rest, ())) => Ok(input.len() - rest.len()),
        Err(nom::Err::Failure(GrammarError::Framing(FramingError::BareLf))) => {
            Err(FramingError::BareLf)
        }
        Err(_) => Err(FramingError::MissingChunkCrlf),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_line_reasons() {
        let cases: [(&[u8], FramingError); 7] = [
            (b" folded\r\n\r\n", FramingError::ObsFold),
            (b"Name : v\r\n\r\n", FramingError::WsBeforeColon),
            (b"Na(me: v\r\n\r\n", FramingError::BadHeaderName),
            (b"Name\r\n\r\n", FramingError::MissingColon),
            (b"Name: a\0b\r\n\r\n", FramingError::BadHeaderValue),
            (b"Name: a\rb\r\n\r\n", FramingError::BareCr),
            (b"Name: a\n\r\n", FramingError::BareLf),
        ];
        for (block, reason) in cases {
            let result = finish(field_block(false, 10)(block), FramingError::BadHeaderName);
            assert_eq!(result, Err(reason), "{:?}", String::from_utf8_lossy(block));
        }
    }

    #[test]
    fn field_values_are_trimmed() {
        let fields = finish(
            field_block(false, 10)(b"A:  x y \t\r\nB:\r\n\r\n"),
            FramingError::BadHeaderName,
        )
        .unwrap();
        assert_eq!(
            fields,
            vec![(&b"A"[..], &b"x y"[..]), (&b"B"[..], &b""[..])]
        );
    }

    #[test]
    fn content_length_values() {
        let content_length = |value: &[u8]| content_length([value]);
        assert_eq!(content_length(b"0"), Ok(0));
        assert_eq!(content_length(b"42, 42"), Ok(42));
        assert_eq!(content_length(b"42, 43"), Err(FramingError::ClMismatch));
        assert_eq!(super::content_length([&b"7"[..], b"7, 7"]), Ok(7));
        assert_eq!(
            super::content_length([&b"7"[..], b"8"]),
            Err(FramingError::ClMismatch)
        );
        assert_eq!(content_length(b"18446744073709551615"), Ok(u64::MAX));
        assert_eq!(
            content_length(b"18446744073709551616"),
            Err(FramingError::ContentLengthOverflow)
        );
        for bad in [
            &b""[..],
            b"+5",
            b"-1",
            b"0x10",
            b"5 5",
            b"1e3",
            b"5,",
            b",5",
        ] {
            assert_eq!(
                content_length(bad),
                Err(FramingError::BadContentLength),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn chunk_size_lines() {
        assert_eq!(chunk_size_line(b"1a\r\n", false), Ok(26));
        assert_eq!(chunk_size_line(b"0000000000000000000F\r\n", false), Ok(15));
        assert_eq!(
            chunk_size_line(b"5;name=value;other=\"q \\\" d\"\r\n", false),
            Ok(5)
        );
        assert_eq!(chunk_size_line(b"5 ; name\r\n", false), Ok(5));
        assert_eq!(chunk_size_line(b"5\n", true), Ok(5));
        assert_eq!(chunk_size_line(b"5\n", false), Err(FramingError::BareLf));
        assert_eq!(
            chunk_size_line(b"10000000000000000\r\n", false),
            Err(FramingError::BadChunkSize)
        );
        assert_eq!(
            chunk_size_line(b"5;\r\n", false),
            Err(FramingError::BadChunkExtension)
        );
        assert_eq!(
            chunk_size_line(b"5;a=\"open\r\n", false),
            Err(FramingError::BadChunkExtension)
        );
        for bad in [
            &b"\r\n"[..],
            b"x\r\n",
            b"-5\r\n",
            b"0x5\r\n",
            b"5x\r\n",
            b"5 \r\n",
            b" 5\r\n",
            b"5\r\r\n",
        ] {
            let reason = chunk_size_line(bad, false).unwrap_err();
            assert!(
                matches!(reason, FramingError::BadChunkSize | FramingError::BareCr),
                "{bad:?}: {reason:?}"
            );
        }
    }

    #[test]
    fn transfer_codings() {
        assert_eq!(transfer_coding(b"chunked"), Ok((&b"chunked"[..], false)));
        assert_eq!(transfer_coding(b"gzip;level=9"), Ok((&b"gzip"[..], true)));
        assert_eq!(
            transfer_coding(b"a b"),
            Err(FramingError::BadTransferEncoding)
        );
        assert_eq!(transfer_coding(b""), Err(FramingError::BadTransferEncoding));
    }
}
