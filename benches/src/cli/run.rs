//! `strata-bench run`: the standard workload against strata and its peers, side by side.
//!
//! The parent process measures the hardware limits, then runs each engine in a child
//! process of its own (`strata-bench run-child`, hidden) in a fresh directory, so that each
//! engine's peak memory and disk writes are its own. A child runs every phase
//! ([`strata_bench::runner`]) and prints its report as one JSON line; the parent prints the
//! settings that differ, the side-by-side table with strata's ratio to each peer, and writes
//! the JSON results and the charts.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
use strata_bench::hw::{measure_limits, HardwareLimits};
use strata_bench::peers::EngineKind;
use strata_bench::runner::{run_engine, EngineReport, EngineSeries, PhaseResult, RunConfig, SCHEMA_VERSION};
use strata_bench::workload::WorkloadConfig;
use strata_bench::{plots, Error, Result};

use super::{thousands, WorkDir};

/// The sizes of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Preset {
    /// 2,000,000 events (about 17 hours of simulated time).
    Quick,
    /// 20,000,000 events (about 7 days).
    Standard,
}

impl Preset {
    fn name(self) -> &'static str {
        match self {
            Preset::Quick => "quick",
            Preset::Standard => "standard",
        }
    }

    fn events(self) -> u64 {
        match self {
            Preset::Quick => 2_000_000,
            Preset::Standard => 20_000_000,
        }
    }
}

/// Options of `run`. Every knob of the workload has a flag; the defaults are the standard
/// workload of /work/shared/workload.md.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Sizes: quick (2M events) or standard (20M events).
    #[arg(long, value_enum, default_value_t = Preset::Quick)]
    preset: Preset,
    /// Engines to run, comma-separated: strata, rocksdb, fjall. Default: every engine this
    /// binary was built with (peers need `--features rocksdb,fjall`).
    #[arg(long, value_delimiter = ',')]
    engines: Vec<String>,
    /// Working directory (created if missing; must be empty); each engine gets a
    /// subdirectory, kept after the run. Default: a temporary directory, removed.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Write the results as JSON (schema in docs/benchmarking.md).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write SVG charts into this directory: ingest throughput over time, latest CDF.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Workload seed.
    #[arg(long, default_value_t = WorkloadConfig::default().seed)]
    seed: u64,
    /// No progress bars (they are also off when stderr is not a terminal).
    #[arg(long)]
    quiet: bool,

    /// Events of the ingest phase (default: the preset's).
    #[arg(long)]
    events: Option<u64>,
    /// Events of the fsynced ingest phase (default: the same as --events).
    #[arg(long)]
    sync_events: Option<u64>,
    /// Events per batch.
    #[arg(long, default_value_t = 1_000)]
    batch: usize,
    /// Distinct users.
    #[arg(long, default_value_t = WorkloadConfig::default().users)]
    users: u64,
    /// Zipf exponent of user popularity.
    #[arg(long, default_value_t = WorkloadConfig::default().zipf_s)]
    zipf_s: f64,
    /// Fraction of events up to --late-max-secs behind the clock (stream lag).
    #[arg(long, default_value_t = WorkloadConfig::default().late_short_fraction)]
    late_fraction: f64,
    /// Largest lag of a late event, seconds.
    #[arg(long, default_value_t = 60.0)]
    late_max_secs: f64,
    /// Fraction of events up to --backfill-max-hours behind the clock (replays, backfills).
    #[arg(long, default_value_t = WorkloadConfig::default().late_long_fraction)]
    backfill_fraction: f64,
    /// Largest lag of a backfilled event, hours.
    #[arg(long, default_value_t = 48.0)]
    backfill_max_hours: f64,
    /// Payload bytes per event.
    #[arg(long, default_value_t = WorkloadConfig::default().payload_bytes)]
    payload_bytes: usize,
    /// Fraction of batches delivered twice (at-least-once streams).
    #[arg(long, default_value_t = 0.0)]
    dup_fraction: f64,
    /// Writer threads (ingest and mixed phases).
    #[arg(long, default_value_t = 1)]
    writer_threads: usize,
    /// Reader threads (query and mixed phases).
    #[arg(long, default_value_t = 1)]
    reader_threads: usize,
    /// Timed "latest" queries.
    #[arg(long, default_value_t = 200_000)]
    latest_queries: u64,
    /// Untimed warm-up queries before them.
    #[arg(long, default_value_t = 50_000)]
    warmup_queries: u64,
    /// Events per "latest" query.
    #[arg(long, default_value_t = 100)]
    latest_n: usize,
    /// Timed "range" queries.
    #[arg(long, default_value_t = 50_000)]
    range_queries: u64,
    /// Width of a "range" query, seconds of simulated time (ending at the newest event).
    #[arg(long, default_value_t = 3_600)]
    range_secs: u64,
    /// Length of the mixed phase, seconds (0 skips it).
    #[arg(long, default_value_t = 30.0)]
    mixed_secs: f64,
    /// Memtable (write buffer) size, MiB, for every engine.
    #[arg(long, default_value_t = 64)]
    memtable_mib: usize,
    /// Memtables held at most: the mutable one plus those awaiting flush.
    #[arg(long, default_value_t = 3)]
    memtables: usize,
    /// Block cache, MiB, for every engine.
    #[arg(long, default_value_t = 256)]
    cache_mib: usize,
}

