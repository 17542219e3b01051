//! Conformance checks, usable with any [`TestHost`] (the CPU reference host or the real one).
//!
//! # The Gaussian target
//!
//! U(θ) = Σᵢ θᵢ²/(2σᵢ²) with σ log-spaced over [`GaussianTarget::sigma_min`, `sigma_max`], so
//! exp(−U/T) has per-coordinate variance T·σᵢ². The sampler loop is the engine's: the integrator
//! gets ∇G̃ = ∇U/n (the gradient of the per-example mean loss), flat mass tensors, and
//! `StepCtx { lr, momentum_decay, timestep_factor, temperature, n, .. }`; `host.potential`
//! returns the exact U and ∇U (for Metropolis–Hastings and HMC). With `use_mass` the mass is
//! Mᵢ = (σ_max/σᵢ)² (minimum mass 1, as the paper normalises), which makes every coordinate
//! oscillate at the same frequency 1/σ_max; without it M = 1 and the conditioning spans
//! (σ_max/σ_min)².
//!
//! The chain starts at a stationary draw θ ~ N(0, T·σ²) (momenta as the integrator initialises
//! them) so that slowly mixing coordinates are unbiased from the first step. The draw is
//! stratified: within each σ group the host's normal draws are replaced by their normal scores,
//! scaled so the group's mean of θ²/(Tσ²) is exactly 1 at the start; coordinates too slow to
//! forget their start then add no error of their own (see `normal_scores`).
//!
//! # Statistics
//!
//! Per coordinate i the statistic is rᵢ = mean over recorded steps of θᵢ²/(T·σᵢ²) (known mean
//! 0), with E rᵢ = 1 for an exact sampler. Its standard error is estimated twice:
//! - batch means: the recorded steps are cut into `batches` consecutive batches; the variance of
//!   the batch means of coordinate i over batches / batches gives seᵢ², and the average over a
//!   group of independent coordinates has se = sqrt(Σ seᵢ²)/|g|. Valid when a batch is much
//!   longer than the autocorrelation time.
//! - spread over coordinates: the coordinates are independent under the target and the
//!   integrators are elementwise, so the rᵢ are independent; se = sd(rᵢ)/sqrt(|g|). Valid for
//!   any autocorrelation (because the chain starts stationary), conservative when the rᵢ have
//!   different means (e.g. a discretisation bias that depends on σ).
//!
//! The reported se is the larger of the two. The same statistics apply to the kinetic
//! temperature (mᵢ²/Mᵢ from [`crate::abi::IntegratorObj::kinetic`]) and, per group of
//! coordinates, to ranges of σ. The configurational temperature (1/d)·Σ θᵢ ∂ᵢU equals
//! T·mean(rᵢ) on this target and is reported as such.

use std::fmt;

use abi_stable::std_types::{ROption, RSlice, RVec};

use super::{PotentialFn, TestHost};
use crate::abi::{
    BinaryOp, IntegratorBox, ParamInfo, PriorBox, Role, StepCtx, StepReport, StepTensors, TensorId, UnaryOp,
};

/// A diagonal Gaussian target (see the module docs).
#[derive(Clone, Debug)]
pub struct GaussianTarget {
    /// Number of coordinates d.
    pub dim: usize,
    /// Smallest standard deviation σ.
    pub sigma_min: f64,
    /// Largest standard deviation σ.
    pub sigma_max: f64,
    /// Training-set size n in U = n·G̃ (the integrator receives ∇U/n).
    pub n: f64,
    /// Number of σ groups reported separately (contiguous ranges of the log-spaced σ).
    pub groups: usize,
}

impl GaussianTarget {
    /// σᵢ = σ_min·(σ_max/σ_min)^{i/(d−1)}.
    pub fn sigmas(&self) -> Vec<f64> {
        let d = self.dim.max(1);
        let ratio = self.sigma_max / self.sigma_min;
        (0..d)
            .map(|i| {
                let f = if d == 1 { 0.0 } else { i as f64 / (d - 1) as f64 };
                self.sigma_min * ratio.powf(f)
            })
            .collect()
    }

    /// Mᵢ = (σ_max/σᵢ)² with the mass on, 1 otherwise.
    pub fn mass(&self, use_mass: bool) -> Vec<f64> {
        self.sigmas().iter().map(|s| if use_mass { (self.sigma_max / s).powi(2) } else { 1.0 }).collect()
    }

    /// U(θ) = Σ θ²/(2σ²) and ∇U = θ/σ² (for `TestHost::set_potential`).
    pub fn potential_fn(&self) -> PotentialFn {
        let inv_var: Vec<f64> = self.sigmas().iter().map(|s| 1.0 / (s * s)).collect();
        Box::new(move |theta: &[f64]| {
            let grad: Vec<f64> = theta.iter().zip(&inv_var).map(|(t, w)| t * w).collect();
            let u = 0.5 * theta.iter().zip(&grad).map(|(t, g)| t * g).sum::<f64>();
            (u, grad)
        })
    }
}

/// How the sampler loop runs.
#[derive(Clone, Debug)]
pub struct SamplerSettings {
    /// T > 0 (the variance check divides by T).
    pub temperature: f64,
    /// Base learning rate ℓ (before the cyclical factor).
    pub lr: f64,
    /// Base momentum decay β (before the cyclical factor).
    pub momentum_decay: f64,
    /// Cyclical factor C (1 = constant step).
    pub timestep_factor: f64,
    /// Whether the mass Mᵢ = (σ_max/σᵢ)² is on (see the module docs).
    pub use_mass: bool,
    /// Steps before recording.
    pub burn_in: usize,
    /// Steps after burn-in (rounded down to a multiple of `batches`·`thin`).
    pub steps: usize,
    /// Record every `thin`-th step (≥ 1). Thinning below the autocorrelation time loses little
    /// information and saves the per-sample work.
    pub thin: usize,
    /// Number of batches for batch means (≥ 2).
    pub batches: usize,
    /// Seed of the initial draw's stream is the host's; this is only recorded in reports.
    pub label: String,
}

impl SamplerSettings {
    /// Settings with 500 burn-in steps, 4000 recorded steps, no thinning, 20 batches and no mass.
    pub fn new(temperature: f64, lr: f64, momentum_decay: f64) -> Self {
        Self {
            temperature,
            lr,
            momentum_decay,
            timestep_factor: 1.0,
            use_mass: false,
            burn_in: 500,
            steps: 4000,
            thin: 1,
            batches: 20,
            label: String::new(),
        }
    }
}

