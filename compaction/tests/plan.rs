//! Golden tests of the compaction planner (`strata_compaction::plan`): each file under
//! `tests/testdata/plan` states catalogues and the plans they must give. To regenerate the
//! expected outputs after a deliberate change, run with `REWRITE=1` (and `RUN=<file>` for
//! one file), then read every changed line against the rules in `compaction/src/plan.rs`.
//!
//! Commands (arguments in `key=value` form; lists in parentheses: `snapshots=(5,9)`):
//!
//! - `policy [target=SIZE] [max-fan-in=N] [min-fan-in=N] [ratio=N] [cold-after=N]
//!   [group=N]`: the policy for the rest of the file, each knob not given from
//!   [`default_policy`] (`Policy::default()` but a decimal target, 64M = 64,000,000, for
//!   round tier bounds: 1M, 4M, 16M; `cold-after=1`, only the newest partition hot; and
//!   `group=1`, no grouping, unless a file says otherwise); prints `ok`. A file starts
//!   with the default policy.
//! - `catalogue [width=N] [newest=P] [snapshots=(S,..)] [cutoff=TS] [due=(T,..)]
//!   [busy=(P,..)] [groups=(FIRST..END,..)]`: the catalogue for the rest of the file (width
//!   defaults to 100; no `newest` means every partition is cold), one table per input line:
//!
//!   ```text
//!   t7 p=0 seq 1M 1000e ts=0..49 s=1..100 compressed rd=2
//!   ```
//!
//!   `t<number>`, `p=<partition>`, `seq` or `unseq`, and the file size are required; sizes
//!   take K, M or G suffixes, decimal (1K = 1000 bytes) so sums read easily. Optional:
//!   `<n>e` entries (0), `ts=<min>..<max>` (the partition's whole span), `s=<min>..<max>`
//!   seqnos (0..0, settled), `rd=<n>` range deletes (0), `compressed` (uncompressed).
//!   Prints `ok`. Text after `#` on a line is a comment.
//! - `plan`: the next plan, on one line, or `none`:
//!   - `drop partitions=0,1 tables=1,2,3`
//!   - `move t=4 p=2 watermark=250` (or `watermark=unchanged`)
//!   - `merge <sequence|cross|erasure|full> p=0 inputs=1,2 <bottommost|not-bottommost>
//!     output=<seq|unseq>`
//!   - `group p=0..8`
//! - `plan-full`: `plan_full`'s plans, one a line, or `none`.
//! - `debt`: the planner's replay (`plan::simulate`), one plan a line, merges followed by
//!   the bytes they read, then `debt=<bytes>`.
//!
//! Every plan printed is also checked against the catalogue: its tables exist in its
//! partitions (through the groups, those of earlier `plan-full` plans included), are listed
//! ascending, and no partition is busy.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::cast_possible_truncation)]

use std::collections::BTreeSet;
use std::fmt::Write as _;

use datadriven::TestCase;
use strata_compaction::plan::{self, Catalogue, MergeKind, Plan, Policy, TableInfo};

#[test]
fn plan_golden() {
    datadriven::walk("tests/testdata/plan", |file| {
        let mut state = State { catalogue: Catalogue::default(), policy: default_policy() };
        file.run(|case| state.run(case));
    });
}

/// `Policy::default()` with a decimal target (64M = 64,000,000, not 64 MiB), so that the
/// tiers (ratio 4, base = target / 4^4 = 250K) end at round sizes: 1M, 4M, 16M, 64M; and
/// with only the newest partition hot (`cold-after=1`), which keeps the catalogues short;
/// and without grouping (`group=1`), which only `testdata/plan/group` turns on.
fn default_policy() -> Policy {
    Policy {
        target_table_bytes: 64_000_000,
        cold_after_partitions: 1,
        group_partitions: 1,
        ..Policy::default()
    }
}

struct State {
    catalogue: Catalogue,
    policy: Policy,
}

impl State {
    fn run(&mut self, case: &mut TestCase) -> Result<String, String> {
        let out = match case.directive.as_str() {
            "policy" => self.set_policy(case),
            "catalogue" => self.set_catalogue(case),
            "plan" => {
                let plan = plan::plan(&self.catalogue, &self.policy);
                plan.iter().try_for_each(|p| check(&self.catalogue, p))?;
                Ok(plan.as_ref().map_or_else(|| "none".to_string(), show))
            }
            "plan-full" => {
                let plans = plan::plan_full(&self.catalogue, &self.policy);
                let mut grouped = self.catalogue.clone();
                for plan in &plans {
                    check(&grouped, plan)?;
                    if let Plan::Group { start, end } = plan {
                        grouped.groups.insert(*start, *end);
                    }
                }
                Ok(if plans.is_empty() { "none".to_string() } else { lines(plans.iter().map(show)) })
            }
            "debt" => self.debt(),
            other => Err(format!("unknown command {other:?}")),
        }?;
        if !case.args.is_empty() {
            return Err(format!("unused arguments: {:?}", case.args.keys().collect::<Vec<_>>()));
        }
        Ok(out + "\n")
    }

