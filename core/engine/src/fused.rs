//! Fused in-place sampler updates: the Langevin O-step with kick, m ← β·m + a·g + σ·s⊙ξ, in one
//! pass over memory with the Gaussian draws made inline (CPU, contiguous f32), instead of the
//! five libtorch kernels and two temporaries of the composed form. Other devices and layouts use
//! the composed form.
//!
//! The draws come from the host's [`NoiseStream`]: one stream per chain seeded from that chain's
//! cell seed, one sub-stream per call and per block of [`BLOCK`] elements, so the numbers depend
//! neither on how many threads (`rayon`) share the work nor on which other chains share the
//! batch. The libtorch fallback draws the same numbers on the CPU; on a GPU it draws the whole
//! batch's noise in one kernel (see `standard_normals`).

pub use ablate_sdk::abi::OuStep;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

/// `ABLATE_UNFUSED=1` turns the fused loops off (libtorch kernels throughout), to measure
/// what they gain.
fn disabled() -> bool {
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OFF.get_or_init(|| std::env::var("ABLATE_UNFUSED").is_ok_and(|v| v == "1"))
}

/// Whether the fused CPU loops are on (`ABLATE_UNFUSED=1` turns them off). Callers that pick a
/// CPU-specific layout of work for the loops' sake take the generic one when they are off.
pub fn enabled() -> bool {
    !disabled()
}

/// A contiguous f32 tensor on the CPU: what the loops of this module read and write.
fn cpu_f32(t: &Tensor) -> bool {
    t.device() == Device::Cpu && t.kind() == Kind::Float && t.is_contiguous()
}

/// Whether a one-pass CPU loop may write `y` while reading `inputs`: all contiguous f32 CPU
/// tensors of y's shape, none sharing y's memory, y outside autograd, fusion not switched off.
fn fusable(y: &Tensor, inputs: &[&Tensor]) -> bool {
    !disabled()
        && cpu_f32(y)
        && !y.requires_grad()
        && inputs.iter().all(|x| cpu_f32(x) && x.size() == y.size() && x.data_ptr() != y.data_ptr())
}

/// Elements per independently seeded block of draws (and per unit of parallel work).
pub const BLOCK: usize = 1 << 14;

/// SplitMix64 finaliser: decorrelates consecutive seeds.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The host's stream of injected noise for the O-step: one sub-stream per chain, each seeded from
/// that chain's cell seed ([`NoiseStream::per_chain`]), so on the CPU a chain draws the same noise
/// whether it runs alone or batched with any other chains (on other devices see
/// `standard_normals`). Each call advances every chain's stream by one.
#[derive(Debug, Clone)]
pub struct NoiseStream {
    /// One seed per chain (row of the [K, d] tensors); a single seed serves any number of rows.
    seeds: Vec<u64>,
    calls: u64,
}

impl NoiseStream {
    /// One stream for a single chain (or for rows derived from this one seed).
    pub fn with_seed(seed: u64) -> Self {
        Self { seeds: vec![seed], calls: 0 }
    }

    /// One stream per chain, chain j seeded by `seeds[j]` (see [`chain_noise_seed`]).
    pub fn per_chain(seeds: Vec<u64>) -> Self {
        if seeds.is_empty() {
            return Self::with_seed(0);
        }
        Self { seeds, calls: 0 }
    }

    /// Seeded by one draw from libtorch's (cell-seeded) CPU generator; for hosts that were not
    /// given per-chain seeds.
    pub fn from_libtorch() -> Self {
        let draw = Tensor::randint(i64::MAX, [1], (Kind::Int64, Device::Cpu)).int64_value(&[0]);
        Self::with_seed(draw as u64)
    }

    /// How many chains' rows a tensor of `n` elements holds: one per seed when it splits evenly.
    fn rows(&self, n: usize) -> usize {
        let k = self.seeds.len();
        if k > 1 && n.is_multiple_of(k) {
            k
        } else {
            1
        }
    }

    fn next_call(&mut self) -> u64 {
        self.calls += 1;
        self.calls
    }

    /// The seed of row `chain` of `chains` at call `call`: its own seed when the stream has one
    /// per row, else rows derived from the single seed.
    fn chain_key(&self, call: u64, chain: usize, chains: usize) -> u64 {
        let seed = if self.seeds.len() == chains {
            self.seeds[chain]
        } else if chains == 1 {
            self.seeds[0]
        } else {
            mix(self.seeds[0] ^ mix(!(chain as u64)))
        };
        mix(seed ^ mix(call))
    }
}

/// The injected-noise seed of a chain whose cell seed is `cell_seed` (a stream of its own, apart
/// from the streams of initial θ and data order).
pub fn chain_noise_seed(cell_seed: u64) -> u64 {
    mix(cell_seed ^ 0x0153_EA5E_D000_0000)
}

/// Standard normal f32 draws: the ziggurat method of Marsaglia & Tsang (J. Stat. Softw. 5(8),
/// 2000; 128 layers) on 32-bit halves of xoshiro256++ (`SmallRng`) output. Exact (not an
/// approximation): the rare draws outside a layer's rectangle go through the wedge and tail
/// tests of the paper.
pub struct Normals {
    rng: SmallRng,
    t: &'static ZigguratTables,
}

