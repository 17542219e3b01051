//! MNIST-1D (Greydanus 2020, "Scaling down deep learning"; the published `mnist1d` generator),
//! generated here, offline, from a seed: 5000 one-dimensional signals of length 40 in 10
//! classes, split 4000 / 1000 like the published default.
//!
//! **The published recipe** (parameters of its `get_dataset_args`, reimplemented from the
//! description, not copied):
//! 1. Ten hand-set templates of 12 points (one per digit); each is whitened (mean 0, population
//!    standard deviation 1), shifted to start at 0 and divided by 6.
//! 2. Per example (500 per class, classes in order): add 1e-8 (so template points are never
//!    exactly 0), append p zeros with p uniform in {36, …, 60}, and resample linearly to
//!    12 + 60 = 72 points;
//! 3. scale by 1 + 0.4·(u − ½);
//! 4. shift circularly to the right by k uniform in {0, …, 47};
//! 5. where the signal is exactly 0 (padding), put correlated noise: 0.25·N(0, 1) white noise
//!    smoothed by a Gaussian filter of σ = 2 points (radius 8, reflecting edges, as
//!    `scipy.ndimage.gaussian_filter`); then add white noise 0.02·N(0, 1) everywhere;
//! 6. shear: subtract c·t with c = 0.75·(u − ½) and t from −½ to ½ over the 72 points;
//! 7. resample linearly to 40 points.
//!
//! Then the 5000 examples are shuffled, the whole set is standardised by its overall mean and
//! standard deviation, and the first 80% are the training split.
//!
//! **Same bytes on every machine.** Uniforms come from a `ChaCha8Rng` (53-bit floats from raw
//! `u64`s), integers by the rejection sampling of [`crate::subset`], normals by Marsaglia's
//! polar method with a logarithm written here from `+ − × ÷` (IEEE correctly rounded on every
//! platform, unlike the platform `ln`), and the filter weights are constants. Only `sqrt` (also
//! correctly rounded) is taken from the platform. The published data cannot be reproduced bit
//! for bit (numpy's generator and order of draws differ); the distribution is the published one.
//!
//! The signals are stored as images of shape 1×40×1 (channel, height = time, width = feature),
//! so a sequence model reads 40 steps of one feature (and MNIST, 1×28×28, as 28 rows of 28).

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{Dataset, Split};

/// The ten templates of 12 points (digits 0–9), as published.
pub const TEMPLATES: [[f64; 12]; 10] = [
    [5.0, 6.0, 6.5, 6.75, 7.0, 7.0, 7.0, 7.0, 6.75, 6.5, 6.0, 5.0],
    [5.0, 3.0, 3.0, 3.4, 3.8, 4.2, 4.6, 5.0, 5.4, 5.8, 5.0, 5.0],
    [5.0, 6.0, 6.5, 6.5, 6.0, 5.25, 4.75, 4.0, 3.5, 3.5, 4.0, 5.0],
    [5.0, 6.0, 6.5, 6.5, 6.0, 5.0, 5.0, 6.0, 6.5, 6.5, 6.0, 5.0],
    [5.0, 4.4, 3.8, 3.2, 2.6, 2.6, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0],
    [5.0, 3.0, 3.0, 3.0, 3.0, 5.0, 6.0, 6.5, 6.5, 6.0, 4.5, 5.0],
    [5.0, 4.0, 3.5, 3.25, 3.0, 3.0, 3.0, 3.0, 3.25, 3.5, 4.0, 5.0],
    [5.0, 7.0, 7.0, 6.6, 6.2, 5.8, 5.4, 5.0, 4.6, 4.2, 5.0, 5.0],
    [5.0, 4.0, 3.5, 3.5, 4.0, 5.0, 5.0, 4.0, 3.5, 3.5, 4.0, 5.0],
    [5.0, 4.0, 3.5, 3.5, 4.0, 5.0, 5.0, 5.0, 5.0, 4.7, 4.3, 5.0],
];

/// Normalised weights w₀…w₈ of the Gaussian filter with σ = 2 points, radius 8
/// (exp(−k²/8) / Σ_{j=−8..8} exp(−j²/8)), as constants.
pub const FILTER: [f64; 9] = [
    0.199_474_647_864_745,
    0.176_035_758_884_790_37,
    0.120_987_489_765_349_04,
    0.064_759_936_604_727_44,
    0.026_995_957_967_298_846,
    0.008_764_304_362_785_87,
    0.002_215_963_172_596_555,
    0.000_436_349_020_506_788_3,
    0.000_066_916_289_572_635_53,
];