/// Options of the hidden `run-child` subcommand: one engine's phases, reported as JSON.
#[derive(Debug, Args)]
pub struct ChildArgs {
    /// The engine.
    #[arg(long)]
    engine: String,
    /// Its empty working directory.
    #[arg(long)]
    dir: PathBuf,
    /// The run configuration, as JSON.
    #[arg(long)]
    config: String,
}

fn secs_to_us(secs: f64) -> Result<i64> {
    let us = (secs * 1e6).round();
    if !(us.is_finite() && (0.0..9.2e18).contains(&us)) {
        return Err(Error::Usage(format!("a lag of {secs} s is out of range")));
    }
    // Checked to be within i64 just above.
    #[allow(clippy::cast_possible_truncation)]
    Ok(us as i64)
}

impl RunArgs {
    fn config(&self) -> Result<RunConfig> {
        let events = self.events.unwrap_or(self.preset.events());
        let preset = if self.events.is_some() { "custom" } else { self.preset.name() };
        let config = RunConfig {
            preset: preset.to_string(),
            workload: WorkloadConfig {
                users: self.users,
                zipf_s: self.zipf_s,
                late_short_fraction: self.late_fraction,
                late_short_max_us: secs_to_us(self.late_max_secs)?,
                late_long_fraction: self.backfill_fraction,
                late_long_max_us: secs_to_us(self.backfill_max_hours * 3600.0)?,
                seed: self.seed,
                payload_bytes: self.payload_bytes,
                ..WorkloadConfig::default()
            },
            events,
            sync_events: self.sync_events.unwrap_or(events),
            batch_events: self.batch,
            dup_fraction: self.dup_fraction,
            writer_threads: self.writer_threads,
            reader_threads: self.reader_threads,
            latest_queries: self.latest_queries,
            warmup_queries: self.warmup_queries,
            latest_n: self.latest_n,
            range_queries: self.range_queries,
            range_secs: self.range_secs,
            mixed_secs: self.mixed_secs,
            memtable_mib: self.memtable_mib,
            memtables: self.memtables,
            cache_mib: self.cache_mib,
            quiet: self.quiet,
        };
        config.validate()?;
        Ok(config)
    }

