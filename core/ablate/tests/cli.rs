//! The `ablate` binary, driven as a user would, on tiny inputs.
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

mod common;
use common::{ablate, plugins_built, BIN};

/// Whether libtorch sees a GPU here (as `ablate doctor` says).
fn has_cuda() -> bool {
    let o = Command::new(BIN).arg("doctor").output().expect("start ablate");
    String::from_utf8_lossy(&o.stdout).contains("cuda: true")
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// `ablate` itself did not panic (a plugin's contained panic, reported on stderr as an error
/// line, is fine): no "thread '...' panicked at" line and no backtrace.
fn no_panic(o: &Output) {
    let (out, err) = text(o);
    let own_panic = err.lines().any(|l| l.starts_with("thread '") && l.contains(" panicked at"));
    assert!(!own_panic && !err.contains("stack backtrace"), "panic:\n{out}\n{err}");
}

fn tiny_grid(dir: &Path, name: &str, epochs: usize, temperatures: &[f64]) -> PathBuf {
    let grid = serde_json::json!({
        "name": name,
        "base": {
            "data": {"dataset": "digits", "train_size": 300, "test_size": 200},
            "model": {"kind": "mlp", "hidden": [32]},
            "sampler": {"epochs": epochs, "cycle_length": 1, "cycle_start_sampling": 2}
        },
        "axes": [{"path": "temperature", "values": temperatures}]
    });
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&grid).unwrap()).unwrap();
    path
}

fn statuses(cells: &Path) -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(cells).unwrap() {
        let p = e.unwrap().path();
        let s = std::fs::read_to_string(p.join("status.json")).map(|t| serde_json::from_str(&t).unwrap());
        out.push((p.file_name().unwrap().to_string_lossy().into_owned(), s.unwrap_or(serde_json::Value::Null)));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn help_of_every_subcommand_has_an_example() {
    let dir = tempfile::tempdir().unwrap();
    let cmds: &[&[&str]] = &[
        &["run"],
        &["report"],
        &["grid", "expand"],
        &["grid", "check"],
        &["grid", "schema"],
        &["slurm"],
        &["plugins", "list"],
        &["plugins", "show"],
        &["plugins", "check"],
        &["plugins", "new"],
        &["data", "fetch"],
        &["data", "list"],
        &["doctor"],
    ];
    for c in cmds {
        let mut args = c.to_vec();
        args.push("--help");
        let o = ablate(&args, dir.path());
        let (out, _) = text(&o);
        assert!(o.status.success(), "{c:?} --help failed");
        assert!(out.contains("Example"), "{c:?} --help has no example:\n{out}");
        assert!(out.contains("ablate "), "{c:?}");
    }
    for c in [&["--help"][..], &["grid", "--help"], &["plugins", "--help"], &["data", "--help"]] {
        assert!(ablate(c, dir.path()).status.success(), "{c:?}");
    }
}

#[test]
fn cuda_on_a_machine_without_gpu_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let grid = tiny_grid(dir.path(), "cuda", 2, &[1.0]);
    let o = ablate(&["run", grid.to_str().unwrap(), "--device", "cuda"], dir.path());
    no_panic(&o);
    let (_, err) = text(&o);
    if has_cuda() {
        return; // a GPU machine: nothing to check here
    }
    assert!(!o.status.success());
    assert!(err.contains("--device cuda") && err.contains("--device cpu"), "{err}");
    assert!(!dir.path().join("runs").exists(), "nothing may be created");

    let o = ablate(&["run", grid.to_str().unwrap(), "--device", "tpu"], dir.path());
    no_panic(&o);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("unknown device"), "{}", text(&o).1);
}

#[test]
fn malformed_grid_lists_every_problem_with_paths() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.json");
    std::fs::write(
        &path,
        r#"{"name": "bad", "base": {"data": {"dataset": "digits"}, "model": {"kind": "mlp", "hidden": [8]},
            "sampler": {"bogus": 1}},
            "axes": [{"path": "temperature", "values": [1.0, "x"]}]}"#,
    )
    .unwrap();
    for cmd in [&["run"][..], &["grid", "check"], &["grid", "expand"]] {
        let mut args = cmd.to_vec();
        args.push(path.to_str().unwrap());
        let o = ablate(&args, dir.path());
        no_panic(&o);
        let (_, err) = text(&o);
        assert!(!o.status.success(), "{cmd:?}");
        assert!(err.contains("2 problems"), "{cmd:?}: {err}");
        assert!(err.contains("base.sampler.bogus"), "{err}");
        assert!(err.contains("axes[0].values[1]"), "{err}");
        assert!(err.contains("bad.json"), "{err}");
    }
    std::fs::write(&path, "{ not json").unwrap();
    let o = ablate(&["grid", "check", path.to_str().unwrap()], dir.path());
    no_panic(&o);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("line 1"), "{}", text(&o).1);
    let o = ablate(&["run", "does-not-exist.json"], dir.path());
    no_panic(&o);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("cannot read"), "{}", text(&o).1);
}

#[test]
fn plugin_problems_cite_cells_and_grid_source() {
    if !plugins_built() {
        panic!("the built-in plugins do not build");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plug.json");
    std::fs::write(
        &path,
        r#"{"name": "plug", "base": {"data": {"dataset": "digits"}, "model": {"kind": "mlp", "hidden": [8]},
            "noise": {"name": "minibach"}, "prior": {"name": "gaussian"}},
            "axes": [{"path": "prior.params.scale", "values": [1.0, -3.0]}]}"#,
    )
    .unwrap();
    let o = ablate(&["run", path.to_str().unwrap()], dir.path());
    no_panic(&o);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("cells[0].noise") && err.contains("minibach"), "{err}");
    // Not found: the near miss, the folders searched and how to add one.
    assert!(err.contains("did you mean `minibatch`?") && err.contains("(built-in)"), "{err}");
    assert!(err.contains("--plugins DIR") && err.contains("ABLATE_PLUGIN_PATH"), "{err}");
    assert!(err.contains("cells[1].prior") && err.contains("axes[0].values[1]"), "{err}");
    assert!(err.contains("plug.json"), "{err}");
    assert!(!dir.path().join("runs").exists(), "nothing may run");

    // A noise plugin whose `plan` panics (a call that cannot return an error) is refused by the
    // grid check, naming the call; the panic's own message reaches stderr.
    fault_fixtures(dir.path());
    std::fs::write(
        &path,
        r#"{"name": "plug", "base": {"data": {"dataset": "digits"}, "model": {"kind": "mlp", "hidden": [8]},
            "noise": {"name": "panicking-plan"}}, "axes": [{"path": "temperature", "values": [1.0]}]}"#,
    )
    .unwrap();
    let o = ablate(&["grid", "check", path.to_str().unwrap(), "--plugins", "plugins"], dir.path());
    no_panic(&o);
    let (_, err) = text(&o);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("noise `panicking-plan` panicked in `plan`") && err.contains("deliberate panic in plan"),
        "{err}"
    );
}

