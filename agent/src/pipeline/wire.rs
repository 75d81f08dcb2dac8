//! Reading and writing HTTP messages on the pipeline's streams: the next
//! decoder event (reading more only when the decoder needs it), whole bodies
//! with a limit, heads rewritten for the hop they go to, and the agent's own
//! short answers.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use zeroize::Zeroizing;

use crate::credential::InjectedHeader;
use crate::http::{
    BodyCollector, CodecError, Event, FramingError, Headers, MessageDecoder, RequestHead,
    ResponseHead, Version,
};

const READ_SIZE: usize = 16 * 1024;

/// The next event from `decoder`, reading from `io` when it needs bytes.
/// `Ok(None)`: the peer closed between messages, or the decoder finished.
pub async fn next_event<R, D>(
    io: &mut R,
    buf: &mut BytesMut,
    decoder: &mut D,
) -> Result<Option<Event<D::Head>>, CodecError>
where
    R: AsyncRead + Unpin + ?Sized,
    D: MessageDecoder,
{
    loop {
        if let Some(event) = decoder.decode(buf)? {
            return Ok(Some(event));
        }
        if decoder.finished().is_some() {
            return Ok(None);
        }
        buf.reserve(READ_SIZE);
        if io.read_buf(buf).await? == 0 {
            // decode_eof ends a close-delimited body or reports a truncated message
            return Ok(decoder.decode_eof(buf)?);
        }
    }
}

/// Reads the rest of the current message's body, up to `limit` bytes.
pub async fn read_body<R, D>(
    io: &mut R,
    buf: &mut BytesMut,
    decoder: &mut D,
    limit: usize,
) -> Result<Bytes, CodecError>
where
    R: AsyncRead + Unpin + ?Sized,
    D: MessageDecoder,
{
    let mut body = BodyCollector::new(limit);
    loop {
        match next_event(io, buf, decoder).await? {
            Some(Event::BodyChunk(chunk)) => body.push(chunk)?,
            Some(Event::End(_trailers)) => return Ok(body.into_bytes()),
            Some(Event::Head(_)) => return Err(FramingError::EventOutOfOrder.into()),
            None => return Err(FramingError::TruncatedBody.into()),
        }
    }
}

/// Fields that describe one hop, never forwarded (RFC 9110 §7.6.1), plus the
/// framing fields the agent sets itself.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "transfer-encoding",
    "content-length",
    "expect",
];

