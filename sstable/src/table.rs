//! [`Table`]: the reader of a sealed table.
//!
//! What stays in memory and what is read: `open` reads the footer and the metadata region
//! (index, user filter, range deletes) through the file-system seam and keeps the metadata
//! in memory for the table's lifetime (about 80 bytes per data block plus 1.4 bytes per user;
//! the data blocks hold the rest). Data blocks are read on demand: a block cache miss reads
//! exactly the block's bytes with one `File::read_at` ([`ReadMode::Pread`], the default), or
//! slices them from a read-only mapping of the file ([`ReadMode::Mmap`], see the `mmap`
//! module); a cache hit touches no file. In `Pread` mode the process's resident memory for
//! reads is the metadata plus the [`BlockCache`] budget, whatever the table sizes; a read
//! error of a block is returned as [`SstError::Fs`], naming the file and the operation.
//!
//! `open` checks, before anything is served: the footer (magic, checksum, version), that the
//! data, metadata and footer regions tile the file exactly, the metadata checksum, and every
//! index entry (blocks contiguous from offset 0 to the metadata, keys ascending, counts adding
//! up). A block is checked against the xxh3 its index entry holds before it is decoded, and
//! its decoded keys against the index entry. Damage is an [`SstError::Corruption`] naming the
//! file and offset; it is never returned as data. In either mode a damaged data block is
//! therefore detected when a read first needs it, not at open.
//!
//! Decoded blocks live in the shared [`BlockCache`], keyed by a per-open table id and the
//! block offset. A user's reader ([`Table::user_block`]) caches a block only on its second
//! miss; on the first it decodes just that user's entries, and for a newest-first reader
//! ([`Table::user_block_newest`]) only the newest of them it still wants.

// u64 file offsets become usize slice indices; lib.rs refuses non-64-bit targets, so these
// casts never truncate, and every index is still bounds-checked (`get`) before use.
#![allow(clippy::cast_possible_truncation)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use strata_vfs::{File, FileSystem};
use xxhash_rust::xxh3::xxh3_64;

use crate::block::DecodedBlock;
use crate::cache::{CacheKey, Lookup};
use crate::filter::Filter;
use crate::first_users::FirstUsers;
use crate::format::{
    i64_at, u64_at, BlockHandle, Footer, FooterError, TableStats, FOOTER_LEN, INDEX_ENTRY_LEN,
    RANGE_DELETE_LEN,
};
use crate::mmap::MappedTable;
use crate::scratch::{self, Scratch};
use crate::{BlockCache, Entry, Result, SstError};

/// Ids for cache keys: unique per opened table in this process, so a reused file name never
/// serves another table's cached blocks.
static NEXT_TABLE_ID: AtomicU64 = AtomicU64::new(1);

/// How a [`Table`] reads its data blocks on a block cache miss. The metadata (index, filter,
/// range deletes) is read into memory at open in both modes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReadMode {
    /// The default: each missed block is read with one `File::read_at` of exactly its bytes,
    /// through the file-system seam (so simulated and fault-injected files see every read).
    /// The file's pages stay in the OS page cache, not in the process: resident memory is
    /// bounded by the block cache budget plus the tables' metadata, whatever the data size.
    #[default]
    Pread,
    /// Blocks are sliced from a read-only memory mapping of the file, saving a copy and a
    /// system call per missed block; but every touched page of the mapping counts as the
    /// process's resident memory, so it grows with the data read. Only possible for files
    /// with an OS file behind them (`File::as_os_file`); any other file falls back to
    /// [`ReadMode::Pread`] (see [`Table::read_mode`]).
    Mmap,
}

/// An open, sealed table. Cheap to clone; clones share the file handle, the metadata and
/// the mapping, if any.
#[derive(Clone)]
pub struct Table {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    id: u64,
    file: Box<dyn File>,
    /// The mapping of the file in [`ReadMode::Mmap`]; `None` reads blocks with `read_at`.
    map: Option<MappedTable>,
    /// The file's bytes `footer.index_offset..file_len`: index, filter, range deletes and
    /// footer, checked at open.
    meta: Vec<u8>,
    footer: Footer,
    /// Where the filter and the range deletes start in `meta`.
    filter_at: usize,
    rangedel_at: usize,
    /// Smallest and largest user of the table (from the first and last index entries),
    /// kept so that the user check before the filter decodes nothing.
    users: (u64, u64),
    /// The first user of each block, ascending (8 bytes a block). A reader finds a user's
    /// blocks here ([`Table::user_blocks`]) through a sampled top level, where a binary
    /// search of the 72-byte index entries took fourteen probes, each a cache miss.
    first_users: FirstUsers,
    cache: Arc<BlockCache>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The id is never reused, so the blocks would only be evicted by pressure; free
        // the budget now.
        self.cache.remove_table(self.id);
    }
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("path", &self.inner.path)
            .field("read_mode", &self.read_mode())
            .field("stats", &self.inner.footer.stats)
            .finish()
    }
}

