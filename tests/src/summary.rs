//! The figures a campaign reports: points tried, states explored, faults injected and
//! detected, and losses (which must be 0). Printed as one table when the campaign ends
//! ([`Summary::finish`], on stderr, uncaptured), and appended to the file `STRATA_FAULT_REPORT` names when it is
//! set: docs/testing.md quotes the figures of a release-size run from that file, never
//! from hand-typed text.

use std::fmt;
use std::io::Write;

/// Counters of one campaign.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Name of the campaign.
    pub name: String,
    /// Crash or fault points tried (operation indices).
    pub points: u64,
    /// Post-crash states recovered and checked (points times crash modes / seeds).
    pub states: u64,
    /// Faults injected.
    pub injected: u64,
    /// Injected faults the caller saw as an error.
    pub detected: u64,
    /// Batches acknowledged across all runs.
    pub acked: u64,
    /// Batches acknowledged with sync that were checked after a crash.
    pub synced_checked: u64,
    /// Acknowledged batches missing or altered after recovery. Must be 0.
    pub losses: u64,
    /// Recoveries (reopens) that failed where they must succeed. Must be 0.
    pub reopen_failures: u64,
    /// Processes killed (SIGKILL) mid-write.
    pub kills: u64,
    /// Distinct post-crash disks among `states` (identical disks are recovered once).
    pub distinct_states: u64,
    /// Checks of the syscall-order lint, and the rules it found broken (must be 0).
    pub lint_checks: u64,
    /// Broken syscall-order rules. Must be 0.
    pub lint_violations: u64,
    /// Answers that differed from the model while no error was reported. Must be 0.
    pub wrong_answers: u64,
    /// When the campaign started ([`Summary::new`]).
    pub started: Option<std::time::Instant>,
}

impl Summary {
    /// A campaign with no figures yet.
    pub fn new(name: &str) -> Self {
        Summary { name: name.to_string(), started: Some(std::time::Instant::now()), ..Summary::default() }
    }

    /// Adds the counters of `other` (another run of the same campaign) to these.
    pub fn absorb(&mut self, other: &Summary) {
        self.points += other.points;
        self.states += other.states;
        self.injected += other.injected;
        self.detected += other.detected;
        self.acked += other.acked;
        self.synced_checked += other.synced_checked;
        self.losses += other.losses;
        self.reopen_failures += other.reopen_failures;
        self.kills += other.kills;
        self.distinct_states += other.distinct_states;
        self.lint_checks += other.lint_checks;
        self.lint_violations += other.lint_violations;
        self.wrong_answers += other.wrong_answers;
    }

    /// Prints the table, and appends it to the file `STRATA_FAULT_REPORT` names, if set,
    /// with the campaign's scale (`STRATA_FAULT_SCALE`) and its wall time since `new`.
    pub fn finish(&self) {
        let elapsed = self.started.map(|t| t.elapsed()).unwrap_or_default();
        // Straight to the stderr descriptor, past the test harness's capture, so that every
        // run (CI's included) shows the figures of its passing campaigns too.
        let table = format!("{self}\n(in {elapsed:.1?})\n");
        let _ = std::io::stderr().lock().write_all(table.as_bytes());
        let Some(path) = std::env::var_os("STRATA_FAULT_REPORT") else { return };
        let scale = crate::env_size("STRATA_FAULT_SCALE", 1);
        let text = format!("{self}\n| scale {scale}, {:.1} s\n\n", elapsed.as_secs_f64());
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut file| file.write_all(text.as_bytes()));
        if let Err(e) = written {
            eprintln!("could not append the summary to {}: {e}", path.to_string_lossy());
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "+-- {} ", self.name)?;
        // Rows that do not apply to a campaign (zero, and not a must-be-0 figure) are left out.
        let rows = [
            ("points tried", self.points, false),
            ("states explored", self.states, false),
            ("distinct states recovered", self.distinct_states, false),
            ("faults injected", self.injected, false),
            ("faults detected", self.detected, false),
            ("processes killed", self.kills, false),
            ("batches acknowledged", self.acked, false),
            ("sync-acked batches checked", self.synced_checked, false),
            ("syscall-order checks", self.lint_checks, false),
            ("lint violations (must be 0)", self.lint_violations, self.lint_checks > 0),
            ("wrong answers (must be 0)", self.wrong_answers, true),
            ("reopen failures (must be 0)", self.reopen_failures, true),
            ("losses (must be 0)", self.losses, true),
        ];
        for (label, value, always) in rows {
            if value > 0 || always {
                writeln!(f, "| {label:<28} {value:>12}")?;
            }
        }
        write!(f, "+--")
    }
}
