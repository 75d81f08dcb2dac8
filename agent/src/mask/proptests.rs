//! Property tests: masking never turns valid JSON into invalid JSON, never
//! changes bytes outside what it masks, and with length-keeping actions never
//! changes the length; bad input of any kind gives an outcome, not a panic.

use proptest::prelude::*;
use serde_json::{Map, Value};

use super::*;

fn masker(f: impl FnOnce(&mut Profile)) -> Masker {
    let mut p = Profile::safe_harbor();
    f(&mut p);
    Masker::new(p, b"prop".to_vec())
}

/// Identifiers the detectors must find, to splice into generated text.
const PHI: &[&str] = &[
    "123-45-6789",
    "(617) 555-0123",
    "jane.doe@example.org",
    "03/14/1980",
    "4111 1111 1111 1111",
    "Dr. Okafor",
    "192.168.1.20",
    "https://example.org/p/1",
    "MRN 00123456",
    "José García",
];

/// Text around the rules that read words before and after a match (cities,
/// counties, routes, cues, decades, UDIs), spliced into generated text so
/// their look-behinds and look-aheads meet every neighbour.
const NEAR_RULES: &[&str] = &[
    "Boston MA 02134",
    "MA 02134",
    "Dr Smith, MD",
    "moved to Boston 02118",
    "500 Washington Street, Brookline",
    "from Springfield, Illinois",
    "St. Louis County",
    "RR 2 Box 14,",
    "lives at 33 main st apt 2",
    "lives on Elm Street",
    "MRN 482 9134",
    "MassHealth ID 100012345678",
    "ID 100012345678",
    "last 4 of SSN 3390",
    "(01)00643169007222(17)250128(21)SN4",
    "a man in his late 90s",
    "Admitted 2/2 CAP",
    "in ",
    "County",
    "lives at",
    "(01)",
];

/// Each of [`NEAR_RULES`] at the start and end of a text and beside each
/// kind of neighbour, every one masked without a panic, at its length, as
/// UTF-8: the edges a random prefix rarely lands on (`MA 02134` alone once
/// read before the text's start).
#[test]
fn near_rules_meet_every_neighbour() {
    const SIDES: &[&str] = &[
        "", " ", "(", ")", ",", ".", "é", "A", "a", "7", "MA ", "Dr ", ", ",
    ];
    let m = masker(|_| {});
    for rule in NEAR_RULES {
        for before in SIDES {
            for after in SIDES {
                for cut in [rule.len(), rule.len().saturating_sub(1)] {
                    let Some(core) = rule.get(..cut) else {
                        continue;
                    };
                    let text = format!("{before}{core}{after}");
                    let out = m.mask_text(&text);
                    assert_eq!(out.text.len(), text.len(), "{text:?}");
                }
            }
        }
    }
}

/// Words the detectors look for or around, to build texts from: cues,
/// states, street and county words, numbers of the shapes they take, and
/// non-ASCII letters, so every look-behind and look-ahead meets its edges.
const CUE_TOKENS: &[&str] = &[
    "MA",
    "NY",
    "ID",
    "MD",
    "02134",
    "02118-1234",
    "99213",
    "Boston",
    "Illinois",
    "New York",
    "County",
    "Parish",
    "St.",
    "Los",
    "Miami-Dade",
    "RR",
    "R.R.",
    "Rural Route",
    "Box",
    "2",
    "14",
    "lives",
    "resides",
    "at",
    "on",
    "in",
    "moved to",
    "Main",
    "main",
    "Street",
    "st",
    "Ct",
    "apt",
    "Suite",
    "#4",
    "1200",
    "her",
    "his",
    "late",
    "90s",
    "90",
    "95",
    "man",
    "is",
    "Pt",
    "MRN",
    "482",
    "9134",
    "SSN",
    "last 4 of",
    "3390",
    "123456789",
    "MassHealth",
    "(01)",
    "00643169007222",
    "(17)",
    "250128",
    "(21)",
    "2/2",
    "CAP",
    "Dr",
    "Dr.",
    "MR",
    "ASA",
    "John",
    "Smith",
    "Social Security",
    "Member",
    "é",
    "日本",
    "\u{200b}",
    "PO",
    "Home:",
    "University",
    "age",
    "years old",
    "4111",
    "1111",
    "123",
];
const CUE_SEPARATORS: &[&str] = &[" ", "", ",", ", ", "\n", ".", "-", "(", ")", ":", "é", "/"];

/// Keys, some of which name identifiers.
const KEYS: &[&str] = &[
    "note", "text", "dx", "ssn", "name", "dob", "phone", "items", "data", "type", "_meta", "id",
];

