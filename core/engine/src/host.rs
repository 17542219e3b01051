//! The host side of the plugin tensor-operation table, on real `tch` tensors.
//!
//! Plugins hold [`TensorId`] handles into [`TchHost`]'s arena. Each op runs the fallible `f_*`
//! libtorch call; a failure (or an unknown handle) records the first error and yields
//! [`TensorId::INVALID`], which the engine reports with the plugin's name and file after the call.
//! Random draws use libtorch's generator, seeded once per cell (one cell per process), so a
//! plugin cannot break reproducibility.

use std::collections::HashMap;

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{ROption, RResult, RSlice, RString, RVec};
use ablate_sdk::abi::{BinaryOp, HostRef, OuStep, Potential, ReduceOp, TensorHost, TensorHost_TO, TensorId, UnaryOp};
use ablate_sdk::range::{check_scalar, ScalarLimit, FLOAT32};
use tch::{Device, Kind, Tensor};

/// Computes U(θ) and ∇U(θ) for integrators that need energies (HMC, Metropolis–Hastings).
pub type PotentialFn<'a> = dyn FnMut(&Tensor, bool) -> Result<(Tensor, Tensor), String> + 'a;

/// An arena of tensors addressed by plugin handles.
pub struct TchHost<'a> {
    arena: HashMap<u64, Tensor>,
    next: u64,
    error: Option<String>,
    potential: Option<Box<PotentialFn<'a>>>,
    noise: Option<crate::fused::NoiseStream>,
}

