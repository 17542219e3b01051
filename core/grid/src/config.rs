//! The resolved configuration of one grid cell: everything that determines a run.
//!
//! A grid file (see [`crate::grid`]) has a `base` of this shape and axes that override paths
//! inside it. Every struct rejects unknown keys; defaults follow the paper's protocol
//! (`shared/reference/cold_posterior_bnn.md` §1.7), scaled down where noted.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One cell of a grid, fully resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellConfig {
    /// Posterior temperature T: the chain targets exp(-U/T). 0 means SGD with momentum.
    #[serde(default = "one")]
    pub temperature: f64,
    /// Seed of everything random in the cell (init, data order, noise).
    #[serde(default = "one_u64")]
    pub seed: u64,
    pub data: DataConfig,
    pub model: ModelConfig,
    #[serde(default)]
    pub sampler: SamplerConfig,
    #[serde(default = "PluginRef::default_integrator")]
    pub integrator: PluginRef,
    #[serde(default = "PluginRef::default_prior")]
    pub prior: PluginRef,
    #[serde(default = "PluginRef::default_likelihood")]
    pub likelihood: PluginRef,
    #[serde(default = "PluginRef::default_noise")]
    pub noise: PluginRef,
    #[serde(default)]
    pub eval: EvalConfig,
}

/// Which data, how much of it, and how pixels are scaled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// `digits` (embedded, UCI 8x8), `mnist`, `fashion-mnist` (fetched and cached), `cifar10`
    /// (user-supplied folder in `path`).
    pub dataset: String,
    /// Folder of the dataset files; default: the cache written by `ablate data fetch`.
    #[serde(default)]
    pub path: Option<String>,
    /// Training examples used (deterministic subset); `null` = all.
    #[serde(default)]
    pub train_size: Option<usize>,
    /// Test examples used (deterministic subset); `null` = all.
    #[serde(default)]
    pub test_size: Option<usize>,
    /// Seed of the subset choice (fixed by default so that seeds vary only the chain).
    #[serde(default = "subset_seed")]
    pub subset_seed: u64,
    /// Standardise each channel with the training mean and std (the paper does not).
    #[serde(default)]
    pub normalize: bool,
    /// How `train_size`/`test_size` examples are chosen: `random` (seeded by `subset_seed`,
    /// the default) or `first` (the first n examples of the file, as reference code takes them).
    /// Left out of the serialised form when `random`, so existing cell ids do not change.
    #[serde(default, skip_serializing_if = "SubsetMode::is_random")]
    pub subset: SubsetMode,
    /// Fraction in [0, 1] of training labels replaced by a label drawn uniformly over all
    /// classes (it may equal the true label), seeded by the cell `seed`. Left out of the
    /// serialised form when 0, so existing cell ids do not change.
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub label_noise: f64,
}

/// How a data subset is chosen (`data.subset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SubsetMode {
    /// Sorted first n of a permutation seeded by `subset_seed`.
    #[default]
    Random,
    /// The first n examples of the file.
    First,
}

impl SubsetMode {
    /// Whether this is the default, `random`.
    pub fn is_random(&self) -> bool {
        *self == SubsetMode::Random
    }
}

fn is_zero_f64(x: &f64) -> bool {
    *x == 0.0
}

/// The network architecture. Normalisation layers and dropout are decided by the likelihood
/// plugin (the "dirty likelihood" toggles), not here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ModelConfig {
    /// Fully connected network; `hidden` lists the hidden widths (depth = hidden.len()).
    Mlp {
        hidden: Vec<usize>,
        #[serde(default)]
        activation: Activation,
    },
    /// Small CNN: 3x3 convolutions with the given channels, 2x2 max-pooling after each, then a
    /// dense head.
    Cnn {
        channels: Vec<usize>,
        #[serde(default)]
        activation: Activation,
    },
    /// ResNet-20 v1 (He et al. 2016, the Keras example the paper uses): 16/32/64 filters.
    Resnet20 {
        /// Width multiplier of the filters (1 = the paper's network).
        #[serde(default = "one_usize")]
        width: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Activation {
    #[default]
    Relu,
    Tanh,
    Gelu,
}

/// Initialisation of the weights before the chain starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Init {
    /// Keras default: Glorot-uniform kernels, zero biases (what the reference code runs).
    #[default]
    GlorotUniform,
    /// He-normal kernels, zero biases.
    HeNormal,
}

