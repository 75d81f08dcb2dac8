//! Masking one decoded string: a key rule masks it whole; JSON inside it is
//! walked like any document; otherwise table columns and `label:` values
//! named by key rules are masked whole and the detectors find the rest.
//! The result is a list of edits over the string's own bytes.

use super::Masker;
use super::action::Action;
use super::detect::{Hits, resolve};
use super::edit::Edit;
use super::entity::{Counts, Entity};
use super::json;
use super::keys::applies;
use super::scope::Mode;
use super::{labels, tabular};

/// How deep JSON may nest inside strings (a document in a string in a
/// document ...) before inner documents are treated as plain text.
pub(crate) const MAX_EMBEDDED: usize = 4;

/// Where a string sits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StrCtx<'a> {
    /// The kind a key rule gives the whole value: its own key's, or an
    /// enclosing key's (see `Masker::rule`).
    pub rule: Option<&'a Entity>,
    pub mode: Mode,
    /// The string is a whole JSON value, so `null` can replace it.
    pub null_ok: bool,
    /// How many documents enclose this one (0 for the outer message).
    pub nesting: usize,
}

impl Masker {
    /// The kind a key rule gives the value under `key` in a scope masked
    /// with `mode`: the key's own rule, else `inherited` from an enclosing
    /// key (everything under `"address": {…}` is an address); only enabled
    /// kinds count.
    pub(crate) fn rule<'s>(
        &'s self,
        mode: Mode,
        key: Option<&str>,
        inherited: Option<&'s Entity>,
    ) -> Option<&'s Entity> {
        if mode != Mode::Full {
            return None;
        }
        let own = key.and_then(|k| self.profile.keys.lookup(k));
        own.or(inherited).filter(|e| self.profile.is_enabled(e))
    }

    /// Pushes the edits that mask `s` and counts what they mask. Returns
    /// true when the whole value is to become JSON `null` instead.
    pub(crate) fn plan_string(
        &self,
        s: &str,
        ctx: &StrCtx<'_>,
        edits: &mut Vec<Edit>,
        counts: &mut Counts,
    ) -> bool {
        if s.is_empty() {
            return false;
        }
        if let Some(entity) = ctx.rule
            && applies(entity, s)
        {
            counts.add(entity, 1);
            let action = self.profile.action(entity);
            if action == Action::Null && ctx.null_ok {
                return true;
            }
            action.plan(entity, s, 0..s.len(), &self.pseudonyms, edits);
            return false;
        }
        if ctx.mode == Mode::Full
            && ctx.nesting < MAX_EMBEDDED
            && looks_like_json(s)
            && let Ok((inner, inner_counts)) = json::plan(self, s, ctx.nesting + 1)
        {
            edits.extend(inner);
            counts.merge(&inner_counts);
            return false;
        }
        self.plan_text(s, ctx.mode, edits, counts);
        false
    }

    /// Free text: column and label rules first, detectors for the rest.
    pub(crate) fn plan_text(
        &self,
        s: &str,
        mode: Mode,
        edits: &mut Vec<Edit>,
        counts: &mut Counts,
    ) {
        let mut claimed = Hits::new();
        if mode == Mode::Full {
            tabular::find(s, &self.profile.keys, &mut claimed);
            labels::find(s, &self.profile.keys, &mut claimed);
            claimed.retain(|h| self.profile.is_enabled(&h.entity));
            resolve(&mut claimed);
        }
        // Detectors run only between claimed values: a table whose ruled
        // columns are masked whole needs no second look at those cells.
        let mut found = Hits::new();
        let mut from = 0;
        let gap_ends = claimed
            .iter()
            .map(|c| (c.range.start, c.range.end))
            .chain(std::iter::once((s.len(), s.len())));
        for (start, end) in gap_ends {
            if start > from {
                let before = found.len();
                self.detectors.find(&s[from..start], &mut found);
                found[before..]
                    .iter_mut()
                    .for_each(|h| h.range = h.range.start + from..h.range.end + from);
            }
            from = from.max(end);
        }
        resolve(&mut found);
        for hit in merge_unclaimed(claimed, found) {
            counts.add(&hit.entity, 1);
            self.profile.action(&hit.entity).plan(
                &hit.entity,
                s,
                hit.range,
                &self.pseudonyms,
                edits,
            );
        }
    }
}

/// Both lists sorted and overlap-free; the result keeps every claimed hit
/// and the found hits that overlap none, in order.
fn merge_unclaimed(claimed: Hits, found: Hits) -> Hits {
    if claimed.is_empty() {
        return found;
    }
    let mut out = Hits::with_capacity(claimed.len() + found.len());
    let mut c = claimed.into_iter().peekable();
    for hit in found {
        while let Some(next) = c.next_if(|x| x.range.end <= hit.range.start) {
            out.push(next);
        }
        let overlaps = c.peek().is_some_and(|x| x.range.start < hit.range.end);
        if !overlaps {
            out.push(hit);
        }
    }
    out.extend(c);
    out
}

/// Starts with `{` or `[` and ends with `}` or `]`, ignoring whitespace.
pub(crate) fn looks_like_json(s: &str) -> bool {
    let t = s.trim_ascii();
    matches!(
        (t.as_bytes().first(), t.as_bytes().last()),
        (Some(b'{'), Some(b'}')) | (Some(b'['), Some(b']'))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::detect::Hit;

    #[test]
    fn merge_keeps_claims_over_detections() {
        let h = |a: usize, b: usize, e: Entity| Hit::new(a..b, e);
        let claimed = vec![h(5, 10, Entity::Name), h(20, 25, Entity::Date)];
        let found = vec![
            h(0, 3, Entity::Ssn),
            h(8, 12, Entity::Phone),
            h(12, 14, Entity::Email),
            h(24, 30, Entity::Zip),
            h(31, 32, Entity::Ip),
        ];
        assert_eq!(
            merge_unclaimed(claimed, found),
            vec![
                h(0, 3, Entity::Ssn),
                h(5, 10, Entity::Name),
                h(12, 14, Entity::Email),
                h(20, 25, Entity::Date),
                h(31, 32, Entity::Ip)
            ]
        );
    }

    #[test]
    fn json_shape() {
        assert!(looks_like_json(" {\"a\":1}\n"));
        assert!(looks_like_json("[1]"));
        assert!(!looks_like_json("{not closed"));
        assert!(!looks_like_json("plain"));
    }
}
