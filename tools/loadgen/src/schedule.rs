//! The open-loop timeline: when request `i` is meant to be sent, fixed before
//! the run starts. Latency is measured from these instants, not from when a
//! request actually left, so a server that stalls makes every request queued
//! behind it look as late as it really is (no coordinated omission).

use std::time::Duration;

/// A constant arrival rate after an optional linear ramp from zero.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeline {
    /// Requests per second once the ramp is over.
    rate: f64,
    ramp: f64,
    duration: f64,
}

impl Timeline {
    /// `rate` > 0; `ramp` ≤ `duration`. Checked by the caller (cli), so
    /// this stays a plain constructor.
    pub fn new(rate: f64, duration: Duration, ramp: Duration) -> Self {
        Self { rate, ramp: ramp.as_secs_f64(), duration: duration.as_secs_f64() }
    }

    /// Requests due by `t` seconds: the integral of the rate, which grows
    /// linearly over the ramp (so the ramp holds half as many requests as
    /// the same time at full rate).
    fn due_by(&self, t: f64) -> f64 {
        if t <= self.ramp {
            self.rate * t * t / (2.0 * self.ramp)
        } else {
            self.rate * (t - self.ramp / 2.0)
        }
    }

    /// How many requests the whole run sends.
    pub fn total(&self) -> u64 {
        // The request due exactly at `duration` belongs to the next run;
        // the epsilon keeps 10/s × 1 s at 10 despite rounding.
        let n = self.due_by(self.duration);
        (n - 1e-9).ceil().max(0.0) as u64
    }

    /// When request `i` (from 0) is due, from the start of the run; `None`
    /// past the end.
    pub fn at(&self, i: u64) -> Option<Duration> {
        if i >= self.total() {
            return None;
        }
        let n = i as f64;
        let in_ramp = self.due_by(self.ramp);
        let t = if n < in_ramp {
            // Inverse of rate·t²/(2·ramp).
            (2.0 * self.ramp * n / self.rate).sqrt()
        } else {
            n / self.rate + self.ramp / 2.0
        };
        Some(Duration::from_secs_f64(t))
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn a_constant_rate_is_evenly_spaced_from_zero() {
        let t = Timeline::new(4.0, secs(2.0), Duration::ZERO);
        assert_eq!(t.total(), 8);
        let times: Vec<f64> = (0..8).map(|i| t.at(i).map(|d| d.as_secs_f64()).unwrap_or(f64::NAN)).collect();
        let expected = [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75];
        for (got, want) in times.iter().zip(expected) {
            assert!((got - want).abs() < 1e-9, "{times:?}");
        }
        assert_eq!(t.at(8), None, "nothing at or after the end");
    }

    #[test]
    fn total_is_rate_times_duration_including_fractions() {
        assert_eq!(Timeline::new(10.0, secs(1.0), Duration::ZERO).total(), 10);
        assert_eq!(Timeline::new(1000.0, secs(5.0), Duration::ZERO).total(), 5000);
        // 2.5/s for 1 s: due at 0, 0.4, 0.8 → 3.
        assert_eq!(Timeline::new(2.5, secs(1.0), Duration::ZERO).total(), 3);
        assert_eq!(Timeline::new(0.5, secs(1.0), Duration::ZERO).total(), 1);
    }

    #[test]
    fn a_ramp_starts_slowly_holds_half_its_time_at_full_rate_and_joins_smoothly() {
        // 100/s, 2 s ramp within a 4 s run: 100 during the ramp, 200 after.
        let t = Timeline::new(100.0, secs(4.0), secs(2.0));
        assert_eq!(t.total(), 300);
        let at = |i| t.at(i).map(|d| d.as_secs_f64()).unwrap_or(f64::NAN);
        // Strictly increasing instants, all inside the run.
        for i in 1..300 {
            assert!(at(i) > at(i - 1), "request {i} at {} not after {}", at(i), at(i - 1));
        }
        assert!(at(299) < 4.0);
        // Early gaps are wide, late gaps are 1/rate.
        assert!(at(1) - at(0) > 0.1, "first gap {}", at(1) - at(0));
        assert!((at(299) - at(298) - 0.01).abs() < 1e-9);
        // The 100th request is due when the ramp ends.
        assert!((at(100) - 2.0).abs() < 1e-9, "{}", at(100));
        // Half way through the ramp, a quarter of its requests are due.
        assert!((at(25) - 1.0).abs() < 1e-9, "{}", at(25));
    }

    #[test]
    fn a_ramp_as_long_as_the_run_sends_half() {
        let t = Timeline::new(50.0, secs(2.0), secs(2.0));
        assert_eq!(t.total(), 50);
        assert!(t.at(49).is_some_and(|d| d < secs(2.0)));
    }
}
