//! A second accuracy check beside the synthetic corpus: short clinical
//! snippets written by hand (`data/clinical_snippets.json`) the many ways
//! people write identifiers, and PHI-free ones full of look-alikes (doses,
//! scores, codes, abbreviations). The corpus's generator shares the
//! detectors' assumptions; these do not, so they show what the corpus
//! cannot: what real text still gets past the detectors, or over-masked.

use std::fmt::Write as _;

use serde::Deserialize;

use super::{Masker, Profile};

const SNIPPETS: &str = include_str!("../../data/clinical_snippets.json");

#[derive(Debug, Deserialize)]
struct Snippet {
    id: String,
    kind: Kind,
    text: String,
    /// Strings that must not survive masking.
    must: Vec<String>,
    /// Strings that must survive it.
    keep: Vec<String>,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Kind {
    /// Something in it must be masked.
    Identifiers,
    None,
}

fn snippets() -> Vec<Snippet> {
    serde_json::from_str(SNIPPETS).expect("data/clinical_snippets.json is valid")
}

/// How the safe-harbor profile does on the snippets.
#[derive(Default)]
struct Tally {
    with_ids: usize,
    without: usize,
    /// Snippets where a `keep` string was masked.
    over: usize,
    /// Snippets with identifiers where a `must` string survived.
    leaked: Vec<String>,
    /// PHI-free snippets that masking changed.
    altered: Vec<String>,
}

impl Tally {
    /// Snippets with identifiers where every `must` string is gone.
    fn hidden(&self) -> usize {
        self.with_ids - self.leaked.len()
    }

    /// PHI-free snippets left exactly as they were.
    fn unchanged(&self) -> usize {
        self.without - self.altered.len()
    }
}

fn tally() -> Tally {
    let masker = Masker::new(Profile::safe_harbor(), b"snippets".to_vec());
    let mut t = Tally::default();
    for s in snippets() {
        let out = masker.mask_text(&s.text).text;
        if s.keep.iter().any(|k| !out.contains(k.as_str())) {
            t.over += 1;
        }
        match s.kind {
            Kind::Identifiers => {
                t.with_ids += 1;
                if s.must.iter().any(|m| out.contains(m.as_str())) {
                    t.leaked.push(s.id);
                }
            }
            Kind::None => {
                t.without += 1;
                if out != s.text {
                    t.altered.push(s.id);
                }
            }
        }
    }
    t
}

/// The snippets' part of the engine's bench report.
pub(crate) fn report() -> String {
    let t = tally();
    let mut r = String::new();
    let _ = writeln!(
        r,
        "hand-written clinical snippets (data/clinical_snippets.json), profile safe-harbor"
    );
    let _ = writeln!(
        r,
        "  with identifiers: {} of {} fully masked; still visible in {}",
        t.hidden(),
        t.with_ids,
        t.leaked.join(" ")
    );
    let _ = writeln!(
        r,
        "  without: {} of {} left unchanged; altered: {}",
        t.unchanged(),
        t.without,
        t.altered.join(" ")
    );
    let _ = writeln!(r, "  text that must stay was masked in {}", t.over);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_is_in_its_text() {
        let all = snippets();
        assert!(all.len() > 200);
        for s in &all {
            for l in s.must.iter().chain(&s.keep) {
                assert!(s.text.contains(l.as_str()), "{}: {l:?}", s.id);
            }
            // (a kind other than the two fails to parse)
            assert_eq!(s.kind == Kind::Identifiers, !s.must.is_empty(), "{}", s.id);
        }
    }

    /// Not a goal but a floor: what the detectors reach today, so that a
    /// change that loses ground here is seen (raise it as they improve).
    #[test]
    fn no_ground_is_lost() {
        let t = tally();
        assert!(
            t.hidden() >= FLOOR_HIDDEN,
            "{} < {FLOOR_HIDDEN}: {:?}",
            t.hidden(),
            t.leaked
        );
        assert!(
            t.unchanged() >= FLOOR_UNCHANGED,
            "{} < {FLOOR_UNCHANGED}: {:?}",
            t.unchanged(),
            t.altered
        );
    }

    const FLOOR_HIDDEN: usize = 139;
    const FLOOR_UNCHANGED: usize = 93;
}
