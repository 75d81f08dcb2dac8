//! Geography below the state: street addresses (with unit, city and state),
//! PO boxes, `City, ST`, and ZIP codes after a state or a ZIP cue.

use std::ops::Range;
use std::sync::LazyLock;

use memchr::memmem::Finder;

use super::scan::{
    clear_after, clear_before, cue_before, is_in, occurrences, phrase_before, word_start,
};
use super::{Hit, Hits};
use crate::mask::entity::Entity;

/// Street suffixes that are as often plain words (`Minute Walk Test`,
/// `Memorial Park`, `Platelet Ct 45K`): a street only with a city after them.
const SOMETIMES_SUFFIXES: &[&str] = &[
    "walk", "run", "loop", "path", "row", "park", "close", "commons", "ct",
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
/// States' names as written after a city (`Springfield, Illinois`).
const STATE_NAMES: &[&str] = &[
    "Alabama",
    "Alaska",
    "Arizona",
    "Arkansas",
    "California",
    "Colorado",
    "Connecticut",
    "Delaware",
    "Florida",
    "Georgia",
    "Hawaii",
    "Idaho",
    "Illinois",
    "Indiana",
    "Iowa",
    "Kansas",
    "Kentucky",
    "Louisiana",
    "Maine",
    "Maryland",
    "Massachusetts",
    "Michigan",
    "Minnesota",
    "Mississippi",
    "Missouri",
    "Montana",
    "Nebraska",
    "Nevada",
    "New Hampshire",
    "New Jersey",
    "New Mexico",
    "New York",
    "North Carolina",
    "North Dakota",
    "Ohio",
    "Oklahoma",
    "Oregon",
    "Pennsylvania",
    "Rhode Island",
    "South Carolina",
    "South Dakota",
    "Tennessee",
    "Texas",
    "Utah",
    "Vermont",
    "Virginia",
    "Washington",
    "West Virginia",
    "Wisconsin",
    "Wyoming",
    "Puerto Rico",
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
            let (end, zip) = match city_state_zip(b, end) {
                Some((e, z)) => (e, z),
                None => (city_after_street(b, end).unwrap_or(end), None),
            };
            out.push(Hit::new(g.start..end, Entity::Address));
            out.extend(zip.map(|z| Hit::new(z, Entity::Zip)));
            covered = end;
        } else if g.len() == 5
            && let Some(z) = zip_at(b, g.start)
        {
            if let Some(city) = city_before_zip(b, g.start) {
                out.push(Hit::new(city, Entity::Address));
                out.push(Hit::new(z, Entity::Zip));
            } else if cue_before(b, g.start, 14, ZIP_CUES) || state_before(b, g.start) {
                out.push(Hit::new(z, Entity::Zip));
            }
        }
    }
    po_boxes(b, out);
    bare_city_state(b, out);
    // a county takes at least `Kent County`, a residence phrase and its
    // street `lives on X St`: short values skip the searches
    if b.len() >= 10 {
        counties(b, out);
    }
    if b.len() >= 14 {
        streets_after_residence(b, out);
    }
}

/// The city before a ZIP at `zip`: `Boston MA 02134` (the city and the
/// state), or `moved to Boston 02118` after a word that places someone.
fn city_before_zip(b: &[u8], zip: usize) -> Option<Range<usize>> {
    if state_before(b, zip) {
        let state_end = zip - 1;
        return zip
            .checked_sub(4)
            .filter(|&e| b[e] == b' ')
            .and_then(|e| city_before(b, e))
            .map(|start| start..state_end);
    }
    let end = zip.checked_sub(1).filter(|&e| b[e] == b' ')?;
    city_before(b, end)
        .filter(|&start| {
            !capitals_only(&b[start..end])
                && !plain_english(&b[start..word_end(b, start)])
                && RELOCATIONS.iter().any(|r| phrase_before(b, start, r))
        })
        .map(|start| start..end)
}