    fn engines(&self) -> Result<Vec<EngineKind>> {
        if self.engines.is_empty() {
            return Ok(EngineKind::compiled_engines());
        }
        let mut engines = Vec::new();
        for name in &self.engines {
            let kind = EngineKind::parse(name)?;
            if !kind.compiled() {
                return Err(strata_bench::peers::not_compiled(kind));
            }
            if !engines.contains(&kind) {
                engines.push(kind);
            }
        }
        Ok(engines)
    }
}

/// The machine a run was measured on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// CPU model, from /proc/cpuinfo.
    pub cpu: String,
    /// Logical CPUs available to this process.
    pub cores: usize,
    /// Total memory, bytes (/proc/meminfo).
    pub memory_bytes: u64,
    /// Kernel release.
    pub kernel: String,
}

impl Machine {
    fn probe() -> Machine {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let cpu = read("/proc/cpuinfo")
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name").and_then(|r| r.split(':').nth(1)).map(|s| s.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let memory_bytes = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024);
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            memory_bytes,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        }
    }
}

/// The results file of `run --json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunFile {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// "run".
    pub command: String,
    /// The machine.
    pub machine: Machine,
    /// The hardware limits measured in the same run.
    pub hardware: HardwareLimits,
    /// The configuration every engine ran.
    pub config: RunConfig,
    /// Each engine's settings, as (setting, value).
    pub settings: BTreeMap<String, Vec<(String, String)>>,
    /// One object per engine per phase.
    pub results: Vec<PhaseResult>,
    /// Chart data, per engine.
    pub series: Vec<EngineSeries>,
}

/// Runs `run`.
pub fn run(args: &RunArgs) -> Result<()> {
    let config = args.config()?;
    let engines = args.engines()?;
    let work = WorkDir::new(args.dir.as_deref())?;
    let machine = Machine::probe();

    let (seq_mib, fsyncs) =
        if config.events >= Preset::Standard.events() { (512, 1_000) } else { (128, 200) };
    eprintln!("measuring the hardware limits in {} ...", work.path().display());
    let hardware = measure_limits(work.path(), seq_mib, fsyncs)?;

    let mut reports = Vec::new();
    for &kind in &engines {
        let dir = work.path().join(kind.name());
        eprintln!(
            "running {} ({} events, preset {}) in {} ...",
            kind.name(),
            thousands(config.events),
            config.preset,
            dir.display()
        );
        reports.push(run_child(kind, &dir, &config)?);
        if matches!(work, WorkDir::Temp(_)) {
            std::fs::remove_dir_all(&dir).map_err(|e| Error::io("remove", &dir, e))?;
        }
    }

    let file = RunFile {
        schema_version: SCHEMA_VERSION,
        command: "run".into(),
        machine,
        hardware,
        config,
        settings: reports.iter().map(|r| (r.engine.clone(), r.settings.clone())).collect(),
        results: reports.iter().flat_map(|r| r.results.iter().cloned()).collect(),
        series: reports.iter().map(|r| r.series.clone()).collect(),
    };
    let mut out = std::io::stdout().lock();
    print_report(&mut out, &file).map_err(stdout_err)?;
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&file)
            .map_err(|source| Error::Json { what: "results".into(), source })?;
        std::fs::write(path, text + "\n").map_err(|e| Error::io("write", path, e))?;
        writeln!(out, "results written to {}", path.display()).map_err(stdout_err)?;
    }
    if let Some(dir) = &args.plot {
        for path in plots::write_charts(dir, &file.series)? {
            writeln!(out, "chart written to {}", path.display()).map_err(stdout_err)?;
        }
    }
    Ok(())
}

fn stdout_err(e: std::io::Error) -> Error {
    Error::io("write", Path::new("<stdout>"), e)
}

