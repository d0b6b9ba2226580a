//! Group commit: many writers, one leader at a time, one write and at most one fsync per
//! group.
//!
//! A writer hashes its batch body first, outside any lock (the expensive part of the
//! checksum). Under the lock it takes a ticket and its seqnos, which fixes its place in the
//! log, and frames its record header. If the sink is free and nobody is queued, it leads at
//! once with its own record, borrowed: the uncontended path copies nothing. Otherwise it
//! queues a copy and waits. Whoever finds the sink free becomes the leader: it takes the
//! sink and the whole queue, drops the lock, writes the group with one vectored append (and
//! syncs it if any member asked), then puts the sink back, marks every ticket of the group
//! done and wakes the waiters. A waiter whose ticket is not done and finds the sink free
//! leads the next group, so writers that arrived during a write are coalesced.
//!
//! Invariants:
//! - Tickets and seqnos are handed out in queue order under the lock, and a leader writes
//!   everything queued before it took the sink, in order: seqnos increase through the log.
//! - `done_through` only grows; a ticket below it has its final result.
//! - A failed write or sync poisons the log: the failing group and every later ticket fail,
//!   and nothing is written after it. An fsync is never retried and then trusted.
//! - A caller returns only after its group's write (and, if it asked, fsync) returned.
//!
//! Gathering: members of a group are released together after its fsync, so the first one
//! back would lead alone and the others would queue behind it, and groups would settle at
//! about half the writers. A leader of a sync group therefore waits (at most
//! [`GATHER_WAIT`] per arrival) until as many records are queued as the previous sync group
//! had, as PostgreSQL's `commit_delay` does when other transactions are active. With one
//! writer the previous group had one record and nobody waits.

use std::time::Duration;

use crate::record::{body_hash, encode_record_header, RECORD_HEADER_LEN};
use crate::sync::{Condvar, Mutex, MutexGuard};
use crate::WalError;

/// A record ready to be written: its framed header and its body. The header's `synced_to`
/// is a placeholder: only the sink knows it (see `record::set_synced_to`), so the body hash
/// travels with the record to reseal the header cheaply.
pub(crate) struct Framed<'a> {
    pub(crate) header: [u8; RECORD_HEADER_LEN],
    pub(crate) body_hash: u64,
    pub(crate) body: &'a [u8],
}

/// Where a leader writes a group: the segment writer in production, a recorder in tests.
pub(crate) trait Sink {
    /// Writes the records in order as one write; then fsyncs if `sync`. An empty group with
    /// `sync` set asks only for the fsync of what was written before.
    fn write_group(&mut self, records: &[Framed<'_>], sync: bool) -> Result<(), WalError>;
}

/// Longest a sync leader waits for one more expected member of its group: well under an
/// fsync (about 0.2 ms on the disks measured), well over the time a released writer takes
/// to come back with its next batch.
#[cfg_attr(loom, allow(dead_code))] // loom models the wait without a clock
pub(crate) const GATHER_WAIT: Duration = Duration::from_micros(60);

/// A queued record, owning a copy of its body.
struct Queued {
    header: [u8; RECORD_HEADER_LEN],
    body_hash: u64,
    body: Vec<u8>,
}

struct State<S> {
    /// `None` while a leader holds it.
    sink: Option<S>,
    queue: Vec<Queued>,
    queue_sync: bool,
    next_seqno: u64,
    next_ticket: u64,
    done_through: u64,
    /// First failed ticket and the failure; every ticket from it on fails.
    failure: Option<(u64, WalError)>,
    /// Records in the last group that was synced: how many members to gather next time.
    last_sync_group: usize,
}

/// The handoff between writers and the leader; see the module doc.
pub(crate) struct GroupCommit<S> {
    state: Mutex<State<S>>,
    /// Waiters for their ticket to be done.
    cond: Condvar,
    /// A gathering leader waits here for records to be queued.
    gather: Condvar,
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
            last_sync_group: 0,
        };
        GroupCommit { state: Mutex::new(state), cond: Condvar::new(), gather: Condvar::new() }
    }

