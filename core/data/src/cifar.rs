//! The CIFAR-10 binary format ("CIFAR-10 binary version" from
//! <https://www.cs.toronto.edu/~kriz/cifar.html>), read from a folder the user supplies:
//! CIFAR-10 is in no package registry, so it cannot be fetched.
//!
//! The folder holds `data_batch_1.bin` .. `data_batch_5.bin` (training) and `test_batch.bin`
//! (test), or a `cifar-10-batches-bin/` subfolder that does. Each file is a sequence of
//! 3073-byte records: one label byte (0..9), then 3072 pixel bytes, the 1024 red, 1024 green
//! and 1024 blue values of a 32x32 image, each plane row-major. That is already the
//! `C*H*W` layout of [`Split::images`](crate::Split), so records decode independently and in
//! parallel.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::{DataError, Dataset, Split};

/// Image side length.
pub const SIDE: usize = 32;
/// Colour channels.
pub const CHANNELS: usize = 3;
/// Number of classes.
pub const CLASSES: usize = 10;
/// Pixel bytes per image (`3*32*32`).
pub const PIXELS: usize = CHANNELS * SIDE * SIDE;
/// Bytes per record: the label byte and the pixels.
pub const RECORD: usize = 1 + PIXELS;
/// Training batch files, in order.
pub const TRAIN_FILES: [&str; 5] =
    ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"];
/// Test batch file.
pub const TEST_FILE: &str = "test_batch.bin";
/// Subfolder name of the official tarball.
pub const SUBFOLDER: &str = "cifar-10-batches-bin";

const HINT: &str = "download the CIFAR-10 binary version from \
    https://www.cs.toronto.edu/~kriz/cifar.html, unpack it, and pass the \
    cifar-10-batches-bin folder as the data path";

/// The folder that actually holds the batch files: `dir` itself, or its
/// `cifar-10-batches-bin/` subfolder.
pub fn resolve_dir(dir: &Path) -> PathBuf {
    let sub = dir.join(SUBFOLDER);
    if !dir.join(TEST_FILE).is_file() && sub.join(TEST_FILE).is_file() {
        sub
    } else {
        dir.to_path_buf()
    }
}

/// Whether `dir` (or its subfolder) holds all six batch files.
pub fn is_complete(dir: &Path) -> bool {
    let dir = resolve_dir(dir);
    TRAIN_FILES.iter().chain(std::iter::once(&TEST_FILE)).all(|f| dir.join(f).is_file())
}

/// Load CIFAR-10 from a folder of binary batches, pixels scaled to `[0, 1]`.
pub fn load_cifar10_dir(dir: &Path) -> Result<Dataset, DataError> {
    let dir = resolve_dir(dir);
    // Check every file exists before reading ~180 MB, so a missing one fails fast.
    for name in TRAIN_FILES.iter().chain(std::iter::once(&TEST_FILE)) {
        let path = dir.join(name);
        if !path.is_file() {
            return Err(DataError::MissingFile {
                path,
                what: "CIFAR-10 batch file".to_string(),
                hint: HINT.to_string(),
            });
        }
    }
    let train_paths: Vec<PathBuf> = TRAIN_FILES.iter().map(|f| dir.join(f)).collect();
    let (train, test) = rayon::join(|| read_batches(&train_paths), || read_batches(&[dir.join(TEST_FILE)]));
    let (train, test) = (train?, test?);
    tracing::debug!(dir = %dir.display(), train = train.len(), test = test.len(), "loaded CIFAR-10");
    Ok(Dataset {
        name: "cifar10".to_string(),
        train,
        test,
        num_classes: CLASSES,
        channels: CHANNELS,
        height: SIDE,
        width: SIDE,
    })
}

/// Read and concatenate several batch files into one split.
pub fn read_batches(paths: &[PathBuf]) -> Result<Split, DataError> {
    let parts = paths.par_iter().map(|p| read_batch(p)).collect::<Result<Vec<_>, _>>()?;
    let n: usize = parts.iter().map(Split::len).sum();
    let mut split = Split { images: Vec::with_capacity(n * PIXELS), labels: Vec::with_capacity(n) };
    for part in parts {
        split.images.extend_from_slice(&part.images);
        split.labels.extend_from_slice(&part.labels);
    }
    Ok(split)
}

/// Read one batch file.
pub fn read_batch(path: &Path) -> Result<Split, DataError> {
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => DataError::MissingFile {
            path: path.to_path_buf(),
            what: "CIFAR-10 batch file".to_string(),
            hint: HINT.to_string(),
        },
        _ => DataError::io("cannot read", path, e),
    })?;
    parse_batch(path, &bytes)
}

/// Parse the bytes of one batch file; `path` is only used in errors.
pub fn parse_batch(path: &Path, bytes: &[u8]) -> Result<Split, DataError> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(RECORD) {
        let whole = bytes.len() / RECORD;
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            detail: format!(
                "{} bytes is not a positive multiple of the {RECORD}-byte record \
                 ({whole} whole records and {} bytes over; a full batch is 10000 records, \
                 30730000 bytes)",
                bytes.len(),
                bytes.len() % RECORD
            ),
        });
    }
    if let Some(index) = bytes.chunks_exact(RECORD).position(|r| usize::from(r[0]) >= CLASSES) {
        return Err(DataError::Format {
            path: path.to_path_buf(),
            detail: format!("record {index} has label {} outside 0..{CLASSES}", bytes[index * RECORD]),
        });
    }
    let n = bytes.len() / RECORD;
    let labels = bytes.chunks_exact(RECORD).map(|r| i64::from(r[0])).collect();
    let mut images = vec![0.0f32; n * PIXELS];
    images.par_chunks_mut(PIXELS).zip(bytes.par_chunks_exact(RECORD)).for_each(|(out, record)| {
        for (o, &p) in out.iter_mut().zip(&record[1..]) {
            *o = f32::from(p) / 255.0;
        }
    });
    Ok(Split { images, labels })
}
