//! Sixteen bytes compared at once: SSE2 on x86-64 (part of its baseline, so
//! no runtime check is needed), a plain loop elsewhere.

/// Bit `i` is set when byte `i` of `block` is one of `bytes`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn mask_of<const N: usize>(block: &[u8; 16], bytes: [u8; N]) -> u32 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
        _mm_setzero_si128,
    };
    // SAFETY: SSE2 is part of the x86-64 baseline (so these intrinsics are
    // always available), and the load reads the 16 bytes of `block`
    // (unaligned loads are allowed).
    unsafe {
        let v = _mm_loadu_si128(block.as_ptr().cast::<__m128i>());
        let mut any = _mm_setzero_si128();
        for c in bytes {
            any = _mm_or_si128(any, _mm_cmpeq_epi8(v, _mm_set1_epi8(c as i8)));
        }
        _mm_movemask_epi8(any) as u32
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
pub(crate) fn mask_of<const N: usize>(block: &[u8; 16], bytes: [u8; N]) -> u32 {
    mask_by_bytes(block, &bytes)
}

/// [`mask_of`] a byte at a time.
#[cfg(any(test, not(target_arch = "x86_64")))]
fn mask_by_bytes(block: &[u8; 16], bytes: &[u8]) -> u32 {
    block
        .iter()
        .enumerate()
        .filter(|(_, c)| bytes.contains(c))
        .fold(0, |m, (i, _)| m | 1 << i)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn masks_are_the_bytes_that_match(
            block in prop::array::uniform16(prop::sample::select(&b",;\t\"\n\ra\x00\xff"[..])),
        ) {
            prop_assert_eq!(mask_of(&block, [b',', b'"']), mask_by_bytes(&block, b",\""));
            prop_assert_eq!(
                mask_of(&block, [b'"', b'\n', b'\r']),
                mask_by_bytes(&block, b"\"\n\r")
            );
            prop_assert_eq!(mask_of(&block, [0xff]), mask_by_bytes(&block, &[0xff]));
        }
    }
}
