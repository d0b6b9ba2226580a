//! The syscall-order lint: checks, operation by operation as the simulated disk sees them
//! (through [`crate::probe::ProbeFs`]), that every file something relies on is synced, and
//! its name made durable by a directory sync, before the thing that relies on it.
//!
//! The rules, each a fact a crash can otherwise break:
//! 1. `rename(from, to)`: every byte of `from` is synced. Otherwise a power loss after the
//!    rename reached the disk can leave a short or empty file under the final name.
//! 2. `rename(_, CURRENT)`: the newest `MANIFEST-*` is synced and its name durable: CURRENT
//!    must never name a manifest a power loss can take away.
//! 3. `sync_data` of a manifest (an edit becoming durable): every table the manifest names
//!    is synced and its name durable.
//! 4. `remove` of a WAL segment or a table (work the manifest made redundant): the durable
//!    view is whole: the CURRENT a power loss keeps names a manifest that loads, and every
//!    table that manifest names survives with all its bytes.
//! 5. The acknowledgement of a write with `sync = true`, and the success of `sync_wal`:
//!    every WAL segment is synced and its name durable.
//! 6. The success of `flush`, `compact` or `close`: the durable view is whole (as in rule 4).
//!
//! "Durable" is what [`SimFs::durable_contents`] says: a power loss keeps the name and
//! every current byte. Rules 4 and 6 look at the durable view rather than the current one
//! because a background flush may be between the rename of CURRENT and its directory sync
//! at that moment: the previous CURRENT, still durable, is what a crash would keep.

use std::path::{Path, PathBuf};

use strata_vfs::{CrashMode, OpKind, SimFs};

use crate::probe::Point;

/// What the caller was told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ack {
    /// A write with `sync = true`, or `sync_wal`, returned `Ok`.
    SyncWrite,
    /// `flush`, `compact` or `close` returned `Ok`.
    Persisted,
}

/// The lint's findings over one run.
#[derive(Debug, Default)]
pub struct Lint {
    dir: PathBuf,
    /// Rule evaluations made.
    pub checks: u64,
    /// Broken rules, each naming the operation index, the rule and the file.
    pub violations: Vec<String>,
}

fn name_of(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn manifest_number(path: &Path) -> Option<u64> {
    name_of(path).strip_prefix("MANIFEST-")?.parse().ok()
}

fn durable(sim: &SimFs, path: &Path) -> bool {
    sim.contents(path).is_some() && sim.durable_contents(path) == sim.contents(path)
}

impl Lint {
    /// A lint of the database in `dir`.
    pub fn new(dir: &Path) -> Lint {
        Lint { dir: dir.to_path_buf(), ..Lint::default() }
    }

    fn require(&mut self, ok: bool, at: &str, rule: u8, what: impl FnOnce() -> String) {
        self.checks += 1;
        if !ok {
            self.violations.push(format!("{at}: rule {rule}: {}", what()));
        }
    }

    /// Every table `manifest` names is durable (rule `rule`).
    fn tables_durable(&mut self, sim: &SimFs, manifest: &Path, at: &str, rule: u8) {
        let Some(number) = manifest_number(manifest) else { return };
        let loaded = match strata::manifest::read_manifest(sim, manifest, number) {
            Ok(Some(loaded)) => loaded,
            Ok(None) => return,
            Err(e) => {
                self.violations.push(format!("{at}: rule {rule}: cannot read {}: {e}", manifest.display()));
                return;
            }
        };
        for number in loaded.state.tables.keys() {
            let table = self.dir.join(format!("{number:06}.sst"));
            self.require(durable(sim, &table), at, rule, || {
                format!("{} names {} which is not durable", name_of(manifest), table.display())
            });
        }
    }

    /// The durable view is whole: a power loss keeps a CURRENT naming a manifest that loads,
    /// and every table it names with every byte it has now.
    fn durable_view_whole(&mut self, sim: &SimFs, at: &str, rule: u8) {
        let image = sim.crash_image(CrashMode::DurableOnly);
        let loaded = match strata::manifest::load(&image, &self.dir) {
            Ok(Some(loaded)) => loaded,
            Ok(None) => return self.violations.push(format!("{at}: rule {rule}: no durable CURRENT")),
            Err(e) => return self.violations.push(format!("{at}: rule {rule}: the durable manifest: {e}")),
        };
        for number in loaded.state.tables.keys() {
            let table = self.dir.join(format!("{number:06}.sst"));
            let whole = image.contents(&table).is_some() && image.contents(&table) == sim.contents(&table);
            self.require(whole, at, rule, || {
                format!(
                    "the durable {} names {}, which a power loss would not keep whole",
                    name_of(&loaded.path),
                    table.display()
                )
            });
        }
    }

    fn wal_durable(&mut self, sim: &SimFs, at: &str, rule: u8) {
        let wal = self.dir.join(strata::WAL_DIR);
        for path in sim.paths().into_iter().filter(|p| p.parent() == Some(&wal)) {
            if name_of(&path).ends_with(".wal") {
                self.require(durable(sim, &path), at, rule, || format!("{} is not durable", path.display()));
            }
        }
    }

    /// Rules 1 to 4, before the operation at `point` runs.
    pub fn before(&mut self, point: &Point<'_>) {
        let sim = point.sim;
        let at = format!("op {} ({} {})", point.index, point.op, point.path.display());
        let name = name_of(point.path);
        match point.op {
            OpKind::Rename => {
                self.require(sim.is_synced(point.path), &at, 1, || {
                    "renamed before its bytes were synced".into()
                });
                if point.to.map(name_of).as_deref() == Some("CURRENT") {
                    let newest =
                        sim.paths().into_iter().filter_map(|p| Some((manifest_number(&p)?, p))).max();
                    if let Some((_, manifest)) = newest {
                        self.require(durable(sim, &manifest), &at, 2, || {
                            format!("CURRENT is switched to {} which is not durable", manifest.display())
                        });
                    }
                }
            }
            OpKind::SyncData if manifest_number(point.path).is_some() => {
                self.tables_durable(sim, point.path, &at, 3);
            }
            OpKind::Remove if name.ends_with(".wal") || name.ends_with(".sst") => {
                self.durable_view_whole(sim, &at, 4);
            }
            _ => {}
        }
    }

    /// Rules 5 and 6, when the caller is told `ack` (`what` names it for the report).
    pub fn acknowledged(&mut self, sim: &SimFs, ack: Ack, what: &str) {
        let at = format!("after {what}");
        match ack {
            Ack::SyncWrite => self.wal_durable(sim, &at, 5),
            Ack::Persisted => self.durable_view_whole(sim, &at, 6),
        }
    }
}
