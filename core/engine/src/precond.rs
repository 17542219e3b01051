//! The layerwise preconditioner of the paper: a diagonal mass M that is constant within each
//! parameter tensor, re-estimated at the start of every epoch.
//!
//! From `precond_batches` fresh minibatch gradients g (Welford mean ḡ and biased variance v
//! per element, [`gradient_moments`]), each tensor p gets the scalar
//! `sqrt(mean_p(ḡ² + v) + 1e-7)`, the square root of the raw second moment E\[g²\]; the scalars
//! are divided by the smallest one, so that the best-conditioned tensor has mass 1
//! ([`layerwise_mass`]). When M changes, momenta are rescaled by sqrt(M_new/M_old)
//! ([`Mass::rescale_factor`]) so that the kinetic temperature is unchanged. The integrators get
//! M, M⁻¹, M^½ and M^-½ as host tensors ([`Mass`]).
//!
//! [`Segments`] does the per-tensor reductions on flat parameter vectors (and per chain on
//! batched [K, d] ones).

use ablate_sdk::{ParamInfo, TensorId};
use tch::{Device, Kind, TchError, Tensor};

use crate::chain::Objective;
use crate::host::TchHost;
use crate::EngineError;

/// Added to every tensor's mean second moment before the square root.
pub const EPSILON: f64 = 1e-7;

/// Per-tensor (segment) reductions of flat vectors, along the last dimension (so a [K, d]
/// batch of chains reduces per chain).
pub struct Segments {
    offsets: Vec<i64>,
    pub sizes: Vec<i64>,
    pub names: Vec<String>,
    counts: Tensor,
}

impl Segments {
    pub fn new(infos: &[ParamInfo], device: Device) -> Result<Self, TchError> {
        let sizes: Vec<i64> = infos.iter().map(|i| i.numel).collect();
        Ok(Self {
            offsets: infos.iter().map(|i| i.offset).collect(),
            counts: Tensor::from_slice(&sizes).f_to_device(device)?,
            names: infos.iter().map(|i| i.name.to_string()).collect(),
            sizes,
        })
    }

    /// `reduce` of every segment, stacked along the last dimension: [P] for a flat vector,
    /// [K, P] for K chains. A vector shorter than the segments is an error, not a panic.
    fn per_segment(
        &self,
        flat: &Tensor,
        reduce: impl Fn(Tensor) -> Result<Tensor, TchError>,
    ) -> Result<Tensor, TchError> {
        let parts = self
            .offsets
            .iter()
            .zip(&self.sizes)
            .map(|(&o, &s)| flat.f_narrow(-1, o, s).and_then(&reduce))
            .collect::<Result<Vec<Tensor>, TchError>>()?;
        Tensor::f_stack(&parts, -1)
    }

    /// Per-segment means.
    pub fn means(&self, flat: &Tensor) -> Result<Tensor, TchError> {
        self.per_segment(flat, |t| t.f_mean_dim(-1, false, Kind::Float))
    }

    /// Per-segment sums in f64, one row of P values per chain.
    pub fn sums(&self, flat: &Tensor, chains: usize) -> Result<Vec<Vec<f64>>, TchError> {
        let sums = self.per_segment(flat, |t| t.f_sum_dim_intlist(-1, false, Kind::Double))?;
        let all = Vec::<f64>::try_from(sums.f_to_device(Device::Cpu)?.f_reshape([-1])?)?;
        Ok(all.chunks(self.sizes.len().max(1)).take(chains).map(<[f64]>::to_vec).collect())
    }

    /// Broadcast per-segment values (\[P\] or \[K, P\]) back to the flat layout.
    pub fn expand(&self, per_segment: &Tensor) -> Result<Tensor, TchError> {
        per_segment.f_repeat_interleave_self_tensor(&self.counts, -1, None)
    }
}

/// Preconditioner batches: Welford mean and (biased) variance per element of the minibatch
/// gradient at `theta`, from `count` batches of `batch` examples.
pub fn gradient_moments(
    objective: &mut dyn Objective,
    host: &mut TchHost<'_>,
    theta: &Tensor,
    batch: u64,
    count: usize,
) -> Result<(Tensor, Tensor), EngineError> {
    let mut mean = theta.zeros_like();
    let mut m2 = theta.zeros_like();
    for i in 1..=count {
        let g = objective.gradient(host, theta, batch, false)?.grad;
        let _guard = tch::no_grad_guard();
        if !crate::fused::welford(&mut mean, &mut m2, &g, i) {
            let delta = g.f_sub(&mean)?;
            let _ = mean.f_add_(&delta.f_div_scalar(i as f64)?)?;
            let _ = m2.f_add_(&delta.f_mul(&g.f_sub(&mean)?)?)?;
        }
    }
    Ok((mean, m2.f_div_scalar(count.max(1) as f64)?))
}

