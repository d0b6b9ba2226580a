//! Decoding one user's entries of a block: the "latest N" of a cold user needs 1-3 entries of
//! each block it touches, and a full decode parses all of them (about 150, of about 70 users).
//!
//! The users column gives the run's entry range `s..e`. The timestamp and seqno columns have
//! no per-run index, so the runs before and after are stepped over: a varint ends at a byte
//! whose high bit is clear, so skipping `k` of them is a count of such bytes, eight at a time.
//! Rice-coded timestamps (`rice.rs`) are stepped over alike: each delta's unary code ends at a
//! one bit, so skipping `k` deltas is a count of one bits, 64 at a time; the low bits need no
//! skipping (fixed width), and the escape list is short and read through.
//! The kinds and value lengths are short RLE columns walked to the range, and transposed values
//! are un-transposed only for the 8-record groups covering it.

use std::ops::Range;

use bytes::Bytes;

use super::{
    at, bits, check_run_order, push_seqno_run, push_ts_run, read_kind, read_value_len, rice, seqno_column,
    user_reader, walk_rle, with_body, Column, DecodedBlock, TsMode, Users, Widths, WidthsBuilder,
    FLAG_TRANSPOSED, KNOWN_FLAGS, MAX_BLOCK_UNCOMPRESSED,
};
use crate::scratch;
use crate::varint::Reader;
use crate::Kind;

impl DecodedBlock {
    /// Decodes only the entries of `user` in the on-disk block `on_disk` (the same input as
    /// [`decode`](Self::decode)), in table order: for a block that `decode` accepts, exactly
    /// its entries of `user`. A block without `user` gives an empty block as soon as the
    /// users column is read, without touching the other columns.
    ///
    /// The work past decompression is the users column, a byte scan of the timestamp and
    /// seqno columns, the RLE kinds and lengths, and the run's own entries.
    ///
    /// Checked as by `decode`: the header, the codec, the flags and the whole users column
    /// (gaps, run lengths summing to n); then, if `user` has a run, every kind and value
    /// length (runs summing to n), the values' size, no trailing byte, and the run's own
    /// varints and table order (timestamps ascending, seqnos descending at equal timestamps).
    /// Only `decode` checks the other runs' timestamp and seqno varints (here only counted, so
    /// an overlong one passes), in the Rice mode their codes against the escape list (here
    /// only counted, and the escapes only read), their table order, and, for an absent user,
    /// every column after the users. That is acceptable because the table verifies a block's
    /// xxh3 against its index entry before decoding it (`Table::with_raw_block`): damage is caught there, and these
    /// checks only keep a corrupt block that slipped through from causing a panic or an
    /// unbounded allocation, which they still do. An error says what and where, as `decode`'s.
    pub fn decode_user(on_disk: &[u8], user: u64) -> Result<DecodedBlock, String> {
        with_body(on_disk, |body, n| parse_user(body, n, user, None)).map(|(block, _)| block)
    }

    /// [`decode_user`](Self::decode_user) kept to the newest `keep` of `user`'s entries with
    /// `lo <= ts <= hi`: the entries a newest-first reader wanting `keep` more takes from this
    /// block. Also says whether entries of the user in `lo..=hi` were left out below the kept
    /// ones (the reader then decodes the block again if it needs more).
    ///
    /// Why: a user ranked a few thousand has hundreds of entries in a block, and "latest 100"
    /// wants about a hundred of them; un-transposing every payload of the run was most of
    /// such a cold query's decode. Everything but the payloads is decoded and checked for
    /// the whole run as `decode_user` does, so the checks are the same.
    pub fn decode_user_newest(
        on_disk: &[u8],
        user: u64,
        lo: i64,
        hi: i64,
        keep: usize,
    ) -> Result<(DecodedBlock, bool), String> {
        with_body(on_disk, |body, n| parse_user(body, n, user, Some(Newest { lo, hi, keep })))
    }

    fn empty() -> DecodedBlock {
        DecodedBlock {
            users: Users::One(0),
            ts: Vec::new(),
            seqnos: Column::Same(0),
            kinds: Column::Same(Kind::Put),
            widths: Widths::Fixed(0),
            values: Bytes::new(),
        }
    }
}

/// Which of a run's entries [`DecodedBlock::decode_user_newest`] keeps.
#[derive(Clone, Copy)]
struct Newest {
    lo: i64,
    hi: i64,
    keep: usize,
}

