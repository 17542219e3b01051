//! The phases of [`crate::chain::run_chains`], one function each: setup ([`Sampler::setup`]),
//! then per epoch ([`Sampler::run_epochs`]) the epoch start (preconditioner, configurational
//! temperature, noise statistics: `Sampler::epoch_start`), the sampling steps with their
//! divergence checks and member collection (`Sampler::sampling_steps`, `Sampler::step`), the
//! epoch end (kinetic temperature, epoch rows: `Sampler::epoch_end`), and finally the outcomes
//! ([`Sampler::finish`]).
//!
//! A [`Sampler`] owns the host handles of the run (θ, the mass, the per-chain temperatures,
//! the noise statistics) and releases them when it drops, on every path.

use std::time::Instant;

use ablate_sdk::abi::{IntegratorBox, NoiseBox};
use ablate_sdk::{GradientPlan, NoiseStats, StepCtx, StepTensors, TensorId};
use tch::{Device, Kind, Tensor};

use crate::chain::{
    nonfinite_rows, per_chain, ChainOutcome, ChainSettings, ChainState, EpochRow, Factor, Gradient, Objective,
    Observer, KINETIC_ALARM,
};
use crate::diagnostics;
use crate::dispatch_count::CpuOnly;
use crate::host::TchHost;
use crate::plugin_call::{self, Lent};
use crate::precond::{self, Mass, Segments};
use crate::schedule::Protocol;
use crate::EngineError;

/// Everything a run of chains needs (the arguments of [`crate::chain::run_chains`]).
pub struct ChainRun<'r, 'a> {
    pub objective: &'r mut dyn Objective,
    /// Flat \[d\] for one chain, \[K, d\] for K batched chains; updated in place.
    pub theta: &'r Tensor,
    pub integrator: &'r mut Factor<IntegratorBox>,
    pub noise: &'r mut Factor<NoiseBox>,
    /// One per chain; they share the step schedule and may differ in temperature.
    pub protocols: &'r [Protocol],
    pub settings: &'r ChainSettings,
    pub host: &'r mut TchHost<'a>,
    pub observer: &'r mut dyn Observer,
}

/// Sums over the steps of one epoch, per chain.
struct EpochTotals {
    loss_sum: Tensor,
    correct: Tensor,
    seen: i64,
    classifies: bool,
}

/// Why the steps of an epoch stopped early.
enum Stop {
    /// The objective said the chains diverged (all of them).
    Diverged(String),
    /// Every chain has diverged.
    AllDead,
}

/// A run of chains between its phases.
pub struct Sampler<'r, 'a> {
    objective: &'r mut dyn Objective,
    theta: &'r Tensor,
    integrator: &'r mut Factor<IntegratorBox>,
    noise: &'r mut Factor<NoiseBox>,
    protocols: &'r [Protocol],
    settings: &'r ChainSettings,
    host: &'r mut TchHost<'a>,
    observer: &'r mut dyn Observer,
    started: Instant,
    chains: usize,
    device: Device,
    n: f64,
    segments: Segments,
    plan: GradientPlan,
    theta_id: TensorId,
    mass: Option<Mass>,
    stats: Option<NoiseStats>,
    states: Vec<ChainState>,
    acceptance: (f64, u64),
    /// The global step, 1-based.
    k: u64,
    /// Per-chain temperatures are handed to the integrator only when they differ.
    temperatures_differ: bool,
    temp_id: TensorId,
    temp_values: Vec<f64>,
}

