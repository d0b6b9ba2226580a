//! Data blocks: a run of entries in table order, stored column by column, then compressed.
//!
//! ```text
//! on-disk block: a 9-byte header, then the payload
//! +--------+--------+--------+--------+--------+--------+--------+--------+--------+
//! | codec  | body_len u32 LE                   | entry_count u32 LE                |  0
//! +--------+--------+--------+--------+--------+--------+--------+--------+--------+
//! | payload: codec 0: the body itself (exactly body_len bytes)                 ... |  9
//! |          codec 1: exactly one zstd frame of the body, whose header declares   |
//! |                   body_len as its content size (written only when smaller)   |
//! +--------+--------+--------+--------+--------+--------+--------+--------+--------+
//!
//! body (uncompressed). n = entry_count, R = user runs, v = LEB128 varint, z = zigzag varint
//! flags    u8     bit 0: values bit-transposed; bits 1 and 2 the timestamp mode, at most
//!                 one set: none delta, bit 1 delta-of-delta, bit 2 Rice; others 0
//! users    v R, then R x (v user_gap, v run_len)    user_gap = user - previous run's user
//!                                                   (the first run stores the user itself)
//! ts       delta and dod modes: z ts_base, then per user run:
//!            v first_ts - ts_base                              (wrapping, as u64)
//!            delta mode: (run_len-1) x v ts[i] - ts[i-1]      (wrapping, as u64)
//!            dod mode:   z d[1] = ts[1] - ts[0], then (run_len-2) x z d[i] - d[i-1]
//!                        (d and its differences wrap in i64; nothing when run_len = 1)
//!          Rice mode (see `rice.rs`; m = n - R within-run deltas, wrapping, as u64):
//!            z ts_base, u8 k (0..=56), R x v first_ts - ts_base,
//!            v E, E x (v index_gap, v extra)        deltas whose d >> k is 16 or more
//!            ceil(m k / 8) bytes: the k low bits of each delta, back to back
//!            unary codes: min(d >> k, 16) zero bits then a one bit per delta, back to
//!            back, up to the byte holding the last one bit (bits LSB first, padding 0)
//! seqnos   v seq_base, then per user run:
//!            v first_seqno - seq_base, then (run_len-1) x z seqno[i] - seqno[i-1] (wrapping)
//! kinds    v K, then K x (u8 kind 1..=3, v run_len)
//! lengths  v L, then L x (v value_len, v run_len)
//! values   flag bit 0 clear: the values back to back (sum of the value lengths);
//!          set (n >= 2, a single length w > 0): bit-transposed, see `bits.rs`:
//!            w x u8 planes[j] (0..=8), then for each byte column j its planes[j] low bit
//!            planes of ceil(n / 8) bytes; plane b of column j holds bit b of byte j of
//!            entry i at bit i % 8 of byte i / 8
//! ```
//!
//! All differences are taken with wrapping arithmetic, which makes every column a bijection
//! of any `i64`/`u64` input (a run may hold `i64::MIN` and `i64::MAX`). Within a user run
//! timestamps ascend, so plain deltas need no sign bit; the builder writes whichever of delta,
//! delta-of-delta and Rice is smallest, ties to the older (for the standard workload's Poisson
//! clock, Rice: geometric gaps, 3.47 bytes an event against 4.06 as varints, where the
//! difference of two random gaps is wider than a gap). The bases make the first timestamp and
//! seqno of each run a small non-negative offset instead of a full-width signed value.
//!
//! Fixed-width payloads are transposed bit by bit, as Blosc's bitshuffle does: a zero byte
//! column costs nothing, a field below 4 costs 2 bits, a random byte 8. Byte-wise transposition
//! leaves zstd one Huffman table for all columns of the block, which codes a 2-bit field in
//! 5 or 6 bits; bit planes measured 1.1 bytes/event smaller on the standard workload, and leave
//! zstd little to do (the key columns, mostly).
//!
//! Invariants, all checked by [`DecodedBlock::decode`], which takes arbitrary bytes:
//! - entries are in strict table order (user asc, ts asc, seqno desc); anything else is
//!   corruption;
//! - each column holds exactly n entries: run lengths are >= 1 and sum to n, user gaps after the
//!   first run are >= 1, the value lengths sum to the values section, no byte trails;
//! - `body_len <= MAX_BLOCK_UNCOMPRESSED`, `n <= MAX_BLOCK_ENTRIES` and `n <= body_len` (the
//!   seqno column takes at least a byte per entry; Rice-coded timestamps may take as little as
//!   a bit), so every allocation is bounded by bytes that are really there: a decoded block
//!   holds at most 33 bytes per entry besides its values (one user run per entry, no column
//!   held once; see `decoded.rs`); the decoder never trusts a count before checking it.
//!
//! [`DecodedBlock::decode_user`] decodes one user's run and checks a subset of these (its doc
//! says which); whatever `decode` accepts, it decodes to the same entries.
//!
//! There is no checksum here: the index entry that points to a block holds the xxh3 of its
//! on-disk bytes, which also catches a block written to or read from the wrong place. A flipped
//! value byte may therefore decode to a different value; only the index checksum tells.

