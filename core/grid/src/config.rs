//! The resolved configuration of one grid cell: everything that determines a run.
//!
//! A grid file (see [`crate::grid`]) has a `base` of this shape and axes that override paths
//! inside it. Every struct rejects unknown keys; defaults follow the paper's protocol
//! (Wenzel et al. 2020 and its reference code, google-research/cold_posterior_bnn), scaled down
//! where noted.

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
    /// The network's arithmetic (fp32, tf32 or bf16); parameters, momenta, noise and prior stay
    /// fp32 in every mode. Left out of the canonical JSON when fp32, so cell ids of grids
    /// without it do not change.
    #[serde(default, skip_serializing_if = "Precision::is_fp32")]
    pub precision: Precision,
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
    /// Sequence model like the paper's IMDB network, sized for CPU: the input (C, H, W) read as
    /// H time steps of C·W features (MNIST-1D: 40 steps of 1; MNIST: 28 rows of 28), a 1-D
    /// convolution of `filters` × `kernel` (same padding) with ReLU, max-pooling by `pool`, an
    /// LSTM of `hidden` units, and a dense head on its last state.
    CnnLstm {
        #[serde(default = "default_filters")]
        filters: usize,
        #[serde(default = "default_kernel")]
        kernel: usize,
        #[serde(default = "default_pool")]
        pool: usize,
        #[serde(default = "default_lstm_hidden")]
        hidden: usize,
    },
}

fn default_filters() -> usize {
    16
}
fn default_kernel() -> usize {
    5
}
fn default_pool() -> usize {
    2
}
fn default_lstm_hidden() -> usize {
    32
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

/// The arithmetic of the network's forward and backward passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    /// IEEE float32 (TF32 off on CUDA).
    #[default]
    Fp32,
    /// TF32 for CUDA matrix products and convolutions (CUDA only).
    Tf32,
    /// bfloat16 autocast of the network's forward and backward passes (CPU and CUDA).
    Bf16,
}

impl Precision {
    pub fn is_fp32(&self) -> bool {
        *self == Precision::Fp32
    }

    /// The grid-file spelling: `fp32`, `tf32` or `bf16`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Tf32 => "tf32",
            Precision::Bf16 => "bf16",
        }
    }
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
    /// Save each member's test-set class probabilities in the cell folder
    /// (`predictions.npy`, float32 [members, test examples, classes]), so that `ablate report
    /// --recompute` can recompute metrics, the reference comparison and OOD scores. Needed by
    /// every cell of a grid with `reference` cells.
    #[serde(skip_serializing_if = "is_false")]
    pub store_predictions: bool,
    /// Out-of-distribution check: the members also predict the test split of this dataset
    /// (same image shape as `data.dataset`, e.g. `fashion-mnist` for `mnist`), and the report
    /// scores how well predictive entropy and max-probability separate it from the in-distribution
    /// test set (AUROC, AUPRC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ood: Option<String>,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self { ece_bins: 10, batch_size: 1000, prior_samples: 0, store_predictions: false, ood: None }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
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
pub const DATASETS: &[&str] = &["digits", "mnist", "fashion-mnist", "cifar10", "mnist1d"];

/// What the grid knows about a built-in dataset without reading it: image shape and split sizes
/// (of the standard files; a user-supplied `data.path` for `digits` may hold other sizes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatasetFacts {
    pub name: &'static str,
    /// (channels, height, width)
    pub shape: (usize, usize, usize),
    pub train: usize,
    pub test: usize,
    pub classes: usize,
}

/// The facts of every dataset in [`DATASETS`] (`ablate-data` documents the same numbers; a test
/// keeps them in step for the embedded `digits`).
pub const DATASET_FACTS: &[DatasetFacts] = &[
    DatasetFacts { name: "digits", shape: (1, 8, 8), train: 1297, test: 500, classes: 10 },
    DatasetFacts { name: "mnist", shape: (1, 28, 28), train: 60_000, test: 10_000, classes: 10 },
    DatasetFacts { name: "fashion-mnist", shape: (1, 28, 28), train: 60_000, test: 10_000, classes: 10 },
    DatasetFacts { name: "cifar10", shape: (3, 32, 32), train: 50_000, test: 10_000, classes: 10 },
    // Generated (Greydanus 2020): 40 time steps of one feature, stored as 1x40x1.
    DatasetFacts { name: "mnist1d", shape: (1, 40, 1), train: 4000, test: 1000, classes: 10 },
];

