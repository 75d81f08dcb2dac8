//! Identifiers written as groups of digits: SSNs, phone and fax numbers
//! (NANP and E.164), payment cards, NPIs and IPv4 addresses. Each matcher
//! reads the digit groups and the exact separators between them, then
//! validates.

use std::ops::Range;

use super::checksum;
use super::scan::{between, clear_after, clear_before, cue_before};
use super::{Hit, Hits};
use crate::mask::entity::Entity;

const SSN_CUES: &[&str] = &["ssn", "social security", "ss#", "soc sec", "social sec"];
const PHONE_CUES: &[&str] = &[
    "phone", "tel", "cell", "mobile", "fax", "call", "contact", "ph", "pager", "text", "reached",
    "number", "cb", "home", "work",
];
const NPI_CUES: &[&str] = &["npi"];
/// How far before a number its cue may stand (`Phone (home): 6175550100`).
const CUE_WINDOW: usize = 24;

pub(crate) fn find(text: &str, groups: &[Range<usize>], out: &mut Hits) {
    let b = text.as_bytes();
    // Each matcher only for the group lengths it can start with.
    for (i, g) in groups.iter().enumerate() {
        let len = g.len();
        let plus = g.start > 0 && b[g.start - 1] == b'+';
        if len == 3 || len == 9 {
            ssn(b, groups, i, out);
        }
        if matches!(len, 3 | 10 | 11) || plus {
            phone(b, groups, i, out);
        }
        if len == 4 || (13..=19).contains(&len) {
            card(b, groups, i, out);
        }
        if len == 10 {
            npi(b, groups, i, out);
        }
        if len <= 3 && b.get(g.end) == Some(&b'.') {
            ipv4(b, groups, i, out);
        }
    }
}

fn lens(groups: &[Range<usize>], i: usize, want: &[usize]) -> bool {
    i + want.len() <= groups.len() && groups[i..].iter().zip(want).all(|(g, &n)| g.len() == n)
}

fn ssn(b: &[u8], g: &[Range<usize>], i: usize, out: &mut Hits) {
    if lens(g, i, &[3, 2, 4]) {
        let s1 = between(b, &g[i], &g[i + 1]);
        let s2 = between(b, &g[i + 1], &g[i + 2]);
        let sep_ok = s1 == s2 && matches!(s1, b"-" | b" ");
        if sep_ok
            && clear_before(b, g[i].start)
            && let Some(end) = ssn_end(b, g[i + 2].end)
            && checksum::ssn(&b[g[i].clone()], &b[g[i + 1].clone()], &b[g[i + 2].clone()])
        {
            out.push(Hit::new(g[i].start..end, Entity::Ssn));
        }
    } else if g[i].len() == 9
        && clear_before(b, g[i].start)
        && let Some(end) = ssn_end(b, g[i].end)
    {
        let d = &b[g[i].clone()];
        if checksum::ssn(&d[..3], &d[3..5], &d[5..])
            && cue_before(b, g[i].start, CUE_WINDOW, SSN_CUES)
        {
            out.push(Hit::new(g[i].start..end, Entity::Ssn));
        }
    }
}

/// Where an SSN whose digits end at `j` ends: there, or after the letter
/// (and letter or digit) that made it an old Medicare number (HICN,
/// `412-67-3390A`, `…3390B1`); `None` when it runs on into a longer token.
fn ssn_end(b: &[u8], j: usize) -> Option<usize> {
    if clear_after(b, j) {
        return Some(j);
    }
    if !b[j].is_ascii_uppercase() {
        return None;
    }
    let k = j
        + 1
        + usize::from(
            b.get(j + 1)
                .is_some_and(|c| c.is_ascii_uppercase() || c.is_ascii_digit()),
        );
    b.get(k)
        .is_none_or(|c| !c.is_ascii_alphanumeric())
        .then_some(k)
}

