//! The engine under I/O errors, failed fsyncs, damaged reads and damaged files.
//!
//! - EIO and ENOSPC at each I/O operation of the workload (one in
//!   `STRATA_ENGINE_FAULT_STRIDE`, default 2; the two campaigns start at different offsets,
//!   so together they cover every operation): the error reaches the caller of a write,
//!   flush, `sync_wal` or close (or the flush thread poisons the database and the next call
//!   says so), naming the injected fault; the failed database refuses writes and still
//!   reads exactly what was acknowledged; and nothing was falsely acknowledged: reopened
//!   without a power loss it holds every acknowledged batch, after one every durable batch.
//! - A failed fsync (each `sync_data` and `sync_dir` of the workload in turn) poisons the
//!   database, and the same checks hold.
//! - Read faults (EIO, flipped bits) at each read of a recovery and of the queries that
//!   follow: an error, never a wrong answer, and no lasting damage once the fault is gone.
//! - Damaged or missing files are refused at open with a typed error naming the file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::cast_possible_truncation)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use strata::{Db, ErrorKind, Options, WriteOptions};
use strata_tests::engine_workload::{
    copy_disk, difference, options, read_state, recover_and_check, run, Outcome, State, TraceFs, Violation,
    Workload, DIR,
};
use strata_tests::env_size;
use strata_tests::summary::Summary;
use strata_vfs::{CrashMode, FaultAction, FaultFs, FaultRule, FileSystem, FsErrorKind, OpKind, SimFs, When};

const DEFAULT_STRIDE: u64 = 2;

fn workload() -> Workload {
    Workload::generate(env_size("STRATA_ENGINE_SEED", 7), env_size("STRATA_ENGINE_BATCHES", 480) as usize)
}

/// The checks after one faulty run: what the run reported, then a reopen without a power
/// loss (a copy of what the OS holds) and one after a power loss. Failures are pushed to
/// `failures` with `replay` appended.
fn check_after_fault(
    w: &Workload,
    options: &Options,
    sim: &SimFs,
    outcome: &Outcome,
    replay: &str,
    summary: &mut Summary,
    failures: &mut Vec<String>,
) {
    for violation in &outcome.after_failure {
        summary.losses += 1;
        failures.push(format!("failed database: {violation} ({replay})"));
    }
    // One operation failed, not the reads that follow: they must work.
    if let Some(e) = &outcome.read_error_after_failure {
        failures.push(format!("failed database: reads after the failure failed: {e} ({replay})"));
    }
    let no_crash = copy_disk(sim);
    sim.crash(CrashMode::DurableOnly);
    let checks = [("no power loss", &no_crash, outcome.acked), ("after a power loss", sim, outcome.durable)];
    for (what, disk, lo) in checks {
        match recover_and_check(disk, w, options, lo, outcome.attempted) {
            Ok(_) => {}
            Err(v @ Violation::Reopen(_)) => {
                summary.reopen_failures += 1;
                failures.push(format!("{what}: {v} ({replay})"));
            }
            Err(v @ Violation::Loss(_)) => {
                summary.losses += 1;
                failures.push(format!("{what}: {v} ({replay})"));
            }
        }
        summary.states += 1;
    }
    summary.synced_checked += outcome.synced_acks as u64;
    summary.acked += outcome.acked as u64;
}

