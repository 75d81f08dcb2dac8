//! The seam where controls plug into the data path, without touching framing.
//!
//! Every MCP message the client sends passes through the endpoint's stages in
//! order: first each stage's `decide` (the first that answers wins, and the
//! message never reaches the server), then each stage's `transform`. Messages
//! the server sends pass through `transform` only: a server's message is not a
//! request to refuse, but it may need rewriting (masking) before the client and
//! the audit see it.

use std::future::Future;
use std::pin::Pin;

use serde_json::Value;

use crate::identity::Identity;
use crate::mcp;

/// Who and where: what a stage knows about the message it looks at.
#[derive(Debug, Clone, Copy)]
pub struct MessageCtx<'a> {
    pub endpoint: &'a str,
    pub identity: &'a Identity,
    /// The connection's session id (the one the audit groups by).
    pub session: &'a str,
    pub mcp_session: Option<&'a str>,
    pub protocol_version: Option<&'a str>,
    pub sender: mcp::Sender,
}

/// A stage's answer to a client message.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Forward,
    /// Answer the client with this JSON-RPC error instead of forwarding.
    Answer(Refusal),
}

/// A JSON-RPC error a stage answers with, and why (for the record).
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
    /// The stage (and, for policy, the policy ids) that refused.
    pub by: Vec<String>,
}

/// What a transform did to a message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transformed {
    /// Entities (or fields) changed, for the record.
    pub changed: u64,
}

pub type Decision<'a> = Pin<Box<dyn Future<Output = Verdict> + Send + 'a>>;

/// One control. Defaults do nothing, so a stage implements only its phase.
pub trait Stage: Send + Sync {
    /// Names the stage in records and refusals.
    fn name(&self) -> &str;

    /// Decide on a message from the client. Async: a stage may wait (approval).
    fn decide<'a>(&'a self, _ctx: &'a MessageCtx<'a>, _msg: &'a mcp::Message) -> Decision<'a> {
        Box::pin(std::future::ready(Verdict::Forward))
    }

    /// Rewrite a JSON-RPC body (one message, or a batch: `msgs` in order) in
    /// place, either direction. An error refuses it: the client gets a
    /// JSON-RPC error, never the untransformed bytes.
    fn transform(
        &self,
        _ctx: &MessageCtx<'_>,
        _msgs: &[mcp::Message],
        _json: &mut Vec<u8>,
    ) -> Result<Transformed, Refusal> {
        Ok(Transformed::default())
    }
}

/// An endpoint's stages, in order.
#[derive(Default, Clone)]
pub struct Chain {
    stages: Vec<std::sync::Arc<dyn Stage>>,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.stages.iter().map(|s| s.name()))
            .finish()
    }
}

impl Chain {
    pub fn new(stages: Vec<std::sync::Arc<dyn Stage>>) -> Self {
        Self { stages }
    }

    /// Runs every stage's `decide` in order; the first answer wins.
    pub async fn decide(&self, ctx: &MessageCtx<'_>, msg: &mcp::Message) -> Verdict {
        for stage in &self.stages {
            if let Verdict::Answer(refusal) = stage.decide(ctx, msg).await {
                return Verdict::Answer(refusal);
            }
        }
        Verdict::Forward
    }

    /// Runs every stage's `transform` in order over `json`.
    pub fn transform(
        &self,
        ctx: &MessageCtx<'_>,
        msgs: &[mcp::Message],
        json: &mut Vec<u8>,
    ) -> Result<Transformed, Refusal> {
        let mut total = Transformed::default();
        for stage in &self.stages {
            total.changed += stage.transform(ctx, msgs, json)?.changed;
        }
        Ok(total)
    }

    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }
}
