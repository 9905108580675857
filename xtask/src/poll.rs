//! One backoff for every wait of the xtask: quick at first, growing by a factor up to a cap,
//! each wait jittered so that many clients polling one API do not move in step.

use std::time::Duration;

/// The shape of a backoff.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    pub first: Duration,
    pub factor: f64,
    pub cap: Duration,
    /// Each wait is spread by ±this fraction (0 for none).
    pub jitter: f64,
    /// Seeds the jitter, so that tests are repeatable.
    pub seed: u64,
}

impl Schedule {
    /// `first`, times `factor` each wait up to `cap`, no jitter.
    pub const fn new(first: Duration, factor: f64, cap: Duration) -> Schedule {
        Schedule { first, factor, cap, jitter: 0.0, seed: 0 }
    }

    /// With ±`jitter`, seeded from the clock and the process.
    pub fn jittered(self, jitter: f64) -> Schedule {
        Schedule { jitter, seed: fastrand::u64(..), ..self }
    }
}

/// The waits of one schedule, in order.
#[derive(Debug, Clone)]
pub struct Backoff {
    schedule: Schedule,
    next: Duration,
    rng: fastrand::Rng,
}

impl Backoff {
    pub fn new(schedule: Schedule) -> Backoff {
        Backoff { schedule, next: schedule.first, rng: fastrand::Rng::with_seed(schedule.seed) }
    }

    /// The next wait, then the one after grows.
    pub fn next_wait(&mut self) -> Duration {
        let base = self.next;
        self.next = base.mul_f64(self.schedule.factor).min(self.schedule.cap);
        let spread = self.schedule.jitter * (2.0 * self.rng.f64() - 1.0);
        base.mul_f64(1.0 + spread)
    }

    /// Back to the first wait (something changed: look again soon).
    pub fn reset(&mut self) {
        self.next = self.schedule.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_by_the_factor_up_to_the_cap_and_reset() {
        let mut b =
            Backoff::new(Schedule::new(Duration::from_millis(100), 2.0, Duration::from_secs(1)));
        let waits: Vec<u128> = (0..6).map(|_| b.next_wait().as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
        b.reset();
        assert_eq!(b.next_wait(), Duration::from_millis(100));
    }

    #[test]
    fn jitter_stays_within_its_spread_and_repeats_for_a_seed() {
        let schedule = Schedule {
            jitter: 0.15,
            seed: 7,
            ..Schedule::new(Duration::from_millis(500), 1.5, Duration::from_millis(1600))
        };
        let waits = |s: Schedule| -> Vec<Duration> {
            let mut b = Backoff::new(s);
            (0..30).map(|_| b.next_wait()).collect()
        };
        let a = waits(schedule);
        assert_eq!(a, waits(schedule), "one seed, one sequence");
        assert!(a
            .iter()
            .all(|w| *w >= Duration::from_millis(425) && *w <= schedule.cap.mul_f64(1.15)));
        assert!(a[10..].iter().all(|w| *w >= Duration::from_millis(1360)));
        assert_ne!(a[10], a[11], "jittered");
    }
}
