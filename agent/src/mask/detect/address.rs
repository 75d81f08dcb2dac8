//! Geography below the state: street addresses (with unit, city and state),
//! PO boxes, `City, ST`, and ZIP codes after a state or a ZIP cue.

use std::ops::Range;

use super::scan::{clear_after, clear_before, cue_before, occurrences};
use super::{Hit, Hits};
use crate::mask::entity::Entity;

/// Street suffixes that are as often plain words (`Minute Walk Test`,
/// `Memorial Park`): a street only with a city after them.
const SOMETIMES_SUFFIXES: &[&str] = &[
    "walk", "run", "loop", "path", "row", "park", "close", "commons",
];
const STREET_SUFFIXES: &[&str] = &[
    "street",
    "st",
    "avenue",
    "ave",
    "av",
    "road",
    "rd",
    "boulevard",
    "blvd",
    "drive",
    "dr",
    "lane",
    "ln",
    "way",
    "court",
    "ct",
    "place",
    "pl",
    "terrace",
    "ter",
    "parkway",
    "pkwy",
    "highway",
    "hwy",
    "circle",
    "cir",
    "square",
    "sq",
    "trail",
    "trl",
    "loop",
    "alley",
    "row",
    "pike",
    "plaza",
    "crossing",
    "ridge",
    "path",
    "commons",
    "heights",
    "hts",
    "park",
    "grove",
    "close",
    "crescent",
    "cres",
    "turnpike",
    "tpke",
    "expressway",
    "expy",
    "walk",
    "run",
];
const DIRECTIONS: &[&str] = &[
    "n", "s", "e", "w", "ne", "nw", "se", "sw", "north", "south", "east", "west",
];
const UNITS: &[&str] = &[
    "apt",
    "apartment",
    "suite",
    "ste",
    "unit",
    "fl",
    "floor",
    "rm",
    "room",
    "bldg",
    "building",
    "#",
];

/// USPS state and territory codes.
const STATES: &[&str] = &[
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "DC", "FL", "GA", "HI", "ID", "IL", "IN", "IA",
    "KS", "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM",
    "NY", "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA",
    "WV", "WI", "WY", "PR", "GU", "VI", "AS", "MP",
];
/// State codes that are also degrees or words (`John Smith, MD`, `PA`):
/// after a bare city they count only with a ZIP.
const AMBIGUOUS_STATES: &[&str] = &[
    "MD", "PA", "MA", "ME", "IN", "OR", "OK", "HI", "DE", "CO", "OH", "LA", "MS", "ID", "AS", "DO",
];
const ZIP_CUES: &[&str] = &["zip", "zip code", "zipcode", "postal code", "postcode"];

pub(crate) fn find(text: &str, groups: &[Range<usize>], out: &mut Hits) {
    let b = text.as_bytes();
    let mut covered = 0;
    for g in groups {
        if g.start < covered {
            continue;
        }
        if let Some(end) = street(b, g) {
            let (end, zip) = city_state_zip(b, end).map_or((end, None), |(e, z)| (e, z));
            out.push(Hit::new(g.start..end, Entity::Address));
            out.extend(zip.map(|z| Hit::new(z, Entity::Zip)));
            covered = end;
        } else if g.len() == 5
            && (cue_before(b, g.start, 14, ZIP_CUES) || state_before(b, g.start))
            && let Some(z) = zip_at(b, g.start)
        {
            out.push(Hit::new(z, Entity::Zip));
        }
    }
    po_boxes(b, out);
    bare_city_state(b, out);
}

/// A word of ASCII letters at `at`: its end.
fn word_end(b: &[u8], at: usize) -> usize {
    let mut e = at;
    while e < b.len() && b[e].is_ascii_alphabetic() {
        e += 1;
    }
    e
}

/// A state code and a space right before `at` (`Boston MA 02134`): what
/// stands before a ZIP, whatever comes before the state.
fn state_before(b: &[u8], at: usize) -> bool {
    at >= 3
        && b[at - 1] == b' '
        && b[at - 3..at - 1].iter().all(u8::is_ascii_uppercase)
        && is_in(STATES, &b[at - 3..at - 1])
        && (at == 3 || !b[at - 4].is_ascii_alphanumeric())
}

/// Words before a city that say it is where someone is or comes from.
const PLACE_WORDS: &[&str] = &["in", "from", "to", "at", "near", "of", "lives", "resides"];

