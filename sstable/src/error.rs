//! The one error type of the SSTable crate. Every variant that comes from a file names it;
//! corruption also names the byte offset, so that damage is reported, never returned as data.

use std::path::PathBuf;

/// Result of SSTable operations.
pub type Result<T> = std::result::Result<T, SstError>;

/// What went wrong building or reading a table.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SstError {
    /// A file-system operation failed.
    #[error(transparent)]
    Fs(#[from] strata_vfs::FsError),
    /// Damaged data: a checksum mismatch, a length that does not fit, a value out of range.
    #[error("corruption in {file} at offset {offset}: {reason}")]
    Corruption {
        /// The table file.
        file: PathBuf,
        /// Byte offset of the damaged structure.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The file is not a strata table (too short, or a wrong magic number).
    #[error("{file} is not a strata table: {reason}")]
    NotATable {
        /// The file.
        file: PathBuf,
        /// Why.
        reason: String,
    },
    /// A table written by a format version this build cannot read.
    #[error(
        "{file}: table format version {version} is not supported (this build reads version {supported})"
    )]
    UnsupportedVersion {
        /// The file.
        file: PathBuf,
        /// The version found.
        version: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// The builder was given an entry that does not sort after the previous one.
    #[error("{file}: entry {next:?} added after {previous:?}: entries must be sorted by user, ts ascending and seqno descending, without duplicates")]
    OutOfOrder {
        /// The table being built.
        file: PathBuf,
        /// `(user, ts, seqno)` of the previous entry.
        previous: (u64, i64, u64),
        /// `(user, ts, seqno)` of the offending entry.
        next: (u64, i64, u64),
    },
    /// An entry the format cannot hold (a value over the limit, a malformed range delete).
    #[error("{file}: bad entry: {reason}")]
    BadEntry {
        /// The table being built.
        file: PathBuf,
        /// Why.
        reason: String,
    },
    /// An option with a value that cannot work.
    #[error("invalid SSTable option {name}: {reason}")]
    InvalidOption {
        /// The option.
        name: &'static str,
        /// Why.
        reason: String,
    },
    /// Mapping the file into memory failed.
    #[error("cannot map {file}: {reason}")]
    Map {
        /// The file.
        file: PathBuf,
        /// The OS error.
        reason: String,
    },
}
