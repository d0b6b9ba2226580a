//! The manifest on disk: [`ManifestWriter`] creates a manifest file, switches CURRENT to it
//! and appends edits; [`load`] reads back what CURRENT names.
//!
//! Sync order of [`ManifestWriter::create`], each step durable before the next begins:
//! 1. `MANIFEST-<n>`: header and snapshot record, `sync_data`; `sync_dir` (its name);
//! 2. `CURRENT.tmp`: 32 bytes naming `n`, `sync_data`;
//! 3. rename `CURRENT.tmp` over `CURRENT`, `sync_dir`.
//!
//! A crash anywhere leaves CURRENT naming either the old manifest or the complete new one,
//! never a manifest whose first record is not durable.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_vfs::{read_all, File, FileSystem, FsError, FsErrorKind};

use super::edit::{Edit, ManifestState};
use super::format::{append_record, encode_current, encode_header, parse_manifest, MAX_BODY_BYTES};
use crate::{Error, Result};

/// Name of the file that names the current manifest.
pub const CURRENT_NAME: &str = "CURRENT";
/// CURRENT is written under this name and renamed over CURRENT.
const CURRENT_TEMP_NAME: &str = "CURRENT.tmp";

/// The file name of manifest `number`: `MANIFEST-000042`.
pub fn manifest_name(number: u64) -> String {
    format!("MANIFEST-{number:06}")
}

/// Writes one manifest file; see the module doc for the sync order.
pub struct ManifestWriter {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    path: PathBuf,
    number: u64,
    file: Box<dyn File>,
    /// The fold of everything written: an edit is applied here before it is written, so the
    /// writer never makes a manifest that `load` refuses.
    state: ManifestState,
    file_bytes: u64,
    bytes_written: u64,
    /// Why appends are refused, after a failed write or fsync.
    poisoned: Option<String>,
}

impl fmt::Debug for ManifestWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The state may hold a million tables; the counters are what a message needs.
        f.debug_struct("ManifestWriter")
            .field("fs", &self.fs)
            .field("dir", &self.dir)
            .field("path", &self.path)
            .field("tables", &self.state.tables.len())
            .field("file_bytes", &self.file_bytes)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

impl ManifestWriter {
    /// Creates the manifest file `manifest_name(number)` in `dir` (fs.create fails if it
    /// exists: that's an error), writes the header and `state.snapshot_edit()` as the first
    /// record, sync_data()s it, sync_dir(dir)s, then switches CURRENT to it: write
    /// "CURRENT.tmp" (remove a stale CURRENT.tmp first if present), sync_data, rename over
    /// CURRENT, sync_dir. When this returns Ok the new manifest is durable and current.
    /// It does NOT remove the previous manifest file: the caller does that afterwards.
    ///
    /// `InvalidArgument` (before any I/O) for a state with a zero partition width, a table
    /// keyed by another number than its own or numbered at or past `next_file_number`, or
    /// a snapshot over the 64 MiB record limit. After an I/O error the new file may exist
    /// and CURRENT may name either manifest.
    pub fn create(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        number: u64,
        state: &ManifestState,
    ) -> Result<ManifestWriter> {
        let snapshot = checked_snapshot(state)?;
        let mut bytes = encode_header().to_vec();
        append_record(&snapshot, &mut bytes).map_err(|len| too_big("state", len))?;
        let path = dir.join(manifest_name(number));
        let file = fs.create(&path)?;
        file.append(&bytes)?;
        file.sync_data()?;
        fs.sync_dir(dir)?;
        let current_bytes = switch_current(fs.as_ref(), dir, number)?;
        let file_bytes = bytes.len() as u64;
        Ok(ManifestWriter {
            fs,
            dir: dir.to_path_buf(),
            path,
            number,
            file,
            state: state.clone(),
            file_bytes,
            bytes_written: file_bytes + current_bytes,
            poisoned: None,
        })
    }

    /// Appends one edit as one record and sync_data()s. Durable when Ok. After an Err the
    /// writer refuses every further append (returns Error::Poisoned) because the file's
    /// on-disk state is unknown after a failed write or fsync.
    ///
    /// An edit that does not apply to what the file holds (see [`ManifestState::apply`]) or
    /// whose record would be over 64 MiB is refused with `InvalidArgument` before anything
    /// is written; it does not poison the writer.
    pub fn append(&mut self, edit: &Edit) -> Result<()> {
        if let Some(cause) = &self.poisoned {
            return Err(Error::Poisoned { cause: cause.clone() });
        }
        let mut record = Vec::new();
        append_record(edit, &mut record).map_err(|len| too_big("edit", len))?;
        self.state.apply(edit).map_err(|reason| Error::invalid("edit", reason))?;
        let written = self.file.append(&record).and_then(|()| self.file.sync_data());
        if let Err(err) = written {
            self.poisoned = Some(format!("an earlier manifest append failed: {err}"));
            return Err(err.into());
        }
        self.file_bytes += record.len() as u64;
        self.bytes_written += record.len() as u64;
        Ok(())
    }

