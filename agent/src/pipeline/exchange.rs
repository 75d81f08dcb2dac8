//! One client connection through the L7 pipeline: requests are read and
//! checked one at a time (pipelined ones wait their turn in the buffer), MCP
//! bodies are decoded, recorded and put to the endpoint's stages, the request
//! goes upstream with the gateway's credential instead of the client's, and
//! the response comes back (JSON whole, SSE event by event as it streams,
//! anything else as it is), each MCP message in it recorded too.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tracing::debug;

use super::conn::{BoxIo, Counted, UpstreamConn, connect};
use super::endpoint::EndpointRuntime;
use super::masking::{self, MaskedMessage};
use super::records::{Kept, SessionView, Who, message_texts, negotiated_version, payload};
use super::session::{Shared, legacy_key, lock, new_state};
use super::stage::{MessageCtx, Refusal, Verdict};
use super::stream_mask::{PIECE, PieceMasker, StreamMasker, TextStreamMasker};
use super::wire::{
    answer, client_head, header_str, host_name, next_event, path_of, read_body, strip_hop_by_hop,
    write_request,
};
use crate::audit::{AuditLog, Kind, PendingAck};
use crate::config::ClientTls;
use crate::http::{
    BodyEncoder, BodyFraming, CodecError, Event, Expectation, FramingError, Headers,
    MessageDecoder, RequestDecoder, RequestHead, ResponseHead, Spill, SseEvent, SseItem, SseParser,
};
use crate::mask::Oversize;
use crate::mcp::{self, Sender};
use crate::relay::Upstream;

/// Largest request body read (MCP requests are small; this bounds memory).
pub const MAX_REQUEST_BODY: usize = 8 * 1024 * 1024;
/// Largest JSON response body inspected whole.
pub const MAX_JSON_RESPONSE: usize = 64 * 1024 * 1024;
/// JSON-RPC error code of the agent's own failures (store down, upstream gone).
pub const AGENT_ERROR: i64 = -32603;

/// A request read whole from the client.
struct Request {
    head: RequestHead,
    body: Bytes,
}

/// Why reading a request stopped the connection.
enum ReadError {
    /// Framing the agent will not guess at (smuggling defences): 400.
    Framing(FramingError),
    /// Expect with something other than 100-continue: 417.
    Expectation,
    /// The client went away or the socket failed: nothing to answer.
    Io(std::io::Error),
}

impl From<CodecError> for ReadError {
    fn from(e: CodecError) -> Self {
        match e {
            CodecError::Framing(f) => ReadError::Framing(f),
            CodecError::Io(io) => ReadError::Io(io),
        }
    }
}

/// Whether the client connection carries another request.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    KeepAlive,
    Close,
}

/// A client connection's side of the pipeline.
pub struct Connection {
    rt: Arc<EndpointRuntime>,
    audit: AuditLog,
    transport: Upstream,
    who: Who,
    client: Counted<BoxIo>,
    cbuf: BytesMut,
    cdec: RequestDecoder,
    /// The name the client used for TLS (terminate), or `None` (plain: Host).
    sni: Option<String>,
    /// Session state of exchanges that name no MCP session.
    local: Shared,
}

impl Connection {
    pub fn new(
        rt: Arc<EndpointRuntime>,
        audit: AuditLog,
        transport: Upstream,
        who: Who,
        client: BoxIo,
        sni: Option<String>,
    ) -> Self {
        Self {
            rt,
            audit,
            transport,
            who,
            client: Counted::new(client),
            cbuf: BytesMut::with_capacity(16 * 1024),
            cdec: RequestDecoder::default(),
            sni,
            local: new_state(),
        }
    }

