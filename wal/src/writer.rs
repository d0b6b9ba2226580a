//! The segment writer: the [`Sink`] a group-commit leader writes through.
//!
//! It owns the active segment. Only the leader touches it, so it needs no lock of its own.
//! It writes a group with one vectored append, syncs when asked, asks the background
//! writeback for an fsync every `bytes_per_sync` bytes, and rotates to a new segment once
//! the active one reaches the size limit.
//!
//! Invariant: before a new segment receives its first record, the previous segment is
//! synced. A torn write can therefore only damage the last segment; damage anywhere else is
//! corruption, which is what recovery assumes.
//!
//! Every record is stamped here with `synced_to`, the length of the active segment covered by
//! the last fsync that completed (see `SyncGate`). Stamping a smaller value than the truth is
//! safe (recovery only detects less); a larger one would make recovery call a torn tail
//! corruption, so the value only ever comes from fsyncs that returned.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use strata_vfs::{File, FileSystem};

use crate::commit::{Framed, Sink};
use crate::log::Counters;
use crate::record::{end_seqno, set_synced_to, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};
use crate::segment::create_segment;
use crate::writeback::{Durable, Requester, SyncGate};
use crate::{Segments, WalError};

pub(crate) struct SegmentWriter {
    pub(crate) fs: Arc<dyn FileSystem>,
    pub(crate) dir: PathBuf,
    pub(crate) file: Arc<dyn File>,
    /// First seqno of the active segment (its name).
    pub(crate) segment: u64,
    /// Bytes in the active segment, header included.
    pub(crate) len: u64,
    /// Length of the active segment when it was last synced or handed to the writeback.
    pub(crate) synced_len: u64,
    /// Whether bytes were appended since the last sync by this writer.
    pub(crate) dirty: bool,
    pub(crate) segment_bytes: u64,
    /// 0 turns background writeback off.
    pub(crate) bytes_per_sync: u64,
    /// Seqno the next record will carry; names the next segment.
    pub(crate) next_seqno: u64,
    pub(crate) segments: Arc<Segments>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) gate: Arc<SyncGate>,
    pub(crate) writeback: Option<Requester>,
}

impl Sink for SegmentWriter {
    fn write_group(&mut self, records: &[Framed<'_>], sync: bool) -> Result<(), WalError> {
        if let Some(failure) = self.gate.failure() {
            return Err(failure);
        }
        if let Some(last) = records.last() {
            let synced_to = self.gate.durable_len(self.segment).max(SEGMENT_HEADER_LEN as u64);
            let headers: Vec<[u8; RECORD_HEADER_LEN]> = records
                .iter()
                .map(|record| {
                    let mut header = record.header;
                    set_synced_to(&mut header, synced_to, record.body_hash);
                    header
                })
                .collect();
            let mut slices: Vec<&[u8]> = Vec::with_capacity(records.len() * 2);
            for (header, record) in headers.iter().zip(records) {
                slices.push(header);
                slices.push(record.body);
            }
            self.append(&slices)?;
            self.next_seqno = end_seqno(&last.header);
            self.counters.records.fetch_add(records.len() as u64, Ordering::Relaxed);
        }
        if sync && self.dirty {
            self.sync()?;
        }
        if self.len >= self.segment_bytes {
            self.rotate()?;
        } else if self.bytes_per_sync > 0 && self.len - self.synced_len >= self.bytes_per_sync {
            if let Some(writeback) = &self.writeback {
                writeback.request(Arc::clone(&self.file), self.durable());
                self.synced_len = self.len;
            }
        }
        Ok(())
    }
}

impl SegmentWriter {
    fn append(&mut self, slices: &[&[u8]]) -> Result<(), WalError> {
        // Marked dirty first: a failed append may still have written part of the bytes.
        self.dirty = true;
        self.file.append_vectored(slices)?;
        let bytes: u64 = slices.iter().map(|s| s.len() as u64).sum();
        self.len += bytes;
        self.counters.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.counters.groups.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The active segment as far as it is written: durable once an fsync of it returns.
    fn durable(&self) -> Durable {
        Durable { segment: self.segment, len: self.len }
    }

    fn sync(&mut self) -> Result<(), WalError> {
        self.gate.sync(self.file.as_ref(), self.durable())?;
        self.dirty = false;
        self.synced_len = self.len;
        self.counters.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), WalError> {
        if self.dirty {
            self.sync()?;
        }
        let file = create_segment(self.fs.as_ref(), &self.dir, self.next_seqno)?;
        self.file = Arc::from(file);
        self.segment = self.next_seqno;
        self.len = SEGMENT_HEADER_LEN as u64;
        self.synced_len = self.len;
        self.gate.activate(self.durable());
        self.segments.push(self.next_seqno);
        Ok(())
    }
}