use std::cell::RefCell;

use bytes::Bytes;

use crate::scratch::{self, Scratch, Words};
use crate::varint::{self, Reader};
use crate::{Entry, EntryRef, Kind};

pub use decoded::DecodedBlock;
use decoded::{check_run_order, Column, Users, Widths, WidthsBuilder};

mod bits;
mod decoded;
mod rice;
#[cfg(test)]
mod rice_tests;
#[cfg(test)]
mod tests;
mod user;
#[cfg(test)]
mod user_tests;

/// Largest body a block may declare; the decoder refuses more before allocating.
pub const MAX_BLOCK_UNCOMPRESSED: usize = 64 << 20;
/// Most entries a block may hold. [`BlockBuilder::raw_size`] charges [`ENTRY_OVERHEAD`] per
/// entry, so a table builder cutting blocks at under `MAX_BLOCK_UNCOMPRESSED / 2` stays below.
pub const MAX_BLOCK_ENTRIES: usize = 1 << 21;
/// Bytes of the block header.
pub const HEADER_LEN: usize = 9;
/// What [`BlockBuilder::raw_size`] charges per entry besides its value: user, ts, seqno, kind
/// as a row store would hold them.
pub const ENTRY_OVERHEAD: usize = 25;

pub(crate) const CODEC_NONE: u8 = 0;
const CODEC_ZSTD: u8 = 1;
const FLAG_TRANSPOSED: u8 = 1;
const FLAG_TS_DOD: u8 = 2;
const FLAG_TS_RICE: u8 = 4;

/// How a block stores the timestamps after each run's first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TsMode {
    /// Varint deltas.
    Delta,
    /// Zigzag varint deltas of deltas.
    Dod,
    /// Rice-coded deltas, see `rice.rs`.
    Rice,
}

impl TsMode {
    fn flag(self) -> u8 {
        match self {
            TsMode::Delta => 0,
            TsMode::Dod => FLAG_TS_DOD,
            TsMode::Rice => FLAG_TS_RICE,
        }
    }

    /// The mode flagged in `flags`, whose other bits the caller checked.
    fn of(flags: u8) -> Result<TsMode, String> {
        match flags & (FLAG_TS_DOD | FLAG_TS_RICE) {
            0 => Ok(TsMode::Delta),
            FLAG_TS_DOD => Ok(TsMode::Dod),
            FLAG_TS_RICE => Ok(TsMode::Rice),
            _ => Err(format!("flags {flags:#04x} at uncompressed body byte 0 name two timestamp modes")),
        }
    }
}

/// The flags a decoder knows.
const KNOWN_FLAGS: u8 = FLAG_TRANSPOSED | FLAG_TS_DOD | FLAG_TS_RICE;

/// How a block's body is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Stored as is.
    None,
    /// One zstd frame at this level.
    Zstd(i32),
}

/// The columns of the entries added so far.
#[derive(Debug, Default)]
struct Columns {
    /// `(user, run length)`, users ascending.
    runs: Vec<(u64, usize)>,
    ts: Vec<i64>,
    seqnos: Vec<u64>,
    kinds: Vec<u8>,
    lens: Vec<usize>,
    values: Vec<u8>,
    /// Scratch for [`encode`](Self::encode): the within-run timestamp deltas (wrapping, as
    /// u64), run after run. Choosing the timestamp mode reads them about ten times (the
    /// cost of each mode and of five Rice parameters), so they are computed once.
    deltas: Vec<u64>,
}

/// Accumulates the entries of one block in columns, then encodes and compresses them.
pub struct BlockBuilder {
    cols: Columns,
    raw_size: usize,
    body: Vec<u8>,
    packed: Vec<u8>,
    zstd: Option<(i32, zstd::bulk::Compressor<'static>)>,
    /// Whether fixed-width values are transposed; off only to measure what it gains.
    transpose: bool,
    /// Forces a timestamp mode instead of the smallest; for tests and measurements.
    force_ts: Option<TsMode>,
}

impl std::fmt::Debug for BlockBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockBuilder").field("len", &self.len()).field("raw_size", &self.raw_size).finish()
    }
}

