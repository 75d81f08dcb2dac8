//! `label: value` in text ("DOB: 03/14/1980", "Patient Name = Jane Doe",
//! `"ssn": "123-45-6789"` in JSON that did not parse): the value after a
//! label that a key rule names is masked whole.

use std::ops::Range;

use memchr::memchr2_iter;

use super::detect::{Hit, Hits};
use super::entity::Entity;
use super::keys::{KeyRules, applies};

/// Longest label looked at before a colon, in bytes and in words.
const MAX_LABEL_BYTES: usize = 40;
const MAX_LABEL_WORDS: usize = 4;

fn label_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b' ' | b'_' | b'-' | b'\'' | b'#' | b'/')
}

pub(crate) fn find(text: &str, rules: &KeyRules, out: &mut Hits) {
    if rules.is_empty() {
        return;
    }
    let b = text.as_bytes();
    let mut done = 0;
    for p in memchr2_iter(b':', b'=', b) {
        if p < done
            || b.get(p + 1)
                .is_some_and(|&c| c == b'/' || c == b':' || c == b'=')
        {
            continue;
        }
        let Some((entity, quoted)) = label_before(text, p, rules) else {
            continue;
        };
        let Some(mut value) = value_after(b, p + 1, quoted) else {
            continue;
        };
        if single_token(entity) {
            // `Email: a@b.org Records at …`: the value is its first token.
            let len = b[value.clone()]
                .iter()
                .position(u8::is_ascii_whitespace)
                .unwrap_or(value.len());
            value.end = value.start + len;
            while value.end > value.start && matches!(b[value.end - 1], b'.' | b',' | b')') {
                value.end -= 1;
            }
            if value.is_empty() {
                continue;
            }
        }
        if applies(entity, &text[value.clone()]) {
            done = value.end;
            out.push(Hit::new(value, entity.clone()));
        }
    }
}

/// Kinds whose values never hold a space: their label's value ends at the
/// first one. (Names, addresses, dates, phone and card numbers may have
/// spaces and run to the end of the line or sentence.)
fn single_token(entity: &Entity) -> bool {
    use Entity::*;
    matches!(
        entity,
        Email
            | Url
            | Mrn
            | Mbi
            | Account
            | Npi
            | Dea
            | Vin
            | Ip
            | Mac
            | Zip
            | Plate
            | Device
            | License
            | Age
    )
}

/// The rule named by the (longest matching) last one to four words before
/// the colon at `p`, and whether the label was quoted (JSON-like text).
fn label_before<'r>(text: &str, p: usize, rules: &'r KeyRules) -> Option<(&'r Entity, bool)> {
    let b = text.as_bytes();
    let mut end = p;
    while end > 0 && b[end - 1] == b' ' {
        end -= 1;
    }
    let quoted = end > 0 && matches!(b[end - 1], b'"' | b'\'');
    if quoted {
        end -= 1;
    }
    let mut start = end;
    while start > 0 && end - start < MAX_LABEL_BYTES && label_byte(b[start - 1]) {
        start -= 1;
    }
    let label = text[start..end].trim();
    if label.is_empty() {
        return None;
    }
    let words: Vec<&str> = label.split([' ']).filter(|w| !w.is_empty()).collect();
    let n = words.len();
    (1..=n.min(MAX_LABEL_WORDS))
        .rev()
        .find_map(|k| rules.lookup(&words[n - k..].concat()))
        .map(|e| (e, quoted))
}

/// The value after a label: to the end of the line, a `;`, `|` or tab, a
/// closing quote, a comma that starts another `label:`, or the end of the
/// sentence (`. ` before a capital, unless the dot ends an initial or an
/// abbreviation: `Jane Q. Doe`, `12 Main St. Apt 4`). Trailing spaces and
/// sentence punctuation stay outside.
fn value_after(b: &[u8], from: usize, quoted_label: bool) -> Option<Range<usize>> {
    let mut start = from;
    while start < b.len() && matches!(b[start], b' ' | b'\t') {
        start += 1;
    }
    let quote = b.get(start).copied().filter(|c| matches!(c, b'"' | b'\''));
    if let Some(q) = quote {
        start += 1;
        let mut end = start;
        while end < b.len() && b[end] != q && b[end] != b'\n' {
            end += if b[end] == b'\\' { 2 } else { 1 };
        }
        let end = end.min(b.len());
        return (end > start).then_some(start..end);
    }
    let mut end = start;
    while end < b.len() {
        let c = b[end];
        if matches!(c, b'\n' | b'\r' | b';' | b'|' | b'\t') {
            break;
        }
        if quoted_label && matches!(c, b',' | b'}' | b']') {
            break;
        }
        if c == b',' && next_is_label(b, end + 1) {
            break;
        }
        if c == b' ' && next_is_word_label(b, end + 1) {
            break;
        }
        if c == b'.' && sentence_ends(b, start, end) {
            break;
        }
        end += 1;
    }
    while end > start && matches!(b[end - 1], b' ' | b'.' | b',') {
        end -= 1;
    }
    (end > start).then_some(start..end)
}