/// The run's entries decoded (the newest `newest.keep` of those in `lo..=hi`, with `newest`)
/// and whether entries in `lo..=hi` were left out below them.
fn parse_user(
    body: &[u8],
    n: usize,
    user: u64,
    newest: Option<Newest>,
) -> Result<(DecodedBlock, bool), String> {
    let mut r = Reader::new(body);
    let flags = at(&mut r, "flags", |r| r.byte())?;
    if flags & !KNOWN_FLAGS != 0 {
        return Err(format!("unknown flags {flags:#04x} at uncompressed body byte 0"));
    }
    let mode = TsMode::of(flags)?;
    let Some(found) = find_run(&mut r, n, user)? else { return Ok((DecodedBlock::empty(), false)) };
    let run = found.entries.clone();
    let mut ts = match mode {
        TsMode::Rice => run_rice_ts(&mut r, n, &found)?,
        _ => run_ts(&mut r, n, &run, mode == TsMode::Dod)?,
    };
    let mut seqnos = run_seqnos(&mut r, n, &run)?;
    let mut kinds = run_kinds(&mut r, n, &run)?;
    let mut lens = RunLens::read(&mut r, n, &run)?;
    let (mut widths, run_total) = lens.run_widths()?;
    let order = check_run_order(&ts, |i| seqnos.get(i))
        .map_err(|(a, b)| format!("entries {a} and {b} out of table order"));
    // The kept entries, as positions in the run (a partition point on timestamps that the
    // order check has just found sorted).
    let (kept, cut) = match newest {
        Some(Newest { lo, hi, keep }) if order.is_ok() => {
            let first = ts.partition_point(|&t| t < lo);
            let end = ts.partition_point(|&t| t <= hi).max(first);
            let start = end.saturating_sub(keep).max(first);
            (start..end, start > first)
        }
        _ => (0..run.len(), false),
    };
    let transposed = flags & FLAG_TRANSPOSED != 0;
    // Transposed payloads are un-transposed for the kept entries only (the saving); plain
    // ones are one copy of the run's bytes, cut below.
    let part = transposed && kept.len() < run.len();
    let decoded = if part { run.start + kept.start..run.start + kept.end } else { run.clone() };
    let mut values = run_values(&mut r, n, &decoded, transposed, &lens, run_total)?;
    if r.remaining() != 0 {
        return Err(format!("{} trailing bytes at uncompressed body byte {}", r.remaining(), r.position()));
    }
    order.map_err(|e| format!("run of user {user}, block entries {run:?}: {e}"))?;
    if kept.len() < run.len() {
        let cut_short = || format!("run of user {user}: entries {kept:?} past its {} entries", run.len());
        let (from, to) = match &mut widths {
            Widths::Fixed(width) => (kept.start * *width, kept.end * *width),
            Widths::Offsets(offsets) => {
                // `offsets` has one more element than the run, and `kept` lies within it.
                let kept_offsets = offsets.get(kept.start..=kept.end).ok_or_else(cut_short)?;
                let (Some(&from), Some(&to)) = (kept_offsets.first(), kept_offsets.last()) else {
                    return Err(cut_short());
                };
                *offsets = kept_offsets.iter().map(|&o| o - from).collect();
                (from as usize, to as usize)
            }
        };
        if !part {
            if from > to || to > values.len() {
                return Err(cut_short());
            }
            values = values.slice(from..to);
        }
        keep_only(&mut ts, &kept);
        if let Column::Each(seqnos) = &mut seqnos {
            keep_only(seqnos, &kept);
        }
        if let Column::Each(kinds) = &mut kinds {
            keep_only(kinds, &kept);
        }
    }
    let block = DecodedBlock { users: Users::One(user), ts, seqnos, kinds, widths, values };
    Ok((block, cut))
}

/// Keeps `column[range]` (a range within it) in place.
fn keep_only<T>(column: &mut Vec<T>, range: &Range<usize>) {
    column.truncate(range.end);
    column.drain(..range.start.min(range.end));
}

