//! Exact and qualitative properties: T = 0 is SGD with momentum, Metropolis acceptance versus
//! step size, seed determinism, momentum rescaling, parameter and context validation.
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use ablate_plugin_integrators::*;
use ablate_sdk::abi::{IntegratorBox, StepTensors};
use ablate_sdk::testkit::*;
use ablate_sdk::{Integrator, StepCtx};

fn boxed<I: Integrator>(json: &str) -> IntegratorBox {
    integrator_box::<I>(json).unwrap()
}

fn all() -> Vec<(&'static str, IntegratorBox)> {
    vec![
        ("sym-euler", boxed::<NaiveSymplecticEulerMCMC>("{}")),
        ("sgld", boxed::<Sgld>("{}")),
        ("baoab", boxed::<Baoab>("{}")),
        ("obabo", boxed::<Obabo>("{}")),
        ("obabo+mh", boxed::<Obabo>(r#"{"metropolis": true}"#)),
        ("bbk", boxed::<Bbk>("{}")),
        ("spv", boxed::<StochasticPositionVerlet>("{}")),
        ("msgnht", boxed::<MultivariateNoseHoover>("{}")),
        ("hmc", boxed::<Hmc>(r#"{"leapfrog_steps": 3}"#)),
    ]
}

fn small_target() -> GaussianTarget {
    GaussianTarget { dim: 100, sigma_min: 0.01, sigma_max: 1.0, n: 100.0, groups: 1 }
}

/// Drive a boxed integrator with an explicit gradient function on a CpuHost.
struct Driver {
    host: CpuHost,
    params: ablate_sdk::TensorId,
    mass: [ablate_sdk::TensorId; 4],
}

impl Driver {
    fn new(theta: &[f64], mass: &[f64]) -> Self {
        let mut host = CpuHost::new(9);
        let d = [theta.len() as i64];
        let params = host.insert(&d, theta);
        let m = |f: fn(f64) -> f64| mass.iter().map(|&x| f(x)).collect::<Vec<_>>();
        let mass = [
            host.insert(&d, &m(|x| x)),
            host.insert(&d, &m(|x| 1.0 / x)),
            host.insert(&d, &m(f64::sqrt)),
            host.insert(&d, &m(|x| 1.0 / x.sqrt())),
        ];
        Self { host, params, mass }
    }

    fn step(&mut self, integ: &mut IntegratorBox, ctx: &StepCtx, grad: &[f64]) -> Result<(), String> {
        let g = self.host.insert(&[grad.len() as i64], grad);
        let t = StepTensors {
            params: self.params,
            grad: g,
            mass: self.mass[0],
            mass_inv: self.mass[1],
            mass_sqrt: self.mass[2],
            mass_inv_sqrt: self.mass[3],
            temperature: ablate_sdk::TensorId::INVALID,
        };
        let r = integ.step(&mut self.host.host_ref(), ctx, &t).into_result();
        self.host.set_data(g, &vec![0.0; grad.len()]);
        ablate_sdk::abi::TensorHost::release(&mut self.host, g);
        r.map(|_| ()).map_err(|e| e.into_string())
    }
}

fn ctx(step: u64, lr: f64, beta: f64, c: f64, t: f64, n: f64) -> StepCtx {
    StepCtx { step, lr, momentum_decay: beta, timestep_factor: c, temperature: t, n, batch_size: 10 }
}

/// At T = 0 the symplectic Euler step is heavy-ball SGD: v ← β'v − ℓ'M⁻¹g, θ ← θ + v with
/// ℓ' = C²ℓ, β' = 1 − C(1 − β), compared with a hand-written loop (relative 1e-12).
#[test]
fn sym_euler_at_zero_temperature_is_sgd_with_momentum() {
    let d = 30;
    let curv: Vec<f64> = (0..d).map(|i| 0.5 + 0.1 * i as f64).collect();
    let shift: Vec<f64> = (0..d).map(|i| (i as f64 * 0.7).sin()).collect();
    let mass: Vec<f64> = (0..d).map(|i| 1.0 + (i % 4) as f64).collect();
    let theta0: Vec<f64> = (0..d).map(|i| (i as f64 * 0.3).cos()).collect();
    let grad_at =
        |th: &[f64]| -> Vec<f64> { th.iter().zip(&curv).zip(&shift).map(|((t, c), s)| c * (t - s)).collect() };
    for &(c, lr, beta, n) in &[(1.0, 0.05, 0.9, 50_000.0), (0.37, 0.1, 0.98, 1000.0)] {
        let mut drv = Driver::new(&theta0, &mass);
        let mut integ = boxed::<NaiveSymplecticEulerMCMC>("{}");
        integ.init(&mut drv.host.host_ref(), drv.params).into_result().unwrap();
        let (lr_c, beta_c): (f64, f64) = (c * c * lr, 1.0 - c * (1.0 - beta));
        let mut th = theta0.clone();
        let mut v = vec![0.0; d];
        for step in 1..=200 {
            let g = grad_at(drv.host.get(drv.params));
            drv.step(&mut integ, &ctx(step, lr, beta, c, 0.0, n), &g).unwrap();
            let g = grad_at(&th);
            for i in 0..d {
                v[i] = beta_c * v[i] - lr_c * g[i] / mass[i];
                th[i] += v[i];
            }
            let got = drv.host.get(drv.params);
            for i in 0..d {
                let tol = 1e-12 * th[i].abs().max(1.0);
                assert!(
                    (got[i] - th[i]).abs() <= tol,
                    "C={c} step {step} element {i}: integrator {} vs SGD {}",
                    got[i],
                    th[i]
                );
            }
        }
        assert!(drv.host.take_error().is_none());
    }
}

/// At T = 0 every integrator descends a quadratic (no NaN, no noise draws that move θ up).
#[test]
fn zero_temperature_descends() {
    let d = 50;
    let theta0 = vec![1.0; d];
    let mass = vec![1.0; d];
    for (name, mut integ) in all() {
        let mut drv = Driver::new(&theta0, &mass);
        drv.host.set_potential(Some(Box::new(|th: &[f64]| (0.5 * th.iter().map(|t| t * t).sum::<f64>(), th.to_vec()))));
        integ.init(&mut drv.host.host_ref(), drv.params).into_result().unwrap();
        for step in 1..=300 {
            // U = n·Σθ²/2 / n: grad of the mean loss is θ/n·... use n = 1 for simplicity.
            let g = drv.host.get(drv.params).to_vec();
            drv.step(&mut integ, &ctx(step, 0.01, 0.9, 1.0, 0.0, 1.0), &g).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let u: f64 = drv.host.get(drv.params).iter().map(|t| t * t).sum();
        assert!(u.is_finite() && u < 0.5 * d as f64, "{name}: Σθ² = {u}");
        assert!(drv.host.take_error().is_none(), "{name}");
    }
}

/// Metropolis acceptance on the Gaussian target (d = 100, mass on, ω = 1) as the step grows:
/// ≈ 1 for hω = 0.01 (energy error O(d·(hω)⁴)), strictly falling through hω = 0.3, 0.8, 1.4
/// (differences far beyond the sampling error of 150 steps).
fn acceptance_sweep(name: &str, make: fn() -> IntegratorBox, lr_for_h: fn(f64, f64) -> f64) {
    let tg = small_target();
    let mut acc = Vec::new();
    for &hw in &[0.01, 0.3, 0.8, 1.4] {
        let mut s = SamplerSettings::new(1.0, lr_for_h(hw, tg.n), 0.9);
        s.use_mass = true;
        s.burn_in = 20;
        s.steps = 150;
        s.batches = 2;
        s.label = format!("{name} hω={hw}");
        let mut host = CpuHost::new(21);
        let mut integ = make();
        let r = gaussian_target_temperature(&mut host, &mut integ, &tg, &s).unwrap();
        let a = r.acceptance_mean.expect("acceptance reported");
        eprintln!("{name}: hω = {hw}: mean acceptance {a:.4}");
        acc.push(a);
    }
    assert!(acc[0] > 0.999, "{name}: {acc:?}");
    assert!(acc.windows(2).all(|w| w[1] < w[0]), "{name}: acceptance must fall as the step grows: {acc:?}");
    assert!(acc[3] < 0.9, "{name}: {acc:?}");
}

#[test]
fn hmc_acceptance_falls_with_step_size() {
    acceptance_sweep("hmc", || boxed::<Hmc>(r#"{"leapfrog_steps": 5}"#), |h, n| n * h * h);
}

/// HMC at temperature T draws m ~ N(0, T·M) and accepts with exp(−ΔH/T): on a quadratic U the
/// chain at T is the T = 1 chain in the coordinates θ/sqrt(T), so with the same step size and the
/// same random numbers it makes the same Metropolis decisions. One `sampler.lr` therefore serves
/// every temperature of a reference grid (the trajectory length scales with the posterior's width
/// by itself).
#[test]
fn hmc_acceptance_on_a_gaussian_target_does_not_depend_on_t() {
    let tg = small_target();
    let run = |temperature: f64| {
        let mut s = SamplerSettings::new(temperature, tg.n * 0.8 * 0.8, 0.9);
        s.use_mass = true;
        s.burn_in = 20;
        s.steps = 150;
        s.batches = 2;
        s.label = format!("hmc T={temperature}");
        let mut host = CpuHost::new(21);
        let mut integ = boxed::<Hmc>(r#"{"leapfrog_steps": 5}"#);
        let r = gaussian_target_temperature(&mut host, &mut integ, &tg, &s).unwrap();
        r.acceptance_mean.expect("acceptance reported")
    };
    let at1 = run(1.0);
    assert!(at1 > 0.2 && at1 < 0.99, "{at1}");
    for t in [0.25, 0.01] {
        let a = run(t);
        assert!((a - at1).abs() < 1e-9, "T = {t}: {a} vs {at1}");
    }
}

#[test]
fn obabo_metropolis_acceptance_falls_with_step_size() {
    acceptance_sweep("obabo+mh", || boxed::<Obabo>(r#"{"metropolis": true}"#), |h, n| n * h * h * (1.0 + 0.9) / 2.0);
}

#[test]
fn same_seed_same_chain_for_every_integrator() {
    let tg = small_target();
    let mut s = SamplerSettings::new(1.0, 0.25, 0.9);
    s.use_mass = true;
    for (name, _) in all() {
        let make = || Ok(all().into_iter().find(|(n, _)| *n == name).map(|(_, b)| b).unwrap());
        let r = determinism_check(CpuHost::new, make, &tg, &s, 5, 30).unwrap();
        assert!(r.same_seed_identical, "{name}: {r:?}");
        assert!(r.other_seed_differs, "{name}: {r:?}");
    }
}

#[test]
fn rescale_momenta_multiplies_momenta_only() {
    let tg = small_target();
    let mut s = SamplerSettings::new(1.0, 0.25, 0.9);
    s.use_mass = true;
    for (name, mut integ) in all() {
        let mut host = CpuHost::new(3);
        rescale_check(&mut host, &mut integ, &tg, &s, 10).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn tensors_do_not_leak_per_step() {
    let theta0 = vec![0.5; 20];
    let mass = vec![2.0; 20];
    for (name, mut integ) in all() {
        let mut drv = Driver::new(&theta0, &mass);
        drv.host.set_potential(Some(Box::new(|th: &[f64]| (0.5 * th.iter().map(|t| t * t).sum::<f64>(), th.to_vec()))));
        integ.init(&mut drv.host.host_ref(), drv.params).into_result().unwrap();
        let g = vec![0.1; 20];
        drv.step(&mut integ, &ctx(1, 0.01, 0.9, 1.0, 1.0, 10.0), &g).unwrap();
        let live = drv.host.live_tensors();
        for step in 2..=20 {
            drv.step(&mut integ, &ctx(step, 0.01, 0.9, 1.0, 1.0, 10.0), &g).unwrap();
        }
        assert_eq!(drv.host.live_tensors(), live, "{name} leaks tensors");
    }
}

#[test]
fn bad_parameters_and_contexts_are_errors() {
    assert!(integrator_box::<Hmc>(r#"{"leapfrog_steps": 0}"#).is_err());
    assert!(integrator_box::<Obabo>(r#"{"metropolis": 1}"#).is_err());
    assert!(integrator_box::<Baoab>(r#"{"unknown": 1}"#).is_err());
    assert!(integrator_box::<NaiveSymplecticEulerMCMC>(r#"{"momentum_init": "random"}"#).is_err());
    let theta0 = vec![0.5; 4];
    let mass = vec![1.0; 4];
    for (name, mut integ) in all() {
        let mut drv = Driver::new(&theta0, &mass);
        integ.init(&mut drv.host.host_ref(), drv.params).into_result().unwrap();
        let g = vec![0.0; 4];
        for bad in [
            ctx(1, 0.1, 1.0, 1.0, 1.0, 10.0),
            ctx(1, -0.1, 0.9, 1.0, 1.0, 10.0),
            ctx(1, 0.1, 0.9, 1.0, -1.0, 10.0),
            ctx(1, 0.1, 0.9, 1.0, 1.0, 0.0),
        ] {
            assert!(drv.step(&mut integ, &bad, &g).is_err(), "{name} accepted {bad:?}");
        }
    }
    // HMC and OBABO+MH need the host's potential.
    for mut integ in [boxed::<Hmc>("{}"), boxed::<Obabo>(r#"{"metropolis": true}"#)] {
        let mut drv = Driver::new(&theta0, &mass);
        integ.init(&mut drv.host.host_ref(), drv.params).into_result().unwrap();
        let e = drv.step(&mut integ, &ctx(1, 0.1, 0.9, 1.0, 1.0, 10.0), &[0.0; 4]).unwrap_err();
        assert!(e.contains("potential"), "{e}");
    }
}

#[test]
fn gaussian_momentum_init_starts_at_temperature() {
    let d = 2000;
    let mut drv = Driver::new(&vec![0.0; d], &vec![4.0; d]);
    let mut integ = boxed::<NaiveSymplecticEulerMCMC>(r#"{"momentum_init": "gaussian"}"#);
    integ.init(&mut drv.host.host_ref(), drv.params).into_result().unwrap();
    // One step with zero gradient and C = 0 (no friction, no noise, h = 0): momenta = m₀.
    drv.step(&mut integ, &ctx(1, 0.1, 0.9, 0.0, 0.5, 10.0), &vec![0.0; d]).unwrap();
    let k = integ.kinetic(&mut drv.host.host_ref(), drv.mass[1]).into_result().unwrap().unwrap();
    let kin = drv.host.get(k);
    let mean = kin.iter().sum::<f64>() / d as f64;
    // m²/M ~ T·χ²₁: mean T, standard error T·sqrt(2/d).
    let se = 0.5 * (2.0 / d as f64).sqrt();
    assert!((mean - 0.5).abs() < 4.0 * se, "mean kinetic {mean}");
}