impl Table {
    /// Opens and checks the table at `path`, reading its blocks in [`ReadMode::Pread`]; see
    /// the module doc.
    pub fn open(fs: &dyn FileSystem, path: &Path, cache: Arc<BlockCache>) -> Result<Table> {
        Table::open_with(fs, path, cache, ReadMode::Pread)
    }

    /// Opens and checks the table at `path`, reading its blocks in `mode` (which falls back
    /// to [`ReadMode::Pread`] for a file with no OS file behind it).
    pub fn open_with(
        fs: &dyn FileSystem,
        path: &Path,
        cache: Arc<BlockCache>,
        mode: ReadMode,
    ) -> Result<Table> {
        let file = fs.open(path)?;
        let path = path.to_path_buf();
        let file_len = file.len()?;
        let footer = read_footer(file.as_ref(), &path, file_len)?;
        let (meta, filter_at, rangedel_at) = read_metadata(file.as_ref(), &path, file_len, &footer)?;
        let map = match mode {
            ReadMode::Pread => None,
            ReadMode::Mmap => MappedTable::map(file.as_ref(), &path)?,
        };
        // The index starts `meta`; check_index below checks every entry.
        let handle_at =
            |i: usize| meta.get(i * INDEX_ENTRY_LEN..(i + 1) * INDEX_ENTRY_LEN).and_then(BlockHandle::decode);
        let last_block = (footer.stats.blocks as usize).saturating_sub(1);
        let users = match (handle_at(0), handle_at(last_block)) {
            (Some(first), Some(last)) if footer.stats.blocks > 0 => (first.first.0, last.last.0),
            _ => (u64::MAX, 0),
        };
        let first_users = FirstUsers::new(
            (0..footer.stats.blocks as usize).map(|i| handle_at(i).map_or(u64::MAX, |h| h.first.0)).collect(),
        );
        let inner = Inner {
            path,
            id: NEXT_TABLE_ID.fetch_add(1, Ordering::Relaxed),
            file,
            map,
            meta,
            footer,
            filter_at,
            rangedel_at,
            users,
            first_users,
            cache,
        };
        let table = Table { inner: Arc::new(inner) };
        table.check_index()?;
        Ok(table)
    }

    /// How this table reads its blocks: the mode it was opened with, or
    /// [`ReadMode::Pread`] if `Mmap` was asked for a file that cannot be mapped.
    pub fn read_mode(&self) -> ReadMode {
        if self.inner.map.is_some() {
            ReadMode::Mmap
        } else {
            ReadMode::Pread
        }
    }

    /// The table's path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The table's stats, from its footer.
    pub fn stats(&self) -> TableStats {
        self.inner.footer.stats
    }

    /// The id of this open table in the block cache.
    pub fn cache_id(&self) -> u64 {
        self.inner.id
    }

    fn corruption(&self, offset: u64, reason: impl Into<String>) -> SstError {
        SstError::Corruption { file: self.inner.path.clone(), offset, reason: reason.into() }
    }

    /// Number of data blocks.
    pub fn block_count(&self) -> usize {
        self.inner.footer.stats.blocks as usize
    }

    /// The index entry of block `i`. Every entry below `block_count()` was checked at open;
    /// past it, an empty handle whose keys sort after everything is returned.
    pub fn block_handle(&self, i: usize) -> BlockHandle {
        // The index is the start of the metadata buffer.
        let at = i.saturating_mul(INDEX_ENTRY_LEN);
        let entry = self.inner.meta.get(at..at.saturating_add(INDEX_ENTRY_LEN));
        entry.and_then(BlockHandle::decode).unwrap_or(BlockHandle {
            offset: 0,
            len: 0,
            entry_count: 0,
            first: (u64::MAX, i64::MAX),
            last: (u64::MAX, i64::MAX),
            min_ts: 0,
            max_ts: 0,
            checksum: 0,
        })
    }

