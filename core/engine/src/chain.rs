//! The SG-MCMC loop over any [`Objective`]: the paper's protocol (reference §1, §8).
//!
//! Per step k (global, 1-based), with C = timestep factor and T_k = ramped temperature:
//! 1. the objective returns ∇G̃ on a minibatch (size from the noise plugin's plan; 0 = the full
//!    training set), where G̃ = mean NLL + (1/n)·(−log p(θ)) so that U = n·G̃;
//! 2. the noise plugin may transform the gradient (matched Gaussian, α-stable, ...);
//! 3. the integrator plugin updates θ in place; T enters only the injected noise, so the chain
//!    targets exp(−U/T) (prior and likelihood tempered together).
//!
//! At the start of every epoch, `precond_batches` fresh minibatches estimate the layerwise
//! preconditioner (raw second moment E[g²], one scalar sqrt(mean E[g²] + 1e-7) per tensor,
//! scaled so the smallest is 1; momenta rescaled by sqrt(M_new/M_old)), the configurational
//! temperature (n/d)·Σθ·ḡ and the minibatch gradient noise handed to the noise plugin. At each
//! cycle end from `cycle_start_sampling` on, the objective takes θ as an ensemble member. A
//! non-finite value stops the chain as diverged with its step.
//!
//! The network problem of a grid cell is one objective ([`crate::cell`]); the statistical tests
//! drive the same loop with analytic objectives (Gaussian targets, conjugate linear regression).

use std::time::Instant;

use abi_stable::std_types::ROption;
use ablate_sdk::abi::{IntegratorBox, NoiseBox};
use ablate_sdk::{NoiseStats, ParamInfo, StepCtx, StepTensors, TensorId};
use tch::{Device, Kind, Tensor};

use crate::diagnostics::{self, Kinetic};
use crate::host::{PotentialFn, TchHost};
use crate::schedule::Protocol;
use crate::EngineError;

/// One row of `epochs.csv`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
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

/// Receives progress while a chain runs (progress bars, incremental `epochs.csv`).
pub trait Observer {
    fn epoch(&mut self, _row: &EpochRow) {}
    /// Called after every step (tests record states here; keep it cheap).
    fn step(&mut self, _k: u64, _theta: &Tensor, _host: &mut TchHost<'_>) {}
    /// Return false to stop (Ctrl-C): the run returns [`EngineError::Interrupted`].
    fn keep_going(&mut self) -> bool {
        true
    }
}

impl Observer for () {}

/// A gradient estimate of G̃ and what it was computed on.
pub struct Gradient {
    /// ∇G̃(θ), flat.
    pub grad: Tensor,
    /// Sum over the batch of the per-example loss (0-d, for the epoch's training NLL).
    pub loss_sum: Tensor,
    /// Correct predictions in the batch (0-d), if the objective classifies.
    pub correct: Option<Tensor>,
    pub count: i64,
}

/// What the chain samples: parameters, the gradient of the per-example loss, members.
pub trait Objective {
    /// Parameter tensors (offsets into the flat θ): the preconditioner and diagnostics work
    /// per tensor.
    fn infos(&self) -> &[ParamInfo];
    fn dim(&self) -> i64;
    /// n in U = n·G̃.
    fn n(&self) -> f64;
    fn device(&self) -> Device;
    /// ∇G̃ on the next `batch` examples of its stream (0 = the whole training set). `train`
    /// distinguishes training steps (augmentation, batch-norm training mode) from the
    /// preconditioner's estimation batches.
    fn gradient(
        &mut self,
        host: &mut TchHost<'_>,
        theta: &Tensor,
        batch: u64,
        train: bool,
    ) -> Result<Gradient, EngineError>;
    /// U(θ), ∇U(θ) for energy-based integrators (HMC, Metropolis–Hastings).
    fn potential(&self) -> Option<Box<PotentialFn<'static>>> {
        None
    }
    /// θ is an ensemble member.
    fn member(&mut self, _theta: &Tensor) -> Result<(), EngineError> {
        Ok(())
    }
    fn members(&self) -> u64 {
        0
    }
}