/// The layerwise mass (flat, shaped like θ) from the gradient moments: per tensor
/// sqrt(mean(ḡ² + v) + [`EPSILON`]), divided by the smallest over tensors (per chain). A
/// diverged chain (NaN moments) gets mass 1, so that its NaNs stay in its own rows.
pub fn layerwise_mass(segments: &Segments, g_mean: &Tensor, g_var: &Tensor) -> Result<Tensor, TchError> {
    let moment = g_mean.f_square()?.f_add(g_var)?;
    let per_tensor = segments.means(&moment)?.f_add_scalar(EPSILON)?.f_sqrt()?;
    let per_tensor = per_tensor.f_div(&per_tensor.f_amin(-1, true)?)?;
    let per_tensor = per_tensor.f_nan_to_num(1.0, 1.0, 1.0)?;
    segments.expand(&per_tensor)
}

/// The mass and its transforms, flat, registered in the host for integrator calls.
pub struct Mass {
    pub m: Tensor,
    /// M, M⁻¹, M^½, M^-½.
    pub ids: [TensorId; 4],
}

impl Mass {
    pub fn new(host: &mut TchHost<'_>, m: Tensor) -> Result<Self, TchError> {
        // Every transform before any handle, so that a failure leaves none in the host.
        let (inv, sqrt, inv_sqrt) = (m.f_reciprocal()?, m.f_sqrt()?, m.f_rsqrt()?);
        let ids = [host.insert(m.shallow_clone()), host.insert(inv), host.insert(sqrt), host.insert(inv_sqrt)];
        Ok(Self { m, ids })
    }

    /// sqrt(M_new/M_old): the momentum rescaling that keeps m⊙M⁻¹m when M becomes `new`.
    pub fn rescale_factor(&self, new: &Tensor) -> Result<Tensor, TchError> {
        new.f_div(&self.m)?.f_sqrt()
    }

    /// Removes its host handles.
    pub fn release(self, host: &mut TchHost<'_>) {
        self.ids.iter().for_each(|&id| host.remove(id));
    }
}

#[cfg(test)]
mod tests {
    use ablate_sdk::Role;

    use super::*;

    fn segments(sizes: &[i64]) -> Segments {
        let mut offset = 0;
        let infos: Vec<ParamInfo> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let info = ParamInfo::new(&format!("t{i}"), &format!("l{i}"), Role::Weight, &[n], n, 1, offset);
                offset += n;
                info
            })
            .collect();
        Segments::new(&infos, Device::Cpu).unwrap()
    }

    fn values(t: &Tensor) -> Vec<f64> {
        Vec::<f64>::try_from(t.to_kind(Kind::Double).reshape([-1])).unwrap()
    }

    #[test]
    fn each_tensor_gets_the_root_of_its_mean_second_moment_relative_to_the_smallest() {
        // Tensor 0 (2 elements): ḡ = (1, 1), v = (3, 3): E[g²] = 4. Tensor 1 (3 elements):
        // ḡ = (4, 0, 0), v = (0, 16, 16): E[g²] mean = (16 + 16 + 16)/3 = 16.
        let s = segments(&[2, 3]);
        let mean = Tensor::from_slice(&[1.0f32, 1.0, 4.0, 0.0, 0.0]);
        let var = Tensor::from_slice(&[3.0f32, 3.0, 0.0, 16.0, 16.0]);
        let m = values(&layerwise_mass(&s, &mean, &var).unwrap());
        let (a, b) = ((4.0f64 + EPSILON).sqrt(), (16.0f64 + EPSILON).sqrt());
        let want = [1.0, 1.0, b / a, b / a, b / a];
        for (got, want) in m.iter().zip(want) {
            assert!((got - want).abs() < 1e-6 * want, "{m:?} vs {want}");
        }
    }

    #[test]
    fn batched_chains_are_normalised_per_chain_and_a_diverged_chain_gets_mass_one() {
        let s = segments(&[1, 1]);
        let mean = Tensor::from_slice(&[0.0f32, 0.0, f32::NAN, 0.0]).reshape([2, 2]);
        let var = Tensor::from_slice(&[1.0f32, 9.0, 1.0, 1.0]).reshape([2, 2]);
        let m = layerwise_mass(&s, &mean, &var).unwrap();
        assert_eq!(m.size(), vec![2, 2]);
        let m = values(&m);
        assert!((m[0] - 1.0).abs() < 1e-6 && (m[1] - 3.0).abs() < 1e-5, "{m:?}");
        assert_eq!(&m[2..], &[1.0, 1.0], "NaN moments give a finite mass");
    }

    #[test]
    fn momenta_rescale_by_the_root_of_the_mass_ratio() {
        let mut host = TchHost::new();
        let mass = Mass::new(&mut host, Tensor::from_slice(&[1.0f32, 4.0])).unwrap();
        assert_eq!(host.live(), 4);
        let f = values(&mass.rescale_factor(&Tensor::from_slice(&[4.0f32, 1.0])).unwrap());
        assert_eq!(f, vec![2.0, 0.5]);
        let inv = values(host.get(mass.ids[1]).unwrap());
        assert_eq!(inv, vec![1.0, 0.25]);
        mass.release(&mut host);
        assert_eq!(host.live(), 0);
    }

    #[test]
    fn a_vector_shorter_than_the_tensors_is_an_error() {
        let s = segments(&[2, 3]);
        assert!(s.means(&Tensor::from_slice(&[1.0f32, 2.0])).is_err());
        assert!(s.sums(&Tensor::from_slice(&[1.0f32]), 1).is_err());
    }
}
