//! strata-bench: the code shared by strata's benchmark programs (the criterion benches under
//! `benches/benches/` and the `strata-bench` CLI).
//!
//! - [`workload`]: the standard behaviour workload of /work/shared/workload.md, generated
//!   deterministically from a seed.
//! - [`hw`]: the hardware limits measured in the same run, which every figure is a ratio to.
//! - [`wal_append`]: pre-built batches appended to a WAL on the real file system, timed.
//! - [`sstable_data`]: standard-workload events as SSTable entries, a timed table build, the
//!   byte split of a table, and the query users.

#![forbid(unsafe_code)]

pub mod hw;
pub mod sstable_data;
pub mod wal_append;
pub mod workload;

use std::path::{Path, PathBuf};

/// The one error type of the benchmark programs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The WAL failed.
    #[error(transparent)]
    Wal(#[from] strata_wal::WalError),
    /// An SSTable operation failed.
    #[error(transparent)]
    Sst(#[from] strata_sstable::SstError),
    /// The engine failed.
    #[error(transparent)]
    Db(#[from] strata::Error),
    /// A file operation of a baseline loop or of the CLI failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: String,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A writer thread failed outside the WAL.
    #[error("{0}")]
    Thread(String),
    /// Data read back differs from what was written.
    #[error("verification failed: {0}")]
    Mismatch(String),
}

impl Error {
    /// An I/O error of `op` on `path`.
    pub fn io(op: &str, path: &Path, source: std::io::Error) -> Error {
        Error::Io { op: op.to_string(), path: path.to_path_buf(), source }
    }
}

/// Result of the benchmark programs.
pub type Result<T> = std::result::Result<T, Error>;
