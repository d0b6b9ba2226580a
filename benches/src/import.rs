//! The data side of `strata-bench import`: reading a real interaction log into events, the
//! in-memory model of what strata must then answer, and the checks of each answer against it.
//!
//! - [`Format`] and [`LogReader`]: the two layouts this tool reads, line by line, each
//!   malformed line an [`Error::Parse`] naming its 1-based line.
//!   - `movielens`: the MovieLens `u.data` layout, also RecBole's `.inter` files: tab-separated
//!     `user, item, rating, timestamp` (seconds), extra columns allowed. A first line whose
//!     user field is not an unsigned integer is a header (`.inter`: `user_id:token ...`) and is
//!     skipped. The timestamp may be an integer or a float (`.inter` writes `881250949.0`).
//!   - `csv`: the user and timestamp columns, the timestamp's unit and the delimiter are
//!     given; a header line is skipped only when asked. Lines are split on the delimiter and
//!     nothing else: quoting is not supported, so a quoted field holding the delimiter is
//!     split (the pieces are still kept in the payload, in order).
//! - Payload: every field of a row other than the user and the timestamp, in file order,
//!   joined by the file's delimiter (`242\t3` for a MovieLens row), as raw bytes.
//! - Keys: strata keys an event by `(user, ts)`, and real logs hold several rows of one user
//!   in the same second. Rather than let a later row replace an earlier one, [`KeyAssigner`]
//!   moves a row whose `(user, ts)` is taken to the next free microsecond: rows of one user
//!   in the same second keep file order, 1 µs apart. No row is ever dropped.
//! - [`Model`], [`check_latest`] and [`check_range`]: what `--verify` compares every answer
//!   with, exactly (user, ts, payload, order).
//! - [`UserPicker`]: query users drawn by picking a row uniformly at random and taking its
//!   user, so that query popularity follows the log's.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use strata::{Event, MAX_PAYLOAD_BYTES};

use crate::workload::Rng;
use crate::{Error, Result};

/// Bytes of an event's key (user u64 + ts i64), counted in its raw size as the standard
/// workload counts them.
pub const KEY_BYTES: u64 = 16;

/// The unit of a timestamp column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TsUnit {
    /// Seconds.
    Seconds,
    /// Milliseconds.
    Millis,
    /// Microseconds (strata's own unit).
    Micros,
}

impl TsUnit {
    /// Microseconds in one unit.
    pub fn micros(self) -> i64 {
        match self {
            TsUnit::Seconds => 1_000_000,
            TsUnit::Millis => 1_000,
            TsUnit::Micros => 1,
        }
    }
}

/// How the first line of a file is treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Header {
    /// Every line is a row.
    None,
    /// The first line is a header: skipped whatever it holds.
    Skip,
    /// The first line is skipped when its user field is not an unsigned integer (the header
    /// of a RecBole `.inter` file); otherwise it is a row.
    Detect,
}

/// A CSV-like layout: which columns hold the user and the timestamp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsvLayout {
    /// 0-based column of the user id (an unsigned integer).
    pub user_col: usize,
    /// 0-based column of the timestamp (an integer or a float).
    pub ts_col: usize,
    /// Unit of the timestamp.
    pub ts_unit: TsUnit,
    /// The one byte fields are split on.
    pub delimiter: u8,
    /// Whether the first line is a header.
    pub header: bool,
}

/// The layout of an input file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Format {
    /// MovieLens `u.data` / RecBole `.inter`: `user\titem\trating\ttimestamp[\t...]`, the
    /// timestamp in seconds, an optional header line.
    Movielens,
    /// Delimited columns as described.
    Csv(CsvLayout),
}

