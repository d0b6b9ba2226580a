//! The crash-state explorer: one run of an engine workload, and a power loss just before
//! every operation that changes the disk, in several crash modes, each recovered and checked.
//!
//! [`explore`] plays the workload on a [`ProbeFs`]. Before each disk-changing operation
//! the probe takes [`SimFs::crash_image`]s of the disk as it is (so the run itself goes on
//! undisturbed) in the modes the [`Plan`] asks for at that point:
//! [`CrashMode::DurableOnly`] everywhere, and at every `random_stride`-th point `reorder`
//! seeds of [`CrashMode::Reorder`] plus one [`CrashMode::TornTail`] and one
//! [`CrashMode::GarbageTail`]. Worker threads recover each image with
//! [`recover_and_check`]: it must open, hold the model of a prefix `j` of the batches with
//! `durable <= j <= attempted` (the counts when the point was reached: every synced
//! acknowledgement present byte for byte, batches atomic, no hole, nothing phantom), and stay
//! the same across a clean close, a reopen and one more power loss. Identical images (most
//! `DurableOnly` ones: the durable disk changes only at syncs) are recovered once and their
//! prefix reused, so "states" counts every image and "distinct" the recoveries.
//!
//! Every `recovery_stride`-th distinct state is also crashed during its own recovery: the
//! reopen runs on a probe that takes a `DurableOnly` and a `Reorder` image before each of its
//! operations, and each of those must recover to an allowed prefix too.
//!
//! The [`Lint`] watches the same run (rules in [`crate::lint`]).
//!
//! The engine's flush thread runs beside the writer, so operation indices can differ by a
//! few from run to run; a failure names the point, its operation, the mode and its seed,
//! and the workload seed, and `STRATA_CRASH_POINT=N` restricts a rerun to points near N.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread;

use parking_lot::Mutex;
use strata::{Db, Options};
use strata_vfs::{CrashMode, SimFs};

use crate::engine_workload::{read_state, recover_and_check, recover_once, Step, Workload, DIR};
use crate::lint::{Ack, Lint};
use crate::probe::{Point, ProbeFs};
use crate::summary::Summary;

/// Which crash states to explore.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Seeds of [`CrashMode::Reorder`] at each point that gets random modes.
    pub reorder_seeds: u64,
    /// Random modes (reorder, torn tail, garbage tail) at every `random_stride`-th point (0:
    /// none).
    pub random_stride: u64,
    /// A crash during recovery of every `recovery_stride`-th distinct state (0: none).
    pub recovery_stride: u64,
    /// The stability of recovery (a clean close, a reopen, a power loss and a reopen give
    /// the same contents) checked on every `stability_stride`-th distinct state (0: none).
    pub stability_stride: u64,
    /// Only points within 8 of this one (a replay).
    pub only_near: Option<u64>,
    /// Threads recovering states.
    pub workers: usize,
}

/// What [`explore`] found.
#[derive(Debug)]
pub struct Report {
    /// Figures for the summary table.
    pub summary: Summary,
    /// Each violation, with what replays it.
    pub failures: Vec<String>,
    /// Syscall-order rules broken.
    pub lint_violations: Vec<String>,
    /// Flushes the engine made during the run.
    pub flushes: u64,
    /// Compactions (runs of any kind) the engine made during the run.
    pub compactions: u64,
    /// Partitions holding tables at the end.
    pub partitions: usize,
    /// Manifests created during the run.
    pub manifests: u64,
}

/// Where the writer is, as the probe reads it.
#[derive(Default)]
struct Progress {
    /// Batches whose write has started.
    attempted: AtomicUsize,
    /// Batches the disk must hold after a power loss.
    durable: AtomicUsize,
    /// Manifests created so far.
    manifests: AtomicUsize,
}

/// One crash state to recover.
struct Job {
    image: SimFs,
    what: String,
    lo: usize,
    hi: usize,
}

#[derive(Default)]
struct Tally {
    states: u64,
    distinct: u64,
    recovery_states: u64,
    synced_checked: u64,
    failures: Vec<String>,
    /// Fingerprint of a recovered disk -> the prefix it recovered to, or why it failed.
    seen: HashMap<u64, Result<usize, String>>,
}

