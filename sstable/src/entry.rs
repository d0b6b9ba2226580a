//! [`Entry`]: one version of one key, the unit a table stores.
//!
//! Entries are ordered by user ascending, ts ascending, seqno *descending*: the newest
//! version of a key comes first, which is what a reader resolving visibility wants.

use std::cmp::Ordering;

use bytes::Bytes;

/// What an entry does to its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Kind {
    /// Stores the value at `(user, ts)`.
    Put = 1,
    /// Deletes `(user, ts)`.
    Delete = 2,
    /// Deletes every event of `user` with `ts <= t <= last`; the entry sits at `ts` (the first
    /// timestamp covered) and its value holds `last` as 8 little-endian bytes.
    RangeDelete = 3,
}

impl Kind {
    /// The kind stored as `byte`, if any.
    pub fn from_byte(byte: u8) -> Option<Kind> {
        match byte {
            1 => Some(Kind::Put),
            2 => Some(Kind::Delete),
            3 => Some(Kind::RangeDelete),
            _ => None,
        }
    }
}

/// One version of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The user id.
    pub user: u64,
    /// Timestamp in microseconds (for a range delete, the first timestamp covered).
    pub ts: i64,
    /// Sequence number: the higher, the newer.
    pub seqno: u64,
    /// What the entry does.
    pub kind: Kind,
    /// The payload of a put; empty for a delete; `last` (8 bytes LE) for a range delete.
    pub value: Bytes,
}

impl Entry {
    /// A put.
    pub fn put(user: u64, ts: i64, seqno: u64, payload: impl Into<Bytes>) -> Entry {
        Entry { user, ts, seqno, kind: Kind::Put, value: payload.into() }
    }

    /// A point delete.
    pub fn delete(user: u64, ts: i64, seqno: u64) -> Entry {
        Entry { user, ts, seqno, kind: Kind::Delete, value: Bytes::new() }
    }

    /// A range delete of `first..=last`.
    pub fn range_delete(user: u64, first: i64, last: i64, seqno: u64) -> Entry {
        let value = Bytes::copy_from_slice(&last.to_le_bytes());
        Entry { user, ts: first, seqno, kind: Kind::RangeDelete, value }
    }

    /// For a range delete, the last timestamp it covers.
    pub fn range_last(&self) -> Option<i64> {
        self.as_ref().range_last()
    }

    /// The sort key: user ascending, ts ascending, seqno descending.
    pub fn key(&self) -> (u64, i64, std::cmp::Reverse<u64>) {
        (self.user, self.ts, std::cmp::Reverse(self.seqno))
    }

    /// The entry with its value borrowed.
    pub fn as_ref(&self) -> EntryRef<'_> {
        EntryRef { user: self.user, ts: self.ts, seqno: self.seqno, kind: self.kind, value: &self.value }
    }
}

/// An [`Entry`] whose value is borrowed: what a table builder takes
/// ([`crate::TableBuilder::add_ref`]). A writer whose values live in its own buffers (a
/// memtable flush) hands them over without making a `Bytes` per entry, which costs an atomic
/// reference count increment and decrement on a buffer shared by thousands of entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryRef<'a> {
    /// The user id.
    pub user: u64,
    /// Timestamp in microseconds (for a range delete, the first timestamp covered).
    pub ts: i64,
    /// Sequence number: the higher, the newer.
    pub seqno: u64,
    /// What the entry does.
    pub kind: Kind,
    /// As [`Entry::value`].
    pub value: &'a [u8],
}

impl EntryRef<'_> {
    /// For a range delete, the last timestamp it covers.
    pub fn range_last(&self) -> Option<i64> {
        if self.kind != Kind::RangeDelete {
            return None;
        }
        let bytes: [u8; 8] = self.value.try_into().ok()?;
        Some(i64::from_le_bytes(bytes))
    }
}

/// Compares two entries in table order.
pub fn table_order(a: &Entry, b: &Entry) -> Ordering {
    a.key().cmp(&b.key())
}
