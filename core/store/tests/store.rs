//! Run folders: the lock, atomic writes, statuses and the manifest.
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ablate_store::{
    hostname, sha256_bytes, CellState, CellStatus, LockInfo, MachineInfo, Manifest, PluginInfo, RunDir, StoreError,
};
use serde_json::{json, Value};

const GRID_TEXT: &str = r#"{"name": "t", "base": {}}"#;

fn manifest() -> Manifest {
    Manifest {
        grid_file: "grids/t.json".into(),
        grid_sha256: sha256_bytes(GRID_TEXT.as_bytes()),
        ablate_version: "0.1.0".into(),
        git_revision: None,
        libtorch_version: Some("2.11.0".into()),
        device: "cpu".into(),
        plugins: vec![PluginInfo { name: "laplace".into(), path: "/p/liblaplace.so".into(), sha256: "00".into() }],
        machine: MachineInfo::current(),
        created: ablate_store::now_rfc3339(),
        command: ablate_store::command_line(),
        cwd: None,
    }
}

fn new_run(dir: &Path) -> RunDir {
    RunDir::create_or_open(dir.join("run"), &manifest(), GRID_TEXT).unwrap()
}

fn write_lock(run: &RunDir, info: &LockInfo) {
    fs::write(run.path().join("run.lock"), serde_json::to_string(info).unwrap()).unwrap();
}

#[test]
fn manifest_and_grid_follow_the_contract() {
    let tmp = tempfile::tempdir().unwrap();
    let run = new_run(tmp.path());
    let m: Value = serde_json::from_str(&fs::read_to_string(run.path().join("manifest.json")).unwrap()).unwrap();
    let keys: Vec<&str> = m.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "grid_file",
            "grid_sha256",
            "ablate_version",
            "git_revision",
            "libtorch_version",
            "device",
            "plugins",
            "machine",
            "created",
            "command"
        ]
    );
    assert_eq!(m["plugins"][0], json!({ "name": "laplace", "path": "/p/liblaplace.so", "sha256": "00" }));
    let machine: Vec<&str> = m["machine"].as_object().unwrap().keys().map(|k| k.as_str()).collect();
    assert_eq!(machine, ["hostname", "cpus", "os"]);
    assert_eq!(fs::read_to_string(run.path().join("grid.json")).unwrap(), GRID_TEXT);
    assert!(run.path().join("cells").is_dir());
    assert_eq!(run.manifest().unwrap(), manifest_with_created(&run));

    // Reopening with the same grid keeps the first manifest; another grid is refused.
    let again = RunDir::create_or_open(run.path(), &manifest(), GRID_TEXT).unwrap();
    assert_eq!(again.manifest().unwrap().created, run.manifest().unwrap().created);
    let mut other = manifest();
    other.grid_sha256 = sha256_bytes(b"another grid");
    let err = RunDir::create_or_open(run.path(), &other, "{}").unwrap_err();
    assert!(matches!(err, StoreError::GridChanged { .. }), "{err}");
    assert!(err.to_string().contains("another grid file"), "{err}");

    assert!(RunDir::open(run.path()).is_ok());
    let err = RunDir::open(tmp.path()).unwrap_err();
    assert!(err.to_string().contains("not a run folder"), "{err}");
}

fn manifest_with_created(run: &RunDir) -> Manifest {
    let mut m = manifest();
    let stored = run.manifest().unwrap();
    m.created = stored.created;
    m.command = stored.command;
    m
}

#[test]
fn lock_is_exclusive() {
    let tmp = tempfile::tempdir().unwrap();
    let run = new_run(tmp.path());
    let lock = run.lock().unwrap();
    let on_disk: LockInfo = serde_json::from_str(&fs::read_to_string(run.path().join("run.lock")).unwrap()).unwrap();
    assert_eq!(&on_disk, lock.info());
    assert_eq!(on_disk.pid, std::process::id());

    let err = run.lock().unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StoreError::Locked { .. }));
    assert!(text.contains(&format!("pid {}", std::process::id())), "{text}");
    assert!(text.contains(&hostname()), "{text}");
    assert!(text.contains("run.lock"), "{text}");

    drop(lock);
    assert!(!run.path().join("run.lock").exists(), "dropping the guard removes the lock");
    drop(run.lock().unwrap());
}

