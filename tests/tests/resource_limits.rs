//! Resource limits (issue #7, item 9): a low `RLIMIT_NOFILE` with many tables, and one
//! million distinct users.
//!
//! The engine keeps one descriptor per open table for the table's lifetime (blocks are read
//! with `pread` on it), plus the lock, the manifest and the WAL segment; reads open nothing.
//! So a database with more tables than the descriptors left cannot open at all, and each
//! flush or compaction needs a few more for its builders, directory syncs and new tables.
//! What these tests prove, on the real file system:
//! - `failed_open_releases_every_descriptor`: with 0, 1, 2, ... free descriptors, an open
//!   fails at table N (or later, at the WAL or the manifest) with a typed `Io` error naming
//!   the file and EMFILE, never a panic; every descriptor it took is released (the set of
//!   `/proc/self/fd` is the same before and after); and a reopen at the normal limit finds
//!   everything (an open that failed after writing damaged nothing).
//! - `many_tables_under_a_low_descriptor_limit`: the limit (open descriptors + 32)
//!   refuses the open the same way; then, for each slack above the tables' descriptors, an
//!   open that succeeds reads every event right, then writes (synced) and flushes until
//!   descriptors run out, in the WAL rotation (large batches, odd slacks) or in the flush
//!   (even slacks); last, compactions with 5, 6, ... free descriptors until one fits. Each
//!   failure is a typed error (`Io` naming the file and EMFILE, or `Poisoned` carrying the
//!   EMFILE of a background flush), reads after it still give every acknowledged event, no
//!   descriptor leaks, a reopen at the normal limit finds every acknowledged write (a failed
//!   write whole or absent), and the compaction that fits lets go of its inputs' descriptors.
//! - `one_million_distinct_users`: 1,000,000 users with 1 or 2 events each are written,
//!   flushed, compacted and reopened; an evenly spread sample of users (all of them if
//!   asked) is checked with `latest(user, 10)`, 1,000 never-written ids must read empty,
//!   the stats must count every event written (a full count), and the run
//!   time and peak RSS (VmHWM) are printed.
//!
//! The low limit is set in a child process (this binary again, running a `child_*` test with
//! `STRATA_LIMITS_CHILD_DIR` set; without it those tests do nothing), so that no other test
//! runs under it. Knobs, each but the user count multiplied by `STRATA_FAULT_SCALE`
//! (default 1):
//! `STRATA_LIMIT_TABLES` (tables of the database, default 320; at most half of the smaller of
//! 4096 and the normal limit less 256, which one descriptor per table and the tables the
//! flushes add must fit), `STRATA_LIMIT_OPEN_POINTS` (limits tried below what an open
//! needs, default 400: every table at the default size), `STRATA_LIMIT_SLACK` (largest slack
//! tried, default 24), `STRATA_LIMIT_USERS` (default 1,000,000) and
//! `STRATA_LIMIT_USERS_CHECKED` (users checked with `latest`, default 200,000; checking all
//! 1,000,000 takes about 12 s more in debug). A failure names the database directory and
//! the number of free descriptors of the step, which replay it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::cast_possible_truncation)]
// `/proc/self/fd` and EMFILE's number are Linux's.
#![cfg(target_os = "linux")]

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use strata::sstable::SstError;
use strata::vfs::FsError;
use strata::wal::WalError;
use strata::{Db, Error, ErrorKind, Options, WriteBatch, WriteOptions};
use strata_tests::engine_workload::{difference, read_state, State};
use strata_tests::env_size;
use strata_tests::summary::Summary;

const CHILD_DIR: &str = "STRATA_LIMITS_CHILD_DIR";
const EMFILE: i32 = 24;
const PARTITIONS: i64 = 4;
const WIDTH: i64 = 1_000_000;
const USERS: u64 = 16;
/// Timestamps at or above this offset in a partition are the child's writes.
const CHILD_TS: i64 = WIDTH / 2;

fn scale() -> u64 {
    env_size("STRATA_FAULT_SCALE", 1).max(1)
}

