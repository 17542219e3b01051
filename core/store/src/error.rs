//! Errors of the store: each says what failed, on which path, and what to do.

use std::io;
use std::path::PathBuf;

/// Something went wrong reading or writing a run folder.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file-system operation failed.
    #[error("cannot {action} {}: {source}{}", path.display(), io_hint(source))]
    Io { action: &'static str, path: PathBuf, source: io::Error },

    /// A JSON file of the run folder does not parse (or a value does not serialize).
    #[error(
        "{} is not valid: {source}; it was written by another version of ablate, edited by hand or cut short: {}",
        path.display(),
        json_remedy(path)
    )]
    Json { path: PathBuf, source: serde_json::Error },

    /// A cell folder that is a symbolic link.
    #[error(
        "cell folder {} is a symbolic link: its results would be written to (and read from) wherever it points; \
         replace it with a real folder (copy what it points to), or delete it to run the cell again",
        path.display()
    )]
    LinkedCell { path: PathBuf },

    /// A `.npy` file of stored predictions cannot be read.
    #[error("{} cannot be read as a stored-predictions array: {why}; delete it and the cell's status.json, then run the grid again (a finished cell is not rerun; eval.store_predictions stores them again)", path.display())]
    Npy { path: PathBuf, why: String },

    /// Another runner holds the run folder.
    #[error(
        "run folder {} is in use by pid {pid} on host {hostname} (since {started}); wait for that \
         run to finish, or, if it is gone, delete {}",
        dir.display(),
        lock_file.display()
    )]
    Locked { dir: PathBuf, lock_file: PathBuf, pid: u32, hostname: String, started: String },

    /// Another live runner runs some of the cells this runner would run.
    #[error("{0}")]
    Claimed(Box<ClaimConflict>),

    /// The run folder holds results of a different grid file.
    #[error(
        "run folder {} was created for another grid file (sha256 {existing}, now {new}), and its cells \
         belong to that grid; run the changed grid into another folder (`--out OTHER`, or a new `name` in \
         the grid file), or put the grid file back as it was to resume",
        dir.display()
    )]
    GridChanged { dir: PathBuf, existing: String, new: String },

    /// A plugin library changed since the run's cells were computed.
    #[error(
        "run folder {} has {finished} finished cell(s) computed with other builds of plugin libraries than \
         the ones loaded now: {}; resuming would mix results of two builds in one report. Put the earlier \
         builds back to resume, or run into another folder (`--out OTHER`) to start over with these builds \
         (`ablate report {}` rewrites the report of the finished cells without running anything)",
        dir.display(),
        changed.join("; "),
        dir.display()
    )]
    PluginsChanged { dir: PathBuf, finished: usize, changed: Vec<String> },

    /// Finished cells in a folder without a manifest: which grid, binary and plugins made them
    /// is unknown.
    #[error(
        "run folder {} has {finished} finished cell(s) but no manifest.json, so which grid, ablate and \
         plugins made them cannot be checked; restore its manifest.json, or move the folder away and run \
         again",
        dir.display()
    )]
    Orphaned { dir: PathBuf, finished: usize },

    /// `grid.json` of a run folder is missing or is not the grid the manifest was made for.
    #[error(
        "{} does not match the manifest's grid_sha256 ({expected}; it has {found}): the run folder's \
         copy of the grid is damaged; run `ablate run <grid file>` again with the grid file named in \
         manifest.json, which restores it",
        path.display()
    )]
    GridCopyDamaged { path: PathBuf, expected: String, found: String },

    /// A name that cannot be used as a file or folder name inside the run folder.
    #[error("invalid {what} {name:?}: use letters, digits, '-', '_' and '.' only (no leading '.')")]
    BadName { what: &'static str, name: String },

    /// The folder is not a run folder.
    #[error("{} is not a run folder (no manifest.json); create it with `ablate run`", dir.display())]
    NotARun { dir: PathBuf },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { action, path, source }
    }
}

/// Whether `e` says the disk or the quota is full (ENOSPC, EDQUOT), a condition that passes.
pub fn is_disk_full(e: &io::Error) -> bool {
    // Raw errno values are Linux's; the kind covers the rest.
    e.kind() == io::ErrorKind::StorageFull || matches!(e.raw_os_error(), Some(28 | 122))
}

/// A hint for the common causes of I/O errors.
fn io_hint(e: &io::Error) -> &'static str {
    if is_disk_full(e) {
        return " (the disk or quota is full: free space, or write the run somewhere else with --out)";
    }
    // Raw errno values are Linux's; the kinds cover the rest.
    match (e.kind(), e.raw_os_error()) {
        (io::ErrorKind::PermissionDenied, _) | (_, Some(13)) | (_, Some(1)) => {
            " (permission denied: check the owner and mode of the folder, or choose another --out)"
        }
        (io::ErrorKind::ReadOnlyFilesystem, _) | (_, Some(30)) => {
            " (the file system is read-only: write the run somewhere else with --out)"
        }
        (io::ErrorKind::NotFound, _) => " (it does not exist)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_name_the_path_and_the_cause() {
        let full = StoreError::io("write", "/runs/x/cells/a/metrics.json")(io::Error::from_raw_os_error(28));
        let text = full.to_string();
        assert!(text.contains("cannot write /runs/x/cells/a/metrics.json"), "{text}");
        assert!(text.contains("disk or quota is full"), "{text}");
        let denied = StoreError::io("create folder", "/runs/x")(io::Error::from_raw_os_error(13));
        assert!(denied.to_string().contains("permission denied"), "{denied}");
        let ro = StoreError::io("write", "/runs/x")(io::Error::from_raw_os_error(30));
        assert!(ro.to_string().contains("read-only"), "{ro}");
    }
}

/// Who holds the cells a runner wanted ([`StoreError::Claimed`]).
#[derive(Debug, thiserror::Error)]
#[error(
    "{shared} of these cells of run folder {} (e.g. cell {cell}) are being run by another runner: \
     pid {pid} on host {hostname} ({what}, since {started}); wait for it to finish or run cells it \
     does not run (another --shard of the same split); if that run is gone, delete {}",
    dir.display(),
    claim_file.display()
)]
pub struct ClaimConflict {
    pub dir: PathBuf,
    pub claim_file: PathBuf,
    pub pid: u32,
    pub hostname: String,
    pub started: String,
    pub what: String,
    /// How many of the wanted cells the other runner holds.
    pub shared: usize,
    /// One of them.
    pub cell: String,
}

/// What to do about a run-folder file that does not parse, by what the file is.
fn json_remedy(path: &std::path::Path) -> &'static str {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let in_claims = path.parent().and_then(|p| p.file_name()).is_some_and(|p| p == crate::claim::CLAIMS);
    match name {
        _ if in_claims => {
            "it is a runner's claim on cells: if no runner is working on this run folder, delete the file"
        }
        "status.json" | "metrics.json" | "labels.json" | "config.json" => {
            "delete the cell's status.json; the next run of the grid runs the cell again"
        }
        "manifest.json" => {
            "restore it from a copy (it records the grid and plugins of the finished cells); without one, move the \
             run folder away and run the grid again"
        }
        _ => "restore it, or move the run folder away and run the grid again",
    }
}