#[test]
fn grid_expand_and_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.json");
    std::fs::write(
        &path,
        r#"{"name": "g", "base": {"data": {"dataset": "digits"}, "model": {"kind": "mlp", "hidden": [8]}},
            "axes": [{"path": "temperature", "values": [1.0, 0.1]}, {"path": "seed", "values": [1, 2, 3]}]}"#,
    )
    .unwrap();
    let o = ablate(&["grid", "expand", path.to_str().unwrap()], dir.path());
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].contains("6 cells"), "{out}");
    assert!(lines[1].contains("id") && lines[1].contains("temperature") && lines[1].contains("seed"), "{out}");
    assert_eq!(lines.len(), 8, "{out}");
    let grid = ablate_grid::Grid::from_path(&path).unwrap();
    for c in &grid.cells {
        assert!(out.contains(&c.id), "{out}");
    }
    let o = ablate(&["grid", "expand", "--json", path.to_str().unwrap()], dir.path());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 6);

    let o = ablate(&["grid", "schema"], dir.path());
    let schema: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(schema["title"], "ablate grid file");
}

#[test]
fn slurm_script_is_valid_bash_with_the_shard_count() {
    let dir = tempfile::tempdir().unwrap();
    let grid = tiny_grid(dir.path(), "sl", 2, &[1.0, 0.5, 0.1]);
    let o = ablate(
        &["slurm", grid.to_str().unwrap(), "--shards", "5", "--partition", "gpu", "--gpus", "1", "--time", "01:00:00"],
        dir.path(),
    );
    let (script, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(script.contains("#SBATCH --array=0-4"), "{script}");
    assert!(script.contains("--shard \"$SLURM_ARRAY_TASK_ID/5\""), "{script}");
    assert!(script.contains("--no-report"), "{script}");
    assert!(script.contains("ablate report"), "{script}");
    assert!(script.contains("#SBATCH --partition=gpu") && script.contains("#SBATCH --time=01:00:00"), "{script}");
    let file = dir.path().join("job.sbatch");
    std::fs::write(&file, &script).unwrap();
    let bash = Command::new("bash").arg("-n").arg(&file).status().unwrap();
    assert!(bash.success(), "bash -n rejects the script:\n{script}");

    let out = dir.path().join("job2.sbatch");
    let o = ablate(&["slurm", grid.to_str().unwrap(), "--shards", "2", "--output", out.to_str().unwrap()], dir.path());
    assert!(o.status.success());
    assert!(std::fs::read_to_string(&out).unwrap().contains("--array=0-1"));

    let o = ablate(&["slurm", grid.to_str().unwrap(), "--shards", "2", "--time", "soon"], dir.path());
    no_panic(&o);
    assert!(!o.status.success() && text(&o).1.contains("--time"));
}

#[test]
fn doctor_reports_libtorch() {
    let dir = tempfile::tempdir().unwrap();
    let o = ablate(&["doctor"], dir.path());
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("2.11.0"), "{out}");
    assert!(out.contains("cuda: "), "{out}");
    if !has_cuda() {
        assert!(out.contains("cuda: false"), "{out}");
    }
    // The revision is the one the binary was built from (recorded at build time; the test runs
    // from a temporary folder, outside any repository).
    // (The build script gives this test crate the same revision as the binary.)
    if let Some(rev) = option_env!("ABLATE_GIT_REVISION") {
        assert!(out.contains(&format!("git revision      {rev}")), "{out}");
        assert_eq!(rev.len(), 40, "{rev}");
    }
}

#[test]
fn plugins_list_show_check() {
    if !plugins_built() {
        panic!("the built-in plugins do not build");
    }
    let dir = tempfile::tempdir().unwrap();
    let o = ablate(&["plugins", "list"], dir.path());
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    for name in ["gaussian", "sym-euler", "categorical", "minibatch"] {
        assert!(out.contains(name), "{out}");
    }
    let o = ablate(&["plugins", "show", "gaussian"], dir.path());
    let (out, _) = text(&o);
    assert!(o.status.success() && out.contains("scale") && out.contains("default"), "{out}");
    let o = ablate(&["plugins", "show", "nope"], dir.path());
    no_panic(&o);
    assert!(!o.status.success());
    let o = ablate(&["plugins", "show", "gausian"], dir.path());
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("did you mean `gaussian`?") && err.contains("searched") && err.contains("--plugins"), "{err}");

    let target = Path::new(BIN).parent().unwrap();
    let so = target.join("libablate_plugin_priors.so");
    let o = ablate(&["plugins", "check", so.to_str().unwrap()], dir.path());
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("prior `gaussian`") && out.contains("ok    grad_log_prob vs finite differences"), "{out}");
    assert!(!out.contains("FAIL"), "{out}");
    let o = ablate(&["plugins", "check", "/etc/hostname"], dir.path());
    no_panic(&o);
    assert!(!o.status.success());
}

#[test]
fn plugins_new_writes_a_standalone_crate() {
    let dir = tempfile::tempdir().unwrap();
    // A built-in name is refused (the two could not be loaded side by side); nothing is written.
    let o =
        ablate(&["plugins", "new", "gaussian", "--kind", "prior", "--dir", dir.path().to_str().unwrap()], dir.path());
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    assert!(text(&o).1.contains("a prior named `gaussian` is already built in"), "{:?}", text(&o));
    assert!(!dir.path().join("gaussian").exists());
    for kind in ["prior", "likelihood", "integrator", "noise"] {
        let name = format!("my-{kind}");
        let o = ablate(&["plugins", "new", &name, "--kind", kind, "--dir", dir.path().to_str().unwrap()], dir.path());
        assert!(o.status.success(), "{}", text(&o).1);
        let root = dir.path().join(&name);
        let cargo = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        assert!(cargo.contains("[workspace]") && cargo.contains("cdylib") && cargo.contains("plugins/sdk"), "{cargo}");
        let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
        assert!(lib.contains("export_plugin!") && lib.contains(&format!("\"{name}\"")), "{lib}");
        let tests = std::fs::read_to_string(root.join("tests/conformance.rs")).unwrap();
        // The tests call the plugin through the conformance suite, not a hand formula.
        assert!(tests.contains("testkit::suite") && tests.contains("assert_all_pass"), "{tests}");
        if kind == "prior" {
            assert!(lib.contains("fn grad_log_prob"), "{lib}");
            assert!(tests.contains("prior_grad_log_prob"), "{tests}");
        }
        assert!(root.join("README.md").is_file());
    }
    let o =
        ablate(&["plugins", "new", "my-prior", "--kind", "prior", "--dir", dir.path().to_str().unwrap()], dir.path());
    assert!(!o.status.success(), "existing folder must not be overwritten");
    let o = ablate(&["plugins", "new", "Bad Name", "--kind", "prior"], dir.path());
    no_panic(&o);
    assert!(!o.status.success());
    // A binary used away from its checkout names the SDK folder it needs and how to give it.
    let o =
        ablate(&["plugins", "new", "elsewhere", "--kind", "prior", "--sdk", "/nonexistent/plugins/sdk"], dir.path());
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    assert!(text(&o).1.contains("the ablate SDK sources are not at") && text(&o).1.contains("--sdk"), "{:?}", text(&o));
    assert!(!dir.path().join("elsewhere").exists());
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/sdk");
    let o = ablate(
        &[
            "plugins",
            "new",
            "given-sdk",
            "--kind",
            "noise",
            "--sdk",
            sdk.to_str().unwrap(),
            "--dir",
            dir.path().to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{:?}", text(&o));
    let cargo = std::fs::read_to_string(dir.path().join("given-sdk/Cargo.toml")).unwrap();
    let canonical = sdk.canonicalize().unwrap();
    assert!(cargo.contains(&format!("path = \"{}\"", canonical.display())), "{cargo}");
}

/// The fault fixtures' library, copied into a private plugin folder (built once per process).
fn fault_fixtures(dir: &Path) -> PathBuf {
    static BUILT: OnceLock<bool> = OnceLock::new();
    let ok = *BUILT.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "ablate-fault-fixtures", "-p", "logistic-prior-example"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status();
        matches!(status, Ok(s) if s.success())
    });
    assert!(ok, "the fault fixtures do not build");
    let folder = dir.join("plugins");
    std::fs::create_dir_all(&folder).unwrap();
    let so = folder.join("libfault_fixtures.so");
    std::fs::copy(Path::new(BIN).parent().unwrap().join("libfault_fixtures.so"), &so).unwrap();
    so
}

