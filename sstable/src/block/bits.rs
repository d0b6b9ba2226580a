//! Bit transposition of fixed-width values (Blosc's "bitshuffle"), the values column of a
//! block when every value has the same length w.
//!
//! ```text
//! w bytes      count[j] (0..=8): the low bit planes stored for byte column j; every record
//!              has 0 in the bits above
//! planes       for j in 0..w, for b in 0..count[j]: ceil(n / 8) bytes, whose byte g bit k is
//!              bit b of byte j of record 8g + k (0 past the last record)
//! ```
//!
//! Byte j of a record is a field byte: a uniform byte yields 8 random planes (no loss), a
//! small field (a device id below 4) only 2, a zero byte none, and a skewed field planes of
//! mostly equal bits. So most of what zstd would have to find is gone before it runs, and
//! what is left is close to incompressible.
//!
//! Both directions work in tiles of 8 records, one `u64` per byte column (8x8 bit transposes
//! for the planes, 8x8 byte transposes for the records), several times faster than moving
//! single bits or bytes. Sizes come from the caller, who checked them against the body.

use std::ops::Range;

use crate::scratch::{self, Scratch, Words};
use crate::varint::Reader;

/// Reads bit-transposed values of `n` records of `width` bytes.
pub(super) fn read_planes(r: &mut Reader<'_>, width: usize, n: usize) -> Result<Vec<u8>, String> {
    let (counts, planes) = read_counts_and_planes(r, width, n)?;
    Ok(unbitshuffle(counts, planes, width, n))
}

/// Reads bit-transposed values of `n` records of `width` bytes, all of them (the reader ends
/// past the planes), but un-transposes only `records` (within `0..n`) into `out`, which holds
/// exactly their bytes: only the 8-record groups covering them are touched, so one user's
/// few entries cost a tile or two, not the block.
pub(super) fn read_planes_range(
    r: &mut Reader<'_>,
    width: usize,
    n: usize,
    records: Range<usize>,
    out: &mut [u8],
) -> Result<(), String> {
    let (counts, planes) = read_counts_and_planes(r, width, n)?;
    if records.start > records.end || records.end > n {
        return Err(format!("records {records:?} out of the {n} transposed"));
    }
    if out.len() != records.len() * width {
        return Err(format!("{} bytes for {} records of {width}", out.len(), records.len()));
    }
    if records.len() <= FEW_RECORDS {
        unbitshuffle_few(counts, planes, width, n, records, out);
    } else {
        // The tiles go through this thread's scratch buffer, then the wanted records into
        // `out`: no allocation per decode.
        let tiles = Tiles::of(width, n, &records);
        scratch::with(Scratch::Tiles, tiles.bytes(), |padded| {
            unbitshuffle_into(counts, planes, n, &tiles, padded);
            let wanted = padded.chunks_exact(tiles.wide).skip(tiles.skip).take(records.len());
            for (dst, record) in out.chunks_exact_mut(width).zip(wanted) {
                // `wide` is `width` rounded up, so the record always holds `width` bytes.
                if let Some(record) = record.get(..width) {
                    dst.copy_from_slice(record);
                }
            }
        });
    }
    Ok(())
}

/// The per-column plane counts and the planes of `n` records of `width` bytes; the reader
/// ends past the planes.
fn read_counts_and_planes<'a>(
    r: &mut Reader<'a>,
    width: usize,
    n: usize,
) -> Result<(&'a [u8], &'a [u8]), String> {
    let counts = r.bytes(width)?;
    if let Some(count) = counts.iter().find(|&&count| count > 8) {
        return Err(format!("{count} bit planes in a byte column"));
    }
    let planes = counts.iter().map(|&count| usize::from(count)).sum::<usize>() * n.div_ceil(8);
    Ok((counts, r.bytes(planes)?))
}