    /// The manifest's number.
    pub fn number(&self) -> u64 {
        self.number
    }

    /// The manifest file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes in the manifest file so far.
    pub fn file_bytes(&self) -> u64 {
        self.file_bytes
    }

    /// Total bytes this writer wrote (manifest + CURRENT), for write-amplification stats.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }
}

/// The snapshot edit of `state`, after checking that it rebuilds exactly `state`.
fn checked_snapshot(state: &ManifestState) -> Result<Edit> {
    if state.partition_width == 0 {
        return Err(Error::invalid("state", "partition_width is 0: every manifest records the width"));
    }
    let snapshot = state.snapshot_edit();
    let mut rebuilt = ManifestState::default();
    rebuilt.apply(&snapshot).map_err(|reason| Error::invalid("state", reason))?;
    if rebuilt != *state {
        return Err(Error::invalid("state", "a table is keyed by a number other than its own"));
    }
    Ok(snapshot)
}

fn too_big(arg: &'static str, len: usize) -> Error {
    Error::invalid(arg, format!("record body of {len} bytes is over the limit of {MAX_BODY_BYTES}"))
}

/// Points CURRENT at manifest `number` durably; returns the bytes written.
fn switch_current(fs: &dyn FileSystem, dir: &Path, number: u64) -> Result<u64> {
    let temp = dir.join(CURRENT_TEMP_NAME);
    // A crash during an earlier switch can leave CURRENT.tmp; it was never current.
    let file = match fs.create(&temp) {
        Err(err) if err.kind == FsErrorKind::AlreadyExists => {
            fs.remove(&temp)?;
            fs.create(&temp)?
        }
        created => created?,
    };
    let bytes = encode_current(number);
    file.append(&bytes)?;
    file.sync_data()?;
    drop(file);
    fs.rename(&temp, &dir.join(CURRENT_NAME))?;
    fs.sync_dir(dir)?;
    Ok(bytes.len() as u64)
}

/// What [`load`] read.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The number of the manifest CURRENT names.
    pub manifest_number: u64,
    /// Its path.
    pub path: PathBuf,
    /// The fold of its records.
    pub state: ManifestState,
    /// Records applied.
    pub edits: u64,
    /// Where the last valid record ends.
    pub valid_bytes: u64,
    /// `(offset, bytes)` of an incomplete final record that was ignored.
    pub dropped_tail: Option<(u64, u64)>,
}

/// Reads CURRENT and the manifest it names. Ok(None) when `dir` has no CURRENT file.
/// Read-only: it never writes, truncates or removes anything, so a torn tail stays in the
/// file (the engine starts a new manifest rather than append after it).
pub fn load(fs: &dyn FileSystem, dir: &Path) -> Result<Option<Loaded>> {
    let current = dir.join(CURRENT_NAME);
    let Some(bytes) = read_current(fs, &current)? else {
        return Ok(None);
    };
    let corrupt = |(offset, reason)| Error::corruption(&current, offset, reason);
    let number = super::format::decode_current(&bytes).map_err(corrupt)?;
    let path = dir.join(manifest_name(number));
    match read_manifest(fs, &path, number)? {
        Some(loaded) => Ok(Some(loaded)),
        None => {
            let reason = format!("names {}, which is missing", manifest_name(number));
            Err(Error::corruption(&current, 0, reason))
        }
    }
}

/// Reads the manifest file at `path` (number `number`) as [`load`] does, without going
/// through CURRENT: what a checker uses to see which tables a manifest names before CURRENT
/// switches to it. Read-only. Ok(None) when the file does not exist.
pub fn read_manifest(fs: &dyn FileSystem, path: &Path, number: u64) -> Result<Option<Loaded>> {
    let bytes = match fs.open(path).and_then(|file| read_all(file.as_ref())) {
        Err(err) if err.kind == FsErrorKind::NotFound => return Ok(None),
        read => read?,
    };
    let parsed =
        parse_manifest(&bytes).map_err(|(offset, reason)| Error::corruption(path, offset, reason))?;
    Ok(Some(Loaded {
        manifest_number: number,
        path: path.to_path_buf(),
        state: parsed.state,
        edits: parsed.edits,
        valid_bytes: parsed.valid_bytes,
        dropped_tail: parsed.dropped_tail,
    }))
}

/// The bytes of CURRENT, None if it does not exist. A CURRENT of the wrong length is
/// refused unread: damage can make it any size.
fn read_current(fs: &dyn FileSystem, path: &Path) -> Result<Option<Vec<u8>>> {
    let file = match fs.open(path) {
        Err(err) if err.kind == FsErrorKind::NotFound => return Ok(None),
        opened => opened?,
    };
    let len = file.len()?;
    if len != super::format::CURRENT_LEN as u64 {
        let reason = format!("CURRENT is {len} bytes, expected {}", super::format::CURRENT_LEN);
        return Err(Error::corruption(path, 0, reason));
    }
    read_all(file.as_ref()).map(Some).map_err(FsError::into)
}