/// Checks that a run that saw the fault reported it: the error names the injected
/// operation and is an I/O error or the poisoning it caused. A run that saw no error is
/// accepted only when the fault hit a best-effort removal (a file nothing references any
/// more), which the engine ignores by design; those are counted by operation and file kind.
fn check_reported(
    outcome: &Outcome,
    trace: &TraceFs,
    replay: &str,
    summary: &mut Summary,
    swallowed: &mut BTreeMap<String, u64>,
    failures: &mut Vec<String>,
) {
    let hit = trace.first_injected();
    match (&outcome.failure, &hit) {
        (Some(failure), Some(_)) => {
            summary.detected += 1;
            let text = failure.error.to_string();
            let named =
                trace.injected().iter().any(|i| text.contains(&format!("injected fault at op {} ", i.index)));
            if !named {
                failures.push(format!("{} reported {text}, not the injected fault ({replay})", failure.what));
            }
            if !matches!(failure.error.kind(), ErrorKind::Io | ErrorKind::Poisoned) {
                failures.push(format!(
                    "{} reported {:?}: {text} ({replay})",
                    failure.what,
                    failure.error.kind()
                ));
            }
        }
        (Some(failure), None) => {
            failures.push(format!("{} failed without a fault: {} ({replay})", failure.what, failure.error));
        }
        (None, Some(hit)) if hit.op == OpKind::Remove => {
            let name = hit.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let kind = name.trim_start_matches(|c: char| c.is_ascii_digit() || c == '-').to_string();
            let kind =
                if name.starts_with("MANIFEST") { "MANIFEST-*".to_string() } else { format!("*{kind}") };
            *swallowed.entry(format!("{} {kind}", hit.op)).or_default() += 1;
        }
        (None, Some(hit)) => failures.push(format!("the fault at {hit} reached no caller ({replay})")),
        (None, None) => {}
    }
}

/// Fails operation `k` alone with `kind`, for `k = offset, offset + stride, ...`.
fn error_campaign(name: &str, kind: FsErrorKind, offset: u64) {
    let w = workload();
    let options = options();
    let stride = env_size("STRATA_ENGINE_FAULT_STRIDE", DEFAULT_STRIDE).max(1);
    let offset = offset % stride;
    let mut summary = Summary::new(name);
    let mut failures = Vec::new();
    let mut swallowed = BTreeMap::new();
    let start = Instant::now();
    let mut point = offset;
    loop {
        let sim = SimFs::new();
        let faulty = Arc::new(FaultFs::new(Arc::new(sim.clone()), point));
        faulty.add_rule(FaultRule::new(When::Nth(point), FaultAction::Fail(kind)));
        let trace = TraceFs::new(faulty.clone());
        let outcome = run(Arc::new(trace.clone()), &w, &options);
        if faulty.injected_count() == 0 {
            break;
        }
        let hit = trace.first_injected().map_or("not seen".to_string(), |i| i.to_string());
        let replay = format!(
            "{kind:?} at op {point} [{hit}], workload seed {} of {} batches; acked {}, durable {}, stopped by {:?}",
            w.seed,
            w.batches.len(),
            outcome.acked,
            outcome.durable,
            outcome.failure.as_ref().map(|f| format!("{}: {}", f.what, f.error)),
        );
        summary.points += 1;
        summary.injected += 1;
        check_reported(&outcome, &trace, &replay, &mut summary, &mut swallowed, &mut failures);
        check_after_fault(&w, &options, &sim, &outcome, &replay, &mut summary, &mut failures);
        point += stride;
    }
    summary.finish();
    println!("| stride {stride}, offset {offset}, {:.1?}", start.elapsed());
    println!("| faults no caller saw (best-effort removals, ignored by design): {swallowed:?}");
    for failure in failures.iter().take(10) {
        println!("FAILURE: {failure}");
    }
    assert!(summary.points * stride > 1000, "the workload did too few operations: {summary}");
    assert!(failures.is_empty(), "{name}: {} failures, first: {}", failures.len(), failures[0]);
}

#[test]
fn eio_at_every_operation_reaches_the_caller_and_acks_nothing_false() {
    error_campaign("engine EIO at every op", FsErrorKind::Io, 0);
}

#[test]
fn enospc_at_every_operation_reaches_the_caller_and_acks_nothing_false() {
    error_campaign("engine ENOSPC at every op", FsErrorKind::NoSpace, 1);
}

