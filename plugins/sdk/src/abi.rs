//! Everything that crosses the `.so` boundary: FFI-safe types, the host's tensor-operation
//! table, the four factor interfaces and the root module a plugin library exports.
//!
//! Rules of the boundary:
//! - tensors never cross: plugins hold opaque [`TensorId`] handles into the host's arena and
//!   compute through [`TensorHost`], so tensors stay on their device and autograd, RNG and
//!   devices stay in the host;
//! - one call per step with all parameters in one flat tensor, never per element;
//! - errors are values: a failed host op returns [`TensorId::INVALID`] and records the error,
//!   a plugin returns `RErr`, and a panic in plugin code is caught by the SDK glue.
//!
//! Types here may only grow at the end (abi_stable prefix rules); any other change bumps
//! [`crate::SDK_VERSION`].

#![allow(non_camel_case_types)] // abi_stable derives `PluginModule_Ref` and the `*_TO` types

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::{RMut, VersionStrings},
    std_types::{RBox, ROption, RResult, RSlice, RStr, RString, RVec},
    StableAbi,
};

/// Handle of a tensor owned by the host.
#[repr(transparent)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorId(pub u64);

impl TensorId {
    /// The result of a failed operation; every op given it returns it again.
    pub const INVALID: TensorId = TensorId(u64::MAX);
}

/// Elementwise one-input ops of [`TensorHost::unary`].
#[repr(u8)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq, Eq)]
pub enum UnaryOp {
    /// −x.
    Neg,
    /// |x|.
    Abs,
    /// −1, 0 or 1 (NaN stays NaN).
    Sign,
    /// x².
    Square,
    /// √x.
    Sqrt,
    /// 1/√x.
    Rsqrt,
    /// eˣ.
    Exp,
    /// ln(x).
    Log,
    /// ln(1 + x).
    Log1p,
    /// tanh(x).
    Tanh,
    /// 1/x.
    Reciprocal,
    /// max(x, 0).
    Relu,
    /// sin(x).
    Sin,
    /// cos(x).
    Cos,
    /// ⌊x⌋.
    Floor,
    /// log(1 + exp(x)), numerically stable.
    Softplus,
}

/// Elementwise two-input ops of [`TensorHost::binary`] (broadcasting like PyTorch).
#[repr(u8)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    /// a + b.
    Add,
    /// a − b.
    Sub,
    /// a·b.
    Mul,
    /// a / b.
    Div,
    /// aᵇ.
    Pow,
    /// max(a, b) (NaN propagates).
    Maximum,
    /// min(a, b) (NaN propagates).
    Minimum,
    /// 1.0 where a > b, else 0.0.
    Greater,
    /// log(exp(a) + exp(b)), numerically stable.
    LogAddExp,
}

/// Reductions of [`TensorHost::reduce`] and [`TensorHost::reduce_dim`].
#[repr(u8)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    /// Sum.
    Sum,
    /// Mean.
    Mean,
    /// Maximum (NaN propagates).
    Max,
    /// Minimum (NaN propagates).
    Min,
}

impl UnaryOp {
    /// The op's name in host error messages (`host op `exp``).
    pub fn name(self) -> &'static str {
        match self {
            UnaryOp::Neg => "neg",
            UnaryOp::Abs => "abs",
            UnaryOp::Sign => "sign",
            UnaryOp::Square => "square",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Rsqrt => "rsqrt",
            UnaryOp::Exp => "exp",
            UnaryOp::Log => "log",
            UnaryOp::Log1p => "log1p",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Reciprocal => "reciprocal",
            UnaryOp::Relu => "relu",
            UnaryOp::Sin => "sin",
            UnaryOp::Cos => "cos",
            UnaryOp::Floor => "floor",
            UnaryOp::Softplus => "softplus",
        }
    }
}

impl BinaryOp {
    /// The op's name in host error messages.
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Pow => "pow",
            BinaryOp::Maximum => "maximum",
            BinaryOp::Minimum => "minimum",
            BinaryOp::Greater => "greater",
            BinaryOp::LogAddExp => "log_add_exp",
        }
    }
}

impl ReduceOp {
    /// The op's name in host error messages.
    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Mean => "mean",
            ReduceOp::Max => "max",
            ReduceOp::Min => "min",
        }
    }
}

