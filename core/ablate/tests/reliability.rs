//! Run folders you can trust: partial reruns of a batch, overlapping runners, damaged folders,
//! killed workers. Each test drives the `ablate` binary on tiny grids of the embedded digits.
//!
//! The long soak (20 random `kill -9` of the runner) is `#[ignore]`d; run it with
//! `cargo test -p ablate --test reliability -- --ignored --nocapture soak`.
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{ablate, command, require_plugins as plugins_built};

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn succeed(args: &[&str], cwd: &Path) -> String {
    let o = ablate(args, cwd);
    let t = text(&o);
    assert!(o.status.success(), "ablate {args:?} failed:\n{t}");
    t
}

/// A grid of MLP cells on digits that differ in temperature (and seed): one batch of chains.
fn grid_file(dir: &Path, name: &str, epochs: usize, temperatures: &[f64], seeds: &[u64]) -> PathBuf {
    let grid = serde_json::json!({
        "name": name,
        "base": {
            "data": {"dataset": "digits", "train_size": 300, "test_size": 200},
            "model": {"kind": "mlp", "hidden": [32]},
            "sampler": {"epochs": epochs, "cycle_length": 1, "cycle_start_sampling": 2}
        },
        "axes": [{"path": "temperature", "values": temperatures}, {"path": "seed", "values": seeds}]
    });
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&grid).unwrap()).unwrap();
    path
}

fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Per cell: everything the report's numbers come from (metrics without wall times) and the
/// per-epoch rows (without wall times).
fn results(cells: &Path) -> Vec<(String, serde_json::Value, String)> {
    let mut out: Vec<_> = std::fs::read_dir(cells)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let m = read_json(&p.join("metrics.json"));
            // Every column but the last (wall seconds).
            let epochs: String = std::fs::read_to_string(p.join("epochs.csv"))
                .unwrap()
                .lines()
                .map(|l| format!("{}\n", l.rsplit_once(',').map_or(l, |(head, _)| head)))
                .collect();
            let id = p.file_name().unwrap().to_string_lossy().into_owned();
            (
                id,
                serde_json::json!({"ensemble": m["ensemble"], "growth": m["growth"], "diagnostics": m["diagnostics"]}),
                epochs,
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn statuses(cells: &Path) -> Vec<(String, serde_json::Value)> {
    let mut out: Vec<_> = std::fs::read_dir(cells)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let id = p.file_name().unwrap().to_string_lossy().into_owned();
            let s = p.join("status.json");
            (id, if s.exists() { read_json(&s) } else { serde_json::Value::Null })
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

fn cell_ids(grid: &Path) -> Vec<String> {
    ablate_grid::Grid::from_path(grid).unwrap().cells.into_iter().map(|c| c.id).collect()
}

/// Item 2: a batch of four chains interrupted after each of its cells wrote its outputs (the
/// runner killed between two batch-mates' `done`), and a retry of one cell (its `status.json`
/// deleted): each rerun gives every cell the numbers of the uninterrupted batch, and the first
/// line says that finished batch-mates run again. With per-chain noise streams, an MLP chain
/// run alone also repeats its batched numbers at T > 0.
#[test]
fn partial_reruns_of_a_batch_give_the_numbers_of_the_whole_batch() {
    plugins_built();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let grid = grid_file(d, "partial", 6, &[1.0, 0.3, 0.1, 0.03], &[1]);
    let g = grid.to_str().unwrap();
    let ids = cell_ids(&grid);
    let base = ["run", g, "--device", "cpu", "--threads", "1", "--no-report"];
    let out = succeed(&[&base[..], &["--out", "whole"]].concat(), d);
    assert!(out.contains("4 of them as 1 batch(es) of chains)"), "{out}");
    let whole = results(&d.join("whole/partial/cells"));
    assert_eq!(whole.len(), 4);

    // Batched = alone (MLP, noise streams per chain): with --batch-chains 1 every chain draws
    // the same noise and repeats its batched run to float rounding (the batched products sum in
    // another order: ~1e-8 here), far inside the 1e-5 bound; other noise would move the NLL by
    // about 1e-2.
    succeed(&[&base[..], &["--out", "alone", "--batch-chains", "1"]].concat(), d);
    for ((id, a, _), (_, w, _)) in results(&d.join("alone/partial/cells")).iter().zip(&whole) {
        let (na, nw) = (a["ensemble"]["nll"].as_f64().unwrap(), w["ensemble"]["nll"].as_f64().unwrap());
        assert!((na - nw).abs() <= 1e-5 * nw, "{id}: alone nll {na} vs batched {nw}");
        assert_eq!(a["ensemble"]["accuracy"], w["ensemble"]["accuracy"], "{id}");
        for (ga, gw) in a["growth"].as_array().unwrap().iter().zip(w["growth"].as_array().unwrap()) {
            let (x, y) = (ga["nll"].as_f64().unwrap(), gw["nll"].as_f64().unwrap());
            assert!((x - y).abs() <= 1e-5 * y, "{id}: growth nll alone {x} vs batched {y}");
        }
    }

    // The worker wrote the outputs of the first `b` cells of the batch, then the runner died.
    for b in 1..ids.len() {
        let out_dir = format!("boundary-{b}");
        copy_dir(&d.join("whole"), &d.join(&out_dir));
        let cells = d.join(&out_dir).join("partial/cells");
        for id in &ids[b..] {
            std::fs::write(
                cells.join(id).join("status.json"),
                r#"{"status":"running","message":null,"wall_seconds":0.0,"diverged_at_step":null,"finished_at":null}"#,
            )
            .unwrap();
            std::fs::remove_file(cells.join(id).join("metrics.json")).unwrap();
        }
        let finished_before: Vec<_> = statuses(&cells).into_iter().filter(|(id, _)| ids[..b].contains(id)).collect();
        let out = succeed(&[&base[..], &["--out", &out_dir]].concat(), d);
        assert!(
            out.contains(&format!("{} to run ({} of them as 1 batch(es) of chains, with {b} finished batch-mate(s) recomputed and discarded", ids.len() - b, ids.len() - b)),
            "boundary {b}: {out}"
        );
        assert_eq!(results(&cells), whole, "rerun after {b} of {} batch-mates finished differs", ids.len());
        let finished_after: Vec<_> = statuses(&cells).into_iter().filter(|(id, _)| ids[..b].contains(id)).collect();
        assert_eq!(finished_after, finished_before, "boundary {b}: a finished cell was rewritten");
    }

    // The documented retry: delete one cell's status.json.
    copy_dir(&d.join("whole"), &d.join("retry"));
    let cells = d.join("retry/partial/cells");
    std::fs::remove_file(cells.join(&ids[2]).join("status.json")).unwrap();
    let out = succeed(&[&base[..], &["--out", "retry"]].concat(), d);
    assert!(out.contains("3 finished (skipped), 1 to run"), "{out}");
    assert_eq!(results(&cells), whole, "retrying one cell changed the numbers");
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Processes whose parent is `pid`.
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
        // pid (comm) state ppid ...: comm may hold spaces, so split after its closing paren.
        let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

/// Item 6: a worker killed from outside (`kill -9`, as the out-of-memory killer does) leaves
/// its cell `interrupted`, not `failed`, and the next run runs it.
#[test]
fn a_worker_killed_by_a_signal_is_interrupted_and_reruns() {
    plugins_built();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let grid = grid_file(d, "oom", 3, &[1.0, 0.1], &[1]);
    let g = grid.to_str().unwrap();
    let ids = cell_ids(&grid);
    let args = ["run", g, "--out", "runs", "--device", "cpu", "--no-report", "--batch-chains", "1", "--jobs", "1"];
    let runner = command(&args, d)
        .env("ABLATE_WORKER_CRASH_FOR_TESTS", format!("sleep:{}", ids[0]))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = d.join("runs/oom/cells").join(&ids[0]).join("status.json");
    wait_for("the first cell to start", Duration::from_secs(120), || status.exists());
    let workers = children(runner.id());
    assert_eq!(workers.len(), 1, "one worker expected: {workers:?}");
    let killed = Command::new("kill").args(["-9", &workers[0].to_string()]).status().unwrap();
    assert!(killed.success());
    let o = runner.wait_with_output().unwrap();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "an interrupted cell makes the exit code non-zero: {out}");
    assert!(out.contains("INTERRUPTED") && out.contains("1 cell(s) interrupted"), "{out}");
    let st = read_json(&status);
    assert_eq!(st["status"], "interrupted", "{st}");
    assert!(st["message"].as_str().unwrap().contains("SIGKILL"), "{st}");
    let other = read_json(&d.join("runs/oom/cells").join(&ids[1]).join("status.json"));
    assert_eq!(other["status"], "done", "the other cell runs on: {other}");

    let out = succeed(&args, d);
    assert!(out.contains("1 finished (skipped), 1 to run"), "{out}");
    assert_eq!(read_json(&status)["status"], "done");
}

/// Item 7: with RUST_BACKTRACE=1, a worker's panic is recorded by its message, not by the
/// backtrace's last lines.
#[test]
fn a_worker_panic_keeps_its_message_under_rust_backtrace() {
    plugins_built();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let grid = grid_file(d, "panics", 2, &[1.0], &[1]);
    let g = grid.to_str().unwrap();
    let ids = cell_ids(&grid);
    for backtrace in ["1", "full"] {
        let out_dir = format!("runs-{backtrace}");
        let o = command(&["run", g, "--out", &out_dir, "--device", "cpu", "--no-report"], d)
            .env("ABLATE_WORKER_CRASH_FOR_TESTS", format!("panic:{}", ids[0]))
            .env("RUST_BACKTRACE", backtrace)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        let st = read_json(&d.join(&out_dir).join("panics/cells").join(&ids[0]).join("status.json"));
        assert_eq!(st["status"], "failed");
        let msg = st["message"].as_str().unwrap();
        assert!(msg.contains("panicked at") && msg.contains("test panic in the worker of cell"), "{msg}");
        assert!(!msg.contains("stack backtrace") && !msg.contains("rust_begin_unwind"), "{msg}");
    }
}

/// A `tch` call that panics where a batch runs (the `tch-panic:` hook stands in for a call the
/// engine's checks missed) no longer kills the worker with its cells left to the runner: the
/// worker records every cell of the batch as failed, naming the cell (id and labels) and the
/// panic's message and location, and exits; a finished batch-mate (rerun as a discarded chain)
/// keeps its status and metrics.
#[test]
fn a_tch_panic_fails_every_cell_of_its_batch_by_name() {
    plugins_built();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let grid = grid_file(d, "tchpanic", 2, &[1.0, 0.1, 0.01], &[1]);
    let g = grid.to_str().unwrap();
    let ids = cell_ids(&grid);
    let cells = d.join("runs/tchpanic/cells");
    let hook = format!("tch-panic:{}", ids[1]);
    let run = |extra: &[&str]| {
        let args = [&["run", g, "--out", "runs", "--device", "cpu", "--no-report"][..], extra].concat();
        let o = command(&args, d).env("ABLATE_WORKER_CRASH_FOR_TESTS", &hook).output().unwrap();
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "a failed cell makes the run fail:\n{t}");
        t
    };
    let expect_failed = |id: &str, labels: &str, batch: Option<usize>, out: &str| {
        let st = read_json(&cells.join(id).join("status.json"));
        assert_eq!(st["status"], "failed", "{st}");
        let msg = st["message"].as_str().unwrap();
        let name = format!("cell {id} ({labels}): the worker panicked at ");
        assert!(msg.starts_with(&name), "`{name}` expected at the start of: {msg}");
        assert!(msg.contains("shape '[3]' is invalid for input of size 2"), "the panic's message: {msg}");
        // Where: the worker's call (the hook), not only tch's unwrap inside the dependency.
        assert!(msg.contains("src/worker.rs:") && msg.contains("(in ") && msg.contains("tch-"), "the call site: {msg}");
        assert!(!msg.contains("worker process") && !msg.contains("Exception raised from"), "{msg}");
        if let Some(k) = batch {
            assert!(msg.ends_with(&format!("(the batch of {k} chains it ran in failed as a whole)")), "{msg}");
        }
        let line = format!("{id} {} FAILED: the worker panicked at ", labels.replace(", ", " "));
        assert!(out.contains(&line), "`{line}` missing from the run's output:\n{out}");
    };

    // Every cell in its own worker: cell 1 fails, its neighbours finish.
    let out = run(&["--batch-chains", "1", "--jobs", "1"]);
    expect_failed(&ids[1], "temperature=0.1, seed=1", None, &out);
    for id in [&ids[0], &ids[2]] {
        assert_eq!(read_json(&cells.join(id).join("status.json"))["status"], "done");
    }
    let metrics = std::fs::read(cells.join(&ids[0]).join("metrics.json")).unwrap();

    // One batch of three chains (cell 0 finished: rerun and discarded): cells 1 and 2 fail as
    // the batch, cell 0 stays done with its metrics.
    std::fs::remove_file(cells.join(&ids[1]).join("status.json")).unwrap();
    std::fs::remove_file(cells.join(&ids[2]).join("status.json")).unwrap();
    let out = run(&[]);
    assert!(out.contains("1 finished (skipped), 2 to run"), "{out}");
    expect_failed(&ids[1], "temperature=0.1, seed=1", Some(3), &out);
    expect_failed(&ids[2], "temperature=0.01, seed=1", Some(3), &out);
    assert_eq!(read_json(&cells.join(&ids[0]).join("status.json"))["status"], "done");
    assert_eq!(std::fs::read(cells.join(&ids[0]).join("metrics.json")).unwrap(), metrics);
}

/// Item 3: a whole run and `--shard 0/3` are refused while `--shard 0/2` runs (their cells
/// overlap), `--shard 1/2` runs beside it, and once it is gone the whole run resumes.
#[test]
fn runners_whose_cells_overlap_exclude_each_other() {
    plugins_built();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let grid = grid_file(d, "shared", 2, &[1.0, 0.3, 0.1, 0.03], &[1]);
    let g = grid.to_str().unwrap();
    let ids = cell_ids(&grid);
    let base = ["run", g, "--out", "runs", "--device", "cpu", "--no-report", "--batch-chains", "1", "--jobs", "1"];
    let mut shard0 = command(&[&base[..], &["--shard", "0/2"]].concat(), d)
        .env("ABLATE_WORKER_CRASH_FOR_TESTS", format!("sleep:{}", ids[0]))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status = d.join("runs/shared/cells").join(&ids[0]).join("status.json");
    wait_for("shard 0/2 to start its first cell", Duration::from_secs(120), || status.exists());

    for other in [&[][..], &["--shard", "0/3"][..]] {
        let o = ablate(&[&base[..], other].concat(), d);
        let t = text(&o);
        assert!(!o.status.success(), "{other:?} ran beside shard 0/2:\n{t}");
        assert!(t.contains("are being run by another runner") && t.contains("shard 0/2"), "{t}");
    }
    let out = succeed(&[&base[..], &["--shard", "1/2"]].concat(), d);
    assert!(out.contains("2 done"), "{out}");

    shard0.kill().unwrap();
    shard0.wait().unwrap();
    let out = succeed(&base, d);
    assert!(out.contains("2 finished (skipped), 2 to run"), "{out}");
}

/// Item 6: damaged run folders. A `done` cell whose metrics.json was deleted makes `ablate report`
/// refuse (naming the file and the command that recomputes it) and the next run recompute it;
/// a corrupt grid.json is restored from the grid file (its hash is checked against the
/// manifest's); an epochs.csv cut at a line boundary is refused by the report; a cell folder
/// holding only config.json does not break the report.
#[test]
fn damaged_run_folders_are_refused_or_repaired() {
    plugins_built();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let grid = grid_file(d, "damaged", 3, &[1.0, 0.1], &[1, 2]);
    let g = grid.to_str().unwrap();
    let ids = cell_ids(&grid);
    let args = ["run", g, "--out", "runs", "--device", "cpu", "--threads", "1"];
    succeed(&args, d);
    let run = d.join("runs/damaged");
    let cells = run.join("cells");
    let whole = results(&cells);
    let summary = std::fs::read_to_string(run.join("report/summary.csv")).unwrap();

    let metrics = cells.join(&ids[1]).join("metrics.json");
    std::fs::remove_file(&metrics).unwrap();
    let o = ablate(&["report", run.to_str().unwrap()], d);
    let t = text(&o);
    assert!(!o.status.success(), "a done cell without metrics was reported:\n{t}");
    assert!(t.contains(&metrics.display().to_string()) && t.contains("ablate run"), "{t}");
    std::fs::write(&metrics, "{\"ensemble\": ").unwrap(); // torn by hand
    let t = text(&ablate(&["report", run.to_str().unwrap()], d));
    assert!(t.contains("cannot be parsed") && t.contains("ablate run"), "{t}");

    std::fs::write(run.join("grid.json"), "{\"name\": \"damaged\", \"base\": {").unwrap();
    let out = succeed(&args, d);
    assert!(
        out.contains("1 to run") && out.contains("1 cell(s) marked finished without a readable metrics.json"),
        "{out}"
    );
    assert_eq!(results(&cells), whole, "the recomputed cell differs");
    assert_eq!(std::fs::read_to_string(run.join("report/summary.csv")).unwrap(), summary);
    assert_eq!(std::fs::read(run.join("grid.json")).unwrap(), std::fs::read(&grid).unwrap(), "grid.json not restored");

    // An epochs.csv cut at a line boundary still parses; a done cell has one row per epoch.
    let epochs = cells.join(&ids[0]).join("epochs.csv");
    let whole_csv = std::fs::read_to_string(&epochs).unwrap();
    let cut: String = whole_csv.lines().take(3).map(|l| format!("{l}\n")).collect();
    std::fs::write(&epochs, cut).unwrap();
    let o = ablate(&["report", run.to_str().unwrap()], d);
    let t = text(&o);
    assert!(!o.status.success(), "a done cell with 2 of 3 epoch rows was reported:\n{t}");
    assert!(t.contains(&epochs.display().to_string()) && t.contains("2 epoch row(s)") && t.contains("plans 3"), "{t}");
    // ... and the next run recomputes the cell (it used to skip it as complete: a loop).
    let out = succeed(&args, d);
    assert!(out.contains("1 to run"), "{out}");
    assert_eq!(std::fs::read_to_string(&epochs).unwrap().lines().count(), whole_csv.lines().count());
    assert_eq!(results(&cells), whole, "the recomputed cell differs");

    let stray = cells.join("0123456789abcdef");
    std::fs::create_dir(&stray).unwrap();
    std::fs::write(stray.join("config.json"), "{}").unwrap();
    let o = ablate(&["report", run.to_str().unwrap()], d);
    assert!(o.status.success(), "a folder with only config.json broke the report:\n{}", text(&o));
    assert_eq!(std::fs::read_to_string(run.join("report/summary.csv")).unwrap(), summary);
}

/// Cell folders whose files are not their cell's: a folder copied over another cell's, labels
/// edited by hand, a `labels.json` lost by a worker killed at its start, a `metrics.json` of
/// the wrong shape. `ablate report` leaves each out (naming the copied and relabelled ones)
/// instead of averaging them in or failing, and the next `ablate run` runs them again, after
/// which the summary is the uninterrupted run's, byte for byte.
#[test]
fn cell_folders_holding_other_files_are_left_out_and_run_again() {
    plugins_built();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let grid = grid_file(d, "foreign", 3, &[1.0, 0.1], &[1, 2]);
    let g = grid.to_str().unwrap();
    let cells_of_grid = ablate_grid::Grid::from_path(&grid).unwrap().cells;
    let id = |t: f64, seed: u64| {
        cells_of_grid.iter().find(|c| c.config.temperature == t && c.config.seed == seed).unwrap().id.clone()
    };
    let args = ["run", g, "--out", "runs", "--device", "cpu", "--threads", "1"];
    succeed(&args, d);
    let run = d.join("runs/foreign");
    let cells = run.join("cells");
    let summary = std::fs::read_to_string(run.join("report/summary.csv")).unwrap();
    let report = |d: &Path| {
        let t = succeed(&["report", run.to_str().unwrap()], d);
        (t, std::fs::read_to_string(run.join("report/report.md")).unwrap())
    };

    // Seed 1's folder copied over seed 2's (same temperature): left out, named, then rerun.
    let (copied, source) = (id(1.0, 2), id(1.0, 1));
    std::fs::remove_dir_all(cells.join(&copied)).unwrap();
    copy_dir(&cells.join(&source), &cells.join(&copied));
    // Labels edited by hand: T = 0.1 relabelled 0.3.
    let relabelled = id(0.1, 1);
    let labels = cells.join(&relabelled).join("labels.json");
    std::fs::write(&labels, std::fs::read_to_string(&labels).unwrap().replace("0.1", "0.3")).unwrap();
    let (out, md) = report(d);
    let section = md.split("## Cells holding another cell's files").nth(1).unwrap_or_else(|| panic!("{md}"));
    assert!(
        section.contains(&format!("| `{copied}` | config.json is not this cell's, labels.json is not")),
        "{section}"
    );
    assert!(section.contains(&format!("| `{relabelled}` | labels.json is not this cell's |")), "{section}");
    assert!(out.contains("hold another cell's config.json or labels.json"), "{out}");
    let partial = std::fs::read_to_string(run.join("report/summary.csv")).unwrap();
    assert!(!partial.lines().any(|l| l.starts_with("0.3,")), "a relabelled cell made a row of its own:\n{partial}");
    let out = succeed(&args, d);
    assert!(
        out.contains("2 finished cell folder(s) holding another cell's config.json or labels.json run again"),
        "{out}"
    );
    assert_eq!(std::fs::read_to_string(run.join("report/summary.csv")).unwrap(), summary);

    // A done cell without labels.json: reported as missing, not a failed report.
    let lost = id(0.1, 2);
    std::fs::remove_file(cells.join(&lost).join("labels.json")).unwrap();
    let (_, md) = report(d);
    assert!(md.contains(&lost), "the cell without labels is not named:\n{md}");
    // A metrics.json of another shape is refused by the report, which says that a run
    // recomputes it, and the run does (it used to skip the cell as complete).
    std::fs::write(cells.join(&copied).join("metrics.json"), "{}").unwrap();
    let o = ablate(&["report", run.to_str().unwrap()], d);
    assert!(!o.status.success() && text(&o).contains("it recomputes cells marked done"), "{}", text(&o));
    let out = succeed(&args, d);
    assert!(out.contains("2 to run"), "{out}");
    assert_eq!(std::fs::read_to_string(run.join("report/summary.csv")).unwrap(), summary);
}

/// A cell folder that is a symbolic link: the run refuses it by name (its results would be
/// written wherever it points), while `ablate report` and `ablate status` still work, leaving
/// it out.
#[test]
fn a_symlinked_cell_folder_is_refused_by_the_run_and_left_out_by_report_and_status() {
    plugins_built();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let grid = grid_file(d, "linked", 2, &[1.0, 0.1], &[1]);
    let g = grid.to_str().unwrap();
    let args = ["run", g, "--out", "runs", "--device", "cpu", "--threads", "1"];
    succeed(&args, d);
    let cells = d.join("runs/linked/cells");
    let id = cell_ids(&grid)[0].clone();
    std::fs::rename(cells.join(&id), d.join("elsewhere")).unwrap();
    std::os::unix::fs::symlink(d.join("elsewhere"), cells.join(&id)).unwrap();
    let run = d.join("runs/linked");
    let out = succeed(&["report", run.to_str().unwrap()], d);
    assert!(out.contains("1 done") && out.contains(&id), "{out}");
    let o = ablate(&["status", run.to_str().unwrap()], d);
    assert!(text(&o).contains("is a symbolic link"), "{}", text(&o));
    let o = ablate(&args, d);
    assert!(!o.status.success() && text(&o).contains(&format!("cells/{id} is a symbolic link")), "{}", text(&o));
}

/// A worker that finds the run's `grid.json` changed under it (edited while the run goes on)
/// leaves its cells `interrupted`, not `failed` for good: the next run restores the file and
/// runs them, and the summary is the uninterrupted run's.
#[test]
fn a_grid_copy_changed_during_the_run_interrupts_its_cells_and_the_rerun_finishes_them() {
    plugins_built();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let grid = grid_file(d, "touched", 2, &[1.0, 0.1], &[1]);
    let g = grid.to_str().unwrap();
    let ids = cell_ids(&grid);
    let args = ["run", g, "--out", "clean", "--device", "cpu", "--threads", "1", "--batch-chains", "1", "--jobs", "1"];
    succeed(&args, d);
    let clean = std::fs::read_to_string(d.join("clean/touched/report/summary.csv")).unwrap();

    let args = ["run", g, "--out", "runs", "--device", "cpu", "--threads", "1", "--batch-chains", "1", "--jobs", "1"];
    let o = command(&args, d).env("ABLATE_WORKER_CRASH_FOR_TESTS", format!("touch-grid:{}", ids[0])).output().unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("2 cell(s) interrupted") && t.contains("grid.json"), "{t}");
    for (id, s) in statuses(&d.join("runs/touched/cells")) {
        assert_eq!(s["status"], "interrupted", "{id}: {s}");
    }
    let out = succeed(&args, d);
    assert!(out.contains("2 done"), "{out}");
    assert_eq!(std::fs::read_to_string(d.join("runs/touched/report/summary.csv")).unwrap(), clean);
}

/// The data a finished cell was computed on are recorded (a fingerprint in its status.json):
/// a resume whose data differ (a relative `data.path` read from another current folder, or a
/// replaced file) is refused before anything runs, naming the cell and the path as read.
#[test]
fn a_resume_on_other_data_is_refused() {
    plugins_built();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let asset = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/assets/digits.csv.gz");
    let csv = Command::new("gzip").arg("-dc").arg(&asset).output().unwrap().stdout;
    let csv = String::from_utf8(csv).unwrap();
    for (folder, rows) in [("dA", usize::MAX), ("dB", 1200)] {
        std::fs::create_dir_all(d.join(folder).join("data")).unwrap();
        let kept: String = csv.lines().take(rows).map(|l| format!("{l}\n")).collect();
        std::fs::write(d.join(folder).join("data/digits.csv"), kept).unwrap();
    }
    let grid = serde_json::json!({
        "name": "datapath",
        "base": {
            "data": {"dataset": "digits", "path": "data/digits.csv", "train_size": 300, "test_size": 200},
            "model": {"kind": "mlp", "hidden": [16]},
            "sampler": {"epochs": 2, "cycle_length": 1, "cycle_start_sampling": 1}
        },
        "axes": [{"path": "temperature", "values": [1.0, 0.1]}]
    });
    std::fs::write(d.join("datapath.json"), grid.to_string()).unwrap();
    let args =
        ["run", "../datapath.json", "--out", "../runs", "--device", "cpu", "--threads", "1", "--batch-chains", "1"];
    succeed(&args, &d.join("dA"));
    let cells = d.join("runs/datapath/cells");
    let ids: Vec<String> = statuses(&cells).into_iter().map(|(id, _)| id).collect();
    let status = cells.join(&ids[1]).join("status.json");
    let kept = std::fs::read_to_string(&status).unwrap();
    assert!(kept.contains("\"data_sha256\""), "{kept}");
    std::fs::remove_file(&status).unwrap();

    let o = ablate(&args, &d.join("dB"));
    let t = text(&o);
    assert!(!o.status.success(), "resumed on other data:\n{t}");
    assert!(t.contains(&format!("finished cell {} was computed on other data", ids[0])), "{t}");
    assert!(t.contains(&format!("read as {}", d.join("dB/data/digits.csv").display())), "{t}");
    assert!(!status.exists(), "nothing may run");
    let out = succeed(&args, &d.join("dA"));
    assert!(out.contains("1 done"), "{out}");
}

/// Children of `pid` that are still alive (not zombies).
fn live(pids: &[u32]) -> bool {
    pids.iter().any(|p| {
        std::fs::read_to_string(format!("/proc/{p}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(')').map(|(_, rest)| !rest.trim_start().starts_with('Z')))
            .unwrap_or(false)
    })
}

/// The soak: 20 `kill -9` of the runner with default batching (40 cells in 5 batches of 8, one
/// worker at a time), half of them as soon as a batch-mate's `done` appears (so the worker dies
/// between two batch-mates' outputs), half after a random delay; then a last run without kills.
/// The summary must be byte-identical to the uninterrupted run's. Takes a few minutes; run with
/// `cargo test -p ablate --test reliability -- --ignored --nocapture soak` (prints the figures).
#[test]
#[ignore]
fn soak_20_kills_across_batch_mate_boundaries_give_the_uninterrupted_summary() {
    plugins_built();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let grid = serde_json::json!({
        "name": "soak",
        "base": {
            "data": {"dataset": "digits", "train_size": 300, "test_size": 200},
            "model": {"kind": "mlp", "hidden": [32]},
            "sampler": {"epochs": 8, "cycle_length": 1, "cycle_start_sampling": 2}
        },
        "axes": [{"path": "sampler.lr", "values": [0.03, 0.05, 0.1, 0.15, 0.2]},
                 {"path": "temperature", "values": [1.0, 0.3, 0.1, 0.03]}, {"path": "seed", "values": [1, 2]}]
    });
    let path = d.join("soak.json");
    std::fs::write(&path, serde_json::to_string_pretty(&grid).unwrap()).unwrap();
    let g = path.to_str().unwrap();
    let args = |out: &'static str| vec!["run", g, "--out", out, "--device", "cpu", "--jobs", "1", "--threads", "1"];

    let t0 = Instant::now();
    let out = succeed(&args("whole"), d);
    let whole_wall = t0.elapsed();
    assert!(out.contains("40 of them as 5 batch(es) of chains"), "{out}");
    let whole = results(&d.join("whole/soak/cells"));
    let summary = |out: &str| std::fs::read(d.join(out).join("soak/report/summary.csv")).unwrap();

    let cells = d.join("killed/soak/cells");
    let done =
        || if cells.is_dir() { statuses(&cells).iter().filter(|(_, s)| s["status"] == "done").count() } else { 0 };
    // A cheap, seeded generator for the delays (reproducible schedule).
    let mut rng = 0x5EED_u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let (mut kills, mut boundary_kills, mut split_batches, mut runs) = (0, 0, 0, 0);
    let mut banners = Vec::new();
    let t0 = Instant::now();
    while kills < 20 {
        let before = done();
        let log = d.join(format!("run-{runs}.log"));
        let mut runner = command(&args("killed"), d)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(d.join(format!("run-{runs}.err"))).unwrap())
            .spawn()
            .unwrap();
        runs += 1;
        let at_boundary = kills % 2 == 0;
        let delay = Duration::from_millis(200 + next() % 3000);
        let started = Instant::now();
        let mut workers = Vec::new();
        let mut polls = 0u64;
        let finished_alone = loop {
            if let Some(status) = runner.try_wait().unwrap() {
                assert!(status.success(), "run {runs} failed: {}", std::fs::read_to_string(&log).unwrap());
                break true;
            }
            polls += 1;
            if polls % 20 == 1 {
                for p in children(runner.id()) {
                    if !workers.contains(&p) {
                        workers.push(p);
                    }
                }
            }
            let now_done = done();
            if (at_boundary && now_done > before) || (!at_boundary && started.elapsed() >= delay) {
                break false;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        if finished_alone {
            if done() == 40 {
                break;
            }
            continue;
        }
        runner.kill().unwrap(); // SIGKILL
        runner.wait().unwrap();
        kills += 1;
        boundary_kills += usize::from(at_boundary);
        // Wait for the orphaned worker to notice and stop before the next runner starts.
        let deadline = Instant::now() + Duration::from_secs(30);
        while live(&workers) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        // Batches left with some but not all of their cells done (grid order: 8 per batch).
        let st = statuses(&cells);
        let ids = cell_ids(&path);
        for batch in ids.chunks(8) {
            let n = batch.iter().filter(|id| st.iter().any(|(i, s)| i == *id && s["status"] == "done")).count();
            split_batches += usize::from(n > 0 && n < 8);
        }
        banners.push(std::fs::read_to_string(d.join(format!("run-{}.err", runs - 1))).unwrap_or_default());
    }
    let out = succeed(&args("killed"), d);
    banners.push(out.clone());
    let killed_wall = t0.elapsed();
    let recomputed: usize = banners
        .iter()
        .filter_map(|b| {
            let (_, rest) = b.split_once(" finished batch-mate(s) recomputed")?.0.rsplit_once("with ")?;
            rest.parse::<usize>().ok()
        })
        .sum();
    let same_results = results(&cells) == whole;
    let same_summary = summary("killed") == summary("whole");
    eprintln!(
        "soak: {kills} kills of the runner ({boundary_kills} at a batch-mate's done, {} after a random delay), \
         {split_batches} times a batch was left partly done, {runs} interrupted runs + 1 final run; \
         {recomputed} finished cells recomputed as discarded batch-mates; wall {:.1} s (uninterrupted {:.1} s); \
         results identical: {same_results}, summary.csv byte-identical: {same_summary}",
        kills - boundary_kills,
        killed_wall.as_secs_f64(),
        whole_wall.as_secs_f64()
    );
    assert_eq!(kills, 20, "the grid finished before 20 kills");
    assert!(same_results, "per-cell results differ from the uninterrupted run");
    assert!(same_summary, "summary.csv differs from the uninterrupted run");
}