#[test]
fn plugins_check_fails_each_fault_fixture_on_the_check_its_fault_breaks() {
    let dir = tempfile::tempdir().unwrap();
    let so = fault_fixtures(dir.path());
    let o = ablate(&["plugins", "check", so.to_str().unwrap()], dir.path());
    no_panic(&o);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    // The lines of one factor: from its header to the next header.
    let section = |name: &str| -> String {
        let start = out.find(&format!("prior `{name}`")).unwrap_or_else(|| panic!("{name} missing:\n{out}"));
        let rest = &out[start..];
        let end = rest[1..].find("\nprior `").map_or(rest.len(), |e| e + 1);
        rest[..end].to_owned()
    };
    for (name, check, detail) in [
        ("not-a-number", "FAIL  log_prob finite", "NaN"),
        ("wrong-gradient", "FAIL  grad_log_prob vs finite differences", "finite differences"),
        ("wrong-precision", "FAIL  isotropic precision vs finite differences", "declare a precision only"),
        (
            "host-op-overflow",
            "FAIL  grad_log_prob vs finite differences",
            "host op `clamp`: max = 1.7976931348623157e308 does not fit in float32",
        ),
        ("panicking", "FAIL  log_prob finite", "panicked"),
        ("nan-draw", "FAIL  samples follow log_prob", "sample returned NaN"),
    ] {
        let s = section(name);
        assert!(s.contains(check) && s.contains(detail), "{name}: expected `{check}` with `{detail}`:\n{s}");
        assert_eq!(s.matches("FAIL").count(), 1, "{name} fails one check:\n{s}");
    }
    // A noise model whose plan panics fails the plan check, with the panic on stderr.
    let start = out.find("noise `panicking-plan`").unwrap_or_else(|| panic!("panicking-plan missing:\n{out}"));
    let s = &out[start..];
    assert!(s.contains("FAIL  plan: plan panicked"), "{s}");
    assert!(
        err.contains("deliberate panic in plan") && err.contains("in `plan`, which cannot return an error"),
        "{err}"
    );
    // A likelihood whose NLL ignores the logits fails exactly that check.
    let start = out.find("likelihood `detached-nll`").unwrap_or_else(|| panic!("detached-nll missing:\n{out}"));
    let rest = &out[start..];
    let end = ["\nlikelihood `", "\nintegrator `", "\nnoise `"].iter().filter_map(|h| rest[1..].find(h)).min();
    let s = &rest[..end.map_or(rest.len(), |e| e + 1)];
    assert!(s.contains("FAIL  nll depends on the logits") && s.matches("FAIL").count() == 1, "{s}");
    // Integrators whose reports no chain can make.
    let start = out.find("integrator `impossible-acceptance`").unwrap();
    assert!(out[start..].contains("FAIL  Gaussian target T=1: step 1: acceptance 7.5 is outside [0, 1]"), "{out}");
    // A batchable integrator whose noise ignores the per-chain temperatures passes alone and
    // fails batched, at the colder chain.
    let start = out.find("integrator `hottest-temperature`").unwrap();
    let rest = &out[start + 1..];
    let s = &out[start
        ..start + 1 + ["\nintegrator `", "\nnoise `"].iter().filter_map(|h| rest.find(h)).min().unwrap_or(rest.len())];
    assert!(s.contains("ok    Gaussian target T=0.1") && s.contains("FAIL  batched chains at T=1 and T=0.1"), "{s}");
    assert!(s.contains("the chain at T=0.1 does not sample"), "{s}");
    let start = out.find("integrator `negative-kinetic`").unwrap();
    assert!(out[start..].contains("kinetic energies summed to") && out[start..].contains("is never negative"), "{out}");
    // The faults of the others do not leak into the healthy checks of these two.
    assert!(section("wrong-gradient").contains("ok    samples follow log_prob"), "{out}");
    assert!(section("host-op-overflow").contains("ok    log_prob finite"), "{out}");
    assert!(err.contains("check(s) failed") && err.contains("prior `wrong-gradient`"), "{err}");

    // The example plugin passes every check.
    let example = dir.path().join("plugins/liblogistic_prior.so");
    std::fs::copy(Path::new(BIN).parent().unwrap().join("liblogistic_prior.so"), &example).unwrap();
    let o = ablate(&["plugins", "check", example.to_str().unwrap()], dir.path());
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(!out.contains("FAIL") && out.contains("all checks passed"), "{out}");
}

