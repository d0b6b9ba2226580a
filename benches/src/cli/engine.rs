//! `strata-bench engine`: the figures of issue #4 for the embedded engine on the standard
//! workload, each next to its goal:
//! - ingest: one writer, batches of 1,000 events, WAL on, not fsynced (events/s);
//! - close (with its final flush) and reopen of the database (ms);
//! - settle: `compact()`, which merges each partition into one table;
//! - "latest 100 events of U" on settled data, U drawn from the workload's Zipf (p50, p99,
//!   p99.9, max);
//! - peak resident memory against the configured memtable and block-cache budgets.
//!
//! Batches are generated before the clock starts: the generator is not the engine.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use strata::{Db, Options, WriteBatch, WriteOptions};
use strata_bench::hw::per_sec;
use strata_bench::measure::IoCounters;
use strata_bench::runner::{DURING_SEED_SALT, WARMUP_SEED_SALT};
use strata_bench::sstable_data::QUERY_SEED_SALT;
use strata_bench::workload::{mix64, user_of_rank, Rng, Workload, WorkloadConfig, Zipf};
use strata_bench::{Error, Result};

use super::{rate, thousands, WorkDir};

/// Goal: events/s of one writer, batches of 1,000, sync off.
const GOAL_INGEST_EPS: f64 = 3_000_000.0;
/// Goal: p99 of latest-100 on settled data.
const GOAL_LATEST_P99_US: f64 = 20.0;
/// Goal: open after a clean close.
const GOAL_OPEN_MS: f64 = 100.0;
/// Goal: peak RSS above the memtable and cache budgets.
const GOAL_RSS_HEADROOM_MIB: f64 = 100.0;

/// Options of `engine`.
#[derive(Debug, Args)]
pub struct EngineArgs {
    /// Directory of the database (created if missing; must be empty). Default: a temporary one.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Standard-workload events to ingest (the quick preset's 2,000,000 by default).
    #[arg(long, default_value_t = 2_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    events: u64,
    /// Events per batch.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
    batch: u64,
    /// "Latest 100" queries.
    #[arg(long, default_value_t = 200_000)]
    queries: usize,
    /// Memtable size in MiB.
    #[arg(long, default_value_t = 64)]
    memtable_mib: usize,
    /// Block cache budget in MiB.
    #[arg(long, default_value_t = 256)]
    cache_mib: usize,
    /// Skip the settle step: query the tables as flushed.
    #[arg(long)]
    no_compact: bool,
    /// Target uncompressed block size of the tables compaction writes, in KiB (default:
    /// the engine's).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    block_kib: Option<u64>,
    /// zstd level of the tables compaction writes (0: none; default: the engine's).
    #[arg(long, allow_negative_numbers = true, value_parser = clap::value_parser!(i32).range(-7..=22))]
    zstd_level: Option<i32>,
    /// Partition width in hours (the engine's default: 24).
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u64).range(1..))]
    partition_hours: u64,
    /// Workload seed.
    #[arg(long, default_value_t = WorkloadConfig::default().seed)]
    seed: u64,
    /// Only query: open the database a previous run left in `--dir` (`DIR/db`, kept with
    /// `--dir`) and run the "latest 100" passes on it, with no ingest or settle. For
    /// comparing read-path builds on the very same tables; background compaction is off.
    #[arg(long, requires = "dir")]
    query_only: bool,
    /// With `--query-only`: warm the cache as `run` does instead, with this many queries
    /// drawn from the standard run's warm-up seed (not the timed queries' own), then time
    /// one pass. The timed pass then misses the cache as often as `run`'s latest phase.
    #[arg(long, requires = "query_only")]
    warmup_queries: Option<usize>,
    /// With `--warmup-queries`: the settle's protocol on this database. After the warm-up,
    /// one reader runs "latest 100" (drawn as `run` draws them during its settle) beside
    /// `Db::compact()` until it returns; then the cache is warmed again and the timed pass
    /// runs idle on the compacted tables, and the ratio of the two p99s is printed. Shows
    /// what compaction costs a reader from any starting layout (`run` starts from the one
    /// its ingest leaves).
    #[arg(long, requires = "warmup_queries")]
    beside_compact: bool,
}

/// The engine's table options with `--block-kib` and `--zstd-level` applied.
fn table_options(args: &EngineArgs) -> strata::sstable::TableOptions {
    let mut table = Options::default().table;
    if let Some(kib) = args.block_kib {
        table.block_bytes = usize::try_from(kib << 10).unwrap_or(usize::MAX);
    }
    match args.zstd_level {
        Some(0) => table.compression = strata::sstable::block::Compression::None,
        Some(level) => table.compression = strata::sstable::block::Compression::Zstd(level),
        None => {}
    }
    table
}

