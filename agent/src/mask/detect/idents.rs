//! Letter-and-digit identifiers: Medicare MBIs, VINs, DEA numbers and IBANs
//! by their formats and check digits, and record, account, member, licence,
//! plate and device numbers after the words that name them ("MRN: 123",
//! "serial no. X-123").

use std::ops::Range;
use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};

use super::checksum;
use super::scan::{between, phrase_before, word_start};
use super::{Hit, Hits};
use crate::mask::entity::Entity;

/// `groups` are the text's digit runs: every identifier found here holds a
/// digit, so only the letter-and-digit tokens around those runs (and the
/// ones right after them) are read, not every word of the text.
pub(crate) fn find(text: &str, groups: &[Range<usize>], out: &mut Hits) {
    let b = text.as_bytes();
    let mut done = 0;
    for g in groups {
        if g.start < done {
            continue; // another run of a token already judged
        }
        let t = token_around(b, g);
        done = t.end;
        let tok = &b[t.clone()];
        if tok.iter().any(u8::is_ascii_lowercase) {
            continue;
        }
        match tok.len() {
            17 if checksum::vin(tok) && tok.iter().any(u8::is_ascii_alphabetic) => {
                out.push(Hit::new(t.clone(), Entity::Vin))
            }
            11 if checksum::mbi(tok) => out.push(Hit::new(t.clone(), Entity::Mbi)),
            9 if checksum::dea(tok)
                && tok[..2]
                    .iter()
                    .all(|c| c.is_ascii_uppercase() || *c == b'9') =>
            {
                out.push(Hit::new(t.clone(), Entity::Dea))
            }
            4 => dashed_mbi(b, &t, out),
            14 if t.start >= 4 && &b[t.start - 4..t.start] == b"(01)" => udi(b, &t, out),
            _ => {}
        }
        iban(b, &t, out);
    }
    // A labelled value holds a digit and cues hold none, so no cue starts
    // after the last digit: the text past it is not searched.
    if let Some(last) = groups.last() {
        labelled(&b[..last.end], b, out);
    }
}

/// `(01)` before the 14-character token `t`: a UDI in GS1's form when `t`
/// is a GTIN with a valid check digit and fields follow it. A GTIN alone
/// names a product; with its lot, expiry or serial, one patient's device.
fn udi(b: &[u8], t: &Range<usize>, out: &mut Hits) {
    let end = gs1_chain_end(b, t.end);
    if end > t.end && checksum::gs1(&b[t.clone()]) {
        out.push(Hit::new(t.start - 4..end, Entity::Device));
    }
}

/// A UDI in GS1's form, `(01)` and the device's GTIN then more `(NN)`
/// fields (expiry, lot, serial): where its last field ends.
fn gs1_chain_end(b: &[u8], mut end: usize) -> usize {
    while let Some(field) = b.get(end..end + 4)
        && field[0] == b'('
        && field[1..3].iter().all(u8::is_ascii_digit)
        && field[3] == b')'
    {
        let value = b[end + 4..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric())
            .count();
        if value == 0 {
            break;
        }
        end += 4 + value;
    }
    end
}

/// The maximal run of ASCII letters and digits holding `g`.
fn token_around(b: &[u8], g: &Range<usize>) -> Range<usize> {
    let start = b[..g.start]
        .iter()
        .rposition(|c| !c.is_ascii_alphanumeric())
        .map_or(0, |p| p + 1);
    let end = b[g.end..]
        .iter()
        .position(|c| !c.is_ascii_alphanumeric())
        .map_or(b.len(), |p| g.end + p);
    start..end
}

/// The next maximal run of ASCII letters and digits at or after `from`.
fn next_token(b: &[u8], from: usize) -> Option<Range<usize>> {
    let start = from + b[from..].iter().position(u8::is_ascii_alphanumeric)?;
    Some(token_around(b, &(start..start)))
}

