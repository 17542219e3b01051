//! One grid cell: a network on a dataset, with its four plugins, through [`crate::chain`].

use std::cell::RefCell;
use std::rc::Rc;

use abi_stable::std_types::{ROption, RSlice};
use ablate_data::Dataset;
use ablate_grid::config::{CellConfig, Preconditioner};
use ablate_plugin_host::Registry;
use ablate_sdk::abi::{LikelihoodBox, PriorBox};
use ablate_sdk::{FactorKind, ParamInfo, TensorId};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::chain::{run_chain, ChainSettings, ChainStatus, EpochRow, Factor, Gradient, Objective, Observer};
use crate::diagnostics::TensorKinetic;
use crate::host::{PotentialFn, TchHost};
use crate::metrics::{ensemble_metrics, growth_curve, EnsembleMetrics, GrowthPoint, MemberProbs};
use crate::model::{BnState, Mode, Model};
use crate::schedule::Protocol;
use crate::EngineError;

/// Final results of a cell (`metrics.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalMetrics {
    pub members: usize,
    pub ensemble: EnsembleMetrics,
    pub growth: Vec<GrowthPoint>,
    pub diagnostics: FinalDiagnostics,
    /// Mean Metropolis–Hastings acceptance (integrators that have one).
    pub acceptance: Option<f64>,
    pub dim: i64,
    pub n_effective: f64,
    pub steps: u64,
    /// The prior predictive check (`eval.prior_samples` > 0).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub prior_predictive: Option<PriorPredictive>,
}

/// Class distribution of the predictions of prior draws on training inputs (the paper's check
/// that typical N(0, I) draws of a deep net predict almost every input as one class).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriorPredictive {
    pub samples: usize,
    pub inputs: i64,
    /// Mean over draws of the share of inputs given the draw's most frequent class
    /// (1/classes for a uniform spread, 1 for a constant predictor), and its standard error.
    pub top_class_fraction: f64,
    pub top_class_fraction_se: f64,
    /// Predicted-class counts summed over draws.
    pub class_counts: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalDiagnostics {
    pub kinetic_in_band_fraction: f64,
    pub kinetic_temperature: f64,
    pub configurational_temperature: f64,
    pub kinetic_per_tensor: Vec<TensorKinetic>,
}

#[derive(Debug, Clone)]
pub struct CellOutcome {
    pub status: ChainStatus,
    pub epochs: Vec<EpochRow>,
    /// For a diverged cell: the metrics of the members collected before it diverged, if any.
    pub metrics: Option<FinalMetrics>,
}

fn factor<T>(
    registry: &Registry,
    kind: FactorKind,
    name: &str,
    make: impl FnOnce() -> Result<T, ablate_plugin_host::PluginError>,
) -> Result<Factor<T>, EngineError> {
    let path = registry.library_of(registry.get(kind, name)?).path.display().to_string();
    Ok(Factor::new(make()?, kind.as_str(), name, &path))
}

/// The loss of a network through the prior and likelihood plugins (shared with the energy
/// callback of HMC-type integrators).
pub struct Loss {
    pub model: Model,
    pub prior: Factor<PriorBox>,
    pub likelihood: RefCell<Factor<LikelihoodBox>>,
    pub train_x: Tensor,
    pub train_y: Tensor,
    pub n: f64,
    pub chunk: i64,
}

impl Loss {
    /// Mean NLL of `logits` through the likelihood plugin (0-d).
    pub fn nll(&self, host: &mut TchHost<'_>, logits: &Tensor, y: &Tensor) -> Result<Tensor, EngineError> {
        let lik = self.likelihood.borrow();
        let (l, t) = (host.insert(logits.shallow_clone()), host.insert(y.shallow_clone()));
        let r = host.call(|h| lik.obj.nll(h, l, t));
        host.remove(l);
        host.remove(t);
        let id = r.map_err(|e| lik.fail("nll", e))?;
        let nll = host.take(id).ok_or_else(|| lik.fail("nll", "returned a handle it had released".into()))?;
        if nll.numel() != 1 {
            return Err(lik.fail("nll", format!("returned a tensor of shape {:?}, expected a scalar", nll.size())));
        }
        // On the CPU a check is free; on a GPU it would synchronise every step, so there a
        // non-finite value surfaces as divergence at the next member or epoch end.
        if nll.device() == Device::Cpu && crate::chain::nonfinite(&nll) && !crate::chain::nonfinite(logits) {
            return Err(nonfinite_output(&lik, "nll", logits));
        }
        Ok(nll.reshape([] as [i64; 0]))
    }

