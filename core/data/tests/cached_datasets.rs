//! The real MNIST and Fashion-MNIST, loaded from the cache when they have been fetched
//! (`ablate data fetch mnist`); skipped with a message otherwise. No network.
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use ablate_data::fetch::{dataset_dir, fashion_mnist_spec, is_complete, mnist_spec, FetchSpec};
use ablate_data::{load, DataRequest, Dataset};

fn cached(spec: &FetchSpec) -> bool {
    match dataset_dir(&spec.name) {
        Ok(dir) if is_complete(&dir, spec) => true,
        Ok(dir) => {
            eprintln!(
                "skipped: {} is not cached in {} (run `ablate data fetch {}`)",
                spec.name,
                dir.display(),
                spec.name
            );
            false
        }
        Err(e) => {
            eprintln!("skipped: {e}");
            false
        }
    }
}

fn class_counts(labels: &[i64]) -> Vec<usize> {
    let mut c = vec![0; 10];
    for &l in labels {
        c[l as usize] += 1;
    }
    c
}

fn mean_std(ds: &Dataset) -> (f64, f64) {
    let n = ds.train.images.len() as f64;
    let (s, sq) = ds
        .train
        .images
        .iter()
        .fold((0.0f64, 0.0f64), |(s, sq), &x| (s + f64::from(x), sq + f64::from(x) * f64::from(x)));
    let m = s / n;
    (m, (sq / n - m * m).sqrt())
}

#[test]
fn mnist_from_cache() {
    if !cached(&mnist_spec()) {
        return;
    }
    let ds = load(&DataRequest::new("mnist")).unwrap();
    assert_eq!((ds.train.len(), ds.test.len()), (60_000, 10_000));
    assert_eq!((ds.channels, ds.height, ds.width), (1, 28, 28));
    assert_eq!(&ds.train.labels[..10], &[5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
    assert_eq!(class_counts(&ds.train.labels), [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]);
    assert_eq!(class_counts(&ds.test.labels), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]);
    let (m, s) = mean_std(&ds);
    assert!((m - 0.1307).abs() < 1e-3 && (s - 0.3081).abs() < 1e-3, "{m} {s}");

    let sub = load(&DataRequest {
        train_size: Some(5000),
        test_size: Some(1000),
        subset_seed: 3,
        normalize: true,
        ..DataRequest::new("mnist")
    })
    .unwrap();
    assert_eq!((sub.train.len(), sub.test.len()), (5000, 1000));
}

#[test]
fn fashion_mnist_from_cache() {
    if !cached(&fashion_mnist_spec()) {
        return;
    }
    let ds = load(&DataRequest::new("fashion-mnist")).unwrap();
    assert_eq!((ds.train.len(), ds.test.len()), (60_000, 10_000));
    assert_eq!(&ds.train.labels[..10], &[9, 0, 0, 3, 0, 2, 7, 2, 5, 5]);
    assert_eq!(class_counts(&ds.train.labels), vec![6000; 10]);
    assert_eq!(class_counts(&ds.test.labels), vec![1000; 10]);
    let (m, s) = mean_std(&ds);
    assert!((m - 0.2860).abs() < 1e-3 && (s - 0.3530).abs() < 1e-3, "{m} {s}");
}
