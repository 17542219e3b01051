//! Stored predictions (`eval.store_predictions`) and the out-of-distribution test set
//! (`eval.ood`): what a cell hands back besides its metrics, so that the report can recompute
//! every metric, compare with reference cells and score OOD detection without rerunning.
//!
//! Sizes: 4 bytes per (member, example, class); e.g. 500 digits test images × 10 classes × 10
//! members = 200 kB, the 10,000 MNIST test images × 10 classes × 20 members = 8 MB (the same
//! again for an OOD set of that size).

use ablate_data::Split;
use ablate_grid::config::CellConfig;

use crate::metrics::MemberProbs;
use crate::EngineError;

/// One cell's member predictions: each member's class probabilities (row-major examples ×
/// classes), on the test set and, with `eval.ood`, on the OOD test set.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    pub classes: usize,
    /// Test labels, in the order of the rows.
    pub labels: Vec<i64>,
    pub test: Vec<Vec<f32>>,
    pub ood: Option<Vec<Vec<f32>>>,
}

impl Predictions {
    /// The members as one flat member-major array [members, examples, classes] (`.npy` order).
    pub fn flat(members: &[Vec<f32>]) -> Vec<f32> {
        members.iter().flatten().copied().collect()
    }
}

/// Floor of a probability before its log (as in [`crate::metrics`]).
const PROB_FLOOR: f64 = 1e-30;

/// Each member's mean test log-likelihood (1/N) Σ_i log p(y_i | x_i, θ_m): the per-member
/// quantity whose R-hat across chains the report gives.
pub fn member_log_likelihood(members: &[MemberProbs], labels: &[i64], classes: usize) -> Vec<f64> {
    members
        .iter()
        .map(|m| {
            let n = labels.len().max(1) as f64;
            labels
                .iter()
                .enumerate()
                .map(|(i, &y)| f64::from(m.probs[i * classes + y as usize]).max(PROB_FLOOR).ln())
                .sum::<f64>()
                / n
        })
        .collect()
}

/// Recomputes the ensemble metrics, growth curve and member log-likelihoods of `metrics` from
/// stored predictions (`probs`: [members, examples, classes] flat, member-major), with the
/// same functions the run used; diagnostics and acceptance are kept. `source` names the file.
pub fn recompute(
    metrics: &mut crate::cell::FinalMetrics,
    probs: &[f32],
    labels: &[i64],
    classes: usize,
    ece_bins: usize,
    source: &str,
) -> Result<(), EngineError> {
    let per_member = labels.len() * classes;
    if per_member == 0 || !probs.len().is_multiple_of(per_member) || probs.is_empty() {
        return Err(EngineError::Config(format!(
            "{source}: {} values are not whole members of {} examples × {classes} classes",
            probs.len(),
            labels.len()
        )));
    }
    if let Some(y) = labels.iter().find(|&&y| y < 0 || y as usize >= classes) {
        return Err(EngineError::Config(format!("{source}: label {y} is outside 0..{classes}")));
    }
    let members: Vec<MemberProbs> = probs.chunks_exact(per_member).map(|c| MemberProbs { probs: c.to_vec() }).collect();
    metrics.members = members.len();
    metrics.ensemble = crate::metrics::ensemble_metrics(&members, labels, classes, ece_bins);
    metrics.growth = crate::metrics::growth_curve(&members, labels, classes, ece_bins);
    metrics.member_test_log_likelihood = Some(member_log_likelihood(&members, labels, classes));
    metrics.recomputed_from = Some(source.to_string());
    Ok(())
}

/// The test split of `eval.ood`, read like the cell's own data (same `test_size`, subset rule
/// and normalisation), or `None` without one. The grid checked that it has the cell's image shape.
pub fn load_ood(cfg: &CellConfig) -> Result<Option<Split>, EngineError> {
    let Some(name) = &cfg.eval.ood else { return Ok(None) };
    let mut d = cfg.data.clone();
    d.dataset = name.clone();
    d.path = None;
    d.train_size = Some(1);
    d.label_noise = 0.0;
    let ds = crate::cell::load_data(&d)?;
    Ok(Some(ds.test))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_log_likelihood_by_hand() {
        let a = MemberProbs { probs: vec![0.5, 0.5, 0.25, 0.75] };
        let b = MemberProbs { probs: vec![1.0, 0.0, 0.0, 1.0] };
        let ll = member_log_likelihood(&[a, b], &[0, 1], 2);
        assert!((ll[0] - (0.5f64.ln() + 0.75f64.ln()) / 2.0).abs() < 1e-12);
        assert_eq!(ll[1], 0.0);
    }

    #[test]
    fn flat_is_member_major() {
        assert_eq!(Predictions::flat(&[vec![1.0, 2.0], vec![3.0, 4.0]]), vec![1.0, 2.0, 3.0, 4.0]);
    }
}