/// A separator allowed inside a written phone number.
fn phone_sep(s: &[u8]) -> bool {
    matches!(s, b"-" | b"." | b" " | b"\xc2\xa0")
}

fn phone(b: &[u8], g: &[Range<usize>], i: usize, out: &mut Hits) {
    if let Some(hit) = nanp(b, g, i) {
        out.push(hit);
    } else if let Some(hit) = e164(b, g, i) {
        out.push(hit);
    }
}

/// `(617) 555-0100`, `617-555-0100`, `617.555.0100`, `617 555 0100`, with
/// an optional `+1`/`1` in front and an extension after; ten bare digits
/// only after a phone cue or `+1`.
fn nanp(b: &[u8], g: &[Range<usize>], i: usize) -> Option<Hit> {
    let (area, exchange, last, mut start) = if lens(g, i, &[3, 3, 4]) {
        let s1 = between(b, &g[i], &g[i + 1]);
        let s2 = between(b, &g[i + 1], &g[i + 2]);
        let paren =
            g[i].start > 0 && b[g[i].start - 1] == b'(' && matches!(s1, b")" | b") " | b")-");
        // `617/555-0100`: a slash only after the area code
        let slash = s1 == b"/" && s2 == b"-";
        if !(paren || slash || phone_sep(s1)) || !(slash || phone_sep(s2)) {
            return None;
        }
        let start = if paren { g[i].start - 1 } else { g[i].start };
        (&b[g[i].clone()], &b[g[i + 1].clone()], i + 2, start)
    } else if lens(g, i, &[3, 7]) && matches!(between(b, &g[i], &g[i + 1]), b"-" | b" ") {
        // `617-5550103`
        let rest = &b[g[i + 1].clone()];
        (&b[g[i].clone()], &rest[..3], i + 1, g[i].start)
    } else if lens(g, i, &[3, 4])
        && between(b, &g[i], &g[i + 1]) == b"-"
        // not the tail of a longer number (`(617) 555-0123`)
        && (i == 0 || g[i].start - g[i - 1].end > 2)
        && cue_before(b, g[i].start, CUE_WINDOW, PHONE_CUES)
    {
        // `call back at 555-0187`: seven digits, only after a phone cue
        let exchange = &b[g[i].clone()];
        let end = g[i + 1].end;
        let ok =
            checksum::nanp(b"617", exchange) && clear_before(b, g[i].start) && clear_after(b, end);
        return ok.then(|| Hit::new(g[i].start..end, Entity::Phone));
    } else if g[i].len() == 10 || (g[i].len() == 11 && b[g[i].start] == b'1') {
        let d = &b[g[i].start + g[i].len() - 10..g[i].end];
        (&d[..3], &d[3..6], i, g[i].start)
    } else {
        return None;
    };
    if !checksum::nanp(area, exchange) {
        return None;
    }
    // A country code `1` or `+1` before the area code (not the `1` that
    // ends some other token, as in `a1 (617) …`).
    let mut prefixed = false;
    if i > 0 && &b[g[i - 1].clone()] == b"1" {
        let sep = between(b, &g[i - 1], &g[i]);
        let sep = sep.strip_suffix(b"(").unwrap_or(sep);
        let one = g[i - 1].start;
        let plus = one > 0 && b[one - 1] == b'+';
        let one_start = if plus { one - 1 } else { one };
        if (sep.is_empty() || phone_sep(sep)) && clear_before(b, one_start) {
            start = one;
            prefixed = true;
        }
    }
    if start > 0 && b[start - 1] == b'+' {
        start -= 1;
        prefixed = true;
    }
    let bare = last == i;
    if bare && !prefixed && !cue_before(b, start, CUE_WINDOW, PHONE_CUES) {
        return None;
    }
    let mut end = g[last].end;
    if !clear_before(b, start) || !clear_after(b, end) {
        return None;
    }
    if let Some(ext) = extension(b, end, g, last) {
        end = ext;
    }
    Some(Hit::new(start..end, Entity::Phone))
}