/// What a parameter tensor is, for priors that treat roles differently.
#[repr(u8)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// A weight matrix or convolution kernel.
    Weight,
    /// A bias vector.
    Bias,
    /// Scale/shift of a normalisation layer (batch norm, FRN).
    Norm,
}

impl Role {
    /// The lowercase name used in grid files and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Weight => "weight",
            Role::Bias => "bias",
            Role::Norm => "norm",
        }
    }
}

/// Metadata of one parameter tensor; `offset`/`numel` locate it in the flat parameter vector.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct ParamInfo {
    /// The name (tensor name such as `fc1.weight`, or factory name in grid files).
    pub name: RString,
    /// Name of the layer the tensor belongs to (e.g. `fc1`).
    pub layer: RString,
    /// What the tensor is (weight, bias, normalisation scale/shift).
    pub role: Role,
    /// Shape of the tensor.
    pub shape: RVec<i64>,
    /// Inputs per output unit of the layer (He/Glorot-style priors).
    pub fan_in: i64,
    /// Outputs of the layer.
    pub fan_out: i64,
    /// Offset of the tensor in the flat parameter vector.
    pub offset: i64,
    /// Number of elements of one chain's tensor (product of `shape`); in batched runs the
    /// tensor handed over has K times as many.
    pub numel: i64,
    #[cfg(feature = "abi-mismatch-for-tests")]
    pub extra_field_for_tests: u64,
}

impl ParamInfo {
    /// Describe a parameter tensor of `shape` stored at `offset` of the flat vector.
    pub fn new(name: &str, layer: &str, role: Role, shape: &[i64], fan_in: i64, fan_out: i64, offset: i64) -> Self {
        ParamInfo {
            name: name.into(),
            layer: layer.into(),
            role,
            shape: shape.to_vec().into(),
            fan_in,
            fan_out,
            offset,
            numel: shape.iter().product(),
            #[cfg(feature = "abi-mismatch-for-tests")]
            extra_field_for_tests: 0,
        }
    }
}

/// Scalars of [`TensorHost::ou_update`]: m ← β·m + a·g + sqrt(coef·T)·s⊙ξ.
#[repr(C)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq)]
pub struct OuStep {
    /// Momentum decay β.
    pub beta: f64,
    /// Kick coefficient a (of the gradient g).
    pub a: f64,
    /// Noise coefficient: the noise standard deviation is sqrt(coef·T).
    pub coef: f64,
    /// T for all chains (ignored when per-chain temperatures are given).
    pub t: f64,
}

/// U(θ) and ∇U(θ) evaluated by the host (for integrators with Metropolis–Hastings or HMC).
#[repr(C)]
#[derive(StableAbi, Copy, Clone, Debug)]
pub struct Potential {
    /// 0-d tensor: U(θ) = n·(mean NLL) − log p(θ).
    pub energy: TensorId,
    /// ∇U(θ), flat like the parameters.
    pub grad: TensorId,
}

