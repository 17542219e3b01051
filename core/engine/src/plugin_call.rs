//! Typed calls of plugins: one wrapper per factor call, with its output checks, and the
//! run-start guard on a prior's closed-form gradient.
//!
//! Every call lends its input tensors through a [`Lent`] guard, which releases the handles when
//! it drops (on every return path, errors included), takes every returned handle out of the
//! host, and checks the output's shape and dtype against what the call promises. A failure is
//! an [`EngineError::PluginCall`] naming the plugin (kind, name, library path), the call and
//! the tensor; the worker adds the cell.
//!
//! A prior that offers `grad_log_prob` replaces autograd through its `log_prob` on every step,
//! so a wrong closed form would silently sample another posterior. [`prior_gradient_guard`]
//! compares the two at run start (three fixed points, no random draws, so the cell's streams
//! are untouched) and fails the cell naming the plugin when they differ.

use std::ops::{Deref, DerefMut};

use abi_stable::std_types::{ROption, RSlice};
use ablate_sdk::abi::{IntegratorBox, LikelihoodBox, NoiseBox, ParamInfo, PriorBox, TensorId};
use ablate_sdk::{NoiseStats, StepCtx, StepReport, StepTensors};
use tch::{Device, Kind, Tensor};

use crate::chain::Factor;
use crate::host::TchHost;
use crate::model::Model;
use crate::EngineError;

/// Host handles lent to plugin calls; each is released when the guard drops. Derefs to the
/// host, so calls go through it.
pub struct Lent<'h, 'a> {
    host: &'h mut TchHost<'a>,
    ids: Vec<TensorId>,
}

impl<'h, 'a> Lent<'h, 'a> {
    pub fn new(host: &'h mut TchHost<'a>) -> Self {
        Self { host, ids: Vec::new() }
    }

    /// Puts `t` into the host (shallow) until the guard drops.
    pub fn lend(&mut self, t: Tensor) -> TensorId {
        let id = self.host.insert(t);
        self.ids.push(id);
        id
    }
}

impl<'a> Deref for Lent<'_, 'a> {
    type Target = TchHost<'a>;
    fn deref(&self) -> &TchHost<'a> {
        self.host
    }
}

impl<'a> DerefMut for Lent<'_, 'a> {
    fn deref_mut(&mut self) -> &mut TchHost<'a> {
        self.host
    }
}

impl Drop for Lent<'_, '_> {
    fn drop(&mut self) {
        for &id in &self.ids {
            self.host.remove(id);
        }
    }
}

/// What a returned tensor must look like.
#[derive(Debug, Clone, Copy)]
pub enum Expect<'s> {
    /// Exactly this shape.
    Shape(&'s [i64]),
    /// One element, any shape (a scalar).
    Scalar,
}

/// Takes the tensor a plugin returned (so that no handle stays in the host) and checks it is a
/// floating-point tensor of the expected shape; errors name the plugin, the call and `tensor`.
pub fn take_output<T>(
    factor: &Factor<T>,
    host: &mut TchHost<'_>,
    during: &str,
    tensor: &str,
    id: TensorId,
    expect: Expect<'_>,
) -> Result<Tensor, EngineError> {
    let t = host.take(id).ok_or_else(|| factor.fail(during, format!("returned a released handle for {tensor}")))?;
    check_output(factor, during, tensor, &t, expect)?;
    Ok(t)
}

/// Checks a plugin's output tensor: floating point, expected shape.
pub fn check_output<T>(
    factor: &Factor<T>,
    during: &str,
    tensor: &str,
    t: &Tensor,
    expect: Expect<'_>,
) -> Result<(), EngineError> {
    let kind = t.kind();
    if !matches!(kind, Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16) {
        return Err(
            factor.fail(during, format!("returned {tensor} of dtype {kind:?}, expected a floating-point tensor"))
        );
    }
    let ok = match expect {
        Expect::Shape(shape) => t.size() == shape,
        Expect::Scalar => t.numel() == 1,
    };
    if !ok {
        let want = match expect {
            Expect::Shape(shape) => format!("{shape:?}"),
            Expect::Scalar => "a scalar".to_owned(),
        };
        return Err(factor.fail(during, format!("returned {tensor} of shape {:?}, expected {want}", t.size())));
    }
    Ok(())
}