/// Every `sync_data` and `sync_dir` of the workload fails in turn (the rule is
/// `When::Nth(i)` limited to the sync operation kind, `i` taken from a clean run). The
/// database is poisoned: the next write is refused as `Poisoned`, reads still return exactly
/// the acknowledged batches, and the reopen loses nothing acknowledged (or, after a power
/// loss, nothing durable).
#[test]
fn a_failed_fsync_poisons_the_database_and_reads_still_work() {
    let w = workload();
    let options = options();
    let (trace, log) = TraceFs::logged(Arc::new(SimFs::new()));
    let clean = run(Arc::new(trace), &w, &options);
    assert!(clean.closed, "{:?}", clean.failure);
    let syncs: Vec<(u64, OpKind, PathBuf)> = log
        .lock()
        .iter()
        .enumerate()
        .filter(|(_, (op, _))| matches!(op, OpKind::SyncData | OpKind::SyncDir))
        .map(|(i, (op, path))| (i as u64, *op, path.clone()))
        .collect();
    let stride = env_size("STRATA_ENGINE_FSYNC_STRIDE", 1).max(1) as usize;
    let mut summary = Summary::new("engine failed fsync at every sync");
    let mut failures = Vec::new();
    let mut swallowed = BTreeMap::new();
    let mut shifted = 0;
    let mut by_file: BTreeMap<String, u64> = BTreeMap::new();
    let start = Instant::now();
    for (index, op, _) in syncs.iter().step_by(stride) {
        // The flush thread runs beside the writer, so operation `index` may not be a sync
        // in this run: then the first sync of that kind from `index` on fails instead.
        let attempt = |when: When| {
            let sim = SimFs::new();
            let faulty = Arc::new(FaultFs::new(Arc::new(sim.clone()), *index));
            faulty.add_rule(FaultRule::new(when, FaultAction::Fail(FsErrorKind::Io)).on_op(*op));
            let trace = TraceFs::new(faulty.clone());
            let outcome = run(Arc::new(trace.clone()), &w, &options);
            (faulty.injected_count() > 0).then_some((sim, trace, outcome))
        };
        let Some((sim, trace, outcome)) = attempt(When::Nth(*index)).or_else(|| {
            shifted += 1;
            attempt(When::FromNth(*index))
        }) else {
            continue;
        };
        let hit = trace.first_injected().unwrap();
        let path = &hit.path;
        let replay = format!(
            "failed {op} of {} at op {} (rule at {index}), workload seed {}; acked {}, stopped by {:?}",
            path.display(),
            hit.index,
            w.seed,
            outcome.acked,
            outcome.failure.as_ref().map(|f| format!("{}: {}", f.what, f.error)),
        );
        summary.points += 1;
        summary.injected += 1;
        check_reported(&outcome, &trace, &replay, &mut summary, &mut swallowed, &mut failures);
        // (The failed database's reads are checked by `run`, into `after_failure`.)
        let stepped = outcome.failure.as_ref().is_some_and(|f| f.what != "close" && f.what != "open");
        if stepped && !matches!(&outcome.probe, Some(Err(e)) if e.kind() == ErrorKind::Poisoned) {
            failures.push(format!("not poisoned: a later write returned {:?} ({replay})", outcome.probe));
        }
        let file = file_kind(path);
        *by_file.entry(format!("{op} {file}")).or_default() += 1;
        check_after_fault(&w, &options, &sim, &outcome, &replay, &mut summary, &mut failures);
    }
    summary.finish();
    println!(
        "| {} syncs in the workload, stride {stride}, {shifted} shifted (the next sync failed), {:.1?}",
        syncs.len(),
        start.elapsed()
    );
    println!("| failed syncs by kind and file: {by_file:?}");
    for failure in failures.iter().take(10) {
        println!("FAILURE: {failure}");
    }
    assert!(summary.points > 100, "{summary}");
    assert!(failures.is_empty(), "{} failures, first: {}", failures.len(), failures[0]);
}

