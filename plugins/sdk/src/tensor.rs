//! Ergonomic tensor math over the host's operation table.
//!
//! ```ignore
//! let noise = ops.randn_like(&m) * sigma;
//! m.set(&(&m * beta - &g * (h * n) + noise * &mass_sqrt));
//! ```
//! A [`Tensor`] owns its host handle and releases it when dropped. Failed ops yield an invalid
//! handle and the host reports the first error when the plugin call returns, so math needs no
//! `?`; call [`Ops::check`] to stop early.

use std::cell::RefCell;
use std::ops::{Add, Div, Mul, Neg, Sub};

use abi_stable::std_types::{RResult, RString};

use crate::abi::{BinaryOp, HostRef, Potential, ReduceOp, TensorId, UnaryOp};

/// Access to the host table, type-erased so that [`Ops`] and [`Tensor`] carry one lifetime.
trait HostAccess {
    fn with_host(&self, f: &mut dyn FnMut(&mut HostRef<'_>));
}

/// The host table for the duration of one plugin call (built by the SDK glue).
pub struct HostCell<'a, 'h> {
    host: RefCell<&'a mut HostRef<'h>>,
}

impl<'a, 'h> HostCell<'a, 'h> {
    /// Wrap the host table for one plugin call (the SDK glue does this).
    pub fn new(host: &'a mut HostRef<'h>) -> Self {
        Self { host: RefCell::new(host) }
    }
    /// The table as [`Ops`].
    pub fn ops(&self) -> Ops<'_> {
        Ops { inner: self }
    }
}

impl HostAccess for HostCell<'_, '_> {
    fn with_host(&self, f: &mut dyn FnMut(&mut HostRef<'_>)) {
        f(&mut self.host.borrow_mut())
    }
}

/// The host's operation table as plugin code sees it: cheap to copy, creates [`Tensor`]s.
#[derive(Clone, Copy)]
pub struct Ops<'o> {
    inner: &'o (dyn HostAccess + 'o),
}

impl<'o> Ops<'o> {
    fn with<R>(&self, f: impl FnOnce(&mut HostRef<'_>) -> R) -> R {
        let mut f = Some(f);
        let mut out = None;
        self.inner.with_host(&mut |h| {
            if let Some(f) = f.take() {
                out = Some(f(h));
            }
        });
        out.expect("host access runs the closure exactly once")
    }

    fn wrap(&self, id: TensorId) -> Tensor<'o> {
        Tensor { id, ops: *self, owned: true }
    }

    /// Borrow a tensor the host owns (parameters, gradients): not released on drop.
    pub fn borrow(&self, id: TensorId) -> Tensor<'o> {
        Tensor { id, ops: *self, owned: false }
    }

    /// Take ownership of a handle this plugin keeps across calls (e.g. momenta).
    pub fn adopt(&self, id: TensorId) -> Tensor<'o> {
        self.wrap(id)
    }

    /// A tensor shaped like `x` filled with `value` (float32 range, see [`crate::range`]).
    pub fn full_like(&self, x: &Tensor, value: f64) -> Tensor<'o> {
        self.wrap(self.with(|h| h.full_like(x.id, value)))
    }
    /// Zeros shaped like `x`.
    pub fn zeros_like(&self, x: &Tensor) -> Tensor<'o> {
        self.full_like(x, 0.0)
    }
    /// N(0, 1) draws shaped like `x` from the cell's seeded stream.
    pub fn randn_like(&self, x: &Tensor) -> Tensor<'o> {
        self.wrap(self.with(|h| h.randn_like(x.id)))
    }
    /// U[0, 1) draws shaped like `x` from the cell's seeded stream.
    pub fn rand_like(&self, x: &Tensor) -> Tensor<'o> {
        self.wrap(self.with(|h| h.rand_like(x.id)))
    }
    /// [N, classes] float one-hot rows of integer labels.
    pub fn one_hot(&self, labels: &Tensor, classes: i64) -> Tensor<'o> {
        self.wrap(self.with(|h| h.one_hot(labels.id, classes)))
    }
    /// Random crop of zero-padded (N, C, H, W) images by up to `pad` pixels, and a random horizontal flip if `flip`.
    pub fn augment_crop_flip(&self, images: &Tensor, pad: i64, flip: bool) -> Tensor<'o> {
        self.wrap(self.with(|h| h.augment_crop_flip(images.id, pad, flip)))
    }
    /// In place: m ← β·m + a·g + sqrt(coef·T)·s⊙ξ with ξ ~ N(0, I) (`kick` = (a, g) optional;
    /// T per chain in batched runs; no draw when coef·T = 0), fused by the host where it can.
    pub fn ou_update(
        &self,
        m: &Tensor,
        beta: f64,
        kick: Option<(f64, &Tensor)>,
        coef: f64,
        temp: &crate::Temperature,
        s: &Tensor,
    ) {
        let (a, g) = kick.map_or((0.0, TensorId::INVALID), |(a, g)| (a, g.id));
        let (t, per_chain) = match temp {
            crate::Temperature::Shared(t) => (*t, TensorId::INVALID),
            crate::Temperature::PerChain(t) => (f64::NAN, t.id),
        };
        self.with(|h| h.ou_update(m.id, g, s.id, per_chain, crate::abi::OuStep { beta, a, coef, t }))
    }
    /// U and ∇U at `at` (full training set or current minibatch).
    pub fn potential(&self, at: &Tensor, full_batch: bool) -> (Tensor<'o>, Tensor<'o>) {
        let Potential { energy, grad } = self.with(|h| h.potential(at.id, full_batch));
        (self.wrap(energy), self.wrap(grad))
    }
    /// A constant tensor of `shape` holding `values` (row-major) with the dtype and device of
    /// `like`, outside autograd (float32 range, see [`crate::range`]).
    pub fn constant(&self, like: &Tensor, shape: &[i64], values: &[f64]) -> Tensor<'o> {
        self.wrap(self.with(|h| h.constant_like(like.id, shape.into(), values.into())))
    }
    /// The first error of this call so far.
    pub fn check(&self) -> Result<(), String> {
        match self.with(|h| h.error()) {
            abi_stable::std_types::ROption::RSome(e) => Err(e.into_string()),
            abi_stable::std_types::ROption::RNone => Ok(()),
        }
    }
}

