//! Byte layout of a table file: data blocks, then the metadata region (index, user filter,
//! range deletes), then a fixed footer. All integers little-endian; every byte is covered by
//! a checksum: each data block by the xxh3 in its index entry, the metadata region by the
//! footer's `meta_checksum`, the footer by its own checksum.
//!
//! ```text
//! +--------------------------+ 0
//! | data block 0             |  compressed columns (see `block`)
//! | data block 1             |
//! | ...                      |
//! +--------------------------+ index_offset  (metadata region starts)
//! | index: 72 bytes a block  |
//! +--------------------------+
//! | user filter              |  (see `filter`)
//! +--------------------------+
//! | range deletes: 32 bytes  |  user u64, first i64, last i64, seqno u64; table order
//! +--------------------------+ file_len - 152
//! | footer (152 bytes)       |
//! +--------------------------+ file_len
//!
//! index entry (72 bytes)              footer (152 bytes)
//!  0 offset u64                        0 index_offset u64
//!  8 len u32                           8 index_len u64
//! 12 entry_count u32                  16 filter_len u64
//! 16 first_user u64                   24 rangedel_len u64
//! 24 first_ts i64                     32 meta_checksum u64 = xxh3(metadata region)
//! 32 last_user u64                    40 entries u64
//! 40 last_ts i64                      48 users u64
//! 48 min_ts i64                       56 min_ts i64
//! 56 max_ts i64                       64 max_ts i64
//! 64 checksum u64 = xxh3(block)       72 min_seqno u64
//!                                     80 max_seqno u64
//!                                     88 partition i64
//!                                     96 partition_width u64
//!                                    104 block_count u32
//!                                    108 flags u32 (bit 0: sequence table,
//!                                                   bit 1: built compressed)
//!                                    112 range_deletes u64
//!                                    120 reserved u64 = 0
//!                                    128 version u32 = 2 (1 also read)
//!                                    132 footer_len u32 = 152
//!                                    136 footer_checksum u64 = xxh3(footer bytes 0..136)
//!                                    144 magic "STRATSST"
//! ```
//!
//! The last 24 bytes (version, footer length, checksum, magic) keep their place in every
//! future version, so that any build can tell "not a table", "damaged" and "too new" apart.

use xxhash_rust::xxh3::xxh3_64;

/// Magic number at the end of every table.
pub const TABLE_MAGIC: [u8; 8] = *b"STRATSST";
/// Current table format version: 2 since blocks may hold Rice-coded timestamps (block flags
/// bit 2), which a version 1 reader would refuse as unknown flags, block by block, long after
/// opening the table; the version makes it refuse the table at open instead.
pub const TABLE_VERSION: u32 = 2;
/// The oldest version this build reads: version 1 differs only in never using the Rice mode.
pub const MIN_TABLE_VERSION: u32 = 1;
/// Size of the footer.
pub const FOOTER_LEN: usize = 152;
const FOOTER_LEN_U32: u32 = 152;
/// Size of one index entry.
pub const INDEX_ENTRY_LEN: usize = 72;
/// Size of one range-delete record.
pub const RANGE_DELETE_LEN: usize = 32;

pub(crate) fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut array = [0u8; 4];
    array.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(array)
}

pub(crate) fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut array = [0u8; 8];
    array.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(array)
}

pub(crate) fn i64_at(bytes: &[u8], at: usize) -> i64 {
    u64_at(bytes, at) as i64
}

/// Where a data block is and what it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockHandle {
    /// Byte offset of the block in the file.
    pub offset: u64,
    /// On-disk length of the block.
    pub len: u32,
    /// Entries in the block.
    pub entry_count: u32,
    /// User and ts of the first entry.
    pub first: (u64, i64),
    /// User and ts of the last entry.
    pub last: (u64, i64),
    /// Smallest ts in the block.
    pub min_ts: i64,
    /// Largest ts in the block.
    pub max_ts: i64,
    /// xxh3 of the block's on-disk bytes.
    pub checksum: u64,
}