/// Cyclical time-step schedule (`cyclical_rate` in the reference code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    #[default]
    Cosine,
    Glide,
    Flat,
}

/// Mass matrix of the dynamics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preconditioner {
    /// One scalar per parameter tensor, re-estimated at the start of every epoch (the paper).
    #[default]
    Layerwise,
    /// M = I.
    Identity,
}

/// The sampler protocol. Defaults: the paper's (Appendix A / `train.py`), except the epoch
/// counts, which are scaled to CPU budgets; set them explicitly for a faithful run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplerConfig {
    /// Total epochs.
    pub epochs: usize,
    /// Minibatch size m (the noise plugin may override how the gradient is estimated).
    pub batch_size: usize,
    /// Learning rate ℓ; the SDE step is h = sqrt(ℓ/n).
    pub lr: f64,
    /// Momentum decay β = 1 - hγ. The paper's Appendix (and the Flax port) use 0.98; the
    /// released shell scripts declare 0.98 but do not pass it, so they run 0.9. Default 0.98.
    pub momentum_decay: f64,
    /// Cycle length in epochs (one ensemble member per cycle).
    pub cycle_length: usize,
    /// First epoch (1-based) of the cyclical schedule; members are collected from its end on.
    /// The temperature ramps linearly from 0 over the `cycle_length` epochs before it.
    pub cycle_start_sampling: usize,
    pub schedule: Schedule,
    pub preconditioner: Preconditioner,
    /// Minibatches used to estimate the preconditioner (and the configurational temperature).
    pub precond_batches: usize,
    /// Ramp the temperature from 0 (true, the paper) or hold it at T from the first step.
    pub temperature_ramp: bool,
    pub init: Init,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            epochs: 60,
            batch_size: 100,
            lr: 0.1,
            momentum_decay: 0.98,
            cycle_length: 5,
            cycle_start_sampling: 15,
            schedule: Schedule::Cosine,
            preconditioner: Preconditioner::Layerwise,
            precond_batches: 32,
            temperature_ramp: true,
            init: Init::GlorotUniform,
        }
    }
}

/// A plugin by name with its JSON parameters (validated by the plugin's published description).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginRef {
    pub name: String,
    #[serde(default = "empty_object")]
    pub params: Value,
}

impl PluginRef {
    pub fn new(name: &str) -> Self {
        Self { name: name.to_owned(), params: empty_object() }
    }
    fn default_integrator() -> Self {
        Self::new("sym-euler")
    }
    fn default_prior() -> Self {
        Self::new("gaussian")
    }
    fn default_likelihood() -> Self {
        Self::new("categorical")
    }
    fn default_noise() -> Self {
        Self::new("minibatch")
    }
}

/// How the ensemble is evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalConfig {
    /// Bins of the expected calibration error.
    pub ece_bins: usize,
    /// Batch size of test-set evaluation.
    pub batch_size: usize,
    /// Prior predictive check: draws θ from the prior this many times before sampling and records
    /// the class distribution of their predictions on (up to 1000) training inputs. 0 = off.
    #[serde(skip_serializing_if = "is_zero")]
    pub prior_samples: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self { ece_bins: 10, batch_size: 1000, prior_samples: 0 }
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn one() -> f64 {
    1.0
}
fn one_u64() -> u64 {
    1
}
fn one_usize() -> usize {
    1
}
fn subset_seed() -> u64 {
    124 // DATASET_SEED of the reference code
}
fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// Datasets the engine knows (`data.dataset`).
pub const DATASETS: &[&str] = &["digits", "mnist", "fashion-mnist", "cifar10"];

/// One out-of-range value or inconsistent pair in a [`CellConfig`], found by
/// [`CellConfig::validate`]. `path` is relative to the config (`sampler.lr`).
pub type ConfigProblem = crate::problem::Problem;