impl Default for TchHost<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> TchHost<'a> {
    pub fn new() -> Self {
        Self { arena: HashMap::new(), next: 0, error: None, potential: None, noise: None }
    }

    /// Seeds the injected noise of `ou_update`: one stream per chain (see
    /// [`crate::fused::NoiseStream::per_chain`]). Without it the stream is seeded from libtorch's
    /// generator at the first draw.
    pub fn seed_noise(&mut self, seeds: Vec<u64>) {
        self.noise = Some(crate::fused::NoiseStream::per_chain(seeds));
    }

    /// Let integrators evaluate U and ∇U through [`TensorHost::potential`].
    pub fn set_potential(&mut self, f: Box<PotentialFn<'a>>) {
        self.potential = Some(f);
    }

    /// Remove the energy function (see [`Self::set_potential`]).
    pub fn clear_potential(&mut self) {
        self.potential = None;
    }

    /// The first error recorded since the last call, clearing it (between plugin calls made
    /// outside [`Self::call`], e.g. by the conformance suite).
    pub fn take_error(&mut self) -> Option<String> {
        self.error.take()
    }

    /// This host's table as plugins receive it, without [`Self::call`]'s error bookkeeping.
    pub fn host_ref(&mut self) -> HostRef<'_> {
        TensorHost_TO::from_ptr(abi_stable::sabi_types::RMut::new(self), TD_Opaque)
    }

    /// Put a host tensor into the arena (shallow: shares storage with `t`).
    pub fn insert(&mut self, t: Tensor) -> TensorId {
        let id = self.next;
        self.next += 1;
        self.arena.insert(id, t);
        TensorId(id)
    }

    pub fn get(&self, id: TensorId) -> Option<&Tensor> {
        self.arena.get(&id.0)
    }

    /// Remove a tensor from the arena and hand it to the caller.
    pub fn take(&mut self, id: TensorId) -> Option<Tensor> {
        self.arena.remove(&id.0)
    }

    pub fn remove(&mut self, id: TensorId) {
        self.arena.remove(&id.0);
    }

    /// Number of live handles (leak checks in tests).
    pub fn live(&self) -> usize {
        self.arena.len()
    }

    /// Run one plugin call with this host's table. Host errors recorded during the call win over
    /// the call's own result, so a NaN-free but failed op is never mistaken for success.
    pub fn call<R>(&mut self, f: impl FnOnce(&mut HostRef<'_>) -> RResult<R, RString>) -> Result<R, String> {
        self.error = None;
        let result = {
            let mut to: HostRef<'_> = TensorHost_TO::from_ptr(abi_stable::sabi_types::RMut::new(self), TD_Opaque);
            f(&mut to)
        };
        match (result, self.error.take()) {
            (_, Some(host_error)) => Err(host_error),
            (RResult::ROk(v), None) => Ok(v),
            (RResult::RErr(e), None) => Err(e.into_string()),
        }
    }

    fn fail(&mut self, message: String) -> TensorId {
        if self.error.is_none() {
            self.error = Some(message);
        }
        TensorId::INVALID
    }

    fn tensor(&mut self, id: TensorId, op: &str) -> Option<Tensor> {
        match self.arena.get(&id.0) {
            Some(t) => Some(t.shallow_clone()),
            None => {
                let what = if id == TensorId::INVALID {
                    format!("host op `{op}`: input is the result of an earlier failed op")
                } else {
                    format!("host op `{op}`: unknown tensor handle {} (released or never created)", id.0)
                };
                self.fail(what);
                None
            }
        }
    }

    /// A handle that may be absent ([`TensorId::INVALID`] = none); `Err` (error recorded) when
    /// it is given but unknown.
    fn optional_tensor(&mut self, id: TensorId, op: &str) -> Result<Option<Tensor>, ()> {
        if id == TensorId::INVALID {
            return Ok(None);
        }
        self.tensor(id, op).map(Some).ok_or(())
    }

    fn emit(&mut self, op: &str, r: Result<Tensor, tch::TchError>) -> TensorId {
        match r {
            Ok(t) => self.insert(t),
            Err(e) => self.fail(format!("host op `{op}`: {}", torch_message(&e.to_string()))),
        }
    }

    /// Refuse a scalar argument that the dtype of tensor `x` cannot hold ([`ablate_sdk::range`]);
    /// an unknown `x` is left to the op itself to report.
    fn scalars_fit(&mut self, op: &str, x: TensorId, args: &[(&str, f64, bool)]) -> bool {
        let Some(limit) = self.arena.get(&x.0).and_then(scalar_limit) else {
            return true;
        };
        for &(arg, value, allow_nan) in args {
            if let Err(e) = check_scalar(op, arg, value, limit, allow_nan) {
                self.fail(e);
                return false;
            }
        }
        true
    }

    /// Run one op of the table with panics contained: a tch call that panics (a libtorch error
    /// unwrapped inside tch) becomes this op's error, never an abort at the FFI boundary.
    fn guard<R>(&mut self, op: &str, fallback: R, f: impl FnOnce(&mut Self) -> R) -> R {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(self))) {
            Ok(r) => r,
            Err(payload) => {
                let message = panic_message(&*payload);
                self.fail(format!("host op `{op}`: {message}"));
                fallback
            }
        }
    }

    fn unary_op(
        &mut self,
        op: &str,
        x: TensorId,
        f: impl FnOnce(&Tensor) -> Result<Tensor, tch::TchError>,
    ) -> TensorId {
        match self.tensor(x, op) {
            Some(t) => {
                let r = f(&t);
                self.emit(op, r)
            }
            None => TensorId::INVALID,
        }
    }
}

/// log-softmax along `dim`. libtorch's CPU kernel vectorises along that dimension, which is
/// slow when it is short (10 classes: ≈ 16 ns per element); moved to the front it vectorises
/// across rows instead: the same values to float rounding (a few 1e-7), 3–5× faster for hundreds
/// of rows of 10 classes. The result is a strided view.
pub fn log_softmax(t: &Tensor, dim: i64) -> Result<Tensor, tch::TchError> {
    let size = t.size();
    let d = if dim < 0 { dim + size.len() as i64 } else { dim };
    let short = size.len() >= 2 && (0..size.len() as i64).contains(&d) && size[d as usize] <= 32;
    if t.device() == Device::Cpu && short && t.numel() as i64 >= 64 * size[d as usize] {
        // The layout change is the CPU's alone: a launch count of the GPU's path leaves it out.
        let moved = {
            let _cpu = crate::dispatch_count::CpuOnly::enter();
            t.f_movedim([d].as_slice(), [0].as_slice())?.f_contiguous()?
        };
        let out = moved.f_log_softmax(0, t.kind())?;
        let _cpu = crate::dispatch_count::CpuOnly::enter();
        return out.f_movedim([0].as_slice(), [d].as_slice());
    }
    t.f_log_softmax(dim, t.kind())
}

