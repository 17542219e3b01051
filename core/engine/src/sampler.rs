//! The SG-MCMC loop of one cell, the paper's protocol by default (reference §1, §8).
//!
//! Per step k (global, 1-based), with C = timestep factor and T_k = ramped temperature:
//! 1. a training batch (size from the noise plugin's plan; 0 = full batch) is augmented by the
//!    likelihood plugin;
//! 2. the loss fed to the integrator is G̃ = mean minibatch NLL + (1/n)·(−log p(θ)), so that
//!    U = n·G̃; its gradient w.r.t. the flat θ comes from libtorch autograd (prior included);
//! 3. the noise plugin may transform the gradient (matched Gaussian, α-stable, ...);
//! 4. the integrator plugin updates θ in place; T enters only the injected noise, so the chain
//!    targets exp(−U/T) (prior and likelihood tempered together).
//!
//! At the start of every epoch, 32 (configurable) fresh minibatches estimate the layerwise
//! preconditioner (raw second moment, one scalar per tensor, scaled so the smallest is 1;
//! momenta rescaled by sqrt(M_new/M_old)), the configurational temperature and the minibatch
//! gradient noise. At every cycle end from `cycle_start_sampling` on, the current θ is an
//! ensemble member and is evaluated on the test set at once (inference mode, its own batch-norm
//! statistics). A non-finite value stops the cell as `diverged` with the step.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use abi_stable::std_types::{ROption, RSlice};
use ablate_data::Dataset;
use ablate_grid::config::{CellConfig, Preconditioner};
use ablate_plugin_host::Registry;
use ablate_sdk::abi::{LikelihoodBox, PriorBox};
use ablate_sdk::{FactorKind, NoiseStats, StepCtx, StepTensors, TensorId};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::diagnostics::{self, Kinetic};
use crate::host::TchHost;
use crate::metrics::{ensemble_metrics, growth_curve, EnsembleMetrics, GrowthPoint, MemberProbs};
use crate::model::{BnState, Mode, Model};
use crate::schedule::Protocol;
use crate::EngineError;

/// One row of `epochs.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRow {
    pub epoch: u64,
    pub step: u64,
    pub temperature: f64,
    pub timestep_factor: f64,
    pub train_nll: f64,
    pub train_accuracy: f64,
    pub kinetic_temperature: f64,
    pub kinetic_in_band: f64,
    pub configurational_temperature: f64,
    pub members: u64,
    pub wall_seconds: f64,
}

impl EpochRow {
    pub const CSV_HEADER: &'static str = "epoch,step,temperature,timestep_factor,train_nll,train_accuracy,\
kinetic_temperature,kinetic_in_band,configurational_temperature,members,wall_seconds";