/// Sampler settings the loop needs (from the cell's `SamplerConfig`).
#[derive(Debug, Clone)]
pub struct ChainSettings {
    pub lr: f64,
    pub momentum_decay: f64,
    pub batch_size: u64,
    pub layerwise_mass: bool,
    pub precond_batches: usize,
}

/// A plugin object with where it came from, for error messages.
pub struct Factor<T> {
    pub obj: T,
    pub kind: &'static str,
    pub name: String,
    pub path: String,
}

impl<T> Factor<T> {
    pub fn new(obj: T, kind: &'static str, name: &str, path: &str) -> Self {
        Self { obj, kind, name: name.to_owned(), path: path.to_owned() }
    }
    pub fn fail(&self, during: &str, message: String) -> EngineError {
        EngineError::PluginCall {
            kind: self.kind,
            name: self.name.clone(),
            path: self.path.clone(),
            during: during.to_owned(),
            message,
        }
    }
}

/// How a chain ended.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum ChainStatus {
    Done,
    /// A non-finite value appeared at `step`.
    Diverged {
        step: u64,
        message: String,
    },
}

/// What the loop measured.
#[derive(Debug)]
pub struct ChainOutcome {
    pub status: ChainStatus,
    pub epochs: Vec<EpochRow>,
    pub last_kinetic: Option<Kinetic>,
    pub last_configurational: f64,
    /// Mean Metropolis–Hastings acceptance, if the integrator reports one.
    pub acceptance: Option<f64>,
    pub steps: u64,
    /// Final θ.
    pub theta: Tensor,
}

/// Per-tensor (segment) reductions of flat vectors.
pub(crate) struct Segments {
    offsets: Vec<i64>,
    pub(crate) sizes: Vec<i64>,
    pub(crate) names: Vec<String>,
    counts: Tensor,
}

