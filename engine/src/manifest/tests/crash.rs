//! Crashes: after every append, with torn and garbage tails, at every file-system operation
//! of a manifest switch, and with each sync of `create` skipped, to show that the checks
//! would notice a missing sync.

use std::sync::atomic::{AtomicUsize, Ordering};

use strata_vfs::{CrashMode, File, LockGuard};

use super::*;

#[test]
fn a_crash_after_every_append_keeps_exactly_the_acknowledged_edits() {
    let edits = workload(8);
    for acknowledged in 0..=edits.len() {
        let sim = new_sim();
        let mut writer = ManifestWriter::create(Arc::new(sim.clone()), dir(), 1, &base_state()).unwrap();
        for edit in &edits[..acknowledged] {
            writer.append(edit).unwrap();
        }
        sim.crash(CrashMode::DurableOnly);
        let loaded = load(&sim, dir()).unwrap().unwrap();
        assert_eq!(loaded.state, fold(&base_state(), &edits[..acknowledged]), "after {acknowledged}");
        assert_eq!(loaded.dropped_tail, None);
    }
}

/// An append fails (its write or its fsync), then the power fails with a torn or a garbage
/// tail. The state loaded holds every acknowledged edit, and the failed one only whole.
#[test]
fn torn_and_garbage_tails_load_as_an_acknowledged_prefix() {
    let edits = workload(6);
    let (mut dropped, mut kept_unacknowledged) = (0, 0);
    for seed in 0..2000u64 {
        let sim = new_sim();
        let faulty = Arc::new(FaultFs::new(Arc::new(sim.clone()), seed));
        let mut writer = ManifestWriter::create(faulty.clone(), dir(), 1, &base_state()).unwrap();
        let acknowledged = usize::try_from(seed % 5).unwrap();
        for edit in &edits[..acknowledged] {
            writer.append(edit).unwrap();
        }
        // Operation 0 of the append is its write, operation 1 its fsync.
        let failing = faulty.op_count() + seed % 2;
        faulty.add_rule(FaultRule::new(When::Nth(failing), FaultAction::Fail(FsErrorKind::Io)));
        assert!(writer.append(&edits[acknowledged]).is_err(), "seed {seed}");
        assert_eq!(writer.append(&edits[acknowledged]).unwrap_err().kind(), ErrorKind::Poisoned);
        let mode =
            if seed / 2 % 2 == 0 { CrashMode::TornTail { seed } } else { CrashMode::GarbageTail { seed } };
        sim.crash(mode);
        let loaded = load(&sim, dir()).unwrap_or_else(|e| panic!("seed {seed} {mode:?}: {e}")).unwrap();
        let before = fold(&base_state(), &edits[..acknowledged]);
        let after = fold(&base_state(), &edits[..=acknowledged]);
        assert!(loaded.state == before || loaded.state == after, "seed {seed} {mode:?}");
        kept_unacknowledged += usize::from(loaded.state == after);
        if let Some((offset, _)) = loaded.dropped_tail {
            assert_eq!(offset, loaded.valid_bytes);
            dropped += 1;
        }
    }
    assert!(dropped > 500 && kept_unacknowledged > 0, "{dropped} tails, {kept_unacknowledged} kept");
}

/// Power fails at operation n of the switch to manifest 2 (everything from n on fails) and
/// the disk crashes. `load` then finds the old manifest or the new one, complete, never an
/// error; a switch that returned Ok is always found. A later switch still works.
#[test]
fn a_crash_at_every_operation_of_a_manifest_switch_loads_the_old_or_the_new() {
    let old = fold(&base_state(), &workload(3));
    let new = fold(&base_state(), &workload(5));
    let (mut points, mut switched) = (0u64, 0u64);
    for point in 0.. {
        let sim = new_sim();
        write_manifest(Arc::new(sim.clone()), 3);
        let faulty = Arc::new(FaultFs::new(Arc::new(sim.clone()), point));
        faulty.add_rule(FaultRule::new(When::FromNth(point), FaultAction::Fail(FsErrorKind::Io)));
        let created = ManifestWriter::create(faulty.clone(), dir(), 2, &new);
        let reached = faulty.injected_count() > 0;
        let mode = if point % 2 == 0 { CrashMode::DurableOnly } else { CrashMode::TornTail { seed: point } };
        sim.crash(mode);
        points += 1;
        let loaded = load(&sim, dir()).unwrap_or_else(|e| panic!("point {point}: {e}")).unwrap();
        match loaded.manifest_number {
            1 => assert!(created.is_err() && loaded.state == old, "point {point}"),
            2 => {
                assert_eq!((&loaded.state, loaded.edits), (&new, 1), "point {point}");
                switched += 1;
            }
            other => panic!("point {point}: manifest {other}"),
        }
        // Leftovers of the interrupted switch (CURRENT.tmp, an unnamed MANIFEST-000002) do
        // not stand in the way of the next one.
        ManifestWriter::create(Arc::new(sim.clone()), dir(), 3, &loaded.state).unwrap();
        assert_eq!(load(&sim, dir()).unwrap().unwrap().state, loaded.state, "point {point}");
        if !reached {
            break;
        }
    }
    assert!(points > 8 && switched > 0 && switched < points, "{points} points, {switched} switched");
}