/// The host's tensor-operation table, implemented on real `tch` tensors (CPU or CUDA).
///
/// Ops broadcast like PyTorch. A failed op returns [`TensorId::INVALID`] and the host keeps the
/// first error; it is reported after the plugin call returns, so plugin math needs no `?`.
#[sabi_trait]
pub trait TensorHost {
    /// Shape of a tensor (empty for an unknown handle).
    fn shape(&self, x: TensorId) -> RVec<i64>;
    /// A tensor shaped like `x` filled with `value` (scalar rule of [`crate::range`]).
    fn full_like(&mut self, x: TensorId, value: f64) -> TensorId;
    /// Standard normal draws from the cell's seeded stream.
    fn randn_like(&mut self, x: TensorId) -> TensorId;
    /// Uniform [0, 1) draws from the cell's seeded stream.
    fn rand_like(&mut self, x: TensorId) -> TensorId;
    /// An elementwise op (see [`UnaryOp`]).
    fn unary(&mut self, op: UnaryOp, x: TensorId) -> TensorId;
    /// An elementwise op of two tensors (see [`BinaryOp`]).
    fn binary(&mut self, op: BinaryOp, a: TensorId, b: TensorId) -> TensorId;
    /// x·mul + add.
    fn affine(&mut self, x: TensorId, mul: f64, add: f64) -> TensorId;
    /// xᵖ elementwise (the exponent obeys the scalar rule of [`crate::range`]).
    fn pow_scalar(&mut self, x: TensorId, exponent: f64) -> TensorId;
    /// Elementwise clamp to [min, max]; bounds obey the scalar rule of [`crate::range`] (±∞ allowed, NaN not).
    fn clamp(&mut self, x: TensorId, min: f64, max: f64) -> TensorId;
    /// Reduce over all elements to a 0-d tensor (stays on the device: no synchronisation).
    fn reduce(&mut self, op: ReduceOp, x: TensorId) -> TensorId;
    /// Reduce along `dim` (negative counts from the end), keeping it as size 1 if `keepdim`.
    fn reduce_dim(&mut self, op: ReduceOp, x: TensorId, dim: i64, keepdim: bool) -> TensorId;
    /// where(cond > 0, a, b).
    fn select(&mut self, cond: TensorId, a: TensorId, b: TensorId) -> TensorId;
    /// log-softmax along `dim`.
    fn log_softmax(&mut self, x: TensorId, dim: i64) -> TensorId;
    /// Per-row value of `x[i, index[i]]` (index: integer class labels).
    fn gather_rows(&mut self, x: TensorId, index: TensorId) -> TensorId;
    /// [N, classes] float one-hot rows of integer labels in [0, classes).
    fn one_hot(&mut self, labels: TensorId, classes: i64) -> TensorId;
    /// Random per-example crop of zero-padded images (N,C,H,W) and, if `flip`, a random
    /// horizontal flip: the standard CIFAR augmentation.
    fn augment_crop_flip(&mut self, images: TensorId, pad: i64, flip: bool) -> TensorId;
    /// dst ← src, in place, outside autograd; `src` has the shape of `dst` (no broadcasting).
    fn assign(&mut self, dst: TensorId, src: TensorId);
    /// y ← a·x + b·y, in place, outside autograd.
    fn axpby(&mut self, y: TensorId, a: f64, x: TensorId, b: f64);
    /// y ← y + a·x⊙z, in place, outside autograd.
    fn addcmul(&mut self, y: TensorId, a: f64, x: TensorId, z: TensorId);
    /// The Langevin O-step with kick, in place and outside autograd, in one pass where the host
    /// can fuse it: m ← β·m + a·g + sqrt(coef·T)·s⊙ξ, ξ ~ N(0, I) from the cell's stream. T is
    /// the per-chain `temperature` ([K, 1] against m [K, d]) when valid, else `step.t`; `g` may
    /// be INVALID (no kick). Nothing is drawn when coef·T = 0 for every chain.
    fn ou_update(&mut self, m: TensorId, g: TensorId, s: TensorId, temperature: TensorId, step: OuStep);
    /// Read a 0-d tensor (synchronises with the device: keep it off the per-step path).
    fn item(&mut self, x: TensorId) -> f64;
    /// U and ∇U at `at` (same shape as the parameters) on the full training set (`full_batch`)
    /// or on the current minibatch.
    fn potential(&mut self, at: TensorId, full_batch: bool) -> Potential;
    /// Release a handle (the host frees the tensor when no one else holds it).
    fn release(&mut self, x: TensorId);
    /// The first error since the plugin call started, if any.
    #[sabi(last_prefix_field)]
    fn error(&self) -> ROption<RString>;

    // Ops added in `ablate-sdk 3`, at the end with default bodies (abi_stable's rule for
    // extending a trait object). They still change the interface: abi_stable checks prefix types
    // as if the library provided them, so a plugin built against the shorter table is refused
    // by the host's longer one ("too many fields", measured with such a build); hence the SDK
    // version bump, and older plugins are refused with the file named and need a rebuild.

    /// Matrix product: `a` [..., n, k] times `b` [k, m] (one matrix for every leading index of
    /// `a`), or `a` [B..., n, k] times `b` [B..., k, m] with equal leading dimensions;
    /// [`crate::shapes::matmul`] is the shape rule both hosts apply.
    fn matmul(&mut self, a: TensorId, b: TensorId) -> TensorId {
        let _ = (a, b);
        TensorId::INVALID
    }
    /// `x` with a new shape of the same number of elements (one entry may be −1: inferred), in
    /// row-major order; [`crate::shapes::reshape`] is the rule.
    fn reshape(&mut self, x: TensorId, shape: RSlice<'_, i64>) -> TensorId {
        let _ = (x, shape);
        TensorId::INVALID
    }
    /// A constant tensor of `shape` holding `values` (row-major), with the dtype and device of
    /// `like`, outside autograd. Values obey the scalar rule of [`crate::range`] (NaN refused).
    fn constant_like(&mut self, like: TensorId, shape: RSlice<'_, i64>, values: RSlice<'_, f64>) -> TensorId {
        let _ = (like, shape, values);
        TensorId::INVALID
    }
}

