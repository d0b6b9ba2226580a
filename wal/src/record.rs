//! Byte layout of a WAL segment: a header, then records back to back.
//!
//! ```text
//! segment header (32 bytes)
//! +--------+--------+--------+--------+--------+--------+--------+--------+
//! | magic "STRATWAL" (8)                                                  |  0
//! +--------+--------+--------+--------+--------+--------+--------+--------+
//! | version u32 = 4                   | reserved u32 = 0                  |  8
//! +--------+--------+--------+--------+--------+--------+--------+--------+
//! | first_seqno u64 (equals the number in the file name)                  | 16
//! +--------+--------+--------+--------+--------+--------+--------+--------+
//! | header checksum u64 = xxh3_64(bytes 0..24)                            | 24
//! +--------+--------+--------+--------+--------+--------+--------+--------+
//!
//! record (32-byte header + body)
//! +--------+--------+--------+--------+--------+--------+--------+--------+
//! | checksum u64 = xxh3_64_with_seed(bytes 8..32, seed = xxh3_64(body))   |  0
//! +--------+--------+--------+--------+--------+--------+--------+--------+
//! | len u32 (body bytes)              | count u32 (operations, >= 1)      |  8
//! +--------+--------+--------+--------+--------+--------+--------+--------+
//! | first_seqno u64 (seqno of the batch's first operation)                | 16
//! +--------+--------+--------+--------+--------+--------+--------+--------+
//! | synced_to u64 (segment offset durable when the record was appended)   | 24
//! +--------+--------+--------+--------+--------+--------+--------+--------+
//! | body: the batch's encoded operations (len bytes)                  ... | 32
//! ```
//!
//! All integers are little-endian. The checksum is chained: the body's xxh3 seeds the hash
//! of the header fields, so it covers every byte of the record, and the body's hash (the
//! expensive part) can be computed by the writing thread before the group commit orders the
//! record and assigns its seqno. It covers the length, so a damaged length is caught, and a length is never used before it is checked against [`MAX_BATCH_BYTES`] and
//! the bytes that remain in the segment. Records carry their first seqno, and seqnos run on
//! without a gap from record to record and segment to segment; recovery checks that, which
//! catches a record written to the wrong place.
//!
//! `synced_to` lets recovery tell a hole in never-synced bytes (a crash that wrote back some
//! dirty pages and not others) from damage to synced bytes: an fsync writes every dirty page,
//! so a hole that a later record's `synced_to` covers was synced, and is corruption. It never
//! exceeds the record's own offset; a record that says otherwise is damaged.

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use crate::batch::MAX_BATCH_BYTES;

/// Magic number at the start of every segment.
pub const SEGMENT_MAGIC: [u8; 8] = *b"STRATWAL";
/// Current segment format version.
pub const SEGMENT_VERSION: u32 = 4;
/// Size of the segment header.
pub const SEGMENT_HEADER_LEN: usize = 32;
/// Size of a record header.
pub const RECORD_HEADER_LEN: usize = 32;
/// Size of the smallest encoded operation (a delete: tag, user, a one-byte ts delta).
pub(crate) const MIN_OP_LEN: usize = 10;

pub(crate) fn le_u32(bytes: &[u8], at: usize) -> u32 {
    let mut array = [0u8; 4];
    array.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(array)
}

pub(crate) fn le_u64(bytes: &[u8], at: usize) -> u64 {
    let mut array = [0u8; 8];
    array.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(array)
}

/// Encodes a segment header for a segment whose first record has seqno `first_seqno`.
pub fn encode_segment_header(first_seqno: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut header = [0u8; SEGMENT_HEADER_LEN];
    header[0..8].copy_from_slice(&SEGMENT_MAGIC);
    header[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    header[16..24].copy_from_slice(&first_seqno.to_le_bytes());
    let checksum = xxh3_64(&header[0..24]);
    header[24..32].copy_from_slice(&checksum.to_le_bytes());
    header
}

/// Why a segment header was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer than [`SEGMENT_HEADER_LEN`] bytes.
    Short(usize),
    /// Not a strata WAL segment.
    BadMagic,
    /// A version this build cannot read.
    Version(u32),
    /// The header's checksum does not match.
    Checksum,
}

/// Decodes a segment header and returns the segment's first seqno.
pub fn decode_segment_header(bytes: &[u8]) -> Result<u64, HeaderError> {
    if bytes.len() < SEGMENT_HEADER_LEN {
        return Err(HeaderError::Short(bytes.len()));
    }
    if bytes[0..8] != SEGMENT_MAGIC {
        return Err(HeaderError::BadMagic);
    }
    if xxh3_64(&bytes[0..24]) != le_u64(bytes, 24) {
        return Err(HeaderError::Checksum);
    }
    let version = le_u32(bytes, 8);
    if version != SEGMENT_VERSION {
        return Err(HeaderError::Version(version));
    }
    Ok(le_u64(bytes, 16))
}

/// The hash of a record body, the expensive half of the record checksum.
pub fn body_hash(body: &[u8]) -> u64 {
    xxh3_64(body)
}

/// Encodes the header of a record whose body has `len` bytes, `count` operations and hash
/// `body_hash` (see [`body_hash`]), whose first operation has seqno `first_seqno`, and that
/// is appended when its segment is durable up to offset `synced_to`.
pub fn encode_record_header(
    len: u32,
    count: u32,
    first_seqno: u64,
    synced_to: u64,
    body_hash: u64,
) -> [u8; RECORD_HEADER_LEN] {
    let mut header = [0u8; RECORD_HEADER_LEN];
    header[8..12].copy_from_slice(&len.to_le_bytes());
    header[12..16].copy_from_slice(&count.to_le_bytes());
    header[16..24].copy_from_slice(&first_seqno.to_le_bytes());
    set_synced_to(&mut header, synced_to, body_hash);
    header
}