/// The generator's parameters; [`Mnist1dArgs::PUBLISHED`] are the published defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mnist1dArgs {
    /// Examples in all (divided equally among the 10 classes).
    pub num_samples: usize,
    /// Share of the (shuffled) examples in the training split.
    pub train_split: f64,
    /// Zeros appended to a template: uniform in `padding.0..=padding.1`.
    pub padding: (usize, usize),
    /// Scale factor 1 + `scale_coeff`·(u − ½).
    pub scale_coeff: f64,
    /// Circular shift uniform in `0..max_translation` (0 or 1 = none).
    pub max_translation: usize,
    /// Standard deviation of the white noise smoothed into the background.
    pub corr_noise_scale: f64,
    /// Standard deviation of the white noise added everywhere.
    pub iid_noise_scale: f64,
    /// Shear coefficient `shear_scale`·(u − ½).
    pub shear_scale: f64,
    /// Length of each signal.
    pub final_seq_length: usize,
    /// Seed of the whole generation.
    pub seed: u64,
}

impl Mnist1dArgs {
    /// The published defaults (`get_dataset_args` of the `mnist1d` package).
    pub const PUBLISHED: Mnist1dArgs = Mnist1dArgs {
        num_samples: 5000,
        train_split: 0.8,
        padding: (36, 60),
        scale_coeff: 0.4,
        max_translation: 48,
        corr_noise_scale: 0.25,
        iid_noise_scale: 0.02,
        shear_scale: 0.75,
        final_seq_length: 40,
        seed: 42,
    };
}

/// The generator's random stream (see the module docs).
pub struct Stream {
    rng: ChaCha8Rng,
    spare: Option<f64>,
}

impl Stream {
    /// A stream for `seed`.
    pub fn new(seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(2);
        Self { rng, spare: None }
    }

    /// Uniform on [0, 1) with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in `0..n` (`n` ≥ 1).
    pub fn below(&mut self, n: u64) -> u64 {
        crate::subset::uniform_below(&mut self.rng, n)
    }

    /// A standard normal draw (Marsaglia's polar method with [`ln`]).
    pub fn normal(&mut self) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        loop {
            let u = 2.0 * self.uniform() - 1.0;
            let v = 2.0 * self.uniform() - 1.0;
            let s = u * u + v * v;
            if s > 0.0 && s < 1.0 {
                let f = (-2.0 * ln(s) / s).sqrt();
                self.spare = Some(v * f);
                return u * f;
            }
        }
    }
}

/// Natural logarithm of a positive finite `x` from `+ − × ÷` only (so the same bits on every
/// machine): x = m·2^e with m in [1/√2, √2), ln m = 2·atanh(s), s = (m − 1)/(m + 1), |s| < 0.172,
/// by its series to s³¹ (error below 1e-17 relative).
pub fn ln(x: f64) -> f64 {
    const LN2: f64 = std::f64::consts::LN_2;
    const SQRT2: f64 = std::f64::consts::SQRT_2;
    let bits = x.to_bits();
    let exp_bits = ((bits >> 52) & 0x7ff) as i64;
    // Normal numbers only (the polar method's s is ≥ 2⁻¹⁰⁶); subnormals scaled first.
    let (mut m, mut e) = if exp_bits == 0 {
        let y = x * (1u64 << 54) as f64;
        let b = y.to_bits();
        (f64::from_bits((b & !(0x7ff << 52)) | (1023 << 52)), ((b >> 52) & 0x7ff) as i64 - 1023 - 54)
    } else {
        (f64::from_bits((bits & !(0x7ff << 52)) | (1023 << 52)), exp_bits - 1023)
    };
    if m >= SQRT2 {
        m *= 0.5;
        e += 1;
    }
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut term = s;
    let mut sum = 0.0;
    let mut k = 1.0;
    while k < 32.0 {
        sum += term / k;
        term *= s2;
        k += 2.0;
    }
    2.0 * sum + e as f64 * LN2
}

/// Linear resampling of `x` (on an even grid over [0, 1]) to `n` points on an even grid over
/// [0, 1] (the published `interpolate`).
pub fn resample(x: &[f64], n: usize) -> Vec<f64> {
    let m = x.len();
    if m == 1 || n == 1 {
        return vec![x[0]; n];
    }
    (0..n)
        .map(|i| {
            // Position on the source grid: i·(m−1)/(n−1), split exactly into index and fraction.
            let num = (i * (m - 1)) as f64;
            let den = (n - 1) as f64;
            let j = (i * (m - 1)) / (n - 1);
            if j >= m - 1 {
                return x[m - 1];
            }
            let frac = (num - (j * (n - 1)) as f64) / den;
            x[j] + (x[j + 1] - x[j]) * frac
        })
        .collect()
}

