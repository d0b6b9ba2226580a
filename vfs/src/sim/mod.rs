//! [`SimFs`]: a simulated disk in memory that knows which bytes and names are durable, and
//! [`CrashMode`]: how [`SimFs::crash`] treats what was not.
//!
//! The model is a tiny inode file system, all of it behind one mutex so that every operation
//! is atomic. Invariants:
//! - Two namespaces map paths to entries: `current` (what the running program sees) and
//!   `durable` (what a power loss keeps). The root `/` is a directory in both, always.
//! - A directory is an entry of its parent: it becomes durable when its parent is synced.
//! - Each inode holds `current` and `durable` bytes and a length `stable` on which both
//!   agree, so a sync copies only the bytes written since the previous sync.
//! - `refs` of an inode counts its entries in both namespaces plus its open handles; the
//!   inode is freed at zero, so a removed file keeps working through a handle still open.
//! - `generation` grows at every crash; handles and lock guards of an older generation are
//!   stale and never touch the new state.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use crate::{File, FileSystem, FsError, FsErrorKind, LockGuard, OpKind, Result, SimRng};

/// The most garbage bytes [`CrashMode::GarbageTail`] appends to one file.
const MAX_GARBAGE: u64 = 4096;

/// The unit in which [`CrashMode::Reorder`] keeps or loses unsynced bytes: a page of the
/// page cache, aligned to file offsets, which the kernel writes back in any order.
pub const PAGE_BYTES: usize = 4096;

/// How [`SimFs::crash`] treats bytes that were appended but not synced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashMode {
    /// Keep only synced bytes and durable directory entries.
    DurableOnly,
    /// Like `DurableOnly`, but each file whose current contents are longer than its durable
    /// contents keeps a seeded random prefix (possibly empty or all) of the unsynced tail.
    TornTail {
        /// Seed of the random prefix lengths.
        seed: u64,
    },
    /// Like `DurableOnly`, plus up to 4096 random garbage bytes past the durable end of each
    /// file that had unsynced appends.
    GarbageTail {
        /// Seed of the garbage lengths and bytes.
        seed: u64,
    },
    /// Unsynced work reaches the disk in any order, as with write-back caches (the model of
    /// ALICE, "All File Systems Are Not Created Equal", OSDI 2014):
    /// - each page ([`PAGE_BYTES`], aligned to the file offset) of a file's unsynced tail is
    ///   kept or lost independently; the file ends at its last kept page, and a lost page
    ///   before it reads as zeros (an allocated block that was never written);
    /// - each name whose entry differs between the running view and the durable one (a
    ///   create, a remove, either side of a rename not yet made durable by a directory sync)
    ///   independently keeps its durable entry or takes the new one.
    ///
    /// Synced bytes and synced names always survive. A program that syncs everything before
    /// it relies on it passes this mode; one that relies on the order of unsynced work fails.
    Reorder {
        /// Seed of the choices.
        seed: u64,
    },
}

impl CrashMode {
    fn seed(self) -> u64 {
        match self {
            CrashMode::DurableOnly => 0,
            CrashMode::TornTail { seed } | CrashMode::GarbageTail { seed } | CrashMode::Reorder { seed } => {
                seed
            }
        }
    }
}

type Ino = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Entry {
    Dir,
    File(Ino),
}

#[derive(Clone, Copy)]
enum Ns {
    Current,
    Durable,
}

#[derive(Default)]
struct Inode {
    current: Vec<u8>,
    durable: Vec<u8>,
    stable: usize,
    refs: usize,
}

impl Inode {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Option<()> {
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(buf.len())?;
        buf.copy_from_slice(self.current.get(start..end)?);
        Some(())
    }

    fn truncate(&mut self, len: usize) {
        // Growing fills with zeros like `ftruncate`; those zeros need not match `durable`.
        self.current.resize(len, 0);
        self.stable = self.stable.min(len);
    }

    fn sync(&mut self) {
        match self.current.get(self.stable..) {
            Some(fresh) => {
                self.durable.truncate(self.stable);
                self.durable.extend_from_slice(fresh);
            }
            None => self.durable.clone_from(&self.current),
        }
        self.stable = self.current.len();
    }

