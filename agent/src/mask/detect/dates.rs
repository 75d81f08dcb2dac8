//! Dates (every element but the year is an identifier) in numeric and
//! month-name forms, and ages over 89.

use std::ops::Range;

use super::scan::{
    between, clear_after, clear_before, cue_before, is_in, phrase_before, word_cue_before,
    word_start,
};
use super::{Hit, Hits};
use crate::mask::entity::Entity;

/// Words shortly before a bare `m/d` that make it a date rather than a
/// fraction or a dose (`on 3/14`, `DOS 3/14`, `appt 6/15`). Not `from`,
/// which is as often before a score (`improved from 7/10`).
const DAY_MONTH_CUES: &[&str] = &[
    "on",
    "dated",
    "since",
    "dob",
    "dos",
    "admitted",
    "admit",
    "discharged",
    "until",
    "seen",
    "date",
    "thru",
    "through",
    "appt",
    "appointment",
    "f/u",
    "given",
    "drawn",
    "collected",
    "filled",
    "scheduled",
    "started",
    "stopped",
    "extubated",
    "intubated",
    "placed",
    "removed",
    "last",
    "next",
    "mon",
    "tue",
    "tues",
    "wed",
    "thu",
    "thur",
    "thurs",
    "fri",
    "sat",
    "sun",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];
/// Words right after an `m/d` that make it an amount after all (`on 3/4
/// strength`, `since 1/2 of the dose`, `ABX on 3/5 days`).
const AMOUNT_AFTER: &[&str] = &[
    "of",
    "the",
    "strength",
    "dose",
    "doses",
    "tab",
    "tabs",
    "tablet",
    "tablets",
    "ns",
    "maintenance",
    "days",
    "cup",
    "cups",
    "inch",
    "inches",
];
const AGE_CUES: &[&str] = &["age", "aged"];
/// Words before a number that make its `F` Fahrenheit, not female.
const TEMPERATURE_CUES: &[&str] = &["t", "temp", "tmax", "tm", "temperature", "fever", "febrile"];
const AGE_SUFFIXES: &[&str] = &[
    "-year-old",
    " year old",
    " years old",
    " year-old",
    "-years-old",
    " yrs old",
    " years of age",
    " yo",
    "yo",
    " y/o",
    "y/o",
    " y.o.",
    "y.o.",
    "-yo",
    " yr old",
    "-yr-old",
    " years",
    " yrs",
    " yr",
];

pub(crate) fn find(text: &str, groups: &[Range<usize>], words: &[Range<usize>], out: &mut Hits) {
    let b = text.as_bytes();
    for (i, g) in groups.iter().enumerate() {
        if g.len() <= 4
            && b.get(g.end)
                .is_some_and(|c| matches!(c, b'/' | b'-' | b'.'))
        {
            numeric(b, groups, i, out);
        }
        if (2..=3).contains(&g.len()) {
            age(b, g, out);
        }
        if (1..=2).contains(&g.len()) {
            day_month_year_run(b, groups, i, out);
        }
        if matches!(g.len(), 8 | 12 | 14) {
            compact(b, g, out);
        }
    }
    for w in words {
        named(text, w, out);
    }
}

/// `95F with dementia`, `CC: 96 M w/ SOB`: an age and a sex where a note's
/// line or sentence starts (or after `a`), not a temperature (`Tmax: 101 F`).
fn age_and_sex(b: &[u8], g: &Range<usize>) -> bool {
    let rest = &b[g.end..];
    let sex = rest.strip_prefix(b" ").unwrap_or(rest);
    let sexed = matches!(sex.first(), Some(b'F' | b'M'))
        && sex
            .get(1)
            .is_none_or(|c| !c.is_ascii_alphanumeric() && *c != b'\'');
    if !sexed {
        return false;
    }
    let before = b[..g.start].trim_ascii_end();
    let opens = before.is_empty()
        || before.ends_with(b":")
        || before.ends_with(b".")
        || before.ends_with(b"a")
            && (before.len() == 1 || !before[before.len() - 2].is_ascii_alphanumeric());
    opens && !word_cue_before(b, g.start, 12, TEMPERATURE_CUES)
}