/// A tensor handle with operators. Cheap: arithmetic creates a new host tensor.
pub struct Tensor<'o> {
    id: TensorId,
    ops: Ops<'o>,
    owned: bool,
}

impl Drop for Tensor<'_> {
    fn drop(&mut self) {
        if self.owned && self.id != TensorId::INVALID {
            let id = self.id;
            self.ops.with(|h| h.release(id));
        }
    }
}

impl<'o> Tensor<'o> {
    /// The host handle.
    pub fn id(&self) -> TensorId {
        self.id
    }
    /// Give the handle up without releasing it (to keep it across calls, or return it).
    pub fn into_id(mut self) -> TensorId {
        self.owned = false;
        self.id
    }
    /// The shape (empty for a 0-d tensor or an invalid handle).
    pub fn shape(&self) -> Vec<i64> {
        self.ops.with(|h| h.shape(self.id)).into_vec()
    }
    fn un(&self, op: UnaryOp) -> Tensor<'o> {
        self.ops.wrap(self.ops.with(|h| h.unary(op, self.id)))
    }
    fn bin(&self, op: BinaryOp, other: &Tensor) -> Tensor<'o> {
        self.ops.wrap(self.ops.with(|h| h.binary(op, self.id, other.id)))
    }
    fn red(&self, op: ReduceOp) -> Tensor<'o> {
        self.ops.wrap(self.ops.with(|h| h.reduce(op, self.id)))
    }
    /// |x|.
    pub fn abs(&self) -> Tensor<'o> {
        self.un(UnaryOp::Abs)
    }
    /// −1, 0 or 1.
    pub fn sign(&self) -> Tensor<'o> {
        self.un(UnaryOp::Sign)
    }
    /// x².
    pub fn square(&self) -> Tensor<'o> {
        self.un(UnaryOp::Square)
    }
    /// √x.
    pub fn sqrt(&self) -> Tensor<'o> {
        self.un(UnaryOp::Sqrt)
    }
    /// 1/√x.
    pub fn rsqrt(&self) -> Tensor<'o> {
        self.un(UnaryOp::Rsqrt)
    }
    /// eˣ (overflows to ∞ above ≈ 88.7 in float32).
    pub fn exp(&self) -> Tensor<'o> {
        self.un(UnaryOp::Exp)
    }
    /// ln x (−∞ at 0, NaN below).
    pub fn ln(&self) -> Tensor<'o> {
        self.un(UnaryOp::Log)
    }
    /// ln(1 + x), accurate near 0.
    pub fn ln_1p(&self) -> Tensor<'o> {
        self.un(UnaryOp::Log1p)
    }
    /// tanh x.
    pub fn tanh(&self) -> Tensor<'o> {
        self.un(UnaryOp::Tanh)
    }
    /// 1/x.
    pub fn recip(&self) -> Tensor<'o> {
        self.un(UnaryOp::Reciprocal)
    }
    /// max(x, 0).
    pub fn relu(&self) -> Tensor<'o> {
        self.un(UnaryOp::Relu)
    }
    /// sin x.
    pub fn sin(&self) -> Tensor<'o> {
        self.un(UnaryOp::Sin)
    }
    /// cos x.
    pub fn cos(&self) -> Tensor<'o> {
        self.un(UnaryOp::Cos)
    }
    /// ⌊x⌋.
    pub fn floor(&self) -> Tensor<'o> {
        self.un(UnaryOp::Floor)
    }
    /// ln(1 + eˣ), numerically stable.
    pub fn softplus(&self) -> Tensor<'o> {
        self.un(UnaryOp::Softplus)
    }
    /// xʸ elementwise (broadcasting).
    pub fn pow(&self, other: &Tensor) -> Tensor<'o> {
        self.bin(BinaryOp::Pow, other)
    }
    /// xᵖ (exponent in float32 range).
    pub fn powf(&self, exponent: f64) -> Tensor<'o> {
        self.ops.wrap(self.ops.with(|h| h.pow_scalar(self.id, exponent)))
    }
    /// max(x, y) elementwise (NaN propagates).
    pub fn maximum(&self, other: &Tensor) -> Tensor<'o> {
        self.bin(BinaryOp::Maximum, other)
    }
    /// min(x, y) elementwise (NaN propagates).
    pub fn minimum(&self, other: &Tensor) -> Tensor<'o> {
        self.bin(BinaryOp::Minimum, other)
    }
    /// 1.0 where self > other, else 0.0.
    pub fn gt(&self, other: &Tensor) -> Tensor<'o> {
        self.bin(BinaryOp::Greater, other)
    }
    /// ln(eˣ + eʸ), numerically stable.
    pub fn log_add_exp(&self, other: &Tensor) -> Tensor<'o> {
        self.bin(BinaryOp::LogAddExp, other)
    }
    /// self·mul + add.
    pub fn affine(&self, mul: f64, add: f64) -> Tensor<'o> {
        self.ops.wrap(self.ops.with(|h| h.affine(self.id, mul, add)))
    }
    /// Clamp to [min, max]; bounds in float32 range or ±∞ (`f64::INFINITY` for no upper bound), not NaN.
    pub fn clamp(&self, min: f64, max: f64) -> Tensor<'o> {
        self.ops.wrap(self.ops.with(|h| h.clamp(self.id, min, max)))
    }
    /// Sum of all elements (0-d).
    pub fn sum(&self) -> Tensor<'o> {
        self.red(ReduceOp::Sum)
    }
    /// Mean of all elements (0-d).
    pub fn mean(&self) -> Tensor<'o> {
        self.red(ReduceOp::Mean)
    }
    /// Largest element (0-d).
    pub fn max(&self) -> Tensor<'o> {
        self.red(ReduceOp::Max)
    }
    /// Smallest element (0-d).
    pub fn min(&self) -> Tensor<'o> {
        self.red(ReduceOp::Min)
    }
    /// Sum along `dim`.
    pub fn sum_dim(&self, dim: i64, keepdim: bool) -> Tensor<'o> {
        self.ops.wrap(self.ops.with(|h| h.reduce_dim(ReduceOp::Sum, self.id, dim, keepdim)))
    }
    /// Mean along `dim`.
    pub fn mean_dim(&self, dim: i64, keepdim: bool) -> Tensor<'o> {
        self.ops.wrap(self.ops.with(|h| h.reduce_dim(ReduceOp::Mean, self.id, dim, keepdim)))
    }
    /// Matrix product `self @ other` ([`crate::shapes::matmul`]: `other` one matrix, or with
    /// the same leading dimensions as `self`).
    pub fn matmul(&self, other: &Tensor) -> Tensor<'o> {
        self.ops.wrap(self.ops.with(|h| h.matmul(self.id, other.id)))
    }
    /// The same elements in a new shape (row-major; one entry may be −1).
    pub fn reshape(&self, shape: &[i64]) -> Tensor<'o> {
        self.ops.wrap(self.ops.with(|h| h.reshape(self.id, shape.into())))
    }
    /// where(self > 0, a, b).
    pub fn select(&self, a: &Tensor, b: &Tensor) -> Tensor<'o> {
        self.ops.wrap(self.ops.with(|h| h.select(self.id, a.id, b.id)))
    }
    /// log-softmax along `dim`.
    pub fn log_softmax(&self, dim: i64) -> Tensor<'o> {
        self.ops.wrap(self.ops.with(|h| h.log_softmax(self.id, dim)))
    }
    /// Row-wise `self[i, index[i]]`.
    pub fn gather_rows(&self, index: &Tensor) -> Tensor<'o> {
        self.ops.wrap(self.ops.with(|h| h.gather_rows(self.id, index.id)))
    }
    /// In place: self ← src (outside autograd); `src` has the shape of `self` (a host error
    /// otherwise: no broadcasting).
    pub fn set(&self, src: &Tensor) {
        self.ops.with(|h| h.assign(self.id, src.id))
    }
    /// In place: self ← a·x + b·self (outside autograd).
    pub fn axpby(&self, a: f64, x: &Tensor, b: f64) {
        self.ops.with(|h| h.axpby(self.id, a, x.id, b))
    }
    /// In place: self ← self + a·x⊙z (outside autograd).
    pub fn addcmul(&self, a: f64, x: &Tensor, z: &Tensor) {
        self.ops.with(|h| h.addcmul(self.id, a, x.id, z.id))
    }
    /// Read a 0-d tensor (synchronises with the device).
    pub fn item(&self) -> f64 {
        self.ops.with(|h| h.item(self.id))
    }
}