/// Removes hop-by-hop fields, including those the Connection field names.
pub fn strip_hop_by_hop(headers: &mut Headers) {
    let named: Vec<String> = headers
        .get_all("connection")
        .flat_map(|v| v.split(|&b| b == b','))
        .map(|t| String::from_utf8_lossy(t).trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    headers.remove_matching(|f| {
        let name = f.name_str();
        HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
            || named.iter().any(|n| name.eq_ignore_ascii_case(n))
    });
}

/// Writes a request head and its (already collected) body upstream. The
/// credential goes only into a buffer that is wiped after the write, never
/// into a `Headers` that could be logged or kept.
pub async fn write_request<W: AsyncWrite + Unpin + ?Sized>(
    io: &mut W,
    head: &RequestHead,
    credential: &[InjectedHeader],
    body: &[u8],
) -> std::io::Result<()> {
    let mut encoded = BytesMut::new();
    head.encode(&mut encoded);
    let mut wire = Zeroizing::new(Vec::with_capacity(encoded.len() + 128 + body.len()));
    wire.extend_from_slice(&encoded[..encoded.len() - 2]); // without the final empty line
    for h in credential {
        wire.extend_from_slice(h.name.as_bytes());
        wire.extend_from_slice(b": ");
        wire.extend_from_slice(h.value.expose().as_bytes());
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"\r\n");
    wire.extend_from_slice(body);
    io.write_all(&wire).await?;
    io.flush().await
}

/// A response head for the client: the upstream's status and fields without
/// hop-by-hop ones; the caller sets the framing.
pub fn client_head(upstream: &ResponseHead) -> ResponseHead {
    let mut head = ResponseHead::new(
        Version::Http11,
        upstream.status(),
        upstream.reason().clone(),
    )
    .unwrap_or_else(|_| ResponseHead::new(Version::Http11, 502, "Bad Gateway").unwrap());
    for field in upstream.headers().iter() {
        // values were validated when parsed
        let _ = head
            .headers_mut()
            .append(field.name().clone(), field.value().clone());
    }
    strip_hop_by_hop(head.headers_mut());
    head
}

/// The agent's own answer: a status, a content type and a whole body.
pub async fn answer<W: AsyncWrite + Unpin + ?Sized>(
    io: &mut W,
    status: u16,
    content_type: &str,
    body: &[u8],
    close: bool,
) -> std::io::Result<()> {
    let mut head = ResponseHead::new(Version::Http11, status, reason(status))
        .expect("a known status and reason");
    let h = head.headers_mut();
    h.append("Content-Type", content_type.to_string())
        .expect("valid");
    h.set_content_length(body.len() as u64);
    h.append("Cache-Control", "no-store").expect("valid");
    if close {
        h.append("Connection", "close").expect("valid");
    }
    let mut out = BytesMut::with_capacity(128 + body.len());
    head.encode(&mut out);
    out.extend_from_slice(body);
    io.write_all(&out).await?;
    io.flush().await
}

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        413 => "Content Too Large",
        417 => "Expectation Failed",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// The request target without its query (queries may carry identifiers).
pub fn path_of(target: &[u8]) -> String {
    let end = memchr::memchr(b'?', target).unwrap_or(target.len());
    String::from_utf8_lossy(&target[..end]).into_owned()
}

/// A header value as text, if it is one.
pub fn header_str<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::trim)
}

/// The host part of a Host field (`name`, `name:port`, `[v6]:port`).
pub fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_fields_and_the_ones_connection_names_go() {
        let mut h = Headers::new();
        for (n, v) in [
            ("Connection", "keep-alive, X-Secret-Hop"),
            ("X-Secret-Hop", "1"),
            ("Keep-Alive", "timeout=5"),
            ("Transfer-Encoding", "chunked"),
            ("Content-Type", "application/json"),
            ("Upgrade", "websocket"),
        ] {
            h.append(n, v).unwrap();
        }
        strip_hop_by_hop(&mut h);
        let names: Vec<&str> = h.iter().map(|f| f.name_str()).collect();
        assert_eq!(names, ["Content-Type"]);
    }

    #[test]
    fn paths_and_hosts() {
        assert_eq!(path_of(b"/mcp?token=abc"), "/mcp");
        assert_eq!(path_of(b"/mcp"), "/mcp");
        assert_eq!(host_name("mcp.example:8443"), "mcp.example");
        assert_eq!(host_name("mcp.example"), "mcp.example");
        assert_eq!(host_name("[fd00::1]:443"), "fd00::1");
        assert_eq!(host_name("10.0.0.1:443"), "10.0.0.1");
    }

    #[tokio::test]
    async fn the_credential_reaches_the_wire_only() {
        let mut head = RequestHead::new(
            crate::http::Method::from_token("POST").unwrap(),
            "/mcp",
            Version::Http11,
        )
        .unwrap();
        head.headers_mut().append("Host", "h").unwrap();
        head.headers_mut().set_content_length(2);
        let cred = crate::credential::test_header("authorization", "Bearer s3cret");
        let mut out: Vec<u8> = Vec::new();
        write_request(&mut out, &head, &[cred], b"{}")
            .await
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("POST /mcp HTTP/1.1\r\n"), "{text}");
        assert!(
            text.contains("\r\nauthorization: Bearer s3cret\r\n\r\n{}"),
            "{text}"
        );
        assert!(!format!("{head:?}").contains("s3cret"));
    }
}
