//! Conjugate Bayesian linear regression through the engine's chain loop: the chain must sample
//! the analytic posterior N(μ, Λ⁻¹) at T = 1 and the analytic tempered posterior N(μ, T·Λ⁻¹) at
//! T = 0.1; and at T = 0 the paper's integrator must be SGD with heavy-ball momentum, exactly.
//!
//! Model: y = Xw + ε, ε ~ N(0, s²), prior w ~ N(0, τ² I); U(w) = Σᵢ (yᵢ − xᵢᵀw)²/(2s²) +
//! |w|²/(2τ²), Λ = XᵀX/s² + I/τ², μ = Λ⁻¹Xᵀy/s².
//!
//! Statistics: samples are whitened, z = Lᵀ(w − μ)/sqrt(T) with Λ = LLᵀ, so z ~ N(0, I) under the
//! target; E[z] = 0 and E[zzᵀ] = I are checked entry by entry with standard errors from 20
//! batch means (each batch spans many autocorrelation times), at 4.5 SE.
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod common;

use ablate_engine::chain::{ChainSettings, Gradient, Objective};
use ablate_engine::compute::Compute;
use ablate_engine::host::TchHost;
use ablate_grid::config::Precision;
use ablate_sdk::{ParamInfo, Role};
use common::*;
use tch::{Device, Kind, Tensor};

struct Regression {
    x: Tensor,
    y: Tensor,
    s2: f64,
    tau2: f64,
    infos: Vec<ParamInfo>,
    /// Deterministic minibatch stream: batch j uses rows (j·b .. j·b+b) mod N.
    cursor: i64,
    /// The arithmetic of the model's products Xw and Xᵀr: `None` = float64 (exact reference);
    /// otherwise float32 in the engine's compute mode (bf16 autocast for `Bf16`).
    arith: Option<Precision>,
    /// Where the float32 products run (the sampler itself stays on the CPU).
    product_device: Device,
}

impl Regression {
    /// The data come from a private generator, not libtorch's global one: the tests of this file
    /// run in parallel threads, and the T = 0 test rebuilds the same problem twice.
    fn new(n: i64, d: i64) -> Self {
        let mut normals = normals(3);
        let mut draw = |len: i64| Tensor::from_slice(&(0..len).map(|_| normals()).collect::<Vec<f64>>());
        let x = draw(n * d).reshape([n, d]);
        let w_true = draw(d);
        let y = x.matmul(&w_true) + draw(n) * 0.5;
        let infos = vec![ParamInfo::new("w.weight", "w", Role::Weight, &[d], d, 1, 0)];
        Self { x, y, s2: 0.25, tau2: 1.0, infos, cursor: 0, arith: None, product_device: Device::Cpu }
    }
    fn precision(&self) -> Tensor {
        let d = self.x.size()[1];
        self.x.tr().matmul(&self.x) / self.s2 + Tensor::eye(d, (Kind::Double, Device::Cpu)) / self.tau2
    }
    fn mean(&self) -> Tensor {
        let rhs = self.x.tr().matmul(&self.y) / self.s2;
        Tensor::linalg_solve(&self.precision(), &rhs, true)
    }
    fn rows(&mut self, batch: u64) -> (Tensor, Tensor) {
        let n = self.x.size()[0];
        if batch == 0 {
            return (self.x.shallow_clone(), self.y.shallow_clone());
        }
        let idx =
            Tensor::arange_start(self.cursor, self.cursor + batch as i64, (Kind::Int64, Device::Cpu)).remainder(n);
        self.cursor = (self.cursor + batch as i64) % n;
        (self.x.index_select(0, &idx), self.y.index_select(0, &idx))
    }
}