/// `1EG4-TE5-MK73`.
fn dashed_mbi(b: &[u8], t: &Range<usize>, out: &mut Hits) {
    let Some(t1) = next_token(b, t.end) else {
        return;
    };
    let Some(t2) = next_token(b, t1.end) else {
        return;
    };
    if t1.len() != 3 || t2.len() != 4 {
        return;
    }
    // dashes or spaces, the same both times: `1EG4-TE5-MK73`, `1EG4 TE5 MK73`
    let sep = between(b, t, &t1);
    if !matches!(sep, b"-" | b" ") || between(b, &t1, &t2) != sep {
        return;
    }
    let joined: Vec<u8> = [t, &t1, &t2]
        .iter()
        .flat_map(|r| b[(*r).clone()].iter().copied())
        .collect();
    if checksum::mbi(&joined) {
        out.push(Hit::new(t.start..t2.end, Entity::Mbi));
    }
}

/// An IBAN written whole or in groups of four (`GB82 WEST 1234 …`): the
/// longest run from this token that passes mod 97.
fn iban(b: &[u8], t: &Range<usize>, out: &mut Hits) {
    let first = &b[t.clone()];
    let starts_like = first.len() >= 4
        && first[..2].iter().all(u8::is_ascii_uppercase)
        && first[2..4].iter().all(u8::is_ascii_digit);
    if !starts_like {
        return;
    }
    let upper_or_digit = |s: &[u8]| {
        s.iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    };
    let mut joined = first.to_vec();
    let mut best = checksum::iban(&joined).then_some(t.end);
    if first.len() == 4 {
        let mut last = t.clone();
        while joined.len() < 34 {
            let Some(next) = next_token(b, last.end) else {
                break;
            };
            let group = &b[next.clone()];
            if between(b, &last, &next) != b" " || group.len() > 4 || !upper_or_digit(group) {
                break;
            }
            joined.extend_from_slice(group);
            last = next;
            if checksum::iban(&joined) {
                best = Some(last.end);
            }
        }
    }
    if let Some(end) = best {
        out.push(Hit::new(t.start..end, Entity::Iban));
    }
}

