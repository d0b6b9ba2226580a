//! Data blocks are read on demand through the file-system seam: after `Table::open`, a read
//! error on a block is returned as `SstError::Fs` naming the file and the operation, a bit
//! flipped by the read is `SstError::Corruption` at the block, and neither is cached. A
//! block cache hit touches no file; a miss is one `read_at` of exactly the block; `open`
//! reads the footer and the metadata region, nothing else.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::cast_possible_truncation)]

use std::path::Path;
use std::sync::{Arc, Mutex};

use strata_sstable::block::Compression;
use strata_sstable::format::FOOTER_LEN;
use strata_sstable::{BlockCache, Entry, ReadMode, SstError, Table, TableBuilder, TableMeta, TableOptions};
use strata_vfs::{
    FaultAction, FaultFs, FaultRule, File, FileSystem, FsErrorKind, LockGuard, OpKind, SimFs, When,
};

const PATH: &str = "/t.sst";

/// 3,000 puts of 30 users, 40-byte values, in table order.
fn entries() -> Vec<Entry> {
    let mut entries = Vec::new();
    for user in 0..30u64 {
        for ts in 0..100i64 {
            let seqno = user * 100 + ts as u64 + 1;
            entries.push(Entry::put(user * 1_000 + 5, ts * 10, seqno, vec![(user + ts as u64) as u8; 40]));
        }
    }
    entries
}

/// Builds the table of `entries()` on a fresh simulated disk, in blocks of about 1 KiB.
fn build() -> (SimFs, Vec<Entry>) {
    let sim = SimFs::new();
    let entries = entries();
    let options =
        TableOptions { block_bytes: 1024, compression: Compression::Zstd(1), ..TableOptions::default() };
    let mut builder =
        TableBuilder::create(Arc::new(sim.clone()), Path::new(PATH), options, TableMeta::default()).unwrap();
    for entry in &entries {
        builder.add(entry).unwrap();
    }
    builder.finish().unwrap();
    (sim, entries)
}

fn cache() -> Arc<BlockCache> {
    Arc::new(BlockCache::new(8 << 20))
}

fn assert_read_error<T: std::fmt::Debug>(what: &str, result: Result<T, SstError>) {
    match result {
        Err(SstError::Fs(err)) => {
            assert_eq!((err.op, err.kind), (OpKind::ReadAt, FsErrorKind::Io), "{what}: {err}");
            assert_eq!(err.path, Path::new(PATH), "{what}: the error names the table");
        }
        other => panic!("{what}: expected the injected read error, got {other:?}"),
    }
}

#[test]
fn a_read_error_after_open_is_an_fs_error_naming_the_file_and_is_not_cached() {
    let (sim, entries) = build();
    let user = entries[1_500].user;
    let of_user: Vec<Entry> = entries.iter().filter(|e| e.user == user).cloned().collect();
    let newest: Vec<Entry> = of_user.iter().rev().take(10).cloned().collect();
    // `Mmap` on a fault-injecting file falls back to `Pread`: its reads stay observable.
    for mode in [ReadMode::Pread, ReadMode::Mmap] {
        let faulty = FaultFs::new(Arc::new(sim.clone()), 7);
        let table = Table::open_with(&faulty, Path::new(PATH), cache(), mode).unwrap();
        assert_eq!(table.read_mode(), ReadMode::Pread);
        faulty
            .add_rule(FaultRule::new(When::Always, FaultAction::Fail(FsErrorKind::Io)).on_op(OpKind::ReadAt));

        assert_read_error("latest", table.latest(user, 10));
        assert_read_error("get", table.get(user, of_user[3].ts));
        assert_read_error("user_range", table.user_range(user, i64::MIN, i64::MAX).next().unwrap());
        assert_read_error("user_range_rev", table.user_range_rev(user, i64::MIN, i64::MAX).next().unwrap());
        assert_read_error("iter", table.iter().next().unwrap());
        // The metadata is in memory: the filter and the range deletes need no read.
        assert!(table.may_contain_user(user));
        assert!(table.range_deletes(user).unwrap().is_empty());
        assert!(faulty.injected_count() >= 5);

        // The failures were not cached: once the disk reads again, so does the table.
        faulty.clear_rules();
        assert_eq!(table.latest(user, 10).unwrap(), newest);
        assert_eq!(table.get(user, of_user[3].ts).unwrap(), vec![of_user[3].clone()]);
        assert_eq!(table.iter().collect::<Result<Vec<_>, _>>().unwrap(), entries);
    }
}

