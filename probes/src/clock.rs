//! Time and randomness, injectable so probe scheduling can be tested deterministically.
//!
//! # How time works in this crate
//!
//! Two kinds of time matter to a probe worker:
//!
//! - **Wall-clock time** ([`SystemTime`]): a container's `startedAt` comes from the
//!   container runtime as a wall-clock timestamp, and `initialDelaySeconds` is measured
//!   from it; the agent's own start time is compared with it too. Workers read the wall
//!   clock through the [`Clock`] trait.
//! - **Waiting** (the jitter before the first probe, the ticker between probes): always
//!   done with `tokio::time` (`sleep`, `Interval`). There is deliberately no
//!   `sleep_until` on [`Clock`]: a boxed sleep future per tick would be an allocation per
//!   worker per period, and tokio's timer wheel is already what we want in production.
//!
//! Tests make both deterministic with tokio's paused clock
//! (`#[tokio::test(start_paused = true)]`, `tokio::time::advance`, or simply sleeping in
//! the test: a paused runtime jumps straight to the next timer) together with
//! [`TokioClock`], whose wall clock is derived from tokio's clock and so advances exactly
//! when tokio's paused time does. No test needs real time to pass.
//!
//! Randomness (the first-probe jitter after an agent restart) comes from a
//! [`RandomSource`]; [`SeededRandom`] gives a reproducible sequence from a seed.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Reads the wall clock.
///
/// Only the wall clock is abstracted (see the [module docs](self) for why sleeping is
/// not): it is what container start times and the agent start time are compared with.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current wall-clock time.
    fn now(&self) -> SystemTime;
}

/// The real wall clock ([`SystemTime::now`]); the default.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A wall clock that follows tokio's clock: it reads a fixed base time plus the tokio
/// time elapsed since it was created.
///
/// Under a paused tokio runtime (tests) it advances only when tokio time is advanced,
/// so wall-clock comparisons (initial delays) are as deterministic as the timers.
/// In production it is monotonic and does not follow steps of the system clock; prefer
/// [`SystemClock`] there.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    base_wall: SystemTime,
    base: tokio::time::Instant,
}

impl TokioClock {
    /// A clock that reads `SystemTime::now()` now and follows tokio's clock from here.
    pub fn new() -> Self {
        Self::starting_at(SystemTime::now())
    }

    /// A clock that reads `wall` now and follows tokio's clock from here; tests use a
    /// fixed `wall` so timestamps are the same on every run.
    pub fn starting_at(wall: SystemTime) -> Self {
        Self {
            base_wall: wall,
            base: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> SystemTime {
        self.base_wall + self.base.elapsed()
    }
}

/// A source of uniform random fractions in `[0, 1)`, used for the first-probe jitter.
pub trait RandomSource: Send + Sync + fmt::Debug + 'static {
    /// The next fraction, in `[0, 1)`.
    fn next_fraction(&self) -> f64;
}

/// A small, seedable pseudo-random generator (SplitMix64); not cryptographic, and not
/// meant to be: it only spreads first probes over a period.
#[derive(Debug)]
pub struct SeededRandom {
    state: AtomicU64,
}

impl SeededRandom {
    /// A generator whose sequence is fully determined by `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            state: AtomicU64::new(seed),
        }
    }

    /// A generator seeded from the wall clock (the default for a manager).
    pub fn from_time() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_nanos();
        // Fold the 128-bit nanosecond count; only the low bits vary anyway.
        Self::new((nanos as u64) ^ ((nanos >> 64) as u64))
    }
}

impl RandomSource for SeededRandom {
    fn next_fraction(&self) -> f64 {
        const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut z = self
            .state
            .fetch_add(GAMMA, Ordering::Relaxed)
            .wrapping_add(GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // The top 53 bits give an exactly representable fraction in [0, 1).
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A [`RandomSource`] that returns the same fraction every time (clamped to `[0, 1)`);
/// handy in tests that want a known jitter.
#[derive(Debug, Clone, Copy)]
pub struct FixedFraction(pub f64);

impl RandomSource for FixedFraction {
    fn next_fraction(&self) -> f64 {
        clamp_fraction(self.0)
    }
}

/// Clamp to `[0, 1)`, mapping NaN to 0.
pub(crate) fn clamp_fraction(f: f64) -> f64 {
    if f.is_nan() || f < 0.0 {
        0.0
    } else if f >= 1.0 {
        // The largest f64 below 1.
        1.0 - f64::EPSILON / 2.0
    } else {
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_random_is_reproducible_and_in_range() {
        let a = SeededRandom::new(7);
        let b = SeededRandom::new(7);
        let xs: Vec<f64> = (0..1000).map(|_| a.next_fraction()).collect();
        let ys: Vec<f64> = (0..1000).map(|_| b.next_fraction()).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        // Not constant, and spread over the interval.
        assert!(xs.iter().any(|x| *x < 0.1));
        assert!(xs.iter().any(|x| *x > 0.9));
        let other = SeededRandom::new(8);
        assert_ne!(other.next_fraction(), xs[0]);
    }

    #[test]
    fn fractions_are_clamped() {
        assert_eq!(FixedFraction(-1.0).next_fraction(), 0.0);
        assert_eq!(FixedFraction(f64::NAN).next_fraction(), 0.0);
        assert!(FixedFraction(1.0).next_fraction() < 1.0);
        assert!(FixedFraction(7.0).next_fraction() < 1.0);
        assert_eq!(FixedFraction(0.25).next_fraction(), 0.25);
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let base = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let clock = TokioClock::starting_at(base);
        assert_eq!(clock.now(), base);
        tokio::time::advance(Duration::from_millis(2500)).await;
        assert_eq!(clock.now(), base + Duration::from_millis(2500));
    }

    #[test]
    fn system_clock_reads_the_wall_clock() {
        let before = SystemTime::now();
        let now = SystemClock.now();
        assert!(now >= before);
    }
}
