//! Word-at-a-time comparisons of short byte strings (field names, Host values, content
//! types) for the request and response hot paths, where a call to the C library's `memcmp`
//! costs more than the comparison itself.

/// `a == b` after OR-ing every byte of both with the same byte of `mask` (0 compares exactly;
/// `0x2020…` folds ASCII letters to lower case). For two slices of the same non-zero length:
/// two overlapping words for 8..=16 bytes (longer ones eight at a time, the last word
/// overlapping), two overlapping fours for 4..=7, and the first, middle and last byte (which
/// are all of them) for 1..=3.
#[inline(always)]
fn masked_eq(a: &[u8], b: &[u8], mask: u64) -> bool {
    let n = a.len();
    debug_assert!(n == b.len() && n > 0);
    if n >= 8 {
        let word = |s: &[u8], at: usize| {
            u64::from_le_bytes(s[at..at + 8].try_into().expect("8 bytes")) | mask
        };
        if n <= 16 {
            // Most values: two overlapping words, no loop.
            return word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8);
        }
        let mut at = 0;
        while at + 8 < n {
            if word(a, at) != word(b, at) {
                return false;
            }
            at += 8;
        }
        word(a, n - 8) == word(b, n - 8)
    } else if n >= 4 {
        let word = |s: &[u8], at: usize| {
            u32::from_le_bytes(s[at..at + 4].try_into().expect("4 bytes")) | mask as u32
        };
        word(a, 0) == word(b, 0) && word(a, n - 4) == word(b, n - 4)
    } else {
        let byte = |s: &[u8], at: usize| s[at] | mask as u8;
        byte(a, 0) == byte(b, 0)
            && byte(a, n / 2) == byte(b, n / 2)
            && byte(a, n - 1) == byte(b, n - 1)
    }
}

/// `a == b` for two slices of the same non-zero length.
#[inline(always)]
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    masked_eq(a, b, 0)
}

/// Whether `name | 0x20` (bytewise) equals `lower`, for two slices of the same non-zero
/// length, `lower` in lower case: a field name or token compared without regard to case.
#[inline(always)]
pub(crate) fn folded_eq(name: &[u8], lower: &[u8]) -> bool {
    masked_eq(name, lower, 0x2020_2020_2020_2020)
}

/// `a == b` for slices of any lengths (`respond()`'s fast path compares a content type per
/// response).
#[inline(always)]
pub(crate) fn short_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && (a.is_empty() || same_bytes(a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_eq_agrees_with_slice_equality_at_every_length() {
        let base: Vec<u8> = (0..40u8).map(|i| b'a' + i % 26).collect();
        for n in 0..=40 {
            let a = &base[..n];
            assert!(short_eq(a, a), "{n}");
            for i in 0..n {
                let mut b = a.to_vec();
                b[i] ^= 0x01;
                assert!(!short_eq(a, &b), "length {n}, byte {i}");
            }
            if n > 0 {
                assert!(!short_eq(a, &base[..n - 1]));
            }
        }
    }

    #[test]
    fn folded_eq_ignores_case_and_nothing_else_at_every_length() {
        let lower: Vec<u8> = (0..40u8).map(|i| b'a' + i % 26).collect();
        for n in 1..=40 {
            let l = &lower[..n];
            let upper = l.to_ascii_uppercase();
            assert!(folded_eq(l, l) && folded_eq(&upper, l), "{n}");
            for i in 0..n {
                let mut other = upper.clone();
                other[i] = b'0';
                assert!(!folded_eq(&other, l), "length {n}, byte {i}");
            }
        }
    }
}
