//! `ablate grid check` and `ablate run` on hostile grid files: every problem in one pass, each
//! with its JSON path (or line/column), no panic, and nothing written outside `--out`.
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use std::path::Path;
use std::process::Output;
use std::time::Instant;

mod common;
use common::{ablate, command, require_plugins as plugins_built};

fn ablate_env(args: &[&str], cwd: &Path, env: &[(&str, &Path)]) -> Output {
    let mut cmd = command(args, cwd);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("start ablate")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn refused(o: &Output) -> String {
    let err = stderr(o);
    assert!(!err.contains("panicked") && !err.contains("stack backtrace"), "panic:\n{err}");
    assert_eq!(o.status.code(), Some(1), "expected a clean refusal:\n{err}");
    err
}

fn write(dir: &Path, file: &str, grid: &serde_json::Value) -> String {
    let path = dir.join(file);
    std::fs::write(&path, serde_json::to_string_pretty(grid).unwrap()).unwrap();
    path.to_str().unwrap().to_owned()
}

fn small(name: &str) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "base": {
            "data": {"dataset": "digits", "train_size": 200, "test_size": 100},
            "model": {"kind": "mlp", "hidden": [8]},
            "sampler": {"epochs": 2, "cycle_length": 1, "cycle_start_sampling": 1}
        },
        "axes": [{"path": "temperature", "values": [1.0]}]
    })
}

/// Names that would put the run folder outside `--out` (or make `--out` itself the run folder)
/// are refused by `grid check` and `run` at `name`; nothing is created.
#[test]
fn run_names_stay_under_out() {
    plugins_built();
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("a/b");
    std::fs::create_dir_all(&work).unwrap();
    let absolute = dir.path().join("abs-run").display().to_string();
    for name in
        ["../../escaped-grid", absolute.as_str(), ".", "..", "a/b", "nul\u{0}x", ".hidden", "x".repeat(101).as_str()]
    {
        let path = write(&work, "g.json", &small(name));
        for cmd in [&["grid", "check"][..], &["run", "--out", "out"]] {
            let mut args = cmd.to_vec();
            args.push(&path);
            let err = refused(&ablate(&args, &work));
            assert!(err.contains("  - name: the grid name"), "{name:?}: {err}");
        }
        let mut left: Vec<String> = walk(dir.path());
        left.retain(|p| !p.ends_with("g.json"));
        assert!(left.is_empty(), "{name:?} created {left:?}");
    }
    // An ordinary name with dots is fine.
    let path = write(&work, "g.json", &small("cold.v2_mlp-1"));
    let o = ablate(&["grid", "check", &path], &work);
    assert!(o.status.success(), "{}", stderr(&o));
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            let inner = walk(&p);
            if inner.is_empty() && !p.ends_with("a") && !p.ends_with("b") {
                out.push(p.display().to_string());
            }
            out.extend(inner);
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}

