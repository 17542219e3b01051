//! The report's statistics against independent reference implementations, on fixed arrays.
//!
//! Reference values produced once with Python 3.11, NumPy, ArviZ 0.23.4 and scikit-learn
//! (`pip install numpy arviz scikit-learn`), by this script (seeded; the arrays below are its
//! printed, rounded data):
//!
//! ```python
//! rng = np.random.default_rng(20261130)
//! ar = AR(1) chains x_t = 0.6 x_{t-1} + N(0,1), plus 0.3·chain, 4 × 25, rounded to 6 digits
//! small = rng.integers(0, 5, size=(3, 9)).astype(float)
//! az.rhat(a, method="split"); az.ess(a, method="mean")
//! s = rng.normal(size=40).round(1); y = (rng.random(40) < 0.4 + 0.1 * (s > 0)).astype(int)
//! roc_auc_score(y, s); average_precision_score(y, s)
//! ```
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use ablate_reports::stats::mcmc::{ess, split_rhat};
use ablate_reports::stats::ranking::{auprc, auroc};

#[rustfmt::skip]
const AR: [[f64; 25]; 4] = [
    [-0.333191, -1.252558, -2.547794, -1.463102, -1.464234, -1.111348, -0.621234, 0.301178, -0.402818, 0.289181, -0.249929, -0.982847, 1.472318, 0.79575, -0.310231, 0.806614, -1.057588, -1.544904, -0.438765, -0.585097, -0.169533, 2.254366, 2.599678, -0.462051, -0.939403],
    [-0.365776, -0.248067, -0.766026, -1.987572, -0.303996, 0.402385, 1.524769, -1.848689, -0.787734, -0.903541, -0.176234, -0.427835, -1.991172, 0.326274, 0.974811, 0.784285, 1.314563, 0.523294, -0.651208, -1.16256, -0.205494, 1.590913, 1.09958, 0.27697, 0.279884],
    [1.28628, 2.026765, 0.102737, -0.077656, 0.574522, 0.511936, 1.665075, 1.421671, 0.28837, -0.129969, -0.655271, 0.506568, 0.617515, -0.674776, 0.717585, -1.215705, -2.548501, -0.976622, -0.01172, 1.572523, 0.540598, 0.865134, 3.424085, 2.488827, 2.052259],
    [0.448251, 1.316151, 1.592825, 1.610924, 0.237196, -0.159626, 0.736114, 2.134494, 1.322576, 2.30845, 0.398147, 0.318089, 1.070635, 1.210879, 3.347261, 2.075024, 1.340498, -1.55801, -1.057563, -0.838466, 0.720263, 0.452797, 0.637035, 2.781869, 1.993668],
];

#[rustfmt::skip]
const SMALL: [[f64; 9]; 3] = [
    [2.0, 1.0, 1.0, 2.0, 0.0, 4.0, 1.0, 4.0, 3.0],
    [1.0, 0.0, 1.0, 0.0, 0.0, 2.0, 4.0, 0.0, 3.0],
    [1.0, 4.0, 2.0, 1.0, 3.0, 0.0, 2.0, 1.0, 4.0],
];

#[rustfmt::skip]
const SCORES: [f64; 40] = [0.4, 1.9, 0.8, 0.3, 0.5, 0.0, -0.0, -0.2, 0.5, 0.9, -1.4, 2.0, 0.6, -1.2, -0.1, 0.8, -0.4, 0.6, -0.2, -0.1, -0.2, 0.2, -0.6, -2.3, -0.8, -0.1, 1.3, 0.0, 1.1, -1.6, -1.3, 0.5, -0.5, 0.9, 1.7, 1.3, 0.2, 1.0, -0.4, -0.3];
#[rustfmt::skip]
const LABELS: [u8; 40] = [0, 0, 1, 0, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0];

fn chains<const N: usize>(rows: &[[f64; N]]) -> Vec<Vec<f64>> {
    rows.iter().map(|r| r.to_vec()).collect()
}

#[test]
fn split_rhat_and_ess_match_arviz() {
    let ar = chains(&AR);
    let small = chains(&SMALL);
    // ArviZ 0.23.4: az.rhat(a, method="split"), az.ess(a, method="mean").
    assert!((split_rhat(&ar) - 1.1167560514409085).abs() < 1e-6, "{}", split_rhat(&ar));
    assert!((ess(&ar) - 29.767438598013705).abs() < 1e-6, "{}", ess(&ar));
    // Odd draw count (the middle draw is dropped by the split) and many ties.
    assert!((split_rhat(&small) - 1.0701579767670264).abs() < 1e-6, "{}", split_rhat(&small));
    assert!((ess(&small) - 33.12506980107854).abs() < 1e-6, "{}", ess(&small));
}

#[test]
fn auroc_and_auprc_match_scikit_learn_with_ties() {
    let positive: Vec<bool> = LABELS.iter().map(|&l| l == 1).collect();
    // scikit-learn: roc_auc_score(y, s), average_precision_score(y, s).
    assert!((auroc(&SCORES, &positive) - 0.5599999999999999).abs() < 1e-9, "{}", auroc(&SCORES, &positive));
    assert!((auprc(&SCORES, &positive) - 0.4984634757309643).abs() < 1e-9, "{}", auprc(&SCORES, &positive));
}
