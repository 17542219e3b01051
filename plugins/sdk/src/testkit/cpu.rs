//! [`CpuHost`]: a pure-Rust reference implementation of [`TensorHost`] on f64 tensors.
//!
//! Semantics follow the libtorch host: PyTorch broadcasting for binary ops and `select`,
//! reductions to 0-d tensors, a seeded random stream, the first error kept until
//! [`CpuHost::take_error`], and [`TensorId::INVALID`] propagated by every op.

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::sabi_types::RMut;
use abi_stable::std_types::{ROption, RSlice, RString, RVec};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::abi::{BinaryOp, HostRef, OuStep, Potential, ReduceOp, TensorHost, TensorHost_TO, TensorId, UnaryOp};
use crate::tensor::{HostCell, Ops};

/// U(θ) and ∇U(θ) for [`TensorHost::potential`]: flat parameters in, (energy, gradient) out.
pub type PotentialFn = Box<dyn FnMut(&[f64]) -> (f64, Vec<f64>)>;

#[derive(Clone, Debug)]
struct Buf {
    shape: Vec<i64>,
    data: Vec<f64>,
}

fn numel(shape: &[i64]) -> usize {
    shape.iter().map(|&s| s.max(0) as usize).product()
}

/// Broadcast shape of two shapes (PyTorch rules), `None` if incompatible.
fn broadcast_shape(a: &[i64], b: &[i64]) -> Option<Vec<i64>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for (i, o) in out.iter_mut().enumerate() {
        let da = if i + a.len() >= n { a[i + a.len() - n] } else { 1 };
        let db = if i + b.len() >= n { b[i + b.len() - n] } else { 1 };
        *o = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return None;
        };
    }
    Some(out)
}