    /// What the disk holds for this file after a power loss.
    fn after_crash(&self, mode: CrashMode, rng: &mut SimRng) -> Vec<u8> {
        let mut bytes = self.durable.clone();
        let unsynced = self.current.get(bytes.len()..).unwrap_or_default();
        if unsynced.is_empty() {
            return bytes;
        }
        match mode {
            CrashMode::DurableOnly => {}
            CrashMode::TornTail { .. } => {
                let keep = rng.below(unsynced.len() as u64 + 1);
                let keep = usize::try_from(keep).unwrap_or(0);
                bytes.extend_from_slice(unsynced.get(..keep).unwrap_or_default());
            }
            CrashMode::GarbageTail { .. } => {
                let start = bytes.len();
                let garbage = usize::try_from(rng.below(MAX_GARBAGE + 1)).unwrap_or(0);
                bytes.resize(start + garbage, 0);
                rng.fill(&mut bytes[start..]);
            }
            CrashMode::Reorder { .. } => {
                let durable_end = bytes.len();
                let mut page_start = durable_end;
                while page_start < self.current.len() {
                    let page_end = ((page_start / PAGE_BYTES + 1) * PAGE_BYTES).min(self.current.len());
                    if rng.below(2) == 0 {
                        // Lost pages before this one read as zeros up to it.
                        bytes.resize(page_start, 0);
                        bytes.extend_from_slice(self.current.get(page_start..page_end).unwrap_or_default());
                    }
                    page_start = page_end;
                }
            }
        }
        bytes
    }
}

struct State {
    generation: u64,
    next_ino: Ino,
    current: BTreeMap<PathBuf, Entry>,
    durable: BTreeMap<PathBuf, Entry>,
    inodes: HashMap<Ino, Inode>,
    locks: HashSet<PathBuf>,
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Contents can be megabytes; a summary is what a failing test's message needs.
        f.debug_struct("State")
            .field("generation", &self.generation)
            .field("entries", &self.current.len())
            .field("durable_entries", &self.durable.len())
            .field("inodes", &self.inodes.len())
            .field("locks", &self.locks)
            .finish()
    }
}

fn error(op: OpKind, path: &Path, kind: FsErrorKind, detail: impl Into<String>) -> FsError {
    FsError::new(op, path, kind).with_detail(detail)
}

/// The entries directly inside `dir`. Component order puts a directory's whole subtree right
/// after it, so the scan stops at the first path outside the subtree.
fn children(map: &BTreeMap<PathBuf, Entry>, dir: &Path) -> Vec<(PathBuf, Entry)> {
    map.range::<Path, _>((Bound::Excluded(dir), Bound::Unbounded))
        .take_while(|(path, _)| path.starts_with(dir))
        .filter(|(path, _)| path.parent() == Some(dir))
        .map(|(path, entry)| (path.clone(), *entry))
        .collect()
}

/// The durable entries whose every ancestor is a durable directory: what a reboot can reach.
fn reachable(durable: &BTreeMap<PathBuf, Entry>) -> BTreeMap<PathBuf, Entry> {
    let mut kept = BTreeMap::new();
    // Parents sort before their children, so one ordered pass sees each parent first.
    for (path, entry) in durable {
        let parent_kept = path.parent().is_none_or(|parent| kept.get(parent) == Some(&Entry::Dir));
        if parent_kept {
            kept.insert(path.clone(), *entry);
        }
    }
    kept
}

impl State {
    fn new() -> Self {
        let root = BTreeMap::from([(PathBuf::from("/"), Entry::Dir)]);
        State {
            generation: 0,
            next_ino: 0,
            current: root.clone(),
            durable: root,
            inodes: HashMap::new(),
            locks: HashSet::new(),
        }
    }

    fn ns_mut(&mut self, ns: Ns) -> &mut BTreeMap<PathBuf, Entry> {
        match ns {
            Ns::Current => &mut self.current,
            Ns::Durable => &mut self.durable,
        }
    }

    fn retain(&mut self, ino: Ino) {
        if let Some(inode) = self.inodes.get_mut(&ino) {
            inode.refs += 1;
        }
    }