/// Words that name the identifier right after them; longest match wins
/// (`license plate` before `license`).
const CUES: &[(&str, Entity)] = &[
    ("mrn", Entity::Mrn),
    ("mr#", Entity::Mrn),
    ("mr #", Entity::Mrn),
    ("medical record number", Entity::Mrn),
    ("medical record no", Entity::Mrn),
    ("medical record", Entity::Mrn),
    ("chart number", Entity::Mrn),
    ("med rec", Entity::Mrn),
    ("hosp #", Entity::Mrn),
    ("hospital #", Entity::Mrn),
    ("hospital number", Entity::Mrn),
    ("pt id", Entity::Mrn),
    ("csn", Entity::Mrn),
    ("encounter #", Entity::Mrn),
    ("encounter id", Entity::Mrn),
    ("encounter number", Entity::Mrn),
    ("visit id", Entity::Mrn),
    ("visit #", Entity::Mrn),
    ("accession number", Entity::Mrn),
    ("accession no", Entity::Mrn),
    ("accession", Entity::Mrn),
    ("rx #", Entity::Mrn),
    ("prescription #", Entity::Mrn),
    ("prescription number", Entity::Mrn),
    ("chart #", Entity::Mrn),
    ("patient id", Entity::Mrn),
    ("patient number", Entity::Mrn),
    ("account number", Entity::Account),
    ("account no", Entity::Account),
    ("account", Entity::Account),
    ("acct", Entity::Account),
    ("fin", Entity::Account),
    ("claim #", Entity::Account),
    ("claim number", Entity::Account),
    ("claim no", Entity::Account),
    ("claim id", Entity::Account),
    ("auth #", Entity::Account),
    ("authorization #", Entity::Account),
    ("authorization number", Entity::Account),
    ("prior auth #", Entity::Account),
    ("mbi", Entity::Mbi),
    ("medicare id", Entity::Mbi),
    ("medicare number", Entity::Mbi),
    ("member id", Entity::Mbi),
    ("member number", Entity::Mbi),
    ("member #", Entity::Mbi),
    ("subscriber id", Entity::Mbi),
    ("policy number", Entity::Mbi),
    ("policy no", Entity::Mbi),
    ("policy #", Entity::Mbi),
    ("insurance id", Entity::Mbi),
    ("beneficiary id", Entity::Mbi),
    ("health plan id", Entity::Mbi),
    ("medicaid id", Entity::Mbi),
    ("medicaid number", Entity::Mbi),
    ("medicaid", Entity::Mbi),
    ("mbr id", Entity::Mbi),
    // a bare `ID` names an identifier only before a long number (below)
    ("id", Entity::Mrn),
    ("ssn", Entity::Ssn),
    ("ss#", Entity::Ssn),
    ("social security number", Entity::Ssn),
    ("social security no", Entity::Ssn),
    ("social security", Entity::Ssn),
    ("subscriber #", Entity::Mbi),
    ("subscriber number", Entity::Mbi),
    ("member", Entity::Mbi),
    ("id #", Entity::Mbi),
    ("id#", Entity::Mbi),
    ("license number", Entity::License),
    ("license no", Entity::License),
    ("license #", Entity::License),
    ("license", Entity::License),
    ("licence", Entity::License),
    ("driver's license", Entity::License),
    ("drivers license", Entity::License),
    ("driver license", Entity::License),
    ("dl#", Entity::License),
    ("dl #", Entity::License),
    ("dl no", Entity::License),
    ("dl number", Entity::License),
    ("certificate number", Entity::License),
    ("certificate no", Entity::License),
    ("license plate", Entity::Plate),
    ("licence plate", Entity::Plate),
    ("plate number", Entity::Plate),
    ("plate no", Entity::Plate),
    ("plate", Entity::Plate),
    ("serial number", Entity::Device),
    ("serial no", Entity::Device),
    ("serial #", Entity::Device),
    ("serial", Entity::Device),
    ("s/n", Entity::Device),
    ("sn", Entity::Device),
    ("device id", Entity::Device),
    ("device serial", Entity::Device),
    ("udi", Entity::Device),
    ("imei", Entity::Device),
];

static CUE_MATCHER: LazyLock<AhoCorasick> = LazyLock::new(|| {
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostLongest)
        .kind(Some(AhoCorasickKind::DFA))
        .build(
            CUES.iter()
                .map(|(cue, _)| *cue)
                .chain(MEDICAID_PLANS.iter().copied()),
        )
        .expect("cue patterns are valid")
});

/// Builds the cue matcher now rather than on the first text a masker reads.
pub(crate) fn prepare() {
    LazyLock::force(&CUE_MATCHER);
}

const FILLER_WORDS: [&[u8]; 7] = [b"number", b"num", b"no.", b"no", b"is", b"id", b"ending in"];

/// Filler between a cue and its value: `: `, ` #`, ` no. `, ` is `, ` ending in `.
fn skip_filler(b: &[u8], mut at: usize) -> usize {
    loop {
        let rest = &b[at..];
        let word = FILLER_WORDS.iter().find(|w| {
            rest.len() > w.len()
                && rest[..w.len()].eq_ignore_ascii_case(w)
                && !rest[w.len()].is_ascii_alphanumeric()
        });
        if let Some(w) = word {
            at += w.len();
        } else if rest
            .first()
            .is_some_and(|c| matches!(c, b' ' | b':' | b'#' | b'=' | b'.' | b'\t'))
        {
            at += 1;
        } else {
            return at;
        }
    }
}

