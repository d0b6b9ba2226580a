//! What the benchmarks measure besides time: latency distributions (HDR histograms), the
//! bytes a process writes to disk (/proc/self/io), its peak resident memory, and the bytes a
//! database occupies on disk. Every engine is measured by the same code, in its own
//! process, so the figures compare.

use std::path::Path;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Largest latency a histogram records exactly: one minute, in nanoseconds. Longer samples
/// are clamped to it (and would show as the max).
const MAX_TRACKED_NS: u64 = 60_000_000_000;

/// A latency histogram in nanoseconds, 3 significant digits.
#[derive(Clone, Debug)]
pub struct Latencies {
    histogram: Histogram<u64>,
}

impl Default for Latencies {
    fn default() -> Self {
        Latencies::new()
    }
}

impl Latencies {
    /// An empty histogram.
    pub fn new() -> Latencies {
        // Constant bounds (1 ns .. 60 s, 3 significant digits), valid by construction: the
        // constructor only fails on a low bound of 0, high < 2 * low, or over 5 digits.
        #[allow(clippy::expect_used)]
        let histogram =
            Histogram::new_with_bounds(1, MAX_TRACKED_NS, 3).expect("constant histogram bounds are valid");
        Latencies { histogram }
    }

    /// Records one sample.
    pub fn record(&mut self, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX).clamp(1, MAX_TRACKED_NS);
        // Within the bounds by the clamp above, so this cannot fail.
        let _ = self.histogram.record(ns);
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Latencies) {
        // Both histograms have the same bounds, so this cannot fail.
        let _ = self.histogram.add(&other.histogram);
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// The `q` quantile (0..=1), in microseconds.
    pub fn quantile_us(&self, q: f64) -> f64 {
        if self.count() == 0 {
            return 0.0;
        }
        self.histogram.value_at_quantile(q) as f64 / 1e3
    }

    /// The summary figures of the distribution.
    pub fn summary(&self) -> LatencySummary {
        LatencySummary {
            count: self.count(),
            mean_us: if self.count() == 0 { 0.0 } else { self.histogram.mean() / 1e3 },
            p50_us: self.quantile_us(0.50),
            p99_us: self.quantile_us(0.99),
            p999_us: self.quantile_us(0.999),
            max_us: if self.count() == 0 { 0.0 } else { self.histogram.max() as f64 / 1e3 },
        }
    }

    /// The distribution as a CDF for a chart: (latency in µs, fraction of samples at or below
    /// it), at `points` quantiles spread to show the tail (0.5, 0.75, ..., 0.999..).
    pub fn cdf(&self, points: usize) -> Vec<CdfPoint> {
        if self.count() == 0 {
            return Vec::new();
        }
        (0..points)
            .map(|i| {
                // Quantiles 1 - 10^(-k) for k spread over 0.3..=5: dense in the tail.
                let k = 0.3 + 4.7 * i as f64 / (points.max(2) - 1) as f64;
                let quantile = 1.0 - 10f64.powf(-k);
                CdfPoint { latency_us: self.quantile_us(quantile), quantile }
            })
            .chain(std::iter::once(CdfPoint { latency_us: self.summary().max_us, quantile: 1.0 }))
            .collect()
    }
}

/// The summary of a latency distribution.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Samples.
    pub count: u64,
    /// Mean, µs.
    pub mean_us: f64,
    /// Median, µs.
    pub p50_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// 99.9th percentile, µs.
    pub p999_us: f64,
    /// Largest sample, µs.
    pub max_us: f64,
}

/// One point of a latency CDF.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CdfPoint {
    /// Latency, µs.
    pub latency_us: f64,
    /// Fraction of samples at or below it.
    pub quantile: f64,
}

/// The counters of /proc/self/io this tool uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoCounters {
    /// Bytes this process caused to be sent to the storage layer (`write_bytes`): counted
    /// when a page is dirtied, so data written and deleted before writeback still counts,
    /// and a page re-dirtied after an fsync counts again.
    pub write_bytes: u64,
    /// Bytes passed to write-like syscalls (`wchar`), whether or not they reach a disk.
    pub wchar: u64,
    /// Bytes this process caused to be fetched from the storage layer (`read_bytes`): reads
    /// the page cache could not serve.
    pub read_bytes: u64,
}

