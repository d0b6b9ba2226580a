//! Misdirected and lost writes (issue #7, item 4): a write that lands at another offset, or
//! is dropped while success is reported, must be caught by the checksum its parent holds,
//! and never served as data.
//!
//! A pass-through file system logs every append of a workload run (path, offset, bytes).
//! Two bases on the simulated disk, each with one exact model (every acknowledged batch is
//! durable):
//! - `closed`: the engine workload played to its end and closed cleanly;
//! - `crashed`: the workload stopped right after a `sync_wal` past half way, the database
//!   dropped without `close`, then a power loss (`CrashMode::DurableOnly`): the live WAL
//!   segments hold synced, acknowledged batches.
//!
//! For sampled logged extents whose bytes are still in a file of the base (a `*.tmp` name
//! is mapped to the name it was renamed to), each fault is made on a fresh copy of the base
//! with `SimFs::overwrite`:
//! - `lost`: the extent reads as zeros (allocated, never written);
//! - `stale`: it holds the bytes of another logged extent of the same kind of file (a
//!   well-formed but wrong block, of the same length when one exists);
//! - `misdirected-here`: lost, and its bytes land over another extent of the same file;
//! - `misdirected-other`: lost, and its bytes land at the same offset of another file of
//!   the same kind.
//!
//! Then the database is opened and every user read (full range, `latest`, `get` of every
//! model key). An error must be `Corruption` naming a damaged file; an answer must be
//! exactly the model (a wrong answer fails the test). A fault that changed bytes and went
//! unreported fails the test too, except:
//! - when it changed only files nothing references (an open of the undamaged base removes
//!   them unread: orphan tables, a retired manifest);
//! - a lost or stale write of the final extent of the newest WAL segment: it looks exactly
//!   like a power loss before that write (no parent holds a checksum of the log's tail), so
//!   the database must hold the model of a prefix of the batches;
//! - the same at the final record of the current manifest (taken for a torn edit): the
//!   database must still hold the whole model, from the WAL.
//!
//! These are counted apart, per (file kind, fault).
//!
//! Env knobs: `STRATA_LOST_SEED` (first workload seed, default 7), `STRATA_LOST_WORKLOADS`
//! (workload seeds per campaign, default 40, times `STRATA_FAULT_SCALE`),
//! `STRATA_LOST_BATCHES` (default 320), `STRATA_LOST_SAMPLE_SEED` (which extents, default
//! 1), `STRATA_LOST_EXTENTS` (extents tried per base, default 400 times the scale: every
//! extent of these bases, about 50). Every failure names the base, the fault, the file and
//! extent, and the seeds that replay it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::cast_possible_truncation)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use strata::{Db, Error, ErrorKind};
use strata_tests::engine_workload::{options, play, read_state, run, Outcome, State, Step, Workload, DIR};
use strata_tests::env_size;
use strata_tests::summary::Summary;
use strata_vfs::{CrashMode, File, FileSystem, LockGuard, SimFs, SimRng};

// ---------------------------------------------------------------------------------------
// The append log.

/// One append as it reached the file: where, and what.
#[derive(Clone, Debug)]
struct Extent {
    /// The file's final name (a `*.tmp` build is renamed into place).
    path: PathBuf,
    offset: u64,
    bytes: Vec<u8>,
}

impl Extent {
    fn end(&self) -> u64 {
        self.offset + self.bytes.len() as u64
    }
}

impl fmt::Display for Extent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}+{}", self.path.display(), self.offset, self.bytes.len())
    }
}

type AppendLog = Arc<Mutex<Vec<Extent>>>;

/// Tables, WAL segments and CURRENT are written under `<name>.tmp` and renamed: their bytes
/// end up under `<name>`.
fn final_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match name.strip_suffix(".tmp") {
        Some(stem) => path.with_file_name(stem),
        None => path.to_path_buf(),
    }
}

/// A pass-through file system that logs every successful append.
#[derive(Debug)]
struct LogFs {
    inner: Arc<dyn FileSystem>,
    log: AppendLog,
}

