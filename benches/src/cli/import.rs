//! `strata-bench import`: a real interaction log (MovieLens `u.data` / RecBole `.inter`, or a
//! CSV) loaded into strata, then the standard workload's latest and range queries against it,
//! reported with the same figures and JSON phases as `run`:
//!
//! 1. `ingest`: the file read in order, in batches of `--batch` rows, WAL on, not fsynced.
//!    Only the write calls are timed: reading and parsing the file are not the engine.
//! 2. `reopen`: a clean close (which flushes), then an open.
//! 3. `settle`: `compact()`; bytes on disk, and write amplification over ingest and settle
//!    (raw bytes: per row, 16 bytes of key plus its payload).
//! 4. `latest`: "the newest `--latest-n` events of U", after an untimed warm-up (users
//!    drawn with another seed). U is the user of a row drawn uniformly at random, so that
//!    the queries follow the log's own popularity, as the standard workload's follow its Zipf.
//! 5. `range`: "U's events in the last `--range-secs` of the log", the window ending at the
//!    newest timestamp of the whole file (the standard workload's "last hour of simulated
//!    time"). The default window is 30 days, not an hour: a rating log is sparse (a user
//!    rates in a few sessions over months), and an hour would return nothing for most users.
//! 6. `memory`: peak resident memory. It includes the importer's own bookkeeping, which
//!    grows with the file: the set of keys given out (to make them unique, see
//!    `strata_bench::import`), and with `--verify` the model of every event.
//!
//! With `--verify`, every answer (warm-up included) is compared with an in-memory model of
//! the file; the first difference fails the run. Queries are timed one by one, and a
//! phase's `elapsed_s` is the sum of its query times: the checks are not counted.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use serde::Serialize;
use strata::{Db, Event, Options, WriteBatch, WriteOptions};
use strata_bench::import::{
    check_latest, check_range, CsvLayout, Format, LogReader, LogSummary, Model, TsUnit,
};
use strata_bench::measure::{dir_bytes, IoCounters, Latencies, PhasePeaks};
use strata_bench::runner::{while_running, PhaseResult, DURING_SEED_SALT, SCHEMA, SCHEMA_VERSION};
use strata_bench::workload::{mix64, Rng, WorkloadConfig};
use strata_bench::{Error, Result};

use super::{rate, thousands, WorkDir};

const WARMUP_SEED_SALT: u64 = 0x494d_5057_4152_4d01;
const LATEST_SEED_SALT: u64 = 0x494d_504c_4154_4501;
const RANGE_SEED_SALT: u64 = 0x494d_5052_414e_4701;
/// A batch is written early once it holds this many encoded bytes: 1,000 rows of large
/// payloads would pass the WAL's limit on one batch (128 MiB).
const MAX_BATCH_BYTES: usize = strata::wal::MAX_BATCH_BYTES / 2;

/// The layouts `--format` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum FormatArg {
    /// MovieLens `u.data` / RecBole `.inter`: tab-separated user, item, rating, timestamp in
    /// seconds (more columns allowed); a first line whose user is not a number is a header.
    Movielens,
    /// Delimited columns: see --user-col, --ts-col, --ts-unit, --delimiter, --header.
    Csv,
}

/// Units `--ts-unit` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum UnitArg {
    /// Seconds.
    S,
    /// Milliseconds.
    Ms,
    /// Microseconds.
    Us,
}

