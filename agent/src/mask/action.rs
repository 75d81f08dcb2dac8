//! What to do with a value once it is found: the actions a profile names,
//! and the edits each one plans over the value's bytes.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use super::detect::scan::digit_runs;
use super::edit::{Edit, keep_last_chars};
use super::entity::Entity;
use super::pseudonym::Pseudonyms;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// One `*` per byte: same length, so raw buffers are edited in place.
    Redact,
    /// Keep the last `keep` characters, star the rest.
    Partial { keep: usize },
    /// `[SSN]`.
    Tag,
    /// `[NAME:3fa2c1d4]`: keyed HMAC pseudonym, stable per value and key.
    Hash,
    /// Dates keep their year only; the other parts become stars.
    Year,
    /// ZIP codes keep their first three digits (`000` for the ZIP3 areas of
    /// 20,000 people or fewer, as Safe Harbor requires).
    Zip3,
    /// A whole JSON value becomes `null`; inside text this falls back to
    /// `redact`.
    Null,
}

const DEFAULT_PARTIAL_KEEP: usize = 4;

impl FromStr for Action {
    type Err = String;

    /// `redact`, `partial` (keeps 4), `partial:N`, `tag`, `hash`, `year`,
    /// `zip3`, `null`.
    fn from_str(s: &str) -> Result<Action, String> {
        Ok(match s {
            "redact" => Action::Redact,
            "partial" => Action::Partial {
                keep: DEFAULT_PARTIAL_KEEP,
            },
            "tag" => Action::Tag,
            "hash" => Action::Hash,
            "year" => Action::Year,
            "zip3" => Action::Zip3,
            "null" => Action::Null,
            _ => match s.strip_prefix("partial:").map(str::parse::<usize>) {
                Some(Ok(keep)) => Action::Partial { keep },
                _ => {
                    return Err(format!(
                        "unknown action {s:?} (expected redact, partial, partial:N, tag, hash, year, zip3 or null)"
                    ));
                }
            },
        })
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Redact => f.write_str("redact"),
            Action::Partial { keep } => write!(f, "partial:{keep}"),
            Action::Tag => f.write_str("tag"),
            Action::Hash => f.write_str("hash"),
            Action::Year => f.write_str("year"),
            Action::Zip3 => f.write_str("zip3"),
            Action::Null => f.write_str("null"),
        }
    }
}

impl Action {
    /// True when the action never changes a value's byte length.
    pub fn keeps_length(self) -> bool {
        !matches!(self, Action::Tag | Action::Hash | Action::Null)
    }

    /// Pushes the edits that apply this action to `text[range]`.
    pub(crate) fn plan(
        self,
        entity: &Entity,
        text: &str,
        range: Range<usize>,
        pseudonyms: &Pseudonyms,
        out: &mut Vec<Edit>,
    ) {
        if range.is_empty() {
            return;
        }
        let value = &text[range.clone()];
        match self {
            Action::Redact | Action::Null => out.push(Edit::stars(range)),
            Action::Partial { keep } => out.extend(keep_last_chars(text, range, keep)),
            Action::Tag => out.push(Edit::text(
                range,
                format!("[{}]", entity.name().to_ascii_uppercase()),
            )),
            Action::Hash => out.push(Edit::text(range, pseudonyms.pseudonym(entity, value))),
            Action::Year => {
                let year = year_in(value).map(|y| range.start + y.start..range.start + y.end);
                star_all_but(value.as_bytes(), range.start, year, out)
            }
            Action::Zip3 => plan_zip3(value, range.start, out),
        }
    }
}

/// Stars over every run of letters, digits and non-ASCII in `bytes` (at
/// `base`) outside `keep`; punctuation and spaces stay so the shape of a
/// date remains readable (`**/**/1980`).
fn star_all_but(bytes: &[u8], base: usize, keep: Option<Range<usize>>, out: &mut Vec<Edit>) {
    // the kept range splits the value in two, each starred on its own
    let (kept_from, kept_to) = keep.map_or((bytes.len(), bytes.len()), |k| {
        let from = k.start.saturating_sub(base).min(bytes.len());
        (from, k.end.saturating_sub(base).clamp(from, bytes.len()))
    });
    star_runs(bytes, base, 0..kept_from, out);
    star_runs(bytes, base, kept_to..bytes.len(), out);
}

