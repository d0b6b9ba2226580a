//! The bytes of CURRENT and of a manifest file (docs/format/manifest.md), and the pure
//! reading of a manifest's records: no I/O here, so that the fuzz target and the tests can
//! drive every rule of `load` with plain byte strings.
//!
//! Reading rules: the header must be exact. Records follow until the end. A bad record
//! (cut short, over-long, checksum mismatch) is a torn tail only if no valid record starts
//! anywhere after it: a write that was never acknowledged can only be the last thing in the
//! file. And only if it has a torn write's shape: a final record that lies whole in the file
//! with no sector reading as zeros, or that one flipped bit makes valid, was written whole
//! and damaged since (`strata_vfs::damage`). A record whose checksum holds but whose edit
//! does not decode or apply is damage, always.

use strata_vfs::damage::{one_bit_repair, zero_sector_within, REPAIR_LIMIT, SECTOR_BYTES};
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use super::edit::{Edit, ManifestState};

/// Magic of the CURRENT file.
pub(crate) const CURRENT_MAGIC: [u8; 8] = *b"STRATCUR";
/// Length of the CURRENT file.
pub(crate) const CURRENT_LEN: usize = 32;
/// Magic of a manifest file.
pub(crate) const MANIFEST_MAGIC: [u8; 8] = *b"STRATMAN";
/// Format version of CURRENT and of manifest files. Version 2 added the footer checksum to
/// each table record; version 3 the partition groups (tag 9). An older manifest is refused
/// as an unsupported version.
pub(crate) const FORMAT_VERSION: u32 = 3;
/// Length of the manifest file header.
pub(crate) const HEADER_LEN: usize = 16;
/// Length of a record header: `body_len u32 | checksum u64`.
pub(crate) const RECORD_HEADER_LEN: usize = 12;
/// Largest record body. The biggest record is the snapshot that starts a manifest, at 74
/// bytes a table: 900,000 tables fit.
pub(crate) const MAX_BODY_BYTES: usize = 64 << 20;

/// An error of a pure decoder: the byte offset of the damage and what is wrong.
pub(crate) type Damage = (u64, String);

