//! Atomic file writes: a reader sees the old file or the new one, never a part of one, and a
//! crash (even `kill -9` or a power cut) leaves no truncated file.
//!
//! The bytes go to a temporary file in the same folder (`.<name>.<pid>.<n>.tmp`), which is
//! flushed to disk, renamed over the target (atomic on POSIX file systems), and then the folder
//! itself is flushed so that the rename survives a power cut. A crash leaves at most a stray
//! temporary file, which readers ignore (its name starts with a dot) and
//! [`remove_temp_files`] deletes.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Result, StoreError};

const TEMP_SUFFIX: &str = ".tmp";

/// Writes `bytes` to `path` atomically (see the module docs).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = parent(path);
    let name = path
        .file_name()
        .ok_or_else(|| StoreError::BadName { what: "file name", name: path.display().to_string() })?
        .to_string_lossy();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{n}{TEMP_SUFFIX}", std::process::id()));

    let result = (|| {
        let mut f =
            OpenOptions::new().write(true).create_new(true).open(&tmp).map_err(StoreError::io("create", path))?;
        f.write_all(bytes).map_err(StoreError::io("write", path))?;
        f.sync_all().map_err(StoreError::io("flush to disk", path))?;
        drop(f);
        fs::rename(&tmp, path).map_err(StoreError::io("replace", path))?;
        sync_dir(&dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Flushes a folder's entries (new names, renames) to disk.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(StoreError::io("flush folder", dir))
}

/// Is `name` one of our temporary files?
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(TEMP_SUFFIX)
}

/// Deletes leftover temporary files (from a crashed writer) in `dir`, not recursing. Returns
/// how many were removed. Only call this while no writer can be active (the run lock is held
/// and no worker has started).
pub fn remove_temp_files(dir: &Path) -> Result<usize> {
    let mut removed = 0;
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(StoreError::io("list", dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(StoreError::io("list", dir))?;
        let name = entry.file_name();
        if is_temp_name(&name.to_string_lossy()) {
            let path = entry.path();
            fs::remove_file(&path).map_err(StoreError::io("remove leftover temporary file", &path))?;
            tracing::debug!(path = %path.display(), "removed a leftover temporary file");
            removed += 1;
        }
    }
    Ok(removed)
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}