/// Mean and standard error of a statistic for one range of σ.
#[derive(Clone, Debug)]
pub struct GroupStat {
    /// Smallest σ of the group.
    pub sigma_lo: f64,
    /// Largest σ of the group.
    pub sigma_hi: f64,
    /// Mean of rᵢ = ⟨θᵢ²⟩/(Tσᵢ²) (1 for an exact sampler).
    pub var_ratio_mean: f64,
    /// Its standard error.
    pub var_ratio_se: f64,
    /// Mean of mᵢ²/Mᵢ over the group (temperature units), if the integrator has momenta.
    pub kinetic_t: Option<f64>,
    /// Standard error of the kinetic temperature.
    pub kinetic_t_se: Option<f64>,
}

/// Result of [`gaussian_target_temperature`] (statistics in the module docs).
#[derive(Clone, Debug)]
pub struct TemperatureCheck {
    /// The label of the settings (for reports).
    pub label: String,
    /// The temperature T of the run.
    pub temperature: f64,
    /// Recorded (thinned) steps.
    pub samples: usize,
    /// mean over coordinates of rᵢ = ⟨θᵢ²⟩/(T σᵢ²); 1 for an exact sampler.
    pub var_ratio_mean: f64,
    /// max(`var_ratio_se_batch`, `var_ratio_se_coords`).
    pub var_ratio_se: f64,
    /// Standard error from batch means.
    pub var_ratio_se_batch: f64,
    /// Standard error from the spread over coordinates.
    pub var_ratio_se_coords: f64,
    /// The same statistics per range of σ.
    pub groups: Vec<GroupStat>,
    /// (1/d) Σ ⟨mᵢ²/Mᵢ⟩, `None` without momenta.
    pub kinetic_t: Option<f64>,
    /// Standard error of the kinetic temperature.
    pub kinetic_t_se: Option<f64>,
    /// (1/d) Σ ⟨θᵢ ∂ᵢU⟩ = T·`var_ratio_mean` on this target.
    pub configurational_t: f64,
    /// Its standard error.
    pub configurational_t_se: f64,
    /// Mean Metropolis–Hastings acceptance over recorded steps (`None` if always NaN).
    pub acceptance_mean: Option<f64>,
}

impl TemperatureCheck {
    /// (var_ratio_mean − 1)/se.
    pub fn var_ratio_z(&self) -> f64 {
        (self.var_ratio_mean - 1.0) / self.var_ratio_se
    }

    /// (kinetic_t − expected)/se.
    pub fn kinetic_z(&self, expected: f64) -> Option<f64> {
        Some((self.kinetic_t? - expected) / self.kinetic_t_se?)
    }

    /// Every |z| ≤ `z_max`: the overall variance ratio, each σ group's, and (if `kinetic`
    /// is given) the kinetic temperature against that expected value.
    pub fn check(&self, z_max: f64, kinetic: Option<f64>) -> Result<(), String> {
        self.check_expected(z_max, 1.0, kinetic)
    }

    /// [`Self::check`] against an expected variance ratio other than 1 (a scheme with a known
    /// discretisation bias).
    pub fn check_expected(&self, z_max: f64, var_ratio: f64, kinetic: Option<f64>) -> Result<(), String> {
        let mut problems = Vec::new();
        let z = (self.var_ratio_mean - var_ratio) / self.var_ratio_se;
        if z.is_nan() || z.abs() > z_max {
            problems.push(format!(
                "variance ratio {:.4} ± {:.4}, expected {var_ratio:.4} (z = {z:.2})",
                self.var_ratio_mean, self.var_ratio_se
            ));
        }
        for g in &self.groups {
            let z = (g.var_ratio_mean - var_ratio) / g.var_ratio_se;
            if z.is_nan() || z.abs() > z_max {
                problems.push(format!(
                    "σ ∈ [{:.3e}, {:.3e}]: variance ratio {:.4} ± {:.4} (z = {z:.2})",
                    g.sigma_lo, g.sigma_hi, g.var_ratio_mean, g.var_ratio_se
                ));
            }
        }
        if let Some(expected) = kinetic {
            match self.kinetic_z(expected) {
                Some(z) if z.abs() <= z_max => {}
                Some(z) => problems.push(format!(
                    "kinetic temperature {:.5} ± {:.5}, expected {expected:.5} (z = {z:.2})",
                    self.kinetic_t.unwrap_or(f64::NAN),
                    self.kinetic_t_se.unwrap_or(f64::NAN)
                )),
                None => problems.push("no kinetic temperature (integrator has no momenta)".into()),
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!("{}: {}\n{self}", self.label, problems.join("; ")))
        }
    }
}

impl fmt::Display for TemperatureCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}] T={} samples={} var_ratio={:.4}±{:.4} (batch se {:.4}, coord se {:.4}, z={:.2})",
            self.label,
            self.temperature,
            self.samples,
            self.var_ratio_mean,
            self.var_ratio_se,
            self.var_ratio_se_batch,
            self.var_ratio_se_coords,
            self.var_ratio_z()
        )?;
        if let (Some(k), Some(s)) = (self.kinetic_t, self.kinetic_t_se) {
            write!(f, " T_kin={k:.5}±{s:.5} (T_kin/T={:.4})", k / self.temperature)?;
        }
        write!(f, " T_conf={:.5}±{:.5}", self.configurational_t, self.configurational_t_se)?;
        if let Some(a) = self.acceptance_mean {
            write!(f, " acceptance={a:.4}")?;
        }
        for g in &self.groups {
            write!(
                f,
                "\n    σ∈[{:.3e},{:.3e}] ratio={:.4}±{:.4}",
                g.sigma_lo, g.sigma_hi, g.var_ratio_mean, g.var_ratio_se
            )?;
            if let (Some(k), Some(s)) = (g.kinetic_t, g.kinetic_t_se) {
                write!(f, " T_kin={k:.5}±{s:.5}")?;
            }
        }
        Ok(())
    }
}

fn host_err<H: TestHost>(host: &mut H) -> Result<(), String> {
    match host.take_error() {
        Some(e) => Err(format!("host error: {e}")),
        None => Ok(()),
    }
}

/// The tensors of a chain on the Gaussian target.
struct Chain {
    params: TensorId,
    grad_scale: TensorId,
    mass: TensorId,
    mass_inv: TensorId,
    mass_sqrt: TensorId,
    mass_inv_sqrt: TensorId,
}

