//! strata's SSTables: immutable sorted runs of events of one time partition, clustered by
//! user, compressed and checksummed block by block.
//!
//! Write path: [`TableBuilder`] streams sorted [`Entry`]s into column-oriented blocks
//! (`block`), compresses them with zstd, and writes the index, the user filter (`filter`),
//! the range-delete list and the footer (`footer`) under a temporary name, then syncs and
//! renames it into place.
//!
//! Read path: [`Table`] opens a sealed table through the file-system seam, checks the footer
//! and the metadata checksums, keeps the metadata (index, filter, range deletes) in memory,
//! and serves point reads, forward and reverse per-user iterators and a whole-table iterator
//! through a shared, sharded [`BlockCache`] of decoded blocks. A cache miss reads exactly one
//! block with `read_at` ([`ReadMode::Pread`], the default, which bounds resident memory by
//! the cache), or slices it from a memory mapping ([`ReadMode::Mmap`], opt-in; the mapping
//! in `mmap` is the one place `unsafe` is allowed in strata).
//!
//! The byte layout is documented in docs/format/sstable.md.

// Table offsets are u64 on disk and usize in memory (buffer lengths and slice indices, and
// whole-file mappings in `ReadMode::Mmap`); with 64-bit pointers the conversion never
// truncates, so the crate refuses to build anywhere else.
#[cfg(not(target_pointer_width = "64"))]
compile_error!("strata-sstable indexes tables with usize offsets and needs a 64-bit target");

pub mod block;
mod builder;
pub mod cache;
mod entry;
mod error;
pub mod filter;
mod first_users;
pub mod format;
#[doc(hidden)]
pub mod fuzzing;
mod iter;
mod mmap;
mod scratch;
mod table;
#[cfg(test)]
mod test_rng;
pub mod varint;

pub use cache::{Cache, CacheKey, CacheStats};

/// The cache of decoded blocks shared by every table reader.
pub type BlockCache = cache::Cache<block::DecodedBlock>;
pub use builder::{TableBuilder, TableMeta, TableOptions, MAX_VALUE_BYTES};
pub use entry::{table_order, Entry, EntryRef, Kind};
pub use error::{Result, SstError};
pub use format::TableStats;
pub use iter::{TableIter, UserIter, UserRevIter};
pub use table::{ReadMode, Table};