/// For each element of `out` (row-major), the offset of the broadcast source element in `src`.
fn source_offsets(src: &[i64], out: &[i64]) -> Vec<usize> {
    let n = out.len();
    let mut strides = vec![0usize; n];
    let mut acc = 1usize;
    for i in (0..src.len()).rev() {
        let o = i + n - src.len();
        strides[o] = if src[i] == 1 { 0 } else { acc };
        acc *= src[i].max(0) as usize;
    }
    let total = numel(out);
    let mut offsets = Vec::with_capacity(total);
    let mut idx = vec![0i64; n];
    for _ in 0..total {
        offsets.push(idx.iter().zip(&strides).map(|(&i, &s)| i as usize * s).sum());
        for d in (0..n).rev() {
            idx[d] += 1;
            if idx[d] < out[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    offsets
}

fn unary_fn(op: UnaryOp) -> fn(f64) -> f64 {
    match op {
        UnaryOp::Neg => |x| -x,
        UnaryOp::Abs => f64::abs,
        UnaryOp::Sign => |x: f64| {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                x * 0.0 // keeps NaN, gives 0 for ±0
            }
        },
        UnaryOp::Square => |x| x * x,
        UnaryOp::Sqrt => f64::sqrt,
        UnaryOp::Rsqrt => |x: f64| 1.0 / x.sqrt(),
        UnaryOp::Exp => f64::exp,
        UnaryOp::Log => f64::ln,
        UnaryOp::Log1p => f64::ln_1p,
        UnaryOp::Tanh => f64::tanh,
        UnaryOp::Reciprocal => |x: f64| 1.0 / x,
        UnaryOp::Relu => |x: f64| if x > 0.0 { x } else { 0.0 },
        UnaryOp::Sin => f64::sin,
        UnaryOp::Cos => f64::cos,
        UnaryOp::Floor => f64::floor,
        UnaryOp::Softplus => |x: f64| x.max(0.0) + (-x.abs()).exp().ln_1p(),
    }
}

fn binary_fn(op: BinaryOp) -> fn(f64, f64) -> f64 {
    match op {
        BinaryOp::Add => |a, b| a + b,
        BinaryOp::Sub => |a, b| a - b,
        BinaryOp::Mul => |a, b| a * b,
        BinaryOp::Div => |a, b| a / b,
        BinaryOp::Pow => f64::powf,
        BinaryOp::Maximum => |a: f64, b: f64| {
            if a.is_nan() || b.is_nan() {
                f64::NAN
            } else {
                a.max(b)
            }
        },
        BinaryOp::Minimum => |a: f64, b: f64| {
            if a.is_nan() || b.is_nan() {
                f64::NAN
            } else {
                a.min(b)
            }
        },
        BinaryOp::Greater => |a, b| if a > b { 1.0 } else { 0.0 },
        BinaryOp::LogAddExp => |a: f64, b: f64| {
            let m = a.max(b);
            if m == f64::NEG_INFINITY {
                m
            } else {
                m + ((a - m).exp() + (b - m).exp()).ln()
            }
        },
    }
}

/// A reference host on f64 tensors (shape + row-major data) for plugin tests without libtorch.
///
/// ```
/// use ablate_sdk::testkit::CpuHost;
/// let mut host = CpuHost::new(7);
/// let x = host.insert(&[3], &[1.0, 2.0, 3.0]);
/// let y = host.with_ops(|ops| (ops.borrow(x) * 2.0).into_id());
/// assert_eq!(host.get(y), &[2.0, 4.0, 6.0]);
/// ```
pub struct CpuHost {
    /// Slot `id` holds tensor `id` while it is live (ids are never reused).
    tensors: Vec<Option<Buf>>,
    live: usize,
    rng: ChaCha8Rng,
    spare_normal: Option<f64>,
    error: Option<String>,
    potential: Option<PotentialFn>,
    potential_calls: u64,
}

impl CpuHost {
    /// A host whose random stream (randn_like, rand_like, augmentation) is seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            tensors: Vec::new(),
            live: 0,
            rng: ChaCha8Rng::seed_from_u64(seed),
            spare_normal: None,
            error: None,
            potential: None,
            potential_calls: 0,
        }
    }

    /// The host as plugin objects receive it (`&mut host.host_ref()` for boxed plugins).
    pub fn host_ref(&mut self) -> HostRef<'_> {
        TensorHost_TO::from_ptr(RMut::new(self), TD_Opaque)
    }

    /// Run author-trait code (`Prior`, `Integrator`, ...) directly on this host.
    pub fn with_ops<R>(&mut self, f: impl for<'o> FnOnce(Ops<'o>) -> R) -> R {
        let mut host = self.host_ref();
        let cell = HostCell::new(&mut host);
        f(cell.ops())
    }

    /// A new tensor; panics if `data.len()` does not match `shape` (a test bug).
    pub fn insert(&mut self, shape: &[i64], data: &[f64]) -> TensorId {
        assert_eq!(
            numel(shape),
            data.len(),
            "CpuHost::insert: shape {shape:?} needs {} values, got {}",
            numel(shape),
            data.len()
        );
        self.put(shape.to_vec(), data.to_vec())
    }

    /// A 0-d tensor.
    pub fn scalar(&mut self, value: f64) -> TensorId {
        self.put(Vec::new(), vec![value])
    }

    /// The data of a live tensor; panics on an unknown id (a test bug).
    pub fn get(&self, id: TensorId) -> &[f64] {
        &self.slot(id).unwrap_or_else(|| panic!("CpuHost::get: unknown tensor id {}", id.0)).data
    }

    /// The shape of a live tensor; panics on an unknown id.
    pub fn shape_of(&self, id: TensorId) -> &[i64] {
        &self.slot(id).unwrap_or_else(|| panic!("CpuHost::shape_of: unknown tensor id {}", id.0)).shape
    }

    /// Overwrite the data of a live tensor (same length).
    pub fn set_data(&mut self, id: TensorId, data: &[f64]) {
        let buf = self.slot_mut(id).unwrap_or_else(|| panic!("CpuHost::set_data: unknown tensor id {}", id.0));
        assert_eq!(buf.data.len(), data.len(), "CpuHost::set_data: length");
        buf.data.copy_from_slice(data);
    }

    /// Install (or remove) the function behind [`TensorHost::potential`]. The same function
    /// serves full-batch and minibatch requests.
    pub fn set_potential(&mut self, f: Option<PotentialFn>) {
        self.potential = f;
    }

    /// How many times `potential` was called.
    pub fn potential_calls(&self) -> u64 {
        self.potential_calls
    }

    /// The first recorded error, clearing it (what the real host does between plugin calls).
    pub fn take_error(&mut self) -> Option<String> {
        self.error.take()
    }

    /// Number of live tensors (leak checks: it must not grow step after step).
    pub fn live_tensors(&self) -> usize {
        self.live
    }

    /// Reseed the random stream.
    pub fn reseed(&mut self, seed: u64) {
        self.rng = ChaCha8Rng::seed_from_u64(seed);
        self.spare_normal = None;
    }

    fn slot(&self, id: TensorId) -> Option<&Buf> {
        self.tensors.get(id.0 as usize).and_then(Option::as_ref)
    }

    fn slot_mut(&mut self, id: TensorId) -> Option<&mut Buf> {
        self.tensors.get_mut(id.0 as usize).and_then(Option::as_mut)
    }

    fn put(&mut self, shape: Vec<i64>, data: Vec<f64>) -> TensorId {
        let id = self.tensors.len() as u64;
        self.tensors.push(Some(Buf { shape, data }));
        self.live += 1;
        TensorId(id)
    }

    /// The libtorch host's scalar rule for float32 tensors ([`crate::range`]): this host
    /// stands in for a run's float32 tensors, so it refuses what that host refuses.
    fn scalars_fit(&mut self, op: &str, args: &[(&str, f64, bool)]) -> bool {
        for &(arg, value, allow_nan) in args {
            if let Err(e) = crate::range::check_scalar(op, arg, value, crate::range::FLOAT32, allow_nan) {
                self.fail(e);
                return false;
            }
        }
        true
    }

    fn fail(&mut self, msg: String) -> TensorId {
        if self.error.is_none() {
            self.error = Some(msg);
        }
        TensorId::INVALID
    }

    /// Look up a tensor; records an error for INVALID or unknown ids.
    fn buf(&mut self, id: TensorId, what: &str) -> Option<Buf> {
        if id == TensorId::INVALID {
            if self.error.is_none() {
                self.error = Some(format!("host op `{what}`: given an invalid tensor (an earlier op failed)"));
            }
            return None;
        }
        match self.slot(id) {
            Some(b) => Some(b.clone()),
            None => {
                self.fail(format!("host op `{what}`: unknown tensor id {} (released?)", id.0));
                None
            }
        }
    }

    fn buf_ref(&mut self, id: TensorId, what: &str) -> Option<&Buf> {
        if id == TensorId::INVALID || self.slot(id).is_none() {
            self.buf(id, what);
            return None;
        }
        self.slot(id)
    }

    fn normal(&mut self) -> f64 {
        if let Some(z) = self.spare_normal.take() {
            return z;
        }
        // Marsaglia's polar method.
        loop {
            let u: f64 = self.rng.gen::<f64>() * 2.0 - 1.0;
            let v: f64 = self.rng.gen::<f64>() * 2.0 - 1.0;
            let s = u * u + v * v;
            if s > 0.0 && s < 1.0 {
                let f = (-2.0 * s.ln() / s).sqrt();
                self.spare_normal = Some(v * f);
                return u * f;
            }
        }
    }

    fn map_unary(&mut self, x: TensorId, what: &str, f: impl Fn(f64) -> f64) -> TensorId {
        let Some(b) = self.buf_ref(x, what) else {
            return TensorId::INVALID;
        };
        let shape = b.shape.clone();
        let src = &b.data;
        let mut data = Vec::with_capacity(src.len());
        for &v in src {
            data.push(f(v));
        }
        self.put(shape, data)
    }

    fn broadcast2(&mut self, a: TensorId, b: TensorId, what: &str, f: impl Fn(f64, f64) -> f64) -> TensorId {
        if self.buf_ref(a, what).is_none() || self.buf_ref(b, what).is_none() {
            return TensorId::INVALID;
        }
        let (Some(ba), Some(bb)) = (self.slot(a), self.slot(b)) else {
            return TensorId::INVALID;
        };
        let (shape, data) = if ba.shape == bb.shape {
            let (xs, ys) = (&ba.data, &bb.data);
            let mut d = Vec::with_capacity(xs.len());
            for i in 0..xs.len() {
                d.push(f(xs[i], ys[i]));
            }
            (ba.shape.clone(), d)
        } else if bb.data.len() == 1 && bb.shape.len() <= ba.shape.len() {
            let y = bb.data[0];
            (ba.shape.clone(), ba.data.iter().map(|&x| f(x, y)).collect())
        } else if ba.data.len() == 1 && ba.shape.len() <= bb.shape.len() {
            let x = ba.data[0];
            (bb.shape.clone(), bb.data.iter().map(|&y| f(x, y)).collect())
        } else {
            let Some(out) = broadcast_shape(&ba.shape, &bb.shape) else {
                let msg = format!("host op `{what}`: shapes {:?} and {:?} do not broadcast", ba.shape, bb.shape);
                return self.fail(msg);
            };
            let oa = source_offsets(&ba.shape, &out);
            let ob = source_offsets(&bb.shape, &out);
            let d = oa.iter().zip(&ob).map(|(&i, &j)| f(ba.data[i], bb.data[j])).collect();
            (out, d)
        };
        self.put(shape, data)
    }

    /// Values of `src` broadcast to `shape` (for in-place ops), or an error message.
    fn expand_to(&self, src: &Buf, shape: &[i64], what: &str) -> Result<Vec<f64>, String> {
        if src.shape == shape {
            return Ok(src.data.clone());
        }
        if src.data.len() == 1 {
            return Ok(vec![src.data[0]; numel(shape)]);
        }
        match broadcast_shape(&src.shape, shape) {
            Some(out) if out == shape => {
                Ok(source_offsets(&src.shape, shape).into_iter().map(|i| src.data[i]).collect())
            }
            _ => Err(format!(
                "host op `{what}`: source shape {:?} does not broadcast to destination shape {:?}",
                src.shape, shape
            )),
        }
    }

    /// dst ← f(dst, src) elementwise, src broadcast to dst's shape.
    fn in_place(&mut self, dst: TensorId, src: TensorId, what: &str, f: impl Fn(f64, f64) -> f64) {
        if self.buf_ref(dst, what).is_none() || self.buf_ref(src, what).is_none() {
            return;
        }
        let mut d = std::mem::take(&mut self.tensors[dst.0 as usize]);
        let buf = d.as_mut().expect("checked above");
        let s = self.slot(src).unwrap_or(buf);
        let result = if s.shape == buf.shape || dst == src {
            let xs = if dst == src { buf.data.clone() } else { s.data.clone() };
            Ok(xs)
        } else {
            self.expand_to(s, &buf.shape, what)
        };
        match result {
            Ok(xs) => {
                for (yy, xx) in buf.data.iter_mut().zip(xs) {
                    *yy = f(*yy, xx);
                }
            }
            Err(e) => {
                self.fail(e);
            }
        }
        self.tensors[dst.0 as usize] = d;
    }

    fn wrap_dim(&mut self, dim: i64, rank: usize, what: &str) -> Option<usize> {
        let r = rank as i64;
        let d = if dim < 0 { dim + r } else { dim };
        if d < 0 || d >= r.max(1) || (rank == 0 && d != 0) {
            self.fail(format!("host op `{what}`: dim {dim} out of range for rank {rank}"));
            return None;
        }
        Some(d as usize)
    }

    fn reduce_slice(op: ReduceOp, xs: impl Iterator<Item = f64>) -> f64 {
        let mut n = 0usize;
        let mut acc = match op {
            ReduceOp::Sum | ReduceOp::Mean => 0.0,
            ReduceOp::Max => f64::NEG_INFINITY,
            ReduceOp::Min => f64::INFINITY,
        };
        for x in xs {
            n += 1;
            acc = match op {
                ReduceOp::Sum | ReduceOp::Mean => acc + x,
                ReduceOp::Max if x.is_nan() || acc.is_nan() => f64::NAN,
                ReduceOp::Min if x.is_nan() || acc.is_nan() => f64::NAN,
                ReduceOp::Max => acc.max(x),
                ReduceOp::Min => acc.min(x),
            };
        }
        match op {
            ReduceOp::Mean => acc / n as f64,
            _ => acc,
        }
    }
}

