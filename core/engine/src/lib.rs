//! # ablate-engine: the measuring instrument
//!
//! Runs one grid cell: SG-MCMC on a `tch` model with the paper's protocol, every factor
//! (prior, likelihood, integrator, noise model) supplied by a plugin through the SDK's tensor
//! table, and returns per-epoch diagnostics and the ensemble's test metrics.
//!
//! Reading order: [`device`] (where tensors live) → [`host`] (the plugin tensor table) →
//! [`model`] (networks over one flat parameter vector) → [`schedule`] (cyclical step and
//! temperature ramp) → [`chain`] (the loop over any objective) → [`cell`] (a network on a
//! dataset) → [`metrics`] and [`diagnostics`].

pub mod augment;
pub mod cell;
pub mod chain;
pub mod chain_phases;
pub mod chi2;
pub mod compat;
pub mod compute;
pub mod crash_site;
pub mod device;
pub mod diagnostics;
pub mod dispatch_count;
pub mod fused;
pub mod host;
pub mod metrics;
pub mod model;
pub mod planner;
pub mod plugin_call;
pub mod precond;
pub mod predictions;
pub mod schedule;
pub mod suite_host;

pub use cell::{
    batch_key, batch_problem, data_key, load_cell_data, load_data, run_cell, run_cells, CellOutcome, FinalDiagnostics,
    FinalMetrics,
};
pub use chain::{ChainStatus, EpochRow, Observer};
pub use device::{parse_device, DeviceChoice};
pub use tch;

/// Why a cell could not run. Messages say what, where (plugin name and file) and what to do.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Device(String),
    #[error(transparent)]
    Data(#[from] ablate_data::DataError),
    #[error(transparent)]
    Plugin(#[from] ablate_plugin_host::PluginError),
    #[error("{kind} plugin `{name}` ({path}) failed during {during}: {message}")]
    PluginCall { kind: &'static str, name: String, path: String, during: String, message: String },
    #[error("libtorch error: {0}")]
    Torch(#[from] tch::TchError),
    #[error("interrupted")]
    Interrupted,
    /// The chain left the region where the model's numbers are finite (recorded as `diverged`).
    #[error("{0}")]
    Diverged(String),
}
