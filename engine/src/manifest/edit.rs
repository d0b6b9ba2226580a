//! [`Edit`]: one atomic change to the set of tables and the counters, with its body encoding;
//! [`ManifestState`]: what the edits of a manifest fold into.
//!
//! Body encoding (docs/format/manifest.md): a sequence of fields, each a tag byte and a fixed
//! number of little-endian bytes. Decoding accepts only the canonical form that `encode`
//! writes: tags never decrease and each scalar tag (1 to 3) appears at most once. So
//! `decode(encode(e)) == e` for every edit and `encode(decode(b)) == b` for every body that
//! decodes: a body has exactly one meaning and one spelling.
//!
//! Invariants of a [`ManifestState`] built only through [`ManifestState::apply`]:
//! - every table is keyed by its own number, and that number is below `next_file_number`;
//! - `persisted_seqno` and `next_file_number` never decrease, and a watermark never moves
//!   back while its partition is kept;
//! - `partition_width`, once set (non-zero), never changes;
//! - groups are disjoint, each at least one partition wide, and a watermark is kept under
//!   a group's first partition only (the others' fold into it when the group is made).

use std::collections::{BTreeMap, BTreeSet};

const TAG_PARTITION_WIDTH: u8 = 1;
const TAG_PERSISTED_SEQNO: u8 = 2;
const TAG_NEXT_FILE_NUMBER: u8 = 3;
const TAG_ADDED: u8 = 4;
const TAG_REMOVED: u8 = 5;
const TAG_WATERMARK: u8 = 6;
const TAG_DROPPED_PARTITION: u8 = 7;
const TAG_NEWEST_EVENT_TS: u8 = 8;
const TAG_GROUP: u8 = 9;

/// One SSTable as the manifest knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableRecord {
    /// File number; the table file is `format!("{number:06}.sst")` in the database directory.
    pub number: u64,
    /// Time partition of every event in the table.
    pub partition: i64,
    /// A sequence table (`true`) or an unsequence table of late events (`false`).
    pub sequence: bool,
    /// Size of the table file in bytes.
    pub file_bytes: u64,
    /// Number of entries in the table.
    pub entries: u64,
    /// Smallest timestamp in the table.
    pub min_ts: i64,
    /// Largest timestamp in the table.
    pub max_ts: i64,
    /// Smallest seqno in the table.
    pub min_seqno: u64,
    /// Largest seqno in the table.
    pub max_seqno: u64,
    /// The table's footer checksum: the root of the checksum tree over the whole table
    /// (footer -> metadata checksum -> each block's checksum in the index). With it the
    /// manifest names exactly one table's bytes, so a well-formed table whose metadata is
    /// another table's (a stale or misdirected write) is refused at open.
    pub footer_checksum: u64,
}

/// One atomic change, stored as one manifest record. `None` and empty lists change nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Edit {
    /// Width of a time partition in microseconds; set in the first edit of every manifest file.
    pub partition_width: Option<u64>,
    /// Every WAL batch at or below this seqno is in tables.
    pub persisted_seqno: Option<u64>,
    /// The next unused file number.
    pub next_file_number: Option<u64>,
    /// Tables that join the database.
    pub added: Vec<TableRecord>,
    /// Numbers of tables that leave the database.
    pub removed: Vec<u64>,
    /// `(partition, newest ts flushed to a sequence table of it)`.
    pub watermarks: Vec<(i64, i64)>,
    /// Partitions removed whole (retention); their watermarks are forgotten.
    pub dropped_partitions: Vec<i64>,
    /// Newest timestamp of any put in the tables this edit adds (retention's event clock;
    /// deletes and range-delete ends do not count, so table bounds cannot stand in for it).
    pub newest_event_ts: Option<i64>,
    /// Partition groups made: `(first, after the last)`. From this edit on, the partitions
    /// of a group are one partition numbered by its first (compaction's rule 4).
    pub groups: Vec<(i64, i64)>,
}

