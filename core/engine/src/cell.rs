//! One grid cell: a network on a dataset, with its four plugins, through [`crate::chain`].

use std::cell::RefCell;
use std::rc::Rc;

use ablate_data::Dataset;
use ablate_grid::config::{CellConfig, Init, ModelConfig, Preconditioner};
use ablate_plugin_host::Registry;
use ablate_sdk::abi::{IntegratorBox, LikelihoodBox, NoiseBox, PriorBox};
use ablate_sdk::{FactorKind, ParamInfo};
use tch::{Device, Kind, Tensor};

use crate::chain::{ChainRun, ChainSettings, ChainStatus, EpochRow, Factor, Gradient, Objective, Observer};
use crate::compute::Compute;
use crate::dispatch_count::CpuOnly;
use crate::host::{PotentialFn, TchHost};
use crate::metrics::{ensemble_metrics, growth_curve, MemberProbs};
use crate::model::{BnState, Mode, Model};
use crate::predictions::{member_log_likelihood, Predictions};
use crate::schedule::Protocol;
use crate::EngineError;
pub use ablate_records::{FinalDiagnostics, FinalMetrics, PriorPredictive};

#[derive(Debug, Clone)]
pub struct CellOutcome {
    pub status: ChainStatus,
    pub epochs: Vec<EpochRow>,
    /// For a diverged cell: the metrics of the members collected before it diverged, if any.
    pub metrics: Option<FinalMetrics>,
    /// The members' predictions, when `eval.store_predictions` is on and a member was taken.
    pub predictions: Option<Predictions>,
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
    /// Check plugin outputs for NaN/Inf at finite inputs (single chains on the CPU). Batched
    /// chains skip it: one diverging chain must not stop the others, and the per-chain checks
    /// of θ catch it.
    pub check_outputs: bool,
    /// For a prior that is an isotropic Gaussian per tensor (`isotropic_precision`): its
    /// precision P over the flat parameters, divided by n and shaped like θ, so that the prior's
    /// share of ∇G̃ is one fused P/n ⊙ θ instead of a plugin call per tensor.
    pub prior_precision: Option<Tensor>,
}

impl Loss {
    /// Mean NLL of `logits` through the likelihood plugin (0-d).
    pub fn nll(&self, host: &mut TchHost<'_>, logits: &Tensor, y: &Tensor) -> Result<Tensor, EngineError> {
        let lik = self.likelihood.borrow();
        let nll = crate::plugin_call::likelihood_nll(&lik, host, logits, y)?;
        if logits.requires_grad() && !nll.requires_grad() {
            // Autograd would stop here (or, with a prior without a closed-form gradient,
            // sample the prior alone without a word).
            return Err(lik.fail(
                "nll",
                "returned an NLL that does not depend on the logits (no gradient reaches the network's \
                 parameters); compute it from the logits with the host's ops"
                    .into(),
            ));
        }
        // On the CPU a check is free; on a GPU it would synchronise every step, so there a
        // non-finite value surfaces as divergence at the next member or epoch end.
        if self.check_outputs && nll.device() == Device::Cpu {
            let _cpu = CpuOnly::enter();
            if crate::chain::nonfinite(&nll) && !crate::chain::nonfinite(logits) {
                return Err(nonfinite_output(&lik, "nll", logits));
            }
        }
        Ok(nll.f_reshape([] as [i64; 0])?)
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
        let lp = call_log_prob(&self.prior, host, views, self.model.infos())?;
        if self.check_outputs && lp.device() == Device::Cpu {
            let _cpu = CpuOnly::enter();
            if crate::chain::nonfinite(&lp) && !crate::chain::nonfinite(theta) {
                return Err(nonfinite_output(&self.prior, "log_prob", theta));
            }
        }
        Ok(lp.f_reshape([] as [i64; 0])?)
    }

    /// ∇ of G̃ = `nll` − (1/n)·log p(θ) with respect to the per-tensor leaves, flat (\[d\], or
    /// [K, d] for K batched chains). A prior with a closed-form gradient skips autograd through
    /// its log-density (the prior's share of a step was 15–40% of a small MLP's).
    pub fn loss_gradient(
        &self,
        host: &mut TchHost<'_>,
        nll: &Tensor,
        leaves: &[Tensor],
        theta: &Tensor,
        chains: i64,
    ) -> Result<Tensor, EngineError> {
        if let Some(precision) = &self.prior_precision {
            // ∇G̃ = ∇NLL + (P/n) ⊙ θ: autograd of the NLL alone, then one fused update.
            let grads = Tensor::f_run_backward(&[nll], leaves, false, false)?;
            let _guard = tch::no_grad_guard();
            let grad = flatten(&defined_gradients(grads, leaves), chains)?;
            crate::fused::addcmul(&grad, 1.0, precision, theta).map_err(EngineError::Config)?;
            return Ok(grad);
        }
        match self.prior_grad(host, leaves)? {
            Some(prior) => {
                let grads = Tensor::f_run_backward(&[nll], leaves, false, false)?;
                let _guard = tch::no_grad_guard();
                let grads = defined_gradients(grads, leaves);
                if theta.device() == Device::Cpu && crate::fused::enabled() {
                    // −(1/n)·∇log p added tensor by tensor (fused loops) before the one
                    // flattening copy.
                    for (g, p) in grads.iter().zip(&prior) {
                        crate::fused::axpy(g, -1.0 / self.n, p).map_err(EngineError::Config)?;
                    }
                    flatten(&grads, chains)
                } else {
                    // On a GPU one flat update launches fewer kernels than one per tensor.
                    let grad = flatten(&grads, chains)?;
                    crate::fused::axpy(&grad, -1.0 / self.n, &flatten(&prior, chains)?).map_err(EngineError::Config)?;
                    Ok(grad)
                }
            }
            None => {
                let total = nll.f_sub(&self.log_prior_of(host, leaves, theta)?.f_div_scalar(self.n)?)?;
                let grads = Tensor::f_run_backward(&[&total], leaves, false, false)?;
                flatten(&defined_gradients(grads, leaves), chains)
            }
        }
    }