    /// Bytes read from and written to the client so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.client.read, self.client.written)
    }

    /// Serves requests until the client closes or an error ends the
    /// connection; returns the outcome for the close record.
    pub async fn run(&mut self) -> String {
        loop {
            let req = match self.read_request().await {
                Ok(Some(req)) => req,
                Ok(None) => return "ok".into(),
                // most clients close TLS without close_notify once they are done
                Err(ReadError::Io(e))
                    if e.kind() == std::io::ErrorKind::UnexpectedEof && self.cdec.is_idle() =>
                {
                    return "ok".into();
                }
                Err(ReadError::Io(e)) => return format!("client error: {e}"),
                Err(ReadError::Expectation) => {
                    self.refuse_http(417, "expectation not supported", "unsupported Expect")
                        .await;
                    return "rejected: unsupported Expect".into();
                }
                Err(ReadError::Framing(f)) => {
                    let status = if f == FramingError::BodyTooLarge {
                        413
                    } else {
                        400
                    };
                    self.refuse_http(status, f.reason(), &format!("http framing: {}", f.reason()))
                        .await;
                    return format!("rejected: {}", f.reason());
                }
            };
            match self.exchange(req).await {
                Ok(Next::KeepAlive) => continue,
                Ok(Next::Close) => return "ok".into(),
                Err(outcome) => return outcome,
            }
        }
    }

    async fn read_request(&mut self) -> Result<Option<Request>, ReadError> {
        let head = match next_event(&mut self.client, &mut self.cbuf, &mut self.cdec).await? {
            None => return Ok(None),
            Some(Event::Head(head)) => head,
            Some(_) => return Err(ReadError::Framing(FramingError::EventOutOfOrder)),
        };
        let framing = head.body_framing().map_err(ReadError::Framing)?;
        if let BodyFraming::Length(n) = framing
            && n > MAX_REQUEST_BODY as u64
        {
            return Err(ReadError::Framing(FramingError::BodyTooLarge));
        }
        match head.expectation() {
            Expectation::Unsupported => return Err(ReadError::Expectation),
            // the agent reads the whole body before anything goes upstream, so it
            // answers the expectation itself
            Expectation::Continue if framing != BodyFraming::Empty => {
                self.client
                    .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                    .await
                    .map_err(ReadError::Io)?;
            }
            _ => {}
        }
        let body = read_body(
            &mut self.client,
            &mut self.cbuf,
            &mut self.cdec,
            MAX_REQUEST_BODY,
        )
        .await?;
        Ok(Some(Request { head, body }))
    }

    /// A status of the agent's own for a request it could not take, recorded.
    async fn refuse_http(&mut self, status: u16, text: &str, reason: &str) {
        let mut r = self.who.record(Kind::Reject);
        r.reason = Some(reason.to_string());
        r.status = Some(status);
        self.audit.record(r);
        let body = format!("mcp-warden: {text}\n");
        let _ = answer(
            &mut self.client,
            status,
            "text/plain",
            body.as_bytes(),
            true,
        )
        .await;
    }

    /// One request and its response.
    async fn exchange(&mut self, req: Request) -> Result<Next, String> {
        let keep_alive = req.head.keep_alive();
        let is_post = req.head.method().as_bytes() == b"POST";
        let sid = header_str(req.head.headers(), "mcp-session-id").map(str::to_string);
        let state = self.session_for(sid.as_deref(), req.head.target());
        if let Some(pv) = header_str(req.head.headers(), "mcp-protocol-version") {
            lock(&state).protocol_version = Some(pv.to_string());
        }

        // MCP: a POST whose body is JSON. Anything else is plain HTTP.
        let mut mcp_body = None;
        let mut forward_body = req.body.clone();
        if is_post && looks_like_json(&req.body) {
            match self.check_request(&req, &state).await {
                Checked::Forward { body, msgs } => {
                    forward_body = body;
                    mcp_body = Some(msgs);
                }
                Checked::Answered(next) => return Ok(if keep_alive { next } else { Next::Close }),
            }
        }

        let upstream = self.forward(&req, &forward_body).await;
        let (head, mut conn) = match upstream {
            Ok(pair) => pair,
            Err(e) => {
                let reason = format!("upstream: {e:#}");
                let mut r = self.who.record(Kind::Response);
                r.error = Some(reason.clone());
                r.status = Some(502);
                self.audit.record(r);
                let ids = mcp_body.as_deref().map(request_ids).unwrap_or_default();
                let body = rpc_errors(
                    &ids,
                    AGENT_ERROR,
                    "mcp-warden: the MCP server is unreachable",
                );
                answer(
                    &mut self.client,
                    502,
                    "application/json",
                    &body,
                    !keep_alive,
                )
                .await
                .map_err(|e| format!("client error: {e}"))?;
                return Ok(if keep_alive {
                    Next::KeepAlive
                } else {
                    Next::Close
                });
            }
        };
        if let Some(assigned) = header_str(head.headers(), "mcp-session-id") {
            self.rt.sessions.bind(assigned, &state);
        }
        let view = SessionView {
            status: Some(head.status()),
            ..session_view(&state)
        };
        if self.rt.masker.is_some()
            && let Some(enc) = header_str(head.headers(), "content-encoding")
            && !enc.trim().eq_ignore_ascii_case("identity")
        {
            // the agent asked for identity; what it cannot read it cannot mask
            let ids = mcp_body.as_deref().map(request_ids).unwrap_or_default();
            return Err(self
                .refuse_unmaskable(&ids, format!("a {enc:?}-encoded response cannot be masked"))
                .await);
        }
        let outcome = if head.is_event_stream() {
            self.relay_sse(&head, &mut conn, &state, view).await
        } else if mcp_body.is_some() && is_json(&head) {
            self.relay_json(&head, &mut conn, &state, view).await
        } else if self.rt.masker.is_some() {
            let ids = mcp_body.as_deref().map(request_ids).unwrap_or_default();
            self.relay_masked_text(&req, &head, &mut conn, &ids).await
        } else {
            self.relay_raw(&req, &head, &mut conn).await
        };
        if req.head.method().as_bytes() == b"DELETE"
            && let Some(sid) = &sid
            && (200..300).contains(&head.status())
        {
            self.rt.sessions.end(sid);
        }
        let reusable = conn.decoder.finished().is_none();
        outcome?;
        if reusable {
            self.rt.pool.checkin(conn);
        }
        let response_keeps = head.keep_alive();
        Ok(if keep_alive && response_keeps {
            Next::KeepAlive
        } else {
            Next::Close
        })
    }

    /// The session an exchange belongs to: the server-assigned id, the legacy
    /// transport's message URL, or this connection's own.
    fn session_for(&self, sid: Option<&str>, target: &[u8]) -> Shared {
        if let Some(sid) = sid {
            return self.rt.sessions.get(sid).unwrap_or_else(|| {
                let state = new_state();
                self.rt.sessions.bind(sid, &state);
                state
            });
        }
        let legacy = legacy_key(&String::from_utf8_lossy(target));
        self.rt
            .sessions
            .get(&legacy)
            .unwrap_or_else(|| self.local.clone())
    }

    fn ctx<'a>(&'a self, view: &'a SessionView, sender: Sender) -> MessageCtx<'a> {
        MessageCtx {
            endpoint: &self.who.endpoint,
            identity: &self.who.identity,
            session: &self.who.session,
            mcp_session: view.id.as_deref(),
            protocol_version: view.protocol_version.as_deref(),
            sender,
        }
    }

    /// Decodes, records and decides an MCP request body.
    async fn check_request(&mut self, req: &Request, state: &Shared) -> Checked {
        let body = match mcp::decode(&req.body) {
            Ok(body) => body,
            Err(e) => {
                return self
                    .reject_rpc(400, None, e.code, &e.to_string(), "invalid JSON-RPC")
                    .await;
            }
        };
        let view = session_view(state);
        // 2026-07-28: controls decide on the body, so mirrored headers must agree with it
        if mcp::era(view.protocol_version.as_deref()) == mcp::Era::Stateless
            && let mcp::Body::Single(msg) = &body
        {
            let headers = req.head.headers();
            if let Err(e) = mcp::check_mirrored_headers(
                msg,
                header_str(headers, "mcp-method"),
                header_str(headers, "mcp-name"),
            ) {
                return self
                    .reject_rpc(
                        400,
                        msg.id.as_deref(),
                        e.code,
                        &e.message,
                        "header mismatch",
                    )
                    .await;
            }
        }

        let msgs = body.messages().to_vec();
        let texts = message_texts(&req.body, &body);
        let mut acks: Vec<PendingAck> = Vec::new();
        for (msg, raw) in msgs.iter().zip(&texts) {
            let pending = lock(state).correlator.observe(Sender::Client, msg);
            // the audit keeps the arguments masked; the server gets them as sent
            let masked = self.mask_copy(raw);
            let record = self.who.message(
                Sender::Client,
                msg,
                kept(masked.as_ref(), raw, raw.len()),
                &view,
                pending.as_ref(),
            );
            // never an access without its record: data-bearing requests wait for the disk
            if msg.is_data_bearing() {
                acks.push(self.audit.record_durable(record));
            } else {
                self.audit.record(record);
            }
        }

        let ctx = self.ctx(&view, Sender::Client);
        let mut refused: Vec<(Option<String>, Refusal)> = Vec::new();
        for msg in &msgs {
            if matches!(msg.kind, mcp::Kind::Request | mcp::Kind::Notification)
                && let Verdict::Answer(refusal) = self.rt.chain.decide(&ctx, msg).await
            {
                let mut r = self
                    .who
                    .message(Sender::Client, msg, Kept::Nothing, &view, None);
                r.kind = Kind::Decision;
                r.decision = Some("deny".into());
                r.policies = Some(refusal.by.clone());
                r.reason = Some(refusal.message.clone());
                self.audit.record(r);
                refused.push((msg.id.clone(), refusal));
            }
        }
        if let Some((_, first)) = refused.first() {
            let first = first.clone();
            let errors: Vec<Value> = msgs
                .iter()
                .filter_map(|m| m.id.as_ref())
                .map(|id| {
                    let own = refused.iter().find(|(rid, _)| rid.as_ref() == Some(id));
                    let refusal = own.map(|(_, r)| r.clone()).unwrap_or_else(|| Refusal {
                        message: format!(
                            "not forwarded: another message of its batch was refused ({})",
                            first.message
                        ),
                        ..first.clone()
                    });
                    rpc_error(Some(id), refusal.code, &refusal.message, refusal.data)
                })
                .collect();
            return self.answer_values(200, errors, body_is_batch(&body)).await;
        }
        for ack in acks {
            if let Err(e) = ack.await {
                let why = if e.is_disk_full() {
                    "the audit store is full"
                } else {
                    "the audit store cannot write"
                };
                let message = format!(
                    "mcp-warden: {why}; the request was not forwarded because its audit record could not be kept"
                );
                let mut r = self.who.record(Kind::Reject);
                r.reason = Some(format!("audit record not durable: {e}"));
                r.status = Some(503);
                self.audit.record(r);
                let errors = request_ids(&msgs)
                    .iter()
                    .map(|id| rpc_error(Some(id), AGENT_ERROR, &message, None))
                    .collect();
                return self.answer_values(503, errors, body_is_batch(&body)).await;
            }
        }

        let mut forward = req.body.clone();
        if !self.rt.chain.is_empty() {
            let mut json = req.body.to_vec();
            match self.rt.chain.transform(&ctx, &msgs, &mut json) {
                Ok(_) => forward = Bytes::from(json),
                Err(refusal) => {
                    let errors = request_ids(&msgs)
                        .iter()
                        .map(|id| {
                            rpc_error(
                                Some(id),
                                refusal.code,
                                &refusal.message,
                                refusal.data.clone(),
                            )
                        })
                        .collect();
                    return self.answer_values(200, errors, body_is_batch(&body)).await;
                }
            }
        }
        Checked::Forward {
            body: forward,
            msgs,
        }
    }

    /// A JSON-RPC error of the agent's own for a body it will not forward.
    async fn reject_rpc(
        &mut self,
        status: u16,
        id: Option<&str>,
        code: i64,
        message: &str,
        reason: &str,
    ) -> Checked {
        let mut r = self.who.record(Kind::Reject);
        r.reason = Some(format!("{reason}: {message}"));
        r.status = Some(status);
        r.rpc_id = id.and_then(|i| serde_json::from_str(i).ok());
        self.audit.record(r);
        let body = mcp::error_body(id, code, message, None);
        match answer(&mut self.client, status, "application/json", &body, false).await {
            Ok(()) => Checked::Answered(Next::KeepAlive),
            Err(_) => Checked::Answered(Next::Close),
        }
    }

    /// Answers with JSON-RPC errors (one, or a batch's array).
    async fn answer_values(&mut self, status: u16, errors: Vec<Value>, batch: bool) -> Checked {
        // notifications get no response body: 202 as for an accepted notification
        let (status, body) = match (batch, errors.as_slice()) {
            (_, []) => (202, Vec::new()),
            (false, [one]) => (status, serde_json::to_vec(one).expect("JSON")),
            _ => (status, serde_json::to_vec(&errors).expect("JSON")),
        };
        match answer(&mut self.client, status, "application/json", &body, false).await {
            Ok(()) => Checked::Answered(Next::KeepAlive),
            Err(_) => Checked::Answered(Next::Close),
        }
    }

    /// Sends the request upstream and reads the final response head. A
    /// reused connection the server closed while idle is retried once on a
    /// fresh one, before any response byte.
    async fn forward(
        &mut self,
        req: &Request,
        body: &[u8],
    ) -> anyhow::Result<(ResponseHead, UpstreamConn)> {
        let head = self.upstream_head(req, body.len());
        let credential = match &self.rt.credential {
            Some(c) => c.headers()?,
            None => Vec::new(),
        };
        let target = self
            .rt
            .target(self.who.orig_dst, &self.client_name(req))
            .await?;
        let mut fresh_only = false;
        loop {
            let pooled = if fresh_only {
                None
            } else {
                self.rt.pool.checkout(&target)
            };
            let mut conn = match pooled {
                Some(conn) => conn,
                None => connect(&self.transport, self.rt.tls.as_ref(), &target).await?,
            };
            conn.decoder.expect_response_to(req.head.method().clone());
            let sent = write_request(&mut conn.io, &head, &credential, body).await;
            let got = match sent {
                Ok(()) => final_head(&mut conn).await,
                Err(e) => Err(CodecError::Io(e)),
            };
            match got {
                Ok(Some(head)) => return Ok((head, conn)),
                Err(_) | Ok(None) if conn.reused => {
                    debug!(
                        endpoint = self.who.endpoint,
                        "idle upstream connection was closed; retrying"
                    );
                    fresh_only = true;
                }
                Ok(None) => anyhow::bail!("the server closed the connection without answering"),
                Err(e) => anyhow::bail!("{e}"),
            }
        }
    }

    /// The request as it goes upstream: hop-by-hop fields and every client
    /// credential removed, uncompressed bodies asked for (the agent must read
    /// them), Host following a configured upstream, the body re-framed.
    fn upstream_head(&self, req: &Request, body_len: usize) -> RequestHead {
        let mut head = req.head.clone();
        let h = head.headers_mut();
        strip_hop_by_hop(h);
        let strip = &self.rt.strip;
        h.remove_matching(|f| strip.iter().any(|s| f.name_str().eq_ignore_ascii_case(s)));
        h.set("Accept-Encoding", "identity").expect("valid");
        if let Some(u) = &self.rt.upstream {
            h.set("Host", u.authority())
                .expect("an authority is a valid value");
        }
        if body_len > 0
            || req
                .head
                .body_framing()
                .is_ok_and(|f| f != BodyFraming::Empty)
        {
            h.set_content_length(body_len as u64);
        }
        head
    }

    /// The name the client used: its SNI, or the Host of a plain request, or
    /// the address it dialled.
    fn client_name(&self, req: &Request) -> String {
        if let Some(sni) = &self.sni {
            return sni.clone();
        }
        if self.rt.client_tls == ClientTls::Plain
            && let Some(host) = header_str(req.head.headers(), "host")
        {
            return host_name(host).to_string();
        }
        self.who.orig_dst.ip().to_string()
    }

    /// A JSON response: read whole, its messages recorded and transformed,
    /// sent on with its new length.
    async fn relay_json(
        &mut self,
        head: &ResponseHead,
        conn: &mut UpstreamConn,
        state: &Shared,
        view: SessionView,
    ) -> Result<(), String> {
        let body = match self.read_or_stream(conn, MAX_JSON_RESPONSE).await {
            Ok(Read::Whole(body)) => body,
            Ok(Read::Over(prefix)) => {
                return self.stream_json(head, conn, prefix, state, &view).await;
            }
            Err(e) => {
                let reason = e
                    .framing()
                    .map_or_else(|| e.to_string(), |f| f.reason().to_string());
                let mut r = self.who.record(Kind::Response);
                r.error = Some(format!("upstream response: {reason}"));
                r.status = Some(502);
                self.audit.record(r);
                let body = rpc_errors(
                    &[],
                    AGENT_ERROR,
                    "mcp-warden: the MCP server's response could not be read",
                );
                let _ = answer(&mut self.client, 502, "application/json", &body, true).await;
                return Err(format!("upstream response: {reason}"));
            }
        };
        // an empty body (202 to a notification) carries no message
        let out = if body.is_empty() {
            body
        } else {
            self.server_messages(&body, state, &view)
        };
        let mut client = client_head(head);
        client.headers_mut().set_content_length(out.len() as u64);
        let mut wire = BytesMut::with_capacity(256 + out.len());
        client.encode(&mut wire);
        wire.extend_from_slice(&out);
        self.send(&wire).await
    }

    /// A body read whole (up to `max`), or with `oversize = "stream"` read
    /// until it passes the masking limit, to be masked as it streams.
    async fn read_or_stream(
        &mut self,
        conn: &mut UpstreamConn,
        max: usize,
    ) -> Result<Read, CodecError> {
        match self.stream_over() {
            None => read_body(&mut conn.io, &mut conn.buf, &mut conn.decoder, max)
                .await
                .map(Read::Whole),
            Some(limit) => read_until_over(conn, limit).await,
        }
    }

    /// With `oversize = "stream"`, the profile's limit: a body (or an SSE
    /// event's data) over it is masked as it streams.
    fn stream_over(&self) -> Option<usize> {
        self.rt
            .masker
            .as_ref()
            .filter(|m| m.profile().oversize == Oversize::Stream)
            .map(|m| m.profile().max_bytes)
    }

    /// A JSON body over the masking profile's limit, with `oversize =
    /// "stream"`: masked piece by piece as it arrives and sent on chunked.
    /// Bad JSON or a failing upstream ends the stream without its last
    /// chunk, so the client never takes a cut body for a whole one.
    async fn stream_json(
        &mut self,
        head: &ResponseHead,
        conn: &mut UpstreamConn,
        prefix: BytesMut,
        state: &Shared,
        view: &SessionView,
    ) -> Result<(), String> {
        let masker = self.rt.masker.clone().expect("streams only when masking");
        let mut masking = StreamMasker::new(&masker);
        let first = masking.feed(&prefix);
        if let Err(e) = &first {
            // nothing sent yet: the client can still get an answer
            let ids: Vec<String> = masking.id().map(str::to_string).into_iter().collect();
            let why =
                format!("a response over the masking limit is not JSON ({e}) and cannot be masked");
            return Err(self.refuse_unmaskable(&ids, why).await);
        }
        let (result, streamed) = self
            .send_masked_stream(head, conn, prefix.len(), first, &mut masking)
            .await;
        self.record_streamed(&masking, streamed, state, view, result.as_ref().err());
        result
    }

    /// Sends `head` on chunked, then the masked body: `first` (the read
    /// part, masked), then each further chunk as `masking` masks it. How it
    /// ended, and what it came to. A masking error or a failing upstream
    /// ends the body without its last chunk, so the client never takes a
    /// cut body for a whole one.
    async fn send_masked_stream(
        &mut self,
        head: &ResponseHead,
        conn: &mut UpstreamConn,
        read: usize,
        first: Result<Bytes, String>,
        masking: &mut impl PieceMasker,
    ) -> (Result<(), String>, Streamed) {
        let mut client = client_head(head);
        client.headers_mut().set_chunked();
        let mut wire = BytesMut::with_capacity(PIECE + 4096);
        client.encode(&mut wire);
        let mut encoder = BodyEncoder::new(BodyFraming::Chunked);
        let mut tally = StreamTally::default();
        tally.received(read);
        let mut piece = first;
        let result = loop {
            let out = match piece {
                Ok(out) => out,
                Err(e) => break Err(format!("streamed masking: {e}")),
            };
            if !out.is_empty() {
                tally.sent(&out);
                if let Err(e) = encoder.encode_chunk(&out, &mut wire) {
                    break Err(format!("event stream: {}", e.reason()));
                }
            }
            if let Err(e) = self.send(&wire).await {
                break Err(e);
            }
            wire.clear();
            piece = match next_event(&mut conn.io, &mut conn.buf, &mut conn.decoder).await {
                Ok(Some(Event::BodyChunk(chunk))) => {
                    tally.received(chunk.len());
                    masking.feed(&chunk)
                }
                Ok(Some(Event::End(_))) => match masking.finish() {
                    Ok(last) => {
                        tally.sent(&last);
                        let ended = encoder
                            .encode_chunk(&last, &mut wire)
                            .and_then(|()| encoder.encode_end(&Headers::new(), &mut wire));
                        break match ended {
                            Ok(()) => self.send(&wire).await,
                            Err(e) => Err(format!("streamed body: {}", e.reason())),
                        };
                    }
                    Err(e) => Err(e),
                },
                Ok(Some(Event::Head(_))) | Ok(None) => {
                    break Err("upstream closed inside the body".to_string());
                }
                Err(e) => break Err(format!("upstream body: {e}")),
            };
        };
        (result, tally.done())
    }

    /// The record of a message masked as it streamed: of its kind (its
    /// top-level `method` and `id`; a response is matched to its request),
    /// what was masked, the digest of what was sent; not its payload.
    fn record_streamed(
        &self,
        masking: &StreamMasker<'_>,
        streamed: Streamed,
        state: &Shared,
        view: &SessionView,
        error: Option<&String>,
    ) {
        // the message's kind and id, without its payload
        let id = masking.id().unwrap_or("null");
        let stub = match masking.method() {
            Some(method) => {
                let method = Value::String(method.to_string());
                match masking.id() {
                    Some(id) => format!(r#"{{"jsonrpc":"2.0","id":{id},"method":{method}}}"#),
                    None => format!(r#"{{"jsonrpc":"2.0","method":{method}}}"#),
                }
            }
            None => format!(r#"{{"jsonrpc":"2.0","id":{id},"result":null}}"#),
        };
        let view = SessionView {
            id: lock(state).id.clone(),
            ..view.clone()
        };
        let mut r = match mcp::decode(stub.as_bytes()) {
            Ok(mcp::Body::Single(msg)) => {
                let pending = lock(state).correlator.observe(Sender::Server, &msg);
                self.who
                    .message(Sender::Server, &msg, Kept::Nothing, &view, pending.as_ref())
            }
            _ => self.who.record(Kind::Response),
        };
        r.size = Some(streamed.sent);
        r.payload_sha256 = Some(super::records::hex(&streamed.digest));
        if !masking.counts.is_empty() {
            r.masked = Some(masking::by_kind(&masking.counts));
        }
        r.payload_omitted = Some(self.streamed_note(&streamed));
        r.error = error.cloned();
        self.audit.record(r);
    }

    /// Masks, records (and transforms) the MCP messages of a server body;
    /// returns the bytes to send on. Masking comes first, so that the audit,
    /// later stages and the client see only masked messages. A body that is
    /// not JSON-RPC is masked as text and recorded as such; one too large to
    /// mask becomes a JSON-RPC error.
    fn server_messages(&self, body: &Bytes, state: &Shared, view: &SessionView) -> Bytes {
        let parsed = match mcp::decode(body) {
            Ok(parsed) => parsed,
            Err(e) => {
                let mut r = self.who.record(Kind::Response);
                r.direction = Some(super::records::direction(Sender::Server));
                r.error = Some(format!("not JSON-RPC: {e}"));
                r.status = view.status;
                let out = match self.mask_server(body, &[]) {
                    Ok(None) => {
                        payload(&mut r, body);
                        body.clone()
                    }
                    Ok(Some(m)) => {
                        kept(m.messages.first(), &m.bytes, m.bytes.len()).fill(&mut r);
                        m.bytes
                    }
                    Err(too) => {
                        r.error = Some(format!("not JSON-RPC, and {}", too_large_reason(&too)));
                        Bytes::from(rpc_errors(&[], AGENT_ERROR, &too.client_message()))
                    }
                };
                self.audit.record(r);
                return out;
            }
        };
        let msgs = parsed.messages();
        let texts = message_texts(body, &parsed);
        let masked = self.mask_server(body, &texts);
        let mut view = view.clone();
        for (i, (msg, raw)) in msgs.iter().zip(&texts).enumerate() {
            let pending = lock(state).correlator.observe(Sender::Server, msg);
            if pending.as_ref().is_some_and(|p| p.method == "initialize")
                && let Some(v) = negotiated_version(raw)
            {
                lock(state).protocol_version = Some(v.clone());
                view.protocol_version = Some(v);
            }
            let kept = match &masked {
                Ok(None) => Kept::Digest(raw),
                Ok(Some(m)) => {
                    let part = &m.messages[i.min(m.messages.len() - 1)];
                    Kept::Masked {
                        masked: part,
                        forwarded_len: part.bytes.len(),
                    }
                }
                Err(_) => Kept::Nothing,
            };
            let mut record = self
                .who
                .message(Sender::Server, msg, kept, &view, pending.as_ref());
            if let Err(too) = &masked {
                record.size = Some(raw.len() as u64);
                record.error = Some(too_large_reason(too));
            }
            self.audit.record(record);
        }
        let out = match masked {
            Ok(None) => body.clone(),
            Ok(Some(m)) => m.bytes,
            Err(too) => {
                let ids = response_ids(msgs);
                return Bytes::from(rpc_errors(&ids, AGENT_ERROR, &too.client_message()));
            }
        };
        if self.rt.chain.is_empty() {
            return out;
        }
        let ctx = self.ctx(&view, Sender::Server);
        let mut json = out.to_vec();
        match self.rt.chain.transform(&ctx, msgs, &mut json) {
            Ok(_) => Bytes::from(json),
            Err(refusal) => {
                let ids: Vec<String> = msgs.iter().filter_map(|m| m.id.clone()).collect();
                Bytes::from(rpc_errors(&ids, refusal.code, &refusal.message))
            }
        }
    }

    /// A masked copy of a message for the record; None with `mask = "off"`.
    fn mask_copy(&self, raw: &[u8]) -> Option<MaskedMessage> {
        let masker = self.rt.masker.as_deref()?;
        Some(masking::mask_message(masker, raw))
    }

    /// A server body masked by the endpoint's profile; `Ok(None)` with
    /// `mask = "off"`.
    fn mask_server(
        &self,
        body: &Bytes,
        texts: &[&[u8]],
    ) -> Result<Option<masking::MaskedBody>, masking::TooLarge> {
        match self.rt.masker.as_deref() {
            None => Ok(None),
            Some(m) => masking::mask_body(m, body, texts).map(Some),
        }
    }

    /// Answers a response the agent cannot mask with a JSON-RPC error (502)
    /// and records why; the connection ends (the body was left unread).
    async fn refuse_unmaskable(&mut self, ids: &[String], why: String) -> String {
        let mut r = self.who.record(Kind::Response);
        r.direction = Some(super::records::direction(Sender::Server));
        r.error = Some(format!("{why}; not forwarded"));
        r.status = Some(502);
        self.audit.record(r);
        let message = format!("mcp-warden: {why}, so it was not forwarded");
        let body = rpc_errors(ids, AGENT_ERROR, &message);
        let _ = answer(&mut self.client, 502, "application/json", &body, true).await;
        format!("refused: {why}")
    }

    /// An event stream: each event parsed as it arrives, its MCP message
    /// recorded, and passed on at once (chunked) without waiting for the end.
    async fn relay_sse(
        &mut self,
        head: &ResponseHead,
        conn: &mut UpstreamConn,
        state: &Shared,
        view: SessionView,
    ) -> Result<(), String> {
        let mut parser = SseParser::new();
        // oversize = "stream": an event's data over the limit is masked as it arrives
        let masker = self.stream_over().and(self.rt.masker.clone());
        if let Some(limit) = self.stream_over() {
            parser = parser.spill_over(limit);
        }
        let mut spilling: Option<SpillingEvent<'_>> = None;
        let result = self
            .sse_events(
                head,
                conn,
                state,
                &view,
                parser,
                masker.as_deref(),
                &mut spilling,
            )
            .await;
        if let Some(event) = spilling.take() {
            // the stream ended inside an event being streamed: the client
            // drops the unfinished event; its record says why
            let reason = match &result {
                Ok(()) => "the event stream ended inside a streamed event".to_string(),
                Err(e) => format!("the event stream failed inside a streamed event: {e}"),
            };
            self.record_streamed(
                &event.masking,
                event.tally.done(),
                state,
                &view,
                Some(&reason),
            );
        }
        result
    }

    /// The events of a stream, each masked and recorded on its way (see
    /// `relay_sse`); `spilling` is the event being masked as it arrives.
    #[allow(clippy::too_many_arguments)]
    async fn sse_events<'m>(
        &mut self,
        head: &ResponseHead,
        conn: &mut UpstreamConn,
        state: &Shared,
        view: &SessionView,
        mut parser: SseParser,
        masker: Option<&'m crate::mask::Masker>,
        spilling: &mut Option<SpillingEvent<'m>>,
    ) -> Result<(), String> {
        let mut client = client_head(head);
        client.headers_mut().set_chunked();
        let mut wire = BytesMut::with_capacity(4096);
        client.encode(&mut wire);
        let mut encoder = BodyEncoder::new(BodyFraming::Chunked);
        loop {
            self.send(&wire).await?;
            wire.clear();
            let event = next_event(&mut conn.io, &mut conn.buf, &mut conn.decoder).await;
            match event {
                Ok(Some(Event::BodyChunk(chunk))) => {
                    let items = parser
                        .feed(&chunk)
                        .map_err(|e| self.stream_failed(format!("event stream: {}", e.reason())))?;
                    let mut events = BytesMut::new();
                    for item in items {
                        let parts = match item {
                            SseItem::Event(event) => vec![self.sse_event(event, state, view)],
                            SseItem::Comment(text) => vec![SseItem::Comment(self.mask_plain(text))],
                            SseItem::Spill(part) => {
                                let masker = masker.expect("spills only when streaming");
                                match self.spill_part(part, masker, spilling, state, view) {
                                    Ok(parts) => parts,
                                    Err(e) => {
                                        // the events before it were recorded: they go out
                                        if !events.is_empty()
                                            && encoder.encode_chunk(&events, &mut wire).is_ok()
                                        {
                                            let _ = self.send(&wire).await;
                                        }
                                        return Err(e);
                                    }
                                }
                            }
                        };
                        parts
                            .iter()
                            .try_for_each(|item| item.encode(&mut events))
                            .map_err(|e| {
                                self.stream_failed(format!("event stream: {}", e.reason()))
                            })?;
                    }
                    if !events.is_empty() {
                        encoder
                            .encode_chunk(&events, &mut wire)
                            .map_err(|e| format!("event stream: {}", e.reason()))?;
                    }
                }
                Ok(Some(Event::End(_))) => {
                    encoder
                        .encode_end(&Headers::new(), &mut wire)
                        .map_err(|e| format!("event stream: {}", e.reason()))?;
                    return self.send(&wire).await;
                }
                Ok(Some(Event::Head(_))) | Ok(None) => {
                    return Err(self.stream_failed("upstream ended the event stream early".into()));
                }
                Err(e) => return Err(self.stream_failed(format!("upstream event stream: {e}"))),
            }
        }
    }

    /// One part of an SSE event whose data is over the masking limit
    /// (`oversize = "stream"`), masked as it arrives: its data is read as
    /// one JSON message in pieces, and its end recorded like a streamed
    /// body. Data that is not JSON ends the stream, cut, with the record
    /// saying why.
    fn spill_part<'m>(
        &self,
        part: Spill,
        masker: &'m crate::mask::Masker,
        spilling: &mut Option<SpillingEvent<'m>>,
        state: &Shared,
        view: &SessionView,
    ) -> Result<Vec<SseItem>, String> {
        if let Spill::Start(fields) = part {
            *spilling = Some(SpillingEvent {
                masking: StreamMasker::new(masker),
                tally: StreamTally::default(),
            });
            return Ok(vec![SseItem::Spill(Spill::Start(fields))]);
        }
        let event = spilling.as_mut().expect("a spill starts with its Start");
        let masked = match &part {
            Spill::Data(data) => {
                event.tally.received(data.len());
                event.masking.feed(data)
            }
            _ => event.masking.finish(),
        };
        let masked = match masked {
            Ok(masked) => masked,
            Err(e) => {
                let reason = format!("streamed masking of an event: {e}");
                let event = spilling.take().expect("checked");
                self.record_streamed(
                    &event.masking,
                    event.tally.done(),
                    state,
                    view,
                    Some(&reason),
                );
                return Err(reason);
            }
        };
        event.tally.sent(&masked);
        let mut out = vec![SseItem::Spill(Spill::Data(masked.to_vec()))];
        if let Spill::End(fields) = part {
            let event = spilling.take().expect("checked");
            self.record_streamed(&event.masking, event.tally.done(), state, view, None);
            out.push(SseItem::Spill(Spill::End(fields)));
        }
        Ok(out)
    }

    /// Writes to the client and flushes, so streamed events go out at once.
    async fn send(&mut self, wire: &[u8]) -> Result<(), String> {
        let sent = async {
            self.client.write_all(wire).await?;
            self.client.flush().await
        };
        sent.await.map_err(|e| format!("client error: {e}"))
    }

    fn stream_failed(&self, reason: String) -> String {
        let mut r = self.who.record(Kind::Response);
        r.error = Some(reason.clone());
        self.audit.record(r);
        reason
    }

    /// One SSE event on its way to the client: MCP messages recorded (and
    /// transformed), the legacy transport's endpoint event noted.
    fn sse_event(&self, mut event: SseEvent, state: &Shared, view: &SessionView) -> SseItem {
        let Some(data) = event.data.take() else {
            return SseItem::Event(event);
        };
        if event.event_type() == "endpoint" {
            // legacy HTTP+SSE: POSTs to this URL belong to this stream's session
            let key = legacy_key(data.trim());
            self.rt.sessions.bind(&key, state);
            event.data = Some(data);
            return SseItem::Event(event);
        }
        if !looks_like_json(data.as_bytes()) {
            event.data = Some(self.mask_plain(data));
            return SseItem::Event(event);
        }
        let view = SessionView {
            id: lock(state).id.clone(),
            ..view.clone()
        };
        let out = self.server_messages(&Bytes::from(data), state, &view);
        event.data = Some(String::from_utf8_lossy(&out).into_owned());
        SseItem::Event(event)
    }

    /// Text that is not an MCP message (an SSE comment or non-JSON data),
    /// masked when the endpoint masks. Text over the profile's limit is
    /// dropped rather than passed unmasked.
    fn mask_plain(&self, text: String) -> String {
        match self.rt.masker.as_deref() {
            None => text,
            Some(m) => {
                let masked = m.mask_text(&text);
                match masked.outcome {
                    crate::mask::Outcome::TooLarge { .. } => String::new(),
                    _ => masked.text.into_owned(),
                }
            }
        }
    }

    /// Any other body on an endpoint that masks: read whole (up to the
    /// profile's limit), masked as JSON or text, sent on with its new length.
    /// A body that is not text is refused: the agent cannot vouch for it.
    async fn relay_masked_text(
        &mut self,
        req: &Request,
        head: &ResponseHead,
        conn: &mut UpstreamConn,
        ids: &[String],
    ) -> Result<(), String> {
        let masker = self.rt.masker.clone().expect("called only when masking");
        let content_type = header_str(head.headers(), "content-type").map(str::to_string);
        let empty = head.body_framing().is_ok_and(|f| f == BodyFraming::Empty);
        if !empty && !masking::is_textual(content_type.as_deref()) {
            let ct = content_type.unwrap_or_default();
            return Err(self
                .refuse_unmaskable(ids, format!("a {ct:?} response cannot be masked"))
                .await);
        }
        let limit = masker.profile().max_bytes;
        let body = match self.read_or_stream(conn, limit).await {
            Ok(Read::Whole(body)) => body,
            Ok(Read::Over(prefix)) => {
                return self.stream_text(req, head, conn, prefix).await;
            }
            Err(e) if e.framing() == Some(FramingError::BodyTooLarge) => {
                let why = format!(
                    "the response is larger than the {limit} bytes that masking profile {:?} inspects",
                    masker.profile().name
                );
                return Err(self.refuse_unmaskable(ids, why).await);
            }
            Err(e) => {
                let reason = format!("upstream body: {e}");
                let mut r = self.who.record(Kind::Http);
                r.error = Some(reason.clone());
                self.audit.record(r);
                return Err(reason);
            }
        };
        let masked = masking::mask_message(&masker, &body);
        let mut client = client_head(head);
        if !empty {
            client
                .headers_mut()
                .set_content_length(masked.bytes.len() as u64);
        }
        let mut wire = BytesMut::with_capacity(256 + masked.bytes.len());
        client.encode(&mut wire);
        wire.extend_from_slice(&masked.bytes);
        let sent = self.send(&wire).await;
        let mut r = self.http_record(req, head);
        r.size = Some(masked.bytes.len() as u64);
        r.payload_sha256 = Some(super::records::sha256_hex(&masked.bytes));
        if !masked.counts.is_empty() {
            r.masked = Some(masked.counts_by_kind());
        }
        r.error = sent.as_ref().err().cloned();
        self.audit.record(r);
        sent
    }

    /// Why a streamed message's record holds no payload.
    fn streamed_note(&self, streamed: &Streamed) -> String {
        let profile = self.rt.masker.as_ref().map(|m| m.profile().name.as_str());
        format!(
            "streamed: {} bytes from the server, over masking profile {:?}'s max_bytes; masked piece by piece, not kept",
            streamed.received,
            profile.unwrap_or_default()
        )
    }

    /// A body that is not MCP over the masking profile's limit, with
    /// `oversize = "stream"`: masked piece by piece as it arrives, as JSON
    /// when its first part reads as JSON, else as text, and sent on chunked.
    /// JSON that turns out not to be later is cut.
    async fn stream_text(
        &mut self,
        req: &Request,
        head: &ResponseHead,
        conn: &mut UpstreamConn,
        prefix: BytesMut,
    ) -> Result<(), String> {
        let masker = self.rt.masker.clone().expect("streams only when masking");
        let starts_like_json = prefix
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| matches!(b, b'{' | b'['));
        // JSON that is not (`[INFO] …`) is text, as for a body masked whole
        let mut json = StreamMasker::new(&masker);
        let first = starts_like_json.then(|| json.feed(&prefix));
        let (result, streamed, counts) = if let Some(first @ Ok(_)) = first {
            let (result, streamed) = self
                .send_masked_stream(head, conn, prefix.len(), first, &mut json)
                .await;
            (result, streamed, json.counts)
        } else {
            let mut text = TextStreamMasker::new(&masker);
            let first = text.feed(&prefix);
            let (result, streamed) = self
                .send_masked_stream(head, conn, prefix.len(), first, &mut text)
                .await;
            (result, streamed, text.counts)
        };
        let mut r = self.http_record(req, head);
        r.size = Some(streamed.sent);
        r.payload_sha256 = Some(super::records::hex(&streamed.digest));
        if !counts.is_empty() {
            r.masked = Some(masking::by_kind(&counts));
        }
        r.payload_omitted = Some(self.streamed_note(&streamed));
        r.error = result.as_ref().err().cloned();
        self.audit.record(r);
        result
    }

    /// The record of a non-MCP exchange: method, path (no query) and status.
    fn http_record(&self, req: &Request, head: &ResponseHead) -> crate::audit::Record {
        let mut r = self.who.record(Kind::Http);
        r.http = Some(format!(
            "{} {}",
            req.head.method(),
            path_of(req.head.target())
        ));
        r.status = Some(head.status());
        r
    }

    /// Any other body: streamed through as it arrives, the exchange recorded
    /// as HTTP.
    async fn relay_raw(
        &mut self,
        req: &Request,
        head: &ResponseHead,
        conn: &mut UpstreamConn,
    ) -> Result<(), String> {
        let mut client = client_head(head);
        let framing = head.body_framing().unwrap_or(BodyFraming::UntilClose);
        match framing {
            BodyFraming::Length(n) => client.headers_mut().set_content_length(n),
            BodyFraming::Chunked | BodyFraming::UntilClose => client.headers_mut().set_chunked(),
            BodyFraming::Empty => {}
        }
        let out_framing = match framing {
            BodyFraming::UntilClose => BodyFraming::Chunked,
            other => other,
        };
        let mut encoder = BodyEncoder::new(out_framing);
        let mut wire = BytesMut::with_capacity(4096);
        client.encode(&mut wire);
        let mut size = 0u64;
        let mut hash = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let result = loop {
            match next_event(&mut conn.io, &mut conn.buf, &mut conn.decoder).await {
                Ok(Some(Event::BodyChunk(chunk))) => {
                    size += chunk.len() as u64;
                    hash.update(&chunk);
                    if let Err(e) = encoder.encode_chunk(&chunk, &mut wire) {
                        break Err(format!("upstream body: {}", e.reason()));
                    }
                }
                Ok(Some(Event::End(_))) => {
                    break encoder
                        .encode_end(&Headers::new(), &mut wire)
                        .map_err(|e| format!("upstream body: {}", e.reason()));
                }
                Ok(Some(Event::Head(_))) | Ok(None) => {
                    break Err("upstream closed inside a body".to_string());
                }
                Err(e) => break Err(format!("upstream body: {e}")),
            }
            if wire.len() >= 64 * 1024 {
                if let Err(e) = self.client.write_all(&wire).await {
                    break Err(format!("client error: {e}"));
                }
                wire.clear();
            }
        };
        if result.is_ok() {
            self.send(&wire).await?;
        }
        let mut r = self.http_record(req, head);
        r.size = Some(size);
        let digest = hash.finish();
        r.payload_sha256 = Some(super::records::hex(&digest));
        r.error = result.as_ref().err().cloned();
        self.audit.record(r);
        result
    }
}