/// Options of `import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The log to load. Each row's fields other than the user and the timestamp are kept,
    /// joined by the delimiter, as the event's payload. Rows of one user in the same
    /// second (or microsecond) keep file order, stored 1 µs apart.
    file: PathBuf,
    /// Layout of FILE.
    #[arg(long, value_enum)]
    format: FormatArg,
    /// csv: 0-based column of the user id, an unsigned integer [default: 0].
    #[arg(long)]
    user_col: Option<usize>,
    /// csv: 0-based column of the timestamp, an integer or a float [default: 2, as in
    /// `user,item,timestamp`; MovieLens' ratings.csv needs 3].
    #[arg(long)]
    ts_col: Option<usize>,
    /// csv: unit of the timestamp [default: s].
    #[arg(long, value_enum)]
    ts_unit: Option<UnitArg>,
    /// csv: the field delimiter, one ASCII character, or `tab` / `\t` [default: ,]. Lines
    /// are split on it and nothing else: quoted fields are not supported.
    #[arg(long, value_parser = parse_delimiter)]
    delimiter: Option<u8>,
    /// csv: the first line is a header, skipped.
    #[arg(long)]
    header: bool,
    /// Directory of the database (created if missing; must be empty). Default: a temporary one.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Rows per write batch.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
    batch: u64,
    /// Timed "latest" queries.
    #[arg(long, default_value_t = 10_000)]
    latest_queries: u64,
    /// Untimed "latest" queries before them (users drawn with another seed), to warm the
    /// block cache.
    #[arg(long, default_value_t = 10_000)]
    warmup_queries: u64,
    /// Events per "latest" query.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    latest_n: u64,
    /// Timed "range" queries.
    #[arg(long, default_value_t = 10_000)]
    range_queries: u64,
    /// Width of a "range" query in seconds, ending at the log's newest timestamp (30 days by
    /// default: a rating log is sparse).
    #[arg(long, default_value_t = 30 * 86_400)]
    range_secs: u64,
    /// Memtable size in MiB.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    memtable_mib: u64,
    /// Block cache budget in MiB.
    #[arg(long, default_value_t = 256)]
    cache_mib: u64,
    /// Seed of the query users.
    #[arg(long, default_value_t = WorkloadConfig::default().seed)]
    seed: u64,
    /// Check every answer against an in-memory model of the file (exact users, timestamps,
    /// payloads and order); the first difference fails the run.
    #[arg(long)]
    verify: bool,
    /// Write the results as JSON to this file (the phases of `run`'s schema).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Self-test of the verifier (needs --verify): the first timed "latest" answer loses its
    /// last event before it is checked, so the run must fail with a verification error. The
    /// integration tests use it to prove that --verify catches a wrong answer.
    #[arg(long, hide = true)]
    inject_wrong_answer: bool,
}

fn parse_delimiter(text: &str) -> std::result::Result<u8, String> {
    match text {
        "tab" | "\\t" | "\t" => Ok(b'\t'),
        _ => match text.as_bytes() {
            [b] if b.is_ascii() && *b != b'\n' && *b != b'\r' => Ok(*b),
            _ => Err(format!("{text:?} is not one ASCII character (or `tab`)")),
        },
    }
}

impl ImportArgs {
    fn format(&self) -> Result<Format> {
        match self.format {
            FormatArg::Movielens => {
                let csv_only = [
                    ("--user-col", self.user_col.is_some()),
                    ("--ts-col", self.ts_col.is_some()),
                    ("--ts-unit", self.ts_unit.is_some()),
                    ("--delimiter", self.delimiter.is_some()),
                    ("--header", self.header),
                ];
                if let Some((flag, _)) = csv_only.iter().find(|(_, given)| *given) {
                    return Err(Error::Usage(format!(
                        "{flag} is for --format csv; the movielens layout is fixed"
                    )));
                }
                Ok(Format::Movielens)
            }
            FormatArg::Csv => Ok(Format::Csv(CsvLayout {
                user_col: self.user_col.unwrap_or(0),
                ts_col: self.ts_col.unwrap_or(2),
                ts_unit: match self.ts_unit.unwrap_or(UnitArg::S) {
                    UnitArg::S => TsUnit::Seconds,
                    UnitArg::Ms => TsUnit::Millis,
                    UnitArg::Us => TsUnit::Micros,
                },
                delimiter: self.delimiter.unwrap_or(b','),
                header: self.header,
            })),
        }
    }
}

/// The results file: `run`'s phases, for one engine, with the source it was fed.
#[derive(Debug, Serialize)]
struct ImportReport<'a> {
    schema_version: u32,
    command: &'static str,
    source: String,
    format: &'static str,
    rows: u64,
    users: u64,
    moved_rows: u64,
    results: &'a [PhaseResult],
}

