//! The shapes of a damaged tail of the last segment: which ones a crash leaves (a torn
//! write, cut at recovery) and which ones only damage does (reported as corruption).
//!
//! Recovery (rule 4 of docs/format/wal.md) asks these questions about a bad record at
//! offset X of the last segment, after the intact records before it:
//! - [`lost_page_between`]: when intact records follow X, do the bytes up to them show a
//!   page lost by the write-back, as a crash leaves it?
//! - [`zeros_ending_off_a_sector`]: do zeros at X stop where no lost sector ends?
//! - [`whole_final_record`]: is the record at X whole, with no sector of it reading as
//!   zeros, or one flipped bit away from valid? A crash leaves neither.
//! - [`displaced_record`]: after zeros at X, does a record header carry the seqno that
//!   belongs at X? Then that record was written at the wrong place.
//!
//! Each answers with the evidence, in words, or `None` when the shape is a crash's.

use strata_vfs::damage::{one_bit_repair, zero_sector_within, REPAIR_LIMIT, SECTOR_BYTES};

use crate::record::{decode_record, le_u32, le_u64, MIN_OP_LEN, RECORD_HEADER_LEN};
use crate::MAX_BATCH_BYTES;

/// The unit in which a crash loses written-back data: a page of the page cache (4 KiB, or a
/// multiple of it, which holds several 4 KiB-aligned ranges). The lost part of a freshly
/// appended file reads as zeros (a block allocated and never written).
const PAGE_BYTES: usize = 4096;

/// Zero bytes at the start of a kept page are taken for the original bytes of a record
/// (integer fields hold up to 8) only while fewer than this: a longer run is the end of a
/// zeroed range that does not stop at a page boundary, the shape of a lost write.
const ORIGINAL_ZEROS: usize = 16;

/// Whether the bytes from `damaged` to the intact record at `intact` show a page lost in a
/// crash: a range of zeros that ends at a page boundary and starts at the previous one, or
/// at `damaged` (a page synced up to `damaged` keeps its synced part), followed by the kept
/// page's original bytes. Damage of another shape followed by an intact record, such as a
/// flipped bit or a lost write of a group (zeros from one record to the next), is never a
/// crash's. A file system that shows stale blocks after a crash (ext4 `data=writeback`)
/// fails this check: such a state is refused, never cut silently.
pub(crate) fn lost_page_between(bytes: &[u8], damaged: usize, intact: usize) -> bool {
    let first_end = (damaged / PAGE_BYTES + 1) * PAGE_BYTES;
    (first_end..=intact).step_by(PAGE_BYTES).any(|end| {
        let lost = &bytes[(end - PAGE_BYTES).max(damaged)..end];
        let kept = &bytes[end..intact];
        let leading_zeros = kept.iter().take(ORIGINAL_ZEROS).take_while(|&&b| b == 0).count();
        lost.iter().all(|&b| b == 0) && leading_zeros < ORIGINAL_ZEROS
    })
}

/// Why the zeros that the damaged record at `damaged` starts with cannot be a crash's, if
/// they cannot. A crash loses whole sectors (or pages) from where the synced bytes end, so
/// zeros there run to a sector boundary (give or take original zero bytes after it) or to
/// the end of the file. Zeros that stop elsewhere before non-zero bytes are the shape of a
/// lost or misdirected write of the records at `damaged`, followed by other bytes.
pub(crate) fn zeros_ending_off_a_sector(bytes: &[u8], damaged: usize) -> Option<String> {
    let run = bytes[damaged..].iter().take_while(|&&b| b == 0).count();
    let end = damaged + run;
    (run >= ORIGINAL_ZEROS && end < bytes.len() && end % SECTOR_BYTES >= ORIGINAL_ZEROS).then(|| {
        format!(
            "zeros from offset {damaged} to {end} end off a {SECTOR_BYTES}-byte sector boundary, \
             before non-zero bytes: a lost or misdirected write, not sectors lost in a crash"
        )
    })
}

/// Whether a record header at `at` of `bytes` could have been written at offset `written_at`
/// to hold seqno `next`: its length and count fit, and it names no sync after its place.
/// Only the fields are read; the checksum is not (the body may be missing).
fn header_fits(bytes: &[u8], at: usize, written_at: usize, next: u64) -> bool {
    let Some(header) = bytes.get(at..at + RECORD_HEADER_LEN) else { return false };
    let (len, count) = (le_u32(header, 8) as usize, le_u32(header, 12) as usize);
    le_u64(header, 16) == next
        && len <= MAX_BATCH_BYTES
        && (1..=len / MIN_OP_LEN).contains(&count)
        && le_u64(header, 24) <= written_at as u64
}