impl Format {
    /// The name used on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Format::Movielens => "movielens",
            Format::Csv(_) => "csv",
        }
    }

    /// Refuses a layout that cannot work.
    pub fn validate(&self) -> Result<()> {
        if let Format::Csv(layout) = self {
            if layout.user_col == layout.ts_col {
                return Err(Error::Usage(format!(
                    "--user-col and --ts-col are both {}: they must differ",
                    layout.user_col
                )));
            }
            if layout.delimiter == b'\n' || layout.delimiter == b'\r' {
                return Err(Error::Usage("the delimiter cannot be a line break".into()));
            }
        }
        Ok(())
    }

    fn layout(&self) -> Layout {
        match self {
            Format::Movielens => Layout {
                user_col: 0,
                ts_col: 3,
                // item and rating are part of the layout: a row without them is malformed.
                min_fields: 4,
                ts_unit: TsUnit::Seconds,
                delimiter: b'\t',
                header: Header::Detect,
                what: "tab-separated fields (user, item, rating, timestamp)",
            },
            Format::Csv(csv) => Layout {
                user_col: csv.user_col,
                ts_col: csv.ts_col,
                min_fields: csv.user_col.max(csv.ts_col) + 1,
                ts_unit: csv.ts_unit,
                delimiter: csv.delimiter,
                header: if csv.header { Header::Skip } else { Header::None },
                what: "fields (the user and timestamp columns must exist)",
            },
        }
    }
}

/// A format resolved to column positions.
#[derive(Clone, Debug)]
struct Layout {
    user_col: usize,
    ts_col: usize,
    min_fields: usize,
    ts_unit: TsUnit,
    delimiter: u8,
    header: Header,
    what: &'static str,
}

/// One row of a file, parsed, before its key is made unique.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedRow {
    /// The user.
    pub user: u64,
    /// The timestamp in microseconds, as the file gives it.
    pub ts: i64,
    /// The other fields, joined by the delimiter.
    pub payload: Vec<u8>,
}

/// What [`parse_line`] makes of a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// A row.
    Row(ParsedRow),
    /// An empty line or a header: nothing to load.
    Skip,
}

/// Parses line `line_no` (1-based) of `path`; `line` has no line terminator (a trailing
/// `\r` is ignored).
pub fn parse_line(format: &Format, path: &Path, line_no: u64, line: &[u8]) -> Result<Line> {
    let layout = format.layout();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = if line_no == 1 { line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line) } else { line };
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(Line::Skip);
    }
    let error = |message: String| Error::Parse { path: path.to_path_buf(), line: line_no, message };
    let fields: Vec<&[u8]> = line.split(|&b| b == layout.delimiter).collect();
    if line_no == 1 {
        match layout.header {
            Header::Skip => return Ok(Line::Skip),
            Header::Detect if parse_user(fields[0]).is_none() => return Ok(Line::Skip),
            Header::Detect | Header::None => {}
        }
    }
    if fields.len() < layout.min_fields {
        return Err(error(format!(
            "expected at least {} {}, found {}",
            layout.min_fields,
            layout.what,
            fields.len()
        )));
    }
    let user_field = fields[layout.user_col];
    let user = parse_user(user_field).ok_or_else(|| {
        let hint = if line_no == 1 && layout.header == Header::None {
            " (a header line? pass --header)"
        } else {
            ""
        };
        error(format!(
            "user field {:?} is not an unsigned integer{hint}",
            String::from_utf8_lossy(user_field)
        ))
    })?;
    let ts_field = fields[layout.ts_col];
    let ts = parse_ts(ts_field, layout.ts_unit)
        .map_err(|why| error(format!("timestamp field {:?} {why}", String::from_utf8_lossy(ts_field))))?;
    let mut payload = Vec::with_capacity(line.len());
    let kept = fields.iter().enumerate().filter(|&(i, _)| i != layout.user_col && i != layout.ts_col);
    for (k, (_, field)) in kept.enumerate() {
        if k > 0 {
            payload.push(layout.delimiter);
        }
        payload.extend_from_slice(field);
    }
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(error(format!(
            "the row's payload is {} bytes, over strata's limit of {MAX_PAYLOAD_BYTES}",
            payload.len()
        )));
    }
    Ok(Line::Row(ParsedRow { user, ts, payload }))
}

fn parse_user(field: &[u8]) -> Option<u64> {
    std::str::from_utf8(field).ok()?.trim().parse::<u64>().ok()
}