/// The facts of `dataset`, if it is a known one.
pub fn dataset_facts(dataset: &str) -> Option<&'static DatasetFacts> {
    DATASET_FACTS.iter().find(|f| f.name == dataset)
}

/// Upper bounds of the numeric settings, checked by [`CellConfig::validate`] and documented in
/// the schema (`ablate grid schema`). They keep a grid from asking for more memory or time than
/// any machine has (a width of 1e8, 1e12 calibration bins); raise one here if a real protocol
/// needs more. Seeds are free (any 64-bit integer).
pub mod limits {
    /// `temperature`.
    pub const TEMPERATURE: f64 = 1e6;
    /// `sampler.lr`.
    pub const LR: f64 = 1e6;
    /// `data.train_size`, `data.test_size` (also at most the dataset's own split size).
    pub const EXAMPLES: u64 = 10_000_000;
    /// Each MLP hidden width (`model.hidden[i]`).
    pub const WIDTH: u64 = 65_536;
    /// MLP hidden layers (`model.hidden` length).
    pub const DEPTH: usize = 64;
    /// Each CNN channel count (`model.channels[i]`).
    pub const CHANNELS: u64 = 4_096;
    /// CNN convolutions (`model.channels` length; also limited by the input size).
    pub const CONV_LAYERS: usize = 16;
    /// cnn-lstm pooling factor (`model.pool`).
    pub const POOL: u64 = 64;
    /// cnn-lstm convolution width (`model.kernel`).
    pub const KERNEL: u64 = 15;
    /// cnn-lstm LSTM units (`model.hidden`).
    pub const LSTM_HIDDEN: u64 = 4_096;
    /// ResNet-20 width multiplier (`model.width`).
    pub const RESNET_WIDTH: u64 = 64;
    /// Parameters of the network (d), counted from the architecture and the dataset's shape.
    pub const PARAMETERS: u64 = 200_000_000;
    /// `sampler.epochs`, `sampler.cycle_length`, `sampler.cycle_start_sampling`.
    pub const EPOCHS: u64 = 1_000_000;
    /// `sampler.batch_size` (also at most the training set size).
    pub const BATCH_SIZE: u64 = 1_000_000;
    /// `sampler.precond_batches`.
    pub const PRECOND_BATCHES: u64 = 10_000;
    /// Ensemble members a protocol collects (each keeps its test-set predictions in memory).
    pub const MEMBERS: u64 = 10_000;
    /// `eval.ece_bins`.
    pub const ECE_BINS: u64 = 10_000;
    /// `eval.batch_size`.
    pub const EVAL_BATCH_SIZE: u64 = 100_000;
    /// `eval.prior_samples`.
    pub const PRIOR_SAMPLES: u64 = 100_000;
}

/// One out-of-range value or inconsistent pair in a [`CellConfig`], found by
/// [`CellConfig::validate`]. `path` is relative to the config (`sampler.lr`).
pub type ConfigProblem = crate::problem::Problem;

/// Ensemble members the cyclical protocol collects: cycle ends m·`cycle_length` (m ≥ 1) that lie
/// in [`cycle_start_sampling`, `epochs`] (whatever the steps per epoch).
pub fn expected_members(s: &SamplerConfig) -> u64 {
    let (epochs, cycle, start) = (s.epochs as u64, s.cycle_length as u64, s.cycle_start_sampling as u64);
    if cycle == 0 {
        return 0;
    }
    let last = epochs / cycle;
    let first = start.div_ceil(cycle).max(1);
    last.saturating_sub(first.saturating_sub(1))
}