/// `(outer, size, inner)` of `shape` around `dim`.
fn split_dims(shape: &[i64], dim: usize) -> (usize, usize, usize) {
    let outer = numel(&shape[..dim]);
    let size = shape.get(dim).copied().unwrap_or(1).max(0) as usize;
    let inner = if dim < shape.len() { numel(&shape[dim + 1..]) } else { 1 };
    (outer, size, inner)
}

fn as_label(v: f64) -> Option<i64> {
    (v.fract() == 0.0 && v.is_finite()).then_some(v as i64)
}

impl TensorHost for CpuHost {
    fn shape(&self, x: TensorId) -> RVec<i64> {
        // `&self`: cannot record an error; unknown ids read as an empty shape.
        self.slot(x).map(|b| RVec::from(b.shape.clone())).unwrap_or_default()
    }

    fn full_like(&mut self, x: TensorId, value: f64) -> TensorId {
        if !self.scalars_fit("full_like", &[("value", value, true)]) {
            return TensorId::INVALID;
        }
        self.map_unary(x, "full_like", |_| value)
    }

    fn randn_like(&mut self, x: TensorId) -> TensorId {
        let Some(b) = self.buf_ref(x, "randn_like") else {
            return TensorId::INVALID;
        };
        let (shape, len) = (b.shape.clone(), b.data.len());
        let data = (0..len).map(|_| self.normal()).collect();
        self.put(shape, data)
    }