impl Segments {
    pub(crate) fn new(infos: &[ParamInfo], device: Device) -> Self {
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

/// Whether `t` holds a NaN or an infinity: its sum (accumulated in f64, one reduction, no
/// temporary mask) is then not finite. A finite f32 tensor cannot overflow an f64 sum.
pub(crate) fn nonfinite(t: &Tensor) -> bool {
    !f64::try_from(t.detach().sum(Kind::Double)).is_ok_and(f64::is_finite)
}

/// Preconditioner batches: Welford mean and (biased) variance per element of the minibatch
/// gradient.
fn gradient_moments(
    objective: &mut dyn Objective,
    host: &mut TchHost<'_>,
    theta: &Tensor,
    batch: u64,
    count: usize,
) -> Result<(Tensor, Tensor), EngineError> {
    let dim = objective.dim();
    let device = objective.device();
    let mut mean = Tensor::zeros([dim], (Kind::Float, device));
    let mut m2 = Tensor::zeros([dim], (Kind::Float, device));
    for i in 1..=count {
        let g = objective.gradient(host, theta, batch, false)?.grad;
        let delta = &g - &mean;
        mean += &delta / i as f64;
        m2 += &delta * (&g - &mean);
    }
    Ok((mean, m2 / count.max(1) as f64))
}

/// Run the chain from `theta` (flat, updated in place) through `protocol`.
#[allow(clippy::too_many_arguments)]
pub fn run_chain(
    objective: &mut dyn Objective,
    theta: &Tensor,
    integrator: &mut Factor<IntegratorBox>,
    noise: &mut Factor<NoiseBox>,
    protocol: &Protocol,
    settings: &ChainSettings,
    host: &mut TchHost<'_>,
    observer: &mut dyn Observer,
) -> Result<ChainOutcome, EngineError> {
    let started = Instant::now();
    let device = objective.device();
    let dim = objective.dim();
    let n = objective.n();
    let segments = Segments::new(objective.infos(), device);
    let plan = noise.obj.plan(settings.batch_size, n as u64);
    if let Some(f) = objective.potential() {
        host.set_potential(f);
    }
    let theta_id = host.insert(theta.shallow_clone());
    host.call(|h| integrator.obj.init(h, theta_id)).map_err(|e| integrator.fail("init", e))?;
    let mut mass = Mass::new(host, Tensor::ones([dim], (Kind::Float, device)));

    let mut epochs: Vec<EpochRow> = Vec::new();
    let mut acceptance = (0.0, 0u64);
    let mut last_kinetic: Option<Kinetic> = None;
    let mut last_ctemp = f64::NAN;
    let mut k: u64 = 0;
    let outcome = |status, epochs, last_kinetic, last_ctemp, acceptance: (f64, u64), k| ChainOutcome {
        status,
        epochs,
        last_kinetic,
        last_configurational: last_ctemp,
        acceptance: (acceptance.1 > 0).then(|| acceptance.0 / acceptance.1 as f64),
        steps: k,
        theta: theta.shallow_clone(),
    };
    let diverged = |step: u64, message: String| {
        tracing::warn!(step, %message, "chain diverged");
        ChainStatus::Diverged { step, message }
    };

    for epoch in 1..=protocol.epochs {
        if !observer.keep_going() {
            return Err(EngineError::Interrupted);
        }
        // --- Epoch start: preconditioner, configurational temperature, noise statistics.
        let (g_mean, g_var) =
            match gradient_moments(objective, host, theta, settings.batch_size, settings.precond_batches) {
                Err(EngineError::Diverged(message)) => {
                    return Ok(outcome(diverged(k, message), epochs, last_kinetic, last_ctemp, acceptance, k))
                }
                other => other?,
            };
        if nonfinite(&g_mean) {
            let status = diverged(k, format!("non-finite gradient at the start of epoch {epoch}"));
            return Ok(outcome(status, epochs, last_kinetic, last_ctemp, acceptance, k));
        }
        last_ctemp = f64::try_from((theta.detach() * &g_mean).sum(Kind::Double)).unwrap_or(f64::NAN) * n / dim as f64;
        if settings.layerwise_mass {
            let moment = g_mean.square() + &g_var;
            let per_tensor = (segments.means(&moment) + 1e-7).sqrt();
            let per_tensor = &per_tensor / per_tensor.min();
            let m_new = segments.expand(&per_tensor);
            let factor = host.insert((&m_new / &mass.m).sqrt());
            let r = host.call(|h| integrator.obj.rescale_momenta(h, factor));
            host.remove(factor);
            r.map_err(|e| integrator.fail("rescale_momenta", e))?;
            std::mem::replace(&mut mass, Mass::new(host, m_new)).release(host);
        }
        let var_tensor = segments.expand(&segments.means(&g_var));
        let stats = NoiseStats {
            var_elementwise: host.insert(g_var),
            var_per_tensor: host.insert(var_tensor),
            batch_size: settings.batch_size,
        };

        // --- The steps of this epoch.
        let mut loss_sum = Tensor::zeros([], (Kind::Double, device));
        let mut correct = Tensor::zeros([], (Kind::Int64, device));
        let mut seen = 0i64;
        let mut classifies = false;
        let mut ctx = StepCtx {
            step: 0,
            lr: settings.lr,
            momentum_decay: settings.momentum_decay,
            timestep_factor: 1.0,
            temperature: 0.0,
            n,
            batch_size: plan.gradient_batch,
        };
        for _ in 0..protocol.steps_per_epoch {
            k += 1;
            ctx.step = k;
            ctx.timestep_factor = protocol.timestep_factor(k);
            ctx.temperature = protocol.temperature_at(k);
            let g = match objective.gradient(host, theta, plan.gradient_batch, true) {
                Err(EngineError::Diverged(message)) => {
                    host.remove(stats.var_elementwise);
                    host.remove(stats.var_per_tensor);
                    return Ok(outcome(diverged(k, message), epochs, last_kinetic, last_ctemp, acceptance, k));
                }
                other => other?,
            };
            {
                let _guard = tch::no_grad_guard();
                loss_sum += g.loss_sum.to_kind(Kind::Double);
                if let Some(c) = &g.correct {
                    correct += c;
                    classifies = true;
                }
                seen += g.count;
            }
            let grad_id = host.insert(g.grad);
            let r = host.call(|h| noise.obj.transform(h, &ctx, grad_id, &stats));
            if let Err(e) = r {
                host.remove(grad_id);
                return Err(noise.fail("transform", e));
            }
            let tensors = StepTensors {
                params: theta_id,
                grad: grad_id,
                mass: mass.ids[0],
                mass_inv: mass.ids[1],
                mass_sqrt: mass.ids[2],
                mass_inv_sqrt: mass.ids[3],
            };
            let report = host.call(|h| integrator.obj.step(h, &ctx, &tensors));
            host.remove(grad_id);
            let report = report.map_err(|e| integrator.fail("step", e))?;
            if report.acceptance.is_finite() {
                acceptance.0 += report.acceptance;
                acceptance.1 += 1;
            }
            // On CPU a finiteness check per step is free; on a GPU it would synchronise, so
            // there it happens at members and epoch ends.
            if (device == Device::Cpu || protocol.is_member_step(k)) && nonfinite(theta) {
                let status = diverged(
                    k,
                    format!("parameters became NaN/Inf at step {k} (epoch {epoch}); lower sampler.lr or check the integrator"),
                );
                return Ok(outcome(status, epochs, last_kinetic, last_ctemp, acceptance, k));
            }
            observer.step(k, theta, host);
            if protocol.is_member_step(k) {
                objective.member(theta)?;
            }
        }
        host.remove(stats.var_elementwise);
        host.remove(stats.var_per_tensor);

        // --- Epoch end: kinetic temperature and the epoch row.
        let target = protocol.temperature_at(k);
        let kin = host.call(|h| integrator.obj.kinetic(h, mass.ids[1])).map_err(|e| integrator.fail("kinetic", e))?;
        let kinetic = match kin {
            ROption::RSome(id) => {
                let elems =
                    host.take(id).ok_or_else(|| integrator.fail("kinetic", "returned a released handle".into()))?;
                Some(diagnostics::kinetic(&segments.names, &segments.sizes, &segments.sums(&elems), target))
            }
            ROption::RNone => None,
        };
        let train_nll = f64::try_from(&loss_sum).unwrap_or(f64::NAN) / seen.max(1) as f64;
        if !train_nll.is_finite() || nonfinite(theta) {
            let status = diverged(k, format!("training loss or parameters became NaN/Inf in epoch {epoch}"));
            return Ok(outcome(status, epochs, last_kinetic, last_ctemp, acceptance, k));
        }
        let row = EpochRow {
            epoch,
            step: k,
            temperature: target,
            timestep_factor: protocol.timestep_factor(k),
            train_nll,
            train_accuracy: if classifies {
                i64::try_from(&correct).unwrap_or(0) as f64 / seen.max(1) as f64
            } else {
                f64::NAN
            },
            kinetic_temperature: kinetic.as_ref().map_or(f64::NAN, |k| k.overall),
            kinetic_in_band: kinetic.as_ref().map_or(f64::NAN, |k| k.in_band_fraction),
            configurational_temperature: last_ctemp,
            members: objective.members(),
            wall_seconds: started.elapsed().as_secs_f64(),
        };
        observer.epoch(&row);
        epochs.push(row);
        last_kinetic = kinetic;
    }
    host.remove(theta_id);
    mass.release(host);
    Ok(outcome(ChainStatus::Done, epochs, last_kinetic, last_ctemp, acceptance, k))
}
