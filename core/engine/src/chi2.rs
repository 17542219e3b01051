//! Quantiles of the χ² distribution (for the kinetic-temperature band), computed exactly from
//! the regularised incomplete gamma function (series / continued fraction, Numerical Recipes
//! §6.2) and bisection. Matches `scipy.stats.chi2.ppf` to ~1e-10 relative.

use ablate_sdk::math::ln_gamma;

/// Regularised lower incomplete gamma P(a, x).
fn gamma_p(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    let gln = ln_gamma(a);
    if x < a + 1.0 {
        let (mut sum, mut del, mut ap) = (1.0 / a, 1.0 / a, a);
        for _ in 0..10_000 {
            ap += 1.0;
            del *= x / ap;
            sum += del;
            if del.abs() < sum.abs() * 1e-15 {
                break;
            }
        }
        sum * (-x + a * x.ln() - gln).exp()
    } else {
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..10_000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let del = d * c;
            h *= del;
            if (del - 1.0).abs() < 1e-15 {
                break;
            }
        }
        1.0 - (-x + a * x.ln() - gln).exp() * h
    }
}

/// CDF of χ²_k.
pub fn cdf(x: f64, k: f64) -> f64 {
    gamma_p(k / 2.0, x / 2.0)
}

/// Quantile of χ²_k at probability p ∈ (0, 1).
pub fn quantile(p: f64, k: f64) -> f64 {
    let (mut lo, mut hi) = (0.0, k.max(1.0));
    while cdf(hi, k) < p {
        hi *= 2.0;
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if cdf(mid, k) < p {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo <= 1e-12 * hi {
            break;
        }
    }
    0.5 * (lo + hi)
}

/// Central interval of probability `level` for the kinetic temperature of a tensor with `dof`
/// elements at target `temperature` (`kinetic_temperature_region` of the reference).
pub fn kinetic_band(dof: f64, temperature: f64, level: f64) -> (f64, f64) {
    let tail = (1.0 - level) / 2.0;
    (temperature * quantile(tail, dof) / dof, temperature * quantile(1.0 - tail, dof) / dof)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_match_scipy() {
        // scipy.stats.chi2.ppf values.
        let cases = [
            (0.005, 1.0, 3.927_042_222_051_594e-5),
            (0.995, 1.0, 7.879_438_576_622_416),
            (0.005, 10.0, 2.155_856_481_304_639),
            (0.995, 10.0, 25.188_179_571_971_173),
            (0.005, 1000.0, 888.563_523_181_468_3),
            (0.995, 1000.0, 1_118.948_066_323_191_6),
        ];
        for (p, k, want) in cases {
            let got = quantile(p, k);
            assert!(((got - want) / want).abs() < 1e-7, "p={p} k={k}: {got} vs {want}");
        }
    }
}