/// Parameters of the network `model` builds for `input` images and `classes` outputs, counting
/// the normalisation parameters a likelihood may add (an upper bound); saturates.
pub fn parameter_count(model: &ModelConfig, input: (usize, usize, usize), classes: usize) -> u64 {
    let (c, h, w) = (input.0 as u64, input.1 as u64, input.2 as u64);
    let classes = classes as u64;
    let dense = |i: u64, o: u64| i.saturating_mul(o).saturating_add(o);
    // 3x3 convolution with bias, plus norm parameters (gamma, beta, tau).
    let conv =
        |i: u64, o: u64, k: u64| i.saturating_mul(o).saturating_mul(k * k).saturating_add(o).saturating_add(3 * o);
    match model {
        ModelConfig::Mlp { hidden, .. } => {
            let mut inp = c.saturating_mul(h).saturating_mul(w);
            let mut total = 0u64;
            for &width in hidden {
                let width = width as u64;
                total = total.saturating_add(dense(inp, width)).saturating_add(2 * width);
                inp = width;
            }
            total.saturating_add(dense(inp, classes))
        }
        ModelConfig::Cnn { channels, .. } => {
            let (mut inp, mut hh, mut ww) = (c, h, w);
            let mut total = 0u64;
            for &ch in channels {
                let ch = ch as u64;
                total = total.saturating_add(conv(inp, ch, 3));
                inp = ch;
                hh /= 2;
                ww /= 2;
            }
            total.saturating_add(dense(inp.saturating_mul(hh.max(1)).saturating_mul(ww.max(1)), classes))
        }
        ModelConfig::CnnLstm { filters, kernel, hidden, .. } => {
            let (f, k, hd) = (*filters as u64, *kernel as u64, *hidden as u64);
            let conv = c.saturating_mul(w).saturating_mul(k).saturating_mul(f).saturating_add(f);
            let gates = hd.saturating_mul(4);
            let lstm = gates.saturating_mul(f.saturating_add(hd)).saturating_add(gates);
            conv.saturating_add(lstm).saturating_add(dense(hd, classes))
        }
        ModelConfig::Resnet20 { width } => {
            let base = 16u64.saturating_mul(*width as u64);
            let mut total = conv(c, base, 3);
            let mut inp = base;
            for stage in 0..3u32 {
                let filters = base.saturating_mul(1 << stage);
                for _ in 0..3 {
                    total = total.saturating_add(conv(inp, filters, 3)).saturating_add(conv(filters, filters, 3));
                    if inp != filters {
                        total = total.saturating_add(conv(inp, filters, 1));
                    }
                    total = total.saturating_add(filters);
                    inp = filters;
                }
            }
            total.saturating_add(dense(inp, classes))
        }
    }
}

impl CellConfig {
    /// Checks ranges and cross-field rules that the types cannot express; returns every problem
    /// (empty = valid). Plugin names and parameters are checked by the plugin host; what needs
    /// the plugins or the machine (a likelihood's model toggles, a cached dataset) by the engine.
    pub fn validate(&self) -> Vec<ConfigProblem> {
        let mut out = self.validate_fields();
        out.extend(self.validate_rules());
        out
    }

    /// The checks of one setting at a time (ranges, upper bounds), each reported at that
    /// setting's path. A grid's `base` gets these even where an axis overrides the value.
    pub fn validate_fields(&self) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        let mut bad = |path: &str, message: String, hint: &str| {
            out.push(ConfigProblem::new(path, message, hint));
        };
        if !(self.temperature.is_finite() && self.temperature >= 0.0 && self.temperature <= limits::TEMPERATURE) {
            bad(
                "temperature",
                format!("temperature must be finite, >= 0 and <= {:e}, got {}", limits::TEMPERATURE, self.temperature),
                "T = 1 is the Bayes posterior, T < 1 a cold one, T = 0 SGD with momentum",
            );
        }

        self.data_problems(&mut bad);
        self.model_problems(&mut bad);
        self.sampler_problems(&mut bad);
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

