//! Reading the `.npy` files of stored predictions (NumPy format 1.0-3.0, little-endian `<f4`
//! and `<i8` arrays in C order, as `ablate` writes them), kept here so that the report reads
//! the run folder on its own (see the crate docs).

use std::path::Path;

use crate::ReportError;

/// An array read from a `.npy` file.
#[derive(Debug, Clone, PartialEq)]
pub struct Array<T> {
    pub shape: Vec<usize>,
    pub data: Vec<T>,
}

fn invalid(path: &Path, message: impl Into<String>) -> ReportError {
    ReportError::Invalid { path: path.to_path_buf(), message: message.into() }
}

fn header<'a>(path: &Path, bytes: &'a [u8]) -> Result<(&'a str, usize), ReportError> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(invalid(path, "is not a .npy file (no \\x93NUMPY magic)"));
    }
    let (len, start) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        v => return Err(invalid(path, format!("has unsupported .npy version {v}"))),
    };
    let text = bytes.get(start..start + len).ok_or_else(|| invalid(path, "has a cut-off header"))?;
    let text = std::str::from_utf8(text).map_err(|_| invalid(path, "has a header that is not text"))?;
    Ok((text, start + len))
}

fn after<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.find(&format!("'{key}':")).map(|at| text[at + key.len() + 3..].trim_start())
}

fn read<T, const N: usize>(path: &Path, want: &str, from: fn([u8; N]) -> T) -> Result<Option<Array<T>>, ReportError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(ReportError::Read { path: path.to_path_buf(), source }),
    };
    let (text, offset) = header(path, &bytes)?;
    let descr = after(text, "descr").and_then(|r| r.strip_prefix('\'')).and_then(|r| r.split('\'').next());
    if descr != Some(want) {
        return Err(invalid(path, format!("holds {} values, expected {want}", descr.unwrap_or("unknown"))));
    }
    if after(text, "fortran_order").is_some_and(|r| r.starts_with("True")) {
        return Err(invalid(path, "is in Fortran order; ablate writes C order"));
    }
    let dims = after(text, "shape")
        .and_then(|r| r.strip_prefix('('))
        .and_then(|r| r.split(')').next())
        .ok_or_else(|| invalid(path, "has no shape in its header"))?;
    let shape: Vec<usize> = dims
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.parse().map_err(|_| invalid(path, format!("has a bad dimension {d:?}"))))
        .collect::<Result<_, _>>()?;
    let count: usize = shape.iter().product();
    let body = &bytes[offset..];
    if body.len() != count * N {
        return Err(invalid(
            path,
            format!("shape {shape:?} needs {} data bytes but the file has {}; rerun the cell", count * N, body.len()),
        ));
    }
    let data = body.chunks_exact(N).map(|c| from(c.try_into().unwrap_or([0; N]))).collect();
    Ok(Some(Array { shape, data }))
}

/// A float32 array; `None` when the file does not exist.
pub fn read_f32(path: &Path) -> Result<Option<Array<f32>>, ReportError> {
    read(path, "<f4", f32::from_le_bytes)
}

/// An int64 array; `None` when the file does not exist.
pub fn read_i64(path: &Path) -> Result<Option<Array<i64>>, ReportError> {
    read(path, "<i8", i64::from_le_bytes)
}
