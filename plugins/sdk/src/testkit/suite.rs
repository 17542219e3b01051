//! The conformance suite: every check a factory must pass, runnable on any [`TestHost`].
//!
//! The same functions run in a plugin crate's `cargo test` (on [`CpuHost`](super::CpuHost))
//! and in `ablate plugins check FILE.so` (on the libtorch host), so an author sees the same
//! verdicts in both places. Each function returns one [`Check`] per property, never panics,
//! and turns host errors and plugin errors into failed checks that quote them.
//!
//! | kind | checks |
//! |---|---|
//! | prior | `log_prob finite`, `log_prob additive over stacked chains`, `grad_log_prob vs finite differences`, `isotropic precision vs finite differences`, `samples follow log_prob` |
//! | integrator | `Gaussian target T=1`, `Gaussian target T=0.1` |
//! | likelihood | `nll finite`, `nll is a per-example mean`, `nll depends on the logits`, `effective_n positive`, `augment keeps the shape` |
//! | noise | `plan`, `transform unbiased` |
//!
//! Tolerances follow the host's precision ([`TestHost::float32`]) and, for the statistical
//! checks, the sample: a statistic fails when it is more than [`Z_MAX`] standard errors from
//! its expected value.

use abi_stable::std_types::{ROption, RSlice};

use super::harness::{
    batched_gaussian_target_temperatures, finite_difference_log_prob_grad, gaussian_target_temperature, param_info,
    prior_grad_log_prob, prior_log_prob, GaussianTarget, SamplerSettings,
};
use super::TestHost;
use crate::abi::{IntegratorBox, LikelihoodBox, NoiseBox, NoiseStats, ParamInfo, PriorBox, Role, StepCtx};

/// How many standard errors a statistic may be off before its check fails. With the suite's
/// fixed seeds a correct plugin passes deterministically; 5 SE would be passed by chance with
/// probability 1 − 6e-7 under another seed.
pub const Z_MAX: f64 = 5.0;

/// The verdict of one check.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The property holds; the text gives the measured numbers.
    Pass(String),
    /// The property does not hold; the text says what was measured and what was expected.
    Fail(String),
    /// Not applicable or informational (e.g. no closed-form gradient); not a failure.
    Note(String),
}

/// One named check and its outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    /// The check's name, as `ablate plugins check` prints it.
    pub name: &'static str,
    /// The verdict.
    pub outcome: Outcome,
}

impl Check {
    fn new(name: &'static str, r: Result<Outcome, String>) -> Self {
        Self { name, outcome: r.unwrap_or_else(Outcome::Fail) }
    }
    /// Whether this check failed.
    pub fn failed(&self) -> bool {
        matches!(self.outcome, Outcome::Fail(_))
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (tag, text) = match &self.outcome {
            Outcome::Pass(t) => ("ok  ", t),
            Outcome::Fail(t) => ("FAIL", t),
            Outcome::Note(t) => ("note", t),
        };
        write!(f, "{tag}  {}: {text}", self.name)
    }
}

/// Panic if any check failed, listing them all (for `cargo test`).
pub fn assert_all_pass(what: &str, checks: &[Check]) {
    let report: Vec<String> = checks.iter().map(|c| format!("  {c}")).collect();
    assert!(!checks.iter().any(Check::failed), "{what} fails the conformance suite:\n{}", report.join("\n"));
}

/// Tolerances of one host precision.
struct Precision {
    /// Relative tolerance of a sum of a few dozen terms.
    sum_rel: f64,
    /// Finite-difference step and tolerance (relative to 1 + |g|).
    fd_step: f64,
    fd_tol: f64,
}

fn precision<H: TestHost>(host: &H) -> Precision {
    if host.float32() {
        Precision { sum_rel: 1e-4, fd_step: 1e-2, fd_tol: 2e-3 }
    } else {
        Precision { sum_rel: 1e-10, fd_step: 1e-5, fd_tol: 1e-6 }
    }
}

/// Deterministic values of magnitude 0.1–1.5 with alternating signs (away from 0, where
/// |x|-type densities have a kink).
fn values(n: usize, phase: f64) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let frac = ((i as f64 + 1.0) * 0.618_033_988_749_895 + phase).fract();
            let sign = if i % 2 == 0 { 1.0 } else { -1.0 };
            sign * (0.1 + 1.4 * frac)
        })
        .collect()
}