#[test]
fn a_manifest_switch_is_durable_when_create_returns() {
    let sim = new_sim();
    write_manifest(Arc::new(sim.clone()), 3);
    let new = fold(&base_state(), &workload(4));
    ManifestWriter::create(Arc::new(sim.clone()), dir(), 2, &new).unwrap();
    sim.crash(CrashMode::DurableOnly);
    let loaded = load(&sim, dir()).unwrap().unwrap();
    assert_eq!((loaded.manifest_number, &loaded.state), (2, &new));
}

/// A file system that pretends one sync (`sync_data` or `sync_dir`, counted together) to
/// succeed without doing it: a writer that forgot that sync.
#[derive(Debug)]
struct SkipSyncFs {
    inner: SimFs,
    syncs: Arc<AtomicUsize>,
    skip: Option<usize>,
}

impl SkipSyncFs {
    fn skip_this_one(syncs: &AtomicUsize, skip: Option<usize>) -> bool {
        Some(syncs.fetch_add(1, Ordering::SeqCst)) == skip
    }

    fn wrap(&self, file: Box<dyn File>) -> Box<dyn File> {
        Box::new(SkipSyncFile { inner: file, syncs: Arc::clone(&self.syncs), skip: self.skip })
    }
}

impl FileSystem for SkipSyncFs {
    fn create(&self, path: &Path) -> strata_vfs::Result<Box<dyn File>> {
        Ok(self.wrap(self.inner.create(path)?))
    }
    fn open(&self, path: &Path) -> strata_vfs::Result<Box<dyn File>> {
        Ok(self.wrap(self.inner.open(path)?))
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
        if Self::skip_this_one(&self.syncs, self.skip) {
            return Ok(());
        }
        self.inner.sync_dir(path)
    }
    fn lock(&self, path: &Path) -> strata_vfs::Result<LockGuard> {
        self.inner.lock(path)
    }
}

#[derive(Debug)]
struct SkipSyncFile {
    inner: Box<dyn File>,
    syncs: Arc<AtomicUsize>,
    skip: Option<usize>,
}

impl File for SkipSyncFile {
    fn path(&self) -> &Path {
        self.inner.path()
    }
    fn append(&self, data: &[u8]) -> strata_vfs::Result<()> {
        self.inner.append(data)
    }
    fn append_vectored(&self, bufs: &[&[u8]]) -> strata_vfs::Result<()> {
        self.inner.append_vectored(bufs)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> strata_vfs::Result<()> {
        self.inner.read_at(offset, buf)
    }
    fn len(&self) -> strata_vfs::Result<u64> {
        self.inner.len()
    }
    fn sync_data(&self) -> strata_vfs::Result<()> {
        if SkipSyncFs::skip_this_one(&self.syncs, self.skip) {
            return Ok(());
        }
        self.inner.sync_data()
    }
    fn truncate(&self, len: u64) -> strata_vfs::Result<()> {
        self.inner.truncate(len)
    }
}

/// Switches to manifest 2, and appends one edit if `append`, through a file system that
/// skips sync number `skip`; crashes; says whether everything acknowledged survived, and
/// how many syncs there were.
fn survives_with_sync_skipped(skip: Option<usize>, append: bool) -> (bool, usize) {
    let sim = new_sim();
    write_manifest(Arc::new(sim.clone()), 3);
    let mut expected = fold(&base_state(), &workload(3));
    let fs = Arc::new(SkipSyncFs { inner: sim.clone(), syncs: Arc::new(AtomicUsize::new(0)), skip });
    let mut writer = ManifestWriter::create(fs.clone(), dir(), 2, &expected).unwrap();
    if append {
        let edit = workload(4).pop().unwrap();
        writer.append(&edit).unwrap();
        expected.apply(&edit).unwrap();
    }
    sim.crash(CrashMode::DurableOnly);
    let survived = matches!(load(&sim, dir()), Ok(Some(l)) if l.manifest_number == 2 && l.state == expected);
    (survived, fs.syncs.load(Ordering::SeqCst))
}

/// The durability checks above pass only because every sync is there: skipping the
/// manifest's `sync_data` (0), CURRENT.tmp's `sync_data` (2) or the final `sync_dir` (3) of
/// `create`, or the `sync_data` of an append (4), loses acknowledged state. Sync 1, the
/// `sync_dir` between the manifest and CURRENT, orders the two names on a real file
/// system; the simulated disk makes no name durable before a `sync_dir`, so there the final
/// one covers it.
#[test]
fn each_sync_of_a_switch_and_an_append_is_needed() {
    assert_eq!(survives_with_sync_skipped(None, false), (true, 4));
    assert_eq!(survives_with_sync_skipped(None, true), (true, 5));
    for skip in [0, 2, 3] {
        assert!(
            !survives_with_sync_skipped(Some(skip), false).0,
            "skipping sync {skip} of create went unnoticed"
        );
    }
    assert!(!survives_with_sync_skipped(Some(4), true).0, "skipping the sync of append went unnoticed");
}
