//! The IDX reader: good files in every naming style and compression, and each kind of bad file.
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod common;

use std::path::Path;

use ablate_data::idx::{load_idx_dir, load_split, read_images, read_labels};
use ablate_data::{DataError, DataRequest};
use common::*;

#[test]
fn raw_and_gz_give_identical_data_in_both_naming_styles() {
    let tmp = tempfile::tempdir().unwrap();
    let mut loaded = Vec::new();
    for (dash, gzip) in [(true, false), (true, true), (false, false), (false, true)] {
        let dir = tmp.path().join(format!("d{dash}{gzip}"));
        write_idx_dataset(&dir, 30, 12, dash, gzip);
        loaded.push(load_idx_dir(&dir, "mnist").unwrap());
    }
    let first = &loaded[0];
    assert_eq!(first.train.len(), 30);
    assert_eq!(first.test.len(), 12);
    assert_eq!((first.channels, first.height, first.width), (1, 28, 28));
    assert_eq!(first.train.images.len(), 30 * 784);
    for other in &loaded[1..] {
        assert_eq!(other, first);
    }
}

#[test]
fn pixels_are_scaled_and_labels_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let pixels: Vec<u8> = vec![0, 255, 51, 102, 0, 0, 255, 255];
    std::fs::write(tmp.path().join("i"), idx_images(2, 2, 2, &pixels)).unwrap();
    std::fs::write(tmp.path().join("l"), idx_labels(&[7, 3])).unwrap();
    let (split, shape) = load_split(&tmp.path().join("i"), &tmp.path().join("l"), 10).unwrap();
    assert_eq!(shape, (2, 2));
    assert_eq!(split.labels, vec![7, 3]);
    assert_eq!(split.images, vec![0.0, 1.0, 0.2, 0.4, 0.0, 0.0, 1.0, 1.0]);
    assert_eq!(split.image(1), &[0.0, 0.0, 1.0, 1.0]);
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn bad_magic_is_reported_with_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("train-images-idx3-ubyte");
    // A label file where an image file is expected.
    write(&p, &idx_labels(&[1, 2, 3]));
    match read_images(&p) {
        Err(DataError::BadMagic { path, found, expected, .. }) => {
            assert_eq!(path, p);
            assert_eq!(found, 0x0801);
            assert_eq!(expected, 0x0803);
        }
        other => panic!("expected BadMagic, got {other:?}"),
    }
    let msg = read_images(&p).unwrap_err().to_string();
    assert!(msg.contains("train-images-idx3-ubyte"), "{msg}");
    assert!(msg.contains("bad IDX magic"), "{msg}");

    let q = tmp.path().join("labels");
    write(&q, b"PK\x03\x04 not idx");
    assert!(matches!(read_labels(&q), Err(DataError::BadMagic { .. })));
}

#[test]
fn truncated_files_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let (img, lab) = split_bytes(5, 28, 28, 9);

    let p = tmp.path().join("img");
    write(&p, &img[..img.len() - 100]);
    let err = read_images(&p).unwrap_err();
    assert!(matches!(&err, DataError::Truncated { path, .. } if path == &p), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("5 images of 28x28"), "{msg}");
    assert!(msg.contains(&p.display().to_string()), "{msg}");

    // Only part of the header.
    write(&p, &img[..10]);
    assert!(matches!(read_images(&p), Err(DataError::Truncated { .. })));
    write(&p, &img[..2]);
    assert!(matches!(read_images(&p), Err(DataError::Truncated { .. })));

    let q = tmp.path().join("lab");
    write(&q, &lab[..lab.len() - 1]);
    assert!(matches!(read_labels(&q), Err(DataError::Truncated { .. })));

    // A gzip stream cut short.
    let z = tmp.path().join("img.gz");
    let g = gz(&img);
    write(&z, &g[..g.len() / 2]);
    let err = read_images(&z).unwrap_err();
    assert!(matches!(&err, DataError::Truncated { path, .. } if path == &z), "{err:?}");
}

#[test]
fn image_label_count_mismatch_names_both_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (img, _) = split_bytes(6, 28, 28, 3);
    let (_, lab) = split_bytes(5, 28, 28, 3);
    let i = tmp.path().join("train-images-idx3-ubyte");
    let l = tmp.path().join("train-labels-idx1-ubyte");
    write(&i, &img);
    write(&l, &lab);
    match load_split(&i, &l, 10) {
        Err(DataError::CountMismatch { images_path, images, labels_path, labels }) => {
            assert_eq!((images, labels), (6, 5));
            assert_eq!((images_path, labels_path), (i, l));
        }
        other => panic!("expected CountMismatch, got {other:?}"),
    }
}

#[test]
fn labels_out_of_range_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let i = tmp.path().join("i");
    let l = tmp.path().join("l");
    write(&i, &idx_images(2, 1, 1, &[0, 0]));
    write(&l, &idx_labels(&[3, 10]));
    let err = load_split(&i, &l, 10).unwrap_err();
    assert!(err.to_string().contains("label 10 at index 1"), "{err}");
}

#[test]
fn missing_file_names_the_file_and_the_alternatives() {
    let tmp = tempfile::tempdir().unwrap();
    write_idx_dataset(tmp.path(), 3, 3, true, false);
    std::fs::remove_file(tmp.path().join("t10k-labels-idx1-ubyte")).unwrap();
    let err = load_idx_dir(tmp.path(), "mnist").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DataError::MissingFile { .. }));
    assert!(msg.contains("t10k-labels-idx1-ubyte"), "{msg}");
    assert!(msg.contains("t10k-labels.idx1-ubyte.gz"), "{msg}");
}

#[test]
fn load_reads_an_idx_folder_given_as_path() {
    let tmp = tempfile::tempdir().unwrap();
    write_idx_dataset(tmp.path(), 40, 20, false, true);
    let mut req = DataRequest::new("fashion-mnist");
    req.path = Some(tmp.path().to_path_buf());
    req.train_size = Some(25);
    let ds = ablate_data::load(&req).unwrap();
    assert_eq!(ds.name, "fashion-mnist");
    assert_eq!((ds.train.len(), ds.test.len()), (25, 20));
    assert_eq!(ds.train.images.len(), 25 * 784);
}