/// The host's table as plugins receive it.
pub type HostRef<'a> = TensorHost_TO<'a, RMut<'a, ()>>;

/// Scalars of one sampler step. `lr`, `momentum_decay` are the base values; each integrator
/// applies `timestep_factor` C its own way (the reference's `dynamics_parameters`).
#[repr(C)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq)]
pub struct StepCtx {
    /// Global step, 1-based.
    pub step: u64,
    /// Base learning rate ℓ (before the cyclical factor).
    pub lr: f64,
    /// Base momentum decay β (before the cyclical factor).
    pub momentum_decay: f64,
    /// Cyclical factor C scaling the SDE step h.
    pub timestep_factor: f64,
    /// Current temperature (after the ramp); in a batched run with per-chain temperatures
    /// (`StepTensors::temperature` valid) the largest of them.
    pub temperature: f64,
    /// Effective training-set size n that enters U = n·G.
    pub n: f64,
    /// Examples in this step's gradient: the noise plan's `gradient_batch`, 0 for the full
    /// training set (the variances in [`NoiseStats`] were measured at
    /// [`NoiseStats::batch_size`]).
    pub batch_size: u64,
}

/// Tensors of one step, all flat like the parameters.
#[repr(C)]
#[derive(StableAbi, Copy, Clone, Debug)]
pub struct StepTensors {
    /// Flat parameters θ (\[d\], or \[K, d\] for K batched chains); the integrator updates them in place.
    pub params: TensorId,
    /// ∇ of the per-example mean minibatch loss G̃ = mean NLL − (1/n)·log p(θ).
    pub grad: TensorId,
    /// Mass M (one value per parameter tensor, broadcast to elements) and its transforms.
    pub mass: TensorId,
    /// M⁻¹, flat.
    pub mass_inv: TensorId,
    /// M^{1/2}, flat.
    pub mass_sqrt: TensorId,
    /// M^{-1/2}, flat.
    pub mass_inv_sqrt: TensorId,
    /// Per-chain temperatures shaped [K, 1] when the K chains of a batched run (parameters
    /// [K, d]) differ in temperature; [`TensorId::INVALID`] when every chain runs at
    /// `StepCtx::temperature`.
    pub temperature: TensorId,
}

/// What an integrator step reports back to the host.
#[repr(C)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq)]
pub struct StepReport {
    /// Metropolis–Hastings acceptance probability of this step; NaN if the integrator has none.
    pub acceptance: f64,
}

/// [`GradientPlan::gradient_batch`] when the plugin's `plan` panicked (the call has no error
/// channel: the SDK's glue prints the panic on stderr and returns this; the host refuses it).
pub const PLAN_FAILED: u64 = u64::MAX;

/// How the gradient is estimated each step.
#[repr(C)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq, Eq)]
pub struct GradientPlan {
    /// Examples per gradient; 0 = the full training set.
    pub gradient_batch: u64,
}

/// Measured minibatch gradient noise (from the preconditioner batches of this epoch).
#[repr(C)]
#[derive(StableAbi, Copy, Clone, Debug)]
pub struct NoiseStats {
    /// Per-element variance of a minibatch-mean gradient at `batch_size`.
    pub var_elementwise: TensorId,
    /// The same, averaged within each parameter tensor (broadcast to elements).
    pub var_per_tensor: TensorId,
    /// Examples in this step's gradient: the noise plan's `gradient_batch`, 0 for the full
    /// training set (the variances in [`NoiseStats`] were measured at
    /// [`NoiseStats::batch_size`]).
    pub batch_size: u64,
}

/// Normalisation layers a likelihood may ask the model for.
#[repr(u8)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq, Eq)]
pub enum NormKind {
    /// No normalisation layer.
    None,
    /// Batch normalisation.
    BatchNorm,
    /// Filter response normalisation with a TLU (Singh & Krishnan 2020).
    Frn,
}