/// The parameter tensors the prior checks use: two linear layers, weights and biases, and a
/// 2×3 convolution kernel [out 2, in 1, 2, 3] (for priors that treat kernels differently).
pub fn prior_fixture(phase: f64) -> Vec<(ParamInfo, Vec<f64>)> {
    let infos = [
        param_info("fc1.weight", Role::Weight, &[4, 3], 3, 4, 0),
        param_info("fc1.bias", Role::Bias, &[4], 3, 4, 12),
        param_info("fc2.weight", Role::Weight, &[2, 4], 4, 2, 16),
        param_info("fc2.bias", Role::Bias, &[2], 4, 2, 24),
        param_info("conv.weight", Role::Weight, &[2, 1, 2, 3], 6, 12, 26),
    ];
    infos
        .into_iter()
        .enumerate()
        .map(|(k, info)| {
            let n = info.numel as usize;
            (info, values(n, phase + 0.1 * k as f64))
        })
        .collect()
}

/// The prior checks (module docs). `prior` is used as built (any parameters).
pub fn prior_checks<H: TestHost>(host: &mut H, prior: &PriorBox) -> Vec<Check> {
    let p = precision(host);
    let fixture = prior_fixture(0.0);
    let mut checks = Vec::new();
    let finite = prior_log_prob(host, prior, &fixture).and_then(|v| {
        if v.is_finite() {
            Ok(Outcome::Pass(format!("log p = {v:.6e} at 38 parameters in [-1.5, 1.5]")))
        } else {
            Err(format!("log_prob returned {v} at finite parameters in [-1.5, 1.5] (it must be finite there)"))
        }
    });
    let usable = finite.is_ok();
    checks.push(Check::new("log_prob finite", finite));
    if !usable {
        return checks;
    }
    checks.push(Check::new("log_prob additive over stacked chains", additivity(host, prior, &p)));
    checks.push(Check::new("grad_log_prob vs finite differences", gradient(host, prior, &fixture, &p)));
    checks.push(Check::new("isotropic precision vs finite differences", isotropic(host, prior, &fixture, &p)));
    checks.push(Check::new("samples follow log_prob", stein(host, prior, &p)));
    checks
}

/// log p of two chains stacked along a leading dimension equals the sum of each chain's log p.
/// As in a batched run, each tensor is [2, ...shape] while its description keeps the one-chain
/// shape (`ParamInfo::numel` is one chain's). Not additive is a note: such a prior runs unbatched.
fn additivity<H: TestHost>(host: &mut H, prior: &PriorBox, p: &Precision) -> Result<Outcome, String> {
    let a = prior_fixture(0.0);
    let b = prior_fixture(0.37);
    let lp_a = prior_log_prob(host, prior, &a)?;
    let lp_b = prior_log_prob(host, prior, &b)?;
    let together = match stacked_log_prob(host, prior, &a, &b) {
        Ok(v) => v,
        Err(e) => {
            return Ok(Outcome::Note(format!(
                "log_prob of stacked chains failed ({e}); cells with this prior run one chain at a time"
            )))
        }
    };
    let apart = lp_a + lp_b;
    if (together - apart).abs() <= p.sum_rel * (1.0 + apart.abs()) {
        Ok(Outcome::Pass(format!("stacked {together:.6e} = {lp_a:.6e} + {lp_b:.6e}")))
    } else {
        Ok(Outcome::Note(format!(
            "log p of two stacked chains {together:.6e} ≠ the sum of each {apart:.6e}: cells with this prior run one \
             chain at a time"
        )))
    }
}

/// log p of the chains `a` and `b` stacked as [2, ...shape] tensors with `a`'s descriptions.
fn stacked_log_prob<H: TestHost>(
    host: &mut H,
    prior: &PriorBox,
    a: &[(ParamInfo, Vec<f64>)],
    b: &[(ParamInfo, Vec<f64>)],
) -> Result<f64, String> {
    let ids: Vec<_> = a
        .iter()
        .zip(b)
        .map(|((info, x), (_, y))| {
            let mut shape = vec![2];
            shape.extend(info.shape.iter().copied());
            host.upload(&shape, &[x.as_slice(), y.as_slice()].concat())
        })
        .collect();
    let infos: Vec<ParamInfo> = a.iter().map(|(i, _)| i.clone()).collect();
    let r = prior
        .log_prob(&mut host.host_ref(), RSlice::from_slice(&ids), RSlice::from_slice(&infos))
        .into_result()
        .map_err(|e| e.into_string());
    let value = {
        let mut h = host.host_ref();
        let value = r.map(|id| {
            let v = if h.shape(id).is_empty() { h.item(id) } else { f64::NAN };
            h.release(id);
            v
        });
        for id in ids {
            h.release(id);
        }
        value
    };
    if let Some(e) = host.take_error() {
        return Err(format!("host error: {e}"));
    }
    match value? {
        v if v.is_nan() => Err("log_prob of stacked chains is not a 0-d number".into()),
        v => Ok(v),
    }
}