/// Parses a timestamp in `unit` into microseconds: an integer, or any finite float (rounded
/// to the microsecond). The error completes "timestamp field ... ".
fn parse_ts(field: &[u8], unit: TsUnit) -> std::result::Result<i64, String> {
    let text = std::str::from_utf8(field).map_err(|_| "is not text".to_string())?.trim();
    if let Ok(whole) = text.parse::<i64>() {
        return whole.checked_mul(unit.micros()).ok_or_else(|| "overflows i64 microseconds".to_string());
    }
    let value: f64 = text.parse().map_err(|_| "is not a number".to_string())?;
    if !value.is_finite() {
        return Err("is not a finite number".into());
    }
    let micros = (value * unit.micros() as f64).round();
    // i64::MAX as f64 rounds up to 2^63, which itself does not fit; stay strictly below.
    const LIMIT: f64 = 9.223_372_036_854_775e18;
    if !(-LIMIT..LIMIT).contains(&micros) {
        return Err("overflows i64 microseconds".into());
    }
    // Within the i64 range by the check above; the fraction was rounded away.
    #[allow(clippy::cast_possible_truncation)]
    let micros = micros as i64;
    Ok(micros)
}

/// Makes `(user, ts)` keys unique: a key already given out moves to the next free
/// microsecond, so rows of one user in the same second keep file order, 1 µs apart.
#[derive(Debug, Default)]
pub struct KeyAssigner {
    used: HashSet<(u64, i64)>,
    /// For a key that collided: the last key given out in its place, where the search for
    /// the next free one starts (keeps a burst of k rows in one second O(k), not O(k²)).
    last_moved: HashMap<(u64, i64), i64>,
    moved: u64,
}

impl KeyAssigner {
    /// An assigner that has given out no key.
    pub fn new() -> KeyAssigner {
        KeyAssigner::default()
    }

    /// The timestamp `(user, ts)` is stored at: `ts` if free, else the next free microsecond
    /// after it. `None` only if no free microsecond is left before `i64::MAX`.
    pub fn assign(&mut self, user: u64, ts: i64) -> Option<i64> {
        if self.used.insert((user, ts)) {
            return Some(ts);
        }
        let mut candidate = self.last_moved.get(&(user, ts)).copied().unwrap_or(ts);
        while self.used.contains(&(user, candidate)) {
            candidate = candidate.checked_add(1)?;
        }
        self.used.insert((user, candidate));
        self.last_moved.insert((user, ts), candidate);
        self.moved += 1;
        Some(candidate)
    }

    /// Rows given another timestamp than their own so far.
    pub fn moved(&self) -> u64 {
        self.moved
    }
}

/// One row as it is loaded: its key made unique.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// 1-based line of the file.
    pub line: u64,
    /// The user.
    pub user: u64,
    /// The timestamp it is stored at, in microseconds.
    pub ts: i64,
    /// The row's other fields.
    pub payload: Vec<u8>,
}

/// Reads a log line by line into [`Record`]s, and tallies what the queries need.
pub struct LogReader<R> {
    reader: R,
    path: PathBuf,
    format: Format,
    line: u64,
    buf: Vec<u8>,
    keys: KeyAssigner,
    rows: u64,
    raw_bytes: u64,
    rows_per_user: HashMap<u64, u64>,
    oldest_ts: i64,
    newest_ts: i64,
}

impl LogReader<BufReader<File>> {
    /// Opens `path` for reading as `format`.
    pub fn open(path: &Path, format: Format) -> Result<LogReader<BufReader<File>>> {
        let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
        LogReader::new(BufReader::with_capacity(1 << 20, file), path, format)
    }
}

impl<R: BufRead> LogReader<R> {
    /// Reads `reader` as the contents of `path` (named in errors) in `format`.
    pub fn new(reader: R, path: &Path, format: Format) -> Result<LogReader<R>> {
        format.validate()?;
        Ok(LogReader {
            reader,
            path: path.to_path_buf(),
            format,
            line: 0,
            buf: Vec::new(),
            keys: KeyAssigner::new(),
            rows: 0,
            raw_bytes: 0,
            rows_per_user: HashMap::new(),
            oldest_ts: i64::MAX,
            newest_ts: i64::MIN,
        })
    }

