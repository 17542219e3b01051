//! The `precision` cell setting through `ablate run`: fp32 and bf16 run on the CPU for an MLP and
//! a CNN, batched; `metrics.json` records the arithmetic; `bf16` changes the numbers (the
//! autocast reaches the network) and is deterministic for a seed; `tf32`, which a CPU cannot
//! compute, is refused before anything runs.
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{ablate, require_plugins};
use serde_json::{json, Value};

/// (model label, precision, seed) → metrics.json of every cell of a run folder.
fn cells(run: &Path) -> BTreeMap<(String, String, u64), Value> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(run.join("cells")).unwrap() {
        let dir = e.unwrap().path();
        let read =
            |name: &str| -> Value { serde_json::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap() };
        let (config, status) = (read("config.json"), read("status.json"));
        assert_eq!(status["status"], "done", "{}: {status}", dir.display());
        let precision = config.get("precision").and_then(Value::as_str).unwrap_or("fp32").to_owned();
        let model = config["model"]["kind"].as_str().unwrap().to_owned();
        out.insert((model, precision, config["seed"].as_u64().unwrap()), read("metrics.json"));
    }
    out
}

#[test]
fn precision_modes_run_record_and_differ_where_they_should() {
    require_plugins();
    let tmp = tempfile::tempdir().unwrap();
    let g = json!({
        "name": "precision",
        "base": {"data": {"dataset": "digits", "train_size": 300, "test_size": 100},
                 "model": {"kind": "mlp", "hidden": [32]},
                 "sampler": {"epochs": 4, "batch_size": 50, "cycle_length": 1, "cycle_start_sampling": 2}},
        "axes": [{"path": "model", "values": [{"kind": "mlp", "hidden": [32]}, {"kind": "cnn", "channels": [4]}],
                  "labels": ["mlp", "cnn"]},
                 {"path": "precision", "values": ["fp32", "bf16"]},
                 {"path": "seed", "values": [1, 2]}]
    });
    std::fs::write(tmp.path().join("precision.json"), serde_json::to_string_pretty(&g).unwrap()).unwrap();
    let run = |out: &str| {
        let o = ablate(&["run", "precision.json", "--out", out, "-q", "--batch-conv"], tmp.path());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        cells(&tmp.path().join(out).join("precision"))
    };
    let first = run("a");
    assert_eq!(first.len(), 8);
    let nll = |m: &Value| m["ensemble"]["nll"].as_f64().unwrap();
    for ((model, precision, seed), m) in &first {
        assert_eq!(m["compute"]["arithmetic"], precision.as_str(), "{model} {precision} seed {seed}");
        assert_eq!(m["compute"]["device"], "cpu");
        assert_eq!(m["compute"]["channels_last"], false);
        let fp32 = &first[&(model.clone(), "fp32".to_owned(), *seed)];
        // bf16 products change the chain (autocast reached the network), not its quality:
        // after 4 epochs on digits the NLLs stay within 0.25 of each other.
        if precision == "bf16" {
            assert_ne!(nll(m), nll(fp32), "{model} seed {seed}: bf16 gave fp32's numbers");
            assert!((nll(m) - nll(fp32)).abs() < 0.25, "{model} seed {seed}: {} vs {}", nll(m), nll(fp32));
        }
    }
    // bf16 on the CPU is deterministic for a seed, like fp32.
    let second = run("b");
    for (key, m) in &first {
        assert_eq!(m["ensemble"], second[key]["ensemble"], "{key:?}");
    }
}

#[test]
fn tf32_on_the_cpu_is_refused_before_anything_runs() {
    require_plugins();
    let tmp = tempfile::tempdir().unwrap();
    let g = json!({
        "name": "tf32",
        "base": {"data": {"dataset": "digits", "train_size": 100, "test_size": 50},
                 "model": {"kind": "mlp", "hidden": [8]},
                 "sampler": {"epochs": 2, "batch_size": 50, "cycle_length": 1, "cycle_start_sampling": 1}},
        "axes": [{"path": "precision", "values": ["fp32", "tf32"]}, {"path": "seed", "values": [1, 2]}]
    });
    std::fs::write(tmp.path().join("tf32.json"), serde_json::to_string(&g).unwrap()).unwrap();
    let o = ablate(&["run", "tf32.json", "--out", "runs", "-q", "--device", "cpu"], tmp.path());
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("2 cell(s)") && err.contains("tf32 needs a CUDA device") && err.contains("--device cuda"),
        "{err}"
    );
    assert!(!tmp.path().join("runs/tf32/cells").exists(), "nothing may run");
}

#[test]
fn an_unknown_precision_is_refused_at_its_json_path() {
    let tmp = tempfile::tempdir().unwrap();
    let g = json!({
        "name": "bad-precision",
        "base": {"data": {"dataset": "digits"}, "model": {"kind": "mlp", "hidden": [8]}},
        "axes": [{"path": "precision", "values": ["fp32", "fp16"]}]
    });
    std::fs::write(tmp.path().join("bad.json"), serde_json::to_string(&g).unwrap()).unwrap();
    let o = ablate(&["grid", "check", "bad.json"], tmp.path());
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("axes[0].values[1]") && err.contains("fp16") && err.contains("bf16"), "{err}");
}
