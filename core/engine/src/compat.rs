//! Can a cell configuration run here, with these plugins? The rules that need the plugins or
//! the machine, in one place: `ablate grid check` and `ablate run` both call [`cell_problems`]
//! (through [`Compat`], which remembers answers), so a combination that cannot run is refused
//! with its JSON path before anything runs.
//!
//! Checked (allocating at most one tiny probe tensor):
//! - the likelihood's model toggles fit the model: FRN (filter response normalisation) needs a
//!   convolutional model (`cnn`, `resnet20`), a dropout rate is in [0, 1), the effective n is a
//!   positive number; the `cnn-lstm` takes no normalisation layers and no image augmentation
//!   (found by a probe: the likelihood augments a 1×1×4×4 zero batch, the one tensor made here);
//! - the likelihood can augment the dataset's images (a padding sized for larger images is
//!   refused by the plugin: found by augmenting one zero image of the dataset's shape);
//! - the noise plugin's gradient batch is at most the training set;
//! - `sym-euler`'s `momentum_init = "gaussian"` is not combined with the temperature ramp (the
//!   first step is at T = 0, where it would draw zeros);
//! - the built-in energy-based integrators (`hmc`, `obabo` with `metropolis`) get a likelihood
//!   whose energy is a fixed function of θ: no batch norm, dropout or augmentation (see
//!   [`dirty_energy`]; the run refuses the same for any integrator that asks for the energy);
//! - the dataset can be read: `mnist`/`fashion-mnist` are cached (or their `data.path` exists),
//!   a `cifar10` folder holds the binary batches, a `digits` file exists.
//!
//! What [`CellConfig::validate`] checks (ranges, sizes against the dataset, network depth
//! against the input) is not repeated here; plugin names and parameters are checked by the
//! plugin host ([`Registry::validate`]).

use std::collections::HashMap;
use std::path::Path;

use ablate_grid::config::{dataset_facts, ModelConfig};
use ablate_grid::{CellConfig, Problem};
use ablate_plugin_host::Registry;
use ablate_sdk::NormKind;

/// Every reason `cfg` cannot run with `registry` on this machine (empty = none found). Paths are
/// relative to the cell config (`likelihood.name`, `data.dataset`).
pub fn cell_problems(cfg: &CellConfig, registry: &Registry) -> Vec<Problem> {
    Compat::new(registry).cell_problems(cfg)
}

/// [`cell_problems`] with memory: each distinct (model, likelihood), (noise, batch) and data
/// source is looked at once, so checking a million cells costs a few look-ups each.
pub struct Compat<'r> {
    registry: &'r Registry,
    model: HashMap<String, Vec<Problem>>,
    noise: HashMap<String, Vec<Problem>>,
    data: HashMap<String, Vec<Problem>>,
}

impl<'r> Compat<'r> {
    pub fn new(registry: &'r Registry) -> Self {
        Self { registry, model: HashMap::new(), noise: HashMap::new(), data: HashMap::new() }
    }

    /// See [`cell_problems`].
    pub fn cell_problems(&mut self, cfg: &CellConfig) -> Vec<Problem> {
        let train = train_examples(cfg);
        let registry = self.registry;
        let mut out = Vec::new();

        let k = key(&(&cfg.model, &cfg.likelihood, train, &cfg.data.dataset));
        out.extend(self.model.entry(k).or_insert_with(|| model_problems(cfg, train, registry)).iter().cloned());
        out.extend(momentum_init_problem(cfg));
        if energy_based(cfg) {
            let k = key(&("energy", &cfg.likelihood));
            out.extend(self.model.entry(k).or_insert_with(|| energy_problems(cfg, registry)).iter().cloned());
        }
        let k = key(&(&cfg.noise, cfg.sampler.batch_size, train));
        out.extend(self.noise.entry(k).or_insert_with(|| noise_problems(cfg, train, registry)).iter().cloned());
        let k = key(&(&cfg.data.dataset, &cfg.data.path));
        out.extend(self.data.entry(k).or_insert_with(|| data_problems(cfg)).iter().cloned());
        if let Some(ood) = &cfg.eval.ood {
            let k = key(&("ood", ood));
            out.extend(self.data.entry(k).or_insert_with(|| ood_problems(cfg, ood)).iter().cloned());
        }
        out
    }
}