impl<'r, 'a> Sampler<'r, 'a> {
    /// Setup: shapes checked, the noise plan, the potential, θ in the host, the integrator's
    /// state, mass 1.
    pub fn setup(run: ChainRun<'r, 'a>) -> Result<Self, EngineError> {
        crate::chain::check_batch(run.objective, run.theta, run.integrator, run.protocols)?;
        let ChainRun { objective, theta, integrator, noise, protocols, settings, host, observer } = run;
        let device = objective.device();
        let n = objective.n();
        let plan = {
            let _site = noise.enter("plan");
            noise.obj.plan(settings.batch_size, objective.examples())
        };
        if plan.gradient_batch == ablate_sdk::abi::PLAN_FAILED {
            return Err(noise.fail("plan", "it panicked (its message is printed above, on stderr)".to_owned()));
        }
        if let Some(f) = objective.potential() {
            host.set_potential(f);
        }
        let chains = protocols.len();
        let segments = Segments::new(objective.infos(), device)?;
        let theta_id = host.insert(theta.shallow_clone());
        let mut sampler = Sampler {
            segments,
            objective,
            theta,
            integrator,
            noise,
            protocols,
            settings,
            host,
            observer,
            started: Instant::now(),
            chains,
            device,
            n,
            plan,
            theta_id,
            mass: None,
            stats: None,
            states: (0..chains).map(|_| ChainState::new()).collect(),
            acceptance: (0.0, 0),
            k: 0,
            temperatures_differ: protocols.iter().any(|p| p.temperature != protocols[0].temperature),
            temp_id: TensorId::INVALID,
            temp_values: Vec::new(),
        };
        plugin_call::integrator_init(sampler.integrator, sampler.host, theta_id)?;
        sampler.mass = Some(Mass::new(sampler.host, theta.f_ones_like()?)?);
        Ok(sampler)
    }

    /// Every epoch of the protocol, until all chains have diverged.
    pub fn run_epochs(&mut self) -> Result<(), EngineError> {
        for epoch in 1..=self.protocols[0].epochs {
            if !self.observer.keep_going() {
                return Err(EngineError::Interrupted);
            }
            if !self.epoch_start(epoch)? {
                break;
            }
            let (totals, stop) = self.sampling_steps(epoch)?;
            self.release_stats();
            match stop {
                Some(Stop::Diverged(message)) => {
                    let k = self.k;
                    self.states.iter_mut().for_each(|s| s.diverge(k, message.clone()));
                    break;
                }
                Some(Stop::AllDead) => break,
                None if !self.any_alive() => break,
                None => {}
            }
            self.epoch_end(epoch, &totals)?;
        }
        Ok(())
    }

    fn any_alive(&self) -> bool {
        self.states.iter().any(ChainState::alive)
    }

    /// Epoch start: gradient moments from fresh batches, the configurational temperature, the
    /// layerwise mass (momenta rescaled) and the noise statistics. `false`: every chain has
    /// diverged.
    fn epoch_start(&mut self, epoch: u64) -> Result<bool, EngineError> {
        let (theta, settings, k) = (self.theta, self.settings, self.k);
        let moments =
            precond::gradient_moments(self.objective, self.host, theta, settings.batch_size, settings.precond_batches);
        let (g_mean, g_var) = match moments {
            Err(EngineError::Diverged(message)) => {
                self.states.iter_mut().for_each(|s| s.diverge(k, message.clone()));
                return Ok(false);
            }
            other => other?,
        };
        for (s, bad) in self.states.iter_mut().zip(nonfinite_rows(&g_mean, self.chains)) {
            if bad {
                s.diverge(k, format!("non-finite gradient at the start of epoch {epoch}"));
            }
        }
        if !self.any_alive() {
            return Ok(false);
        }
        let ctemps = per_chain(&theta.detach().f_mul(&g_mean)?.f_sum_dim_intlist(-1, false, Kind::Double)?);
        let (n, dim) = (self.n, self.objective.dim());
        for (s, c) in self.states.iter_mut().zip(&ctemps) {
            s.last_ctemp = c * n / dim as f64;
        }
        if settings.layerwise_mass {
            self.update_mass(&g_mean, &g_var)?;
        }
        let var_tensor = self.segments.expand(&self.segments.means(&g_var)?)?;
        self.stats = Some(NoiseStats {
            var_elementwise: self.host.insert(g_var),
            var_per_tensor: self.host.insert(var_tensor),
            batch_size: settings.batch_size,
        });
        Ok(true)
    }