    /// ∇ log p(θ) per tensor from the prior's closed form, if it has one. With output checks
    /// on, a NaN/Inf in it at finite parameters is the prior's fault and fails the cell naming
    /// it (not a divergence blamed on the sampler).
    fn prior_grad(&self, host: &mut TchHost<'_>, views: &[Tensor]) -> Result<Option<Vec<Tensor>>, EngineError> {
        let grads = crate::plugin_call::call_grad_log_prob(&self.prior, host, views, self.model.infos())?;
        if let Some(g) = &grads {
            if self.check_outputs && views.first().is_some_and(|v| v.device() == Device::Cpu) {
                let _cpu = CpuOnly::enter();
                if let Some((t, i, v)) = crate::plugin_call::first_nonfinite(g) {
                    let theta = flatten(&views.iter().map(Tensor::detach).collect::<Vec<_>>(), 1)?;
                    if !crate::chain::nonfinite(&theta) {
                        let name = self.model.infos().get(t).map_or("?", |info| info.name.as_str());
                        return Err(match nonfinite_output(&self.prior, "grad_log_prob", &theta) {
                            EngineError::PluginCall { kind, name: plugin, path, during, message } => {
                                EngineError::PluginCall {
                                    kind,
                                    name: plugin,
                                    path,
                                    during,
                                    message: format!("{message}: {v} at `{name}`[{i}]"),
                                }
                            }
                            diverged => diverged,
                        });
                    }
                }
            }
        }
        Ok(grads)
    }

    /// Why [`Loss::potential`] is not the likelihood's energy, if it is not (batch norm, dropout,
    /// augmentation: [`crate::compat::dirty_energy`]).
    fn dirty_energy(&self) -> Option<String> {
        let mut lik = self.likelihood.try_borrow_mut().ok()?;
        let toggles = lik.obj.model();
        let augments = crate::compat::augments(&mut lik.obj);
        crate::compat::dirty_energy(&lik.name, toggles, augments)
    }

    /// U(θ) = n·(mean NLL over the training set) − log p(θ) and ∇U (inference mode).
    fn potential(&self, theta: &Tensor, bn: &mut BnState) -> Result<(Tensor, Tensor), EngineError> {
        let theta = theta.detach().set_requires_grad(true);
        let mut sub = TchHost::new();
        let total = self.train_x.size()[0];
        let mut nll_sum = Tensor::f_zeros([], (Kind::Float, theta.device()))?;
        let mut start = 0;
        while start < total {
            let len = self.chunk.min(total - start);
            let logits = self.model.forward(&theta, &self.train_x.f_narrow(0, start, len)?, Mode::Eval, bn)?;
            let nll = self.nll(&mut sub, &logits, &self.train_y.f_narrow(0, start, len)?)?;
            let _ = nll_sum.f_add_(&nll.f_mul_scalar(len as f64)?)?;
            start += len;
        }
        let u = nll_sum.f_mul_scalar(self.n / total as f64)?.f_sub(&self.log_prior(&mut sub, &theta)?)?;
        let grads = Tensor::f_run_backward(&[&u], &[&theta], false, false)?;
        let grad = defined_gradients(grads, std::slice::from_ref(&theta))
            .pop()
            .ok_or_else(|| EngineError::Config("autograd returned no gradient of U".into()))?;
        Ok((u.detach(), grad))
    }
}

/// The prior's declared isotropic precision (checked against its gradient by the run-start
/// guard) over the flat parameters, divided by `n` and shaped like `theta` (\[d\] or [K, d]).
pub fn flat_prior_precision(
    model: &Model,
    prior: &Factor<PriorBox>,
    theta: &Tensor,
    n: f64,
) -> Result<Option<Tensor>, EngineError> {
    let Some(per_tensor) = crate::plugin_call::call_isotropic_precision(prior, model.infos())? else {
        return Ok(None);
    };
    let segments = crate::precond::Segments::new(model.infos(), theta.device())?;
    let values: Vec<f32> = per_tensor.iter().map(|p| (p / n) as f32).collect();
    let flat = segments.expand(&Tensor::from_slice(&values).f_to_device(theta.device())?)?;
    Ok(Some(flat.f_expand_as(theta)?.f_contiguous()?))
}

/// Autograd leaves no gradient (an undefined tensor) for a parameter the loss does not depend
/// on (e.g. a threshold the network never reaches, or any tensor under a flat prior when the
/// network skips it): its gradient is zero.
fn defined_gradients(grads: Vec<Tensor>, leaves: &[Tensor]) -> Vec<Tensor> {
    grads.into_iter().zip(leaves).map(|(g, leaf)| if g.defined() { g } else { leaf.detach().zeros_like() }).collect()
}

/// Per-tensor gradients (or values) as one flat vector: \[d\] for one chain, [K, d] for K
/// batched chains (each tensor shaped [K, ...]).
fn flatten(grads: &[Tensor], chains: i64) -> Result<Tensor, EngineError> {
    let (shape, dim): (&[i64], i64) = if chains == 1 { (&[-1], 0) } else { (&[chains, -1], 1) };
    let parts = grads.iter().map(|g| g.f_reshape(shape)).collect::<Result<Vec<_>, _>>()?;
    Ok(Tensor::f_cat(&parts, dim)?)
}

use crate::plugin_call::prior_log_prob as call_log_prob;