/// Values after the cues found in `searched`, a prefix of the text `b`.
fn labelled(searched: &[u8], b: &[u8], out: &mut Hits) {
    for m in CUE_MATCHER.find_iter(searched) {
        let (start, end) = (m.start(), m.end());
        let word_start = start == 0 || !b[start - 1].is_ascii_alphanumeric();
        // a cue ending in `#` may touch its value (`Encounter #E1234567`)
        let word_end = b[end - 1] == b'#' || b.get(end).is_none_or(|c| !c.is_ascii_alphabetic());
        if !word_start || !word_end {
            continue;
        }
        // patterns past CUES are Medicaid plans (see CUE_MATCHER)
        let (entity, plan) = CUES
            .get(m.pattern().as_usize())
            .map_or((Entity::Mbi, true), |(_, e)| (e.clone(), false));
        let vstart = skip_filler(b, end);
        let cue = &b[start..end];
        let bare_id = cue.eq_ignore_ascii_case(b"id");
        let vend = if bare_id {
            run_end(b, vstart)
        } else {
            value_end(b, vstart)
        };
        let value = &b[vstart..vend];
        let digits = value.iter().filter(|c| c.is_ascii_digit()).count();
        let plausible = match entity {
            Entity::Plate => (3..=8).contains(&value.len()) && digits >= 1,
            // a whole SSN the SSN rule may not take, or `last 4 of SSN 3390`
            Entity::Ssn => {
                digits == 9
                    || (digits == 4
                        && value.len() == 4
                        && cue.len() <= 3
                        && (["last 4 of ", "last four of "]
                            .iter()
                            .any(|p| phrase_before(b, start, p))
                            || b[end..vstart].ends_with(b"ending in ")))
            }
            // `ID 100012345678`, `Pt ID: ...`, not `Order ID 12345678`
            _ if bare_id => {
                (6..=25).contains(&value.len()) && digits >= 6 && bare_id_owner(b, start)
            }
            // a plan's name before its card's number, not a year or a waiver
            _ if plan => (8..=25).contains(&value.len()) && digits >= 6,
            _ => (4..=25).contains(&value.len()) && digits >= 2,
        };
        if plausible {
            out.push(Hit::new(vstart..vend, entity));
        }
    }
}

/// States' Medicaid plans, named as their cards name them: cues for a
/// member number, before a card's number of eight characters or more.
const MEDICAID_PLANS: &[&str] = &[
    "masshealth",
    "medi-cal",
    "tenncare",
    "badgercare",
    "soonercare",
];

/// Whether a bare `ID` at `at` is a person's: first on its line or after
/// punctuation, or after a word for the person (`Pt ID`, `Member ID`); not
/// `Order ID`, `Request ID`, `Lot ID`.
fn bare_id_owner(b: &[u8], at: usize) -> bool {
    let before = b[..at].trim_ascii_end();
    match before.last() {
        None => true,
        Some(c) if !c.is_ascii_alphanumeric() => true,
        Some(_) => {
            let word = &before[word_start(before, before.len())..];
            [
                "pt",
                "patient",
                "member",
                "subscriber",
                "beneficiary",
                "his",
                "her",
            ]
            .iter()
            .any(|w| word.eq_ignore_ascii_case(w.as_bytes()))
        }
    }
}

/// Letters, digits and inner dashes from `at`: where they end.
fn run_end(b: &[u8], mut at: usize) -> usize {
    while at < b.len()
        && (b[at].is_ascii_alphanumeric()
            || (b[at] == b'-' && b.get(at + 1).is_some_and(u8::is_ascii_alphanumeric)))
    {
        at += 1;
    }
    at
}

/// Where a labelled value starting at `at` ends: letters, digits and inner
/// dashes, and a second group of three to five digits after one space when
/// the first is a short group of digits (`MRN 482 9134`).
fn value_end(b: &[u8], at: usize) -> usize {
    let end = run_end(b, at);
    let short_digits = (3..=4).contains(&(end - at)) && b[at..end].iter().all(u8::is_ascii_digit);
    if short_digits && b.get(end) == Some(&b' ') {
        let next = end + 1;
        let digits = b[next..].iter().take_while(|c| c.is_ascii_digit()).count();
        if (3..=5).contains(&digits)
            && b.get(next + digits)
                .is_none_or(|c| !c.is_ascii_alphanumeric())
        {
            return next + digits;
        }
    }
    end
}

#[cfg(test)]
mod tests {
    use super::super::scan::digit_groups_of as digit_groups;
    use super::*;

