//! Conformance of the `__NAME__` prior with the SDK test kit (pure-Rust host, no libtorch).

use __LIBNAME__::__TYPE__;
use ablate_sdk::testkit::suite::{assert_all_pass, cpu_prior, Outcome};
use ablate_sdk::testkit::{
    finite_difference_log_prob_grad, param_info, prior_box, prior_grad_log_prob, prior_logprob_check,
    prior_sample_moments, CpuHost,
};
use ablate_sdk::{ParamInfo, Role};

/// The checks `ablate plugins check` runs (finite log_prob, additive over stacked chains,
/// grad_log_prob vs finite differences, draws that follow log_prob), on the test kit's host.
#[test]
fn passes_the_conformance_suite() {
    for params in ["{}", r#"{"scale": 0.3}"#] {
        assert_all_pass("__NAME__", &cpu_prior::<__TYPE__>(params));
    }
}

const HALF_LN_2PI: f64 = 0.918_938_533_204_672_8;

fn tensors() -> Vec<(ParamInfo, Vec<f64>)> {
    vec![
        (param_info("dense.weight", Role::Weight, &[2, 3], 3, 2, 0), vec![0.0, 0.3, -1.7, 2.5, -0.05, 4.0]),
        (param_info("dense.bias", Role::Bias, &[2], 3, 2, 6), vec![-0.6, 1.1]),
        (param_info("bn.scale", Role::Norm, &[2], 2, 2, 8), vec![0.9, -3.0]),
    ]
}

#[test]
fn log_prob_matches_closed_form() {
    let scale = 2.0;
    let prior = prior_box::<__TYPE__>(r#"{"scale": 2.0}"#).unwrap();
    let want: f64 = tensors()
        .iter()
        .filter(|(i, _)| i.role != Role::Norm)
        .flat_map(|(_, d)| d.clone())
        .map(|x| -x * x / (2.0 * scale * scale) - f64::ln(scale) - HALF_LN_2PI)
        .sum();
    let mut host = CpuHost::new(1);
    prior_logprob_check(&mut host, &prior, &tensors(), want, 1e-12).unwrap();
    assert_eq!(host.live_tensors(), 0, "log_prob leaked tensors");
}

/// log p of two chains stacked along a leading dimension is the sum of each, so cells with this
/// prior can run as batched chains (otherwise they run one chain at a time).
#[test]
fn is_additive_over_stacked_chains() {
    let checks = cpu_prior::<__TYPE__>("{}");
    let c = checks.iter().find(|c| c.name == "log_prob additive over stacked chains").unwrap();
    assert!(matches!(c.outcome, Outcome::Pass(_)), "{c}");
}

#[test]
fn grad_log_prob_matches_finite_differences_of_log_prob() {
    // The plugin's own closed form against the plugin's own log_prob: no hand formula.
    let prior = prior_box::<__TYPE__>(r#"{"scale": 1.5}"#).unwrap();
    let mut host = CpuHost::new(1);
    let closed = prior_grad_log_prob(&mut host, &prior, &tensors()).unwrap().expect("has a closed form");
    let fd = finite_difference_log_prob_grad(&mut host, &prior, &tensors(), 1e-5).unwrap();
    for ((info, _), (c, f)) in tensors().iter().zip(closed.iter().zip(&fd)) {
        for (i, (a, b)) in c.iter().zip(f).enumerate() {
            assert!((a - b).abs() < 1e-6 * (1.0 + b.abs()), "{}[{i}]: grad_log_prob {a} vs finite differences {b}", info.name);
        }
    }
    assert_eq!(host.live_tensors(), 0, "grad_log_prob leaked tensors");
}

#[test]
fn samples_have_the_prior_variance() {
    let prior = prior_box::<__TYPE__>(r#"{"scale": 0.5}"#).unwrap();
    let mut host = CpuHost::new(7);
    let info = param_info("dense.weight", Role::Weight, &[50, 40], 40, 50, 0);
    let m = prior_sample_moments(&mut host, &prior, &info, 20).unwrap().expect("weights are covered");
    assert!(m.shape_ok);
    assert!(m.mean.abs() < 5.0 * m.mean_se, "mean {} ± {}", m.mean, m.mean_se);
    assert!((m.var - 0.25).abs() < 5.0 * m.var_se, "variance {} ± {}", m.var, m.var_se);
    let norm = param_info("bn.scale", Role::Norm, &[4], 4, 4, 0);
    assert!(prior_sample_moments(&mut host, &prior, &norm, 1).unwrap().is_none());
}

#[test]
fn bad_parameters_are_errors() {
    assert!(prior_box::<__TYPE__>(r#"{"scale": -1.0}"#).is_err());
    assert!(prior_box::<__TYPE__>(r#"{"no_such_param": 1}"#).is_err());
}
