//! Plans of strings already masked in the message being walked. A
//! tools/call result usually carries every row twice (structuredContent and
//! its pretty copy in content[0].text) and columns repeat their values
//! (states, codes, statuses), so the same string under the same rule is
//! often planned again. Masking a string is a function of its text and its
//! context alone, so a repeat reuses the first plan.
//!
//! The cache is direct-mapped (one slot per hash bucket, a collision
//! replaces the slot): constant work per string whatever the input, so no
//! crafted message can make lookups slow. It lives for one top-level walk
//! (`begin`) on one thread.

use std::cell::RefCell;
use std::hash::Hasher;
use std::ops::Range;

use super::edit::Edit;
use super::entity::{Counts, Entity};
use super::fasthash::FxHasher;
use super::scope::Mode;

/// Strings longer than this are not remembered (they rarely repeat).
const MAX_LEN: usize = 256;
const SLOTS: usize = 1024;

/// What a string's plan depends on besides its text (strings under a key
/// rule are cheap to plan and not remembered).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Context {
    pub mode: Mode,
    pub null_ok: bool,
}

#[derive(Clone, Default)]
struct Slot {
    /// The walk that filled it; slots of earlier walks are empty.
    walk: u64,
    hash: u64,
    text: Range<usize>,
    mode_full: bool,
    null_ok: bool,
    null: bool,
    edits: Range<usize>,
    counts: Range<usize>,
}

#[derive(Default)]
struct Memo {
    /// The current walk's number; 0 when none is under way.
    walk: u64,
    last_walk: u64,
    /// Which masker the walk is for.
    owner: usize,
    slots: Vec<Slot>,
    text: String,
    edits: Vec<Edit>,
    counts: Vec<(Entity, u64)>,
}

enum Lookup {
    /// No walk under way (or another masker's).
    Off,
    Miss,
    Repeat {
        null: bool,
    },
}

thread_local! {
    static MEMO: RefCell<Memo> = RefCell::new(Memo::default());
}

/// A top-level walk under way; the memo forgets everything when it ends.
pub(crate) struct Walk {
    outer: bool,
}

/// Starts remembering plans for the masker at `owner`, unless a walk is
/// already under way (a nested document shares its message's memo).
pub(crate) fn begin(owner: usize) -> Walk {
    MEMO.with_borrow_mut(|m| {
        if m.walk != 0 {
            return Walk { outer: false };
        }
        m.last_walk += 1;
        m.walk = m.last_walk;
        m.owner = owner;
        m.text.clear();
        m.edits.clear();
        m.counts.clear();
        if m.slots.is_empty() {
            m.slots = vec![Slot::default(); SLOTS];
        }
        Walk { outer: true }
    })
}

impl Drop for Walk {
    fn drop(&mut self) {
        if self.outer {
            MEMO.with_borrow_mut(|m| m.walk = 0);
        }
    }
}

fn hash(s: &str, ctx: &Context) -> u64 {
    let mut h = FxHasher::default();
    h.write(s.as_bytes());
    h.write_usize(s.len());
    h.write_u8(u8::from(ctx.mode == Mode::Full) | u8::from(ctx.null_ok) << 1);
    h.finish()
}

/// Plans `s` with `plan` (which pushes edits, adds counts and says whether
/// the value becomes `null`), or repeats the plan made for the same string
/// in the same context earlier in this walk.
pub(crate) fn plan_once(
    owner: usize,
    s: &str,
    ctx: Context,
    edits: &mut Vec<Edit>,
    counts: &mut Counts,
    plan: impl FnOnce(&mut Vec<Edit>, &mut Counts) -> bool,
) -> bool {
    if s.len() > MAX_LEN {
        return plan(edits, counts);
    }
    let h = hash(s, &ctx);
    let found = MEMO.with_borrow(|m| {
        if m.walk == 0 || m.owner != owner {
            return Lookup::Off;
        }
        let slot = &m.slots[h as usize % SLOTS];
        let same = slot.walk == m.walk
            && slot.hash == h
            && slot.mode_full == (ctx.mode == Mode::Full)
            && slot.null_ok == ctx.null_ok
            && m.text[slot.text.clone()] == *s;
        if !same {
            return Lookup::Miss;
        }
        edits.extend_from_slice(&m.edits[slot.edits.clone()]);
        for (entity, n) in &m.counts[slot.counts.clone()] {
            counts.add(entity, *n);
        }
        Lookup::Repeat { null: slot.null }
    });
    match found {
        Lookup::Off => return plan(edits, counts),
        Lookup::Repeat { null } => return null,
        Lookup::Miss => {}
    }
    let before = edits.len();
    let mut own = Counts::default();
    let null = plan(edits, &mut own);
    counts.merge(&own);
    MEMO.with_borrow_mut(|m| {
        // `plan` may have walked a nested document; this walk still holds.
        if m.walk == 0 || m.owner != owner {
            return;
        }
        let text = m.text.len()..m.text.len() + s.len();
        m.text.push_str(s);
        let start = m.edits.len();
        m.edits.extend_from_slice(&edits[before..]);
        let counts_start = m.counts.len();
        m.counts.extend(own.iter());
        let slot = Slot {
            walk: m.walk,
            hash: h,
            text,
            mode_full: ctx.mode == Mode::Full,
            null_ok: ctx.null_ok,
            null,
            edits: start..m.edits.len(),
            counts: counts_start..m.counts.len(),
        };
        m.slots[h as usize % SLOTS] = slot;
    });
    null
}

#[cfg(test)]
mod tests {
    use crate::mask::{Action, Entity, Masker, Profile};

    const DOC: &[u8] = br#"{"a":"Call (617) 555-0123 now","b":["Call (617) 555-0123 now","x","Call (617) 555-0123 now"],"note":"Call (617) 555-0123 now"}"#;

    #[test]
    fn repeats_are_masked_and_counted_alike() {
        let m = Masker::new(Profile::safe_harbor(), b"k".to_vec());
        let out = m.mask_json_bytes(DOC);
        let text = std::str::from_utf8(&out.bytes).unwrap();
        assert_eq!(text.matches("555-0123").count(), 0, "{text}");
        assert_eq!(out.counts.get(&Entity::Phone), 4);
        let mut v: serde_json::Value = serde_json::from_slice(DOC).unwrap();
        m.mask_value(&mut v);
        assert_eq!(
            v,
            serde_json::from_slice::<serde_json::Value>(&out.bytes).unwrap()
        );
    }

    #[test]
    fn nothing_is_remembered_between_messages_or_maskers() {
        let mut tagging = Profile::safe_harbor();
        tagging.set_action(&Entity::Phone, Action::Tag);
        let tags = Masker::new(tagging, b"k".to_vec());
        let mut without = Profile::safe_harbor();
        without.disable(&Entity::Phone);
        let none = Masker::new(without, b"k".to_vec());
        for _ in 0..2 {
            let tagged = tags.mask_json_bytes(DOC);
            assert_eq!(
                std::str::from_utf8(&tagged.bytes)
                    .unwrap()
                    .matches("[PHONE]")
                    .count(),
                4
            );
            assert_eq!(&*none.mask_json_bytes(DOC).bytes, DOC);
        }
    }
}