/// Up to this many records are un-transposed column by column ([`unbitshuffle_few`]), more in
/// tiles ([`unbitshuffle`]). A cold user's run is 1 to 3 entries of a block. In a timing loop
/// over a 150-record block of 64-byte values (min of 7), one record took 0.93 us by columns
/// and 1.18 us by tiles, three 1.15 and 1.73 us; at eight they were even, and from nine on
/// the tiles won.
const FEW_RECORDS: usize = 8;

/// [`unbitshuffle`] for a few `records`, straight into the result: per byte column and
/// 8-record group, the planes' bytes gathered into one word and bit-transposed once, whose
/// byte k is the column's byte of record 8g + k; no byte transposes, no padded tile, no
/// buffer besides the result. The gather always loads eight bytes and masks off the planes
/// past the column's count, so the loop does the same work for every column whatever its
/// count.
fn unbitshuffle_few(
    counts: &[u8],
    planes: &[u8],
    width: usize,
    n: usize,
    records: Range<usize>,
    out: &mut [u8],
) {
    let groups = n.div_ceil(8);
    let mut g = records.start / 8;
    while 8 * g < records.end {
        let wanted = records.start.max(8 * g)..records.end.min(8 * g + 8);
        let mut at = g;
        for (j, &count) in counts.iter().enumerate().take(width) {
            let bytes: [u8; 8] = std::array::from_fn(|b| planes.get(at + b * groups).copied().unwrap_or(0));
            at += usize::from(count) * groups;
            let mask = PLANE_MASKS.get(usize::from(count)).copied().unwrap_or(0);
            let column = transpose8(u64::from_le_bytes(bytes) & mask).to_le_bytes();
            for record in wanted.clone() {
                if let Some(dst) = out.get_mut((record - records.start) * width + j) {
                    *dst = column[record % 8];
                }
            }
        }
        g += 1;
    }
}

/// `PLANE_MASKS[count]`: the low `count` bytes of a word set.
const PLANE_MASKS: [u64; 9] = {
    let mut masks = [u64::MAX; 9];
    let mut count = 0;
    while count < 8 {
        masks[count] = (1u64 << (8 * count)) - 1;
        count += 1;
    }
    masks
};

/// Transposes the 8x8 bit matrix whose row k is byte k of `x`: bit b of byte k moves to bit k
/// of byte b (Hacker's Delight, 7-8).
pub(super) fn transpose8(mut x: u64) -> u64 {
    let t = (x ^ (x >> 7)) & 0x00aa_00aa_00aa_00aa;
    x ^= t ^ (t << 7);
    let t = (x ^ (x >> 14)) & 0x0000_cccc_0000_cccc;
    x ^= t ^ (t << 14);
    let t = (x ^ (x >> 28)) & 0x0000_0000_f0f0_f0f0;
    x ^ t ^ (t << 28)
}

/// Appends `values` (records of `width` bytes) bit-transposed: one byte per byte column j,
/// the number k of its low bit planes stored (higher bits are 0 in every record), then those
/// planes, column after column, `ceil(n / 8)` bytes each, bit b of byte j of record i at bit
/// `i % 8` of byte `i / 8` of plane b.
pub(super) fn bitshuffle(values: &[u8], width: usize, out: &mut Vec<u8>) {
    let groups = (values.len() / width).div_ceil(8);
    let words = byte_columns(values, width, groups);
    let columns = words.chunks_exact(groups).take(width);
    let planes = |column: &[u64]| {
        let or =
            column.iter().fold(0, |acc, word| acc | word).to_le_bytes().iter().fold(0u8, |acc, b| acc | b);
        (0..8u8).rev().find(|b| or >> b & 1 == 1).map_or(0, |b| b + 1)
    };
    let counts: Vec<u8> = columns.clone().map(planes).collect();
    out.extend_from_slice(&counts);
    let mut bits = vec![0u64; groups];
    for (column, &count) in columns.zip(&counts) {
        bits.iter_mut().zip(column).for_each(|(bits, &word)| *bits = transpose8(word));
        for b in 0..usize::from(count) {
            out.extend(bits.iter().map(|word| word.to_le_bytes()[b]));
        }
    }
}