/// Sets the `synced_to` field of a framed header and reseals its checksum. The group commit
/// frames a record before its place in a segment is known; the segment writer fills this in.
pub fn set_synced_to(header: &mut [u8; RECORD_HEADER_LEN], synced_to: u64, body_hash: u64) {
    header[24..32].copy_from_slice(&synced_to.to_le_bytes());
    let checksum = xxh3_64_with_seed(&header[8..RECORD_HEADER_LEN], body_hash);
    header[0..8].copy_from_slice(&checksum.to_le_bytes());
}

/// The seqno after the last operation of the record with this header.
pub fn end_seqno(header: &[u8; RECORD_HEADER_LEN]) -> u64 {
    le_u64(header, 16) + u64::from(le_u32(header, 12))
}

/// A record decoded from a segment.
#[derive(Debug, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Seqno of the first operation.
    pub first_seqno: u64,
    /// Number of operations.
    pub count: u32,
    /// Offset of its segment that was durable when the record was appended.
    pub synced_to: u64,
    /// The batch's encoded operations.
    pub body: &'a [u8],
    /// Total bytes of the record, header included.
    pub total_len: usize,
}

/// Why no record could be decoded at an offset.
#[derive(Debug, PartialEq, Eq)]
pub enum RecordError {
    /// The segment ends inside the record header or body.
    Truncated,
    /// The length field is over the limit.
    BadLength(u32),
    /// The checksum does not match.
    Checksum,
    /// An operation count that cannot fit the body (zero, or more than `len / MIN_OP_LEN`).
    BadCount(u32),
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordError::Truncated => f.write_str("record cut short by the end of the segment"),
            RecordError::BadLength(len) => write!(f, "record length {len} over the limit"),
            RecordError::Checksum => f.write_str("record checksum mismatch"),
            RecordError::BadCount(count) => {
                write!(f, "record operation count {count} does not fit its length")
            }
        }
    }
}

/// Decodes the record that starts at `buf[0]` (`buf` runs to the end of the segment).
pub fn decode_record(buf: &[u8]) -> Result<RecordRef<'_>, RecordError> {
    if buf.len() < RECORD_HEADER_LEN {
        return Err(RecordError::Truncated);
    }
    let len = le_u32(buf, 8);
    if len as usize > MAX_BATCH_BYTES {
        return Err(RecordError::BadLength(len));
    }
    let total_len = RECORD_HEADER_LEN + len as usize;
    if buf.len() < total_len {
        return Err(RecordError::Truncated);
    }
    // Checked before the checksum so that scanning damaged bytes for the next record
    // rarely pays for a hash.
    let count = le_u32(buf, 12);
    if count == 0 || count as usize > len as usize / MIN_OP_LEN {
        return Err(RecordError::BadCount(count));
    }
    let body = &buf[RECORD_HEADER_LEN..total_len];
    if xxh3_64_with_seed(&buf[8..RECORD_HEADER_LEN], body_hash(body)) != le_u64(buf, 0) {
        return Err(RecordError::Checksum);
    }
    Ok(RecordRef { first_seqno: le_u64(buf, 16), count, synced_to: le_u64(buf, 24), body, total_len })
}

/// A whole record framing `body` (`count` operations, first seqno `seqno`, appended when
/// its segment was durable to `synced_to`): what the writer appends. For tests.
#[cfg(test)]
pub(crate) fn framed(body: &[u8], count: u32, seqno: u64, synced_to: u64) -> Vec<u8> {
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let mut record = encode_record_header(len, count, seqno, synced_to, body_hash(body)).to_vec();
    record.extend_from_slice(body);
    record
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sealed(body: &[u8], count: u32, seqno: u64) -> Vec<u8> {
        framed(body, count, seqno, 32)
    }

    #[test]
    fn header_round_trips_and_refuses_damage() {
        let header = encode_segment_header(42);
        assert_eq!(decode_segment_header(&header), Ok(42));
        assert_eq!(decode_segment_header(&header[..31]), Err(HeaderError::Short(31)));
        let mut bad = header;
        bad[0] = b'X';
        assert_eq!(decode_segment_header(&bad), Err(HeaderError::BadMagic));
        let mut bad = header;
        bad[17] ^= 1;
        assert_eq!(decode_segment_header(&bad), Err(HeaderError::Checksum));
        let mut future = header;
        future[8] = 5;
        let checksum = xxh3_64(&future[0..24]);
        future[24..32].copy_from_slice(&checksum.to_le_bytes());
        assert_eq!(decode_segment_header(&future), Err(HeaderError::Version(5)));
    }

    proptest! {
        #[test]
        fn record_round_trips(body in proptest::collection::vec(any::<u8>(), 17..300), count in 1u32..2, seqno: u64) {
            let record = sealed(&body, count, seqno);
            let decoded = decode_record(&record).unwrap();
            prop_assert_eq!(decoded, RecordRef { first_seqno: seqno, count, synced_to: 32, body: &body, total_len: record.len() });
        }

        #[test]
        fn any_single_bit_flip_or_cut_is_detected(
            body in proptest::collection::vec(any::<u8>(), 51..200),
            at in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let record = sealed(&body, 3, 9);
            let mut damaged = record.clone();
            damaged[at.index(record.len())] ^= 1 << bit;
            prop_assert!(decode_record(&damaged).is_err());
            let cut = at.index(record.len());
            prop_assert_eq!(decode_record(&record[..cut]), Err(RecordError::Truncated));
        }
    }

    #[test]
    fn huge_length_is_refused_before_use() {
        let mut record = sealed(b"abc", 1, 1);
        record[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_record(&record), Err(RecordError::BadLength(u32::MAX)));
    }
}
