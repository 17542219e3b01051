//! `correlated-normal`: a Gaussian over the spatial positions of each convolution kernel whose
//! covariance decays with the distance between positions (the spatially correlated prior of
//! Fortuin et al. 2022, "Bayesian neural network priors revisited", who found CNN filters
//! spatially correlated; the cold-posterior paper names better priors as the prime suspect).
//!
//! **Convolution kernels** (role `weight` with at least 3 dimensions: [out, in, k] or
//! [out, in, kh, kw]): each (out, in) channel pair holds one vector v of the P kernel
//! positions (P = k or kh·kw), independent over channel pairs, with
//!
//! ```text
//! v ~ N(0, Σ),   Σ = σ²·(K + ε·I)/(1 + ε),   K_ij = exp(−d_ij² / (2ℓ²))
//! log p(v) = −½ vᵀΣ⁻¹v − ½ ln det Σ − (P/2) ln 2π
//! ∇ log p(v) = −Σ⁻¹ v
//! ```
//! d_ij is the Euclidean distance between positions i and j on the kernel grid (unit spacing),
//! ℓ the `lengthscale`, σ the `scale`, ε the `jitter` (keeps Σ positive definite when ℓ is
//! large; the division by 1 + ε keeps every position's marginal variance exactly σ², so a 1×1
//! kernel, or ℓ → 0, is the plain N(0, σ²)). Σ is factorised once per kernel shape in f64
//! (Cholesky, Σ = L Lᵀ); the host computes vᵀΣ⁻¹v with one `matmul` over all kernels.
//!
//! **Every other covered tensor** (dense weights, biases, and with `roles` also normalisation
//! parameters) gets the plain isotropic N(0, σ²) of `gaussian`.
//!
//! **Draws** (convolution kernels): v = L ξ with ξ ~ N(0, I) from `randn_like`, exact.
//!
//! **Batched chains.** The host passes each tensor as [K, ...shape]; vectors are taken over the
//! trailing P positions, so log p is the sum over chains (the suite's additivity check).
//!
//! Needs the host ops `matmul`, `reshape` and `constant_like` (SDK table additions).

use ablate_sdk::prelude::*;

use crate::gaussian::gaussian_log_prob;
use crate::{grad_covered, sum_covered, Roles, HALF_LN_2PI};

pub struct CorrelatedNormal {
    scale: f64,
    lengthscale: f64,
    jitter: f64,
    roles: Roles,
}

/// Σ⁻¹, L (Σ = L Lᵀ) and ln det Σ of one kernel shape, row-major P×P.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelCovariance {
    /// Number of kernel positions P.
    pub positions: usize,
    /// Σ, row-major.
    pub cov: Vec<f64>,
    /// Σ⁻¹, row-major.
    pub precision: Vec<f64>,
    /// Lower Cholesky factor of Σ, row-major.
    pub chol: Vec<f64>,
    /// ln det Σ.
    pub log_det: f64,
}

/// Grid coordinates of every position of a kernel with spatial shape `spatial`, row-major.
fn coordinates(spatial: &[i64]) -> Vec<Vec<f64>> {
    let p: i64 = spatial.iter().product();
    (0..p)
        .map(|mut idx| {
            let mut c = vec![0.0; spatial.len()];
            for (d, &size) in spatial.iter().enumerate().rev() {
                c[d] = (idx % size) as f64;
                idx /= size;
            }
            c
        })
        .collect()
}

/// Lower Cholesky factor of the symmetric P×P matrix `a` (row-major); `None` if it is not
/// positive definite.
fn cholesky(a: &[f64], p: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; p * p];
    for i in 0..p {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i * p + k] * l[j * p + k]).sum();
            if i == j {
                let d = a[i * p + i] - s;
                if d.is_nan() || d <= 0.0 {
                    return None;
                }
                l[i * p + i] = d.sqrt();
            } else {
                l[i * p + j] = (a[i * p + j] - s) / l[j * p + j];
            }
        }
    }
    Some(l)
}

/// (L Lᵀ)⁻¹ from the lower factor L, by solving L Lᵀ X = I column by column.
fn inverse_from_cholesky(l: &[f64], p: usize) -> Vec<f64> {
    let mut inv = vec![0.0; p * p];
    for col in 0..p {
        // L y = e_col
        let mut y = vec![0.0; p];
        for i in 0..p {
            let rhs = if i == col { 1.0 } else { 0.0 };
            let s: f64 = (0..i).map(|k| l[i * p + k] * y[k]).sum();
            y[i] = (rhs - s) / l[i * p + i];
        }
        // Lᵀ x = y
        let mut x = vec![0.0; p];
        for i in (0..p).rev() {
            let s: f64 = (i + 1..p).map(|k| l[k * p + i] * x[k]).sum();
            x[i] = (y[i] - s) / l[i * p + i];
        }
        for (i, v) in x.into_iter().enumerate() {
            inv[i * p + col] = v;
        }
    }
    inv
}

