//! [`Batch`]: one atomic write batch, in the byte encoding the WAL stores.
//!
//! A batch is a sequence of operations on `(user, ts)` keys. It is built in memory already
//! encoded, so that appending it to the log is one copy. The encoding (see
//! docs/format/wal.md):
//!
//! ```text
//! put          : 0x01 | user u64 | ts (delta)    | len (varint)          | payload[len]
//! delete       : 0x02 | user u64 | ts (delta)
//! delete_range : 0x03 | user u64 | first (delta) | last - first (varint)   (inclusive on both ends)
//! ```
//!
//! `user` is 8 bytes little-endian (ids are hashes: a varint would be longer). A delta is the
//! zigzag LEB128 varint of the wrapping difference from the previous operation's `ts` (a
//! range delete's `first`), or from 0 for the batch's first operation: a batch's events are
//! mostly in time order, tens of milliseconds apart, so a put of the standard workload costs
//! 3 bytes of timestamp instead of 8. `len` (at most `u32::MAX`) and `last - first` (a
//! wrapping u64 difference) are LEB128 varints. Wrapping arithmetic makes every i64 and
//! every pair of them encodable. A payload is contiguous: the engine keeps one copy of the
//! encoding and points into it.
//!
//! Invariants: `count` is the number of encoded operations; a batch is applied all or
//! nothing. Decoding never trusts a varint or length before checking it against the bytes
//! at hand, and accepts only the shortest form of each varint, so a decoded batch is exactly
//! what the builder methods make of its operations.

use crate::varint;
use crate::WalError;

const TAG_PUT: u8 = 1;
const TAG_DELETE: u8 = 2;
const TAG_DELETE_RANGE: u8 = 3;

/// Largest encoding of a put around its payload: tag, user, ts delta, length.
const MAX_PUT_OVERHEAD: usize = 1 + 8 + varint::MAX_LEN + 5;

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
    /// The last operation's `ts` (a range delete's `first`), which the next one is encoded
    /// relative to; 0 in an empty batch.
    prev: i64,
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
        self.ops.reserve(MAX_PUT_OVERHEAD + payload.len());
        self.key(TAG_PUT, user, ts);
        varint::put_u64(&mut self.ops, u64::from(len));
        self.ops.extend_from_slice(payload);
        self.bump();
        self
    }

    /// Adds a delete of `(user, ts)`.
    pub fn delete(&mut self, user: u64, ts: i64) -> &mut Self {
        self.key(TAG_DELETE, user, ts);
        self.bump();
        self
    }

    /// Adds a delete of every event of `user` with `first <= ts <= last`.
    pub fn delete_range(&mut self, user: u64, first: i64, last: i64) -> &mut Self {
        self.key(TAG_DELETE_RANGE, user, first);
        varint::put_u64(&mut self.ops, last.wrapping_sub(first) as u64);
        self.bump();
        self
    }

    /// Appends the part every operation starts with: tag, user, and `ts` as a delta.
    fn key(&mut self, tag: u8, user: u64, ts: i64) {
        self.ops.push(tag);
        self.ops.extend_from_slice(&user.to_le_bytes());
        varint::put_i64(&mut self.ops, ts.wrapping_sub(self.prev));
        self.prev = ts;
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
        self.prev = 0;
        self.oversized = false;
    }

    /// Iterates over the operations.
    pub fn iter(&self) -> impl Iterator<Item = Op<'_>> + '_ {
        // The encoding was produced by this type or validated by `decode`, so it parses.
        OpIter::new(&self.ops).map_while(|op| op.ok())
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
        let mut iter = OpIter::new(bytes);
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
        Ok(Batch { ops: bytes.to_vec(), count, prev: iter.prev, oversized: false })
    }
}

struct OpIter<'a> {
    rest: &'a [u8],
    /// What the next operation's `ts` delta is relative to (see [`Batch::prev`]).
    prev: i64,
}