    fn release(&mut self, ino: Ino) {
        if let Some(inode) = self.inodes.get_mut(&ino) {
            inode.refs = inode.refs.saturating_sub(1);
            if inode.refs == 0 {
                self.inodes.remove(&ino);
            }
        }
    }

    /// Sets an entry, keeping inode reference counts right (retain before release, so that
    /// re-setting the same inode never frees it).
    fn put(&mut self, ns: Ns, path: PathBuf, entry: Entry) {
        if let Entry::File(ino) = entry {
            self.retain(ino);
        }
        if let Some(Entry::File(old)) = self.ns_mut(ns).insert(path, entry) {
            self.release(old);
        }
    }

    fn take(&mut self, ns: Ns, path: &Path) {
        if let Some(Entry::File(ino)) = self.ns_mut(ns).remove(path) {
            self.release(ino);
        }
    }

    fn is_dir(&self, path: &Path) -> bool {
        self.current.get(path) == Some(&Entry::Dir)
    }

    fn require_parent(&self, op: OpKind, path: &Path) -> Result<()> {
        match path.parent() {
            Some(parent) if self.is_dir(parent) => Ok(()),
            _ => Err(error(op, path, FsErrorKind::NotFound, "parent directory does not exist")),
        }
    }

    fn file_ino(&self, op: OpKind, path: &Path) -> Result<Ino> {
        match self.current.get(path) {
            Some(Entry::File(ino)) => Ok(*ino),
            Some(Entry::Dir) => Err(error(op, path, FsErrorKind::Io, "is a directory")),
            None => Err(FsError::new(op, path, FsErrorKind::NotFound)),
        }
    }

    fn inode(&self, path: &Path) -> Option<&Inode> {
        match self.current.get(path)? {
            Entry::File(ino) => self.inodes.get(ino),
            Entry::Dir => None,
        }
    }