    fn rand_like(&mut self, x: TensorId) -> TensorId {
        let Some(b) = self.buf_ref(x, "rand_like") else {
            return TensorId::INVALID;
        };
        let (shape, len) = (b.shape.clone(), b.data.len());
        let data = (0..len).map(|_| self.rng.gen::<f64>()).collect();
        self.put(shape, data)
    }

    fn unary(&mut self, op: UnaryOp, x: TensorId) -> TensorId {
        self.map_unary(x, op.name(), unary_fn(op))
    }

    fn binary(&mut self, op: BinaryOp, a: TensorId, b: TensorId) -> TensorId {
        self.broadcast2(a, b, op.name(), binary_fn(op))
    }

    fn affine(&mut self, x: TensorId, mul: f64, add: f64) -> TensorId {
        if !self.scalars_fit("affine", &[("mul", mul, true), ("add", add, true)]) {
            return TensorId::INVALID;
        }
        self.map_unary(x, "affine", |v| v * mul + add)
    }

    fn pow_scalar(&mut self, x: TensorId, exponent: f64) -> TensorId {
        if !self.scalars_fit("pow_scalar", &[("exponent", exponent, false)]) {
            return TensorId::INVALID;
        }
        self.map_unary(x, "pow_scalar", |v| v.powf(exponent))
    }