struct ZigguratTables {
    k: [u32; 128],
    w: [f32; 128],
    f: [f32; 128],
}

fn tables() -> &'static ZigguratTables {
    static TABLES: std::sync::OnceLock<ZigguratTables> = std::sync::OnceLock::new();
    TABLES.get_or_init(|| {
        // Marsaglia & Tsang's zigset for RNOR, in f64.
        let m1 = 2_147_483_648.0f64;
        let mut dn = 3.442619855899f64;
        let mut tn = dn;
        let vn = 9.91256303526217e-3f64;
        let q = vn / (-0.5 * dn * dn).exp();
        let mut t = ZigguratTables { k: [0; 128], w: [0.0; 128], f: [0.0; 128] };
        t.k[0] = ((dn / q) * m1) as u32;
        t.k[1] = 0;
        t.w[0] = (q / m1) as f32;
        t.w[127] = (dn / m1) as f32;
        t.f[0] = 1.0;
        t.f[127] = (-0.5 * dn * dn).exp() as f32;
        for i in (1..=126).rev() {
            dn = (-2.0 * (vn / dn + (-0.5 * dn * dn).exp()).ln()).sqrt();
            t.k[i + 1] = ((dn / tn) * m1) as u32;
            tn = dn;
            t.f[i] = (-0.5 * dn * dn).exp() as f32;
            t.w[i] = (dn / m1) as f32;
        }
        t
    })
}

impl Normals {
    pub fn new(seed: u64) -> Self {
        Self { rng: SmallRng::seed_from_u64(seed), t: tables() }
    }

    /// Fill `out` with N(0, 1) draws, two per 64-bit generator output (both halves of
    /// xoshiro256++ are full-quality bits), which halves the generator's share of the cost.
    pub fn fill(&mut self, out: &mut [f32]) {
        let mut pairs = out.chunks_exact_mut(2);
        for pair in &mut pairs {
            let r = rand::RngCore::next_u64(&mut self.rng);
            pair[0] = self.normal_of(r as u32);
            pair[1] = self.normal_of((r >> 32) as u32);
        }
        if let [last] = pairs.into_remainder() {
            *last = self.draw();
        }
    }

    /// The ziggurat's fast path for 32 random bits (≈ 99% of draws), else its exact fix-up.
    #[inline(always)]
    fn normal_of(&mut self, bits: u32) -> f32 {
        let hz = bits as i32;
        let iz = (hz & 127) as usize;
        if hz.unsigned_abs() < self.t.k[iz] {
            return hz as f32 * self.t.w[iz];
        }
        self.fix(hz, iz)
    }

    #[inline]
    fn bits(&mut self) -> u32 {
        rand::RngCore::next_u32(&mut self.rng)
    }

    /// Uniform in (0, 1).
    fn uniform(&mut self) -> f64 {
        (f64::from(self.bits()) + 0.5) / 4_294_967_296.0
    }

    /// One N(0, 1) draw.
    #[inline]
    pub fn draw(&mut self) -> f32 {
        let bits = self.bits();
        self.normal_of(bits)
    }

    #[cold]
    fn fix(&mut self, mut hz: i32, mut iz: usize) -> f32 {
        const R: f64 = 3.442620;
        let t = self.t;
        loop {
            let x = f64::from(hz) * f64::from(t.w[iz]);
            if iz == 0 {
                // The tail beyond R (Marsaglia's method).
                loop {
                    let x = -self.uniform().ln() * (1.0 / R);
                    let y = -self.uniform().ln();
                    if y + y >= x * x {
                        return (if hz > 0 { R + x } else { -R - x }) as f32;
                    }
                }
            }
            let (f_lo, f_hi) = (f64::from(t.f[iz]), f64::from(t.f[iz - 1]));
            if f_lo + self.uniform() * (f_hi - f_lo) < (-0.5 * x * x).exp() {
                return x as f32;
            }
            hz = self.bits() as i32;
            iz = (hz & 127) as usize;
            if hz.unsigned_abs() < t.k[iz] {
                return hz as f32 * t.w[iz];
            }
        }
    }
}

