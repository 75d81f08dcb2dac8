//! Whole-message helpers and the tokio-util codec integration.

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio_util::codec::{FramedRead, FramedWrite};

use crate::http::{
    BodyCollector, Event, FramingError, Headers, MessageEncoder, Method, RequestDecoder,
    ResponseDecoder, read_message,
};

#[test]
fn collector_keeps_a_single_chunk_without_copying() {
    let chunk = Bytes::from_static(b"{\"jsonrpc\":\"2.0\"}");
    let mut collector = BodyCollector::new(100);
    collector.push(chunk.clone()).unwrap();
    let body = collector.into_bytes();
    assert_eq!(body.as_ptr(), chunk.as_ptr());
}

#[test]
fn collector_joins_chunks_up_to_the_limit() {
    let mut collector = BodyCollector::new(6);
    assert!(collector.is_empty());
    collector.push(Bytes::from_static(b"ab")).unwrap();
    collector.push(Bytes::from_static(b"cd")).unwrap();
    collector.push(Bytes::from_static(b"ef")).unwrap();
    assert_eq!(
        collector.push(Bytes::from_static(b"g")),
        Err(FramingError::BodyTooLarge)
    );
    assert_eq!(collector.len(), 6);
    assert_eq!(&collector.into_bytes()[..], b"abcdef");
}

const PIPELINE: &[u8] = b"POST /mcp HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n{}\
POST /mcp HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n[1,\r\n2\r\n2]\r\n0\r\nX-T: t\r\n\r\n\
GET /sse HTTP/1.1\r\nHost: h\r\n\r\n";

#[tokio::test]
async fn read_message_returns_pipelined_messages_in_order() {
    let (mut client, mut server) = tokio::io::duplex(7);
    let writer = tokio::spawn(async move {
        // small writes: messages arrive split at arbitrary points
        for piece in PIPELINE.chunks(5) {
            client.write_all(piece).await.unwrap();
        }
    });
    let mut decoder = RequestDecoder::default();
    let mut buf = BytesMut::new();
    let first = read_message(&mut server, &mut decoder, &mut buf, 1024)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&first.body[..], b"{}");
    let second = read_message(&mut server, &mut decoder, &mut buf, 1024)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&second.body[..], b"[1,2]");
    assert_eq!(second.trailers.get("x-t").map(|v| &v[..]), Some(&b"t"[..]));
    let third = read_message(&mut server, &mut decoder, &mut buf, 1024)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&third.head.target()[..], b"/sse");
    assert!(third.body.is_empty());
    writer.await.unwrap();
    assert!(
        read_message(&mut server, &mut decoder, &mut buf, 1024)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn read_message_enforces_the_body_limit() {
    let declared = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n".to_vec();
    let error = read_message(
        &mut &declared[..],
        &mut RequestDecoder::default(),
        &mut BytesMut::new(),
        10,
    )
    .await
    .unwrap_err();
    assert_eq!(
        error.framing(),
        Some(FramingError::BodyTooLarge),
        "refused from the Content-Length alone"
    );

    let chunked = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n6\r\nghijkl\r\n0\r\n\r\n".to_vec();
    let error = read_message(
        &mut &chunked[..],
        &mut RequestDecoder::default(),
        &mut BytesMut::new(),
        10,
    )
    .await
    .unwrap_err();
    assert_eq!(error.framing(), Some(FramingError::BodyTooLarge));
}

#[tokio::test]
async fn read_message_reports_truncation_and_framing_errors() {
    let truncated = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc".to_vec();
    let error = read_message(
        &mut &truncated[..],
        &mut RequestDecoder::default(),
        &mut BytesMut::new(),
        100,
    )
    .await
    .unwrap_err();
    assert_eq!(error.framing(), Some(FramingError::TruncatedBody));

    let smuggled =
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    let error = read_message(
        &mut &smuggled[..],
        &mut RequestDecoder::default(),
        &mut BytesMut::new(),
        100,
    )
    .await
    .unwrap_err();
    assert_eq!(error.framing().map(FramingError::reason), Some("te-and-cl"));
}

#[tokio::test]
async fn read_message_ends_a_close_delimited_response() {
    let input = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: a\n\ndata: b\n\n"
        .to_vec();
    let mut decoder = ResponseDecoder::default();
    let message = read_message(&mut &input[..], &mut decoder, &mut BytesMut::new(), 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&message.body[..], b"data: a\n\ndata: b\n\n");
    assert!(
        read_message(&mut &input[..0], &mut decoder, &mut BytesMut::new(), 100)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn framed_read_and_write_relay_a_response_stream() {
    let upstream =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n\
9\r\ndata: 1\n\n\r\n9\r\ndata: 2\n\n\r\n0\r\n\r\n\
HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n";
    let mut decoder = ResponseDecoder::default();
    decoder.expect_response_to(Method::POST);
    decoder.expect_response_to(Method::POST);
    let mut reader = FramedRead::new(&upstream[..], decoder);
    let (relay_out, mut relay_in) = tokio::io::duplex(1 << 16);
    let mut writer = FramedWrite::new(relay_out, MessageEncoder::new());
    let mut events = 0;
    while let Some(event) = reader.next().await {
        writer.send(event.unwrap()).await.unwrap();
        events += 1;
    }
    assert_eq!(events, 6, "head, two chunks, end; head, end");
    drop(writer);
    let mut relayed = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut relay_in, &mut relayed)
        .await
        .unwrap();
    assert_eq!(&relayed[..], &upstream[..]);
}

#[tokio::test]
async fn framed_read_surfaces_framing_errors() {
    let input =
        b"GET / HTTP/1.1\r\nHost: h\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\nX : y\r\n\r\n".to_vec();
    let mut reader = FramedRead::new(&input[..], RequestDecoder::default());
    assert!(matches!(reader.next().await, Some(Ok(Event::Head(_)))));
    assert_eq!(
        reader.next().await.unwrap().unwrap(),
        Event::End(Headers::new())
    );
    let error = reader.next().await.unwrap().unwrap_err();
    assert_eq!(error.framing(), Some(FramingError::WsBeforeColon));
}
