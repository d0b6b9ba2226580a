//! Opening a database: create it, or recover it.
//!
//! Recovery, in order:
//! 1. Take the directory lock (a second `Db` on the same directory is refused).
//! 2. Load the manifest named by CURRENT; open every table it references, refusing a
//!    missing or damaged one by name.
//! 3. Open the WAL and replay every batch above the manifest's persisted seqno into
//!    memtables. A WAL that starts above that seqno means an acknowledged manifest edit
//!    was lost, and the database refuses to open rather than serve a hole.
//! 4. Write a fresh manifest (so no later edit is appended after a torn tail) and switch
//!    CURRENT to it.
//! 5. Only then remove what is proven unreferenced: tables the new manifest does not
//!    name, unfinished `*.sst.tmp` builds, old manifests and `CURRENT.tmp`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex, RwLock};
use strata_sstable::BlockCache;
use strata_vfs::FileSystem;
use strata_wal::{Wal, WalOptions};

use crate::db::{apply, Counters, Inner, Queue};
use crate::manifest::{load, manifest_name, ManifestState, ManifestWriter, CURRENT_NAME};
use crate::memtable::Memtable;
use crate::publish::Publisher;
use crate::reaper::Reaper;
use crate::version::{parse_table_name, table_name, SuperVersion, TableFile, Version};
use crate::{Error, Options, Result};

/// The lock file in the database directory.
pub const LOCK_NAME: &str = "LOCK";
/// The WAL's subdirectory.
pub const WAL_DIR: &str = "wal";

pub(crate) fn open(fs: Arc<dyn FileSystem>, dir: &Path, options: Options) -> Result<Inner> {
    options.validate()?;
    fs.create_dir(dir)?;
    for ancestor in dir.ancestors().skip(1) {
        let ancestor = if ancestor.as_os_str().is_empty() { Path::new(".") } else { ancestor };
        fs.sync_dir(ancestor)?;
    }
    let lock = fs.lock(&dir.join(LOCK_NAME))?;
    let names = fs.list(dir)?;
    // A new database gets its manifest and CURRENT before anything else (the WAL
    // directory included), so that a directory with a WAL but no CURRENT is never ours.
    let (state, mut manifest, old_manifest) = match load(fs.as_ref(), dir)? {
        Some(loaded) => (loaded.state, None, Some(loaded.manifest_number)),
        None => {
            let state = new_database(dir, &names, &options)?;
            let writer = fresh_manifest(&fs, dir, 1, &state)?;
            (state, Some(writer), None)
        }
    };
    // The manifest the state was read from (a new database's is number 1): errors that
    // blame the state name it.
    let state_source = dir.join(manifest_name(old_manifest.unwrap_or(1)));
    if state.partition_width != options.partition_width {
        return Err(Error::invalid(
            "partition_width",
            format!(
                "{} differs from the database's {} (fixed when it was created)",
                options.partition_width, state.partition_width
            ),
        ));
    }
    let cache = Arc::new(BlockCache::new(options.block_cache_bytes));
    let reaper = Reaper::start(Arc::clone(&fs), options.background_nice);
    let mut tables = BTreeMap::new();
    for record in state.tables.values() {
        let name = table_name(record.number);
        if names.binary_search(&name).is_err() {
            return Err(Error::MissingTable { file: dir.join(name), manifest: state_source.clone() });
        }
        tables.insert(record.number, TableFile::open(&fs, dir, record.clone(), &cache, &reaper)?);
    }
    let version = Version::new(state, tables);

    let wal_options = WalOptions {
        segment_bytes: options.wal_segment_bytes,
        sync_interval: options.wal_sync_interval,
        recovery: options.wal_recovery,
        ..WalOptions::default()
    };
    let persisted = version.state.persisted_seqno;
    let (wal, recovery) = Wal::open(Arc::clone(&fs), dir.join(WAL_DIR), wal_options, persisted)?;
    let first_replayed = recovery.batches.first().map_or(wal.next_seqno(), |b| b.first_seqno);
    if first_replayed > persisted.saturating_add(1) {
        // The manifest is what fell behind (a lost, stale or misdirected write of its last
        // edits): name it, so that the error points at the damaged file.
        return Err(Error::corruption(
            &state_source,
            0,
            format!(
                "the manifest says seqnos up to {persisted} are in tables, but the WAL starts at \
                 {first_replayed}: an acknowledged manifest edit is lost"
            ),
        ));
    }

    // Retention's clock: the newest put, as flushes recorded it, then the WAL's.
    let mut newest_ts = version.state.newest_event_ts.unwrap_or(i64::MIN);
    let mut mems = vec![Arc::new(Memtable::new())];
    for batch in &recovery.batches {
        let mem = mems.last().map(Arc::clone).unwrap_or_default();
        newest_ts = newest_ts.max(apply(&mem, &batch.batch, batch.first_seqno).0);
        if mem.approximate_bytes() >= options.memtable_bytes {
            mems.push(Arc::new(Memtable::new()));
        }
    }
    let mem = mems.pop().unwrap_or_default();
    mems.reverse();
    let visible = wal.next_seqno().saturating_sub(1);
    let next_file = version.state.next_file_number;

    let manifest = match (manifest.take(), old_manifest) {
        (Some(fresh), _) => fresh,
        (None, number) => fresh_manifest(&fs, dir, number.map_or(1, |n| n + 1), &version.state)?,
    };
    remove_unreferenced(fs.as_ref(), dir, &version, manifest.number())?;

    Ok(Inner {
        dir: dir.to_path_buf(),
        log: RwLock::new(Some(wal)),
        manifest: Mutex::new(manifest),
        current: RwLock::new(Arc::new(SuperVersion { mem, imms: mems, version: Arc::new(version) })),
        visible: Publisher::new(visible),
        cache,
        queue: Mutex::new(Queue::default()),
        work: Condvar::new(),
        done: Condvar::new(),
        poison: Mutex::new(None),
        closed: AtomicBool::new(false),
        newest_ts: AtomicI64::new(newest_ts),
        snapshots: Mutex::new(BTreeMap::new()),
        counters: Counters::default(),
        lock: Mutex::new(Some(lock)),
        next_file: AtomicU64::new(next_file),
        compactor: Default::default(),
        retention: Mutex::new(()),
        spare: Mutex::new(None),
        reaper,
        options,
        fs,
    })
}

