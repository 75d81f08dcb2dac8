//! Tokens the detectors share: runs of digits, words, and the boundary and
//! context tests around them. Offsets are byte offsets into the text.

use std::ops::Range;

use crate::mask::simd;

/// Maximal runs of ASCII digits, into `out`.
pub(crate) fn digit_groups(b: &[u8], out: &mut Vec<Range<usize>>) {
    out.extend(digit_runs(b));
}

/// Maximal runs of ASCII digits, in order (what `digit_groups` collects).
pub(crate) fn digit_runs(b: &[u8]) -> impl Iterator<Item = Range<usize>> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < b.len() && !b[i].is_ascii_digit() {
            i += 1;
        }
        let s = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        (i > s).then_some(s..i)
    })
}

/// Maximal runs of letters (any script), with apostrophes between letters
/// kept inside (`O'Brien`, `Parkinson's`), into `words`; and in the same
/// walk the maximal runs of ASCII digits, into `groups` (what
/// `digit_groups` finds), so free text is read once for both.
///
/// Sixteen bytes of plain ASCII (no apostrophe) at a time are split by
/// their letter and digit masks; other blocks are read byte by byte.
pub(crate) fn words_and_digits(
    text: &str,
    words: &mut Vec<Range<usize>>,
    groups: &mut Vec<Range<usize>>,
) {
    let b = text.as_bytes();
    // the word and the digit run open where the last block ended
    let mut word: Option<usize> = None;
    let mut digits: Option<usize> = None;
    let mut i = 0;
    while i < b.len() {
        let Some(block) = b.get(i..i + 16) else { break };
        let classes = simd::word_bytes(block.try_into().expect("16 bytes"));
        if classes.special != 0 {
            // this block is read byte by byte (which may end past it)
            let until = i + 16;
            finish_digits(b, &mut i, digits.take(), groups);
            i = by_bytes(text, i, until, &mut word, words, groups);
            continue;
        }
        runs(classes.letters, i, &mut word, words);
        runs(classes.digits, i, &mut digits, groups);
        i += 16;
    }
    finish_digits(b, &mut i, digits, groups);
    let i = by_bytes(text, i, b.len(), &mut word, words, groups);
    if let Some(s) = word {
        words.push(s..i);
    }
}

/// Ends the digit run that started at `open` (if one is open at `i`) where
/// its digits end, as the byte-by-byte reader reads runs whole.
fn finish_digits(b: &[u8], i: &mut usize, open: Option<usize>, groups: &mut Vec<Range<usize>>) {
    if let Some(s) = open {
        *i += b[*i..].iter().take_while(|c| c.is_ascii_digit()).count();
        groups.push(s..*i);
    }
}

/// The runs of set bits of a block's `mask` at `at`, pushed into `out` as
/// they end; `open` is where a run open from the block before started, and
/// is left where a run still open at this block's end started.
#[inline(always)]
fn runs(mask: u32, at: usize, open: &mut Option<usize>, out: &mut Vec<Range<usize>>) {
    let carry = u32::from(open.is_some());
    let before = (mask << 1 | carry) & 0xffff;
    let mut edges = (mask ^ before) & 0xffff;
    while edges != 0 {
        let p = at + edges.trailing_zeros() as usize;
        match open.take() {
            Some(s) => out.push(s..p),
            None => *open = Some(p),
        }
        edges &= edges - 1;
    }
}

/// [`words_and_digits`] byte by byte from `i` until at least `until` (at
/// most the text's length): a run or character may take it further, and it
/// returns where it stopped (at once if `i` is past `until`), with the word
/// still open in `start`.
fn by_bytes(
    text: &str,
    mut i: usize,
    until: usize,
    start: &mut Option<usize>,
    words: &mut Vec<Range<usize>>,
    groups: &mut Vec<Range<usize>>,
) -> usize {
    let b = text.as_bytes();
    debug_assert!(until <= b.len());
    while i < until {
        if b[i].is_ascii_alphabetic() {
            start.get_or_insert(i);
            i += 1;
            while i < b.len() && b[i].is_ascii_alphabetic() {
                i += 1;
            }
            continue;
        }
        // Any other ASCII byte but an apostrophe ends a word: decided
        // without decoding a char, as most bytes are.
        if b[i].is_ascii() && b[i] != b'\'' {
            if let Some(s) = start.take() {
                words.push(s..i);
            }
            let digits = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i > digits {
                groups.push(digits..i);
            } else {
                i += 1;
            }
            continue;
        }
        let (c, len) = if b[i] < 0x80 {
            (b[i] as char, 1)
        } else {
            let c = text[i..].chars().next().expect("i is on a char boundary");
            (c, c.len_utf8())
        };
        let letter = c.is_alphabetic();
        let joiner = (c == '\'' || c == '’')
            && start.is_some()
            && text[i + len..]
                .chars()
                .next()
                .is_some_and(char::is_alphabetic);
        if letter || joiner {
            start.get_or_insert(i);
        } else if let Some(s) = start.take() {
            words.push(s..i);
        }
        i += len;
    }
    i
}