#[test]
fn a_bit_flipped_by_a_block_read_is_corruption_at_the_block() {
    let (sim, entries) = build();
    let faulty = FaultFs::new(Arc::new(sim.clone()), 11);
    let table = Table::open(&faulty, Path::new(PATH), cache()).unwrap();
    let victim = table.block_handle(table.block_count() / 2);
    faulty.add_rule(FaultRule::new(When::Always, FaultAction::FlipReadBit).on_op(OpKind::ReadAt));
    let (user, ts) = victim.first;
    match table.get(user, ts) {
        Err(SstError::Corruption { file, offset, .. }) => {
            assert_eq!((file.as_path(), offset), (Path::new(PATH), victim.offset));
        }
        other => panic!("a flipped block read returned {other:?}"),
    }
    // `latest` reads the user's newest block first.
    let newest = (0..table.block_count()).rev().find(|&i| table.block_handle(i).first.0 <= user).unwrap();
    match table.latest(user, 1_000) {
        Err(SstError::Corruption { offset, .. }) => assert_eq!(offset, table.block_handle(newest).offset),
        other => panic!("a flipped block read returned {other:?}"),
    }
    // Every block read is damaged: a whole-table read fails, never returns data.
    assert!(matches!(table.iter().collect::<Result<Vec<_>, _>>(), Err(SstError::Corruption { .. })));
    faulty.clear_rules();
    assert_eq!(table.iter().collect::<Result<Vec<_>, _>>().unwrap(), entries);
}

#[test]
fn a_cache_hit_reads_no_file_and_a_miss_reads_exactly_its_block() {
    let (sim, entries) = build();
    let fs = RecordingFs::new(sim.clone());
    let table = Table::open(&fs, Path::new(PATH), cache()).unwrap();
    let file_len = sim.contents(Path::new(PATH)).unwrap().len() as u64;
    let index_offset = table.block_handle(table.block_count() - 1).offset
        + u64::from(table.block_handle(table.block_count() - 1).len);
    assert_eq!(
        fs.take_reads(),
        vec![(file_len - FOOTER_LEN as u64, FOOTER_LEN), (index_offset, (file_len - index_offset) as usize)],
        "open reads the footer, then the metadata region, and nothing else"
    );
    assert!(table.block_count() > 20);

    for i in [0, table.block_count() / 2, table.block_count() - 1] {
        let handle = table.block_handle(i);
        table.block(i).unwrap();
        assert_eq!(fs.take_reads(), vec![(handle.offset, handle.len as usize)], "miss of block {i}");
        table.block(i).unwrap();
        assert_eq!(fs.take_reads(), vec![], "hit of block {i}");
    }
    // A whole-table scan (compaction's) reads each block it does not find cached, and
    // caches none of them: a second scan reads them again.
    for _ in 0..2 {
        assert_eq!(table.iter().collect::<Result<Vec<_>, _>>().unwrap(), entries);
        assert_eq!(fs.take_reads().len(), table.block_count() - 3);
    }
    // Warm every block; from then on no read of any kind touches the file.
    for i in 0..table.block_count() {
        table.block(i).unwrap();
    }
    assert_eq!(fs.take_reads().len(), table.block_count() - 3);
    assert_eq!(table.iter().count(), entries.len());
    for entry in entries.iter().step_by(97) {
        table.latest(entry.user, 100).unwrap();
        table.get(entry.user, entry.ts).unwrap();
        table.user_range(entry.user, i64::MIN, i64::MAX).for_each(|e| drop(e.unwrap()));
    }
    assert_eq!(fs.take_reads(), vec![], "warm reads touch no file");
}

/// A file system that records every `read_at` (offset, length) of the files it opens.
#[derive(Debug)]
struct RecordingFs {
    inner: SimFs,
    reads: Arc<Mutex<Vec<(u64, usize)>>>,
}

impl RecordingFs {
    fn new(inner: SimFs) -> Self {
        RecordingFs { inner, reads: Arc::default() }
    }

    fn take_reads(&self) -> Vec<(u64, usize)> {
        std::mem::take(&mut *self.reads.lock().unwrap())
    }
}

impl FileSystem for RecordingFs {
    fn create(&self, path: &Path) -> strata_vfs::Result<Box<dyn File>> {
        self.inner.create(path)
    }
    fn open(&self, path: &Path) -> strata_vfs::Result<Box<dyn File>> {
        let inner = self.inner.open(path)?;
        Ok(Box::new(RecordingFile { inner, reads: Arc::clone(&self.reads) }))
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
struct RecordingFile {
    inner: Box<dyn File>,
    reads: Arc<Mutex<Vec<(u64, usize)>>>,
}

impl File for RecordingFile {
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
        self.reads.lock().unwrap().push((offset, buf.len()));
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
