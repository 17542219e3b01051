//! Plugins as a user drops them in: built `.so` files loaded from a folder, used through the
//! real libtorch host; refused when built against another interface; contained when faulty.
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use std::path::{Path, PathBuf};
use std::process::Command;

use ablate_engine::cell::Loss;
use ablate_engine::host::TchHost;
use ablate_engine::model::Model;
use ablate_engine::EngineError;
use ablate_grid::config::{Activation, ModelConfig};
use ablate_plugin_host::{PluginError, Registry, SearchPath};
use ablate_sdk::{ModelToggles, NormKind};
use tch::{Device, Kind, Tensor};

/// `target/<profile>` of this test binary.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

fn cargo_build(packages: &[&str], extra: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build").arg("--quiet");
    for p in packages {
        cmd.args(["-p", p]);
    }
    cmd.args(extra).current_dir(env!("CARGO_MANIFEST_DIR"));
    let status = cmd.status().expect("cargo runs");
    assert!(status.success(), "building {packages:?} {extra:?} failed");
}

/// Build the example and the fault fixtures once, and copy `file` into a private folder.
fn plugin_folder(files: &[(&Path, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (src, name) in files {
        std::fs::copy(src, dir.path().join(name)).unwrap();
    }
    dir
}

fn built(name: &str) -> PathBuf {
    static BUILD: std::sync::Once = std::sync::Once::new();
    BUILD.call_once(|| cargo_build(&["logistic-prior-example", "ablate-fault-fixtures"], &[]));
    target_dir().join(name)
}

fn small_loss(registry: &Registry, prior: &str) -> Loss {
    let model = Model::new(
        &ModelConfig::Mlp { hidden: vec![5], activation: Activation::Relu },
        ModelToggles { norm: NormKind::None, dropout: 0.0 },
        (1, 2, 3),
        4,
    )
    .unwrap();
    let path =
        registry.library_of(registry.get(ablate_sdk::FactorKind::Prior, prior).unwrap()).path.display().to_string();
    let prior_box = registry.prior(prior, &serde_json::json!({})).unwrap();
    // The likelihood is never called in these tests; borrow any prior's library for the slot.
    Loss {
        model,
        prior: ablate_engine::chain::Factor::new(prior_box, "prior", prior, &path),
        likelihood: std::cell::RefCell::new(ablate_engine::chain::Factor::new(
            ablate_sdk::testkit::likelihood_box::<NoLikelihood>("{}").unwrap(),
            "likelihood",
            "none",
            "-",
        )),
        train_x: Tensor::zeros([1, 1, 2, 3], (Kind::Float, Device::Cpu)),
        train_y: Tensor::zeros([1], (Kind::Int64, Device::Cpu)),
        n: 10.0,
        chunk: 1,
        check_outputs: true,
        prior_precision: None,
    }
}

/// Placeholder-free minimal likelihood for the `Loss` slot (mean cross-entropy).
struct NoLikelihood;
impl ablate_sdk::Factory for NoLikelihood {
    const NAME: &'static str = "ce";
    const DESCRIPTION: &'static str = "mean cross-entropy";
    fn params() -> Vec<ablate_sdk::ParamSpec> {
        Vec::new()
    }
    fn new(_: &ablate_sdk::Params) -> Result<Self, String> {
        Ok(Self)
    }
}
impl ablate_sdk::Likelihood for NoLikelihood {
    fn model(&self) -> ModelToggles {
        ModelToggles { norm: NormKind::None, dropout: 0.0 }
    }
    fn effective_n(&self, examples: u64) -> f64 {
        examples as f64
    }
    fn augment<'o>(
        &mut self,
        _: ablate_sdk::Ops<'o>,
        _: &ablate_sdk::Tensor<'o>,
    ) -> Result<Option<ablate_sdk::Tensor<'o>>, String> {
        Ok(None)
    }
    fn nll<'o>(
        &self,
        _: ablate_sdk::Ops<'o>,
        logits: &ablate_sdk::Tensor<'o>,
        labels: &ablate_sdk::Tensor<'o>,
    ) -> Result<ablate_sdk::Tensor<'o>, String> {
        Ok(-(logits.log_softmax(1).gather_rows(labels).mean()))
    }
}

