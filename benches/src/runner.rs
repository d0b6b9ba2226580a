//! The phases of the standard workload (/work/shared/workload.md) run against one engine, in
//! the order a deployment meets them:
//!
//! 1. `ingest_sync`: a fresh database takes the first `sync_events` events, every batch
//!    fsynced (the durable rate); then it is closed and removed.
//! 2. `ingest`: a fresh database takes every event, batches handed to the OS, not fsynced.
//! 3. `reopen`: a clean close, then an open.
//! 4. `settle`: flush and compact to the engine's steady state; bytes on disk and write
//!    amplification over ingest and settle; the space amplification of the state ingest
//!    left (bytes before / after); and "latest" latencies of one reader while the settle's
//!    compaction runs (after an untimed warm-up), to set against the idle `latest` phase.
//! 5. `latest`: "the last 100 events of U", U from the workload's Zipf with its own seed,
//!    after an untimed warm-up of other users.
//! 6. `range`: "U's events in the last hour of simulated time".
//! 7. `mixed`: writers continue the event stream while readers run "latest" queries.
//! 8. `memory`: the process's peak resident memory.
//!
//! Batches are generated before the clock starts (in parts of at most
//! [`PREGENERATED_EVENTS`]), so the figures time the engine, not the generator; each engine
//! builds its own batch from them inside the timed call. Every engine runs this same code
//! in its own process (see `cli/run.rs`), so each figure compares.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::measure::{dir_bytes, CdfPoint, IoCounters, Latencies, LatencySummary, PhasePeaks};
use crate::peers::{self, Budget, EngineKind, EventBatch, Row, Store};
use crate::workload::{mix64, user_of_rank, Rng, Workload, WorkloadConfig, Zipf};
use crate::{Error, Result};

/// The version of the JSON results schema (docs/benchmarking.md). Bumped on any change
/// that is not a pure addition of a field.
pub const SCHEMA_VERSION: u32 = 1;

/// Every phase, with the figures its result always carries (besides `engine` and `phase`).
/// This table is the schema: docs/benchmarking.md describes each field, and a test checks
/// that a run produces exactly these.
pub const SCHEMA: &[(&str, &[&str])] = &[
    ("ingest_sync", INGEST_FIELDS),
    ("ingest", INGEST_FIELDS),
    ("reopen", &["close_s", "open_s"]),
    (
        "settle",
        &[
            "elapsed_s",
            "bytes_on_disk",
            "bytes_per_event",
            "disk_write_bytes",
            "write_amplification",
            "bytes_before",
            "space_amplification",
            "latest_during_queries",
            "latest_during_p50_us",
            "latest_during_p99_us",
        ],
    ),
    ("latest", QUERY_FIELDS),
    ("range", QUERY_FIELDS),
    (
        "mixed",
        &[
            "elapsed_s",
            "writer_events",
            "writer_events_per_sec",
            "reader_queries",
            "reader_queries_per_sec",
            "reader_mean_us",
            "reader_p50_us",
            "reader_p99_us",
            "reader_p999_us",
            "reader_max_us",
        ],
    ),
    (
        "memory",
        &[
            "peak_rss_bytes",
            "budget_bytes",
            "ingest_peak_rss_bytes",
            "settle_peak_rss_bytes",
            "query_peak_rss_bytes",
            "mixed_peak_rss_bytes",
        ],
    ),
];

const INGEST_FIELDS: &[&str] =
    &["events", "elapsed_s", "events_per_sec", "mb_per_sec", "disk_write_bytes", "write_amplification"];
const QUERY_FIELDS: &[&str] = &[
    "queries",
    "elapsed_s",
    "queries_per_sec",
    "events_returned",
    "mean_us",
    "p50_us",
    "p99_us",
    "p999_us",
    "max_us",
    "disk_read_bytes",
];