impl LogFs {
    fn wrap(&self, file: strata_vfs::Result<Box<dyn File>>) -> strata_vfs::Result<Box<dyn File>> {
        Ok(Box::new(LogFile { inner: file?, log: Arc::clone(&self.log) }))
    }
}

impl FileSystem for LogFs {
    fn create(&self, path: &Path) -> strata_vfs::Result<Box<dyn File>> {
        self.wrap(self.inner.create(path))
    }
    fn open(&self, path: &Path) -> strata_vfs::Result<Box<dyn File>> {
        self.wrap(self.inner.open(path))
    }
    fn rename(&self, from: &Path, to: &Path) -> strata_vfs::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove(&self, path: &Path) -> strata_vfs::Result<()> {
        self.inner.remove(path)
    }
    fn list(&self, dir: &Path) -> strata_vfs::Result<Vec<String>> {
        self.inner.list(dir)
    }
    fn create_dir(&self, path: &Path) -> strata_vfs::Result<()> {
        self.inner.create_dir(path)
    }
    fn sync_dir(&self, path: &Path) -> strata_vfs::Result<()> {
        self.inner.sync_dir(path)
    }
    fn lock(&self, path: &Path) -> strata_vfs::Result<LockGuard> {
        self.inner.lock(path)
    }
}

#[derive(Debug)]
struct LogFile {
    inner: Box<dyn File>,
    log: AppendLog,
}

impl LogFile {
    /// Each file has one writer, so its length before the append is where the bytes go.
    fn logged(
        &self,
        bufs: &[&[u8]],
        append: impl FnOnce() -> strata_vfs::Result<()>,
    ) -> strata_vfs::Result<()> {
        let offset = self.inner.len()?;
        append()?;
        let extent = Extent { path: final_path(self.inner.path()), offset, bytes: bufs.concat() };
        self.log.lock().push(extent);
        Ok(())
    }
}

impl File for LogFile {
    fn path(&self) -> &Path {
        self.inner.path()
    }
    fn append(&self, data: &[u8]) -> strata_vfs::Result<()> {
        self.logged(&[data], || self.inner.append(data))
    }
    fn append_vectored(&self, bufs: &[&[u8]]) -> strata_vfs::Result<()> {
        self.logged(bufs, || self.inner.append_vectored(bufs))
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> strata_vfs::Result<()> {
        self.inner.read_at(offset, buf)
    }
    fn len(&self) -> strata_vfs::Result<u64> {
        self.inner.len()
    }
    fn sync_data(&self) -> strata_vfs::Result<()> {
        self.inner.sync_data()
    }
    fn truncate(&self, len: u64) -> strata_vfs::Result<()> {
        self.inner.truncate(len)
    }
}

/// The kinds of file whose checksums are under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Wal,
    Table,
    Manifest,
    Current,
}

impl Kind {
    fn of(path: &Path) -> Option<Kind> {
        let name = path.file_name()?.to_string_lossy().into_owned();
        if name.ends_with(".wal") {
            Some(Kind::Wal)
        } else if name.ends_with(".sst") {
            Some(Kind::Table)
        } else if name.starts_with("MANIFEST-") {
            Some(Kind::Manifest)
        } else {
            (name == "CURRENT").then_some(Kind::Current)
        }
    }
}

// ---------------------------------------------------------------------------------------
// The bases.

/// A disk (everything on it durable), what it holds, and the appends that made it.
struct Base {
    name: &'static str,
    disk: SimFs,
    model: State,
    acked: usize,
    /// Every logged append, for stale bytes.
    logged: Vec<Extent>,
    /// The logged appends still on the disk, by (path, offset).
    extents: Vec<Extent>,
    /// Files an open of the undamaged disk removes unread: nothing references them.
    unreferenced: BTreeSet<PathBuf>,
    /// The manifest CURRENT names.
    manifest: PathBuf,
}