/// A plugin returned NaN/Inf for finite inputs. With inputs of moderate size that is the
/// plugin's fault; with huge ones (float overflow of θ², of logits) the chain has diverged.
fn nonfinite_output<T>(plugin: &Factor<T>, during: &str, input: &Tensor) -> EngineError {
    let largest = input.detach().f_abs().and_then(|a| a.f_max()).and_then(f64::try_from).unwrap_or(f64::INFINITY);
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

/// Continuous stream of shuffled minibatch indices (reshuffled after each pass), from its own
/// seeded generator: a chain's data order depends on its seed only, whether it runs alone or
/// batched with others.
struct BatchStream {
    perm: Vec<i64>,
    pos: usize,
    rng: SplitMix64,
}

impl BatchStream {
    fn new(n: i64, seed: u64) -> Self {
        let mut s = Self { perm: (0..n).collect(), pos: 0, rng: SplitMix64(seed) };
        s.shuffle();
        s
    }
    fn shuffle(&mut self) {
        for i in (1..self.perm.len()).rev() {
            let j = self.rng.below(i as u64 + 1) as usize;
            self.perm.swap(i, j);
        }
        self.pos = 0;
    }
    fn next(&mut self, batch: i64) -> &[i64] {
        let batch = (batch.max(0) as usize).min(self.perm.len());
        if self.pos + batch > self.perm.len() {
            self.shuffle();
        }
        self.pos += batch;
        &self.perm[self.pos - batch..self.pos]
    }
}

/// SplitMix64 (Steele, Lea & Flood 2014): small, fast, and well mixed for any seed.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, bound) (Lemire's multiply-shift; the bias is below 2⁻³² here).
    fn below(&mut self, bound: u64) -> u64 {
        ((self.next_u64() as u128 * bound as u128) >> 64) as u64
    }
}

/// The seeds of a chain's two data streams (training steps, preconditioner batches).
fn stream_seeds(seed: u64) -> (u64, u64) {
    let mut g = SplitMix64(seed ^ 0x5EED_DA7A_0000_0000);
    (g.next_u64(), g.next_u64())
}

/// A network on a dataset: the objective of a grid cell, or of K batched cells (θ [K, d]).
struct Network {
    loss: Rc<Loss>,
    chains: usize,
    /// Per-tensor autograd leaves that alias the flat θ (same storage): the integrator's in-place
    /// updates of θ are the leaves' values, and backward gives per-tensor gradients that one
    /// `cat` flattens (autograd through `narrow` of a flat leaf would build a full-size gradient
    /// per tensor instead). Batched: shaped [K, ...].
    leaves: Vec<Tensor>,
    bn: BnState,
    /// (training, preconditioner) streams, one pair per chain.
    streams: Vec<(BatchStream, BatchStream)>,
    test_x: Tensor,
    members: Vec<Vec<MemberProbs>>,
    /// The `eval.ood` test images and each chain's member probabilities on them.
    ood_x: Option<Tensor>,
    ood_members: Vec<Vec<Vec<f32>>>,
    eval_chunk: i64,
    device: Device,
    /// On a GPU, uploaded indices of the next minibatches of the (training, preconditioner)
    /// streams: (rows per batch, [PREFETCH, rows] indices, batches used).
    prefetched: [Option<(i64, Tensor, i64)>; 2],
}

/// Minibatches whose indices travel to a GPU in one copy.
const PREFETCH: usize = 64;

impl Network {
    /// The next minibatch of every chain, rows of chain 0 first ([K·B] examples), or the whole
    /// training set once (`batch` = 0; shared by all chains).
    fn batch(&mut self, batch: u64, train: bool) -> Result<(Tensor, Tensor), EngineError> {
        let n = self.loss.train_x.size()[0];
        if batch == 0 {
            return Ok((self.loss.train_x.shallow_clone(), self.loss.train_y.shallow_clone()));
        }
        let rows = self.chains as i64 * (batch as i64).min(n);
        let idx = if self.device == Device::Cpu {
            Tensor::from_slice(&self.next_indices(batch, train))
        } else {
            // A host-to-device copy makes the host wait for the GPU, so the indices of the next
            // PREFETCH batches travel in one copy (the streams are read in the same order).
            let slot = usize::from(!train);
            let stale = self.prefetched[slot].as_ref().is_none_or(|p| p.0 != rows || p.2 == p.1.size()[0]);
            if stale {
                let mut all = Vec::with_capacity(PREFETCH * rows as usize);
                for _ in 0..PREFETCH {
                    all.extend(self.next_indices(batch, train));
                }
                let t = Tensor::from_slice(&all).f_reshape([PREFETCH as i64, rows])?.f_to_device(self.device)?;
                self.prefetched[slot] = Some((rows, t, 0));
            }
            let p = self.prefetched[slot]
                .as_mut()
                .ok_or_else(|| EngineError::Config("prefetched minibatch indices missing".into()))?;
            p.2 += 1;
            p.1.f_get(p.2 - 1)?
        };
        Ok((self.loss.train_x.f_index_select(0, &idx)?, self.loss.train_y.f_index_select(0, &idx)?))
    }

    /// The indices of every chain's next minibatch of the training or preconditioner stream.
    fn next_indices(&mut self, batch: u64, train: bool) -> Vec<i64> {
        let n = self.loss.train_x.size()[0];
        let mut idx: Vec<i64> = Vec::with_capacity(self.chains * batch as usize);
        for (train_stream, precond_stream) in &mut self.streams {
            let stream = if train { train_stream } else { precond_stream };
            idx.extend_from_slice(stream.next((batch as i64).min(n)));
        }
        idx
    }

    /// Class probabilities on the test set (inference mode, θ's own batch-norm statistics), one
    /// flat vector per chain.
    fn evaluate(&mut self, theta: &Tensor) -> Result<Vec<Vec<f32>>, EngineError> {
        let x = self.test_x.shallow_clone();
        self.evaluate_on(&x, theta)
    }