/// Runs `import`.
pub fn run(args: &ImportArgs) -> Result<()> {
    let format = args.format()?;
    if args.inject_wrong_answer && !args.verify {
        return Err(Error::Usage("--inject-wrong-answer tests the verifier: it needs --verify".into()));
    }
    let latest_n = usize::try_from(args.latest_n).unwrap_or(usize::MAX);
    let mib = |v: u64| usize::try_from(v).ok().and_then(|v| v.checked_mul(1 << 20)).unwrap_or(usize::MAX);
    let options = Options {
        memtable_bytes: mib(args.memtable_mib),
        block_cache_bytes: mib(args.cache_mib),
        ..Options::default()
    };
    let budget_bytes = options
        .memtable_bytes
        .saturating_mul(1 + options.max_immutable_memtables)
        .saturating_add(options.block_cache_bytes);

    let work = WorkDir::new(args.dir.as_deref())?;
    let path = work.path().join("db");
    let mut results = Vec::new();
    let mut model = args.verify.then(Model::new);
    let mut peaks = PhasePeaks::default();
    peaks.end(); // the stretches start now, not at the process's start

    // 1. Ingest.
    let io_start = IoCounters::now();
    let db = Db::open(&path, options.clone())?;
    let reader = LogReader::open(&args.file, format.clone())?;
    let (summary, ingest) = ingest(&db, reader, args.batch, model.as_mut())?;
    let ingest_written = IoCounters::now().since(io_start).write_bytes;
    let ingest_peak = peaks.end();
    if summary.rows == 0 {
        return Err(Error::Usage(format!("{} holds no rows", args.file.display())));
    }
    let secs = ingest.as_secs_f64();
    let raw = summary.raw_bytes as f64;
    results.push(phase(
        "ingest",
        &[
            ("events", summary.rows as f64),
            ("elapsed_s", secs),
            ("events_per_sec", ratio(summary.rows as f64, secs)),
            ("mb_per_sec", ratio(raw / 1e6, secs)),
            ("disk_write_bytes", ingest_written as f64),
            ("write_amplification", ratio(ingest_written as f64, raw)),
        ],
    ));

    // 2. Close and reopen.
    let start = Instant::now();
    db.close()?;
    let close = start.elapsed();
    drop(db);
    let start = Instant::now();
    let db = Db::open(&path, options)?;
    let open = start.elapsed();
    results.push(phase("reopen", &[("close_s", close.as_secs_f64()), ("open_s", open.as_secs_f64())]));

    // 3. Settle, with one reader running "latest" beside it after a warm-up (as in `run`).
    let mut queries = Queries { db: &db, summary: &summary, model: model.as_ref(), checked: 0 };
    queries.latest(mix64(args.seed ^ WARMUP_SEED_SALT), args.warmup_queries, latest_n, false)?;
    let bytes_before = dir_bytes(&path)?;
    let next_user = |rng: &mut Rng| summary.users.pick(rng).unwrap_or(0);
    let query = |user: u64, out: &mut Vec<Event>| -> Result<()> {
        out.extend(db.latest(user, latest_n)?);
        Ok(())
    };
    let (settle, during) = while_running(&next_user, mix64(args.seed ^ DURING_SEED_SALT), &query, || {
        let start = Instant::now();
        db.compact()?;
        Ok(start.elapsed())
    })?;
    let during = during.summary();
    let written = IoCounters::now().since(io_start).write_bytes;
    let on_disk = dir_bytes(&path)?;
    results.push(phase(
        "settle",
        &[
            ("elapsed_s", settle.as_secs_f64()),
            ("bytes_on_disk", on_disk as f64),
            ("bytes_per_event", ratio(on_disk as f64, summary.rows as f64)),
            ("disk_write_bytes", written as f64),
            ("write_amplification", ratio(written as f64, raw)),
            ("bytes_before", bytes_before as f64),
            ("space_amplification", ratio(bytes_before as f64, on_disk as f64)),
            ("latest_during_queries", during.count as f64),
            ("latest_during_p50_us", during.p50_us),
            ("latest_during_p99_us", during.p99_us),
        ],
    ));

    let settle_peak = peaks.end();

    // 4. Latest, after a warm-up: the figure is a server's steady state, not the first
    // touch of each block after a restart or a settle (as in `run`).
    queries.latest(mix64(args.seed ^ WARMUP_SEED_SALT), args.warmup_queries, latest_n, false)?;
    let latest = queries.latest(
        mix64(args.seed ^ LATEST_SEED_SALT),
        args.latest_queries,
        latest_n,
        args.inject_wrong_answer,
    )?;
    results.push(latest.result("latest"));

    // 5. Range: the last `range_secs` of the log.
    let t1 = summary.newest_ts;
    let width = i64::try_from(args.range_secs).unwrap_or(i64::MAX).saturating_mul(1_000_000);
    let t0 = t1.saturating_sub(width);
    let range = queries.range(mix64(args.seed ^ RANGE_SEED_SALT), args.range_queries, t0, t1)?;
    results.push(range.result("range"));
    let query_peak = peaks.end();
    let checked = queries.checked;
    db.close()?;
    drop(db);

    // 6. Memory.
    results.push(phase(
        "memory",
        &[
            ("peak_rss_bytes", peaks.overall() as f64),
            ("budget_bytes", budget_bytes as f64),
            ("ingest_peak_rss_bytes", ingest_peak as f64),
            ("settle_peak_rss_bytes", settle_peak as f64),
            ("query_peak_rss_bytes", query_peak as f64),
            // `import` has no mixed phase.
            ("mixed_peak_rss_bytes", 0.0),
        ],
    ));

    print_report(args, &format, &summary, &results);
    if args.verify {
        println!("verify: {} answers checked, 0 mismatches", thousands(checked));
    }
    if let Some(json) = &args.json {
        let report = ImportReport {
            schema_version: SCHEMA_VERSION,
            command: "import",
            source: args.file.display().to_string(),
            format: format.name(),
            rows: summary.rows,
            users: summary.users.len() as u64,
            moved_rows: summary.moved_rows,
            results: &results,
        };
        write_json(json, &report)?;
    }
    Ok(())
}