/// Why the bad record at `at` (which should carry seqno `next`) cannot be a torn write, if
/// it cannot:
/// - its header holds its seqno, its length fits the file and no sector of it reads as
///   zeros: a crash keeps a prefix or loses whole sectors, so the record was written whole
///   and damaged since (or, if a sector does read as zeros, one flipped bit makes it valid:
///   searched only up to [`REPAIR_LIMIT`] bytes);
/// - one flipped bit of its header makes the whole record valid.
pub(crate) fn whole_final_record(bytes: &[u8], at: usize, next: u64) -> Option<String> {
    let rest = bytes.get(at..)?;
    if rest.len() < RECORD_HEADER_LEN {
        return None;
    }
    let valid = |record: &[u8]| {
        decode_record(record).is_ok_and(|r| r.first_seqno == next && r.synced_to <= at as u64)
    };
    if header_fits(bytes, at, at, next) {
        let len = RECORD_HEADER_LEN + le_u32(rest, 8) as usize;
        if len <= rest.len() {
            if !zero_sector_within(bytes, at..at + len) {
                return Some(format!(
                    "the record is whole ({len} bytes, to offset {}) and no {SECTOR_BYTES}-byte sector of it \
                     reads as zeros, as sectors lost in a crash do: damaged after it was written, not torn",
                    at + len
                ));
            }
            if len <= REPAIR_LIMIT {
                let mut record = rest[..len].to_vec();
                return one_bit_repair(&mut record, RECORD_HEADER_LEN..len, valid)
                    .map(|(offset, bit)| flipped(at + offset, bit));
            }
            return None;
        }
    }
    // A flipped header bit: the length may be the damaged field, so the record may be any
    // length that fits. The body is hashed only for candidates whose length and count fit.
    let mut record = rest[..rest.len().min(RECORD_HEADER_LEN + MAX_BATCH_BYTES)].to_vec();
    one_bit_repair(&mut record, 0..RECORD_HEADER_LEN, valid).map(|(offset, bit)| flipped(at + offset, bit))
}

fn flipped(offset: usize, bit: u8) -> String {
    format!("flipping bit {bit} of offset {offset} makes it a valid record: a flipped bit, not a torn write")
}

