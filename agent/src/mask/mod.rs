//! PHI masking: finds HIPAA Safe Harbor identifiers in what flows back from
//! MCP servers (and in what the audit records) and masks them by a profile.
//!
//! - `detect`: one detector per identifier family, each validating its
//!   matches (check digits, assigned ranges, context words).
//! - `keys`, `labels`, `tabular`: key, `label:` and column rules that mask a
//!   value whole because of what it is called.
//! - `scope`: which parts of a JSON-RPC message are content, protocol or
//!   server-written descriptors.
//! - `json`: the byte walker that masks JSON where it stands (in place when
//!   lengths allow); `value` does the same for a parsed `serde_json::Value`;
//!   `text` masks one decoded string (JSON, CSV or markdown inside it
//!   included); `media` handles images, audio and blobs.
//! - `action`, `edit`, `pseudonym`: what a found value becomes, and how the
//!   replacements are applied.
//! - `profile`: profiles and their `[mask.NAME]` config; `corpus`: the
//!   labelled synthetic corpus and the accuracy/throughput report.
//!
//! A profile in the config (every field optional; `Profile::from_config`):
//!
//! ```toml
//! [mask.strict]
//! base = "safe-harbor"          # or "none": nothing enabled, no key rules
//! entities = ["ssn", "name"]    # replaces the base's enabled kinds
//! disable = ["url"]
//! drop_keys = ["name"]          # key rules removed from the base
//! images = "drop"               # keep | drop | placeholder (also `audio`)
//! max_bytes = 16777216          # larger bodies: Outcome::TooLarge
//! max_depth = 128               # deeper JSON: masked as text
//! [mask.strict.actions]         # redact partial partial:N tag hash year zip3 null
//! name = "hash"
//! ssn = "partial:4"
//! [mask.strict.keys]            # key (any case/separators) -> kind
//! badge_no = "license"
//! [mask.strict.key_suffixes]    # key ending -> kind
//! _policy_no = "mbi"
//! [[mask.strict.patterns]]
//! name = "acme-mrn"             # counted as custom:acme-mrn unless `entity`
//! regex = 'ACME-\d{7}'
//! entity = "mrn"                # optional: count matches as this kind
//! action = "tag"                # optional: else the kind's action
//! ```

mod action;
pub mod corpus;
mod detect;
mod edit;
mod entity;
mod fasthash;
mod json;
mod key_cache;
mod keys;
mod labels;
mod media;
mod memo;
mod profile;
mod pseudonym;
mod scope;
mod simd;
mod snippets;
mod tabular;
mod text;
mod value;

use std::borrow::Cow;
use std::fmt;

pub use action::Action;
pub use corpus::bench_report;
pub use entity::{Counts, Entity};
pub use keys::KeyRules;
pub use media::MediaPolicy;
pub use profile::{
    DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH, MaskConfig, Oversize, PatternConfig, Profile,
    ProfileError, SAFE_HARBOR,
};

use detect::Detectors;
use edit::{Edit, keeps_length, overwrite, splice};
use json::JsonError;
use pseudonym::Pseudonyms;
use scope::Mode;
use value::WalkState;

/// Masks JSON-RPC messages, JSON values and text by one profile. Cheap to
/// share between threads (`&self` everywhere).
pub struct Masker {
    profile: Profile,
    detectors: Detectors,
    pseudonyms: Pseudonyms,
}

/// How an input was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Parsed as JSON and masked by position and key.
    Json,
    /// Could not be read as JSON, so it was masked as text (never passed
    /// through because parsing failed).
    Text(TextReason),
    /// Larger than the profile's `max_bytes`: nothing is returned; the
    /// caller refuses the body (a JSON-RPC error) or streams it elsewhere.
    TooLarge { len: usize, limit: usize },
    /// `mask_value` only: subtrees nested deeper than `max_depth` were
    /// replaced by `null`.
    DeepSubtreesNulled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextReason {
    /// Not valid UTF-8: each invalid byte became `?` before masking.
    InvalidUtf8,
    /// Not JSON, or truncated: the first bad byte.
    NotJson { at: usize },
    /// Nested deeper than `max_depth`.
    TooDeep,
    /// `mask_text`: the caller gave text.
    Plain,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Json => f.write_str("json"),
            Outcome::Text(TextReason::InvalidUtf8) => f.write_str("text (invalid UTF-8)"),
            Outcome::Text(TextReason::NotJson { at }) => write!(f, "text (not JSON at byte {at})"),
            Outcome::Text(TextReason::TooDeep) => f.write_str("text (JSON nested too deep)"),
            Outcome::Text(TextReason::Plain) => f.write_str("text"),
            Outcome::TooLarge { len, limit } => write!(f, "too large ({len} bytes, limit {limit})"),
            Outcome::DeepSubtreesNulled => {
                f.write_str("json (subtrees nested too deep replaced by null)")
            }
        }
    }
}