    /// The next row, or `None` at the end of the file.
    pub fn next_record(&mut self) -> Result<Option<Record>> {
        loop {
            self.buf.clear();
            let read =
                self.reader.read_until(b'\n', &mut self.buf).map_err(|e| Error::io("read", &self.path, e))?;
            if read == 0 {
                return Ok(None);
            }
            self.line += 1;
            let text = self.buf.strip_suffix(b"\n").unwrap_or(&self.buf);
            let row = match parse_line(&self.format, &self.path, self.line, text)? {
                Line::Skip => continue,
                Line::Row(row) => row,
            };
            let ts = self.keys.assign(row.user, row.ts).ok_or_else(|| Error::Parse {
                path: self.path.clone(),
                line: self.line,
                message: format!("no free microsecond left after ts {} for user {}", row.ts, row.user),
            })?;
            self.rows += 1;
            self.raw_bytes += KEY_BYTES + row.payload.len() as u64;
            *self.rows_per_user.entry(row.user).or_insert(0) += 1;
            self.oldest_ts = self.oldest_ts.min(ts);
            self.newest_ts = self.newest_ts.max(ts);
            return Ok(Some(Record { line: self.line, user: row.user, ts, payload: row.payload }));
        }
    }

    /// What was read, once the file is done.
    pub fn finish(self) -> LogSummary {
        LogSummary {
            rows: self.rows,
            lines: self.line,
            moved_rows: self.keys.moved(),
            raw_bytes: self.raw_bytes,
            oldest_ts: if self.rows == 0 { 0 } else { self.oldest_ts },
            newest_ts: if self.rows == 0 { 0 } else { self.newest_ts },
            users: UserPicker::new(&self.rows_per_user),
        }
    }
}

/// The tally of a file read to its end.
#[derive(Clone, Debug)]
pub struct LogSummary {
    /// Rows loaded.
    pub rows: u64,
    /// Lines read, empty and header lines included.
    pub lines: u64,
    /// Rows stored at another timestamp than their own (see [`KeyAssigner`]).
    pub moved_rows: u64,
    /// Raw bytes: per row, 16 bytes of key plus its payload.
    pub raw_bytes: u64,
    /// Oldest stored timestamp (0 with no rows).
    pub oldest_ts: i64,
    /// Newest stored timestamp (0 with no rows).
    pub newest_ts: i64,
    /// The users, weighted by their rows.
    pub users: UserPicker,
}

/// Draws a user by picking a row uniformly at random and taking its user: one entry per
/// distinct user (not per row), so it stays small next to the log.
#[derive(Clone, Debug, Default)]
pub struct UserPicker {
    /// Distinct users, ascending.
    users: Vec<u64>,
    /// `ends[i]`: rows of `users[..=i]`.
    ends: Vec<u64>,
}

impl UserPicker {
    /// A picker over users with the given row counts.
    pub fn new(rows_per_user: &HashMap<u64, u64>) -> UserPicker {
        // Sorted, so that the same file and seed draw the same users whatever the hashing.
        let mut counts: Vec<(u64, u64)> = rows_per_user.iter().map(|(&u, &n)| (u, n)).collect();
        counts.sort_unstable();
        let mut total = 0;
        let mut picker = UserPicker { users: Vec::with_capacity(counts.len()), ends: Vec::new() };
        for (user, rows) in counts {
            total += rows;
            picker.users.push(user);
            picker.ends.push(total);
        }
        picker
    }

    /// Distinct users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there is no user to draw.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The user of a row drawn uniformly at random; `None` with no rows.
    pub fn pick(&self, rng: &mut Rng) -> Option<u64> {
        let rows = *self.ends.last()?;
        let row = rng.below(rows);
        let i = self.ends.partition_point(|&end| end <= row);
        self.users.get(i).copied()
    }
}

/// What strata should hold: every loaded event by user, then timestamp.
#[derive(Clone, Debug, Default)]
pub struct Model {
    users: BTreeMap<u64, BTreeMap<i64, Vec<u8>>>,
    events: u64,
}

impl Model {
    /// An empty model.
    pub fn new() -> Model {
        Model::default()
    }

    /// Adds (or replaces) the event at `(user, ts)`.
    pub fn insert(&mut self, user: u64, ts: i64, payload: Vec<u8>) {
        if self.users.entry(user).or_default().insert(ts, payload).is_none() {
            self.events += 1;
        }
    }