/// The end of an extension (` x123`, ` ext. 123`) right after a number.
fn extension(b: &[u8], end: usize, g: &[Range<usize>], last: usize) -> Option<usize> {
    let next = g.get(last + 1)?;
    let gap = &b[end..next.start];
    let gap = gap.to_ascii_lowercase();
    let ok = matches!(
        gap.as_slice(),
        b" x" | b" x " | b" ext " | b" ext. " | b" ext." | b" ext" | b" x."
    );
    (ok && next.len() <= 6 && clear_after(b, next.end)).then_some(next.end)
}

/// `+44 20 7946 0958`: a plus, then 8-15 digits in groups joined by single
/// separators; `+1` numbers must be valid NANP (handled above).
fn e164(b: &[u8], g: &[Range<usize>], i: usize) -> Option<Hit> {
    let start = g[i].start.checked_sub(1)?;
    if b[start] != b'+' || b[g[i].start] == b'1' || !clear_before(b, start) {
        return None;
    }
    let mut digits = g[i].len();
    let mut j = i;
    while j + 1 < g.len() && digits < 15 {
        let sep = between(b, &g[j], &g[j + 1]);
        if !(phone_sep(sep) || matches!(sep, b" (" | b") " | b"(" | b")")) || g[j + 1].len() > 8 {
            break;
        }
        if digits + g[j + 1].len() > 15 {
            break;
        }
        digits += g[j + 1].len();
        j += 1;
    }
    ((8..=15).contains(&digits) && clear_after(b, g[j].end))
        .then(|| Hit::new(start..g[j].end, Entity::Phone))
}

/// A card number: one run of 13-19 digits, or 4-4-4-4(-3), 4-6-5 or 4-6-4
/// groups joined by one kind of separator; issuer prefix and Luhn checked.
fn card(b: &[u8], g: &[Range<usize>], i: usize, out: &mut Hits) {
    const SHAPES: [&[usize]; 4] = [&[4, 4, 4, 4, 3], &[4, 4, 4, 4], &[4, 6, 5], &[4, 6, 4]];
    let whole = (13..=19).contains(&g[i].len()).then_some(i);
    // Every shape the groups fit, longest first: a 19-digit shape that fails
    // Luhn may be a card and its CVV (`4111 1111 1111 1111 123`).
    let shaped = SHAPES.iter().filter_map(|shape| {
        if !lens(g, i, shape) {
            return None;
        }
        let last = i + shape.len() - 1;
        let sep = between(b, &g[i], &g[i + 1]);
        let joined =
            matches!(sep, b" " | b"-") && (i..last).all(|k| between(b, &g[k], &g[k + 1]) == sep);
        joined.then_some(last)
    });
    for last in whole.into_iter().chain(shaped) {
        let (start, end) = (g[i].start, g[last].end);
        if !clear_before(b, start) || !clear_after(b, end) {
            continue;
        }
        let digits: Vec<u8> = b[start..end]
            .iter()
            .copied()
            .filter(u8::is_ascii_digit)
            .collect();
        if checksum::card(&digits) {
            out.push(Hit::new(start..end, Entity::Card));
            return;
        }
    }
}

/// Ten digits with the NPI check digit, after an `NPI` cue (bare ten-digit
/// numbers starting 1 or 2 are as often timestamps or account numbers).
fn npi(b: &[u8], g: &[Range<usize>], i: usize, out: &mut Hits) {
    let r = &g[i];
    if r.len() == 10
        && clear_before(b, r.start)
        && clear_after(b, r.end)
        && checksum::npi(&b[r.clone()])
        && cue_before(b, r.start, CUE_WINDOW, NPI_CUES)
    {
        out.push(Hit::new(r.clone(), Entity::Npi));
    }
}