/// Reads every row of `reader` into `db` in batches of `batch` rows (and into `model`), and
/// returns the file's tally and the time spent in write calls.
fn ingest<R: std::io::BufRead>(
    db: &Db,
    mut reader: LogReader<R>,
    batch: u64,
    mut model: Option<&mut Model>,
) -> Result<(LogSummary, Duration)> {
    let mut elapsed = Duration::ZERO;
    let mut pending = WriteBatch::new();
    let mut rows_pending = 0u64;
    let mut write = |pending: &mut WriteBatch| -> Result<()> {
        let start = Instant::now();
        db.write(pending, &WriteOptions { sync: false })?;
        elapsed += start.elapsed();
        *pending = WriteBatch::new();
        Ok(())
    };
    while let Some(record) = reader.next_record()? {
        if rows_pending > 0 && pending.encoded_len() + record.payload.len() + 64 > MAX_BATCH_BYTES {
            write(&mut pending)?;
            rows_pending = 0;
        }
        pending.put(record.user, record.ts, &record.payload);
        rows_pending += 1;
        if let Some(model) = model.as_deref_mut() {
            model.insert(record.user, record.ts, record.payload);
        }
        if rows_pending == batch {
            write(&mut pending)?;
            rows_pending = 0;
        }
    }
    if rows_pending > 0 {
        write(&mut pending)?;
    }
    Ok((reader.finish(), elapsed))
}

/// The query phases' shared state.
struct Queries<'a> {
    db: &'a Db,
    summary: &'a LogSummary,
    model: Option<&'a Model>,
    /// Answers compared with the model so far.
    checked: u64,
}

/// What a query phase measured.
struct Timed {
    latencies: Latencies,
    /// Sum of the query times.
    elapsed: Duration,
    returned: u64,
    /// The process's storage reads when the phase began.
    io: IoCounters,
}

impl Timed {
    fn new() -> Timed {
        Timed { latencies: Latencies::new(), elapsed: Duration::ZERO, returned: 0, io: IoCounters::now() }
    }

    fn record(&mut self, took: Duration, returned: usize) {
        self.latencies.record(took);
        self.elapsed += took;
        self.returned += returned as u64;
    }

    fn result(&self, name: &str) -> PhaseResult {
        let s = self.latencies.summary();
        let secs = self.elapsed.as_secs_f64();
        phase(
            name,
            &[
                ("queries", s.count as f64),
                ("elapsed_s", secs),
                ("queries_per_sec", ratio(s.count as f64, secs)),
                ("events_returned", self.returned as f64),
                ("mean_us", s.mean_us),
                ("p50_us", s.p50_us),
                ("p99_us", s.p99_us),
                ("p999_us", s.p999_us),
                ("max_us", s.max_us),
                ("disk_read_bytes", IoCounters::now().since(self.io).read_bytes as f64),
            ],
        )
    }
}

