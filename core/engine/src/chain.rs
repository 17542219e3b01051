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
//! preconditioner (raw second moment E\[g²\], one scalar sqrt(mean E\[g²\] + 1e-7) per tensor,
//! scaled so the smallest is 1; momenta rescaled by sqrt(M_new/M_old)), the configurational
//! temperature (n/d)·Σθ·ḡ and the minibatch gradient noise handed to the noise plugin. At each
//! cycle end from `cycle_start_sampling` on, the objective takes θ as an ensemble member. A
//! non-finite value stops the chain as diverged with its step.
//!
//! The network problem of a grid cell is one objective ([`crate::cell`]); the statistical tests
//! drive the same loop with analytic objectives (Gaussian targets, conjugate linear regression).

use ablate_sdk::abi::{IntegratorBox, NoiseBox};
use ablate_sdk::ParamInfo;
use tch::{Device, Kind, Tensor};

pub use ablate_records::EpochRow;

pub use crate::chain_phases::ChainRun;
use crate::chain_phases::Sampler;
use crate::diagnostics::Kinetic;
use crate::host::{PotentialFn, TchHost};
use crate::schedule::Protocol;
use crate::EngineError;

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
    /// Sum over the batch of the per-example loss (0-d; \[K\] for batched chains), for the
    /// epoch's training NLL.
    pub loss_sum: Tensor,
    /// Correct predictions in the batch (0-d; \[K\]), if the objective classifies.
    pub correct: Option<Tensor>,
    /// Examples per chain.
    pub count: i64,
}

/// What the chain samples: parameters, the gradient of the per-example loss, members.
pub trait Objective {
    /// Chains sampled at once. 1: θ is flat, \[d\]. K > 1: θ is \[K, d\], one independent chain per
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
    /// Training examples (what a noise plugin's `plan` gets as its `n`); the likelihood's
    /// effective n may count them otherwise (augmented copies).
    fn examples(&self) -> u64 {
        self.n() as u64
    }
    fn device(&self) -> Device;
    /// ∇G̃ on the next `batch` examples of its stream (0 = the whole training set). `train`
    /// distinguishes training steps (batch-norm training mode, dropout) from the
    /// preconditioner's estimation batches (inference mode, their own stream); both are
    /// augmented, as in the reference.
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
    /// What a crash inside this plugin names ([`crate::crash_site`]).
    site: &'static str,
}

impl<T> Factor<T> {
    pub fn new(obj: T, kind: &'static str, name: &str, path: &str) -> Self {
        let site = crate::crash_site::subject(kind, name, path);
        Self { obj, kind, name: name.to_owned(), path: path.to_owned(), site }
    }
    /// Marks a call of `method` into this plugin as in progress until the guard drops: a
    /// crash inside it is then reported with the plugin's name, library and method.
    pub fn enter(&self, method: &'static str) -> crate::crash_site::InCall {
        crate::crash_site::enter(self.site, method)
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

pub(crate) use ablate_records::KINETIC_ALARM;

/// Whether `t` holds a NaN or an infinity: its sum (accumulated in f64, one reduction, no
/// temporary mask) is then not finite. A finite f32 tensor cannot overflow an f64 sum.
pub(crate) fn nonfinite(t: &Tensor) -> bool {
    if let Some(rows) = crate::fused::rows_finite(&t.detach(), 1) {
        return !rows[0];
    }
    !t.detach().f_sum(Kind::Double).and_then(f64::try_from).is_ok_and(f64::is_finite)
}

/// Per chain (rows of [K, d]; the one chain of a flat [d]) whether it holds a NaN or an
/// infinity, with one reduction and one synchronisation.
pub(crate) fn nonfinite_rows(t: &Tensor, chains: usize) -> Vec<bool> {
    if chains == 1 {
        return vec![nonfinite(t)];
    }
    if let Some(rows) = crate::fused::rows_finite(&t.detach(), chains) {
        return rows.into_iter().map(|finite| !finite).collect();
    }
    let sums = t
        .detach()
        .f_sum_dim_intlist(-1, false, Kind::Double)
        .and_then(|s| s.f_to_device(Device::Cpu))
        .and_then(Vec::<f64>::try_from)
        .unwrap_or_default();
    (0..chains).map(|j| !sums.get(j).is_some_and(|v| v.is_finite())).collect()
}

/// Per-chain values of a 0-d (one chain) or [K] tensor.
pub(crate) fn per_chain(t: &Tensor) -> Vec<f64> {
    t.detach()
        .f_to_kind(Kind::Double)
        .and_then(|t| t.f_to_device(Device::Cpu))
        .and_then(|t| t.f_reshape([-1]))
        .and_then(Vec::<f64>::try_from)
        .unwrap_or_default()
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
pub(crate) struct ChainState {
    pub(crate) status: ChainStatus,
    pub(crate) epochs: Vec<EpochRow>,
    pub(crate) last_kinetic: Option<Kinetic>,
    pub(crate) last_ctemp: f64,
    pub(crate) steps: u64,
    /// Warned once that the kinetic temperature is far above its target.
    pub(crate) warned_hot: bool,
}

impl ChainState {
    pub(crate) fn new() -> Self {
        ChainState {
            status: ChainStatus::Done,
            epochs: Vec::new(),
            last_kinetic: None,
            last_ctemp: f64::NAN,
            steps: 0,
            warned_hot: false,
        }
    }
    pub(crate) fn alive(&self) -> bool {
        self.status == ChainStatus::Done
    }
    pub(crate) fn diverge(&mut self, step: u64, message: String) {
        if self.alive() {
            tracing::warn!(step, %message, "chain diverged");
            self.status = ChainStatus::Diverged { step, message };
            self.steps = step;
        }
    }
}

/// Run `protocols.len()` chains at once from `theta`: flat \[d\] for one chain, \[K, d\] for K
/// batched chains (one row each; `objective.chains()` must be K). The chains share the step
/// schedule and sampler settings and may differ in temperature: the integrator then gets the
/// per-chain temperatures as a [K, 1] tensor. A chain that diverges is marked and ignored from
/// then on (its rows stay NaN; every operation of a batched step is per row), the others go on.
/// The positional form of [`run`].
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
    run(ChainRun { objective, theta, integrator, noise, protocols, settings, host, observer })
}

/// Run chains (see [`run_chains`]) through their phases: setup, the epochs (each: epoch start
/// with the preconditioner, the sampling steps with divergence checks and members, the epoch
/// end with the kinetic temperature and rows), finish. The run's host handles are released on
/// every path, errors included.
pub fn run(run: ChainRun<'_, '_>) -> Result<Vec<ChainOutcome>, EngineError> {
    let mut sampler = Sampler::setup(run)?;
    sampler.run_epochs()?;
    Ok(sampler.finish())
}

/// The shapes and plugins of a batched run fit together.
pub(crate) fn check_batch(
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
