//! The bytes of a sealed table: mapped from the OS file, or read through the file-system
//! seam when the file is simulated or fault-injected.
//!
//! This module holds the only `unsafe` code of strata: the call that maps a file.
//!
//! Limits, stated once here: a mapped table must not be truncated or rewritten by another
//! process while it is open (strata never does either to a sealed table: tables are written
//! under a temporary name and renamed once complete, and removed only when no reader holds
//! them). If another process truncates the file anyway, touching the lost pages raises
//! SIGBUS; that is a documented limit of memory-mapped readers (LMDB, RocksDB's mmap mode
//! and Pebble share it), not something strata can turn into an error.
#![allow(unsafe_code)]

use std::path::Path;

use memmap2::Mmap;
use strata_vfs::{read_all, FileSystem};

use crate::{Result, SstError};

/// A sealed table's bytes.
pub(crate) enum TableBytes {
    /// Mapped read-only from the OS file.
    Mapped(Mmap),
    /// Read into memory through the seam.
    Owned(Vec<u8>),
}

impl TableBytes {
    /// Opens `path` through `fs` and maps it when the file is an OS file, else reads it.
    pub(crate) fn open(fs: &dyn FileSystem, path: &Path) -> Result<TableBytes> {
        let file = fs.open(path)?;
        let Some(os_file) = file.as_os_file() else {
            return Ok(TableBytes::Owned(read_all(file.as_ref())?));
        };
        if os_file.metadata().map(|m| m.len()).unwrap_or(0) == 0 {
            // Mapping an empty file fails on some systems; an empty table is refused by the
            // footer check either way.
            return Ok(TableBytes::Owned(Vec::new()));
        }
        // SAFETY: `Mmap::map` is unsafe because the mapping aliases a file that another
        // process could change or truncate underneath it. Sealed tables are immutable: they
        // are complete before they are renamed into place, strata never writes to them
        // again, and deletes them only after the last reader is gone; truncation by another
        // process is the documented limit above. The mapping is read-only, and every offset
        // taken from the file is checked against `len()` before it is used
        // (`Table::slice`). Covered by `tests::mapped_and_owned_bytes_agree`.
        let map = unsafe { Mmap::map(os_file) }
            .map_err(|e| SstError::Map { file: path.to_path_buf(), reason: e.to_string() })?;
        Ok(TableBytes::Mapped(map))
    }

    /// The table's bytes.
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            TableBytes::Mapped(map) => map,
            TableBytes::Owned(bytes) => bytes,
        }
    }

    /// Whether the bytes are mapped (for tests).
    #[cfg(test)]
    pub(crate) fn is_mapped(&self) -> bool {
        matches!(self, TableBytes::Mapped(_))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use strata_vfs::{FaultFs, OsFs};

    use super::*;

    #[test]
    fn mapped_and_owned_bytes_agree() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7).to_le_bytes()[0]).collect();
        std::fs::write(&path, &data).unwrap();
        let mapped = TableBytes::open(&OsFs::new(), &path).unwrap();
        assert!(mapped.is_mapped());
        assert_eq!(mapped.as_slice(), &data[..]);
        // Through the fault injector the seam is kept: the bytes are read, not mapped.
        let faulty = FaultFs::new(Arc::new(OsFs::new()), 1);
        let owned = TableBytes::open(&faulty, &path).unwrap();
        assert!(!owned.is_mapped());
        assert_eq!(owned.as_slice(), mapped.as_slice());
    }
}