/// Phrases before a city and a ZIP that place someone there (`moved to
/// Boston 02118`); a bare `to` or `in` does not (`billed to Medicare 99213`,
/// `moved to Room 40213`).
const RELOCATIONS: &[&str] = &[
    "moved to ",
    "moving to ",
    "relocated to ",
    "lives in ",
    "living in ",
    "resides in ",
    "residing in ",
    "is from ",
    "moved from ",
    "home in ",
];

/// After a street, a city with no state: `, Brookline.`, ` Cambridge` at the
/// end of a line. One to three capitalised words that are not English words,
/// then the end, a line break or a stop: the end of the city.
fn city_after_street(b: &[u8], end: usize) -> Option<usize> {
    let mut at = end;
    if b.get(at) == Some(&b',') {
        at += 1;
    }
    for _ in 0..3 {
        if b.get(at) != Some(&b' ') {
            return None;
        }
        let w_end = word_end(b, at + 1);
        let w = &b[at + 1..w_end];
        if !capitalised(w) || is_state_code(w) || is_in(DIRECTIONS, w) || plain_english(w) {
            return None;
        }
        at = w_end;
        if b.get(at)
            .is_none_or(|c| matches!(c, b'.' | b',' | b';' | b'\n' | b'\r' | b')'))
        {
            return Some(at);
        }
    }
    None
}

/// Whether the ASCII word `w` is an English word that is not a name.
fn plain_english(w: &[u8]) -> bool {
    std::str::from_utf8(w).is_ok_and(super::names::is_plain_english)
}

/// Whether the ASCII word `w` is in the English word list (`Los` is not).
fn english(w: &[u8]) -> bool {
    std::str::from_utf8(w).is_ok_and(super::names::is_english)
}

/// Capitals and spaces alone (`HTN, MI`, `ED 02118`): an abbreviation's
/// shape more often than a city's.
fn capitals_only(w: &[u8]) -> bool {
    w.iter().all(|c| c.is_ascii_uppercase() || *c == b' ')
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
        && is_state_code(&b[at - 3..at - 1])
        && (at == 3 || !b[at - 4].is_ascii_alphanumeric())
}

/// Titles, which a city does not hold (`Dr Jones MD 20892`).
const TITLES: &[&str] = &["dr", "mr", "mrs", "ms", "miss", "prof"];

/// Words before a city that say it is where someone is or comes from.
const PLACE_WORDS: &[&str] = &["in", "from", "to", "at", "near", "of", "lives", "resides"];

/// One of [`PLACE_WORDS`] and a space right before `at`.
fn place_word_before(b: &[u8], at: usize) -> bool {
    at.checked_sub(1)
        .filter(|&end| b[end] == b' ')
        .is_some_and(|end| is_in(PLACE_WORDS, &b[word_start(b, end)..end]))
}

/// A USPS code in capitals (`MA`, not `ma`).
fn is_state_code(w: &[u8]) -> bool {
    w.len() == 2 && w.iter().all(u8::is_ascii_uppercase) && is_in(STATES, w)
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
            let end = past_dot(b, w_end);
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
        at = past_dot(b, w_end); // N. Main
    }
    None
}