    /// Class probabilities of `inputs` (as [`Self::evaluate`]), one flat vector per chain.
    fn evaluate_on(&mut self, inputs: &Tensor, theta: &Tensor) -> Result<Vec<Vec<f32>>, EngineError> {
        let _guard = tch::no_grad_guard();
        let total = inputs.size()[0];
        let views = (self.chains > 1).then(|| self.loss.model.batched_views(theta));
        let mut parts = Vec::new();
        let mut start = 0;
        while start < total {
            let len = self.eval_chunk.min(total - start);
            let x = inputs.f_narrow(0, start, len)?;
            let logits = match &views {
                Some(v) => self.loss.model.forward_batched(v, &x, Mode::Eval, &mut self.bn)?,
                None => self.loss.model.forward(theta, &x, Mode::Eval, &mut self.bn)?.f_unsqueeze(0)?,
            };
            parts.push(logits.f_softmax(-1, Kind::Float)?);
            start += len;
        }
        let probs = Tensor::f_cat(&parts, 1)?.f_to_device(Device::Cpu)?;
        (0..self.chains as i64).map(|j| Ok(Vec::<f32>::try_from(probs.f_get(j)?.f_flatten(0, -1)?)?)).collect()
    }
}

impl Objective for Network {
    fn chains(&self) -> usize {
        self.chains
    }
    fn infos(&self) -> &[ParamInfo] {
        self.loss.model.infos()
    }
    fn dim(&self) -> i64 {
        self.loss.model.dim()
    }
    fn n(&self) -> f64 {
        self.loss.n
    }
    fn examples(&self) -> u64 {
        self.loss.train_x.size()[0] as u64
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
        let (mut x, y) = self.batch(batch, train)?;
        let loss = Rc::clone(&self.loss);
        // Training and preconditioner batches alike: the reference estimates the preconditioner
        // (and with it the configurational temperature) from the same augmented training stream.
        {
            let mut lik = loss.likelihood.borrow_mut();
            if let Some(aug) = crate::plugin_call::likelihood_augment(&mut lik, host, &x)? {
                if loss.model.is_sequence() {
                    return Err(lik.fail(
                        "augment",
                        "augments images (crops and flips), which is meaningless for the sequences a cnn-lstm \
                         reads; use a likelihood without augmentation"
                            .into(),
                    ));
                }
                x = aug;
            }
        }
        if self.chains > 1 {
            return self.batched_gradient(host, theta, &x, &y, batch == 0, train);
        }
        // The reference estimates the preconditioner with `model(images)`, i.e. inference mode.
        let mode = if train { Mode::Train } else { Mode::Eval };
        let logits = loss.model.forward_views(&self.leaves, &x, mode, &mut self.bn)?;
        let nll = loss.nll(host, &logits, &y)?;
        let grad = loss.loss_gradient(host, &nll, &self.leaves, theta, 1)?;
        let _guard = tch::no_grad_guard();
        let count = y.size()[0];
        Ok(Gradient {
            grad,
            loss_sum: nll.detach().f_mul_scalar(count as f64)?,
            correct: Some(logits.f_argmax(-1, false)?.f_eq_tensor(&y)?.f_sum(Kind::Int64)?),
            count,
        })
    }

    fn potential(&self) -> Option<Box<PotentialFn<'static>>> {
        if self.chains > 1 {
            return None; // energy-based integrators are not batchable
        }
        let loss = Rc::clone(&self.loss);
        let mut bn = self.bn.copy();
        let mut checked = false;
        Some(Box::new(move |at: &Tensor, _full: bool| {
            // On first use only: the augmentation probe draws random numbers, which a cell whose
            // integrator never asks for the energy must not spend.
            if !checked {
                if let Some(why) = loss.dirty_energy() {
                    return Err(format!(
                        "the energy U(θ) offered to energy-based integrators is the whole training set's NLL in \
                         inference mode, but {why}; use a likelihood without batch norm, dropout or augmentation \
                         with an exact sampler"
                    ));
                }
                checked = true;
            }
            loss.potential(at, &mut bn).map_err(|e| e.to_string())
        }))
    }

    fn member(&mut self, theta: &Tensor, alive: &[bool]) -> Result<(), EngineError> {
        let probs = self.evaluate(theta)?;
        for ((members, probs), &alive) in self.members.iter_mut().zip(probs).zip(alive) {
            if alive {
                members.push(MemberProbs { probs });
            }
        }
        if let Some(x) = self.ood_x.as_ref().map(Tensor::shallow_clone) {
            let probs = self.evaluate_on(&x, theta)?;
            for ((members, probs), &alive) in self.ood_members.iter_mut().zip(probs).zip(alive) {
                if alive {
                    members.push(probs);
                }
            }
        }
        Ok(())
    }

    fn members(&self, chain: usize) -> u64 {
        self.members.get(chain).map_or(0, |m| m.len() as u64)
    }
}