impl Default for BlockBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl BlockBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        BlockBuilder {
            cols: Columns::default(),
            raw_size: 0,
            body: Vec::new(),
            packed: Vec::new(),
            zstd: None,
            transpose: true,
            force_ts: None,
        }
    }

    /// Appends `entry`; the caller guarantees table order (the decoder would refuse the block).
    pub fn add(&mut self, entry: &Entry) {
        self.add_ref(&entry.as_ref());
    }

    /// [`BlockBuilder::add`] with the value borrowed.
    pub fn add_ref(&mut self, entry: &EntryRef<'_>) {
        let cols = &mut self.cols;
        match cols.runs.last_mut() {
            Some((user, len)) if *user == entry.user => *len += 1,
            _ => cols.runs.push((entry.user, 1)),
        }
        cols.ts.push(entry.ts);
        cols.seqnos.push(entry.seqno);
        cols.kinds.push(entry.kind as u8);
        cols.lens.push(entry.value.len());
        cols.values.extend_from_slice(entry.value);
        self.raw_size += ENTRY_OVERHEAD + entry.value.len();
    }

    /// Entries added since the last [`finish`](Self::finish).
    pub fn len(&self) -> usize {
        self.cols.ts.len()
    }

    /// Whether no entry was added since the last [`finish`](Self::finish).
    pub fn is_empty(&self) -> bool {
        self.cols.ts.is_empty()
    }

    /// The entries' size as a row store would hold them: [`ENTRY_OVERHEAD`] + value per entry.
    /// It bounds the decoded block's memory, which is what a block size should limit.
    pub fn raw_size(&self) -> usize {
        self.raw_size
    }

    /// Encodes the block and returns its on-disk bytes; the builder is then empty again, with
    /// its buffers kept for the next block (also after an error).
    pub fn finish(&mut self, compression: Compression) -> Result<Vec<u8>, String> {
        let result = self.encode(compression);
        let cols = &mut self.cols;
        cols.runs.clear();
        cols.ts.clear();
        cols.seqnos.clear();
        cols.kinds.clear();
        cols.lens.clear();
        cols.values.clear();
        self.raw_size = 0;
        result
    }

    fn encode(&mut self, compression: Compression) -> Result<Vec<u8>, String> {
        let count = self.len();
        if count > MAX_BLOCK_ENTRIES {
            return Err(format!("block of {count} entries over the limit of {MAX_BLOCK_ENTRIES}"));
        }
        self.body.clear();
        self.cols.encode(&mut self.body, self.transpose, self.force_ts);
        let body_len = self.body.len();
        if body_len > MAX_BLOCK_UNCOMPRESSED {
            return Err(format!("block body of {body_len} bytes over the limit of {MAX_BLOCK_UNCOMPRESSED}"));
        }
        let (codec, payload) = match compression {
            Compression::None => (CODEC_NONE, &self.body),
            Compression::Zstd(level) => {
                compress(&mut self.zstd, level, &self.body, &mut self.packed)?;
                // Bit planes are often incompressible; then raw storage is smaller and faster.
                if self.packed.len() < body_len {
                    (CODEC_ZSTD, &self.packed)
                } else {
                    (CODEC_NONE, &self.body)
                }
            }
        };
        let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
        out.push(codec);
        out.extend_from_slice(&u32_le(body_len)?);
        out.extend_from_slice(&u32_le(count)?);
        out.extend_from_slice(payload);
        Ok(out)
    }
}

fn u32_le(value: usize) -> Result<[u8; 4], String> {
    u32::try_from(value).map(u32::to_le_bytes).map_err(|_| format!("{value} does not fit the block header"))
}