/// The first line of a libtorch error, without tch's `Torch("...")` wrapping and the C++
/// backtrace that follows it.
fn torch_message(s: &str) -> String {
    let line = s.lines().next().unwrap_or(s).trim();
    let line = line.strip_prefix("Torch(\"").and_then(|l| l.strip_suffix("\")")).unwrap_or(line);
    line.to_owned()
}

/// The message of a panic caught inside a host op (a tch call that unwrapped a libtorch error).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-string payload".to_owned());
    // tch's `unwrap()` of a libtorch error reads `called `Result::unwrap()` on an `Err` value: Torch("...")`.
    match text.split_once("Torch(\"") {
        Some((_, rest)) => rest.split_once("\")").map_or(rest, |(m, _)| m).to_owned(),
        None => torch_message(&text),
    }
}

/// The scalar limit of a tensor's dtype ([`ablate_sdk::range`]): float32 in a run.
fn scalar_limit(t: &Tensor) -> Option<ScalarLimit> {
    match t.f_kind().ok()? {
        Kind::Float => Some(FLOAT32),
        Kind::Half => Some(ScalarLimit { dtype: "float16", max: 65504.0 }),
        Kind::BFloat16 => Some(ScalarLimit { dtype: "bfloat16", max: 3.389_531_389_251_535_5e38 }),
        _ => None,
    }
}

/// The op table's bodies; [`TensorHost`] runs each through [`TchHost::guard`].
trait RawOps {
    fn shape(&self, x: TensorId) -> RVec<i64>;
    fn full_like(&mut self, x: TensorId, value: f64) -> TensorId;
    fn randn_like(&mut self, x: TensorId) -> TensorId;
    fn rand_like(&mut self, x: TensorId) -> TensorId;
    fn unary(&mut self, op: UnaryOp, x: TensorId) -> TensorId;
    fn binary(&mut self, op: BinaryOp, a: TensorId, b: TensorId) -> TensorId;
    fn affine(&mut self, x: TensorId, mul: f64, add: f64) -> TensorId;
    fn pow_scalar(&mut self, x: TensorId, exponent: f64) -> TensorId;
    fn clamp(&mut self, x: TensorId, min: f64, max: f64) -> TensorId;
    fn reduce(&mut self, op: ReduceOp, x: TensorId) -> TensorId;
    fn reduce_dim(&mut self, op: ReduceOp, x: TensorId, dim: i64, keepdim: bool) -> TensorId;
    fn select(&mut self, cond: TensorId, a: TensorId, b: TensorId) -> TensorId;
    fn log_softmax(&mut self, x: TensorId, dim: i64) -> TensorId;
    fn gather_rows(&mut self, x: TensorId, index: TensorId) -> TensorId;
    fn one_hot(&mut self, labels: TensorId, classes: i64) -> TensorId;
    fn augment_crop_flip(&mut self, images: TensorId, pad: i64, flip: bool) -> TensorId;
    fn assign(&mut self, dst: TensorId, src: TensorId);
    fn axpby(&mut self, y: TensorId, a: f64, x: TensorId, b: f64);
    fn addcmul(&mut self, y: TensorId, a: f64, x: TensorId, z: TensorId);
    fn ou_update(&mut self, m: TensorId, g: TensorId, s: TensorId, temperature: TensorId, step: OuStep);
    fn item(&mut self, x: TensorId) -> f64;
    fn potential(&mut self, at: TensorId, full_batch: bool) -> Potential;
}