/// The result of `mask_json_bytes`.
#[derive(Debug, Clone)]
pub struct Masked<'a> {
    /// Borrowed when nothing was masked; empty when `TooLarge`.
    pub bytes: Cow<'a, [u8]>,
    /// The output has the input's length: no re-framing needed.
    pub same_length: bool,
    pub counts: Counts,
    pub outcome: Outcome,
}

/// The result of `mask_json_in_place` and `mask_value`.
#[derive(Debug, Clone)]
pub struct Report {
    /// `mask_json_in_place`: the buffer kept its length (it was edited where
    /// it stands, or not at all). `mask_value`: always true.
    pub same_length: bool,
    pub counts: Counts,
    pub outcome: Outcome,
}

/// The result of `mask_text`.
#[derive(Debug, Clone)]
pub struct MaskedText<'a> {
    /// Borrowed when nothing was masked; empty when `TooLarge`.
    pub text: Cow<'a, str>,
    pub counts: Counts,
    pub outcome: Outcome,
}

/// Edits planned over an input, before they are applied.
struct Plan {
    edits: Vec<Edit>,
    counts: Counts,
    outcome: Outcome,
    /// The input with invalid UTF-8 replaced, when that was needed; the
    /// edits apply to it.
    repaired: Option<Vec<u8>>,
}

