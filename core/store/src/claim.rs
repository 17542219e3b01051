//! Claims: which runner runs which cells of a run folder. One scheme for whole runs and shards:
//! any two runners whose cell sets overlap exclude each other, and runners with disjoint cell
//! sets (the shards of one `--shard i/N` split) share the folder.
//!
//! Each runner registers `claims/<host>-<pid>-<n>.json` (`{"pid","hostname","started","what",
//! "cells"}`, `cells` as half-open ranges of grid positions). Registration reads every other
//! claim and writes its own while holding `run.lock` ([`crate::lock`]) for a moment, so of two
//! runners starting at once the second sees the first. A claim whose process is gone (same
//! host, no such pid, or older than the last boot) is stale and removed; claims of other hosts
//! are respected (delete the file by hand if that run is dead). The claim file is removed when
//! the [`Claim`] is dropped.
//!
//! While registering, the runner removes leftover temporary files of crashed writers in the
//! folders of its own cells only, and in the run folder itself only when no other runner holds a
//! claim: a live runner's cells are never touched.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::atomic::{remove_temp_files, write_atomic};
use crate::error::{ClaimConflict, Result, StoreError};
use crate::lock::{is_stale, LockInfo};
use crate::machine::{hostname, now_rfc3339};
use crate::run::{RunDir, CELLS};

/// The folder of claim files inside a run folder.
pub const CLAIMS: &str = "claims";

/// The content of a claim file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimInfo {
    pub pid: u32,
    pub hostname: String,
    /// RFC 3339 UTC.
    pub started: String,
    /// What the runner runs: `whole grid`, `shard 0/2`, ...
    pub what: String,
    /// Grid positions of its cells, as sorted, disjoint half-open ranges `[start, end)`.
    pub cells: Vec<[usize; 2]>,
    /// The Slurm array task (`<array job>_<task>`) the runner ran as, if any. Slurm runs one
    /// instance of a task at a time, so a requeued task takes over its own earlier claim, also
    /// one left on another node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm_task: Option<String>,
}

/// `<SLURM_ARRAY_JOB_ID>_<SLURM_ARRAY_TASK_ID>` of this process, when both are set.
pub fn slurm_task_from(get: impl Fn(&str) -> Option<String>) -> Option<String> {
    let job = get("SLURM_ARRAY_JOB_ID").filter(|v| !v.trim().is_empty())?;
    let task = get("SLURM_ARRAY_TASK_ID").filter(|v| !v.trim().is_empty())?;
    Some(format!("{}_{}", job.trim(), task.trim()))
}

impl ClaimInfo {
    fn holder(&self) -> LockInfo {
        LockInfo { pid: self.pid, hostname: self.hostname.clone(), started: self.started.clone() }
    }

    /// Is the runner that wrote this claim known to be gone (a process of this host that no
    /// longer exists)? Claims of other hosts are never known to be gone.
    pub fn is_stale(&self) -> bool {
        let me = LockInfo { pid: std::process::id(), hostname: hostname(), started: now_rfc3339() };
        is_stale(&self.holder(), &me)
    }
}

/// Holds a claim until dropped.
#[derive(Debug)]
pub struct Claim {
    path: PathBuf,
    info: ClaimInfo,
}

impl Claim {
    pub fn info(&self) -> &ClaimInfo {
        &self.info
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_file(&self.path) {
            if e.kind() != ErrorKind::NotFound {
                tracing::warn!(path = %self.path.display(), error = %e, "could not remove the claim file");
            }
        }
    }
}

/// How long a runner waits for another one to finish registering (it holds `run.lock` for a
/// moment only).
const REGISTER_WAIT: Duration = Duration::from_secs(30);

impl RunDir {
    /// Claims the cells `cells` (grid position and id) for this process, described by `what`
    /// (`whole grid`, `shard 0/2`); see the module docs. Fails with [`StoreError::Claimed`] when
    /// a live runner holds one of them.
    pub fn claim(&self, what: &str, cells: &[(usize, &str)]) -> Result<Claim> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let folder = self.path().join(CLAIMS);
        fs::create_dir_all(&folder).map_err(StoreError::io("create folder", &folder))?;
        let mut positions: Vec<usize> = cells.iter().map(|&(i, _)| i).collect();
        positions.sort_unstable();
        positions.dedup();
        let me = ClaimInfo {
            pid: std::process::id(),
            hostname: hostname(),
            started: now_rfc3339(),
            what: what.to_owned(),
            cells: ranges(&positions),
            slurm_task: slurm_task_from(|k| std::env::var(k).ok()),
        };
        let host: String =
            me.hostname.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
        let path = folder.join(format!("{host}-{}-{}.json", me.pid, COUNTER.fetch_add(1, Ordering::Relaxed)));

