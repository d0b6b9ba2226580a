//! The reaper: deletes obsolete table files off the application's threads.
//!
//! A table that an edit removed (the inputs of a merge, a partition past retention) is
//! deleted when the last version holding it is dropped (`version.rs`), and that last holder
//! is often a read: the query that was running when the merge was installed lets go of the
//! old version as it returns. Deleting a table is not cheap, and all of it used to land on
//! that query:
//! - the last close of an unlinked file makes the file system free its blocks (ext4 walks
//!   the extents and, mounted with `discard`, waits for the device to trim them);
//! - the table's blocks leave the block cache, a pass over every shard under its lock;
//! - the memory of those blocks goes back to the allocator, from a thread that may not own
//!   the arena they came from.
//!
//! With a writer in the process, the mixed phase's reader slept up to 13 ms on single table
//! drops (docs/PERFORMANCE.md). So a table whose last holder is an application thread is
//! handed to this thread, which deletes it a moment later.
//!
//! Engine work deletes inline, as before: the flush and compaction threads, and the
//! maintenance calls (`Db::flush`, `Db::compact`, `Db::close`), mark themselves with
//! [`reap_inline`]. Their file operations thus keep one order (the crash tests replay a
//! compaction's operations by index), and a `compact` that returns has deleted what it
//! replaced, unless a reader still holds it.
//!
//! Invariants:
//! - a file handed over is deleted unless the process ends first, which leaves an orphan
//!   that the next open removes, exactly as a crash before an inline delete does;
//! - the thread holds the last handle of each table it deletes: it waits [`COALESCE`]
//!   before deleting, by which time the handing thread has dropped its own;
//! - the thread ends once every sender is gone: the database and every table of it.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

use strata_sstable::Table;
use strata_vfs::FileSystem;

use crate::db::lower_cpu_priority;

/// How long the thread waits after the first of a batch of tables before it deletes them:
/// the thread that handed a table over drops its own handle right after, and the tables of
/// one merge come over together.
const COALESCE: Duration = Duration::from_millis(10);

/// What the thread is asked to do.
enum Job {
    /// Delete this file and drop this (last) handle of its table.
    Delete { path: PathBuf, table: Table },
    /// Reply once every job sent before this one is done.
    Drained(Sender<()>),
}

/// A handle on a database's reaper thread; cheap to clone. Without a thread (it could not
/// be started) every delete is inline.
#[derive(Clone, Debug)]
pub(crate) struct Reaper {
    jobs: Option<Sender<Job>>,
}

impl Reaper {
    /// Starts the reaper thread of a database on `fs`, at `nice` (the background threads'
    /// priority). If the thread cannot be started, deletes stay inline.
    pub fn start(fs: Arc<dyn FileSystem>, nice: i32) -> Reaper {
        let (jobs, inbox) = channel();
        let spawned = std::thread::Builder::new().name("strata-reaper".into()).spawn(move || {
            lower_cpu_priority(nice);
            run(fs.as_ref(), &inbox);
        });
        Reaper { jobs: spawned.ok().map(|_| jobs) }
    }

    /// Deletes `path`, the file of `table`: hands both to the thread from an application
    /// thread; deletes inline on an engine thread ([`reap_inline`]), or when there is no
    /// thread to hand them to. Best effort either way: a file left behind is an orphan that
    /// the next open removes.
    pub fn retire(&self, fs: &dyn FileSystem, path: &Path, table: &Table) {
        let inline = INLINE.try_with(Cell::get).unwrap_or(0) > 0;
        if let (false, Some(jobs)) = (inline, &self.jobs) {
            let job = Job::Delete { path: path.to_path_buf(), table: table.clone() };
            if jobs.send(job).is_ok() {
                return;
            }
            // The thread is gone (it ends only once every sender is): delete here.
        }
        let _ = fs.remove(path);
    }

    /// Waits until every table handed over before this call is deleted.
    pub fn drain(&self) {
        let Some(jobs) = &self.jobs else { return };
        let (done, wait) = channel();
        if jobs.send(Job::Drained(done)).is_ok() {
            // An error means the thread is gone, and with it every job.
            let _ = wait.recv();
        }
    }
}

fn run(fs: &dyn FileSystem, inbox: &Receiver<Job>) {
    while let Ok(first) = inbox.recv() {
        if matches!(first, Job::Delete { .. }) {
            std::thread::sleep(COALESCE);
        }
        for job in std::iter::once(first).chain(inbox.try_iter()) {
            match job {
                Job::Delete { path, table } => {
                    // Best effort, as inline: a file left behind is an orphan that the next
                    // open removes.
                    let _ = fs.remove(&path);
                    drop(table);
                }
                Job::Drained(done) => {
                    let _ = done.send(());
                }
            }
        }
    }
}

thread_local! {
    /// Nonzero while this thread deletes obsolete tables inline ([`reap_inline`]).
    static INLINE: Cell<u32> = const { Cell::new(0) };
}

/// Marks the calling thread as one that deletes obsolete tables itself, until the guard is
/// dropped (guards nest).
pub(crate) fn reap_inline() -> InlineGuard {
    let _ = INLINE.try_with(|depth| depth.set(depth.get().saturating_add(1)));
    InlineGuard { _not_send: std::marker::PhantomData }
}

/// See [`reap_inline`]. Not `Send`: it must be dropped on the thread it marks.
pub(crate) struct InlineGuard {
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for InlineGuard {
    fn drop(&mut self) {
        let _ = INLINE.try_with(|depth| depth.set(depth.get().saturating_sub(1)));
    }
}