/// The problems of issue 15 item 5 in one file: each is reported, in one pass, at its place.
#[test]
fn every_problem_in_one_pass() {
    plugins_built();
    let dir = tempfile::tempdir().unwrap();
    let text = r#"{"name": "all-at-once",
 "base": {"data": {"dataset": "digits", "train_size": 5000, "test_size": 900},
          "model": {"kind": "cnn", "channels": [4, 4, 4, 4]},
          "sampler": {"epochs": 3, "cycle_length": 2, "cycle_start_sampling": 3, "batch_size": 2000, "lr": -1},
          "eval": {"ece_bins": 1000000000000, "prior_samples": 1000000000},
          "prior": {"name": "no-such-prior"}},
 "axes": [{"path": "sampler.lr", "values": [0.1, 0.2]},
          {"path": "model.hidden", "values": [[8]]}],
 "axes": [{"path": "sampler.lr", "values": [0.1, 0.2]}, {"path": "seed", "values": [1, 2]}]
}"#;
    let path = dir.path().join("all.json");
    std::fs::write(&path, text).unwrap();
    let err = refused(&ablate(&["grid", "check", path.to_str().unwrap()], dir.path()));
    for (at, what) in [
        ("axes", "duplicate key `axes` at line 9, column 2 (first at line 7, column 2)"),
        ("base.sampler.lr", "lr must be"),
        ("base.eval.ece_bins", "must be <= 10000"),
        ("base.eval.prior_samples", "must be <= 100000"),
        ("base.sampler.epochs", "no ensemble member"),
        ("base.data.train_size", "digits has 1297"),
        ("base.data.test_size", "digits has 500"),
        ("base.sampler.batch_size", "larger than the 1297 training examples"),
        ("base.model.channels", "shrink 8x8"),
        ("cells[0].prior", "no-such-prior"),
    ] {
        assert!(err.contains(&format!("  - {at}: ")) && err.contains(what), "{at} / {what}:\n{err}");
    }
    assert!(err.contains("has 10 problems"), "{err}");

    // `batch_size` 5000 on 1297 examples used to run silently (to 0.19 accuracy).
    let mut g = small("big-batch");
    g["base"]["data"] = serde_json::json!({"dataset": "digits"});
    g["base"]["sampler"]["batch_size"] = serde_json::json!(5000);
    let path = write(dir.path(), "batch.json", &g);
    let err = refused(&ablate(&["run", &path], dir.path()));
    assert!(err.contains("base.sampler.batch_size: batch_size 5000 is larger than the 1297"), "{err}");
    assert!(!dir.path().join("runs").exists());
}

/// Settings that used to panic or abort the runner are refused at the setting.
#[test]
fn allocation_bombs_are_refused_before_anything_runs() {
    plugins_built();
    let dir = tempfile::tempdir().unwrap();
    for (path, value, at) in [
        ("model", serde_json::json!({"kind": "mlp", "hidden": [100_000_000]}), "base.model.hidden[0]"),
        ("eval", serde_json::json!({"ece_bins": 1_000_000_000_000u64}), "base.eval.ece_bins"),
        ("eval", serde_json::json!({"prior_samples": 1_000_000_000u64}), "base.eval.prior_samples"),
        (
            "noise",
            serde_json::json!({"name": "pretend-batch", "params": {"batch_size": 1_000_000_000u64}}),
            "base.noise.params",
        ),
        ("sampler", serde_json::json!({"epochs": 1u64 << 63}), "base.sampler.epochs"),
    ] {
        let mut g = small("bomb");
        g["base"][path] = value;
        g["axes"] = serde_json::json!([{"path": "temperature", "values": [1.0, 0.1]}]);
        let file = write(dir.path(), "bomb.json", &g);
        let err = refused(&ablate(&["run", &file], dir.path()));
        assert!(err.contains(&format!("  - {at}")), "{at}:\n{err}");
        assert!(!dir.path().join("runs").exists());
    }
}

/// Issue 13: a combination that cannot run is refused before anything runs, with its path.
#[test]
fn combinations_that_cannot_run_are_refused() {
    plugins_built();
    let dir = tempfile::tempdir().unwrap();
    let mut g = small("frn-mlp");
    g["axes"] = serde_json::json!([{"path": "likelihood.name", "values": ["categorical", "frn"]}]);
    let file = write(dir.path(), "frn.json", &g);
    let err = refused(&ablate(&["grid", "check", &file], dir.path()));
    assert!(err.contains("  - axes[0].values[1]: likelihood `frn`") && err.contains("(in cells[1])"), "{err}");
    assert!(err.contains("has 1 problem"), "{err}");

    let cache = tempfile::tempdir().unwrap();
    let mut g = small("uncached");
    g["base"]["data"] = serde_json::json!({"dataset": "fashion-mnist", "train_size": 100});
    let file = write(dir.path(), "uncached.json", &g);
    let o = ablate_env(&["run", &file], dir.path(), &[("XDG_CACHE_HOME", cache.path())]);
    let err = refused(&o);
    assert!(err.contains("  - base.data.dataset: dataset fashion-mnist is not cached"), "{err}");
    assert!(err.contains("ablate data fetch fashion-mnist"), "{err}");
    assert!(!dir.path().join("runs").exists());
}

