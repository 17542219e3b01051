//! The one error type of the crate.
//!
//! Every variant says what was wrong, where (the file or folder), and what to do about it,
//! so that the CLI can print the message as is, on one line.

use std::path::PathBuf;

/// Everything that can go wrong while reading, fetching or preparing a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file or folder could not be read, written or created.
    #[error("{action} {path}: {source}; check that the path exists and is accessible")]
    Io {
        /// What was being done ("cannot read", "cannot create", ...).
        action: &'static str,
        /// The file or folder involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// An IDX file does not start with the expected magic number.
    #[error(
        "{path}: bad IDX magic 0x{found:08x}, expected 0x{expected:08x} for an IDX {what} file; \
         the file is not in IDX format or is corrupt: replace it (or re-fetch the dataset)"
    )]
    BadMagic {
        /// The offending file.
        path: PathBuf,
        /// The first four bytes, big-endian.
        found: u32,
        /// The magic number that was expected.
        expected: u32,
        /// "images" or "labels".
        what: &'static str,
    },

    /// A file is shorter than its header (or record size) says it must be.
    #[error("{path}: truncated: {detail}; the file is incomplete: replace it (or re-fetch the dataset)")]
    Truncated {
        /// The offending file.
        path: PathBuf,
        /// Expected versus found sizes, in words.
        detail: String,
    },

    /// An image file and its label file disagree on the number of examples.
    #[error(
        "{images_path} holds {images} images but {labels_path} holds {labels} labels; \
         the two files belong to different splits or datasets: use a matching pair"
    )]
    CountMismatch {
        /// The image file.
        images_path: PathBuf,
        /// Number of images it declares.
        images: usize,
        /// The label file.
        labels_path: PathBuf,
        /// Number of labels it declares.
        labels: usize,
    },

    /// A file is readable but its content is not what the format requires.
    #[error("{path}: {detail}; the file is corrupt or in another format: replace it")]
    Format {
        /// The offending file (or a description of an embedded asset).
        path: PathBuf,
        /// What is wrong, in words.
        detail: String,
    },

    /// A file that a dataset needs is not in the folder.
    #[error("{path}: missing ({what}); {hint}")]
    MissingFile {
        /// The file that was looked for (the first candidate name when there are several).
        path: PathBuf,
        /// What the file is, and other names that were tried.
        what: String,
        /// What to do.
        hint: String,
    },

    /// A fetchable dataset was requested but is not in the cache.
    #[error("dataset `{name}` is not cached (looked in {path}); fetch it with `ablate data fetch {name}` or pass a folder that holds it")]
    NotCached {
        /// Dataset name.
        name: String,
        /// The cache folder that was checked.
        path: PathBuf,
    },

    /// A dataset name that this crate does not know.
    #[error("unknown dataset `{0}`; known datasets: {known} (see `ablate data list`)", known = crate::DATASETS.join(", "))]
    UnknownDataset(String),

    /// A downloaded archive does not have the pinned sha256: it is refused, nothing is cached.
    #[error(
        "{path}: sha256 {actual} does not match the pinned {expected}; the download was refused \
         and nothing was cached: retry, and if it persists the registry serves different bytes \
         (report it; do not use the file)"
    )]
    ChecksumMismatch {
        /// The downloaded file.
        path: PathBuf,
        /// The pinned checksum.
        expected: String,
        /// The checksum of the file.
        actual: String,
    },

    /// An external command (npm, apt-get, dpkg-deb) could not be run or failed.
    #[error("`{command}` failed (in {dir}): {detail}; {hint}")]
    Command {
        /// The command line.
        command: String,
        /// The working folder.
        dir: PathBuf,
        /// Exit status and the tail of its stderr, or why it could not start.
        detail: String,
        /// What to do.
        hint: String,
    },

    /// The cache location cannot be determined.
    #[error("cannot find a cache folder: none of ABLATE_CACHE, XDG_CACHE_HOME, HOME is set; set ABLATE_CACHE to a writable folder")]
    NoCacheRoot,

    /// A request that cannot be satisfied (sizes too large, missing path, ...).
    #[error("invalid data request: {0}")]
    InvalidRequest(String),
}

impl DataError {
    /// Shorthand for [`DataError::Io`].
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io { action, path: path.into(), source }
    }
}