/// Stars over each run of letters, digits and non-ASCII in `bytes[span]`.
fn star_runs(bytes: &[u8], base: usize, span: Range<usize>, out: &mut Vec<Edit>) {
    let shown = |c: u8| c.is_ascii_punctuation() || c.is_ascii_whitespace();
    let mut i = span.start;
    while i < span.end {
        if shown(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < span.end && !shown(bytes[i]) {
            i += 1;
        }
        out.push(Edit::stars(base + start..base + i));
    }
}

/// The year inside a written date: a four-digit run from 1000 to 2999, else
/// the last of three numeric parts when it has two digits (`3/14/80`), else
/// a two-digit year after an apostrophe (`Mar '80`).
pub(crate) fn year_in(date: &str) -> Option<Range<usize>> {
    let b = date.as_bytes();
    let (mut runs, mut last) = (0, None);
    for r in digit_runs(b) {
        if r.len() == 4 && matches!(b[r.start], b'1' | b'2') {
            return Some(r);
        }
        runs += 1;
        last = Some(r);
    }
    let last = last?;
    let apostrophe = last.start > 0 && b[last.start - 1] == b'\'';
    (last.len() == 2 && (runs == 3 || apostrophe)).then_some(last)
}

/// Three-digit ZIP areas of 20,000 people or fewer (HHS guidance, 2000
/// Census): their ZIP3 must become 000.
const RESTRICTED_ZIP3: [&str; 17] = [
    "036", "059", "063", "102", "203", "556", "692", "790", "821", "823", "830", "831", "878",
    "879", "884", "890", "893",
];

fn plan_zip3(value: &str, base: usize, out: &mut Vec<Edit>) {
    let b = value.as_bytes();
    let digits = b.iter().filter(|c| c.is_ascii_digit()).count();
    let shaped = b.len() >= 5 && b[..3].iter().all(u8::is_ascii_digit) && digits >= 5;
    if !shaped {
        star_all_but(b, base, None, out);
        return;
    }
    if RESTRICTED_ZIP3.contains(&&value[..3]) {
        out.push(Edit::text(base..base + 3, "000"));
    }
    star_all_but(b, base, Some(base..base + 3), out);
}

/// A replacement for a whole JSON number under a key rule. Numbers cannot
/// hold stars, so `tag` and `hash` give their text as a string, `zip3`
/// keeps the first three digits by zeroing the rest (`90210` → `90200`)
/// when that is still a valid number, and every other action gives a value
/// of the number's length: `null` padded with spaces, or for shorter
/// numbers `"*"`, `""` or `0`.
pub(crate) fn plan_number(
    action: Action,
    entity: &Entity,
    token: &str,
    range: Range<usize>,
    pseudonyms: &Pseudonyms,
) -> Edit {
    match action {
        Action::Tag => Edit::text(
            range,
            format!("\"[{}]\"", entity.name().to_ascii_uppercase()),
        ),
        Action::Hash => Edit::text(
            range,
            format!("\"{}\"", pseudonyms.pseudonym(entity, token)),
        ),
        Action::Zip3
            if token.len() == 5
                && token.bytes().all(|c| c.is_ascii_digit())
                && token.as_bytes()[0] != b'0'
                && !RESTRICTED_ZIP3.contains(&&token[..3]) =>
        {
            Edit::text(range, format!("{}00", &token[..3]))
        }
        _ => match token.len() {
            1 => Edit::text(range, "0"),
            2 => Edit::text(range, "\"\""),
            3 => Edit::text(range, "\"*\""),
            _ => Edit {
                range,
                fill: super::edit::Fill::Null,
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::edit::apply_str;

    fn run(action: Action, entity: Entity, s: &str) -> String {
        let mut out = Vec::new();
        action.plan(&entity, s, 0..s.len(), &Pseudonyms::new(b"k"), &mut out);
        apply_str(s, &out)
    }

    #[test]
    fn parse_and_print() {
        for s in [
            "redact",
            "partial:4",
            "tag",
            "hash",
            "year",
            "zip3",
            "null",
            "partial:0",
        ] {
            assert_eq!(s.parse::<Action>().unwrap().to_string(), s);
        }
        assert_eq!("partial".parse::<Action>(), Ok(Action::Partial { keep: 4 }));
        assert!("partial:x".parse::<Action>().is_err());
        assert!("shred".parse::<Action>().is_err());
    }

    #[test]
    fn each_action_output() {
        assert_eq!(
            run(Action::Redact, Entity::Ssn, "123-45-6789"),
            "***********"
        );
        assert_eq!(
            run(Action::Partial { keep: 4 }, Entity::Ssn, "123-45-6789"),
            "*******6789"
        );
        assert_eq!(run(Action::Tag, Entity::Ssn, "123-45-6789"), "[SSN]");
        assert!(run(Action::Hash, Entity::Name, "John Smith").starts_with("[NAME:"));
        assert_eq!(run(Action::Year, Entity::Date, "03/14/1980"), "**/**/1980");
        assert_eq!(run(Action::Year, Entity::Date, "1980-03-14"), "1980-**-**");
        assert_eq!(
            run(Action::Year, Entity::Date, "March 14, 1980"),
            "***** **, 1980"
        );
        assert_eq!(run(Action::Year, Entity::Date, "3/14/80"), "*/**/80");
        assert_eq!(run(Action::Year, Entity::Date, "March 14"), "***** **");
        assert_eq!(run(Action::Zip3, Entity::Zip, "02139"), "021**");
        assert_eq!(run(Action::Zip3, Entity::Zip, "02139-4301"), "021**-****");
        assert_eq!(run(Action::Zip3, Entity::Zip, "03601"), "000**");
        assert_eq!(run(Action::Zip3, Entity::Zip, "n/a"), "*/*");
        assert_eq!(run(Action::Null, Entity::Ssn, "x"), "*");
    }

    #[test]
    fn redact_keeps_byte_length_of_multibyte_text() {
        let s = "José Müller 山田";
        let out = run(Action::Redact, Entity::Name, s);
        assert_eq!(out.len(), s.len());
        assert!(out.bytes().all(|b| b == b'*'));
    }

    #[test]
    fn numbers_under_key_rules() {
        let p = Pseudonyms::new(b"k");
        let e = plan_number(Action::Redact, &Entity::Ssn, "123456789", 0..9, &p);
        assert_eq!(apply_str("123456789", &[e]), "null     ");
        let e = plan_number(Action::Zip3, &Entity::Zip, "90210", 0..5, &p);
        assert_eq!(apply_str("90210", &[e]), "90200");
        let e = plan_number(Action::Zip3, &Entity::Zip, "89012", 0..5, &p);
        assert_eq!(apply_str("89012", &[e]), "89012".replace("89012", "null "));
        let e = plan_number(Action::Tag, &Entity::Age, "93", 0..2, &p);
        assert_eq!(apply_str("93", &[e]), "\"[AGE]\"");
        for (short, masked) in [("7", "0"), ("93", "\"\""), ("0.5", "\"*\"")] {
            let e = plan_number(Action::Redact, &Entity::Age, short, 0..short.len(), &p);
            assert_eq!(apply_str(short, &[e]), masked);
        }
    }
}