impl Chain {
    fn new<H: TestHost>(host: &mut H, target: &GaussianTarget, s: &SamplerSettings) -> Result<Self, String> {
        let d = target.dim as i64;
        let sig = target.sigmas();
        let mass = target.mass(s.use_mass);
        let t = s.temperature.max(0.0);
        let init_sd: Vec<f64> = sig.iter().map(|v| v * t.sqrt()).collect();
        let grad_scale: Vec<f64> = sig.iter().map(|v| 1.0 / (target.n * v * v)).collect();
        let sd = host.upload(&[d], &init_sd);
        let grad_scale = host.upload(&[d], &grad_scale);
        let mass_t = host.upload(&[d], &mass);
        let inv: Vec<f64> = mass.iter().map(|m| 1.0 / m).collect();
        let mass_inv = host.upload(&[d], &inv);
        let sq: Vec<f64> = mass.iter().map(|m| m.sqrt()).collect();
        let mass_sqrt = host.upload(&[d], &sq);
        let isq: Vec<f64> = mass.iter().map(|m| 1.0 / m.sqrt()).collect();
        let mass_inv_sqrt = host.upload(&[d], &isq);
        let xi = host.host_ref().randn_like(sd);
        host_err(host)?;
        let scores = normal_scores(&host.download(xi), target.groups.clamp(1, target.dim));
        host.host_ref().release(xi);
        let xi = host.upload(&[d], &scores);
        let params = {
            let mut h = host.host_ref();
            let p = h.binary(BinaryOp::Mul, xi, sd);
            h.release(xi);
            h.release(sd);
            p
        };
        host_err(host)?;
        Ok(Self { params, grad_scale, mass: mass_t, mass_inv, mass_sqrt, mass_inv_sqrt })
    }

    fn ctx(&self, target: &GaussianTarget, s: &SamplerSettings, step: u64) -> StepCtx {
        StepCtx {
            step,
            lr: s.lr,
            momentum_decay: s.momentum_decay,
            timestep_factor: s.timestep_factor,
            temperature: s.temperature,
            n: target.n,
            batch_size: 0, // exact gradients: the full training set, as the host says it
        }
    }

    /// One engine step: grad = ∇U/n at the current parameters, then the integrator.
    fn step<H: TestHost>(&self, host: &mut H, integ: &mut IntegratorBox, ctx: &StepCtx) -> Result<StepReport, String> {
        let result = {
            let mut h = host.host_ref();
            let grad = h.binary(BinaryOp::Mul, self.params, self.grad_scale);
            let t = StepTensors {
                params: self.params,
                grad,
                mass: self.mass,
                mass_inv: self.mass_inv,
                mass_sqrt: self.mass_sqrt,
                mass_inv_sqrt: self.mass_inv_sqrt,
                temperature: TensorId::INVALID,
            };
            let r = integ.step(&mut h, ctx, &t).into_result();
            h.release(grad);
            r
        };
        let r = result.map_err(|e| format!("step {}: {}", ctx.step, e.into_string()))?;
        host_err(host)?;
        Ok(r)
    }

    fn kinetic<H: TestHost>(&self, host: &mut H, integ: &IntegratorBox) -> Result<Option<TensorId>, String> {
        let r = integ
            .kinetic(&mut host.host_ref(), self.mass_inv)
            .into_result()
            .map_err(|e| format!("kinetic: {}", e.into_string()))?;
        host_err(host)?;
        Ok(match r {
            ROption::RSome(k) => Some(k),
            ROption::RNone => None,
        })
    }

    fn release<H: TestHost>(self, host: &mut H) {
        let mut h = host.host_ref();
        for id in [self.params, self.grad_scale, self.mass, self.mass_inv, self.mass_sqrt, self.mass_inv_sqrt] {
            h.release(id);
        }
    }
}

/// Φ⁻¹(p) (Acklam's rational approximation; absolute error below 1e-6, ample for scores
/// that are rescaled anyway).
fn inverse_normal_cdf(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.383_577_518_672_69e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] =
        [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155691131e1];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    const P_LOW: f64 = 0.02425;
    if p < P_LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p <= 1.0 - P_LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    }
}

/// Normal scores of `z` within each of `groups` contiguous groups: each value is replaced by
/// Φ⁻¹((rank + ½)/g) of its rank in its group, and the group is rescaled so that its mean
/// square is exactly 1. The initial draw keeps the host's randomness (which coordinate gets
/// which score) and N(0, 1) marginals, but a group's mean of θ²/(Tσ²) starts at exactly 1: a
/// coordinate that mixes too slowly to forget its start then adds no error of its own to the
/// variance check (only its spread, which widens the coordinate-spread se: conservative).
fn normal_scores(z: &[f64], groups: usize) -> Vec<f64> {
    let d = z.len();
    let mut out = vec![0.0; d];
    for g in 0..groups {
        let range = g * d / groups..(g + 1) * d / groups;
        let mut idx: Vec<usize> = range.collect();
        idx.sort_by(|&a, &b| z[a].total_cmp(&z[b]));
        let n = idx.len() as f64;
        let scores: Vec<f64> = (0..idx.len()).map(|k| inverse_normal_cdf((k as f64 + 0.5) / n)).collect();
        let ms = scores.iter().map(|s| s * s).sum::<f64>() / n;
        let c = if ms > 0.0 { 1.0 / ms.sqrt() } else { 1.0 };
        for (k, &i) in idx.iter().enumerate() {
            out[i] = scores[k] * c;
        }
    }
    out
}

/// Mean, batch-means se, coordinate-spread se of per-coordinate statistics.
/// `batches[k][i]` is the batch-k mean of coordinate i.
fn coord_stats(batches: &[Vec<f64>], range: std::ops::Range<usize>) -> (f64, f64, f64) {
    let b = batches.len() as f64;
    let g = range.len() as f64;
    let mut means = Vec::with_capacity(range.len());
    let mut var_sum = 0.0;
    for i in range {
        let r = batches.iter().map(|v| v[i]).sum::<f64>() / b;
        let var_b = batches.iter().map(|v| (v[i] - r).powi(2)).sum::<f64>() / (b - 1.0);
        var_sum += var_b / b;
        means.push(r);
    }
    let mean = means.iter().sum::<f64>() / g;
    let sd = (means.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (g - 1.0).max(1.0)).sqrt();
    (mean, var_sum.sqrt() / g, sd / g.sqrt())
}

