//! The memory-mapped read mode ([`crate::ReadMode::Mmap`]): a sealed table's OS file mapped
//! read-only, so that a block cache miss is served from the page cache without a copy.
//!
//! The default mode ([`crate::ReadMode::Pread`]) does not use this module: it reads each data
//! block through the file-system seam (`File::read_at`), which keeps the process's resident
//! memory bounded by the block cache. In this mode every page of the mapping that a read
//! touches counts as resident memory of the process until the kernel reclaims it, so the
//! resident size grows with the data read, not with the caches. Simulated and
//! fault-injecting files have no OS file behind them and are never mapped: the table falls
//! back to `Pread`, so that every read of theirs can be observed and failed.
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
use strata_vfs::File;

use crate::{Result, SstError};

/// A sealed table's OS file, mapped read-only.
pub(crate) struct MappedTable {
    map: Mmap,
}

impl MappedTable {
    /// Maps `file` when it is an OS file (and not empty); `None` when it is not, and the
    /// caller must read through the seam.
    pub(crate) fn map(file: &dyn File, path: &Path) -> Result<Option<MappedTable>> {
        let Some(os_file) = file.as_os_file() else {
            return Ok(None);
        };
        if os_file.metadata().map(|m| m.len()).unwrap_or(0) == 0 {
            // Mapping an empty file fails on some systems; an empty table is refused by the
            // footer check before a mapping is asked for anyway.
            return Ok(None);
        }
        // SAFETY: `Mmap::map` is unsafe because the mapping aliases a file that another
        // process could change or truncate underneath it. Sealed tables are immutable: they
        // are complete before they are renamed into place, strata never writes to them
        // again, and deletes them only after the last reader is gone; truncation by another
        // process is the documented limit above. The mapping is read-only, and every range
        // taken from the file is checked against the mapping's length before it is used
        // (`MappedTable::get`). Covered by `tests::mapped_bytes_match_the_file`.
        let map = unsafe { Mmap::map(os_file) }
            .map_err(|e| SstError::Map { file: path.to_path_buf(), reason: e.to_string() })?;
        Ok(Some(MappedTable { map }))
    }

    /// The `len` bytes at `offset`, or `None` if they are not all inside the mapping.
    pub(crate) fn get(&self, offset: u64, len: usize) -> Option<&[u8]> {
        let start = usize::try_from(offset).ok()?;
        self.map.get(start..start.checked_add(len)?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use strata_vfs::{FaultFs, FileSystem, OsFs};

    use super::*;

    #[test]
    fn mapped_bytes_match_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7).to_le_bytes()[0]).collect();
        std::fs::write(&path, &data).unwrap();
        let file = OsFs::new().open(&path).unwrap();
        let mapped = MappedTable::map(file.as_ref(), &path).unwrap().unwrap();
        assert_eq!(mapped.get(0, data.len()), Some(&data[..]));
        assert_eq!(mapped.get(9_000, 1_000), Some(&data[9_000..]));
        assert_eq!(mapped.get(9_000, 1_001), None, "a range past the end is refused");
        assert_eq!(mapped.get(u64::MAX, 1), None);
        // Through the fault injector the seam is kept: nothing is mapped.
        let faulty = FaultFs::new(Arc::new(OsFs::new()), 1);
        let file = faulty.open(&path).unwrap();
        assert!(MappedTable::map(file.as_ref(), &path).unwrap().is_none());
    }
}
