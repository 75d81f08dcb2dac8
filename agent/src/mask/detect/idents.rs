//! Letter-and-digit identifiers: Medicare MBIs, VINs, DEA numbers and IBANs
//! by their formats and check digits, and record, account, member, licence,
//! plate and device numbers after the words that name them ("MRN: 123",
//! "serial no. X-123").

use std::ops::Range;
use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};

use super::checksum;
use super::scan::between;
use super::{Hit, Hits};
use crate::mask::entity::Entity;

/// `tokens` is scratch space for the letter-and-digit runs.
pub(crate) fn find(text: &str, tokens: &mut Vec<Range<usize>>, out: &mut Hits) {
    let b = text.as_bytes();
    alnum_runs(b, tokens);
    let tokens = &tokens[..];
    for (k, t) in tokens.iter().enumerate() {
        let tok = &b[t.clone()];
        if !tok.iter().any(u8::is_ascii_digit) || tok.iter().any(u8::is_ascii_lowercase) {
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
            4 => dashed_mbi(b, tokens, k, out),
            _ => {}
        }
        iban(b, tokens, k, out);
    }
    labelled(b, out);
}

fn alnum_runs(b: &[u8], out: &mut Vec<Range<usize>>) {
    out.clear();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_alphanumeric() {
            let s = i;
            while i < b.len() && b[i].is_ascii_alphanumeric() {
                i += 1;
            }
            out.push(s..i);
        } else {
            i += 1;
        }
    }
}

/// `1EG4-TE5-MK73`.
fn dashed_mbi(b: &[u8], t: &[Range<usize>], k: usize, out: &mut Hits) {
    if k + 2 >= t.len() || t[k + 1].len() != 3 || t[k + 2].len() != 4 {
        return;
    }
    if between(b, &t[k], &t[k + 1]) != b"-" || between(b, &t[k + 1], &t[k + 2]) != b"-" {
        return;
    }
    let joined: Vec<u8> = t[k..k + 3]
        .iter()
        .flat_map(|r| b[r.clone()].iter().copied())
        .collect();
    if checksum::mbi(&joined) {
        out.push(Hit::new(t[k].start..t[k + 2].end, Entity::Mbi));
    }
}

/// An IBAN written whole or in groups of four (`GB82 WEST 1234 …`): the
/// longest run from this token that passes mod 97.
fn iban(b: &[u8], t: &[Range<usize>], k: usize, out: &mut Hits) {
    let first = &b[t[k].clone()];
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
    let mut best = checksum::iban(&joined).then_some(k);
    if first.len() == 4 {
        let mut j = k;
        while j + 1 < t.len() && joined.len() < 34 {
            let next = &b[t[j + 1].clone()];
            if between(b, &t[j], &t[j + 1]) != b" " || next.len() > 4 || !upper_or_digit(next) {
                break;
            }
            joined.extend_from_slice(next);
            j += 1;
            if checksum::iban(&joined) {
                best = Some(j);
            }
        }
    }
    if let Some(last) = best {
        out.push(Hit::new(t[k].start..t[last].end, Entity::Iban));
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
    ("chart #", Entity::Mrn),
    ("patient id", Entity::Mrn),
    ("patient number", Entity::Mrn),
    ("account number", Entity::Account),
    ("account no", Entity::Account),
    ("account", Entity::Account),
    ("acct", Entity::Account),
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
        .build(CUES.iter().map(|(cue, _)| cue))
        .expect("cue patterns are valid")
});

const FILLER_WORDS: [&[u8]; 6] = [b"number", b"num", b"no.", b"no", b"is", b"id"];

/// Filler between a cue and its value: `: `, ` #`, ` no. `, ` is `.
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

fn labelled(b: &[u8], out: &mut Hits) {
    for m in CUE_MATCHER.find_iter(b) {
        let (start, end) = (m.start(), m.end());
        let word_start = start == 0 || !b[start - 1].is_ascii_alphanumeric();
        let word_end = b.get(end).is_none_or(|c| !c.is_ascii_alphabetic());
        if !word_start || !word_end {
            continue;
        }
        let entity = CUES[m.pattern().as_usize()].1.clone();
        let vstart = skip_filler(b, end);
        let mut vend = vstart;
        while vend < b.len()
            && (b[vend].is_ascii_alphanumeric()
                || (b[vend] == b'-' && vend + 1 < b.len() && b[vend + 1].is_ascii_alphanumeric()))
        {
            vend += 1;
        }
        let value = &b[vstart..vend];
        let digits = value.iter().filter(|c| c.is_ascii_digit()).count();
        let plausible = if entity == Entity::Plate {
            (2..=8).contains(&value.len()) && digits >= 1
        } else {
            (4..=25).contains(&value.len()) && digits >= 2
        };
        if plausible {
            out.push(Hit::new(vstart..vend, entity));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str, entity: Entity) -> Vec<&str> {
        let mut out = Hits::new();
        find(text, &mut Vec::new(), &mut out);
        super::super::resolve(&mut out);
        out.into_iter()
            .filter(|h| h.entity == entity)
            .map(|h| &text[h.range])
            .collect()
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
    }
}