/// Run `integrator` on the Gaussian target at `settings.temperature` and measure the
/// stationary variance ratio, kinetic and configurational temperatures (module docs).
///
/// Also checks the plumbing: parameters keep their shape, `kinetic` is shaped like the
/// parameters, the acceptance reported is NaN or in [0, 1], and host errors fail the check.
/// The integrator must be freshly built (this calls `init`).
pub fn gaussian_target_temperature<H: TestHost>(
    host: &mut H,
    integrator: &mut IntegratorBox,
    target: &GaussianTarget,
    settings: &SamplerSettings,
) -> Result<TemperatureCheck, String> {
    if settings.temperature <= 0.0 || settings.batches < 2 || target.dim < 2 || settings.thin < 1 {
        return Err("needs temperature > 0, batches >= 2, thin >= 1 and dim >= 2".into());
    }
    host.set_potential(Some(target.potential_fn()));
    let chain = Chain::new(host, target, settings)?;
    integrator
        .init(&mut host.host_ref(), chain.params)
        .into_result()
        .map_err(|e| format!("init: {}", e.into_string()))?;
    host_err(host)?;

    let per_batch = settings.steps / settings.thin / settings.batches;
    if per_batch == 0 {
        return Err("steps / thin must be at least `batches`".into());
    }
    let sampled = sample_batches(host, integrator, &chain, target, settings, per_batch)?;
    chain.release(host);
    host.set_potential(None);
    host_err(host)?;
    Ok(summarize(&sampled, target, settings, per_batch * settings.batches))
}

/// Run a batchable `integrator` on K = `temperatures.len()` stacked copies of the Gaussian target
/// ([K, d] tensors), chain k at temperature `temperatures[k]`, as the host runs batched cells: a
/// per-chain temperature tensor [K, 1] in `StepTensors::temperature` and the largest
/// temperature in `StepCtx::temperature`. Returns each chain's variance-ratio statistics (no
/// kinetic temperature), so that an integrator that takes its noise from the shared
/// `StepCtx::temperature` instead of the per-chain one fails at the colder chains.
pub fn batched_gaussian_target_temperatures<H: TestHost>(
    host: &mut H,
    integrator: &mut IntegratorBox,
    target: &GaussianTarget,
    settings: &SamplerSettings,
    temperatures: &[f64],
) -> Result<Vec<TemperatureCheck>, String> {
    let (k, d) = (temperatures.len(), target.dim);
    if k < 2 || temperatures.iter().any(|&t| t <= 0.0) || settings.batches < 2 || d < 2 || settings.thin < 1 {
        return Err("needs 2 or more temperatures > 0, batches >= 2, thin >= 1 and dim >= 2".into());
    }
    let per_batch = settings.steps / settings.thin / settings.batches;
    if per_batch == 0 {
        return Err("steps / thin must be at least `batches`".into());
    }
    let sig = target.sigmas();
    let mass = target.mass(settings.use_mass);
    let rows = |f: &dyn Fn(usize, usize) -> f64| -> Vec<f64> { (0..k * d).map(|j| f(j / d, j % d)).collect() };
    let shape = [k as i64, d as i64];
    let mut init = Vec::with_capacity(k * d);
    for &t in temperatures {
        let like = host.upload(&[d as i64], &vec![0.0; d]);
        let xi = host.host_ref().randn_like(like);
        host_err(host)?;
        let scores = normal_scores(&host.download(xi), target.groups.clamp(1, d));
        host.host_ref().release(xi);
        host.host_ref().release(like);
        init.extend(scores.iter().zip(&sig).map(|(z, s)| z * s * t.sqrt()));
    }
    let params = host.upload(&shape, &init);
    let grad_scale = host.upload(&shape, &rows(&|_, i| 1.0 / (target.n * sig[i] * sig[i])));
    let t = StepTensors {
        params,
        grad: TensorId::INVALID,
        mass: host.upload(&shape, &rows(&|_, i| mass[i])),
        mass_inv: host.upload(&shape, &rows(&|_, i| 1.0 / mass[i])),
        mass_sqrt: host.upload(&shape, &rows(&|_, i| mass[i].sqrt())),
        mass_inv_sqrt: host.upload(&shape, &rows(&|_, i| 1.0 / mass[i].sqrt())),
        temperature: host.upload(&[k as i64, 1], temperatures),
    };
    let s2 = host.host_ref().full_like(params, 0.0);
    integrator.init(&mut host.host_ref(), params).into_result().map_err(|e| format!("init: {}", e.into_string()))?;
    host_err(host)?;
    let hottest = temperatures.iter().copied().fold(0.0, f64::max);
    let mut batches: Vec<Vec<Vec<f64>>> = vec![Vec::new(); k];
    for step in 1..=(settings.burn_in + per_batch * settings.batches * settings.thin) {
        let ctx = StepCtx {
            step: step as u64,
            lr: settings.lr,
            momentum_decay: settings.momentum_decay,
            timestep_factor: settings.timestep_factor,
            temperature: hottest,
            n: target.n,
            batch_size: 0, // exact gradients: the full training set, as the host says it
        };
        let result = {
            let mut h = host.host_ref();
            let grad = h.binary(BinaryOp::Mul, params, grad_scale);
            let r = integrator.step(&mut h, &ctx, &StepTensors { grad, ..t }).into_result();
            h.release(grad);
            r
        };
        result.map_err(|e| format!("step {step}: {}", e.into_string()))?;
        host_err(host)?;
        if step <= settings.burn_in || !(step - settings.burn_in).is_multiple_of(settings.thin) {
            continue;
        }
        {
            let mut h = host.host_ref();
            let sq = h.unary(UnaryOp::Square, params);
            h.axpby(s2, 1.0, sq, 1.0);
            h.release(sq);
        }
        host_err(host)?;
        if ((step - settings.burn_in) / settings.thin).is_multiple_of(per_batch) {
            let v = host.download(s2);
            if v.len() != k * d {
                return Err(format!("parameters changed size: {} elements, expected {}", v.len(), k * d));
            }
            for (c, &t) in temperatures.iter().enumerate() {
                let row = &v[c * d..(c + 1) * d];
                batches[c].push(row.iter().zip(&sig).map(|(x, s)| x / (t * s * s) / per_batch as f64).collect());
            }
            host.host_ref().axpby(s2, 0.0, s2, 0.0);
        }
    }
    for id in [params, grad_scale, s2, t.mass, t.mass_inv, t.mass_sqrt, t.mass_inv_sqrt, t.temperature] {
        host.host_ref().release(id);
    }
    host_err(host)?;
    Ok(temperatures
        .iter()
        .zip(batches)
        .map(|(&t, ratio_batches)| {
            let sampled = Sampled { ratio_batches, kin_batches: Vec::new(), acceptance_mean: None };
            let mut s = settings.clone();
            s.temperature = t;
            s.label = format!("chain at T={t}");
            summarize(&sampled, target, &s, per_batch * settings.batches)
        })
        .collect())
}