fn any_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z ]{0,30}",
        any::<String>(),
        (
            "[a-zA-Z ,.:]{0,20}",
            prop::sample::select(PHI),
            "[a-z .]{0,20}"
        )
            .prop_map(|(a, p, b)| format!("{a} {p} {b}")),
        (
            "[a-zA-Z0-9 ,.:é]{0,12}",
            prop::sample::select(NEAR_RULES),
            "[a-zA-Z0-9 ,.:()é]{0,12}"
        )
            .prop_map(|(a, p, b)| format!("{a}{p}{b}")),
        "[ -~]{0,40}",
        Just("{\"ssn\": \"123-45-6789\", \"x\": [1, 2]}".to_owned()),
        Just("mrn,name,dx\n1,Ann Lee,I10\n".to_owned()),
    ]
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..6).prop_map(|kv| {
                Value::Object(
                    kv.into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect::<Map<_, _>>(),
                )
            }),
        ]
    })
}

/// JSON text with some characters of each string written as `\u` escapes
/// (surrogate pairs included), chosen by `mask`.
fn escaped(v: &Value, mask: u64, out: &mut String) {
    match v {
        Value::String(s) => {
            out.push('"');
            for (i, c) in s.chars().enumerate() {
                let force = (mask >> (i % 64)) & 1 == 1;
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    c if (c as u32) < 0x20 || force => {
                        let mut buf = [0u16; 2];
                        for unit in c.encode_utf16(&mut buf) {
                            out.push_str(&format!("\\u{unit:04x}"));
                        }
                    }
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                escaped(item, mask.rotate_left(7), out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push_str("{\n  ");
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(",\n  ");
                }
                escaped(&Value::String(k.clone()), 0, out);
                out.push_str(": ");
                escaped(item, mask.rotate_left(13), out);
            }
            out.push_str("\n}");
        }
        other => out.push_str(&other.to_string()),
    }
}