#[test]
fn a_live_process_holds_the_lock_and_a_dead_one_does_not() {
    let tmp = tempfile::tempdir().unwrap();
    let run = new_run(tmp.path());
    let mut child = Command::new("sleep").arg("30").spawn().expect("spawn sleep");
    let held = LockInfo { pid: child.id(), hostname: hostname(), started: ablate_store::now_rfc3339() };
    write_lock(&run, &held);

    let err = run.lock().unwrap_err();
    assert!(err.to_string().contains(&format!("pid {}", child.id())), "{err}");

    child.kill().unwrap();
    child.wait().unwrap();
    let lock = run.lock().expect("a lock of a dead process is taken over");
    assert_eq!(lock.info().pid, std::process::id());
}

#[test]
fn locks_of_other_hosts_are_respected_and_pre_boot_locks_are_stale() {
    let tmp = tempfile::tempdir().unwrap();
    let run = new_run(tmp.path());
    write_lock(&run, &LockInfo { pid: 1, hostname: "node-17".into(), started: "2030-01-01T00:00:00Z".into() });
    let err = run.lock().unwrap_err();
    assert!(err.to_string().contains("pid 1 on host node-17"), "{err}");

    // Our own pid is alive, but a lock from before the last boot cannot be ours.
    write_lock(
        &run,
        &LockInfo { pid: std::process::id(), hostname: hostname(), started: "2000-01-01T00:00:00Z".into() },
    );
    if Path::new("/proc/stat").exists() {
        let lock = run.lock().expect("pre-boot lock is stale");
        assert_eq!(lock.info().hostname, hostname());
    }
}

#[test]
fn an_empty_lock_file_is_busy_when_fresh_and_stale_when_old() {
    let tmp = tempfile::tempdir().unwrap();
    let run = new_run(tmp.path());
    let path = run.path().join("run.lock");
    fs::write(&path, "").unwrap();
    assert!(matches!(run.lock().unwrap_err(), StoreError::Locked { .. }));
    let f = fs::File::options().write(true).open(&path).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(3600)).unwrap();
    drop(f);
    let lock = run.lock().expect("an old empty lock is taken over");
    assert_eq!(lock.info().pid, std::process::id());
}

