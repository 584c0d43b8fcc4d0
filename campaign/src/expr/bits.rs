//! [`Bits`]: a dense bitset over subscriber ids `0..len`, what the condition evaluator's
//! column scans produce.
//!
//! Why not a roaring bitmap straight away: a scan that pushes matching ids one by one into a
//! `RoaringBitmap` pays a container lookup per hit, and `and`/`or`/`not` over millions of ids
//! re-walk containers. A scan that sets one bit per row in a `Vec<u64>` is a branch-free loop
//! the compiler vectorises, boolean operators are word loops, and a count is a popcount;
//! 12 M subscribers are 1.5 MB per operand. Conversion to roaring happens once, at the end,
//! and only when members are needed (a saved segment), never for a count.
//!
//! Invariant: bits at positions `>= len` in the last word are always zero, so `count` and
//! conversions never see phantom members (`not` re-masks the tail).

use roaring::RoaringBitmap;

/// Dense bitset over `0..len`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bits {
    words: Vec<u64>,
    len: u32,
}

impl Bits {
    /// The set of rows `i` of `values` where `pred(values[i])` holds.
    ///
    /// The inner loop builds one word from 64 values without branches, so the compiler can
    /// vectorise simple predicates (a float comparison, a table lookup).
    pub(crate) fn from_predicate<T: Copy>(values: &[T], pred: impl Fn(T) -> bool) -> Self {
        let len = u32::try_from(values.len()).unwrap_or(u32::MAX);
        let values = &values[..len as usize];
        let mut words = Vec::with_capacity(values.len().div_ceil(64));
        let mut chunks = values.chunks_exact(64);
        for chunk in &mut chunks {
            let mut w = 0u64;
            for (j, &v) in chunk.iter().enumerate() {
                w |= u64::from(pred(v)) << j;
            }
            words.push(w);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = 0u64;
            for (j, &v) in rest.iter().enumerate() {
                w |= u64::from(pred(v)) << j;
            }
            words.push(w);
        }
        Self { words, len }
    }

    /// Clears the bits past `len` in the last word (the invariant).
    fn mask_tail(&mut self) {
        let used = self.len % 64;
        if used != 0
            && let Some(last) = self.words.last_mut()
        {
            *last &= (1u64 << used) - 1;
        }
    }

    /// `self ∩ other` (operands of one table have the same length).
    pub(crate) fn and_with(&mut self, other: &Self) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a &= b;
        }
    }

    /// `self ∪ other`.
    pub(crate) fn or_with(&mut self, other: &Self) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= b;
        }
    }

    /// The complement over `0..len`.
    pub(crate) fn negate(&mut self) {
        for w in &mut self.words {
            *w = !*w;
        }
        self.mask_tail();
    }

    /// Number of members.
    pub(crate) fn count(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    /// The members as a roaring bitmap (bit `i` of word `k` is id `64k + i`: LSB-0 order).
    pub(crate) fn to_roaring(&self) -> RoaringBitmap {
        let mut bytes = Vec::with_capacity(self.words.len() * 8);
        for w in &self.words {
            bytes.extend_from_slice(&w.to_le_bytes());
        }
        RoaringBitmap::from_lsb0_bytes(0, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicate_boolean_ops_and_tail() {
        let xs: Vec<u32> = (0..130).collect();
        let mut even = Bits::from_predicate(&xs, |x| x % 2 == 0);
        let small = Bits::from_predicate(&xs, |x| x < 10);
        assert_eq!(even.count(), 65);
        let mut not_even = even.clone();
        not_even.negate();
        assert_eq!(not_even.count(), 65);
        assert_eq!(
            not_even.to_roaring().iter().collect::<Vec<_>>(),
            (0..130).filter(|x| x % 2 == 1).collect::<Vec<_>>()
        );
        let mut or = even.clone();
        or.or_with(&small);
        assert_eq!(or.count(), 70);
        even.and_with(&small);
        assert_eq!(
            even.to_roaring().iter().collect::<Vec<_>>(),
            vec![0, 2, 4, 6, 8]
        );
        for n in [0usize, 1, 63, 64, 65, 128, 130] {
            let mut all = Bits::from_predicate(&vec![0u8; n], |_| false);
            all.negate();
            assert_eq!(all.count(), n as u64, "{n}");
            assert_eq!(all.to_roaring().len(), n as u64, "{n}");
        }
    }
}