/// Events generated at once before the clock starts: 2M events are about 170 MB of
/// batches; a larger run is generated and written in parts of this size.
pub const PREGENERATED_EVENTS: u64 = 2_000_000;
/// Salt of the seed of the "latest" query users (shared with the `sstable` and `engine`
/// subcommands, so all of them query the same users).
const LATEST_SEED_SALT: u64 = crate::sstable_data::QUERY_SEED_SALT;
/// Seeds the warm-up queries before the timed ones (also `engine --warmup-queries`).
pub const WARMUP_SEED_SALT: u64 = 0x5741_524d_5550_0001;
/// Seeds the users queried while the settle runs.
pub const DURING_SEED_SALT: u64 = 0x4455_5249_4e47_0001;
const RANGE_SEED_SALT: u64 = 0x5241_4e47_4551_0001;
const DUP_SEED_SALT: u64 = 0x4455_5045_5300_0001;
const MIXED_SEED_SALT: u64 = 0x4d49_5845_4400_0001;
/// Width of a window of the ingest throughput series.
const SERIES_WINDOW: Duration = Duration::from_millis(100);

/// Everything one engine's run needs; the parent process hands it to each child as JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// Name of the preset the sizes come from ("quick", "standard", or "custom").
    pub preset: String,
    /// The event stream.
    pub workload: WorkloadConfig,
    /// Events of the `ingest` phase.
    pub events: u64,
    /// Events of the `ingest_sync` phase (the first ones of the same stream).
    pub sync_events: u64,
    /// Events per batch.
    pub batch_events: usize,
    /// Fraction of batches delivered twice (at-least-once streams); 0 by default.
    pub dup_fraction: f64,
    /// Writer threads of the ingest and mixed phases.
    pub writer_threads: usize,
    /// Reader threads of the query and mixed phases.
    pub reader_threads: usize,
    /// Timed "latest" queries.
    pub latest_queries: u64,
    /// Untimed warm-up queries before them.
    pub warmup_queries: u64,
    /// Events per "latest" query.
    pub latest_n: usize,
    /// Timed "range" queries.
    pub range_queries: u64,
    /// Width of a "range" query, in seconds of simulated time.
    pub range_secs: u64,
    /// Length of the mixed phase, in seconds.
    pub mixed_secs: f64,
    /// Memory budget, the same for every engine.
    pub memtable_mib: usize,
    /// Memtables held at most (the mutable one plus those awaiting flush).
    pub memtables: usize,
    /// Block cache, MiB.
    pub cache_mib: usize,
    /// No progress bars.
    pub quiet: bool,
}

impl RunConfig {
    /// The memory budget every engine gets.
    pub fn budget(&self) -> Budget {
        Budget {
            memtable_bytes: self.memtable_mib << 20,
            memtables: self.memtables,
            cache_bytes: self.cache_mib << 20,
        }
    }

    /// Checks the sizes make sense.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("--events", self.events),
            ("--batch", self.batch_events as u64),
            ("--writer-threads", self.writer_threads as u64),
            ("--reader-threads", self.reader_threads as u64),
            ("--latest-n", self.latest_n as u64),
            ("--memtable-mib", self.memtable_mib as u64),
            ("--cache-mib", self.cache_mib as u64),
            ("--users", self.workload.users),
        ];
        if let Some((flag, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(Error::Usage(format!("{flag} must be at least 1")));
        }
        if self.memtables < 2 {
            return Err(Error::Usage("--memtables must be at least 2 (one mutable, one flushing)".into()));
        }
        for (flag, f) in [
            ("--dup-fraction", self.dup_fraction),
            ("--late-fraction", self.workload.late_short_fraction),
            ("--backfill-fraction", self.workload.late_long_fraction),
        ] {
            if !(0.0..=1.0).contains(&f) {
                return Err(Error::Usage(format!("{flag} must be within 0..=1, got {f}")));
            }
        }
        if self.workload.late_short_fraction + self.workload.late_long_fraction > 1.0 {
            return Err(Error::Usage("--late-fraction plus --backfill-fraction exceeds 1".into()));
        }
        if !(self.workload.zipf_s.is_finite() && self.workload.zipf_s >= 0.0) {
            return Err(Error::Usage(format!(
                "--zipf-s must be finite and >= 0, got {}",
                self.workload.zipf_s
            )));
        }
        if self.workload.late_short_max_us < 0 || self.workload.late_long_max_us < 0 {
            return Err(Error::Usage("late lags must be >= 0".into()));
        }
        if !(self.mixed_secs.is_finite() && self.mixed_secs >= 0.0) {
            return Err(Error::Usage(format!("--mixed-secs must be >= 0, got {}", self.mixed_secs)));
        }
        Ok(())
    }

    /// Raw bytes of `events` events as the workload counts them (16 of key + the payload).
    pub fn raw_bytes(&self, events: u64) -> u64 {
        events * self.workload.raw_event_bytes() as u64
    }
}