impl TableRecord {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.number.to_le_bytes());
        out.extend_from_slice(&self.partition.to_le_bytes());
        out.push(u8::from(self.sequence));
        for value in [self.file_bytes, self.entries] {
            out.extend_from_slice(&value.to_le_bytes());
        }
        for value in [self.min_ts, self.max_ts] {
            out.extend_from_slice(&value.to_le_bytes());
        }
        for value in [self.min_seqno, self.max_seqno, self.footer_checksum] {
            out.extend_from_slice(&value.to_le_bytes());
        }
    }

    fn decode(reader: &mut Reader<'_>) -> Result<TableRecord, String> {
        let number = reader.u64("table number")?;
        let partition = reader.i64("table partition")?;
        let sequence = match reader.u8("table sequence flag")? {
            0 => false,
            1 => true,
            other => return Err(format!("table {number}: sequence flag {other}, expected 0 or 1")),
        };
        Ok(TableRecord {
            number,
            partition,
            sequence,
            file_bytes: reader.u64("table file_bytes")?,
            entries: reader.u64("table entries")?,
            min_ts: reader.i64("table min_ts")?,
            max_ts: reader.i64("table max_ts")?,
            min_seqno: reader.u64("table min_seqno")?,
            max_seqno: reader.u64("table max_seqno")?,
            footer_checksum: reader.u64("table footer_checksum")?,
        })
    }
}

impl Edit {
    /// Appends the body encoding of this edit to `out`, fields in tag order.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let scalars = [
            (TAG_PARTITION_WIDTH, self.partition_width),
            (TAG_PERSISTED_SEQNO, self.persisted_seqno),
            (TAG_NEXT_FILE_NUMBER, self.next_file_number),
        ];
        for (tag, value) in scalars {
            if let Some(value) = value {
                out.push(tag);
                out.extend_from_slice(&value.to_le_bytes());
            }
        }
        for table in &self.added {
            out.push(TAG_ADDED);
            table.encode(out);
        }
        for number in &self.removed {
            out.push(TAG_REMOVED);
            out.extend_from_slice(&number.to_le_bytes());
        }
        for (partition, ts) in &self.watermarks {
            out.push(TAG_WATERMARK);
            out.extend_from_slice(&partition.to_le_bytes());
            out.extend_from_slice(&ts.to_le_bytes());
        }
        for partition in &self.dropped_partitions {
            out.push(TAG_DROPPED_PARTITION);
            out.extend_from_slice(&partition.to_le_bytes());
        }
        if let Some(ts) = self.newest_event_ts {
            out.push(TAG_NEWEST_EVENT_TS);
            out.extend_from_slice(&ts.to_le_bytes());
        }
        for (start, end) in &self.groups {
            out.push(TAG_GROUP);
            out.extend_from_slice(&start.to_le_bytes());
            out.extend_from_slice(&end.to_le_bytes());
        }
    }

    /// Decodes a body written by [`Edit::encode`]. Refuses (with the reason) an unknown tag,
    /// a field cut short, a sequence flag other than 0 or 1, a repeated scalar field and
    /// fields out of tag order. Every read is checked against the bytes left; never panics.
    pub fn decode(body: &[u8]) -> Result<Edit, String> {
        let mut reader = Reader { bytes: body, pos: 0 };
        let mut edit = Edit::default();
        let mut previous = 0u8;
        while let Some(tag) = reader.next_tag() {
            let at = reader.pos - 1;
            if !(TAG_PARTITION_WIDTH..=TAG_GROUP).contains(&tag) {
                return Err(format!("unknown tag {tag} at byte {at}"));
            }
            if tag == previous && (tag <= TAG_NEXT_FILE_NUMBER || tag == TAG_NEWEST_EVENT_TS) {
                return Err(format!("scalar tag {tag} repeated at byte {at}"));
            }
            if tag < previous {
                return Err(format!("tag {tag} at byte {at} after tag {previous}: not the canonical order"));
            }
            previous = tag;
            edit.decode_field(tag, &mut reader)?;
        }
        Ok(edit)
    }

    fn decode_field(&mut self, tag: u8, reader: &mut Reader<'_>) -> Result<(), String> {
        match tag {
            TAG_PARTITION_WIDTH => self.partition_width = Some(reader.u64("partition_width")?),
            TAG_PERSISTED_SEQNO => self.persisted_seqno = Some(reader.u64("persisted_seqno")?),
            TAG_NEXT_FILE_NUMBER => self.next_file_number = Some(reader.u64("next_file_number")?),
            TAG_ADDED => self.added.push(TableRecord::decode(reader)?),
            TAG_REMOVED => self.removed.push(reader.u64("removed table")?),
            TAG_WATERMARK => {
                let partition = reader.i64("watermark partition")?;
                self.watermarks.push((partition, reader.i64("watermark ts")?));
            }
            TAG_NEWEST_EVENT_TS => self.newest_event_ts = Some(reader.i64("newest event ts")?),
            TAG_GROUP => {
                let start = reader.i64("group first partition")?;
                self.groups.push((start, reader.i64("group end")?));
            }
            // `decode` refused every tag outside 1..=9: this is TAG_DROPPED_PARTITION.
            _ => self.dropped_partitions.push(reader.i64("dropped partition")?),
        }
        Ok(())
    }
}