/// Compresses `body` into `out` with a context kept across blocks: creating one costs more
/// than compressing a small block.
fn compress(
    ctx: &mut Option<(i32, zstd::bulk::Compressor<'static>)>,
    level: i32,
    body: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let failed = |e: std::io::Error| format!("zstd level {level}: {e}");
    if ctx.as_ref().is_none_or(|(current, _)| *current != level) {
        *ctx = Some((level, zstd::bulk::Compressor::new(level).map_err(failed)?));
    }
    let Some((_, compressor)) = ctx.as_mut() else { return Err("no zstd context".to_string()) };
    out.clear();
    out.reserve(zstd::zstd_safe::compress_bound(body.len()));
    compressor.compress_to_buffer(body, out).map_err(failed)?;
    Ok(())
}

fn varint_len(value: u64) -> usize {
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

/// The codes stored after a run's first timestamp, from the run's `deltas`: the deltas
/// themselves, or (`dod`) the first delta and then the difference of each delta from the one
/// before, zigzagged (differences wrap in i64).
fn ts_codes(deltas: &[u64], dod: bool) -> impl Iterator<Item = u64> + Clone + '_ {
    let mut prev_delta = 0i64;
    deltas.iter().enumerate().map(move |(i, &delta)| {
        let delta = delta as i64;
        let code = match (dod, i) {
            (false, _) => delta as u64,
            (true, 0) => varint::zigzag(delta),
            (true, _) => varint::zigzag(delta.wrapping_sub(prev_delta)),
        };
        prev_delta = delta;
        code
    })
}

/// `(value, run length)` of each run of equal values.
fn rle<T: PartialEq + Copy>(items: &[T]) -> impl Iterator<Item = (T, usize)> + Clone + '_ {
    items.chunk_by(|a, b| a == b).filter_map(|run| run.first().map(|&first| (first, run.len())))
}

impl Columns {
    fn encode(&mut self, out: &mut Vec<u8>, may_transpose: bool, force_ts: Option<TsMode>) {
        self.fill_deltas();
        let width = self.fixed_width().filter(|_| may_transpose);
        let (k, rice_cost) = rice::choose_k(self.deltas(), self.deltas_len());
        let mode = force_ts.unwrap_or_else(|| {
            // Ties go to the older modes, which older builds read.
            let costs = [(self.ts_cost(false), TsMode::Delta), (self.ts_cost(true), TsMode::Dod)];
            let costs = costs.into_iter().chain([(rice_cost, TsMode::Rice)]);
            costs.min_by_key(|&(cost, _)| cost).map_or(TsMode::Delta, |(_, mode)| mode)
        });
        out.push(if width.is_some() { FLAG_TRANSPOSED } else { 0 } | mode.flag());
        varint::put_u64(out, self.runs.len() as u64);
        let mut prev = 0;
        for &(user, len) in &self.runs {
            varint::put_u64(out, user.wrapping_sub(prev));
            varint::put_u64(out, len as u64);
            prev = user;
        }
        self.put_ts(out, mode, k);
        self.put_seqnos(out);
        put_rle(out, rle(&self.kinds).map(|(kind, len)| (u64::from(kind), len)));
        put_rle(out, rle(&self.lens).map(|(value_len, len)| (value_len as u64, len)));
        match width {
            Some(width) => bits::bitshuffle(&self.values, width, out),
            None => out.extend_from_slice(&self.values),
        }
    }

    /// The common value length if the values should be transposed.
    fn fixed_width(&self) -> Option<usize> {
        let first = *self.lens.first()?;
        (self.lens.len() >= 2 && first > 0 && self.lens.iter().all(|&len| len == first)).then_some(first)
    }

