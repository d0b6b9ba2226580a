//! [`FaultFs`]: a wrapper that injects faults into chosen operations of another
//! [`FileSystem`], driven by [`FaultRule`]s and one seed.
//!
//! Invariants:
//! - Every trait call on the wrapper or on a file opened through it takes the next index from
//!   one shared counter before anything else, so `Nth(n)` names one call exactly.
//! - Rules are tried in order and the first that matches decides; random choices (whether a
//!   `Probability` rule fires, the length of a partial write, which bit to flip) all come from
//!   one generator seeded with the seed, which every injected error prints.
//! - A failed operation does not reach the inner file system, except that a failed append
//!   first writes a strict prefix of its data, as a real disk may.
//! - A delayed operation waits outside every lock of the wrapper, then runs as if no rule
//!   had matched.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::{File, FileSystem, FsError, FsErrorKind, LockGuard, OpKind, Result, SimRng};

/// Which operations a [`FaultRule`] applies to, by global operation index.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum When {
    /// Only the operation whose 0-based index is `n`.
    Nth(u64),
    /// Every operation with index `n` or more: a power cut, nothing reaches the disk after it.
    FromNth(u64),
    /// Every matching operation.
    Always,
    /// Each matching operation with this probability, drawn from the seeded generator.
    Probability(f64),
}

/// What a matching [`FaultRule`] does to the operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultAction {
    /// Fail with this kind (normally [`FsErrorKind::Io`] or [`FsErrorKind::NoSpace`]). An
    /// append first writes a random strict prefix (possibly empty) of its data.
    Fail(FsErrorKind),
    /// For `read_at` only: read, then flip one random bit of the buffer. No effect elsewhere.
    FlipReadBit,
    /// Wait this long, then run the operation normally: a slow disk, or a thread that
    /// lags behind the others.
    Delay(Duration),
}

/// One fault rule: when it fires, which operations, paths and threads it is limited to, what
/// it does.
#[derive(Clone, Debug)]
pub struct FaultRule {
    /// Which operation indices the rule applies to.
    pub when: When,
    /// Only this kind of operation, if set.
    pub op: Option<OpKind>,
    /// Only paths whose display string contains this, if set (for rename: source or target).
    pub path_contains: Option<String>,
    /// Only operations made by a thread of exactly this name, if set (the engine names its
    /// background threads, for example `strata-flush`).
    pub thread_name: Option<String>,
    /// What the rule does.
    pub action: FaultAction,
}

impl FaultRule {
    /// A rule for every kind of operation, every path and every thread.
    pub fn new(when: When, action: FaultAction) -> Self {
        FaultRule { when, op: None, path_contains: None, thread_name: None, action }
    }

    /// Limits the rule to one kind of operation.
    pub fn on_op(mut self, op: OpKind) -> Self {
        self.op = Some(op);
        self
    }

    /// Limits the rule to paths containing `fragment`.
    pub fn on_path(mut self, fragment: impl Into<String>) -> Self {
        self.path_contains = Some(fragment.into());
        self
    }

    /// Limits the rule to operations of the thread named `name`.
    pub fn on_thread(mut self, name: impl Into<String>) -> Self {
        self.thread_name = Some(name.into());
        self
    }

    /// Whether the rule applies. The filters come first so that a `Probability` rule draws
    /// from the generator only for operations it could apply to.
    fn matches(&self, index: u64, op: OpKind, paths: &[&Path], rng: &mut SimRng) -> bool {
        if self.op.is_some_and(|only| only != op) {
            return false;
        }
        if let Some(name) = &self.thread_name {
            if std::thread::current().name() != Some(name.as_str()) {
                return false;
            }
        }
        if let Some(fragment) = &self.path_contains {
            if !paths.iter().any(|path| path.display().to_string().contains(fragment.as_str())) {
                return false;
            }
        }
        match self.when {
            When::Nth(n) => index == n,
            When::FromNth(n) => index >= n,
            When::Always => true,
            When::Probability(p) => rng.unit() < p,
        }
    }
}

#[derive(Debug)]
struct Control {
    rules: Vec<FaultRule>,
    rng: SimRng,
}

/// State shared by the wrapper and every file opened through it.
#[derive(Debug)]
struct Shared {
    seed: u64,
    ops: AtomicU64,
    injected: AtomicU64,
    control: Mutex<Control>,
}

