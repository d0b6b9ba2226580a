//! strata's SSTables: immutable sorted runs of events of one time partition, clustered by
//! user, compressed and checksummed block by block.
//!
//! Write path: [`TableBuilder`] streams sorted [`Entry`]s into column-oriented blocks
//! (`block`), compresses them with zstd, and writes the index, the user filter (`filter`),
//! the range-delete list and the footer (`footer`) under a temporary name, then syncs and
//! renames it into place.
//!
//! Read path: [`Table`] maps a sealed table with memmap2 (the one place `unsafe` is allowed
//! in strata), checks the footer and metadata checksums, and serves point reads, forward and
//! reverse per-user iterators and a whole-table iterator through a shared, sharded
//! [`BlockCache`] of decoded blocks.
//!
//! The byte layout is documented in docs/format/sstable.md.

// Table offsets are u64 on disk and usize in memory (the file is mapped); with 64-bit
// pointers the conversion never truncates, so the crate refuses to build anywhere else.
#[cfg(not(target_pointer_width = "64"))]
compile_error!("strata-sstable maps whole tables into memory and needs a 64-bit target");

pub mod block;
mod builder;
pub mod cache;
mod entry;
mod error;
pub mod filter;
pub mod format;
#[doc(hidden)]
pub mod fuzzing;
mod iter;
mod mmap;
mod table;
pub mod varint;

pub use cache::{Cache, CacheKey, CacheStats};

/// The cache of decoded blocks shared by every table reader.
pub type BlockCache = cache::Cache<block::DecodedBlock>;
pub use builder::{TableBuilder, TableMeta, TableOptions, MAX_VALUE_BYTES};
pub use entry::{table_order, Entry, Kind};
pub use error::{Result, SstError};
pub use format::TableStats;
pub use iter::{TableIter, UserIter, UserRevIter};
pub use table::Table;
