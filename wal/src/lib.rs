//! strata's write-ahead log.
//!
//! Every write batch is appended here before it is applied to the memtable, so that an
//! acknowledged batch survives a crash. The log is a directory of segment files, each named
//! by the seqno of its first record; a record holds one atomic batch (see `record` for the
//! byte layout and docs/format/wal.md for the whole format).
//!
//! Data flow: [`Wal::append`] encodes the batch into a record, the group commit (`commit`)
//! orders it and hands a group of records to the segment writer (`writer`), which makes one
//! write and at most one fsync for the whole group and rotates segments. [`Wal::open`] runs
//! recovery (`recovery`) before accepting writes. [`Wal::release`] removes segments whose
//! batches the engine has persisted in tables.
//!
//! Durability contract: `append(batch, sync = true)` returns `Ok` only after the batch is
//! fsynced; `sync = false` returns after the bytes were handed to the OS. After any failed
//! write or fsync the log is poisoned: every later call fails until it is reopened.

#![forbid(unsafe_code)]

mod batch;
mod commit;
mod log;
mod record;
mod recovery;
mod segment;
mod sync;
mod tail;
mod varint;
mod writeback;
mod writer;

use std::path::PathBuf;
use std::time::Duration;

pub use batch::{Batch, Op, MAX_BATCH_BYTES};
pub(crate) use log::Segments;
pub use log::{Wal, WalStats};
pub use record::{RECORD_HEADER_LEN, SEGMENT_HEADER_LEN, SEGMENT_MAGIC, SEGMENT_VERSION};
pub use segment::{segment_name, LOCK_NAME};

#[doc(hidden)]
pub mod fuzzing;
#[cfg(loom)]
#[doc(hidden)]
pub mod loom_model;

/// The one error type of the WAL.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    /// A file-system operation failed.
    #[error(transparent)]
    Fs(#[from] strata_vfs::FsError),
    /// `append` of a batch with no operation.
    #[error("empty batch: a batch must hold at least one operation")]
    EmptyBatch,
    /// `append` of a batch over [`MAX_BATCH_BYTES`].
    #[error("batch of {bytes} encoded bytes is over the limit of {limit} bytes")]
    BatchTooLarge {
        /// Encoded size of the batch (`usize::MAX` when a payload alone is over 4 GiB).
        bytes: usize,
        /// The limit, [`MAX_BATCH_BYTES`].
        limit: usize,
    },
    /// A file in the WAL directory that the WAL did not write.
    #[error("foreign file {path} in the WAL directory: refusing to open (wrong directory?)")]
    ForeignFile {
        /// The file.
        path: PathBuf,
    },
    /// A segment whose magic number is not strata's.
    #[error("{path} is not a strata WAL segment (bad magic number)")]
    BadMagic {
        /// The segment.
        path: PathBuf,
    },
    /// A segment written by a format version this build cannot read.
    #[error(
        "{path}: WAL format version {version} is not supported (this build reads version {})",
        SEGMENT_VERSION
    )]
    UnsupportedVersion {
        /// The segment.
        path: PathBuf,
        /// The version found.
        version: u32,
    },
    /// Damaged data, with where it is.
    #[error("corruption in {path} at offset {offset}: {reason}")]
    Corruption {
        /// The segment.
        path: PathBuf,
        /// Byte offset of the damaged record or header.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// An earlier write or fsync failed; the log accepts nothing until reopened.
    #[error("WAL is poisoned by an earlier failure, reopen to recover: {cause}")]
    Poisoned {
        /// The failure that poisoned the log.
        cause: Box<WalError>,
    },
    /// The background sync thread could not be started.
    #[error("cannot start the WAL sync thread: {reason}")]
    Thread {
        /// The OS error.
        reason: String,
    },
    /// An option with a value that cannot work.
    #[error("invalid WAL option {name}: {reason}")]
    InvalidOption {
        /// The option.
        name: &'static str,
        /// Why.
        reason: String,
    },
}

impl WalError {
    /// The error returned after the log was poisoned by `cause`.
    pub(crate) fn poisoned(cause: &WalError) -> WalError {
        match cause {
            WalError::Poisoned { .. } => cause.clone(),
            other => WalError::Poisoned { cause: Box::new(other.clone()) },
        }
    }
}

/// Result of WAL operations.
pub type Result<T> = std::result::Result<T, WalError>;

/// What recovery does with a damaged record that valid records follow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RecoveryMode {
    /// Refuse to open, naming the segment and offset. Nothing is lost silently.
    #[default]
    Strict,
    /// Keep every batch before the damage, drop the rest of the log, and report it.
    PointInTime,
}

/// Options of [`Wal::open`].
#[derive(Clone, Debug)]
pub struct WalOptions {
    /// A segment is closed and a new one started once it reaches this size (default 64 MiB).
    pub segment_bytes: u64,
    /// When set, a background thread fsyncs unsynced appends at this interval, bounding what
    /// `sync = false` writes can lose.
    pub sync_interval: Option<Duration>,
    /// How recovery treats mid-log corruption.
    pub recovery: RecoveryMode,
    /// A background thread fsyncs the active segment after every this many bytes written
    /// (default 4 MiB; 0 turns it off), so that a rotation never has to fsync a whole
    /// segment while writers wait, and the kernel never has a large burst to write back.
    pub bytes_per_sync: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_bytes: 64 << 20,
            sync_interval: None,
            recovery: RecoveryMode::Strict,
            bytes_per_sync: 4 << 20,
        }
    }
}

/// What [`Wal::open`] recovered: the batches to replay, in seqno order, and a report.
#[derive(Clone, Debug, Default)]
pub struct Recovery {
    /// Every intact batch above `persisted`, in order.
    pub batches: Vec<RecoveredBatch>,
    /// What recovery found and did.
    pub report: RecoveryReport,
}

/// A batch read back by recovery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveredBatch {
    /// Seqno of its first operation; the others follow one by one.
    pub first_seqno: u64,
    /// The batch.
    pub batch: Batch,
}

/// A torn final record that recovery cut off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The segment.
    pub path: PathBuf,
    /// Where the torn record started; the segment now ends here.
    pub offset: u64,
    /// Bytes removed.
    pub bytes_dropped: u64,
    /// Intact records after the damage that were removed with it: after a crash that wrote
    /// back later pages of the unsynced tail but not an earlier one (none of them was synced).
    pub records_dropped: usize,
}

/// Where point-in-time recovery stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoppedEarly {
    /// The damaged segment.
    pub path: PathBuf,
    /// Offset of the damage; the segment was cut there (removed when it is 0).
    pub offset: u64,
    /// What was wrong.
    pub reason: String,
    /// Later segments that were removed.
    pub segments_removed: Vec<PathBuf>,
}

/// What recovery did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segments in the log after recovery.
    pub segments: usize,
    /// Batches returned (those not yet persisted).
    pub batches: usize,
    /// Operations in all intact records read, persisted or not.
    pub events: u64,
    /// A torn tail that was cut off, if any.
    pub torn_tail: Option<TornTail>,
    /// Set when point-in-time recovery stopped before mid-log damage.
    pub stopped_early: Option<StoppedEarly>,
    /// Segments removed because everything in them was persisted.
    pub obsolete_segments_removed: usize,
    /// Leftovers of interrupted segment creations removed.
    pub temp_files_removed: usize,
}
