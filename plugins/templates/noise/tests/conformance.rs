//! Checks of the `__NAME__` noise model: the conformance suite (what `ablate plugins check`
//! runs), and the author trait driven on the test kit's pure-Rust host directly.

use __LIBNAME__::__TYPE__;
use ablate_sdk::testkit::suite::{assert_all_pass, cpu_noise};

#[test]
fn passes_the_conformance_suite() {
    assert_all_pass("__NAME__", &cpu_noise::<__TYPE__>("{}"));
}
use ablate_sdk::testkit::{noise_box, CpuHost};
use ablate_sdk::{Factory, NoiseModel, NoiseView, Params, StepCtx};

fn build(json: &str) -> __TYPE__ {
    let params = Params::parse(json, &__TYPE__::params()).unwrap();
    __TYPE__::new(&params).unwrap()
}

#[test]
fn plan_uses_the_configured_batch_by_default() {
    assert_eq!(build("{}").plan(100, 5000).gradient_batch, 100);
    assert_eq!(build(r#"{"batch_size": 32}"#).plan(100, 5000).gradient_batch, 32);
}

#[test]
fn transform_leaves_the_gradient_unchanged() {
    let mut noise = build("{}");
    let mut host = CpuHost::new(1);
    let grad = host.insert(&[4], &[1.0, -2.0, 3.0, 0.5]);
    let var = host.insert(&[4], &[0.1; 4]);
    let var_t = host.insert(&[1], &[0.1]);
    let ctx = StepCtx { step: 1, lr: 0.1, momentum_decay: 0.9, timestep_factor: 1.0, temperature: 1.0, n: 100.0, batch_size: 10 };
    host.with_ops(|ops| {
        let g = ops.borrow(grad);
        let stats = NoiseView { var_elementwise: ops.borrow(var), var_per_tensor: ops.borrow(var_t), batch_size: 10 };
        noise.transform(ops, &ctx, &g, &stats).unwrap();
    });
    assert_eq!(host.get(grad), &[1.0, -2.0, 3.0, 0.5]);
}

#[test]
fn bad_parameters_are_errors() {
    assert!(noise_box::<__TYPE__>(r#"{"batch_size": -3}"#).is_err());
    assert!(noise_box::<__TYPE__>(r#"{"batch": 3}"#).is_err());
    assert!(noise_box::<__TYPE__>("{}").is_ok());
}
