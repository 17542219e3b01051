//! End-to-end: a synthetic run folder → `write_report`, checked against an independent
//! computation done here in plain Rust.
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use ablate_reports::{write_report, Outcome, ReportOptions};
use serde_json::json;

const PRIORS: [&str; 2] = ["gaussian", "laplace"];
const TEMPS: [f64; 4] = [0.0, 0.01, 0.1, 1.0];
const SEEDS: [u64; 3] = [1, 2, 3];

/// The synthetic truth of one cell.
#[derive(Clone, Debug)]
struct Truth {
    id: String,
    prior: &'static str,
    t: f64,
    seed: u64,
    status: &'static str,
    accuracy: f64,
    accuracy_se: f64,
    nll: f64,
    nll_se: f64,
    brier: f64,
    ece: f64,
}

/// Gaussian: strong cold effect on NLL and accuracy. Laplace: T = 1 is best.
fn base(prior: &str, t: f64) -> (f64, f64) {
    // (temperature, nll, accuracy)
    const GAUSSIAN: [(f64, f64, f64); 5] =
        [(0.0, 0.50, 0.900), (0.01, 0.30, 0.950), (0.1, 0.25, 0.960), (1.0, 0.45, 0.920), (2.0, 0.60, 0.880)];
    const LAPLACE: [(f64, f64, f64); 4] =
        [(0.0, 0.55, 0.890), (0.01, 0.41, 0.925), (0.1, 0.405, 0.928), (1.0, 0.40, 0.930)];
    let table: &[(f64, f64, f64)] = if prior == "gaussian" { &GAUSSIAN } else { &LAPLACE };
    let (_, nll, acc) = table.iter().find(|(tt, _, _)| *tt == t).unwrap();
    (*nll, *acc)
}

fn write(path: &Path, text: String) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn write_cell(run: &Path, c: &Truth, diverged_step: Option<u64>) {
    let dir = run.join("cells").join(&c.id);
    write(&dir.join("labels.json"), json!({"prior": c.prior, "temperature": c.t, "seed": c.seed}).to_string());
    let message = match c.status {
        "failed" => json!("plugin error: boom"),
        "diverged" => json!("loss became NaN"),
        _ => json!(null),
    };
    write(
        &dir.join("status.json"),
        json!({"status": c.status, "message": message, "wall_seconds": 10.0,
               "diverged_at_step": diverged_step, "finished_at": "2026-01-01T00:00:00Z"})
        .to_string(),
    );
    let mut csv = String::from(
        "epoch,step,temperature,timestep_factor,train_nll,train_accuracy,kinetic_temperature,\
         kinetic_in_band,configurational_temperature,members,wall_seconds\n",
    );
    for e in 0..4 {
        csv.push_str(&format!(
            "{e},{},{},1.0,0.5,0.9,{},{},{},{},{}\n",
            e * 100,
            c.t,
            c.t * 1.01,
            if e % 2 == 0 { "true" } else { "false" },
            c.t * 0.98,
            e,
            e as f64 * 2.5
        ));
    }
    write(&dir.join("epochs.csv"), csv);
    if c.status == "failed" {
        return;
    }
    let growth: Vec<_> = (1..=3)
        .map(|m| {
            let f = 1.0 + 0.2 * (3 - m) as f64;
            json!({"members": m, "accuracy": c.accuracy / f, "nll": c.nll * f,
                   "brier": c.brier * f, "ece": c.ece * f})
        })
        .collect();
    write(
        &dir.join("metrics.json"),
        json!({
            "members": 3,
            "ensemble": {"accuracy": c.accuracy, "accuracy_se": c.accuracy_se, "nll": c.nll,
                "nll_se": c.nll_se, "gibbs_accuracy": c.accuracy - 0.01, "gibbs_nll": c.nll + 0.1,
                "brier": c.brier, "brier_reliability": 0.01, "brier_resolution": 0.02,
                "brier_uncertainty": 0.9, "ece": c.ece},
            "growth": growth,
            "diagnostics": {"kinetic_in_band_fraction": 0.75, "kinetic_temperature": c.t * 1.02,
                "configurational_temperature": c.t * 0.97}
        })
        .to_string(),
    );
}