/// What checking an MCP request body led to.
enum Checked {
    Forward {
        body: Bytes,
        msgs: Vec<mcp::Message>,
    },
    /// The agent answered it itself; the connection goes on (or not).
    Answered(Next),
}

/// Reads heads until the final (non-1xx) one; its interim responses are
/// dropped (the agent answered the client's Expect itself).
async fn final_head(conn: &mut UpstreamConn) -> Result<Option<ResponseHead>, CodecError> {
    loop {
        match next_event(&mut conn.io, &mut conn.buf, &mut conn.decoder).await? {
            None => return Ok(None),
            Some(Event::Head(head)) if head.is_interim() => {
                // an interim response has no body: its End follows at once
                next_event(&mut conn.io, &mut conn.buf, &mut conn.decoder).await?;
            }
            Some(Event::Head(head)) => return Ok(Some(head)),
            Some(_) => return Err(FramingError::EventOutOfOrder.into()),
        }
    }
}

fn session_view(state: &Shared) -> SessionView {
    let s = lock(state);
    SessionView {
        id: s.id.clone(),
        protocol_version: s.protocol_version.clone(),
        status: None,
    }
}

fn looks_like_json(body: &[u8]) -> bool {
    body.iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{' || *b == b'[')
}

fn is_json(head: &ResponseHead) -> bool {
    header_str(head.headers(), "content-type").is_some_and(|ct| {
        let media = ct.split(';').next().unwrap_or("").trim();
        media.eq_ignore_ascii_case("application/json")
            || media.to_ascii_lowercase().ends_with("+json")
    })
}

fn body_is_batch(body: &mcp::Body) -> bool {
    matches!(body, mcp::Body::Batch(_))
}

/// A response body read up to a limit.
enum Read {
    Whole(Bytes),
    /// Over the limit: what was read so far; the rest is still on the wire.
    Over(BytesMut),
}

/// Reads a body whole, or until it passes `limit`.
async fn read_until_over(conn: &mut UpstreamConn, limit: usize) -> Result<Read, CodecError> {
    let mut body = BytesMut::new();
    loop {
        match next_event(&mut conn.io, &mut conn.buf, &mut conn.decoder).await? {
            Some(Event::BodyChunk(chunk)) => {
                body.extend_from_slice(&chunk);
                if body.len() > limit {
                    return Ok(Read::Over(body));
                }
            }
            Some(Event::End(_)) => return Ok(Read::Whole(body.freeze())),
            Some(Event::Head(_)) => return Err(FramingError::EventOutOfOrder.into()),
            None => return Err(FramingError::TruncatedBody.into()),
        }
    }
}

/// What a record keeps: the masked copy when there is one, else the digest.
fn kept<'a>(masked: Option<&'a MaskedMessage>, raw: &'a [u8], forwarded_len: usize) -> Kept<'a> {
    match masked {
        Some(masked) => Kept::Masked {
            masked,
            forwarded_len,
        },
        None => Kept::Digest(raw),
    }
}

/// What a message masked as it streamed came to, for its record.
struct Streamed {
    received: u64,
    sent: u64,
    digest: aws_lc_rs::digest::Digest,
}

/// The bytes of a message masked as it streams: how many came, how many
/// went, and the digest of what went.
struct StreamTally {
    received: u64,
    sent: u64,
    hash: aws_lc_rs::digest::Context,
}

impl Default for StreamTally {
    fn default() -> Self {
        StreamTally {
            received: 0,
            sent: 0,
            hash: aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256),
        }
    }
}

impl StreamTally {
    fn received(&mut self, n: usize) {
        self.received += n as u64;
    }

    fn sent(&mut self, bytes: &[u8]) {
        self.hash.update(bytes);
        self.sent += bytes.len() as u64;
    }

    fn done(&self) -> Streamed {
        Streamed {
            received: self.received,
            sent: self.sent,
            digest: self.hash.clone().finish(),
        }
    }
}

/// An SSE event over the masking limit, being masked as it arrives.
struct SpillingEvent<'m> {
    masking: StreamMasker<'m>,
    tally: StreamTally,
}