/// The workloads of a campaign: `STRATA_LOST_WORKLOADS` (times the scale) consecutive seeds.
fn workloads() -> impl Iterator<Item = Workload> {
    let seed = env_size("STRATA_LOST_SEED", 7);
    let count = env_size("STRATA_LOST_WORKLOADS", 40) * env_size("STRATA_FAULT_SCALE", 1);
    let batches = env_size("STRATA_LOST_BATCHES", 320) as usize;
    (seed..seed + count).map(move |s| Workload::generate(s, batches))
}

fn logged_fs(sim: &SimFs) -> (Arc<dyn FileSystem>, AppendLog) {
    let log = AppendLog::default();
    (Arc::new(LogFs { inner: Arc::new(sim.clone()), log: Arc::clone(&log) }), log)
}

fn closed_base(w: &Workload) -> Base {
    let sim = SimFs::new();
    let (fs, log) = logged_fs(&sim);
    let outcome = run(fs, w, &options());
    assert!(outcome.closed, "workload seed {}: {:?}", w.seed, outcome.failure);
    let disk = sim.crash_image(CrashMode::DurableOnly);
    let logged = log.lock().clone();
    finish("closed", w, disk, outcome.acked, logged)
}

/// Stops right after the first `sync_wal` past half the batches: everything acknowledged
/// is durable, in tables or in live WAL segments.
fn crashed_base(w: &Workload) -> Base {
    let half = w.steps.iter().position(|s| *s == Step::Write(w.batches.len() / 2)).unwrap();
    let sync = w.steps[half..].iter().position(|s| *s == Step::SyncWal);
    let cut = half + sync.unwrap_or_else(|| panic!("workload seed {}: no sync_wal past half way", w.seed));
    let mut stopped = w.clone();
    stopped.steps.truncate(cut + 1);
    let sim = SimFs::new();
    let (fs, log) = logged_fs(&sim);
    let db = Db::open_with_fs(fs, DIR, options()).unwrap();
    let mut outcome = Outcome::default();
    play(&db, &stopped, &mut outcome);
    assert!(outcome.failure.is_none(), "workload seed {}: {:?}", w.seed, outcome.failure);
    drop(db);
    let disk = sim.crash_image(CrashMode::DurableOnly);
    let logged = log.lock().clone();
    finish("crashed", w, disk, outcome.acked, logged)
}

fn finish(name: &'static str, w: &Workload, disk: SimFs, acked: usize, logged: Vec<Extent>) -> Base {
    let mut surviving = BTreeMap::new();
    for extent in logged.iter().filter(|e| Kind::of(&e.path).is_some()) {
        let Some(bytes) = disk.contents(&extent.path) else { continue };
        let (start, end) = (extent.offset as usize, extent.end() as usize);
        if bytes.get(start..end) == Some(&extent.bytes[..]) {
            surviving.insert((extent.path.clone(), extent.offset), extent.clone());
        }
    }
    let manifest = strata::manifest::load(&disk, Path::new(DIR)).unwrap().unwrap().path;
    let extents = surviving.into_values().collect();
    let unreferenced = BTreeSet::new();
    let mut base = Base { name, disk, model: w.model(acked), acked, logged, extents, unreferenced, manifest };
    let opened = copy_of(&base);
    let db = Db::open_with_fs(Arc::new(opened.clone()), DIR, options()).unwrap();
    let state = read_state(&db, &w.users()).unwrap();
    assert!(state == base.model, "base {name} (workload seed {}) does not hold its model", w.seed);
    drop(db);
    // Every open replaces the manifest it loaded: that one was read, not unreferenced.
    let gone = base.disk.paths().into_iter().filter(|p| opened.contents(p).is_none() && *p != base.manifest);
    base.unreferenced = gone.collect();
    base
}

fn copy_of(base: &Base) -> SimFs {
    strata_tests::engine_workload::copy_disk(&base.disk)
}

// ---------------------------------------------------------------------------------------
// The faults.

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    Lost,
    Stale,
    MisdirectedHere,
    MisdirectedOther,
}

impl Fault {
    const ALL: [Fault; 4] = [Fault::Lost, Fault::Stale, Fault::MisdirectedHere, Fault::MisdirectedOther];