/// JSON text (a string token) with some of its letters and non-ASCII
/// characters, chosen by `mask`, written as `\u` escapes; escapes already
/// there are left as they are.
fn escape_some(json: &str, mask: u64) -> String {
    let mut out = String::with_capacity(json.len());
    let mut chars = json.chars().enumerate().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '\\' {
            out.push(c);
            let (_, next) = chars.next().expect("an escape has a second character");
            out.push(next);
            if next == 'u' {
                (0..4).for_each(|_| out.push(chars.next().expect("four hex digits").1));
            }
        } else if (c.is_alphabetic() || !c.is_ascii()) && (mask >> (i % 64)) & 1 == 1 {
            let mut buf = [0u16; 2];
            for unit in c.encode_utf16(&mut buf) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn valid_json_stays_valid_json(v in any_json(), mask in any::<u64>(), rpc in any::<bool>()) {
        let v = if rpc { serde_json::json!({"jsonrpc": "2.0", "id": 1, "result": v}) } else { v };
        let mut text = String::new();
        escaped(&v, mask, &mut text);
        prop_assert!(serde_json::from_str::<Value>(&text).is_ok());
        let lossy = masker(|p| {
            p.set_action(&Entity::Name, Action::Hash);
            p.set_action(&Entity::Ssn, Action::Tag);
            p.set_action(&Entity::Phone, Action::Null);
            p.set_action(&Entity::Mrn, Action::Null);
            p.images = MediaPolicy::Drop;
        });
        for m in [masker(|_| {}), lossy] {
            let out = m.mask_json_bytes(text.as_bytes());
            prop_assert_eq!(&out.outcome, &Outcome::Json);
            let parsed = serde_json::from_slice::<Value>(&out.bytes);
            prop_assert!(parsed.is_ok(), "{}", String::from_utf8_lossy(&out.bytes));
            prop_assert_eq!(out.same_length, out.bytes.len() == text.len());
        }
    }

    /// A document inside a string is walked over its encoded bytes when it
    /// can be, and decoded first otherwise: both give the same masking. The
    /// document and the string holding it are each written with some
    /// characters as `\u` escapes (Python's `ensure_ascii` does this to
    /// every non-ASCII one), so inner strings have one or two layers of
    /// escapes; a leading `\u0020` makes the string one the encoded walk
    /// declines.
    #[test]
    fn embedded_documents_mask_alike_walked_or_decoded(
        v in any_json(),
        form in 0..3u8,
        inner_mask in any::<u64>(),
        outer_mask in any::<u64>(),
    ) {
        let doc = match form {
            0 => serde_json::to_string(&v).unwrap(),
            1 => serde_json::to_string_pretty(&v).unwrap(),
            _ => {
                let mut doc = String::new();
                escaped(&v, inner_mask, &mut doc);
                doc
            }
        };
        let message = |text: &str| format!(
            r#"{{"jsonrpc":"2.0","id":1,"result":{{"content":[{{"type":"text","text":{text}}}]}}}}"#
        );
        let encoded = escape_some(&Value::String(doc.clone()).to_string(), outer_mask);
        let walked = message(&encoded);
        let decoded = message(&format!("\"\\u0020{}", &encoded[1..]));
        let lossy = masker(|p| {
            p.set_action(&Entity::Name, Action::Hash);
            p.set_action(&Entity::Ssn, Action::Tag);
            p.set_action(&Entity::Phone, Action::Null);
            p.set_action(&Entity::Age, Action::Tag);
        });
        for m in [masker(|_| {}), lossy] {
            let a = m.mask_json_bytes(walked.as_bytes());
            let b = m.mask_json_bytes(decoded.as_bytes());
            let text = |bytes: &[u8]| {
                let v: Value = serde_json::from_slice(bytes).unwrap();
                v["result"]["content"][0]["text"].as_str().unwrap().to_owned()
            };
            prop_assert_eq!(format!(" {}", text(&a.bytes)), text(&b.bytes));
            prop_assert_eq!(a.counts, b.counts);
        }
    }

    #[test]
    fn same_length_actions_never_change_the_length(v in any_json(), mask in any::<u64>()) {
        let mut text = String::new();
        escaped(&v, mask, &mut text);
        let m = masker(|p| {
            p.images = MediaPolicy::Keep;
            p.audio = MediaPolicy::Keep;
            p.set_action(&Entity::Name, Action::Partial { keep: 2 });
        });
        let out = m.mask_json_bytes(text.as_bytes());
        prop_assert!(out.same_length);
        prop_assert_eq!(out.bytes.len(), text.len());
        let mut buf = text.clone().into_bytes();
        let report = m.mask_json_in_place(&mut buf);
        prop_assert!(report.same_length);
        prop_assert_eq!(&buf[..], &out.bytes[..]);
    }

    #[test]
    fn bytes_outside_identifiers_are_unchanged(
        parts in prop::collection::vec((prop::sample::select(&["note", "dx", "comment"][..]), "[a-z ]{0,24}", prop::option::of(prop::sample::select(PHI))), 1..8)
    ) {
        let mut map = Map::new();
        for (i, (k, filler, phi)) in parts.iter().enumerate() {
            let value = match phi {
                Some(p) => format!("{filler} {p} {filler}"),
                None => filler.clone(),
            };
            map.insert(format!("{k}{i}"), Value::String(value));
        }
        let text = Value::Object(map).to_string();
        // Where the identifiers are in the encoded text.
        let mut allowed = vec![false; text.len()];
        for p in PHI {
            for (at, _) in text.match_indices(p) {
                allowed[at..at + p.len()].iter_mut().for_each(|a| *a = true);
            }
        }
        let out = masker(|_| {}).mask_json_bytes(text.as_bytes());
        prop_assert_eq!(out.bytes.len(), text.len());
        for (i, (a, b)) in text.bytes().zip(out.bytes.iter()).enumerate() {
            prop_assert!(a == *b || allowed[i], "byte {} changed outside an identifier: {}", i, String::from_utf8_lossy(&out.bytes));
        }
        let expected = parts.iter().filter(|p| p.2.is_some()).count() as u64;
        prop_assert_eq!(out.counts.total(), expected);
    }

    #[test]
    fn neutral_text_is_never_touched(s in "[a-z ,.;()]{0,200}") {
        let m = masker(|_| {});
        let out = m.mask_text(&s);
        prop_assert_eq!(out.text.as_ref(), s.as_str());
        prop_assert!(out.counts.is_empty());
    }

    #[test]
    fn any_bytes_give_an_outcome(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let m = masker(|p| p.max_depth = 16);
        let out = m.mask_json_bytes(&bytes);
        prop_assert_eq!(out.bytes.len() == bytes.len(), out.same_length);
        prop_assert!(std::str::from_utf8(&out.bytes).is_ok() || out.outcome == Outcome::Json);
    }

    #[test]
    fn texts_of_cue_words_mask_without_a_panic(
        parts in prop::collection::vec(
            (prop::sample::select(CUE_SEPARATORS), prop::sample::select(CUE_TOKENS)),
            1..10,
        )
    ) {
        let text: String = parts.iter().flat_map(|(sep, tok)| [*sep, *tok]).collect();
        let out = masker(|_| {}).mask_text(&text);
        prop_assert_eq!(out.text.len(), text.len());
        let doc = serde_json::json!({ "note": text }).to_string();
        let json = masker(|_| {}).mask_json_bytes(doc.as_bytes());
        prop_assert!(serde_json::from_slice::<Value>(&json.bytes).is_ok());
    }

    #[test]
    fn text_masking_keeps_utf8_and_length(s in any::<String>(), phi in prop::sample::select(PHI)) {
        let text = format!("{s} {phi} {s}");
        let out = masker(|_| {}).mask_text(&text);
        prop_assert_eq!(out.text.len(), text.len());
        prop_assert!(!out.counts.is_empty());
    }
}