#[test]
fn status_round_trips_and_decides_what_is_finished() {
    let tmp = tempfile::tempdir().unwrap();
    let run = new_run(tmp.path());
    let cell = run.cell("0123456789abcdef").unwrap();
    assert_eq!(cell.read_status().unwrap(), None);
    assert!(!cell.is_finished().unwrap(), "never started");

    cell.write_status(&CellStatus::running()).unwrap();
    let on_disk: Value = serde_json::from_str(&fs::read_to_string(cell.path().join("status.json")).unwrap()).unwrap();
    assert_eq!(
        on_disk,
        json!({ "status": "running", "message": null, "wall_seconds": 0.0, "diverged_at_step": null, "finished_at": null })
    );
    assert!(!cell.is_finished().unwrap(), "interrupted");

    for (state, finished) in
        [(CellState::Done, true), (CellState::Failed, true), (CellState::Diverged, true), (CellState::Running, false)]
    {
        let s = CellStatus {
            status: state,
            message: Some("msg".into()),
            wall_seconds: 12.5,
            diverged_at_step: Some(1234),
            finished_at: Some(ablate_store::now_rfc3339()),
            batch: vec!["a1".into(), "b2".into()],
            provenance: Some(ablate_store::Provenance {
                ablate_version: "0.1.0".into(),
                git_revision: Some("abc".into()),
                libtorch_version: None,
                device: "cpu".into(),
                plugins: vec![ablate_store::CellPlugin {
                    kind: "prior".into(),
                    name: "laplace".into(),
                    path: "/p/liblaplace.so".into(),
                    sha256: "00".into(),
                }],
                data_sha256: Some("d4".into()),
            }),
        };
        cell.write_status(&s).unwrap();
        assert_eq!(cell.read_status().unwrap().unwrap(), s);
        assert_eq!(cell.is_finished().unwrap(), finished, "{state:?}");
    }

    // Other files, and listing.
    cell.write_json("labels.json", &json!({ "temperature": 0.1, "seed": 2 })).unwrap();
    cell.write_text("epochs.csv", "epoch,loss\n1,0.5\n").unwrap();
    assert_eq!(cell.read_text("epochs.csv").unwrap().unwrap(), "epoch,loss\n1,0.5\n");
    assert_eq!(cell.read_json::<Value>("labels.json").unwrap().unwrap()["seed"], 2);
    assert_eq!(cell.read_text("metrics.json").unwrap(), None);
    run.cell("00aa").unwrap();
    let ids: Vec<String> = run.list_cells().unwrap().iter().map(|c| c.id().to_owned()).collect();
    assert_eq!(ids, ["00aa", "0123456789abcdef"]);

    // A damaged status is an error naming the file, not a panic or a silent "not finished".
    fs::write(cell.path().join("status.json"), "{\"status\": \"runn").unwrap();
    let err = cell.read_status().unwrap_err();
    assert!(err.to_string().contains("status.json"), "{err}");

    for bad in ["../x", "a/b", ".hidden", "", "x y"] {
        assert!(matches!(run.cell(bad), Err(StoreError::BadName { .. })), "{bad:?}");
        assert!(cell.write_text(bad, "x").is_err(), "{bad:?}");
    }
}

#[test]
fn readers_never_see_a_partial_file() {
    let tmp = tempfile::tempdir().unwrap();
    let run = new_run(tmp.path());
    let cell = run.cell("abc").unwrap();
    let (a, b) = ("a".repeat(2 << 20), "b".repeat(3 << 20));
    cell.write_text("big.txt", &a).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, path) = (stop.clone(), cell.path().join("big.txt"));
        let (la, lb) = (a.len(), b.len());
        std::thread::spawn(move || {
            let mut reads = 0;
            while !stop.load(Ordering::Relaxed) {
                let text = fs::read_to_string(&path).expect("the file always exists");
                let whole = (text.len() == la && text.bytes().all(|c| c == b'a'))
                    || (text.len() == lb && text.bytes().all(|c| c == b'b'));
                assert!(whole, "read a partial file of {} bytes", text.len());
                reads += 1;
            }
            reads
        })
    };
    let start = Instant::now();
    let mut writes = 0;
    while writes < 20 || start.elapsed() < Duration::from_millis(300) {
        cell.write_text("big.txt", if writes % 2 == 0 { &b } else { &a }).unwrap();
        writes += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let reads = reader.join().unwrap();
    assert!(reads > 0);
    let left: Vec<_> = fs::read_dir(cell.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["big.txt"], "no temporary files stay behind");
}

#[test]
fn leftover_temp_files_are_ignored_and_cleaned() {
    let tmp = tempfile::tempdir().unwrap();
    let run = new_run(tmp.path());
    let cell = run.cell("abc").unwrap();
    cell.write_text("metrics.json", "{}").unwrap();
    let stray = cell.path().join(".metrics.json.999.0.tmp");
    fs::write(&stray, "{\"trunc").unwrap();
    let stray_top = run.path().join(".manifest.json.999.1.tmp");
    fs::write(&stray_top, "").unwrap();
    fs::create_dir(run.path().join("cells/.junk")).unwrap();

    assert_eq!(cell.read_text("metrics.json").unwrap().unwrap(), "{}");
    assert_eq!(run.list_cells().unwrap().len(), 1, "hidden entries are not cells");
    let _claim = run.claim("whole grid", &[(0, "abc")]).unwrap();
    assert!(!stray.exists() && !stray_top.exists(), "claiming the cell removes leftovers");
    assert!(cell.path().join("metrics.json").exists());
}