    /// The layerwise preconditioner: the new mass from the moments, momenta rescaled.
    fn update_mass(&mut self, g_mean: &Tensor, g_var: &Tensor) -> Result<(), EngineError> {
        let m_new = precond::layerwise_mass(&self.segments, g_mean, g_var)?;
        if let Some(mass) = &self.mass {
            plugin_call::integrator_rescale(self.integrator, self.host, mass.rescale_factor(&m_new)?)?;
        }
        let new = Mass::new(self.host, m_new)?;
        if let Some(old) = self.mass.replace(new) {
            old.release(self.host);
        }
        Ok(())
    }

    fn release_stats(&mut self) {
        if let Some(stats) = self.stats.take() {
            self.host.remove(stats.var_elementwise);
            self.host.remove(stats.var_per_tensor);
        }
    }

    /// The steps of one epoch; stops early when the chains diverge.
    fn sampling_steps(&mut self, epoch: u64) -> Result<(EpochTotals, Option<Stop>), EngineError> {
        let chains = self.chains as i64;
        let mut totals = EpochTotals {
            loss_sum: Tensor::f_zeros([chains], (Kind::Double, self.device))?,
            correct: Tensor::f_zeros([chains], (Kind::Int64, self.device))?,
            seen: 0,
            classifies: false,
        };
        let mut ctx = StepCtx {
            step: 0,
            lr: self.settings.lr,
            momentum_decay: self.settings.momentum_decay,
            timestep_factor: 1.0,
            temperature: 0.0,
            n: self.n,
            batch_size: self.plan.gradient_batch,
        };
        for _ in 0..self.protocols[0].steps_per_epoch {
            if let Some(stop) = self.step(epoch, &mut ctx, &mut totals)? {
                return Ok((totals, Some(stop)));
            }
        }
        Ok((totals, None))
    }

    /// The step's temperatures: the largest in `ctx`, per chain in the host when they differ.
    fn set_temperatures(&mut self, ctx: &mut StepCtx) -> Result<(), EngineError> {
        let k = self.k;
        ctx.temperature = self.protocols.iter().map(|p| p.temperature_at(k)).fold(0.0, f64::max);
        if self.temperatures_differ {
            let values: Vec<f64> = self.protocols.iter().map(|p| p.temperature_at(k)).collect();
            if values != self.temp_values {
                self.host.remove(self.temp_id);
                let t =
                    Tensor::from_slice(&values).f_to_kind(Kind::Float)?.f_to_device(self.device)?.f_reshape([-1, 1])?;
                self.temp_id = self.host.insert(t);
                self.temp_values = values;
            }
        }
        Ok(())
    }