    /// Each user run's slice of `column`.
    fn split<'a, T>(&'a self, column: &'a [T]) -> impl Iterator<Item = &'a [T]> + Clone + 'a {
        let mut rest = column;
        self.runs.iter().map(move |&(_, len)| {
            let (run, tail) = rest.split_at(len.min(rest.len()));
            rest = tail;
            run
        })
    }

    /// Bytes of the timestamp codes after each run's first, as varints; see [`ts_codes`].
    fn ts_cost(&self, dod: bool) -> usize {
        self.run_deltas().flat_map(|deltas| ts_codes(deltas, dod)).map(varint_len).sum()
    }

    /// Computes [`deltas`](Self::deltas) from the timestamp column.
    fn fill_deltas(&mut self) {
        self.deltas.clear();
        let mut rest = &self.ts[..];
        for &(_, len) in &self.runs {
            let (run, tail) = rest.split_at(len.min(rest.len()));
            rest = tail;
            self.deltas.extend(run.windows(2).map(|pair| pair[1].wrapping_sub(pair[0]) as u64));
        }
    }

    /// The within-run timestamp deltas, run after run (wrapping, as u64), as
    /// [`fill_deltas`](Self::fill_deltas) left them.
    fn deltas(&self) -> impl Iterator<Item = u64> + Clone + '_ {
        self.deltas.iter().copied()
    }

    /// Each user run's slice of [`deltas`](Self::deltas): one fewer than its entries.
    fn run_deltas(&self) -> impl Iterator<Item = &[u64]> + Clone + '_ {
        let mut rest = &self.deltas[..];
        self.runs.iter().map(move |&(_, len)| {
            let (run, tail) = rest.split_at(len.saturating_sub(1).min(rest.len()));
            rest = tail;
            run
        })
    }

    /// How many [`deltas`](Self::deltas) there are: one per entry but each run's first.
    fn deltas_len(&self) -> usize {
        self.ts.len() - self.runs.len()
    }

    fn put_ts(&self, out: &mut Vec<u8>, mode: TsMode, k: u8) {
        let base = self.split(&self.ts).filter_map(|run| run.first().copied()).min().unwrap_or(0);
        varint::put_i64(out, base);
        if mode == TsMode::Rice {
            out.push(k);
        }
        for (run, deltas) in self.split(&self.ts).zip(self.run_deltas()) {
            let first = run.first().map_or(0, |first| first.wrapping_sub(base));
            varint::put_u64(out, first as u64);
            if mode != TsMode::Rice {
                ts_codes(deltas, mode == TsMode::Dod).for_each(|code| varint::put_u64(out, code));
            }
        }
        if mode == TsMode::Rice {
            rice::put(out, self.deltas(), self.deltas_len(), k);
        }
    }

    fn put_seqnos(&self, out: &mut Vec<u8>) {
        let base = self.split(&self.seqnos).filter_map(|run| run.first().copied()).min().unwrap_or(0);
        varint::put_u64(out, base);
        for run in self.split(&self.seqnos) {
            varint::put_u64(out, run.first().map_or(0, |first| first.wrapping_sub(base)));
            for pair in run.windows(2) {
                varint::put_i64(out, pair[1].wrapping_sub(pair[0]) as i64);
            }
        }
    }
}

fn put_rle(out: &mut Vec<u8>, runs: impl Iterator<Item = (u64, usize)> + Clone) {
    varint::put_u64(out, runs.clone().count() as u64);
    for (value, len) in runs {
        varint::put_u64(out, value);
        varint::put_u64(out, len as u64);
    }
}

/// The first index of sorted `values` holding `target` or more: `partition_point(v <
/// target)`, found by interpolation while the range is wide, then by binary search.
///
/// User ids are spread over the u64 range (the engine's callers mix them, and even dense
/// ids are evenly spaced), so a guess from the two ends lands within a few entries in two
/// or three probes, where a binary search of a block's column takes nine; each probe of a
/// block that has left the CPU caches is a cache miss. A skewed column costs at most
/// [`INTERPOLATION_ROUNDS`] extra probes before the binary search finishes the job.
pub(crate) fn lower_bound_u64(values: &[u64], target: u64) -> usize {
    let (mut lo, mut hi) = (0usize, values.len());
    for _ in 0..INTERPOLATION_ROUNDS {
        if hi - lo <= 16 {
            break;
        }
        let (first, last) = (values[lo], values[hi - 1]);
        if target <= first {
            return lo;
        }
        if target > last {
            return hi;
        }
        // first < target <= last, so last > first and the guess lies in lo..hi - 1.
        let span = u128::from(last - first);
        let offset = u128::from(target - first) * ((hi - 1 - lo) as u128) / span;
        let guess = lo + usize::try_from(offset).unwrap_or(hi - 1 - lo);
        if values[guess] < target {
            lo = guess + 1;
        } else {
            hi = guess + 1;
            if guess == lo || values[guess - 1] < target {
                return guess;
            }
        }
    }
    lo + values[lo..hi].partition_point(|&v| v < target)
}

/// Interpolation probes before [`lower_bound_u64`] falls back to a binary search.
const INTERPOLATION_ROUNDS: usize = 4;

/// How many entries at the start of `rest` (sorted) equal `user`, found by galloping
/// rather than by a second search over the whole block: a cached block is usually cold in
/// the CPU caches, and a second binary search would repeat the first one's cache misses,
/// while a run is short and adjacent.
pub(crate) fn run_len(rest: &[u64], user: u64) -> usize {
    if rest.first() != Some(&user) {
        return 0;
    }
    let mut bound = 1;
    while bound < rest.len() && rest[bound] == user {
        bound *= 2;
    }
    let window = rest.get(bound / 2..bound.min(rest.len())).unwrap_or_default();
    bound / 2 + window.partition_point(|&u| u == user)
}

thread_local! {
    /// A decompression context per thread, kept because creating one costs more than
    /// decompressing a small block.
    static DCTX: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

fn le_u32(bytes: &[u8], at: usize) -> Option<usize> {
    let array: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(array)).ok()
}