    fn clamp(&mut self, x: TensorId, min: f64, max: f64) -> TensorId {
        if !self.scalars_fit("clamp", &[("min", min, false), ("max", max, false)]) {
            return TensorId::INVALID;
        }
        self.map_unary(x, "clamp", |v| if v.is_nan() { v } else { v.max(min).min(max) })
    }

    fn reduce(&mut self, op: ReduceOp, x: TensorId) -> TensorId {
        let Some(b) = self.buf_ref(x, "reduce") else {
            return TensorId::INVALID;
        };
        if b.data.is_empty() && matches!(op, ReduceOp::Max | ReduceOp::Min) {
            return self.fail("reduce: max/min of an empty tensor".into());
        }
        let v = Self::reduce_slice(op, b.data.iter().copied());
        self.put(Vec::new(), vec![v])
    }

    fn reduce_dim(&mut self, op: ReduceOp, x: TensorId, dim: i64, keepdim: bool) -> TensorId {
        let Some(b) = self.buf(x, "reduce_dim") else {
            return TensorId::INVALID;
        };
        let Some(d) = self.wrap_dim(dim, b.shape.len(), "reduce_dim") else {
            return TensorId::INVALID;
        };
        if b.shape.is_empty() {
            return self.put(Vec::new(), b.data);
        }
        let (outer, size, inner) = split_dims(&b.shape, d);
        if size == 0 && matches!(op, ReduceOp::Max | ReduceOp::Min) {
            return self.fail("reduce_dim: max/min over an empty dimension".into());
        }
        let mut out = Vec::with_capacity(outer * inner);
        for o in 0..outer {
            for i in 0..inner {
                let it = (0..size).map(|k| b.data[(o * size + k) * inner + i]);
                out.push(Self::reduce_slice(op, it));
            }
        }
        let mut shape = b.shape.clone();
        if keepdim {
            shape[d] = 1;
        } else {
            shape.remove(d);
        }
        self.put(shape, out)
    }

    fn select(&mut self, cond: TensorId, a: TensorId, b: TensorId) -> TensorId {
        let (Some(c), Some(x), Some(y)) = (self.buf(cond, "select"), self.buf(a, "select"), self.buf(b, "select"))
        else {
            return TensorId::INVALID;
        };
        let Some(out) = broadcast_shape(&c.shape, &x.shape).and_then(|s| broadcast_shape(&s, &y.shape)) else {
            return self.fail(format!("select: shapes {:?}, {:?}, {:?} do not broadcast", c.shape, x.shape, y.shape));
        };
        let (oc, ox, oy) =
            (source_offsets(&c.shape, &out), source_offsets(&x.shape, &out), source_offsets(&y.shape, &out));
        let data = (0..oc.len()).map(|k| if c.data[oc[k]] > 0.0 { x.data[ox[k]] } else { y.data[oy[k]] }).collect();
        self.put(out, data)
    }

    fn log_softmax(&mut self, x: TensorId, dim: i64) -> TensorId {
        let Some(b) = self.buf(x, "log_softmax") else {
            return TensorId::INVALID;
        };
        let Some(d) = self.wrap_dim(dim, b.shape.len(), "log_softmax") else {
            return TensorId::INVALID;
        };
        let (outer, size, inner) = split_dims(&b.shape, d);
        let mut out = b.data.clone();
        for o in 0..outer {
            for i in 0..inner {
                let at = |k: usize| (o * size + k) * inner + i;
                let m = (0..size).map(|k| b.data[at(k)]).fold(f64::NEG_INFINITY, f64::max);
                let lse = m + (0..size).map(|k| (b.data[at(k)] - m).exp()).sum::<f64>().ln();
                for k in 0..size {
                    out[at(k)] = b.data[at(k)] - lse;
                }
            }
        }
        self.put(b.shape, out)
    }

