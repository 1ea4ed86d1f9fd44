//! The ramp's verdicts: whether a step held under the thresholds, and the knee (the most agents
//! of the last step that held before the first that did not).

use serde::Serialize;

use super::stats::Window;

/// When a step stops being good.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Round-trip p99 in milliseconds.
    pub max_p99_ms: f64,
    /// Errors per message sent.
    pub max_error_rate: f64,
}

/// One step of a ramp.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StepResult {
    pub agents: u32,
    pub connected: u64,
    /// The worst one-second round-trip p99 of the step.
    pub p99_ms: f64,
    /// Errors per message sent during the step (errors alone when nothing was sent).
    pub error_rate: f64,
    pub ok: bool,
}

/// Judges a step from its one-second windows. The worst second's p99 stands for the step: a
/// step is only as good as its worst second.
pub fn judge_step(
    agents: u32,
    connected: u64,
    windows: &[Window],
    thresholds: Thresholds,
) -> StepResult {
    let (mut sent, mut errors, mut worst_p99) = (0u64, 0u64, 0f64);
    for window in windows {
        sent = sent.saturating_add(window.sent);
        errors = errors.saturating_add(window.errors);
        worst_p99 = worst_p99.max(window.round_trip.p99_ms);
    }
    let error_rate = errors as f64 / sent.max(1) as f64;
    StepResult {
        agents,
        connected,
        p99_ms: worst_p99,
        error_rate,
        ok: error_rate <= thresholds.max_error_rate && worst_p99 <= thresholds.max_p99_ms,
    }
}

/// The knee: the agents of the last good step before the first bad one; `None` when the first
/// step is already bad (the knee is below it) or there were no steps.
pub fn knee(steps: &[StepResult]) -> Option<u32> {
    steps
        .iter()
        .take_while(|step| step.ok)
        .last()
        .map(|step| step.agents)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::stats::Percentiles;

    fn second(p99_ms: f64, sent: u64, errors: u64) -> Window {
        Window {
            second: 0,
            agents_connected: 0,
            round_trip: Percentiles {
                samples: sent,
                p99_ms,
                ..Percentiles::default()
            },
            sent,
            errors,
        }
    }

    const LIMITS: Thresholds = Thresholds {
        max_p99_ms: 15.0,
        max_error_rate: 0.01,
    };

    #[test]
    fn a_step_is_as_good_as_its_worst_second() {
        let good = judge_step(10, 10, &[second(3.0, 100, 0), second(14.9, 100, 1)], LIMITS);
        assert!(good.ok, "{good:?}");
        assert_eq!(good.p99_ms, 14.9);
        assert_eq!(good.error_rate, 0.005);

        let slow = judge_step(20, 20, &[second(3.0, 100, 0), second(15.1, 100, 0)], LIMITS);
        assert!(!slow.ok, "{slow:?}");

        // 3 errors in 200 messages: 1.5 % is over 1 %.
        let failing = judge_step(30, 28, &[second(1.0, 100, 2), second(1.0, 100, 1)], LIMITS);
        assert!(!failing.ok, "{failing:?}");
        assert_eq!(failing.error_rate, 0.015);

        // Errors with nothing sent (every connect refused) are a bad step, not a division by 0.
        let refused = judge_step(40, 0, &[second(0.0, 0, 5)], LIMITS);
        assert!(!refused.ok);
        assert_eq!(refused.error_rate, 5.0);

        // Exactly at the thresholds still holds.
        let edge = judge_step(50, 50, &[second(15.0, 100, 1)], LIMITS);
        assert!(edge.ok, "{edge:?}");
    }

    #[test]
    fn the_knee_is_the_last_good_step_before_the_first_bad() {
        let step = |agents, ok| StepResult {
            agents,
            connected: u64::from(agents),
            p99_ms: 1.0,
            error_rate: 0.0,
            ok,
        };
        assert_eq!(knee(&[]), None);
        assert_eq!(knee(&[step(100, false)]), None);
        assert_eq!(knee(&[step(100, true)]), Some(100));
        assert_eq!(
            knee(&[step(100, true), step(200, true), step(300, false)]),
            Some(200)
        );
        // A good step after a bad one does not move the knee.
        assert_eq!(
            knee(&[step(100, true), step(200, false), step(300, true)]),
            Some(100)
        );
    }
}