/// The batch means of a run on the Gaussian target: per coordinate, θ²/(T σ²) and (when the
/// integrator reports it) the kinetic energy over T; and the mean acceptance.
struct Sampled {
    ratio_batches: Vec<Vec<f64>>,
    kin_batches: Vec<Vec<f64>>,
    acceptance_mean: Option<f64>,
}

/// Runs the burn-in and `settings.batches` batches of `per_batch` thinned samples, checking
/// the acceptance, the parameters' size and shape and that `kinetic` is always or never given.
fn sample_batches<H: TestHost>(
    host: &mut H,
    integrator: &mut IntegratorBox,
    chain: &Chain,
    target: &GaussianTarget,
    settings: &SamplerSettings,
    per_batch: usize,
) -> Result<Sampled, String> {
    let (t, d, thin) = (settings.temperature, target.dim, settings.thin);
    let recorded = per_batch * settings.batches;
    let (s2, kin) = {
        let mut h = host.host_ref();
        (h.full_like(chain.params, 0.0), h.full_like(chain.params, 0.0))
    };
    let scale: Vec<f64> = target.sigmas().iter().map(|s| 1.0 / (t * s * s)).collect();
    let mut out = Sampled { ratio_batches: Vec::new(), kin_batches: Vec::new(), acceptance_mean: None };
    let mut has_kinetic = None;
    let (mut acc_sum, mut acc_n) = (0.0, 0usize);
    for step in 1..=(settings.burn_in + recorded * thin) {
        let ctx = chain.ctx(target, settings, step as u64);
        let rep = chain.step(host, integrator, &ctx)?;
        if !rep.acceptance.is_nan() && !(0.0..=1.0).contains(&rep.acceptance) {
            return Err(format!("step {step}: acceptance {} is outside [0, 1]", rep.acceptance));
        }
        if step <= settings.burn_in {
            continue;
        }
        if !rep.acceptance.is_nan() {
            acc_sum += rep.acceptance;
            acc_n += 1;
        }
        if !(step - settings.burn_in).is_multiple_of(thin) {
            continue;
        }
        let k = chain.kinetic(host, integrator)?;
        accumulate(host, chain.params, k, s2, kin)?;
        match (has_kinetic, k.is_some()) {
            (None, v) => has_kinetic = Some(v),
            (Some(a), b) if a != b => return Err("kinetic is sometimes None".into()),
            _ => {}
        }
        if ((step - settings.burn_in) / thin).is_multiple_of(per_batch) {
            let v = host.download(s2);
            if v.len() != d {
                return Err(format!("parameters changed size: {} elements, expected {d}", v.len()));
            }
            out.ratio_batches.push(v.iter().zip(&scale).map(|(x, c)| x * c / per_batch as f64).collect());
            if has_kinetic == Some(true) {
                let kv = host.download(kin);
                if kv.len() != d {
                    return Err(format!("kinetic has {} elements, expected {d}", kv.len()));
                }
                if let Some(x) = kv.iter().find(|&&x| x < 0.0) {
                    return Err(format!("kinetic energies summed to {x} < 0 (m⊙M⁻¹m is never negative)"));
                }
                out.kin_batches.push(kv.iter().map(|x| x / (t * per_batch as f64)).collect());
            }
            let mut h = host.host_ref();
            h.axpby(s2, 0.0, s2, 0.0);
            h.axpby(kin, 0.0, kin, 0.0);
        }
    }
    let shape = host.host_ref().shape(chain.params).into_vec();
    if shape != vec![d as i64] {
        return Err(format!("parameters changed shape to {shape:?}"));
    }
    let mut h = host.host_ref();
    h.release(s2);
    h.release(kin);
    out.acceptance_mean = (acc_n > 0).then(|| acc_sum / acc_n as f64);
    Ok(out)
}

/// Adds θ² to `s2` and the kinetic energies `k` (if any, then released) to `kin`.
fn accumulate<H: TestHost>(
    host: &mut H,
    params: TensorId,
    k: Option<TensorId>,
    s2: TensorId,
    kin: TensorId,
) -> Result<(), String> {
    {
        let mut h = host.host_ref();
        let sq = h.unary(UnaryOp::Square, params);
        h.axpby(s2, 1.0, sq, 1.0);
        h.release(sq);
        if let Some(k) = k {
            h.axpby(kin, 1.0, k, 1.0);
            h.release(k);
        }
    }
    host_err(host)
}

/// The check's statistics from the batch means: overall and per σ group, with standard
/// errors from the batch means and from the spread over coordinates (the larger is reported).
fn summarize(
    sampled: &Sampled,
    target: &GaussianTarget,
    settings: &SamplerSettings,
    recorded: usize,
) -> TemperatureCheck {
    let (t, d) = (settings.temperature, target.dim);
    let (ratio_batches, kin_batches) = (&sampled.ratio_batches, &sampled.kin_batches);
    let sig = target.sigmas();
    let (mean, se_b, se_c) = coord_stats(ratio_batches, 0..d);
    let kinetic = (!kin_batches.is_empty()).then(|| coord_stats(kin_batches, 0..d));
    let ng = target.groups.clamp(1, d);
    let groups = (0..ng)
        .map(|g| {
            let range = g * d / ng..(g + 1) * d / ng;
            let (m, b, c) = coord_stats(ratio_batches, range.clone());
            let k = (!kin_batches.is_empty()).then(|| coord_stats(kin_batches, range.clone()));
            GroupStat {
                sigma_lo: sig[range.start],
                sigma_hi: sig[range.end - 1],
                var_ratio_mean: m,
                var_ratio_se: b.max(c),
                kinetic_t: k.map(|k| k.0 * t),
                kinetic_t_se: k.map(|k| k.1.max(k.2) * t),
            }
        })
        .collect();
    TemperatureCheck {
        label: settings.label.clone(),
        temperature: t,
        samples: recorded,
        var_ratio_mean: mean,
        var_ratio_se: se_b.max(se_c),
        var_ratio_se_batch: se_b,
        var_ratio_se_coords: se_c,
        groups,
        kinetic_t: kinetic.map(|k| k.0 * t),
        kinetic_t_se: kinetic.map(|k| k.1.max(k.2) * t),
        configurational_t: mean * t,
        configurational_t_se: se_b.max(se_c) * t,
        acceptance_mean: sampled.acceptance_mean,
    }
}