/// `20210304`, and with a time `202103041015` or `20210304101500` (HL7,
/// file names): a run of digits that starts with a valid date of 1900-2099.
fn compact(b: &[u8], g: &Range<usize>, out: &mut Hits) {
    if !clear_before(b, g.start) || !clear_after(b, g.end) {
        return;
    }
    let part = |from: usize, len: usize| value(b, &(g.start + from..g.start + from + len));
    let (year, month, day) = (part(0, 4), part(4, 2), part(6, 2));
    let time_ok = match g.len() {
        12 => part(8, 2) < 24 && part(10, 2) < 60,
        14 => part(8, 2) < 24 && part(10, 2) < 60 && part(12, 2) < 60,
        _ => true,
    };
    if (1900..=2099).contains(&year) && valid(4, year, month, day) && time_ok {
        out.push(Hit::new(g.clone(), Entity::Date));
    }
}

/// `04MAR2021`: a day, a month's abbreviation and a year with nothing
/// between them (pharmacy and lab systems write dates so).
fn day_month_year_run(b: &[u8], g: &[Range<usize>], i: usize, out: &mut Hits) {
    let (day, Some(year)) = (&g[i], g.get(i + 1)) else {
        return;
    };
    if year.start != day.end + 3 || year.len() != 4 || !clear_before(b, day.start) {
        return;
    }
    let Some(month) = month_of(&b[day.end..year.start]) else {
        return;
    };
    if valid(4, value(b, year), month, value(b, day)) && clear_after(b, year.end) {
        out.push(Hit::new(day.start..year.end, Entity::Date));
    }
}

/// The number a digit run spells; saturating, since a long run (a float's
/// mantissa) is never a valid date part anyway.
fn value(b: &[u8], r: &Range<usize>) -> u32 {
    b[r.clone()].iter().fold(0u32, |v, d| {
        v.saturating_mul(10).saturating_add(u32::from(d - b'0'))
    })
}