/// The closed-form gradient against central finite differences of `log_prob`.
fn gradient<H: TestHost>(
    host: &mut H,
    prior: &PriorBox,
    fixture: &[(ParamInfo, Vec<f64>)],
    p: &Precision,
) -> Result<Outcome, String> {
    let Some(closed) = prior_grad_log_prob(host, prior, fixture)? else {
        return Ok(Outcome::Note("no closed-form gradient (the host differentiates log_prob)".into()));
    };
    let fd = finite_difference_log_prob_grad(host, prior, fixture, p.fd_step)?;
    let worst = worst_disagreement(fixture, &closed, &fd, p.fd_tol, "grad_log_prob");
    if worst.0 <= 1.0 {
        Ok(Outcome::Pass(format!("38 elements agree within {:.0e}·(1 + |g|)", p.fd_tol)))
    } else {
        Err(format!(
            "{} (tolerance {:.0e}·(1 + |g|)); the host uses grad_log_prob in place of autograd, so it must be \
             ∇ log_prob exactly",
            worst.1, p.fd_tol
        ))
    }
}

/// A declared isotropic precision P (`isotropic_precision`) against central finite differences
/// of `log_prob`: the host uses −P ⊙ θ as the prior's gradient, so it must be ∇ log p.
fn isotropic<H: TestHost>(
    host: &mut H,
    prior: &PriorBox,
    fixture: &[(ParamInfo, Vec<f64>)],
    p: &Precision,
) -> Result<Outcome, String> {
    let infos: Vec<ParamInfo> = fixture.iter().map(|(info, _)| info.clone()).collect();
    let declared = prior
        .isotropic_precision(abi_stable::std_types::RSlice::from_slice(&infos))
        .into_result()
        .map_err(|e| format!("isotropic_precision: {}", e.into_string()))?;
    let abi_stable::std_types::ROption::RSome(precision) = declared else {
        return Ok(Outcome::Note("no isotropic precision declared (the host calls grad_log_prob)".into()));
    };
    if precision.len() != fixture.len() {
        return Err(format!("isotropic_precision returned {} values for {} tensors", precision.len(), fixture.len()));
    }
    if let Some(((info, _), prec)) = fixture.iter().zip(precision.iter()).find(|(_, p)| !(p.is_finite() && **p >= 0.0))
    {
        return Err(format!("`{}`: precision {prec} (it must be finite and ≥ 0)", info.name));
    }
    let declared: Vec<Vec<f64>> = fixture
        .iter()
        .zip(precision.iter())
        .map(|((_, theta), prec)| theta.iter().map(|x| -prec * x).collect())
        .collect();
    let fd = finite_difference_log_prob_grad(host, prior, fixture, p.fd_step)?;
    let worst = worst_disagreement(fixture, &declared, &fd, p.fd_tol, "−precision·θ");
    if worst.0 <= 1.0 {
        Ok(Outcome::Pass(format!("−precision·θ agrees with finite differences within {:.0e}·(1 + |g|)", p.fd_tol)))
    } else {
        Err(format!(
            "{} (tolerance {:.0e}·(1 + |g|)); declare a precision only for a zero-mean isotropic Gaussian",
            worst.1, p.fd_tol
        ))
    }
}

/// The element of `values` (one vector per fixture tensor) farthest from the finite differences
/// `fd`, as (|value − fd| / (tol·(1 + |fd|)), a description naming `what`); a non-finite
/// disagreement is infinite. Within tolerance everywhere when the first is ≤ 1.
fn worst_disagreement(
    fixture: &[(ParamInfo, Vec<f64>)],
    values: &[Vec<f64>],
    fd: &[Vec<f64>],
    tol: f64,
    what: &str,
) -> (f64, String) {
    let mut worst = (0.0f64, String::new());
    for ((info, _), (c, f)) in fixture.iter().zip(values.iter().zip(fd)) {
        for (i, (a, b)) in c.iter().zip(f).enumerate() {
            let excess = (a - b).abs() / (tol * (1.0 + b.abs()));
            if !excess.is_finite() || excess > worst.0 {
                worst = (
                    if excess.is_finite() { excess } else { f64::INFINITY },
                    format!("`{}`[{i}]: {what} {a:.6e}, finite differences {b:.6e}", info.name),
                );
            }
        }
    }
    worst
}

