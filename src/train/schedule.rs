//! Learning-rate schedules with linear warm-up: `constant`, `step` (×0.1 every third of the
//! run), `cosine` (to zero at the last step).

crate::choices::choices! {
    /// A learning-rate schedule over a run's steps (after the warm-up).
    pub enum Schedule {
        /// The base rate throughout.
        Constant = "constant",
        /// x0.1 after each third of the run.
        Step = "step",
        /// Cosine from the base rate to 0 at the last step.
        Cosine = "cosine",
    }
}

/// The learning rate of step `t` (0-based) out of `total`, after `warmup` linear warm-up steps.
pub fn lr_at(schedule: Schedule, base: f32, t: usize, total: usize, warmup: usize) -> f32 {
    if t < warmup {
        return base * (t + 1) as f32 / warmup as f32;
    }
    let (t, span) = ((t - warmup) as f64, (total.saturating_sub(warmup)).max(1) as f64);
    let factor = match schedule {
        Schedule::Constant => 1.0,
        Schedule::Step => 0.1f64.powi((t / (span / 3.0).ceil().max(1.0)).floor() as i32),
        Schedule::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * t / span).cos()),
    };
    (base as f64 * factor) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_by_hand() {
        // Warm-up over 4 steps: 1/4, 2/4, 3/4, then the base.
        assert_eq!(lr_at(Schedule::Constant, 1.0, 0, 10, 4), 0.25);
        assert_eq!(lr_at(Schedule::Constant, 1.0, 4, 10, 4), 1.0);
        // Cosine over 10 steps: 1 at the start, 0.5 halfway, ~0 at the end.
        assert_eq!(lr_at(Schedule::Cosine, 1.0, 0, 10, 0), 1.0);
        assert!((lr_at(Schedule::Cosine, 1.0, 5, 10, 0) - 0.5).abs() < 1e-6);
        // Step over 9 steps: ×0.1 after 3 and after 6.
        assert_eq!(lr_at(Schedule::Step, 1.0, 2, 9, 0), 1.0);
        assert!((lr_at(Schedule::Step, 1.0, 3, 9, 0) - 0.1).abs() < 1e-7);
        assert!((lr_at(Schedule::Step, 1.0, 6, 9, 0) - 0.01).abs() < 1e-8);
    }
}