    fn set_policy(&mut self, case: &mut TestCase) -> Result<String, String> {
        let mut policy = default_policy();
        if let Some(target) = case.try_take_arg::<String>("target").map_err(|e| e.to_string())? {
            policy.target_table_bytes = size(&target)?;
        }
        policy.max_fan_in = take(case, "max-fan-in")?.unwrap_or(policy.max_fan_in);
        policy.min_fan_in = take(case, "min-fan-in")?.unwrap_or(policy.min_fan_in);
        policy.tier_ratio = take(case, "ratio")?.unwrap_or(policy.tier_ratio);
        policy.cold_after_partitions = take(case, "cold-after")?.unwrap_or(policy.cold_after_partitions);
        policy.group_partitions = take(case, "group")?.unwrap_or(policy.group_partitions);
        self.policy = policy;
        Ok("ok".to_string())
    }

    fn set_catalogue(&mut self, case: &mut TestCase) -> Result<String, String> {
        let mut catalogue = Catalogue {
            partition_width: take(case, "width")?.unwrap_or(100),
            newest_partition: take(case, "newest")?,
            retention_cutoff: take(case, "cutoff")?,
            snapshots: take_list(case, "snapshots")?,
            due_erasures: take_list(case, "due")?.into_iter().collect(),
            busy: take_list(case, "busy")?.into_iter().collect(),
            groups: take_list::<String>(case, "groups")?
                .iter()
                .map(|g| range(g))
                .collect::<Result<_, _>>()?,
            tables: Vec::new(),
        };
        let mut numbers = BTreeSet::new();
        for line in case.input.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let table = parse_table(line, catalogue.partition_width).map_err(|e| format!("{line:?}: {e}"))?;
            if !numbers.insert(table.number) {
                return Err(format!("table t{} listed twice", table.number));
            }
            catalogue.tables.push(table);
        }
        self.catalogue = catalogue;
        Ok("ok".to_string())
    }

    fn debt(&self) -> Result<String, String> {
        let steps = plan::simulate(&self.catalogue, &self.policy);
        let mut out = String::new();
        let mut total = 0u64;
        for (plan, bytes) in &steps {
            out.push_str(&show(plan));
            if matches!(plan, Plan::Merge(_)) {
                write!(out, " bytes={bytes}").unwrap();
            }
            out.push('\n');
            total += bytes;
        }
        let debt = plan::debt(&self.catalogue, &self.policy);
        if debt != total {
            return Err(format!("debt() = {debt}, but the replay's merges read {total}"));
        }
        write!(out, "debt={debt}").unwrap();
        Ok(out)
    }
}

fn take<T: std::str::FromStr>(case: &mut TestCase, arg: &str) -> Result<Option<T>, String>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    case.try_take_arg(arg).map_err(|e| e.to_string())
}

fn take_list<T: std::str::FromStr>(case: &mut TestCase, arg: &str) -> Result<Vec<T>, String>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    Ok(case.try_take_args(arg).map_err(|e| e.to_string())?.unwrap_or_default())
}

/// One table line; see the module doc.
fn parse_table(line: &str, width: i64) -> Result<TableInfo, String> {
    let mut words = line.split_whitespace();
    let name = words.next().and_then(|w| w.strip_prefix('t')).ok_or("expected t<number> first")?;
    let mut table = TableInfo {
        number: number(name)?,
        partition: 0,
        sequence: false,
        file_bytes: 0,
        entries: 0,
        range_deletes: 0,
        min_ts: 0,
        max_ts: 0,
        min_seqno: 0,
        max_seqno: 0,
        compressed: false,
    };
    let (mut partition, mut kind, mut bytes, mut ts) = (None, None, None, None);
    for word in words {
        let bad = |e: String| format!("{word:?}: {e}");
        match word.split_once('=') {
            Some(("p", v)) => partition = Some(number::<i64>(v).map_err(bad)?),
            Some(("ts", v)) => ts = Some(range(v).map_err(bad)?),
            Some(("s", v)) => (table.min_seqno, table.max_seqno) = range(v).map_err(bad)?,
            Some(("rd", v)) => table.range_deletes = number(v).map_err(bad)?,
            Some(_) => return Err(bad("unknown key".to_string())),
            None if word == "seq" || word == "unseq" => kind = Some(word == "seq"),
            None if word == "compressed" => table.compressed = true,
            None => match word.strip_suffix('e') {
                Some(n) => table.entries = number(n).map_err(bad)?,
                None => bytes = Some(size(word).map_err(bad)?),
            },
        }
    }
    table.partition = partition.ok_or("missing p=<partition>")?;
    table.sequence = kind.ok_or("missing seq or unseq")?;
    table.file_bytes = bytes.ok_or("missing the size")?;
    let first = i128::from(table.partition) * i128::from(width);
    let last = first + i128::from(width) - 1;
    let (min_ts, max_ts) = ts.unwrap_or((first as i64, last as i64));
    (table.min_ts, table.max_ts) = (min_ts, max_ts);
    if min_ts > max_ts || table.min_seqno > table.max_seqno {
        return Err("a range ends before it starts".to_string());
    }
    if i128::from(min_ts) < first || i128::from(max_ts) > last {
        return Err(format!("ts outside partition {}", table.partition));
    }
    Ok(table)
}

