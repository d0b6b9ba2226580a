//! The planner: a pure function from a snapshot of the partition catalogue to the next
//! piece of compaction work. It does no I/O, reads no clock and holds no lock, so every
//! decision can be replayed from a catalogue (the golden files in `tests/testdata/plan`).
//!
//! Shape of a partition (see docs/compaction.md):
//! - **sequence tables** hold time-ordered data. Sequence tables whose time spans overlap
//!   hold disjoint user ranges (one compaction's outputs, split by size at user
//!   boundaries): a *run*. Runs never overlap in time.
//! - **unsequence tables** hold late events, overwrites and range deletes; they may
//!   overlap anything.
//! - A partition is **hot** while it is among the `cold_after_partitions` newest (counting
//!   back from the newest written to), **cold** afterwards. Its **base** is the largest compressed sequence table with every compressed sequence
//!   table overlapping it in time: the run a previous merge left.
//!
//! - A **group** is a run of `group_partitions` partitions, aligned to a multiple of that
//!   count, that the planner coalesced into one partition: from then on it is planned,
//!   merged and dropped as one partition, numbered by its first. A cold user's events of
//!   a week then lie in one run, so "latest 100" reads one block where it read one per
//!   day. Tables keep the partition they were written with; [`Catalogue::groups`] maps
//!   them to their group, and merge outputs carry the group's number.
//!
//! Priorities, highest first (one plan per call; the engine calls again after each). Busy
//! partitions (another compaction works on them) are never planned; within each rule, hot
//! partitions are visited newest first and the others in ascending order.
//! 1. **Retention**: every partition wholly older than the cutoff is dropped by one edit,
//!    its tables unread: nothing cheaper reclaims space.
//! 2. **Erasure**: a partition holding an erasure that is due is merged whole, so the
//!    erased events and the range delete itself are purged; a deadline outranks economy.
//! 3. **Move**: an unsequence table that overlaps no sequence table (and holds no range
//!    delete, which must meet the older data it hides) joins the sequence chain by an edit
//!    alone, rewriting nothing.
//! 4. **Group**: a cold partition that is in no group founds the group of its aligned
//!    window, by an edit alone (rewriting nothing): its neighbours in the window, hot
//!    ones included, join it. A group is hot while its *last* partition is, so it is
//!    merged whole once, when all of it is cold (rule 7), rather than once per day that
//!    joins; until then rules 5 and 6 keep its tables few. Windows that overlap a group
//!    made under another `group_partitions` are left alone.
//! 5. **Hot partition, unsequence tables**: once `min_fan_in` of them pile up, they are
//!    merged with the sequence tables they overlap (a *cross* merge) if their bytes are at
//!    least 1/8 of those; otherwise, or when that closure exceeds `max_fan_in`, among
//!    themselves: each read would otherwise visit them all.
//! 6. **Hot partition, sequence tiers**: adjacent sequence tables of one size tier are
//!    merged, `min_fan_in` to `max_fan_in` at a time, so a flushed byte is rewritten about
//!    `log_r(target / flush size)` times while the partition fills, not once per flush.
//! 7. **Cold partition**: merged whole into one run once the tables outside its base are
//!    worth it: at least 1/8 of the base's bytes. Rewriting the base for every late
//!    trickle would multiply write amplification; waiting for 1/8 bounds it to about 9
//!    bytes written per late byte. Below that, once `min_fan_in` outside tables pile up,
//!    they are merged among themselves into an unsequence table, so that a read visits
//!    one of them rather than many. A fresh cold partition has no
//!    base (no compressed table), so it is merged at once, even a lone table (to compress
//!    it); a lone compressed sequence table is final. A partition of more than
//!    `max_fan_in` tables merges its outside tables only, the `max_fan_in` lowest-numbered
//!    (never a lone compressed sequence table: it would come out as itself, forever).
//!
//! Why the hot partitions come before the cold ones, newest first: every "latest" read
//! starts in the newest partition, and a cold user's read visits each of its tables, so
//! the flushes piling up there are what readers pay for at once; a cold partition's merge
//! saves space and serves the fewer reads that reach back that far. A cold merge is also
//! the long one (a whole group), and with one compaction thread the hot partitions
//! would wait behind it: on the standard workload, ingest then left the newest window
//! as 43 to 62 tables, and readers met them all through the settle that followed
//! (docs/PERFORMANCE.md, "Hot partitions first"). Cold work is not starved for good: a
//! hot tier merge takes `min_fan_in` flushes to become due again, and the debt that
//! waits counts toward the writers' slowdown.
//!
//! Every merge lists its inputs ascending and says whether it is *bottommost*: every table
//! of the partition left out holds only seqnos above the inputs'.
//!
//! [`plan_full`] is `Db::compact`: every window holding tables grouped (hot ones too: the
//! state the background reaches once they cool), then every partition that is not yet
//! *final* (one settled, compressed run) merged whole, without fan-in bound, newest
//! partition first (where every "latest" read starts). [`debt`]
//! replays the planner on a copy of the catalogue ([`simulate`]) until it has nothing left
//! to do, summing the bytes each merge reads.
//!
//! Degenerate knobs are lifted to the least that terminates: a fan-in of 2, a tier ratio of
//! 2 (a one-table merge of a tier would reproduce itself forever).

