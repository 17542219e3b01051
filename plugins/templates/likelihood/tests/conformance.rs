//! Checks of the `__NAME__` likelihood: the conformance suite (what `ablate plugins check`
//! runs), and the author trait driven on the test kit's pure-Rust host directly.

use __LIBNAME__::__TYPE__;
use ablate_sdk::testkit::suite::{assert_all_pass, cpu_likelihood};

/// The checks `ablate plugins check` runs (finite per-example-mean NLL, effective n, augment).
#[test]
fn passes_the_conformance_suite() {
    assert_all_pass("__NAME__", &cpu_likelihood::<__TYPE__>("{}"));
}
use ablate_sdk::testkit::{likelihood_box, CpuHost};
use ablate_sdk::{Factory, Likelihood, NormKind, Params};

fn build(json: &str) -> __TYPE__ {
    let params = Params::parse(json, &__TYPE__::params()).unwrap();
    __TYPE__::new(&params).unwrap()
}

#[test]
fn nll_matches_closed_form() {
    let lik = build("{}");
    let logits = [1.0, 2.0, 0.5, -1.0, 0.0, 3.0];
    let labels = [1.0, 2.0];
    let mut want = 0.0;
    for (row, &y) in logits.chunks(3).zip(&labels) {
        let lse = row.iter().map(|v: &f64| v.exp()).sum::<f64>().ln();
        want += lse - row[y as usize];
    }
    want /= 2.0;
    let mut host = CpuHost::new(1);
    let l = host.insert(&[2, 3], &logits);
    let y = host.insert(&[2], &labels);
    let got = host.with_ops(|ops| lik.nll(ops, &ops.borrow(l), &ops.borrow(y)).map(|t| t.item())).unwrap();
    assert!((got - want).abs() < 1e-12, "{got} vs {want}");
}

#[test]
fn clean_model_and_n() {
    let lik = build(r#"{"dropout": 0.1}"#);
    assert_eq!(lik.model().norm, NormKind::None);
    assert_eq!(lik.model().dropout, 0.1);
    assert_eq!(lik.effective_n(5000), 5000.0);
}

#[test]
fn bad_parameters_are_errors() {
    assert!(likelihood_box::<__TYPE__>(r#"{"dropout": 2.0}"#).is_err());
    assert!(likelihood_box::<__TYPE__>("{}").is_ok());
}
