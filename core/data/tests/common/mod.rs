//! Fixture writers shared by the integration tests: IDX files, CIFAR-10 batches, gzip and
//! gzip tarballs, all written from code (no network, no committed binaries).
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;

use flate2::write::GzEncoder;
use flate2::Compression;

/// A deterministic pseudo-random byte pattern.
pub fn pattern(n: usize, salt: u8) -> Vec<u8> {
    (0..n).map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 13) as u8 ^ salt).collect()
}

/// The bytes of an IDX image file.
pub fn idx_images(count: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    for v in [0x0803u32, count, rows, cols] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    b.extend_from_slice(pixels);
    b
}

/// The bytes of an IDX label file.
pub fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&0x0801u32.to_be_bytes());
    b.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    b.extend_from_slice(labels);
    b
}

/// Gzip bytes.
pub fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// A small MNIST-like split: `n` images of `rows`x`cols` and labels `i % 10`.
pub fn split_bytes(n: usize, rows: usize, cols: usize, salt: u8) -> (Vec<u8>, Vec<u8>) {
    let pixels = pattern(n * rows * cols, salt);
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    (idx_images(n as u32, rows as u32, cols as u32, &pixels), idx_labels(&labels))
}

/// Write the four IDX files of a small dataset into `dir` under the given naming style
/// (`dash`: `train-images-idx3-ubyte`, else `train-images.idx3-ubyte`), optionally gzipped.
pub fn write_idx_dataset(dir: &Path, n_train: usize, n_test: usize, dash: bool, gzip: bool) {
    std::fs::create_dir_all(dir).unwrap();
    for (prefix, n, salt) in [("train", n_train, 1u8), ("t10k", n_test, 2u8)] {
        let (img, lab) = split_bytes(n, 28, 28, salt);
        for (kind, idx, bytes) in [("images", "idx3", img), ("labels", "idx1", lab)] {
            let sep = if dash { '-' } else { '.' };
            let mut name = format!("{prefix}-{kind}{sep}{idx}-ubyte");
            let bytes = if gzip {
                name.push_str(".gz");
                gz(&bytes)
            } else {
                bytes
            };
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
}

/// A ustar header block for a regular file (`typeflag` b'0') or a PAX header (b'x').
fn tar_header(name: &str, size: usize, typeflag: u8) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..107].copy_from_slice(b"0000644");
    h[108..115].copy_from_slice(b"0001750");
    h[116..123].copy_from_slice(b"0001750");
    h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
    h[136..147].copy_from_slice(b"14000000000");
    h[156] = typeflag;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    h
}

fn pad(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(512) {
        out.push(0);
    }
}

/// A gzip tarball holding `entries` (path, bytes). Paths starting with `pax:` are written
/// with a PAX `path` record and a dummy short name.
pub fn tgz(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (path, data) in entries {
        if let Some(long) = path.strip_prefix("pax:") {
            let body = format!("path={long}\n");
            // "<len> path=...\n" where len counts itself.
            let mut len = body.len() + 2;
            while len != len.to_string().len() + 1 + body.len() {
                len = len.to_string().len() + 1 + body.len();
            }
            let record = format!("{len} {body}");
            out.extend_from_slice(&tar_header("PaxHeader/x", record.len(), b'x'));
            out.extend_from_slice(record.as_bytes());
            pad(&mut out);
            out.extend_from_slice(&tar_header("short-name", data.len(), b'0'));
        } else {
            out.extend_from_slice(&tar_header(path, data.len(), b'0'));
        }
        out.extend_from_slice(data);
        pad(&mut out);
    }
    out.extend_from_slice(&[0u8; 1024]);
    gz(&out)
}

/// One CIFAR-10 record: the label then 3072 pixel bytes.
pub fn cifar_record(label: u8, salt: u8) -> Vec<u8> {
    let mut r = vec![label];
    r.extend(pattern(3072, salt));
    r
}

/// Write the six batch files into `dir`, `per_batch` records each; returns the raw records of
/// the training batches (in order) and of the test batch.
pub fn write_cifar(dir: &Path, per_batch: usize) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    std::fs::create_dir_all(dir).unwrap();
    let mut train = Vec::new();
    for b in 1..=5u8 {
        let recs: Vec<Vec<u8>> =
            (0..per_batch).map(|i| cifar_record(((b as usize * 3 + i) % 10) as u8, b * 16 + i as u8)).collect();
        std::fs::write(dir.join(format!("data_batch_{b}.bin")), recs.concat()).unwrap();
        train.extend(recs);
    }
    let test: Vec<Vec<u8>> = (0..per_batch).map(|i| cifar_record((i % 10) as u8, 200 + i as u8)).collect();
    std::fs::write(dir.join("test_batch.bin"), test.concat()).unwrap();
    (train, test)
}