/// Options of the many-tables database: nothing compacts or flushes behind the test's back,
/// so every flush makes one table per partition it touches.
fn options() -> Options {
    Options {
        partition_width: WIDTH as u64,
        memtable_bytes: 1 << 20,
        // The smallest segment: a child's large batch then rotates the WAL at every write.
        wal_segment_bytes: 4096,
        block_cache_bytes: 1 << 20,
        compaction_threads: 0,
        ..Options::default()
    }
}

/// Most tables the database may reach: with one descriptor per table, a reopen at the
/// normal limit must still fit them.
fn table_cap() -> u64 {
    soft_limit().saturating_sub(256).min(4096)
}

fn table_count() -> u64 {
    (env_size("STRATA_LIMIT_TABLES", 320) * scale()).min(table_cap() / 2)
}

/// The events of flush round `round` in `partition`, as (user, ts, payload).
fn round_events(round: u64, partition: i64) -> Vec<(u64, i64, Vec<u8>)> {
    (0..4i64)
        .map(|k| {
            let user = (round * 5 + partition as u64 * 3 + k as u64) % USERS;
            let ts = partition * WIDTH + round as i64 * 4 + k;
            (user, ts, format!("base r{round} p{partition} k{k}").into_bytes())
        })
        .collect()
}

fn base_model(tables: u64) -> State {
    let mut model = State::new();
    for round in 0..tables.div_ceil(PARTITIONS as u64) {
        for partition in 0..PARTITIONS {
            for (user, ts, payload) in round_events(round, partition) {
                model.insert((user, ts), payload);
            }
        }
    }
    model
}

/// Builds the many-tables database in `dir` at the normal limit: one flush per round, one
/// table per partition and flush.
fn build(dir: &Path, tables: u64) -> u64 {
    let db = Db::open(dir, options()).unwrap();
    for round in 0..tables.div_ceil(PARTITIONS as u64) {
        for partition in 0..PARTITIONS {
            let mut batch = WriteBatch::new();
            for (user, ts, payload) in round_events(round, partition) {
                batch.put(user, ts, &payload);
            }
            db.write(&batch, &WriteOptions::default()).unwrap();
        }
        db.flush().unwrap();
    }
    let built = table_files(dir);
    assert_eq!(read_state(&db, &users()).unwrap(), base_model(tables), "{}: built wrong", dir.display());
    db.close().unwrap();
    built
}

fn users() -> Vec<u64> {
    (0..USERS).collect()
}

fn table_files(dir: &Path) -> u64 {
    let names = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name());
    names.filter(|n| n.to_string_lossy().ends_with(".sst")).count() as u64
}

// ---- descriptors and limits ----

type Fds = BTreeMap<u32, PathBuf>;
/// A batch of the child's writes, as model entries.
type Batch = Vec<((u64, i64), Vec<u8>)>;

/// The process's open descriptors and what each one is.
fn open_fds() -> Fds {
    let mut fds = Fds::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
        let entry = entry.unwrap();
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else { continue };
        if let Ok(target) = std::fs::read_link(entry.path()) {
            fds.insert(fd, target);
        }
    }
    // The listing's own handle, open only while it is read.
    let own = PathBuf::from(format!("/proc/{}/fd", std::process::id()));
    fds.retain(|_, target| *target != own);
    fds
}

fn assert_fds(start: &Fds, what: &str) {
    let now = open_fds();
    if now != *start {
        let leaked: Vec<_> = now.iter().filter(|(fd, t)| start.get(fd) != Some(t)).collect();
        let closed: Vec<_> = start.iter().filter(|(fd, t)| now.get(fd) != Some(t)).collect();
        panic!("{what}: descriptors differ after drop: leaked {leaked:?}, closed {closed:?}");
    }
}