    /// One step: gradient, noise transform, integrator step, divergence checks, member.
    fn step(&mut self, epoch: u64, ctx: &mut StepCtx, totals: &mut EpochTotals) -> Result<Option<Stop>, EngineError> {
        self.k += 1;
        let k = self.k;
        ctx.step = k;
        ctx.timestep_factor = self.protocols[0].timestep_factor(k);
        self.set_temperatures(ctx)?;
        let g = match self.objective.gradient(self.host, self.theta, self.plan.gradient_batch, true) {
            Err(EngineError::Diverged(message)) => return Ok(Some(Stop::Diverged(message))),
            other => other?,
        };
        {
            let _guard = tch::no_grad_guard();
            let _ = totals.loss_sum.f_add_(&g.loss_sum.f_to_kind(Kind::Double)?)?;
            if let Some(c) = &g.correct {
                let _ = totals.correct.f_add_(c)?;
                totals.classifies = true;
            }
            totals.seen += g.count;
        }
        let grad_bad = self.check_gradient(&g, epoch);
        // On the CPU, a NaN the noise model makes is attributed to it (see `check_gradient`).
        let grad_shadow = (self.device == Device::Cpu).then(|| g.grad.shallow_clone());
        let mut lent = Lent::new(self.host);
        let grad_id = lent.lend(g.grad);
        let stats = self.stats.as_ref().ok_or_else(|| EngineError::Config("noise statistics missing".into()))?;
        plugin_call::noise_transform(self.noise, &mut lent, ctx, grad_id, stats)?;
        if let Some(grad) = &grad_shadow {
            let _cpu = CpuOnly::enter();
            let noise = &*self.noise;
            for ((s, bad), was_bad) in self.states.iter_mut().zip(nonfinite_rows(grad, self.chains)).zip(&grad_bad) {
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
        if !self.states.iter().any(ChainState::alive) {
            return Ok(Some(Stop::AllDead));
        }
        let mass = self.mass.as_ref().ok_or_else(|| EngineError::Config("mass missing".into()))?;
        let tensors = StepTensors {
            params: self.theta_id,
            grad: grad_id,
            mass: mass.ids[0],
            mass_inv: mass.ids[1],
            mass_sqrt: mass.ids[2],
            mass_inv_sqrt: mass.ids[3],
            temperature: self.temp_id,
        };
        let report = plugin_call::integrator_step(self.integrator, &mut lent, ctx, &tensors)?;
        drop(lent);
        // Over the sampling phase only (burn-in, at T = 0 during the ramp, is not the target).
        if report.acceptance.is_finite() && epoch >= self.protocols[0].start_sampling_epoch {
            self.acceptance.0 += report.acceptance;
            self.acceptance.1 += 1;
        }
        if !self.check_parameters(epoch) {
            return Ok(Some(Stop::AllDead));
        }
        self.observer.step(k, self.theta, self.host);
        if self.protocols[0].is_member_step(k) {
            self.take_member()?;
        }
        Ok(None)
    }

    /// A non-finite minibatch loss or gradient marks its chain diverged at this step. On the
    /// CPU (where per-step checks are cheap) it is attributed to the step that produced it:
    /// the loss gradient (likelihood and prior), the noise model's transform, or the
    /// integrator's step; parameters going in are finite (checked after the previous step).
    /// On a GPU a check would synchronise, so there it happens at member steps. Returns which
    /// chains had a bad gradient.
    fn check_gradient(&mut self, g: &Gradient, epoch: u64) -> Vec<bool> {
        let k = self.k;
        let check_here = self.device == Device::Cpu;
        if !(check_here || self.protocols[0].is_member_step(k)) {
            return vec![false; self.chains];
        }
        let _cpu = check_here.then(CpuOnly::enter);
        let losses = per_chain(&g.loss_sum);
        let bad = nonfinite_rows(&g.grad, self.chains);
        for (j, (s, &bad)) in self.states.iter_mut().zip(&bad).enumerate() {
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
                     produced it; lower sampler.lr, or check the likelihood's and the prior's parameters (a prior \
                     scale near 0 makes its gradient θ/scale² overflow at any step size)"
                ),
            );
        }
        bad
    }