#[test]
fn a_faulty_plugin_costs_only_its_own_cells() {
    if !plugins_built() {
        panic!("the built-in plugins do not build");
    }
    let dir = tempfile::tempdir().unwrap();
    fault_fixtures(dir.path());
    let grid = serde_json::json!({
        "name": "faults",
        "base": {
            "data": {"dataset": "digits", "train_size": 200, "test_size": 100},
            "model": {"kind": "mlp", "hidden": [16]},
            "sampler": {"epochs": 3, "cycle_length": 1, "cycle_start_sampling": 2},
            "eval": {"prior_samples": 2}
        },
        "axes": [
            {"path": "prior.name", "values": ["gaussian", "host-op-overflow", "wrong-gradient", "not-a-number", "nan-draw"]},
            {"path": "temperature", "values": [1.0, 0.1]}
        ]
    });
    let path = dir.path().join("faults.json");
    std::fs::write(&path, serde_json::to_string_pretty(&grid).unwrap()).unwrap();
    let o = ablate(
        &["run", path.to_str().unwrap(), "--out", "runs", "--device", "cpu", "--plugins", "plugins"],
        dir.path(),
    );
    no_panic(&o);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "failed cells make the run fail:\n{out}\n{err}");
    let cells = statuses(&dir.path().join("runs/faults/cells"));
    assert_eq!(cells.len(), 10, "{cells:?}");
    let mut by_prior = std::collections::BTreeMap::<String, Vec<(String, String)>>::new();
    let mut names = Vec::new();
    for (id, status) in &cells {
        let cfg: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("runs/faults/cells").join(id).join("config.json")).unwrap(),
        )
        .unwrap();
        let prior = cfg["prior"]["name"].as_str().unwrap().to_owned();
        let state = status["status"].as_str().unwrap_or("?").to_owned();
        let message = status["message"].as_str().unwrap_or("").to_owned();
        if state == "failed" {
            // Each failure names its cell: id and labels (the prior and the temperature).
            let t = cfg["temperature"].as_f64().unwrap();
            let name = format!("cell {id} (prior.name={prior}, temperature={t:?}, seed=1): ");
            names.push((message.starts_with(&name), name, message.clone()));
        }
        by_prior.entry(prior).or_default().push((state, message));
    }
    for (state, message) in &by_prior["gaussian"] {
        assert_eq!(state, "done", "the healthy cells finish: {message}");
    }
    // A prior whose draws are NaN costs the prior predictive check (a diagnostic run after the
    // chain), not the chain's results; the run says why the check is missing.
    for (state, message) in &by_prior["nan-draw"] {
        assert_eq!(state, "done", "nan-draw: {message}");
    }
    for (id, _) in &cells {
        let metrics: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("runs/faults/cells").join(id).join("metrics.json"))
                .unwrap_or_else(|_| "{}".into()),
        )
        .unwrap();
        if metrics.get("members").is_some() {
            let nan_draw = by_prior["nan-draw"].len() == 2
                && std::fs::read_to_string(dir.path().join("runs/faults/cells").join(id).join("config.json"))
                    .unwrap()
                    .contains("nan-draw");
            assert_eq!(metrics["prior_predictive"].is_null(), nan_draw, "{id}: {metrics}");
        }
    }
    assert!(
        err.contains("the prior predictive check failed") && err.contains("nan-draw") && err.contains("NaN or Inf"),
        "{err}"
    );
    assert_eq!(names.len(), 6, "{names:?}");
    for (named, name, message) in &names {
        assert!(named, "`{name}` expected at the start of: {message}");
    }
    for (prior, must) in [
        ("host-op-overflow", ["host-op-overflow", "grad_log_prob", "host op `clamp`"]),
        ("wrong-gradient", ["wrong-gradient", "grad_log_prob", "disagrees with autograd"]),
        ("not-a-number", ["not-a-number", "log_prob", "NaN"]),
    ] {
        for (state, message) in &by_prior[prior] {
            assert_eq!(state, "failed", "{prior}: {message}");
            for part in must {
                assert!(message.contains(part), "{prior}: `{part}` missing from {message}");
            }
        }
    }
}

/// Reports no chain can make (an acceptance rate above 1, negative kinetic energies) fail the
/// integrator's cells by name instead of landing in metrics.json as diagnostics.
#[test]
fn impossible_integrator_reports_fail_the_cell_by_name() {
    if !plugins_built() {
        panic!("the built-in plugins do not build");
    }
    let dir = tempfile::tempdir().unwrap();
    fault_fixtures(dir.path());
    let grid = serde_json::json!({
        "name": "reports",
        "base": {
            "data": {"dataset": "digits", "train_size": 200, "test_size": 100},
            "model": {"kind": "mlp", "hidden": [8]},
            "sampler": {"epochs": 2, "cycle_length": 1, "cycle_start_sampling": 1}
        },
        "axes": [{"path": "integrator.name", "values": ["impossible-acceptance", "negative-kinetic"]}]
    });
    let path = dir.path().join("reports.json");
    std::fs::write(&path, grid.to_string()).unwrap();
    let o = ablate(
        &["run", path.to_str().unwrap(), "--out", "runs", "--device", "cpu", "--plugins", "plugins", "--no-report"],
        dir.path(),
    );
    no_panic(&o);
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    let messages: Vec<String> = statuses(&dir.path().join("runs/reports/cells"))
        .into_iter()
        .map(|(_, s)| {
            assert_eq!(s["status"], "failed", "{s}");
            s["message"].as_str().unwrap().to_owned()
        })
        .collect();
    let has = |a: &str, b: &str| messages.iter().any(|m| m.contains(a) && m.contains(b));
    assert!(has("`impossible-acceptance`", "reported the acceptance 7.5"), "{messages:?}");
    assert!(has("`negative-kinetic`", "returned the kinetic energy -1"), "{messages:?}");
}

/// A plugin that ends the worker process (an abort here; a segfault or `exit` alike) is named
/// in the failed cell's message: the worker's crash handler says which plugin call it was in.
#[test]
fn a_plugin_that_kills_the_worker_is_named() {
    if !plugins_built() {
        panic!("the built-in plugins do not build");
    }
    let dir = tempfile::tempdir().unwrap();
    let fixtures = Path::new(BIN).parent().unwrap().join("crash-fixtures");
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "-p",
            "ablate-fault-fixtures",
            "--features",
            "ablate-fault-fixtures/crashing-for-tests",
        ])
        .arg("--target-dir")
        .arg(&fixtures)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::create_dir_all(dir.path().join("plugins")).unwrap();
    std::fs::copy(fixtures.join("debug/libfault_fixtures.so"), dir.path().join("plugins/libcrash.so")).unwrap();
    let grid = serde_json::json!({
        "name": "crash",
        "base": {
            "data": {"dataset": "digits", "train_size": 200, "test_size": 100},
            "model": {"kind": "mlp", "hidden": [8]},
            "integrator": {"name": "crashing"},
            "sampler": {"epochs": 1, "cycle_length": 1, "cycle_start_sampling": 1}
        },
        "axes": [{"path": "temperature", "values": [1.0]}]
    });
    let path = dir.path().join("crash.json");
    std::fs::write(&path, grid.to_string()).unwrap();
    let o = ablate(
        &["run", path.to_str().unwrap(), "--out", "runs", "--device", "cpu", "--plugins", "plugins", "--no-report"],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    let st = statuses(&dir.path().join("runs/crash/cells"));
    let message = st[0].1["message"].as_str().unwrap();
    assert!(message.contains("SIGABRT"), "{message}");
    assert!(
        message.contains("the worker crashed inside integrator plugin `crashing` (plugins/libcrash.so) during `step`"),
        "{message}"
    );
}

