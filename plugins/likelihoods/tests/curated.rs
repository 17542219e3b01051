//! `curated` (Aitchison 2021): S = 1 is `categorical` exactly; S = 2, 3 by hand.
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use ablate_plugin_likelihoods::{Categorical, Curated, Tempered};
use ablate_sdk::testkit::CpuHost;
use ablate_sdk::{Factory, Likelihood, ModelToggles, NormKind, Params};

fn new<L: Factory>(json: &str) -> Result<L, String> {
    L::new(&Params::parse(json, &L::params())?)
}

fn nll_of<L: Likelihood>(lik: &L, logits: &[[f64; 3]], labels: &[usize]) -> f64 {
    let mut host = CpuHost::new(1);
    let flat: Vec<f64> = logits.iter().flatten().cloned().collect();
    let l = host.insert(&[logits.len() as i64, 3], &flat);
    let y = host.insert(&[labels.len() as i64], &labels.iter().map(|&y| y as f64).collect::<Vec<_>>());
    let r = host.with_ops(|ops| Ok::<f64, String>(lik.nll(ops, &ops.borrow(l), &ops.borrow(y))?.item()));
    assert!(host.take_error().is_none());
    r.unwrap()
}

const LOGITS: [[f64; 3]; 2] = [[0.0, 0.0, 0.0], [2.0, 0.0, -1.0]];
const LABELS: [usize; 2] = [1, 0];

#[test]
fn one_annotator_is_the_categorical_likelihood_exactly() {
    let cur = new::<Curated>("{}").unwrap();
    assert_eq!(cur.annotators(), 1);
    let cat = new::<Categorical>("{}").unwrap();
    assert_eq!(nll_of(&cur, &LOGITS, &LABELS).to_bits(), nll_of(&cat, &LOGITS, &LABELS).to_bits());
    assert_eq!(cur.model(), ModelToggles { norm: NormKind::None, dropout: 0.0 });
    assert_eq!(cur.effective_n(1234), cat.effective_n(1234));
}

#[test]
fn s_annotators_by_hand() {
    // Row 1: uniform over 3 classes, p(y) = 1/3, so -log p(y)^S = S·ln 3.
    // Row 2: p(0) = e²/(e² + 1 + e⁻¹).
    let p2 = 2f64.exp() / (2f64.exp() + 1.0 + (-1f64).exp());
    for s in [2i64, 3] {
        // Consensus probability of S annotators: p^S; NLL = mean over rows of -ln p^S.
        let want = (-(1.0f64 / 3.0).powi(s as i32).ln() - p2.powi(s as i32).ln()) / 2.0;
        let cur = new::<Curated>(&format!(r#"{{"annotators": {s}}}"#)).unwrap();
        let got = nll_of(&cur, &LOGITS, &LABELS);
        assert!((got - want).abs() < 1e-12, "S = {s}: {got} vs {want}");
        // The same as likelihood-only tempering with T_lik = 1/S.
        let tempered = new::<Tempered>(&format!(r#"{{"likelihood_temperature": {}}}"#, 1.0 / s as f64)).unwrap();
        assert!((got - nll_of(&tempered, &LOGITS, &LABELS)).abs() < 1e-12);
    }
    // S = 3 on row 1 alone: exactly 3 ln 3.
    let cur = new::<Curated>(r#"{"annotators": 3}"#).unwrap();
    let got = nll_of(&cur, &LOGITS[..1], &LABELS[..1]);
    assert!((got - 3.0 * 3f64.ln()).abs() < 1e-12, "{got}");
}

#[test]
fn annotators_must_be_a_positive_integer() {
    for bad in [r#"{"annotators": 0}"#, r#"{"annotators": -2}"#, r#"{"annotators": 1.5}"#] {
        assert!(new::<Curated>(bad).is_err(), "{bad} accepted");
    }
}