fn days_in(month: u32) -> u32 {
    match month {
        2 => 29,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn valid(year_digits: usize, year: u32, month: u32, day: u32) -> bool {
    let year_ok = year_digits == 2 || (1800..=2199).contains(&year);
    year_ok && (1..=12).contains(&month) && (1..=days_in(month)).contains(&day)
}

/// The end of a date may run into a time (`2021-03-14T10:22`).
fn date_end_ok(b: &[u8], end: usize) -> bool {
    clear_after(b, end)
        || (b.get(end) == Some(&b'T') && b.get(end + 1).is_some_and(u8::is_ascii_digit))
}

fn numeric(b: &[u8], g: &[Range<usize>], i: usize, out: &mut Hits) {
    if !clear_before(b, g[i].start) {
        return;
    }
    if i + 2 < g.len() {
        let (a, m, c) = (&g[i], &g[i + 1], &g[i + 2]);
        let sep = between(b, a, m);
        let same = matches!(sep, b"/" | b"-" | b".") && between(b, m, c) == sep;
        let (la, lm, lc) = (a.len(), m.len(), c.len());
        let (va, vm, vc) = (value(b, a), value(b, m), value(b, c));
        let date = same
            && if la == 4 && (1..=2).contains(&lm) && (1..=2).contains(&lc) {
                valid(4, va, vm, vc)
            } else if (1..=2).contains(&la)
                && (1..=2).contains(&lm)
                && (lc == 4 || (lc == 2 && sep != b"."))
            {
                valid(lc, vc, va, vm) || valid(lc, vc, vm, va)
            } else {
                false
            };
        if date && date_end_ok(b, c.end) {
            out.push(Hit::new(a.start..c.end, Entity::Date));
            return;
        }
    }
    if i + 1 < g.len() {
        let (a, c) = (&g[i], &g[i + 1]);
        let sep = between(b, a, c);
        let (va, vc) = (value(b, a), value(b, c));
        let month_year = matches!(sep, b"/" | b"-")
            && a.len() <= 2
            && c.len() == 4
            && (1..=12).contains(&va)
            && (1800..=2199).contains(&vc);
        let day_month = sep == b"/"
            && a.len() <= 2
            && c.len() <= 2
            && valid(2, 0, va, vc)
            && word_cue_before(b, a.start, 12, DAY_MONTH_CUES)
            && !amount_after(b, c.end)
            && !secondary_to(b, a, c);
        if (month_year || day_month) && clear_after(b, c.end) {
            out.push(Hit::new(a.start..c.end, Entity::Date));
        }
    }
}

/// Words after a `2/2` that keep it a date (`seen 2/2 at noon`); before
/// any other word it is shorthand for "secondary to" (`admitted 2/2 CAP`).
const DATE_FOLLOWERS: &[&str] = &[
    "at", "and", "or", "for", "in", "on", "to", "with", "by", "via", "per", "was", "were", "the",
    "a", "an", "until", "through", "thru", "when", "after", "before", "from", "pm", "am",
];

/// `2/2` and a word that is not one of [`DATE_FOLLOWERS`].
fn secondary_to(b: &[u8], a: &Range<usize>, c: &Range<usize>) -> bool {
    if &b[a.start..c.end] != b"2/2" {
        return false;
    }
    let Some(rest) = b.get(c.end..).and_then(|r| r.strip_prefix(b" ")) else {
        return false;
    };
    let n = rest.iter().take_while(|c| c.is_ascii_alphabetic()).count();
    n > 0 && !is_in(DATE_FOLLOWERS, &rest[..n])
}

/// A space and one of [`AMOUNT_AFTER`] (a whole word) at `at`.
fn amount_after(b: &[u8], at: usize) -> bool {
    let Some(rest) = b.get(at..).and_then(|r| r.strip_prefix(b" ")) else {
        return false;
    };
    let n = rest.iter().take_while(|c| c.is_ascii_alphabetic()).count();
    is_in(AMOUNT_AFTER, &rest[..n])
}

/// A capitalised or upper-case month name or abbreviation.
fn month_of(word: &[u8]) -> Option<u32> {
    // Every month name starts with one of these capitals.
    let first_ok = word.first().is_some_and(|c| b"JFMASOND".contains(c));
    if !first_ok || !(3..=9).contains(&word.len()) {
        return None;
    }
    let mut lower = [0u8; 9];
    let lower = &mut lower[..word.len()];
    lower.copy_from_slice(word);
    lower.make_ascii_lowercase();
    // One comparison by length and bytes, not a scan of every name.
    Some(match &*lower {
        b"january" | b"jan" => 1,
        b"february" | b"feb" => 2,
        b"march" | b"mar" => 3,
        b"april" | b"apr" => 4,
        b"may" => 5,
        b"june" | b"jun" => 6,
        b"july" | b"jul" => 7,
        b"august" | b"aug" => 8,
        b"september" | b"sept" | b"sep" => 9,
        b"october" | b"oct" => 10,
        b"november" | b"nov" => 11,
        b"december" | b"dec" => 12,
        _ => return None,
    })
}

/// Digits of length `len` in `range` at `at`, with an optional ordinal
/// suffix for days; returns the end.
fn number_at(b: &[u8], at: usize, lens: Range<usize>, ordinal: bool) -> Option<(usize, u32)> {
    let mut end = at;
    while end < b.len() && b[end].is_ascii_digit() {
        end += 1;
    }
    if !lens.contains(&(end - at)) {
        return None;
    }
    let v = value(b, &(at..end));
    if ordinal {
        let rest = &b[end..b.len().min(end + 2)];
        if [b"st", b"nd", b"rd", b"th"]
            .iter()
            .any(|s| rest.eq_ignore_ascii_case(*s))
        {
            end += 2;
        }
    }
    clear_after(b, end).then_some((end, v))
}

/// `, 1980` or ` 1980` after a day: the end of the year, if there is one.
fn year_after(b: &[u8], at: usize) -> Option<usize> {
    let at = if b.get(at) == Some(&b',') { at + 1 } else { at };
    let at = if b.get(at) == Some(&b' ') {
        at + 1
    } else {
        return None;
    };
    number_at(b, at, 4..5, false)
        .filter(|&(_, y)| (1800..=2199).contains(&y))
        .map(|(e, _)| e)
}

fn named(text: &str, w: &Range<usize>, out: &mut Hits) {
    let b = text.as_bytes();
    let Some(month) = month_of(&b[w.clone()]) else {
        return;
    };
    // The word may be followed by an abbreviation dot.
    let after = if b.get(w.end) == Some(&b'.') {
        w.end + 1
    } else {
        w.end
    };
    let day_before = day_before(text, w.start, month);

    // Month Day[, Year] and Month Year (after a day: Day Month Year).
    if b.get(after) == Some(&b' ') {
        if let Some((end, day)) = number_at(b, after + 1, 1..3, true)
            && (1..=days_in(month)).contains(&day)
        {
            let end = year_after(b, end).unwrap_or(end);
            out.push(Hit::new(w.start..end, Entity::Date));
            return;
        }
        if let Some(end) = year_after(b, after) {
            let start = day_before.map_or(w.start, |(s, _)| s);
            out.push(Hit::new(start..end, Entity::Date));
            return;
        }
    }
    // Day Month, Day of Month, 14-Mar-1980.
    let Some((start, dashed)) = day_before else {
        return;
    };
    if dashed {
        // `14-Mar` alone is a range or a code, not a date.
        if b.get(after) == Some(&b'-')
            && let Some((end, _)) = number_at(b, after + 1, 2..5, false)
        {
            out.push(Hit::new(start..end, Entity::Date));
        }
        return;
    }
    out.push(Hit::new(start..w.end, Entity::Date));
}

/// A day (`14`, `14th`, `14th of`) right before a month word starting at
/// `at`: its start, and whether a hyphen joins them (`14-Mar`).
fn day_before(text: &str, at: usize, month: u32) -> Option<(usize, bool)> {
    let b = text.as_bytes();
    let before = text[..at].strip_suffix("of ").unwrap_or(&text[..at]);
    let dashed = match before.as_bytes().last() {
        Some(b' ') => false,
        Some(b'-') => true,
        _ => return None,
    };
    let day_end = before.len() - 1;
    let digits_end = before[..day_end]
        .trim_end_matches(|c: char| c.is_ascii_alphabetic())
        .len();
    let suffix = &before[digits_end..day_end];
    let day_start = before[..digits_end]
        .trim_end_matches(|c: char| c.is_ascii_digit())
        .len();
    let ordinal_ok = suffix.is_empty()
        || ["st", "nd", "rd", "th"]
            .iter()
            .any(|s| suffix.eq_ignore_ascii_case(s));
    if !(1..=2).contains(&(digits_end - day_start)) || !ordinal_ok || !clear_before(b, day_start) {
        return None;
    }
    let day = value(b, &(day_start..digits_end));
    (1..=days_in(month))
        .contains(&day)
        .then_some((day_start, dashed))
}

/// 90 and over, after `age`/`aged` or before `years old` and the like.
fn age(b: &[u8], g: &Range<usize>, out: &mut Hits) {
    if !(2..=3).contains(&g.len()) || !clear_before(b, g.start) {
        return;
    }
    let v = value(b, g);
    if !(90..=125).contains(&v) {
        return;
    }
    let rest = &b[g.end..];
    let suffixed = AGE_SUFFIXES.iter().any(|s| {
        rest.len() >= s.len()
            && rest[..s.len()].eq_ignore_ascii_case(s.as_bytes())
            && rest.get(s.len()).is_none_or(|c| !c.is_ascii_alphanumeric())
    });
    let cued = clear_after(b, g.end) && cue_before(b, g.start, 10, AGE_CUES);
    if suffixed || cued || age_and_sex(b, g) {
        out.push(Hit::new(g.clone(), Entity::Age));
    } else if v == 90
        && let Some(plural) = [&b"s"[..], b"'s"].iter().find(|p| rest.starts_with(p))
        && clear_after(b, g.end + plural.len())
    {
        // `a woman in her late 90s`: a decade of someone's life, not a
        // reading (`HR in his 90s`, `sats in the 90s`)
        let qualified = ["early ", "mid ", "late ", "early-", "mid-", "late-"]
            .iter()
            .find(|q| phrase_before(b, g.start, q))
            .map_or(g.start, |q| g.start - q.len());
        let person = DECADE_OWNERS
            .iter()
            .find(|o| phrase_before(b, qualified, o))
            .is_some_and(|o| {
                let at = qualified - o.len();
                phrase_before(b, at, "in ")
                    && at > 4
                    && b[at - 4] == b' '
                    && is_in(DECADE_PEOPLE, &b[word_start(b, at - 4)..at - 4])
            });
        if person {
            out.push(Hit::new(g.start..g.end + plural.len(), Entity::Age));
        }
    }
}

/// Whose decade `90s` is (`her late 90s`).
const DECADE_OWNERS: &[&str] = &["her ", "his ", "their "];
/// The word before `in her 90s` that makes it a person's decade.
const DECADE_PEOPLE: &[&str] = &[
    "pt",
    "patient",
    "woman",
    "man",
    "female",
    "male",
    "lady",
    "gentleman",
    "is",
    "was",
    "now",
    "still",
];

#[cfg(test)]
mod tests {
    use super::super::scan::{digit_groups_of as digit_groups, words_of as words};
    use super::*;

    #[test]
    fn day_and_month_after_a_cue_and_not_before_an_amount() {
        for (text, date) in [
            ("F/u appt 6/15 with cardiology", "6/15"),
            ("Intubated Tuesday, extubated 1/7 without issue", "1/7"),
            ("Flu vaccine given 10/1; booster later", "10/1"),
            ("Next appointment: Monday 3/8 at 2:30 PM", "3/8"),
            ("Admit: 3/4 via ED", "3/4"),
        ] {
            assert_eq!(dates(text), [date], "{text}");
        }
        for text in [
            "ate only 1/2 of her meal",
            "Reduce dose to 1/2",
            "Dosing 1/2 as before",
            "on 2/3 maintenance fluids",
            "on 3/4 strength formula",
            "Discharged on 1/2 the home dose",
            "Since 1/2 of the tablets were lost",
            "ABX on 3/5 days",
            "Pain 4/10, improved from 7/10",
        ] {
            assert!(dates(text).is_empty(), "{text}");
        }
    }

    #[test]
    fn dates_written_without_separators() {
        assert_eq!(dates("OBR|1|||CBC|||20210304101500|||"), ["20210304101500"]);
        assert_eq!(
            dates("scan_20210304.pdf"),
            ["20210304"],
            "a file's date is a date"
        );
        assert!(dates("ab20210304").is_empty(), "inside a word");
        assert_eq!(dates("collected 202103041015 ok"), ["202103041015"]);
        assert_eq!(dates("DOB 19500102"), ["19500102"]);
        assert_eq!(dates("Rx filled 04MAR2021 qty 30"), ["04MAR2021"]);
        assert_eq!(dates("exp 4Mar2021"), ["4Mar2021"]);
        for not_a_date in [
            "acct 12345678",
            "id 20211304",
            "20210304256199",
            "31FEB2021x",
        ] {
            assert!(dates(not_a_date).is_empty(), "{not_a_date}");
        }
    }

    #[test]
    fn ages_with_a_sex_where_a_line_starts() {
        assert_eq!(found("HPI: 95F with dementia", Entity::Age), ["95"]);
        assert_eq!(found("CC: 96 M w/ SOB x3 days", Entity::Age), ["96"]);
        assert_eq!(found("93M presents with chest pain", Entity::Age), ["93"]);
        assert_eq!(found("Pt is a 91 F from home", Entity::Age), ["91"]);
        for not_an_age in [
            "Tmax: 101 F overnight",
            "Temp: 100 F",
            "dose 95 mg",
            "Room 92 F wing",
            "45F with asthma",
        ] {
            assert!(found(not_an_age, Entity::Age).is_empty(), "{not_an_age}");
        }
    }

    #[test]
    fn ages_written_with_years() {
        assert_eq!(found("a 93-yr-old man", Entity::Age), ["93"]);
        assert_eq!(found("At 99 years, she", Entity::Age), ["99"]);
        assert_eq!(found("aged 95 yrs", Entity::Age), ["95"]);
        assert!(
            found("for 12 years", Entity::Age).is_empty(),
            "89 and under"
        );
    }

    fn dates(text: &str) -> Vec<&str> {
        found(text, Entity::Date)
    }

    fn found(text: &str, entity: Entity) -> Vec<&str> {
        let mut out = Hits::new();
        find(text, &digit_groups(text.as_bytes()), &words(text), &mut out);
        out.into_iter()
            .filter(|h| h.entity == entity)
            .map(|h| &text[h.range])
            .collect()
    }

    #[test]
    fn numeric_forms() {
        for d in [
            "03/14/1980",
            "3/14/80",
            "14.03.1980",
            "1980-03-14",
            "2021/3/4",
            "12-31-1999",
            "03/2021",
        ] {
            assert_eq!(dates(&format!("on {d}.")), [d], "{d}");
        }
        assert_eq!(dates("at 2021-03-14T10:22:00Z"), ["2021-03-14"]);
        assert_eq!(dates("seen on 3/14 for"), ["3/14"]);
    }

    #[test]
    fn numeric_near_misses() {
        assert!(
            dates("5.4235577322364771e-110").is_empty(),
            "a float, and no overflow"
        );
        assert!(dates("13/14/1980").is_empty(), "no month 13 either way");
        assert!(dates("02/30/1980").is_empty(), "no February 30");
        assert!(dates("03/14-1980").is_empty(), "mixed separators");
        assert!(dates("BP 120/80 take 1/2 tab").is_empty());
        assert!(dates("version 1.2.33").is_empty(), "dotted two-digit year");
        assert!(dates("123/14/1980").is_empty());
        assert!(dates("3/14/19801").is_empty());
    }

    #[test]
    fn month_name_forms() {
        for d in [
            "March 14, 1980",
            "Mar 14 1980",
            "Mar. 14, 1980",
            "March 14th",
            "14 March 1980",
            "14th of March",
            "14-Mar-1980",
            "14-MAR-80",
            "March 2021",
            "DECEMBER 3",
        ] {
            assert_eq!(dates(&format!("on {d}; ok")), [d], "{d}");
        }
    }

    #[test]
    fn month_words() {
        assert_eq!(month_of(b"SEPT"), Some(9));
        assert_eq!(month_of(b"May"), Some(5));
        assert_eq!(month_of(b"December"), Some(12));
        assert_eq!(month_of(b"may"), None, "a month is capitalised");
        assert_eq!(month_of(b"Marching"), None);
        assert_eq!(month_of(b"Ma"), None);
    }

    #[test]
    fn month_name_near_misses() {
        assert!(dates("you may 5 times").is_empty(), "lower-case modal verb");
        assert!(dates("May I help").is_empty());
        assert!(dates("March 32").is_empty());
        assert!(dates("Mar-14 code").is_empty());
        assert!(dates("Marching 14").is_empty());
    }

    #[test]
    fn long_digit_runs() {
        assert!(dates("1/2/123456789012345678901234567890").is_empty());
        assert!(dates("on 12345678901234567890/3").is_empty());
    }

    #[test]
    fn two_slash_two_before_a_diagnosis_is_secondary_to() {
        for shorthand in [
            "Admitted 2/2 CAP, improving",
            "Seen 2/2 cellulitis, I&D done",
        ] {
            assert!(found(shorthand, Entity::Date).is_empty(), "{shorthand}");
        }
        for date in ["Seen 2/2 at noon", "seen 2/2 for f/u", "admitted 2/2."] {
            assert_eq!(found(date, Entity::Date), ["2/2"], "{date}");
        }
    }

    #[test]
    fn ages_over_89() {
        assert_eq!(found("a 92-year-old woman", Entity::Age), ["92"]);
        assert_eq!(found("age: 97", Entity::Age), ["97"]);
        assert_eq!(found("aged 101 years", Entity::Age), ["101"]);
        assert_eq!(found("93 yo M", Entity::Age), ["93"]);
        assert!(
            found("a 89-year-old", Entity::Age).is_empty(),
            "89 is allowed"
        );
        assert!(found("took 95 mg", Entity::Age).is_empty());
        assert_eq!(
            found("Pt in her late 90s, lives with son", Entity::Age),
            ["90s"]
        );
        assert_eq!(found("a man in his 90s", Entity::Age), ["90s"]);
        assert_eq!(found("a man in his 90's", Entity::Age), ["90's"]);
        assert_eq!(found("woman in her mid-90s", Entity::Age), ["90s"]);
        for reading in [
            "sats in the low 90s",
            "HR in his 90s",
            "SBP in her mid 90s after HD",
        ] {
            assert!(found(reading, Entity::Age).is_empty(), "{reading}");
        }
        assert!(found("93 yogurt", Entity::Age).is_empty());
    }
}