/// A likelihood whose NLL does not depend on the logits used to reach autograd's
/// `run_backward` (a panicking tch call: the worker died with a libtorch message naming no
/// plugin). Now the cell fails with an error naming the cell (id and labels), the plugin, the
/// call and the tensor, in `status.json` and in the run's output, alone and batched.
#[test]
fn a_likelihood_output_autograd_cannot_use_fails_its_cell_by_name() {
    if !plugins_built() {
        panic!("the built-in plugins do not build");
    }
    let dir = tempfile::tempdir().unwrap();
    fault_fixtures(dir.path());
    let grid = serde_json::json!({
        "name": "detached",
        "base": {
            "data": {"dataset": "digits", "train_size": 200, "test_size": 100},
            "model": {"kind": "mlp", "hidden": [16]},
            "likelihood": {"name": "detached-nll"},
            "sampler": {"epochs": 3, "cycle_length": 1, "cycle_start_sampling": 2}
        },
        "axes": [
            {"path": "temperature", "values": [1.0, 0.1]},
            {"path": "seed", "values": [2]}
        ]
    });
    let path = dir.path().join("detached.json");
    std::fs::write(&path, serde_json::to_string_pretty(&grid).unwrap()).unwrap();
    for (out_dir, plan) in [("alone", &["--batch-chains", "1", "--jobs", "1"][..]), ("batched", &[][..])] {
        let args = [
            &["run", path.to_str().unwrap(), "--out", out_dir, "--device", "cpu"][..],
            plan,
            &["--plugins", "plugins", "--no-report"],
        ]
        .concat();
        let o = ablate(&args, dir.path());
        no_panic(&o);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{out_dir}: failed cells make the run fail:\n{out}\n{err}");
        let cells = statuses(&dir.path().join(out_dir).join("detached/cells"));
        assert_eq!(cells.len(), 2, "{cells:?}");
        for (id, status) in &cells {
            assert_eq!(status["status"], "failed", "{out_dir}: {status}");
            let message = status["message"].as_str().unwrap();
            let labels: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(dir.path().join(out_dir).join("detached/cells").join(id).join("labels.json"))
                    .unwrap(),
            )
            .unwrap();
            let t = &labels["temperature"];
            let name = format!("cell {id} (temperature={t}, seed=2): ");
            assert!(message.starts_with(&name), "{out_dir}: the message names the cell as `{name}`: {message}");
            for part in [
                "likelihood plugin `detached-nll`",
                "libfault_fixtures.so",
                "during nll",
                "does not depend on the logits",
            ] {
                assert!(message.contains(part), "{out_dir}: `{part}` missing from {message}");
            }
            assert!(!message.contains("panicked") && !message.contains("worker process"), "{out_dir}: {message}");
            // The run's output (progress lines go to stderr): the cell's line with its id,
            // labels and the plugin's error.
            let line = err
                .lines()
                .find(|l| l.contains(&format!("{id} temperature={t}")))
                .unwrap_or_else(|| panic!("{out_dir}: no line for cell {id} in:\n{err}"));
            assert!(line.contains("FAILED: likelihood plugin `detached-nll`"), "{out_dir}: {line}");
        }
    }
}

#[test]
fn data_list() {
    let dir = tempfile::tempdir().unwrap();
    let o = ablate(&["data", "list"], dir.path());
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("digits") && out.contains("mnist"), "{out}");
    let o = ablate(&["data", "fetch", "nonsense"], dir.path());
    no_panic(&o);
    assert!(!o.status.success());
}

#[test]
fn run_resume_report_and_crash_isolation() {
    if !plugins_built() {
        panic!("the built-in plugins do not build");
    }
    let dir = tempfile::tempdir().unwrap();
    let grid = tiny_grid(dir.path(), "tiny", 4, &[1.0, 0.1]);
    let g = grid.to_str().unwrap();
    let o = ablate(&["run", g, "--out", "runs", "--device", "cpu"], dir.path());
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("2 done"), "{out}");
    let run = dir.path().join("runs/tiny");
    for f in ["manifest.json", "grid.json", "report/report.md"] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    assert!(!run.join("run.lock").exists(), "lock must be released");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["libtorch_version"], "2.11.0");
    assert_eq!(manifest["device"], "cpu");
    assert!(manifest["plugins"].as_array().unwrap().len() >= 4);
    assert!(manifest["plugins"][0]["sha256"].as_str().unwrap().len() == 64);
    let st = statuses(&run.join("cells"));
    assert_eq!(st.len(), 2);
    for (id, s) in &st {
        assert_eq!(s["status"], "done", "{id}");
        let cell = run.join("cells").join(id);
        for f in ["config.json", "labels.json", "metrics.json", "epochs.csv"] {
            assert!(cell.join(f).is_file(), "{id}/{f} missing");
        }
        let csv = std::fs::read_to_string(cell.join("epochs.csv")).unwrap();
        assert_eq!(csv.lines().count(), 5, "{csv}");
        // Each result names what computed it: this build and the library of each factor, one
        // of the manifest's.
        let p = &s["provenance"];
        assert_eq!(p["git_revision"], manifest["git_revision"], "{id}");
        assert_eq!((&p["device"], &p["libtorch_version"]), (&manifest["device"], &manifest["libtorch_version"]));
        let kinds: Vec<&str> = p["plugins"].as_array().unwrap().iter().map(|l| l["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["prior", "likelihood", "integrator", "noise"], "{id}");
        for l in p["plugins"].as_array().unwrap() {
            let listed = manifest["plugins"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["sha256"] == l["sha256"] && m["path"] == l["path"]);
            assert!(listed, "{id}: {l} is not in the manifest");
        }
    }
    assert!(!std::fs::read_to_string(run.join("report/report.md")).unwrap().contains("another build"));

    // Rerun: both skipped, nothing rewritten.
    let o = ablate(&["run", g, "--out", "runs", "--device", "cpu", "--no-report"], dir.path());
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("2 skipped") && out.contains("0 done"), "{out}");
    assert_eq!(statuses(&run.join("cells")), st);

    // `ablate report` on the folder.
    let o = ablate(&["report", run.to_str().unwrap()], dir.path());
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("2 done") && out.contains("report.md"), "{out}");

    // A finished cell computed by another build of a plugin (recorded in its status.json: here
    // a library that has since been rebuilt under another version) stops the resume, naming it.
    let (first, second) = (run.join("cells").join(&st[0].0), run.join("cells").join(&st[1].0));
    let kept = std::fs::read_to_string(first.join("status.json")).unwrap();
    let mut other: serde_json::Value = serde_json::from_str(&kept).unwrap();
    other["provenance"]["plugins"][0]["sha256"] = serde_json::json!("0".repeat(64));
    std::fs::write(first.join("status.json"), other.to_string()).unwrap();
    std::fs::remove_file(second.join("status.json")).unwrap();
    let o = ablate(&["run", g, "--out", "runs", "--device", "cpu", "--no-report"], dir.path());
    let (out, err) = text(&o);
    assert!(!o.status.success(), "resumed across builds:\n{out}\n{err}");
    assert!(err.contains("prior `gaussian`: cells computed by") && err.contains("sha256 000000000000"), "{err}");
    assert!(!second.join("status.json").exists(), "nothing ran");
    std::fs::write(first.join("status.json"), kept).unwrap();
    let o = ablate(&["run", g, "--out", "runs", "--device", "cpu", "--no-report"], dir.path());
    assert!(o.status.success(), "{}", text(&o).1);
    assert_eq!(statuses(&run.join("cells"))[0], st[0]);

    // A worker that crashes (SIGABRT) fails only its cells: one cell per worker here (batched
    // chains share their worker and fail together).
    let grid2 = tiny_grid(dir.path(), "crash", 2, &[1.0, 0.5]);
    let cells = ablate_grid::Grid::from_path(&grid2).unwrap().cells;
    let o = Command::new(BIN)
        .args([
            "run",
            grid2.to_str().unwrap(),
            "--out",
            "runs",
            "--device",
            "cpu",
            "--no-report",
            "--batch-chains",
            "1",
        ])
        .current_dir(dir.path())
        .env("ABLATE_WORKER_CRASH_FOR_TESTS", &cells[0].id)
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(!o.status.success(), "a failed cell makes the exit code non-zero");
    assert!(out.contains("1 done, 1 failed"), "{out}\n{err}");
    let st = statuses(&dir.path().join("runs/crash/cells"));
    let crashed = st.iter().find(|(id, _)| *id == cells[0].id).unwrap();
    assert_eq!(crashed.1["status"], "failed");
    assert!(crashed.1["message"].as_str().unwrap().contains("SIGABRT"), "{:?}", crashed.1);
}

