//! Telling a torn write from damage at the tail of a log.
//!
//! A log (the WAL, the manifest) ends where a crash may have cut its last append short. A
//! bad final record is either such a torn write, which was never acknowledged and is cut,
//! or damage to a record that was (a flipped bit, a lost or misdirected write), which must
//! be reported. The two are told apart by shape, because a power loss only ever does this
//! to a freshly appended file:
//! - it keeps a prefix: the record runs past the end of the file;
//! - it loses whole sectors (a disk writes a sector atomically) or whole pages (the page
//!   cache writes back in pages, in any order), and a lost part of a freshly appended file
//!   reads as zeros: a block allocated and never written.
//!
//! So a final record that lies whole inside the file, with no sector of it reading as zeros,
//! was not torn by a crash. And a record that one flipped bit makes valid was not torn
//! either: a crash does not leave bytes one bit away from a checksummed record (the odds
//! are those of a 64-bit checksum collision).
//!
//! What these shapes cannot tell: a record whose own bytes hold a whole zero sector (or end
//! in zeros past the last sector boundary) and that is damaged elsewhere, when it is too
//! large for the one-bit search. That is taken for torn, the safe way round for a crash, and
//! the logs say so in their format documents. File systems that show stale blocks after a
//! crash (ext4 `data=writeback`) break the zeros assumption: a torn tail there can look like
//! damage, and is refused rather than cut.

use std::ops::Range;

/// The unit a disk writes atomically; a crash loses whole sectors of a write in flight.
pub const SECTOR_BYTES: usize = 512;

/// The largest record the logs search for one flipped bit when its sectors cannot tell
/// (see [`one_bit_repair`]): the search hashes the record once per bit, 8 x 4 KiB x 4 KiB =
/// 128 MiB at this size, and a crash state of the simulated disk may run it at every open.
pub const REPAIR_LIMIT: usize = 4096;

/// Whether some sector of `range` (512-byte aligned to the file, clipped to the range) reads
/// as all zeros in `bytes`: the shape of sectors lost in a crash. `range` must lie inside
/// `bytes`; an empty range has no sector.
pub fn zero_sector_within(bytes: &[u8], range: Range<usize>) -> bool {
    let Some(span) = bytes.get(range.clone()) else { return false };
    let mut start = range.start;
    let mut piece = span;
    while !piece.is_empty() {
        let len = (SECTOR_BYTES - start % SECTOR_BYTES).min(piece.len());
        if piece[..len].iter().all(|&b| b == 0) {
            return true;
        }
        piece = &piece[len..];
        start += len;
    }
    false
}

/// Looks for one bit of `bytes[range]` whose flip makes `valid(bytes)` hold: the damage of
/// a flipped bit, never a crash's. Returns the offset in `bytes` and the bit, or `None`.
/// `bytes` is left as it was. The cost is one call of `valid` per bit of the range, so the
/// caller bounds the range.
pub fn one_bit_repair(
    bytes: &mut [u8],
    range: Range<usize>,
    mut valid: impl FnMut(&[u8]) -> bool,
) -> Option<(usize, u8)> {
    for offset in range {
        for bit in 0..8u8 {
            let byte = bytes.get_mut(offset)?;
            *byte ^= 1 << bit;
            let found = valid(bytes);
            if let Some(byte) = bytes.get_mut(offset) {
                *byte ^= 1 << bit;
            }
            if found {
                return Some((offset, bit));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_sector_is_found_only_whole_or_clipped_to_the_range() {
        let mut bytes = vec![7u8; 4 * SECTOR_BYTES];
        assert!(!zero_sector_within(&bytes, 0..bytes.len()), "no zeros");
        bytes[SECTOR_BYTES + 1..2 * SECTOR_BYTES].fill(0);
        assert!(!zero_sector_within(&bytes, 0..bytes.len()), "a sector short of one byte");
        assert!(zero_sector_within(&bytes, SECTOR_BYTES + 1..bytes.len()), "clipped at the start");
        bytes[3 * SECTOR_BYTES..3 * SECTOR_BYTES + 10].fill(0);
        assert!(zero_sector_within(&bytes, 2 * SECTOR_BYTES..3 * SECTOR_BYTES + 10), "clipped at the end");
        assert!(!zero_sector_within(&bytes, 2 * SECTOR_BYTES..3 * SECTOR_BYTES + 11));
        assert!(!zero_sector_within(&bytes, 5..5), "an empty range");
        assert!(!zero_sector_within(&bytes, 0..bytes.len() + 1), "a range past the bytes");
    }

    #[test]
    fn one_bit_repair_finds_the_flipped_bit_and_leaves_the_bytes_alone() {
        let original = b"a record worth a checksum".to_vec();
        let sum = |b: &[u8]| b.iter().map(|&x| u64::from(x)).sum::<u64>() * 31 + b.len() as u64;
        let want = sum(&original);
        let mut damaged = original.clone();
        damaged[9] ^= 1 << 5;
        let before = damaged.clone();
        assert_eq!(one_bit_repair(&mut damaged, 0..before.len(), |b| b == original), Some((9, 5)));
        assert_eq!(damaged, before, "left as it was");
        assert_eq!(one_bit_repair(&mut damaged, 0..9, |b| b == original), None, "outside the range");
        damaged[3] ^= 1;
        assert_eq!(one_bit_repair(&mut damaged, 0..before.len(), |b| sum(b) == want && b == original), None);
    }
}
