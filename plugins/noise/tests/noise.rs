//! Plans and statistical tests of the built-in noise models on the testkit's `CpuHost`.
//!
//! Each transformed gradient is compared with its input: the difference must have mean 0
//! (unbiased) and the intended variance, within `Z` standard errors of the pooled draws
//! (se of a mean: sqrt(v/N); of a Gaussian variance: v·sqrt(2/N)).
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use ablate_plugin_noise::{AlphaStable, FullBatch, GaussianMatched, Minibatch, PretendBatch};
use ablate_sdk::testkit::{noise_box, CpuHost};
use ablate_sdk::{Factory, NoiseModel, NoiseView, Params, StepCtx, TensorId};

const Z: f64 = 5.0;

fn new<N: Factory>(json: &str) -> N {
    N::new(&Params::parse(json, &N::params()).unwrap()).unwrap()
}

fn ctx() -> StepCtx {
    StepCtx {
        step: 1,
        lr: 0.1,
        momentum_decay: 0.98,
        timestep_factor: 1.0,
        temperature: 1.0,
        n: 50_000.0,
        batch_size: 100,
    }
}

/// A flat gradient of two "tensors" (blocks) with per-tensor and elementwise variances.
struct Setup {
    host: CpuHost,
    grad0: Vec<f64>,
    grad: TensorId,
    var_pt: TensorId,
    var_el: TensorId,
    /// Block boundaries and the per-tensor / elementwise variance of each element.
    blocks: [(usize, usize); 2],
    v_pt: Vec<f64>,
    v_el: Vec<f64>,
}

fn setup(n_block: usize, seed: u64) -> Setup {
    let n = 2 * n_block;
    let grad0: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin() * 3.0).collect();
    let v_pt: Vec<f64> = (0..n).map(|i| if i < n_block { 0.25 } else { 4.0 }).collect();
    // Elementwise variances alternate around the per-tensor mean.
    let v_el: Vec<f64> =
        v_pt.iter().enumerate().map(|(i, v)| if i.is_multiple_of(2) { 0.5 * v } else { 1.5 * v }).collect();
    let mut host = CpuHost::new(seed);
    let grad = host.insert(&[n as i64], &grad0);
    let var_pt = host.insert(&[n as i64], &v_pt);
    let var_el = host.insert(&[n as i64], &v_el);
    Setup { host, grad0, grad, var_pt, var_el, blocks: [(0, n_block), (n_block, n)], v_pt, v_el }
}

impl Setup {
    fn transform<N: NoiseModel>(&mut self, model: &mut N, measured_batch: u64) -> Vec<f64> {
        let (g, vp, ve) = (self.grad, self.var_pt, self.var_el);
        self.host.set_data(g, &self.grad0.clone());
        let before = self.host.live_tensors();
        let r = self.host.with_ops(|ops| {
            let stats = NoiseView {
                var_elementwise: ops.borrow(ve),
                var_per_tensor: ops.borrow(vp),
                batch_size: measured_batch,
            };
            model.transform(ops, &ctx(), &ops.borrow(g), &stats)
        });
        r.unwrap();
        assert!(self.host.take_error().is_none());
        assert_eq!(self.host.live_tensors(), before, "transform leaked tensors");
        self.host.get(g).to_vec()
    }
}

/// Per block: mean of (out − in) ≈ 0 and mean of (out − in)²/v ≈ 1 (v the intended variance).
fn check_gaussian(out: &[f64], s: &Setup, want_var: &[f64], what: &str) {
    for &(a, b) in &s.blocks {
        let n = (b - a) as f64;
        let d: Vec<f64> = (a..b).map(|i| out[i] - s.grad0[i]).collect();
        // Standardised noise: mean 0, variance 1 if the variance is the intended one.
        let zs: Vec<f64> = (a..b).map(|i| d[i - a] / want_var[i].sqrt()).collect();
        let mean = zs.iter().sum::<f64>() / n;
        let var = zs.iter().map(|z| z * z).sum::<f64>() / n;
        eprintln!("{what} block {a}..{b}: standardised mean {mean:.5}, var {var:.5}, N {n}");
        assert!(mean.abs() < Z / n.sqrt(), "{what}: mean {mean} (se {})", 1.0 / n.sqrt());
        assert!((var - 1.0).abs() < Z * (2.0 / n).sqrt(), "{what}: variance ratio {var} (se {})", (2.0 / n).sqrt());
    }
}