impl DecodedBlock {
    /// Decodes the on-disk bytes of a block. The error says what is wrong and where: a byte
    /// offset within the block, or within the uncompressed body.
    pub fn decode(on_disk: &[u8]) -> Result<DecodedBlock, String> {
        with_body(on_disk, parse)
    }
}

/// Calls `f` with the uncompressed body of the on-disk block `on_disk` and its entry
/// count, after the header checks that bound every later allocation: borrowed when stored
/// uncompressed, else decompressed into this thread's scratch buffer ([`crate::scratch`]).
pub(super) fn with_body<T>(
    on_disk: &[u8],
    f: impl FnOnce(&[u8], usize) -> Result<T, String>,
) -> Result<T, String> {
    let (Some(&codec), Some(body_len), Some(count)) =
        (on_disk.first(), le_u32(on_disk, 1), le_u32(on_disk, 5))
    else {
        return Err(format!("block of {} bytes is shorter than its {HEADER_LEN}-byte header", on_disk.len()));
    };
    if body_len > MAX_BLOCK_UNCOMPRESSED {
        return Err(format!("body length {body_len} at byte 1 over the limit of {MAX_BLOCK_UNCOMPRESSED}"));
    }
    if count > MAX_BLOCK_ENTRIES || count > body_len {
        return Err(format!("entry count {count} at byte 5 does not fit a body of {body_len} bytes"));
    }
    let payload = on_disk.get(HEADER_LEN..).unwrap_or_default();
    match codec {
        CODEC_NONE if payload.len() == body_len => f(payload, count),
        CODEC_NONE => Err(format!("body of {} bytes at byte 9, header says {body_len}", payload.len())),
        CODEC_ZSTD => scratch::with(Scratch::Body, body_len, |body| {
            decompress(payload, body)?;
            f(body, count)
        }),
        _ => Err(format!("unknown codec {codec} at byte 0")),
    }
}

/// Decompresses one zstd frame into `body`, which it must declare and fill exactly.
fn decompress(frame: &[u8], body: &mut [u8]) -> Result<(), String> {
    let body_len = body.len();
    let declared = zstd::zstd_safe::get_frame_content_size(frame);
    if !matches!(declared, Ok(Some(size)) if size == body_len as u64) {
        return Err(format!("zstd frame at byte 9 does not declare the header's {body_len} bytes"));
    }
    if zstd::zstd_safe::find_frame_compressed_size(frame) != Ok(frame.len()) {
        return Err(format!("zstd frame at byte 9 does not span the {} bytes of the payload", frame.len()));
    }
    let written = DCTX.with(|cell| -> std::io::Result<usize> {
        let mut slot = cell.try_borrow_mut().map_err(std::io::Error::other)?;
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new()?);
        }
        match slot.as_mut() {
            Some(ctx) => ctx.decompress_to_buffer(frame, body),
            None => Err(std::io::Error::other("no zstd context")),
        }
    });
    match written {
        Ok(n) if n == body_len => Ok(()),
        Ok(n) => Err(format!("zstd frame at byte 9 holds {n} bytes, header says {body_len}")),
        Err(e) => Err(format!("zstd frame at byte 9: {e}")),
    }
}

/// Runs `read`, prefixing its error with the column and the body offset it started at.
fn at<'a, T>(
    r: &mut Reader<'a>,
    what: &str,
    read: impl FnOnce(&mut Reader<'a>) -> Result<T, String>,
) -> Result<T, String> {
    let start = r.position();
    read(r).map_err(|e| format!("{what} at uncompressed body byte {start}: {e}"))
}

