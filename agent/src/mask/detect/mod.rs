//! Detectors: each finds one family of identifiers in a decoded string and
//! reports byte spans; `Detectors::find` runs the enabled ones and
//! `resolve` keeps one hit per stretch of text.

pub(crate) mod address;
pub(crate) mod checksum;
pub(crate) mod dates;
pub(crate) mod idents;
pub(crate) mod names;
pub(crate) mod network;
pub(crate) mod numbers;
pub(crate) mod scan;

use std::cell::RefCell;
use std::ops::Range;

use regex::Regex;

use super::entity::{BUILTIN_COUNT, Entity};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hit {
    pub range: Range<usize>,
    pub entity: Entity,
}

impl Hit {
    pub fn new(range: Range<usize>, entity: Entity) -> Hit {
        Hit { range, entity }
    }
}

pub(crate) type Hits = Vec<Hit>;

/// A profile's own pattern: every match is an `entity`.
#[derive(Debug, Clone)]
pub(crate) struct CustomRule {
    pub entity: Entity,
    pub regex: Regex,
}

#[derive(Debug, Clone)]
pub(crate) struct Detectors {
    enabled: [bool; BUILTIN_COUNT],
    custom: Vec<CustomRule>,
}

impl Detectors {
    pub fn new(enabled: &[Entity], custom: Vec<CustomRule>) -> Detectors {
        let mut on = [false; BUILTIN_COUNT];
        for e in enabled {
            if let Some(i) = e.index() {
                on[i] = true;
            }
        }
        let detectors = Detectors {
            enabled: on,
            custom,
        };
        // Their tables are built when the masker is, once per process, not
        // while the first response waits.
        use Entity::*;
        if detectors.on(&[Name]) {
            names::prepare();
        }
        if detectors.on(&[Mrn, Account, Mbi, License, Plate, Device, Ssn]) {
            idents::prepare();
        }
        if detectors.on(&[Address, Zip]) {
            // its streets check the English word list too
            address::prepare();
            names::prepare();
        }
        detectors
    }

    fn on(&self, entities: &[Entity]) -> bool {
        entities
            .iter()
            .any(|e| e.index().is_some_and(|i| self.enabled[i]))
    }

    /// All hits of the enabled detectors in `text`, overlapping ones
    /// included (see `resolve`).
    pub fn find(&self, text: &str, out: &mut Hits) {
        SCRATCH.with_borrow_mut(|scratch| self.find_with(text, scratch, out));
    }

    fn find_with(&self, text: &str, scratch: &mut Scratch, out: &mut Hits) {
        let b = text.as_bytes();
        let seen = ByteClasses::of(b);
        let has_digit = seen.has(DIGIT);
        let has_upper = seen.has(UPPER);
        let Scratch {
            groups,
            words,
            described,
        } = scratch;
        groups.clear();
        words.clear();
        // Words matter only where a capital may stand (names, month
        // names); without one, the digit groups alone.
        if has_upper {
            scan::words_and_digits(text, words, groups);
        } else if has_digit {
            scan::digit_groups(b, groups);
        }
        let (groups, words) = (&groups[..], &words[..]);
        use Entity::*;
        if has_digit && self.on(&[Ssn, Phone, Card, Npi, Ip]) {
            numbers::find(text, groups, out);
        }
        if has_digit && self.on(&[Date, Age]) {
            dates::find(text, groups, words, out);
        }
        if has_digit
            && self.on(&[
                Mbi, Vin, Dea, Iban, Mrn, Account, License, Plate, Device, Ssn,
            ])
        {
            idents::find(text, groups, out);
        }
        if (has_digit || has_upper) && self.on(&[Address, Zip]) {
            address::find(text, groups, out);
        }
        if seen.has(NETWORK) && self.on(&[Email, Url, Mac, Ip]) {
            network::find(text, &seen, out);
        }
        if has_upper && self.on(&[Name]) {
            names::find(text, words, described, out);
        }
        for rule in &self.custom {
            out.extend(
                rule.regex
                    .find_iter(text)
                    .filter(|m| !m.is_empty())
                    .map(|m| Hit::new(m.range(), rule.entity.clone())),
            );
        }
        out.retain(|h| h.entity.index().is_none_or(|i| self.enabled[i]));
    }
}