impl Network {
    /// ∇ of Σ_k G̃_k for K chains: the gradient of each row of θ is its own chain's ∇G̃_k (the
    /// chains share no parameters). `x`, `y` hold K·B examples (chain 0's batch first) or the
    /// whole training set once, shared.
    ///
    /// The likelihood plugin sees all K·B rows in one call (its mean NLL times K is Σ_k of the
    /// per-chain means, since every chain has B rows); the per-chain training NLL of the epoch
    /// rows is the categorical NLL computed here.
    fn batched_gradient(
        &mut self,
        host: &mut TchHost<'_>,
        theta: &Tensor,
        x: &Tensor,
        y: &Tensor,
        shared: bool,
        train: bool,
    ) -> Result<Gradient, EngineError> {
        let k = self.chains as i64;
        let loss = Rc::clone(&self.loss);
        let (inputs, labels) = if shared {
            (x.shallow_clone(), y.f_repeat([k])?)
        } else {
            let mut shape = x.size();
            shape[0] /= k;
            shape.insert(0, k);
            (x.f_view(shape.as_slice())?, y.shallow_clone())
        };
        // The reference estimates the preconditioner with `model(images)`, i.e. inference mode.
        let mode = if train { Mode::Train } else { Mode::Eval };
        let logits = loss.model.forward_batched(&self.leaves, &inputs, mode, &mut self.bn)?; // [K, B, C]
        let classes = logits.size()[2];
        let nll = loss.nll(host, &logits.f_reshape([-1, classes])?, &labels)?;
        let grad = loss.loss_gradient(host, &nll.f_mul_scalar(k as f64)?, &self.leaves, theta, k)?;
        let _guard = tch::no_grad_guard();
        let labels = labels.f_view([k, -1])?;
        let count = labels.size()[1];
        if !train {
            // Preconditioner batches: only the gradient is used.
            return Ok(Gradient {
                grad,
                loss_sum: Tensor::f_zeros([k], (Kind::Double, self.device))?,
                correct: None,
                count,
            });
        }
        let picked = crate::host::log_softmax(&logits, -1)?.f_gather(-1, &labels.f_unsqueeze(-1)?, false)?;
        Ok(Gradient {
            grad,
            loss_sum: picked.f_sum_dim_intlist([1, 2].as_slice(), false, Kind::Double)?.f_neg()?,
            correct: Some(logits.f_argmax(-1, false)?.f_eq_tensor(&labels)?.f_sum_dim_intlist(
                1,
                false,
                Kind::Int64,
            )?),
            count,
        })
    }
}

/// Draw θ from the prior `samples` times (tensors the prior does not cover keep their initial
/// values) and record the class distribution of the predictions on up to 1000 training inputs.
/// `None` when the prior draws no tensor at all (`flat`, `empirical-bayes`): the "draws" would
/// be the initialisation.
fn prior_predictive(
    loss: &Loss,
    init: ablate_grid::config::Init,
    samples: usize,
    device: Device,
) -> Result<Option<PriorPredictive>, EngineError> {
    let _guard = tch::no_grad_guard();
    let model = &loss.model;
    let inputs = loss.train_x.size()[0].min(1000);
    let x = loss.train_x.f_narrow(0, 0, inputs)?;
    let mut host = TchHost::new();
    let mut fractions = Vec::with_capacity(samples);
    let mut counts = vec![0i64; model.classes as usize];
    for _ in 0..samples {
        let theta = model.init(init, device)?;
        let mut drawn = 0;
        for (info, view) in model.infos().iter().zip(model.views(&theta)) {
            if let Some(draw) = crate::plugin_call::prior_sample(&loss.prior, &mut host, info, &view)? {
                view.shallow_clone().f_copy_(&draw)?;
                drawn += 1;
            }
        }
        if drawn == 0 {
            tracing::info!(prior = %loss.prior.name, "the prior draws no parameter tensor: no prior predictive check");
            return Ok(None);
        }
        let mut bn = model.new_bn_state(device);
        let preds = model.forward(&theta, &x, Mode::Eval, &mut bn)?.f_argmax(-1, false)?;
        let hist = Vec::<i64>::try_from(preds.f_bincount(None::<Tensor>, model.classes)?.f_to_device(Device::Cpu)?)?;
        for (c, h) in counts.iter_mut().zip(&hist) {
            *c += h;
        }
        fractions.push(*hist.iter().max().unwrap_or(&0) as f64 / inputs as f64);
    }
    let k = fractions.len() as f64;
    let mean = fractions.iter().sum::<f64>() / k;
    let var = fractions.iter().map(|f| (f - mean).powi(2)).sum::<f64>() / (k - 1.0).max(1.0);
    Ok(Some(PriorPredictive {
        samples,
        inputs,
        top_class_fraction: mean,
        top_class_fraction_se: (var / k).sqrt(),
        class_counts: counts,
    }))
}

/// Load the dataset a cell configuration asks for.
pub fn load_data(d: &ablate_grid::config::DataConfig) -> Result<Dataset, EngineError> {
    let mut req = ablate_data::DataRequest::new(d.dataset.clone());
    req.path = d.path.as_ref().map(std::path::PathBuf::from);
    req.train_size = d.train_size;
    req.test_size = d.test_size;
    req.subset_seed = d.subset_seed;
    req.subset = match d.subset {
        ablate_grid::config::SubsetMode::Random => ablate_data::subset::SubsetMode::Random,
        ablate_grid::config::SubsetMode::First => ablate_data::subset::SubsetMode::First,
    };
    req.normalize = d.normalize;
    Ok(ablate_data::load(&req)?)
}

/// Load the dataset of a cell: [`load_data`], then `data.label_noise` applied to the training
/// labels with the cell's `seed` (see `ablate_data::subset::label_noise`). Cells with label
/// noise batch only with cells of the same seed ([`batch_key`]), so one load serves a batch.
pub fn load_cell_data(cfg: &CellConfig) -> Result<Dataset, EngineError> {
    let mut ds = load_data(&cfg.data)?;
    if cfg.data.label_noise > 0.0 {
        let classes = ds.num_classes;
        let count = ablate_data::subset::label_noise(&mut ds.train, cfg.data.label_noise, classes, cfg.seed)?;
        tracing::info!(fraction = cfg.data.label_noise, replaced = count, seed = cfg.seed, "label noise");
    }
    Ok(ds)
}

/// What decides the data [`load_cell_data`] loads: the cell's `data` section, and its seed when
/// label noise draws from it. Cells with equal keys load equal data.
pub fn data_key(cfg: &CellConfig) -> String {
    let seed = (cfg.data.label_noise > 0.0).then_some(cfg.seed);
    serde_json::to_string(&(&cfg.data, seed)).unwrap_or_default()
}

