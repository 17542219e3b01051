//! The report's sections from stored predictions on a hand-made run folder: the reference
//! named by an axis value (not its label), leave-one-out for reference cells, agreement/TV and
//! OOD scores against values computed by hand.
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use std::path::Path;

use ablate_reports::{write_report, ReportOptions};
use serde_json::json;

/// A float32 or int64 `.npy` file (NumPy format 1.0), written independently of `ablate-store`.
fn npy(path: &Path, descr: &str, shape: &[usize], bytes: Vec<u8>) {
    let dims = if shape.len() == 1 {
        format!("({},)", shape[0])
    } else {
        format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "))
    };
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {dims}, }}");
    while (10 + dict.len() + 1) % 64 != 0 {
        dict.push(' ');
    }
    dict.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.extend(bytes);
    std::fs::write(path, out).unwrap();
}

fn cell(run: &Path, id: &str, method: &str, t: f64, seed: u64, probs: &[f32], ood: Option<&[f32]>) {
    let dir = run.join("cells").join(id);
    std::fs::create_dir_all(&dir).unwrap();
    let labels = json!({"method": method, "temperature": t, "seed": seed});
    std::fs::write(dir.join("labels.json"), labels.to_string()).unwrap();
    std::fs::write(dir.join("status.json"), json!({"status": "done", "wall_seconds": 1.0}).to_string()).unwrap();
    let metrics = json!({"members": 1,
        "ensemble": {"accuracy": 0.5, "accuracy_se": 0.1, "nll": 0.5, "nll_se": 0.1, "gibbs_accuracy": 0.5,
                     "gibbs_nll": 0.5, "brier": 0.25, "brier_reliability": 0.0, "brier_resolution": 0.0,
                     "brier_uncertainty": 0.25, "ece": 0.0},
        "growth": [],
        "diagnostics": {"kinetic_in_band_fraction": 1.0, "kinetic_temperature": t,
                        "configurational_temperature": t, "kinetic_per_tensor": []},
        "acceptance": null,
        "member_test_log_likelihood": [-0.5]});
    std::fs::write(dir.join("metrics.json"), metrics.to_string()).unwrap();
    let f32s = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    npy(&dir.join("predictions.npy"), "<f4", &[1, probs.len() / 2, 2], f32s(probs));
    npy(&dir.join("test_labels.npy"), "<i8", &[2], [0i64, 1].iter().flat_map(|x| x.to_le_bytes()).collect());
    if let Some(o) = ood {
        npy(&dir.join("ood_predictions.npy"), "<f4", &[1, o.len() / 2, 2], f32s(o));
    }
}

