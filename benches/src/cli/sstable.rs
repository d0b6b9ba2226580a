//! `strata-bench sstable`: the SSTable figures of issue #3 on the standard workload, each
//! printed next to its goal: build throughput, bytes on disk per event (with arrival seqnos,
//! and with seqnos zeroed as a compaction writes a settled partition), "newest 100 events of
//! U" from a warm block cache, and how often a lookup of an absent user costs a block read.
//! This is the figure docs/PERFORMANCE.md cites.
//!
//! Everything runs on one thread against the OS file system. Events are generated and
//! sorted into table order before any clock starts: sorting is the memtable's work, not the
//! builder's.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use strata_bench::hw::per_sec;
use strata_bench::sstable_data::{
    absent_users, build_timed, byte_split, events_per_user, settle_seqnos, table_entries, zipf_query_users,
    BuildTiming, ByteSplit,
};
use strata_bench::workload::{Rng, WorkloadConfig};
use strata_bench::{Error, Result};
use strata_sstable::block::Compression;
use strata_sstable::{BlockCache, Entry, Table, TableOptions};
use strata_vfs::{FileSystem, OsFs};

use super::{mb_per_sec, rate, thousands, WorkDir};

/// Goal: events per second of one build thread.
const GOAL_BUILD_EPS: f64 = 2_000_000.0;
/// Goal: bytes on disk per event.
const GOAL_BYTES_PER_EVENT: f64 = 22.0;
/// Goal: latency of "newest 100 events of U" from a warm cache.
const GOAL_LATEST_US: f64 = 5.0;
/// Goal: fraction of absent-user lookups that read no block.
const GOAL_FILTER_FRACTION: f64 = 0.99;
/// "Latest N" as workload.md defines the query.
const LATEST_N: usize = 100;
/// Queries of the latest phase (workload.md: 200,000).
const LATEST_QUERIES: usize = 200_000;
/// Absent users run through the filter.
const ABSENT_USERS: usize = 1_000_000;
/// Of those, the ones looked up with `get` under the cache's counters.
const ABSENT_GETS: usize = 100_000;
/// Block cache budget of the read phases: enough to hold every decoded block of the default
/// 2M-event table (about 190 MB), so "warm" means every block is cached.
const CACHE_BYTES: usize = 256 << 20;
/// zstd levels of the size sweep (0 = none).
const SWEEP_LEVELS: [i32; 4] = [0, 1, 3, 9];

/// Options of `sstable`.
#[derive(Debug, Args)]
pub struct SstableArgs {
    /// Directory to write in (created if missing; must be empty). Default: a temporary one.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Standard-workload events in the table.
    #[arg(long, default_value_t = 2_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    events: u64,
    /// Target uncompressed data block size in KiB.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=16_384))]
    block_kib: u64,
    /// zstd level of the data blocks (0 = no compression).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(0..=22))]
    zstd_level: i32,
    /// Seed of the workload; the query users are drawn with seeds derived from it.
    #[arg(long, default_value_t = WorkloadConfig::default().seed)]
    seed: u64,
    /// Timed builds of the arrival-seqno table; the median is reported (the machine is
    /// shared, and one build can land on a noisy moment).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    build_rounds: u32,
    /// Skip the size sweep over zstd levels 0/1/3/9 (a few extra builds).
    #[arg(long)]
    no_sweep: bool,
}

fn options(args: &SstableArgs, level: i32) -> TableOptions {
    let compression = if level == 0 { Compression::None } else { Compression::Zstd(level) };
    TableOptions {
        block_bytes: usize::try_from(args.block_kib << 10).unwrap_or(usize::MAX),
        compression,
        ..TableOptions::default()
    }
}

fn level_name(level: i32) -> String {
    if level == 0 {
        "none".to_string()
    } else {
        format!("zstd {level}")
    }
}