    fn gather_rows(&mut self, x: TensorId, index: TensorId) -> TensorId {
        let (Some(b), Some(ix)) = (self.buf(x, "gather_rows"), self.buf(index, "gather_rows")) else {
            return TensorId::INVALID;
        };
        if b.shape.len() != 2 || ix.data.len() as i64 != b.shape[0] || ix.shape.len() > 1 {
            return self
                .fail(format!("gather_rows: need x (N, C) and index (N), got {:?} and {:?}", b.shape, ix.shape));
        }
        let c = b.shape[1];
        let mut out = Vec::with_capacity(ix.data.len());
        for (r, &v) in ix.data.iter().enumerate() {
            match as_label(v) {
                Some(k) if (0..c).contains(&k) => out.push(b.data[r * c as usize + k as usize]),
                _ => return self.fail(format!("gather_rows: index {v} in row {r} is not an integer in [0, {c})")),
            }
        }
        self.put(vec![b.shape[0]], out)
    }

    fn one_hot(&mut self, labels: TensorId, classes: i64) -> TensorId {
        let Some(l) = self.buf(labels, "one_hot") else {
            return TensorId::INVALID;
        };
        if classes <= 0 {
            return self.fail(format!("one_hot: classes must be positive, got {classes}"));
        }
        let mut out = vec![0.0; l.data.len() * classes as usize];
        for (r, &v) in l.data.iter().enumerate() {
            match as_label(v) {
                Some(k) if (0..classes).contains(&k) => out[r * classes as usize + k as usize] = 1.0,
                _ => return self.fail(format!("one_hot: label {v} is not an integer in [0, {classes})")),
            }
        }
        let mut shape = l.shape.clone();
        shape.push(classes);
        self.put(shape, out)
    }

    fn augment_crop_flip(&mut self, images: TensorId, pad: i64, flip: bool) -> TensorId {
        let Some(b) = self.buf(images, "augment_crop_flip") else {
            return TensorId::INVALID;
        };
        if b.shape.len() != 4 || pad < 0 {
            return self.fail(format!(
                "augment_crop_flip: need images (N, C, H, W) and pad >= 0, got {:?} and {pad}",
                b.shape
            ));
        }
        let [n, c, h, w] = [b.shape[0], b.shape[1], b.shape[2], b.shape[3]].map(|v| v as usize);
        let pad = pad as usize;
        let mut out = vec![0.0; b.data.len()];
        for i in 0..n {
            // Offsets of the crop window in the padded image, in [0, 2·pad].
            let dy = self.rng.gen_range(0..=2 * pad);
            let dx = self.rng.gen_range(0..=2 * pad);
            let mirror = flip && self.rng.gen::<bool>();
            for ch in 0..c {
                let base = (i * c + ch) * h * w;
                for y in 0..h {
                    let sy = y + dy;
                    if sy < pad || sy >= h + pad {
                        continue;
                    }
                    for x in 0..w {
                        let xx = if mirror { w - 1 - x } else { x };
                        let sx = xx + dx;
                        if sx < pad || sx >= w + pad {
                            continue;
                        }
                        out[base + y * w + x] = b.data[base + (sy - pad) * w + (sx - pad)];
                    }
                }
            }
        }
        self.put(b.shape, out)
    }

    fn assign(&mut self, dst: TensorId, src: TensorId) {
        // Same shape only, as the real host (no broadcasting into the destination).
        let shapes = (self.slot(dst).map(|b| b.shape.clone()), self.slot(src).map(|b| b.shape.clone()));
        if let (Some(d), Some(s)) = shapes {
            if d != s {
                self.fail(format!(
                    "host op `assign` (Tensor::set): the source has shape {s:?}, the destination {d:?}; `set` copies a \
                     tensor of the destination's own shape (use `full_like` for a constant)"
                ));
                return;
            }
        }
        self.in_place(dst, src, "assign", |_, x| x);
    }

    fn axpby(&mut self, y: TensorId, a: f64, x: TensorId, b: f64) {
        if !self.scalars_fit("axpby", &[("a", a, false), ("b", b, false)]) {
            return;
        }
        self.in_place(y, x, "axpby", |yy, xx| a * xx + b * yy);
    }

    fn addcmul(&mut self, y: TensorId, a: f64, x: TensorId, z: TensorId) {
        if !self.scalars_fit("addcmul", &[("a", a, false)]) {
            return;
        }
        let xz = self.binary(BinaryOp::Mul, x, z);
        self.in_place(y, xz, "addcmul", |yy, p| yy + a * p);
        self.release(xz);
    }

    fn ou_update(&mut self, m: TensorId, g: TensorId, s: TensorId, temperature: TensorId, step: OuStep) {
        let OuStep { beta, a, coef, t } = step;
        // The reference semantics, composed from the other ops.
        if g == TensorId::INVALID {
            self.axpby(m, 0.0, m, beta);
        } else {
            self.axpby(m, a, g, beta);
        }
        let sigma = if temperature == TensorId::INVALID {
            if coef * t <= 0.0 {
                return;
            }
            self.full_like(m, (coef * t).sqrt())
        } else {
            let scaled = self.affine(temperature, coef, 0.0);
            let root = self.unary(UnaryOp::Sqrt, scaled);
            self.release(scaled);
            root
        };
        let xi = self.randn_like(m);
        let noise = self.binary(BinaryOp::Mul, xi, s);
        let scaled = self.binary(BinaryOp::Mul, noise, sigma);
        self.in_place(m, scaled, "ou_update", |mm, n| mm + n);
        for id in [xi, noise, scaled, sigma] {
            self.release(id);
        }
    }

