//! Run folders of `ablate`: where a grid's results live on disk.
//!
//! The layout is a contract shared by the runner, the workers and `ablate report`; the records
//! themselves (manifest, status, metrics, epoch rows) and the file names are defined once in
//! `ablate_records` and re-exported here:
//!
//! ```text
//! runs/<name>/
//!   manifest.json   {"grid_file","grid_sha256","ablate_version","git_revision","libtorch_version",
//!                    "device","plugins":[{"name","path","sha256"}],
//!                    "machine":{"hostname","cpus","os"},"created","command","cwd"}
//!   grid.json       copy of the grid file
//!   run.lock        {"pid","hostname","started"} while a runner registers its claim
//!   claims/<host>-<pid>-<n>.json  {"pid","hostname","started","what","cells"}: the cells a live
//!                   runner runs (grid positions); overlapping claims exclude each other
//!   cells/<cell_id>/
//!      config.json  resolved cell config
//!      labels.json  axis display name -> value (always temperature, seed)
//!      status.json  {"status":"running"|"done"|"failed"|"diverged"|"interrupted","message","wall_seconds",
//!                    "diverged_at_step","finished_at","batch","provenance":{"ablate_version",
//!                    "git_revision","libtorch_version","device","plugins":[{"kind","name","path","sha256"}]}}
//!      epochs.csv   per-epoch metrics (written by the engine)
//!      metrics.json final ensemble metrics (written by the engine)
//!      predictions.npy, test_labels.npy, ood_predictions.npy  with eval.store_predictions
//!                   (float32 [members, examples, classes]; [`npy`])
//! ```
//!
//! - [`RunDir`] creates or opens a run folder; [`RunDir::claim`] makes sure no two runners run
//!   the same cell (whole runs and shards alike), taking over claims of dead processes
//!   ([`claim`], [`lock`]).
//! - [`CellDir`] reads and writes a cell's files. Every write is atomic ([`atomic`]): readers
//!   (a concurrent `ablate report`) see whole files only, and `kill -9` leaves no truncated
//!   file. A cell is finished when its `status.json` says done, failed or diverged, so a rerun
//!   resumes where the last one stopped.
//! - [`machine`] gathers what the manifest records (host, CPUs, OS, git revision, file hashes,
//!   timestamps).
//!
//! Errors ([`StoreError`]) name the path and suggest what to do (disk full, permissions,
//! a folder held by another runner).

pub mod atomic;
pub mod claim;
pub mod error;
pub mod lock;
pub mod machine;
pub mod npy;
pub mod run;

pub use claim::{Claim, ClaimInfo, CLAIMS};
pub use error::{is_disk_full, ClaimConflict, Result, StoreError};
pub use lock::{LockInfo, RunLock};
pub use machine::{command_line, git_revision, hostname, now_rfc3339, sha256_bytes, sha256_file, MachineInfo};
pub use run::{
    CellDir, CellPlugin, CellState, CellStatus, Manifest, PluginInfo, Provenance, RunDir, CELLS, CONFIG, EPOCHS, GRID,
    LABELS, LOCK, MANIFEST, METRICS, STATUS,
};
