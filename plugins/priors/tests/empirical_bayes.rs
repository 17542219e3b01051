//! `empirical-bayes`: log p and ∇ log p against the closed form with the re-estimated variance
//! held constant, per tensor and per chain; no draws (improper); the conformance suite passes
//! (its stacked-chain check keeps one-chain descriptions, as the engine does).
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use ablate_plugin_priors::EmpiricalBayes;
use ablate_sdk::testkit::suite::cpu_prior;
use ablate_sdk::testkit::{param_info, prior_box, prior_grad_log_prob, prior_log_prob, prior_sample_moments, CpuHost};
use ablate_sdk::{Factory, ParamInfo, Params, Prior, Role};

const HALF_LN_2PI: f64 = 0.918_938_533_204_672_8;

fn w(shape: &[i64]) -> ParamInfo {
    param_info("dense.weight", Role::Weight, shape, 3, 2, 0)
}
fn b(shape: &[i64]) -> ParamInfo {
    param_info("dense.bias", Role::Bias, shape, 3, 2, 100)
}

/// Closed form of one tensor: σ̂² = max(mean x², floor²), −Σx²/(2σ̂²) − (m/2) ln σ̂² − m ln√(2π).
fn closed(xs: &[f64], floor: f64) -> (f64, Vec<f64>) {
    let m = xs.len() as f64;
    let v = (xs.iter().map(|x| x * x).sum::<f64>() / m).max(floor * floor);
    let lp = -xs.iter().map(|x| x * x).sum::<f64>() / (2.0 * v) - 0.5 * m * v.ln() - m * HALF_LN_2PI;
    (lp, xs.iter().map(|x| -x / v).collect())
}

#[test]
fn log_prob_and_gradient_use_the_current_variance_per_tensor() {
    let wv = vec![0.0, 0.3, -1.7, 2.5, -0.05, 4.0];
    let bv = vec![0.0, 0.0];
    let ts = vec![(w(&[2, 3]), wv.clone()), (b(&[2]), bv.clone())];
    let prior = prior_box::<EmpiricalBayes>(r#"{"min_scale": 0.1}"#).unwrap();
    let mut host = CpuHost::new(1);
    let (lw, gw) = closed(&wv, 0.1);
    let (lb, gb) = closed(&bv, 0.1); // all zero: the floor σ̂ = 0.1 applies
    let got = prior_log_prob(&mut host, &prior, &ts).unwrap();
    assert!((got - (lw + lb)).abs() < 1e-12 * (lw + lb).abs(), "{got} vs {}", lw + lb);
    let g = prior_grad_log_prob(&mut host, &prior, &ts).unwrap().expect("closed-form gradient");
    for (a, e) in g[0].iter().zip(&gw).chain(g[1].iter().zip(&gb)) {
        assert!((a - e).abs() < 1e-12, "{a} vs {e}");
    }
    assert_eq!(host.live_tensors(), 0, "leaked tensors");
    // Scaling the weights by 10 re-estimates σ̂ by 10: the whitened term stays −m/2.
    let big: Vec<f64> = wv.iter().map(|x| 10.0 * x).collect();
    let got = prior_log_prob(&mut host, &prior, &[(w(&[2, 3]), big.clone())]).unwrap();
    let v = big.iter().map(|x| x * x).sum::<f64>() / 6.0;
    assert!((got - (-3.0 - 3.0 * v.ln() - 6.0 * HALF_LN_2PI)).abs() < 1e-10, "{got}");
}

#[test]
fn stacked_chains_get_their_own_variance() {
    // Two chains of a [3] tensor stacked as [2, 3]: each chain's σ̂² is its own mean square.
    let (c1, c2) = (vec![1.0, -2.0, 0.5], vec![10.0, 0.0, -3.0]);
    let prior = prior_box::<EmpiricalBayes>("{}").unwrap();
    let mut host = CpuHost::new(1);
    let info = w(&[3]);
    let stacked = {
        let mut s = c1.clone();
        s.extend(&c2);
        s
    };
    // The stacked tensor has shape [2, 3] while its description says [3].
    let want = closed(&c1, 0.01).0 + closed(&c2, 0.01).0;
    let author: EmpiricalBayes = EmpiricalBayes::new(&Params::parse("{}", &EmpiricalBayes::params()).unwrap()).unwrap();
    let together = stacked_log_prob(&mut host, &author, &info, &stacked);
    assert!((together - want).abs() < 1e-12 * want.abs(), "{together} vs {want}");
    let apart = prior_log_prob(&mut host, &prior, &[(info.clone(), c1)]).unwrap()
        + prior_log_prob(&mut host, &prior, &[(info, c2)]).unwrap();
    assert!((together - apart).abs() < 1e-12 * want.abs());
}

/// log p of a [2, ...] tensor described by `info` (the host's batched view).
fn stacked_log_prob(host: &mut CpuHost, prior: &EmpiricalBayes, info: &ParamInfo, data: &[f64]) -> f64 {
    let mut shape = vec![2i64];
    shape.extend(info.shape.iter());
    let id = host.insert(&shape, data);
    let r = host.with_ops(|ops| {
        let t = ops.borrow(id);
        let lp = prior.log_prob(ops, std::slice::from_ref(&t), std::slice::from_ref(info))?;
        Ok::<f64, String>(lp.item())
    });
    r.unwrap()
}

#[test]
fn there_are_no_draws() {
    // Improper and parameter-dependent: nothing to draw from, for any role.
    let prior = prior_box::<EmpiricalBayes>("{}").unwrap();
    let mut host = CpuHost::new(7);
    assert!(prior_sample_moments(&mut host, &prior, &w(&[20, 25]), 1).unwrap().is_none());
    assert!(prior_sample_moments(&mut host, &prior, &b(&[5]), 1).unwrap().is_none());
}

#[test]
fn suite_verdicts_state_that_it_is_not_a_proper_prior() {
    let checks = cpu_prior::<EmpiricalBayes>("{}");
    for c in &checks {
        eprintln!("empirical-bayes: {c}");
    }
    let failed =
        |name: &str| checks.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no check {name}")).failed();
    assert!(!failed("log_prob finite"));
    assert!(!failed("log_prob additive over stacked chains"));
    // −x/σ̂² with σ̂² held fixed is also the derivative of the value (σ̂² maximises it over σ²).
    assert!(!failed("grad_log_prob vs finite differences"));
    // No draws, so the Stein check has nothing to test (a note, not a failure).
    assert!(!failed("samples follow log_prob"));
    assert!(checks.iter().all(|c| !c.failed()), "`ablate plugins check` must pass the priors library");
}
