//! `strata-bench wal`: WAL append throughput on the real file system, printed next to the two
//! hardware baselines measured in the same invocation (a plain write loop and a write +
//! fdatasync loop with chunks the size of one batch's raw data), with the ratios. This is
//! the figure docs/PERFORMANCE.md cites.
//!
//! Each round measures the three loops back to back, on fresh files, and the medians of the
//! rounds are reported: the machine is shared, and one round can land on a noisy moment.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use strata_bench::hw::{self, per_sec};
use strata_bench::wal_append::{append_timed, build_batches, open_os_wal};
use strata_bench::workload::{Workload, WorkloadConfig};
use strata_bench::{Error, Result};
use strata_wal::{WalOptions, WalStats};

use super::{mb_per_sec, rate, thousands, WorkDir};

/// Largest number of write + fdatasync rounds of the baseline: past a few thousand the
/// figure is stable and the run only gets longer.
const MAX_FDATASYNC_CHUNKS: u64 = 2_000;

/// Options of `wal`.
#[derive(Debug, Args)]
pub struct WalArgs {
    /// Directory to write in (created if missing; must be empty). Default: a temporary one.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Events appended per round.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Events per batch.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..))]
    batch: u32,
    /// Writer threads appending at once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    writers: u32,
    /// fsync every batch before acknowledging it.
    #[arg(long)]
    sync: bool,
    /// Rounds; the median of each figure is reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// WAL segment size in MiB (the WAL's default is 64). A segment larger than the run
    /// shows the append path without the fdatasync of each full segment at rotation.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    segment_mib: u64,
    /// Background writeback interval in KiB (`WalOptions::bytes_per_sync`; 0 turns it off).
    #[arg(long, default_value_t = 4096)]
    bytes_per_sync_kib: u64,
}

struct Round {
    wal: Duration,
    stats: WalStats,
    plain_bps: f64,
    fdatasync_bps: f64,
    fdatasync_p50: Duration,
    fdatasync_p99: Duration,
    /// The write + fdatasync loop with chunks of `writers` batches: what a perfect group
    /// commit of every writer's batch into one write and one fdatasync could reach.
    grouped_bps: Option<f64>,
    /// With several writers: the same WAL run with one writer, in the same round, so the
    /// group-commit speed-up is a ratio of two figures taken minutes, not hours, apart.
    single_writer: Option<Duration>,
}