use std::collections::{BTreeMap, BTreeSet};

/// One table as the planner sees it (from the manifest and the table's footer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableInfo {
    /// File number.
    pub number: u64,
    /// Time partition it was written to (the planner maps it to its group, if any).
    pub partition: i64,
    /// Sequence (`true`) or unsequence table.
    pub sequence: bool,
    /// File size in bytes.
    pub file_bytes: u64,
    /// Entries of every kind.
    pub entries: u64,
    /// Range deletes among the entries.
    pub range_deletes: u64,
    /// Oldest ts of any entry.
    pub min_ts: i64,
    /// Newest ts of any entry (range-delete ends included).
    pub max_ts: i64,
    /// Lowest seqno.
    pub min_seqno: u64,
    /// Highest seqno (0: a settled table, every seqno zeroed).
    pub max_seqno: u64,
    /// Whether its blocks are compressed with the policy's compression.
    pub compressed: bool,
}

/// Everything the planner decides on: the catalogue at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Catalogue {
    /// Every live table.
    pub tables: Vec<TableInfo>,
    /// Partition width in microseconds.
    pub partition_width: i64,
    /// Seqnos of live snapshots, ascending.
    pub snapshots: Vec<u64>,
    /// Events with a ts below this are expired (retention); `None` without retention.
    pub retention_cutoff: Option<i64>,
    /// The newest partition written to: older partitions are cold.
    pub newest_partition: Option<i64>,
    /// Tables holding an erasure (`delete_user`) whose deadline has passed.
    pub due_erasures: BTreeSet<u64>,
    /// Partitions another compaction is working on.
    pub busy: BTreeSet<i64>,
    /// Groups: first partition -> the partition after the last. Disjoint.
    pub groups: BTreeMap<i64, i64>,
}

impl Catalogue {
    /// The partition `p` is planned as: its group's first partition, or itself.
    pub fn grouped(&self, p: i64) -> i64 {
        group_of(&self.groups, p).map_or(p, |(start, _)| start)
    }

    /// The last partition of (grouped) partition `p`.
    fn last_of(&self, p: i64) -> i64 {
        last_partition(&self.groups, p)
    }

    /// A copy whose tables carry their grouped partition.
    fn normalized(&self) -> Catalogue {
        let mut out = self.clone();
        for table in &mut out.tables {
            table.partition = self.grouped(table.partition);
        }
        out.busy = self.busy.iter().map(|&p| self.grouped(p)).collect();
        out
    }
}

/// The group holding partition `p` as `(first, after the last)`, if any.
pub fn group_of(groups: &BTreeMap<i64, i64>, p: i64) -> Option<(i64, i64)> {
    groups.range(..=p).next_back().filter(|(_, &end)| p < end).map(|(&start, &end)| (start, end))
}

/// The last partition of the group holding `p`, or `p` when it is in none.
pub fn last_partition(groups: &BTreeMap<i64, i64>, p: i64) -> i64 {
    group_of(groups, p).map_or(p, |(_, end)| end.saturating_sub(1))
}

/// A group that partitions `start..end` would overlap, as `(first, after the last)`.
pub fn overlapping_group(groups: &BTreeMap<i64, i64>, start: i64, end: i64) -> Option<(i64, i64)> {
    // Groups are disjoint: only the last one starting before `end` can reach past `start`.
    groups.range(..end).next_back().filter(|(_, &e)| e > start).map(|(&s, &e)| (s, e))
}

/// The knobs of the planner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Outputs are cut at user boundaries once they reach this size.
    pub target_table_bytes: u64,
    /// Most tables one merge reads.
    pub max_fan_in: usize,
    /// Adjacent sequence tables of one tier merged in a partition still being written.
    pub min_fan_in: usize,
    /// Size ratio between tiers: tables of `file_bytes` in `[b * r^i, b * r^(i+1))` share
    /// tier `i`, `b` being `target_table_bytes / r^4`.
    pub tier_ratio: u64,
    /// A partition is *cold* once the newest partition written to is at least this many
    /// partitions past it (default 3; 1: as soon as a newer one is written). Late events
    /// keep arriving for a while after a partition's time is over (the standard workload
    /// backfills up to 48 h behind, two one-day partitions): a partition merged into its
    /// final run before they stop is rewritten again for them.
    pub cold_after_partitions: u32,
    /// Partitions per group (rule 4; default 8: eight days at the default width). 0 or
    /// 1: partitions are never grouped. At most [`MAX_GROUP_PARTITIONS`] is used. A group
    /// is dropped by retention only once its last partition expires, so expired events
    /// (never visible) can stay on disk up to `group_partitions - 1` partitions longer.
    pub group_partitions: u32,
}

/// The largest `group_partitions` the planner uses: a bigger value is lowered to it.
pub const MAX_GROUP_PARTITIONS: u32 = 1024;

