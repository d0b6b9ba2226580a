//! [`Batch`]: one atomic write batch, in the byte encoding the WAL stores.
//!
//! A batch is a sequence of operations on `(user, ts)` keys. It is built in memory already
//! encoded, so that appending it to the log is one copy. The encoding (all integers
//! little-endian; see docs/format/wal.md):
//!
//! ```text
//! put          : 0x01 | user u64 | ts i64 | len u32 | payload[len]
//! delete       : 0x02 | user u64 | ts i64
//! delete_range : 0x03 | user u64 | first i64 | last i64      (inclusive on both ends)
//! ```
//!
//! Invariants: `count` is the number of encoded operations; a batch is applied all or
//! nothing. Decoding never trusts a length before checking it against the bytes at hand.

use crate::WalError;

const TAG_PUT: u8 = 1;
const TAG_DELETE: u8 = 2;
const TAG_DELETE_RANGE: u8 = 3;

/// Largest encoded batch the WAL accepts, in bytes (128 MiB). A larger batch is refused with
/// [`WalError::BatchTooLarge`] before anything is written.
pub const MAX_BATCH_BYTES: usize = 128 << 20;

/// One operation of a batch, borrowed from its encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op<'a> {
    /// Store `payload` at `(user, ts)`, replacing any older version.
    Put {
        /// The user id.
        user: u64,
        /// Timestamp in microseconds.
        ts: i64,
        /// The event's bytes.
        payload: &'a [u8],
    },
    /// Delete the event at `(user, ts)`.
    Delete {
        /// The user id.
        user: u64,
        /// Timestamp in microseconds.
        ts: i64,
    },
    /// Delete every event of `user` with `first <= ts <= last`.
    DeleteRange {
        /// The user id.
        user: u64,
        /// First timestamp deleted.
        first: i64,
        /// Last timestamp deleted (inclusive, so `i64::MAX` can be covered).
        last: i64,
    },
}

/// An atomic write batch, stored encoded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    ops: Vec<u8>,
    count: u32,
    /// Set when an operation could not be encoded (a payload over `u32::MAX` bytes); such a
    /// batch is refused at append time, since `put` itself cannot fail.
    oversized: bool,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Batch::default()
    }

    /// Adds a put of `payload` at `(user, ts)`.
    pub fn put(&mut self, user: u64, ts: i64, payload: &[u8]) -> &mut Self {
        let Ok(len) = u32::try_from(payload.len()) else {
            self.oversized = true;
            return self;
        };
        self.ops.reserve(21 + payload.len());
        self.ops.push(TAG_PUT);
        self.ops.extend_from_slice(&user.to_le_bytes());
        self.ops.extend_from_slice(&ts.to_le_bytes());
        self.ops.extend_from_slice(&len.to_le_bytes());
        self.ops.extend_from_slice(payload);
        self.bump();
        self
    }

    /// Adds a delete of `(user, ts)`.
    pub fn delete(&mut self, user: u64, ts: i64) -> &mut Self {
        self.ops.push(TAG_DELETE);
        self.ops.extend_from_slice(&user.to_le_bytes());
        self.ops.extend_from_slice(&ts.to_le_bytes());
        self.bump();
        self
    }

    /// Adds a delete of every event of `user` with `first <= ts <= last`.
    pub fn delete_range(&mut self, user: u64, first: i64, last: i64) -> &mut Self {
        self.ops.push(TAG_DELETE_RANGE);
        self.ops.extend_from_slice(&user.to_le_bytes());
        self.ops.extend_from_slice(&first.to_le_bytes());
        self.ops.extend_from_slice(&last.to_le_bytes());
        self.bump();
        self
    }

    fn bump(&mut self) {
        // Saturate: a batch of 4 billion operations is far over MAX_BATCH_BYTES anyway and
        // is refused at append time.
        match self.count.checked_add(1) {
            Some(count) => self.count = count,
            None => self.oversized = true,
        }
    }

    /// Number of operations.
    pub fn len(&self) -> u32 {
        self.count
    }

    /// Whether the batch has no operation.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Size of the encoded operations in bytes.
    pub fn encoded_len(&self) -> usize {
        self.ops.len()
    }

    /// The encoded operations.
    pub fn as_bytes(&self) -> &[u8] {
        &self.ops
    }

    /// Removes every operation, keeping the allocation.
    pub fn clear(&mut self) {
        self.ops.clear();
        self.count = 0;
        self.oversized = false;
    }

    /// Iterates over the operations.
    pub fn iter(&self) -> impl Iterator<Item = Op<'_>> + '_ {
        // The encoding was produced by this type or validated by `decode`, so it parses.
        OpIter { rest: &self.ops }.map_while(|op| op.ok())
    }

    /// Checks the batch can be appended: not empty, not over [`MAX_BATCH_BYTES`].
    pub(crate) fn check_appendable(&self) -> Result<(), WalError> {
        if self.is_empty() {
            return Err(WalError::EmptyBatch);
        }
        if self.oversized || self.ops.len() > MAX_BATCH_BYTES {
            let bytes = if self.oversized { usize::MAX } else { self.ops.len() };
            return Err(WalError::BatchTooLarge { bytes, limit: MAX_BATCH_BYTES });
        }
        Ok(())
    }

    /// Decodes `count` operations from `bytes`, which must hold exactly those operations.
    /// The error string says what is malformed; the caller adds the file and offset.
    pub fn decode(bytes: &[u8], count: u32) -> Result<Batch, String> {
        let mut iter = OpIter { rest: bytes };
        for i in 0..count {
            match iter.next() {
                Some(Ok(_)) => {}
                Some(Err(reason)) => return Err(format!("operation {i}: {reason}")),
                None => return Err(format!("batch ends after {i} of {count} operations")),
            }
        }
        if !iter.rest.is_empty() {
            return Err(format!("{} bytes after the last of {count} operations", iter.rest.len()));
        }
        Ok(Batch { ops: bytes.to_vec(), count, oversized: false })
    }
}

