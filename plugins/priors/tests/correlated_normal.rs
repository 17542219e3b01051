//! `correlated-normal` against closed forms (a hand-computed two-position kernel, a 2×2 kernel
//! against an independent f64 Gauss–Jordan inverse), its gradient −Σ⁻¹v, additivity over
//! stacked chains, the plain Gaussian on dense tensors, and the covariance of its draws
//! against Σ (tolerance from the number of draws).
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use ablate_plugin_priors::{CorrelatedNormal, Gaussian};
use ablate_sdk::abi::PriorBox;
use ablate_sdk::testkit::suite::{assert_all_pass, cpu_prior, Outcome};
use ablate_sdk::testkit::{param_info, prior_box, prior_grad_log_prob, prior_log_prob, CpuHost};
use ablate_sdk::{ParamInfo, Role};

const LN_2PI: f64 = 1.837_877_066_409_345_5;
/// Standard errors allowed in statistical checks (two-sided p ≈ 6e-7 per check).
const Z: f64 = 5.0;

fn prior(json: &str) -> PriorBox {
    prior_box::<CorrelatedNormal>(json).unwrap()
}

fn conv(shape: &[i64]) -> ParamInfo {
    param_info("conv.weight", Role::Weight, shape, 1, 1, 0)
}

#[test]
fn a_two_position_kernel_matches_the_bivariate_normal_by_hand() {
    // Kernel [1, 1, 1, 2]: positions 1 apart, ρ = exp(−1/(2ℓ²)), Σ = σ²[[1, ρ], [ρ, 1]] (ε = 0).
    let (sigma, ell) = (0.5f64, 1.0f64);
    let p = prior(r#"{"scale": 0.5, "lengthscale": 1.0, "jitter": 0.0}"#);
    let (v1, v2) = (0.3f64, -0.7f64);
    let rho = (-1.0 / (2.0 * ell * ell)).exp();
    let s2 = sigma * sigma;
    let quad = (v1 * v1 - 2.0 * rho * v1 * v2 + v2 * v2) / (s2 * (1.0 - rho * rho));
    let want = -0.5 * quad - 0.5 * (s2 * s2 * (1.0 - rho * rho)).ln() - LN_2PI;
    let mut host = CpuHost::new(1);
    let t = vec![(conv(&[1, 1, 1, 2]), vec![v1, v2])];
    let got = prior_log_prob(&mut host, &p, &t).unwrap();
    assert!((got - want).abs() < 1e-12, "log p {got} vs {want}");
    // ∇ = −Σ⁻¹v = −[v1 − ρ v2, v2 − ρ v1] / (σ²(1 − ρ²)).
    let g = prior_grad_log_prob(&mut host, &p, &t).unwrap().unwrap();
    let d = s2 * (1.0 - rho * rho);
    let want_g = [-(v1 - rho * v2) / d, -(v2 - rho * v1) / d];
    for (a, b) in g[0].iter().zip(want_g) {
        assert!((a - b).abs() < 1e-12, "gradient {a} vs {b}");
    }
}

/// Inverse of a small dense matrix by Gauss–Jordan elimination with partial pivoting
/// (independent of the prior's Cholesky route).
fn gauss_jordan_inverse(a: &[f64], n: usize) -> (Vec<f64>, f64) {
    let mut m = a.to_vec();
    let mut inv: Vec<f64> = (0..n * n).map(|k| if k / n == k % n { 1.0 } else { 0.0 }).collect();
    let mut det = 1.0;
    for c in 0..n {
        let piv = (c..n).max_by(|&i, &j| m[i * n + c].abs().total_cmp(&m[j * n + c].abs())).unwrap();
        if piv != c {
            for k in 0..n {
                m.swap(c * n + k, piv * n + k);
                inv.swap(c * n + k, piv * n + k);
            }
            det = -det;
        }
        let d = m[c * n + c];
        det *= d;
        for k in 0..n {
            m[c * n + k] /= d;
            inv[c * n + k] /= d;
        }
        for r in 0..n {
            if r != c {
                let f = m[r * n + c];
                for k in 0..n {
                    m[r * n + k] -= f * m[c * n + k];
                    inv[r * n + k] -= f * inv[c * n + k];
                }
            }
        }
    }
    (inv, det)
}

/// Σ of a 2×2 kernel built from the definition: positions (0,0), (0,1), (1,0), (1,1).
fn sigma_2x2(sigma: f64, ell: f64, eps: f64) -> Vec<f64> {
    let pos = [(0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0)];
    let mut s = vec![0.0; 16];
    for (i, a) in pos.iter().enumerate() {
        for (j, b) in pos.iter().enumerate() {
            let d2: f64 = (a.0 - b.0) * (a.0 - b.0) + (a.1 - b.1) * (a.1 - b.1);
            let k = (-d2 / (2.0 * ell * ell)).exp() + if i == j { eps } else { 0.0 };
            s[i * 4 + j] = sigma * sigma * k / (1.0 + eps);
        }
    }
    s
}

#[test]
fn a_2x2_kernel_over_two_channel_pairs_and_a_dense_tensor_match_the_definition() {
    let (sigma, ell, eps) = (0.8, 1.3, 1e-4);
    let p = prior(r#"{"scale": 0.8, "lengthscale": 1.3}"#);
    let s = sigma_2x2(sigma, ell, eps);
    let (inv, det) = gauss_jordan_inverse(&s, 4);
    let kernel: Vec<f64> = vec![0.2, -0.4, 0.9, 0.1, -1.2, 0.5, 0.3, -0.6];
    let dense = vec![0.7, -0.2, 1.5];
    let mut want = 0.0;
    let mut want_g = Vec::new();
    for v in kernel.chunks(4) {
        let sv: Vec<f64> = (0..4).map(|i| (0..4).map(|j| inv[i * 4 + j] * v[j]).sum()).collect();
        want += -0.5 * v.iter().zip(&sv).map(|(a, b)| a * b).sum::<f64>() - 0.5 * det.ln() - 2.0 * LN_2PI;
        want_g.extend(sv.iter().map(|x| -x));
    }
    // Dense weights get the plain N(0, σ²) (the `gaussian` prior's closed form).
    for x in &dense {
        want += -x * x / (2.0 * sigma * sigma) - sigma.ln() - 0.5 * LN_2PI;
    }
    let t = vec![
        (conv(&[2, 1, 2, 2]), kernel.clone()),
        (param_info("fc.weight", Role::Weight, &[1, 3], 3, 1, 8), dense.clone()),
    ];
    let mut host = CpuHost::new(1);
    let got = prior_log_prob(&mut host, &p, &t).unwrap();
    assert!((got - want).abs() < 1e-10 * want.abs().max(1.0), "log p {got} vs {want}");
    let g = prior_grad_log_prob(&mut host, &p, &t).unwrap().unwrap();
    for (a, b) in g[0].iter().zip(&want_g) {
        assert!((a - b).abs() < 1e-9 * b.abs().max(1.0), "kernel gradient {a} vs {b}");
    }
    for (a, x) in g[1].iter().zip(&dense) {
        assert!((a + x / (sigma * sigma)).abs() < 1e-12, "dense gradient {a} vs {}", -x / (sigma * sigma));
    }
    // The same dense tensor under `gaussian` with the same σ gives the same value.
    let gauss = prior_box::<Gaussian>(r#"{"scale": 0.8}"#).unwrap();
    let dense_only = vec![t[1].clone()];
    let a = prior_log_prob(&mut host, &p, &dense_only).unwrap();
    let b = prior_log_prob(&mut host, &gauss, &dense_only).unwrap();
    assert_eq!(a, b);
}

#[test]
fn a_1x1_kernel_is_the_plain_gaussian_and_stacked_chains_add() {
    let p = prior(r#"{"scale": 0.6, "lengthscale": 2.0}"#);
    let gauss = prior_box::<Gaussian>(r#"{"scale": 0.6}"#).unwrap();
    let mut host = CpuHost::new(1);
    let one = vec![(conv(&[3, 2, 1, 1]), vec![0.1, -0.5, 0.9, 1.3, -0.2, 0.05])];
    let a = prior_log_prob(&mut host, &p, &one).unwrap();
    let b = prior_log_prob(&mut host, &gauss, &one).unwrap();
    assert!((a - b).abs() < 1e-12, "1×1 kernel {a} vs gaussian {b}");
    // Two chains stacked along a leading dimension: log p is the sum of each chain's.
    let x: Vec<f64> = (0..18).map(|i| ((i * 7 % 11) as f64 - 5.0) / 4.0).collect();
    let y: Vec<f64> = (0..18).map(|i| ((i * 5 % 13) as f64 - 6.0) / 5.0).collect();
    let info = conv(&[2, 1, 3, 3]);
    let lx = prior_log_prob(&mut host, &p, &[(info.clone(), x.clone())]).unwrap();
    let ly = prior_log_prob(&mut host, &p, &[(info.clone(), y.clone())]).unwrap();
    let mut stacked = info.clone();
    stacked.shape = vec![2, 2, 1, 3, 3].into();
    let both = prior_log_prob(&mut host, &p, &[(stacked, [x, y].concat())]).unwrap();
    assert!((both - (lx + ly)).abs() < 1e-10 * both.abs(), "stacked {both} vs {}", lx + ly);
}

#[test]
fn draws_have_the_kernel_covariance() {
    // 3×3 kernels, ℓ = 1: n = 400·10 = 4000 vectors of 9 positions per call.
    let (sigma, ell, eps) = (1.0f64, 1.0f64, 1e-4f64);
    let p = prior(r#"{"scale": 1.0, "lengthscale": 1.0}"#);
    let info = conv(&[400, 10, 3, 3]);
    let mut host = CpuHost::new(7);
    let like = host.insert(&[400, 10, 3, 3], &vec![0.0; 36_000]);
    let id = p.sample(&mut host.host_ref(), &info, like).into_result().unwrap().unwrap();
    assert!(host.take_error().is_none());
    assert_eq!(host.host_ref().shape(id).as_slice(), &[400, 10, 3, 3]);
    let x = host.get(id).to_vec();
    let n = x.len() / 9;
    let coord = |k: usize| ((k / 3) as f64, (k % 3) as f64);
    let mut worst = 0.0f64;
    for i in 0..9 {
        for j in 0..9 {
            let (a, b) = (coord(i), coord(j));
            let d2 = (a.0 - b.0).powi(2) + (a.1 - b.1).powi(2);
            let want = sigma * sigma * ((-d2 / (2.0 * ell * ell)).exp() + if i == j { eps } else { 0.0 }) / (1.0 + eps);
            let got = x.chunks(9).map(|v| v[i] * v[j]).sum::<f64>() / n as f64;
            // SE of a Gaussian sample covariance (mean known 0): sqrt((Σii Σjj + Σij²)/n).
            let se = ((sigma.powi(4) + want * want) / n as f64).sqrt();
            let z = (got - want) / se;
            worst = worst.max(z.abs());
            assert!(z.abs() < Z, "cov[{i}][{j}] = {got:.4}, expected {want:.4} (z = {z:.2}, n = {n})");
        }
    }
    eprintln!("largest |z| over the 81 covariance entries: {worst:.2}");
    // Dense weights draw N(0, σ²): mean of squares near σ².
    let dense = param_info("fc.weight", Role::Weight, &[100, 40], 40, 100, 0);
    let like = host.insert(&[100, 40], &vec![0.0; 4000]);
    let id = p.sample(&mut host.host_ref(), &dense, like).into_result().unwrap().unwrap();
    let ms = host.get(id).iter().map(|v| v * v).sum::<f64>() / 4000.0;
    let z = (ms - 1.0) / (2.0f64 / 4000.0).sqrt();
    assert!(z.abs() < Z, "dense mean square {ms} (z = {z:.2})");
}

#[test]
fn a_covariance_that_is_not_positive_definite_is_refused_with_advice() {
    // ℓ = 100 over 5×5 positions without jitter: every correlation ≈ 1, Σ singular in f64.
    let p = prior(r#"{"lengthscale": 100.0, "jitter": 0.0}"#);
    let mut host = CpuHost::new(1);
    let err = prior_log_prob(&mut host, &p, &[(conv(&[1, 1, 5, 5]), vec![0.1; 25])]).unwrap_err();
    assert!(err.contains("not positive definite") && err.contains("jitter"), "{err}");
}

#[test]
fn correlated_normal_passes_the_suite() {
    for json in ["{}", r#"{"lengthscale": 0.5, "scale": 0.3}"#] {
        let checks = cpu_prior::<CorrelatedNormal>(json);
        for c in &checks {
            eprintln!("correlated-normal {json}: {c}");
        }
        assert_all_pass("correlated-normal", &checks);
        assert_eq!(checks.len(), 5);
        // The suite stacks chains as the engine does (one-chain descriptions), so a kernel's
        // positions are found and the prior batches: a pass, not a "runs unbatched" note.
        let add = checks.iter().find(|c| c.name == "log_prob additive over stacked chains").unwrap();
        assert!(matches!(add.outcome, Outcome::Pass(_)), "{add}");
    }
}