impl TensorHost for TchHost<'_> {
    fn shape(&self, x: TensorId) -> RVec<i64> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| RawOps::shape(self, x))).unwrap_or_default()
    }
    fn full_like(&mut self, x: TensorId, value: f64) -> TensorId {
        self.guard("full_like", TensorId::INVALID, |h| RawOps::full_like(h, x, value))
    }
    fn randn_like(&mut self, x: TensorId) -> TensorId {
        self.guard("randn_like", TensorId::INVALID, |h| RawOps::randn_like(h, x))
    }
    fn rand_like(&mut self, x: TensorId) -> TensorId {
        self.guard("rand_like", TensorId::INVALID, |h| RawOps::rand_like(h, x))
    }
    fn unary(&mut self, op: UnaryOp, x: TensorId) -> TensorId {
        self.guard(op.name(), TensorId::INVALID, |h| RawOps::unary(h, op, x))
    }
    fn binary(&mut self, op: BinaryOp, a: TensorId, b: TensorId) -> TensorId {
        self.guard(op.name(), TensorId::INVALID, |h| RawOps::binary(h, op, a, b))
    }
    fn affine(&mut self, x: TensorId, mul: f64, add: f64) -> TensorId {
        self.guard("affine", TensorId::INVALID, |h| RawOps::affine(h, x, mul, add))
    }
    fn pow_scalar(&mut self, x: TensorId, exponent: f64) -> TensorId {
        self.guard("pow_scalar", TensorId::INVALID, |h| RawOps::pow_scalar(h, x, exponent))
    }
    fn clamp(&mut self, x: TensorId, min: f64, max: f64) -> TensorId {
        self.guard("clamp", TensorId::INVALID, |h| RawOps::clamp(h, x, min, max))
    }
    fn reduce(&mut self, op: ReduceOp, x: TensorId) -> TensorId {
        self.guard(op.name(), TensorId::INVALID, |h| RawOps::reduce(h, op, x))
    }
    fn reduce_dim(&mut self, op: ReduceOp, x: TensorId, dim: i64, keepdim: bool) -> TensorId {
        self.guard(op.name(), TensorId::INVALID, |h| RawOps::reduce_dim(h, op, x, dim, keepdim))
    }
    fn select(&mut self, cond: TensorId, a: TensorId, b: TensorId) -> TensorId {
        self.guard("select", TensorId::INVALID, |h| RawOps::select(h, cond, a, b))
    }
    fn log_softmax(&mut self, x: TensorId, dim: i64) -> TensorId {
        self.guard("log_softmax", TensorId::INVALID, |h| RawOps::log_softmax(h, x, dim))
    }
    fn gather_rows(&mut self, x: TensorId, index: TensorId) -> TensorId {
        self.guard("gather_rows", TensorId::INVALID, |h| RawOps::gather_rows(h, x, index))
    }
    fn one_hot(&mut self, labels: TensorId, classes: i64) -> TensorId {
        self.guard("one_hot", TensorId::INVALID, |h| RawOps::one_hot(h, labels, classes))
    }
    fn augment_crop_flip(&mut self, images: TensorId, pad: i64, flip: bool) -> TensorId {
        self.guard("augment_crop_flip", TensorId::INVALID, |h| RawOps::augment_crop_flip(h, images, pad, flip))
    }
    fn assign(&mut self, dst: TensorId, src: TensorId) {
        self.guard("assign", (), |h| RawOps::assign(h, dst, src))
    }
    fn axpby(&mut self, y: TensorId, a: f64, x: TensorId, b: f64) {
        self.guard("axpby", (), |h| RawOps::axpby(h, y, a, x, b))
    }
    fn addcmul(&mut self, y: TensorId, a: f64, x: TensorId, z: TensorId) {
        self.guard("addcmul", (), |h| RawOps::addcmul(h, y, a, x, z))
    }
    fn ou_update(&mut self, m: TensorId, g: TensorId, s: TensorId, temperature: TensorId, step: OuStep) {
        self.guard("ou_update", (), |h| RawOps::ou_update(h, m, g, s, temperature, step))
    }
    fn item(&mut self, x: TensorId) -> f64 {
        self.guard("item", f64::NAN, |h| RawOps::item(h, x))
    }
    fn potential(&mut self, at: TensorId, full_batch: bool) -> Potential {
        let invalid = Potential { energy: TensorId::INVALID, grad: TensorId::INVALID };
        self.guard("potential", invalid, |h| RawOps::potential(h, at, full_batch))
    }
    fn release(&mut self, x: TensorId) {
        self.arena.remove(&x.0);
    }
    fn error(&self) -> ROption<RString> {
        self.error.clone().map(RString::from).into()
    }
    fn matmul(&mut self, a: TensorId, b: TensorId) -> TensorId {
        self.guard("matmul", TensorId::INVALID, |h| h.matmul_op(a, b))
    }
    fn reshape(&mut self, x: TensorId, shape: RSlice<'_, i64>) -> TensorId {
        self.guard("reshape", TensorId::INVALID, |h| h.reshape_op(x, shape.as_slice()))
    }
    fn constant_like(&mut self, like: TensorId, shape: RSlice<'_, i64>, values: RSlice<'_, f64>) -> TensorId {
        self.guard("constant_like", TensorId::INVALID, |h| h.constant_op(like, shape.as_slice(), values.as_slice()))
    }
}