/// The figures of one phase of one engine: one JSON object of the results file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhaseResult {
    /// The engine's name.
    pub engine: String,
    /// The phase's name (a key of [`SCHEMA`]).
    pub phase: String,
    /// The phase's figures, by field name.
    #[serde(flatten)]
    pub figures: BTreeMap<String, f64>,
}

impl PhaseResult {
    fn new(engine: EngineKind, phase: &str, figures: &[(&str, f64)]) -> PhaseResult {
        PhaseResult {
            engine: engine.name().to_string(),
            phase: phase.to_string(),
            figures: figures.iter().map(|(k, v)| ((*k).to_string(), *v)).collect(),
        }
    }

    /// One figure, if the phase has it.
    pub fn get(&self, field: &str) -> Option<f64> {
        self.figures.get(field).copied()
    }
}

/// One window of the ingest throughput series.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct IngestSample {
    /// End of the window, in seconds of ingest time.
    pub t_secs: f64,
    /// Events per second within the window.
    pub events_per_sec: f64,
}

/// The series one engine's run draws charts from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EngineSeries {
    /// The engine's name.
    pub engine: String,
    /// Ingest throughput over (ingest) time.
    pub ingest: Vec<IngestSample>,
    /// The "latest" latency CDF.
    pub latest_cdf: Vec<CdfPoint>,
}

/// What a child process reports: its results, series and settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EngineReport {
    /// The engine's name.
    pub engine: String,
    /// One result per phase, in phase order.
    pub results: Vec<PhaseResult>,
    /// Chart data.
    pub series: EngineSeries,
    /// The engine's settings, as (setting, value).
    pub settings: Vec<(String, String)>,
}