    fn item(&mut self, x: TensorId) -> f64 {
        let Some(b) = self.buf_ref(x, "item") else {
            return f64::NAN;
        };
        if b.data.len() != 1 {
            let msg = format!("item: tensor of shape {:?} is not a scalar", b.shape);
            self.fail(msg);
            return f64::NAN;
        }
        b.data[0]
    }

    fn potential(&mut self, at: TensorId, _full_batch: bool) -> Potential {
        let invalid = Potential { energy: TensorId::INVALID, grad: TensorId::INVALID };
        let Some(b) = self.buf(at, "potential") else {
            return invalid;
        };
        let Some(f) = self.potential.as_mut() else {
            self.fail("potential: this CpuHost has no potential function (set_potential)".into());
            return invalid;
        };
        self.potential_calls += 1;
        let (u, g) = f(&b.data);
        if g.len() != b.data.len() {
            let msg = format!(
                "potential: the potential function returned {} gradient values for {} parameters",
                g.len(),
                b.data.len()
            );
            self.fail(msg);
            return invalid;
        }
        let energy = self.put(Vec::new(), vec![u]);
        let grad = self.put(b.shape, g);
        Potential { energy, grad }
    }

    fn release(&mut self, x: TensorId) {
        if x == TensorId::INVALID {
            return;
        }
        match self.tensors.get_mut(x.0 as usize).and_then(Option::take) {
            Some(_) => self.live -= 1,
            None => {
                self.fail(format!("release: unknown tensor id {} (double release?)", x.0));
            }
        }
    }

    fn error(&self) -> ROption<RString> {
        self.error.clone().map(RString::from).into()
    }

    fn matmul(&mut self, a: TensorId, b: TensorId) -> TensorId {
        let (Some(x), Some(y)) = (self.buf(a, "matmul"), self.buf(b, "matmul")) else {
            return TensorId::INVALID;
        };
        let out = match crate::shapes::matmul(&x.shape, &y.shape) {
            Ok(s) => s,
            Err(e) => return self.fail(e),
        };
        let r = x.shape.len();
        let (n, k, m) = (x.shape[r - 2] as usize, x.shape[r - 1] as usize, y.shape[y.shape.len() - 1] as usize);
        let batches = numel(&x.shape[..r - 2]);
        let shared = y.shape.len() == 2;
        let mut data = vec![0.0; batches * n * m];
        for bi in 0..batches {
            let xa = &x.data[bi * n * k..(bi + 1) * n * k];
            let yb = if shared { &y.data[..] } else { &y.data[bi * k * m..(bi + 1) * k * m] };
            let out_b = &mut data[bi * n * m..(bi + 1) * n * m];
            for i in 0..n {
                for j in 0..m {
                    out_b[i * m + j] = (0..k).map(|l| xa[i * k + l] * yb[l * m + j]).sum();
                }
            }
        }
        self.put(out, data)
    }

    fn reshape(&mut self, x: TensorId, shape: RSlice<'_, i64>) -> TensorId {
        let Some(b) = self.buf(x, "reshape") else {
            return TensorId::INVALID;
        };
        match crate::shapes::reshape(numel(&b.shape) as i64, shape.as_slice()) {
            Ok(s) => self.put(s, b.data),
            Err(e) => self.fail(e),
        }
    }

