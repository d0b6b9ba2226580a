//! The one error type of the `strata` crate.
//!
//! Every failure is a typed [`Error`]. [`Error::kind`] sorts them into the classes a caller
//! acts on: a bad argument (fix the call), I/O (the disk failed; maybe retry after freeing
//! space), corruption (the data is damaged; never returned as data), poisoned (an earlier
//! write or fsync failed; reopen), closed, and the two ways `open` can be refused.

use std::path::PathBuf;

use strata_sstable::SstError;
use strata_vfs::{FsError, FsErrorKind};
use strata_wal::WalError;

/// Result of engine operations.
pub type Result<T> = std::result::Result<T, Error>;

/// What went wrong.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A caller passed a value that cannot work: a payload over the limit, an inverted
    /// range, contradictory options, a batch over the size limit.
    #[error("invalid argument {arg}: {reason}")]
    InvalidArgument {
        /// The argument or option.
        arg: &'static str,
        /// Why.
        reason: String,
    },
    /// A file-system operation failed (the error names the operation and the path).
    #[error(transparent)]
    Io(FsError),
    /// The write-ahead log failed.
    #[error(transparent)]
    Wal(WalError),
    /// A table failed to build or read.
    #[error(transparent)]
    Table(SstError),
    /// Damaged engine metadata (manifest, CURRENT), with where it is.
    #[error("corruption in {file} at offset {offset}: {reason}")]
    Corruption {
        /// The damaged file.
        file: PathBuf,
        /// Byte offset of the damage.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The manifest references a table file that is not there. Either the table was lost
    /// or the manifest holds edits it should not (a stale or misdirected write), so both
    /// are named.
    #[error("table {file} is referenced by the manifest {manifest} but missing: the database refuses to open rather than drop its events")]
    MissingTable {
        /// The missing table.
        file: PathBuf,
        /// The manifest that references it.
        manifest: PathBuf,
    },
    /// The directory holds files, but not a strata database.
    #[error("{path} is not a strata database: {reason}")]
    NotADatabase {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Another `Db` (in this process or another one) holds the database.
    #[error("{path} is locked: another process or handle has this database open")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// An earlier write, fsync or background flush failed. Nothing more is accepted until
    /// the database is reopened; reads still work.
    #[error("the database is poisoned and accepts no writes until reopened: {cause}")]
    Poisoned {
        /// The failure that poisoned it.
        cause: String,
    },
    /// The handle was closed.
    #[error("the database is closed")]
    Closed,
    /// A broken internal invariant: a bug in strata, reported instead of a panic.
    #[error("internal error (a bug in strata): {0}")]
    Internal(String),
}

/// The class of an [`Error`]: what a caller does about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Fix the call or the options.
    InvalidArgument,
    /// The storage failed (EIO, ENOSPC, ...).
    Io,
    /// Stored data is damaged.
    Corruption,
    /// An earlier failure stopped writes; reopen.
    Poisoned,
    /// The handle is closed.
    Closed,
    /// Another handle holds the database.
    Locked,
    /// The directory is not a strata database.
    NotADatabase,
    /// A bug in strata.
    Internal,
}

impl Error {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidArgument { .. } => ErrorKind::InvalidArgument,
            Error::Io(err) => fs_kind(err),
            Error::Wal(err) => wal_kind(err),
            Error::Table(err) => table_kind(err),
            Error::Corruption { .. } | Error::MissingTable { .. } => ErrorKind::Corruption,
            Error::NotADatabase { .. } => ErrorKind::NotADatabase,
            Error::Locked { .. } => ErrorKind::Locked,
            Error::Poisoned { .. } => ErrorKind::Poisoned,
            Error::Closed => ErrorKind::Closed,
            Error::Internal(_) => ErrorKind::Internal,
        }
    }

    /// An [`Error::InvalidArgument`].
    pub(crate) fn invalid(arg: &'static str, reason: impl Into<String>) -> Error {
        Error::InvalidArgument { arg, reason: reason.into() }
    }

    /// An [`Error::Corruption`].
    pub(crate) fn corruption(file: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Error {
        Error::Corruption { file: file.into(), offset, reason: reason.into() }
    }
}

fn fs_kind(err: &FsError) -> ErrorKind {
    match err.kind {
        FsErrorKind::Locked => ErrorKind::Locked,
        _ => ErrorKind::Io,
    }
}

fn wal_kind(err: &WalError) -> ErrorKind {
    match err {
        WalError::Fs(fs) => fs_kind(fs),
        WalError::EmptyBatch | WalError::BatchTooLarge { .. } | WalError::InvalidOption { .. } => {
            ErrorKind::InvalidArgument
        }
        WalError::Poisoned { .. } => ErrorKind::Poisoned,
        WalError::Thread { .. } => ErrorKind::Io,
        _ => ErrorKind::Corruption,
    }
}

fn table_kind(err: &SstError) -> ErrorKind {
    match err {
        SstError::Fs(fs) => fs_kind(fs),
        SstError::Map { .. } => ErrorKind::Io,
        SstError::InvalidOption { .. } => ErrorKind::InvalidArgument,
        _ => ErrorKind::Corruption,
    }
}

impl From<FsError> for Error {
    fn from(err: FsError) -> Error {
        match err.kind {
            FsErrorKind::Locked => Error::Locked { path: err.path },
            _ => Error::Io(err),
        }
    }
}

impl From<WalError> for Error {
    fn from(err: WalError) -> Error {
        match err {
            WalError::Fs(fs) if fs.kind == FsErrorKind::Locked => Error::Locked { path: fs.path },
            WalError::Poisoned { .. } => Error::Poisoned { cause: err.to_string() },
            other => Error::Wal(other),
        }
    }
}

impl From<SstError> for Error {
    fn from(err: SstError) -> Error {
        Error::Table(err)
    }
}
