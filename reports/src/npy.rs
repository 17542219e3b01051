//! Reading the `.npy` files of stored predictions. The format is decoded by
//! [`ablate_records::npy`], which the store's writer shares; this module turns its errors into
//! report errors that name the file.

use std::path::Path;

pub use ablate_records::npy::NpyArray as Array;
use ablate_records::npy::{decode_f32, decode_i64, NpyError};

use crate::ReportError;

fn read<T>(path: &Path, decode: fn(&[u8]) -> Result<Array<T>, NpyError>) -> Result<Option<Array<T>>, ReportError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(ReportError::Read { path: path.to_path_buf(), source }),
    };
    decode(&bytes).map(Some).map_err(|e| ReportError::Invalid {
        path: path.to_path_buf(),
        message: format!("{e}; rerun the cell (with eval.store_predictions)"),
    })
}

/// A float32 array; `None` when the file does not exist.
pub fn read_f32(path: &Path) -> Result<Option<Array<f32>>, ReportError> {
    read(path, decode_f32)
}

/// An int64 array; `None` when the file does not exist.
pub fn read_i64(path: &Path) -> Result<Option<Array<i64>>, ReportError> {
    read(path, decode_i64)
}