/// The run's values (`run_total` bytes), cut from this thread's chunk of values
/// ([`scratch::values`]); the reader ends past the values column, all of whose bytes must be
/// there.
fn run_values(
    r: &mut Reader<'_>,
    n: usize,
    run: &Range<usize>,
    transposed: bool,
    lens: &RunLens,
    run_total: usize,
) -> Result<Bytes, String> {
    match (transposed, lens.common_width()) {
        (false, _) => at(r, "values", |r| {
            r.bytes(lens.before)?;
            let values = r.bytes(run_total)?;
            r.bytes(lens.total.saturating_sub(lens.before + run_total))?;
            scratch::values(run_total, |out| {
                out.copy_from_slice(values);
                Ok(())
            })
        }),
        (true, Some(width)) if n >= 2 => at(r, "values", |r| {
            let len = run.len().checked_mul(width).ok_or("run values overflow")?;
            scratch::values(len, |out| bits::read_planes_range(r, width, n, run.clone(), out))
        }),
        (true, _) => at(r, "values", |_| Err("flagged transposed without one common length".to_string())),
    }
}

/// Where one user's run is in a block.
struct Run {
    /// Its entries.
    entries: Range<usize>,
    /// Its index among the block's runs, and how many runs the block has.
    index: usize,
    runs: usize,
}

/// Reads the whole users column (checking it as `decode` does) and returns where `user`'s
/// run is, if it has one.
fn find_run(r: &mut Reader<'_>, n: usize, user: u64) -> Result<Option<Run>, String> {
    let (mut start, mut runs, mut found) = (0usize, 0usize, None);
    walk_rle(r, n, "users", user_reader(), |run_user, len| {
        if run_user == user {
            found = Some((start..start + len, runs));
        }
        start += len;
        runs += 1;
    })?;
    Ok(found.map(|(entries, index)| Run { entries, index, runs }))
}

/// The run's timestamps; the reader ends past the timestamps column.
fn run_ts(r: &mut Reader<'_>, n: usize, run: &Range<usize>, dod: bool) -> Result<Vec<i64>, String> {
    // Every run stores exactly as many varints as entries, whatever the mode: a first
    // timestamp, then one code per further entry.
    let base = at(r, "timestamps", |r| r.i64())?;
    at(r, "timestamps", |r| skip_varints(r, run.start))?;
    let mut ts = Vec::with_capacity(run.len());
    push_ts_run(r, base, run.len(), dod, &mut ts)?;
    at(r, "timestamps", |r| skip_varints(r, n - run.end))?;
    Ok(ts)
}

/// The run's timestamps from a Rice-coded column (`rice.rs`); the reader ends past it. The
/// other runs' firsts are skipped as varints, their deltas by a popcount over the unary
/// codes, their escapes one by one.
fn run_rice_ts(r: &mut Reader<'_>, n: usize, run: &Run) -> Result<Vec<i64>, String> {
    let base = at(r, "timestamps", |r| r.i64())?;
    let start = r.position();
    let failed = |e: String| format!("timestamps at uncompressed body byte {start}: {e}");
    // Runs are non-empty and sum to n: n - R deltas, and `index` runs before this one, each
    // with one delta fewer than entries.
    let m = n - run.runs;
    let (mut codes, mut firsts) = rice::Codes::read(r, run.runs, m).map_err(failed)?;
    skip_varints(&mut firsts, run.index).map_err(failed)?;
    let mut prev = base.wrapping_add(firsts.u64().map_err(failed)? as i64);
    let mut ts = Vec::with_capacity(run.entries.len());
    ts.push(prev);
    codes.seek(run.entries.start - run.index).map_err(failed)?;
    for _ in 1..run.entries.len() {
        prev = prev.wrapping_add(codes.next_delta().map_err(failed)? as i64);
        ts.push(prev);
    }
    let unary = codes.skip_to_end(m).map_err(failed)?;
    r.bytes(unary).map_err(failed)?;
    Ok(ts)
}

/// The run's seqnos, one for all when they are equal (a merge with no snapshot zeroes them);
/// the reader ends past the seqnos column.
fn run_seqnos(r: &mut Reader<'_>, n: usize, run: &Range<usize>) -> Result<Column<u64>, String> {
    let base = at(r, "seqnos", |r| r.u64())?;
    at(r, "seqnos", |r| skip_varints(r, run.start))?;
    let seqnos = seqno_column(run.len(), |seqnos| push_seqno_run(r, base, run.len(), seqnos))?;
    at(r, "seqnos", |r| skip_varints(r, n - run.end))?;
    Ok(seqnos)
}

