//! Make the `ablate` binary start without LD_LIBRARY_PATH and keep CUDA when libtorch has it
//! (see `link_libtorch.rs`, shared with the engine's build script), and record the git revision
//! the binary is built from (`ABLATE_GIT_REVISION`, read by `common::git_revision`): asking git
//! at run time gave the source tree's HEAD of the moment, not the binary's.

mod link_libtorch;

use std::path::Path;
use std::process::Command;

fn main() {
    let _ = link_libtorch::emit();
    record_git_revision();
}

/// `git rev-parse HEAD` of the repository this crate sits in, and a rerun whenever HEAD moves
/// (a commit, checkout or reset rewrites `logs/HEAD`). Nothing is recorded outside a git
/// checkout (a source archive): the binary then reports the revision as unknown.
fn record_git_revision() {
    let Ok(manifest_dir) = std::env::var("CARGO_MANIFEST_DIR") else {
        return;
    };
    let root = Path::new(&manifest_dir).join("../..");
    let Ok(out) = Command::new("git").args(["rev-parse", "HEAD", "--absolute-git-dir"]).current_dir(&root).output()
    else {
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    if let (true, Some(rev), Some(git_dir)) = (out.status.success(), lines.next(), lines.next()) {
        println!("cargo:rustc-env=ABLATE_GIT_REVISION={}", rev.trim());
        for file in ["HEAD", "logs/HEAD", "packed-refs"] {
            println!("cargo:rerun-if-changed={git_dir}/{file}");
        }
    }
}