    fn found(text: &str, entity: Entity) -> Vec<&str> {
        find_all(text)
            .into_iter()
            .filter(|(e, _)| *e == entity)
            .map(|(_, t)| t)
            .collect()
    }

    fn find_all(text: &str) -> Vec<(Entity, &str)> {
        let mut out = Hits::new();
        find(text, &digit_groups(text.as_bytes()), &mut out);
        super::super::resolve(&mut out);
        out.into_iter()
            .map(|h| (h.entity, &text[h.range]))
            .collect()
    }

    #[test]
    fn tokens_around_and_after() {
        let b = b"x AB12cd-34 ";
        assert_eq!(token_around(b, &(4..6)), 2..8);
        assert_eq!(next_token(b, 8), Some(9..11));
        assert_eq!(next_token(b, 11), None);
        assert_eq!(token_around(b"12", &(0..2)), 0..2);
    }

    #[test]
    fn mbi() {
        assert_eq!(found("MBI 1EG4TE5MK73.", Entity::Mbi), ["1EG4TE5MK73"]);
        assert_eq!(found("card 1EG4-TE5-MK73", Entity::Mbi), ["1EG4-TE5-MK73"]);
        assert!(found("1SG4TE5MK73 and 1eg4te5mk73", Entity::Mbi).is_empty());
    }

    #[test]
    fn vin_dea_iban() {
        assert_eq!(
            found("VIN 1HGCM82633A004352", Entity::Vin),
            ["1HGCM82633A004352"]
        );
        assert!(found("1HGCM82634A004352", Entity::Vin).is_empty());
        assert_eq!(found("DEA AB1234563", Entity::Dea), ["AB1234563"]);
        assert!(found("AB1234564", Entity::Dea).is_empty());
        assert_eq!(
            found("IBAN GB82 WEST 1234 5698 7654 32 paid", Entity::Iban),
            ["GB82 WEST 1234 5698 7654 32"]
        );
        assert_eq!(
            found("DE89370400440532013000", Entity::Iban),
            ["DE89370400440532013000"]
        );
        assert!(found("GB82 WEST 1234 5698 7654 33", Entity::Iban).is_empty());
    }

    #[test]
    fn mbi_with_spaces() {
        assert_eq!(found("MBI 1EG4 TE5 MK73.", Entity::Mbi), ["1EG4 TE5 MK73"]);
        assert!(
            found("1EG4 TE5-MK73", Entity::Mbi).is_empty(),
            "one separator"
        );
    }

    #[test]
    fn record_claim_plan_and_device_cues() {
        for (text, entity, value) in [
            ("Med Rec #: 4829134", Entity::Mrn, "4829134"),
            ("CSN 5512309981 today", Entity::Mrn, "5512309981"),
            (
                "Surgical pathology accession #: S21-04512",
                Entity::Mrn,
                "S21-04512",
            ),
            ("Rx #: 7723419", Entity::Mrn, "7723419"),
            ("Encounter #E1234567", Entity::Mrn, "E1234567"),
            ("FIN 7700123", Entity::Account, "7700123"),
            (
                "Claim # 2021030400123 filed",
                Entity::Account,
                "2021030400123",
            ),
            ("Prior auth # PA-77812-3", Entity::Account, "PA-77812-3"),
            ("Medicaid #: 12345678", Entity::Mbi, "12345678"),
            ("Ins: Aetna, ID# W123456789", Entity::Mbi, "W123456789"),
            ("Subscriber #: 884512390-01", Entity::Mbi, "884512390-01"),
            ("Insulin pump SN: NG1234567H", Entity::Device, "NG1234567H"),
        ] {
            assert_eq!(found(text, entity.clone()), [value], "{text}");
        }
    }

    #[test]
    fn no_cue_holds_a_digit() {
        // `find` searches for cues only up to the last digit on this ground
        assert!(
            CUES.iter()
                .all(|(cue, _)| !cue.bytes().any(|c| c.is_ascii_digit()))
        );
    }