/// The run's kinds: one for the whole run (no allocation), or one per entry.
fn run_kinds(r: &mut Reader<'_>, n: usize, run: &Range<usize>) -> Result<Column<Kind>, String> {
    let (mut pos, mut kinds, mut seen) = (0usize, Column::Same(Kind::Put), 0usize);
    walk_rle(r, n, "kinds", read_kind, |kind, len| {
        let count = overlap(&mut pos, len, run);
        if count == 0 {
            return;
        }
        kinds.push_run(seen, kind, count, run.len());
        seen += count;
    })?;
    Ok(kinds)
}

/// How many of the `len` entries from `*pos` on fall in `run`; advances `*pos` past them.
fn overlap(pos: &mut usize, len: usize, run: &Range<usize>) -> usize {
    let (from, to) = (*pos, *pos + len);
    *pos = to;
    to.min(run.end).saturating_sub(from.max(run.start))
}

/// What the value lengths column says about one run.
struct RunLens {
    /// Where the column starts in the body, for errors.
    at: usize,
    /// The widths of the run's entries, built as the column is walked (no list of its
    /// lengths in between: one allocation less per cold read).
    widths: WidthsBuilder,
    /// Value bytes of the entries before the run.
    before: usize,
    /// Value bytes of all entries.
    total: usize,
    /// The value length of the column's first run.
    first: Option<usize>,
    /// How many runs the column holds.
    runs: usize,
}

impl RunLens {
    fn read(r: &mut Reader<'_>, n: usize, run: &Range<usize>) -> Result<RunLens, String> {
        let start = r.position();
        let mut lens = RunLens {
            at: start,
            widths: WidthsBuilder::new(run.len()),
            before: 0,
            total: 0,
            first: None,
            runs: 0,
        };
        let mut pos = 0usize;
        walk_rle(r, n, "value lengths", read_value_len, |value_len, len| {
            let before = len.min(run.start.saturating_sub(pos));
            match overlap(&mut pos, len, run) {
                0 => {}
                count => lens.widths.push(value_len, count),
            }
            // Saturating: an overflow shows as a total over the limit, refused below.
            lens.before = lens.before.saturating_add(value_len.saturating_mul(before));
            lens.total = lens.total.saturating_add(value_len.saturating_mul(len));
            lens.first.get_or_insert(value_len);
            lens.runs += 1;
        })?;
        if lens.total > MAX_BLOCK_UNCOMPRESSED {
            return Err(format!("value lengths at uncompressed body byte {start}: overflow the body"));
        }
        Ok(lens)
    }

    /// The run's widths and the bytes of its values.
    fn run_widths(&mut self) -> Result<(Widths, usize), String> {
        std::mem::replace(&mut self.widths, WidthsBuilder::new(0))
            .finish()
            .ok_or_else(|| format!("value lengths at uncompressed body byte {}: overflow the body", self.at))
    }

    /// The one length of every value, if transposable: `decode`'s condition.
    fn common_width(&self) -> Option<usize> {
        self.first.filter(|&width| self.runs == 1 && width > 0)
    }
}

/// Advances `r` past `count` varints without decoding them.
pub(super) fn skip_varints(r: &mut Reader<'_>, count: usize) -> Result<(), String> {
    let rest = r.clone().bytes(r.remaining())?;
    let span = varints_span(rest, count).ok_or_else(|| format!("{count} varints cut short"))?;
    r.bytes(span).map(|_| ())
}

/// The bytes taken by the first `count` varints of `bytes`, if it holds that many: up to the
/// `count`-th byte with its high bit clear. Eight bytes at a time, the terminators of a word
/// are the set bits of `!word & 0x80..80`; a popcount skips a word that ends fewer varints
/// than are left, which is most of them.
pub(super) fn varints_span(bytes: &[u8], mut count: usize) -> Option<usize> {
    if count == 0 {
        return Some(0);
    }
    let mut words = bytes.chunks_exact(8);
    let mut pos = 0usize;
    for word in &mut words {
        let mut ends = !u64::from_le_bytes(word.try_into().ok()?) & 0x8080_8080_8080_8080;
        let found = ends.count_ones() as usize;
        if found < count {
            count -= found;
            pos += 8;
            continue;
        }
        for _ in 1..count {
            ends &= ends - 1;
        }
        return Some(pos + ends.trailing_zeros() as usize / 8 + 1);
    }
    for (i, byte) in words.remainder().iter().enumerate() {
        if byte & 0x80 == 0 {
            count -= 1;
            if count == 0 {
                return Some(pos + i + 1);
            }
        }
    }
    None
}
