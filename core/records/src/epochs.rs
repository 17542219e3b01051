//! `epochs.csv`: one [`EpochRow`] per epoch, a header of [`EPOCH_COLUMNS`].
//!
//! The column names, their order and the formatting of each value are defined here once:
//! [`EpochRow::values`] and [`EpochRow::from_values`] both go through [`EPOCH_COLUMNS`] by
//! position, so the writer and the reader cannot disagree.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// The columns of `epochs.csv`, in file order.
pub const EPOCH_COLUMNS: [&str; 11] = [
    "epoch",
    "step",
    "temperature",
    "timestep_factor",
    "train_nll",
    "train_accuracy",
    "kinetic_temperature",
    "kinetic_in_band",
    "configurational_temperature",
    "members",
    "wall_seconds",
];

/// One row of `epochs.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRow {
    pub epoch: u64,
    pub step: u64,
    pub temperature: f64,
    pub timestep_factor: f64,
    pub train_nll: f64,
    pub train_accuracy: f64,
    pub kinetic_temperature: f64,
    /// Fraction of parameter tensors whose kinetic temperature is inside its χ² band.
    pub kinetic_in_band: f64,
    pub configurational_temperature: f64,
    pub members: u64,
    pub wall_seconds: f64,
}

/// A damaged `epochs.csv`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EpochsError {
    #[error("line {line}: {found} fields, the header has {expected}")]
    FieldCount { line: usize, found: usize, expected: usize },
    #[error("line {line}, column {column}: {value:?} is not a number")]
    NotANumber { line: usize, column: &'static str, value: String },
    #[error("the header has no `{column}` column (the file is cut short or is not an epochs.csv)")]
    MissingColumn { column: &'static str },
    #[error("the file ends inside a line: it was cut short")]
    CutShort,
}

impl EpochRow {
    /// The header line (no newline).
    pub fn csv_header() -> String {
        EPOCH_COLUMNS.join(",")
    }

    /// The values as written, in [`EPOCH_COLUMNS`] order.
    pub fn values(&self) -> [String; 11] {
        [
            self.epoch.to_string(),
            self.step.to_string(),
            self.temperature.to_string(),
            self.timestep_factor.to_string(),
            self.train_nll.to_string(),
            self.train_accuracy.to_string(),
            self.kinetic_temperature.to_string(),
            self.kinetic_in_band.to_string(),
            self.configurational_temperature.to_string(),
            self.members.to_string(),
            format!("{:.3}", self.wall_seconds),
        ]
    }

    /// A row from numbers in [`EPOCH_COLUMNS`] order (NaN for a missing or unreadable value;
    /// integer columns read NaN as 0).
    pub fn from_values(v: [f64; 11]) -> EpochRow {
        let int = |x: f64| if x.is_finite() && x >= 0.0 { x.round() as u64 } else { 0 };
        EpochRow {
            epoch: int(v[0]),
            step: int(v[1]),
            temperature: v[2],
            timestep_factor: v[3],
            train_nll: v[4],
            train_accuracy: v[5],
            kinetic_temperature: v[6],
            kinetic_in_band: v[7],
            configurational_temperature: v[8],
            members: int(v[9]),
            wall_seconds: v[10],
        }
    }

    /// The row as one CSV line (no newline).
    pub fn csv_line(&self) -> String {
        self.values().join(",")
    }
}

/// A kinetic temperature above this many times max(T, 1) is flagged as unstable dynamics (a
/// healthy chain stays within a few times T; at T = 0 it is of order lr-scaled gradient noise,
/// below 1 in the runs of this project, while an lr too large for the likelihood reached 1e3–1e8).
/// The engine warns at it; reports name the cells that crossed it.
pub const KINETIC_ALARM: f64 = 1e3;

impl EpochRow {
    /// Whether this epoch's kinetic temperature crossed [`KINETIC_ALARM`] × max(T, 1).
    pub fn kinetic_alarm(&self) -> bool {
        self.kinetic_temperature > KINETIC_ALARM * self.temperature.max(1.0)
    }
}

/// The whole file: header and one line per row, each ending in a newline.
pub fn epochs_csv<'a>(rows: impl IntoIterator<Item = &'a EpochRow>) -> String {
    let mut text = EpochRow::csv_header();
    text.push('\n');
    for row in rows {
        let _ = writeln!(text, "{}", row.csv_line());
    }
    text
}

