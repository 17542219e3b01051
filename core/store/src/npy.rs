//! The `.npy` files of stored predictions (NumPy format version 1.0, written by hand: a magic
//! string, a little-endian header length, a Python-dict header padded to a multiple of 64
//! bytes, then the raw little-endian data in C order). Only what `ablate` writes is read back:
//! `<f4` (float32) and `<i8` (int64) arrays, C order.
//!
//! Files of a cell with `eval.store_predictions` (see [`PREDICTIONS`], [`OOD_PREDICTIONS`],
//! [`TEST_LABELS`]); `numpy.load` reads them as they are.

use std::path::Path;

use crate::atomic::write_atomic;
use crate::error::{Result, StoreError};

/// Each member's class probabilities on the test set: float32 [members, test examples, classes].
pub const PREDICTIONS: &str = "predictions.npy";
/// The same on the `eval.ood` test set: float32 [members, OOD examples, classes].
pub const OOD_PREDICTIONS: &str = "ood_predictions.npy";
/// The test labels in row order: int64 [test examples].
pub const TEST_LABELS: &str = "test_labels.npy";

const MAGIC: &[u8] = b"\x93NUMPY\x01\x00";

/// An array read back from a `.npy` file.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray<T> {
    pub shape: Vec<usize>,
    pub data: Vec<T>,
}

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

/// Writes a float32 array atomically.
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    write_atomic(path, &encode_f32(shape, data))
}

/// Writes an int64 array atomically.
pub fn write_i64(path: &Path, shape: &[usize], data: &[i64]) -> Result<()> {
    write_atomic(path, &encode_i64(shape, data))
}

fn bad(path: &Path, why: impl Into<String>) -> StoreError {
    StoreError::Npy { path: path.to_path_buf(), why: why.into() }
}

/// (descr, shape, data offset) of a `.npy` file's bytes.
fn parse_header(path: &Path, bytes: &[u8]) -> Result<(String, Vec<usize>, usize)> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad(path, "not a .npy file (no \\x93NUMPY magic)"));
    }
    let (len, start) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        v => return Err(bad(path, format!("unsupported .npy version {v}"))),
    };
    let text = bytes.get(start..start + len).ok_or_else(|| bad(path, "the header is cut short"))?;
    let text = std::str::from_utf8(text).map_err(|_| bad(path, "the header is not text"))?;
    let field = |key: &str| -> Option<&str> {
        let at = text.find(&format!("'{key}':"))? + key.len() + 3;
        Some(text[at..].trim_start())
    };
    let descr = field("descr")
        .and_then(|r| r.strip_prefix('\''))
        .and_then(|r| r.split('\'').next())
        .ok_or_else(|| bad(path, "the header has no 'descr'"))?;
    if field("fortran_order").is_some_and(|r| r.starts_with("True")) {
        return Err(bad(path, "Fortran-order arrays are not read"));
    }
    let dims = field("shape")
        .and_then(|r| r.strip_prefix('('))
        .and_then(|r| r.split(')').next())
        .ok_or_else(|| bad(path, "the header has no 'shape'"))?;
    let shape = dims
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.parse::<usize>().map_err(|_| bad(path, format!("bad dimension {d:?} in the shape"))))
        .collect::<Result<Vec<_>>>()?;
    Ok((descr.to_string(), shape, start + len))
}

fn decode<T, const N: usize>(path: &Path, bytes: &[u8], want: &str, from: fn([u8; N]) -> T) -> Result<NpyArray<T>> {
    let (descr, shape, offset) = parse_header(path, bytes)?;
    if descr != want {
        return Err(bad(path, format!("holds {descr} values, expected {want}")));
    }
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| bad(path, "shape overflows"))?;
    let body = &bytes[offset..];
    if body.len() != count.saturating_mul(N) {
        return Err(bad(
            path,
            format!("shape {shape:?} needs {} data bytes, the file has {} (truncated?)", count * N, body.len()),
        ));
    }
    let data = body.chunks_exact(N).map(|c| from(c.try_into().unwrap_or([0; N]))).collect();
    Ok(NpyArray { shape, data })
}

/// Reads a float32 `.npy` file; `None` if it does not exist.
pub fn read_f32(path: &Path) -> Result<Option<NpyArray<f32>>> {
    read_bytes(path)?.map(|b| decode(path, &b, "<f4", f32::from_le_bytes)).transpose()
}

/// Reads an int64 `.npy` file; `None` if it does not exist.
pub fn read_i64(path: &Path) -> Result<Option<NpyArray<i64>>> {
    read_bytes(path)?.map(|b| decode(path, &b, "<i8", i64::from_le_bytes)).transpose()
}

fn read_bytes(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::io("read", path)(e)),
    }
}

#[cfg(test)]
mod tests {
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
    fn round_trip_and_damage_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        let data = [0.25f32, -1.5, 3.0, f32::MIN_POSITIVE, 7.0, 8.0];
        write_f32(&p, &[1, 2, 3], &data).unwrap();
        let back = read_f32(&p).unwrap().unwrap();
        assert_eq!(back, NpyArray { shape: vec![1, 2, 3], data: data.to_vec() });
        let q = dir.path().join("l.npy");
        write_i64(&q, &[3], &[0, 9, -2]).unwrap();
        assert_eq!(read_i64(&q).unwrap().unwrap().data, vec![0, 9, -2]);
        // Wrong type, truncation, missing file.
        let e = read_f32(&q).unwrap_err().to_string();
        assert!(e.contains("l.npy") && e.contains("<i8"), "{e}");
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 1]).unwrap();
        let e = read_f32(&p).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
        assert!(read_f32(&dir.path().join("none.npy")).unwrap().is_none());
    }
}