impl Default for Policy {
    fn default() -> Self {
        Policy {
            target_table_bytes: 64 << 20,
            max_fan_in: 16,
            min_fan_in: 4,
            tier_ratio: 4,
            cold_after_partitions: 3,
            group_partitions: 8,
        }
    }
}

/// Why a merge runs; stats are kept per kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MergeKind {
    /// Sequence tables of a partition re-clustered by user.
    Sequence,
    /// Unsequence tables merged into the sequence tables they overlap.
    Cross,
    /// A partition merged whole to purge a due erasure.
    Erasure,
    /// A partition merged whole on request (`Db::compact`).
    Full,
}

/// One merge: read `inputs`, apply the rules, write sequence tables of `partition`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Merge {
    /// Why.
    pub kind: MergeKind,
    /// The partition of every input.
    pub partition: i64,
    /// Table numbers, ascending.
    pub inputs: Vec<u64>,
    /// Every table of the partition outside `inputs` holds only seqnos above the inputs'
    /// highest: nothing older than a tombstone of the inputs lies elsewhere, so tombstones
    /// no snapshot needs may go, and with no snapshot the seqnos may be zeroed.
    pub bottommost: bool,
    /// Whether the outputs are sequence tables (`false` only when unsequence tables are
    /// merged among themselves, their output still overlapping sequence tables).
    pub output_sequence: bool,
}

/// The next piece of work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Drop whole expired partitions, their tables unread.
    Drop {
        /// Partitions, ascending.
        partitions: Vec<i64>,
        /// Every table of them, ascending.
        tables: Vec<u64>,
    },
    /// Make an unsequence table a sequence table by an edit alone.
    Move {
        /// The table.
        table: u64,
        /// Its partition.
        partition: i64,
        /// The partition's new watermark if the table ends above the current one.
        watermark: Option<i64>,
    },
    /// Merge tables.
    Merge(Merge),
    /// Coalesce partitions `start..end` into one group, by an edit alone.
    Group {
        /// First partition (the group's number).
        start: i64,
        /// The partition after the last.
        end: i64,
    },
}

/// The next plan for `catalogue` under `policy`, or `None` when nothing is worth doing.
/// See the module doc for the rules, tried in that order.
pub fn plan(catalogue: &Catalogue, policy: &Policy) -> Option<Plan> {
    let knobs = Knobs::new(policy);
    let catalogue = &catalogue.normalized();
    let partitions = by_partition(catalogue);
    let is_hot = |p: i64| {
        catalogue.newest_partition.is_some_and(|newest| {
            i128::from(newest) - i128::from(catalogue.last_of(p))
                < i128::from(policy.cold_after_partitions.max(1))
        })
    };
    drop_expired(catalogue, &partitions)
        .or_else(|| erasure(catalogue, &partitions))
        .or_else(|| movable(&partitions))
        .or_else(|| {
            let mut cold = partitions.keys().copied().filter(|&p| !is_hot(p));
            cold.find_map(|p| new_group(catalogue, p, &knobs))
        })
        .or_else(|| {
            let mut hot = partitions.iter().rev().filter(|(&p, _)| is_hot(p));
            hot.find_map(|(&p, tables)| {
                hot_unsequence(p, tables, &knobs).or_else(|| hot_tiers(p, tables, &knobs))
            })
        })
        .or_else(|| {
            let mut cold = partitions.iter().filter(|(&p, _)| !is_hot(p));
            cold.find_map(|(&p, tables)| cold_merge(p, tables, &knobs))
        })
}

/// For `Db::compact`: one whole-partition merge ([`MergeKind::Full`]) per partition that
/// is not yet a single settled, compressed run, plus the drop of expired partitions first.
///
/// Busy partitions are left out. The merges have no fan-in bound (`policy` is unused): the
/// caller asked for every partition to end as one run, which a bounded merge cannot give a
/// partition of more than `max_fan_in` tables.
pub fn plan_full(catalogue: &Catalogue, policy: &Policy) -> Vec<Plan> {
    let knobs = Knobs::new(policy);
    let mut grouped = catalogue.normalized();
    // Expired partitions go first, unread, as in the background; only then is the rest
    // grouped, so that an expired partition is never merged into a group.
    let partitions = by_partition(&grouped);
    let expired = expired(&grouped, &partitions);
    let mut plans: Vec<Plan> = drop_expired(&grouped, &partitions).into_iter().collect();
    let live: Vec<i64> = partitions.into_keys().filter(|p| !expired.contains(p)).collect();
    for p in live {
        if let Some(plan @ Plan::Group { start, end }) = new_group(&grouped, p, &knobs) {
            grouped.groups.insert(start, end);
            plans.push(plan);
        }
    }
    let catalogue = &grouped.normalized();
    let partitions = by_partition(catalogue);
    let snapshots_live = !catalogue.snapshots.is_empty();
    // Newest first: every "latest" read starts in the newest partition, and most end there,
    // so readers meanwhile get the most from having it settled first. (Ascending, the
    // standard run's readers met the newest days' dozens of flushed tables until the end
    // of the settle, behind the merge of the older, already grouped days.)
    for (&p, tables) in partitions.iter().rev() {
        if !expired.contains(&p) && !is_final(tables, snapshots_live) {
            plans.push(merge(MergeKind::Full, p, tables, true, true));
        }
    }
    plans
}