/// Regression (found by the campaigns above; fixed in 23f9bdf): a first open that failed
/// with an I/O error once it had created `wal/` (no crash needed) left a directory that
/// every later open refused as `NotADatabase`. Fails each operation of a first open in turn,
/// with EIO and ENOSPC: the next open, without the fault, must succeed and work.
#[test]
fn a_failed_first_open_leaves_a_directory_that_opens() {
    let counter = Arc::new(FaultFs::new(Arc::new(SimFs::new()), 0));
    drop(Db::open_with_fs(counter.clone(), DIR, options()).unwrap());
    let ops = counter.op_count();
    for kind in [FsErrorKind::Io, FsErrorKind::NoSpace] {
        for point in 0..ops {
            let sim = SimFs::new();
            let faulty = FaultFs::new(Arc::new(sim.clone()), point);
            faulty.add_rule(FaultRule::new(When::Nth(point), FaultAction::Fail(kind)));
            if let Err(e) = Db::open_with_fs(Arc::new(faulty), DIR, options()) {
                assert_eq!(e.kind(), ErrorKind::Io, "{kind:?} at op {point}: {e}");
            }
            let db = Db::open_with_fs(Arc::new(sim.clone()), DIR, options())
                .unwrap_or_else(|e| panic!("{kind:?} at op {point} of the first open: {e} [{:?}]", e.kind()));
            db.put(1, 1, b"x").unwrap();
            db.close().unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Read faults.

/// A crashed disk with tables, manifest edits and several WAL segments with a torn tail.
fn crashed_mid_workload(w: &Workload) -> SimFs {
    let base = SimFs::new();
    let faulty = Arc::new(FaultFs::new(Arc::new(base.clone()), 0));
    faulty.add_rule(FaultRule::new(When::FromNth(1100), FaultAction::Fail(FsErrorKind::Io)));
    let outcome = run(faulty, w, &options());
    assert!(outcome.acked > 100, "{outcome:?}");
    base.crash(CrashMode::TornTail { seed: 3 });
    base
}

/// A disk whose database was closed cleanly: everything is in tables.
fn closed_database(w: &Workload) -> SimFs {
    let sim = SimFs::new();
    let outcome = run(Arc::new(sim.clone()), w, &options());
    assert!(outcome.closed);
    sim.crash(CrashMode::DurableOnly);
    sim
}

/// Opens the database through `fs`, reads every user, and drops it. Returns the open's
/// error or the read's result, and the operations logged.
fn open_and_read(
    w: &Workload,
    fs: Arc<dyn FileSystem>,
) -> (Result<State, strata::Error>, Vec<(OpKind, PathBuf)>) {
    let (trace, log) = TraceFs::logged(fs);
    let result = Db::open_with_fs(Arc::new(trace), DIR, options()).and_then(|db| read_state(&db, &w.users()));
    let log = log.lock().clone();
    (result, log)
}

/// The kind of file a path is, for the figures.
fn file_kind(path: &Path) -> &'static str {
    let name = path.display().to_string();
    ["wal", "sst", "MANIFEST", "CURRENT"].into_iter().find(|k| name.contains(k)).unwrap_or("dir")
}

/// Each read (`read_at`) of a recovery and of the queries after it fails or returns a
/// flipped bit in turn: the open or the query fails with an I/O or corruption error, or
/// returns exactly the right events; and reopening the disk without the fault afterwards
/// gives exactly the right events (the fault did no lasting damage).
fn read_fault_sweep(name: &str, base: &SimFs, w: &Workload, flip_seeds: u64) -> Summary {
    let mut summary = Summary::new(name);
    let (reference, log) = open_and_read(w, Arc::new(copy_disk(base)));
    let reference = reference.unwrap();
    let reads: Vec<(u64, PathBuf)> = log
        .iter()
        .enumerate()
        .filter(|(_, (op, _))| *op == OpKind::ReadAt)
        .map(|(i, (_, path))| (i as u64, path.clone()))
        .collect();
    let mut failures = Vec::new();
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    let actions = std::iter::once((FaultAction::Fail(FsErrorKind::Io), 0))
        .chain((0..flip_seeds).map(|seed| (FaultAction::FlipReadBit, seed)));
    for (action, seed) in actions {
        for (index, path) in &reads {
            let disk = copy_disk(base);
            let faulty = Arc::new(FaultFs::new(Arc::new(disk.clone()), *index * 1000 + seed));
            faulty.add_rule(FaultRule::new(When::Nth(*index), action).on_op(OpKind::ReadAt));
            let (result, _) = open_and_read(w, faulty.clone());
            let reached = faulty.injected_count() > 0;
            let replay = format!(
                "{action:?} on read op {index} of {} (fault seed {})",
                path.display(),
                *index * 1000 + seed
            );
            let file = file_kind(path);
            let verdict = match &result {
                Ok(state) if *state == reference => "right answer",
                Ok(state) => {
                    summary.losses += 1;
                    failures.push(format!("wrong answer: {} ({replay})", difference(&reference, state)));
                    "WRONG ANSWER"
                }
                Err(e) if matches!(e.kind(), ErrorKind::Io | ErrorKind::Corruption) => "error",
                Err(e) => {
                    failures.push(format!("error of kind {:?}: {e} ({replay})", e.kind()));
                    "error of another kind"
                }
            };
            let fault = if matches!(action, FaultAction::Fail(_)) { "EIO" } else { "flip" };
            *outcomes.entry(format!("{fault} on {file}: {verdict}")).or_default() += 1;
            summary.detected += u64::from(reached && result.is_err());
            // The fault is gone: the disk must still hold everything.
            let again = Db::open_with_fs(Arc::new(disk.clone()), DIR, options())
                .and_then(|db| read_state(&db, &w.users()));
            match again {
                Ok(state) if state == reference => {}
                Ok(state) => {
                    summary.losses += 1;
                    failures.push(format!(
                        "lasting damage: {} ({replay}; the faulty open gave {:?})",
                        difference(&reference, &state),
                        result.as_ref().err()
                    ));
                }
                Err(e) => {
                    summary.reopen_failures += 1;
                    failures.push(format!("lasting damage: reopen failed: {e} ({replay})"));
                }
            }
            summary.points += 1;
            summary.states += 2;
            summary.injected += u64::from(reached);
        }
    }
    summary.finish();
    println!("| {} reads per recovery; outcomes {outcomes:#?}", reads.len());
    for failure in failures.iter().take(10) {
        println!("FAILURE: {failure}");
    }
    summary
}

#[test]
fn read_faults_in_recovery_and_queries_are_errors_never_wrong_answers() {
    let w = workload();
    let summary = read_fault_sweep("engine read faults, crashed database", &crashed_mid_workload(&w), &w, 3);
    assert_eq!((summary.losses, summary.reopen_failures), (0, 0));
}

#[test]
fn read_faults_on_flushed_tables_are_errors_never_wrong_answers() {
    let w = workload();
    let summary = read_fault_sweep("engine read faults, closed database", &closed_database(&w), &w, 3);
    assert_eq!((summary.losses, summary.reopen_failures), (0, 0));
}

/// Queries on an open database read table blocks through the file system (on a simulated
/// disk there is no mmap), so read faults reach them: with every read failing, a query on a
/// cold block cache is an I/O error; with every read flipping a bit, a corruption error or
/// the right answer; never a wrong answer. (The sweeps above fault one read at a time.)
#[test]
fn queries_on_an_open_database_under_read_faults_are_errors_never_wrong_answers() {
    let w = workload();
    let base = closed_database(&w);
    let expected = w.model(w.batches.len());
    for action in [FaultAction::Fail(FsErrorKind::Io), FaultAction::FlipReadBit] {
        let faulty = Arc::new(FaultFs::new(Arc::new(copy_disk(&base)), 5));
        let db = Db::open_with_fs(faulty.clone(), DIR, options()).unwrap();
        faulty.add_rule(FaultRule::new(When::Always, action).on_op(OpKind::ReadAt));
        let result = read_state(&db, &w.users());
        assert!(faulty.injected_count() > 0, "{action:?}: the queries made no read");
        match (action, result) {
            (FaultAction::Fail(_), Err(e)) => assert_eq!(e.kind(), ErrorKind::Io, "{e}"),
            (FaultAction::FlipReadBit, Err(e)) => assert_eq!(e.kind(), ErrorKind::Corruption, "{e}"),
            (FaultAction::Delay(_), Err(e)) => panic!("a delay is no fault, yet: {e}"),
            (_, Ok(state)) => assert!(state == expected, "{action:?}: {}", difference(&expected, &state)),
        }
        // Without the fault, the same handle answers right (nothing bad was cached).
        faulty.clear_rules();
        let state = read_state(&db, &w.users()).unwrap();
        assert!(state == expected, "{action:?}, after: {}", difference(&expected, &state));
    }
}

// ---------------------------------------------------------------------------------------
// Damaged and missing files at open.

/// A database with tables, a manifest of several records, and batches in the WAL, left
/// without a clean close.
fn damaged_base() -> (SimFs, Options) {
    let w = workload();
    let options = Options { manifest_rewrite_bytes: 1 << 30, memtable_bytes: 4 << 20, ..options() };
    let sim = SimFs::new();
    let db = Db::open_with_fs(Arc::new(sim.clone()), DIR, options.clone()).unwrap();
    for (i, batch) in w.batches.iter().take(300).enumerate() {
        db.write(&batch.write_batch(), &WriteOptions { sync: true }).unwrap();
        if i % 100 == 99 {
            db.flush().unwrap();
        }
    }
    drop(db);
    (sim, options)
}

fn open_err(sim: &SimFs, options: &Options) -> strata::Error {
    match Db::open_with_fs(Arc::new(sim.clone()), DIR, options.clone()) {
        Ok(_) => panic!("the damaged database opened"),
        Err(e) => e,
    }
}

#[test]
fn a_missing_table_is_refused_as_corruption_naming_the_file() {
    let (sim, options) = damaged_base();
    let loaded = strata::manifest::load(&sim, Path::new(DIR)).unwrap().unwrap();
    let number = *loaded.state.tables.keys().nth(1).unwrap();
    let name = format!("{number:06}.sst");
    sim.remove(&Path::new(DIR).join(&name)).unwrap();
    let err = open_err(&sim, &options);
    assert_eq!(err.kind(), ErrorKind::Corruption, "{err}");
    assert!(err.to_string().contains(&name), "{err}");
}

/// The manifest's first record (the snapshot), with later records after it.
#[test]
fn a_damaged_manifest_record_is_refused_as_corruption_naming_the_manifest() {
    // Header 16 bytes, then the first record: 12-byte header (length, checksum) and body.
    for offset in [16 + 2, 16 + 6, 16 + 12 + 3] {
        let (sim, options) = damaged_base();
        let loaded = strata::manifest::load(&sim, Path::new(DIR)).unwrap().unwrap();
        assert!(loaded.edits >= 3, "{loaded:?}");
        let name = loaded.path.file_name().unwrap().to_string_lossy().into_owned();
        sim.flip_bit(&loaded.path, offset, 1).unwrap();
        let err = open_err(&sim, &options);
        assert_eq!(err.kind(), ErrorKind::Corruption, "flip at {offset}: {err}");
        assert!(err.to_string().contains(&name), "flip at {offset}: {err}");
    }
}

/// A manifest holding only its first record (as after an open), damaged: that record is
/// also the last, but it can never be a torn write (CURRENT names a manifest only once its
/// first record is durable), so it is damage.
#[test]
fn a_damaged_only_manifest_record_is_refused_as_corruption() {
    let (sim, options) = damaged_base();
    drop(Db::open_with_fs(Arc::new(sim.clone()), DIR, options.clone()).unwrap());
    let loaded = strata::manifest::load(&sim, Path::new(DIR)).unwrap().unwrap();
    assert_eq!(loaded.edits, 1);
    sim.flip_bit(&loaded.path, 16 + 12 + 5, 0).unwrap();
    let err = open_err(&sim, &options);
    assert_eq!(err.kind(), ErrorKind::Corruption, "{err}");
    assert!(
        err.to_string().contains(&loaded.path.file_name().unwrap().to_string_lossy().into_owned()),
        "{err}"
    );
}

#[test]
fn a_damaged_current_is_refused_as_corruption_naming_current() {
    let (sim, options) = damaged_base();
    sim.flip_bit(Path::new("/db/CURRENT"), 17, 2).unwrap();
    let err = open_err(&sim, &options);
    assert_eq!(err.kind(), ErrorKind::Corruption, "{err}");
    assert!(err.to_string().contains("CURRENT"), "{err}");
}

/// A record in the middle of a WAL segment (later records follow), in a database that was
/// not flushed since: the open refuses with `Corruption` naming the segment rather than
/// replay a log with a hole.
#[test]
fn a_damaged_mid_log_wal_record_is_refused_as_corruption() {
    let w = workload();
    let options = Options { memtable_bytes: 4 << 20, wal_segment_bytes: 1 << 20, ..options() };
    let sim = SimFs::new();
    let db = Db::open_with_fs(Arc::new(sim.clone()), DIR, options.clone()).unwrap();
    for batch in w.batches.iter().take(40) {
        db.write(&batch.write_batch(), &WriteOptions { sync: true }).unwrap();
    }
    drop(db);
    let segments: Vec<PathBuf> =
        sim.paths().into_iter().filter(|p| p.display().to_string().ends_with(".wal")).collect();
    assert_eq!(segments.len(), 1, "{segments:?}");
    let segment = &segments[0];
    let bytes = sim.contents(segment).unwrap();
    // A record is a header (body length at 8..12) + body.
    let (segment_header, header) = (strata_wal::SEGMENT_HEADER_LEN, strata_wal::RECORD_HEADER_LEN);
    let len_at = |at: usize| u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
    let second = segment_header + header + len_at(segment_header);
    let third = second + header + len_at(second);
    assert!(third + header < bytes.len(), "later records follow");
    for offset in [second + header + 3, second + 9, second + 1] {
        let disk = copy_disk(&sim);
        disk.flip_bit(segment, offset as u64, 4).unwrap();
        let err = open_err(&disk, &options);
        assert_eq!(err.kind(), ErrorKind::Corruption, "flip at {offset}: {err}");
        let name = segment.file_name().unwrap().to_string_lossy().into_owned();
        assert!(err.to_string().contains(&name), "flip at {offset}: {err}");
    }
}

/// A damaged table (a data block, the index, the footer) or a truncated one: the open or
/// the reads fail with `Corruption` naming the table, never a wrong answer.
#[test]
fn a_damaged_table_is_corruption_never_a_wrong_answer() {
    let w = workload();
    let base = closed_database(&w);
    let reference = {
        let db = Db::open_with_fs(Arc::new(copy_disk(&base)), DIR, options()).unwrap();
        read_state(&db, &w.users()).unwrap()
    };
    let tables: Vec<PathBuf> =
        base.paths().into_iter().filter(|p| p.display().to_string().ends_with(".sst")).collect();
    let mut errors = 0;
    for (t, table) in tables.iter().enumerate().step_by(7) {
        let len = base.contents(table).unwrap().len() as u64;
        let name = table.file_name().unwrap().to_string_lossy().into_owned();
        for offset in [0, len / 3, len / 2, len - 40, len - 1] {
            let disk = copy_disk(&base);
            disk.flip_bit(table, offset, (t % 8) as u8).unwrap();
            let result =
                Db::open_with_fs(Arc::new(disk), DIR, options()).and_then(|db| read_state(&db, &w.users()));
            match result {
                Ok(state) => assert!(state == reference, "{name} flipped at {offset}: wrong answer"),
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::Corruption, "{name} flipped at {offset}: {e}");
                    assert!(e.to_string().contains(&name), "{name} flipped at {offset}: {e}");
                    errors += 1;
                }
            }
        }
        // Truncated.
        let disk = copy_disk(&base);
        let file = disk.open(table).unwrap();
        file.truncate(len - 10).unwrap();
        drop(file);
        let err = open_err(&disk, &options());
        assert_eq!(err.kind(), ErrorKind::Corruption, "{name} truncated: {err}");
        assert!(err.to_string().contains(&name), "{name} truncated: {err}");
    }
    assert!(errors > 0);
}