/// Runs one engine in a child process and returns its report.
fn run_child(kind: EngineKind, dir: &Path, config: &RunConfig) -> Result<EngineReport> {
    let child_err = |message: String| Error::Child { engine: kind.name().to_string(), message };
    let exe = std::env::current_exe().map_err(|e| child_err(format!("cannot find this executable: {e}")))?;
    let config_json =
        serde_json::to_string(config).map_err(|source| Error::Json { what: "run config".into(), source })?;
    let mut child = Command::new(exe)
        .args(["run-child", "--engine", kind.name(), "--config", &config_json])
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| child_err(format!("spawn: {e}")))?;
    // The report is the child's last stdout line; anything before it is passed through.
    let mut last = String::new();
    if let Some(stdout) = child.stdout.take() {
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.map_err(|e| child_err(format!("read its output: {e}")))?;
            if !last.is_empty() {
                println!("{last}");
            }
            last = line;
        }
    }
    let status = child.wait().map_err(|e| child_err(format!("wait: {e}")))?;
    if !status.success() {
        return Err(child_err(format!("exited with {status}; its error is printed above")));
    }
    serde_json::from_str(&last)
        .map_err(|source| Error::Json { what: format!("report of the {} child", kind.name()), source })
}

/// Runs `run-child`: one engine's phases, its report printed as one JSON line.
pub fn run_child_command(args: &ChildArgs) -> Result<()> {
    let kind = EngineKind::parse(&args.engine)?;
    if !kind.compiled() {
        return Err(strata_bench::peers::not_compiled(kind));
    }
    let config: RunConfig = serde_json::from_str(&args.config)
        .map_err(|source| Error::Json { what: "run config".into(), source })?;
    std::fs::create_dir_all(&args.dir).map_err(|e| Error::io("create dir", &args.dir, e))?;
    let report = run_engine(kind, &args.dir, &config)?;
    let line =
        serde_json::to_string(&report).map_err(|source| Error::Json { what: "report".into(), source })?;
    println!("{line}");
    Ok(())
}

/// Whether a larger value of a figure is better (for the reader of the ratio column).
#[derive(Clone, Copy)]
enum Better {
    Higher,
    Lower,
}

/// One row of the table: a label, where the figure lives, how to show it.
struct Row {
    label: &'static str,
    phase: &'static str,
    field: &'static str,
    scale: f64,
    decimals: usize,
    better: Better,
}

const fn row(
    label: &'static str,
    phase: &'static str,
    field: &'static str,
    scale: f64,
    decimals: usize,
    better: Better,
) -> Row {
    Row { label, phase, field, scale, decimals, better }
}

