//! The `.npy` files of stored predictions, encoded and decoded in one place: the store writes
//! them, the report and `ablate report --recompute` read them. NumPy format version 1.0, written
//! by hand: a magic string, a little-endian header length, a Python-dict header padded to a
//! multiple of 64 bytes, then the raw little-endian data in C order. Decoding accepts versions
//! 1.0–3.0 but only what `ablate` writes: `<f4` (float32) and `<i8` (int64) arrays, C order.
//!
//! Files of a cell with `eval.store_predictions`; `numpy.load` reads them as they are.

/// Each member's class probabilities on the test set: float32 [members, test examples, classes].
pub const PREDICTIONS: &str = "predictions.npy";
/// The same on the `eval.ood` test set: float32 [members, OOD examples, classes].
pub const OOD_PREDICTIONS: &str = "ood_predictions.npy";
/// The test labels in row order: int64 [test examples].
pub const TEST_LABELS: &str = "test_labels.npy";

const MAGIC: &[u8] = b"\x93NUMPY\x01\x00";

/// An array decoded from a `.npy` file.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray<T> {
    pub shape: Vec<usize>,
    pub data: Vec<T>,
}

/// Why bytes are not an array `ablate` wrote (the caller adds the file's path).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct NpyError(pub String);

fn header(descr: &str, shape: &[usize]) -> Vec<u8> {
    let dims = match shape {
        [one] => format!("({one},)"),
        _ => format!("({})", shape.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")),
    };
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {dims}, }}");
    // Magic (8) + length (2) + dict + newline, padded with spaces to a multiple of 64.
    let unpadded = MAGIC.len() + 2 + dict.len() + 1;
    dict.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    dict.push('\n');
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

/// The bytes of a float32 `.npy` file. `data.len()` must be the product of `shape`.
pub fn encode_f32(shape: &[usize], data: &[f32]) -> Vec<u8> {
    debug_assert_eq!(shape.iter().product::<usize>(), data.len());
    let mut out = header("<f4", shape);
    out.reserve(data.len() * 4);
    data.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
    out
}

/// The bytes of an int64 `.npy` file.
pub fn encode_i64(shape: &[usize], data: &[i64]) -> Vec<u8> {
    debug_assert_eq!(shape.iter().product::<usize>(), data.len());
    let mut out = header("<i8", shape);
    data.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
    out
}

fn bad(why: impl Into<String>) -> NpyError {
    NpyError(why.into())
}

/// (descr, shape, data offset) of a `.npy` file's bytes.
fn parse_header(bytes: &[u8]) -> Result<(String, Vec<usize>, usize), NpyError> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy file (no \\x93NUMPY magic)"));
    }
    let (len, start) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        v => return Err(bad(format!("unsupported .npy version {v}"))),
    };
    let text = bytes.get(start..start + len).ok_or_else(|| bad("the header is cut short"))?;
    let text = std::str::from_utf8(text).map_err(|_| bad("the header is not text"))?;
    let field = |key: &str| -> Option<&str> {
        let at = text.find(&format!("'{key}':"))? + key.len() + 3;
        Some(text[at..].trim_start())
    };
    let descr = field("descr")
        .and_then(|r| r.strip_prefix('\''))
        .and_then(|r| r.split('\'').next())
        .ok_or_else(|| bad("the header has no 'descr'"))?;
    if field("fortran_order").is_some_and(|r| r.starts_with("True")) {
        return Err(bad("Fortran-order arrays are not read"));
    }
    let dims = field("shape")
        .and_then(|r| r.strip_prefix('('))
        .and_then(|r| r.split(')').next())
        .ok_or_else(|| bad("the header has no 'shape'"))?;
    let shape = dims
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.parse::<usize>().map_err(|_| bad(format!("bad dimension {d:?} in the shape"))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((descr.to_string(), shape, start + len))
}

fn decode<T, const N: usize>(bytes: &[u8], want: &str, from: fn([u8; N]) -> T) -> Result<NpyArray<T>, NpyError> {
    let (descr, shape, offset) = parse_header(bytes)?;
    if descr != want {
        return Err(bad(format!("holds {descr} values, expected {want}")));
    }
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| bad("shape overflows"))?;
    let body = &bytes[offset..];
    if body.len() != count.saturating_mul(N) {
        return Err(bad(format!(
            "shape {shape:?} needs {} data bytes, the file has {} (truncated?)",
            count.saturating_mul(N),
            body.len()
        )));
    }
    let data = body.chunks_exact(N).map(|c| from(c.try_into().unwrap_or([0; N]))).collect();
    Ok(NpyArray { shape, data })
}

/// Decodes a float32 `.npy` file's bytes.
pub fn decode_f32(bytes: &[u8]) -> Result<NpyArray<f32>, NpyError> {
    decode(bytes, "<f4", f32::from_le_bytes)
}

/// Decodes an int64 `.npy` file's bytes.
pub fn decode_i64(bytes: &[u8]) -> Result<NpyArray<i64>, NpyError> {
    decode(bytes, "<i8", i64::from_le_bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn header_is_numpy_v1_padded_to_64_bytes() {
        let bytes = encode_f32(&[2, 3], &[0.0; 6]);
        let len = usize::from(u16::from_le_bytes([bytes[8], bytes[9]]));
        assert_eq!((10 + len) % 64, 0);
        let text = std::str::from_utf8(&bytes[10..10 + len]).unwrap();
        assert!(text.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"), "{text}");
        assert!(text.ends_with('\n'));
        assert_eq!(bytes.len(), 10 + len + 24);
        let one = encode_i64(&[4], &[1, 2, 3, 4]);
        let len = usize::from(u16::from_le_bytes([one[8], one[9]]));
        assert_eq!((10 + len) % 64, 0);
        assert_eq!(one.len(), 10 + len + 32);
        assert!(std::str::from_utf8(&one[10..10 + len])
            .unwrap()
            .contains("'descr': '<i8', 'fortran_order': False, 'shape': (4,)"));
    }

    #[test]
    fn decoding_round_trips_and_names_the_damage() {
        let data = [0.25f32, -1.5, 3.0, f32::MIN_POSITIVE, 7.0, 8.0];
        let f = encode_f32(&[1, 2, 3], &data);
        assert_eq!(decode_f32(&f).unwrap(), NpyArray { shape: vec![1, 2, 3], data: data.to_vec() });
        let i = encode_i64(&[3], &[0, 9, -2]);
        assert_eq!(decode_i64(&i).unwrap().data, vec![0, 9, -2]);
        assert!(decode_f32(&i).unwrap_err().0.contains("<i8"));
        assert!(decode_f32(&f[..f.len() - 1]).unwrap_err().0.contains("truncated"));
        assert!(decode_f32(b"not numpy at all").unwrap_err().0.contains("magic"));
        // A hostile shape whose element count overflows is an error, not a panic.
        let mut huge = encode_f32(&[1], &[0.0]);
        let text = String::from_utf8_lossy(&huge[10..]).replace("(1,)", "(9999999999999999999, 9)");
        huge.truncate(10);
        huge.extend_from_slice(text.as_bytes());
        let len = (huge.len() - 10) as u16;
        huge[8..10].copy_from_slice(&len.to_le_bytes());
        assert!(decode_f32(&huge).is_err());
    }
}