    fn name(self) -> &'static str {
        match self {
            Fault::Lost => "lost",
            Fault::Stale => "stale",
            Fault::MisdirectedHere => "misdirected-here",
            Fault::MisdirectedOther => "misdirected-other",
        }
    }
}

/// A fault made on a disk: what was done, and which files' bytes it changed.
struct Injection {
    what: String,
    changed: Vec<PathBuf>,
}

fn pick<'a, T>(rng: &mut SimRng, items: &[&'a T]) -> Option<&'a T> {
    items.get(rng.below(items.len() as u64) as usize).copied()
}

/// Writes `bytes` at `offset` of `path`, cut at the end of the file (a write past the end of
/// an append-only file would have been an append, which the engine's length checks see).
fn land(disk: &SimFs, path: &Path, offset: u64, bytes: &[u8]) {
    let len = disk.contents(path).map_or(0, |c| c.len() as u64);
    let fits = len.saturating_sub(offset).min(bytes.len() as u64) as usize;
    disk.overwrite(path, offset, &bytes[..fits]).unwrap();
}

/// Makes `fault` on extent `e` of `disk` (a copy of `base`); `None` when the fault has no
/// target here (no other extent in the file, no other file of the kind).
fn inject(base: &Base, disk: &SimFs, e: &Extent, fault: Fault, rng: &mut SimRng) -> Option<Injection> {
    let kind = Kind::of(&e.path);
    let zeros = vec![0u8; e.bytes.len()];
    let (what, touched) = match fault {
        Fault::Lost => {
            disk.overwrite(&e.path, e.offset, &zeros).unwrap();
            ("zeros".to_string(), vec![e.path.clone()])
        }
        Fault::Stale => {
            let others: Vec<&Extent> =
                base.logged.iter().filter(|s| Kind::of(&s.path) == kind && s.bytes != e.bytes).collect();
            let same_len: Vec<&Extent> =
                others.iter().copied().filter(|s| s.bytes.len() == e.bytes.len()).collect();
            let source = pick(rng, if same_len.is_empty() { &others } else { &same_len })?;
            let mut bytes = source.bytes.clone();
            bytes.resize(e.bytes.len(), 0);
            disk.overwrite(&e.path, e.offset, &bytes).unwrap();
            (format!("the bytes of {source}"), vec![e.path.clone()])
        }
        Fault::MisdirectedHere => {
            let targets: Vec<&Extent> =
                base.extents.iter().filter(|t| t.path == e.path && t.offset != e.offset).collect();
            let target = pick(rng, &targets)?;
            disk.overwrite(&e.path, e.offset, &zeros).unwrap();
            land(disk, &e.path, target.offset, &e.bytes);
            (format!("zeros; its bytes landed at offset {}", target.offset), vec![e.path.clone()])
        }
        Fault::MisdirectedOther => {
            let files: BTreeSet<&PathBuf> = base
                .extents
                .iter()
                .filter(|t| Kind::of(&t.path) == kind && t.path != e.path && t.end() > e.offset)
                .map(|t| &t.path)
                .collect();
            let target = pick(rng, &files.into_iter().collect::<Vec<_>>())?.clone();
            disk.overwrite(&e.path, e.offset, &zeros).unwrap();
            land(disk, &target, e.offset, &e.bytes);
            (format!("zeros; its bytes landed in {}", target.display()), vec![e.path.clone(), target])
        }
    };
    let changed = touched.into_iter().filter(|p| disk.contents(p) != base.disk.contents(p)).collect();
    Some(Injection { what, changed })
}

// ---------------------------------------------------------------------------------------
// The verdicts.

/// Where a lost write can pass for a power loss: the final extent of a log whose tail no
/// parent holds a checksum of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tail {
    None,
    /// The final records of the newest WAL segment.
    Wal,
    /// The final record of the current manifest (not its first: CURRENT names a manifest
    /// only once that is durable).
    Manifest,
}