    #[test]
    fn labelled_numbers() {
        assert_eq!(found("MRN: 00123456,", Entity::Mrn), ["00123456"]);
        assert_eq!(
            found("medical record no. A-778812", Entity::Mrn),
            ["A-778812"]
        );
        assert_eq!(found("Acct #44556677", Entity::Account), ["44556677"]);
        assert_eq!(
            found("member id is XKJ123456789", Entity::Mbi),
            ["XKJ123456789"]
        );
        assert_eq!(found("license plate 7ABC123", Entity::Plate), ["7ABC123"]);
        assert_eq!(
            found("Driver's License: D1234567", Entity::License),
            ["D1234567"]
        );
        assert_eq!(
            found("serial number SN-99812-X", Entity::Device),
            ["SN-99812-X"]
        );
        assert!(found("mrna vaccine 2 doses", Entity::Mrn).is_empty());
        assert!(
            found("account for 12 cases", Entity::Account).is_empty(),
            "value must follow the cue"
        );
        assert!(found("MRN pending", Entity::Mrn).is_empty());
        assert!(found("glucose 120 mg/dL 130", Entity::License).is_empty());
        // the value's last digit ends the text searched for cues; letters
        // after it still belong to the value, and later cues are not read
        assert_eq!(
            found(
                "Plate 4XY and serial AB12CD, licence pending",
                Entity::Device
            ),
            ["AB12CD"]
        );
        assert_eq!(found("Plate 4XY and serial AB12CD", Entity::Plate), ["4XY"]);
        assert!(found("Blood agar plate 2A showed GPC", Entity::Plate).is_empty());
    }

    #[test]
    fn udis_in_gs1_form() {
        assert_eq!(
            found(
                "Implant UDI (01)00643169007222(17)250128(21)SN44123 recorded.",
                Entity::Device
            ),
            ["(01)00643169007222(17)250128(21)SN44123"]
        );
        assert!(
            found(
                "ref (01)00643169007223(21)A1 bad check digit",
                Entity::Device
            )
            .is_empty()
        );
        assert!(
            found("Tubing set (01)00643169007222 reorder", Entity::Device).is_empty(),
            "a GTIN alone is a product"
        );
    }

    #[test]
    fn grouped_numbers_medicaid_plans_bare_ids_and_partial_ssns() {
        assert_eq!(
            found("MRN 482 9134 (old system)", Entity::Mrn),
            ["482 9134"]
        );
        assert_eq!(found("MRN 4829134 100 mg", Entity::Mrn), ["4829134"]);
        assert_eq!(
            found("MRN 482 91 days", Entity::Mrn),
            Vec::<&str>::new(),
            "a group too short to join, and 482 alone is too short"
        );
        assert_eq!(
            found("MassHealth ID 100012345678 pending", Entity::Mbi),
            ["100012345678"]
        );
        assert_eq!(
            found("ID 100012345678 on file", Entity::Mrn),
            ["100012345678"]
        );
        assert!(found("per ID 2019 guidelines", Entity::Mrn).is_empty());
        assert!(found("BCx from 2/14 grew MSSA; ID following.", Entity::Mrn).is_empty());
        assert_eq!(
            found("verified with last 4 of SSN 3390 and DOB", Entity::Ssn),
            ["3390"]
        );
        assert!(found("SSN on file, 12 copies", Entity::Ssn).is_empty());
        assert_eq!(found("SSN ending in 3390 verified", Entity::Ssn), ["3390"]);
        assert_eq!(found("Pt ID: 4471923", Entity::Mrn), ["4471923"]);
        // from a review of PHI-free text near these rules
        for near_miss in [
            "Order ID 12345678 shipped",
            "ERROR job ID 99887766 failed with 503",
            "ID 100 500 mg ceftriaxone",
            "Income: Social Security 1400/month",
            "SSN 2023 application",
            "MassHealth 2024 renewal",
            "TennCare 1115 waiver",
            "MassHealth 02134 office",
        ] {
            let hits = find_all(near_miss);
            assert!(hits.is_empty(), "{near_miss}: {hits:?}");
        }
    }
}