/// `integrator.init(θ)`: θ is the host's handle `params`, kept by the caller.
pub fn integrator_init(
    integrator: &mut Factor<IntegratorBox>,
    host: &mut TchHost<'_>,
    params: TensorId,
) -> Result<(), EngineError> {
    let _site = integrator.enter("init");
    host.call(|h| integrator.obj.init(h, params)).map_err(|e| integrator.fail("init", e))
}

/// `integrator.rescale_momenta(factor)` with the factor lent for the call.
pub fn integrator_rescale(
    integrator: &mut Factor<IntegratorBox>,
    host: &mut TchHost<'_>,
    factor: Tensor,
) -> Result<(), EngineError> {
    let mut lent = Lent::new(host);
    let id = lent.lend(factor);
    let _site = integrator.enter("rescale_momenta");
    lent.call(|h| integrator.obj.rescale_momenta(h, id)).map_err(|e| integrator.fail("rescale_momenta", e))
}

/// `integrator.step(ctx, tensors)`.
pub fn integrator_step(
    integrator: &mut Factor<IntegratorBox>,
    host: &mut TchHost<'_>,
    ctx: &StepCtx,
    tensors: &StepTensors,
) -> Result<StepReport, EngineError> {
    let _site = integrator.enter("step");
    let report = host.call(|h| integrator.obj.step(h, ctx, tensors)).map_err(|e| integrator.fail("step", e))?;
    // A probability or NaN (no Metropolis step); anything else would be averaged into
    // metrics.json as an acceptance rate.
    if !(report.acceptance.is_nan() || (0.0..=1.0).contains(&report.acceptance)) {
        return Err(integrator.fail(
            "step",
            format!(
                "reported the acceptance {} (a probability in [0, 1], or NaN for a step without a Metropolis test)",
                report.acceptance
            ),
        ));
    }
    Ok(report)
}

/// `integrator.kinetic(M⁻¹)`: the elementwise m⊙M⁻¹m, shaped like θ (`theta_shape`), or
/// `None` when the integrator has no momenta.
pub fn integrator_kinetic(
    integrator: &Factor<IntegratorBox>,
    host: &mut TchHost<'_>,
    mass_inv: TensorId,
    theta_shape: &[i64],
) -> Result<Option<Tensor>, EngineError> {
    let _site = integrator.enter("kinetic");
    match host.call(|h| integrator.obj.kinetic(h, mass_inv)).map_err(|e| integrator.fail("kinetic", e))? {
        ROption::RSome(id) => {
            let t = take_output(
                integrator,
                host,
                "kinetic",
                "the kinetic energies m⊙M⁻¹m",
                id,
                Expect::Shape(theta_shape),
            )?;
            // m⊙M⁻¹m ≥ 0 element by element (M > 0); a negative value would make a kinetic
            // temperature that no chain can have (NaN, a diverged chain, is judged elsewhere).
            let min = f64::try_from(t.detach().f_min()?.f_to_kind(Kind::Double)?)?;
            if min < 0.0 {
                return Err(integrator
                    .fail("kinetic", format!("returned the kinetic energy {min} < 0; m⊙M⁻¹m is never negative")));
            }
            Ok(Some(t))
        }
        ROption::RNone => Ok(None),
    }
}

/// `noise.transform(ctx, grad, stats)`: transforms `grad` in place (the host's tensor behind
/// the handle); it must stay a floating-point tensor of the same shape.
pub fn noise_transform(
    noise: &mut Factor<NoiseBox>,
    host: &mut TchHost<'_>,
    ctx: &StepCtx,
    grad: TensorId,
    stats: &NoiseStats,
) -> Result<(), EngineError> {
    let shape = host.get(grad).map(Tensor::size).unwrap_or_default();
    let _site = noise.enter("transform");
    host.call(|h| noise.obj.transform(h, ctx, grad, stats)).map_err(|e| noise.fail("transform", e))?;
    let t = host.get(grad).ok_or_else(|| noise.fail("transform", "released the gradient handle".into()))?;
    check_output(noise, "transform", "the gradient", t, Expect::Shape(&shape))
}