impl IoCounters {
    /// The counters now; all zero where /proc/self/io is missing (not Linux).
    pub fn now() -> IoCounters {
        let Ok(text) = std::fs::read_to_string("/proc/self/io") else {
            return IoCounters::default();
        };
        let field = |name: &str| -> u64 {
            text.lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        IoCounters {
            write_bytes: field("write_bytes:"),
            wchar: field("wchar:"),
            read_bytes: field("read_bytes:"),
        }
    }

    /// The counts since `earlier`.
    pub fn since(self, earlier: IoCounters) -> IoCounters {
        IoCounters {
            write_bytes: self.write_bytes.saturating_sub(earlier.write_bytes),
            wchar: self.wchar.saturating_sub(earlier.wchar),
            read_bytes: self.read_bytes.saturating_sub(earlier.read_bytes),
        }
    }
}

/// Peak resident memory of this process (VmHWM), in bytes; 0 where /proc is missing.
pub fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The peak resident memory of each stretch of a run: [`PhasePeaks::end`] reads the peak
/// since the previous call and resets the kernel's mark (`/proc/self/clear_refs`, "5"), so
/// the next stretch starts from the memory resident then. Where the reset is refused, each
/// figure is the peak since the process started (still an upper bound for its stretch).
#[derive(Debug, Default)]
pub struct PhasePeaks {
    overall: u64,
}

impl PhasePeaks {
    /// The peak since the last call (or the process's start), in bytes.
    pub fn end(&mut self) -> u64 {
        let peak = peak_rss_bytes();
        self.overall = self.overall.max(peak);
        // Best effort: without the reset the next figure is cumulative, never too low.
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        peak
    }

    /// The peak over every stretch so far (and whatever ran since the last [`end`](Self::end)).
    pub fn overall(&mut self) -> u64 {
        self.overall.max(peak_rss_bytes())
    }
}

/// Bytes of every file under `dir`, recursively (apparent sizes).
pub fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        let path = entry.path();
        let meta = entry.metadata().map_err(|e| Error::io("stat", &path, e))?;
        if meta.is_dir() {
            total += dir_bytes(&path)?;
        } else {
            total += meta.len();
        }
    }
    Ok(total)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn histogram_summarizes_samples() {
        let mut lat = Latencies::new();
        for us in 1..=1000u64 {
            lat.record(Duration::from_micros(us));
        }
        let s = lat.summary();
        assert_eq!(s.count, 1000);
        assert!((s.p50_us - 500.0).abs() <= 1.0, "{s:?}");
        assert!((s.p99_us - 990.0).abs() <= 1.0, "{s:?}");
        assert!((s.max_us - 1000.0).abs() <= 1.0, "{s:?}");
        let cdf = lat.cdf(10);
        assert_eq!(cdf.len(), 11);
        assert!(cdf.windows(2).all(|w| w[0].quantile <= w[1].quantile && w[0].latency_us <= w[1].latency_us));
        let mut other = Latencies::new();
        other.record(Duration::from_secs(3600));
        lat.merge(&other);
        assert_eq!(lat.count(), 1001);
        assert!((lat.summary().max_us - 60e6).abs() / 60e6 < 0.01);
        assert_eq!(Latencies::new().summary(), LatencySummary::default());
    }

    #[test]
    fn io_counters_see_this_process_write() {
        let dir = tempfile::tempdir().unwrap();
        let before = IoCounters::now();
        std::fs::write(dir.path().join("f"), vec![7u8; 1 << 20]).unwrap();
        let delta = IoCounters::now().since(before);
        if std::path::Path::new("/proc/self/io").exists() {
            assert!(delta.wchar >= 1 << 20, "{delta:?}");
        }
        assert_eq!(dir_bytes(dir.path()).unwrap(), 1 << 20);
        assert!(peak_rss_bytes() > 0 || !std::path::Path::new("/proc/self/status").exists());
    }
}
