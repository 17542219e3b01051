//! Stored predictions end to end: `eval.store_predictions` writes `.npy` files that hold what
//! the metrics were computed from, the report compares cells with the grid's `reference` cells
//! from them, and `ablate report --recompute` restores metrics from them exactly.
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod common;

use std::path::Path;

use common::{ablate, require_plugins};
use serde_json::{json, Value};

fn grid(dir: &Path) -> std::path::PathBuf {
    let g = json!({
        "name": "stored",
        "base": {"data": {"dataset": "digits", "train_size": 200, "test_size": 60},
                 "model": {"kind": "mlp", "hidden": [8]},
                 "sampler": {"epochs": 4, "batch_size": 50, "cycle_length": 1, "cycle_start_sampling": 2},
                 "eval": {"store_predictions": true}},
        "axes": [{"path": "temperature", "values": [0.1, 1.0]}, {"path": "seed", "values": [1, 2]}],
        "reference": {"temperature": 1}
    });
    let path = dir.join("stored.json");
    std::fs::write(&path, serde_json::to_string_pretty(&g).unwrap()).unwrap();
    path
}

fn npy_f32(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let a = ablate_store::npy::read_f32(path).unwrap().unwrap();
    (a.shape, a.data)
}

#[test]
fn stored_predictions_reference_comparison_and_recompute() {
    require_plugins();
    let tmp = tempfile::tempdir().unwrap();
    let path = grid(tmp.path());
    let out = ablate(&["run", path.to_str().unwrap(), "--out", "runs", "-q"], tmp.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run = tmp.path().join("runs/stored");
    let mut cells: Vec<_> = std::fs::read_dir(run.join("cells")).unwrap().map(|e| e.unwrap().path()).collect();
    cells.sort();
    assert_eq!(cells.len(), 4);
    for c in &cells {
        // 3 members (cycle ends at epochs 2, 3, 4) × 60 test images × 10 classes.
        let (shape, probs) = npy_f32(&c.join("predictions.npy"));
        assert_eq!(shape, vec![3, 60, 10]);
        let labels = ablate_store::npy::read_i64(&c.join("test_labels.npy")).unwrap().unwrap().data;
        // The stored probabilities are those the metrics came from: the ensemble NLL recomputed here.
        let m: Value = serde_json::from_str(&std::fs::read_to_string(c.join("metrics.json")).unwrap()).unwrap();
        let nll = (0..60)
            .map(|i| {
                let p: f64 = (0..3).map(|k| f64::from(probs[k * 600 + i * 10 + labels[i] as usize])).sum::<f64>() / 3.0;
                -p.ln()
            })
            .sum::<f64>()
            / 60.0;
        assert!((nll - m["ensemble"]["nll"].as_f64().unwrap()).abs() < 1e-9, "{nll} vs {}", m["ensemble"]["nll"]);
        assert_eq!(m["member_test_log_likelihood"].as_array().unwrap().len(), 3);
    }

    // The reference section: reference cells (T = 1) against each other, T = 0.1 against both.
    let report = std::fs::read_to_string(run.join("report/report.md")).unwrap();
    assert!(report.contains("## Distance to the reference") && report.contains("Reference: 2 cell(s)"), "{report}");
    assert!(report.contains("## Convergence across chains"), "{report}");
    let csv = std::fs::read_to_string(run.join("report/reference.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(run.join("report/plots/reference_tv_vs_temperature.svg").is_file());

    // --recompute restores a damaged number exactly, and the report says so.
    let metrics_path = cells[0].join("metrics.json");
    let original: Value = serde_json::from_str(&std::fs::read_to_string(&metrics_path).unwrap()).unwrap();
    let mut damaged = original.clone();
    damaged["ensemble"]["nll"] = json!(99.0);
    damaged["growth"] = json!([]);
    std::fs::write(&metrics_path, serde_json::to_string(&damaged).unwrap()).unwrap();
    let out = ablate(&["report", run.to_str().unwrap(), "--recompute", "--no-plots"], tmp.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("recomputed the metrics of 4 cell(s)"));
    let back: Value = serde_json::from_str(&std::fs::read_to_string(&metrics_path).unwrap()).unwrap();
    assert_eq!(back["ensemble"], original["ensemble"]);
    assert_eq!(back["growth"], original["growth"]);
    assert_eq!(back["recomputed_from"], json!("predictions.npy"));
    let report = std::fs::read_to_string(run.join("report/report.md")).unwrap();
    assert!(report.contains("## Recomputed metrics") && report.contains("of 4 cell(s) were recomputed"), "{report}");
}

#[test]
fn reference_without_stored_predictions_is_refused_with_its_path() {
    let tmp = tempfile::tempdir().unwrap();
    let path = grid(tmp.path());
    let mut g: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    g["base"]["eval"]["store_predictions"] = json!(false);
    std::fs::write(&path, g.to_string()).unwrap();
    let out = ablate(&["grid", "check", path.to_str().unwrap()], tmp.path());
    assert!(!out.status.success());
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("reference") && text.contains("store_predictions"), "{text}");
}