    /// `data.*` and `eval.ood`, one setting at a time.
    fn data_problems(&self, bad: &mut impl FnMut(&str, String, &str)) {
        let d = &self.data;
        if !DATASETS.contains(&d.dataset.as_str()) {
            bad(
                "data.dataset",
                format!("unknown dataset {:?}", d.dataset),
                &format!("use one of: {}", DATASETS.join(", ")),
            );
        }
        if let Some(ood) = &self.eval.ood {
            self.ood_problems(ood, bad);
        }
        if d.dataset == "mnist1d" && d.path.is_some() {
            bad("data.path", "mnist1d is generated, not read from files".into(), "remove data.path");
        }
        if d.dataset == "cifar10" && d.path.is_none() {
            bad(
                "data.path",
                "cifar10 needs `data.path`".into(),
                "set it to the folder holding data_batch_1.bin ... test_batch.bin (cifar-10-batches-bin)",
            );
        }
        if let Some(p) = &d.path {
            if p.is_empty() || p.contains('\0') {
                bad(
                    "data.path",
                    format!("{p:?} is not a usable folder path"),
                    "give the dataset's folder, or leave it unset",
                );
            }
        }
        for (key, size) in [("data.train_size", d.train_size), ("data.test_size", d.test_size)] {
            match size {
                Some(0) => bad(key, "must be >= 1 (or null for all examples)".into(), ""),
                Some(n) if n as u64 > limits::EXAMPLES => {
                    bad(key, format!("must be <= {}, got {n}", limits::EXAMPLES), "or null for all examples")
                }
                _ => {}
            }
        }
        if !(0.0..=1.0).contains(&d.label_noise) {
            bad(
                "data.label_noise",
                format!("label_noise must be a fraction in [0, 1], got {}", d.label_noise),
                "0 = clean labels, 0.2 = a fifth of the training labels redrawn uniformly",
            );
        }
    }

    /// `model.*`: layer counts and widths within their bounds.
    fn model_problems(&self, bad: &mut impl FnMut(&str, String, &str)) {
        let too_big = |v: u64, max: u64| v > max;
        match &self.model {
            ModelConfig::Mlp { hidden, .. } => {
                if hidden.len() > limits::DEPTH {
                    bad("model.hidden", format!("{} hidden layers; at most {}", hidden.len(), limits::DEPTH), "");
                }
                for (i, w) in hidden.iter().enumerate() {
                    if *w == 0 {
                        bad(&format!("model.hidden[{i}]"), "hidden width must be >= 1".into(), "");
                    } else if too_big(*w as u64, limits::WIDTH) {
                        bad(
                            &format!("model.hidden[{i}]"),
                            format!("hidden width must be <= {}, got {w}", limits::WIDTH),
                            "",
                        );
                    }
                }
            }
            ModelConfig::Cnn { channels, .. } => {
                if channels.is_empty() {
                    bad("model.channels", "a CNN needs at least one convolution".into(), "e.g. [32, 64]");
                }
                if channels.len() > limits::CONV_LAYERS {
                    bad(
                        "model.channels",
                        format!("{} convolutions; at most {}", channels.len(), limits::CONV_LAYERS),
                        "",
                    );
                }
                for (i, c) in channels.iter().enumerate() {
                    if *c == 0 {
                        bad(&format!("model.channels[{i}]"), "channel count must be >= 1".into(), "");
                    } else if too_big(*c as u64, limits::CHANNELS) {
                        bad(
                            &format!("model.channels[{i}]"),
                            format!("channel count must be <= {}, got {c}", limits::CHANNELS),
                            "",
                        );
                    }
                }
            }
            ModelConfig::CnnLstm { filters, kernel, pool, hidden } => {
                for (key, v, max) in [
                    ("model.filters", *filters, limits::CHANNELS),
                    ("model.pool", *pool, limits::POOL),
                    ("model.hidden", *hidden, limits::LSTM_HIDDEN),
                ] {
                    if v == 0 || too_big(v as u64, max) {
                        bad(key, format!("must be an integer in 1..={max}, got {v}"), "");
                    }
                }
                if *kernel % 2 == 0 || too_big(*kernel as u64, limits::KERNEL) {
                    bad(
                        "model.kernel",
                        format!("the convolution width must be odd and at most {}, got {kernel}", limits::KERNEL),
                        "same padding needs an odd width, e.g. 3 or 5",
                    );
                }
            }
            ModelConfig::Resnet20 { width } => {
                if *width == 0 {
                    bad("model.width", "width multiplier must be >= 1".into(), "1 = the paper's network");
                } else if too_big(*width as u64, limits::RESNET_WIDTH) {
                    bad(
                        "model.width",
                        format!("width multiplier must be <= {}, got {width}", limits::RESNET_WIDTH),
                        "1 = the paper's network",
                    );
                }
            }
        }
    }