/// Run `steps` steps and return the final parameters and kinetic energies.
fn short_run<H: TestHost>(
    host: &mut H,
    integrator: &mut IntegratorBox,
    target: &GaussianTarget,
    settings: &SamplerSettings,
    steps: usize,
) -> Result<(Vec<f64>, Option<Vec<f64>>), String> {
    host.set_potential(Some(target.potential_fn()));
    let chain = Chain::new(host, target, settings)?;
    integrator
        .init(&mut host.host_ref(), chain.params)
        .into_result()
        .map_err(|e| format!("init: {}", e.into_string()))?;
    host_err(host)?;
    for step in 1..=steps {
        let ctx = chain.ctx(target, settings, step as u64);
        chain.step(host, integrator, &ctx)?;
    }
    let p = host.download(chain.params);
    let k = chain.kinetic(host, integrator)?.map(|k| {
        let v = host.download(k);
        host.host_ref().release(k);
        v
    });
    chain.release(host);
    host.set_potential(None);
    host_err(host)?;
    Ok((p, k))
}

/// Result of [`determinism_check`].
#[derive(Clone, Debug)]
pub struct DeterminismCheck {
    /// Two runs with the same host seed gave bitwise identical parameters and momenta.
    pub same_seed_identical: bool,
    /// A run with another seed gave different parameters (the noise comes from the host).
    pub other_seed_differs: bool,
}

/// Seed invariance: `steps` steps from a fresh host seeded `seed` twice, and once with
/// `seed + 1`. Bitwise comparison: the host owns the random stream, so a plugin that draws its
/// own randomness or keeps hidden global state fails `same_seed_identical`.
pub fn determinism_check<H: TestHost>(
    mut make_host: impl FnMut(u64) -> H,
    mut make_integrator: impl FnMut() -> Result<IntegratorBox, String>,
    target: &GaussianTarget,
    settings: &SamplerSettings,
    seed: u64,
    steps: usize,
) -> Result<DeterminismCheck, String> {
    let mut run = |s: u64| {
        let mut host = make_host(s);
        let mut integ = make_integrator()?;
        short_run(&mut host, &mut integ, target, settings, steps)
    };
    let a = run(seed)?;
    let b = run(seed)?;
    let c = run(seed + 1)?;
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let same = bits(&a.0) == bits(&b.0) && a.1.as_deref().map(bits) == b.1.as_deref().map(bits);
    Ok(DeterminismCheck { same_seed_identical: same, other_seed_differs: bits(&a.0) != bits(&c.0) })
}

/// `rescale_momenta` multiplies the momenta and nothing else: after `steps` steps, rescaling
/// by a non-uniform factor f leaves the parameters bitwise unchanged and turns the kinetic
/// energy mᵢ²/Mᵢ into fᵢ²·mᵢ²/Mᵢ (relative tolerance 1e-12). A second step afterwards must
/// succeed. Integrators without momenta must leave the parameters unchanged.
pub fn rescale_check<H: TestHost>(
    host: &mut H,
    integrator: &mut IntegratorBox,
    target: &GaussianTarget,
    settings: &SamplerSettings,
    steps: usize,
) -> Result<(), String> {
    host.set_potential(Some(target.potential_fn()));
    let chain = Chain::new(host, target, settings)?;
    integrator
        .init(&mut host.host_ref(), chain.params)
        .into_result()
        .map_err(|e| format!("init: {}", e.into_string()))?;
    for step in 1..=steps {
        let ctx = chain.ctx(target, settings, step as u64);
        chain.step(host, integrator, &ctx)?;
    }
    let read_k = |host: &mut H, integ: &IntegratorBox| -> Result<Option<Vec<f64>>, String> {
        Ok(chain.kinetic(host, integ)?.map(|k| {
            let v = host.download(k);
            host.host_ref().release(k);
            v
        }))
    };
    let p0 = host.download(chain.params);
    let k0 = read_k(host, integrator)?;
    let f: Vec<f64> = (0..target.dim).map(|i| 0.5 + (i % 7) as f64 * 0.25).collect();
    let ft = host.upload(&[target.dim as i64], &f);
    integrator
        .rescale_momenta(&mut host.host_ref(), ft)
        .into_result()
        .map_err(|e| format!("rescale_momenta: {}", e.into_string()))?;
    host.host_ref().release(ft);
    host_err(host)?;
    let p1 = host.download(chain.params);
    if p0.iter().zip(&p1).any(|(a, b)| a.to_bits() != b.to_bits()) {
        return Err("rescale_momenta changed the parameters".into());
    }
    let k1 = read_k(host, integrator)?;
    if let (Some(k0), Some(k1)) = (&k0, &k1) {
        for (i, ((a, b), fi)) in k0.iter().zip(k1).zip(&f).enumerate() {
            let want = a * fi * fi;
            if (b - want).abs() > 1e-12 * want.abs().max(1e-300) {
                return Err(format!("element {i}: kinetic {b} after rescaling by {fi}, expected {want}"));
            }
        }
    }
    let ctx = chain.ctx(target, settings, steps as u64 + 1);
    chain.step(host, integrator, &ctx)?;
    chain.release(host);
    host.set_potential(None);
    host_err(host)
}

/// A [`ParamInfo`] for tests.
pub fn param_info(name: &str, role: Role, shape: &[i64], fan_in: i64, fan_out: i64, offset: i64) -> ParamInfo {
    ParamInfo {
        name: name.into(),
        layer: name.rsplit_once('.').map_or(name, |(l, _)| l).into(),
        role,
        shape: RVec::from(shape.to_vec()),
        fan_in,
        fan_out,
        offset,
        numel: shape.iter().product(),
        #[cfg(feature = "abi-mismatch-for-tests")]
        extra_field_for_tests: 0,
    }
}