/// Standard normal draws (xorshift64* + Box–Muller), deterministic per seed.
fn normals(seed: u64) -> impl FnMut() -> f64 {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut uniform = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        ((state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    move || (-2.0 * uniform().ln()).sqrt() * (2.0 * std::f64::consts::PI * uniform()).cos()
}

impl Objective for Regression {
    fn infos(&self) -> &[ParamInfo] {
        &self.infos
    }
    fn dim(&self) -> i64 {
        self.x.size()[1]
    }
    fn n(&self) -> f64 {
        self.x.size()[0] as f64
    }
    fn device(&self) -> Device {
        Device::Cpu
    }
    /// ∇G̃ = −(1/b) Xᵦᵀ(yᵦ − Xᵦw)/s² + w/(n τ²).
    fn gradient(
        &mut self,
        _: &mut TchHost<'_>,
        theta: &Tensor,
        batch: u64,
        _: bool,
    ) -> Result<Gradient, ablate_engine::EngineError> {
        let _guard = tch::no_grad_guard();
        let (xb, yb) = self.rows(batch);
        let b = xb.size()[0] as f64;
        let w = theta.to_kind(Kind::Double);
        let data_grad = |xb: &Tensor, yb: &Tensor, w: &Tensor| {
            let resid = yb - xb.matmul(w);
            (xb.tr().matmul(&resid), resid)
        };
        let (xtr, resid) = match self.arith {
            None => data_grad(&xb, &yb, &w),
            Some(precision) => {
                // The products in the engine's compute mode, as a network's forward and backward.
                let dev = self.product_device;
                let _scope = Compute { precision, channels_last: false }.scope(dev).unwrap();
                let f32_on = |t: &Tensor| t.to_kind(Kind::Float).to_device(dev);
                let (xtr, resid) = data_grad(&f32_on(&xb), &f32_on(&yb), &f32_on(theta));
                (xtr.to_device(Device::Cpu).to_kind(Kind::Double), resid.to_device(Device::Cpu).to_kind(Kind::Double))
            }
        };
        let grad = -xtr / (b * self.s2) + &w / (self.n() * self.tau2);
        let loss_sum = resid.square().sum(Kind::Double) / (2.0 * self.s2);
        Ok(Gradient { grad: grad.to_kind(theta.kind()), loss_sum, correct: None, count: b as i64 })
    }
}

/// The posterior check with the model's products in `arith` (None: float64) on `device`.
fn posterior_check(temperature: f64, arith: Option<Precision>, device: Device) {
    let mut problem = Regression::new(200, 4);
    problem.arith = arith;
    problem.product_device = device;
    if let Some(precision) = arith {
        // The process-wide switch of the mode (TF32 on CUDA), once, as a run sets it.
        Compute { precision, channels_last: false }.configure(device).unwrap();
    }
    let mu = problem.mean();
    let precision = problem.precision();
    // Full-batch gradients: the comparison is with the exact posterior, free of minibatch noise.
    // h = sqrt(lr/n) = 0.0022 against ω_max = sqrt(λ_max(Λ)) ≈ 33: h·ω_max ≈ 0.07.
    let settings =
        ChainSettings { lr: 1e-3, momentum_decay: 0.95, batch_size: 0, layerwise_mass: false, precond_batches: 1 };
    let (epochs, spe) = (22u64, 5000u64);
    let protocol = protocol(epochs as usize, spe, temperature);
    tch::manual_seed(11);
    let theta = (mu.to_kind(Kind::Float)).detach();
    let mut rec = Recorder::new(2 * spe, 20, spe, true);
    let out = chain(&mut problem, &theta, "sym-euler", &protocol, &settings, &mut rec);
    assert_eq!(out.status, ablate_engine::ChainStatus::Done);

    // Whitening: Λ = L Lᵀ  ⇒  z = Lᵀ (w − μ) / sqrt(T) ~ N(0, I).
    let l = precision.linalg_cholesky(false);
    let d = mu.size()[0];
    let steps = spe as f64;
    let (mut z_means, mut z_outer) = (Vec::new(), Vec::new());
    for b in 0..rec.lin.len() {
        let m = &rec.lin[b] / steps; // E[w] in batch b
        let s = &rec.outer[b] / steps; // E[w wᵀ]
                                       // E[(w−μ)(w−μ)ᵀ] = E[wwᵀ] − E[w]μᵀ − μE[w]ᵀ + μμᵀ
        let centred = &s - m.unsqueeze(1).matmul(&mu.unsqueeze(0)) - mu.unsqueeze(1).matmul(&m.unsqueeze(0))
            + mu.unsqueeze(1).matmul(&mu.unsqueeze(0));
        z_means.push(l.tr().matmul(&(&m - &mu)) / temperature.sqrt());
        z_outer.push(l.tr().matmul(&centred).matmul(&l) / temperature);
    }
    let nb = z_means.len();
    for i in 0..d {
        let vals: Vec<f64> = z_means.iter().map(|z| z.double_value(&[i])).collect();
        let (m, se) = mean_se(&vals);
        assert!(m.abs() < 4.5 * se, "T={temperature}: E[z_{i}] = {m} ± {se}");
        for j in 0..d {
            let vals: Vec<f64> = z_outer.iter().map(|z| z.double_value(&[i, j])).collect();
            let (m, se) = mean_se(&vals);
            let want = if i == j { 1.0 } else { 0.0 };
            eprintln!("T={temperature} cov_z[{i},{j}] = {m:.4} ± {se:.4} (want {want})");
            assert!(
                (m - want).abs() < 4.5 * se,
                "T={temperature}: E[z_{i} z_{j}] = {m} ± {se}, want {want} ({nb} batches)"
            );
        }
    }
}

#[test]
fn samples_the_analytic_posterior_at_t1() {
    posterior_check(1.0, None, Device::Cpu);
}

#[test]
fn samples_the_analytic_tempered_posterior_at_t0_1() {
    posterior_check(0.1, None, Device::Cpu);
}

/// The `bf16` compute mode (the model's products under bf16 autocast, everything the sampler
/// holds in fp32) still samples the analytic posterior at the same 4.5-SE tolerance: rounding
/// the products' inputs to 8 mantissa bits moves the posterior by far less than its width here
/// (|w| ~ 1 rounds in steps of 2^-8 ≈ 0.004, a tenth of the posterior sd ≈ 0.035). A sampler that
/// kept θ or the momenta in bf16 would lose the O(h) updates and fail this test.
#[test]
fn bf16_products_sample_the_analytic_posterior_at_t1() {
    posterior_check(1.0, Some(Precision::Bf16), Device::Cpu);
}

#[test]
fn bf16_products_sample_the_analytic_tempered_posterior_at_t0_1() {
    posterior_check(0.1, Some(Precision::Bf16), Device::Cpu);
}

/// On a GPU (skipped without one, saying so): TF32 and bf16 products on CUDA sample the same
/// posterior. Run with `cargo test -p ablate-engine --test regression cuda` on a CUDA build, or
/// the test binary from `benches/reference/gpu_bundle.sh` on a GPU machine.
#[test]
fn tf32_and_bf16_products_on_cuda_sample_the_analytic_posterior() {
    if !tch::Cuda::is_available() {
        eprintln!("SKIP: no CUDA device; this check of the tf32 and bf16 modes needs a GPU");
        return;
    }
    for precision in [Precision::Tf32, Precision::Bf16] {
        posterior_check(1.0, Some(precision), Device::Cuda(0));
    }
    Compute::default().configure(Device::Cuda(0)).unwrap();
    assert_eq!(ablate_engine::compute::cuda_tf32(), (false, false), "fp32 switches TF32 off again");
}

/// The check's products really run in bf16: the gradient differs from float64's by the
/// rounding of bf16 (about 2^-9 relative), not by float32's 2^-24.
#[test]
fn bf16_products_round_like_bf16() {
    let mut exact = Regression::new(200, 4);
    let mut bf16 = Regression::new(200, 4);
    bf16.arith = Some(Precision::Bf16);
    let theta = Tensor::from_slice(&[0.3f32, -0.2, 0.1, 0.5]);
    let mut host = TchHost::new();
    let g0 = exact.gradient(&mut host, &theta, 0, true).unwrap().grad.to_kind(Kind::Double);
    let g1 = bf16.gradient(&mut host, &theta, 0, true).unwrap().grad.to_kind(Kind::Double);
    let rel = f64::try_from((&g1 - &g0).norm() / g0.norm()).unwrap();
    assert!(rel > 1e-4 && rel < 2e-2, "bf16 gradient differs from float64 by {rel} (relative)");
}

/// T = 0: the paper's integrator must be SGD with heavy-ball momentum, v ← βv − ℓ∇G̃,
/// θ ← θ + v, on the same minibatches (velocity form, as the reference code writes it).
#[test]
fn zero_temperature_is_sgd_with_momentum() {
    let (lr, beta, b) = (0.05, 0.9, 20u64);
    let settings = ChainSettings { lr, momentum_decay: beta, batch_size: b, layerwise_mass: false, precond_batches: 1 };
    let (epochs, spe) = (3usize, 10u64);
    let protocol = protocol(epochs, spe, 0.0);
    let mut problem = Regression::new(200, 4);
    let theta0 = Tensor::from_slice(&[0.3f32, -0.2, 0.1, 0.5]);
    let theta = theta0.copy();
    let out = chain(&mut problem, &theta, "sym-euler", &protocol, &settings, &mut ());
    assert_eq!(out.status, ablate_engine::ChainStatus::Done);

    // The same stream by hand: each epoch first consumes `precond_batches` batches for the
    // preconditioner estimate, then `spe` training batches.
    let mut reference = Regression::new(200, 4);
    let mut w = theta0.copy();
    let mut v = w.zeros_like();
    let mut host = TchHost::new();
    for _ in 0..epochs {
        let _ = reference.gradient(&mut host, &w, b, false).unwrap();
        for _ in 0..spe {
            let g = reference.gradient(&mut host, &w, b, true).unwrap().grad;
            v = &v * beta - g * lr;
            w = &w + &v;
        }
    }
    let diff = f64::try_from((&theta - &w).abs().max()).unwrap();
    let scale = f64::try_from(w.abs().max()).unwrap();
    assert!(diff <= 1e-5 * scale.max(1.0), "T=0 chain differs from SGD+momentum by {diff} (|w| ~ {scale})");
}