/// Token buffers reused across calls on one thread: detection runs once per
/// string, and most strings are short.
#[derive(Default)]
struct Scratch {
    groups: Vec<Range<usize>>,
    words: Vec<Range<usize>>,
    described: Vec<names::Word>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

const DIGIT: u8 = 1;
/// Upper-case ASCII or any non-ASCII (which may be a capital).
const UPPER: u8 = 2;
/// What emails need.
pub(crate) const AT: u8 = 4;
/// What URL schemes, IPv6 addresses and one kind of MAC need.
pub(crate) const COLON: u8 = 8;
/// What the other kind of MAC needs.
pub(crate) const DASH: u8 = 16;
/// What `www.` addresses need.
pub(crate) const DOT: u8 = 32;
/// What some network identifier needs.
const NETWORK: u8 = AT | COLON | DASH | DOT;

/// Which classes of byte a text holds, from one pass over it.
pub(crate) struct ByteClasses(u8);

impl ByteClasses {
    fn of(b: &[u8]) -> ByteClasses {
        static TABLE: [u8; 256] = {
            let mut t = [0u8; 256];
            let mut i = 0;
            while i < 256 {
                let c = i as u8;
                t[i] = if c.is_ascii_digit() {
                    DIGIT
                } else if c.is_ascii_uppercase() || c >= 0x80 {
                    UPPER
                } else if c == b'@' {
                    AT
                } else if c == b':' {
                    COLON
                } else if c == b'-' {
                    DASH
                } else if c == b'.' {
                    DOT
                } else {
                    0
                };
                i += 1;
            }
            t
        };
        let mut seen = 0u8;
        for chunk in b.chunks(64) {
            seen |= chunk.iter().fold(0, |acc, &c| acc | TABLE[c as usize]);
            if seen == DIGIT | UPPER | NETWORK {
                break;
            }
        }
        ByteClasses(seen)
    }

    /// Whether the text holds a byte of any of `classes`.
    pub(crate) fn has(&self, classes: u8) -> bool {
        self.0 & classes != 0
    }
}

/// Which of two hits over the same bytes wins: a profile's own rules, then
/// check-digit formats, then the looser ones.
fn rank(e: &Entity) -> u8 {
    match e {
        Entity::Custom(_) => 0,
        Entity::Ssn
        | Entity::Card
        | Entity::Iban
        | Entity::Npi
        | Entity::Dea
        | Entity::Mbi
        | Entity::Vin => 1,
        Entity::Email | Entity::Url | Entity::Ip | Entity::Mac => 2,
        Entity::Phone | Entity::Date | Entity::Age | Entity::Zip => 3,
        Entity::Mrn | Entity::Account | Entity::License | Entity::Plate | Entity::Device => 4,
        Entity::Address | Entity::Name | Entity::Image | Entity::Audio => 5,
    }
}

/// Drops overlapping hits, keeping the most specific kind first, then the
/// longest span, then the earliest; returns them sorted by position. (A
/// validated MAC beats the "name" its first letters look like.)
pub(crate) fn resolve(hits: &mut Hits) {
    if hits.len() < 2 {
        return;
    }
    // Hits that do not overlap (a table's cells, most detectors' output)
    // only need ordering. The sort is stable, so hits that start together
    // keep the order the full sort below relies on.
    if !hits
        .windows(2)
        .all(|w| w[0].range.start <= w[1].range.start)
    {
        hits.sort_by_key(|h| h.range.start);
    }
    let apart = |w: &[Hit]| !w[0].range.is_empty() && w[0].range.end <= w[1].range.start;
    if hits.windows(2).all(apart) && !hits[hits.len() - 1].range.is_empty() {
        return;
    }
    hits.sort_by(|a, b| {
        (
            rank(&a.entity),
            std::cmp::Reverse(a.range.len()),
            a.range.start,
        )
            .cmp(&(
                rank(&b.entity),
                std::cmp::Reverse(b.range.len()),
                b.range.start,
            ))
    });
    let mut kept: Vec<Hit> = Vec::with_capacity(hits.len());
    for h in hits.drain(..) {
        // `kept` stays sorted by start, so only the neighbours can overlap.
        let at = kept.partition_point(|k| k.range.start < h.range.start);
        let clear_before = at == 0 || kept[at - 1].range.end <= h.range.start;
        let clear_after = at == kept.len() || h.range.end <= kept[at].range.start;
        if clear_before && clear_after {
            kept.insert(at, h);
        }
    }
    *hits = kept;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlaps_keep_most_specific_then_longest() {
        let mut hits = vec![
            Hit::new(5..10, Entity::Name),
            Hit::new(0..4, Entity::Phone),
            Hit::new(0..8, Entity::Address),
            Hit::new(12..14, Entity::Zip),
            Hit::new(12..14, Entity::Custom("x".into())),
        ];
        resolve(&mut hits);
        assert_eq!(
            hits,
            vec![
                Hit::new(0..4, Entity::Phone),
                Hit::new(5..10, Entity::Name),
                Hit::new(12..14, Entity::Custom("x".into()))
            ]
        );
    }

    #[test]
    fn disabled_kinds_are_not_reported() {
        let d = Detectors::new(&[Entity::Email], Vec::new());
        let mut out = Hits::new();
        d.find("a@b.co 123-45-6789", &mut out);
        assert_eq!(out, vec![Hit::new(0..6, Entity::Email)]);
    }
}