/// Runs every phase against `kind` in the empty directory `dir`.
pub fn run_engine(kind: EngineKind, dir: &Path, config: &RunConfig) -> Result<EngineReport> {
    config.validate()?;
    let budget = config.budget();
    let mut results = Vec::new();
    let mut series = EngineSeries { engine: kind.name().to_string(), ..EngineSeries::default() };
    // Where the peak memory falls: the process's figure alone does not say which phase made it.
    let mut peaks = PhasePeaks::default();
    peaks.end(); // the stretches start now, not at the process's start

    // 1. Durable ingest, in its own database, removed afterwards.
    if config.sync_events > 0 {
        let sync_dir = dir.join("ingest-sync");
        let store = peers::open(kind, &sync_dir, budget)?;
        let mut workload = Workload::new(config.workload.clone());
        let io = IoCounters::now();
        let timed = ingest(
            &*store,
            &mut workload,
            config,
            config.sync_events,
            true,
            &format!("{} ingest (fsync)", kind.name()),
        )?;
        let written = IoCounters::now().since(io).write_bytes;
        store.close()?;
        results.push(ingest_result(kind, "ingest_sync", config, &timed, written));
        std::fs::remove_dir_all(&sync_dir).map_err(|e| Error::io("remove", &sync_dir, e))?;
    }

    // 2. Ingest.
    let main_dir = dir.join("db");
    let io_start = IoCounters::now();
    let store = peers::open(kind, &main_dir, budget)?;
    let mut workload = Workload::new(config.workload.clone());
    let timed =
        ingest(&*store, &mut workload, config, config.events, false, &format!("{} ingest", kind.name()))?;
    let ingest_written = IoCounters::now().since(io_start).write_bytes;
    results.push(ingest_result(kind, "ingest", config, &timed, ingest_written));
    series.ingest = timed.series;
    let end_of_data = workload.clock_us();
    let ingest_peak = peaks.end();

    // 3. Close and reopen.
    let start = Instant::now();
    store.close()?;
    let close = start.elapsed();
    let start = Instant::now();
    let store = peers::open(kind, &main_dir, budget)?;
    let open = start.elapsed();
    results.push(PhaseResult::new(
        kind,
        "reopen",
        &[("close_s", close.as_secs_f64()), ("open_s", open.as_secs_f64())],
    ));

    // 4. Settle, with one reader running "latest" beside it (after a warm-up, so that its
    // latencies are those of compaction, not of a cold start).
    let zipf = Zipf::new(config.workload.users, config.workload.zipf_s);
    let seed = config.workload.seed;
    let query = |user: u64, out: &mut Vec<Row>| store.latest(user, config.latest_n, out);
    let warm_up = || {
        let what = format!("{} warm-up", kind.name());
        run_queries(config, &zipf, mix64(seed ^ WARMUP_SEED_SALT), config.warmup_queries, &what, &query)
    };
    warm_up()?;
    let bytes_before = dir_bytes(&main_dir)?;
    let next_user = |rng: &mut Rng| user_of_rank(zipf.sample(rng));
    let (settle, during) = while_running(&next_user, mix64(seed ^ DURING_SEED_SALT), &query, || {
        let start = Instant::now();
        store.settle()?;
        Ok(start.elapsed())
    })?;
    let written = IoCounters::now().since(io_start).write_bytes;
    let on_disk = dir_bytes(&main_dir)?;
    let raw = config.raw_bytes(timed.events);
    let during = during.summary();
    results.push(PhaseResult::new(
        kind,
        "settle",
        &[
            ("elapsed_s", settle.as_secs_f64()),
            ("bytes_on_disk", on_disk as f64),
            ("bytes_per_event", ratio(on_disk as f64, timed.unique_events as f64)),
            ("disk_write_bytes", written as f64),
            ("write_amplification", ratio(written as f64, raw as f64)),
            ("bytes_before", bytes_before as f64),
            ("space_amplification", ratio(bytes_before as f64, on_disk as f64)),
            ("latest_during_queries", during.count as f64),
            ("latest_during_p50_us", during.p50_us),
            ("latest_during_p99_us", during.p99_us),
        ],
    ));
    let settle_peak = peaks.end();

    // 5. Latest, after a warm-up: the figure is a server's steady state, not the first
    // touch of each block after a restart (or of the tables the settle wrote), for every
    // engine alike.
    warm_up()?;
    let latest = run_queries(
        config,
        &zipf,
        mix64(seed ^ LATEST_SEED_SALT),
        config.latest_queries,
        &format!("{} latest", kind.name()),
        &query,
    )?;
    results.push(query_result(kind, "latest", &latest));
    series.latest_cdf = latest.latencies.cdf(40);

    // 6. Range: the last hour of simulated time.
    let t1 = end_of_data;
    let t0 =
        t1.saturating_sub(i64::try_from(config.range_secs).unwrap_or(i64::MAX).saturating_mul(1_000_000));
    let query = |user: u64, out: &mut Vec<Row>| store.range(user, t0, t1, out);
    let range = run_queries(
        config,
        &zipf,
        mix64(seed ^ RANGE_SEED_SALT),
        config.range_queries,
        &format!("{} range", kind.name()),
        &query,
    )?;
    results.push(query_result(kind, "range", &range));
    let query_peak = peaks.end();

    // 7. Mixed: the stream goes on where the ingest stopped.
    let mut mixed_peak = 0;
    if config.mixed_secs > 0.0 {
        results.push(mixed(kind, &*store, &mut workload, &zipf, config)?);
        mixed_peak = peaks.end();
    }
    store.close()?;

    // 8. Memory.
    results.push(PhaseResult::new(
        kind,
        "memory",
        &[
            ("peak_rss_bytes", peaks.overall() as f64),
            ("budget_bytes", budget.total_bytes() as f64),
            ("ingest_peak_rss_bytes", ingest_peak as f64),
            ("settle_peak_rss_bytes", settle_peak as f64),
            ("query_peak_rss_bytes", query_peak as f64),
            ("mixed_peak_rss_bytes", mixed_peak as f64),
        ],
    ));

    let settings = peers::settings(kind, budget).into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    Ok(EngineReport { engine: kind.name().to_string(), results, series, settings })
}