fn soft_limit() -> u64 {
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

fn set_soft_limit(current: u64) {
    let maximum = getrlimit(Resource::Nofile).maximum;
    setrlimit(Resource::Nofile, Rlimit { current: Some(current), maximum }).unwrap();
}

/// The soft limit that leaves exactly `budget` descriptors free besides `fds` (the kernel
/// hands out the lowest free number below the limit, so holes count as free).
fn limit_for(fds: &Fds, budget: u64) -> u64 {
    (0u64..)
        .find(|&limit| limit - fds.keys().filter(|&&fd| u64::from(fd) < limit).count() as u64 == budget)
        .unwrap()
}

// ---- what running out of descriptors may give ----

/// Checks that `err` is what running out of descriptors must give: an `Io` error naming the
/// file and carrying EMFILE, or `Poisoned` by one (a background flush's failure). Returns
/// the file, if named.
fn check_emfile(err: &Error, what: &str) -> Option<PathBuf> {
    match err.kind() {
        ErrorKind::Io => {
            let fs: &FsError = match err {
                Error::Io(fs) | Error::Table(SstError::Fs(fs)) | Error::Wal(WalError::Fs(fs)) => fs,
                _ => panic!("{what}: an Io error without a file: {err:?}"),
            };
            let source = std::error::Error::source(fs).and_then(|s| s.downcast_ref::<io::Error>());
            assert_eq!(source.and_then(io::Error::raw_os_error), Some(EMFILE), "{what}: not EMFILE: {err}");
            assert!(err.to_string().contains(&*fs.path.to_string_lossy()), "{what}: no file in {err}");
            Some(fs.path.clone())
        }
        ErrorKind::Poisoned => {
            assert!(err.to_string().contains("(os error 24)"), "{what}: poisoned, but not by EMFILE: {err}");
            None
        }
        _ => panic!("{what}: running out of descriptors gave {err:?}"),
    }
}

// ---- the child processes ----

/// Figures a child reports to its parent, one `figure|label|value` line each.
#[derive(Default)]
struct Figures(Vec<(String, u64)>);

impl Figures {
    fn add(&mut self, label: &str, n: u64) {
        match self.0.iter_mut().find(|(l, _)| l == label) {
            Some((_, value)) => *value += n,
            None => self.0.push((label.to_string(), n)),
        }
    }

    fn get(&self, label: &str) -> u64 {
        self.0.iter().find(|(l, _)| l == label).map_or(0, |(_, v)| *v)
    }

    fn print(&self, name: &str) {
        println!("+-- {name} ");
        for (label, value) in &self.0 {
            println!("| {label:<44} {value:>12}");
        }
        println!("+--");
    }
}

/// Runs child test `test` on `dir` and returns its figures.
fn run_child(test: &str, dir: &Path) -> Figures {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads", "1"])
        .env(CHILD_DIR, dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "child {test} on {} failed ({}):\n{stdout}\n{stderr}",
        dir.display(),
        out.status
    );
    let mut figures = Figures::default();
    for line in stdout.lines() {
        // The harness prints "test <name> ... " without a newline before the child's output.
        let Some(at) = line.find("figure|") else { continue };
        let mut fields = line[at + 7..].split('|');
        if let (Some(label), Some(value)) = (fields.next(), fields.next()) {
            figures.add(label, value.trim().parse().unwrap());
        }
    }
    assert!(!figures.0.is_empty(), "child {test} reported nothing:\n{stdout}\n{stderr}");
    figures
}

/// The database and model a child works on, with what it has seen.
struct Child {
    dir: PathBuf,
    model: State,
    /// Batches whose write failed: each must be whole or absent.
    maybe: Vec<Batch>,
    writes: i64,
    start: Fds,
    soft: u64,
    figures: Figures,
}

impl Child {
    fn new() -> Option<Child> {
        let dir = PathBuf::from(std::env::var_os(CHILD_DIR)?);
        let model = base_model(table_count());
        Some(Child {
            dir,
            model,
            maybe: Vec::new(),
            writes: 0,
            start: open_fds(),
            soft: soft_limit(),
            figures: Figures::default(),
        })
    }

    /// Checks what `db` returns against the model; failed writes may be whole or absent, and
    /// those present join the model. A read error must be a typed EMFILE.
    fn check_reads(&mut self, db: &Db, what: &str) {
        let got = match read_state(db, &users()) {
            Ok(got) => got,
            Err(err) => {
                check_emfile(&err, &format!("{what}: read"));
                self.figures.add("reads failed with a typed error", 1);
                return;
            }
        };
        for batch in std::mem::take(&mut self.maybe) {
            let present = batch.iter().filter(|(key, payload)| got.get(key) == Some(payload)).count();
            assert!(present == 0 || present == batch.len(), "{what}: a failed batch is torn: {batch:?}");
            if present > 0 {
                self.model.extend(batch);
            } else {
                self.maybe.push(batch);
            }
        }
        assert!(
            got == self.model,
            "{what}: reads disagree with the model: {}",
            difference(&self.model, &got)
        );
        self.figures.add("full read checks passed", 1);
    }

    /// Reopens at the normal limit and checks every acknowledged event is there.
    fn verify_reopen(&mut self, what: &str) {
        let db = Db::open(&self.dir, options()).unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
        self.check_reads(&db, &format!("{what}, reopened"));
        // A failed write not there now never will be: the reopen recovered the whole WAL.
        self.maybe.clear();
        drop(db);
        assert_fds(&self.start, &format!("{what}, reopened"));
        self.figures.add("reopens checked at the normal limit", 1);
    }

    /// Reports the figures, with the descriptors open at the start and now, to the parent.
    fn finish(mut self) {
        self.figures.add("descriptors open at start", self.start.len() as u64);
        self.figures.add("descriptors open at end", open_fds().len() as u64);
        for (label, value) in &self.figures.0 {
            println!("figure|{label}|{value}");
        }
    }

    /// Opens with `budget` free descriptors. On success the limit stays low for the
    /// caller's work; a refusal is checked and counted, the limit restored, and the file it
    /// names returned.
    fn open_low(&mut self, budget: u64, what: &str) -> Result<Db, Option<PathBuf>> {
        set_soft_limit(limit_for(&self.start, budget));
        Db::open(&self.dir, options()).map_err(|err| {
            set_soft_limit(self.soft);
            self.figures.add("opens refused (typed)", 1);
            check_emfile(&err, what)
        })
    }

    /// The next batch of the child's writes: two events in one partition, after the base;
    /// a `large` one is bigger than a WAL segment, so its write rotates the WAL.
    fn next_batch(&mut self, large: bool) -> Batch {
        let n = self.writes;
        self.writes += 1;
        let partition = n % PARTITIONS;
        (0..2i64)
            .map(|k| {
                let user = (n * 2 + k) as u64 % USERS;
                let ts = partition * WIDTH + CHILD_TS + n * 2 + k;
                let padding = if large { 3_000 } else { 0 };
                ((user, ts), format!("child write {n} event {k}{:>padding$}", "").into_bytes())
            })
            .collect()
    }

    /// Writes (synced) and flushes, one table per round, until a descriptor is missing or
    /// `rounds` pass. With `large` batches every write needs a new WAL segment, so the
    /// write path runs out first; without, the flush does.
    fn write_until_error(&mut self, db: &Db, rounds: u64, large: bool, what: &str) {
        for _ in 0..rounds {
            let batch = self.next_batch(large);
            let mut write = WriteBatch::new();
            for ((user, ts), payload) in &batch {
                write.put(*user, *ts, payload);
            }
            if let Err(err) = db.write(&write, &WriteOptions { sync: true }) {
                check_emfile(&err, &format!("{what}: write {}", self.writes - 1));
                self.figures.add("writes refused (typed)", 1);
                self.maybe.push(batch);
                return;
            }
            self.model.extend(batch);
            self.figures.add("writes acknowledged under the limit", 1);
            if let Err(err) = db.flush() {
                check_emfile(&err, &format!("{what}: flush after write {}", self.writes - 1));
                self.figures.add("flushes refused (typed)", 1);
                return;
            }
            self.figures.add("flushes done under the limit", 1);
        }
        self.figures.add("opens that never ran out", 1);
    }
}

/// Case 2, in the child: opens with 0, 1, 2, ... free descriptors until one succeeds.
#[test]
fn child_open_sweep() {
    let Some(mut child) = Child::new() else { return };
    let tables = table_files(&child.dir);
    let points = (env_size("STRATA_LIMIT_OPEN_POINTS", 400) * scale()).max(1);
    let stride = (tables / points).max(1);
    let mut failed_at = std::collections::BTreeSet::new();
    let mut budget = 0;
    let needed = loop {
        let what = format!("{}: open with {budget} free descriptors", child.dir.display());
        child.figures.add("limits tried", 1);
        match child.open_low(budget, &what) {
            Ok(db) => {
                drop(db);
                set_soft_limit(child.soft);
                assert_fds(&child.start, &what);
                break budget;
            }
            Err(file) => {
                assert_fds(&child.start, &what);
                let table = file.filter(|f| f.extension().is_some_and(|e| e == "sst"));
                let phase = match (&table, budget < tables) {
                    (Some(_), _) => "opens refused at a table",
                    (None, true) => "opens refused before the tables",
                    (None, false) => "opens refused after the tables",
                };
                child.figures.add(phase, 1);
                failed_at.extend(table);
                if phase != "opens refused at a table" {
                    // It may have written (WAL, manifest, CURRENT): nothing may be damaged.
                    child.verify_reopen(&what);
                }
            }
        }
        // Every point near the end, where the open has its tables and starts writing.
        budget += if budget + 16 < tables { stride } else { 1 };
        assert!(
            budget <= tables + 64,
            "{}: never opened with {budget} free descriptors",
            child.dir.display()
        );
    };
    child.verify_reopen("after the sweep");
    child.figures.add("tables", tables);
    child.figures.add("distinct tables an open failed at", failed_at.len() as u64);
    child.figures.add("descriptors an open needs", needed);
    child.finish();
}

/// Case 1, in the child: the limit, then each slack above the tables' descriptors.
#[test]
fn child_low_limit_workload() {
    let Some(mut child) = Child::new() else { return };
    let dir = child.dir.display().to_string();
    let tables = table_files(&child.dir);
    let what = format!("{dir}: open with 32 free descriptors and {tables} tables");
    child.figures.add("limits tried", 1);
    assert!(child.open_low(32, &what).is_err(), "{what}: opened, though each table holds a descriptor");
    assert_fds(&child.start, &what);

    let db = Db::open(&child.dir, options()).unwrap();
    let held = (open_fds().len() - child.start.len()) as u64;
    drop(db);
    assert_fds(&child.start, "open and drop at the normal limit");

    for slack in 0..=env_size("STRATA_LIMIT_SLACK", 24) * scale() {
        let now = table_files(&child.dir);
        if now + slack + 64 > table_cap() {
            child.figures.add("slack steps cut short by the table cap", 1);
            break;
        }
        let budget = now + slack;
        let what = format!("{dir}: {now} tables, open with {budget} free descriptors (slack {slack})");
        child.figures.add("limits tried", 1);
        if let Ok(db) = child.open_low(budget, &what) {
            child.figures.add("opens under the limit", 1);
            child.check_reads(&db, &what);
            child.write_until_error(&db, slack + 8, slack % 2 == 1, &what);
            child.check_reads(&db, &format!("{what}, after running out"));
            drop(db);
            set_soft_limit(child.soft);
        }
        assert_fds(&child.start, &what);
        child.verify_reopen(&what);
    }
    child.figures.add("tables at start", tables);
    child.figures.add("tables before compaction", table_files(&child.dir));
    compact_under_limit(&mut child);
    child.figures.add("tables at end", table_files(&child.dir));
    child.figures.add("descriptors held by the open database", held);
    child.finish();
}

/// Compacts with 5, 6, 7, ... free descriptors until a compaction succeeds: a refused one
/// must be typed and lose nothing, and the one that succeeds must let go of its inputs'
/// descriptors.
fn compact_under_limit(child: &mut Child) {
    let dir = child.dir.display().to_string();
    for slack in 5..64 {
        let now = table_files(&child.dir);
        let what = format!("{dir}: {now} tables, compact with {} free descriptors", now + slack);
        child.figures.add("limits tried", 1);
        let Ok(db) = child.open_low(now + slack, &what) else { panic!("{what}: the open was refused") };
        let compacted = db.compact();
        set_soft_limit(child.soft);
        let held = (open_fds().len() - child.start.len()) as u64;
        match &compacted {
            Err(err) => {
                check_emfile(err, &what);
                child.figures.add("compactions refused (typed)", 1);
            }
            Ok(()) => {
                child.check_reads(&db, &what);
                let tables = table_files(&child.dir);
                assert!(held <= tables + 8, "{what}: {held} descriptors held for {tables} tables");
                child.figures.add("descriptors held after compaction", held);
                child.figures.add("free descriptors compaction needed", slack);
            }
        }
        drop(db);
        assert_fds(&child.start, &what);
        child.verify_reopen(&what);
        if compacted.is_ok() {
            return;
        }
    }
    panic!("{dir}: no compaction succeeded with up to 64 free descriptors");
}

/// Builds the many-tables database in a temp dir and runs `child` on it.
fn campaign(child: &str) -> (Figures, std::time::Duration, tempfile::TempDir) {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let tables = build(&dir, table_count());
    let mut figures = run_child(child, &dir);
    figures.add("tables built by the parent", tables);
    (figures, started.elapsed(), tmp)
}

#[test]
fn failed_open_releases_every_descriptor() {
    let (figures, elapsed, _tmp) = campaign("child_open_sweep");
    let mut summary = Summary::new("failed opens under a low RLIMIT_NOFILE");
    summary.points = figures.get("limits tried");
    summary.states = figures.get("reopens checked at the normal limit");
    summary.injected = summary.points - 1;
    summary.detected = figures.get("opens refused (typed)");
    summary.finish();
    figures.print("failed opens: descriptors");
    println!("time: {elapsed:.2?}");
    assert_eq!(summary.detected, summary.injected, "every limit below the need must refuse the open");
    assert!(figures.get("distinct tables an open failed at") > 0, "no open failed at a table");
    assert_eq!(figures.get("descriptors open at start"), figures.get("descriptors open at end"));
}

#[test]
fn many_tables_under_a_low_descriptor_limit() {
    let (figures, elapsed, _tmp) = campaign("child_low_limit_workload");
    let mut summary = Summary::new("many tables under a low RLIMIT_NOFILE");
    summary.points = figures.get("limits tried");
    summary.states = figures.get("reopens checked at the normal limit");
    // Every step runs out once, except those that never did and the compaction that fit.
    summary.injected = summary.points - figures.get("opens that never ran out") - 1;
    let refusals = ["opens", "writes", "flushes", "compactions"];
    summary.detected = refusals.iter().map(|what| figures.get(&format!("{what} refused (typed)"))).sum();
    summary.acked = figures.get("writes acknowledged under the limit");
    summary.synced_checked = summary.acked;
    summary.finish();
    figures.print("many tables: descriptors");
    println!("time: {elapsed:.2?}");
    assert!(figures.get("opens under the limit") > 0, "no open succeeded under the limit");
    assert_eq!(summary.detected, summary.injected, "a step ran out without a typed error");
    for path in ["writes", "flushes", "compactions"] {
        assert!(figures.get(&format!("{path} refused (typed)")) > 0, "no {path} ran out of descriptors");
    }
    assert_eq!(figures.get("descriptors open at start"), figures.get("descriptors open at end"));
}

// ---- case 3: one million distinct users ----

/// User `i`'s id: an odd multiplier is a bijection of u64, so ids are distinct and spread
/// over the whole key space (filters and index see no dense run).
fn user_id(i: u64) -> u64 {
    i.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// User `i`'s events, oldest first: one or two, a minute apart, somewhere in two days.
fn user_events(i: u64) -> Vec<(i64, Vec<u8>)> {
    const START: i64 = 1_700_000_000_000_000;
    let h = user_id(i).rotate_left(29) ^ i;
    let first = START + (h >> 1) as i64 % (2 * strata::DAY_MICROS as i64);
    (0..1 + (h & 1) as i64)
        .map(|k| {
            let mut payload = i.to_le_bytes().to_vec();
            payload.push(k as u8);
            (first + k * 60_000_000, payload)
        })
        .collect()
}

/// Peak resident memory of this process, in KiB (VmHWM).
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn one_million_distinct_users() {
    // The figure; the scale checks more of them rather than adding users.
    let users = env_size("STRATA_LIMIT_USERS", 1_000_000);
    let checked = (env_size("STRATA_LIMIT_USERS_CHECKED", 200_000) * scale()).clamp(1, users);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    // A modest memtable, so that ingest flushes several times before the explicit flush.
    let options = Options { memtable_bytes: 8 << 20, ..Options::default() };
    let started = Instant::now();
    let db = Db::open(&dir, options.clone()).unwrap();
    let mut events = 0u64;
    for first in (0..users).step_by(10_000) {
        let mut batch = WriteBatch::new();
        for i in first..(first + 10_000).min(users) {
            for (ts, payload) in user_events(i) {
                batch.put(user_id(i), ts, &payload);
                events += 1;
            }
        }
        db.write(&batch, &WriteOptions::default()).unwrap();
    }
    let write_time = started.elapsed();
    db.flush().unwrap();
    let flushes = db.stats().flushes;
    db.compact().unwrap();
    db.close().unwrap();
    drop(db);
    let ingest_time = started.elapsed();

    let db = Db::open(&dir, options).unwrap();
    let stats = db.stats();
    let tables: u64 = stats.partitions.iter().map(|p| p.sequence_tables + p.unsequence_tables).sum();
    let stored: u64 = stats.partitions.iter().map(|p| p.events).sum();
    let bytes: u64 = stats.partitions.iter().map(|p| p.bytes).sum();
    assert_eq!(stored, events, "{}: the tables hold {stored} entries, {events} were written", dir.display());
    // `compact` groups them: eight-day windows, so one or two groups.
    assert!(
        (1..=2).contains(&stats.partitions.len()),
        "two days span 2 to 3 partitions, in 1 or 2 groups: {:?}",
        stats.partitions
    );
    assert!(tables >= stats.partitions.len() as u64 && tables <= 4 * stats.partitions.len() as u64 + 16);
    assert!(bytes > 9 * events && bytes < 64 * events, "{bytes} bytes for {events} events");

    let check_start = Instant::now();
    for j in 0..checked {
        let i = j * users / checked;
        let got: Vec<(i64, Vec<u8>)> =
            db.latest(user_id(i), 10).unwrap().into_iter().map(|e| (e.ts, e.payload.to_vec())).collect();
        let mut expected = user_events(i);
        expected.reverse();
        assert_eq!(got, expected, "{}: user #{i} (id {:#x}): latest(10) is wrong", dir.display(), user_id(i));
    }
    for i in users..users + 1_000 {
        assert!(db.latest(user_id(i), 10).unwrap().is_empty(), "user #{i} was never written");
    }
    let check_time = check_start.elapsed();
    let mut summary = Summary::new("one million distinct users");
    summary.points = checked;
    summary.states = 1;
    summary.acked = users.div_ceil(10_000);
    summary.finish();
    let figures = Figures(vec![
        ("users written".into(), users),
        ("events written".into(), events),
        ("users checked with latest(10)".into(), checked),
        ("flushes during ingest".into(), flushes),
        ("tables after compaction".into(), tables),
        ("partitions".into(), stats.partitions.len() as u64),
        ("table bytes".into(), bytes),
        ("ingest + flush + compact ms".into(), ingest_time.as_millis() as u64),
        ("of which writes ms".into(), write_time.as_millis() as u64),
        ("check ms".into(), check_time.as_millis() as u64),
        ("peak RSS KiB (VmHWM, whole test process)".into(), peak_rss_kib()),
    ]);
    figures.print("one million distinct users");
}