/// Words whose dot does not end a sentence.
const ABBREVIATIONS: &[&[u8]] = &[
    b"dr", b"mr", b"mrs", b"ms", b"st", b"ave", b"rd", b"apt", b"jr", b"sr", b"no", b"blvd", b"ln",
];

/// The dot at `dot` (inside a value starting at `start`) ends a sentence:
/// a space and a capital or digit follow, and the word before it is neither
/// an initial nor an abbreviation.
fn sentence_ends(b: &[u8], start: usize, dot: usize) -> bool {
    let next_starts = b.get(dot + 1) == Some(&b' ')
        && b.get(dot + 2)
            .is_some_and(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    if !next_starts {
        return false;
    }
    let word_start = b[start..dot]
        .iter()
        .rposition(|c| !c.is_ascii_alphanumeric())
        .map_or(start, |i| start + i + 1);
    let word = &b[word_start..dot];
    let initial = word.len() == 1 && word[0].is_ascii_uppercase();
    !initial && !ABBREVIATIONS.iter().any(|a| word.eq_ignore_ascii_case(a))
}

/// ` Word Word:` ahead: another label starts here.
fn next_is_label(b: &[u8], at: usize) -> bool {
    let rest = &b[at..b.len().min(at + MAX_LABEL_BYTES)];
    let Some(colon) = rest.iter().position(|&c| c == b':') else {
        return false;
    };
    let label = &rest[..colon];
    label.iter().any(u8::is_ascii_alphabetic)
        && label.iter().all(|&c| label_byte(c))
        && !label.trim_ascii().is_empty()
}

/// A capitalised one-word label at `at` (`Sex: F`, `Allergies: PCN`): the
/// next field of a line of several, so the value before it ends. One word
/// only, so that a name's last word before a label (`Jane Doe Age: 45`) is
/// not taken for one.
fn next_is_word_label(b: &[u8], at: usize) -> bool {
    if !b.get(at).is_some_and(u8::is_ascii_uppercase) {
        return false;
    }
    let n = b[at..]
        .iter()
        .take(MAX_LABEL_BYTES)
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'#'))
        .count();
    b.get(at + n) == Some(&b':') && b.get(at + n + 1).is_none_or(|c| matches!(c, b' ' | b'\t'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<(Entity, &str)> {
        let mut out = Hits::new();
        find(text, &KeyRules::safe_harbor(), &mut out);
        out.into_iter()
            .map(|h| (h.entity, &text[h.range]))
            .collect()
    }

    #[test]
    fn a_value_ends_at_the_next_label_on_its_line() {
        assert_eq!(
            found("DOB: 1/2/1950 Sex: F Allergies: PCN"),
            [(Entity::Date, "1/2/1950")]
        );
        assert_eq!(
            found("Name: Jane Q. Doe Age: 45"),
            [(Entity::Name, "Jane Q. Doe")]
        );
        assert_eq!(
            found("Phone: 617-555-0100 Best time: mornings"),
            [(Entity::Phone, "617-555-0100 Best time: mornings")],
            "a lower-case word is no label: the value goes on"
        );
    }

    #[test]
    fn labels_in_lines() {
        assert_eq!(
            found("Patient Name: Jane Q. Doe\nDOB: 03/14/1980\nDiagnosis: E11.9"),
            [(Entity::Name, "Jane Q. Doe"), (Entity::Date, "03/14/1980")]
        );
        assert_eq!(
            found("Name: John Smith, DOB: 1/2/1980."),
            [(Entity::Name, "John Smith"), (Entity::Date, "1/2/1980")]
        );
        assert_eq!(
            found("Address: 12 Main St, Boston, MA 02110"),
            [(Entity::Address, "12 Main St, Boston, MA 02110")]
        );
        assert_eq!(found("phone = 555 0100; ok"), [(Entity::Phone, "555 0100")]);
        assert_eq!(
            found("Email: a@b.org. Seen today."),
            [(Entity::Email, "a@b.org")]
        );
        assert_eq!(
            found("Email: a@b.org Records at x"),
            [(Entity::Email, "a@b.org")]
        );
        assert_eq!(
            found("Name: Jane Q. Doe. MRN: 123. Next"),
            [(Entity::Name, "Jane Q. Doe"), (Entity::Mrn, "123")]
        );
        assert_eq!(
            found("Address: 12 Main St. Apt 4"),
            [(Entity::Address, "12 Main St. Apt 4")]
        );
        assert_eq!(
            found("- MRN: A-1 | Age: 93 | Age: 40"),
            [(Entity::Mrn, "A-1"), (Entity::Age, "93")]
        );
    }

    #[test]
    fn json_like_text() {
        assert_eq!(
            found(r#"{"ssn": "123-45-6789", "age": 95, "dx": "x"#),
            [(Entity::Ssn, "123-45-6789"), (Entity::Age, "95")]
        );
    }

    #[test]
    fn not_labels() {
        assert!(found("Time: 10:30, see https://x.org").is_empty());
        assert!(found("Note: name was verified").is_empty());
        assert!(found("Name:").is_empty());
    }
}