impl CorrelatedNormal {
    /// Σ and its factors for a kernel of spatial shape `spatial` (the dimensions after
    /// [out, in]).
    pub fn covariance(&self, spatial: &[i64]) -> Result<KernelCovariance, String> {
        let coords = coordinates(spatial);
        let p = coords.len();
        if p == 0 {
            return Err(format!("correlated-normal: kernel with spatial shape {spatial:?} has no positions"));
        }
        let (s2, l2, eps) = (self.scale * self.scale, self.lengthscale * self.lengthscale, self.jitter);
        let mut cov = vec![0.0; p * p];
        for i in 0..p {
            for j in 0..p {
                let d2: f64 = coords[i].iter().zip(&coords[j]).map(|(a, b)| (a - b) * (a - b)).sum();
                let k = (-d2 / (2.0 * l2)).exp() + if i == j { eps } else { 0.0 };
                cov[i * p + j] = s2 * k / (1.0 + eps);
            }
        }
        let chol = cholesky(&cov, p).ok_or_else(|| {
            format!(
                "correlated-normal: the covariance of a {spatial:?} kernel with lengthscale {} is not positive \
                 definite in f64; raise `jitter` (now {}) or lower `lengthscale`",
                self.lengthscale, self.jitter
            )
        })?;
        let log_det = 2.0 * (0..p).map(|i| chol[i * p + i].ln()).sum::<f64>();
        let precision = inverse_from_cholesky(&chol, p);
        Ok(KernelCovariance { positions: p, cov, precision, chol, log_det })
    }

    /// The spatial shape of a convolution kernel (`None` for other tensors).
    fn kernel_spatial(info: &ParamInfo) -> Option<&[i64]> {
        (info.role == Role::Weight && info.shape.len() >= 3).then(|| &info.shape.as_slice()[2..])
    }

    fn kernel_log_prob<'o>(&self, ops: Ops<'o>, x: &Tensor<'o>, spatial: &[i64]) -> Result<Tensor<'o>, String> {
        let c = self.covariance(spatial)?;
        let p = c.positions as i64;
        let flat = x.reshape(&[-1, p]);
        let prec = ops.constant(x, &[p, p], &c.precision);
        let quad = (flat.matmul(&prec) * &flat).sum();
        let vectors = x.shape().iter().product::<i64>() as f64 / p as f64;
        Ok(quad.affine(-0.5, -vectors * (0.5 * c.log_det + p as f64 * HALF_LN_2PI)))
    }
}

impl Factory for CorrelatedNormal {
    const NAME: &'static str = "correlated-normal";
    const DESCRIPTION: &'static str = "Gaussian over each conv kernel's positions, covariance σ²·exp(−d²/2ℓ²) \
                                       (Fortuin et al. 2022); other tensors N(0, σ²)";

    fn params() -> Vec<ParamSpec> {
        vec![
            ParamSpec::float("scale", 1.0, "marginal standard deviation σ of every element").at_least(1e-12),
            ParamSpec::float(
                "lengthscale",
                1.0,
                "ℓ of the squared-exponential correlation exp(−d²/(2ℓ²)) between kernel positions d apart \
                 (grid spacing 1)",
            )
            .range(1e-6, 100.0),
            ParamSpec::float("jitter", 1e-4, "ε added to the correlation's diagonal (positive definiteness)")
                .range(0.0, 1.0),
            Roles::spec(),
        ]
    }

    fn new(p: &Params) -> Result<Self, String> {
        Ok(Self {
            scale: p.f64("scale"),
            lengthscale: p.f64("lengthscale"),
            jitter: p.f64("jitter"),
            roles: Roles::from_params(p)?,
        })
    }
}

impl Prior for CorrelatedNormal {
    fn log_prob<'o>(&self, ops: Ops<'o>, params: &[Tensor<'o>], infos: &[ParamInfo]) -> Result<Tensor<'o>, String> {
        sum_covered(&self.roles, params, infos, |x, info| match Self::kernel_spatial(info) {
            Some(spatial) => self.kernel_log_prob(ops, x, spatial),
            None => Ok(gaussian_log_prob(x, self.scale)),
        })
    }

    /// −Σ⁻¹v per kernel vector; −x/σ² elsewhere.
    fn grad_log_prob<'o>(
        &self,
        ops: Ops<'o>,
        params: &[Tensor<'o>],
        infos: &[ParamInfo],
    ) -> Result<Option<Vec<Tensor<'o>>>, String> {
        grad_covered(&self.roles, ops, params, infos, |x, info| match Self::kernel_spatial(info) {
            Some(spatial) => {
                let c = self.covariance(spatial)?;
                let p = c.positions as i64;
                let prec = ops.constant(x, &[p, p], &c.precision);
                Ok(-x.reshape(&[-1, p]).matmul(&prec).reshape(&x.shape()))
            }
            None => Ok(x * (-1.0 / (self.scale * self.scale))),
        })
    }

    fn sample<'o>(&self, ops: Ops<'o>, info: &ParamInfo, like: &Tensor<'o>) -> Result<Option<Tensor<'o>>, String> {
        if !self.roles.covers(info.role) {
            return Ok(None);
        }
        match Self::kernel_spatial(info) {
            Some(spatial) => {
                let c = self.covariance(spatial)?;
                let p = c.positions;
                // Row vectors: w = ξ Lᵀ, i.e. w_i = Σ_j L_ij ξ_j.
                let lt: Vec<f64> = (0..p * p).map(|k| c.chol[(k % p) * p + k / p]).collect();
                let lt = ops.constant(like, &[p as i64, p as i64], &lt);
                let xi = ops.randn_like(like).reshape(&[-1, p as i64]);
                Ok(Some(xi.matmul(&lt).reshape(&like.shape())))
            }
            None => Ok(Some(ops.randn_like(like) * self.scale)),
        }
    }
}