/// One of [`PLACE_WORDS`] and a space right before `at`.
fn place_word_before(b: &[u8], at: usize) -> bool {
    let Some(end) = at.checked_sub(1).filter(|&e| b[e] == b' ') else {
        return false;
    };
    let mut s = end;
    while s > 0 && b[s - 1].is_ascii_alphabetic() {
        s -= 1;
    }
    is_in(PLACE_WORDS, &b[s..end])
}

fn is_in(list: &[&str], w: &[u8]) -> bool {
    list.iter().any(|x| w.eq_ignore_ascii_case(x.as_bytes()))
}

fn capitalised(w: &[u8]) -> bool {
    w.first().is_some_and(u8::is_ascii_uppercase)
}

/// `12B Main St.`: the end of the street part, starting at a house number.
fn street(b: &[u8], g: &Range<usize>) -> Option<usize> {
    if g.len() > 6 || !clear_before(b, g.start) {
        return None;
    }
    let mut at = g.end;
    if b.get(at).is_some_and(u8::is_ascii_uppercase) && b.get(at + 1) == Some(&b' ') {
        at += 1; // 12B
    }
    let mut names = 0;
    // whether the street's words so far are all capitals (`12 MAIN ST`)
    let mut caps_line = true;
    for _ in 0..6 {
        if b.get(at) != Some(&b' ') {
            return None;
        }
        at += 1;
        // An ordinal street name: 5th, 42nd.
        let digits = b[at..].iter().take_while(|c| c.is_ascii_digit()).count();
        let w_end = word_end(b, at + digits);
        let w = &b[at + digits..w_end];
        if w.is_empty() {
            return None;
        }
        if digits > 0 {
            if !is_in(&["st", "nd", "rd", "th"], w) {
                return None;
            }
            names += 1;
            at = w_end;
            continue;
        }
        if !capitalised(w) {
            return None;
        }
        let next_is_suffix = b.get(w_end) == Some(&b' ') && {
            let n_end = word_end(b, w_end + 1);
            capitalised(&b[w_end + 1..n_end]) && is_in(STREET_SUFFIXES, &b[w_end + 1..n_end])
        };
        if names > 0 && !next_is_suffix && is_in(STREET_SUFFIXES, w) && clear_after(b, w_end) {
            let mut end = w_end;
            if b.get(end) == Some(&b'.') {
                end += 1;
            }
            // `5000 Units SQ`, `12 Lead ST`, `6 Minute Walk Test`: a suffix
            // in capitals after other words, or a word that is a suffix
            // only sometimes, is a street only with a city after it
            let caps_suffix = w.iter().all(u8::is_ascii_uppercase) && !caps_line;
            if (caps_suffix || is_in(SOMETIMES_SUFFIXES, w)) && city_state_zip(b, end).is_none() {
                return None;
            }
            return Some(unit(b, end).unwrap_or(end));
        }
        caps_line &= w.iter().all(u8::is_ascii_uppercase);
        if !is_in(DIRECTIONS, w) {
            names += 1;
        }
        at = w_end;
        if b.get(at) == Some(&b'.') {
            at += 1; // N. Main
        }
    }
    None
}

/// `, Apt 4B`, ` Suite 200`, ` #12`: the end of a unit after a street.
fn unit(b: &[u8], end: usize) -> Option<usize> {
    let mut at = end;
    if b.get(at) == Some(&b',') {
        at += 1;
    }
    if b.get(at) != Some(&b' ') {
        return None;
    }
    at += 1;
    let kw_end = if b.get(at) == Some(&b'#') {
        at + 1
    } else {
        word_end(b, at)
    };
    if !is_in(UNITS, &b[at..kw_end]) {
        return None;
    }
    at = kw_end;
    if b.get(at) == Some(&b'.') {
        at += 1;
    }
    if b.get(at) == Some(&b' ') {
        at += 1;
    }
    let v = b[at..]
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'-')
        .count();
    (v > 0 && v <= 8).then_some(at + v)
}

/// `, Springfield, IL 62704` (or a space instead of the first comma) after a
/// street: the end of the state, and the ZIP's range if one follows.
fn city_state_zip(b: &[u8], end: usize) -> Option<(usize, Option<Range<usize>>)> {
    let mut at = end;
    if b.get(at) == Some(&b',') {
        at += 1;
    }
    if b.get(at) != Some(&b' ') {
        return None;
    }
    at += 1;
    for _ in 0..3 {
        let w_end = word_end(b, at);
        if w_end == at || !capitalised(&b[at..w_end]) {
            return None;
        }
        at = w_end;
        match b.get(at..at + 2) {
            Some(b", ") => break,
            Some(s) if s[0] == b' ' => at += 1,
            _ => return None,
        }
    }
    if b.get(at..at + 2) != Some(b", ") {
        return None;
    }
    let st = at + 2;
    let st_end = word_end(b, st);
    if st_end - st != 2
        || !is_in(STATES, &b[st..st_end])
        || !b[st..st_end].iter().all(u8::is_ascii_uppercase)
    {
        return None;
    }
    let zip = (b.get(st_end) == Some(&b' '))
        .then(|| zip_at(b, st_end + 1))
        .flatten();
    Some((st_end, zip))
}

