//! Plans of strings already masked in the message being walked. A
//! tools/call result usually carries every row twice (structuredContent and
//! its pretty copy in content[0].text) and columns repeat their values
//! (states, codes, statuses), so the same string under the same rule is
//! often planned again. Masking a string is a function of its text and its
//! context alone, so a repeat reuses the first plan.
//!
//! The cache is direct-mapped (one slot per hash bucket, a collision
//! replaces the slot): constant work per string whatever the input, so no
//! crafted message can make lookups slow. It lives for one walk
//! (`checkout`), and is kept on its thread for the next one.

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

/// The plans of one walk. Slots of earlier walks (another generation) are
/// empty, so a memo is reused without clearing its slots.
#[derive(Default)]
struct Memo {
    /// This walk's generation; slots of other generations are empty.
    walk: u64,
    slots: Vec<Slot>,
    text: String,
    edits: Vec<Edit>,
    counts: Vec<(Entity, u64)>,
}

thread_local! {
    /// Memos of finished walks, for the next ones on this thread (one per
    /// nesting level at most): their slots are allocated once.
    static SPARE: RefCell<Vec<Memo>> = const { RefCell::new(Vec::new()) };
}

/// A walk's memo, taken from this thread's spares and given back when the
/// walk ends. An empty guard (`Default`) remembers nothing.
#[derive(Default)]
pub(crate) struct MemoGuard(Option<Memo>);

/// The memo for a new walk.
pub(crate) fn checkout() -> MemoGuard {
    let mut memo = SPARE.with_borrow_mut(Vec::pop).unwrap_or_default();
    memo.walk = memo.walk.wrapping_add(1).max(1);
    if memo.slots.is_empty() {
        memo.slots = vec![Slot::default(); SLOTS];
    }
    MemoGuard(Some(memo))
}

impl Drop for MemoGuard {
    fn drop(&mut self) {
        if let Some(mut memo) = self.0.take() {
            // forgotten when the walk ends (the buffers are reused as they are)
            memo.text.clear();
            memo.edits.clear();
            memo.counts.clear();
            SPARE.with_borrow_mut(|spare| spare.push(memo));
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

impl MemoGuard {
    /// Plans `s` with `plan` (which pushes edits, adds counts and says
    /// whether the value becomes `null`), or repeats the plan made for the
    /// same string in the same context earlier in this walk.
    #[inline]
    pub(crate) fn plan_once(
        &mut self,
        s: &str,
        ctx: Context,
        edits: &mut Vec<Edit>,
        counts: &mut Counts,
        plan: impl FnOnce(&mut Vec<Edit>, &mut Counts) -> bool,
    ) -> bool {
        let Some(m) = self.0.as_mut().filter(|_| s.len() <= MAX_LEN) else {
            return plan(edits, counts);
        };
        let h = hash(s, &ctx);
        let slot = &m.slots[h as usize % SLOTS];
        if slot.walk == m.walk
            && slot.hash == h
            && slot.mode_full == (ctx.mode == Mode::Full)
            && slot.null_ok == ctx.null_ok
            && m.text.as_bytes().get(slot.text.clone()) == Some(s.as_bytes())
        {
            edits.extend_from_slice(&m.edits[slot.edits.clone()]);
            for (entity, n) in &m.counts[slot.counts.clone()] {
                counts.add(entity, *n);
            }
            return slot.null;
        }
        let before = edits.len();
        let mut own = Counts::default();
        let null = plan(edits, &mut own);
        let text = m.text.len()..m.text.len() + s.len();
        m.text.push_str(s);
        let start = m.edits.len();
        m.edits.extend_from_slice(&edits[before..]);
        let counts_start = m.counts.len();
        // most strings mask nothing: no kinds to go through
        if !own.is_empty() {
            counts.merge(&own);
            m.counts.extend(own.iter());
        }
        m.slots[h as usize % SLOTS] = Slot {
            walk: m.walk,
            hash: h,
            text,
            mode_full: ctx.mode == Mode::Full,
            null_ok: ctx.null_ok,
            null,
            edits: start..m.edits.len(),
            counts: counts_start..m.counts.len(),
        };
        null
    }
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