        let _table = self.lock_waiting()?;
        let mut others = 0;
        for (other_path, other) in read_claims(&folder)? {
            let same_task = me.slurm_task.is_some() && other.slurm_task == me.slurm_task;
            if same_task || is_stale(&other.holder(), &me.holder()) {
                tracing::warn!(
                    path = %other_path.display(),
                    pid = other.pid,
                    what = %other.what,
                    slurm_task = ?other.slurm_task,
                    "removing the claim of a runner that is gone (or of this Slurm task before its requeue); its unfinished cells will be rerun"
                );
                match fs::remove_file(&other_path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(StoreError::io("remove stale claim", &other_path)(e)),
                }
                continue;
            }
            if let Some(shared) = first_shared(&me.cells, &other.cells) {
                let count = shared_count(&me.cells, &other.cells);
                let cell = cells.iter().find(|&&(i, _)| i == shared).map_or_else(String::new, |&(_, id)| id.to_owned());
                return Err(StoreError::Claimed(Box::new(ClaimConflict {
                    dir: self.path().to_owned(),
                    claim_file: other_path,
                    pid: other.pid,
                    hostname: other.hostname,
                    started: other.started,
                    what: other.what,
                    shared: count,
                    cell,
                })));
            }
            others += 1;
        }
        let mut text =
            serde_json::to_string_pretty(&me).map_err(|e| StoreError::Json { path: path.clone(), source: e })?;
        text.push('\n');
        write_atomic(&path, text.as_bytes())?;
        let claim = Claim { path, info: me };

        // Leftovers of crashed writers: only where no live runner can be writing.
        let mut removed = if others == 0 { remove_temp_files(self.path())? } else { 0 };
        for &(_, id) in cells {
            removed += remove_temp_files(&self.path().join(CELLS).join(id))?;
        }
        if removed > 0 {
            tracing::info!(dir = %self.path().display(), removed, "removed temporary files of an interrupted run");
        }
        Ok(claim)
    }

    /// Takes `run.lock`, waiting while another runner holds it to register.
    fn lock_waiting(&self) -> Result<crate::lock::RunLock> {
        let deadline = Instant::now() + REGISTER_WAIT;
        loop {
            match self.lock() {
                Err(StoreError::Locked { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }

    /// The claims of live or dead runners in this folder (for `ablate report` and tests).
    pub fn claims(&self) -> Result<Vec<ClaimInfo>> {
        Ok(read_claims(&self.path().join(CLAIMS))?.into_iter().map(|(_, c)| c).collect())
    }
}

fn read_claims(folder: &Path) -> Result<Vec<(PathBuf, ClaimInfo)>> {
    let entries = match fs::read_dir(folder) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io("list", folder)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(StoreError::io("list", folder))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !name.ends_with(".json") {
            continue;
        }
        let path = entry.path();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::NotFound => continue, // released meanwhile
            Err(e) => return Err(StoreError::io("read claim", &path)(e)),
        };
        let info: ClaimInfo =
            serde_json::from_str(&text).map_err(|e| StoreError::Json { path: path.clone(), source: e })?;
        out.push((path, info));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Sorted, deduplicated positions as half-open ranges.
fn ranges(sorted: &[usize]) -> Vec<[usize; 2]> {
    let mut out: Vec<[usize; 2]> = Vec::new();
    for &i in sorted {
        match out.last_mut() {
            Some(r) if r[1] == i => r[1] = i + 1,
            _ => out.push([i, i + 1]),
        }
    }
    out
}

/// The first position in both range lists.
fn first_shared(a: &[[usize; 2]], b: &[[usize; 2]]) -> Option<usize> {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (lo, hi) = (a[i][0].max(b[j][0]), a[i][1].min(b[j][1]));
        if lo < hi {
            return Some(lo);
        }
        if a[i][1] <= b[j][1] {
            i += 1;
        } else {
            j += 1;
        }
    }
    None
}

/// How many positions both range lists hold.
fn shared_count(a: &[[usize; 2]], b: &[[usize; 2]]) -> usize {
    let (mut i, mut j, mut n) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        let (lo, hi) = (a[i][0].max(b[j][0]), a[i][1].min(b[j][1]));
        n += hi.saturating_sub(lo);
        if a[i][1] <= b[j][1] {
            i += 1;
        } else {
            j += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_overlaps() {
        assert_eq!(ranges(&[0, 1, 2, 5, 7, 8]), vec![[0, 3], [5, 6], [7, 9]]);
        let a = ranges(&[0, 2, 4, 6, 8, 10]); // shard 0/2 of 12
        let b = ranges(&[1, 3, 5, 7, 9, 11]); // shard 1/2
        let c = ranges(&[0, 3, 6, 9]); // shard 0/3
        assert_eq!(first_shared(&a, &b), None);
        assert_eq!(shared_count(&a, &b), 0);
        assert_eq!(first_shared(&a, &c), Some(0));
        assert_eq!(shared_count(&a, &c), 2); // 0 and 6
        assert_eq!(first_shared(&b, &c), Some(3));
        assert_eq!(shared_count(&b, &c), 2); // 3 and 9
        let whole = ranges(&(0..12).collect::<Vec<_>>());
        assert_eq!(shared_count(&whole, &b), 6);
    }
}
