//! Every built-in prior passes the conformance suite (`ablate_sdk::testkit::suite`) on the
//! test kit's f64 host; `core/engine/tests/suite.rs` runs the same suite on the libtorch host.
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use ablate_plugin_priors::*;
use ablate_sdk::testkit::suite::{assert_all_pass, cpu_prior, Outcome};

#[test]
fn every_builtin_prior_passes_the_suite() {
    for (name, checks) in [
        ("gaussian", cpu_prior::<Gaussian>("{}")),
        ("he-gaussian", cpu_prior::<HeGaussian>("{}")),
        ("laplace", cpu_prior::<Laplace>("{}")),
        ("student-t", cpu_prior::<StudentT>("{}")),
        ("cauchy", cpu_prior::<Cauchy>("{}")),
        ("spike-slab", cpu_prior::<SpikeSlab>("{}")),
        ("flat", cpu_prior::<Flat>("{}")),
    ] {
        for c in &checks {
            eprintln!("{name}: {c}");
        }
        assert_all_pass(name, &checks);
        // Every check ran (a prior that fails `log_prob finite` stops after it).
        assert_eq!(checks.len(), 5, "{name}");
    }
}

#[test]
fn the_declared_isotropic_precisions_are_checked_not_skipped() {
    for (name, checks) in [
        ("gaussian", cpu_prior::<Gaussian>(r#"{"scale": 0.6}"#)),
        ("he-gaussian", cpu_prior::<HeGaussian>("{}")),
        ("flat", cpu_prior::<Flat>("{}")),
    ] {
        let c = checks.iter().find(|c| c.name == "isotropic precision vs finite differences").unwrap();
        assert!(matches!(c.outcome, Outcome::Pass(_)), "{name}: {c}");
    }
    let laplace = cpu_prior::<Laplace>("{}");
    let c = laplace.iter().find(|c| c.name == "isotropic precision vs finite differences").unwrap();
    assert!(matches!(c.outcome, Outcome::Note(_)), "laplace declares none: {c}");
}

#[test]
fn the_closed_form_gradients_are_checked_not_skipped() {
    for (name, checks) in [("gaussian", cpu_prior::<Gaussian>("{}")), ("laplace", cpu_prior::<Laplace>("{}"))] {
        let g = checks.iter().find(|c| c.name == "grad_log_prob vs finite differences").unwrap();
        assert!(matches!(g.outcome, Outcome::Pass(_)), "{name}: {g}");
        let s = checks.iter().find(|c| c.name == "samples follow log_prob").unwrap();
        assert!(matches!(s.outcome, Outcome::Pass(_)), "{name}: {s}");
    }
}