    pub fn csv_line(&self) -> String {
        format!(
            "{},{},{},{},{},{},{},{},{},{},{:.3}",
            self.epoch,
            self.step,
            self.temperature,
            self.timestep_factor,
            self.train_nll,
            self.train_accuracy,
            self.kinetic_temperature,
            self.kinetic_in_band,
            self.configurational_temperature,
            self.members,
            self.wall_seconds
        )
    }
}

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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalDiagnostics {
    pub kinetic_in_band_fraction: f64,
    pub kinetic_temperature: f64,
    pub configurational_temperature: f64,
    pub kinetic_per_tensor: Vec<diagnostics::TensorKinetic>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CellStatus {
    Done,
    /// A non-finite value appeared at `step`.
    Diverged { step: u64, message: String },
}

#[derive(Debug, Clone)]
pub struct CellOutcome {
    pub status: CellStatus,
    pub epochs: Vec<EpochRow>,
    /// For a diverged cell: the metrics of the members collected before it diverged, if any.
    pub metrics: Option<FinalMetrics>,
}

/// Receives progress while a cell runs (progress bars, incremental `epochs.csv`).
pub trait Observer {
    fn epoch(&mut self, _row: &EpochRow) {}
    /// Return false to stop the cell (Ctrl-C): the run returns [`EngineError::Interrupted`].
    fn keep_going(&mut self) -> bool {
        true
    }
}

impl Observer for () {}

/// The factor objects of a cell, with where they came from (for error messages).
struct Factor<T> {
    obj: T,
    kind: &'static str,
    name: String,
    path: String,
}

impl<T> Factor<T> {
    fn fail(&self, during: &str, message: String) -> EngineError {
        EngineError::PluginCall {
            kind: self.kind,
            name: self.name.clone(),
            path: self.path.clone(),
            during: during.to_owned(),
            message,
        }
    }
}

fn factor<T>(
    registry: &Registry,
    kind: FactorKind,
    name: &str,
    make: impl FnOnce() -> Result<T, ablate_plugin_host::PluginError>,
) -> Result<Factor<T>, EngineError> {
    let path = registry.library_of(registry.get(kind, name)?).path.display().to_string();
    Ok(Factor { obj: make()?, kind: kind.as_str(), name: name.to_owned(), path })
}

/// Everything the loss needs, shared with the energy callback of HMC-type integrators.
struct Problem {
    model: Model,
    prior: Factor<PriorBox>,
    likelihood: RefCell<Factor<LikelihoodBox>>,
    train_x: Tensor,
    train_y: Tensor,
    n: f64,
    chunk: i64,
}

impl Problem {
    /// G̃(θ) = mean NLL + (1/n)(−log p(θ)) on a batch, through the plugins, in `host`.
    fn loss(&self, host: &mut TchHost<'_>, theta: &Tensor, x: &Tensor, y: &Tensor, bn: &mut BnState, mode: Mode) -> Result<(Tensor, Tensor), EngineError> {
        let logits = self.model.forward(theta, x, mode, bn)?;
        let nll = self.nll(host, &logits, y)?;
        let logp = self.log_prior(host, theta)?;
        let loss = &nll - logp / self.n;
        Ok((loss, logits))
    }

    fn nll(&self, host: &mut TchHost<'_>, logits: &Tensor, y: &Tensor) -> Result<Tensor, EngineError> {
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
        Ok(nll.reshape([] as [i64; 0]))
    }

    fn log_prior(&self, host: &mut TchHost<'_>, theta: &Tensor) -> Result<Tensor, EngineError> {
        let ids: Vec<TensorId> = self.model.views(theta).into_iter().map(|v| host.insert(v)).collect();
        let infos = self.model.infos();
        let r = host.call(|h| self.prior.obj.log_prob(h, RSlice::from_slice(&ids), RSlice::from_slice(infos)));
        ids.iter().for_each(|&id| host.remove(id));
        let id = r.map_err(|e| self.prior.fail("log_prob", e))?;
        let lp = host.take(id).ok_or_else(|| self.prior.fail("log_prob", "returned a released handle".into()))?;
        if lp.numel() != 1 {
            return Err(self.prior.fail("log_prob", format!("returned shape {:?}, expected a scalar", lp.size())));
        }
        Ok(lp.reshape([] as [i64; 0]))
    }

    /// U(θ) and ∇U(θ) on the full training set (or `batch` examples from the start).
    fn potential(&self, theta: &Tensor, bn: &mut BnState) -> Result<(Tensor, Tensor), EngineError> {
        let theta = theta.detach().set_requires_grad(true);
        let mut sub = TchHost::new();
        let total = self.train_x.size()[0];
        let mut nll_sum = Tensor::zeros([], (Kind::Float, theta.device()));
        let mut start = 0;
        while start < total {
            let len = self.chunk.min(total - start);
            let x = self.train_x.narrow(0, start, len);
            let y = self.train_y.narrow(0, start, len);
            let logits = self.model.forward(&theta, &x, Mode::Eval, bn)?;
            nll_sum = nll_sum + self.nll(&mut sub, &logits, &y)? * len as f64;
            start += len;
        }
        let logp = self.log_prior(&mut sub, &theta)?;
        let u = nll_sum * (self.n / total as f64) - logp;
        let grad = Tensor::run_backward(&[&u], &[&theta], false, false).remove(0);
        Ok((u.detach(), grad))
    }
}

/// Continuous stream of shuffled minibatch indices (reshuffled at each pass).
struct BatchStream {
    n: i64,
    batch: i64,
    perm: Tensor,
    pos: i64,
}

impl BatchStream {
    fn new(n: i64, batch: i64) -> Self {
        Self { n, batch: batch.min(n), perm: Tensor::randperm(n, (Kind::Int64, Device::Cpu)), pos: 0 }
    }
    fn next(&mut self) -> Tensor {
        if self.pos + self.batch > self.n {
            self.perm = Tensor::randperm(self.n, (Kind::Int64, Device::Cpu));
            self.pos = 0;
        }
        let idx = self.perm.narrow(0, self.pos, self.batch);
        self.pos += self.batch;
        idx
    }
}

/// Per-tensor (segment) reductions of flat vectors.
struct Segments {
    offsets: Vec<i64>,
    sizes: Vec<i64>,
    names: Vec<String>,
    counts: Tensor,
}

impl Segments {
    fn new(model: &Model, device: Device) -> Self {
        let infos = model.infos();
        let sizes: Vec<i64> = infos.iter().map(|i| i.numel).collect();
        Self {
            offsets: infos.iter().map(|i| i.offset).collect(),
            counts: Tensor::from_slice(&sizes).to_device(device),
            names: infos.iter().map(|i| i.name.to_string()).collect(),
            sizes,
        }
    }
    /// Per-segment means as a [P] tensor.
    fn means(&self, flat: &Tensor) -> Tensor {
        let parts: Vec<Tensor> =
            self.offsets.iter().zip(&self.sizes).map(|(&o, &s)| flat.narrow(0, o, s).mean(Kind::Float)).collect();
        Tensor::stack(&parts, 0)
    }
    fn sums(&self, flat: &Tensor) -> Vec<f64> {
        let parts: Vec<Tensor> =
            self.offsets.iter().zip(&self.sizes).map(|(&o, &s)| flat.narrow(0, o, s).sum(Kind::Double)).collect();
        Vec::<f64>::try_from(Tensor::stack(&parts, 0).to_device(Device::Cpu)).unwrap_or_default()
    }
    /// Broadcast [P] per-segment values back to the flat layout.
    fn expand(&self, per_segment: &Tensor) -> Tensor {
        per_segment.repeat_interleave_self_tensor(&self.counts, 0, None)
    }
}

/// The mass and its transforms, flat, registered in the host for integrator calls.
struct Mass {
    m: Tensor,
    ids: [TensorId; 4],
}

impl Mass {
    fn new(host: &mut TchHost<'_>, m: Tensor) -> Self {
        let ids = [
            host.insert(m.shallow_clone()),
            host.insert(m.reciprocal()),
            host.insert(m.sqrt()),
            host.insert(m.rsqrt()),
        ];
        Self { m, ids }
    }
    fn release(self, host: &mut TchHost<'_>) {
        self.ids.iter().for_each(|&id| host.remove(id));
    }
}

fn nonfinite(t: &Tensor) -> bool {
    !bool::try_from(t.isfinite().all()).unwrap_or(false)
}

/// Run one cell. Seeds libtorch's generator from `cfg.seed` first: call it once per process.
pub fn run_cell(
    cfg: &CellConfig,
    data: &Dataset,
    registry: &Registry,
    device: Device,
    observer: &mut dyn Observer,
) -> Result<CellOutcome, EngineError> {
    let started = Instant::now();
    tch::manual_seed(cfg.seed as i64);
    if device.is_cuda() {
        tch::Cuda::manual_seed_all(cfg.seed);
    }
    let s = &cfg.sampler;
    let prior = factor(registry, FactorKind::Prior, &cfg.prior.name, || registry.prior(&cfg.prior.name, &cfg.prior.params))?;
    let mut integrator = factor(registry, FactorKind::Integrator, &cfg.integrator.name, || {
        registry.integrator(&cfg.integrator.name, &cfg.integrator.params)
    })?;
    let mut noise = factor(registry, FactorKind::Noise, &cfg.noise.name, || registry.noise(&cfg.noise.name, &cfg.noise.params))?;
    let likelihood = factor(registry, FactorKind::Likelihood, &cfg.likelihood.name, || {
        registry.likelihood(&cfg.likelihood.name, &cfg.likelihood.params)
    })?;

    // Data on the device.
    let shape = [data.channels as i64, data.height as i64, data.width as i64];
    let to_tensor = |split: &ablate_data::Split| -> (Tensor, Tensor) {
        let n = split.len() as i64;
        let x = Tensor::from_slice(&split.images).reshape([n, shape[0], shape[1], shape[2]]).to_device(device);
        let y = Tensor::from_slice(&split.labels).to_device(device);
        (x, y)
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
    let plan = noise.obj.plan(s.batch_size as u64, n_train);
    let steps_per_epoch = (n_train / s.batch_size as u64).max(1);
    let protocol = Protocol::new(s, steps_per_epoch, cfg.temperature);
    tracing::info!(
        dim = model.dim(),
        n,
        steps_per_epoch,
        gradient_batch = plan.gradient_batch,
        members = protocol.expected_members(),
        "cell set up"
    );

    let problem = Rc::new(Problem {
        model,
        prior,
        likelihood: RefCell::new(likelihood),
        train_x,
        train_y,
        n,
        chunk: cfg.eval.batch_size as i64,
    });
    let model = &problem.model;
    let segments = Segments::new(model, device);
    let mut bn = model.new_bn_state(device);
    let theta = model.init(s.init, device).set_requires_grad(true);

    let mut host = TchHost::new();
    {
        // Energies for HMC / Metropolis–Hastings integrators: evaluated in inference mode with
        // a copy of the current batch-norm statistics.
        let problem = Rc::clone(&problem);
        let mut bn_eval = problem.model.new_bn_state(device);
        host.set_potential(Box::new(move |at: &Tensor, _full: bool| {
            problem.potential(at, &mut bn_eval).map_err(|e| e.to_string())
        }));
    }
    let theta_id = host.insert(theta.shallow_clone());
    host.call(|h| integrator.obj.init(h, theta_id)).map_err(|e| integrator.fail("init", e))?;
    let mut mass = Mass::new(&mut host, Tensor::ones([model.dim()], (Kind::Float, device)));

    let mut train_stream = BatchStream::new(n_train as i64, if plan.gradient_batch == 0 { n_train as i64 } else { plan.gradient_batch as i64 });
    let mut precond_stream = BatchStream::new(n_train as i64, s.batch_size as i64);
    let mut members: Vec<MemberProbs> = Vec::new();
    let mut epochs: Vec<EpochRow> = Vec::new();
    let mut acceptance = (0.0, 0u64);
    let mut last_kinetic: Option<Kinetic> = None;
    let mut last_ctemp = f64::NAN;
    let mut k: u64 = 0;
    let test_labels: Vec<i64> = data.test.labels.clone();

    let diverged = |step: u64, what: String, epochs: Vec<EpochRow>, members: &[MemberProbs]| -> CellOutcome {
        tracing::warn!(step, %what, "cell diverged");
        let metrics = (!members.is_empty()).then(|| FinalMetrics {
            members: members.len(),
            ensemble: ensemble_metrics(members, &test_labels, data.num_classes, cfg.eval.ece_bins),
            growth: growth_curve(members, &test_labels, data.num_classes, cfg.eval.ece_bins),
            diagnostics: FinalDiagnostics {
                kinetic_in_band_fraction: f64::NAN,
                kinetic_temperature: f64::NAN,
                configurational_temperature: f64::NAN,
                kinetic_per_tensor: Vec::new(),
            },
            acceptance: None,
            dim: problem.model.dim(),
            n_effective: problem.n,
            steps: step,
        });
        CellOutcome { status: CellStatus::Diverged { step, message: what }, epochs, metrics }
    };

    for epoch in 1..=protocol.epochs {
        if !observer.keep_going() {
            return Err(EngineError::Interrupted);
        }
        // --- Epoch start: preconditioner, configurational temperature, noise statistics.
        let (g_mean, g_m2) = {
            let mut mean = Tensor::zeros([model.dim()], (Kind::Float, device));
            let mut m2 = Tensor::zeros([model.dim()], (Kind::Float, device));
            for count in 1..=s.precond_batches {
                let idx = precond_stream.next().to_device(device);
                let (x, y) = (problem.train_x.index_select(0, &idx), problem.train_y.index_select(0, &idx));
                let (loss, _) = problem.loss(&mut host, &theta, &x, &y, &mut bn, Mode::Eval)?;
                let g = Tensor::run_backward(&[&loss], &[&theta], false, false).remove(0);
                let delta = &g - &mean;
                mean += &delta / count as f64;
                m2 += &delta * (&g - &mean);
            }
            (mean, m2 / s.precond_batches as f64)
        };
        if nonfinite(&g_mean) {
            return Ok(diverged(k, format!("non-finite gradient at the start of epoch {epoch}"), epochs, &members));
        }
        last_ctemp = f64::try_from((&theta.detach() * &g_mean).sum(Kind::Double)).unwrap_or(f64::NAN) * n / model.dim() as f64;
        if s.preconditioner == Preconditioner::Layerwise {
            let moment = g_mean.square() + &g_m2;
            let per_tensor = (segments.means(&moment) + 1e-7).sqrt();
            let per_tensor = &per_tensor / per_tensor.min();
            let m_new = segments.expand(&per_tensor);
            let factor = (&m_new / &mass.m).sqrt();
            let fid = host.insert(factor);
            let r = host.call(|h| integrator.obj.rescale_momenta(h, fid));
            host.remove(fid);
            r.map_err(|e| integrator.fail("rescale_momenta", e))?;
            let old = std::mem::replace(&mut mass, Mass::new(&mut host, m_new));
            old.release(&mut host);
        }
        let var_elem = g_m2.shallow_clone();
        let var_tensor = segments.expand(&segments.means(&var_elem));
        let stats = NoiseStats {
            var_elementwise: host.insert(var_elem),
            var_per_tensor: host.insert(var_tensor),
            batch_size: s.batch_size as u64,
        };

        // --- The steps of this epoch.
        let mut nll_sum = Tensor::zeros([], (Kind::Double, device));
        let mut correct = Tensor::zeros([], (Kind::Int64, device));
        let mut seen = 0i64;
        let mut ctx = StepCtx { step: 0, lr: s.lr, momentum_decay: s.momentum_decay, timestep_factor: 1.0, temperature: 0.0, n, batch_size: plan.gradient_batch };
        for _ in 0..protocol.steps_per_epoch {
            k += 1;
            ctx.step = k;
            ctx.timestep_factor = protocol.timestep_factor(k);
            ctx.temperature = protocol.temperature_at(k);
            let idx = train_stream.next().to_device(device);
            let mut x = problem.train_x.index_select(0, &idx);
            let y = problem.train_y.index_select(0, &idx);
            {
                let mut lik = problem.likelihood.borrow_mut();
                let xid = host.insert(x.shallow_clone());
                let r = host.call(|h| lik.obj.augment(h, xid));
                host.remove(xid);
                match r.map_err(|e| lik.fail("augment", e))? {
                    ROption::RSome(id) => {
                        let aug = host.take(id).ok_or_else(|| lik.fail("augment", "returned a released handle".into()))?;
                        if aug.size() != x.size() {
                            return Err(lik.fail("augment", format!("changed the batch shape {:?} to {:?}", x.size(), aug.size())));
                        }
                        x = aug;
                    }
                    ROption::RNone => {}
                }
            }
            let (loss, logits) = problem.loss(&mut host, &theta, &x, &y, &mut bn, Mode::Train)?;
            let grad = Tensor::run_backward(&[&loss], &[&theta], false, false).remove(0);
            {
                let _guard = tch::no_grad_guard();
                let len = y.size()[0];
                nll_sum += (&loss).to_kind(Kind::Double) * len as f64;
                correct += logits.argmax(-1, false).eq_tensor(&y).sum(Kind::Int64);
                seen += len;
            }
            let grad_id = host.insert(grad.shallow_clone());
            let r = host.call(|h| noise.obj.transform(h, &ctx, grad_id, &stats));
            r.map_err(|e| noise.fail("transform", e))?;
            let tensors = StepTensors { params: theta_id, grad: grad_id, mass: mass.ids[0], mass_inv: mass.ids[1], mass_sqrt: mass.ids[2], mass_inv_sqrt: mass.ids[3] };
            let report = host.call(|h| integrator.obj.step(h, &ctx, &tensors)).map_err(|e| integrator.fail("step", e))?;
            host.remove(grad_id);
            if report.acceptance.is_finite() {
                acceptance.0 += report.acceptance;
                acceptance.1 += 1;
            }
            if device == Device::Cpu && nonfinite(&theta) {
                return Ok(diverged(k, format!("parameters became NaN/Inf at step {k} (epoch {epoch}); lower sampler.lr or check the integrator"), epochs, &members));
            }
            if protocol.is_member_step(k) {
                if nonfinite(&theta) {
                    return Ok(diverged(k, format!("parameters became NaN/Inf before step {k}"), epochs, &members));
                }
                members.push(evaluate(model, &theta, &test_x, &mut bn, cfg.eval.batch_size as i64)?);
            }
        }
        host.remove(stats.var_elementwise);
        host.remove(stats.var_per_tensor);

        // --- Epoch end: kinetic temperature and the epoch row.
        let target = protocol.temperature_at(k);
        let kin = host.call(|h| integrator.obj.kinetic(h, mass.ids[1])).map_err(|e| integrator.fail("kinetic", e))?;
        let kinetic = match kin {
            ROption::RSome(id) => {
                let elems = host.take(id).ok_or_else(|| integrator.fail("kinetic", "returned a released handle".into()))?;
                Some(diagnostics::kinetic(&segments.names, &segments.sizes, &segments.sums(&elems), target))
            }
            ROption::RNone => None,
        };
        let train_nll = f64::try_from(&nll_sum).unwrap_or(f64::NAN) / seen.max(1) as f64;
        if !train_nll.is_finite() || nonfinite(&theta) {
            return Ok(diverged(k, format!("training loss or parameters became NaN/Inf in epoch {epoch}"), epochs, &members));
        }
        let row = EpochRow {
            epoch,
            step: k,
            temperature: target,
            timestep_factor: protocol.timestep_factor(k),
            train_nll,
            train_accuracy: i64::try_from(&correct).unwrap_or(0) as f64 / seen.max(1) as f64,
            kinetic_temperature: kinetic.as_ref().map_or(f64::NAN, |k| k.overall),
            kinetic_in_band: kinetic.as_ref().map_or(f64::NAN, |k| k.in_band_fraction),
            configurational_temperature: last_ctemp,
            members: members.len() as u64,
            wall_seconds: started.elapsed().as_secs_f64(),
        };
        observer.epoch(&row);
        epochs.push(row);
        last_kinetic = kinetic;
    }

    if members.is_empty() {
        return Err(EngineError::Config(format!(
            "the protocol collected no ensemble member: {} epochs with cycle_start_sampling {} and cycle_length {}",
            s.epochs, s.cycle_start_sampling, s.cycle_length
        )));
    }
    let classes = data.num_classes;
    let metrics = FinalMetrics {
        members: members.len(),
        ensemble: ensemble_metrics(&members, &test_labels, classes, cfg.eval.ece_bins),
        growth: growth_curve(&members, &test_labels, classes, cfg.eval.ece_bins),
        diagnostics: FinalDiagnostics {
            kinetic_in_band_fraction: last_kinetic.as_ref().map_or(f64::NAN, |k| k.in_band_fraction),
            kinetic_temperature: last_kinetic.as_ref().map_or(f64::NAN, |k| k.overall),
            configurational_temperature: last_ctemp,
            kinetic_per_tensor: last_kinetic.map(|k| k.per_tensor).unwrap_or_default(),
        },
        acceptance: (acceptance.1 > 0).then(|| acceptance.0 / acceptance.1 as f64),
        dim: model.dim(),
        n_effective: n,
        steps: k,
    };
    Ok(CellOutcome { status: CellStatus::Done, epochs, metrics: Some(metrics) })
}

/// Class probabilities of θ on the test set (inference mode, θ's own batch-norm statistics).
fn evaluate(model: &Model, theta: &Tensor, x: &Tensor, bn: &mut BnState, chunk: i64) -> Result<MemberProbs, EngineError> {
    let _guard = tch::no_grad_guard();
    let total = x.size()[0];
    let mut parts = Vec::new();
    let mut start = 0;
    while start < total {
        let len = chunk.min(total - start);
        let logits = model.forward(theta, &x.narrow(0, start, len), Mode::Eval, bn)?;
        parts.push(logits.softmax(-1, Kind::Float));
        start += len;
    }
    let probs = Tensor::cat(&parts, 0).to_device(Device::Cpu).flatten(0, -1);
    Ok(MemberProbs { probs: Vec::<f32>::try_from(probs)? })
}