/// Stein's identity for the scale: for x ~ p (a product of 1-d densities with x·p(x) → 0 in
/// the tails), E[1 + x·∂log p(x)] = 0 per element. Summed over a draw of N elements,
/// Σ x·∂log p = d/ds log p(s·x) at s = 1, a central difference of two `log_prob` calls. Each
/// of 20 draws of a [20, 10] weight gives one mean over its 200 elements; the check is a
/// z-test of their average (standard error from the 20 draw means). It catches a `sample`
/// whose scale disagrees with `log_prob` (a 10% scale error of a Gaussian gives z ≈ 10).
fn stein<H: TestHost>(host: &mut H, prior: &PriorBox, p: &Precision) -> Result<Outcome, String> {
    let info = param_info("fc.weight", Role::Weight, &[20, 10], 10, 20, 0);
    let like = host.upload(&[20, 10], &[0.0; 200]);
    let draws = 20;
    let h = p.fd_step;
    let mut means = Vec::with_capacity(draws);
    let mut result = Ok(());
    for _ in 0..draws {
        let r = prior.sample(&mut host.host_ref(), &info, like).into_result();
        let id = match r {
            Err(e) => {
                result = Err(format!("sample: {}", e.into_string()));
                break;
            }
            Ok(ROption::RNone) => {
                host.host_ref().release(like);
                return Ok(Outcome::Note(
                    "sample draws nothing for weights (the host keeps its initialisation)".into(),
                ));
            }
            Ok(ROption::RSome(id)) => id,
        };
        if let Some(e) = host.take_error() {
            result = Err(format!("sample: host error: {e}"));
            break;
        }
        let shape = host.host_ref().shape(id).into_vec();
        let x = host.download(id);
        host.host_ref().release(id);
        if shape != [20, 10] {
            result = Err(format!("sample returned shape {shape:?} for a [20, 10] weight"));
            break;
        }
        if let Some(bad) = x.iter().find(|v| !v.is_finite()) {
            result = Err(format!("sample returned {bad}"));
            break;
        }
        let scaled = |s: f64| vec![(info.clone(), x.iter().map(|v| v * s).collect::<Vec<f64>>())];
        let up = prior_log_prob(host, prior, &scaled(1.0 + h))?;
        let down = prior_log_prob(host, prior, &scaled(1.0 - h))?;
        means.push(1.0 + (up - down) / (2.0 * h) / x.len() as f64);
    }
    host.host_ref().release(like);
    result?;
    let n = means.len() as f64;
    let mean = means.iter().sum::<f64>() / n;
    let se = (means.iter().map(|m| (m - mean).powi(2)).sum::<f64>() / (n - 1.0) / n).sqrt();
    let z = mean / se;
    let text = format!("E[1 + x·∂log p(x)] = {mean:.4} ± {se:.4} over 4000 draws (expected 0, z = {z:.2})");
    // se = 0 with mean 0: every draw satisfies the identity exactly.
    if (z.is_finite() && z.abs() <= Z_MAX) || (se == 0.0 && mean.abs() < 1e-9) {
        Ok(Outcome::Pass(text))
    } else {
        Err(format!("{text}: the draws of `sample` do not follow exp(log_prob) (wrong scale or shape?)"))
    }
}

/// The Gaussian target of the integrator checks: d = 200, σ ∈ [0.1, 1], n = 100, mass on
/// (every coordinate oscillates at ω = 1), lr = n·0.05² and β = 0.99: a step h ≈ 0.007–0.05 in
/// every built-in parameterisation, where discretisation biases are ≈ 0.5% or less (mSGNHT's
/// thermostat biases the position variance by ≈ −(1−β)/2, −5% at β = 0.9).
pub fn integrator_target() -> (GaussianTarget, SamplerSettings) {
    let target = GaussianTarget { dim: 200, sigma_min: 0.1, sigma_max: 1.0, n: 100.0, groups: 2 };
    let mut s = SamplerSettings::new(1.0, 100.0 * 0.05 * 0.05, 0.99);
    s.use_mass = true;
    s.burn_in = 200;
    s.steps = 4000;
    s.thin = 2;
    s.batches = 20;
    (target, s)
}

