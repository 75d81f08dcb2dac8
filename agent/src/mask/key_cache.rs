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

#[derive(Default)]
pub(crate) struct KeyCache<'a> {
    short: FastMap<u128, KeyInfo<'a>>,
    long: FastMap<Box<str>, KeyInfo<'a>>,
}

impl<'a> KeyCache<'a> {
    pub fn get(&mut self, m: &'a Masker, key: &str) -> KeyInfo<'a> {
        match packed(key) {
            Some(k) => *self.short.entry(k).or_insert_with(|| KeyInfo::of(m, key)),
            None => match self.long.get(key) {
                Some(info) => *info,
                None => {
                    let info = KeyInfo::of(m, key);
                    self.long.insert(key.into(), info);
                    info
                }
            },
        }
    }
}

/// A key of at most 15 bytes as one integer: its bytes, then its length in
/// the top byte (so `"a"` and `"a\u0000"` stay apart).
fn packed(key: &str) -> Option<u128> {
    let b = key.as_bytes();
    if b.len() > 15 {
        return None;
    }
    let mut buf = [0u8; 16];
    buf[..b.len()].copy_from_slice(b);
    buf[15] = b.len() as u8;
    Some(u128::from_le_bytes(buf))
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
        assert_eq!(cache.short.len() + cache.long.len(), 11);
    }
}