/// `likelihood.nll(logits, labels)`: a scalar.
pub fn likelihood_nll(
    lik: &Factor<LikelihoodBox>,
    host: &mut TchHost<'_>,
    logits: &Tensor,
    labels: &Tensor,
) -> Result<Tensor, EngineError> {
    let mut lent = Lent::new(host);
    let (l, t) = (lent.lend(logits.shallow_clone()), lent.lend(labels.shallow_clone()));
    let _site = lik.enter("nll");
    let id = lent.call(|h| lik.obj.nll(h, l, t)).map_err(|e| lik.fail("nll", e))?;
    take_output(lik, &mut lent, "nll", "the NLL", id, Expect::Scalar)
}

/// `likelihood.augment(images)`: `None` (no augmentation) or images of the same shape.
pub fn likelihood_augment(
    lik: &mut Factor<LikelihoodBox>,
    host: &mut TchHost<'_>,
    images: &Tensor,
) -> Result<Option<Tensor>, EngineError> {
    let mut lent = Lent::new(host);
    let id = lent.lend(images.shallow_clone());
    let _site = lik.enter("augment");
    match lent.call(|h| lik.obj.augment(h, id)).map_err(|e| lik.fail("augment", e))? {
        ROption::RSome(out) => {
            Ok(Some(take_output(lik, &mut lent, "augment", "the augmented batch", out, Expect::Shape(&images.size()))?))
        }
        ROption::RNone => Ok(None),
    }
}

/// `prior.sample(info, like)`: `None` (the prior cannot draw) or a draw shaped like `like`.
pub fn prior_sample(
    prior: &Factor<PriorBox>,
    host: &mut TchHost<'_>,
    info: &ParamInfo,
    like: &Tensor,
) -> Result<Option<Tensor>, EngineError> {
    let mut lent = Lent::new(host);
    let id = lent.lend(like.shallow_clone());
    let tensor = format!("the draw of `{}`", info.name);
    let _site = prior.enter("sample");
    match lent.call(|h| prior.obj.sample(h, info, id)).map_err(|e| prior.fail("sample", e))? {
        ROption::RSome(out) => {
            let draw = take_output(prior, &mut lent, "sample", &tensor, out, Expect::Shape(&like.size()))?;
            // A NaN draw would pass for a network whose every prediction is one class.
            if !bool::try_from(draw.f_isfinite()?.f_all()?)? {
                return Err(prior.fail("sample", format!("{tensor} holds NaN or Inf")));
            }
            Ok(Some(draw))
        }
        ROption::RNone => Ok(None),
    }
}

/// log p through the prior plugin for per-tensor `views` described by `infos`: a one-element
/// tensor (finiteness is the caller's business).
pub fn prior_log_prob(
    prior: &Factor<PriorBox>,
    host: &mut TchHost<'_>,
    views: &[Tensor],
    infos: &[ParamInfo],
) -> Result<Tensor, EngineError> {
    let mut lent = Lent::new(host);
    let ids: Vec<TensorId> = views.iter().map(|v| lent.lend(v.shallow_clone())).collect();
    let _site = prior.enter("log_prob");
    let id = lent
        .call(|h| prior.obj.log_prob(h, RSlice::from_slice(&ids), RSlice::from_slice(infos)))
        .map_err(|e| prior.fail("log_prob", e))?;
    take_output(prior, &mut lent, "log_prob", "log p", id, Expect::Scalar)
}

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
    let mut lent = Lent::new(host);
    let ids: Vec<TensorId> = views.iter().map(|v| lent.lend(v.detach())).collect();
    let _site = prior.enter("grad_log_prob");
    let r = lent.call(|h| prior.obj.grad_log_prob(h, RSlice::from_slice(&ids), RSlice::from_slice(infos)));
    let ROption::RSome(grads) = r.map_err(|e| prior.fail("grad_log_prob", e))? else {
        return Ok(None);
    };
    // Take every returned handle first, so that none stays in the arena on an error.
    let taken: Vec<Option<Tensor>> = grads.iter().map(|id| lent.take(*id)).collect();
    if taken.len() != views.len() {
        return Err(prior.fail("grad_log_prob", format!("returned {} tensors for {}", taken.len(), views.len())));
    }
    let mut out = Vec::with_capacity(taken.len());
    for ((g, view), info) in taken.into_iter().zip(views).zip(infos) {
        let tensor = format!("the gradient of `{}`", info.name);
        let g = g.ok_or_else(|| prior.fail("grad_log_prob", format!("returned a released handle for {tensor}")))?;
        check_output(prior, "grad_log_prob", &tensor, &g, Expect::Shape(&view.size()))?;
        out.push(g);
    }
    Ok(Some(out))
}