fn range<T: std::str::FromStr>(text: &str) -> Result<(T, T), String> {
    let (lo, hi) = text.split_once("..").ok_or("expected <min>..<max>")?;
    Ok((number(lo)?, number(hi)?))
}

fn number<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    text.parse().map_err(|_| format!("bad number {text:?}"))
}

/// `1500`, `10K`, `1M`, `2G`: decimal multiples.
fn size(text: &str) -> Result<u64, String> {
    let (digits, unit) = match text.char_indices().last() {
        Some((i, 'K')) => (&text[..i], 1_000),
        Some((i, 'M')) => (&text[..i], 1_000_000),
        Some((i, 'G')) => (&text[..i], 1_000_000_000),
        _ => (text, 1),
    };
    digits.parse::<u64>().map(|n| n * unit).map_err(|_| format!("bad size {text:?}"))
}

fn show(plan: &Plan) -> String {
    match plan {
        Plan::Drop { partitions, tables } => {
            format!("drop partitions={} tables={}", join(partitions), join(tables))
        }
        Plan::Move { table, partition, watermark } => {
            let watermark = watermark.map_or_else(|| "unchanged".to_string(), |w| w.to_string());
            format!("move t={table} p={partition} watermark={watermark}")
        }
        Plan::Merge(m) => {
            let kind = match m.kind {
                MergeKind::Sequence => "sequence",
                MergeKind::Cross => "cross",
                MergeKind::Erasure => "erasure",
                MergeKind::Full => "full",
            };
            format!(
                "merge {kind} p={} inputs={} {} output={}",
                m.partition,
                join(&m.inputs),
                if m.bottommost { "bottommost" } else { "not-bottommost" },
                if m.output_sequence { "seq" } else { "unseq" },
            )
        }
        Plan::Group { start, end } => format!("group p={start}..{end}"),
    }
}

/// A plan's tables exist in its partitions, ascending, and none of them is busy.
fn check(catalogue: &Catalogue, plan: &Plan) -> Result<(), String> {
    let (partitions, tables): (Vec<i64>, &[u64]) = match plan {
        Plan::Drop { partitions, tables } => (partitions.clone(), tables),
        Plan::Move { table, partition, .. } => (vec![*partition], std::slice::from_ref(table)),
        Plan::Merge(m) => (vec![m.partition], &m.inputs),
        Plan::Group { start, end } => {
            let overlaps = catalogue.groups.iter().any(|(&s, &e)| s < *end && *start < e);
            let busy = catalogue.busy.iter().any(|p| (*start..*end).contains(p));
            return if start >= end || overlaps || busy {
                Err(format!("{}: empty, overlapping a group or busy", show(plan)))
            } else {
                Ok(())
            };
        }
    };
    let fail = |why: &str| Err(format!("{}: {why}", show(plan)));
    if tables.is_empty() || !tables.windows(2).all(|w| w[0] < w[1]) {
        return fail("tables not ascending");
    }
    if !partitions.windows(2).all(|w| w[0] < w[1]) || partitions.iter().any(|p| catalogue.busy.contains(p)) {
        return fail("partitions not ascending or busy");
    }
    for number in tables {
        match catalogue.tables.iter().find(|t| t.number == *number) {
            Some(t) if partitions.contains(&catalogue.grouped(t.partition)) => {}
            _ => return fail(&format!("t{number} is not a table of the partitions")),
        }
    }
    Ok(())
}

fn join<T: ToString>(items: &[T]) -> String {
    items.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}

fn lines(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join("\n")
}
