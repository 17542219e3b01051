//! Shape rules of the host ops that change shapes ([`TensorHost::matmul`],
//! [`TensorHost::reshape`], [`TensorHost::constant_like`]), shared by the libtorch host and the
//! test kit's [`CpuHost`](crate::testkit::CpuHost) so that both accept and refuse the same calls
//! with the same messages.
//!
//! [`TensorHost::matmul`]: crate::abi::TensorHost::matmul
//! [`TensorHost::reshape`]: crate::abi::TensorHost::reshape
//! [`TensorHost::constant_like`]: crate::abi::TensorHost::constant_like

/// The result shape of `a @ b`: `a` [..., n, k] with `b` [k, m] (the same matrix for every
/// leading index of `a`), or `a` [B..., n, k] with `b` [B..., k, m] (equal leading dimensions).
///
/// ```
/// use ablate_sdk::shapes::matmul;
/// assert_eq!(matmul(&[5, 2, 3], &[3, 4]), Ok(vec![5, 2, 4]));
/// assert_eq!(matmul(&[5, 2, 3], &[5, 3, 4]), Ok(vec![5, 2, 4]));
/// assert!(matmul(&[2, 3], &[4, 4]).unwrap_err().contains("inner dimensions"));
/// ```
pub fn matmul(a: &[i64], b: &[i64]) -> Result<Vec<i64>, String> {
    let fail = |why: &str| Err(format!("host op `matmul`: {why} (shapes {a:?} and {b:?})"));
    if a.len() < 2 || b.len() < 2 {
        return fail("both operands need at least 2 dimensions");
    }
    let (n, k) = (a[a.len() - 2], a[a.len() - 1]);
    let (k2, m) = (b[b.len() - 2], b[b.len() - 1]);
    if k != k2 {
        return fail("inner dimensions differ");
    }
    let lead = &a[..a.len() - 2];
    if b.len() > 2 && b[..b.len() - 2] != *lead {
        return fail("leading dimensions differ (b must be one matrix or have a's leading dimensions)");
    }
    let mut out = lead.to_vec();
    out.extend([n, m]);
    Ok(out)
}

/// The shape `shape` resolved for a tensor of `numel` elements: one entry may be −1 (inferred);
/// every other entry must be ≥ 0 and the product must equal `numel`.
///
/// ```
/// use ablate_sdk::shapes::reshape;
/// assert_eq!(reshape(24, &[-1, 4]), Ok(vec![6, 4]));
/// assert!(reshape(24, &[5, -1]).is_err());
/// ```
pub fn reshape(numel: i64, shape: &[i64]) -> Result<Vec<i64>, String> {
    let fail = |why: &str| Err(format!("host op `reshape`: {why} (to {shape:?} from {numel} elements)"));
    let inferred: Vec<usize> = shape.iter().enumerate().filter(|(_, &d)| d == -1).map(|(i, _)| i).collect();
    if inferred.len() > 1 {
        return fail("at most one dimension may be -1");
    }
    if shape.iter().any(|&d| d < -1) {
        return fail("dimensions must be >= 0 (or -1 once)");
    }
    let known: i64 = shape.iter().filter(|&&d| d != -1).product();
    let mut out = shape.to_vec();
    match inferred.first() {
        Some(&i) => {
            if known == 0 || numel % known != 0 {
                return fail("the number of elements is not a multiple of the given dimensions");
            }
            out[i] = numel / known;
        }
        None if known != numel => return fail("the number of elements differs"),
        None => {}
    }
    Ok(out)
}

/// Checks the arguments of `constant_like`: `values.len()` equals the product of `shape`
/// (entries ≥ 0) and every value fits `limit` ([`crate::range`], NaN refused).
pub fn constant(shape: &[i64], values: &[f64], limit: crate::range::ScalarLimit) -> Result<(), String> {
    if shape.iter().any(|&d| d < 0) {
        return Err(format!("host op `constant_like`: negative dimension in {shape:?}"));
    }
    let n: i64 = shape.iter().product();
    if n as usize != values.len() {
        return Err(format!(
            "host op `constant_like`: shape {shape:?} holds {n} elements but {} values were given",
            values.len()
        ));
    }
    for &v in values {
        crate::range::check_scalar("constant_like", "values", v, limit, false)?;
    }
    Ok(())
}