fn key<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Training examples the cell uses, when known without reading the data.
fn train_examples(cfg: &CellConfig) -> Option<u64> {
    let facts = dataset_facts(&cfg.data.dataset)?;
    match cfg.data.train_size {
        Some(n) => Some(n as u64),
        None if cfg.data.path.is_none() || facts.name != "digits" => Some(facts.train as u64),
        None => None,
    }
}

fn model_problems(cfg: &CellConfig, train: Option<u64>, registry: &Registry) -> Vec<Problem> {
    let mut out = Vec::new();
    // A likelihood that cannot be built is reported by the plugin check.
    let Ok(mut likelihood) = registry.likelihood(&cfg.likelihood.name, &cfg.likelihood.params) else {
        return out;
    };
    let name = &cfg.likelihood.name;
    let toggles = likelihood.model();
    let conv = matches!(cfg.model, ModelConfig::Cnn { .. } | ModelConfig::Resnet20 { .. });
    if matches!(cfg.model, ModelConfig::CnnLstm { .. }) {
        out.extend(sequence_problems(name, toggles.norm, &mut likelihood));
    } else {
        out.extend(augment_problem(cfg, name, &mut likelihood));
        if toggles.norm == NormKind::Frn && !conv {
            out.push(Problem::new(
                "likelihood.name",
                format!(
                    "likelihood `{name}` uses filter response normalisation (FRN), which normalises over \
                     spatial positions and needs a convolutional model; model.kind is mlp"
                ),
                "use model.kind cnn or resnet20 with FRN, or `batchnorm` / `categorical` with an MLP",
            ));
        }
    }
    if !(0.0..1.0).contains(&toggles.dropout) {
        out.push(Problem::new(
            "likelihood.params",
            format!("likelihood `{name}` asks for dropout rate {}; it must be in [0, 1)", toggles.dropout),
            panic_or_params(name, "model", toggles.dropout),
        ));
    }
    if let Some(n) = train {
        let eff = likelihood.effective_n(n);
        if !(eff.is_finite() && eff > 0.0) {
            out.push(Problem::new(
                "likelihood.params",
                format!("likelihood `{name}` gives effective n = {eff} for {n} training examples; it must be a positive number"),
                panic_or_params(name, "effective_n", eff),
            ));
        }
    }
    out
}

/// What a likelihood asks of the model that the cnn-lstm (a sequence model) cannot give:
/// normalisation layers (batch norm, FRN: image layers here) or image augmentation (crops and
/// flips). Augmentation is found by asking the likelihood to augment a 1×1×4×4 zero batch.
fn sequence_problems(name: &str, norm: NormKind, likelihood: &mut ablate_sdk::abi::LikelihoodBox) -> Vec<Problem> {
    let mut out = Vec::new();
    if norm != NormKind::None {
        let layer = if norm == NormKind::Frn { "FRN" } else { "batch norm" };
        out.push(Problem::new(
            "likelihood.name",
            format!("likelihood `{name}` adds {layer} layers, which the cnn-lstm (a sequence model) does not have"),
            "use `categorical`, `dropout`, `tempered`, `curated` or `noisy-dirichlet` with cnn-lstm, or an image model",
        ));
    }
    if augments(likelihood) {
        out.push(Problem::new(
            "likelihood.name",
            format!("likelihood `{name}` augments images (random crops and flips), which is meaningless for the sequences a cnn-lstm reads"),
            "use a likelihood without augmentation with cnn-lstm",
        ));
    }
    out
}

/// `sym-euler`'s `momentum_init = "gaussian"` draws m ~ N(0, T·M) at the first step; with the
/// temperature ramp that step is at T = 0, so the option would silently change nothing.
fn momentum_init_problem(cfg: &CellConfig) -> Option<Problem> {
    let gaussian = cfg.integrator.params.get("momentum_init").and_then(serde_json::Value::as_str) == Some("gaussian");
    (cfg.integrator.name == "sym-euler" && gaussian && cfg.sampler.temperature_ramp).then(|| {
        Problem::new(
            "integrator.params.momentum_init",
            "`gaussian` draws the initial momenta from N(0, T·M) at the first step, but sampler.temperature_ramp \
             holds T at 0 there, so the momenta would start at zero exactly as with `zero`",
            "set sampler.temperature_ramp to false to start at the cell's temperature, or use momentum_init `zero`",
        )
    })
}