    fn check_index(&self) -> Result<()> {
        let footer = &self.inner.footer;
        let mut expected_offset = 0u64;
        let mut previous_last: Option<(u64, i64)> = None;
        let mut entries = 0u64;
        for i in 0..self.block_count() {
            let at = footer.index_offset + (i * INDEX_ENTRY_LEN) as u64;
            let h = self.block_handle(i);
            let bad = |reason: String| self.corruption(at, format!("index entry {i}: {reason}"));
            if h.offset != expected_offset {
                return Err(bad(format!(
                    "block at {} but the previous one ends at {expected_offset}",
                    h.offset
                )));
            }
            expected_offset = h.offset + u64::from(h.len);
            if expected_offset > footer.index_offset {
                return Err(bad(format!(
                    "block ends at {expected_offset}, past the data end {}",
                    footer.index_offset
                )));
            }
            if h.entry_count == 0 || h.first > h.last || previous_last.is_some_and(|p| p > h.first) {
                return Err(bad("keys out of order or an empty block".into()));
            }
            previous_last = Some(h.last);
            entries += u64::from(h.entry_count);
        }
        if expected_offset != footer.index_offset || entries != footer.stats.entries {
            return Err(
                self.corruption(footer.index_offset, "index does not cover the data blocks and entries")
            );
        }
        Ok(())
    }

    /// Whether the user filter admits `user` (false: the table surely has no entry of it).
    pub fn may_contain_user(&self, user: u64) -> bool {
        let stats = &self.inner.footer.stats;
        let (first, last) = self.inner.users;
        if stats.entries == 0 || user < first || user > last {
            return false;
        }
        self.filter().is_none_or(|filter| filter.may_contain(user))
    }