/// The 32 bytes of a CURRENT file naming manifest `number`.
pub(crate) fn encode_current(number: u64) -> [u8; CURRENT_LEN] {
    let mut bytes = [0u8; CURRENT_LEN];
    bytes[..8].copy_from_slice(&CURRENT_MAGIC);
    bytes[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    // bytes 12..16: reserved, zero.
    bytes[16..24].copy_from_slice(&number.to_le_bytes());
    let checksum = xxh3_64(&bytes[..24]);
    bytes[24..].copy_from_slice(&checksum.to_le_bytes());
    bytes
}

/// The manifest number a CURRENT file names. The checksum is checked before the version so
/// that a damaged version byte reads as damage, not as a file from the future.
pub(crate) fn decode_current(bytes: &[u8]) -> Result<u64, Damage> {
    let Ok(bytes) = <&[u8; CURRENT_LEN]>::try_from(bytes) else {
        return Err((0, format!("CURRENT is {} bytes, expected {CURRENT_LEN}", bytes.len())));
    };
    if bytes[..8] != CURRENT_MAGIC {
        return Err((0, "bad magic: not a strata CURRENT file".to_string()));
    }
    let stored = le_u64(&bytes[24..]);
    let computed = xxh3_64(&bytes[..24]);
    if stored != computed {
        return Err((24, format!("checksum mismatch: stored {stored:#018x}, computed {computed:#018x}")));
    }
    check_version(&bytes[8..16], 8)?;
    Ok(le_u64(&bytes[16..24]))
}

/// The 16-byte header of a manifest file.
pub(crate) fn encode_header() -> [u8; HEADER_LEN] {
    let mut bytes = [0u8; HEADER_LEN];
    bytes[..8].copy_from_slice(&MANIFEST_MAGIC);
    bytes[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes
}

fn check_header(bytes: &[u8]) -> Result<(), Damage> {
    let Some(header) = bytes.get(..HEADER_LEN) else {
        return Err((0, format!("{} bytes, shorter than the {HEADER_LEN}-byte header", bytes.len())));
    };
    if header[..8] != MANIFEST_MAGIC {
        return Err((0, "bad magic: not a strata manifest".to_string()));
    }
    check_version(&header[8..16], 8)
}

/// Checks `version u32 | reserved u32`, found at `offset` of its file.
fn check_version(bytes: &[u8], offset: u64) -> Result<(), Damage> {
    let version = le_u32(&bytes[..4]);
    if version != FORMAT_VERSION {
        return Err((offset, format!("unsupported version {version} (this build reads {FORMAT_VERSION})")));
    }
    let reserved = le_u32(&bytes[4..8]);
    if reserved != 0 {
        return Err((offset + 4, format!("reserved field is {reserved:#x}, expected 0")));
    }
    Ok(())
}

/// Appends `edit` framed as one record. Err(body length) if the body is over
/// [`MAX_BODY_BYTES`]; `out` is then left as it was.
pub(crate) fn append_record(edit: &Edit, out: &mut Vec<u8>) -> Result<(), usize> {
    let start = out.len();
    out.extend_from_slice(&[0u8; RECORD_HEADER_LEN]);
    edit.encode(out);
    let body_start = start + RECORD_HEADER_LEN;
    let body_len = out.len() - body_start;
    let Some(len) = u32::try_from(body_len).ok().filter(|_| body_len <= MAX_BODY_BYTES) else {
        out.truncate(start);
        return Err(body_len);
    };
    let checksum = record_checksum(&out[body_start..], len);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..body_start].copy_from_slice(&checksum.to_le_bytes());
    Ok(())
}

/// Seeding with the length makes the checksum cover it, and keeps an all-zero record header
/// (a zero-filled tail) from validating: the hash of nothing with seed 0 is not 0.
fn record_checksum(body: &[u8], len: u32) -> u64 {
    xxh3_64_with_seed(body, u64::from(len))
}

/// The body of the record at the start of `bytes` and the record's total length, or why
/// there is no valid record there.
fn read_record(bytes: &[u8]) -> Result<(&[u8], usize), String> {
    let Some(header) = bytes.get(..RECORD_HEADER_LEN) else {
        return Err(format!("record header cut short: {} of {RECORD_HEADER_LEN} bytes", bytes.len()));
    };
    let len = le_u32(&header[..4]);
    let body_len = usize::try_from(len).ok().filter(|&n| n <= MAX_BODY_BYTES);
    let Some(body_len) = body_len else {
        return Err(format!("record body length {len} is over the limit of {MAX_BODY_BYTES}"));
    };
    let total = RECORD_HEADER_LEN + body_len;
    let Some(body) = bytes.get(RECORD_HEADER_LEN..total) else {
        let left = bytes.len() - RECORD_HEADER_LEN;
        return Err(format!("record body of {body_len} bytes runs past the end of the file ({left} left)"));
    };
    let stored = le_u64(&header[4..]);
    let computed = record_checksum(body, len);
    if stored != computed {
        return Err(format!("record checksum mismatch: stored {stored:#018x}, computed {computed:#018x}"));
    }
    Ok((body, total))
}

/// What a manifest file holds.
#[derive(Debug)]
pub(crate) struct Parsed {
    /// The fold of every valid record.
    pub state: ManifestState,
    /// Records applied.
    pub edits: u64,
    /// Where the last valid record ends.
    pub valid_bytes: u64,
    /// `(offset, bytes)` of a torn tail that was ignored.
    pub dropped_tail: Option<(u64, u64)>,
}

/// Reads a whole manifest file by the rules of the module doc.
pub(crate) fn parse_manifest(bytes: &[u8]) -> Result<Parsed, Damage> {
    check_header(bytes)?;
    let mut parsed = Parsed { state: ManifestState::default(), edits: 0, valid_bytes: 0, dropped_tail: None };
    let mut offset = HEADER_LEN;
    while offset < bytes.len() {
        let at = offset as u64;
        match read_record(&bytes[offset..]) {
            Ok((body, total)) => {
                apply_record(&mut parsed.state, body, parsed.edits == 0).map_err(|reason| (at, reason))?;
                parsed.edits += 1;
                offset += total;
            }
            Err(reason) if valid_record_after(bytes, offset + 1) => {
                return Err((at, format!("{reason}, but a valid record follows: damage inside the log")));
            }
            Err(reason) => {
                if let Some(evidence) = damaged_final_record(bytes, offset) {
                    return Err((at, format!("{reason}; {evidence}")));
                }
                parsed.dropped_tail = Some((at, (bytes.len() - offset) as u64));
                break;
            }
        }
    }
    parsed.valid_bytes = offset as u64;
    if parsed.edits == 0 {
        // `create` syncs the first record before CURRENT can name the file.
        return Err((
            HEADER_LEN as u64,
            "no valid record: the first record is missing or damaged".to_string(),
        ));
    }
    Ok(parsed)
}

fn apply_record(state: &mut ManifestState, body: &[u8], first: bool) -> Result<(), String> {
    let edit = Edit::decode(body).map_err(|reason| format!("checksummed edit does not decode: {reason}"))?;
    if first && edit.partition_width.is_none() {
        return Err("the first record does not set the partition width".to_string());
    }
    state.apply(&edit).map_err(|reason| format!("checksummed edit does not apply: {reason}"))
}

/// Why the bad final record at `offset` cannot be a torn edit, if it cannot (the shapes of
/// `strata_vfs::damage`): it lies whole in the file with no sector reading as zeros, or one
/// flipped bit makes it valid (its header's, or any of a record up to `REPAIR_LIMIT`
/// bytes). An edit is appended and synced whole, so a crash can only cut it short or lose
/// sectors of it.
fn damaged_final_record(bytes: &[u8], offset: usize) -> Option<String> {
    let rest = bytes.get(offset..)?;
    let header = rest.get(..RECORD_HEADER_LEN)?;
    let body_len = usize::try_from(le_u32(header)).ok().filter(|&n| n <= MAX_BODY_BYTES);
    let total = body_len.map_or(usize::MAX, |n| RECORD_HEADER_LEN + n);
    let whole = total <= rest.len();
    if whole && !zero_sector_within(bytes, offset..offset + total) {
        return Some(format!(
            "the record is whole ({total} bytes) and no {SECTOR_BYTES}-byte sector of it reads as zeros, \
             as sectors lost in a crash do: damaged after it was written, not torn"
        ));
    }
    let searched = if whole && total <= REPAIR_LIMIT { total } else { RECORD_HEADER_LEN };
    let mut record = rest[..rest.len().min(RECORD_HEADER_LEN + MAX_BODY_BYTES)].to_vec();
    let (at, bit) = one_bit_repair(&mut record, 0..searched, |r| read_record(r).is_ok())?;
    Some(format!(
        "flipping bit {bit} of offset {} makes it a valid record: a flipped bit, not a torn edit",
        offset + at
    ))
}

/// Whether a valid record starts anywhere at or after `from`. Tried at every byte, since the
/// length that would lead to it may be the damaged field.
fn valid_record_after(bytes: &[u8], from: usize) -> bool {
    (from..bytes.len()).any(|offset| read_record(&bytes[offset..]).is_ok())
}

fn le_u32(bytes: &[u8]) -> u32 {
    let mut array = [0u8; 4];
    array.copy_from_slice(&bytes[..4]);
    u32::from_le_bytes(array)
}

fn le_u64(bytes: &[u8]) -> u64 {
    let mut array = [0u8; 8];
    array.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(array)
}