/// `words[j * groups + g]`: byte j of records `8g..8g + 8` of `values`, one per byte, for
/// `width` rounded up to 8 columns (the extra ones and missing records are 0).
fn byte_columns(values: &[u8], width: usize, groups: usize) -> Vec<u64> {
    let wide = width.div_ceil(8) * 8;
    let mut words = vec![0u64; wide * groups];
    for (g, records) in values.chunks(8 * width).enumerate() {
        for tile in 0..wide / 8 {
            let mut rows = [0u64; 8];
            for (row, record) in rows.iter_mut().zip(records.chunks_exact(width)) {
                let mut bytes = [0u8; 8];
                bytes.iter_mut().zip(record.iter().skip(tile * 8)).for_each(|(dst, src)| *dst = *src);
                *row = u64::from_le_bytes(bytes);
            }
            transpose_bytes(&mut rows);
            for (jj, row) in rows.into_iter().enumerate() {
                if let Some(word) = words.get_mut((tile * 8 + jj) * groups + g) {
                    *word = row;
                }
            }
        }
    }
    words
}

/// Transposes the 8x8 byte matrix whose row r is `rows[r]` (byte c of a row is column c):
/// swap 4x4 blocks, then 2x2 blocks within them, then single bytes.
pub(super) fn transpose_bytes(rows: &mut [u64; 8]) {
    for (pairs, shift, mask) in [
        ([(0, 4), (1, 5), (2, 6), (3, 7)], 32, 0x0000_0000_ffff_ffff),
        ([(0, 2), (1, 3), (4, 6), (5, 7)], 16, 0x0000_ffff_0000_ffff),
        ([(0, 1), (2, 3), (4, 5), (6, 7)], 8, 0x00ff_00ff_00ff_00ff),
    ] {
        for (x, y) in pairs {
            let t = ((rows[x] >> shift) ^ rows[y]) & mask;
            rows[x] ^= t << shift;
            rows[y] ^= t;
        }
    }
}

/// Inverse of [`bitshuffle`] for all `n` records: `counts` holds the planes stored per
/// column. Works in tiles of 8 records: bit planes to one word per byte column, then 8x8 byte
/// transposes, several times faster than moving single bits or bytes.
fn unbitshuffle(counts: &[u8], planes: &[u8], width: usize, n: usize) -> Vec<u8> {
    let tiles = Tiles::of(width, n, &(0..n));
    let mut padded = vec![0; tiles.bytes()];
    unbitshuffle_into(counts, planes, n, &tiles, &mut padded);
    if tiles.wide == width {
        padded.truncate(n * width);
        return padded;
    }
    let records = padded.chunks_exact(tiles.wide).take(n);
    records.flat_map(|record| record.iter().take(width)).copied().collect()
}

/// The 8-record groups that cover a range of records, as [`unbitshuffle_into`] lays them out.
struct Tiles {
    /// The groups, as indices of 8-record groups.
    groups: Range<usize>,
    /// `width` rounded up to 8: the bytes of a record in the tiles.
    wide: usize,
    /// Records of the first group before the first one wanted.
    skip: usize,
}

impl Tiles {
    /// The tiles of `records` (clamped to `0..n`) of `width` bytes.
    fn of(width: usize, n: usize, records: &Range<usize>) -> Tiles {
        let wide = width.div_ceil(8) * 8;
        let records = records.start.min(n)..records.end.min(n);
        if records.is_empty() {
            return Tiles { groups: 0..0, wide, skip: 0 };
        }
        let groups = records.start / 8..records.end.div_ceil(8);
        Tiles { skip: records.start - 8 * groups.start, groups, wide }
    }

    /// Bytes of the tiles: 8 records of `wide` bytes per group.
    fn bytes(&self) -> usize {
        8 * self.groups.len() * self.wide
    }
}

