//! Keyed pseudonyms for the `hash` action: HMAC-SHA256 over the entity kind
//! and a normalised value, so the same person or number gets the same
//! pseudonym under one key and nothing can be linked across keys.

use aws_lc_rs::hmac;

use super::entity::Entity;

/// Hex digits of the MAC shown in a pseudonym (32 bits: collisions stay
/// rare across the tens of thousands of values one deployment sees).
const SHOWN_HEX: usize = 8;

pub(crate) struct Pseudonyms {
    key: hmac::Key,
}

impl Pseudonyms {
    pub fn new(secret: &[u8]) -> Pseudonyms {
        Pseudonyms {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    /// `[NAME:3fa2c1d4]`.
    pub fn pseudonym(&self, entity: &Entity, value: &str) -> String {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(entity.name().as_bytes());
        ctx.update(&[0]);
        ctx.update(normalise(entity, value).as_bytes());
        let tag = ctx.sign();
        let mut out = String::with_capacity(SHOWN_HEX + entity.name().len() + 3);
        out.push('[');
        out.push_str(&entity.name().to_ascii_uppercase());
        out.push(':');
        for b in &tag.as_ref()[..SHOWN_HEX / 2] {
            out.push_str(&format!("{b:02x}"));
        }
        out.push(']');
        out
    }
}

/// The form two spellings of one value share: digits only for numbers
/// (`(617) 555-0100` and `617.555.0100`), case- and space-folded otherwise.
fn normalise(entity: &Entity, value: &str) -> String {
    let numeric = matches!(
        entity,
        Entity::Ssn | Entity::Phone | Entity::Card | Entity::Npi | Entity::Zip | Entity::Account
    );
    if numeric {
        let digits: String = value.chars().filter(char::is_ascii_digit).collect();
        if !digits.is_empty() {
            return digits;
        }
    }
    value
        .split_whitespace()
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_per_value_and_key() {
        let p = Pseudonyms::new(b"k1");
        let a = p.pseudonym(&Entity::Phone, "(617) 555-0100");
        assert_eq!(a, p.pseudonym(&Entity::Phone, "617.555.0100"));
        assert!(
            a.starts_with("[PHONE:") && a.len() == "[PHONE:]".len() + SHOWN_HEX,
            "{a}"
        );
        assert_eq!(
            p.pseudonym(&Entity::Name, "John  Smith"),
            p.pseudonym(&Entity::Name, "john smith")
        );
        assert_ne!(
            p.pseudonym(&Entity::Name, "John Smith"),
            p.pseudonym(&Entity::Name, "Jane Smith")
        );
        let q = Pseudonyms::new(b"k2");
        assert_ne!(a, q.pseudonym(&Entity::Phone, "617-555-0100"));
        // The kind is part of the input: one value, two kinds, two pseudonyms.
        assert_ne!(
            p.pseudonym(&Entity::Mrn, "12345678")[5..],
            p.pseudonym(&Entity::Account, "12345678")[9..]
        );
    }
}
