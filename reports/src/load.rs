//! Reading a run folder: `manifest.json`, `grid.json` and every `cells/<id>/` (in parallel).
//!
//! Only `manifest.json`, `grid.json` and each cell's `labels.json` are required; a cell without
//! `status.json` is reported as not started, `metrics.json` is read when present (done cells, and
//! diverged cells that kept their last finite metrics), `epochs.csv` when present.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use ablate_records::float::present;
use ablate_records::{
    parse_epochs_csv, CellState, CellStatus, CELLS, CONFIG, EPOCHS, GRID, LABELS, MANIFEST, METRICS, STATUS,
};
use rayon::prelude::*;
use serde_json::Value;

use crate::ReportError;

pub use ablate_records::{EpochRow, FinalMetrics, Manifest, PriorPredictive, Provenance};

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

impl From<CellState> for Status {
    fn from(state: CellState) -> Status {
        match state {
            CellState::Done => Status::Done,
            CellState::Failed => Status::Failed,
            CellState::Diverged => Status::Diverged,
            // A worker killed from outside: unfinished, the next run of the grid runs it again.
            CellState::Running | CellState::Interrupted => Status::Running,
        }
    }
}

/// End-of-run thermometers of a cell, each when known.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics {
    pub kinetic_in_band_fraction: Option<f64>,
    pub kinetic_temperature: Option<f64>,
    pub configurational_temperature: Option<f64>,
}

