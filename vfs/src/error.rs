//! The one error type of the file-system seam. Every error names the operation and the path,
//! so a message read off a log says what failed where without a backtrace.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Result of a file-system operation.
pub type Result<T> = std::result::Result<T, FsError>;

/// Which operation of the seam was running; also the key fault rules match on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// [`crate::FileSystem::create`]
    Create,
    /// [`crate::FileSystem::open`]
    Open,
    /// [`crate::File::append`]
    Append,
    /// [`crate::File::read_at`]
    ReadAt,
    /// [`crate::File::len`]
    Len,
    /// [`crate::File::sync_data`]
    SyncData,
    /// [`crate::File::truncate`]
    Truncate,
    /// [`crate::FileSystem::rename`]
    Rename,
    /// [`crate::FileSystem::remove`]
    Remove,
    /// [`crate::FileSystem::list`]
    List,
    /// [`crate::FileSystem::create_dir`]
    CreateDir,
    /// [`crate::FileSystem::sync_dir`]
    SyncDir,
    /// [`crate::FileSystem::lock`]
    Lock,
}

impl OpKind {
    /// Every kind, for tests that walk all of them.
    pub const ALL: [OpKind; 13] = [
        OpKind::Create,
        OpKind::Open,
        OpKind::Append,
        OpKind::ReadAt,
        OpKind::Len,
        OpKind::SyncData,
        OpKind::Truncate,
        OpKind::Rename,
        OpKind::Remove,
        OpKind::List,
        OpKind::CreateDir,
        OpKind::SyncDir,
        OpKind::Lock,
    ];

    /// Whether the operation changes what is (or will be) stored.
    pub fn is_mutation(self) -> bool {
        !matches!(self, OpKind::Open | OpKind::ReadAt | OpKind::Len | OpKind::List)
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            OpKind::Create => "create",
            OpKind::Open => "open",
            OpKind::Append => "append",
            OpKind::ReadAt => "read_at",
            OpKind::Len => "len",
            OpKind::SyncData => "sync_data",
            OpKind::Truncate => "truncate",
            OpKind::Rename => "rename",
            OpKind::Remove => "remove",
            OpKind::List => "list",
            OpKind::CreateDir => "create_dir",
            OpKind::SyncDir => "sync_dir",
            OpKind::Lock => "lock",
        };
        f.write_str(name)
    }
}

/// What went wrong, independent of where.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FsErrorKind {
    /// The file or directory does not exist.
    NotFound,
    /// `create` of a name that is taken.
    AlreadyExists,
    /// The lock file is held by another owner (this process or another one).
    Locked,
    /// The device is full (ENOSPC).
    NoSpace,
    /// A read past the end of the file.
    UnexpectedEof,
    /// The handle belongs to a simulated disk that has crashed since it was opened.
    StaleHandle,
    /// Any other I/O error (EIO and friends).
    Io,
}

impl fmt::Display for FsErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            FsErrorKind::NotFound => "not found",
            FsErrorKind::AlreadyExists => "already exists",
            FsErrorKind::Locked => "locked by another owner",
            FsErrorKind::NoSpace => "no space left on device (ENOSPC)",
            FsErrorKind::UnexpectedEof => "read past end of file",
            FsErrorKind::StaleHandle => "stale handle: the simulated disk crashed",
            FsErrorKind::Io => "I/O error",
        };
        f.write_str(text)
    }
}

/// A failed file-system operation: which operation, on which path, what kind of failure.
#[derive(Clone, Debug)]
pub struct FsError {
    /// The operation that failed.
    pub op: OpKind,
    /// The path it ran on (for `rename`, the source).
    pub path: PathBuf,
    /// What went wrong.
    pub kind: FsErrorKind,
    detail: String,
    source: Option<Arc<io::Error>>,
}

impl FsError {
    /// A new error without an underlying `io::Error`.
    pub fn new(op: OpKind, path: &Path, kind: FsErrorKind) -> Self {
        FsError { op, path: path.to_path_buf(), kind, detail: String::new(), source: None }
    }

    /// Wraps an `io::Error` from the OS, classifying it.
    pub fn from_io(op: OpKind, path: &Path, err: io::Error) -> Self {
        let kind = match err.kind() {
            io::ErrorKind::NotFound => FsErrorKind::NotFound,
            io::ErrorKind::AlreadyExists => FsErrorKind::AlreadyExists,
            io::ErrorKind::StorageFull => FsErrorKind::NoSpace,
            io::ErrorKind::UnexpectedEof => FsErrorKind::UnexpectedEof,
            io::ErrorKind::WouldBlock => FsErrorKind::Locked,
            _ => FsErrorKind::Io,
        };
        FsError { op, path: path.to_path_buf(), kind, detail: String::new(), source: Some(Arc::new(err)) }
    }

    /// Adds a human-readable detail (an offset, the seed of an injected fault, ...).
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }

    /// The detail text, empty if none.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.op, self.path.display(), self.kind)?;
        if !self.detail.is_empty() {
            write!(f, " ({})", self.detail)?;
        }
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for FsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}
