//! Every record of a run folder, written through its writer (the store and `ablate_records`)
//! and read back through the reports loader: the same values come back.
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use ablate_records::{
    epochs_csv, CellPlugin, CellState, CellStatus, ComputeRecord, EnsembleMetrics, EpochRow, FinalDiagnostics,
    FinalMetrics, GrowthPoint, MachineInfo, Manifest, PluginInfo, PriorPredictive, Provenance, TensorKinetic, EPOCHS,
    LABELS, METRICS,
};
use ablate_reports::load::{Run, Status};
use ablate_store::RunDir;
use serde_json::json;

const GRID_TEXT: &str = r#"{"name": "records", "base": {}, "axes": [{"path": "temperature", "values": [0.5]}, {"path": "seed", "values": [3]}]}"#;

fn manifest() -> Manifest {
    Manifest {
        grid_file: "grids/records.json".into(),
        grid_sha256: ablate_store::sha256_bytes(GRID_TEXT.as_bytes()),
        ablate_version: "9.9.9".into(),
        git_revision: Some("0123abcd".into()),
        libtorch_version: None,
        device: "cpu".into(),
        plugins: vec![PluginInfo { name: "priors".into(), path: "/p/libpriors.so".into(), sha256: "ff".into() }],
        machine: MachineInfo { hostname: "box".into(), cpus: 3, os: "Linux".into() },
        created: "2026-01-02T03:04:05Z".into(),
        command: "ablate run grids/records.json".into(),
        cwd: None,
    }
}

fn rows() -> Vec<EpochRow> {
    (0..3u64)
        .map(|e| EpochRow {
            epoch: e,
            step: 10 * e,
            temperature: 0.5,
            timestep_factor: 1.0 / (e + 1) as f64,
            train_nll: 0.25 + e as f64,
            train_accuracy: 0.875,
            kinetic_temperature: 0.5 + 0.125 * e as f64,
            kinetic_in_band: if e == 1 { 0.0 } else { 1.0 },
            configurational_temperature: 0.4375,
            members: e,
            // Written with 3 decimals: a value with 3 decimals comes back exactly.
            wall_seconds: 1.5 * e as f64,
        })
        .collect()
}

fn metrics() -> FinalMetrics {
    FinalMetrics {
        members: 2,
        ensemble: EnsembleMetrics {
            accuracy: 0.75,
            accuracy_se: 0.0625,
            nll: 0.5,
            // A non-finite value is written as null and read back as NaN (reported as absent).
            nll_se: f64::NAN,
            gibbs_accuracy: 0.625,
            gibbs_nll: 0.75,
            brier: 0.25,
            brier_reliability: 0.015625,
            brier_resolution: 0.03125,
            brier_uncertainty: 0.875,
            ece: 0.125,
        },
        growth: vec![GrowthPoint { members: 1, accuracy: 0.5, nll: 1.0, brier: 0.5, ece: 0.25 }],
        diagnostics: FinalDiagnostics {
            kinetic_in_band_fraction: 0.5,
            kinetic_temperature: 0.625,
            configurational_temperature: 0.375,
            kinetic_per_tensor: vec![TensorKinetic {
                name: "0.weight".into(),
                dof: 4,
                temperature: 0.5,
                band: (0.25, 1.5),
                inside: true,
            }],
        },
        acceptance: Some(0.875),
        dim: 42,
        n_effective: 100.0,
        steps: 30,
        prior_predictive: Some(PriorPredictive {
            samples: 4,
            inputs: 10,
            top_class_fraction: 0.75,
            top_class_fraction_se: 0.125,
            class_counts: vec![30, 10],
        }),
        member_test_log_likelihood: Some(vec![-0.5, -0.75]),
        recomputed_from: Some("predictions.npy".into()),
        compute: Some(ComputeRecord { arithmetic: "bf16".into(), channels_last: true, device: "cuda:0".into() }),
    }
}

