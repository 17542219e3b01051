//! Atomic report files: each file is written to a temporary file in the same folder
//! (`.<name>.<pid>.<n>.tmp`), flushed, and renamed over the target, so a reader (or a full disk,
//! or a killed process) never leaves a torn `report.md`, CSV, Parquet file or plot: the old file
//! stays until the new one is whole.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::ReportError;

/// Writes `path` through `fill`, atomically; `fill`'s own errors pass through.
pub fn write_with(path: &Path, fill: impl FnOnce(&mut File) -> Result<(), ReportError>) -> Result<(), ReportError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let io_err = |source| ReportError::Write { path: path.to_path_buf(), source };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.{}.tmp", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
    let result = (|| {
        let mut f = File::create_new(&tmp).map_err(io_err)?;
        fill(&mut f)?;
        f.flush().map_err(io_err)?;
        f.sync_all().map_err(io_err)?;
        drop(f);
        fs::rename(&tmp, path).map_err(io_err)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes `bytes` to `path` atomically.
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    write_with(path, |f| f.write_all(bytes).map_err(|source| ReportError::Write { path: path.to_path_buf(), source }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_keeps_the_old_file_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("summary.csv");
        write_bytes(&path, b"old,whole\n").unwrap();
        let err = write_with(&path, |f| {
            f.write_all(b"new,but torn").unwrap();
            Err(ReportError::Invalid { path: path.clone(), message: "disk full".into() })
        });
        assert!(err.is_err());
        assert_eq!(fs::read(&path).unwrap(), b"old,whole\n", "a failed write changed the file");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, [std::ffi::OsString::from("summary.csv")], "a temporary file was left behind");
        write_bytes(&path, b"new\n").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new\n");
    }
}