pub fn run(args: &SstableArgs) -> Result<()> {
    let work = WorkDir::new(args.dir.as_deref())?;
    let fs: Arc<dyn FileSystem> = Arc::new(OsFs::new());
    let config = WorkloadConfig::with_seed(args.seed);
    let raw_event = config.raw_event_bytes() as f64;
    let n = args.events;

    let start = Instant::now();
    let mut entries = table_entries(config.clone(), n);
    let prepare = start.elapsed();
    let per_user = events_per_user(&entries);
    println!(
        "strata-bench sstable: {} standard-workload events (seed {:#x}), {} users with events, {} KiB blocks, {}",
        thousands(n),
        args.seed,
        thousands(per_user.len() as u64),
        args.block_kib,
        level_name(args.zstd_level)
    );
    println!(
        "  generate + sort into table order: {:.2} s (not part of any figure below)",
        prepare.as_secs_f64()
    );

    // Build: the arrival-seqno table, `build_rounds` times, median.
    let arrival_path = work.path().join("arrival.sst");
    let mut builds = Vec::new();
    for _ in 0..args.build_rounds {
        remove_if_present(&arrival_path)?;
        builds.push(build_timed(Arc::clone(&fs), &arrival_path, &entries, options(args, args.zstd_level))?);
    }
    // The median round; rounds are printed below in the order they ran.
    let mut sorted = builds.clone();
    sorted.sort_by_key(BuildTiming::total);
    let build = sorted
        .get(sorted.len() / 2)
        .copied()
        .ok_or_else(|| Error::Mismatch("no build round ran".to_string()))?;
    let build_eps = per_sec(n as f64, build.total());
    let add_eps = per_sec(n as f64, build.add);
    println!("\nbuild (TableBuilder::create + add x {} + finish, one thread, OsFs)", thousands(n));
    println!(
        "  median of {} round(s): {:.3} s = {} events/s, {:.1} MB/s of raw {}-byte events (rounds in order: {})",
        builds.len(),
        build.total().as_secs_f64(),
        rate(build_eps),
        mb_per_sec(build_eps * raw_event),
        config.raw_event_bytes(),
        builds.iter().map(|b| format!("{:.3} s", b.total().as_secs_f64())).collect::<Vec<_>>().join(" / ")
    );
    println!(
        "  of which create + add {:.3} s ({} events/s), finish (metadata, fdatasync, rename, dir sync) {:.1} ms",
        build.add.as_secs_f64(),
        rate(add_eps),
        build.finish.as_secs_f64() * 1e3
    );

    let arrival_split = byte_split(&arrival_path)?;
    let arrival_stats = build.stats;

    // Read phases on the arrival table.
    let latest = latest_phase(fs.as_ref(), &arrival_path, &config, &per_user)?;
    let filter = filter_phase(fs.as_ref(), &arrival_path, &config, &per_user)?;

    // Size with seqnos zeroed: what a compaction writes for a settled partition.
    let dropped = settle_seqnos(&mut entries);
    let settled_path = work.path().join("settled.sst");
    let settled = build_timed(Arc::clone(&fs), &settled_path, &entries, options(args, args.zstd_level))?;
    let settled_split = byte_split(&settled_path)?;
    let settled_events = entries.len() as u64;

    // Diagnosis: the same settled table with every payload emptied, i.e. what the key
    // columns (user, ts, seqno, kind, length) cost on their own.
    let keys_only: Vec<Entry> =
        entries.iter().map(|e| Entry::put(e.user, e.ts, e.seqno, Vec::new())).collect();
    let keys_path = work.path().join("keys-only.sst");
    build_timed(Arc::clone(&fs), &keys_path, &keys_only, options(args, args.zstd_level))?;
    let keys_split = byte_split(&keys_path)?;
    drop(keys_only);

    println!("\nsize (bytes on disk / event; raw event = {} bytes)", config.raw_event_bytes());
    println!(
        "  {:<34} {:>12} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>7}",
        "table", "file bytes", "total", "data", "index", "filter", "footer", "raw/disk", "blocks"
    );
    print_split("arrival seqnos", &arrival_split, n, raw_event, arrival_stats.blocks);
    print_split(
        &format!("seqnos 0 (duplicate keys dropped: {})", thousands(dropped as u64)),
        &settled_split,
        settled_events,
        raw_event,
        settled.stats.blocks,
    );
    print_split("  same, payloads emptied (keys only)", &keys_split, settled_events, raw_event, 0);
    let settled_bpe = settled_split.file as f64 / settled_events as f64;
    let keys_bpe = keys_split.file as f64 / settled_events as f64;
    println!(
        "  settled table: key columns ~{:.2} B/event, payload columns ~{:.2} B/event (difference of the two builds)",
        keys_bpe,
        settled_bpe - keys_bpe
    );
    if arrival_split.range_deletes + settled_split.range_deletes > 0 {
        println!("  (range-delete list bytes are in the total but not in the columns)");
    }

    if !args.no_sweep {
        println!("\nsize by zstd level (seqnos 0 table; build = create + add + finish, one round)");
        println!("  {:<10} {:>10} {:>12} {:>14}", "level", "B/event", "data B/event", "build events/s");
        for level in SWEEP_LEVELS {
            let path = work.path().join(format!("sweep-{level}.sst"));
            let timing = build_timed(Arc::clone(&fs), &path, &entries, options(args, level))?;
            let split = byte_split(&path)?;
            println!(
                "  {:<10} {:>10.2} {:>12.2} {:>14}",
                level_name(level),
                split.file as f64 / settled_events as f64,
                split.data as f64 / settled_events as f64,
                rate(per_sec(settled_events as f64, timing.total()))
            );
            remove_if_present(&path)?;
        }
    }

    println!("\nlatest {LATEST_N} (Table::latest(U, {LATEST_N}), warm cache, one thread)");
    latest.print();
    println!("\nfilter (absent users, uniformly random ids not in the table)");
    filter.print();

    let arrival_bpe = arrival_split.file as f64 / n as f64;
    println!("\nsummary");
    println!("  {:<40} {:>16} {:>14}  verdict", "figure", "measured", "goal");
    let at_least = |measured: f64, goal: f64| verdict(measured >= goal, measured / goal);
    let at_most = |measured: f64, goal: f64| verdict(measured <= goal, measured / goal);
    let line = |name: &str, measured: String, goal: String, verdict: String| {
        println!("  {name:<40} {measured:>16} {goal:>14}  {verdict}");
    };
    line(
        "build, events/s (create+add+finish)",
        rate(build_eps),
        format!(">= {}", rate(GOAL_BUILD_EPS)),
        at_least(build_eps, GOAL_BUILD_EPS),
    );
    line(
        "size, B/event, seqnos 0 (settled)",
        format!("{settled_bpe:.2}"),
        format!("<= {GOAL_BYTES_PER_EVENT}"),
        at_most(settled_bpe, GOAL_BYTES_PER_EVENT),
    );
    line(
        "size, B/event, arrival seqnos",
        format!("{arrival_bpe:.2}"),
        format!("<= {GOAL_BYTES_PER_EVENT}"),
        at_most(arrival_bpe, GOAL_BYTES_PER_EVENT),
    );
    let p50 = latest.quantile_us(0.5);
    let p99 = latest.quantile_us(0.99);
    line(
        "latest 100, p50 us",
        format!("{p50:.2}"),
        format!("<= {GOAL_LATEST_US}"),
        at_most(p50, GOAL_LATEST_US),
    );
    line(
        "latest 100, p99 us",
        format!("{p99:.2}"),
        format!("<= {GOAL_LATEST_US}"),
        at_most(p99, GOAL_LATEST_US),
    );
    let mean = latest.mean_us();
    line(
        "latest 100, mean us",
        format!("{mean:.2}"),
        format!("<= {GOAL_LATEST_US}"),
        at_most(mean, GOAL_LATEST_US),
    );
    let no_read = filter.no_read_fraction();
    line(
        "absent-user get without a block read",
        format!("{:.3}%", 100.0 * no_read),
        format!(">= {:.0}%", 100.0 * GOAL_FILTER_FRACTION),
        at_least(no_read, GOAL_FILTER_FRACTION),
    );
    Ok(())
}