    fn create_file(&mut self, op: OpKind, path: &Path) -> Result<Ino> {
        self.require_parent(op, path)?;
        if self.current.contains_key(path) {
            return Err(FsError::new(op, path, FsErrorKind::AlreadyExists));
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.inodes.insert(ino, Inode::default());
        self.put(Ns::Current, path.to_path_buf(), Entry::File(ino));
        Ok(ino)
    }

    fn rename(&mut self, from: &Path, to: &Path) -> Result<()> {
        let op = OpKind::Rename;
        let target = || format!("to {}", to.display());
        let ino = self.file_ino(op, from).map_err(|e| e.with_detail(target()))?;
        let target_parent_ok = to.parent().is_some_and(|parent| self.is_dir(parent));
        if !target_parent_ok {
            let detail = format!("the directory of {} does not exist", to.display());
            return Err(error(op, from, FsErrorKind::NotFound, detail));
        }
        if self.is_dir(to) {
            return Err(error(op, from, FsErrorKind::Io, format!("{} is a directory", target())));
        }
        if from != to {
            self.put(Ns::Current, to.to_path_buf(), Entry::File(ino));
            self.take(Ns::Current, from);
        }
        Ok(())
    }

    fn create_dir(&mut self, path: &Path) -> Result<()> {
        let mut missing = Vec::new();
        for dir in path.ancestors() {
            match self.current.get(dir) {
                Some(Entry::Dir) => break,
                Some(Entry::File(_)) => {
                    let detail = format!("{} is a file", dir.display());
                    return Err(error(OpKind::CreateDir, path, FsErrorKind::AlreadyExists, detail));
                }
                // Only a relative path runs out of ancestors without meeting the root.
                None if dir.as_os_str().is_empty() => {
                    return Err(error(OpKind::CreateDir, path, FsErrorKind::NotFound, "relative path"));
                }
                None => missing.push(dir.to_path_buf()),
            }
        }
        for dir in missing.into_iter().rev() {
            self.put(Ns::Current, dir, Entry::Dir);
        }
        Ok(())
    }

    fn sync_dir(&mut self, dir: &Path) -> Result<()> {
        if !self.is_dir(dir) {
            return Err(FsError::new(OpKind::SyncDir, dir, FsErrorKind::NotFound));
        }
        for (path, _) in children(&self.durable, dir) {
            if !self.current.contains_key(&path) {
                self.take(Ns::Durable, &path);
            }
        }
        for (path, entry) in children(&self.current, dir) {
            if self.durable.get(&path) != Some(&entry) {
                self.put(Ns::Durable, path, entry);
            }
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> Result<Vec<String>> {
        if !self.is_dir(dir) {
            return Err(FsError::new(OpKind::List, dir, FsErrorKind::NotFound));
        }
        let mut names: Vec<String> = children(&self.current, dir)
            .into_iter()
            .filter_map(|(path, _)| path.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        names.sort();
        Ok(names)
    }

    fn lock(&mut self, path: &Path) -> Result<()> {
        if !self.current.contains_key(path) {
            self.create_file(OpKind::Lock, path)?;
        }
        self.file_ino(OpKind::Lock, path)?;
        if !self.locks.insert(path.to_path_buf()) {
            let detail = "another owner holds the lock on this path";
            return Err(error(OpKind::Lock, path, FsErrorKind::Locked, detail));
        }
        Ok(())
    }

    fn durably_reachable(&self, path: &Path) -> bool {
        path.ancestors().skip(1).all(|dir| self.durable.get(dir) == Some(&Entry::Dir))
    }

    /// The names a power loss keeps: the durable ones, or (for [`CrashMode::Reorder`]) each
    /// name that differs between the two views taking either side at random.
    fn names_after_crash(&self, mode: CrashMode, rng: &mut SimRng) -> BTreeMap<PathBuf, Entry> {
        let CrashMode::Reorder { .. } = mode else {
            return self.durable.clone();
        };
        let mut names = self.durable.clone();
        let paths: std::collections::BTreeSet<&PathBuf> =
            self.current.keys().chain(self.durable.keys()).collect();
        for path in paths {
            let now = self.current.get(path);
            if now == self.durable.get(path) || rng.below(2) == 0 {
                continue;
            }
            match now {
                Some(entry) => names.insert(path.clone(), *entry),
                None => names.remove(path),
            };
        }
        names
    }

    /// The state a power loss in `mode` leaves, without changing this one.
    fn crashed(&self, mode: CrashMode) -> State {
        let mut rng = SimRng::new(mode.seed());
        let mut survivors = reachable(&self.names_after_crash(mode, &mut rng));
        let mut inodes: HashMap<Ino, Inode> = HashMap::new();
        // BTreeMap order makes the random draws, and so the outcome, a function of the seed.
        for entry in survivors.values() {
            let Entry::File(ino) = *entry else { continue };
            let Some(old) = self.inodes.get(&ino) else {
                continue;
            };
            let inode = inodes.entry(ino).or_insert_with(|| {
                let bytes = old.after_crash(mode, &mut rng);
                Inode { current: bytes.clone(), stable: bytes.len(), durable: bytes, refs: 0 }
            });
            // One reference from each namespace; there are no open handles after a crash.
            inode.refs += 2;
        }
        survivors.retain(|_, entry| match entry {
            Entry::File(ino) => inodes.contains_key(ino),
            Entry::Dir => true,
        });
        State {
            generation: self.generation + 1,
            next_ino: self.next_ino,
            current: survivors.clone(),
            durable: survivors,
            inodes,
            locks: HashSet::new(),
        }
    }
}

/// A simulated disk in memory; cloning shares the disk. See the module docs for the model.
#[derive(Clone, Debug)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

impl Default for SimFs {
    fn default() -> Self {
        SimFs::new()
    }
}

impl SimFs {
    /// An empty disk whose root directory `/` exists and is durable.
    pub fn new() -> SimFs {
        SimFs { state: Arc::new(Mutex::new(State::new())) }
    }

    /// Simulates a power loss in place: only durable names and synced bytes survive (plus a
    /// tail, per `mode`), every open handle becomes stale and every lock is released.
    pub fn crash(&self, mode: CrashMode) {
        let mut state = self.state.lock();
        *state = state.crashed(mode);
    }

    /// A new, separate disk holding what a power loss in `mode` would leave of this one,
    /// which is left as it is: a crash state to recover from while the program that made
    /// it runs on.
    pub fn crash_image(&self, mode: CrashMode) -> SimFs {
        let image = self.state.lock().crashed(mode);
        SimFs { state: Arc::new(Mutex::new(image)) }
    }

    /// Overwrites `data.len()` bytes at `offset` of a file in both its current and durable
    /// contents, as a write that landed in the wrong place, or a lost one, leaves the medium.
    /// The range must lie within the current contents; the durable contents change where
    /// they reach.
    pub fn overwrite(&self, path: &Path, offset: u64, data: &[u8]) -> Result<()> {
        let detail = format!("overwrite of {} bytes at offset {offset}", data.len());
        let mut state = self.state.lock();
        let ino = state.file_ino(OpKind::Open, path)?;
        let start = usize::try_from(offset).ok();
        let inode = state.inodes.get_mut(&ino);
        let done = inode.zip(start).and_then(|(inode, start)| {
            let end = start.checked_add(data.len())?;
            inode.current.get_mut(start..end)?.copy_from_slice(data);
            for (i, byte) in data.iter().enumerate() {
                if let Some(durable) = inode.durable.get_mut(start + i) {
                    *durable = *byte;
                }
            }
            Some(())
        });
        done.ok_or_else(|| error(OpKind::Append, path, FsErrorKind::UnexpectedEof, detail))
    }

    /// Flips bit `bit` (0..=7) of the byte at `offset` in both the current and the durable
    /// contents, as bit rot on the medium would.
    pub fn flip_bit(&self, path: &Path, offset: u64, bit: u8) -> Result<()> {
        let detail = format!("flip_bit at offset {offset}, bit {bit}");
        if bit > 7 {
            return Err(error(OpKind::ReadAt, path, FsErrorKind::Io, detail));
        }
        let mut state = self.state.lock();
        let ino = state.file_ino(OpKind::Open, path)?;
        let inode = state.inodes.get_mut(&ino);
        let index = usize::try_from(offset).ok();
        let byte = inode.zip(index).and_then(|(inode, i)| {
            let byte = inode.current.get_mut(i)?;
            *byte ^= 1 << bit;
            if let Some(durable) = inode.durable.get_mut(i) {
                *durable ^= 1 << bit;
            }
            Some(())
        });
        byte.ok_or_else(|| error(OpKind::ReadAt, path, FsErrorKind::UnexpectedEof, detail))
    }

    /// The current contents of a file, if it exists.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        self.state.lock().inode(path).map(|inode| inode.current.clone())
    }

    /// The bytes that would survive [`CrashMode::DurableOnly`] under this name: the name and
    /// all its directories must be durable, and only synced bytes count.
    pub fn durable_contents(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.state.lock();
        let Some(Entry::File(ino)) = state.durable.get(path) else {
            return None;
        };
        if !state.durably_reachable(path) {
            return None;
        }
        state.inodes.get(ino).map(|inode| inode.durable.clone())
    }

    /// Whether the file now at `path` has every byte synced (its durable contents equal its
    /// current ones), whatever its name: a temporary file may be synced before its rename.
    pub fn is_synced(&self, path: &Path) -> bool {
        let state = self.state.lock();
        state
            .inode(path)
            .is_some_and(|inode| inode.stable == inode.current.len() && inode.durable == inode.current)
    }

    /// Every current file path (not directories), sorted.
    pub fn paths(&self) -> Vec<PathBuf> {
        let state = self.state.lock();
        let files = state.current.iter().filter(|(_, entry)| matches!(entry, Entry::File(_)));
        files.map(|(path, _)| path.clone()).collect()
    }

    fn open_handle(&self, state: &mut State, ino: Ino, path: &Path) -> Box<dyn File> {
        state.retain(ino);
        Box::new(SimFile {
            state: Arc::clone(&self.state),
            ino,
            path: path.to_path_buf(),
            generation: state.generation,
        })
    }
}

impl FileSystem for SimFs {
    fn create(&self, path: &Path) -> Result<Box<dyn File>> {
        let mut state = self.state.lock();
        let ino = state.create_file(OpKind::Create, path)?;
        Ok(self.open_handle(&mut state, ino, path))
    }

    fn open(&self, path: &Path) -> Result<Box<dyn File>> {
        let mut state = self.state.lock();
        let ino = state.file_ino(OpKind::Open, path)?;
        Ok(self.open_handle(&mut state, ino, path))
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        self.state.lock().rename(from, to)
    }

    fn remove(&self, path: &Path) -> Result<()> {
        let mut state = self.state.lock();
        state.file_ino(OpKind::Remove, path)?;
        state.take(Ns::Current, path);
        Ok(())
    }

    fn list(&self, dir: &Path) -> Result<Vec<String>> {
        self.state.lock().list(dir)
    }

    fn create_dir(&self, path: &Path) -> Result<()> {
        self.state.lock().create_dir(path)
    }

    fn sync_dir(&self, path: &Path) -> Result<()> {
        self.state.lock().sync_dir(path)
    }

    fn lock(&self, path: &Path) -> Result<LockGuard> {
        let mut state = self.state.lock();
        state.lock(path)?;
        let held = SimLock {
            state: Arc::downgrade(&self.state),
            path: path.to_path_buf(),
            generation: state.generation,
        };
        Ok(LockGuard::new(Box::new(held)))
    }
}

/// Releases a [`SimFs`] lock on drop, unless the disk crashed (which released it already).
struct SimLock {
    state: Weak<Mutex<State>>,
    path: PathBuf,
    generation: u64,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        if let Some(state) = self.state.upgrade() {
            let mut state = state.lock();
            if state.generation == self.generation {
                state.locks.remove(&self.path);
            }
        }
    }
}

/// An open file of a [`SimFs`]: a reference to an inode, valid until the next crash.
struct SimFile {
    state: Arc<Mutex<State>>,
    ino: Ino,
    path: PathBuf,
    generation: u64,
}

impl fmt::Debug for SimFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimFile")
            .field("path", &self.path)
            .field("ino", &self.ino)
            .field("generation", &self.generation)
            .finish()
    }
}

