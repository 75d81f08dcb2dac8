//! Sixteen bytes compared at once: SSE2 on x86-64 (part of its baseline, so
//! no runtime check is needed), a plain loop elsewhere or in a build
//! without SSE2.

/// Bit `i` is set when byte `i` of `block` is one of `bytes`.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
pub(crate) fn mask_of<const N: usize>(block: &[u8; 16], bytes: [u8; N]) -> u32 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
        _mm_setzero_si128,
    };
    // SAFETY: SSE2 is enabled (the cfg above), so these intrinsics are
    // available, and the load reads the 16 bytes of `block` (unaligned
    // loads are allowed).
    unsafe {
        let v = _mm_loadu_si128(block.as_ptr().cast::<__m128i>());
        let mut any = _mm_setzero_si128();
        for c in bytes {
            any = _mm_or_si128(any, _mm_cmpeq_epi8(v, _mm_set1_epi8(c as i8)));
        }
        _mm_movemask_epi8(any) as u32
    }
}

/// Bit `i` is set when byte `i` of `block` ends or breaks a plain JSON
/// string: a quote, a backslash or a control byte (JSON's own fallback is
/// its word-at-a-time scan).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
pub(crate) fn string_stops(block: &[u8; 16]) -> u32 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    // SAFETY: as in `mask_of`.
    unsafe {
        let v = _mm_loadu_si128(block.as_ptr().cast::<__m128i>());
        let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
        let slash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        // c <= 0x1f exactly when min(c, 0x1f) == c
        let control = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
        _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, slash), control)) as u32
    }
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline(always)]
pub(crate) fn mask_of<const N: usize>(block: &[u8; 16], bytes: [u8; N]) -> u32 {
    mask_by_bytes(block, &bytes)
}

/// [`mask_of`] a byte at a time.
#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
fn mask_by_bytes(block: &[u8; 16], bytes: &[u8]) -> u32 {
    mask_by(block, |c| bytes.contains(c))
}

/// What a word scan needs to know of 16 bytes: which are ASCII letters,
/// which ASCII digits, and which it must read closely (an apostrophe, or a
/// byte of a character that is not ASCII).
pub(crate) struct WordBytes {
    pub letters: u32,
    pub digits: u32,
    pub special: u32,
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
pub(crate) fn word_bytes(block: &[u8; 16]) -> WordBytes {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8, _mm_sub_epi8,
    };
    // SAFETY: as in `mask_of`.
    unsafe {
        let v = _mm_loadu_si128(block.as_ptr().cast::<__m128i>());
        // x is in 0..=n (unsigned) exactly when min(x, n) == x
        let below = |x: __m128i, n: u8| _mm_cmpeq_epi8(_mm_min_epu8(x, _mm_set1_epi8(n as i8)), x);
        let digit = _mm_sub_epi8(v, _mm_set1_epi8(b'0' as i8));
        // setting bit 5 folds A-Z onto a-z and moves no other byte there
        let letter = _mm_sub_epi8(
            _mm_or_si128(v, _mm_set1_epi8(0x20)),
            _mm_set1_epi8(b'a' as i8),
        );
        let apostrophe = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\'' as i8));
        WordBytes {
            letters: _mm_movemask_epi8(below(letter, 25)) as u32,
            digits: _mm_movemask_epi8(below(digit, 9)) as u32,
            // the high bit of each byte is what movemask reads: not ASCII
            special: (_mm_movemask_epi8(v) | _mm_movemask_epi8(apostrophe)) as u32,
        }
    }
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline(always)]
pub(crate) fn word_bytes(block: &[u8; 16]) -> WordBytes {
    word_bytes_one_by_one(block)
}

/// [`word_bytes`] a byte at a time.
#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
fn word_bytes_one_by_one(block: &[u8; 16]) -> WordBytes {
    let bits = |f: fn(&u8) -> bool| mask_by(block, f);
    WordBytes {
        letters: bits(u8::is_ascii_alphabetic),
        digits: bits(u8::is_ascii_digit),
        special: bits(|c| !c.is_ascii() || *c == b'\''),
    }
}

#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
fn mask_by(block: &[u8; 16], f: impl Fn(&u8) -> bool) -> u32 {
    block
        .iter()
        .enumerate()
        .filter(|(_, c)| f(c))
        .fold(0, |m, (i, _)| m | 1 << i)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn masks_are_the_bytes_that_match(
            block in prop::array::uniform16(prop_oneof![
                prop::sample::select(&b",;\t\"\n\r"[..]),
                any::<u8>(),
            ]),
        ) {
            prop_assert_eq!(mask_of(&block, [b',', b'"']), mask_by_bytes(&block, b",\""));
            prop_assert_eq!(
                mask_of(&block, [b'"', b'\n', b'\r']),
                mask_by_bytes(&block, b"\"\n\r")
            );
            prop_assert_eq!(mask_of(&block, [0xff]), mask_by_bytes(&block, &[0xff]));
        }

        #[test]
        fn word_bytes_are_classed_as_one_by_one(block in prop::array::uniform16(any::<u8>())) {
            let (fast, slow) = (word_bytes(&block), word_bytes_one_by_one(&block));
            prop_assert_eq!(fast.letters, slow.letters);
            prop_assert_eq!(fast.digits, slow.digits);
            prop_assert_eq!(fast.special, slow.special);
        }
    }
}