/// A transient bit flip while recovery reads the WAL (the bytes on disk are intact) must not
/// lose a synced batch: the open may fail, or recover everything, and once the fault is gone
/// the disk must still hold every synced batch.
///
/// It does not: when the flip lands in the last record of the last segment, WAL recovery
/// takes the record for a torn write, truncates the segment there and syncs the truncation,
/// so the acknowledged, synced batch is gone for good. Repro: workload seed 7, batches 0..10
/// written with `sync = true` (one segment, no flush), power loss, then an open through
/// `FaultFs` seed 44 with `FlipReadBit` on every `read_at` of `*.wal`: the open succeeds
/// without batch 9, and a clean open afterwards lacks it too (11 of the 200 seeds here).
#[test]
fn a_read_flip_in_the_last_wal_record_never_loses_a_synced_batch() {
    let w = workload();
    let options = Options { memtable_bytes: 4 << 20, wal_segment_bytes: 1 << 20, ..options() };
    let sim = SimFs::new();
    let db = Db::open_with_fs(Arc::new(sim.clone()), DIR, options.clone()).unwrap();
    for batch in w.batches.iter().take(10) {
        db.write(&batch.write_batch(), &WriteOptions { sync: true }).unwrap();
    }
    drop(db);
    sim.crash(CrashMode::DurableOnly);
    let expected = w.model(10);
    let mut lost = Vec::new();
    for seed in 0..200 {
        let disk = copy_disk(&sim);
        let faulty = Arc::new(FaultFs::new(Arc::new(disk.clone()), seed));
        let flip =
            FaultRule::new(When::Always, FaultAction::FlipReadBit).on_op(OpKind::ReadAt).on_path(".wal");
        faulty.add_rule(flip);
        match Db::open_with_fs(faulty, DIR, options.clone()).and_then(|db| read_state(&db, &w.users())) {
            Ok(state) if state != expected => lost.push(format!(
                "seed {seed}: the faulty open answered wrong: {}",
                difference(&expected, &state)
            )),
            Ok(_) => {}
            Err(e) => assert!(matches!(e.kind(), ErrorKind::Io | ErrorKind::Corruption), "seed {seed}: {e}"),
        }
        let db = Db::open_with_fs(Arc::new(disk), DIR, options.clone()).unwrap();
        let state = read_state(&db, &w.users()).unwrap();
        if state != expected {
            lost.push(format!("seed {seed}: lost for good: {}", difference(&expected, &state)));
        }
    }
    assert!(lost.is_empty(), "{} violations, first: {}", lost.len(), lost[0]);
}