/// Runs `engine`.
pub fn run(args: &EngineArgs) -> Result<()> {
    if args.query_only {
        return query_only(args);
    }
    let work = WorkDir::new(args.dir.as_deref())?;
    let path = work.path().join("db");
    let config = WorkloadConfig::with_seed(args.seed);
    let options = Options {
        memtable_bytes: args.memtable_mib << 20,
        block_cache_bytes: args.cache_mib << 20,
        partition_width: args.partition_hours * 3_600_000_000,
        table: table_options(args),
        ..Options::default()
    };
    let budget_mib = (options.memtable_bytes * (1 + options.max_immutable_memtables)
        + options.block_cache_bytes) as f64
        / f64::from(1u32 << 20);

    let db = Db::open(&path, options.clone())?;
    let ingest = ingest(&db, &config, args)?;
    let stats = db.stats();
    let start = Instant::now();
    db.close()?;
    let close = start.elapsed();
    drop(db);

    let start = Instant::now();
    let db = Db::open(&path, options)?;
    let open = start.elapsed();
    let flushed = db.stats();
    // Settle: merge each partition's tables into one (workload.md's "flush and compact to a
    // steady state"), then read.
    let start = Instant::now();
    if !args.no_compact {
        db.compact()?;
    }
    let settle = start.elapsed();
    let settled = db.stats();

    // A first pass of the same queries warms the block cache: the figure is the steady
    // state of a server, not the first touch of each block after a restart.
    latest_latencies(&db, &config, QUERY_SEED_SALT, args.queries)?;
    let mut latencies = latest_latencies(&db, &config, QUERY_SEED_SALT, args.queries)?;
    latencies.sort_unstable();
    let peak_rss_mib = peak_rss_mib();

    let eps = per_sec(args.events as f64, ingest);
    println!(
        "strata-bench engine: {} standard-workload events, batches of {}",
        thousands(args.events),
        args.batch
    );
    println!(
        "ingest (1 writer, sync off): {} events/s over {:.2} s, {} stalled, {:.1}% late  [goal >= {}: {}]",
        rate(eps),
        ingest.as_secs_f64(),
        fmt_duration(stats.stall_time),
        100.0 * settled_late_fraction(&stats, &flushed),
        rate(GOAL_INGEST_EPS),
        verdict(eps >= GOAL_INGEST_EPS)
    );
    let tables = |s: &strata::Stats| -> u64 {
        s.partitions.iter().map(|p| p.sequence_tables + p.unsequence_tables).sum()
    };
    let table_bytes: u64 = settled.partitions.iter().map(|p| p.bytes).sum();
    println!(
        "close (flushes the memtable): {:.1} ms; {} partitions, {} tables",
        close.as_secs_f64() * 1e3,
        flushed.partitions.len(),
        tables(&flushed),
    );
    println!(
        "settle (compact: one run per partition or group): {:.1} ms; {} tables, {:.2} bytes/event",
        settle.as_secs_f64() * 1e3,
        tables(&settled),
        table_bytes as f64 / args.events as f64
    );
    print_compaction("compaction during ingest", &stats);
    print_compaction("compaction at settle", &settled);
    let open_ms = open.as_secs_f64() * 1e3;
    println!(
        "open after a clean close: {open_ms:.1} ms  [goal <= {GOAL_OPEN_MS} ms: {}]",
        verdict(open_ms <= GOAL_OPEN_MS)
    );
    let p99 = percentile_us(&latencies, 0.99);
    println!(
        "latest 100 ({} queries, settled data): p50 {:.2} us, p99 {:.2} us, p99.9 {:.2} us, max {:.2} us, {} queries/s  [goal p99 <= {GOAL_LATEST_P99_US} us: {}]",
        thousands(latencies.len() as u64),
        percentile_us(&latencies, 0.50),
        p99,
        percentile_us(&latencies, 0.999),
        percentile_us(&latencies, 1.0),
        rate(per_sec(latencies.len() as f64, latencies.iter().sum())),
        verdict(p99 <= GOAL_LATEST_P99_US)
    );
    println!(
        "peak RSS: {peak_rss_mib:.0} MiB; budgets (memtables {} MiB x {} + cache {} MiB) {budget_mib:.0} MiB  [goal <= budgets + {GOAL_RSS_HEADROOM_MIB} MiB: {}]",
        args.memtable_mib,
        1 + Options::default().max_immutable_memtables,
        args.cache_mib,
        verdict(peak_rss_mib <= budget_mib + GOAL_RSS_HEADROOM_MIB)
    );
    db.close()?;
    Ok(())
}

