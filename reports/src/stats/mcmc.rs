//! Convergence across chains: split-R-hat and effective sample size (ESS) of a scalar traced by
//! several chains (`chains[c][t]`, the same length each; a longer chain is cut to the shortest).
//!
//! The definitions are ArviZ 0.23's `rhat(method="split")` and `ess(method="mean")` (Gelman et
//! al., BDA3 §11.4-11.5; Vehtari et al. 2021 without the rank normalisation):
//!
//! - split: each chain of n draws becomes two chains, its first ⌊n/2⌋ and its last ⌊n/2⌋ draws
//!   (the middle draw of an odd n is dropped);
//! - R-hat over m chains of n draws: W = mean of the chain variances (ddof 1), B = n · variance
//!   of the chain means (ddof 1), R-hat = sqrt(((n − 1)/n · W + B/n) / W); needs ≥ 2 chains and
//!   ≥ 4 draws per chain;
//! - ESS = m·n / τ with τ = −1 + 2 Σ_{t ≤ t_max} ρ̂_t (+ the last even lag, as ArviZ), ρ̂_t =
//!   1 − (W − mean autocovariance at lag t)/var⁺ with var⁺ = (n−1)/n·W + var(chain means),
//!   truncated by Geyer's initial positive sequence and made monotone; τ ≥ 1/log10(m·n).
//!
//! The report's rule: a cell group with R-hat < 1.05 (on the per-member test log-likelihood
//! and on the training NLL trace of the sampling phase) is called converged across chains.

/// R-hat below this is called converged (Vehtari et al. 2021 suggest 1.01 for final results;
/// 1.05 is the looser, older threshold, suited to the few draws of a CPU-scale run).
pub const RHAT_THRESHOLD: f64 = 1.05;

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn var_ddof1(v: &[f64]) -> f64 {
    let m = mean(v);
    v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() as f64 - 1.0)
}

/// Each chain split in two halves (see the module docs), chains cut to the shortest first.
pub fn split_chains(chains: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let n = chains.iter().map(Vec::len).min().unwrap_or(0);
    let half = n / 2;
    let mut out = Vec::with_capacity(chains.len() * 2);
    for c in chains {
        let c = &c[..n];
        out.push(c[..half].to_vec());
        out.push(c[n - half..].to_vec());
    }
    out
}

fn valid(chains: &[Vec<f64>]) -> bool {
    chains.iter().all(|c| c.iter().all(|x| x.is_finite()))
}

/// R-hat of chains without splitting (ArviZ `_rhat`).
fn rhat_of(chains: &[Vec<f64>]) -> f64 {
    let n = chains[0].len() as f64;
    let means: Vec<f64> = chains.iter().map(|c| mean(c)).collect();
    let w = mean(&chains.iter().map(|c| var_ddof1(c)).collect::<Vec<_>>());
    let b = n * var_ddof1(&means);
    ((b / w + n - 1.0) / n).sqrt()
}

/// Split-R-hat; NaN with fewer than 2 chains, fewer than 4 draws, or a non-finite draw.
pub fn split_rhat(chains: &[Vec<f64>]) -> f64 {
    let n = chains.iter().map(Vec::len).min().unwrap_or(0);
    if chains.len() < 2 || n < 4 || !valid(chains) {
        return f64::NAN;
    }
    rhat_of(&split_chains(chains))
}

/// Autocovariance of one chain at lags 0..n, normalised by n (ArviZ `autocov`).
fn autocov(c: &[f64]) -> Vec<f64> {
    let n = c.len();
    let m = mean(c);
    let d: Vec<f64> = c.iter().map(|x| x - m).collect();
    (0..n).map(|t| d[..n - t].iter().zip(&d[t..]).map(|(a, b)| a * b).sum::<f64>() / n as f64).collect()
}

/// ESS of chains without splitting (ArviZ `_ess`).
fn ess_of(chains: &[Vec<f64>]) -> f64 {
    let (m, n) = (chains.len(), chains[0].len());
    let total = (m * n) as f64;
    let (lo, hi) = chains.iter().flatten().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
    if hi - lo < 1e-15 {
        return total;
    }
    let acov: Vec<Vec<f64>> = chains.iter().map(|c| autocov(c)).collect();
    let mean_acov = |t: usize| acov.iter().map(|a| a[t]).sum::<f64>() / m as f64;
    let nf = n as f64;
    let mean_var = mean_acov(0) * nf / (nf - 1.0);
    let mut var_plus = mean_var * (nf - 1.0) / nf;
    if m > 1 {
        var_plus += var_ddof1(&chains.iter().map(|c| mean(c)).collect::<Vec<_>>());
    }
    let mut rho = vec![0.0; n];
    let rho_at = |t: usize| 1.0 - (mean_var - mean_acov(t)) / var_plus;
    let (mut even, mut odd) = (1.0, rho_at(1));
    rho[0] = even;
    rho[1] = odd;
    let mut t = 1usize;
    while t + 3 < n && even + odd > 0.0 {
        even = rho_at(t + 1);
        odd = rho_at(t + 2);
        if even + odd >= 0.0 {
            rho[t + 1] = even;
            rho[t + 2] = odd;
        }
        t += 2;
    }
    // max_t = t − 2 may be −1 (no pair was looked at): then lags 0..=max_t are none.
    let max_t = t as i64 - 2;
    let next = (max_t + 1) as usize;
    if even > 0.0 {
        rho[next] = even;
    }
    let mut t = 1i64;
    while t <= max_t - 2 {
        let u = t as usize;
        if rho[u + 1] + rho[u + 2] > rho[u - 1] + rho[u] {
            rho[u + 1] = (rho[u - 1] + rho[u]) / 2.0;
            rho[u + 2] = rho[u + 1];
        }
        t += 2;
    }
    let tau = -1.0 + 2.0 * rho[..next].iter().sum::<f64>() + rho.get(next).copied().unwrap_or(0.0);
    let tau = tau.max(1.0 / total.log10());
    if rho.iter().any(|r| r.is_nan()) {
        return f64::NAN;
    }
    total / tau
}

/// ESS of the mean over split chains; NaN with fewer than 4 draws per chain or a non-finite draw.
pub fn ess(chains: &[Vec<f64>]) -> f64 {
    let n = chains.iter().map(Vec::len).min().unwrap_or(0);
    if chains.is_empty() || n < 4 || !valid(chains) {
        return f64::NAN;
    }
    ess_of(&split_chains(chains))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Identical chains of a constant: R-hat is undefined (0/0), ESS is the draw count (ArviZ).
    #[test]
    fn degenerate_cases() {
        assert!(split_rhat(&[vec![1.0; 8]]).is_nan(), "one chain");
        assert!(split_rhat(&[vec![1.0, 2.0, 3.0], vec![1.0, 2.0, 3.0]]).is_nan(), "3 draws");
        assert_eq!(ess(&[vec![2.0; 6], vec![2.0; 6]]), 12.0);
        assert!(ess(&[vec![1.0, f64::NAN, 2.0, 3.0]]).is_nan());
    }
}