/// The decision for one operation.
struct Verdict {
    index: u64,
    action: Option<FaultAction>,
}

impl Shared {
    fn decide(&self, op: OpKind, paths: &[&Path]) -> Verdict {
        let index = self.ops.fetch_add(1, Ordering::SeqCst);
        let mut control = self.control.lock();
        let Control { rules, rng } = &mut *control;
        let action = rules.iter().find(|rule| rule.matches(index, op, paths, rng)).map(|rule| rule.action);
        drop(control);
        if let Some(FaultAction::Delay(wait)) = action {
            // Outside the lock: other threads' operations go on meanwhile.
            std::thread::sleep(wait);
            return Verdict { index, action: None };
        }
        Verdict { index, action }
    }

    fn below(&self, bound: u64) -> u64 {
        self.control.lock().rng.below(bound)
    }

    fn injected_error(&self, index: u64, op: OpKind, path: &Path, kind: FsErrorKind) -> FsError {
        self.injected.fetch_add(1, Ordering::SeqCst);
        let seed = self.seed;
        FsError::new(op, path, kind)
            .with_detail(format!("injected fault at op {index} (seed {seed:#x}); replay with the same seed"))
    }

    /// Runs `f` unless a `Fail` rule matches; `paths[0]` is the path the error names.
    fn run<T>(&self, op: OpKind, paths: &[&Path], f: impl FnOnce() -> Result<T>) -> Result<T> {
        let verdict = self.decide(op, paths);
        match (verdict.action, paths.first()) {
            (Some(FaultAction::Fail(kind)), Some(path)) => {
                Err(self.injected_error(verdict.index, op, path, kind))
            }
            _ => f(),
        }
    }
}

/// A [`FileSystem`] that forwards to another one and injects faults per its rules.
#[derive(Debug)]
pub struct FaultFs {
    inner: Arc<dyn FileSystem>,
    shared: Arc<Shared>,
}

impl FaultFs {
    /// Wraps `inner` with no rules; `seed` drives every random choice.
    pub fn new(inner: Arc<dyn FileSystem>, seed: u64) -> FaultFs {
        let control = Control { rules: Vec::new(), rng: SimRng::new(seed) };
        let shared = Shared {
            seed,
            ops: AtomicU64::new(0),
            injected: AtomicU64::new(0),
            control: Mutex::new(control),
        };
        FaultFs { inner, shared: Arc::new(shared) }
    }

    /// The seed of the random choices.
    pub fn seed(&self) -> u64 {
        self.shared.seed
    }

    /// Adds a rule after the existing ones (earlier rules take precedence).
    pub fn add_rule(&self, rule: FaultRule) {
        self.shared.control.lock().rules.push(rule);
    }

    /// Removes every rule; operations pass through from now on.
    pub fn clear_rules(&self) {
        self.shared.control.lock().rules.clear();
    }

    /// How many operations were seen, on the file system and on its files.
    pub fn op_count(&self) -> u64 {
        self.shared.ops.load(Ordering::SeqCst)
    }

    /// How many faults were injected.
    pub fn injected_count(&self) -> u64 {
        self.shared.injected.load(Ordering::SeqCst)
    }

    fn wrap(&self, inner: Box<dyn File>) -> Box<dyn File> {
        Box::new(FaultFile { inner, shared: Arc::clone(&self.shared) })
    }
}

impl FileSystem for FaultFs {
    fn create(&self, path: &Path) -> Result<Box<dyn File>> {
        let file = self.shared.run(OpKind::Create, &[path], || self.inner.create(path))?;
        Ok(self.wrap(file))
    }

    fn open(&self, path: &Path) -> Result<Box<dyn File>> {
        let file = self.shared.run(OpKind::Open, &[path], || self.inner.open(path))?;
        Ok(self.wrap(file))
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        self.shared.run(OpKind::Rename, &[from, to], || self.inner.rename(from, to))
    }

    fn remove(&self, path: &Path) -> Result<()> {
        self.shared.run(OpKind::Remove, &[path], || self.inner.remove(path))
    }

    fn list(&self, dir: &Path) -> Result<Vec<String>> {
        self.shared.run(OpKind::List, &[dir], || self.inner.list(dir))
    }

    fn create_dir(&self, path: &Path) -> Result<()> {
        self.shared.run(OpKind::CreateDir, &[path], || self.inner.create_dir(path))
    }

