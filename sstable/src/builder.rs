//! [`TableBuilder`]: streams sorted entries into a table file.
//!
//! Entries arrive in table order (user asc, ts asc, seqno desc); anything else is refused
//! with [`SstError::OutOfOrder`] before it reaches the file. A block is cut at the first
//! user boundary after it reaches the target size, so that a user's events stay together;
//! a user with more events than twice the target is cut mid-run.
//!
//! Durability: the table is written under `<name>.tmp`, synced, renamed to its name, and
//! the directory synced. Until `finish` returns `Ok`, no file of that name exists.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_vfs::{File, FileSystem};
use xxhash_rust::xxh3::xxh3_64;

use crate::block::{BlockBuilder, Compression};
use crate::filter::FilterBuilder;
use crate::format::{BlockHandle, Footer, TableStats};
use crate::{Entry, EntryRef, Kind, Result, SstError};

/// Largest value an entry may carry (16 MiB): far above any behavior event, and small
/// enough that one entry never dominates a block.
pub const MAX_VALUE_BYTES: usize = 16 << 20;

/// How tables are built.
#[derive(Clone, Debug)]
pub struct TableOptions {
    /// Target uncompressed size of a data block (default 32 KiB).
    pub block_bytes: usize,
    /// Block compression (default zstd level -1). Bit-transposed columns leave zstd little to
    /// find: on the settled tables of the standard workload (133,998 blocks of about 150
    /// events) levels 1 and -1 both store 0.948 of the body, and level 3 0.946. A negative
    /// level leaves literals unencoded, so a block decompresses in 0.65 µs instead of 1.35
    /// (level 1), and every cold read of a block pays that; docs/PERFORMANCE.md.
    pub compression: Compression,
    /// Bits per distinct user in the user filter (default 11: 0.6% false positives, measured
    /// in `filter`'s tests; 10 sits right at 1% with one-cache-line blocks).
    pub filter_bits_per_user: u32,
}

impl Default for TableOptions {
    fn default() -> Self {
        TableOptions {
            block_bytes: 32 << 10,
            compression: Compression::Zstd(-1),
            filter_bits_per_user: crate::filter::DEFAULT_BITS_PER_USER,
        }
    }
}

/// What the engine says about the table it builds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableMeta {
    /// The time partition (`floor(ts / partition_width)`; a merge of a partition group
    /// writes the group's first partition, its entries spanning the whole group).
    pub partition: i64,
    /// The partition width in microseconds.
    pub partition_width: u64,
    /// Whether this is a time-ordered sequence table (`false`: late, unsequence data).
    pub sequence: bool,
}

/// Builds one table; see the module doc.
#[derive(Debug)]
pub struct TableBuilder {
    fs: Arc<dyn FileSystem>,
    path: PathBuf,
    temp: PathBuf,
    file: Box<dyn File>,
    options: TableOptions,
    block: BlockBuilder,
    block_first: Option<(u64, i64)>,
    block_last: (u64, i64),
    block_ts: (i64, i64),
    offset: u64,
    index: Vec<u8>,
    filter: FilterBuilder,
    range_deletes: Vec<u8>,
    stats: TableStats,
    last: Option<(u64, i64, u64)>,
}

impl TableBuilder {
    /// Starts a table that will be named `path` once finished.
    pub fn create(
        fs: Arc<dyn FileSystem>,
        path: &Path,
        options: TableOptions,
        meta: TableMeta,
    ) -> Result<Self> {
        // A block is cut at twice the target at the latest; an eighth of the decoder's limit
        // leaves room for the encoding of pathological entries (a new user and a random ts
        // per entry), so `finish` of a block never fails for size.
        let max_block_bytes = crate::block::MAX_BLOCK_UNCOMPRESSED / 8;
        if options.block_bytes == 0 || options.block_bytes > max_block_bytes {
            return Err(SstError::InvalidOption {
                name: "block_bytes",
                reason: format!("{} is not in 1..={max_block_bytes}", options.block_bytes),
            });
        }
        let mut temp = path.as_os_str().to_owned();
        temp.push(".tmp");
        let temp = PathBuf::from(temp);
        let file = fs.create(&temp)?;
        let stats = TableStats {
            min_ts: i64::MAX,
            max_ts: i64::MIN,
            min_seqno: u64::MAX,
            partition: meta.partition,
            partition_width: meta.partition_width,
            sequence: meta.sequence,
            compressed: options.compression != Compression::None,
            ..TableStats::default()
        };
        Ok(TableBuilder {
            fs,
            path: path.to_path_buf(),
            temp,
            file,
            filter: FilterBuilder::new(options.filter_bits_per_user),
            options,
            block: BlockBuilder::new(),
            block_first: None,
            block_last: (0, 0),
            block_ts: (i64::MAX, i64::MIN),
            offset: 0,
            index: Vec::new(),
            range_deletes: Vec::new(),
            stats,
            last: None,
        })
    }

    /// Adds the next entry; it must sort strictly after the previous one.
    pub fn add(&mut self, entry: &Entry) -> Result<()> {
        self.add_ref(entry.as_ref())
    }