/// Reads an RLE column, `v count, count x (value, v run_len)` whose run lengths sum to `n`,
/// handing each `(value, run_len)` to `visit`: the decoders keep only what they need of it
/// (one range's runs, or one value for a column of one run).
fn walk_rle<T>(
    r: &mut Reader<'_>,
    n: usize,
    what: &str,
    mut value: impl FnMut(&mut Reader<'_>) -> Result<T, String>,
    mut visit: impl FnMut(T, usize),
) -> Result<(), String> {
    let count = at(r, what, |r| r.len(n.min(r.remaining() / 2), "run count"))?;
    let mut total = 0usize;
    for _ in 0..count {
        let item = at(r, what, &mut value)?;
        let len = at(r, what, |r| r.len(n - total, "run length"))?;
        if len == 0 {
            return at(r, what, |_| Err("empty run".to_string()));
        }
        total += len;
        visit(item, len);
    }
    if total != n {
        return at(r, what, |_| Err(format!("runs cover {total} entries of {n}")));
    }
    Ok(())
}

fn read_kind(r: &mut Reader<'_>) -> Result<Kind, String> {
    let byte = r.byte()?;
    Kind::from_byte(byte).ok_or_else(|| format!("unknown kind {byte}"))
}

fn read_value_len(r: &mut Reader<'_>) -> Result<usize, String> {
    r.len(MAX_BLOCK_UNCOMPRESSED, "value length")
}

fn parse(body: &[u8], n: usize) -> Result<DecodedBlock, String> {
    let mut r = Reader::new(body);
    let flags = at(&mut r, "flags", |r| r.byte())?;
    if flags & !KNOWN_FLAGS != 0 {
        return Err(format!("unknown flags {flags:#04x} at uncompressed body byte 0"));
    }
    let mode = TsMode::of(flags)?;
    let (users, ends) = read_users(&mut r, n)?;
    let ts = match mode {
        TsMode::Rice => read_rice_ts(&mut r, &ends, n)?,
        _ => read_ts(&mut r, &ends, n, mode == TsMode::Dod)?,
    };
    let seqnos = read_seqnos(&mut r, &ends, n)?;
    let kinds = read_kinds(&mut r, n)?;
    let (widths, total, len_runs) = read_widths(&mut r, n)?;
    let values = match (flags & FLAG_TRANSPOSED != 0, &widths) {
        (false, _) => at(&mut r, "values", |r| r.bytes(total))?.to_vec(),
        (true, &Widths::Fixed(width)) if len_runs == 1 && n >= 2 && width > 0 => {
            at(&mut r, "values", |r| bits::read_planes(r, width, n))?
        }
        (true, _) => return Err("values flagged transposed without one common length".to_string()),
    };
    if r.remaining() != 0 {
        return Err(format!("{} trailing bytes at uncompressed body byte {}", r.remaining(), r.position()));
    }
    let block = DecodedBlock {
        users: Users::Runs { users, ends },
        ts,
        seqnos,
        kinds,
        widths,
        values: Bytes::from(values),
    };
    block.check_order()?;
    Ok(block)
}

/// Reads the users column: each run's user, and where it ends.
fn read_users(r: &mut Reader<'_>, n: usize) -> Result<(Vec<u64>, Vec<u32>), String> {
    let (mut users, mut ends, mut end) = (Vec::new(), Vec::new(), 0usize);
    walk_rle(r, n, "users", user_reader(), |user, len| {
        end += len;
        users.push(user);
        // n <= MAX_BLOCK_ENTRIES (checked by `with_body`): every end fits, none saturates.
        ends.push(u32::try_from(end).unwrap_or(u32::MAX));
    })?;
    Ok((users, ends))
}

/// The length of each run, from where the runs end.
fn run_lens(ends: &[u32]) -> impl Iterator<Item = usize> + '_ {
    let mut start = 0usize;
    ends.iter().map(move |&end| {
        let len = (end as usize).saturating_sub(start);
        start = end as usize;
        len
    })
}

/// Reads the kinds column: one kind for all entries (no allocation), or one per entry once
/// a second kind shows up.
fn read_kinds(r: &mut Reader<'_>, n: usize) -> Result<Column<Kind>, String> {
    let (mut column, mut seen) = (Column::Same(Kind::Put), 0usize);
    walk_rle(r, n, "kinds", read_kind, |kind, len| {
        column.push_run(seen, kind, len, n);
        seen += len;
    })?;
    Ok(column)
}

/// Reads the value lengths column: one width for all values, or the n + 1 offsets (see
/// [`WidthsBuilder`]); also the values' total size and the number of runs the column holds.
fn read_widths(r: &mut Reader<'_>, n: usize) -> Result<(Widths, usize, usize), String> {
    let (mut widths, mut runs) = (WidthsBuilder::new(n), 0usize);
    walk_rle(r, n, "value lengths", read_value_len, |value_len, len| {
        runs += 1;
        widths.push(value_len, len);
    })?;
    let (widths, total) = widths.finish().ok_or_else(|| "value lengths overflow the body".to_string())?;
    Ok((widths, total, runs))
}