    fn sync_dir(&self, path: &Path) -> Result<()> {
        self.shared.run(OpKind::SyncDir, &[path], || self.inner.sync_dir(path))
    }

    fn lock(&self, path: &Path) -> Result<LockGuard> {
        self.shared.run(OpKind::Lock, &[path], || self.inner.lock(path))
    }
}

/// A file opened through a [`FaultFs`]; its operations count and obey the same rules.
#[derive(Debug)]
struct FaultFile {
    inner: Box<dyn File>,
    shared: Arc<Shared>,
}

impl File for FaultFile {
    fn path(&self) -> &Path {
        self.inner.path()
    }

    fn append(&self, data: &[u8]) -> Result<()> {
        let verdict = self.shared.decide(OpKind::Append, &[self.path()]);
        let Some(FaultAction::Fail(kind)) = verdict.action else {
            return self.inner.append(data);
        };
        let keep = usize::try_from(self.shared.below(data.len() as u64)).unwrap_or(0);
        if let Some(prefix) = data.get(..keep).filter(|prefix| !prefix.is_empty()) {
            // The injected error is what the caller must see; whether the partial write
            // itself succeeded is part of the unknown state a failed append leaves.
            let _ = self.inner.append(prefix);
        }
        Err(self.shared.injected_error(verdict.index, OpKind::Append, self.path(), kind))
    }

    fn append_vectored(&self, bufs: &[&[u8]]) -> Result<()> {
        let verdict = self.shared.decide(OpKind::Append, &[self.path()]);
        let Some(FaultAction::Fail(kind)) = verdict.action else {
            return self.inner.append_vectored(bufs);
        };
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let mut keep = usize::try_from(self.shared.below(total as u64)).unwrap_or(0);
        let mut prefix: Vec<&[u8]> = Vec::new();
        for buf in bufs {
            if keep == 0 {
                break;
            }
            let take = keep.min(buf.len());
            prefix.push(&buf[..take]);
            keep -= take;
        }
        if !prefix.is_empty() {
            // As for `append`: the injected error is what counts, not the partial write's.
            let _ = self.inner.append_vectored(&prefix);
        }
        Err(self.shared.injected_error(verdict.index, OpKind::Append, self.path(), kind))
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let verdict = self.shared.decide(OpKind::ReadAt, &[self.path()]);
        match verdict.action {
            Some(FaultAction::Fail(kind)) => {
                Err(self.shared.injected_error(verdict.index, OpKind::ReadAt, self.path(), kind))
            }
            Some(FaultAction::FlipReadBit) => {
                self.inner.read_at(offset, buf)?;
                self.flip_random_bit(buf);
                Ok(())
            }
            // `decide` has already waited out a delay.
            Some(FaultAction::Delay(_)) | None => self.inner.read_at(offset, buf),
        }
    }

    fn len(&self) -> Result<u64> {
        self.shared.run(OpKind::Len, &[self.path()], || self.inner.len())
    }

    fn sync_data(&self) -> Result<()> {
        self.shared.run(OpKind::SyncData, &[self.path()], || self.inner.sync_data())
    }

    fn truncate(&self, len: u64) -> Result<()> {
        self.shared.run(OpKind::Truncate, &[self.path()], || self.inner.truncate(len))
    }
}