impl Queries<'_> {
    fn user(&self, rng: &mut Rng) -> Result<u64> {
        self.summary.users.pick(rng).ok_or_else(|| Error::Usage("the log holds no rows to query".into()))
    }

    /// `queries` "latest `n`" queries of users drawn with `seed`; with `corrupt_first`, the
    /// first answer loses its last event before the check (the verifier's self-test).
    fn latest(&mut self, seed: u64, queries: u64, n: usize, corrupt_first: bool) -> Result<Timed> {
        let mut rng = Rng::new(seed);
        let mut timed = Timed::new();
        for i in 0..queries {
            let user = self.user(&mut rng)?;
            let start = Instant::now();
            let mut answer = self.db.latest(user, n)?;
            timed.record(start.elapsed(), answer.len());
            if corrupt_first && i == 0 {
                answer.pop();
            }
            if let Some(model) = self.model {
                check_latest(model, user, n, &answer)?;
                self.checked += 1;
            }
        }
        Ok(timed)
    }

    /// `queries` range queries over `[t0, t1]` of users drawn with `seed`.
    fn range(&mut self, seed: u64, queries: u64, t0: i64, t1: i64) -> Result<Timed> {
        let mut rng = Rng::new(seed);
        let mut timed = Timed::new();
        for _ in 0..queries {
            let user = self.user(&mut rng)?;
            let start = Instant::now();
            // The answer is streamed; reading it to the end is part of the query.
            let answer = self.db.range(user, t0..=t1)?.collect::<strata::Result<Vec<Event>>>()?;
            timed.record(start.elapsed(), answer.len());
            if let Some(model) = self.model {
                check_range(model, user, t0, t1, &answer)?;
                self.checked += 1;
            }
        }
        Ok(timed)
    }
}

fn phase(name: &str, figures: &[(&str, f64)]) -> PhaseResult {
    PhaseResult {
        engine: "strata".to_string(),
        phase: name.to_string(),
        figures: figures.iter().map(|&(k, v)| (k.to_string(), v)).collect(),
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        0.0
    } else {
        a / b
    }
}

/// Prints the figures as a two-column table, phase by phase, each phase's figures in the
/// order of `run`'s schema.
fn print_report(args: &ImportArgs, format: &Format, summary: &LogSummary, results: &[PhaseResult]) {
    println!(
        "strata-bench import: {} ({}): {} rows of {} users",
        args.file.display(),
        format.name(),
        thousands(summary.rows),
        thousands(summary.users.len() as u64),
    );
    println!(
        "{} rows found their (user, ts) taken and were stored at the next free microsecond",
        thousands(summary.moved_rows)
    );
    println!("{:<36} {:>18}", "figure", "value");
    for result in results {
        let order: &[&str] = SCHEMA.iter().find(|(phase, _)| *phase == result.phase).map_or(&[], |(_, f)| f);
        let listed = order.iter().copied().filter(|name| result.figures.contains_key(*name));
        let others = result.figures.keys().map(String::as_str).filter(|name| !order.contains(name));
        for name in listed.chain(others) {
            let value = result.figures.get(name).copied().unwrap_or_default();
            println!("{:<36} {:>18}", format!("{}.{name}", result.phase), show_value(name, value));
        }
    }
}

/// A figure for a human: counts and rates whole with separators, the rest with decimals.
fn show_value(name: &str, value: f64) -> String {
    let count = ["events", "queries", "events_returned"].contains(&name);
    let rate_of_things = name.ends_with("_per_sec") && name != "mb_per_sec";
    if count || rate_of_things || name.ends_with("_bytes") || name == "bytes_on_disk" {
        rate(value)
    } else {
        format!("{value:.3}")
    }
}

fn write_json(path: &Path, report: &ImportReport<'_>) -> Result<()> {
    let text = serde_json::to_string_pretty(report)
        .map_err(|source| Error::Json { what: "import results".into(), source })?;
    std::fs::write(path, text + "\n").map_err(|e| Error::io("write", path, e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn delimiters_parse() {
        assert_eq!(parse_delimiter(","), Ok(b','));
        assert_eq!(parse_delimiter("tab"), Ok(b'\t'));
        assert_eq!(parse_delimiter("\\t"), Ok(b'\t'));
        assert_eq!(parse_delimiter(";"), Ok(b';'));
        assert!(parse_delimiter("::").is_err());
        assert!(parse_delimiter("é").is_err());
        assert!(parse_delimiter("").is_err());
    }

    #[test]
    fn values_print_for_humans() {
        assert_eq!(show_value("events", 1234567.0), "1,234,567");
        assert_eq!(show_value("events_per_sec", 999.6), "1,000");
        assert_eq!(show_value("mb_per_sec", 1.23456), "1.235");
        assert_eq!(show_value("budget_bytes", 2048.0), "2,048");
        assert_eq!(show_value("p99_us", 3.0), "3.000");
    }
}