macro_rules! binary_operator {
    ($trait:ident, $method:ident, $op:expr, $mul:expr, $add:expr) => {
        impl<'o> $trait<&Tensor<'o>> for &Tensor<'o> {
            type Output = Tensor<'o>;
            fn $method(self, rhs: &Tensor<'o>) -> Tensor<'o> {
                self.bin($op, rhs)
            }
        }
        impl<'o> $trait<Tensor<'o>> for Tensor<'o> {
            type Output = Tensor<'o>;
            fn $method(self, rhs: Tensor<'o>) -> Tensor<'o> {
                self.bin($op, &rhs)
            }
        }
        impl<'o> $trait<&Tensor<'o>> for Tensor<'o> {
            type Output = Tensor<'o>;
            fn $method(self, rhs: &Tensor<'o>) -> Tensor<'o> {
                self.bin($op, rhs)
            }
        }
        impl<'o> $trait<Tensor<'o>> for &Tensor<'o> {
            type Output = Tensor<'o>;
            fn $method(self, rhs: Tensor<'o>) -> Tensor<'o> {
                self.bin($op, &rhs)
            }
        }
        impl<'o> $trait<f64> for &Tensor<'o> {
            type Output = Tensor<'o>;
            #[allow(clippy::redundant_closure_call)]
            fn $method(self, rhs: f64) -> Tensor<'o> {
                let (mul, add): (f64, f64) = ($mul(rhs), $add(rhs));
                self.affine(mul, add)
            }
        }
        impl<'o> $trait<f64> for Tensor<'o> {
            type Output = Tensor<'o>;
            fn $method(self, rhs: f64) -> Tensor<'o> {
                (&self).$method(rhs)
            }
        }
    };
}

binary_operator!(Add, add, BinaryOp::Add, |_| 1.0, |s| s);
binary_operator!(Sub, sub, BinaryOp::Sub, |_| 1.0, |s: f64| -s);
binary_operator!(Mul, mul, BinaryOp::Mul, |s| s, |_| 0.0);
binary_operator!(Div, div, BinaryOp::Div, |s: f64| 1.0 / s, |_| 0.0);

impl<'o> Neg for &Tensor<'o> {
    type Output = Tensor<'o>;
    fn neg(self) -> Tensor<'o> {
        self.un(UnaryOp::Neg)
    }
}
impl<'o> Neg for Tensor<'o> {
    type Output = Tensor<'o>;
    fn neg(self) -> Tensor<'o> {
        self.un(UnaryOp::Neg)
    }
}

/// Turn a plugin result plus any host error into the boundary's result type.
pub(crate) fn finish<T>(ops: &Ops, result: Result<T, String>) -> RResult<T, RString> {
    match (result, ops.check()) {
        (Err(e), _) | (Ok(_), Err(e)) => RResult::RErr(e.into()),
        (Ok(v), Ok(())) => RResult::ROk(v),
    }
}
