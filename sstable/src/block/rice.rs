//! Rice-coded timestamp deltas, the third timestamp mode of a block (flags bit 2).
//!
//! ```text
//! ts       z ts_base, u8 k (0..=56), then R x v first_ts - ts_base     (wrapping, as u64)
//!          v E, then E x (v index_gap, v extra)                         escaped deltas
//!          low bits: ceil(m k / 8) bytes                                m = n - R deltas
//!          unary:    the m quotients' codes, to the byte holding the last one's end
//! ```
//!
//! The m within-run deltas `d = ts[i] - ts[i-1]` (wrapping, as u64) are taken run after run
//! in entry order; delta `i` splits into a quotient `q = d >> k` and its `k` low bits, stored at
//! bits `i k .. i k + k` of the low-bit bytes (bit `b` of the stream is bit `b % 8` of byte
//! `b / 8`; the bits past `m k` are 0). The quotient is stored as `u = min(q, ESCAPE)` zero
//! bits then a one bit, back to back in the same bit order (the bits after the last one bit
//! are 0). A delta with `u = ESCAPE` is escaped: its `q - ESCAPE` is stored as `extra` in the
//! escape list, in delta order, each under the gap from the previous escaped delta's index
//! (the first one's index itself, the next ones' index - previous - 1), so that a reader of
//! one run finds its escapes without decoding the codes before it.
//!
//! Why: the standard workload's deltas are gaps of a Poisson clock, a geometric distribution,
//! for which a Rice code with `k = floor(log2(median))` is within a few percent of the
//! entropy, where a varint wastes the high bit of every byte and rounds to bytes: 3.47 bytes
//! an event instead of 4.06 on the standard tables, and zstd's fast levels find nothing to
//! take from either. The escape bounds the cost of an outlier (a user's first event after
//! hours) to a few bytes, and caps a unary code so that one 64-bit load always holds it.
//! Splitting the low bits from the unary codes lets a reader reach delta `i` in O(1) for the
//! low bits and by a popcount over the unary bytes, eight at a time, for the quotient.

use super::user::skip_varints;
use super::varint_len;
use crate::varint::Reader;

/// The largest quotient stored in unary alone; larger ones are escaped. 16 measured as small
/// as any larger cap on the standard tables; it must stay below 57 so a code fits one load.
pub(super) const ESCAPE: u32 = 16;
/// The largest `k`: the low bits of a delta fit one unaligned 64-bit load at any bit offset.
pub(super) const MAX_K: u8 = 56;

/// Bytes taken by the within-run deltas `deltas` (all of them, `m` in number) coded with `k`:
/// the `k` byte, the escape list, the low bits and the unary codes.
pub(super) fn cost(deltas: impl Iterator<Item = u64>, m: usize, k: u8) -> usize {
    let (mut unary_bits, mut escapes, mut escape_bytes, mut last) = (0usize, 0usize, 0usize, None);
    for (i, d) in deltas.enumerate() {
        let u = unary(d, k);
        unary_bits += u as usize + 1;
        if u == ESCAPE {
            escapes += 1;
            escape_bytes += varint_len(gap(last, i)) + varint_len((d >> k) - u64::from(ESCAPE));
            last = Some(i);
        }
    }
    1 + varint_len(escapes as u64) + escape_bytes + (m * usize::from(k)).div_ceil(8) + unary_bits.div_ceil(8)
}

/// The unary part of `d`: its quotient, capped at [`ESCAPE`].
fn unary(d: u64, k: u8) -> u32 {
    u32::try_from(d >> k).map_or(ESCAPE, |q| q.min(ESCAPE))
}

fn gap(last: Option<usize>, i: usize) -> u64 {
    last.map_or(i, |last| i - last - 1) as u64
}

/// The `k` that codes `deltas` (`m` of them) in the fewest bytes, and those bytes. For a
/// geometric distribution the best `k` is about `log2` of the median; the exact costs of the
/// five around it are compared, which is also right for skewed blocks (measured within 0.1%
/// of the best of all k on the standard tables, where the mean's log2 was 0.5% off).
pub(super) fn choose_k(deltas: impl Iterator<Item = u64> + Clone, m: usize) -> (u8, usize) {
    let mut by_width = [0usize; 65];
    deltas.clone().for_each(|d| by_width[64 - d.leading_zeros() as usize] += 1);
    let (mut seen, mut median_width) = (0usize, 0usize);
    for (width, &count) in by_width.iter().enumerate() {
        seen += count;
        if 2 * seen >= m {
            median_width = width;
            break;
        }
    }
    let guess = median_width.saturating_sub(1);
    // Past MAX_K, where wide deltas are escaped whatever k is, the best k depends on how the
    // escapes' varints round: the eleven largest are compared (a rare, odd block).
    let low = if guess + 2 > usize::from(MAX_K) { usize::from(MAX_K) - 10 } else { guess.saturating_sub(2) };
    let candidates = low..=(guess + 2).min(usize::from(MAX_K));
    candidates
        .filter_map(|k| u8::try_from(k).ok())
        .map(|k| (k, cost(deltas.clone(), m, k)))
        .min_by_key(|&(k, bytes)| (bytes, k))
        .unwrap_or((0, cost(deltas, m, 0)))
}