fn verdict(met: bool, ratio: f64) -> String {
    format!("{} ({ratio:.2}x the goal)", if met { "met" } else { "NOT met" })
}

fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("remove", path, e)),
        _ => Ok(()),
    }
}

fn print_split(name: &str, split: &ByteSplit, events: u64, raw_event: f64, blocks: u32) {
    let per = |bytes: u64| bytes as f64 / events.max(1) as f64;
    let blocks = if blocks == 0 { "-".to_string() } else { thousands(u64::from(blocks)) };
    println!(
        "  {:<34} {:>12} {:>8.2} {:>8.2} {:>8.3} {:>8.3} {:>8.5} {:>8.2}x {:>7}",
        name,
        thousands(split.file),
        per(split.file),
        per(split.data),
        per(split.index),
        per(split.filter),
        per(split.footer),
        raw_event / per(split.file).max(f64::MIN_POSITIVE),
        blocks
    );
}

/// What the latest phase measured.
struct Latest {
    /// Per-query latencies in nanoseconds, sorted.
    sorted_ns: Vec<u64>,
    /// Users drawn from the Zipf that had no event in the table (drawn again).
    skipped_draws: u64,
    /// Queries by entries returned: exactly 1, 2..=9, 10..=99, 100.
    returned: [u64; 4],
    returned_total: u64,
    /// Cache lookups and misses during the timed queries.
    lookups: u64,
    misses: u64,
    warm_blocks: u64,
    warm_bytes: u64,
    warm_evictions: u64,
    table_blocks: u32,
    clock_overhead_ns: f64,
    /// The same queries measured other ways (see `latest_phase`): name, sorted latencies.
    diagnosis: [(&'static str, Vec<u64>); 1],
}

impl Latest {
    fn quantile_us(&self, q: f64) -> f64 {
        quantile_ns(&self.sorted_ns, q) as f64 / 1e3
    }

    fn mean_us(&self) -> f64 {
        let total: u64 = self.sorted_ns.iter().sum();
        total as f64 / self.sorted_ns.len().max(1) as f64 / 1e3
    }

    fn print(&self) {
        let queries = self.sorted_ns.len() as u64;
        println!(
            "  {} queries, users from the workload's Zipf (independent seed; {} draws of users without events skipped)",
            thousands(queries),
            thousands(self.skipped_draws)
        );
        println!(
            "  warm-up: table.iter() cached {} of {} blocks, {:.1} MB decoded, {} evictions",
            thousands(self.warm_blocks),
            thousands(u64::from(self.table_blocks)),
            self.warm_bytes as f64 / 1e6,
            thousands(self.warm_evictions)
        );
        println!(
            "  latency us: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  mean {:.2}  ({} queries/s; Instant::now pair {:.0} ns, included)",
            self.quantile_us(0.5),
            self.quantile_us(0.9),
            self.quantile_us(0.99),
            self.quantile_us(0.999),
            self.quantile_us(1.0),
            self.mean_us(),
            rate(1e6 / self.mean_us().max(f64::MIN_POSITIVE)),
            self.clock_overhead_ns
        );
        println!(
            "  entries returned: 1: {}  2-9: {}  10-99: {}  100: {}  (mean {:.1})",
            thousands(self.returned[0]),
            thousands(self.returned[1]),
            thousands(self.returned[2]),
            thousands(self.returned[3]),
            self.returned_total as f64 / queries.max(1) as f64
        );
        for (name, sorted) in &self.diagnosis {
            println!(
                "  diagnosis, {name}: p50 {:.2}  p99 {:.2}  mean {:.2} us",
                quantile_ns(sorted, 0.5) as f64 / 1e3,
                quantile_ns(sorted, 0.99) as f64 / 1e3,
                sorted.iter().sum::<u64>() as f64 / sorted.len().max(1) as f64 / 1e3
            );
        }
        println!(
            "  block cache during the queries: {} lookups ({:.2} per query), {} misses",
            thousands(self.lookups),
            self.lookups as f64 / queries.max(1) as f64,
            thousands(self.misses)
        );
    }
}

/// The `q` quantile of sorted `samples`, nearest rank (0 when empty).
fn quantile_ns(sorted: &[u64], q: f64) -> u64 {
    let Some(last) = sorted.len().checked_sub(1) else { return 0 };
    // Nearest rank; the product is in 0..=last.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let rank = (q.clamp(0.0, 1.0) * last as f64).round() as usize;
    sorted.get(rank.min(last)).copied().unwrap_or(0)
}

fn latest_phase(
    fs: &dyn FileSystem,
    path: &Path,
    config: &WorkloadConfig,
    per_user: &std::collections::HashMap<u64, u64>,
) -> Result<Latest> {
    let cache = Arc::new(BlockCache::new(CACHE_BYTES));
    let table = Table::open(fs, path, Arc::clone(&cache))?;
    let mut seen = 0u64;
    for entry in table.iter() {
        entry?;
        seen += 1;
    }
    if seen != table.stats().entries {
        return Err(Error::Mismatch(format!(
            "table.iter() gave {seen} of {} entries",
            table.stats().entries
        )));
    }
    let warm = cache.stats();
    let (users, skipped_draws) = zipf_query_users(config, per_user, LATEST_QUERIES);

    let clock_overhead_ns = {
        let rounds = 10_000u32;
        let mut total = Duration::ZERO;
        for _ in 0..rounds {
            let t = Instant::now();
            total += t.elapsed();
        }
        total.as_secs_f64() * 1e9 / f64::from(rounds)
    };

    // One untimed pass of the same queries first, as criterion warms up before it measures:
    // the block cache is already warm, this warms the CPU caches and branch predictors, so
    // that the timed passes below are measured alike whatever order they run in.
    for &user in &users {
        std::hint::black_box(table.latest(user, LATEST_N)?);
    }
    let mut latencies = Vec::with_capacity(users.len());
    let mut returned = [0u64; 4];
    let mut returned_total = 0u64;
    let before = cache.stats();
    for &user in &users {
        let start = Instant::now();
        let newest: Vec<Entry> = table.latest(user, LATEST_N)?;
        let elapsed = start.elapsed();
        latencies.push(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
        let got = newest.len();
        let expected = per_user.get(&user).copied().unwrap_or(0).min(LATEST_N as u64);
        if got as u64 != expected || newest.windows(2).any(|w| w[0].ts < w[1].ts) {
            return Err(Error::Mismatch(format!(
                "latest {LATEST_N} of user {user}: {got} entries, expected {expected} newest first"
            )));
        }
        let bucket = match got {
            0 | 1 => 0,
            2..=9 => 1,
            10..=99 => 2,
            _ => 3,
        };
        returned[bucket] += 1;
        returned_total += got as u64;
    }
    let after = cache.stats();
    latencies.sort_unstable();

    // Diagnosis: the same queries through the reverse iterator collected with
    // `.take(100).collect()`, as its own pass (interleaving the two per user would hand the
    // second a CPU cache the first had just filled).
    let mut presized = Vec::with_capacity(users.len());
    for &user in &users {
        let start = Instant::now();
        let newest: Vec<Entry> = table
            .user_range_rev(user, i64::MIN, i64::MAX)
            .take(LATEST_N)
            .collect::<strata_sstable::Result<_>>()?;
        presized.push(u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX));
        let expected = per_user.get(&user).copied().unwrap_or(0).min(LATEST_N as u64);
        if newest.len() as u64 != expected {
            return Err(Error::Mismatch(format!(
                "iterator latest for user {user}: {} entries",
                newest.len()
            )));
        }
    }
    presized.sort_unstable();
    Ok(Latest {
        sorted_ns: latencies,
        skipped_draws,
        returned,
        returned_total,
        lookups: (after.hits + after.misses) - (before.hits + before.misses),
        misses: after.misses - before.misses,
        warm_blocks: warm.entries,
        warm_bytes: warm.bytes,
        warm_evictions: warm.evictions,
        table_blocks: table.stats().blocks,
        clock_overhead_ns,
        diagnosis: [("iterator, .take(100).collect() (Vec regrows)", presized)],
    })
}

/// What the filter phase measured.
struct FilterFigures {
    absent: u64,
    passed: u64,
    filter_ns: f64,
    gets: u64,
    gets_without_read: u64,
    get_ns: f64,
    bits_per_user: u32,
}

impl FilterFigures {
    fn no_read_fraction(&self) -> f64 {
        self.gets_without_read as f64 / self.gets.max(1) as f64
    }

    fn print(&self) {
        println!(
            "  may_contain_user: {} of {} absent users pass = {:.3}% false positives ({} bits/user; {:.1} ns a check)",
            thousands(self.passed),
            thousands(self.absent),
            100.0 * self.passed as f64 / self.absent.max(1) as f64,
            self.bits_per_user,
            self.filter_ns
        );
        println!(
            "  get(user, random ts) on the first {}: {} read no block = {:.3}% ({:.1} ns a get, cache counters read around each)",
            thousands(self.gets),
            thousands(self.gets_without_read),
            100.0 * self.no_read_fraction(),
            self.get_ns
        );
    }
}

fn filter_phase(
    fs: &dyn FileSystem,
    path: &Path,
    config: &WorkloadConfig,
    per_user: &std::collections::HashMap<u64, u64>,
) -> Result<FilterFigures> {
    // A cold, private cache: every block a get touches shows up as a miss or a hit.
    let cache = Arc::new(BlockCache::new(CACHE_BYTES));
    let table = Table::open(fs, path, Arc::clone(&cache))?;
    let absent = absent_users(config, per_user, ABSENT_USERS);

    let start = Instant::now();
    let passed = absent.iter().filter(|&&user| table.may_contain_user(user)).count() as u64;
    let filter_ns = start.elapsed().as_secs_f64() * 1e9 / absent.len().max(1) as f64;

    let stats = table.stats();
    let span = u64::try_from(i128::from(stats.max_ts) - i128::from(stats.min_ts) + 1).unwrap_or(u64::MAX);
    // Its own stream, so the probed timestamps do not depend on how many users were drawn.
    let mut rng = Rng::new(config.seed ^ 0x6765_7473);
    let mut without_read = 0u64;
    let mut get_time = Duration::ZERO;
    let gets = absent.len().min(ABSENT_GETS);
    for &user in absent.iter().take(gets) {
        let ts = stats.min_ts.wrapping_add(i64::try_from(rng.below(span)).unwrap_or(0));
        let before = cache.stats();
        let start = Instant::now();
        let found = table.get(user, ts)?;
        get_time += start.elapsed();
        let after = cache.stats();
        if !found.is_empty() {
            return Err(Error::Mismatch(format!(
                "get of absent user {user} returned {} entries",
                found.len()
            )));
        }
        if after.hits + after.misses == before.hits + before.misses {
            without_read += 1;
        }
    }
    Ok(FilterFigures {
        absent: absent.len() as u64,
        passed,
        filter_ns,
        gets: gets as u64,
        gets_without_read: without_read,
        get_ns: get_time.as_secs_f64() * 1e9 / gets.max(1) as f64,
        bits_per_user: TableOptions::default().filter_bits_per_user,
    })
}