impl SimFile {
    fn with_inode<T>(&self, op: OpKind, f: impl FnOnce(&mut Inode) -> Result<T>) -> Result<T> {
        let mut state = self.state.lock();
        if state.generation != self.generation {
            let detail = format!(
                "opened before crash {}, disk is past crash {}",
                self.generation + 1,
                state.generation
            );
            return Err(error(op, &self.path, FsErrorKind::StaleHandle, detail));
        }
        match state.inodes.get_mut(&self.ino) {
            Some(inode) => f(inode),
            None => Err(error(op, &self.path, FsErrorKind::Io, "inode vanished while open")),
        }
    }
}

impl Drop for SimFile {
    fn drop(&mut self) {
        let mut state = self.state.lock();
        // A crash already dropped every handle's reference.
        if state.generation == self.generation {
            state.release(self.ino);
        }
    }
}

impl File for SimFile {
    fn path(&self) -> &Path {
        &self.path
    }

    fn append(&self, data: &[u8]) -> Result<()> {
        self.with_inode(OpKind::Append, |inode| {
            inode.current.extend_from_slice(data);
            Ok(())
        })
    }

    fn append_vectored(&self, bufs: &[&[u8]]) -> Result<()> {
        self.with_inode(OpKind::Append, |inode| {
            for buf in bufs {
                inode.current.extend_from_slice(buf);
            }
            Ok(())
        })
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.with_inode(OpKind::ReadAt, |inode| {
            inode.read_at(offset, buf).ok_or_else(|| {
                let detail =
                    format!("offset {offset}, {} bytes, file is {} bytes", buf.len(), inode.current.len());
                error(OpKind::ReadAt, &self.path, FsErrorKind::UnexpectedEof, detail)
            })
        })
    }

    fn len(&self) -> Result<u64> {
        self.with_inode(OpKind::Len, |inode| Ok(inode.current.len() as u64))
    }

    fn sync_data(&self) -> Result<()> {
        self.with_inode(OpKind::SyncData, |inode| {
            inode.sync();
            Ok(())
        })
    }

    fn truncate(&self, len: u64) -> Result<()> {
        self.with_inode(OpKind::Truncate, |inode| {
            let len = usize::try_from(len).map_err(|_| {
                error(OpKind::Truncate, &self.path, FsErrorKind::NoSpace, format!("to {len} bytes"))
            })?;
            inode.truncate(len);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests;
