//! What one walk has learned about each object key it has read: the key's
//! own rule, the scope of a content value under it, and whether it is one of
//! the media fields. Rows repeat the same keys, so each is worked out once
//! per message; keys of up to 15 bytes are held packed in one integer, so
//! that finding them again costs no string hashing or comparison.

use super::Masker;
use super::entity::Entity;
use super::fasthash::FastMap;
use super::scope::{Mode, Scope};

/// A content object's fields that decide how its `data`/`blob` are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MediaField {
    Data,
    Blob,
    Type,
    MimeType,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyInfo<'a> {
    /// The key's own rule (`Masker::rule` in full mode, no inherited one).
    pub own_rule: Option<&'a Entity>,
    /// `Scope::Content.child(key)`: what most keys are read under.
    pub in_content: Scope,
    pub media: Option<MediaField>,
}

impl<'a> KeyInfo<'a> {
    const NONE: KeyInfo<'static> = KeyInfo {
        own_rule: None,
        in_content: Scope::Content,
        media: None,
    };

    fn of(m: &'a Masker, key: &str) -> KeyInfo<'a> {
        KeyInfo {
            own_rule: m.rule(Mode::Full, Some(key), None),
            in_content: Scope::Content.child(key),
            media: match key {
                "data" => Some(MediaField::Data),
                "blob" => Some(MediaField::Blob),
                "type" => Some(MediaField::Type),
                "mimeType" => Some(MediaField::MimeType),
                _ => None,
            },
        }
    }
}

/// Slots for packed keys: rows have a few tens of distinct keys, and past
/// half full new ones go to the map instead, so probes stay short whatever
/// a message holds.
const SLOTS: usize = 64;

#[derive(Default)]
pub(crate) struct KeyCache<'a> {
    /// Open addressing over packed keys; 0 marks a free slot (a packed key
    /// holds its length, at least 1).
    packed: Vec<(u128, KeyInfo<'a>)>,
    in_packed: usize,
    long: FastMap<Box<str>, KeyInfo<'a>>,
}

