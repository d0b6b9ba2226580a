//! The manifest: the durable record of which SSTables make up the database.
//!
//! It owns the files `CURRENT` and `MANIFEST-<number>` of the database directory (format:
//! docs/format/manifest.md). A manifest file is a log of checksummed [`Edit`]s; folding them
//! in order gives a [`ManifestState`]: the live tables, the partition width, the watermark
//! of each partition, the last WAL seqno persisted in tables and the next file number.
//! CURRENT names the manifest in force and is switched atomically (write a temporary file,
//! sync, rename, sync the directory).
//!
//! Invariants:
//! - CURRENT only ever names a manifest whose header and first record (a snapshot of the
//!   whole state, partition width included) are durable.
//! - An edit is durable when [`ManifestWriter::append`] returns `Ok`; after a failed append
//!   the writer is poisoned, since the file's state on disk is unknown.
//! - The writer applies every edit to its own copy of the state before writing it, so it
//!   never writes a manifest that [`load`] refuses.
//! - [`load`] is read-only. Only the final record can be torn (it was never acknowledged)
//!   and is ignored; any other damage is [`crate::Error::Corruption`], never a silently
//!   shorter state.
//!
//! Sync order when starting a manifest: manifest file (`sync_data`), its directory entry
//! (`sync_dir`), `CURRENT.tmp` (`sync_data`), rename over CURRENT, directory (`sync_dir`).
//! The previous manifest is removed by the caller, only after that.

mod edit;
mod format;
mod log;

pub use edit::{Edit, ManifestState, TableRecord};
pub use log::{load, manifest_name, read_manifest, Loaded, ManifestWriter, CURRENT_NAME};

#[doc(hidden)]
pub mod fuzzing;

#[cfg(test)]
mod tests;