/// Apply the O-step to `m` in place. `per_chain`: temperatures [K, 1] for m [K, d].
pub fn ou_update(
    noise: &mut NoiseStream,
    m: &Tensor,
    g: Option<&Tensor>,
    s: &Tensor,
    per_chain: Option<&Tensor>,
    step: OuStep,
) -> Result<(), String> {
    let n = m.numel();
    // Rows = chains: from the per-chain temperatures, else (one temperature shared by the
    // batch) from the stream's per-chain seeds, so each chain still draws its own noise.
    let chains = per_chain.map_or_else(|| noise.rows(n), Tensor::numel);
    let same = |x: &Tensor| x.numel() == n && x.size() == m.size();
    if g.is_some_and(|g| !same(g)) || !same(s) || chains == 0 || !n.is_multiple_of(chains) {
        return Err(format!(
            "shapes do not fit: m {:?}, g {:?}, s {:?}, temperatures {:?}",
            m.size(),
            g.map(Tensor::size),
            s.size(),
            per_chain.map(Tensor::size)
        ));
    }
    // σ per chain; `None` = no draw at all (T = 0 everywhere: the step stays deterministic).
    let sigmas: Option<Vec<f32>> = match per_chain {
        None => (step.coef * step.t > 0.0).then(|| vec![(step.coef * step.t).sqrt() as f32]),
        Some(t) if t.device() == Device::Cpu => {
            let ts = Vec::<f64>::try_from(t.to_kind(Kind::Double).reshape([-1])).map_err(|e| e.to_string())?;
            Some(ts.iter().map(|t| (step.coef * t).max(0.0).sqrt() as f32).collect())
        }
        Some(_) => return composed(noise, m, g, s, per_chain, step),
    };
    let inputs: Vec<&Tensor> = std::iter::once(s).chain(g).collect();
    if !fusable(m, &inputs) {
        return composed(noise, m, g, s, per_chain, step);
    }
    let call = noise.next_call();
    let keys: Vec<u64> = (0..chains).map(|j| noise.chain_key(call, j, chains)).collect();
    let row = n / chains;
    // SAFETY: m, g and s are live, contiguous f32 CPU tensors of n elements (checked above); m
    // shares memory with neither g nor s, and nothing else touches them during this call.
    let ms = unsafe { std::slice::from_raw_parts_mut(m.data_ptr() as *mut f32, n) };
    let gs = g.map(|g| unsafe { std::slice::from_raw_parts(g.data_ptr() as *const f32, n) });
    let ss = unsafe { std::slice::from_raw_parts(s.data_ptr() as *const f32, n) };
    let (beta, a) = (step.beta as f32, step.a as f32);
    // Work items: (chain, block within the chain's row); each draws from its own sub-stream (of
    // its chain's stream), so the result depends neither on how the items are spread over
    // threads nor on the other chains.
    let item = |chain: usize, block: usize, mb: &mut [f32]| {
        let sigma = sigmas.as_ref().map(|s| s[chain.min(s.len() - 1)]);
        let start = chain * row + block * BLOCK;
        let range = start..start + mb.len();
        let rng = sigma.map(|_| Normals::new(block_seed(keys[chain], block)));
        ou_block(mb, gs.map(|g| &g[range.clone()]), &ss[range], beta, a, sigma.zip(rng));
    };
    if parallel(n) {
        ms.par_chunks_mut(row).enumerate().for_each(|(chain, m_row)| {
            m_row.par_chunks_mut(BLOCK).enumerate().for_each(|(block, mb)| item(chain, block, mb));
        });
    } else {
        for (chain, m_row) in ms.chunks_mut(row).enumerate() {
            for (block, mb) in m_row.chunks_mut(BLOCK).enumerate() {
                item(chain, block, mb);
            }
        }
    }
    Ok(())
}

/// The seed of block `block` of a chain's row, from the chain's key at this call.
fn block_seed(key: u64, block: usize) -> u64 {
    mix(key ^ mix(block as u64))
}

/// Standard normal draws shaped like `m` ([K, ...] rows = chains): on the CPU the very numbers
/// the fused loop draws (each row from its own chain's stream); on other devices one draw from
/// libtorch's generator reseeded from all the rows' keys at this call.
fn standard_normals(noise: &mut NoiseStream, m: &Tensor, chains: usize) -> Result<Tensor, tch::TchError> {
    let call = noise.next_call();
    let n = m.numel();
    let row = n / chains.max(1);
    if m.device() == Device::Cpu {
        let mut xi = vec![0f32; n];
        for (chain, xr) in xi.chunks_mut(row.max(1)).enumerate() {
            let key = noise.chain_key(call, chain, chains);
            for (block, xb) in xr.chunks_mut(BLOCK).enumerate() {
                Normals::new(block_seed(key, block)).fill(xb);
            }
        }
        return Tensor::from_slice(&xi).f_reshape(m.size())?.f_to_kind(m.kind());
    }
    // One kernel for the whole batch (a launch per chain and a concatenation made a batched GPU
    // step launch K + 1 kernels for its noise): libtorch's generator seeded from every chain's
    // key at this call. The rows are independent standard normals as before; unlike on the CPU,
    // a chain's draws here also depend on which chains share its batch.
    let key = (0..chains).fold(mix(call), |acc, chain| mix(acc ^ noise.chain_key(call, chain, chains)));
    tch::manual_seed(key as i64);
    Tensor::f_randn(m.size(), (m.kind(), m.device()))
}

/// Whether n elements are worth handing to rayon: below a few blocks, or with one thread, the
/// hand-off to the pool costs more than the loop.
fn parallel(n: usize) -> bool {
    n >= 4 * BLOCK && rayon::current_num_threads() > 1
}

