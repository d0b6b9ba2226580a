//! strata-bench: the code shared by strata's benchmark programs (the criterion benches under
//! `benches/benches/` and the `strata-bench` CLI).
//!
//! - [`workload`]: the standard behaviour workload of /work/shared/workload.md, generated
//!   deterministically from a seed.
//! - [`hw`]: the hardware limits measured in the same run, which every figure is a ratio to.
//! - [`wal_append`]: pre-built batches appended to a WAL on the real file system, timed.
//! - [`sstable_data`]: standard-workload events as SSTable entries, a timed table build, the
//!   byte split of a table, and the query users.
//! - [`peers`]: strata, RocksDB and fjall behind one small interface, with equal budgets.
//! - [`runner`]: the phases of the standard workload against one engine, and the results
//!   schema.
//! - [`plots`]: the SVG charts of a run.
//! - [`import`]: a real interaction log (MovieLens, CSV) read into events, with the model
//!   that `strata-bench import --verify` checks every answer against.
//! - [`measure`]: latency histograms, the process's disk writes and peak memory.

#![forbid(unsafe_code)]

pub mod hw;
pub mod import;
pub mod measure;
pub mod peers;
pub mod plots;
pub mod runner;
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
    /// A peer engine failed.
    #[error("{engine}: {message}")]
    Peer {
        /// Which engine.
        engine: &'static str,
        /// Its error, as it words it.
        message: String,
    },
    /// A bad command-line argument or combination of arguments.
    #[error("invalid argument: {0}")]
    Usage(String),
    /// A results file, or a child process's report, failed to encode or decode.
    #[error("{what}: {source}")]
    Json {
        /// What was being encoded or decoded.
        what: String,
        /// The serde_json error.
        source: serde_json::Error,
    },
    /// A chart failed to draw.
    #[error("chart {path}: {message}")]
    Plot {
        /// The chart's file.
        path: PathBuf,
        /// The drawing error.
        message: String,
    },
    /// A child process of `strata-bench run` failed.
    #[error("child process for {engine}: {message}")]
    Child {
        /// The engine the child ran.
        engine: String,
        /// What went wrong.
        message: String,
    },
    /// An input file of `strata-bench import` is malformed.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong with the line.
        message: String,
    },
}

impl Error {
    /// An I/O error of `op` on `path`.
    pub fn io(op: &str, path: &Path, source: std::io::Error) -> Error {
        Error::Io { op: op.to_string(), path: path.to_path_buf(), source }
    }
}

/// Result of the benchmark programs.
pub type Result<T> = std::result::Result<T, Error>;