impl Masker {
    /// `hmac_key` keys the `hash` action's pseudonyms.
    pub fn new(profile: Profile, hmac_key: Vec<u8>) -> Masker {
        let detectors = Detectors::new(&profile.enabled(), profile.custom_rules());
        Masker {
            profile,
            detectors,
            pseudonyms: Pseudonyms::new(&hmac_key),
        }
    }

    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// Masks a JSON-RPC message (or batch, or any JSON) given as bytes.
    /// Input that is not JSON is masked as text; input over `max_bytes` is
    /// refused.
    pub fn mask_json_bytes<'a>(&self, input: &'a [u8]) -> Masked<'a> {
        let plan = self.plan_bytes(input);
        let source: &[u8] = plan.repaired.as_deref().unwrap_or(input);
        let same_length = keeps_length(&plan.edits);
        let bytes = if matches!(plan.outcome, Outcome::TooLarge { .. }) {
            Cow::Borrowed(&input[..0])
        } else if plan.edits.is_empty() && plan.repaired.is_none() {
            Cow::Borrowed(input)
        } else if same_length {
            let mut out = source.to_vec();
            overwrite(&mut out, &plan.edits);
            Cow::Owned(out)
        } else {
            Cow::Owned(splice(source, &plan.edits))
        };
        let same_length = bytes.len() == input.len();
        Masked {
            bytes,
            same_length,
            counts: plan.counts,
            outcome: plan.outcome,
        }
    }

    /// Like `mask_json_bytes`, writing into `buf`: where it stands when
    /// every replacement keeps its length (no copy), rebuilt otherwise. A
    /// `TooLarge` buffer is cleared.
    pub fn mask_json_in_place(&self, buf: &mut Vec<u8>) -> Report {
        let plan = self.plan_bytes(buf);
        if matches!(plan.outcome, Outcome::TooLarge { .. }) {
            buf.clear();
            return Report {
                same_length: false,
                counts: plan.counts,
                outcome: plan.outcome,
            };
        }
        if let Some(repaired) = plan.repaired {
            *buf = repaired;
        }
        let same_length = keeps_length(&plan.edits);
        if same_length {
            overwrite(buf, &plan.edits);
        } else {
            *buf = splice(buf, &plan.edits);
        }
        Report {
            same_length,
            counts: plan.counts,
            outcome: plan.outcome,
        }
    }

    /// Masks a parsed value where it stands.
    pub fn mask_value(&self, value: &mut serde_json::Value) -> Report {
        let mut state = WalkState::default();
        self.walk_root(value, &mut state);
        let outcome = if state.truncated {
            Outcome::DeepSubtreesNulled
        } else {
            Outcome::Json
        };
        Report {
            same_length: true,
            counts: state.counts,
            outcome,
        }
    }

    /// Masks free text (a log line, an SSE comment, a non-JSON body): label
    /// and column rules, embedded JSON, then the detectors.
    pub fn mask_text<'a>(&self, text: &'a str) -> MaskedText<'a> {
        self.mask_text_under(text, None)
    }

    /// Masks a decoded string value that sits under `rule_key` (the key of
    /// the value, or of an enclosing one: its key rule masks the value
    /// whole), as content. For values read piece by piece (a streamed body)
    /// whose document is never whole in memory.
    pub fn mask_text_under<'a>(&self, text: &'a str, rule_key: Option<&str>) -> MaskedText<'a> {
        if text.len() > self.profile.max_bytes {
            let outcome = Outcome::TooLarge {
                len: text.len(),
                limit: self.profile.max_bytes,
            };
            return MaskedText {
                text: Cow::Borrowed(""),
                counts: Counts::default(),
                outcome,
            };
        }
        let mut edits = Vec::new();
        let mut counts = Counts::default();
        let ctx = text::StrCtx {
            rule: self.rule(Mode::Full, rule_key, None),
            mode: Mode::Full,
            null_ok: false,
            nesting: 0,
        };
        self.plan_string(text, &ctx, &mut edits, &mut counts);
        let masked = if edits.is_empty() {
            Cow::Borrowed(text)
        } else {
            Cow::Owned(edit::apply_str(text, &edits))
        };
        MaskedText {
            text: masked,
            counts,
            outcome: Outcome::Text(TextReason::Plain),
        }
    }

    fn plan_bytes(&self, input: &[u8]) -> Plan {
        let limit = self.profile.max_bytes;
        if input.len() > limit {
            let outcome = Outcome::TooLarge {
                len: input.len(),
                limit,
            };
            return Plan {
                edits: Vec::new(),
                counts: Counts::default(),
                outcome,
                repaired: None,
            };
        }
        let Ok(text) = std::str::from_utf8(input) else {
            let repaired = repair_utf8(input);
            let text = std::str::from_utf8(&repaired).expect("repaired");
            let (edits, counts) = self.plan_as_text(text);
            return Plan {
                edits,
                counts,
                outcome: Outcome::Text(TextReason::InvalidUtf8),
                repaired: Some(repaired),
            };
        };
        match json::plan(self, text, 0) {
            Ok((edits, counts)) => Plan {
                edits,
                counts,
                outcome: Outcome::Json,
                repaired: None,
            },
            Err(e) => {
                let reason = match e {
                    JsonError::Syntax(at) => TextReason::NotJson { at },
                    JsonError::TooDeep => TextReason::TooDeep,
                };
                let (edits, counts) = self.plan_as_text(text);
                Plan {
                    edits,
                    counts,
                    outcome: Outcome::Text(reason),
                    repaired: None,
                }
            }
        }
    }

    /// A body that is not JSON: label rules catch `"ssn": "…"` in broken
    /// JSON, detectors the rest. No JSON is attempted again inside it.
    fn plan_as_text(&self, text: &str) -> (Vec<Edit>, Counts) {
        let mut edits = Vec::new();
        let mut counts = Counts::default();
        self.plan_text(text, Mode::Full, &mut edits, &mut counts);
        (edits, counts)
    }
}

/// The input with every byte of an invalid UTF-8 sequence replaced by `?`
/// (same length, so offsets still match the original).
fn repair_utf8(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    for chunk in input.utf8_chunks() {
        out.extend_from_slice(chunk.valid().as_bytes());
        out.resize(out.len() + chunk.invalid().len(), b'?');
    }
    out
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
