//! `spike-slab`: two-component Gaussian mixture ("spike and slab"; the reference's
//! `SpikeAndSlabRegularizer`, same defaults).
//!
//! ```text
//! p(x) = π N(x; 0, s₁²) + (1 − π) N(x; 0, s₂²)
//! log p(θ) = Σ_covered logaddexp( ln π − ln s₁ − ½ln 2π − x²/(2s₁²),
//!                                 ln(1−π) − ln s₂ − ½ln 2π − x²/(2s₂²) )
//! ```
//! with π = `mass_spike`, s₁ = `scale_spike`, s₂ = `scale_slab`. Variance π s₁² + (1−π) s₂².
//! `mass_spike` must lie strictly inside (0, 1) (use `gaussian` for a single component).
//!
//! Draw: z = 1\[u < π\] with u ~ U[0, 1); x = ξ · (z s₁ + (1 − z) s₂), ξ ~ N(0, 1).

use ablate_sdk::prelude::*;

use crate::{sum_covered, Roles, HALF_LN_2PI};

pub struct SpikeSlab {
    scale_spike: f64,
    scale_slab: f64,
    mass_spike: f64,
    roles: Roles,
}

impl Factory for SpikeSlab {
    const NAME: &'static str = "spike-slab";
    const DESCRIPTION: &'static str = "Gaussian mixture π N(0, s₁²) + (1−π) N(0, s₂²) (spike and slab)";

    fn params() -> Vec<ParamSpec> {
        vec![
            ParamSpec::float("scale_spike", 0.001, "standard deviation s₁ of the spike").at_least(1e-12),
            ParamSpec::float("scale_slab", 0.4, "standard deviation s₂ of the slab").at_least(1e-12),
            ParamSpec::float("mass_spike", 0.5, "mixture weight π of the spike, strictly between 0 and 1")
                .range(0.0, 1.0),
            Roles::spec(),
        ]
    }

    fn new(p: &Params) -> Result<Self, String> {
        let mass_spike = p.f64("mass_spike");
        if !(mass_spike > 0.0 && mass_spike < 1.0) {
            return Err(format!(
                "mass_spike must be strictly between 0 and 1, got {mass_spike} \
                 (use the `gaussian` prior for a single component)"
            ));
        }
        Ok(Self {
            scale_spike: p.f64("scale_spike"),
            scale_slab: p.f64("scale_slab"),
            mass_spike,
            roles: Roles::from_params(p)?,
        })
    }
}

impl Prior for SpikeSlab {
    fn log_prob<'o>(&self, _ops: Ops<'o>, params: &[Tensor<'o>], infos: &[ParamInfo]) -> Result<Tensor<'o>, String> {
        let (s1, s2, pi) = (self.scale_spike, self.scale_slab, self.mass_spike);
        sum_covered(&self.roles, params, infos, |x, _| {
            let sq = x.square();
            let spike = sq.affine(-0.5 / (s1 * s1), pi.ln() - s1.ln() - HALF_LN_2PI);
            let slab = sq.affine(-0.5 / (s2 * s2), (1.0 - pi).ln() - s2.ln() - HALF_LN_2PI);
            Ok(spike.log_add_exp(&slab).sum())
        })
    }

    fn sample<'o>(&self, ops: Ops<'o>, info: &ParamInfo, like: &Tensor<'o>) -> Result<Option<Tensor<'o>>, String> {
        if !self.roles.covers(info.role) {
            return Ok(None);
        }
        let u = ops.rand_like(like);
        let is_spike = ops.full_like(like, self.mass_spike).gt(&u);
        let sigma = is_spike.affine(self.scale_spike - self.scale_slab, self.scale_slab);
        Ok(Some(ops.randn_like(like) * sigma))
    }
}
