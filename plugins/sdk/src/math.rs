//! Scalar special functions plugin authors need for normalising constants (shared with the host).

/// ½·log(2π).
pub const HALF_LN_2PI: f64 = 0.918_938_533_204_672_8;

/// log Γ(x) for x > 0 (Lanczos, g = 7, 9 terms; relative error < 1e-13), with the reflection
/// formula below 1/2.
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x)Γ(1−x) = π / sin(πx).
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + G + 0.5;
    let mut a = C[0];
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    HALF_LN_2PI + (x + 0.5) * t.ln() - t + a.ln()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ln_gamma_known_values() {
        let pi = std::f64::consts::PI;
        for (x, want) in
            [(1.0, 0.0), (2.0, 0.0), (0.5, 0.5 * pi.ln()), (5.0, 24f64.ln()), (10.5, 13.940_625_219_403_763)]
        {
            let got = super::ln_gamma(x);
            assert!((got - want).abs() < 1e-12 * want.abs().max(1.0), "ln_gamma({x}) = {got}, want {want}");
        }
    }
}