/// A cursor over a body; every read checks the bytes left first.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn next_tag(&mut self) -> Option<u8> {
        let tag = *self.bytes.get(self.pos)?;
        self.pos += 1;
        Some(tag)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        let left = self.bytes.len().saturating_sub(self.pos);
        let field: Option<[u8; N]> =
            self.bytes.get(self.pos..).and_then(|rest| rest.get(..N)).and_then(|b| b.try_into().ok());
        let field =
            field.ok_or_else(|| format!("{what} at byte {} cut short: {left} of {N} bytes", self.pos))?;
        self.pos += N;
        Ok(field)
    }

    fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u64(&mut self, what: &str) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn i64(&mut self, what: &str) -> Result<i64, String> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }
}

/// The database's metadata as of some edit: the fold of a manifest's edits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ManifestState {
    /// Width of a time partition in microseconds (0 until the first edit sets it).
    pub partition_width: u64,
    /// Every WAL batch at or below this seqno is in tables.
    pub persisted_seqno: u64,
    /// The next unused file number; every table number is below it.
    pub next_file_number: u64,
    /// The live tables, by number.
    pub tables: BTreeMap<u64, TableRecord>,
    /// Partition -> newest ts flushed to a sequence table of it.
    pub watermarks: BTreeMap<i64, i64>,
    /// Newest timestamp of any put ever flushed (`None` before the first); only moves
    /// forward.
    pub newest_event_ts: Option<i64>,
    /// Partition groups: first partition -> the partition after the last.
    pub groups: BTreeMap<i64, i64>,
}

impl ManifestState {
    /// Folds one edit in. Err (a reason string) on: adding a number that is already present,
    /// removing an absent number, persisted_seqno going backwards, next_file_number going
    /// backwards, an added table whose number >= the next_file_number in force after this
    /// edit, a changed partition_width (or a zero one), an empty group or one that overlaps
    /// another. Order inside one edit: width, dropped_partitions (forget their watermarks
    /// and the groups they start), groups (their partitions' watermarks fold into the
    /// first's), removed, added, watermarks (a partition's goes to its group's first; a
    /// watermark only moves forward: keep the max), persisted, next_file_number. On Err
    /// self is left unchanged.
    pub fn apply(&mut self, edit: &Edit) -> Result<(), String> {
        // Check everything first, then change: no clone of the table map per edit, and an
        // Err leaves the state as it was.
        self.check_scalars(edit)?;
        self.check_tables(edit)?;
        if let Some(width) = edit.partition_width {
            self.partition_width = width;
        }
        for partition in &edit.dropped_partitions {
            self.watermarks.remove(partition);
            self.groups.remove(partition);
        }
        for &(start, end) in &edit.groups {
            self.groups.insert(start, end);
            let inside: Vec<i64> = self.watermarks.range(start..end).map(|(&p, _)| p).collect();
            let folded = inside.iter().filter_map(|p| self.watermarks.remove(p)).max();
            if let Some(mark) = folded {
                self.watermarks.insert(start, mark);
            }
        }
        for number in &edit.removed {
            self.tables.remove(number);
        }
        for table in &edit.added {
            self.tables.insert(table.number, table.clone());
        }
        for &(partition, ts) in &edit.watermarks {
            let mark = self.watermarks.entry(self.grouped(partition)).or_insert(ts);
            *mark = (*mark).max(ts);
        }
        self.persisted_seqno = edit.persisted_seqno.unwrap_or(self.persisted_seqno);
        self.next_file_number = edit.next_file_number.unwrap_or(self.next_file_number);
        if let Some(ts) = edit.newest_event_ts {
            self.newest_event_ts = Some(self.newest_event_ts.map_or(ts, |newest| newest.max(ts)));
        }
        Ok(())
    }