    /// log p(θ) through the prior plugin (0-d, differentiable).
    pub fn log_prior(&self, host: &mut TchHost<'_>, theta: &Tensor) -> Result<Tensor, EngineError> {
        self.log_prior_of(host, &self.model.views(theta), theta)
    }

    /// log p(θ) of per-tensor parameters `views` (leaves or views of the flat `theta`).
    pub fn log_prior_of(
        &self,
        host: &mut TchHost<'_>,
        views: &[Tensor],
        theta: &Tensor,
    ) -> Result<Tensor, EngineError> {
        let ids: Vec<TensorId> = views.iter().map(|v| host.insert(v.shallow_clone())).collect();
        let infos = self.model.infos();
        let r = host.call(|h| self.prior.obj.log_prob(h, RSlice::from_slice(&ids), RSlice::from_slice(infos)));
        ids.iter().for_each(|&id| host.remove(id));
        let id = r.map_err(|e| self.prior.fail("log_prob", e))?;
        let lp = host.take(id).ok_or_else(|| self.prior.fail("log_prob", "returned a released handle".into()))?;
        if lp.numel() != 1 {
            return Err(self.prior.fail("log_prob", format!("returned shape {:?}, expected a scalar", lp.size())));
        }
        if lp.device() == Device::Cpu && crate::chain::nonfinite(&lp) && !crate::chain::nonfinite(theta) {
            return Err(nonfinite_output(&self.prior, "log_prob", theta));
        }
        Ok(lp.reshape([] as [i64; 0]))
    }

    /// U(θ) = n·(mean NLL over the training set) − log p(θ) and ∇U (inference mode).
    fn potential(&self, theta: &Tensor, bn: &mut BnState) -> Result<(Tensor, Tensor), EngineError> {
        let theta = theta.detach().set_requires_grad(true);
        let mut sub = TchHost::new();
        let total = self.train_x.size()[0];
        let mut nll_sum = Tensor::zeros([], (Kind::Float, theta.device()));
        let mut start = 0;
        while start < total {
            let len = self.chunk.min(total - start);
            let logits = self.model.forward(&theta, &self.train_x.narrow(0, start, len), Mode::Eval, bn)?;
            nll_sum += self.nll(&mut sub, &logits, &self.train_y.narrow(0, start, len))? * len as f64;
            start += len;
        }
        let u = nll_sum * (self.n / total as f64) - self.log_prior(&mut sub, &theta)?;
        let grad = Tensor::run_backward(&[&u], &[&theta], false, false).remove(0);
        Ok((u.detach(), grad))
    }
}

/// A plugin returned NaN/Inf for finite inputs. With inputs of moderate size that is the
/// plugin's fault; with huge ones (float overflow of θ², of logits) the chain has diverged.
fn nonfinite_output<T>(plugin: &Factor<T>, during: &str, input: &Tensor) -> EngineError {
    let largest = f64::try_from(input.detach().abs().max()).unwrap_or(f64::INFINITY);
    if largest > 1e6 {
        EngineError::Diverged(format!(
            "{} `{}` returned NaN/Inf in {during} at inputs as large as {largest:.3e}: the chain diverged \
             (lower sampler.lr or use a stabler integrator)",
            plugin.kind, plugin.name
        ))
    } else {
        plugin.fail(during, format!("returned NaN/Inf for finite inputs (largest |input| {largest:.3e})"))
    }
}

/// Continuous stream of shuffled minibatch indices (reshuffled after each pass).
struct BatchStream {
    n: i64,
    perm: Tensor,
    pos: i64,
}

impl BatchStream {
    fn new(n: i64) -> Self {
        Self { n, perm: Tensor::randperm(n, (Kind::Int64, Device::Cpu)), pos: 0 }
    }
    fn next(&mut self, batch: i64) -> Tensor {
        let batch = batch.min(self.n);
        if self.pos + batch > self.n {
            self.perm = Tensor::randperm(self.n, (Kind::Int64, Device::Cpu));
            self.pos = 0;
        }
        let idx = self.perm.narrow(0, self.pos, batch);
        self.pos += batch;
        idx
    }
}