    fn filter(&self) -> Option<Filter<'_>> {
        let range = self.inner.filter_at..self.inner.rangedel_at;
        // Checked at open: an undecodable filter never gets this far.
        self.inner.meta.get(range).and_then(|b| Filter::decode(b).ok())
    }

    /// Whether block `i` is in the block cache now (the cache's order and counters are left
    /// alone).
    pub fn block_cached(&self, i: usize) -> bool {
        self.cached_block_bytes(i).is_some()
    }

    /// The bytes block `i` is charged in the block cache, if it is there now (the cache's
    /// order and counters are left alone).
    pub fn cached_block_bytes(&self, i: usize) -> Option<usize> {
        let key = CacheKey { table: self.inner.id, offset: self.block_handle(i).offset };
        self.inner.cache.peek(key).map(|block| block.mem_size())
    }

    /// The decoded block `i`: the cached one if there is one, else read and decoded without
    /// caching it. For whole-table scans (compaction), which would otherwise push the
    /// blocks readers use out of the cache and leave it full of blocks nobody asks for.
    pub fn block_uncached(&self, i: usize) -> Result<Arc<DecodedBlock>> {
        let handle = self.block_handle(i);
        let key = CacheKey { table: self.inner.id, offset: handle.offset };
        match self.inner.cache.peek(key) {
            Some(block) => Ok(block),
            None => self.load_block(&handle).map(|(block, _)| Arc::new(block)),
        }
    }

    /// Block `i` as a reader of `user`'s entries needs it: the cached block if there is
    /// one; else, on the block's first miss, only `user`'s entries decoded
    /// ([`DecodedBlock::decode_user`]) and nothing cached; on a later miss, the whole block,
    /// decoded and cached ([`crate::cache::Cache::lookup`]). A cold user's query touches one
    /// block per time partition for a few entries of each: decoding ~150 entries and caching
    /// them cost most of its time, and pushed out the blocks of users that come back.
    pub fn user_block(&self, i: usize, user: u64) -> Result<Arc<DecodedBlock>> {
        self.user_block_newest(i, user, i64::MIN, i64::MAX, usize::MAX).map(|(block, _)| block)
    }

    /// [`user_block`](Self::user_block) for a newest-first reader that wants `keep` more of
    /// `user`'s entries with `lo <= ts <= hi`: on a first miss only the newest `keep` of
    /// them are decoded ([`DecodedBlock::decode_user_newest`]). Says whether entries of the
    /// user in `lo..=hi` were left out below those returned (never for a cached block,
    /// which is whole).
    pub fn user_block_newest(
        &self,
        i: usize,
        user: u64,
        lo: i64,
        hi: i64,
        keep: usize,
    ) -> Result<(Arc<DecodedBlock>, bool)> {
        let handle = self.block_handle(i);
        let key = CacheKey { table: self.inner.id, offset: handle.offset };
        match self.inner.cache.lookup(key) {
            Lookup::Hit(block) => Ok((block, false)),
            Lookup::Again => {
                let (block, charge) = self.load_block(&handle)?;
                Ok((self.inner.cache.insert_shared(key, block, charge), false))
            }
            Lookup::First => {
                let (block, cut) = self.load_user(&handle, user, lo, hi, keep)?;
                Ok((Arc::new(block), cut))
            }
        }
    }

    /// `user`'s entries of a block (the newest `keep` in `lo..=hi`), checked against its
    /// index entry as far as they go, and whether older ones in `lo..=hi` were left out.
    fn load_user(
        &self,
        handle: &BlockHandle,
        user: u64,
        lo: i64,
        hi: i64,
        keep: usize,
    ) -> Result<(DecodedBlock, bool)> {
        let (block, cut) = self.with_raw_block(handle, |raw| {
            DecodedBlock::decode_user_newest(raw, user, lo, hi, keep)
                .map_err(|reason| self.corruption(handle.offset, reason))
        })?;
        let first = block.user(0).zip(block.ts(0));
        let last = block.len().checked_sub(1).and_then(|i| block.user(i).zip(block.ts(i)));
        let inside =
            |key: Option<(u64, i64)>| key.is_none_or(|key| handle.first <= key && key <= handle.last);
        if block.len() > handle.entry_count as usize || !inside(first) || !inside(last) {
            return Err(self.corruption(handle.offset, "block does not hold the keys its index entry names"));
        }
        Ok((block, cut))
    }

    /// The decoded block `i`, from the cache or read, checked and decoded.
    pub fn block(&self, i: usize) -> Result<Arc<DecodedBlock>> {
        let handle = self.block_handle(i);
        let key = CacheKey { table: self.inner.id, offset: handle.offset };
        self.inner.cache.get_or_insert_with(key, || self.load_block(&handle))
    }

    /// Whether the first data block is stored compressed (read and checksummed, not
    /// decoded). A table built with `Compression::None` never has a compressed block, so
    /// this tells a flushed table from a compacted one; a compacted table whose first block
    /// did not compress also answers `false`. An empty table answers `true`: there is
    /// nothing to compress.
    pub fn first_block_compressed(&self) -> Result<bool> {
        if self.block_count() == 0 {
            return Ok(true);
        }
        let handle = self.block_handle(0);
        self.with_raw_block(&handle, |raw| {
            Ok(raw.first().is_some_and(|&codec| codec != crate::block::CODEC_NONE))
        })
    }

    /// Calls `f` with the on-disk bytes of a block, checksum verified: sliced from the
    /// mapping, or read into this thread's scratch buffer ([`crate::scratch`]).
    fn with_raw_block<T>(&self, handle: &BlockHandle, f: impl FnOnce(&[u8]) -> Result<T>) -> Result<T> {
        let len = handle.len as usize;
        let checked = |raw: &[u8]| {
            if xxh3_64(raw) != handle.checksum {
                return Err(self.corruption(handle.offset, "block checksum mismatch"));
            }
            f(raw)
        };
        match &self.inner.map {
            Some(map) => checked(
                map.get(handle.offset, len)
                    .ok_or_else(|| self.corruption(handle.offset, "block past the end of the file"))?,
            ),
            // Bounded by the file: open checked that every block lies inside the data.
            None => scratch::with(Scratch::Read, len, |buf| {
                self.inner.file.read_at(handle.offset, buf)?;
                checked(buf)
            }),
        }
    }

    fn load_block(&self, handle: &BlockHandle) -> Result<(DecodedBlock, usize)> {
        let block = self.with_raw_block(handle, |raw| {
            DecodedBlock::decode(raw).map_err(|reason| self.corruption(handle.offset, reason))
        })?;
        let first = block.user(0).zip(block.ts(0));
        let last = block.len().checked_sub(1).and_then(|i| block.user(i).zip(block.ts(i)));
        if block.len() != handle.entry_count as usize
            || first != Some(handle.first)
            || last != Some(handle.last)
        {
            return Err(self.corruption(handle.offset, "block does not hold the keys its index entry names"));
        }
        let charge = block.mem_size();
        Ok((block, charge))
    }

    /// The first block whose last key is at or after `(user, ts)`.
    pub(crate) fn seek_block(&self, user: u64, ts: i64) -> usize {
        let blocks = self.user_blocks(user);
        // Before `blocks` every block ends before the user; after it every block starts
        // after it. So the answer lies in `blocks.start..=blocks.end`.
        let (mut lo, mut hi) = (blocks.start, blocks.end);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.block_handle(mid).last < (user, ts) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// How many blocks start at or before `(user, ts)`: the reverse iterator's first block
    /// is the last of them.
    pub(crate) fn blocks_starting_by(&self, user: u64, ts: i64) -> usize {
        // Every block before these starts before the user, every one after starts after it.
        let std::ops::Range { start: mut a, end: mut b } = self.blocks_starting_with(user);
        while a < b {
            let mid = a + (b - a) / 2;
            if self.block_handle(mid).first <= (user, ts) {
                a = mid + 1;
            } else {
                b = mid;
            }
        }
        a
    }

    /// The blocks that may hold `user`'s entries: the last block that starts before the user
    /// (its tail may hold the user's first entries), then every block that starts with the
    /// user. Every block before ends before the user, every block after starts after it.
    fn user_blocks(&self, user: u64) -> std::ops::Range<usize> {
        let starting = self.blocks_starting_with(user);
        starting.start.saturating_sub(1)..starting.end
    }

    /// The blocks whose first entry is `user`'s, found in the column of first users.
    fn blocks_starting_with(&self, user: u64) -> std::ops::Range<usize> {
        self.inner.first_users.starting_with(user)
    }

    /// Every version stored at `(user, ts)`, newest first, followed by the range deletes of
    /// the table that cover `ts`. The engine resolves visibility by seqno.
    pub fn get(&self, user: u64, ts: i64) -> Result<Vec<Entry>> {
        let mut found = Vec::new();
        if !self.may_contain_user(user) {
            return Ok(found);
        }
        for entry in self.user_range(user, ts, ts) {
            found.push(entry?);
        }
        // Range deletes come from the range-delete list below, which also has those that
        // start before `ts` and cover it.
        found.retain(|e| e.kind != crate::Kind::RangeDelete);
        for range in self.range_deletes(user)? {
            if range.ts <= ts && range.range_last().is_some_and(|last| ts <= last) {
                found.push(range);
            }
        }
        Ok(found)
    }

    /// The range deletes of `user` in this table, in table order.
    pub fn range_deletes(&self, user: u64) -> Result<Vec<Entry>> {
        let footer = &self.inner.footer;
        let start = self.inner.rangedel_at;
        let records = self.inner.meta.get(start..start + footer.rangedel_len as usize).unwrap_or(&[]);
        let count = records.len() / RANGE_DELETE_LEN;
        let user_at = |i: usize| u64_at(records, i * RANGE_DELETE_LEN);
        let (mut lo, mut hi) = (0, count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if user_at(mid) < user {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let mut out = Vec::new();
        for i in lo..count {
            let at = i * RANGE_DELETE_LEN;
            if user_at(i) != user {
                break;
            }
            let (first, last, seqno) =
                (i64_at(records, at + 8), i64_at(records, at + 16), u64_at(records, at + 24));
            if last < first {
                let offset = footer.index_offset + (start + at) as u64;
                return Err(self.corruption(offset, "inverted range delete"));
            }
            out.push(Entry::range_delete(user, first, last, seqno));
        }
        Ok(out)
    }

    /// Entries of `user` with `lo <= ts <= hi`, in table order (ts ascending, newest version
    /// first); range deletes appear at their first timestamp.
    pub fn user_range(&self, user: u64, lo: i64, hi: i64) -> crate::iter::UserIter {
        crate::iter::UserIter::new(self.clone(), user, lo, hi)
    }

    /// Entries of `user` with `lo <= ts <= hi`, newest timestamp first (the exact reverse of
    /// table order): what "latest N" reads.
    pub fn user_range_rev(&self, user: u64, lo: i64, hi: i64) -> crate::iter::UserRevIter {
        crate::iter::UserRevIter::new(self.clone(), user, lo, hi)
    }

    /// The newest `n` entries of `user` (every version, newest timestamp first, as
    /// [`Table::user_range_rev`] yields them): the "latest N" read, with the result sized
    /// up front.
    ///
    /// It walks the user's blocks backwards directly rather than through the iterator: per
    /// entry it only slices the decoded block, which keeps a warm read of 100 events within
    /// a few microseconds (docs/PERFORMANCE.md).
    pub fn latest(&self, user: u64, n: usize) -> Result<Vec<Entry>> {
        let mut out = Vec::with_capacity(n.min(4096));
        if n == 0 || !self.may_contain_user(user) {
            return Ok(out);
        }
        // One past the last block whose first key is at or before the user's newest key.
        let (mut lo, mut hi) = (0, self.block_count());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.block_handle(mid).first <= (user, i64::MAX) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let mut i = lo;
        while i > 0 && out.len() < n {
            i -= 1;
            if self.block_handle(i).last.0 < user {
                break;
            }
            let block = self.block(i)?;
            let range = block.user_range(user);
            block.extend_rev(range.clone(), n - out.len(), &mut out);
            if range.start > 0 {
                // The user's oldest entry is in this block: nothing of it lies further back.
                break;
            }
        }
        Ok(out)
    }

    /// Every entry of the table in table order, for compaction. It reads the blocks it does
    /// not find in the block cache without caching them ([`Table::block_uncached`]).
    pub fn iter(&self) -> crate::iter::TableIter {
        crate::iter::TableIter::new(self.clone())
    }
}

/// Reads and decodes the footer at the end of a file of `file_len` bytes.
fn read_footer(file: &dyn File, path: &Path, file_len: u64) -> Result<Footer> {
    let read_tail = |len: u64| -> Result<Vec<u8>> {
        let mut tail = vec![0u8; len as usize];
        file.read_at(file_len - len, &mut tail)?;
        Ok(tail)
    };
    let mut tail = read_tail(file_len.min(FOOTER_LEN as u64))?;
    let wanted = Footer::tail_len(&tail, file_len);
    if wanted > tail.len() as u64 {
        // A footer-length field naming a longer footer (a newer version, or damage): read
        // all of it, as decoding the whole file would, to tell the two apart. Bounded by
        // the file length.
        tail = read_tail(wanted)?;
    }
    Footer::decode_tail(&tail, file_len).map_err(|err| match err {
        FooterError::NotATable(reason) => SstError::NotATable { file: path.to_path_buf(), reason },
        FooterError::Damaged(offset, reason) => {
            SstError::Corruption { file: path.to_path_buf(), offset: offset as u64, reason }
        }
        FooterError::Version(version) => SstError::UnsupportedVersion {
            file: path.to_path_buf(),
            version,
            supported: crate::format::TABLE_VERSION,
        },
    })
}

/// Checks that data, index, filter, range deletes and footer tile the file, reads the
/// metadata region and footer (`index_offset..file_len`) into memory, and checks the
/// metadata checksum and the filter header. Returns the bytes and where the filter and the
/// range deletes start in them.
fn read_metadata(
    file: &dyn File,
    path: &Path,
    file_len: u64,
    footer: &Footer,
) -> Result<(Vec<u8>, usize, usize)> {
    let corrupt =
        |offset: u64, reason: String| SstError::Corruption { file: path.to_path_buf(), offset, reason };
    // The footer decoded, so the file holds at least FOOTER_LEN bytes.
    let footer_at = file_len - FOOTER_LEN as u64;
    let meta_end = footer
        .index_offset
        .checked_add(footer.index_len)
        .and_then(|v| v.checked_add(footer.filter_len))
        .and_then(|v| v.checked_add(footer.rangedel_len));
    if meta_end != Some(footer_at) {
        return Err(corrupt(footer_at, "metadata lengths do not reach the footer".into()));
    }
    // Bounded by the file: index_offset <= footer_at.
    let mut meta = vec![0u8; (file_len - footer.index_offset) as usize];
    file.read_at(footer.index_offset, &mut meta)?;
    let meta_len = (footer_at - footer.index_offset) as usize;
    if xxh3_64(&meta[..meta_len]) != footer.meta_checksum {
        return Err(corrupt(footer.index_offset, "metadata checksum mismatch".into()));
    }
    let stats = &footer.stats;
    if footer.index_len != u64::from(stats.blocks) * INDEX_ENTRY_LEN as u64
        || footer.rangedel_len != stats.range_deletes * RANGE_DELETE_LEN as u64
    {
        return Err(corrupt(footer_at, "index or range-delete length does not match the counts".into()));
    }
    let filter_at = footer.index_len as usize;
    let rangedel_at = filter_at + footer.filter_len as usize;
    Filter::decode(&meta[filter_at..rangedel_at])
        .map_err(|reason| corrupt(footer.index_offset + filter_at as u64, reason))?;
    Ok((meta, filter_at, rangedel_at))
}