/// Linear time and bounded inputs: more than 1,000,000 cells is refused before expansion, a
/// file over the size limit unread, and 100,000 temperatures check quickly (they took 49 s).
#[test]
fn large_grids_are_checked_or_refused_quickly() {
    plugins_built();
    let dir = tempfile::tempdir().unwrap();
    let mut g = small("seeds");
    g["axes"] = serde_json::json!([{"path": "seed", "values": (0..1_000_001u64).collect::<Vec<_>>()}]);
    let file = write(dir.path(), "seeds.json", &g);
    let t = Instant::now();
    let err = refused(&ablate(&["grid", "check", &file], dir.path()));
    assert!(err.contains("  - axes[0].values: 1000001 values; a grid has at most 1000000 cells"), "{err}");
    assert!(t.elapsed().as_secs_f64() < 20.0, "{:?}", t.elapsed());

    let file = dir.path().join("huge.json");
    let pad = " ".repeat(ablate_grid_limit() + 1);
    std::fs::write(&file, format!("{{\"name\": \"x\"{pad}}}")).unwrap();
    let err = refused(&ablate(&["grid", "check", file.to_str().unwrap()], dir.path()));
    assert!(err.contains("grid files are limited to"), "{err}");

    let mut g = small("temps");
    let temps: Vec<f64> = (0..100_000).map(|i| i as f64 * 1e-5).collect();
    g["axes"] = serde_json::json!([{"path": "temperature", "values": temps}]);
    let file = write(dir.path(), "temps.json", &g);
    let t = Instant::now();
    let o = ablate(&["grid", "check", &file], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    // About 4 s on an idle 2-core machine in a debug build; the bound leaves room for a busy one.
    assert!(t.elapsed().as_secs_f64() < 60.0, "100000 cells took {:?}", t.elapsed());
}

/// `ablate_grid::MAX_GRID_BYTES` (this test drives the binary and does not link the crate).
fn ablate_grid_limit() -> usize {
    16 << 20
}

/// Two values of a plugin axis that are one configuration once the parameters' defaults are
/// filled in would run the same cells twice, as two levels: refused at the second value.
/// Other values (another scale, another plugin) pass.
#[test]
fn plugin_values_equal_after_defaults_are_refused() {
    plugins_built();
    let dir = tempfile::tempdir().unwrap();
    let mut g = small("same-prior");
    g["axes"] = serde_json::json!([{"path": "prior", "values": [
        {"name": "gaussian"}, {"name": "gaussian", "params": {"scale": 1}}, {"name": "gaussian", "params": {"scale": 0.3}},
        {"name": "laplace"}
    ]}]);
    let path = write(dir.path(), "same.json", &g);
    let err = refused(&ablate(&["grid", "check", &path], dir.path()));
    assert!(err.contains("axes[0].values[1]") && err.contains("the same prior as axes[0].values[0]"), "{err}");
    assert!(!err.contains("values[2]") && !err.contains("values[3]"), "{err}");
    g["axes"][0]["values"] = serde_json::json!([{"name": "gaussian"}, {"name": "gaussian", "params": {"scale": 0.3}}]);
    let path = write(dir.path(), "distinct.json", &g);
    let o = ablate(&["grid", "check", &path], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    // On zipped axes a value may repeat: it pairs with another axis's value.
    g["axes"] = serde_json::json!([
        {"path": "prior", "values": [{"name": "gaussian"}, {"name": "gaussian", "params": {"scale": 1}}]},
        {"path": "sampler.lr", "values": [0.1, 0.05]}
    ]);
    g["zip"] = serde_json::json!([["prior", "sampler.lr"]]);
    let path = write(dir.path(), "zipped.json", &g);
    let o = ablate(&["grid", "check", &path], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
}
