//! Draws from non-Gaussian distributions, composed from the host's uniform and normal streams
//! (so they stay on the device and reproducible from the cell's seed).
//!
//! The host offers `randn_like` and `rand_like` only; these helpers build the rest without a
//! data-dependent loop. See `plugins/sdk/README.md` for closed-form recipes (Laplace, logistic,
//! Cauchy, Student-t, mixtures).

use crate::{Ops, Tensor};

/// Proposals per element in [`gamma_like`]: the Marsaglia–Tsang acceptance rate is ≥ 0.95 for
/// shape ≥ 1, so all 8 are rejected with probability < 0.05⁸ ≈ 4e-11 per element.
pub const GAMMA_PROPOSALS: usize = 8;

/// Gamma(`shape`, 1) draws shaped like `like` (mean and variance `shape`), for any `shape` > 0.
///
/// Marsaglia & Tsang (2000) with a fixed budget of [`GAMMA_PROPOSALS`] vectorised proposals per
/// element: each element keeps its first accepted proposal (an element with none accepted,
/// probability < 4e-11, keeps the last proposal). For `shape` < 1 it draws Gamma(shape + 1)·u^{1/shape}.
/// Scale by θ for Gamma(shape, θ); `x.powf(1/p)` of Gamma(1/p) gives the magnitude of a
/// generalised normal with shape p.
///
/// Returns an error for `shape` ≤ 0 or not finite.
pub fn gamma_like<'o>(ops: Ops<'o>, like: &Tensor<'o>, shape: f64) -> Result<Tensor<'o>, String> {
    if !(shape.is_finite() && shape > 0.0) {
        return Err(format!("gamma_like: shape must be a positive number, got {shape}"));
    }
    if shape < 1.0 {
        let boosted = gamma_like(ops, like, shape + 1.0)?;
        // u ∈ (0, 1]: 1 − rand avoids u = 0.
        let u = ops.rand_like(like) * -1.0 + 1.0;
        return Ok(boosted * u.powf(1.0 / shape));
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    let zero = ops.zeros_like(like);
    let mut kept: Option<(Tensor<'o>, Tensor<'o>)> = None;
    for _ in 0..GAMMA_PROPOSALS {
        let z = ops.randn_like(like);
        let v = (&z * c + 1.0).powf(3.0);
        let u = ops.rand_like(like) * -1.0 + 1.0;
        // Accept when v > 0 and ln u < z²/2 + d − d·v + d·ln v.
        let bound = z.square() * 0.5 + d - &v * d + v.clamp(1e-30, f64::INFINITY).ln() * d;
        let accepted = (bound - u.ln()).gt(&zero) * v.gt(&zero);
        let draw = v * d;
        kept = Some(match kept {
            None => (draw, accepted),
            Some((value, done)) => (done.select(&value, &draw), done.maximum(&accepted)),
        });
    }
    let (value, _) = kept.ok_or("gamma_like: no proposal")?;
    Ok(value)
}

#[cfg(all(test, feature = "testkit"))]
mod tests {
    use crate::testkit::CpuHost;

    /// Mean and variance of Gamma(a, 1) are both a; z-tests at 5 standard errors over 40000
    /// draws (se of the mean sqrt(a/N); of the variance sqrt((m₄ − a²)/N) with m₄ = 3a² + 6a).
    #[test]
    fn gamma_draws_have_the_gamma_moments() {
        for (a, seed) in [(0.5, 1), (2.0 / 3.0, 2), (1.0, 3), (1.5, 4), (5.0, 5)] {
            let mut host = CpuHost::new(seed);
            let like = host.insert(&[40_000], &vec![0.0; 40_000]);
            let id = host.with_ops(|ops| super::gamma_like(ops, &ops.borrow(like), a).map(|t| t.into_id())).unwrap();
            assert!(host.take_error().is_none());
            let x = host.get(id).to_vec();
            let n = x.len() as f64;
            let mean = x.iter().sum::<f64>() / n;
            let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
            assert!(x.iter().all(|v| *v > 0.0 && v.is_finite()), "a = {a}");
            let z_mean = (mean - a) / (a / n).sqrt();
            let z_var = (var - a) / ((3.0 * a * a + 6.0 * a - a * a) / n).sqrt();
            assert!(
                z_mean.abs() < 5.0 && z_var.abs() < 5.0,
                "a = {a}: mean {mean} (z {z_mean:.2}), var {var} (z {z_var:.2})"
            );
        }
    }

    #[test]
    fn a_bad_shape_is_an_error() {
        let mut host = CpuHost::new(1);
        let like = host.insert(&[3], &[0.0; 3]);
        let e = host.with_ops(|ops| super::gamma_like(ops, &ops.borrow(like), 0.0).map(|t| t.into_id())).unwrap_err();
        assert!(e.contains("positive"), "{e}");
    }
}
