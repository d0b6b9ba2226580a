//! Segment files: naming, and the creation of a new segment.
//!
//! A segment is named by the seqno of its first record, as 20 decimal digits (the width of
//! `u64::MAX`), so that names sort like the seqnos: `00000000000000000001.wal`. A new
//! segment is written under `<name>.tmp` with its header, synced, renamed into place, and
//! the directory synced: a segment that exists under its real name always has a complete,
//! durable header.

use std::path::{Path, PathBuf};

use strata_vfs::{File, FileSystem};

use crate::record::encode_segment_header;
use crate::WalError;

/// File name suffix of a segment.
pub const SEGMENT_SUFFIX: &str = ".wal";
/// File name suffix of a segment being created.
pub const TEMP_SUFFIX: &str = ".wal.tmp";
/// Name of the lock file in the WAL directory.
pub const LOCK_NAME: &str = "LOCK";

/// The file name of the segment whose first seqno is `first_seqno`.
pub fn segment_name(first_seqno: u64) -> String {
    format!("{first_seqno:020}{SEGMENT_SUFFIX}")
}

/// What a directory entry of the WAL directory is.
#[derive(Debug, PartialEq, Eq)]
pub enum Entry {
    /// A segment, with the first seqno from its name.
    Segment(u64),
    /// A segment creation that did not finish; safe to remove.
    Temp,
    /// The lock file.
    Lock,
    /// Anything else: refused, since a WAL directory that holds unknown files is either the
    /// wrong directory or damaged.
    Foreign,
}

/// Classifies a name from the WAL directory.
pub fn classify(name: &str) -> Entry {
    if name == LOCK_NAME {
        return Entry::Lock;
    }
    if let Some(stem) = name.strip_suffix(TEMP_SUFFIX) {
        if is_seqno(stem) {
            return Entry::Temp;
        }
    }
    if let Some(stem) = name.strip_suffix(SEGMENT_SUFFIX) {
        if is_seqno(stem) {
            if let Ok(seqno) = stem.parse() {
                return Entry::Segment(seqno);
            }
        }
    }
    Entry::Foreign
}

fn is_seqno(stem: &str) -> bool {
    stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit())
}

/// Creates the segment `first_seqno` durably (see the module doc) and returns it open for
/// appending, positioned after its header.
pub fn create_segment(fs: &dyn FileSystem, dir: &Path, first_seqno: u64) -> Result<Box<dyn File>, WalError> {
    let path = dir.join(segment_name(first_seqno));
    let temp = dir.join(format!("{first_seqno:020}{TEMP_SUFFIX}"));
    let file = fs.create(&temp)?;
    file.append(&encode_segment_header(first_seqno))?;
    file.sync_data()?;
    fs.rename(&temp, &path)?;
    fs.sync_dir(dir)?;
    drop(file);
    Ok(fs.open(&path)?)
}

/// The path of segment `first_seqno` in `dir`.
pub fn segment_path(dir: &Path, first_seqno: u64) -> PathBuf {
    dir.join(segment_name(first_seqno))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_like_seqnos_and_classify_back() {
        assert_eq!(segment_name(1), "00000000000000000001.wal");
        assert_eq!(classify(&segment_name(u64::MAX)), Entry::Segment(u64::MAX));
        assert!(segment_name(9) < segment_name(10));
        assert_eq!(classify("00000000000000000001.wal.tmp"), Entry::Temp);
        assert_eq!(classify("LOCK"), Entry::Lock);
        assert_eq!(classify("1.wal"), Entry::Foreign);
        assert_eq!(classify("99999999999999999999.wal"), Entry::Foreign);
        assert_eq!(classify("notes.txt"), Entry::Foreign);
    }
}