    fn lock(&self) -> MutexGuard<'_, State<S>> {
        // A panic while holding the lock cannot leave the state half-updated in a way that
        // loses data: the poisoned flag of the mutex carries no information we need.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends a record of `count` operations with this encoded `body` (at most
    /// `MAX_BATCH_BYTES`, checked by the caller), or only waits for an fsync when `record` is
    /// `None`. Returns the seqno of the record's first operation.
    pub(crate) fn submit(&self, record: Option<(&[u8], u32)>, sync: bool) -> Result<u64, WalError> {
        let hash = record.map(|(body, _)| body_hash(body));
        let mut state = self.lock();
        if let Some((_, cause)) = &state.failure {
            return Err(WalError::poisoned(cause));
        }
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        let seqno = state.next_seqno;
        let framed = record.zip(hash).map(|((body, count), hash)| {
            let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
            Framed { header: encode_record_header(len, count, seqno, 0, hash), body_hash: hash, body }
        });
        if let Some(framed) = &framed {
            state.next_seqno += u64::from(u32_at(&framed.header, 12));
        }
        if state.queue.is_empty() {
            if let Some(sink) = state.sink.take() {
                // Uncontended: lead now with the record borrowed from the caller.
                state = self.lead(state, sink, framed, sync);
                return self.result(&state, ticket, seqno);
            }
        }
        if let Some(framed) = framed {
            state.queue.push(Queued {
                header: framed.header,
                body_hash: framed.body_hash,
                body: framed.body.to_vec(),
            });
        }
        state.queue_sync |= sync;
        self.gather.notify_one();
        loop {
            if ticket < state.done_through {
                return self.result(&state, ticket, seqno);
            }
            match state.sink.take() {
                Some(sink) => state = self.lead(state, sink, None, false),
                None => state = self.cond.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner()),
            }
        }
    }

    fn result(&self, state: &State<S>, ticket: u64, seqno: u64) -> Result<u64, WalError> {
        match &state.failure {
            Some((first_failed, cause)) if ticket >= *first_failed => Err(cause.clone()),
            _ => Ok(seqno),
        }
    }

    /// Writes `own` (the leader's borrowed record, only when nothing is queued) and everything
    /// queued as one group, with the lock dropped during the I/O.
    fn lead<'a>(
        &'a self,
        mut state: MutexGuard<'a, State<S>>,
        mut sink: S,
        own: Option<Framed<'_>>,
        own_sync: bool,
    ) -> MutexGuard<'a, State<S>> {
        if own_sync || state.queue_sync {
            state = self.gather_members(state, usize::from(own.is_some()));
        }
        let queued = std::mem::take(&mut state.queue);
        let sync = std::mem::take(&mut state.queue_sync) | own_sync;
        let group_end = state.next_ticket;
        let group_start = state.done_through;
        let already_failed = state.failure.is_some();
        drop(state);

        let members = queued.len() + usize::from(own.is_some());
        let result = if already_failed {
            Ok(())
        } else {
            let queued =
                queued.iter().map(|q| Framed { header: q.header, body_hash: q.body_hash, body: &q.body });
            let group: Vec<Framed<'_>> = own.into_iter().chain(queued).collect();
            sink.write_group(&group, sync)
        };

        let mut state = self.lock();
        state.sink = Some(sink);
        if sync {
            state.last_sync_group = members;
        }
        if let Err(err) = result {
            state.failure = Some((group_start, err));
        }
        state.done_through = group_end;
        self.cond.notify_all();
        state
    }

    /// Waits until the queue (plus `own` records the leader brings) is as large as the last
    /// sync group, or no record arrived for [`GATHER_WAIT`]; see the module doc.
    fn gather_members<'a>(
        &'a self,
        mut state: MutexGuard<'a, State<S>>,
        own: usize,
    ) -> MutexGuard<'a, State<S>> {
        while state.queue.len() + own < state.last_sync_group {
            let timed_out;
            (state, timed_out) = self.wait_for_arrival(state);
            if timed_out {
                break;
            }
        }
        state
    }

    #[cfg(not(loom))]
    fn wait_for_arrival<'a>(&'a self, state: MutexGuard<'a, State<S>>) -> (MutexGuard<'a, State<S>>, bool) {
        let (guard, waited) =
            self.gather.wait_timeout(state, GATHER_WAIT).unwrap_or_else(|poisoned| poisoned.into_inner());
        (guard, waited.timed_out())
    }

    /// loom does not model time (its `wait_timeout` never times out), so the model lets the
    /// other threads run once and then proceeds as if the wait had timed out: every
    /// interleaving of arrivals during the wait is still explored.
    #[cfg(loom)]
    fn wait_for_arrival<'a>(&'a self, state: MutexGuard<'a, State<S>>) -> (MutexGuard<'a, State<S>>, bool) {
        drop(state);
        loom::thread::yield_now();
        (self.lock(), true)
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

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut array = [0u8; 4];
    array.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(array)
}