/// An order-independent digest of a disk: every path and its bytes.
fn fingerprint(sim: &SimFs) -> u64 {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    for path in sim.paths() {
        hasher.update(path.as_os_str().as_encoded_bytes());
        let bytes = sim.contents(&path).unwrap_or_default();
        hasher.update(&(bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
    }
    hasher.digest()
}

fn mix(a: u64, b: u64) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(&b.to_le_bytes(), a)
}

/// The crash modes tried at point `index`.
fn modes(plan: &Plan, seed: u64, index: u64) -> Vec<CrashMode> {
    let mut modes = vec![CrashMode::DurableOnly];
    if plan.random_stride > 0 && index.is_multiple_of(plan.random_stride) {
        let seed = mix(seed, index);
        modes.extend((0..plan.reorder_seeds).map(|k| CrashMode::Reorder { seed: mix(seed, k) }));
        modes.push(CrashMode::TornTail { seed });
        modes.push(CrashMode::GarbageTail { seed });
    }
    modes
}

/// Recovers `job`'s image (or reuses the recovery of an identical one) and records what it
/// found; one distinct image in `recovery_stride` (picked by fingerprint) is crashed during
/// its recovery as well.
fn check(job: Job, w: &Workload, options: &Options, plan: &Plan, tally: &Mutex<Tally>) {
    let print = fingerprint(&job.image);
    let known = tally.lock().seen.get(&print).cloned();
    let fresh = known.is_none();
    let crash_recovery = fresh && plan.recovery_stride > 0 && print.is_multiple_of(plan.recovery_stride);
    // `recover_and_check` changes the image (it reopens and crashes it), so keep a copy.
    let copy = crash_recovery.then(|| job.image.crash_image(CrashMode::DurableOnly));
    // Recovery's stability (close, reopen, power loss, reopen) costs three more opens: a
    // sample of the states, again picked by fingerprint, checks it.
    let stable = plan.stability_stride > 0 && (print >> 8).is_multiple_of(plan.stability_stride);
    let result = known.unwrap_or_else(|| {
        let recovered = match stable {
            true => recover_and_check(&job.image, w, options, job.lo, job.hi),
            false => recover_once(&job.image, w, options, job.lo, job.hi),
        };
        recovered.map_err(|v| v.to_string())
    });
    let verdict = match &result {
        Ok(j) if (job.lo..=job.hi).contains(j) => Ok(()),
        Ok(j) => Err(format!("recovered batches 0..{j}, outside {}..={}", job.lo, job.hi)),
        Err(e) => Err(e.clone()),
    };
    let mut t = tally.lock();
    t.states += 1;
    if fresh {
        t.distinct += 1;
        t.seen.insert(print, result);
    }
    match verdict {
        Ok(()) => t.synced_checked += job.lo as u64,
        Err(e) => t.failures.push(format!("{}: {e}", job.what)),
    }
    drop(t);
    if let Some(copy) = copy {
        crash_during_recovery(&copy, &job, w, options, tally);
    }
}

/// A crashing recovery of `disk`: a power loss before each of its disk-changing operations
/// (in two modes), then each of those disks must still recover to an allowed prefix.
fn crash_during_recovery(disk: &SimFs, job: &Job, w: &Workload, options: &Options, tally: &Mutex<Tally>) {
    let images = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&images);
    let probe = ProbeFs::new(
        disk.clone(),
        Box::new(move |point: &Point<'_>| {
            let mut sink = sink.lock();
            for mode in [CrashMode::DurableOnly, CrashMode::Reorder { seed: point.index }] {
                let what =
                    format!("recovery op {} ({} {}), {mode:?}", point.index, point.op, point.path.display());
                sink.push((what, point.sim.crash_image(mode)));
            }
        }),
    );
    let first =
        Db::open_with_fs(Arc::new(probe), DIR, options.clone()).map_err(|e| e.to_string()).and_then(|db| {
            let state = read_state(&db, &w.users()).map_err(|e| e.to_string())?;
            w.check(&state, job.lo, job.hi)
        });
    let images = std::mem::take(&mut *images.lock());
    let mut failures = Vec::new();
    if let Err(e) = first {
        failures.push(format!("{}: the recovery probed for crashes failed: {e}", job.what));
    }
    let count = images.len() as u64;
    for (what, image) in images {
        if let Err(e) = recover_once(&image, w, options, job.lo, job.hi) {
            failures.push(format!("{}, then a crash at {what}: {e}", job.what));
        }
    }
    let mut t = tally.lock();
    t.recovery_states += count;
    t.failures.extend(failures);
}

fn worker(rx: &Mutex<Receiver<Job>>, w: &Workload, options: &Options, plan: &Plan, tally: &Mutex<Tally>) {
    loop {
        let job = rx.lock().recv();
        match job {
            Ok(job) => check(job, w, options, plan, tally),
            Err(_) => return,
        }
    }
}