/// Item 3 of issue 15: one scheme for whole runs and shards. Runners whose cells overlap
/// exclude each other (whole vs shard 0/2, shard 0/2 vs shard 0/3), disjoint shards share the
/// folder, and a runner cleans leftovers only in its own cells' folders.
#[test]
fn overlapping_claims_exclude_each_other_and_cleanup_stays_in_owned_cells() {
    let tmp = tempfile::tempdir().unwrap();
    let run = new_run(tmp.path());
    let ids: Vec<String> = (0..12).map(|i| format!("cell{i:02}")).collect();
    let pick = |f: &dyn Fn(usize) -> bool| -> Vec<(usize, &str)> {
        (0..12).filter(|&i| f(i)).map(|i| (i, ids[i].as_str())).collect()
    };
    let whole = pick(&|_| true);
    let (s0of2, s1of2, s0of3) = (pick(&|i| i % 2 == 0), pick(&|i| i % 2 == 1), pick(&|i| i % 3 == 0));

    let first = run.claim("shard 0/2", &s0of2).unwrap();
    let err = run.claim("whole grid", &whole).unwrap_err();
    let text = err.to_string();
    assert!(matches!(&err, StoreError::Claimed(c) if c.shared == 6), "{text}");
    assert!(text.contains("shard 0/2") && text.contains("cell00") && text.contains("claims"), "{text}");
    let err = run.claim("shard 0/3", &s0of3).unwrap_err();
    assert!(matches!(&err, StoreError::Claimed(c) if c.shared == 2), "{err}");
    let second = run.claim("shard 1/2", &s1of2).expect("disjoint shards share the folder");
    assert_eq!(run.claims().unwrap().len(), 2);
    drop(first);
    assert!(run.claim("whole grid", &whole).is_err(), "shard 1/2 still runs");
    let third = run.claim("shard 0/3", &s0of3).unwrap_err();
    assert!(matches!(&third, StoreError::Claimed(c) if c.shared == 2), "{third}");
    drop(second);
    let all = run.claim("whole grid", &whole).expect("free again");
    drop(all);
    assert!(run.claims().unwrap().is_empty(), "dropping a claim removes its file");

    // A claim of a dead process is stale: removed, not obeyed.
    let dead = serde_json::json!({"pid": dead_pid(), "hostname": hostname(), "started": "2030-01-01T00:00:00Z",
                                  "what": "whole grid", "cells": [[0, 12]]});
    fs::write(run.path().join("claims/dead.json"), dead.to_string()).unwrap();
    drop(run.claim("shard 0/2", &s0of2).expect("a dead runner's claim is taken over"));
    assert!(!run.path().join("claims/dead.json").exists());

    // Leftover temporary files: a live shard's cells and the run folder itself are left alone.
    let _live = run.claim("shard 1/2", &s1of2).unwrap();
    let theirs = run.cell(&ids[1]).unwrap().path().join(".metrics.json.1.0.tmp");
    let ours = run.cell(&ids[0]).unwrap().path().join(".metrics.json.1.0.tmp");
    let top = run.path().join(".manifest.json.1.0.tmp");
    for f in [&theirs, &ours, &top] {
        fs::write(f, "x").unwrap();
    }
    let _mine = run.claim("shard 0/2", &s0of2).unwrap();
    assert!(!ours.exists(), "leftovers in the runner's own cells are removed");
    assert!(theirs.exists(), "a live shard's temporary file was removed");
    assert!(top.exists(), "the run folder's files were cleaned while another runner is live");
}

