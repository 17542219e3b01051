//! How well a score separates positives from negatives (OOD detection: positive = an
//! out-of-distribution point, score = predictive entropy, or 1 − max-probability).
//!
//! - AUROC: the area under the ROC curve with tied scores joined by a straight segment
//!   (scikit-learn's `roc_auc_score`), which equals P(score⁺ > score⁻) + ½ P(score⁺ = score⁻);
//! - AUPRC: average precision Σ_j (R_j − R_{j−1}) P_j over the distinct score thresholds from
//!   the highest down (scikit-learn's `average_precision_score`, no interpolation).
//!
//! Both are NaN without at least one positive and one negative.

/// (score, is positive) sorted by score, highest first; groups of equal scores as
/// (positives, negatives) counts.
fn tie_groups(scores: &[f64], positive: &[bool]) -> Vec<(f64, f64)> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut groups: Vec<(f64, f64)> = Vec::new();
    let mut last = None;
    for i in order {
        let (p, n) = if positive[i] { (1.0, 0.0) } else { (0.0, 1.0) };
        match (last, groups.last_mut()) {
            (Some(s), Some(g)) if s == scores[i] => {
                g.0 += p;
                g.1 += n;
            }
            _ => groups.push((p, n)),
        }
        last = Some(scores[i]);
    }
    groups
}

fn counts(positive: &[bool]) -> (f64, f64) {
    let p = positive.iter().filter(|&&b| b).count() as f64;
    (p, positive.len() as f64 - p)
}

/// Area under the ROC curve of `scores` for the labels `positive`.
pub fn auroc(scores: &[f64], positive: &[bool]) -> f64 {
    let (np, nn) = counts(positive);
    if np == 0.0 || nn == 0.0 || scores.iter().any(|s| s.is_nan()) {
        return f64::NAN;
    }
    // Trapezoids between successive ROC points (one per distinct threshold).
    let (mut tp, mut fp, mut area) = (0.0, 0.0, 0.0);
    for (p, n) in tie_groups(scores, positive) {
        area += n * (tp + p / 2.0);
        tp += p;
        fp += n;
    }
    debug_assert_eq!(fp, nn);
    area / (np * nn)
}

/// Average precision of `scores` for the labels `positive`.
pub fn auprc(scores: &[f64], positive: &[bool]) -> f64 {
    let (np, nn) = counts(positive);
    if np == 0.0 || nn == 0.0 || scores.iter().any(|s| s.is_nan()) {
        return f64::NAN;
    }
    let (mut tp, mut fp, mut ap) = (0.0, 0.0, 0.0);
    for (p, n) in tie_groups(scores, positive) {
        tp += p;
        fp += n;
        if p > 0.0 {
            ap += (p / np) * (tp / (tp + fp));
        }
    }
    ap
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_reversed_and_all_tied() {
        let pos = [true, true, false, false];
        assert_eq!(auroc(&[0.9, 0.8, 0.2, 0.1], &pos), 1.0);
        assert_eq!(auroc(&[0.1, 0.2, 0.8, 0.9], &pos), 0.0);
        assert_eq!(auroc(&[0.5; 4], &pos), 0.5);
        assert_eq!(auprc(&[0.9, 0.8, 0.2, 0.1], &pos), 1.0);
        // All tied: one threshold, precision 1/2 at recall 1.
        assert_eq!(auprc(&[0.5; 4], &pos), 0.5);
        assert!(auroc(&[0.1, 0.2], &[true, true]).is_nan());
    }
}
