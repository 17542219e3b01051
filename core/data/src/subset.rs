//! Deterministic subsetting and per-channel standardisation.
//!
//! **Permutations.** [`permutation`] is a Fisher–Yates shuffle driven by a `ChaCha8Rng`
//! seeded with `seed` and set to stream `stream`. It draws raw `u64`s and maps them to a range
//! by rejection sampling written here, so the result depends only on the ChaCha8 key stream
//! (a fixed algorithm), not on the range-sampling code of any `rand` version: the same seed
//! gives the same subset on every machine and release.
//!
//! **Subsets.** [`subset`] keeps the first `n` indices of the permutation and sorts them, so a
//! subset keeps the original order of the examples, and for one seed a smaller subset is
//! contained in a larger one (convenient for data-size ablations). The training and test
//! subsets use streams [`TRAIN_STREAM`] and [`TEST_STREAM`] of the same seed, so they are
//! independent.
//!
//! **Standardisation.** [`standardize`] computes each channel's mean and (population) standard
//! deviation over the training images only, and applies `(x - mean) / std` to both splits.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{DataError, Dataset, Split};

/// ChaCha stream used for the training subset.
pub const TRAIN_STREAM: u64 = 0;
/// ChaCha stream used for the test subset.
pub const TEST_STREAM: u64 = 1;

/// A permutation of `0..n` determined by `seed` and `stream`.
pub fn permutation(n: usize, seed: u64, stream: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    let mut perm: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = uniform_below(&mut rng, i as u64 + 1) as usize;
        perm.swap(i, j);
    }
    perm
}

/// A uniform integer in `0..bound` (`bound > 0`) by rejection of the biased tail.
pub(crate) fn uniform_below(rng: &mut ChaCha8Rng, bound: u64) -> u64 {
    // Largest multiple of `bound` that fits in u64 (as an exclusive limit).
    let zone = u64::MAX - (u64::MAX % bound + 1) % bound;
    loop {
        let x = rng.next_u64();
        if x <= zone {
            return x % bound;
        }
    }
}

/// The examples of `split` at `indices`, in that order.
pub fn gather(split: &Split, indices: &[usize]) -> Split {
    let n = split.len();
    let per = split.images.len().checked_div(n).unwrap_or(0);
    let mut images = vec![0.0f32; indices.len() * per];
    if per > 0 {
        images
            .par_chunks_mut(per)
            .zip(indices.par_iter())
            .for_each(|(out, &i)| out.copy_from_slice(&split.images[i * per..(i + 1) * per]));
    }
    let labels = indices.iter().map(|&i| split.labels[i]).collect();
    Split { images, labels }
}

/// A deterministic subset of `size` examples of `split` (see the module docs). `what` names
/// the split in the error when `size` exceeds its length.
pub fn subset(split: &Split, size: usize, seed: u64, stream: u64, what: &str) -> Result<Split, DataError> {
    if size > split.len() {
        return Err(DataError::InvalidRequest(format!(
            "{what} size {size} exceeds the {} examples available; ask for at most {}",
            split.len(),
            split.len()
        )));
    }
    if size == split.len() {
        return Ok(split.clone());
    }
    let mut keep = permutation(split.len(), seed, stream);
    keep.truncate(size);
    keep.sort_unstable();
    Ok(gather(split, &keep))
}

/// How a subset of `n` examples is chosen (`data.subset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SubsetMode {
    /// Sorted first `n` of a seeded permutation ([`subset`]); the default.
    #[default]
    Random,
    /// The first `n` examples in file order ([`first`]), as reference code takes them.
    First,
}

/// The first `size` examples of `split`, in file order (no seed involved). `what` names the
/// split in the error when `size` exceeds its length.
pub fn first(split: &Split, size: usize, what: &str) -> Result<Split, DataError> {
    if size > split.len() {
        return Err(DataError::InvalidRequest(format!(
            "{what} size {size} exceeds the {} examples available; ask for at most {}",
            split.len(),
            split.len()
        )));
    }
    let keep: Vec<usize> = (0..size).collect();
    Ok(gather(split, &keep))
}

/// A subset of `size` examples chosen by `mode`: [`subset`] for [`SubsetMode::Random`],
/// [`first`] for [`SubsetMode::First`] (which ignores `seed` and `stream`).
pub fn subset_by(
    split: &Split,
    size: usize,
    mode: SubsetMode,
    seed: u64,
    stream: u64,
    what: &str,
) -> Result<Split, DataError> {
    match mode {
        SubsetMode::Random => subset(split, size, seed, stream, what),
        SubsetMode::First => first(split, size, what),
    }
}

