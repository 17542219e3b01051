//! Comparing predictive distributions p, q over K classes on the same N test points (row-major
//! N×K probability tables).
//!
//! - agreement: (1/N) Σ_i 1[argmax p_i = argmax q_i] (ties go to the lowest class index, as
//!   NumPy's `argmax`);
//! - total variation: (1/N) Σ_i ½ Σ_k |p_ik − q_ik|.

/// Index of the largest value (the first one on ties).
pub fn argmax(row: &[f64]) -> usize {
    let mut best = 0;
    for (k, &p) in row.iter().enumerate() {
        if p > row[best] {
            best = k;
        }
    }
    best
}

/// Fraction of rows whose top-1 class matches. `p` and `q` have the same length, a multiple of `classes`.
pub fn agreement(p: &[f64], q: &[f64], classes: usize) -> f64 {
    let rows = p.len() / classes.max(1);
    if rows == 0 {
        return f64::NAN;
    }
    let same = p.chunks_exact(classes).zip(q.chunks_exact(classes)).filter(|(a, b)| argmax(a) == argmax(b)).count();
    same as f64 / rows as f64
}

/// Mean over rows of half the L1 distance between the rows.
pub fn total_variation(p: &[f64], q: &[f64], classes: usize) -> f64 {
    let rows = p.len() / classes.max(1);
    if rows == 0 {
        return f64::NAN;
    }
    let sum: f64 = p
        .chunks_exact(classes)
        .zip(q.chunks_exact(classes))
        .map(|(a, b)| 0.5 * a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f64>())
        .sum();
    sum / rows as f64
}

/// Entropy −Σ_k p_k ln p_k of each row (0·ln 0 = 0), in nats.
pub fn entropy(p: &[f64], classes: usize) -> Vec<f64> {
    p.chunks_exact(classes).map(|r| -r.iter().filter(|&&x| x > 0.0).map(|&x| x * x.ln()).sum::<f64>()).collect()
}

/// The largest probability of each row.
pub fn max_probability(p: &[f64], classes: usize) -> Vec<f64> {
    p.chunks_exact(classes).map(|r| r.iter().copied().fold(f64::NEG_INFINITY, f64::max)).collect()
}

/// The mean of member tables (each N×K, float32 as stored) in f64: the ensemble predictive.
pub fn mean_predictive(members: &[&[f32]]) -> Vec<f64> {
    let Some(first) = members.first() else { return Vec::new() };
    let mut mean = vec![0.0f64; first.len()];
    for m in members {
        mean.iter_mut().zip(m.iter()).for_each(|(a, &v)| *a += f64::from(v));
    }
    let inv = 1.0 / members.len() as f64;
    mean.iter_mut().for_each(|v| *v *= inv);
    mean
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_predictives_agree_fully_with_zero_distance() {
        let p = [0.7, 0.2, 0.1, 0.1, 0.1, 0.8, 0.3, 0.4, 0.3];
        assert_eq!(agreement(&p, &p, 3), 1.0);
        assert_eq!(total_variation(&p, &p, 3), 0.0);
    }

    #[test]
    fn disjoint_predictives_agree_nowhere_at_distance_one() {
        // One-hot on different classes for every row.
        let p = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0];
        let q = [0.0, 0.0, 1.0, 1.0, 0.0, 0.0];
        assert_eq!(agreement(&p, &q, 3), 0.0);
        assert_eq!(total_variation(&p, &q, 3), 1.0);
    }

    #[test]
    fn hand_computed_mixed_case() {
        // Row 1: same top class, TV ½(0.2+0.1+0.1) = 0.2; row 2: different, TV ½(0.5+0.5+0) = 0.5.
        let p = [0.6, 0.3, 0.1, 0.5, 0.4, 0.1];
        let q = [0.4, 0.4, 0.2, 0.0, 0.9, 0.1];
        assert_eq!(agreement(&p, &q, 3), 0.5);
        assert!((total_variation(&p, &q, 3) - 0.35).abs() < 1e-12);
    }

    #[test]
    fn entropy_and_max_probability_by_hand() {
        let p = [0.5, 0.5, 1.0, 0.0];
        let h = entropy(&p, 2);
        assert!((h[0] - std::f64::consts::LN_2).abs() < 1e-15);
        assert_eq!(h[1], 0.0);
        assert_eq!(max_probability(&p, 2), vec![0.5, 1.0]);
        let m = mean_predictive(&[&[1.0f32, 0.0][..], &[0.0f32, 1.0][..]]);
        assert_eq!(m, vec![0.5, 0.5]);
    }
}
