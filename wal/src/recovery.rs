//! Recovery: read every segment in order and return every intact batch.
//!
//! Rules, in the order they are applied:
//! - Unknown files in the directory are refused ([`WalError::ForeignFile`]); leftover
//!   `*.wal.tmp` files from an interrupted segment creation are removed.
//! - Segments whose every batch is at or below `persisted` (the next segment starts at or
//!   below `persisted + 1`) are obsolete: removed without being read.
//! - Within a segment, records must decode and their seqnos must run on without a gap,
//!   from record to record and from segment to segment.
//! - A record whose `synced_to` is past its own offset is damaged: no writer stamps that.
//! - A bad record at offset X in the *last* segment is a torn write, unless its checksum holds
//!   (a whole record out of sequence is a misdirected or stale write, not a torn one) or an
//!   intact record after X proves that X was synced: one that says the segment was synced
//!   past X, or one with a seqno that cannot follow X (a stale copy). An fsync writes every
//!   dirty page, so valid records after a hole that none of them says was synced were never
//!   synced either: a crash wrote back some unsynced pages and not others. Such a lost
//!   write-back reads as zeros up to a page boundary, so when intact records follow X, a
//!   page lost that way must lie between: other damage followed by intact records (a
//!   flipped bit, a lost write of one group) is never a crash's. Zeros at X that stop off a
//!   sector boundary before non-zero bytes are not a crash's either, nor a header after
//!   zeros that carries the seqno that belongs at X, nor a final record at X that lies whole
//!   in the file with no sector of zeros or is one flipped bit from valid (`tail.rs`).
//!   The segment is truncated at X (those records go too), synced, and the dropped bytes and records are
//!   reported. The tail is read a second time first: if it reads back differently it is a
//!   read fault, not a torn write, and recovery fails with [`WalError::Corruption`] rather
//!   than cut a record that may be intact and synced on disk.
//! - Any other bad record is mid-log corruption. In [`RecoveryMode::Strict`] (the default)
//!   recovery fails with [`WalError::Corruption`] naming the segment and offset. In
//!   [`RecoveryMode::PointInTime`] it stops before the damage: the segment is truncated
//!   there, later segments are removed, and the report says so.

use std::path::{Path, PathBuf};

use strata_vfs::{read_all, FileSystem};

