//! Reading a run folder: `manifest.json`, `grid.json` and every `cells/<id>/` (in parallel).
//!
//! Only `manifest.json`, `grid.json` and each cell's `labels.json` are required; a cell without
//! `status.json` is reported as not started, `metrics.json` is read when present (done cells, and
//! diverged cells that kept their last finite metrics), `epochs.csv` when present.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Deserialize;
use serde_json::Value;

use crate::ReportError;

/// `manifest.json`: what ran, where, with which versions. Every field is optional so that a
/// report can still be written for an older or partial manifest.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Manifest {
    pub grid_file: Option<String>,
    pub grid_sha256: Option<String>,
    pub ablate_version: Option<String>,
    pub git_revision: Option<String>,
    pub libtorch_version: Option<String>,
    pub device: Option<String>,
    pub plugins: Vec<Plugin>,
    pub machine: Option<Machine>,
    pub created: Option<String>,
    /// A string or an argv array.
    pub command: Value,
}

impl Manifest {
    /// The command line as one string (an argv array is joined with spaces).
    pub fn command_line(&self) -> Option<String> {
        match &self.command {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            Value::Array(parts) => Some(
                parts
                    .iter()
                    .map(|p| match p {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            other => Some(other.to_string()),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Plugin {
    pub name: String,
    pub path: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Machine {
    pub hostname: Option<String>,
    pub cpus: Option<u64>,
    pub os: Option<String>,
}

/// The parts of `grid.json` the report shows.
#[derive(Debug, Clone, Default)]
pub struct GridInfo {
    pub name: Option<String>,
    pub description: Option<String>,
    /// Axis display names in grid order (the `name` of an axis, else its `path`).
    pub axes: Vec<String>,
}

/// Final state of a cell (`status.json`), or [`Status::NotStarted`] when that file is absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    Done,
    Failed,
    Diverged,
    Running,
    NotStarted,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Done => "done",
            Status::Failed => "failed",
            Status::Diverged => "diverged",
            Status::Running => "running",
            Status::NotStarted => "not_started",
        }
    }

    /// Done, failed or diverged: the cell will not change any more.
    pub fn is_finished(self) -> bool {
        matches!(self, Status::Done | Status::Failed | Status::Diverged)
    }
}

#[derive(Debug, Clone, Deserialize)]
struct StatusFile {
    status: String,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    wall_seconds: Option<f64>,
    #[serde(default)]
    diverged_at_step: Option<u64>,
    #[serde(default)]
    finished_at: Option<String>,
}

/// `metrics.json` of a cell. Values are optional because a diverged cell may have lost some.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Metrics {
    pub members: Option<u64>,
    pub ensemble: Ensemble,
    pub growth: Vec<GrowthPoint>,
    pub diagnostics: Diagnostics,
    /// The prior predictive check, when the cell ran it (`eval.prior_samples`).
    pub prior_predictive: Option<PriorPredictive>,
    /// Each member's mean test log-likelihood (for R-hat across chains).
    pub member_test_log_likelihood: Option<Vec<f64>>,
    /// Set by `ablate report --recompute`: the metrics were recomputed from this file.
    pub recomputed_from: Option<String>,
}

/// Share of inputs that prior draws assign to their most frequent class.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PriorPredictive {
    pub samples: u64,
    pub inputs: u64,
    pub top_class_fraction: f64,
    pub top_class_fraction_se: f64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Ensemble {
    pub accuracy: Option<f64>,
    pub accuracy_se: Option<f64>,
    pub nll: Option<f64>,
    pub nll_se: Option<f64>,
    pub gibbs_accuracy: Option<f64>,
    pub gibbs_nll: Option<f64>,
    pub brier: Option<f64>,
    pub brier_reliability: Option<f64>,
    pub brier_resolution: Option<f64>,
    pub brier_uncertainty: Option<f64>,
    pub ece: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct GrowthPoint {
    pub members: u64,
    pub accuracy: Option<f64>,
    pub nll: Option<f64>,
    pub brier: Option<f64>,
    pub ece: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Diagnostics {
    pub kinetic_in_band_fraction: Option<f64>,
    pub kinetic_temperature: Option<f64>,
    pub configurational_temperature: Option<f64>,
}

/// `epochs.csv` as columns of numbers (`true`/`false` read as 1/0, unparsable as NaN).
#[derive(Debug, Clone, Default)]
pub struct Epochs {
    pub columns: BTreeMap<String, Vec<f64>>,
    pub rows: usize,
}

impl Epochs {
    /// The value of `column` in the last epoch.
    pub fn last(&self, column: &str) -> Option<f64> {
        self.columns.get(column).and_then(|v| v.last().copied())
    }

    /// Mean of the finite values of `column` over all epochs.
    pub fn mean(&self, column: &str) -> Option<f64> {
        let v: Vec<f64> = self.columns.get(column)?.iter().copied().filter(|x| x.is_finite()).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    }
}

/// One cell folder.
#[derive(Debug, Clone)]
pub struct Cell {
    pub id: String,
    /// Axis display name -> value, in the order of `labels.json`, temperature and seed included.
    pub labels: Vec<(String, Value)>,
    pub temperature: f64,
    pub seed: i64,
    pub status: Status,
    pub message: Option<String>,
    pub wall_seconds: Option<f64>,
    pub diverged_at_step: Option<u64>,
    pub finished_at: Option<String>,
    pub metrics: Option<Metrics>,
    pub epochs: Option<Epochs>,
}

impl Cell {
    /// The factor labels (every label but temperature and seed) as strings.
    pub fn factor(&self, name: &str) -> Option<String> {
        self.labels.iter().find(|(k, _)| k == name).map(|(_, v)| label_string(v))
    }

    /// End-of-run thermometers: from `metrics.json` diagnostics, else from `epochs.csv`
    /// (last epoch; in-band fraction = mean of `kinetic_in_band` over epochs).
    pub fn diagnostics(&self) -> Diagnostics {
        let from_metrics = self.metrics.as_ref().map(|m| m.diagnostics.clone()).unwrap_or_default();
        let ep = self.epochs.as_ref();
        Diagnostics {
            kinetic_in_band_fraction: from_metrics
                .kinetic_in_band_fraction
                .or_else(|| ep.and_then(|e| e.mean("kinetic_in_band"))),
            kinetic_temperature: from_metrics
                .kinetic_temperature
                .or_else(|| ep.and_then(|e| e.last("kinetic_temperature"))),
            configurational_temperature: from_metrics
                .configurational_temperature
                .or_else(|| ep.and_then(|e| e.last("configurational_temperature"))),
        }
    }
}

/// A label value as text: strings unquoted, numbers and booleans as JSON writes them.
pub fn label_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A whole run folder.
#[derive(Debug, Clone)]
pub struct Run {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub grid: GridInfo,
    /// Sorted by cell id.
    pub cells: Vec<Cell>,
    /// Factor names: every label except temperature and seed; grid axis order first, then in
    /// order of first appearance.
    pub factors: Vec<String>,
}

impl Run {
    pub fn read(dir: &Path) -> Result<Run, ReportError> {
        let manifest: Manifest = read_json(&dir.join("manifest.json"))?;
        let grid = read_grid(&dir.join("grid.json"))?;

        let cells_dir = dir.join("cells");
        let mut cell_dirs = Vec::new();
        if cells_dir.exists() {
            let entries = std::fs::read_dir(&cells_dir)
                .map_err(|source| ReportError::Read { path: cells_dir.clone(), source })?;
            for entry in entries {
                let entry = entry.map_err(|source| ReportError::Read { path: cells_dir.clone(), source })?;
                // Hidden entries (`.junk`, temporary folders) are not cells.
                if entry.path().is_dir() && !entry.file_name().to_string_lossy().starts_with('.') {
                    cell_dirs.push(entry.path());
                }
            }
        }
        let mut cells: Vec<Cell> =
            cell_dirs.par_iter().map(|p| read_cell(p)).collect::<Result<Vec<_>, _>>()?.into_iter().flatten().collect();
        cells.sort_by(|a, b| a.id.cmp(&b.id));

        let mut factors: Vec<String> = Vec::new();
        let mut push = |name: &str| {
            if name != "temperature" && name != "seed" && !factors.iter().any(|f| f == name) {
                factors.push(name.to_string());
            }
        };
        let present = |name: &str| cells.iter().any(|c| c.labels.iter().any(|(k, _)| k == name));
        for axis in &grid.axes {
            if present(axis) {
                push(axis);
            }
        }
        for cell in &cells {
            for (k, _) in &cell.labels {
                push(k);
            }
        }

        Ok(Run { dir: dir.to_path_buf(), manifest, grid, cells, factors })
    }

    /// Cells without a finished status: with `expected`, every expected id that is absent or
    /// unfinished; without, every unfinished cell folder. Sorted.
    pub fn missing_cells(&self, expected: Option<&[String]>) -> Vec<String> {
        let finished = |id: &str| self.cells.iter().any(|c| c.id == id && c.status.is_finished());
        let mut out: Vec<String> = match expected {
            Some(ids) => ids.iter().filter(|id| !finished(id)).cloned().collect(),
            None => self.cells.iter().filter(|c| !c.status.is_finished()).map(|c| c.id.clone()).collect(),
        };
        out.sort();
        out.dedup();
        out
    }

    /// Sum of the wall times of all cells.
    pub fn total_wall_seconds(&self) -> f64 {
        self.cells.iter().filter_map(|c| c.wall_seconds).sum()
    }
}

fn read_text(path: &Path) -> Result<String, ReportError> {
    std::fs::read_to_string(path).map_err(|source| ReportError::Read { path: path.to_path_buf(), source })
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ReportError> {
    serde_json::from_str(&read_text(path)?).map_err(|source| ReportError::Json { path: path.to_path_buf(), source })
}

fn read_grid(path: &Path) -> Result<GridInfo, ReportError> {
    let v: Value = read_json(path)?;
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let axes = v
        .get("axes")
        .and_then(Value::as_array)
        .map(|axes| {
            axes.iter()
                .filter_map(|a| {
                    a.get("name")
                        .and_then(Value::as_str)
                        .or_else(|| a.get("path").and_then(Value::as_str))
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(GridInfo { name: text("name"), description: text("description"), axes })
}

/// One cell folder; `None` for a folder without `labels.json` and `status.json` (its worker
/// died before writing them: the cell has not started, and an expected cell's absence is
/// reported as missing).
fn read_cell(dir: &Path) -> Result<Option<Cell>, ReportError> {
    let id = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();

    let labels_path = dir.join("labels.json");
    if !labels_path.exists() && !dir.join("status.json").exists() {
        return Ok(None);
    }
    let labels: serde_json::Map<String, Value> = read_json(&labels_path)?;
    let number = |name: &str| -> Result<f64, ReportError> {
        labels.get(name).and_then(Value::as_f64).ok_or_else(|| ReportError::Invalid {
            path: labels_path.clone(),
            message: format!("label `{name}` is missing or not a number"),
        })
    };
    let temperature = number("temperature")?;
    let seed = number("seed")?.round() as i64;
    let labels: Vec<(String, Value)> = labels.into_iter().collect();

    let status_path = dir.join("status.json");
    let status_file: Option<StatusFile> = if status_path.exists() { Some(read_json(&status_path)?) } else { None };
    let status = match status_file.as_ref().map(|s| s.status.as_str()) {
        None => Status::NotStarted,
        Some("done") => Status::Done,
        Some("failed") => Status::Failed,
        Some("diverged") => Status::Diverged,
        // A worker killed from outside: unfinished, the next run of the grid runs it again.
        Some("running") | Some("interrupted") => Status::Running,
        Some(other) => {
            return Err(ReportError::Invalid {
                path: status_path,
                message: format!("unknown status `{other}` (expected running, done, failed, diverged or interrupted)"),
            })
        }
    };

    let metrics_path = dir.join("metrics.json");
    const RECOMPUTE: &str = "run the grid again with `ablate run <grid file> --out <parent of this run folder>` \
                             (the grid file is named in manifest.json): it recomputes cells marked done \
                             without readable metrics";
    let metrics = if metrics_path.exists() {
        let m = read_json::<Metrics>(&metrics_path).map_err(|e| match (status, e) {
            (Status::Done, ReportError::Json { path, source }) => {
                ReportError::Invalid { path, message: format!("cannot be parsed ({source}); {RECOMPUTE}") }
            }
            (_, e) => e,
        })?;
        Some(m)
    } else {
        None
    };
    if status == Status::Done && metrics.is_none() {
        // Counting it as done would silently take the mean over the other seeds.
        return Err(ReportError::Invalid {
            path: metrics_path,
            message: format!("is missing, but the cell's status.json says done; {RECOMPUTE}"),
        });
    }

    let epochs_path = dir.join("epochs.csv");
    let epochs = if epochs_path.exists() { Some(parse_epochs(&read_text(&epochs_path)?, &epochs_path)?) } else { None };

    let (message, wall_seconds, diverged_at_step, finished_at) = match status_file {
        Some(s) => (s.message, s.wall_seconds, s.diverged_at_step, s.finished_at),
        None => (None, None, None, None),
    };
    Ok(Some(Cell {
        id,
        labels,
        temperature,
        seed,
        status,
        message,
        wall_seconds,
        diverged_at_step,
        finished_at,
        metrics,
        epochs,
    }))
}

/// A plain comma-separated file with a header and numeric (or boolean) fields.
fn parse_epochs(text: &str, path: &Path) -> Result<Epochs, ReportError> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return Ok(Epochs::default());
    };
    let names: Vec<String> = header.split(',').map(|s| s.trim().to_string()).collect();
    let mut columns: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut rows = 0;
    for (i, line) in lines.enumerate() {
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != names.len() {
            return Err(ReportError::Invalid {
                path: path.to_path_buf(),
                message: format!("line {}: {} fields, the header has {}", i + 2, fields.len(), names.len()),
            });
        }
        for (col, field) in columns.iter_mut().zip(fields) {
            let f = field.trim();
            let v = match f {
                "true" | "True" => 1.0,
                "false" | "False" => 0.0,
                _ => f.parse::<f64>().unwrap_or(f64::NAN),
            };
            col.push(v);
        }
        rows += 1;
    }
    Ok(Epochs { columns: names.into_iter().zip(columns).collect(), rows })
}