fn write_run_files(run: &Path, name: &str) {
    write(
        &run.join("manifest.json"),
        json!({"grid_file": "ablations/synthetic.json", "grid_sha256": "abc123",
               "ablate_version": "0.1.0", "git_revision": "deadbeef", "libtorch_version": "2.11.0",
               "device": "cpu", "plugins": [{"name": "priors", "path": "/p/libpriors.so", "sha256": "feedface"}],
               "machine": {"hostname": "box", "cpus": 2, "os": "linux"},
               "created": "2026-01-01T00:00:00Z", "command": ["ablate", "run", "ablations/synthetic.json"]})
        .to_string(),
    );
    write(
        &run.join("grid.json"),
        json!({"name": name, "description": "A synthetic grid for tests.",
               "base": {}, "axes": [{"path": "prior.name", "values": ["gaussian", "laplace"], "name": "prior"},
               {"path": "temperature", "values": TEMPS}, {"path": "seed", "values": SEEDS}]})
        .to_string(),
    );
}

/// Builds the synthetic run; returns (truths written, expected ids, missing id).
fn build_run(run: &Path) -> (Vec<Truth>, Vec<String>, String) {
    write_run_files(run, "Synthetic cold posterior grid");
    let mut truths = Vec::new();
    let mut expected = Vec::new();
    let mut missing = String::new();
    let mut i = 0;
    let mut cells: Vec<(&'static str, f64, u64)> = Vec::new();
    for p in PRIORS {
        for t in TEMPS {
            for s in SEEDS {
                cells.push((p, t, s));
            }
        }
    }
    // A temperature with one seed only: its se comes from the test-set se.
    cells.push(("gaussian", 2.0, 1));
    for (prior, t, seed) in cells {
        i += 1;
        let id = format!("c{i:02}x{:08x}", (i as u64).wrapping_mul(2654435761));
        expected.push(id.clone());
        if prior == "laplace" && t == 1.0 && seed == 3 {
            missing = id;
            continue;
        }
        let (nll, acc) = base(prior, t);
        let jitter = (seed as f64 - 2.0) * 0.01 + (seed as f64).powi(2) * 0.001;
        let mut status = "done";
        let mut step = None;
        if prior == "laplace" && t == 0.1 && seed == 3 {
            status = "failed";
        }
        if prior == "laplace" && t == 0.01 && seed == 2 {
            status = "diverged";
            step = Some(1234);
        }
        let c = Truth {
            id,
            prior,
            t,
            seed,
            status,
            // the diverged cell's last finite metrics are absurd: they must not enter the summary
            accuracy: if status == "diverged" { 0.1 } else { acc + jitter * 0.5 },
            accuracy_se: 0.002 + 0.0001 * seed as f64,
            nll: if status == "diverged" { 9.0 } else { nll + jitter },
            nll_se: 0.005 + 0.0002 * seed as f64,
            brier: 0.1 + jitter,
            ece: 0.02 + jitter * 0.1,
        };
        write_cell(run, &c, step);
        truths.push(c);
    }
    (truths, expected, missing)
}

fn mean_se(v: &[f64]) -> (f64, f64) {
    let k = v.len() as f64;
    let mean = v.iter().sum::<f64>() / k;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (k - 1.0);
    (mean, (var / k).sqrt())
}

/// summary.csv parsed by hand: (prior, temperature) -> column -> text.
fn read_summary(path: &Path) -> BTreeMap<(String, String), BTreeMap<String, String>> {
    let text = fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let mut out = BTreeMap::new();
    for line in lines {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields.len(), header.len(), "{line}");
        let row: BTreeMap<String, String> =
            header.iter().zip(&fields).map(|(h, f)| (h.to_string(), f.to_string())).collect();
        let t: f64 = row["temperature"].parse().unwrap();
        out.insert((row["prior"].clone(), format!("{t}")), row);
    }
    out
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
}