/// Cells that may run as one batch of chains share this key: everything but the temperature
/// and the seed (the seed too when `data.label_noise > 0`: it chooses the noisy labels, which
/// the chains of a batch share).
pub fn batch_key(cfg: &CellConfig) -> Option<String> {
    let mut c = cfg.clone();
    c.temperature = 0.0;
    if c.data.label_noise == 0.0 {
        c.seed = 0;
    }
    serde_json::to_string(&c).ok()
}

/// The plugins of a cell, built from the registry.
struct Plugins {
    prior: Factor<PriorBox>,
    integrator: Factor<IntegratorBox>,
    noise: Factor<NoiseBox>,
    likelihood: Factor<LikelihoodBox>,
}

impl Plugins {
    fn new(cfg: &CellConfig, registry: &Registry) -> Result<Self, EngineError> {
        Ok(Self {
            prior: factor(registry, FactorKind::Prior, &cfg.prior.name, || {
                registry.prior(&cfg.prior.name, &cfg.prior.params)
            })?,
            integrator: factor(registry, FactorKind::Integrator, &cfg.integrator.name, || {
                registry.integrator(&cfg.integrator.name, &cfg.integrator.params)
            })?,
            noise: factor(registry, FactorKind::Noise, &cfg.noise.name, || {
                registry.noise(&cfg.noise.name, &cfg.noise.params)
            })?,
            likelihood: factor(registry, FactorKind::Likelihood, &cfg.likelihood.name, || {
                registry.likelihood(&cfg.likelihood.name, &cfg.likelihood.params)
            })?,
        })
    }
}

/// Why `cfgs` cannot run as one batch of chains, if they cannot: different batch keys, an
/// integrator that is not batchable, or a prior whose log density of stacked chains is not the
/// sum over chains (checked numerically on random parameters).
pub fn batch_problem(cfgs: &[CellConfig], registry: &Registry) -> Option<String> {
    let first = cfgs.first()?;
    let Some(key) = batch_key(first) else {
        return Some("the cell configuration cannot be keyed".into());
    };
    if cfgs.iter().any(|c| batch_key(c).as_deref() != Some(key.as_str())) {
        return Some("the cells differ in more than temperature and seed".into());
    }
    let check = || -> Result<Option<String>, EngineError> {
        let plugins = Plugins::new(first, registry)?;
        if !plugins.integrator.obj.batchable() {
            return Ok(Some(format!("integrator `{}` is not batchable", plugins.integrator.name)));
        }
        let toggles = plugins.likelihood.obj.model();
        // The answer depends neither on the input size nor on the widths: a small stand-in of
        // the same architecture keeps the check cheap whatever the grid asks for.
        let model = Model::new(&probe_model(&first.model), toggles, (1, 32, 32), 3)?;
        if model.dim() > PROBE_MAX_DIM {
            return Ok(Some(format!("the probe model has {} parameters (at most {PROBE_MAX_DIM})", model.dim())));
        }
        prior_additivity(&model, &plugins.prior)
    };
    match check() {
        Ok(problem) => problem,
        Err(e) => Some(e.to_string()),
    }
}

/// Largest stand-in network [`batch_problem`] builds (parameters; two chains are drawn).
const PROBE_MAX_DIM: i64 = 1 << 20;

/// The architecture of `model` with widths capped (MLP 64, CNN 16 channels, ResNet width 1), so
/// that probing a grid's `"hidden": [100000000]` allocates kilobytes, not gigabytes.
fn probe_model(model: &ModelConfig) -> ModelConfig {
    match model {
        ModelConfig::Mlp { hidden, activation } => {
            ModelConfig::Mlp { hidden: hidden.iter().map(|&w| w.min(64)).collect(), activation: *activation }
        }
        ModelConfig::Cnn { channels, activation } => {
            ModelConfig::Cnn { channels: channels.iter().map(|&c| c.min(16)).collect(), activation: *activation }
        }
        ModelConfig::Resnet20 { .. } => ModelConfig::Resnet20 { width: 1 },
        ModelConfig::CnnLstm { filters, kernel, pool, hidden } => ModelConfig::CnnLstm {
            filters: (*filters).min(16),
            kernel: *kernel,
            pool: *pool,
            hidden: (*hidden).min(64),
        },
    }
}

/// log p of two stacked chains must be the sum of the chains' own log p (priors that reduce
/// over whole tensors non-additively cannot share a batch).
fn prior_additivity(model: &Model, prior: &Factor<PriorBox>) -> Result<Option<String>, EngineError> {
    let _guard = tch::no_grad_guard();
    let mut host = TchHost::new();
    let thetas: Vec<Tensor> = (0..2)
        .map(|i| Ok(model.init(Init::HeNormal, Device::Cpu)?.f_mul_scalar(0.5 + i as f64)?))
        .collect::<Result<_, EngineError>>()?;
    let stacked = Tensor::f_stack(&thetas, 0)?;
    let lp = |host: &mut TchHost<'_>, views: Vec<Tensor>| -> Result<f64, EngineError> {
        Ok(f64::try_from(call_log_prob(prior, host, &views, model.infos())?.f_to_kind(Kind::Double)?)?)
    };
    let together = lp(&mut host, model.batched_views(&stacked))?;
    let apart = lp(&mut host, model.views(&thetas[0]))? + lp(&mut host, model.views(&thetas[1]))?;
    let tolerance = 1e-4 * (1.0 + apart.abs());
    Ok(((together - apart).abs() > tolerance || !together.is_finite()).then(|| {
        format!(
            "prior `{}` is not a sum over chains (log p of two stacked chains {together:.6e}, sum of each {apart:.6e})",
            prior.name
        )
    }))
}