impl BlockHandle {
    /// Appends the 72-byte encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
        out.extend_from_slice(&self.entry_count.to_le_bytes());
        out.extend_from_slice(&self.first.0.to_le_bytes());
        out.extend_from_slice(&self.first.1.to_le_bytes());
        out.extend_from_slice(&self.last.0.to_le_bytes());
        out.extend_from_slice(&self.last.1.to_le_bytes());
        out.extend_from_slice(&self.min_ts.to_le_bytes());
        out.extend_from_slice(&self.max_ts.to_le_bytes());
        out.extend_from_slice(&self.checksum.to_le_bytes());
    }

    /// Decodes a 72-byte entry; `bytes` must hold exactly [`INDEX_ENTRY_LEN`] bytes.
    pub fn decode(bytes: &[u8]) -> Option<BlockHandle> {
        if bytes.len() != INDEX_ENTRY_LEN {
            return None;
        }
        Some(BlockHandle {
            offset: u64_at(bytes, 0),
            len: u32_at(bytes, 8),
            entry_count: u32_at(bytes, 12),
            first: (u64_at(bytes, 16), i64_at(bytes, 24)),
            last: (u64_at(bytes, 32), i64_at(bytes, 40)),
            min_ts: i64_at(bytes, 48),
            max_ts: i64_at(bytes, 56),
            checksum: u64_at(bytes, 64),
        })
    }
}

/// What a table holds, from its footer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Entries (all kinds).
    pub entries: u64,
    /// Distinct users.
    pub users: u64,
    /// Range deletes (also counted in `entries`).
    pub range_deletes: u64,
    /// Smallest ts of any entry (`i64::MAX` when empty).
    pub min_ts: i64,
    /// Largest ts of any entry, range-delete ends included (`i64::MIN` when empty).
    pub max_ts: i64,
    /// Smallest seqno (`u64::MAX` when empty).
    pub min_seqno: u64,
    /// Largest seqno (0 when empty).
    pub max_seqno: u64,
    /// The time partition the table belongs to.
    pub partition: i64,
    /// The partition width in microseconds.
    pub partition_width: u64,
    /// A time-ordered sequence table (`true`) or one of late, unsequence data.
    pub sequence: bool,
    /// Built with a compressing codec. Its blocks are compressed where that saves bytes; a
    /// block that would not shrink is stored raw, so the blocks alone cannot tell. Tables
    /// of an older build have the bit clear.
    pub compressed: bool,
    /// Data blocks.
    pub blocks: u32,
    /// File size in bytes.
    pub file_bytes: u64,
    /// The footer's own checksum (xxh3 of footer bytes 0..136). The footer holds the
    /// metadata checksum and the index holds each block's, so this one value is the root of
    /// a checksum tree over the whole table: a parent that records it (the engine's manifest)
    /// can tell its table from any other well-formed table. Like `file_bytes`, it is filled
    /// in by the reader and the builder; [`Footer::encode`] computes it and ignores this.
    pub footer_checksum: u64,
}

/// The decoded footer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Footer {
    /// Start of the metadata region (end of the data blocks).
    pub index_offset: u64,
    /// Length of the index.
    pub index_len: u64,
    /// Length of the filter.
    pub filter_len: u64,
    /// Length of the range-delete list.
    pub rangedel_len: u64,
    /// xxh3 of the metadata region.
    pub meta_checksum: u64,
    /// The table's stats (`file_bytes` and `footer_checksum` filled in by the reader).
    pub stats: TableStats,
}