/// Whether a built-in integrator evaluates the full-batch energy U(θ) (`host.potential`):
/// `hmc`, and `obabo` with `metropolis`.
fn energy_based(cfg: &CellConfig) -> bool {
    match cfg.integrator.name.as_str() {
        "hmc" => true,
        "obabo" => cfg.integrator.params.get("metropolis").and_then(serde_json::Value::as_bool) == Some(true),
        _ => false,
    }
}

fn energy_problems(cfg: &CellConfig, registry: &Registry) -> Vec<Problem> {
    let Ok(mut likelihood) = registry.likelihood(&cfg.likelihood.name, &cfg.likelihood.params) else {
        return Vec::new();
    };
    let toggles = likelihood.model();
    dirty_energy(&cfg.likelihood.name, toggles, augments(&mut likelihood))
        .map(|why| {
            vec![Problem::new(
                "integrator.name",
                format!("integrator `{}` samples a fixed energy U(θ), but {why}", cfg.integrator.name),
                "use a likelihood without batch norm, dropout or augmentation (`categorical`, `frn`, `tempered`) \
                 with an exact sampler, or an SG-MCMC integrator (`sym-euler`, `baoab`) with this likelihood",
            )]
        })
        .unwrap_or_default()
}

/// Why the full-batch energy the host offers energy-based integrators (the NLL of the whole
/// training set in inference mode, plus −log prior) is not the likelihood `name` defines, if it
/// is not: batch norm's inference mode uses running statistics that the sampler does not own,
/// dropout is off and augmentation is not applied there.
pub fn dirty_energy(name: &str, toggles: ablate_sdk::ModelToggles, augments: bool) -> Option<String> {
    let mut parts = Vec::new();
    if toggles.norm == NormKind::BatchNorm {
        parts.push("batch norm (its inference-mode running statistics are not a function of θ)");
    }
    if toggles.dropout > 0.0 {
        parts.push("dropout (off when the energy is evaluated)");
    }
    if augments {
        parts.push("augmentation (not applied to the energy)");
    }
    (!parts.is_empty()).then(|| format!("likelihood `{name}` has {}", parts.join(", ")))
}

/// A likelihood whose augmentation refuses the dataset's images (a padding sized for larger
/// images): found by augmenting one zero image of the dataset's shape, as the run would.
fn augment_problem(cfg: &CellConfig, name: &str, likelihood: &mut ablate_sdk::abi::LikelihoodBox) -> Option<Problem> {
    let (c, h, w) = dataset_facts(&cfg.data.dataset)?.shape;
    let message = augment_probe(likelihood, [1, c as i64, h as i64, w as i64]).err()?;
    Some(Problem::new(
        "likelihood.params",
        format!("likelihood `{name}` cannot augment the {h}x{w} images of {}: {message}", cfg.data.dataset),
        format!("`ablate plugins show {name}` lists its parameters"),
    ))
}

/// Whether the likelihood transforms a training batch (a probe on a 1×1×4×4 zero batch; a
/// failing probe counts as augmenting, since the run would fail the same way).
pub fn augments(lik: &mut ablate_sdk::abi::LikelihoodBox) -> bool {
    !matches!(augment_probe(lik, [1, 1, 4, 4]), Ok(false))
}

/// Asks the likelihood to augment a zero batch of `shape` on the CPU: whether it transforms the
/// batch, or why it refuses.
fn augment_probe(lik: &mut ablate_sdk::abi::LikelihoodBox, shape: [i64; 4]) -> Result<bool, String> {
    let mut host = crate::host::TchHost::new();
    let x = host.insert(tch::Tensor::zeros(shape, (tch::Kind::Float, tch::Device::Cpu)));
    host.call(|h| lik.augment(h, x)).map(|out| matches!(out, abi_stable::std_types::ROption::RSome(_)))
}