#[test]
fn report_numbers_match_an_independent_computation() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path();
    let (truths, expected, missing_id) = build_run(run);
    let summary =
        write_report(run, &ReportOptions { expected_cells: Some(expected.clone()), ..Default::default() }).unwrap();

    assert_eq!(summary.cells_found, truths.len());
    assert_eq!(summary.cells_failed, 1);
    assert_eq!(summary.cells_diverged, 1);
    assert_eq!(summary.cells_done, truths.len() - 2);
    assert_eq!(summary.missing, vec![missing_id.clone()]);

    let rows = read_summary(&summary.summary_csv);
    let mut groups: BTreeMap<(String, String), Vec<&Truth>> = BTreeMap::new();
    for t in &truths {
        groups.entry((t.prior.to_string(), format!("{}", t.t))).or_default().push(t);
    }
    assert_eq!(rows.len(), groups.len());
    for (key, cells) in &groups {
        let row = &rows[key];
        let done: Vec<&&Truth> = cells.iter().filter(|c| c.status == "done").collect();
        let count = |s: &str| cells.iter().filter(|c| c.status == s).count().to_string();
        assert_eq!(row["n_cells"], cells.len().to_string(), "{key:?}");
        assert_eq!(row["n_done"], count("done"), "{key:?}");
        assert_eq!(row["n_failed"], count("failed"), "{key:?}");
        assert_eq!(row["n_diverged"], count("diverged"), "{key:?}");
        type Field = fn(&Truth) -> f64;
        let metrics: [(&str, Field, Option<Field>); 4] = [
            ("accuracy", |c| c.accuracy, Some(|c| c.accuracy_se)),
            ("nll", |c| c.nll, Some(|c| c.nll_se)),
            ("brier", |c| c.brier, None),
            ("ece", |c| c.ece, None),
        ];
        for (m, value, test_se) in metrics {
            let v: Vec<f64> = done.iter().map(|c| value(c)).collect();
            let got_mean: f64 = row[&format!("{m}_mean")].parse().unwrap();
            let got_se = &row[&format!("{m}_se")];
            if v.len() >= 2 {
                let (mean, se) = mean_se(&v);
                assert!(close(got_mean, mean), "{key:?} {m}: {got_mean} vs {mean}");
                let got_se: f64 = got_se.parse().unwrap();
                assert!(close(got_se, se), "{key:?} {m} se: {got_se} vs {se}");
            } else {
                assert_eq!(v.len(), 1);
                assert!(close(got_mean, v[0]));
                match test_se {
                    Some(f) => {
                        let got_se: f64 = got_se.parse().unwrap();
                        assert!(close(got_se, f(done[0])), "{key:?} {m}");
                    }
                    None => assert_eq!(got_se, "", "{key:?} {m}"),
                }
            }
        }
    }

    // Verdicts: gaussian shows the effect, laplace does not.
    assert_eq!(summary.verdicts.len(), 2);
    let g = summary.verdicts.iter().find(|v| v.level == "prior=gaussian").unwrap();
    let l = summary.verdicts.iter().find(|v| v.level == "prior=laplace").unwrap();
    assert_eq!(g.nll.outcome, Outcome::Present, "{g:?}");
    assert_eq!(g.accuracy.outcome, Outcome::Present, "{g:?}");
    assert_eq!(g.nll.best_cold.unwrap().temperature, 0.1);
    assert_eq!(l.nll.outcome, Outcome::Absent, "{l:?}");
    assert_eq!(l.accuracy.outcome, Outcome::Absent, "{l:?}");

    // The verdict's numbers agree with the independent means and standard errors.
    let nll_of = |prior: &str, t: f64| {
        let v: Vec<f64> =
            truths.iter().filter(|c| c.prior == prior && c.t == t && c.status == "done").map(|c| c.nll).collect();
        mean_se(&v)
    };
    let (m01, se01) = nll_of("gaussian", 0.1);
    let (m1, se1) = nll_of("gaussian", 1.0);
    assert!(close(g.nll.improvement.unwrap(), m1 - m01));
    assert!(close(g.nll.combined_se.unwrap(), (se01 * se01 + se1 * se1).sqrt()));

    // report.md
    let md = fs::read_to_string(&summary.report_md).unwrap();
    for needle in [
        "# Synthetic cold posterior grid",
        "A synthetic grid for tests.",
        "`ablate run ablations/synthetic.json`",
        "deadbeef",
        "feedface",
        "2.11.0",
        "Rule: The cold posterior effect is **present**",
        "### prior=gaussian",
        "### prior=laplace",
        "plugin error: boom",
        "loss became NaN",
        "1234",
        &missing_id,
        "0 (SGD)",
        "## Diagnostics",
        "## Ensemble size",
        "### `results.parquet` / `results.csv`",
        "plots/nll_vs_temperature.svg",
    ] {
        assert!(md.contains(needle), "report.md lacks {needle:?}:\n{md}");
    }
    // The wall time total: 10 s per cell.
    assert!(md.contains(&format!("{:.1} s", 10.0 * truths.len() as f64)));
    // The SGD reference line of the gaussian level.
    let (sgd_acc, sgd_acc_se) =
        mean_se(&truths.iter().filter(|c| c.prior == "gaussian" && c.t == 0.0).map(|c| c.accuracy).collect::<Vec<_>>());
    assert!(md.contains(&format!("SGD reference (T = 0): accuracy {:.4} ± {:.4}", sgd_acc, sgd_acc_se)), "{md}");

    // Plots: well-formed SVG, one legend entry per factor level / temperature.
    assert!(!summary.plots.is_empty());
    for p in &summary.plots {
        let text = fs::read_to_string(p).unwrap();
        let doc =
            roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{} is not well-formed XML: {e}", p.display()));
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        let texts: Vec<String> = doc
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .map(|n| n.text().unwrap_or("").trim().to_string())
            .collect();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with("_vs_temperature.svg") {
            for level in ["prior=gaussian", "prior=laplace"] {
                assert_eq!(texts.iter().filter(|t| *t == level).count(), 1, "{name}: legend entries {texts:?}");
            }
            let polylines = doc.descendants().filter(|n| n.has_tag_name("polyline")).count();
            assert!(polylines >= 2, "{name}: {polylines} polylines");
        } else {
            assert!(name.starts_with("growth_nll_"), "{name}");
            let legend: Vec<&String> = texts.iter().filter(|t| t.starts_with("T = ")).collect();
            let n_temps = if name.contains("gaussian") { 5 } else { 4 };
            assert_eq!(legend.len(), n_temps, "{name}: {legend:?}");
        }
    }
    let names: Vec<String> =
        summary.plots.iter().map(|p| p.file_name().unwrap().to_string_lossy().to_string()).collect();
    assert!(names.contains(&"accuracy_vs_temperature.svg".to_string()));
    assert!(names.contains(&"nll_vs_temperature.svg".to_string()));
    assert!(names.contains(&"growth_nll_prior_gaussian.svg".to_string()));

    // Parquet round trip with polars, compared with the truth and with results.csv.
    use polars::prelude::*;
    let df = ParquetReader::new(fs::File::open(&summary.results_parquet).unwrap()).finish().unwrap();
    let names: Vec<String> = df.get_column_names().iter().map(|s| s.to_string()).collect();
    assert_eq!(names, ["cell_id", "status", "prior", "temperature", "seed", "metric", "value", "se"]);
    let csv = CsvReadOptions::default()
        .with_has_header(true)
        .try_into_reader_with_file_path(Some(summary.results_csv.clone()))
        .unwrap()
        .finish()
        .unwrap();
    assert_eq!(csv.height(), df.height());
    let ids = df.column("cell_id").unwrap().str().unwrap().clone();
    let metric = df.column("metric").unwrap().str().unwrap().clone();
    let value = df.column("value").unwrap().f64().unwrap().clone();
    let se = df.column("se").unwrap().f64().unwrap().clone();
    let status = df.column("status").unwrap().str().unwrap().clone();
    let seed = df.column("seed").unwrap().u64().unwrap().clone();
    let mut checked = 0;
    for t in &truths {
        let rows: Vec<usize> = (0..df.height()).filter(|&i| ids.get(i) == Some(t.id.as_str())).collect();
        assert!(!rows.is_empty(), "{} has no rows", t.id);
        for &i in &rows {
            assert_eq!(status.get(i), Some(t.status));
            assert_eq!(seed.get(i), Some(t.seed));
        }
        let find = |m: &str| rows.iter().copied().find(|&i| metric.get(i) == Some(m));
        if t.status == "failed" {
            assert!(find("nll").is_none());
            // thermometers from epochs.csv: last epoch, in-band fraction = 2 of 4 epochs
            let i = find("kinetic_in_band_fraction").unwrap();
            assert!(close(value.get(i).unwrap(), 0.5));
            let i = find("kinetic_temperature").unwrap();
            assert!(close(value.get(i).unwrap(), t.t * 1.01));
        } else {
            let i = find("nll").unwrap();
            assert!(close(value.get(i).unwrap(), t.nll));
            assert!(close(se.get(i).unwrap(), t.nll_se));
            let i = find("accuracy").unwrap();
            assert!(close(value.get(i).unwrap(), t.accuracy));
            let i = find("brier").unwrap();
            assert!(se.get(i).is_none());
            checked += 1;
        }
    }
    assert_eq!(checked, truths.len() - 1);

    // growth.csv round trip
    let growth = CsvReadOptions::default()
        .with_has_header(true)
        .try_into_reader_with_file_path(Some(summary.growth_csv.clone()))
        .unwrap()
        .finish()
        .unwrap();
    let with_metrics = truths.iter().filter(|t| t.status != "failed").count();
    assert_eq!(growth.height(), with_metrics * 3 * 4);
}