/// Reads the user of each run from its gap; the closure keeps the previous run's user.
fn user_reader() -> impl FnMut(&mut Reader<'_>) -> Result<u64, String> {
    let mut first = true;
    let mut prev = 0u64;
    move |r: &mut Reader<'_>| {
        let gap = r.u64()?;
        let user = prev.checked_add(gap).filter(|_| first || gap > 0);
        first = false;
        prev = user.ok_or_else(|| format!("user gap {gap} after user {prev}: users out of table order"))?;
        Ok(prev)
    }
}

fn read_ts(r: &mut Reader<'_>, ends: &[u32], n: usize, dod: bool) -> Result<Vec<i64>, String> {
    let base = at(r, "timestamps", |r| r.i64())?;
    let mut ts = Vec::with_capacity(n);
    for len in run_lens(ends) {
        push_ts_run(r, base, len, dod, &mut ts)?;
    }
    Ok(ts)
}

/// Reads a Rice-coded timestamps column (`rice.rs`).
fn read_rice_ts(r: &mut Reader<'_>, ends: &[u32], n: usize) -> Result<Vec<i64>, String> {
    let base = at(r, "timestamps", |r| r.i64())?;
    let start = r.position();
    let failed = |e: String| format!("timestamps at uncompressed body byte {start}: {e}");
    // Runs are non-empty and sum to n, so there are n - R deltas.
    let m = n - ends.len();
    let (mut codes, mut firsts) = rice::Codes::read(r, ends.len(), m).map_err(failed)?;
    let mut ts = Vec::with_capacity(n);
    for len in run_lens(ends) {
        let mut prev = base.wrapping_add(firsts.u64().map_err(failed)? as i64);
        ts.push(prev);
        for _ in 1..len {
            prev = prev.wrapping_add(codes.next_delta().map_err(failed)? as i64);
            ts.push(prev);
        }
    }
    let unary = codes.finish(m).map_err(failed)?;
    r.bytes(unary).map_err(failed)?;
    Ok(ts)
}

/// Decodes the `len` timestamps of one user run onto `ts`.
fn push_ts_run(
    r: &mut Reader<'_>,
    base: i64,
    len: usize,
    dod: bool,
    ts: &mut Vec<i64>,
) -> Result<(), String> {
    let mut prev = base.wrapping_add(at(r, "timestamps", |r| r.u64())? as i64);
    ts.push(prev);
    let mut delta = 0i64;
    for i in 1..len {
        let code = at(r, "timestamps", |r| r.u64())?;
        delta = match (dod, i) {
            (false, _) => code as i64,
            (true, 1) => varint::unzigzag(code),
            (true, _) => delta.wrapping_add(varint::unzigzag(code)),
        };
        prev = prev.wrapping_add(delta);
        ts.push(prev);
    }
    Ok(())
}

/// Reads the seqnos column. A settled table's seqnos are all 0: they are decoded into this
/// thread's spare buffer and held as one value, with no allocation.
fn read_seqnos(r: &mut Reader<'_>, ends: &[u32], n: usize) -> Result<Column<u64>, String> {
    let base = at(r, "seqnos", |r| r.u64())?;
    seqno_column(n, |seqnos| run_lens(ends).try_for_each(|len| push_seqno_run(r, base, len, seqnos)))
}

/// The seqnos `read` pushes (`len` of them), decoded into this thread's spare buffer: one
/// value for all, with no allocation and the buffer kept for the next block, or the buffer
/// itself when they differ.
fn seqno_column(
    len: usize,
    read: impl FnOnce(&mut Vec<u64>) -> Result<(), String>,
) -> Result<Column<u64>, String> {
    let mut seqnos = scratch::take_words(Words::Seqnos);
    seqnos.reserve(len);
    let read = read(&mut seqnos);
    let same = match seqnos.split_first() {
        None => Some(0),
        Some((first, rest)) => rest.iter().all(|s| s == first).then_some(*first),
    };
    if let (Ok(()), None) = (&read, same) {
        return Ok(Column::Each(seqnos));
    }
    // Kept for the next block.
    scratch::keep_words(Words::Seqnos, seqnos);
    read.map(|()| Column::Same(same.unwrap_or(0)))
}

/// Decodes the `len` seqnos of one user run onto `seqnos`.
fn push_seqno_run(r: &mut Reader<'_>, base: u64, len: usize, seqnos: &mut Vec<u64>) -> Result<(), String> {
    let mut prev = base.wrapping_add(at(r, "seqnos", |r| r.u64())?);
    seqnos.push(prev);
    for _ in 1..len {
        prev = prev.wrapping_add(at(r, "seqnos", |r| r.i64())? as u64);
        seqnos.push(prev);
    }
    Ok(())
}
