//! The figures a campaign reports: points tried, states explored, faults injected and
//! detected, and losses (which must be 0). Printed as one table when the campaign ends.

use std::fmt;

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
}

impl Summary {
    /// A campaign with no figures yet.
    pub fn new(name: &str) -> Self {
        Summary { name: name.to_string(), ..Summary::default() }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "+-- {} ", self.name)?;
        let rows = [
            ("points tried", self.points),
            ("states explored", self.states),
            ("faults injected", self.injected),
            ("faults reported to caller", self.detected),
            ("processes killed", self.kills),
            ("batches acknowledged", self.acked),
            ("sync-acked batches checked", self.synced_checked),
            ("reopen failures (must be 0)", self.reopen_failures),
            ("losses (must be 0)", self.losses),
        ];
        for (label, value) in rows {
            writeln!(f, "| {label:<28} {value:>12}")?;
        }
        write!(f, "+--")
    }
}