impl CellConfig {
    /// Checks ranges and cross-field rules that the types cannot express; returns every problem
    /// (empty = valid). Plugin names and parameters are checked by the plugin host.
    pub fn validate(&self) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        let mut bad = |path: &str, message: String, hint: &str| {
            out.push(ConfigProblem::new(path, message, hint));
        };

        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            bad(
                "temperature",
                format!("temperature must be finite and >= 0, got {}", self.temperature),
                "T = 1 is the Bayes posterior, T < 1 a cold one, T = 0 SGD with momentum",
            );
        }

        let d = &self.data;
        if !DATASETS.contains(&d.dataset.as_str()) {
            bad(
                "data.dataset",
                format!("unknown dataset {:?}", d.dataset),
                &format!("use one of: {}", DATASETS.join(", ")),
            );
        }
        if d.dataset == "cifar10" && d.path.is_none() {
            bad(
                "data.path",
                "cifar10 needs `data.path`".into(),
                "set it to the folder holding data_batch_1.bin ... test_batch.bin (cifar-10-batches-bin)",
            );
        }
        for (key, size) in [("data.train_size", d.train_size), ("data.test_size", d.test_size)] {
            if size == Some(0) {
                bad(key, "must be >= 1 (or null for all examples)".into(), "");
            }
        }
        if !(0.0..=1.0).contains(&d.label_noise) {
            bad(
                "data.label_noise",
                format!("label_noise must be a fraction in [0, 1], got {}", d.label_noise),
                "0 = clean labels, 0.2 = a fifth of the training labels redrawn uniformly",
            );
        }

        match &self.model {
            ModelConfig::Mlp { hidden, .. } => {
                for (i, w) in hidden.iter().enumerate() {
                    if *w == 0 {
                        bad(&format!("model.hidden[{i}]"), "hidden width must be >= 1".into(), "");
                    }
                }
            }
            ModelConfig::Cnn { channels, .. } => {
                if channels.is_empty() {
                    bad("model.channels", "a CNN needs at least one convolution".into(), "e.g. [32, 64]");
                }
                for (i, c) in channels.iter().enumerate() {
                    if *c == 0 {
                        bad(&format!("model.channels[{i}]"), "channel count must be >= 1".into(), "");
                    }
                }
            }
            ModelConfig::Resnet20 { width } => {
                if *width == 0 {
                    bad("model.width", "width multiplier must be >= 1".into(), "1 = the paper's network");
                }
            }
        }

        let s = &self.sampler;
        for (key, v) in [
            ("sampler.epochs", s.epochs),
            ("sampler.batch_size", s.batch_size),
            ("sampler.cycle_length", s.cycle_length),
            ("sampler.precond_batches", s.precond_batches),
            ("eval.ece_bins", self.eval.ece_bins),
            ("eval.batch_size", self.eval.batch_size),
        ] {
            if v == 0 {
                bad(key, "must be >= 1, got 0".into(), "");
            }
        }
        if !(s.lr.is_finite() && s.lr > 0.0) {
            bad("sampler.lr", format!("lr must be finite and > 0, got {}", s.lr), "the paper uses 0.1");
        }
        if !(0.0..1.0).contains(&s.momentum_decay) {
            bad(
                "sampler.momentum_decay",
                format!("momentum_decay must be in [0, 1), got {}", s.momentum_decay),
                "the paper uses 0.98 (beta = 1 - h*gamma)",
            );
        }
        if s.cycle_length >= 1 && s.cycle_start_sampling < s.cycle_length {
            bad(
                "sampler.cycle_start_sampling",
                format!(
                    "cycle_start_sampling ({}) must be >= cycle_length ({})",
                    s.cycle_start_sampling, s.cycle_length
                ),
                "the temperature ramps over the cycle_length epochs before cycle_start_sampling \
                 (the reference train.py rejects this too)",
            );
        }
        if s.epochs >= 1 && s.epochs < s.cycle_start_sampling {
            bad(
                "sampler.epochs",
                format!(
                    "epochs ({}) < cycle_start_sampling ({}): no ensemble member would be collected",
                    s.epochs, s.cycle_start_sampling
                ),
                "raise epochs or lower cycle_start_sampling",
            );
        }

        for (key, p) in [
            ("integrator.name", &self.integrator),
            ("prior.name", &self.prior),
            ("likelihood.name", &self.likelihood),
            ("noise.name", &self.noise),
        ] {
            if p.name.trim().is_empty() {
                bad(key, "plugin name is empty".into(), "`ablate plugins` lists the names");
            }
        }
        out
    }
}
