//! Where PHI travels in an MCP (JSON-RPC 2.0) message, by position: which
//! strings are content to mask, which are protocol to leave alone, and which
//! are server-written descriptors (tool lists, schemas) where a key rule on
//! `name` or `ssn` would break the protocol but free-text detection still
//! runs.

/// The part of a message a value sits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The top level of a JSON-RPC message (or each message of a batch).
    Message,
    Result,
    Error,
    Params,
    /// Anything that may carry PHI: key rules, embedded documents and
    /// detectors all apply.
    Content,
    /// Server-written descriptions (tools, prompts, resource lists,
    /// schemas): detectors only.
    Descriptor,
    /// Protocol fields: never touched.
    Protocol,
}

/// How a string in a scope is masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Key rules, label and column rules, embedded JSON/CSV, detectors.
    Full,
    /// Detectors only.
    DetectOnly,
}

impl Scope {
    /// The scope of the value under `key` in an object of this scope.
    pub fn child(self, key: &str) -> Scope {
        match self {
            Scope::Message => match key {
                "jsonrpc" | "id" | "method" => Scope::Protocol,
                "result" => Scope::Result,
                "error" => Scope::Error,
                "params" => Scope::Params,
                _ => Scope::Content,
            },
            Scope::Result => match key {
                "_meta" | "protocolVersion" | "capabilities" | "nextCursor" => Scope::Protocol,
                "serverInfo" | "tools" | "prompts" | "resources" | "resourceTemplates" => {
                    Scope::Descriptor
                }
                _ => Scope::Content,
            },
            Scope::Error => match key {
                "code" => Scope::Protocol,
                _ => Scope::Content,
            },
            Scope::Params => match key {
                // Tool and prompt names, pagination, progress plumbing, the
                // log level and handshake fields.
                "name" | "_meta" | "progressToken" | "cursor" | "protocolVersion" | "level"
                | "requestId" | "capabilities" | "clientInfo" | "logger" => Scope::Protocol,
                "requestedSchema" => Scope::Descriptor,
                _ => Scope::Content,
            },
            Scope::Content => match key {
                "_meta" => Scope::Protocol,
                "inputSchema" | "outputSchema" | "requestedSchema" => Scope::Descriptor,
                _ => Scope::Content,
            },
            Scope::Descriptor => match key {
                "_meta" => Scope::Protocol,
                _ => Scope::Descriptor,
            },
            Scope::Protocol => Scope::Protocol,
        }
    }

    /// The scope of each element of an array in this scope (a batch holds
    /// messages).
    pub fn element(self) -> Scope {
        match self {
            Scope::Message => Scope::Message,
            Scope::Result | Scope::Error | Scope::Params => Scope::Content,
            s => s,
        }
    }

    /// How strings here are masked; `None` for protocol fields.
    pub fn mode(self) -> Option<Mode> {
        match self {
            Scope::Protocol => None,
            Scope::Descriptor => Some(Mode::DetectOnly),
            _ => Some(Mode::Full),
        }
    }

    /// Where key rules and media policies apply.
    pub fn is_content(self) -> bool {
        self.mode() == Some(Mode::Full)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_fields_are_left_alone() {
        let m = Scope::Message;
        assert_eq!(m.child("id"), Scope::Protocol);
        assert_eq!(m.child("method"), Scope::Protocol);
        assert_eq!(m.child("params").child("name"), Scope::Protocol);
        assert_eq!(
            m.child("params").child("_meta").child("progressToken"),
            Scope::Protocol
        );
        assert_eq!(
            m.child("params").child("arguments").child("name"),
            Scope::Content
        );
        assert_eq!(
            m.child("result").child("content").element().child("text"),
            Scope::Content
        );
        assert_eq!(
            m.child("result").child("tools").element().child("name"),
            Scope::Descriptor
        );
        assert_eq!(
            m.child("result")
                .child("structuredContent")
                .child("inputSchema"),
            Scope::Descriptor
        );
        assert_eq!(m.child("error").child("code"), Scope::Protocol);
        assert_eq!(m.child("error").child("data"), Scope::Content);
        assert_eq!(m.element(), Scope::Message);
        assert_eq!(Scope::Protocol.mode(), None);
    }
}