fn too_large_reason(too: &masking::TooLarge) -> String {
    format!(
        "larger ({} bytes) than masking profile {:?} inspects ({} bytes); not forwarded",
        too.len, too.profile, too.limit
    )
}

/// The ids of the responses in a server body (the requests the client waits on).
fn response_ids(msgs: &[mcp::Message]) -> Vec<String> {
    msgs.iter()
        .filter(|m| matches!(m.kind, mcp::Kind::Response | mcp::Kind::Error))
        .filter_map(|m| m.id.clone())
        .collect()
}

fn request_ids(msgs: &[mcp::Message]) -> Vec<String> {
    msgs.iter()
        .filter(|m| m.kind == mcp::Kind::Request)
        .filter_map(|m| m.id.clone())
        .collect()
}

fn rpc_error(id: Option<&String>, code: i64, message: &str, data: Option<Value>) -> Value {
    serde_json::from_slice(&mcp::error_body(
        id.map(String::as_str),
        code,
        message,
        data,
    ))
    .expect("error_body writes JSON")
}

/// One error per id (a single object for one id, null id for none).
fn rpc_errors(ids: &[String], code: i64, message: &str) -> Vec<u8> {
    match ids {
        [] => mcp::error_body(None, code, message, None),
        [one] => mcp::error_body(Some(one), code, message, None),
        many => {
            let all: Vec<Value> = many
                .iter()
                .map(|id| rpc_error(Some(id), code, message, None))
                .collect();
            serde_json::to_vec(&all).expect("JSON")
        }
    }
}