impl<'a> OpIter<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        OpIter { rest: bytes, prev: 0 }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        if self.rest.len() < n {
            return Err(format!("{what} needs {n} bytes, {} left", self.rest.len()));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn varint(&mut self, what: &str) -> Result<u64, String> {
        let (value, len) = varint::read_u64(self.rest).map_err(|reason| format!("{what}: {reason}"))?;
        self.rest = &self.rest[len..];
        Ok(value)
    }

    /// Reads the user and the delta-encoded `ts` that follow the tag.
    fn key(&mut self) -> Result<(u64, i64), String> {
        let mut user = [0u8; 8];
        user.copy_from_slice(self.take(8, "user")?);
        let ts = self.prev.wrapping_add(varint::unzigzag(self.varint("ts")?));
        self.prev = ts;
        Ok((u64::from_le_bytes(user), ts))
    }

    fn op(&mut self) -> Result<Op<'a>, String> {
        let tag = self.take(1, "tag")?[0];
        if !(TAG_PUT..=TAG_DELETE_RANGE).contains(&tag) {
            return Err(format!("unknown operation tag {tag:#04x}"));
        }
        let (user, ts) = self.key()?;
        match tag {
            TAG_PUT => {
                let len = self.varint("payload length")?;
                let len = u32::try_from(len).map_err(|_| format!("payload length {len} over u32::MAX"))?;
                let payload = self.take(len as usize, "payload")?;
                Ok(Op::Put { user, ts, payload })
            }
            TAG_DELETE => Ok(Op::Delete { user, ts }),
            _ => {
                let span = self.varint("range length")?;
                Ok(Op::DeleteRange { user, first: ts, last: ts.wrapping_add(span as i64) })
            }
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

    type RawOp = (u8, u64, i64, i64, Vec<u8>);

    /// Timestamps that stress the deltas: the extremes, near-neighbours, and anything.
    fn arb_ts() -> impl Strategy<Value = i64> {
        prop_oneof![
            Just(i64::MIN),
            Just(i64::MAX),
            Just(0),
            -100_000i64..100_000,
            (i64::MAX - 1000)..=i64::MAX,
            i64::MIN..=(i64::MIN + 1000),
            any::<i64>(),
        ]
    }

    fn arb_op() -> impl Strategy<Value = RawOp> {
        (0u8..3, any::<u64>(), arb_ts(), arb_ts(), proptest::collection::vec(any::<u8>(), 0..40))
    }

    fn build(ops: &[RawOp]) -> Batch {
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

    /// The batch the builder methods make of `batch`'s decoded operations.
    fn rebuild(batch: &Batch) -> Batch {
        let mut out = Batch::new();
        for op in batch.iter() {
            match op {
                Op::Put { user, ts, payload } => out.put(user, ts, payload),
                Op::Delete { user, ts } => out.delete(user, ts),
                Op::DeleteRange { user, first, last } => out.delete_range(user, first, last),
            };
        }
        out
    }

    fn assert_round_trips(ops: &[RawOp]) {
        let batch = build(ops);
        assert_eq!(batch.len() as usize, ops.len());
        let decoded = Batch::decode(batch.as_bytes(), batch.len()).unwrap();
        assert_eq!(decoded, batch);
        let got: Vec<Op<'_>> = decoded.iter().collect();
        assert_eq!(got.len(), ops.len());
        for (op, (kind, user, a, b, payload)) in got.iter().zip(ops) {
            let want = match kind {
                0 => Op::Put { user: *user, ts: *a, payload },
                1 => Op::Delete { user: *user, ts: *a },
                _ => Op::DeleteRange { user: *user, first: *a, last: *b },
            };
            assert_eq!(*op, want);
        }
        // The engine keeps one copy of the encoding and points into it by offset.
        let range = batch.as_bytes().as_ptr_range();
        for op in batch.iter() {
            if let Op::Put { payload, .. } = op {
                let inside = payload.as_ptr_range();
                assert!(range.start <= inside.start && inside.end <= range.end);
            }
        }
    }

    proptest! {
        #[test]
        fn encode_decode_round_trips(ops in proptest::collection::vec(arb_op(), 1..20)) {
            assert_round_trips(&ops);
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

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Every truncation, and every bit flip and a few overwrites at every byte, is an
        /// error or another valid batch: one the builder encodes to exactly those bytes.
        #[test]
        fn damage_at_every_byte_is_an_error_or_another_valid_batch(
            ops in proptest::collection::vec(arb_op(), 1..8),
        ) {
            let batch = build(&ops);
            let bytes = batch.as_bytes();
            for at in 0..bytes.len() {
                prop_assert!(Batch::decode(&bytes[..at], batch.len()).is_err(), "cut at {}", at);
                let flips = (0..8).map(|bit| bytes[at] ^ (1 << bit));
                for byte in flips.chain([0x00, 0x7f, 0x80, 0xff]) {
                    let mut damaged = bytes.to_vec();
                    damaged[at] = byte;
                    if let Ok(decoded) = Batch::decode(&damaged, batch.len()) {
                        prop_assert_eq!(decoded.iter().count(), batch.len() as usize);
                        let rebuilt = rebuild(&decoded);
                        prop_assert_eq!(rebuilt.as_bytes(), &damaged[..], "byte {} = {:#04x}", at, byte);
                    }
                }
            }
        }
    }

    #[test]
    fn extreme_and_alternating_timestamps_round_trip() {
        let extremes = [i64::MIN, i64::MAX, 0, -1, 1, i64::MIN + 1, i64::MAX - 1];
        let mut ops = Vec::new();
        for (i, &a) in extremes.iter().enumerate() {
            for &b in &extremes {
                ops.push((u8::try_from(i % 3).unwrap(), u64::MAX - i as u64, a, b, vec![]));
                ops.push((2, i as u64, a, b, vec![0xab; i]));
            }
        }
        assert_round_trips(&ops);
        // Every pair of neighbours is MIN then MAX or MAX then MIN, for every kind of op.
        let alternating: Vec<RawOp> = (0..30u8)
            .map(|i| {
                let (a, b) = if i % 2 == 0 { (i64::MIN, i64::MAX) } else { (i64::MAX, i64::MIN) };
                (i % 3, 7, a, b, vec![i; usize::from(i % 3)])
            })
            .collect();
        assert_round_trips(&alternating);
        // A range that starts after it ends is encodable (the engine refuses it earlier).
        assert_round_trips(&[(2, 1, i64::MAX, i64::MIN, vec![]), (2, 1, 5, 4, vec![]), (0, 1, 0, 0, vec![])]);
    }

    #[test]
    fn a_standard_put_takes_at_most_77_bytes() {
        let (start, payload) = (1_700_000_000_000_000, [7u8; 64]);
        let mut batch = Batch::new();
        batch.put(0x9e37_79b9_7f4a_7c15, start, &payload);
        let first = batch.encoded_len();
        batch.put(0xc2b2_ae3d_27d4_eb4f, start + 30_000, &payload);
        let second = batch.encoded_len() - first;
        assert!(second <= 1 + 8 + 3 + 1 + 64, "a put 30 ms after the previous takes {second} bytes");
        // The batch's first put carries the whole timestamp: 8 bytes of varint for 2023.
        assert_eq!(first, 1 + 8 + 8 + 1 + 64);
    }

    #[test]
    fn malformed_fields_are_refused_with_their_name() {
        let head = |tag: u8| [&[tag][..], &[0x11; 8]].concat();
        let mut too_long = head(TAG_PUT);
        too_long.push(0);
        varint::put_u64(&mut too_long, u64::from(u32::MAX) + 1);
        let mut past_end = head(TAG_PUT);
        past_end.extend_from_slice(&[0, 5, 1, 2, 3]);
        let cases = [
            (too_long, "operation 0: payload length 4294967296 over u32::MAX"),
            (past_end, "operation 0: payload needs 5 bytes, 3 left"),
            ([head(TAG_DELETE), vec![0x80, 0x00]].concat(), "operation 0: ts: overlong varint"),
            ([head(TAG_DELETE), vec![0x80]].concat(), "operation 0: ts: varint cut short"),
            ([head(TAG_DELETE_RANGE), vec![0x00]].concat(), "operation 0: range length: varint cut short"),
            (head(TAG_DELETE)[..5].to_vec(), "operation 0: user needs 8 bytes, 4 left"),
        ];
        for (bytes, want) in cases {
            let err = Batch::decode(&bytes, 1).unwrap_err();
            assert!(err.contains(want), "{bytes:02x?}: {err}");
        }
    }

    #[test]
    fn a_cleared_batch_encodes_like_a_new_one() {
        let mut batch = Batch::new();
        batch.put(1, 1_000_000, b"a").delete_range(2, -5, 5);
        batch.clear();
        batch.delete(3, 40);
        let mut fresh = Batch::new();
        fresh.delete(3, 40);
        assert_eq!(batch, fresh);
        assert_eq!(Batch::decode(fresh.as_bytes(), 1).unwrap(), fresh);
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