#[test]
fn plans() {
    let n = 50_000;
    assert_eq!(new::<Minibatch>("{}").plan(100, n).gradient_batch, 100);
    assert_eq!(new::<Minibatch>("{}").plan(128, n).gradient_batch, 128);
    assert_eq!(new::<Minibatch>(r#"{"batch_size": 32}"#).plan(128, n).gradient_batch, 32);
    assert_eq!(new::<FullBatch>("{}").plan(128, n).gradient_batch, 0);
    assert_eq!(new::<PretendBatch>("{}").plan(100, n).gradient_batch, 128);
    assert_eq!(new::<PretendBatch>(r#"{"batch_size": 1000}"#).plan(100, n).gradient_batch, 1000);
    assert_eq!(new::<GaussianMatched>("{}").plan(100, n).gradient_batch, 0);
    assert_eq!(new::<AlphaStable>("{}").plan(100, n).gradient_batch, 0);
    assert!(noise_box::<PretendBatch>(r#"{"batch_size": 0}"#).is_err());
    assert!(noise_box::<AlphaStable>(r#"{"alpha": 2.5}"#).is_err());
    assert!(noise_box::<AlphaStable>(r#"{"alpha": 0}"#).is_err());
    assert!(noise_box::<GaussianMatched>(r#"{"variance": "full"}"#).is_err());
    assert!(noise_box::<FullBatch>(r#"{"batch_size": 3}"#).is_err());
}

#[test]
fn plain_estimators_leave_the_gradient_unchanged() {
    let mut s = setup(10, 1);
    let g0 = s.grad0.clone();
    assert_eq!(s.transform(&mut new::<Minibatch>("{}"), 100), g0);
    assert_eq!(s.transform(&mut new::<FullBatch>("{}"), 100), g0);
    assert_eq!(s.transform(&mut new::<PretendBatch>("{}"), 100), g0);
}

#[test]
fn gaussian_matched_is_unbiased_with_the_measured_variance() {
    let mut s = setup(50_000, 2);
    let out = s.transform(&mut new::<GaussianMatched>("{}"), 100);
    check_gaussian(&out, &s, &s.v_pt.clone(), "per-tensor");
    let out = s.transform(&mut new::<GaussianMatched>(r#"{"variance": "elementwise"}"#), 100);
    check_gaussian(&out, &s, &s.v_el.clone(), "elementwise");
    // Rescaled to batch 400 from the measured 100: v·100/400; with an extra factor 3.
    let out = s.transform(&mut new::<GaussianMatched>(r#"{"batch_size": 400, "variance_scale": 3}"#), 100);
    let want: Vec<f64> = s.v_pt.iter().map(|v| v * 0.25 * 3.0).collect();
    check_gaussian(&out, &s, &want, "batch 400 ×3");
    // variance_scale 0 is the full-batch gradient.
    let out = s.transform(&mut new::<GaussianMatched>(r#"{"variance_scale": 0}"#), 100);
    assert_eq!(out, s.grad0);
}

#[test]
fn gaussian_matched_mean_over_repeated_draws() {
    // The same few coordinates over many steps: per-coordinate mean → input, variance → v.
    let mut s = setup(2, 3);
    let mut model = new::<GaussianMatched>("{}");
    let draws = 20_000;
    let mut sum = [0.0; 4];
    let mut sq = [0.0; 4];
    for _ in 0..draws {
        let out = s.transform(&mut model, 100);
        for i in 0..4 {
            let d = out[i] - s.grad0[i];
            sum[i] += d;
            sq[i] += d * d;
        }
    }
    for i in 0..4 {
        let v = s.v_pt[i];
        let mean = sum[i] / draws as f64;
        let var = sq[i] / draws as f64;
        eprintln!("coordinate {i}: mean offset {mean:.5} (se {:.5}), var {var:.4} vs {v}", (v / draws as f64).sqrt());
        assert!(mean.abs() < Z * (v / draws as f64).sqrt());
        assert!((var / v - 1.0).abs() < Z * (2.0 / draws as f64).sqrt());
    }
}

#[test]
fn rescaling_without_measurements_is_an_error() {
    let mut s = setup(4, 4);
    let mut m = new::<GaussianMatched>(r#"{"batch_size": 50}"#);
    let (g, vp, ve) = (s.grad, s.var_pt, s.var_el);
    let r = s.host.with_ops(|ops| {
        let stats = NoiseView { var_elementwise: ops.borrow(ve), var_per_tensor: ops.borrow(vp), batch_size: 0 };
        m.transform(ops, &ctx(), &ops.borrow(g), &stats)
    });
    assert!(r.is_err());
}

#[test]
fn alpha_stable_with_alpha_two_is_gaussian_matched() {
    let mut s = setup(50_000, 5);
    let out = s.transform(&mut new::<AlphaStable>(r#"{"alpha": 2}"#), 100);
    check_gaussian(&out, &s, &s.v_pt.clone(), "alpha 2");
    // Gaussian shape too: fourth standardised moment 3 (se sqrt(96/N)).
    let (a, b) = s.blocks[1];
    let n = (b - a) as f64;
    let k: f64 = (a..b).map(|i| ((out[i] - s.grad0[i]) / s.v_pt[i].sqrt()).powi(4)).sum::<f64>() / n;
    eprintln!("alpha 2: kurtosis {k:.4}");
    assert!((k - 3.0).abs() < Z * (96.0 / n).sqrt(), "kurtosis {k}");
}

#[test]
fn alpha_stable_characteristic_function_matches() {
    // c·S with c = sqrt(v/2): E cos(t·d/c) = exp(−|t|^α), E sin(t·d/c) = 0 (symmetric, hence
    // unbiased where the mean exists). Bounded statistics: se = sd(cos)/√N.
    for (alpha, seed) in [(0.7, 6), (1.0, 7), (1.5, 8), (1.9, 9)] {
        let mut s = setup(50_000, seed);
        let out = s.transform(&mut new::<AlphaStable>(&format!(r#"{{"alpha": {alpha}}}"#)), 100);
        let xs: Vec<f64> = (0..out.len()).map(|i| (out[i] - s.grad0[i]) / (s.v_pt[i] / 2.0).sqrt()).collect();
        assert!(xs.iter().all(|x| x.is_finite()));
        let n = xs.len() as f64;
        for t in [0.2, 0.5, 1.0, 2.0] {
            let cos: Vec<f64> = xs.iter().map(|x| (t * x).cos()).collect();
            let sin: Vec<f64> = xs.iter().map(|x| (t * x).sin()).collect();
            let mc = cos.iter().sum::<f64>() / n;
            let ms = sin.iter().sum::<f64>() / n;
            let sd_c = (cos.iter().map(|c| (c - mc).powi(2)).sum::<f64>() / n).sqrt();
            let sd_s = (sin.iter().map(|c| (c - ms).powi(2)).sum::<f64>() / n).sqrt();
            let want = (-f64::powf(t, alpha)).exp();
            eprintln!("α {alpha} t {t}: E cos {mc:.5} vs {want:.5} (se {:.5}), E sin {ms:.5}", sd_c / n.sqrt());
            assert!((mc - want).abs() < Z * sd_c / n.sqrt(), "α {alpha}, t {t}: {mc} vs {want}");
            assert!(ms.abs() < Z * sd_s / n.sqrt(), "α {alpha}, t {t}: E sin {ms}");
        }
        // Median of the noise is 0 (binomial se 0.5/√N on the fraction below 0).
        let below = xs.iter().filter(|&&x| x < 0.0).count() as f64 / n;
        assert!((below - 0.5).abs() < Z * 0.5 / n.sqrt(), "α {alpha}: P(noise < 0) = {below}");
    }
}

#[test]
fn alpha_stable_mean_is_unbiased_for_alpha_above_one() {
    // For α = 1.8 the mean exists; the sample mean of N stable draws has scale c·N^(1/α − 1),
    // so use a generous Z on that scale (a stable law, not a Gaussian, governs the error).
    let mut s = setup(100_000, 10);
    let alpha: f64 = 1.8;
    let out = s.transform(&mut new::<AlphaStable>(r#"{"alpha": 1.8}"#), 100);
    for &(a, b) in &s.blocks {
        let n = (b - a) as f64;
        let mean = (a..b).map(|i| out[i] - s.grad0[i]).sum::<f64>() / n;
        let c = (s.v_pt[a] / 2.0).sqrt();
        let scale = c * n.powf(1.0 / alpha - 1.0);
        eprintln!("α 1.8 block {a}: mean offset {mean:.5}, stable scale of the mean {scale:.5}");
        assert!(mean.abs() < 20.0 * scale, "mean offset {mean} vs scale {scale}");
    }
}