    fn constant_like(&mut self, like: TensorId, shape: RSlice<'_, i64>, values: RSlice<'_, f64>) -> TensorId {
        if self.buf_ref(like, "constant_like").is_none() {
            return TensorId::INVALID;
        }
        match crate::shapes::constant(shape.as_slice(), values.as_slice(), crate::range::FLOAT32) {
            Ok(()) => self.put(shape.to_vec(), values.to_vec()),
            Err(e) => self.fail(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_and_errors() {
        let mut h = CpuHost::new(1);
        let a = h.insert(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        let row = h.insert(&[3], &[10., 20., 30.]);
        let col = h.insert(&[2, 1], &[100., 200.]);
        let s = h.scalar(1.0);
        let r = h.binary(BinaryOp::Add, a, row);
        assert_eq!(h.get(r), &[11., 22., 33., 14., 25., 36.]);
        let r = h.binary(BinaryOp::Add, a, col);
        assert_eq!(h.get(r), &[101., 102., 103., 204., 205., 206.]);
        let r = h.binary(BinaryOp::Sub, s, a);
        assert_eq!(h.get(r), &[0., -1., -2., -3., -4., -5.]);
        let r = h.binary(BinaryOp::Mul, col, row);
        assert_eq!(h.shape_of(r), &[2, 3]);
        let sm = h.reduce_dim(ReduceOp::Sum, a, 0, false);
        assert_eq!(h.get(sm), &[5., 7., 9.]);
        let sm = h.reduce_dim(ReduceOp::Max, a, -1, true);
        assert_eq!((h.get(sm), h.shape_of(sm)), (&[3., 6.][..], &[2, 1][..]));
        assert!(h.take_error().is_none());
        let bad = h.insert(&[4], &[0.; 4]);
        assert_eq!(h.binary(BinaryOp::Add, a, bad), TensorId::INVALID);
        assert_eq!(h.unary(UnaryOp::Exp, TensorId::INVALID), TensorId::INVALID);
        let e = h.take_error().unwrap();
        assert!(e.contains("do not broadcast"), "{e}");
    }

    #[test]
    fn scalars_outside_float32_fail_the_op_like_on_the_libtorch_host() {
        let mut h = CpuHost::new(1);
        let x = h.insert(&[3], &[-2.0, 1e-40, 5.0]);
        let open = h.clamp(x, 1e-30, f64::INFINITY);
        assert_eq!(h.get(open), &[1e-30, 1e-30, 5.0]);
        assert!(h.take_error().is_none());
        assert_eq!(h.clamp(x, 1e-30, f64::MAX), TensorId::INVALID);
        let e = h.take_error().unwrap();
        assert!(e.contains("`clamp`") && e.contains("max") && e.contains("float32"), "{e}");
        assert_eq!(h.full_like(x, 1e300), TensorId::INVALID);
        assert!(h.take_error().unwrap().contains("`full_like`"));
        assert_eq!(h.affine(x, 1e39, 0.0), TensorId::INVALID);
        assert!(h.take_error().unwrap().contains("`affine`: mul"));
    }

    #[test]
    fn classification_ops() {
        let mut h = CpuHost::new(1);
        let logits = h.insert(&[2, 3], &[1., 2., 3., 0., 0., 0.]);
        let ls = h.log_softmax(logits, 1);
        let p: f64 = h.get(ls)[..3].iter().map(|v| v.exp()).sum();
        assert!((p - 1.0).abs() < 1e-12);
        assert!((h.get(ls)[4] + 3f64.ln()).abs() < 1e-12);
        let labels = h.insert(&[2], &[2., 0.]);
        let g = h.gather_rows(ls, labels);
        assert_eq!(h.get(g), &[h.get(ls)[2], h.get(ls)[3]]);
        let oh = h.one_hot(labels, 3);
        assert_eq!(h.get(oh), &[0., 0., 1., 1., 0., 0.]);
        let bad = h.insert(&[2], &[0.5, 7.]);
        assert_eq!(h.gather_rows(ls, bad), TensorId::INVALID);
        assert!(h.take_error().is_some());
    }

    #[test]
    fn crop_flip_keeps_content_without_pad_and_shifts_with_pad() {
        let mut h = CpuHost::new(3);
        let data: Vec<f64> = (1..=2 * 4 * 4).map(f64::from).collect();
        let img = h.insert(&[2, 1, 4, 4], &data);
        let same = h.augment_crop_flip(img, 0, false);
        assert_eq!(h.get(same), &data[..]);
        for _ in 0..20 {
            let out = h.augment_crop_flip(img, 0, true);
            let o = h.get(out);
            for i in 0..2 {
                let (a, b) = (&o[i * 16..i * 16 + 4], &data[i * 16..i * 16 + 4]);
                let rev: Vec<f64> = b.iter().rev().copied().collect();
                assert!(a == b || a == &rev[..]);
            }
        }
        let out = h.augment_crop_flip(img, 2, true);
        assert_eq!(h.shape_of(out), &[2, 1, 4, 4]);
        // Every non-zero value in the output is a pixel of the same image.
        let o = h.get(out).to_vec();
        for (i, v) in o.iter().enumerate() {
            if *v != 0.0 {
                let img_i = i / 16;
                assert!(data[img_i * 16..(img_i + 1) * 16].contains(v));
            }
        }
        assert!(h.take_error().is_none());
    }

    #[test]
    fn seeded_streams_repeat() {
        let draw = |seed| {
            let mut h = CpuHost::new(seed);
            let x = h.insert(&[5], &[0.; 5]);
            let r = h.randn_like(x);
            h.get(r).to_vec()
        };
        assert_eq!(draw(4), draw(4));
        assert_ne!(draw(4), draw(5));
    }
}