#[test]
fn reference_distance_and_ood_by_hand() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path();
    let manifest = json!({"grid_file": "hand.json", "grid_sha256": "abc123", "ablate_version": "0.1.0",
        "git_revision": null, "libtorch_version": null, "device": "cpu", "plugins": [],
        "machine": {"hostname": "box", "cpus": 2, "os": "linux"},
        "created": "2026-01-01T00:00:00Z", "command": "ablate run hand.json"});
    std::fs::write(run.join("manifest.json"), manifest.to_string()).unwrap();
    let grid = json!({
        "name": "hand",
        "base": {},
        "axes": [
            {"path": "integrator", "name": "method", "values": [{"name": "sym-euler"}, {"name": "hmc"}], "labels": ["SG", "HMC"]},
            {"path": "temperature", "values": [0.1, 1.0]},
            {"path": "seed", "values": [1, 2]}
        ],
        "reference": {"method": {"name": "hmc"}, "temperature": 1}
    });
    std::fs::write(run.join("grid.json"), grid.to_string()).unwrap();
    // Reference cells; their pool is [[0.8, 0.2], [0.3, 0.7]].
    cell(run, "r1", "HMC", 1.0, 1, &[0.9, 0.1, 0.2, 0.8], None);
    cell(run, "r2", "HMC", 1.0, 2, &[0.7, 0.3, 0.4, 0.6], None);
    // Equal to the pool: agreement 1, TV 0; with one OOD point at [0.5, 0.5], the most uncertain.
    cell(run, "a", "SG", 1.0, 1, &[0.8, 0.2, 0.3, 0.7], Some(&[0.5, 0.5]));
    // Every top class flipped: agreement 0, TV (0.6 + 0.4)/2 = 0.5.
    cell(run, "b", "SG", 0.1, 1, &[0.2, 0.8, 0.7, 0.3], None);
    write_report(run, &ReportOptions { skip_plots: true, ..Default::default() }).unwrap();

    let csv = std::fs::read_to_string(run.join("report/reference.csv")).unwrap();
    let rows: Vec<Vec<String>> = csv.lines().skip(1).map(|l| l.rsplitn(7, ',').map(str::to_string).collect()).collect();
    // rsplitn: [tv_se, tv_mean, agreement_se, agreement_mean, seeds, temperature, level]
    let find = |level: &str, t: &str| rows.iter().find(|r| r[6].contains(level) && r[5] == t).unwrap().clone();
    let hmc = find("method=HMC", "1");
    // r1 vs r2 and r2 vs r1 (leave one out): top classes agree, TV 0.2 each.
    assert_eq!((hmc[4].as_str(), hmc[3].parse::<f64>().unwrap()), ("2", 1.0));
    assert!((hmc[1].parse::<f64>().unwrap() - 0.2).abs() < 1e-6, "{csv}");
    let a = find("method=SG", "1");
    assert_eq!(a[3].parse::<f64>().unwrap(), 1.0);
    assert!(a[1].parse::<f64>().unwrap().abs() < 1e-7, "{csv}");
    let b = find("method=SG", "0.1");
    assert_eq!(b[3].parse::<f64>().unwrap(), 0.0);
    assert!((b[1].parse::<f64>().unwrap() - 0.5).abs() < 1e-6, "{csv}");

    let md = std::fs::read_to_string(run.join("report/report.md")).unwrap();
    assert!(md.contains("Reference: 2 cell(s)"), "{md}");
    // T = 1 (TV 0) is closer than T = 0.1 (TV 0.5) for SG, but one seed has no SE.
    assert!(md.contains("| method=SG | undetermined (no standard error)"), "{md}");

    let ood = std::fs::read_to_string(run.join("report/ood.csv")).unwrap();
    let line = ood.lines().nth(1).unwrap();
    // The OOD point has the highest entropy and the lowest max-probability: all four scores 1.
    assert!(line.ends_with(",1,,1,,1,,1,"), "{ood}");

    // A done cell whose predictions were deleted drops out of the comparison, named, with the
    // way to store them again (a finished cell is not rerun).
    std::fs::remove_file(run.join("cells/b/predictions.npy")).unwrap();
    write_report(run, &ReportOptions { skip_plots: true, ..Default::default() }).unwrap();
    let md = std::fs::read_to_string(run.join("report/report.md")).unwrap();
    assert!(md.contains("Left out: 1 done cell(s) without stored predictions (`b`)"), "{md}");
    assert!(md.contains("delete its `status.json`"), "{md}");

    // A report that fails after its tables were computed (a damaged predictions file is read
    // last) leaves the previous report folder whole: no new summary.csv beside the old
    // report.md, and no staging folder behind.
    let before: Vec<(String, Vec<u8>)> = files(&run.join("report"));
    std::fs::remove_dir_all(run.join("cells/r2")).unwrap(); // the summary would change
    std::fs::write(run.join("cells/a/predictions.npy"), b"\x93NUMPY damaged").unwrap();
    assert!(write_report(run, &ReportOptions { skip_plots: true, ..Default::default() }).is_err());
    let after = files(&run.join("report"));
    let changed: Vec<&str> = after.iter().filter(|f| !before.contains(f)).map(|(name, _)| name.as_str()).collect();
    assert!(after.len() == before.len() && changed.is_empty(), "the report folder changed: {changed:?}");
    let left: Vec<_> = std::fs::read_dir(run).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(!left.iter().any(|n| n.to_string_lossy().starts_with(".report")), "{left:?}");
}

/// Every file under `dir` (relative path, bytes), sorted.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(
                files(&p).into_iter().map(|(n, b)| (format!("{}/{n}", p.file_name().unwrap().to_string_lossy()), b)),
            );
        } else {
            out.push((p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()));
        }
    }
    out.sort();
    out
}
