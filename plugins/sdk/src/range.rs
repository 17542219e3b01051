//! Value rules that every host enforces the same way: the libtorch host (float32 tensors in a
//! run) and the test kit's [`CpuHost`](crate::testkit::CpuHost) (f64 data standing in for
//! float32), so that a plugin passing `cargo test` does not fail on the real host.
//!
//! A run's tensors are float32. A scalar argument of a host op (`full_like`'s value, `clamp`'s
//! bounds, `affine`'s factors, `pow_scalar`'s exponent, the in-place ops' coefficients) is
//! converted to the tensor's dtype, so it must be representable there:
//! - a finite scalar must satisfy |v| ≤ [`F32_MAX`] (3.4028235e38) for float32 tensors;
//!   `f64::MAX` or `1e300` is an error, not a silent infinity;
//! - ±∞ is accepted (write `f64::INFINITY` for "no upper bound" in `clamp`);
//! - NaN is refused where it has no meaning (`clamp` bounds).
//!
//! A violation fails the plugin call with a message naming the op, the argument and its value.

/// The largest finite float32, as f64.
pub const F32_MAX: f64 = f32::MAX as f64;

/// The largest finite value of a tensor dtype, for the scalar rule (`None` = no limit, f64).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScalarLimit {
    /// Name of the dtype for messages ("float32").
    pub dtype: &'static str,
    /// Largest finite magnitude.
    pub max: f64,
}

/// float32, the dtype of every tensor in a run (and what the test kit emulates).
pub const FLOAT32: ScalarLimit = ScalarLimit { dtype: "float32", max: F32_MAX };

/// Check one scalar argument of host op `op` against `limit`. `allow_nan`: whether NaN is a
/// meaningful value for this argument.
///
/// ```
/// use ablate_sdk::range::{check_scalar, FLOAT32};
/// assert!(check_scalar("clamp", "min", 1e-30, FLOAT32, false).is_ok());
/// assert!(check_scalar("clamp", "max", f64::INFINITY, FLOAT32, false).is_ok());
/// let e = check_scalar("clamp", "max", f64::MAX, FLOAT32, false).unwrap_err();
/// assert!(e.contains("does not fit in float32"));
/// ```
pub fn check_scalar(op: &str, arg: &str, value: f64, limit: ScalarLimit, allow_nan: bool) -> Result<(), String> {
    if value.is_nan() {
        return if allow_nan { Ok(()) } else { Err(format!("host op `{op}`: {arg} is NaN")) };
    }
    if value.is_infinite() || value.abs() <= limit.max {
        return Ok(());
    }
    Err(format!(
        "host op `{op}`: {arg} = {value:e} does not fit in {} (finite scalars must lie within ±{:e}; \
         use f64::INFINITY for an open bound)",
        limit.dtype, limit.max
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_float32_boundary_is_exact() {
        assert!(check_scalar("affine", "mul", F32_MAX, FLOAT32, false).is_ok());
        assert!(check_scalar("affine", "mul", -F32_MAX, FLOAT32, false).is_ok());
        let above = F32_MAX * (1.0 + 1e-15);
        assert!(check_scalar("affine", "mul", above, FLOAT32, false).is_err());
        assert!(check_scalar("full_like", "value", f64::NAN, FLOAT32, true).is_ok());
        assert_eq!(check_scalar("clamp", "min", f64::NAN, FLOAT32, false).unwrap_err(), "host op `clamp`: min is NaN");
    }
}