/// [`words_and_digits`] byte by byte throughout: the oracle of its tests.
#[cfg(test)]
fn words_and_digits_by_bytes(text: &str) -> (Vec<Range<usize>>, Vec<Range<usize>>) {
    let (mut words, mut groups) = (Vec::new(), Vec::new());
    let mut start = None;
    let i = by_bytes(text, 0, text.len(), &mut start, &mut words, &mut groups);
    if let Some(s) = start {
        words.push(s..i);
    }
    (words, groups)
}

#[cfg(test)]
pub(crate) fn digit_groups_of(b: &[u8]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    digit_groups(b, &mut out);
    out
}

#[cfg(test)]
pub(crate) fn words_of(text: &str) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    words_and_digits(text, &mut out, &mut Vec::new());
    out
}

/// No letter or digit, and no digit-joining separator (`-./`) after a digit,
/// right before `i`: a match starting at `i` is not the tail of a longer
/// token.
pub(crate) fn clear_before(b: &[u8], i: usize) -> bool {
    if i == 0 {
        return true;
    }
    let p = b[i - 1];
    if p.is_ascii_alphanumeric() {
        return false;
    }
    !(matches!(p, b'-' | b'.' | b'/' | b':') && i >= 2 && b[i - 2].is_ascii_digit())
}

/// The mirror of `clear_before` for a match ending at `j`.
pub(crate) fn clear_after(b: &[u8], j: usize) -> bool {
    if j >= b.len() {
        return true;
    }
    let n = b[j];
    if n.is_ascii_alphanumeric() {
        return false;
    }
    !(matches!(n, b'-' | b'.' | b'/' | b':') && j + 1 < b.len() && b[j + 1].is_ascii_digit())
}

/// True when one of the (lower-case ASCII) `cues` ends within `window`
/// bytes before `pos`, starting at a word boundary (`tel` is not in `hotel`).
pub(crate) fn cue_before(b: &[u8], pos: usize, window: usize, cues: &[&str]) -> bool {
    cue_in_window(b, pos, window, cues, false)
}

/// [`cue_before`] for cues that are whole words: a cue must also end at a
/// word's end (`on` is not in `only`, `dos` not in `dose`).
pub(crate) fn word_cue_before(b: &[u8], pos: usize, window: usize, cues: &[&str]) -> bool {
    cue_in_window(b, pos, window, cues, true)
}

fn cue_in_window(b: &[u8], pos: usize, window: usize, cues: &[&str], whole: bool) -> bool {
    let from = pos.saturating_sub(window);
    // Only word starts can begin a cue: test the cues there alone.
    (from..pos).any(|at| {
        let starts_word = at == 0 || !b[at - 1].is_ascii_alphabetic();
        starts_word
            && cues.iter().any(|cue| {
                let end = at + cue.len();
                b[at..pos]
                    .get(..cue.len())
                    .is_some_and(|w| w.eq_ignore_ascii_case(cue.as_bytes()))
                    && (!whole || b.get(end).is_none_or(|c| !c.is_ascii_alphabetic()))
            })
    })
}

/// Where `needle` starts in `b`, found by a memchr for its byte at `rare`:
/// on the short strings most values are, cheaper than setting up a
/// substring search. Every occurrence is reported, which is what a
/// substring search reports for a needle that cannot overlap itself
/// (`://`, `www.`, `, `, `ox `: the only ones used).
pub(crate) fn occurrences<'a>(
    b: &'a [u8],
    needle: &'a [u8],
    rare: usize,
) -> impl Iterator<Item = usize> + 'a {
    memchr::memchr_iter(needle[rare], b).filter_map(move |p| {
        let start = p.checked_sub(rare)?;
        b[start..].starts_with(needle).then_some(start)
    })
}

/// Where the ASCII word ending at `end` starts.
pub(crate) fn word_start(b: &[u8], end: usize) -> usize {
    let mut s = end;
    while s > 0 && b[s - 1].is_ascii_alphabetic() {
        s -= 1;
    }
    s
}

/// Whether the (lower-case) `phrase` ends right at `at` and starts a word.
pub(crate) fn phrase_before(b: &[u8], at: usize, phrase: &str) -> bool {
    at >= phrase.len()
        && b[at - phrase.len()..at].eq_ignore_ascii_case(phrase.as_bytes())
        && (at == phrase.len() || !b[at - phrase.len() - 1].is_ascii_alphabetic())
}

/// Whether the word `w` is one of `list`, ignoring ASCII case.
pub(crate) fn is_in(list: &[&str], w: &[u8]) -> bool {
    list.iter().any(|x| w.eq_ignore_ascii_case(x.as_bytes()))
}

