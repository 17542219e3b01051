//! Conformance of the `__NAME__` integrator with the SDK test kit (pure-Rust host, no libtorch):
//! the stationary variance on a Gaussian target is T·σ², and the host's seed alone decides the
//! trajectory.

use __LIBNAME__::__TYPE__;
use ablate_sdk::testkit::suite::{assert_all_pass, cpu_integrator};
use ablate_sdk::testkit::{
    determinism_check, gaussian_target_temperature, integrator_box, CpuHost, GaussianTarget, SamplerSettings,
};

/// The checks `ablate plugins check` runs (the Gaussian target at T = 1 and 0.1).
#[test]
fn passes_the_conformance_suite() {
    assert_all_pass("__NAME__", &cpu_integrator::<__TYPE__>("{}"));
}

fn target() -> GaussianTarget {
    GaussianTarget { dim: 200, sigma_min: 0.3, sigma_max: 1.0, n: 10.0, groups: 2 }
}

/// lr for a step h = 0.05 relative to the fastest coordinate (with the mass on, all are equal).
fn settings(temperature: f64) -> SamplerSettings {
    let tg = target();
    let h: f64 = 0.05;
    let mut s = SamplerSettings::new(temperature, tg.n * h * h, 0.0);
    s.use_mass = true;
    s.burn_in = 500;
    s.steps = 8000;
    s.batches = 20;
    s
}

#[test]
fn samples_the_tempered_gaussian() {
    for (t, seed) in [(1.0, 3), (0.1, 4)] {
        let mut host = CpuHost::new(seed);
        let mut integrator = integrator_box::<__TYPE__>("{}").unwrap();
        let r = gaussian_target_temperature(&mut host, &mut integrator, &target(), &settings(t)).unwrap();
        eprintln!("{r}");
        r.check(4.0, None).unwrap();
    }
}

#[test]
fn the_host_seed_decides_the_trajectory() {
    let r = determinism_check(CpuHost::new, || integrator_box::<__TYPE__>("{}"), &target(), &settings(1.0), 5, 100)
        .unwrap();
    assert!(r.same_seed_identical && r.other_seed_differs, "{r:?}");
}