    /// Events held.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// The newest `n` events of `user`, newest first.
    pub fn latest(&self, user: u64, n: usize) -> impl Iterator<Item = (i64, &[u8])> + '_ {
        self.users
            .get(&user)
            .into_iter()
            .flat_map(|events| events.iter().rev())
            .take(n)
            .map(|(&ts, p)| (ts, &p[..]))
    }

    /// The events of `user` with `t0 <= ts <= t1`, ascending.
    pub fn range(&self, user: u64, t0: i64, t1: i64) -> impl Iterator<Item = (i64, &[u8])> + '_ {
        let bounds = if t0 <= t1 { Some(t0..=t1) } else { None };
        self.users
            .get(&user)
            .zip(bounds)
            .into_iter()
            .flat_map(|(events, bounds)| events.range(bounds))
            .map(|(&ts, p)| (ts, &p[..]))
    }
}

/// Checks a "latest `n` of `user`" answer: exactly the model's newest `n`, newest first.
pub fn check_latest(model: &Model, user: u64, n: usize, answer: &[Event]) -> Result<()> {
    compare(&format!("latest {n} of user {user}"), user, model.latest(user, n), answer)
}

/// Checks a "`user`'s events in `[t0, t1]`" answer: exactly the model's, ascending.
pub fn check_range(model: &Model, user: u64, t0: i64, t1: i64, answer: &[Event]) -> Result<()> {
    compare(&format!("range [{t0}, {t1}] of user {user}"), user, model.range(user, t0, t1), answer)
}

/// Compares an answer with the expected events, and names the first index that differs.
fn compare<'m>(
    query: &str,
    user: u64,
    expected: impl Iterator<Item = (i64, &'m [u8])>,
    answer: &[Event],
) -> Result<()> {
    let mut count = 0;
    for (i, (ts, payload)) in expected.enumerate() {
        count = i + 1;
        let Some(got) = answer.get(i) else {
            return Err(Error::Mismatch(format!(
                "{query}: index {i}: expected ts {ts} payload {}, but the answer ends after {} events",
                show(payload),
                answer.len()
            )));
        };
        if got.user != user || got.ts != ts || got.payload[..] != *payload {
            return Err(Error::Mismatch(format!(
                "{query}: index {i}: expected user {user} ts {ts} payload {}, got user {} ts {} payload {}",
                show(payload),
                got.user,
                got.ts,
                show(&got.payload)
            )));
        }
    }
    if let Some(extra) = answer.get(count) {
        return Err(Error::Mismatch(format!(
            "{query}: index {count}: the model has {count} events, the answer {} \
             (first extra: user {} ts {})",
            answer.len(),
            extra.user,
            extra.ts
        )));
    }
    Ok(())
}