/// The state of a new database, after checking that `dir` holds nothing else: only the
/// lock and what an interrupted creation leaves behind (a manifest and `CURRENT.tmp`).
fn new_database(dir: &Path, names: &[String], options: &Options) -> Result<ManifestState> {
    let leftover = |name: &str| name == LOCK_NAME || name.starts_with("MANIFEST-") || name == "CURRENT.tmp";
    if let Some(foreign) = names.iter().find(|name| !leftover(name)) {
        return Err(Error::NotADatabase {
            path: dir.to_path_buf(),
            reason: format!("it has no {CURRENT_NAME} file but holds {foreign:?}"),
        });
    }
    Ok(ManifestState {
        partition_width: options.partition_width,
        persisted_seqno: 0,
        next_file_number: 1,
        ..ManifestState::default()
    })
}

/// Creates manifest `number`, replacing a leftover of that name from an interrupted open
/// (CURRENT never named it: it is only named once complete and synced).
pub(crate) fn fresh_manifest(
    fs: &Arc<dyn FileSystem>,
    dir: &Path,
    number: u64,
    state: &ManifestState,
) -> Result<ManifestWriter> {
    let path = dir.join(manifest_name(number));
    match fs.remove(&path) {
        Ok(()) => {}
        Err(err) if err.kind == strata_vfs::FsErrorKind::NotFound => {}
        Err(err) => return Err(err.into()),
    }
    ManifestWriter::create(Arc::clone(fs), dir, number, state)
}