    /// `sampler.*` and the `eval` sizes: counts within their bounds, lr and momentum decay.
    fn sampler_problems(&self, bad: &mut impl FnMut(&str, String, &str)) {
        let too_big = |v: u64, max: u64| v > max;
        let s = &self.sampler;
        for (key, v, max) in [
            ("sampler.epochs", s.epochs, limits::EPOCHS),
            ("sampler.batch_size", s.batch_size, limits::BATCH_SIZE),
            ("sampler.cycle_length", s.cycle_length, limits::EPOCHS),
            ("sampler.precond_batches", s.precond_batches, limits::PRECOND_BATCHES),
            ("eval.ece_bins", self.eval.ece_bins, limits::ECE_BINS),
            ("eval.batch_size", self.eval.batch_size, limits::EVAL_BATCH_SIZE),
        ] {
            if v == 0 {
                bad(key, "must be >= 1, got 0".into(), "");
            } else if too_big(v as u64, max) {
                bad(key, format!("must be <= {max}, got {v}"), "");
            }
        }
        for (key, v, max) in [
            ("sampler.cycle_start_sampling", s.cycle_start_sampling, limits::EPOCHS),
            ("eval.prior_samples", self.eval.prior_samples, limits::PRIOR_SAMPLES),
        ] {
            if too_big(v as u64, max) {
                bad(key, format!("must be <= {max}, got {v}"), "");
            }
        }
        if !(s.lr.is_finite() && s.lr > 0.0 && s.lr <= limits::LR) {
            bad(
                "sampler.lr",
                format!("lr must be finite, > 0 and <= {:e}, got {}", limits::LR, s.lr),
                "the paper uses 0.1",
            );
        }
        if !(0.0..1.0).contains(&s.momentum_decay) {
            bad(
                "sampler.momentum_decay",
                format!("momentum_decay must be in [0, 1), got {}", s.momentum_decay),
                "the paper uses 0.98 (beta = 1 - h*gamma)",
            );
        }
    }

    /// `eval.ood`: a known dataset other than `data.dataset`, read from its standard files, with
    /// the same image shape.
    fn ood_problems(&self, ood: &str, bad: &mut impl FnMut(&str, String, &str)) {
        let Some(facts) = dataset_facts(ood) else {
            bad("eval.ood", format!("unknown dataset {ood:?}"), &format!("use one of: {}", DATASETS.join(", ")));
            return;
        };
        if ood == self.data.dataset {
            bad(
                "eval.ood",
                format!("the out-of-distribution dataset {ood:?} is the training dataset"),
                "name another dataset with the same image shape (mnist <-> fashion-mnist)",
            );
        } else if ood == "cifar10" {
            bad(
                "eval.ood",
                "cifar10 cannot be an out-of-distribution set (it is read from a folder you supply)".into(),
                "use mnist or fashion-mnist",
            );
        } else if let Some(own) = dataset_facts(&self.data.dataset) {
            if own.shape != facts.shape {
                bad(
                    "eval.ood",
                    format!(
                        "{ood} images are {:?} (channels, height, width) but {} images are {:?}",
                        facts.shape, own.name, own.shape
                    ),
                    "pick a dataset with the same image shape (mnist <-> fashion-mnist)",
                );
            }
        }
    }