pub fn run(args: &WalArgs) -> Result<()> {
    let work = WorkDir::new(args.dir.as_deref())?;
    let config = WorkloadConfig::default();
    let raw_event_bytes = config.raw_event_bytes();
    let batches = build_batches(&mut Workload::new(config), args.events, args.batch as usize);
    let chunk_bytes = args.batch as usize * raw_event_bytes;
    let plain_chunks = batches.len() as u64;
    let sync_chunks = plain_chunks.min(MAX_FDATASYNC_CHUNKS);

    let mut rounds = Vec::new();
    for round in 0..args.rounds {
        let plain = hw::plain_write_loop(work.path(), chunk_bytes, plain_chunks)?;

        let wal_dir = work.path().join(format!("wal-{round}"));
        let options = WalOptions {
            segment_bytes: args.segment_mib << 20,
            bytes_per_sync: args.bytes_per_sync_kib << 10,
            ..WalOptions::default()
        };
        let (elapsed, stats) = timed_wal_run(&wal_dir, options.clone(), &batches, args.writers, args.sync)?;
        let single_writer = if args.writers > 1 {
            Some(timed_wal_run(&wal_dir, options, &batches, 1, args.sync)?.0)
        } else {
            None
        };

        let synced = hw::plain_write_fdatasync_loop(work.path(), chunk_bytes, sync_chunks)?;
        let grouped_bps = if args.writers > 1 {
            let writers = u64::from(args.writers);
            let grouped = hw::plain_write_fdatasync_loop(
                work.path(),
                chunk_bytes * args.writers as usize,
                (sync_chunks / writers).max(1),
            )?;
            Some(grouped.bytes_per_sec())
        } else {
            None
        };
        rounds.push(Round {
            wal: elapsed,
            stats,
            plain_bps: plain.bytes_per_sec(),
            fdatasync_bps: synced.bytes_per_sec(),
            fdatasync_p50: synced.latency_quantile(0.5),
            fdatasync_p99: synced.latency_quantile(0.99),
            grouped_bps,
            single_writer,
        });
    }

    let events = args.events as f64;
    let wal_eps: Vec<f64> = rounds.iter().map(|r| per_sec(events, r.wal)).collect();
    let wal_eps_median = median(&wal_eps);
    let wal_bps = wal_eps_median * raw_event_bytes as f64;
    let plain_bps = median(&rounds.iter().map(|r| r.plain_bps).collect::<Vec<_>>());
    let sync_bps = median(&rounds.iter().map(|r| r.fdatasync_bps).collect::<Vec<_>>());
    let p50 = median_duration(&rounds.iter().map(|r| r.fdatasync_p50).collect::<Vec<_>>());
    let p99 = median_duration(&rounds.iter().map(|r| r.fdatasync_p99).collect::<Vec<_>>());
    let raw = raw_event_bytes as f64;

    println!(
        "strata-bench wal: {} events in {} batches of {}, {} writer(s), sync={}, {} MiB segments, median of {} round(s)",
        thousands(args.events),
        thousands(batches.len() as u64),
        thousands(u64::from(args.batch)),
        args.writers,
        args.sync,
        args.segment_mib,
        args.rounds
    );
    println!(
        "  baseline chunks: {} bytes; plain write loop {} chunks, write+fdatasync loop {} chunks",
        thousands(chunk_bytes as u64),
        thousands(plain_chunks),
        thousands(sync_chunks)
    );
    println!("  {:<28} {:>14} {:>10}", "", "events/s", "MB/s");
    println!(
        "  {:<28} {:>14} {:>10.1}   (raw {raw_event_bytes}-byte events; rounds: {})",
        "WAL append",
        rate(wal_eps_median),
        mb_per_sec(wal_bps),
        wal_eps.iter().map(|&e| rate(e)).collect::<Vec<_>>().join(" / ")
    );
    println!(
        "  {:<28} {:>14} {:>10.1}   (event-equivalent rate)",
        "plain write loop",
        rate(plain_bps / raw),
        mb_per_sec(plain_bps)
    );
    println!(
        "  {:<28} {:>14} {:>10.1}   (per op p50 {:.2} ms, p99 {:.2} ms)",
        "write+fdatasync loop",
        rate(sync_bps / raw),
        mb_per_sec(sync_bps),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );
    let grouped: Vec<f64> = rounds.iter().filter_map(|r| r.grouped_bps).collect();
    if !grouped.is_empty() {
        let grouped_bps = median(&grouped);
        println!(
            "  {:<28} {:>14} {:>10.1}   (chunks of {} x {} bytes: the group-commit ceiling, {:.2}x the loop above)",
            "write+fdatasync, grouped",
            rate(grouped_bps / raw),
            mb_per_sec(grouped_bps),
            args.writers,
            thousands(chunk_bytes as u64),
            grouped_bps / sync_bps.max(f64::MIN_POSITIVE)
        );
    }
    let single: Vec<f64> =
        rounds.iter().filter_map(|r| r.single_writer).map(|d| per_sec(events, d)).collect();
    if !single.is_empty() {
        let single_eps = median(&single);
        println!(
            "  {:<28} {:>14} {:>10.1}   ({} writers / 1 writer, same rounds: {:.2}x)",
            "WAL append, 1 writer",
            rate(single_eps),
            mb_per_sec(single_eps * raw),
            args.writers,
            wal_eps_median / single_eps.max(f64::MIN_POSITIVE)
        );
    }
    if let Some(last) = rounds.last() {
        let s = last.stats;
        println!(
            "  WAL (last round): {} records in {} groups ({:.2} records/group), {} fsyncs, {} bytes written ({:.3}x raw)",
            thousands(s.records),
            thousands(s.groups),
            s.records as f64 / s.groups.max(1) as f64,
            thousands(s.syncs),
            thousands(s.bytes_written),
            s.bytes_written as f64 / (events * raw)
        );
    }
    println!("  WAL / plain write loop:     {:.1}%", ratio_percent(wal_bps, plain_bps));
    println!("  WAL / write+fdatasync loop: {:.1}%", ratio_percent(wal_bps, sync_bps));
    Ok(())
}

/// Appends every batch to a fresh WAL in `dir` from `writers` threads, closes it and removes
/// the directory; returns the append time and the WAL's counters.
fn timed_wal_run(
    dir: &std::path::Path,
    options: WalOptions,
    batches: &[strata_wal::Batch],
    writers: u32,
    sync: bool,
) -> Result<(Duration, strata_wal::WalStats)> {
    let (wal, _) = open_os_wal(dir, options)?;
    let elapsed = append_timed(&wal, batches, batches.len() as u64, writers as usize, sync)?;
    let stats = wal.stats();
    wal.close()?;
    std::fs::remove_dir_all(dir).map_err(|e| Error::io("remove", dir, e))?;
    Ok((elapsed, stats))
}

fn ratio_percent(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        100.0 * a / b
    } else {
        0.0
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn median_duration(values: &[Duration]) -> Duration {
    Duration::from_secs_f64(median(&values.iter().map(Duration::as_secs_f64).collect::<Vec<_>>()))
}
