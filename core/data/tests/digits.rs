//! The embedded digits set.
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use ablate_data::digits::{digits, digits_from_bytes, DIGITS_CSV_GZ, DIGITS_SHA256};
use ablate_data::{DataError, DataRequest};
use sha2::{Digest, Sha256};

#[test]
fn embedded_asset_is_the_pinned_file() {
    assert_eq!(hex::encode(Sha256::digest(DIGITS_CSV_GZ)), DIGITS_SHA256);
    assert_eq!(DIGITS_CSV_GZ.len(), 57_523);
}

#[test]
fn digits_has_1797_examples_balanced_and_scaled() {
    let ds = digits().unwrap();
    assert_eq!(ds.name, "digits");
    assert_eq!((ds.channels, ds.height, ds.width, ds.num_classes), (1, 8, 8, 10));
    assert_eq!(ds.train.len(), 1297);
    assert_eq!(ds.test.len(), 500);
    assert_eq!(ds.train.images.len(), 1297 * 64);
    assert_eq!(ds.test.images.len(), 500 * 64);
    let mut counts = [0usize; 10];
    for &l in ds.train.labels.iter().chain(&ds.test.labels) {
        counts[l as usize] += 1;
    }
    assert_eq!(counts.iter().sum::<usize>(), 1797);
    // sklearn's documented class counts.
    assert_eq!(counts, [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]);
    let all = ds.train.images.iter().chain(&ds.test.images);
    let (lo, hi) = all.fold((f32::MAX, f32::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    assert_eq!((lo, hi), (0.0, 1.0));
    // Every value is a multiple of 1/16.
    assert!(ds.train.images.iter().all(|&x| (x * 16.0 - (x * 16.0).round()).abs() < 1e-6));
    // Each split has every class.
    for split in [&ds.train, &ds.test] {
        for c in 0..10 {
            assert!(split.labels.contains(&c));
        }
    }
}

#[test]
fn split_is_fixed() {
    let a = digits().unwrap();
    let b = ablate_data::load(&DataRequest::new("digits")).unwrap();
    assert_eq!(a, b);
    // Pinned: the first labels of each split never change.
    assert_eq!(&a.train.labels[..10], &[1i64, 3, 9, 6, 2, 4, 8, 3, 0, 7]);
    assert_eq!(&a.test.labels[..10], &[5i64, 6, 9, 2, 2, 3, 0, 1, 8, 3]);
}

#[test]
fn first_row_matches_the_csv() {
    // Row 0 of digits.csv is a zero whose first pixels are 0,0,5,13,9,1,0,0.
    let text = "0,0,5,13,9,1,0,0,0,0,13,15,10,15,5,0,0,3,15,2,0,11,8,0,0,4,12,0,0,8,8,0,0,5,8,0,0,9,8,0,0,4,11,0,1,12,7,0,0,2,14,5,10,12,0,0,0,0,6,13,10,0,0,0,0\n";
    let mut csv = String::new();
    for _ in 0..4 {
        csv.push_str(text);
    }
    let ds = digits_from_bytes(std::path::Path::new("mem.csv"), csv.as_bytes()).unwrap();
    assert_eq!(ds.train.len() + ds.test.len(), 4);
    assert_eq!(&ds.train.image(0)[..4], &[0.0, 0.0, 5.0 / 16.0, 13.0 / 16.0]);
}

#[test]
fn bad_csv_is_refused_with_the_line() {
    let p = std::path::Path::new("bad.csv");
    let err = digits_from_bytes(p, b"1,2,3\n").unwrap_err();
    assert!(matches!(err, DataError::Format { .. }));
    assert!(err.to_string().contains("line 1"), "{err}");
    let mut row: Vec<String> = (0..64).map(|_| "0".to_string()).collect();
    row.push("10".into());
    let line = row.join(",") + "\n";
    let err = digits_from_bytes(p, format!("{line}{line}").as_bytes()).unwrap_err();
    assert!(err.to_string().contains("label `10`"), "{err}");
}

#[test]
fn digits_can_be_read_from_a_file_path() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("digits.csv.gz");
    std::fs::write(&p, DIGITS_CSV_GZ).unwrap();
    let req = DataRequest { path: Some(p), ..DataRequest::new("digits") };
    assert_eq!(ablate_data::load(&req).unwrap(), digits().unwrap());
}