    /// The rules that tie settings together (the protocol collects a member, sizes fit the
    /// dataset, the network fits the input). Reported at the setting that is out of line.
    pub fn validate_rules(&self) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        let mut bad = |path: &str, message: String, hint: &str| {
            out.push(ConfigProblem::new(path, message, hint));
        };
        self.protocol_rules(&mut bad);
        if let Some(facts) = dataset_facts(&self.data.dataset) {
            self.dataset_rules(facts, &mut bad);
            self.network_rules(facts, &mut bad);
        }
        out
    }

    /// The protocol collects at least one and at most `limits::MEMBERS` ensemble members.
    fn protocol_rules(&self, bad: &mut impl FnMut(&str, String, &str)) {
        let s = &self.sampler;
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
        } else if s.epochs >= 1 && s.cycle_length >= 1 && s.cycle_start_sampling >= s.cycle_length {
            let members = expected_members(s);
            if members == 0 {
                bad(
                    "sampler.epochs",
                    format!(
                        "no ensemble member would be collected: members are taken at the cycle ends \
                         (multiples of cycle_length {}) from epoch cycle_start_sampling {} to epochs {}, and there is none",
                        s.cycle_length, s.cycle_start_sampling, s.epochs
                    ),
                    "raise epochs to the next multiple of cycle_length, or shorten the cycle",
                );
            } else if members > limits::MEMBERS {
                bad(
                    "sampler.epochs",
                    format!("the protocol collects {members} ensemble members; at most {}", limits::MEMBERS),
                    "lengthen cycle_length or lower epochs",
                );
            }
        }
    }

    /// The split sizes and the batch size fit the dataset.
    fn dataset_rules(&self, facts: &DatasetFacts, bad: &mut impl FnMut(&str, String, &str)) {
        let s = &self.sampler;
        // The split sizes are those of the standard files; a user-supplied `digits` file may
        // differ, so its sizes are checked when it is read.
        let sizes_known = self.data.path.is_none() || facts.name != "digits";
        let train = match self.data.train_size {
            Some(n) if sizes_known && n > facts.train => {
                bad(
                    "data.train_size",
                    format!("{n} training examples asked for, but {} has {}", facts.name, facts.train),
                    &format!("use at most {} (or null for all)", facts.train),
                );
                facts.train
            }
            Some(n) => n,
            None => facts.train,
        };
        if let Some(n) = self.data.test_size {
            if sizes_known && n > facts.test {
                bad(
                    "data.test_size",
                    format!("{n} test examples asked for, but {} has {}", facts.name, facts.test),
                    &format!("use at most {} (or null for all)", facts.test),
                );
            }
        }
        if sizes_known && s.batch_size > train && train >= 1 {
            bad(
                "sampler.batch_size",
                format!("batch_size {} is larger than the {train} training examples", s.batch_size),
                &format!(
                    "use at most {train}; a full batch is batch_size = {train} (or the `full-batch` noise plugin)"
                ),
            );
        }
    }

    /// The network fits the dataset's input (pooling leaves a step, convolutions a pixel) and
    /// its parameter count stays within `limits::PARAMETERS`.
    fn network_rules(&self, facts: &DatasetFacts, bad: &mut impl FnMut(&str, String, &str)) {
        match &self.model {
            ModelConfig::CnnLstm { pool, .. } if *pool > facts.shape.1 => {
                bad(
                    "model.pool",
                    format!("pooling by {pool} leaves no time step of the {} steps of {}", facts.shape.1, facts.name),
                    &format!("use a pool of at most {}", facts.shape.1),
                );
            }
            ModelConfig::Cnn { channels, .. } if !channels.is_empty() => {
                let (_, h, w) = facts.shape;
                let stages = channels.len().min(64) as u32;
                if (h >> stages) < 1 || (w >> stages) < 1 {
                    let max = (h.min(w) as f64).log2().floor() as usize;
                    let hint = if max == 0 {
                        format!("a cnn needs images of at least 2x2; use model.kind mlp or cnn-lstm for {}", facts.name)
                    } else {
                        format!("use at most {max} entries for {}", facts.name)
                    };
                    bad(
                        "model.channels",
                        format!(
                            "{} convolutions, each followed by 2x2 pooling, shrink {h}x{w} {} images below 1x1",
                            channels.len(),
                            facts.name
                        ),
                        &hint,
                    );
                }
            }
            _ => {}
        }
        let params = parameter_count(&self.model, facts.shape, facts.classes);
        if params > limits::PARAMETERS {
            bad(
                "model",
                format!(
                    "the network has about {params} parameters on {} inputs; at most {}",
                    facts.name,
                    limits::PARAMETERS
                ),
                "use narrower or fewer layers",
            );
        }
    }
}