/// A five-digit ZIP (or ZIP+4) at `at`.
fn zip_at(b: &[u8], at: usize) -> Option<Range<usize>> {
    let five = b.get(at..at + 5)?.iter().all(u8::is_ascii_digit);
    if !five || !clear_before(b, at) {
        return None;
    }
    let plus4 = b.get(at + 5) == Some(&b'-')
        && b.get(at + 6..at + 10)
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let end = if plus4 { at + 10 } else { at + 5 };
    clear_after(b, end).then_some(at..end)
}

fn po_boxes(b: &[u8], out: &mut Hits) {
    const PREFIXES: [&[u8]; 4] = [b"p.o. ", b"po ", b"p o ", b"post office "];
    for q in occurrences(b, b"ox ", 1).filter_map(|p| p.checked_sub(1)) {
        if !matches!(b[q], b'B' | b'b') {
            continue;
        }
        let Some(start) = PREFIXES
            .iter()
            .find(|p| q >= p.len() && b[q - p.len()..q].eq_ignore_ascii_case(p))
            .map(|p| q - p.len())
        else {
            continue;
        };
        if start > 0 && b[start - 1].is_ascii_alphanumeric() {
            continue;
        }
        let at = q + 4;
        let n = b[at..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || **c == b'-')
            .count();
        if n > 0 {
            out.push(Hit::new(start..at + n, Entity::Address));
        }
    }
}

/// `Boston, MA 02118` or `Springfield, IL` where no street precedes: the city
/// (one to three capitalised words) and state as an address, the ZIP as a ZIP.
fn bare_city_state(b: &[u8], out: &mut Hits) {
    for p in occurrences(b, b", ", 0) {
        let st = p + 2;
        let st_end = word_end(b, st);
        if st_end - st != 2
            || !b[st..st_end].iter().all(u8::is_ascii_uppercase)
            || !is_in(STATES, &b[st..st_end])
        {
            continue;
        }
        if b.get(st_end).is_some_and(|c| c.is_ascii_alphanumeric()) {
            continue;
        }
        let zip = (b.get(st_end) == Some(&b' '))
            .then(|| zip_at(b, st_end + 1))
            .flatten();
        let ambiguous = zip.is_none() && is_in(AMBIGUOUS_STATES, &b[st..st_end]);
        let word_before = |end: usize| {
            let mut s = end;
            while s > 0 && b[s - 1].is_ascii_alphabetic() {
                s -= 1;
            }
            (s < end && capitalised(&b[s..end])).then_some(s)
        };
        let Some(mut start) = word_before(p) else {
            continue;
        };
        // capitals alone before the comma are mostly abbreviations
        // (`HTN, MI`, `CXR, CT`): a city only with a ZIP after the state
        if zip.is_none()
            && b[start..p]
                .iter()
                .all(|c| c.is_ascii_uppercase() || *c == b' ')
        {
            continue;
        }
        // a code that is also a degree or a word (`Smith, MD`) only with a
        // ZIP, or after a word that places someone (`lives in Worcester, MA`)
        if ambiguous && !place_word_before(b, start) {
            continue;
        }
        // up to three words of a city, but not the word placing it
        for _ in 1..3 {
            match start
                .checked_sub(1)
                .filter(|&sp| b[sp] == b' ')
                .and_then(|sp| word_before(sp).map(|s| (s, sp)))
            {
                Some((s, sp)) if !is_in(PLACE_WORDS, &b[s..sp]) => start = s,
                _ => break,
            }
        }
        out.push(Hit::new(start..st_end, Entity::Address));
        out.extend(zip.map(|z| Hit::new(z, Entity::Zip)));
    }
}

#[cfg(test)]
mod tests {
    use super::super::scan::digit_groups_of as digit_groups;
    use super::*;

    fn found(text: &str, entity: Entity) -> Vec<&str> {
        let mut out = Hits::new();
        find(text, &digit_groups(text.as_bytes()), &mut out);
        super::super::resolve(&mut out);
        out.into_iter()
            .filter(|h| h.entity == entity)
            .map(|h| &text[h.range])
            .collect()
    }

