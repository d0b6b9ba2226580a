//! Hardware-limit loops, measured in the same run as what they frame: how fast this machine
//! writes sequential bytes to a file with plain `write` calls, and with an `fdatasync` after
//! each write. The WAL is judged as a ratio to these, never as an absolute figure.
//!
//! Each loop writes to a fresh file (a file that grows, as a WAL segment does, so that the
//! fdatasync also pays for the size update exactly like the WAL's) and removes it afterwards.
//! Only the write loop itself is timed. [`measure_limits`] adds fsync latency and memcpy
//! bandwidth: the limits `strata-bench run` prints beside its results.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// What a plain write loop measured.
#[derive(Clone, Copy, Debug)]
pub struct WriteLoop {
    /// Bytes written.
    pub bytes: u64,
    /// Time of the loop.
    pub elapsed: Duration,
}

impl WriteLoop {
    /// Bandwidth in bytes per second.
    pub fn bytes_per_sec(&self) -> f64 {
        per_sec(self.bytes as f64, self.elapsed)
    }
}

/// What a write + fdatasync loop measured.
#[derive(Clone, Debug)]
pub struct SyncWriteLoop {
    /// Bytes written.
    pub bytes: u64,
    /// Time of the loop.
    pub elapsed: Duration,
    /// Latency of each write + fdatasync, in loop order.
    pub op_latencies: Vec<Duration>,
}

impl SyncWriteLoop {
    /// Bandwidth in bytes per second.
    pub fn bytes_per_sec(&self) -> f64 {
        per_sec(self.bytes as f64, self.elapsed)
    }

    /// The `q` quantile (0..=1) of the per-op latency.
    pub fn latency_quantile(&self, q: f64) -> Duration {
        quantile(&self.op_latencies, q)
    }

    /// Mean per-op latency.
    pub fn mean_latency(&self) -> Duration {
        let n = u32::try_from(self.op_latencies.len().max(1)).unwrap_or(u32::MAX);
        self.elapsed / n
    }
}

/// `count / elapsed`, 0 for an empty interval.
pub fn per_sec(count: f64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        count / secs
    } else {
        0.0
    }
}

/// The `q` quantile (0..=1) of `samples`, by the nearest-rank method.
pub fn quantile(samples: &[Duration], q: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = (q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64).round();
    // rank is in 0..len by construction.
    #[allow(clippy::cast_possible_truncation)]
    let index = rank as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// `chunks` calls of `write_all(chunk_bytes)` on a fresh file in `dir`, no sync.
pub fn plain_write_loop(dir: &Path, chunk_bytes: usize, chunks: u64) -> Result<WriteLoop> {
    let scratch = Scratch::create(dir, "plain-write")?;
    let chunk = chunk_data(chunk_bytes);
    let mut file = &scratch.file;
    let start = Instant::now();
    for _ in 0..chunks {
        file.write_all(&chunk).map_err(|e| scratch.err("write", e))?;
    }
    let elapsed = start.elapsed();
    scratch.remove()?;
    Ok(WriteLoop { bytes: (chunk_bytes as u64) * chunks, elapsed })
}

/// `chunks` rounds of `write_all(chunk_bytes)` then `sync_data` (fdatasync) on a fresh file
/// in `dir`.
pub fn plain_write_fdatasync_loop(dir: &Path, chunk_bytes: usize, chunks: u64) -> Result<SyncWriteLoop> {
    let scratch = Scratch::create(dir, "plain-write-fdatasync")?;
    let chunk = chunk_data(chunk_bytes);
    let mut file = &scratch.file;
    let mut op_latencies = Vec::with_capacity(usize::try_from(chunks).unwrap_or(0));
    let start = Instant::now();
    for _ in 0..chunks {
        let op = Instant::now();
        file.write_all(&chunk).map_err(|e| scratch.err("write", e))?;
        file.sync_data().map_err(|e| scratch.err("fdatasync", e))?;
        op_latencies.push(op.elapsed());
    }
    let elapsed = start.elapsed();
    scratch.remove()?;
    Ok(SyncWriteLoop { bytes: (chunk_bytes as u64) * chunks, elapsed, op_latencies })
}

/// Bytes per second of `memcpy` (`copy_from_slice`) between two `bytes`-long buffers, the
/// best of `rounds` copies (the best is the hardware's figure; the others met noise).
pub fn memcpy_bandwidth(bytes: usize, rounds: u32) -> f64 {
    let src = chunk_data(bytes);
    let mut dst = vec![0u8; bytes];
    // Touch the destination once so the first round does not pay its page faults.
    dst.copy_from_slice(&src);
    let mut best = Duration::MAX;
    for _ in 0..rounds.max(1) {
        let start = Instant::now();
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&mut dst);
        best = best.min(start.elapsed());
    }
    per_sec(bytes as f64, best)
}