/// Distinguishes the prior-predictive check's seed from the chain's noise seed.
const PRIOR_CHECK_STREAM: u64 = 0x9E10_C4EC_0000_0001;

/// Run one cell. Seeds libtorch's generator from `cfg.seed` first.
pub fn run_cell(
    cfg: &CellConfig,
    data: &Dataset,
    registry: &Registry,
    device: Device,
    observer: &mut dyn Observer,
) -> Result<CellOutcome, EngineError> {
    Ok(run_cells(std::slice::from_ref(cfg), data, registry, device, observer)?.remove(0))
}

/// Run cells as one batch of chains (θ [K, d]; see [`batch_problem`] for what may be batched;
/// one cell runs alone). Chain j starts from `cfgs[j].seed` (initial θ and data order as if it
/// ran alone), and so does its injected noise (`ou_update` draws from a stream per chain seeded
/// by the chain's cell seed), so a chain's numbers do not depend on its batch-mates wherever the
/// batched arithmetic equals the single-chain one (MLP).
pub fn run_cells(
    cfgs: &[CellConfig],
    data: &Dataset,
    registry: &Registry,
    device: Device,
    observer: &mut dyn Observer,
) -> Result<Vec<CellOutcome>, EngineError> {
    let chains = cfgs.len();
    let cfg = cfgs.first().ok_or_else(|| EngineError::Config("no cell to run".into()))?;
    if chains > 1 {
        if let Some(problem) = batch_problem(cfgs, registry) {
            return Err(EngineError::Config(format!("these cells cannot run as batched chains: {problem}")));
        }
    }
    crate::device::configure_cuda(device);
    let s = &cfg.sampler;
    let Plugins { prior, mut integrator, mut noise, likelihood } = Plugins::new(cfg, registry)?;

    let shape = [data.channels as i64, data.height as i64, data.width as i64];
    let (train_x, train_y) = split_tensors(&data.train, shape, device)?;
    let (test_x, _) = split_tensors(&data.test, shape, device)?;
    let ood_x = ood_tensor(cfg, shape, device)?;
    let n_train = data.train.len() as u64;
    let (toggles, n) = model_and_n(&likelihood, n_train)?;
    let model = network_model(cfg, toggles, (shape[0], shape[1], shape[2]), data.num_classes as i64, device)?;
    let compute = model.compute();
    crate::plugin_call::prior_gradient_guard(&model, &prior, device)?;
    let steps_per_epoch = (n_train / s.batch_size as u64).max(1);
    let protocols: Vec<Protocol> = cfgs.iter().map(|c| Protocol::new(s, steps_per_epoch, c.temperature)).collect();
    let expected_members = protocols[0].expected_members();
    tracing::info!(dim = model.dim(), n, steps_per_epoch, members = expected_members, chains, "cells set up");
    check_collects_members(s, expected_members)?;

    let (theta, views) = initial_parameters(&model, cfgs, s.init, device)?;
    let leaves: Vec<Tensor> = views.into_iter().map(|v| v.detach().set_requires_grad(true)).collect();
    let prior_precision = flat_prior_precision(&model, &prior, &theta, n)?;
    let bn = model.new_bn_state_for(device, chains as i64);
    let loss = Rc::new(Loss {
        model,
        prior,
        likelihood: RefCell::new(likelihood),
        train_x,
        train_y,
        n,
        chunk: cfg.eval.batch_size as i64,
        check_outputs: chains == 1,
        prior_precision,
    });
    let streams = cfgs.iter().map(|c| batch_streams(c.seed, n_train)).collect();
    let mut network = Network {
        loss: Rc::clone(&loss),
        chains,
        leaves,
        bn,
        streams,
        test_x,
        members: vec![Vec::new(); chains],
        ood_x,
        ood_members: vec![Vec::new(); chains],
        eval_chunk: cfg.eval.batch_size as i64,
        device,
        prefetched: [None, None],
    };
    let settings = chain_settings(s);
    let mut host = TchHost::new();
    host.seed_noise(cfgs.iter().map(|c| crate::fused::chain_noise_seed(c.seed)).collect());
    let outcomes = crate::chain::run(ChainRun {
        objective: &mut network,
        theta: &theta,
        integrator: &mut integrator,
        noise: &mut noise,
        protocols: &protocols,
        settings: &settings,
        host: &mut host,
        observer,
    })?;

    let labels = &data.test.labels;
    let mut results = Vec::with_capacity(chains);
    for (j, (chain, c)) in outcomes.into_iter().zip(cfgs).enumerate() {
        // After the chain, so that the check does not change the chain's random stream; seeded
        // from the cell's own seed, so that its draws do not depend on the batch-mates.
        let prior_check = prior_check(&loss, c, s.init, device);
        let members = &network.members[j];
        let metrics = (!members.is_empty()).then(|| FinalMetrics {
            members: members.len(),
            ensemble: ensemble_metrics(members, labels, data.num_classes, c.eval.ece_bins),
            growth: growth_curve(members, labels, data.num_classes, c.eval.ece_bins),
            diagnostics: final_diagnostics(&chain),
            acceptance: chain.acceptance,
            dim: network.loss.model.dim(),
            n_effective: n,
            steps: chain.steps,
            prior_predictive: prior_check,
            member_test_log_likelihood: Some(member_log_likelihood(members, labels, data.num_classes)),
            recomputed_from: None,
            compute: Some(compute.record(device)),
        });
        let predictions = (c.eval.store_predictions && !members.is_empty()).then(|| Predictions {
            classes: data.num_classes,
            labels: labels.clone(),
            test: members.iter().map(|m| m.probs.clone()).collect(),
            ood: network.ood_x.is_some().then(|| network.ood_members[j].clone()),
        });
        results.push(CellOutcome { status: chain.status, epochs: chain.epochs, metrics, predictions });
    }
    Ok(results)
}