#[test]
fn example_plugin_log_prob_and_gradient_match_the_host() {
    let dir = plugin_folder(&[(&built("liblogistic_prior.so"), "liblogistic_prior.so")]);
    let registry = Registry::load(&SearchPath::only(&[dir.path().to_path_buf()])).unwrap();
    let f = registry.get(ablate_sdk::FactorKind::Prior, "logistic").unwrap();
    assert_eq!(registry.library_of(f).sha256.len(), 64);
    let s = 0.7;
    let prior = registry.prior("logistic", &serde_json::json!({"scale": s})).unwrap();
    let mut loss = small_loss(&registry, "logistic");
    loss.prior.obj = prior;
    // On the CPU, and on the GPU where there is one (the same plugin binary: tensors stay on
    // their device behind the handles).
    let mut devices = vec![Device::Cpu];
    if tch::Cuda::is_available() {
        devices.push(Device::Cuda(0));
    }
    for device in devices {
        tch::manual_seed(0);
        let theta = (Tensor::randn([loss.model.dim()], (Kind::Double, Device::Cpu)) * 2.0)
            .to_kind(Kind::Float)
            .to_device(device)
            .set_requires_grad(true);
        let mut host = TchHost::new();
        let lp = loss.log_prior(&mut host, &theta).unwrap();
        assert_eq!(host.live(), 0, "plugin calls leak no handles");
        assert_eq!(lp.device(), device, "the result stays on the device");
        let g = Tensor::run_backward(&[&lp], &[&theta], false, false).remove(0);
        // Host-side computation of the same density (weights and biases are covered).
        let t = theta.detach().to_device(Device::Cpu).to_kind(Kind::Double).set_requires_grad(true);
        let a = t.abs() / s;
        let per: Tensor = -&a - (-&a).exp().log1p() * 2.0 - s.ln();
        let direct = per.sum(Kind::Double);
        let g_direct = Tensor::run_backward(&[&direct], &[&t], false, false).remove(0);
        let (v, w) = (f64::try_from(&lp.to_device(Device::Cpu)).unwrap(), f64::try_from(&direct).unwrap());
        assert!((v - w).abs() < 1e-4 * w.abs(), "{device:?}: log_prob {v} vs host {w}");
        let err = f64::try_from((g.to_device(Device::Cpu).to_kind(Kind::Double) - g_direct).abs().max()).unwrap();
        assert!(err < 1e-5, "{device:?}: gradient differs by {err}");
    }
}

#[test]
fn faulty_plugins_fail_one_use_and_the_host_carries_on() {
    let dir = plugin_folder(&[
        (&built("libfault_fixtures.so"), "libfault_fixtures.so"),
        (&built("liblogistic_prior.so"), "liblogistic_prior.so"),
    ]);
    let registry = Registry::load(&SearchPath::only(&[dir.path().to_path_buf()])).unwrap();
    let theta = Tensor::ones([small_loss(&registry, "logistic").model.dim()], (Kind::Float, Device::Cpu))
        .set_requires_grad(true);
    let mut host = TchHost::new();
    for (name, expect) in [
        ("panicking", "panicked at"),
        ("not-a-number", "NaN/Inf"),
        ("wrong-shape", "expected a scalar"),
        ("released-handle", "released"),
    ] {
        let loss = small_loss(&registry, name);
        let err = loss.log_prior(&mut host, &theta).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, EngineError::PluginCall { .. }), "{name}: {msg}");
        assert!(msg.contains(name) && msg.contains("libfault_fixtures.so") && msg.contains(expect), "{name}: {msg}");
        if name == "not-a-number" {
            // The same output at overflowing parameters is the chain's divergence, not a fault.
            let huge = (&theta * 1e20).detach().set_requires_grad(true);
            assert!(matches!(loss.log_prior(&mut host, &huge), Err(EngineError::Diverged(_))));
        }
        // A healthy plugin still works afterwards.
        let good = small_loss(&registry, "logistic");
        assert!(good.log_prior(&mut host, &theta).is_ok());
    }
}