/// `--query-only`: the two "latest 100" passes of [`run`] on the database in `DIR/db`, each
/// printed (the first starts from an empty block cache, the second is the one `run` times),
/// with the block cache's counters.
fn query_only(args: &EngineArgs) -> Result<()> {
    let dir = args.dir.as_deref().unwrap_or(std::path::Path::new("."));
    // No background compaction: the queries read the tables exactly as they were left, so
    // that two builds (or a settled and an unsettled database) compare on the same layout.
    let options = Options {
        block_cache_bytes: args.cache_mib << 20,
        partition_width: args.partition_hours * 3_600_000_000,
        table: table_options(args),
        compaction_threads: 0,
        ..Options::default()
    };
    let db = Db::open(dir.join("db"), options)?;
    for p in db.stats().partitions {
        println!(
            "partition {}: {} sequence + {} unsequence tables, {} events, {:.2} bytes/event",
            p.partition,
            p.sequence_tables,
            p.unsequence_tables,
            p.events,
            p.bytes as f64 / p.events.max(1) as f64
        );
    }
    let config = WorkloadConfig::with_seed(args.seed);
    let passes: &[(&str, u64, usize)] = match args.warmup_queries {
        None => &[
            ("first (cold cache)", QUERY_SEED_SALT, args.queries),
            ("second (as `engine` times it)", QUERY_SEED_SALT, args.queries),
        ],
        Some(warmup) => &[
            ("warm-up (as `run` warms)", WARMUP_SEED_SALT, warmup),
            ("timed (as `run` times it)", QUERY_SEED_SALT, args.queries),
        ],
    };
    let mut during_p99 = None;
    for (k, &(pass, salt, queries)) in passes.iter().enumerate() {
        if k == 1 && args.beside_compact {
            during_p99 = Some(beside_compact(&db, &config)?);
            // Warm again, as `run` does after its settle: the idle pass below is timed on
            // the compacted tables with the cache in its steady state.
            latest_latencies(&db, &config, WARMUP_SEED_SALT, passes[0].2)?;
        }
        let io = IoCounters::now();
        let start = Instant::now();
        let mut latencies = latest_latencies(&db, &config, salt, queries)?;
        let elapsed = start.elapsed();
        latencies.sort_unstable();
        let cache = db.stats().block_cache;
        println!(
            "latest 100, {pass} pass: {} queries/s (wall), p50 {:.2} us, p90 {:.2} us, p99 {:.2} us, \
             p99.9 {:.2} us; block cache so far: {} hits, {} misses, {} inserts; {:.1} MB read \
             from the disk (not the page cache)",
            rate(per_sec(latencies.len() as f64, elapsed)),
            percentile_us(&latencies, 0.50),
            percentile_us(&latencies, 0.90),
            percentile_us(&latencies, 0.99),
            percentile_us(&latencies, 0.999),
            thousands(cache.hits),
            thousands(cache.misses),
            thousands(cache.inserts),
            IoCounters::now().since(io).read_bytes as f64 / 1e6,
        );
        if let (1, Some(during)) = (k, during_p99) {
            let idle = percentile_us(&latencies, 0.99);
            println!(
                "p99 beside compact() / p99 idle after it: {:.2}x",
                during / idle.max(f64::MIN_POSITIVE)
            );
        }
    }
    db.close()?;
    Ok(())
}

/// Runs `db.compact()` while this thread's scoped reader runs "latest 100" queries (users
/// drawn as `run`'s settle draws them) until it returns; prints what the reader measured
/// and returns its p99 in microseconds.
fn beside_compact(db: &Db, config: &WorkloadConfig) -> Result<f64> {
    let done = std::sync::atomic::AtomicBool::new(false);
    let (compacted, latencies) = std::thread::scope(|scope| {
        let reader = scope.spawn(|| -> Result<Vec<Duration>> {
            let zipf = Zipf::new(config.users, config.zipf_s);
            let mut rng = Rng::new(mix64(config.seed ^ DURING_SEED_SALT));
            let mut latencies = Vec::new();
            let mut out = Vec::new();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let user = user_of_rank(zipf.sample(&mut rng));
                out.clear();
                let start = Instant::now();
                db.latest_into(user, 100, &mut out)?;
                latencies.push(start.elapsed());
            }
            Ok(latencies)
        });
        let start = Instant::now();
        let compacted = db.compact().map(|()| start.elapsed());
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let latencies = reader.join().map_err(|_| Error::Mismatch("the reader thread panicked".into()));
        (compacted, latencies)
    });
    let elapsed = compacted?;
    let mut latencies = latencies??;
    latencies.sort_unstable();
    let p99 = percentile_us(&latencies, 0.99);
    println!(
        "latest 100 beside compact() ({:.2} s): {} queries, p50 {:.2} us, p90 {:.2} us, p99 {:.2} us, \
         p99.9 {:.2} us",
        elapsed.as_secs_f64(),
        thousands(latencies.len() as u64),
        percentile_us(&latencies, 0.50),
        percentile_us(&latencies, 0.90),
        p99,
        percentile_us(&latencies, 0.999),
    );
    for p in db.stats().partitions {
        println!(
            "after: partition {}: {} sequence + {} unsequence tables, {} events",
            p.partition, p.sequence_tables, p.unsequence_tables, p.events
        );
    }
    Ok(p99)
}