/// Runs `work` while one thread runs `query` on users drawn by `next_user` (from an RNG of
/// `seed`), as fast as it can, until the work is done; returns the work's result and the
/// latencies of the queries made meanwhile (the settle phase of `run` and `import`).
pub fn while_running<T: Send>(
    next_user: &(dyn Fn(&mut Rng) -> u64 + Sync),
    seed: u64,
    query: &(dyn Fn(u64, &mut Vec<Row>) -> Result<()> + Sync),
    work: impl FnOnce() -> Result<T> + Send,
) -> Result<(T, Latencies)> {
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| -> Result<Latencies> {
            let mut rng = Rng::new(seed);
            let mut latencies = Latencies::new();
            let mut out = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let user = next_user(&mut rng);
                out.clear();
                let begin = Instant::now();
                query(user, &mut out)?;
                latencies.record(begin.elapsed());
            }
            Ok(latencies)
        });
        let result = work();
        done.store(true, Ordering::Relaxed);
        let latencies = joined(reader.join());
        Ok((result?, latencies?))
    })
}

fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        0.0
    } else {
        a / b
    }
}

/// What a timed ingest measured.
struct TimedIngest {
    /// Events delivered, re-deliveries included.
    events: u64,
    /// Distinct events (delivered once or more).
    unique_events: u64,
    /// Time spent in write calls.
    elapsed: Duration,
    series: Vec<IngestSample>,
}

fn ingest_result(
    kind: EngineKind,
    phase: &str,
    config: &RunConfig,
    timed: &TimedIngest,
    written: u64,
) -> PhaseResult {
    let secs = timed.elapsed.as_secs_f64();
    let raw = config.raw_bytes(timed.events);
    PhaseResult::new(
        kind,
        phase,
        &[
            ("events", timed.events as f64),
            ("elapsed_s", secs),
            ("events_per_sec", ratio(timed.events as f64, secs)),
            ("mb_per_sec", ratio(raw as f64 / 1e6, secs)),
            ("disk_write_bytes", written as f64),
            ("write_amplification", ratio(written as f64, raw as f64)),
        ],
    )
}

/// Generates the next `events` events of `workload` into batches.
fn make_batches(workload: &mut Workload, events: u64, batch_events: usize) -> Vec<EventBatch> {
    let payload_len = workload.config().payload_bytes;
    let mut payload = Vec::with_capacity(payload_len);
    let mut batches = Vec::new();
    let mut left = events;
    while left > 0 {
        let n = batch_events.min(usize::try_from(left).unwrap_or(usize::MAX));
        let mut batch = EventBatch::with_capacity(n, payload_len);
        for _ in 0..n {
            let (user, ts) = workload.next_into(&mut payload);
            batch.push(user, ts, &payload);
        }
        batches.push(batch);
        left -= n as u64;
    }
    batches
}