/// A network on a dataset: the objective of a grid cell.
struct Network {
    loss: Rc<Loss>,
    /// Per-tensor autograd leaves that alias the flat θ (same storage): the integrator's in-place
    /// updates of θ are the leaves' values, and backward gives per-tensor gradients that one
    /// `cat` flattens (autograd through `narrow` of a flat leaf would build a full-size gradient
    /// per tensor instead).
    leaves: Vec<Tensor>,
    bn: BnState,
    train_stream: BatchStream,
    precond_stream: BatchStream,
    test_x: Tensor,
    members: Vec<MemberProbs>,
    eval_chunk: i64,
    device: Device,
}

impl Network {
    fn batch(&mut self, batch: u64, train: bool) -> (Tensor, Tensor) {
        let n = self.loss.train_x.size()[0];
        if batch == 0 {
            return (self.loss.train_x.shallow_clone(), self.loss.train_y.shallow_clone());
        }
        let stream = if train { &mut self.train_stream } else { &mut self.precond_stream };
        let idx = stream.next((batch as i64).min(n)).to_device(self.device);
        (self.loss.train_x.index_select(0, &idx), self.loss.train_y.index_select(0, &idx))
    }

    /// Class probabilities of θ on the test set (inference mode, θ's own batch-norm statistics).
    fn evaluate(&mut self, theta: &Tensor) -> Result<MemberProbs, EngineError> {
        let _guard = tch::no_grad_guard();
        let total = self.test_x.size()[0];
        let mut parts = Vec::new();
        let mut start = 0;
        while start < total {
            let len = self.eval_chunk.min(total - start);
            let logits =
                self.loss.model.forward(theta, &self.test_x.narrow(0, start, len), Mode::Eval, &mut self.bn)?;
            parts.push(logits.softmax(-1, Kind::Float));
            start += len;
        }
        let probs = Tensor::cat(&parts, 0).to_device(Device::Cpu).flatten(0, -1);
        Ok(MemberProbs { probs: Vec::<f32>::try_from(probs)? })
    }
}

impl Objective for Network {
    fn infos(&self) -> &[ParamInfo] {
        self.loss.model.infos()
    }
    fn dim(&self) -> i64 {
        self.loss.model.dim()
    }
    fn n(&self) -> f64 {
        self.loss.n
    }
    fn device(&self) -> Device {
        self.device
    }

    fn gradient(
        &mut self,
        host: &mut TchHost<'_>,
        theta: &Tensor,
        batch: u64,
        train: bool,
    ) -> Result<Gradient, EngineError> {
        let (mut x, y) = self.batch(batch, train);
        let loss = Rc::clone(&self.loss);
        if train {
            let mut lik = loss.likelihood.borrow_mut();
            let xid = host.insert(x.shallow_clone());
            let r = host.call(|h| lik.obj.augment(h, xid));
            host.remove(xid);
            if let ROption::RSome(id) = r.map_err(|e| lik.fail("augment", e))? {
                let aug = host.take(id).ok_or_else(|| lik.fail("augment", "returned a released handle".into()))?;
                if aug.size() != x.size() {
                    return Err(
                        lik.fail("augment", format!("changed the batch shape {:?} to {:?}", x.size(), aug.size()))
                    );
                }
                x = aug;
            }
        }
        // The reference estimates the preconditioner with `model(images)`, i.e. inference mode.
        let mode = if train { Mode::Train } else { Mode::Eval };
        let logits = loss.model.forward_views(&self.leaves, &x, mode, &mut self.bn)?;
        let nll = loss.nll(host, &logits, &y)?;
        let total = &nll - loss.log_prior_of(host, &self.leaves, theta)? / loss.n;
        let grads = Tensor::run_backward(&[&total], &self.leaves, false, false);
        let flat: Vec<Tensor> = grads.iter().map(|g| g.reshape([-1])).collect();
        let grad = Tensor::cat(&flat, 0);
        let _guard = tch::no_grad_guard();
        let count = y.size()[0];
        Ok(Gradient {
            grad,
            loss_sum: nll.detach() * count as f64,
            correct: Some(logits.argmax(-1, false).eq_tensor(&y).sum(Kind::Int64)),
            count,
        })
    }