/// The bytes between the end of one token and the start of the next.
pub(crate) fn between<'a>(b: &'a [u8], a: &Range<usize>, c: &Range<usize>) -> &'a [u8] {
    &b[a.end..c.start]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digit_runs() {
        assert_eq!(digit_groups_of(b"a12-345 6"), vec![1..3, 4..7, 8..9]);
        assert!(digit_groups_of(b"none").is_empty());
    }

    #[test]
    fn words_keep_inner_apostrophes_and_any_script() {
        let t = "O'Brien's José-山田 'x' 12ab";
        let got: Vec<&str> = words_of(t).into_iter().map(|r| &t[r]).collect();
        assert_eq!(got, vec!["O'Brien's", "José", "山田", "x", "ab"]);
    }

    #[test]
    fn one_walk_finds_the_digit_groups_too() {
        for t in [
            "O'Brien 12ab-34 ’5 José9 山田 1'2 x''y 7",
            "99",
            "a",
            "",
            "Parkinson's 3/14/1980, tel. 617-555-0100.",
        ] {
            let mut groups = Vec::new();
            words_and_digits(t, &mut Vec::new(), &mut groups);
            assert_eq!(groups, digit_groups_of(t.as_bytes()), "{t}");
        }
        let t = "ab12cd 3'x O'9";
        let got: Vec<&str> = words_of(t).into_iter().map(|r| &t[r]).collect();
        assert_eq!(got, vec!["ab", "cd", "x", "O"]);
    }

    proptest::proptest! {
        /// Any mix of ASCII, apostrophes and other scripts, at every
        /// alignment to the 16-byte blocks.
        #[test]
        fn blocks_read_as_bytes(
            t in "([a-zA-Z]{1,20}|[0-9]{1,20}|[ .,\t\r\n-]{1,3}|'|’|é|山|—|\u{a0}|\u{301}|😀){0,24}",
        ) {
            let mut got = (Vec::new(), Vec::new());
            words_and_digits(&t, &mut got.0, &mut got.1);
            proptest::prop_assert_eq!(got, words_and_digits_by_bytes(&t));
        }
    }

    #[test]
    fn runs_across_blocks() {
        for t in [
            "abcdefghijklmnopqrstuvwxyz0123456789012345 x",
            "aaaaaaaaaaaaaaa1234567890123456789 ok",
            "123456789012345'abc",
            "abcdefghijklmno'pqrstuvwxyzabcdef",
            "0123456789012345",
            "012345678901234567",
            // a digit run out of a plain block into the last, special one
            "aaaaaaaaaaaaaaa12'xxxxxxxxxxxxxx",
            "Call MRN 00123456 for Mr. O'Hara",
        ] {
            let mut got = (Vec::new(), Vec::new());
            words_and_digits(t, &mut got.0, &mut got.1);
            assert_eq!(got, words_and_digits_by_bytes(t), "{t}");
        }
    }

    #[test]
    fn boundaries() {
        assert!(clear_before(b" 123", 1));
        assert!(!clear_before(b"a123", 1));
        assert!(!clear_before(b"9-123", 2));
        assert!(clear_before(b"x-123", 2));
        assert!(clear_after(b"123.", 3));
        assert!(!clear_after(b"123.4", 3));
    }

    #[test]
    fn needles() {
        let found =
            |b: &'static [u8], n: &'static [u8], rare| occurrences(b, n, rare).collect::<Vec<_>>();
        assert_eq!(found(b"a://b ://", b"://", 0), [1, 6]);
        assert_eq!(found(b"wwww.x www.", b"www.", 0), [1, 7]);
        assert_eq!(found(b"wwww.x www.", b"www.", 3), [1, 7]);
        assert_eq!(found(b"ww. www", b"www.", 3), Vec::<usize>::new());
        assert_eq!(found(b"Box 1, box ", b"ox ", 1), [1, 8]);
    }

    #[test]
    fn cues() {
        let t = b"Home tel: 617";
        assert!(cue_before(t, 10, 12, &["tel"]));
        assert!(!cue_before(b"hotel 617", 6, 12, &["tel"]));
        assert!(
            cue_before(b"TEL617", 3, 12, &["x", "tel"]),
            "may end at pos"
        );
        assert!(!cue_before(b"tel 617", 2, 12, &["tel"]), "must end by pos");
        assert!(
            !cue_before(b"tel 617", 7, 3, &["tel"]),
            "must start in window"
        );
        assert!(cue_before(b"tel 617", 7, 7, &["tel"]));
        assert!(cue_before(b"only 1/2", 5, 12, &["on"]));
        assert!(
            !word_cue_before(b"only 1/2", 5, 12, &["on"]),
            "a whole word"
        );
        assert!(word_cue_before(b"on 1/2", 3, 12, &["on"]));
        assert!(word_cue_before(b"f/u 6/15", 4, 12, &["f/u"]));
    }
}