/// Removes the files the current manifest (`manifest`) proves unreferenced.
fn remove_unreferenced(fs: &dyn FileSystem, dir: &Path, version: &Version, manifest: u64) -> Result<()> {
    let current = manifest_name(manifest);
    let mut removed = false;
    for name in fs.list(dir)? {
        let unreferenced = match parse_table_name(&name) {
            Some(number) => !version.tables.contains_key(&number),
            None => {
                name.ends_with(".sst.tmp")
                    || name == "CURRENT.tmp"
                    || (name.starts_with("MANIFEST-") && name != current)
            }
        };
        if unreferenced {
            fs.remove(&dir.join(&name))?;
            removed = true;
        }
    }
    if removed {
        fs.sync_dir(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use strata_vfs::{CrashMode, SimFs};

    use crate::manifest::load;
    use crate::{Db, ErrorKind, Options};

    /// No background compaction: the manifest's last edit must be the close's final flush
    /// (a merge finishing after it made its edit the last, and the lost-edit test flaky).
    fn options() -> Options {
        Options {
            partition_width: 1_000,
            manifest_rewrite_bytes: 1 << 30,
            compaction_threads: 0,
            ..Options::default()
        }
    }

    fn closed_database(sim: &SimFs, options: &Options) {
        let db = Db::open_with_fs(Arc::new(sim.clone()), "/db", options.clone()).unwrap();
        for ts in 0..50 {
            db.put(1, ts, b"payload").unwrap();
            if ts % 10 == 9 {
                db.flush().unwrap();
            }
        }
        db.put(1, 99, b"last").unwrap();
        db.close().unwrap();
        sim.crash(CrashMode::DurableOnly);
    }

    fn refused_naming(sim: &SimFs, options: &Options, file: &str) {
        match Db::open_with_fs(Arc::new(sim.clone()), "/db", options.clone()) {
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Corruption, "{e}");
                assert!(e.to_string().contains(file), "{e} does not name {file}");
            }
            Ok(db) => panic!("opened, holding {} events", db.range(1, ..).unwrap().count()),
        }
    }

    /// Regression (found by `tests/tests/lost_writes.rs`): after a clean close, a lost write
    /// of the manifest's last edit (the final flush) passed for a torn one, and with the WAL
    /// removed whole nothing contradicted the older state: the open silently served the
    /// database without the final flush. `close` now leaves an empty WAL segment that says
    /// where the log ended, and the open refuses, naming the manifest.
    #[test]
    fn a_lost_final_manifest_edit_after_a_clean_close_is_refused() {
        let (sim, options) = (SimFs::new(), options());
        closed_database(&sim, &options);
        let loaded = load(&sim, Path::new("/db")).unwrap().unwrap();
        let bytes = sim.contents(&loaded.path).unwrap();
        let last = last_record_offset(&bytes);
        sim.overwrite(&loaded.path, last as u64, &vec![0; bytes.len() - last]).unwrap();
        let name = loaded.path.file_name().unwrap().to_string_lossy().into_owned();
        refused_naming(&sim, &options, &name);
    }

    /// Regression (found by `tests/tests/lost_writes.rs`): the manifest a rewrite retired was
    /// removed without a directory sync, so after a power loss it was back, and a stale
    /// CURRENT naming it (a lost write of the switch) was served without complaint.
    #[test]
    fn a_stale_current_naming_a_retired_manifest_is_refused() {
        let sim = SimFs::new();
        let options = Options { manifest_rewrite_bytes: 1, ..options() };
        let db = Db::open_with_fs(Arc::new(sim.clone()), "/db", options.clone()).unwrap();
        db.put(1, 1, b"x").unwrap();
        let stale = sim.contents(Path::new("/db/CURRENT")).unwrap();
        db.flush().unwrap();
        drop(db);
        sim.crash(CrashMode::DurableOnly);
        sim.overwrite(Path::new("/db/CURRENT"), 0, &stale).unwrap();
        refused_naming(&sim, &options, "CURRENT");
    }

    /// Where the last record of a manifest file starts (header 16 bytes; a record is a
    /// 12-byte header, its first 4 bytes the body length, then the body).
    fn last_record_offset(bytes: &[u8]) -> usize {
        let (mut at, mut last) = (16, 16);
        while at < bytes.len() {
            last = at;
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            at += 12 + len;
        }
        last
    }
}
