//! The kinds of identifier the engine knows, and the tallies of what it
//! masked (one per outcome, for the audit record).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::ser::{Serialize, SerializeMap, Serializer};

/// One HIPAA Safe Harbor identifier kind (45 CFR 164.514(b)(2)), or a
/// profile's own rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Entity {
    Ssn,
    Phone,
    Email,
    /// Any date element more specific than the year.
    Date,
    /// Ages over 89.
    Age,
    Zip,
    /// Street addresses, cities and other sub-state geography.
    Address,
    Name,
    Mrn,
    /// Medicare beneficiary identifiers and other health-plan member numbers.
    Mbi,
    Account,
    Card,
    Iban,
    Npi,
    Dea,
    /// Certificate and licence numbers (driver licences among them).
    License,
    Vin,
    /// Vehicle licence plates.
    Plate,
    /// Device identifiers and serial numbers.
    Device,
    Mac,
    Ip,
    Url,
    /// Image content (full-face photographs and comparable images), counted
    /// when a profile's `images` policy drops or replaces one.
    Image,
    /// Audio content (voice prints), counted likewise under `audio`.
    Audio,
    /// A profile's own pattern, by the name the profile gives it.
    Custom(Arc<str>),
}

/// Number of built-in kinds (everything but `Custom`).
pub(crate) const BUILTIN_COUNT: usize = 24;

impl Entity {
    pub const BUILTIN: [Entity; BUILTIN_COUNT] = [
        Entity::Ssn,
        Entity::Phone,
        Entity::Email,
        Entity::Date,
        Entity::Age,
        Entity::Zip,
        Entity::Address,
        Entity::Name,
        Entity::Mrn,
        Entity::Mbi,
        Entity::Account,
        Entity::Card,
        Entity::Iban,
        Entity::Npi,
        Entity::Dea,
        Entity::License,
        Entity::Vin,
        Entity::Plate,
        Entity::Device,
        Entity::Mac,
        Entity::Ip,
        Entity::Url,
        Entity::Image,
        Entity::Audio,
    ];

    /// The lower-case name used in config, counts and `tag` output.
    pub fn name(&self) -> &str {
        match self {
            Entity::Ssn => "ssn",
            Entity::Phone => "phone",
            Entity::Email => "email",
            Entity::Date => "date",
            Entity::Age => "age",
            Entity::Zip => "zip",
            Entity::Address => "address",
            Entity::Name => "name",
            Entity::Mrn => "mrn",
            Entity::Mbi => "mbi",
            Entity::Account => "account",
            Entity::Card => "card",
            Entity::Iban => "iban",
            Entity::Npi => "npi",
            Entity::Dea => "dea",
            Entity::License => "license",
            Entity::Vin => "vin",
            Entity::Plate => "plate",
            Entity::Device => "device",
            Entity::Mac => "mac",
            Entity::Ip => "ip",
            Entity::Url => "url",
            Entity::Image => "image",
            Entity::Audio => "audio",
            Entity::Custom(name) => name,
        }
    }

    /// Position in `BUILTIN`, `None` for custom rules (a match, not a
    /// search: this runs once per masked value).
    #[inline]
    pub(crate) fn index(&self) -> Option<usize> {
        Some(match self {
            Entity::Ssn => 0,
            Entity::Phone => 1,
            Entity::Email => 2,
            Entity::Date => 3,
            Entity::Age => 4,
            Entity::Zip => 5,
            Entity::Address => 6,
            Entity::Name => 7,
            Entity::Mrn => 8,
            Entity::Mbi => 9,
            Entity::Account => 10,
            Entity::Card => 11,
            Entity::Iban => 12,
            Entity::Npi => 13,
            Entity::Dea => 14,
            Entity::License => 15,
            Entity::Vin => 16,
            Entity::Plate => 17,
            Entity::Device => 18,
            Entity::Mac => 19,
            Entity::Ip => 20,
            Entity::Url => 21,
            Entity::Image => 22,
            Entity::Audio => 23,
            Entity::Custom(_) => return None,
        })
    }