/// The Gaussian filter of [`FILTER`] with reflecting edges (`d c b a | a b c d | d c b a`).
pub fn gaussian_filter(x: &[f64]) -> Vec<f64> {
    let n = x.len() as i64;
    let at = |mut i: i64| -> f64 {
        // Reflect until inside (half-sample symmetric, like scipy's `reflect`).
        loop {
            if i < 0 {
                i = -i - 1;
            } else if i >= n {
                i = 2 * n - i - 1;
            } else {
                return x[i as usize];
            }
        }
    };
    (0..n)
        .map(|i| {
            let mut acc = FILTER[0] * at(i);
            for (k, w) in FILTER.iter().enumerate().skip(1) {
                acc += w * (at(i - k as i64) + at(i + k as i64));
            }
            acc
        })
        .collect()
}

/// The whitened, shifted and scaled templates (step 1).
pub fn templates() -> [[f64; 12]; 10] {
    let mut out = TEMPLATES;
    for t in &mut out {
        let mean = t.iter().sum::<f64>() / 12.0;
        let std = (t.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / 12.0).sqrt();
        for v in t.iter_mut() {
            *v = (*v - mean) / std;
        }
        let first = t[0];
        for v in t.iter_mut() {
            *v = (*v - first) / 6.0;
        }
    }
    out
}

/// One example from `template` (steps 2–7).
pub fn transform(template: &[f64], args: &Mnist1dArgs, rng: &mut Stream) -> Vec<f64> {
    let (lo, hi) = args.padding;
    let pad = lo + rng.below((hi - lo + 1) as u64) as usize;
    let mut x: Vec<f64> = template.iter().map(|v| v + 1e-8).collect();
    x.extend(std::iter::repeat_n(0.0, pad));
    let len = template.len() + hi;
    let mut x = resample(&x, len);
    let scale = 1.0 + args.scale_coeff * (rng.uniform() - 0.5);
    for v in &mut x {
        *v *= scale;
    }
    if args.max_translation > 1 {
        let k = rng.below(args.max_translation as u64) as usize;
        x.rotate_right(k % len);
    }
    let white: Vec<f64> = (0..len).map(|_| args.corr_noise_scale * rng.normal()).collect();
    let corr = gaussian_filter(&white);
    for (v, c) in x.iter_mut().zip(&corr) {
        if *v == 0.0 {
            *v = *c;
        }
    }
    for v in &mut x {
        *v += args.iid_noise_scale * rng.normal();
    }
    let c = args.shear_scale * (rng.uniform() - 0.5);
    for (i, v) in x.iter_mut().enumerate() {
        let t = -0.5 + i as f64 / (len - 1) as f64;
        *v -= c * t;
    }
    resample(&x, args.final_seq_length)
}

/// The whole dataset of `args`: (signals row-major, labels), shuffled and standardised, before
/// the split.
pub fn generate(args: &Mnist1dArgs) -> (Vec<f64>, Vec<i64>) {
    let templates = templates();
    let mut rng = Stream::new(args.seed);
    let per_class = args.num_samples / templates.len();
    let mut examples = Vec::with_capacity(per_class * templates.len());
    for (label, t) in templates.iter().enumerate() {
        for _ in 0..per_class {
            examples.push((transform(t, args, &mut rng), label as i64));
        }
    }
    // Fisher–Yates with the stream's integers.
    for i in (1..examples.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        examples.swap(i, j);
    }
    let mut xs: Vec<f64> = examples.iter().flat_map(|(x, _)| x.iter().copied()).collect();
    let ys: Vec<i64> = examples.iter().map(|(_, y)| *y).collect();
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let std = (xs.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt();
    for v in &mut xs {
        *v = (*v - mean) / std;
    }
    (xs, ys)
}

/// MNIST-1D with the published defaults, as a [`Dataset`] named `mnist1d` (1×40×1 signals).
pub fn mnist1d() -> Dataset {
    from_args(&Mnist1dArgs::PUBLISHED)
}

/// MNIST-1D generated with `args`.
pub fn from_args(args: &Mnist1dArgs) -> Dataset {
    let (xs, ys) = generate(args);
    let len = args.final_seq_length;
    let split = (ys.len() as f64 * args.train_split) as usize;
    let images: Vec<f32> = xs.iter().map(|&v| v as f32).collect();
    Dataset {
        name: "mnist1d".to_string(),
        train: Split { images: images[..split * len].to_vec(), labels: ys[..split].to_vec() },
        test: Split { images: images[split * len..].to_vec(), labels: ys[split..].to_vec() },
        num_classes: 10,
        channels: 1,
        height: len,
        width: 1,
    }
}