#[test]
fn verdict_is_undetermined_without_t1_and_missing_cells_without_expected_list() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path();
    write_run_files(run, "No T=1");
    let mut n = 0;
    for t in [0.05, 0.2] {
        for seed in [1, 2] {
            n += 1;
            let (nll, acc) = base("gaussian", if t == 0.05 { 0.01 } else { 0.1 });
            write_cell(
                run,
                &Truth {
                    id: format!("cell{n}"),
                    prior: "gaussian",
                    t,
                    seed,
                    status: "done",
                    accuracy: acc + seed as f64 * 0.001,
                    accuracy_se: 0.01,
                    nll: nll + seed as f64 * 0.01,
                    nll_se: 0.01,
                    brier: 0.1,
                    ece: 0.01,
                },
                None,
            );
        }
    }
    // A running cell: unfinished, listed as missing without an expected list.
    let dir = run.join("cells").join("cell_running");
    write(&dir.join("labels.json"), json!({"prior": "gaussian", "temperature": 1.0, "seed": 1}).to_string());
    write(
        &dir.join("status.json"),
        json!({"status": "running", "message": null, "wall_seconds": 1.0,
               "diverged_at_step": null, "finished_at": null})
        .to_string(),
    );
    let out = tmp.path().join("elsewhere");
    let summary = write_report(run, &ReportOptions { out_dir: Some(out.clone()), ..Default::default() }).unwrap();
    assert_eq!(summary.out_dir, out);
    assert!(out.join("report.md").exists());
    assert_eq!(summary.missing, vec!["cell_running".to_string()]);
    assert_eq!(summary.verdicts.len(), 1);
    assert_eq!(summary.verdicts[0].nll.outcome, Outcome::Undetermined);
    assert_eq!(summary.verdicts[0].accuracy.outcome, Outcome::Undetermined);
    let md = fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("**undetermined** (no T = 1 result)"), "{md}");
    assert!(md.contains("no T = 0 cell with results"), "{md}");
}

