//! Masking a parsed `serde_json::Value` in place, by the same scopes, key
//! rules, media policies and string masking as the byte walker in `json`.

use serde_json::{Map, Value};

use super::Masker;
use super::action::plan_number;
use super::edit::apply_str;
use super::entity::{Counts, Entity};
use super::keys::applies;
use super::media::{Media, MediaPolicy};
use super::scope::{Mode, Scope};
use super::text::StrCtx;

/// What a walk found beyond its counts.
#[derive(Debug, Default)]
pub(crate) struct WalkState {
    pub counts: Counts,
    /// Subtrees nested deeper than the profile allows were replaced by null.
    pub truncated: bool,
}

impl Masker {
    pub(crate) fn walk_root(&self, v: &mut Value, state: &mut WalkState) {
        let rpc = match v {
            Value::Object(m) => m.contains_key("jsonrpc"),
            Value::Array(items) => items.iter().any(|i| i.get("jsonrpc").is_some()),
            _ => false,
        };
        self.walk(
            v,
            if rpc { Scope::Message } else { Scope::Content },
            None,
            0,
            state,
            false,
        );
    }

    /// Masks `v`, whose key rule is `rule`. Returns true when `v` (an image
    /// or audio item in an array) is to be dropped from that array.
    fn walk(
        &self,
        v: &mut Value,
        scope: Scope,
        rule: Option<&Entity>,
        depth: usize,
        state: &mut WalkState,
        in_array: bool,
    ) -> bool {
        // Everything under a protocol field is protocol.
        let Some(mode) = scope.mode() else {
            return false;
        };
        if depth >= self.profile.max_depth && matches!(v, Value::Object(_) | Value::Array(_)) {
            *v = Value::Null;
            state.truncated = true;
            return false;
        }
        match v {
            Value::String(s) => {
                let ctx = StrCtx {
                    rule,
                    mode,
                    null_ok: true,
                    nesting: 0,
                };
                let mut edits = Vec::new();
                if self.plan_string(s, &ctx, &mut edits, &mut state.counts) {
                    *v = Value::Null;
                } else if !edits.is_empty() {
                    *s = apply_str(s, &edits);
                }
            }
            Value::Number(n) => {
                if let Some(entity) = rule.filter(|_| mode == Mode::Full) {
                    let token = n.to_string();
                    if applies(entity, &token) {
                        state.counts.add(entity, 1);
                        let edit = plan_number(
                            self.profile.action(entity),
                            entity,
                            &token,
                            0..token.len(),
                            &self.pseudonyms,
                        );
                        *v = serde_json::from_str(&apply_str(&token, &[edit]))
                            .unwrap_or(Value::Null);
                    }
                }
            }
            Value::Array(items) => {
                let element = scope.element();
                let dropped: Vec<bool> = items
                    .iter_mut()
                    .map(|item| self.walk(item, element, rule, depth + 1, state, true))
                    .collect();
                let mut flags = dropped.into_iter();
                items.retain(|_| !flags.next().unwrap_or(false));
            }
            Value::Object(map) => {
                return self.walk_object(map, scope, rule, depth, state, in_array);
            }
            Value::Bool(_) | Value::Null => {}
        }
        false
    }

    /// An object's fields; image and audio items get the media policy (true:
    /// drop it), textual blobs are masked, other blobs left alone.
    fn walk_object(
        &self,
        map: &mut Map<String, Value>,
        scope: Scope,
        rule: Option<&Entity>,
        depth: usize,
        state: &mut WalkState,
        in_array: bool,
    ) -> bool {
        let item_type = map.get("type").and_then(Value::as_str).map(str::to_owned);
        let mime = map
            .get("mimeType")
            .and_then(Value::as_str)
            .map(str::to_owned);
        for (k, child) in map.iter_mut() {
            let child_scope = scope.child(k);
            let child_rule = child_scope
                .mode()
                .and_then(|mode| self.rule(mode, Some(k), rule));
            let is_media_field =
                scope.is_content() && child.is_string() && (k == "data" || k == "blob");
            if is_media_field {
                let kind = Media::classify(item_type.as_deref(), mime.as_deref(), k == "blob");
                let policy = match kind {
                    Media::Image => self.profile.images,
                    Media::Audio => self.profile.audio,
                    Media::TextBlob => {
                        let Value::String(b64) = child else {
                            unreachable!("checked")
                        };
                        if let Some(masked) = self.mask_blob(b64, 0, &mut state.counts) {
                            *b64 = masked;
                        }
                        continue;
                    }
                    Media::OpaqueBlob => continue,
                    Media::None => {
                        self.walk(child, child_scope, child_rule, depth + 1, state, false);
                        continue;
                    }
                };
                if policy == MediaPolicy::Keep {
                    continue;
                }
                state.counts.add(&kind.entity().expect("image or audio"), 1);
                if policy == MediaPolicy::Drop && in_array {
                    return true;
                }
                let placeholder: Value =
                    serde_json::from_str(kind.placeholder()).expect("valid placeholder");
                let Value::Object(p) = placeholder else {
                    unreachable!("an object")
                };
                *map = p;
                return false;
            }
            self.walk(child, child_scope, child_rule, depth + 1, state, false);
        }
        false
    }
}
