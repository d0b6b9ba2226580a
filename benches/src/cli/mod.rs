//! Command-line parsing of `strata-bench` and the dispatch to one module per subcommand;
//! also the few formatting helpers the subcommands share.

mod demo;
mod engine;
mod import;
mod run;
mod sstable;
mod wal;

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use strata_bench::{Error, Result};

/// strata's benchmark tool: the standard behaviour workload, measured against this
/// machine's own limits.
#[derive(Debug, Parser)]
#[command(name = "strata-bench", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write events through the WAL, reopen it, and check every event comes back intact.
    Demo(demo::DemoArgs),
    /// Measure WAL append throughput next to plain write and write+fdatasync loops.
    Wal(wal::WalArgs),
    /// Measure SSTable build throughput, bytes per event, "latest 100" latency and the user
    /// filter against the goals of issue #3.
    Sstable(sstable::SstableArgs),
    /// Measure the embedded engine (`strata::Db`): ingest, close and reopen, "latest 100"
    /// on settled data, and peak memory, against the goals of issue #4.
    Engine(engine::EngineArgs),
    /// Load a real interaction log (MovieLens u.data/.inter or CSV) into strata, then answer latest and
    /// range queries and report the same figures as `run`.
    Import(import::ImportArgs),
    /// Run the standard workload against strata and its peers (RocksDB, fjall), each in its
    /// own process, and print the figures side by side with strata's ratios.
    Run(Box<run::RunArgs>),
    /// One engine's phases of `run`, reported as JSON on stdout (used by `run`).
    #[command(hide = true)]
    RunChild(run::ChildArgs),
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Wal(args) => wal::run(&args),
        Command::Sstable(args) => sstable::run(&args),
        Command::Engine(args) => engine::run(&args),
        Command::Import(args) => import::run(&args),
        Command::Run(args) => run::run(&args),
        Command::RunChild(args) => run::run_child_command(&args),
    }
}

/// A working directory: the one asked for (created if missing, must hold nothing), or a
/// fresh temporary one removed on drop.
pub(crate) enum WorkDir {
    Given(PathBuf),
    Temp(tempfile::TempDir),
}

impl WorkDir {
    pub(crate) fn new(given: Option<&Path>) -> Result<WorkDir> {
        match given {
            Some(path) => {
                std::fs::create_dir_all(path).map_err(|e| Error::io("create dir", path, e))?;
                let mut entries = std::fs::read_dir(path).map_err(|e| Error::io("list", path, e))?;
                if entries.next().is_some() {
                    return Err(Error::io(
                        "use",
                        path,
                        std::io::Error::other("directory is not empty; give an empty or new directory"),
                    ));
                }
                Ok(WorkDir::Given(path.to_path_buf()))
            }
            None => {
                let temp = std::env::temp_dir();
                let dir = tempfile::Builder::new()
                    .prefix("strata-bench-")
                    .tempdir_in(&temp)
                    .map_err(|e| Error::io("create temp dir in", &temp, e))?;
                Ok(WorkDir::Temp(dir))
            }
        }
    }

    pub(crate) fn path(&self) -> &Path {
        match self {
            WorkDir::Given(path) => path,
            WorkDir::Temp(dir) => dir.path(),
        }
    }
}

/// `n` with thousands separators, for figures a human reads.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate with thousands separators, rounded to a whole number.
pub(crate) fn rate(per_sec: f64) -> String {
    // Rates are far below 2^53; rounding to a whole number is the point.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let whole = per_sec.max(0.0).round() as u64;
    thousands(whole)
}

/// Megabytes (10^6 bytes) per second.
pub(crate) fn mb_per_sec(bytes_per_sec: f64) -> f64 {
    bytes_per_sec / 1e6
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn cli_parses_subcommands() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["strata-bench", "wal", "--sync", "--writers", "4"]).unwrap();
        assert!(matches!(cli.command, Command::Wal(_)));
        let cli = Cli::try_parse_from(["strata-bench", "sstable", "--events", "1000", "--zstd-level", "0"])
            .unwrap();
        assert!(matches!(cli.command, Command::Sstable(_)));
    }
}