/// A cell folder without readable labels cannot be placed in any table: it is reported as
/// missing (the next run of the grid runs it again), whether its worker died before writing
/// them (only config.json, or a status too) or the file is damaged; the report still comes out.
#[test]
fn a_cell_without_readable_labels_is_missing_not_a_failed_report() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path();
    write_run_files(run, "broken");
    fs::create_dir_all(run.join("cells").join("bad")).unwrap();
    let expected = Some(vec!["bad".to_string()]);
    let report = || write_report(run, &ReportOptions { expected_cells: expected.clone(), ..Default::default() });
    fs::write(run.join("cells/bad/config.json"), "{}").unwrap();
    assert_eq!(report().unwrap().missing, ["bad"], "only config.json");
    fs::write(run.join("cells/bad/status.json"), r#"{"status": "interrupted"}"#).unwrap();
    assert_eq!(report().unwrap().missing, ["bad"], "a status but no labels");
    fs::write(run.join("cells/bad/labels.json"), r#"{"temperature": 1.0, "se"#).unwrap();
    assert_eq!(report().unwrap().missing, ["bad"], "damaged labels");
}

/// The prior predictive table pools each level's cells, weighted by their draws.
#[test]
fn prior_predictive_section_pools_the_cells_of_a_level() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path();
    let (truths, expected, _) = build_run(run);
    // Two gaussian cells with (draws, share, se) = (10, 0.6, 0.02) and (30, 0.8, 0.01).
    let mut cells = truths.iter().filter(|t| t.prior == "gaussian" && t.status == "done");
    for (draws, share, se) in [(10u64, 0.6, 0.02), (30, 0.8, 0.01)] {
        let c = cells.next().unwrap();
        let path = run.join("cells").join(&c.id).join("metrics.json");
        let mut m: serde_json::Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        m["prior_predictive"] = json!({"samples": draws, "inputs": 500, "top_class_fraction": share,
                                       "top_class_fraction_se": se, "class_counts": [1, 2, 3]});
        fs::write(&path, m.to_string()).unwrap();
    }
    let summary = write_report(run, &ReportOptions { expected_cells: Some(expected), ..Default::default() }).unwrap();
    let md = fs::read_to_string(&summary.report_md).unwrap();
    let section =
        md.split("## Prior predictive").nth(1).expect("prior predictive section").split("\n## ").next().unwrap();
    // Independent: (10·0.6 + 30·0.8)/40 = 0.75; SE sqrt((10·0.02)² + (30·0.01)²)/40.
    let se = ((10.0f64 * 0.02).powi(2) + (30.0f64 * 0.01).powi(2)).sqrt() / 40.0;
    let row = section.lines().find(|l| l.contains("gaussian")).expect("a gaussian row");
    assert!(row.contains("| 2 | 40 | 500 |"), "{row}");
    assert!(row.contains("0.7500"), "{row}");
    assert!(row.contains(&format!("{se:.4}")), "{row} (se {se})");
    assert!(!section.contains("laplace"), "levels without the check are not listed:\n{section}");
}