/// `close` on a database that a failed background flush has poisoned returns `Ok`: the
/// I/O error reaches no caller. (No acknowledged write is lost: `close` still syncs the WAL,
/// which the next open replays; but the memtables were not flushed, and the caller is told
/// all is well on a disk that fails.) `close` skips its flush when the database is poisoned
/// and then returns the WAL's close result alone.
///
/// Found by the EIO/ENOSPC campaigns with `STRATA_ENGINE_SEED=13` (ENOSPC or EIO at op 1421,
/// `sync_dir /db/wal`: the WAL release of the last background flush; every batch
/// acknowledged, `close` Ok) and `=12` (ENOSPC at op 1421). Minimized: fail every creation
/// of a `*.sst.tmp`, write until a memtable rotation's background flush hits it, then
/// `close`: `Ok` in 20 runs of 20.
#[test]
fn close_reports_a_failed_background_flush() {
    let w = workload();
    let sim = SimFs::new();
    let faulty = Arc::new(FaultFs::new(Arc::new(sim.clone()), 1));
    let db = Db::open_with_fs(faulty.clone(), DIR, options()).unwrap();
    let table = FaultRule::new(When::Always, FaultAction::Fail(FsErrorKind::Io)).on_op(OpKind::Create);
    faulty.add_rule(table.on_path(".sst.tmp"));
    for batch in w.batches.iter().cycle() {
        db.write(&batch.write_batch(), &WriteOptions { sync: false }).unwrap();
        if faulty.injected_count() > 0 {
            break;
        }
    }
    // The flush thread fails and poisons the database right after the injected fault.
    std::thread::sleep(std::time::Duration::from_millis(100));
    let closed = db.close();
    assert!(closed.is_err(), "close returned Ok after a background flush failed: {closed:?}");
}
