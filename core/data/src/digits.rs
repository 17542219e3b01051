//! The embedded dataset: UCI "Optical Recognition of Handwritten Digits", 8x8 (the
//! scikit-learn `digits` set), 1797 images, 10 classes. It needs no network and no cache, so
//! it serves the quickstart and the tests. Licence and attribution: `assets/README.md`.
//!
//! The asset is `digits.csv.gz` from the scikit-learn 1.9.1 wheel (sha256
//! [`DIGITS_SHA256`]): no header, 1797 rows of 65 integers, 64 pixels in `0..=16` (row-major
//! 8x8) then the label `0..=9`. Pixels are scaled by `1/16` to `[0, 1]`.
//!
//! **Split.** The set has no official train/test split. Rows are shuffled with
//! `permutation(1797, DIGITS_SPLIT_SEED, 0)` (see [`crate::subset::permutation`], seed
//! [`DIGITS_SPLIT_SEED`] = 1797); the first [`DIGITS_TRAIN`] = 1297 shuffled rows are the
//! training split and the last [`DIGITS_TEST`] = 500 the test split, each in shuffled order.
//! The split never changes (a test pins its first labels).

use std::path::Path;

use crate::idx::gunzip;
use crate::subset::{gather, permutation};
use crate::{DataError, Dataset, Split};

/// The embedded `digits.csv.gz`.
pub const DIGITS_CSV_GZ: &[u8] = include_bytes!("../assets/digits.csv.gz");
/// sha256 of [`DIGITS_CSV_GZ`] (as shipped in the scikit-learn 1.9.1 wheel).
pub const DIGITS_SHA256: &str = "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22";
/// Number of examples.
pub const DIGITS_N: usize = 1797;
/// Examples in the training split.
pub const DIGITS_TRAIN: usize = 1297;
/// Examples in the test split.
pub const DIGITS_TEST: usize = DIGITS_N - DIGITS_TRAIN;
/// Seed of the fixed shuffle that defines the split.
pub const DIGITS_SPLIT_SEED: u64 = 1797;
/// Image side length.
pub const SIDE: usize = 8;
/// Largest pixel value.
pub const MAX_PIXEL: u8 = 16;
/// Number of classes.
pub const CLASSES: usize = 10;

/// The embedded digits set with its fixed train/test split.
pub fn digits() -> Result<Dataset, DataError> {
    digits_from_bytes(Path::new("<embedded assets/digits.csv.gz>"), DIGITS_CSV_GZ)
}

/// The digits set from a `digits.csv` or `digits.csv.gz` file in the same format.
pub fn digits_from_file(path: &Path) -> Result<Dataset, DataError> {
    let raw = std::fs::read(path).map_err(|e| DataError::io("cannot read", path, e))?;
    digits_from_bytes(path, &raw)
}

/// Parse digits CSV bytes (gzip or plain) and apply the fixed split; `path` is only used in
/// errors. Accepts any number of rows (at least 2), split in the same 1297:500 proportion.
pub fn digits_from_bytes(path: &Path, raw: &[u8]) -> Result<Dataset, DataError> {
    let text = if raw.starts_with(&[0x1f, 0x8b]) { gunzip(path, raw)? } else { raw.to_vec() };
    let all = parse_csv(path, &text)?;
    let n = all.len();
    if n < 2 {
        return Err(DataError::Format {
            path: path.to_path_buf(),
            detail: format!("{n} rows; need at least 2 to split into train and test"),
        });
    }
    let n_train = if n == DIGITS_N { DIGITS_TRAIN } else { (n * DIGITS_TRAIN / DIGITS_N).clamp(1, n - 1) };
    let perm = permutation(n, DIGITS_SPLIT_SEED, 0);
    Ok(Dataset {
        name: "digits".to_string(),
        train: gather(&all, &perm[..n_train]),
        test: gather(&all, &perm[n_train..]),
        num_classes: CLASSES,
        channels: 1,
        height: SIDE,
        width: SIDE,
    })
}

/// Parse the CSV text into one split holding every row, in file order.
fn parse_csv(path: &Path, text: &[u8]) -> Result<Split, DataError> {
    let text = std::str::from_utf8(text)
        .map_err(|e| DataError::Format { path: path.to_path_buf(), detail: format!("not UTF-8 text: {e}") })?;
    let pixels = SIDE * SIDE;
    let mut split = Split { images: Vec::with_capacity(DIGITS_N * pixels), labels: Vec::with_capacity(DIGITS_N) };
    for (line_no, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let bad = |detail: String| DataError::Format {
            path: path.to_path_buf(),
            detail: format!("line {}: {detail}", line_no + 1),
        };
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != pixels + 1 {
            return Err(bad(format!("{} fields, expected {} (64 pixels and a label)", fields.len(), pixels + 1)));
        }
        for f in &fields[..pixels] {
            let v = parse_int(f).filter(|&v| v <= u64::from(MAX_PIXEL));
            let v = v.ok_or_else(|| bad(format!("pixel `{f}` is not an integer in 0..=16")))?;
            split.images.push(v as f32 / f32::from(MAX_PIXEL));
        }
        let label = fields[pixels];
        let l = parse_int(label)
            .filter(|&l| (l as usize) < CLASSES)
            .ok_or_else(|| bad(format!("label `{label}` is not an integer in 0..=9")))?;
        split.labels.push(l as i64);
    }
    Ok(split)
}

/// An unsigned integer, also written as a float with a zero fraction (`"5.0"`).
fn parse_int(s: &str) -> Option<u64> {
    let s = s.trim();
    s.parse::<u64>().ok().or_else(|| {
        let f: f64 = s.parse().ok()?;
        (f >= 0.0 && f.fract() == 0.0 && f < 1e15).then_some(f as u64)
    })
}
