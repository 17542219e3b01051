//! The built-in plugins as `ablate run` loads them, for tests that run cells.

use std::path::PathBuf;
use std::process::Command;

use ablate_plugin_host::{Registry, SearchPath};

/// The four built-in plugin libraries, built and copied into a private folder (the target folder
/// also holds test fixtures that the registry would refuse).
pub fn registry() -> (tempfile::TempDir, Registry) {
    // One libtorch thread: these runs are tiny, and on a loaded machine OpenMP workers that spin
    // waiting for each other made them 10x slower.
    tch::set_num_threads(1);
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet"])
        .args(["-p", "ablate-plugin-integrators", "-p", "ablate-plugin-priors"])
        .args(["-p", "ablate-plugin-likelihoods", "-p", "ablate-plugin-noise"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "the built-in plugins do not build");
    let exe = std::env::current_exe().unwrap();
    let target: PathBuf = exe.parent().unwrap().parent().unwrap().to_path_buf();
    let dir = tempfile::tempdir().unwrap();
    for kind in ["integrators", "priors", "likelihoods", "noise"] {
        let name = format!("libablate_plugin_{kind}.so");
        std::fs::copy(target.join(&name), dir.path().join(&name)).unwrap();
    }
    let registry = Registry::load(&SearchPath::only(&[dir.path().to_path_buf()])).unwrap();
    (dir, registry)
}