fn progress(config: &RunConfig, len: u64, what: &str) -> ProgressBar {
    if config.quiet {
        return ProgressBar::hidden();
    }
    // indicatif's stderr target draws nothing when stderr is not a terminal.
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{msg:28} [{bar:40}] {human_pos}/{human_len} {per_sec} eta {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}

/// Writes `events` events of `workload` in batches, by `config.writer_threads` writers,
/// with `sync` or not, and times the write calls.
fn ingest(
    store: &dyn Store,
    workload: &mut Workload,
    config: &RunConfig,
    events: u64,
    sync: bool,
    what: &str,
) -> Result<TimedIngest> {
    let bar = progress(config, events, what);
    let mut dup_rng = Rng::new(mix64(config.workload.seed ^ DUP_SEED_SALT));
    let written = AtomicU64::new(0);
    let series = Mutex::new(Vec::new());
    let mut elapsed = Duration::ZERO;
    let mut delivered = 0u64;
    let mut left = events;
    while left > 0 {
        let part = left.min(PREGENERATED_EVENTS);
        let batches = make_batches(workload, part, config.batch_events);
        // Re-deliveries: a chosen batch arrives again right after the next one.
        let mut order: Vec<usize> = Vec::with_capacity(batches.len());
        for i in 0..batches.len() {
            order.push(i);
            if config.dup_fraction > 0.0 && i > 0 && dup_rng.next_f64() < config.dup_fraction {
                order.push(i - 1);
            }
        }
        let base = elapsed;
        let start = Instant::now();
        let threads = config.writer_threads.max(1);
        let failure: Mutex<Option<Error>> = Mutex::new(None);
        std::thread::scope(|scope| {
            for t in 0..threads {
                let (order, batches, written, series, failure, bar) =
                    (&order, &batches, &written, &series, &failure, &bar);
                scope.spawn(move || {
                    let mut window_start = Instant::now();
                    let mut window_events = written.load(Ordering::Relaxed);
                    for &i in order.iter().skip(t).step_by(threads) {
                        if failure.lock().is_some() {
                            return;
                        }
                        if let Err(e) = store.write(&batches[i], sync) {
                            *failure.lock() = Some(e);
                            return;
                        }
                        let n = batches[i].len() as u64;
                        let total = written.fetch_add(n, Ordering::Relaxed) + n;
                        bar.set_position(total);
                        // Thread 0 samples the throughput of all writers.
                        if t == 0 {
                            let now = Instant::now();
                            let window = now - window_start;
                            if window >= SERIES_WINDOW {
                                let events_now = total;
                                let t_secs = (base + (now - start)).as_secs_f64();
                                let rate = (events_now - window_events) as f64 / window.as_secs_f64();
                                series.lock().push(IngestSample { t_secs, events_per_sec: rate });
                                window_start = now;
                                window_events = events_now;
                            }
                        }
                    }
                });
            }
        });
        if let Some(e) = failure.into_inner() {
            return Err(e);
        }
        elapsed += start.elapsed();
        delivered += order.iter().map(|&i| batches[i].len() as u64).sum::<u64>();
        left -= part;
    }
    bar.finish_and_clear();
    Ok(TimedIngest { events: delivered, unique_events: events, elapsed, series: series.into_inner() })
}

/// A thread's outcome, a panic turned into an error.
fn joined<T>(outcome: std::thread::Result<Result<T>>) -> Result<T> {
    outcome.unwrap_or_else(|_| Err(Error::Thread("a benchmark thread panicked".into())))
}

/// What a query phase measured.
struct TimedQueries {
    latencies: Latencies,
    elapsed: Duration,
    returned: u64,
    /// Bytes the process read from storage meanwhile (not served by the page cache).
    disk_read_bytes: u64,
}

/// Runs `queries` queries for users drawn from `zipf` with `seed`, split over the reader
/// threads, each query timed.
fn run_queries(
    config: &RunConfig,
    zipf: &Zipf,
    seed: u64,
    queries: u64,
    what: &str,
    query: &(dyn Fn(u64, &mut Vec<Row>) -> Result<()> + Sync),
) -> Result<TimedQueries> {
    let bar = progress(config, queries, what);
    let threads = config.reader_threads.max(1) as u64;
    let io = IoCounters::now();
    let start = Instant::now();
    let outcomes: Vec<Result<(Latencies, u64)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let bar = &bar;
                scope.spawn(move || -> Result<(Latencies, u64)> {
                    let mut rng = Rng::new(mix64(seed ^ t));
                    let mut latencies = Latencies::new();
                    let mut out = Vec::with_capacity(config.latest_n);
                    let mut returned = 0u64;
                    let mine = queries / threads + u64::from(t < queries % threads);
                    for i in 0..mine {
                        let user = user_of_rank(zipf.sample(&mut rng));
                        out.clear();
                        let begin = Instant::now();
                        query(user, &mut out)?;
                        latencies.record(begin.elapsed());
                        returned += out.len() as u64;
                        if i % 256 == 255 {
                            bar.inc(256);
                        }
                    }
                    Ok((latencies, returned))
                })
            })
            .collect();
        handles.into_iter().map(|h| joined(h.join())).collect()
    });
    let elapsed = start.elapsed();
    bar.finish_and_clear();
    let mut latencies = Latencies::new();
    let mut returned = 0;
    for outcome in outcomes {
        let (l, r) = outcome?;
        latencies.merge(&l);
        returned += r;
    }
    let disk_read_bytes = IoCounters::now().since(io).read_bytes;
    Ok(TimedQueries { latencies, elapsed, returned, disk_read_bytes })
}