/// ChaCha stream of the label-noise draws ([`label_noise`]).
pub const LABEL_NOISE_STREAM: u64 = 2;

/// Replace a fraction of the labels of `split` by labels drawn uniformly at random over
/// `0..num_classes`; returns how many examples were chosen for replacement.
///
/// Exactly `round(fraction * n)` examples are chosen (the sorted first of a ChaCha8
/// permutation seeded with `seed` on stream [`LABEL_NOISE_STREAM`]), and each chosen
/// example gets a label drawn uniformly from **all** `num_classes` classes, so the new label
/// may equal the true one (with probability `1/num_classes`): the expected fraction of
/// changed labels is `fraction * (1 - 1/num_classes)`. This is the symmetric noise model of
/// Kapoor et al. (2022). Same seed, same labels on every machine (raw ChaCha8 output mapped by
/// rejection, as [`permutation`]). `fraction` outside `[0, 1]` or `num_classes == 0` is an error.
pub fn label_noise(split: &mut Split, fraction: f64, num_classes: usize, seed: u64) -> Result<usize, DataError> {
    if !(0.0..=1.0).contains(&fraction) {
        return Err(DataError::InvalidRequest(format!(
            "label_noise {fraction} is not a fraction; use a value in [0, 1]"
        )));
    }
    if num_classes == 0 {
        return Err(DataError::InvalidRequest("label_noise needs at least one class".into()));
    }
    let n = split.len();
    let count = ((fraction * n as f64).round() as usize).min(n);
    if count == 0 {
        return Ok(0);
    }
    let mut chosen = permutation(n, seed, LABEL_NOISE_STREAM);
    chosen.truncate(count);
    chosen.sort_unstable();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(LABEL_NOISE_STREAM + 1);
    for i in chosen {
        split.labels[i] = uniform_below(&mut rng, num_classes as u64) as i64;
    }
    Ok(count)
}

/// Per-channel statistics of the training images, as used by [`standardize`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelStats {
    /// Mean of each channel.
    pub mean: Vec<f32>,
    /// Population standard deviation of each channel (1 where it was 0).
    pub std: Vec<f32>,
}

/// Per-channel mean and standard deviation over the training images of `ds`.
pub fn channel_stats(ds: &Dataset) -> ChannelStats {
    let c = ds.channels;
    let plane = ds.height * ds.width;
    let per = c * plane;
    let zero = || vec![(0.0f64, 0.0f64); c];
    let sums = if per == 0 {
        zero()
    } else {
        ds.train
            .images
            .par_chunks(per)
            .fold(zero, |mut acc, img| {
                for (ch, slot) in acc.iter_mut().enumerate() {
                    for &x in &img[ch * plane..(ch + 1) * plane] {
                        let x = f64::from(x);
                        slot.0 += x;
                        slot.1 += x * x;
                    }
                }
                acc
            })
            .reduce(zero, |mut a, b| {
                for (x, y) in a.iter_mut().zip(b) {
                    x.0 += y.0;
                    x.1 += y.1;
                }
                a
            })
    };
    let count = (ds.train.len() * plane) as f64;
    let mut mean = Vec::with_capacity(c);
    let mut std = Vec::with_capacity(c);
    for (s, sq) in sums {
        let m = if count > 0.0 { s / count } else { 0.0 };
        let var = if count > 0.0 { (sq / count - m * m).max(0.0) } else { 0.0 };
        let sd = var.sqrt();
        mean.push(m as f32);
        std.push(if sd > 1e-12 { sd as f32 } else { 1.0 });
    }
    ChannelStats { mean, std }
}

/// Standardise both splits of `ds` per channel with the training statistics; returns them.
pub fn standardize(ds: &mut Dataset) -> ChannelStats {
    let stats = channel_stats(ds);
    let plane = ds.height * ds.width;
    let per = ds.channels * plane;
    if per > 0 {
        for split in [&mut ds.train, &mut ds.test] {
            split.images.par_chunks_mut(per).for_each(|img| {
                for (ch, chunk) in img.chunks_mut(plane).enumerate() {
                    let (m, inv) = (stats.mean[ch], 1.0 / stats.std[ch]);
                    for x in chunk {
                        *x = (*x - m) * inv;
                    }
                }
            });
        }
    }
    stats
}
