//! Writing and reading the `.npy` files of stored predictions. The format (encoding, decoding,
//! file names) is defined once in [`ablate_records::npy`]; this module adds atomic writes and
//! file errors that name the path.

use std::path::Path;

use ablate_records::npy::{decode_f32, decode_i64, NpyError};
pub use ablate_records::npy::{encode_f32, encode_i64, NpyArray, OOD_PREDICTIONS, PREDICTIONS, TEST_LABELS};

use crate::atomic::write_atomic;
use crate::error::{Result, StoreError};

/// Writes a float32 array atomically.
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    write_atomic(path, &encode_f32(shape, data))
}

/// Writes an int64 array atomically.
pub fn write_i64(path: &Path, shape: &[usize], data: &[i64]) -> Result<()> {
    write_atomic(path, &encode_i64(shape, data))
}

/// Reads a float32 `.npy` file; `None` if it does not exist.
pub fn read_f32(path: &Path) -> Result<Option<NpyArray<f32>>> {
    read_bytes(path)?.map(|b| decode_f32(&b).map_err(|e| bad(path, e))).transpose()
}

/// Reads an int64 `.npy` file; `None` if it does not exist.
pub fn read_i64(path: &Path) -> Result<Option<NpyArray<i64>>> {
    read_bytes(path)?.map(|b| decode_i64(&b).map_err(|e| bad(path, e))).transpose()
}

fn bad(path: &Path, e: NpyError) -> StoreError {
    StoreError::Npy { path: path.to_path_buf(), why: e.0 }
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
