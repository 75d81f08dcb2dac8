//! Images, audio and binary blobs inside MCP content: what the profile does
//! with image and audio items, and masking base64 blobs whose MIME type is
//! textual.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::Masker;
use super::edit::apply_str;
use super::entity::{Counts, Entity};
use super::scope::Mode;
use super::text::StrCtx;

/// What to do with an MCP image or audio content item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaPolicy {
    /// Pass it through untouched (its base64 is not scanned as text).
    Keep,
    /// Remove the item from its array (replaced by a placeholder where it
    /// is not in an array).
    Drop,
    /// Replace it with a text item saying what was removed.
    Placeholder,
}

/// What a content object with a `data` or `blob` string is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Media {
    Image,
    Audio,
    /// A resource blob whose MIME type is text-like: decoded and masked.
    TextBlob,
    /// Any other base64 payload: left as it is.
    OpaqueBlob,
    /// Not media: `data` is an ordinary value (logging, error data).
    None,
}

impl Media {
    /// From the object's `type` and `mimeType`, and whether the string in
    /// question is a `blob` (resource contents) or a `data`.
    pub fn classify(item_type: Option<&str>, mime: Option<&str>, is_blob: bool) -> Media {
        match (item_type, is_blob) {
            (Some("image"), false) => Media::Image,
            (Some("audio"), false) => Media::Audio,
            (_, true) => match mime {
                Some(m) if textual(m) => Media::TextBlob,
                _ => Media::OpaqueBlob,
            },
            _ => Media::None,
        }
    }

    /// The entity counted when an item is dropped or replaced.
    pub fn entity(self) -> Option<Entity> {
        match self {
            Media::Image => Some(Entity::Image),
            Media::Audio => Some(Entity::Audio),
            _ => None,
        }
    }

    /// The JSON text item that stands in for a removed one.
    pub fn placeholder(self) -> &'static str {
        match self {
            Media::Audio => r#"{"type":"text","text":"[audio removed]"}"#,
            _ => r#"{"type":"text","text":"[image removed]"}"#,
        }
    }
}

/// MIME types whose bytes are text worth masking.
pub(crate) fn textual(mime: &str) -> bool {
    let m = mime
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    m.starts_with("text/")
        || m.ends_with("+json")
        || m.ends_with("+xml")
        || matches!(
            m.as_str(),
            "application/json"
                | "application/xml"
                | "application/csv"
                | "application/x-ndjson"
                | "application/yaml"
                | "application/x-yaml"
                | "application/hl7-v2"
                | "application/javascript"
        )
}

impl Masker {
    /// The masked base64 of a textual blob, if masking changed it. A blob
    /// that is not valid base64 of UTF-8 is masked as the text it is.
    pub(crate) fn mask_blob(
        &self,
        b64: &str,
        nesting: usize,
        counts: &mut Counts,
    ) -> Option<String> {
        let ctx = StrCtx {
            rule: None,
            mode: Mode::Full,
            null_ok: false,
            nesting,
        };
        let decoded = STANDARD
            .decode(b64.trim())
            .ok()
            .and_then(|d| String::from_utf8(d).ok());
        let text = decoded.as_deref().unwrap_or(b64);
        let mut edits = Vec::new();
        self.plan_string(text, &ctx, &mut edits, counts);
        if edits.is_empty() {
            return None;
        }
        let masked = apply_str(text, &edits);
        Some(if decoded.is_some() {
            STANDARD.encode(masked)
        } else {
            masked
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_items() {
        assert_eq!(
            Media::classify(Some("image"), Some("image/png"), false),
            Media::Image
        );
        assert_eq!(Media::classify(Some("audio"), None, false), Media::Audio);
        assert_eq!(
            Media::classify(None, Some("text/csv; charset=utf-8"), true),
            Media::TextBlob
        );
        assert_eq!(
            Media::classify(None, Some("application/fhir+json"), true),
            Media::TextBlob
        );
        assert_eq!(
            Media::classify(None, Some("application/pdf"), true),
            Media::OpaqueBlob
        );
        assert_eq!(Media::classify(None, None, false), Media::None);
        assert_eq!(Media::classify(Some("text"), None, false), Media::None);
    }
}