/// Mean of the finite values of one column of `epochs.csv`.
fn epochs_mean(rows: &[EpochRow], column: impl Fn(&EpochRow) -> f64) -> Option<f64> {
    let v: Vec<f64> = rows.iter().map(column).filter(|x| x.is_finite()).collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// One column of the last epoch of `epochs.csv` (`None` when NaN or no epoch).
fn epochs_last(rows: &[EpochRow], column: impl Fn(&EpochRow) -> f64) -> Option<f64> {
    rows.last().map(column).and_then(present)
}

/// One cell folder.
#[derive(Debug, Clone)]
pub struct Cell {
    pub id: String,
    /// Axis display name -> value, in the order of `labels.json`, temperature and seed included.
    pub labels: Vec<(String, Value)>,
    pub temperature: f64,
    pub seed: u64,
    pub status: Status,
    pub message: Option<String>,
    pub wall_seconds: Option<f64>,
    pub diverged_at_step: Option<u64>,
    pub finished_at: Option<String>,
    /// The build and plugin libraries that computed the cell (`None` in older run folders).
    pub provenance: Option<Provenance>,
    /// What decides the cell's data (its config's `data` section, and its seed under label
    /// noise); `None` without a readable config.json.
    pub data_key: Option<String>,
    pub metrics: Option<FinalMetrics>,
    pub epochs: Option<Vec<EpochRow>>,
}

impl Cell {
    /// The factor labels (every label but temperature and seed) as strings.
    pub fn factor(&self, name: &str) -> Option<String> {
        self.labels.iter().find(|(k, _)| k == name).map(|(_, v)| label_string(v))
    }

    /// End-of-run thermometers: from `metrics.json` diagnostics, else from `epochs.csv`
    /// (last epoch; in-band fraction = mean of `kinetic_in_band` over epochs).
    pub fn diagnostics(&self) -> Diagnostics {
        let from_metrics = |f: fn(&ablate_records::FinalDiagnostics) -> f64| {
            self.metrics.as_ref().and_then(|m| present(f(&m.diagnostics)))
        };
        let ep = self.epochs.as_deref();
        Diagnostics {
            kinetic_in_band_fraction: from_metrics(|d| d.kinetic_in_band_fraction)
                .or_else(|| ep.and_then(|e| epochs_mean(e, |r| r.kinetic_in_band))),
            kinetic_temperature: from_metrics(|d| d.kinetic_temperature)
                .or_else(|| ep.and_then(|e| epochs_last(e, |r| r.kinetic_temperature))),
            configurational_temperature: from_metrics(|d| d.configurational_temperature)
                .or_else(|| ep.and_then(|e| epochs_last(e, |r| r.configurational_temperature))),
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
        let manifest: Manifest = read_json(&dir.join(MANIFEST))?;
        let grid = read_grid(&dir.join(GRID)).map_err(|e| {
            let restore = format!(
                "the run folder's copy of its grid file is missing or damaged; `ablate run {} --out <parent of \
                 this folder>` restores it (finished cells are skipped)",
                manifest.grid_file
            );
            match e {
                ReportError::Read { path, source } => {
                    ReportError::Invalid { path, message: format!("{source}: {restore}") }
                }
                ReportError::Json { path, source } => {
                    ReportError::Invalid { path, message: format!("is not valid JSON ({source}): {restore}") }
                }
                other => other,
            }
        })?;

        let cells_dir = dir.join(CELLS);
        let mut cell_dirs = Vec::new();
        if cells_dir.exists() {
            let entries = std::fs::read_dir(&cells_dir)
                .map_err(|source| ReportError::Read { path: cells_dir.clone(), source })?;
            for entry in entries {
                let entry = entry.map_err(|source| ReportError::Read { path: cells_dir.clone(), source })?;
                // Hidden entries (`.junk`, temporary folders) are not cells; nor is a symbolic
                // link (`ablate run` refuses it: its results would live elsewhere).
                let linked = entry.file_type().is_ok_and(|t| t.is_symlink());
                if linked {
                    tracing::warn!(path = %entry.path().display(), "a cell folder that is a symbolic link is left out");
                } else if entry.path().is_dir() && !entry.file_name().to_string_lossy().starts_with('.') {
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

    /// Finished cells computed by another build than the manifest's, each with what differs:
    /// a plugin library whose sha256 is none of the manifest's libraries (a rebuilt plugin, or a
    /// cell folder copied from another run), another ablate version or git revision, or other
    /// data than most cells of the same data configuration. Cells without a recorded
    /// provenance (older run folders) are not judged.
    pub fn other_builds(&self) -> Vec<(String, String)> {
        let m = &self.manifest;
        let known: std::collections::HashSet<&str> = m.plugins.iter().map(|p| p.sha256.as_str()).collect();
        let mut data_counts: DataCounts<'_> = HashMap::new();
        for (key, sha) in self.cells.iter().filter(|c| c.status.is_finished()).filter_map(data_record) {
            *data_counts.entry(key).or_default().entry(sha).or_default() += 1;
        }
        let mut out = Vec::new();
        for cell in self.cells.iter().filter(|c| c.status.is_finished()) {
            let Some(p) = &cell.provenance else { continue };
            let mut why: Vec<String> = p
                .plugins
                .iter()
                .filter(|l| !known.contains(l.sha256.as_str()))
                .map(|l| {
                    format!(
                        "{} `{}` from {} (sha256 {}…) is not a library of manifest.json",
                        l.kind,
                        l.name,
                        l.path,
                        l.sha256.get(..12).unwrap_or(&l.sha256)
                    )
                })
                .collect();
            if p.ablate_version != m.ablate_version {
                why.push(format!("ablate {} (manifest: {})", p.ablate_version, m.ablate_version));
            }
            if let (Some(cell_rev), Some(run_rev)) = (&p.git_revision, &m.git_revision) {
                if cell_rev != run_rev {
                    why.push(format!("git revision {cell_rev} (manifest: {run_rev})"));
                }
            }
            why.extend(other_data(cell, &data_counts));
            if !why.is_empty() {
                out.push((cell.id.clone(), why.join("; ")));
            }
        }
        out
    }

    /// Sum of the wall times of all cells.
    pub fn total_wall_seconds(&self) -> f64 {
        self.cells.iter().filter_map(|c| c.wall_seconds).sum()
    }
}

/// Data key → recorded data sha256 → how many finished cells have it.
type DataCounts<'a> = HashMap<&'a str, BTreeMap<&'a str, usize>>;

/// The recorded data sha256 of a cell, with its data key, when both are known.
fn data_record(cell: &Cell) -> Option<(&str, &str)> {
    Some((cell.data_key.as_deref()?, cell.provenance.as_ref()?.data_sha256.as_deref()?))
}

/// Why `cell` was computed on other data than most finished cells of its data configuration
/// (their recorded sha256 differ), if it was.
fn other_data(cell: &Cell, counts: &DataCounts<'_>) -> Option<String> {
    let (key, mine) = data_record(cell)?;
    let (common, n) = counts.get(key)?.iter().max_by_key(|(_, n)| **n)?;
    (*common != mine).then(|| {
        format!(
            "data sha256 {}…, where {n} other cell(s) of the same data configuration have {}…",
            mine.get(..12).unwrap_or(mine),
            common.get(..12).unwrap_or(common)
        )
    })
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

/// `sampler.epochs` of the cell's `config.json`, when that file is there and says it.
fn read_config(dir: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(dir.join(CONFIG)).ok()?).ok()
}

/// What decides the data a cell loads: its `data` section, with its seed when label noise
/// draws from it (the rule of `ablate_engine::data_key`, here on config.json as read).
fn data_key(config: &Value) -> Option<String> {
    let data = config.get("data")?;
    let noisy = data.get("label_noise").and_then(Value::as_f64).is_some_and(|f| f > 0.0);
    let seed = if noisy { config.get("seed").cloned() } else { None };
    serde_json::to_string(&(data, seed)).ok()
}

/// One cell folder; `None` for a folder without a readable `labels.json` (its worker died
/// before writing it, or the file is damaged: an expected cell's absence is reported as
/// missing).
fn read_cell(dir: &Path) -> Result<Option<Cell>, ReportError> {
    let id = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();

    let labels_path = dir.join(LABELS);
    if !labels_path.exists() && !dir.join(STATUS).exists() {
        return Ok(None);
    }
    // Without readable labels the cell cannot be placed in any table: it is reported as
    // missing (a worker killed before it wrote them, or a damaged file), and the next
    // `ablate run` of the grid runs it again.
    let labels: serde_json::Map<String, Value> = match read_json(&labels_path) {
        Ok(labels) => labels,
        Err(e @ (ReportError::Read { .. } | ReportError::Json { .. })) => {
            tracing::warn!("{e}: the cell is reported as missing; the next `ablate run` of the grid runs it again");
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let number = |name: &str| -> Result<f64, ReportError> {
        labels.get(name).and_then(Value::as_f64).ok_or_else(|| ReportError::Invalid {
            path: labels_path.clone(),
            message: format!("label `{name}` is missing or not a number"),
        })
    };
    let temperature = number("temperature")?;
    // Read as an integer: seeds are any 64-bit unsigned number, and above 2⁵³ a float loses them.
    let seed = labels.get("seed").and_then(Value::as_u64).ok_or_else(|| ReportError::Invalid {
        path: labels_path.clone(),
        message: "label `seed` is missing or not a non-negative integer".into(),
    })?;
    let labels: Vec<(String, Value)> = labels.into_iter().collect();

    let status_path = dir.join(STATUS);
    let status_file: Option<CellStatus> = if status_path.exists() { Some(read_json(&status_path)?) } else { None };
    let status = status_file.as_ref().map_or(Status::NotStarted, |s| s.status.into());

    let metrics_path = dir.join(METRICS);
    const RECOMPUTE: &str = "run the grid again with `ablate run <grid file> --out <parent of this run folder>` \
                             (the grid file is named in manifest.json): it recomputes cells marked done \
                             without readable metrics";
    let metrics = if metrics_path.exists() {
        let m = read_json::<FinalMetrics>(&metrics_path).map_err(|e| match (status, e) {
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

    let config = read_config(dir);
    let epochs_path = dir.join(EPOCHS);
    let epochs = if epochs_path.exists() {
        let rows = parse_epochs_csv(&read_text(&epochs_path)?).map_err(|e| ReportError::Invalid {
            path: epochs_path.clone(),
            message: format!(
                "is damaged: {e}; delete the cell's status.json and run the grid again to recompute the cell, or \
                 move the cell folder away to report without it"
            ),
        })?;
        // Rows are whole epochs, so a file cut at a line boundary still parses: a done cell has
        // one row per configured epoch.
        if status == Status::Done {
            if let Some(planned) = config.as_ref().and_then(|c| c.get("sampler")?.get("epochs")?.as_u64()) {
                if rows.len() as u64 != planned {
                    return Err(ReportError::Invalid {
                        path: epochs_path.clone(),
                        message: format!(
                            "has {} epoch row(s), but the cell is done and its config.json plans {planned}: the file \
                             is damaged; delete the cell's status.json and run the grid again to recompute the cell, \
                             or move the cell folder away to report without it",
                            rows.len()
                        ),
                    });
                }
            }
        }
        Some(rows)
    } else {
        None
    };

    let (message, wall_seconds, diverged_at_step, finished_at, provenance) = match status_file {
        Some(s) => (s.message, Some(s.wall_seconds), s.diverged_at_step, s.finished_at, s.provenance),
        None => (None, None, None, None, None),
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
        provenance,
        data_key: config.as_ref().and_then(data_key),
        metrics,
        epochs,
    }))
}