#[derive(Debug)]
enum Verdict {
    DetectedAtOpen,
    DetectedOnRead,
    /// The fault left every byte as it was.
    Harmless,
    /// It changed only files nothing references, which the open removes unread.
    Unreferenced,
    /// A lost write of the newest WAL segment's final records: the database holds the
    /// model of a prefix, `lost` batches short.
    LostWalTail {
        lost: usize,
    },
    /// A lost write of the current manifest's final edit, taken for a torn one; the WAL
    /// still held what the edit recorded, so nothing was lost.
    LostManifestTail,
    Wrong(String),
    Undetected,
}

/// An error is a detection only if it says the data is damaged and where.
fn names_damage(error: &Error, changed: &[PathBuf]) -> bool {
    let text = error.to_string();
    let named = changed.iter().any(|p| p.file_name().is_some_and(|n| text.contains(&*n.to_string_lossy())));
    error.kind() == ErrorKind::Corruption && named
}

fn evaluate(w: &Workload, base: &Base, disk: SimFs, changed: &[PathBuf], tail: Tail) -> Verdict {
    let bad_error = |what: &str, e: &Error| {
        Verdict::Wrong(format!("{what}: {e} [{:?}], naming no damaged file", e.kind()))
    };
    let db = match Db::open_with_fs(Arc::new(disk), DIR, options()) {
        Ok(db) => db,
        Err(e) if names_damage(&e, changed) => return Verdict::DetectedAtOpen,
        Err(e) => return bad_error("open", &e),
    };
    let (expected, lost) = if tail == Tail::Wal {
        match read_state(&db, &w.users()) {
            Ok(state) => match w.check(&state, 0, base.acked) {
                Ok(j) => (w.model(j), base.acked - j),
                Err(m) => return Verdict::Wrong(format!("after a lost WAL tail: {m}")),
            },
            Err(e) if names_damage(&e, changed) => return Verdict::DetectedOnRead,
            Err(e) => return bad_error("read", &e),
        }
    } else {
        (base.model.clone(), 0)
    };
    match check_reads(&db, &w.users(), &expected, changed) {
        Err(m) => Verdict::Wrong(m),
        Ok(true) => Verdict::DetectedOnRead,
        Ok(false) if changed.is_empty() => Verdict::Harmless,
        Ok(false) if changed.iter().all(|p| base.unreferenced.contains(p)) => Verdict::Unreferenced,
        Ok(false) if tail == Tail::Wal => Verdict::LostWalTail { lost },
        Ok(false) if tail == Tail::Manifest => Verdict::LostManifestTail,
        Ok(false) => Verdict::Undetected,
    }
}

/// Asks every question of every user: the full range, `latest`, and `get` of each key of
/// `expected`. Each answer must be `expected` or an error naming a damaged file. Returns
/// whether any such error came back; `Err` describes the first wrong answer.
fn check_reads(db: &Db, users: &[u64], expected: &State, changed: &[PathBuf]) -> Result<bool, String> {
    let mut detected = false;
    let mut judge = |what: String, e: Error| {
        if names_damage(&e, changed) {
            detected = true;
            Ok(())
        } else {
            Err(format!("{what}: {e} [{:?}], naming no damaged file", e.kind()))
        }
    };
    for &user in users {
        let want: Vec<(i64, &[u8])> =
            expected.range((user, i64::MIN)..=(user, i64::MAX)).map(|(k, v)| (k.1, &v[..])).collect();
        let range: Result<Vec<(i64, Vec<u8>)>, Error> =
            db.range(user, ..).and_then(|it| it.map(|e| e.map(|e| (e.ts, e.payload.to_vec()))).collect());
        match range {
            Ok(got) if got.iter().map(|(t, p)| (*t, &p[..])).eq(want.iter().copied()) => {}
            Ok(got) => {
                return Err(format!(
                    "user {user}: range gives {} events, the model {}",
                    got.len(),
                    want.len()
                ))
            }
            Err(e) => judge(format!("user {user}: range"), e)?,
        }
        match db.latest(user, 8) {
            Ok(got) if got.iter().map(|e| (e.ts, &e.payload[..])).eq(want.iter().rev().take(8).copied()) => {}
            Ok(_) => return Err(format!("user {user}: latest(8) differs from the model")),
            Err(e) => judge(format!("user {user}: latest"), e)?,
        }
        for &(ts, payload) in &want {
            match db.get(user, ts) {
                Ok(Some(e)) if e.payload[..] == *payload => {}
                Ok(other) => {
                    return Err(format!("get({user}, {ts}) gives {:?}", other.map(|e| e.payload.len())))
                }
                Err(e) => judge(format!("get({user}, {ts})"), e)?,
            }
        }
    }
    Ok(detected)
}