#[test]
fn data_errors_fail_the_cell_with_one_line() {
    if !plugins_built() {
        panic!("the built-in plugins do not build");
    }
    let dir = tempfile::tempdir().unwrap();
    // An empty folder: it passes `grid check` (a missing one is refused there) and fails to load.
    std::fs::create_dir(dir.path().join("nowhere")).unwrap();
    let grid = serde_json::json!({
        "name": "nodata",
        "base": {"data": {"dataset": "mnist", "path": dir.path().join("nowhere").to_str().unwrap(), "train_size": 100},
                 "model": {"kind": "mlp", "hidden": [8]}, "sampler": {"epochs": 2, "cycle_length": 1, "cycle_start_sampling": 2}},
    });
    let path = dir.path().join("nodata.json");
    std::fs::write(&path, grid.to_string()).unwrap();
    let o = ablate(&["run", path.to_str().unwrap(), "--out", "runs", "--no-report", "--device", "cpu"], dir.path());
    no_panic(&o);
    assert!(!o.status.success());
    let st = statuses(&dir.path().join("runs/nodata/cells"));
    assert_eq!(st.len(), 1);
    assert_eq!(st[0].1["status"], "failed");
    let msg = st[0].1["message"].as_str().unwrap();
    assert!(!msg.contains('\n') && msg.contains("nowhere"), "{msg}");

    // A rerun does not retry the failed cell, and says so: it still exits with status 1 (it
    // exited 0, counting the failure among the cells "already finished").
    let o = ablate(&["run", path.to_str().unwrap(), "--out", "runs", "--no-report", "--device", "cpu"], dir.path());
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    assert!(out.contains("1 of the skipped cells failed in an earlier run"), "{out}");
}