/// Not a test on its own: the body of the child process of `kill_9_leaves_no_truncated_file`.
#[test]
#[ignore]
fn writer_child() {
    let Ok(dir) = std::env::var("ABLATE_STORE_CHILD_DIR") else {
        return;
    };
    let run = RunDir::open(&dir).unwrap();
    let cell = run.cell("abc").unwrap();
    fs::write(Path::new(&dir).join("child-started"), "").unwrap();
    for i in 0u64.. {
        let body: Vec<u64> = (0..200_000).map(|k| k ^ i).collect();
        cell.write_json("metrics.json", &json!({ "i": i, "body": body })).unwrap();
    }
}

#[test]
fn kill_9_leaves_no_truncated_file() {
    let tmp = tempfile::tempdir().unwrap();
    let run = new_run(tmp.path());
    for round in 0..3 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "writer_child", "--include-ignored", "--test-threads=1"])
            .env("ABLATE_STORE_CHILD_DIR", run.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = run.path().join("child-started");
        let t0 = Instant::now();
        while !started.exists() && t0.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(150 + 70 * round));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        fs::remove_file(&started).unwrap();

        let cell = run.cell("abc").unwrap();
        if let Some(v) = cell.read_json::<Value>("metrics.json").unwrap() {
            assert_eq!(v["body"].as_array().unwrap().len(), 200_000, "round {round}: a whole file");
        }
    }
    // The next runner's claim on the cell removes what a killed writer left (the lock alone
    // does not: another runner may be writing other cells of the folder).
    let claim = run.claim("whole grid", &[(0, "abc")]).unwrap();
    drop(claim);
    let left: Vec<String> = fs::read_dir(run.path().join("cells/abc"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(left.iter().all(|n| !n.ends_with(".tmp")), "{left:?}");
}

#[test]
fn helpers() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("x");
    fs::write(&f, "abc").unwrap();
    assert_eq!(
        ablate_store::sha256_file(&f).unwrap(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let err = ablate_store::sha256_file(&tmp.path().join("missing")).unwrap_err();
    assert!(err.to_string().contains("missing") && err.to_string().contains("does not exist"), "{err}");
    assert_eq!(ablate_store::git_revision(tmp.path()), None);
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    if let Some(rev) = ablate_store::git_revision(repo) {
        assert_eq!(rev.len(), 40);
    }
}

#[test]
fn write_errors_name_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let run = new_run(tmp.path());
    let cell = run.cell("abc").unwrap();
    fs::remove_dir_all(cell.path()).unwrap();
    let err = cell.write_text("metrics.json", "{}").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("cells/abc/metrics.json"), "{text}");
    assert!(matches!(err, StoreError::Io { .. }));
    // Full disks: /dev/full answers every write with ENOSPC.
    if Path::new("/dev/full").exists() {
        use std::io::Write;
        let e = fs::OpenOptions::new().write(true).open("/dev/full").unwrap().write_all(b"x").unwrap_err();
        let err = StoreError::Io { action: "write", path: "/dev/full".into(), source: e };
        assert!(err.to_string().contains("disk or quota is full"), "{err}");
    }
}

#[test]
fn shards_claim_separately_and_a_shard_once() {
    let tmp = tempfile::tempdir().unwrap();
    let run = new_run(tmp.path());
    let first = run.claim("shard 0/2", &[(0, "a"), (2, "c")]).unwrap();
    let second = run.claim("shard 1/2", &[(1, "b"), (3, "d")]).expect("another shard runs at the same time");
    let again = run.claim("shard 0/2", &[(0, "a"), (2, "c")]).unwrap_err().to_string();
    assert!(again.contains("shard 0/2") && again.contains(&first.path().display().to_string()), "{again}");
    drop(first);
    drop(run.claim("shard 0/2", &[(0, "a"), (2, "c")]).expect("free again once released"));
    drop(second);
}