/// `at`, or past the `.` of an abbreviation there (`St.`).
fn past_dot(b: &[u8], at: usize) -> usize {
    at + usize::from(b.get(at) == Some(&b'.'))
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
    at = past_dot(b, kw_end);
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
    for words in 0..3 {
        let w_end = word_end(b, at);
        if w_end == at || !capitalised(&b[at..w_end]) {
            return None;
        }
        // `Boston MA 02134`: a state code with no comma before a ZIP
        if words > 0
            && b.get(w_end) == Some(&b' ')
            && is_state_code(&b[at..w_end])
            && let Some(zip) = zip_at(b, w_end + 1)
        {
            return Some((w_end, Some(zip)));
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
    if !is_state_code(&b[st..st_end]) {
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
            .or_else(|| rural_route_before(b, q))
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

/// `RR 2 ` or `Rural Route 2 ` right before a box at `at` (the `B`): where
/// the route starts.
fn rural_route_before(b: &[u8], at: usize) -> Option<usize> {
    let sp = at.checked_sub(1).filter(|&sp| b[sp] == b' ')?;
    let mut d = sp;
    while d > 0 && b[d - 1].is_ascii_digit() {
        d -= 1;
    }
    // a route number, then a space before it
    let route_end = d.checked_sub(1).filter(|&e| d < sp && b[e] == b' ')?;
    let route = ["R.R.", "Rural Route", "RR"]
        .into_iter()
        .find(|r| b[..route_end].ends_with(r.as_bytes()))?;
    let start = route_end - route.len();
    if start > 0 && b[start - 1].is_ascii_alphanumeric() {
        return None;
    }
    // `RR` is as often a respiratory rate (`RR 22 Box 3 checked`): a route
    // only when a comma and the rest of an address follow the box
    let box_number = b
        .get(at + 4..)
        .map_or(0, |r| r.iter().take_while(|c| c.is_ascii_digit()).count());
    let spelled = route != "RR";
    (spelled || (box_number > 0 && b.get(at + 4 + box_number) == Some(&b','))).then_some(start)
}

/// `Boston, MA 02118`, `Springfield, IL` or `Springfield, Illinois` where no
/// street precedes: the city (one to three capitalised words) and state as
/// an address, the ZIP as a ZIP.
fn bare_city_state(b: &[u8], out: &mut Hits) {
    for p in occurrences(b, b", ", 0) {
        let st = p + 2;
        let Some(st_end) = state_at(b, st) else {
            continue;
        };
        if b.get(st_end).is_some_and(|c| c.is_ascii_alphanumeric()) {
            continue;
        }
        let code = st_end - st == 2;
        let zip = (b.get(st_end) == Some(&b' '))
            .then(|| zip_at(b, st_end + 1))
            .flatten();
        let ambiguous = code && zip.is_none() && is_in(AMBIGUOUS_STATES, &b[st..st_end]);
        let Some(start) = city_before(b, p) else {
            continue;
        };
        // capitals alone before the comma are mostly abbreviations
        // (`HTN, MI`, `CXR, CT`): a city only with a ZIP after the state
        if zip.is_none() && capitals_only(&b[start..p]) {
            continue;
        }
        // a code that is also a degree or a word (`Smith, MD`) only with a
        // ZIP, or after a word that places someone (`lives in Worcester, MA`)
        if ambiguous && !place_word_before(b, start) {
            continue;
        }
        // a state's name after a city that a word places (`from Springfield,
        // Illinois`), not in a list (`Graves, Virginia protocol`) or an
        // institution (`Smith, Washington University`)
        if !code
            && (!place_word_before(b, start)
                || [" University", " State"]
                    .iter()
                    .any(|w| b[st_end..].starts_with(w.as_bytes())))
        {
            continue;
        }
        out.push(Hit::new(start..st_end, Entity::Address));
        out.extend(zip.map(|z| Hit::new(z, Entity::Zip)));
    }
}

/// A state code in capitals or a state's name at `at`: where it ends.
fn state_at(b: &[u8], at: usize) -> Option<usize> {
    let end = word_end(b, at);
    if is_state_code(&b[at..end]) {
        return Some(end);
    }
    // most words after a comma are not capitalised: no names to compare
    if !b.get(at).is_some_and(u8::is_ascii_uppercase) {
        return None;
    }
    STATE_NAMES
        .iter()
        .find(|name| b[at..].starts_with(name.as_bytes()))
        .map(|name| at + name.len())
        .filter(|&e| b.get(e).is_none_or(|c| !c.is_ascii_alphabetic()))
}

/// One to three capitalised words ending at `end`, not counting a word that
/// places them (`in`, `from`): where they start, as a city.
fn city_before(b: &[u8], end: usize) -> Option<usize> {
    let capitalised_before = |end: usize| {
        let s = word_start(b, end);
        (s < end && capitalised(&b[s..end])).then_some(s)
    };
    let mut start = capitalised_before(end).filter(|&s| !is_in(TITLES, &b[s..end]))?;
    for _ in 1..3 {
        match start
            .checked_sub(1)
            .filter(|&sp| b[sp] == b' ')
            .and_then(|sp| capitalised_before(sp).map(|s| (s, sp)))
        {
            // not the word placing the city, nor a title (`to Dr Smith, MD`)
            Some((s, sp)) if !is_in(PLACE_WORDS, &b[s..sp]) && !is_in(TITLES, &b[s..sp]) => {
                start = s
            }
            _ => break,
        }
    }
    Some(start)
}

/// `Middlesex County`, `Orleans Parish`: one to three capitalised words and
/// the word for a county, which Safe Harbor removes like a city.
fn counties(b: &[u8], out: &mut Hits) {
    for finder in COUNTIES.iter() {
        for p in finder.find_iter(b) {
            let end = p + finder.needle().len();
            if b.get(end).is_some_and(u8::is_ascii_alphanumeric) {
                continue;
            }
            let s = word_start(b, p);
            if s == p || !capitalised(&b[s..p]) || plain_english(&b[s..p]) {
                continue;
            }
            // `Los Angeles County`, `St. Louis County`, `Miami-Dade County`
            let mut start = s;
            for _ in 0..2 {
                let Some(sep) = start
                    .checked_sub(1)
                    .filter(|&i| matches!(b[i], b' ' | b'-'))
                else {
                    break;
                };
                let w_end = if b[sep] == b' ' && sep > 0 && b[sep - 1] == b'.' {
                    sep - 1
                } else {
                    sep
                };
                let w_start = word_start(b, w_end);
                let w = &b[w_start..w_end];
                let saint = w == b"St" && w_end != sep;
                if !saint
                    && (w_end != sep || !capitalised(w) || is_in(PLACE_WORDS, w) || english(w))
                {
                    break;
                }
                start = w_start;
            }
            out.push(Hit::new(start..end, Entity::Address));
        }
    }
}

/// Verbs that say someone lives at the street after `at` or `on`: after
/// them a street may be written in lower case (`resides at 33 main st`) or
/// without a number (`lives on Elm Street`).
const RESIDENCE_VERBS: &[&str] = &["lives", "living", "resides", "residing"];

/// ` at ` and ` on `, found by SIMD substring searches: a memchr for one
/// of their common bytes would stop at most words.
static AT: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b" at "));
static ON: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b" on "));
/// The words for a county, searched like [`AT`].
static COUNTIES: LazyLock<[Finder<'static>; 2]> =
    LazyLock::new(|| [Finder::new(b" County"), Finder::new(b" Parish")]);

/// Builds the searchers now rather than on the first text a masker reads.
pub(crate) fn prepare() {
    LazyLock::force(&AT);
    LazyLock::force(&ON);
    LazyLock::force(&COUNTIES);
}

/// Streets after a [`RESIDENCE_VERBS`] verb and `at` or `on` that [`street`]
/// does not take: up to four words of any case and a street suffix, after a
/// house number, or capitalised words and a suffix without one.
fn streets_after_residence(b: &[u8], out: &mut Hits) {
    let prepositions = AT.find_iter(b).chain(ON.find_iter(b));
    for p in prepositions {
        if !is_in(RESIDENCE_VERBS, &b[word_start(b, p)..p]) {
            continue;
        }
        let start = p + 4;
        let mut at = start;
        let digits = b[at..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits > 6 {
            continue;
        }
        if digits > 0 {
            if b.get(at + digits) != Some(&b' ') {
                continue;
            }
            at += digits + 1;
        }
        let mut end = None;
        for words in 0..5 {
            let w_end = word_end(b, at);
            let w = &b[at..w_end];
            if w.is_empty() || (digits == 0 && !capitalised(w)) {
                break;
            }
            if words > 0 && is_in(STREET_SUFFIXES, w) && clear_after(b, w_end) {
                let e = past_dot(b, w_end);
                end = Some(unit(b, e).unwrap_or(e));
                break;
            }
            if b.get(w_end) != Some(&b' ') {
                break;
            }
            at = w_end + 1;
        }
        if let Some(end) = end {
            out.push(Hit::new(start..end, Entity::Address));
        }
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
    fn cities_without_a_comma_a_state_or_a_street_number() {
        for (text, address) in [
            (
                "Home: 1200 Commonwealth Avenue #4, Boston MA 02134",
                "1200 Commonwealth Avenue #4, Boston MA",
            ),
            (
                "Discharged home to 500 Washington Street, Brookline.",
                "500 Washington Street, Brookline",
            ),
            (
                "Lives at 77 Mass Ave Suite 210 Cambridge",
                "77 Mass Ave Suite 210 Cambridge",
            ),
            (
                "Moved here from Springfield, Illinois last year.",
                "Springfield, Illinois",
            ),
            ("Resident of Middlesex County.", "Middlesex County"),
            ("Follow up at Cook County Hospital", "Cook County"),
            ("Lives in Los Angeles County", "Los Angeles County"),
            ("from St. Louis County", "St. Louis County"),
            ("in Miami-Dade County", "Miami-Dade County"),
            ("Ship supplies to RR 2 Box 14, Athol", "RR 2 Box 14"),
            ("pt resides at 33 main st apt 2 w/ son", "33 main st apt 2"),
            ("Lives on Elm Street with two cats.", "Elm Street"),
        ] {
            assert!(
                found(text, Entity::Address).contains(&address),
                "{text}: {:?}",
                found(text, Entity::Address)
            );
        }
        assert_eq!(found("Boston MA 02134", Entity::Address), ["Boston MA"]);
        assert_eq!(
            found("Moved to Boston 02118 last", Entity::Address),
            ["Boston"]
        );
        assert_eq!(found("Moved to Boston 02118 last", Entity::Zip), ["02118"]);
        for near_miss in [
            "He lives at home with his wife on the first floor.",
            "Seen at 10 am on Main Street rounds.",
            "She was living on disability.",
            "Pain, Georgia peach allergy.",
            "The County health department.",
            "Dose 40 units 12345 given",
            "Lot 12 Box 14 of gloves",
            // from a review of PHI-free text near these rules
            "Billed to Medicare 99213 for office visit.",
            "Moved to Bed 12345",
            "Seen in ED 02118",
            "connect to Redis 16379",
            "Hx: Tachycardia, Georgia trip",
            "Consider Graves, Virginia protocol",
            "Dr. Smith, Washington University",
            "Resp: RR 22 Box 3 checked",
            "HC 3 Box 2 of the sharps bin",
        ] {
            assert!(found(near_miss, Entity::Address).is_empty(), "{near_miss}");
            assert!(found(near_miss, Entity::Zip).is_empty(), "{near_miss}");
        }
        assert_eq!(
            found("Lives at 12 Main St, Pt reports pain.", Entity::Address),
            ["12 Main St"],
            "a city is not followed by more words"
        );
    }

    #[test]
    fn review_findings_at_the_text_start_and_after_titles() {
        // a state code and ZIP that open the text have no city before them
        assert_eq!(found("MA 02134", Entity::Zip), ["02134"]);
        assert!(found("MA 02134", Entity::Address).is_empty());
        assert!(found("ID 99213", Entity::Address).is_empty());
        assert_eq!(
            found("Boston(MA 02134", Entity::Address),
            Vec::<&str>::new()
        );
        assert!(found("Ship to Rural Route  Box 14 today", Entity::Address).is_empty());
        assert!(found("referred to Dr Smith, MD for eval", Entity::Address).is_empty());
        assert!(
            found("Seen by Dr Jones MD 20892", Entity::Address)
                .iter()
                .all(|a| !a.contains("Dr"))
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