#[test]
fn kill_9_of_the_runner_then_rerun_keeps_finished_cells() {
    if !plugins_built() {
        panic!("the built-in plugins do not build");
    }
    let dir = tempfile::tempdir().unwrap();
    let grid = tiny_grid(dir.path(), "killed", 40, &[1.0, 0.3, 0.1]);
    let g = grid.to_str().unwrap();
    let cells = dir.path().join("runs/killed/cells");
    let mut child = Command::new(BIN)
        .args(["run", g, "--out", "runs", "--jobs", "1", "--threads", "1", "--device", "cpu", "--no-report"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let done = cells.is_dir() && statuses(&cells).iter().any(|(_, s)| s["status"] == "done");
        if done || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // The orphaned worker notices its parent is gone and stops (it may write a batch-mate's
    // outputs meanwhile): look at the folder once it has.
    std::thread::sleep(Duration::from_millis(500));
    let before = statuses(&cells);
    let finished: Vec<_> = before.iter().filter(|(_, s)| s["status"] == "done").cloned().collect();
    assert!(!finished.is_empty(), "no cell finished in time: {before:?}");
    if finished.len() == 3 {
        return; // the machine was faster than the kill: nothing more to check
    }

    let o = ablate(&["run", g, "--out", "runs", "--device", "cpu", "--no-report"], dir.path());
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains(&format!("{} skipped", finished.len())), "{out}");
    let after = statuses(&cells);
    assert_eq!(after.len(), 3);
    assert!(after.iter().all(|(_, s)| s["status"] == "done"), "{after:?}");
    for (id, s) in &finished {
        let now = &after.iter().find(|(i, _)| i == id).unwrap().1;
        assert_eq!(now, s, "finished cell {id} was recomputed");
    }
}

/// Everything a report's numbers come from, per cell: the ensemble metrics and growth curves
/// (wall times excluded).
fn cell_results(cells: &Path) -> Vec<(String, serde_json::Value)> {
    let mut out: Vec<(String, serde_json::Value)> = std::fs::read_dir(cells)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let m: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(p.join("metrics.json")).unwrap()).unwrap();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                serde_json::json!({"ensemble": m["ensemble"], "growth": m["growth"], "diagnostics": m["diagnostics"]}),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn interrupted_and_sharded_runs_reproduce_the_uninterrupted_run() {
    if !plugins_built() {
        panic!("the built-in plugins do not build");
    }
    let dir = tempfile::tempdir().unwrap();
    let grid = tiny_grid(dir.path(), "repro", 12, &[1.0, 0.3, 0.1, 0.01]);
    let g = grid.to_str().unwrap();
    let run = |out: &str, extra: &[&str]| {
        let mut args = vec!["run", g, "--out", out, "--device", "cpu", "--threads", "1"];
        args.extend_from_slice(extra);
        let o = ablate(&args, dir.path());
        let (so, se) = text(&o);
        assert!(o.status.success(), "{so}\n{se}");
    };
    // One uninterrupted run.
    run("whole", &[]);
    let whole = cell_results(&dir.path().join("whole/repro/cells"));
    assert_eq!(whole.len(), 4);

    // Two shards into one folder, run separately, then merged by `ablate report`.
    run("sharded", &["--shard", "0/2", "--no-report"]);
    run("sharded", &["--shard", "1/2", "--no-report"]);
    let o = ablate(&["report", "sharded/repro"], dir.path());
    assert!(o.status.success(), "{:?}", text(&o));
    assert_eq!(cell_results(&dir.path().join("sharded/repro/cells")), whole, "shards differ from the whole run");
    let summary = |d: &str| std::fs::read_to_string(dir.path().join(d).join("repro/report/summary.csv")).unwrap();
    assert_eq!(summary("sharded"), summary("whole"), "merged report differs");

    // kill -9 of the runner mid-run, then a rerun: the same numbers as the uninterrupted run.
    let cells = dir.path().join("killed/repro/cells");
    let mut child = Command::new(BIN)
        .args(["run", g, "--out", "killed", "--jobs", "1", "--threads", "1", "--device", "cpu"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    while Instant::now() < deadline && !(cells.is_dir() && statuses(&cells).iter().any(|(_, s)| s["status"] == "done"))
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    run("killed", &[]);
    assert_eq!(cell_results(&cells), whole, "interrupted-and-resumed run differs from the whole run");
    assert_eq!(summary("killed"), summary("whole"), "report after kill -9 and resume differs");
}

/// Every built-in plugin in one small grid on the embedded digits: eight cells, each a different
/// prior, likelihood, integrator and noise model (zipped axes), all must finish.
#[test]
fn every_builtin_plugin_runs_end_to_end() {
    if !plugins_built() {
        panic!("the built-in plugins do not build");
    }
    let dir = tempfile::tempdir().unwrap();
    let named =
        |names: &[&str]| -> Vec<serde_json::Value> { names.iter().map(|n| serde_json::json!({"name": n})).collect() };
    let grid = serde_json::json!({
        "name": "all-plugins",
        "base": {
            "temperature": 0.1,
            "data": {"dataset": "digits", "train_size": 300, "test_size": 200},
            "model": {"kind": "cnn", "channels": [8]},
            "sampler": {"epochs": 3, "batch_size": 50, "lr": 0.05, "cycle_length": 1, "cycle_start_sampling": 2}
        },
        "axes": [
            {"path": "prior", "name": "prior", "values": named(&["gaussian", "he-gaussian", "laplace", "student-t", "cauchy", "spike-slab", "flat", "gaussian"]),
             "labels": ["gaussian", "he-gaussian", "laplace", "student-t", "cauchy", "spike-slab", "flat", "gaussian-2"]},
            {"path": "likelihood", "name": "likelihood", "values": [
                {"name": "categorical"}, {"name": "batchnorm"}, {"name": "frn"},
                {"name": "tempered", "params": {"likelihood_temperature": 0.5}},
                {"name": "augmented", "params": {"pad": 1}}, {"name": "dropout"},
                {"name": "noisy-dirichlet"}, {"name": "categorical"}],
             "labels": ["categorical", "batchnorm", "frn", "tempered", "augmented", "dropout", "noisy-dirichlet", "categorical-2"]},
            {"path": "integrator", "name": "integrator", "values": [
                {"name": "sym-euler"}, {"name": "sgld"}, {"name": "baoab"}, {"name": "obabo", "params": {"metropolis": true}},
                {"name": "bbk"}, {"name": "spv"}, {"name": "msgnht"}, {"name": "hmc", "params": {"leapfrog_steps": 3}}],
             "labels": ["sym-euler", "sgld", "baoab", "obabo-mh", "bbk", "spv", "msgnht", "hmc"]},
            {"path": "noise", "name": "noise", "values": [
                {"name": "minibatch"}, {"name": "full-batch"}, {"name": "pretend-batch", "params": {"batch_size": 20}},
                {"name": "gaussian-matched"}, {"name": "alpha-stable"}, {"name": "minibatch"}, {"name": "minibatch"}, {"name": "full-batch"}],
             "labels": ["minibatch", "full-batch", "pretend-batch", "gaussian-matched", "alpha-stable", "minibatch-2", "minibatch-3", "full-batch-2"]}
        ],
        // The exact samplers (obabo-mh, hmc) meet clean likelihoods: `grid check` refuses them
        // with batch norm, dropout or augmentation.
        "zip": [["prior", "likelihood", "integrator", "noise"]]
    });
    let path = dir.path().join("all.json");
    std::fs::write(&path, serde_json::to_string_pretty(&grid).unwrap()).unwrap();
    let o = ablate(&["run", path.to_str().unwrap(), "--out", "runs", "--device", "cpu", "--no-report"], dir.path());
    let (out, err) = text(&o);
    let states = statuses(&dir.path().join("runs/all-plugins/cells"));
    assert_eq!(states.len(), 8, "{out}\n{err}");
    for (id, s) in &states {
        assert_eq!(s["status"], "done", "cell {id}: {s}\n{out}\n{err}");
    }
    assert!(o.status.success(), "{out}\n{err}");
}

/// Batched chains: at T = 0 (no injected noise) a chain run in a batch repeats the chain run
/// alone (same initial θ and data order from its seed; the batched matrix products give the
/// same numbers here), and cells an integrator cannot batch run alone with the reason stated.
#[test]
fn batched_chains_repeat_the_chains_run_alone() {
    if !plugins_built() {
        panic!("the built-in plugins do not build");
    }
    let dir = tempfile::tempdir().unwrap();
    let grid = serde_json::json!({
        "name": "batch",
        "base": {
            "data": {"dataset": "digits", "train_size": 300, "test_size": 200},
            "model": {"kind": "mlp", "hidden": [32]},
            "sampler": {"epochs": 6, "cycle_length": 1, "cycle_start_sampling": 2}
        },
        "axes": [{"path": "temperature", "values": [0.0, 1.0]}, {"path": "seed", "values": [1, 2]}]
    });
    let path = dir.path().join("batch.json");
    std::fs::write(&path, serde_json::to_string_pretty(&grid).unwrap()).unwrap();
    let g = path.to_str().unwrap();
    let run = |out: &str, extra: &[&str]| {
        let mut args = vec!["run", g, "--out", out, "--device", "cpu", "--no-report"];
        args.extend_from_slice(extra);
        let o = ablate(&args, dir.path());
        let (stdout, err) = text(&o);
        assert!(o.status.success(), "{stdout}\n{err}");
        format!("{stdout}{err}")
    };
    let batched = run("batched", &[]);
    assert!(batched.contains("4 of them as 1 batch(es) of chains"), "{batched}");
    let alone = run("alone", &["--batch-chains", "1"]);
    assert!(!alone.contains("batch(es)"), "{alone}");
    // Each batched cell records its batch-mates (part of what reproduces its numbers).
    for (id, st) in statuses(&dir.path().join("batched/batch/cells")) {
        let mates: Vec<&str> = st["batch"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(mates.len(), 4, "{id}: {st}");
        assert!(mates.contains(&id.as_str()));
    }
    for (id, st) in statuses(&dir.path().join("alone/batch/cells")) {
        assert!(st.get("batch").is_none(), "{id} ran alone: {st}");
    }
    let cells = ablate_grid::Grid::from_path(&path).unwrap().cells;
    let metrics = |out: &str, id: &str| -> serde_json::Value {
        let p = dir.path().join(out).join("batch/cells").join(id).join("metrics.json");
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    for cell in &cells {
        let (b, a) = (metrics("batched", &cell.id), metrics("alone", &cell.id));
        if cell.config.temperature == 0.0 {
            let (nb, na) = (b["ensemble"]["nll"].as_f64().unwrap(), a["ensemble"]["nll"].as_f64().unwrap());
            assert!(
                (nb - na).abs() <= 1e-5 * na.abs(),
                "T=0 seed {}: batched nll {nb} vs alone {na}",
                cell.config.seed
            );
            assert_eq!(b["ensemble"]["accuracy"], a["ensemble"]["accuracy"]);
        } else {
            assert!(b["ensemble"]["accuracy"].as_f64().unwrap() > 0.5, "{b}");
        }
    }

    // Convolutions grouped by chain, with batch norm per chain: at T = 0 the same chains too
    // (to float rounding: the grouped kernels sum in another order).
    let mut cnn = grid.clone();
    cnn["name"] = "batch-cnn".into();
    cnn["base"]["model"] = serde_json::json!({"kind": "cnn", "channels": [8, 16]});
    cnn["base"]["likelihood"] = serde_json::json!({"name": "batchnorm"});
    cnn["base"]["sampler"]["epochs"] = 4.into();
    cnn["axes"][0]["values"] = serde_json::json!([0.0]);
    std::fs::write(&path, serde_json::to_string_pretty(&cnn).unwrap()).unwrap();
    let out = run("cnn-batched", &["--batch-conv"]);
    assert!(out.contains("2 of them as 1 batch(es) of chains"), "{out}");
    let alone = run("cnn-alone", &[]);
    assert!(!alone.contains("batch(es)"), "convolutional models run alone on the CPU by default: {alone}");
    for cell in ablate_grid::Grid::from_path(&path).unwrap().cells {
        let nll = |out: &str| {
            let p = dir.path().join(out).join("batch-cnn/cells").join(&cell.id).join("metrics.json");
            let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
            m["ensemble"]["nll"].as_f64().unwrap()
        };
        let (b, a) = (nll("cnn-batched"), nll("cnn-alone"));
        assert!((b - a).abs() <= 1e-5 * a, "CNN T=0 seed {}: batched nll {b} vs alone {a}", cell.config.seed);
    }

    // An integrator with a Metropolis–Hastings step cannot share a step: cells run alone.
    let mut hmc = grid.clone();
    hmc["name"] = "batch-hmc".into();
    hmc["base"]["integrator"] = serde_json::json!({"name": "obabo", "params": {"metropolis": true}});
    hmc["base"]["noise"] = serde_json::json!({"name": "full-batch"});
    hmc["base"]["sampler"]["epochs"] = 3.into();
    std::fs::write(&path, serde_json::to_string_pretty(&hmc).unwrap()).unwrap();
    let out = run("hmc", &[]);
    assert!(out.contains("not batched: integrator `obabo` is not batchable"), "{out}");
}

/// A worker's warnings reach the user: a step size far beyond stability gives finite but absurd
/// numbers (kinetic temperature ~1e23), which the worker warns about; the runner kept worker
/// stderr only to explain a crash, so the warning was lost and the cell simply read `done`.
#[test]
fn worker_warnings_reach_the_runners_stderr() {
    if !plugins_built() {
        panic!("the built-in plugins do not build");
    }
    let dir = tempfile::tempdir().unwrap();
    let grid = serde_json::json!({
        "name": "hot",
        "base": {
            "temperature": 1.0,
            "data": {"dataset": "digits", "train_size": 300, "test_size": 100},
            "model": {"kind": "mlp", "hidden": [16]},
            "sampler": {"epochs": 4, "batch_size": 50, "lr": 1000.0, "cycle_length": 1, "cycle_start_sampling": 2,
                        "temperature_ramp": false}
        }
    });
    let path = dir.path().join("hot.json");
    std::fs::write(&path, grid.to_string()).unwrap();
    let o = ablate(&["run", path.to_str().unwrap(), "--out", "runs", "--no-report", "--device", "cpu"], dir.path());
    no_panic(&o);
    let (out, err) = text(&o);
    let st = statuses(&dir.path().join("runs/hot/cells"));
    let status = st[0].1["status"].as_str().unwrap_or_default().to_owned();
    if status == "done" {
        assert!(
            err.contains("WARN") && err.contains("kinetic temperature is orders of magnitude above"),
            "{out}\n{err}"
        );
        assert!(err.contains(&format!("cell {}", st[0].0)), "the warning names its cell: {err}");
    } else {
        assert_eq!(status, "diverged", "{out}\n{err}");
    }
}

/// `ablate status` reads what `ablate run` would do: a garbage status.json and a done cell
/// without its metrics.json are damaged (run again), not missing or done; a folder that lost its
/// manifest still shows its finished cells, and says that `run` will not resume it.
#[test]
fn status_tells_damaged_cells_and_a_lost_manifest() {
    if !plugins_built() {
        panic!("the built-in plugins do not build");
    }
    let dir = tempfile::tempdir().unwrap();
    let grid = tiny_grid(dir.path(), "damaged", 2, &[1.0, 0.1, 0.01]);
    let o = ablate(&["run", grid.to_str().unwrap(), "--out", "runs", "--no-report", "--device", "cpu"], dir.path());
    assert!(o.status.success(), "{:?}", text(&o));
    let run = dir.path().join("runs/damaged");
    let cells: Vec<PathBuf> = {
        let mut v: Vec<PathBuf> = std::fs::read_dir(run.join("cells")).unwrap().map(|e| e.unwrap().path()).collect();
        v.sort();
        v
    };
    std::fs::write(cells[0].join("status.json"), "{ garbage").unwrap();
    std::fs::write(cells[1].join("metrics.json"), "").unwrap();
    let o = ablate(&["status", run.to_str().unwrap()], dir.path());
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out}\n{err}");
    assert!(out.contains("1 done, 2 damaged (run again by the next run)"), "{out}");
    assert!(out.contains("its status.json cannot be read") && out.contains("metrics.json is missing"), "{out}");

    std::fs::remove_file(run.join("manifest.json")).unwrap();
    let o = ablate(&["status", run.to_str().unwrap()], dir.path());
    let (out, _) = text(&o);
    assert!(out.contains("1 done, 2 damaged") && out.contains("manifest.json is missing"), "{out}");
    // A damaged manifest is named too, and no report is offered (it could not be written).
    std::fs::write(run.join("manifest.json"), "{ broken").unwrap();
    let o = ablate(&["status", run.to_str().unwrap()], dir.path());
    let (out, _) = text(&o);
    assert!(out.contains("manifest.json is not valid") && out.contains("`ablate report` cannot report it"), "{out}");
    assert!(!out.contains("the report: ablate report"), "{out}");
}

/// `ablate status` shows a crashed worker's cause (the last of the stderr lines its message
/// holds) beside what failed, not only the message's first line.
#[test]
fn status_shows_the_cause_of_a_crash() {
    if !plugins_built() {
        panic!("the built-in plugins do not build");
    }
    let dir = tempfile::tempdir().unwrap();
    let grid = tiny_grid(dir.path(), "crashed", 2, &[1.0, 0.1]);
    let id = ablate_grid::Grid::from_path(&grid).unwrap().cells[0].id.clone();
    let o = Command::new(BIN)
        .args(["run", grid.to_str().unwrap(), "--out", "runs", "--no-report", "--device", "cpu", "--batch-chains", "1"])
        .current_dir(dir.path())
        .env("ABLATE_WORKER_CRASH_FOR_TESTS", format!("panic:{id}"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    let o = ablate(&["status", dir.path().join("runs/crashed").to_str().unwrap()], dir.path());
    let (out, _) = text(&o);
    let line = out.lines().find(|l| l.contains(&format!("failed {id}"))).unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("exited with status 101") && line.contains(&format!("test panic in the worker of cell {id}")),
        "{line}"
    );
    // Asked from another folder, the resume command still works: it starts in the run's folder,
    // and the grid file and run folder are spelt out in full for a moved run folder.
    let o = ablate(&["status", dir.path().join("runs/crashed").to_str().unwrap()], Path::new("/"));
    let (out, _) = text(&o);
    let d = dir.path().display();
    assert!(out.contains(&format!("cd {d} && ")), "{out}");
    assert!(out.contains(&format!("ablate run {d}/crashed.json --out {d}/runs")), "{out}");
}

/// Convolutional cells that could share a batch run alone on the CPU; the run's first line says
/// so and how to batch them, as it does for every other reason.
#[test]
fn unbatched_convolutional_cells_say_why() {
    if !plugins_built() {
        panic!("the built-in plugins do not build");
    }
    let dir = tempfile::tempdir().unwrap();
    let grid = serde_json::json!({
        "name": "conv",
        "base": {
            "data": {"dataset": "digits", "train_size": 100, "test_size": 50},
            "model": {"kind": "cnn", "channels": [4]},
            "sampler": {"epochs": 1, "batch_size": 50, "cycle_length": 1, "cycle_start_sampling": 1}
        },
        "axes": [{"path": "temperature", "values": [1.0, 0.1]}]
    });
    let path = dir.path().join("conv.json");
    std::fs::write(&path, grid.to_string()).unwrap();
    let o = ablate(&["run", path.to_str().unwrap(), "--out", "runs", "--no-report", "--device", "cpu"], dir.path());
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(format!("{out}{err}").contains("[not batched: convolutional models run alone on the CPU"), "{out}\n{err}");
}
