//! Entry points for the loom model of the group commit (`wal/tests/loom.rs`), compiled only
//! under `--cfg loom`. They expose the real `GroupCommit` with a recording sink.

use crate::commit::{Framed, GroupCommit, Sink};
use crate::WalError;

/// What the recording sink saw: every record (by first seqno) in write order, and after
/// each fsync how many records were durable.
#[derive(Debug, Default)]
pub struct Recorder {
    /// Seqnos of the written records, in write order.
    pub written: Vec<u64>,
    /// Number of written records covered by the last fsync.
    pub synced: usize,
    /// Number of `write_group` calls.
    pub groups: usize,
    /// Fail the write of the group with this index.
    pub fail_group: Option<usize>,
}

/// A shared recorder the model inspects while callers are still running.
pub type SharedRecorder = loom::sync::Arc<loom::sync::Mutex<Recorder>>;

/// The sink of the model: records what it is given into a shared [`Recorder`].
pub struct RecordingSink(pub SharedRecorder);

impl Sink for RecordingSink {
    fn write_group(&mut self, records: &[Framed<'_>], sync: bool) -> Result<(), WalError> {
        let mut rec = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let group = rec.groups;
        rec.groups += 1;
        if rec.fail_group == Some(group) {
            return Err(WalError::EmptyBatch);
        }
        for record in records.iter() {
            let mut seqno = [0u8; 8];
            seqno.copy_from_slice(&record.header[16..24]);
            rec.written.push(u64::from_le_bytes(seqno));
        }
        if sync {
            rec.synced = rec.written.len();
        }
        Ok(())
    }
}

/// The group commit under test.
pub struct Model(GroupCommit<RecordingSink>);

impl Model {
    /// A group commit whose first seqno is 1, writing into `recorder`.
    pub fn new(recorder: SharedRecorder) -> Self {
        Model(GroupCommit::new(RecordingSink(recorder), 1))
    }

    /// Submits a one-operation record; returns its seqno.
    pub fn append(&self, sync: bool) -> Result<u64, WalError> {
        self.0.submit(Some((&[0u8; 17], 1)), sync)
    }
}
