//! The CIFAR-10 binary reader, on batch files written by the test.
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod common;

use ablate_data::cifar::{load_cifar10_dir, parse_batch, RECORD};
use ablate_data::{DataError, DataRequest};
use common::*;

#[test]
fn parses_a_written_fixture() {
    let tmp = tempfile::tempdir().unwrap();
    let (train, test) = write_cifar(tmp.path(), 3);
    let ds = load_cifar10_dir(tmp.path()).unwrap();
    assert_eq!(ds.name, "cifar10");
    assert_eq!((ds.channels, ds.height, ds.width, ds.num_classes), (3, 32, 32, 10));
    assert_eq!(ds.train.len(), 15);
    assert_eq!(ds.test.len(), 3);
    assert_eq!(ds.train.images.len(), 15 * 3072);
    for (split, records) in [(&ds.train, &train), (&ds.test, &test)] {
        for (i, rec) in records.iter().enumerate() {
            assert_eq!(split.labels[i], i64::from(rec[0]));
            let img = split.image(i);
            // Channel-major: the red plane first, then green, then blue.
            for (k, &b) in rec[1..].iter().enumerate() {
                assert_eq!(img[k], f32::from(b) / 255.0, "image {i} value {k}");
            }
        }
    }
    // Batches are concatenated in order 1..5.
    assert_eq!(ds.train.labels[3], i64::from(train[3][0]));
}

#[test]
fn finds_the_official_subfolder_and_loads_through_load() {
    let tmp = tempfile::tempdir().unwrap();
    write_cifar(&tmp.path().join("cifar-10-batches-bin"), 2);
    let mut req = DataRequest::new("cifar10");
    req.path = Some(tmp.path().to_path_buf());
    req.normalize = true;
    let ds = ablate_data::load(&req).unwrap();
    assert_eq!((ds.train.len(), ds.test.len()), (10, 2));
    // Standardised per channel with the training statistics.
    let plane = 32 * 32;
    for ch in 0..3 {
        let vals: Vec<f64> = (0..ds.train.len())
            .flat_map(|i| ds.train.image(i)[ch * plane..(ch + 1) * plane].to_vec())
            .map(f64::from)
            .collect();
        let mean = vals.iter().sum::<f64>() / vals.len() as f64;
        let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vals.len() as f64;
        assert!(mean.abs() < 1e-4, "channel {ch} mean {mean}");
        assert!((var.sqrt() - 1.0).abs() < 1e-3, "channel {ch} std {}", var.sqrt());
    }
}

#[test]
fn missing_batch_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    write_cifar(tmp.path(), 1);
    std::fs::remove_file(tmp.path().join("data_batch_4.bin")).unwrap();
    let err = load_cifar10_dir(tmp.path()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DataError::MissingFile { .. }), "{msg}");
    assert!(msg.contains("data_batch_4.bin"), "{msg}");
    assert!(msg.contains("cs.toronto.edu"), "{msg}");
}

#[test]
fn truncated_batch_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    write_cifar(tmp.path(), 2);
    let p = tmp.path().join("test_batch.bin");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 7]).unwrap();
    let err = load_cifar10_dir(tmp.path()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(&err, DataError::Truncated { path, .. } if path == &p), "{msg}");
    assert!(msg.contains("3073-byte record"), "{msg}");

    std::fs::write(&p, b"").unwrap();
    assert!(matches!(load_cifar10_dir(tmp.path()), Err(DataError::Truncated { .. })));
}

#[test]
fn bad_label_is_refused() {
    let mut rec = cifar_record(3, 1);
    rec.extend(cifar_record(11, 2));
    assert_eq!(rec.len(), 2 * RECORD);
    let err = parse_batch(std::path::Path::new("x.bin"), &rec).unwrap_err();
    assert!(err.to_string().contains("record 1 has label 11"), "{err}");
}