const ROWS: &[Row] = &[
    row("ingest: events/s", "ingest", "events_per_sec", 1.0, 0, Better::Higher),
    row("ingest: MB/s (raw)", "ingest", "mb_per_sec", 1.0, 1, Better::Higher),
    row("ingest: write amplification", "ingest", "write_amplification", 1.0, 2, Better::Lower),
    row("fsynced ingest: events/s", "ingest_sync", "events_per_sec", 1.0, 0, Better::Higher),
    row("fsynced ingest: MB/s (raw)", "ingest_sync", "mb_per_sec", 1.0, 1, Better::Higher),
    row("close: ms", "reopen", "close_s", 1e3, 1, Better::Lower),
    row("open: ms", "reopen", "open_s", 1e3, 1, Better::Lower),
    row("settle: s", "settle", "elapsed_s", 1.0, 2, Better::Lower),
    row("settle: MB on disk", "settle", "bytes_on_disk", 1e-6, 1, Better::Lower),
    row("settle: bytes/event", "settle", "bytes_per_event", 1.0, 2, Better::Lower),
    row("settle: write amp (ingest+settle)", "settle", "write_amplification", 1.0, 2, Better::Lower),
    row("settle: space amp before settle", "settle", "space_amplification", 1.0, 2, Better::Lower),
    row("settle: latest p99 µs, compacting", "settle", "latest_during_p99_us", 1.0, 0, Better::Lower),
    row("latest-100: queries/s", "latest", "queries_per_sec", 1.0, 0, Better::Higher),
    row("latest-100: p50 us", "latest", "p50_us", 1.0, 1, Better::Lower),
    row("latest-100: p99 us", "latest", "p99_us", 1.0, 1, Better::Lower),
    row("latest-100: p99.9 us", "latest", "p999_us", 1.0, 1, Better::Lower),
    row("latest-100: max us", "latest", "max_us", 1.0, 1, Better::Lower),
    row("latest-100: MB read from disk", "latest", "disk_read_bytes", 1e-6, 1, Better::Lower),
    row("range 1h: queries/s", "range", "queries_per_sec", 1.0, 0, Better::Higher),
    row("range 1h: p50 us", "range", "p50_us", 1.0, 1, Better::Lower),
    row("range 1h: p99 us", "range", "p99_us", 1.0, 1, Better::Lower),
    row("range 1h: p99.9 us", "range", "p999_us", 1.0, 1, Better::Lower),
    row("range 1h: max us", "range", "max_us", 1.0, 1, Better::Lower),
    row("mixed: writer events/s", "mixed", "writer_events_per_sec", 1.0, 0, Better::Higher),
    row("mixed: reader queries/s", "mixed", "reader_queries_per_sec", 1.0, 0, Better::Higher),
    row("mixed: reader p50 us", "mixed", "reader_p50_us", 1.0, 1, Better::Lower),
    row("mixed: reader p99 us", "mixed", "reader_p99_us", 1.0, 1, Better::Lower),
    row("mixed: reader p99.9 us", "mixed", "reader_p999_us", 1.0, 1, Better::Lower),
    row("mixed: reader max us", "mixed", "reader_max_us", 1.0, 1, Better::Lower),
    row("peak RSS: MiB", "memory", "peak_rss_bytes", 1.0 / 1048576.0, 0, Better::Lower),
    row("  of it in ingest: MiB", "memory", "ingest_peak_rss_bytes", 1.0 / 1048576.0, 0, Better::Lower),
    row("  in reopen + settle: MiB", "memory", "settle_peak_rss_bytes", 1.0 / 1048576.0, 0, Better::Lower),
    row("  in latest + range: MiB", "memory", "query_peak_rss_bytes", 1.0 / 1048576.0, 0, Better::Lower),
    row("  in mixed: MiB", "memory", "mixed_peak_rss_bytes", 1.0 / 1048576.0, 0, Better::Lower),
];

fn figure(results: &[PhaseResult], engine: &str, phase: &str, field: &str) -> Option<f64> {
    results.iter().find(|r| r.engine == engine && r.phase == phase).and_then(|r| r.get(field))
}

fn fmt_value(value: f64, decimals: usize) -> String {
    if decimals == 0 && value.abs() >= 1000.0 {
        // Rounded to whole units for reading; far below 2^53.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        return thousands(value.max(0.0).round() as u64);
    }
    format!("{value:.decimals$}")
}