/// What `status.json` records of the build that computed a cell: the manifest's build, with
/// its prior library's sha256 `prior_sha`.
fn provenance(prior_sha: &str) -> Provenance {
    Provenance {
        ablate_version: "9.9.9".into(),
        git_revision: Some("0123abcd".into()),
        libtorch_version: Some("2.11.0".into()),
        device: "cpu".into(),
        plugins: vec![CellPlugin {
            kind: "prior".into(),
            name: "gaussian".into(),
            path: "/p/libpriors.so".into(),
            sha256: prior_sha.into(),
        }],
        data_sha256: Some("d4".into()),
    }
}

#[test]
fn every_record_written_by_its_writer_reads_back_through_the_reports_loader() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = manifest();
    let run = RunDir::create_or_open(tmp.path().join("records"), &manifest, GRID_TEXT).unwrap();
    let cell = run.cell("c0ffee").unwrap();
    cell.write_json(LABELS, &json!({"temperature": 0.5, "seed": 3})).unwrap();
    let status = CellStatus {
        status: CellState::Done,
        message: Some("fine".into()),
        wall_seconds: 12.25,
        diverged_at_step: None,
        finished_at: Some("2026-01-02T03:05:00Z".into()),
        batch: vec!["c0ffee".into(), "beef".into()],
        provenance: Some(provenance("ff")),
    };
    cell.write_status(&status).unwrap();
    let metrics = metrics();
    cell.write_json(METRICS, &metrics).unwrap();
    let rows = rows();
    cell.write_text(EPOCHS, &epochs_csv(&rows)).unwrap();

    let loaded = Run::read(run.path()).unwrap();
    assert_eq!(loaded.manifest, manifest);
    assert_eq!(loaded.grid.name.as_deref(), Some("records"));
    assert_eq!(loaded.cells.len(), 1);
    let c = &loaded.cells[0];
    assert_eq!(c.id, "c0ffee");
    assert_eq!((c.temperature, c.seed), (0.5, 3));
    assert_eq!(c.status, Status::Done);
    assert_eq!(c.message.as_deref(), Some("fine"));
    assert_eq!(c.wall_seconds, Some(12.25));
    assert_eq!(c.finished_at, status.finished_at);
    assert_eq!(c.provenance, status.provenance);
    assert_eq!(c.epochs.as_ref(), Some(&rows));
    let back = c.metrics.clone().expect("metrics.json read");
    assert!(back.ensemble.nll_se.is_nan(), "null reads back as NaN");
    let mut expected = metrics;
    expected.ensemble.nll_se = 0.0;
    let mut back = back;
    back.ensemble.nll_se = 0.0;
    assert_eq!(back, expected);
    // The store reads the same status back.
    assert_eq!(cell.read_status().unwrap(), Some(status));
}

#[test]
fn an_older_run_folder_without_newer_fields_still_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut m = serde_json::to_value(manifest()).unwrap();
    m["command"] = json!(["ablate", "run", "grids/records.json"]);
    std::fs::write(dir.join("manifest.json"), m.to_string()).unwrap();
    std::fs::write(dir.join("grid.json"), GRID_TEXT).unwrap();
    let cell = dir.join("cells/old");
    std::fs::create_dir_all(&cell).unwrap();
    std::fs::write(cell.join("labels.json"), r#"{"temperature": 1.0, "seed": 1}"#).unwrap();
    std::fs::write(
        cell.join("status.json"),
        r#"{"status": "done", "message": null, "wall_seconds": 2.0, "diverged_at_step": null, "finished_at": null}"#,
    )
    .unwrap();
    // No acceptance, dim, n_effective, steps, per-tensor kinetics or prior predictive.
    std::fs::write(
        cell.join("metrics.json"),
        r#"{"members": 1, "ensemble": {"accuracy": 0.5, "nll": null}, "growth": [],
            "diagnostics": {"kinetic_in_band_fraction": 1.0, "kinetic_temperature": 1.0,
                            "configurational_temperature": 1.0}}"#,
    )
    .unwrap();
    // Older epochs.csv: booleans for kinetic_in_band, no wall_seconds column.
    std::fs::write(
        cell.join("epochs.csv"),
        "epoch,step,temperature,timestep_factor,train_nll,train_accuracy,kinetic_temperature,\
         kinetic_in_band,configurational_temperature,members\n0,5,1,1,0.5,0.5,1.1,true,0.9,0\n1,10,1,1,0.4,0.6,1.2,false,0.8,1\n",
    )
    .unwrap();
    let run = Run::read(dir).unwrap();
    assert_eq!(run.manifest.command, "ablate run grids/records.json");
    let c = &run.cells[0];
    let m = c.metrics.as_ref().unwrap();
    assert_eq!(m.acceptance, None);
    assert_eq!((m.dim, m.steps), (0, 0));
    assert!(m.ensemble.nll.is_nan() && m.ensemble.brier.is_nan());
    let e = c.epochs.as_ref().unwrap();
    assert_eq!(e.iter().map(|r| r.kinetic_in_band).collect::<Vec<_>>(), vec![1.0, 0.0]);
    assert_eq!(e.iter().map(|r| r.step).collect::<Vec<_>>(), vec![5, 10]);
    assert!(e.iter().all(|r| r.wall_seconds.is_nan()));
}