// ---------------------------------------------------------------------------------------
// The campaign.

/// The columns of the per-(file kind, fault) table; a row counts faults, then verdicts.
const COLUMNS: [&str; 9] =
    ["faults", "open", "read", "harmless", "unrefd", "wal-tail", "mf-tail", "wrong", "undetect"];
type Row = [u64; 9];

impl Verdict {
    fn column(&self) -> usize {
        match self {
            Verdict::DetectedAtOpen => 1,
            Verdict::DetectedOnRead => 2,
            Verdict::Harmless => 3,
            Verdict::Unreferenced => 4,
            Verdict::LostWalTail { .. } => 5,
            Verdict::LostManifestTail => 6,
            Verdict::Wrong(_) => 7,
            Verdict::Undetected => 8,
        }
    }
}

/// What a campaign found over all its workloads.
#[derive(Default)]
struct Totals {
    summary: Summary,
    table: BTreeMap<(Kind, Fault), Row>,
    failures: Vec<String>,
    lost_batches: usize,
    surviving: usize,
}

/// The extents to try: `count` of them, shuffled by `seed`, and always the final extent of
/// each log; in file order.
fn sample(base: &Base, seed: u64, count: usize, tails: &[&Extent]) -> Vec<Extent> {
    let mut rng = SimRng::new(seed);
    let mut all: Vec<&Extent> = base.extents.iter().collect();
    for i in (1..all.len()).rev() {
        all.swap(i, rng.below(i as u64 + 1) as usize);
    }
    all.truncate(count);
    all.extend(tails);
    let chosen: BTreeMap<(&Path, u64), &Extent> =
        all.into_iter().map(|e| ((&*e.path, e.offset), e)).collect();
    chosen.into_values().cloned().collect()
}

fn last_extent<'a>(base: &'a Base, path: &Path) -> Option<&'a Extent> {
    base.extents.iter().filter(|e| e.path == path).max_by_key(|e| e.offset)
}

/// The final extents of the newest WAL segment and of the current manifest.
fn tails(base: &Base) -> (Option<&Extent>, Option<&Extent>) {
    let newest = base.extents.iter().filter(|e| Kind::of(&e.path) == Some(Kind::Wal)).map(|e| &e.path).max();
    let wal = newest.and_then(|path| last_extent(base, path));
    let manifest = last_extent(base, &base.manifest).filter(|e| e.offset > 0);
    (wal, manifest)
}

