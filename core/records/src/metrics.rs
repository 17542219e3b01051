//! `metrics.json`: the final results of a cell.
//!
//! Metric values are `f64`; a non-finite one (a diverged chain, an undefined standard error)
//! is written as `null` and read back as NaN ([`crate::float`]).

use serde::{Deserialize, Serialize};

use crate::float::{nan, nullable};

/// `metrics.json` of a cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalMetrics {
    pub members: usize,
    pub ensemble: EnsembleMetrics,
    pub growth: Vec<GrowthPoint>,
    pub diagnostics: FinalDiagnostics,
    /// Mean Metropolis–Hastings acceptance (integrators that have one).
    pub acceptance: Option<f64>,
    /// Parameters of the network (0 when not recorded).
    #[serde(default)]
    pub dim: i64,
    /// Training examples the likelihood counts (NaN when not recorded).
    #[serde(default = "nan", deserialize_with = "nullable")]
    pub n_effective: f64,
    /// Steps run (0 when not recorded).
    #[serde(default)]
    pub steps: u64,
    /// The prior predictive check (`eval.prior_samples` > 0).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub prior_predictive: Option<PriorPredictive>,
    /// Each member's mean test log-likelihood, in the order taken (for R-hat across chains).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub member_test_log_likelihood: Option<Vec<f64>>,
    /// Set by `ablate report --recompute`: the ensemble metrics, growth curve and member
    /// log-likelihoods were recomputed from this stored-predictions file.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub recomputed_from: Option<String>,
    /// How the network computed (absent in runs before the `precision` setting: fp32).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub compute: Option<ComputeRecord>,
}

/// The arithmetic and layout a cell's network actually ran with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComputeRecord {
    /// `fp32`, `tf32` or `bf16`: the cell's `precision`, as it ran on `device`.
    pub arithmetic: String,
    /// Convolutional activations in the channels-last memory layout.
    pub channels_last: bool,
    /// The device, e.g. `cpu` or `cuda:0`.
    pub device: String,
}

/// Metrics of the ensemble predictive (see the engine's `metrics` module for definitions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnsembleMetrics {
    #[serde(default = "nan", deserialize_with = "nullable")]
    pub accuracy: f64,
    #[serde(default = "nan", deserialize_with = "nullable")]
    pub accuracy_se: f64,
    #[serde(default = "nan", deserialize_with = "nullable")]
    pub nll: f64,
    #[serde(default = "nan", deserialize_with = "nullable")]
    pub nll_se: f64,
    #[serde(default = "nan", deserialize_with = "nullable")]
    pub gibbs_accuracy: f64,
    #[serde(default = "nan", deserialize_with = "nullable")]
    pub gibbs_nll: f64,
    #[serde(default = "nan", deserialize_with = "nullable")]
    pub brier: f64,
    #[serde(default = "nan", deserialize_with = "nullable")]
    pub brier_reliability: f64,
    #[serde(default = "nan", deserialize_with = "nullable")]
    pub brier_resolution: f64,
    #[serde(default = "nan", deserialize_with = "nullable")]
    pub brier_uncertainty: f64,
    #[serde(default = "nan", deserialize_with = "nullable")]
    pub ece: f64,
}

/// The ensemble's metrics with its first `members` members.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrowthPoint {
    pub members: usize,
    #[serde(default = "nan", deserialize_with = "nullable")]
    pub accuracy: f64,
    #[serde(default = "nan", deserialize_with = "nullable")]
    pub nll: f64,
    #[serde(default = "nan", deserialize_with = "nullable")]
    pub brier: f64,
    #[serde(default = "nan", deserialize_with = "nullable")]
    pub ece: f64,
}

/// End-of-run thermometers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalDiagnostics {
    #[serde(default = "nan", deserialize_with = "nullable")]
    pub kinetic_in_band_fraction: f64,
    #[serde(default = "nan", deserialize_with = "nullable")]
    pub kinetic_temperature: f64,
    #[serde(default = "nan", deserialize_with = "nullable")]
    pub configurational_temperature: f64,
    #[serde(default)]
    pub kinetic_per_tensor: Vec<TensorKinetic>,
}

/// The kinetic temperature of one parameter tensor and its χ² band.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorKinetic {
    pub name: String,
    pub dof: i64,
    #[serde(deserialize_with = "nullable")]
    pub temperature: f64,
    pub band: (f64, f64),
    pub inside: bool,
}

/// Class distribution of the predictions of prior draws on training inputs (the paper's check
/// that typical N(0, I) draws of a deep net predict almost every input as one class).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriorPredictive {
    pub samples: usize,
    pub inputs: i64,
    /// Mean over draws of the share of inputs given the draw's most frequent class
    /// (1/classes for a uniform spread, 1 for a constant predictor), and its standard error.
    #[serde(deserialize_with = "nullable")]
    pub top_class_fraction: f64,
    #[serde(deserialize_with = "nullable")]
    pub top_class_fraction_se: f64,
    /// Predicted-class counts summed over draws.
    #[serde(default)]
    pub class_counts: Vec<i64>,
}