/// Appends the escape list, the low bits and the unary codes of `deltas` (`m` of them).
pub(super) fn put(out: &mut Vec<u8>, deltas: impl Iterator<Item = u64> + Clone, m: usize, k: u8) {
    let escaped = deltas.clone().enumerate().filter(|&(_, d)| unary(d, k) == ESCAPE);
    crate::varint::put_u64(out, escaped.clone().count() as u64);
    let mut last = None;
    for (i, d) in escaped {
        crate::varint::put_u64(out, gap(last, i));
        crate::varint::put_u64(out, (d >> k) - u64::from(ESCAPE));
        last = Some(i);
    }
    let mask = low_mask(k);
    let mut bits = BitWriter::new(out);
    deltas.clone().for_each(|d| bits.put(d & mask, u32::from(k)));
    bits.flush();
    debug_assert_eq!(bits.written, (m * usize::from(k)).div_ceil(8));
    let mut bits = BitWriter::new(out);
    // Zero bits then a one bit: `u` zeros are `u + 1` bits holding the value 1 << u.
    deltas.for_each(|d| {
        let u = unary(d, k);
        bits.put(1 << u, u + 1);
    });
    bits.flush();
}

fn low_mask(k: u8) -> u64 {
    (1u64 << k) - 1
}

/// Appends bits LSB first.
struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    acc: u64,
    filled: u32,
    written: usize,
}

impl<'a> BitWriter<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        BitWriter { out, acc: 0, filled: 0, written: 0 }
    }

    /// Appends the low `count` (<= 57) bits of `value`, whose higher bits are 0.
    fn put(&mut self, value: u64, count: u32) {
        self.acc |= value << self.filled;
        self.filled += count;
        while self.filled >= 8 {
            self.out.push(self.acc.to_le_bytes()[0]);
            self.acc >>= 8;
            self.filled -= 8;
            self.written += 1;
        }
    }

    fn flush(&mut self) {
        if self.filled > 0 {
            self.out.push(self.acc.to_le_bytes()[0]);
            self.written += 1;
        }
        (self.acc, self.filled) = (0, 0);
    }
}

/// The 64 bits of `bytes` from byte `at` on (0 past the end).
#[inline]
fn load(bytes: &[u8], at: usize) -> u64 {
    if let Some(word) = bytes.get(at..at + 8).and_then(|word| <[u8; 8]>::try_from(word).ok()) {
        return u64::from_le_bytes(word);
    }
    let mut word = [0u8; 8];
    let tail = bytes.get(at..).unwrap_or_default();
    word.iter_mut().zip(tail).for_each(|(dst, src)| *dst = *src);
    u64::from_le_bytes(word)
}

/// At least 57 bits of `bytes` from bit `bit` on, in the low bits.
#[inline]
fn bits_at(bytes: &[u8], bit: usize) -> u64 {
    load(bytes, bit / 8) >> (bit % 8)
}

/// The bit just past the `count`-th one bit of `bytes` at or after bit `bit`, if there are
/// that many: a popcount per word, eight bytes at a time.
pub(super) fn skip_codes(bytes: &[u8], mut bit: usize, mut count: usize) -> Option<usize> {
    while count > 0 {
        if bit >= 8 * bytes.len() {
            return None;
        }
        let mut word = bits_at(bytes, bit);
        let span = 64 - bit % 8;
        let ones = word.count_ones() as usize;
        if ones < count {
            count -= ones;
            bit += span;
            continue;
        }
        for _ in 1..count {
            word &= word - 1;
        }
        return Some(bit + word.trailing_zeros() as usize + 1);
    }
    Some(bit)
}

/// A cursor over the Rice-coded section of one block.
pub(super) struct Codes<'a> {
    k: u8,
    /// The low bits and every byte after them: a load near their end takes the fast path
    /// (the bits past the low bits are masked off).
    low: &'a [u8],
    unary: &'a [u8],
    /// The next code's index and its bit in `unary`.
    index: usize,
    bit: usize,
    /// The escape list, and the index of the next escaped delta (`usize::MAX`: none left).
    escapes: Reader<'a>,
    left: usize,
    next_escape: usize,
}