/// Four dotted numbers of at most 255, not part of a longer dotted run
/// (version numbers such as `1.2.3.4.5`).
fn ipv4(b: &[u8], g: &[Range<usize>], i: usize, out: &mut Hits) {
    if i + 4 > g.len() {
        return;
    }
    let parts = &g[i..i + 4];
    let dotted = (0..3).all(|k| between(b, &parts[k], &parts[k + 1]) == b".");
    let octets = parts.iter().all(|p| {
        p.len() <= 3
            && std::str::from_utf8(&b[p.clone()])
                .ok()
                .and_then(|s| s.parse::<u16>().ok())
                .is_some_and(|v| v <= 255)
    });
    let (start, mut end) = (parts[0].start, parts[3].end);
    // A CIDR prefix length belongs to the address.
    if b.get(end) == Some(&b'/')
        && g.get(i + 4)
            .is_some_and(|n| n.start == end + 1 && n.len() <= 2)
    {
        end = g[i + 4].end;
    }
    // A version number shaped like an address (`version 10.2.1.4`) is
    // masked too: no word before it is trusted to say it is no address.
    if dotted && octets && clear_before(b, start) && clear_after(b, end) {
        out.push(Hit::new(start..end, Entity::Ip));
    }
}

#[cfg(test)]
mod tests {
    use super::super::scan::digit_groups_of as digit_groups;
    use super::*;

    fn found(text: &str) -> Vec<(Entity, &str)> {
        let mut out = Hits::new();
        find(text, &digit_groups(text.as_bytes()), &mut out);
        out.into_iter()
            .map(|h| (h.entity, &text[h.range]))
            .collect()
    }

    fn only(text: &str, entity: Entity) -> Vec<&str> {
        found(text)
            .into_iter()
            .filter(|(e, _)| *e == entity)
            .map(|(_, s)| s)
            .collect()
    }

    #[test]
    fn ssn_positives() {
        assert_eq!(only("SSN 123-45-6789.", Entity::Ssn), ["123-45-6789"]);
        assert_eq!(only("ssn: 123 45 6789", Entity::Ssn), ["123 45 6789"]);
        assert_eq!(
            only("Social Security Number 123456789", Entity::Ssn),
            ["123456789"]
        );
    }

    #[test]
    fn ssn_in_an_old_medicare_number() {
        assert_eq!(
            only("Old Medicare HICN 412-67-3390A", Entity::Ssn),
            ["412-67-3390A"]
        );
        assert_eq!(only("HICN 412-67-3390B1.", Entity::Ssn), ["412-67-3390B1"]);
        assert!(
            only("412-67-3390ABC", Entity::Ssn).is_empty(),
            "a longer token"
        );
        assert!(only("412-67-3390a", Entity::Ssn).is_empty());
    }

    #[test]
    fn ssn_near_misses_and_invalid() {
        assert!(only("123-45-67890", Entity::Ssn).is_empty(), "too long");
        assert!(
            only("9123-45-6789", Entity::Ssn).is_empty(),
            "inside a longer number"
        );
        assert!(
            only("123-45 6789", Entity::Ssn).is_empty(),
            "mixed separators"
        );
        assert!(
            only("000-12-3456 666-12-3456 912-12-3456", Entity::Ssn).is_empty(),
            "bad area"
        );
        assert!(
            only("123-00-4567 123-45-0000", Entity::Ssn).is_empty(),
            "zero group or serial"
        );
        assert!(
            only("order 123456789", Entity::Ssn).is_empty(),
            "bare nine digits need a cue"
        );
    }

