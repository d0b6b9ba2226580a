//! The segment writer: the [`Sink`] a group-commit leader writes through.
//!
//! It owns the active segment. Only the leader touches it, so it needs no lock of its own.
//! It seals each record (checksum), coalesces the group into one `append`, syncs when asked,
//! and rotates to a new segment once the active one reaches the size limit.
//!
//! Invariant: before a new segment receives its first record, the previous segment is
//! synced. A torn write can therefore only damage the last segment; damage anywhere else is
//! corruption, which is what recovery assumes.

use std::path::PathBuf;
use std::sync::Arc;

use strata_vfs::{File, FileSystem};

use crate::commit::Sink;
use crate::record::{end_seqno, seal};
use crate::segment::create_segment;
use std::sync::atomic::Ordering;

use crate::log::Counters;
use crate::{Segments, WalError};

pub(crate) struct SegmentWriter {
    pub(crate) fs: Arc<dyn FileSystem>,
    pub(crate) dir: PathBuf,
    pub(crate) file: Box<dyn File>,
    /// Bytes in the active segment, header included.
    pub(crate) len: u64,
    /// Whether bytes were appended since the last sync.
    pub(crate) dirty: bool,
    pub(crate) segment_bytes: u64,
    /// Seqno the next record will carry; names the next segment.
    pub(crate) next_seqno: u64,
    pub(crate) segments: Arc<Segments>,
    pub(crate) counters: Arc<Counters>,
    /// Reused buffer that coalesces a group into one write.
    pub(crate) buf: Vec<u8>,
}

impl SegmentWriter {
    fn rotate(&mut self) -> Result<(), WalError> {
        if self.dirty {
            self.sync()?;
        }
        let file = create_segment(self.fs.as_ref(), &self.dir, self.next_seqno)?;
        self.file = file;
        self.len = crate::record::SEGMENT_HEADER_LEN as u64;
        self.segments.push(self.next_seqno);
        Ok(())
    }
}

impl Sink for SegmentWriter {
    fn write_group(&mut self, records: &mut [Vec<u8>], sync: bool) -> Result<(), WalError> {
        for record in records.iter_mut() {
            seal(record);
            self.next_seqno = end_seqno(record);
        }
        self.counters.records.fetch_add(records.len() as u64, Ordering::Relaxed);
        match records {
            [] => {}
            // One record needs no coalescing copy.
            [single] => self.append(&single[..])?,
            many => {
                let mut buf = std::mem::take(&mut self.buf);
                buf.clear();
                for record in many.iter() {
                    buf.extend_from_slice(record);
                }
                let written = self.append(&buf);
                self.buf = buf;
                written?;
            }
        }
        if sync && self.dirty {
            self.sync()?;
        }
        if self.len >= self.segment_bytes {
            self.rotate()?;
        }
        Ok(())
    }
}

impl SegmentWriter {
    fn append(&mut self, bytes: &[u8]) -> Result<(), WalError> {
        // Marked dirty first: a failed append may still have written part of the bytes.
        self.dirty = true;
        self.file.append(bytes)?;
        self.len += bytes.len() as u64;
        self.counters.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        self.counters.groups.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), WalError> {
        self.file.sync_data()?;
        self.dirty = false;
        self.counters.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