/// The tiles of [`unbitshuffle`] into `padded` ([`Tiles::bytes`] long, every byte written):
/// the records of `tiles.groups`, `tiles.wide` bytes each, the bytes past the width 0.
fn unbitshuffle_into(counts: &[u8], planes: &[u8], n: usize, tiles: &Tiles, padded: &mut [u8]) {
    let (groups, wide) = (tiles.groups.clone(), tiles.wide);
    let span = groups.len();
    let mut words = scratch::take_words(Words::Planes);
    plane_words(counts, planes, wide, n.div_ceil(8), groups, &mut words);
    for (g, group) in padded.chunks_exact_mut(8 * wide).enumerate() {
        for tile in 0..wide / 8 {
            let mut rows: [u64; 8] =
                std::array::from_fn(|jj| words.get((tile * 8 + jj) * span + g).copied().unwrap_or(0));
            transpose_bytes(&mut rows);
            for (record, row) in group.chunks_exact_mut(wide).zip(rows) {
                if let Some(dst) = record.get_mut(tile * 8..tile * 8 + 8) {
                    dst.copy_from_slice(&row.to_le_bytes());
                }
            }
        }
    }
    // A block's words are used once: kept for this thread's next decode, not freed.
    scratch::keep_words(Words::Planes, words);
}

/// The inverse of the bit transposes in [`bitshuffle`]: the [`byte_columns`] words of
/// `wide` columns from their stored planes of `groups` bytes each, for the groups `wanted`
/// only (`words[j * wanted.len() + g - wanted.start]`).
///
/// Fills `words` (emptied first). Every word is written before it is read: a page of
/// calloc'ed memory is left untouched by the allocator, and if its first touch is a read, the
/// kernel maps its shared zero page there. The first write to that page, now or after the
/// memory is freed and reused, replaces the mapping and flushes the TLB of every CPU running
/// the process, by an interrupt. A merge's cache prefill decodes block after block into such
/// memory: with the words zeroed by calloc and every plane or-ed in, one settle's last merge
/// sent 2,582 such interrupts in 0.3 s, nearly all to the CPU of the reader running beside
/// it, where they cost the reader's queries (kernel tracepoint `tlb:tlb_flush`;
/// docs/PERFORMANCE.md).
fn plane_words(
    counts: &[u8],
    planes: &[u8],
    wide: usize,
    groups: usize,
    wanted: Range<usize>,
    words: &mut Vec<u64>,
) {
    let span = wanted.len();
    words.clear();
    words.reserve(wide * span);
    let mut rest = planes;
    // Plane by plane over the wanted groups, then the transposes over the column, instead
    // of zipping eight plane iterators padded with a zero-filled stand-in (one allocation
    // less): 150 records took 10.4 us (min of 7 timed loops) instead of 12.2 (one timed
    // loop before), on a shared machine.
    for j in 0..wide {
        let count = counts.get(j).map_or(0, |&count| usize::from(count));
        let (stored, tail) = rest.split_at(rest.len().min(count * groups));
        rest = tail;
        let start = words.len();
        let mut planes = stored.chunks_exact(groups.max(1));
        if let Some(first) = planes.next() {
            let bytes = first.get(wanted.clone()).unwrap_or_default();
            words.extend(bytes.iter().map(|&byte| u64::from(byte)));
        }
        // Columns past the stored ones (`wide` rounds the width up to 8) are zero.
        words.resize(start + span, 0);
        let Some(column) = words.get_mut(start..) else { continue };
        for (b, plane) in planes.enumerate() {
            let bytes = plane.get(wanted.clone()).unwrap_or_default();
            column.iter_mut().zip(bytes).for_each(|(word, &byte)| *word |= u64::from(byte) << (8 * (b + 1)));
        }
        if count > 0 {
            column.iter_mut().for_each(|word| *word = transpose8(*word));
        }
    }
}
