//! The worker protocol: `ablate __cell` writes one [`Event`] per stdout line as JSON, the
//! runner (`ablate run`) reads them.

use serde::{Deserialize, Serialize};

use crate::CellState;

/// One progress line of a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Event {
    /// The worker has marked its cells running; `cell` is the first of its batch.
    Start { cell: String, epochs: u64, temperature: f64 },
    /// An epoch of the first chain of the batch ended.
    Epoch { epoch: u64, epochs: u64, temperature: f64, train_nll: f64, train_accuracy: f64, members: u64 },
    /// A cell ended (one line per cell of the batch); accuracy and NLL of its ensemble when
    /// it has one.
    End {
        cell: String,
        status: CellState,
        message: Option<String>,
        accuracy: Option<f64>,
        nll: Option<f64>,
        wall_seconds: f64,
    },
}

impl Event {
    /// The event as one JSON line (no newline).
    pub fn to_line(&self) -> String {
        // Serializing this enum cannot fail: no maps with non-string keys, no custom impls.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses one line; `None` for anything that is not an event (stray output of a plugin).
    pub fn from_line(line: &str) -> Option<Event> {
        serde_json::from_str(line).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_one_line() {
        let events = [
            Event::Start { cell: "ab".into(), epochs: 30, temperature: 0.1 },
            Event::Epoch { epoch: 2, epochs: 30, temperature: 0.1, train_nll: 0.5, train_accuracy: 0.75, members: 0 },
            Event::End {
                cell: "ab".into(),
                status: CellState::Diverged,
                message: Some("NaN at step 4".into()),
                accuracy: None,
                nll: Some(0.25),
                wall_seconds: 1.5,
            },
        ];
        for e in &events {
            let line = e.to_line();
            assert!(!line.contains('\n'));
            assert_eq!(Event::from_line(&line).as_ref(), Some(e), "{line}");
        }
        assert!(events[2].to_line().starts_with(r#"{"event":"end","cell":"ab","status":"diverged""#));
        assert_eq!(Event::from_line("some plugin chatter"), None);
    }
}