#[test]
fn libraries_built_against_another_interface_are_refused() {
    let fixtures = target_dir().join("interface-fixtures");
    let example = |feature: &str| -> PathBuf {
        cargo_build(
            &["logistic-prior-example"],
            &["--features", &format!("ablate-sdk/{feature}"), "--target-dir", fixtures.to_str().unwrap()],
        );
        let copy = fixtures.join(format!("{feature}.so"));
        std::fs::copy(fixtures.join("debug/liblogistic_prior.so"), &copy).unwrap();
        copy
    };
    for (feature, check) in [
        ("abi-mismatch-for-tests", "different plugin interface layout"),
        ("sdk-version-mismatch-for-tests", "SDK version"),
    ] {
        let lib = example(feature);
        let dir = plugin_folder(&[(&lib, "libmismatched.so")]);
        let err = Registry::load(&SearchPath::only(&[dir.path().to_path_buf()])).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("libmismatched.so") && msg.contains(check), "{feature}: {msg}");
        assert!(matches!(err, PluginError::AbiMismatch { .. } | PluginError::SdkVersion { .. }));
    }
}

#[test]
fn clashes_insecure_folders_and_foreign_libraries_are_refused() {
    let lib = built("liblogistic_prior.so");
    let dir = plugin_folder(&[(&lib, "liba.so"), (&lib, "libb.so")]);
    let msg = Registry::load(&SearchPath::only(&[dir.path().to_path_buf()])).unwrap_err().to_string();
    assert!(msg.contains("liba.so") && msg.contains("libb.so") && msg.contains("logistic"), "{msg}");

    use std::os::unix::fs::PermissionsExt;
    let dir = plugin_folder(&[(&lib, "liblogistic.so")]);
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let msg = Registry::load(&SearchPath::only(&[dir.path().to_path_buf()])).unwrap_err().to_string();
    assert!(msg.contains("writable by other users"), "{msg}");

    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("libforeign.so");
    let ok = Command::new("cc").args(["-shared", "-o"]).arg(&foreign).args(["-x", "c", "/dev/null"]).status().unwrap();
    assert!(ok.success());
    let msg = Registry::load(&SearchPath::only(&[dir.path().to_path_buf()])).unwrap_err().to_string();
    assert!(msg.contains("libforeign.so") && msg.contains("not an ablate plugin"), "{msg}");

    // A symlink in a safe folder to a library in a world-writable one is judged by its target.
    let open = plugin_folder(&[(&lib, "liblogistic.so")]);
    std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(open.path().join("liblogistic.so"), dir.path().join("liblink.so")).unwrap();
    let msg = Registry::load(&SearchPath::only(&[dir.path().to_path_buf()])).unwrap_err().to_string();
    assert!(msg.contains("writable by other users") && msg.contains(&open.path().display().to_string()), "{msg}");

    // A plugin author's own build folder, given by name, loads every library in it (only the
    // built-in folder of this workspace's build tree is limited to the built-in libraries).
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("release")).unwrap();
    std::fs::copy(&lib, dir.path().join("release/liblogistic.so")).unwrap();
    let registry = Registry::load(&SearchPath::only(&[dir.path().join("release")])).unwrap();
    assert_eq!(registry.libraries().len(), 1);

    // Two factories of one kind and name in one library.
    let fixtures = target_dir().join("interface-fixtures");
    cargo_build(
        &["ablate-fault-fixtures"],
        &["--features", "ablate-fault-fixtures/duplicate-name-for-tests", "--target-dir", fixtures.to_str().unwrap()],
    );
    let dir = plugin_folder(&[(&fixtures.join("debug/libfault_fixtures.so"), "libdup.so")]);
    let msg = Registry::load(&SearchPath::only(&[dir.path().to_path_buf()])).unwrap_err().to_string();
    assert!(msg.contains("libdup.so exports two prior factories named `panicking`"), "{msg}");

    // A plugin cut short (an interrupted copy): dlopen would map past its end and the process
    // would die of SIGBUS; it is refused by name first.
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(&lib).unwrap();
    std::fs::write(dir.path().join("libcut.so"), &bytes[..100_000]).unwrap();
    let msg = Registry::load(&SearchPath::only(&[dir.path().to_path_buf()])).unwrap_err().to_string();
    assert!(msg.contains("libcut.so") && msg.contains("cut short (100000 bytes"), "{msg}");

    // A library whose dependency is missing names the loader's reason, not just "dlopen failed".
    let dir = tempfile::tempdir().unwrap();
    let dep = dir.path().join("libdep.so");
    let needs = dir.path().join("libneeds.so");
    let ok = Command::new("cc").args(["-shared", "-o"]).arg(&dep).args(["-x", "c", "/dev/null"]).status().unwrap();
    assert!(ok.success());
    let ok = Command::new("cc")
        .args(["-shared", "-o"])
        .arg(&needs)
        .args(["-x", "c", "/dev/null", "-x", "none", "-Wl,--no-as-needed"])
        .arg(&dep)
        .status()
        .unwrap();
    assert!(ok.success());
    std::fs::remove_file(&dep).unwrap();
    let msg = Registry::load(&SearchPath::only(&[dir.path().to_path_buf()])).unwrap_err().to_string();
    assert!(msg.contains("libneeds.so") && msg.contains("libdep.so: cannot open shared object file"), "{msg}");
}

