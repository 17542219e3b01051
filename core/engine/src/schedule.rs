//! Cyclical time stepping and the temperature ramp, exactly as the reference code runs them
//! (`cyclical_rate`, `CyclicSamplerCallback`, `TemperatureRampScheduler`).
//!
//! Steps `k` are global and 1-based. With `L = cycle_length·steps_per_epoch` and the sampling
//! phase starting at (1-based) epoch `S = cycle_start_sampling`:
//! - the time-step factor C is 1 through the first step of epoch S; after that, step k runs at
//!   `cyclical_rate(L, k − 1)`: the reference sets C after each step from that step's global
//!   count (`CyclicSamplerCallback.on_train_batch_end`), for the next step. C is phase-locked to
//!   the global step (so epoch S itself runs at the tail of a cycle), the step after a member
//!   runs at the cycle's smallest C and the one after it at C = 1;
//! - C scales the SDE step h, so integrators see lr' = C²·lr and β' = 1 − C(1−β);
//! - the temperature is 0 until step `(S − cycle_length)·spe`, then ramps linearly to T over
//!   `cycle_length` epochs, reaching T at the last step of epoch S;
//! - an ensemble member is taken at every step with `k mod L = 0` from epoch S on.

use ablate_grid::config::{SamplerConfig, Schedule as Kind};

/// `cyclical_rate(period_length, step, schedule, min_value)` of the reference.
pub fn cyclical_rate(period: u64, step: u64, schedule: Kind, min_value: f64) -> f64 {
    let pfraction = ((step.max(1) - 1) % period) as f64 / period as f64;
    match schedule {
        Kind::Cosine => min_value + (1.0 - min_value) * 0.5 * ((std::f64::consts::PI * pfraction).cos() + 1.0),
        Kind::Glide => min_value + (1.0 - min_value) * (-pfraction / (1.0 - pfraction)).exp(),
        Kind::Flat => 1.0,
    }
}

/// The step-indexed protocol of one chain.
#[derive(Debug, Clone, PartialEq)]
pub struct Protocol {
    pub steps_per_epoch: u64,
    pub epochs: u64,
    /// Cycle length in steps.
    pub cycle: u64,
    /// First 1-based epoch of the cyclical phase.
    pub start_sampling_epoch: u64,
    pub schedule: Kind,
    pub temperature: f64,
    pub ramp: bool,
    ramp_begin: u64,
    ramp_steps: u64,
}

impl Protocol {
    pub fn new(cfg: &SamplerConfig, steps_per_epoch: u64, temperature: f64) -> Self {
        let cycle_epochs = cfg.cycle_length as u64;
        let s = cfg.cycle_start_sampling as u64;
        Self {
            steps_per_epoch,
            epochs: cfg.epochs as u64,
            cycle: cycle_epochs * steps_per_epoch,
            start_sampling_epoch: s,
            schedule: cfg.schedule,
            temperature,
            ramp: cfg.temperature_ramp,
            ramp_begin: s.saturating_sub(cycle_epochs) * steps_per_epoch,
            ramp_steps: cycle_epochs * steps_per_epoch,
        }
    }

    pub fn total_steps(&self) -> u64 {
        self.epochs * self.steps_per_epoch
    }

    /// 1-based epoch of global step k.
    pub fn epoch_of(&self, k: u64) -> u64 {
        (k.max(1) - 1) / self.steps_per_epoch + 1
    }

    /// Time-step factor C at step k: the value the reference's callback set at the end of step
    /// k − 1 (it sets nothing before epoch S, and C starts at 1).
    pub fn timestep_factor(&self, k: u64) -> f64 {
        if k <= 1 || self.epoch_of(k - 1) < self.start_sampling_epoch {
            1.0
        } else {
            cyclical_rate(self.cycle, k - 1, self.schedule, 0.0)
        }
    }

    /// Temperature at step k (the linear ramp from 0, or T throughout).
    pub fn temperature_at(&self, k: u64) -> f64 {
        if !self.ramp {
            return self.temperature;
        }
        let progressed = k.saturating_sub(self.ramp_begin) as f64 / self.ramp_steps.max(1) as f64;
        self.temperature * progressed.clamp(0.0, 1.0)
    }