impl<'a> KeyCache<'a> {
    /// Finding a key read before is inlined where it is asked; a key met
    /// for the first time is worked out out of line.
    #[inline]
    pub fn get(&mut self, m: &'a Masker, key: &str) -> KeyInfo<'a> {
        let Some(k) = packed(key) else {
            return self.get_long(m, key);
        };
        // (no slots yet: the first key of the walk)
        let mut i = slot_of(k);
        while let Some(&(slot_key, info)) = self.packed.get(i) {
            if slot_key == k {
                return info;
            }
            if slot_key == 0 {
                break;
            }
            i = (i + 1) % SLOTS;
        }
        self.add_packed(m, key, k)
    }

    /// A packed key not in the slots: into the first free one after its
    /// own, or to the map once the slots are half full.
    #[inline(never)]
    fn add_packed(&mut self, m: &'a Masker, key: &str, k: u128) -> KeyInfo<'a> {
        if self.packed.is_empty() {
            self.packed = vec![(0, KeyInfo::NONE); SLOTS];
        }
        if self.in_packed >= SLOTS / 2 {
            return self.get_long(m, key);
        }
        let mut i = slot_of(k);
        while self.packed[i].0 != 0 {
            i = (i + 1) % SLOTS;
        }
        let info = KeyInfo::of(m, key);
        self.packed[i] = (k, info);
        self.in_packed += 1;
        info
    }

    fn get_long(&mut self, m: &'a Masker, key: &str) -> KeyInfo<'a> {
        if let Some(info) = self.long.get(key) {
            return *info;
        }
        let info = KeyInfo::of(m, key);
        self.long.insert(key.into(), info);
        info
    }
}

/// Where the probe for packed key `k` starts.
fn slot_of(k: u128) -> usize {
    let folded = (k as u64) ^ ((k >> 64) as u64);
    (folded.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize
}

/// A key of 1 to 15 bytes as one integer: its bytes, then its length in the
/// top byte (so `"a"` and `"a\u0000"` stay apart).
#[inline]
fn packed(key: &str) -> Option<u128> {
    let b = key.as_bytes();
    let n = b.len();
    // Loads that may overlap, shifted so each byte lands at its own offset
    // once (no copy into a buffer).
    let (lo, hi) = match n {
        // bytes 0, n/2 and n-1 are every byte of a key this short
        1..=3 => (
            u64::from(b[0])
                | u64::from(b[n / 2]) << (8 * (n / 2))
                | u64::from(b[n - 1]) << (8 * (n - 1)),
            0,
        ),
        4..=7 => {
            let first = u32::from_le_bytes(b[..4].try_into().expect("4 bytes"));
            let last = u32::from_le_bytes(b[n - 4..].try_into().expect("4 bytes"));
            (u64::from(first) | u64::from(last) << (8 * (n - 4)), 0)
        }
        8..=15 => {
            let lo = u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
            let last = u64::from_le_bytes(b[n - 8..].try_into().expect("8 bytes"));
            // the last n - 8 bytes of `last` are bytes 8..n
            (lo, last.checked_shr(8 * (16 - n) as u32).unwrap_or(0))
        }
        // the empty key and longer ones go to the map
        _ => return None,
    };
    Some(u128::from(lo) | u128::from(hi) << 64 | (n as u128) << 120)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::Profile;

    #[test]
    fn packing_keeps_keys_apart() {
        assert_ne!(packed("a"), packed("a\u{0}"));
        assert_ne!(packed("ab"), packed("ba"));
        assert_eq!(
            packed("fifteen-bytes!!").map(|k| (k >> 120) as u8),
            Some(15)
        );
        assert_eq!(packed("sixteen-bytes!!!"), None);
        // every length packs to its bytes, zero-padded, and its length
        let text = "abcdefghijklmno";
        assert_eq!(packed(""), None);
        for n in 1..=15 {
            let mut want = [0u8; 16];
            want[..n].copy_from_slice(&text.as_bytes()[..n]);
            want[15] = n as u8;
            assert_eq!(packed(&text[..n]), Some(u128::from_le_bytes(want)), "{n}");
        }
    }

    #[test]
    fn short_and_long_keys_get_the_masker_answers() {
        let m = Masker::new(Profile::safe_harbor(), b"k".to_vec());
        let mut cache = KeyCache::default();
        for key in [
            "ssn",
            "patient_name",
            "emergency_contact_phone",
            "diagnosis",
            "_meta",
            "outputSchema",
            "mimeType",
            "data",
            "a\u{0}",
        ] {
            for _ in 0..2 {
                let info = cache.get(&m, key);
                assert_eq!(info.own_rule, m.rule(Mode::Full, Some(key), None), "{key}");
                assert_eq!(info.in_content, Scope::Content.child(key), "{key}");
            }
        }
        assert_eq!(cache.get(&m, "blob").media, Some(MediaField::Blob));
        assert_eq!(cache.get(&m, "datum").media, None);
        assert_eq!(cache.in_packed + cache.long.len(), 11);
    }

    #[test]
    fn keys_past_the_slots_spill_to_the_map_and_are_still_found() {
        let m = Masker::new(Profile::safe_harbor(), b"k".to_vec());
        let mut cache = KeyCache::default();
        let keys: Vec<String> = (0..3 * SLOTS)
            .map(|i| match i % 3 {
                0 => format!("ssn{i}"),
                1 => format!("phone_{i}"),
                _ => format!("x{i}"),
            })
            .collect();
        for _ in 0..2 {
            for key in &keys {
                let info = cache.get(&m, key);
                assert_eq!(info.own_rule, m.rule(Mode::Full, Some(key), None), "{key}");
            }
        }
        assert_eq!(cache.in_packed, SLOTS / 2);
        assert_eq!(cache.in_packed + cache.long.len(), keys.len());
    }
}