fn campaign(w: &Workload, base: &Base, totals: &mut Totals) {
    let count = (env_size("STRATA_LOST_EXTENTS", 400) * env_size("STRATA_FAULT_SCALE", 1)) as usize;
    let seed = env_size("STRATA_LOST_SAMPLE_SEED", 1);
    let (wal_tail, manifest_tail) = tails(base);
    let chosen =
        sample(base, seed, count, &[wal_tail, manifest_tail].into_iter().flatten().collect::<Vec<_>>());
    totals.surviving += base.extents.len();
    totals.summary.acked += base.acked as u64;
    let at = |e: &Extent, t: Option<&Extent>| t.is_some_and(|t| t.path == e.path && t.offset == e.offset);
    for (index, e) in chosen.iter().enumerate() {
        totals.summary.points += 1;
        for fault in Fault::ALL {
            let disk = copy_of(base);
            let fault_seed = seed ^ ((index as u64) << 8) ^ fault as u64;
            let Some(injection) = inject(base, &disk, e, fault, &mut SimRng::new(fault_seed)) else {
                continue;
            };
            let tail = match (fault, at(e, wal_tail), at(e, manifest_tail)) {
                (Fault::Lost | Fault::Stale, true, _) => Tail::Wal,
                (Fault::Lost | Fault::Stale, _, true) => Tail::Manifest,
                _ => Tail::None,
            };
            let verdict = evaluate(w, base, disk, &injection.changed, tail);
            let row = totals.table.entry((Kind::of(&e.path).unwrap(), fault)).or_default();
            row[0] += 1;
            row[verdict.column()] += 1;
            totals.summary.injected += 1;
            totals.summary.states += 1;
            let replay = || {
                format!(
                    "base {}, {} write of {e} (sample #{index}, fault seed {fault_seed}): {}; changed {:?}; \
                     sample seed {seed}, workload seed {} of {} batches",
                    base.name,
                    fault.name(),
                    injection.what,
                    injection.changed,
                    w.seed,
                    w.batches.len()
                )
            };
            match verdict {
                Verdict::LostWalTail { lost } => totals.lost_batches += lost,
                Verdict::Wrong(m) => totals.failures.push(format!("wrong answer: {m} ({})", replay())),
                Verdict::Undetected => {
                    totals.failures.push(format!("undetected, reads equal the model ({})", replay()))
                }
                _ => {}
            }
        }
    }
}

/// Runs the campaign on the base `make` builds from each workload, prints its figures, and
/// returns them.
fn run_campaign(name: &str, make: fn(&Workload) -> Base) -> Totals {
    let mut totals = Totals { summary: Summary::new(name), ..Totals::default() };
    let mut seeds = (u64::MAX, 0);
    for w in workloads() {
        seeds = (seeds.0.min(w.seed), w.seed);
        campaign(&w, &make(&w), &mut totals);
    }
    let t = &totals.table;
    let sum = |columns: &[usize]| t.values().map(|r| columns.iter().map(|&c| r[c]).sum::<u64>()).sum();
    totals.summary.detected = sum(&[1, 2]);
    totals.summary.wrong_answers = sum(&[7]);
    totals.summary.losses = sum(&[7, 8]);
    totals.summary.finish();
    println!(
        "| workload seeds {}..={}; {} extents tried of {} surviving",
        seeds.0, seeds.1, totals.summary.points, totals.surviving
    );
    print_table(t);
    println!(
        "| lost WAL tail (indistinguishable from power loss): {} faults, {} batches lost in all, each \
         time the model of a prefix of the batches",
        sum(&[5]),
        totals.lost_batches
    );
    println!(
        "| lost manifest tail (taken for a torn final edit; the WAL still held its data): {} faults",
        sum(&[6])
    );
    for failure in totals.failures.iter().take(12) {
        println!("FAILURE: {failure}");
    }
    totals
}

fn print_table(table: &BTreeMap<(Kind, Fault), Row>) {
    println!("| {:<9} {:<18}{}", "file", "fault", COLUMNS.map(|h| format!("{h:>9}")).concat());
    for ((kind, fault), row) in table {
        println!(
            "| {:<9} {:<18}{}",
            format!("{kind:?}"),
            fault.name(),
            row.map(|c| format!("{c:>9}")).concat()
        );
    }
    println!(
        "| open/read: a Corruption error naming a damaged file; harmless: no byte changed; unrefd: \
         only files nothing references changed, which the open removes unread"
    );
}

#[test]
fn lost_and_misdirected_writes_in_a_closed_database_are_detected() {
    let totals = run_campaign("lost and misdirected writes, closed database", closed_base);
    assert_eq!(totals.summary.losses, 0, "first: {}", totals.failures[0]);
}

#[test]
fn lost_and_misdirected_writes_in_a_crashed_database_are_detected_or_a_lost_wal_tail() {
    let totals = run_campaign("lost and misdirected writes, crashed database", crashed_base);
    assert_eq!(totals.summary.losses, 0, "first: {}", totals.failures[0]);
    let tails: u64 = totals.table.values().map(|row| row[5]).sum();
    assert!(tails > 0, "no lost WAL tail was tried: the crashed bases hold no WAL record");
}