impl FaultFile {
    fn flip_random_bit(&self, buf: &mut [u8]) {
        let bit = self.shared.below(buf.len() as u64 * 8);
        let byte = usize::try_from(bit / 8).ok().and_then(|i| buf.get_mut(i));
        if let Some(byte) = byte {
            *byte ^= 1u8 << (bit % 8);
            self.shared.injected.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::{read_all, SimFs};

    fn p(path: &str) -> PathBuf {
        PathBuf::from(path)
    }

    fn setup(seed: u64) -> (SimFs, FaultFs) {
        let sim = SimFs::new();
        sim.create_dir(&p("/db")).unwrap();
        let fs = FaultFs::new(Arc::new(sim.clone()), seed);
        (sim, fs)
    }

    fn eio(when: When) -> FaultRule {
        FaultRule::new(when, FaultAction::Fail(FsErrorKind::Io))
    }

    #[test]
    fn nth_fails_exactly_one_op_counting_file_ops() {
        let (sim, fs) = setup(1);
        fs.add_rule(eio(When::Nth(3)));
        let f = fs.create(&p("/db/a")).unwrap(); // op 0
        f.append(b"abc").unwrap(); // op 1
        assert_eq!(f.len().unwrap(), 3); // op 2
        let err = f.sync_data().unwrap_err(); // op 3
        assert_eq!((err.op, err.kind), (OpKind::SyncData, FsErrorKind::Io));
        assert_eq!(err.path, p("/db/a"));
        f.sync_data().unwrap(); // op 4
        let mut buf = [0u8; 3];
        f.read_at(0, &mut buf).unwrap(); // op 5
        fs.list(&p("/db")).unwrap(); // op 6
        drop(fs.lock(&p("/db/LOCK")).unwrap()); // op 7
        assert_eq!(fs.op_count(), 8);
        assert_eq!(fs.injected_count(), 1);
        assert_eq!(sim.durable_contents(&p("/db/a")), None, "the dir was never synced");
        assert_eq!(sim.contents(&p("/db/a")).unwrap(), b"abc");
    }

    #[test]
    fn from_nth_fails_everything_after_like_a_power_cut() {
        let (sim, fs) = setup(2);
        fs.add_rule(eio(When::FromNth(2)));
        let f = fs.create(&p("/db/a")).unwrap();
        f.append(b"in").unwrap();
        assert!(f.sync_data().is_err());
        assert!(fs.sync_dir(&p("/db")).is_err());
        assert!(fs.create(&p("/db/b")).is_err());
        assert!(fs.lock(&p("/db/LOCK")).is_err());
        assert!(f.len().is_err());
        assert_eq!(fs.injected_count(), 5);
        assert_eq!(sim.paths(), vec![p("/db/a")], "nothing reached the disk after the cut");
        assert_eq!(sim.durable_contents(&p("/db/a")), None);
        fs.clear_rules();
        f.sync_data().unwrap();
        assert_eq!(fs.op_count(), 8);
    }

    #[test]
    fn op_and_path_filters_limit_a_rule() {
        let (sim, fs) = setup(3);
        fs.add_rule(eio(When::Always).on_op(OpKind::Create).on_path("sst"));
        fs.add_rule(
            FaultRule::new(When::Always, FaultAction::Fail(FsErrorKind::NoSpace)).on_path("MANIFEST"),
        );
        assert_eq!(fs.create(&p("/db/1.sst")).unwrap_err().kind, FsErrorKind::Io);
        let log = fs.create(&p("/db/1.log")).unwrap();
        log.append(b"ok").unwrap();
        assert_eq!(fs.create(&p("/db/MANIFEST")).unwrap_err().kind, FsErrorKind::NoSpace);
        let err = fs.rename(&p("/db/1.log"), &p("/db/MANIFEST")).unwrap_err();
        assert_eq!((err.kind, err.path), (FsErrorKind::NoSpace, p("/db/1.log")), "target matches");
        fs.rename(&p("/db/1.log"), &p("/db/2.log")).unwrap();
        assert_eq!(sim.paths(), vec![p("/db/2.log")]);
    }

    #[test]
    fn thread_filter_and_delay() {
        let (_sim, fs) = setup(4);
        let fs = Arc::new(fs);
        fs.add_rule(eio(When::Always).on_op(OpKind::Len).on_thread("faulty"));
        let wait = Duration::from_millis(20);
        fs.add_rule(FaultRule::new(When::Always, FaultAction::Delay(wait)).on_op(OpKind::SyncData));
        let f: Arc<dyn File> = Arc::from(fs.create(&p("/db/a")).unwrap());
        f.append(b"abc").unwrap();
        assert_eq!(f.len().unwrap(), 3, "this thread is not named faulty");
        let other = Arc::clone(&f);
        let err = std::thread::Builder::new()
            .name("faulty".into())
            .spawn(move || other.len())
            .unwrap()
            .join()
            .unwrap()
            .unwrap_err();
        assert_eq!((err.op, err.kind), (OpKind::Len, FsErrorKind::Io));
        let start = std::time::Instant::now();
        f.sync_data().unwrap();
        assert!(start.elapsed() >= wait, "the sync waited for the delay");
        assert_eq!(fs.injected_count(), 1, "a delay is not a failure");
    }

    fn probability_outcomes(seed: u64) -> Vec<bool> {
        let (_sim, fs) = setup(seed);
        fs.add_rule(eio(When::Probability(0.3)).on_op(OpKind::Len));
        let f = fs.create(&p("/db/a")).unwrap();
        (0..200).map(|_| f.len().is_err()).collect()
    }

    #[test]
    fn probability_is_reproducible_for_the_same_seed() {
        let first = probability_outcomes(7);
        assert_eq!(first, probability_outcomes(7));
        assert_ne!(first, probability_outcomes(8));
        let failures = first.iter().filter(|failed| **failed).count();
        assert!((30..=90).contains(&failures), "{failures} of 200 failed at p = 0.3");
    }

    #[test]
    fn failed_append_leaves_a_strict_prefix_in_the_inner_fs() {
        let data: Vec<u8> = (0..100u8).collect();
        let mut partial = 0;
        for seed in 0..50 {
            let (sim, fs) = setup(seed);
            let f = fs.create(&p("/db/log")).unwrap();
            fs.add_rule(
                FaultRule::new(When::Always, FaultAction::Fail(FsErrorKind::NoSpace)).on_op(OpKind::Append),
            );
            let err = f.append(&data).unwrap_err();
            assert_eq!((err.op, err.kind), (OpKind::Append, FsErrorKind::NoSpace));
            let stored = sim.contents(&p("/db/log")).unwrap();
            assert!(stored.len() < data.len() && data.starts_with(&stored), "seed {seed}");
            partial += usize::from(!stored.is_empty());
        }
        assert!(partial > 40, "only {partial} seeds wrote a non-empty prefix");
    }

    #[test]
    fn failed_vectored_append_leaves_a_strict_prefix_of_the_concatenation() {
        let data: Vec<u8> = (0..100u8).collect();
        let (head, tail) = data.split_at(37);
        let mut partial_across = 0;
        for seed in 0..50 {
            let (sim, fs) = setup(seed);
            let f = fs.create(&p("/db/log")).unwrap();
            fs.add_rule(FaultRule::new(When::Nth(fs.op_count()), FaultAction::Fail(FsErrorKind::Io)));
            let err = f.append_vectored(&[head, tail]).unwrap_err();
            assert_eq!((err.op, err.kind), (OpKind::Append, FsErrorKind::Io));
            let stored = sim.contents(&p("/db/log")).unwrap();
            assert!(stored.len() < data.len() && data.starts_with(&stored), "seed {seed}");
            partial_across += usize::from(stored.len() > head.len());
            // Exactly one operation was counted for the whole vectored append.
            f.append_vectored(&[b"ok"]).unwrap();
        }
        assert!(partial_across > 10, "only {partial_across} seeds cut inside the second buffer");
    }

    #[test]
    fn flip_read_bit_changes_exactly_one_bit() {
        let (sim, fs) = setup(9);
        let f = fs.create(&p("/db/a")).unwrap();
        let data = vec![0x5Au8; 64];
        f.append(&data).unwrap();
        fs.add_rule(FaultRule::new(When::Always, FaultAction::FlipReadBit));
        for _ in 0..20 {
            let read = read_all(f.as_ref()).unwrap();
            let flipped: u32 = read.iter().zip(&data).map(|(a, b)| (a ^ b).count_ones()).sum();
            assert_eq!(flipped, 1);
        }
        assert_eq!(sim.contents(&p("/db/a")).unwrap(), data, "the stored bytes are intact");
        f.sync_data().unwrap();
        assert_eq!(fs.injected_count(), 20, "no effect on other ops");
    }

    #[test]
    fn injected_error_names_the_seed_and_op_index() {
        let (_sim, fs) = setup(0xDEAD_BEEF);
        fs.add_rule(eio(When::Nth(0)));
        let err = fs.create_dir(&p("/db/x")).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("seed 0xdeadbeef") && message.contains("op 0"), "{message}");
        assert_eq!(fs.seed(), 0xDEAD_BEEF);
    }

    #[test]
    fn fault_fs_is_a_send_sync_file_system() {
        fn assert_fs<T: FileSystem + Send + Sync>() {}
        assert_fs::<FaultFs>();
        let (_sim, fs) = setup(4);
        let shared: Arc<dyn FileSystem> = Arc::new(fs);
        std::thread::spawn(move || shared.create(&p("/db/t")).map(|_| ())).join().unwrap().unwrap();
    }
}