    /// After the integrator's step: parameters finite? On CPU a check per step is cheap; on a
    /// GPU it would synchronise, so there it happens at members. `false`: every chain has
    /// diverged.
    fn check_parameters(&mut self, epoch: u64) -> bool {
        let k = self.k;
        let on_cpu = self.device == Device::Cpu;
        if !(on_cpu || self.protocols[0].is_member_step(k)) {
            return true;
        }
        let _cpu = on_cpu.then(CpuOnly::enter);
        let integrator = &*self.integrator;
        for (s, bad) in self.states.iter_mut().zip(nonfinite_rows(self.theta, self.chains)) {
            if bad && on_cpu {
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
                        "parameters became NaN/Inf by step {k} (epoch {epoch}); lower sampler.lr or check the \
                         integrator"
                    ),
                );
            }
        }
        self.any_alive()
    }

    /// Member evaluation: θ of the chains still alive becomes an ensemble member.
    fn take_member(&mut self) -> Result<(), EngineError> {
        let alive: Vec<bool> = self.states.iter().map(ChainState::alive).collect();
        self.objective.member(self.theta, &alive)
    }

    /// Epoch end: the kinetic temperature from the integrator and one epoch row per chain.
    fn epoch_end(&mut self, epoch: u64, totals: &EpochTotals) -> Result<(), EngineError> {
        let mass = self.mass.as_ref().ok_or_else(|| EngineError::Config("mass missing".into()))?;
        let elems = plugin_call::integrator_kinetic(self.integrator, self.host, mass.ids[1], &self.theta.size())?;
        let kinetic_sums = match elems {
            Some(elems) => Some(self.segments.sums(&elems, self.chains).map_err(|e| {
                self.integrator.fail("kinetic", format!("the kinetic energies m⊙M⁻¹m could not be summed: {e}"))
            })?),
            None => None,
        };
        let nll = per_chain(&totals.loss_sum);
        let right = per_chain(&totals.correct);
        let bad_theta = nonfinite_rows(self.theta, self.chains);
        let seen = totals.seen.max(1) as f64;
        for j in 0..self.chains {
            if !self.states[j].alive() {
                continue;
            }
            let train_nll = nll.get(j).copied().unwrap_or(f64::NAN) / seen;
            let train_accuracy =
                if totals.classifies { right.get(j).copied().unwrap_or(f64::NAN) / seen } else { f64::NAN };
            let sums = kinetic_sums.as_ref().map(|s| s[j].as_slice());
            self.chain_epoch_end(j, epoch, train_nll, train_accuracy, bad_theta[j], sums);
        }
        Ok(())
    }

    /// The epoch row of chain `j` (or its divergence).
    fn chain_epoch_end(
        &mut self,
        j: usize,
        epoch: u64,
        train_nll: f64,
        train_accuracy: f64,
        bad_theta: bool,
        kinetic_sums: Option<&[f64]>,
    ) {
        let k = self.k;
        let target = self.protocols[j].temperature_at(k);
        let s = &mut self.states[j];
        if !train_nll.is_finite() || bad_theta {
            s.diverge(k, format!("training loss or parameters became NaN/Inf in epoch {epoch}"));
            return;
        }
        let kinetic =
            kinetic_sums.map(|sums| diagnostics::kinetic(&self.segments.names, &self.segments.sizes, sums, target));
        if let Some(kin) = kinetic.as_ref().filter(|kin| !kin.overall.is_finite()) {
            // Momenta so large that Σm²/M overflows: θ may still be finite, the chain is not.
            s.diverge(k, format!("kinetic temperature became {} in epoch {epoch}", kin.overall));
            return;
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
            timestep_factor: self.protocols[0].timestep_factor(k),
            train_nll,
            train_accuracy,
            kinetic_temperature: kinetic.as_ref().map_or(f64::NAN, |k| k.overall),
            kinetic_in_band: kinetic.as_ref().map_or(f64::NAN, |k| k.in_band_fraction),
            configurational_temperature: s.last_ctemp,
            members: self.objective.members(j),
            wall_seconds: self.started.elapsed().as_secs_f64(),
        };
        self.observer.chain_epoch(j, &row);
        let s = &mut self.states[j];
        s.epochs.push(row);
        s.last_kinetic = kinetic;
        s.steps = k;
    }

    /// Finish: one outcome per chain (θ rows of a batched run).
    pub fn finish(mut self) -> Vec<ChainOutcome> {
        let k = self.k;
        let acceptance = (self.acceptance.1 > 0).then(|| self.acceptance.0 / self.acceptance.1 as f64);
        let chains = self.chains;
        let theta = self.theta;
        std::mem::take(&mut self.states)
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
            .collect()
    }
}

impl Drop for Sampler<'_, '_> {
    /// Releases the run's host handles, on every path.
    fn drop(&mut self) {
        self.release_stats();
        self.host.remove(self.temp_id);
        self.host.remove(self.theta_id);
        if let Some(mass) = self.mass.take() {
            mass.release(self.host);
        }
    }
}