#[test]
fn a_host_op_that_libtorch_rejects_fails_the_call_naming_plugin_and_op() {
    // `clamp(1e-30, f64::MAX)` on float32: libtorch throws "value cannot be converted to type
    // float without overflow"; that used to panic inside the host table and abort the worker.
    let dir = plugin_folder(&[(&built("libfault_fixtures.so"), "libfault_fixtures.so")]);
    let registry = Registry::load(&SearchPath::only(&[dir.path().to_path_buf()])).unwrap();
    let loss = small_loss(&registry, "host-op-overflow");
    let leaves: Vec<Tensor> = loss
        .model
        .views(&Tensor::ones([loss.model.dim()], (Kind::Float, Device::Cpu)))
        .iter()
        .map(|v| v.detach().copy().set_requires_grad(true))
        .collect();
    let theta = Tensor::cat(&leaves.iter().map(|l| l.detach().reshape([-1])).collect::<Vec<_>>(), 0);
    let nll = leaves.iter().map(|l| l.sum(Kind::Float)).reduce(|a, b| a + b).unwrap();
    let mut host = TchHost::new();
    let err = loss.loss_gradient(&mut host, &nll, &leaves, &theta, 1).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, EngineError::PluginCall { .. }), "{msg}");
    for part in ["host-op-overflow", "grad_log_prob", "clamp", "float32"] {
        assert!(msg.contains(part), "`{part}` missing from: {msg}");
    }
    assert_eq!(host.live(), 0, "the failed call leaks no handles");
}