/// The hint for a likelihood value out of range: NaN is also what a panic in that call gives
/// (the call has no error channel; the plugin prints the panic on stderr).
fn panic_or_params(name: &str, call: &str, value: f64) -> String {
    if value.is_nan() {
        format!(
            "NaN is also what a panic in the plugin's `{call}` gives (its message is then printed above, on stderr); \
             else `ablate plugins show {name}` lists its parameters"
        )
    } else {
        format!("`ablate plugins show {name}` lists its parameters")
    }
}

fn noise_problems(cfg: &CellConfig, train: Option<u64>, registry: &Registry) -> Vec<Problem> {
    let (Some(n), Ok(noise)) = (train, registry.noise(&cfg.noise.name, &cfg.noise.params)) else {
        return Vec::new();
    };
    let plan = noise.plan(cfg.sampler.batch_size as u64, n);
    if plan.gradient_batch == ablate_sdk::abi::PLAN_FAILED {
        return vec![Problem::new(
            "noise.name",
            format!("noise `{}` panicked in `plan` (its message is printed above, on stderr)", cfg.noise.name),
            "fix the plugin; `ablate plugins check` runs its calls one by one",
        )];
    }
    // The configured batch itself is checked against the data by `CellConfig::validate`.
    if plan.gradient_batch > n && plan.gradient_batch != cfg.sampler.batch_size as u64 {
        let name = &cfg.noise.name;
        return vec![Problem::new(
            "noise.params",
            format!(
                "noise `{name}` would take gradients over {} examples, but the cell has {n} training examples",
                plan.gradient_batch
            ),
            format!("use a batch of at most {n} (`ablate plugins show {name}` lists its parameters)"),
        )];
    }
    Vec::new()
}

/// `eval.ood` names a dataset read from its standard files: it must be cached.
fn ood_problems(cfg: &CellConfig, ood: &str) -> Vec<Problem> {
    let mut c = cfg.clone();
    c.data.dataset = ood.to_string();
    c.data.path = None;
    data_problems(&c)
        .into_iter()
        .map(|mut p| {
            p.path = "eval.ood".into();
            p
        })
        .collect()
}

fn data_problems(cfg: &CellConfig) -> Vec<Problem> {
    let d = &cfg.data;
    let name = d.dataset.as_str();
    let missing = |path: &Path, what: &str, hint: String| {
        vec![Problem::new(
            if d.path.is_some() { "data.path" } else { "data.dataset" },
            format!("dataset {name}: {what} ({})", path.display()),
            hint,
        )]
    };
    match (name, d.path.as_deref()) {
        ("digits", None) => Vec::new(),
        ("digits", Some(p)) if !Path::new(p).is_file() => missing(
            Path::new(p),
            "no such file",
            "give a digits.csv or digits.csv.gz file, or leave data.path unset for the embedded copy".into(),
        ),
        ("mnist" | "fashion-mnist", None) => {
            let dir = ablate_data::fetch::dataset_dir(name);
            let cached = match (&dir, ablate_data::fetch::spec(name)) {
                (Ok(dir), Some(spec)) => ablate_data::fetch::is_complete(dir, &spec),
                _ => false,
            };
            if cached {
                Vec::new()
            } else {
                let shown = dir.map(|d| d.display().to_string()).unwrap_or_else(|e| e.to_string());
                vec![Problem::new(
                    "data.dataset",
                    format!("dataset {name} is not cached (looked in {shown})"),
                    format!("fetch it first: `ablate data fetch {name}`; or set data.path to a folder that holds it"),
                )]
            }
        }
        ("mnist" | "fashion-mnist", Some(p)) if !Path::new(p).is_dir() => {
            missing(Path::new(p), "no such folder", "set data.path to the folder holding the IDX files".into())
        }
        ("cifar10", Some(p)) if !ablate_data::cifar::is_complete(Path::new(p)) => missing(
            Path::new(p),
            "the folder does not hold the CIFAR-10 binary batches",
            "set data.path to the folder with data_batch_1.bin ... test_batch.bin (cifar-10-batches-bin)".into(),
        ),
        _ => Vec::new(),
    }
}
