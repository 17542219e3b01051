//! Seeded subsets and standardisation.
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

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

#[test]
fn first_mode_takes_the_first_n_examples_of_the_file() {
    let split = numbered(500, 12);
    let a = ablate_data::subset::first(&split, 37, "train").unwrap();
    assert_eq!(a.labels, (0..37).collect::<Vec<i64>>());
    assert_eq!(a.images, split.images[..37 * 12].to_vec());
    let err = ablate_data::subset::first(&split, 501, "mnist training").unwrap_err();
    assert!(err.to_string().contains("at most 500"), "{err}");

    // Through `load`: the first n of each split of the file, whatever the seed.
    let full = load(&DataRequest::new("digits")).unwrap();
    let req = |seed| DataRequest {
        train_size: Some(300),
        test_size: Some(50),
        subset_seed: seed,
        subset: ablate_data::subset::SubsetMode::First,
        ..DataRequest::new("digits")
    };
    let f = load(&req(1)).unwrap();
    assert_eq!(f, load(&req(99)).unwrap());
    assert_eq!(f.train.labels, full.train.labels[..300].to_vec());
    assert_eq!(f.train.images, full.train.images[..300 * 64].to_vec());
    assert_eq!(f.test.labels, full.test.labels[..50].to_vec());
    assert_eq!(f.test.images, full.test.images[..50 * 64].to_vec());
}

#[test]
fn random_mode_is_the_default_and_unchanged() {
    // The default mode is `random` and gives the seeded subset, byte for byte.
    assert_eq!(DataRequest::new("digits").subset, ablate_data::subset::SubsetMode::Random);
    let full = load(&DataRequest::new("digits")).unwrap();
    let r = load(&DataRequest { train_size: Some(300), subset_seed: 124, ..DataRequest::new("digits") }).unwrap();
    assert_eq!(r.train, subset(&full.train, 300, 124, TRAIN_STREAM, "train").unwrap());
    // Pinned: which examples seed 124 keeps (values from the subset code as it was before `data.subset`
    // existed; `random` must keep giving these bytes).
    let keep = {
        let mut p = permutation(full.train.len(), 124, TRAIN_STREAM);
        p.truncate(300);
        p.sort_unstable();
        p
    };
    assert_eq!(r.train.labels, keep.iter().map(|&i| full.train.labels[i]).collect::<Vec<_>>());
    let checksum: u64 = keep.iter().map(|&i| i as u64).sum();
    let first_indices: Vec<usize> = keep[..8].to_vec();
    assert_eq!((checksum, first_indices), (194_014, vec![2, 3, 9, 11, 13, 14, 18, 21]));
}

#[test]
fn label_noise_replaces_the_stated_fraction_deterministically() {
    use ablate_data::subset::label_noise;
    let n = 20_000usize;
    let classes = 10usize;
    let clean = Split { images: vec![0.0; n], labels: (0..n as i64).map(|i| i % classes as i64).collect() };
    for fraction in [0.0, 0.1, 0.3, 1.0] {
        let mut a = clean.clone();
        let count = label_noise(&mut a, fraction, classes, 5).unwrap();
        assert_eq!(count, (fraction * n as f64).round() as usize);
        let mut b = clean.clone();
        label_noise(&mut b, fraction, classes, 5).unwrap();
        assert_eq!(a, b, "same seed, same labels");
        assert_eq!(a.images, clean.images);
        assert!(a.labels.iter().all(|&l| (0..classes as i64).contains(&l)));
        // A replaced label is uniform over all classes (it may equal the true one), so the
        // fraction changed is fraction * (1 - 1/C); binomial SE over the `count` replacements.
        let changed = a.labels.iter().zip(&clean.labels).filter(|(x, y)| x != y).count() as f64;
        let p = 1.0 - 1.0 / classes as f64;
        let expected = count as f64 * p;
        let se = (count as f64 * p * (1.0 - p)).sqrt();
        assert!((changed - expected).abs() <= 4.0 * se + 1e-9, "fraction {fraction}: {changed} vs {expected} ± {se}");
        if fraction > 0.0 {
            // The new labels are uniform: each class gets about count/C of the replacements.
            let mut hist = vec![0usize; classes];
            let mut c = clean.clone();
            // With labels all 0 the replacements are visible one by one.
            c.labels.iter_mut().for_each(|l| *l = 0);
            label_noise(&mut c, fraction, classes, 5).unwrap();
            c.labels.iter().for_each(|&l| hist[l as usize] += 1);
            let per = count as f64 / classes as f64;
            let se = (count as f64 * (1.0 / classes as f64) * (1.0 - 1.0 / classes as f64)).sqrt();
            for (k, &h) in hist.iter().enumerate().skip(1) {
                assert!((h as f64 - per).abs() <= 4.0 * se, "class {k}: {h} vs {per} ± {se}");
            }
        }
    }
    let mut a = clean.clone();
    let mut b = clean.clone();
    label_noise(&mut a, 0.3, classes, 5).unwrap();
    label_noise(&mut b, 0.3, classes, 6).unwrap();
    assert_ne!(a.labels, b.labels, "another seed, other labels");
    for bad in [-0.1, 1.5, f64::NAN] {
        let err = label_noise(&mut a, bad, classes, 5).unwrap_err();
        assert!(err.to_string().contains("[0, 1]"), "{err}");
    }
}