/// Compaction debt: bytes of the tables the planner would still rewrite if nothing new
/// arrived (every input of every plan it would make, in turn). Writers slow down as it
/// grows. See [`simulate`].
pub fn debt(catalogue: &Catalogue, policy: &Policy) -> u64 {
    simulate(catalogue, policy).iter().fold(0, |sum, (_, bytes)| sum.saturating_add(*bytes))
}

/// Most plans [`simulate`] replays: a guard, since every plan makes progress (see
/// `replay`), far above what a real catalogue needs.
pub const SIMULATE_STEPS_MAX: usize = 10_000;

/// The plans the planner would make in turn if nothing new arrived, each with the bytes it
/// reads (0 for a drop or a move), at most [`SIMULATE_STEPS_MAX`].
///
/// The replay runs on a copy of the catalogue with no busy partition, applying each plan
/// as the engine would: a drop removes its tables, a move marks its table sequence, and a
/// merge replaces its inputs by one compressed table (a fresh number above every existing
/// one) summing their bytes and entries. A bottommost merge purges range deletes, and with
/// no snapshot zeroes the seqnos.
pub fn simulate(catalogue: &Catalogue, policy: &Policy) -> Vec<(Plan, u64)> {
    replay(catalogue, policy).0
}

/// [`simulate`], also returning the catalogue it ends with.
///
/// It terminates: a drop removes tables, a move turns an unsequence table into a sequence
/// one, a group takes a partition that was in none into one, and a merge of two or more
/// inputs lowers the number of tables. A one-input merge is either an erasure (its output
/// holds no due erasure), or a cold partition's (its output is a compressed sequence table:
/// a lone table is then final, and a bounded merge never takes a lone compressed sequence
/// table).
fn replay(catalogue: &Catalogue, policy: &Policy) -> (Vec<(Plan, u64)>, Catalogue) {
    let mut sim = catalogue.clone();
    sim.busy.clear();
    let numbers = sim.tables.iter().map(|t| t.number).chain(sim.due_erasures.iter().copied());
    // Above stale erasure entries too: a fresh table must not inherit one.
    let mut next = numbers.max().map_or(0, |n| n.saturating_add(1));
    let mut steps = Vec::new();
    while steps.len() < SIMULATE_STEPS_MAX {
        let Some(plan) = plan(&sim, policy) else { break };
        let bytes = match &plan {
            Plan::Drop { tables, .. } => {
                sim.tables.retain(|t| tables.binary_search(&t.number).is_err());
                0
            }
            Plan::Move { table, .. } => {
                sim.tables.iter_mut().filter(|t| t.number == *table).for_each(|t| t.sequence = true);
                0
            }
            Plan::Merge(m) => {
                let bytes = apply_merge(&mut sim, m, next);
                next = next.saturating_add(1);
                bytes
            }
            Plan::Group { start, end } => {
                sim.groups.insert(*start, *end);
                0
            }
        };
        steps.push((plan, bytes));
    }
    (steps, sim)
}

/// Replaces the inputs of `m` by one table numbered `number`; returns the bytes read.
fn apply_merge(sim: &mut Catalogue, m: &Merge, number: u64) -> u64 {
    let (inputs, rest): (Vec<TableInfo>, Vec<TableInfo>) =
        std::mem::take(&mut sim.tables).into_iter().partition(|t| m.inputs.binary_search(&t.number).is_ok());
    sim.tables = rest;
    for t in &inputs {
        sim.due_erasures.remove(&t.number);
    }
    let sum = |field: fn(&TableInfo) -> u64| inputs.iter().fold(0u64, |s, t| s.saturating_add(field(t)));
    let file_bytes = sum(|t| t.file_bytes);
    let settled = m.bottommost && sim.snapshots.is_empty();
    sim.tables.push(TableInfo {
        number,
        partition: m.partition,
        sequence: m.output_sequence,
        file_bytes,
        entries: sum(|t| t.entries),
        range_deletes: if m.bottommost { 0 } else { sum(|t| t.range_deletes) },
        min_ts: inputs.iter().map(|t| t.min_ts).min().unwrap_or(0),
        max_ts: inputs.iter().map(|t| t.max_ts).max().unwrap_or(0),
        min_seqno: if settled { 0 } else { inputs.iter().map(|t| t.min_seqno).min().unwrap_or(0) },
        max_seqno: if settled { 0 } else { inputs.iter().map(|t| t.max_seqno).max().unwrap_or(0) },
        compressed: true,
    });
    file_bytes
}