/// Why the zeros at `at` are a misdirected write, if a record header right after them (its
/// checksum's first bytes may be zeros too) carries `next`, the seqno of the record that
/// belongs at `at`, and could have been written there. A crash leaves the original bytes
/// after lost sectors, and every record after `at` carries a later seqno; the header is
/// checked field by field because the record may run past the end of the file.
pub(crate) fn displaced_record(bytes: &[u8], at: usize, next: u64) -> Option<String> {
    let run = bytes.get(at..)?.iter().take_while(|&&b| b == 0).count();
    if run < ORIGINAL_ZEROS {
        return None;
    }
    let end = at + run;
    let found = (end.saturating_sub(7).max(at + 1)..=end).find(|&h| header_fits(bytes, h, at, next))?;
    Some(format!(
        "zeros from offset {at}, then a record header at offset {found} carrying seqno {next}, the seqno \
         of the record that belongs at {at}: a misdirected write, not a torn one"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Batch;
    use crate::record::framed as record;

    #[test]
    fn zeros_at_the_damage_must_end_at_a_sector_boundary_or_the_end_of_the_file() {
        let mut bytes = vec![0u8; 3 * SECTOR_BYTES];
        assert_eq!(zeros_ending_off_a_sector(&bytes, 100), None, "zeros to the end of the file");
        bytes[2 * SECTOR_BYTES..].fill(7);
        assert_eq!(zeros_ending_off_a_sector(&bytes, 100), None, "zeros to a sector boundary");
        bytes[2 * SECTOR_BYTES..2 * SECTOR_BYTES + ORIGINAL_ZEROS - 1].fill(0);
        assert_eq!(zeros_ending_off_a_sector(&bytes, 100), None, "and a few original zeros");
        bytes[2 * SECTOR_BYTES - 300..].fill(7);
        assert!(zeros_ending_off_a_sector(&bytes, 100).is_some(), "zeros that stop mid-sector");
        assert_eq!(zeros_ending_off_a_sector(&bytes, 2 * SECTOR_BYTES - 310), None, "too few to say");
    }

    #[test]
    fn only_zeros_up_to_a_page_boundary_look_like_a_lost_write_back() {
        const P: usize = PAGE_BYTES;
        let mut bytes = vec![7u8; 4 * P];
        assert!(!lost_page_between(&bytes, 10, 3 * P), "no zeros");
        bytes[P..2 * P].fill(0);
        assert!(lost_page_between(&bytes, 10, 3 * P), "a whole lost page");
        assert!(!lost_page_between(&bytes, 10, 2 * P - 1), "the intact record is inside the page");
        bytes[P + 100] = 1;
        assert!(!lost_page_between(&bytes, 10, 3 * P), "a page with one set bit");
        // The page of the damage, synced up to it and lost after it; the next one kept.
        bytes[3 * P - 20..3 * P].fill(0);
        assert!(lost_page_between(&bytes, 3 * P - 20, 4 * P - 1));
        assert!(!lost_page_between(&bytes, 3 * P - 21, 4 * P - 1), "a set byte after the damage");
        bytes[3 * P..3 * P + ORIGINAL_ZEROS - 1].fill(0);
        assert!(lost_page_between(&bytes, 3 * P - 20, 4 * P - 1), "the kept page starts with a few zeros");
        bytes[3 * P + ORIGINAL_ZEROS - 1] = 0;
        assert!(!lost_page_between(&bytes, 3 * P - 20, 4 * P - 1), "zeros run on past the boundary");
        assert!(lost_page_between(&bytes, 3 * P - 20, 3 * P), "the intact record starts at the boundary");
    }

    fn puts(n: u64) -> Batch {
        let mut batch = Batch::new();
        for i in 0..n {
            batch.put(i + 1, i as i64 + 7, b"a payload of a few bytes, none of them zero");
        }
        batch
    }

    /// Issue #7 item 3: a flipped bit in the newest record, with nothing after it, was cut
    /// as a torn write and the synced batch in it lost. A whole record with no zero sector,
    /// or one flipped bit from valid, is damage.
    #[test]
    fn a_whole_final_record_with_a_flipped_bit_is_damage_not_a_torn_write() {
        let (at, next) = (100usize, 9u64);
        let batch = puts(30);
        let mut bytes = vec![1u8; at];
        bytes.extend(record(batch.as_bytes(), 30, next, 40));
        let end = bytes.len();
        for offset in [at, at + 9, at + 17, at + 30, at + 200, end - 1] {
            let mut damaged = bytes.clone();
            damaged[offset] ^= 4;
            assert!(whole_final_record(&damaged, at, next).is_some(), "flip at {offset}");
        }
        let mut body_flip = bytes.clone();
        body_flip[end - 5] ^= 1;
        assert!(whole_final_record(&body_flip, at, next).unwrap().contains("no 512-byte sector"));
        // The torn shapes: cut short, or a lost sector (zeros) inside.
        assert_eq!(whole_final_record(&bytes[..end - 1], at, next), None, "cut short");
        assert_eq!(whole_final_record(&bytes[..at + 20], at, next), None, "cut in the header");
        let mut lost = bytes.clone();
        lost[1024..1536].fill(0);
        assert_eq!(whole_final_record(&lost, at, next), None, "a lost sector");
        // A small record ending in zeros past a sector boundary: the one-bit search decides.
        let mut zeros = Batch::new();
        zeros.put(1, 2, &[0u8; 24]);
        let small = 512 - 60; // its payload of zeros runs over the sector boundary
        let mut tiny = vec![1u8; small];
        tiny.extend(record(zeros.as_bytes(), 1, next, 0));
        let mut flipped = tiny.clone();
        flipped[small + 33] ^= 2;
        assert!(whole_final_record(&flipped, small, next).unwrap().contains("flipping bit 1"));
        tiny[small + 33] ^= 6;
        assert_eq!(whole_final_record(&tiny, small, next), None, "two flips: a lost sector for all it shows");
        // Garbage is not a record one bit away.
        let garbage: Vec<u8> = (0..600u32).map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes()[2]).collect();
        assert_eq!(whole_final_record(&garbage, 0, next), None, "garbage");
    }

    /// Issue #7 item 4 (release run: workload seed 58): the final group's record landed past
    /// its place, over the next record, and its own place read as zeros; recovery cut it all
    /// as a torn write, losing synced batches.
    #[test]
    fn zeros_then_the_header_that_belongs_before_them_is_a_misdirected_write() {
        let (at, next) = (687usize, 938u64);
        let record = record(puts(8).as_bytes(), 8, next, 32);
        let mut bytes = vec![1u8; at];
        bytes.extend(vec![0u8; 345]);
        bytes.extend(&record[..94]);
        assert!(displaced_record(&bytes, at, next).unwrap().contains("at offset 1032 carrying seqno 938"));
        assert_eq!(displaced_record(&bytes, at, next + 8), None, "a later record after a lost sector");
        let mut lead = bytes.clone();
        lead[1032..1035].fill(0);
        assert!(displaced_record(&lead, at, next).is_some(), "a checksum starting with zero bytes");
        assert_eq!(displaced_record(&bytes[..1040], at, next), None, "too little of a header to say");
    }
}