    #[test]
    fn phone_positives() {
        for p in [
            "(617) 555-0123",
            "617-555-0123",
            "617.555.0123",
            "617 555 0123",
            "+1 617 555 0123",
            "1-617-555-0123",
            "+1(617)555-0123",
            "+16175550123",
            "+44 20 7946 0958",
            "+49 30 901820",
        ] {
            assert_eq!(only(&format!("call {p} now"), Entity::Phone), [p], "{p}");
        }
        assert_eq!(only("fax: 6175550123", Entity::Phone), ["6175550123"]);
        assert_eq!(
            only("Best number is 617-5550103", Entity::Phone),
            ["617-5550103"]
        );
        assert_eq!(
            only("Call 617/555-0100 to confirm", Entity::Phone),
            ["617/555-0100"]
        );
        assert_eq!(
            only("wife can be reached at 6175550162 after 5pm", Entity::Phone),
            ["6175550162"]
        );
        assert_eq!(
            only(
                "asked for a call back at 555-0187 re: refill",
                Entity::Phone
            ),
            ["555-0187"]
        );
        assert_eq!(
            only("617-555-0123 ext. 42", Entity::Phone),
            ["617-555-0123 ext. 42"]
        );
        assert_eq!(
            only("a1 (617) 555-0123", Entity::Phone),
            ["(617) 555-0123"],
            "a token's 1 is no country code"
        );
    }

    #[test]
    fn phone_near_misses_and_invalid() {
        assert!(
            only("117-555-0123", Entity::Phone).is_empty(),
            "area code starts 1"
        );
        assert!(
            only("617-055-0123", Entity::Phone).is_empty(),
            "exchange starts 0"
        );
        assert!(
            only("911-555-0123", Entity::Phone).is_empty(),
            "N11 area code"
        );
        assert!(
            only("order 6175550123", Entity::Phone).is_empty(),
            "bare ten digits need a cue"
        );
        assert!(only("617-555-01234", Entity::Phone).is_empty(), "too long");
        assert!(
            only("lot 555-0187", Entity::Phone).is_empty(),
            "seven digits need a cue"
        );
        assert!(
            only("call 055-0187", Entity::Phone).is_empty(),
            "exchange starts 0"
        );
        assert!(only("+12", Entity::Phone).is_empty());
    }

    #[test]
    fn cards() {
        assert_eq!(
            only("card 4111 1111 1111 1111 exp", Entity::Card),
            ["4111 1111 1111 1111"]
        );
        assert_eq!(
            only("4111-1111-1111-1111", Entity::Card),
            ["4111-1111-1111-1111"]
        );
        assert_eq!(
            only("amex 3782 822463 10005", Entity::Card),
            ["3782 822463 10005"]
        );
        assert_eq!(only("5555555555554444", Entity::Card), ["5555555555554444"]);
        assert_eq!(
            only("card 4111 1111 1111 1111 123 on file", Entity::Card),
            ["4111 1111 1111 1111"],
            "a CVV after the card is no fifth group"
        );
        assert!(
            only("4111 1111 1111 1112", Entity::Card).is_empty(),
            "Luhn fails"
        );
        assert!(
            only("4111-1111 1111-1111", Entity::Card).is_empty(),
            "mixed separators"
        );
        assert!(
            only("1234567890123456", Entity::Card).is_empty(),
            "no issuer"
        );
    }

    #[test]
    fn npis() {
        assert_eq!(only("NPI: 1234567893", Entity::Npi), ["1234567893"]);
        assert!(
            only("NPI: 1234567890", Entity::Npi).is_empty(),
            "check digit"
        );
        assert!(
            only("id 1234567893", Entity::Npi).is_empty(),
            "needs the cue"
        );
    }

    #[test]
    fn ipv4s() {
        assert_eq!(only("from 192.168.10.24.", Entity::Ip), ["192.168.10.24"]);
        assert_eq!(only("net 10.0.0.0/8 ok", Entity::Ip), ["10.0.0.0/8"]);
        assert!(only("v1.2.3.4.5", Entity::Ip).is_empty(), "version string");
        assert_eq!(only("build server 10.0.0.5", Entity::Ip), ["10.0.0.5"]);
        assert!(only("300.1.1.1", Entity::Ip).is_empty(), "octet over 255");
        assert!(only("1.2.3", Entity::Ip).is_empty());
    }
}
