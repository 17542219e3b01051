//! Typed calls of prior plugins with their output checks, and the run-start guard on a prior's
//! closed-form gradient.
//!
//! A prior that offers `grad_log_prob` replaces autograd through its `log_prob` on every step,
//! so a wrong closed form would silently sample another posterior. [`prior_gradient_guard`]
//! compares the two at run start (three fixed points, no random draws, so the cell's streams
//! are untouched) and fails the cell naming the plugin when they differ.

use abi_stable::std_types::{ROption, RSlice};
use ablate_sdk::abi::{ParamInfo, PriorBox, TensorId};
use tch::{Device, Kind, Tensor};

use crate::chain::Factor;
use crate::host::TchHost;
use crate::model::Model;
use crate::EngineError;

/// Relative tolerance of the closed-form gradient against autograd in float32:
/// |closed − autograd| ≤ `GRADIENT_TOLERANCE`·(1 + |autograd|) per element. Float32 rounding
/// of either is ~1e-7 relative; a factor-of-2 mistake is off by |g|.
pub const GRADIENT_TOLERANCE: f64 = 1e-3;

/// ∇ log p per tensor from the prior's closed form (`None`: it has none), each shaped like its
/// view. Handles given to the plugin are released on every path.
pub fn call_grad_log_prob(
    prior: &Factor<PriorBox>,
    host: &mut TchHost<'_>,
    views: &[Tensor],
    infos: &[ParamInfo],
) -> Result<Option<Vec<Tensor>>, EngineError> {
    let ids: Vec<TensorId> = views.iter().map(|v| host.insert(v.detach())).collect();
    let r = host.call(|h| prior.obj.grad_log_prob(h, RSlice::from_slice(&ids), RSlice::from_slice(infos)));
    ids.iter().for_each(|&id| host.remove(id));
    let ROption::RSome(grads) = r.map_err(|e| prior.fail("grad_log_prob", e))? else {
        return Ok(None);
    };
    // Take every returned handle first, so that none stays in the arena on an error.
    let taken: Vec<Option<Tensor>> = grads.iter().map(|id| host.take(*id)).collect();
    if taken.len() != views.len() {
        return Err(prior.fail("grad_log_prob", format!("returned {} tensors for {}", taken.len(), views.len())));
    }
    let mut out = Vec::with_capacity(taken.len());
    for (g, view) in taken.into_iter().zip(views) {
        let g = g.ok_or_else(|| prior.fail("grad_log_prob", "returned a released handle".into()))?;
        if g.size() != view.size() {
            return Err(prior.fail(
                "grad_log_prob",
                format!("returned shape {:?} for a tensor of shape {:?}", g.size(), view.size()),
            ));
        }
        out.push(g);
    }
    Ok(Some(out))
}

/// The first element of `grads` that is NaN/Inf, as (tensor index, element index, value).
pub fn first_nonfinite(grads: &[Tensor]) -> Option<(usize, usize, f64)> {
    for (t, g) in grads.iter().enumerate() {
        if !crate::chain::nonfinite(g) {
            continue;
        }
        let values = Vec::<f64>::try_from(
            g.detach()
                .f_to_kind(Kind::Double)
                .and_then(|x| x.f_to_device(Device::Cpu))
                .and_then(|x| x.f_reshape([-1]))
                .ok()?,
        )
        .ok()?;
        if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Some((t, i, *v));
        }
    }
    None
}

/// Deterministic parameters for the guard: |θᵢ| in [0.1, 1]·`scale`, alternating signs.
fn guard_point(dim: i64, scale: f64, phase: f64) -> Vec<f32> {
    (0..dim)
        .map(|i| {
            let frac = ((i as f64 + 1.0) * 0.618_033_988_749_895 + phase).fract();
            let sign = if i % 2 == 0 { 1.0 } else { -1.0 };
            (sign * scale * (0.1 + 0.9 * frac)) as f32
        })
        .collect()
}

/// At run start: the prior's closed-form gradient against autograd of its `log_prob` at
/// three fixed points (|θ| up to 0.1, 1 and 3); without a closed form only `log_prob`'s
/// finiteness is checked there. A non-finite `log_prob` or gradient at these finite points, or a mismatch beyond
/// [`GRADIENT_TOLERANCE`], fails the cell with the plugin, the element and both values.
pub fn prior_gradient_guard(model: &Model, prior: &Factor<PriorBox>, device: Device) -> Result<(), EngineError> {
    let infos = model.infos();
    let mut host = TchHost::new();
    for (k, scale) in [0.1, 1.0, 3.0].into_iter().enumerate() {
        let theta = Tensor::from_slice(&guard_point(model.dim(), scale, 0.17 * k as f64)).f_to_device(device)?;
        let leaves: Vec<Tensor> =
            model.views(&theta).iter().map(|v| v.detach().copy().set_requires_grad(true)).collect();
        let where_ = format!("at run start, at fixed parameters with |θ| ≤ {scale}");
        let lp = crate::cell::call_log_prob(prior, &mut host, &leaves, infos)?;
        let lp_value = f64::try_from(lp.f_to_kind(Kind::Double)?.f_reshape([] as [i64; 0])?)?;
        if !lp_value.is_finite() {
            return Err(prior.fail("log_prob", format!("returned {lp_value} (NaN/Inf) {where_}")));
        }
        let Some(closed) = call_grad_log_prob(prior, &mut host, &leaves, infos)? else {
            continue;
        };
        if let Some((t, i, v)) = first_nonfinite(&closed) {
            return Err(prior.fail("grad_log_prob", format!("returned {v} for `{}`[{i}] {where_}", infos[t].name)));
        }
        // Tensors log_prob does not touch (roles the prior skips) get no autograd gradient: 0.
        let auto = if lp.requires_grad() {
            Tensor::f_run_backward(&[lp.f_sum(Kind::Float)?], &leaves, false, false)?
        } else {
            Vec::new()
        };
        for (j, (c, info)) in closed.iter().zip(infos).enumerate() {
            let c = Vec::<f64>::try_from(c.f_to_kind(Kind::Double)?.f_to_device(Device::Cpu)?.f_reshape([-1])?)?;
            let a = match auto.get(j).filter(|a| a.defined()) {
                Some(a) => Vec::<f64>::try_from(a.f_to_kind(Kind::Double)?.f_to_device(Device::Cpu)?.f_reshape([-1])?)?,
                None => vec![0.0; c.len()],
            };
            if let Some((i, (cv, av))) = c
                .iter()
                .zip(&a)
                .enumerate()
                .find(|(_, (cv, av))| (*cv - *av).abs() > GRADIENT_TOLERANCE * (1.0 + av.abs()))
            {
                return Err(prior.fail(
                    "grad_log_prob",
                    format!(
                        "disagrees with autograd of its log_prob {where_}: `{}`[{i}] closed form {cv:.6e}, autograd \
                         {av:.6e} (tolerance {GRADIENT_TOLERANCE}·(1 + |g|)); the host uses grad_log_prob in place of \
                         autograd, so it must equal ∇log_prob (`ablate plugins check` on the library shows the check)",
                        info.name
                    ),
                ));
            }
        }
    }
    Ok(())
}