    #[test]
    fn streets() {
        assert_eq!(
            found("lives at 123 Main St.", Entity::Address),
            ["123 Main St."]
        );
        assert_eq!(
            found("42 N Oak Hill Road, Apt 4B today", Entity::Address),
            ["42 N Oak Hill Road, Apt 4B"]
        );
        assert_eq!(
            found("1600 Pennsylvania Avenue NW", Entity::Address),
            ["1600 Pennsylvania Avenue"]
        );
        assert_eq!(
            found("at 77 5th Avenue Suite 200", Entity::Address),
            ["77 5th Avenue Suite 200"]
        );
        assert_eq!(
            found("123 Elm Street, Springfield, IL 62704", Entity::Address),
            ["123 Elm Street, Springfield, IL"]
        );
        assert_eq!(
            found("123 Elm Street, Springfield, IL 62704", Entity::Zip),
            ["62704"]
        );
        assert_eq!(
            found("mail to PO Box 4411", Entity::Address),
            ["PO Box 4411"]
        );
        assert_eq!(
            found("at 9 Oak Park Avenue", Entity::Address),
            ["9 Oak Park Avenue"]
        );
    }

    #[test]
    fn clinical_words_that_end_like_streets() {
        for text in [
            "Heparin 5000 Units SQ q8h",
            "EKG: 12 Lead ST elevation in II",
            "6 Minute Walk Test: 320 m",
            "Resected 3 Axillary LN, all negative",
        ] {
            assert!(found(text, Entity::Address).is_empty(), "{text}");
        }
        assert_eq!(
            found("12 MAIN ST", Entity::Address),
            ["12 MAIN ST"],
            "a line in capitals"
        );
        assert_eq!(
            found("40 Elm Park, Springfield, IL 62704", Entity::Address),
            ["40 Elm Park, Springfield, IL"]
        );
        assert_eq!(found("12 Oak St", Entity::Address), ["12 Oak St"]);
    }

    #[test]
    fn street_near_misses() {
        assert!(found("take 2 tablets daily", Entity::Address).is_empty());
        assert!(found("gave 2 Tylenol by mouth", Entity::Address).is_empty());
        assert!(found("room 12 st", Entity::Address).is_empty());
        assert!(
            found("2 St", Entity::Address).is_empty(),
            "a suffix needs a name before it"
        );
    }

    #[test]
    fn cities_before_a_state_that_is_also_a_word_after_a_place_word() {
        assert_eq!(
            found("Lives in Worcester, MA with her daughter.", Entity::Address),
            ["Worcester, MA"]
        );
        assert_eq!(
            found("From Philadelphia, PA; moved", Entity::Address),
            ["Philadelphia, PA"]
        );
        assert_eq!(
            found("visiting from Portland, OR for", Entity::Address),
            ["Portland, OR"]
        );
        assert!(found("Seen by Jane Smith, MD today", Entity::Address).is_empty());
        assert!(found("Signed: Smith, PA", Entity::Address).is_empty());
    }

    #[test]
    fn zips_after_a_state_and_abbreviations_before_one() {
        assert_eq!(found("lives in Boston MA 02134.", Entity::Zip), ["02134"]);
        assert_eq!(found("Boston MA 02134-1234", Entity::Zip), ["02134-1234"]);
        assert!(found("lot AB 12345", Entity::Zip).is_empty(), "no state");
        for abbreviations in ["PMH: HTN, MI, CKD", "Imaging: CXR, CT pending", "DM, CA"] {
            assert!(
                found(abbreviations, Entity::Address).is_empty(),
                "{abbreviations}"
            );
        }
        assert_eq!(
            found("BOSTON, MA 02118", Entity::Address),
            ["BOSTON, MA"],
            "capitals with a ZIP are still a city"
        );
    }

    #[test]
    fn cities_and_zips() {
        assert_eq!(
            found("moved to Boston, MA 02118 last", Entity::Address),
            ["Boston, MA"]
        );
        assert_eq!(
            found("moved to Boston, MA 02118 last", Entity::Zip),
            ["02118"]
        );
        assert_eq!(
            found("from Salt Lake City, UT.", Entity::Address),
            ["Salt Lake City, UT"]
        );
        assert!(
            found("John Smith, MD reviewed", Entity::Address).is_empty(),
            "MD without ZIP is a degree"
        );
        assert_eq!(found("zip code: 02139-4301", Entity::Zip), ["02139-4301"]);
        assert!(found("code 02139", Entity::Zip).is_empty());
    }
}