/// The policy, its degenerate values lifted (see the module doc).
struct Knobs {
    target_table_bytes: u64,
    max_fan_in: usize,
    min_fan_in: usize,
    tier_ratio: u64,
    /// `b` of the tiers: `target_table_bytes / tier_ratio^4`, at least 1. Tier `i > 0`
    /// holds `[b * r^i, b * r^(i+1))`; tier 0 everything below `b * r`.
    tier_base: u64,
    /// `group_partitions`, at most [`MAX_GROUP_PARTITIONS`]; below 2, no grouping.
    group_partitions: u32,
}

impl Knobs {
    fn new(policy: &Policy) -> Knobs {
        let tier_ratio = policy.tier_ratio.max(2);
        Knobs {
            target_table_bytes: policy.target_table_bytes,
            max_fan_in: policy.max_fan_in.max(2),
            min_fan_in: policy.min_fan_in.max(2),
            tier_ratio,
            tier_base: (policy.target_table_bytes / tier_ratio.saturating_pow(4)).max(1),
            group_partitions: policy.group_partitions.min(MAX_GROUP_PARTITIONS),
        }
    }

    /// `floor(log_r(file_bytes / base))` (0 below the base), or `None` for a table of the
    /// target size, which tiers never merge: it is as large as a merge output gets.
    fn tier(&self, file_bytes: u64) -> Option<u32> {
        if file_bytes >= self.target_table_bytes {
            return None;
        }
        let mut scaled = file_bytes / self.tier_base;
        let mut tier = 0;
        while scaled >= self.tier_ratio {
            scaled /= self.tier_ratio;
            tier += 1;
        }
        Some(tier)
    }
}

/// The catalogue's tables by partition, each ascending by number, busy partitions left out.
fn by_partition(catalogue: &Catalogue) -> BTreeMap<i64, Vec<&TableInfo>> {
    let mut partitions: BTreeMap<i64, Vec<&TableInfo>> = BTreeMap::new();
    for table in catalogue.tables.iter().filter(|t| !catalogue.busy.contains(&t.partition)) {
        partitions.entry(table.partition).or_default().push(table);
    }
    for tables in partitions.values_mut() {
        tables.sort_unstable_by_key(|t| t.number);
    }
    partitions
}

/// Partitions whose last ts is below the retention cutoff, ascending.
fn expired(catalogue: &Catalogue, partitions: &BTreeMap<i64, Vec<&TableInfo>>) -> Vec<i64> {
    let Some(cutoff) = catalogue.retention_cutoff else { return Vec::new() };
    debug_assert!(catalogue.partition_width > 0, "partition width must be positive");
    let width = i128::from(catalogue.partition_width);
    let last_ts = |p: i64| i128::from(catalogue.last_of(p)) * width + width - 1;
    partitions.keys().copied().filter(|&p| last_ts(p) < i128::from(cutoff)).collect()
}

/// Rule 1: one drop of every expired partition.
fn drop_expired(catalogue: &Catalogue, partitions: &BTreeMap<i64, Vec<&TableInfo>>) -> Option<Plan> {
    let expired = expired(catalogue, partitions);
    if expired.is_empty() {
        return None;
    }
    let mut tables: Vec<u64> =
        expired.iter().filter_map(|p| partitions.get(p)).flatten().map(|t| t.number).collect();
    tables.sort_unstable();
    Some(Plan::Drop { partitions: expired, tables })
}

/// Rule 2: the lowest partition holding a due erasure, merged whole.
fn erasure(catalogue: &Catalogue, partitions: &BTreeMap<i64, Vec<&TableInfo>>) -> Option<Plan> {
    let due = |tables: &&Vec<&TableInfo>| tables.iter().any(|t| catalogue.due_erasures.contains(&t.number));
    let (&p, tables) = partitions.iter().find(|(_, tables)| due(tables))?;
    Some(merge(MergeKind::Erasure, p, tables, true, true))
}

/// Rule 3: the first unsequence table that can join the sequence chain by an edit.
fn movable(partitions: &BTreeMap<i64, Vec<&TableInfo>>) -> Option<Plan> {
    for (&partition, tables) in partitions {
        let sequence: Vec<&TableInfo> = tables.iter().copied().filter(|t| t.sequence).collect();
        let watermark = sequence.iter().map(|t| t.max_ts).max();
        // A range delete must stay where it meets the older events it hides: a merge.
        let mut candidates = tables.iter().filter(|t| !t.sequence && t.range_deletes == 0);
        if let Some(table) = candidates.find(|t| !sequence.iter().any(|s| overlaps(s, t))) {
            let raised = watermark.is_none_or(|mark| table.max_ts > mark);
            return Some(Plan::Move {
                table: table.number,
                partition,
                watermark: raised.then_some(table.max_ts),
            });
        }
    }
    None
}

