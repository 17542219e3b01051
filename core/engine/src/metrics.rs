//! Metrics of the ensemble predictive p̄(y|x) = (1/M) Σ_m p(y|x, θ_m) (mean of member
//! probabilities, as the paper's reference code does), and the same metrics as the ensemble grows 1..M members.
//!
//! Definitions (N test examples, K classes, o_i the one-hot label):
//! - accuracy: mean 1[argmax p̄ = y]; NLL: mean −log p̄_y; SE of both: sqrt(var/(N−1)) with the
//!   population variance over examples (the reference's `StandardError`);
//! - Gibbs accuracy / NLL: the mean over members of each member's accuracy / NLL;
//! - Brier: the proper score mean Σ_k (p̄_k − o_k)² in [0, 2] (the reference reports this − 1);
//!   decomposition over bins of the predicted class j = argmax p̄ (Bröcker 2009):
//!   uncertainty Σ_k ō_k(1 − ō_k), resolution Σ_j (n_j/N)‖ȳ_j − ō‖², reliability
//!   Σ_j (n_j/N)‖f̄_j − ȳ_j‖² with f̄_j, ȳ_j the mean forecast and label distribution of bin j;
//!   Brier = reliability − resolution + uncertainty holds exactly when forecasts are constant
//!   within bins and approximately otherwise;
//! - ECE: Σ_b (n_b/N)|acc_b − conf_b| over `bins` equal-width bins of the confidence max p̄.

/// Predicted class probabilities of one member on the test set, row-major N×K.
#[derive(Debug, Clone)]
pub struct MemberProbs {
    pub probs: Vec<f32>,
}

pub use ablate_records::{EnsembleMetrics, GrowthPoint};

const PROB_FLOOR: f64 = 1e-30;

fn mean_se(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, if n > 1.0 { (var / (n - 1.0)).sqrt() } else { f64::NAN })
}

fn argmax(row: &[f64]) -> usize {
    let mut best = 0;
    for (k, &p) in row.iter().enumerate() {
        if p > row[best] {
            best = k;
        }
    }
    best
}

/// Accuracy and NLL of a single probability table (N×K, f64).
fn accuracy_nll(p: &[f64], labels: &[i64], k: usize) -> (Vec<f64>, Vec<f64>) {
    labels
        .iter()
        .enumerate()
        .map(|(i, &y)| {
            let row = &p[i * k..(i + 1) * k];
            let correct = f64::from(u8::from(argmax(row) == y as usize));
            (correct, -(row[y as usize].max(PROB_FLOOR)).ln())
        })
        .unzip()
}

fn brier_parts(p: &[f64], labels: &[i64], k: usize) -> (f64, f64, f64, f64) {
    let n = labels.len();
    let mut brier = 0.0;
    let mut label_freq = vec![0.0; k];
    let mut bin_count = vec![0.0; k];
    let mut bin_forecast = vec![vec![0.0; k]; k];
    let mut bin_labels = vec![vec![0.0; k]; k];
    for (i, &y) in labels.iter().enumerate() {
        let row = &p[i * k..(i + 1) * k];
        let y = y as usize;
        brier += row.iter().enumerate().map(|(c, &q)| (q - f64::from(u8::from(c == y))).powi(2)).sum::<f64>();
        label_freq[y] += 1.0;
        let j = argmax(row);
        bin_count[j] += 1.0;
        for c in 0..k {
            bin_forecast[j][c] += row[c];
        }
        bin_labels[j][y] += 1.0;
    }
    let nf = n as f64;
    let obar: Vec<f64> = label_freq.iter().map(|c| c / nf).collect();
    let uncertainty = obar.iter().map(|o| o * (1.0 - o)).sum();
    let (mut resolution, mut reliability) = (0.0, 0.0);
    for j in 0..k {
        if bin_count[j] == 0.0 {
            continue;
        }
        let w = bin_count[j] / nf;
        let ybar: Vec<f64> = bin_labels[j].iter().map(|c| c / bin_count[j]).collect();
        resolution += w * ybar.iter().zip(&obar).map(|(a, b)| (a - b).powi(2)).sum::<f64>();
        reliability += w * bin_forecast[j].iter().zip(&ybar).map(|(f, y)| (f / bin_count[j] - y).powi(2)).sum::<f64>();
    }
    (brier / nf, reliability, resolution, uncertainty)
}

fn ece(p: &[f64], labels: &[i64], k: usize, bins: usize) -> f64 {
    let mut count = vec![0.0; bins];
    let mut conf = vec![0.0; bins];
    let mut acc = vec![0.0; bins];
    for (i, &y) in labels.iter().enumerate() {
        let row = &p[i * k..(i + 1) * k];
        let j = argmax(row);
        let c = row[j];
        let b = ((c * bins as f64) as usize).min(bins - 1);
        count[b] += 1.0;
        conf[b] += c;
        acc[b] += f64::from(u8::from(j == y as usize));
    }
    let n = labels.len() as f64;
    (0..bins).filter(|&b| count[b] > 0.0).map(|b| (count[b] / n) * (acc[b] / count[b] - conf[b] / count[b]).abs()).sum()
}