/// One block of the fused O-step: draws go into a small buffer, then one loop the compiler can
/// vectorise applies m ← β·m + a·g + σ·s·ξ.
fn ou_block(m: &mut [f32], g: Option<&[f32]>, s: &[f32], beta: f32, a: f32, noise: Option<(f32, Normals)>) {
    const LANE: usize = 256;
    let mut xi = [0f32; LANE];
    let (sigma, mut rng) = match noise {
        Some((sigma, rng)) => (sigma, Some(rng)),
        None => (0.0, None),
    };
    for (k, mc) in m.chunks_mut(LANE).enumerate() {
        let at = k * LANE;
        let len = mc.len();
        let sc = &s[at..at + len];
        if let Some(rng) = rng.as_mut() {
            rng.fill(&mut xi[..len]);
        }
        match g {
            Some(g) => {
                let gc = &g[at..at + len];
                for i in 0..len {
                    mc[i] = beta * mc[i] + a * gc[i] + sigma * sc[i] * xi[i];
                }
            }
            None => {
                for i in 0..len {
                    mc[i] = beta * mc[i] + sigma * sc[i] * xi[i];
                }
            }
        }
    }
}

/// mul·x + add into a new tensor in one pass (CPU, contiguous f32, outside autograd); `None`
/// where the caller must use libtorch kernels.
pub fn affine(x: &Tensor, mul: f64, add: f64) -> Option<Tensor> {
    if disabled() || !cpu_f32(x) || x.requires_grad() {
        return None;
    }
    let n = x.numel();
    let y = Tensor::empty(x.size(), (Kind::Float, Device::Cpu));
    // SAFETY: x is a live contiguous f32 CPU tensor of n elements; y was just allocated with n.
    let xs = unsafe { std::slice::from_raw_parts(x.data_ptr() as *const f32, n) };
    let ys = unsafe { std::slice::from_raw_parts_mut(y.data_ptr() as *mut f32, n) };
    let (mul, add) = (mul as f32, add as f32);
    each_pair(ys, xs, |yi, xi| *yi = mul * xi + add);
    Some(y)
}

/// `f(y[i], x[i])` for every i, in blocks of [`BLOCK`] spread over rayon's threads when worth it.
fn each_pair(ys: &mut [f32], xs: &[f32], f: impl Fn(&mut f32, f32) + Sync) {
    let block = |(yb, xb): (&mut [f32], &[f32])| {
        for (yi, &xi) in yb.iter_mut().zip(xb) {
            f(yi, xi);
        }
    };
    if parallel(ys.len()) {
        ys.par_chunks_mut(BLOCK).zip(xs.par_chunks(BLOCK)).for_each(block);
    } else {
        ys.chunks_mut(BLOCK).zip(xs.chunks(BLOCK)).for_each(block);
    }
}

/// Per row of `t` ([rows, cols] or flat as one row), whether every element is finite: one
/// read-only pass on the CPU (contiguous f32), `None` elsewhere.
pub fn rows_finite(t: &Tensor, rows: usize) -> Option<Vec<bool>> {
    let n = t.numel();
    if disabled() || !cpu_f32(t) || rows == 0 || !n.is_multiple_of(rows) {
        return None;
    }
    // SAFETY: a live contiguous f32 CPU tensor of n elements, only read.
    let xs = unsafe { std::slice::from_raw_parts(t.data_ptr() as *const f32, n) };
    // x·0 is 0 for finite x and NaN for ±inf and NaN; sixteen lanes so that the sum vectorises.
    let finite = |row: &[f32]| {
        let mut lanes = [0f32; 16];
        let mut chunks = row.chunks_exact(16);
        for c in &mut chunks {
            for (l, v) in lanes.iter_mut().zip(c) {
                *l += v * 0.0;
            }
        }
        let tail: f32 = chunks.remainder().iter().map(|v| v * 0.0).sum();
        (lanes.iter().sum::<f32>() + tail) == 0.0
    };
    Some(xs.chunks(n / rows).map(finite).collect())
}

/// One Welford step for the i-th sample `g` (i from 1): δ = g − mean, mean += δ/i,
/// m2 += δ·(g − mean), in one pass (CPU, contiguous f32). `false`: not done, use libtorch.
pub fn welford(mean: &mut Tensor, m2: &mut Tensor, g: &Tensor, i: usize) -> bool {
    if !fusable(mean, &[g]) || !fusable(m2, &[g]) || mean.data_ptr() == m2.data_ptr() {
        return false;
    }
    let n = g.numel();
    // SAFETY: three live contiguous f32 CPU tensors of n elements, mean and m2 distinct and
    // aliasing neither g (checked above).
    let ms = unsafe { std::slice::from_raw_parts_mut(mean.data_ptr() as *mut f32, n) };
    let vs = unsafe { std::slice::from_raw_parts_mut(m2.data_ptr() as *mut f32, n) };
    let gs = unsafe { std::slice::from_raw_parts(g.data_ptr() as *const f32, n) };
    let inv = 1.0 / i as f32;
    let block = |((mb, vb), gb): ((&mut [f32], &mut [f32]), &[f32])| {
        for ((m, v), &x) in mb.iter_mut().zip(vb.iter_mut()).zip(gb) {
            let delta = x - *m;
            *m += delta * inv;
            *v += delta * (x - *m);
        }
    };
    if parallel(n) {
        ms.par_chunks_mut(BLOCK).zip(vs.par_chunks_mut(BLOCK)).zip(gs.par_chunks(BLOCK)).for_each(block);
    } else {
        ms.chunks_mut(BLOCK).zip(vs.chunks_mut(BLOCK)).zip(gs.chunks(BLOCK)).for_each(block);
    }
    true
}