/// The hardware limits `strata-bench run` prints beside its results, measured in the same
/// run in the directory the engines use.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HardwareLimits {
    /// Sequential write bandwidth with an fdatasync after every 4 MiB, bytes/s.
    pub seq_write_fdatasync_bytes_per_sec: f64,
    /// Latency of a 4 KiB append + fdatasync: median, µs.
    pub fsync_p50_us: f64,
    /// Latency of a 4 KiB append + fdatasync: 99th percentile, µs.
    pub fsync_p99_us: f64,
    /// memcpy bandwidth, bytes/s.
    pub memcpy_bytes_per_sec: f64,
}

/// Measures [`HardwareLimits`] in `dir`: `seq_mib` MiB written in 4 MiB chunks each
/// fdatasynced, `fsyncs` 4 KiB appends each fdatasynced, and a 256 MiB memcpy.
pub fn measure_limits(dir: &Path, seq_mib: u64, fsyncs: u64) -> Result<HardwareLimits> {
    let seq = plain_write_fdatasync_loop(dir, 4 << 20, (seq_mib / 4).max(1))?;
    let small = plain_write_fdatasync_loop(dir, 4096, fsyncs.max(1))?;
    Ok(HardwareLimits {
        seq_write_fdatasync_bytes_per_sec: seq.bytes_per_sec(),
        fsync_p50_us: small.latency_quantile(0.5).as_secs_f64() * 1e6,
        fsync_p99_us: small.latency_quantile(0.99).as_secs_f64() * 1e6,
        memcpy_bytes_per_sec: memcpy_bandwidth(256 << 20, 5),
    })
}

/// Non-zero, non-repeating-looking bytes, so that no layer can shortcut zero pages.
fn chunk_data(len: usize) -> Vec<u8> {
    let mut rng = crate::workload::Rng::new(0xC0FF_EE00 ^ len as u64);
    let mut data = Vec::with_capacity(len + 8);
    while data.len() < len {
        data.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    data.truncate(len);
    data
}

/// A fresh file of one loop, removed by [`Scratch::remove`].
struct Scratch {
    path: PathBuf,
    file: File,
}

impl Scratch {
    fn create(dir: &Path, what: &str) -> Result<Scratch> {
        // Unique per process and call: loops may run back to back in one directory.
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{what}-{}-{n}.bin", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io("create", &path, e))?;
        Ok(Scratch { path, file })
    }

    fn err(&self, op: &str, source: std::io::Error) -> Error {
        Error::io(op, &self.path, source)
    }

    fn remove(self) -> Result<()> {
        drop(self.file);
        std::fs::remove_file(&self.path).map_err(|e| Error::io("remove", &self.path, e))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn loops_write_what_they_say_and_clean_up() {
        let dir = tempfile::tempdir().unwrap();
        let plain = plain_write_loop(dir.path(), 4096, 10).unwrap();
        assert_eq!(plain.bytes, 40_960);
        assert!(plain.bytes_per_sec() > 0.0);
        let synced = plain_write_fdatasync_loop(dir.path(), 4096, 3).unwrap();
        assert_eq!(synced.bytes, 12_288);
        assert_eq!(synced.op_latencies.len(), 3);
        assert!(synced.latency_quantile(0.5) <= synced.latency_quantile(1.0));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn quantile_picks_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&samples, 0.0), Duration::from_millis(1));
        assert_eq!(quantile(&samples, 1.0), Duration::from_millis(100));
        assert_eq!(quantile(&samples, 0.5), Duration::from_millis(51));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }
}