/// Ensemble metrics of `members` (each N×K) against `labels`.
pub fn ensemble_metrics(members: &[MemberProbs], labels: &[i64], classes: usize, ece_bins: usize) -> EnsembleMetrics {
    assert!(!members.is_empty(), "ensemble_metrics needs at least one member");
    let mean = mean_probs(members);
    let (correct, nll) = accuracy_nll(&mean, labels, classes);
    let (accuracy, accuracy_se) = mean_se(&correct);
    let (nll_mean, nll_se) = mean_se(&nll);
    let (mut gibbs_accuracy, mut gibbs_nll) = (0.0, 0.0);
    for m in members {
        let p: Vec<f64> = m.probs.iter().map(|&v| f64::from(v)).collect();
        let (c, l) = accuracy_nll(&p, labels, classes);
        gibbs_accuracy += mean_se(&c).0 / members.len() as f64;
        gibbs_nll += mean_se(&l).0 / members.len() as f64;
    }
    let (brier, brier_reliability, brier_resolution, brier_uncertainty) = brier_parts(&mean, labels, classes);
    EnsembleMetrics {
        accuracy,
        accuracy_se,
        nll: nll_mean,
        nll_se,
        gibbs_accuracy,
        gibbs_nll,
        brier,
        brier_reliability,
        brier_resolution,
        brier_uncertainty,
        ece: ece(&mean, labels, classes, ece_bins),
    }
}

fn mean_probs(members: &[MemberProbs]) -> Vec<f64> {
    let mut mean = vec![0.0f64; members[0].probs.len()];
    for m in members {
        for (acc, &v) in mean.iter_mut().zip(&m.probs) {
            *acc += f64::from(v);
        }
    }
    let inv = 1.0 / members.len() as f64;
    mean.iter_mut().for_each(|v| *v *= inv);
    mean
}

/// Metrics of the ensembles of the first 1, 2, …, M members.
pub fn growth_curve(members: &[MemberProbs], labels: &[i64], classes: usize, ece_bins: usize) -> Vec<GrowthPoint> {
    use rayon::prelude::*;
    (1..=members.len())
        .into_par_iter()
        .map(|m| {
            let mean = mean_probs(&members[..m]);
            let (correct, nll) = accuracy_nll(&mean, labels, classes);
            GrowthPoint {
                members: m,
                accuracy: mean_se(&correct).0,
                nll: mean_se(&nll).0,
                brier: brier_parts(&mean, labels, classes).0,
                ece: ece(&mean, labels, classes, ece_bins),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(rows: &[[f32; 2]]) -> MemberProbs {
        MemberProbs { probs: rows.iter().flatten().copied().collect() }
    }

    #[test]
    fn hand_computed_two_members() {
        // 3 examples, 2 classes, labels 0, 1, 1.
        let a = member(&[[0.9, 0.1], [0.4, 0.6], [0.7, 0.3]]);
        let b = member(&[[0.7, 0.3], [0.2, 0.8], [0.5, 0.5]]);
        let labels = [0, 1, 1];
        let m = ensemble_metrics(&[a.clone(), b.clone()], &labels, 2, 10);
        // Mean probs: [0.8,0.2], [0.3,0.7], [0.6,0.4] -> predictions 0,1,0 -> accuracy 2/3.
        assert!((m.accuracy - 2.0 / 3.0).abs() < 1e-12);
        let nll = -((0.8f64).ln() + (0.7f64).ln() + (0.4f64).ln()) / 3.0;
        assert!((m.nll - nll).abs() < 1e-6, "{} vs {nll}", m.nll);
        // Accuracy SE: population var of (1,1,0) = 2/9, / (N-1) = 2 -> sqrt(1/9).
        assert!((m.accuracy_se - (1.0f64 / 9.0).sqrt()).abs() < 1e-12);
        // Gibbs: member a predicts 0,1,0 (2/3); b predicts 0,1,tie->0 (2/3).
        assert!((m.gibbs_accuracy - 2.0 / 3.0).abs() < 1e-12);
        let gnll_a = -((0.9f64).ln() + (0.6f64).ln() + (0.3f64).ln()) / 3.0;
        let gnll_b = -((0.7f64).ln() + (0.8f64).ln() + (0.5f64).ln()) / 3.0;
        assert!((m.gibbs_nll - (gnll_a + gnll_b) / 2.0).abs() < 1e-6);
        // Brier: ((0.2²+0.2²) + (0.3²+0.3²) + (0.6²+0.6²)) / 3.
        let brier = (0.08 + 0.18 + 0.72) / 3.0;
        assert!((m.brier - brier).abs() < 1e-6, "{}", m.brier);
        // Uncertainty: label freq (1/3, 2/3) -> 2·(1/3)(2/3) = 4/9.
        assert!((m.brier_uncertainty - 4.0 / 9.0).abs() < 1e-12);
        // ECE: confidences 0.8 (correct), 0.7 (correct), 0.6 (wrong) in bins 8, 7, 6.
        let ece = (0.2 + 0.3 + 0.6) / 3.0;
        assert!((m.ece - ece).abs() < 1e-6, "{}", m.ece);
        // Growth: 1 member = member a alone; 2 = the ensemble.
        let g = growth_curve(&[a, b], &labels, 2, 10);
        assert_eq!(g.len(), 2);
        assert!((g[0].nll - gnll_a).abs() < 1e-6);
        assert!((g[1].nll - nll).abs() < 1e-6);
        assert!((g[1].accuracy - m.accuracy).abs() < 1e-12);
    }

    #[test]
    fn brier_decomposition_is_exact_for_binwise_constant_forecasts() {
        let p = member(&[[0.8, 0.2], [0.8, 0.2], [0.3, 0.7], [0.3, 0.7]]);
        let labels = [0, 1, 1, 1];
        let m = ensemble_metrics(&[p], &labels, 2, 10);
        let rebuilt = m.brier_reliability - m.brier_resolution + m.brier_uncertainty;
        assert!((m.brier - rebuilt).abs() < 1e-6, "{} vs {rebuilt}", m.brier);
    }
}
