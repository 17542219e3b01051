//! Seeded subsets and standardisation.

use ablate_data::subset::{permutation, standardize, subset, TEST_STREAM, TRAIN_STREAM};
use ablate_data::{load, DataRequest, Dataset, Split};

/// A split whose image `i` is filled with the value `i` and whose label is `i`.
fn numbered(n: usize, per: usize) -> Split {
    Split { images: (0..n).flat_map(|i| vec![i as f32; per]).collect(), labels: (0..n as i64).collect() }
}

#[test]
fn permutation_is_a_deterministic_permutation() {
    let p = permutation(1000, 42, 0);
    let mut sorted = p.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..1000).collect::<Vec<_>>());
    assert_eq!(p, permutation(1000, 42, 0));
    assert_ne!(p, permutation(1000, 43, 0));
    assert_ne!(p, permutation(1000, 42, 1));
    assert_ne!(p, (0..1000).collect::<Vec<_>>());
    assert!(permutation(0, 1, 0).is_empty());
    assert_eq!(permutation(1, 1, 0), vec![0]);
}

#[test]
fn permutation_is_pinned() {
    // Guards the documented guarantee: subsets never change across releases or machines.
    assert_eq!(permutation(10, 0, 0), vec![7usize, 8, 9, 0, 1, 5, 4, 6, 3, 2]);
}

#[test]
fn subsets_are_deterministic_sized_and_aligned() {
    let split = numbered(500, 12);
    let a = subset(&split, 100, 7, TRAIN_STREAM, "train").unwrap();
    let b = subset(&split, 100, 7, TRAIN_STREAM, "train").unwrap();
    let c = subset(&split, 100, 8, TRAIN_STREAM, "train").unwrap();
    assert_eq!(a, b);
    assert_ne!(a.labels, c.labels);
    assert_eq!(a.len(), 100);
    assert_eq!(a.images.len(), 100 * 12);
    for i in 0..a.len() {
        // Image i still carries the label it had.
        assert!(a.image(i).iter().all(|&v| v == a.labels[i] as f32));
    }
    // Original order is kept, no duplicates.
    assert!(a.labels.windows(2).all(|w| w[0] < w[1]));
    // Nested: for one seed a smaller subset lies inside a larger one.
    let small = subset(&split, 40, 7, TRAIN_STREAM, "train").unwrap();
    assert!(small.labels.iter().all(|l| a.labels.contains(l)));
    // Train and test streams differ.
    let t = subset(&split, 100, 7, TEST_STREAM, "test").unwrap();
    assert_ne!(a.labels, t.labels);
    // The full size is the split itself; too large is an error.
    assert_eq!(subset(&split, 500, 7, 0, "train").unwrap(), split);
    let err = subset(&split, 501, 7, 0, "mnist training").unwrap_err();
    assert!(err.to_string().contains("at most 500"), "{err}");
}

#[test]
fn load_subsets_by_seed() {
    let req = |seed| DataRequest {
        train_size: Some(300),
        test_size: Some(50),
        subset_seed: seed,
        ..DataRequest::new("digits")
    };
    let a = load(&req(1)).unwrap();
    let b = load(&req(1)).unwrap();
    let c = load(&req(2)).unwrap();
    assert_eq!(a, b);
    assert_ne!(a.train, c.train);
    assert_ne!(a.test, c.test);
    assert_eq!((a.train.len(), a.test.len()), (300, 50));
    assert_eq!(a.train.images.len(), 300 * 64);
    // Labels stay with their images: every subset image appears in the full set with that label.
    let full = load(&DataRequest::new("digits")).unwrap();
    for i in (0..a.train.len()).step_by(37) {
        let img = a.train.image(i);
        assert!((0..full.train.len()).any(|j| full.train.image(j) == img && full.train.labels[j] == a.train.labels[i]));
    }
    let err = load(&DataRequest { train_size: Some(0), ..DataRequest::new("digits") }).unwrap_err();
    assert!(err.to_string().contains("train_size is 0"), "{err}");
    let err = load(&DataRequest { test_size: Some(501), ..DataRequest::new("digits") }).unwrap_err();
    assert!(err.to_string().contains("at most 500"), "{err}");
}

#[test]
fn standardize_uses_training_statistics_for_both_splits() {
    let mut ds = Dataset {
        name: "toy".into(),
        // Two images, two channels of 2 pixels: channel 0 = [0,2],[4,6]; channel 1 = 5 always.
        train: Split { images: vec![0.0, 2.0, 5.0, 5.0, 4.0, 6.0, 5.0, 5.0], labels: vec![0, 1] },
        test: Split { images: vec![3.0, 3.0, 7.0, 5.0], labels: vec![1] },
        num_classes: 2,
        channels: 2,
        height: 1,
        width: 2,
    };
    let stats = standardize(&mut ds);
    assert_eq!(stats.mean, vec![3.0, 5.0]);
    assert!((stats.std[0] - 5f32.sqrt()).abs() < 1e-6);
    assert_eq!(stats.std[1], 1.0, "a constant channel keeps std 1");
    let s = 5f32.sqrt();
    let want_train = [-3.0 / s, -1.0 / s, 0.0, 0.0, 1.0 / s, 3.0 / s, 0.0, 0.0];
    for (x, w) in ds.train.images.iter().zip(want_train) {
        assert!((x - w).abs() < 1e-6);
    }
    let want_test = [0.0, 0.0, 2.0, 0.0];
    for (x, w) in ds.test.images.iter().zip(want_test) {
        assert!((x - w).abs() < 1e-6);
    }
}

#[test]
fn normalize_in_load_standardises_digits() {
    let ds = load(&DataRequest { normalize: true, ..DataRequest::new("digits") }).unwrap();
    let n = ds.train.images.len() as f64;
    let mean = ds.train.images.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let var = ds.train.images.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>() / n;
    assert!(mean.abs() < 1e-5, "{mean}");
    assert!((var - 1.0).abs() < 1e-4, "{var}");
}