/// The integrator checks: the stationary variance of θ on [`integrator_target`] at T = 1 and
/// T = 0.1 (variance ratio 1 within [`Z_MAX`] standard errors, overall and per σ group; the
/// kinetic temperature is reported). `make` builds a fresh integrator per run.
pub fn integrator_checks<H: TestHost>(
    host: &mut H,
    make: &mut dyn FnMut() -> Result<IntegratorBox, String>,
) -> Vec<Check> {
    let mut checks = Vec::new();
    for (name, t) in [("Gaussian target T=1", 1.0), ("Gaussian target T=0.1", 0.1)] {
        let r = (|| {
            let (target, mut s) = integrator_target();
            s.temperature = t;
            s.label = format!("T={t}");
            let mut integ = make()?;
            let r = gaussian_target_temperature(host, &mut integ, &target, &s)?;
            let kin = match (r.kinetic_t, r.kinetic_t_se) {
                (Some(k), Some(se)) => format!(", kinetic T {k:.4} ± {se:.4}"),
                _ => String::new(),
            };
            let text = format!(
                "variance ratio {:.4} ± {:.4} (z = {:.2}){kin} over {} samples",
                r.var_ratio_mean,
                r.var_ratio_se,
                r.var_ratio_z(),
                r.samples
            );
            r.check_expected(Z_MAX, 1.0, None)
                .map(|()| Outcome::Pass(text.clone()))
                .map_err(|e| format!("{text}: θ does not sample exp(−U/T): {}", e.lines().next().unwrap_or("")))
        })();
        checks.push(Check::new(name, r));
    }
    // A batchable integrator also runs chains at several temperatures at once: each must sample
    // its own (the host hands the per-chain temperatures as a [K, 1] tensor and the hottest as
    // `StepCtx::temperature`).
    if make().is_ok_and(|i| i.batchable()) {
        let r = (|| {
            let (target, s) = integrator_target();
            let mut integ = make()?;
            let per_chain = batched_gaussian_target_temperatures(host, &mut integ, &target, &s, &[1.0, 0.1])?;
            let text = per_chain
                .iter()
                .map(|r| {
                    format!(
                        "T={}: variance ratio {:.4} ± {:.4} (z = {:.2})",
                        r.temperature,
                        r.var_ratio_mean,
                        r.var_ratio_se,
                        r.var_ratio_z()
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            for r in &per_chain {
                r.check_expected(Z_MAX, 1.0, None).map_err(|e| {
                    format!(
                        "{text}: the chain at T={} does not sample exp(−U/T) (noise from `StepCtx::temperature`, the \
                         hottest chain's, instead of `t.temperature`?): {}",
                        r.temperature,
                        e.lines().next().unwrap_or("")
                    )
                })?;
            }
            Ok(Outcome::Pass(text))
        })();
        checks.push(Check::new("batched chains at T=1 and T=0.1", r));
    }
    checks
}

/// The likelihood checks: the NLL of a batch of 8 logits over 3 classes is finite and 0-d; it
/// is a per-example mean (the NLL of a batch equals the mean of its two halves' NLLs, so a
/// minibatch estimate is unbiased); it changes when a logit does; `effective_n` is positive;
/// `augment` keeps the shape.
pub fn likelihood_checks<H: TestHost>(host: &mut H, lik: &mut LikelihoodBox) -> Vec<Check> {
    let p = precision(host);
    let logits: Vec<f64> = values(24, 0.2).iter().map(|v| v * 2.0).collect();
    let labels: Vec<f64> = (0..8).map(|i| (i % 3) as f64).collect();
    let nll_of = |host: &mut H, logits: &[f64], rows: std::ops::Range<usize>| -> Result<f64, String> {
        let n = rows.len();
        let l = host.upload(&[n as i64, 3], &logits[rows.start * 3..rows.end * 3]);
        let y = host.upload(&[n as i64], &labels[rows]);
        let r = lik.nll(&mut host.host_ref(), l, y).into_result();
        host.host_ref().release(l);
        host.host_ref().release(y);
        let id = r.map_err(|e| format!("nll: {}", e.into_string()))?;
        let shape = host.host_ref().shape(id).into_vec();
        let v = host.download(id);
        host.host_ref().release(id);
        if let Some(e) = host.take_error() {
            return Err(format!("nll: host error: {e}"));
        }
        if !shape.is_empty() && v.len() != 1 {
            return Err(format!("nll returned shape {shape:?}, expected a 0-d tensor"));
        }
        Ok(v[0])
    };
    let nll = |host: &mut H, rows: std::ops::Range<usize>| nll_of(host, &logits, rows);
    let mut checks = Vec::new();
    let whole = nll(host, 0..8);
    let finite = match &whole {
        Ok(v) if v.is_finite() => Ok(Outcome::Pass(format!("NLL {v:.6} of 8 examples, 3 classes"))),
        Ok(v) => Err(format!("nll returned {v} for finite logits in [-3, 3]")),
        Err(e) => Err(e.clone()),
    };
    checks.push(Check::new("nll finite", finite));
    let mean = whole.and_then(|w| {
        let (a, b) = (nll(host, 0..4)?, nll(host, 4..8)?);
        let halves = 0.5 * (a + b);
        if (w - halves).abs() <= p.sum_rel * (1.0 + w.abs()) {
            Ok(Outcome::Pass(format!("NLL of the batch {w:.6} = mean of its halves {halves:.6}")))
        } else {
            Err(format!(
                "NLL of the batch {w:.6} ≠ mean of its halves' NLLs {halves:.6}: the host scales it by n as a \
                 per-example mean, so a minibatch estimate would be biased"
            ))
        }
    });
    checks.push(Check::new("nll is a per-example mean", mean));
    // Raising one example's logit of its own label must move the NLL: an NLL that ignores the
    // logits leaves the network without a gradient (the run would sample the prior alone).
    let depends = nll(host, 0..8).and_then(|w| {
        let mut moved = logits.clone();
        moved[labels[0] as usize] += 1.0;
        let m = nll_of(host, &moved, 0..8)?;
        if (m - w).abs() > p.sum_rel * (1.0 + w.abs()) {
            Ok(Outcome::Pass(format!("NLL {w:.6} → {m:.6} when one example's label logit rises by 1")))
        } else {
            Err(format!(
                "NLL {w:.6} did not change ({m:.6}) when one example's label logit rose by 1: it must be computed \
                 from the logits, or no gradient reaches the network"
            ))
        }
    });
    checks.push(Check::new("nll depends on the logits", depends));
    let n = lik.effective_n(1000);
    checks.push(Check::new(
        "effective_n positive",
        if n.is_finite() && n > 0.0 {
            Ok(Outcome::Pass(format!("effective_n(1000) = {n}")))
        } else {
            Err(format!("effective_n(1000) = {n}; it must be a positive number"))
        },
    ));
    let aug = (|| {
        let images = host.upload(&[4, 1, 6, 6], &values(144, 0.5));
        let r = lik.augment(&mut host.host_ref(), images).into_result();
        host.host_ref().release(images);
        let out = r.map_err(|e| format!("augment: {}", e.into_string()))?;
        let outcome = match out {
            ROption::RNone => Outcome::Note("no augmentation".into()),
            ROption::RSome(id) => {
                let shape = host.host_ref().shape(id).into_vec();
                host.host_ref().release(id);
                if shape != [4, 1, 6, 6] {
                    return Err(format!("augment returned shape {shape:?} for images [4, 1, 6, 6]"));
                }
                Outcome::Pass("[4, 1, 6, 6] in, [4, 1, 6, 6] out".into())
            }
        };
        match host.take_error() {
            Some(e) => Err(format!("augment: host error: {e}")),
            None => Ok(outcome),
        }
    })();
    checks.push(Check::new("augment keeps the shape", aug));
    checks
}

/// The noise checks: `plan` gives a batch no larger than the training set; `transform` keeps
/// the gradient's shape and finiteness and is unbiased: over 400 transforms of the same
/// gradient (50 elements, measured variances 0.01–0.03 at batch 100), the mean change pooled
/// over elements is within [`Z_MAX`] standard errors of 0.
pub fn noise_checks<H: TestHost>(host: &mut H, noise: &mut NoiseBox) -> Vec<Check> {
    let mut checks = Vec::new();
    let plan = noise.plan(100, 1000);
    checks.push(Check::new(
        "plan",
        if plan.gradient_batch == crate::abi::PLAN_FAILED {
            Err("plan panicked (its message is printed on stderr)".to_owned())
        } else if plan.gradient_batch <= 1000 {
            Ok(Outcome::Pass(format!(
                "gradient batch {} for a configured 100 of 1000 examples (0 = full batch)",
                plan.gradient_batch
            )))
        } else {
            Err(format!("plan asks for batches of {} from 1000 examples", plan.gradient_batch))
        },
    ));
    let d = 50;
    let g0 = values(d, 0.3);
    let var: Vec<f64> = (0..d).map(|i| 0.01 * (1 + i % 3) as f64).collect();
    let ctx = StepCtx {
        step: 1,
        lr: 0.1,
        momentum_decay: 0.9,
        timestep_factor: 1.0,
        temperature: 1.0,
        n: 1000.0,
        // As the host passes it: the plan's batch, 0 for the full training set.
        batch_size: plan.gradient_batch,
    };
    let unbiased = (|| {
        let ve = host.upload(&[d as i64], &var);
        let vp = host.upload(&[d as i64], &var);
        let stats = NoiseStats { var_elementwise: ve, var_per_tensor: vp, batch_size: 100 };
        let repeats = 400;
        // The gradient as the host holds it (float32 rounding on the libtorch host).
        let g_ref = {
            let g = host.upload(&[d as i64], &g0);
            let v = host.download(g);
            host.host_ref().release(g);
            v
        };
        let mut sum = vec![0.0; d];
        let mut sum2 = vec![0.0; d];
        let mut err = None;
        for _ in 0..repeats {
            let g = host.upload(&[d as i64], &g0);
            let r = noise.transform(&mut host.host_ref(), &ctx, g, &stats).into_result();
            let shape = host.host_ref().shape(g).into_vec();
            let out = host.download(g);
            host.host_ref().release(g);
            if let Err(e) = r {
                err = Some(format!("transform: {}", e.into_string()));
                break;
            }
            if let Some(e) = host.take_error() {
                err = Some(format!("transform: host error: {e}"));
                break;
            }
            if shape != [d as i64] || out.iter().any(|v| !v.is_finite()) {
                err = Some(format!("transform turned a finite gradient [{d}] into shape {shape:?} with NaN/Inf"));
                break;
            }
            for (i, (o, g)) in out.iter().zip(&g_ref).enumerate() {
                sum[i] += o - g;
                sum2[i] += (o - g) * (o - g);
            }
        }
        host.host_ref().release(ve);
        host.host_ref().release(vp);
        if let Some(e) = err {
            return Err(e);
        }
        let r = repeats as f64;
        let mean_change = sum.iter().sum::<f64>() / (r * d as f64);
        let var_sum: f64 = sum.iter().zip(&sum2).map(|(s, s2)| (s2 / r - (s / r).powi(2)).max(0.0)).sum();
        let se = (var_sum / r).sqrt() / d as f64;
        let text = format!("mean change {mean_change:.3e} ± {se:.3e} over {repeats} transforms");
        if mean_change == 0.0 && se == 0.0 {
            Ok(Outcome::Pass("leaves the gradient unchanged".into()))
        } else if (mean_change / se).abs() <= Z_MAX {
            Ok(Outcome::Pass(text))
        } else {
            Err(format!("{text}: biased (z = {:.1})", mean_change / se))
        }
    })();
    checks.push(Check::new("transform unbiased", unbiased));
    checks
}

/// The prior checks for author type `P` built from `params_json`, on a [`CpuHost`](super::CpuHost)
/// seeded 1 (for a plugin crate's tests: `assert_all_pass("my-prior", &cpu_prior::<MyPrior>("{}"))`).
pub fn cpu_prior<P: crate::Prior>(params_json: &str) -> Vec<Check> {
    match super::prior_box::<P>(params_json) {
        Ok(prior) => prior_checks(&mut super::CpuHost::new(1), &prior),
        Err(e) => vec![Check::new("builds", Err(e))],
    }
}

/// The integrator checks for author type `I` built from `params_json`, on a CpuHost seeded 1.
pub fn cpu_integrator<I: crate::Integrator>(params_json: &str) -> Vec<Check> {
    integrator_checks(&mut super::CpuHost::new(1), &mut || super::integrator_box::<I>(params_json))
}

/// The likelihood checks for author type `L` built from `params_json`, on a CpuHost seeded 1.
pub fn cpu_likelihood<L: crate::Likelihood>(params_json: &str) -> Vec<Check> {
    match super::likelihood_box::<L>(params_json) {
        Ok(mut lik) => likelihood_checks(&mut super::CpuHost::new(1), &mut lik),
        Err(e) => vec![Check::new("builds", Err(e))],
    }
}

/// The noise checks for author type `N` built from `params_json`, on a CpuHost seeded 1.
pub fn cpu_noise<N: crate::NoiseModel>(params_json: &str) -> Vec<Check> {
    match super::noise_box::<N>(params_json) {
        Ok(mut noise) => noise_checks(&mut super::CpuHost::new(1), &mut noise),
        Err(e) => vec![Check::new("builds", Err(e))],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Factory, NoiseModel, NoiseView, Ops, ParamSpec, Params, Prior, Tensor};

    /// N(0, 1) with a deliberate fault chosen by `fault`.
    struct Faulty {
        fault: String,
    }

    impl Factory for Faulty {
        const NAME: &'static str = "faulty";
        const DESCRIPTION: &'static str = "test prior with one fault";
        fn params() -> Vec<ParamSpec> {
            vec![ParamSpec::string(
                "fault",
                "none",
                &["none", "nan", "double-gradient", "wide-samples", "wrong-precision"],
                "which fault",
            )]
        }
        fn new(p: &Params) -> Result<Self, String> {
            Ok(Self { fault: p.str("fault").to_owned() })
        }
    }

    impl Prior for Faulty {
        fn log_prob<'o>(&self, _: Ops<'o>, params: &[Tensor<'o>], _: &[ParamInfo]) -> Result<Tensor<'o>, String> {
            let lp = params
                .iter()
                .map(|p| (p.square() * -0.5 - crate::math::HALF_LN_2PI).sum())
                .reduce(|a, b| a + b)
                .ok_or("no parameters")?;
            Ok(if self.fault == "nan" { lp * f64::NAN } else { lp })
        }
        fn sample<'o>(&self, ops: Ops<'o>, _: &ParamInfo, like: &Tensor<'o>) -> Result<Option<Tensor<'o>>, String> {
            let scale = if self.fault == "wide-samples" { 1.1 } else { 1.0 };
            Ok(Some(ops.randn_like(like) * scale))
        }
        fn grad_log_prob<'o>(
            &self,
            _: Ops<'o>,
            params: &[Tensor<'o>],
            _: &[ParamInfo],
        ) -> Result<Option<Vec<Tensor<'o>>>, String> {
            let factor = if self.fault == "double-gradient" { -2.0 } else { -1.0 };
            Ok(Some(params.iter().map(|p| p * factor).collect()))
        }
        fn isotropic_precision(&self, infos: &[ParamInfo]) -> Result<Option<Vec<f64>>, String> {
            let precision = if self.fault == "wrong-precision" { 2.0 } else { 1.0 };
            Ok(Some(vec![precision; infos.len()]))
        }
    }

    fn verdicts(fault: &str) -> Vec<(&'static str, bool)> {
        cpu_prior::<Faulty>(&format!(r#"{{"fault": "{fault}"}}"#)).iter().map(|c| (c.name, c.failed())).collect()
    }

    #[test]
    fn each_prior_fault_fails_exactly_its_check() {
        assert!(verdicts("none").iter().all(|(_, failed)| !failed), "{:?}", verdicts("none"));
        assert_eq!(verdicts("nan"), vec![("log_prob finite", true)]);
        let failed = |fault| verdicts(fault).into_iter().filter(|c| c.1).map(|c| c.0).collect::<Vec<_>>();
        assert_eq!(failed("double-gradient"), vec!["grad_log_prob vs finite differences"]);
        assert_eq!(failed("wide-samples"), vec!["samples follow log_prob"]);
        assert_eq!(failed("wrong-precision"), vec!["isotropic precision vs finite differences"]);
    }

    /// Adds a constant to the gradient: biased.
    struct Biased;
    impl Factory for Biased {
        const NAME: &'static str = "biased";
        const DESCRIPTION: &'static str = "adds 0.05";
        fn params() -> Vec<ParamSpec> {
            Vec::new()
        }
        fn new(_: &Params) -> Result<Self, String> {
            Ok(Self)
        }
    }
    impl NoiseModel for Biased {
        fn plan(&self, config_batch: u64, _: u64) -> crate::GradientPlan {
            crate::GradientPlan { gradient_batch: config_batch }
        }
        fn transform<'o>(
            &mut self,
            ops: Ops<'o>,
            _: &StepCtx,
            g: &Tensor<'o>,
            _: &NoiseView<'o>,
        ) -> Result<(), String> {
            g.set(&(g + 0.05 + ops.randn_like(g) * 0.1));
            Ok(())
        }
    }

    #[test]
    fn a_biased_noise_model_fails_the_unbiasedness_check() {
        let checks = cpu_noise::<Biased>("{}");
        let t = checks.iter().find(|c| c.name == "transform unbiased").unwrap();
        assert!(t.failed(), "{t}");
    }
}