/// Upload `tensors`, run `call` with their handles and descriptions, release the uploads; a
/// host error recorded on the way is an error.
fn with_uploaded<H: TestHost, R>(
    host: &mut H,
    tensors: &[(ParamInfo, Vec<f64>)],
    call: impl FnOnce(&mut H, &[TensorId], &[ParamInfo]) -> Result<R, String>,
) -> Result<R, String> {
    let ids: Vec<TensorId> = tensors.iter().map(|(info, data)| host.upload(&info.shape, data)).collect();
    let infos: Vec<ParamInfo> = tensors.iter().map(|(i, _)| i.clone()).collect();
    let out = call(host, &ids, &infos);
    {
        let mut h = host.host_ref();
        for id in ids {
            h.release(id);
        }
    }
    host_err(host)?;
    out
}

/// log p(θ) of a boxed prior for tensors given as (info, data); host errors are errors.
pub fn prior_log_prob<H: TestHost>(
    host: &mut H,
    prior: &PriorBox,
    tensors: &[(ParamInfo, Vec<f64>)],
) -> Result<f64, String> {
    with_uploaded(host, tensors, |host, ids, infos| {
        let id = prior
            .log_prob(&mut host.host_ref(), RSlice::from_slice(ids), RSlice::from_slice(infos))
            .into_result()
            .map_err(|e| format!("log_prob: {}", e.into_string()))?;
        let mut h = host.host_ref();
        let shape = h.shape(id).into_vec();
        if !shape.is_empty() {
            h.release(id);
            return Err(format!("log_prob returned shape {shape:?}, expected a 0-d tensor (end with .sum())"));
        }
        let v = h.item(id);
        h.release(id);
        Ok(v)
    })
}

/// Result of [`prior_logprob_check`].
#[derive(Clone, Debug)]
pub struct LogProbCheck {
    /// log p as computed by the prior.
    pub value: f64,
    /// The value it was compared with.
    pub expected: f64,
    /// Kick coefficient a (of the gradient g).
    pub abs_err: f64,
}

/// log p(θ) against a value computed independently by the test (e.g. a closed form), with
/// tolerance `rel_tol`·max(1, |expected|). Also checks that the value is finite and 0-d.
pub fn prior_logprob_check<H: TestHost>(
    host: &mut H,
    prior: &PriorBox,
    tensors: &[(ParamInfo, Vec<f64>)],
    expected: f64,
    rel_tol: f64,
) -> Result<LogProbCheck, String> {
    let value = prior_log_prob(host, prior, tensors)?;
    let abs_err = (value - expected).abs();
    if !value.is_finite() || abs_err > rel_tol * expected.abs().max(1.0) {
        return Err(format!("log_prob {value} differs from the expected {expected} by {abs_err:e}"));
    }
    Ok(LogProbCheck { value, expected, abs_err })
}

/// Central finite differences of log p with respect to every element: (f(x+ε) − f(x−ε))/(2ε),
/// error O(ε²·f'''). For comparing against a closed-form gradient (or the host's autograd).
pub fn finite_difference_log_prob_grad<H: TestHost>(
    host: &mut H,
    prior: &PriorBox,
    tensors: &[(ParamInfo, Vec<f64>)],
    eps: f64,
) -> Result<Vec<Vec<f64>>, String> {
    let mut work: Vec<(ParamInfo, Vec<f64>)> = tensors.to_vec();
    let mut out = Vec::with_capacity(tensors.len());
    for t in 0..tensors.len() {
        let mut g = Vec::with_capacity(tensors[t].1.len());
        for i in 0..tensors[t].1.len() {
            let x = tensors[t].1[i];
            work[t].1[i] = x + eps;
            let up = prior_log_prob(host, prior, &work)?;
            work[t].1[i] = x - eps;
            let down = prior_log_prob(host, prior, &work)?;
            work[t].1[i] = x;
            g.push((up - down) / (2.0 * eps));
        }
        out.push(g);
    }
    Ok(out)
}

/// The prior's closed-form ∇ log p per tensor (`None` if it has none), as f64 data. Compare
/// it with [`finite_difference_log_prob_grad`]: the host trusts it in place of autograd.
pub fn prior_grad_log_prob<H: TestHost>(
    host: &mut H,
    prior: &PriorBox,
    tensors: &[(ParamInfo, Vec<f64>)],
) -> Result<Option<Vec<Vec<f64>>>, String> {
    with_uploaded(host, tensors, |host, ids, infos| {
        let grads = prior
            .grad_log_prob(&mut host.host_ref(), RSlice::from_slice(ids), RSlice::from_slice(infos))
            .into_result()
            .map_err(|e| format!("grad_log_prob: {}", e.into_string()))?;
        let abi_stable::std_types::ROption::RSome(grads) = grads else {
            return Ok(None);
        };
        let mut out = Ok(Vec::with_capacity(grads.len()));
        for (g, (info, _)) in grads.iter().zip(tensors) {
            let shape = host.host_ref().shape(*g).into_vec();
            if shape != info.shape.as_slice() {
                out = Err(format!("grad_log_prob gave shape {shape:?} for `{}` of shape {:?}", info.name, info.shape));
            } else if let Ok(v) = out.as_mut() {
                v.push(host.download(*g));
            }
            host.host_ref().release(*g);
        }
        out.map(Some)
    })
}

/// Moments of pooled prior draws, with standard errors.
#[derive(Clone, Debug)]
pub struct SampleMoments {
    /// Number of pooled elements.
    pub draws: usize,
    /// Sample mean.
    pub mean: f64,
    /// Standard error of the mean: sqrt(var/N).
    pub mean_se: f64,
    /// Sample variance (1/N normalisation).
    pub var: f64,
    /// Standard error of the variance: sqrt((m₄ − var²)/N), m₄ the fourth central moment.
    pub var_se: f64,
    /// Every draw had the shape of `like`.
    pub shape_ok: bool,
}