impl Footer {
    /// The 152-byte encoding.
    pub fn encode(&self) -> [u8; FOOTER_LEN] {
        let mut out = Vec::with_capacity(FOOTER_LEN);
        let s = &self.stats;
        for value in
            [self.index_offset, self.index_len, self.filter_len, self.rangedel_len, self.meta_checksum]
        {
            out.extend_from_slice(&value.to_le_bytes());
        }
        for value in [s.entries, s.users] {
            out.extend_from_slice(&value.to_le_bytes());
        }
        out.extend_from_slice(&s.min_ts.to_le_bytes());
        out.extend_from_slice(&s.max_ts.to_le_bytes());
        out.extend_from_slice(&s.min_seqno.to_le_bytes());
        out.extend_from_slice(&s.max_seqno.to_le_bytes());
        out.extend_from_slice(&s.partition.to_le_bytes());
        out.extend_from_slice(&s.partition_width.to_le_bytes());
        out.extend_from_slice(&s.blocks.to_le_bytes());
        let flags = u32::from(s.sequence) | (u32::from(s.compressed) << 1);
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&s.range_deletes.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes());
        out.extend_from_slice(&TABLE_VERSION.to_le_bytes());
        out.extend_from_slice(&FOOTER_LEN_U32.to_le_bytes());
        let checksum = xxh3_64(&out);
        out.extend_from_slice(&checksum.to_le_bytes());
        out.extend_from_slice(&TABLE_MAGIC);
        let mut footer = [0u8; FOOTER_LEN];
        footer.copy_from_slice(&out);
        footer
    }

    /// Decodes the footer at the end of `file`. The error says which kind of failure:
    /// not a table, damaged, or a newer version.
    pub fn decode(file: &[u8]) -> Result<Footer, FooterError> {
        Footer::decode_tail(file, file.len() as u64)
    }

    /// How many bytes from the end of a file of `file_len` bytes [`Footer::decode_tail`]
    /// needs, given `tail`, the file's last `min(file_len, FOOTER_LEN)` bytes (or more):
    /// [`FOOTER_LEN`], or more when the footer-length field names a longer footer that fits
    /// in the file (a newer version, or damage), never more than `file_len`.
    pub fn tail_len(tail: &[u8], file_len: u64) -> u64 {
        let len = tail.len();
        let named =
            if len >= 24 && tail[len - 8..] == TABLE_MAGIC { u64::from(u32_at(tail, len - 20)) } else { 0 };
        named.max(FOOTER_LEN as u64).min(file_len)
    }

    /// [`Footer::decode`] of a file of `file_len` bytes given only its end: `tail` is the
    /// file's last `tail.len()` bytes, at least [`Footer::tail_len`] of them. Answers exactly
    /// as `decode` of the whole file would; offsets in errors are offsets in the file. Never
    /// panics: a tail shorter than promised is reported as a damaged footer.
    pub fn decode_tail(tail: &[u8], file_len: u64) -> Result<Footer, FooterError> {
        let file_len_usize = usize::try_from(file_len).unwrap_or(usize::MAX);
        // Bytes before the file's start, if the caller passed any, are not the file's.
        let tail = &tail[tail.len().saturating_sub(file_len_usize)..];
        let len = tail.len();
        // Offsets in the tail become offsets in the file by adding `base`.
        let base = file_len_usize - len;
        if file_len < 24 {
            return Err(FooterError::NotATable(format!("{file_len} bytes is too short for a footer")));
        }
        if len < 24 || tail[len - 8..] != TABLE_MAGIC {
            return Err(FooterError::NotATable("no STRATSST magic number at the end".into()));
        }
        let version = u32_at(tail, len - 24);
        let footer_len = u32_at(tail, len - 20) as usize;
        if footer_len < 24 || footer_len as u64 > file_len {
            return Err(FooterError::Damaged(
                base + len - 20,
                format!("footer length {footer_len} does not fit"),
            ));
        }
        if footer_len > len {
            return Err(FooterError::Damaged(
                base + len - 20,
                format!("footer length {footer_len}: only the last {len} bytes were read"),
            ));
        }
        let footer = &tail[len - footer_len..];
        if xxh3_64(&footer[..footer_len - 16]) != u64_at(footer, footer_len - 16) {
            return Err(FooterError::Damaged(base + len - footer_len, "footer checksum mismatch".into()));
        }
        if !(MIN_TABLE_VERSION..=TABLE_VERSION).contains(&version) {
            return Err(FooterError::Version(version));
        }
        if footer_len != FOOTER_LEN {
            return Err(FooterError::Damaged(
                base + len - 20,
                format!("version {version} footer of {footer_len} bytes"),
            ));
        }
        let stats = TableStats {
            entries: u64_at(footer, 40),
            users: u64_at(footer, 48),
            min_ts: i64_at(footer, 56),
            max_ts: i64_at(footer, 64),
            min_seqno: u64_at(footer, 72),
            max_seqno: u64_at(footer, 80),
            partition: i64_at(footer, 88),
            partition_width: u64_at(footer, 96),
            blocks: u32_at(footer, 104),
            sequence: u32_at(footer, 108) & 1 == 1,
            compressed: u32_at(footer, 108) & 2 == 2,
            range_deletes: u64_at(footer, 112),
            file_bytes: file_len,
            footer_checksum: u64_at(footer, footer_len - 16),
        };
        Ok(Footer {
            index_offset: u64_at(footer, 0),
            index_len: u64_at(footer, 8),
            filter_len: u64_at(footer, 16),
            rangedel_len: u64_at(footer, 24),
            meta_checksum: u64_at(footer, 32),
            stats,
        })
    }
}