    /// [`TableBuilder::add`] with the value borrowed.
    pub fn add_ref(&mut self, entry: EntryRef<'_>) -> Result<()> {
        let entry = &entry;
        self.check(entry)?;
        let new_user = self.last.is_none_or(|(user, _, _)| user != entry.user);
        if new_user {
            self.stats.users += 1;
            if self.block.raw_size() >= self.options.block_bytes {
                self.flush_block()?;
            }
        } else if self.block.raw_size() >= 2 * self.options.block_bytes {
            self.flush_block()?;
        }
        self.filter.add(entry.user);
        self.track(entry);
        self.block.add_ref(entry);
        self.last = Some((entry.user, entry.ts, entry.seqno));
        Ok(())
    }

    fn check(&self, entry: &EntryRef<'_>) -> Result<()> {
        let key = (entry.user, entry.ts, entry.seqno);
        if let Some(previous) = self.last {
            let ordered = (previous.0, previous.1, std::cmp::Reverse(previous.2))
                < (key.0, key.1, std::cmp::Reverse(key.2));
            if !ordered {
                return Err(SstError::OutOfOrder { file: self.path.clone(), previous, next: key });
            }
        }
        if entry.value.len() > MAX_VALUE_BYTES {
            return Err(self.bad_entry(format!(
                "value of {} bytes over the limit of {MAX_VALUE_BYTES}",
                entry.value.len()
            )));
        }
        match (entry.kind, entry.range_last()) {
            (Kind::RangeDelete, None) => Err(self.bad_entry("range delete without an 8-byte end".into())),
            (Kind::RangeDelete, Some(last)) if last < entry.ts => {
                Err(self.bad_entry(format!("range delete {}..={last} is inverted", entry.ts)))
            }
            (Kind::Delete, _) if !entry.value.is_empty() => Err(self.bad_entry("delete with a value".into())),
            _ => Ok(()),
        }
    }

    fn bad_entry(&self, reason: String) -> SstError {
        SstError::BadEntry { file: self.path.clone(), reason }
    }

    fn track(&mut self, entry: &EntryRef<'_>) {
        let s = &mut self.stats;
        let end = entry.range_last().unwrap_or(entry.ts);
        s.entries += 1;
        s.min_ts = s.min_ts.min(entry.ts);
        s.max_ts = s.max_ts.max(end);
        s.min_seqno = s.min_seqno.min(entry.seqno);
        s.max_seqno = s.max_seqno.max(entry.seqno);
        if entry.kind == Kind::RangeDelete {
            s.range_deletes += 1;
            for value in [entry.user, entry.ts as u64, end as u64, entry.seqno] {
                self.range_deletes.extend_from_slice(&value.to_le_bytes());
            }
        }
        self.block_first.get_or_insert((entry.user, entry.ts));
        self.block_last = (entry.user, entry.ts);
        self.block_ts = (self.block_ts.0.min(entry.ts), self.block_ts.1.max(entry.ts));
    }

    fn flush_block(&mut self) -> Result<()> {
        let Some(first) = self.block_first.take() else { return Ok(()) };
        let entry_count = self.block.len();
        let bytes = self.block.finish(self.options.compression).map_err(|reason| self.bad_entry(reason))?;
        let len = u32::try_from(bytes.len()).map_err(|_| self.bad_entry("block over 4 GiB".into()))?;
        let handle = BlockHandle {
            offset: self.offset,
            len,
            entry_count: u32::try_from(entry_count)
                .map_err(|_| self.bad_entry("block over 4G entries".into()))?,
            first,
            last: self.block_last,
            min_ts: self.block_ts.0,
            max_ts: self.block_ts.1,
            checksum: xxh3_64(&bytes),
        };
        self.file.append(&bytes)?;
        self.offset += u64::from(len);
        handle.encode(&mut self.index);
        self.stats.blocks += 1;
        self.block_ts = (i64::MAX, i64::MIN);
        Ok(())
    }

    /// Writes the metadata and footer, syncs, and renames the table into place. The stats
    /// returned are those a reader finds in the footer, `file_bytes` and `footer_checksum`
    /// included.
    pub fn finish(mut self) -> Result<TableStats> {
        self.flush_block()?;
        let filter = self.filter.finish();
        let mut meta = std::mem::take(&mut self.index);
        let index_len = meta.len() as u64;
        meta.extend_from_slice(&filter);
        meta.extend_from_slice(&self.range_deletes);
        let footer = Footer {
            index_offset: self.offset,
            index_len,
            filter_len: filter.len() as u64,
            rangedel_len: self.range_deletes.len() as u64,
            meta_checksum: xxh3_64(&meta),
            stats: self.stats,
        };
        let footer = footer.encode();
        self.file.append_vectored(&[&meta, &footer])?;
        self.file.sync_data()?;
        self.fs.rename(&self.temp, &self.path)?;
        let dir = self.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        self.fs.sync_dir(dir)?;
        let mut stats = self.stats;
        stats.file_bytes = self.offset + meta.len() as u64 + crate::format::FOOTER_LEN as u64;
        stats.footer_checksum = crate::format::u64_at(&footer, crate::format::FOOTER_LEN - 16);
        Ok(stats)
    }

    /// Gives up on the table and removes its temporary file.
    pub fn abandon(self) -> Result<()> {
        drop(self.file);
        self.fs.remove(&self.temp)?;
        Ok(())
    }

    /// Entries added so far.
    pub fn entries(&self) -> u64 {
        self.stats.entries
    }

    /// Bytes written to the file so far (data blocks only).
    pub fn written_bytes(&self) -> u64 {
        self.offset
    }
}