/// Rule 4: the group founded by partition `p` (in no group yet), unless grouping is off,
/// the window overlaps an existing group, or a partition of it is busy.
fn new_group(catalogue: &Catalogue, p: i64, knobs: &Knobs) -> Option<Plan> {
    let size = i64::from(knobs.group_partitions);
    if size < 2 || group_of(&catalogue.groups, p).is_some() {
        return None;
    }
    let start = p.div_euclid(size).checked_mul(size)?;
    let end = start.checked_add(size)?;
    let overlapping = overlapping_group(&catalogue.groups, start, end).is_some();
    let busy = catalogue.busy.range(start..end).next().is_some();
    (!overlapping && !busy).then_some(Plan::Group { start, end })
}

/// Rule 7: a cold partition merged into one run once enough lies outside its base.
fn cold_merge(partition: i64, tables: &[&TableInfo], knobs: &Knobs) -> Option<Plan> {
    let base = base(tables);
    let outside: Vec<&TableInfo> = tables.iter().copied().filter(|t| !base.contains(&t.number)).collect();
    let base_bytes = total_bytes(tables.iter().copied().filter(|t| base.contains(&t.number)));
    let outside_bytes = total_bytes(outside.iter().copied());
    if outside.is_empty() {
        return None;
    }
    // Waiting for 1/8 of the base's bytes bounds the write amplification of late data to
    // about 9. Below that, `min_fan_in` small tables are merged among themselves: a read
    // then visits one of them, and the base is not rewritten for a trickle.
    if outside_bytes.saturating_mul(8) < base_bytes {
        if outside.len() < knobs.min_fan_in {
            return None;
        }
        let inputs = &outside[..outside.len().min(knobs.max_fan_in)];
        return Some(merge(kind_of(inputs), partition, inputs, is_bottommost(tables, inputs), false));
    }
    if tables.len() <= knobs.max_fan_in {
        return Some(merge(kind_of(tables), partition, tables, true, true));
    }
    let inputs = &outside[..outside.len().min(knobs.max_fan_in)];
    // Merged alone, a compressed table would come out as itself, again and again.
    if let [only] = inputs {
        if only.compressed {
            return None;
        }
    }
    // The output overlaps the base in time and in users, so it is not part of the run: it
    // stays unsequence until the partition is few enough tables to merge whole.
    Some(merge(kind_of(inputs), partition, inputs, is_bottommost(tables, inputs), false))
}

/// Rule 5: the hot partition's unsequence tables, merged once `min_fan_in` pile up.
fn hot_unsequence(partition: i64, tables: &[&TableInfo], knobs: &Knobs) -> Option<Plan> {
    let unsequence: Vec<&TableInfo> = tables.iter().copied().filter(|t| !t.sequence).collect();
    if unsequence.len() < knobs.min_fan_in {
        return None;
    }
    // The sequence tables the unsequence ones overlap, and those the growing span reaches:
    // the output, a sequence table, must not overlap a sequence table left out.
    let mut min_ts = unsequence.iter().map(|t| t.min_ts).min()?;
    let mut max_ts = unsequence.iter().map(|t| t.max_ts).max()?;
    let sequence: Vec<&TableInfo> = tables.iter().copied().filter(|t| t.sequence).collect();
    let mut reached = vec![false; sequence.len()];
    let mut grown = true;
    while grown {
        grown = false;
        for (t, reached) in sequence.iter().zip(reached.iter_mut()) {
            if !*reached && t.min_ts <= max_ts && min_ts <= t.max_ts {
                (*reached, grown) = (true, true);
                (min_ts, max_ts) = (min_ts.min(t.min_ts), max_ts.max(t.max_ts));
            }
        }
    }
    let closure = sequence.iter().zip(&reached).filter(|(_, reached)| **reached).map(|(t, _)| *t);
    // Folding late data into the sequence tables rewrites them: worth it once the late
    // bytes are 1/8 of theirs, as for a cold partition's base.
    let worth = total_bytes(unsequence.iter().copied()).saturating_mul(8) >= total_bytes(closure.clone());
    if worth && unsequence.len() + closure.clone().count() <= knobs.max_fan_in {
        let inputs: Vec<&TableInfo> = unsequence.into_iter().chain(closure).collect();
        let bottommost = is_bottommost(tables, &inputs);
        return Some(merge(MergeKind::Cross, partition, &inputs, bottommost, true));
    }
    // Too small to be worth a rewrite of what it overlaps, or too wide to merge at once:
    // fewer, larger unsequence tables still make reads cheaper, and their output still
    // overlaps sequence tables, so it stays unsequence.
    let inputs = &unsequence[..unsequence.len().min(knobs.max_fan_in)];
    Some(merge(MergeKind::Cross, partition, inputs, is_bottommost(tables, inputs), false))
}

/// Rule 6: the first window (in time order) of `min_fan_in` or more adjacent sequence
/// tables of one tier, at most `max_fan_in` of them merged.
fn hot_tiers(partition: i64, tables: &[&TableInfo], knobs: &Knobs) -> Option<Plan> {
    let mut sequence: Vec<&TableInfo> = tables.iter().copied().filter(|t| t.sequence).collect();
    sequence.sort_unstable_by_key(|t| (t.min_ts, t.number));
    let same_tier = |a: &&TableInfo, b: &&TableInfo| knobs.tier(a.file_bytes) == knobs.tier(b.file_bytes);
    let window = sequence.chunk_by(same_tier).find(|window| {
        window.len() >= knobs.min_fan_in && window.first().is_some_and(|t| knobs.tier(t.file_bytes).is_some())
    })?;
    let inputs = &window[..window.len().min(knobs.max_fan_in)];
    Some(merge(MergeKind::Sequence, partition, inputs, is_bottommost(tables, inputs), true))
}

