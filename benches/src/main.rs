//! The `strata-bench` command: runs strata's benchmarks on the standard workload and prints
//! figures next to the hardware limits measured in the same invocation.
//!
//! Each subcommand lives in its own module under `cli/`; `main` only parses and reports
//! errors, so that a new subcommand (`run --preset ...`) is one enum variant and one module.

#![forbid(unsafe_code)]

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("strata-bench: error: {err}");
            ExitCode::FAILURE
        }
    }
}
