//! The L7 data path of an `mcp` endpoint: the client's TLS terminated (or
//! plain HTTP), HTTP/1.1 framed, every MCP message decoded, recorded and put
//! to the endpoint's stages, and the request sent upstream over TLS with the
//! gateway's credential.
//!
//! Module map: `conn` (client TLS, upstream connections and their pool),
//! `wire` (reading and writing HTTP on them), `exchange` (one connection's
//! requests and responses), `session` (MCP sessions across connections),
//! `stage` (the seam controls plug into), `masking` (PHI masking of what
//! flows back and of what the audit keeps), `stream_mask` (masking a JSON
//! body too large to hold whole, as it streams), `records` (what the audit gets),
//! `endpoint` (an endpoint's runtime: credential, TLS, pool, stages).

mod conn;
mod endpoint;
mod exchange;
pub mod masking;
mod records;
mod session;
pub mod stage;
mod stream_mask;
mod wire;

#[cfg(test)]
mod tests;

pub use endpoint::{EndpointRuntime, Runtimes, build};
pub use exchange::{AGENT_ERROR, MAX_JSON_RESPONSE, MAX_REQUEST_BODY};
pub use records::Who;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use tokio::net::TcpStream;

use crate::audit::AuditLog;
use crate::config::ClientTls;
use crate::relay::Upstream;
use crate::tls::LocalCa;

/// How a pipelined connection ended, for its close record.
pub struct Outcome {
    pub outcome: String,
    pub bytes_up: u64,
    pub bytes_down: u64,
}

/// What a connection's close record says when the agent failed on it.
pub const INTERNAL_ERROR: &str = "error: internal (mcp-warden failed while serving this connection and closed it; its log has the panic)";

impl Outcome {
    /// An ending with no byte counts: before any byte was relayed, or
    /// where the connection's counts were lost with it (a panic).
    fn uncounted(outcome: String) -> Outcome {
        Outcome {
            outcome,
            bytes_up: 0,
            bytes_down: 0,
        }
    }
}

/// Serves one redirected client connection of an `mcp` endpoint. A panic
/// (a bug) ends this connection alone, with [`INTERNAL_ERROR`] as its
/// outcome, so that its close record is still written.
pub async fn serve(
    rt: Arc<EndpointRuntime>,
    audit: AuditLog,
    transport: Upstream,
    ca: &LocalCa,
    who: Who,
    tcp: TcpStream,
) -> Outcome {
    let served = async move {
        let (io, sni): (conn::BoxIo, Option<String>) = match rt.client_tls {
            ClientTls::Plain => (Box::new(tcp), None),
            ClientTls::Terminate => match conn::accept_tls(tcp, ca, who.orig_dst).await {
                Ok((io, name)) => (io, Some(name)),
                Err(e) => return Outcome::uncounted(format!("client TLS: {e:#}")),
            },
        };
        let mut connection = exchange::Connection::new(rt, audit, transport, who, io, sni);
        let outcome = connection.run().await;
        let (up, down) = connection.counts();
        Outcome {
            outcome,
            bytes_up: up,
            bytes_down: down,
        }
    };
    unless_it_panics(served).await
}

/// `served`'s outcome, or [`INTERNAL_ERROR`] if it panics.
async fn unless_it_panics(served: impl Future<Output = Outcome>) -> Outcome {
    match AssertUnwindSafe(served).catch_unwind().await {
        Ok(outcome) => outcome,
        Err(_) => {
            tracing::error!("a connection ended by a panic in the agent (see above)");
            Outcome::uncounted(INTERNAL_ERROR.to_string())
        }
    }
}