/// Whether a partition of `tables` is one settled, compressed run (its base, as rule 4
/// defines it): a full merge would rewrite it as it is. With a live snapshot the seqnos
/// cannot be zeroed, so they do not count.
fn is_final(tables: &[&TableInfo], snapshots_live: bool) -> bool {
    let base = base(tables);
    tables.iter().all(|t| t.sequence && t.compressed && base.contains(&t.number))
        && (snapshots_live || tables.iter().all(|t| t.max_seqno == 0))
}

/// The base of a partition: the largest compressed sequence table (the lowest number on a
/// tie) and every compressed sequence table overlapping it in time.
fn base(tables: &[&TableInfo]) -> BTreeSet<u64> {
    let run = || tables.iter().copied().filter(|t| t.sequence && t.compressed);
    let largest = run().max_by(|a, b| a.file_bytes.cmp(&b.file_bytes).then(b.number.cmp(&a.number)));
    match largest {
        Some(largest) => run().filter(|t| overlaps(t, largest)).map(|t| t.number).collect(),
        None => BTreeSet::new(),
    }
}

/// Every table of the partition outside `inputs` holds only seqnos above the inputs'.
fn is_bottommost(tables: &[&TableInfo], inputs: &[&TableInfo]) -> bool {
    let newest = inputs.iter().map(|t| t.max_seqno).max().unwrap_or(0);
    let numbers: BTreeSet<u64> = inputs.iter().map(|t| t.number).collect();
    tables.iter().filter(|t| !numbers.contains(&t.number)).all(|t| t.min_seqno > newest)
}

/// Cross when an unsequence table is among the inputs.
fn kind_of(inputs: &[&TableInfo]) -> MergeKind {
    if inputs.iter().all(|t| t.sequence) {
        MergeKind::Sequence
    } else {
        MergeKind::Cross
    }
}

fn merge(
    kind: MergeKind,
    partition: i64,
    inputs: &[&TableInfo],
    bottommost: bool,
    output_sequence: bool,
) -> Plan {
    let mut numbers: Vec<u64> = inputs.iter().map(|t| t.number).collect();
    numbers.sort_unstable();
    debug_assert!(inputs.iter().all(|t| t.partition == partition), "inputs span partitions");
    Plan::Merge(Merge { kind, partition, inputs: numbers, bottommost, output_sequence })
}

fn overlaps(a: &TableInfo, b: &TableInfo) -> bool {
    a.min_ts <= b.max_ts && b.min_ts <= a.max_ts
}