/// The pid of a process that has exited (and been reaped).
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().expect("spawn true");
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// Resuming never mixes builds: once a cell is finished, a plugin library whose sha256 changed
/// (same build name) is refused with the library named, and so are finished cells in a folder
/// whose manifest is gone (which grid and plugins made them is unknown). Before any cell
/// finished, a rebuilt plugin is fine and becomes the manifest's (the cells it finishes resume
/// with it); a library new to the run is added to the manifest.
#[test]
fn resuming_with_changed_plugins_or_without_a_manifest_is_refused_once_cells_finished() {
    let tmp = tempfile::tempdir().unwrap();
    let run = new_run(tmp.path());
    let read_manifest = || -> ablate_store::Manifest {
        serde_json::from_str(&fs::read_to_string(run.path().join("manifest.json")).unwrap()).unwrap()
    };
    let mut rebuilt = manifest();
    rebuilt.plugins[0].sha256 = "11".into();
    // Nothing finished yet, but a live runner's cells are in progress with the recorded build:
    // the manifest stays.
    let claim = run.claim("whole grid", &[(0, "c1")]).unwrap();
    RunDir::create_or_open(run.path(), &rebuilt, GRID_TEXT).unwrap();
    assert_eq!(read_manifest().plugins, manifest().plugins);
    drop(claim);
    // Nothing finished and no runner: the new build is accepted, and recorded.
    let cell = run.cell("c1").unwrap();
    RunDir::create_or_open(run.path(), &rebuilt, GRID_TEXT).unwrap();
    assert_eq!(read_manifest().plugins, rebuilt.plugins);
    let done = CellStatus {
        status: CellState::Done,
        message: None,
        wall_seconds: 1.0,
        diverged_at_step: None,
        finished_at: Some(ablate_store::now_rfc3339()),
        batch: Vec::new(),
        provenance: None,
    };
    cell.write_status(&done).unwrap();
    // The build that finished the cell resumes; the previous one is refused.
    RunDir::create_or_open(run.path(), &rebuilt, GRID_TEXT).unwrap();
    let err = RunDir::create_or_open(run.path(), &manifest(), GRID_TEXT).unwrap_err();
    assert!(matches!(err, StoreError::PluginsChanged { finished: 1, .. }), "{err}");
    assert!(err.to_string().contains("laplace (/p/liblaplace.so): sha256 11 → 00"), "{err}");
    // Another library beside the same builds changes nothing finished, and joins the manifest.
    let mut more = rebuilt.clone();
    more.created = "2030-01-01T00:00:00Z".into();
    more.plugins.push(PluginInfo { name: "extra".into(), path: "/p/libextra.so".into(), sha256: "22".into() });
    RunDir::create_or_open(run.path(), &more, GRID_TEXT).unwrap();
    assert_eq!(read_manifest().plugins, more.plugins);
    assert_eq!(read_manifest().created, rebuilt.created, "the rest of the manifest stays");

    // A rebuild that bumped the crate's version keeps the file: matched by path.
    let mut bumped = more.clone();
    bumped.plugins[0].name = "laplace 0.2.0".into();
    bumped.plugins[0].sha256 = "33".into();
    let err = RunDir::create_or_open(run.path(), &bumped, GRID_TEXT).unwrap_err();
    assert!(err.to_string().contains("laplace (/p/liblaplace.so): sha256 11 → 33"), "{err}");

    fs::remove_file(run.path().join("manifest.json")).unwrap();
    let err = RunDir::create_or_open(run.path(), &manifest(), GRID_TEXT).unwrap_err();
    assert!(matches!(err, StoreError::Orphaned { finished: 1, .. }), "{err}");
    assert!(err.to_string().contains("no manifest.json"), "{err}");
}