/// A finished cell computed by another build than the manifest's (a plugin library the manifest
/// does not list, another git revision or version), or on other data than the other cells of
/// its data configuration, is named, with what differs, in report.md; a cell of the manifest's
/// build and a cell without provenance (older folders) are not.
#[test]
fn cells_computed_by_another_build_are_named_in_the_report() {
    let tmp = tempfile::tempdir().unwrap();
    let run = RunDir::create_or_open(tmp.path().join("builds"), &manifest(), GRID_TEXT).unwrap();
    let mut other_revision = provenance("ff");
    other_revision.git_revision = Some("fedcba98".into());
    let cells =
        [("a0", Some(provenance("ff"))), ("b1", Some(provenance("ee"))), ("c2", Some(other_revision)), ("d3", None)];
    // A done cell with its labels, status (with `provenance`) and metrics.
    let done = |id: &str, labels: serde_json::Value, provenance: Option<Provenance>| {
        let cell = run.cell(id).unwrap();
        cell.write_json(LABELS, &labels).unwrap();
        let status = CellStatus {
            status: CellState::Done,
            message: None,
            wall_seconds: 1.0,
            diverged_at_step: None,
            finished_at: None,
            batch: Vec::new(),
            provenance,
        };
        cell.write_status(&status).unwrap();
        cell.write_json(METRICS, &metrics()).unwrap();
        cell
    };
    for (i, (id, provenance)) in cells.into_iter().enumerate() {
        done(id, json!({"temperature": 0.5, "seed": i}), provenance);
    }
    // Cells of one data configuration computed on other data: the odd one out is named.
    let data = json!({"dataset": "digits", "path": "data/digits.csv", "label_noise": 0.0});
    for (i, (id, sha)) in [("e4", "d4"), ("f5", "d4"), ("g6", "99")].into_iter().enumerate() {
        let mut p = provenance("ff");
        p.data_sha256 = Some(sha.into());
        let cell = done(id, json!({"temperature": 0.1, "seed": 10 + i}), Some(p));
        cell.write_json("config.json", &json!({"seed": 10 + i, "data": data})).unwrap();
    }
    let loaded = Run::read(run.path()).unwrap();
    let flagged = loaded.other_builds();
    assert_eq!(flagged.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), ["b1", "c2", "g6"]);
    assert_eq!(flagged[2].1, "data sha256 99…, where 2 other cell(s) of the same data configuration have d4…");
    assert!(
        flagged[0].1.contains("prior `gaussian` from /p/libpriors.so (sha256 ee…) is not a library"),
        "{flagged:?}"
    );
    assert_eq!(flagged[1].1, "git revision fedcba98 (manifest: 0123abcd)");

    let summary = ablate_reports::write_report(
        run.path(),
        &ablate_reports::ReportOptions { skip_plots: true, ..Default::default() },
    )
    .unwrap();
    let md = std::fs::read_to_string(summary.report_md).unwrap();
    let section = md.split("## Cells from another build").nth(1).expect("the section is there");
    assert!(section.contains("| `b1` |") && section.contains("| `c2` |") && section.contains("| `g6` |"), "{section}");
    assert!(!section.contains("`a0`") && !section.contains("`d3`"), "{section}");
}
