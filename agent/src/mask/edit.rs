//! Replacements planned over a text, and applying them: in place when none
//! changes the length, by splicing otherwise.
//!
//! Every fill is ASCII without backslashes, commas or pipes, so it can be
//! written literally into a JSON string, a CSV cell or a markdown cell, and
//! any range that starts and ends on character boundaries stays valid UTF-8
//! after the replacement. Only a whole-token replacement in JSON (a number
//! becoming the string `"[AGE]"`) holds quotes; `lift` escapes them when
//! that JSON is itself inside a JSON string.

use std::ops::Range;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Edit {
    pub range: Range<usize>,
    pub fill: Fill,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fill {
    /// One `*` per byte of the range, whatever the range holds.
    Stars,
    /// Literal replacement text (a tag, a hash pseudonym, `000`).
    Text(Box<str>),
    /// The range is a whole JSON scalar token: `null`, padded with spaces
    /// to the range's length when it is long enough (JSON allows the
    /// whitespace, and the length stays the same).
    Null,
}

impl Edit {
    pub fn stars(range: Range<usize>) -> Edit {
        Edit {
            range,
            fill: Fill::Stars,
        }
    }

    pub fn text(range: Range<usize>, text: impl Into<Box<str>>) -> Edit {
        Edit {
            range,
            fill: Fill::Text(text.into()),
        }
    }

    fn replacement_len(&self) -> usize {
        match &self.fill {
            Fill::Stars => self.range.len(),
            Fill::Text(t) => t.len(),
            Fill::Null => self.range.len().max(4),
        }
    }

    fn write_to(&self, out: &mut Vec<u8>) {
        match &self.fill {
            Fill::Stars => out.resize(out.len() + self.range.len(), b'*'),
            Fill::Text(t) => out.extend_from_slice(t.as_bytes()),
            Fill::Null => {
                out.extend_from_slice(b"null");
                out.resize(out.len() + self.range.len().saturating_sub(4), b' ');
            }
        }
    }

    fn write_over(&self, dst: &mut [u8]) {
        match &self.fill {
            Fill::Stars => dst.fill(b'*'),
            Fill::Text(t) => dst.copy_from_slice(t.as_bytes()),
            Fill::Null => {
                dst[..4].copy_from_slice(b"null");
                dst[4..].fill(b' ');
            }
        }
    }
}

/// True when applying `edits` leaves the text's length unchanged.
pub(crate) fn keeps_length(edits: &[Edit]) -> bool {
    edits.iter().all(|e| e.replacement_len() == e.range.len())
}

/// Copy of `src` with the (sorted, disjoint) edits applied.
pub(crate) fn splice(src: &[u8], edits: &[Edit]) -> Vec<u8> {
    let grown: usize = edits.iter().map(|e| e.replacement_len()).sum();
    let mut out = Vec::with_capacity(src.len() + grown);
    let mut at = 0;
    for e in edits {
        out.extend_from_slice(&src[at..e.range.start]);
        e.write_to(&mut out);
        at = e.range.end;
    }
    out.extend_from_slice(&src[at..]);
    out
}

/// Applies length-keeping edits where the bytes are.
pub(crate) fn overwrite(buf: &mut [u8], edits: &[Edit]) {
    debug_assert!(keeps_length(edits));
    for e in edits {
        e.write_over(&mut buf[e.range.clone()]);
    }
}

/// `splice` for text: the result is valid UTF-8 because every range sits
/// on character boundaries and every fill is ASCII.
pub(crate) fn apply_str(src: &str, edits: &[Edit]) -> String {
    if edits.is_empty() {
        return src.to_owned();
    }
    String::from_utf8(splice(src.as_bytes(), edits)).expect("edits keep UTF-8 valid")
}

/// Moves edits planned over a decoded JSON string into the bytes of its
/// encoding: `at(i)` is the encoded offset of decoded byte `i`.
pub(crate) fn lift(
    edits: impl IntoIterator<Item = Edit>,
    mut at: impl FnMut(usize) -> usize,
    out: &mut Vec<Edit>,
) {
    out.extend(edits.into_iter().map(|e| {
        let fill = match e.fill {
            Fill::Text(t) if t.contains('"') => Fill::Text(t.replace('"', "\\\"").into()),
            fill => fill,
        };
        Edit {
            range: at(e.range.start)..at(e.range.end),
            fill,
        }
    }));
}

/// Stars over all but the last `keep` characters of `range` in `text`.
pub(crate) fn keep_last_chars(text: &str, range: Range<usize>, keep: usize) -> Option<Edit> {
    let slice = &text[range.clone()];
    let kept_from = slice
        .char_indices()
        .rev()
        .nth(keep.saturating_sub(1))
        .map_or(0, |(i, _)| i);
    let cut = if keep == 0 { slice.len() } else { kept_from };
    (cut > 0).then(|| Edit::stars(range.start..range.start + cut))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_and_overwrite_agree_when_lengths_keep() {
        let src = b"ab 123-45-6789 cd";
        let edits = vec![
            Edit::stars(3..14),
            Edit {
                range: 15..17,
                fill: Fill::Null,
            },
        ];
        assert!(!keeps_length(&edits));
        let edits = vec![Edit::stars(3..14)];
        assert!(keeps_length(&edits));
        let mut buf = src.to_vec();
        overwrite(&mut buf, &edits);
        assert_eq!(buf, splice(src, &edits));
        assert_eq!(&buf, b"ab *********** cd");
    }

    #[test]
    fn null_pads_to_length_or_grows() {
        let src = br#"{"a":"123456","b":"1"}"#;
        let edits = vec![
            Edit {
                range: 5..13,
                fill: Fill::Null,
            },
            Edit {
                range: 18..21,
                fill: Fill::Null,
            },
        ];
        assert_eq!(splice(src, &edits), br#"{"a":null    ,"b":null}"#.to_vec());
    }

    #[test]
    fn keep_last_counts_characters_not_bytes() {
        let s = "Zoë Ñúñez";
        let e = keep_last_chars(s, 0..s.len(), 3).unwrap();
        assert_eq!(apply_str(s, &[e]), "*********ñez"); // 9 bytes before: ë, Ñ and ú take two each
        assert_eq!(keep_last_chars("ab", 0..2, 5), None);
        assert_eq!(keep_last_chars("ab", 0..2, 0), Some(Edit::stars(0..2)));
    }

    #[test]
    fn lift_maps_through_escapes() {
        // decoded "a-b" from encoded a\u002db: offsets 0,1,7,8
        let map = [0usize, 1, 7, 8];
        let mut out = Vec::new();
        lift(vec![Edit::stars(1..2)], |i| 10 + map[i], &mut out);
        assert_eq!(out, vec![Edit::stars(11..17)]);
        out.clear();
        lift(vec![Edit::text(0..1, "\"[AGE]\"")], |i| i, &mut out);
        assert_eq!(out, vec![Edit::text(0..1, r#"\"[AGE]\""#)]);
    }
}