struct OpIter<'a> {
    rest: &'a [u8],
}

impl<'a> OpIter<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.rest.len() < n {
            return Err(format!("needs {n} bytes, {} left", self.rest.len()));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u64(&mut self) -> Result<u64, String> {
        let bytes = self.take(8)?;
        let mut array = [0u8; 8];
        array.copy_from_slice(bytes);
        Ok(u64::from_le_bytes(array))
    }

    fn i64(&mut self) -> Result<i64, String> {
        self.u64().map(|v| v as i64)
    }

    fn op(&mut self) -> Result<Op<'a>, String> {
        let tag = self.take(1)?[0];
        let user = self.u64()?;
        match tag {
            TAG_PUT => {
                let ts = self.i64()?;
                let mut len = [0u8; 4];
                len.copy_from_slice(self.take(4)?);
                let payload = self.take(u32::from_le_bytes(len) as usize)?;
                Ok(Op::Put { user, ts, payload })
            }
            TAG_DELETE => Ok(Op::Delete { user, ts: self.i64()? }),
            TAG_DELETE_RANGE => Ok(Op::DeleteRange { user, first: self.i64()?, last: self.i64()? }),
            other => Err(format!("unknown operation tag {other:#04x}")),
        }
    }
}

impl<'a> Iterator for OpIter<'a> {
    type Item = Result<Op<'a>, String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let op = self.op();
        if op.is_err() {
            self.rest = &[];
        }
        Some(op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_op() -> impl Strategy<Value = (u8, u64, i64, i64, Vec<u8>)> {
        (0u8..3, any::<u64>(), any::<i64>(), any::<i64>(), proptest::collection::vec(any::<u8>(), 0..40))
    }

    fn build(ops: &[(u8, u64, i64, i64, Vec<u8>)]) -> Batch {
        let mut batch = Batch::new();
        for (kind, user, a, b, payload) in ops {
            match kind {
                0 => batch.put(*user, *a, payload),
                1 => batch.delete(*user, *a),
                _ => batch.delete_range(*user, *a, *b),
            };
        }
        batch
    }

    proptest! {
        #[test]
        fn encode_decode_round_trips(ops in proptest::collection::vec(arb_op(), 1..20)) {
            let batch = build(&ops);
            prop_assert_eq!(batch.len() as usize, ops.len());
            let decoded = Batch::decode(batch.as_bytes(), batch.len()).unwrap();
            prop_assert_eq!(&decoded, &batch);
            let got: Vec<Op<'_>> = decoded.iter().collect();
            prop_assert_eq!(got.len(), ops.len());
            for (op, (kind, user, a, b, payload)) in got.iter().zip(&ops) {
                let want = match kind {
                    0 => Op::Put { user: *user, ts: *a, payload },
                    1 => Op::Delete { user: *user, ts: *a },
                    _ => Op::DeleteRange { user: *user, first: *a, last: *b },
                };
                prop_assert_eq!(*op, want);
            }
        }

        #[test]
        fn truncated_or_miscounted_encodings_are_refused(
            ops in proptest::collection::vec(arb_op(), 1..10),
            cut in any::<prop::sample::Index>(),
        ) {
            let batch = build(&ops);
            let bytes = batch.as_bytes();
            let cut = cut.index(bytes.len());
            prop_assert!(Batch::decode(&bytes[..cut], batch.len()).is_err());
            prop_assert!(Batch::decode(bytes, batch.len() + 1).is_err());
            if batch.len() > 1 {
                prop_assert!(Batch::decode(bytes, batch.len() - 1).is_err());
            }
        }
    }

    #[test]
    fn empty_and_oversized_batches_are_refused() {
        assert!(matches!(Batch::new().check_appendable(), Err(WalError::EmptyBatch)));
        let mut batch = Batch::new();
        batch.put(1, 2, &vec![0u8; MAX_BATCH_BYTES]);
        assert!(matches!(batch.check_appendable(), Err(WalError::BatchTooLarge { .. })));
        let mut small = Batch::new();
        small.put(1, 2, b"x").delete(1, 3).delete_range(1, i64::MIN, i64::MAX);
        small.check_appendable().unwrap();
        assert_eq!(small.len(), 3);
    }

    #[test]
    fn unknown_tag_is_refused() {
        let mut batch = Batch::new();
        batch.delete(5, 6);
        let mut bytes = batch.as_bytes().to_vec();
        bytes[0] = 9;
        let err = Batch::decode(&bytes, 1).unwrap_err();
        assert!(err.contains("unknown operation tag"), "{err}");
    }
}