fn query_result(kind: EngineKind, phase: &str, timed: &TimedQueries) -> PhaseResult {
    let s = timed.latencies.summary();
    PhaseResult::new(
        kind,
        phase,
        &[
            ("queries", s.count as f64),
            ("elapsed_s", timed.elapsed.as_secs_f64()),
            ("queries_per_sec", ratio(s.count as f64, timed.elapsed.as_secs_f64())),
            ("events_returned", timed.returned as f64),
            ("mean_us", s.mean_us),
            ("p50_us", s.p50_us),
            ("p99_us", s.p99_us),
            ("p999_us", s.p999_us),
            ("max_us", s.max_us),
            ("disk_read_bytes", timed.disk_read_bytes as f64),
        ],
    )
}

/// Writers continue the stream while readers run "latest" queries, for `mixed_secs`.
/// A writer's rate counts its time in write calls (the generator runs between batches);
/// a reader's rate counts wall time.
fn mixed(
    kind: EngineKind,
    store: &dyn Store,
    workload: &mut Workload,
    zipf: &Zipf,
    config: &RunConfig,
) -> Result<PhaseResult> {
    let duration = Duration::from_secs_f64(config.mixed_secs);
    let stop = AtomicBool::new(false);
    let generator = Mutex::new(workload);
    let seed = mix64(config.workload.seed ^ MIXED_SEED_SALT);
    let bar = progress(config, duration.as_secs(), &format!("{} mixed (s)", kind.name()));
    let start = Instant::now();
    let (writers, readers) = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..config.writer_threads.max(1))
            .map(|_| {
                let (stop, generator) = (&stop, &generator);
                scope.spawn(move || -> Result<(u64, Duration)> {
                    let mut events = 0u64;
                    let mut busy = Duration::ZERO;
                    while !stop.load(Ordering::Relaxed) {
                        let batch = make_batches(
                            &mut generator.lock(),
                            config.batch_events as u64,
                            config.batch_events,
                        );
                        for batch in &batch {
                            let begin = Instant::now();
                            store.write(batch, false)?;
                            busy += begin.elapsed();
                            events += batch.len() as u64;
                        }
                    }
                    Ok((events, busy))
                })
            })
            .collect();
        let readers: Vec<_> = (0..config.reader_threads.max(1) as u64)
            .map(|t| {
                let stop = &stop;
                scope.spawn(move || -> Result<Latencies> {
                    let mut rng = Rng::new(mix64(seed ^ t));
                    let mut latencies = Latencies::new();
                    let mut out = Vec::with_capacity(config.latest_n);
                    while !stop.load(Ordering::Relaxed) {
                        let user = user_of_rank(zipf.sample(&mut rng));
                        out.clear();
                        let begin = Instant::now();
                        store.latest(user, config.latest_n, &mut out)?;
                        latencies.record(begin.elapsed());
                    }
                    Ok(latencies)
                })
            })
            .collect();
        while start.elapsed() < duration {
            std::thread::sleep(Duration::from_millis(50).min(duration.saturating_sub(start.elapsed())));
            bar.set_position(start.elapsed().as_secs());
        }
        stop.store(true, Ordering::Relaxed);
        let writers: Vec<Result<(u64, Duration)>> = writers.into_iter().map(|h| joined(h.join())).collect();
        let readers: Vec<Result<Latencies>> = readers.into_iter().map(|h| joined(h.join())).collect();
        (writers, readers)
    });
    let elapsed = start.elapsed();
    bar.finish_and_clear();
    let (mut events, mut busy) = (0u64, Duration::ZERO);
    for w in writers {
        let (e, b) = w?;
        events += e;
        busy += b;
    }
    let mut latencies = Latencies::new();
    for r in readers {
        latencies.merge(&r?);
    }
    // Writers run in parallel: their rate is events over the mean busy time per writer.
    let writer_secs = busy.as_secs_f64() / config.writer_threads.max(1) as f64;
    let s: LatencySummary = latencies.summary();
    Ok(PhaseResult::new(
        kind,
        "mixed",
        &[
            ("elapsed_s", elapsed.as_secs_f64()),
            ("writer_events", events as f64),
            ("writer_events_per_sec", ratio(events as f64, writer_secs)),
            ("reader_queries", s.count as f64),
            ("reader_queries_per_sec", ratio(s.count as f64, elapsed.as_secs_f64())),
            ("reader_mean_us", s.mean_us),
            ("reader_p50_us", s.p50_us),
            ("reader_p99_us", s.p99_us),
            ("reader_p999_us", s.p999_us),
            ("reader_max_us", s.max_us),
        ],
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    pub(crate) fn tiny_config() -> RunConfig {
        RunConfig {
            preset: "test".into(),
            workload: WorkloadConfig { users: 200, ..WorkloadConfig::default() },
            events: 3_000,
            sync_events: 500,
            batch_events: 100,
            dup_fraction: 0.1,
            writer_threads: 2,
            reader_threads: 2,
            latest_queries: 300,
            warmup_queries: 50,
            latest_n: 100,
            range_queries: 100,
            range_secs: 3600,
            mixed_secs: 0.3,
            memtable_mib: 1,
            memtables: 3,
            cache_mib: 4,
            quiet: true,
        }
    }

    #[test]
    fn a_run_reports_every_field_of_every_phase() {
        let dir = tempfile::tempdir().unwrap();
        let report = run_engine(EngineKind::Strata, dir.path(), &tiny_config()).unwrap();
        let phases: Vec<&str> = report.results.iter().map(|r| r.phase.as_str()).collect();
        assert_eq!(phases, SCHEMA.iter().map(|(p, _)| *p).collect::<Vec<_>>());
        for (result, (_, fields)) in report.results.iter().zip(SCHEMA) {
            let got: Vec<&str> = result.figures.keys().map(String::as_str).collect();
            let mut want: Vec<&str> = fields.to_vec();
            want.sort_unstable();
            assert_eq!(got, want, "phase {}", result.phase);
            assert!(result.figures.values().all(|v| v.is_finite() && *v >= 0.0), "{result:?}");
        }
        let get = |phase: &str, field: &str| {
            report.results.iter().find(|r| r.phase == phase).and_then(|r| r.get(field)).unwrap()
        };
        // Re-deliveries count as delivered events, never as stored ones.
        assert!(get("ingest", "events") > 3_000.0);
        assert!(get("latest", "events_returned") > 0.0);
        assert!(get("settle", "bytes_on_disk") > 0.0);
        assert!(get("mixed", "writer_events") > 0.0);
        assert!(!report.series.latest_cdf.is_empty());
        assert!(!report.settings.is_empty());
        // The durable ingest's database is gone; the main one stays.
        assert!(!dir.path().join("ingest-sync").exists());
        assert!(dir.path().join("db").exists());
    }

    #[test]
    fn bad_sizes_are_refused_by_name() {
        let mut config = tiny_config();
        config.batch_events = 0;
        assert!(matches!(config.validate(), Err(Error::Usage(m)) if m.contains("--batch")));
        let mut config = tiny_config();
        config.dup_fraction = 1.5;
        assert!(matches!(config.validate(), Err(Error::Usage(m)) if m.contains("--dup-fraction")));
        let mut config = tiny_config();
        config.memtables = 1;
        assert!(config.validate().is_err());
    }
}
