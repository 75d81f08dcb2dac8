//! MCP sessions as the pipeline sees them: a session spans connections (the
//! client POSTs on one, listens on a GET stream on another), so responses are
//! matched to requests in state shared by session key, not by connection.
//!
//! Keys: the `Mcp-Session-Id` a server assigned (streamable HTTP, 2025-03-26 …
//! 2025-11-25), or the message URL the legacy HTTP+SSE transport announced in
//! its `endpoint` event. Exchanges with neither (stateless 2026-07-28, or
//! before initialize completes) use state private to their connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::mcp::Correlator;

/// What one MCP session carries between its messages.
#[derive(Debug, Default)]
pub struct SessionState {
    pub correlator: Correlator,
    /// The session id or legacy message URL, once known.
    pub id: Option<String>,
    /// The protocol version initialize negotiated (or the header carried).
    pub protocol_version: Option<String>,
}

pub type Shared = Arc<Mutex<SessionState>>;

pub fn new_state() -> Shared {
    Arc::new(Mutex::new(SessionState::default()))
}

/// Sessions of one endpoint, bounded: idle ones expire, and the least
/// recently used go first when the table is full.
#[derive(Default)]
pub struct SessionTable {
    map: Mutex<HashMap<String, (Instant, Shared)>>,
}

const MAX_SESSIONS: usize = 10_000;
const IDLE_EXPIRY: Duration = Duration::from_secs(3600);

impl SessionTable {
    pub fn get(&self, key: &str) -> Option<Shared> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let (used, state) = map.get_mut(key)?;
        *used = Instant::now();
        Some(state.clone())
    }

    /// Makes `state` the session `key` (the server just assigned it).
    pub fn bind(&self, key: &str, state: &Shared) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_SESSIONS && !map.contains_key(key) {
            map.retain(|_, (used, _)| used.elapsed() < IDLE_EXPIRY);
            if map.len() >= MAX_SESSIONS
                && let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, (used, _))| *used)
                    .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        lock(state).id.get_or_insert_with(|| key.to_string());
        map.insert(key.to_string(), (Instant::now(), state.clone()));
    }

    /// The client ended the session (DELETE).
    pub fn end(&self, key: &str) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Locks a session's state; a panic elsewhere must not wedge the session.
pub fn lock(state: &Shared) -> std::sync::MutexGuard<'_, SessionState> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// The session key of a legacy message URL as a request target: the path and
/// query, whether the `endpoint` event gave a relative or an absolute URL.
pub fn legacy_key(url: &str) -> String {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let path = match rest {
        Some(r) => r.find('/').map_or("/", |i| &r[i..]),
        None => url,
    };
    format!("legacy {path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_bind_share_and_end() {
        let t = SessionTable::default();
        let s = new_state();
        t.bind("abc", &s);
        assert!(Arc::ptr_eq(&t.get("abc").unwrap(), &s));
        assert_eq!(lock(&s).id.as_deref(), Some("abc"));
        t.end("abc");
        assert!(t.get("abc").is_none());
        assert!(t.is_empty());
    }

    #[test]
    fn the_table_is_bounded() {
        let t = SessionTable::default();
        for i in 0..MAX_SESSIONS + 5 {
            t.bind(&i.to_string(), &new_state());
        }
        assert_eq!(t.len(), MAX_SESSIONS);
    }

    #[test]
    fn legacy_urls_key_by_path_and_query() {
        assert_eq!(
            legacy_key("/messages/?session_id=1f"),
            "legacy /messages/?session_id=1f"
        );
        assert_eq!(
            legacy_key("https://mcp.example:8443/messages/?session_id=1f"),
            "legacy /messages/?session_id=1f"
        );
        assert_eq!(legacy_key("http://h"), "legacy /");
    }
}
