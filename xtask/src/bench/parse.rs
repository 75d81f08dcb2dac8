//! The parse-only baseline of the masking engine's throughput: simd-json
//! (the Rust port of simdjson) reads each message and the JSON text inside
//! its content items (the pretty copy of structuredContent that SDKs send),
//! which is the least any masker must read, and masks nothing.

use std::hint::black_box;

use mcp_warden::mask::corpus::ParseBaseline;
use simd_json::Node;

/// Parses `message` onto simd-json's tape (strings decoded, no tree
/// built), and the value of every `text` member that is JSON text. simd-json
/// parses in place, so each input is copied first (at memcpy speed).
fn parse_message(message: &[u8]) {
    let mut outer = message.to_vec();
    let Ok(tape) = simd_json::to_tape(&mut outer) else {
        return;
    };
    // a flat pass over the tape: a key is the node before its value
    for pair in tape.0.windows(2) {
        if let [Node::String("text"), Node::String(text)] = pair
            && text.trim_start().starts_with(['{', '['])
        {
            let mut inner = text.as_bytes().to_vec();
            black_box(simd_json::to_tape(&mut inner).is_ok());
        }
    }
    black_box(&tape);
}

pub fn baseline() -> ParseBaseline<'static> {
    ParseBaseline {
        name: "simd-json",
        parse: &parse_message,
    }
}

#[cfg(test)]
mod tests {
    use mcp_warden::mask::corpus::{DocKind, generate};
    use simd_json::Node;

    /// The corpus's rows carry a JSON copy in their text that the baseline
    /// parses: without it the baseline would flatter the goal.
    #[test]
    fn the_corpus_rows_parse_with_their_embedded_copy() {
        let docs = generate(1, 2);
        let rows = docs
            .iter()
            .find(|d| d.kind == DocKind::StructuredJson)
            .unwrap();
        let mut outer = rows.bytes.clone();
        let tape = simd_json::to_tape(&mut outer).unwrap();
        let embedded = tape
            .0
            .windows(2)
            .filter(|pair| matches!(pair, [Node::String("text"), Node::String(t)] if t.starts_with('{')))
            .count();
        assert_eq!(embedded, 1);
    }
}