/// A cell folder that is not in the grid's list (copied in from another run) is left out of
/// every table and named in report.md, instead of being averaged in as one more seed.
#[test]
fn cells_outside_the_grid_are_left_out_and_named() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path();
    let (truths, expected, _) = build_run(run);
    let clean =
        write_report(run, &ReportOptions { expected_cells: Some(expected.clone()), ..Default::default() }).unwrap();
    let before = std::fs::read(&clean.summary_csv).unwrap();
    // A foreign cell with the labels of an existing one and absurd numbers.
    let mut foreign = Truth { id: "ffffffffffffffff".into(), ..truths[0].clone() };
    foreign.nll = 50.0;
    write_cell(run, &foreign, None);
    let summary = write_report(run, &ReportOptions { expected_cells: Some(expected), ..Default::default() }).unwrap();
    assert_eq!(summary.outside_grid, vec!["ffffffffffffffff".to_string()]);
    assert_eq!(summary.cells_found, truths.len());
    assert_eq!(std::fs::read(&summary.summary_csv).unwrap(), before, "the foreign cell changed summary.csv");
    let md = std::fs::read_to_string(&summary.report_md).unwrap();
    assert!(md.contains("## Cells outside the grid") && md.contains("`ffffffffffffffff`"), "{md}");
}

/// Seeds are any 64-bit unsigned integers: above 2⁵³ a float loses them, so results.csv read
/// back 9007199254740993 as …992, and seeds above i64::MAX were saturated.
#[test]
fn seeds_beyond_double_precision_reach_the_tables_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path();
    let (truths, expected, _) = build_run(run);
    for (k, seed) in [9_007_199_254_740_993u64, u64::MAX].into_iter().enumerate() {
        let big = Truth { id: format!("b{k}ffffffffffffff"), seed, ..truths[0].clone() };
        write_cell(run, &big, None);
    }
    let summary = write_report(run, &ReportOptions { skip_plots: true, ..Default::default() }).unwrap();
    let csv = std::fs::read_to_string(&summary.results_csv).unwrap();
    for seed in ["9007199254740993", "18446744073709551615"] {
        assert!(csv.lines().any(|l| l.split(',').any(|f| f == seed)), "seed {seed} not in results.csv");
    }
    let _ = expected;
}

/// A done cell whose kinetic temperature crossed the engine's alarm (1000 × max(T, 1)) in some
/// epoch is named under Diagnostics and warned about below the verdicts: its numbers still
/// count there, so the reader must know.
#[test]
fn unstable_done_cells_are_named_with_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path();
    let (truths, expected, _) = build_run(run);
    let clean =
        write_report(run, &ReportOptions { expected_cells: Some(expected.clone()), ..Default::default() }).unwrap();
    let md = std::fs::read_to_string(&clean.report_md).unwrap();
    assert!(!md.contains("Unstable cells") && !md.contains("**Warning:**"), "{md}");
    let hot = truths.iter().find(|t| t.status == "done").unwrap();
    let path = run.join("cells").join(&hot.id).join("epochs.csv");
    let text = std::fs::read_to_string(&path).unwrap();
    // Epoch 2's kinetic temperature (7th column) blown up to 1e20.
    let lines: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 3 {
                let mut f: Vec<String> = l.split(',').map(str::to_owned).collect();
                f[6] = "1e20".into();
                f.join(",")
            } else {
                l.to_owned()
            }
        })
        .collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let summary = write_report(run, &ReportOptions { expected_cells: Some(expected), ..Default::default() }).unwrap();
    let md = std::fs::read_to_string(&summary.report_md).unwrap();
    assert!(md.contains("**Warning:** 1 done cell(s) had a kinetic temperature more than 1000 times"), "{md}");
    assert!(md.contains("### Unstable cells") && md.contains(&format!("| `{}` |", hot.id)), "{md}");
}