    fn potential(&self) -> Option<Box<PotentialFn<'static>>> {
        let loss = Rc::clone(&self.loss);
        let mut bn = self.bn.copy();
        Some(Box::new(move |at: &Tensor, _full: bool| loss.potential(at, &mut bn).map_err(|e| e.to_string())))
    }

    fn member(&mut self, theta: &Tensor) -> Result<(), EngineError> {
        let m = self.evaluate(theta)?;
        self.members.push(m);
        Ok(())
    }

    fn members(&self) -> u64 {
        self.members.len() as u64
    }
}

/// Draw θ from the prior `samples` times (tensors the prior does not cover keep their initial
/// values) and record the class distribution of the predictions on up to 1000 training inputs.
fn prior_predictive(
    loss: &Loss,
    init: ablate_grid::config::Init,
    samples: usize,
    device: Device,
) -> Result<PriorPredictive, EngineError> {
    let _guard = tch::no_grad_guard();
    let model = &loss.model;
    let inputs = loss.train_x.size()[0].min(1000);
    let x = loss.train_x.narrow(0, 0, inputs);
    let mut host = TchHost::new();
    let mut fractions = Vec::with_capacity(samples);
    let mut counts = vec![0i64; model.classes as usize];
    for _ in 0..samples {
        let theta = model.init(init, device);
        for (info, view) in model.infos().iter().zip(model.views(&theta)) {
            let like = host.insert(view.shallow_clone());
            let r = host.call(|h| loss.prior.obj.sample(h, info, like));
            host.remove(like);
            if let ROption::RSome(id) = r.map_err(|e| loss.prior.fail("sample", e))? {
                let draw =
                    host.take(id).ok_or_else(|| loss.prior.fail("sample", "returned a released handle".into()))?;
                if draw.size() != view.size() {
                    return Err(loss.prior.fail(
                        "sample",
                        format!("drew shape {:?} for a tensor of shape {:?}", draw.size(), view.size()),
                    ));
                }
                view.shallow_clone().copy_(&draw);
            }
        }
        let mut bn = model.new_bn_state(device);
        let preds = model.forward(&theta, &x, Mode::Eval, &mut bn)?.argmax(-1, false);
        let hist = Vec::<i64>::try_from(preds.bincount(None::<Tensor>, model.classes).to_device(Device::Cpu))?;
        for (c, h) in counts.iter_mut().zip(&hist) {
            *c += h;
        }
        fractions.push(*hist.iter().max().unwrap_or(&0) as f64 / inputs as f64);
    }
    let k = fractions.len() as f64;
    let mean = fractions.iter().sum::<f64>() / k;
    let var = fractions.iter().map(|f| (f - mean).powi(2)).sum::<f64>() / (k - 1.0).max(1.0);
    Ok(PriorPredictive {
        samples,
        inputs,
        top_class_fraction: mean,
        top_class_fraction_se: (var / k).sqrt(),
        class_counts: counts,
    })
}

/// Load the dataset a cell configuration asks for.
pub fn load_data(d: &ablate_grid::config::DataConfig) -> Result<Dataset, EngineError> {
    let mut req = ablate_data::DataRequest::new(d.dataset.clone());
    req.path = d.path.as_ref().map(std::path::PathBuf::from);
    req.train_size = d.train_size;
    req.test_size = d.test_size;
    req.subset_seed = d.subset_seed;
    req.normalize = d.normalize;
    Ok(ablate_data::load(&req)?)
}