/// The prior's per-tensor precisions if it declares itself a zero-mean isotropic Gaussian per
/// tensor (`Prior::isotropic_precision`): one finite value ≥ 0 per parameter tensor.
pub fn call_isotropic_precision(
    prior: &Factor<PriorBox>,
    infos: &[ParamInfo],
) -> Result<Option<Vec<f64>>, EngineError> {
    let _site = prior.enter("isotropic_precision");
    let answer = prior.obj.isotropic_precision(RSlice::from_slice(infos)).into_result();
    let ROption::RSome(values) = answer.map_err(|e| prior.fail("isotropic_precision", e.into_string()))? else {
        return Ok(None);
    };
    if values.len() != infos.len() {
        return Err(prior.fail(
            "isotropic_precision",
            format!("returned {} values for {} parameter tensors", values.len(), infos.len()),
        ));
    }
    if let Some((v, info)) = values.iter().zip(infos).find(|(v, _)| !(v.is_finite() && **v >= 0.0)) {
        return Err(prior.fail(
            "isotropic_precision",
            format!("returned {v} for `{}`; a precision 1/σ² must be finite and ≥ 0", info.name),
        ));
    }
    Ok(Some(values.into_vec()))
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

/// Per-tensor values on the host in f64; an undefined tensor (autograd's answer for a tensor
/// `log_prob` does not touch) is zeros shaped like its leaf.
fn host_values(tensors: &[Tensor], leaves: &[Tensor]) -> Result<Vec<Vec<f64>>, EngineError> {
    leaves
        .iter()
        .enumerate()
        .map(|(j, leaf)| match tensors.get(j).filter(|t| t.defined()) {
            Some(t) => Ok(Vec::<f64>::try_from(t.f_to_kind(Kind::Double)?.f_to_device(Device::Cpu)?.f_reshape([-1])?)?),
            None => Ok(vec![0.0; leaf.numel()]),
        })
        .collect()
}

/// The first element of `x` outside [`GRADIENT_TOLERANCE`]·(1 + |r|) of `reference`, as
/// (index, value, reference value).
fn first_mismatch(x: &[f64], reference: &[f64]) -> Option<(usize, f64, f64)> {
    x.iter()
        .zip(reference)
        .enumerate()
        .find(|(_, (v, r))| (*v - *r).abs() > GRADIENT_TOLERANCE * (1.0 + r.abs()))
        .map(|(i, (v, r))| (i, *v, *r))
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

/// At run start: the prior's closed-form gradient, and its declared isotropic precision, against
/// autograd of its `log_prob` at three fixed points (|θ| up to 0.1, 1 and 3); without either only
/// `log_prob`'s finiteness is checked there. A non-finite `log_prob` or gradient at these finite points, or a mismatch beyond
/// [`GRADIENT_TOLERANCE`], fails the cell with the plugin, the element and both values.
pub fn prior_gradient_guard(model: &Model, prior: &Factor<PriorBox>, device: Device) -> Result<(), EngineError> {
    let infos = model.infos();
    let mut host = TchHost::new();
    let precision = call_isotropic_precision(prior, infos)?;
    for (k, scale) in [0.1, 1.0, 3.0].into_iter().enumerate() {
        let theta = Tensor::from_slice(&guard_point(model.dim(), scale, 0.17 * k as f64)).f_to_device(device)?;
        let leaves: Vec<Tensor> =
            model.views(&theta).iter().map(|v| v.detach().copy().set_requires_grad(true)).collect();
        let where_ = format!("at run start, at fixed parameters with |θ| ≤ {scale}");
        let lp = prior_log_prob(prior, &mut host, &leaves, infos)?;
        let lp_value = f64::try_from(lp.f_to_kind(Kind::Double)?.f_reshape([] as [i64; 0])?)?;
        if !lp_value.is_finite() {
            return Err(prior.fail("log_prob", format!("returned {lp_value} (NaN/Inf) {where_}")));
        }
        let closed = call_grad_log_prob(prior, &mut host, &leaves, infos)?;
        if closed.is_none() && precision.is_none() {
            continue;
        }
        if let Some((t, i, v)) = closed.as_deref().and_then(first_nonfinite) {
            return Err(prior.fail("grad_log_prob", format!("returned {v} for `{}`[{i}] {where_}", infos[t].name)));
        }
        // Tensors log_prob does not touch (roles the prior skips) get no autograd gradient: 0.
        let auto = if lp.requires_grad() {
            Tensor::f_run_backward(&[lp.f_sum(Kind::Float)?], &leaves, false, false)?
        } else {
            Vec::new()
        };
        let auto = host_values(&auto, &leaves)?;
        let closed = closed.map(|c| host_values(&c, &leaves)).transpose()?;
        if let Some(closed) = &closed {
            for ((c, a), info) in closed.iter().zip(&auto).zip(infos) {
                if let Some((i, cv, av)) = first_mismatch(c, a) {
                    return Err(prior.fail(
                        "grad_log_prob",
                        format!(
                            "disagrees with autograd of its log_prob {where_}: `{}`[{i}] closed form {cv:.6e}, \
                             autograd {av:.6e} (tolerance {GRADIENT_TOLERANCE}·(1 + |g|)); the host uses \
                             grad_log_prob in place of autograd, so it must equal ∇log_prob (`ablate plugins \
                             check` on the library shows the check)",
                            info.name
                        ),
                    ));
                }
            }
        }
        // A declared precision replaces both: −P⊙θ must equal autograd (and the closed form).
        let Some(precision) = &precision else {
            continue;
        };
        let theta = host_values(&leaves.iter().map(Tensor::detach).collect::<Vec<_>>(), &leaves)?;
        for (j, ((x, p), info)) in theta.iter().zip(precision).zip(infos).enumerate() {
            let declared: Vec<f64> = x.iter().map(|x| -p * x).collect();
            let mut references = vec![("autograd of its log_prob", &auto[j])];
            if let Some(closed) = &closed {
                references.push(("its grad_log_prob", &closed[j]));
            }
            for (what, reference) in references {
                if let Some((i, d, r)) = first_mismatch(&declared, reference) {
                    return Err(prior.fail(
                        "isotropic_precision",
                        format!(
                            "declares precision {p:.6e} for `{}`, but −precision·θ disagrees with {what} {where_}: \
                             element {i}: {d:.6e} against {r:.6e} (tolerance {GRADIENT_TOLERANCE}·(1 + |g|)); the \
                             host applies −precision·θ as the prior's gradient, so declare a precision only for a \
                             zero-mean isotropic Gaussian",
                            info.name
                        ),
                    ));
                }
            }
            // A small precision declared wrongly (σ = 100 declared as flat) hides inside the
            // elementwise tolerance; the least-squares precision of autograd's gradient,
            // −Σ g·θ / Σ θ², must match it to the same relative tolerance.
            let (gx, xx) = x.iter().zip(auto[j].iter()).fold((0.0, 0.0), |(gx, xx), (x, g)| (gx + g * x, xx + x * x));
            if xx > 0.0 {
                let fitted = -gx / xx;
                if (fitted - p).abs() > GRADIENT_TOLERANCE * fitted.abs().max(p.abs()) + 1e-12 {
                    return Err(prior.fail(
                        "isotropic_precision",
                        format!(
                            "declares precision {p:.6e} for `{}`, but autograd of its log_prob {where_} gives \
                             precision −Σg·θ/Σθ² = {fitted:.6e} (relative tolerance {GRADIENT_TOLERANCE}); the host \
                             applies −precision·θ as the prior's gradient, so declare the precision 1/σ² of the \
                             zero-mean isotropic Gaussian the prior is",
                            info.name
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}