fn total_bytes<'a>(tables: impl Iterator<Item = &'a TableInfo>) -> u64 {
    tables.fold(0, |sum, t| sum.saturating_add(t.file_bytes))
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    fn table(number: u64, partition: i64, sequence: bool, file_bytes: u64, ts: (i64, i64)) -> TableInfo {
        TableInfo {
            number,
            partition,
            sequence,
            file_bytes,
            entries: file_bytes,
            range_deletes: 0,
            min_ts: ts.0,
            max_ts: ts.1,
            min_seqno: number,
            max_seqno: number,
            compressed: false,
        }
    }

    /// The replay of `catalogue` ends because the planner has nothing left, not at the cap.
    fn assert_settles(name: &str, catalogue: &Catalogue, policy: &Policy) {
        let (steps, end) = replay(catalogue, policy);
        assert!(steps.len() < SIMULATE_STEPS_MAX, "{name}: no end after {} plans", steps.len());
        assert_eq!(plan(&end, policy), None, "{name}: stopped with work left");
        let bytes: u64 = steps.iter().map(|(_, bytes)| bytes).sum();
        assert_eq!(debt(catalogue, policy), bytes, "{name}");
    }

    fn degenerate_policies() -> Vec<Policy> {
        vec![
            Policy::default(),
            Policy {
                target_table_bytes: 0,
                max_fan_in: 0,
                min_fan_in: 0,
                tier_ratio: 0,
                cold_after_partitions: 0,
                group_partitions: 0,
            },
            Policy {
                target_table_bytes: 1,
                max_fan_in: 1,
                min_fan_in: 1,
                tier_ratio: 1,
                cold_after_partitions: 1,
                group_partitions: 1,
            },
            Policy {
                target_table_bytes: u64::MAX,
                max_fan_in: 2,
                min_fan_in: 9,
                tier_ratio: u64::MAX,
                cold_after_partitions: u32::MAX,
                group_partitions: u32::MAX,
            },
            Policy {
                target_table_bytes: 1000,
                max_fan_in: usize::MAX,
                min_fan_in: 2,
                tier_ratio: 2,
                cold_after_partitions: 2,
                group_partitions: 3,
            },
        ]
    }

    #[test]
    fn debt_terminates_on_many_tiny_tables() {
        let tables = (1..=2000).map(|n| table(n, 0, true, 1, (n as i64, n as i64))).collect();
        let catalogue =
            Catalogue { tables, partition_width: 10_000, newest_partition: Some(0), ..Catalogue::default() };
        for policy in degenerate_policies() {
            assert_settles("tiny hot", &catalogue, &policy);
            let cold = Catalogue { newest_partition: None, ..catalogue.clone() };
            assert_settles("tiny cold", &cold, &policy);
        }
    }

    #[test]
    fn debt_terminates_on_unsequence_tables_under_snapshots() {
        // Every table overlaps every other and holds a range delete: none can move.
        let tables = (1..=300)
            .map(|n| TableInfo { range_deletes: 1, ..table(n, (n % 3) as i64, false, n * 10, (0, 0)) })
            .map(|t| TableInfo { min_ts: t.partition * 100, max_ts: t.partition * 100 + 99, ..t })
            .collect();
        let catalogue = Catalogue {
            tables,
            partition_width: 100,
            snapshots: vec![5, 9],
            newest_partition: Some(2),
            due_erasures: [7, 100_000].into_iter().collect(),
            busy: [1].into_iter().collect(),
            ..Catalogue::default()
        };
        for policy in degenerate_policies() {
            assert_settles("unsequence", &catalogue, &policy);
        }
    }

    #[test]
    fn debt_terminates_with_a_lone_compressed_table_outside_a_wide_base() {
        // A cold partition wider than the fan-in: merging its one outside table alone would
        // give the same table back, forever.
        // Base: 100M + 19 * 1M; outside: 15M, above 1/8 of it.
        let size = |n| if n == 1 { 100_000_000 } else { 1_000_000 };
        let run = (1..=20).map(|n| TableInfo { compressed: true, ..table(n, 0, true, size(n), (0, 50)) });
        let outside = TableInfo { compressed: true, ..table(21, 0, true, 15_000_000, (60, 99)) };
        let catalogue = Catalogue {
            tables: run.chain([outside]).collect(),
            partition_width: 100,
            ..Catalogue::default()
        };
        let policy = Policy::default();
        // Grouped first (an edit), then nothing.
        assert_eq!(plan(&catalogue, &policy), Some(Plan::Group { start: 0, end: 8 }));
        let grouped = Catalogue { groups: [(0, 8)].into_iter().collect(), ..catalogue.clone() };
        assert_eq!(plan(&grouped, &policy), None);
        assert_settles("wide base", &catalogue, &policy);
    }

    /// A seeded xorshift: reproducible catalogues without a dependency.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n.max(1)
        }
    }

    #[test]
    fn debt_terminates_on_seeded_catalogues() {
        for seed in 1..=300u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let width = 1 + rng.below(1000) as i64;
            let tables = (1..=rng.below(120))
                .map(|number| {
                    let partition = rng.below(4) as i64 - 1;
                    let lo = partition * width + rng.below(width as u64) as i64;
                    let hi = lo + rng.below((partition * width + width - lo) as u64) as i64;
                    let seqno = rng.below(1000);
                    TableInfo {
                        number: number * (1 + rng.below(3)),
                        partition,
                        sequence: rng.below(2) == 0,
                        file_bytes: 1 << rng.below(30),
                        entries: rng.below(1 << 20),
                        range_deletes: rng.below(3),
                        min_ts: lo,
                        max_ts: hi,
                        min_seqno: seqno,
                        max_seqno: seqno + rng.below(100),
                        compressed: rng.below(2) == 0,
                    }
                })
                .collect::<Vec<_>>();
            let mut numbers = BTreeSet::new();
            let tables = tables.into_iter().filter(|t| numbers.insert(t.number)).collect();
            let catalogue = Catalogue {
                tables,
                partition_width: width,
                snapshots: if rng.below(2) == 0 { vec![] } else { vec![rng.below(1000)] },
                retention_cutoff: (rng.below(3) == 0).then(|| rng.below(width as u64 * 2) as i64 - width),
                newest_partition: (rng.below(4) != 0).then(|| rng.below(4) as i64 - 1),
                due_erasures: (0..rng.below(3)).map(|_| rng.below(200)).collect(),
                busy: (0..rng.below(2)).map(|_| rng.below(4) as i64 - 1).collect(),
                // At most one, so that groups never overlap.
                groups: (rng.below(3) == 0).then(|| (rng.below(3) as i64 - 2, 2)).into_iter().collect(),
            };
            let policy = Policy {
                target_table_bytes: 1 << rng.below(32),
                max_fan_in: rng.below(20) as usize,
                min_fan_in: rng.below(8) as usize,
                tier_ratio: rng.below(10),
                cold_after_partitions: rng.below(4) as u32,
                group_partitions: rng.below(5) as u32,
            };
            assert_settles(&format!("seed {seed}"), &catalogue, &policy);
        }
    }
}
