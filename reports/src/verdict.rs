//! The cold-posterior-effect verdict of one factor level and one metric.
//!
//! Only posterior temperatures enter: T = 0 (SGD) is a reference, not a candidate. The best
//! cold temperature is the best mean among 0 < T < 1; it is compared with T = 1.

/// The rule, as stated in the report.
pub const RULE: &str = "The cold posterior effect is **present** for a metric if the ensemble \
value at the best temperature 0 < T < 1 is better (NLL: lower, accuracy: higher) than the value \
at T = 1 by more than 2 combined standard errors, sqrt(se_best² + se_1²); **absent** if T = 1 is \
at least as good as every 0 < T < 1, or the difference is within 2 combined standard errors; \
**undetermined** without a T = 1 cell, without any 0 < T < 1 cell, or without standard errors. \
T = 0 (SGD) is shown as a reference and never counts as a posterior temperature.";

/// How many combined standard errors the improvement must exceed.
pub const THRESHOLD_SE: f64 = 2.0;

/// Mean (± se) of a metric at one temperature.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub temperature: f64,
    pub mean: f64,
    pub se: Option<f64>,
}

/// Which way a metric improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    LowerIsBetter,
    HigherIsBetter,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Present,
    Absent,
    Undetermined,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Present => "present",
            Outcome::Absent => "absent",
            Outcome::Undetermined => "undetermined",
        }
    }
}

/// A verdict with the numbers that led to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub outcome: Outcome,
    /// Best 0 < T < 1 and its point.
    pub best_cold: Option<Point>,
    /// The T = 1 point.
    pub at_one: Option<Point>,
    /// Improvement of the best cold T over T = 1 (positive = cold is better).
    pub improvement: Option<f64>,
    /// sqrt(se_best² + se_1²).
    pub combined_se: Option<f64>,
    /// One sentence explaining the outcome.
    pub reason: String,
}

fn is_one(t: f64) -> bool {
    (t - 1.0).abs() < 1e-9
}

/// Apply [`RULE`] to the points of one level.
pub fn decide(points: &[Point], direction: Direction) -> Verdict {
    let better = |a: f64, b: f64| match direction {
        Direction::LowerIsBetter => a < b,
        Direction::HigherIsBetter => a > b,
    };
    let at_one = points.iter().find(|p| is_one(p.temperature) && p.mean.is_finite()).copied();
    let best_cold = points
        .iter()
        .filter(|p| p.temperature > 0.0 && p.temperature < 1.0 && !is_one(p.temperature))
        .filter(|p| p.mean.is_finite())
        .fold(None::<Point>, |best, p| match best {
            Some(b) if !better(p.mean, b.mean) => Some(b),
            _ => Some(*p),
        });
    let undetermined = |reason: &str| Verdict {
        outcome: Outcome::Undetermined,
        best_cold,
        at_one,
        improvement: None,
        combined_se: None,
        reason: reason.to_string(),
    };
    let Some(one) = at_one else {
        return undetermined("no T = 1 result");
    };
    let Some(cold) = best_cold else {
        return undetermined("no 0 < T < 1 result");
    };
    let improvement = match direction {
        Direction::LowerIsBetter => one.mean - cold.mean,
        Direction::HigherIsBetter => cold.mean - one.mean,
    };
    if improvement <= 0.0 {
        return Verdict {
            outcome: Outcome::Absent,
            best_cold,
            at_one,
            improvement: Some(improvement),
            combined_se: cold.se.zip(one.se).map(|(a, b)| (a * a + b * b).sqrt()),
            reason: "T = 1 is at least as good as every 0 < T < 1".to_string(),
        };
    }
    let combined = match (cold.se, one.se) {
        (Some(a), Some(b)) if a.is_finite() && b.is_finite() => (a * a + b * b).sqrt(),
        _ => {
            let mut v = undetermined("no standard error at the best cold T or at T = 1");
            v.improvement = Some(improvement);
            return v;
        }
    };
    let (outcome, reason) = if improvement > THRESHOLD_SE * combined {
        (
            Outcome::Present,
            format!(
                "T = {} beats T = 1 by {:.4} > {THRESHOLD_SE} × {:.4}",
                fmt_t(cold.temperature),
                improvement,
                combined
            ),
        )
    } else {
        (
            Outcome::Absent,
            format!(
                "T = {} beats T = 1 by {:.4}, within {THRESHOLD_SE} × {:.4}",
                fmt_t(cold.temperature),
                improvement,
                combined
            ),
        )
    };
    Verdict { outcome, best_cold, at_one, improvement: Some(improvement), combined_se: Some(combined), reason }
}

/// A temperature as short text (`0.01`, `1`, `1e-4`).
pub fn fmt_t(t: f64) -> String {
    if t != 0.0 && t.abs() < 1e-3 {
        format!("{t:e}")
    } else {
        format!("{t}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(t: f64, mean: f64, se: f64) -> Point {
        Point { temperature: t, mean, se: Some(se) }
    }

    #[test]
    fn cold_clearly_better_is_present() {
        let v = decide(&[p(0.0, 0.2, 0.01), p(0.1, 0.30, 0.01), p(1.0, 0.40, 0.01)], Direction::LowerIsBetter);
        assert_eq!(v.outcome, Outcome::Present);
        assert_eq!(v.best_cold.unwrap().temperature, 0.1);
    }

    #[test]
    fn sgd_is_never_the_best_cold_temperature() {
        let v = decide(&[p(0.0, 0.1, 0.01), p(0.5, 0.5, 0.01), p(1.0, 0.40, 0.01)], Direction::LowerIsBetter);
        assert_eq!(v.outcome, Outcome::Absent);
        assert_eq!(v.best_cold.unwrap().temperature, 0.5);
    }

    #[test]
    fn within_two_se_is_absent_and_higher_is_better_works() {
        let v = decide(&[p(0.1, 0.91, 0.01), p(1.0, 0.90, 0.01)], Direction::HigherIsBetter);
        assert_eq!(v.outcome, Outcome::Absent);
        let v = decide(&[p(0.1, 0.95, 0.01), p(1.0, 0.90, 0.01)], Direction::HigherIsBetter);
        assert_eq!(v.outcome, Outcome::Present);
    }

    #[test]
    fn missing_t1_or_se_is_undetermined() {
        let v = decide(&[p(0.1, 0.3, 0.01)], Direction::LowerIsBetter);
        assert_eq!(v.outcome, Outcome::Undetermined);
        let v = decide(&[Point { temperature: 0.1, mean: 0.1, se: None }, p(1.0, 0.4, 0.01)], Direction::LowerIsBetter);
        assert_eq!(v.outcome, Outcome::Undetermined);
    }
}
