//! The templates of `ablate plugins new` (`plugins/templates/`) produce crates that build, pass
//! their own tests and pass `ablate plugins check`: every kind is generated, tested with cargo
//! and checked. The generated crates share one target folder under the workspace's
//! `target/tmp/`, kept between runs (the first run compiles their dependencies once).
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{ablate, plugins_built};

fn cargo(args: &[&str], crate_dir: &Path, target: &Path) {
    let out = Command::new(env!("CARGO"))
        .args(args)
        .env("CARGO_TARGET_DIR", target)
        .env_remove("RUSTFLAGS")
        .current_dir(crate_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo {args:?} in {}:\n{}\n{}",
        crate_dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn plugins_new_crates_build_test_and_pass_the_check() {
    assert!(plugins_built(), "the built-in plugins do not build");
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let target = tmp.join("plugin-templates-target");
    let dir = tempfile::tempdir_in(tmp).unwrap();
    for kind in ["prior", "integrator", "likelihood", "noise"] {
        let name = format!("tmpl-{kind}");
        let o = ablate(&["plugins", "new", &name, "--kind", kind, "--dir", dir.path().to_str().unwrap()], dir.path());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let root = dir.path().join(&name);
        cargo(&["test", "--quiet"], &root, &target);
        cargo(&["build", "--quiet"], &root, &target);
        let lib = target.join("debug").join(format!("libtmpl_{kind}.so"));
        assert!(lib.is_file(), "{} missing", lib.display());
        let o = ablate(&["plugins", "check", lib.to_str().unwrap()], dir.path());
        let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        assert!(o.status.success(), "plugins check {kind}:\n{out}\n{err}");
        assert!(out.contains(&name), "the check names the factory `{name}`:\n{out}");
    }
}