/// What the model must contain for a likelihood ("dirty likelihood" toggles).
#[repr(C)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq)]
pub struct ModelToggles {
    /// The normalisation layers of the model.
    pub norm: NormKind,
    /// Dropout probability (0 = none).
    pub dropout: f64,
}

/// The four kinds of factor a plugin can offer.
#[repr(u8)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FactorKind {
    /// A prior over the parameters.
    Prior,
    /// A likelihood (and the model toggles it needs).
    Likelihood,
    /// An SDE integrator.
    Integrator,
    /// A gradient noise model.
    Noise,
}

impl FactorKind {
    /// Every kind, in display order.
    pub const ALL: [FactorKind; 4] =
        [FactorKind::Prior, FactorKind::Likelihood, FactorKind::Integrator, FactorKind::Noise];
    /// The lowercase name used in grid files and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            FactorKind::Prior => "prior",
            FactorKind::Likelihood => "likelihood",
            FactorKind::Integrator => "integrator",
            FactorKind::Noise => "noise",
        }
    }
    /// The kind named `s` (`"prior"`, `"likelihood"`, `"integrator"`, `"noise"`), if any.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One factory a library offers.
#[repr(C)]
#[derive(StableAbi, Clone, Debug)]
pub struct FactoryInfo {
    /// The factor kind.
    pub kind: FactorKind,
    /// The name (tensor name such as `fc1.weight`, or factory name in grid files).
    pub name: RString,
    /// One line for `ablate plugins list`.
    pub description: RString,
    /// JSON array of parameter specs: `[{"name","type","default","min","max","doc"}]`.
    pub params_json: RString,
}

