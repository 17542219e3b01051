//! `student-t`: Student-t prior with ν degrees of freedom and scale s.
//!
//! ```text
//! p(x) = Γ((ν+1)/2) / (Γ(ν/2) sqrt(νπ) s) · (1 + (x/s)²/ν)^(−(ν+1)/2)
//! log p(θ) = Σ_covered [ lnΓ((ν+1)/2) − lnΓ(ν/2) − ½ ln(νπ) − ln s − (ν+1)/2 · ln(1 + x²/(ν s²)) ]
//! ```
//! Variance s²·ν/(ν−2) for ν > 2; ν = 1 is the Cauchy prior. The constant is computed once in
//! f64 (Lanczos lnΓ).
//!
//! **Draw: Bailey's polar method** (Bailey 1994, Math. Comp. 62:779), exact for every real
//! ν > 0 (not only integers): draw U, V ~ U(−1, 1) and W = U² + V²; accept if 0 < W ≤ 1, then
//! ```text
//! T = U · sqrt( ν (W^(−2/ν) − 1) / W )
//! ```
//! is Student-t(ν) (as ν → ∞ this becomes Marsaglia's polar Gaussian). The rejection runs
//! elementwise on whole tensors for a fixed number of rounds (no device synchronisation): each
//! round accepts with probability π/4, so after 40 rounds an element is still unaccepted with
//! probability 0.2146⁴⁰ ≈ 2·10⁻²⁷; such an element (never seen in practice) is left at 0.
//! The draw is `s·T`.

use ablate_sdk::prelude::*;

use crate::{grad_covered, ln_gamma, numel, sum_covered, Roles};

/// Rejection rounds of the polar method (see the module docs).
pub const POLAR_ROUNDS: usize = 40;

pub struct StudentT {
    df: f64,
    scale: f64,
    roles: Roles,
}

impl StudentT {
    /// Log normalising constant of one element.
    pub fn log_norm(&self) -> f64 {
        let nu = self.df;
        ln_gamma(0.5 * (nu + 1.0)) - ln_gamma(0.5 * nu) - 0.5 * (nu * std::f64::consts::PI).ln() - self.scale.ln()
    }
}

impl Factory for StudentT {
    const NAME: &'static str = "student-t";
    const DESCRIPTION: &'static str = "Student-t prior with df ν and scale s (heavy tails; ν = 1 is Cauchy)";

    fn params() -> Vec<ParamSpec> {
        vec![
            ParamSpec::float("df", 3.0, "degrees of freedom ν (any real ν > 0)").range(1e-3, 1e6),
            ParamSpec::float("scale", 1.0, "scale s (variance s²ν/(ν−2) for ν > 2)").at_least(1e-12),
            Roles::spec(),
        ]
    }

    fn new(p: &Params) -> Result<Self, String> {
        Ok(Self { df: p.f64("df"), scale: p.f64("scale"), roles: Roles::from_params(p)? })
    }
}

impl Prior for StudentT {
    fn log_prob<'o>(&self, _ops: Ops<'o>, params: &[Tensor<'o>], infos: &[ParamInfo]) -> Result<Tensor<'o>, String> {
        let (nu, s, c) = (self.df, self.scale, self.log_norm());
        sum_covered(&self.roles, params, infos, |x, _| {
            let m = numel(x);
            Ok(x.square().affine(1.0 / (nu * s * s), 0.0).ln_1p().sum().affine(-0.5 * (nu + 1.0), m * c))
        })
    }

    /// −(ν + 1)·θ / (ν s² + θ²).
    fn grad_log_prob<'o>(
        &self,
        ops: Ops<'o>,
        params: &[Tensor<'o>],
        infos: &[ParamInfo],
    ) -> Result<Option<Vec<Tensor<'o>>>, String> {
        let (nu, s) = (self.df, self.scale);
        grad_covered(&self.roles, ops, params, infos, |x, _| Ok(x * (-(nu + 1.0)) / x.square().affine(1.0, nu * s * s)))
    }

    fn sample<'o>(&self, ops: Ops<'o>, info: &ParamInfo, like: &Tensor<'o>) -> Result<Option<Tensor<'o>>, String> {
        if !self.roles.covers(info.role) {
            return Ok(None);
        }
        let nu = self.df;
        let zero = ops.zeros_like(like);
        let one = ops.full_like(like, 1.0);
        let mut out = ops.zeros_like(like);
        let mut done = ops.zeros_like(like);
        for _ in 0..POLAR_ROUNDS {
            let u = ops.rand_like(like).affine(2.0, -1.0);
            let v = ops.rand_like(like).affine(2.0, -1.0);
            let w = u.square() + v.square();
            // 1 where 0 < W ≤ 1 (W < 1 exactly: rand is on [0, 1), so W = 1 has probability 0).
            let ok = one.gt(&w) * w.gt(&zero);
            let w = w.clamp(1e-30, 1.0);
            let t = &u * (w.powf(-2.0 / nu).affine(nu, -nu) / &w).sqrt();
            let take = &ok * (&one - &done);
            out = take.select(&t, &out);
            done = done.maximum(&ok);
        }
        Ok(Some(out * self.scale))
    }
}
