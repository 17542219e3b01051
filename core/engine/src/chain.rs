//! The SG-MCMC loop over any [`Objective`]: the paper's protocol (as the paper's reference code runs it).
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
    /// The epoch row of chain `chain` of a batched run (default: chain 0 goes to `epoch`).
    fn chain_epoch(&mut self, chain: usize, row: &EpochRow) {
        if chain == 0 {
            self.epoch(row);
        }
    }
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
    /// ∇G̃(θ), flat (per chain: [K, d] for batched chains).
    pub grad: Tensor,
    /// Sum over the batch of the per-example loss (0-d; [K] for batched chains), for the
    /// epoch's training NLL.
    pub loss_sum: Tensor,
    /// Correct predictions in the batch (0-d; [K]), if the objective classifies.
    pub correct: Option<Tensor>,
    /// Examples per chain.
    pub count: i64,
}

/// What the chain samples: parameters, the gradient of the per-example loss, members.
pub trait Objective {
    /// Chains sampled at once. 1: θ is flat, [d]. K > 1: θ is [K, d], one independent chain per
    /// row (batched chains), and gradients, members and statistics are per row.
    fn chains(&self) -> usize {
        1
    }
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
    /// θ is an ensemble member (of the chains marked `alive`; the others have diverged).
    fn member(&mut self, _theta: &Tensor, _alive: &[bool]) -> Result<(), EngineError> {
        Ok(())
    }
    /// Members collected so far by `chain`.
    fn members(&self, _chain: usize) -> u64 {
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
    /// Mean Metropolis–Hastings acceptance over the steps of the sampling phase (from epoch
    /// `cycle_start_sampling` on), if the integrator reports one.
    pub acceptance: Option<f64>,
    pub steps: u64,
    /// Final θ.
    pub theta: Tensor,
}

/// Per-tensor (segment) reductions of flat vectors, along the last dimension (so a [K, d]
/// batch of chains reduces per chain).
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
    /// `reduce` of every segment, stacked along the last dimension: [P] for a flat vector,
    /// [K, P] for K chains.
    fn per_segment(&self, flat: &Tensor, reduce: impl Fn(Tensor) -> Tensor) -> Tensor {
        let parts: Vec<Tensor> =
            self.offsets.iter().zip(&self.sizes).map(|(&o, &s)| reduce(flat.narrow(-1, o, s))).collect();
        Tensor::stack(&parts, -1)
    }
    /// Per-segment means.
    fn means(&self, flat: &Tensor) -> Tensor {
        self.per_segment(flat, |t| t.mean_dim(-1, false, Kind::Float))
    }
    /// Per-segment sums in f64, one row of P values per chain.
    fn sums(&self, flat: &Tensor, chains: usize) -> Vec<Vec<f64>> {
        let sums = self.per_segment(flat, |t| t.sum_dim_intlist(-1, false, Kind::Double));
        let all = Vec::<f64>::try_from(sums.to_device(Device::Cpu).reshape([-1])).unwrap_or_default();
        all.chunks(self.sizes.len().max(1)).take(chains).map(<[f64]>::to_vec).collect()
    }
    /// Broadcast per-segment values ([P] or [K, P]) back to the flat layout.
    fn expand(&self, per_segment: &Tensor) -> Tensor {
        per_segment.repeat_interleave_self_tensor(&self.counts, -1, None)
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

/// A kinetic temperature above this many times max(T, 1) is flagged as unstable dynamics (a
/// healthy chain stays within a few times T; at T = 0 it is of order lr-scaled gradient noise,
/// below 1 in the runs of this project, while an lr too large for the likelihood reached 1e3–1e8).
const KINETIC_ALARM: f64 = 1e3;

/// Whether `t` holds a NaN or an infinity: its sum (accumulated in f64, one reduction, no
/// temporary mask) is then not finite. A finite f32 tensor cannot overflow an f64 sum.
pub(crate) fn nonfinite(t: &Tensor) -> bool {
    if let Some(rows) = crate::fused::rows_finite(&t.detach(), 1) {
        return !rows[0];
    }
    !f64::try_from(t.detach().sum(Kind::Double)).is_ok_and(f64::is_finite)
}

/// Per chain (rows of [K, d]; the one chain of a flat [d]) whether it holds a NaN or an
/// infinity, with one reduction and one synchronisation.
fn nonfinite_rows(t: &Tensor, chains: usize) -> Vec<bool> {
    if chains == 1 {
        return vec![nonfinite(t)];
    }
    if let Some(rows) = crate::fused::rows_finite(&t.detach(), chains) {
        return rows.into_iter().map(|finite| !finite).collect();
    }
    let sums = Vec::<f64>::try_from(t.detach().sum_dim_intlist(-1, false, Kind::Double).to_device(Device::Cpu))
        .unwrap_or_default();
    (0..chains).map(|j| !sums.get(j).is_some_and(|v| v.is_finite())).collect()
}

/// Per-chain values of a 0-d (one chain) or [K] tensor.
fn per_chain(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.detach().to_kind(Kind::Double).to_device(Device::Cpu).reshape([-1])).unwrap_or_default()
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
    let mut mean = theta.zeros_like();
    let mut m2 = theta.zeros_like();
    for i in 1..=count {
        let g = objective.gradient(host, theta, batch, false)?.grad;
        let _guard = tch::no_grad_guard();
        if !crate::fused::welford(&mut mean, &mut m2, &g, i) {
            let delta = &g - &mean;
            mean += &delta / i as f64;
            m2 += &delta * (&g - &mean);
        }
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
    let protocols = std::slice::from_ref(protocol);
    let mut outcomes = run_chains(objective, theta, integrator, noise, protocols, settings, host, observer)?;
    Ok(outcomes.remove(0))
}

/// Bookkeeping of one chain of a (possibly batched) run.
struct ChainState {
    status: ChainStatus,
    epochs: Vec<EpochRow>,
    last_kinetic: Option<Kinetic>,
    last_ctemp: f64,
    steps: u64,
    /// Warned once that the kinetic temperature is far above its target.
    warned_hot: bool,
}

impl ChainState {
    fn alive(&self) -> bool {
        self.status == ChainStatus::Done
    }
    fn diverge(&mut self, step: u64, message: String) {
        if self.alive() {
            tracing::warn!(step, %message, "chain diverged");
            self.status = ChainStatus::Diverged { step, message };
            self.steps = step;
        }
    }
}

/// Run `protocols.len()` chains at once from `theta`: flat [d] for one chain, [K, d] for K
/// batched chains (one row each; `objective.chains()` must be K). The chains share the step
/// schedule and sampler settings and may differ in temperature: the integrator then gets the
/// per-chain temperatures as a [K, 1] tensor. A chain that diverges is marked and ignored from
/// then on (its rows stay NaN; every operation of a batched step is per row), the others go on.
#[allow(clippy::too_many_arguments)]
pub fn run_chains(
    objective: &mut dyn Objective,
    theta: &Tensor,
    integrator: &mut Factor<IntegratorBox>,
    noise: &mut Factor<NoiseBox>,
    protocols: &[Protocol],
    settings: &ChainSettings,
    host: &mut TchHost<'_>,
    observer: &mut dyn Observer,
) -> Result<Vec<ChainOutcome>, EngineError> {
    let started = Instant::now();
    let chains = protocols.len();
    let device = objective.device();
    let dim = objective.dim();
    let n = objective.n();
    check_batch(objective, theta, integrator, protocols)?;
    let protocol = &protocols[0];
    let segments = Segments::new(objective.infos(), device);
    let plan = noise.obj.plan(settings.batch_size, n as u64);
    if let Some(f) = objective.potential() {
        host.set_potential(f);
    }
    let theta_id = host.insert(theta.shallow_clone());
    host.call(|h| integrator.obj.init(h, theta_id)).map_err(|e| integrator.fail("init", e))?;
    let mut mass = Mass::new(host, theta.ones_like());

    let mut states: Vec<ChainState> = (0..chains)
        .map(|_| ChainState {
            status: ChainStatus::Done,
            epochs: Vec::new(),
            last_kinetic: None,
            last_ctemp: f64::NAN,
            steps: 0,
            warned_hot: false,
        })
        .collect();
    let mut acceptance = (0.0, 0u64);
    let mut k: u64 = 0;
    // Per-chain temperatures only when they differ (the shared value otherwise).
    let temperatures_differ = protocols.iter().any(|p| p.temperature != protocol.temperature);
    let mut temp_id = TensorId::INVALID;
    let mut temp_values: Vec<f64> = Vec::new();

    'epochs: for epoch in 1..=protocol.epochs {
        if !observer.keep_going() {
            host.remove(temp_id);
            return Err(EngineError::Interrupted);
        }
        // --- Epoch start: preconditioner, configurational temperature, noise statistics.
        let (g_mean, g_var) =
            match gradient_moments(objective, host, theta, settings.batch_size, settings.precond_batches) {
                Err(EngineError::Diverged(message)) => {
                    states.iter_mut().for_each(|s| s.diverge(k, message.clone()));
                    break 'epochs;
                }
                other => other?,
            };
        for (s, bad) in states.iter_mut().zip(nonfinite_rows(&g_mean, chains)) {
            if bad {
                s.diverge(k, format!("non-finite gradient at the start of epoch {epoch}"));
            }
        }
        if !states.iter().any(ChainState::alive) {
            break;
        }
        let ctemps = per_chain(&(theta.detach() * &g_mean).sum_dim_intlist(-1, false, Kind::Double));
        for (s, c) in states.iter_mut().zip(&ctemps) {
            s.last_ctemp = c * n / dim as f64;
        }
        if settings.layerwise_mass {
            let moment = g_mean.square() + &g_var;
            let per_tensor = (segments.means(&moment) + 1e-7).sqrt();
            let per_tensor = &per_tensor / per_tensor.amin(-1, true);
            // A diverged chain keeps a finite mass, so that its NaNs stay in its own rows.
            let per_tensor = per_tensor.nan_to_num(1.0, 1.0, 1.0);
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
        let mut loss_sum = Tensor::zeros([chains as i64], (Kind::Double, device));
        let mut correct = Tensor::zeros([chains as i64], (Kind::Int64, device));
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
        let mut stopped = None;
        for _ in 0..protocol.steps_per_epoch {
            k += 1;
            ctx.step = k;
            ctx.timestep_factor = protocol.timestep_factor(k);
            ctx.temperature = protocols.iter().map(|p| p.temperature_at(k)).fold(0.0, f64::max);
            if temperatures_differ {
                let values: Vec<f64> = protocols.iter().map(|p| p.temperature_at(k)).collect();
                if values != temp_values {
                    host.remove(temp_id);
                    let t = Tensor::from_slice(&values).to_kind(Kind::Float).to_device(device).reshape([-1, 1]);
                    temp_id = host.insert(t);
                    temp_values = values;
                }
            }
            let g = match objective.gradient(host, theta, plan.gradient_batch, true) {
                Err(EngineError::Diverged(message)) => {
                    stopped = Some(message);
                    break;
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
            // A non-finite minibatch loss or gradient marks its chain diverged at this step. On the
            // CPU (where per-step checks are cheap) it is attributed to the step that produced it:
            // the loss gradient (likelihood and prior), the noise model's transform, or the
            // integrator's step; parameters going in are finite (checked after the previous step).
            // On a GPU a check would synchronise, so there it happens at member steps.
            let check_here = device == Device::Cpu;
            let grad_bad = if check_here || protocol.is_member_step(k) {
                let losses = per_chain(&g.loss_sum);
                let bad = nonfinite_rows(&g.grad, chains);
                for (j, (s, &bad)) in states.iter_mut().zip(&bad).enumerate() {
                    let loss_finite = losses.get(j).is_some_and(|l| l.is_finite());
                    let what = match (bad, loss_finite) {
                        (true, _) => "the loss gradient",
                        (false, false) => "the training loss",
                        (false, true) => continue,
                    };
                    let at = if check_here { " at finite parameters" } else { "" };
                    s.diverge(
                        k,
                        format!(
                            "{what} became NaN/Inf at step {k} (epoch {epoch}){at}: the likelihood or the prior \
                             produced it; lower sampler.lr, or check the likelihood and prior plugins"
                        ),
                    );
                }
                bad
            } else {
                vec![false; chains]
            };
            let grad_shadow = check_here.then(|| g.grad.shallow_clone());
            let grad_id = host.insert(g.grad);
            let r = host.call(|h| noise.obj.transform(h, &ctx, grad_id, &stats));
            if let Err(e) = r {
                host.remove(grad_id);
                return Err(noise.fail("transform", e));
            }
            if let Some(grad) = &grad_shadow {
                for ((s, bad), was_bad) in states.iter_mut().zip(nonfinite_rows(grad, chains)).zip(&grad_bad) {
                    if bad && !was_bad {
                        s.diverge(
                            k,
                            format!(
                                "the noise model `{}` turned a finite gradient into NaN/Inf at step {k} (epoch {epoch}); \
                                 check the noise plugin ({})",
                                noise.name, noise.path
                            ),
                        );
                    }
                }
            }
            if !states.iter().any(ChainState::alive) {
                host.remove(grad_id);
                break;
            }
            let tensors = StepTensors {
                params: theta_id,
                grad: grad_id,
                mass: mass.ids[0],
                mass_inv: mass.ids[1],
                mass_sqrt: mass.ids[2],
                mass_inv_sqrt: mass.ids[3],
                temperature: temp_id,
            };
            let report = host.call(|h| integrator.obj.step(h, &ctx, &tensors));
            host.remove(grad_id);
            let report = report.map_err(|e| integrator.fail("step", e))?;
            // Over the sampling phase only (burn-in, at T = 0 during the ramp, is not the target).
            if report.acceptance.is_finite() && epoch >= protocol.start_sampling_epoch {
                acceptance.0 += report.acceptance;
                acceptance.1 += 1;
            }
            // On CPU a finiteness check per step is cheap; on a GPU it would synchronise, so
            // there it happens at members and epoch ends.
            if device == Device::Cpu || protocol.is_member_step(k) {
                for (s, bad) in states.iter_mut().zip(nonfinite_rows(theta, chains)) {
                    if bad && device == Device::Cpu {
                        // Parameters and gradient going into this step were finite (checked above).
                        s.diverge(
                            k,
                            format!(
                                "the integrator `{}` step made the parameters NaN/Inf at step {k} (epoch {epoch}) from \
                                 finite parameters and a finite gradient; lower sampler.lr, or check the integrator \
                                 plugin ({})",
                                integrator.name, integrator.path
                            ),
                        );
                    } else if bad {
                        s.diverge(
                            k,
                            format!(
                                "parameters became NaN/Inf by step {k} (epoch {epoch}); lower sampler.lr or check \
                                 the integrator"
                            ),
                        );
                    }
                }
                if !states.iter().any(ChainState::alive) {
                    break;
                }
            }
            observer.step(k, theta, host);
            if protocol.is_member_step(k) {
                let alive: Vec<bool> = states.iter().map(ChainState::alive).collect();
                objective.member(theta, &alive)?;
            }
        }
        host.remove(stats.var_elementwise);
        host.remove(stats.var_per_tensor);
        if let Some(message) = stopped {
            states.iter_mut().for_each(|s| s.diverge(k, message.clone()));
            break;
        }
        if !states.iter().any(ChainState::alive) {
            break;
        }

        // --- Epoch end: kinetic temperature and the epoch rows.
        let kin = host.call(|h| integrator.obj.kinetic(h, mass.ids[1])).map_err(|e| integrator.fail("kinetic", e))?;
        let kinetic_sums = match kin {
            ROption::RSome(id) => {
                let elems =
                    host.take(id).ok_or_else(|| integrator.fail("kinetic", "returned a released handle".into()))?;
                Some(segments.sums(&elems, chains))
            }
            ROption::RNone => None,
        };
        let nll = per_chain(&loss_sum);
        let right = per_chain(&correct);
        let bad_theta = nonfinite_rows(theta, chains);
        for (j, s) in states.iter_mut().enumerate() {
            if !s.alive() {
                continue;
            }
            let target = protocols[j].temperature_at(k);
            let train_nll = nll.get(j).copied().unwrap_or(f64::NAN) / seen.max(1) as f64;
            if !train_nll.is_finite() || bad_theta[j] {
                s.diverge(k, format!("training loss or parameters became NaN/Inf in epoch {epoch}"));
                continue;
            }
            let kinetic = kinetic_sums
                .as_ref()
                .map(|sums| diagnostics::kinetic(&segments.names, &segments.sizes, &sums[j], target));
            if let Some(kin) = kinetic.as_ref().filter(|kin| !kin.overall.is_finite()) {
                // Momenta so large that Σm²/M overflows: θ may still be finite, the chain is not.
                s.diverge(k, format!("kinetic temperature became {} in epoch {epoch}", kin.overall));
                continue;
            }
            if let Some(kin) = kinetic.as_ref().filter(|kin| kin.overall > KINETIC_ALARM * target.max(1.0)) {
                if !s.warned_hot {
                    s.warned_hot = true;
                    tracing::warn!(
                        epoch,
                        kinetic_temperature = kin.overall,
                        target,
                        "kinetic temperature is orders of magnitude above its target: the dynamics are unstable at \
                         this sampler.lr (the chain may sit at chance accuracy); lower sampler.lr"
                    );
                }
            }
            let row = EpochRow {
                epoch,
                step: k,
                temperature: target,
                timestep_factor: protocol.timestep_factor(k),
                train_nll,
                train_accuracy: if classifies {
                    right.get(j).copied().unwrap_or(f64::NAN) / seen.max(1) as f64
                } else {
                    f64::NAN
                },
                kinetic_temperature: kinetic.as_ref().map_or(f64::NAN, |k| k.overall),
                kinetic_in_band: kinetic.as_ref().map_or(f64::NAN, |k| k.in_band_fraction),
                configurational_temperature: s.last_ctemp,
                members: objective.members(j),
                wall_seconds: started.elapsed().as_secs_f64(),
            };
            observer.chain_epoch(j, &row);
            s.epochs.push(row);
            s.last_kinetic = kinetic;
            s.steps = k;
        }
    }
    host.remove(temp_id);
    host.remove(theta_id);
    mass.release(host);
    let acceptance = (acceptance.1 > 0).then(|| acceptance.0 / acceptance.1 as f64);
    Ok(states
        .into_iter()
        .enumerate()
        .map(|(j, s)| ChainOutcome {
            steps: if s.alive() { k } else { s.steps },
            status: s.status,
            epochs: s.epochs,
            last_kinetic: s.last_kinetic,
            last_configurational: s.last_ctemp,
            acceptance,
            theta: if chains == 1 { theta.shallow_clone() } else { theta.get(j as i64) },
        })
        .collect())
}

/// The shapes and plugins of a batched run fit together.
fn check_batch(
    objective: &dyn Objective,
    theta: &Tensor,
    integrator: &Factor<IntegratorBox>,
    protocols: &[Protocol],
) -> Result<(), EngineError> {
    let chains = protocols.len();
    let expected: Vec<i64> = if chains == 1 { vec![objective.dim()] } else { vec![chains as i64, objective.dim()] };
    if chains == 0 || objective.chains() != chains || theta.size() != expected {
        return Err(EngineError::Config(format!(
            "batched run: {chains} protocols, an objective of {} chains and θ of shape {:?} (expected {expected:?})",
            objective.chains(),
            theta.size()
        )));
    }
    if chains > 1 && !integrator.obj.batchable() {
        return Err(integrator.fail("step", "cannot run batched chains (it says `batchable() == false`)".into()));
    }
    let p = &protocols[0];
    if protocols.iter().any(|q| !p.same_schedule(q)) {
        return Err(EngineError::Config(
            "batched chains must share the step schedule (epochs, cycles, ramp); only the temperature may differ"
                .into(),
        ));
    }
    Ok(())
}