/// Reads `epochs.csv` by column name: columns may be in any order, unknown ones are ignored, a
/// missing column reads as NaN (0 for integer columns; older files lack some); `true`/`false`
/// (older files' `kinetic_in_band`) read as 1/0. Errors, for a damaged file: text that ends
/// inside a line (cut short: the writer ends every line with a newline), no `epoch` column, a
/// line with the wrong number of fields, a value of a known column that is not a number (`NaN`
/// and `inf` are numbers).
pub fn parse_epochs_csv(text: &str) -> Result<Vec<EpochRow>, EpochsError> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err(EpochsError::CutShort);
    }
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return Ok(Vec::new());
    };
    let names: Vec<&str> = header.split(',').map(str::trim).collect();
    let position: Vec<Option<usize>> = EPOCH_COLUMNS.iter().map(|c| names.iter().position(|n| n == c)).collect();
    if position[0].is_none() {
        return Err(EpochsError::MissingColumn { column: EPOCH_COLUMNS[0] });
    }
    let mut rows = Vec::new();
    for (i, line) in lines.enumerate() {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != names.len() {
            return Err(EpochsError::FieldCount { line: i + 2, found: fields.len(), expected: names.len() });
        }
        let mut values = [f64::NAN; 11];
        for ((value, pos), column) in values.iter_mut().zip(&position).zip(EPOCH_COLUMNS) {
            if let Some(&p) = pos.as_ref() {
                *value = number(fields[p]).ok_or_else(|| EpochsError::NotANumber {
                    line: i + 2,
                    column,
                    value: fields[p].to_owned(),
                })?;
            }
        }
        rows.push(EpochRow::from_values(values));
    }
    Ok(rows)
}

fn number(field: &str) -> Option<f64> {
    match field {
        "true" | "True" => Some(1.0),
        "false" | "False" => Some(0.0),
        _ => field.parse::<f64>().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(e: u64) -> EpochRow {
        EpochRow {
            epoch: e,
            step: 7 * e,
            temperature: 0.001,
            timestep_factor: 0.5,
            train_nll: 1.0 / 3.0,
            train_accuracy: 0.25,
            kinetic_temperature: f64::NAN,
            kinetic_in_band: 1.0,
            configurational_temperature: -2.5,
            members: e / 2,
            wall_seconds: 1.23456,
        }
    }

    #[test]
    fn the_file_is_formatted_as_before() {
        // The format of every earlier run folder: f64 Display, wall time with 3 decimals.
        let text = epochs_csv(&[row(3)]);
        assert_eq!(
            text,
            "epoch,step,temperature,timestep_factor,train_nll,train_accuracy,kinetic_temperature,\
             kinetic_in_band,configurational_temperature,members,wall_seconds\n\
             3,21,0.001,0.5,0.3333333333333333,0.25,NaN,1,-2.5,1,1.235\n"
        );
    }

    #[test]
    fn rows_read_back_by_column_name() {
        let rows: Vec<EpochRow> = (0..4).map(row).collect();
        let back = parse_epochs_csv(&epochs_csv(&rows)).unwrap();
        assert_eq!(back.len(), 4);
        for (a, b) in rows.iter().zip(&back) {
            assert_eq!((a.epoch, a.step, a.members, a.train_nll), (b.epoch, b.step, b.members, b.train_nll));
            assert!(b.kinetic_temperature.is_nan());
            assert_eq!(b.wall_seconds, 1.235);
        }
        // Columns in another order, an unknown column: read by name.
        let shuffled = "members,zzz,epoch\n4,x,9\n";
        let r = &parse_epochs_csv(shuffled).unwrap()[0];
        assert_eq!((r.members, r.epoch), (4, 9));
        assert!(r.train_nll.is_nan());
        assert_eq!(
            parse_epochs_csv("epoch,step\n1\n"),
            Err(EpochsError::FieldCount { line: 2, found: 1, expected: 2 })
        );
    }

    #[test]
    fn a_damaged_file_is_an_error_not_nans() {
        let text = epochs_csv(&[row(1), row(2)]);
        // Cut inside the header (50 bytes) or inside a row: every line the writer writes ends in
        // a newline.
        assert_eq!(parse_epochs_csv(&text[..50]), Err(EpochsError::CutShort));
        assert_eq!(parse_epochs_csv(&text[..text.len() - 3]), Err(EpochsError::CutShort));
        assert!(parse_epochs_csv("step,train_nll\n1,0.5\n").is_err(), "no epoch column");
        assert_eq!(
            parse_epochs_csv("epoch,train_nll\n1,0.5x\n"),
            Err(EpochsError::NotANumber { line: 2, column: "train_nll", value: "0.5x".into() })
        );
        // NaN and inf are numbers; unknown columns are not read.
        assert!(parse_epochs_csv("epoch,train_nll,note\n1,NaN,x\n2,inf,y\n").is_ok());
    }
}
