//! Statistical and closed-form tests of the built-in priors on the testkit's `CpuHost`.
//!
//! Tolerances: log densities to 1e-12 relative (closed forms in f64); sample moments to
//! `Z` standard errors of the pooled draws; empirical CDFs to `Z`·sqrt(p(1−p)/N).
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use std::f64::consts::PI;

use ablate_plugin_priors::{Cauchy, Flat, Gaussian, HeGaussian, Laplace, SpikeSlab, StudentT};
use ablate_sdk::abi::PriorBox;
use ablate_sdk::testkit::{
    finite_difference_log_prob_grad, param_info, prior_box, prior_grad_log_prob, prior_log_prob, prior_logprob_check,
    prior_sample_moments, CpuHost,
};
use ablate_sdk::{ParamInfo, Prior, Role};

/// Standard errors allowed in statistical checks (two-sided p ≈ 6e-7 per check).
const Z: f64 = 5.0;
const HALF_LN_2PI: f64 = 0.918_938_533_204_672_8;

fn w_info(shape: &[i64], fan_in: i64) -> ParamInfo {
    param_info("dense.weight", Role::Weight, shape, fan_in, 7, 0)
}
fn b_info(shape: &[i64], fan_in: i64) -> ParamInfo {
    param_info("dense.bias", Role::Bias, shape, fan_in, 7, 100)
}
fn n_info(shape: &[i64]) -> ParamInfo {
    param_info("bn.scale", Role::Norm, shape, 4, 4, 200)
}

/// Weight (2×3), bias (2) and norm (2) tensors at assorted points (incl. 0 and tails).
fn tensors(fan_in: i64) -> Vec<(ParamInfo, Vec<f64>)> {
    vec![
        (w_info(&[2, 3], fan_in), vec![0.0, 0.3, -1.7, 2.5, -0.05, 4.0]),
        (b_info(&[2], fan_in), vec![-0.6, 1.1]),
        (n_info(&[2]), vec![0.9, -3.0]),
    ]
}

/// Σ f over the elements of the tensors whose role is in `roles`.
fn expected(ts: &[(ParamInfo, Vec<f64>)], roles: &[Role], f: impl Fn(&ParamInfo, f64) -> f64) -> f64 {
    ts.iter()
        .filter(|(i, _)| roles.contains(&i.role))
        .flat_map(|(i, d)| d.iter().map(move |&x| (i, x)))
        .map(|(i, x)| f(i, x))
        .sum()
}

fn check_lp(prior: &PriorBox, ts: &[(ParamInfo, Vec<f64>)], want: f64) {
    let mut host = CpuHost::new(1);
    let r = prior_logprob_check(&mut host, prior, ts, want, 1e-12).unwrap_or_else(|e| panic!("{e}"));
    assert!(r.abs_err <= 1e-12 * want.abs().max(1.0), "{r:?}");
    assert_eq!(host.live_tensors(), 0, "log_prob leaked tensors");
}

const WB: &[Role] = &[Role::Weight, Role::Bias];
const ALL: &[Role] = &[Role::Weight, Role::Bias, Role::Norm];

