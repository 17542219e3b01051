//! The conformance suite on the libtorch host (float32): every built-in plugin passes it, and
//! each fault fixture fails the one check its fault breaks.
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use ablate_engine::suite_host::{run_suite, SuiteHost};
use ablate_plugin_host::{Registry, SearchPath};
use ablate_sdk::testkit::suite::{self, Check, Outcome};
use ablate_sdk::testkit::TestHost;
use ablate_sdk::FactorKind;
use tch::Device;

fn show(name: &str, checks: &[Check]) {
    for c in checks {
        eprintln!("{name}: {c}");
    }
}

#[test]
fn every_builtin_plugin_passes_the_suite_on_the_libtorch_host() {
    // The built-in libraries next to this test binary (target/<profile>).
    let registry = Registry::load(&SearchPath::standard(&[])).unwrap();
    let factories: Vec<_> = registry.factories().cloned().collect();
    for kind in FactorKind::ALL {
        assert!(factories.iter().any(|f| f.kind == kind), "no built-in {} found", kind.as_str());
    }
    let mut failures = Vec::new();
    for f in &factories {
        let checks = run_suite(&registry, f, Device::Cpu);
        let label = format!("{} {}", f.kind.as_str(), f.name);
        show(&label, &checks);
        if checks.iter().any(Check::failed) || checks.is_empty() {
            failures.push(label);
        }
    }
    assert!(failures.is_empty(), "failing the suite on the libtorch host: {failures:?}");
}

#[test]
fn the_suite_host_releases_what_the_checks_create() {
    let registry = Registry::load(&SearchPath::standard(&[])).unwrap();
    let prior = registry.prior("gaussian", &serde_json::json!({})).unwrap();
    let mut host = SuiteHost::new(Device::Cpu, 3);
    let checks = suite::prior_checks(&mut host, &prior);
    assert!(checks.iter().all(|c| matches!(c.outcome, Outcome::Pass(_))), "{checks:?}");
    assert_eq!(host.live(), 0);
    assert!(host.take_error().is_none());
}