/// A prior as the host calls it (FFI-safe; authors implement [`crate::Prior`]).
#[sabi_trait]
pub trait PriorObj: Send {
    /// log p(θ) as a 0-d tensor, normalising constants included (autograd runs in the host).
    fn log_prob(
        &self,
        host: &mut HostRef<'_>,
        params: RSlice<'_, TensorId>,
        infos: RSlice<'_, ParamInfo>,
    ) -> RResult<TensorId, RString>;
    /// A draw for one parameter tensor shaped like `like`; `RNone` if the prior does not cover
    /// this role (the host keeps the initial value).
    fn sample(&self, host: &mut HostRef<'_>, info: &ParamInfo, like: TensorId) -> RResult<ROption<TensorId>, RString>;
    /// ∇ log p(θ), one tensor per parameter tensor (shaped like it), when the prior has it in
    /// closed form: the host then skips the autograd pass through `log_prob` on every step.
    /// `RNone`: the host differentiates `log_prob`.
    #[sabi(last_prefix_field)]
    fn grad_log_prob(
        &self,
        host: &mut HostRef<'_>,
        params: RSlice<'_, TensorId>,
        infos: RSlice<'_, ParamInfo>,
    ) -> RResult<ROption<RVec<TensorId>>, RString>;
    /// If the prior is a zero-mean isotropic Gaussian per parameter tensor: one precision 1/σ²
    /// per tensor (0 for a tensor it does not cover), so that ∇ log p(θ) = −P ⊙ θ. The host then
    /// applies the prior to the flat gradient in one fused operation instead of one call per
    /// tensor (on a GPU, one kernel instead of a hundred for ResNet-20). `RNone`: no such form.
    /// Added in `ablate-sdk 4`, at the end with a default body; as with the ops of SDK 3, a
    /// library built against the shorter table is refused ("too many fields") and needs a
    /// rebuild, hence the version bump.
    fn isotropic_precision(&self, infos: RSlice<'_, ParamInfo>) -> RResult<ROption<RVec<f64>>, RString> {
        let _ = infos;
        RResult::ROk(ROption::RNone)
    }
}

/// An integrator as the host calls it (authors implement [`crate::Integrator`]).
#[sabi_trait]
pub trait IntegratorObj: Send {
    /// Allocate the state (momenta, thermostats) for flat parameters `params`.
    fn init(&mut self, host: &mut HostRef<'_>, params: TensorId) -> RResult<(), RString>;
    /// One step: update `t.params` in place.
    fn step(&mut self, host: &mut HostRef<'_>, ctx: &StepCtx, t: &StepTensors) -> RResult<StepReport, RString>;
    /// The mass changed: multiply momenta by `factor` = sqrt(M_new / M_old) (flat).
    fn rescale_momenta(&mut self, host: &mut HostRef<'_>, factor: TensorId) -> RResult<(), RString>;
    /// Elementwise m ⊙ M⁻¹ m for the kinetic temperature; `RNone` without momenta.
    fn kinetic(&self, host: &mut HostRef<'_>, mass_inv: TensorId) -> RResult<ROption<TensorId>, RString>;
    /// Whether `step` is correct for batched chains: parameters (and every flat tensor) shaped
    /// [K, d] with independent chains along the first dimension, and per-chain temperatures in
    /// `StepTensors::temperature`. Steps that reduce over all parameters (Metropolis–Hastings
    /// on one energy) must say false; the host then runs such cells one chain at a time.
    #[sabi(last_prefix_field)]
    fn batchable(&self) -> bool;
}

/// A noise model as the host calls it (authors implement [`crate::NoiseModel`]).
#[sabi_trait]
pub trait NoiseObj: Send {
    /// Examples per gradient for a configured minibatch `config_batch` out of `n` (0 = full batch).
    fn plan(&self, config_batch: u64, n: u64) -> GradientPlan;
    /// Transform the gradient estimate in place.
    #[sabi(last_prefix_field)]
    fn transform(
        &mut self,
        host: &mut HostRef<'_>,
        ctx: &StepCtx,
        grad: TensorId,
        stats: &NoiseStats,
    ) -> RResult<(), RString>;
}

/// A likelihood as the host calls it (authors implement [`crate::Likelihood`]).
#[sabi_trait]
pub trait LikelihoodObj: Send {
    /// The model toggles (normalisation layers, dropout) this likelihood needs.
    fn model(&self) -> ModelToggles;
    /// The effective training-set size that enters U = n·G, given the number of examples.
    fn effective_n(&self, examples: u64) -> f64;
    /// Transform a training batch (augmentation); `RNone` = unchanged.
    fn augment(&mut self, host: &mut HostRef<'_>, images: TensorId) -> RResult<ROption<TensorId>, RString>;
    /// Mean negative log-likelihood of a batch (0-d).
    #[sabi(last_prefix_field)]
    fn nll(&self, host: &mut HostRef<'_>, logits: TensorId, labels: TensorId) -> RResult<TensorId, RString>;
}

/// A prior object as a library exports it (boxed, FFI-safe).
pub type PriorBox = PriorObj_TO<'static, RBox<()>>;
/// An integrator object as a library exports it.
pub type IntegratorBox = IntegratorObj_TO<'static, RBox<()>>;
/// A noise-model object as a library exports it.
pub type NoiseBox = NoiseObj_TO<'static, RBox<()>>;
/// A likelihood object as a library exports it.
pub type LikelihoodBox = LikelihoodObj_TO<'static, RBox<()>>;

/// The root module of a plugin library: one per `.so`, many factories inside.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModule_Ref)))]
#[sabi(missing_field(panic))]
pub struct PluginModule {
    /// The SDK version the library was built with ([`crate::SDK_VERSION`]).
    pub sdk_version: extern "C" fn() -> RStr<'static>,
    /// Build string: crate name and version, and the tch/libtorch build for a raw fast path
    /// ("" = the plugin does not link libtorch).
    pub build: extern "C" fn() -> RString,
    /// Every factory the library offers.
    pub factories: extern "C" fn() -> RVec<FactoryInfo>,
    /// Build the prior `name` from parameters as JSON (validated against its specs).
    pub new_prior: extern "C" fn(name: RStr<'_>, params_json: RStr<'_>) -> RResult<PriorBox, RString>,
    /// Build the integrator `name` from parameters as JSON.
    pub new_integrator: extern "C" fn(name: RStr<'_>, params_json: RStr<'_>) -> RResult<IntegratorBox, RString>,
    /// Build the noise model `name` from parameters as JSON.
    pub new_noise: extern "C" fn(name: RStr<'_>, params_json: RStr<'_>) -> RResult<NoiseBox, RString>,
    /// Build the likelihood `name` from parameters as JSON.
    #[sabi(last_prefix_field)]
    pub new_likelihood: extern "C" fn(name: RStr<'_>, params_json: RStr<'_>) -> RResult<LikelihoodBox, RString>,
}

impl RootModule for PluginModule_Ref {
    declare_root_module_statics! {PluginModule_Ref}
    const BASE_NAME: &'static str = "ablate_plugin";
    const NAME: &'static str = "ablate_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}