#[test]
fn gaussian_log_prob_closed_form_and_roles() {
    for sigma in [1.0, 0.1, 3.7] {
        let ln_n = |x: f64| -x * x / (2.0 * sigma * sigma) - sigma.ln() - HALF_LN_2PI;
        let p = prior_box::<Gaussian>(&format!(r#"{{"scale": {sigma}}}"#)).unwrap();
        check_lp(&p, &tensors(3), expected(&tensors(3), WB, |_, x| ln_n(x)));
        let p =
            prior_box::<Gaussian>(&format!(r#"{{"scale": {sigma}, "roles": ["weight", "bias", "norm"]}}"#)).unwrap();
        check_lp(&p, &tensors(3), expected(&tensors(3), ALL, |_, x| ln_n(x)));
        let p = prior_box::<Gaussian>(&format!(r#"{{"scale": {sigma}, "roles": ["bias"]}}"#)).unwrap();
        check_lp(&p, &tensors(3), expected(&tensors(3), &[Role::Bias], |_, x| ln_n(x)));
    }
    // A single point by hand: N(0.3; 0, 1) = exp(−0.045)/sqrt(2π).
    let p = prior_box::<Gaussian>("{}").unwrap();
    let one = vec![(w_info(&[1], 1), vec![0.3])];
    check_lp(&p, &one, -0.045 - 0.5 * (2.0 * PI).ln());
}

#[test]
fn uncovered_only_gives_zero_and_no_params_is_an_error() {
    let p = prior_box::<Gaussian>(r#"{"roles": ["norm"]}"#).unwrap();
    let only_w = vec![(w_info(&[2], 2), vec![1.0, 2.0])];
    check_lp(&p, &only_w, 0.0);
    let mut host = CpuHost::new(1);
    assert!(prior_log_prob(&mut host, &p, &[]).is_err());
    assert!(prior_box::<Gaussian>(r#"{"roles": ["kernel"]}"#).is_err());
    assert!(prior_box::<Gaussian>(r#"{"scale": 0}"#).is_err());
    assert!(prior_box::<Gaussian>(r#"{"stddev": 1}"#).is_err());
}

#[test]
fn he_gaussian_uses_fan_in() {
    for (scale, fan_in) in [(1.0, 3), (0.5, 50), (2.0, 1)] {
        let p = prior_box::<HeGaussian>(&format!(r#"{{"scale": {scale}}}"#)).unwrap();
        let sigma = scale * (2.0 / fan_in as f64).sqrt();
        let want = expected(&tensors(fan_in), WB, |_, x| -x * x / (2.0 * sigma * sigma) - sigma.ln() - HALF_LN_2PI);
        check_lp(&p, &tensors(fan_in), want);
    }
    // Different fan-ins per tensor.
    let p = prior_box::<HeGaussian>("{}").unwrap();
    let ts = vec![(w_info(&[2], 8), vec![0.2, -0.4]), (b_info(&[1], 2), vec![1.5])];
    let want = expected(&ts, WB, |i, x| {
        let s = (2.0 / i.fan_in as f64).sqrt();
        -x * x / (2.0 * s * s) - s.ln() - HALF_LN_2PI
    });
    check_lp(&p, &ts, want);
    let mut host = CpuHost::new(1);
    assert!(prior_log_prob(&mut host, &p, &[(w_info(&[1], 0), vec![1.0])]).is_err());
}

#[test]
fn laplace_cauchy_student_t_log_prob_closed_forms() {
    for b in [1.0, 0.25] {
        let p = prior_box::<Laplace>(&format!(r#"{{"scale": {b}}}"#)).unwrap();
        let want = expected(&tensors(3), WB, |_, x| -x.abs() / b - (2.0 * b).ln());
        check_lp(&p, &tensors(3), want);
    }
    for s in [1.0, 0.3] {
        let p = prior_box::<Cauchy>(&format!(r#"{{"scale": {s}}}"#)).unwrap();
        let want = expected(&tensors(3), WB, |_, x| -(PI * s * (1.0 + (x / s).powi(2))).ln());
        check_lp(&p, &tensors(3), want);
    }
    // Student-t with hand-derived constants: Γ(2) = 1, Γ(3/2) = √π/2, Γ(5/2) = 3√π/4.
    let t_pdf = |nu: f64, s: f64, x: f64| -> f64 {
        let c = match nu as i64 {
            1 => 1.0 / PI,                                      // Γ(1)/(Γ(1/2)√π)
            3 => 1.0 / ((PI.sqrt() / 2.0) * (3.0 * PI).sqrt()), // Γ(2)/(Γ(3/2)√(3π))
            4 => (3.0 * PI.sqrt() / 4.0) / (4.0 * PI).sqrt(),   // Γ(5/2)/(Γ(2)√(4π))
            _ => unreachable!(),
        };
        (c / s * (1.0 + (x / s).powi(2) / nu).powf(-(nu + 1.0) / 2.0)).ln()
    };
    for (nu, s) in [(1.0, 1.0), (3.0, 1.0), (3.0, 0.2), (4.0, 2.0)] {
        let p = prior_box::<StudentT>(&format!(r#"{{"df": {nu}, "scale": {s}}}"#)).unwrap();
        check_lp(&p, &tensors(3), expected(&tensors(3), WB, |_, x| t_pdf(nu, s, x)));
    }
    // df = 1 is the Cauchy prior.
    let t1 = prior_box::<StudentT>(r#"{"df": 1, "scale": 0.7}"#).unwrap();
    let c = prior_box::<Cauchy>(r#"{"scale": 0.7}"#).unwrap();
    let mut host = CpuHost::new(1);
    let a = prior_log_prob(&mut host, &t1, &tensors(3)).unwrap();
    let b = prior_log_prob(&mut host, &c, &tensors(3)).unwrap();
    assert!((a - b).abs() < 1e-12 * a.abs(), "{a} vs {b}");
}

#[test]
fn spike_slab_log_prob_closed_form() {
    let n = |x: f64, s: f64| (-x * x / (2.0 * s * s)).exp() / (s * (2.0 * PI).sqrt());
    for (s1, s2, pi) in [(0.001, 0.4, 0.5), (0.1, 2.0, 0.2)] {
        let p = prior_box::<SpikeSlab>(&format!(r#"{{"scale_spike": {s1}, "scale_slab": {s2}, "mass_spike": {pi}}}"#))
            .unwrap();
        // Points within a few spike widths, where both components matter, and tails where the
        // spike underflows in a naive sum (exercises logaddexp).
        let ts = vec![(w_info(&[4], 1), vec![0.0, s1, -2.5 * s1, 0.3]), (b_info(&[2], 1), vec![-1.0, 2.0])];
        let want = expected(&ts, WB, |_, x| {
            let (a, b) = (pi * n(x, s1), (1.0 - pi) * n(x, s2));
            if a > 0.0 {
                (a + b).ln()
            } else {
                b.ln()
            }
        });
        check_lp(&p, &ts, want);
    }
    assert!(prior_box::<SpikeSlab>(r#"{"mass_spike": 0}"#).is_err());
    assert!(prior_box::<SpikeSlab>(r#"{"mass_spike": 1}"#).is_err());
}

#[test]
fn flat_is_zero_and_never_samples() {
    let p = prior_box::<Flat>("{}").unwrap();
    check_lp(&p, &tensors(3), 0.0);
    let mut host = CpuHost::new(1);
    assert!(prior_sample_moments(&mut host, &p, &w_info(&[10], 3), 1).unwrap().is_none());
}

/// Moments of pooled draws against (mean 0, `var`).
fn check_moments(p: &PriorBox, info: &ParamInfo, var: f64) {
    let mut host = CpuHost::new(42);
    let m = prior_sample_moments(&mut host, p, info, 4).unwrap().expect("covered role must sample");
    eprintln!(
        "{}: mean {:.5} (se {:.5}), var {:.6} vs {var:.6} (se {:.6}), {} draws",
        info.name, m.mean, m.mean_se, m.var, m.var_se, m.draws
    );
    assert!(m.shape_ok);
    assert!(m.mean.abs() < Z * m.mean_se, "mean {} (se {}), draws {}", m.mean, m.mean_se, m.draws);
    assert!((m.var - var).abs() < Z * m.var_se, "var {} vs {var} (se {})", m.var, m.var_se);
    assert_eq!(host.live_tensors(), 0, "sample leaked tensors");
}

#[test]
fn sample_moments_gaussian_family_laplace_spike_slab_student_t() {
    let big = w_info(&[250, 200], 40); // 50k elements × 4 repeats
    check_moments(&prior_box::<Gaussian>(r#"{"scale": 0.3}"#).unwrap(), &big, 0.09);
    check_moments(&prior_box::<HeGaussian>(r#"{"scale": 1.5}"#).unwrap(), &big, 2.25 * 2.0 / 40.0);
    check_moments(&prior_box::<Laplace>(r#"{"scale": 0.5}"#).unwrap(), &big, 2.0 * 0.25);
    check_moments(&prior_box::<SpikeSlab>("{}").unwrap(), &big, 0.5 * 1e-6 + 0.5 * 0.16);
    // ν = 9: finite fourth moment, so the variance standard error is meaningful.
    let small = w_info(&[100, 100], 40);
    check_moments(&prior_box::<StudentT>(r#"{"df": 9, "scale": 0.5}"#).unwrap(), &small, 0.25 * 9.0 / 7.0);
}

#[test]
fn samples_respect_roles() {
    let p = prior_box::<Gaussian>(r#"{"roles": ["weight"]}"#).unwrap();
    let mut host = CpuHost::new(3);
    assert!(prior_sample_moments(&mut host, &p, &b_info(&[5], 2), 1).unwrap().is_none());
    assert!(prior_sample_moments(&mut host, &p, &n_info(&[5]), 1).unwrap().is_none());
    assert!(prior_sample_moments(&mut host, &p, &w_info(&[5], 2), 1).unwrap().is_some());
    let p = prior_box::<Cauchy>("{}").unwrap(); // default weight + bias
    assert!(prior_sample_moments(&mut host, &p, &n_info(&[5]), 1).unwrap().is_none());
    assert!(prior_sample_moments(&mut host, &p, &b_info(&[5], 2), 1).unwrap().is_some());
}

/// Raw draws of an author-trait prior.
fn draws<P: Prior>(prior: &P, n: usize, seed: u64) -> Vec<f64> {
    let mut host = CpuHost::new(seed);
    let like = host.insert(&[n as i64], &vec![0.0; n]);
    let info = w_info(&[n as i64], 10);
    let id = host.with_ops(|ops| prior.sample(ops, &info, &ops.borrow(like)).unwrap().unwrap().into_id());
    assert!(host.take_error().is_none());
    host.get(id).to_vec()
}

/// Empirical CDF at each x against `cdf(x)`, within Z binomial standard errors.
fn check_cdf(xs: &[f64], points: &[f64], cdf: impl Fn(f64) -> f64, what: &str) {
    let n = xs.len() as f64;
    assert!(xs.iter().all(|x| x.is_finite()), "{what}: non-finite draw");
    for &q in points {
        let p = cdf(q);
        let emp = xs.iter().filter(|&&x| x <= q).count() as f64 / n;
        let se = (p * (1.0 - p) / n).sqrt();
        eprintln!("{what}: F({q}) empirical {emp:.5} vs {p:.5} (se {se:.5})");
        assert!((emp - p).abs() < Z * se, "{what}: P(X ≤ {q}) = {emp}, expected {p} (se {se})");
    }
}

fn new<P: ablate_sdk::Factory>(json: &str) -> P {
    let params = ablate_sdk::Params::parse(json, &P::params()).unwrap();
    P::new(&params).unwrap()
}

#[test]
fn heavy_tailed_samples_match_their_cdfs() {
    let n = 100_000;
    let pts = [-10.0, -3.0, -1.0, -0.3, 0.0, 0.2, 0.7, 1.0, 2.5, 20.0];
    // Cauchy(s): F(x) = ½ + atan(x/s)/π.
    let s = 0.8;
    let xs = draws(&new::<Cauchy>(r#"{"scale": 0.8}"#), n, 11);
    check_cdf(&xs, &pts, |x| 0.5 + (x / s).atan() / PI, "cauchy");
    // Laplace(b): F(x) = ½ e^{x/b} for x < 0, 1 − ½ e^{−x/b} otherwise.
    let b = 0.6;
    let xs = draws(&new::<Laplace>(r#"{"scale": 0.6}"#), n, 12);
    check_cdf(
        &xs,
        &pts,
        |x| {
            if x < 0.0 {
                0.5 * (x / b).exp()
            } else {
                1.0 - 0.5 * (-x / b).exp()
            }
        },
        "laplace",
    );
    // Student-t with non-integer and integer df: F by quadrature independent of lnΓ.
    for (nu, s, seed) in [(2.5, 1.0, 13), (0.7, 0.5, 14), (1.0, 1.0, 15), (6.0, 2.0, 16)] {
        let prior = new::<StudentT>(&format!(r#"{{"df": {nu}, "scale": {s}}}"#));
        let xs = draws(&prior, n, seed);
        check_cdf(&xs, &pts, |x| t_cdf(nu, x / s), &format!("student-t ν={nu}"));
    }
    // Spike and slab: mixture of normal CDFs, checked near the spike and in the slab.
    let xs = draws(&new::<SpikeSlab>("{}"), n, 17);
    let mix = |x: f64| 0.5 * normal_cdf(x / 0.001) + 0.5 * normal_cdf(x / 0.4);
    check_cdf(&xs, &[-0.5, -0.002, -0.0005, 0.0, 0.0007, 0.003, 0.1, 0.8], mix, "spike-slab");
}

/// Student-t(ν) CDF via x = √ν tan θ: F(x) = ∫_{−π/2}^{atan(x/√ν)} cos^{ν−1} / ∫ cos^{ν−1}
/// (composite Simpson after substitutions that make the integrand smooth; no lnΓ needed).
fn t_cdf(nu: f64, x: f64) -> f64 {
    // ∫_{-π/2}^{φ} cos^{ν−1}θ dθ with u = 1 + sin θ: dθ = du / cos θ, cos θ = sqrt(u(2−u)),
    // integrand (u(2−u))^{(ν−2)/2}; singular at u = 0 for ν < 2, so substitute u = v^{2/ν}:
    // du = (2/ν) v^{2/ν − 1} dv → integrand (2/ν) (2−u)^{(ν−2)/2} · v^{(2/ν)((ν−2)/2) + 2/ν − 1}
    // = (2/ν)(2−u)^{(ν−2)/2} (exponent of v is 0): smooth except at u = 2 (θ = π/2), which is
    // handled by symmetry (F(x) = 1 − F(−x)).
    if x > 0.0 {
        return 1.0 - t_cdf(nu, -x);
    }
    let g = |phi: f64| -> f64 {
        let v_max = (1.0 + phi.sin()).powf(nu / 2.0);
        let f = |v: f64| {
            let u = v.powf(2.0 / nu);
            (2.0 / nu) * (2.0 - u).powf((nu - 2.0) / 2.0)
        };
        simpson(f, 0.0, v_max, 20_000)
    };
    let total = 2.0 * g(0.0);
    g((x / nu.sqrt()).atan()) / total
}

fn simpson(f: impl Fn(f64) -> f64, a: f64, b: f64, n: usize) -> f64 {
    let h = (b - a) / n as f64;
    let mut s = f(a) + f(b);
    for i in 1..n {
        s += f(a + i as f64 * h) * if i.is_multiple_of(2) { 2.0 } else { 4.0 };
    }
    s * h / 3.0
}

/// Φ(x) for the spike-and-slab mixture CDF.
fn normal_cdf(x: f64) -> f64 {
    // Φ(x) = ½ erfc(−x/√2); erfc by the Numerical Recipes Chebyshev fit (|rel err| < 1.2e-7).
    let z = -x / 2f64.sqrt();
    let t = 1.0 / (1.0 + 0.5 * z.abs());
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    let erfc = if z >= 0.0 { r } else { 2.0 - r };
    0.5 * erfc
}

#[test]
fn quadrature_helpers_are_right() {
    // t with ν = 2 has F(x) = ½ + x / (2 sqrt(2 + x²)); ν = 1 is Cauchy.
    for x in [-5.0, -1.0, -0.2, 0.0, 0.4, 3.0] {
        let want2 = 0.5 + x / (2.0 * (2.0f64 + x * x).sqrt());
        assert!((t_cdf(2.0, x) - want2).abs() < 1e-6, "ν=2 at {x}");
        let want1 = 0.5 + f64::atan(x) / PI;
        assert!((t_cdf(1.0, x) - want1).abs() < 1e-6, "ν=1 at {x}");
    }
    assert!((normal_cdf(1.959_963_985) - 0.975).abs() < 1e-6);
    assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
}

/// The closed-form gradients the host uses instead of autograd equal central differences of
/// `log_prob` (h = 1e-5: truncation error about h² times the third derivative, ~1e-9 here, so
/// 1e-6 is ample), for every prior that has one, at points away from Laplace's kink at 0;
/// priors without one say `None`.
#[test]
fn closed_form_gradients_match_finite_differences() {
    let mut ts = tensors(3);
    ts[0].1[0] = 0.4; // Laplace: |θ| has no derivative at 0
    let cases: Vec<(&str, PriorBox)> = vec![
        ("gaussian", prior_box::<Gaussian>(r#"{"scale": 0.7, "roles": ["weight", "norm"]}"#).unwrap()),
        ("he-gaussian", prior_box::<HeGaussian>("{}").unwrap()),
        ("laplace", prior_box::<Laplace>(r#"{"scale": 0.5}"#).unwrap()),
        ("student-t", prior_box::<StudentT>(r#"{"df": 3.0, "scale": 0.8}"#).unwrap()),
        ("cauchy", prior_box::<Cauchy>(r#"{"scale": 0.3}"#).unwrap()),
    ];
    for (name, prior) in cases {
        let mut host = CpuHost::new(1);
        let analytic = prior_grad_log_prob(&mut host, &prior, &ts).unwrap().unwrap_or_else(|| panic!("{name}: none"));
        let numeric = finite_difference_log_prob_grad(&mut host, &prior, &ts, 1e-5).unwrap();
        for (a, n) in analytic.iter().flatten().zip(numeric.iter().flatten()) {
            assert!((a - n).abs() <= 1e-6 * (1.0 + n.abs()), "{name}: closed form {a} vs finite difference {n}");
        }
    }
    for prior in [prior_box::<SpikeSlab>("{}").unwrap(), prior_box::<Flat>("{}").unwrap()] {
        assert!(prior_grad_log_prob(&mut CpuHost::new(1), &prior, &ts).unwrap().is_none());
    }
}