/// y ← y + a·x in place: one pass on the CPU (contiguous f32), else libtorch kernels.
pub fn axpy(y: &Tensor, a: f64, x: &Tensor) -> Result<(), String> {
    let n = y.numel();
    if fusable(y, &[x]) {
        // SAFETY: two live contiguous f32 CPU tensors of n elements that do not alias.
        let ys = unsafe { std::slice::from_raw_parts_mut(y.data_ptr() as *mut f32, n) };
        let xs = unsafe { std::slice::from_raw_parts(x.data_ptr() as *const f32, n) };
        let a = a as f32;
        each_pair(ys, xs, |yi, xi| *yi += a * xi);
        return Ok(());
    }
    add_scaled(y, x, a)
}

/// y ← y + a·x⊙z in place: one pass on the CPU (contiguous f32), else libtorch kernels.
pub fn addcmul(y: &Tensor, a: f64, x: &Tensor, z: &Tensor) -> Result<(), String> {
    let n = y.numel();
    if fusable(y, &[x, z]) {
        // SAFETY: three live contiguous f32 CPU tensors of n elements; y aliases neither input.
        let ys = unsafe { std::slice::from_raw_parts_mut(y.data_ptr() as *mut f32, n) };
        let xs = unsafe { std::slice::from_raw_parts(x.data_ptr() as *const f32, n) };
        let zs = unsafe { std::slice::from_raw_parts(z.data_ptr() as *const f32, n) };
        let a = a as f32;
        let block = |(yb, (xb, zb)): (&mut [f32], (&[f32], &[f32]))| {
            for ((yi, xi), zi) in yb.iter_mut().zip(xb).zip(zb) {
                *yi += a * xi * zi;
            }
        };
        if parallel(n) {
            ys.par_chunks_mut(BLOCK).zip(xs.par_chunks(BLOCK).zip(zs.par_chunks(BLOCK))).for_each(block);
        } else {
            ys.chunks_mut(BLOCK).zip(xs.chunks(BLOCK).zip(zs.chunks(BLOCK))).for_each(block);
        }
        return Ok(());
    }
    addcmul_scaled(y, x, z, a)
}

mod ffi {
    use std::ffi::{c_char, c_int};
    extern "C" {
        pub fn ablate_add_scaled_(
            y: *mut torch_sys::C_tensor,
            x: *const torch_sys::C_tensor,
            alpha: f64,
            err: *mut c_char,
            len: usize,
        ) -> c_int;
        pub fn ablate_addcmul_scaled_(
            y: *mut torch_sys::C_tensor,
            x: *const torch_sys::C_tensor,
            z: *const torch_sys::C_tensor,
            value: f64,
            err: *mut c_char,
            len: usize,
        ) -> c_int;
    }
}

/// Runs a shim update; a failure becomes the first line of libtorch's message after `what`.
fn shim_update(what: &str, f: impl FnOnce(*mut std::ffi::c_char, usize) -> std::ffi::c_int) -> Result<(), String> {
    crate::compute::shim_call(f).map_err(|message| format!("{what}: {}", message.lines().next().unwrap_or_default()))
}

/// y ← y + a·x in place: libtorch's `add_` with `alpha`, one kernel on any device.
pub fn add_scaled(y: &Tensor, x: &Tensor, a: f64) -> Result<(), String> {
    let mut y = y.shallow_clone();
    // SAFETY: both tensors stay alive for the call; the shim updates y's storage in place.
    shim_update("add_ (y + a·x)", |err, len| unsafe {
        ffi::ablate_add_scaled_(y.as_mut_ptr(), x.as_ptr(), a, err, len)
    })
}

/// y ← y + v·x⊙z in place: libtorch's `addcmul_` with `value`, one kernel on any device.
pub fn addcmul_scaled(y: &Tensor, x: &Tensor, z: &Tensor, v: f64) -> Result<(), String> {
    let mut y = y.shallow_clone();
    // SAFETY: the three tensors stay alive for the call; the shim updates y's storage in place.
    shim_update("addcmul_ (y + v·x⊙z)", |err, len| unsafe {
        ffi::ablate_addcmul_scaled_(y.as_mut_ptr(), x.as_ptr(), z.as_ptr(), v, err, len)
    })
}

