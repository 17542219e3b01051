//! Problems found in a grid file, and the error that carries all of them.
//!
//! Validation never stops at the first problem: every check pushes a [`Problem`] (JSON path,
//! message, hint) and the caller gets them all at once in a [`GridError`].

use std::fmt;

/// One thing wrong with a grid file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where: a JSON path into the grid file (`axes[2].values[1]`, `base.sampler.lr`), or into
    /// the expanded cells (`cells[3].sampler.lr`) when no single place in the file is to blame.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// What to do about it (may be empty).
    pub hint: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self { path: path.into(), message: message.into(), hint: hint.into() }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() { "(grid file)" } else { &self.path };
        write!(f, "{path}: {}", self.message)?;
        if !self.hint.is_empty() {
            write!(f, "\n      hint: {}", self.hint)?;
        }
        Ok(())
    }
}

/// A grid file that cannot be run, with every problem found in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct GridError {
    /// Where the grid came from (a file path), if known.
    pub source_name: Option<String>,
    pub problems: Vec<Problem>,
}

impl GridError {
    pub fn new(problems: Vec<Problem>) -> Self {
        Self { source_name: None, problems }
    }

    /// Attaches the file the grid was read from (shown in the first line of the message).
    pub fn with_source(mut self, name: impl Into<String>) -> Self {
        self.source_name = Some(name.into());
        self
    }
}

impl fmt::Display for GridError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        let what = if n == 1 { "problem" } else { "problems" };
        match &self.source_name {
            Some(name) => write!(f, "grid file {name} has {n} {what}; nothing was run:")?,
            None => write!(f, "grid file has {n} {what}; nothing was run:")?,
        }
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

/// Appends `key` to a JSON path: `.key` for plain keys, `["a.b"]` for keys that need quoting.
pub(crate) fn join_key(path: &str, key: &str) -> String {
    let plain = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$');
    if plain {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    } else {
        let quoted = serde_json::to_string(key).unwrap_or_else(|_| format!("\"{key}\""));
        format!("{path}[{quoted}]")
    }
}

/// Appends an array index to a JSON path.
pub(crate) fn join_index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// A short rendering of a JSON value for messages (long values are cut).
pub(crate) fn show(v: &serde_json::Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        let cut: String = s.chars().take(57).collect();
        format!("{cut}...")
    } else {
        s
    }
}

/// The JSON type name of a value, for "expected X, got Y" messages.
pub(crate) fn type_name(v: &serde_json::Value) -> &'static str {
    use serde_json::Value::*;
    match v {
        Null => "null",
        Bool(_) => "a boolean",
        Number(n) if n.is_u64() || n.is_i64() => "an integer",
        Number(_) => "a number",
        String(_) => "a string",
        Array(_) => "an array",
        Object(_) => "an object",
    }
}