use crate::batch::Batch;
use crate::record::{
    decode_record, decode_segment_header, HeaderError, MIN_OP_LEN, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use crate::segment::{classify, segment_path, Entry};
use crate::tail;
use crate::{RecoveredBatch, RecoveryMode, RecoveryReport, StoppedEarly, TornTail, WalError};

/// What recovery found, and where writing resumes.
pub(crate) struct Recovered {
    pub(crate) batches: Vec<RecoveredBatch>,
    pub(crate) report: RecoveryReport,
    /// First seqnos of the segments left in the directory, ascending.
    pub(crate) segments: Vec<u64>,
    /// The seqno the next batch gets.
    pub(crate) next_seqno: u64,
    /// The last segment, if it holds no record and can be appended to as is.
    pub(crate) reusable_last: Option<u64>,
}

struct Damage {
    segment_index: usize,
    offset: u64,
    reason: String,
    /// The seqno after the last intact record before the damage.
    next_seqno: u64,
}

/// Reads the WAL directory; see the module doc. The directory must be locked by the caller.
pub(crate) fn recover(
    fs: &dyn FileSystem,
    dir: &Path,
    mode: RecoveryMode,
    persisted: u64,
) -> Result<Recovered, WalError> {
    let mut report = RecoveryReport::default();
    let mut segments = list_segments(fs, dir, &mut report)?;
    remove_obsolete(fs, dir, &mut segments, persisted, &mut report)?;

    let mut batches = Vec::new();
    let mut expected: Option<u64> = None;
    let mut last_has_records = false;
    for index in 0..segments.len() {
        let is_last = index + 1 == segments.len();
        let outcome =
            read_segment(fs, dir, segments[index], expected, is_last, persisted, &mut batches, &mut report);
        match outcome {
            Ok(end) => {
                last_has_records = end != segments[index];
                expected = Some(end);
            }
            Err(SegmentFailure::Fatal(err)) => return Err(err),
            Err(SegmentFailure::Damaged(damage)) => {
                let damage = Damage { segment_index: index, ..damage };
                let path = segment_path(dir, segments[index]);
                if mode == RecoveryMode::Strict {
                    return Err(WalError::Corruption { path, offset: damage.offset, reason: damage.reason });
                }
                let end = stop_early(fs, dir, &mut segments, damage, &mut report)?;
                last_has_records = !segments.is_empty() && end != segments[segments.len() - 1];
                expected = Some(end);
                break;
            }
        }
    }
    report.segments = segments.len();
    report.batches = batches.len();
    let end = expected.unwrap_or(0);
    let next_seqno = end.max(persisted.saturating_add(1)).max(1);
    let reusable_last = match segments.last() {
        Some(&last) if !last_has_records && last == next_seqno => Some(last),
        _ => None,
    };
    Ok(Recovered { batches, report, segments, next_seqno, reusable_last })
}

fn list_segments(fs: &dyn FileSystem, dir: &Path, report: &mut RecoveryReport) -> Result<Vec<u64>, WalError> {
    let mut segments = Vec::new();
    let mut temps = Vec::new();
    for name in fs.list(dir)? {
        match classify(&name) {
            Entry::Segment(seqno) => segments.push(seqno),
            Entry::Temp => temps.push(name),
            Entry::Lock => {}
            Entry::Foreign => return Err(WalError::ForeignFile { path: dir.join(name) }),
        }
    }
    for name in &temps {
        fs.remove(&dir.join(name))?;
    }
    if !temps.is_empty() {
        fs.sync_dir(dir)?;
        report.temp_files_removed = temps.len();
    }
    segments.sort_unstable();
    Ok(segments)
}

fn remove_obsolete(
    fs: &dyn FileSystem,
    dir: &Path,
    segments: &mut Vec<u64>,
    persisted: u64,
    report: &mut RecoveryReport,
) -> Result<(), WalError> {
    // Segment i holds seqnos [segments[i], segments[i + 1]); it is obsolete when all of
    // them are persisted elsewhere. The last segment is never obsolete.
    let obsolete = segments.windows(2).take_while(|pair| pair[1] <= persisted.saturating_add(1)).count();
    for &seqno in &segments[..obsolete] {
        fs.remove(&segment_path(dir, seqno))?;
    }
    if obsolete > 0 {
        fs.sync_dir(dir)?;
    }
    segments.drain(..obsolete);
    report.obsolete_segments_removed = obsolete;
    Ok(())
}

enum SegmentFailure {
    /// Cannot go on whatever the mode (I/O error, wrong magic, unsupported version).
    Fatal(WalError),
    /// Damage that point-in-time recovery may stop before.
    Damaged(Damage),
}

impl From<WalError> for SegmentFailure {
    fn from(err: WalError) -> Self {
        SegmentFailure::Fatal(err)
    }
}

fn damaged(offset: u64, reason: String, next_seqno: u64) -> SegmentFailure {
    SegmentFailure::Damaged(Damage { segment_index: 0, offset, reason, next_seqno })
}

/// Reads one segment, pushing its batches; returns the seqno after its last record.
#[allow(clippy::too_many_arguments)]
fn read_segment(
    fs: &dyn FileSystem,
    dir: &Path,
    first_seqno: u64,
    expected: Option<u64>,
    is_last: bool,
    persisted: u64,
    batches: &mut Vec<RecoveredBatch>,
    report: &mut RecoveryReport,
) -> Result<u64, SegmentFailure> {
    let path = segment_path(dir, first_seqno);
    let file = fs.open(&path).map_err(WalError::from)?;
    let bytes = read_all(file.as_ref()).map_err(WalError::from)?;
    let resume = expected.unwrap_or(first_seqno);
    let header_damage = match decode_segment_header(&bytes) {
        Ok(seqno) if seqno == first_seqno => None,
        Ok(seqno) => Some(format!("header says first seqno {seqno}, the name says {first_seqno}")),
        Err(HeaderError::BadMagic) => return Err(SegmentFailure::Fatal(WalError::BadMagic { path })),
        Err(HeaderError::Version(version)) => {
            return Err(SegmentFailure::Fatal(WalError::UnsupportedVersion { path, version }))
        }
        Err(HeaderError::Short(len)) => Some(format!("segment of {len} bytes has no complete header")),
        Err(HeaderError::Checksum) => Some("segment header checksum mismatch".to_string()),
    };
    let header_damage = header_damage.or_else(|| {
        (resume != first_seqno)
            .then(|| format!("segment starts at seqno {first_seqno}, the previous one ends at {resume}"))
    });
    if let Some(reason) = header_damage {
        return Err(damaged(0, reason, resume));
    }

    let mut offset = SEGMENT_HEADER_LEN;
    let mut next = first_seqno;
    while offset < bytes.len() {
        let bad = match decode_record(&bytes[offset..]) {
            Ok(record) if record.synced_to > offset as u64 => {
                format!("record says the log was synced to {}, past its own offset", record.synced_to)
            }
            Ok(record) if record.first_seqno != next => {
                format!("record carries seqno {}, expected {next}", record.first_seqno)
            }
            Ok(record) => match Batch::decode(record.body, record.count) {
                Ok(batch) => {
                    if next + u64::from(record.count) > persisted.saturating_add(1) {
                        batches.push(RecoveredBatch { first_seqno: next, batch });
                    }
                    report.events += u64::from(record.count);
                    next += u64::from(record.count);
                    offset += record.total_len;
                    continue;
                }
                Err(reason) => format!("checksummed record does not decode: {reason}"),
            },
            Err(err) => err.to_string(),
        };
        // A record whose checksum holds is no torn write, even at the tail: a crash cuts or
        // garbles unsynced bytes, it cannot make a whole record with another seqno. A
        // misdirected or stale write can, and cutting there would drop the synced records
        // it covers, so it is damage.
        let checksummed = decode_record(&bytes[offset..]).is_ok();
        if !is_last || checksummed {
            return Err(damaged(offset as u64, bad, next));
        }
        let after = records_after(&bytes, offset, first_seqno, next);
        let evidence = after.synced.or_else(|| {
            after.first.filter(|&intact| !tail::lost_page_between(&bytes, offset, intact)).map(|intact| {
                format!(
                    "an intact record at offset {intact} follows, and no zeroed page before it shows a \
                     write-back lost in a crash: damage, not a torn write"
                )
            })
        });
        let evidence = evidence
            .or_else(|| tail::zeros_ending_off_a_sector(&bytes, offset))
            .or_else(|| tail::displaced_record(&bytes, offset, next))
            .or_else(|| {
                after.first.is_none().then(|| tail::whole_final_record(&bytes, offset, next)).flatten()
            });
        if let Some(evidence) = evidence {
            return Err(damaged(offset as u64, format!("{bad}; {evidence}"), next));
        }
        if !tail_reads_back_the_same(fs, &path, &bytes, offset)? {
            return Err(SegmentFailure::Fatal(WalError::Corruption {
                path,
                offset: offset as u64,
                reason: format!(
                    "{bad}; the damaged tail reads back differently on a second read: a read \
                     fault, not a torn write, so it is not cut"
                ),
            }));
        }
        truncate_torn_tail(fs, &path, &bytes, offset, after.records, report)?;
        return Ok(next);
    }
    if is_last {
        // The tail may be bytes a crashed process handed to the OS but never synced. They
        // must be durable before anything is written after them, or a power loss could
        // leave a hole between them and a new segment.
        file.sync_data().map_err(WalError::from)?;
    }
    Ok(next)
}

/// The intact records found after the damaged record at `damaged` of the last segment.
struct After {
    /// How many (counted up to the first piece of evidence, if any).
    records: usize,
    /// Offset of the first one.
    first: Option<usize>,
    /// Why one of them proves that `damaged` had been synced, if one does.
    synced: Option<String>,
}

/// Scans for records that decode after the damaged record at `damaged` (expected to start at
/// seqno `next`; the segment starts at `first`), stepping over each one found.
///
/// A record found there proves the damage lay in synced bytes if it says the segment was
/// synced past `damaged`, or if its seqno is at or below `next` (a stale or misdirected copy:
/// the damaged record itself holds `next`). One whose `synced_to` is past its own offset is
/// not counted: it is damaged itself.
///
/// The seqno is checked before `decode_record`: a record of this segment, a stale copy of an
/// earlier one included, carries at least `first`, and one after the damage at most one seqno
/// above `next` per `MIN_OP_LEN` bytes in between beyond the damaged record's header.
/// Without that filter, every offset whose length and count fields happen to fit (common
/// inside a large batch's payloads) hashed a body of up to the rest of the segment: the scan
/// was quadratic, and an open after a torn 29 MB batch took 40 s (debug build).
fn records_after(bytes: &[u8], damaged: usize, first: u64, next: u64) -> After {
    let mut after = After { records: 0, first: None, synced: None };
    let mut offset = damaged + 1;
    while offset < bytes.len() {
        let Some(field) = bytes.get(offset + 16..offset + 24) else { break };
        let seqno = u64::from_le_bytes(field.try_into().unwrap_or_default());
        let between = ((offset - damaged).saturating_sub(RECORD_HEADER_LEN) / MIN_OP_LEN) as u64;
        if !(first..=next.saturating_add(between)).contains(&seqno) {
            offset += 1;
            continue;
        }
        match decode_record(&bytes[offset..]) {
            Ok(record) if record.synced_to <= offset as u64 => {
                if record.synced_to > damaged as u64 {
                    after.synced = Some(format!(
                        "record at offset {offset} says the log was synced to {}: the damage is in \
                         synced bytes",
                        record.synced_to
                    ));
                } else if seqno <= next {
                    after.synced = Some(format!(
                        "record at offset {offset} carries seqno {seqno}, which cannot follow a record \
                         at seqno {next}: a stale or misdirected write"
                    ));
                }
                if after.synced.is_some() {
                    return after;
                }
                after.records += 1;
                after.first.get_or_insert(offset);
                offset += record.total_len;
            }
            _ => offset += 1,
        }
    }
    after
}

/// Whether the segment's bytes from `offset` on read back as `bytes` did. A torn write is
/// stable on disk; a tail that changes between two reads is a read fault, and cutting it
/// could drop a synced record that is intact on disk.
fn tail_reads_back_the_same(
    fs: &dyn FileSystem,
    path: &Path,
    bytes: &[u8],
    offset: usize,
) -> Result<bool, WalError> {
    let file = fs.open(path)?;
    let mut again = vec![0u8; bytes.len() - offset];
    file.read_at(offset as u64, &mut again)?;
    Ok(again[..] == bytes[offset..])
}

fn truncate_torn_tail(
    fs: &dyn FileSystem,
    path: &Path,
    bytes: &[u8],
    offset: usize,
    records_dropped: usize,
    report: &mut RecoveryReport,
) -> Result<(), WalError> {
    let file = fs.open(path)?;
    file.truncate(offset as u64)?;
    file.sync_data()?;
    report.torn_tail = Some(TornTail {
        path: path.to_path_buf(),
        offset: offset as u64,
        bytes_dropped: (bytes.len() - offset) as u64,
        records_dropped,
    });
    Ok(())
}

/// Point-in-time recovery: cut the log just before the damage. Returns the seqno after the
/// last kept record.
fn stop_early(
    fs: &dyn FileSystem,
    dir: &Path,
    segments: &mut Vec<u64>,
    damage: Damage,
    report: &mut RecoveryReport,
) -> Result<u64, WalError> {
    let damaged_seqno = segments[damage.segment_index];
    let damaged_path = segment_path(dir, damaged_seqno);
    let mut dropped: Vec<PathBuf> = Vec::new();
    let keep = if damage.offset == 0 {
        // The header itself is bad: the whole segment goes.
        damage.segment_index
    } else {
        let file = fs.open(&damaged_path)?;
        file.truncate(damage.offset)?;
        file.sync_data()?;
        damage.segment_index + 1
    };
    for &seqno in &segments[keep..] {
        let path = segment_path(dir, seqno);
        fs.remove(&path)?;
        dropped.push(path);
    }
    fs.sync_dir(dir)?;
    segments.truncate(keep);
    let next_seqno = damage.next_seqno;
    report.stopped_early = Some(StoppedEarly {
        path: damaged_path,
        offset: damage.offset,
        reason: damage.reason,
        segments_removed: dropped,
    });
    Ok(next_seqno)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::framed as record;

    fn found(after: &After) -> (usize, bool) {
        (after.records, after.synced.is_some())
    }

    /// Regression (a torn 1 M event batch made the next open take 40 s): the torn-tail scan
    /// hashed a body at every offset whose length and count fields fit. Here every 8 bytes
    /// read as a header of a 1 MiB, one-operation record, so without the seqno filter this
    /// test hashes about 100 GiB; with it, none.
    #[test]
    fn torn_tail_scan_skips_records_whose_seqno_cannot_follow() {
        let unit = [(1u32 << 20).to_le_bytes(), 1u32.to_le_bytes()].concat();
        let garbage = unit.repeat(256 << 10);
        let (first, next) = (3, 5);
        assert_eq!(found(&records_after(&garbage, 0, first, next)), (0, false));
        let mut body = Batch::new();
        body.delete(1, 2);
        let after = |seqno: u64, synced_to: u64| {
            [garbage.as_slice(), &record(body.as_bytes(), 1, seqno, synced_to)].concat()
        };
        assert_eq!(found(&records_after(&after(6, 0), 0, first, next)), (1, false), "one that can follow");
        let beyond = next + garbage.len() as u64;
        assert_eq!(found(&records_after(&after(beyond, 0), 0, first, next)), (0, false), "too many seqnos");
        assert_eq!(
            found(&records_after(&after(first - 1, 0), 0, first, next)),
            (0, false),
            "below the segment"
        );
    }

    /// Format v3 (the reordered-crash hole): what a record after the damage proves. Saying
    /// the log was synced past the damage, or being a stale copy (seqno at or below the
    /// damaged record's), makes it synced damage; a `synced_to` past the record's own offset
    /// is itself damage, so it proves nothing.
    #[test]
    fn records_after_the_damage_prove_it_synced_only_by_what_they_say() {
        let mut body = Batch::new();
        body.delete(1, 2);
        let hole = vec![0u8; 100];
        let at = hole.len() as u64;
        let after = |seqno: u64, synced_to: u64| {
            [hole.as_slice(), &record(body.as_bytes(), 1, seqno, synced_to)].concat()
        };
        let (first, next) = (3, 5);
        assert_eq!(found(&records_after(&after(6, 10), 10, first, next)), (1, false), "synced to the hole");
        let synced = records_after(&after(6, 11), 10, first, next);
        assert_eq!(found(&synced), (0, true), "synced past the hole");
        assert!(synced
            .synced
            .unwrap()
            .contains(&format!("record at offset {at} says the log was synced to 11")));
        assert_eq!(found(&records_after(&after(first, 0), 10, first, next)), (0, true), "a stale copy");
        assert_eq!(found(&records_after(&after(6, at + 1), 10, first, next)), (0, false), "impossible");
    }
}