/// The same update from libtorch kernels (any device), with the draws of `standard_normals`.
fn composed(
    noise: &mut NoiseStream,
    m: &Tensor,
    g: Option<&Tensor>,
    s: &Tensor,
    per_chain: Option<&Tensor>,
    step: OuStep,
) -> Result<(), String> {
    let chains = per_chain.map_or_else(|| noise.rows(m.numel()), Tensor::numel);
    let torch = |e: tch::TchError| e.to_string();
    let mut m = m.shallow_clone();
    let _ = m.f_mul_scalar_(step.beta).map_err(torch)?;
    if let Some(g) = g {
        add_scaled(&m, g, step.a)?;
    }
    // Draw only when some noise is injected (as the fused loop does); a call without draws
    // still advances the stream, so both paths stay on the same call count. Kernels: the draw,
    // (per chain: √T and ξ·√T,) and one addcmul_ with the scalar √coef.
    match per_chain {
        Some(t) => {
            let mut xi = standard_normals(noise, &m, chains).map_err(torch)?;
            if step.coef > 0.0 {
                let _ = xi.f_mul_(&t.f_clamp_min(0.0).and_then(|t| t.f_sqrt()).map_err(torch)?).map_err(torch)?;
                addcmul_scaled(&m, &xi, s, step.coef.sqrt())?;
            }
        }
        None if step.coef * step.t > 0.0 => {
            let xi = standard_normals(noise, &m, chains).map_err(torch)?;
            addcmul_scaled(&m, &xi, s, (step.coef * step.t).sqrt())?;
        }
        None => {
            noise.next_call();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(k: i64, d: i64) -> (Tensor, Tensor, Tensor) {
        tch::manual_seed(3);
        let opts = (Kind::Float, Device::Cpu);
        (Tensor::randn([k, d], opts), Tensor::randn([k, d], opts), Tensor::rand([k, d], opts) + 0.5)
    }

    /// Standard normal CDF Φ(x) at a few points.
    const PHI: [(f64, f64); 7] = [
        (-2.0, 0.022_750_131_948_179),
        (-1.0, 0.158_655_253_931_457),
        (-0.5, 0.308_537_538_725_987),
        (0.0, 0.5),
        (0.5, 0.691_462_461_274_013),
        (1.0, 0.841_344_746_068_543),
        (2.0, 0.977_249_868_051_821),
    ];

    #[test]
    fn ziggurat_draws_are_standard_normal_including_the_tails() {
        // 4M draws one at a time and 4M through `fill` (two per generator output); every check
        // at 5 standard errors of its estimate.
        let n = 4_000_000usize;
        let mut g = Normals::new(12345);
        let one_by_one: Vec<f64> = (0..n).map(|_| f64::from(g.draw())).collect();
        let mut filled = vec![0f32; n];
        filled.chunks_mut(255).for_each(|c| g.fill(c)); // odd lengths: the remainder path too
        let filled: Vec<f64> = filled.into_iter().map(f64::from).collect();
        // The two halves of one output are independent: lag-1 correlation of the pairs.
        let pairs = (n / 255) * 127;
        let r =
            filled.chunks_exact(255).flat_map(|c| c[..254].chunks(2).map(|p| p[0] * p[1])).sum::<f64>() / pairs as f64;
        assert!(r.abs() < 5.0 / (pairs as f64).sqrt(), "correlation of paired draws {r}");
        for z in [one_by_one, filled] {
            check_standard_normal(&z);
        }
    }

    fn check_standard_normal(z: &[f64]) {
        let n = z.len();
        let nf = n as f64;
        let mean = z.iter().sum::<f64>() / nf;
        let m2 = z.iter().map(|x| x * x).sum::<f64>() / nf;
        let m4 = z.iter().map(|x| x.powi(4)).sum::<f64>() / nf;
        assert!(mean.abs() < 5.0 / nf.sqrt(), "mean {mean}");
        assert!((m2 - 1.0).abs() < 5.0 * (2.0 / nf).sqrt(), "variance {m2}");
        assert!((m4 - 3.0).abs() < 5.0 * (96.0 / nf).sqrt(), "fourth moment {m4}");
        for (x, p) in PHI {
            let q = z.iter().filter(|&&v| v < x).count() as f64 / nf;
            assert!((q - p).abs() < 5.0 * (p * (1.0 - p) / nf).sqrt(), "P(z < {x}) = {q}, expected {p}");
        }
        // Beyond the base layer (R = 3.4426): the tail algorithm. P(|z| > 3.5) = 4.6527e-4.
        let p = 4.652_581_580_710_3e-4;
        let q = z.iter().filter(|v| v.abs() > 3.5).count() as f64 / nf;
        assert!((q - p).abs() < 5.0 * (p * (1.0 - p) / nf).sqrt(), "P(|z| > 3.5) = {q}, expected {p}");
    }

    #[test]
    fn affine_is_libtorchs_multiply_then_add_exactly() {
        let x = Tensor::randn([3, 70_001], (Kind::Float, Device::Cpu)) * 50.0;
        let fused = affine(&x, -0.37, 1.25).unwrap();
        let reference = x.f_mul_scalar(-0.37).unwrap().f_add_scalar(1.25).unwrap();
        assert_eq!(f64::try_from((&fused - &reference).abs().max()).unwrap(), 0.0);
        // Autograd inputs and other layouts are left to libtorch.
        assert!(affine(&x.copy().set_requires_grad(true), 2.0, 0.0).is_none());
        assert!(affine(&x.tr(), 2.0, 0.0).is_none());
    }

    #[test]
    fn rows_finite_finds_each_kind_of_non_finite_value_in_its_row() {
        let t = Tensor::zeros([5, 1001], (Kind::Float, Device::Cpu));
        let _ = t.get(0).get(1000).fill_(3.0e38); // finite, huge
        let _ = t.get(1).get(3).fill_(f64::NAN);
        let _ = t.get(2).get(1000).fill_(f64::INFINITY); // in the tail after the 16-lane chunks
        let _ = t.get(3).get(500).fill_(f64::NEG_INFINITY);
        assert_eq!(rows_finite(&t, 5).unwrap(), vec![true, false, false, false, true]);
        assert_eq!(rows_finite(&t, 1).unwrap(), vec![false]);
        assert_eq!(rows_finite(&t.get(4), 1).unwrap(), vec![true]);
        assert!(rows_finite(&t, 3).is_none()); // 5005 elements do not split into 3 rows
    }

    #[test]
    fn welford_steps_give_the_mean_and_biased_variance_of_the_samples() {
        let samples: Vec<Tensor> = (0..32).map(|_| Tensor::randn([3, 5000], (Kind::Float, Device::Cpu))).collect();
        let (mut mean, mut m2) = (samples[0].zeros_like(), samples[0].zeros_like());
        for (i, g) in samples.iter().enumerate() {
            assert!(welford(&mut mean, &mut m2, g, i + 1));
        }
        let stacked = Tensor::stack(&samples, 0);
        let want_mean = stacked.mean_dim([0].as_slice(), false, Kind::Float);
        let want_var = stacked.var_dim([0].as_slice(), false, false);
        assert!(f64::try_from((&mean - &want_mean).abs().max()).unwrap() < 1e-5);
        assert!(f64::try_from((m2 / 32.0 - &want_var).abs().max()).unwrap() < 1e-5);
    }

    #[test]
    fn without_noise_it_is_the_exact_kick_and_friction() {
        let (m, g, s) = inputs(3, 40_000);
        let expected = &m * 0.9 + &g * -0.25;
        let step = OuStep { beta: 0.9, a: -0.25, coef: 2.0, t: 0.0 };
        ou_update(&mut NoiseStream::with_seed(1), &m, Some(&g), &s, None, step).unwrap();
        assert_eq!(f64::try_from((&m - &expected).abs().max()).unwrap(), 0.0);
    }

    #[test]
    fn noise_has_the_per_chain_variance_and_no_correlation_across_blocks() {
        // m = 0, β = 0, no kick: m becomes sqrt(coef·T_k)·s⊙ξ. Per chain, Σ(m/(σ s))² over d
        // elements is χ²_d: mean d, sd sqrt(2d); bound 5 sd.
        let (k, d) = (3i64, 60_000i64);
        let (_, _, s) = inputs(k, d);
        let m = Tensor::zeros([k, d], (Kind::Float, Device::Cpu));
        let temps = Tensor::from_slice(&[1.0f32, 0.3, 0.01]).reshape([3, 1]);
        let step = OuStep { beta: 0.0, a: 0.0, coef: 2.0, t: f64::NAN };
        ou_update(&mut NoiseStream::with_seed(9), &m, None, &s, Some(&temps), step).unwrap();
        let z = &m / ((&temps * 2.0).sqrt() * &s);
        for j in 0..k {
            let row = z.get(j);
            let chi2 = f64::try_from(row.square().sum(Kind::Double)).unwrap();
            assert!((chi2 - d as f64).abs() < 5.0 * (2.0 * d as f64).sqrt(), "chain {j}: Σz² = {chi2}");
            // Neighbouring blocks must not repeat each other's draws.
            let a = row.narrow(0, 0, BLOCK as i64);
            let b = row.narrow(0, BLOCK as i64, BLOCK as i64);
            let corr = f64::try_from((&a * &b).mean(Kind::Double)).unwrap();
            assert!(corr.abs() < 5.0 / (BLOCK as f64).sqrt(), "chain {j}: block correlation {corr}");
        }
    }

    #[test]
    fn the_stream_seed_decides_the_draws_whatever_the_thread_count() {
        let (m0, g, s) = inputs(2, 50_000);
        let step = OuStep { beta: 0.5, a: 1.0, coef: 1.0, t: 1.0 };
        let run = |threads: usize, seed: u64| {
            let (m, g, s) = (m0.copy(), g.copy(), s.copy());
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(move || {
                ou_update(&mut NoiseStream::with_seed(seed), &m, Some(&g), &s, None, step).unwrap();
                m
            })
        };
        assert!(run(1, 5).equal(&run(2, 5)));
        assert!(!run(1, 5).equal(&run(1, 6)));
    }

    #[test]
    fn a_chains_noise_is_the_same_alone_and_in_any_batch() {
        // m = 0, β = 0, no kick, T = 1/coef: m becomes s⊙ξ, the chain's own draws. Chain seeds
        // 11, 22, 33 batched in two orders and chain 22 alone must give chain 22 the same row,
        // several calls deep, and the libtorch fallback (`composed`) the same draws.
        let d = 2 * BLOCK as i64 + 77; // two whole blocks and a partial one
        let step = OuStep { beta: 0.0, a: 0.0, coef: 1.0, t: f64::NAN };
        let draw = |seeds: &[u64], calls: usize, fused: bool| -> Tensor {
            let k = seeds.len() as i64;
            let mut stream = NoiseStream::per_chain(seeds.to_vec());
            let temps = Tensor::ones([k, 1], (Kind::Float, Device::Cpu));
            let s = Tensor::ones([k, d], (Kind::Float, Device::Cpu));
            let m = Tensor::zeros([k, d], (Kind::Float, Device::Cpu));
            for _ in 0..calls {
                if fused {
                    ou_update(&mut stream, &m, None, &s, Some(&temps), step).unwrap();
                } else {
                    composed(&mut stream, &m, None, &s, Some(&temps), step).unwrap();
                }
            }
            m
        };
        let alone = draw(&[22], 3, true).get(0);
        let batched = draw(&[11, 22, 33], 3, true);
        let reordered = draw(&[33, 11, 22], 3, true);
        assert!(batched.get(1).equal(&alone), "a batch of 3 changed chain 22's noise");
        assert!(reordered.get(2).equal(&alone), "another batch order changed chain 22's noise");
        assert!(draw(&[11, 22, 33], 3, false).equal(&batched), "the fallback draws other numbers");
        assert!(!batched.get(0).equal(&alone), "two chains drew the same noise");
        assert!(!draw(&[22], 2, true).get(0).equal(&alone), "a call did not advance the stream");
        // One temperature shared by the batch (no per-chain tensor): still the chain's own rows.
        let mut stream = NoiseStream::per_chain(vec![11, 22, 33]);
        let shared = OuStep { t: 1.0, ..step };
        let (s3, m3) =
            (Tensor::ones([3, d], (Kind::Float, Device::Cpu)), Tensor::zeros([3, d], (Kind::Float, Device::Cpu)));
        for _ in 0..3 {
            ou_update(&mut stream, &m3, None, &s3, None, shared).unwrap();
        }
        assert!(m3.get(1).equal(&alone), "a shared temperature mixed the chains' streams");
    }

    #[test]
    fn the_composed_update_is_the_fused_one_for_any_temperatures_and_coefficient() {
        // Same draws on the CPU, so the libtorch form (the GPU's) must give the fused loop's m
        // to float rounding: kick, friction and per-chain or shared noise scales.
        let (m0, g, s) = inputs(3, 5_000);
        let temps = Tensor::from_slice(&[0.5f32, 0.01, 2.0]).reshape([3, 1]);
        for (per_chain, step) in [
            (Some(&temps), OuStep { beta: 0.9, a: -0.3, coef: 0.04, t: f64::NAN }),
            (None, OuStep { beta: 0.7, a: 1.5, coef: 0.2, t: 0.3 }),
            (Some(&temps), OuStep { beta: 0.5, a: 0.0, coef: 0.0, t: f64::NAN }),
        ] {
            let (fused, lib) = (m0.copy(), m0.copy());
            ou_update(&mut NoiseStream::per_chain(vec![4, 5, 6]), &fused, Some(&g), &s, per_chain, step).unwrap();
            composed(&mut NoiseStream::per_chain(vec![4, 5, 6]), &lib, Some(&g), &s, per_chain, step).unwrap();
            let worst = f64::try_from((&fused - &lib).abs().max()).unwrap();
            assert!(worst < 1e-5, "{step:?}: largest difference {worst}");
            assert!(!fused.equal(&m0));
        }
    }

    #[test]
    fn scaled_updates_are_one_libtorch_call_and_report_bad_shapes() {
        let (y0, x, z) = inputs(2, 7);
        let y = y0.copy();
        add_scaled(&y, &x, -0.25).unwrap();
        assert!(f64::try_from((&y - (&y0 + &x * -0.25)).abs().max()).unwrap() < 1e-6);
        let y = y0.copy();
        addcmul_scaled(&y, &x, &z, 3.0).unwrap();
        assert!(f64::try_from((&y - (&y0 + &x * &z * 3.0)).abs().max()).unwrap() < 1e-5);
        let wrong = Tensor::ones([3], (Kind::Float, Device::Cpu));
        let e = add_scaled(&y, &wrong, 1.0).unwrap_err();
        assert!(e.starts_with("add_ (y + a·x): ") && e.contains("size"), "{e}");
        assert!(addcmul_scaled(&y, &x, &wrong, 1.0).is_err());
    }

    #[test]
    fn other_layouts_take_the_composed_path() {
        // A non-contiguous m (a transposed view) cannot use the fused loop; the update still holds.
        let (m, g, s) = inputs(4, 6);
        let (mt, gt, st) = (m.transpose(0, 1), g.transpose(0, 1), s.transpose(0, 1));
        let expected = &mt * 0.5 + &gt * 2.0;
        let step = OuStep { beta: 0.5, a: 2.0, coef: 1.0, t: 0.0 };
        ou_update(&mut NoiseStream::with_seed(1), &mt, Some(&gt), &st, None, step).unwrap();
        assert!(f64::try_from((&mt - &expected).abs().max()).unwrap() < 1e-6);
    }
}