/// The prior's share of ∇G̃ through its declared isotropic precision (one fused P/n ⊙ θ) equals
/// the per-tensor `grad_log_prob` path, for the built-in Gaussian priors at non-default scales.
#[test]
fn a_declared_isotropic_precision_gives_the_gradient_of_the_per_tensor_path() {
    let registry = Registry::load(&SearchPath::standard(&[])).unwrap();
    for (name, params) in [
        ("gaussian", serde_json::json!({"scale": 0.7})),
        ("he-gaussian", serde_json::json!({"scale": 1.3})),
        ("gaussian", serde_json::json!({"scale": 2.0, "roles": ["weight"]})),
    ] {
        // One chain (θ [d]) and three batched chains (θ [3, d], leaves [3, ...]).
        for chains in [1i64, 3] {
            let mut loss = small_loss(&registry, name);
            loss.prior = ablate_engine::chain::Factor::new(registry.prior(name, &params).unwrap(), "prior", name, "-");
            let d = loss.model.dim();
            let values: Vec<f32> = (0..chains * d).map(|i| ((i as f32) * 0.37).sin() * 1.5).collect();
            let theta =
                if chains == 1 { Tensor::from_slice(&values) } else { Tensor::from_slice(&values).view([chains, d]) };
            let gradient = |loss: &Loss| {
                let views = if chains == 1 { loss.model.views(&theta) } else { loss.model.batched_views(&theta) };
                let leaves: Vec<Tensor> = views.iter().map(|v| v.detach().copy().set_requires_grad(true)).collect();
                let nll = leaves.iter().map(|l| l.square().sum(Kind::Float)).reduce(|a, b| a + b).unwrap();
                let grad = loss.loss_gradient(&mut TchHost::new(), &nll, &leaves, &theta, chains).unwrap();
                assert_eq!(grad.size(), theta.size());
                Vec::<f32>::try_from(grad.reshape([-1])).unwrap()
            };
            let per_tensor = gradient(&loss);
            let precision =
                ablate_engine::cell::flat_prior_precision(&loss.model, &loss.prior, &theta, loss.n).unwrap();
            assert!(precision.is_some(), "{name} declares no isotropic precision");
            loss.prior_precision = precision;
            let fused = gradient(&loss);
            assert_eq!(per_tensor.len(), fused.len());
            for (i, (a, b)) in per_tensor.iter().zip(&fused).enumerate() {
                assert!((a - b).abs() <= 1e-6 * (1.0 + a.abs()), "{name} {params} K={chains}: element {i}: {a} vs {b}");
            }
            // The prior matters here: without it the gradient would be 2θ alone.
            assert!(per_tensor.iter().zip(&values).any(|(g, x)| (g - 2.0 * x).abs() > 1e-3), "{name}");
            // And its scale is absolute, not only the same in both paths: ∇(NLL − log p(θ)/n) of
            // N(0, σ²) on every tensor is 2θ + θ/(σ²·n), with n the Loss's (10 here).
            if params.get("roles").is_none() && name == "gaussian" {
                let sigma2 = 0.7f32 * 0.7;
                for (i, (g, x)) in fused.iter().zip(&values).enumerate() {
                    let expected = 2.0 * x + x / (sigma2 * loss.n as f32);
                    assert!(
                        (g - expected).abs() <= 1e-5 * (1.0 + expected.abs()),
                        "K={chains} element {i}: {g} vs {expected}"
                    );
                }
            }
        }
    }
}

#[test]
fn the_run_start_gradient_guard_passes_every_builtin_prior_and_stops_a_wrong_gradient() {
    // A model with batch-norm parameters, which most priors skip (no autograd gradient there).
    let model = Model::new(
        &ModelConfig::Mlp { hidden: vec![6], activation: Activation::Relu },
        ModelToggles { norm: NormKind::BatchNorm, dropout: 0.0 },
        (1, 2, 3),
        4,
    )
    .unwrap();
    let builtin = Registry::load(&SearchPath::standard(&[])).unwrap();
    let priors: Vec<String> =
        builtin.factories().filter(|f| f.kind == ablate_sdk::FactorKind::Prior).map(|f| f.name.clone()).collect();
    assert!(priors.len() >= 5, "{priors:?}");
    for name in &priors {
        let prior =
            ablate_engine::chain::Factor::new(builtin.prior(name, &serde_json::json!({})).unwrap(), "prior", name, "-");
        ablate_engine::plugin_call::prior_gradient_guard(&model, &prior, Device::Cpu)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let dir = plugin_folder(&[(&built("libfault_fixtures.so"), "libfault_fixtures.so")]);
    let faults = Registry::load(&SearchPath::only(&[dir.path().to_path_buf()])).unwrap();
    for (name, during, expect) in [
        ("wrong-gradient", "grad_log_prob", "disagrees with autograd"),
        ("wrong-precision", "isotropic_precision", "disagrees with autograd of its log_prob"),
        ("host-op-overflow", "grad_log_prob", "host op `clamp`"),
        ("not-a-number", "log_prob", "NaN"),
    ] {
        let prior =
            ablate_engine::chain::Factor::new(faults.prior(name, &serde_json::json!({})).unwrap(), "prior", name, "-");
        let e = ablate_engine::plugin_call::prior_gradient_guard(&model, &prior, Device::Cpu).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(name) && msg.contains(during) && msg.contains(expect), "{name}: {msg}");
    }
}

