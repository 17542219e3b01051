//! What every CLI test binary needs: the `ablate` binary under test, started without the
//! caller's logging, plugin-path or crash-hook variables, and the built-in plugins built next to it.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;

pub const BIN: &str = env!("CARGO_BIN_EXE_ablate");

/// `ablate ARGS` in `cwd`, with a clean environment for the variables that change its output.
pub fn command(args: &[&str], cwd: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .env_remove("RUST_BACKTRACE")
        .env_remove("ABLATE_PLUGIN_PATH")
        .env_remove("ABLATE_WORKER_CRASH_FOR_TESTS")
        .env_remove("SLURM_CPUS_PER_TASK");
    c
}

/// Run `ablate ARGS` in `cwd` to completion.
pub fn ablate(args: &[&str], cwd: &Path) -> Output {
    command(args, cwd).output().expect("start ablate")
}

/// Build the built-in plugins (next to the binary) once per test process; whether that worked.
pub fn plugins_built() -> bool {
    static BUILT: OnceLock<bool> = OnceLock::new();
    *BUILT.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "ablate-plugin-integrators", "-p", "ablate-plugin-priors"])
            .args(["-p", "ablate-plugin-likelihoods", "-p", "ablate-plugin-noise"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status();
        matches!(status, Ok(s) if s.success())
    })
}

/// Like [`plugins_built`], failing the test when the plugins do not build.
pub fn require_plugins() {
    assert!(plugins_built(), "the built-in plugins do not build");
}