/// Run one cell. Seeds libtorch's generator from `cfg.seed` first: call it once per process.
pub fn run_cell(
    cfg: &CellConfig,
    data: &Dataset,
    registry: &Registry,
    device: Device,
    observer: &mut dyn Observer,
) -> Result<CellOutcome, EngineError> {
    tch::manual_seed(cfg.seed as i64);
    if device.is_cuda() {
        tch::Cuda::manual_seed_all(cfg.seed);
    }
    let s = &cfg.sampler;
    let prior =
        factor(registry, FactorKind::Prior, &cfg.prior.name, || registry.prior(&cfg.prior.name, &cfg.prior.params))?;
    let mut integrator = factor(registry, FactorKind::Integrator, &cfg.integrator.name, || {
        registry.integrator(&cfg.integrator.name, &cfg.integrator.params)
    })?;
    let mut noise =
        factor(registry, FactorKind::Noise, &cfg.noise.name, || registry.noise(&cfg.noise.name, &cfg.noise.params))?;
    let likelihood = factor(registry, FactorKind::Likelihood, &cfg.likelihood.name, || {
        registry.likelihood(&cfg.likelihood.name, &cfg.likelihood.params)
    })?;

    let shape = [data.channels as i64, data.height as i64, data.width as i64];
    let to_tensor = |split: &ablate_data::Split| -> (Tensor, Tensor) {
        let n = split.len() as i64;
        let x = Tensor::from_slice(&split.images).reshape([n, shape[0], shape[1], shape[2]]).to_device(device);
        (x, Tensor::from_slice(&split.labels).to_device(device))
    };
    let (train_x, train_y) = to_tensor(&data.train);
    let (test_x, _) = to_tensor(&data.test);
    let n_train = data.train.len() as u64;
    let toggles = likelihood.obj.model();
    let n = likelihood.obj.effective_n(n_train);
    if !(n.is_finite() && n > 0.0) {
        return Err(likelihood.fail("effective_n", format!("returned {n}; it must be a positive number")));
    }
    let model = Model::new(&cfg.model, toggles, (shape[0], shape[1], shape[2]), data.num_classes as i64)?;
    let steps_per_epoch = (n_train / s.batch_size as u64).max(1);
    let protocol = Protocol::new(s, steps_per_epoch, cfg.temperature);
    tracing::info!(dim = model.dim(), n, steps_per_epoch, members = protocol.expected_members(), "cell set up");
    if protocol.expected_members() == 0 {
        return Err(EngineError::Config(format!(
            "the protocol collects no ensemble member: {} epochs with cycle_start_sampling {} and cycle_length {}",
            s.epochs, s.cycle_start_sampling, s.cycle_length
        )));
    }

    let theta = model.init(s.init, device);
    let leaves: Vec<Tensor> = model.views(&theta).into_iter().map(|v| v.detach().set_requires_grad(true)).collect();
    let bn = model.new_bn_state(device);
    let loss = Rc::new(Loss {
        model,
        prior,
        likelihood: RefCell::new(likelihood),
        train_x,
        train_y,
        n,
        chunk: cfg.eval.batch_size as i64,
    });
    let mut network = Network {
        loss: Rc::clone(&loss),
        leaves,
        bn,
        train_stream: BatchStream::new(n_train as i64),
        precond_stream: BatchStream::new(n_train as i64),
        test_x,
        members: Vec::new(),
        eval_chunk: cfg.eval.batch_size as i64,
        device,
    };
    let settings = ChainSettings {
        lr: s.lr,
        momentum_decay: s.momentum_decay,
        batch_size: s.batch_size as u64,
        layerwise_mass: s.preconditioner == Preconditioner::Layerwise,
        precond_batches: s.precond_batches,
    };
    let mut host = TchHost::new();
    let chain =
        run_chain(&mut network, &theta, &mut integrator, &mut noise, &protocol, &settings, &mut host, observer)?;

    // After the chain, so that the check does not change the chain's random stream.
    let prior_check = match cfg.eval.prior_samples {
        0 => None,
        k => Some(prior_predictive(&loss, s.init, k, device)?),
    };
    let labels = &data.test.labels;
    let members = &network.members;
    let metrics = (!members.is_empty()).then(|| {
        let kinetic = chain.last_kinetic.as_ref();
        FinalMetrics {
            members: members.len(),
            ensemble: ensemble_metrics(members, labels, data.num_classes, cfg.eval.ece_bins),
            growth: growth_curve(members, labels, data.num_classes, cfg.eval.ece_bins),
            diagnostics: FinalDiagnostics {
                kinetic_in_band_fraction: kinetic.map_or(f64::NAN, |k| k.in_band_fraction),
                kinetic_temperature: kinetic.map_or(f64::NAN, |k| k.overall),
                configurational_temperature: chain.last_configurational,
                kinetic_per_tensor: kinetic.map(|k| k.per_tensor.clone()).unwrap_or_default(),
            },
            acceptance: chain.acceptance,
            dim: network.loss.model.dim(),
            n_effective: n,
            steps: chain.steps,
            prior_predictive: prior_check.clone(),
        }
    });
    Ok(CellOutcome { status: chain.status, epochs: chain.epochs, metrics })
}
