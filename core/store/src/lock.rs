//! The run lock: held for a moment by a runner registering its claim ([`crate::claim`]), so
//! that registrations happen one at a time.
//!
//! `run.lock` (`{"pid", "hostname", "started"}`) is created with `O_EXCL`, so of two runners
//! exactly one gets it. The other gets [`StoreError::Locked`] naming the holder. A lock whose
//! holder is gone is *stale* and taken over (with a warning): its host is this host and either
//! `/proc/<pid>` does not exist, or the lock is older than the last boot (the pid may have been
//! reused since). Locks of other hosts are never taken over (their processes cannot be seen
//! from here); delete the file by hand if that run is dead.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::atomic::sync_dir;
use crate::error::{Result, StoreError};
use crate::machine::{boot_time, hostname, now_rfc3339, parse_rfc3339};

/// The content of `run.lock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    pub pid: u32,
    pub hostname: String,
    /// RFC 3339 UTC.
    pub started: String,
}

/// Holds `run.lock` until dropped (then the file is removed, if it is still ours).
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    info: LockInfo,
}

impl RunLock {
    /// Takes the lock file `path` of the run folder `dir`.
    pub(crate) fn acquire(dir: &Path, path: &Path) -> Result<RunLock> {
        let me = LockInfo { pid: std::process::id(), hostname: hostname(), started: now_rfc3339() };
        // A few rounds: each round either wins, fails on a live holder, or clears a stale lock.
        for _ in 0..4 {
            match OpenOptions::new().write(true).create_new(true).open(path) {
                Ok(mut f) => {
                    let text =
                        serde_json::to_string(&me).map_err(|e| StoreError::Json { path: path.into(), source: e })?;
                    let written = f.write_all(text.as_bytes()).and_then(|_| f.sync_all());
                    if let Err(e) = written {
                        let _ = fs::remove_file(path);
                        return Err(StoreError::io("write", path)(e));
                    }
                    sync_dir(dir)?;
                    return Ok(RunLock { path: path.to_owned(), info: me });
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(StoreError::io("create lock file", path)(e)),
            }
            let held = match read_lock(path)? {
                Holder::Gone => continue,
                Holder::Unreadable { age } if age < Duration::from_secs(10) => {
                    // Another runner created it a moment ago and is writing its content.
                    LockInfo { pid: 0, hostname: "(unknown, just started)".into(), started: now_rfc3339() }
                }
                Holder::Unreadable { .. } => {
                    tracing::warn!(path = %path.display(), "taking over an empty or damaged run lock");
                    take_over(path, None)?;
                    continue;
                }
                Holder::Info(info) => info,
            };
            if is_stale(&held, &me) {
                tracing::warn!(
                    path = %path.display(),
                    pid = held.pid,
                    hostname = %held.hostname,
                    started = %held.started,
                    "taking over a stale run lock (its process is gone); cells it was running will be rerun"
                );
                take_over(path, Some(&held))?;
                continue;
            }
            return Err(StoreError::Locked {
                dir: dir.to_owned(),
                lock_file: path.to_owned(),
                pid: held.pid,
                hostname: held.hostname,
                started: held.started,
            });
        }
        Err(StoreError::io("acquire lock", path)(std::io::Error::other("other runners keep taking it; try again")))
    }

    pub fn info(&self) -> &LockInfo {
        &self.info
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Remove only our own lock (it may have been taken over if we were thought dead).
        match fs::read_to_string(&self.path) {
            Ok(text) if serde_json::from_str::<LockInfo>(&text).ok().as_ref() == Some(&self.info) => {
                if let Err(e) = fs::remove_file(&self.path) {
                    tracing::warn!(path = %self.path.display(), error = %e, "could not remove the run lock");
                }
            }
            _ => {
                tracing::warn!(path = %self.path.display(), "the run lock was replaced by another runner; leaving it")
            }
        }
    }
}

enum Holder {
    Gone,
    Unreadable { age: Duration },
    Info(LockInfo),
}

fn read_lock(path: &Path) -> Result<Holder> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Holder::Gone),
        Err(e) => return Err(StoreError::io("read lock file", path)(e)),
    };
    match serde_json::from_str::<LockInfo>(&text) {
        Ok(info) => Ok(Holder::Info(info)),
        Err(_) => {
            let age = fs::metadata(path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .unwrap_or_default();
            Ok(Holder::Unreadable { age })
        }
    }
}

/// Is the holder of a lock gone? Only decidable for locks of this host.
pub(crate) fn is_stale(held: &LockInfo, me: &LockInfo) -> bool {
    if held.hostname != me.hostname {
        return false;
    }
    if !Path::new("/proc/self").exists() {
        return false; // no procfs: cannot tell, assume alive
    }
    if !Path::new("/proc").join(held.pid.to_string()).exists() {
        return true;
    }
    // The pid is alive, but the lock predates the last boot: the pid was reused.
    matches!((parse_rfc3339(&held.started), boot_time()), (Some(s), Some(b)) if s < b)
}

/// Removes a stale lock without removing a fresh one that a racing runner may have created
/// meanwhile: the file is first renamed aside, then checked to be the stale one.
fn take_over(path: &Path, expected: Option<&LockInfo>) -> Result<()> {
    let aside = path.with_file_name(format!(".run.lock.stale.{}.tmp", std::process::id()));
    match fs::rename(path, &aside) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StoreError::io("remove stale lock file", path)(e)),
    }
    let moved = fs::read_to_string(&aside).ok().and_then(|t| serde_json::from_str::<LockInfo>(&t).ok());
    let ours_to_remove = match expected {
        Some(stale) => moved.as_ref() == Some(stale),
        None => moved.is_none(),
    };
    if !ours_to_remove {
        // We moved a live lock that appeared in between: put it back unless yet another
        // runner has locked since (then that one wins and the moved one's owner will notice).
        let _ = fs::hard_link(&aside, path);
    }
    fs::remove_file(&aside).map_err(StoreError::io("remove stale lock file", &aside))?;
    Ok(())
}