/// A payload for a message: as text, escaped, cut at 64 bytes.
fn show(payload: &[u8]) -> String {
    const SHOWN: usize = 64;
    let cut = &payload[..payload.len().min(SHOWN)];
    let more = if payload.len() > SHOWN { "..." } else { "" };
    format!("{:?}{more}", String::from_utf8_lossy(cut))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn csv(user_col: usize, ts_col: usize, ts_unit: TsUnit, delimiter: u8, header: bool) -> Format {
        Format::Csv(CsvLayout { user_col, ts_col, ts_unit, delimiter, header })
    }

    fn read_all(format: Format, text: &str) -> Result<(Vec<Record>, LogSummary)> {
        let mut reader = LogReader::new(text.as_bytes(), Path::new("log.txt"), format)?;
        let mut records = Vec::new();
        while let Some(record) = reader.next_record()? {
            records.push(record);
        }
        Ok((records, reader.finish()))
    }

    fn parse_error(result: Result<impl std::fmt::Debug>) -> (u64, String) {
        match result {
            Err(Error::Parse { path, line, message }) => {
                assert_eq!(path, Path::new("log.txt"));
                (line, message)
            }
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    fn row(user: u64, ts: i64, payload: &str) -> Line {
        Line::Row(ParsedRow { user, ts, payload: payload.as_bytes().to_vec() })
    }

    #[test]
    fn movielens_rows_keep_the_other_fields_as_payload() {
        let (records, summary) =
            read_all(Format::Movielens, "196\t242\t3\t881250949\n186\t302\t3\t891717742\tx\r\n\n").unwrap();
        assert_eq!(
            records,
            vec![
                Record { line: 1, user: 196, ts: 881_250_949_000_000, payload: b"242\t3".to_vec() },
                Record { line: 2, user: 186, ts: 891_717_742_000_000, payload: b"302\t3\tx".to_vec() },
            ]
        );
        assert_eq!((summary.rows, summary.lines, summary.moved_rows), (2, 3, 0));
        assert_eq!(summary.raw_bytes, 2 * KEY_BYTES + 5 + 7);
        assert_eq!((summary.oldest_ts, summary.newest_ts), (881_250_949_000_000, 891_717_742_000_000));
        assert_eq!(summary.users.len(), 2);
    }

    #[test]
    fn inter_header_is_skipped_and_float_seconds_accepted() {
        let text = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n\
                    1\t10\t4.0\t881250949.0\n\
                    2\t11\t5.0\t881250949.25\n";
        let (records, summary) = read_all(Format::Movielens, text).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(
            (records[0].line, records[0].ts, &records[0].payload[..]),
            (2, 881_250_949_000_000, &b"10\t4.0"[..])
        );
        assert_eq!(records[1].ts, 881_250_949_250_000);
        assert_eq!(summary.lines, 3);
        // A header is only recognized on line 1: later, the same text is an error.
        let (line, message) = parse_error(read_all(Format::Movielens, &format!("1\t2\t3\t4\n{text}")));
        assert_eq!(line, 2);
        assert!(message.contains("user field \"user_id:token\""), "{message}");
    }

    #[test]
    fn bad_movielens_lines_name_their_line() {
        let cases: [(&[u8], u64, &str); 7] = [
            (b"1\t2\t3\t4\n5\t6\t7\n", 2, "expected at least 4"),
            (b"1\t2\t3\t4\n\n-5\t6\t7\t8\n", 3, "user field \"-5\""),
            (b"1\t2\t3\tsoon\n", 1, "timestamp field \"soon\" is not a number"),
            (b"1\t2\t3\tNaN\n", 1, "not a finite number"),
            (b"1\t2\t3\t1e300\n", 1, "overflows"),
            (b"1\t2\t3\t9223372036854775807\n", 1, "overflows"),
            (b"1\t2\t3\t\xff\n", 1, "is not text"),
        ];
        for (text, want_line, want) in cases {
            let mut reader = LogReader::new(text, Path::new("log.txt"), Format::Movielens).unwrap();
            let result = (|| {
                while reader.next_record()?.is_some() {}
                Ok(())
            })();
            let (line, message) = parse_error(result);
            assert_eq!(line, want_line, "{text:?}: {message}");
            assert!(message.contains(want), "{text:?}: {message}");
        }
        // Bytes that are not UTF-8 in the payload are kept as they are.
        let raw = b"7\t\xff\xfe\t3\t100\n";
        let mut reader = LogReader::new(&raw[..], Path::new("log.txt"), Format::Movielens).unwrap();
        assert_eq!(reader.next_record().unwrap().unwrap().payload, b"\xff\xfe\t3".to_vec());
    }

    #[test]
    fn csv_columns_units_and_header() {
        let path = Path::new("log.txt");
        // Defaults of the CLI: user in column 0, ts in column 2, seconds, comma.
        let format = csv(0, 2, TsUnit::Seconds, b',', false);
        assert_eq!(
            parse_line(&format, path, 1, b"5,apple,100,click").unwrap(),
            row(5, 100_000_000, "apple,click")
        );
        // The user and ts anywhere, in other units; the payload keeps the rest in order.
        let format = csv(3, 0, TsUnit::Millis, b';', false);
        assert_eq!(parse_line(&format, path, 1, b"1500;a;b;42;c").unwrap(), row(42, 1_500_000, "a;b;c"));
        let format = csv(1, 2, TsUnit::Micros, b'|', false);
        assert_eq!(parse_line(&format, path, 1, b"x| 9 |-17").unwrap(), row(9, -17, "x"));
        assert_eq!(parse_line(&format, path, 1, b"x|9|1.6").unwrap(), row(9, 2, "x"));
        // Nothing but the user and ts: an empty payload.
        let format = csv(1, 0, TsUnit::Seconds, b',', false);
        assert_eq!(parse_line(&format, path, 1, b"3,4").unwrap(), row(4, 3_000_000, ""));
        // No quoting: a quoted delimiter splits. After the user and ts columns that is
        // harmless (the pieces are joined back into the payload); before them it shifts the
        // columns.
        let format = csv(1, 0, TsUnit::Seconds, b',', false);
        assert_eq!(parse_line(&format, path, 1, b"7,5,\"a,b\"").unwrap(), row(5, 7_000_000, "\"a,b\""));
        let format = csv(0, 2, TsUnit::Seconds, b',', false);
        assert_eq!(
            parse_line(&format, path, 1, b"1,\"a,b\",7").unwrap_err().to_string(),
            "log.txt:1: timestamp field \"b\\\"\" is not a number"
        );

        // A header is skipped only when asked, and a row on line 1 without it is loaded.
        let text = "userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n";
        let asked = csv(0, 3, TsUnit::Seconds, b',', true);
        let (records, _) = read_all(asked, text).unwrap();
        assert_eq!(
            records,
            vec![Record { line: 2, user: 1, ts: 1_260_759_144_000_000, payload: b"31,2.5".to_vec() }]
        );
        let (line, message) = parse_error(read_all(csv(0, 3, TsUnit::Seconds, b',', false), text));
        assert_eq!(line, 1);
        assert!(message.contains("pass --header"), "{message}");
        let (line, message) = parse_error(read_all(csv(0, 5, TsUnit::Seconds, b',', true), text));
        assert_eq!(line, 2);
        assert!(message.contains("expected at least 6"), "{message}");
        assert!(matches!(csv(2, 2, TsUnit::Seconds, b',', false).validate(), Err(Error::Usage(_))));
        assert!(LogReader::new(&b""[..], path, csv(1, 1, TsUnit::Seconds, b',', false)).is_err());
    }

    #[test]
    fn oversized_payload_is_a_parse_error() {
        let big = "x".repeat(MAX_PAYLOAD_BYTES);
        let (line, message) =
            parse_error(read_all(Format::Movielens, &format!("1\t2\t3\t4\n1\t{big}\t3\t4\n")));
        assert_eq!(line, 2);
        assert!(message.contains("over strata's limit"), "{message}");
    }

    #[test]
    fn same_second_rows_move_one_microsecond_apart_in_file_order() {
        let text =
            "1\t10\t5\t100\n1\t11\t4\t100\n2\t12\t3\t100\n1\t13\t2\t100\n1\t14\t1\t101\n1\t15\t1\t100\n";
        let (records, summary) = read_all(Format::Movielens, text).unwrap();
        let keys: Vec<(u64, i64, &[u8])> = records.iter().map(|r| (r.user, r.ts, &r.payload[..])).collect();
        let s = 100_000_000;
        assert_eq!(
            keys,
            vec![
                (1, s, &b"10\t5"[..]),
                (1, s + 1, b"11\t4"),
                (2, s, b"12\t3"),
                (1, s + 2, b"13\t2"),
                (1, s + 1_000_000, b"14\t1"),
                (1, s + 3, b"15\t1"),
            ]
        );
        assert_eq!(summary.rows, 6);
        assert_eq!(summary.moved_rows, 3);

        // A moved row skips keys the file uses itself, and nothing is ever lost.
        let mut keys = KeyAssigner::new();
        assert_eq!(keys.assign(1, 6), Some(6));
        assert_eq!(keys.assign(1, 5), Some(5));
        assert_eq!(keys.assign(1, 5), Some(7));
        assert_eq!(keys.assign(1, 5), Some(8));
        assert_eq!(keys.assign(1, 7), Some(9));
        assert_eq!(keys.assign(1, i64::MAX), Some(i64::MAX));
        assert_eq!(keys.assign(1, i64::MAX), None);
        assert_eq!(keys.moved(), 3);
    }

    #[test]
    fn picker_follows_row_counts() {
        let counts: HashMap<u64, u64> = [(7, 900), (3, 100)].into_iter().collect();
        let picker = UserPicker::new(&counts);
        let mut rng = Rng::new(1);
        let sevens = (0..10_000).filter(|_| picker.pick(&mut rng) == Some(7)).count();
        assert!((8_700..9_300).contains(&sevens), "{sevens}");
        assert_eq!(UserPicker::default().pick(&mut rng), None);
    }

    fn event(user: u64, ts: i64, payload: &[u8]) -> Event {
        Event { user, ts, payload: Bytes::copy_from_slice(payload) }
    }

    /// The payload of user 1's event at `ts` in [`model`]: one letter, `b` at 10 .. `f` at 50.
    fn letter(ts: i64) -> [u8; 1] {
        [b'a' + u8::try_from(ts / 10).unwrap()]
    }

    fn model() -> Model {
        let mut model = Model::new();
        for ts in (10..=50).step_by(10) {
            model.insert(1, ts, letter(ts).to_vec());
        }
        model.insert(2, 15, b"other".to_vec());
        model
    }

    #[test]
    fn right_answers_pass() {
        let model = model();
        assert_eq!(model.events(), 6);
        let newest: Vec<Event> = [50, 40, 30].iter().map(|&ts| event(1, ts, &letter(ts))).collect();
        check_latest(&model, 1, 3, &newest).unwrap();
        check_latest(&model, 1, 0, &[]).unwrap();
        check_latest(&model, 9, 100, &[]).unwrap();
        let all: Vec<Event> = (10..=50).rev().step_by(10).map(|ts| event(1, ts, &letter(ts))).collect();
        check_latest(&model, 1, 100, &all).unwrap();
        check_range(&model, 1, 20, 40, &[event(1, 20, b"c"), event(1, 30, b"d"), event(1, 40, b"e")])
            .unwrap();
        check_range(&model, 1, 21, 29, &[]).unwrap();
        check_range(&model, 1, 40, 20, &[]).unwrap();
        check_range(&model, 2, i64::MIN, i64::MAX, &[event(2, 15, b"other")]).unwrap();
    }

    #[test]
    fn wrong_answers_are_caught() {
        let model = model();
        let right: Vec<Event> = [50, 40, 30].iter().map(|&ts| event(1, ts, &letter(ts))).collect();
        let mismatch = |result: Result<()>| match result {
            Err(Error::Mismatch(message)) => message,
            other => panic!("expected a mismatch, got {other:?}"),
        };

        let dropped = &right[..2];
        let message = mismatch(check_latest(&model, 1, 3, dropped));
        assert!(
            message.contains("latest 3 of user 1: index 2") && message.contains("ends after 2"),
            "{message}"
        );

        let mut flipped = right.clone();
        let mut payload = flipped[1].payload.to_vec();
        payload[0] ^= 1;
        flipped[1].payload = Bytes::from(payload);
        let message = mismatch(check_latest(&model, 1, 3, &flipped));
        assert!(message.contains("index 1") && message.contains("payload"), "{message}");

        let mut reordered = right.clone();
        reordered.swap(0, 1);
        assert!(mismatch(check_latest(&model, 1, 3, &reordered)).contains("index 0"));

        let mut extra = right.clone();
        extra.push(event(1, 20, b"c"));
        assert!(mismatch(check_latest(&model, 1, 3, &extra))
            .contains("index 3: the model has 3 events, the answer 4"));

        let mut other_user = right.clone();
        other_user[2].user = 2;
        assert!(mismatch(check_latest(&model, 1, 3, &other_user)).contains("got user 2"));

        let mut shifted = right;
        shifted[0].ts += 1;
        assert!(mismatch(check_latest(&model, 1, 3, &shifted)).contains("got user 1 ts 51"));

        // Range answers must be ascending and complete too.
        let ascending = [event(1, 20, b"c"), event(1, 30, b"d")];
        check_range(&model, 1, 20, 30, &ascending).unwrap();
        let descending = [event(1, 30, b"d"), event(1, 20, b"c")];
        assert!(mismatch(check_range(&model, 1, 20, 30, &descending))
            .starts_with("range [20, 30] of user 1: index 0"));
        assert!(mismatch(check_range(&model, 1, 20, 30, &ascending[..1])).contains("index 1"));
        assert!(mismatch(check_range(&model, 1, 21, 29, &ascending)).contains("the model has 0 events"));
    }
}