/// Prints the machine, the hardware limits, the settings that differ and the table.
fn print_report(out: &mut impl Write, file: &RunFile) -> std::io::Result<()> {
    let m = &file.machine;
    let c = &file.config;
    writeln!(out)?;
    writeln!(
        out,
        "strata-bench run: preset {}, {} events ({} fsynced), batches of {}, {} users, seed {:#x}",
        c.preset,
        thousands(c.events),
        thousands(c.sync_events),
        c.batch_events,
        thousands(c.workload.users),
        c.workload.seed
    )?;
    writeln!(
        out,
        "machine: {} cores, {:.1} GiB, {}, kernel {}",
        m.cores,
        m.memory_bytes as f64 / f64::from(1u32 << 30),
        m.cpu,
        m.kernel
    )?;
    let h = &file.hardware;
    writeln!(
        out,
        "hardware limits (same run): sequential write + fdatasync {:.0} MB/s; 4 KiB append + fdatasync p50 {:.0} us, p99 {:.0} us; memcpy {:.1} GB/s",
        h.seq_write_fdatasync_bytes_per_sec / 1e6,
        h.fsync_p50_us,
        h.fsync_p99_us,
        h.memcpy_bytes_per_sec / 1e9
    )?;
    writeln!(
        out,
        "budget (every engine): memtables {} MiB x {}, block cache {} MiB",
        c.memtable_mib, c.memtables, c.cache_mib
    )?;

    let engines: Vec<&String> = file.settings.keys().collect();
    let ordered: Vec<String> =
        EngineKind::ALL.iter().map(|k| k.name().to_string()).filter(|name| engines.contains(&name)).collect();
    print_settings(out, file, &ordered)?;

    // The table: one column per engine, then strata's ratio to each peer.
    let peers: Vec<&String> = ordered.iter().filter(|e| e.as_str() != "strata").collect();
    let has_strata = ordered.iter().any(|e| e == "strata");
    let mut header = vec!["figure".to_string()];
    header.extend(ordered.iter().cloned());
    if has_strata {
        header.extend(peers.iter().map(|p| format!("strata/{p}")));
    }
    let mut lines = vec![header];
    for r in ROWS {
        let mut line = vec![format!(
            "{}{}",
            r.label,
            match r.better {
                Better::Higher => " (+)",
                Better::Lower => " (-)",
            }
        )];
        let strata = figure(&file.results, "strata", r.phase, r.field);
        for engine in &ordered {
            line.push(
                figure(&file.results, engine, r.phase, r.field)
                    .map_or("-".into(), |v| fmt_value(v * r.scale, r.decimals)),
            );
        }
        if has_strata {
            for peer in &peers {
                let ratio = match (strata, figure(&file.results, peer, r.phase, r.field)) {
                    (Some(s), Some(p)) if p != 0.0 => format!("{:.2}x", s / p),
                    _ => "-".into(),
                };
                line.push(ratio);
            }
        }
        lines.push(line);
    }
    writeln!(out)?;
    print_table(out, &lines)?;
    writeln!(out, "(+) higher is better, (-) lower is better; ratios are strata's figure over the peer's.")?;
    Ok(())
}

fn print_settings(out: &mut impl Write, file: &RunFile, engines: &[String]) -> std::io::Result<()> {
    let mut names: Vec<&str> = Vec::new();
    for settings in file.settings.values() {
        for (name, _) in settings {
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
    }
    let value = |engine: &str, name: &str| -> String {
        file.settings
            .get(engine)
            .and_then(|s| s.iter().find(|(n, _)| n == name))
            .map_or_else(|| "-".to_string(), |(_, v)| v.clone())
    };
    writeln!(out)?;
    writeln!(out, "settings that differ between engines:")?;
    for name in names {
        let values: Vec<String> = engines.iter().map(|e| value(e, name)).collect();
        if values.windows(2).all(|w| w[0] == w[1]) && engines.len() > 1 {
            continue;
        }
        writeln!(out, "  {name}:")?;
        for (engine, v) in engines.iter().zip(values) {
            writeln!(out, "    {engine:8} {v}")?;
        }
    }
    Ok(())
}

fn print_table(out: &mut impl Write, lines: &[Vec<String>]) -> std::io::Result<()> {
    let columns = lines.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| lines.iter().filter_map(|l| l.get(i)).map(|s| s.chars().count()).max().unwrap_or(0))
        .collect();
    for (n, line) in lines.iter().enumerate() {
        let mut text = String::new();
        for (i, cell) in line.iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            if i == 0 {
                text.push_str(cell);
                text.push_str(&" ".repeat(pad));
            } else {
                text.push_str("  ");
                text.push_str(&" ".repeat(pad));
                text.push_str(cell);
            }
        }
        writeln!(out, "{}", text.trim_end())?;
        if n == 0 {
            writeln!(out, "{}", "-".repeat(widths.iter().sum::<usize>() + 2 * columns.saturating_sub(1)))?;
        }
    }
    Ok(())
}