/// Why a footer was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum FooterError {
    /// Not a strata table at all.
    NotATable(String),
    /// Damaged: the byte offset and what is wrong.
    Damaged(usize, String),
    /// A version this build does not read.
    Version(u32),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn footer() -> Footer {
        Footer {
            index_offset: 100,
            index_len: 72,
            filter_len: 10,
            rangedel_len: 0,
            meta_checksum: 7,
            stats: TableStats {
                entries: 5,
                users: 2,
                range_deletes: 0,
                min_ts: -3,
                max_ts: 9,
                min_seqno: 1,
                max_seqno: 5,
                partition: 19_675,
                partition_width: 86_400_000_000,
                sequence: true,
                compressed: true,
                blocks: 1,
                file_bytes: 334,
                footer_checksum: 0,
            },
        }
    }

    #[test]
    fn footer_round_trips_and_tells_failures_apart() {
        let mut file = vec![0u8; 182];
        let encoded = footer().encode();
        file.extend_from_slice(&encoded);
        let mut decoded = footer();
        decoded.stats.footer_checksum = xxh3_64(&encoded[..136]);
        assert_eq!(Footer::decode(&file), Ok(decoded));
        let mut bad = file.clone();
        bad[200] ^= 1;
        assert!(matches!(Footer::decode(&bad), Err(FooterError::Damaged(..))));
        let mut short = file.clone();
        short.truncate(300);
        assert!(matches!(Footer::decode(&short), Err(FooterError::NotATable(_))));
        let with_version = |version: u32| {
            let mut file = file.clone();
            let at = file.len() - 24;
            file[at..at + 4].copy_from_slice(&version.to_le_bytes());
            let start = file.len() - FOOTER_LEN;
            let checksum = xxh3_64(&file[start..file.len() - 16]);
            let at = file.len() - 16;
            file[at..at + 8].copy_from_slice(&checksum.to_le_bytes());
            file
        };
        assert_eq!(Footer::decode(&with_version(TABLE_VERSION + 1)), Err(FooterError::Version(3)));
        assert_eq!(Footer::decode(&with_version(0)), Err(FooterError::Version(0)));
        // Version 1 tables (before the Rice timestamp mode) still read.
        let old = with_version(1);
        let mut decoded = footer();
        decoded.stats.footer_checksum = u64_at(&old, old.len() - 16);
        assert_eq!(Footer::decode(&old), Ok(decoded));
    }

    /// What `Table::open` does: the last FOOTER_LEN bytes, more if `tail_len` asks for them.
    fn decode_from_the_end(file: &[u8]) -> Result<Footer, FooterError> {
        let len = file.len() as u64;
        let tail = &file[file.len() - FOOTER_LEN.min(file.len())..];
        let wanted = usize::try_from(Footer::tail_len(tail, len)).unwrap();
        Footer::decode_tail(&file[file.len() - wanted..], len)
    }

    #[test]
    fn decoding_the_tail_answers_like_decoding_the_whole_file() {
        let mut file = vec![0u8; 182];
        file.extend_from_slice(&footer().encode());
        // A newer version with a longer footer keeps the last 24 bytes in place.
        let mut newer = file.clone();
        newer.truncate(newer.len() - 24);
        newer.extend_from_slice(&[9u8; 48]);
        newer.extend_from_slice(&7u32.to_le_bytes());
        newer.extend_from_slice(&200u32.to_le_bytes());
        // The 200-byte footer ends 16 bytes (checksum, magic) after what is written so far.
        let start = newer.len() + 16 - 200;
        let checksum = xxh3_64(&newer[start..]);
        newer.extend_from_slice(&checksum.to_le_bytes());
        newer.extend_from_slice(&TABLE_MAGIC);
        assert_eq!(Footer::decode(&newer), Err(FooterError::Version(7)));
        let mut cases = vec![file.clone(), newer, Vec::new(), b"STRATSST".to_vec()];
        for pos in (0..file.len()).step_by(3) {
            let mut bad = file.clone();
            bad[pos] ^= 0x41;
            cases.push(bad);
        }
        for len in 0..file.len() {
            cases.push(file[file.len() - len..].to_vec());
            cases.push(file[..len].to_vec());
        }
        let mut long = file.clone();
        let at = long.len() - 20;
        long[at..at + 4].copy_from_slice(&300u32.to_le_bytes());
        cases.push(long);
        for case in &cases {
            assert_eq!(decode_from_the_end(case), Footer::decode(case), "{} bytes", case.len());
        }
        // A tail shorter than `tail_len` asked for is an error, never a panic.
        let newer = &cases[1];
        let short = &newer[newer.len() - FOOTER_LEN..];
        assert!(matches!(Footer::decode_tail(short, newer.len() as u64), Err(FooterError::Damaged(..))));
        assert!(matches!(Footer::decode_tail(&[], 1000), Err(FooterError::NotATable(_))));
    }

    #[test]
    fn index_entries_round_trip() {
        let handle = BlockHandle {
            offset: 1,
            len: 2,
            entry_count: 3,
            first: (4, -5),
            last: (6, 7),
            min_ts: -8,
            max_ts: 9,
            checksum: 10,
        };
        let mut out = Vec::new();
        handle.encode(&mut out);
        assert_eq!(out.len(), INDEX_ENTRY_LEN);
        assert_eq!(BlockHandle::decode(&out), Some(handle));
    }
}