/// One line per merge kind that ran, then the totals: what compaction read and wrote.
fn print_compaction(when: &str, stats: &strata::Stats) {
    let c = &stats.compaction;
    let mb = |b: u64| b as f64 / 1e6;
    let kinds = [("sequence", &c.sequence), ("cross", &c.cross), ("erasure", &c.erasure), ("full", &c.full)];
    let ran: Vec<String> = kinds
        .iter()
        .filter(|(_, k)| k.runs > 0)
        .map(|(name, k)| {
            format!(
                "{name} {} runs, {:.1} MB read, {:.1} MB written",
                k.runs,
                mb(k.bytes_read),
                mb(k.bytes_written)
            )
        })
        .collect();
    println!(
        "{when}: {}; {} moves; debt {:.1} MB; write amp so far {:.2} (WAL {:.1} MB, tables {:.1} MB)",
        if ran.is_empty() { "none".to_string() } else { ran.join("; ") },
        c.moves,
        mb(c.pending_bytes),
        stats.write_amplification,
        mb(stats.wal_bytes),
        mb(stats.table_bytes_written),
    );
}

fn settled_late_fraction(ingest: &strata::Stats, settled: &strata::Stats) -> f64 {
    // The close flushes the last memtable; the ingest counters hold the earlier flushes.
    let events = ingest.events_flushed + settled.events_flushed;
    let late = ingest.late_events + settled.late_events;
    if events == 0 {
        ingest.late_fraction
    } else {
        late as f64 / events as f64
    }
}

/// Events generated before the clock starts, at most: the quick preset's 2M events fit at
/// once (170 MB of batches); a larger run is generated and written in parts of this size,
/// and only the writes are timed (the flush thread may run while a part is generated).
const PREGENERATED_EVENTS: u64 = 2_000_000;

/// Writes `args.events` events in batches and returns the time spent in `write` calls.
fn ingest(db: &Db, config: &WorkloadConfig, args: &EngineArgs) -> Result<Duration> {
    let mut workload = Workload::new(config.clone());
    let mut left = args.events;
    let mut elapsed = Duration::ZERO;
    while left > 0 {
        let part = left.min(PREGENERATED_EVENTS);
        let batches = make_batches(&mut workload, part, args.batch);
        let start = Instant::now();
        for batch in &batches {
            db.write(batch, &WriteOptions { sync: false })?;
        }
        elapsed += start.elapsed();
        left -= part;
    }
    Ok(elapsed)
}

fn make_batches(workload: &mut Workload, events: u64, per_batch: u64) -> Vec<WriteBatch> {
    let mut payload = Vec::with_capacity(workload.config().payload_bytes);
    let mut batches = Vec::new();
    let mut left = events;
    while left > 0 {
        let n = left.min(per_batch);
        let mut batch = WriteBatch::new();
        for _ in 0..n {
            let (user, ts) = workload.next_into(&mut payload);
            batch.put(user, ts, &payload);
        }
        batches.push(batch);
        left -= n;
    }
    batches
}

fn latest_latencies(db: &Db, config: &WorkloadConfig, salt: u64, queries: usize) -> Result<Vec<Duration>> {
    let zipf = Zipf::new(config.users, config.zipf_s);
    let mut rng = Rng::new(mix64(config.seed ^ salt));
    let mut latencies = Vec::with_capacity(queries);
    let mut returned = 0u64;
    for _ in 0..queries {
        let user = user_of_rank(zipf.sample(&mut rng));
        let start = Instant::now();
        let events = db.latest(user, 100)?;
        latencies.push(start.elapsed());
        returned += events.len() as u64;
    }
    if queries > 0 && returned == 0 {
        return Err(Error::Mismatch("latest returned no event for any query user".into()));
    }
    Ok(latencies)
}

fn percentile_us(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1e6
}

/// Peak resident memory of this process (VmHWM), in MiB; 0 where /proc is missing.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn fmt_duration(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "NOT met"
    }
}
