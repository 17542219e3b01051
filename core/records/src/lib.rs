//! Every record `ablate` writes into a run folder, and the worker protocol, defined once.
//!
//! The engine, the store, the worker, the runner and the reports all use these types, so a
//! renamed field is a compile error on both sides instead of a silent blank in a report.
//!
//! ```text
//! runs/<name>/
//!   manifest.json          [`Manifest`]
//!   grid.json              copy of the grid file
//!   cells/<cell_id>/
//!      config.json         resolved cell config (`ablate_grid::CellConfig`)
//!      labels.json         axis display name -> value
//!      status.json         [`CellStatus`]
//!      epochs.csv          rows of [`EpochRow`] ([`epochs_csv`], [`parse_epochs_csv`])
//!      metrics.json        [`FinalMetrics`]
//! ```
//!
//! Worker → runner: one JSON [`Event`] per stdout line.
//!
//! Reading stays tolerant of older run folders: a field added later is an `Option` (absent
//! reads as `None`) or has a `#[serde(default)]`; metric values that were not finite are
//! written as JSON `null` and read back as NaN.

mod epochs;
mod event;
mod manifest;
mod metrics;
mod status;

pub mod npy;
pub use epochs::{epochs_csv, parse_epochs_csv, EpochRow, EpochsError, EPOCH_COLUMNS, KINETIC_ALARM};
pub use event::Event;
pub use manifest::{hostname, MachineInfo, Manifest, PluginInfo};
pub use metrics::{
    ComputeRecord, EnsembleMetrics, FinalDiagnostics, FinalMetrics, GrowthPoint, PriorPredictive, TensorKinetic,
};
pub use status::{message_without_cell, CellPlugin, CellState, CellStatus, Provenance};

/// `runs/<name>/manifest.json`.
pub const MANIFEST: &str = "manifest.json";
/// `runs/<name>/grid.json`: the copy of the grid file.
pub const GRID: &str = "grid.json";
/// `runs/<name>/run.lock`.
pub const LOCK: &str = "run.lock";
/// `runs/<name>/cells/`.
pub const CELLS: &str = "cells";
/// `cells/<id>/config.json`.
pub const CONFIG: &str = "config.json";
/// `cells/<id>/labels.json`.
pub const LABELS: &str = "labels.json";
/// `cells/<id>/status.json`.
pub const STATUS: &str = "status.json";
/// `cells/<id>/epochs.csv`.
pub const EPOCHS: &str = "epochs.csv";
/// `cells/<id>/metrics.json`.
pub const METRICS: &str = "metrics.json";

/// Serde helpers for metric values: a non-finite `f64` is written as `null` by `serde_json`;
/// it reads back as NaN (and a missing value as NaN too).
pub mod float {
    use serde::{Deserialize, Deserializer};

    /// `null` → NaN.
    pub fn nullable<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }

    /// The default of a missing metric value.
    pub fn nan() -> f64 {
        f64::NAN
    }

    /// `Some(x)` for a finite value, `None` for NaN (a value that was `null` or missing).
    pub fn present(x: f64) -> Option<f64> {
        (!x.is_nan()).then_some(x)
    }
}