/// A wide Gaussian, N(0, 100²), that declares itself flat (precision 0 instead of 1e-4): its
/// gradient −θ/10⁴ is within the elementwise tolerance of 0, so only the fitted precision
/// −Σg·θ/Σθ² catches it. Declaring the right 1e-4 passes.
struct WideGaussian {
    declared: f64,
}
impl ablate_sdk::Factory for WideGaussian {
    const NAME: &'static str = "wide-gaussian";
    const DESCRIPTION: &'static str = "N(0, 100²) with a declared precision";
    fn params() -> Vec<ablate_sdk::ParamSpec> {
        vec![ablate_sdk::ParamSpec::float("declared", 1e-4, "the declared precision")]
    }
    fn new(p: &ablate_sdk::Params) -> Result<Self, String> {
        Ok(Self { declared: p.f64("declared") })
    }
}
impl ablate_sdk::Prior for WideGaussian {
    fn log_prob<'o>(
        &self,
        _: ablate_sdk::Ops<'o>,
        params: &[ablate_sdk::Tensor<'o>],
        _: &[ablate_sdk::ParamInfo],
    ) -> Result<ablate_sdk::Tensor<'o>, String> {
        params.iter().map(|p| (p.square() * (-0.5e-4)).sum()).reduce(|a, b| a + b).ok_or_else(|| "no tensors".into())
    }
    fn sample<'o>(
        &self,
        ops: ablate_sdk::Ops<'o>,
        _: &ablate_sdk::ParamInfo,
        like: &ablate_sdk::Tensor<'o>,
    ) -> Result<Option<ablate_sdk::Tensor<'o>>, String> {
        Ok(Some(ops.randn_like(like) * 100.0))
    }
    fn isotropic_precision(&self, infos: &[ablate_sdk::ParamInfo]) -> Result<Option<Vec<f64>>, String> {
        Ok(Some(vec![self.declared; infos.len()]))
    }
}

#[test]
fn the_guard_catches_a_small_precision_declared_as_flat() {
    let model = Model::new(
        &ModelConfig::Mlp { hidden: vec![6], activation: Activation::Relu },
        ModelToggles { norm: NormKind::None, dropout: 0.0 },
        (1, 2, 3),
        4,
    )
    .unwrap();
    let guard = |declared: f64| {
        let json = format!(r#"{{"declared": {declared}}}"#);
        let obj = ablate_sdk::testkit::prior_box::<WideGaussian>(&json).unwrap();
        let prior = ablate_engine::chain::Factor::new(obj, "prior", "wide-gaussian", "-");
        ablate_engine::plugin_call::prior_gradient_guard(&model, &prior, Device::Cpu)
    };
    guard(1e-4).unwrap();
    let msg = guard(0.0).unwrap_err().to_string();
    assert!(msg.contains("isotropic_precision") && msg.contains("−Σg·θ/Σθ² = 1.0000"), "{msg}");
    // 0.2% off is beyond the relative tolerance of 1e-3; 0.01% is within it.
    assert!(guard(1.002e-4).is_err());
    guard(1.0001e-4).unwrap();
}