/// Draw `repeats` times from `prior.sample(info, like)` (with `like` shaped `info.shape`) and
/// pool the elements, assumed iid. `None` if the prior does not cover `info.role`.
pub fn prior_sample_moments<H: TestHost>(
    host: &mut H,
    prior: &PriorBox,
    info: &ParamInfo,
    repeats: usize,
) -> Result<Option<SampleMoments>, String> {
    let numel: i64 = info.shape.iter().product();
    let like = host.upload(&info.shape, &vec![0.0; numel.max(0) as usize]);
    let mut all = Vec::new();
    let mut shape_ok = true;
    for _ in 0..repeats {
        let r = prior
            .sample(&mut host.host_ref(), info, like)
            .into_result()
            .map_err(|e| format!("sample: {}", e.into_string()))?;
        host_err(host)?;
        match r {
            ROption::RNone => {
                host.host_ref().release(like);
                return Ok(None);
            }
            ROption::RSome(id) => {
                shape_ok &= host.host_ref().shape(id).as_slice() == info.shape.as_slice();
                all.extend(host.download(id));
                host.host_ref().release(id);
            }
        }
    }
    host.host_ref().release(like);
    host_err(host)?;
    let n = all.len() as f64;
    let mean = all.iter().sum::<f64>() / n;
    let var = all.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    let m4 = all.iter().map(|x| (x - mean).powi(4)).sum::<f64>() / n;
    Ok(Some(SampleMoments {
        draws: all.len(),
        mean,
        mean_se: (var / n).sqrt(),
        var,
        var_se: ((m4 - var * var).max(0.0) / n).sqrt(),
        shape_ok,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{prior_box, CpuHost};
    use crate::{Factory, Ops, ParamSpec, Params, Prior, Tensor};

    /// N(0, s²) on every tensor, for exercising the prior checks.
    struct ToyGaussian {
        scale: f64,
    }

    impl Factory for ToyGaussian {
        const NAME: &'static str = "toy-gaussian";
        const DESCRIPTION: &'static str = "test prior";
        fn params() -> Vec<ParamSpec> {
            vec![ParamSpec::float("scale", 1.0, "sd").at_least(1e-12)]
        }
        fn new(p: &Params) -> Result<Self, String> {
            Ok(Self { scale: p.f64("scale") })
        }
    }

    impl Prior for ToyGaussian {
        fn log_prob<'o>(
            &self,
            _ops: Ops<'o>,
            params: &[Tensor<'o>],
            _infos: &[ParamInfo],
        ) -> Result<Tensor<'o>, String> {
            let s = self.scale;
            let c = -0.5 * (2.0 * std::f64::consts::PI * s * s).ln();
            let mut total: Option<Tensor<'o>> = None;
            for p in params {
                let numel: i64 = p.shape().iter().product();
                let lp = (p.square() * (-0.5 / (s * s))).sum() + c * numel as f64;
                total = Some(match total {
                    Some(t) => t + lp,
                    None => lp,
                });
            }
            total.ok_or_else(|| "no parameters".to_owned())
        }
        fn sample<'o>(&self, ops: Ops<'o>, info: &ParamInfo, like: &Tensor<'o>) -> Result<Option<Tensor<'o>>, String> {
            Ok((info.role != Role::Norm).then(|| ops.randn_like(like) * self.scale))
        }
    }

    #[test]
    fn prior_checks_on_a_closed_form_prior() {
        let mut host = CpuHost::new(2);
        let prior = prior_box::<ToyGaussian>(r#"{"scale": 0.5}"#).unwrap();
        let w = param_info("fc1.weight", Role::Weight, &[2, 3], 3, 2, 0);
        let b = param_info("fc1.bias", Role::Bias, &[2], 3, 2, 6);
        let wd = vec![0.1, -0.2, 0.3, 0.0, 1.0, -1.5];
        let bd = vec![0.25, -0.75];
        let tensors = vec![(w.clone(), wd.clone()), (b, bd.clone())];
        let all: Vec<f64> = wd.iter().chain(&bd).copied().collect();
        let expected =
            all.iter().map(|x| -0.5 * x * x / 0.25 - 0.5 * (2.0 * std::f64::consts::PI * 0.25).ln()).sum::<f64>();
        let c = prior_logprob_check(&mut host, &prior, &tensors, expected, 1e-12).unwrap();
        assert!(c.abs_err < 1e-12);
        let g = finite_difference_log_prob_grad(&mut host, &prior, &tensors, 1e-5).unwrap();
        for (gi, xi) in g.concat().iter().zip(&all) {
            assert!((gi + xi / 0.25).abs() < 1e-6, "{gi} vs {}", -xi / 0.25);
        }
        let m = prior_sample_moments(&mut host, &prior, &w, 2000).unwrap().unwrap();
        assert!(m.shape_ok);
        assert!(m.mean.abs() < 4.0 * m.mean_se, "{m:?}");
        assert!((m.var - 0.25).abs() < 4.0 * m.var_se, "{m:?}");
        let norm = param_info("bn.scale", Role::Norm, &[4], 0, 0, 8);
        assert!(prior_sample_moments(&mut host, &prior, &norm, 3).unwrap().is_none());
        assert_eq!(host.live_tensors(), 0, "the checks release what they create");
    }

    #[test]
    fn normal_scores_have_unit_mean_square_per_group() {
        assert!((inverse_normal_cdf(0.975) - 1.959963984540054).abs() < 1e-6);
        assert!((inverse_normal_cdf(0.01) + 2.326347874040841).abs() < 1e-6);
        let z: Vec<f64> = (0..100).map(|i| ((i * 37) % 100) as f64).collect();
        let s = normal_scores(&z, 4);
        for g in 0..4 {
            let ms = s[g * 25..(g + 1) * 25].iter().map(|x| x * x).sum::<f64>() / 25.0;
            assert!((ms - 1.0).abs() < 1e-12);
        }
        // Ranks are kept: the largest draw of a group gets its largest score.
        let (imax, _) = z[..25].iter().enumerate().fold((0, f64::MIN), |a, (i, &v)| if v > a.1 { (i, v) } else { a });
        assert!(s[..25].iter().all(|&v| v <= s[imax]));
    }

    #[test]
    fn with_ops_runs_author_code() {
        let mut host = CpuHost::new(0);
        let x = host.insert(&[3], &[1.0, 4.0, 9.0]);
        let y = host.with_ops(|ops| {
            let t = ops.borrow(x);
            (t.sqrt() * 2.0 + 1.0).into_id()
        });
        assert_eq!(host.get(y), &[3.0, 5.0, 7.0]);
        let e = host.with_ops(|ops| {
            let _bad = ops.borrow(TensorId(999)).exp();
            ops.check()
        });
        assert!(e.unwrap_err().contains("unknown tensor id 999"));
    }
}