/// The shape-changing ops (added at the end of the table); shapes follow
/// [`ablate_sdk::shapes`], the rules the test kit's host applies too.
impl TchHost<'_> {
    fn matmul_op(&mut self, a: TensorId, b: TensorId) -> TensorId {
        let (Some(x), Some(y)) = (self.tensor(a, "matmul"), self.tensor(b, "matmul")) else {
            return TensorId::INVALID;
        };
        if let Err(e) = ablate_sdk::shapes::matmul(&x.size(), &y.size()) {
            return self.fail(e);
        }
        let r = x.f_matmul(&y);
        self.emit("matmul", r)
    }

    fn reshape_op(&mut self, x: TensorId, shape: &[i64]) -> TensorId {
        let Some(t) = self.tensor(x, "reshape") else {
            return TensorId::INVALID;
        };
        match ablate_sdk::shapes::reshape(t.numel() as i64, shape) {
            Ok(s) => {
                let r = t.f_reshape(s.as_slice());
                self.emit("reshape", r)
            }
            Err(e) => self.fail(e),
        }
    }

    fn constant_op(&mut self, like: TensorId, shape: &[i64], values: &[f64]) -> TensorId {
        let Some(t) = self.tensor(like, "constant_like") else {
            return TensorId::INVALID;
        };
        let limit = scalar_limit(&t).unwrap_or(ScalarLimit { dtype: "float64", max: f64::MAX });
        if let Err(e) = ablate_sdk::shapes::constant(shape, values, limit) {
            return self.fail(e);
        }
        let r = Tensor::f_from_slice(values)
            .and_then(|c| c.f_reshape(shape))
            .and_then(|c| c.f_to_kind(t.kind()))
            .and_then(|c| c.f_to_device(t.device()));
        self.emit("constant_like", r)
    }
}

