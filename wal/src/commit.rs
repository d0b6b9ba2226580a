//! Group commit: many writers, one leader at a time, one write and at most one fsync per
//! group.
//!
//! A writer enqueues its record under the lock, which also fixes its place in the log and
//! so its seqno. Whoever finds the sink free becomes the leader: it takes the sink and the
//! whole queue, drops the lock, writes the group (and syncs it if any member asked), then
//! puts the sink back, marks every ticket of the group done and wakes the waiters. A waiter
//! whose ticket is not done yet and finds the sink free leads the next group, so writers
//! that arrived during a write are coalesced into the next one.
//!
//! Invariants:
//! - Tickets are handed out in queue order, and the queue is written in order, so seqnos are
//!   increasing in the log.
//! - `done_through` only grows; a ticket below it has its final result.
//! - A failed write or sync poisons the log: the failing group and every later ticket fail,
//!   nothing is written after it. An fsync is never retried and then trusted.
//! - A caller returns only after its group's write (and, if it asked, fsync) returned.

use crate::sync::{Condvar, Mutex, MutexGuard};
use crate::WalError;

/// Where a leader writes a group: the segment writer in production, a recorder in tests.
pub(crate) trait Sink {
    /// Writes the records in order as one write; then fsyncs if `sync`. An empty group with
    /// `sync` set asks only for the fsync of what was written before.
    fn write_group(&mut self, records: &mut [Vec<u8>], sync: bool) -> Result<(), WalError>;
}

struct State<S> {
    /// `None` while a leader holds it.
    sink: Option<S>,
    queue: Vec<Vec<u8>>,
    queue_sync: bool,
    next_seqno: u64,
    next_ticket: u64,
    done_through: u64,
    /// First failed ticket and the failure; every ticket from it on fails.
    failure: Option<(u64, WalError)>,
}

/// The handoff between writers and the leader; see the module doc.
pub(crate) struct GroupCommit<S> {
    state: Mutex<State<S>>,
    cond: Condvar,
}

impl<S: Sink> GroupCommit<S> {
    pub(crate) fn new(sink: S, next_seqno: u64) -> Self {
        let state = State {
            sink: Some(sink),
            queue: Vec::new(),
            queue_sync: false,
            next_seqno,
            next_ticket: 0,
            done_through: 0,
            failure: None,
        };
        GroupCommit { state: Mutex::new(state), cond: Condvar::new() }
    }

    fn lock(&self) -> MutexGuard<'_, State<S>> {
        // A panic while holding the lock cannot leave the state half-updated in a way that
        // loses data: the poisoned flag of the mutex carries no information we need.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends `record` (unsealed, see `record::encode_unsealed`) holding `count` operations,
    /// or only waits for an fsync when `record` is `None`. Returns the first seqno assigned.
    pub(crate) fn submit(&self, record: Option<Vec<u8>>, count: u32, sync: bool) -> Result<u64, WalError> {
        let mut state = self.lock();
        if let Some((_, cause)) = &state.failure {
            return Err(WalError::poisoned(cause));
        }
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        let seqno = state.next_seqno;
        if let Some(mut record) = record {
            state.next_seqno += u64::from(count);
            crate::record::stamp_seqno(&mut record, seqno);
            state.queue.push(record);
        }
        state.queue_sync |= sync;
        loop {
            if ticket < state.done_through {
                return match &state.failure {
                    Some((first_failed, cause)) if ticket >= *first_failed => Err(cause.clone()),
                    _ => Ok(seqno),
                };
            }
            match state.sink.take() {
                Some(sink) => state = self.lead(state, sink),
                None => state = self.cond.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner()),
            }
        }
    }

    /// Writes everything queued as one group, with the lock dropped during the I/O.
    fn lead<'a>(&'a self, mut state: MutexGuard<'a, State<S>>, mut sink: S) -> MutexGuard<'a, State<S>> {
        let mut group = std::mem::take(&mut state.queue);
        let sync = std::mem::take(&mut state.queue_sync);
        let group_end = state.next_ticket;
        let group_start = state.done_through;
        let already_failed = state.failure.is_some();
        drop(state);

        let result = if already_failed { Ok(()) } else { sink.write_group(&mut group, sync) };

        let mut state = self.lock();
        state.sink = Some(sink);
        if let Err(err) = result {
            state.failure = Some((group_start, err));
        }
        state.done_through = group_end;
        self.cond.notify_all();
        state
    }

    /// The seqno the next batch will get.
    pub(crate) fn next_seqno(&self) -> u64 {
        self.lock().next_seqno
    }

    /// The failure that poisoned the log, if any.
    pub(crate) fn failure(&self) -> Option<WalError> {
        self.lock().failure.as_ref().map(|(_, cause)| WalError::poisoned(cause))
    }
}
