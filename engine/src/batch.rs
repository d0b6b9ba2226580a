//! [`WriteBatch`]: the atomic unit of writing, and [`Event`], the unit of reading.
//!
//! A batch is checked as it is built: a payload over [`MAX_PAYLOAD_BYTES`] or an inverted
//! range is remembered and refused by `Db::write` as `InvalidArgument` before anything is
//! written, since the builder methods chain and cannot return errors themselves.

use std::ops::{Bound, RangeBounds};

use bytes::Bytes;
use strata_wal::Batch;

use crate::{Error, MAX_PAYLOAD_BYTES};

/// One stored event: a user's behavior record at a timestamp.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Event {
    /// The user id.
    pub user: u64,
    /// Timestamp in microseconds.
    pub ts: i64,
    /// The event's bytes (possibly empty).
    pub payload: Bytes,
}

/// An atomic group of writes: after a crash either all of them are there or none.
#[derive(Clone, Debug, Default)]
pub struct WriteBatch {
    pub(crate) inner: Batch,
    pub(crate) invalid: Option<Error>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        WriteBatch::default()
    }

    /// Adds an event at `(user, ts)`, replacing any event stored there. Any user and ts are
    /// valid, and the payload may be empty (it is stored; it is not a delete). A payload
    /// over [`MAX_PAYLOAD_BYTES`] is not added: the batch keeps an
    /// [`Error::InvalidArgument`] (`arg` "payload", naming the size, the limit, the user and
    /// the ts) that [`crate::Db::write`] returns without writing any of the batch. Only the
    /// first refused operation's error is kept; [`WriteBatch::clear`] forgets it.
    pub fn put(&mut self, user: u64, ts: i64, payload: &[u8]) -> &mut Self {
        if payload.len() > MAX_PAYLOAD_BYTES {
            self.refuse(Error::invalid(
                "payload",
                format!(
                    "{} bytes for user {user} at ts {ts}: over the limit of {MAX_PAYLOAD_BYTES}",
                    payload.len()
                ),
            ));
            return self;
        }
        self.inner.put(user, ts, payload);
        self
    }

    /// Deletes the event at `(user, ts)`, if any.
    pub fn delete(&mut self, user: u64, ts: i64) -> &mut Self {
        self.inner.delete(user, ts);
        self
    }

    /// Deletes every event of `user` whose ts lies in `range`, bounds as given, up to
    /// `i64::MIN` and `i64::MAX` inclusive. An empty range (`t..t`, `..i64::MIN`) adds
    /// nothing. An inverted one (both ends bounded, the start's value above the end's,
    /// inclusive or not: `10..5`, `5..=4`) is not added and makes the batch invalid:
    /// [`crate::Db::write`] refuses it with `InvalidArgument` (`arg` "range").
    pub fn delete_range(&mut self, user: u64, range: impl RangeBounds<i64>) -> &mut Self {
        match inclusive_bounds(&range) {
            Ok(Some((first, last))) => {
                self.inner.delete_range(user, first, last);
            }
            Ok(None) => {}
            Err(err) => self.refuse(err),
        }
        self
    }

    /// Number of operations (refused ones are not counted).
    pub fn len(&self) -> usize {
        self.inner.len() as usize
    }

    /// Whether the batch holds no operation. A batch holding only refused operations is
    /// empty, yet [`crate::Db::write`] still refuses it.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// Encoded size in bytes (what the WAL stores).
    pub fn encoded_len(&self) -> usize {
        self.inner.encoded_len()
    }

    /// Removes every operation (and a remembered error), keeping the allocation.
    pub fn clear(&mut self) {
        self.inner.clear();
        self.invalid = None;
    }

    fn refuse(&mut self, err: Error) {
        if self.invalid.is_none() {
            self.invalid = Some(err);
        }
    }
}

/// `range` as inclusive `(first, last)`; `None` when it is empty, an error when inverted.
pub(crate) fn inclusive_bounds(range: &impl RangeBounds<i64>) -> Result<Option<(i64, i64)>, Error> {
    let start = match range.start_bound() {
        Bound::Included(&t) => Some(t),
        Bound::Excluded(&t) => t.checked_add(1),
        Bound::Unbounded => Some(i64::MIN),
    };
    let end = match range.end_bound() {
        Bound::Included(&t) => Some(t),
        Bound::Excluded(&t) => t.checked_sub(1),
        Bound::Unbounded => Some(i64::MAX),
    };
    let raw = |b: Bound<&i64>| match b {
        Bound::Included(&t) | Bound::Excluded(&t) => Some(t),
        Bound::Unbounded => None,
    };
    if let (Some(a), Some(b)) = (raw(range.start_bound()), raw(range.end_bound())) {
        if a > b {
            return Err(Error::invalid("range", format!("inverted time range: starts at {a}, ends at {b}")));
        }
    }
    match (start, end) {
        (Some(first), Some(last)) if first <= last => Ok(Some((first, last))),
        _ => Ok(None),
    }
}

#[cfg(test)]
#[allow(clippy::reversed_empty_ranges)]
mod tests {
    use super::*;

    #[test]
    fn bounds_cover_every_range_form() {
        assert_eq!(inclusive_bounds(&(1..5)).unwrap(), Some((1, 4)));
        assert_eq!(inclusive_bounds(&(1..=5)).unwrap(), Some((1, 5)));
        assert_eq!(inclusive_bounds(&(..)).unwrap(), Some((i64::MIN, i64::MAX)));
        assert_eq!(inclusive_bounds(&(..i64::MIN)).unwrap(), None);
        assert_eq!(inclusive_bounds(&(3..3)).unwrap(), None);
        assert!(inclusive_bounds(&(5..1)).is_err());
        assert_eq!(inclusive_bounds(&(Bound::Excluded(i64::MAX), Bound::Unbounded)).unwrap(), None);
    }

    #[test]
    fn oversized_payload_and_inverted_range_poison_the_batch() {
        let mut batch = WriteBatch::new();
        batch.put(1, 1, &vec![0; MAX_PAYLOAD_BYTES + 1]);
        assert!(matches!(batch.invalid, Some(Error::InvalidArgument { arg: "payload", .. })));
        let mut batch = WriteBatch::new();
        batch.delete_range(1, 9..2);
        assert!(matches!(batch.invalid, Some(Error::InvalidArgument { arg: "range", .. })));
        batch.clear();
        assert!(batch.invalid.is_none());
        batch.put(1, 1, &vec![0; MAX_PAYLOAD_BYTES]);
        assert_eq!(batch.len(), 1);
    }
}