impl RawOps for TchHost<'_> {
    fn shape(&self, x: TensorId) -> RVec<i64> {
        self.arena.get(&x.0).map(|t| t.size().into()).unwrap_or_default()
    }

    fn full_like(&mut self, x: TensorId, value: f64) -> TensorId {
        if !self.scalars_fit("full_like", x, &[("value", value, true)]) {
            return TensorId::INVALID;
        }
        self.unary_op("full_like", x, |t| t.f_full_like(value))
    }

    fn randn_like(&mut self, x: TensorId) -> TensorId {
        self.unary_op("randn_like", x, |t| t.f_randn_like())
    }

    fn rand_like(&mut self, x: TensorId) -> TensorId {
        self.unary_op("rand_like", x, |t| t.f_rand_like())
    }

    fn unary(&mut self, op: UnaryOp, x: TensorId) -> TensorId {
        self.unary_op(op.name(), x, |t| match op {
            UnaryOp::Neg => t.f_neg(),
            UnaryOp::Abs => t.f_abs(),
            UnaryOp::Sign => t.f_sign(),
            UnaryOp::Square => t.f_square(),
            UnaryOp::Sqrt => t.f_sqrt(),
            UnaryOp::Rsqrt => t.f_rsqrt(),
            UnaryOp::Exp => t.f_exp(),
            UnaryOp::Log => t.f_log(),
            UnaryOp::Log1p => t.f_log1p(),
            UnaryOp::Tanh => t.f_tanh(),
            UnaryOp::Reciprocal => t.f_reciprocal(),
            UnaryOp::Relu => t.f_relu(),
            UnaryOp::Sin => t.f_sin(),
            UnaryOp::Cos => t.f_cos(),
            UnaryOp::Floor => t.f_floor(),
            UnaryOp::Softplus => t.f_softplus(),
        })
    }

    fn binary(&mut self, op: BinaryOp, a: TensorId, b: TensorId) -> TensorId {
        let (Some(x), Some(y)) = (self.tensor(a, op.name()), self.tensor(b, op.name())) else {
            return TensorId::INVALID;
        };
        let r = match op {
            BinaryOp::Add => x.f_add(&y),
            BinaryOp::Sub => x.f_sub(&y),
            BinaryOp::Mul => x.f_mul(&y),
            BinaryOp::Div => x.f_div(&y),
            BinaryOp::Pow => x.f_pow(&y),
            BinaryOp::Maximum => x.f_maximum(&y),
            BinaryOp::Minimum => x.f_minimum(&y),
            BinaryOp::Greater => x.f_gt_tensor(&y).and_then(|m| m.f_to_kind(x.kind())),
            BinaryOp::LogAddExp => x.f_logaddexp(&y),
        };
        self.emit(op.name(), r)
    }

    fn affine(&mut self, x: TensorId, mul: f64, add: f64) -> TensorId {
        if !self.scalars_fit("affine", x, &[("mul", mul, true), ("add", add, true)]) {
            return TensorId::INVALID;
        }
        self.unary_op("affine", x, |t| match crate::fused::affine(t, mul, add) {
            Some(y) => Ok(y),
            None if add == 0.0 => t.f_mul_scalar(mul),
            None => t.f_mul_scalar(mul).and_then(|t| t.f_add_scalar(add)),
        })
    }

    fn pow_scalar(&mut self, x: TensorId, exponent: f64) -> TensorId {
        if !self.scalars_fit("pow_scalar", x, &[("exponent", exponent, false)]) {
            return TensorId::INVALID;
        }
        self.unary_op("pow_scalar", x, |t| t.f_pow_tensor_scalar(exponent))
    }

    fn clamp(&mut self, x: TensorId, min: f64, max: f64) -> TensorId {
        if !self.scalars_fit("clamp", x, &[("min", min, false), ("max", max, false)]) {
            return TensorId::INVALID;
        }
        self.unary_op("clamp", x, |t| t.f_clamp(min, max))
    }

    fn reduce(&mut self, op: ReduceOp, x: TensorId) -> TensorId {
        self.unary_op(op.name(), x, |t| match op {
            ReduceOp::Sum => t.f_sum(t.kind()),
            ReduceOp::Mean => t.f_mean(t.kind()),
            ReduceOp::Max => t.f_max(),
            ReduceOp::Min => t.f_min(),
        })
    }

    fn reduce_dim(&mut self, op: ReduceOp, x: TensorId, dim: i64, keepdim: bool) -> TensorId {
        self.unary_op(op.name(), x, |t| match op {
            ReduceOp::Sum => t.f_sum_dim_intlist([dim].as_slice(), keepdim, t.kind()),
            ReduceOp::Mean => t.f_mean_dim([dim].as_slice(), keepdim, t.kind()),
            ReduceOp::Max => t.f_amax([dim].as_slice(), keepdim),
            ReduceOp::Min => t.f_amin([dim].as_slice(), keepdim),
        })
    }

    fn select(&mut self, cond: TensorId, a: TensorId, b: TensorId) -> TensorId {
        let (Some(c), Some(x), Some(y)) =
            (self.tensor(cond, "select"), self.tensor(a, "select"), self.tensor(b, "select"))
        else {
            return TensorId::INVALID;
        };
        let r = c.f_gt(0.0).and_then(|m| x.f_where_self(&m, &y));
        self.emit("select", r)
    }

    fn log_softmax(&mut self, x: TensorId, dim: i64) -> TensorId {
        self.unary_op("log_softmax", x, |t| log_softmax(t, dim))
    }

    fn gather_rows(&mut self, x: TensorId, index: TensorId) -> TensorId {
        let (Some(t), Some(i)) = (self.tensor(x, "gather_rows"), self.tensor(index, "gather_rows")) else {
            return TensorId::INVALID;
        };
        let r = i
            .f_to_kind(Kind::Int64)
            .and_then(|i| i.f_unsqueeze(1))
            .and_then(|i| t.f_gather(1, &i, false))
            .and_then(|g| g.f_squeeze_dim(1));
        self.emit("gather_rows", r)
    }

    fn one_hot(&mut self, labels: TensorId, classes: i64) -> TensorId {
        self.unary_op("one_hot", labels, |t| {
            t.f_to_kind(Kind::Int64).and_then(|l| l.f_one_hot(classes)).and_then(|o| o.f_to_kind(Kind::Float))
        })
    }

    fn augment_crop_flip(&mut self, images: TensorId, pad: i64, flip: bool) -> TensorId {
        self.unary_op("augment_crop_flip", images, |x| crate::augment::crop_flip(x, pad, flip))
    }

    fn assign(&mut self, dst: TensorId, src: TensorId) {
        let (Some(mut d), Some(s)) = (self.tensor(dst, "assign"), self.tensor(src, "assign")) else {
            return;
        };
        // Same shape only: libtorch's copy_ broadcasts, so `g.set(&g.sum())` would fill every
        // element with the sum and pass every later shape check.
        if d.size() != s.size() {
            self.fail(format!(
                "host op `assign` (Tensor::set): the source has shape {:?}, the destination {:?}; `set` copies a \
                 tensor of the destination's own shape (use `full_like` for a constant)",
                s.size(),
                d.size()
            ));
            return;
        }
        let _guard = tch::no_grad_guard();
        if let Err(e) = d.f_copy_(&s) {
            self.fail(format!("host op `assign`: {}", torch_message(&e.to_string())));
        }
    }

    fn axpby(&mut self, y: TensorId, a: f64, x: TensorId, b: f64) {
        if !self.scalars_fit("axpby", y, &[("a", a, false), ("b", b, false)]) {
            return;
        }
        let (Some(mut yt), Some(xt)) = (self.tensor(y, "axpby"), self.tensor(x, "axpby")) else {
            return;
        };
        let _guard = tch::no_grad_guard();
        // Two kernels at most and no temporary: y *= b; y += x·a (a 0-d CPU scalar tensor
        // broadcasts on any device).
        let r = (|| -> Result<(), tch::TchError> {
            if b != 1.0 {
                let _ = yt.f_mul_scalar_(b)?;
            }
            if a == 0.0 {
                // y ← b·y only.
            } else if a == 1.0 {
                let _ = yt.f_add_(&xt)?;
            } else {
                let _ = yt.f_addcmul_(&xt, &Tensor::from(a).to_kind(xt.kind()))?;
            }
            Ok(())
        })();
        if let Err(e) = r {
            self.fail(format!("host op `axpby`: {}", torch_message(&e.to_string())));
        }
    }

    fn addcmul(&mut self, y: TensorId, a: f64, x: TensorId, z: TensorId) {
        if !self.scalars_fit("addcmul", y, &[("a", a, false)]) {
            return;
        }
        let (Some(yt), Some(xt), Some(zt)) =
            (self.tensor(y, "addcmul"), self.tensor(x, "addcmul"), self.tensor(z, "addcmul"))
        else {
            return;
        };
        let _guard = tch::no_grad_guard();
        if let Err(e) = crate::fused::addcmul(&yt, a, &xt, &zt) {
            self.fail(format!("host op `addcmul`: {}", torch_message(&e)));
        }
    }

    fn ou_update(&mut self, m: TensorId, g: TensorId, s: TensorId, temperature: TensorId, step: OuStep) {
        let Some(mt) = self.tensor(m, "ou_update") else { return };
        let (Ok(gt), Some(st), Ok(per_chain)) = (
            self.optional_tensor(g, "ou_update"),
            self.tensor(s, "ou_update"),
            self.optional_tensor(temperature, "ou_update"),
        ) else {
            return;
        };
        let _guard = tch::no_grad_guard();
        let noise = self.noise.get_or_insert_with(crate::fused::NoiseStream::from_libtorch);
        if let Err(e) = crate::fused::ou_update(noise, &mt, gt.as_ref(), &st, per_chain.as_ref(), step) {
            self.fail(format!("host op `ou_update`: {e}"));
        }
    }

    fn item(&mut self, x: TensorId) -> f64 {
        match self.tensor(x, "item") {
            Some(t) if t.numel() == 1 => match t.f_reshape([] as [i64; 0]).and_then(|s| s.f_double_value(&[])) {
                Ok(v) => v,
                Err(e) => {
                    self.fail(format!("host op `item`: {}", torch_message(&e.to_string())));
                    f64::NAN
                }
            },
            Some(t) => {
                self.fail(format!("host op `item`: expected a one-element tensor, got shape {:?}", t.size()));
                f64::NAN
            }
            None => f64::NAN,
        }
    }

    fn potential(&mut self, at: TensorId, full_batch: bool) -> Potential {
        let invalid = Potential { energy: TensorId::INVALID, grad: TensorId::INVALID };
        let Some(theta) = self.tensor(at, "potential") else {
            return invalid;
        };
        let Some(mut f) = self.potential.take() else {
            self.fail("host op `potential`: this engine context offers no energy evaluation".to_owned());
            return invalid;
        };
        let r = f(&theta, full_batch);
        self.potential = Some(f);
        match r {
            Ok((u, g)) => Potential { energy: self.insert(u), grad: self.insert(g) },
            Err(e) => {
                self.fail(format!("host op `potential`: {e}"));
                invalid
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_softmax_over_a_short_dimension_equals_libtorchs_values_and_gradients() {
        // [17, 50, 10] (batched chains' logits), [850, 10], and a short dimension in the middle.
        for (shape, dim) in [(vec![17i64, 50, 10], -1i64), (vec![850, 10], 1), (vec![100, 10, 7], 1)] {
            let x = Tensor::randn(shape.as_slice(), (Kind::Float, Device::Cpu)).set_requires_grad(true);
            let w = Tensor::randn(shape.as_slice(), (Kind::Float, Device::Cpu));
            let ours = log_softmax(&x, dim).unwrap();
            let reference = x.log_softmax(dim, Kind::Float);
            let err = f64::try_from((&ours - &reference).abs().max()).unwrap();
            assert!(err < 2e-6, "values of {shape:?} differ by {err}");
            let g_ours = Tensor::run_backward(&[(&ours * &w).sum(Kind::Float)], &[&x], false, false).remove(0);
            let g_ref = Tensor::run_backward(&[(&reference * &w).sum(Kind::Float)], &[&x], false, false).remove(0);
            let err = f64::try_from((&g_ours - &g_ref).abs().max()).unwrap();
            assert!(err < 1e-6, "gradients of {shape:?} differ by {err}");
        }
    }
}