    fn check_scalars(&self, edit: &Edit) -> Result<(), String> {
        match edit.partition_width {
            // Every partition computation divides by the width.
            Some(0) => return Err("partition width 0".to_string()),
            Some(width) if self.partition_width != 0 && width != self.partition_width => {
                let from = self.partition_width;
                return Err(format!("changes the partition width from {from} to {width}"));
            }
            _ => {}
        }
        if let Some(seqno) = edit.persisted_seqno.filter(|&s| s < self.persisted_seqno) {
            return Err(format!("persisted seqno goes back from {} to {seqno}", self.persisted_seqno));
        }
        if let Some(next) = edit.next_file_number.filter(|&n| n < self.next_file_number) {
            return Err(format!("next file number goes back from {} to {next}", self.next_file_number));
        }
        self.check_groups(edit)
    }

    /// New groups are non-empty and overlap no group left after the edit's drops, nor
    /// each other.
    fn check_groups(&self, edit: &Edit) -> Result<(), String> {
        let mut groups = self.groups.clone();
        for partition in &edit.dropped_partitions {
            groups.remove(partition);
        }
        for &(start, end) in &edit.groups {
            if start >= end {
                return Err(format!("group {start}..{end} is empty"));
            }
            if let Some((s, e)) = strata_compaction::plan::overlapping_group(&groups, start, end) {
                return Err(format!("group {start}..{end} overlaps group {s}..{e}"));
            }
            groups.insert(start, end);
        }
        Ok(())
    }

    /// The partition `p` counts as: its group's first partition, or itself.
    pub fn grouped(&self, p: i64) -> i64 {
        strata_compaction::plan::group_of(&self.groups, p).map_or(p, |(start, _)| start)
    }

    fn check_tables(&self, edit: &Edit) -> Result<(), String> {
        let mut removed = BTreeSet::new();
        for &number in &edit.removed {
            if !self.tables.contains_key(&number) || !removed.insert(number) {
                return Err(format!("removes table {number}, which is not in the manifest"));
            }
        }
        let next = edit.next_file_number.unwrap_or(self.next_file_number);
        let mut added = BTreeSet::new();
        for table in &edit.added {
            let number = table.number;
            let present = self.tables.contains_key(&number) && !removed.contains(&number);
            if present || !added.insert(number) {
                return Err(format!("adds table {number}, which is already in the manifest"));
            }
            if number >= next {
                return Err(format!("adds table {number}, not below the next file number {next}"));
            }
        }
        Ok(())
    }

    /// One edit that, applied to `ManifestState::default()`, gives self (used to start a new
    /// manifest file). A zero width (a state no edit has set) is left out, since no edit may
    /// set it.
    pub fn snapshot_edit(&self) -> Edit {
        Edit {
            partition_width: Some(self.partition_width).filter(|&width| width != 0),
            persisted_seqno: Some(self.persisted_seqno),
            next_file_number: Some(self.next_file_number),
            added: self.tables.values().cloned().collect(),
            removed: Vec::new(),
            watermarks: self.watermarks.iter().map(|(&partition, &ts)| (partition, ts)).collect(),
            dropped_partitions: Vec::new(),
            newest_event_ts: self.newest_event_ts,
            groups: self.groups.iter().map(|(&start, &end)| (start, end)).collect(),
        }
    }
}

#[cfg(test)]
mod tests;