/// Plays `w` on `options` and explores its crash states per `plan`. See the module docs.
pub fn explore(name: &str, w: &Workload, options: &Options, plan: &Plan) -> Report {
    let mut summary = Summary::new(name);
    let sim = SimFs::new();
    let progress = Arc::new(Progress::default());
    let lint = Arc::new(Mutex::new(Lint::new(Path::new(DIR))));
    let tally = Mutex::new(Tally::default());
    let (tx, rx) = sync_channel::<Job>(4 * plan.workers.max(1));
    let rx = Mutex::new(rx);
    let mut run = RunResult::default();
    thread::scope(|scope| {
        for _ in 0..plan.workers.max(1) {
            scope.spawn(|| worker(&rx, w, options, plan, &tally));
        }
        let probe = {
            let (progress, lint, plan, seed) =
                (Arc::clone(&progress), Arc::clone(&lint), plan.clone(), w.seed);
            let tx = tx.clone();
            move |point: &Point<'_>| {
                lint.lock().before(point);
                if point.op == strata_vfs::OpKind::Create
                    && point.path.to_string_lossy().contains("MANIFEST-")
                {
                    progress.manifests.fetch_add(1, Ordering::Relaxed);
                }
                if plan.only_near.is_some_and(|near| point.index.abs_diff(near) > 8) {
                    return;
                }
                let lo = progress.durable.load(Ordering::SeqCst);
                let hi = progress.attempted.load(Ordering::SeqCst);
                for mode in modes(&plan, seed, point.index) {
                    let what = format!(
                        "workload seed {seed}, crash before op {} ({} {}), {mode:?}",
                        point.index,
                        point.op,
                        point.path.display()
                    );
                    let image = point.sim.crash_image(mode);
                    // A send fails only when every worker is gone, which the scope rules out.
                    let _ = tx.send(Job { image, what, lo, hi });
                }
            }
        };
        let fs = ProbeFs::new(sim.clone(), Box::new(probe));
        run = play(&fs, w, options, &progress, &lint);
        // The state after the last operation too.
        let (lo, hi) = (progress.durable.load(Ordering::SeqCst), progress.attempted.load(Ordering::SeqCst));
        let what = format!("workload seed {}, crash after the last op (op {})", w.seed, fs.operations());
        let _ = tx.send(Job { image: sim.crash_image(CrashMode::DurableOnly), what, lo, hi });
        run.points = fs.operations() + 1;
        drop(fs);
        drop(tx);
    });
    let tally = tally.into_inner();
    let lint = std::mem::take(&mut *lint.lock());
    summary.points = run.points;
    summary.states = tally.states + tally.recovery_states;
    summary.distinct_states = tally.distinct;
    summary.acked = run.acked as u64;
    summary.synced_checked = tally.synced_checked;
    summary.lint_checks = lint.checks;
    summary.lint_violations = lint.violations.len() as u64;
    let mut failures = tally.failures;
    failures.extend(run.failure);
    summary.losses = failures.iter().filter(|f| !f.contains("reopen failed")).count() as u64;
    summary.reopen_failures = failures.len() as u64 - summary.losses;
    Report {
        summary,
        failures,
        lint_violations: lint.violations,
        flushes: run.flushes,
        compactions: run.compactions,
        partitions: run.partitions,
        manifests: progress.manifests.load(Ordering::Relaxed) as u64,
    }
}

#[derive(Default)]
struct RunResult {
    points: u64,
    acked: usize,
    flushes: u64,
    compactions: u64,
    partitions: usize,
    failure: Option<String>,
}

/// Plays the workload's steps, keeping `progress` and the lint's acknowledgements up to
/// date, then closes. No fault is injected, so every call must succeed.
fn play(fs: &ProbeFs, w: &Workload, options: &Options, progress: &Progress, lint: &Mutex<Lint>) -> RunResult {
    let mut run = RunResult::default();
    let ack = |kind: Ack, what: &str| fs.quiesced(|sim| lint.lock().acknowledged(sim, kind, what));
    let db = match Db::open_with_fs(Arc::new(fs.clone()), DIR, options.clone()) {
        Ok(db) => db,
        Err(e) => {
            run.failure = Some(format!("workload seed {}: open failed: {e}", w.seed));
            return run;
        }
    };
    for step in &w.steps {
        let (what, result) = match *step {
            Step::Write(i) => {
                let batch = &w.batches[i];
                progress.attempted.store(i + 1, Ordering::SeqCst);
                let result = db.write(&batch.write_batch(), &batch.write_options());
                if result.is_ok() {
                    run.acked = i + 1;
                    if batch.sync {
                        progress.durable.store(i + 1, Ordering::SeqCst);
                        ack(Ack::SyncWrite, &format!("synced write of batch {i}"));
                    }
                }
                (format!("write of batch {i}"), result)
            }
            Step::Flush => ("flush".to_string(), db.flush()),
            Step::SyncWal => ("sync_wal".to_string(), db.sync_wal()),
            Step::Compact => ("compact".to_string(), db.compact()),
        };
        if let Err(e) = result {
            run.failure = Some(format!("workload seed {}: {what} failed without a fault: {e}", w.seed));
            return run;
        }
        if !matches!(step, Step::Write(_)) {
            progress.durable.store(run.acked, Ordering::SeqCst);
            ack(if *step == Step::SyncWal { Ack::SyncWrite } else { Ack::Persisted }, &what);
        }
    }
    let stats = db.stats();
    run.flushes = stats.flushes;
    run.compactions = stats.compaction.sequence.runs
        + stats.compaction.cross.runs
        + stats.compaction.erasure.runs
        + stats.compaction.full.runs;
    run.partitions = stats.partitions.len();
    match db.close() {
        Ok(()) => {
            progress.durable.store(run.acked, Ordering::SeqCst);
            ack(Ack::Persisted, "close");
        }
        Err(e) => run.failure = Some(format!("workload seed {}: close failed: {e}", w.seed)),
    }
    run
}