    /// A built-in name (`ssn`) or `custom:NAME`.
    pub fn parse(s: &str) -> Option<Entity> {
        if let Some(name) = s.strip_prefix("custom:") {
            return (!name.is_empty()).then(|| Entity::Custom(name.into()));
        }
        Entity::BUILTIN.iter().find(|e| e.name() == s).cloned()
    }
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entity::Custom(name) => write!(f, "custom:{name}"),
            e => f.write_str(e.name()),
        }
    }
}

/// How many values of each kind one call masked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    builtin: [u64; BUILTIN_COUNT],
    custom: BTreeMap<Arc<str>, u64>,
}

impl Counts {
    #[inline]
    pub fn add(&mut self, entity: &Entity, n: u64) {
        match entity.index() {
            Some(i) => self.builtin[i] += n,
            None => {
                if let Entity::Custom(name) = entity {
                    *self.custom.entry(name.clone()).or_default() += n;
                }
            }
        }
    }

    pub fn get(&self, entity: &Entity) -> u64 {
        match (entity.index(), entity) {
            (Some(i), _) => self.builtin[i],
            (None, Entity::Custom(name)) => self.custom.get(name).copied().unwrap_or(0),
            (None, _) => 0,
        }
    }

    pub fn total(&self) -> u64 {
        self.builtin.iter().sum::<u64>() + self.custom.values().sum::<u64>()
    }

    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }

    pub fn merge(&mut self, other: &Counts) {
        for (a, b) in self.builtin.iter_mut().zip(other.builtin) {
            *a += b;
        }
        for (name, n) in &other.custom {
            *self.custom.entry(name.clone()).or_default() += n;
        }
    }

    /// The kinds with a non-zero count, built-ins first.
    pub fn iter(&self) -> impl Iterator<Item = (Entity, u64)> + '_ {
        let builtin = Entity::BUILTIN
            .iter()
            .zip(&self.builtin)
            .filter(|(_, n)| **n > 0)
            .map(|(e, n)| (e.clone(), *n));
        let custom = self
            .custom
            .iter()
            .map(|(name, n)| (Entity::Custom(name.clone()), *n));
        builtin.chain(custom)
    }
}

impl fmt::Display for Counts {
    /// `name=2 ssn=1`, or `none`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (entity, n) in self.iter() {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            write!(f, "{entity}={n}")?;
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}

impl Serialize for Counts {
    /// A map from kind name to count, for the audit record.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (entity, n) in self.iter() {
            map.serialize_entry(&entity.to_string(), &n)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for e in Entity::BUILTIN {
            assert_eq!(Entity::parse(e.name()), Some(e.clone()));
            assert_eq!(e.index().map(|i| &Entity::BUILTIN[i]), Some(&e));
        }
        assert_eq!(
            Entity::parse("custom:acme-mrn"),
            Some(Entity::Custom("acme-mrn".into()))
        );
        assert_eq!(Entity::Custom("x".into()).to_string(), "custom:x");
        assert_eq!(Entity::parse("custom:"), None);
        assert_eq!(Entity::parse("nope"), None);
    }

    #[test]
    fn counts_tally_and_print() {
        let mut c = Counts::default();
        assert_eq!(c.to_string(), "none");
        c.add(&Entity::Ssn, 2);
        c.add(&Entity::Custom("k".into()), 1);
        let mut d = Counts::default();
        d.add(&Entity::Name, 1);
        d.add(&Entity::Ssn, 1);
        c.merge(&d);
        assert_eq!(c.get(&Entity::Ssn), 3);
        assert_eq!(c.total(), 5);
        assert_eq!(c.to_string(), "ssn=3 name=1 custom:k=1");
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"ssn":3,"name":1,"custom:k":1}"#
        );
    }
}