    /// Is step k a cycle end at which an ensemble member is taken?
    pub fn is_member_step(&self, k: u64) -> bool {
        self.epoch_of(k) >= self.start_sampling_epoch && k.is_multiple_of(self.cycle)
    }

    /// Whether `other` runs the same step schedule (everything but the temperature), so the two
    /// can be batched chains.
    pub fn same_schedule(&self, other: &Protocol) -> bool {
        let mut o = other.clone();
        o.temperature = self.temperature;
        *self == o
    }

    /// Members the protocol will collect.
    pub fn expected_members(&self) -> u64 {
        (1..=self.total_steps()).filter(|&k| k.is_multiple_of(self.cycle) && self.is_member_step(k)).count() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn protocol() -> Protocol {
        let cfg = SamplerConfig { epochs: 30, cycle_length: 5, cycle_start_sampling: 15, ..Default::default() };
        Protocol::new(&cfg, 10, 0.5)
    }

    #[test]
    fn cosine_matches_closed_form() {
        // pfraction = (k-1 mod L)/L; C = 0.5(cos(pi pf)+1) with min_value 0.
        assert_eq!(cyclical_rate(50, 1, Kind::Cosine, 0.0), 1.0);
        let c = cyclical_rate(50, 26, Kind::Cosine, 0.0);
        assert!((c - 0.5).abs() < 1e-12, "{c}");
        let c = cyclical_rate(50, 50, Kind::Cosine, 0.0);
        assert!((c - 0.5 * ((std::f64::consts::PI * 49.0 / 50.0).cos() + 1.0)).abs() < 1e-15);
        assert_eq!(cyclical_rate(50, 51, Kind::Cosine, 0.0), 1.0);
        let g = cyclical_rate(4, 3, Kind::Glide, 0.001);
        assert!((g - (0.001 + 0.999 * (-(0.5f64) / 0.5).exp())).abs() < 1e-15);
        assert_eq!(cyclical_rate(4, 3, Kind::Flat, 0.0), 1.0);
    }

    #[test]
    fn ramp_and_phase_follow_the_reference() {
        let p = protocol();
        // Ramp: T=0 through epoch 10 (steps 1..=100), linear over epochs 11-15, T from step 150.
        assert_eq!(p.temperature_at(100), 0.0);
        assert!((p.temperature_at(125) - 0.25).abs() < 1e-15);
        assert_eq!(p.temperature_at(150), 0.5);
        assert_eq!(p.temperature_at(290), 0.5);
        // Constant step through the first step of epoch 15 (steps 141..150), then the cosine,
        // phase-locked to the global step and one step behind it: the reference's callback sets
        // C from step k's count after step k, for step k + 1.
        assert_eq!(p.timestep_factor(140), 1.0);
        assert_eq!(p.timestep_factor(141), 1.0);
        assert_eq!(p.timestep_factor(142), cyclical_rate(50, 141, Kind::Cosine, 0.0));
        assert_eq!(p.timestep_factor(150), cyclical_rate(50, 149, Kind::Cosine, 0.0));
        assert!(p.timestep_factor(150) < 0.01);
        // The step after a member runs at the cycle's smallest C, the next at C = 1.
        assert_eq!(p.timestep_factor(151), cyclical_rate(50, 150, Kind::Cosine, 0.0));
        assert!(p.timestep_factor(151) < p.timestep_factor(150));
        assert_eq!(p.timestep_factor(152), 1.0);
        // From epoch 1 (no burn-in): the first step at C = 1, the second at cyclical_rate(L, 1) = 1.
        let cfg = SamplerConfig { epochs: 4, cycle_length: 2, cycle_start_sampling: 1, ..Default::default() };
        let q = Protocol::new(&cfg, 10, 1.0);
        assert_eq!((q.timestep_factor(1), q.timestep_factor(2)), (1.0, 1.0));
        assert_eq!(q.timestep_factor(3), cyclical_rate(20, 2, Kind::Cosine, 0.0));
        // Members at the ends of epochs 15, 20, 25, 30.
        let members: Vec<u64> = (1..=p.total_steps()).filter(|&k| p.is_member_step(k)).collect();
        assert_eq!(members, vec![150, 200, 250, 300]);
        assert_eq!(p.expected_members(), 4);
    }
}