impl<'a> Codes<'a> {
    /// Reads `k`, steps over the `runs` firsts (returning a reader at them), reads the
    /// escape list's count and the low bits of the `m` deltas, and leaves `r` at the unary
    /// codes, whose length only decoding or skipping them tells ([`Codes::finish`]).
    pub(super) fn read(r: &mut Reader<'a>, runs: usize, m: usize) -> Result<(Codes<'a>, Reader<'a>), String> {
        let k = r.byte()?;
        if k > MAX_K {
            return Err(format!("rice parameter {k} over {MAX_K}"));
        }
        let firsts = r.clone();
        skip_varints(r, runs)?;
        let left = r.len(m, "escape count")?;
        let mut escapes = r.clone();
        skip_varints(r, 2 * left)?;
        let low_and_after = r.clone().bytes(r.remaining())?;
        let low = r.bytes((m * usize::from(k)).div_ceil(8))?;
        let low_bits = m * usize::from(k);
        if !low_bits.is_multiple_of(8) && low.last().is_some_and(|&b| b >> (low_bits % 8) != 0) {
            return Err("low bits set past the last delta".to_string());
        }
        let unary = r.clone().bytes(r.remaining())?;
        let next_escape = if left > 0 { escape_index(&mut escapes, None)? } else { usize::MAX };
        let codes = Codes { k, low: low_and_after, unary, index: 0, bit: 0, escapes, left, next_escape };
        Ok((codes, firsts))
    }

    /// Moves to delta `index` (at or after the current one) without decoding the ones
    /// between, escapes included.
    pub(super) fn seek(&mut self, index: usize) -> Result<(), String> {
        let Some(skipped) = index.checked_sub(self.index) else {
            return Err(format!("delta {index} is behind delta {}", self.index));
        };
        self.bit = skip_codes(self.unary, self.bit, skipped)
            .ok_or_else(|| format!("unary codes cut short before delta {index}"))?;
        self.index = index;
        while self.left > 0 && self.next_escape < index {
            self.take_escape()?;
        }
        Ok(())
    }

    /// The next delta.
    #[inline]
    pub(super) fn next_delta(&mut self) -> Result<u64, String> {
        let word = bits_at(self.unary, self.bit);
        let u = word.trailing_zeros();
        if u > ESCAPE || self.bit + u as usize >= 8 * self.unary.len() {
            return Err(format!("delta {}: unary code over {ESCAPE} or cut short", self.index));
        }
        self.bit += u as usize + 1;
        let escaped = self.next_escape == self.index && self.left > 0;
        let q = match (u == ESCAPE, escaped) {
            (false, false) => u64::from(u),
            (true, true) => {
                u64::from(ESCAPE).checked_add(self.take_escape()?).ok_or("escaped quotient overflows")?
            }
            _ => return Err(format!("delta {}: unary code and escape list disagree", self.index)),
        };
        let k = u32::from(self.k);
        let low = bits_at(self.low, self.index * self.k as usize) & low_mask(self.k);
        self.index += 1;
        match q.checked_shl(k).filter(|_| k == 0 || q >> (64 - k) == 0) {
            Some(high) => Ok(high | low),
            None => Err(format!("delta {}: quotient {q} overflows 64 bits", self.index - 1)),
        }
    }

    /// Consumes the next escape and returns its extra; reads the index of the one after.
    fn take_escape(&mut self) -> Result<u64, String> {
        let extra = self.escapes.u64()?;
        self.left -= 1;
        let at = self.next_escape;
        self.next_escape =
            if self.left > 0 { escape_index(&mut self.escapes, Some(at))? } else { usize::MAX };
        Ok(extra)
    }

    /// Bytes of unary codes, once all `m` deltas were taken: checks that every escape was
    /// taken too and that no bit is set past the last code.
    pub(super) fn finish(&self, m: usize) -> Result<usize, String> {
        if self.index != m || self.left != 0 {
            return Err(format!("{} of {m} deltas decoded, {} escapes left", self.index, self.left));
        }
        let len = self.bit.div_ceil(8);
        if !self.bit.is_multiple_of(8) && self.unary.get(len - 1).is_some_and(|&b| b >> (self.bit % 8) != 0) {
            return Err("unary bits set past the last delta".to_string());
        }
        Ok(len)
    }

    /// Skips the codes from the current one to the last of `m`, their escapes included.
    pub(super) fn skip_to_end(&mut self, m: usize) -> Result<usize, String> {
        self.seek(m)?;
        self.finish(m)
    }
}

/// Reads the next escape's index gap and returns its index; `last` is the previous index.
fn escape_index(r: &mut Reader<'_>, last: Option<usize>) -> Result<usize, String> {
    let gap = r.u64()?;
    let index = match last {
        None => usize::try_from(gap).ok(),
        Some(last) => usize::try_from(gap).ok().and_then(|gap| gap.checked_add(last)?.checked_add(1)),
    };
    index.ok_or_else(|| format!("escape index gap {gap} overflows"))
}