/// A finished cell records the library of each of its factors; resuming with another library
/// for one of them (whatever its name, version or path) is refused, naming both; cells without a
/// record, unfinished cells and factors not loaded now are not judged.
#[test]
fn resuming_checks_each_finished_cells_own_plugin_libraries() {
    let tmp = tempfile::tempdir().unwrap();
    let run = new_run(tmp.path());
    let plugin = |sha: &str| ablate_store::CellPlugin {
        kind: "prior".into(),
        name: "laplace".into(),
        path: "/old/liblaplace.so".into(),
        sha256: sha.into(),
    };
    let status = |state: CellState, sha: Option<&str>| CellStatus {
        status: state,
        message: None,
        wall_seconds: 1.0,
        diverged_at_step: None,
        finished_at: None,
        batch: Vec::new(),
        provenance: sha.map(|sha| ablate_store::Provenance {
            ablate_version: "0.1.0".into(),
            git_revision: None,
            libtorch_version: None,
            device: "cpu".into(),
            plugins: vec![plugin(sha)],
            data_sha256: None,
        }),
    };
    run.cell("a").unwrap().write_status(&status(CellState::Done, Some("aa"))).unwrap();
    run.cell("b").unwrap().write_status(&status(CellState::Done, None)).unwrap();
    run.cell("c").unwrap().write_status(&status(CellState::Running, Some("cc"))).unwrap();
    let loaded = |sha: &'static str| {
        move |kind: &str, name: &str| {
            (kind == "prior" && name == "laplace").then(|| (sha.to_owned(), "/new/liblaplace.so".to_owned()))
        }
    };
    let all = |_: &str| true;
    run.check_cell_builds(&loaded("aa"), &all).unwrap();
    run.check_cell_builds(&|_: &str, _: &str| None, &all).unwrap();
    run.check_cell_builds(&loaded("bb"), &|id: &str| id != "a").unwrap();
    let err = run.check_cell_builds(&loaded("bb"), &all).unwrap_err();
    assert!(matches!(err, StoreError::PluginsChanged { finished: 1, .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("prior `laplace`: cells computed by /old/liblaplace.so (sha256 aa), loaded now from /new/liblaplace.so (sha256 bb)"),
        "{text}"
    );
}

/// A run-folder file that does not parse names what to do about that file: a cell's files are
/// recomputed by the next run, a junk claim file is deleted, a manifest is restored.
#[test]
fn unparsable_files_name_their_own_remedy() {
    let tmp = tempfile::tempdir().unwrap();
    let run = new_run(tmp.path());
    let cell = run.cell("c1").unwrap();
    fs::write(cell.path().join("status.json"), "{ torn").unwrap();
    let err = cell.read_status().unwrap_err().to_string();
    assert!(
        err.contains("status.json is not valid") && err.contains("the next run of the grid runs the cell again"),
        "{err}"
    );
    fs::create_dir_all(run.path().join("claims")).unwrap();
    fs::write(run.path().join("claims/other-1-1.json"), "junk").unwrap();
    let err = run.claim("whole grid", &[(0, "c1")]).unwrap_err().to_string();
    assert!(err.contains("a runner's claim on cells") && err.contains("delete the file"), "{err}");
    fs::write(run.path().join("manifest.json"), "{").unwrap();
    let err = run.manifest().unwrap_err().to_string();
    assert!(err.contains("restore it from a copy"), "{err}");
}

/// A cell folder that is a symbolic link is refused by name, before anything is written
/// through it.
#[test]
fn a_symlinked_cell_folder_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let run = new_run(tmp.path());
    let elsewhere = tmp.path().join("elsewhere");
    fs::create_dir_all(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, run.path().join("cells/c1")).unwrap();
    for err in [run.cell("c1").map(|_| ()).unwrap_err(), run.existing_cell("c1").map(|_| ()).unwrap_err()] {
        assert!(err.to_string().contains("cells/c1 is a symbolic link"), "{err}");
    }
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
}