/// Each chain's initial θ from its own seed (the noise streams are seeded per chain), all with
/// the batch's `init`: flat [d] for one chain, [K, d] for K, with the per-tensor views.
/// The cell's network, computing in the cell's precision on `device` (which this configures).
fn network_model(
    cfg: &CellConfig,
    toggles: ablate_sdk::ModelToggles,
    input: (i64, i64, i64),
    classes: i64,
    device: Device,
) -> Result<Model, EngineError> {
    let mut model = Model::new(&cfg.model, toggles, input, classes)?;
    let compute = Compute::new(cfg.precision, device, model.is_convolutional());
    compute.configure(device)?;
    model.set_compute(compute);
    Ok(model)
}

fn initial_parameters(
    model: &Model,
    cfgs: &[CellConfig],
    init: Init,
    device: Device,
) -> Result<(Tensor, Vec<Tensor>), EngineError> {
    let mut inits = Vec::with_capacity(cfgs.len());
    for c in cfgs.iter().rev() {
        tch::manual_seed(c.seed as i64);
        if device.is_cuda() {
            tch::Cuda::manual_seed_all(c.seed);
        }
        inits.push(model.init(init, device)?);
    }
    inits.reverse();
    if inits.len() == 1 {
        let theta = inits.remove(0);
        let views = model.views(&theta);
        Ok((theta, views))
    } else {
        let theta = Tensor::f_stack(&inits, 0)?;
        let views = model.batched_views(&theta);
        Ok((theta, views))
    }
}

/// The end-of-run thermometers of a chain (`metrics.json` → `diagnostics`).
fn final_diagnostics(chain: &crate::chain::ChainOutcome) -> FinalDiagnostics {
    let kinetic = chain.last_kinetic.as_ref();
    FinalDiagnostics {
        kinetic_in_band_fraction: kinetic.map_or(f64::NAN, |k| k.in_band_fraction),
        kinetic_temperature: kinetic.map_or(f64::NAN, |k| k.overall),
        configurational_temperature: chain.last_configurational,
        kinetic_per_tensor: kinetic.map(|k| k.per_tensor.clone()).unwrap_or_default(),
    }
}

/// The likelihood's model toggles and its effective n for `n_train` training examples.
fn model_and_n(
    likelihood: &Factor<LikelihoodBox>,
    n_train: u64,
) -> Result<(ablate_sdk::ModelToggles, f64), EngineError> {
    let toggles = {
        let _site = likelihood.enter("model");
        likelihood.obj.model()
    };
    let n = {
        let _site = likelihood.enter("effective_n");
        likelihood.obj.effective_n(n_train)
    };
    if !(n.is_finite() && n > 0.0) {
        return Err(likelihood.fail("effective_n", format!("returned {n}; it must be a positive number")));
    }
    Ok((toggles, n))
}

/// The prior predictive check of cell `c` (`eval.prior_samples` draws; none for 0).
fn prior_check(loss: &Loss, c: &CellConfig, init: Init, device: Device) -> Option<PriorPredictive> {
    match c.eval.prior_samples {
        0 => None,
        k => {
            tch::manual_seed(crate::fused::chain_noise_seed(c.seed ^ PRIOR_CHECK_STREAM) as i64);
            // A diagnostic: its failure (a prior plugin whose `sample` fails) costs the check,
            // not the chain's results.
            prior_predictive(loss, init, k, device).unwrap_or_else(|e| {
                tracing::warn!(
                    seed = c.seed,
                    temperature = c.temperature,
                    "the prior predictive check failed, the chain's results are kept without it: {e}"
                );
                None
            })
        }
    }
}

/// The test inputs of `eval.ood`'s dataset, when the cell names one.
fn ood_tensor(cfg: &CellConfig, shape: [i64; 3], device: Device) -> Result<Option<Tensor>, EngineError> {
    match crate::predictions::load_ood(cfg)? {
        Some(split) => Ok(Some(split_tensors(&split, shape, device)?.0)),
        None => Ok(None),
    }
}

/// A chain's two minibatch streams (gradient batches and preconditioner batches) from its seed.
fn batch_streams(seed: u64, n_train: u64) -> (BatchStream, BatchStream) {
    let (a, b) = stream_seeds(seed);
    (BatchStream::new(n_train as i64, a), BatchStream::new(n_train as i64, b))
}

/// Images [n, C, H, W] and labels [n] of a data split on `device`.
fn split_tensors(split: &ablate_data::Split, shape: [i64; 3], device: Device) -> Result<(Tensor, Tensor), EngineError> {
    let n = split.len() as i64;
    let x = Tensor::f_from_slice(&split.images)?.f_reshape([n, shape[0], shape[1], shape[2]])?.f_to_device(device)?;
    Ok((x, Tensor::f_from_slice(&split.labels)?.f_to_device(device)?))
}

/// What the chain loop needs of the cell's sampler settings.
fn chain_settings(s: &ablate_grid::config::SamplerConfig) -> ChainSettings {
    ChainSettings {
        lr: s.lr,
        momentum_decay: s.momentum_decay,
        batch_size: s.batch_size as u64,
        layerwise_mass: s.preconditioner == Preconditioner::Layerwise,
        precond_batches: s.precond_batches,
    }
}

/// A protocol that collects no ensemble member is a configuration error.
fn check_collects_members(s: &ablate_grid::config::SamplerConfig, expected: u64) -> Result<(), EngineError> {
    if expected == 0 {
        return Err(EngineError::Config(format!(
            "the protocol collects no ensemble member: {} epochs with cycle_start_sampling {} and cycle_length {}",
            s.epochs, s.cycle_start_sampling, s.cycle_length
        )));
    }
    Ok(())
}
